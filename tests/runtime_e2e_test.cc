// End-to-end tests of the job runtime: the real job_server with its
// built-in runner, and workers speaking the worker protocol over gRPC.

#include <signal.h>

#include <atomic>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/job_client.h"
#include "client/status_util.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "jobline/v2/worker.grpc.pb.h"
#include "tests/server_process.h"

namespace jobline {
namespace {

using ::google::protobuf::util::TimeUtil;
using ::jobline::testing::NewTempDir;
using ::jobline::testing::RunfilePath;
using ::jobline::testing::ServerProcess;
using ::testing::Contains;
using ::testing::HasSubstr;

constexpr char kPopulate[] = "populate_captures_collection";

// A worker over the generated stub.
class TestWorker {
 public:
  TestWorker(const std::string& address, std::string name)
      : stub_(v2::WorkerService::NewStub(
            grpc::CreateChannel(address, grpc::InsecureChannelCredentials()))),
        name_(std::move(name)) {}

  // Leases up to `max` jobs of type `type`.
  std::vector<v2::Lease> Lease(int max, absl::Duration length,
                               const std::string& type = kPopulate) {
    v2::LeaseJobsRequest request;
    request.set_worker_id(name_);
    request.add_job_types(type);
    request.set_max_jobs(max);
    *request.mutable_lease_duration() =
        TimeUtil::MillisecondsToDuration(absl::ToInt64Milliseconds(length));
    v2::LeaseJobsResponse response;
    grpc::ClientContext context;
    const grpc::Status status = stub_->LeaseJobs(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return {response.leases().begin(), response.leases().end()};
  }

  grpc::Status Heartbeat(const v2::Lease& lease, bool* cancel_requested) {
    v2::HeartbeatRequest request;
    request.set_lease_id(lease.lease_id());
    request.set_job_id(lease.job().id());
    v2::HeartbeatResponse response;
    grpc::ClientContext context;
    const grpc::Status status = stub_->Heartbeat(&context, request, &response);
    if (cancel_requested != nullptr) {
      *cancel_requested = response.cancel_requested();
    }
    return status;
  }

  // Reports progress and a log line; the lease then lasts `length` more.
  grpc::Status Report(const v2::Lease& lease, double progress,
                      const std::string& log, absl::Duration length) {
    v2::ReportProgressRequest request;
    request.set_lease_id(lease.lease_id());
    request.set_job_id(lease.job().id());
    *request.mutable_lease_duration() =
        TimeUtil::MillisecondsToDuration(absl::ToInt64Milliseconds(length));
    v2::StageUpdate* stage = request.add_stages();
    stage->set_name("Populate captures collection");
    stage->set_status(v2::STARTED);
    stage->set_progress(progress);
    v2::WorkerLogLine* line = request.add_logs();
    line->set_level("INFO");
    line->set_message(log);
    v2::ReportProgressResponse response;
    grpc::ClientContext context;
    return stub_->ReportProgress(&context, request, &response);
  }

  // Finishes with SUCCESS, the stage (if any) at 1.0.
  grpc::Status Finish(const v2::Lease& lease, bool with_stage,
                      v2::Job* job = nullptr) {
    v2::FinishJobRequest request;
    request.set_lease_id(lease.lease_id());
    request.set_job_id(lease.job().id());
    request.set_status(v2::SUCCESS);
    request.mutable_result()->set_string_value(name_);
    if (with_stage) {
      v2::StageUpdate* stage = request.add_stages();
      stage->set_name("Populate captures collection");
      stage->set_status(v2::SUCCESS);
      stage->set_progress(1.0);
    }
    v2::FinishJobResponse response;
    grpc::ClientContext context;
    const grpc::Status status = stub_->FinishJob(&context, request, &response);
    if (job != nullptr) *job = response.job();
    return status;
  }

 private:
  std::unique_ptr<v2::WorkerService::Stub> stub_;
  const std::string name_;
};

class RuntimeEndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = NewTempDir("runtime");
    ASSERT_FALSE(dir_.empty());
  }

  void StartServer(std::vector<std::string> extra = {}) {
    std::vector<std::string> flags = {
        "--db=" + dir_ + "/jobline.db",
        "--seed_catalog=" + RunfilePath("tools/demo-catalog.json"),
        "--synchronous=normal", "--delay_step_ms=100"};
    flags.insert(flags.end(), extra.begin(), extra.end());
    server_ = std::make_unique<ServerProcess>();
    const absl::Status started = server_->Start(flags);
    ASSERT_TRUE(started.ok()) << started;
    client_ =
        std::make_unique<JobClient>(JobClient::Connect(server_->address()));
  }

  void StopServer(int signal_number = SIGTERM) {
    client_.reset();
    ASSERT_TRUE(server_->Stop(signal_number).ok());
  }

  v2::Job Create(const std::string& type, int64_t delay = 0) {
    v2::JobInput input;
    input.set_name(absl::StrCat("job of type ", type));
    input.set_project_id(16);
    input.set_source_image_collection_id(111);
    input.set_job_type_key(type);
    input.set_delay(delay);
    absl::StatusOr<v2::Job> job = client_->CreateJob(input, true);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? *job : v2::Job();
  }

  // Polls job `id` until `done` holds (at most `timeout`); returns the last
  // state read.
  v2::Job WaitFor(int64_t id, const std::function<bool(const v2::Job&)>& done,
                  absl::Duration timeout = absl::Seconds(10)) {
    const absl::Time deadline = absl::Now() + timeout;
    v2::Job job;
    while (absl::Now() < deadline) {
      absl::StatusOr<v2::Job> read = client_->GetJob(id);
      if (read.ok()) {
        job = *read;
        if (done(job)) return job;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    return job;
  }

  static std::function<bool(const v2::Job&)> HasStatus(v2::JobStatus status) {
    return [status](const v2::Job& job) { return job.status() == status; };
  }

  std::string dir_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<JobClient> client_;
};

TEST_F(RuntimeEndToEnd, AKilledWorkersJobGoesToTheNextWorker) {
  StartServer();
  const v2::Job job = Create(kPopulate);
  TestWorker first(server_->address(), "worker-a");
  std::vector<v2::Lease> leases = first.Lease(1, absl::Seconds(1));
  ASSERT_EQ(leases.size(), 1u);
  EXPECT_EQ(leases[0].attempt(), 1);
  EXPECT_EQ(leases[0].job().status(), v2::STARTED);
  ASSERT_TRUE(first.Report(leases[0], 0.5, "half way", absl::Seconds(1)).ok());

  // worker-a dies: its lease runs out and the job is queued again.
  const v2::Job requeued = WaitFor(job.id(), HasStatus(v2::PENDING));
  ASSERT_EQ(requeued.status(), v2::PENDING);
  EXPECT_THAT(requeued.logs().stdout(),
              Contains(HasSubstr("held by worker-a ended without a result; "
                                 "queueing it again (attempt 1 of 3 used)")));

  TestWorker second(server_->address(), "worker-b");
  std::vector<v2::Lease> retaken = second.Lease(1, absl::Seconds(30));
  ASSERT_EQ(retaken.size(), 1u);
  EXPECT_EQ(retaken[0].attempt(), 2);
  v2::Job finished;
  ASSERT_TRUE(second.Finish(retaken[0], true, &finished).ok());
  EXPECT_EQ(finished.status(), v2::SUCCESS);
  EXPECT_EQ(finished.result().string_value(), "worker-b");

  // worker-a comes back too late: refused, nothing changes.
  const grpc::Status late = first.Finish(leases[0], true);
  EXPECT_EQ(late.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(late.error_message(),
            absl::StrCat("job ", job.id(), " is already SUCCESS"));
  EXPECT_EQ(client_->GetJob(job.id())->result().string_value(), "worker-b");
  StopServer();
}

TEST_F(RuntimeEndToEnd, CancelStopsBuiltInWorkWithinASecond) {
  StartServer();
  const v2::Job job = Create("unknown", /*delay=*/300);
  ASSERT_EQ(WaitFor(job.id(), HasStatus(v2::STARTED)).status(), v2::STARTED);

  const absl::Time asked = absl::Now();
  absl::StatusOr<v2::Job> cancelled = client_->CancelJob(job.id());
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  const v2::Job revoked =
      WaitFor(job.id(), HasStatus(v2::REVOKED), absl::Seconds(1));
  EXPECT_EQ(revoked.status(), v2::REVOKED);
  EXPECT_LT(absl::Now() - asked, absl::Seconds(1));
  EXPECT_TRUE(revoked.has_finished_at());
  StopServer();
}

TEST_F(RuntimeEndToEnd, CancelOfLeasedWorkReachesTheWorker) {
  StartServer();
  const v2::Job job = Create(kPopulate);
  TestWorker worker(server_->address(), "worker-c");
  std::vector<v2::Lease> leases = worker.Lease(1, absl::Seconds(30));
  ASSERT_EQ(leases.size(), 1u);

  absl::StatusOr<v2::Job> cancelling = client_->CancelJob(job.id());
  ASSERT_TRUE(cancelling.ok());
  EXPECT_EQ(cancelling->status(), v2::CANCELING);
  bool cancel_requested = false;
  ASSERT_TRUE(worker.Heartbeat(leases[0], &cancel_requested).ok());
  EXPECT_TRUE(cancel_requested);

  v2::Job finished;
  ASSERT_TRUE(worker.Finish(leases[0], true, &finished).ok());
  EXPECT_EQ(finished.status(), v2::REVOKED);
  EXPECT_TRUE(finished.has_finished_at());
  StopServer();
}

TEST_F(RuntimeEndToEnd, BuiltInWorkInterruptedByACrashRunsAgain) {
  StartServer();
  const v2::Job job = Create("unknown", /*delay=*/50);
  ASSERT_EQ(WaitFor(job.id(), HasStatus(v2::STARTED)).status(), v2::STARTED);
  StopServer(SIGKILL);

  StartServer();
  const v2::Job failed =
      WaitFor(job.id(), HasStatus(v2::FAILURE), absl::Seconds(15));
  ASSERT_EQ(failed.status(), v2::FAILURE);
  EXPECT_THAT(failed.logs().stdout(),
              Contains(HasSubstr("held by jobline-runner ended without a "
                                 "result; queueing it again (attempt 1 of 3 "
                                 "used)")));
  EXPECT_THAT(failed.logs().stderr(),
              Contains("Job type \"unknown\" has no work to run"));
  StopServer();
}

TEST_F(RuntimeEndToEnd, AWaitingLeaseCallEndsBeforeItsDeadlineTakingNoJob) {
  StartServer();
  auto stub = v2::WorkerService::NewStub(grpc::CreateChannel(
      server_->address(), grpc::InsecureChannelCredentials()));
  v2::LeaseJobsRequest request;
  request.set_worker_id("impatient");
  request.add_job_types(kPopulate);
  *request.mutable_wait() = TimeUtil::SecondsToDuration(20);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
  v2::LeaseJobsResponse response;
  // The wait ends before the caller's deadline: an empty answer in time.
  const grpc::Status status = stub->LeaseJobs(&context, request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.leases_size(), 0);

  // A job queued after the caller gave up waits for the next worker.
  const v2::Job job = Create(kPopulate);
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(client_->GetJob(job.id())->status(), v2::PENDING);
  StopServer();
}

TEST_F(RuntimeEndToEnd, ACleanStopCostsBuiltInWorkNoAttempt) {
  StartServer({"--max_attempts=1"});
  const v2::Job job = Create("unknown", /*delay=*/30);
  ASSERT_EQ(WaitFor(job.id(), HasStatus(v2::STARTED)).status(), v2::STARTED);
  StopServer(SIGTERM);
  StartServer({"--max_attempts=1"});
  // With one attempt allowed, a counted stop would have failed the job
  // without running it; it runs its delay again instead.
  const v2::Job rerun = WaitFor(job.id(), HasStatus(v2::STARTED));
  EXPECT_EQ(rerun.status(), v2::STARTED);
  EXPECT_THAT(rerun.logs().stdout(),
              Contains(HasSubstr("goes back to the queue: the server is "
                                 "stopping")));
  StopServer();
}

TEST_F(RuntimeEndToEnd, ALeasedJobOutlivesAServerRestart) {
  StartServer();
  const v2::Job job = Create(kPopulate);
  v2::Lease lease;
  {
    TestWorker worker(server_->address(), "worker-d");
    std::vector<v2::Lease> leases = worker.Lease(1, absl::Seconds(60));
    ASSERT_EQ(leases.size(), 1u);
    lease = leases[0];
  }
  StopServer(SIGKILL);

  // The worker keeps its lease across the restart and finishes the job.
  StartServer();
  TestWorker worker(server_->address(), "worker-d");
  bool cancel_requested = true;
  ASSERT_TRUE(worker.Heartbeat(lease, &cancel_requested).ok());
  EXPECT_FALSE(cancel_requested);
  v2::Job finished;
  ASSERT_TRUE(worker.Finish(lease, true, &finished).ok());
  EXPECT_EQ(finished.status(), v2::SUCCESS);
  EXPECT_EQ(finished.id(), job.id());
  StopServer();
}

TEST_F(RuntimeEndToEnd, TwentyWorkersShareAThousandJobsExactlyOnce) {
  StartServer();
  std::set<int64_t> created;
  for (int i = 0; i < 1000; ++i) created.insert(Create(kPopulate).id());
  ASSERT_EQ(created.size(), 1000u);

  absl::Mutex mu;
  std::vector<int64_t> executed;
  std::atomic<int> refused{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < 20; ++w) {
    workers.emplace_back([&, w] {
      TestWorker worker(server_->address(), absl::StrCat("racer-", w));
      int empty = 0;
      while (empty < 3) {
        std::vector<v2::Lease> leases = worker.Lease(5, absl::Seconds(60));
        if (leases.empty()) {
          ++empty;
          continue;
        }
        empty = 0;
        for (const v2::Lease& lease : leases) {
          if (!worker.Finish(lease, false).ok()) ++refused;
          absl::MutexLock lock(&mu);
          executed.push_back(lease.job().id());
        }
      }
    });
  }
  for (std::thread& worker : workers) worker.join();

  EXPECT_EQ(refused.load(), 0);
  EXPECT_EQ(executed.size(), 1000u);
  EXPECT_EQ(std::set<int64_t>(executed.begin(), executed.end()), created);
  v2::ListJobsRequest succeeded;
  succeeded.set_status("SUCCESS");
  EXPECT_EQ(client_->ListJobs(succeeded)->count(), 1000);
  StopServer();
}

}  // namespace
}  // namespace jobline
