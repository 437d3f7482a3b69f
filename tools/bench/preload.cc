// preload: fills a new database with many realistic jobs, fast, for the
// benchmarks of a large store (tools/benchmark).
//
//   preload --db=NEW_FILE --jobs=N [--seed_catalog=tools/demo-catalog.json]
//       [--projects=6] [--days=365] [--jobs_per_transaction=20000]
//       [--seed=1]
//
// Makes NEW_FILE through Jobline's store with the catalogue of
// --seed_catalog plus --projects generated projects (each with two
// stations, two capture collections and a data export), then writes N jobs
// with plain SQL through the real schema, in transactions of
// --jobs_per_transaction jobs. The jobs look like a service's history of
// --days days, oldest first:
//   - every job type but "unknown", over every project, with the
//     references its type has (pipeline and collection, station, export);
//   - statuses mixed: mostly SUCCESS, then CREATED, FAILURE and REVOKED;
//     among the newest 1% also PENDING (in the workers' queue) and STARTED
//     (leased by a worker for another hour), updated just now, so the
//     reaper and the lease sweep leave them alone;
//   - progress stages with parameters as the type's work reports them,
//     errors for failed jobs, a result for finished exports;
//   - the status-change rows and log lines of each step (a job that ran has
//     four or five lines), with consistent change sequences.
// The same --seed gives the same jobs. The load runs with synchronous=OFF
// (a crash leaves a file to delete, not a database) and ends with a WAL
// checkpoint, so job_server opens a database like any other. Prints one
// JSON line:
//
//   {"jobs":N,"status_changes":...,"log_lines":...,"by_status":{...},
//    "seconds":...,"bytes":...}
//
// Exit status: 0 on success, 1 when a write failed, 2 for a bad flag.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/catalog_file.h"
#include "gflags/gflags.h"
#include "glog/logging.h"
#include "google/protobuf/struct.pb.h"
#include "jobline/v2/jobs.pb.h"
#include "nlohmann/json.hpp"
#include "storage/status_macros.h"
#include "tools/bench/bench_db.h"

DEFINE_string(db, "", "The database to make; must not exist.");
DEFINE_int64(jobs, 10000, "Jobs to write.");
DEFINE_string(seed_catalog, "tools/demo-catalog.json",
              "Catalogue (JSON) imported first; empty for none.");
DEFINE_int32(projects, 6, "Projects generated beside the catalogue's.");
DEFINE_int32(days, 365, "Days of history the jobs' times spread over.");
DEFINE_int32(jobs_per_transaction, 20000, "Jobs written per transaction.");
DEFINE_uint64(seed, 1, "Seed of the random choices.");

namespace jobline {
namespace bench {
namespace {

constexpr int64_t kMicrosPerSecond = 1000000;

// Ids of the generated records start here, clear of the demo catalogue's.
constexpr int64_t kFirstProjectId = 201;
constexpr int64_t kFirstDeploymentId = 2001;
constexpr int64_t kFirstCollectionId = 3001;
constexpr int64_t kFirstExportId = 4001;
constexpr int64_t kFirstPipelineId = 301;

// The reference records of one project that jobs can name.
struct ProjectRefs {
  int64_t id = 0;
  std::vector<int64_t> deployments;
  std::vector<std::pair<int64_t, std::string>> collections;  // id, name
  std::vector<int64_t> exports;
};

struct Fixture {
  std::vector<ProjectRefs> projects;
  std::vector<std::pair<int64_t, std::string>> pipelines;  // id, name
};

// Adds the generated projects to `catalog`, then lists what every project
// of it has (a project without a station, a collection or an export gets
// no jobs of the types that need one).
Fixture AddGeneratedRecords(int projects, v2::Catalog& catalog) {
  for (int i = 0; i < projects; ++i) {
    v2::Project* project = catalog.add_projects();
    project->set_id(kFirstProjectId + i);
    project->set_name(absl::StrCat("Preloaded project ", i + 1));
    for (int k = 0; k < 2; ++k) {
      v2::Deployment* deployment = catalog.add_deployments();
      deployment->set_id(kFirstDeploymentId + 2 * i + k);
      deployment->set_project_id(project->id());
      deployment->set_name(
          absl::StrCat("Station ", k + 1, " of project ", i + 1));
      v2::CaptureCollection* collection = catalog.add_capture_collections();
      collection->set_id(kFirstCollectionId + 2 * i + k);
      collection->set_project_id(project->id());
      collection->set_name(k == 0 ? "Random 500" : "All captures");
      collection->set_method(k == 0 ? "random" : "full");
    }
    v2::DataExport* data_export = catalog.add_data_exports();
    data_export->set_id(kFirstExportId + i);
    data_export->set_project(project->id());
    data_export->set_format("occurrences_simple_csv");
  }
  for (int i = 0; i < 2; ++i) {
    v2::Pipeline* pipeline = catalog.add_pipelines();
    pipeline->set_id(kFirstPipelineId + i);
    pipeline->set_slug(absl::StrCat("preloaded-classifier-", i + 1));
    pipeline->set_name(absl::StrCat("Preloaded classifier ", i + 1));
    pipeline->set_version(1);
  }

  Fixture fixture;
  std::map<int64_t, ProjectRefs> by_id;
  for (const v2::Project& project : catalog.projects()) {
    by_id[project.id()].id = project.id();
  }
  for (const v2::Deployment& deployment : catalog.deployments()) {
    by_id[deployment.project_id()].deployments.push_back(deployment.id());
  }
  for (const v2::CaptureCollection& collection :
       catalog.capture_collections()) {
    by_id[collection.project_id()].collections.emplace_back(collection.id(),
                                                            collection.name());
  }
  for (const v2::DataExport& data_export : catalog.data_exports()) {
    by_id[data_export.project()].exports.push_back(data_export.id());
  }
  for (auto& [id, refs] : by_id) {
    if (refs.id != 0) fixture.projects.push_back(std::move(refs));
  }
  for (const v2::Pipeline& pipeline : catalog.pipelines()) {
    fixture.pipelines.emplace_back(pipeline.id(), pipeline.name());
  }
  return fixture;
}

// One type's stages: key, name and the parameters its work reports.
struct StageSpec {
  const char* key;
  const char* name;
  std::vector<std::pair<const char*, const char*>> params;  // key, name
};

struct TypeSpec {
  const char* key;
  int weight;  // Relative share of the jobs.
  std::vector<StageSpec> stages;
};

const std::vector<TypeSpec>& Types() {
  static const std::vector<TypeSpec>* const types = new std::vector<TypeSpec>{
      {"ml",
       40,
       {{"collect", "Collect", {{"total_images", "Total Images"}}},
        {"process",
         "Process",
         {{"processed", "Processed"}, {"failed", "Failed"}}},
        {"results",
         "Results",
         {{"detections", "Detections"},
          {"classifications", "Classifications"},
          {"captures", "Captures"}}}}},
      {"populate_captures_collection",
       20,
       {{"populate_captures_collection",
         "Populate captures collection",
         {{"captures_added", "Captures added"}}}}},
      {"data_storage_sync",
       15,
       {{"data_storage_sync",
         "Data storage sync",
         {{"total_files", "Total files found"},
          {"captures_added", "Captures added"}}}}},
      {"data_export",
       10,
       {{"exporting_data",
         "Exporting data",
         {{"exported_records", "Exported records"}}}}},
      {"regroup_events",
       8,
       {{"regroup_events", "Regroup sessions", {{"sessions", "Sessions"}}}}},
      {"post_processing",
       7,
       {{"post_processing", "Post Processing", {{"processed", "Processed"}}}}},
  };
  return *types;
}

bool IsFinal(v2::JobStatus status) {
  return status == v2::SUCCESS || status == v2::FAILURE ||
         status == v2::REVOKED;
}

// The progress document of a job of `type` in `status`: stages before
// `stop_stage` done, that one in `status` (for a run that ended or is
// running), the rest not begun. `size` scales the parameter values.
v2::JobProgress MakeProgress(const TypeSpec& type, v2::JobStatus status,
                             int stop_stage, int64_t size) {
  v2::JobProgress progress;
  progress.mutable_summary()->set_status(status);
  if (status == v2::CREATED) return progress;
  const int stages = static_cast<int>(type.stages.size());
  double done = 0;
  for (int i = 0; i < stages; ++i) {
    const StageSpec& spec = type.stages[i];
    v2::ProgressStage* stage = progress.add_stages();
    stage->set_key(spec.key);
    stage->set_name(spec.name);
    v2::JobStatus stage_status = v2::CREATED;
    double stage_progress = 0;
    if (status == v2::SUCCESS || i < stop_stage) {
      stage_status = v2::SUCCESS;
      stage_progress = 1;
    } else if (i == stop_stage && status != v2::PENDING) {
      stage_status = status;
      stage_progress = 0.4;
    }
    stage->set_status(stage_status);
    stage->set_progress(stage_progress);
    done += stage_progress;
    for (const auto& [key, name] : spec.params) {
      v2::StageParam* param = stage->add_params();
      param->set_key(key);
      param->set_name(name);
      param->set_category("default");
      param->mutable_value()->set_number_value(static_cast<double>(size) *
                                               stage_progress);
    }
  }
  progress.mutable_summary()->set_progress(done / stages);
  if (status == v2::FAILURE) {
    progress.add_errors(absl::StrCat(type.stages[stop_stage].name,
                                     " failed: the source could not be read"));
  }
  return progress;
}

// The store's insert of a job (bench_db.h) with one more column, the
// sequence of the job's last change, which the store sets by later writes.
const std::string& InsertPreloadedJobSql() {
  static const std::string* const sql = [] {
    std::string text = kInsertJobSql;
    const size_t columns_end = text.find(") VALUES (");
    text.insert(columns_end, ", sequence");
    text.insert(text.size() - 1, ", ?");
    return new std::string(text);
  }();
  return *sql;
}

// A progress document as the store keeps it.
struct ProgressText {
  std::string bytes;  // the serialized JobProgress
  // The store's results_stage_final column: a final stage keyed "results".
  bool results_stage_final = false;
};

// True if `progress` has a final stage keyed "results".
bool ResultsStageFinal(const v2::JobProgress& progress) {
  for (const v2::ProgressStage& stage : progress.stages()) {
    if (stage.key() == std::string("results") && IsFinal(stage.status())) {
      return true;
    }
  }
  return false;
}

class Preloader {
 public:
  Preloader(sqlite3* db, Fixture fixture, uint64_t seed)
      : db_(db), fixture_(std::move(fixture)), random_(seed) {}

  absl::Status Prepare() {
    JOBS_ASSIGN_OR_RETURN(begin_, bench::Prepare(db_, "BEGIN"));
    JOBS_ASSIGN_OR_RETURN(commit_, bench::Prepare(db_, "COMMIT"));
    JOBS_ASSIGN_OR_RETURN(insert_job_,
                          bench::Prepare(db_, InsertPreloadedJobSql()));
    JOBS_ASSIGN_OR_RETURN(insert_change_,
                          bench::Prepare(db_, kInsertStatusChangeSql));
    JOBS_ASSIGN_OR_RETURN(insert_log_, bench::Prepare(db_, kInsertLogSql));
    // The projects each type can use; a type that has none gets no jobs.
    for (const TypeSpec& type : Types()) {
      std::vector<const ProjectRefs*> eligible;
      for (const ProjectRefs& project : fixture_.projects) {
        if (CanRun(type, project)) eligible.push_back(&project);
      }
      if (eligible.empty()) continue;
      choices_.push_back({&type, std::move(eligible)});
      total_weight_ += type.weight;
    }
    if (choices_.empty()) {
      return absl::InvalidArgumentError(
          "no project has the records any job type needs");
    }
    return absl::OkStatus();
  }

  // Writes `count` jobs created between `first` and `now` (microseconds).
  absl::Status Run(int64_t count, int per_transaction, int64_t first,
                   int64_t now) {
    const int64_t newest = count - std::max<int64_t>(1, count / 100);
    for (int64_t i = 0; i < count; ++i) {
      if (i % per_transaction == 0) {
        JOBS_RETURN_IF_ERROR(RunAndReset(db_, begin_.get(), "beginning"));
      }
      const int64_t created = first + (now - first) / count * i;
      JOBS_RETURN_IF_ERROR(WriteJob(created, now, i >= newest));
      if ((i + 1) % per_transaction == 0 || i + 1 == count) {
        JOBS_RETURN_IF_ERROR(RunAndReset(db_, commit_.get(), "committing"));
      }
    }
    return absl::OkStatus();
  }

  // Finalizes the statements (an index cannot be made while they are
  // open on its table).
  void Finalize() {
    begin_.reset();
    commit_.reset();
    insert_job_.reset();
    insert_change_.reset();
    insert_log_.reset();
  }

  int64_t status_changes() const { return status_changes_; }
  int64_t log_lines() const { return log_lines_; }
  const std::map<std::string, int64_t>& by_status() const { return by_status_; }

 private:
  int64_t Uniform(int64_t low, int64_t high) {
    return std::uniform_int_distribution<int64_t>(low, high)(random_);
  }
  template <typename T>
  const T& Pick(const std::vector<T>& items) {
    return items[Uniform(0, static_cast<int64_t>(items.size()) - 1)];
  }

  // Whether `project` has the records a job of `type` refers to.
  static bool CanRun(const TypeSpec& type, const ProjectRefs& project) {
    const std::string key = type.key;
    if (key == "data_export") return !project.exports.empty();
    if (key == "data_storage_sync" || key == "regroup_events") {
      return !project.deployments.empty();
    }
    return !project.collections.empty();
  }

  // A job type, by weight, and one of the projects it can use.
  struct Choice {
    const TypeSpec* type;
    std::vector<const ProjectRefs*> projects;
  };
  std::pair<const TypeSpec*, const ProjectRefs*> PickTypeAndProject() {
    int64_t ticket = Uniform(0, total_weight_ - 1);
    for (const Choice& choice : choices_) {
      if (ticket < choice.type->weight) {
        return {choice.type, Pick(choice.projects)};
      }
      ticket -= choice.type->weight;
    }
    return {choices_.front().type, Pick(choices_.front().projects)};
  }

  // A status of history (final or never run), or, for the newest jobs,
  // sometimes a running one.
  v2::JobStatus PickStatus(bool newest) {
    const int64_t percent = Uniform(0, 99);
    if (newest && percent < 30) return percent < 15 ? v2::PENDING : v2::STARTED;
    if (percent < 64) return v2::SUCCESS;
    if (percent < 78) return v2::CREATED;
    if (percent < 91) return v2::FAILURE;
    return v2::REVOKED;
  }

  // The progress of a combination, serialized once and then reused.
  const ProgressText& Progress(const TypeSpec& type, v2::JobStatus status,
                               int stop_stage, int64_t size) {
    const std::string key =
        absl::StrCat(type.key, "/", status, "/", stop_stage, "/", size);
    auto it = progress_.find(key);
    if (it == progress_.end()) {
      const v2::JobProgress progress =
          MakeProgress(type, status, stop_stage, size);
      ProgressText text;
      text.bytes = progress.SerializeAsString();
      text.results_stage_final = ResultsStageFinal(progress);
      it = progress_.emplace(key, std::move(text)).first;
    }
    return it->second;
  }

  absl::Status AddStatusChange(int64_t job_id, int64_t sequence,
                               v2::JobStatus status, int64_t at) {
    sqlite3_stmt* stmt = insert_change_.get();
    sqlite3_bind_int64(stmt, 1, job_id);
    sqlite3_bind_int64(stmt, 2, sequence);
    sqlite3_bind_text(stmt, 3, v2::JobStatus_Name(status).c_str(), -1,
                      SQLITE_TRANSIENT);
    sqlite3_bind_int64(stmt, 4, at);
    ++status_changes_;
    return RunAndReset(db_, stmt, "inserting a status change");
  }

  absl::Status AddLog(int64_t job_id, int64_t sequence, int64_t at,
                      const char* level, const std::string& message) {
    sqlite3_stmt* stmt = insert_log_.get();
    sqlite3_bind_int64(stmt, 1, job_id);
    sqlite3_bind_int64(stmt, 2, at);
    sqlite3_bind_text(stmt, 3, level, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 4, message.data(), static_cast<int>(message.size()),
                      SQLITE_TRANSIENT);
    sqlite3_bind_int64(stmt, 5, sequence);
    ++log_lines_;
    return RunAndReset(db_, stmt, "inserting a log line");
  }

  absl::Status WriteJob(int64_t created, int64_t now, bool newest) {
    // What the job is.
    const auto [type, project] = PickTypeAndProject();
    const std::string type_key = type->key;
    int64_t deployment = 0, collection = 0, pipeline = 0, data_export = 0;
    std::string name;
    if (type_key == "data_export") {
      data_export = Pick(project->exports);
      name = absl::StrCat("Export occurrences of project ", project->id);
    } else if (type_key == "data_storage_sync") {
      deployment = Pick(project->deployments);
      name = absl::StrCat("Sync data storage of station ", deployment);
    } else if (type_key == "regroup_events") {
      deployment = Pick(project->deployments);
      name = absl::StrCat("Regroup sessions of station ", deployment);
    } else {
      const auto& [collection_id, collection_name] = Pick(project->collections);
      collection = collection_id;
      if (type_key == "ml") {
        const auto& [pipeline_id, pipeline_name] = Pick(fixture_.pipelines);
        pipeline = pipeline_id;
        name = absl::StrCat("Process ", collection_name, " (", collection_id,
                            ") with ", pipeline_name);
      } else if (type_key == "populate_captures_collection") {
        name = absl::StrCat("Populate captures for collection ", collection_id);
      } else {
        name = absl::StrCat("Post-process collection ", collection_id);
      }
    }

    // Its run.
    const v2::JobStatus status = PickStatus(newest);
    ++by_status_[v2::JobStatus_Name(status)];
    const bool ran = status != v2::CREATED;
    const int stages = static_cast<int>(type->stages.size());
    const int stop_stage = status == v2::SUCCESS
                               ? stages
                               : static_cast<int>(Uniform(0, stages - 1));
    const int64_t size = int64_t{100} << Uniform(0, 6);  // 100 .. 6400
    // created <= scheduled <= started <= finished <= now.
    const int64_t scheduled =
        std::min(now, created + Uniform(0, 2) * kMicrosPerSecond);
    const int64_t started =
        std::min(now, scheduled + Uniform(1, 30) * kMicrosPerSecond);
    const int64_t finished =
        std::min(now, started + Uniform(2, 3600) * kMicrosPerSecond);
    int64_t updated = created;
    if (IsFinal(status)) updated = finished;
    // A running job was heard from just now (see the file comment).
    if (status == v2::PENDING || status == v2::STARTED) updated = now;
    const ProgressText& progress = Progress(*type, status, stop_stage, size);
    // The history written below: created (1), run (2), started (3),
    // progress (4), ended (5); the row keeps the last change's number.
    int64_t sequence = 1;
    if (IsFinal(status)) {
      sequence = 5;
    } else if (status == v2::STARTED) {
      sequence = 4;
    } else if (status == v2::PENDING) {
      sequence = 2;
    }

    // The row.
    sqlite3_stmt* job = insert_job_.get();
    auto bind_reference = [job](int index, int64_t id) {
      if (id == 0) {
        sqlite3_bind_null(job, index);
      } else {
        sqlite3_bind_int64(job, index, id);
      }
    };
    auto bind_time = [job](int index, bool has, int64_t micros) {
      if (has) {
        sqlite3_bind_int64(job, index, micros);
      } else {
        sqlite3_bind_null(job, index);
      }
    };
    sqlite3_bind_text(job, 1, name.data(), static_cast<int>(name.size()),
                      SQLITE_TRANSIENT);
    sqlite3_bind_int64(job, 2, 0);  // delay
    sqlite3_bind_null(job, 3);      // job_limit
    sqlite3_bind_int64(job, 4, 1);  // shuffle
    sqlite3_bind_int64(job, 5, project->id);
    bind_reference(6, deployment);
    bind_reference(7, collection);
    bind_reference(8, 0);  // source_image_single
    bind_reference(9, pipeline);
    bind_reference(10, data_export);
    sqlite3_bind_text(job, 11, type->key, -1, SQLITE_STATIC);
    sqlite3_bind_text(job, 12, "internal", -1, SQLITE_STATIC);
    sqlite3_bind_text(job, 13, v2::JobStatus_Name(status).c_str(), -1,
                      SQLITE_TRANSIENT);
    sqlite3_bind_int64(job, 14, created);
    sqlite3_bind_int64(job, 15, updated);
    bind_time(16, ran, scheduled);
    bind_time(17, ran && status != v2::PENDING, started);
    bind_time(18, IsFinal(status), finished);
    sqlite3_bind_blob(job, 19, progress.bytes.data(),
                      static_cast<int>(progress.bytes.size()), SQLITE_STATIC);
    std::string result;
    if (type_key == "data_export" && status == v2::SUCCESS) {
      // {"file_url": "https://example.org/exports/<export>-<created>.csv"}
      google::protobuf::Value value;
      (*value.mutable_struct_value()->mutable_fields())["file_url"]
          .set_string_value(absl::StrCat("https://example.org/exports/",
                                         data_export, "-", created, ".csv"));
      result = value.SerializeAsString();
      sqlite3_bind_blob(job, 20, result.data(), static_cast<int>(result.size()),
                        SQLITE_STATIC);
    } else {
      sqlite3_bind_null(job, 20);
    }
    sqlite3_bind_int64(job, 21, progress.results_stage_final ? 1 : 0);
    // The lease: STARTED is leased by a worker, PENDING waits in the
    // workers' queue, the rest have none.
    std::string lease_id;
    if (status == v2::STARTED) {
      lease_id = absl::StrCat("preload-", created);
      sqlite3_bind_text(job, 22, lease_id.data(),
                        static_cast<int>(lease_id.size()), SQLITE_STATIC);
      sqlite3_bind_text(job, 23, "preload-worker", -1, SQLITE_STATIC);
      sqlite3_bind_int64(job, 24, now + 3600 * kMicrosPerSecond);
    } else {
      sqlite3_bind_null(job, 22);
      sqlite3_bind_text(job, 23, "", -1, SQLITE_STATIC);
      sqlite3_bind_null(job, 24);
    }
    sqlite3_bind_int64(job, 25, ran && status != v2::PENDING ? 1 : 0);
    sqlite3_bind_int64(job, 26, sequence);
    JOBS_RETURN_IF_ERROR(RunAndReset(db_, job, "inserting a job"));
    const int64_t id = sqlite3_last_insert_rowid(db_);

    // Its history.
    JOBS_RETURN_IF_ERROR(AddStatusChange(id, 1, v2::CREATED, created));
    if (ran) {
      JOBS_RETURN_IF_ERROR(AddStatusChange(id, 2, v2::PENDING, scheduled));
    }
    if (ran && status != v2::PENDING) {
      const std::string quoted = absl::StrCat("\"", name, "\"");
      JOBS_RETURN_IF_ERROR(AddStatusChange(id, 3, v2::STARTED, started));
      JOBS_RETURN_IF_ERROR(
          AddLog(id, 3, started, "INFO",
                 absl::StrFormat("Running job #%d %s (PENDING)", id, quoted)));
      JOBS_RETURN_IF_ERROR(
          AddLog(id, 3, started, "INFO",
                 absl::StrFormat(
                     "Changing status of job %d from PENDING to STARTED", id)));
      const int64_t midway = (started + finished) / 2;
      JOBS_RETURN_IF_ERROR(AddLog(
          id, 4, status == v2::STARTED ? now : midway, "INFO",
          absl::StrFormat("%s: %d items of %d done",
                          type->stages[std::min(stop_stage, stages - 1)].name,
                          size / 2, size)));
      if (IsFinal(status)) {
        const std::string status_name = v2::JobStatus_Name(status);
        if (status == v2::FAILURE) {
          JOBS_RETURN_IF_ERROR(
              AddLog(id, 5, finished, "ERROR", "The source could not be read"));
        }
        JOBS_RETURN_IF_ERROR(AddStatusChange(id, 5, status, finished));
        JOBS_RETURN_IF_ERROR(AddLog(id, 5, finished, "INFO",
                                    absl::StrFormat("Finished job #%d %s (%s)",
                                                    id, quoted, status_name)));
      }
    }
    return absl::OkStatus();
  }

  sqlite3* const db_;  // Not owned.
  const Fixture fixture_;
  std::mt19937_64 random_;
  std::vector<Choice> choices_;
  int64_t total_weight_ = 0;
  SqliteStmtPtr begin_, commit_, insert_job_, insert_change_, insert_log_;
  // Progress documents by combination of type, status, stage and size.
  std::map<std::string, ProgressText> progress_;
  int64_t status_changes_ = 0;
  int64_t log_lines_ = 0;
  std::map<std::string, int64_t> by_status_;
};

// Drops the indexes of the job tables and returns the statements that
// make them again, exactly as the schema made them. Building an index once
// over every row is much faster than keeping it up to date row by row.
absl::StatusOr<std::vector<std::string>> DropJobIndexes(sqlite3* db) {
  std::vector<std::pair<std::string, std::string>> found;  // name, sql
  {
    JOBS_ASSIGN_OR_RETURN(
        SqliteStmtPtr query,
        Prepare(db,
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                "AND sql IS NOT NULL AND tbl_name IN "
                "('jobs', 'job_logs', 'job_status_changes') ORDER BY name"));
    while (sqlite3_step(query.get()) == SQLITE_ROW) {
      found.emplace_back(
          reinterpret_cast<const char*>(sqlite3_column_text(query.get(), 0)),
          reinterpret_cast<const char*>(sqlite3_column_text(query.get(), 1)));
    }
  }
  std::vector<std::string> create;
  for (const auto& [name, sql] : found) {
    JOBS_RETURN_IF_ERROR(Exec(db, absl::StrCat("DROP INDEX \"", name, "\"")));
    create.push_back(sql);
  }
  return create;
}

absl::Status Run() {
  const auto start = std::chrono::steady_clock::now();
  v2::Catalog catalog;
  if (!FLAGS_seed_catalog.empty()) {
    JOBS_ASSIGN_OR_RETURN(catalog, ReadCatalogFile(FLAGS_seed_catalog));
  }
  Fixture fixture = AddGeneratedRecords(FLAGS_projects, catalog);
  if (fixture.projects.empty() || fixture.pipelines.empty()) {
    return absl::InvalidArgumentError(
        "no project or no pipeline to give the jobs (--projects=0 and a "
        "catalogue without them)");
  }
  JOBS_RETURN_IF_ERROR(CreateBenchDatabase(FLAGS_db, catalog));

  // The load, with the server's settings but durability.
  JOBS_ASSIGN_OR_RETURN(SqliteDbPtr db,
                        OpenServerLikeConnection(FLAGS_db, Synchronous::kFull));
  JOBS_RETURN_IF_ERROR(
      Exec(db.get(), "PRAGMA synchronous = OFF; PRAGMA cache_size = -262144;"));
  JOBS_ASSIGN_OR_RETURN(const std::vector<std::string> indexes,
                        DropJobIndexes(db.get()));
  Preloader preloader(db.get(), std::move(fixture), FLAGS_seed);
  JOBS_RETURN_IF_ERROR(preloader.Prepare());
  const int64_t now = absl::ToUnixMicros(absl::Now());
  const int64_t first =
      now - int64_t{FLAGS_days} * 24 * 3600 * kMicrosPerSecond;
  JOBS_RETURN_IF_ERROR(
      preloader.Run(FLAGS_jobs, FLAGS_jobs_per_transaction, first, now));
  preloader.Finalize();
  for (const std::string& create_index : indexes) {
    JOBS_RETURN_IF_ERROR(Exec(db.get(), create_index));
  }
  JOBS_RETURN_IF_ERROR(Exec(db.get(), "PRAGMA wal_checkpoint(TRUNCATE);"));
  db.reset();

  nlohmann::ordered_json figures;
  figures["jobs"] = FLAGS_jobs;
  figures["status_changes"] = preloader.status_changes();
  figures["log_lines"] = preloader.log_lines();
  figures["by_status"] = preloader.by_status();
  figures["seconds"] =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  figures["bytes"] = DatabaseBytes(FLAGS_db);
  std::cout << figures.dump() << std::endl;
  return absl::OkStatus();
}

}  // namespace
}  // namespace bench
}  // namespace jobline

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "Fills a new Jobline database with realistic jobs.\n"
      "Usage: preload --db=NEW_FILE --jobs=N [--seed_catalog=FILE] ...");
  gflags::ParseCommandLineFlags(&argc, &argv, /*remove_flags=*/true);
  FLAGS_logtostderr = true;
  FLAGS_minloglevel = google::WARNING;  // No schema migration lines.
  google::InitGoogleLogging(argv[0]);
  auto usage_error = [](const std::string& problem) {
    std::cerr << "preload: " << problem << " (see --help)\n";
    return 2;
  };
  if (argc > 1) return usage_error("unexpected argument");
  if (FLAGS_db.empty()) return usage_error("--db must name a new file");
  if (FLAGS_jobs < 1) return usage_error("--jobs must be positive");
  if (FLAGS_projects < 0) return usage_error("--projects must be >= 0");
  if (FLAGS_days < 1) return usage_error("--days must be positive");
  if (FLAGS_jobs_per_transaction < 1) {
    return usage_error("--jobs_per_transaction must be positive");
  }
  const absl::Status status = jobline::bench::Run();
  if (!status.ok()) {
    std::cerr << "preload: " << status.message() << "\n";
    return 1;
  }
  return 0;
}
