// WorkerProtocol: the operations of the worker protocol
// (protos/jobline/v2/worker.proto) and of the lease upkeep the server does
// by itself (expired leases, recovery after a restart, the stale-job
// reaper).
//
// Every change goes through JobStore::MutateJob with the rules of
// server/lease_rules.h, so a lease is handed out at most once at a time per
// job however many workers ask, and a report or finish under a lost lease,
// or on a final job, changes nothing.
//
// Errors as in worker.proto: INVALID_ARGUMENT naming the field,
// FAILED_PRECONDITION for a lease that is not (or no longer) the job's,
// NOT_FOUND for an unknown job; store errors pass through.
//
// Thread safety: safe for concurrent use.

#ifndef JOBLINE_SERVER_WORKER_PROTOCOL_H_
#define JOBLINE_SERVER_WORKER_PROTOCOL_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "jobline/v2/worker.pb.h"
#include "server/lease_rules.h"
#include "server/work_signal.h"
#include "storage/job_store.h"

namespace jobline {

struct WorkerProtocolOptions {
  // Lease length when a worker names none, and the longest it may ask.
  absl::Duration default_lease = absl::Seconds(60);
  absl::Duration max_lease = absl::Hours(1);
  // The longest LeaseJobs waits for a job.
  absl::Duration max_wait = absl::Seconds(30);
  // Leases a run may use; the lease that runs out last fails the job.
  int32_t max_attempts = 3;
  // The most one report (ReportProgress, FinishJob) may carry.
  ReportLimits report_limits;
  // Notified when the upkeep returns a job to the built-in runner's queue
  // (an expired or recovered lease of the runner). Not owned; null: the
  // protocol's `signal` is notified instead.
  WorkSignal* runner_signal = nullptr;
};

class WorkerProtocol {
 public:
  // `store`, `clock` and `signal` are not owned and must outlive this.
  WorkerProtocol(JobStore* store, Clock* clock, WorkSignal* signal,
                 WorkerProtocolOptions options = {});

  WorkerProtocol(const WorkerProtocol&) = delete;
  WorkerProtocol& operator=(const WorkerProtocol&) = delete;

  // ---- The worker protocol ----

  // Leases up to max_jobs of the oldest jobs waiting in the workers' queue
  // (oldest scheduled first, then by id). Concurrent calls go after
  // different jobs: each claims its candidates in this process before it
  // leases them, so none loses a job to another call and the oldest
  // unclaimed job always goes to the call that looks first.
  // `caller_gone` tells whether the caller has gone away (cancelled, or
  // past its deadline): then nothing more is leased, and leases granted but
  // not yet delivered are released without counting an attempt. `deadline`
  // (the caller's) bounds the wait.
  absl::StatusOr<v2::LeaseJobsResponse> LeaseJobs(
      const v2::LeaseJobsRequest& request,
      const std::function<bool()>& caller_gone = [] { return false; },
      absl::Time deadline = absl::InfiniteFuture());
  absl::StatusOr<v2::HeartbeatResponse> Heartbeat(
      const v2::HeartbeatRequest& request);
  absl::StatusOr<v2::ReportProgressResponse> ReportProgress(
      const v2::ReportProgressRequest& request);
  absl::StatusOr<v2::FinishJobResponse> FinishJob(
      const v2::FinishJobRequest& request);

  // ---- Upkeep ----

  // Takes job `id` out of `queue` (see GrantLease) under a new lease of
  // `length` held by `holder`. Returns the lease, or ABORTED when the job
  // is no longer waiting there.
  absl::StatusOr<v2::Lease> Grant(int64_t id, absl::string_view queue,
                                  absl::string_view holder,
                                  absl::Duration length);

  // Ends every lease that ran out (ExpireLease). Returns how many ended.
  absl::StatusOr<int> ExpireLeases();

  // After a restart: ends every lease the built-in runner held, since the
  // process that held them is gone. Returns how many ended.
  absl::StatusOr<int> RecoverRunnerLeases();

  // On a clean stop: gives the jobs the runner holds back to its queue
  // without counting an attempt (ReleaseLease). Returns how many.
  absl::StatusOr<int> ReleaseRunnerLeases();

  // The stale-job reaper (spec 8.3): jobs in a running status without an
  // update for `cutoff` become REVOKED, or with `dry_run` are only listed.
  absl::StatusOr<v2::ReapStaleJobsResponse> ReapStaleJobs(absl::Duration cutoff,
                                                          bool dry_run);

  // The options in force (after defaults).
  const WorkerProtocolOptions& options() const { return options_; }

  // Grants of LeaseJobs that found their job no longer waiting (cancelled,
  // deleted or requeued between the lookup and the grant), since the
  // start. Other LeaseJobs calls never cause one.
  int64_t lost_grants() const {
    return lost_grants_.load(std::memory_order_relaxed);
  }

 private:
  // Applies `rule` to job `id` under lease `lease_id` (CheckLease first) and
  // returns the job as written with the lease after the rule.
  struct LeasedWrite {
    v2::Job job;
    JobLease lease;
  };
  absl::StatusOr<LeasedWrite> UnderLease(
      int64_t id, const std::string& lease_id,
      const std::function<absl::Status(JobMutation&)>& rule);

  // What one look at the workers' queue found.
  struct Claim {
    // Claimed for the caller, oldest first.
    std::vector<int64_t> mine;
    // Waiting, older than the last of `mine`, but claimed by other calls.
    std::vector<int64_t> others;
  };
  // Claims at most `count` jobs matching `query` (oldest first) that no
  // other LeaseJobs call has claimed. The caller must Unclaim each once
  // its grant has committed or failed. The lookup and the claim happen
  // under one lock, and a claim outlives its grant's commit, so a lookup
  // never offers a job another call is granting.
  absl::StatusOr<Claim> ClaimWaiting(JobIdQuery query, int count)
      ABSL_LOCKS_EXCLUDED(claim_mu_);
  void Unclaim(int64_t id) ABSL_LOCKS_EXCLUDED(claim_mu_);
  // Blocks until no call claims any of `ids`.
  void AwaitUnclaimed(const std::vector<int64_t>& ids)
      ABSL_LOCKS_EXCLUDED(claim_mu_);

  // Ends the leases of the jobs matching `query` (force: even if they have
  // not run out), and wakes the waiters of the queues the jobs went back
  // to.
  absl::StatusOr<int> EndLeases(const JobIdQuery& query, bool force);

  JobStore* const store_;     // Not owned.
  Clock* const clock_;        // Not owned.
  WorkSignal* const signal_;  // Not owned.
  const WorkerProtocolOptions options_;

  // Jobs a LeaseJobs call is granting now (ClaimWaiting). Held through a
  // FindJobIds of the store; never taken inside a store call.
  absl::Mutex claim_mu_;
  absl::flat_hash_set<int64_t> claimed_ ABSL_GUARDED_BY(claim_mu_);
  std::atomic<int64_t> lost_grants_{0};
};

// A new random lease id (32 hex digits).
std::string NewLeaseId();

}  // namespace jobline

#endif  // JOBLINE_SERVER_WORKER_PROTOCOL_H_
