// The progress_merge fuzz target: one job, a sequence of operations on it
// through the rule functions of server/job_rules.h and server/lease_rules.h,
// each applied to a JobMutation as JobStore::MutateJob would (logs empty and
// allow_leave_final false at its start, updated_at stamped after a write).
//
// Input: the starting job (status, type, delay, pipeline, lease), then
// operations until the input runs out: stage updates with any status and
// any progress (NaN, infinities, huge, negative, just over 1), worker stage
// updates, params of every Value kind, resets, run, retry, cancel, status
// writes, leases granted, released, expired and ended, the reaper, the
// clock, status labels of any number.
//
// Checked after every operation:
//   - an operation that fails leaves the mutation exactly as it was;
//   - every stage progress and the summary progress lie in 0..1 (D18);
//   - progress never goes backwards (no stage and no summary lower, no stage
//     lost, keys kept) except through ResetProgress and Retry (D18);
//   - a final job keeps its status except through Enqueue or Retry, which
//     set allow_leave_final when they leave it; nothing else sets it;
//   - a status change writes summary.status (D4), started_at for STARTED
//     and finished_at for a final status;
//   - after a summary recomputation no stage with progress is CREATED and
//     none at 1 is unfinished, and recomputing again changes nothing;
//   - the documented outcome of each transition (Enqueue queues the job
//     unleased, a granted lease is STARTED, an ended run is final and
//     unleased, SUCCESS only with every stage done, Cancel by status, ...);
//   - ResetProgress zeroes every progress and numeric param, keeps strings;
//   - StatusLabel of any number is a label, and Slugify gives slugs.

#include <fuzzer/FuzzedDataProvider.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "google/protobuf/struct.pb.h"
#include "jobline/v2/jobs.pb.h"
#include "jobline/v2/worker.pb.h"
#include "server/job_rules.h"
#include "server/lease_rules.h"
#include "storage/job_store.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/fuzz_targets.h"

namespace jobline {
namespace fuzz {
namespace {

constexpr size_t kMaxTextBytes = 300;
constexpr int kMaxOperations = 64;

// The operations, in the order the input picks them.
enum class Operation {
  kAddStage,
  kUpdateStage,
  kWorkerUpdates,
  kRecomputeSummary,
  kResetProgress,
  kEnqueue,
  kRetry,
  kCancel,
  kSetStatus,
  kGrantLease,
  kEndRun,
  kExpireLease,
  kReleaseLease,
  kHandToWorkers,
  kReap,
  kAdvanceClock,
  kLabels,
  kAddParam,
  kApplySetup,
  kMaxValue = kApplySetup,  // For FuzzedDataProvider::ConsumeEnum.
};

constexpr const char* kOperationNames[] = {
    "AddStage",
    "UpdateStage",
    "ApplyStageUpdates",
    "RecomputeSummary",
    "ResetProgress",
    "Enqueue",
    "Retry",
    "Cancel",
    "SetStatus",
    "GrantLease",
    "EndRun",
    "ExpireLease",
    "ReleaseLease",
    "HandToWorkers",
    "Reap",
    "AdvanceClock",
    "StatusLabel",
    "AddParam",
    "ApplySetup",
};
static_assert(sizeof(kOperationNames) / sizeof(kOperationNames[0]) ==
                  static_cast<size_t>(Operation::kMaxValue) + 1,
              "a name for every operation");

// Any status, JOB_STATUS_UNSPECIFIED and values outside the enum included.
v2::JobStatus AnyStatus(FuzzedDataProvider& input) {
  return static_cast<v2::JobStatus>(input.ConsumeIntegralInRange(0, 12));
}

// One of the ten statuses a stored job can have.
v2::JobStatus StoredStatus(FuzzedDataProvider& input) {
  return input.PickValueInArray(
      {v2::CREATED, v2::PENDING, v2::STARTED, v2::SUCCESS, v2::FAILURE,
       v2::RETRY, v2::CANCELING, v2::REVOKED, v2::RECEIVED, v2::UNKNOWN});
}

// A progress number: the ordinary ones, the edges and the nonsense.
double AnyProgress(FuzzedDataProvider& input) {
  switch (input.ConsumeIntegralInRange(0, 9)) {
    case 0:
      return 0.0;
    case 1:
      return 1.0;
    case 2:
      return input.ConsumeProbability<double>();
    case 3:
      return std::numeric_limits<double>::quiet_NaN();
    case 4:
      return std::numeric_limits<double>::infinity();
    case 5:
      return -std::numeric_limits<double>::infinity();
    case 6:
      return std::nextafter(1.0, 2.0);
    case 7:
      return -0.0;
    case 8:
      return input.PickValueInArray({1e300, -1e300, 1e17, -1e-300,
                                     std::numeric_limits<double>::max(),
                                     std::numeric_limits<double>::lowest()});
    default:
      return input.ConsumeFloatingPoint<double>();
  }
}

// A param value of any kind: null, a number (a progress number or a whole
// count), text, a boolean, and lists and structs two levels deep.
google::protobuf::Value AnyValue(FuzzedDataProvider& input, int depth = 0) {
  google::protobuf::Value value;
  switch (input.ConsumeIntegralInRange(0, depth < 2 ? 6 : 4)) {
    case 0:
      value.set_null_value(google::protobuf::NULL_VALUE);
      break;
    case 1:
      value.set_number_value(AnyProgress(input));
      break;
    case 2:
      value.set_string_value(input.ConsumeRandomLengthString(kMaxTextBytes));
      break;
    case 3:
      value.set_bool_value(input.ConsumeBool());
      break;
    case 4:
      value.set_number_value(input.ConsumeIntegralInRange(0, 1000000));
      break;
    case 5: {
      const int count = input.ConsumeIntegralInRange(0, 3);
      for (int i = 0; i < count; ++i) {
        *value.mutable_list_value()->add_values() = AnyValue(input, depth + 1);
      }
      break;
    }
    default: {
      const int count = input.ConsumeIntegralInRange(0, 3);
      auto* fields = value.mutable_struct_value()->mutable_fields();
      for (int i = 0; i < count; ++i) {
        const std::string name = input.ConsumeRandomLengthString(kMaxTextBytes);
        (*fields)[name] = AnyValue(input, depth + 1);
      }
      break;
    }
  }
  return value;
}

// A stage reference: the key or name of an existing stage, or any text.
std::string StageRef(FuzzedDataProvider& input,
                     const v2::JobProgress& progress) {
  if (progress.stages_size() > 0 && input.ConsumeBool()) {
    const v2::ProgressStage& stage = progress.stages(
        input.ConsumeIntegralInRange(0, progress.stages_size() - 1));
    return input.ConsumeBool() ? stage.key() : stage.name();
  }
  return input.ConsumeRandomLengthString(kMaxTextBytes);
}

bool InUnitRange(double value) { return value >= 0.0 && value <= 1.0; }

bool SameMutation(const JobMutation& a, const JobMutation& b) {
  if (!SameMessage(a.job, b.job)) return false;
  if (a.lease.lease_id != b.lease.lease_id ||
      a.lease.holder != b.lease.holder ||
      a.lease.expires_at != b.lease.expires_at ||
      a.lease.attempts != b.lease.attempts) {
    return false;
  }
  if (a.logs.size() != b.logs.size()) return false;
  for (size_t i = 0; i < a.logs.size(); ++i) {
    if (a.logs[i].level != b.logs[i].level ||
        a.logs[i].message != b.logs[i].message) {
      return false;
    }
  }
  return a.allow_leave_final == b.allow_leave_final;
}

bool IsSlug(const std::string& slug) {
  for (char c : slug) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
      return false;
    }
  }
  return slug.empty() || (slug.front() != '_' && slug.back() != '_');
}

void CheckSlug(const std::string& text) {
  const std::string slug = Slugify(text);
  JOBLINE_FUZZ_CHECK(IsSlug(slug), "Slugify(\"", text, "\") = \"", slug, "\"");
  JOBLINE_FUZZ_CHECK(Slugify(slug) == slug, "Slugify is not idempotent on \"",
                     slug, "\"");
}

// The label of any status and number.
void CheckLabel(v2::JobStatus status, double progress) {
  const std::string label = StatusLabel(status, progress);
  if (status == v2::STARTED || status == v2::RETRY || status == v2::SUCCESS) {
    JOBLINE_FUZZ_CHECK(absl::EndsWith(label, "% complete"), "label \"", label,
                       "\"");
    // No progress at or above 0 is a negative percentage.
    int64_t percent = 0;
    const bool whole = absl::SimpleAtoi(
        absl::string_view(label).substr(0, label.find('%')), &percent);
    JOBLINE_FUZZ_CHECK(whole && !(progress >= 0 && percent < 0), "label \"",
                       label, "\" for ", progress);
    if (InUnitRange(progress)) {
      const int64_t percent =
          static_cast<int64_t>(std::floor(progress * 100.0));
      JOBLINE_FUZZ_CHECK(label == absl::StrCat(percent, "% complete"),
                         "label \"", label, "\" for ", progress);
    }
  } else {
    JOBLINE_FUZZ_CHECK(!label.empty() || StatusName(status).empty(),
                       "empty label for ", StatusName(status));
  }
}

// What holds for the progress of every job at any time.
void CheckProgressShape(const v2::JobProgress& progress) {
  JOBLINE_FUZZ_CHECK(InUnitRange(progress.summary().progress()),
                     "summary progress ", progress.summary().progress());
  for (const v2::ProgressStage& stage : progress.stages()) {
    JOBLINE_FUZZ_CHECK(InUnitRange(stage.progress()), "stage ", stage.key(),
                       " progress ", stage.progress());
  }
}

// What a summary recomputation leaves.
void CheckRecomputed(const v2::JobProgress& progress, absl::string_view what) {
  for (const v2::ProgressStage& stage : progress.stages()) {
    JOBLINE_FUZZ_CHECK(!(stage.progress() > 0 && stage.status() == v2::CREATED),
                       what, ": stage ", stage.key(), " at ", stage.progress(),
                       " is still CREATED");
    JOBLINE_FUZZ_CHECK(
        !(stage.progress() >= 1.0 && !IsFinalStatus(stage.status())), what,
        ": stage ", stage.key(), " at 1 is ", StatusName(stage.status()));
  }
  v2::JobProgress again = progress;
  RecomputeSummary(again);
  JOBLINE_FUZZ_CHECK(
      SameMessage(again, progress), what, ": recomputing again changes ",
      progress.ShortDebugString(), " to ", again.ShortDebugString());
}

// D18 between two states of one attempt.
void CheckNoRegression(const v2::JobProgress& before,
                       const v2::JobProgress& after, absl::string_view what) {
  JOBLINE_FUZZ_CHECK(after.summary().progress() >= before.summary().progress(),
                     what, ": summary progress went from ",
                     before.summary().progress(), " to ",
                     after.summary().progress());
  JOBLINE_FUZZ_CHECK(after.stages_size() >= before.stages_size(), what,
                     ": stages went from ", before.stages_size(), " to ",
                     after.stages_size());
  for (int i = 0; i < before.stages_size() && i < after.stages_size(); ++i) {
    const v2::ProgressStage& old_stage = before.stages(i);
    const v2::ProgressStage& new_stage = after.stages(i);
    JOBLINE_FUZZ_CHECK(old_stage.key() == new_stage.key(), what, ": stage ", i,
                       " key went from ", old_stage.key(), " to ",
                       new_stage.key());
    JOBLINE_FUZZ_CHECK(new_stage.progress() >= old_stage.progress(), what,
                       ": stage ", old_stage.key(), " went from ",
                       old_stage.progress(), " to ", new_stage.progress());
  }
}

// The fuzzed job and its clock.
struct State {
  JobMutation mutation;
  absl::Time now = absl::FromUnixSeconds(1700000000);
  int leases_granted = 0;
};

State StartingJob(FuzzedDataProvider& input) {
  State state;
  v2::Job& job = state.mutation.job;
  job.set_id(12);
  job.set_name("Populate captures for collection 111");
  const auto types = JobTypes();
  job.mutable_job_type()->set_key(std::string(
      types[input.ConsumeIntegralInRange<size_t>(0, types.size() - 1)].key));
  job.set_dispatch_mode(std::string(kDispatchInternal));
  job.set_delay(input.ConsumeIntegralInRange(-2, 10));
  if (input.ConsumeBool()) job.mutable_pipeline()->set_id(3);
  job.mutable_project()->set_id(16);
  const v2::JobStatus status = StoredStatus(input);
  job.set_status(status);
  job.mutable_progress()->mutable_summary()->set_status(status);
  ApplySetup(job);
  *job.mutable_created_at() = ToProtoTime(state.now);
  *job.mutable_updated_at() = ToProtoTime(state.now);

  // A running job holds a lease; a queued one waits in its queue.
  JobLease& lease = state.mutation.lease;
  if (status == v2::STARTED || status == v2::CANCELING) {
    lease.lease_id = "lease-0";
    lease.holder = "worker-1";
    lease.expires_at = state.now + absl::Seconds(60);
    lease.attempts = 1;
    *job.mutable_started_at() = ToProtoTime(state.now);
  } else if (status == v2::PENDING) {
    AssignQueue(state.mutation);
  }
  if (IsFinalStatus(status))
    *job.mutable_finished_at() = ToProtoTime(state.now);
  return state;
}

// Applies one operation; returns its status (OK for operations that cannot
// fail).
absl::Status Apply(Operation operation, FuzzedDataProvider& input,
                   State& state) {
  JobMutation& mutation = state.mutation;
  v2::Job& job = mutation.job;
  v2::JobProgress& progress = *job.mutable_progress();
  switch (operation) {
    case Operation::kAddStage: {
      const std::string name = input.ConsumeRandomLengthString(kMaxTextBytes);
      const std::string key = input.ConsumeBool()
                                  ? std::string()
                                  : input.ConsumeRandomLengthString(32);
      CheckSlug(name);
      AddStage(progress, name, key);
      return absl::OkStatus();
    }
    case Operation::kUpdateStage: {
      const std::string ref = StageRef(input, progress);
      StageUpdate update;
      if (input.ConsumeBool()) update.status = AnyStatus(input);
      if (input.ConsumeBool()) update.progress = AnyProgress(input);
      if (input.ConsumeBool()) {
        update.name = input.ConsumeRandomLengthString(kMaxTextBytes);
      }
      const int params = input.ConsumeIntegralInRange(0, 3);
      for (int i = 0; i < params; ++i) {
        std::string name = input.ConsumeRandomLengthString(kMaxTextBytes);
        update.params.emplace_back(std::move(name), AnyValue(input));
      }
      return UpdateStage(progress, ref, update);
    }
    case Operation::kWorkerUpdates: {
      google::protobuf::RepeatedPtrField<v2::StageUpdate> updates;
      const int count = input.ConsumeIntegralInRange(0, 4);
      for (int i = 0; i < count; ++i) {
        v2::StageUpdate* update = updates.Add();
        update->set_key(input.ConsumeBool() ? StageRef(input, progress) : "");
        update->set_name(input.ConsumeRandomLengthString(kMaxTextBytes));
        update->set_status(AnyStatus(input));
        if (input.ConsumeBool()) update->set_progress(AnyProgress(input));
        const int params = input.ConsumeIntegralInRange(0, 3);
        for (int p = 0; p < params; ++p) {
          v2::ParamUpdate* param = update->add_params();
          param->set_name(input.ConsumeRandomLengthString(kMaxTextBytes));
          param->set_key(input.ConsumeRandomLengthString(32));
          *param->mutable_value() = AnyValue(input);
        }
      }
      const absl::Status status = ApplyStageUpdates(updates, progress);
      if (status.ok()) CheckRecomputed(progress, "ApplyStageUpdates");
      return status;
    }
    case Operation::kRecomputeSummary:
      RecomputeSummary(progress);
      CheckRecomputed(progress, "RecomputeSummary");
      return absl::OkStatus();
    case Operation::kResetProgress: {
      const v2::JobStatus status = StoredStatus(input);
      const v2::JobProgress before = progress;
      ResetProgress(progress, status);
      JOBLINE_FUZZ_CHECK(progress.summary().progress() == 0.0 &&
                             progress.summary().status() == status,
                         "ResetProgress left the summary at ",
                         progress.summary().ShortDebugString());
      for (int i = 0; i < progress.stages_size(); ++i) {
        const v2::ProgressStage& stage = progress.stages(i);
        JOBLINE_FUZZ_CHECK(stage.progress() == 0.0 && stage.status() == status,
                           "ResetProgress left stage ", stage.key(), " at ",
                           stage.progress());
        for (int p = 0; p < stage.params_size(); ++p) {
          const google::protobuf::Value& old_value =
              before.stages(i).params(p).value();
          const google::protobuf::Value& value = stage.params(p).value();
          if (old_value.has_number_value() || old_value.has_bool_value()) {
            JOBLINE_FUZZ_CHECK(
                value.has_number_value() && value.number_value() == 0.0,
                "ResetProgress left param ", stage.params(p).key(), " at ",
                value.ShortDebugString());
          } else {
            JOBLINE_FUZZ_CHECK(SameMessage(old_value, value),
                               "ResetProgress changed param ",
                               stage.params(p).key());
          }
        }
      }
      return absl::OkStatus();
    }
    case Operation::kEnqueue: {
      const absl::Status status = Enqueue(mutation);
      if (status.ok()) {
        JOBLINE_FUZZ_CHECK(job.status() == v2::PENDING &&
                               !mutation.lease.leased() &&
                               mutation.lease.attempts == 0 &&
                               mutation.lease.holder ==
                                   (NeedsRunner(job) ? kRunnerHolder : ""),
                           "Enqueue left ", StatusName(job.status()),
                           " in queue \"", mutation.lease.holder, "\"");
        CheckRecomputed(progress, "Enqueue");
      }
      return status;
    }
    case Operation::kRetry: {
      const absl::Status status = Retry(mutation);
      if (status.ok()) {
        JOBLINE_FUZZ_CHECK(
            job.status() == v2::PENDING && !mutation.lease.leased() &&
                progress.summary().progress() == 0.0 && !job.has_finished_at(),
            "Retry left ", job.ShortDebugString());
      }
      return status;
    }
    case Operation::kCancel: {
      const v2::JobStatus from = job.status();
      const JobMutation before = mutation;
      const absl::Status status = Cancel(state.now, mutation);
      if (from == v2::CREATED || from == v2::PENDING || from == v2::RETRY) {
        JOBLINE_FUZZ_CHECK(
            job.status() == v2::REVOKED && !mutation.lease.leased() &&
                job.has_finished_at(),
            "Cancel of ", StatusName(from), " left ", StatusName(job.status()));
      } else if (from == v2::STARTED) {
        JOBLINE_FUZZ_CHECK(job.status() == v2::CANCELING,
                           "Cancel of STARTED left ", StatusName(job.status()));
      } else {
        JOBLINE_FUZZ_CHECK(SameMutation(before, mutation), "Cancel of ",
                           StatusName(from), " changed the job");
      }
      return status;
    }
    case Operation::kSetStatus: {
      const v2::JobStatus to = AnyStatus(input);
      StatusGuard guard;
      switch (input.ConsumeIntegralInRange(0, 2)) {
        case 0:
          break;
        case 1:
          guard = FinishGuard();
          break;
        default:
          guard.allowed_from = {StoredStatus(input), StoredStatus(input)};
          guard.success_requires_complete = input.ConsumeBool();
          break;
      }
      const v2::JobStatus from = job.status();
      const absl::StatusOr<bool> written =
          SetStatus(to, state.now, guard, mutation);
      if (!written.ok()) return written.status();
      JOBLINE_FUZZ_CHECK(*written == (job.status() != from),
                         "SetStatus returned ", *written, " moving ",
                         StatusName(from), " to ", StatusName(job.status()));
      if (*written) {
        JOBLINE_FUZZ_CHECK(job.status() == to, "SetStatus wrote ",
                           StatusName(job.status()), " for ", StatusName(to));
        JOBLINE_FUZZ_CHECK(!mutation.logs.empty() &&
                               mutation.logs.back().message ==
                                   StatusChangeMessage(job.id(), from, to),
                           "SetStatus did not log the change");
        JOBLINE_FUZZ_CHECK(to != v2::SUCCESS ||
                               !guard.success_requires_complete ||
                               IsComplete(progress),
                           "SUCCESS written over incomplete progress");
      }
      return absl::OkStatus();
    }
    case Operation::kGrantLease: {
      const std::string queue = input.ConsumeBool()
                                    ? mutation.lease.holder
                                    : input.PickValueInArray<std::string>(
                                          {"", kRunnerHolder, "worker-1"});
      const std::string lease_id =
          absl::StrCat("lease-", ++state.leases_granted);
      const int32_t attempts = mutation.lease.attempts;
      // The runner takes jobs from its queue; workers from theirs.
      const std::string holder =
          queue == kRunnerHolder ? kRunnerHolder : "worker-1";
      const absl::Status status =
          GrantLease(queue, holder, lease_id, state.now,
                     state.now + absl::Seconds(60), mutation);
      if (status.ok()) {
        JOBLINE_FUZZ_CHECK(job.status() == v2::STARTED &&
                               mutation.lease.lease_id == lease_id &&
                               mutation.lease.attempts == attempts + 1 &&
                               job.has_started_at(),
                           "GrantLease left ", StatusName(job.status()));
      }
      return status;
    }
    case Operation::kEndRun: {
      RunEnd end;
      end.status = AnyStatus(input);
      end.error = input.ConsumeRandomLengthString(kMaxTextBytes);
      google::protobuf::Value result;
      if (input.ConsumeBool()) {
        result = AnyValue(input);
        end.result = &result;
      }
      // The callers end only a run whose lease they hold (UnderLease).
      const absl::Status held =
          CheckLease(mutation.lease.lease_id, state.now, mutation);
      if (!held.ok()) return held;
      const v2::JobStatus from = job.status();
      const absl::Status status = EndRun(end, state.now, mutation);
      if (status.ok()) {
        JOBLINE_FUZZ_CHECK(IsFinalStatus(job.status()) &&
                               !mutation.lease.leased() &&
                               job.has_finished_at(),
                           "EndRun left ", StatusName(job.status()));
        JOBLINE_FUZZ_CHECK(
            (from == v2::CANCELING) == (job.status() == v2::REVOKED),
            "EndRun from ", StatusName(from), " ended ",
            StatusName(job.status()));
        if (job.status() == v2::SUCCESS) {
          for (const v2::ProgressStage& stage : progress.stages()) {
            JOBLINE_FUZZ_CHECK(
                stage.progress() >= 1.0 && IsFinalStatus(stage.status()),
                "SUCCESS with stage ", stage.key(), " at ", stage.progress(),
                " ", StatusName(stage.status()));
          }
        }
      }
      return status;
    }
    case Operation::kExpireLease: {
      const int32_t max_attempts = input.ConsumeIntegralInRange(1, 4);
      const v2::JobStatus from = job.status();
      const absl::Status status =
          ExpireLease(state.now, max_attempts, input.ConsumeBool(), mutation);
      if (status.ok()) {
        JOBLINE_FUZZ_CHECK(!mutation.lease.leased(),
                           "ExpireLease left a lease");
        JOBLINE_FUZZ_CHECK(
            job.status() == v2::PENDING || IsFinalStatus(job.status()),
            "ExpireLease from ", StatusName(from), " left ",
            StatusName(job.status()));
        JOBLINE_FUZZ_CHECK(from != v2::CANCELING || job.status() == v2::REVOKED,
                           "ExpireLease of a CANCELING job left ",
                           StatusName(job.status()));
      }
      return status;
    }
    case Operation::kReleaseLease: {
      const absl::Status status =
          ReleaseLease("the worker went away", mutation);
      if (status.ok()) {
        JOBLINE_FUZZ_CHECK(job.status() == v2::PENDING &&
                               !mutation.lease.leased() &&
                               !job.has_started_at(),
                           "ReleaseLease left ", StatusName(job.status()));
      }
      return status;
    }
    case Operation::kHandToWorkers: {
      // Only for a job the runner holds, as the runner calls it.
      if (mutation.lease.holder != kRunnerHolder || !mutation.lease.leased() ||
          (job.status() != v2::STARTED && job.status() != v2::CANCELING)) {
        return absl::OkStatus();
      }
      const v2::JobStatus from = job.status();
      HandToWorkers(state.now, mutation);
      JOBLINE_FUZZ_CHECK(!mutation.lease.leased(),
                         "HandToWorkers kept a lease");
      JOBLINE_FUZZ_CHECK(
          job.status() == (from == v2::CANCELING ? v2::REVOKED : v2::PENDING),
          "HandToWorkers from ", StatusName(from), " left ",
          StatusName(job.status()));
      return absl::OkStatus();
    }
    case Operation::kReap: {
      const absl::Duration cutoff =
          absl::Minutes(input.ConsumeIntegralInRange(0, 30));
      const v2::JobStatus from = job.status();
      const absl::Status status = Reap(state.now, cutoff, mutation);
      if (status.ok()) {
        JOBLINE_FUZZ_CHECK(
            IsRunningStatus(from) && job.status() == v2::REVOKED &&
                !mutation.lease.leased(),
            "Reap of ", StatusName(from), " left ", StatusName(job.status()));
      }
      return status;
    }
    case Operation::kAdvanceClock:
      state.now += absl::Seconds(input.ConsumeIntegralInRange(0, 3600));
      return absl::OkStatus();
    case Operation::kLabels: {
      const v2::JobStatus status = AnyStatus(input);
      CheckLabel(status, AnyProgress(input));
      v2::JobProgress labelled = progress;
      FillStatusLabels(labelled);
      return absl::OkStatus();
    }
    case Operation::kAddParam: {
      if (progress.stages_size() == 0) return absl::OkStatus();
      v2::ProgressStage& stage = *progress.mutable_stages(
          input.ConsumeIntegralInRange(0, progress.stages_size() - 1));
      const std::string name = input.ConsumeRandomLengthString(kMaxTextBytes);
      const google::protobuf::Value value = AnyValue(input);
      v2::StageParam* param = input.ConsumeBool()
                                  ? AddParam(stage, name, value)
                                  : AddOrUpdateParam(stage, name, value);
      JOBLINE_FUZZ_CHECK(param->key() == Slugify(name), "param key ",
                         param->key(), " for \"", name, "\"");
      return absl::OkStatus();
    }
    case Operation::kApplySetup:
      ApplySetup(job);
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

}  // namespace

int ProgressMergeOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider input(data, size);
  State state = StartingJob(input);
  CheckProgressShape(state.mutation.job.progress());

  for (int step = 0; step < kMaxOperations && input.remaining_bytes() > 0;
       ++step) {
    const Operation operation = input.ConsumeEnum<Operation>();
    // A MutateJob callback starts from the stored job, without logs.
    state.mutation.logs.clear();
    state.mutation.allow_leave_final = false;
    const JobMutation before = state.mutation;
    const absl::Status status = Apply(operation, input, state);
    const JobMutation& after = state.mutation;
    const v2::Job& job = after.job;
    const std::string what = absl::StrCat(
        kOperationNames[static_cast<int>(operation)], " at step ", step);
    JOBLINE_FUZZ_TRACE(
        what, ": ", status.ToString(), "; job ", StatusName(job.status()),
        ", summary ", job.progress().summary().progress(), ", ",
        job.progress().stages_size(), " stages, lease \"", after.lease.lease_id,
        "\" in \"", after.lease.holder, "\", attempts ", after.lease.attempts);

    if (!status.ok()) {
      JOBLINE_FUZZ_CHECK(SameMutation(before, after), what, " failed with ",
                         status.ToString(), " but changed the job");
      continue;
    }

    CheckProgressShape(job.progress());
    const bool resets = operation == Operation::kResetProgress ||
                        operation == Operation::kRetry;
    if (!resets) {
      CheckNoRegression(before.job.progress(), job.progress(), what);
    }

    // Final statuses are left only by a run or a retry, which say so.
    const bool reruns =
        operation == Operation::kEnqueue || operation == Operation::kRetry;
    if (IsFinalStatus(before.job.status()) && !reruns) {
      JOBLINE_FUZZ_CHECK(
          job.status() == before.job.status(), what, " moved a final job from ",
          StatusName(before.job.status()), " to ", StatusName(job.status()));
    }
    if (IsFinalStatus(before.job.status()) &&
        job.status() != before.job.status()) {
      JOBLINE_FUZZ_CHECK(after.allow_leave_final, what, " left ",
                         StatusName(before.job.status()),
                         " without allow_leave_final");
    }
    JOBLINE_FUZZ_CHECK(!after.allow_leave_final || reruns, what,
                       " set allow_leave_final");

    // A status write writes what goes with it.
    if (job.status() != before.job.status()) {
      JOBLINE_FUZZ_CHECK(job.progress().summary().status() == job.status(),
                         what, ": status ", StatusName(job.status()),
                         " with summary.status ",
                         StatusName(job.progress().summary().status()));
      if (job.status() == v2::STARTED) {
        JOBLINE_FUZZ_CHECK(job.has_started_at(), what,
                           ": STARTED without started_at");
      }
      if (IsFinalStatus(job.status())) {
        JOBLINE_FUZZ_CHECK(job.has_finished_at(), what, ": ",
                           StatusName(job.status()), " without finished_at");
      }
    }

    // The store stamps every write.
    if (!SameMutation(before, after)) {
      *state.mutation.job.mutable_updated_at() = ToProtoTime(state.now);
    }
  }
  return 0;
}

}  // namespace fuzz
}  // namespace jobline
