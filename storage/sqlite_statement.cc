#include "storage/sqlite_statement.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "storage/sqlite_status.h"

namespace jobline {

absl::StatusOr<SqliteStmtPtr> PrepareStatement(sqlite3* db,
                                               absl::string_view sql,
                                               absl::string_view context) {
  sqlite3_stmt* raw = nullptr;
  const int rc = sqlite3_prepare_v2(
      db, sql.data(), static_cast<int>(sql.size()), &raw, nullptr);
  SqliteStmtPtr stmt(raw);
  if (rc != SQLITE_OK) return SqliteError(db, context);
  if (stmt == nullptr) {
    return absl::InternalError(absl::StrCat(context, ": empty statement"));
  }
  return stmt;
}

SqliteConnection::SqliteConnection(SqliteDbPtr db) : db_(std::move(db)) {}

absl::StatusOr<sqlite3_stmt*> SqliteConnection::Find(StatementMap& map,
                                                     absl::string_view sql) {
  auto it = map.find(sql);
  if (it == map.end()) {
    absl::StatusOr<SqliteStmtPtr> stmt =
        PrepareStatement(db_.get(), sql, "preparing a statement");
    if (!stmt.ok()) return stmt.status();
    it = map.emplace(std::string(sql), *std::move(stmt)).first;
  }
  return it->second.get();
}

absl::StatusOr<sqlite3_stmt*> SqliteConnection::Cached(absl::string_view sql) {
  return Find(statements_, sql);
}

absl::StatusOr<sqlite3_stmt*> SqliteConnection::CachedQuery(
    absl::string_view sql) {
  if (queries_.size() >= kMaxQueries && queries_.find(sql) == queries_.end()) {
    queries_.clear();
  }
  return Find(queries_, sql);
}

absl::Status SqliteConnection::RunCached(absl::string_view sql,
                                         absl::string_view what) {
  absl::StatusOr<sqlite3_stmt*> stmt = Cached(sql);
  if (!stmt.ok()) return stmt.status();
  return Statement(db_.get(), *stmt, std::string(what)).Run();
}

Statement::Statement(sqlite3* db, sqlite3_stmt* stmt, std::string context)
    : db_(db), stmt_(stmt), context_(std::move(context)) {}

Statement::~Statement() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

Statement& Statement::Bound(int rc) {
  if (rc != SQLITE_OK && bind_status_.ok()) {
    bind_status_ = SqliteError(db_, context_);
  }
  ++next_index_;
  return *this;
}

Statement& Statement::BindInt64(int64_t value) {
  return Bound(sqlite3_bind_int64(stmt_, next_index_, value));
}

Statement& Statement::BindOptionalInt64(std::optional<int64_t> value) {
  return value.has_value() ? BindInt64(*value) : BindNull();
}

Statement& Statement::BindText(absl::string_view value) {
  return Bound(sqlite3_bind_text64(stmt_, next_index_, value.data(),
                                   value.size(), SQLITE_TRANSIENT,
                                   SQLITE_UTF8));
}

Statement& Statement::BindOptionalText(
    const std::optional<std::string>& value) {
  return value.has_value() ? BindText(*value) : BindNull();
}

Statement& Statement::BindBlob(absl::string_view value) {
  // SQLite binds NULL for a null pointer; an empty value is an empty BLOB.
  return Bound(sqlite3_bind_blob64(stmt_, next_index_,
                                   value.data() != nullptr ? value.data() : "",
                                   value.size(), SQLITE_TRANSIENT));
}

Statement& Statement::BindOptionalBlob(
    const std::optional<std::string>& value) {
  return value.has_value() ? BindBlob(*value) : BindNull();
}

Statement& Statement::BindNull() {
  return Bound(sqlite3_bind_null(stmt_, next_index_));
}

absl::StatusOr<bool> Statement::Step() {
  if (!bind_status_.ok()) return bind_status_;
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return SqliteError(db_, context_);
}

absl::Status Statement::Run() {
  while (true) {
    absl::StatusOr<bool> row = Step();
    if (!row.ok()) return row.status();
    if (!*row) return absl::OkStatus();
  }
}

bool Statement::IsNull(int column) const {
  return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

int64_t Statement::Int64(int column) const {
  return sqlite3_column_int64(stmt_, column);
}

std::optional<int64_t> Statement::OptionalInt64(int column) const {
  if (IsNull(column)) return std::nullopt;
  return Int64(column);
}

std::string Statement::Text(int column) const {
  const unsigned char* text = sqlite3_column_text(stmt_, column);
  if (text == nullptr) return std::string();
  return std::string(reinterpret_cast<const char*>(text),
                     sqlite3_column_bytes(stmt_, column));
}

std::optional<std::string> Statement::OptionalText(int column) const {
  if (IsNull(column)) return std::nullopt;
  return Text(column);
}

absl::string_view Statement::BlobView(int column) const {
  const void* blob = sqlite3_column_blob(stmt_, column);
  if (blob == nullptr) return absl::string_view();
  return absl::string_view(static_cast<const char*>(blob),
                           sqlite3_column_bytes(stmt_, column));
}

bool Statement::IsText(int column) const {
  return sqlite3_column_type(stmt_, column) == SQLITE_TEXT;
}

std::string Statement::Blob(int column) const {
  const void* blob = sqlite3_column_blob(stmt_, column);
  if (blob == nullptr) return std::string();
  return std::string(static_cast<const char*>(blob),
                     sqlite3_column_bytes(stmt_, column));
}

}  // namespace jobline
