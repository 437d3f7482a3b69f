// Tests of SqliteJobStore against the JobStore contract (storage/job_store.h)
// and the additions of storage/sqlite_job_store.h.
//
// The conformance suite (SqliteJobStoreTest) runs every test against a
// private in-memory database and against a file in the test's temporary
// directory. The tests named SqliteJobStore cover what only a file can show:
// durability across a reopen, WAL, schema versions, files that are not
// databases, read-only and busy files. Timestamps come from a fake clock, so
// every one is exact.

#include "storage/sqlite_job_store.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "jobline/v2/catalog.pb.h"
#include "jobline/v2/jobs.pb.h"
#include "storage/fake_clock.h"
#include "storage/job_store.h"
#include "storage/schema.h"

namespace jobline {
namespace {

using google::protobuf::util::TimeUtil;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// ---- Matchers and helpers ----

const absl::Status& StatusOf(const absl::Status& status) { return status; }

template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& result) {
  return result.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& status = StatusOf(arg);
  if (!status.ok()) *result_listener << "whose status is " << status;
  return status.ok();
}

// Matches a Status or StatusOr whose code is `code` and whose message
// matches `message` (a string for equality, or a matcher).
MATCHER_P2(StatusIs, code, message,
           absl::StrCat(negation ? "isn't" : "is", " a status with code ",
                        absl::StatusCodeToString(code), " and a message that ",
                        ::testing::DescribeMatcher<std::string>(message))) {
  const absl::Status& status = StatusOf(arg);
  *result_listener << "whose status is " << status;
  return status.code() == code &&
         ::testing::Matches(message)(std::string(status.message()));
}

// Matches a message equal to `text`, a text-format message of its type.
MATCHER_P(EqualsProto, text, "") {
  using Message = std::remove_cv_t<std::remove_reference_t<arg_type>>;
  Message expected;
  if (!google::protobuf::TextFormat::ParseFromString(text, &expected)) {
    *result_listener << "the expected text does not parse";
    return false;
  }
  std::string differences;
  google::protobuf::util::MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&differences);
  if (differencer.Compare(expected, arg)) return true;
  *result_listener << "which differs:\n" << differences;
  return false;
}

// Matches a message equal to `expected`.
MATCHER_P(SameProto, expected, "") {
  std::string differences;
  google::protobuf::util::MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&differences);
  if (differencer.Compare(expected, arg)) return true;
  *result_listener << "which differs:\n" << differences;
  return false;
}

#define ASSERT_OK(expr) ASSERT_THAT((expr), IsOk())

#define JOBLINE_TEST_CONCAT_INNER_(a, b) a##b
#define JOBLINE_TEST_CONCAT_(a, b) JOBLINE_TEST_CONCAT_INNER_(a, b)

// `lhs = value of expr`, or a fatal failure naming the status.
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  ASSERT_OK_AND_ASSIGN_IMPL_(JOBLINE_TEST_CONCAT_(result_, __LINE__), lhs, expr)

#define ASSERT_OK_AND_ASSIGN_IMPL_(result, lhs, expr) \
  auto result = (expr);                               \
  ASSERT_TRUE(result.ok()) << result.status();        \
  lhs = std::move(result).value()

template <typename Message>
Message ParseText(const std::string& text) {
  Message message;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &message))
      << text;
  return message;
}

// 2024-05-01T10:00:00.123456Z, the time every test starts at.
constexpr int64_t kStartMicros = 1714557600123456;
const absl::Time kStart = absl::FromUnixMicros(kStartMicros);

int64_t Micros(const google::protobuf::Timestamp& timestamp) {
  return TimeUtil::TimestampToMicroseconds(timestamp);
}

google::protobuf::Timestamp StartPlus(absl::Duration offset) {
  return TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(kStart + offset));
}

// Removes a database file and its WAL companions.
void RemoveDatabaseFiles(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    std::remove(absl::StrCat(path, suffix).c_str());
  }
}

// A database path in the test's temporary directory, unique to the running
// test, with no file left from an earlier run.
std::string FreshDatabasePath() {
  const ::testing::TestInfo* const test =
      ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string name = absl::StrReplaceAll(
      absl::StrCat(test->test_suite_name(), "_", test->name()), {{"/", "_"}});
  const std::string path = absl::StrCat(::testing::TempDir(), name, ".db");
  RemoveDatabaseFiles(path);
  return path;
}

// An owned connection of the test itself, beside the store's.
using Connection = std::unique_ptr<sqlite3, decltype(&sqlite3_close)>;

Connection OpenConnection(const std::string& path) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK) << path;
  return Connection(db, &sqlite3_close);
}

// The first column of the first row of `sql` as text ("" without a row).
std::string QueryText(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* stmt = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK)
      << sql << ": " << sqlite3_errmsg(db);
  std::string value;
  if (stmt != nullptr && sqlite3_step(stmt) == SQLITE_ROW &&
      sqlite3_column_type(stmt, 0) != SQLITE_NULL) {
    value = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
  }
  sqlite3_finalize(stmt);
  return value;
}

void Execute(sqlite3* db, const std::string& sql) {
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
      << sql << ": " << sqlite3_errmsg(db);
}

absl::StatusOr<std::unique_ptr<SqliteJobStore>> OpenStore(
    const std::string& path, Clock* clock, bool read_only = false) {
  SqliteJobStoreOptions options;
  options.path = path;
  options.clock = clock;
  options.read_only = read_only;
  return OpenSqliteJobStore(options);
}

// The reference records every test starts with.
v2::Catalog TestCatalog() {
  return ParseText<v2::Catalog>(R"pb(
    projects {
      id: 16
      name: "Aarhus Universitet, Department of Ecoscience"
      details: "http://localhost/api/v2/projects/16/"
      user_permissions: "update"
    }
    projects { id: 17 name: "Vermont Atlas of Life" }
    deployments { id: 30 name: "Station 1" project_id: 16 }
    deployments { id: 31 name: "Station 2" project_id: 16 }
    pipelines { id: 2 name: "Moth detector" slug: "moth-detector" version: 1 }
    pipelines {
      id: 3
      name: "Quebec & Vermont classifier"
      slug: "quebec-vermont"
      description: "Species of the north east"
      version: 2
      version_name: "2024.1"
      created_at { seconds: 1704067200 }
    }
    capture_collections {
      id: 111
      name: "Random 1000"
      method: "random"
      project_id: 16
      kwargs {
        fields {
          key: "size"
          value { number_value: 1000 }
        }
      }
    }
    capture_collections {
      id: 112
      name: "Everything"
      method: "full"
      project_id: 16
    }
    captures {
      id: 500
      url: "https://images.example/500.jpg"
      width: 4096
      height: 2160
      timestamp { seconds: 1714500000 }
      event_id: 9
      deployment_id: 30
      path: "station1/500.jpg"
    }
    data_exports {
      id: 7
      user: 1
      project: 17
      format: "occurrences_simple_csv"
      filters { struct_value {} }
    }
  )pb");
}

// One page of ListJobs as job ids, with the count over all pages.
struct IdPage {
  int64_t count = 0;
  std::vector<int64_t> ids;

  friend bool operator==(const IdPage& a, const IdPage& b) {
    return a.count == b.count && a.ids == b.ids;
  }
  friend void PrintTo(const IdPage& page, std::ostream* out) {
    *out << "{count " << page.count << ", ids [" << absl::StrJoin(page.ids, ",")
         << "]}";
  }
};

JobQuery OrderedBy(JobOrderField field, bool descending) {
  JobQuery query;
  query.ordering.push_back({field, descending});
  return query;
}

// The value of the param `key` of stage `stage_key` (0 if absent).
double StageParamValue(const v2::Job& job, const std::string& stage_key,
                       const std::string& key) {
  for (const v2::ProgressStage& stage : job.progress().stages()) {
    if (stage.key() != stage_key) continue;
    for (const v2::StageParam& param : stage.params()) {
      if (param.key() == key) return param.value().number_value();
    }
  }
  return 0;
}

// A lease as "{lease_id, holder, expires_at, attempts}", so that leases
// compare as text and print readably.
std::string LeaseText(const JobLease& lease) {
  return absl::StrCat("{", lease.lease_id, ", ", lease.holder, ", ",
                      absl::FormatTime(lease.expires_at, absl::UTCTimeZone()),
                      ", ", lease.attempts, "}");
}

JobLease MakeLease(const std::string& lease_id, const std::string& holder,
                   absl::Time expires_at, int32_t attempts) {
  JobLease lease;
  lease.lease_id = lease_id;
  lease.holder = holder;
  lease.expires_at = expires_at;
  lease.attempts = attempts;
  return lease;
}

// The empty lease of a job nobody has leased yet.
const char kNoLease[] = "{, , infinite-past, 0}";

// "x'0a1b...'", a blob literal of `bytes` for plain SQL.
std::string BlobLiteral(const std::string& bytes) {
  std::string literal = "x'";
  for (const unsigned char byte : bytes) {
    absl::StrAppend(&literal, absl::Hex(byte, absl::kZeroPad2));
  }
  literal.push_back('\'');
  return literal;
}

// The captures of `text`, text-format Capture messages separated by ";".
std::vector<v2::Capture> Captures(const std::string& text) {
  std::vector<v2::Capture> captures;
  for (absl::string_view item : absl::StrSplit(text, ';', absl::SkipEmpty())) {
    captures.push_back(ParseText<v2::Capture>(std::string(item)));
  }
  return captures;
}

// ---- The conformance suite: a memory and a file database ----

enum class Backend { kMemory, kFile };

void PrintTo(Backend backend, std::ostream* out) {
  *out << (backend == Backend::kMemory ? "Memory" : "File");
}

class SqliteJobStoreTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    path_ = GetParam() == Backend::kMemory ? ":memory:" : FreshDatabasePath();
    ASSERT_OK_AND_ASSIGN(store_, OpenStore(path_, &clock_));
    ASSERT_OK(store_->ImportCatalog(TestCatalog()));
  }

  void TearDown() override {
    store_.reset();
    if (GetParam() == Backend::kFile) RemoveDatabaseFiles(path_);
  }

  // Creates the job of `text` (a text-format Job) with `logs`.
  v2::Job Create(const std::string& text,
                 const std::vector<NewLogLine>& logs = {}) {
    absl::StatusOr<v2::Job> created =
        store_->CreateJob(ParseText<v2::Job>(text), logs);
    EXPECT_THAT(created, IsOk());
    return created.ok() ? *created : v2::Job();
  }

  v2::Job Get(int64_t id) {
    absl::StatusOr<v2::Job> job = store_->GetJob(id);
    EXPECT_THAT(job, IsOk());
    return job.ok() ? *job : v2::Job();
  }

  IdPage ListIds(const JobQuery& query) {
    absl::StatusOr<JobPage> page = store_->ListJobs(query);
    EXPECT_THAT(page, IsOk());
    if (!page.ok()) return {-1, {}};
    IdPage ids{page->count, {}};
    for (const v2::Job& job : page->jobs) ids.ids.push_back(job.id());
    return ids;
  }

  std::vector<std::string> LogMessages(int64_t job_id, int limit = 100) {
    absl::StatusOr<std::vector<LogLine>> lines =
        store_->ReadLogs(job_id, limit);
    EXPECT_THAT(lines, IsOk());
    std::vector<std::string> messages;
    if (!lines.ok()) return messages;
    for (const LogLine& line : *lines) messages.push_back(line.message);
    return messages;
  }

  // Six jobs, created one second apart (job i at kStart + i s), which
  // differ in every field a list can filter or order by. Jobs 3 and then 1
  // are updated afterwards, at kStart + 7 s and + 8 s.
  void CreateListJobs() {
    const char* const jobs[] = {
        R"pb(name: "Populate captures for collection 111"
             project { id: 16 }
             source_image_collection { id: 111 }
             job_type { key: "populate_captures_collection" }
             status: CREATED)pb",
        R"pb(name: "Moth run"
             project { id: 16 }
             deployment { id: 30 }
             pipeline { id: 2 }
             job_type { key: "ml" }
             dispatch_mode: "async_api"
             status: STARTED
             started_at { seconds: 1714557700 nanos: 123456000 })pb",
        R"pb(name: "Nightly batch"
             project { id: 17 }
             pipeline { id: 3 }
             job_type { key: "ml" }
             dispatch_mode: "sync_api"
             status: SUCCESS
             started_at { seconds: 1714557650 nanos: 123456000 }
             finished_at { seconds: 1714557800 nanos: 123456000 })pb",
        R"pb(name: "Sync storage"
             project { id: 16 }
             deployment { id: 31 }
             source_image_collection { id: 112 }
             job_type { key: "data_storage_sync" }
             status: FAILURE
             started_at { seconds: 1714557670 nanos: 123456000 }
             finished_at { seconds: 1714557750 nanos: 123456000 })pb",
        R"pb(name: "Single capture"
             project { id: 16 }
             source_image_single { id: 500 }
             pipeline { id: 2 }
             job_type { key: "ml" }
             status: PENDING)pb",
        R"pb(name: "Export 100%_done"
             project { id: 17 }
             data_export { id: 7 }
             job_type { key: "data_export" }
             status: REVOKED
             finished_at { seconds: 1714557900 nanos: 123456000 })pb",
    };
    for (const char* job : jobs) {
      clock_.Advance(absl::Seconds(1));
      Create(job);
    }
    for (const int64_t id : {3, 1}) {
      clock_.Advance(absl::Seconds(1));
      ASSERT_OK(
          store_->MutateJob(id, [](JobMutation&) { return absl::OkStatus(); }));
    }
  }

  std::vector<int64_t> Find(const JobIdQuery& query) {
    absl::StatusOr<std::vector<int64_t>> ids = store_->FindJobIds(query);
    EXPECT_THAT(ids, IsOk());
    return ids.ok() ? *ids : std::vector<int64_t>{-1};
  }

  std::string Lease(int64_t id) {
    absl::StatusOr<JobLease> lease = store_->GetLease(id);
    EXPECT_THAT(lease, IsOk());
    return lease.ok() ? LeaseText(*lease) : lease.status().ToString();
  }

  // Writes `lease` and `status` to job `id`.
  void SetLease(int64_t id, const JobLease& lease, v2::JobStatus status) {
    ASSERT_OK(store_->MutateJob(id, [&](JobMutation& mutation) {
      mutation.lease = lease;
      mutation.job.set_status(status);
      return absl::OkStatus();
    }));
  }

  std::vector<int64_t> Members(int64_t collection_id) {
    absl::StatusOr<std::vector<int64_t>> ids =
        store_->ListCollectionCaptureIds(collection_id);
    EXPECT_THAT(ids, IsOk());
    return ids.ok() ? *ids : std::vector<int64_t>{-1};
  }

  int64_t CaptureCount(int64_t collection_id) {
    absl::StatusOr<v2::CaptureCollection> collection =
        store_->GetCaptureCollection(collection_id);
    EXPECT_THAT(collection, IsOk());
    return collection.ok() ? collection->capture_count() : -1;
  }

  // Six jobs for FindJobIds, job i created at kStart + i s:
  //   job  status   type                          scheduled  lease
  //   1    CREATED  ml                            never      -
  //   2    PENDING  ml                            +10 s      -
  //   3    PENDING  populate_captures_collection  +3 s       -
  //   4    STARTED  ml                            +4 s       worker-a, +60 s
  //   5    PENDING  data_storage_sync             +10 s      -
  //   6    STARTED  data_storage_sync             never      runner, +20 s
  // Last updated: 1 at +1 s, 2 and 5 at +10 s, 3 at +3 s, 4 at +11 s and 6
  // at +12 s. Every lease is attempt 1.
  void CreateFindJobs() {
    const char* const jobs[] = {
        R"pb(job_type { key: "ml" }
             status: CREATED)pb",
        R"pb(job_type { key: "ml" }
             status: CREATED)pb",
        R"pb(job_type { key: "populate_captures_collection" }
             status: PENDING)pb",
        R"pb(job_type { key: "ml" }
             status: PENDING)pb",
        R"pb(job_type { key: "data_storage_sync" }
             status: CREATED)pb",
        R"pb(job_type { key: "data_storage_sync" }
             status: STARTED)pb",
    };
    int i = 0;
    for (const char* job : jobs) {
      clock_.Advance(absl::Seconds(1));
      Create(absl::StrCat("name: \"Job ", ++i, "\" project { id: 16 } ", job));
    }
    clock_.Set(kStart + absl::Seconds(10));
    SetLease(2, JobLease(), v2::PENDING);
    SetLease(5, JobLease(), v2::PENDING);
    clock_.Set(kStart + absl::Seconds(11));
    SetLease(4, MakeLease("lease-4", "worker-a", kStart + absl::Seconds(60), 1),
             v2::STARTED);
    clock_.Set(kStart + absl::Seconds(12));
    SetLease(6,
             MakeLease("lease-6", kRunnerHolder, kStart + absl::Seconds(20), 1),
             v2::STARTED);
  }

  FakeClock clock_{kStart};
  std::string path_;
  std::unique_ptr<SqliteJobStore> store_;
};

INSTANTIATE_TEST_SUITE_P(MemoryAndFile, SqliteJobStoreTest,
                         ::testing::Values(Backend::kMemory, Backend::kFile),
                         [](const ::testing::TestParamInfo<Backend>& info) {
                           return info.param == Backend::kMemory ? "Memory"
                                                                 : "File";
                         });

// ---- CreateJob and GetJob ----

TEST_P(SqliteJobStoreTest, CreateJobAssignsIdTimestampsAndDefaults) {
  ASSERT_OK_AND_ASSIGN(const v2::Job first,
                       store_->CreateJob(ParseText<v2::Job>(R"pb(
                                           id: 99
                                           name: "First"
                                           project { id: 16 }
                                         )pb"),
                                         {}));
  EXPECT_THAT(
      first, EqualsProto(R"pb(
        id: 1
        sequence: 1
        name: "First"
        project { id: 16 name: "Aarhus Universitet, Department of Ecoscience" }
        status: CREATED
        created_at { seconds: 1714557600 nanos: 123456000 }
        updated_at { seconds: 1714557600 nanos: 123456000 }
        progress {}
        job_type { key: "unknown" }
        dispatch_mode: "internal"
      )pb"));

  clock_.Advance(absl::Milliseconds(1500));
  const v2::Job second = Create(R"pb(name: "Second"
                                     project { id: 17 })pb");
  EXPECT_EQ(second.id(), 2);
  EXPECT_EQ(Micros(second.created_at()), kStartMicros + 1500000);
  EXPECT_EQ(Micros(second.updated_at()), kStartMicros + 1500000);
  EXPECT_THAT(Get(1), SameProto(first));
}

TEST_P(SqliteJobStoreTest, CreateJobKeepsEveryWritableField) {
  const v2::Job created = Create(R"pb(
    name: "Everything set"
    delay: 30
    limit: 0
    shuffle: true
    project { id: 16 }
    job_type { key: "ml" }
    dispatch_mode: "async_api"
    status: STARTED
    started_at { seconds: 1714557000 nanos: 5000 }
    finished_at { seconds: 1714557100 }
    progress {
      summary { status: STARTED progress: 0.25 }
      stages {
        key: "collect"
        name: "Collect"
        status: SUCCESS
        progress: 1
        params {
          name: "Total Images"
          key: "total_images"
          category: "default"
          value { number_value: 40 }
        }
      }
      stages { key: "results" name: "Results" status: CREATED }
      errors: "one image was unreadable"
    }
    result {
      struct_value {
        fields {
          key: "images"
          value { number_value: 12 }
        }
      }
    }
  )pb");
  EXPECT_THAT(
      Get(created.id()), EqualsProto(R"pb(
        id: 1
        sequence: 1
        name: "Everything set"
        delay: 30
        limit: 0
        shuffle: true
        project { id: 16 name: "Aarhus Universitet, Department of Ecoscience" }
        job_type { key: "ml" }
        dispatch_mode: "async_api"
        status: STARTED
        created_at { seconds: 1714557600 nanos: 123456000 }
        updated_at { seconds: 1714557600 nanos: 123456000 }
        started_at { seconds: 1714557000 nanos: 5000 }
        finished_at { seconds: 1714557100 }
        progress {
          summary { status: STARTED progress: 0.25 }
          stages {
            key: "collect"
            name: "Collect"
            status: SUCCESS
            progress: 1
            params {
              name: "Total Images"
              key: "total_images"
              category: "default"
              value { number_value: 40 }
            }
          }
          stages { key: "results" name: "Results" status: CREATED }
          errors: "one image was unreadable"
        }
        result {
          struct_value {
            fields {
              key: "images"
              value { number_value: 12 }
            }
          }
        }
      )pb"));
}

TEST_P(SqliteJobStoreTest, WritesReturnTheJobAsGetJobReadsIt) {
  // Every reference, timestamps finer than the store keeps, a limit, a
  // progress with params and a result.
  clock_.Advance(absl::Microseconds(7));
  ASSERT_OK_AND_ASSIGN(
      const v2::Job created,
      store_->CreateJob(ParseText<v2::Job>(R"pb(
                          id: 99
                          sequence: 42
                          details: "ignored"
                          name: "Everything"
                          delay: 3
                          limit: 10
                          shuffle: false
                          project { id: 16 name: "ignored" }
                          deployment { id: 30 }
                          source_image_collection { id: 111 }
                          source_image_single { id: 500 }
                          pipeline { id: 3 }
                          data_export { id: 7 }
                          job_type { key: "ml" name: "ML" }
                          dispatch_mode: "async_api"
                          status: STARTED
                          created_at { seconds: 1 }
                          started_at { seconds: 1714557600 nanos: 123456789 }
                          progress {
                            summary { status: STARTED progress: 0.25 }
                            stages {
                              key: "process"
                              name: "Process"
                              status: STARTED
                              progress: 0.5
                              params {
                                key: "done"
                                name: "Done"
                                value {
                                  list_value {
                                    values { number_value: -0.0 }
                                    values { string_value: "é" }
                                  }
                                }
                              }
                            }
                          }
                          result { bool_value: false }
                        )pb"),
                        {{LogLevel::kInfo, "made"}}));
  EXPECT_THAT(Get(created.id()), SameProto(created));
  EXPECT_EQ(created.sequence(), 1);
  EXPECT_EQ(created.project().name(),
            "Aarhus Universitet, Department of Ecoscience");
  EXPECT_EQ(created.source_image_collection().name(), "Random 1000");
  EXPECT_EQ(created.source_image_collection().capture_count(), 0);
  EXPECT_EQ(created.started_at().nanos(), 123456000);
  EXPECT_FALSE(created.has_finished_at());

  // A mutation that moves references, clears some, edits the records
  // and the fields the store keeps (all ignored) and finishes the job.
  clock_.Advance(absl::Seconds(5));
  ASSERT_OK_AND_ASSIGN(
      const v2::Job written,
      store_->MutateJob(created.id(), [](JobMutation& mutation) {
        v2::Job& job = mutation.job;
        job.mutable_project()->set_id(17);
        job.mutable_project()->set_name("ignored");
        job.mutable_deployment()->set_id(31);
        job.mutable_deployment()->set_name("ignored");
        job.clear_source_image_collection();
        job.mutable_source_image_single()->set_id(0);
        job.mutable_pipeline()->set_id(2);
        job.clear_limit();
        job.set_status(v2::SUCCESS);
        job.mutable_finished_at()->set_seconds(1714557700);
        job.mutable_finished_at()->set_nanos(999);
        job.mutable_created_at()->set_seconds(5);
        job.set_sequence(1000);
        job.mutable_progress()->mutable_summary()->set_status(v2::SUCCESS);
        job.mutable_progress()->add_errors("none");
        job.mutable_result()->set_string_value("done");
        mutation.logs.push_back({LogLevel::kInfo, "finished"});
        return absl::OkStatus();
      }));
  EXPECT_THAT(Get(created.id()), SameProto(written));
  EXPECT_EQ(written.sequence(), 2);
  EXPECT_EQ(written.created_at(), created.created_at());
  EXPECT_EQ(written.project().name(), "Vermont Atlas of Life");
  EXPECT_EQ(written.deployment().name(), "Station 2");
  EXPECT_EQ(written.pipeline().slug(), "moth-detector");
  EXPECT_FALSE(written.has_source_image_collection());
  EXPECT_FALSE(written.has_source_image_single());
  EXPECT_FALSE(written.has_limit());
  EXPECT_EQ(written.finished_at().nanos(), 0);
  EXPECT_EQ(written.result().string_value(), "done");

  // One that changes nothing but the time, and one that clears the result.
  clock_.Advance(absl::Seconds(1));
  ASSERT_OK_AND_ASSIGN(const v2::Job touched,
                       store_->MutateJob(created.id(), [](JobMutation&) {
                         return absl::OkStatus();
                       }));
  EXPECT_THAT(Get(created.id()), SameProto(touched));
  ASSERT_OK_AND_ASSIGN(const v2::Job cleared,
                       store_->MutateJob(created.id(), [](JobMutation& m) {
                         m.job.clear_result();
                         return absl::OkStatus();
                       }));
  EXPECT_THAT(Get(created.id()), SameProto(cleared));
  EXPECT_FALSE(cleared.has_result());
  EXPECT_EQ(cleared.sequence(), 4);
}

TEST_P(SqliteJobStoreTest, CreateJobWritesItsLogLines) {
  const v2::Job job =
      Create(R"pb(name: "Logged"
                  project { id: 16 })pb",
             {{LogLevel::kInfo, "Job created"}, {LogLevel::kError, "boom"}});
  ASSERT_OK_AND_ASSIGN(const std::vector<LogLine> lines,
                       store_->ReadLogs(job.id(), 10));
  ASSERT_EQ(lines.size(), 2);
  EXPECT_EQ(lines[0].id, 2);
  EXPECT_EQ(lines[0].job_id, 1);
  EXPECT_EQ(lines[0].created_at, kStart);
  EXPECT_EQ(lines[0].level, LogLevel::kError);
  EXPECT_EQ(lines[0].message, "boom");
  EXPECT_EQ(lines[1].id, 1);
  EXPECT_EQ(lines[1].job_id, 1);
  EXPECT_EQ(lines[1].created_at, kStart);
  EXPECT_EQ(lines[1].level, LogLevel::kInfo);
  EXPECT_EQ(lines[1].message, "Job created");
}

// ---- Change sequences ----

TEST_P(SqliteJobStoreTest, EveryWriteTakesTheNextSequence) {
  const v2::Job created = Create(R"pb(name: "Counted"
                                      project { id: 16 })pb",
                                 {{LogLevel::kInfo, "Job created"}});
  EXPECT_EQ(created.sequence(), 1);
  ASSERT_OK_AND_ASSIGN(const v2::Job renamed,
                       store_->MutateJob(1, [](JobMutation& mutation) {
                         mutation.job.set_name("Renamed");
                         return absl::OkStatus();
                       }));
  EXPECT_EQ(renamed.sequence(), 2);
  ASSERT_OK(store_->AppendLogs(
      1, {{LogLevel::kInfo, "a"}, {LogLevel::kWarning, "b"}}));
  EXPECT_EQ(Get(1).sequence(), 3);
  // A refused write takes no sequence.
  EXPECT_EQ(
      store_
          ->MutateJob(
              1, [](JobMutation&) { return absl::InvalidArgumentError("no"); })
          .status()
          .code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Get(1).sequence(), 3);

  ASSERT_OK_AND_ASSIGN(const std::vector<LogLine> lines,
                       store_->ReadLogs(1, 10));
  ASSERT_EQ(lines.size(), 3);
  EXPECT_EQ(lines[0].sequence, 3);
  EXPECT_EQ(lines[1].sequence, 3);
  EXPECT_EQ(lines[2].sequence, 1);
}

TEST_P(SqliteJobStoreTest, ReadChangesGivesWhatCameAfterASequence) {
  Create(R"pb(name: "Watched"
              project { id: 16 })pb");                       // 1: CREATED
  ASSERT_OK(store_->MutateJob(1, [](JobMutation& mutation) {  // 2
    mutation.job.set_status(v2::PENDING);
    mutation.logs.push_back({LogLevel::kInfo, "queued"});
    return absl::OkStatus();
  }));
  clock_.Advance(absl::Seconds(1));
  ASSERT_OK(store_->MutateJob(1, [](JobMutation& mutation) {  // 3
    mutation.job.mutable_progress()->mutable_summary()->set_progress(0.5);
    return absl::OkStatus();
  }));
  ASSERT_OK(store_->AppendLogs(1, {{LogLevel::kInfo, "half"},  // 4
                                   {LogLevel::kError, "oops"}}));
  ASSERT_OK(store_->MutateJob(1, [](JobMutation& mutation) {  // 5
    mutation.job.set_status(v2::STARTED);
    return absl::OkStatus();
  }));

  ASSERT_OK_AND_ASSIGN(JobChanges changes, store_->ReadChanges(1, 1, 100));
  EXPECT_EQ(changes.job.sequence(), 5);
  EXPECT_EQ(changes.job.status(), v2::STARTED);
  ASSERT_EQ(changes.status_changes.size(), 2);
  EXPECT_EQ(changes.status_changes[0].sequence, 2);
  EXPECT_EQ(changes.status_changes[0].status, v2::PENDING);
  EXPECT_EQ(changes.status_changes[0].changed_at, kStart);
  EXPECT_EQ(changes.status_changes[1].sequence, 5);
  EXPECT_EQ(changes.status_changes[1].status, v2::STARTED);
  EXPECT_EQ(changes.status_changes[1].changed_at, kStart + absl::Seconds(1));
  ASSERT_EQ(changes.logs.size(), 3);
  EXPECT_EQ(changes.logs[0].message, "queued");
  EXPECT_EQ(changes.logs[0].sequence, 2);
  EXPECT_EQ(changes.logs[1].message, "half");
  EXPECT_EQ(changes.logs[1].sequence, 4);
  EXPECT_EQ(changes.logs[2].message, "oops");
  EXPECT_EQ(changes.logs[2].level, LogLevel::kError);
  EXPECT_FALSE(changes.too_many_logs);

  // From the start: the creation's status too.
  ASSERT_OK_AND_ASSIGN(changes, store_->ReadChanges(1, 0, 100));
  ASSERT_EQ(changes.status_changes.size(), 3);
  EXPECT_EQ(changes.status_changes[0].sequence, 1);
  EXPECT_EQ(changes.status_changes[0].status, v2::CREATED);
  // Nothing after the newest change.
  ASSERT_OK_AND_ASSIGN(changes, store_->ReadChanges(1, 5, 100));
  EXPECT_TRUE(changes.status_changes.empty());
  EXPECT_TRUE(changes.logs.empty());
  // More lines than asked for.
  ASSERT_OK_AND_ASSIGN(changes, store_->ReadChanges(1, 1, 2));
  EXPECT_TRUE(changes.too_many_logs);
  EXPECT_TRUE(changes.logs.empty());
  ASSERT_OK_AND_ASSIGN(changes, store_->ReadChanges(1, 1, 3));
  EXPECT_FALSE(changes.too_many_logs);
  EXPECT_EQ(changes.logs.size(), 3);

  EXPECT_EQ(store_->ReadChanges(2, 0, 10).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_P(SqliteJobStoreTest, TheListenerHearsEveryCommitInOrder) {
  std::vector<JobChangeEvent> events;
  store_->SetChangeListener(
      [&events](const JobChangeEvent& event) { events.push_back(event); });
  Create(R"pb(name: "Heard"
              project { id: 16 })pb",
         {{LogLevel::kInfo, "Job created"}});
  ASSERT_OK(store_->MutateJob(1, [](JobMutation& mutation) {
    mutation.job.set_status(v2::PENDING);
    return absl::OkStatus();
  }));
  ASSERT_OK(store_->AppendLogs(1, {{LogLevel::kInfo, "line"}}));
  EXPECT_FALSE(
      store_
          ->MutateJob(
              1, [](JobMutation&) { return absl::InvalidArgumentError("no"); })
          .ok());
  EXPECT_FALSE(store_->AppendLogs(9, {{LogLevel::kInfo, "lost"}}).ok());
  ASSERT_OK(store_->DeleteJob(1));
  store_->SetChangeListener(nullptr);
  Create(R"pb(name: "Unheard"
              project { id: 16 })pb");

  ASSERT_EQ(events.size(), 4);
  EXPECT_EQ(events[0].job_id, 1);
  EXPECT_EQ(events[0].sequence, 1);
  ASSERT_NE(events[0].job, nullptr);
  EXPECT_EQ(events[0].job->name(), "Heard");
  ASSERT_TRUE(events[0].status_change.has_value());
  EXPECT_EQ(events[0].status_change->status, v2::CREATED);
  ASSERT_EQ(events[0].logs.size(), 1);
  EXPECT_EQ(events[0].logs[0].message, "Job created");
  EXPECT_EQ(events[0].logs[0].sequence, 1);

  EXPECT_EQ(events[1].sequence, 2);
  ASSERT_TRUE(events[1].status_change.has_value());
  EXPECT_EQ(events[1].status_change->status, v2::PENDING);
  EXPECT_EQ(events[1].status_change->sequence, 2);
  EXPECT_EQ(events[1].job->status(), v2::PENDING);
  EXPECT_TRUE(events[1].logs.empty());

  EXPECT_EQ(events[2].sequence, 3);
  EXPECT_EQ(events[2].job, nullptr);
  EXPECT_FALSE(events[2].status_change.has_value());
  ASSERT_EQ(events[2].logs.size(), 1);
  EXPECT_EQ(events[2].logs[0].id, 2);
  EXPECT_EQ(events[2].logs[0].sequence, 3);

  EXPECT_EQ(events[3].job_id, 1);
  EXPECT_TRUE(events[3].deleted);
}

// ---- Group commit ----

TEST_P(SqliteJobStoreTest, ConcurrentWritesShareOneCommit) {
  Create(R"pb(name: "Holder"
              project { id: 16 })pb");
  std::vector<JobChangeEvent> events;
  store_->SetChangeListener(
      [&events](const JobChangeEvent& event) { events.push_back(event); });
  const int64_t commits_before = store_->TEST_commits();

  // The first write holds its batch open until ten more writers wait; they
  // then share the next batch: a create, a refused mutation and a line
  // each, in arrival order.
  constexpr int kWriters = 10;
  std::atomic<bool> holding{false};
  std::thread first([&] {
    ASSERT_OK(store_->MutateJob(1, [&](JobMutation& mutation) {
      holding = true;
      while (store_->TEST_queued_writes() < kWriters) {
        absl::SleepFor(absl::Milliseconds(1));
      }
      mutation.job.set_name("Held");
      return absl::OkStatus();
    }));
  });
  while (!holding) absl::SleepFor(absl::Milliseconds(1));
  std::vector<std::thread> writers;
  std::vector<absl::Status> results(kWriters);
  for (int i = 0; i < kWriters; ++i) {
    // One at a time into the queue, so that the order is known.
    const int queued = store_->TEST_queued_writes();
    writers.emplace_back([&, i] {
      if (i % 3 == 1) {
        results[i] =
            store_
                ->MutateJob(1,
                            [](JobMutation& mutation) {
                              mutation.job.set_name("Refused");
                              return absl::InvalidArgumentError("refused");
                            })
                .status();
      } else if (i % 3 == 2) {
        results[i] = store_->AppendLogs(1, {{LogLevel::kInfo, "line"}});
      } else {
        results[i] = store_
                         ->CreateJob(ParseText<v2::Job>(R"pb(
                                       name: "Batched"
                                       project { id: 16 }
                                     )pb"),
                                     {})
                         .status();
      }
    });
    while (store_->TEST_queued_writes() == queued) {
      absl::SleepFor(absl::Milliseconds(1));
    }
  }
  first.join();
  for (std::thread& writer : writers) writer.join();

  EXPECT_EQ(store_->TEST_commits() - commits_before, 2);
  for (int i = 0; i < kWriters; ++i) {
    if (i % 3 == 1) {
      EXPECT_EQ(results[i].code(), absl::StatusCode::kInvalidArgument) << i;
    } else {
      EXPECT_THAT(results[i], IsOk()) << i;
    }
  }
  // The refused writes changed nothing; the others all stand.
  EXPECT_EQ(Get(1).name(), "Held");
  ASSERT_OK_AND_ASSIGN(const JobPage page, store_->ListJobs(JobQuery()));
  EXPECT_EQ(page.count, 5);
  ASSERT_OK_AND_ASSIGN(const std::vector<LogLine> lines,
                       store_->ReadLogs(1, 10));
  EXPECT_EQ(lines.size(), 3);
  // The listener heard the successful ones in order, with sequences that
  // follow the order of the batch.
  ASSERT_EQ(events.size(), 8);
  EXPECT_EQ(events[0].sequence, 2);  // "Held"
  EXPECT_EQ(events[1].job_id, 2);
  EXPECT_EQ(events[2].job_id, 1);
  EXPECT_EQ(events[2].sequence, 3);
  EXPECT_EQ(events[3].job_id, 3);
  EXPECT_EQ(events[4].job_id, 1);
  EXPECT_EQ(events[4].sequence, 4);
  store_->SetChangeListener(nullptr);
}

TEST_P(SqliteJobStoreTest, ManyWritersAllLandOnceEach) {
  constexpr int kThreads = 16;
  constexpr int kPerThread = 25;
  std::vector<std::thread> threads;
  std::atomic<int> failed{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        v2::Job job;
        job.set_name(absl::StrCat(t, "/", i));
        job.mutable_project()->set_id(16);
        if (!store_->CreateJob(job, {}).ok()) ++failed;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failed.load(), 0);
  JobQuery query;
  query.limit = 1000;
  ASSERT_OK_AND_ASSIGN(const JobPage page, store_->ListJobs(query));
  EXPECT_EQ(page.count, kThreads * kPerThread);
  std::set<std::string> names;
  for (const v2::Job& job : page.jobs) names.insert(job.name());
  EXPECT_EQ(names.size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_LE(store_->TEST_commits(), kThreads * kPerThread);
}

TEST_P(SqliteJobStoreTest, GetJobFillsReferenceRecords) {
  const v2::Job created = Create(R"pb(
    name: "Linked"
    project { id: 16 name: "ignored" }
    deployment { id: 30 }
    source_image_collection { id: 111 }
    source_image_single { id: 500 }
    pipeline { id: 3 }
    data_export { id: 7 }
  )pb");
  const char* const expected = R"pb(
    id: 1
    sequence: 1
    name: "Linked"
    project { id: 16 name: "Aarhus Universitet, Department of Ecoscience" }
    deployment { id: 30 name: "Station 1" project_id: 16 }
    source_image_collection {
      id: 111
      name: "Random 1000"
      method: "random"
      project_id: 16
      kwargs {
        fields {
          key: "size"
          value { number_value: 1000 }
        }
      }
    }
    source_image_single {
      id: 500
      url: "https://images.example/500.jpg"
      width: 4096
      height: 2160
      timestamp { seconds: 1714500000 }
      event_id: 9
      deployment_id: 30
      path: "station1/500.jpg"
    }
    pipeline {
      id: 3
      name: "Quebec & Vermont classifier"
      slug: "quebec-vermont"
      description: "Species of the north east"
      version: 2
      version_name: "2024.1"
      created_at { seconds: 1704067200 }
    }
    data_export {
      id: 7
      user: 1
      project: 17
      format: "occurrences_simple_csv"
      filters { struct_value {} }
    }
    status: CREATED
    created_at { seconds: 1714557600 nanos: 123456000 }
    updated_at { seconds: 1714557600 nanos: 123456000 }
    progress {}
    job_type { key: "unknown" }
    dispatch_mode: "internal"
  )pb";
  EXPECT_THAT(created, EqualsProto(expected));
  EXPECT_THAT(Get(1), EqualsProto(expected));
}

TEST_P(SqliteJobStoreTest, ReferenceWithIdZeroIsNull) {
  const v2::Job job = Create(R"pb(
    name: "Zero ids"
    project { id: 16 }
    deployment { id: 0 }
    pipeline { id: 0 name: "not stored" }
  )pb");
  EXPECT_FALSE(job.has_deployment());
  EXPECT_FALSE(job.has_pipeline());
  EXPECT_EQ(ListIds(OrderedBy(JobOrderField::kPipeline, false)),
            (IdPage{1, {1}}));
}

TEST_P(SqliteJobStoreTest, CreateJobRefusesReferenceToMissingRecord) {
  const std::pair<const char*, const char*> cases[] = {
      {R"pb(project { id: 99 })pb", "project_id: record 99 does not exist"},
      {R"pb(project { id: 16 }
            deployment { id: 99 })pb",
       "deployment_id: record 99 does not exist"},
      {R"pb(project { id: 16 }
            source_image_collection { id: 99 })pb",
       "source_image_collection_id: record 99 does not exist"},
      {R"pb(project { id: 16 }
            source_image_single { id: 99 })pb",
       "source_image_single_id: record 99 does not exist"},
      {R"pb(project { id: 16 }
            pipeline { id: 99 })pb",
       "pipeline_id: record 99 does not exist"},
      {R"pb(project { id: 16 }
            data_export { id: 99 })pb",
       "data_export_id: record 99 does not exist"},
  };
  for (const auto& [text, message] : cases) {
    EXPECT_THAT(store_->CreateJob(ParseText<v2::Job>(absl::StrCat(
                                      "name: \"Dangling\" ", text)),
                                  {{LogLevel::kInfo, "never written"}}),
                StatusIs(absl::StatusCode::kInvalidArgument, message))
        << text;
  }
  EXPECT_EQ(ListIds(JobQuery()), (IdPage{0, {}}));
  EXPECT_EQ(Create(R"pb(name: "Valid"
                        project { id: 16 })pb")
                .id(),
            1);
  EXPECT_THAT(LogMessages(1), IsEmpty());
}

TEST_P(SqliteJobStoreTest, GetJobOfUnknownIdIsNotFound) {
  Create(R"pb(name: "Only"
              project { id: 16 })pb");
  EXPECT_THAT(store_->GetJob(42),
              StatusIs(absl::StatusCode::kNotFound, "job 42 not found"));
}

// ---- MutateJob ----

TEST_P(SqliteJobStoreTest, MutateJobOfUnknownIdIsNotFound) {
  bool called = false;
  EXPECT_THAT(store_->MutateJob(42,
                                [&](JobMutation&) {
                                  called = true;
                                  return absl::OkStatus();
                                }),
              StatusIs(absl::StatusCode::kNotFound, "job 42 not found"));
  EXPECT_FALSE(called);
}

TEST_P(SqliteJobStoreTest, MutateJobWritesChangesAndBumpsUpdatedAt) {
  const v2::Job created = Create(R"pb(name: "Before"
                                      project { id: 16 })pb");
  clock_.Advance(absl::Seconds(90));

  v2::Job seen;
  ASSERT_OK_AND_ASSIGN(
      const v2::Job written,
      store_->MutateJob(created.id(), [&](JobMutation& mutation) {
        seen = mutation.job;
        mutation.job.set_name("After");
        mutation.job.set_delay(5);
        mutation.job.set_limit(100);
        mutation.job.set_shuffle(true);
        mutation.job.set_status(v2::STARTED);
        *mutation.job.mutable_started_at() = StartPlus(absl::Seconds(90));
        mutation.job.mutable_project()->set_id(17);
        mutation.job.mutable_deployment()->set_id(31);
        mutation.job.mutable_pipeline()->set_id(2);
        mutation.job.mutable_job_type()->set_key("ml");
        mutation.job.set_dispatch_mode("sync_api");
        mutation.job.mutable_progress()->mutable_summary()->set_status(
            v2::STARTED);
        mutation.job.mutable_result()->set_string_value("partial");
        // Not writable: kept as stored.
        mutation.job.set_id(1000);
        *mutation.job.mutable_created_at() = StartPlus(absl::Hours(-1));
        mutation.logs.push_back({LogLevel::kWarning, "Started late"});
        return absl::OkStatus();
      }));
  EXPECT_THAT(seen, SameProto(created));
  const char* const expected = R"pb(
    id: 1
    sequence: 2
    name: "After"
    delay: 5
    limit: 100
    shuffle: true
    project { id: 17 name: "Vermont Atlas of Life" }
    deployment { id: 31 name: "Station 2" project_id: 16 }
    pipeline { id: 2 name: "Moth detector" slug: "moth-detector" version: 1 }
    status: STARTED
    created_at { seconds: 1714557600 nanos: 123456000 }
    updated_at { seconds: 1714557690 nanos: 123456000 }
    started_at { seconds: 1714557690 nanos: 123456000 }
    progress { summary { status: STARTED } }
    job_type { key: "ml" }
    dispatch_mode: "sync_api"
    result { string_value: "partial" }
  )pb";
  EXPECT_THAT(written, EqualsProto(expected));
  EXPECT_THAT(Get(1), EqualsProto(expected));

  ASSERT_OK_AND_ASSIGN(const std::vector<LogLine> lines,
                       store_->ReadLogs(1, 10));
  ASSERT_EQ(lines.size(), 1);
  EXPECT_EQ(lines[0].created_at, kStart + absl::Seconds(90));
  EXPECT_EQ(lines[0].level, LogLevel::kWarning);
  EXPECT_EQ(lines[0].message, "Started late");
}

TEST_P(SqliteJobStoreTest, MutateJobClearsReferencesAndOptionalFields) {
  const v2::Job created = Create(R"pb(
    name: "Linked"
    limit: 7
    project { id: 16 }
    deployment { id: 30 }
    source_image_collection { id: 111 }
    source_image_single { id: 500 }
    pipeline { id: 2 }
    data_export { id: 7 }
    started_at { seconds: 1714557000 }
    finished_at { seconds: 1714557100 }
    result { bool_value: true }
  )pb");
  ASSERT_OK(store_->MutateJob(created.id(), [](JobMutation& mutation) {
    mutation.job.clear_limit();
    mutation.job.clear_deployment();
    mutation.job.mutable_source_image_collection()->set_id(0);
    mutation.job.clear_source_image_single();
    mutation.job.clear_pipeline();
    mutation.job.clear_data_export();
    mutation.job.clear_started_at();
    mutation.job.clear_finished_at();
    mutation.job.clear_result();
    return absl::OkStatus();
  }));
  EXPECT_THAT(
      Get(created.id()), EqualsProto(R"pb(
        id: 1
        sequence: 2
        name: "Linked"
        project { id: 16 name: "Aarhus Universitet, Department of Ecoscience" }
        status: CREATED
        created_at { seconds: 1714557600 nanos: 123456000 }
        updated_at { seconds: 1714557600 nanos: 123456000 }
        progress {}
        job_type { key: "unknown" }
        dispatch_mode: "internal"
      )pb"));
}

TEST_P(SqliteJobStoreTest, MutateJobCallbackErrorWritesNothing) {
  const v2::Job created = Create(R"pb(name: "Untouched"
                                      project { id: 16 })pb",
                                 {{LogLevel::kInfo, "created"}});
  clock_.Advance(absl::Minutes(5));
  EXPECT_THAT(store_->MutateJob(
                  created.id(),
                  [](JobMutation& mutation) {
                    mutation.job.set_name("Changed");
                    mutation.job.set_status(v2::STARTED);
                    mutation.logs.push_back({LogLevel::kInfo, "never written"});
                    return absl::AbortedError("changed my mind");
                  }),
              StatusIs(absl::StatusCode::kAborted, "changed my mind"));
  EXPECT_THAT(Get(created.id()), SameProto(created));
  EXPECT_THAT(LogMessages(created.id()), ElementsAre("created"));
}

TEST_P(SqliteJobStoreTest, MutateJobRefusesToMoveFinalJobToAnotherStatus) {
  for (const v2::JobStatus final_status :
       {v2::SUCCESS, v2::FAILURE, v2::REVOKED}) {
    const std::string status_name = v2::JobStatus_Name(final_status);
    v2::Job input = ParseText<v2::Job>(R"pb(name: "Done"
                                            project { id: 16 })pb");
    input.set_status(final_status);
    ASSERT_OK_AND_ASSIGN(const v2::Job created, store_->CreateJob(input, {}));
    clock_.Advance(absl::Seconds(1));

    EXPECT_THAT(
        store_->MutateJob(
            created.id(),
            [](JobMutation& mutation) {
              mutation.job.set_status(v2::PENDING);
              mutation.job.set_name("Revived");
              mutation.logs.push_back({LogLevel::kInfo, "never written"});
              return absl::OkStatus();
            }),
        StatusIs(absl::StatusCode::kFailedPrecondition,
                 absl::StrCat("job ", created.id(), " is ", status_name,
                              "; a final job cannot change status")));
    EXPECT_THAT(Get(created.id()), SameProto(created)) << status_name;
    EXPECT_THAT(LogMessages(created.id()), IsEmpty());

    // Keeping the final status, the other fields stay writable.
    ASSERT_OK_AND_ASSIGN(
        const v2::Job renamed,
        store_->MutateJob(created.id(), [](JobMutation& mutation) {
          mutation.job.set_name("Renamed");
          return absl::OkStatus();
        }));
    EXPECT_EQ(renamed.status(), final_status);
    EXPECT_EQ(renamed.name(), "Renamed");
    EXPECT_EQ(Micros(renamed.updated_at()), absl::ToUnixMicros(clock_.Now()));
  }
}

TEST_P(SqliteJobStoreTest, MutateJobLetsFinalJobLeaveWithAllowLeaveFinal) {
  const v2::Job created = Create(R"pb(name: "Retried"
                                      project { id: 16 }
                                      status: FAILURE
                                      finished_at { seconds: 1714557000 })pb");
  ASSERT_OK_AND_ASSIGN(
      const v2::Job retried,
      store_->MutateJob(created.id(), [](JobMutation& mutation) {
        mutation.allow_leave_final = true;
        mutation.job.set_status(v2::PENDING);
        mutation.job.clear_finished_at();
        return absl::OkStatus();
      }));
  EXPECT_EQ(retried.status(), v2::PENDING);
  EXPECT_FALSE(retried.has_finished_at());
  EXPECT_EQ(Get(created.id()).status(), v2::PENDING);
}

TEST_P(SqliteJobStoreTest, MutateJobRefusesReferenceToMissingRecord) {
  const v2::Job created = Create(R"pb(name: "Job"
                                      project { id: 16 })pb");
  clock_.Advance(absl::Seconds(1));
  EXPECT_THAT(store_->MutateJob(created.id(),
                                [](JobMutation& mutation) {
                                  mutation.job.set_name("Changed");
                                  mutation.job.mutable_pipeline()->set_id(99);
                                  return absl::OkStatus();
                                }),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "pipeline_id: record 99 does not exist"));
  EXPECT_THAT(Get(created.id()), SameProto(created));
}

TEST_P(SqliteJobStoreTest, WritesRefuseValuesTheSchemaCannotHold) {
  const std::string kNotJson =
      ": not representable as JSON (a number is NaN or infinite)";
  v2::Job bad_status = ParseText<v2::Job>(R"pb(name: "Odd"
                                               project { id: 16 })pb");
  bad_status.set_status(static_cast<v2::JobStatus>(42));
  EXPECT_THAT(store_->CreateJob(bad_status, {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "status: 42 is not a job status"));

  // JSON has no NaN or infinity; stored, they would read back as strings.
  v2::Job not_json = ParseText<v2::Job>(R"pb(name: "Odd"
                                             project { id: 16 })pb");
  not_json.mutable_result()->set_number_value(std::nan(""));
  EXPECT_THAT(store_->CreateJob(not_json, {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       absl::StrCat("result", kNotJson)));
  not_json.clear_result();
  google::protobuf::Value* item = not_json.mutable_progress()
                                      ->add_stages()
                                      ->add_params()
                                      ->mutable_value()
                                      ->mutable_list_value()
                                      ->add_values();
  (*item->mutable_struct_value()->mutable_fields())["rate"].set_number_value(
      INFINITY);
  EXPECT_THAT(store_->CreateJob(not_json, {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       absl::StrCat("progress", kNotJson)));
  // A string that is not UTF-8 would not parse back.
  v2::Job not_utf8 = ParseText<v2::Job>(R"pb(name: "Odd"
                                             project { id: 16 })pb");
  not_utf8.mutable_progress()->add_errors(std::string("bad \xff byte"));
  EXPECT_THAT(store_->CreateJob(not_utf8, {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "progress: a string is not valid UTF-8"));
  not_utf8.clear_progress();
  not_utf8.mutable_result()->set_string_value(std::string("\xc3"));
  EXPECT_THAT(store_->CreateJob(not_utf8, {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "result: a string is not valid UTF-8"));
  EXPECT_EQ(ListIds(JobQuery()), (IdPage{0, {}}));

  const v2::Job created = Create(R"pb(name: "Job"
                                      project { id: 16 })pb");
  const std::pair<std::function<void(v2::Job&)>, std::string> changes[] = {
      {[](v2::Job& job) { job.set_status(v2::JOB_STATUS_UNSPECIFIED); },
       "status: 0 is not a job status"},
      {[](v2::Job& job) { job.mutable_result()->set_number_value(-INFINITY); },
       absl::StrCat("result", kNotJson)},
      {[](v2::Job& job) { job.clear_project(); },
       "project_id: record 0 does not exist"},
  };
  for (const auto& [change, message] : changes) {
    EXPECT_THAT(store_->MutateJob(created.id(),
                                  [&change = change](JobMutation& mutation) {
                                    change(mutation.job);
                                    return absl::OkStatus();
                                  }),
                StatusIs(absl::StatusCode::kInvalidArgument, message));
  }
  EXPECT_THAT(Get(created.id()), SameProto(created));
}

TEST_P(SqliteJobStoreTest, IdsAreSixtyFourBit) {
  // 2^53 + 1 does not survive a trip through a double.
  constexpr int64_t kBigId = 9007199254740993;
  v2::Catalog catalog;
  v2::Project* project = catalog.add_projects();
  project->set_id(kBigId);
  project->set_name("Big");
  ASSERT_OK(store_->ImportCatalog(catalog));
  v2::Job job = ParseText<v2::Job>(R"pb(name: "Big project")pb");
  job.mutable_project()->set_id(kBigId);
  ASSERT_OK_AND_ASSIGN(const v2::Job created, store_->CreateJob(job, {}));
  EXPECT_EQ(created.project().id(), kBigId);
  EXPECT_EQ(store_->GetProject(kBigId).value().name(), "Big");
  JobQuery query;
  query.project_id = kBigId;
  EXPECT_EQ(ListIds(query), (IdPage{1, {1}}));
  query.project_id = kBigId - 1;
  EXPECT_EQ(ListIds(query), (IdPage{0, {}}));
}

TEST_P(SqliteJobStoreTest, ConcurrentMutateJobNeverLosesAnUpdate) {
  const v2::Job created = Create(R"pb(
    name: "Counter"
    project { id: 16 }
    progress {
      stages {
        key: "collect"
        params {
          key: "count"
          value { number_value: 0 }
        }
      }
    }
  )pb");
  constexpr int kThreads = 8;
  constexpr int kIncrements = 50;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kIncrements; ++i) {
        const absl::StatusOr<v2::Job> written =
            store_->MutateJob(created.id(), [t](JobMutation& mutation) {
              v2::StageParam* count = mutation.job.mutable_progress()
                                          ->mutable_stages(0)
                                          ->mutable_params(0);
              count->mutable_value()->set_number_value(
                  count->value().number_value() + 1);
              mutation.logs.push_back(
                  {LogLevel::kInfo, absl::StrCat("thread ", t)});
              return absl::OkStatus();
            });
        EXPECT_THAT(written, IsOk());
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  EXPECT_EQ(StageParamValue(Get(created.id()), "collect", "count"),
            kThreads * kIncrements);
  EXPECT_EQ(LogMessages(created.id(), 1000).size(), kThreads * kIncrements);
}

// ---- Leases ----

TEST_P(SqliteJobStoreTest, CreateJobGivesAnEmptyLease) {
  Create(R"pb(name: "New"
              project { id: 16 }
              status: PENDING)pb");
  EXPECT_EQ(Lease(1), kNoLease);
  ASSERT_OK_AND_ASSIGN(const JobLease lease, store_->GetLease(1));
  EXPECT_FALSE(lease.leased());
}

TEST_P(SqliteJobStoreTest, GetLeaseOfUnknownJobIsNotFound) {
  EXPECT_THAT(store_->GetLease(99),
              StatusIs(absl::StatusCode::kNotFound, "job 99 not found"));
}

TEST_P(SqliteJobStoreTest, MutateJobReadsAndWritesTheLease) {
  Create(R"pb(name: "Leased"
              project { id: 16 }
              status: PENDING)pb");
  std::string lease_read;
  clock_.Advance(absl::Seconds(5));
  ASSERT_OK_AND_ASSIGN(
      const v2::Job started, store_->MutateJob(1, [&](JobMutation& mutation) {
        lease_read = LeaseText(mutation.lease);
        mutation.lease =
            MakeLease("lease-1", "worker-a", kStart + absl::Seconds(35), 1);
        mutation.job.set_status(v2::STARTED);
        return absl::OkStatus();
      }));
  EXPECT_EQ(lease_read, kNoLease);
  EXPECT_EQ(started.status(), v2::STARTED);
  EXPECT_EQ(Micros(started.updated_at()), kStartMicros + 5000000);
  EXPECT_EQ(Lease(1),
            "{lease-1, worker-a, 2024-05-01T10:00:35.123456+00:00, 1}");

  // A write that leaves the lease alone keeps it.
  ASSERT_OK(store_->MutateJob(1, [&](JobMutation& mutation) {
    lease_read = LeaseText(mutation.lease);
    mutation.job.set_name("Renamed");
    return absl::OkStatus();
  }));
  EXPECT_EQ(lease_read,
            "{lease-1, worker-a, 2024-05-01T10:00:35.123456+00:00, 1}");
  EXPECT_EQ(Lease(1), lease_read);

  // Renewed, then ended: without a lease_id it is no lease, but the
  // holder (now the queue the job waits in) and the attempts stay.
  ASSERT_OK(store_->MutateJob(1, [](JobMutation& mutation) {
    mutation.lease.expires_at += absl::Seconds(30);
    return absl::OkStatus();
  }));
  EXPECT_EQ(Lease(1),
            "{lease-1, worker-a, 2024-05-01T10:01:05.123456+00:00, 1}");
  ASSERT_OK(store_->MutateJob(1, [](JobMutation& mutation) {
    mutation.lease.lease_id.clear();
    mutation.job.set_status(v2::PENDING);
    return absl::OkStatus();
  }));
  EXPECT_EQ(Lease(1), "{, worker-a, infinite-past, 1}");
  ASSERT_OK(store_->MutateJob(1, [](JobMutation& mutation) {
    mutation.lease.holder = kRunnerHolder;
    return absl::OkStatus();
  }));
  EXPECT_EQ(Lease(1), "{, jobline-runner, infinite-past, 1}");
}

TEST_P(SqliteJobStoreTest, CreateJobStoresTheQueueOfItsLease) {
  JobLease queue;
  queue.holder = kRunnerHolder;
  v2::Job job;
  job.set_name("Queued");
  job.mutable_project()->set_id(16);
  job.set_status(v2::PENDING);
  absl::StatusOr<v2::Job> created = store_->CreateJob(job, {}, queue);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(Lease(created->id()), "{, jobline-runner, infinite-past, 0}");

  JobIdQuery runner_queue;
  runner_queue.statuses = {v2::PENDING};
  runner_queue.leased = false;
  runner_queue.holder = kRunnerHolder;
  absl::StatusOr<std::vector<int64_t>> ids = store_->FindJobIds(runner_queue);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(*ids, ElementsAre(created->id()));
  runner_queue.holder = "";
  EXPECT_THAT(*store_->FindJobIds(runner_queue), IsEmpty());
}

TEST_P(SqliteJobStoreTest, LeaseExpiryIsStoredToTheMicrosecond) {
  Create(R"pb(name: "Leased"
              project { id: 16 })pb");
  const std::pair<absl::Time, std::string> cases[] = {
      {kStart + absl::Nanoseconds(1999),
       "{l, h, 2024-05-01T10:00:00.123457+00:00, 2}"},
      {absl::InfiniteFuture(), "{l, h, infinite-future, 2}"},
      {absl::InfinitePast(), "{l, h, infinite-past, 2}"},
      {absl::UnixEpoch(), "{l, h, 1970-01-01T00:00:00+00:00, 2}"},
  };
  for (const auto& [expires, text] : cases) {
    // A structured binding cannot be captured in C++17.
    const absl::Time expires_at = expires;
    ASSERT_OK(store_->MutateJob(1, [&](JobMutation& mutation) {
      mutation.lease = MakeLease("l", "h", expires_at, 2);
      return absl::OkStatus();
    }));
    EXPECT_EQ(Lease(1), text);
  }
}

TEST_P(SqliteJobStoreTest, MutateJobRefusesNegativeAttempts) {
  Create(R"pb(name: "Leased"
              project { id: 16 })pb");
  EXPECT_THAT(store_->MutateJob(1,
                                [](JobMutation& mutation) {
                                  mutation.lease = MakeLease(
                                      "l", "h", kStart + absl::Seconds(1), -1);
                                  mutation.job.set_name("Changed");
                                  return absl::OkStatus();
                                }),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "lease.attempts: must not be negative (got -1)"));
  EXPECT_EQ(Lease(1), kNoLease);
  EXPECT_EQ(Get(1).name(), "Leased");
}

TEST_P(SqliteJobStoreTest, MutateJobCallbackErrorWritesNoLease) {
  Create(R"pb(name: "Leased"
              project { id: 16 })pb");
  EXPECT_THAT(store_->MutateJob(1,
                                [](JobMutation& mutation) {
                                  mutation.lease = MakeLease(
                                      "l", "h", kStart + absl::Seconds(1), 1);
                                  return absl::AbortedError("changed my mind");
                                }),
              StatusIs(absl::StatusCode::kAborted, "changed my mind"));
  EXPECT_EQ(Lease(1), kNoLease);
}

// ---- Log lines ----

TEST_P(SqliteJobStoreTest, AppendLogsToUnknownJobIsNotFound) {
  EXPECT_THAT(store_->AppendLogs(42, {{LogLevel::kInfo, "lost"}}),
              StatusIs(absl::StatusCode::kNotFound, "job 42 not found"));
  EXPECT_THAT(LogMessages(42), IsEmpty());
}

TEST_P(SqliteJobStoreTest, ReadLogsReturnsNewestFirstWithLimit) {
  const v2::Job job = Create(R"pb(name: "Chatty"
                                  project { id: 16 })pb");
  ASSERT_OK(store_->AppendLogs(
      job.id(), {{LogLevel::kInfo, "one"}, {LogLevel::kWarning, "two"}}));
  clock_.Advance(absl::Seconds(1));
  ASSERT_OK(store_->AppendLogs(job.id(), {{LogLevel::kError, "three"},
                                          {LogLevel::kCritical, "four"},
                                          {LogLevel::kDebug, "five"}}));
  // A line stamped earlier than the others sorts after them, whatever its id.
  clock_.Set(kStart - absl::Seconds(1));
  ASSERT_OK(store_->AppendLogs(job.id(), {{LogLevel::kInfo, "six"}}));

  ASSERT_OK_AND_ASSIGN(const std::vector<LogLine> lines,
                       store_->ReadLogs(job.id(), 100));
  ASSERT_EQ(lines.size(), 6);
  const struct {
    int64_t id;
    absl::Time created_at;
    LogLevel level;
    const char* message;
  } expected[] = {
      {5, kStart + absl::Seconds(1), LogLevel::kDebug, "five"},
      {4, kStart + absl::Seconds(1), LogLevel::kCritical, "four"},
      {3, kStart + absl::Seconds(1), LogLevel::kError, "three"},
      {2, kStart, LogLevel::kWarning, "two"},
      {1, kStart, LogLevel::kInfo, "one"},
      {6, kStart - absl::Seconds(1), LogLevel::kInfo, "six"},
  };
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(lines[i].id, expected[i].id) << i;
    EXPECT_EQ(lines[i].job_id, job.id()) << i;
    EXPECT_EQ(lines[i].created_at, expected[i].created_at) << i;
    EXPECT_EQ(lines[i].level, expected[i].level) << i;
    EXPECT_EQ(lines[i].message, expected[i].message) << i;
  }
  EXPECT_THAT(LogMessages(job.id(), 2), ElementsAre("five", "four"));
  EXPECT_THAT(LogMessages(job.id(), 0), IsEmpty());
  EXPECT_THAT(LogMessages(job.id(), -1), IsEmpty());
}

TEST_P(SqliteJobStoreTest, ReadLogsOfUnknownJobIsEmpty) {
  ASSERT_OK_AND_ASSIGN(const std::vector<LogLine> lines,
                       store_->ReadLogs(42, 10));
  EXPECT_THAT(lines, IsEmpty());
}

// ---- DeleteJob ----

TEST_P(SqliteJobStoreTest, DeleteJobOfUnknownIdIsNotFound) {
  EXPECT_THAT(store_->DeleteJob(42),
              StatusIs(absl::StatusCode::kNotFound, "job 42 not found"));
}

TEST_P(SqliteJobStoreTest, DeleteJobDeletesItsLogLines) {
  const v2::Job doomed = Create(R"pb(name: "Doomed"
                                     project { id: 16 })pb",
                                {{LogLevel::kInfo, "doomed 1"}});
  const v2::Job kept = Create(R"pb(name: "Kept"
                                   project { id: 16 })pb",
                              {{LogLevel::kInfo, "kept 1"}});
  ASSERT_OK(store_->AppendLogs(doomed.id(), {{LogLevel::kError, "doomed 2"}}));

  ASSERT_OK(store_->DeleteJob(doomed.id()));
  EXPECT_THAT(store_->GetJob(doomed.id()),
              StatusIs(absl::StatusCode::kNotFound, "job 1 not found"));
  EXPECT_THAT(LogMessages(doomed.id()), IsEmpty());
  EXPECT_THAT(LogMessages(kept.id()), ElementsAre("kept 1"));
  EXPECT_EQ(ListIds(JobQuery()), (IdPage{1, {2}}));
  EXPECT_THAT(store_->DeleteJob(doomed.id()),
              StatusIs(absl::StatusCode::kNotFound, "job 1 not found"));
}

TEST_P(SqliteJobStoreTest, IdsAreNeverReusedAfterDelete) {
  Create(R"pb(name: "One"
              project { id: 16 })pb");
  Create(R"pb(name: "Two"
              project { id: 16 })pb",
         {{LogLevel::kInfo, "a"}, {LogLevel::kInfo, "b"}});
  Create(R"pb(name: "Three"
              project { id: 16 })pb");
  ASSERT_OK(store_->DeleteJob(3));
  ASSERT_OK(store_->DeleteJob(2));

  EXPECT_EQ(Create(R"pb(name: "Four"
                        project { id: 16 })pb")
                .id(),
            4);
  ASSERT_OK(store_->AppendLogs(1, {{LogLevel::kInfo, "c"}}));
  ASSERT_OK_AND_ASSIGN(const std::vector<LogLine> lines,
                       store_->ReadLogs(1, 10));
  ASSERT_EQ(lines.size(), 1);
  EXPECT_EQ(lines[0].id, 3);
}

// ---- Reference records ----

TEST_P(SqliteJobStoreTest, GetRecordReadersReturnStoredRecords) {
  EXPECT_THAT(store_->GetProject(16).value(), EqualsProto(R"pb(
                id: 16
                name: "Aarhus Universitet, Department of Ecoscience"
              )pb"));
  EXPECT_THAT(store_->GetDeployment(31).value(),
              EqualsProto(R"pb(
                id: 31 name: "Station 2" project_id: 16
              )pb"));
  EXPECT_THAT(store_->GetCaptureCollection(111).value(), EqualsProto(R"pb(
                id: 111
                name: "Random 1000"
                method: "random"
                project_id: 16
                kwargs {
                  fields {
                    key: "size"
                    value { number_value: 1000 }
                  }
                }
              )pb"));
  EXPECT_THAT(store_->GetCapture(500).value(), EqualsProto(R"pb(
                id: 500
                url: "https://images.example/500.jpg"
                width: 4096
                height: 2160
                timestamp { seconds: 1714500000 }
                event_id: 9
                deployment_id: 30
                path: "station1/500.jpg"
              )pb"));
  EXPECT_THAT(store_->GetPipeline(2).value(), EqualsProto(R"pb(
                id: 2
                name: "Moth detector"
                slug: "moth-detector"
                version: 1
              )pb"));
  EXPECT_THAT(store_->GetDataExport(7).value(), EqualsProto(R"pb(
                id: 7
                user: 1
                project: 17
                format: "occurrences_simple_csv"
                filters { struct_value {} }
              )pb"));
}

TEST_P(SqliteJobStoreTest, GetRecordOfUnknownIdIsNotFound) {
  EXPECT_THAT(store_->GetProject(99),
              StatusIs(absl::StatusCode::kNotFound, "project 99 not found"));
  EXPECT_THAT(store_->GetDeployment(99),
              StatusIs(absl::StatusCode::kNotFound, "deployment 99 not found"));
  EXPECT_THAT(
      store_->GetCaptureCollection(99),
      StatusIs(absl::StatusCode::kNotFound, "capture collection 99 not found"));
  EXPECT_THAT(store_->GetCapture(99),
              StatusIs(absl::StatusCode::kNotFound, "capture 99 not found"));
  EXPECT_THAT(store_->GetPipeline(99),
              StatusIs(absl::StatusCode::kNotFound, "pipeline 99 not found"));
  EXPECT_THAT(store_->GetDataExport(99), StatusIs(absl::StatusCode::kNotFound,
                                                  "data export 99 not found"));
}

TEST_P(SqliteJobStoreTest, ImportCatalogUpsertsById) {
  ASSERT_OK_AND_ASSIGN(const v2::ImportCatalogResponse counts,
                       store_->ImportCatalog(TestCatalog()));
  EXPECT_THAT(counts, EqualsProto(R"pb(
                projects: 2
                deployments: 2
                pipelines: 2
                capture_collections: 2
                captures: 1
                data_exports: 1
              )pb"));
  const v2::Job job = Create(R"pb(name: "Job"
                                  project { id: 17 }
                                  pipeline { id: 2 })pb");

  ASSERT_OK_AND_ASSIGN(const v2::ImportCatalogResponse update_counts,
                       store_->ImportCatalog(ParseText<v2::Catalog>(R"pb(
                         projects { id: 17 name: "Vermont Center" }
                         projects { id: 18 name: "New project" }
                         pipelines {
                           id: 2
                           name: "Moth detector 2"
                           slug: "moth-detector-2"
                           version: 2
                         }
                       )pb")));
  EXPECT_THAT(update_counts, EqualsProto(R"pb(projects: 2 pipelines: 1)pb"));
  EXPECT_THAT(store_->GetProject(17).value(),
              EqualsProto(R"pb(id: 17 name: "Vermont Center")pb"));
  EXPECT_THAT(store_->GetProject(18).value(),
              EqualsProto(R"pb(id: 18 name: "New project")pb"));
  const v2::Job reread = Get(job.id());
  EXPECT_THAT(reread.project(),
              EqualsProto(R"pb(id: 17 name: "Vermont Center")pb"));
  EXPECT_THAT(reread.pipeline(), EqualsProto(R"pb(
                id: 2
                name: "Moth detector 2"
                slug: "moth-detector-2"
                version: 2
              )pb"));

  // The pipeline is found under its new slug only.
  JobQuery by_new_slug;
  by_new_slug.pipeline_slug = "moth-detector-2";
  EXPECT_EQ(ListIds(by_new_slug), (IdPage{1, {1}}));
  JobQuery by_old_slug;
  by_old_slug.pipeline_slug = "moth-detector";
  EXPECT_EQ(ListIds(by_old_slug), (IdPage{0, {}}));
}

TEST_P(SqliteJobStoreTest, ImportCatalogLetsRecordsReferToEarlierOnes) {
  ASSERT_OK_AND_ASSIGN(
      const v2::ImportCatalogResponse counts,
      store_->ImportCatalog(ParseText<v2::Catalog>(R"pb(
        projects { id: 20 name: "Fresh" }
        deployments { id: 40 name: "Fresh station" project_id: 20 }
        capture_collections { id: 120 name: "All" project_id: 20 }
        captures { id: 600 deployment_id: 40 }
        captures { id: 601 }
        data_exports { id: 8 project: 20 format: "occurrences_api_json" }
      )pb")));
  EXPECT_THAT(counts, EqualsProto(R"pb(
                projects: 1
                deployments: 1
                capture_collections: 1
                captures: 2
                data_exports: 1
              )pb"));
  EXPECT_THAT(store_->GetCapture(601).value(), EqualsProto(R"pb(id: 601)pb"));
  EXPECT_THAT(store_->GetCaptureCollection(120).value(),
              EqualsProto(R"pb(id: 120 name: "All" project_id: 20)pb"));
}

TEST_P(SqliteJobStoreTest, ImportCatalogIsAllOrNothing) {
  // A bad record in the middle, then one in the last section.
  EXPECT_THAT(store_->ImportCatalog(ParseText<v2::Catalog>(R"pb(
    projects { id: 16 name: "Renamed" }
    projects { id: 18 name: "New" }
    deployments { id: 32 name: "Orphan" project_id: 99 }
  )pb")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "deployments[0].project_id: project 99 does not exist"));
  EXPECT_THAT(store_->ImportCatalog(ParseText<v2::Catalog>(R"pb(
    projects { id: 16 name: "Renamed" }
    projects { id: 18 name: "New" }
    deployments { id: 32 name: "Station 3" project_id: 18 }
    pipelines { id: 4 name: "New pipeline" slug: "new" }
    capture_collections { id: 113 name: "New" project_id: 18 }
    captures { id: 501 deployment_id: 32 }
    data_exports { id: 8 project: 18 }
    data_exports { id: 0 project: 18 }
  )pb")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "data_exports[1].id: must be positive (got 0)"));

  EXPECT_THAT(store_->GetProject(16).value(), EqualsProto(R"pb(
                id: 16
                name: "Aarhus Universitet, Department of Ecoscience"
              )pb"));
  EXPECT_THAT(store_->GetProject(18),
              StatusIs(absl::StatusCode::kNotFound, "project 18 not found"));
  EXPECT_THAT(store_->GetDeployment(32),
              StatusIs(absl::StatusCode::kNotFound, "deployment 32 not found"));
  EXPECT_THAT(store_->GetPipeline(4),
              StatusIs(absl::StatusCode::kNotFound, "pipeline 4 not found"));
  EXPECT_THAT(store_->GetCaptureCollection(113),
              StatusIs(absl::StatusCode::kNotFound,
                       "capture collection 113 not found"));
  EXPECT_THAT(store_->GetCapture(501),
              StatusIs(absl::StatusCode::kNotFound, "capture 501 not found"));
  EXPECT_THAT(store_->GetDataExport(8),
              StatusIs(absl::StatusCode::kNotFound, "data export 8 not found"));
}

TEST_P(SqliteJobStoreTest, ImportCatalogRefusesUnknownCollectionMethod) {
  EXPECT_THAT(store_->ImportCatalog(ParseText<v2::Catalog>(R"pb(
    capture_collections {
      id: 113
      name: "Odd"
      method: "sometimes"
      project_id: 16
    }
  )pb")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "capture_collections[0].method: unknown sampling method "
                       "\"sometimes\""));
  EXPECT_THAT(store_->GetCaptureCollection(113),
              StatusIs(absl::StatusCode::kNotFound,
                       "capture collection 113 not found"));

  // Every listed method, and none, is accepted.
  const char* const methods[] = {"",
                                 "full",
                                 "random",
                                 "stratified_random",
                                 "interval",
                                 "manual",
                                 "starred",
                                 "random_from_each_event",
                                 "last_and_random_from_each_event",
                                 "greatest_file_size_from_each_event",
                                 "detections_only",
                                 "common_combined"};
  v2::Catalog catalog;
  int64_t id = 200;
  for (const char* method : methods) {
    v2::CaptureCollection* collection = catalog.add_capture_collections();
    collection->set_id(id++);
    collection->set_name(absl::StrCat("Method ", method));
    collection->set_method(method);
    collection->set_project_id(16);
  }
  ASSERT_OK_AND_ASSIGN(const v2::ImportCatalogResponse counts,
                       store_->ImportCatalog(catalog));
  EXPECT_EQ(counts.capture_collections(), 12);
  EXPECT_EQ(store_->GetCaptureCollection(211).value().method(),
            "common_combined");
  // The method is case-sensitive.
  EXPECT_THAT(store_->ImportCatalog(ParseText<v2::Catalog>(R"pb(
    capture_collections { id: 114 name: "Odd" method: "Random" project_id: 16 }
  )pb")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "capture_collections[0].method: unknown sampling method "
                       "\"Random\""));
}

TEST_P(SqliteJobStoreTest, ImportCatalogRefusesInvalidRecords) {
  const std::pair<const char*, const char*> cases[] = {
      {R"pb(projects { id: 0 name: "No id" })pb",
       "projects[0].id: must be positive (got 0)"},
      {R"pb(projects { id: -3 name: "Negative" })pb",
       "projects[0].id: must be positive (got -3)"},
      {R"pb(projects { id: 19 })pb", "projects[0].name: must not be empty"},
      {R"pb(projects { id: 19 name: "Nul\000in the name" })pb",
       "projects[0].name: must not hold a null character"},
      {R"pb(pipelines { id: 4 name: "P" slug: "a\000b" })pb",
       "pipelines[0].slug: must not hold a null character"},
      {R"pb(deployments { id: 33 project_id: 16 })pb",
       "deployments[0].name: must not be empty"},
      {R"pb(pipelines { id: 4 slug: "nameless" })pb",
       "pipelines[0].name: must not be empty"},
      {R"pb(pipelines { id: 4 name: "Slugless" })pb",
       "pipelines[0].slug: must not be empty"},
      {R"pb(capture_collections { id: 113 project_id: 16 })pb",
       "capture_collections[0].name: must not be empty"},
      {R"pb(capture_collections { id: 113 name: "Orphan" project_id: 99 })pb",
       "capture_collections[0].project_id: project 99 does not exist"},
      {R"pb(captures { id: 0 })pb", "captures[0].id: must be positive (got 0)"},
      {R"pb(captures { id: 501 deployment_id: 99 })pb",
       "captures[0].deployment_id: deployment 99 does not exist"},
      {R"pb(data_exports { id: 8 project: 99 })pb",
       "data_exports[0].project: project 99 does not exist"},
  };
  for (const auto& [text, message] : cases) {
    EXPECT_THAT(store_->ImportCatalog(ParseText<v2::Catalog>(text)),
                StatusIs(absl::StatusCode::kInvalidArgument, message))
        << text;
  }
  EXPECT_THAT(store_->GetCapture(501),
              StatusIs(absl::StatusCode::kNotFound, "capture 501 not found"));
  EXPECT_THAT(store_->GetDataExport(8),
              StatusIs(absl::StatusCode::kNotFound, "data export 8 not found"));
}

// ---- Collection members ----

TEST_P(SqliteJobStoreTest, SetCollectionCapturesGivesNewCapturesIds) {
  ASSERT_OK_AND_ASSIGN(const int64_t count, store_->SetCollectionCaptures(
                                                111, Captures(R"pb(
                                                  path: "station1/a.jpg"
                                                  deployment_id: 30
                                                  width: 10
                                                  details: "dropped"
                                                  user_permissions: "dropped"
                                                  ;
        path: "station1/b.jpg";
        id: 500 path: "station1/500.jpg" width: 4096
      )pb")));
  EXPECT_EQ(count, 3);
  EXPECT_THAT(Members(111), ElementsAre(500, 501, 502));
  EXPECT_EQ(CaptureCount(111), 3);
  // The stored record holds the assigned id.
  EXPECT_THAT(store_->GetCapture(501).value(), EqualsProto(R"pb(
                id: 501
                path: "station1/a.jpg"
                deployment_id: 30
                width: 10
              )pb"));
  EXPECT_THAT(store_->GetCapture(502).value(),
              EqualsProto(R"pb(id: 502 path: "station1/b.jpg")pb"));
  EXPECT_THAT(
      store_->GetCapture(500).value(),
      EqualsProto(R"pb(id: 500 path: "station1/500.jpg" width: 4096)pb"));
  EXPECT_THAT(Members(112), IsEmpty());
  EXPECT_EQ(CaptureCount(112), 0);
}

TEST_P(SqliteJobStoreTest, SetCollectionCapturesMatchesCapturesByPath) {
  ASSERT_OK(
      store_->SetCollectionCaptures(111, Captures(R"pb(path: "a.jpg"
                                                       ; path: "b.jpg")pb")));
  ASSERT_EQ(Members(111), (std::vector<int64_t>{501, 502}));

  // The same paths keep their ids (and take the new records); the path of
  // an imported capture finds it too.
  ASSERT_OK_AND_ASSIGN(const int64_t count,
                       store_->SetCollectionCaptures(112, Captures(R"pb(
                                                       path: "b.jpg"
                                                       width: 20
                                                       ;
                         path: "station1/500.jpg";
                         path: "c.jpg"
                       )pb")));
  EXPECT_EQ(count, 3);
  EXPECT_THAT(Members(112), ElementsAre(500, 502, 503));
  EXPECT_THAT(store_->GetCapture(502).value(),
              EqualsProto(R"pb(id: 502 path: "b.jpg" width: 20)pb"));
  EXPECT_THAT(store_->GetCapture(500).value(),
              EqualsProto(R"pb(id: 500 path: "station1/500.jpg")pb"));
  // A capture may belong to both collections.
  EXPECT_THAT(Members(111), ElementsAre(501, 502));
}

TEST_P(SqliteJobStoreTest, SetCollectionCapturesReplacesTheMembers) {
  ASSERT_OK(store_->SetCollectionCaptures(
      111, Captures(R"pb(id: 500
                         ; path: "a.jpg"; path: "b.jpg")pb")));
  ASSERT_EQ(CaptureCount(111), 3);

  ASSERT_OK_AND_ASSIGN(const int64_t count, store_->SetCollectionCaptures(
                                                111, Captures(R"pb(path: "b.jpg"
                                                                   ;
                                                       path: "c.jpg")pb")));
  EXPECT_EQ(count, 2);
  EXPECT_THAT(Members(111), ElementsAre(502, 503));
  EXPECT_EQ(CaptureCount(111), 2);
  // Former members are still captures.
  EXPECT_THAT(store_->GetCapture(501).value(),
              EqualsProto(R"pb(id: 501 path: "a.jpg")pb"));

  // A capture listed twice is one member, with its later record.
  ASSERT_OK_AND_ASSIGN(const int64_t twice,
                       store_->SetCollectionCaptures(111, Captures(R"pb(
                                                       path: "a.jpg"
                                                       width: 1
                                                       ;
                         id: 501 path: "a.jpg" width: 2
                       )pb")));
  EXPECT_EQ(twice, 1);
  EXPECT_THAT(Members(111), ElementsAre(501));
  EXPECT_EQ(store_->GetCapture(501).value().width(), 2);

  ASSERT_OK_AND_ASSIGN(const int64_t emptied,
                       store_->SetCollectionCaptures(111, {}));
  EXPECT_EQ(emptied, 0);
  EXPECT_THAT(Members(111), IsEmpty());
  EXPECT_EQ(CaptureCount(111), 0);
}

TEST_P(SqliteJobStoreTest, SetCollectionCapturesOfUnknownCollectionIsNotFound) {
  EXPECT_THAT(
      store_->SetCollectionCaptures(99, Captures(R"pb(path: "a.jpg")pb")),
      StatusIs(absl::StatusCode::kNotFound, "capture collection 99 not found"));
  EXPECT_THAT(Members(99), IsEmpty());
  EXPECT_THAT(store_->GetCapture(501),
              StatusIs(absl::StatusCode::kNotFound, "capture 501 not found"));
}

TEST_P(SqliteJobStoreTest, SetCollectionCapturesRefusesBadCaptures) {
  const std::pair<const char*, const char*> cases[] = {
      {R"pb(id: 0)pb",
       "captures[0].path: a capture without an id needs a path"},
      {R"pb(path: "a.jpg"
            ; deployment_id: 30)pb",
       "captures[1].path: a capture without an id needs a path"},
      {R"pb(id: -2 path: "a.jpg")pb",
       "captures[0].id: must be positive, or 0 for a new capture (got -2)"},
      {R"pb(path: "a.jpg" deployment_id: 99)pb",
       "captures[0].deployment_id: deployment 99 does not exist"},
      {R"pb(id: 600 path: "station1/500.jpg")pb",
       "captures[0].path: \"station1/500.jpg\" is already the path of "
       "capture 500"},
      {R"pb(id: 600 path: "a.jpg"
            ; id: 601 path: "a.jpg")pb",
       "captures[1].path: \"a.jpg\" is already the path of capture 600"},
  };
  for (const auto& [text, message] : cases) {
    EXPECT_THAT(store_->SetCollectionCaptures(111, Captures(text)),
                StatusIs(absl::StatusCode::kInvalidArgument, message))
        << text;
  }
}

TEST_P(SqliteJobStoreTest, SetCollectionCapturesWithABadCaptureWritesNothing) {
  ASSERT_OK(store_->SetCollectionCaptures(
      111, Captures(R"pb(id: 500 path: "station1/500.jpg" width: 4096)pb")));

  EXPECT_THAT(store_->SetCollectionCaptures(111, Captures(R"pb(
                                              path: "new.jpg"
                                              ;
    id: 500 width: 1;
    path: ""
  )pb")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "captures[2].path: a capture without an id needs a "
                       "path"));
  EXPECT_THAT(Members(111), ElementsAre(500));
  EXPECT_EQ(CaptureCount(111), 1);
  EXPECT_EQ(store_->GetCapture(500).value().width(), 4096);
  EXPECT_THAT(store_->GetCapture(501),
              StatusIs(absl::StatusCode::kNotFound, "capture 501 not found"));
  // Nor its path: another capture may take it.
  EXPECT_THAT(store_->ImportCatalog(ParseText<v2::Catalog>(R"pb(
    captures { id: 600 path: "new.jpg" }
  )pb")),
              IsOk());
}

TEST_P(SqliteJobStoreTest, CaptureCountIsNeverStored) {
  ASSERT_OK(store_->ImportCatalog(ParseText<v2::Catalog>(R"pb(
    capture_collections {
      id: 113
      name: "Claims a count"
      project_id: 16
      capture_count: 42
    }
  )pb")));
  EXPECT_EQ(CaptureCount(113), 0);
  ASSERT_OK(store_->SetCollectionCaptures(113, Captures(R"pb(id: 500)pb")));
  EXPECT_EQ(CaptureCount(113), 1);

  // The collection nested in a job has no count.
  const v2::Job job = Create(R"pb(name: "Populate"
                                  project { id: 16 }
                                  source_image_collection { id: 113 })pb");
  EXPECT_THAT(
      job.source_image_collection(),
      EqualsProto(R"pb(id: 113 name: "Claims a count" project_id: 16)pb"));
}

TEST_P(SqliteJobStoreTest, ImportCatalogRefusesPathOfAnotherCapture) {
  EXPECT_THAT(store_->ImportCatalog(ParseText<v2::Catalog>(R"pb(
    captures { id: 501 path: "a.jpg" }
    captures { id: 502 path: "station1/500.jpg" }
  )pb")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "captures[1].path: \"station1/500.jpg\" is already the "
                       "path of capture 500"));
  EXPECT_THAT(store_->GetCapture(501),
              StatusIs(absl::StatusCode::kNotFound, "capture 501 not found"));

  // A capture may take a path another one gave up in the same import.
  ASSERT_OK(store_->ImportCatalog(ParseText<v2::Catalog>(R"pb(
    captures { id: 500 path: "station1/500-old.jpg" }
    captures { id: 502 path: "station1/500.jpg" }
  )pb")));
  ASSERT_OK(store_->SetCollectionCaptures(
      111, Captures(R"pb(path: "station1/500.jpg")pb")));
  EXPECT_THAT(Members(111), ElementsAre(502));
}

// ---- ListJobs ----

TEST_P(SqliteJobStoreTest, ListJobsDefaultsToNewestCreatedFirst) {
  CreateListJobs();
  EXPECT_EQ(ListIds(JobQuery()), (IdPage{6, {6, 5, 4, 3, 2, 1}}));
}

TEST_P(SqliteJobStoreTest, ListJobsBreaksTiesByNewestIdFirst) {
  for (const char* name : {"a", "b", "c"}) {
    v2::Job job = ParseText<v2::Job>(R"pb(project { id: 16 })pb");
    job.set_name(name);
    ASSERT_OK(store_->CreateJob(job, {}));
  }
  EXPECT_EQ(ListIds(JobQuery()), (IdPage{3, {3, 2, 1}}));
  EXPECT_EQ(ListIds(OrderedBy(JobOrderField::kCreatedAt, false)),
            (IdPage{3, {3, 2, 1}}));
}

TEST_P(SqliteJobStoreTest, ListJobsOrdersByEveryFieldWithNullsLast) {
  CreateListJobs();
  const struct {
    JobOrderField field;
    std::vector<int64_t> ascending;
    std::vector<int64_t> descending;
  } cases[] = {
      {JobOrderField::kName, {6, 2, 3, 1, 5, 4}, {4, 5, 1, 3, 2, 6}},
      {JobOrderField::kCreatedAt, {1, 2, 3, 4, 5, 6}, {6, 5, 4, 3, 2, 1}},
      {JobOrderField::kUpdatedAt, {2, 4, 5, 6, 3, 1}, {1, 3, 6, 5, 4, 2}},
      {JobOrderField::kStatus, {1, 4, 5, 6, 2, 3}, {3, 2, 6, 5, 4, 1}},
      {JobOrderField::kStartedAt, {3, 4, 2, 6, 5, 1}, {2, 4, 3, 6, 5, 1}},
      {JobOrderField::kFinishedAt, {4, 3, 6, 5, 2, 1}, {6, 3, 4, 5, 2, 1}},
      {JobOrderField::kProject, {5, 4, 2, 1, 6, 3}, {6, 3, 5, 4, 2, 1}},
      {JobOrderField::kDeployment, {2, 4, 6, 5, 3, 1}, {4, 2, 6, 5, 3, 1}},
      {JobOrderField::kSourceImageCollection,
       {1, 4, 6, 5, 3, 2},
       {4, 1, 6, 5, 3, 2}},
      {JobOrderField::kPipeline, {5, 2, 3, 6, 4, 1}, {3, 5, 2, 6, 4, 1}},
  };
  for (const auto& test_case : cases) {
    const int field = static_cast<int>(test_case.field);
    EXPECT_EQ(ListIds(OrderedBy(test_case.field, false)),
              (IdPage{6, test_case.ascending}))
        << "ascending field " << field;
    EXPECT_EQ(ListIds(OrderedBy(test_case.field, true)),
              (IdPage{6, test_case.descending}))
        << "descending field " << field;
  }
}

TEST_P(SqliteJobStoreTest, ListJobsAppliesOrderingKeysInOrder) {
  CreateListJobs();
  JobQuery query;
  query.ordering = {{JobOrderField::kProject, false},
                    {JobOrderField::kName, true}};
  EXPECT_EQ(ListIds(query), (IdPage{6, {4, 5, 1, 2, 3, 6}}));
  query.ordering = {{JobOrderField::kPipeline, true},
                    {JobOrderField::kStartedAt, false}};
  EXPECT_EQ(ListIds(query), (IdPage{6, {3, 2, 5, 4, 6, 1}}));
}

TEST_P(SqliteJobStoreTest, ListJobsRandomOrderReturnsEveryJobOnce) {
  CreateListJobs();
  JobQuery query;
  query.random_order = true;
  IdPage page = ListIds(query);
  std::sort(page.ids.begin(), page.ids.end());
  EXPECT_EQ(page, (IdPage{6, {1, 2, 3, 4, 5, 6}}));

  // An explicit ordering wins over random order.
  query.ordering = {{JobOrderField::kName, false}};
  EXPECT_EQ(ListIds(query), (IdPage{6, {6, 2, 3, 1, 5, 4}}));
}

TEST_P(SqliteJobStoreTest, ListJobsFiltersByStatus) {
  CreateListJobs();
  const std::pair<v2::JobStatus, std::vector<int64_t>> cases[] = {
      {v2::CREATED, {1}}, {v2::PENDING, {5}},  {v2::STARTED, {2}},
      {v2::SUCCESS, {3}}, {v2::FAILURE, {4}},  {v2::REVOKED, {6}},
      {v2::RETRY, {}},    {v2::CANCELING, {}}, {v2::UNKNOWN, {}},
  };
  for (const auto& [status, ids] : cases) {
    JobQuery query;
    query.status = status;
    EXPECT_EQ(ListIds(query), (IdPage{static_cast<int64_t>(ids.size()), ids}))
        << v2::JobStatus_Name(status);
  }
}

TEST_P(SqliteJobStoreTest, ListJobsFiltersByReferenceIds) {
  CreateListJobs();
  JobQuery by_project;
  by_project.project_id = 16;
  EXPECT_EQ(ListIds(by_project), (IdPage{4, {5, 4, 2, 1}}));
  by_project.project_id = 17;
  EXPECT_EQ(ListIds(by_project), (IdPage{2, {6, 3}}));
  by_project.project_id = 99;
  EXPECT_EQ(ListIds(by_project), (IdPage{0, {}}));

  JobQuery by_deployment;
  by_deployment.deployment_id = 30;
  EXPECT_EQ(ListIds(by_deployment), (IdPage{1, {2}}));

  JobQuery by_collection;
  by_collection.source_image_collection_id = 112;
  EXPECT_EQ(ListIds(by_collection), (IdPage{1, {4}}));

  JobQuery by_capture;
  by_capture.source_image_single_id = 500;
  EXPECT_EQ(ListIds(by_capture), (IdPage{1, {5}}));

  JobQuery by_pipeline;
  by_pipeline.pipeline_id = 2;
  EXPECT_EQ(ListIds(by_pipeline), (IdPage{2, {5, 2}}));
}

TEST_P(SqliteJobStoreTest, ListJobsFiltersByPipelineSlug) {
  CreateListJobs();
  JobQuery query;
  query.pipeline_slug = "moth-detector";
  EXPECT_EQ(ListIds(query), (IdPage{2, {5, 2}}));
  query.pipeline_slug = "quebec-vermont";
  EXPECT_EQ(ListIds(query), (IdPage{1, {3}}));
  query.pipeline_slug = "MOTH-DETECTOR";
  EXPECT_EQ(ListIds(query), (IdPage{0, {}}));
}

TEST_P(SqliteJobStoreTest, ListJobsFiltersByPipelineSlugIn) {
  CreateListJobs();
  JobQuery query;
  query.pipeline_slug_in = {"quebec-vermont", "moth-detector"};
  EXPECT_EQ(ListIds(query), (IdPage{3, {5, 3, 2}}));
  query.pipeline_slug_in = {"quebec-vermont", "nothing"};
  EXPECT_EQ(ListIds(query), (IdPage{1, {3}}));
  // Jobs without a pipeline never match.
  query.pipeline_slug_in = {""};
  EXPECT_EQ(ListIds(query), (IdPage{0, {}}));
}

TEST_P(SqliteJobStoreTest, ListJobsFiltersByJobTypeAndDispatchMode) {
  CreateListJobs();
  JobQuery by_type;
  by_type.job_type_key = "ml";
  EXPECT_EQ(ListIds(by_type), (IdPage{3, {5, 3, 2}}));
  by_type.job_type_key = "data_export";
  EXPECT_EQ(ListIds(by_type), (IdPage{1, {6}}));
  by_type.job_type_key = "regroup_events";
  EXPECT_EQ(ListIds(by_type), (IdPage{0, {}}));

  JobQuery by_mode;
  by_mode.dispatch_mode = "internal";
  EXPECT_EQ(ListIds(by_mode), (IdPage{4, {6, 5, 4, 1}}));
  by_mode.dispatch_mode = "sync_api";
  EXPECT_EQ(ListIds(by_mode), (IdPage{1, {3}}));
  by_mode.dispatch_mode = "async_api";
  EXPECT_EQ(ListIds(by_mode), (IdPage{1, {2}}));
}

TEST_P(SqliteJobStoreTest, ListJobsCombinesFilters) {
  CreateListJobs();
  JobQuery query;
  query.project_id = 16;
  query.job_type_key = "ml";
  EXPECT_EQ(ListIds(query), (IdPage{2, {5, 2}}));
  query.status = v2::PENDING;
  EXPECT_EQ(ListIds(query), (IdPage{1, {5}}));
  query.search_terms = {"moth"};
  query.pipeline_slug_in = {"moth-detector"};
  EXPECT_EQ(ListIds(query), (IdPage{1, {5}}));
  query.dispatch_mode = "async_api";
  EXPECT_EQ(ListIds(query), (IdPage{0, {}}));
}

TEST_P(SqliteJobStoreTest, ListJobsIncompleteOnlyExcludesFinishedWork) {
  const char* const jobs[] = {
      // 1: kept, no stages.
      R"pb(status: CREATED)pb",
      // 2: kept, its results stage is running.
      R"pb(status: STARTED
           progress {
             stages { key: "collect" status: SUCCESS }
             stages { key: "results" status: STARTED }
           })pb",
      // 3, 4: dropped, a final results stage.
      R"pb(status: STARTED
           progress { stages { key: "results" status: SUCCESS } })pb",
      R"pb(status: STARTED
           progress { stages { key: "results" status: FAILURE } })pb",
      // 5, 6, 7: dropped, final.
      R"pb(status: SUCCESS)pb",
      R"pb(status: FAILURE)pb",
      R"pb(status: REVOKED)pb",
      // 8: kept, a final stage that is not "results".
      R"pb(status: CANCELING
           progress { stages { key: "process" status: SUCCESS } })pb",
      // 9: dropped, a revoked results stage.
      R"pb(status: PENDING
           progress { stages { key: "results" status: REVOKED } })pb",
  };
  for (const char* job : jobs) {
    Create(absl::StrCat(R"pb(name: "Job"
                             project { id: 16 })pb",
                        job));
  }
  JobQuery query;
  query.incomplete_only = true;
  EXPECT_EQ(ListIds(query), (IdPage{3, {8, 2, 1}}));

  // A later write of the progress moves a job in or out.
  ASSERT_OK(store_->MutateJob(3, [](JobMutation& mutation) {
    mutation.job.mutable_progress()->mutable_stages(0)->set_status(v2::STARTED);
    return absl::OkStatus();
  }));
  ASSERT_OK(store_->MutateJob(2, [](JobMutation& mutation) {
    mutation.job.mutable_progress()->mutable_stages(1)->set_status(v2::SUCCESS);
    return absl::OkStatus();
  }));
  EXPECT_EQ(ListIds(query), (IdPage{3, {8, 3, 1}}));
}

TEST_P(SqliteJobStoreTest, ListJobsSearchesJobAndPipelineNames) {
  CreateListJobs();
  const std::pair<std::vector<std::string>, std::vector<int64_t>> cases[] = {
      // Job 2 by its name, job 5 by its pipeline's.
      {{"moth"}, {5, 2}},
      {{"MOTH"}, {5, 2}},
      {{"mOtH DeTeCtOr"}, {5, 2}},
      {{"vermont"}, {3}},
      {{"capture"}, {5, 1}},
      // Every term must match, each in either name.
      {{"moth", "run"}, {2}},
      {{"run", "moth"}, {2}},
      {{"nightly", "classifier"}, {3}},
      {{"nightly", "moth"}, {}},
      {{"absent"}, {}},
      // '%' and '_' are literal.
      {{"100%"}, {6}},
      {{"%"}, {6}},
      {{"_"}, {6}},
      {{"0%_d"}, {6}},
      {{"1_0"}, {}},
      {{"t%1"}, {}},
  };
  for (const auto& [terms, ids] : cases) {
    JobQuery query;
    query.search_terms = terms;
    EXPECT_EQ(ListIds(query), (IdPage{static_cast<int64_t>(ids.size()), ids}))
        << absl::StrJoin(terms, "|");
  }
}

TEST_P(SqliteJobStoreTest, ListJobsPagesWithLimitAndOffset) {
  CreateListJobs();
  JobQuery query;
  query.limit = 2;
  EXPECT_EQ(ListIds(query), (IdPage{6, {6, 5}}));
  query.offset = 2;
  EXPECT_EQ(ListIds(query), (IdPage{6, {4, 3}}));
  query.offset = 5;
  EXPECT_EQ(ListIds(query), (IdPage{6, {1}}));
  query.offset = 6;
  EXPECT_EQ(ListIds(query), (IdPage{6, {}}));
  query.offset = 100;
  EXPECT_EQ(ListIds(query), (IdPage{6, {}}));

  // The count is over the filtered jobs, not the page.
  JobQuery filtered;
  filtered.project_id = 16;
  filtered.limit = 1;
  filtered.offset = 1;
  EXPECT_EQ(ListIds(filtered), (IdPage{4, {4}}));

  // The default limit is 10.
  for (int i = 0; i < 6; ++i)
    Create(R"pb(name: "More"
                project { id: 16 })pb");
  const IdPage first_page = ListIds(JobQuery());
  EXPECT_EQ(first_page.count, 12);
  EXPECT_EQ(first_page.ids.size(), 10);
}

TEST_P(SqliteJobStoreTest, ListJobsRefusesBadPaging) {
  JobQuery query;
  query.limit = 0;
  EXPECT_THAT(store_->ListJobs(query),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "limit: must be positive (got 0)"));
  query.limit = 10;
  query.offset = -1;
  EXPECT_THAT(store_->ListJobs(query),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "offset: must not be negative (got -1)"));
}

TEST_P(SqliteJobStoreTest, ListJobsFillsRecordsAndResultOnlyWhenAsked) {
  Create(R"pb(
    name: "Linked"
    project { id: 16 }
    deployment { id: 30 }
    source_image_collection { id: 111 }
    source_image_single { id: 500 }
    pipeline { id: 3 }
    data_export { id: 7 }
    result { number_value: 3 }
  )pb");
  const v2::Job stored = Get(1);
  EXPECT_THAT(stored.result(), EqualsProto(R"pb(number_value: 3)pb"));

  ASSERT_OK_AND_ASSIGN(const JobPage page, store_->ListJobs(JobQuery()));
  ASSERT_EQ(page.jobs.size(), 1);
  v2::Job without_result = stored;
  without_result.clear_result();
  EXPECT_THAT(page.jobs[0], SameProto(without_result));

  JobQuery with_result;
  with_result.include_result = true;
  ASSERT_OK_AND_ASSIGN(const JobPage full_page, store_->ListJobs(with_result));
  ASSERT_EQ(full_page.jobs.size(), 1);
  EXPECT_THAT(full_page.jobs[0], SameProto(stored));
}

TEST_P(SqliteJobStoreTest, ListJobsUsesIndexesForCommonQueries) {
  CreateListJobs();
  ASSERT_OK_AND_ASSIGN(const std::string default_plan,
                       store_->TEST_ExplainListJobs(JobQuery()));
  EXPECT_THAT(default_plan, HasSubstr("SCAN j USING INDEX jobs_created"));
  EXPECT_THAT(default_plan, Not(HasSubstr("TEMP B-TREE")));

  JobQuery by_status;
  by_status.status = v2::STARTED;
  ASSERT_OK_AND_ASSIGN(const std::string status_plan,
                       store_->TEST_ExplainListJobs(by_status));
  EXPECT_THAT(status_plan,
              HasSubstr("SEARCH j USING INDEX jobs_status_created (status=?)"));
  EXPECT_THAT(status_plan, Not(HasSubstr("TEMP B-TREE")));

  JobQuery by_project;
  by_project.project_id = 16;
  ASSERT_OK_AND_ASSIGN(const std::string project_plan,
                       store_->TEST_ExplainListJobs(by_project));
  EXPECT_THAT(project_plan, HasSubstr("SEARCH j USING INDEX "
                                      "jobs_project_created (project_id=?)"));
  EXPECT_THAT(project_plan, Not(HasSubstr("TEMP B-TREE")));

  // A reference filter reads its partial index.
  JobQuery by_deployment;
  by_deployment.deployment_id = 30;
  ASSERT_OK_AND_ASSIGN(const std::string deployment_plan,
                       store_->TEST_ExplainListJobs(by_deployment));
  EXPECT_THAT(deployment_plan, HasSubstr("SEARCH j USING INDEX "
                                         "jobs_deployment (deployment_id=?)"));
  JobQuery by_pipeline;
  by_pipeline.pipeline_id = 2;
  ASSERT_OK_AND_ASSIGN(const std::string pipeline_plan,
                       store_->TEST_ExplainListJobs(by_pipeline));
  EXPECT_THAT(pipeline_plan, HasSubstr("SEARCH j USING INDEX "
                                       "jobs_pipeline (pipeline_id=?)"));

  // No plan walks the whole jobs table without an index.
  for (const std::string& plan : {default_plan, status_plan, project_plan}) {
    for (absl::string_view step : absl::StrSplit(plan, '\n')) {
      EXPECT_NE(step, "SCAN j") << plan;
    }
  }
}

// ---- FindJobIds ----

TEST_P(SqliteJobStoreTest, FindJobIdsWithoutConditionsOrdersBySchedule) {
  CreateFindJobs();
  // Never scheduled first (by id), then oldest scheduled_at, then id.
  EXPECT_THAT(Find(JobIdQuery()), ElementsAre(1, 6, 3, 4, 2, 5));
}

TEST_P(SqliteJobStoreTest, FindJobIdsFiltersByStatuses) {
  CreateFindJobs();
  JobIdQuery query;
  query.statuses = {v2::PENDING};
  EXPECT_THAT(Find(query), ElementsAre(3, 2, 5));
  query.statuses = {v2::PENDING, v2::STARTED};
  EXPECT_THAT(Find(query), ElementsAre(6, 3, 4, 2, 5));
  query.statuses = {v2::CREATED, v2::STARTED, v2::UNKNOWN};
  EXPECT_THAT(Find(query), ElementsAre(1, 6, 4));
  query.statuses = {v2::SUCCESS, v2::FAILURE, v2::REVOKED};
  EXPECT_THAT(Find(query), IsEmpty());
}

TEST_P(SqliteJobStoreTest, FindJobIdsFiltersByJobTypes) {
  CreateFindJobs();
  JobIdQuery query;
  query.job_types = {"ml"};
  EXPECT_THAT(Find(query), ElementsAre(1, 4, 2));
  query.job_types = {"ml", "populate_captures_collection"};
  EXPECT_THAT(Find(query), ElementsAre(1, 3, 4, 2));
  query.job_types = {"data_export", "x' OR '1'='1"};
  EXPECT_THAT(Find(query), IsEmpty());
}

TEST_P(SqliteJobStoreTest, FindJobIdsFiltersByLease) {
  CreateFindJobs();
  JobIdQuery leased;
  leased.leased = true;
  EXPECT_THAT(Find(leased), ElementsAre(6, 4));
  JobIdQuery unleased;
  unleased.leased = false;
  EXPECT_THAT(Find(unleased), ElementsAre(1, 3, 2, 5));

  JobIdQuery by_holder;
  by_holder.holder = "worker-a";
  EXPECT_THAT(Find(by_holder), ElementsAre(4));
  by_holder.holder = kRunnerHolder;
  EXPECT_THAT(Find(by_holder), ElementsAre(6));
  by_holder.holder = "x' OR '1'='1";
  EXPECT_THAT(Find(by_holder), IsEmpty());

  // Job 6's lease expires at +20 s exactly: not before +20 s.
  JobIdQuery expired;
  expired.lease_expires_before = kStart + absl::Seconds(20);
  EXPECT_THAT(Find(expired), IsEmpty());
  expired.lease_expires_before =
      kStart + absl::Seconds(20) + absl::Microseconds(1);
  EXPECT_THAT(Find(expired), ElementsAre(6));
  expired.lease_expires_before = absl::InfiniteFuture();
  EXPECT_THAT(Find(expired), ElementsAre(6, 4));

  // An ended lease no longer matches.
  SetLease(6, JobLease(), v2::STARTED);
  EXPECT_THAT(Find(leased), ElementsAre(4));
  by_holder.holder = kRunnerHolder;
  EXPECT_THAT(Find(by_holder), IsEmpty());
  EXPECT_THAT(Find(expired), ElementsAre(4));
  EXPECT_THAT(Find(unleased), ElementsAre(1, 6, 3, 2, 5));
}

TEST_P(SqliteJobStoreTest, FindJobIdsFiltersByUpdatedBefore) {
  CreateFindJobs();
  JobIdQuery query;
  query.updated_before = kStart + absl::Seconds(10);
  EXPECT_THAT(Find(query), ElementsAre(1, 3));
  query.updated_before = kStart + absl::Seconds(10) + absl::Microseconds(1);
  EXPECT_THAT(Find(query), ElementsAre(1, 3, 2, 5));
  query.updated_before = absl::InfinitePast();
  EXPECT_THAT(Find(query), IsEmpty());
}

TEST_P(SqliteJobStoreTest, FindJobIdsCombinesConditions) {
  CreateFindJobs();
  // The runner's candidates.
  JobIdQuery candidates;
  candidates.statuses = {v2::PENDING};
  candidates.job_types = {"ml", "data_storage_sync"};
  candidates.leased = false;
  EXPECT_THAT(Find(candidates), ElementsAre(2, 5));
  candidates.limit = 1;
  EXPECT_THAT(Find(candidates), ElementsAre(2));

  // The lease sweeper: the runner's leases expired by +30 s.
  JobIdQuery sweep;
  sweep.leased = true;
  sweep.holder = kRunnerHolder;
  sweep.lease_expires_before = kStart + absl::Seconds(30);
  EXPECT_THAT(Find(sweep), ElementsAre(6));
  sweep.holder = "worker-a";
  EXPECT_THAT(Find(sweep), IsEmpty());

  // The reaper: running jobs not updated since +12 s.
  JobIdQuery stale;
  stale.statuses = {v2::STARTED, v2::UNKNOWN};
  stale.updated_before = kStart + absl::Seconds(12);
  EXPECT_THAT(Find(stale), ElementsAre(4));

  // Contradictory conditions match nothing.
  JobIdQuery none;
  none.leased = false;
  none.holder = "worker-a";
  EXPECT_THAT(Find(none), IsEmpty());
}

TEST_P(SqliteJobStoreTest, FindJobIdsStopsAtTheLimit) {
  CreateFindJobs();
  JobIdQuery query;
  query.limit = 3;
  EXPECT_THAT(Find(query), ElementsAre(1, 6, 3));
  query.limit = 1;
  EXPECT_THAT(Find(query), ElementsAre(1));
  for (const int64_t limit : {0, -1}) {
    query.limit = limit;
    EXPECT_THAT(
        store_->FindJobIds(query),
        StatusIs(absl::StatusCode::kInvalidArgument,
                 absl::StrCat("limit: must be positive (got ", limit, ")")));
  }
}

TEST_P(SqliteJobStoreTest, FindJobIdsUsesIndexes) {
  CreateFindJobs();
  const auto plan = [&](const JobIdQuery& query) {
    absl::StatusOr<std::string> steps = store_->TEST_ExplainFindJobIds(query);
    EXPECT_THAT(steps, IsOk());
    return steps.ok() ? *steps : steps.status().ToString();
  };

  JobIdQuery candidates;
  candidates.statuses = {v2::PENDING};
  candidates.job_types = {"ml"};
  candidates.leased = false;
  const std::string one_type_plan = plan(candidates);
  EXPECT_THAT(one_type_plan,
              HasSubstr("SEARCH j USING INDEX jobs_status_type_scheduled "
                        "(status=? AND job_type_key=?)"));
  // One status and one type: the index gives the order too.
  EXPECT_THAT(one_type_plan, Not(HasSubstr("TEMP B-TREE")));
  candidates.job_types = {"ml", "data_storage_sync", "data_export"};
  EXPECT_THAT(plan(candidates),
              HasSubstr("SEARCH j USING INDEX jobs_status_type_scheduled "
                        "(status=? AND job_type_key=?)"));

  JobIdQuery sweep;
  sweep.leased = true;
  sweep.lease_expires_before = kStart;
  EXPECT_THAT(plan(sweep), HasSubstr("SEARCH j USING INDEX jobs_lease_expires "
                                     "(lease_expires_at<?)"));

  JobIdQuery by_holder;
  by_holder.leased = true;
  by_holder.holder = kRunnerHolder;
  EXPECT_THAT(plan(by_holder), HasSubstr("SEARCH j USING INDEX "
                                         "jobs_lease_holder (lease_holder=?)"));

  // The runner's queue: only the runner's waiting jobs are read.
  JobIdQuery runner_queue;
  runner_queue.statuses = {v2::PENDING};
  runner_queue.leased = false;
  runner_queue.holder = kRunnerHolder;
  EXPECT_THAT(plan(runner_queue),
              HasSubstr("SEARCH j USING INDEX jobs_queue (status=? AND "
                        "lease_holder=?)"));
  // The workers' queue, by type.
  JobIdQuery worker_queue = runner_queue;
  worker_queue.holder = "";
  worker_queue.job_types = {"ml"};
  const std::string worker_plan = plan(worker_queue);
  EXPECT_THAT(worker_plan,
              HasSubstr("SEARCH j USING INDEX jobs_queue (status=? AND "
                        "lease_holder=? AND job_type_key=?)"));
  EXPECT_THAT(worker_plan, Not(HasSubstr("TEMP B-TREE")));

  JobIdQuery stale;
  stale.statuses = {v2::STARTED};
  stale.updated_before = kStart;
  EXPECT_THAT(plan(stale), HasSubstr("SEARCH j USING INDEX "
                                     "jobs_status_updated (status=? AND "
                                     "updated_at<?)"));
}

// ---- SQL metacharacters ----

TEST_P(SqliteJobStoreTest, SqlMetacharactersAreStoredAndMatchedLiterally) {
  const std::string injection = "Robert'); DROP TABLE jobs; --";
  const std::string quotes = "50% \"off\" \\ back_slash";
  v2::Job job = ParseText<v2::Job>(R"pb(project { id: 40 })pb");
  ASSERT_OK(store_->ImportCatalog(ParseText<v2::Catalog>(R"pb(
    projects { id: 40 name: "O'Brien \"Lab\"; --" }
    pipelines { id: 41 name: "x' OR '1'='1" slug: "x' OR '1'='1" }
  )pb")));
  job.set_name(injection);
  ASSERT_OK(store_->CreateJob(job, {{LogLevel::kInfo, injection}}));
  job.set_name(quotes);
  job.mutable_pipeline()->set_id(41);
  ASSERT_OK(store_->CreateJob(job, {}));
  job.set_name("Ødegaard 🦋 plain");
  job.clear_pipeline();
  ASSERT_OK(store_->CreateJob(job, {}));

  EXPECT_EQ(Get(1).name(), injection);
  EXPECT_EQ(Get(1).project().name(), "O'Brien \"Lab\"; --");
  EXPECT_EQ(Get(2).name(), quotes);
  EXPECT_EQ(Get(3).name(), "Ødegaard 🦋 plain");
  EXPECT_THAT(LogMessages(1), ElementsAre(injection));
  const std::pair<std::string, std::vector<int64_t>> searches[] = {
      {injection, {1}}, {"'", {2, 1}},        {"--", {1}},
      {"\\", {2}},      {"\"off\"", {2}},     {"% \"", {2}},
      {"\\ b", {2}},    {"' OR '1'='1", {2}}, {"' OR 1=1 --", {}},
      {"🦋", {3}},    {"ØDEGAARD", {3}},
  };
  for (const auto& [term, ids] : searches) {
    JobQuery query;
    query.search_terms = {term};
    EXPECT_EQ(ListIds(query), (IdPage{static_cast<int64_t>(ids.size()), ids}))
        << term;
  }
  JobQuery by_slug;
  by_slug.pipeline_slug = "x' OR '1'='1";
  EXPECT_EQ(ListIds(by_slug), (IdPage{1, {2}}));
  by_slug.pipeline_slug = "' OR '1'='1";
  EXPECT_EQ(ListIds(by_slug), (IdPage{0, {}}));
  EXPECT_EQ(ListIds(JobQuery()), (IdPage{3, {3, 2, 1}}));
}

// ---- What only a file database shows ----

TEST(SqliteJobStore, ReopenedFileKeepsEveryJobAndLogLine) {
  const std::string path = FreshDatabasePath();
  FakeClock clock(kStart);
  std::vector<v2::Job> jobs;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<SqliteJobStore> store,
                         OpenStore(path, &clock));
    ASSERT_OK(store->ImportCatalog(TestCatalog()));
    for (const char* name : {"First", "Second", "Third"}) {
      clock.Advance(absl::Seconds(1));
      v2::Job job = ParseText<v2::Job>(R"pb(project { id: 16 }
                                            pipeline { id: 2 })pb");
      job.set_name(name);
      ASSERT_OK(store->CreateJob(job, {{LogLevel::kInfo, name}}));
    }
    ASSERT_OK(store->AppendLogs(1, {{LogLevel::kError, "First again"}}));
    ASSERT_OK(store->MutateJob(2, [](JobMutation& mutation) {
      mutation.job.set_status(v2::SUCCESS);
      mutation.job.mutable_result()->set_string_value("done");
      return absl::OkStatus();
    }));
    ASSERT_OK(store->DeleteJob(3));
    for (const int64_t id : {1, 2}) {
      ASSERT_OK_AND_ASSIGN(const v2::Job job, store->GetJob(id));
      jobs.push_back(job);
    }
  }

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SqliteJobStore> reopened,
                       OpenStore(path, &clock));
  for (const v2::Job& job : jobs) {
    EXPECT_THAT(reopened->GetJob(job.id()).value(), SameProto(job));
  }
  EXPECT_THAT(reopened->GetJob(3),
              StatusIs(absl::StatusCode::kNotFound, "job 3 not found"));
  ASSERT_OK_AND_ASSIGN(const std::vector<LogLine> lines,
                       reopened->ReadLogs(1, 10));
  ASSERT_EQ(lines.size(), 2);
  EXPECT_EQ(lines[0].id, 4);
  EXPECT_EQ(lines[0].level, LogLevel::kError);
  EXPECT_EQ(lines[0].message, "First again");
  EXPECT_EQ(lines[1].id, 1);
  EXPECT_EQ(lines[1].created_at, kStart + absl::Seconds(1));
  EXPECT_EQ(lines[1].message, "First");
  ASSERT_OK_AND_ASSIGN(const std::vector<LogLine> second_lines,
                       reopened->ReadLogs(2, 10));
  ASSERT_EQ(second_lines.size(), 1);
  EXPECT_EQ(second_lines[0].message, "Second");
  EXPECT_THAT(reopened->GetPipeline(2).value(), EqualsProto(R"pb(
                id: 2
                name: "Moth detector"
                slug: "moth-detector"
                version: 1
              )pb"));

  // The id sequence survives too: the deleted job's id stays used.
  ASSERT_OK_AND_ASSIGN(
      const v2::Job fourth,
      reopened->CreateJob(ParseText<v2::Job>(R"pb(name: "Fourth"
                                                  project { id: 16 })pb"),
                          {}));
  EXPECT_EQ(fourth.id(), 4);
  reopened.reset();
  RemoveDatabaseFiles(path);
}

TEST(SqliteJobStore, FileDatabaseRunsInWalMode) {
  const std::string path = FreshDatabasePath();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SqliteJobStore> store,
                       OpenStore(path, RealClock()));
  Connection other = OpenConnection(path);
  EXPECT_EQ(QueryText(other.get(), "PRAGMA journal_mode"), "wal");
  other.reset();
  store.reset();
  RemoveDatabaseFiles(path);
}

TEST(SqliteJobStore, FreshDatabaseGetsCurrentSchemaVersion) {
  const std::string path = FreshDatabasePath();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SqliteJobStore> store,
                       OpenStore(path, RealClock()));
  EXPECT_EQ(SqliteSchemaVersion(), CurrentSchemaVersion());
  Connection other = OpenConnection(path);
  EXPECT_EQ(QueryText(other.get(), "PRAGMA user_version"),
            absl::StrCat(CurrentSchemaVersion()));
  store.reset();

  // Reopening a current database changes nothing.
  ASSERT_OK_AND_ASSIGN(store, OpenStore(path, RealClock()));
  EXPECT_EQ(QueryText(other.get(), "PRAGMA user_version"),
            absl::StrCat(CurrentSchemaVersion()));
  other.reset();
  store.reset();
  RemoveDatabaseFiles(path);
}

TEST(SqliteJobStore, OpenRefusesSchemaNewerThanBinary) {
  const std::string path = FreshDatabasePath();
  const int newer = CurrentSchemaVersion() + 1;
  {
    const Connection setup = OpenConnection(path);
    Execute(setup.get(), absl::StrCat("PRAGMA user_version = ", newer));
  }
  EXPECT_THAT(OpenStore(path, RealClock()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat(
                           path, ": database schema version ", newer,
                           " is newer than this jobline supports (",
                           CurrentSchemaVersion(), "); upgrade jobline"))));
  Connection check = OpenConnection(path);
  EXPECT_EQ(QueryText(check.get(), "PRAGMA user_version"), absl::StrCat(newer));
  EXPECT_EQ(QueryText(check.get(),
                      "SELECT count(*) FROM sqlite_master WHERE name = 'jobs'"),
            "0");
  check.reset();
  RemoveDatabaseFiles(path);
}

TEST(SqliteJobStore, OpenRefusesFileThatIsNotADatabaseWithDataLoss) {
  const std::string path = FreshDatabasePath();
  std::string garbage;
  for (int i = 0; i < 256; ++i) absl::StrAppend(&garbage, "not sqlite ", i);
  {
    std::ofstream file(path, std::ios::binary);
    file << garbage;
  }
  EXPECT_THAT(OpenStore(path, RealClock()),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr(absl::StrCat(
                           "cannot open database ", path,
                           ": the file is not a SQLite database or is "
                           "corrupt"))));
  EXPECT_THAT(OpenStore(path, RealClock(), /*read_only=*/true),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("is not a SQLite database")));

  // The file is left as it was.
  std::ifstream file(path, std::ios::binary);
  const std::string contents((std::istreambuf_iterator<char>(file)),
                             std::istreambuf_iterator<char>());
  EXPECT_EQ(contents, garbage);
  RemoveDatabaseFiles(path);
}

TEST(SqliteJobStore, OpenRefusesEmptyPath) {
  EXPECT_THAT(OpenStore("", RealClock()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "the job database path is empty"));
}

TEST(SqliteJobStore, ReadOnlyOpenOfMissingFileIsUnavailable) {
  const std::string path = FreshDatabasePath();
  EXPECT_THAT(OpenStore(path, RealClock(), /*read_only=*/true),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr(absl::StrCat("cannot open database ", path))));
  EXPECT_FALSE(std::ifstream(path).good());
}

TEST(SqliteJobStore, ReadOnlyOpenRefusesDatabaseThatNeedsMigration) {
  const std::string path = FreshDatabasePath();
  {
    const Connection setup = OpenConnection(path);
    Execute(setup.get(), "CREATE TABLE unrelated (x INTEGER)");
  }
  EXPECT_THAT(OpenStore(path, RealClock(), /*read_only=*/true),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat(
                           "database schema version 0 must be migrated to "
                           "version ",
                           CurrentSchemaVersion(),
                           ", but the database is read-only"))));
  RemoveDatabaseFiles(path);
}

// Fills a file database for the read-only tests: the test catalogue and
// job 1 with one log line.
void WriteReadOnlyFixture(const std::string& path, Clock* clock) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SqliteJobStore> store,
                       OpenStore(path, clock));
  ASSERT_OK(store->ImportCatalog(TestCatalog()));
  ASSERT_OK(store->CreateJob(ParseText<v2::Job>(R"pb(name: "Kept"
                                                     project { id: 16 })pb"),
                             {{LogLevel::kInfo, "written before"}}));
}

// Reads everything of the fixture and tries every write.
void ExpectReadsWorkAndWritesAreUnavailable(SqliteJobStore& store) {
  EXPECT_TRUE(store.read_only());
  ASSERT_OK_AND_ASSIGN(const v2::Job job, store.GetJob(1));
  EXPECT_EQ(job.name(), "Kept");
  EXPECT_EQ(job.project().name(),
            "Aarhus Universitet, Department of Ecoscience");
  ASSERT_OK_AND_ASSIGN(const JobPage page, store.ListJobs(JobQuery()));
  EXPECT_EQ(page.count, 1);
  ASSERT_OK_AND_ASSIGN(const std::vector<LogLine> lines, store.ReadLogs(1, 10));
  ASSERT_EQ(lines.size(), 1);
  EXPECT_EQ(lines[0].message, "written before");
  EXPECT_THAT(store.GetPipeline(2), IsOk());

  const auto read_only =
      StatusIs(absl::StatusCode::kUnavailable,
               "the job database is read-only; writes are refused");
  EXPECT_THAT(store.CreateJob(job, {}), read_only);
  bool called = false;
  EXPECT_THAT(store.MutateJob(1,
                              [&](JobMutation& mutation) {
                                called = true;
                                mutation.job.set_name("Changed");
                                return absl::OkStatus();
                              }),
              read_only);
  EXPECT_FALSE(called);
  EXPECT_THAT(store.DeleteJob(1), read_only);
  EXPECT_THAT(store.AppendLogs(1, {{LogLevel::kInfo, "lost"}}), read_only);
  EXPECT_THAT(store.ImportCatalog(TestCatalog()), read_only);
  EXPECT_THAT(store.SetCollectionCaptures(111, {}), read_only);
  EXPECT_THAT(store.FindJobIds(JobIdQuery()).value(), ElementsAre(1));
  EXPECT_EQ(LeaseText(store.GetLease(1).value()), kNoLease);
  EXPECT_THAT(store.ListCollectionCaptureIds(111).value(), IsEmpty());
}

TEST(SqliteJobStore, ReadOnlyOptionAnswersReadsAndRefusesWrites) {
  const std::string path = FreshDatabasePath();
  FakeClock clock(kStart);
  WriteReadOnlyFixture(path, &clock);
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<SqliteJobStore> store,
                         OpenStore(path, &clock, /*read_only=*/true));
    ExpectReadsWorkAndWritesAreUnavailable(*store);
  }

  // Nothing changed on disk.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SqliteJobStore> writable,
                       OpenStore(path, &clock));
  EXPECT_FALSE(writable->read_only());
  EXPECT_EQ(writable->GetJob(1).value().name(), "Kept");
  EXPECT_EQ(writable->ReadLogs(1, 10).value().size(), 1);
  writable.reset();
  RemoveDatabaseFiles(path);
}

TEST(SqliteJobStore, ReadOnlyFileOpensWithReadOnlyOption) {
  // Tests run as root, for whom mode 0444 does not stop writes; the file
  // is opened with the read_only option, as an operator would.
  const std::string path = FreshDatabasePath();
  FakeClock clock(kStart);
  WriteReadOnlyFixture(path, &clock);
  ASSERT_EQ(chmod(path.c_str(), 0444), 0);
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<SqliteJobStore> store,
                         OpenStore(path, &clock, /*read_only=*/true));
    ExpectReadsWorkAndWritesAreUnavailable(*store);
  }
  ASSERT_EQ(chmod(path.c_str(), 0644), 0);
  RemoveDatabaseFiles(path);
}

TEST(SqliteJobStore, WriteWhileAnotherConnectionWritesIsAborted) {
  const std::string path = FreshDatabasePath();
  FakeClock clock(kStart);
  SqliteJobStoreOptions options;
  options.path = path;
  options.clock = &clock;
  options.busy_timeout = absl::ZeroDuration();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SqliteJobStore> store,
                       OpenSqliteJobStore(options));
  ASSERT_OK(store->ImportCatalog(TestCatalog()));
  const v2::Job job = ParseText<v2::Job>(R"pb(name: "Job"
                                              project { id: 16 })pb");
  ASSERT_OK(store->CreateJob(job, {}));

  Connection other = OpenConnection(path);
  Execute(other.get(), "BEGIN IMMEDIATE");
  EXPECT_THAT(store->CreateJob(job, {}),
              StatusIs(absl::StatusCode::kAborted,
                       "starting a write: database is locked"));
  EXPECT_THAT(store->AppendLogs(1, {{LogLevel::kInfo, "lost"}}),
              StatusIs(absl::StatusCode::kAborted,
                       "starting a write: database is locked"));
  // In WAL mode readers do not wait for the writer.
  EXPECT_THAT(store->GetJob(1), IsOk());
  EXPECT_THAT(store->ListJobs(JobQuery()), IsOk());
  Execute(other.get(), "COMMIT");

  // The store is usable again once the other writer is done.
  ASSERT_OK_AND_ASSIGN(const v2::Job second, store->CreateJob(job, {}));
  EXPECT_EQ(second.id(), 2);
  ASSERT_OK_AND_ASSIGN(const std::vector<LogLine> lines,
                       store->ReadLogs(1, 10));
  EXPECT_THAT(lines, IsEmpty());
  other.reset();
  store.reset();
  RemoveDatabaseFiles(path);
}

TEST(SqliteJobStore, MoveToPendingStampsScheduledAt) {
  const std::string path = FreshDatabasePath();
  FakeClock clock(kStart);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SqliteJobStore> store,
                       OpenStore(path, &clock));
  ASSERT_OK(store->ImportCatalog(TestCatalog()));
  ASSERT_OK(store->CreateJob(ParseText<v2::Job>(R"pb(name: "Queued"
                                                     project { id: 16 })pb"),
                             {}));
  ASSERT_OK(store->CreateJob(ParseText<v2::Job>(R"pb(name: "Born queued"
                                                     project { id: 16 }
                                                     status: PENDING)pb"),
                             {}));
  Connection other = OpenConnection(path);
  const auto scheduled_at = [&](int64_t id) {
    return QueryText(
        other.get(),
        absl::StrCat("SELECT scheduled_at FROM jobs WHERE id = ", id));
  };
  const auto set_status = [&](v2::JobStatus status) {
    return store->MutateJob(1, [status](JobMutation& mutation) {
      mutation.job.set_status(status);
      return absl::OkStatus();
    });
  };
  EXPECT_EQ(scheduled_at(1), "");
  EXPECT_EQ(scheduled_at(2), absl::StrCat(kStartMicros));

  clock.Advance(absl::Seconds(10));
  ASSERT_OK(set_status(v2::PENDING));
  EXPECT_EQ(scheduled_at(1), absl::StrCat(kStartMicros + 10000000));
  clock.Advance(absl::Seconds(10));
  ASSERT_OK(set_status(v2::PENDING));
  ASSERT_OK(set_status(v2::STARTED));
  EXPECT_EQ(scheduled_at(1), absl::StrCat(kStartMicros + 10000000));
  clock.Advance(absl::Seconds(10));
  ASSERT_OK(set_status(v2::PENDING));
  EXPECT_EQ(scheduled_at(1), absl::StrCat(kStartMicros + 30000000));
  other.reset();
  store.reset();
  RemoveDatabaseFiles(path);
}

TEST(SqliteJobStore, ReopenedFileKeepsLeases) {
  const std::string path = FreshDatabasePath();
  FakeClock clock(kStart);
  const std::string lease =
      "{lease-1, worker-a, 2024-05-01T10:00:30.123456+00:00, 3}";
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<SqliteJobStore> store,
                         OpenStore(path, &clock));
    ASSERT_OK(store->ImportCatalog(TestCatalog()));
    ASSERT_OK(store->CreateJob(ParseText<v2::Job>(R"pb(name: "Leased"
                                                       project { id: 16 }
                                                       status: PENDING)pb"),
                               {}));
    ASSERT_OK(store->MutateJob(1, [](JobMutation& mutation) {
      mutation.lease =
          MakeLease("lease-1", "worker-a", kStart + absl::Seconds(30), 3);
      mutation.job.set_status(v2::STARTED);
      return absl::OkStatus();
    }));
  }

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SqliteJobStore> reopened,
                       OpenStore(path, &clock));
  EXPECT_EQ(LeaseText(reopened->GetLease(1).value()), lease);
  std::string lease_read;
  ASSERT_OK(reopened->MutateJob(1, [&](JobMutation& mutation) {
    lease_read = LeaseText(mutation.lease);
    return absl::OkStatus();
  }));
  EXPECT_EQ(lease_read, lease);
  JobIdQuery leased;
  leased.leased = true;
  leased.holder = "worker-a";
  EXPECT_THAT(reopened->FindJobIds(leased).value(), ElementsAre(1));
  reopened.reset();
  RemoveDatabaseFiles(path);
}

TEST(SqliteJobStore, VersionTwoDatabaseIsUpgradedWithItsJobsAndCaptures) {
  const std::string path = FreshDatabasePath();
  const auto capture = [](const std::string& text) {
    return BlobLiteral(ParseText<v2::Capture>(text).SerializeAsString());
  };
  {
    // A database as a version-2 jobline wrote it: two captures share a
    // path, one has none.
    const Connection setup = OpenConnection(path);
    ASSERT_OK(MigrateSchema(setup.get(), path, 2));
    Execute(
        setup.get(),
        absl::StrCat(
            "INSERT INTO projects (id, name, record) VALUES (16, 'Aarhus', ",
            BlobLiteral(ParseText<v2::Project>(R"pb(id: 16 name: "Aarhus")pb")
                            .SerializeAsString()),
            ")"));
    Execute(setup.get(),
            absl::StrCat("INSERT INTO captures (id, deployment_id, record) "
                         "VALUES (1, NULL, ",
                         capture(R"pb(id: 1 path: "a.jpg")pb"), "), (2, NULL, ",
                         capture(R"pb(id: 2 path: "a.jpg")pb"), "), (3, NULL, ",
                         capture(R"pb(id: 3)pb"), "), (4, NULL, ",
                         capture(R"pb(id: 4 path: "b.jpg")pb"), ")"));
    Execute(setup.get(),
            "INSERT INTO capture_collections (id, project_id, name, method, "
            "record) VALUES (111, 16, 'Random', 'random', x'086f')");
    Execute(setup.get(), "INSERT INTO collection_captures VALUES (111, 3)");
    Execute(setup.get(),
            absl::StrCat(
                "INSERT INTO jobs (id, name, project_id, job_type_key, "
                "dispatch_mode, status, created_at, updated_at, scheduled_at, "
                "progress) VALUES "
                "(1, 'Queued', 16, 'ml', 'internal', 'PENDING', ",
                kStartMicros, ", ", kStartMicros, ", ", kStartMicros,
                ", '{}'), "
                "(2, 'Running', 16, 'ml', 'internal', 'STARTED', ",
                kStartMicros, ", ", kStartMicros, ", NULL, '{}')"));
  }

  FakeClock clock(kStart);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SqliteJobStore> store,
                       OpenStore(path, &clock));
  Connection check = OpenConnection(path);
  EXPECT_EQ(QueryText(check.get(), "PRAGMA user_version"),
            absl::StrCat(CurrentSchemaVersion()));

  // The jobs are intact and unleased.
  EXPECT_THAT(store->GetJob(1).value(), EqualsProto(R"pb(
                id: 1
                sequence: 1
                name: "Queued"
                shuffle: true
                project { id: 16 name: "Aarhus" }
                job_type { key: "ml" }
                dispatch_mode: "internal"
                status: PENDING
                created_at { seconds: 1714557600 nanos: 123456000 }
                updated_at { seconds: 1714557600 nanos: 123456000 }
                progress {}
              )pb"));
  EXPECT_EQ(store->GetJob(2).value().status(), v2::STARTED);
  for (const int64_t id : {1, 2}) {
    EXPECT_EQ(LeaseText(store->GetLease(id).value()), kNoLease);
  }
  EXPECT_EQ(QueryText(check.get(), "SELECT group_concat(attempts) FROM jobs"),
            "0,0");
  JobIdQuery candidates;
  candidates.statuses = {v2::PENDING, v2::STARTED};
  candidates.leased = false;
  EXPECT_THAT(store->FindJobIds(candidates).value(), ElementsAre(2, 1));

  // Paths were copied from the records; of a shared path the lowest id
  // has it.
  EXPECT_EQ(QueryText(check.get(),
                      "SELECT group_concat(id || '=' || "
                      "coalesce(path, 'null'), ' ') FROM "
                      "(SELECT id, path FROM captures ORDER BY id)"),
            "1=a.jpg 2=null 3=null 4=b.jpg");
  EXPECT_EQ(store->GetCaptureCollection(111).value().capture_count(), 1);
  ASSERT_OK(
      store->SetCollectionCaptures(111, Captures(R"pb(path: "a.jpg"
                                                      ; path: "b.jpg")pb")));
  EXPECT_THAT(store->ListCollectionCaptureIds(111).value(), ElementsAre(1, 4));
  check.reset();
  store.reset();
  RemoveDatabaseFiles(path);
}

TEST(SqliteJobStore, VersionFourDatabaseIsUpgradedWithItsProgressAndResults) {
  const std::string path = FreshDatabasePath();
  {
    // Jobs as a version-4 jobline stored them: progress and result as
    // protobuf's JSON text. Job 3's progress is not JSON.
    const Connection setup = OpenConnection(path);
    ASSERT_OK(MigrateSchema(setup.get(), path, 4));
    Execute(
        setup.get(),
        absl::StrCat(
            "INSERT INTO projects (id, name, record) VALUES (16, 'Aarhus', ",
            BlobLiteral(ParseText<v2::Project>(R"pb(id: 16 name: "Aarhus")pb")
                            .SerializeAsString()),
            ")"));
    const std::string started_progress =
        R"json({"summary":{"status":"STARTED","progress":0.5},)json"
        R"json("stages":[{"status":"SUCCESS","progress":1,"key":"delay",)json"
        R"json("name":"Delay","params":[{"name":"Mood","key":"mood",)json"
        R"json("category":"default",)json"
        R"json("value":{"level":[1,"high",null,true]}}],)json"
        R"json("status_label":"Done"}],"errors":["slow disk"],)json"
        R"json("unknown_field":1})json";
    Execute(
        setup.get(),
        absl::StrCat(
            "INSERT INTO jobs (id, name, project_id, job_type_key, "
            "dispatch_mode, status, created_at, updated_at, progress, "
            "result) VALUES "
            "(1, 'Running', 16, 'ml', 'internal', 'STARTED', ",
            kStartMicros, ", ", kStartMicros, ", '", started_progress,
            "', '{\"file_url\":\"https://example.org/e.csv\",\"rows\":12}'),"
            " (2, 'New', 16, 'ml', 'internal', 'CREATED', ",
            kStartMicros, ", ", kStartMicros,
            ", '{\"summary\":{\"status\":\"CREATED\"}}', NULL),"
            " (3, 'Odd', 16, 'ml', 'internal', 'CREATED', ",
            kStartMicros, ", ", kStartMicros, ", 'not json', NULL)"));
  }

  FakeClock clock(kStart);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SqliteJobStore> store,
                       OpenStore(path, &clock));
  Connection check = OpenConnection(path);
  EXPECT_EQ(QueryText(check.get(), "PRAGMA user_version"),
            absl::StrCat(CurrentSchemaVersion()));
  EXPECT_EQ(QueryText(check.get(),
                      "SELECT group_concat(typeof(progress) || '/' || "
                      "typeof(result), ' ') FROM (SELECT progress, result "
                      "FROM jobs ORDER BY id)"),
            "blob/blob blob/null text/null");

  // Every job reads back as it did from the JSON (unknown fields dropped).
  EXPECT_THAT(store->GetJob(1).value(), EqualsProto(R"pb(
                id: 1
                sequence: 1
                name: "Running"
                shuffle: true
                project { id: 16 name: "Aarhus" }
                job_type { key: "ml" }
                dispatch_mode: "internal"
                status: STARTED
                created_at { seconds: 1714557600 nanos: 123456000 }
                updated_at { seconds: 1714557600 nanos: 123456000 }
                progress {
                  summary { status: STARTED progress: 0.5 }
                  stages {
                    status: SUCCESS
                    progress: 1
                    key: "delay"
                    name: "Delay"
                    params {
                      name: "Mood"
                      key: "mood"
                      category: "default"
                      value {
                        struct_value {
                          fields {
                            key: "level"
                            value {
                              list_value {
                                values { number_value: 1 }
                                values { string_value: "high" }
                                values { null_value: NULL_VALUE }
                                values { bool_value: true }
                              }
                            }
                          }
                        }
                      }
                    }
                    status_label: "Done"
                  }
                  errors: "slow disk"
                }
                result {
                  struct_value {
                    fields {
                      key: "file_url"
                      value { string_value: "https://example.org/e.csv" }
                    }
                    fields {
                      key: "rows"
                      value { number_value: 12 }
                    }
                  }
                }
              )pb"));
  EXPECT_THAT(store->GetJob(2).value().progress(),
              EqualsProto("summary { status: CREATED }"));
  EXPECT_FALSE(store->GetJob(2).value().has_result());
  // A progress that did not parse before the upgrade does not now.
  EXPECT_THAT(store->GetJob(3),
              StatusIs(absl::StatusCode::kDataLoss,
                       "stored job 3: progress is unreadable"));

  // Converted jobs are written in the new form too.
  ASSERT_OK(store->MutateJob(1, [](JobMutation& mutation) {
    mutation.job.mutable_progress()->mutable_summary()->set_progress(0.75);
    return absl::OkStatus();
  }));
  EXPECT_EQ(store->GetJob(1).value().progress().summary().progress(), 0.75);
  EXPECT_EQ(store->GetJob(1).value().result().struct_value().fields_size(), 2);
  check.reset();
  store.reset();
  RemoveDatabaseFiles(path);
}

// ---- Job counts ----

TEST(SqliteJobStore, JobCountsEqualCountsOfTheRowsAfterAnyWrites) {
  const std::string path = FreshDatabasePath();
  FakeClock clock(kStart);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SqliteJobStore> store,
                       OpenStore(path, &clock));
  ASSERT_OK(store->ImportCatalog(TestCatalog()));
  ASSERT_OK(store->ImportCatalog(ParseText<v2::Catalog>(R"pb(
    projects { id: 18 name: "Doomed" }
    deployments { id: 40 name: "Doomed station" project_id: 18 }
  )pb")));

  // A random mix of writes, the same on every run.
  const v2::JobStatus kStatuses[] = {v2::CREATED, v2::PENDING, v2::STARTED,
                                     v2::SUCCESS, v2::FAILURE, v2::REVOKED};
  const int64_t kProjects[] = {16, 17, 18};
  std::mt19937 random(20241204);
  auto pick = [&random](int n) {
    return static_cast<int>(
        std::uniform_int_distribution<int>(0, n - 1)(random));
  };
  std::vector<int64_t> ids;
  for (int step = 0; step < 400; ++step) {
    const int action = ids.empty() ? 0 : pick(10);
    if (action < 4) {
      v2::Job job;
      job.set_name(absl::StrCat("Job ", step));
      // Project 18 only until it goes.
      const int64_t project = kProjects[pick(step <= 200 ? 3 : 2)];
      job.mutable_project()->set_id(project);
      if (project == 18 && pick(2) == 0) job.mutable_deployment()->set_id(40);
      job.set_status(kStatuses[pick(6)]);
      ASSERT_OK_AND_ASSIGN(const v2::Job created, store->CreateJob(job, {}));
      ids.push_back(created.id());
    } else if (action < 7) {
      const v2::JobStatus status = kStatuses[pick(6)];
      ASSERT_OK(store
                    ->MutateJob(ids[pick(static_cast<int>(ids.size()))],
                                [&](JobMutation& mutation) {
                                  mutation.job.set_status(status);
                                  mutation.allow_leave_final = true;
                                  return absl::OkStatus();
                                })
                    .status());
    } else if (action < 9) {
      const int64_t project = kProjects[pick(2)];
      ASSERT_OK(store
                    ->MutateJob(ids[pick(static_cast<int>(ids.size()))],
                                [&](JobMutation& mutation) {
                                  mutation.job.mutable_project()->set_id(
                                      project);
                                  mutation.job.clear_deployment();
                                  return absl::OkStatus();
                                })
                    .status());
    } else {
      const size_t index = pick(static_cast<int>(ids.size()));
      ASSERT_OK(store->DeleteJob(ids[index]));
      ids.erase(ids.begin() + index);
    }
    // Half-way, project 18 goes, and its jobs with it; so does deployment
    // 40's, and so do the jobs of the station.
    if (step == 200) {
      const Connection other = OpenConnection(path);
      Execute(other.get(), "PRAGMA foreign_keys = ON");
      Execute(other.get(), "DELETE FROM projects WHERE id = 18");
      ids.clear();
      for (const absl::string_view id : absl::StrSplit(
               QueryText(other.get(), "SELECT group_concat(id) FROM jobs"), ',',
               absl::SkipEmpty())) {
        ids.push_back(std::stoll(std::string(id)));
      }
    }
  }

  // The table agrees with the rows, and so does every count ListJobs
  // gives for a status, a project, both or neither.
  const Connection check = OpenConnection(path);
  EXPECT_EQ(
      QueryText(check.get(),
                "SELECT group_concat(project_id || ' ' || status || ' ' || n) "
                "FROM (SELECT project_id, status, count AS n FROM job_counts "
                "WHERE count != 0 ORDER BY project_id, status)"),
      QueryText(check.get(),
                "SELECT group_concat(project_id || ' ' || status || ' ' || n) "
                "FROM (SELECT project_id, status, COUNT(*) AS n FROM jobs "
                "GROUP BY project_id, status ORDER BY project_id, status)"));
  EXPECT_EQ(QueryText(check.get(), "SELECT min(count) FROM job_counts"), "0");
  for (const std::optional<int64_t> project :
       {std::optional<int64_t>(), std::optional<int64_t>(16),
        std::optional<int64_t>(17), std::optional<int64_t>(18)}) {
    for (int s = -1; s < 6; ++s) {
      JobQuery query;
      query.project_id = project;
      std::string where = "1";
      if (project.has_value()) where = absl::StrCat("project_id = ", *project);
      if (s >= 0) {
        query.status = kStatuses[s];
        absl::StrAppend(&where, " AND status = '",
                        v2::JobStatus_Name(kStatuses[s]), "'");
      }
      ASSERT_OK_AND_ASSIGN(const JobPage page, store->ListJobs(query));
      EXPECT_EQ(
          absl::StrCat(page.count),
          QueryText(check.get(),
                    absl::StrCat("SELECT COUNT(*) FROM jobs WHERE ", where)))
          << where;
    }
  }
  store.reset();
  RemoveDatabaseFiles(path);
}

TEST(SqliteJobStore, ListJobsCountsFromJobCountsOnlyForStatusAndProject) {
  const std::string path = FreshDatabasePath();
  FakeClock clock(kStart);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SqliteJobStore> store,
                       OpenStore(path, &clock));
  ASSERT_OK(store->ImportCatalog(TestCatalog()));
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK(
        store
            ->CreateJob(ParseText<v2::Job>(R"pb(name: "Job"
                                                project { id: 16 }
                                                job_type { key: "ml" })pb"),
                        {})
            .status());
  }
  // A count changed behind the store's back shows which queries read it.
  const Connection other = OpenConnection(path);
  Execute(other.get(),
          "UPDATE job_counts SET count = 1000 WHERE project_id = 16 AND "
          "status = 'CREATED'");
  JobQuery query;
  EXPECT_EQ(store->ListJobs(query).value().count, 1000);
  query.status = v2::CREATED;
  EXPECT_EQ(store->ListJobs(query).value().count, 1000);
  query.project_id = 16;
  EXPECT_EQ(store->ListJobs(query).value().count, 1000);
  query.status.reset();
  EXPECT_EQ(store->ListJobs(query).value().count, 1000);
  query.search_terms = {""};  // An empty term filters nothing.
  EXPECT_EQ(store->ListJobs(query).value().count, 1000);
  query.job_type_key = "ml";
  EXPECT_EQ(store->ListJobs(query).value().count, 3);
  query.job_type_key.reset();
  query.search_terms = {"Job"};
  EXPECT_EQ(store->ListJobs(query).value().count, 3);
  query.search_terms.clear();
  query.incomplete_only = true;
  EXPECT_EQ(store->ListJobs(query).value().count, 3);
  store.reset();
  RemoveDatabaseFiles(path);
}

// ---- Updates ----

TEST(SqliteJobStore, MutateJobSetsOnlyTheColumnsThatChange) {
  const std::string path = FreshDatabasePath();
  FakeClock clock(kStart);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SqliteJobStore> store,
                       OpenStore(path, &clock));
  ASSERT_OK(store->ImportCatalog(TestCatalog()));
  v2::Job job =
      ParseText<v2::Job>(R"pb(name: "Job"
                              project { id: 16 }
                              deployment { id: 30 }
                              progress { summary { status: CREATED } })pb");
  google::protobuf::Struct* fields = job.mutable_progress()
                                         ->add_stages()
                                         ->add_params()
                                         ->mutable_value()
                                         ->mutable_struct_value();
  for (const char* key : {"a", "b", "c", "d", "e"}) {
    (*fields->mutable_fields())[key].set_string_value(key);
  }
  ASSERT_OK_AND_ASSIGN(const v2::Job created, store->CreateJob(job, {}));

  // A trigger for each column records every column an UPDATE names in its
  // SET list (SQLite fires UPDATE OF triggers for those only).
  const Connection other = OpenConnection(path);
  Execute(other.get(), "CREATE TABLE set_columns (name TEXT)");
  for (const char* column : {"name",
                             "delay",
                             "job_limit",
                             "shuffle",
                             "project_id",
                             "deployment_id",
                             "source_image_collection_id",
                             "source_image_single_id",
                             "pipeline_id",
                             "data_export_id",
                             "job_type_key",
                             "dispatch_mode",
                             "status",
                             "created_at",
                             "updated_at",
                             "scheduled_at",
                             "started_at",
                             "finished_at",
                             "progress",
                             "result",
                             "results_stage_final",
                             "lease_id",
                             "lease_holder",
                             "lease_expires_at",
                             "attempts",
                             "sequence"}) {
    Execute(other.get(), absl::StrCat("CREATE TRIGGER set_", column,
                                      " AFTER UPDATE OF ", column,
                                      " ON jobs BEGIN INSERT INTO set_columns "
                                      "VALUES ('",
                                      column, "'); END"));
  }
  // The columns the next write sets, sorted.
  const auto set_by = [&](const std::function<void(JobMutation&)>& change) {
    Execute(other.get(), "DELETE FROM set_columns");
    clock.Advance(absl::Seconds(1));
    EXPECT_THAT(store->MutateJob(created.id(),
                                 [&](JobMutation& mutation) {
                                   change(mutation);
                                   return absl::OkStatus();
                                 }),
                IsOk());
    return QueryText(other.get(),
                     "SELECT group_concat(name, ' ') FROM (SELECT name FROM "
                     "set_columns ORDER BY name)");
  };

  EXPECT_EQ(set_by([](JobMutation&) {}), "sequence updated_at");
  EXPECT_EQ(set_by([](JobMutation& m) { m.job.set_name("Renamed"); }),
            "name sequence updated_at");
  // The same values written again, the param's map rebuilt in another
  // order: nothing changes.
  EXPECT_EQ(set_by([](JobMutation& m) {
              m.job.set_name("Renamed");
              m.job.mutable_deployment()->set_id(30);
              google::protobuf::Struct* value = m.job.mutable_progress()
                                                    ->mutable_stages(0)
                                                    ->mutable_params(0)
                                                    ->mutable_value()
                                                    ->mutable_struct_value();
              value->clear_fields();
              for (const char* key : {"e", "d", "c", "b", "a"}) {
                (*value->mutable_fields())[key].set_string_value(key);
              }
            }),
            "sequence updated_at");
  EXPECT_EQ(
      set_by([](JobMutation& m) {
        m.job.set_status(v2::PENDING);
        m.job.mutable_progress()->mutable_summary()->set_status(v2::PENDING);
      }),
      "progress scheduled_at sequence status updated_at");
  EXPECT_EQ(set_by([](JobMutation& m) {
              m.lease = MakeLease("lease-1", "worker-a",
                                  kStart + absl::Seconds(60), 1);
              m.job.set_status(v2::STARTED);
            }),
            "attempts lease_expires_at lease_holder lease_id sequence status "
            "updated_at");
  EXPECT_EQ(set_by([](JobMutation& m) {
              m.job.clear_deployment();
              m.job.mutable_pipeline()->set_id(2);
              m.job.set_limit(5);
              m.job.mutable_result()->set_number_value(1);
            }),
            "deployment_id job_limit pipeline_id result sequence updated_at");

  // Every change stands, and the rest is as it was.
  EXPECT_THAT(
      store->GetJob(created.id()).value(), EqualsProto(absl::StrCat(R"pb(
        id: 1
        sequence: 7
        name: "Renamed"
        limit: 5
        project { id: 16 name: "Aarhus Universitet, Department of Ecoscience" }
        pipeline {
          id: 2
          name: "Moth detector"
          slug: "moth-detector"
          version: 1
        }
        job_type { key: "unknown" }
        dispatch_mode: "internal"
        status: STARTED
        created_at { seconds: 1714557600 nanos: 123456000 }
        updated_at { seconds: 1714557606 nanos: 123456000 }
        result { number_value: 1 }
        progress {
          summary { status: PENDING }
          stages {
            params {
              value {
                struct_value {
                  fields {
                    key: "a"
                    value { string_value: "a" }
                  }
                  fields {
                    key: "b"
                    value { string_value: "b" }
                  }
                  fields {
                    key: "c"
                    value { string_value: "c" }
                  }
                  fields {
                    key: "d"
                    value { string_value: "d" }
                  }
                  fields {
                    key: "e"
                    value { string_value: "e" }
                  }
                }
              }
            }
          }
        }
      )pb")));
  EXPECT_EQ(LeaseText(store->GetLease(created.id()).value()),
            LeaseText(MakeLease("lease-1", "worker-a",
                                kStart + absl::Seconds(60), 1)));
  store.reset();
  RemoveDatabaseFiles(path);
}

// ---- Reads beside the writer ----

TEST(SqliteJobStore, ReadsDoNotWaitForACommitInProgress) {
  const std::string path = FreshDatabasePath();
  FakeClock clock(kStart);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SqliteJobStore> store,
                       OpenStore(path, &clock));
  ASSERT_OK(store->ImportCatalog(TestCatalog()));
  ASSERT_OK(store
                ->CreateJob(ParseText<v2::Job>(R"pb(name: "First"
                                                    project { id: 16 })pb"),
                            {{LogLevel::kInfo, "created"}})
                .status());
  const int64_t commits_before = store->TEST_commits();

  // The writer stops in its batch, before COMMIT, with every lock it takes
  // held, until the reads below are done.
  absl::Notification in_commit;
  absl::Notification release;
  store->TEST_SetBeforeCommitHook([&] {
    in_commit.Notify();
    release.WaitForNotification();
  });
  std::thread writer([&] {
    EXPECT_THAT(store->MutateJob(
                    1,
                    [](JobMutation& mutation) {
                      mutation.job.set_name("Renamed");
                      mutation.logs.push_back({LogLevel::kInfo, "renamed"});
                      return absl::OkStatus();
                    }),
                IsOk());
  });
  in_commit.WaitForNotification();

  // Every read answers, with the last commit: the write is not in it yet.
  ASSERT_OK_AND_ASSIGN(const v2::Job job, store->GetJob(1));
  EXPECT_EQ(job.name(), "First");
  EXPECT_EQ(job.sequence(), 1);
  ASSERT_OK_AND_ASSIGN(const JobPage page, store->ListJobs(JobQuery()));
  EXPECT_EQ(page.count, 1);
  ASSERT_EQ(page.jobs.size(), 1);
  EXPECT_EQ(page.jobs[0].name(), "First");
  ASSERT_OK_AND_ASSIGN(const std::vector<LogLine> lines,
                       store->ReadLogs(1, 10));
  ASSERT_EQ(lines.size(), 1);
  EXPECT_EQ(lines[0].message, "created");
  ASSERT_OK_AND_ASSIGN(const JobChanges changes, store->ReadChanges(1, 0, 10));
  EXPECT_EQ(changes.job.sequence(), 1);
  EXPECT_EQ(changes.logs.size(), 1);
  EXPECT_THAT(store->FindJobIds(JobIdQuery()).value(), ElementsAre(1));
  EXPECT_EQ(LeaseText(store->GetLease(1).value()), kNoLease);
  EXPECT_EQ(store->GetProject(16).value().id(), 16);
  EXPECT_EQ(store->GetCaptureCollection(111).value().id(), 111);
  EXPECT_THAT(store->ListCollectionCaptureIds(111).value(), IsEmpty());

  // Once committed, the write is what every read sees.
  release.Notify();
  writer.join();
  store->TEST_SetBeforeCommitHook(nullptr);
  EXPECT_EQ(store->TEST_commits(), commits_before + 1);
  EXPECT_EQ(store->GetJob(1).value().name(), "Renamed");
  EXPECT_EQ(store->GetJob(1).value().sequence(), 2);
  EXPECT_EQ(store->ReadLogs(1, 10).value().size(), 2);
  store.reset();
  RemoveDatabaseFiles(path);
}

TEST(SqliteJobStore, EveryAcknowledgedWriteIsSeenByLaterReads) {
  const std::string path = FreshDatabasePath();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SqliteJobStore> store,
                       OpenStore(path, RealClock()));
  ASSERT_OK(store->ImportCatalog(TestCatalog()));

  // Each writer creates a job and renames it again and again; after each
  // acknowledged write it reads the job back and publishes the sequence.
  // A checker reads what was published and must see at least that.
  constexpr int kWriters = 6;
  constexpr int kWrites = 40;
  std::vector<std::atomic<int64_t>> job_ids(kWriters);
  std::vector<std::atomic<int64_t>> acked(kWriters);
  for (int w = 0; w < kWriters; ++w) {
    job_ids[w] = 0;
    acked[w] = 0;
  }
  std::atomic<int> writers_done{0};
  std::atomic<int> stale_reads{0};
  std::atomic<int> checks{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      v2::Job job;
      job.set_name(absl::StrCat(w, "/0"));
      job.mutable_project()->set_id(16);
      absl::StatusOr<v2::Job> created = store->CreateJob(job, {});
      ASSERT_THAT(created, IsOk());
      const int64_t id = created->id();
      for (int i = 1; i <= kWrites; ++i) {
        const std::string name = absl::StrCat(w, "/", i);
        absl::StatusOr<v2::Job> written =
            store->MutateJob(id, [&](JobMutation& mutation) {
              mutation.job.set_name(name);
              return absl::OkStatus();
            });
        ASSERT_THAT(written, IsOk());
        absl::StatusOr<v2::Job> read = store->GetJob(id);
        ASSERT_THAT(read, IsOk());
        EXPECT_EQ(read->name(), name);
        EXPECT_EQ(read->sequence(), written->sequence());
        job_ids[w] = id;
        acked[w] = written->sequence();
      }
      ++writers_done;
    });
  }
  std::thread checker([&] {
    while (writers_done < kWriters) {
      for (int w = 0; w < kWriters; ++w) {
        const int64_t id = job_ids[w];
        const int64_t sequence = acked[w];
        if (id == 0) continue;
        absl::StatusOr<v2::Job> read = store->GetJob(id);
        ASSERT_THAT(read, IsOk());
        if (read->sequence() < sequence) ++stale_reads;
        ++checks;
      }
    }
  });
  for (std::thread& thread : threads) thread.join();
  checker.join();
  EXPECT_EQ(stale_reads.load(), 0) << "of " << checks.load() << " checks";
  for (int w = 0; w < kWriters; ++w) {
    const v2::Job job = store->GetJob(job_ids[w]).value();
    EXPECT_EQ(job.name(), absl::StrCat(w, "/", kWrites));
    EXPECT_EQ(job.sequence(), kWrites + 1);
  }
  store.reset();
  RemoveDatabaseFiles(path);
}

}  // namespace
}  // namespace jobline
