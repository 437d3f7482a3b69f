#include "server/job_manager.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "server/job_rules.h"
#include "server/status_util.h"
#include "storage/status_macros.h"

namespace jobline {
namespace {

constexpr char kInvalidChoice[] =
    "Select a valid choice. That choice is not one of the available choices.";

// DRF's wording for a choice that is not on the list.
std::string InvalidChoiceMessage(absl::string_view value) {
  return absl::StrFormat(
      "Select a valid choice. %s is not one of the available choices.", value);
}

// INVALID_ARGUMENT on `field` unless `value` >= `min`.
absl::Status RequireAtLeast(absl::string_view field, int64_t value,
                            int64_t min) {
  if (value >= min) return absl::OkStatus();
  return InvalidFieldError(
      field,
      absl::StrCat("Ensure this value is greater than or equal to ", min, "."));
}

// The same for an optional field: an unset one passes.
absl::Status RequireAtLeast(absl::string_view field, bool has, int64_t value,
                            int64_t min) {
  return has ? RequireAtLeast(field, value, min) : absl::OkStatus();
}

// Maps the NOT_FOUND of a record lookup to the error of a job field that
// names it; other results pass through.
absl::Status ReferenceError(const absl::Status& lookup, absl::string_view field,
                            int64_t id) {
  if (!absl::IsNotFound(lookup)) return lookup;
  return InvalidFieldError(
      field, absl::StrFormat("Invalid pk \"%d\" - object does not exist.", id));
}

// The reference fields of a job input, in the order the store checks them
// (SqliteJobStore::CheckJobReferencesLocked).
struct ReferenceField {
  absl::string_view name;
  bool (v2::JobInput::*has)() const;
  int64_t (v2::JobInput::*id)() const;
};

constexpr ReferenceField kReferenceFields[] = {
    {"project_id", &v2::JobInput::has_project_id, &v2::JobInput::project_id},
    {"deployment_id", &v2::JobInput::has_deployment_id,
     &v2::JobInput::deployment_id},
    {"source_image_collection_id",
     &v2::JobInput::has_source_image_collection_id,
     &v2::JobInput::source_image_collection_id},
    {"source_image_single_id", &v2::JobInput::has_source_image_single_id,
     &v2::JobInput::source_image_single_id},
    {"pipeline_id", &v2::JobInput::has_pipeline_id, &v2::JobInput::pipeline_id},
};

// The store refuses a job whose reference names no record with
// INVALID_ARGUMENT "<field>: ..." (JobStore::CreateJob). This gives that
// error the API's wording, the one ReferenceError gives a lookup, with the
// id of `input`; any other status passes through WithFieldViolation.
absl::Status StoredReferenceError(const absl::Status& status,
                                  const v2::JobInput& input) {
  if (absl::IsInvalidArgument(status)) {
    for (const ReferenceField& field : kReferenceFields) {
      if ((input.*field.has)() &&
          absl::StartsWith(status.message(), absl::StrCat(field.name, ": "))) {
        return ReferenceError(absl::NotFoundError(status.message()), field.name,
                              (input.*field.id)());
      }
    }
  }
  return WithFieldViolation(status);
}

// Maps the NOT_FOUND of a record lookup to the error of a list filter.
absl::Status FilterError(const absl::Status& lookup, absl::string_view field) {
  if (!absl::IsNotFound(lookup)) return lookup;
  return InvalidFieldError(field, kInvalidChoice);
}

struct OrderName {
  absl::string_view name;
  JobOrderField field;
};

constexpr OrderName kOrderNames[] = {
    {"name", JobOrderField::kName},
    {"created_at", JobOrderField::kCreatedAt},
    {"updated_at", JobOrderField::kUpdatedAt},
    {"status", JobOrderField::kStatus},
    {"started_at", JobOrderField::kStartedAt},
    {"finished_at", JobOrderField::kFinishedAt},
    {"project", JobOrderField::kProject},
    {"deployment", JobOrderField::kDeployment},
    {"source_image_collection", JobOrderField::kSourceImageCollection},
    {"pipeline", JobOrderField::kPipeline},
};

// Spec 6.2: comma-separated names, "-" for descending; unknown names are
// dropped, and so is a field named again (its first use decides).
std::vector<JobOrder> ParseOrdering(absl::string_view text) {
  std::vector<JobOrder> ordering;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    part = absl::StripAsciiWhitespace(part);
    JobOrder order;
    order.descending = absl::ConsumePrefix(&part, "-");
    for (const OrderName& known : kOrderNames) {
      if (known.name != part) continue;
      const bool seen = absl::c_any_of(ordering, [&known](const JobOrder& o) {
        return o.field == known.field;
      });
      if (!seen) {
        order.field = known.field;
        ordering.push_back(order);
      }
      break;
    }
  }
  return ordering;
}

// Bounds of a search, so that its query stays within SQLite's limits.
constexpr size_t kMaxSearchTerms = 64;
constexpr size_t kMaxSearchTermBytes = 1000;

// Spec 6.3: terms split on whitespace and commas.
std::vector<std::string> SearchTerms(absl::string_view text) {
  return absl::StrSplit(text, absl::ByAnyChar(" \t\n\r\f\v,"),
                        absl::SkipEmpty());
}

// A job whose work is running (STARTED or CANCELING) keeps what its runner
// or worker relies on: its type, delay and pipeline. Other fields may change
// (spec 5.2). FAILED_PRECONDITION names the field otherwise.
absl::Status CheckRunningEdit(const v2::Job& before, const v2::Job& after) {
  if (before.status() != v2::STARTED && before.status() != v2::CANCELING) {
    return absl::OkStatus();
  }
  const char* field = nullptr;
  if (after.job_type().key() != before.job_type().key()) {
    field = "job_type_key";
  } else if (after.delay() != before.delay()) {
    field = "delay";
  } else if (after.pipeline().id() != before.pipeline().id()) {
    field = "pipeline_id";
  }
  if (field == nullptr) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("cannot change ", field, " of job ", before.id(),
                   " while it is ", StatusName(before.status())));
}

// A job waiting in a queue moves to the queue its fields now call for (an
// update may add a pipeline or a delay).
void RequeueIfWaiting(JobMutation& mutation) {
  if (mutation.job.status() == v2::PENDING && !mutation.lease.leased()) {
    AssignQueue(mutation);
  }
}

// The list item of a job: decorated, without result, with the (always
// empty) legacy logs.
void ListItemView(v2::Job& job) {
  DecorateJob(job);
  job.clear_result();
  job.mutable_logs()->Clear();
}

}  // namespace

JobManager::JobManager(JobStore* store, Clock* clock, JobManagerOptions options)
    : store_(store), clock_(clock), options_(std::move(options)) {}

// ---- Jobs -------------------------------------------------------------------

absl::StatusOr<v2::Job> JobManager::CreateJob(
    const v2::CreateJobRequest& request) {
  const v2::JobInput& input = request.job();
  JOBS_RETURN_IF_ERROR(ValidateJobInput(input, InputMode::kCreate));
  // The references are checked by the store inside the write, so that a
  // create costs no reads of its own.

  // The new job, enqueued in the same transaction when start_now asks.
  JobMutation mutation;
  v2::Job& job = mutation.job;
  ApplyJobInput(input, InputMode::kCreate, job);
  job.set_status(v2::CREATED);
  job.set_dispatch_mode(std::string(kDispatchInternal));
  job.mutable_progress()->mutable_summary()->set_status(v2::CREATED);
  ApplySetup(job);
  if (request.start_now()) JOBS_RETURN_IF_ERROR(Enqueue(mutation));

  absl::StatusOr<v2::Job> created =
      store_->CreateJob(job, mutation.logs, mutation.lease);
  if (!created.ok()) return StoredReferenceError(created.status(), input);
  NotifyQueues(job.status(), mutation.lease);

  // A new job's log lines are the ones just written, stamped with the
  // job's creation time: the answer needs no read of them.
  std::vector<LogLine> lines;
  const absl::Time created_at = FromProtoTime(created->created_at());
  const int shown =
      std::min(static_cast<int>(mutation.logs.size()), kDefaultLogsLimit);
  for (int i = 0; i < shown; ++i) {
    // Newest first, as JobStore::ReadLogs returns them.
    const NewLogLine& written = mutation.logs[mutation.logs.size() - 1 - i];
    LogLine& line = lines.emplace_back();
    line.job_id = created->id();
    line.sequence = created->sequence();
    line.created_at = created_at;
    line.level = written.level;
    line.message = written.message;
  }
  return DecoratedView(*std::move(created), lines);
}

absl::StatusOr<v2::Job> JobManager::GetJob(const v2::GetJobRequest& request) {
  if (request.has_logs_limit()) {
    JOBS_RETURN_IF_ERROR(RequireAtLeast("logs_limit", request.logs_limit(), 1));
    if (request.logs_limit() > kMaxLogsLimit) {
      return InvalidFieldError("logs_limit",
                               absl::StrCat("Ensure this value is less than or "
                                            "equal to ",
                                            kMaxLogsLimit, "."));
    }
  }
  JOBS_ASSIGN_OR_RETURN(const std::optional<int64_t> project,
                        LookupProject(request));
  JOBS_ASSIGN_OR_RETURN(v2::Job job, store_->GetJob(request.id()));
  // An existing active project hides the jobs of other projects (spec 5).
  if (project.has_value() && job.project().id() != *project) {
    return absl::NotFoundError(
        absl::StrCat("job ", request.id(), " not found"));
  }
  return DetailView(std::move(job), request.has_logs_limit()
                                        ? request.logs_limit()
                                        : kDefaultLogsLimit);
}

absl::StatusOr<v2::ListJobsResponse> JobManager::ListJobs(
    const v2::ListJobsRequest& request) {
  JobQuery query;

  // Choice filters: exact values from fixed lists.
  if (!request.status().empty()) {
    query.status = ParseStatus(request.status());
    if (!query.status.has_value()) {
      return InvalidFieldError("status",
                               InvalidChoiceMessage(request.status()));
    }
  }
  if (!request.job_type_key().empty()) {
    if (FindJobType(request.job_type_key()) == nullptr) {
      return InvalidFieldError("job_type_key",
                               InvalidChoiceMessage(request.job_type_key()));
    }
    query.job_type_key = request.job_type_key();
  }
  if (!request.dispatch_mode().empty()) {
    if (!IsDispatchMode(request.dispatch_mode())) {
      return InvalidFieldError("dispatch_mode",
                               InvalidChoiceMessage(request.dispatch_mode()));
    }
    query.dispatch_mode = request.dispatch_mode();
  }

  // Reference filters: the record must exist.
  if (request.has_project()) {
    JOBS_RETURN_IF_ERROR(
        FilterError(store_->GetProject(request.project()).status(), "project"));
    query.project_id = request.project();
  }
  if (request.has_deployment()) {
    JOBS_RETURN_IF_ERROR(FilterError(
        store_->GetDeployment(request.deployment()).status(), "deployment"));
    query.deployment_id = request.deployment();
  }
  if (request.has_source_image_collection()) {
    JOBS_RETURN_IF_ERROR(FilterError(
        store_->GetCaptureCollection(request.source_image_collection())
            .status(),
        "source_image_collection"));
    query.source_image_collection_id = request.source_image_collection();
  }
  if (request.has_source_image_single()) {
    JOBS_RETURN_IF_ERROR(
        FilterError(store_->GetCapture(request.source_image_single()).status(),
                    "source_image_single"));
    query.source_image_single_id = request.source_image_single();
  }
  if (request.has_pipeline()) {
    JOBS_RETURN_IF_ERROR(FilterError(
        store_->GetPipeline(request.pipeline()).status(), "pipeline"));
    query.pipeline_id = request.pipeline();
  }

  // The active project restricts the list only when it exists.
  JOBS_RETURN_IF_ERROR(RequireAtLeast("project_id", request.has_project_id(),
                                      request.project_id(), 0));
  JOBS_RETURN_IF_ERROR(RequireAtLeast(
      "cutoff_hours", request.has_cutoff_hours(), request.cutoff_hours(), 0));
  if (request.project_id() > 0) {
    const absl::Status project =
        store_->GetProject(request.project_id()).status();
    if (project.ok()) {
      if (query.project_id.has_value() &&
          *query.project_id != request.project_id()) {
        // Two different projects: nothing can match both.
        v2::ListJobsResponse empty;
        empty.add_user_permissions("create");
        empty.set_limit(request.limit() > 0 ? request.limit()
                                            : kDefaultPageSize);
        empty.set_offset(request.offset());
        return empty;
      }
      query.project_id = request.project_id();
    } else if (!absl::IsNotFound(project)) {
      return project;
    }
  }

  // Text filters.
  if (!request.pipeline__slug().empty()) {
    query.pipeline_slug = request.pipeline__slug();
  }
  for (absl::string_view slug :
       absl::StrSplit(request.pipeline__slug__in(), ',', absl::SkipEmpty())) {
    query.pipeline_slug_in.emplace_back(slug);
  }
  query.search_terms = SearchTerms(request.search());
  if (query.search_terms.size() > kMaxSearchTerms) {
    return InvalidFieldError(
        "search", absl::StrCat("Use at most ", kMaxSearchTerms, " terms."));
  }
  for (const std::string& term : query.search_terms) {
    if (term.size() > kMaxSearchTermBytes) {
      return InvalidFieldError("search",
                               absl::StrCat("Each term may have at most ",
                                            kMaxSearchTermBytes, " bytes."));
    }
    // No stored name holds a NUL, and SQLite's LIKE would end the pattern
    // at one (and so match every job).
    if (term.find('\0') != std::string::npos) {
      return InvalidFieldError("search", "Null characters are not allowed.");
    }
  }
  query.incomplete_only = request.incomplete_only();

  // Ordering and paging.
  query.ordering = ParseOrdering(request.ordering());
  query.random_order = request.ids_only() && query.ordering.empty();
  JOBS_RETURN_IF_ERROR(
      RequireAtLeast("limit", request.has_limit(), request.limit(), 0));
  JOBS_RETURN_IF_ERROR(
      RequireAtLeast("offset", request.has_offset(), request.offset(), 0));
  if (request.limit() > options_.max_page_size) {
    return absl::ResourceExhaustedError(
        absl::StrCat("limit: a page may hold at most ", options_.max_page_size,
                     " jobs (--max_page_size)"));
  }
  if (request.limit() > 0) {
    query.limit = request.limit();
  } else {
    query.limit =
        request.ids_only() ? kDefaultIdsOnlyPageSize : kDefaultPageSize;
  }
  query.offset = request.offset();

  JOBS_ASSIGN_OR_RETURN(JobPage page, store_->ListJobs(query));
  v2::ListJobsResponse response;
  response.set_count(page.count);
  for (v2::Job& job : page.jobs) {
    ListItemView(job);
    *response.add_results() = std::move(job);
  }
  // D17: every caller may create.
  response.add_user_permissions("create");
  response.set_limit(query.limit);
  response.set_offset(query.offset);
  return response;
}

absl::StatusOr<v2::Job> JobManager::UpdateJob(
    const v2::UpdateJobRequest& request) {
  JOBS_ASSIGN_OR_RETURN(const std::optional<int64_t> project,
                        LookupProject(request));
  // A full replace: the input is the whole writable state.
  if (!request.has_update_mask()) {
    const v2::JobInput& input = request.job();
    JOBS_RETURN_IF_ERROR(ValidateJobInput(input, InputMode::kReplace));
    JOBS_RETURN_IF_ERROR(CheckReferences(input));
    return Mutate(request.id(), project, [&input](JobMutation& mutation) {
      const v2::Job before = mutation.job;
      ApplyJobInput(input, InputMode::kReplace, mutation.job);
      JOBS_RETURN_IF_ERROR(CheckRunningEdit(before, mutation.job));
      ApplySetup(mutation.job);
      RequeueIfWaiting(mutation);
      return absl::OkStatus();
    });
  }

  // A patch: the masked fields overlay the stored ones.
  JOBS_ASSIGN_OR_RETURN(const v2::JobInput patch,
                        MaskJobInput(request.job(), request.update_mask()));
  JOBS_RETURN_IF_ERROR(CheckReferences(patch));
  const google::protobuf::FieldMask& mask = request.update_mask();
  return Mutate(request.id(), project, [&patch, &mask](JobMutation& mutation) {
    const v2::Job before = mutation.job;
    v2::JobInput merged = JobInputFromJob(mutation.job);
    OverlayJobInput(patch, mask, merged);
    ApplyJobInput(merged, InputMode::kPatch, mutation.job);
    JOBS_RETURN_IF_ERROR(CheckRunningEdit(before, mutation.job));
    ApplySetup(mutation.job);
    RequeueIfWaiting(mutation);
    return absl::OkStatus();
  });
}

absl::Status JobManager::DeleteJob(const v2::DeleteJobRequest& request) {
  JOBS_ASSIGN_OR_RETURN(const std::optional<int64_t> project,
                        LookupProject(request));
  if (project.has_value()) {
    // The scope is checked on the job as read just before; a job moved to
    // another project in between is still deleted.
    JOBS_ASSIGN_OR_RETURN(const v2::Job job, store_->GetJob(request.id()));
    if (job.project().id() != *project) {
      return absl::NotFoundError(
          absl::StrCat("job ", request.id(), " not found"));
    }
  }
  return store_->DeleteJob(request.id());
}

absl::StatusOr<v2::Job> JobManager::RunJob(const v2::RunJobRequest& request) {
  JOBS_ASSIGN_OR_RETURN(const std::optional<int64_t> project,
                        LookupProject(request));
  return Mutate(request.id(), project,
                [](JobMutation& mutation) { return Enqueue(mutation); });
}

absl::StatusOr<v2::Job> JobManager::RetryJob(
    const v2::RetryJobRequest& request) {
  JOBS_ASSIGN_OR_RETURN(const std::optional<int64_t> project,
                        LookupProject(request));
  return Mutate(request.id(), project,
                [](JobMutation& mutation) { return Retry(mutation); });
}

absl::StatusOr<v2::Job> JobManager::CancelJob(
    const v2::CancelJobRequest& request) {
  JOBS_ASSIGN_OR_RETURN(const std::optional<int64_t> project,
                        LookupProject(request));
  const absl::Time now = clock_->Now();
  return Mutate(request.id(), project,
                [now](JobMutation& mutation) { return Cancel(now, mutation); });
}

absl::Status JobManager::DeleteJob(int64_t id) {
  v2::DeleteJobRequest request;
  request.set_id(id);
  return DeleteJob(request);
}

absl::StatusOr<v2::Job> JobManager::RunJob(int64_t id) {
  v2::RunJobRequest request;
  request.set_id(id);
  return RunJob(request);
}

absl::StatusOr<v2::Job> JobManager::RetryJob(int64_t id) {
  v2::RetryJobRequest request;
  request.set_id(id);
  return RetryJob(request);
}

absl::StatusOr<v2::Job> JobManager::CancelJob(int64_t id) {
  v2::CancelJobRequest request;
  request.set_id(id);
  return CancelJob(request);
}

// ---- Reference records ------------------------------------------------------

absl::StatusOr<v2::ImportCatalogResponse> JobManager::ImportCatalog(
    const v2::Catalog& catalog) {
  absl::StatusOr<v2::ImportCatalogResponse> imported =
      store_->ImportCatalog(catalog);
  if (!imported.ok()) return WithFieldViolation(imported.status());
  return imported;
}

absl::StatusOr<v2::SetCollectionCapturesResponse>
JobManager::SetCollectionCaptures(
    const v2::SetCollectionCapturesRequest& request) {
  const std::vector<v2::Capture> captures(request.captures().begin(),
                                          request.captures().end());
  absl::StatusOr<int64_t> count =
      store_->SetCollectionCaptures(request.collection_id(), captures);
  if (!count.ok()) return WithFieldViolation(count.status());
  v2::SetCollectionCapturesResponse response;
  response.set_capture_count(*count);
  return response;
}

absl::StatusOr<v2::Project> JobManager::GetProject(int64_t id) {
  JOBS_ASSIGN_OR_RETURN(v2::Project record, store_->GetProject(id));
  DecorateProject(record);
  return record;
}

absl::StatusOr<v2::Deployment> JobManager::GetDeployment(int64_t id) {
  JOBS_ASSIGN_OR_RETURN(v2::Deployment record, store_->GetDeployment(id));
  DecorateDeployment(record);
  return record;
}

absl::StatusOr<v2::CaptureCollection> JobManager::GetCaptureCollection(
    int64_t id) {
  JOBS_ASSIGN_OR_RETURN(v2::CaptureCollection record,
                        store_->GetCaptureCollection(id));
  DecorateCaptureCollection(record);
  return record;
}

absl::StatusOr<v2::Capture> JobManager::GetCapture(int64_t id) {
  JOBS_ASSIGN_OR_RETURN(v2::Capture record, store_->GetCapture(id));
  DecorateCapture(record);
  return record;
}

absl::StatusOr<v2::Pipeline> JobManager::GetPipeline(int64_t id) {
  JOBS_ASSIGN_OR_RETURN(v2::Pipeline record, store_->GetPipeline(id));
  DecoratePipeline(record);
  return record;
}

// ---- Helpers ----------------------------------------------------------------

absl::Status JobManager::CheckReferences(const v2::JobInput& input) {
  if (input.has_project_id()) {
    JOBS_RETURN_IF_ERROR(
        ReferenceError(store_->GetProject(input.project_id()).status(),
                       "project_id", input.project_id()));
  }
  if (input.has_deployment_id()) {
    JOBS_RETURN_IF_ERROR(
        ReferenceError(store_->GetDeployment(input.deployment_id()).status(),
                       "deployment_id", input.deployment_id()));
  }
  if (input.has_source_image_collection_id()) {
    JOBS_RETURN_IF_ERROR(ReferenceError(
        store_->GetCaptureCollection(input.source_image_collection_id())
            .status(),
        "source_image_collection_id", input.source_image_collection_id()));
  }
  if (input.has_source_image_single_id()) {
    JOBS_RETURN_IF_ERROR(ReferenceError(
        store_->GetCapture(input.source_image_single_id()).status(),
        "source_image_single_id", input.source_image_single_id()));
  }
  if (input.has_pipeline_id()) {
    JOBS_RETURN_IF_ERROR(
        ReferenceError(store_->GetPipeline(input.pipeline_id()).status(),
                       "pipeline_id", input.pipeline_id()));
  }
  return absl::OkStatus();
}

void JobManager::NotifyQueues(v2::JobStatus status, const JobLease& lease) {
  const bool waiting = status == v2::PENDING && !lease.leased();
  const bool runners = lease.holder == kRunnerHolder;
  WorkSignal* signal = nullptr;
  if (waiting && !runners) {
    signal = options_.work_signal;
  } else if (runners && (waiting || status == v2::CANCELING)) {
    signal = options_.runner_signal != nullptr ? options_.runner_signal
                                               : options_.work_signal;
  }
  if (signal != nullptr) signal->Notify();
}

absl::StatusOr<v2::Job> JobManager::DetailView(v2::Job job, int logs_limit) {
  JOBS_ASSIGN_OR_RETURN(const std::vector<LogLine> lines,
                        store_->ReadLogs(job.id(), logs_limit));
  return DecoratedView(std::move(job), lines);
}

v2::Job JobManager::DecoratedView(v2::Job job,
                                  absl::Span<const LogLine> lines) const {
  DecorateJob(job);
  FillLogs(lines, options_.zone, job);
  return job;
}

absl::StatusOr<std::optional<int64_t>> JobManager::LookupProject(
    bool has_project_id, int64_t project_id, bool has_cutoff_hours,
    int64_t cutoff_hours) {
  JOBS_RETURN_IF_ERROR(
      RequireAtLeast("project_id", has_project_id, project_id, 0));
  JOBS_RETURN_IF_ERROR(
      RequireAtLeast("cutoff_hours", has_cutoff_hours, cutoff_hours, 0));
  if (project_id <= 0) return std::optional<int64_t>();
  // A project that does not exist scopes nothing.
  const absl::Status exists = store_->GetProject(project_id).status();
  if (absl::IsNotFound(exists)) return std::optional<int64_t>();
  JOBS_RETURN_IF_ERROR(exists);
  return std::optional<int64_t>(project_id);
}

absl::StatusOr<v2::Job> JobManager::Mutate(
    int64_t id, std::optional<int64_t> project,
    const std::function<absl::Status(JobMutation&)>& rule) {
  // Where the write leaves the job, for the queues' waiters.
  v2::JobStatus status = v2::JOB_STATUS_UNSPECIFIED;
  JobLease lease;
  absl::StatusOr<v2::Job> written =
      store_->MutateJob(id, [&](JobMutation& mutation) {
        if (project.has_value() && mutation.job.project().id() != *project) {
          return absl::NotFoundError(absl::StrCat("job ", id, " not found"));
        }
        JOBS_RETURN_IF_ERROR(rule(mutation));
        status = mutation.job.status();
        lease = mutation.lease;
        return absl::OkStatus();
      });
  if (!written.ok()) return WithFieldViolation(written.status());
  NotifyQueues(status, lease);
  return DetailView(*std::move(written), kDefaultLogsLimit);
}

}  // namespace jobline
