#include "tests/server_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <utility>

#include "absl/memory/memory.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"

namespace jobline {
namespace testing {
namespace {

// Forks and execs `argv` with stdin from /dev/null and stdout/stderr into
// new pipes, whose read ends are returned.
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv,
                            int* stdout_fd, int* stderr_fd) {
  int out[2];
  int err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", strerror(errno)));
  }
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    const int null_fd = open("/dev/null", O_RDONLY);
    dup2(null_fd, 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    // The test runner blocks no signals we need, but a parent might.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    std::vector<char*> args;
    for (const std::string& arg : argv) {
      args.push_back(const_cast<char*>(arg.c_str()));
    }
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  *stdout_fd = out[0];
  *stderr_fd = err[0];
  return pid;
}

// Reads what `fd` has into `buffer`; closes it and sets it to -1 at EOF.
void Drain(int& fd, std::string& buffer) {
  char chunk[4096];
  const ssize_t n = read(fd, chunk, sizeof(chunk));
  if (n > 0) {
    buffer.append(chunk, static_cast<size_t>(n));
  } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
    close(fd);
    fd = -1;
  }
}

// Polls the open descriptors of `fds` once for at most `timeout` and drains
// the readable ones. Returns false when none is open.
bool PumpOnce(int& out_fd, std::string& out, int& err_fd, std::string& err,
              absl::Duration timeout) {
  pollfd fds[2];
  int count = 0;
  if (out_fd >= 0) fds[count++] = {out_fd, POLLIN, 0};
  if (err_fd >= 0) fds[count++] = {err_fd, POLLIN, 0};
  if (count == 0) return false;
  const int ready =
      poll(fds, count, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
  if (ready <= 0) return true;
  for (int i = 0; i < count; ++i) {
    if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
    if (fds[i].fd == out_fd) {
      Drain(out_fd, out);
    } else {
      Drain(err_fd, err);
    }
  }
  return true;
}

int ExitCode(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return -1;
}

// Waits for `pid` until `deadline`; kills it then. Returns the exit code,
// or DEADLINE_EXCEEDED.
absl::StatusOr<int> WaitUntil(pid_t pid, absl::Time deadline,
                              const std::function<void()>& pump) {
  while (true) {
    int wait_status = 0;
    const pid_t done = waitpid(pid, &wait_status, WNOHANG);
    if (done == pid) return ExitCode(wait_status);
    if (absl::Now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &wait_status, 0);
      return absl::DeadlineExceededError(
          absl::StrCat("process ", pid, " did not exit in time"));
    }
    pump();
  }
}

}  // namespace

std::string RunfilePath(const std::string& workspace_relative) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  return absl::StrCat(srcdir == nullptr ? "." : srcdir, "/",
                      workspace == nullptr ? "jobline" : workspace, "/",
                      workspace_relative);
}

std::string NewTempDir(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string pattern =
      absl::StrCat(tmp == nullptr ? "/tmp" : tmp, "/", name, "-XXXXXX");
  char* made = mkdtemp(pattern.data());
  return made == nullptr ? "" : std::string(made);
}

absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv,
                                         absl::Duration timeout) {
  int out_fd = -1;
  int err_fd = -1;
  absl::StatusOr<pid_t> pid = Spawn(argv, &out_fd, &err_fd);
  if (!pid.ok()) return pid.status();
  CommandResult result;
  const absl::Time deadline = absl::Now() + timeout;
  while (PumpOnce(out_fd, result.out, err_fd, result.err,
                  absl::Milliseconds(100)) &&
         absl::Now() < deadline) {
  }
  absl::StatusOr<int> code =
      WaitUntil(*pid, deadline, [] { absl::SleepFor(absl::Milliseconds(10)); });
  if (out_fd >= 0) close(out_fd);
  if (err_fd >= 0) close(err_fd);
  if (!code.ok()) {
    return absl::DeadlineExceededError(
        absl::StrCat(absl::StrJoin(argv, " "), " did not finish"));
  }
  result.exit_code = *code;
  return result;
}

ServerProcess::ServerProcess(std::string binary)
    : ServerProcess(
          binary.empty() ? RunfilePath("server/job_server") : std::move(binary),
          "jobline: serving gRPC on ",
          {"--grpc_port=0", "--host=127.0.0.1", "--http_port=0"}) {}

ServerProcess::ServerProcess(std::string binary, std::string serving_line,
                             std::vector<std::string> default_flags)
    : binary_(std::move(binary)),
      serving_line_(std::move(serving_line)),
      default_flags_(std::move(default_flags)) {}

std::unique_ptr<ServerProcess> ServerProcess::RestProxy() {
  return absl::WrapUnique(new ServerProcess(
      RunfilePath("server/rest/jobline_rest"), "jobline: serving REST on ",
      {"--host=127.0.0.1", "--http_port=0"}));
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (stdout_fd_ >= 0) close(stdout_fd_);
  if (stderr_fd_ >= 0) close(stderr_fd_);
}

absl::Status ServerProcess::Start(const std::vector<std::string>& flags,
                                  const std::vector<std::string>& wrapper) {
  std::vector<std::string> argv = wrapper;
  argv.push_back(binary_);
  argv.insert(argv.end(), flags.begin(), flags.end());
  for (const std::string& flag : default_flags_) {
    const std::string name = flag.substr(0, flag.find('=') + 1);
    const bool set = std::any_of(flags.begin(), flags.end(),
                                 [&name](const std::string& given) {
                                   return absl::StartsWith(given, name);
                                 });
    if (!set) argv.push_back(flag);
  }

  stdout_text_.clear();
  stderr_text_.clear();
  absl::StatusOr<pid_t> pid = Spawn(argv, &stdout_fd_, &stderr_fd_);
  if (!pid.ok()) return pid.status();
  pid_ = *pid;

  // Wait for the serving line, or for the process to end.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < deadline) {
    const size_t at = stdout_text_.find(serving_line_);
    if (at != std::string::npos) {
      const size_t begin = at + serving_line_.size();
      const size_t end = stdout_text_.find(' ', begin);
      if (end != std::string::npos) {
        address_ = stdout_text_.substr(begin, end - begin);
        return absl::OkStatus();
      }
    }
    if (!Pump(absl::Milliseconds(100))) break;
  }
  absl::StatusOr<int> code = Stop(SIGKILL);
  return absl::FailedPreconditionError(absl::StrCat(
      std::filesystem::path(binary_).filename().string(),
      " did not start (exit ", code.ok() ? *code : -1, "): ", stderr_text_));
}

bool ServerProcess::Pump(absl::Duration timeout) {
  return PumpOnce(stdout_fd_, stdout_text_, stderr_fd_, stderr_text_, timeout);
}

absl::StatusOr<int> ServerProcess::Stop(int signal_number) {
  if (pid_ <= 0) return absl::FailedPreconditionError("not running");
  kill(pid_, signal_number);
  absl::StatusOr<int> code =
      WaitUntil(pid_, absl::Now() + absl::Seconds(30),
                [this] { Pump(absl::Milliseconds(10)); });
  // Collect what is left in the pipes.
  while (Pump(absl::Milliseconds(10))) {
  }
  pid_ = -1;
  return code;
}

}  // namespace testing
}  // namespace jobline
