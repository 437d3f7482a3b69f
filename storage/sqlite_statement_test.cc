// Tests of SqliteConnection's statement caches and of Statement's binders
// and column readers.

#include "storage/sqlite_statement.h"

#include <sqlite3.h>

#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace jobline {
namespace {

SqliteConnection OpenMemory() {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(":memory:", &db), SQLITE_OK);
  return SqliteConnection(SqliteDbPtr(db));
}

TEST(SqliteConnection, CachedKeepsOneStatementForEachText) {
  SqliteConnection conn = OpenMemory();
  const absl::StatusOr<sqlite3_stmt*> first = conn.Cached("SELECT 1");
  const absl::StatusOr<sqlite3_stmt*> again = conn.Cached("SELECT 1");
  const absl::StatusOr<sqlite3_stmt*> other = conn.Cached("SELECT 2");
  ASSERT_TRUE(first.ok() && again.ok() && other.ok());
  EXPECT_EQ(*first, *again);
  EXPECT_NE(*first, *other);
  EXPECT_EQ(conn.cached_statements(), 2);
  EXPECT_EQ(conn.Cached("SELEC nothing").status().code(),
            absl::StatusCode::kInternal);
  EXPECT_EQ(conn.cached_statements(), 2);
}

TEST(SqliteConnection, CachedQueryKeepsAtMostItsLimit) {
  SqliteConnection conn = OpenMemory();
  ASSERT_TRUE(conn.Cached("SELECT 0").ok());
  const std::string kFirst = "SELECT 1";
  const absl::StatusOr<sqlite3_stmt*> first = conn.CachedQuery(kFirst);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*conn.CachedQuery(kFirst), *first);

  // Up to the limit every query stays; the next one starts a new cache.
  for (size_t i = 2; i <= SqliteConnection::kMaxQueries; ++i) {
    ASSERT_TRUE(conn.CachedQuery(absl::StrCat("SELECT ", i)).ok());
  }
  EXPECT_EQ(conn.cached_statements(), 1 + SqliteConnection::kMaxQueries);
  EXPECT_EQ(*conn.CachedQuery(kFirst), *first);
  ASSERT_TRUE(conn.CachedQuery("SELECT 'one more'").ok());
  EXPECT_EQ(conn.cached_statements(), 2);

  // What it returns runs.
  const absl::StatusOr<sqlite3_stmt*> stmt = conn.CachedQuery("SELECT 7");
  ASSERT_TRUE(stmt.ok());
  Statement query(conn.db(), *stmt, "test");
  ASSERT_TRUE(query.Step().value());
  EXPECT_EQ(query.Int64(0), 7);
}

TEST(Statement, AnEmptyBlobIsNotNull) {
  SqliteConnection conn = OpenMemory();
  const absl::StatusOr<sqlite3_stmt*> stmt =
      conn.Cached("SELECT typeof(?1), length(?1), typeof(?2), ?3");
  ASSERT_TRUE(stmt.ok());
  Statement query(conn.db(), *stmt, "test");
  query.BindBlob(absl::string_view())
      .BindOptionalBlob(std::nullopt)
      .BindBlob(std::string("a\0b", 3));
  ASSERT_TRUE(query.Step().value());
  EXPECT_EQ(query.Text(0), "blob");
  EXPECT_EQ(query.Int64(1), 0);
  EXPECT_EQ(query.Text(2), "null");
  EXPECT_EQ(query.BlobView(3), absl::string_view("a\0b", 3));
  EXPECT_FALSE(query.IsText(3));
  EXPECT_TRUE(query.IsText(0));
}

}  // namespace
}  // namespace jobline
