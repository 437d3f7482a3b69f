#include "storage/sqlite_job_store.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "glog/logging.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/util/time_util.h"
#include "storage/schema.h"
#include "storage/sqlite_status.h"
#include "storage/status_macros.h"

namespace jobline {
namespace {

using google::protobuf::util::TimeUtil;

constexpr absl::string_view kMemoryPath = ":memory:";

constexpr char kReadOnlyMessage[] =
    "the job database is read-only; writes are refused";

// ---- SQL ----

constexpr char kBeginImmediate[] = "BEGIN IMMEDIATE";
constexpr char kBeginDeferred[] = "BEGIN";
constexpr char kCommit[] = "COMMIT";
constexpr char kRollback[] = "ROLLBACK";
constexpr char kSavepoint[] = "SAVEPOINT write";
constexpr char kRollbackToSavepoint[] = "ROLLBACK TO write";
constexpr char kReleaseSavepoint[] = "RELEASE write";

// Most writes that share one transaction.
constexpr size_t kMaxBatchWrites = 256;

// The columns of a job with its reference records, in JobColumn order; the
// result column follows.
constexpr char kJobSelectHead[] =
    "SELECT j.id, j.name, j.delay, j.job_limit, j.shuffle, j.project_id, "
    "j.deployment_id, j.source_image_collection_id, "
    "j.source_image_single_id, j.pipeline_id, j.data_export_id, "
    "j.job_type_key, j.dispatch_mode, j.status, j.created_at, j.updated_at, "
    "j.started_at, j.finished_at, j.progress, j.sequence, p.record, "
    "d.record, "
    "cc.record, c.record, pl.record, de.record, ";

// One join per reference: each is a primary-key lookup, and LEFT JOINs keep
// `jobs` the outer loop so that ORDER BY can walk a jobs index.
constexpr char kJobFrom[] =
    " FROM jobs AS j"
    " LEFT JOIN projects AS p ON p.id = j.project_id"
    " LEFT JOIN deployments AS d ON d.id = j.deployment_id"
    " LEFT JOIN capture_collections AS cc"
    " ON cc.id = j.source_image_collection_id"
    " LEFT JOIN captures AS c ON c.id = j.source_image_single_id"
    " LEFT JOIN pipelines AS pl ON pl.id = j.pipeline_id"
    " LEFT JOIN data_exports AS de ON de.id = j.data_export_id";

enum JobColumn : int {
  kColId,
  kColName,
  kColDelay,
  kColLimit,
  kColShuffle,
  kColProjectId,
  kColDeploymentId,
  kColCollectionId,
  kColCaptureId,
  kColPipelineId,
  kColDataExportId,
  kColJobTypeKey,
  kColDispatchMode,
  kColStatus,
  kColCreatedAt,
  kColUpdatedAt,
  kColStartedAt,
  kColFinishedAt,
  kColProgress,
  kColSequence,
  kColProjectRecord,
  kColDeploymentRecord,
  kColCollectionRecord,
  kColCaptureRecord,
  kColPipelineRecord,
  kColDataExportRecord,
  kColResult,
  // Only in kJobForWriteTail's query.
  kColResultsStageFinal,
  kColLeaseId,
  kColLeaseHolder,
  kColLeaseExpiresAt,
  kColAttempts,
};

// What MutateJob reads beyond GetJob's columns: the rest of the row as
// stored.
constexpr char kJobForWriteTail[] =
    "j.result, j.results_stage_final, j.lease_id, j.lease_holder, "
    "j.lease_expires_at, j.attempts";

constexpr char kInsertJob[] =
    "INSERT INTO jobs (name, delay, job_limit, shuffle, project_id, "
    "deployment_id, source_image_collection_id, source_image_single_id, "
    "pipeline_id, data_export_id, job_type_key, dispatch_mode, status, "
    "created_at, updated_at, scheduled_at, started_at, finished_at, "
    "progress, result, results_stage_final, lease_id, lease_holder, "
    "lease_expires_at, attempts) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
    "?, ?, ?, ?)";

// A write that changes nothing but the log: the next sequence.
constexpr char kBumpSequence[] =
    "UPDATE jobs SET sequence = sequence + 1 WHERE id = ? RETURNING sequence";

constexpr char kInsertStatusChange[] =
    "INSERT INTO job_status_changes (job_id, sequence, status, changed_at) "
    "VALUES (?, ?, ?, ?)";
constexpr char kReadStatusChanges[] =
    "SELECT sequence, status, changed_at FROM job_status_changes "
    "WHERE job_id = ? AND sequence > ? ORDER BY sequence";

constexpr char kSelectLease[] =
    "SELECT lease_id, lease_holder, lease_expires_at, attempts FROM jobs "
    "WHERE id = ?";

constexpr char kDeleteJob[] = "DELETE FROM jobs WHERE id = ?";

constexpr char kInsertLog[] =
    "INSERT INTO job_logs (job_id, created_at, level, message, sequence) "
    "VALUES (?, ?, ?, ?, ?)";
// Both in LogLine field order.
constexpr char kReadLogs[] =
    "SELECT id, job_id, created_at, level, message, sequence FROM job_logs "
    "WHERE job_id = ? ORDER BY created_at DESC, id DESC LIMIT ?";
constexpr char kReadLogsAfter[] =
    "SELECT id, job_id, created_at, level, message, sequence FROM job_logs "
    "WHERE job_id = ? AND sequence > ? ORDER BY sequence, id LIMIT ?";

constexpr char kProjectExists[] = "SELECT 1 FROM projects WHERE id = ?";
constexpr char kDeploymentExists[] = "SELECT 1 FROM deployments WHERE id = ?";
constexpr char kCollectionExists[] =
    "SELECT 1 FROM capture_collections WHERE id = ?";

constexpr char kSelectProject[] = "SELECT record FROM projects WHERE id = ?";
constexpr char kSelectDeployment[] =
    "SELECT record FROM deployments WHERE id = ?";
// The record and the member count, from one snapshot.
constexpr char kSelectCollection[] =
    "SELECT record, (SELECT COUNT(*) FROM collection_captures "
    "WHERE collection_id = ?1) FROM capture_collections WHERE id = ?1";
// The record alone, as a job holds it (capture_count 0).
constexpr char kSelectCollectionRecord[] =
    "SELECT record FROM capture_collections WHERE id = ?";
constexpr char kSelectCapture[] = "SELECT record FROM captures WHERE id = ?";
constexpr char kSelectPipeline[] = "SELECT record FROM pipelines WHERE id = ?";
constexpr char kSelectDataExport[] =
    "SELECT record FROM data_exports WHERE id = ?";

constexpr char kUpsertProject[] =
    "INSERT INTO projects (id, name, record) VALUES (?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET name = excluded.name, "
    "record = excluded.record";
constexpr char kUpsertDeployment[] =
    "INSERT INTO deployments (id, project_id, name, record) "
    "VALUES (?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET project_id = excluded.project_id, "
    "name = excluded.name, record = excluded.record";
constexpr char kUpsertPipeline[] =
    "INSERT INTO pipelines (id, slug, name, record) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET slug = excluded.slug, "
    "name = excluded.name, record = excluded.record";
constexpr char kUpsertCollection[] =
    "INSERT INTO capture_collections (id, project_id, name, method, record) "
    "VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET project_id = excluded.project_id, "
    "name = excluded.name, method = excluded.method, "
    "record = excluded.record";
// A null id inserts a capture with a new id.
constexpr char kUpsertCapture[] =
    "INSERT INTO captures (id, deployment_id, path, record) "
    "VALUES (?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET deployment_id = excluded.deployment_id, "
    "path = excluded.path, record = excluded.record";
constexpr char kUpdateCaptureRecord[] =
    "UPDATE captures SET record = ? WHERE id = ?";
constexpr char kCaptureIdByPath[] = "SELECT id FROM captures WHERE path = ?";
constexpr char kUpsertDataExport[] =
    "INSERT INTO data_exports (id, project_id, format, record) "
    "VALUES (?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET project_id = excluded.project_id, "
    "format = excluded.format, record = excluded.record";

constexpr char kDeleteMembers[] =
    "DELETE FROM collection_captures WHERE collection_id = ?";
// A capture listed twice is one member.
constexpr char kInsertMember[] =
    "INSERT OR IGNORE INTO collection_captures (collection_id, capture_id) "
    "VALUES (?, ?)";
constexpr char kCountMembers[] =
    "SELECT COUNT(*) FROM collection_captures WHERE collection_id = ?";
constexpr char kListMembers[] =
    "SELECT capture_id FROM collection_captures WHERE collection_id = ? "
    "ORDER BY capture_id";

// The sampling methods of a capture collection (catalog.proto).
constexpr absl::string_view kSamplingMethods[] = {
    "full",
    "random",
    "stratified_random",
    "interval",
    "manual",
    "starred",
    "random_from_each_event",
    "last_and_random_from_each_event",
    "greatest_file_size_from_each_event",
    "detections_only",
    "common_combined",
};

// ---- Value conversions ----

bool IsFinal(v2::JobStatus status) {
  return status == v2::SUCCESS || status == v2::FAILURE ||
         status == v2::REVOKED;
}

LogLevel ParseLogLevel(absl::string_view name) {
  for (LogLevel level : {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarning,
                         LogLevel::kError, LogLevel::kCritical}) {
    if (name == LogLevelName(level)) return level;
  }
  return LogLevel::kInfo;
}

int64_t Micros(const google::protobuf::Timestamp& ts) {
  return TimeUtil::TimestampToMicroseconds(ts);
}

std::optional<int64_t> OptionalMicros(bool has,
                                      const google::protobuf::Timestamp& ts) {
  if (!has) return std::nullopt;
  return TimeUtil::TimestampToMicroseconds(ts);
}

// The id of a reference message: null when cleared or 0.
std::optional<int64_t> ReferenceId(bool has, int64_t id) {
  if (!has || id == 0) return std::nullopt;
  return id;
}

// A lease expiry as stored: microseconds since the epoch; the infinities
// are the ends of the int64 range (absl saturates to them).
int64_t ExpiryMicros(absl::Time expires_at) {
  return absl::ToUnixMicros(expires_at);
}

absl::Time ExpiryTime(int64_t micros) {
  if (micros == std::numeric_limits<int64_t>::min()) {
    return absl::InfinitePast();
  }
  if (micros == std::numeric_limits<int64_t>::max()) {
    return absl::InfiniteFuture();
  }
  return absl::FromUnixMicros(micros);
}

absl::Status CheckLease(const JobLease& lease) {
  if (lease.attempts < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lease.attempts: must not be negative (got ", lease.attempts, ")"));
  }
  return absl::OkStatus();
}

// Binds lease_id, lease_holder, lease_expires_at and attempts. A lease
// without an id is stored as none (NULL id and expiry) but keeps its holder,
// the queue the job waits in, and its attempts.
void BindLease(Statement& statement, const JobLease& lease) {
  if (lease.leased()) {
    statement.BindText(lease.lease_id)
        .BindText(lease.holder)
        .BindInt64(ExpiryMicros(lease.expires_at));
  } else {
    statement.BindNull().BindText(lease.holder).BindNull();
  }
  statement.BindInt64(lease.attempts);
}

// True if `progress` has a stage keyed "results" whose status is final.
bool ResultsStageFinal(const v2::JobProgress& progress) {
  for (const v2::ProgressStage& stage : progress.stages()) {
    if (stage.key() == "results" && IsFinal(stage.status())) return true;
  }
  return false;
}

// True if `value` holds, at any depth, a number JSON cannot carry (NaN or
// an infinity). The JSON printer writes such a number as a string, which
// would read back as a string value: the stored value would change.
bool HasNonFiniteNumber(const google::protobuf::Value& value) {
  switch (value.kind_case()) {
    case google::protobuf::Value::kNumberValue:
      return !std::isfinite(value.number_value());
    case google::protobuf::Value::kStructValue:
      for (const auto& field : value.struct_value().fields()) {
        if (HasNonFiniteNumber(field.second)) return true;
      }
      return false;
    case google::protobuf::Value::kListValue:
      for (const google::protobuf::Value& item : value.list_value().values()) {
        if (HasNonFiniteNumber(item)) return true;
      }
      return false;
    default:
      return false;
  }
}

// INVALID_ARGUMENT if a JSON value of the progress or the result of `job`
// holds a number that JSON cannot carry.
absl::Status CheckJsonNumbers(const v2::Job& job) {
  constexpr absl::string_view kNonFinite =
      ": not representable as JSON (a number is NaN or infinite)";
  for (const v2::ProgressStage& stage : job.progress().stages()) {
    for (const v2::StageParam& param : stage.params()) {
      if (HasNonFiniteNumber(param.value())) {
        return absl::InvalidArgumentError(absl::StrCat("progress", kNonFinite));
      }
    }
  }
  if (HasNonFiniteNumber(job.result())) {
    return absl::InvalidArgumentError(absl::StrCat("result", kNonFinite));
  }
  return absl::OkStatus();
}

// The serialized form of `message`, as the progress and result columns
// hold it, and `parsed`, the message a read of it gives. INVALID_ARGUMENT
// naming `field` if a string in it is not UTF-8: such bytes would not
// parse back.
//
// Deterministic (map entries by key), so that equal messages give equal
// bytes and MutateJob can tell an unchanged column by its bytes.
template <typename Message>
absl::StatusOr<std::string> Serialize(const Message& message,
                                      absl::string_view field,
                                      Message* parsed) {
  std::string bytes;
  bool serialized = false;
  {
    google::protobuf::io::StringOutputStream output(&bytes);
    google::protobuf::io::CodedOutputStream coded(&output);
    coded.SetSerializationDeterministic(true);
    serialized = message.SerializeToCodedStream(&coded) && !coded.HadError();
  }
  if (!serialized || !parsed->ParseFromString(bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": a string is not valid UTF-8"));
  }
  return bytes;
}

// Parses the progress or result column `column` of `row` into `message`.
// DATA_LOSS "<what> is unreadable" for bytes that do not parse, or a text
// that an older version's JSON could not be converted from.
absl::Status ParseColumn(const Statement& row, int column,
                         absl::string_view what,
                         google::protobuf::Message* message) {
  const absl::string_view bytes = row.BlobView(column);
  if (row.IsText(column) ||
      !message->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::DataLossError(absl::StrCat(what, " is unreadable"));
  }
  return absl::OkStatus();
}

// The stored record of a reference column pair; nullopt when the job's
// reference is null. A reference without its record yields just the id.
template <typename Record>
absl::StatusOr<std::optional<Record>> ReadReference(const Statement& row,
                                                    int id_column,
                                                    int record_column,
                                                    absl::string_view what) {
  const std::optional<int64_t> id = row.OptionalInt64(id_column);
  if (!id.has_value()) return std::nullopt;
  Record record;
  if (row.IsNull(record_column)) {
    record.set_id(*id);
    return record;
  }
  if (!record.ParseFromString(row.Blob(record_column))) {
    return absl::DataLossError(absl::StrCat(what, " is unreadable"));
  }
  return record;
}

// The job of the current row of a kJobSelectHead query.
absl::StatusOr<v2::Job> RowToJob(const Statement& row, bool include_result) {
  v2::Job job;
  const int64_t id = row.Int64(kColId);
  const std::string what = absl::StrCat("stored job ", id);
  job.set_id(id);
  job.set_name(row.Text(kColName));
  job.set_delay(row.Int64(kColDelay));
  if (const auto limit = row.OptionalInt64(kColLimit)) job.set_limit(*limit);
  job.set_shuffle(row.Int64(kColShuffle) != 0);
  job.set_sequence(row.Int64(kColSequence));

  // References.
  JOBS_ASSIGN_OR_RETURN(
      std::optional<v2::Project> project,
      ReadReference<v2::Project>(row, kColProjectId, kColProjectRecord,
                                 absl::StrCat(what, ": project")));
  if (project.has_value()) *job.mutable_project() = std::move(*project);
  JOBS_ASSIGN_OR_RETURN(
      std::optional<v2::Deployment> deployment,
      ReadReference<v2::Deployment>(row, kColDeploymentId, kColDeploymentRecord,
                                    absl::StrCat(what, ": deployment")));
  if (deployment.has_value()) {
    *job.mutable_deployment() = std::move(*deployment);
  }
  JOBS_ASSIGN_OR_RETURN(std::optional<v2::CaptureCollection> collection,
                        ReadReference<v2::CaptureCollection>(
                            row, kColCollectionId, kColCollectionRecord,
                            absl::StrCat(what, ": source_image_collection")));
  if (collection.has_value()) {
    *job.mutable_source_image_collection() = std::move(*collection);
  }
  JOBS_ASSIGN_OR_RETURN(
      std::optional<v2::Capture> capture,
      ReadReference<v2::Capture>(row, kColCaptureId, kColCaptureRecord,
                                 absl::StrCat(what, ": source_image_single")));
  if (capture.has_value()) {
    *job.mutable_source_image_single() = std::move(*capture);
  }
  JOBS_ASSIGN_OR_RETURN(
      std::optional<v2::Pipeline> pipeline,
      ReadReference<v2::Pipeline>(row, kColPipelineId, kColPipelineRecord,
                                  absl::StrCat(what, ": pipeline")));
  if (pipeline.has_value()) *job.mutable_pipeline() = std::move(*pipeline);
  JOBS_ASSIGN_OR_RETURN(
      std::optional<v2::DataExport> data_export,
      ReadReference<v2::DataExport>(row, kColDataExportId, kColDataExportRecord,
                                    absl::StrCat(what, ": data_export")));
  if (data_export.has_value()) {
    *job.mutable_data_export() = std::move(*data_export);
  }

  // Type, status and timestamps.
  job.mutable_job_type()->set_key(row.Text(kColJobTypeKey));
  job.set_dispatch_mode(row.Text(kColDispatchMode));
  v2::JobStatus status;
  if (!v2::JobStatus_Parse(row.Text(kColStatus), &status)) {
    return absl::DataLossError(absl::StrCat(what, ": unknown status"));
  }
  job.set_status(status);
  *job.mutable_created_at() =
      TimeUtil::MicrosecondsToTimestamp(row.Int64(kColCreatedAt));
  *job.mutable_updated_at() =
      TimeUtil::MicrosecondsToTimestamp(row.Int64(kColUpdatedAt));
  if (const auto started = row.OptionalInt64(kColStartedAt)) {
    *job.mutable_started_at() = TimeUtil::MicrosecondsToTimestamp(*started);
  }
  if (const auto finished = row.OptionalInt64(kColFinishedAt)) {
    *job.mutable_finished_at() = TimeUtil::MicrosecondsToTimestamp(*finished);
  }

  // Serialized columns.
  JOBS_RETURN_IF_ERROR(ParseColumn(row, kColProgress,
                                   absl::StrCat(what, ": progress"),
                                   job.mutable_progress()));
  if (include_result && !row.IsNull(kColResult)) {
    JOBS_RETURN_IF_ERROR(ParseColumn(
        row, kColResult, absl::StrCat(what, ": result"), job.mutable_result()));
  }
  return job;
}

// Copies the reference records of `from` (those it has) into `to`.
void CopyReferences(const v2::Job& from, v2::Job* to) {
  if (from.has_project()) *to->mutable_project() = from.project();
  if (from.has_deployment()) *to->mutable_deployment() = from.deployment();
  if (from.has_source_image_collection()) {
    *to->mutable_source_image_collection() = from.source_image_collection();
  }
  if (from.has_source_image_single()) {
    *to->mutable_source_image_single() = from.source_image_single();
  }
  if (from.has_pipeline()) *to->mutable_pipeline() = from.pipeline();
  if (from.has_data_export()) *to->mutable_data_export() = from.data_export();
}

// ---- List queries ----

// A bound parameter of a dynamically built query.
using Param = std::variant<int64_t, std::string>;

void BindParams(Statement& statement, const std::vector<Param>& params) {
  for (const Param& param : params) {
    if (const int64_t* number = std::get_if<int64_t>(&param)) {
      statement.BindInt64(*number);
    } else {
      statement.BindText(std::get<std::string>(param));
    }
  }
}

// `term` as a LIKE pattern matching it literally anywhere (ESCAPE '\').
std::string ContainsPattern(absl::string_view term) {
  std::string pattern = "%";
  for (char c : term) {
    if (c == '%' || c == '_' || c == '\\') pattern.push_back('\\');
    pattern.push_back(c);
  }
  pattern.push_back('%');
  return pattern;
}

// The column of an ordering key, and whether it may be null.
std::pair<const char*, bool> OrderColumn(JobOrderField field) {
  switch (field) {
    case JobOrderField::kName:
      return {"j.name", false};
    case JobOrderField::kCreatedAt:
      return {"j.created_at", false};
    case JobOrderField::kUpdatedAt:
      return {"j.updated_at", false};
    case JobOrderField::kStatus:
      return {"j.status", false};
    case JobOrderField::kStartedAt:
      return {"j.started_at", true};
    case JobOrderField::kFinishedAt:
      return {"j.finished_at", true};
    case JobOrderField::kProject:
      return {"j.project_id", false};
    case JobOrderField::kDeployment:
      return {"j.deployment_id", true};
    case JobOrderField::kSourceImageCollection:
      return {"j.source_image_collection_id", true};
    case JobOrderField::kPipeline:
      return {"j.pipeline_id", true};
  }
  return {"j.created_at", false};
}

// The filters of a list query as SQL.
struct ListSql {
  std::string where;            // "" or " WHERE ..."
  bool needs_pipeline = false;  // `where` refers to pipelines (pl)
  std::vector<Param> params;    // for the "?"s of `where`, in order
  std::string order_by;         // " ORDER BY ..."
};

ListSql BuildListSql(const JobQuery& query) {
  ListSql sql;
  std::vector<std::string> conditions;
  auto add = [&](std::string condition, Param param) {
    conditions.push_back(std::move(condition));
    sql.params.push_back(std::move(param));
  };

  // Exact filters.
  if (query.status.has_value()) {
    add("j.status = ?", v2::JobStatus_Name(*query.status));
  }
  if (query.project_id.has_value()) add("j.project_id = ?", *query.project_id);
  if (query.deployment_id.has_value()) {
    add("j.deployment_id = ?", *query.deployment_id);
  }
  if (query.source_image_collection_id.has_value()) {
    add("j.source_image_collection_id = ?", *query.source_image_collection_id);
  }
  if (query.source_image_single_id.has_value()) {
    add("j.source_image_single_id = ?", *query.source_image_single_id);
  }
  if (query.pipeline_id.has_value()) {
    add("j.pipeline_id = ?", *query.pipeline_id);
  }
  if (query.pipeline_slug.has_value()) {
    add("pl.slug = ?", *query.pipeline_slug);
    sql.needs_pipeline = true;
  }
  if (!query.pipeline_slug_in.empty()) {
    std::vector<std::string> marks(query.pipeline_slug_in.size(), "?");
    conditions.push_back(
        absl::StrCat("pl.slug IN (", absl::StrJoin(marks, ", "), ")"));
    for (const std::string& slug : query.pipeline_slug_in) {
      sql.params.push_back(slug);
    }
    sql.needs_pipeline = true;
  }
  if (query.job_type_key.has_value()) {
    add("j.job_type_key = ?", *query.job_type_key);
  }
  if (query.dispatch_mode.has_value()) {
    add("j.dispatch_mode = ?", *query.dispatch_mode);
  }
  if (query.incomplete_only) {
    conditions.push_back(
        "j.status NOT IN ('SUCCESS', 'FAILURE', 'REVOKED') AND "
        "j.results_stage_final = 0");
  }

  // Search: every term in the job's name or its pipeline's name.
  for (const std::string& term : query.search_terms) {
    if (term.empty()) continue;
    conditions.push_back(
        "(j.name LIKE ? ESCAPE '\\' OR pl.name LIKE ? ESCAPE '\\')");
    sql.params.push_back(ContainsPattern(term));
    sql.params.push_back(ContainsPattern(term));
    sql.needs_pipeline = true;
  }
  if (!conditions.empty()) {
    sql.where = absl::StrCat(" WHERE ", absl::StrJoin(conditions, " AND "));
  }

  // Ordering; nulls last both ways (SQLite puts them last for DESC already).
  std::vector<std::string> keys;
  for (const JobOrder& order : query.ordering) {
    const auto [column, nullable] = OrderColumn(order.field);
    if (order.descending) {
      keys.push_back(absl::StrCat(column, " DESC"));
    } else {
      keys.push_back(
          absl::StrCat(column, nullable ? " ASC NULLS LAST" : " ASC"));
    }
  }
  if (keys.empty()) {
    if (query.random_order) {
      keys.push_back("random()");
    } else {
      keys.push_back("j.created_at DESC");
    }
  }
  keys.push_back("j.id DESC");
  sql.order_by = absl::StrCat(" ORDER BY ", absl::StrJoin(keys, ", "));
  return sql;
}

std::string PageSql(const ListSql& sql, bool include_result) {
  return absl::StrCat(kJobSelectHead, include_result ? "j.result" : "NULL",
                      kJobFrom, sql.where, sql.order_by, " LIMIT ? OFFSET ?");
}

absl::Status CheckPaging(const JobQuery& query) {
  if (query.limit <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("limit: must be positive (got ", query.limit, ")"));
  }
  if (query.offset < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("offset: must not be negative (got ", query.offset, ")"));
  }
  return absl::OkStatus();
}

// "(?, ?, ?)" for `count` parameters.
std::string Marks(size_t count) {
  return absl::StrCat(
      "(", absl::StrJoin(std::vector<std::string>(count, "?"), ", "), ")");
}

// The query of FindJobIds, with its parameters but the limit (the last
// "?").
struct IdSql {
  std::string sql;
  std::vector<Param> params;
};

IdSql BuildIdSql(const JobIdQuery& query) {
  IdSql sql;
  std::vector<std::string> conditions;
  if (!query.statuses.empty()) {
    conditions.push_back(
        absl::StrCat("j.status IN ", Marks(query.statuses.size())));
    for (const v2::JobStatus status : query.statuses) {
      sql.params.push_back(v2::JobStatus_Name(status));
    }
  }
  if (!query.job_types.empty()) {
    conditions.push_back(
        absl::StrCat("j.job_type_key IN ", Marks(query.job_types.size())));
    for (const std::string& job_type : query.job_types) {
      sql.params.push_back(job_type);
    }
  }

  // The partial lease indexes apply only where the query itself says
  // "lease_id IS NOT NULL".
  const bool only_leased =
      query.leased.value_or(false) || query.lease_expires_before.has_value();
  if (query.leased.has_value() && !*query.leased) {
    conditions.push_back("j.lease_id IS NULL");
  }
  if (only_leased) conditions.push_back("j.lease_id IS NOT NULL");
  if (query.holder.has_value()) {
    conditions.push_back("j.lease_holder = ?");
    sql.params.push_back(*query.holder);
  }
  if (query.lease_expires_before.has_value()) {
    conditions.push_back("j.lease_expires_at < ?");
    sql.params.push_back(ExpiryMicros(*query.lease_expires_before));
  }
  if (query.updated_before.has_value()) {
    conditions.push_back("j.updated_at < ?");
    sql.params.push_back(absl::ToUnixMicros(*query.updated_before));
  }

  sql.sql = "SELECT j.id FROM jobs AS j";
  if (!conditions.empty()) {
    absl::StrAppend(&sql.sql, " WHERE ", absl::StrJoin(conditions, " AND "));
  }
  absl::StrAppend(&sql.sql,
                  " ORDER BY j.scheduled_at ASC NULLS FIRST, j.id ASC LIMIT ?");
  return sql;
}

absl::Status CheckIdLimit(const JobIdQuery& query) {
  if (query.limit <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("limit: must be positive (got ", query.limit, ")"));
  }
  return absl::OkStatus();
}

// The detail column of every row of an EXPLAIN QUERY PLAN statement, one
// per line.
absl::StatusOr<std::string> PlanSteps(Statement& explain) {
  std::vector<std::string> steps;
  while (true) {
    JOBS_ASSIGN_OR_RETURN(const bool row, explain.Step());
    if (!row) break;
    steps.push_back(explain.Text(3));
  }
  return absl::StrJoin(steps, "\n");
}

// ---- Reads on one connection ----
//
// Each runs on the connection it is given (a reader of the pool, or the
// writer's inside a write); the caller serializes its use.

absl::Status BeginRead(SqliteConnection& conn) {
  return conn.RunCached(kBeginDeferred, "starting a read");
}

// Commits when `status` is OK and rolls back otherwise; returns `status` or
// the commit's error.
absl::Status EndTransaction(SqliteConnection& conn, absl::Status status) {
  if (status.ok()) {
    status = conn.RunCached(kCommit, "committing");
    if (status.ok()) return status;
  }
  // Some errors (a full disk, an I/O error) end the transaction by
  // themselves.
  if (!sqlite3_get_autocommit(conn.db())) {
    const absl::Status rolled_back = conn.RunCached(kRollback, "rolling back");
    if (!rolled_back.ok()) {
      LOG(ERROR) << "Job database rollback failed: " << rolled_back;
    }
  }
  return status;
}

// The job `id` with its reference records and result. NOT_FOUND "job <id>
// not found".
absl::StatusOr<v2::Job> ReadJob(SqliteConnection& conn, int64_t id) {
  JOBS_ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                        conn.Cached(absl::StrCat(kJobSelectHead, "j.result",
                                                 kJobFrom, " WHERE j.id = ?")));
  Statement query(conn.db(), stmt, absl::StrCat("reading job ", id));
  query.BindInt64(id);
  JOBS_ASSIGN_OR_RETURN(const bool found, query.Step());
  if (!found)
    return absl::NotFoundError(absl::StrCat("job ", id, " not found"));
  return RowToJob(query, /*include_result=*/true);
}

// The lease in the columns lease_id, lease_holder, lease_expires_at and
// attempts of `row`, which start at `first`.
JobLease LeaseFromColumns(const Statement& row, int first) {
  JobLease lease;
  lease.attempts = static_cast<int32_t>(row.Int64(first + 3));
  lease.holder = row.OptionalText(first + 1).value_or("");
  if (row.IsNull(first)) return lease;
  lease.lease_id = row.Text(first);
  if (const auto expires_at = row.OptionalInt64(first + 2)) {
    lease.expires_at = ExpiryTime(*expires_at);
  }
  return lease;
}

absl::StatusOr<JobLease> ReadLease(SqliteConnection& conn, int64_t id) {
  JOBS_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, conn.Cached(kSelectLease));
  Statement query(conn.db(), stmt,
                  absl::StrCat("reading the lease of job ", id));
  query.BindInt64(id);
  JOBS_ASSIGN_OR_RETURN(const bool found, query.Step());
  if (!found) {
    return absl::NotFoundError(absl::StrCat("job ", id, " not found"));
  }
  return LeaseFromColumns(query, 0);
}

// The query of job_counts that counts the jobs of `query`, if it filters
// on nothing but status and project (parameters: the project id, then the
// status name, each if filtered on).
std::optional<const char*> CountsSql(const JobQuery& query) {
  const bool searches =
      std::any_of(query.search_terms.begin(), query.search_terms.end(),
                  [](const std::string& term) { return !term.empty(); });
  if (query.deployment_id.has_value() ||
      query.source_image_collection_id.has_value() ||
      query.source_image_single_id.has_value() ||
      query.pipeline_id.has_value() || query.pipeline_slug.has_value() ||
      !query.pipeline_slug_in.empty() || query.job_type_key.has_value() ||
      query.dispatch_mode.has_value() || query.incomplete_only || searches) {
    return std::nullopt;
  }
  if (query.project_id.has_value() && query.status.has_value()) {
    return "SELECT coalesce(sum(count), 0) FROM job_counts "
           "WHERE project_id = ? AND status = ?";
  }
  if (query.project_id.has_value()) {
    return "SELECT coalesce(sum(count), 0) FROM job_counts "
           "WHERE project_id = ?";
  }
  if (query.status.has_value()) {
    return "SELECT coalesce(sum(count), 0) FROM job_counts WHERE status = ?";
  }
  return "SELECT coalesce(sum(count), 0) FROM job_counts";
}

absl::StatusOr<JobPage> ListJobsIn(SqliteConnection& conn,
                                   const JobQuery& query) {
  const ListSql sql = BuildListSql(query);
  JobPage page;

  // The count over all pages: from job_counts when only status and project
  // filter, else by counting the matching rows.
  if (std::optional<const char*> counts_sql = CountsSql(query)) {
    JOBS_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, conn.Cached(*counts_sql));
    Statement count(conn.db(), stmt, "counting jobs");
    if (query.project_id.has_value()) count.BindInt64(*query.project_id);
    if (query.status.has_value()) {
      count.BindText(v2::JobStatus_Name(*query.status));
    }
    JOBS_ASSIGN_OR_RETURN(const bool row, count.Step());
    if (row) page.count = count.Int64(0);
  } else {
    const std::string count_sql = absl::StrCat(
        "SELECT COUNT(*) FROM jobs AS j",
        sql.needs_pipeline ? " LEFT JOIN pipelines AS pl ON pl.id = "
                             "j.pipeline_id"
                           : "",
        sql.where);
    JOBS_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, conn.CachedQuery(count_sql));
    Statement count(conn.db(), stmt, "counting jobs");
    BindParams(count, sql.params);
    JOBS_ASSIGN_OR_RETURN(const bool row, count.Step());
    if (row) page.count = count.Int64(0);
  }

  // One page.
  // (The count's statement is done with: CachedQuery may finalize it.)
  JOBS_ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                        conn.CachedQuery(PageSql(sql, query.include_result)));
  Statement list(conn.db(), stmt, "listing jobs");
  BindParams(list, sql.params);
  list.BindInt64(query.limit).BindInt64(query.offset);
  while (true) {
    JOBS_ASSIGN_OR_RETURN(const bool row, list.Step());
    if (!row) break;
    JOBS_ASSIGN_OR_RETURN(v2::Job job, RowToJob(list, query.include_result));
    page.jobs.push_back(std::move(job));
  }
  return page;
}

absl::StatusOr<JobChanges> ReadChangesIn(SqliteConnection& conn, int64_t id,
                                         int64_t after_sequence, int max_logs) {
  JobChanges changes;
  JOBS_ASSIGN_OR_RETURN(changes.job, ReadJob(conn, id));
  {
    JOBS_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, conn.Cached(kReadStatusChanges));
    Statement query(conn.db(), stmt,
                    absl::StrCat("reading the statuses of job ", id));
    query.BindInt64(id).BindInt64(after_sequence);
    while (true) {
      JOBS_ASSIGN_OR_RETURN(const bool row, query.Step());
      if (!row) break;
      v2::JobStatus status = v2::JOB_STATUS_UNSPECIFIED;
      v2::JobStatus_Parse(query.Text(1), &status);
      changes.status_changes.push_back(StatusChange{
          query.Int64(0), status, absl::FromUnixMicros(query.Int64(2))});
    }
  }
  JOBS_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, conn.Cached(kReadLogsAfter));
  Statement query(conn.db(), stmt, absl::StrCat("reading the log of job ", id));
  query.BindInt64(id)
      .BindInt64(after_sequence)
      .BindInt64(static_cast<int64_t>(std::max(max_logs, 0)) + 1);
  while (true) {
    JOBS_ASSIGN_OR_RETURN(const bool row, query.Step());
    if (!row) break;
    if (static_cast<int>(changes.logs.size()) == max_logs) {
      changes.too_many_logs = true;
      changes.logs.clear();
      break;
    }
    LogLine& line = changes.logs.emplace_back();
    line.id = query.Int64(0);
    line.job_id = query.Int64(1);
    line.created_at = absl::FromUnixMicros(query.Int64(2));
    line.level = ParseLogLevel(query.Text(3));
    line.message = query.Text(4);
    line.sequence = query.Int64(5);
  }
  return changes;
}

// The serialized record `id` read with `select_sql`. NOT_FOUND
// "<kind> <id> not found".
absl::StatusOr<std::string> ReadRecord(SqliteConnection& conn,
                                       absl::string_view select_sql,
                                       absl::string_view kind, int64_t id) {
  JOBS_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, conn.Cached(select_sql));
  Statement query(conn.db(), stmt, absl::StrCat("reading ", kind, " ", id));
  query.BindInt64(id);
  JOBS_ASSIGN_OR_RETURN(const bool found, query.Step());
  if (!found) {
    return absl::NotFoundError(absl::StrCat(kind, " ", id, " not found"));
  }
  return query.Blob(0);
}

// ---- Catalogue validation ----

absl::Status CheckRecordId(absl::string_view where, int64_t id) {
  if (id <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ".id: must be positive (got ", id, ")"));
  }
  return absl::OkStatus();
}

// A record's name or slug: not empty and, as job names, without a null
// character (a client written in C would see it cut short).
absl::Status CheckNotEmpty(absl::string_view where, absl::string_view field,
                           absl::string_view value) {
  if (value.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ".", field, ": must not be empty"));
  }
  if (value.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ".", field, ": must not hold a null character"));
  }
  return absl::OkStatus();
}

bool IsSamplingMethod(absl::string_view method) {
  for (absl::string_view known : kSamplingMethods) {
    if (method == known) return true;
  }
  return false;
}

}  // namespace

// A job's columns, converted and checked.
struct SqliteJobStore::JobRow {
  std::string name;
  int64_t delay = 0;
  std::optional<int64_t> limit;
  bool shuffle = true;
  int64_t project_id = 0;
  std::optional<int64_t> deployment_id;
  std::optional<int64_t> source_image_collection_id;
  std::optional<int64_t> source_image_single_id;
  std::optional<int64_t> pipeline_id;
  std::optional<int64_t> data_export_id;
  std::string job_type_key;
  std::string dispatch_mode;
  v2::JobStatus status = v2::CREATED;
  std::optional<int64_t> started_at;
  std::optional<int64_t> finished_at;
  std::string progress;               // serialized JobProgress
  std::optional<std::string> result;  // serialized Value; nullopt: none
  bool results_stage_final = false;
  // What a read of progress and result gives.
  v2::JobProgress progress_read;
  google::protobuf::Value result_read;
  // The lease columns (SetLease).
  std::optional<std::string> lease_id;
  std::string lease_holder;
  std::optional<int64_t> lease_expires_at;
  int64_t attempts = 0;

  // The columns an update may set, in the order of its SET list.
  enum Column {
    kName,
    kDelay,
    kLimit,
    kShuffle,
    kProjectId,
    kDeploymentId,
    kCollectionId,
    kCaptureId,
    kPipelineId,
    kDataExportId,
    kJobTypeKey,
    kDispatchMode,
    kStatus,
    kStartedAt,
    kFinishedAt,
    kProgress,
    kResult,
    kResultsStageFinal,
    kLeaseId,
    kLeaseHolder,
    kLeaseExpiresAt,
    kAttempts,
    kColumnCount,
  };
  static constexpr const char* kColumnNames[kColumnCount] = {
      "name",
      "delay",
      "job_limit",
      "shuffle",
      "project_id",
      "deployment_id",
      "source_image_collection_id",
      "source_image_single_id",
      "pipeline_id",
      "data_export_id",
      "job_type_key",
      "dispatch_mode",
      "status",
      "started_at",
      "finished_at",
      "progress",
      "result",
      "results_stage_final",
      "lease_id",
      "lease_holder",
      "lease_expires_at",
      "attempts",
  };

  // The lease columns of `lease`, as BindLease writes them.
  void SetLease(const JobLease& lease) {
    lease_holder = lease.holder;
    attempts = lease.attempts;
    if (lease.leased()) {
      lease_id = lease.lease_id;
      lease_expires_at = ExpiryMicros(lease.expires_at);
    } else {
      lease_id.reset();
      lease_expires_at.reset();
    }
  }

  // The columns as stored in the current row of a query of kJobSelectHead
  // and kJobForWriteTail (progress_read and result_read are left empty).
  static JobRow FromStored(const Statement& row) {
    JobRow stored;
    stored.name = row.Text(kColName);
    stored.delay = row.Int64(kColDelay);
    stored.limit = row.OptionalInt64(kColLimit);
    stored.shuffle = row.Int64(kColShuffle) != 0;
    stored.project_id = row.Int64(kColProjectId);
    stored.deployment_id = row.OptionalInt64(kColDeploymentId);
    stored.source_image_collection_id = row.OptionalInt64(kColCollectionId);
    stored.source_image_single_id = row.OptionalInt64(kColCaptureId);
    stored.pipeline_id = row.OptionalInt64(kColPipelineId);
    stored.data_export_id = row.OptionalInt64(kColDataExportId);
    stored.job_type_key = row.Text(kColJobTypeKey);
    stored.dispatch_mode = row.Text(kColDispatchMode);
    v2::JobStatus_Parse(row.Text(kColStatus), &stored.status);
    stored.started_at = row.OptionalInt64(kColStartedAt);
    stored.finished_at = row.OptionalInt64(kColFinishedAt);
    stored.progress = std::string(row.BlobView(kColProgress));
    if (!row.IsNull(kColResult)) {
      stored.result = std::string(row.BlobView(kColResult));
    }
    stored.results_stage_final = row.Int64(kColResultsStageFinal) != 0;
    stored.lease_id = row.OptionalText(kColLeaseId);
    stored.lease_holder = row.OptionalText(kColLeaseHolder).value_or("");
    stored.lease_expires_at = row.OptionalInt64(kColLeaseExpiresAt);
    stored.attempts = row.Int64(kColAttempts);
    return stored;
  }

  // One bit (1 << Column) for each column whose value differs from
  // `stored`'s.
  uint32_t ChangedColumns(const JobRow& stored) const {
    const bool differs[kColumnCount] = {
        name != stored.name,
        delay != stored.delay,
        limit != stored.limit,
        shuffle != stored.shuffle,
        project_id != stored.project_id,
        deployment_id != stored.deployment_id,
        source_image_collection_id != stored.source_image_collection_id,
        source_image_single_id != stored.source_image_single_id,
        pipeline_id != stored.pipeline_id,
        data_export_id != stored.data_export_id,
        job_type_key != stored.job_type_key,
        dispatch_mode != stored.dispatch_mode,
        status != stored.status,
        started_at != stored.started_at,
        finished_at != stored.finished_at,
        progress != stored.progress,
        result != stored.result,
        results_stage_final != stored.results_stage_final,
        lease_id != stored.lease_id,
        lease_holder != stored.lease_holder,
        lease_expires_at != stored.lease_expires_at,
        attempts != stored.attempts,
    };
    uint32_t changed = 0;
    for (int column = 0; column < kColumnCount; ++column) {
      if (differs[column]) changed |= uint32_t{1} << column;
    }
    return changed;
  }

  // Binds the value of `column`.
  void BindColumn(Statement& statement, Column column) const {
    switch (column) {
      case kName:
        statement.BindText(name);
        return;
      case kDelay:
        statement.BindInt64(delay);
        return;
      case kLimit:
        statement.BindOptionalInt64(limit);
        return;
      case kShuffle:
        statement.BindInt64(shuffle ? 1 : 0);
        return;
      case kProjectId:
        statement.BindInt64(project_id);
        return;
      case kDeploymentId:
        statement.BindOptionalInt64(deployment_id);
        return;
      case kCollectionId:
        statement.BindOptionalInt64(source_image_collection_id);
        return;
      case kCaptureId:
        statement.BindOptionalInt64(source_image_single_id);
        return;
      case kPipelineId:
        statement.BindOptionalInt64(pipeline_id);
        return;
      case kDataExportId:
        statement.BindOptionalInt64(data_export_id);
        return;
      case kJobTypeKey:
        statement.BindText(job_type_key);
        return;
      case kDispatchMode:
        statement.BindText(dispatch_mode);
        return;
      case kStatus:
        statement.BindText(v2::JobStatus_Name(status));
        return;
      case kStartedAt:
        statement.BindOptionalInt64(started_at);
        return;
      case kFinishedAt:
        statement.BindOptionalInt64(finished_at);
        return;
      case kProgress:
        statement.BindBlob(progress);
        return;
      case kResult:
        statement.BindOptionalBlob(result);
        return;
      case kResultsStageFinal:
        statement.BindInt64(results_stage_final ? 1 : 0);
        return;
      case kLeaseId:
        statement.BindOptionalText(lease_id);
        return;
      case kLeaseHolder:
        statement.BindText(lease_holder);
        return;
      case kLeaseExpiresAt:
        statement.BindOptionalInt64(lease_expires_at);
        return;
      case kAttempts:
        statement.BindInt64(attempts);
        return;
      case kColumnCount:
        return;
    }
  }

  // The writable fields of `job` as columns. INVALID_ARGUMENT for a status
  // that is not one of the ten, a value without a JSON form (the API
  // shows them as JSON), or a string that is not UTF-8.
  static absl::StatusOr<JobRow> FromJob(const v2::Job& job) {
    JobRow row;
    if (job.status() == v2::JOB_STATUS_UNSPECIFIED ||
        !v2::JobStatus_IsValid(job.status())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "status: ", static_cast<int>(job.status()), " is not a job status"));
    }
    row.status = job.status();
    row.name = job.name();
    row.delay = job.delay();
    if (job.has_limit()) row.limit = job.limit();
    row.shuffle = job.shuffle();
    row.project_id = job.project().id();
    row.deployment_id =
        ReferenceId(job.has_deployment(), job.deployment().id());
    row.source_image_collection_id = ReferenceId(
        job.has_source_image_collection(), job.source_image_collection().id());
    row.source_image_single_id = ReferenceId(job.has_source_image_single(),
                                             job.source_image_single().id());
    row.pipeline_id = ReferenceId(job.has_pipeline(), job.pipeline().id());
    row.data_export_id =
        ReferenceId(job.has_data_export(), job.data_export().id());
    row.job_type_key = job.job_type().key();
    row.dispatch_mode = job.dispatch_mode();
    row.started_at = OptionalMicros(job.has_started_at(), job.started_at());
    row.finished_at = OptionalMicros(job.has_finished_at(), job.finished_at());
    JOBS_RETURN_IF_ERROR(CheckJsonNumbers(job));
    JOBS_ASSIGN_OR_RETURN(row.progress, Serialize(job.progress(), "progress",
                                                  &row.progress_read));
    if (job.has_result() &&
        job.result().kind_case() != google::protobuf::Value::KIND_NOT_SET) {
      JOBS_ASSIGN_OR_RETURN(
          row.result, Serialize(job.result(), "result", &row.result_read));
    }
    row.results_stage_final = ResultsStageFinal(job.progress());
    return row;
  }

  // Fills `job` with what GetJob reads of the row once written with these
  // columns as job `id` (all but the reference records), moving the
  // progress and result out of the row.
  void MoveToJob(int64_t id, int64_t sequence, int64_t created_at,
                 int64_t updated_at, v2::Job* job) {
    job->set_id(id);
    job->set_name(name);
    job->set_delay(delay);
    if (limit.has_value()) job->set_limit(*limit);
    job->set_shuffle(shuffle);
    job->set_sequence(sequence);
    job->mutable_job_type()->set_key(job_type_key);
    job->set_dispatch_mode(dispatch_mode);
    job->set_status(status);
    *job->mutable_created_at() = TimeUtil::MicrosecondsToTimestamp(created_at);
    *job->mutable_updated_at() = TimeUtil::MicrosecondsToTimestamp(updated_at);
    if (started_at.has_value()) {
      *job->mutable_started_at() =
          TimeUtil::MicrosecondsToTimestamp(*started_at);
    }
    if (finished_at.has_value()) {
      *job->mutable_finished_at() =
          TimeUtil::MicrosecondsToTimestamp(*finished_at);
    }
    *job->mutable_progress() = std::move(progress_read);
    if (result.has_value()) *job->mutable_result() = std::move(result_read);
  }

  // Binds name .. status (13 parameters), the columns shared by the insert
  // and the update, in that order.
  void BindCommon(Statement& statement) const {
    for (int column = kName; column <= kStatus; ++column) {
      BindColumn(statement, static_cast<Column>(column));
    }
  }
};

// ---- Factory ----

namespace {

// Opens one connection with extended result codes and the busy timeout.
absl::StatusOr<SqliteDbPtr> OpenConnection(const std::string& name, int flags,
                                           absl::Duration busy_timeout,
                                           absl::string_view context) {
  sqlite3* raw_db = nullptr;
  const int open_rc = sqlite3_open_v2(name.c_str(), &raw_db, flags, nullptr);
  SqliteDbPtr db(raw_db);
  if (open_rc != SQLITE_OK) {
    return db == nullptr ? SqliteCodeError(open_rc, context)
                         : SqliteError(db.get(), context);
  }
  sqlite3_extended_result_codes(db.get(), 1);
  sqlite3_busy_timeout(db.get(),
                       static_cast<int>(std::max<int64_t>(
                           0, absl::ToInt64Milliseconds(busy_timeout))));
  return db;
}

// "file:<path>?immutable=1" with the characters a URI reserves escaped.
std::string ImmutableUri(absl::string_view path) {
  std::string uri = "file:";
  for (const char c : path) {
    if (c == '%' || c == '?' || c == '#') {
      absl::StrAppend(&uri, absl::StrFormat("%%%02X", c));
    } else {
      uri.push_back(c);
    }
  }
  absl::StrAppend(&uri, "?immutable=1");
  return uri;
}

}  // namespace

int SqliteSchemaVersion() { return CurrentSchemaVersion(); }

absl::StatusOr<std::unique_ptr<SqliteJobStore>> OpenSqliteJobStore(
    const SqliteJobStoreOptions& options) {
  const std::string& path = options.path;
  if (path.empty()) {
    return absl::InvalidArgumentError("the job database path is empty");
  }
  const bool in_memory = path == kMemoryPath;

  // Open the connection. The store serializes its use, so SQLite's own
  // mutex is not needed.
  int flags = SQLITE_OPEN_NOMUTEX;
  flags |= options.read_only ? SQLITE_OPEN_READONLY
                             : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  const std::string context = absl::StrCat("cannot open database ", path);
  JOBS_ASSIGN_OR_RETURN(
      SqliteDbPtr db,
      OpenConnection(path, flags, options.busy_timeout, context));

  // The first read fails on a file that is not a database. A WAL database
  // that this process cannot write, in a folder where it cannot create the
  // shared-memory file, can only be read as an immutable file.
  absl::StatusOr<int> probe = ReadSchemaVersion(db.get());
  if (!probe.ok() && !in_memory &&
      probe.status().code() == absl::StatusCode::kUnavailable &&
      sqlite3_db_readonly(db.get(), "main") == 1) {
    // An immutable read ignores the write-ahead log: commits still only
    // there (a server killed before its checkpoint) would not be served.
    std::error_code no_size;
    const std::uintmax_t wal_size =
        std::filesystem::file_size(path + "-wal", no_size);
    if (!no_size && wal_size > 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          context, ": it cannot be written and its write-ahead log (", path,
          "-wal) holds commits that only a writable open can read; open "
          "it once where it can be written"));
    }
    LOG(WARNING) << "Database " << path
                 << " cannot be written; reading it as an immutable file "
                    "(changes by other processes will not be seen)";
    JOBS_ASSIGN_OR_RETURN(
        db, OpenConnection(
                ImmutableUri(path),
                SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_READONLY | SQLITE_OPEN_URI,
                options.busy_timeout, context));
    probe = ReadSchemaVersion(db.get());
  }
  if (!probe.ok()) {
    if (probe.status().code() == absl::StatusCode::kDataLoss) {
      return absl::DataLossError(absl::StrCat(
          context, ": the file is not a SQLite database or is corrupt (",
          probe.status().message(), ")"));
    }
    return absl::Status(probe.status().code(),
                        absl::StrCat(context, ": ", probe.status().message()));
  }
  // A newer schema is refused before anything about the file changes.
  if (*probe > CurrentSchemaVersion()) return MigrateSchema(db.get(), path);

  // Connection settings. journal_mode cannot change on a read-only file
  // (it keeps the mode the file was written with).
  std::string pragmas = "PRAGMA foreign_keys = ON; ";
  absl::StrAppend(&pragmas, "PRAGMA synchronous = ",
                  options.synchronous_full ? "FULL" : "NORMAL", "; ");
  if (!in_memory && !options.read_only &&
      sqlite3_db_readonly(db.get(), "main") != 1) {
    absl::StrAppend(&pragmas, "PRAGMA journal_mode = WAL; ");
  }
  if (sqlite3_exec(db.get(), pragmas.c_str(), nullptr, nullptr, nullptr) !=
      SQLITE_OK) {
    return SqliteError(db.get(), absl::StrCat(context, ": settings"));
  }

  JOBS_RETURN_IF_ERROR(MigrateSchema(db.get(), path));
  const bool read_only = sqlite3_db_readonly(db.get(), "main") == 1;

  // Readers, for a file the writer can write: WAL lets them read the last
  // commit while the writer writes (a read-only store has no writes to
  // wait for).
  std::vector<SqliteDbPtr> readers;
  if (!in_memory && !read_only) {
    for (int i = 0; i < options.read_connections; ++i) {
      JOBS_ASSIGN_OR_RETURN(
          SqliteDbPtr reader,
          OpenConnection(path, SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_READONLY,
                         options.busy_timeout, context));
      readers.push_back(std::move(reader));
    }
  }
  LOG(INFO) << "Opened job database " << path << " (schema version "
            << CurrentSchemaVersion() << (read_only ? ", read-only" : "")
            << ")";
  Clock* const clock = options.clock != nullptr ? options.clock : RealClock();
  return std::unique_ptr<SqliteJobStore>(
      new SqliteJobStore(std::move(db), std::move(readers), clock, read_only));
}

SqliteJobStore::Reader::Reader(SqliteDbPtr db) : connection(std::move(db)) {}

SqliteJobStore::SqliteJobStore(SqliteDbPtr db, std::vector<SqliteDbPtr> readers,
                               Clock* clock, bool read_only)
    : clock_(clock),
      read_only_(read_only),
      writer_(std::move(db)),
      readers_([&readers] {
        std::vector<std::unique_ptr<Reader>> pool;
        for (SqliteDbPtr& reader : readers) {
          pool.push_back(std::make_unique<Reader>(std::move(reader)));
        }
        return pool;
      }()) {}

SqliteJobStore::~SqliteJobStore() = default;

// ---- Plumbing ----

template <typename ReadFn>
auto SqliteJobStore::WithReadConnection(const ReadFn& read)
    -> decltype(read(std::declval<SqliteConnection&>())) {
  if (readers_.empty()) {
    absl::MutexLock lock(&mu_);
    return read(writer_);
  }
  // A free reader if there is one, else the next in turn, once it is free.
  const size_t start = next_reader_.fetch_add(1, std::memory_order_relaxed);
  Reader* reader = nullptr;
  for (size_t i = 0; i < readers_.size() && reader == nullptr; ++i) {
    Reader* const candidate = readers_[(start + i) % readers_.size()].get();
    if (candidate->mu.TryLock()) reader = candidate;
  }
  if (reader == nullptr) {
    reader = readers_[start % readers_.size()].get();
    reader->mu.Lock();
  }
  auto result = read(reader->connection);
  reader->mu.Unlock();
  return result;
}

absl::Status SqliteJobStore::BeginWriteLocked() {
  if (read_only_) return absl::UnavailableError(kReadOnlyMessage);
  JOBS_ASSIGN_OR_RETURN(sqlite3_stmt * begin, writer_.Cached(kBeginImmediate));
  return Statement(writer_.db(), begin, "starting a write").Run();
}

absl::Status SqliteJobStore::EndLocked(absl::Status status) {
  return EndTransaction(writer_, std::move(status));
}

int64_t SqliteJobStore::NowMicros() {
  return absl::ToUnixMicros(clock_->Now());
}

absl::StatusOr<bool> SqliteJobStore::ExistsLocked(absl::string_view exists_sql,
                                                  int64_t id) {
  JOBS_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, writer_.Cached(exists_sql));
  Statement query(writer_.db(), stmt, "checking a reference");
  query.BindInt64(id);
  return query.Step();
}

// ---- Jobs ----

absl::Status SqliteJobStore::ReadJobRecordLocked(
    absl::string_view field, absl::string_view select_sql, int64_t id,
    google::protobuf::Message* record) {
  JOBS_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, writer_.Cached(select_sql));
  Statement query(writer_.db(), stmt, absl::StrCat("reading ", field));
  query.BindInt64(id);
  JOBS_ASSIGN_OR_RETURN(const bool found, query.Step());
  if (!found) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": record ", id, " does not exist"));
  }
  const absl::string_view bytes = query.BlobView(0);
  if (!record->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::DataLossError(
        absl::StrCat(field, ": stored record ", id, " is unreadable"));
  }
  return absl::OkStatus();
}

absl::Status SqliteJobStore::ReadJobReferencesLocked(
    const JobRow& row, v2::Job* job, const JobRow* stored,
    const v2::Job* stored_records) {
  // Each reference in order; `mutable_record` gives the job's message.
  auto reference =
      [&](absl::string_view field, absl::string_view select_sql,
          std::optional<int64_t> id, std::optional<int64_t> stored_id,
          const google::protobuf::Message& stored_record, auto mutable_record)
          ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    if (!id.has_value()) return absl::OkStatus();
    google::protobuf::Message* record = mutable_record();
    if (stored != nullptr && stored_id == id) {
      record->CopyFrom(stored_record);
      return absl::OkStatus();
    }
    return ReadJobRecordLocked(field, select_sql, *id, record);
  };
  const v2::Job& known =
      stored_records != nullptr ? *stored_records : v2::Job::default_instance();
  const JobRow none;
  const JobRow& old = stored != nullptr ? *stored : none;
  JOBS_RETURN_IF_ERROR(reference("project_id", kSelectProject, row.project_id,
                                 old.project_id, known.project(),
                                 [job] { return job->mutable_project(); }));
  JOBS_RETURN_IF_ERROR(reference(
      "deployment_id", kSelectDeployment, row.deployment_id, old.deployment_id,
      known.deployment(), [job] { return job->mutable_deployment(); }));
  JOBS_RETURN_IF_ERROR(
      reference("source_image_collection_id", kSelectCollectionRecord,
                row.source_image_collection_id, old.source_image_collection_id,
                known.source_image_collection(),
                [job] { return job->mutable_source_image_collection(); }));
  JOBS_RETURN_IF_ERROR(reference(
      "source_image_single_id", kSelectCapture, row.source_image_single_id,
      old.source_image_single_id, known.source_image_single(),
      [job] { return job->mutable_source_image_single(); }));
  JOBS_RETURN_IF_ERROR(reference(
      "pipeline_id", kSelectPipeline, row.pipeline_id, old.pipeline_id,
      known.pipeline(), [job] { return job->mutable_pipeline(); }));
  JOBS_RETURN_IF_ERROR(reference("data_export_id", kSelectDataExport,
                                 row.data_export_id, old.data_export_id,
                                 known.data_export(),
                                 [job] { return job->mutable_data_export(); }));
  return absl::OkStatus();
}

absl::Status SqliteJobStore::InsertLogsLocked(
    int64_t job_id, const std::vector<NewLogLine>& lines, int64_t now,
    int64_t sequence, std::vector<LogLine>* inserted) {
  if (lines.empty()) return absl::OkStatus();
  JOBS_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, writer_.Cached(kInsertLog));
  for (const NewLogLine& line : lines) {
    {
      Statement insert(writer_.db(), stmt,
                       absl::StrCat("appending a log line to job ", job_id));
      insert.BindInt64(job_id)
          .BindInt64(now)
          .BindText(LogLevelName(line.level))
          .BindText(line.message)
          .BindInt64(sequence);
      JOBS_RETURN_IF_ERROR(insert.Run());
    }
    LogLine& stored = inserted->emplace_back();
    stored.id = sqlite3_last_insert_rowid(writer_.db());
    stored.job_id = job_id;
    stored.sequence = sequence;
    stored.created_at = absl::FromUnixMicros(now);
    stored.level = line.level;
    stored.message = line.message;
  }
  return absl::OkStatus();
}

absl::Status SqliteJobStore::InsertStatusChangeLocked(int64_t job_id,
                                                      int64_t sequence,
                                                      v2::JobStatus status,
                                                      int64_t now,
                                                      JobChangeEvent* event) {
  JOBS_ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                        writer_.Cached(kInsertStatusChange));
  Statement insert(writer_.db(), stmt,
                   absl::StrCat("recording the status of job ", job_id));
  insert.BindInt64(job_id)
      .BindInt64(sequence)
      .BindText(v2::JobStatus_Name(status))
      .BindInt64(now);
  JOBS_RETURN_IF_ERROR(insert.Run());
  event->status_change =
      StatusChange{sequence, status, absl::FromUnixMicros(now)};
  return absl::OkStatus();
}

absl::Status SqliteJobStore::Write(const WriteBody& body) {
  if (read_only_) return absl::UnavailableError(kReadOnlyMessage);
  PendingWrite write;
  write.body = &body;
  absl::MutexLock queue_lock(&queue_mu_);
  queue_.push_back(&write);
  struct Turn {
    SqliteJobStore* store;
    PendingWrite* write;
  } turn = {this, &write};
  auto my_turn = [](Turn* turn)
                     ABSL_EXCLUSIVE_LOCKS_REQUIRED(turn->store->queue_mu_) {
                       return turn->write->done || !turn->store->leading_;
                     };
  queue_mu_.Await(absl::Condition(+my_turn, &turn));
  // Done by another writer's batch, or this writer leads batches until it
  // is: each takes every write queued so far, in arrival order. There is
  // one leader at a time, so this write is in the queue until it leads.
  if (write.done) return write.status;
  leading_ = true;
  while (!write.done) {
    std::vector<PendingWrite*> batch;
    while (!queue_.empty() && batch.size() < kMaxBatchWrites) {
      batch.push_back(queue_.front());
      queue_.pop_front();
    }
    queue_mu_.Unlock();
    RunBatch(batch);
    queue_mu_.Lock();
    for (PendingWrite* done : batch) done->done = true;
  }
  leading_ = false;
  return write.status;
}

void SqliteJobStore::RunBatch(const std::vector<PendingWrite*>& batch) {
  absl::MutexLock lock(&mu_);
  absl::Status status = BeginWriteLocked();
  for (PendingWrite* write : batch) {
    if (!status.ok()) {
      write->status = status;
      continue;
    }
    // Each write in a savepoint of its own: a refused one leaves the
    // others' changes.
    absl::Status savepoint = writer_.RunCached(kSavepoint, "starting a write");
    write->status = savepoint.ok() ? (*write->body)(&write->event) : savepoint;
    if (sqlite3_get_autocommit(writer_.db())) {
      // The error ended the transaction (a full disk, an I/O error): what
      // the batch wrote is gone.
      status = write->status.ok() ? absl::InternalError("the write was lost")
                                  : write->status;
      continue;
    }
    if (!write->status.ok()) {
      status = writer_.RunCached(kRollbackToSavepoint, "undoing a write");
    }
    if (status.ok()) status = writer_.RunCached(kReleaseSavepoint, "a write");
  }
  // One commit for the batch; nothing is acknowledged before it.
  if (before_commit_hook_) before_commit_hook_();
  status = EndLocked(status);
  if (status.ok()) ++commits_;
  for (PendingWrite* write : batch) {
    if (!status.ok()) {
      if (write->status.ok()) write->status = status;
      continue;
    }
    if (write->status.ok() && listener_ && write->event.job_id != 0) {
      listener_(write->event);
    }
  }
}

int64_t SqliteJobStore::TEST_commits() {
  absl::MutexLock lock(&mu_);
  return commits_;
}

void SqliteJobStore::TEST_SetBeforeCommitHook(std::function<void()> hook) {
  absl::MutexLock lock(&mu_);
  before_commit_hook_ = std::move(hook);
}

int SqliteJobStore::TEST_queued_writes() {
  absl::MutexLock lock(&queue_mu_);
  return static_cast<int>(queue_.size());
}

absl::StatusOr<v2::Job> SqliteJobStore::CreateJobLocked(
    const v2::Job& job, const std::vector<NewLogLine>& logs,
    const JobLease& lease, JobChangeEvent* event) {
  // Model defaults for what the caller left unset.
  v2::Job input = job;
  if (input.status() == v2::JOB_STATUS_UNSPECIFIED) {
    input.set_status(v2::CREATED);
  }
  if (input.job_type().key().empty()) {
    input.mutable_job_type()->set_key("unknown");
  }
  if (input.dispatch_mode().empty()) input.set_dispatch_mode("internal");

  JOBS_ASSIGN_OR_RETURN(JobRow row, JobRow::FromJob(input));
  v2::Job created;
  JOBS_RETURN_IF_ERROR(ReadJobReferencesLocked(row, &created));

  // Insert the row, then its log lines.
  const int64_t now = NowMicros();
  JOBS_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, writer_.Cached(kInsertJob));
  {
    Statement insert(writer_.db(), stmt, "creating a job");
    row.BindCommon(insert);
    insert.BindInt64(now)
        .BindInt64(now)
        .BindOptionalInt64(row.status == v2::PENDING
                               ? std::optional<int64_t>(now)
                               : std::nullopt)
        .BindOptionalInt64(row.started_at)
        .BindOptionalInt64(row.finished_at)
        .BindBlob(row.progress)
        .BindOptionalBlob(row.result)
        .BindInt64(row.results_stage_final ? 1 : 0);
    BindLease(insert, lease);
    JOBS_RETURN_IF_ERROR(insert.Run());
  }
  const int64_t id = sqlite3_last_insert_rowid(writer_.db());
  // A new job is change 1 (the column's default).
  event->job_id = id;
  event->sequence = 1;
  JOBS_RETURN_IF_ERROR(InsertStatusChangeLocked(id, 1, row.status, now, event));
  JOBS_RETURN_IF_ERROR(InsertLogsLocked(id, logs, now, 1, &event->logs));
  // The job as GetJob will read it, from what was written.
  row.MoveToJob(id, /*sequence=*/1, now, now, &created);
  event->job = std::make_shared<const v2::Job>(created);
  return created;
}

absl::StatusOr<v2::Job> SqliteJobStore::CreateJob(
    const v2::Job& job, const std::vector<NewLogLine>& logs,
    const JobLease& lease) {
  if (lease.attempts < 0) {
    return absl::InvalidArgumentError("attempts: must not be negative");
  }
  absl::StatusOr<v2::Job> created;
  JOBS_RETURN_IF_ERROR(
      Write([&](JobChangeEvent* event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        created = CreateJobLocked(job, logs, lease, event);
        return created.status();
      }));
  return created;
}

absl::StatusOr<v2::Job> SqliteJobStore::GetJob(int64_t id) {
  return WithReadConnection(
      [&](SqliteConnection& conn) { return ReadJob(conn, id); });
}

absl::StatusOr<v2::Job> SqliteJobStore::MutateJobLocked(
    int64_t id, const std::function<absl::Status(JobMutation&)>& mutate,
    JobChangeEvent* event) {
  // Read the job, its lease and its columns as stored, inside the write
  // transaction.
  JobMutation mutation;
  JobRow stored;
  {
    JOBS_ASSIGN_OR_RETURN(
        sqlite3_stmt * stmt,
        writer_.Cached(absl::StrCat(kJobSelectHead, kJobForWriteTail, kJobFrom,
                                    " WHERE j.id = ?")));
    Statement query(writer_.db(), stmt, absl::StrCat("reading job ", id));
    query.BindInt64(id);
    JOBS_ASSIGN_OR_RETURN(const bool found, query.Step());
    if (!found) {
      return absl::NotFoundError(absl::StrCat("job ", id, " not found"));
    }
    JOBS_ASSIGN_OR_RETURN(mutation.job,
                          RowToJob(query, /*include_result=*/true));
    mutation.lease = LeaseFromColumns(query, kColLeaseId);
    stored = JobRow::FromStored(query);
  }
  const v2::JobStatus status_read = mutation.job.status();
  // The callback may change any field; these are kept whatever it does.
  const int64_t created_at = Micros(mutation.job.created_at());
  const int64_t sequence = mutation.job.sequence() + 1;
  // The records as read, for the references the callback leaves alone.
  v2::Job stored_records;
  CopyReferences(mutation.job, &stored_records);
  JOBS_RETURN_IF_ERROR(mutate(mutation));

  // A final job keeps its status unless the caller may leave it.
  if (IsFinal(status_read) && mutation.job.status() != status_read &&
      !mutation.allow_leave_final) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", id, " is ", v2::JobStatus_Name(status_read),
                     "; a final job cannot change status"));
  }
  JOBS_ASSIGN_OR_RETURN(JobRow row, JobRow::FromJob(mutation.job));
  JOBS_RETURN_IF_ERROR(CheckLease(mutation.lease));
  row.SetLease(mutation.lease);
  v2::Job written;
  JOBS_RETURN_IF_ERROR(
      ReadJobReferencesLocked(row, &written, &stored, &stored_records));

  // Write back only the columns that changed (SQLite rewrites every index
  // on a column in the SET list), conditional on the status read.
  const int64_t now = NowMicros();
  const bool enqueued = row.status == v2::PENDING && status_read != v2::PENDING;
  const uint32_t changed = row.ChangedColumns(stored);
  std::string sql = "UPDATE jobs SET ";
  for (int column = 0; column < JobRow::kColumnCount; ++column) {
    if (changed & (uint32_t{1} << column)) {
      absl::StrAppend(&sql, JobRow::kColumnNames[column], " = ?, ");
    }
  }
  absl::StrAppend(&sql, enqueued ? "scheduled_at = ?, " : "",
                  "updated_at = ?, sequence = sequence + 1 "
                  "WHERE id = ? AND status = ?");
  JOBS_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, writer_.CachedQuery(sql));
  {
    Statement update(writer_.db(), stmt, absl::StrCat("writing job ", id));
    for (int column = 0; column < JobRow::kColumnCount; ++column) {
      if (changed & (uint32_t{1} << column)) {
        row.BindColumn(update, static_cast<JobRow::Column>(column));
      }
    }
    if (enqueued) update.BindInt64(now);
    update.BindInt64(now).BindInt64(id).BindText(
        v2::JobStatus_Name(status_read));
    JOBS_RETURN_IF_ERROR(update.Run());
  }
  if (sqlite3_changes(writer_.db()) != 1) {
    // Unreachable while the write lock is held; kept as a backstop.
    return absl::AbortedError(
        absl::StrCat("job ", id, " changed during the write; try again"));
  }
  event->job_id = id;
  event->sequence = sequence;
  if (row.status != status_read) {
    JOBS_RETURN_IF_ERROR(
        InsertStatusChangeLocked(id, sequence, row.status, now, event));
  }
  JOBS_RETURN_IF_ERROR(
      InsertLogsLocked(id, mutation.logs, now, sequence, &event->logs));
  // The job as GetJob will read it, from what was written.
  row.MoveToJob(id, sequence, created_at, now, &written);
  event->job = std::make_shared<const v2::Job>(written);
  return written;
}

absl::StatusOr<v2::Job> SqliteJobStore::MutateJob(
    int64_t id, const std::function<absl::Status(JobMutation&)>& mutate) {
  absl::StatusOr<v2::Job> written;
  JOBS_RETURN_IF_ERROR(
      Write([&](JobChangeEvent* event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        written = MutateJobLocked(id, mutate, event);
        return written.status();
      }));
  return written;
}

absl::Status SqliteJobStore::DeleteJob(int64_t id) {
  return Write([&](JobChangeEvent* event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    event->job_id = id;
    event->deleted = true;
    JOBS_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, writer_.Cached(kDeleteJob));
    Statement remove(writer_.db(), stmt, absl::StrCat("deleting job ", id));
    remove.BindInt64(id);
    JOBS_RETURN_IF_ERROR(remove.Run());
    if (sqlite3_changes(writer_.db()) == 0) {
      return absl::NotFoundError(absl::StrCat("job ", id, " not found"));
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<JobLease> SqliteJobStore::GetLease(int64_t id) {
  return WithReadConnection(
      [&](SqliteConnection& conn) { return ReadLease(conn, id); });
}

// ---- Lists ----

absl::StatusOr<JobPage> SqliteJobStore::ListJobs(const JobQuery& query) {
  JOBS_RETURN_IF_ERROR(CheckPaging(query));
  return WithReadConnection(
      [&](SqliteConnection& conn) -> absl::StatusOr<JobPage> {
        // One read transaction, so the count and the page agree.
        JOBS_RETURN_IF_ERROR(BeginRead(conn));
        absl::StatusOr<JobPage> page = ListJobsIn(conn, query);
        JOBS_RETURN_IF_ERROR(EndTransaction(conn, page.status()));
        return page;
      });
}

absl::StatusOr<std::string> SqliteJobStore::TEST_ExplainListJobs(
    const JobQuery& query) {
  JOBS_RETURN_IF_ERROR(CheckPaging(query));
  const ListSql sql = BuildListSql(query);
  return WithReadConnection(
      [&](SqliteConnection& conn) -> absl::StatusOr<std::string> {
        JOBS_ASSIGN_OR_RETURN(
            SqliteStmtPtr stmt,
            PrepareStatement(conn.db(),
                             absl::StrCat("EXPLAIN QUERY PLAN ",
                                          PageSql(sql, query.include_result)),
                             "preparing the query plan"));
        Statement explain(conn.db(), stmt.get(), "explaining the job list");
        BindParams(explain, sql.params);
        explain.BindInt64(query.limit).BindInt64(query.offset);
        return PlanSteps(explain);
      });
}

absl::StatusOr<std::vector<int64_t>> SqliteJobStore::FindJobIds(
    const JobIdQuery& query) {
  JOBS_RETURN_IF_ERROR(CheckIdLimit(query));
  const IdSql sql = BuildIdSql(query);
  return WithReadConnection(
      [&](SqliteConnection& conn) -> absl::StatusOr<std::vector<int64_t>> {
        JOBS_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, conn.CachedQuery(sql.sql));
        Statement find(conn.db(), stmt, "finding jobs");
        BindParams(find, sql.params);
        find.BindInt64(query.limit);
        std::vector<int64_t> ids;
        while (true) {
          JOBS_ASSIGN_OR_RETURN(const bool row, find.Step());
          if (!row) break;
          ids.push_back(find.Int64(0));
        }
        return ids;
      });
}

absl::StatusOr<std::string> SqliteJobStore::TEST_ExplainFindJobIds(
    const JobIdQuery& query) {
  JOBS_RETURN_IF_ERROR(CheckIdLimit(query));
  const IdSql sql = BuildIdSql(query);
  return WithReadConnection(
      [&](SqliteConnection& conn) -> absl::StatusOr<std::string> {
        JOBS_ASSIGN_OR_RETURN(
            SqliteStmtPtr stmt,
            PrepareStatement(conn.db(),
                             absl::StrCat("EXPLAIN QUERY PLAN ", sql.sql),
                             "preparing the query plan"));
        Statement explain(conn.db(), stmt.get(), "explaining the job id query");
        BindParams(explain, sql.params);
        explain.BindInt64(query.limit);
        return PlanSteps(explain);
      });
}

// ---- Log lines ----

absl::Status SqliteJobStore::AppendLogs(int64_t job_id,
                                        const std::vector<NewLogLine>& lines) {
  return Write([&](JobChangeEvent* event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    event->job_id = job_id;
    JOBS_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, writer_.Cached(kBumpSequence));
    Statement bump(writer_.db(), stmt,
                   absl::StrCat("appending to the log of job ", job_id));
    bump.BindInt64(job_id);
    JOBS_ASSIGN_OR_RETURN(const bool found, bump.Step());
    if (!found) {
      return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
    }
    event->sequence = bump.Int64(0);
    // A RETURNING statement completes its write when stepped to the end.
    JOBS_RETURN_IF_ERROR(bump.Step().status());
    return InsertLogsLocked(job_id, lines, NowMicros(), event->sequence,
                            &event->logs);
  });
}

absl::StatusOr<std::vector<LogLine>> SqliteJobStore::ReadLogs(int64_t job_id,
                                                              int limit) {
  if (limit <= 0) return std::vector<LogLine>();
  return WithReadConnection(
      [&](SqliteConnection& conn) -> absl::StatusOr<std::vector<LogLine>> {
        std::vector<LogLine> lines;
        JOBS_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, conn.Cached(kReadLogs));
        Statement query(conn.db(), stmt,
                        absl::StrCat("reading the log of job ", job_id));
        query.BindInt64(job_id).BindInt64(limit);
        while (true) {
          JOBS_ASSIGN_OR_RETURN(const bool row, query.Step());
          if (!row) break;
          LogLine line;
          line.id = query.Int64(0);
          line.job_id = query.Int64(1);
          line.created_at = absl::FromUnixMicros(query.Int64(2));
          line.level = ParseLogLevel(query.Text(3));
          line.message = query.Text(4);
          line.sequence = query.Int64(5);
          lines.push_back(std::move(line));
        }
        return lines;
      });
}

void SqliteJobStore::SetChangeListener(JobChangeListener listener) {
  absl::MutexLock lock(&mu_);
  listener_ = std::move(listener);
}

absl::StatusOr<JobChanges> SqliteJobStore::ReadChanges(int64_t id,
                                                       int64_t after_sequence,
                                                       int max_logs) {
  return WithReadConnection(
      [&](SqliteConnection& conn) -> absl::StatusOr<JobChanges> {
        // One snapshot for the job, its statuses and its lines.
        JOBS_RETURN_IF_ERROR(BeginRead(conn));
        absl::StatusOr<JobChanges> changes =
            ReadChangesIn(conn, id, after_sequence, max_logs);
        JOBS_RETURN_IF_ERROR(EndTransaction(conn, changes.status()));
        return changes;
      });
}

// ---- Reference records ----

absl::StatusOr<v2::ImportCatalogResponse> SqliteJobStore::ImportCatalogLocked(
    const v2::Catalog& catalog) {
  v2::ImportCatalogResponse counts;
  // Runs one upsert statement with its parameters bound by `bind`.
  auto upsert = [&](const char* sql, absl::string_view where,
                    const std::function<void(Statement&)>& bind)
                    ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    JOBS_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, writer_.Cached(sql));
    Statement statement(writer_.db(), stmt, absl::StrCat("writing ", where));
    bind(statement);
    return statement.Run();
  };
  // INVALID_ARGUMENT unless record `id` exists.
  auto require = [&](const char* exists_sql, absl::string_view field,
                     absl::string_view kind, int64_t id)
                     ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    JOBS_ASSIGN_OR_RETURN(const bool exists, ExistsLocked(exists_sql, id));
    if (!exists) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": ", kind, " ", id, " does not exist"));
    }
    return absl::OkStatus();
  };

  for (int i = 0; i < catalog.projects_size(); ++i) {
    const std::string where = absl::StrCat("projects[", i, "]");
    v2::Project record = catalog.projects(i);
    record.clear_details();
    record.clear_user_permissions();
    JOBS_RETURN_IF_ERROR(CheckRecordId(where, record.id()));
    JOBS_RETURN_IF_ERROR(CheckNotEmpty(where, "name", record.name()));
    JOBS_RETURN_IF_ERROR(upsert(kUpsertProject, where, [&](Statement& s) {
      s.BindInt64(record.id())
          .BindText(record.name())
          .BindBlob(record.SerializeAsString());
    }));
    counts.set_projects(counts.projects() + 1);
  }

  for (int i = 0; i < catalog.deployments_size(); ++i) {
    const std::string where = absl::StrCat("deployments[", i, "]");
    v2::Deployment record = catalog.deployments(i);
    record.clear_details();
    record.clear_user_permissions();
    JOBS_RETURN_IF_ERROR(CheckRecordId(where, record.id()));
    JOBS_RETURN_IF_ERROR(CheckNotEmpty(where, "name", record.name()));
    JOBS_RETURN_IF_ERROR(require(kProjectExists,
                                 absl::StrCat(where, ".project_id"), "project",
                                 record.project_id()));
    JOBS_RETURN_IF_ERROR(upsert(kUpsertDeployment, where, [&](Statement& s) {
      s.BindInt64(record.id())
          .BindInt64(record.project_id())
          .BindText(record.name())
          .BindBlob(record.SerializeAsString());
    }));
    counts.set_deployments(counts.deployments() + 1);
  }

  for (int i = 0; i < catalog.pipelines_size(); ++i) {
    const std::string where = absl::StrCat("pipelines[", i, "]");
    v2::Pipeline record = catalog.pipelines(i);
    record.clear_details();
    record.clear_user_permissions();
    JOBS_RETURN_IF_ERROR(CheckRecordId(where, record.id()));
    JOBS_RETURN_IF_ERROR(CheckNotEmpty(where, "name", record.name()));
    JOBS_RETURN_IF_ERROR(CheckNotEmpty(where, "slug", record.slug()));
    JOBS_RETURN_IF_ERROR(upsert(kUpsertPipeline, where, [&](Statement& s) {
      s.BindInt64(record.id())
          .BindText(record.slug())
          .BindText(record.name())
          .BindBlob(record.SerializeAsString());
    }));
    counts.set_pipelines(counts.pipelines() + 1);
  }

  for (int i = 0; i < catalog.capture_collections_size(); ++i) {
    const std::string where = absl::StrCat("capture_collections[", i, "]");
    v2::CaptureCollection record = catalog.capture_collections(i);
    record.clear_details();
    record.clear_user_permissions();
    record.clear_capture_count();  // Counted when read.
    JOBS_RETURN_IF_ERROR(CheckRecordId(where, record.id()));
    JOBS_RETURN_IF_ERROR(CheckNotEmpty(where, "name", record.name()));
    if (!record.method().empty() && !IsSamplingMethod(record.method())) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ".method: unknown sampling method \"", record.method(), "\""));
    }
    JOBS_RETURN_IF_ERROR(require(kProjectExists,
                                 absl::StrCat(where, ".project_id"), "project",
                                 record.project_id()));
    JOBS_RETURN_IF_ERROR(upsert(kUpsertCollection, where, [&](Statement& s) {
      s.BindInt64(record.id())
          .BindInt64(record.project_id())
          .BindText(record.name())
          .BindText(record.method())
          .BindBlob(record.SerializeAsString());
    }));
    counts.set_capture_collections(counts.capture_collections() + 1);
  }

  for (int i = 0; i < catalog.captures_size(); ++i) {
    const std::string where = absl::StrCat("captures[", i, "]");
    v2::Capture record = catalog.captures(i);
    record.clear_details();
    record.clear_user_permissions();
    JOBS_RETURN_IF_ERROR(CheckRecordId(where, record.id()));
    JOBS_RETURN_IF_ERROR(
        UpsertCaptureLocked(where, std::move(record)).status());
    counts.set_captures(counts.captures() + 1);
  }

  for (int i = 0; i < catalog.data_exports_size(); ++i) {
    const std::string where = absl::StrCat("data_exports[", i, "]");
    const v2::DataExport& record = catalog.data_exports(i);
    JOBS_RETURN_IF_ERROR(CheckRecordId(where, record.id()));
    JOBS_RETURN_IF_ERROR(require(kProjectExists,
                                 absl::StrCat(where, ".project"), "project",
                                 record.project()));
    JOBS_RETURN_IF_ERROR(upsert(kUpsertDataExport, where, [&](Statement& s) {
      s.BindInt64(record.id())
          .BindInt64(record.project())
          .BindText(record.format())
          .BindBlob(record.SerializeAsString());
    }));
    counts.set_data_exports(counts.data_exports() + 1);
  }
  return counts;
}

absl::StatusOr<v2::ImportCatalogResponse> SqliteJobStore::ImportCatalog(
    const v2::Catalog& catalog) {
  absl::StatusOr<v2::ImportCatalogResponse> counts;
  JOBS_RETURN_IF_ERROR(
      Write([&](JobChangeEvent*) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        counts = ImportCatalogLocked(catalog);
        return counts.status();
      }));
  return counts;
}

absl::StatusOr<int64_t> SqliteJobStore::UpsertCaptureLocked(
    absl::string_view where, v2::Capture record) {
  if (record.deployment_id() != 0) {
    JOBS_ASSIGN_OR_RETURN(
        const bool exists,
        ExistsLocked(kDeploymentExists, record.deployment_id()));
    if (!exists) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ".deployment_id: deployment ",
                       record.deployment_id(), " does not exist"));
    }
  }

  // The capture already stored with this path, if any.
  std::optional<std::string> path;
  std::optional<int64_t> path_owner;
  if (!record.path().empty()) {
    path = record.path();
    JOBS_ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                          writer_.Cached(kCaptureIdByPath));
    Statement query(writer_.db(), stmt, absl::StrCat("reading ", where));
    query.BindText(*path);
    JOBS_ASSIGN_OR_RETURN(const bool found, query.Step());
    if (found) path_owner = query.Int64(0);
  }
  if (record.id() == 0 && path_owner.has_value()) record.set_id(*path_owner);
  if (path_owner.has_value() && *path_owner != record.id()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ".path: \"", *path,
                     "\" is already the path of capture ", *path_owner));
  }

  // Write it. A new capture gets its id from the insert, then its record
  // is rewritten to hold the id.
  const bool is_new = record.id() == 0;
  {
    JOBS_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, writer_.Cached(kUpsertCapture));
    Statement upsert(writer_.db(), stmt, absl::StrCat("writing ", where));
    upsert.BindOptionalInt64(ReferenceId(true, record.id()))
        .BindOptionalInt64(ReferenceId(true, record.deployment_id()))
        .BindOptionalText(path)
        .BindBlob(record.SerializeAsString());
    JOBS_RETURN_IF_ERROR(upsert.Run());
  }
  if (!is_new) return record.id();
  record.set_id(sqlite3_last_insert_rowid(writer_.db()));
  JOBS_ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                        writer_.Cached(kUpdateCaptureRecord));
  Statement update(writer_.db(), stmt, absl::StrCat("writing ", where));
  update.BindBlob(record.SerializeAsString()).BindInt64(record.id());
  JOBS_RETURN_IF_ERROR(update.Run());
  return record.id();
}

absl::StatusOr<int64_t> SqliteJobStore::SetCollectionCapturesLocked(
    int64_t collection_id, const std::vector<v2::Capture>& captures) {
  JOBS_ASSIGN_OR_RETURN(const bool exists,
                        ExistsLocked(kCollectionExists, collection_id));
  if (!exists) {
    return absl::NotFoundError(
        absl::StrCat("capture collection ", collection_id, " not found"));
  }

  // Upsert the captures, in order: the first bad one ends the call.
  std::vector<int64_t> member_ids;
  member_ids.reserve(captures.size());
  for (size_t i = 0; i < captures.size(); ++i) {
    const std::string where = absl::StrCat("captures[", i, "]");
    v2::Capture record = captures[i];
    record.clear_details();
    record.clear_user_permissions();
    if (record.id() < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ".id: must be positive, or 0 for a new capture (got ",
          record.id(), ")"));
    }
    if (record.id() == 0 && record.path().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ".path: a capture without an id needs a path"));
    }
    JOBS_ASSIGN_OR_RETURN(const int64_t id,
                          UpsertCaptureLocked(where, std::move(record)));
    member_ids.push_back(id);
  }

  // Replace the memberships.
  const std::string context =
      absl::StrCat("writing the members of capture collection ", collection_id);
  {
    JOBS_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, writer_.Cached(kDeleteMembers));
    Statement remove(writer_.db(), stmt, context);
    remove.BindInt64(collection_id);
    JOBS_RETURN_IF_ERROR(remove.Run());
  }
  JOBS_ASSIGN_OR_RETURN(sqlite3_stmt * insert_stmt,
                        writer_.Cached(kInsertMember));
  for (const int64_t capture_id : member_ids) {
    Statement insert(writer_.db(), insert_stmt, context);
    insert.BindInt64(collection_id).BindInt64(capture_id);
    JOBS_RETURN_IF_ERROR(insert.Run());
  }
  JOBS_ASSIGN_OR_RETURN(sqlite3_stmt * count_stmt,
                        writer_.Cached(kCountMembers));
  Statement count(writer_.db(), count_stmt, context);
  count.BindInt64(collection_id);
  JOBS_ASSIGN_OR_RETURN(const bool row, count.Step());
  return row ? count.Int64(0) : 0;
}

absl::StatusOr<int64_t> SqliteJobStore::SetCollectionCaptures(
    int64_t collection_id, const std::vector<v2::Capture>& captures) {
  absl::StatusOr<int64_t> count;
  JOBS_RETURN_IF_ERROR(
      Write([&](JobChangeEvent*) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        count = SetCollectionCapturesLocked(collection_id, captures);
        return count.status();
      }));
  return count;
}

absl::StatusOr<std::vector<int64_t>> SqliteJobStore::ListCollectionCaptureIds(
    int64_t collection_id) {
  return WithReadConnection(
      [&](SqliteConnection& conn) -> absl::StatusOr<std::vector<int64_t>> {
        JOBS_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, conn.Cached(kListMembers));
        Statement query(
            conn.db(), stmt,
            absl::StrCat("reading the members of capture collection ",
                         collection_id));
        query.BindInt64(collection_id);
        std::vector<int64_t> ids;
        while (true) {
          JOBS_ASSIGN_OR_RETURN(const bool row, query.Step());
          if (!row) break;
          ids.push_back(query.Int64(0));
        }
        return ids;
      });
}

template <typename Record>
absl::StatusOr<Record> SqliteJobStore::GetRecord(absl::string_view select_sql,
                                                 absl::string_view kind,
                                                 int64_t id) {
  JOBS_ASSIGN_OR_RETURN(const std::string blob,
                        WithReadConnection([&](SqliteConnection& conn) {
                          return ReadRecord(conn, select_sql, kind, id);
                        }));
  Record record;
  if (!record.ParseFromString(blob)) {
    return absl::DataLossError(
        absl::StrCat("stored ", kind, " ", id, " is unreadable"));
  }
  return record;
}

absl::StatusOr<v2::Project> SqliteJobStore::GetProject(int64_t id) {
  return GetRecord<v2::Project>(kSelectProject, "project", id);
}

absl::StatusOr<v2::Deployment> SqliteJobStore::GetDeployment(int64_t id) {
  return GetRecord<v2::Deployment>(kSelectDeployment, "deployment", id);
}

absl::StatusOr<v2::CaptureCollection> SqliteJobStore::GetCaptureCollection(
    int64_t id) {
  return WithReadConnection(
      [&](SqliteConnection& conn) -> absl::StatusOr<v2::CaptureCollection> {
        JOBS_ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                              conn.Cached(kSelectCollection));
        Statement query(conn.db(), stmt,
                        absl::StrCat("reading capture collection ", id));
        query.BindInt64(id);
        JOBS_ASSIGN_OR_RETURN(const bool found, query.Step());
        if (!found) {
          return absl::NotFoundError(
              absl::StrCat("capture collection ", id, " not found"));
        }
        v2::CaptureCollection record;
        if (!record.ParseFromString(query.Blob(0))) {
          return absl::DataLossError(
              absl::StrCat("stored capture collection ", id, " is unreadable"));
        }
        record.set_capture_count(query.Int64(1));
        return record;
      });
}

absl::StatusOr<v2::Capture> SqliteJobStore::GetCapture(int64_t id) {
  return GetRecord<v2::Capture>(kSelectCapture, "capture", id);
}

absl::StatusOr<v2::Pipeline> SqliteJobStore::GetPipeline(int64_t id) {
  return GetRecord<v2::Pipeline>(kSelectPipeline, "pipeline", id);
}

absl::StatusOr<v2::DataExport> SqliteJobStore::GetDataExport(int64_t id) {
  return GetRecord<v2::DataExport>(kSelectDataExport, "data export", id);
}

}  // namespace jobline
