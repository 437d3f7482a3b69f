// Crash durability of the real job_server: mixed load from many client
// threads, a SIGKILL at a random moment, a restart on the same database
// file, twenty times in a row.
//
// The load, over gRPC: CreateJob (jobs for workers, jobs with a delay stage
// the built-in runner runs first, "unknown" jobs the runner fails, jobs left
// CREATED), RunJob and CancelJob, workers that lease jobs, report progress
// with a log line each time and finish them (or abandon them to their
// lease), and WatchProgress watchers. Every answer the server gave is
// recorded: the job document of each write, and each ReportProgress that
// was acknowledged.
//
// After each kill, on the file the killed server left (read-only SQLite,
// with no server running):
//   - PRAGMA integrity_check is "ok";
//   - every acknowledged write survived: the job exists, its sequence is at
//     least the acknowledged one, the status in force at that sequence is
//     the acknowledged status, no stage's progress went down, and a job
//     nobody changed since has exactly the acknowledged status and
//     progress; each acknowledged report's log line is stored once, in a
//     STARTED or CANCELING change, and its progress holds;
//   - every job's status history follows the state machine;
//   - what every watcher was sent is exactly what is stored: the statuses
//     and log lines of each sequence after its snapshot, nothing missing,
//     nothing extra, in order.
// After each restart:
//   - the server answers every acknowledged job with at least that
//     sequence, and every acknowledged report's log line once;
//   - every lease the killed server had granted ends as documented: the
//     runner's at start, a worker's when it runs out; the job is queued
//     again with the attempt counted (or fails after the last attempt, or
//     is revoked while canceling), with its log line, in the first change
//     after the kill (checked in the file at the next stop);
//   - every watcher cut by the kill resumes with after_sequence and gets
//     exactly the changes after it (checked in the file at the next stop).
//
// Each kill prints "acknowledged=N survived=N", a write surviving when both
// the file and the restarted server hold it; so does the total.

#include <signal.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/util/time_util.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "jobline/v2/jobs.grpc.pb.h"
#include "jobline/v2/worker.grpc.pb.h"
#include "tests/server_process.h"

namespace jobline {
namespace {

using ::google::protobuf::util::TimeUtil;
using ::jobline::testing::NewTempDir;
using ::jobline::testing::RunfilePath;
using ::jobline::testing::ServerProcess;

constexpr int kKills = 20;
constexpr int kMaxAttempts = 3;
constexpr char kPopulate[] = "populate_captures_collection";
constexpr char kStageName[] = "Populate captures collection";
constexpr char kStageKey[] = "populate_captures_collection";
constexpr char kRunnerHolder[] = "jobline-runner";
// Short enough that a lease the kill orphaned runs out soon after the
// restart.
constexpr absl::Duration kWorkerLease = absl::Milliseconds(1500);
constexpr absl::Duration kCallDeadline = absl::Seconds(10);

void SetDeadline(grpc::ClientContext& context, absl::Duration timeout) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

bool IsFinal(v2::JobStatus status) {
  return status == v2::SUCCESS || status == v2::FAILURE ||
         status == v2::REVOKED;
}

// The status moves of the state machine that this load can cause: clients
// run CREATED jobs and cancel any job, leases are granted and end, the
// runner hands a job to the workers or fails it, and runs end. Nobody runs
// a final job again here, and the stale-job reaper (10 minutes) never
// fires.
bool IsLegalMove(v2::JobStatus from, v2::JobStatus to) {
  switch (from) {
    case v2::CREATED:
      return to == v2::PENDING || to == v2::REVOKED;
    case v2::PENDING:
      return to == v2::STARTED || to == v2::REVOKED;
    case v2::STARTED:
      return to == v2::PENDING || to == v2::CANCELING || to == v2::SUCCESS ||
             to == v2::FAILURE;
    case v2::CANCELING:
      return to == v2::REVOKED;
    default:
      return false;
  }
}

std::string Name(v2::JobStatus status) { return v2::JobStatus_Name(status); }

// ---- The database file, read with no server writing it -------------------

struct JobRow {
  std::string name;
  v2::JobStatus status = v2::JOB_STATUS_UNSPECIFIED;
  int64_t sequence = 0;
  v2::JobProgress progress;
  bool leased = false;
  std::string holder;
  int64_t attempts = 0;
};

struct StatusRow {
  int64_t sequence = 0;
  v2::JobStatus status = v2::JOB_STATUS_UNSPECIFIED;
};

struct LogRow {
  int64_t sequence = 0;
  int64_t created_at = 0;  // Microseconds since the Unix epoch.
  std::string level;
  std::string message;

  // The text WatchProgress sends for this line (server zone UTC).
  std::string Text() const {
    return absl::StrCat(
        "[",
        absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::FromUnixMicros(created_at),
                         absl::UTCTimeZone()),
        "] ", level, " ", message);
  }
};

// Everything about jobs that the file holds, read in one transaction.
struct DatabaseFile {
  std::string integrity;  // The rows of PRAGMA integrity_check, joined.
  std::map<int64_t, JobRow> jobs;
  std::map<int64_t, std::vector<StatusRow>> statuses;  // By sequence.
  std::map<int64_t, std::vector<LogRow>> logs;         // By line id.

  // The status job `id` had after change `sequence`.
  v2::JobStatus StatusAt(int64_t id, int64_t sequence) const {
    v2::JobStatus status = v2::JOB_STATUS_UNSPECIFIED;
    auto it = statuses.find(id);
    if (it == statuses.end()) return status;
    for (const StatusRow& row : it->second) {
      if (row.sequence > sequence) break;
      status = row.status;
    }
    return status;
  }

  const std::vector<LogRow>& LogsOf(int64_t id) const {
    static const std::vector<LogRow>* const kNone = new std::vector<LogRow>;
    auto it = logs.find(id);
    return it == logs.end() ? *kNone : it->second;
  }
};

v2::JobStatus ParseStatus(const std::string& name) {
  v2::JobStatus status = v2::JOB_STATUS_UNSPECIFIED;
  v2::JobStatus_Parse(name, &status);
  return status;
}

std::string ColumnText(sqlite3_stmt* stmt, int column) {
  const unsigned char* text = sqlite3_column_text(stmt, column);
  return text == nullptr ? "" : reinterpret_cast<const char*>(text);
}

// Runs `sql` on `db` and calls `row` for each result row.
absl::Status Query(sqlite3* db, const char* sql,
                   const std::function<void(sqlite3_stmt*)>& row) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) != SQLITE_OK) {
    return absl::InternalError(absl::StrCat(sql, ": ", sqlite3_errmsg(db)));
  }
  int code;
  while ((code = sqlite3_step(stmt)) == SQLITE_ROW) row(stmt);
  sqlite3_finalize(stmt);
  if (code != SQLITE_DONE) {
    return absl::InternalError(absl::StrCat(sql, ": ", sqlite3_errstr(code)));
  }
  return absl::OkStatus();
}

absl::StatusOr<DatabaseFile> ReadDatabase(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) !=
      SQLITE_OK) {
    const std::string error = sqlite3_errmsg(db);
    sqlite3_close(db);
    return absl::UnavailableError(absl::StrCat("open ", path, ": ", error));
  }
  DatabaseFile file;
  std::vector<std::string> integrity;
  absl::Status status = Query(db, "BEGIN", [](sqlite3_stmt*) {});
  if (status.ok()) {
    status = Query(db, "PRAGMA integrity_check", [&](sqlite3_stmt* stmt) {
      integrity.push_back(ColumnText(stmt, 0));
    });
  }
  if (status.ok()) {
    status = Query(
        db,
        "SELECT id, name, status, sequence, progress, lease_id, "
        "lease_holder, attempts FROM jobs",
        [&](sqlite3_stmt* stmt) {
          JobRow& row = file.jobs[sqlite3_column_int64(stmt, 0)];
          row.name = ColumnText(stmt, 1);
          row.status = ParseStatus(ColumnText(stmt, 2));
          row.sequence = sqlite3_column_int64(stmt, 3);
          // The serialized JobProgress (schema version 5).
          if (sqlite3_column_type(stmt, 4) != SQLITE_BLOB ||
              !row.progress.ParseFromArray(sqlite3_column_blob(stmt, 4),
                                           sqlite3_column_bytes(stmt, 4))) {
            ADD_FAILURE() << "job " << sqlite3_column_int64(stmt, 0)
                          << ": unreadable progress";
          }
          row.leased = sqlite3_column_type(stmt, 5) != SQLITE_NULL;
          row.holder = ColumnText(stmt, 6);
          row.attempts = sqlite3_column_int64(stmt, 7);
        });
  }
  if (status.ok()) {
    status = Query(db,
                   "SELECT job_id, sequence, status FROM job_status_changes "
                   "ORDER BY job_id, sequence",
                   [&](sqlite3_stmt* stmt) {
                     file.statuses[sqlite3_column_int64(stmt, 0)].push_back(
                         {sqlite3_column_int64(stmt, 1),
                          ParseStatus(ColumnText(stmt, 2))});
                   });
  }
  if (status.ok()) {
    status = Query(
        db,
        "SELECT job_id, sequence, created_at, level, message "
        "FROM job_logs ORDER BY id",
        [&](sqlite3_stmt* stmt) {
          file.logs[sqlite3_column_int64(stmt, 0)].push_back(
              {sqlite3_column_int64(stmt, 1), sqlite3_column_int64(stmt, 2),
               ColumnText(stmt, 3), ColumnText(stmt, 4)});
        });
  }
  (void)Query(db, "COMMIT", [](sqlite3_stmt*) {});
  sqlite3_close(db);
  if (!status.ok()) return status;
  file.integrity = absl::StrJoin(integrity, "; ");
  return file;
}

// ---- What the server acknowledged -----------------------------------------

// A job document the server answered a write with.
struct AckedJob {
  std::string call;  // "CreateJob", "LeaseJobs", ...
  v2::Job job;
};

// An acknowledged ReportProgress: its log line (unique) and stage progress.
struct AckedReport {
  int64_t job_id = 0;
  std::string message;
  double progress = 0;
};

// One WatchProgress stream as its watcher saw it.
struct WatchLog {
  int64_t job_id = 0;
  int64_t after_sequence = 0;  // 0: the stream began with a snapshot.
  std::vector<v2::WatchProgressResponse> messages;
  bool ended_ok = false;
};

// The acknowledged writes of one run of the load. Thread-safe.
class Ledger {
 public:
  void AddJob(std::string call, const v2::Job& job) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    jobs_.push_back({std::move(call), job});
  }
  void AddReport(AckedReport report) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    reports_.push_back(std::move(report));
  }
  void AddWatch(WatchLog watch) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    watches_.push_back(std::move(watch));
  }

  // Read once the load has stopped.
  std::vector<AckedJob> jobs() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return jobs_;
  }
  std::vector<AckedReport> reports() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return reports_;
  }
  std::vector<WatchLog> watches() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return watches_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<AckedJob> jobs_ ABSL_GUARDED_BY(mu_);
  std::vector<AckedReport> reports_ ABSL_GUARDED_BY(mu_);
  std::vector<WatchLog> watches_ ABSL_GUARDED_BY(mu_);
};

// ---- The load ---------------------------------------------------------------

// Client threads against one server until Stop(): two creators, two
// workers, one thread that runs and cancels jobs, three watchers. Each
// records what the server acknowledged in the ledger.
class Load {
 public:
  Load(const std::string& address, int round, uint32_t seed)
      : channel_(
            grpc::CreateChannel(address, grpc::InsecureChannelCredentials())),
        jobs_(v2::JobService::NewStub(channel_)),
        workers_(v2::WorkerService::NewStub(channel_)),
        round_(round),
        seed_(seed) {}

  ~Load() { Stop(); }

  void Start() {
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this, i] { Create(i); });
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this, i] { Work(i); });
    threads_.emplace_back([this] { RunAndCancel(); });
    for (int i = 0; i < 3; ++i) threads_.emplace_back([this, i] { Watch(i); });
  }

  // Ends the threads; calls in flight end with the server's death.
  void Stop() {
    stop_ = true;
    for (std::thread& thread : threads_) thread.join();
    threads_.clear();
  }

  const Ledger& ledger() const { return ledger_; }

 private:
  void Create(int index) {
    std::mt19937 random(seed_ + 11 * index + 1);
    for (int n = 0; !stop_; ++n) {
      const int kind = static_cast<int>(random() % 100);
      v2::CreateJobRequest request;
      v2::JobInput* input = request.mutable_job();
      input->set_name(absl::StrCat("crash ", round_, "-", index, "-", n));
      input->set_project_id(16);
      input->set_source_image_collection_id(111);
      input->set_job_type_key(kind < 75 && kind >= 60 ? "unknown" : kPopulate);
      if (kind >= 45 && kind < 75) input->set_delay(1 + random() % 4);
      request.set_start_now(kind < 75);
      grpc::ClientContext context;
      SetDeadline(context, kCallDeadline);
      v2::Job job;
      if (!jobs_->CreateJob(&context, request, &job).ok()) continue;
      ledger_.AddJob("CreateJob", job);
      absl::MutexLock lock(&mu_);
      created_.push_back(job.id());
      if (!request.start_now()) {
        unstarted_.push_back(job.id());
      } else if (input->delay() > 0 || input->job_type_key() == "unknown") {
        watchable_[0].push_back(job.id());
      } else {
        watchable_[2].push_back(job.id());
      }
    }
  }

  void Work(int index) {
    std::mt19937 random(seed_ + 13 * index + 2);
    const std::string worker =
        absl::StrCat("crash-worker-", round_, "-", index);
    while (!stop_) {
      v2::LeaseJobsRequest request;
      request.set_worker_id(worker);
      request.add_job_types(kPopulate);
      request.set_max_jobs(2);
      *request.mutable_lease_duration() = TimeUtil::MillisecondsToDuration(
          absl::ToInt64Milliseconds(kWorkerLease));
      *request.mutable_wait() = TimeUtil::MillisecondsToDuration(100);
      grpc::ClientContext context;
      SetDeadline(context, kCallDeadline);
      v2::LeaseJobsResponse response;
      if (!workers_->LeaseJobs(&context, request, &response).ok()) continue;
      for (const v2::Lease& lease : response.leases()) {
        ledger_.AddJob("LeaseJobs", lease.job());
        absl::MutexLock lock(&mu_);
        watchable_[1].push_back(lease.job().id());
      }
      for (const v2::Lease& lease : response.leases()) {
        RunLease(worker, lease, random);
      }
    }
  }

  // Reports one to four times, then finishes the job (or, one time in ten,
  // abandons it to its lease).
  void RunLease(const std::string& worker, const v2::Lease& lease,
                std::mt19937& random) {
    const int64_t id = lease.job().id();
    const int reports = 1 + static_cast<int>(random() % 4);
    bool cancelled = false;
    for (int r = 0; r < reports && !stop_ && !cancelled; ++r) {
      const double progress = (r + 1) / static_cast<double>(reports + 1);
      const std::string message =
          absl::StrCat(worker, " report ", r, " on job ", id, " lease ",
                       lease.lease_id().substr(0, 8));
      v2::ReportProgressRequest request;
      request.set_lease_id(lease.lease_id());
      request.set_job_id(id);
      *request.mutable_lease_duration() = TimeUtil::MillisecondsToDuration(
          absl::ToInt64Milliseconds(kWorkerLease));
      v2::StageUpdate* stage = request.add_stages();
      stage->set_name(kStageName);
      stage->set_status(v2::STARTED);
      stage->set_progress(progress);
      v2::WorkerLogLine* line = request.add_logs();
      line->set_level("INFO");
      line->set_message(message);
      grpc::ClientContext context;
      SetDeadline(context, kCallDeadline);
      v2::ReportProgressResponse response;
      if (!workers_->ReportProgress(&context, request, &response).ok()) return;
      ledger_.AddReport({id, message, progress});
      cancelled = response.cancel_requested();
    }
    const int ending = static_cast<int>(random() % 10);
    if (stop_ || (ending == 0 && !cancelled)) return;

    v2::FinishJobRequest request;
    request.set_lease_id(lease.lease_id());
    request.set_job_id(id);
    if (cancelled || ending <= 2) {
      request.set_status(v2::FAILURE);
      request.set_error(absl::StrCat(worker, " gave up on job ", id));
    } else {
      request.set_status(v2::SUCCESS);
      request.mutable_result()->set_string_value(worker);
      v2::StageUpdate* stage = request.add_stages();
      stage->set_name(kStageName);
      stage->set_status(v2::SUCCESS);
      stage->set_progress(1.0);
    }
    grpc::ClientContext context;
    SetDeadline(context, kCallDeadline);
    v2::FinishJobResponse response;
    if (workers_->FinishJob(&context, request, &response).ok()) {
      ledger_.AddJob("FinishJob", response.job());
    }
  }

  // Every 10 ms: runs a job left CREATED, or cancels a job of this round.
  void RunAndCancel() {
    std::mt19937 random(seed_ + 3);
    for (int n = 0; !stop_; ++n) {
      absl::SleepFor(absl::Milliseconds(10));
      int64_t id = 0;
      const bool run = n % 2 == 0;
      {
        absl::MutexLock lock(&mu_);
        std::vector<int64_t>& from = run ? unstarted_ : created_;
        if (from.empty()) continue;
        id = from[random() % from.size()];
        // A job is run at most once, and never after a cancel (which may
        // have revoked it, answered or not): nobody runs a final job here.
        unstarted_.erase(std::remove(unstarted_.begin(), unstarted_.end(), id),
                         unstarted_.end());
      }
      grpc::ClientContext context;
      SetDeadline(context, kCallDeadline);
      v2::Job job;
      if (run) {
        v2::RunJobRequest request;
        request.set_id(id);
        if (jobs_->RunJob(&context, request, &job).ok()) {
          ledger_.AddJob("RunJob", job);
        }
      } else {
        v2::CancelJobRequest request;
        request.set_id(id);
        if (jobs_->CancelJob(&context, request, &job).ok()) {
          ledger_.AddJob("CancelJob", job);
        }
      }
    }
  }

  // Follows the newest job of its kind (watchable_[index]) from its
  // snapshot until it is final (or the server dies), then the next.
  void Watch(int index) {
    while (!stop_) {
      int64_t id = 0;
      {
        absl::MutexLock lock(&mu_);
        if (!watchable_[index].empty()) id = watchable_[index].back();
      }
      if (id == 0 || id == last_watched_[index]) {
        absl::SleepFor(absl::Milliseconds(5));
        continue;
      }
      last_watched_[index] = id;
      WatchLog watch;
      watch.job_id = id;
      v2::WatchProgressRequest request;
      request.set_job_id(id);
      grpc::ClientContext context;
      SetDeadline(context, absl::Seconds(30));
      std::unique_ptr<grpc::ClientReader<v2::WatchProgressResponse>> reader =
          jobs_->WatchProgress(&context, request);
      v2::WatchProgressResponse message;
      while (reader->Read(&message)) watch.messages.push_back(message);
      watch.ended_ok = reader->Finish().ok();
      if (!watch.messages.empty()) ledger_.AddWatch(std::move(watch));
    }
  }

  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<v2::JobService::Stub> jobs_;
  const std::unique_ptr<v2::WorkerService::Stub> workers_;
  const int round_;
  const uint32_t seed_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  Ledger ledger_;
  int64_t last_watched_[3] = {0, 0, 0};  // Each used by its own watcher.

  absl::Mutex mu_;
  std::vector<int64_t> created_ ABSL_GUARDED_BY(mu_);
  std::vector<int64_t> unstarted_ ABSL_GUARDED_BY(mu_);
  // What each watcher follows: jobs queued for the runner, jobs just
  // leased by a worker, jobs queued for the workers.
  std::vector<int64_t> watchable_[3] ABSL_GUARDED_BY(mu_);
};

// ---- Checks against the file
// --------------------------------------------------

// Failures are reported with ADD_FAILURE; the functions return whether
// their subject held.

bool CheckAckedJob(const DatabaseFile& file, const AckedJob& acked) {
  const v2::Job& job = acked.job;
  const std::string what =
      absl::StrCat(acked.call, " of job ", job.id(), " answered ",
                   Name(job.status()), " at sequence ", job.sequence());
  auto row_it = file.jobs.find(job.id());
  if (row_it == file.jobs.end()) {
    ADD_FAILURE() << what << ": the job is missing";
    return false;
  }
  const JobRow& row = row_it->second;
  bool held = true;
  if (row.sequence < job.sequence()) {
    ADD_FAILURE() << what << ": the file has sequence " << row.sequence;
    held = false;
  }
  const v2::JobStatus then = file.StatusAt(job.id(), job.sequence());
  if (then != job.status()) {
    ADD_FAILURE() << what << ": the file's status at that sequence is "
                  << Name(then);
    held = false;
  }
  if (acked.call == "CreateJob" && row.name != job.name()) {
    ADD_FAILURE() << what << ": the file's name is \"" << row.name << "\"";
    held = false;
  }
  // Progress never goes down (no job is retried here).
  for (const v2::ProgressStage& stage : job.progress().stages()) {
    const v2::ProgressStage* stored = nullptr;
    for (const v2::ProgressStage& candidate : row.progress.stages()) {
      if (candidate.key() == stage.key()) stored = &candidate;
    }
    if (stored == nullptr || stored->progress() < stage.progress()) {
      ADD_FAILURE() << what << ": stage " << stage.key() << " was at "
                    << stage.progress() << ", the file has "
                    << (stored == nullptr ? -1.0 : stored->progress());
      held = false;
    }
  }
  // Unchanged since: exactly what was answered.
  if (row.sequence == job.sequence()) {
    bool same =
        row.status == job.status() &&
        row.progress.summary().status() == job.progress().summary().status() &&
        row.progress.summary().progress() ==
            job.progress().summary().progress() &&
        row.progress.stages_size() == job.progress().stages_size();
    for (int i = 0; same && i < row.progress.stages_size(); ++i) {
      const v2::ProgressStage& a = row.progress.stages(i);
      const v2::ProgressStage& b = job.progress().stages(i);
      same = a.key() == b.key() && a.status() == b.status() &&
             a.progress() == b.progress();
    }
    if (!same) {
      ADD_FAILURE() << what << ": the file holds status " << Name(row.status)
                    << " and progress " << row.progress.ShortDebugString()
                    << ", the answer had " << job.progress().ShortDebugString();
      held = false;
    }
  }
  return held;
}

bool CheckAckedReport(const DatabaseFile& file, const AckedReport& report) {
  const std::string what = absl::StrCat("report \"", report.message, "\"");
  std::vector<const LogRow*> lines;
  for (const LogRow& line : file.LogsOf(report.job_id)) {
    if (line.message == report.message) lines.push_back(&line);
  }
  if (lines.size() != 1) {
    ADD_FAILURE() << what << ": stored " << lines.size() << " times";
    return false;
  }
  bool held = true;
  const v2::JobStatus then = file.StatusAt(report.job_id, lines[0]->sequence);
  if (then != v2::STARTED && then != v2::CANCELING) {
    ADD_FAILURE() << what << ": stored in change " << lines[0]->sequence
                  << " while the job was " << Name(then);
    held = false;
  }
  double stored = -1;
  auto row = file.jobs.find(report.job_id);
  if (row != file.jobs.end()) {
    for (const v2::ProgressStage& stage : row->second.progress.stages()) {
      if (stage.key() == kStageKey) stored = stage.progress();
    }
  }
  if (stored < report.progress) {
    ADD_FAILURE() << what << ": progress " << report.progress
                  << " acknowledged, the file has " << stored;
    held = false;
  }
  return held;
}

// Every job's history starts CREATED or PENDING, moves only as the state
// machine allows and ends in the job's status.
void CheckHistories(const DatabaseFile& file) {
  for (const auto& [id, row] : file.jobs) {
    auto it = file.statuses.find(id);
    if (it == file.statuses.end() || it->second.empty()) {
      ADD_FAILURE() << "job " << id << " has no status history";
      continue;
    }
    const std::vector<StatusRow>& history = it->second;
    const v2::JobStatus first = history.front().status;
    EXPECT_EQ(history.front().sequence, 1) << "job " << id;
    EXPECT_TRUE(first == v2::CREATED || first == v2::PENDING)
        << "job " << id << " began " << Name(first);
    for (size_t i = 1; i < history.size(); ++i) {
      EXPECT_TRUE(IsLegalMove(history[i - 1].status, history[i].status))
          << "job " << id << " moved from " << Name(history[i - 1].status)
          << " to " << Name(history[i].status) << " at sequence "
          << history[i].sequence;
    }
    EXPECT_EQ(history.back().status, row.status) << "job " << id;
    EXPECT_LE(history.back().sequence, row.sequence) << "job " << id;
    if (row.leased) {
      EXPECT_TRUE(row.status == v2::STARTED || row.status == v2::CANCELING)
          << "job " << id << " is leased while " << Name(row.status);
    }
  }
}

// What `watch` was sent is what the file holds: every status and log line
// of the changes after its first sequence (after_sequence, or its
// snapshot's), in order. Returns the number of changes it was sent.
int CheckWatch(const DatabaseFile& file, const WatchLog& watch) {
  const int64_t id = watch.job_id;
  const std::string what =
      absl::StrCat("watcher of job ", id, " after ", watch.after_sequence);
  if (watch.messages.empty()) return 0;
  const v2::WatchProgressResponse& first = watch.messages.front();
  EXPECT_EQ(first.snapshot(), watch.after_sequence == 0) << what;
  int64_t from = watch.after_sequence;
  size_t changes_begin = 0;
  if (watch.after_sequence == 0) {
    from = first.sequence();
    changes_begin = 1;
  }

  std::vector<std::pair<int64_t, v2::JobStatus>> sent_statuses;
  std::vector<std::pair<int64_t, std::string>> sent_logs;
  int64_t last = from;
  for (size_t i = 0; i < watch.messages.size(); ++i) {
    const v2::WatchProgressResponse& message = watch.messages[i];
    EXPECT_EQ(message.job().sequence(), message.sequence()) << what;
    EXPECT_EQ(message.job().status(), file.StatusAt(id, message.sequence()))
        << what << ": message at sequence " << message.sequence();
    if (i < changes_begin) continue;
    // A resume with nothing new yet answers the sequence it was given.
    if (i == 0) {
      EXPECT_GE(message.sequence(), last) << what;
    } else {
      EXPECT_GT(message.sequence(), last) << what;
    }
    last = message.sequence();
    for (const v2::JobStatusChange& change : message.status_changes()) {
      sent_statuses.emplace_back(change.sequence(), change.status());
    }
    for (const v2::JobLogLine& line : message.logs()) {
      sent_logs.emplace_back(line.sequence(),
                             absl::StrCat(line.level(), " | ", line.text()));
    }
  }
  if (watch.ended_ok) {
    EXPECT_TRUE(IsFinal(watch.messages.back().job().status())) << what;
  }

  std::vector<std::pair<int64_t, v2::JobStatus>> stored_statuses;
  auto history = file.statuses.find(id);
  if (history != file.statuses.end()) {
    for (const StatusRow& row : history->second) {
      if (row.sequence > from && row.sequence <= last) {
        stored_statuses.emplace_back(row.sequence, row.status);
      }
    }
  }
  std::vector<std::pair<int64_t, std::string>> stored_logs;
  for (const LogRow& line : file.LogsOf(id)) {
    if (line.sequence > from && line.sequence <= last) {
      stored_logs.emplace_back(line.sequence,
                               absl::StrCat(line.level, " | ", line.Text()));
    }
  }
  EXPECT_EQ(sent_statuses, stored_statuses) << what << " up to " << last;
  EXPECT_EQ(sent_logs, stored_logs) << what << " up to " << last;
  return static_cast<int>(sent_statuses.size() + sent_logs.size());
}

// How a lease the killed server had granted must end after the restart:
// the first change after `sequence` sets `status` and logs `line`.
struct Recovery {
  int64_t job_id = 0;
  int64_t sequence = 0;
  bool runner = false;
  v2::JobStatus status = v2::JOB_STATUS_UNSPECIFIED;
  std::string level;
  std::string line;
};

std::vector<Recovery> ExpectedRecoveries(const DatabaseFile& file) {
  std::vector<Recovery> recoveries;
  for (const auto& [id, row] : file.jobs) {
    if (!row.leased) continue;
    Recovery recovery;
    recovery.job_id = id;
    recovery.sequence = row.sequence;
    recovery.runner = row.holder == kRunnerHolder;
    const std::string lease =
        absl::StrCat("The lease of job ", id, " held by ", row.holder);
    if (row.status == v2::CANCELING) {
      recovery.status = v2::REVOKED;
      recovery.level = "WARNING";
      recovery.line = absl::StrCat(lease, " ended while it was canceling");
    } else if (row.attempts >= kMaxAttempts) {
      recovery.status = v2::FAILURE;
      recovery.level = "ERROR";
      recovery.line = absl::StrCat(
          "Job ", id, " failed: its lease ended ", row.attempts,
          " times without a result (last held by ", row.holder, ")");
    } else {
      recovery.status = v2::PENDING;
      recovery.level = "WARNING";
      recovery.line = absl::StrCat(
          lease, " ended without a result; queueing it again (attempt ",
          row.attempts, " of ", kMaxAttempts, " used)");
    }
    recoveries.push_back(std::move(recovery));
  }
  return recoveries;
}

void CheckRecovery(const DatabaseFile& file, const Recovery& recovery) {
  const int64_t next = recovery.sequence + 1;
  const std::string what =
      absl::StrCat("recovery of job ", recovery.job_id, " at sequence ", next);
  bool changed = false;
  auto history = file.statuses.find(recovery.job_id);
  if (history != file.statuses.end()) {
    for (const StatusRow& row : history->second) {
      if (row.sequence == next) {
        EXPECT_EQ(Name(row.status), Name(recovery.status)) << what;
        changed = true;
      }
    }
  }
  EXPECT_TRUE(changed) << what << ": no status change";
  int lines = 0;
  for (const LogRow& line : file.LogsOf(recovery.job_id)) {
    if (line.sequence == next && line.level == recovery.level &&
        line.message == recovery.line) {
      ++lines;
    }
  }
  EXPECT_EQ(lines, 1) << what << ": " << recovery.level << " " << recovery.line;
}

// ---- Checks against the restarted server ----------------------------------

class Server {
 public:
  explicit Server(const std::string& address)
      : channel_(
            grpc::CreateChannel(address, grpc::InsecureChannelCredentials())),
        jobs_(v2::JobService::NewStub(channel_)) {}

  absl::StatusOr<v2::Job> GetJob(int64_t id) {
    v2::GetJobRequest request;
    request.set_id(id);
    grpc::ClientContext context;
    SetDeadline(context, kCallDeadline);
    v2::Job job;
    const grpc::Status status = jobs_->GetJob(&context, request, &job);
    if (!status.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                          status.error_message());
    }
    return job;
  }

  // Resumes a watch of job `id` after `after_sequence` and reads until it
  // has the job's sequence of now, or the stream ends.
  WatchLog Resume(int64_t id, int64_t after_sequence) {
    WatchLog watch;
    watch.job_id = id;
    watch.after_sequence = after_sequence;
    absl::StatusOr<v2::Job> now = GetJob(id);
    EXPECT_TRUE(now.ok()) << now.status();
    const int64_t target = now.ok() ? now->sequence() : 0;
    v2::WatchProgressRequest request;
    request.set_job_id(id);
    request.set_after_sequence(after_sequence);
    grpc::ClientContext context;
    SetDeadline(context, absl::Seconds(30));
    std::unique_ptr<grpc::ClientReader<v2::WatchProgressResponse>> reader =
        jobs_->WatchProgress(&context, request);
    v2::WatchProgressResponse message;
    while (reader->Read(&message)) {
      watch.messages.push_back(message);
      if (message.sequence() >= target) break;
    }
    context.TryCancel();
    while (reader->Read(&message)) watch.messages.push_back(message);
    const grpc::Status end = reader->Finish();
    watch.ended_ok = end.ok();
    EXPECT_TRUE(end.ok() || end.error_code() == grpc::StatusCode::CANCELLED)
        << "resumed watch of job " << id << ": " << end.error_message();
    return watch;
  }

 private:
  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<v2::JobService::Stub> jobs_;
};

// Waits until every recovery's job has a change after its sequence, then
// checks the job's log line through the server. Returns how many did.
int AwaitRecoveries(Server& server, const std::vector<Recovery>& recoveries) {
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  int recovered = 0;
  for (const Recovery& recovery : recoveries) {
    absl::StatusOr<v2::Job> job = server.GetJob(recovery.job_id);
    while (job.ok() && job->sequence() <= recovery.sequence &&
           absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(50));
      job = server.GetJob(recovery.job_id);
    }
    if (!job.ok() || job->sequence() <= recovery.sequence) {
      ADD_FAILURE() << "the lease of job " << recovery.job_id
                    << " did not end within a minute: " << job.status();
      continue;
    }
    const std::string line = absl::StrCat(recovery.level, " ", recovery.line);
    int found = 0;
    for (const std::string& text : job->logs().stdout()) {
      if (absl::EndsWith(text, line)) ++found;
    }
    EXPECT_EQ(found, 1) << "job " << recovery.job_id << ": " << line;
    ++recovered;
  }
  return recovered;
}

// ---- The test
// -------------------------------------------------------------------

struct Totals {
  int64_t acknowledged = 0;
  int64_t survived = 0;
  int64_t watched = 0;
  int64_t recovered = 0;
  int64_t resumed = 0;
};

TEST(CrashDurability, AcknowledgedWritesSurviveTwentyKills) {
  const std::string dir = NewTempDir("crash");
  ASSERT_FALSE(dir.empty());
  const std::string db = dir + "/jobline.db";
  const std::vector<std::string> flags = {
      "--db=" + db, "--seed_catalog=" + RunfilePath("tools/demo-catalog.json"),
      "--synchronous=full", "--delay_step_ms=50"};
  const uint32_t seed = std::random_device{}();
  std::cout << "crash durability: seed " << seed << std::endl;
  std::mt19937 random(seed);

  ServerProcess server;
  const absl::Status started = server.Start(flags);
  ASSERT_TRUE(started.ok()) << started;
  // Everything acknowledged in earlier rounds, checked again at each kill.
  std::vector<AckedJob> all_jobs;
  std::vector<AckedReport> all_reports;
  // Checked in the file at the next stop.
  std::vector<Recovery> recoveries;
  std::vector<WatchLog> resumed;
  Totals totals;
  const absl::Time began = absl::Now();

  for (int kill = 1; kill <= kKills; ++kill) {
    // Load for 0.3 to 2 s, then SIGKILL with calls in flight.
    const absl::Duration run =
        absl::Milliseconds(300 + static_cast<int>(random() % 1701));
    Load load(server.address(), kill, random());
    load.Start();
    absl::SleepFor(run);
    absl::StatusOr<int> code = server.Stop(SIGKILL);
    load.Stop();
    ASSERT_TRUE(code.ok()) << code.status();
    ASSERT_EQ(*code, 128 + SIGKILL) << server.stderr_text();

    // The file as the killed server left it.
    absl::StatusOr<DatabaseFile> file = ReadDatabase(db);
    ASSERT_TRUE(file.ok()) << file.status();
    EXPECT_EQ(file->integrity, "ok") << "after kill " << kill;
    const std::vector<AckedJob> jobs = load.ledger().jobs();
    const std::vector<AckedReport> reports = load.ledger().reports();
    const std::vector<WatchLog> watches = load.ledger().watches();
    std::vector<bool> jobs_held;
    std::vector<bool> reports_held;
    std::map<std::string, int> calls;
    for (const AckedJob& acked : jobs) {
      ++calls[acked.call];
      jobs_held.push_back(CheckAckedJob(*file, acked));
    }
    for (const AckedReport& report : reports) {
      reports_held.push_back(CheckAckedReport(*file, report));
    }
    for (const AckedJob& acked : all_jobs) CheckAckedJob(*file, acked);
    for (const AckedReport& report : all_reports) {
      CheckAckedReport(*file, report);
    }
    CheckHistories(*file);
    int64_t watched = 0;
    for (const WatchLog& watch : watches) watched += CheckWatch(*file, watch);
    for (const WatchLog& watch : resumed) CheckWatch(*file, watch);
    for (const Recovery& recovery : recoveries) CheckRecovery(*file, recovery);
    const size_t recoveries_checked = recoveries.size();
    const size_t resumes_checked = resumed.size();

    // Restart on the same file: the server answers what was acknowledged.
    const absl::Status restarted_ok = server.Start(flags);
    ASSERT_TRUE(restarted_ok.ok())
        << "after kill " << kill << ": " << restarted_ok;
    Server restarted(server.address());
    std::map<int64_t, absl::StatusOr<v2::Job>> answers;
    auto answer = [&](int64_t id) -> const absl::StatusOr<v2::Job>& {
      auto it = answers.find(id);
      if (it == answers.end())
        it = answers.emplace(id, restarted.GetJob(id)).first;
      return it->second;
    };
    int64_t survived = 0;
    for (size_t i = 0; i < jobs.size(); ++i) {
      const absl::StatusOr<v2::Job>& now = answer(jobs[i].job.id());
      const bool answered =
          now.ok() && now->sequence() >= jobs[i].job.sequence();
      EXPECT_TRUE(answered)
          << "restarted server, job " << jobs[i].job.id()
          << " acknowledged at sequence " << jobs[i].job.sequence() << ": "
          << (now.ok() ? absl::StrCat("sequence ", now->sequence())
                       : now.status().ToString());
      survived += jobs_held[i] && answered ? 1 : 0;
    }
    for (size_t i = 0; i < reports.size(); ++i) {
      const absl::StatusOr<v2::Job>& now = answer(reports[i].job_id);
      int lines = 0;
      if (now.ok()) {
        for (const std::string& text : now->logs().stdout()) {
          if (absl::EndsWith(text, "] INFO " + reports[i].message)) ++lines;
        }
      }
      EXPECT_EQ(lines, 1) << "restarted server, report \"" << reports[i].message
                          << "\"";
      survived += reports_held[i] && lines == 1 ? 1 : 0;
    }

    const int64_t acknowledged =
        static_cast<int64_t>(jobs.size() + reports.size());
    std::cout << "crash " << kill << "/" << kKills << ": killed after "
              << absl::ToInt64Milliseconds(run)
              << " ms; acknowledged=" << acknowledged
              << " survived=" << survived << " (creates " << calls["CreateJob"]
              << ", leases " << calls["LeaseJobs"] << ", reports "
              << reports.size() << ", finishes " << calls["FinishJob"]
              << ", runs " << calls["RunJob"] << ", cancels "
              << calls["CancelJob"] << "); watcher changes " << watched
              << "; checked " << recoveries_checked << " recovered leases and "
              << resumes_checked << " resumed watchers of the restart before"
              << std::endl;
    EXPECT_EQ(acknowledged, survived) << "kill " << kill;
    totals.acknowledged += acknowledged;
    totals.survived += survived;
    totals.watched += watched;
    all_jobs.insert(all_jobs.end(), jobs.begin(), jobs.end());
    all_reports.insert(all_reports.end(), reports.begin(), reports.end());

    // Leases the killed server granted end; cut watchers resume.
    recoveries = ExpectedRecoveries(*file);
    totals.recovered += AwaitRecoveries(restarted, recoveries);
    resumed.clear();
    for (const WatchLog& watch : watches) {
      if (watch.ended_ok) continue;
      WatchLog again =
          restarted.Resume(watch.job_id, watch.messages.back().sequence());
      ASSERT_FALSE(again.messages.empty()) << "job " << watch.job_id;
      EXPECT_FALSE(again.messages.front().snapshot()) << "job " << watch.job_id;
      resumed.push_back(std::move(again));
    }
    totals.resumed += static_cast<int64_t>(resumed.size());
  }

  // A clean stop, and the file once more.
  absl::StatusOr<int> code = server.Stop(SIGTERM);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << server.stderr_text();
  absl::StatusOr<DatabaseFile> file = ReadDatabase(db);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->integrity, "ok");
  for (const AckedJob& acked : all_jobs) CheckAckedJob(*file, acked);
  for (const AckedReport& report : all_reports) {
    CheckAckedReport(*file, report);
  }
  CheckHistories(*file);
  for (const WatchLog& watch : resumed) CheckWatch(*file, watch);
  for (const Recovery& recovery : recoveries) CheckRecovery(*file, recovery);

  std::cout << "crash total: kills=" << kKills
            << " acknowledged=" << totals.acknowledged
            << " survived=" << totals.survived
            << " watcher_changes=" << totals.watched
            << " leases_recovered=" << totals.recovered
            << " watchers_resumed=" << totals.resumed << " in "
            << absl::ToInt64Seconds(absl::Now() - began) << " s" << std::endl;
  EXPECT_EQ(totals.acknowledged, totals.survived);
}

}  // namespace
}  // namespace jobline
