// Tests of WatchProgress: a JobServiceImpl with a WatchHub on a SqliteJobStore,
// served by an in-process grpc::Server, watched through the generated stub.

#include "server/watch_hub.h"

#include <atomic>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/resource_quota.h"
#include "gtest/gtest.h"
#include "jobline/v2/jobs.grpc.pb.h"
#include "server/job_manager.h"
#include "server/job_service_impl.h"
#include "storage/sqlite_job_store.h"

namespace jobline {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;

// A server on a store: Start() opens the store at `path` and serves it.
class WatchServer {
 public:
  explicit WatchServer(std::string path, WatchHubOptions options = {},
                       int sync_threads = 0)
      : path_(std::move(path)),
        options_(std::move(options)),
        sync_threads_(sync_threads) {}
  ~WatchServer() { Stop(); }

  void Start() {
    SqliteJobStoreOptions store_options;
    store_options.path = path_;
    store_ = OpenSqliteJobStore(store_options).value();
    manager_ = std::make_unique<JobManager>(store_.get(), RealClock());
    hub_ = std::make_unique<WatchHub>(store_.get(), options_);
    store_->SetChangeListener([hub = hub_.get()](const JobChangeEvent& event) {
      hub->OnCommit(event);
    });
    service_ = std::make_unique<JobServiceImpl>(manager_.get(), hub_.get());
    grpc::ServerBuilder builder;
    if (sync_threads_ > 0) {
      grpc::ResourceQuota quota("watch_hub_test");
      quota.SetMaxThreads(sync_threads_);
      builder.SetResourceQuota(quota);
    }
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    stub_ = v2::JobService::NewStub(
        server_->InProcessChannel(grpc::ChannelArguments()));
    if (!store_->GetProject(16).ok()) {
      v2::Catalog catalog;
      v2::Project* project = catalog.add_projects();
      project->set_id(16);
      project->set_name("Aarhus Universitet, Department of Ecoscience");
      manager_->ImportCatalog(catalog).IgnoreError();
    }
  }

  void Stop() {
    if (server_ == nullptr) return;
    hub_->Shutdown();
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::seconds(5));
    server_.reset();
    store_->SetChangeListener(nullptr);
    hub_.reset();
    service_.reset();
    manager_.reset();
    store_.reset();
  }

  // Creates a job (CREATED) and returns its id.
  int64_t CreateJob(const std::string& name = "Watched") {
    v2::CreateJobRequest request;
    request.mutable_job()->set_name(name);
    request.mutable_job()->set_project_id(16);
    request.mutable_job()->set_job_type_key("data_export");
    return manager_->CreateJob(request).value().id();
  }

  // Appends one log line (one change).
  void Log(int64_t id, const std::string& message) {
    ASSERT_TRUE(store_->AppendLogs(id, {{LogLevel::kInfo, message}}).ok());
  }

  // Sets the job's status with a line (one change).
  void SetStatus(int64_t id, v2::JobStatus status) {
    ASSERT_TRUE(store_
                    ->MutateJob(id,
                                [status](JobMutation& mutation) {
                                  mutation.job.set_status(status);
                                  return absl::OkStatus();
                                })
                    .ok());
  }

  SqliteJobStore& store() { return *store_; }
  JobManager& manager() { return *manager_; }
  WatchHub& hub() { return *hub_; }
  grpc::Server& server() { return *server_; }
  v2::JobService::Stub& stub() { return *stub_; }

 private:
  const std::string path_;
  const WatchHubOptions options_;
  const int sync_threads_;
  std::unique_ptr<SqliteJobStore> store_;
  std::unique_ptr<JobManager> manager_;
  std::unique_ptr<WatchHub> hub_;
  std::unique_ptr<JobServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v2::JobService::Stub> stub_;
};

// One open WatchProgress call.
struct Watch {
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<v2::WatchProgressResponse>> reader;

  Watch(v2::JobService::Stub& stub, int64_t job_id, int64_t after = 0) {
    v2::WatchProgressRequest request;
    request.set_job_id(job_id);
    request.set_after_sequence(after);
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(60));
    reader = stub.WatchProgress(&context, request);
  }

  v2::WatchProgressResponse Next() {
    v2::WatchProgressResponse response;
    EXPECT_TRUE(reader->Read(&response)) << "the stream ended early";
    return response;
  }

  // Reads to the end of the stream.
  std::vector<v2::WatchProgressResponse> Rest() {
    std::vector<v2::WatchProgressResponse> responses;
    v2::WatchProgressResponse response;
    while (reader->Read(&response)) responses.push_back(response);
    return responses;
  }
};

// The bare messages of the log lines in `responses`, in order ("[...] INFO
// x" gives "x").
std::vector<std::string> Messages(
    const std::vector<v2::WatchProgressResponse>& responses) {
  std::vector<std::string> messages;
  for (const auto& response : responses) {
    for (const v2::JobLogLine& line : response.logs()) {
      const size_t start = line.text().find(line.level() + " ");
      messages.push_back(line.text().substr(start + line.level().size() + 1));
    }
  }
  return messages;
}

std::vector<v2::JobStatus> Statuses(
    const std::vector<v2::WatchProgressResponse>& responses) {
  std::vector<v2::JobStatus> statuses;
  for (const auto& response : responses) {
    for (const v2::JobStatusChange& change : response.status_changes()) {
      statuses.push_back(change.status());
    }
  }
  return statuses;
}

class WatchHubTest : public ::testing::Test {
 protected:
  void SetUp() override { server_.Start(); }
  WatchServer server_{":memory:"};
};

TEST_F(WatchHubTest, FirstTheDocumentThenEveryChangeInOrder) {
  const int64_t id = server_.CreateJob();
  Watch watch(server_.stub(), id);
  const v2::WatchProgressResponse first = watch.Next();
  EXPECT_TRUE(first.snapshot());
  EXPECT_EQ(first.sequence(), 1);
  EXPECT_EQ(first.job().id(), id);
  EXPECT_EQ(first.job().status(), v2::CREATED);
  EXPECT_EQ(first.job().details(), absl::StrCat("/api/v2/jobs/", id, "/"));
  EXPECT_EQ(first.job().sequence(), 1);
  EXPECT_TRUE(first.status_changes().empty());

  // One message per change while the watcher keeps up.
  ASSERT_TRUE(server_.manager().RunJob(id).ok());
  v2::WatchProgressResponse run = watch.Next();
  EXPECT_FALSE(run.snapshot());
  EXPECT_EQ(run.sequence(), 2);
  EXPECT_EQ(run.job().status(), v2::PENDING);
  EXPECT_EQ(run.job().sequence(), 2);
  ASSERT_EQ(run.status_changes_size(), 1);
  EXPECT_EQ(run.status_changes(0).sequence(), 2);
  EXPECT_EQ(run.status_changes(0).status(), v2::PENDING);
  EXPECT_TRUE(run.job().logs().stdout().empty());

  server_.Log(id, "first line");
  v2::WatchProgressResponse line = watch.Next();
  EXPECT_EQ(line.sequence(), 3);
  EXPECT_EQ(line.job().status(), v2::PENDING);
  ASSERT_EQ(line.logs_size(), 1);
  EXPECT_EQ(line.logs(0).sequence(), 3);
  EXPECT_EQ(line.logs(0).level(), "INFO");
  EXPECT_THAT(line.logs(0).text(), ::testing::EndsWith("] INFO first line"));
  EXPECT_TRUE(line.status_changes().empty());

  server_.SetStatus(id, v2::STARTED);
  EXPECT_EQ(watch.Next().job().status(), v2::STARTED);

  // The final state is the last message; the stream ends with OK.
  server_.SetStatus(id, v2::SUCCESS);
  const v2::WatchProgressResponse last = watch.Next();
  EXPECT_EQ(last.sequence(), 5);
  EXPECT_EQ(last.job().status(), v2::SUCCESS);
  EXPECT_THAT(watch.Rest(), ::testing::IsEmpty());
  EXPECT_TRUE(watch.reader->Finish().ok());
}

TEST_F(WatchHubTest, AFinishedJobGivesItsDocumentAndEnds) {
  const int64_t id = server_.CreateJob();
  server_.SetStatus(id, v2::FAILURE);
  Watch watch(server_.stub(), id);
  const std::vector<v2::WatchProgressResponse> all = watch.Rest();
  ASSERT_EQ(all.size(), 1);
  EXPECT_TRUE(all[0].snapshot());
  EXPECT_EQ(all[0].job().status(), v2::FAILURE);
  EXPECT_TRUE(watch.reader->Finish().ok());
}

TEST_F(WatchHubTest, BadRequestsAreRefusedWithTheField) {
  Watch unknown(server_.stub(), 999);
  EXPECT_THAT(unknown.Rest(), ::testing::IsEmpty());
  grpc::Status status = unknown.reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(status.error_message(), "job 999 not found");

  const int64_t id = server_.CreateJob();
  Watch negative(server_.stub(), id, -1);
  EXPECT_THAT(negative.Rest(), ::testing::IsEmpty());
  status = negative.reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(),
            "after_sequence: Ensure this value is greater than or equal to 0.");

  grpc::ClientContext context;
  v2::WatchProgressRequest request;
  request.set_job_id(id);
  request.set_logs_limit(0);
  auto reader = server_.stub().WatchProgress(&context, request);
  v2::WatchProgressResponse response;
  EXPECT_FALSE(reader->Read(&response));
  status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(),
            "logs_limit: Ensure this value is between 1 and 5000.");
}

TEST_F(WatchHubTest, ASlowWatcherGetsEveryLineAndStatusBatched) {
  const int64_t id = server_.CreateJob();
  Watch watch(server_.stub(), id);
  EXPECT_EQ(watch.Next().sequence(), 1);

  // 1,000 changes while the watcher does not read.
  std::vector<std::string> expected;
  server_.SetStatus(id, v2::STARTED);
  for (int i = 0; i < 998; ++i) {
    expected.push_back(absl::StrCat("line ", i));
    server_.Log(id, expected.back());
  }
  server_.SetStatus(id, v2::SUCCESS);

  const std::vector<v2::WatchProgressResponse> rest = watch.Rest();
  EXPECT_TRUE(watch.reader->Finish().ok());
  ASSERT_FALSE(rest.empty());
  EXPECT_LT(rest.size(), 1000u) << "changes were not batched";
  EXPECT_THAT(Messages(rest), ElementsAreArray(expected));
  EXPECT_THAT(Statuses(rest), ElementsAre(v2::STARTED, v2::SUCCESS));
  EXPECT_EQ(rest.back().sequence(), 1001);
  EXPECT_EQ(rest.back().job().status(), v2::SUCCESS);
  // Sequences only grow.
  for (size_t i = 1; i < rest.size(); ++i) {
    EXPECT_GT(rest[i].sequence(), rest[i - 1].sequence());
  }
}

TEST_F(WatchHubTest, ResumingGivesExactlyWhatWasMissed) {
  const int64_t id = server_.CreateJob();
  int64_t seen = 0;
  {
    Watch watch(server_.stub(), id);
    EXPECT_EQ(watch.Next().sequence(), 1);
    server_.Log(id, "a");
    seen = watch.Next().sequence();
    EXPECT_EQ(seen, 2);
    watch.context.TryCancel();
  }
  server_.Log(id, "b");
  server_.SetStatus(id, v2::STARTED);
  server_.Log(id, "c");

  Watch resumed(server_.stub(), id, seen);
  const v2::WatchProgressResponse first = resumed.Next();
  EXPECT_FALSE(first.snapshot());
  EXPECT_EQ(first.sequence(), 5);
  EXPECT_THAT(Messages({first}), ElementsAre("b", "c"));
  EXPECT_THAT(Statuses({first}), ElementsAre(v2::STARTED));
  EXPECT_EQ(first.job().status(), v2::STARTED);

  // Nothing missed: the current document, and no change.
  Watch current(server_.stub(), id, 5);
  const v2::WatchProgressResponse now = current.Next();
  EXPECT_FALSE(now.snapshot());
  EXPECT_EQ(now.sequence(), 5);
  EXPECT_TRUE(now.logs().empty());
  EXPECT_TRUE(now.status_changes().empty());

  // A sequence the job never had: a snapshot.
  Watch future(server_.stub(), id, 99);
  const v2::WatchProgressResponse fresh = future.Next();
  EXPECT_TRUE(fresh.snapshot());
  EXPECT_EQ(fresh.sequence(), 5);
  EXPECT_EQ(fresh.job().logs().stdout_size(), 3);
}

TEST_F(WatchHubTest, MissingMoreThanTheReplayLimitGivesASnapshot) {
  WatchHubOptions options;
  options.max_replay_logs = 10;
  WatchServer server(":memory:", options);
  server.Start();
  const int64_t id = server.CreateJob();
  for (int i = 0; i < 11; ++i) server.Log(id, absl::StrCat("line ", i));
  Watch resumed(server.stub(), id, 1);
  const v2::WatchProgressResponse first = resumed.Next();
  EXPECT_TRUE(first.snapshot());
  EXPECT_EQ(first.sequence(), 12);
  EXPECT_TRUE(first.logs().empty());
  EXPECT_EQ(first.job().logs().stdout_size(), 11);
}

TEST_F(WatchHubTest, AWatcherBehindTheWindowIsServedFromTheStore) {
  WatchHubOptions options;
  options.window_changes = 4;
  WatchServer server(":memory:", options);
  server.Start();
  const int64_t id = server.CreateJob();
  Watch watch(server.stub(), id);
  EXPECT_EQ(watch.Next().sequence(), 1);
  std::vector<std::string> expected;
  for (int i = 0; i < 50; ++i) {
    expected.push_back(absl::StrCat("line ", i));
    server.Log(id, expected.back());
  }
  server.SetStatus(id, v2::REVOKED);
  const std::vector<v2::WatchProgressResponse> rest = watch.Rest();
  EXPECT_TRUE(watch.reader->Finish().ok());
  EXPECT_THAT(Messages(rest), ElementsAreArray(expected));
  EXPECT_THAT(Statuses(rest), ElementsAre(v2::REVOKED));
}

TEST_F(WatchHubTest, ConcurrentWritersAreSeenInCommitOrder) {
  const int64_t id = server_.CreateJob();
  Watch watch(server_.stub(), id);
  EXPECT_EQ(watch.Next().sequence(), 1);
  constexpr int kWriters = 4;
  constexpr int kLines = 100;
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < kLines; ++i) {
        server_.Log(id, absl::StrCat(w, ":", i));
      }
    });
  }
  for (std::thread& writer : writers) writer.join();
  server_.SetStatus(id, v2::SUCCESS);

  const std::vector<v2::WatchProgressResponse> rest = watch.Rest();
  std::vector<int64_t> sequences;
  std::vector<int> next_of_writer(kWriters, 0);
  for (const auto& response : rest) {
    for (const v2::JobLogLine& line : response.logs()) {
      sequences.push_back(line.sequence());
    }
  }
  for (const std::string& message : Messages(rest)) {
    const int writer = message[0] - '0';
    ASSERT_GE(writer, 0);
    ASSERT_LT(writer, kWriters);
    EXPECT_EQ(message, absl::StrCat(writer, ":", next_of_writer[writer]));
    ++next_of_writer[writer];
  }
  EXPECT_THAT(next_of_writer, ElementsAre(kLines, kLines, kLines, kLines));
  ASSERT_EQ(sequences.size(), kWriters * kLines);
  for (size_t i = 0; i < sequences.size(); ++i) {
    EXPECT_EQ(sequences[i], static_cast<int64_t>(i) + 2);
  }
}

TEST_F(WatchHubTest, DeletingTheJobEndsItsStreams) {
  const int64_t id = server_.CreateJob();
  Watch watch(server_.stub(), id);
  EXPECT_EQ(watch.Next().sequence(), 1);
  ASSERT_TRUE(server_.manager().DeleteJob(id).ok());
  EXPECT_THAT(watch.Rest(), ::testing::IsEmpty());
  const grpc::Status status = watch.reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(status.error_message(), absl::StrCat("job ", id, " was deleted"));
}

TEST_F(WatchHubTest, WatcherLimitsAreResourceExhausted) {
  WatchHubOptions options;
  options.max_watchers = 3;
  options.max_watchers_per_job = 2;
  WatchServer server(":memory:", options);
  server.Start();
  const int64_t one = server.CreateJob();
  const int64_t two = server.CreateJob();
  Watch a(server.stub(), one);
  Watch b(server.stub(), one);
  a.Next();
  b.Next();
  Watch c(server.stub(), one);
  EXPECT_THAT(c.Rest(), ::testing::IsEmpty());
  grpc::Status status = c.reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(status.error_message(),
            absl::StrCat("too many watchers of job ", one,
                         ": the server allows 2 (--max_watchers_per_job)"));
  Watch d(server.stub(), two);
  d.Next();
  Watch e(server.stub(), two);
  EXPECT_THAT(e.Rest(), ::testing::IsEmpty());
  status = e.reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(status.error_message(),
            "too many watchers: the server allows 3 (--max_watchers)");
  EXPECT_EQ(server.hub().open_streams(), 3);
}

TEST(WatchHubRestart, ResumesFromTheStoreAfterARestart) {
  const std::string path =
      absl::StrCat(::testing::TempDir(), "/watch_hub_restart.db");
  std::filesystem::remove(path);
  int64_t id = 0;
  int64_t seen = 0;
  {
    WatchServer server(path);
    server.Start();
    id = server.CreateJob();
    Watch watch(server.stub(), id);
    watch.Next();
    server.Log(id, "before");
    seen = watch.Next().sequence();
    server.Log(id, "missed 1");
    server.SetStatus(id, v2::STARTED);
    // The server stops: the stream ends with UNAVAILABLE, after what was
    // already on its way.
    server.Stop();
    watch.Rest();
    const grpc::Status status = watch.reader->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
        << status.error_message();
  }
  WatchServer server(path);
  server.Start();
  server.Log(id, "after restart");
  Watch resumed(server.stub(), id, seen);
  const v2::WatchProgressResponse first = resumed.Next();
  EXPECT_FALSE(first.snapshot());
  EXPECT_EQ(seen, 2);
  EXPECT_EQ(first.sequence(), 5);
  EXPECT_THAT(Messages({first}), ElementsAre("missed 1", "after restart"));
  EXPECT_THAT(Statuses({first}), ElementsAre(v2::STARTED));
  EXPECT_EQ(first.job().status(), v2::STARTED);
}

TEST(WatchHubShutdown, FiveHundredStreamsEndWithUnavailable) {
  WatchServer server(":memory:", {}, /*sync_threads=*/4);
  server.Start();
  std::vector<int64_t> jobs;
  for (int i = 0; i < 10; ++i) jobs.push_back(server.CreateJob());

  // 500 streams on one completion queue.
  constexpr int kStreams = 500;
  grpc::CompletionQueue queue;
  struct Call {
    grpc::ClientContext context;
    v2::WatchProgressResponse response;
    std::unique_ptr<grpc::ClientAsyncReader<v2::WatchProgressResponse>> reader;
    grpc::Status status;
    // The tag of the call's start; the Call itself tags its reads.
    bool started = false;
  };
  std::vector<std::unique_ptr<Call>> calls;
  for (int i = 0; i < kStreams; ++i) {
    auto call = std::make_unique<Call>();
    v2::WatchProgressRequest request;
    request.set_job_id(jobs[i % jobs.size()]);
    call->reader = server.stub().AsyncWatchProgress(&call->context, request,
                                                    &queue, &call->started);
    calls.push_back(std::move(call));
  }
  // Each call: started, then its first message read.
  auto next = [&queue]() {
    void* tag;
    bool ok;
    EXPECT_TRUE(queue.Next(&tag, &ok));
    EXPECT_TRUE(ok);
    return static_cast<Call*>(tag);
  };
  for (int i = 0; i < kStreams; ++i) {
    void* tag;
    bool ok;
    ASSERT_TRUE(queue.Next(&tag, &ok));
    ASSERT_TRUE(ok);
    *static_cast<bool*>(tag) = true;
  }
  for (auto& call : calls) {
    ASSERT_TRUE(call->started);
    call->reader->Read(&call->response, call.get());
  }
  for (int i = 0; i < kStreams; ++i) {
    Call* call = next();
    EXPECT_TRUE(call->response.snapshot());
  }
  EXPECT_EQ(server.hub().open_streams(), kStreams);

  // Unary calls still have threads while the streams are open.
  grpc::ClientContext context;
  v2::GetJobRequest get;
  get.set_id(jobs[0]);
  v2::Job job;
  ASSERT_TRUE(server.stub().GetJob(&context, get, &job).ok());
  EXPECT_EQ(job.id(), jobs[0]);

  std::map<void*, Call*> finish_tags;
  for (auto& call : calls) finish_tags[&call->status] = call.get();
  std::thread stopper([&server] { server.Stop(); });
  for (auto& call : calls) {
    call->reader->Read(&call->response, call.get());
  }
  // Each stream ends: its read fails, then its status is read (tagged by
  // the Call's status member).
  int unavailable = 0;
  for (int finished = 0; finished < kStreams;) {
    void* tag;
    bool ok;
    ASSERT_TRUE(queue.Next(&tag, &ok));
    if (auto it = finish_tags.find(tag); it != finish_tags.end()) {
      if (it->second->status.error_code() == grpc::StatusCode::UNAVAILABLE) {
        ++unavailable;
      }
      ++finished;
      continue;
    }
    Call* call = static_cast<Call*>(tag);
    if (ok) {
      call->reader->Read(&call->response, call);
    } else {
      call->reader->Finish(&call->status, &call->status);
    }
  }
  stopper.join();
  EXPECT_EQ(unavailable, kStreams);
  queue.Shutdown();
  void* tag;
  bool ok;
  while (queue.Next(&tag, &ok)) {
  }
}

}  // namespace
}  // namespace jobline
