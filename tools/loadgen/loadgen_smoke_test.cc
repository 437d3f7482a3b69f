// Smoke test of jobline_loadgen: each method for about a second against a
// real job_server on free ports, and the figures it prints; and a small
// run of jobline_watchbench.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "client/job_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
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
using ::testing::StartsWith;

class LoadgenSmoke : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = NewTempDir("loadgen");
    ASSERT_FALSE(dir.empty());
    server_ = std::make_unique<ServerProcess>();
    const absl::Status started = server_->Start(
        {"--db=" + dir + "/jobline.db",
         "--seed_catalog=" + RunfilePath("tools/demo-catalog.json")});
    ASSERT_TRUE(started.ok()) << started;
    client_ =
        std::make_unique<JobClient>(JobClient::Connect(server_->address()));
  }

  // Runs the load generator against the server with `flags`.
  CommandResult Loadgen(const std::vector<std::string>& flags) {
    std::vector<std::string> argv = {
        RunfilePath("tools/loadgen/jobline_loadgen"),
        "--server=" + server_->address()};
    argv.insert(argv.end(), flags.begin(), flags.end());
    absl::StatusOr<CommandResult> result = RunCommand(argv);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : CommandResult();
  }

  // Runs `method` for 1 s after 0.2 s of warmup, 4 in flight, with --json,
  // and returns the parsed figures after checking the run succeeded.
  nlohmann::json RunClean(const std::string& method) {
    const CommandResult run =
        Loadgen({"--method=" + method, "--duration_s=1", "--warmup_s=0.2",
                 "--concurrency=4", "--json"});
    EXPECT_EQ(run.exit_code, 0) << run.err;
    const nlohmann::json figures = nlohmann::json::parse(run.out, nullptr,
                                                         /*allow_exceptions=*/
                                                         false);
    EXPECT_TRUE(figures.is_object()) << run.out;
    return figures.is_object() ? figures : nlohmann::json::object();
  }

  // Jobs of `status` on the server ("" for every job).
  int64_t CountJobs(const std::string& status) {
    v2::ListJobsRequest request;
    request.set_status(status);
    absl::StatusOr<v2::ListJobsResponse> list = client_->ListJobs(request);
    EXPECT_TRUE(list.ok()) << list.status();
    return list.ok() ? list->count() : -1;
  }

  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<JobClient> client_;
};

// The figures of a run without errors: some calls, ordered percentiles and
// a rate that is the calls over the one second measured.
void ExpectSaneFigures(const nlohmann::json& figures,
                       const std::string& method) {
  EXPECT_EQ(figures.value("method", ""), method);
  const int64_t calls = figures.value("calls", int64_t{-1});
  EXPECT_GT(calls, 0);
  EXPECT_EQ(figures.value("errors", int64_t{-1}), 0);
  EXPECT_EQ(figures.value("warmup_errors", int64_t{-1}), 0);
  EXPECT_EQ(figures["errors_by_code"], nlohmann::json::object());
  EXPECT_EQ(figures.value("first_error", "?"), "");
  EXPECT_DOUBLE_EQ(figures.value("duration_s", 0.0), 1.0);
  EXPECT_DOUBLE_EQ(figures.value("calls_per_s", 0.0),
                   static_cast<double>(calls));
  const int64_t p50 = figures.value("p50_us", int64_t{-1});
  const int64_t p90 = figures.value("p90_us", int64_t{-1});
  const int64_t p99 = figures.value("p99_us", int64_t{-1});
  const int64_t max = figures.value("max_us", int64_t{-1});
  EXPECT_GT(p50, 0);
  EXPECT_LE(p50, p90);
  EXPECT_LE(p90, p99);
  EXPECT_LE(p99, max);
  EXPECT_EQ(figures.value("concurrency", 0), 4);
  EXPECT_EQ(figures.value("threads", 0), 2);
  EXPECT_EQ(figures.value("channels", 0), 2);
}

TEST_F(LoadgenSmoke, GetReadsTheJobItCreated) {
  ExpectSaneFigures(RunClean("get"), "get");
  // The one job made to be read.
  EXPECT_EQ(CountJobs(""), 1);
}

TEST_F(LoadgenSmoke, CreateMakesAJobPerCall) {
  const nlohmann::json figures = RunClean("create");
  ExpectSaneFigures(figures, "create");
  // Calls of the warmup and calls ending after the window made jobs too.
  EXPECT_GE(CountJobs("CREATED"), figures.value("calls", int64_t{0}));
}

TEST_F(LoadgenSmoke, ListPagesTheFilteredJobs) {
  ExpectSaneFigures(RunClean("list"), "list");
}

TEST_F(LoadgenSmoke, CycleFinishesEveryJobItCreates) {
  const nlohmann::json figures = RunClean("cycle");
  ExpectSaneFigures(figures, "cycle");
  // Every job made was leased and finished: none is left waiting.
  const int64_t all = CountJobs("");
  EXPECT_GE(all, figures.value("calls", int64_t{0}));
  EXPECT_EQ(CountJobs("SUCCESS"), all);
}

TEST_F(LoadgenSmoke, PrintsOneLineOfFigures) {
  const CommandResult run =
      Loadgen({"--method=get", "--duration_s=0.5", "--warmup_s=0",
               "--concurrency=2", "--threads=1"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, StartsWith("method=get calls_per_s="));
  EXPECT_THAT(run.out, HasSubstr(" errors=0 calls="));
  EXPECT_THAT(run.out, HasSubstr(" duration_s=0.5 concurrency=2 threads=1 "
                                 "channels=1\n"));
  EXPECT_EQ(std::count(run.out.begin(), run.out.end(), '\n'), 1);
}

TEST_F(LoadgenSmoke, CountsErrorsByCodeAndKeepsTheFirstMessage) {
  const CommandResult run =
      Loadgen({"--method=get", "--job_id=987654", "--duration_s=0.5",
               "--warmup_s=0", "--concurrency=2", "--json"});
  EXPECT_EQ(run.exit_code, 1);
  const nlohmann::json figures =
      nlohmann::json::parse(run.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(figures.is_object()) << run.out;
  const int64_t errors = figures.value("errors", int64_t{0});
  EXPECT_GT(errors, 0);
  EXPECT_EQ(figures.value("calls", int64_t{-1}), 0);
  EXPECT_EQ(figures["errors_by_code"], nlohmann::json({{"NOT_FOUND", errors}}));
  EXPECT_THAT(figures.value("first_error", ""), StartsWith("NOT_FOUND: "));
  EXPECT_THAT(figures.value("first_error", ""), HasSubstr("987654"));
  EXPECT_THAT(run.err, HasSubstr("jobline_loadgen: first error: NOT_FOUND: "));
}

TEST_F(LoadgenSmoke, RefusesAnUnknownMethod) {
  const CommandResult run = Loadgen({"--method=watch"});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr("--method must be one of get, create, list, "
                                 "cycle, not \"watch\""));
  EXPECT_EQ(run.out, "");
}

// The watch benchmark, small: 50 streams on 5 jobs updated for 2 s.
TEST_F(LoadgenSmoke, WatchDeliversEveryFinalState) {
  absl::StatusOr<CommandResult> result =
      RunCommand({RunfilePath("tools/loadgen/jobline_watchbench"),
                  "--server=" + server_->address(), "--watchers=50", "--jobs=5",
                  "--duration_s=2", "--channels=4", "--json"});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit_code, 0) << result->err;
  const nlohmann::json figures =
      nlohmann::json::parse(result->out, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(figures.is_object()) << result->out;

  EXPECT_EQ(figures.value("watchers", 0), 50);
  EXPECT_EQ(figures.value("jobs", 0), 5);
  EXPECT_EQ(figures.value("opened", 0), 50);
  EXPECT_EQ(figures.value("missing_final", -1), 0);
  EXPECT_EQ(figures.value("stream_errors", -1), 0);
  EXPECT_EQ(figures["stream_errors_by_code"], nlohmann::json::object());
  EXPECT_EQ(figures.value("update_errors", int64_t{-1}), 0);
  EXPECT_EQ(figures.value("finish_errors", int64_t{-1}), 0);
  EXPECT_EQ(figures.value("unstamped", int64_t{-1}), 0);
  EXPECT_EQ(figures.value("first_error", "?"), "");
  // At most 10 updates a second for 2 s on each of the 5 jobs.
  const int64_t updates = figures.value("updates", int64_t{-1});
  EXPECT_GT(updates, 0);
  EXPECT_LE(updates, 100);
  // Each of the 10 watchers of a job got every update of it after the
  // snapshot (update 0), and the final one: updates + 5 finals, 10 times.
  const int64_t delivered = figures.value("updates_delivered", int64_t{-1});
  EXPECT_EQ(delivered, 10 * (updates + 5));
  // A snapshot and the final state at least, one message an update at
  // most.
  const int64_t messages = figures.value("messages", int64_t{-1});
  EXPECT_GE(messages, 100);
  EXPECT_LE(messages, 50 + delivered);
  EXPECT_LE(figures.value("delay_p50_ms", -1.0),
            figures.value("delay_p99_ms", -1.0));
  EXPECT_LE(figures.value("delay_p99_ms", -1.0),
            figures.value("delay_max_ms", -1.0));
  EXPECT_GT(figures.value("delay_max_ms", 0.0), 0.0);
  // Without --server_pid no memory is measured.
  EXPECT_TRUE(figures["rss_before_kib"].is_null());
  EXPECT_TRUE(figures["kib_per_watcher"].is_null());

  // The jobs ended as the writer finished them.
  EXPECT_EQ(CountJobs("SUCCESS"), 5);
  EXPECT_EQ(CountJobs(""), 5);
}

TEST_F(LoadgenSmoke, WatchBenchRefusesMoreJobsThanWatchers) {
  absl::StatusOr<CommandResult> result = RunCommand(
      {RunfilePath("tools/loadgen/jobline_watchbench"),
       "--server=" + server_->address(), "--watchers=3", "--jobs=4"});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit_code, 2);
  EXPECT_THAT(result->err, HasSubstr("--jobs must be 1 to --watchers"));
  EXPECT_EQ(result->out, "");
  EXPECT_EQ(CountJobs(""), 0);
}

}  // namespace
}  // namespace jobline
