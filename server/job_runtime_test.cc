// Tests of the job runtime: the worker protocol, the built-in runner and
// the job manager's actions together, on an in-memory SqliteJobStore with a
// fake clock.

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "server/job_manager.h"
#include "server/job_rules.h"
#include "server/job_runner.h"
#include "server/status_util.h"
#include "server/test_util.h"
#include "server/work_signal.h"
#include "server/worker_protocol.h"
#include "storage/fake_clock.h"
#include "storage/sqlite_job_store.h"

namespace jobline {
namespace {

using ::jobline::testing::EqualsProto;
using ::jobline::testing::ParseText;
using ::jobline::testing::ProtoDuration;
using ::jobline::testing::Violation;

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr char kPopulate[] = "populate_captures_collection";
constexpr int64_t kStartSeconds = 1762974059;  // 2025-11-12 19:00:59 UTC

// Bounded waits for what other threads do.
constexpr absl::Duration kWaitLimit = absl::Seconds(10);
constexpr absl::Duration kPollStep = absl::Milliseconds(2);

// A lease as "{lease_id, holder, expires_at, attempts}".
std::string LeaseText(const JobLease& lease) {
  return absl::StrCat("{", lease.lease_id, ", ", lease.holder, ", ",
                      absl::FormatTime(absl::RFC3339_full, lease.expires_at,
                                       absl::UTCTimeZone()),
                      ", ", lease.attempts, "}");
}

// The log lines of a single-job answer, oldest first, as "LEVEL message"
// (without the "[YYYY-MM-DD HH:MM:SS] " prefix).
std::vector<std::string> LogMessages(const v2::Job& job) {
  std::vector<std::string> lines;
  for (const std::string& line : job.logs().stdout()) {
    lines.push_back(line.substr(line.find("] ") + 2));
  }
  std::reverse(lines.begin(), lines.end());
  return lines;
}

// Polls `condition` until it holds or kWaitLimit passes; returns whether it
// held.
bool WaitUntil(const std::function<bool()>& condition) {
  const absl::Time deadline = absl::Now() + kWaitLimit;
  while (!condition()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(kPollStep);
  }
  return true;
}

class JobRuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SqliteJobStoreOptions options;
    options.path = ":memory:";
    options.clock = &clock_;
    absl::StatusOr<std::unique_ptr<SqliteJobStore>> store =
        OpenSqliteJobStore(options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    // Wired as job_server wires them: the runner has a signal of its own.
    WorkerProtocolOptions protocol_options = ProtocolOptions();
    protocol_options.runner_signal = &runner_signal_;
    protocol_ = std::make_unique<WorkerProtocol>(store_.get(), &clock_,
                                                 &signal_, protocol_options);
    JobManagerOptions manager_options;
    manager_options.work_signal = &signal_;
    manager_options.runner_signal = &runner_signal_;
    manager_ =
        std::make_unique<JobManager>(store_.get(), &clock_, manager_options);

    v2::Catalog catalog;
    v2::Project* project = catalog.add_projects();
    project->set_id(16);
    project->set_name("Aarhus Universitet, Department of Ecoscience");
    v2::Pipeline* pipeline = catalog.add_pipelines();
    pipeline->set_id(3);
    pipeline->set_name("Moth detector");
    pipeline->set_slug("moth-detector");
    pipeline->set_version(1);
    v2::CaptureCollection* collection = catalog.add_capture_collections();
    collection->set_id(111);
    collection->set_name("Random 1000");
    collection->set_method("random");
    collection->set_project_id(16);
    ASSERT_TRUE(manager_->ImportCatalog(catalog).ok());
  }

  static WorkerProtocolOptions ProtocolOptions() {
    WorkerProtocolOptions options;
    options.default_lease = absl::Seconds(60);
    options.max_attempts = 3;
    return options;
  }

  // Runner options for tests: two threads, a fast delay stage, and no
  // upkeep sweeps while a test runs (tests sweep by hand).
  static JobRunnerOptions RunnerOptions(
      absl::Duration delay_step = absl::Milliseconds(5)) {
    JobRunnerOptions options;
    options.threads = 2;
    options.delay_step = delay_step;
    options.sweep_interval = absl::Hours(1);
    options.reap_interval = absl::Hours(1);
    return options;
  }

  void StartRunner(JobRunnerOptions options) {
    options.queue_signal = &runner_signal_;
    runner_ = std::make_unique<JobRunner>(store_.get(), &clock_, &signal_,
                                          protocol_.get(), options);
    runner_->Start();
  }

  void StartRunner(absl::Duration delay_step = absl::Milliseconds(5)) {
    StartRunner(RunnerOptions(delay_step));
  }

  static v2::CreateJobRequest Request(const std::string& name,
                                      const std::string& type,
                                      int64_t delay = 0) {
    v2::CreateJobRequest request;
    v2::JobInput* input = request.mutable_job();
    input->set_name(name);
    input->set_project_id(16);
    input->set_job_type_key(type);
    input->set_delay(delay);
    if (type == kPopulate) input->set_source_image_collection_id(111);
    return request;
  }

  // A new job, enqueued with RunJob. Returns its id.
  int64_t CreatePending(const std::string& name, const std::string& type,
                        int64_t delay = 0) {
    absl::StatusOr<v2::Job> created =
        manager_->CreateJob(Request(name, type, delay));
    EXPECT_TRUE(created.ok()) << created.status();
    if (!created.ok()) return 0;
    absl::StatusOr<v2::Job> run = manager_->RunJob(created->id());
    EXPECT_TRUE(run.ok()) << run.status();
    EXPECT_EQ(run.ok() ? run->status() : v2::JOB_STATUS_UNSPECIFIED,
              v2::PENDING);
    return created->id();
  }

  int64_t CreatePendingPopulate() {
    return CreatePending("Populate captures for collection 111", kPopulate);
  }

  // The single-job answer, with its log lines.
  v2::Job Get(int64_t id) {
    v2::GetJobRequest request;
    request.set_id(id);
    absl::StatusOr<v2::Job> job = manager_->GetJob(request);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? *job : v2::Job();
  }

  // The job as stored (no presentation fields, no logs).
  v2::Job Stored(int64_t id) {
    absl::StatusOr<v2::Job> job = store_->GetJob(id);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? *job : v2::Job();
  }

  v2::JobStatus StoredStatus(int64_t id) {
    absl::StatusOr<v2::Job> job = store_->GetJob(id);
    return job.ok() ? job->status() : v2::JOB_STATUS_UNSPECIFIED;
  }

  std::string StoredLease(int64_t id) {
    absl::StatusOr<JobLease> lease = store_->GetLease(id);
    return lease.ok() ? LeaseText(*lease) : lease.status().ToString();
  }

  static v2::LeaseJobsRequest LeaseRequest(const std::string& worker,
                                           int max_jobs = 1) {
    v2::LeaseJobsRequest request;
    request.set_worker_id(worker);
    request.add_job_types(kPopulate);
    request.set_max_jobs(max_jobs);
    return request;
  }

  // Leases the one job a worker gets; an empty Lease if there is none.
  v2::Lease LeaseOne(const std::string& worker = "worker-1") {
    absl::StatusOr<v2::LeaseJobsResponse> response =
        protocol_->LeaseJobs(LeaseRequest(worker));
    EXPECT_TRUE(response.ok()) << response.status();
    if (!response.ok() || response->leases_size() != 1) {
      ADD_FAILURE() << "no lease for " << worker;
      return v2::Lease();
    }
    return response->leases(0);
  }

  absl::Status Finish(const v2::Lease& lease, v2::JobStatus status) {
    v2::FinishJobRequest request;
    request.set_lease_id(lease.lease_id());
    request.set_job_id(lease.job().id());
    request.set_status(status);
    return protocol_->FinishJob(request).status();
  }

  // The stored progress of the stage `key` of job `id`, or -1 without one.
  double StageProgress(int64_t id, const std::string& key) {
    const v2::Job job = Stored(id);
    const v2::ProgressStage* stage = FindStage(job.progress(), key);
    return stage == nullptr ? -1.0 : stage->progress();
  }

  FakeClock clock_{absl::FromUnixSeconds(kStartSeconds)};
  // The workers' signal, and the runner's.
  WorkSignal signal_;
  WorkSignal runner_signal_;
  std::unique_ptr<SqliteJobStore> store_;
  std::unique_ptr<WorkerProtocol> protocol_;
  std::unique_ptr<JobManager> manager_;
  // Declared last: stopped before everything it uses goes away.
  std::unique_ptr<JobRunner> runner_;
};

// ---- A worker's run ---------------------------------------------------------

TEST_F(JobRuntimeTest, AWorkerLeasesReportsAndFinishesAJob) {
  const int64_t id = CreatePendingPopulate();

  // Lease.
  absl::StatusOr<v2::LeaseJobsResponse> leased =
      protocol_->LeaseJobs(LeaseRequest("worker-1"));
  ASSERT_TRUE(leased.ok()) << leased.status();
  ASSERT_EQ(leased->leases_size(), 1);
  const v2::Lease lease = leased->leases(0);
  EXPECT_EQ(lease.lease_id().size(), 32u);
  EXPECT_EQ(lease.attempt(), 1);
  EXPECT_EQ(lease.expires_at().seconds(), kStartSeconds + 60);
  EXPECT_EQ(lease.job().id(), id);
  EXPECT_EQ(lease.job().status(), v2::STARTED);
  EXPECT_EQ(lease.job().started_at().seconds(), kStartSeconds);
  EXPECT_EQ(lease.job().job_type().name(), "Populate captures collection");
  EXPECT_EQ(lease.job().source_image_collection().id(), 111);
  EXPECT_EQ(StoredLease(id), absl::StrCat("{", lease.lease_id(),
                                          ", worker-1, "
                                          "2025-11-12T19:01:59+00:00, 1}"));

  // Report progress and log lines; the report renews the lease.
  clock_.Advance(absl::Seconds(2));
  v2::ReportProgressRequest report;
  report.set_lease_id(lease.lease_id());
  report.set_job_id(id);
  *report.add_stages() = ParseText<v2::StageUpdate>(
      R"pb(key: "populate_captures_collection"
           name: "Populate capture set"
           status: STARTED
           progress: 0.1)pb");
  *report.add_logs() =
      ParseText<v2::WorkerLogLine>(R"pb(level: "INFO"
                                        message: "Sampling 1000 captures")pb");
  *report.add_logs() = ParseText<v2::WorkerLogLine>(
      R"pb(level: "WARNING" message: "The collection is large")pb");
  absl::StatusOr<v2::ReportProgressResponse> reported =
      protocol_->ReportProgress(report);
  ASSERT_TRUE(reported.ok()) << reported.status();
  EXPECT_EQ(reported->expires_at().seconds(), kStartSeconds + 62);
  EXPECT_FALSE(reported->cancel_requested());
  v2::Job running = Stored(id);
  EXPECT_EQ(running.status(), v2::STARTED);
  EXPECT_EQ(running.progress().summary().progress(), 0.1);
  ASSERT_EQ(running.progress().stages_size(), 1);
  EXPECT_EQ(running.progress().stages(0).status(), v2::STARTED);

  // Finish.
  clock_.Advance(absl::Seconds(3));
  v2::FinishJobRequest finish;
  finish.set_lease_id(lease.lease_id());
  finish.set_job_id(id);
  finish.set_status(v2::SUCCESS);
  *finish.add_stages() = ParseText<v2::StageUpdate>(
      R"pb(key: "populate_captures_collection"
           status: SUCCESS
           progress: 1.0
           params {
             name: "Captures added"
             value { number_value: 1000 }
           })pb");
  *finish.add_logs() =
      ParseText<v2::WorkerLogLine>(R"pb(level: "INFO"
                                        message: "Added 1000 captures")pb");
  *finish.mutable_result() = ParseText<google::protobuf::Value>(
      R"pb(struct_value {
             fields {
               key: "captures_added"
               value { number_value: 1000 }
             }
           })pb");
  absl::StatusOr<v2::FinishJobResponse> finished = protocol_->FinishJob(finish);
  ASSERT_TRUE(finished.ok()) << finished.status();
  EXPECT_EQ(finished->job().status(), v2::SUCCESS);

  const v2::Job job = Get(id);
  EXPECT_EQ(job.status(), v2::SUCCESS);
  EXPECT_EQ(job.progress().summary().status(), v2::SUCCESS);
  EXPECT_EQ(job.progress().summary().progress(), 1.0);
  EXPECT_EQ(job.progress().stages(0).status(), v2::SUCCESS);
  EXPECT_EQ(job.progress().stages(0).params(0).key(), "captures_added");
  EXPECT_EQ(job.started_at().seconds(), kStartSeconds);
  EXPECT_EQ(job.finished_at().seconds(), kStartSeconds + 5);
  EXPECT_EQ(job.duration().seconds(), 5);
  EXPECT_EQ(job.duration().nanos(), 0);
  EXPECT_THAT(job.result(), EqualsProto(finish.result()));
  EXPECT_THAT(
      LogMessages(job),
      ElementsAre("INFO Running job #1 \"Populate captures for collection "
                  "111\" (PENDING)",
                  "INFO Changing status of job 1 from PENDING to STARTED",
                  "INFO Sampling 1000 captures",
                  "WARNING The collection is large", "INFO Added 1000 captures",
                  "INFO Changing status of job 1 from STARTED to SUCCESS",
                  "INFO Finished job #1 \"Populate captures for collection "
                  "111\" (SUCCESS)"));
  EXPECT_EQ(job.logs().stdout(0),
            "[2025-11-12 19:01:04] INFO Finished job #1 \"Populate captures "
            "for collection 111\" (SUCCESS)");
  EXPECT_THAT(job.logs().stderr(), IsEmpty());
  EXPECT_EQ(StoredLease(id), "{, , infinite-past, 1}");

  // Nothing is left to lease.
  absl::StatusOr<v2::LeaseJobsResponse> again =
      protocol_->LeaseJobs(LeaseRequest("worker-2"));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->leases_size(), 0);
}

TEST_F(JobRuntimeTest, AJobCreatedWithStartNowCanBeLeased) {
  v2::CreateJobRequest request =
      Request("Populate captures for collection 111", kPopulate);
  request.set_start_now(true);
  absl::StatusOr<v2::Job> created = manager_->CreateJob(request);
  ASSERT_TRUE(created.ok()) << created.status();
  ASSERT_EQ(created->status(), v2::PENDING);

  const v2::Lease lease = LeaseOne();
  EXPECT_EQ(lease.job().id(), created->id());
  EXPECT_EQ(lease.attempt(), 1);
}

TEST_F(JobRuntimeTest, LeaseJobsOnlyHandsOutTheNamedTypes) {
  const int64_t populate = CreatePendingPopulate();
  CreatePending("Sync", "data_storage_sync");

  v2::LeaseJobsRequest request = LeaseRequest("worker-1", 10);
  absl::StatusOr<v2::LeaseJobsResponse> response =
      protocol_->LeaseJobs(request);
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->leases_size(), 1);
  EXPECT_EQ(response->leases(0).job().id(), populate);
  EXPECT_EQ(StoredStatus(2), v2::PENDING);
}

TEST_F(JobRuntimeTest, ReportsUnderAWrongLeaseOrAfterTheFinishChangeNothing) {
  const int64_t id = CreatePendingPopulate();
  const v2::Lease lease = LeaseOne();
  const v2::Job before = Stored(id);
  const int lines_before = Get(id).logs().stdout_size();

  v2::ReportProgressRequest report;
  report.set_lease_id("feedface");
  report.set_job_id(id);
  *report.add_stages() = ParseText<v2::StageUpdate>(R"pb(name: "Collect"
                                                         progress: 0.5)pb");
  *report.add_logs() =
      ParseText<v2::WorkerLogLine>(R"pb(message: "not mine")pb");
  absl::Status status = protocol_->ReportProgress(report).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(status.message(),
            "lease \"feedface\" is not the current lease of "
            "job 1");
  v2::HeartbeatRequest heartbeat;
  heartbeat.set_job_id(id);
  status = protocol_->Heartbeat(heartbeat).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(status.message(), "lease \"\" is not the current lease of job 1");
  v2::Lease wrong = lease;
  wrong.set_lease_id("feedface");
  EXPECT_EQ(Finish(wrong, v2::SUCCESS).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(Stored(id), EqualsProto(before));
  EXPECT_EQ(Get(id).logs().stdout_size(), lines_before);

  // After the finish the right lease is refused too.
  ASSERT_TRUE(Finish(lease, v2::SUCCESS).ok());
  const v2::Job after = Stored(id);
  const int lines_after = Get(id).logs().stdout_size();
  report.set_lease_id(lease.lease_id());
  status = protocol_->ReportProgress(report).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(status.message(), "job 1 is already SUCCESS");
  heartbeat.set_lease_id(lease.lease_id());
  status = protocol_->Heartbeat(heartbeat).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(status.message(), "job 1 is already SUCCESS");
  status = Finish(lease, v2::FAILURE);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(status.message(), "job 1 is already SUCCESS");
  EXPECT_THAT(Stored(id), EqualsProto(after));
  EXPECT_EQ(Get(id).logs().stdout_size(), lines_after);

  // An unknown job.
  heartbeat.set_job_id(99);
  EXPECT_EQ(protocol_->Heartbeat(heartbeat).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(JobRuntimeTest, WorkersNeverGetBuiltInWork) {
  CreatePending("Unknown work", "unknown");
  CreatePending("Nightly batch", "ml");
  CreatePending("Populate with delay", kPopulate, 2);

  v2::LeaseJobsRequest request = LeaseRequest("worker-1", 10);
  request.add_job_types("unknown");
  request.add_job_types("ml");
  absl::StatusOr<v2::LeaseJobsResponse> response =
      protocol_->LeaseJobs(request);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->leases_size(), 0);
  for (int64_t id = 1; id <= 3; ++id) {
    EXPECT_EQ(StoredStatus(id), v2::PENDING);
    EXPECT_EQ(StoredLease(id), "{, jobline-runner, infinite-past, 0}");
  }
}

TEST_F(JobRuntimeTest, BadReportsAndFinishesChangeNothing) {
  const int64_t id = CreatePendingPopulate();
  const v2::Lease lease = LeaseOne();
  const v2::Job before = Stored(id);

  v2::ReportProgressRequest report;
  report.set_lease_id(lease.lease_id());
  report.set_job_id(id);
  *report.add_stages() = ParseText<v2::StageUpdate>(R"pb(name: "Collect"
                                                         progress: 0.5)pb");
  *report.add_stages() = ParseText<v2::StageUpdate>(R"pb(key: "collect"
                                                         progress: 1.5)pb");
  EXPECT_EQ(Violation(protocol_->ReportProgress(report).status()),
            "stages[1].progress: Ensure this value is between 0 and 1.");
  report.clear_stages();
  *report.add_logs() = ParseText<v2::WorkerLogLine>(R"pb(level: "NOTICE"
                                                         message: "x")pb");
  EXPECT_EQ(Violation(protocol_->ReportProgress(report).status()),
            "logs[0].level: Use DEBUG, INFO, WARNING, ERROR or CRITICAL.");
  report.clear_logs();
  *report.mutable_lease_duration() = ProtoDuration(absl::Hours(2));
  EXPECT_EQ(Violation(protocol_->ReportProgress(report).status()),
            "lease_duration: Ensure this value is more than 0 and at most 1h.");

  v2::FinishJobRequest finish;
  finish.set_lease_id(lease.lease_id());
  finish.set_job_id(id);
  finish.set_status(v2::REVOKED);
  EXPECT_EQ(Violation(protocol_->FinishJob(finish).status()),
            "status: A run ends with SUCCESS or FAILURE.");
  finish.set_status(v2::SUCCESS);
  *finish.add_stages() = ParseText<v2::StageUpdate>(R"pb(name: "Collect"
                                                         progress: 0.5)pb");
  EXPECT_EQ(Violation(protocol_->FinishJob(finish).status()),
            "status: Stage \"collect\" is at 0.5; SUCCESS needs every stage at "
            "1.0.");

  EXPECT_THAT(Stored(id), EqualsProto(before));
  EXPECT_EQ(StoredLease(id),
            absl::StrCat("{", lease.lease_id(),
                         ", worker-1, 2025-11-12T19:01:59+00:00, 1}"));
}

TEST_F(JobRuntimeTest, AFailureWithoutAReasonSaysSo) {
  const int64_t id = CreatePendingPopulate();
  ASSERT_TRUE(Finish(LeaseOne(), v2::FAILURE).ok());
  const v2::Job job = Get(id);
  EXPECT_EQ(job.status(), v2::FAILURE);
  EXPECT_THAT(job.logs().stderr(),
              ElementsAre("the worker reported a failure without a reason"));
}

TEST_F(JobRuntimeTest, ConcurrentReportsAndACancelLoseNothingD19) {
  constexpr int kReporters = 10;
  const int64_t id = CreatePendingPopulate();
  const v2::Lease lease = LeaseOne();

  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int i = 0; i < kReporters; ++i) {
    threads.emplace_back([&, i] {
      v2::ReportProgressRequest report;
      report.set_lease_id(lease.lease_id());
      report.set_job_id(id);
      v2::StageUpdate* stage = report.add_stages();
      stage->set_name(absl::StrCat("Part ", i));
      stage->set_progress(0.5);
      v2::WorkerLogLine* line = report.add_logs();
      line->set_message(absl::StrCat("part ", i, " half done"));
      if (!protocol_->ReportProgress(report).ok()) ++failures;
    });
  }
  threads.emplace_back([&] {
    if (!manager_->CancelJob(id).ok()) ++failures;
  });
  for (std::thread& thread : threads) thread.join();

  EXPECT_EQ(failures.load(), 0);
  const v2::Job job = Get(id);
  EXPECT_EQ(job.status(), v2::CANCELING);
  ASSERT_EQ(job.progress().stages_size(), kReporters);
  std::set<std::string> keys;
  for (const v2::ProgressStage& stage : job.progress().stages()) {
    keys.insert(stage.key());
    EXPECT_EQ(stage.progress(), 0.5);
  }
  EXPECT_EQ(keys.size(), static_cast<size_t>(kReporters));
  EXPECT_EQ(job.progress().summary().progress(), 0.5);
  // Grant's two lines, one per report, and the cancel's.
  EXPECT_EQ(job.logs().stdout_size(), 2 + kReporters + 1);
}

TEST_F(JobRuntimeTest, AReportAfterTheLeaseRanOutIsRefused) {
  const int64_t id = CreatePendingPopulate();
  const v2::Lease lease = LeaseOne();
  clock_.Advance(absl::Seconds(61));

  v2::HeartbeatRequest heartbeat;
  heartbeat.set_lease_id(lease.lease_id());
  heartbeat.set_job_id(id);
  const absl::Status status = protocol_->Heartbeat(heartbeat).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(status.message(),
            absl::StrCat("lease \"", lease.lease_id(),
                         "\" of job 1 ran out at 2025-11-12T19:01:59+00:00"));
  EXPECT_EQ(StoredStatus(id), v2::STARTED);
}

TEST_F(JobRuntimeTest, HeartbeatRenewsTheLease) {
  const int64_t id = CreatePendingPopulate();
  const v2::Lease lease = LeaseOne();
  clock_.Advance(absl::Seconds(50));

  v2::HeartbeatRequest heartbeat;
  heartbeat.set_lease_id(lease.lease_id());
  heartbeat.set_job_id(id);
  *heartbeat.mutable_lease_duration() = ProtoDuration(absl::Seconds(120));
  absl::StatusOr<v2::HeartbeatResponse> response =
      protocol_->Heartbeat(heartbeat);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->expires_at().seconds(), kStartSeconds + 170);
  EXPECT_FALSE(response->cancel_requested());

  // A shorter lease never shortens it.
  *heartbeat.mutable_lease_duration() = ProtoDuration(absl::Seconds(1));
  response = protocol_->Heartbeat(heartbeat);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->expires_at().seconds(), kStartSeconds + 170);
}

TEST_F(JobRuntimeTest, LeaseJobsRefusesBadInputNamingTheField) {
  CreatePendingPopulate();
  struct Case {
    std::string name;
    std::function<void(v2::LeaseJobsRequest&)> change;
    std::string violation;
  };
  const std::vector<Case> cases = {
      {"empty worker", [](v2::LeaseJobsRequest& r) { r.clear_worker_id(); },
       "worker_id: This field may not be blank."},
      {"no job type", [](v2::LeaseJobsRequest& r) { r.clear_job_types(); },
       "job_types: Name at least one job type."},
      {"unknown job type",
       [](v2::LeaseJobsRequest& r) {
         r.clear_job_types();
         r.add_job_types("nope");
       },
       "job_types[0]: \"nope\" is not a valid choice."},
      {"second job type unknown",
       [](v2::LeaseJobsRequest& r) { r.add_job_types("Populate"); },
       "job_types[1]: \"Populate\" is not a valid choice."},
      {"max_jobs 101", [](v2::LeaseJobsRequest& r) { r.set_max_jobs(101); },
       "max_jobs: Ensure this value is between 1 and 100."},
      {"max_jobs -1", [](v2::LeaseJobsRequest& r) { r.set_max_jobs(-1); },
       "max_jobs: Ensure this value is between 1 and 100."},
      {"lease 0",
       [](v2::LeaseJobsRequest& r) {
         *r.mutable_lease_duration() = ProtoDuration(absl::ZeroDuration());
       },
       "lease_duration: Ensure this value is more than 0 and at most 1h."},
      {"lease over an hour",
       [](v2::LeaseJobsRequest& r) {
         *r.mutable_lease_duration() =
             ProtoDuration(absl::Hours(1) + absl::Seconds(1));
       },
       "lease_duration: Ensure this value is more than 0 and at most 1h."},
      {"wait over 30 s",
       [](v2::LeaseJobsRequest& r) {
         *r.mutable_wait() = ProtoDuration(absl::Seconds(31));
       },
       "wait: Ensure this value is between 0 and 30s."},
      {"negative wait",
       [](v2::LeaseJobsRequest& r) {
         *r.mutable_wait() = ProtoDuration(absl::Seconds(-1));
       },
       "wait: Ensure this value is between 0 and 30s."},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v2::LeaseJobsRequest request = LeaseRequest("worker-1");
    c.change(request);
    EXPECT_EQ(Violation(protocol_->LeaseJobs(request).status()), c.violation);
  }
  // Nothing was leased.
  EXPECT_EQ(StoredStatus(1), v2::PENDING);
  EXPECT_EQ(StoredLease(1), "{, , infinite-past, 0}");
}

TEST_F(JobRuntimeTest, LeaseJobsWaitsForAJob) {
  std::thread creator([this] {
    absl::SleepFor(absl::Milliseconds(50));
    CreatePendingPopulate();
  });
  v2::LeaseJobsRequest request = LeaseRequest("worker-1");
  *request.mutable_wait() = ProtoDuration(absl::Seconds(10));
  const absl::Time start = absl::Now();
  absl::StatusOr<v2::LeaseJobsResponse> response =
      protocol_->LeaseJobs(request);
  const absl::Duration waited = absl::Now() - start;
  creator.join();
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->leases_size(), 1);
  EXPECT_EQ(response->leases(0).job().id(), 1);
  EXPECT_LT(waited, absl::Seconds(5));
}

// ---- Lease expiry -----------------------------------------------------------

TEST_F(JobRuntimeTest, AnExpiredLeaseRequeuesUntilTheLastAttemptFails) {
  const int64_t id = CreatePendingPopulate();

  for (int attempt = 1; attempt <= 3; ++attempt) {
    SCOPED_TRACE(attempt);
    const v2::Lease lease = LeaseOne();
    EXPECT_EQ(lease.attempt(), attempt);
    absl::StatusOr<int> ended = protocol_->ExpireLeases();
    ASSERT_TRUE(ended.ok()) << ended.status();
    EXPECT_EQ(*ended, 0);

    clock_.Advance(absl::Seconds(61));
    ended = protocol_->ExpireLeases();
    ASSERT_TRUE(ended.ok()) << ended.status();
    EXPECT_EQ(*ended, 1);
    if (attempt < 3) {
      EXPECT_EQ(StoredStatus(id), v2::PENDING);
      EXPECT_EQ(StoredLease(id),
                absl::StrCat("{, , infinite-past, ", attempt, "}"));
    }
  }

  const v2::Job job = Get(id);
  EXPECT_EQ(job.status(), v2::FAILURE);
  EXPECT_EQ(job.progress().summary().status(), v2::FAILURE);
  EXPECT_EQ(job.finished_at().seconds(), kStartSeconds + 3 * 61);
  EXPECT_THAT(job.logs().stderr(),
              ElementsAre("Job 1 failed: its lease ended 3 times without a "
                          "result (last held by worker-1)"));
  EXPECT_THAT(LogMessages(job),
              Contains("WARNING The lease of job 1 held by worker-1 ended "
                       "without a result; queueing it again (attempt 2 of 3 "
                       "used)"));
  EXPECT_EQ(LogMessages(job).back(),
            "INFO Finished job #1 \"Populate captures for collection 111\" "
            "(FAILURE)");
  EXPECT_EQ(StoredLease(id), "{, , infinite-past, 3}");

  absl::StatusOr<int> ended = protocol_->ExpireLeases();
  ASSERT_TRUE(ended.ok()) << ended.status();
  EXPECT_EQ(*ended, 0);
  absl::StatusOr<v2::LeaseJobsResponse> none =
      protocol_->LeaseJobs(LeaseRequest("worker-1"));
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->leases_size(), 0);
}

// ---- Cancel -----------------------------------------------------------------

TEST_F(JobRuntimeTest, ACancelledLeasedJobIsRevokedWhenTheWorkerFinishes) {
  const int64_t id = CreatePendingPopulate();
  const v2::Lease lease = LeaseOne();

  absl::StatusOr<v2::Job> cancelled = manager_->CancelJob(id);
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->status(), v2::CANCELING);

  v2::HeartbeatRequest heartbeat;
  heartbeat.set_lease_id(lease.lease_id());
  heartbeat.set_job_id(id);
  absl::StatusOr<v2::HeartbeatResponse> beat = protocol_->Heartbeat(heartbeat);
  ASSERT_TRUE(beat.ok()) << beat.status();
  EXPECT_TRUE(beat->cancel_requested());
  v2::ReportProgressRequest report;
  report.set_lease_id(lease.lease_id());
  report.set_job_id(id);
  absl::StatusOr<v2::ReportProgressResponse> reported =
      protocol_->ReportProgress(report);
  ASSERT_TRUE(reported.ok()) << reported.status();
  EXPECT_TRUE(reported->cancel_requested());

  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(Finish(lease, v2::SUCCESS).ok());

  const v2::Job job = Get(id);
  EXPECT_EQ(job.status(), v2::REVOKED);
  EXPECT_EQ(job.progress().summary().status(), v2::REVOKED);
  EXPECT_EQ(job.finished_at().seconds(), kStartSeconds + 1);
  EXPECT_THAT(
      LogMessages(job),
      ElementsAre("INFO Running job #1 \"Populate captures for collection "
                  "111\" (PENDING)",
                  "INFO Changing status of job 1 from PENDING to STARTED",
                  "INFO Changing status of job 1 from STARTED to CANCELING",
                  "INFO Changing status of job 1 from CANCELING to REVOKED",
                  "INFO Finished job #1 \"Populate captures for collection "
                  "111\" (REVOKED)"));
  EXPECT_EQ(StoredLease(id), "{, , infinite-past, 1}");
}

TEST_F(JobRuntimeTest, Case106CompletionFirstIsNotOverwrittenByACancel) {
  const int64_t id = CreatePendingPopulate();
  const v2::Lease lease = LeaseOne();
  ASSERT_TRUE(Finish(lease, v2::SUCCESS).ok());

  absl::StatusOr<v2::Job> cancelled = manager_->CancelJob(id);
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->status(), v2::SUCCESS);
  EXPECT_EQ(StoredStatus(id), v2::SUCCESS);
}

TEST_F(JobRuntimeTest, Case107CancelFirstIsNotUndoneByALateLease) {
  const int64_t id = CreatePendingPopulate();
  absl::StatusOr<v2::Job> cancelled = manager_->CancelJob(id);
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->status(), v2::REVOKED);

  absl::StatusOr<v2::Lease> late =
      protocol_->Grant(id, "", "worker-1", absl::Seconds(60));
  EXPECT_EQ(late.status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(StoredStatus(id), v2::REVOKED);
  EXPECT_EQ(StoredLease(id), "{, , infinite-past, 0}");
  absl::StatusOr<v2::LeaseJobsResponse> none =
      protocol_->LeaseJobs(LeaseRequest("worker-1"));
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->leases_size(), 0);
}

// ---- Many workers -----------------------------------------------------------

TEST_F(JobRuntimeTest, TwentyWorkersLeaseTwoHundredJobsEachExactlyOnce) {
  constexpr int kJobs = 200;
  constexpr int kWorkers = 20;
  for (int i = 0; i < kJobs; ++i) {
    CreatePending(absl::StrCat("Populate ", i), kPopulate);
  }

  absl::Mutex mu;
  std::vector<int64_t> leased_ids;
  std::vector<std::string> errors;
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      const std::string name = absl::StrCat("worker-", w);
      while (true) {
        absl::StatusOr<v2::LeaseJobsResponse> response =
            protocol_->LeaseJobs(LeaseRequest(name, w < 15 ? 1 : 3));
        absl::MutexLock lock(&mu);
        if (!response.ok()) {
          errors.push_back(response.status().ToString());
          return;
        }
        for (const v2::Lease& lease : response->leases()) {
          leased_ids.push_back(lease.job().id());
          if (lease.attempt() != 1) {
            errors.push_back(absl::StrCat("job ", lease.job().id(), " attempt ",
                                          lease.attempt()));
          }
        }
        if (response->leases_size() > 0) continue;

        // Jobs only ever leave PENDING here: one still waiting now was
        // waiting during the whole call that came back empty.
        JobIdQuery waiting;
        waiting.statuses = {v2::PENDING};
        waiting.leased = false;
        absl::StatusOr<std::vector<int64_t>> ids = store_->FindJobIds(waiting);
        if (!ids.ok() || !ids->empty()) {
          errors.push_back(absl::StrCat(name, " got nothing while ",
                                        ids.ok() ? ids->size() : 0,
                                        " jobs were waiting"));
        }
        return;
      }
    });
  }
  for (std::thread& worker : workers) worker.join();

  EXPECT_THAT(errors, IsEmpty());
  EXPECT_EQ(leased_ids.size(), static_cast<size_t>(kJobs));
  const std::set<int64_t> distinct(leased_ids.begin(), leased_ids.end());
  EXPECT_EQ(distinct.size(), static_cast<size_t>(kJobs));
  EXPECT_EQ(*distinct.begin(), 1);
  EXPECT_EQ(*distinct.rbegin(), kJobs);
  for (int64_t id = 1; id <= kJobs; ++id) {
    ASSERT_EQ(StoredStatus(id), v2::STARTED) << id;
  }
}

TEST_F(JobRuntimeTest, ConcurrentWaitingLeasersTakeDistinctJobsWithoutRaces) {
  constexpr int kLeasers = 8;
  constexpr int kJobs = 64;
  absl::Mutex mu;
  std::vector<int64_t> leased_ids;
  std::vector<std::string> errors;
  std::atomic<int> calls{0};
  std::vector<std::thread> leasers;
  for (int w = 0; w < kLeasers; ++w) {
    leasers.emplace_back([&, w] {
      v2::LeaseJobsRequest request = LeaseRequest(absl::StrCat("worker-", w));
      *request.mutable_wait() = ProtoDuration(absl::Seconds(10));
      while (!signal_.closed()) {
        absl::StatusOr<v2::LeaseJobsResponse> response =
            protocol_->LeaseJobs(request);
        calls.fetch_add(1);
        absl::MutexLock lock(&mu);
        if (!response.ok()) {
          errors.push_back(response.status().ToString());
          return;
        }
        for (const v2::Lease& lease : response->leases()) {
          leased_ids.push_back(lease.job().id());
        }
      }
    });
  }
  // The jobs arrive one by one while every leaser waits, as in a job
  // cycle: each new job wakes them all.
  for (int i = 0; i < kJobs; ++i) {
    v2::CreateJobRequest request = Request(absl::StrCat("Job ", i), kPopulate);
    request.set_start_now(true);
    ASSERT_TRUE(manager_->CreateJob(request).ok());
  }
  const bool all_leased = WaitUntil([&] {
    absl::MutexLock lock(&mu);
    return leased_ids.size() >= static_cast<size_t>(kJobs);
  });
  signal_.Close();  // The leasers' last calls come back at once.
  for (std::thread& leaser : leasers) leaser.join();

  ASSERT_TRUE(all_leased);
  EXPECT_THAT(errors, IsEmpty());
  EXPECT_EQ(leased_ids.size(), static_cast<size_t>(kJobs));
  const std::set<int64_t> distinct(leased_ids.begin(), leased_ids.end());
  EXPECT_EQ(distinct.size(), static_cast<size_t>(kJobs));
  for (int64_t id = 1; id <= kJobs; ++id) {
    EXPECT_EQ(StoredStatus(id), v2::STARTED) << id;
  }
  // No grant went after a job another call was granting.
  EXPECT_EQ(protocol_->lost_grants(), 0);
  EXPECT_GE(calls.load(), kJobs);
}

TEST_F(JobRuntimeTest, LeaseJobsTakesTheOldestJobStillInTheWorkersQueue) {
  const int64_t cancelled = CreatePendingPopulate();
  const int64_t moved = CreatePendingPopulate();
  const int64_t waiting = CreatePendingPopulate();
  ASSERT_TRUE(manager_->CancelJob(cancelled).ok());
  // A delay sends the second job to the runner's queue.
  v2::UpdateJobRequest patch;
  patch.set_id(moved);
  patch.mutable_job()->set_delay(2);
  patch.mutable_update_mask()->add_paths("delay");
  ASSERT_TRUE(manager_->UpdateJob(patch).ok());

  EXPECT_EQ(LeaseOne().job().id(), waiting);
  EXPECT_EQ(protocol_->lost_grants(), 0);
  // A grant from the workers' queue of the moved job is refused.
  EXPECT_EQ(protocol_->Grant(moved, "", "worker-1", absl::Seconds(60))
                .status()
                .code(),
            absl::StatusCode::kAborted);
  EXPECT_EQ(StoredLease(moved), "{, jobline-runner, infinite-past, 0}");
}

// ---- The built-in runner ----------------------------------------------------

TEST_F(JobRuntimeTest, TheRunnerRunsTheDelayOfAnUnknownJobThenFailsIt) {
  StartRunner();
  v2::CreateJobRequest request = Request("Unknown work", "unknown", 3);
  request.set_start_now(true);
  absl::StatusOr<v2::Job> created = manager_->CreateJob(request);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->status(), v2::PENDING);
  const int64_t id = created->id();

  // Watch the delay stage while it runs: it only rises.
  std::vector<double> seen;
  ASSERT_TRUE(WaitUntil([&] {
    const v2::Job job = Stored(id);
    const v2::ProgressStage* delay = FindStage(job.progress(), "delay");
    if (delay != nullptr &&
        (seen.empty() || seen.back() != delay->progress())) {
      seen.push_back(delay->progress());
    }
    return IsFinalStatus(job.status());
  }));
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  for (const double progress : seen) {
    EXPECT_THAT(progress, ::testing::AnyOf(0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0));
  }
  EXPECT_EQ(seen.back(), 1.0);

  const v2::Job job = Get(id);
  EXPECT_EQ(job.status(), v2::FAILURE);
  EXPECT_EQ(job.progress().summary().status(), v2::FAILURE);
  EXPECT_EQ(job.progress().summary().progress(), 1.0);
  EXPECT_EQ(job.finished_at().seconds(), kStartSeconds);
  EXPECT_THAT(
      job.progress(), EqualsProto(ParseText<v2::JobProgress>(R"pb(
        summary { status: FAILURE progress: 1.0 status_label: "FAILURE" }
        stages {
          status: SUCCESS
          progress: 1.0
          key: "delay"
          name: "Delay"
          params {
            name: "Delay"
            key: "delay"
            category: "default"
            value { number_value: 3 }
          }
          params {
            name: "Mood"
            key: "mood"
            category: "default"
            value { string_value: "\360\237\245\263" }
          }
          status_label: "100% complete"
        })pb")));
  EXPECT_THAT(job.logs().stderr(),
              ElementsAre("Job type \"unknown\" has no work to run"));
  EXPECT_THAT(
      LogMessages(job),
      ElementsAre("INFO Running job #1 \"Unknown work\" (PENDING)",
                  "INFO Changing status of job 1 from PENDING to STARTED",
                  "INFO Delaying job #1: 1 of 3 seconds",
                  "INFO Delaying job #1: 2 of 3 seconds",
                  "ERROR Job type \"unknown\" has no work to run",
                  "INFO Changing status of job 1 from STARTED to FAILURE",
                  "INFO Finished job #1 \"Unknown work\" (FAILURE)"));
  EXPECT_EQ(StoredLease(id), "{, , infinite-past, 1}");
}

TEST_F(JobRuntimeTest, AnMlJobWithoutPipelineFailsAfterItsDelay) {
  StartRunner();
  const int64_t id = CreatePending("Nightly batch", "ml", 1);

  ASSERT_TRUE(WaitUntil([&] { return IsFinalStatus(StoredStatus(id)); }));
  const v2::Job job = Get(id);
  EXPECT_EQ(job.status(), v2::FAILURE);
  EXPECT_EQ(job.progress().summary().progress(), 1.0);
  ASSERT_EQ(job.progress().stages_size(), 1);
  EXPECT_EQ(job.progress().stages(0).key(), "delay");
  EXPECT_EQ(job.progress().stages(0).status(), v2::SUCCESS);
  EXPECT_THAT(job.logs().stderr(), ElementsAre("no pipeline specified"));
  EXPECT_EQ(LogMessages(job).back(),
            "INFO Finished job #1 \"Nightly batch\" (FAILURE)");
}

TEST_F(JobRuntimeTest, AnMlJobWithoutPipelineOrDelayFailsAtOnce) {
  StartRunner();
  const int64_t id = CreatePending("Nightly batch", "ml");

  ASSERT_TRUE(WaitUntil([&] { return IsFinalStatus(StoredStatus(id)); }));
  const v2::Job job = Get(id);
  EXPECT_EQ(job.status(), v2::FAILURE);
  EXPECT_EQ(job.progress().stages_size(), 0);
  EXPECT_THAT(job.logs().stderr(), ElementsAre("no pipeline specified"));
}

TEST_F(JobRuntimeTest, TheRunnerDoesTheDelayThenHandsTheJobToTheWorkers) {
  StartRunner();
  const int64_t id = CreatePending("Populate with delay", kPopulate, 2);

  ASSERT_TRUE(WaitUntil([&] {
    const v2::Job job = Stored(id);
    const v2::ProgressStage* delay = FindStage(job.progress(), "delay");
    return delay != nullptr && delay->status() == v2::SUCCESS &&
           job.status() == v2::PENDING;
  }));
  const v2::Job waiting = Get(id);
  EXPECT_EQ(waiting.progress().summary().status(), v2::PENDING);
  EXPECT_EQ(waiting.progress().summary().progress(), 1.0);
  EXPECT_FALSE(waiting.has_started_at());
  EXPECT_FALSE(waiting.has_finished_at());
  EXPECT_EQ(StoredLease(id), "{, , infinite-past, 0}");
  EXPECT_THAT(
      LogMessages(waiting),
      ElementsAre("INFO Running job #1 \"Populate with delay\" (PENDING)",
                  "INFO Changing status of job 1 from PENDING to STARTED",
                  "INFO Delaying job #1: 1 of 2 seconds",
                  "INFO Job #1 is waiting for a worker of type "
                  "populate_captures_collection",
                  "INFO Changing status of job 1 from STARTED to PENDING"));

  // A worker takes it from here.
  const v2::Lease lease = LeaseOne();
  EXPECT_EQ(lease.job().id(), id);
  EXPECT_EQ(lease.job().status(), v2::STARTED);
  EXPECT_EQ(lease.attempt(), 1);
  ASSERT_TRUE(Finish(lease, v2::SUCCESS).ok());
  EXPECT_EQ(StoredStatus(id), v2::SUCCESS);
}

TEST_F(JobRuntimeTest, ACancelStopsTheDelayStageWithinASecond) {
  StartRunner(absl::Milliseconds(20));
  const int64_t id = CreatePending("Long delay", kPopulate, 100);

  // While the delay runs, its stage is STARTED and dizzy.
  v2::Job running;
  ASSERT_TRUE(WaitUntil([&] {
    running = Stored(id);
    const v2::ProgressStage* delay = FindStage(running.progress(), "delay");
    return delay != nullptr && delay->progress() > 0.0;
  }));
  EXPECT_EQ(running.status(), v2::STARTED);
  ASSERT_EQ(running.progress().stages_size(), 1);
  const v2::ProgressStage& delay = running.progress().stages(0);
  EXPECT_EQ(delay.status(), v2::STARTED);
  EXPECT_LT(delay.progress(), 0.5);
  ASSERT_EQ(delay.params_size(), 2);
  EXPECT_EQ(delay.params(1).key(), "mood");
  EXPECT_EQ(delay.params(1).value().string_value(),
            "\xF0\x9F\x98\xB5\xE2\x80\x8D\xF0\x9F\x92\xAB");

  absl::StatusOr<v2::Job> cancelled = manager_->CancelJob(id);
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->status(), v2::CANCELING);
  const absl::Time cancelled_at = absl::Now();
  while (StoredStatus(id) == v2::CANCELING &&
         absl::Now() - cancelled_at < absl::Seconds(1)) {
    absl::SleepFor(kPollStep);
  }

  const v2::Job job = Get(id);
  EXPECT_EQ(job.status(), v2::REVOKED);
  EXPECT_LT(job.progress().stages(0).progress(), 1.0);
  EXPECT_EQ(LogMessages(job).back(),
            "INFO Finished job #1 \"Long delay\" (REVOKED)");
  EXPECT_EQ(StoredLease(id), "{, , infinite-past, 1}");
}

TEST_F(JobRuntimeTest, AWaitingWorkerGetsTheJobWhenTheRunnerHandsItOver) {
  StartRunner(absl::Milliseconds(20));
  const int64_t id = CreatePending("Populate with delay", kPopulate, 3);

  v2::LeaseJobsRequest request = LeaseRequest("worker-1");
  *request.mutable_wait() = ProtoDuration(absl::Seconds(10));
  const absl::Time start = absl::Now();
  absl::StatusOr<v2::LeaseJobsResponse> response =
      protocol_->LeaseJobs(request);
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->leases_size(), 1);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(response->leases(0).job().id(), id);
  EXPECT_EQ(response->leases(0).job().progress().stages(0).status(),
            v2::SUCCESS);
}

TEST_F(JobRuntimeTest, ACancelWakesTheRunnerInTheMiddleOfAStep) {
  StartRunner(absl::Seconds(30));
  const int64_t id = CreatePending("Slow delay", "unknown", 3);
  ASSERT_TRUE(WaitUntil([&] { return StoredStatus(id) == v2::STARTED; }));

  absl::StatusOr<v2::Job> cancelled = manager_->CancelJob(id);
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->status(), v2::CANCELING);
  const absl::Time cancelled_at = absl::Now();
  while (StoredStatus(id) == v2::CANCELING &&
         absl::Now() - cancelled_at < absl::Seconds(1)) {
    absl::SleepFor(kPollStep);
  }

  const v2::Job job = Get(id);
  EXPECT_EQ(job.status(), v2::REVOKED);
  EXPECT_EQ(job.progress().stages(0).progress(), 0.0);
  EXPECT_THAT(job.logs().stderr(), IsEmpty());
  EXPECT_EQ(LogMessages(job).back(),
            "INFO Finished job #1 \"Slow delay\" (REVOKED)");
}

// ---- Who is woken
// ------------------------------------------------------------

// Notifications since `before` of the workers' signal and the runner's, as
// "workers W, runner R".
std::string Wakeups(const WorkSignal& workers, const WorkSignal& runner,
                    uint64_t workers_before, uint64_t runner_before) {
  return absl::StrCat("workers ", workers.generation() - workers_before,
                      ", runner ", runner.generation() - runner_before);
}

TEST_F(JobRuntimeTest, EachWriteWakesOnlyTheQueueItFillsOrTheRunnerItStops) {
  uint64_t workers = signal_.generation();
  uint64_t runner = runner_signal_.generation();
  auto woken = [&] {
    const std::string text = Wakeups(signal_, runner_signal_, workers, runner);
    workers = signal_.generation();
    runner = runner_signal_.generation();
    return text;
  };

  // Created: no queue. Run: the workers' queue, or the runner's for work
  // of its own (a delay, a type without workers).
  absl::StatusOr<v2::Job> created =
      manager_->CreateJob(Request("Populate", kPopulate));
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(woken(), "workers 0, runner 0");
  ASSERT_TRUE(manager_->RunJob(created->id()).ok());
  EXPECT_EQ(woken(), "workers 1, runner 0");
  v2::CreateJobRequest unknown = Request("Unknown work", "unknown", 3);
  unknown.set_start_now(true);
  absl::StatusOr<v2::Job> builtin = manager_->CreateJob(unknown);
  ASSERT_TRUE(builtin.ok()) << builtin.status();
  EXPECT_EQ(builtin->status(), v2::PENDING);
  EXPECT_EQ(woken(), "workers 0, runner 1");
  v2::CreateJobRequest populate = Request("Populate now", kPopulate);
  populate.set_start_now(true);
  absl::StatusOr<v2::Job> queued = manager_->CreateJob(populate);
  ASSERT_TRUE(queued.ok()) << queued.status();
  EXPECT_EQ(woken(), "workers 1, runner 0");

  // A patch that gives a waiting job a delay moves it to the runner.
  v2::UpdateJobRequest patch;
  patch.set_id(queued->id());
  patch.mutable_job()->set_delay(2);
  patch.mutable_update_mask()->add_paths("delay");
  absl::StatusOr<v2::Job> patched = manager_->UpdateJob(patch);
  ASSERT_TRUE(patched.ok()) << patched.status();
  EXPECT_EQ(StoredLease(queued->id()), "{, jobline-runner, infinite-past, 0}");
  EXPECT_EQ(woken(), "workers 0, runner 1");

  // A worker's lease and finish wake nobody; neither does a cancel of a
  // job a worker holds or of a waiting one.
  const v2::Lease lease = LeaseOne();
  EXPECT_EQ(lease.job().id(), created->id());
  EXPECT_EQ(woken(), "workers 0, runner 0");
  ASSERT_TRUE(manager_->CancelJob(created->id()).ok());
  EXPECT_EQ(StoredStatus(created->id()), v2::CANCELING);
  EXPECT_EQ(woken(), "workers 0, runner 0");
  ASSERT_TRUE(manager_->CancelJob(queued->id()).ok());
  EXPECT_EQ(StoredStatus(queued->id()), v2::REVOKED);
  EXPECT_EQ(woken(), "workers 0, runner 0");

  // A cancel of a job the runner holds wakes the runner.
  ASSERT_TRUE(protocol_
                  ->Grant(builtin->id(), kRunnerHolder, kRunnerHolder,
                          absl::Seconds(30))
                  .ok());
  EXPECT_EQ(woken(), "workers 0, runner 0");
  ASSERT_TRUE(manager_->CancelJob(builtin->id()).ok());
  EXPECT_EQ(StoredStatus(builtin->id()), v2::CANCELING);
  EXPECT_EQ(woken(), "workers 0, runner 1");
}

TEST_F(JobRuntimeTest, ExpiredLeasesWakeTheQueueTheirJobsReturnTo) {
  const int64_t builtin = CreatePending("Unknown work", "unknown", 3);
  const int64_t populate = CreatePendingPopulate();
  ASSERT_TRUE(
      protocol_->Grant(builtin, kRunnerHolder, kRunnerHolder, absl::Seconds(30))
          .ok());
  EXPECT_EQ(LeaseOne().job().id(), populate);

  // The runner's lease runs out first, then the worker's.
  uint64_t workers = signal_.generation();
  uint64_t runner = runner_signal_.generation();
  clock_.Advance(absl::Seconds(31));
  absl::StatusOr<int> ended = protocol_->ExpireLeases();
  ASSERT_TRUE(ended.ok()) << ended.status();
  EXPECT_EQ(*ended, 1);
  EXPECT_EQ(StoredLease(builtin), "{, jobline-runner, infinite-past, 1}");
  EXPECT_EQ(Wakeups(signal_, runner_signal_, workers, runner),
            "workers 0, runner 1");

  workers = signal_.generation();
  runner = runner_signal_.generation();
  clock_.Advance(absl::Seconds(30));
  ended = protocol_->ExpireLeases();
  ASSERT_TRUE(ended.ok()) << ended.status();
  EXPECT_EQ(*ended, 1);
  EXPECT_EQ(StoredLease(populate), "{, , infinite-past, 1}");
  EXPECT_EQ(Wakeups(signal_, runner_signal_, workers, runner),
            "workers 1, runner 0");
}

TEST_F(JobRuntimeTest, WithOneSignalTheRunnerStillRunsAndStopsItsWork) {
  // The runner and the manager without a runner signal: everything is
  // told on the workers' signal, which the runner then waits on.
  JobManagerOptions manager_options;
  manager_options.work_signal = &signal_;
  JobManager manager(store_.get(), &clock_, manager_options);
  WorkerProtocol protocol(store_.get(), &clock_, &signal_, ProtocolOptions());
  JobRunner runner(store_.get(), &clock_, &signal_, &protocol,
                   RunnerOptions(absl::Seconds(30)));
  runner.Start();

  v2::CreateJobRequest request = Request("Slow delay", "unknown", 3);
  request.set_start_now(true);
  const uint64_t before = signal_.generation();
  absl::StatusOr<v2::Job> created = manager.CreateJob(request);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_GT(signal_.generation(), before);
  const int64_t id = created->id();
  ASSERT_TRUE(WaitUntil([&] { return StoredStatus(id) == v2::STARTED; }));

  // The cancel wakes the runner in the middle of its 30 s step.
  ASSERT_TRUE(manager.CancelJob(id).ok());
  ASSERT_TRUE(WaitUntil([&] { return StoredStatus(id) == v2::REVOKED; }));
  runner.Stop();
  EXPECT_EQ(StoredLease(id), "{, , infinite-past, 1}");
}

// ---- Upkeep -----------------------------------------------------------------

TEST_F(JobRuntimeTest, RecoverRunnerLeasesRequeuesWhatTheRunnerHeld) {
  const int64_t id = CreatePending("Unknown work", "unknown", 3);
  const int64_t worker_job = CreatePendingPopulate();
  const v2::Lease worker_lease = LeaseOne();
  EXPECT_EQ(worker_lease.job().id(), worker_job);

  // A runner leases the job and "crashes".
  absl::StatusOr<v2::Lease> lease =
      protocol_->Grant(id, kRunnerHolder, kRunnerHolder, absl::Seconds(30));
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_EQ(lease->attempt(), 1);
  EXPECT_EQ(StoredStatus(id), v2::STARTED);

  absl::StatusOr<int> recovered = protocol_->RecoverRunnerLeases();
  ASSERT_TRUE(recovered.ok()) << recovered.status();
  EXPECT_EQ(*recovered, 1);
  EXPECT_EQ(StoredStatus(id), v2::PENDING);
  EXPECT_EQ(StoredLease(id), "{, jobline-runner, infinite-past, 1}");
  EXPECT_EQ(LogMessages(Get(id)).back(),
            "INFO Changing status of job 1 from STARTED to PENDING");
  EXPECT_THAT(LogMessages(Get(id)),
              Contains("WARNING The lease of job 1 held by jobline-runner "
                       "ended without a result; queueing it again (attempt 1 "
                       "of 3 used)"));
  // The worker's lease is not the runner's.
  EXPECT_EQ(StoredStatus(worker_job), v2::STARTED);

  // The next lease is the second attempt.
  lease = protocol_->Grant(id, kRunnerHolder, kRunnerHolder, absl::Seconds(30));
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_EQ(lease->attempt(), 2);
  recovered = protocol_->RecoverRunnerLeases();
  ASSERT_TRUE(recovered.ok()) << recovered.status();
  EXPECT_EQ(*recovered, 1);
  EXPECT_EQ(StoredLease(id), "{, jobline-runner, infinite-past, 2}");
}

TEST_F(JobRuntimeTest, AStoppedRunnerQueuesItsWorkAgainWithoutAnAttempt) {
  StartRunner(absl::Seconds(30));
  const int64_t id = CreatePending("Slow delay", "unknown", 3);
  ASSERT_TRUE(WaitUntil([&] { return StoredStatus(id) == v2::STARTED; }));

  runner_->Stop();
  EXPECT_EQ(StoredStatus(id), v2::PENDING);
  EXPECT_EQ(StoredLease(id), "{, jobline-runner, infinite-past, 0}");
  EXPECT_THAT(LogMessages(Get(id)),
              Contains("INFO Job #1 goes back to the queue: the server is "
                       "stopping"));

  // Nothing is left for recovery to do.
  absl::StatusOr<int> recovered = protocol_->RecoverRunnerLeases();
  ASSERT_TRUE(recovered.ok()) << recovered.status();
  EXPECT_EQ(*recovered, 0);
}

TEST_F(JobRuntimeTest, ACrashedRunnersLeaseIsRecoveredWithTheAttemptCounted) {
  const int64_t id = CreatePending("Crashed", "unknown", 3);
  // A runner took it and its process died: the lease is still there.
  absl::StatusOr<v2::Lease> lease =
      protocol_->Grant(id, kRunnerHolder, kRunnerHolder, absl::Seconds(30));
  ASSERT_TRUE(lease.ok()) << lease.status();

  absl::StatusOr<int> recovered = protocol_->RecoverRunnerLeases();
  ASSERT_TRUE(recovered.ok()) << recovered.status();
  EXPECT_EQ(*recovered, 1);
  EXPECT_EQ(StoredStatus(id), v2::PENDING);
  EXPECT_EQ(StoredLease(id), "{, jobline-runner, infinite-past, 1}");
}

TEST_F(JobRuntimeTest, ALeaseCallWhoseCallerLeftLeasesNothing) {
  const int64_t id = CreatePendingPopulate();
  v2::LeaseJobsRequest request = LeaseRequest("gone", 1);
  // Gone before the first look: nothing is granted.
  absl::StatusOr<v2::LeaseJobsResponse> none =
      protocol_->LeaseJobs(request, [] { return true; });
  EXPECT_EQ(none.status().code(), absl::StatusCode::kOk);
  EXPECT_EQ(none->leases_size(), 0);
  EXPECT_EQ(StoredStatus(id), v2::PENDING);

  // Gone after the grant: the job goes back, the attempt not counted.
  int calls = 0;
  absl::StatusOr<v2::LeaseJobsResponse> late =
      protocol_->LeaseJobs(request, [&calls] { return ++calls > 1; });
  EXPECT_EQ(late.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(StoredStatus(id), v2::PENDING);
  EXPECT_EQ(StoredLease(id), "{, , infinite-past, 0}");
  EXPECT_THAT(LogMessages(Get(id)),
              Contains("INFO Job #1 goes back to the queue: worker gone went "
                       "away before it got the job"));
}

TEST_F(JobRuntimeTest, TheUpkeepThreadEndsExpiredLeasesAndReaps) {
  JobRunnerOptions options = RunnerOptions();
  options.sweep_interval = absl::Milliseconds(5);
  options.reap_interval = absl::Milliseconds(5);
  StartRunner(options);
  const int64_t expiring = CreatePendingPopulate();
  const v2::Lease lease = LeaseOne();
  EXPECT_EQ(lease.job().id(), expiring);

  // The lease runs out: the job is queued again.
  clock_.Advance(absl::Seconds(61));
  ASSERT_TRUE(WaitUntil([&] { return StoredStatus(expiring) == v2::PENDING; }));
  EXPECT_EQ(StoredLease(expiring), "{, , infinite-past, 1}");

  // Idle past the cutoff: the job is reaped.
  clock_.Advance(absl::Minutes(11));
  ASSERT_TRUE(WaitUntil([&] { return StoredStatus(expiring) == v2::REVOKED; }));
  EXPECT_THAT(LogMessages(Get(expiring)),
              Contains("WARNING Reaping stalled job 1: no update for 11 "
                       "minutes (threshold 10 minutes); previous status "
                       "PENDING, holder none; stages: no stages"));
}

TEST_F(JobRuntimeTest, ReapStaleJobsListsInADryRunThenRevokes) {
  const int64_t started = CreatePendingPopulate();
  LeaseOne();
  absl::StatusOr<v2::Job> created =
      manager_->CreateJob(Request("Never run", kPopulate));
  ASSERT_TRUE(created.ok()) << created.status();
  const int64_t never_run = created->id();
  const int64_t pending = CreatePending("Unknown work", "unknown");
  clock_.Advance(absl::Minutes(11));
  const int64_t recent = CreatePending("Recent", kPopulate);

  // Dry run: listed, nothing changes.
  const v2::Job started_before = Get(started);
  const v2::Job pending_before = Get(pending);
  absl::StatusOr<v2::ReapStaleJobsResponse> dry =
      protocol_->ReapStaleJobs(absl::Minutes(10), /*dry_run=*/true);
  ASSERT_TRUE(dry.ok()) << dry.status();
  ASSERT_EQ(started, 1);
  ASSERT_EQ(pending, 3);
  EXPECT_THAT(*dry, EqualsProto(ParseText<v2::ReapStaleJobsResponse>(R"pb(
    jobs { job_id: 1 action: "revoked" previous_status: STARTED }
    jobs { job_id: 3 action: "revoked" previous_status: PENDING }
  )pb")));
  EXPECT_THAT(Get(started), EqualsProto(started_before));
  EXPECT_THAT(Get(pending), EqualsProto(pending_before));

  // The real run.
  absl::StatusOr<v2::ReapStaleJobsResponse> reaped =
      protocol_->ReapStaleJobs(absl::Minutes(10), /*dry_run=*/false);
  ASSERT_TRUE(reaped.ok()) << reaped.status();
  EXPECT_THAT(*reaped, EqualsProto(*dry));
  const v2::Job job = Get(started);
  EXPECT_EQ(job.status(), v2::REVOKED);
  EXPECT_EQ(job.finished_at().seconds(), kStartSeconds + 11 * 60);
  EXPECT_THAT(LogMessages(job),
              Contains("WARNING Reaping stalled job 1: no update for 11 "
                       "minutes (threshold 10 minutes); previous status "
                       "STARTED, holder worker-1; stages: no stages"));
  EXPECT_EQ(StoredLease(started), "{, , infinite-past, 1}");
  EXPECT_EQ(StoredStatus(pending), v2::REVOKED);
  EXPECT_EQ(StoredStatus(never_run), v2::CREATED);
  EXPECT_EQ(StoredStatus(recent), v2::PENDING);

  // Nothing is left to reap.
  reaped = protocol_->ReapStaleJobs(absl::Minutes(10), /*dry_run=*/false);
  ASSERT_TRUE(reaped.ok()) << reaped.status();
  EXPECT_EQ(reaped->jobs_size(), 0);
}

}  // namespace
}  // namespace jobline
