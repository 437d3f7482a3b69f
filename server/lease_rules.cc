#include "server/lease_rules.h"

#include <cmath>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "server/job_rules.h"
#include "server/status_util.h"

namespace jobline {
namespace {

void AddLog(JobMutation& mutation, LogLevel level, std::string message) {
  mutation.logs.push_back(NewLogLine{level, std::move(message)});
}

// Clears the lease but keeps the attempt count.
void ClearLease(JobMutation& mutation) {
  const int32_t attempts = mutation.lease.attempts;
  mutation.lease = JobLease();
  mutation.lease.attempts = attempts;
}

// Moves the job to `to` with its log line, setting the timestamps a status
// write sets (SetStatus without guards).
void WriteStatus(v2::JobStatus to, absl::Time now, JobMutation& mutation) {
  StatusGuard any;
  (void)SetStatus(to, now, any, mutation);
}

// `Finished job #12 "name" (SUCCESS)`.
void LogFinished(JobMutation& mutation) {
  const v2::Job& job = mutation.job;
  AddLog(mutation, LogLevel::kInfo,
         absl::StrFormat("Finished job #%d \"%s\" (%s)", job.id(), job.name(),
                         StatusName(job.status())));
}

// "delay=100% SUCCESS, collect=0% CREATED".
std::string StageSummary(const v2::JobProgress& progress) {
  std::vector<std::string> parts;
  for (const v2::ProgressStage& stage : progress.stages()) {
    parts.push_back(absl::StrFormat(
        "%s=%d%% %s", stage.key(),
        static_cast<int>(std::floor(stage.progress() * 100 + 1e-9)),
        StatusName(stage.status())));
  }
  return parts.empty() ? "no stages" : absl::StrJoin(parts, ", ");
}

absl::StatusOr<LogLevel> ParseLevel(absl::string_view name) {
  if (name == "DEBUG") return LogLevel::kDebug;
  if (name == "INFO" || name.empty()) return LogLevel::kInfo;
  if (name == "WARNING") return LogLevel::kWarning;
  if (name == "ERROR") return LogLevel::kError;
  if (name == "CRITICAL") return LogLevel::kCritical;
  return absl::InvalidArgumentError("unknown level");
}

}  // namespace

absl::Status GrantLease(absl::string_view queue, absl::string_view holder,
                        absl::string_view lease_id, absl::Time now,
                        absl::Time expires, JobMutation& mutation) {
  const v2::Job& job = mutation.job;
  if (job.status() != v2::PENDING || mutation.lease.leased() ||
      mutation.lease.holder != queue) {
    return absl::AbortedError(
        absl::StrCat("job ", job.id(), " is no longer waiting in the queue"));
  }
  AddLog(mutation, LogLevel::kInfo,
         absl::StrFormat("Running job #%d \"%s\" (%s)", job.id(), job.name(),
                         StatusName(job.status())));
  WriteStatus(v2::STARTED, now, mutation);
  mutation.lease.lease_id = std::string(lease_id);
  mutation.lease.holder = std::string(holder);
  mutation.lease.expires_at = expires;
  ++mutation.lease.attempts;
  return absl::OkStatus();
}

absl::Status CheckLease(absl::string_view lease_id, absl::Time now,
                        const JobMutation& mutation) {
  const v2::Job& job = mutation.job;
  if (IsFinalStatus(job.status())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", job.id(), " is already ", StatusName(job.status())));
  }
  if (lease_id.empty() || mutation.lease.lease_id != lease_id) {
    return absl::FailedPreconditionError(absl::StrCat(
        "lease \"", lease_id, "\" is not the current lease of job ", job.id()));
  }
  if (mutation.lease.expires_at <= now) {
    return absl::FailedPreconditionError(absl::StrCat(
        "lease \"", lease_id, "\" of job ", job.id(), " ran out at ",
        absl::FormatTime(absl::RFC3339_full, mutation.lease.expires_at,
                         absl::UTCTimeZone())));
  }
  return absl::OkStatus();
}

absl::Status ReleaseLease(absl::string_view why, JobMutation& mutation) {
  v2::Job& job = mutation.job;
  if (!mutation.lease.leased() || IsFinalStatus(job.status())) {
    return absl::AbortedError(absl::StrCat("job ", job.id(), " is not leased"));
  }
  if (CancelRequested(mutation)) {
    return absl::AbortedError(
        absl::StrCat("job ", job.id(), " is being cancelled"));
  }
  AddLog(mutation, LogLevel::kInfo,
         absl::StrCat("Job #", job.id(), " goes back to the queue: ", why));
  AddLog(mutation, LogLevel::kInfo,
         StatusChangeMessage(job.id(), job.status(), v2::PENDING));
  job.set_status(v2::PENDING);
  job.mutable_progress()->mutable_summary()->set_status(v2::PENDING);
  job.clear_started_at();
  mutation.lease.attempts = std::max(0, mutation.lease.attempts - 1);
  AssignQueue(mutation);
  return absl::OkStatus();
}

void RenewLease(absl::Time expires, JobMutation& mutation) {
  mutation.lease.expires_at = std::max(mutation.lease.expires_at, expires);
}

bool CancelRequested(const JobMutation& mutation) {
  return mutation.job.status() == v2::CANCELING;
}

absl::Status ApplyStageUpdates(
    const google::protobuf::RepeatedPtrField<v2::StageUpdate>& updates,
    v2::JobProgress& progress) {
  v2::JobProgress changed = progress;
  for (int i = 0; i < updates.size(); ++i) {
    const v2::StageUpdate& update = updates[i];
    const std::string where = absl::StrCat("stages[", i, "]");
    // A given key is a slug too, so that the lookups below find the stage.
    const std::string key =
        Slugify(update.key().empty() ? update.name() : update.key());
    if (key.empty()) {
      return InvalidFieldError(absl::StrCat(where, ".key"),
                               "A stage needs a key or a name.");
    }
    if (FindStage(changed, key) == nullptr) {
      if (update.name().empty()) {
        return InvalidFieldError(
            absl::StrCat(where, ".key"),
            absl::StrCat("Stage \"", key,
                         "\" does not exist; give a name to create it."));
      }
      AddStage(changed, update.name(), key);
    }

    StageUpdate rule;
    if (update.status() != v2::JOB_STATUS_UNSPECIFIED) {
      if (update.status() != v2::STARTED && update.status() != v2::SUCCESS &&
          update.status() != v2::FAILURE) {
        return InvalidFieldError(absl::StrCat(where, ".status"),
                                 "A stage status must be STARTED, SUCCESS or "
                                 "FAILURE.");
      }
      rule.status = update.status();
    }
    if (update.has_progress()) {
      if (!(update.progress() >= 0.0 && update.progress() <= 1.0)) {
        return InvalidFieldError(absl::StrCat(where, ".progress"),
                                 "Ensure this value is between 0 and 1.");
      }
      rule.progress = update.progress();
    }
    for (int p = 0; p < update.params_size(); ++p) {
      const v2::ParamUpdate& param = update.params(p);
      const std::string& name =
          param.name().empty() ? param.key() : param.name();
      if (name.empty()) {
        return InvalidFieldError(absl::StrCat(where, ".params[", p, "].name"),
                                 "A param needs a name or a key.");
      }
      rule.params.emplace_back(name, param.value());
    }
    if (absl::Status status = UpdateStage(changed, key, rule); !status.ok()) {
      return status;
    }
  }
  RecomputeSummary(changed);
  progress = std::move(changed);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<NewLogLine>> ParseWorkerLogs(
    const google::protobuf::RepeatedPtrField<v2::WorkerLogLine>& lines,
    const ReportLimits& limits) {
  if (lines.size() > limits.max_lines) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "logs: a report may carry at most ", limits.max_lines,
        " lines (--max_report_lines); this one has ", lines.size()));
  }
  std::vector<NewLogLine> parsed;
  parsed.reserve(lines.size());
  for (int i = 0; i < lines.size(); ++i) {
    absl::StatusOr<LogLevel> level = ParseLevel(lines[i].level());
    if (!level.ok()) {
      return InvalidFieldError(absl::StrCat("logs[", i, "].level"),
                               "Use DEBUG, INFO, WARNING, ERROR or CRITICAL.");
    }
    if (absl::StripAsciiWhitespace(lines[i].message()).empty()) {
      return InvalidFieldError(absl::StrCat("logs[", i, "].message"),
                               "This field may not be blank.");
    }
    if (lines[i].message().size() > limits.max_message_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "logs[", i, "].message: a log message may have at most ",
          limits.max_message_bytes, " bytes (--max_log_message_kb)"));
    }
    // Spec 4.1: the job log keeps INFO and above.
    if (*level == LogLevel::kDebug) continue;
    parsed.push_back(NewLogLine{*level, lines[i].message()});
  }
  return parsed;
}

absl::Status EndRun(const RunEnd& end, absl::Time now, JobMutation& mutation) {
  v2::Job& job = mutation.job;
  v2::JobStatus to = end.status;
  if (to != v2::SUCCESS && to != v2::FAILURE) {
    return InvalidFieldError("status", "A run ends with SUCCESS or FAILURE.");
  }
  if (CancelRequested(mutation)) to = v2::REVOKED;

  // SUCCESS needs every stage done: stages at 1.0 are promoted.
  if (to == v2::SUCCESS) {
    for (const v2::ProgressStage& stage : job.progress().stages()) {
      if (stage.progress() < 1.0) {
        return InvalidFieldError(
            "status",
            absl::StrCat("Stage \"", stage.key(), "\" is at ", stage.progress(),
                         "; SUCCESS needs every stage at 1.0."));
      }
    }
    RecomputeSummary(*job.mutable_progress());
  }

  if (to == v2::FAILURE && !end.error.empty()) {
    AddLog(mutation, LogLevel::kError, end.error);
  }
  if (end.result != nullptr) *job.mutable_result() = *end.result;
  WriteStatus(to, now, mutation);
  LogFinished(mutation);
  ClearLease(mutation);
  return absl::OkStatus();
}

void HandToWorkers(absl::Time now, JobMutation& mutation) {
  v2::Job& job = mutation.job;
  if (CancelRequested(mutation)) {
    WriteStatus(v2::REVOKED, now, mutation);
    LogFinished(mutation);
    ClearLease(mutation);
    return;
  }
  AddLog(mutation, LogLevel::kInfo,
         absl::StrFormat("Job #%d is waiting for a worker of type %s", job.id(),
                         job.job_type().key()));
  AddLog(mutation, LogLevel::kInfo,
         StatusChangeMessage(job.id(), job.status(), v2::PENDING));
  job.set_status(v2::PENDING);
  job.mutable_progress()->mutable_summary()->set_status(v2::PENDING);
  job.clear_started_at();
  // The workers' attempts are counted afresh: the built-in part is done.
  mutation.lease.attempts = 0;
  AssignQueue(mutation);
}

absl::Status ExpireLease(absl::Time now, int32_t max_attempts, bool force,
                         JobMutation& mutation) {
  v2::Job& job = mutation.job;
  const JobLease& lease = mutation.lease;
  if (!lease.leased() || IsFinalStatus(job.status()) ||
      (!force && lease.expires_at > now)) {
    return absl::AbortedError(
        absl::StrCat("the lease of job ", job.id(), " is not over"));
  }
  const std::string holder = lease.holder;

  if (CancelRequested(mutation)) {
    AddLog(mutation, LogLevel::kWarning,
           absl::StrCat("The lease of job ", job.id(), " held by ", holder,
                        " ended while it was canceling"));
    WriteStatus(v2::REVOKED, now, mutation);
    LogFinished(mutation);
    ClearLease(mutation);
    return absl::OkStatus();
  }
  if (lease.attempts >= max_attempts) {
    AddLog(mutation, LogLevel::kError,
           absl::StrCat("Job ", job.id(), " failed: its lease ended ",
                        lease.attempts,
                        " times without a result (last held "
                        "by ",
                        holder, ")"));
    WriteStatus(v2::FAILURE, now, mutation);
    LogFinished(mutation);
    ClearLease(mutation);
    return absl::OkStatus();
  }

  AddLog(mutation, LogLevel::kWarning,
         absl::StrCat("The lease of job ", job.id(), " held by ", holder,
                      " ended without a result; queueing it again (attempt ",
                      lease.attempts, " of ", max_attempts, " used)"));
  AddLog(mutation, LogLevel::kInfo,
         StatusChangeMessage(job.id(), job.status(), v2::PENDING));
  job.set_status(v2::PENDING);
  job.mutable_progress()->mutable_summary()->set_status(v2::PENDING);
  job.clear_started_at();
  AssignQueue(mutation);
  return absl::OkStatus();
}

absl::Status Reap(absl::Time now, absl::Duration cutoff,
                  JobMutation& mutation) {
  v2::Job& job = mutation.job;
  const absl::Duration idle = now - FromProtoTime(job.updated_at());
  if (!IsRunningStatus(job.status()) || idle < cutoff) {
    return absl::AbortedError(
        absl::StrCat("job ", job.id(), " is not stalled"));
  }
  AddLog(mutation, LogLevel::kWarning,
         absl::StrFormat(
             "Reaping stalled job %d: no update for %d minutes (threshold "
             "%d minutes); previous status %s, holder %s; stages: %s",
             job.id(), static_cast<int64_t>(absl::ToInt64Minutes(idle)),
             static_cast<int64_t>(absl::ToInt64Minutes(cutoff)),
             StatusName(job.status()),
             mutation.lease.holder.empty() ? "none" : mutation.lease.holder,
             StageSummary(job.progress())));
  WriteStatus(v2::REVOKED, now, mutation);
  ClearLease(mutation);
  return absl::OkStatus();
}

}  // namespace jobline
