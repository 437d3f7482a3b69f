#include "server/job_runner.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "glog/logging.h"
#include "server/job_rules.h"
#include "server/lease_rules.h"
#include "storage/status_macros.h"

namespace jobline {
namespace {

// Mood values of the delay stage while it sleeps and when it is done.
constexpr char kMoodDizzy[] = "\xF0\x9F\x98\xB5\xE2\x80\x8D\xF0\x9F\x92\xAB";
constexpr char kMoodParty[] = "\xF0\x9F\xA5\xB3";

// How long an idle executor sleeps before it looks at its queue again,
// whatever the signal says (a safety net, not the wake-up path).
constexpr absl::Duration kIdlePoll = absl::Seconds(1);
// The least time between two cancel checks of one run.
constexpr absl::Duration kCancelCheck = absl::Milliseconds(100);

// The delay stage of `job`, created when missing.
v2::ProgressStage& DelayStage(v2::Job& job) {
  return *AddStage(*job.mutable_progress(), "Delay", "delay");
}

}  // namespace

JobRunner::JobRunner(JobStore* store, Clock* clock, WorkSignal* signal,
                     WorkerProtocol* protocol, JobRunnerOptions options)
    : store_(store),
      clock_(clock),
      signal_(signal),
      wake_(options.queue_signal != nullptr ? options.queue_signal : signal),
      protocol_(protocol),
      options_(options) {}

JobRunner::~JobRunner() { Stop(); }

void JobRunner::Start() {
  for (int i = 0; i < std::max(1, options_.threads); ++i) {
    threads_.emplace_back([this] { ExecutorLoop(); });
  }
  threads_.emplace_back([this] { UpkeepLoop(); });
}

void JobRunner::Stop() {
  if (!stopping_.HasBeenNotified()) stopping_.Notify();
  signal_->Close();
  wake_->Close();
  if (threads_.empty()) return;
  for (std::thread& thread : threads_) thread.join();
  threads_.clear();

  // Work cut short by a clean stop is queued again without costing an
  // attempt (a crash, in contrast, costs one: RecoverRunnerLeases).
  absl::StatusOr<int> released = protocol_->ReleaseRunnerLeases();
  if (!released.ok()) {
    LOG(WARNING) << "releasing the runner's leases failed: "
                 << released.status();
  } else if (*released > 0) {
    LOG(INFO) << "queued " << *released << " interrupted jobs again";
  }
}

void JobRunner::ExecutorLoop() {
  while (!stopping_.HasBeenNotified()) {
    const uint64_t seen = wake_->generation();
    if (!RunOne()) wake_->WaitForChange(seen, absl::Now() + kIdlePoll);
  }
}

void JobRunner::UpkeepLoop() {
  absl::Time next_reap = absl::Now() + options_.reap_interval;
  while (!stopping_.WaitForNotificationWithTimeout(options_.sweep_interval)) {
    if (absl::StatusOr<int> ended = protocol_->ExpireLeases(); !ended.ok()) {
      LOG(WARNING) << "ending expired leases failed: " << ended.status();
    }
    if (absl::Now() < next_reap) continue;
    next_reap = absl::Now() + options_.reap_interval;
    absl::StatusOr<v2::ReapStaleJobsResponse> reaped =
        protocol_->ReapStaleJobs(options_.reap_cutoff, /*dry_run=*/false);
    if (!reaped.ok()) {
      LOG(WARNING) << "the stale-job reaper failed: " << reaped.status();
    }
  }
}

bool JobRunner::RunOne() {
  JobIdQuery query;
  query.statuses = {v2::PENDING};
  query.leased = false;
  query.holder = kRunnerHolder;
  query.limit = 8;
  absl::StatusOr<std::vector<int64_t>> ids = store_->FindJobIds(query);
  if (!ids.ok()) {
    LOG(WARNING) << "reading the runner's queue failed: " << ids.status();
    return false;
  }
  for (const int64_t id : *ids) {
    absl::StatusOr<v2::Lease> lease =
        protocol_->Grant(id, kRunnerHolder, kRunnerHolder, options_.lease);
    if (lease.ok()) {
      Run(id, lease->lease_id(), lease->job());
      return true;
    }
    if (!absl::IsAborted(lease.status()) && !absl::IsNotFound(lease.status())) {
      LOG(WARNING) << "leasing job " << id << " failed: " << lease.status();
      return false;
    }
  }
  return false;
}

void JobRunner::Run(int64_t id, const std::string& lease_id, v2::Job job) {
  VLOG(1) << "running built-in work of job " << id;
  bool ended = false;

  // The delay stage: one step per second of delay (spec 7.3).
  const int64_t delay = job.delay();
  for (int64_t i = 1; i < delay; ++i) {
    if (!Pause(id, absl::Now() + options_.delay_step)) return;
    const bool stepped = Step(
        id, lease_id,
        [this, i, delay](JobMutation& mutation) {
          v2::ProgressStage& stage = DelayStage(mutation.job);
          StageUpdate update;
          update.status = v2::STARTED;
          update.progress = static_cast<double>(i) / static_cast<double>(delay);
          update.params.emplace_back("Mood", StringValue(kMoodDizzy));
          JOBS_RETURN_IF_ERROR(UpdateStage(*mutation.job.mutable_progress(),
                                           stage.key(), update));
          RecomputeSummary(*mutation.job.mutable_progress());
          mutation.logs.push_back(
              NewLogLine{LogLevel::kInfo,
                         absl::StrFormat("Delaying job #%d: %d of %d seconds",
                                         mutation.job.id(), i, delay)});
          RenewLease(clock_->Now() + options_.lease, mutation);
          return absl::OkStatus();
        },
        &ended);
    if (!stepped) return;
  }
  if (delay > 0 && !Pause(id, absl::Now() + options_.delay_step)) return;

  // The end of the built-in part: the delay stage succeeds, then the job
  // fails (no work of its own here) or goes to the workers.
  Step(
      id, lease_id,
      [this, delay, &ended](JobMutation& mutation) {
        v2::Job& job = mutation.job;
        const absl::Time now = clock_->Now();
        if (delay != 0) {
          v2::ProgressStage& stage = DelayStage(job);
          StageUpdate update;
          update.status = v2::SUCCESS;
          update.progress = 1.0;
          update.params.emplace_back("Mood", StringValue(kMoodParty));
          JOBS_RETURN_IF_ERROR(
              UpdateStage(*job.mutable_progress(), stage.key(), update));
          RecomputeSummary(*job.mutable_progress());
        }
        ended = true;
        const std::string& type = job.job_type().key();
        RunEnd end;
        end.status = v2::FAILURE;
        if (type == "unknown") {
          end.error = "Job type \"unknown\" has no work to run";
          return EndRun(end, now, mutation);
        }
        if (type == "ml" && !job.has_pipeline()) {
          end.error = "no pipeline specified";
          return EndRun(end, now, mutation);
        }
        HandToWorkers(now, mutation);
        return absl::OkStatus();
      },
      &ended);
  signal_->Notify();
}

bool JobRunner::Step(int64_t id, const std::string& lease_id,
                     const std::function<absl::Status(JobMutation&)>& rule,
                     bool* ended) {
  const absl::Time now = clock_->Now();
  const absl::Status status =
      store_
          ->MutateJob(
              id,
              [&](JobMutation& mutation) {
                JOBS_RETURN_IF_ERROR(CheckLease(lease_id, now, mutation));
                if (CancelRequested(mutation)) {
                  *ended = true;
                  RunEnd end;
                  end.status = v2::FAILURE;
                  return EndRun(end, now, mutation);
                }
                return rule(mutation);
              })
          .status();
  if (!status.ok()) {
    VLOG(1) << "built-in work of job " << id << " stops: " << status;
    return false;
  }
  if (*ended) signal_->Notify();
  return !*ended;
}

bool JobRunner::Pause(int64_t id, absl::Time deadline) {
  while (true) {
    if (stopping_.HasBeenNotified()) return false;
    const absl::Time now = absl::Now();
    if (now >= deadline) return true;
    const uint64_t seen = wake_->generation();
    wake_->WaitForChange(seen, deadline);
    if (stopping_.HasBeenNotified()) return false;
    if (absl::Now() >= deadline) return true;

    // Woken early: a cancel may have come. Look, then rest a little so a
    // busy signal does not turn into a busy loop.
    absl::StatusOr<v2::Job> job = store_->GetJob(id);
    if (!job.ok() || job->status() != v2::STARTED) {
      if (job.ok() && job->status() == v2::CANCELING) return true;
      return false;
    }
    absl::SleepFor(std::min(kCancelCheck, deadline - absl::Now()));
  }
}

}  // namespace jobline
