#include "tools/bench/bench_db.h"

#include <filesystem>
#include <memory>
#include <string>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "storage/sqlite_job_store.h"

namespace jobline {
namespace bench {

const char kInsertJobSql[] =
    "INSERT INTO jobs (name, delay, job_limit, shuffle, project_id, "
    "deployment_id, source_image_collection_id, source_image_single_id, "
    "pipeline_id, data_export_id, job_type_key, dispatch_mode, status, "
    "created_at, updated_at, scheduled_at, started_at, finished_at, "
    "progress, result, results_stage_final, lease_id, lease_holder, "
    "lease_expires_at, attempts) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
    "?, ?, ?, ?)";

const char kInsertStatusChangeSql[] =
    "INSERT INTO job_status_changes (job_id, sequence, status, changed_at) "
    "VALUES (?, ?, ?, ?)";

const char kInsertLogSql[] =
    "INSERT INTO job_logs (job_id, created_at, level, message, sequence) "
    "VALUES (?, ?, ?, ?, ?)";

namespace {

absl::Status SqlError(sqlite3* db, absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", sqlite3_errmsg(db)));
}

}  // namespace

absl::StatusOr<Synchronous> ParseSynchronous(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  if (lower == "full") return Synchronous::kFull;
  if (lower == "normal") return Synchronous::kNormal;
  return absl::InvalidArgumentError(absl::StrCat(
      "synchronous must be \"full\" or \"normal\", not \"", name, "\""));
}

absl::string_view SynchronousName(Synchronous level) {
  return level == Synchronous::kFull ? "full" : "normal";
}

absl::Status CreateBenchDatabase(const std::string& path,
                                 const v2::Catalog& catalog) {
  std::error_code error;
  if (std::filesystem::exists(path, error)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " exists; give the path of a new file"));
  }
  SqliteJobStoreOptions options;
  options.path = path;
  absl::StatusOr<std::unique_ptr<SqliteJobStore>> store =
      OpenSqliteJobStore(options);
  if (!store.ok()) return store.status();
  return (*store)->ImportCatalog(catalog).status();
}

absl::StatusOr<SqliteDbPtr> OpenServerLikeConnection(const std::string& path,
                                                     Synchronous synchronous) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(
      path.c_str(), &raw, SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_READWRITE, nullptr);
  SqliteDbPtr db(raw);
  if (rc != SQLITE_OK) {
    return absl::InternalError(absl::StrCat(
        "cannot open ", path, ": ",
        db != nullptr ? sqlite3_errmsg(db.get()) : sqlite3_errstr(rc)));
  }
  sqlite3_extended_result_codes(db.get(), 1);
  sqlite3_busy_timeout(db.get(), 5000);  // job_server's --busy_timeout_ms.
  const absl::Status settings =
      Exec(db.get(),
           absl::StrCat("PRAGMA foreign_keys = ON; PRAGMA synchronous = ",
                        synchronous == Synchronous::kFull ? "FULL" : "NORMAL",
                        "; PRAGMA journal_mode = WAL;"));
  if (!settings.ok()) return settings;
  return db;
}

absl::Status Exec(sqlite3* db, absl::string_view sql) {
  const std::string text(sql);
  if (sqlite3_exec(db, text.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
    return SqlError(db, "running SQL");
  }
  return absl::OkStatus();
}

absl::StatusOr<SqliteStmtPtr> Prepare(sqlite3* db, absl::string_view sql) {
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &raw,
                         nullptr) != SQLITE_OK) {
    return SqlError(db, "preparing a statement");
  }
  return SqliteStmtPtr(raw);
}

absl::Status RunAndReset(sqlite3* db, sqlite3_stmt* stmt,
                         absl::string_view what) {
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
  }
  absl::Status status =
      rc == SQLITE_DONE ? absl::OkStatus() : SqlError(db, what);
  sqlite3_reset(stmt);
  sqlite3_clear_bindings(stmt);
  return status;
}

int64_t DatabaseBytes(const std::string& path) {
  int64_t bytes = 0;
  for (const char* suffix : {"", "-wal"}) {
    std::error_code error;
    const auto size = std::filesystem::file_size(path + suffix, error);
    if (!error) bytes += static_cast<int64_t>(size);
  }
  return bytes;
}

}  // namespace bench
}  // namespace jobline
