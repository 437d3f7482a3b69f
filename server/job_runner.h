// JobRunner: the server's own executor of built-in work (D16), and the
// upkeep loop of the job runtime.
//
// Built-in work is what needs no worker: the "Delay" stage of any job with
// a delay (spec 7.1, 7.3, D9), and the whole run of "unknown" jobs and of
// "ml" jobs without a pipeline, which fail after their delay. A bounded
// pool of threads takes such jobs from the runner's queue under a lease
// (server/lease_rules.h), advances the delay stage once per `delay_step`,
// and then fails the job or hands it to the workers' queue. A cancel is
// noticed within one step.
//
// One more thread keeps the runtime healthy: every `sweep_interval` it ends
// leases that ran out, and every `reap_interval` it runs the stale-job
// reaper.
//
// Thread safety: Start and Stop are called from one thread; everything else
// is internal.

#ifndef JOBLINE_SERVER_JOB_RUNNER_H_
#define JOBLINE_SERVER_JOB_RUNNER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "server/work_signal.h"
#include "server/worker_protocol.h"
#include "storage/job_store.h"

namespace jobline {

struct JobRunnerOptions {
  // Threads executing built-in work at once.
  int threads = 4;
  // How often the delay stage advances (once per second of delay).
  absl::Duration delay_step = absl::Seconds(1);
  // The runner's lease; renewed at every step.
  absl::Duration lease = absl::Seconds(30);
  // How often expired leases are ended, and how often the reaper runs.
  absl::Duration sweep_interval = absl::Seconds(1);
  absl::Duration reap_interval = absl::Minutes(1);
  // Jobs without an update for this long are reaped (spec 8.3).
  absl::Duration reap_cutoff = absl::Minutes(10);
  // The runner's own signal: raised when a job enters its queue or a job
  // it runs is to stop (JobManagerOptions::runner_signal,
  // WorkerProtocolOptions::runner_signal). Idle executors and delay steps
  // wait on it, besides a poll once a second. Not owned; null: they wait
  // on the workers' signal, and so wake at every notification.
  WorkSignal* queue_signal = nullptr;
};

class JobRunner {
 public:
  // None of the pointers is owned; all must outlive the runner. `signal`
  // is the workers' signal, notified when the runner hands a job over.
  JobRunner(JobStore* store, Clock* clock, WorkSignal* signal,
            WorkerProtocol* protocol, JobRunnerOptions options);
  ~JobRunner();  // Stops.

  JobRunner(const JobRunner&) = delete;
  JobRunner& operator=(const JobRunner&) = delete;

  // Starts the threads.
  void Start();

  // Stops taking work and joins the threads; work in progress stops at its
  // next step and goes back to the runner's queue without costing an
  // attempt, so the next start runs it again. Closes `signal` and the
  // queue signal.
  void Stop();

 private:
  // One executor thread: takes jobs from the runner's queue until stopped.
  void ExecutorLoop();
  // The upkeep thread.
  void UpkeepLoop();
  // Takes one job from the runner's queue and runs it. Returns false when
  // the queue is empty.
  bool RunOne();
  // Runs job `id` under `lease_id`: the delay stage, then the type's end.
  void Run(int64_t id, const std::string& lease_id, v2::Job job);
  // Applies `rule` to job `id` under the runner's lease. False when the run
  // must stop (lease lost, job final or deleted, or the rule ended it).
  bool Step(int64_t id, const std::string& lease_id,
            const std::function<absl::Status(JobMutation&)>& rule, bool* ended);
  // Waits until `deadline`, checking at most every 100 ms after a wake-up
  // whether job `id` is being cancelled. Returns false when the run must
  // stop (the runner stops, or the job left STARTED).
  bool Pause(int64_t id, absl::Time deadline);

  JobStore* const store_;     // Not owned.
  Clock* const clock_;        // Not owned.
  WorkSignal* const signal_;  // Not owned.
  // What idle executors and delay steps wait on: the queue signal, or
  // signal_ without one. Not owned.
  WorkSignal* const wake_;
  WorkerProtocol* const protocol_;  // Not owned.
  const JobRunnerOptions options_;

  absl::Notification stopping_;
  std::vector<std::thread> threads_;
};

}  // namespace jobline

#endif  // JOBLINE_SERVER_JOB_RUNNER_H_
