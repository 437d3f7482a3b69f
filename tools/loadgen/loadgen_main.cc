// jobline_loadgen: a load generator for Jobline's gRPC services.
//
//   jobline_loadgen --server=HOST:PORT --method=get --concurrency=64
//       [--threads=2] [--channels=0] [--duration_s=10] [--warmup_s=1]
//       [--job_id=N] [--project_id=16] [--list_status=CREATED]
//       [--deadline_ms=10000] [--json]
//
// Keeps --concurrency operations of --method in flight over the
// asynchronous gRPC API (tools/loadgen/load_generator.h) for --warmup_s
// and then --duration_s seconds, and prints one line of figures:
//
//   method=get calls_per_s=12345.6 p50_us=... p90_us=... p99_us=...
//   max_us=... errors=0 calls=... duration_s=10 concurrency=64 threads=2
//   channels=2
//
// (on one line; `errors_by_code=CODE:N,...` follows `errors` when some
// failed), or with --json one JSON object of the same figures plus
// errors_by_code, warmup_errors and first_error. Latencies are of whole
// operations, in microseconds; for `cycle` an operation is three calls.
// The first error's code and message also go to stderr.
//
// `get` without --job_id first creates a job in --project_id to read.
//
// Exit status: 0 when every operation succeeded; 1 when one failed (the
// figures are printed all the same), the server could not be reached or
// the job to read could not be made; 2 for a bad flag.

#include <cstdint>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gflags/gflags.h"
#include "grpcpp/grpcpp.h"
#include "jobline/v2/jobs.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tools/loadgen/call.h"
#include "tools/loadgen/load_generator.h"
#include "tools/loadgen/methods.h"

DEFINE_string(server, "localhost:50051", "Jobline's gRPC address.");
DEFINE_string(method, "get", "What to call: get, create, list or cycle.");
DEFINE_int32(concurrency, 16, "Operations in flight at once.");
DEFINE_int32(threads, 2, "Threads polling completion queues.");
DEFINE_int32(channels, 0,
             "gRPC channels, each its own connection; 0: one per thread.");
DEFINE_double(duration_s, 10, "Seconds measured.");
DEFINE_double(warmup_s, 1, "Seconds run before measuring.");
DEFINE_int64(job_id, 0,
             "The job `get` reads; 0 creates one in --project_id first.");
DEFINE_int64(project_id, 16,
             "Project of the jobs `create`, `cycle` and `get` make.");
DEFINE_string(list_status, "CREATED", "Status filter of `list`.");
DEFINE_int32(deadline_ms, 10000, "Deadline of every call.");
DEFINE_bool(json, false, "Print the figures as one JSON object.");

namespace jobline {
namespace loadgen {
namespace {

constexpr char kUsage[] =
    "Load generator for Jobline's gRPC services.\n"
    "Usage: jobline_loadgen --server=HOST:PORT --method=get|create|list|cycle "
    "--concurrency=N [--duration_s=S] [--json] ...";

// How long to wait for each channel's connection before the run.
constexpr absl::Duration kConnectTimeout = absl::Seconds(10);

std::string MethodNames() {
  std::vector<std::string> names;
  for (const Method& method : Methods()) {
    names.push_back(std::string(method.name));
  }
  return absl::StrJoin(names, ", ");
}

// The problem with the flags, or "" when they are usable.
std::string FlagProblem() {
  if (FindMethod(FLAGS_method) == nullptr) {
    return absl::StrCat("--method must be one of ", MethodNames(), ", not \"",
                        FLAGS_method, "\"");
  }
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
  if (FLAGS_job_id < 0) return "--job_id must not be negative";
  if (FLAGS_deadline_ms < 1) return "--deadline_ms must be positive";
  if (FLAGS_server.empty()) return "--server must name an address";
  return "";
}

// Channels to --server that do not share a connection: a local subchannel
// pool each and an argument that differs.
std::vector<std::shared_ptr<grpc::Channel>> OpenChannels(int count) {
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < count; ++i) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("jobline.loadgen.channel", i);
    channels.push_back(grpc::CreateCustomChannel(
        FLAGS_server, grpc::InsecureChannelCredentials(), args));
  }
  return channels;
}

// Creates the job `get` reads. Returns its id, or 0 after printing why not.
int64_t CreateJobToRead(v2::JobService::Stub& stub) {
  v2::CreateJobRequest request;
  request.mutable_job()->set_name("Load test: read");
  request.mutable_job()->set_project_id(FLAGS_project_id);
  grpc::ClientContext context;
  context.set_deadline(
      absl::ToChronoTime(absl::Now() + absl::Milliseconds(FLAGS_deadline_ms)));
  v2::Job job;
  const grpc::Status status = stub.CreateJob(&context, request, &job);
  if (!status.ok()) {
    std::cerr << "jobline_loadgen: cannot create the job to read: "
              << ErrorText(status) << "\n";
    return 0;
  }
  std::cerr << "jobline_loadgen: reading job " << job.id()
            << " (created for this run)\n";
  return job.id();
}

void PrintFigures(const LoadResult& result, int channels) {
  const LatencyHistogram& latency = result.latency;
  if (FLAGS_json) {
    nlohmann::ordered_json figures;
    figures["method"] = FLAGS_method;
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
    return;
  }
  std::string line = absl::StrFormat(
      "method=%s calls_per_s=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d "
      "errors=%d",
      FLAGS_method, result.calls_per_second(), latency.Percentile(50),
      latency.Percentile(90), latency.Percentile(99), latency.max(),
      result.errors);
  if (!result.errors_by_code.empty()) {
    absl::StrAppend(
        &line, " errors_by_code=",
        absl::StrJoin(result.errors_by_code, ",", absl::PairFormatter(":")));
  }
  absl::StrAppend(
      &line,
      absl::StrFormat(" calls=%d duration_s=%g concurrency=%d "
                      "threads=%d channels=%d",
                      result.calls, absl::ToDoubleSeconds(result.duration),
                      FLAGS_concurrency, FLAGS_threads, channels));
  std::cout << line << std::endl;
}

int Main() {
  if (const std::string problem = FlagProblem(); !problem.empty()) {
    std::cerr << "jobline_loadgen: " << problem << " (see --help)\n";
    return 2;
  }
  const Method& method = *FindMethod(FLAGS_method);

  // Connections, opened before the clock starts.
  const int channel_count =
      FLAGS_channels == 0 ? FLAGS_threads : FLAGS_channels;
  std::vector<std::unique_ptr<Stubs>> stubs;
  for (const std::shared_ptr<grpc::Channel>& channel :
       OpenChannels(channel_count)) {
    if (!channel->WaitForConnected(
            absl::ToChronoTime(absl::Now() + kConnectTimeout))) {
      std::cerr << "jobline_loadgen: cannot connect to " << FLAGS_server
                << "\n";
      return 1;
    }
    stubs.push_back(std::make_unique<Stubs>(channel));
  }

  // The method's inputs.
  MethodParams params;
  params.job_id = FLAGS_job_id;
  params.project_id = FLAGS_project_id;
  params.list_status = FLAGS_list_status;
  if (method.reads_job && params.job_id == 0) {
    params.job_id = CreateJobToRead(*stubs.front()->jobs);
    if (params.job_id == 0) return 1;
  }

  // The run.
  LoadOptions options;
  options.concurrency = FLAGS_concurrency;
  options.threads = FLAGS_threads;
  options.warmup = absl::Seconds(FLAGS_warmup_s);
  options.duration = absl::Seconds(FLAGS_duration_s);
  options.deadline = absl::Milliseconds(FLAGS_deadline_ms);
  const LoadResult result =
      RunLoad(options, stubs,
              [&method, &params](const Caller& caller, DoneCallback done) {
                method.start(params, caller, std::move(done));
              });

  PrintFigures(result, channel_count);
  if (!result.first_error.empty()) {
    std::cerr << "jobline_loadgen: first error: " << result.first_error << "\n";
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace loadgen
}  // namespace jobline

int main(int argc, char** argv) {
  gflags::SetUsageMessage(jobline::loadgen::kUsage);
  gflags::ParseCommandLineFlags(&argc, &argv, /*remove_flags=*/true);
  if (argc > 1) {
    std::cerr << "jobline_loadgen: unexpected argument \"" << argv[1]
              << "\"; flags are written --name=value (see --help)\n";
    return 2;
  }
  return jobline::loadgen::Main();
}
