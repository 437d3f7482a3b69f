// Smoke test of the benchmark binaries on small inputs: sqlite_limit's rows
// are the rows CreateJob stores, a preloaded database serves its jobs, and
// empty_loadgen measures empty_server.

#include <signal.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "jobline/v2/jobs.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/server_process.h"

namespace jobline {
namespace {

using ::jobline::testing::CommandResult;
using ::jobline::testing::NewTempDir;
using ::jobline::testing::RunCommand;
using ::jobline::testing::RunfilePath;
using ::jobline::testing::ServerProcess;
using ::testing::HasSubstr;

// Runs the binary tools/bench/<name> with `flags`.
CommandResult RunBench(const std::string& name,
                       const std::vector<std::string>& flags) {
  std::vector<std::string> argv = {RunfilePath("tools/bench/" + name)};
  argv.insert(argv.end(), flags.begin(), flags.end());
  absl::StatusOr<CommandResult> result = RunCommand(argv, absl::Seconds(120));
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? *result : CommandResult();
}

// Each line of `out` parsed as JSON (an unparsable line is discarded).
std::vector<nlohmann::json> JsonLines(const std::string& out) {
  std::vector<nlohmann::json> lines;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    nlohmann::json parsed = nlohmann::json::parse(line, nullptr,
                                                  /*allow_exceptions=*/false);
    if (!parsed.is_discarded()) lines.push_back(std::move(parsed));
  }
  return lines;
}

// A JobService stub on a running server.
class Jobs {
 public:
  explicit Jobs(const std::string& address)
      : stub_(v2::JobService::NewStub(grpc::CreateChannel(
            address, grpc::InsecureChannelCredentials()))) {}

  v2::Job Get(int64_t id) {
    v2::GetJobRequest request;
    request.set_id(id);
    v2::Job job;
    Call(&v2::JobService::Stub::GetJob, request, &job);
    return job;
  }

  v2::ListJobsResponse List(const std::string& status) {
    v2::ListJobsRequest request;
    request.set_status(status);
    request.set_limit(20);
    v2::ListJobsResponse response;
    Call(&v2::JobService::Stub::ListJobs, request, &response);
    return response;
  }

  v2::Job Create(const std::string& name, int64_t project_id) {
    v2::CreateJobRequest request;
    request.mutable_job()->set_name(name);
    request.mutable_job()->set_project_id(project_id);
    v2::Job job;
    Call(&v2::JobService::Stub::CreateJob, request, &job);
    return job;
  }

 private:
  template <typename Method, typename Request, typename Response>
  void Call(Method method, const Request& request, Response* response) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    const grpc::Status status = ((*stub_).*method)(&context, request, response);
    EXPECT_TRUE(status.ok()) << status.error_message();
  }

  std::unique_ptr<v2::JobService::Stub> stub_;
};

TEST(SqliteLimit, StoresTheRowsOfCreateJob) {
  const std::string db = NewTempDir("sqlite_limit") + "/limit.db";
  const CommandResult run =
      RunBench("sqlite_limit", {"--db=" + db, "--rows=100"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::vector<nlohmann::json> figures = JsonLines(run.out);
  ASSERT_EQ(figures.size(), 2u) << run.out;
  EXPECT_EQ(figures[0]["rows_per_transaction"], 1);
  EXPECT_EQ(figures[1]["rows_per_transaction"], 64);
  for (const nlohmann::json& size : figures) {
    EXPECT_EQ(size["synchronous"], "full");
    EXPECT_EQ(size["rows"], 100);
    EXPECT_GT(size["rows_per_s"].get<double>(), 0);
  }

  // The server reads the 200 rows, and a job it creates itself looks like
  // them in everything but the id, the times and the sequence of changes.
  ServerProcess server;
  ASSERT_TRUE(server.Start({"--db=" + db, "--http_port=0"}).ok())
      << server.stderr_text();
  Jobs jobs(server.address());
  EXPECT_EQ(jobs.List("").count(), 200);
  EXPECT_EQ(jobs.List("CREATED").count(), 200);
  v2::Job stored = jobs.Get(1);
  v2::Job created = jobs.Create("Load test: create", 16);
  EXPECT_EQ(created.id(), 201);
  for (v2::Job* job : {&stored, &created}) {
    job->clear_id();
    job->clear_details();
    job->clear_created_at();
    job->clear_updated_at();
  }
  EXPECT_TRUE(
      google::protobuf::util::MessageDifferencer::Equals(stored, created))
      << "stored by sqlite_limit:\n"
      << stored.DebugString() << "created by the server:\n"
      << created.DebugString();
}

TEST(SqliteLimit, RefusesAnExistingFile) {
  const std::string db = NewTempDir("sqlite_limit_twice") + "/limit.db";
  ASSERT_EQ(RunBench("sqlite_limit", {"--db=" + db, "--rows=1"}).exit_code, 0);
  const CommandResult again =
      RunBench("sqlite_limit", {"--db=" + db, "--rows=1"});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("exists; give the path of a new file"));
}

TEST(Preload, ServerListsThePreloadedJobs) {
  const std::string db = NewTempDir("preload") + "/preload.db";
  const CommandResult run = RunBench(
      "preload", {"--db=" + db, "--jobs=1000",
                  "--seed_catalog=" + RunfilePath("tools/demo-catalog.json")});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::vector<nlohmann::json> figures = JsonLines(run.out);
  ASSERT_EQ(figures.size(), 1u) << run.out;
  const nlohmann::json& preloaded = figures[0];
  EXPECT_EQ(preloaded["jobs"], 1000);
  const std::map<std::string, int64_t> by_status = preloaded["by_status"];
  int64_t total = 0;
  for (const auto& [status, count] : by_status) total += count;
  EXPECT_EQ(total, 1000);
  // Statuses mixed; running ones only among the newest 10.
  EXPECT_GT(by_status.at("SUCCESS"), 500);
  EXPECT_GT(by_status.at("CREATED"), 50);
  EXPECT_GT(by_status.at("FAILURE"), 50);
  EXPECT_GT(by_status.at("REVOKED"), 20);
  EXPECT_LE(by_status.count("PENDING") ? by_status.at("PENDING") : 0, 10);

  ServerProcess server;
  ASSERT_TRUE(server.Start({"--db=" + db, "--http_port=0"}).ok())
      << server.stderr_text();
  Jobs jobs(server.address());
  EXPECT_EQ(jobs.List("").count(), 1000);
  for (const auto& [status, count] : by_status) {
    EXPECT_EQ(jobs.List(status).count(), count) << status;
  }

  // The newest successful job: its page, its log and its progress.
  const v2::ListJobsResponse page = jobs.List("SUCCESS");
  ASSERT_EQ(page.results_size(), 20);
  for (const v2::Job& job : page.results())
    EXPECT_EQ(job.status(), v2::SUCCESS);
  const v2::Job newest = jobs.Get(page.results(0).id());
  EXPECT_EQ(newest.logs().stdout_size(), 4) << newest.DebugString();
  EXPECT_EQ(newest.progress().summary().progress(), 1.0);
  EXPECT_GT(newest.progress().stages_size(), 0);
  EXPECT_EQ(newest.sequence(), 5);
  EXPECT_TRUE(newest.has_finished_at());
}

TEST(EmptyServer, AnswersTheLoadGenerator) {
  ServerProcess server(RunfilePath("tools/bench/empty_server"));
  // ServerProcess passes job_server's --http_port=0 too.
  ASSERT_TRUE(server.Start({"--undefok=http_port"}).ok())
      << server.stderr_text();
  const CommandResult run = RunBench(
      "empty_loadgen", {"--server=" + server.address(), "--concurrency=4",
                        "--warmup_s=0.2", "--duration_s=0.5"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::vector<nlohmann::json> figures = JsonLines(run.out);
  ASSERT_EQ(figures.size(), 1u) << run.out;
  EXPECT_EQ(figures[0]["method"], "empty");
  EXPECT_EQ(figures[0]["errors"], 0);
  EXPECT_EQ(figures[0]["concurrency"], 4);
  EXPECT_EQ(figures[0]["channels"], 2);
  EXPECT_GT(figures[0]["calls"].get<int64_t>(), 0);
  EXPECT_EQ(server.Stop(SIGTERM).value_or(-1), 0);
}

}  // namespace
}  // namespace jobline
