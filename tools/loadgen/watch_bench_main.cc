// jobline_watchbench: many JobService.WatchProgress streams on a few jobs
// that a writer keeps changing (tools/loadgen/watch_bench.h).
//
//   jobline_watchbench --server=HOST:PORT [--watchers=10000] [--jobs=100]
//       [--update_hz=10] [--duration_s=30] [--threads=2] [--channels=64]
//       [--server_pid=PID] [--project_id=16] [--open_timeout_s=60]
//       [--final_timeout_s=60] [--deadline_ms=10000] [--json]
//       [--mutex_deadlock_detection]
//
// Tells of each step on stderr as it begins, then prints one line of
// figures:
//
//   watchers=10000 jobs=100 channels=64 threads=2 duration_s=30
//   open_s=2.1 opened=10000 updates=30000 updates_per_s=1000.0
//   update_errors=0 finish_errors=0 write_p50_ms=... write_p99_ms=...
//   delay_p50_ms=... delay_p99_ms=... delay_max_ms=... messages=...
//   updates_delivered=... unstamped=0 missing_final=0 stream_errors=0
//   rss_before_kib=... rss_open_kib=... rss_end_kib=... kib_per_watcher=...
//
// (on one line; `stream_errors_by_code=CODE:N,...` follows stream_errors
// when some failed; the memory figures are "-" without --server_pid), or
// with --json one JSON object of the same figures (null for what was not
// measured) plus stream_errors_by_code, first_error and memory_problem.
// The watchers' channels are --channels HTTP/2 connections; the writer has
// a connection of its own.
//
// Exit status: 0 when every watcher got its job's final state and no call
// failed; 1 when one did not or one failed (the figures are printed all the
// same), or the run could not be set up; 2 for a bad flag.

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/types/optional.h"
#include "gflags/gflags.h"
#include "grpcpp/grpcpp.h"
#include "nlohmann/json.hpp"
#include "tools/loadgen/call.h"
#include "tools/loadgen/watch_bench.h"

DEFINE_string(server, "localhost:50051", "Jobline's gRPC address.");
DEFINE_int32(watchers, 10000, "WatchProgress streams open at once.");
DEFINE_int32(jobs, 100, "Jobs the streams are spread over.");
DEFINE_double(update_hz, 10, "Updates of each job per second.");
DEFINE_double(duration_s, 30, "Seconds the writer updates the jobs.");
DEFINE_int32(threads, 2, "Threads polling the watchers' completion queues.");
DEFINE_int32(channels, 64,
             "gRPC channels (HTTP/2 connections) the streams are spread "
             "over.");
DEFINE_int32(server_pid, 0,
             "The server's process id, to read its memory from /proc; 0 "
             "reads none.");
DEFINE_int64(project_id, 16, "Project of the jobs.");
DEFINE_double(open_timeout_s, 60,
              "Longest wait for every stream's first message.");
DEFINE_double(final_timeout_s, 60,
              "Longest wait, after the jobs were finished, for every stream "
              "to end; streams open then are cancelled.");
DEFINE_int32(deadline_ms, 10000, "Deadline of every unary call.");
DEFINE_bool(json, false, "Print the figures as one JSON object.");
DEFINE_bool(mutex_deadlock_detection, false,
            "Keep Abseil's deadlock detection on in this process (Debian's "
            "Abseil turns it on by default; it costs every lock, gRPC's "
            "too, a graph lookup).");

namespace jobline {
namespace loadgen {
namespace {

constexpr char kUsage[] =
    "WatchProgress benchmark for Jobline.\n"
    "Usage: jobline_watchbench --server=HOST:PORT [--watchers=N] [--jobs=N] "
    "[--duration_s=S] [--server_pid=PID] [--json] ...";

// How long to wait for each channel's connection before the run.
constexpr absl::Duration kConnectTimeout = absl::Seconds(10);

// The problem with the flags, or "" when they are usable.
std::string FlagProblem() {
  if (FLAGS_watchers < 1 || FLAGS_watchers > 1000000) {
    return "--watchers must be 1 to 1000000";
  }
  if (FLAGS_jobs < 1 || FLAGS_jobs > FLAGS_watchers) {
    return "--jobs must be 1 to --watchers";
  }
  if (!(FLAGS_update_hz > 0) || FLAGS_update_hz > 1000) {
    return "--update_hz must be above 0 and at most 1000";
  }
  if (!(FLAGS_duration_s > 0) || FLAGS_duration_s > 86400) {
    return "--duration_s must be above 0 and at most 86400";
  }
  if (FLAGS_threads < 1 || FLAGS_threads > 256) {
    return "--threads must be 1 to 256";
  }
  if (FLAGS_channels < 1 || FLAGS_channels > 1024) {
    return "--channels must be 1 to 1024";
  }
  if (FLAGS_server_pid < 0) return "--server_pid must not be negative";
  if (!(FLAGS_open_timeout_s > 0) || !(FLAGS_final_timeout_s > 0)) {
    return "--open_timeout_s and --final_timeout_s must be positive";
  }
  if (FLAGS_deadline_ms < 1) return "--deadline_ms must be positive";
  if (FLAGS_server.empty()) return "--server must name an address";
  return "";
}

// A channel to --server with a connection of its own: a local subchannel
// pool and an argument that differs from every other channel's.
std::shared_ptr<grpc::Channel> OpenChannel(int index) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt("jobline.watchbench.channel", index);
  return grpc::CreateCustomChannel(FLAGS_server,
                                   grpc::InsecureChannelCredentials(), args);
}

// Microseconds as milliseconds, for printing.
double Ms(int64_t micros) { return static_cast<double>(micros) / 1000.0; }

void PrintFigures(const WatchResult& result, const WatchOptions& options) {
  const absl::optional<double> per_watcher =
      result.kib_per_watcher(options.watchers);
  if (FLAGS_json) {
    auto optional_json = [](const auto& value) {
      return value.has_value() ? nlohmann::ordered_json(*value)
                               : nlohmann::ordered_json(nullptr);
    };
    nlohmann::ordered_json figures;
    figures["watchers"] = options.watchers;
    figures["jobs"] = options.jobs;
    figures["channels"] = FLAGS_channels;
    figures["threads"] = options.threads;
    figures["update_hz"] = options.update_hz;
    figures["duration_s"] = absl::ToDoubleSeconds(options.duration);
    figures["open_s"] = result.open_seconds;
    figures["opened"] = result.opened;
    figures["updates"] = result.updates;
    figures["updates_per_s"] = result.updates_per_second(options.duration);
    figures["update_errors"] = result.update_errors;
    figures["finish_errors"] = result.finish_errors;
    figures["write_p50_ms"] = Ms(result.write_latency.Percentile(50));
    figures["write_p99_ms"] = Ms(result.write_latency.Percentile(99));
    figures["write_max_ms"] = Ms(result.write_latency.max());
    figures["delay_p50_ms"] = Ms(result.delay.Percentile(50));
    figures["delay_p99_ms"] = Ms(result.delay.Percentile(99));
    figures["delay_max_ms"] = Ms(result.delay.max());
    figures["messages"] = result.messages;
    figures["updates_delivered"] = result.updates_delivered;
    figures["unstamped"] = result.unstamped;
    figures["missing_final"] = result.missing_final;
    figures["stream_errors"] = result.stream_errors;
    figures["stream_errors_by_code"] = nlohmann::ordered_json::object();
    for (const auto& [code, count] : result.stream_errors_by_code) {
      figures["stream_errors_by_code"][code] = count;
    }
    figures["rss_before_kib"] = optional_json(result.rss_before_kib);
    figures["rss_open_kib"] = optional_json(result.rss_open_kib);
    figures["rss_end_kib"] = optional_json(result.rss_end_kib);
    figures["kib_per_watcher"] = optional_json(per_watcher);
    figures["first_error"] = result.first_error;
    figures["memory_problem"] = result.memory_problem;
    std::cout << figures.dump() << std::endl;
    return;
  }
  auto kib = [](const absl::optional<int64_t>& value) {
    return value.has_value() ? absl::StrCat(*value) : std::string("-");
  };
  std::string line = absl::StrFormat(
      "watchers=%d jobs=%d channels=%d threads=%d duration_s=%g open_s=%.2f "
      "opened=%d updates=%d updates_per_s=%.1f update_errors=%d "
      "finish_errors=%d write_p50_ms=%.2f write_p99_ms=%.2f "
      "delay_p50_ms=%.2f delay_p99_ms=%.2f delay_max_ms=%.2f messages=%d "
      "updates_delivered=%d unstamped=%d missing_final=%d stream_errors=%d",
      options.watchers, options.jobs, FLAGS_channels, options.threads,
      absl::ToDoubleSeconds(options.duration), result.open_seconds,
      result.opened, result.updates,
      result.updates_per_second(options.duration), result.update_errors,
      result.finish_errors, Ms(result.write_latency.Percentile(50)),
      Ms(result.write_latency.Percentile(99)), Ms(result.delay.Percentile(50)),
      Ms(result.delay.Percentile(99)), Ms(result.delay.max()), result.messages,
      result.updates_delivered, result.unstamped, result.missing_final,
      result.stream_errors);
  if (!result.stream_errors_by_code.empty()) {
    absl::StrAppend(&line, " stream_errors_by_code=",
                    absl::StrJoin(result.stream_errors_by_code, ",",
                                  absl::PairFormatter(":")));
  }
  absl::StrAppend(
      &line, " rss_before_kib=", kib(result.rss_before_kib),
      " rss_open_kib=", kib(result.rss_open_kib),
      " rss_end_kib=", kib(result.rss_end_kib), " kib_per_watcher=",
      per_watcher.has_value() ? absl::StrFormat("%.2f", *per_watcher) : "-");
  std::cout << line << std::endl;
}

int Main() {
  if (const std::string problem = FlagProblem(); !problem.empty()) {
    std::cerr << "jobline_watchbench: " << problem << " (see --help)\n";
    return 2;
  }
  // The benchmark's CPU goes to the load, not to checking its own locks.
  if (!FLAGS_mutex_deadlock_detection) {
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  }
  WatchOptions options;
  options.watchers = FLAGS_watchers;
  options.jobs = FLAGS_jobs;
  options.update_hz = FLAGS_update_hz;
  options.duration = absl::Seconds(FLAGS_duration_s);
  options.threads = FLAGS_threads;
  options.project_id = FLAGS_project_id;
  options.open_timeout = absl::Seconds(FLAGS_open_timeout_s);
  options.final_timeout = absl::Seconds(FLAGS_final_timeout_s);
  options.deadline = absl::Milliseconds(FLAGS_deadline_ms);
  options.server_pid = FLAGS_server_pid;
  options.on_step = [](absl::string_view text) {
    std::cerr << "jobline_watchbench: " << text << std::endl;
  };

  // Connections, opened before anything is measured: channel 0 is the
  // writer's.
  std::vector<std::unique_ptr<Stubs>> watch_stubs;
  std::unique_ptr<Stubs> writer_stubs;
  for (int i = 0; i <= FLAGS_channels; ++i) {
    std::shared_ptr<grpc::Channel> channel = OpenChannel(i);
    if (!channel->WaitForConnected(
            absl::ToChronoTime(absl::Now() + kConnectTimeout))) {
      std::cerr << "jobline_watchbench: cannot connect to " << FLAGS_server
                << "\n";
      return 1;
    }
    if (i == 0) {
      writer_stubs = std::make_unique<Stubs>(channel);
    } else {
      watch_stubs.push_back(std::make_unique<Stubs>(channel));
    }
  }

  absl::StatusOr<WatchResult> result =
      RunWatchBench(options, watch_stubs, *writer_stubs);
  if (!result.ok()) {
    std::cerr << "jobline_watchbench: the run could not be set up: "
              << result.status() << "\n";
    return 1;
  }
  PrintFigures(*result, options);
  if (!result->memory_problem.empty()) {
    std::cerr << "jobline_watchbench: " << result->memory_problem << "\n";
  }
  if (!result->first_error.empty()) {
    std::cerr << "jobline_watchbench: first error: " << result->first_error
              << "\n";
  }
  const bool clean = result->missing_final == 0 && result->stream_errors == 0 &&
                     result->update_errors == 0 && result->finish_errors == 0 &&
                     result->opened == options.watchers;
  if (result->missing_final > 0) {
    std::cerr << "jobline_watchbench: " << result->missing_final << " of "
              << options.watchers << " watchers did not get the final state\n";
  }
  return clean ? 0 : 1;
}

}  // namespace
}  // namespace loadgen
}  // namespace jobline

int main(int argc, char** argv) {
  gflags::SetUsageMessage(jobline::loadgen::kUsage);
  gflags::ParseCommandLineFlags(&argc, &argv, /*remove_flags=*/true);
  if (argc > 1) {
    std::cerr << "jobline_watchbench: unexpected argument \"" << argv[1]
              << "\"; flags are written --name=value (see --help)\n";
    return 2;
  }
  return jobline::loadgen::Main();
}
