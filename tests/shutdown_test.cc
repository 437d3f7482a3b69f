// The graceful stop of a real job_server: on SIGTERM or SIGINT it stops
// accepting, answers the calls in flight, ends every progress stream with
// UNAVAILABLE, puts the built-in runner's work back in the queue without
// counting an attempt, checkpoints the write-ahead log, and exits 0.
// Workers' leases outlive the stop: a worker keeps its job across a
// restart (docs/worker-protocol.md).

#include <signal.h>
#include <sys/stat.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/duration.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "jobline/v2/jobs.grpc.pb.h"
#include "jobline/v2/worker.grpc.pb.h"
#include "tests/server_process.h"

namespace jobline {
namespace {

using ::jobline::testing::NewTempDir;
using ::jobline::testing::RunfilePath;
using ::jobline::testing::ServerProcess;
using ::testing::HasSubstr;

constexpr char kPopulate[] = "populate_captures_collection";
// The server's --shutdown_grace_seconds in this test.
constexpr int kGraceSeconds = 3;

google::protobuf::Duration Seconds(int64_t seconds) {
  google::protobuf::Duration duration;
  duration.set_seconds(seconds);
  return duration;
}

// Whether the file at `path` is missing or empty.
bool MissingOrEmpty(const std::string& path) {
  struct stat info;
  return stat(path.c_str(), &info) != 0 || info.st_size == 0;
}

class GracefulStop : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    dir_ = NewTempDir("shutdown");
    ASSERT_FALSE(dir_.empty());
    db_ = dir_ + "/jobline.db";
  }

  void StartServer() {
    server_ = std::make_unique<ServerProcess>();
    const absl::Status started = server_->Start(
        {"--db=" + db_,
         "--seed_catalog=" + RunfilePath("tools/demo-catalog.json"),
         "--delay_step_ms=100", "--max_attempts=1",
         absl::StrCat("--shutdown_grace_seconds=", kGraceSeconds)});
    ASSERT_TRUE(started.ok()) << started;
    channel_ = grpc::CreateChannel(server_->address(),
                                   grpc::InsecureChannelCredentials());
    jobs_ = v2::JobService::NewStub(channel_);
    workers_ = v2::WorkerService::NewStub(channel_);
  }

  v2::Job Create(const std::string& type, int64_t delay) {
    v2::CreateJobRequest request;
    request.mutable_job()->set_name(absl::StrCat("a ", type, " job"));
    request.mutable_job()->set_project_id(16);
    request.mutable_job()->set_source_image_collection_id(111);
    request.mutable_job()->set_job_type_key(type);
    request.mutable_job()->set_delay(delay);
    request.set_start_now(true);
    v2::Job job;
    grpc::ClientContext context;
    const grpc::Status status = jobs_->CreateJob(&context, request, &job);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return job;
  }

  v2::Job Get(int64_t id) {
    v2::GetJobRequest request;
    request.set_id(id);
    v2::Job job;
    grpc::ClientContext context;
    const grpc::Status status = jobs_->GetJob(&context, request, &job);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return job;
  }

  // Polls job `id` until it has `status` (at most 10 s).
  v2::Job WaitForStatus(int64_t id, v2::JobStatus status) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    v2::Job job = Get(id);
    while (job.status() != status && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(20));
      job = Get(id);
    }
    return job;
  }

  std::string dir_;
  std::string db_;
  std::unique_ptr<ServerProcess> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v2::JobService::Stub> jobs_;
  std::unique_ptr<v2::WorkerService::Stub> workers_;
};

TEST_P(GracefulStop, FinishesCallsEndsStreamsRequeuesWorkAndExitsZero) {
  const int signal_number = GetParam();
  StartServer();

  // Built-in work in progress: the delay of an "unknown" job.
  const v2::Job builtin = Create("unknown", /*delay=*/60);
  ASSERT_EQ(WaitForStatus(builtin.id(), v2::STARTED).status(), v2::STARTED);

  // A worker's job, leased for a minute.
  const v2::Job leased = Create(kPopulate, /*delay=*/0);
  v2::LeaseJobsRequest lease_request;
  lease_request.set_worker_id("steady");
  lease_request.add_job_types(kPopulate);
  *lease_request.mutable_lease_duration() = Seconds(60);
  v2::LeaseJobsResponse lease_response;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(
        workers_->LeaseJobs(&context, lease_request, &lease_response).ok());
  }
  ASSERT_EQ(lease_response.leases_size(), 1);
  const v2::Lease lease = lease_response.leases(0);
  ASSERT_EQ(lease.job().id(), leased.id());

  // A call in flight at the signal: a worker waiting 20 s for work.
  grpc::Status waiting_status;
  int waiting_leases = -1;
  absl::Time waiting_ended;
  absl::Notification waiting_started;
  std::thread waiting([&] {
    v2::LeaseJobsRequest request;
    request.set_worker_id("waiting");
    request.add_job_types("data_export");
    *request.mutable_wait() = Seconds(20);
    v2::LeaseJobsResponse response;
    grpc::ClientContext context;
    waiting_started.Notify();
    waiting_status = workers_->LeaseJobs(&context, request, &response);
    waiting_leases = response.leases_size();
    waiting_ended = absl::Now();
  });

  // A progress stream open at the signal.
  grpc::Status watch_status;
  int watch_messages = 0;
  absl::Notification first_message;
  grpc::ClientContext watch_context;
  std::thread watching([&] {
    v2::WatchProgressRequest request;
    request.set_job_id(builtin.id());
    std::unique_ptr<grpc::ClientReader<v2::WatchProgressResponse>> reader =
        jobs_->WatchProgress(&watch_context, request);
    v2::WatchProgressResponse response;
    while (reader->Read(&response)) {
      if (++watch_messages == 1) first_message.Notify();
    }
    if (!first_message.HasBeenNotified()) first_message.Notify();
    watch_status = reader->Finish();
  });
  waiting_started.WaitForNotification();
  ASSERT_TRUE(first_message.WaitForNotificationWithTimeout(absl::Seconds(10)));
  // Time for the waiting call to reach the server.
  absl::SleepFor(absl::Milliseconds(300));

  const absl::Time signalled = absl::Now();
  const absl::StatusOr<int> exit_code = server_->Stop(signal_number);
  const absl::Duration stop_time = absl::Now() - signalled;
  waiting.join();
  watching.join();

  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0) << server_->stderr_text();
  // Bounded by the grace period (a contract, with room for a slow
  // machine), not a speed figure.
  EXPECT_LT(stop_time, absl::Seconds(kGraceSeconds + 10));
  // The waiting worker got its answer, no job, well before its 20 s.
  EXPECT_TRUE(waiting_status.ok()) << waiting_status.error_message();
  EXPECT_EQ(waiting_leases, 0);
  EXPECT_LT(waiting_ended - signalled, absl::Seconds(kGraceSeconds + 10));
  // The stream ended with UNAVAILABLE, after its first document.
  EXPECT_GE(watch_messages, 1);
  EXPECT_EQ(watch_status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << watch_status.error_message();
  // Everything committed is in the database file: the log was
  // checkpointed and removed.
  EXPECT_TRUE(MissingOrEmpty(db_ + "-wal"));
  EXPECT_THAT(server_->stderr_text(), HasSubstr("stopped"));

  // After a restart the built-in job runs again without having used its
  // only attempt, and the worker's lease still holds.
  StartServer();
  const v2::Job rerun = WaitForStatus(builtin.id(), v2::STARTED);
  EXPECT_EQ(rerun.status(), v2::STARTED);
  bool requeued = false;
  for (const std::string& line : rerun.logs().stdout()) {
    requeued |= line.find("goes back to the queue: the server is stopping") !=
                std::string::npos;
  }
  EXPECT_TRUE(requeued);
  v2::HeartbeatRequest heartbeat;
  heartbeat.set_lease_id(lease.lease_id());
  heartbeat.set_job_id(leased.id());
  v2::HeartbeatResponse heartbeat_response;
  grpc::ClientContext heartbeat_context;
  const grpc::Status beat =
      workers_->Heartbeat(&heartbeat_context, heartbeat, &heartbeat_response);
  EXPECT_TRUE(beat.ok()) << beat.error_message();
  EXPECT_EQ(Get(leased.id()).status(), v2::STARTED);
  ASSERT_TRUE(server_->Stop(SIGTERM).ok());
}

INSTANTIATE_TEST_SUITE_P(Signals, GracefulStop,
                         ::testing::Values(SIGTERM, SIGINT),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return std::string(info.param == SIGTERM ? "SIGTERM"
                                                                    : "SIGINT");
                         });

}  // namespace
}  // namespace jobline
