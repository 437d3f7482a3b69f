// JobManager: the operations of the jobs API, on a JobStore.
//
// Every front door of Jobline (the gRPC services, and later the REST face,
// the runner and the worker protocol) goes through this class, so the rules
// of the API are applied in one place: it validates requests, checks that
// referenced records exist, applies the rules of server/job_rules.h inside
// JobStore::MutateJob (so concurrent writers never lose each other's
// changes, D19) and fills the presentation fields of the answers.
//
// Errors are absl::Status; the gRPC adapters turn them into grpc::Status
// with ToGrpcStatus() (server/status_util.h):
//   INVALID_ARGUMENT    a bad field, with a google.rpc.BadRequest payload
//                       naming it (see InvalidFieldError)
//   NOT_FOUND           an unknown job ("job 12 not found") or record
//   FAILED_PRECONDITION an action the job's status does not allow (D6)
//   others              from the store (UNAVAILABLE for a read-only
//                       database, ABORTED when it stayed busy, ...)
//
// Thread safety: safe for concurrent use; the manager has no mutable state
// of its own and the store is safe for concurrent use.

#ifndef JOBLINE_SERVER_JOB_MANAGER_H_
#define JOBLINE_SERVER_JOB_MANAGER_H_

#include <cstdint>
#include <functional>
#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "jobline/v2/catalog.pb.h"
#include "jobline/v2/jobs.pb.h"
#include "server/work_signal.h"
#include "storage/job_store.h"

namespace jobline {

struct JobManagerOptions {
  // Zone of the timestamps inside log lines ("[YYYY-MM-DD HH:MM:SS] ...").
  absl::TimeZone zone = absl::UTCTimeZone();
  // Notified after a write that puts a job in the workers' queue, so that
  // waiting workers look at it. Not owned; may be null.
  WorkSignal* work_signal = nullptr;
  // Notified after a write that puts a job in the built-in runner's queue
  // (JobLease::holder kRunnerHolder) or asks a job the runner holds to
  // stop (a cancel), so that the runner looks then and at no other write.
  // Not owned; null: work_signal is notified for these writes too.
  WorkSignal* runner_signal = nullptr;
  // The largest page ListJobs serves; a larger limit is RESOURCE_EXHAUSTED.
  int64_t max_page_size = 10000;
};

// Log lines in a single-job answer when the request names no limit, and the
// most a request may ask for (spec 4.2).
inline constexpr int kDefaultLogsLimit = 1000;
inline constexpr int kMaxLogsLimit = 5000;

// Page sizes of ListJobs when the request names none (spec 6.4, 6.7).
inline constexpr int64_t kDefaultPageSize = 10;
inline constexpr int64_t kDefaultIdsOnlyPageSize = 1;

class JobManager {
 public:
  // `store` and `clock` are not owned and must outlive the manager.
  JobManager(JobStore* store, Clock* clock, JobManagerOptions options = {});

  JobManager(const JobManager&) = delete;
  JobManager& operator=(const JobManager&) = delete;

  // ---- Jobs ----
  //
  // Every method that returns a Job returns it as a single-job answer:
  // decorated, with `result` and its newest log lines.

  // Creates a job in CREATED, or PENDING with start_now, in one
  // transaction. INVALID_ARGUMENT for a missing or bad field, an unknown
  // job type (D2) or a reference id that names no record
  // ('Invalid pk "99" - object does not exist.' on the *_id field).
  absl::StatusOr<v2::Job> CreateJob(const v2::CreateJobRequest& request);

  // One job with at most logs_limit (1..5000, default 1000) newest lines.
  // NOT_FOUND also when project_id names an existing project the job does
  // not belong to (spec 5).
  absl::StatusOr<v2::Job> GetJob(const v2::GetJobRequest& request);

  // One page of jobs, filtered and ordered as spec 6 says. Filter values
  // are checked: an unknown status, job type or dispatch mode, or a
  // reference filter naming no record, is INVALID_ARGUMENT on that field;
  // so are a negative limit, offset, project_id or cutoff_hours.
  absl::StatusOr<v2::ListJobsResponse> ListJobs(
      const v2::ListJobsRequest& request);

  // A full replace without update_mask, a patch of the masked fields with
  // it. Validated like CreateJob; a job without stages gets its setup
  // stages (spec 3.4).
  absl::StatusOr<v2::Job> UpdateJob(const v2::UpdateJobRequest& request);

  // Deletes a job and its log lines.
  absl::Status DeleteJob(const v2::DeleteJobRequest& request);

  // The actions of spec 5.4 - 5.6 with the preconditions of D6.
  absl::StatusOr<v2::Job> RunJob(const v2::RunJobRequest& request);
  absl::StatusOr<v2::Job> RetryJob(const v2::RetryJobRequest& request);
  absl::StatusOr<v2::Job> CancelJob(const v2::CancelJobRequest& request);

  // The same without a project scope.
  absl::Status DeleteJob(int64_t id);
  absl::StatusOr<v2::Job> RunJob(int64_t id);
  absl::StatusOr<v2::Job> RetryJob(int64_t id);
  absl::StatusOr<v2::Job> CancelJob(int64_t id);

  // ---- Reference records ----

  // Upserts the records of `catalog`, all or nothing. INVALID_ARGUMENT
  // names the first bad record, e.g. "capture_collections[0].method".
  absl::StatusOr<v2::ImportCatalogResponse> ImportCatalog(
      const v2::Catalog& catalog);

  // Replaces the members of a capture collection (JobStore::
  // SetCollectionCaptures). NOT_FOUND for an unknown collection;
  // INVALID_ARGUMENT names the first bad capture.
  absl::StatusOr<v2::SetCollectionCapturesResponse> SetCollectionCaptures(
      const v2::SetCollectionCapturesRequest& request);

  // A record by id, decorated (details path, user_permissions).
  absl::StatusOr<v2::Project> GetProject(int64_t id);
  absl::StatusOr<v2::Deployment> GetDeployment(int64_t id);
  absl::StatusOr<v2::CaptureCollection> GetCaptureCollection(int64_t id);
  absl::StatusOr<v2::Capture> GetCapture(int64_t id);
  absl::StatusOr<v2::Pipeline> GetPipeline(int64_t id);

 private:
  // INVALID_ARGUMENT on the *_id field of the first reference of `input`
  // that names no record.
  absl::Status CheckReferences(const v2::JobInput& input);

  // The single-job answer for a job just read or written: decorated, with
  // its newest `logs_limit` log lines.
  absl::StatusOr<v2::Job> DetailView(v2::Job job, int logs_limit);
  // The same with the lines given (newest first), for an answer that knows
  // them without a read.
  v2::Job DecoratedView(v2::Job job, absl::Span<const LogLine> lines) const;

  // Wakes whoever waits for a job left in `status` with `lease` by a
  // write: the workers for a job waiting in their queue, the runner for
  // one waiting in its queue or one it holds that is to stop.
  void NotifyQueues(v2::JobStatus status, const JobLease& lease);

  // The project that scopes a job lookup (spec 5): the request's
  // project_id when it names an existing project, else none.
  // INVALID_ARGUMENT for a negative project_id or cutoff_hours.
  absl::StatusOr<std::optional<int64_t>> LookupProject(bool has_project_id,
                                                       int64_t project_id,
                                                       bool has_cutoff_hours,
                                                       int64_t cutoff_hours);
  template <typename Request>
  absl::StatusOr<std::optional<int64_t>> LookupProject(const Request& request) {
    return LookupProject(request.has_project_id(), request.project_id(),
                         request.has_cutoff_hours(), request.cutoff_hours());
  }

  // Applies `rule` to job `id` in one transaction and returns the detail
  // view of the result. A job outside `project` (when set) is NOT_FOUND.
  absl::StatusOr<v2::Job> Mutate(
      int64_t id, std::optional<int64_t> project,
      const std::function<absl::Status(JobMutation&)>& rule);

  JobStore* const store_;  // Not owned.
  Clock* const clock_;     // Not owned.
  const JobManagerOptions options_;
};

}  // namespace jobline

#endif  // JOBLINE_SERVER_JOB_MANAGER_H_
