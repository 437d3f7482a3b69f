// empty_loadgen: jobline_loadgen's load (tools/loadgen/load_generator.h)
// on EmptyService.Call of an empty_server, the transport limit of the
// benchmarks.
//
//   empty_loadgen --server=HOST:PORT --concurrency=64 [--threads=2]
//       [--channels=0] [--duration_s=10] [--warmup_s=1] [--deadline_ms=10000]
//
// The flags mean what they mean to jobline_loadgen, and the run is the
// same: the same completion-queue threads, channels (one connection each)
// and measured window. It prints one JSON object, the figures of
// `jobline_loadgen --json` with "method": "empty". Exit status: 0 when every
// call succeeded, 1 when one failed or the server could not be reached, 2
// for a bad flag.

#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gflags/gflags.h"
#include "grpcpp/grpcpp.h"
#include "nlohmann/json.hpp"
#include "tools/bench/empty.grpc.pb.h"
#include "tools/loadgen/call.h"
#include "tools/loadgen/load_generator.h"

DEFINE_string(server, "localhost:50051", "empty_server's address.");
DEFINE_int32(concurrency, 16, "Calls in flight at once.");
DEFINE_int32(threads, 2, "Threads polling completion queues.");
DEFINE_int32(channels, 0,
             "gRPC channels, each its own connection; 0: one per thread.");
DEFINE_double(duration_s, 10, "Seconds measured.");
DEFINE_double(warmup_s, 1, "Seconds run before measuring.");
DEFINE_int32(deadline_ms, 10000, "Deadline of every call.");

namespace jobline {
namespace bench {
namespace {

using loadgen::Caller;
using loadgen::DoneCallback;
using loadgen::LoadResult;
using loadgen::Stubs;

constexpr absl::Duration kConnectTimeout = absl::Seconds(10);

// The problem with the flags, or "" when they are usable.
std::string FlagProblem() {
  if (FLAGS_concurrency < 1 || FLAGS_concurrency > 100000) {
    return "--concurrency must be 1 to 100000";
  }
  if (FLAGS_threads < 1 || FLAGS_threads > 256) {
    return "--threads must be 1 to 256";
  }
  if (FLAGS_channels < 0 || FLAGS_channels > 1024) {
    return "--channels must be 0 to 1024";
  }
  if (!(FLAGS_duration_s > 0)) return "--duration_s must be positive";
  if (!(FLAGS_warmup_s >= 0)) return "--warmup_s must not be negative";
  if (FLAGS_deadline_ms < 1) return "--deadline_ms must be positive";
  if (FLAGS_server.empty()) return "--server must name an address";
  return "";
}

void PrintFigures(const LoadResult& result, int channels) {
  const loadgen::LatencyHistogram& latency = result.latency;
  nlohmann::ordered_json figures;
  figures["method"] = "empty";
  figures["calls_per_s"] = result.calls_per_second();
  figures["p50_us"] = latency.Percentile(50);
  figures["p90_us"] = latency.Percentile(90);
  figures["p99_us"] = latency.Percentile(99);
  figures["max_us"] = latency.max();
  figures["errors"] = result.errors;
  figures["calls"] = result.calls;
  figures["duration_s"] = absl::ToDoubleSeconds(result.duration);
  figures["concurrency"] = FLAGS_concurrency;
  figures["threads"] = FLAGS_threads;
  figures["channels"] = channels;
  figures["errors_by_code"] = nlohmann::ordered_json::object();
  for (const auto& [code, count] : result.errors_by_code) {
    figures["errors_by_code"][code] = count;
  }
  figures["warmup_errors"] = result.warmup_errors;
  figures["first_error"] = result.first_error;
  std::cout << figures.dump() << std::endl;
}

int Main() {
  if (const std::string problem = FlagProblem(); !problem.empty()) {
    std::cerr << "empty_loadgen: " << problem << " (see --help)\n";
    return 2;
  }

  // Channels that do not share a connection, as jobline_loadgen opens
  // them, each with the Jobline stubs RunLoad deals out and the
  // EmptyService stub the operation uses instead.
  const int channel_count =
      FLAGS_channels == 0 ? FLAGS_threads : FLAGS_channels;
  std::vector<std::unique_ptr<Stubs>> stubs;
  std::map<const void*, std::unique_ptr<EmptyService::Stub>> empty_stubs;
  for (int i = 0; i < channel_count; ++i) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("jobline.loadgen.channel", i);
    std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(
        FLAGS_server, grpc::InsecureChannelCredentials(), args);
    if (!channel->WaitForConnected(
            absl::ToChronoTime(absl::Now() + kConnectTimeout))) {
      std::cerr << "empty_loadgen: cannot connect to " << FLAGS_server << "\n";
      return 1;
    }
    stubs.push_back(std::make_unique<Stubs>(channel));
    empty_stubs[stubs.back()->jobs.get()] = EmptyService::NewStub(channel);
  }

  // The run: one EmptyService.Call per operation, on the slot's channel.
  loadgen::LoadOptions options;
  options.concurrency = FLAGS_concurrency;
  options.threads = FLAGS_threads;
  options.warmup = absl::Seconds(FLAGS_warmup_s);
  options.duration = absl::Seconds(FLAGS_duration_s);
  options.deadline = absl::Milliseconds(FLAGS_deadline_ms);
  const EmptyRequest request;
  const LoadResult result = loadgen::RunLoad(
      options, stubs,
      [&empty_stubs, &request](const Caller& caller, DoneCallback done) {
        EmptyService::Stub* stub = empty_stubs.at(caller.jobs()).get();
        caller.Unary(stub, &EmptyService::Stub::PrepareAsyncCall, request,
                     [done](const grpc::Status& status, EmptyResponse&) {
                       done(status);
                     });
      });

  PrintFigures(result, channel_count);
  if (!result.first_error.empty()) {
    std::cerr << "empty_loadgen: first error: " << result.first_error << "\n";
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace bench
}  // namespace jobline

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "jobline_loadgen's load on an empty_server.\n"
      "Usage: empty_loadgen --server=HOST:PORT --concurrency=N "
      "[--duration_s=S] ...");
  gflags::ParseCommandLineFlags(&argc, &argv, /*remove_flags=*/true);
  if (argc > 1) {
    std::cerr << "empty_loadgen: unexpected argument \"" << argv[1] << "\"\n";
    return 2;
  }
  return jobline::bench::Main();
}
