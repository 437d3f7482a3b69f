#include "storage/schema.h"

#include <cstdint>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "jobline/v2/jobs.pb.h"
#include "storage/sqlite_statement.h"
#include "storage/sqlite_status.h"

namespace jobline {
namespace {

// One step of the schema. Migration i (0-based) brings a database from
// version i to version i + 1. Never edit a released migration: append one.
struct Migration {
  const char* description;
  const char* sql;
  // Run after `sql`, in the same transaction, for what SQL cannot do (read
  // the serialized records). Null for most migrations.
  absl::Status (*fill)(sqlite3* db, absl::string_view context) = nullptr;
  // Run after `fill`, in the same transaction. Null for most migrations.
  const char* finish_sql = nullptr;
};

// Version 3: copies each capture's path from its record into the new path
// column. Of captures that share a path only the lowest id gets it (the
// column is unique); a record that does not parse keeps a null path, as
// does one without a path.
absl::Status FillCapturePaths(sqlite3* db, absl::string_view context) {
  std::vector<std::pair<int64_t, std::string>> paths;
  {
    absl::StatusOr<SqliteStmtPtr> stmt = PrepareStatement(
        db, "SELECT id, record FROM captures ORDER BY id", context);
    if (!stmt.ok()) return stmt.status();
    Statement query(db, stmt->get(), std::string(context));
    while (true) {
      absl::StatusOr<bool> row = query.Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      v2::Capture capture;
      if (capture.ParseFromString(query.Blob(1)) && !capture.path().empty()) {
        paths.emplace_back(query.Int64(0), capture.path());
      }
    }
  }
  absl::StatusOr<SqliteStmtPtr> stmt = PrepareStatement(
      db, "UPDATE OR IGNORE captures SET path = ? WHERE id = ?", context);
  if (!stmt.ok()) return stmt.status();
  for (const auto& [id, path] : paths) {
    Statement update(db, stmt->get(), std::string(context));
    update.BindText(path).BindInt64(id);
    const absl::Status status = update.Run();
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

// The serialized form of the JSON text `json` of a `Message`, or nullopt if
// it does not parse (the text is then kept, and reads of it fail as they
// did).
template <typename Message>
std::optional<std::string> JsonToBinary(const std::string& json) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  Message message;
  if (!google::protobuf::util::JsonStringToMessage(json, &message, options)
           .ok()) {
    return std::nullopt;
  }
  return message.SerializeAsString();
}

// Version 5: converts each job's progress (JobProgress) and result
// (google.protobuf.Value) from protobuf's JSON text, in the old columns
// progress_json and result_json, to the serialized message, in the new
// BLOB columns progress and result. A text that does not parse is copied
// as text: it stays unreadable, as it was. Jobs go in id order, a chunk at
// a time; most jobs share a few progress documents, so conversions are
// remembered.
absl::Status ConvertJsonColumns(sqlite3* db, absl::string_view context) {
  constexpr int kChunk = 1000;
  constexpr size_t kMaxRemembered = 4096;
  struct Converted {
    int64_t id = 0;
    std::optional<std::string> progress;  // nullopt: keep the text
    std::string progress_text;
    std::optional<std::string> result;  // nullopt: NULL or kept text
    std::optional<std::string> result_text;
  };
  absl::StatusOr<SqliteStmtPtr> select = PrepareStatement(
      db,
      "SELECT id, progress_json, result_json FROM jobs WHERE id > ? "
      "ORDER BY id LIMIT ?",
      context);
  if (!select.ok()) return select.status();
  absl::StatusOr<SqliteStmtPtr> update = PrepareStatement(
      db, "UPDATE jobs SET progress = ?, result = ? WHERE id = ?", context);
  if (!update.ok()) return update.status();
  std::map<std::string, std::optional<std::string>> remembered;
  int64_t after = 0;
  while (true) {
    std::vector<Converted> chunk;
    {
      Statement query(db, select->get(), std::string(context));
      query.BindInt64(after).BindInt64(kChunk);
      while (true) {
        absl::StatusOr<bool> row = query.Step();
        if (!row.ok()) return row.status();
        if (!*row) break;
        Converted& job = chunk.emplace_back();
        job.id = query.Int64(0);
        job.progress_text = query.Text(1);
        auto it = remembered.find(job.progress_text);
        if (it == remembered.end()) {
          std::optional<std::string> binary =
              JsonToBinary<v2::JobProgress>(job.progress_text);
          if (remembered.size() >= kMaxRemembered) remembered.clear();
          it = remembered.emplace(job.progress_text, std::move(binary)).first;
        }
        job.progress = it->second;
        job.result_text = query.OptionalText(2);
        if (job.result_text.has_value()) {
          job.result = JsonToBinary<google::protobuf::Value>(*job.result_text);
          if (job.result.has_value()) job.result_text.reset();
        }
      }
    }
    if (chunk.empty()) return absl::OkStatus();
    for (const Converted& job : chunk) {
      Statement write(db, update->get(), std::string(context));
      if (job.progress.has_value()) {
        write.BindBlob(*job.progress);
      } else {
        write.BindText(job.progress_text);
      }
      if (job.result.has_value()) {
        write.BindBlob(*job.result);
      } else {
        write.BindOptionalText(job.result_text);
      }
      write.BindInt64(job.id);
      const absl::Status status = write.Run();
      if (!status.ok()) return status;
    }
    after = chunk.back().id;
  }
}

constexpr Migration kMigrations[] = {
    {"jobs, job logs and reference records", R"sql(
CREATE TABLE projects (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  record BLOB NOT NULL
);

CREATE TABLE deployments (
  id INTEGER PRIMARY KEY,
  project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  record BLOB NOT NULL
);
CREATE INDEX deployments_project ON deployments(project_id);

CREATE TABLE pipelines (
  id INTEGER PRIMARY KEY,
  slug TEXT NOT NULL,
  name TEXT NOT NULL,
  record BLOB NOT NULL
);
CREATE INDEX pipelines_slug ON pipelines(slug);

CREATE TABLE capture_collections (
  id INTEGER PRIMARY KEY,
  project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  method TEXT NOT NULL,
  record BLOB NOT NULL
);
CREATE INDEX capture_collections_project ON capture_collections(project_id);

CREATE TABLE captures (
  id INTEGER PRIMARY KEY,
  deployment_id INTEGER REFERENCES deployments(id) ON DELETE CASCADE,
  record BLOB NOT NULL
);
CREATE INDEX captures_deployment ON captures(deployment_id);

CREATE TABLE data_exports (
  id INTEGER PRIMARY KEY,
  project_id INTEGER NOT NULL,
  format TEXT NOT NULL,
  record BLOB NOT NULL
);

CREATE TABLE jobs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  delay INTEGER NOT NULL DEFAULT 0,
  job_limit INTEGER,
  shuffle INTEGER NOT NULL DEFAULT 1,
  project_id INTEGER NOT NULL
      REFERENCES projects(id) ON DELETE CASCADE,
  deployment_id INTEGER
      REFERENCES deployments(id) ON DELETE CASCADE,
  source_image_collection_id INTEGER
      REFERENCES capture_collections(id) ON DELETE SET NULL,
  source_image_single_id INTEGER
      REFERENCES captures(id) ON DELETE SET NULL,
  pipeline_id INTEGER
      REFERENCES pipelines(id) ON DELETE SET NULL,
  data_export_id INTEGER
      REFERENCES data_exports(id) ON DELETE CASCADE,
  job_type_key TEXT NOT NULL,
  dispatch_mode TEXT NOT NULL,
  status TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  scheduled_at INTEGER,
  started_at INTEGER,
  finished_at INTEGER,
  progress TEXT NOT NULL,
  result TEXT,
  -- 1 when progress has a stage with key "results" whose status is final
  -- (SUCCESS, FAILURE, REVOKED). Written with every progress write.
  results_stage_final INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_created ON jobs(created_at DESC, id DESC);
CREATE INDEX jobs_status_created ON jobs(status, created_at);
CREATE INDEX jobs_project_created ON jobs(project_id, created_at);
CREATE INDEX jobs_deployment ON jobs(deployment_id);
CREATE INDEX jobs_collection ON jobs(source_image_collection_id);
CREATE INDEX jobs_capture ON jobs(source_image_single_id);
CREATE INDEX jobs_pipeline ON jobs(pipeline_id);
CREATE INDEX jobs_data_export ON jobs(data_export_id);
CREATE INDEX jobs_job_type ON jobs(job_type_key);

CREATE TABLE job_logs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  created_at INTEGER NOT NULL,
  level TEXT NOT NULL,
  message TEXT NOT NULL,
  context TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX job_logs_job_created ON job_logs(job_id, created_at DESC, id DESC);
)sql"},
    {"capture collection membership", R"sql(
CREATE TABLE collection_captures (
  collection_id INTEGER NOT NULL
      REFERENCES capture_collections(id) ON DELETE CASCADE,
  capture_id INTEGER NOT NULL REFERENCES captures(id) ON DELETE CASCADE,
  PRIMARY KEY (collection_id, capture_id)
) WITHOUT ROWID;
CREATE INDEX collection_captures_capture ON collection_captures(capture_id);
)sql"},
    {"job leases and capture paths", R"sql(
-- The lease of a job: lease_id and lease_expires_at are NULL when the job
-- is not leased; lease_holder then names the queue the job waits in (''
-- for workers). lease_expires_at is microseconds since the Unix epoch.
ALTER TABLE jobs ADD COLUMN lease_id TEXT;
ALTER TABLE jobs ADD COLUMN lease_holder TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN lease_expires_at INTEGER;
-- Leases handed out for the current run of the job.
ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
-- Lease candidates: jobs of some statuses and types, oldest scheduled first.
CREATE INDEX jobs_status_type_scheduled
    ON jobs(status, job_type_key, scheduled_at);
-- Expired leases, and the leases of one holder.
CREATE INDEX jobs_lease_expires ON jobs(lease_expires_at)
    WHERE lease_id IS NOT NULL;
CREATE INDEX jobs_lease_holder ON jobs(lease_holder)
    WHERE lease_id IS NOT NULL;
-- Stale jobs: some statuses, not updated for a while.
CREATE INDEX jobs_status_updated ON jobs(status, updated_at);

-- Where the image file of a capture is; NULL when the record has no path.
ALTER TABLE captures ADD COLUMN path TEXT;
CREATE UNIQUE INDEX captures_path ON captures(path) WHERE path IS NOT NULL;
)sql",
     FillCapturePaths},
    {"change sequences of jobs", R"sql(
-- The number of the job's last change: 1 when created, one more with each
-- committed write.
ALTER TABLE jobs ADD COLUMN sequence INTEGER NOT NULL DEFAULT 1;
-- The change that appended a line; 0 for lines stored before sequences.
ALTER TABLE job_logs ADD COLUMN sequence INTEGER NOT NULL DEFAULT 0;
CREATE INDEX job_logs_job_sequence ON job_logs(job_id, sequence);
-- Every status a job entered, and the change that set it; changed_at is
-- microseconds since the Unix epoch.
CREATE TABLE job_status_changes (
  job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  sequence INTEGER NOT NULL,
  status TEXT NOT NULL,
  changed_at INTEGER NOT NULL,
  PRIMARY KEY (job_id, sequence)
) WITHOUT ROWID;
)sql"},
    {"binary progress and result of jobs", R"sql(
-- The progress (a serialized jobline.v2.JobProgress; empty for none) and
-- the result (a serialized google.protobuf.Value; NULL for none) of a job,
-- in place of protobuf's JSON text.
ALTER TABLE jobs RENAME COLUMN progress TO progress_json;
ALTER TABLE jobs RENAME COLUMN result TO result_json;
ALTER TABLE jobs ADD COLUMN progress BLOB NOT NULL DEFAULT x'';
ALTER TABLE jobs ADD COLUMN result BLOB;
)sql",
     ConvertJsonColumns, R"sql(
ALTER TABLE jobs DROP COLUMN progress_json;
ALTER TABLE jobs DROP COLUMN result_json;
)sql"},
    {"job counts by project and status", R"sql(
-- How many jobs each project has in each status, kept by the triggers
-- below in the transaction of every insert, delete (cascades included) and
-- change of a job's project or status. A count may fall to 0 and stay.
CREATE TABLE job_counts (
  project_id INTEGER NOT NULL,
  status TEXT NOT NULL,
  count INTEGER NOT NULL,
  PRIMARY KEY (project_id, status)
) WITHOUT ROWID;
INSERT INTO job_counts (project_id, status, count)
    SELECT project_id, status, COUNT(*) FROM jobs GROUP BY project_id, status;
CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs BEGIN
  INSERT INTO job_counts (project_id, status, count)
      VALUES (NEW.project_id, NEW.status, 1)
      ON CONFLICT (project_id, status) DO UPDATE SET count = count + 1;
END;
CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs BEGIN
  UPDATE job_counts SET count = count - 1
      WHERE project_id = OLD.project_id AND status = OLD.status;
END;
CREATE TRIGGER jobs_count_update AFTER UPDATE OF project_id, status ON jobs
    WHEN OLD.project_id IS NOT NEW.project_id OR OLD.status IS NOT NEW.status
BEGIN
  UPDATE job_counts SET count = count - 1
      WHERE project_id = OLD.project_id AND status = OLD.status;
  INSERT INTO job_counts (project_id, status, count)
      VALUES (NEW.project_id, NEW.status, 1)
      ON CONFLICT (project_id, status) DO UPDATE SET count = count + 1;
END;
)sql"},
    {"partial reference indexes and the queue index", R"sql(
-- Most jobs have none of these references: the indexes hold only the jobs
-- that do (SQLite still uses them for "<column> = ?", so for the foreign
-- keys' cascades too).
DROP INDEX jobs_deployment;
CREATE INDEX jobs_deployment ON jobs(deployment_id)
    WHERE deployment_id IS NOT NULL;
DROP INDEX jobs_collection;
CREATE INDEX jobs_collection ON jobs(source_image_collection_id)
    WHERE source_image_collection_id IS NOT NULL;
DROP INDEX jobs_capture;
CREATE INDEX jobs_capture ON jobs(source_image_single_id)
    WHERE source_image_single_id IS NOT NULL;
DROP INDEX jobs_pipeline;
CREATE INDEX jobs_pipeline ON jobs(pipeline_id)
    WHERE pipeline_id IS NOT NULL;
DROP INDEX jobs_data_export;
CREATE INDEX jobs_data_export ON jobs(data_export_id)
    WHERE data_export_id IS NOT NULL;
-- The jobs waiting in a queue (unleased), by queue: the runner's
-- (lease_holder 'jobline-runner') apart from the workers' (''), and the
-- workers' by type, oldest scheduled first.
CREATE INDEX jobs_queue ON jobs(status, lease_holder, job_type_key,
                                scheduled_at)
    WHERE lease_id IS NULL;
)sql"},
};

constexpr int kSchemaVersion = static_cast<int>(std::size(kMigrations));

// Runs `sql` (statements without parameters or results) on `db`.
absl::Status Exec(sqlite3* db, const char* sql, absl::string_view context) {
  if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
    return SqliteError(db, context);
  }
  return absl::OkStatus();
}

// Applies migration `version` (1-based) unless a concurrent opener of the
// same file already did, all inside one IMMEDIATE transaction.
absl::Status ApplyMigration(sqlite3* db, absl::string_view db_name,
                            int version) {
  const std::string context = absl::StrCat("migrating database ", db_name,
                                           " to schema version ", version);
  absl::Status status = Exec(db, "BEGIN IMMEDIATE", context);
  if (!status.ok()) return status;

  // Re-read the version under the write lock: another process may have
  // migrated the file since it was read.
  absl::StatusOr<int> current = ReadSchemaVersion(db);
  if (!current.ok()) {
    status = current.status();
  } else if (*current < version) {
    const Migration& migration = kMigrations[version - 1];
    status = Exec(db, migration.sql, context);
    if (status.ok() && migration.fill != nullptr) {
      status = migration.fill(db, context);
    }
    if (status.ok() && migration.finish_sql != nullptr) {
      status = Exec(db, migration.finish_sql, context);
    }
    if (status.ok()) {
      const std::string bump = absl::StrCat("PRAGMA user_version = ", version);
      status = Exec(db, bump.c_str(), context);
    }
  }
  if (status.ok()) status = Exec(db, "COMMIT", context);
  if (!status.ok()) {
    // Some errors end the transaction by themselves.
    if (!sqlite3_get_autocommit(db)) {
      sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    }
    return status;
  }
  LOG(INFO) << "Database " << db_name << " migrated to schema version "
            << version << " (" << kMigrations[version - 1].description << ")";
  return absl::OkStatus();
}

}  // namespace

int CurrentSchemaVersion() { return kSchemaVersion; }

absl::StatusOr<int> ReadSchemaVersion(sqlite3* db) {
  constexpr absl::string_view kContext = "reading the schema version";
  absl::StatusOr<SqliteStmtPtr> stmt =
      PrepareStatement(db, "PRAGMA user_version", kContext);
  if (!stmt.ok()) return stmt.status();
  Statement query(db, stmt->get(), std::string(kContext));
  absl::StatusOr<bool> row = query.Step();
  if (!row.ok()) return row.status();
  if (!*row) return absl::InternalError("the schema version is missing");
  return static_cast<int>(query.Int64(0));
}

absl::Status MigrateSchema(sqlite3* db, absl::string_view db_name,
                           int target_version) {
  if (target_version < 1 || target_version > kSchemaVersion) {
    return absl::InvalidArgumentError(absl::StrCat(
        "schema version ", target_version,
        " is not one this jobline knows (1..", kSchemaVersion, ")"));
  }
  absl::StatusOr<int> version = ReadSchemaVersion(db);
  if (!version.ok()) return version.status();
  if (*version > kSchemaVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat(db_name, ": database schema version ", *version,
                     " is newer than this jobline supports (", kSchemaVersion,
                     "); upgrade jobline"));
  }
  if (*version >= target_version) return absl::OkStatus();
  if (sqlite3_db_readonly(db, "main") == 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        db_name, ": database schema version ", *version,
        " must be migrated to version ", target_version,
        ", but the database is read-only; open it once with write access"));
  }
  for (int next = *version + 1; next <= target_version; ++next) {
    const absl::Status status = ApplyMigration(db, db_name, next);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::Status MigrateSchema(sqlite3* db, absl::string_view db_name) {
  return MigrateSchema(db, db_name, kSchemaVersion);
}

}  // namespace jobline
