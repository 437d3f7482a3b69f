// sqlite_limit: the storage limit of the benchmarks (tools/benchmark): how
// fast SQLite alone stores the jobs CreateJob stores, with no server, no
// protobuf and no JSON in the way.
//
//   sqlite_limit --db=NEW_FILE [--rows=2000 | --duration_s=S]
//       [--synchronous=full] [--rows_per_transaction=1,64]
//
// Makes NEW_FILE through Jobline's store (schema, indexes, the demo
// catalogue's project 16), opens it with the server's connection settings
// (bench_db.h) and, for each --rows_per_transaction size in turn, inserts
// --rows jobs (or, with --duration_s, whole transactions until that many
// seconds have passed): for each, the row CreateJob writes for the load
// generator's `create` (name "Load test: create", project 16, CREATED,
// type "ml") and its status-change row, committing every size rows. One
// JSON line per size:
//
//   {"synchronous":"full","rows_per_transaction":1,"rows":2000,
//    "seconds":1.93,"rows_per_s":1036.2}
//
// The database keeps every row written. Exit status: 0 on success, 1 when
// a write failed, 2 for a bad flag.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gflags/gflags.h"
#include "glog/logging.h"
#include "nlohmann/json.hpp"
#include "storage/status_macros.h"
#include "tools/bench/bench_db.h"

DEFINE_string(db, "", "The database to make; must not exist.");
DEFINE_int32(rows, 2000, "Jobs inserted for each transaction size.");
DEFINE_double(duration_s, 0,
              "If positive, insert for this many seconds per size instead of "
              "--rows jobs.");
DEFINE_string(synchronous, "full", "SQLite synchronous level: full or normal.");
DEFINE_string(rows_per_transaction, "1,64",
              "Comma-separated transaction sizes, run in this order.");

namespace jobline {
namespace bench {
namespace {

// The project the rows name, and its record (from tools/demo-catalog.json).
constexpr int64_t kProjectId = 16;
constexpr char kProjectName[] = "Aarhus Universitet, Department of Ecoscience";

// What CreateJob stores for `jobline_loadgen --method=create`.
constexpr char kJobName[] = "Load test: create";
constexpr char kJobType[] = "ml";
constexpr char kDispatchMode[] = "internal";
constexpr char kStatus[] = "CREATED";
// The progress column of a new job: JobProgress{summary{status: CREATED}},
// serialized, as the store writes it.
constexpr char kProgress[] = "\x0a\x02\x08\x01";

// The prepared statements of the loop.
struct Statements {
  SqliteStmtPtr begin;
  SqliteStmtPtr commit;
  SqliteStmtPtr insert_job;
  SqliteStmtPtr insert_status;
};

// Inserts one job and its status-change row as CreateJob does.
absl::Status InsertJob(sqlite3* db, const Statements& sql) {
  const int64_t now = absl::ToUnixMicros(absl::Now());
  sqlite3_stmt* job = sql.insert_job.get();
  sqlite3_bind_text(job, 1, kJobName, -1, SQLITE_STATIC);
  sqlite3_bind_int64(job, 2, 0);  // delay
  sqlite3_bind_null(job, 3);      // job_limit
  sqlite3_bind_int64(job, 4, 1);  // shuffle
  sqlite3_bind_int64(job, 5, kProjectId);
  for (int reference = 6; reference <= 10; ++reference) {
    sqlite3_bind_null(job, reference);  // deployment .. data_export
  }
  sqlite3_bind_text(job, 11, kJobType, -1, SQLITE_STATIC);
  sqlite3_bind_text(job, 12, kDispatchMode, -1, SQLITE_STATIC);
  sqlite3_bind_text(job, 13, kStatus, -1, SQLITE_STATIC);
  sqlite3_bind_int64(job, 14, now);  // created_at
  sqlite3_bind_int64(job, 15, now);  // updated_at
  // 16..18 scheduled_at, started_at, finished_at stay NULL.
  sqlite3_bind_blob(job, 19, kProgress, sizeof(kProgress) - 1, SQLITE_STATIC);
  // 20 result stays NULL.
  sqlite3_bind_int64(job, 21, 0);  // results_stage_final
  // 22 lease_id stays NULL.
  sqlite3_bind_text(job, 23, "", -1, SQLITE_STATIC);  // lease_holder
  // 24 lease_expires_at stays NULL.
  sqlite3_bind_int64(job, 25, 0);  // attempts
  JOBS_RETURN_IF_ERROR(RunAndReset(db, job, "inserting a job"));

  sqlite3_stmt* change = sql.insert_status.get();
  sqlite3_bind_int64(change, 1, sqlite3_last_insert_rowid(db));
  sqlite3_bind_int64(change, 2, 1);
  sqlite3_bind_text(change, 3, kStatus, -1, SQLITE_STATIC);
  sqlite3_bind_int64(change, 4, now);
  return RunAndReset(db, change, "inserting a status change");
}

// What one transaction size did.
struct SizeResult {
  int64_t rows = 0;
  double seconds = 0;
};

// Inserts jobs, `per_transaction` to a transaction, until `rows` are in
// or, when `duration` is positive, until a commit finds it has passed.
absl::StatusOr<SizeResult> RunSize(sqlite3* db, const Statements& sql,
                                   int64_t rows, int per_transaction,
                                   absl::Duration duration) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  const Clock::time_point end = start + absl::ToChronoNanoseconds(duration);
  const bool timed = duration > absl::ZeroDuration();
  SizeResult result;
  while (timed || result.rows < rows) {
    JOBS_RETURN_IF_ERROR(RunAndReset(db, sql.begin.get(), "beginning"));
    for (int i = 0; i < per_transaction && (timed || result.rows < rows); ++i) {
      JOBS_RETURN_IF_ERROR(InsertJob(db, sql));
      ++result.rows;
    }
    JOBS_RETURN_IF_ERROR(RunAndReset(db, sql.commit.get(), "committing"));
    if (timed && Clock::now() >= end) break;
  }
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

absl::Status Run(Synchronous synchronous, const std::vector<int>& sizes) {
  v2::Catalog catalog;
  v2::Project* project = catalog.add_projects();
  project->set_id(kProjectId);
  project->set_name(kProjectName);
  JOBS_RETURN_IF_ERROR(CreateBenchDatabase(FLAGS_db, catalog));
  JOBS_ASSIGN_OR_RETURN(SqliteDbPtr db,
                        OpenServerLikeConnection(FLAGS_db, synchronous));

  Statements sql;
  JOBS_ASSIGN_OR_RETURN(sql.begin, Prepare(db.get(), "BEGIN IMMEDIATE"));
  JOBS_ASSIGN_OR_RETURN(sql.commit, Prepare(db.get(), "COMMIT"));
  JOBS_ASSIGN_OR_RETURN(sql.insert_job, Prepare(db.get(), kInsertJobSql));
  JOBS_ASSIGN_OR_RETURN(sql.insert_status,
                        Prepare(db.get(), kInsertStatusChangeSql));
  for (const int size : sizes) {
    JOBS_ASSIGN_OR_RETURN(
        const SizeResult result,
        RunSize(db.get(), sql, FLAGS_rows, size,
                absl::Seconds(std::max(0.0, FLAGS_duration_s))));
    nlohmann::ordered_json figures;
    figures["synchronous"] = std::string(SynchronousName(synchronous));
    figures["rows_per_transaction"] = size;
    figures["rows"] = result.rows;
    figures["seconds"] = result.seconds;
    figures["rows_per_s"] =
        result.seconds > 0 ? result.rows / result.seconds : 0.0;
    std::cout << figures.dump() << std::endl;
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace bench
}  // namespace jobline

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "SQLite's own speed at storing CreateJob's rows.\n"
      "Usage: sqlite_limit --db=NEW_FILE [--rows=N] [--synchronous=full] "
      "[--rows_per_transaction=1,64]");
  gflags::ParseCommandLineFlags(&argc, &argv, /*remove_flags=*/true);
  FLAGS_logtostderr = true;
  FLAGS_minloglevel = google::WARNING;  // No schema migration lines.
  google::InitGoogleLogging(argv[0]);
  auto usage_error = [](const std::string& problem) {
    std::cerr << "sqlite_limit: " << problem << " (see --help)\n";
    return 2;
  };
  if (argc > 1) return usage_error("unexpected argument");
  if (FLAGS_db.empty()) return usage_error("--db must name a new file");
  if (FLAGS_rows < 1) return usage_error("--rows must be positive");
  if (!(FLAGS_duration_s >= 0)) {
    return usage_error("--duration_s must not be negative");
  }
  const absl::StatusOr<jobline::bench::Synchronous> synchronous =
      jobline::bench::ParseSynchronous(FLAGS_synchronous);
  if (!synchronous.ok()) {
    return usage_error(std::string(synchronous.status().message()));
  }
  std::vector<int> sizes;
  for (absl::string_view part :
       absl::StrSplit(FLAGS_rows_per_transaction, ',')) {
    int size = 0;
    if (!absl::SimpleAtoi(part, &size) || size < 1) {
      return usage_error("--rows_per_transaction takes sizes > 0, like 1,64");
    }
    sizes.push_back(size);
  }

  const absl::Status status = jobline::bench::Run(*synchronous, sizes);
  if (!status.ok()) {
    std::cerr << "sqlite_limit: " << status.message() << "\n";
    return 1;
  }
  return 0;
}
