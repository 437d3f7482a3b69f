// The worker_report fuzz target: a sequence of worker protocol calls and
// upkeep against WorkerProtocol (server/worker_protocol.h) on a fresh
// in-memory SqliteJobStore with a FakeClock, with a JobManager for the
// clients' side (create, run, retry, cancel).
//
// Input: how many attempts a run may use, one to four jobs (type, delay,
// pipeline, queued or not), then calls until the input runs out: LeaseJobs
// (worker ids, job types, max_jobs, lease lengths, a caller that goes
// away), Heartbeat, ReportProgress and FinishJob under current, stale,
// foreign or made-up leases and job ids with any stage updates, statuses,
// results and log lines (bad levels, blank and oversized messages), the
// clock moving, ExpireLeases, runner leases granted, recovered and
// released, the reaper, and clients' run, retry and cancel.
//
// Checked:
//   - every answer is OK or one of the documented codes of its call (a
//     field error naming its field);
//   - a refused call changes nothing in the store;
//   - a worker call succeeds only under the job's current, unexpired lease;
//     its answer agrees with the store (expiry, cancel_requested, the
//     final status);
//   - LeaseJobs hands out PENDING jobs of the asked types from the
//     workers' queue only, each once, at most max_jobs;
//   - after every call, for every job: a lease only on a STARTED or
//     CANCELING job and every such job leased; a PENDING job waits
//     unleased in the queue it belongs to; a final job is unleased with
//     finished_at; summary.status is the status (D4); attempts within
//     max_attempts; progress in 0..1 and never lower (D18) unless a client
//     retried the job; a final job keeps its status unless a client ran or
//     retried it.

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "glog/logging.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/struct.pb.h"
#include "jobline/v2/catalog.pb.h"
#include "jobline/v2/jobs.pb.h"
#include "jobline/v2/worker.pb.h"
#include "server/job_manager.h"
#include "server/job_rules.h"
#include "server/status_util.h"
#include "server/work_signal.h"
#include "server/worker_protocol.h"
#include "storage/fake_clock.h"
#include "storage/job_store.h"
#include "storage/sqlite_job_store.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/fuzz_targets.h"

namespace jobline {
namespace fuzz {
namespace {

constexpr size_t kMaxTextBytes = 200;
constexpr int kMaxCalls = 48;

enum class Call {
  kLeaseJobs,
  kHeartbeat,
  kReportProgress,
  kFinishJob,
  kAdvanceClock,
  kExpireLeases,
  kClientCancel,
  kClientRetry,
  kClientRun,
  kReap,
  kRunnerGrant,
  kRecoverRunnerLeases,
  kReleaseRunnerLeases,
  kMaxValue = kReleaseRunnerLeases,  // For FuzzedDataProvider::ConsumeEnum.
};

constexpr const char* kCallNames[] = {
    "LeaseJobs",           "Heartbeat",    "ReportProgress",
    "FinishJob",           "AdvanceClock", "ExpireLeases",
    "CancelJob",           "RetryJob",     "RunJob",
    "ReapStaleJobs",       "Grant",        "RecoverRunnerLeases",
    "ReleaseRunnerLeases",
};
static_assert(sizeof(kCallNames) / sizeof(kCallNames[0]) ==
                  static_cast<size_t>(Call::kMaxValue) + 1,
              "a name for every call");

// The first bytes of a message's text form, for traces.
std::string Brief(const google::protobuf::Message& message) {
  std::string text = message.ShortDebugString();
  if (text.size() > 300) text = absl::StrCat(text.substr(0, 300), "...");
  return text;
}

// One job as stored: the job (whose sequence counts every write, log lines
// included) and its lease.
struct StoredJob {
  v2::Job job;
  JobLease lease;
};

// Leases are stored to the microsecond; answers carry the exact time.
bool SameInstant(absl::Time a, absl::Time b) {
  return absl::AbsDuration(a - b) < absl::Microseconds(1);
}

bool SameStoredJob(const StoredJob& a, const StoredJob& b) {
  return SameMessage(a.job, b.job) && a.lease.lease_id == b.lease.lease_id &&
         a.lease.holder == b.lease.holder &&
         a.lease.expires_at == b.lease.expires_at &&
         a.lease.attempts == b.lease.attempts;
}

// The store, the protocol and what the target remembers between calls.
class World {
 public:
  // OK, or why the world could not be built (a fault of the store).
  absl::Status Open(int32_t max_attempts) {
    SqliteJobStoreOptions store_options;
    store_options.path = ":memory:";
    store_options.clock = &clock_;
    absl::StatusOr<std::unique_ptr<SqliteJobStore>> store =
        OpenSqliteJobStore(store_options);
    if (!store.ok()) return store.status();
    store_ = *std::move(store);
    JobManagerOptions manager_options;
    manager_options.work_signal = &signal_;
    manager_ =
        std::make_unique<JobManager>(store_.get(), &clock_, manager_options);
    WorkerProtocolOptions protocol_options;
    protocol_options.max_attempts = max_attempts;
    protocol_ = std::make_unique<WorkerProtocol>(store_.get(), &clock_,
                                                 &signal_, protocol_options);

    // The records jobs point to.
    v2::Catalog catalog;
    v2::Project* project = catalog.add_projects();
    project->set_id(16);
    project->set_name("Aarhus Universitet, Department of Ecoscience");
    v2::Pipeline* pipeline = catalog.add_pipelines();
    pipeline->set_id(3);
    pipeline->set_name("Moth detector");
    pipeline->set_slug("moth-detector");
    return manager_->ImportCatalog(catalog).status();
  }

  FakeClock& clock() { return clock_; }
  JobManager& manager() { return *manager_; }
  WorkerProtocol& protocol() { return *protocol_; }
  const WorkerProtocolOptions& options() const { return protocol_->options(); }

  std::vector<int64_t>& job_ids() { return job_ids_; }
  // Every lease id handed out, current or not.
  std::vector<std::string>& lease_ids() { return lease_ids_; }

  // The stored state of every job.
  std::map<int64_t, StoredJob> Snapshot() {
    std::map<int64_t, StoredJob> snapshot;
    for (const int64_t id : job_ids_) {
      absl::StatusOr<v2::Job> job = store_->GetJob(id);
      absl::StatusOr<JobLease> lease = store_->GetLease(id);
      JOBLINE_FUZZ_CHECK(job.ok() && lease.ok(), "reading job ", id, ": ",
                         job.status().ToString(), " ",
                         lease.status().ToString());
      if (!job.ok() || !lease.ok()) continue;
      snapshot[id] = StoredJob{*std::move(job), *std::move(lease)};
    }
    return snapshot;
  }

 private:
  FakeClock clock_{absl::FromUnixSeconds(1700000000)};
  WorkSignal signal_;
  std::unique_ptr<SqliteJobStore> store_;
  std::unique_ptr<JobManager> manager_;
  std::unique_ptr<WorkerProtocol> protocol_;
  std::vector<int64_t> job_ids_;
  std::vector<std::string> lease_ids_;
};

// ---- Inputs -----------------------------------------------------------------

// `bytes` with every byte that starts no well-formed UTF-8 sequence
// replaced by U+FFFD: what a string field of a message parsed from the
// wire can hold.
std::string ValidUtf8(const std::string& bytes) {
  std::string text;
  size_t i = 0;
  while (i < bytes.size()) {
    const auto lead = static_cast<unsigned char>(bytes[i]);
    size_t length = 0;
    uint32_t code = 0;
    uint32_t minimum = 0;
    if (lead < 0x80) {
      length = 1;
      code = lead;
    } else if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
      code = lead & 0x1F;
      minimum = 0x80;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      code = lead & 0x0F;
      minimum = 0x800;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      code = lead & 0x07;
      minimum = 0x10000;
    }
    bool valid = length > 0 && i + length <= bytes.size();
    for (size_t k = 1; valid && k < length; ++k) {
      const auto next = static_cast<unsigned char>(bytes[i + k]);
      valid = (next & 0xC0) == 0x80;
      code = (code << 6) | (next & 0x3F);
    }
    valid = valid && code >= minimum && code <= 0x10FFFF &&
            !(code >= 0xD800 && code <= 0xDFFF);
    if (valid) {
      text.append(bytes, i, length);
      i += length;
    } else {
      text.append("\xEF\xBF\xBD");
      ++i;
    }
  }
  return text;
}

// Text for a string field: any bytes, made valid UTF-8 as the wire
// requires.
std::string AnyText(FuzzedDataProvider& input) {
  return ValidUtf8(input.ConsumeRandomLengthString(kMaxTextBytes));
}

// A known lease id, a made-up one, or none.
std::string AnyLeaseId(FuzzedDataProvider& input, World& world) {
  const std::vector<std::string>& known = world.lease_ids();
  switch (input.ConsumeIntegralInRange(0, 3)) {
    case 0:
    case 1:
      if (!known.empty()) {
        return known[input.ConsumeIntegralInRange<size_t>(0, known.size() - 1)];
      }
      return "";
    case 2:
      return "";
    default:
      return AnyText(input);
  }
}

// A known job id, or any number.
int64_t AnyJobId(FuzzedDataProvider& input, World& world) {
  const std::vector<int64_t>& known = world.job_ids();
  if (!known.empty() && input.ConsumeIntegralInRange(0, 4) > 0) {
    return known[input.ConsumeIntegralInRange<size_t>(0, known.size() - 1)];
  }
  return input.ConsumeIntegral<int64_t>();
}

// Sets `duration` unless the input leaves it out: ordinary lengths, zero,
// negative and past any limit.
void MaybeDuration(FuzzedDataProvider& input,
                   google::protobuf::Duration* duration, bool* set) {
  *set = input.ConsumeBool();
  if (!*set) return;
  switch (input.ConsumeIntegralInRange(0, 3)) {
    case 0:
      duration->set_seconds(input.ConsumeIntegralInRange(1, 600));
      break;
    case 1:
      duration->set_seconds(0);
      duration->set_nanos(input.ConsumeIntegralInRange(0, 999999999));
      break;
    case 2:
      duration->set_seconds(input.ConsumeIntegralInRange(-100, 0));
      break;
    default:
      duration->set_seconds(
          input.ConsumeIntegralInRange<int64_t>(3600, 315576000000));
      break;
  }
}

v2::JobStatus AnyStatus(FuzzedDataProvider& input) {
  return static_cast<v2::JobStatus>(input.ConsumeIntegralInRange(0, 11));
}

double AnyProgress(FuzzedDataProvider& input) {
  switch (input.ConsumeIntegralInRange(0, 5)) {
    case 0:
      return 1.0;
    case 1:
      return input.ConsumeProbability<double>();
    case 2:
      return std::numeric_limits<double>::quiet_NaN();
    case 3:
      return input.PickValueInArray(
          {-1.0, 2.0, 1e300, -0.0, std::numeric_limits<double>::infinity()});
    default:
      return input.ConsumeFloatingPoint<double>();
  }
}

google::protobuf::Value AnyValue(FuzzedDataProvider& input) {
  google::protobuf::Value value;
  switch (input.ConsumeIntegralInRange(0, 5)) {
    case 0:
      value.set_null_value(google::protobuf::NULL_VALUE);
      break;
    case 1:
      value.set_number_value(input.ConsumeFloatingPoint<double>());
      break;
    case 2:
      value.set_bool_value(input.ConsumeBool());
      break;
    case 3: {
      const std::string name = AnyText(input);
      (*value.mutable_struct_value()->mutable_fields())[name].set_string_value(
          AnyText(input));
      break;
    }
    case 4:
      value.set_number_value(input.ConsumeIntegralInRange(0, 1000000));
      break;
    default:
      value.set_string_value(AnyText(input));
      break;
  }
  return value;
}

void AddStageUpdates(
    FuzzedDataProvider& input,
    google::protobuf::RepeatedPtrField<v2::StageUpdate>* updates) {
  const int count = input.ConsumeIntegralInRange(0, 3);
  for (int i = 0; i < count; ++i) {
    v2::StageUpdate* update = updates->Add();
    switch (input.ConsumeIntegralInRange(0, 2)) {
      case 0:
        update->set_key(
            input.PickValueInArray({"delay", "collect", "process", "results"}));
        break;
      case 1:
        update->set_name(AnyText(input));
        break;
      default:
        update->set_key(AnyText(input));
        update->set_name(AnyText(input));
        break;
    }
    update->set_status(AnyStatus(input));
    if (input.ConsumeBool()) update->set_progress(AnyProgress(input));
    const int params = input.ConsumeIntegralInRange(0, 2);
    for (int p = 0; p < params; ++p) {
      v2::ParamUpdate* param = update->add_params();
      param->set_name(AnyText(input));
      if (input.ConsumeBool()) param->set_key(AnyText(input));
      *param->mutable_value() = AnyValue(input);
    }
  }
}

void AddLogLines(FuzzedDataProvider& input,
                 google::protobuf::RepeatedPtrField<v2::WorkerLogLine>* logs) {
  const int count = input.ConsumeIntegralInRange(0, 3);
  for (int i = 0; i < count; ++i) {
    v2::WorkerLogLine* line = logs->Add();
    line->set_level(input.PickValueInArray<std::string>(
        {"INFO", "DEBUG", "WARNING", "ERROR", "CRITICAL", "", "info",
         "FATAL"}));
    switch (input.ConsumeIntegralInRange(0, 3)) {
      case 0:
        line->set_message(" \t");
        break;
      case 1:
        // One byte past the default limit of a message.
        line->set_message(std::string(64 * 1024 + 1, 'x'));
        break;
      default:
        line->set_message(AnyText(input));
        break;
    }
  }
}

// ---- Checks -----------------------------------------------------------------

bool OneOf(const absl::Status& status,
           std::initializer_list<absl::StatusCode> codes) {
  for (absl::StatusCode code : codes) {
    if (status.code() == code) return true;
  }
  return false;
}

// A call's error: one of `codes`, a field error naming its field.
void CheckError(const absl::Status& status, absl::string_view call,
                std::initializer_list<absl::StatusCode> codes) {
  JOBLINE_FUZZ_CHECK(OneOf(status, codes), call, " answered ",
                     status.ToString());
  if (absl::IsInvalidArgument(status)) {
    const auto bad_request = GetBadRequest(status);
    JOBLINE_FUZZ_CHECK(
        bad_request.has_value() && bad_request->field_violations_size() > 0 &&
            !bad_request->field_violations(0).field().empty(),
        call, ": INVALID_ARGUMENT names no field: ", status.ToString());
  }
}

// A refused call wrote nothing.
void CheckUnchanged(const std::map<int64_t, StoredJob>& before,
                    const std::map<int64_t, StoredJob>& after,
                    absl::string_view call, const absl::Status& status) {
  for (const auto& [id, job] : before) {
    const auto found = after.find(id);
    if (found == after.end()) continue;
    JOBLINE_FUZZ_CHECK(SameStoredJob(job, found->second), call, " answered ",
                       status.ToString(), " but changed job ", id);
  }
}

// Whether `lease_id` was the current, unexpired lease of job `id`.
bool HeldLease(const std::map<int64_t, StoredJob>& before, int64_t id,
               const std::string& lease_id, absl::Time now) {
  const auto found = before.find(id);
  if (found == before.end()) return false;
  const StoredJob& job = found->second;
  return !lease_id.empty() && job.lease.lease_id == lease_id &&
         job.lease.expires_at > now && !IsFinalStatus(job.job.status());
}

// The rules every stored job obeys between calls.
void CheckStoredJob(const StoredJob& stored, int32_t max_attempts) {
  const v2::Job& job = stored.job;
  const JobLease& lease = stored.lease;
  const v2::JobStatus status = job.status();
  const std::string what =
      absl::StrCat("job ", job.id(), " ", StatusName(status));
  const bool running = status == v2::STARTED || status == v2::CANCELING;
  JOBLINE_FUZZ_CHECK(lease.leased() == running, what, " has lease \"",
                     lease.lease_id, "\"");
  if (status == v2::PENDING) {
    const std::string queue = NeedsRunner(job) ? kRunnerHolder : "";
    JOBLINE_FUZZ_CHECK(lease.holder == queue, what, " waits in queue \"",
                       lease.holder, "\" instead of \"", queue, "\"");
  }
  if (IsFinalStatus(status)) {
    JOBLINE_FUZZ_CHECK(job.has_finished_at(), what, " without finished_at");
  }
  JOBLINE_FUZZ_CHECK(job.progress().summary().status() == status, what,
                     " with summary.status ",
                     StatusName(job.progress().summary().status()));
  JOBLINE_FUZZ_CHECK(lease.attempts >= 0 && lease.attempts <= max_attempts,
                     what, " used ", lease.attempts, " attempts of ",
                     max_attempts);
  const double summary = job.progress().summary().progress();
  JOBLINE_FUZZ_CHECK(summary >= 0.0 && summary <= 1.0, what,
                     " summary progress ", summary);
  for (const v2::ProgressStage& stage : job.progress().stages()) {
    JOBLINE_FUZZ_CHECK(stage.progress() >= 0.0 && stage.progress() <= 1.0, what,
                       " stage ", stage.key(), " progress ", stage.progress());
  }
}

// D18 and final statuses between two snapshots; `rerun` holds the jobs a
// client ran or retried in between.
void CheckHistory(const std::map<int64_t, StoredJob>& before,
                  const std::map<int64_t, StoredJob>& after,
                  const std::set<int64_t>& rerun, absl::string_view call) {
  for (const auto& [id, old_job] : before) {
    const auto found = after.find(id);
    if (found == after.end() || rerun.count(id) > 0) continue;
    const v2::Job& old_state = old_job.job;
    const v2::Job& new_state = found->second.job;
    if (IsFinalStatus(old_state.status())) {
      JOBLINE_FUZZ_CHECK(new_state.status() == old_state.status(), call,
                         " moved final job ", id, " from ",
                         StatusName(old_state.status()), " to ",
                         StatusName(new_state.status()));
    }
    JOBLINE_FUZZ_CHECK(new_state.progress().summary().progress() >=
                           old_state.progress().summary().progress(),
                       call, ": summary of job ", id, " went from ",
                       old_state.progress().summary().progress(), " to ",
                       new_state.progress().summary().progress());
    const auto& old_stages = old_state.progress().stages();
    const auto& new_stages = new_state.progress().stages();
    JOBLINE_FUZZ_CHECK(new_stages.size() >= old_stages.size(), call, ": job ",
                       id, " lost stages");
    for (int i = 0; i < old_stages.size() && i < new_stages.size(); ++i) {
      JOBLINE_FUZZ_CHECK(
          new_stages[i].key() == old_stages[i].key() &&
              new_stages[i].progress() >= old_stages[i].progress(),
          call, ": stage ", old_stages[i].key(), " of job ", id, " went from ",
          old_stages[i].progress(), " to ", new_stages[i].key(), " at ",
          new_stages[i].progress());
    }
  }
}

// ---- Calls ------------------------------------------------------------------

void CreateJobs(FuzzedDataProvider& input, World& world) {
  const int count = input.ConsumeIntegralInRange(1, 4);
  const auto types = JobTypes();
  for (int i = 0; i < count; ++i) {
    v2::CreateJobRequest request;
    v2::JobInput& job = *request.mutable_job();
    job.set_name(absl::StrCat("Job ", i));
    job.set_project_id(16);
    job.set_job_type_key(std::string(
        types[input.ConsumeIntegralInRange<size_t>(0, types.size() - 1)].key));
    job.set_delay(input.ConsumeIntegralInRange(0, 4) == 0 ? 2 : 0);
    if (input.ConsumeBool()) job.set_pipeline_id(3);
    request.set_start_now(input.ConsumeIntegralInRange(0, 3) > 0);
    absl::StatusOr<v2::Job> created = world.manager().CreateJob(request);
    JOBLINE_FUZZ_CHECK(created.ok(),
                       "CreateJob: ", created.status().ToString());
    if (created.ok()) world.job_ids().push_back(created->id());
  }
}

std::map<int64_t, StoredJob> LeaseJobsCall(
    FuzzedDataProvider& input, World& world,
    const std::map<int64_t, StoredJob>& before) {
  v2::LeaseJobsRequest request;
  request.set_worker_id(input.PickValueInArray<std::string>(
      {"worker-1", "worker-2", "", "host-1/pid-42"}));
  const int types = input.ConsumeIntegralInRange(0, 3);
  for (int i = 0; i < types; ++i) {
    request.add_job_types(
        input.ConsumeIntegralInRange(0, 9) == 0
            ? AnyText(input)
            : std::string(input.PickValueInArray(
                  {"populate_captures_collection", "data_storage_sync", "ml",
                   "unknown", "data_export", "post_processing",
                   "regroup_events"})));
  }
  request.set_max_jobs(input.ConsumeIntegralInRange(-1, 101));
  bool has_length = false;
  MaybeDuration(input, request.mutable_lease_duration(), &has_length);
  if (!has_length) request.clear_lease_duration();
  // No wait that would block: none, zero, or past the limits.
  switch (input.ConsumeIntegralInRange(0, 3)) {
    case 0:
      break;
    case 1:
      request.mutable_wait()->set_seconds(0);
      break;
    case 2:
      request.mutable_wait()->set_seconds(-1);
      break;
    default:
      request.mutable_wait()->set_seconds(31);
      break;
  }
  // A caller that goes away after its n-th look.
  const int gone_after =
      input.ConsumeBool() ? -1 : input.ConsumeIntegralInRange(0, 6);
  int looks = 0;
  const std::function<bool()> caller_gone = [gone_after, &looks] {
    return gone_after >= 0 && looks++ >= gone_after;
  };

  const absl::Time now = world.clock().Now();
  const absl::StatusOr<v2::LeaseJobsResponse> response =
      world.protocol().LeaseJobs(request, caller_gone);
  JOBLINE_FUZZ_TRACE("  ", Brief(request), " gone after ", gone_after, " -> ",
                     response.status().ToString(), ", ",
                     response.ok() ? response->leases_size() : 0, " leases");
  std::map<int64_t, StoredJob> after = world.Snapshot();
  if (!response.ok()) {
    CheckError(
        response.status(), "LeaseJobs",
        {absl::StatusCode::kInvalidArgument, absl::StatusCode::kCancelled});
    if (absl::IsCancelled(response.status())) {
      JOBLINE_FUZZ_CHECK(gone_after >= 0, "CANCELLED for a caller still there");
      // The jobs leased for the caller went back to their queue.
      for (const auto& [id, job] : before) {
        const auto found = after.find(id);
        if (found == after.end()) continue;
        JOBLINE_FUZZ_CHECK(
            found->second.job.status() == job.job.status() &&
                found->second.lease.leased() == job.lease.leased() &&
                found->second.lease.attempts == job.lease.attempts,
            "LeaseJobs for a caller that left changed job ", id, " from ",
            StatusName(job.job.status()), " to ",
            StatusName(found->second.job.status()));
      }
    } else {
      CheckUnchanged(before, after, "LeaseJobs", response.status());
    }
    return after;
  }

  const absl::Duration length =
      request.has_lease_duration()
          ? absl::Seconds(request.lease_duration().seconds()) +
                absl::Nanoseconds(request.lease_duration().nanos())
          : world.options().default_lease;
  JOBLINE_FUZZ_CHECK(response->leases_size() <= std::max(1, request.max_jobs()),
                     response->leases_size(), " leases for max_jobs ",
                     request.max_jobs());
  std::set<int64_t> leased;
  for (const v2::Lease& lease : response->leases()) {
    const int64_t id = lease.job().id();
    JOBLINE_FUZZ_CHECK(leased.insert(id).second, "job ", id,
                       " leased twice in one answer");
    world.lease_ids().push_back(lease.lease_id());
    const auto old_job = before.find(id);
    const auto new_job = after.find(id);
    JOBLINE_FUZZ_CHECK(old_job != before.end() && new_job != after.end(),
                       "leased unknown job ", id);
    if (old_job == before.end() || new_job == after.end()) continue;
    JOBLINE_FUZZ_CHECK(old_job->second.job.status() == v2::PENDING &&
                           !old_job->second.lease.leased() &&
                           old_job->second.lease.holder.empty(),
                       "leased job ", id, " that was ",
                       StatusName(old_job->second.job.status()), " in queue \"",
                       old_job->second.lease.holder, "\"");
    bool asked = false;
    for (const std::string& type : request.job_types()) {
      asked = asked || type == old_job->second.job.job_type().key();
    }
    JOBLINE_FUZZ_CHECK(asked, "leased job ", id, " of type ",
                       old_job->second.job.job_type().key());
    const StoredJob& stored = new_job->second;
    JOBLINE_FUZZ_CHECK(stored.lease.lease_id == lease.lease_id() &&
                           stored.lease.holder == request.worker_id() &&
                           stored.job.status() == v2::STARTED &&
                           lease.attempt() == stored.lease.attempts &&
                           SameInstant(stored.lease.expires_at, now + length) &&
                           SameInstant(FromProtoTime(lease.expires_at()),
                                       stored.lease.expires_at),
                       "lease of job ", id,
                       " disagrees with the store: ", lease.ShortDebugString());
  }
  return after;
}

std::map<int64_t, StoredJob> HeartbeatCall(
    FuzzedDataProvider& input, World& world,
    const std::map<int64_t, StoredJob>& before) {
  v2::HeartbeatRequest request;
  request.set_lease_id(AnyLeaseId(input, world));
  request.set_job_id(AnyJobId(input, world));
  bool has_length = false;
  MaybeDuration(input, request.mutable_lease_duration(), &has_length);
  if (!has_length) request.clear_lease_duration();
  const absl::Time now = world.clock().Now();
  const absl::StatusOr<v2::HeartbeatResponse> response =
      world.protocol().Heartbeat(request);
  JOBLINE_FUZZ_TRACE("  ", Brief(request), " -> ",
                     response.status().ToString());
  std::map<int64_t, StoredJob> after = world.Snapshot();
  if (!response.ok()) {
    CheckError(
        response.status(), "Heartbeat",
        {absl::StatusCode::kInvalidArgument,
         absl::StatusCode::kFailedPrecondition, absl::StatusCode::kNotFound});
    CheckUnchanged(before, after, "Heartbeat", response.status());
    return after;
  }
  JOBLINE_FUZZ_CHECK(
      HeldLease(before, request.job_id(), request.lease_id(), now),
      "Heartbeat accepted lease \"", request.lease_id(), "\" of job ",
      request.job_id());
  const auto stored = after.find(request.job_id());
  if (stored == after.end()) return after;
  JOBLINE_FUZZ_CHECK(SameInstant(FromProtoTime(response->expires_at()),
                                 stored->second.lease.expires_at) &&
                         response->cancel_requested() ==
                             (stored->second.job.status() == v2::CANCELING),
                     "Heartbeat answer ", response->ShortDebugString(),
                     " disagrees with the store");
  return after;
}

std::map<int64_t, StoredJob> ReportProgressCall(
    FuzzedDataProvider& input, World& world,
    const std::map<int64_t, StoredJob>& before) {
  v2::ReportProgressRequest request;
  request.set_lease_id(AnyLeaseId(input, world));
  request.set_job_id(AnyJobId(input, world));
  AddStageUpdates(input, request.mutable_stages());
  AddLogLines(input, request.mutable_logs());
  bool has_length = false;
  MaybeDuration(input, request.mutable_lease_duration(), &has_length);
  if (!has_length) request.clear_lease_duration();
  const absl::Time now = world.clock().Now();
  const absl::StatusOr<v2::ReportProgressResponse> response =
      world.protocol().ReportProgress(request);
  JOBLINE_FUZZ_TRACE("  ", Brief(request), " -> ",
                     response.status().ToString());
  std::map<int64_t, StoredJob> after = world.Snapshot();
  if (!response.ok()) {
    CheckError(
        response.status(), "ReportProgress",
        {absl::StatusCode::kInvalidArgument,
         absl::StatusCode::kFailedPrecondition, absl::StatusCode::kNotFound,
         absl::StatusCode::kResourceExhausted});
    CheckUnchanged(before, after, "ReportProgress", response.status());
    return after;
  }
  JOBLINE_FUZZ_CHECK(
      HeldLease(before, request.job_id(), request.lease_id(), now),
      "ReportProgress accepted lease \"", request.lease_id(), "\" of job ",
      request.job_id());
  const auto stored = after.find(request.job_id());
  if (stored == after.end()) return after;
  JOBLINE_FUZZ_CHECK(SameInstant(FromProtoTime(response->expires_at()),
                                 stored->second.lease.expires_at) &&
                         response->cancel_requested() ==
                             (stored->second.job.status() == v2::CANCELING),
                     "ReportProgress answer ", response->ShortDebugString(),
                     " disagrees with the store");
  return after;
}

std::map<int64_t, StoredJob> FinishJobCall(
    FuzzedDataProvider& input, World& world,
    const std::map<int64_t, StoredJob>& before) {
  v2::FinishJobRequest request;
  request.set_lease_id(AnyLeaseId(input, world));
  request.set_job_id(AnyJobId(input, world));
  request.set_status(input.ConsumeIntegralInRange(0, 3) > 0
                         ? input.PickValueInArray({v2::SUCCESS, v2::FAILURE})
                         : AnyStatus(input));
  if (input.ConsumeBool()) *request.mutable_result() = AnyValue(input);
  request.set_error(AnyText(input));
  AddStageUpdates(input, request.mutable_stages());
  AddLogLines(input, request.mutable_logs());
  const absl::Time now = world.clock().Now();
  const absl::StatusOr<v2::FinishJobResponse> response =
      world.protocol().FinishJob(request);
  JOBLINE_FUZZ_TRACE("  ", Brief(request), " -> ",
                     response.status().ToString());
  std::map<int64_t, StoredJob> after = world.Snapshot();
  if (!response.ok()) {
    CheckError(
        response.status(), "FinishJob",
        {absl::StatusCode::kInvalidArgument,
         absl::StatusCode::kFailedPrecondition, absl::StatusCode::kNotFound,
         absl::StatusCode::kResourceExhausted});
    CheckUnchanged(before, after, "FinishJob", response.status());
    return after;
  }
  JOBLINE_FUZZ_CHECK(
      HeldLease(before, request.job_id(), request.lease_id(), now),
      "FinishJob accepted lease \"", request.lease_id(), "\" of job ",
      request.job_id());
  const auto old_job = before.find(request.job_id());
  const auto stored = after.find(request.job_id());
  if (old_job == before.end() || stored == after.end()) return after;
  const v2::JobStatus expected = old_job->second.job.status() == v2::CANCELING
                                     ? v2::REVOKED
                                     : request.status();
  JOBLINE_FUZZ_CHECK(stored->second.job.status() == expected &&
                         response->job().status() == expected &&
                         !stored->second.lease.leased(),
                     "FinishJob with ", StatusName(request.status()), " from ",
                     StatusName(old_job->second.job.status()), " stored ",
                     StatusName(stored->second.job.status()));
  return after;
}

// A client action through the JobManager; FAILED_PRECONDITION when the
// job's status refuses it (D6).
void ClientCall(Call call, FuzzedDataProvider& input, World& world,
                std::set<int64_t>& rerun) {
  const int64_t id = AnyJobId(input, world);
  absl::StatusOr<v2::Job> job;
  absl::string_view name;
  switch (call) {
    case Call::kClientCancel:
      name = "CancelJob";
      job = world.manager().CancelJob(id);
      break;
    case Call::kClientRetry:
      name = "RetryJob";
      job = world.manager().RetryJob(id);
      rerun.insert(id);
      break;
    default:
      name = "RunJob";
      job = world.manager().RunJob(id);
      rerun.insert(id);
      break;
  }
  JOBLINE_FUZZ_TRACE("  ", name, " ", id, " -> ", job.status().ToString());
  if (!job.ok()) {
    CheckError(
        job.status(), name,
        {absl::StatusCode::kFailedPrecondition, absl::StatusCode::kNotFound});
  }
}

void UpkeepCall(Call call, FuzzedDataProvider& input, World& world) {
  WorkerProtocol& protocol = world.protocol();
  switch (call) {
    case Call::kExpireLeases: {
      const absl::StatusOr<int> ended = protocol.ExpireLeases();
      JOBLINE_FUZZ_CHECK(ended.ok(),
                         "ExpireLeases: ", ended.status().ToString());
      break;
    }
    case Call::kReap: {
      const absl::Duration cutoff =
          absl::Minutes(input.ConsumeIntegralInRange(0, 20));
      const bool dry_run = input.ConsumeBool();
      const absl::StatusOr<v2::ReapStaleJobsResponse> reaped =
          protocol.ReapStaleJobs(cutoff, dry_run);
      JOBLINE_FUZZ_CHECK(reaped.ok(),
                         "ReapStaleJobs: ", reaped.status().ToString());
      break;
    }
    case Call::kRunnerGrant: {
      const int64_t id = AnyJobId(input, world);
      const absl::StatusOr<v2::Lease> lease =
          protocol.Grant(id, kRunnerHolder, kRunnerHolder, absl::Seconds(60));
      if (lease.ok()) {
        world.lease_ids().push_back(lease->lease_id());
      } else {
        CheckError(lease.status(), "Grant",
                   {absl::StatusCode::kAborted, absl::StatusCode::kNotFound});
      }
      break;
    }
    case Call::kRecoverRunnerLeases: {
      const absl::StatusOr<int> ended = protocol.RecoverRunnerLeases();
      JOBLINE_FUZZ_CHECK(ended.ok(),
                         "RecoverRunnerLeases: ", ended.status().ToString());
      break;
    }
    default: {
      const absl::StatusOr<int> released = protocol.ReleaseRunnerLeases();
      JOBLINE_FUZZ_CHECK(released.ok(),
                         "ReleaseRunnerLeases: ", released.status().ToString());
      break;
    }
  }
}

// Keeps glog quiet: the upkeep calls log at INFO.
void QuietLogs() {
  static const bool quiet = [] {
    FLAGS_minloglevel = google::GLOG_WARNING;
    return true;
  }();
  (void)quiet;
}

}  // namespace

int WorkerReportOneInput(const uint8_t* data, size_t size) {
  QuietLogs();
  FuzzedDataProvider input(data, size);
  World world;
  const int32_t max_attempts = input.ConsumeIntegralInRange(1, 4);
  const absl::Status opened = world.Open(max_attempts);
  JOBLINE_FUZZ_CHECK(opened.ok(), "opening the store: ", opened.ToString());
  if (!opened.ok()) return 0;
  CreateJobs(input, world);

  std::map<int64_t, StoredJob> before = world.Snapshot();
  for (int step = 0; step < kMaxCalls && input.remaining_bytes() > 0; ++step) {
    const Call call = input.ConsumeEnum<Call>();
    const std::string what =
        absl::StrCat(kCallNames[static_cast<int>(call)], " at step ", step);
    JOBLINE_FUZZ_TRACE(what, " at ", absl::FormatTime(world.clock().Now()));
    std::set<int64_t> rerun;
    std::map<int64_t, StoredJob> after;
    switch (call) {
      case Call::kLeaseJobs:
        after = LeaseJobsCall(input, world, before);
        break;
      case Call::kHeartbeat:
        after = HeartbeatCall(input, world, before);
        break;
      case Call::kReportProgress:
        after = ReportProgressCall(input, world, before);
        break;
      case Call::kFinishJob:
        after = FinishJobCall(input, world, before);
        break;
      case Call::kAdvanceClock:
        world.clock().Advance(
            absl::Seconds(input.ConsumeIntegralInRange(0, 7200)));
        after = before;
        break;
      case Call::kClientCancel:
      case Call::kClientRetry:
      case Call::kClientRun:
        ClientCall(call, input, world, rerun);
        after = world.Snapshot();
        break;
      default:
        UpkeepCall(call, input, world);
        after = world.Snapshot();
        break;
    }

    // The rules of the store hold after every call.
    for (const auto& [id, job] : after) {
      JOBLINE_FUZZ_TRACE("  job ", id, " ", job.job.job_type().key(), " ",
                         StatusName(job.job.status()), ", summary ",
                         job.job.progress().summary().progress(), ", lease \"",
                         job.lease.lease_id, "\" of \"", job.lease.holder,
                         "\", attempts ", job.lease.attempts, ", sequence ",
                         job.job.sequence());
    }
    for (const auto& [id, job] : after) CheckStoredJob(job, max_attempts);
    CheckHistory(before, after, rerun, what);
    before = std::move(after);
  }
  return 0;
}

}  // namespace fuzz
}  // namespace jobline
