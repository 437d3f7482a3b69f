// The SQLite schema of the job store and its versioned migrations.
//
// The schema version is kept in PRAGMA user_version. Migration N brings a
// database from version N-1 to N; each runs in its own IMMEDIATE
// transaction together with the user_version bump, so a crash leaves the
// database at a whole version. A database newer than this binary is
// refused, never downgraded.
//
// Tables (version 3): projects, deployments, pipelines, capture_collections,
// captures, data_exports (reference records: id, the columns queries need
// and the record as a serialized proto), jobs (with the job's lease since
// version 3), job_logs and collection_captures. Timestamps are INTEGER
// microseconds since the Unix epoch (UTC). Migration 3 copies each
// capture's path from its stored record into the new captures.path column
// (unique: of captures that share a path, the lowest id gets it).
// Version 4 adds change sequences and job_status_changes. Version 5 stores
// a job's progress and result as serialized protobuf messages (BLOB)
// instead of JSON text, converting every stored job. Version 6 adds
// job_counts (jobs by project and status), filled from the jobs and kept
// by triggers. Version 7 makes the five reference indexes partial (non-null
// references only) and adds jobs_queue, the unleased jobs by queue.
//
// Thread safety: the functions use only the connection they are given; the
// caller serializes its use.

#ifndef JOBLINE_STORAGE_SCHEMA_H_
#define JOBLINE_STORAGE_SCHEMA_H_

#include <sqlite3.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace jobline {

// The schema version this binary writes (the number of migrations).
int CurrentSchemaVersion();

// Reads PRAGMA user_version. DATA_LOSS if `db` is not a database; other
// errors as SqliteError() maps them.
absl::StatusOr<int> ReadSchemaVersion(sqlite3* db);

// Applies the migrations that bring `db` to `target_version`
// (1..CurrentSchemaVersion()); a database already at or past it is left
// alone. `db_name` names the database in messages (they are for operators).
// Errors:
//   FAILED_PRECONDITION  the database is newer than CurrentSchemaVersion(),
//                        or it needs a migration but is open read-only
//   INVALID_ARGUMENT     `target_version` out of range
//   others               as SqliteError() maps them; nothing of the failed
//                        migration is kept
absl::Status MigrateSchema(sqlite3* db, absl::string_view db_name,
                           int target_version);

// MigrateSchema(db, db_name, CurrentSchemaVersion()).
absl::Status MigrateSchema(sqlite3* db, absl::string_view db_name);

}  // namespace jobline

#endif  // JOBLINE_STORAGE_SCHEMA_H_
