// empty_server: a gRPC server whose one method does nothing, the transport
// limit of the benchmarks (tools/benchmark).
//
//   empty_server [--host=127.0.0.1] [--grpc_port=0]
//
// It is built and configured as job_server builds its gRPC server
// (server/job_server_main.cc): the synchronous API, the default resource
// quota, the same pollers (--grpc_min_pollers, --grpc_max_pollers,
// --grpc_num_cqs with job_server's defaults), the health service and
// reflection, no port sharing, a 16 MiB request limit and Abseil's
// deadlock detection off unless --mutex_deadlock_detection. So a call of
// EmptyService.Call costs what any unary call of job_server costs before the
// method's own work. Once serving it prints to stdout job_server's line
//   jobline: serving gRPC on <host>:<port> (empty service)
// with the port actually bound, so whatever starts job_server and waits for
// that line (tests/server_process.h) can start this one too. SIGTERM or
// SIGINT stops it (exit 0).

#include <signal.h>

#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gflags/gflags.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "tools/bench/empty.grpc.pb.h"

DEFINE_string(host, "127.0.0.1", "Address the gRPC port listens on.");
DEFINE_int32(grpc_port, 0, "gRPC port; 0 picks a free port.");
// job_server's flags of the same names, with its defaults.
DEFINE_int32(grpc_min_pollers, 1, "As job_server's --grpc_min_pollers.");
DEFINE_int32(grpc_max_pollers, 64, "As job_server's --grpc_max_pollers.");
DEFINE_int32(grpc_num_cqs, 1, "As job_server's --grpc_num_cqs.");
DEFINE_bool(mutex_deadlock_detection, false,
            "Keep Abseil's lock-order checking on, as job_server's flag of "
            "the same name does.");

namespace jobline {
namespace bench {
namespace {

// job_server's --max_request_mb default.
constexpr int kMaxRequestBytes = 16 * 1024 * 1024;

class EmptyServiceImpl final : public EmptyService::Service {
 public:
  grpc::Status Call(grpc::ServerContext* /*context*/,
                    const EmptyRequest* /*request*/,
                    EmptyResponse* /*response*/) override {
    return grpc::Status::OK;
  }
};

sigset_t StopSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  return signals;
}

int Serve() {
  if (FLAGS_grpc_port < 0 || FLAGS_grpc_port > 65535) {
    std::cerr << "empty_server: --grpc_port must be 0 to 65535\n";
    return 2;
  }
  EmptyServiceImpl service;
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  const std::string address = absl::StrCat(FLAGS_host, ":", FLAGS_grpc_port);
  int bound_port = 0;
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(),
                           &bound_port);
  builder.SetMaxReceiveMessageSize(kMaxRequestBytes);
  builder.SetSyncServerOption(grpc::ServerBuilder::NUM_CQS, FLAGS_grpc_num_cqs);
  builder.SetSyncServerOption(grpc::ServerBuilder::MIN_POLLERS,
                              FLAGS_grpc_min_pollers);
  builder.SetSyncServerOption(grpc::ServerBuilder::MAX_POLLERS,
                              FLAGS_grpc_max_pollers);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || bound_port == 0) {
    std::cerr << "empty_server: cannot listen on " << address << "\n";
    return 1;
  }
  std::cout << "jobline: serving gRPC on " << FLAGS_host << ":" << bound_port
            << " (empty service)" << std::endl;

  // Until SIGTERM or SIGINT, blocked in every thread since main().
  const sigset_t signals = StopSignals();
  int received = 0;
  sigwait(&signals, &received);
  server->Shutdown();
  server->Wait();
  return 0;
}

}  // namespace
}  // namespace bench
}  // namespace jobline

int main(int argc, char** argv) {
  const sigset_t signals = jobline::bench::StopSignals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  gflags::SetUsageMessage(
      "A gRPC server with one empty method, for benchmarks.\n"
      "Usage: empty_server [--host=127.0.0.1] [--grpc_port=0]");
  gflags::ParseCommandLineFlags(&argc, &argv, /*remove_flags=*/true);
  // As job_server: calls pay no lock-order checking.
  absl::SetMutexDeadlockDetectionMode(FLAGS_mutex_deadlock_detection
                                          ? absl::OnDeadlockCycle::kAbort
                                          : absl::OnDeadlockCycle::kIgnore);
  if (argc > 1) {
    std::cerr << "empty_server: unexpected argument \"" << argv[1] << "\"\n";
    return 2;
  }
  return jobline::bench::Serve();
}
