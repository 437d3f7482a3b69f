// ServerProcess and RunCommand: test helpers that run Jobline's binaries as
// real processes.
//
// ServerProcess starts bazel-bin's job_server (found in the test's
// runfiles) on a free port, waits for its "serving gRPC on" line and stops
// it with a signal; ServerProcess::RestProxy() does the same for the
// standalone REST face, jobline_rest, and its "serving REST on" line.
// RunCommand runs a program to completion and captures its output, e.g. jobctl.
//
// Thread safety: a ServerProcess is used from one thread.

#ifndef JOBLINE_TESTS_SERVER_PROCESS_H_
#define JOBLINE_TESTS_SERVER_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace jobline {
namespace testing {

// The absolute path of a file in the test's runfiles, e.g.
// RunfilePath("server/job_server").
std::string RunfilePath(const std::string& workspace_relative);

// A fresh folder under the test's temporary folder.
std::string NewTempDir(const std::string& name);

// What a finished process left.
struct CommandResult {
  int exit_code = -1;  // 128 + signal number if it was killed.
  std::string out;
  std::string err;
};

// Runs `argv` (argv[0] a path) with an empty stdin and waits at most
// `timeout` for it; a process still running then is killed and
// DEADLINE_EXCEEDED returned.
absl::StatusOr<CommandResult> RunCommand(
    const std::vector<std::string>& argv,
    absl::Duration timeout = absl::Seconds(30));

class ServerProcess {
 public:
  // Runs the job_server at `binary` (default: the one in the runfiles).
  explicit ServerProcess(std::string binary = "");
  // Runs the runfiles' jobline_rest; Start() adds --http_port=0 and
  // --host=127.0.0.1 unless its flags set them, and address() is then the
  // REST address.
  static std::unique_ptr<ServerProcess> RestProxy();
  ~ServerProcess();  // Kills a server still running.

  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // Starts job_server with `flags` plus --grpc_port=0 and --host=127.0.0.1
  // (unless `flags` sets them), prefixed by `wrapper` (e.g. {"setpriv",
  // ...}) when non-empty. Waits until it serves. If it exits first, returns
  // FAILED_PRECONDITION with its exit code and stderr.
  absl::Status Start(const std::vector<std::string>& flags,
                     const std::vector<std::string>& wrapper = {});

  // "127.0.0.1:<port>" of the running server: its gRPC address, or a
  // RestProxy()'s REST address.
  const std::string& address() const { return address_; }

  // Sends `signal_number` and waits for the exit; returns the exit code
  // (128 + signal when the signal killed it).
  absl::StatusOr<int> Stop(int signal_number);

  // Everything the server wrote to stderr so far (read after Stop).
  const std::string& stderr_text() const { return stderr_text_; }

 private:
  ServerProcess(std::string binary, std::string serving_line,
                std::vector<std::string> default_flags);

  // Reads what is available on the server's pipes into the buffers, for at
  // most `timeout`. Returns false when both pipes are closed.
  bool Pump(absl::Duration timeout);

  const std::string binary_;
  // The stdout line that says it serves, followed by the address.
  const std::string serving_line_;
  // Flags ("--name=value") passed unless the caller sets the same name.
  const std::vector<std::string> default_flags_;
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  int stderr_fd_ = -1;
  std::string address_;
  std::string stdout_text_;
  std::string stderr_text_;
};

}  // namespace testing
}  // namespace jobline

#endif  // JOBLINE_TESTS_SERVER_PROCESS_H_
