// The rules of a job's life, as pure functions on the API's messages.
//
// Nothing here does I/O or keeps state: the service (and later the runner
// and the worker protocol) read a job, apply these rules inside
// JobStore::MutateJob, and write the result. The rules follow the jobs API
// contract (docs: shared/spec/jobs-api.md, sections 2, 3 and 7, with the
// Decisions D3, D4, D6, D8 and D18).
//
// Thread safety: every function is safe to call from many threads; the
// messages passed in are owned by the caller and must not be shared while a
// function changes them.

#ifndef JOBLINE_SERVER_JOB_RULES_H_
#define JOBLINE_SERVER_JOB_RULES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "google/protobuf/field_mask.pb.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/timestamp.pb.h"
#include "jobline/v2/catalog.pb.h"
#include "jobline/v2/jobs.pb.h"
#include "storage/job_store.h"

namespace jobline {

// ---- Statuses -------------------------------------------------------------

// PENDING, STARTED, RETRY, CANCELING, UNKNOWN (CREATED is not running).
bool IsRunningStatus(v2::JobStatus status);
// SUCCESS, FAILURE, REVOKED: a final job keeps its status except for a run
// or a retry.
bool IsFinalStatus(v2::JobStatus status);
// CREATED, PENDING, STARTED, RETRY: statuses a job may be moved from to a
// final one by a guarded write.
bool IsFinalizableStatus(v2::JobStatus status);

// The wire name ("CREATED", ...); "" for JOB_STATUS_UNSPECIFIED.
absl::string_view StatusName(v2::JobStatus status);

// Parses one of the ten wire names, exactly (case-sensitive). Anything else,
// "JOB_STATUS_UNSPECIFIED" included, is nullopt.
std::optional<v2::JobStatus> ParseStatus(absl::string_view name);

// The ten statuses in definition order, CREATED to UNKNOWN.
absl::Span<const v2::JobStatus> AllStatuses();

// ---- Job types and dispatch modes -----------------------------------------

struct JobTypeInfo {
  absl::string_view key;
  absl::string_view name;
};

inline constexpr absl::string_view kDefaultJobTypeKey = "ml";

// The seven job types, in the order ml, populate_captures_collection,
// data_storage_sync, regroup_events, unknown, data_export, post_processing.
absl::Span<const JobTypeInfo> JobTypes();

// The type with this key, or nullptr.
const JobTypeInfo* FindJobType(absl::string_view key);

inline constexpr absl::string_view kDispatchInternal = "internal";
inline constexpr absl::string_view kDispatchSyncApi = "sync_api";
inline constexpr absl::string_view kDispatchAsyncApi = "async_api";

bool IsDispatchMode(absl::string_view mode);

// ---- Keys -------------------------------------------------------------------

// The key of a display name (spec 3.2): Latin-1 accents folded to ASCII,
// other non-ASCII characters dropped, lowercased, characters other than
// letters, digits, '_', whitespace and '-' dropped, runs of whitespace and
// '-' collapsed to one '-', leading and trailing '-' and '_' stripped, then
// every '-' replaced by '_'. "Total Images" -> "total_images".
std::string Slugify(absl::string_view name);

// ---- Progress (spec 3.3 - 3.5, D18) ----------------------------------------

// Returns the stage with `key` (or, when `key` is empty, slug(name)),
// appending {CREATED, 0, key, name, no params} if there is none. An existing
// stage is returned unchanged. The pointer is valid until `progress`
// changes shape.
v2::ProgressStage* AddStage(v2::JobProgress& progress, absl::string_view name,
                            absl::string_view key = "");

// The stage whose key is slug(key_or_name), or nullptr.
v2::ProgressStage* FindStage(v2::JobProgress& progress,
                             absl::string_view key_or_name);
const v2::ProgressStage* FindStage(const v2::JobProgress& progress,
                                   absl::string_view key_or_name);

// Returns the param with key slug(name), appending {name, key, "default",
// value} if there is none. An existing param keeps its value.
v2::StageParam* AddParam(v2::ProgressStage& stage, absl::string_view name,
                         const google::protobuf::Value& value);

// Sets the value of the param with key slug(name), appending it as AddParam
// does if there is none.
v2::StageParam* AddOrUpdateParam(v2::ProgressStage& stage,
                                 absl::string_view name,
                                 const google::protobuf::Value& value);

// Value helpers for params.
google::protobuf::Value NumberValue(double number);
google::protobuf::Value StringValue(absl::string_view text);

// A report on one stage. Unset fields are left alone.
struct StageUpdate {
  std::optional<v2::JobStatus> status;
  // 0.0 to 1.0. Lower than the stage's progress: the stage keeps its
  // progress (D18).
  std::optional<double> progress;
  std::optional<std::string> name;
  // Params by display name, added or updated in order (AddOrUpdateParam).
  std::vector<std::pair<std::string, google::protobuf::Value>> params;
};

// Applies `update` to the stage whose key is slug(key_or_name).
// NOT_FOUND if there is no such stage; INVALID_ARGUMENT if the progress is
// outside 0..1 (or NaN) or the status is JOB_STATUS_UNSPECIFIED. On error
// `progress` is unchanged. Does not recompute the summary.
absl::Status UpdateStage(v2::JobProgress& progress,
                         absl::string_view key_or_name,
                         const StageUpdate& update);

// Starts a new attempt (spec 3.3): summary and every stage get `status` and
// progress 0; every numeric or boolean param value becomes 0; strings and
// nulls are kept.
void ResetProgress(v2::JobProgress& progress,
                   v2::JobStatus status = v2::CREATED);

// Spec 3.4 rules 1-2 with D18: a stage with progress > 0 still CREATED
// becomes STARTED; a stage at progress 1 that is not final becomes SUCCESS;
// the summary progress becomes the mean of the stages' progress (0 without
// stages), but never less than it was. summary.status is not touched.
void RecomputeSummary(v2::JobProgress& progress);

// Spec 3.5: at least one stage, and every stage at progress >= 1 with a
// final status.
bool IsComplete(const v2::JobProgress& progress);

// D3: "Waiting to start" for CREATED, PENDING, RECEIVED; "<n>% complete" for
// STARTED, RETRY, SUCCESS (n = progress * 100 rounded down); otherwise the
// status name.
std::string StatusLabel(v2::JobStatus status, double progress);

// Sets status_label on the summary and on every stage.
void FillStatusLabels(v2::JobProgress& progress);

// ---- Setup step (spec 7.1) -------------------------------------------------

// For a job without stages: adds the "Delay" stage when delay != 0 and, when
// a pipeline is set, the Collect/Process/Results stages (params with empty
// string values) and moves dispatch_mode from internal to sync_api. Then
// recomputes the summary. A job that has stages is left unchanged. Returns
// whether anything changed.
bool ApplySetup(v2::Job& job);

// ---- Transitions (spec 2.2, D4, D6) ----------------------------------------
//
// Each works on a JobMutation read inside the store's transaction: it changes
// mutation.job, appends the log lines to write with it to mutation.logs, and
// sets mutation.allow_leave_final when it may leave a final status. On error
// the mutation is unchanged. summary.status follows status on every write.

// The log line of a status change ("Changing status of job 12 from PENDING
// to STARTED").
std::string StatusChangeMessage(int64_t job_id, v2::JobStatus from,
                                v2::JobStatus to);

// Whether a PENDING job waits for the server's built-in runner rather than
// for a worker (D16): a job of type "unknown", an "ml" job without a
// pipeline, and any job whose delay is not 0 and whose "delay" stage has not
// succeeded yet.
bool NeedsRunner(const v2::Job& job);

// Puts a job in the queue it belongs to: an unleased lease whose holder is
// kRunnerHolder when NeedsRunner(job), "" (any worker) otherwise. Keeps the
// attempt count.
void AssignQueue(JobMutation& mutation);

// Run / start_now: PENDING from any status except PENDING, STARTED, RETRY
// and CANCELING (FAILED_PRECONDITION "cannot run job 12 while it is
// STARTED"). Clears started_at and finished_at; recomputes the summary.
// Starts a new run: the attempt count goes back to 0 and the job is put
// in its queue (AssignQueue).
absl::Status Enqueue(JobMutation& mutation);

// Retry: refused while PENDING, STARTED or CANCELING (FAILED_PRECONDITION).
// Logs `Re-running job #12 "name"`, clears finished_at, resets progress,
// moves to RETRY and at once enqueues (PENDING), logging both changes.
absl::Status Retry(JobMutation& mutation);

// Cancel: CREATED, PENDING and RETRY become REVOKED with finished_at = now
// and leave their queue;
// STARTED becomes CANCELING (the work stops, then REVOKED follows); any
// other status is left alone without error.
absl::Status Cancel(absl::Time now, JobMutation& mutation);

// Conditions of a SetStatus write.
struct StatusGuard {
  // Move only from these statuses; empty: from any status.
  std::vector<v2::JobStatus> allowed_from;
  // SUCCESS is written only when the progress is complete (spec 3.5).
  bool success_requires_complete = false;
};

// The guard of a terminal write by finished work (spec 2.2 #7, #9, #12):
// only from a finalizable status; SUCCESS only with complete progress.
StatusGuard FinishGuard();

// Writes `to` unless the guard says otherwise or the job is final (a final
// job is never left here: use Enqueue or Retry). Returns whether the status
// was written; a skipped write changes nothing and is not an error.
// STARTED sets started_at = now and clears finished_at; a final status sets
// finished_at = now. A change of status is logged. INVALID_ARGUMENT for
// JOB_STATUS_UNSPECIFIED.
absl::StatusOr<bool> SetStatus(v2::JobStatus to, absl::Time now,
                               const StatusGuard& guard, JobMutation& mutation);

// ---- Input (spec 5.1, 5.2, D7, D8, Q2) -------------------------------------

enum class InputMode {
  // CreateJob: name and project_id required; defaults for the rest.
  kCreate,
  // UpdateJob without a mask: as kCreate, but an omitted job_type_key keeps
  // the job's type.
  kReplace,
  // UpdateJob with a mask: only the given fields are checked.
  kPatch,
};

// Checks the given fields of `input` (the reference ids are only checked
// for presence; their lookup is the service's). Returns every error, as
// one CombineFieldErrors() of InvalidFieldErrors with the API's wording,
// fields in the order name, delay, limit, project_id, job_type_key.
absl::Status ValidateJobInput(const v2::JobInput& input, InputMode mode);

// The JobInput field names an update mask may name.
absl::Span<const absl::string_view> JobInputFields();

// Restricts `input` to the paths of `mask` that are set, after checking the
// mask: an unknown path is INVALID_ARGUMENT on "update_mask"; a masked name
// or project_id that is unset is "This field is required.". The result is
// validated as kPatch, and its errors are reported with those.
absl::StatusOr<v2::JobInput> MaskJobInput(
    const v2::JobInput& input, const google::protobuf::FieldMask& mask);

// The writable fields of a stored job as an input (references that are
// null are left unset).
v2::JobInput JobInputFromJob(const v2::Job& job);

// For every path of `mask` (already checked by MaskJobInput): copies the
// field from `patch` onto `base`, or clears it on `base` when `patch` does
// not set it. A patch applied this way to JobInputFromJob(job) and then by
// ApplyJobInput(kPatch) treats a masked unset field as a full update treats
// an omitted one.
void OverlayJobInput(const v2::JobInput& patch,
                     const google::protobuf::FieldMask& mask,
                     v2::JobInput& base);

// Copies a validated, complete input onto a job's writable fields: omitted
// optional fields get their defaults (delay 0, shuffle true, limit and
// references null); an omitted job_type_key becomes "ml" with kCreate and
// keeps the job's type otherwise (D8). The name is stored trimmed.
void ApplyJobInput(const v2::JobInput& input, InputMode mode, v2::Job& job);

// ---- Presentation ---------------------------------------------------------

// Fills the presentation fields of a job as read from the store: details
// paths (job and nested records), job_type.name, duration, status labels
// and user_permissions (D17: as a superuser).
void DecorateJob(v2::Job& job);

// The presentation fields of the catalogue records.
void DecorateProject(v2::Project& project);
void DecorateDeployment(v2::Deployment& deployment);
void DecorateCaptureCollection(v2::CaptureCollection& collection);
void DecorateCapture(v2::Capture& capture);
void DecoratePipeline(v2::Pipeline& pipeline);

// Renders a log line as "[YYYY-MM-DD HH:MM:SS] LEVEL message" with the time
// in `zone`.
std::string FormatLogLine(const LogLine& line, absl::TimeZone zone);

// Fills job.logs from lines read newest first: stdout every line, stderr
// the bare message of the ERROR and CRITICAL ones.
void FillLogs(absl::Span<const LogLine> lines, absl::TimeZone zone,
              v2::Job& job);

// Conversions between absl and protobuf time types.
absl::Time FromProtoTime(const google::protobuf::Timestamp& timestamp);
google::protobuf::Timestamp ToProtoTime(absl::Time time);

}  // namespace jobline

#endif  // JOBLINE_SERVER_JOB_RULES_H_
