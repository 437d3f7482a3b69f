#include "server/job_rules.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "server/status_util.h"

namespace jobline {
namespace {

// ---- UTF-8 ------------------------------------------------------------------

constexpr char32_t kReplacementChar = 0xFFFD;

struct DecodedText {
  std::u32string code_points;
  bool valid = true;  // False if any byte sequence was not UTF-8.
};

struct CodePoint {
  char32_t value = kReplacementChar;
  size_t length = 1;  // Bytes consumed.
  bool valid = false;
};

// Decodes the code point at `pos`. An invalid sequence (overlong form,
// surrogate, value past U+10FFFF, truncated sequence) consumes one byte.
CodePoint DecodeAt(absl::string_view text, size_t pos) {
  const auto lead = static_cast<unsigned char>(text[pos]);
  size_t length = 0;
  char32_t value = 0;
  char32_t minimum = 0;
  if (lead < 0x80) {
    return CodePoint{lead, 1, true};
  } else if ((lead & 0xE0) == 0xC0) {
    length = 2;
    value = lead & 0x1F;
    minimum = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3;
    value = lead & 0x0F;
    minimum = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4;
    value = lead & 0x07;
    minimum = 0x10000;
  } else {
    return CodePoint{};
  }
  if (pos + length > text.size()) return CodePoint{};
  for (size_t k = 1; k < length; ++k) {
    const auto next = static_cast<unsigned char>(text[pos + k]);
    if ((next & 0xC0) != 0x80) return CodePoint{};
    value = (value << 6) | (next & 0x3F);
  }
  if (value < minimum || value > 0x10FFFF ||
      (value >= 0xD800 && value <= 0xDFFF)) {
    return CodePoint{};
  }
  return CodePoint{value, length, true};
}

// Decodes UTF-8, replacing each invalid sequence with U+FFFD.
DecodedText DecodeUtf8(absl::string_view text) {
  DecodedText decoded;
  for (size_t pos = 0; pos < text.size();) {
    const CodePoint c = DecodeAt(text, pos);
    decoded.code_points.push_back(c.value);
    decoded.valid = decoded.valid && c.valid;
    pos += c.length;
  }
  return decoded;
}

// Python's str.isspace(), which is what strip() removes.
bool IsUnicodeSpace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 ||
         c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
         c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// `text` without leading and trailing Unicode spaces (as Python's strip()).
absl::string_view TrimUnicodeSpace(absl::string_view text) {
  size_t begin = text.size();
  size_t end = 0;
  for (size_t pos = 0; pos < text.size();) {
    const CodePoint c = DecodeAt(text, pos);
    if (!c.valid || !IsUnicodeSpace(c.value)) {
      begin = std::min(begin, pos);
      end = pos + c.length;
    }
    pos += c.length;
  }
  if (begin >= end) return absl::string_view();
  return text.substr(begin, end - begin);
}

// ---- Slugs ------------------------------------------------------------------

// NFKD decomposition of U+00A0..U+017F with the non-ASCII parts dropped,
// which is what "ASCII folding" does to Latin-1 and Latin Extended-A.
constexpr std::array<const char*, 0x180 - 0xA0> kLatinFold = {
    " ", "",  "",   "",   "",   "",   "",   "",   // U+00A0
    " ", "",  "a",  "",   "",   "",   "",   " ",  // U+00A8
    "",  "",  "2",  "3",  " ",  "",   "",   "",   // U+00B0
    " ", "1", "o",  "",   "14", "12", "34", "",   // U+00B8
    "A", "A", "A",  "A",  "A",  "A",  "",   "C",  // U+00C0
    "E", "E", "E",  "E",  "I",  "I",  "I",  "I",  // U+00C8
    "",  "N", "O",  "O",  "O",  "O",  "O",  "",   // U+00D0
    "",  "U", "U",  "U",  "U",  "Y",  "",   "",   // U+00D8
    "a", "a", "a",  "a",  "a",  "a",  "",   "c",  // U+00E0
    "e", "e", "e",  "e",  "i",  "i",  "i",  "i",  // U+00E8
    "",  "n", "o",  "o",  "o",  "o",  "o",  "",   // U+00F0
    "",  "u", "u",  "u",  "u",  "y",  "",   "y",  // U+00F8
    "A", "a", "A",  "a",  "A",  "a",  "C",  "c",  // U+0100
    "C", "c", "C",  "c",  "C",  "c",  "D",  "d",  // U+0108
    "",  "",  "E",  "e",  "E",  "e",  "E",  "e",  // U+0110
    "E", "e", "E",  "e",  "G",  "g",  "G",  "g",  // U+0118
    "G", "g", "G",  "g",  "H",  "h",  "",   "",   // U+0120
    "I", "i", "I",  "i",  "I",  "i",  "I",  "i",  // U+0128
    "I", "",  "IJ", "ij", "J",  "j",  "K",  "k",  // U+0130
    "",  "L", "l",  "L",  "l",  "L",  "l",  "L",  // U+0138
    "l", "",  "",   "N",  "n",  "N",  "n",  "N",  // U+0140
    "n", "n", "",   "",   "O",  "o",  "O",  "o",  // U+0148
    "O", "o", "",   "",   "R",  "r",  "R",  "r",  // U+0150
    "R", "r", "S",  "s",  "S",  "s",  "S",  "s",  // U+0158
    "S", "s", "T",  "t",  "T",  "t",  "",   "",   // U+0160
    "U", "u", "U",  "u",  "U",  "u",  "U",  "u",  // U+0168
    "U", "u", "U",  "u",  "W",  "w",  "Y",  "y",  // U+0170
    "Y", "Z", "z",  "Z",  "z",  "Z",  "z",  "s",  // U+0178
};

// The whitespace of Python's `\s` that survives ASCII folding.
bool IsSlugSpace(char c) {
  return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1C && c <= 0x1F);
}

bool IsSlugWordChar(char c) { return absl::ascii_isalnum(c) || c == '_'; }

// ---- Statuses ---------------------------------------------------------------

constexpr std::array<v2::JobStatus, 10> kAllStatuses = {
    v2::CREATED, v2::PENDING,   v2::STARTED, v2::SUCCESS,  v2::FAILURE,
    v2::RETRY,   v2::CANCELING, v2::REVOKED, v2::RECEIVED, v2::UNKNOWN,
};

constexpr std::array<JobTypeInfo, 7> kJobTypes = {{
    {"ml", "ML pipeline"},
    {"populate_captures_collection", "Populate captures collection"},
    {"data_storage_sync", "Data storage sync"},
    {"regroup_events", "Regroup sessions"},
    {"unknown", "Unknown"},
    {"data_export", "Data Export"},
    {"post_processing", "Post Processing"},
}};

constexpr std::array<absl::string_view, 10> kJobInputFields = {
    "name",
    "delay",
    "project_id",
    "limit",
    "shuffle",
    "deployment_id",
    "source_image_collection_id",
    "source_image_single_id",
    "pipeline_id",
    "job_type_key",
};

constexpr size_t kMaxNameLength = 255;

void SetStatusAndSummary(v2::JobStatus status, v2::Job& job) {
  job.set_status(status);
  job.mutable_progress()->mutable_summary()->set_status(status);
}

// The enqueue step shared by Enqueue and Retry; assumes it is allowed.
void EnqueueUnchecked(JobMutation& mutation) {
  v2::Job& job = mutation.job;
  if (IsFinalStatus(job.status())) mutation.allow_leave_final = true;
  SetStatusAndSummary(v2::PENDING, job);
  job.clear_started_at();
  job.clear_finished_at();
  RecomputeSummary(*job.mutable_progress());
  mutation.lease = JobLease();
  AssignQueue(mutation);
}

void AddLog(JobMutation& mutation, std::string message) {
  mutation.logs.push_back(NewLogLine{LogLevel::kInfo, std::move(message)});
}

// Writes a status change with its log line and summary.status.
void ChangeStatus(v2::JobStatus to, JobMutation& mutation) {
  v2::Job& job = mutation.job;
  if (job.status() != to) {
    AddLog(mutation, StatusChangeMessage(job.id(), job.status(), to));
  }
  SetStatusAndSummary(to, job);
}

absl::Status ValidateName(const v2::JobInput& input, InputMode mode) {
  if (!input.has_name()) {
    if (mode == InputMode::kPatch) return absl::OkStatus();
    return InvalidFieldError("name", "This field is required.");
  }
  const DecodedText decoded = DecodeUtf8(input.name());
  if (!decoded.valid) {
    return InvalidFieldError("name", "Not a valid string.");
  }
  const DecodedText trimmed = DecodeUtf8(TrimUnicodeSpace(input.name()));
  if (trimmed.code_points.empty()) {
    return InvalidFieldError("name", "This field may not be blank.");
  }
  // The API checks the length before the null characters.
  if (trimmed.code_points.size() > kMaxNameLength) {
    return InvalidFieldError(
        "name", "Ensure this field has no more than 255 characters.");
  }
  if (absl::c_linear_search(decoded.code_points, U'\0')) {
    return InvalidFieldError("name", "Null characters are not allowed.");
  }
  return absl::OkStatus();
}

std::string RecordPath(absl::string_view collection, int64_t id) {
  return absl::StrCat("/api/v2/", collection, "/", id, "/");
}

void SetPermissions(std::initializer_list<const char*> permissions,
                    google::protobuf::RepeatedPtrField<std::string>& field) {
  field.Clear();
  for (const char* permission : permissions) field.Add(permission);
}

}  // namespace

// ---- Statuses ---------------------------------------------------------------

bool IsRunningStatus(v2::JobStatus status) {
  return status == v2::PENDING || status == v2::STARTED ||
         status == v2::RETRY || status == v2::CANCELING ||
         status == v2::UNKNOWN;
}

bool IsFinalStatus(v2::JobStatus status) {
  return status == v2::SUCCESS || status == v2::FAILURE ||
         status == v2::REVOKED;
}

bool IsFinalizableStatus(v2::JobStatus status) {
  return status == v2::CREATED || status == v2::PENDING ||
         status == v2::STARTED || status == v2::RETRY;
}

absl::string_view StatusName(v2::JobStatus status) {
  switch (status) {
    case v2::CREATED:
      return "CREATED";
    case v2::PENDING:
      return "PENDING";
    case v2::STARTED:
      return "STARTED";
    case v2::SUCCESS:
      return "SUCCESS";
    case v2::FAILURE:
      return "FAILURE";
    case v2::RETRY:
      return "RETRY";
    case v2::CANCELING:
      return "CANCELING";
    case v2::REVOKED:
      return "REVOKED";
    case v2::RECEIVED:
      return "RECEIVED";
    case v2::UNKNOWN:
      return "UNKNOWN";
    default:
      return "";
  }
}

std::optional<v2::JobStatus> ParseStatus(absl::string_view name) {
  for (v2::JobStatus status : kAllStatuses) {
    if (StatusName(status) == name) return status;
  }
  return std::nullopt;
}

absl::Span<const v2::JobStatus> AllStatuses() { return kAllStatuses; }

// ---- Job types and dispatch modes -------------------------------------------

absl::Span<const JobTypeInfo> JobTypes() { return kJobTypes; }

const JobTypeInfo* FindJobType(absl::string_view key) {
  for (const JobTypeInfo& type : kJobTypes) {
    if (type.key == key) return &type;
  }
  return nullptr;
}

bool IsDispatchMode(absl::string_view mode) {
  return mode == kDispatchInternal || mode == kDispatchSyncApi ||
         mode == kDispatchAsyncApi;
}

// ---- Keys -------------------------------------------------------------------

std::string Slugify(absl::string_view name) {
  // Fold to ASCII and lowercase.
  std::string folded;
  for (char32_t c : DecodeUtf8(name).code_points) {
    if (c < 0x80) {
      folded.push_back(absl::ascii_tolower(static_cast<char>(c)));
    } else if (c >= 0xA0 && c < 0x180) {
      folded.append(absl::AsciiStrToLower(kLatinFold[c - 0xA0]));
    }
  }

  // Keep word characters, whitespace and '-'; collapse runs of whitespace
  // and '-' into one '-'.
  std::string collapsed;
  bool in_run = false;
  for (char c : folded) {
    if (IsSlugSpace(c) || c == '-') {
      if (!in_run) collapsed.push_back('-');
      in_run = true;
    } else if (IsSlugWordChar(c)) {
      collapsed.push_back(c);
      in_run = false;
    }
  }

  // Strip '-' and '_' at both ends, then '-' becomes '_'.
  const size_t begin = collapsed.find_first_not_of("-_");
  if (begin == std::string::npos) return "";
  const size_t end = collapsed.find_last_not_of("-_");
  std::string slug = collapsed.substr(begin, end - begin + 1);
  absl::c_replace(slug, '-', '_');
  return slug;
}

// ---- Progress ---------------------------------------------------------------

v2::ProgressStage* AddStage(v2::JobProgress& progress, absl::string_view name,
                            absl::string_view key) {
  const std::string stage_key = key.empty() ? Slugify(name) : std::string(key);
  for (v2::ProgressStage& stage : *progress.mutable_stages()) {
    if (stage.key() == stage_key) return &stage;
  }
  v2::ProgressStage* stage = progress.add_stages();
  stage->set_status(v2::CREATED);
  stage->set_progress(0.0);
  stage->set_key(stage_key);
  stage->set_name(std::string(name));
  return stage;
}

v2::ProgressStage* FindStage(v2::JobProgress& progress,
                             absl::string_view key_or_name) {
  const std::string key = Slugify(key_or_name);
  for (v2::ProgressStage& stage : *progress.mutable_stages()) {
    if (stage.key() == key) return &stage;
  }
  return nullptr;
}

const v2::ProgressStage* FindStage(const v2::JobProgress& progress,
                                   absl::string_view key_or_name) {
  const std::string key = Slugify(key_or_name);
  for (const v2::ProgressStage& stage : progress.stages()) {
    if (stage.key() == key) return &stage;
  }
  return nullptr;
}

v2::StageParam* AddParam(v2::ProgressStage& stage, absl::string_view name,
                         const google::protobuf::Value& value) {
  const std::string key = Slugify(name);
  for (v2::StageParam& param : *stage.mutable_params()) {
    if (param.key() == key) return &param;
  }
  v2::StageParam* param = stage.add_params();
  param->set_name(std::string(name));
  param->set_key(key);
  param->set_category("default");
  *param->mutable_value() = value;
  return param;
}

v2::StageParam* AddOrUpdateParam(v2::ProgressStage& stage,
                                 absl::string_view name,
                                 const google::protobuf::Value& value) {
  v2::StageParam* param = AddParam(stage, name, value);
  *param->mutable_value() = value;
  return param;
}

google::protobuf::Value NumberValue(double number) {
  google::protobuf::Value value;
  value.set_number_value(number);
  return value;
}

google::protobuf::Value StringValue(absl::string_view text) {
  google::protobuf::Value value;
  value.set_string_value(std::string(text));
  return value;
}

absl::Status UpdateStage(v2::JobProgress& progress,
                         absl::string_view key_or_name,
                         const StageUpdate& update) {
  v2::ProgressStage* stage = FindStage(progress, key_or_name);
  if (stage == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("stage \"", key_or_name, "\" does not exist"));
  }
  if (update.progress.has_value() &&
      !(*update.progress >= 0.0 && *update.progress <= 1.0)) {
    return InvalidFieldError("progress",
                             "Ensure this value is between 0 and 1.");
  }
  if (update.status.has_value() && StatusName(*update.status).empty()) {
    return InvalidFieldError("status", "Not a valid status.");
  }

  if (update.status.has_value()) stage->set_status(*update.status);
  if (update.progress.has_value()) {
    // D18: a lower report keeps the higher value.
    stage->set_progress(std::max(stage->progress(), *update.progress));
  }
  if (update.name.has_value()) stage->set_name(*update.name);
  for (const auto& [name, value] : update.params) {
    AddOrUpdateParam(*stage, name, value);
  }
  return absl::OkStatus();
}

void ResetProgress(v2::JobProgress& progress, v2::JobStatus status) {
  progress.mutable_summary()->set_progress(0.0);
  progress.mutable_summary()->set_status(status);
  for (v2::ProgressStage& stage : *progress.mutable_stages()) {
    stage.set_progress(0.0);
    stage.set_status(status);
    for (v2::StageParam& param : *stage.mutable_params()) {
      const google::protobuf::Value& value = param.value();
      if (value.has_number_value() || value.has_bool_value()) {
        param.mutable_value()->set_number_value(0);
      }
    }
  }
}

void RecomputeSummary(v2::JobProgress& progress) {
  double total = 0.0;
  for (v2::ProgressStage& stage : *progress.mutable_stages()) {
    if (stage.progress() > 0 && stage.status() == v2::CREATED) {
      stage.set_status(v2::STARTED);
    }
    // Also for a stage promoted just above: a stage at 1 ends SUCCESS in
    // one pass, however often the summary is recomputed.
    if (stage.progress() >= 1.0 && !IsFinalStatus(stage.status())) {
      stage.set_status(v2::SUCCESS);
    }
    total += stage.progress();
  }
  const double mean =
      progress.stages_size() == 0 ? 0.0 : total / progress.stages_size();
  v2::ProgressSummary* summary = progress.mutable_summary();
  summary->set_progress(std::max(summary->progress(), mean));
}

bool IsComplete(const v2::JobProgress& progress) {
  if (progress.stages_size() == 0) return false;
  return absl::c_all_of(progress.stages(), [](const v2::ProgressStage& s) {
    return s.progress() >= 1.0 && IsFinalStatus(s.status());
  });
}

std::string StatusLabel(v2::JobStatus status, double progress) {
  switch (status) {
    case v2::CREATED:
    case v2::PENDING:
    case v2::RECEIVED:
      return "Waiting to start";
    case v2::STARTED:
    case v2::RETRY:
    case v2::SUCCESS: {
      // Rounded down, as Python's int() does for a non-negative value.
      // Progress outside 0..1 (refused on reports) shows as its bound.
      const double percent = std::floor(progress * 100.0);
      const int64_t whole =
          std::isfinite(percent)
              ? static_cast<int64_t>(std::min(std::max(percent, 0.0), 100.0))
              : 0;
      return absl::StrCat(whole, "% complete");
    }
    default:
      return std::string(StatusName(status));
  }
}

void FillStatusLabels(v2::JobProgress& progress) {
  v2::ProgressSummary* summary = progress.mutable_summary();
  summary->set_status_label(
      StatusLabel(summary->status(), summary->progress()));
  for (v2::ProgressStage& stage : *progress.mutable_stages()) {
    stage.set_status_label(StatusLabel(stage.status(), stage.progress()));
  }
}

// ---- Setup step -------------------------------------------------------------

bool ApplySetup(v2::Job& job) {
  v2::JobProgress& progress = *job.mutable_progress();
  if (progress.stages_size() > 0) return false;
  bool changed = false;

  if (job.delay() != 0) {
    v2::ProgressStage* delay = AddStage(progress, "Delay", "delay");
    AddParam(*delay, "Delay", NumberValue(static_cast<double>(job.delay())));
    AddParam(*delay, "Mood", StringValue("\xF0\x9F\x98\xB4"));  // U+1F634
    changed = true;
  }

  if (job.has_pipeline()) {
    if (job.dispatch_mode().empty() ||
        job.dispatch_mode() == kDispatchInternal) {
      job.set_dispatch_mode(std::string(kDispatchSyncApi));
    }
    const google::protobuf::Value empty = StringValue("");
    v2::ProgressStage* collect = AddStage(progress, "Collect", "collect");
    AddParam(*collect, "Total Images", empty);
    v2::ProgressStage* process = AddStage(progress, "Process", "process");
    AddParam(*process, "Processed", empty);
    AddParam(*process, "Remaining", empty);
    AddParam(*process, "Failed", empty);
    v2::ProgressStage* results = AddStage(progress, "Results", "results");
    AddParam(*results, "Captures", empty);
    AddParam(*results, "Detections", empty);
    AddParam(*results, "Classifications", empty);
    changed = true;
  }

  if (changed) RecomputeSummary(progress);
  return changed;
}

// ---- Transitions ------------------------------------------------------------

std::string StatusChangeMessage(int64_t job_id, v2::JobStatus from,
                                v2::JobStatus to) {
  return absl::StrCat("Changing status of job ", job_id, " from ",
                      StatusName(from), " to ", StatusName(to));
}

bool NeedsRunner(const v2::Job& job) {
  const std::string& type = job.job_type().key();
  if (type == "unknown") return true;
  if (type == "ml" && !job.has_pipeline()) return true;
  if (job.delay() == 0) return false;
  const v2::ProgressStage* delay = FindStage(job.progress(), "delay");
  return delay == nullptr || delay->status() != v2::SUCCESS;
}

void AssignQueue(JobMutation& mutation) {
  const int32_t attempts = mutation.lease.attempts;
  mutation.lease = JobLease();
  mutation.lease.attempts = attempts;
  if (NeedsRunner(mutation.job)) mutation.lease.holder = kRunnerHolder;
}

absl::Status Enqueue(JobMutation& mutation) {
  const v2::JobStatus from = mutation.job.status();
  if (from == v2::PENDING || from == v2::STARTED || from == v2::RETRY ||
      from == v2::CANCELING) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot run job ", mutation.job.id(), " while it is ",
                     StatusName(from)));
  }
  EnqueueUnchecked(mutation);
  return absl::OkStatus();
}

absl::Status Retry(JobMutation& mutation) {
  v2::Job& job = mutation.job;
  const v2::JobStatus from = job.status();
  if (from == v2::PENDING || from == v2::STARTED || from == v2::CANCELING) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot retry job ", job.id(), " while it is ", StatusName(from)));
  }
  if (IsFinalStatus(from)) mutation.allow_leave_final = true;

  AddLog(mutation,
         absl::StrFormat("Re-running job #%d \"%s\"", job.id(), job.name()));
  job.clear_finished_at();
  ResetProgress(*job.mutable_progress(), v2::CREATED);
  ChangeStatus(v2::RETRY, mutation);
  EnqueueUnchecked(mutation);
  AddLog(mutation, StatusChangeMessage(job.id(), v2::RETRY, v2::PENDING));
  return absl::OkStatus();
}

absl::Status Cancel(absl::Time now, JobMutation& mutation) {
  v2::Job& job = mutation.job;
  switch (job.status()) {
    case v2::CREATED:
    case v2::PENDING:
    case v2::RETRY:
      ChangeStatus(v2::REVOKED, mutation);
      *job.mutable_finished_at() = ToProtoTime(now);
      mutation.lease.lease_id.clear();
      mutation.lease.holder.clear();
      mutation.lease.expires_at = absl::InfinitePast();
      break;
    case v2::STARTED:
      ChangeStatus(v2::CANCELING, mutation);
      break;
    default:
      // Final, CANCELING, RECEIVED, UNKNOWN: nothing to cancel (D6).
      break;
  }
  return absl::OkStatus();
}

StatusGuard FinishGuard() {
  StatusGuard guard;
  guard.allowed_from = {v2::CREATED, v2::PENDING, v2::STARTED, v2::RETRY};
  guard.success_requires_complete = true;
  return guard;
}

absl::StatusOr<bool> SetStatus(v2::JobStatus to, absl::Time now,
                               const StatusGuard& guard,
                               JobMutation& mutation) {
  if (StatusName(to).empty()) {
    return InvalidFieldError("status", "Not a valid status.");
  }
  v2::Job& job = mutation.job;
  const v2::JobStatus from = job.status();

  // Skipped writes: the same status, a final job, or a guard that says no.
  if (from == to || IsFinalStatus(from)) return false;
  if (!guard.allowed_from.empty() &&
      !absl::c_linear_search(guard.allowed_from, from)) {
    return false;
  }
  if (to == v2::SUCCESS && guard.success_requires_complete &&
      !IsComplete(job.progress())) {
    return false;
  }

  ChangeStatus(to, mutation);
  if (to == v2::STARTED) {
    *job.mutable_started_at() = ToProtoTime(now);
    job.clear_finished_at();
  }
  if (IsFinalStatus(to)) *job.mutable_finished_at() = ToProtoTime(now);
  return true;
}

// ---- Input ------------------------------------------------------------------

// Checks that an int32-stored `value` of `field` fits 32 bits (spec 1.2:
// values past them do not fit the stored column upstream).
absl::Status ValidateInt32(absl::string_view field, int64_t value) {
  if (value < std::numeric_limits<int32_t>::min()) {
    return InvalidFieldError(
        field, "Ensure this value is greater than or equal to -2147483648.");
  }
  if (value > std::numeric_limits<int32_t>::max()) {
    return InvalidFieldError(
        field, "Ensure this value is less than or equal to 2147483647.");
  }
  return absl::OkStatus();
}

absl::Status ValidateJobInput(const v2::JobInput& input, InputMode mode) {
  const bool full = mode != InputMode::kPatch;
  // Every field is checked; the errors are reported together, in the
  // order of the API's serializer.
  std::vector<absl::Status> errors;
  errors.push_back(ValidateName(input, mode));
  if (input.has_delay())
    errors.push_back(ValidateInt32("delay", input.delay()));
  if (input.has_limit())
    errors.push_back(ValidateInt32("limit", input.limit()));
  if (full && !input.has_project_id()) {
    errors.push_back(
        InvalidFieldError("project_id", "This field is required."));
  }
  if (input.has_job_type_key() &&
      FindJobType(input.job_type_key()) == nullptr) {
    errors.push_back(InvalidFieldError(
        "job_type_key",
        absl::StrCat("\"", input.job_type_key(), "\" is not a valid choice.")));
  }
  return CombineFieldErrors(errors);
}

absl::Span<const absl::string_view> JobInputFields() { return kJobInputFields; }

absl::StatusOr<v2::JobInput> MaskJobInput(
    const v2::JobInput& input, const google::protobuf::FieldMask& mask) {
  for (const std::string& path : mask.paths()) {
    if (!absl::c_linear_search(kJobInputFields, path)) {
      return InvalidFieldError(
          "update_mask",
          absl::StrCat("\"", path, "\" is not a writable field."));
    }
  }
  auto masked = [&mask](absl::string_view field) {
    return absl::c_linear_search(mask.paths(), field);
  };
  std::vector<absl::Status> errors;
  if (masked("name") && !input.has_name()) {
    errors.push_back(InvalidFieldError("name", "This field is required."));
  }
  if (masked("project_id") && !input.has_project_id()) {
    errors.push_back(
        InvalidFieldError("project_id", "This field is required."));
  }

  // Keep only the masked fields.
  v2::JobInput result = input;
  const google::protobuf::Descriptor* descriptor = result.GetDescriptor();
  const google::protobuf::Reflection* reflection = result.GetReflection();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* field = descriptor->field(i);
    if (!masked(field->name())) reflection->ClearField(&result, field);
  }
  errors.push_back(ValidateJobInput(result, InputMode::kPatch));
  if (absl::Status status = CombineFieldErrors(errors); !status.ok()) {
    return status;
  }
  return result;
}

v2::JobInput JobInputFromJob(const v2::Job& job) {
  v2::JobInput input;
  input.set_name(job.name());
  input.set_delay(job.delay());
  if (job.has_project()) input.set_project_id(job.project().id());
  if (job.has_limit()) input.set_limit(job.limit());
  input.set_shuffle(job.shuffle());
  if (job.has_deployment()) input.set_deployment_id(job.deployment().id());
  if (job.has_source_image_collection()) {
    input.set_source_image_collection_id(job.source_image_collection().id());
  }
  if (job.has_source_image_single()) {
    input.set_source_image_single_id(job.source_image_single().id());
  }
  if (job.has_pipeline()) input.set_pipeline_id(job.pipeline().id());
  input.set_job_type_key(job.job_type().key());
  return input;
}

void OverlayJobInput(const v2::JobInput& patch,
                     const google::protobuf::FieldMask& mask,
                     v2::JobInput& base) {
  v2::JobInput source = patch;
  const google::protobuf::Descriptor* descriptor = base.GetDescriptor();
  const google::protobuf::Reflection* reflection = base.GetReflection();
  std::vector<const google::protobuf::FieldDescriptor*> fields;
  for (const std::string& path : mask.paths()) {
    const google::protobuf::FieldDescriptor* field =
        descriptor->FindFieldByName(path);
    if (field != nullptr && !absl::c_linear_search(fields, field)) {
      fields.push_back(field);
    }
  }
  // Swapping moves the patch's value, or its absence, onto `base`.
  reflection->SwapFields(&base, &source, fields);
}

void ApplyJobInput(const v2::JobInput& input, InputMode mode, v2::Job& job) {
  job.set_name(std::string(TrimUnicodeSpace(input.name())));
  job.set_delay(input.delay());
  if (input.has_limit()) {
    job.set_limit(input.limit());
  } else {
    job.clear_limit();
  }
  job.set_shuffle(input.has_shuffle() ? input.shuffle() : true);

  // A reference keeps its stored record when the id does not change.
  auto set_reference = [](bool has_id, int64_t id, bool has_record,
                          int64_t record_id, auto* mutable_record, auto clear) {
    if (!has_id) {
      clear();
    } else if (!has_record || record_id != id) {
      mutable_record->Clear();
      mutable_record->set_id(id);
    }
  };
  set_reference(input.has_project_id(), input.project_id(), job.has_project(),
                job.project().id(), job.mutable_project(),
                [&job] { job.clear_project(); });
  set_reference(input.has_deployment_id(), input.deployment_id(),
                job.has_deployment(), job.deployment().id(),
                job.mutable_deployment(), [&job] { job.clear_deployment(); });
  set_reference(
      input.has_source_image_collection_id(),
      input.source_image_collection_id(), job.has_source_image_collection(),
      job.source_image_collection().id(), job.mutable_source_image_collection(),
      [&job] { job.clear_source_image_collection(); });
  set_reference(input.has_source_image_single_id(),
                input.source_image_single_id(), job.has_source_image_single(),
                job.source_image_single().id(),
                job.mutable_source_image_single(),
                [&job] { job.clear_source_image_single(); });
  set_reference(input.has_pipeline_id(), input.pipeline_id(),
                job.has_pipeline(), job.pipeline().id(), job.mutable_pipeline(),
                [&job] { job.clear_pipeline(); });

  if (input.has_job_type_key()) {
    job.mutable_job_type()->set_key(input.job_type_key());
  } else if (mode == InputMode::kCreate) {
    job.mutable_job_type()->set_key(std::string(kDefaultJobTypeKey));
  }
}

// ---- Presentation -----------------------------------------------------------

void DecorateProject(v2::Project& project) {
  project.set_details(RecordPath("projects", project.id()));
  SetPermissions({"update", "delete"}, *project.mutable_user_permissions());
}

void DecorateDeployment(v2::Deployment& deployment) {
  deployment.set_details(RecordPath("deployments", deployment.id()));
  SetPermissions({"update", "delete"}, *deployment.mutable_user_permissions());
}

void DecorateCaptureCollection(v2::CaptureCollection& collection) {
  collection.set_details(RecordPath("captures/collections", collection.id()));
  SetPermissions({"update", "delete", "populate"},
                 *collection.mutable_user_permissions());
}

void DecorateCapture(v2::Capture& capture) {
  capture.set_details(RecordPath("captures", capture.id()));
  SetPermissions({"update", "delete"}, *capture.mutable_user_permissions());
}

void DecoratePipeline(v2::Pipeline& pipeline) {
  pipeline.set_details(RecordPath("ml/pipelines", pipeline.id()));
  SetPermissions({"update", "delete"}, *pipeline.mutable_user_permissions());
}

void DecorateJob(v2::Job& job) {
  job.set_details(RecordPath("jobs", job.id()));
  if (job.has_project()) DecorateProject(*job.mutable_project());
  if (job.has_deployment()) DecorateDeployment(*job.mutable_deployment());
  if (job.has_source_image_collection()) {
    DecorateCaptureCollection(*job.mutable_source_image_collection());
  }
  if (job.has_source_image_single()) {
    DecorateCapture(*job.mutable_source_image_single());
  }
  if (job.has_pipeline()) DecoratePipeline(*job.mutable_pipeline());

  const JobTypeInfo* type = FindJobType(job.job_type().key());
  job.mutable_job_type()->set_name(type == nullptr ? ""
                                                   : std::string(type->name));

  // duration = finished_at - started_at, as seconds and nanos of one sign.
  if (job.has_started_at() && job.has_finished_at()) {
    const absl::Duration duration =
        FromProtoTime(job.finished_at()) - FromProtoTime(job.started_at());
    absl::Duration remainder;
    const int64_t seconds =
        absl::IDivDuration(duration, absl::Seconds(1), &remainder);
    job.mutable_duration()->set_seconds(seconds);
    job.mutable_duration()->set_nanos(
        static_cast<int32_t>(remainder / absl::Nanoseconds(1)));
  } else {
    job.clear_duration();
  }

  FillStatusLabels(*job.mutable_progress());

  // D17: every caller has a superuser's permissions (spec 10.3): "run"
  // needs a run permission of the type, which "unknown" and a key that is
  // no type do not have.
  const std::string& key = job.job_type().key();
  if (key == "ml") {
    SetPermissions({"update", "delete", "run", "run_single_image"},
                   *job.mutable_user_permissions());
  } else if (key == "unknown" || type == nullptr) {
    SetPermissions({"update", "delete"}, *job.mutable_user_permissions());
  } else {
    SetPermissions({"update", "delete", "run"},
                   *job.mutable_user_permissions());
  }
}

std::string FormatLogLine(const LogLine& line, absl::TimeZone zone) {
  return absl::StrCat(
      "[", absl::FormatTime("%Y-%m-%d %H:%M:%S", line.created_at, zone), "] ",
      LogLevelName(line.level), " ", line.message);
}

void FillLogs(absl::Span<const LogLine> lines, absl::TimeZone zone,
              v2::Job& job) {
  v2::JobLogs* logs = job.mutable_logs();
  logs->Clear();
  for (const LogLine& line : lines) {
    logs->add_stdout(FormatLogLine(line, zone));
    if (line.level == LogLevel::kError || line.level == LogLevel::kCritical) {
      logs->add_stderr(line.message);
    }
  }
}

absl::Time FromProtoTime(const google::protobuf::Timestamp& timestamp) {
  return absl::FromUnixSeconds(timestamp.seconds()) +
         absl::Nanoseconds(timestamp.nanos());
}

google::protobuf::Timestamp ToProtoTime(absl::Time time) {
  google::protobuf::Timestamp timestamp;
  const int64_t seconds = absl::ToUnixSeconds(time);  // Rounds down.
  timestamp.set_seconds(seconds);
  timestamp.set_nanos(static_cast<int32_t>(
      (time - absl::FromUnixSeconds(seconds)) / absl::Nanoseconds(1)));
  return timestamp;
}

}  // namespace jobline
