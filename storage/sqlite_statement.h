// RAII handles for SQLite connections and statements; SqliteConnection, a
// connection with its cache of prepared statements; and Statement, one
// execution of a prepared statement with bound parameters.
//
// Thread safety: none of these types is safe for concurrent use; callers
// serialize all use of a connection and its statements.

#ifndef JOBLINE_STORAGE_SQLITE_STATEMENT_H_
#define JOBLINE_STORAGE_SQLITE_STATEMENT_H_

#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace jobline {

// Closes a connection (sqlite3_close_v2, so unfinalized statements do not
// keep it from closing).
struct SqliteDbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using SqliteDbPtr = std::unique_ptr<sqlite3, SqliteDbCloser>;

// Finalizes a prepared statement.
struct SqliteStmtFinalizer {
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};
using SqliteStmtPtr = std::unique_ptr<sqlite3_stmt, SqliteStmtFinalizer>;

// Prepares `sql` (one statement) on `db` with sqlite3_prepare_v2. Errors
// are mapped by SqliteError() with `context` as the message prefix.
absl::StatusOr<SqliteStmtPtr> PrepareStatement(sqlite3* db,
                                               absl::string_view sql,
                                               absl::string_view context);

// A connection and the statements prepared on it, each kept for reuse by
// its SQL text. The statements are finalized before the connection closes.
// Not thread-safe: the owner serializes every use (typically with a mutex
// that guards the SqliteConnection).
class SqliteConnection {
 public:
  explicit SqliteConnection(SqliteDbPtr db);

  SqliteConnection(const SqliteConnection&) = delete;
  SqliteConnection& operator=(const SqliteConnection&) = delete;

  sqlite3* db() const { return db_.get(); }

  // The cached statement for `sql`, prepared on first use. Errors as
  // PrepareStatement() maps them.
  absl::StatusOr<sqlite3_stmt*> Cached(absl::string_view sql);

  // Runs the cached statement `sql`, which returns no rows; errors carry
  // `what` as their prefix.
  absl::Status RunCached(absl::string_view sql, absl::string_view what);

  // Like Cached(), for SQL built at run time (the shapes of a query): at
  // most kMaxQueries are kept, and when that many are, all of them are
  // finalized before the next is prepared. So a statement it returns is
  // valid only until the next CachedQuery() call.
  absl::StatusOr<sqlite3_stmt*> CachedQuery(absl::string_view sql);
  static constexpr size_t kMaxQueries = 64;

  // Statements in the caches now (both kinds).
  size_t cached_statements() const {
    return statements_.size() + queries_.size();
  }

 private:
  using StatementMap = std::map<std::string, SqliteStmtPtr, std::less<>>;
  absl::StatusOr<sqlite3_stmt*> Find(StatementMap& map, absl::string_view sql);

  // Declared first, so that it closes after every statement is finalized.
  const SqliteDbPtr db_;
  StatementMap statements_;
  StatementMap queries_;
};

// One execution of a prepared statement. Parameters are bound in order
// with the Bind* methods (the first call binds "?1", the next "?2", ...),
// then Step() or Run() executes. On destruction the statement is reset and
// its bindings cleared, so a cached statement is ready for its next use and
// holds no read transaction open.
//
// Does not own `db` or `stmt`; both must outlive the Statement. Errors
// carry `context` (what was being done, never SQL) as their prefix.
class Statement {
 public:
  Statement(sqlite3* db, sqlite3_stmt* stmt, std::string context);
  ~Statement();

  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // Binders. A failed bind is reported by the next Step() or Run().
  Statement& BindInt64(int64_t value);
  Statement& BindOptionalInt64(std::optional<int64_t> value);
  Statement& BindText(absl::string_view value);
  Statement& BindOptionalText(const std::optional<std::string>& value);
  Statement& BindBlob(absl::string_view value);
  Statement& BindOptionalBlob(const std::optional<std::string>& value);
  Statement& BindNull();

  // Executes one step: true if a row is available, false when done.
  absl::StatusOr<bool> Step();

  // Executes to completion, ignoring any rows.
  absl::Status Run();

  // Columns of the current row (0-based), valid after Step() returned true.
  bool IsNull(int column) const;
  int64_t Int64(int column) const;
  std::optional<int64_t> OptionalInt64(int column) const;
  std::string Text(int column) const;
  std::optional<std::string> OptionalText(int column) const;
  std::string Blob(int column) const;
  // The bytes of a BLOB (or any) column, without a copy; valid until the
  // next Step() or the Statement's end.
  absl::string_view BlobView(int column) const;
  // True if the column's value is TEXT (not a BLOB, number or NULL).
  bool IsText(int column) const;

 private:
  // Records the result of a sqlite3_bind_* call and advances the index.
  Statement& Bound(int rc);

  sqlite3* const db_;         // Not owned.
  sqlite3_stmt* const stmt_;  // Not owned.
  const std::string context_;
  int next_index_ = 1;
  absl::Status bind_status_;
};

}  // namespace jobline

#endif  // JOBLINE_STORAGE_SQLITE_STATEMENT_H_
