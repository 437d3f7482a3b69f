#include "storage/schema.h"

#include <sqlite3.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace jobline {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

using Connection = std::unique_ptr<sqlite3, decltype(&sqlite3_close)>;

Connection OpenMemory() {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(":memory:", &db), SQLITE_OK);
  return Connection(db, &sqlite3_close);
}

void Execute(sqlite3* db, const std::string& sql) {
  ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
      << sql << ": " << sqlite3_errmsg(db);
}

// The version in PRAGMA user_version, or -1 after an error.
int Version(sqlite3* db) {
  const absl::StatusOr<int> version = ReadSchemaVersion(db);
  EXPECT_TRUE(version.ok()) << version.status();
  return version.ok() ? *version : -1;
}

// The first column of every row of `sql`, as text.
std::vector<std::string> Column(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* stmt = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK)
      << sql << ": " << sqlite3_errmsg(db);
  std::vector<std::string> values;
  while (sqlite3_step(stmt) == SQLITE_ROW) {
    const unsigned char* text = sqlite3_column_text(stmt, 0);
    values.emplace_back(text == nullptr ? "NULL"
                                        : reinterpret_cast<const char*>(text));
  }
  sqlite3_finalize(stmt);
  return values;
}

// The names of the tables of `db`, SQLite's own excluded, sorted.
std::vector<std::string> Tables(sqlite3* db) {
  return Column(db,
                "SELECT name FROM sqlite_master WHERE type = 'table' AND "
                "name NOT LIKE 'sqlite_%' ORDER BY name");
}

// The names of the explicit indexes of `table`, sorted.
std::vector<std::string> Indexes(sqlite3* db, const std::string& table) {
  return Column(db,
                "SELECT name FROM sqlite_master WHERE type = 'index' AND "
                "sql IS NOT NULL AND tbl_name = '" +
                    table + "' ORDER BY name");
}

// The column names of `table`, in order.
std::vector<std::string> Columns(sqlite3* db, const std::string& table) {
  return Column(
      db, "SELECT name FROM pragma_table_info('" + table + "') ORDER BY cid");
}

TEST(Schema, CurrentVersionIsTheNumberOfMigrations) {
  EXPECT_EQ(CurrentSchemaVersion(), 7);
}

TEST(Schema, FreshDatabaseIsAtVersionZero) {
  const Connection db = OpenMemory();
  EXPECT_EQ(Version(db.get()), 0);
  EXPECT_THAT(Tables(db.get()), IsEmpty());
}

TEST(Schema, MigrateBringsFreshDatabaseToCurrentVersion) {
  const Connection db = OpenMemory();
  ASSERT_TRUE(MigrateSchema(db.get(), "test.db").ok());
  EXPECT_EQ(Version(db.get()), CurrentSchemaVersion());
  EXPECT_THAT(
      Tables(db.get()),
      ElementsAre("capture_collections", "captures", "collection_captures",
                  "data_exports", "deployments", "job_counts", "job_logs",
                  "job_status_changes", "jobs", "pipelines", "projects"));
}

TEST(Schema, MigratesOneVersionAtATime) {
  const Connection db = OpenMemory();
  ASSERT_TRUE(MigrateSchema(db.get(), "test.db", 1).ok());
  EXPECT_EQ(Version(db.get()), 1);
  EXPECT_THAT(
      Tables(db.get()),
      ElementsAre("capture_collections", "captures", "data_exports",
                  "deployments", "job_logs", "jobs", "pipelines", "projects"));

  ASSERT_TRUE(MigrateSchema(db.get(), "test.db", 2).ok());
  EXPECT_EQ(Version(db.get()), 2);
  EXPECT_EQ(Tables(db.get()).size(), 9);
  EXPECT_THAT(Columns(db.get(), "captures"),
              ElementsAre("id", "deployment_id", "record"));

  ASSERT_TRUE(MigrateSchema(db.get(), "test.db", 3).ok());
  EXPECT_EQ(Version(db.get()), 3);
  EXPECT_EQ(Tables(db.get()).size(), 9);
}

TEST(Schema, VersionThreeAddsLeasesAndCapturePaths) {
  const Connection db = OpenMemory();
  ASSERT_TRUE(MigrateSchema(db.get(), "test.db", 3).ok());
  const std::vector<std::string> job_columns = Columns(db.get(), "jobs");
  ASSERT_GE(job_columns.size(), 4);
  EXPECT_THAT(
      std::vector<std::string>(job_columns.end() - 4, job_columns.end()),
      ElementsAre("lease_id", "lease_holder", "lease_expires_at", "attempts"));
  EXPECT_THAT(
      Indexes(db.get(), "jobs"),
      ElementsAre("jobs_capture", "jobs_collection", "jobs_created",
                  "jobs_data_export", "jobs_deployment", "jobs_job_type",
                  "jobs_lease_expires", "jobs_lease_holder", "jobs_pipeline",
                  "jobs_project_created", "jobs_status_created",
                  "jobs_status_type_scheduled", "jobs_status_updated"));
  EXPECT_THAT(Columns(db.get(), "captures"),
              ElementsAre("id", "deployment_id", "record", "path"));
  EXPECT_THAT(Indexes(db.get(), "captures"),
              ElementsAre("captures_deployment", "captures_path"));

  // Paths are unique; any number of captures may have none.
  Execute(db.get(),
          "INSERT INTO captures (id, path, record) VALUES "
          "(1, 'a.jpg', x''), (2, NULL, x''), (3, NULL, x'')");
  EXPECT_EQ(sqlite3_exec(db.get(),
                         "INSERT INTO captures (id, path, record) "
                         "VALUES (4, 'a.jpg', x'')",
                         nullptr, nullptr, nullptr),
            SQLITE_CONSTRAINT);
}

TEST(Schema, VersionFourAddsChangeSequences) {
  const Connection db = OpenMemory();
  ASSERT_TRUE(MigrateSchema(db.get(), "test.db", 3).ok());
  Execute(db.get(),
          "INSERT INTO projects (id, name, record) VALUES (16, 'p', x'');"
          "INSERT INTO jobs (id, name, project_id, job_type_key, dispatch_mode,"
          " status, created_at, updated_at, progress) VALUES"
          " (7, 'old', 16, 'ml', 'internal', 'CREATED', 1, 1, '{}');"
          "INSERT INTO job_logs (job_id, created_at, level, message)"
          " VALUES (7, 1, 'INFO', 'old line');");
  ASSERT_TRUE(MigrateSchema(db.get(), "test.db", 4).ok());
  EXPECT_EQ(Version(db.get()), 4);
  // Jobs stored before start at change 1; their lines come before it.
  EXPECT_THAT(Column(db.get(), "SELECT sequence FROM jobs"), ElementsAre("1"));
  EXPECT_THAT(Column(db.get(), "SELECT sequence FROM job_logs"),
              ElementsAre("0"));
  EXPECT_THAT(Columns(db.get(), "job_status_changes"),
              ElementsAre("job_id", "sequence", "status", "changed_at"));
  EXPECT_THAT(Indexes(db.get(), "job_logs"),
              ElementsAre("job_logs_job_created", "job_logs_job_sequence"));
}

TEST(Schema, VersionFiveStoresProgressAndResultAsSerializedMessages) {
  const Connection db = OpenMemory();
  ASSERT_TRUE(MigrateSchema(db.get(), "test.db", 4).ok());
  const std::vector<std::string> indexes_before = Indexes(db.get(), "jobs");
  // Job 1 has a progress and a result, job 2 an empty progress and none,
  // job 3 a progress that is not JSON.
  Execute(db.get(),
          "INSERT INTO projects (id, name, record) VALUES (16, 'p', x'');"
          "INSERT INTO jobs (id, name, project_id, job_type_key, dispatch_mode,"
          " status, created_at, updated_at, progress, result) VALUES"
          " (1, 'a', 16, 'ml', 'internal', 'SUCCESS', 1, 1,"
          " '{\"summary\":{\"status\":\"SUCCESS\",\"progress\":1}}',"
          " '{\"n\":2}'),"
          " (2, 'b', 16, 'ml', 'internal', 'CREATED', 1, 1, '{}', NULL),"
          " (3, 'c', 16, 'ml', 'internal', 'CREATED', 1, 1, 'not json', NULL)");
  ASSERT_TRUE(MigrateSchema(db.get(), "test.db", 5).ok());
  EXPECT_EQ(Version(db.get()), 5);

  // The JSON columns are gone; the new ones come last.
  const std::vector<std::string> columns = Columns(db.get(), "jobs");
  ASSERT_GE(columns.size(), 2);
  EXPECT_THAT(std::vector<std::string>(columns.end() - 2, columns.end()),
              ElementsAre("progress", "result"));
  EXPECT_EQ(std::count(columns.begin(), columns.end(), "progress_json") +
                std::count(columns.begin(), columns.end(), "result_json"),
            0);
  EXPECT_EQ(Indexes(db.get(), "jobs"), indexes_before);

  // The serialized messages: JobProgress{summary{status: SUCCESS (4),
  // progress: 1.0}} and Value{struct_value{fields{"n": number_value 2}}}.
  EXPECT_THAT(
      Column(db.get(),
             "SELECT typeof(progress) || ' ' || hex(progress) || ' ' || "
             "typeof(result) || ' ' || coalesce(hex(result), '') "
             "FROM jobs ORDER BY id"),
      ElementsAre("blob 0A0B080411000000000000F03F blob "
                  "2A100A0E0A016E1209110000000000000040",
                  "blob  null ", "text 6E6F74206A736F6E null "));
}

TEST(Schema, VersionSixCountsJobsByProjectAndStatus) {
  const Connection db = OpenMemory();
  ASSERT_TRUE(MigrateSchema(db.get(), "test.db", 5).ok());
  Execute(db.get(), "PRAGMA foreign_keys = ON");
  Execute(db.get(),
          "INSERT INTO projects (id, name, record) VALUES (16, 'p', x''),"
          " (17, 'q', x'');"
          "INSERT INTO jobs (name, project_id, job_type_key, dispatch_mode,"
          " status, created_at, updated_at) VALUES"
          " ('a', 16, 'ml', 'internal', 'CREATED', 1, 1),"
          " ('b', 16, 'ml', 'internal', 'CREATED', 1, 1),"
          " ('c', 16, 'ml', 'internal', 'SUCCESS', 1, 1),"
          " ('d', 17, 'ml', 'internal', 'CREATED', 1, 1)");
  const std::string kCounts =
      "SELECT project_id || ' ' || status || ' ' || count FROM job_counts "
      "ORDER BY project_id, status";

  // The migration counts the jobs there are.
  ASSERT_TRUE(MigrateSchema(db.get(), "test.db", 6).ok());
  EXPECT_THAT(Column(db.get(), kCounts),
              ElementsAre("16 CREATED 2", "16 SUCCESS 1", "17 CREATED 1"));

  // Inserts, status and project changes, deletes and cascades keep them.
  Execute(db.get(),
          "INSERT INTO jobs (name, project_id, job_type_key, dispatch_mode,"
          " status, created_at, updated_at) VALUES"
          " ('e', 17, 'ml', 'internal', 'PENDING', 1, 1);"
          "UPDATE jobs SET status = 'PENDING' WHERE name = 'a';"
          "UPDATE jobs SET project_id = 17 WHERE name = 'c';"
          "UPDATE jobs SET name = 'renamed' WHERE name = 'b';"
          "DELETE FROM jobs WHERE name = 'renamed'");
  EXPECT_THAT(Column(db.get(), kCounts),
              ElementsAre("16 CREATED 0", "16 PENDING 1", "16 SUCCESS 0",
                          "17 CREATED 1", "17 PENDING 1", "17 SUCCESS 1"));
  Execute(db.get(), "DELETE FROM projects WHERE id = 17");
  EXPECT_THAT(Column(db.get(), kCounts),
              ElementsAre("16 CREATED 0", "16 PENDING 1", "16 SUCCESS 0",
                          "17 CREATED 0", "17 PENDING 0", "17 SUCCESS 0"));
}

TEST(Schema, VersionSevenMakesReferenceIndexesPartialAndAddsTheQueue) {
  const Connection db = OpenMemory();
  ASSERT_TRUE(MigrateSchema(db.get(), "test.db", 7).ok());
  const std::string kWhere =
      "SELECT name || ': ' || substr(sql, instr(sql, 'WHERE')) FROM "
      "sqlite_master WHERE type = 'index' AND tbl_name = 'jobs' AND sql "
      "LIKE '%WHERE%' ORDER BY name";
  EXPECT_THAT(
      Column(db.get(), kWhere),
      ElementsAre("jobs_capture: WHERE source_image_single_id IS NOT NULL",
                  "jobs_collection: WHERE source_image_collection_id IS NOT "
                  "NULL",
                  "jobs_data_export: WHERE data_export_id IS NOT NULL",
                  "jobs_deployment: WHERE deployment_id IS NOT NULL",
                  "jobs_lease_expires: WHERE lease_id IS NOT NULL",
                  "jobs_lease_holder: WHERE lease_id IS NOT NULL",
                  "jobs_pipeline: WHERE pipeline_id IS NOT NULL",
                  "jobs_queue: WHERE lease_id IS NULL"));
  EXPECT_THAT(
      Column(db.get(),
             "SELECT name FROM pragma_index_info('jobs_queue') "
             "ORDER BY seqno"),
      ElementsAre("status", "lease_holder", "job_type_key", "scheduled_at"));
}

TEST(Schema, MigrateLeavesCurrentOrNewerTargetAlone) {
  const Connection db = OpenMemory();
  ASSERT_TRUE(MigrateSchema(db.get(), "test.db").ok());
  Execute(db.get(), "INSERT INTO projects VALUES (1, 'kept', x'')");

  EXPECT_TRUE(MigrateSchema(db.get(), "test.db").ok());
  EXPECT_TRUE(MigrateSchema(db.get(), "test.db", 1).ok());
  EXPECT_EQ(Version(db.get()), CurrentSchemaVersion());
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db.get(), "SELECT name FROM projects", -1, &stmt,
                               nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(
      std::string(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0))),
      "kept");
  sqlite3_finalize(stmt);
}

TEST(Schema, RefusesTargetVersionOutOfRange) {
  const Connection db = OpenMemory();
  for (const int target : {0, CurrentSchemaVersion() + 1}) {
    const absl::Status status = MigrateSchema(db.get(), "test.db", target);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(status.message(),
              absl::StrCat("schema version ", target,
                           " is not one this jobline knows (1..",
                           CurrentSchemaVersion(), ")"));
  }
  EXPECT_EQ(Version(db.get()), 0);
}

TEST(Schema, RefusesDatabaseNewerThanBinary) {
  const Connection db = OpenMemory();
  const int newer = CurrentSchemaVersion() + 1;
  Execute(db.get(), absl::StrCat("PRAGMA user_version = ", newer));

  const absl::Status status = MigrateSchema(db.get(), "jobs.db");
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(status.message(),
            absl::StrCat("jobs.db: database schema version ", newer,
                         " is newer than this jobline supports (",
                         CurrentSchemaVersion(), "); upgrade jobline"));
  EXPECT_EQ(Version(db.get()), newer);
  EXPECT_THAT(Tables(db.get()), IsEmpty());
}

TEST(Schema, FailedMigrationKeepsNothing) {
  const Connection db = OpenMemory();
  // Migration 1 creates other tables first, then fails on this one.
  Execute(db.get(), "CREATE TABLE jobs (x INTEGER)");

  const absl::Status status = MigrateSchema(db.get(), "test.db");
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(status.message(),
            "migrating database test.db to schema version 1: SQL logic error");
  EXPECT_EQ(Version(db.get()), 0);
  EXPECT_THAT(Tables(db.get()), ElementsAre("jobs"));
  EXPECT_TRUE(sqlite3_get_autocommit(db.get()));
}

}  // namespace
}  // namespace jobline
