// The rules of executing a job: leases, progress reports and the end of a
// run, as pure functions on a JobMutation (storage/job_store.h).
//
// A PENDING job waits in a queue: an unleased JobLease whose holder is
// kRunnerHolder (the server's built-in runner) or "" (any worker). Whoever
// executes it first takes a lease (GrantLease): the job moves to STARTED and
// the lease gets an id, a holder and a deadline. Every call about the job
// names the lease (CheckLease); reports renew it. A lease that runs out
// (ExpireLease) returns the job to its queue and counts an attempt, or
// fails it after the last allowed attempt. The run ends with EndRun.
//
// Like server/job_rules.h, nothing here does I/O: the callers apply these
// inside JobStore::MutateJob, so a lease is handed out at most once at a
// time and a late writer never resurrects a final job.
//
// Thread safety: every function is safe to call from many threads on
// distinct mutations.

#ifndef JOBLINE_SERVER_LEASE_RULES_H_
#define JOBLINE_SERVER_LEASE_RULES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/struct.pb.h"
#include "jobline/v2/jobs.pb.h"
#include "jobline/v2/worker.pb.h"
#include "storage/job_store.h"

namespace jobline {

// Takes job `mutation.job` out of `queue` (kRunnerHolder, or "" for the
// workers' queue) under a new lease `lease_id` held by `holder` (a worker's
// name, or kRunnerHolder) that runs out at `expires`.
// The attempt count rises by one; the job moves to STARTED (started_at set)
// with the log lines `Running job #12 "name" (PENDING)` and the status
// change. ABORTED when the job is no longer PENDING in that queue (taken,
// cancelled or deleted meanwhile): the caller skips it.
absl::Status GrantLease(absl::string_view queue, absl::string_view holder,
                        absl::string_view lease_id, absl::Time now,
                        absl::Time expires, JobMutation& mutation);

// OK when `lease_id` is the job's current lease and has not run out at
// `now`. Otherwise FAILED_PRECONDITION saying why: the job is already final
// ("job 12 is already SUCCESS"), the lease is not the job's ("lease ... is
// not the current lease of job 12"), or it ran out.
absl::Status CheckLease(absl::string_view lease_id, absl::Time now,
                        const JobMutation& mutation);

// Gives the job back to its queue as if the lease had never been granted:
// PENDING, started_at cleared, the attempt not counted, with an INFO line
// saying `why`. For a lease whose holder never got to work (the worker went
// away before the answer reached it, or the server is stopping).
// ABORTED when the job is not leased.
absl::Status ReleaseLease(absl::string_view why, JobMutation& mutation);

// Moves the deadline of the current lease to `expires` (never earlier).
void RenewLease(absl::Time expires, JobMutation& mutation);

// Whether the holder of the lease should stop: a cancel was requested.
bool CancelRequested(const JobMutation& mutation);

// Applies worker stage updates in order: a stage that does not exist is
// created when the update has a name (key = its key or slug(name)), the
// status may be STARTED, SUCCESS or FAILURE, progress 0..1 (lower keeps the
// higher value, D18), params are added or updated by name or key. Then
// the summary is recomputed. INVALID_ARGUMENT naming the field, e.g.
// "stages[1].progress" or "stages[0].key"; on error nothing changes.
absl::Status ApplyStageUpdates(
    const google::protobuf::RepeatedPtrField<v2::StageUpdate>& updates,
    v2::JobProgress& progress);

// The most a worker may send in one report.
struct ReportLimits {
  // Bytes of one log message (64 KiB by default).
  size_t max_message_bytes = 64 * 1024;
  // Log lines in one report.
  int max_lines = 1000;
};

// Parses worker log lines into NewLogLines; DEBUG lines are dropped (the
// job log keeps INFO and above, spec 4.1). INVALID_ARGUMENT naming
// "logs[i].level" for a level other than DEBUG, INFO, WARNING, ERROR or
// CRITICAL, or "logs[i].message" for a blank one. RESOURCE_EXHAUSTED,
// naming the limit, for more lines than limits.max_lines or a message
// longer than limits.max_message_bytes.
absl::StatusOr<std::vector<NewLogLine>> ParseWorkerLogs(
    const google::protobuf::RepeatedPtrField<v2::WorkerLogLine>& lines,
    const ReportLimits& limits = {});

// How a run ends.
struct RunEnd {
  // SUCCESS or FAILURE (a CANCELING job becomes REVOKED whatever this is).
  v2::JobStatus status = v2::SUCCESS;
  // For FAILURE: logged at ERROR (and so in the job's stderr).
  std::string error;
  // Stored as the job's result when set.
  const google::protobuf::Value* result = nullptr;
};

// Ends the run of a leased job: SUCCESS (INVALID_ARGUMENT "status" unless
// every stage is at progress 1.0; such stages that are not final become
// SUCCESS), FAILURE (the error logged), or REVOKED when a cancel was
// requested. Logs the status change and `Finished job #12 "name"
// (SUCCESS)`, and clears the lease.
absl::Status EndRun(const RunEnd& end, absl::Time now, JobMutation& mutation);

// Hands a job whose built-in part is done (the delay stage) back to the
// workers' queue: PENDING, lease cleared, attempts back to 0 so the workers
// get every attempt. A CANCELING job is REVOKED instead.
void HandToWorkers(absl::Time now, JobMutation& mutation);

// Ends a lease that ran out at `now` (or whose holder died): a CANCELING job
// becomes REVOKED; a job that used `max_attempts` attempts fails with an
// ERROR line saying so; any other job returns to its queue (PENDING) with a
// WARNING line. ABORTED when the job is not leased or the lease has not run
// out and `force` is false.
absl::Status ExpireLease(absl::Time now, int32_t max_attempts, bool force,
                         JobMutation& mutation);

// The stale-job reaper (spec 8.3): a job in a running status whose last
// update is older than `cutoff` becomes REVOKED with a WARNING line that
// gives the reason (idle minutes, the threshold, the previous status and
// each stage as key=pct% STATUS). ABORTED when the job no longer qualifies.
absl::Status Reap(absl::Time now, absl::Duration cutoff, JobMutation& mutation);

}  // namespace jobline

#endif  // JOBLINE_SERVER_LEASE_RULES_H_
