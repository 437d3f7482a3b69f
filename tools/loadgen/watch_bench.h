// RunWatchBench: many WatchProgress streams on a few jobs that a writer
// keeps changing, and how long each change takes to reach every watcher.
//
// A run, against a server that has no other pending jobs of the type
// kCycleJobType (methods.h):
//   1. Setup: creates `jobs` jobs (start_now, kCycleJobType), leases them
//      all through WorkerService.LeaseJobs and gives each its stage
//      kWatchStageName (STARTED, progress 0, parameter kWatchParamName =
//      0) with ReportProgress.
//   2. Opens `watchers` streams, watcher i on job i % jobs, channel
//      i % channels and completion-queue thread i % threads, and waits
//      until each has its first message (the snapshot) or has ended.
//   3. The writer, on the calling thread with a queue of its own, reports
//      progress
//      on every job `update_hz` times a second for `duration`: update k
//      of a job sets the parameter to k and the stage's progress to a
//      value rising with k, one call per job in flight (the next one is
//      sent when the last answer came back, at once if it is late). The
//      updates of the jobs are spread evenly over each period.
//   4. Then it finishes every job (FinishJob SUCCESS, the stage at 1.0,
//      the parameter one past the last update) and waits until every
//      stream ended (a stream ends with OK after the job's final state)
//      or `final_timeout` passed; streams still open then are cancelled.
//
// The delay of an update is from the moment the writer sent it (the clock
// read just before the call starts; the commit follows within the call's
// latency, measured apart) to the moment a watcher's thread has the
// message that carries it, on one steady clock in this process. A watcher
// that was sent a message covering several updates (the server merges
// intermediate progress into the newest document for a watcher that fell
// behind) counts each of them, each with its own delay. The snapshots that
// open the streams count as messages but carry no update.
//
// Memory: when `server_pid` names the server's process on this machine,
// its VmRSS is read after the setup (the channels connected, no stream
// open), once every stream has its first message, and at the end of the
// writer's window.
//
// Thread safety: RunWatchBench may be called from any thread; it starts
// and joins its own threads.

#ifndef JOBLINE_TOOLS_LOADGEN_WATCH_BENCH_H_
#define JOBLINE_TOOLS_LOADGEN_WATCH_BENCH_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/optional.h"
#include "absl/types/span.h"
#include "tools/loadgen/call.h"
#include "tools/loadgen/latency_histogram.h"

namespace jobline {
namespace loadgen {

// The stage and the parameter the writer updates.
inline constexpr char kWatchStageName[] = "Watch benchmark";
inline constexpr char kWatchStageKey[] = "watch_benchmark";
inline constexpr char kWatchParamName[] = "Update";
inline constexpr char kWatchParamKey[] = "update";

struct WatchOptions {
  // Streams, and the jobs they are spread over; 1 <= jobs <= watchers.
  int watchers = 10000;
  int jobs = 100;
  // Updates of each job per second.
  double update_hz = 10;
  // How long the writer updates the jobs.
  absl::Duration duration = absl::Seconds(30);
  // Threads polling the watchers' completion queues, one queue each.
  int threads = 2;
  // The project of the jobs.
  int64_t project_id = 16;
  // Longest wait for every stream's first message, and for every stream's
  // end after the jobs were finished.
  absl::Duration open_timeout = absl::Seconds(60);
  absl::Duration final_timeout = absl::Seconds(60);
  // Deadline of each unary call.
  absl::Duration deadline = absl::Seconds(10);
  // The server's process, for its memory; 0 measures none.
  pid_t server_pid = 0;
  // When set, told of each step as it begins, in a line of text ("10000
  // streams open after 2.41 s; updating 100 jobs for 30 s"); called on the
  // thread of RunWatchBench.
  std::function<void(absl::string_view)> on_step;
};

struct WatchResult {
  // Seconds from the first stream started to the last first message.
  double open_seconds = 0;
  // Streams that had their first message within open_timeout.
  int opened = 0;

  // ReportProgress calls sent in the window that succeeded, and those
  // that failed; their latency in microseconds.
  int64_t updates = 0;
  int64_t update_errors = 0;
  LatencyHistogram write_latency;
  // FinishJob calls that failed.
  int64_t finish_errors = 0;

  // Sent -> delivered, in microseconds, one value per update per watcher
  // (the final state included).
  LatencyHistogram delay;
  // Messages the watchers received (snapshots included), and the updates
  // those messages carried, counted per watcher.
  int64_t messages = 0;
  int64_t updates_delivered = 0;
  // Update numbers a watcher saw that the writer had not stamped (never
  // expected; a sign of a foreign writer on the jobs).
  int64_t unstamped = 0;

  // Watchers whose stream did not carry the job's final state (SUCCESS),
  // and streams that ended with an error, by the name of the code.
  int missing_final = 0;
  int stream_errors = 0;
  std::map<std::string, int64_t> stream_errors_by_code;
  // "what: CODE: message" of a failed call: the writer's first failure if
  // it had one, else the first failed stream's (in watcher order); empty
  // when nothing failed.
  std::string first_error;

  // The server's VmRSS in KiB (see above); unset when not measured, and
  // why not when it could not be read.
  absl::optional<int64_t> rss_before_kib;
  absl::optional<int64_t> rss_open_kib;
  absl::optional<int64_t> rss_end_kib;
  std::string memory_problem;

  // Successful updates per second of the window.
  double updates_per_second(absl::Duration duration) const;
  // (rss_open - rss_before) / watchers, in KiB; unset when not measured.
  absl::optional<double> kib_per_watcher(int watchers) const;
};

// When the writer sent each update of each job, shared by the writer (who
// stamps) and the watchers (who read). Update numbers run from 0 to
// `updates_per_job`; a stamp is microseconds on the run's steady clock and
// positive.
//
// Thread safety: Stamp and Sent may be called from any thread at once.
class UpdateLedger {
 public:
  UpdateLedger(int jobs, int updates_per_job);

  UpdateLedger(const UpdateLedger&) = delete;
  UpdateLedger& operator=(const UpdateLedger&) = delete;

  // The highest update number the ledger holds.
  int updates_per_job() const { return updates_per_job_; }

  // REQUIRES: 0 <= job < jobs, 0 <= update <= updates_per_job(), micros > 0.
  void Stamp(int job, int update, int64_t micros);

  // The stamp of `update` of `job`, or 0 when it has none (also for an
  // update number out of range).
  int64_t Sent(int job, int update) const;

  // Records in `delay` the delay of each update of `job` numbered
  // after + 1 to upto, all delivered at `delivered`. Returns how many of
  // them had no stamp (and were not recorded).
  int RecordDelivered(int job, int after, int upto, int64_t delivered,
                      LatencyHistogram* delay) const;

 private:
  const int updates_per_job_;
  std::unique_ptr<std::atomic<int64_t>[]> stamps_;
};

// Runs the benchmark described above. `watch_stubs` carry the streams
// (stream i the stubs i % size); `writer_stubs` carry the setup, the
// updates and the finishes. An error means the run could not be set up
// (the jobs could not be made or leased); failures during the run are
// counted in the result. REQUIRES: valid `options` (positive counts and
// durations, jobs <= watchers), non-empty `watch_stubs`; the stubs outlive
// the call.
absl::StatusOr<WatchResult> RunWatchBench(
    const WatchOptions& options,
    absl::Span<const std::unique_ptr<Stubs>> watch_stubs,
    const Stubs& writer_stubs);

}  // namespace loadgen
}  // namespace jobline

#endif  // JOBLINE_TOOLS_LOADGEN_WATCH_BENCH_H_
