// jobline_rest: the REST face of Jobline as a process of its own, in front
// of any Jobline gRPC address.
//
// It serves /api/v2/ (server/rest/rest_server.h) on --host:--http_port and
// forwards every call to --grpc_target over an insecure channel. SIGTERM or
// SIGINT stops it. Once serving it prints one line to stdout,
//   jobline: serving REST on <host>:<port> (gRPC target <target>)
// with the port actually bound (--http_port=0 picks a free one). The body
// and stream limits and the slow-client bounds are job_server's flags of the
// same names (server/rest/rest_flags.h).

#include <signal.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gflags/gflags.h"
#include "glog/logging.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "server/rest/rest_flags.h"
#include "server/rest/rest_server.h"

DEFINE_string(grpc_target, "localhost:50051",
              "Address of the Jobline gRPC server the calls go to.");
DEFINE_string(host, "0.0.0.0", "Address the REST port listens on.");
DEFINE_int32(http_port, 8000, "REST port; 0 picks a free port.");
DEFINE_string(time_zone, "UTC",
              "Time zone in which timestamps are shown (an IANA name, e.g. "
              "America/New_York).");

namespace jobline {
namespace rest {
namespace {

void BlockStopSignals(sigset_t* signals) {
  sigemptyset(signals);
  sigaddset(signals, SIGTERM);
  sigaddset(signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, signals, nullptr);
}

int Serve(const sigset_t& stop_signals) {
  if (FLAGS_http_port < 0 || FLAGS_http_port > 65535) {
    std::cerr << "jobline_rest: --http_port must be 0 to 65535\n";
    return 2;
  }
  if (FLAGS_grpc_target.empty()) {
    std::cerr << "jobline_rest: --grpc_target must not be empty\n";
    return 2;
  }
  if (absl::Status flags = CheckRestFlags(); !flags.ok()) {
    std::cerr << "jobline_rest: " << flags.message() << "\n";
    return 2;
  }
  RestServerOptions options;
  options.host = FLAGS_host;
  options.port = FLAGS_http_port;
  ApplyRestFlags(options);
  if (!absl::LoadTimeZone(FLAGS_time_zone, &options.transcoder.zone)) {
    std::cerr << "jobline_rest: unknown --time_zone \"" << FLAGS_time_zone
              << "\"\n";
    return 2;
  }

  // gRPC's reconnect backoff grows to 120 s by default: a backend that
  // comes back after an outage would answer 503 for that long. It is
  // capped at a second instead.
  grpc::ChannelArguments channel_args;
  channel_args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  channel_args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  channel_args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  RestServer server(
      grpc::CreateCustomChannel(
          FLAGS_grpc_target, grpc::InsecureChannelCredentials(), channel_args),
      options);
  if (absl::Status started = server.Start(); !started.ok()) {
    std::cerr << "jobline_rest: " << started.message()
              << " (is the port in use?)\n";
    return 1;
  }
  std::cout << "jobline: serving REST on " << FLAGS_host << ":" << server.port()
            << " (gRPC target " << FLAGS_grpc_target << ")" << std::endl;

  int received = 0;
  sigwait(&stop_signals, &received);
  LOG(INFO) << "received signal " << received << "; shutting down";
  server.Stop();
  return 0;
}

}  // namespace
}  // namespace rest
}  // namespace jobline

int main(int argc, char** argv) {
  sigset_t stop_signals;
  jobline::rest::BlockStopSignals(&stop_signals);
  FLAGS_logtostderr = true;
  gflags::SetUsageMessage(
      "The REST face of Jobline in front of a gRPC address.\n"
      "Usage: jobline_rest [--grpc_target=HOST:PORT] [--http_port=N] ...");
  gflags::ParseCommandLineFlags(&argc, &argv, /*remove_flags=*/true);
  google::InitGoogleLogging(argv[0]);
  if (argc > 1) {
    std::cerr << "jobline_rest: unexpected argument \"" << argv[1] << "\"\n";
    return 2;
  }
  return jobline::rest::Serve(stop_signals);
}
