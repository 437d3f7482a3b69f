// JobStore: durable storage of jobs, their log lines and the reference
// records (projects, deployments, capture collections, captures, pipelines,
// data exports) that jobs point to.
//
// The store knows nothing of gRPC. It speaks the API's message types
// (jobline::v2::Job and the record messages) so that no second model has to
// be kept in step, but it stores and returns only what is stored: it never
// fills the presentation fields of a Job (details, user_permissions,
// duration, job_type.name, the status labels); the server does.
//
// Errors (every method):
//   NOT_FOUND           an id that does not exist
//   INVALID_ARGUMENT    a value the schema cannot hold (e.g. a reference id
//                       that names no record; a record without its key)
//   FAILED_PRECONDITION a write that would move a final job to another
//                       status without `allow_leave_final`
//   ABORTED             the database stayed busy past the busy timeout
//   UNAVAILABLE         the database cannot be written now (read-only
//                       file, full disk)
//   DATA_LOSS           the file is not a database or is corrupt
//   INTERNAL            anything else
// Messages never contain SQL text; they may name the database file only in
// errors returned by the factory (operator-facing).
//
// Thread safety: implementations are safe for concurrent use from many
// threads.

#ifndef JOBLINE_STORAGE_JOB_STORE_H_
#define JOBLINE_STORAGE_JOB_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "jobline/v2/catalog.pb.h"
#include "jobline/v2/jobs.pb.h"

namespace jobline {

// Severity of a job log line, as Python's logging names them.
enum class LogLevel { kDebug, kInfo, kWarning, kError, kCritical };

// "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL".
const char* LogLevelName(LogLevel level);

// One stored log line of a job.
struct LogLine {
  int64_t id = 0;  // Assigned by the store; increases with every append.
  int64_t job_id = 0;
  // The job's sequence (v2::Job.sequence) after the change that appended
  // it; 0 for lines stored before sequences were.
  int64_t sequence = 0;
  absl::Time created_at;
  LogLevel level = LogLevel::kInfo;
  std::string message;
};

// A log line to append. The store stamps it with its clock.
struct NewLogLine {
  LogLevel level = LogLevel::kInfo;
  std::string message;
};

// One ordering key of a job list.
enum class JobOrderField {
  kName,
  kCreatedAt,
  kUpdatedAt,
  kStatus,
  kStartedAt,
  kFinishedAt,
  kProject,
  kDeployment,
  kSourceImageCollection,
  kPipeline,
};

struct JobOrder {
  JobOrderField field = JobOrderField::kCreatedAt;
  bool descending = true;
};

// Filters, ordering and paging of ListJobs. Unset filters match every job.
// Values are already validated by the caller (statuses, keys, ids).
struct JobQuery {
  std::optional<v2::JobStatus> status;
  std::optional<int64_t> project_id;
  std::optional<int64_t> deployment_id;
  std::optional<int64_t> source_image_collection_id;
  std::optional<int64_t> source_image_single_id;
  std::optional<int64_t> pipeline_id;
  std::optional<std::string> pipeline_slug;
  // Non-empty: the job's pipeline slug is one of these; jobs without a
  // pipeline are excluded.
  std::vector<std::string> pipeline_slug_in;
  std::optional<std::string> job_type_key;
  std::optional<std::string> dispatch_mode;
  // Exclude final jobs and jobs that have a stage with key "results" whose
  // status is final.
  bool incomplete_only = false;
  // Every term must occur, case-insensitively for ASCII letters, in the
  // job's name or its pipeline's name. Terms are matched literally ('%' and
  // '_' are not wildcards).
  std::vector<std::string> search_terms;
  // Applied in order. Nulls sort last in both directions. Ties fall back to
  // newest id first. Empty: newest created_at first.
  std::vector<JobOrder> ordering;
  // Random order (ignored when `ordering` is non-empty).
  bool random_order = false;
  int64_t limit = 10;  // > 0
  int64_t offset = 0;  // >= 0
  // Fill job.result (single-job views only).
  bool include_result = false;
};

struct JobPage {
  int64_t count = 0;  // Matches over all pages.
  std::vector<v2::Job> jobs;
};

// Who is executing a job: a worker that leased it through the worker
// protocol, or the server's own runner (built-in work). Stored with the
// job; written only through JobMutation.
struct JobLease {
  // Opaque id of the current lease; empty when the job is not leased.
  std::string lease_id;
  // Who holds the lease: a worker's name, or kRunnerHolder.
  std::string holder;
  // When the lease runs out unless renewed. InfinitePast when not leased.
  absl::Time expires_at = absl::InfinitePast();
  // Leases handed out for the current run of the job (the first lease is
  // attempt 1). Kept when a lease ends; set back to 0 by an enqueue.
  int32_t attempts = 0;

  bool leased() const { return !lease_id.empty(); }
};

// The holder name of leases held by the server's built-in runner.
inline constexpr char kRunnerHolder[] = "jobline-runner";

// Which job ids FindJobIds returns. Unset conditions match every job.
struct JobIdQuery {
  // The job's status is one of these.
  std::vector<v2::JobStatus> statuses;
  // The job's type key is one of these.
  std::vector<std::string> job_types;
  // true: only leased jobs; false: only jobs without a lease.
  std::optional<bool> leased;
  // Only jobs whose lease holder is this: the holder of a leased job, or
  // the queue ("" or kRunnerHolder) of a job waiting unleased.
  std::optional<std::string> holder;
  // Only leased jobs whose lease expires_at is before this.
  std::optional<absl::Time> lease_expires_before;
  // Only jobs whose updated_at is before this.
  std::optional<absl::Time> updated_before;
  // At most this many ids (> 0), oldest scheduled first (jobs never
  // scheduled first of all), then by id.
  int64_t limit = 100;
};

// A status a job entered, with the change that set it.
struct StatusChange {
  int64_t sequence = 0;
  v2::JobStatus status = v2::JOB_STATUS_UNSPECIFIED;
  absl::Time changed_at;
};

// One committed write of a job, as a JobStore reports it to its change
// listener.
struct JobChangeEvent {
  int64_t job_id = 0;
  // The job's sequence after the write (0 for a deletion).
  int64_t sequence = 0;
  // The job as written, as GetJob returns it; null when the write only
  // appended log lines or deleted the job.
  std::shared_ptr<const v2::Job> job;
  // Set when the write gave the job a status (its creation, or a change).
  std::optional<StatusChange> status_change;
  // The lines the write appended, in order.
  std::vector<LogLine> logs;
  bool deleted = false;
};

// Called by a JobStore after each committed write, in commit order, with
// the store's lock held: it must return quickly and must not call the
// store.
using JobChangeListener = std::function<void(const JobChangeEvent&)>;

// What changed in a job after some sequence (JobStore::ReadChanges).
struct JobChanges {
  // The job now, as GetJob returns it (job.sequence the newest change).
  v2::Job job;
  // Statuses entered after the sequence, oldest first.
  std::vector<StatusChange> status_changes;
  // Lines appended after the sequence, oldest first.
  std::vector<LogLine> logs;
  // More lines were appended than the caller asked for; `logs` is then
  // empty and the caller should start again from the job's document.
  bool too_many_logs = false;
};

// The state a JobStore::MutateJob callback may change.
struct JobMutation {
  // The job as stored, read inside the write transaction. Writable fields:
  // name, delay, limit, shuffle, the reference ids (project.id,
  // deployment.id, source_image_collection.id, source_image_single.id,
  // pipeline.id, data_export.id; clear the message for null), job_type.key,
  // dispatch_mode, status, started_at, finished_at, progress, result.
  // Other fields are ignored on write; updated_at is set by the store.
  v2::Job job;
  // The job's lease as stored; written back with the job.
  JobLease lease;
  // Lines appended in the same transaction.
  std::vector<NewLogLine> logs;
  // Let a final job (SUCCESS, FAILURE, REVOKED) move to another status.
  // Only a retry sets this.
  bool allow_leave_final = false;
};

class JobStore {
 public:
  virtual ~JobStore() = default;

  // ---- Jobs ----

  // Inserts `job` (the writable fields above; status is normally CREATED)
  // with `logs`, in one transaction. Assigns id, created_at and updated_at.
  // Returns the job as GetJob would. INVALID_ARGUMENT if a reference id
  // names no record.
  virtual absl::StatusOr<v2::Job> CreateJob(const v2::Job& job,
                                            const std::vector<NewLogLine>& logs,
                                            const JobLease& lease) = 0;

  // CreateJob without a lease: the job waits in no queue.
  absl::StatusOr<v2::Job> CreateJob(const v2::Job& job,
                                    const std::vector<NewLogLine>& logs) {
    return CreateJob(job, logs, JobLease());
  }

  // Returns the job with its reference records filled in (project,
  // deployment, ... as stored in the catalogue) and `result`. Does not
  // fill logs.
  virtual absl::StatusOr<v2::Job> GetJob(int64_t id) = 0;

  // Returns one page of jobs and the total count. Items have their
  // reference records filled in; `result` only with include_result.
  virtual absl::StatusOr<JobPage> ListJobs(const JobQuery& query) = 0;

  // Reads the job, calls `mutate` on it and writes the result, all in one
  // IMMEDIATE transaction, so concurrent writers never lose each other's
  // changes. If `mutate` returns an error nothing is written and that error
  // is returned. The write is a conditional update on the status read, and
  // is refused with FAILED_PRECONDITION if the job was final and the new
  // status differs, unless allow_leave_final. Returns the job as written.
  virtual absl::StatusOr<v2::Job> MutateJob(
      int64_t id, const std::function<absl::Status(JobMutation&)>& mutate) = 0;

  // Deletes the job and its log lines.
  virtual absl::Status DeleteJob(int64_t id) = 0;

  // The ids of the jobs that match `query`, in its order. For the runner,
  // the lease sweeper, the reaper and recovery: each then changes a job with
  // MutateJob, which re-reads it, so a stale id is harmless.
  virtual absl::StatusOr<std::vector<int64_t>> FindJobIds(
      const JobIdQuery& query) = 0;

  // The lease of job `id` as stored. NOT_FOUND for an unknown job.
  virtual absl::StatusOr<JobLease> GetLease(int64_t id) = 0;

  // Sets the listener told of every committed write from now on (see
  // JobChangeListener); an empty function removes it. Set it before the
  // store is shared between threads.
  virtual void SetChangeListener(JobChangeListener listener) = 0;

  // The job `id` and its status changes and log lines with a sequence
  // greater than `after_sequence`, read in one snapshot. At most
  // `max_logs` lines (else too_many_logs). NOT_FOUND for an unknown job.
  virtual absl::StatusOr<JobChanges> ReadChanges(int64_t id,
                                                 int64_t after_sequence,
                                                 int max_logs) = 0;

  // ---- Log lines ----

  // Appends lines to a job's log. NOT_FOUND if the job does not exist.
  virtual absl::Status AppendLogs(int64_t job_id,
                                  const std::vector<NewLogLine>& lines) = 0;

  // Returns at most `limit` lines of a job, newest first (by created_at,
  // then id). An unknown job has no lines.
  virtual absl::StatusOr<std::vector<LogLine>> ReadLogs(int64_t job_id,
                                                        int limit) = 0;

  // ---- Reference records ----

  // Upserts every record of `catalog` by id in one transaction (all or
  // nothing), in the order projects, deployments, pipelines, capture
  // collections, captures, data exports. Presentation fields (details,
  // user_permissions) are not stored.
  virtual absl::StatusOr<v2::ImportCatalogResponse> ImportCatalog(
      const v2::Catalog& catalog) = 0;

  // Replaces the members of capture collection `collection_id` with
  // `captures`, in one transaction: each capture is upserted (one whose id
  // is 0 is matched by its non-empty path, or created with a new id; its
  // deployment, when non-zero, must exist) and the collection's members
  // become exactly these. Returns the member count. NOT_FOUND for an
  // unknown collection; INVALID_ARGUMENT naming the first bad capture
  // ("captures[3].path: ...").
  virtual absl::StatusOr<int64_t> SetCollectionCaptures(
      int64_t collection_id, const std::vector<v2::Capture>& captures) = 0;

  // The ids of the members of a collection, ascending (empty for an
  // unknown collection).
  virtual absl::StatusOr<std::vector<int64_t>> ListCollectionCaptureIds(
      int64_t collection_id) = 0;

  // GetCaptureCollection fills capture_count with the member count.
  virtual absl::StatusOr<v2::Project> GetProject(int64_t id) = 0;
  virtual absl::StatusOr<v2::Deployment> GetDeployment(int64_t id) = 0;
  virtual absl::StatusOr<v2::CaptureCollection> GetCaptureCollection(
      int64_t id) = 0;
  virtual absl::StatusOr<v2::Capture> GetCapture(int64_t id) = 0;
  virtual absl::StatusOr<v2::Pipeline> GetPipeline(int64_t id) = 0;
  virtual absl::StatusOr<v2::DataExport> GetDataExport(int64_t id) = 0;
};

// A source of the current time. Tests substitute a fake.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() = 0;
};

// The real clock (absl::Now()). Never null; not owned by callers.
Clock* RealClock();

}  // namespace jobline

#endif  // JOBLINE_STORAGE_JOB_STORE_H_
