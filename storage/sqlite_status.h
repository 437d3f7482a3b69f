// Mapping of SQLite result codes to absl::Status.
//
// Every SQLite failure in storage/ becomes an absl::Status through
// SqliteError(), so the codes callers see follow the error table of
// JobStore (storage/job_store.h) and messages never carry SQL text.

#ifndef JOBLINE_STORAGE_SQLITE_STATUS_H_
#define JOBLINE_STORAGE_SQLITE_STATUS_H_

#include <sqlite3.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace jobline {

// The absl code for an extended SQLite result code:
//   SQLITE_CONSTRAINT_UNIQUE, SQLITE_CONSTRAINT_PRIMARYKEY  ALREADY_EXISTS
//   SQLITE_CONSTRAINT_FOREIGNKEY                            INVALID_ARGUMENT
//   SQLITE_BUSY*, SQLITE_LOCKED*                            ABORTED
//   SQLITE_CORRUPT*, SQLITE_NOTADB                          DATA_LOSS
//   SQLITE_FULL, SQLITE_READONLY*, SQLITE_CANTOPEN*,
//   SQLITE_IOERR*                                           UNAVAILABLE
//   anything else (including SQLITE_OK)                     INTERNAL
// A primary code (e.g. SQLITE_BUSY) maps like its extended variants; a
// bare SQLITE_CONSTRAINT maps to INTERNAL.
absl::StatusCode SqliteStatusCode(int extended_code);

// The error of the last failed call on `db`, read with
// sqlite3_extended_errcode(). The message is "<context>: <description>",
// where the description is SQLite's generic text for the code (never SQL
// text). `context` says what was being done, e.g. "reading job 12".
// REQUIRES: the last call on `db` failed; the caller serializes use of `db`.
absl::Status SqliteError(sqlite3* db, absl::string_view context);

// Same, for a result code that is not (or not reliably) recorded on a
// connection, e.g. the result of sqlite3_open_v2() without a handle.
absl::Status SqliteCodeError(int extended_code, absl::string_view context);

}  // namespace jobline

#endif  // JOBLINE_STORAGE_SQLITE_STATUS_H_
