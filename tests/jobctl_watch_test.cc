// End-to-end tests of `jobctl watch`: the real job_server and jobctl
// binaries, with the test as the job's worker, and a server restart while
// jobctl watches.

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/job_client.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "jobline/v2/worker.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/server_process.h"

namespace jobline {
namespace {

using ::jobline::testing::CommandResult;
using ::jobline::testing::NewTempDir;
using ::jobline::testing::RunCommand;
using ::jobline::testing::RunfilePath;
using ::jobline::testing::ServerProcess;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kPopulate[] = "populate_captures_collection";
constexpr char kSleepy[] = "\xF0\x9F\x98\xB4";
constexpr char kDizzy[] = "\xF0\x9F\x98\xB5\xE2\x80\x8D\xF0\x9F\x92\xAB";
constexpr char kParty[] = "\xF0\x9F\xA5\xB3";

// A program running in the background whose output is collected as it
// comes, so that a test can wait for a line before it acts.
class BackgroundCommand {
 public:
  explicit BackgroundCommand(const std::vector<std::string>& argv) {
    int out[2];
    int err[2];
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      const int null_fd = open("/dev/null", O_RDONLY);
      dup2(null_fd, 0);
      dup2(out[1], 1);
      dup2(err[1], 2);
      std::vector<char*> args;
      for (const std::string& arg : argv) {
        args.push_back(const_cast<char*>(arg.c_str()));
      }
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    close(out[1]);
    close(err[1]);
    reader_ = std::thread(
        [this, out_fd = out[0], err_fd = err[0]] { Read(out_fd, err_fd); });
  }

  ~BackgroundCommand() {
    if (pid_ > 0 && exit_code_ < 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (reader_.joinable()) reader_.join();
  }

  // Waits until stdout (or stderr) holds `count` occurrences of `text`;
  // false if it does not within `timeout` or the program ends first.
  bool WaitForOut(const std::string& text, int count = 1,
                  absl::Duration timeout = absl::Seconds(30)) {
    return WaitFor(&BackgroundCommand::out_, text, count, timeout);
  }
  bool WaitForErr(const std::string& text, int count = 1,
                  absl::Duration timeout = absl::Seconds(30)) {
    return WaitFor(&BackgroundCommand::err_, text, count, timeout);
  }

  // Waits for the exit and returns its code; -1 if the program is still
  // running after `timeout` (it is then killed).
  int Wait(absl::Duration timeout = absl::Seconds(60)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (exit_code_ < 0 && pid_ > 0) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exit_code_ =
            WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        break;
      }
      if (absl::Now() > deadline) return -1;
      absl::SleepFor(absl::Milliseconds(10));
    }
    if (reader_.joinable()) reader_.join();
    return exit_code_;
  }

  std::string out() const {
    absl::MutexLock lock(&mu_);
    return out_;
  }
  std::string err() const {
    absl::MutexLock lock(&mu_);
    return err_;
  }

 private:
  // Copies both pipes into the buffers until both are closed.
  void Read(int out_fd, int err_fd) {
    pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
    int open_fds = 2;
    while (open_fds > 0) {
      if (poll(fds, 2, 1000) < 0 && errno != EINTR) break;
      for (int i = 0; i < 2; ++i) {
        if (fds[i].fd < 0 || fds[i].revents == 0) continue;
        char chunk[4096];
        const ssize_t n = read(fds[i].fd, chunk, sizeof(chunk));
        if (n > 0) {
          absl::MutexLock lock(&mu_);
          (i == 0 ? out_ : err_).append(chunk, static_cast<size_t>(n));
        } else if (n == 0 || errno != EINTR) {
          close(fds[i].fd);
          fds[i].fd = -1;
          --open_fds;
        }
      }
    }
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }

  // Occurrences of `text` in `buffer`.
  static int Count(const std::string& buffer, const std::string& text) {
    int found = 0;
    for (size_t at = buffer.find(text); at != std::string::npos;
         at = buffer.find(text, at + text.size())) {
      ++found;
    }
    return found;
  }

  // `buffer` names out_ or err_, which are read with mu_ held.
  bool WaitFor(std::string BackgroundCommand::*buffer, const std::string& text,
               int count, absl::Duration timeout) {
    const auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return Count(this->*buffer, text) >= count || closed_;
    };
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
    return Count(this->*buffer, text) >= count;
  }

  pid_t pid_ = -1;
  int exit_code_ = -1;
  std::thread reader_;
  mutable absl::Mutex mu_;
  std::string out_ ABSL_GUARDED_BY(mu_);
  std::string err_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

// `text` with each log line's "[YYYY-MM-DD HH:MM:SS]" replaced by "[T]".
std::string WithoutTimes(const std::string& text) {
  std::string result;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.size() > 21 && line[0] == '[' && line[20] == ']' &&
        absl::ascii_isdigit(line[1]) && line[5] == '-' && line[14] == ':') {
      absl::StrAppend(&result, "[T]", line.substr(21), "\n");
    } else if (!line.empty()) {
      absl::StrAppend(&result, line, "\n");
    }
  }
  return result;
}

google::protobuf::Duration Seconds(int64_t seconds) {
  google::protobuf::Duration duration;
  duration.set_seconds(seconds);
  return duration;
}

// The test's worker of populate jobs, over the generated stub.
class Worker {
 public:
  explicit Worker(const std::string& address)
      : stub_(v2::WorkerService::NewStub(grpc::CreateChannel(
            address, grpc::InsecureChannelCredentials()))) {}

  // Leases the one pending populate job.
  v2::Lease Lease() {
    v2::LeaseJobsRequest request;
    request.set_worker_id("test-worker");
    request.add_job_types(kPopulate);
    request.set_max_jobs(1);
    *request.mutable_lease_duration() = Seconds(60);
    v2::LeaseJobsResponse response;
    grpc::ClientContext context;
    const grpc::Status status = stub_->LeaseJobs(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.leases_size(), 1);
    return response.leases_size() == 1 ? response.leases(0) : v2::Lease();
  }

  // The populate stage at `progress`, with a log line.
  void Report(const v2::Lease& lease, double progress,
              const std::string& message) {
    v2::ReportProgressRequest request;
    request.set_lease_id(lease.lease_id());
    request.set_job_id(lease.job().id());
    v2::StageUpdate* stage = request.add_stages();
    stage->set_name("Populate captures collection");
    stage->set_status(v2::STARTED);
    stage->set_progress(progress);
    v2::WorkerLogLine* line = request.add_logs();
    line->set_level("INFO");
    line->set_message(message);
    v2::ReportProgressResponse response;
    grpc::ClientContext context;
    const grpc::Status status =
        stub_->ReportProgress(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
  }

  // Finishes with SUCCESS, the populate stage done.
  void Finish(const v2::Lease& lease) {
    v2::FinishJobRequest request;
    request.set_lease_id(lease.lease_id());
    request.set_job_id(lease.job().id());
    request.set_status(v2::SUCCESS);
    v2::StageUpdate* stage = request.add_stages();
    stage->set_name("Populate captures collection");
    stage->set_status(v2::SUCCESS);
    stage->set_progress(1.0);
    v2::FinishJobResponse response;
    grpc::ClientContext context;
    const grpc::Status status = stub_->FinishJob(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
  }

 private:
  std::unique_ptr<v2::WorkerService::Stub> stub_;
};

class JobctlWatch : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = NewTempDir("watch");
    ASSERT_FALSE(dir_.empty());
  }

  // Starts the server on the test's database, with delay steps of 0.3 s;
  // `port` 0 picks a free one.
  void StartServer(int port = 0) {
    server_ = std::make_unique<ServerProcess>();
    const absl::Status started = server_->Start(
        {"--db=" + dir_ + "/jobline.db",
         "--seed_catalog=" + RunfilePath("tools/demo-catalog.json"),
         "--synchronous=normal", "--delay_step_ms=300",
         "--shutdown_grace_seconds=1", absl::StrCat("--grpc_port=", port)});
    ASSERT_TRUE(started.ok()) << started;
    client_ =
        std::make_unique<JobClient>(JobClient::Connect(server_->address()));
  }

  void StopServer() {
    client_.reset();
    absl::StatusOr<int> code = server_->Stop(SIGTERM);
    ASSERT_TRUE(code.ok()) << code.status();
    EXPECT_EQ(*code, 0) << server_->stderr_text();
  }

  int64_t Create(const std::string& type, int64_t delay) {
    v2::JobInput input;
    input.set_name("Watched job");
    input.set_project_id(16);
    input.set_source_image_collection_id(111);
    input.set_job_type_key(type);
    input.set_delay(delay);
    absl::StatusOr<v2::Job> job = client_->CreateJob(input, false);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? job->id() : 0;
  }

  // jobctl's command line against `address` (default: the server's).
  std::vector<std::string> Jobctl(std::vector<std::string> args,
                                  const std::string& address = "") {
    args.insert(args.begin(), {RunfilePath("client/jobctl"), "--server",
                               address.empty() ? server_->address() : address});
    return args;
  }

  // The job's whole log, oldest first, times replaced.
  std::string JobLog(int64_t id) {
    absl::StatusOr<v2::Job> job = client_->GetJob(id, 5000);
    EXPECT_TRUE(job.ok()) << job.status();
    std::string log;
    if (!job.ok()) return log;
    for (int i = job->logs().stdout_size(); i > 0; --i) {
      absl::StrAppend(&log, job->logs().stdout(i - 1), "\n");
    }
    return WithoutTimes(log);
  }

  std::string dir_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<JobClient> client_;
};

// `lines`, each ended by a newline.
std::string Lines(const std::vector<std::string>& lines) {
  std::string text;
  for (const std::string& line : lines) absl::StrAppend(&text, line, "\n");
  return text;
}

// The log lines of jobctl's plain output (those that are not "[seq N]").
std::string LogLines(const std::string& out) {
  std::string log;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    if (!absl::StartsWith(line, "[seq ")) absl::StrAppend(&log, line, "\n");
  }
  return log;
}

TEST_F(JobctlWatch, FollowsADelayJobStepByStepToSuccess) {
  StartServer();
  const int64_t id = Create(kPopulate, /*delay=*/3);
  BackgroundCommand watch(Jobctl({"watch", absl::StrCat(id)}));
  ASSERT_TRUE(watch.WaitForOut("[seq 1] CREATED")) << watch.err();

  // The runner's delay steps, then the job waits for a worker.
  ASSERT_TRUE(client_->RunJob(id).ok());
  ASSERT_TRUE(watch.WaitForOut("is waiting for a worker")) << watch.out();
  Worker worker(server_->address());
  const v2::Lease lease = worker.Lease();
  ASSERT_TRUE(watch.WaitForOut("from PENDING to STARTED", 2)) << watch.out();
  worker.Finish(lease);

  EXPECT_EQ(watch.Wait(), 0) << watch.err();
  const std::string sleepy = absl::StrCat("(Delay: 3, Mood: ", kSleepy, ")");
  const std::string dizzy = absl::StrCat("(Delay: 3, Mood: ", kDizzy, ")");
  const std::string party = absl::StrCat("(Delay: 3, Mood: ", kParty, ")");
  EXPECT_EQ(WithoutTimes(watch.out()),
            Lines({
                "[seq 1] CREATED  Delay 0% CREATED " + sleepy,
                "[seq 2] PENDING",
                "[seq 3] STARTED",
                "[T] INFO Running job #1 \"Watched job\" (PENDING)",
                "[T] INFO Changing status of job 1 from PENDING to STARTED",
                "[seq 4] STARTED  Delay 33% " + dizzy,
                "[T] INFO Delaying job #1: 1 of 3 seconds",
                "[seq 5] STARTED  Delay 66% " + dizzy,
                "[T] INFO Delaying job #1: 2 of 3 seconds",
                "[seq 6] PENDING  Delay 100% SUCCESS " + party,
                "[T] INFO Job #1 is waiting for a worker of type "
                "populate_captures_collection",
                "[T] INFO Changing status of job 1 from STARTED to PENDING",
                "[seq 7] STARTED",
                "[T] INFO Running job #1 \"Watched job\" (PENDING)",
                "[T] INFO Changing status of job 1 from PENDING to STARTED",
                "[seq 8] SUCCESS  Delay 100% SUCCESS " + party +
                    "; Populate captures collection 100% SUCCESS",
                "[T] INFO Changing status of job 1 from STARTED to SUCCESS",
                "[T] INFO Finished job #1 \"Watched job\" (SUCCESS)",
            }));
  EXPECT_EQ(watch.err(), "");
  // Every line of the job's log, once.
  EXPECT_EQ(LogLines(WithoutTimes(watch.out())), JobLog(id));
  StopServer();
}

TEST_F(JobctlWatch, ACancelledJobExits2AndJsonHasEveryChange) {
  StartServer();
  const int64_t id = Create(kPopulate, 0);
  BackgroundCommand watch(Jobctl({"watch", absl::StrCat(id), "--json"}));
  ASSERT_TRUE(watch.WaitForOut("\n")) << watch.err();
  ASSERT_TRUE(client_->CancelJob(id).ok());
  EXPECT_EQ(watch.Wait(), 2) << watch.err();
  EXPECT_EQ(watch.err(), "");

  std::vector<nlohmann::ordered_json> messages;
  for (absl::string_view line :
       absl::StrSplit(watch.out(), '\n', absl::SkipEmpty())) {
    messages.push_back(nlohmann::ordered_json::parse(line));
  }
  ASSERT_EQ(messages.size(), 2u) << watch.out();
  EXPECT_EQ(messages[0]["sequence"], 1);
  EXPECT_EQ(messages[0]["snapshot"], true);
  EXPECT_EQ(messages[0]["job"]["id"], id);
  EXPECT_EQ(messages[0]["job"]["status"], "CREATED");
  EXPECT_EQ(messages[0]["job"]["details"],
            absl::StrCat("http://localhost:8000/api/v2/jobs/", id, "/"));
  EXPECT_EQ(messages[0]["status_changes"].dump(), "[]");
  EXPECT_EQ(messages[0]["logs"].dump(), "[]");

  EXPECT_EQ(messages[1]["sequence"], 2);
  EXPECT_EQ(messages[1]["snapshot"], false);
  EXPECT_EQ(messages[1]["job"]["status"], "REVOKED");
  ASSERT_EQ(messages[1]["status_changes"].size(), 1u);
  EXPECT_EQ(messages[1]["status_changes"][0]["sequence"], 2);
  EXPECT_EQ(messages[1]["status_changes"][0]["status"], "REVOKED");
  // A naive ISO-8601 time, as the document's times.
  EXPECT_THAT(
      messages[1]["status_changes"][0]["changed_at"].get<std::string>(),
      ::testing::MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:"
                              "[0-9]{2}(\\.[0-9]{6})?"));
  ASSERT_EQ(messages[1]["logs"].size(), 1u);
  EXPECT_EQ(messages[1]["logs"][0]["sequence"], 2);
  EXPECT_EQ(messages[1]["logs"][0]["level"], "INFO");
  EXPECT_EQ(WithoutTimes(messages[1]["logs"][0]["text"].get<std::string>()),
            "[T] INFO Changing status of job 1 from CREATED to REVOKED\n");
  StopServer();
}

TEST_F(JobctlWatch, AFailedJobExits1) {
  StartServer();
  // An ML job without a pipeline fails after its delay.
  const int64_t id = Create("ml", /*delay=*/1);
  BackgroundCommand watch(Jobctl({"watch", absl::StrCat(id)}));
  ASSERT_TRUE(watch.WaitForOut("[seq 1] CREATED")) << watch.err();
  ASSERT_TRUE(client_->RunJob(id).ok());
  EXPECT_EQ(watch.Wait(), 1) << watch.err();
  EXPECT_EQ(
      WithoutTimes(watch.out()),
      Lines({
          absl::StrCat("[seq 1] CREATED  Delay 0% CREATED (Delay: 1, Mood: ",
                       kSleepy, ")"),
          "[seq 2] PENDING",
          "[seq 3] STARTED",
          "[T] INFO Running job #1 \"Watched job\" (PENDING)",
          "[T] INFO Changing status of job 1 from PENDING to STARTED",
          absl::StrCat("[seq 4] FAILURE  Delay 100% SUCCESS (Delay: 1, Mood: ",
                       kParty, ")"),
          "[T] ERROR no pipeline specified",
          "[T] INFO Changing status of job 1 from STARTED to FAILURE",
          "[T] INFO Finished job #1 \"Watched job\" (FAILURE)",
      }));
  EXPECT_EQ(watch.err(), "");
  StopServer();
}

TEST_F(JobctlWatch, AnUnknownJobOrABadCommandLineExits3) {
  StartServer();
  absl::StatusOr<CommandResult> unknown = RunCommand(Jobctl({"watch", "999"}));
  ASSERT_TRUE(unknown.ok()) << unknown.status();
  EXPECT_EQ(unknown->exit_code, 3);
  EXPECT_EQ(unknown->out, "");
  EXPECT_EQ(unknown->err, "jobctl: NOT_FOUND: job 999 not found\n");

  absl::StatusOr<CommandResult> bad_id = RunCommand(Jobctl({"watch", "x"}));
  ASSERT_TRUE(bad_id.ok()) << bad_id.status();
  EXPECT_EQ(bad_id->exit_code, 3);
  EXPECT_EQ(bad_id->err,
            "jobctl: job id must be a positive integer, got \"x\"\n"
            "Run 'jobctl help' for the commands and flags.\n");

  absl::StatusOr<CommandResult> negative =
      RunCommand(Jobctl({"watch", "1", "--after=-1"}));
  ASSERT_TRUE(negative.ok()) << negative.status();
  EXPECT_EQ(negative->exit_code, 3);
  EXPECT_THAT(negative->err,
              StartsWith("jobctl: --after must not be negative\n"));

  absl::StatusOr<CommandResult> unknown_flag =
      RunCommand(Jobctl({"--bogus", "watch", "1"}));
  ASSERT_TRUE(unknown_flag.ok()) << unknown_flag.status();
  EXPECT_EQ(unknown_flag->exit_code, 3);
  EXPECT_THAT(unknown_flag->err, StartsWith("jobctl: unknown flag --bogus\n"));

  // Other commands keep exit status 2 for a bad command line.
  absl::StatusOr<CommandResult> get = RunCommand(Jobctl({"get", "x"}));
  ASSERT_TRUE(get.ok()) << get.status();
  EXPECT_EQ(get->exit_code, 2);
  StopServer();
}

TEST_F(JobctlWatch, ReconnectsAfterAServerRestartWithoutRepeatingALine) {
  StartServer();
  const std::string address = server_->address();
  const int port = std::stoi(address.substr(address.rfind(':') + 1));
  const int64_t id = Create(kPopulate, 0);
  BackgroundCommand watch(Jobctl({"watch", absl::StrCat(id)}));
  ASSERT_TRUE(watch.WaitForOut("[seq 1] CREATED")) << watch.err();
  // Without a delay the job goes to the workers at once.
  ASSERT_TRUE(client_->RunJob(id).ok());
  ASSERT_TRUE(watch.WaitForOut("[seq 2] PENDING")) << watch.out();
  v2::Lease lease;
  {
    Worker worker(address);
    lease = worker.Lease();
    worker.Report(lease, 0.5, "half way");
  }
  ASSERT_TRUE(watch.WaitForOut("INFO half way")) << watch.out();

  // The server stops: jobctl loses its stream and keeps trying.
  StopServer();
  ASSERT_TRUE(watch.WaitForErr("connection lost; reconnecting...\n"))
      << watch.err();

  // The same database on the same port. The worker's lease outlived the
  // restart; what it does next reaches jobctl, whenever it reconnects.
  StartServer(port);
  Worker worker(address);
  worker.Report(lease, 0.5, "after the restart");
  worker.Finish(lease);

  EXPECT_EQ(watch.Wait(), 0) << watch.err();
  EXPECT_EQ(watch.err(), "connection lost; reconnecting...\n");
  EXPECT_EQ(WithoutTimes(watch.out()),
            Lines({
                "[seq 1] CREATED",
                "[seq 2] PENDING",
                "[seq 3] STARTED",
                "[T] INFO Running job #1 \"Watched job\" (PENDING)",
                "[T] INFO Changing status of job 1 from PENDING to STARTED",
                "[seq 4] STARTED  Populate captures collection 50%",
                "[T] INFO half way",
                "[T] INFO after the restart",
                "[seq 6] SUCCESS  Populate captures collection 100% SUCCESS",
                "[T] INFO Changing status of job 1 from STARTED to SUCCESS",
                "[T] INFO Finished job #1 \"Watched job\" (SUCCESS)",
            }));
  EXPECT_EQ(LogLines(WithoutTimes(watch.out())), JobLog(id));
  StopServer();
}

TEST_F(JobctlWatch, GivesUpWithoutAServerAndExits4) {
  // A port nobody listens on: bound, then released.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in bound{};
  bound.sin_family = AF_INET;
  bound.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(bound);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&bound), sizeof(bound)), 0);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length), 0);
  close(fd);
  const std::string address = absl::StrCat("127.0.0.1:", ntohs(bound.sin_port));

  absl::StatusOr<CommandResult> result =
      RunCommand(Jobctl({"watch", "1", "--reconnect_timeout", "1"}, address));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit_code, 4);
  EXPECT_EQ(result->out, "");
  const std::vector<std::string> lines =
      absl::StrSplit(result->err, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << result->err;
  EXPECT_EQ(lines[0], absl::StrCat("cannot reach ", address, "; retrying..."));
  EXPECT_THAT(lines[1],
              StartsWith(absl::StrCat("jobctl: UNAVAILABLE: no connection to ",
                                      address, " for 1s; giving up (")));
}

}  // namespace
}  // namespace jobline
