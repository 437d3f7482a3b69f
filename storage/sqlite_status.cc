#include "storage/sqlite_status.h"

#include "absl/strings/str_cat.h"

namespace jobline {

absl::StatusCode SqliteStatusCode(int extended_code) {
  switch (extended_code) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
      return absl::StatusCode::kAlreadyExists;
    case SQLITE_CONSTRAINT_FOREIGNKEY:
      return absl::StatusCode::kInvalidArgument;
    default:
      break;
  }
  // The low byte of an extended code is its primary code.
  switch (extended_code & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::StatusCode::kAborted;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::StatusCode::kDataLoss;
    // A full disk is a passing state of the machine, like a read-only
    // file: the write may succeed once space is freed, so callers retry.
    case SQLITE_FULL:
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR:
      return absl::StatusCode::kUnavailable;
    default:
      return absl::StatusCode::kInternal;
  }
}

absl::Status SqliteCodeError(int extended_code, absl::string_view context) {
  return absl::Status(
      SqliteStatusCode(extended_code),
      absl::StrCat(context, ": ", sqlite3_errstr(extended_code)));
}

absl::Status SqliteError(sqlite3* db, absl::string_view context) {
  const int code = db == nullptr ? SQLITE_NOMEM : sqlite3_extended_errcode(db);
  return SqliteCodeError(code, context);
}

}  // namespace jobline
