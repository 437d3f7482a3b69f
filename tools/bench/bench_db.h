// Databases for the storage benchmarks (tools/bench:sqlite_limit and
// tools/bench:preload): made through Jobline's own store, then written
// with plain SQL on a connection set up as the server sets up its own.
//
// CreateBenchDatabase makes a new database file through OpenSqliteJobStore
// (so the schema and its indexes are the server's, at the current version)
// and imports a catalogue into it, which the jobs then refer to.
// OpenServerLikeConnection opens that file as SqliteJobStore does: one
// connection without SQLite's mutex, extended result codes, the busy
// timeout, foreign keys on, WAL, and the given synchronous level.
//
// Thread safety: the functions may be called from any thread; a
// BenchStatements is used from one thread at a time.

#ifndef JOBLINE_TOOLS_BENCH_BENCH_DB_H_
#define JOBLINE_TOOLS_BENCH_BENCH_DB_H_

#include <sqlite3.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "jobline/v2/catalog.pb.h"
#include "storage/sqlite_statement.h"

namespace jobline {
namespace bench {

// SQLite's synchronous levels the server offers (--synchronous).
enum class Synchronous { kFull, kNormal };

// "full" or "normal" (any case); INVALID_ARGUMENT otherwise.
absl::StatusOr<Synchronous> ParseSynchronous(absl::string_view name);
absl::string_view SynchronousName(Synchronous level);

// Makes the database `path` with the current schema and `catalog`.
// FAILED_PRECONDITION if a file is there already (nothing is overwritten);
// otherwise the store's errors.
absl::Status CreateBenchDatabase(const std::string& path,
                                 const v2::Catalog& catalog);

// A connection to the existing database `path`, with the settings of
// SqliteJobStore at `synchronous`. INTERNAL with SQLite's message on
// failure.
absl::StatusOr<SqliteDbPtr> OpenServerLikeConnection(const std::string& path,
                                                     Synchronous synchronous);

// Runs `sql` (statements without parameters or rows) on `db`. INTERNAL
// with SQLite's message on failure.
absl::Status Exec(sqlite3* db, absl::string_view sql);

// A prepared statement of `sql` on `db`. INTERNAL with SQLite's message.
absl::StatusOr<SqliteStmtPtr> Prepare(sqlite3* db, absl::string_view sql);

// Steps `stmt` to completion and resets it, keeping its bindings cleared
// for the next row. INTERNAL with SQLite's message and `what`.
absl::Status RunAndReset(sqlite3* db, sqlite3_stmt* stmt,
                         absl::string_view what);

// The SQL the store writes a new job with (storage/sqlite_job_store.cc),
// its 25 parameters in column order, and the status-change row that goes
// with it (job_id, sequence, status, changed_at).
extern const char kInsertJobSql[];
extern const char kInsertStatusChangeSql[];
// A log line: job_id, created_at, level, message, sequence.
extern const char kInsertLogSql[];

// Bytes of the database file and its WAL at `path`; 0 for a missing file.
int64_t DatabaseBytes(const std::string& path);

}  // namespace bench
}  // namespace jobline

#endif  // JOBLINE_TOOLS_BENCH_BENCH_DB_H_
