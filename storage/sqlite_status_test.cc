#include "storage/sqlite_status.h"

#include <sqlite3.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace jobline {
namespace {

using Connection = std::unique_ptr<sqlite3, decltype(&sqlite3_close)>;

Connection OpenMemory() {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(":memory:", &db), SQLITE_OK);
  return Connection(db, &sqlite3_close);
}

TEST(SqliteStatus, MapsResultCodesByTheErrorTable) {
  const struct {
    int sqlite_code;
    absl::StatusCode expected;
  } cases[] = {
      {SQLITE_CONSTRAINT_UNIQUE, absl::StatusCode::kAlreadyExists},
      {SQLITE_CONSTRAINT_PRIMARYKEY, absl::StatusCode::kAlreadyExists},
      {SQLITE_CONSTRAINT_FOREIGNKEY, absl::StatusCode::kInvalidArgument},
      {SQLITE_CONSTRAINT, absl::StatusCode::kInternal},
      {SQLITE_CONSTRAINT_NOTNULL, absl::StatusCode::kInternal},
      {SQLITE_CONSTRAINT_CHECK, absl::StatusCode::kInternal},
      {SQLITE_BUSY, absl::StatusCode::kAborted},
      {SQLITE_BUSY_SNAPSHOT, absl::StatusCode::kAborted},
      {SQLITE_BUSY_TIMEOUT, absl::StatusCode::kAborted},
      {SQLITE_LOCKED, absl::StatusCode::kAborted},
      {SQLITE_LOCKED_SHAREDCACHE, absl::StatusCode::kAborted},
      {SQLITE_CORRUPT, absl::StatusCode::kDataLoss},
      {SQLITE_CORRUPT_INDEX, absl::StatusCode::kDataLoss},
      {SQLITE_NOTADB, absl::StatusCode::kDataLoss},
      {SQLITE_FULL, absl::StatusCode::kUnavailable},
      {SQLITE_READONLY, absl::StatusCode::kUnavailable},
      {SQLITE_READONLY_DBMOVED, absl::StatusCode::kUnavailable},
      {SQLITE_CANTOPEN, absl::StatusCode::kUnavailable},
      {SQLITE_CANTOPEN_ISDIR, absl::StatusCode::kUnavailable},
      {SQLITE_IOERR, absl::StatusCode::kUnavailable},
      {SQLITE_IOERR_WRITE, absl::StatusCode::kUnavailable},
      {SQLITE_OK, absl::StatusCode::kInternal},
      {SQLITE_ERROR, absl::StatusCode::kInternal},
      {SQLITE_MISUSE, absl::StatusCode::kInternal},
      {SQLITE_NOMEM, absl::StatusCode::kInternal},
  };
  for (const auto& test_case : cases) {
    EXPECT_EQ(SqliteStatusCode(test_case.sqlite_code), test_case.expected)
        << "SQLite code " << test_case.sqlite_code;
  }
}

TEST(SqliteStatus, CodeErrorJoinsContextAndGenericDescription) {
  const absl::Status status = SqliteCodeError(SQLITE_BUSY, "writing job 3");
  EXPECT_EQ(status.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(status.message(), "writing job 3: database is locked");
}

TEST(SqliteStatus, FullDiskIsUnavailableAndSaysSo) {
  const absl::Status status = SqliteCodeError(SQLITE_FULL, "committing");
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(status.message(), "committing: database or disk is full");
}

TEST(SqliteStatus, ConnectionErrorReadsExtendedCodeAndHidesSql) {
  const Connection db = OpenMemory();
  ASSERT_EQ(sqlite3_exec(db.get(),
                         "CREATE TABLE secret_table (id INTEGER PRIMARY KEY);"
                         "INSERT INTO secret_table VALUES (1);",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);

  // A duplicate primary key: the extended code makes it ALREADY_EXISTS.
  ASSERT_EQ(sqlite3_exec(db.get(), "INSERT INTO secret_table VALUES (1)",
                         nullptr, nullptr, nullptr),
            SQLITE_CONSTRAINT);
  const absl::Status duplicate = SqliteError(db.get(), "inserting a row");
  EXPECT_EQ(duplicate.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(duplicate.message(), "inserting a row: constraint failed");

  // SQLite's own message would name the table; ours does not.
  ASSERT_EQ(sqlite3_exec(db.get(), "SELECT * FROM missing_table", nullptr,
                         nullptr, nullptr),
            SQLITE_ERROR);
  EXPECT_EQ(std::string(sqlite3_errmsg(db.get())),
            "no such table: missing_table");
  const absl::Status missing = SqliteError(db.get(), "reading rows");
  EXPECT_EQ(missing.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(missing.message(), "reading rows: SQL logic error");
}

TEST(SqliteStatus, NullConnectionIsOutOfMemory) {
  const absl::Status status = SqliteError(nullptr, "opening the database");
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(status.message(), "opening the database: out of memory");
}

}  // namespace
}  // namespace jobline
