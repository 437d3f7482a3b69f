#include "server/worker_protocol.h"

#include <algorithm>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "glog/logging.h"
#include "google/protobuf/util/time_util.h"
#include "server/job_rules.h"
#include "server/lease_rules.h"
#include "server/status_util.h"
#include "storage/status_macros.h"

namespace jobline {
namespace {

using google::protobuf::util::TimeUtil;

constexpr int kMaxJobsPerLease = 100;
// Ids read per pass of the upkeep sweeps.
constexpr int64_t kSweepBatch = 1000;

absl::Duration FromProto(const google::protobuf::Duration& duration) {
  return absl::Seconds(duration.seconds()) +
         absl::Nanoseconds(duration.nanos());
}

// The lease length a request asks for: `requested` when set, else the
// default. INVALID_ARGUMENT on `field` outside (0, max].
absl::StatusOr<absl::Duration> LeaseLength(
    bool has, const google::protobuf::Duration& requested,
    const WorkerProtocolOptions& options, absl::string_view field) {
  if (!has) return options.default_lease;
  const absl::Duration length = FromProto(requested);
  if (length <= absl::ZeroDuration() || length > options.max_lease) {
    return InvalidFieldError(
        field, absl::StrCat("Ensure this value is more than 0 and at most ",
                            absl::FormatDuration(options.max_lease), "."));
  }
  return length;
}

// The job as a worker sees it.
v2::Job WorkerView(v2::Job job) {
  DecorateJob(job);
  return job;
}

}  // namespace

std::string NewLeaseId() {
  thread_local absl::BitGen bits;
  return absl::StrFormat("%016x%016x", absl::Uniform<uint64_t>(bits),
                         absl::Uniform<uint64_t>(bits));
}

WorkerProtocol::WorkerProtocol(JobStore* store, Clock* clock,
                               WorkSignal* signal,
                               WorkerProtocolOptions options)
    : store_(store), clock_(clock), signal_(signal), options_(options) {}

// ---- The worker protocol ----------------------------------------------------

absl::StatusOr<v2::LeaseJobsResponse> WorkerProtocol::LeaseJobs(
    const v2::LeaseJobsRequest& request,
    const std::function<bool()>& caller_gone, absl::Time caller_deadline) {
  if (request.worker_id().empty()) {
    return InvalidFieldError("worker_id", "This field may not be blank.");
  }
  if (request.job_types().empty()) {
    return InvalidFieldError("job_types", "Name at least one job type.");
  }
  for (int i = 0; i < request.job_types_size(); ++i) {
    if (FindJobType(request.job_types(i)) == nullptr) {
      return InvalidFieldError(absl::StrCat("job_types[", i, "]"),
                               absl::StrCat("\"", request.job_types(i),
                                            "\" is not a valid choice."));
    }
  }
  if (request.max_jobs() < 0 || request.max_jobs() > kMaxJobsPerLease) {
    return InvalidFieldError("max_jobs",
                             absl::StrCat("Ensure this value is between 1 and ",
                                          kMaxJobsPerLease, "."));
  }
  const int max_jobs = std::max(1, request.max_jobs());
  JOBS_ASSIGN_OR_RETURN(
      const absl::Duration length,
      LeaseLength(request.has_lease_duration(), request.lease_duration(),
                  options_, "lease_duration"));
  const absl::Duration wait =
      request.has_wait() ? FromProto(request.wait()) : absl::ZeroDuration();
  if (wait < absl::ZeroDuration() || wait > options_.max_wait) {
    return InvalidFieldError(
        "wait", absl::StrCat("Ensure this value is between 0 and ",
                             absl::FormatDuration(options_.max_wait), "."));
  }

  JobIdQuery query;
  query.statuses = {v2::PENDING};
  query.job_types.assign(request.job_types().begin(),
                         request.job_types().end());
  query.leased = false;
  query.holder = "";

  // Take what is waiting; with `wait`, wait for more until the deadline.
  v2::LeaseJobsResponse response;
  // Leave the caller a moment to receive the answer before its deadline.
  const absl::Time deadline =
      std::min(absl::Now() + wait, caller_deadline - absl::Milliseconds(200));
  while (true) {
    const uint64_t seen = signal_->generation();
    JOBS_ASSIGN_OR_RETURN(
        const Claim claim,
        ClaimWaiting(query, max_jobs - response.leases_size()));
    bool lost_any = false;
    absl::Status failed;
    for (const int64_t id : claim.mine) {
      if (response.leases_size() >= max_jobs || caller_gone() || !failed.ok()) {
        Unclaim(id);
        continue;
      }
      absl::StatusOr<v2::Lease> lease =
          Grant(id, "", request.worker_id(), length);
      Unclaim(id);
      if (lease.ok()) {
        *response.add_leases() = *std::move(lease);
      } else if (absl::IsAborted(lease.status()) ||
                 absl::IsNotFound(lease.status())) {
        // Cancelled, deleted or moved to the runner meanwhile.
        lost_any = true;
        lost_grants_.fetch_add(1, std::memory_order_relaxed);
      } else {
        failed = lease.status();
        // The job may still wait: whoever waits should look again.
        signal_->Notify();
      }
    }
    if (!failed.ok()) {
      if (response.leases_size() == 0) return failed;
      break;
    }
    if (response.leases_size() > 0 || signal_->closed()) break;
    // A job found was taken by a write of another kind first; more may be
    // waiting behind it: look again at once.
    if (lost_any) continue;
    if (caller_gone()) break;
    if (absl::Now() >= deadline) {
      // Before an empty answer: jobs other calls were granting may still
      // wait if a grant failed. Look again once those grants are over, so
      // that an empty answer means no job was waiting.
      if (claim.others.empty()) break;
      AwaitUnclaimed(claim.others);
      continue;
    }
    signal_->WaitForChange(seen, deadline);
  }

  // A caller that left will never see these leases: give the jobs back.
  if (caller_gone() && response.leases_size() > 0) {
    for (const v2::Lease& lease : response.leases()) {
      (void)store_->MutateJob(lease.job().id(), [&](JobMutation& mutation) {
        JOBS_RETURN_IF_ERROR(
            CheckLease(lease.lease_id(), clock_->Now(), mutation));
        return ReleaseLease(absl::StrCat("worker ", request.worker_id(),
                                         " went away before it got the job"),
                            mutation);
      });
    }
    signal_->Notify();
    return absl::CancelledError("the caller went away");
  }
  return response;
}

absl::StatusOr<v2::HeartbeatResponse> WorkerProtocol::Heartbeat(
    const v2::HeartbeatRequest& request) {
  JOBS_ASSIGN_OR_RETURN(
      const absl::Duration length,
      LeaseLength(request.has_lease_duration(), request.lease_duration(),
                  options_, "lease_duration"));
  const absl::Time expires = clock_->Now() + length;
  JOBS_ASSIGN_OR_RETURN(const LeasedWrite written,
                        UnderLease(request.job_id(), request.lease_id(),
                                   [expires](JobMutation& mutation) {
                                     RenewLease(expires, mutation);
                                     return absl::OkStatus();
                                   }));
  v2::HeartbeatResponse response;
  *response.mutable_expires_at() = ToProtoTime(written.lease.expires_at);
  response.set_cancel_requested(written.job.status() == v2::CANCELING);
  return response;
}

absl::StatusOr<v2::ReportProgressResponse> WorkerProtocol::ReportProgress(
    const v2::ReportProgressRequest& request) {
  JOBS_ASSIGN_OR_RETURN(
      const absl::Duration length,
      LeaseLength(request.has_lease_duration(), request.lease_duration(),
                  options_, "lease_duration"));
  JOBS_ASSIGN_OR_RETURN(
      std::vector<NewLogLine> logs,
      ParseWorkerLogs(request.logs(), options_.report_limits));
  const absl::Time expires = clock_->Now() + length;
  JOBS_ASSIGN_OR_RETURN(
      const LeasedWrite written,
      UnderLease(request.job_id(), request.lease_id(),
                 [&request, &logs, expires](JobMutation& mutation) {
                   JOBS_RETURN_IF_ERROR(ApplyStageUpdates(
                       request.stages(), *mutation.job.mutable_progress()));
                   mutation.logs.insert(mutation.logs.end(), logs.begin(),
                                        logs.end());
                   RenewLease(expires, mutation);
                   return absl::OkStatus();
                 }));
  v2::ReportProgressResponse response;
  *response.mutable_expires_at() = ToProtoTime(written.lease.expires_at);
  response.set_cancel_requested(written.job.status() == v2::CANCELING);
  return response;
}

absl::StatusOr<v2::FinishJobResponse> WorkerProtocol::FinishJob(
    const v2::FinishJobRequest& request) {
  if (request.status() != v2::SUCCESS && request.status() != v2::FAILURE) {
    return InvalidFieldError("status", "A run ends with SUCCESS or FAILURE.");
  }
  JOBS_ASSIGN_OR_RETURN(
      std::vector<NewLogLine> logs,
      ParseWorkerLogs(request.logs(), options_.report_limits));
  RunEnd end;
  end.status = request.status();
  end.error = request.error();
  if (end.status == v2::FAILURE && end.error.empty()) {
    end.error = "the worker reported a failure without a reason";
  }
  if (request.has_result()) end.result = &request.result();
  const absl::Time now = clock_->Now();
  JOBS_ASSIGN_OR_RETURN(
      LeasedWrite written,
      UnderLease(request.job_id(), request.lease_id(),
                 [&request, &logs, &end, now](JobMutation& mutation) {
                   JOBS_RETURN_IF_ERROR(ApplyStageUpdates(
                       request.stages(), *mutation.job.mutable_progress()));
                   mutation.logs.insert(mutation.logs.end(), logs.begin(),
                                        logs.end());
                   return EndRun(end, now, mutation);
                 }));
  // A finished job is nobody's work: no waiter is woken.
  v2::FinishJobResponse response;
  *response.mutable_job() = WorkerView(std::move(written.job));
  return response;
}

// ---- Upkeep -----------------------------------------------------------------

absl::StatusOr<v2::Lease> WorkerProtocol::Grant(int64_t id,
                                                absl::string_view queue,
                                                absl::string_view holder,
                                                absl::Duration length) {
  const std::string lease_id = NewLeaseId();
  const absl::Time now = clock_->Now();
  JobLease granted;
  JOBS_ASSIGN_OR_RETURN(
      v2::Job job, store_->MutateJob(id, [&](JobMutation& mutation) {
        JOBS_RETURN_IF_ERROR(
            GrantLease(queue, holder, lease_id, now, now + length, mutation));
        granted = mutation.lease;
        return absl::OkStatus();
      }));
  VLOG(1) << "leased job " << id << " to " << holder;
  v2::Lease lease;
  lease.set_lease_id(lease_id);
  *lease.mutable_job() = WorkerView(std::move(job));
  *lease.mutable_expires_at() = ToProtoTime(granted.expires_at);
  lease.set_attempt(granted.attempts);
  return lease;
}

absl::StatusOr<int> WorkerProtocol::ExpireLeases() {
  JobIdQuery query;
  query.leased = true;
  query.lease_expires_before = clock_->Now();
  return EndLeases(query, /*force=*/false);
}

absl::StatusOr<int> WorkerProtocol::RecoverRunnerLeases() {
  JobIdQuery query;
  query.leased = true;
  query.holder = kRunnerHolder;
  return EndLeases(query, /*force=*/true);
}

absl::StatusOr<int> WorkerProtocol::ReleaseRunnerLeases() {
  JobIdQuery query;
  query.leased = true;
  query.holder = kRunnerHolder;
  query.limit = kSweepBatch;
  JOBS_ASSIGN_OR_RETURN(const std::vector<int64_t> ids,
                        store_->FindJobIds(query));
  int released = 0;
  for (const int64_t id : ids) {
    const absl::Status status =
        store_
            ->MutateJob(id,
                        [](JobMutation& mutation) {
                          return ReleaseLease("the server is stopping",
                                              mutation);
                        })
            .status();
    if (status.ok()) {
      ++released;
    } else if (!absl::IsAborted(status) && !absl::IsNotFound(status)) {
      return status;
    }
  }
  return released;
}

absl::StatusOr<v2::ReapStaleJobsResponse> WorkerProtocol::ReapStaleJobs(
    absl::Duration cutoff, bool dry_run) {
  const absl::Time now = clock_->Now();
  JobIdQuery query;
  query.statuses = {v2::PENDING, v2::STARTED, v2::RETRY, v2::CANCELING,
                    v2::UNKNOWN};
  query.updated_before = now - cutoff;
  query.limit = kSweepBatch;
  JOBS_ASSIGN_OR_RETURN(const std::vector<int64_t> ids,
                        store_->FindJobIds(query));

  v2::ReapStaleJobsResponse response;
  for (const int64_t id : ids) {
    v2::JobStatus previous = v2::JOB_STATUS_UNSPECIFIED;
    absl::Status reaped;
    if (dry_run) {
      // The rule on a copy: nothing is written.
      absl::StatusOr<v2::Job> job = store_->GetJob(id);
      absl::StatusOr<JobLease> lease = store_->GetLease(id);
      if (!job.ok() || !lease.ok()) continue;
      JobMutation copy;
      copy.job = *std::move(job);
      copy.lease = *std::move(lease);
      previous = copy.job.status();
      reaped = Reap(now, cutoff, copy);
    } else {
      reaped = store_
                   ->MutateJob(id,
                               [&](JobMutation& mutation) {
                                 previous = mutation.job.status();
                                 return Reap(now, cutoff, mutation);
                               })
                   .status();
    }
    if (absl::IsAborted(reaped) || absl::IsNotFound(reaped)) continue;
    JOBS_RETURN_IF_ERROR(reaped);
    v2::ReapedJob* job = response.add_jobs();
    job->set_job_id(id);
    job->set_action("revoked");
    job->set_previous_status(previous);
  }
  if (!dry_run && response.jobs_size() > 0) {
    LOG(INFO) << "reaped " << response.jobs_size() << " stalled jobs";
    signal_->Notify();
  }
  return response;
}

absl::StatusOr<WorkerProtocol::Claim> WorkerProtocol::ClaimWaiting(
    JobIdQuery query, int count) {
  absl::MutexLock lock(&claim_mu_);
  // Enough ids that `count` of them are unclaimed, if so many wait.
  query.limit = count + static_cast<int64_t>(claimed_.size());
  JOBS_ASSIGN_OR_RETURN(const std::vector<int64_t> ids,
                        store_->FindJobIds(query));
  Claim claim;
  for (const int64_t id : ids) {
    if (static_cast<int>(claim.mine.size()) >= count) break;
    if (claimed_.insert(id).second) {
      claim.mine.push_back(id);
    } else {
      claim.others.push_back(id);
    }
  }
  return claim;
}

void WorkerProtocol::AwaitUnclaimed(const std::vector<int64_t>& ids) {
  absl::MutexLock lock(&claim_mu_);
  auto unclaimed = [this, &ids]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(claim_mu_) {
    for (const int64_t id : ids) {
      if (claimed_.contains(id)) return false;
    }
    return true;
  };
  claim_mu_.Await(absl::Condition(&unclaimed));
}

void WorkerProtocol::Unclaim(int64_t id) {
  absl::MutexLock lock(&claim_mu_);
  claimed_.erase(id);
}

absl::StatusOr<WorkerProtocol::LeasedWrite> WorkerProtocol::UnderLease(
    int64_t id, const std::string& lease_id,
    const std::function<absl::Status(JobMutation&)>& rule) {
  const absl::Time now = clock_->Now();
  JobLease lease;
  JOBS_ASSIGN_OR_RETURN(
      v2::Job job, store_->MutateJob(id, [&](JobMutation& mutation) {
        JOBS_RETURN_IF_ERROR(CheckLease(lease_id, now, mutation));
        JOBS_RETURN_IF_ERROR(rule(mutation));
        lease = mutation.lease;
        return absl::OkStatus();
      }));
  return LeasedWrite{std::move(job), std::move(lease)};
}

absl::StatusOr<int> WorkerProtocol::EndLeases(const JobIdQuery& query,
                                              bool force) {
  JobIdQuery batch = query;
  batch.limit = kSweepBatch;
  JOBS_ASSIGN_OR_RETURN(const std::vector<int64_t> ids,
                        store_->FindJobIds(batch));
  const absl::Time now = clock_->Now();
  int ended = 0;
  bool to_workers = false;
  bool to_runner = false;
  for (const int64_t id : ids) {
    bool requeued = false;
    bool runners = false;
    const absl::Status status =
        store_
            ->MutateJob(id,
                        [&](JobMutation& mutation) {
                          JOBS_RETURN_IF_ERROR(ExpireLease(
                              now, options_.max_attempts, force, mutation));
                          requeued = mutation.job.status() == v2::PENDING;
                          runners = mutation.lease.holder == kRunnerHolder;
                          return absl::OkStatus();
                        })
            .status();
    if (status.ok()) {
      ++ended;
      to_workers |= requeued && !runners;
      to_runner |= requeued && runners;
    } else if (!absl::IsAborted(status) && !absl::IsNotFound(status)) {
      return status;
    }
  }
  if (ended > 0) LOG(INFO) << "ended " << ended << " leases";
  if (to_workers) signal_->Notify();
  if (to_runner) {
    WorkSignal* runner =
        options_.runner_signal != nullptr ? options_.runner_signal : signal_;
    runner->Notify();
  }
  return ended;
}

}  // namespace jobline
