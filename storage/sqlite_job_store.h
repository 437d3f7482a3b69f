// SqliteJobStore: the JobStore on one SQLite database file.
//
// Open a store with OpenSqliteJobStore(). The schema (storage/schema.h) is
// migrated at open. A file database runs in WAL mode, with foreign keys
// enforced and the busy timeout and synchronous level of the options.
//
// Beyond the JobStore contract (storage/job_store.h):
//   - Ids are never reused, even after a delete.
//   - A reference message whose id is 0 counts as null (like a cleared one).
//   - CreateJob stores CREATED for an unset status, "unknown" for an empty
//     job_type.key and "internal" for an empty dispatch_mode.
//   - A write that moves a job to PENDING from another status stamps its
//     (internal) scheduled_at.
//   - ImportCatalog refuses a capture collection whose method is not one of
//     the sampling methods listed in catalog.proto (empty is allowed).
//   - ImportCatalog and SetCollectionCaptures refuse, with INVALID_ARGUMENT
//     "captures[i].path: ...", a capture whose path is another capture's.
//   - A capture listed twice in SetCollectionCaptures is one member; its
//     later entry is the record kept.
//   - capture_count is never stored: GetCaptureCollection counts the
//     members; the collection nested in a job has capture_count 0.
//   - A lease is stored to the microsecond. A lease without a lease_id is
//     stored as no lease (expires_at is dropped) but keeps its holder, which
//     names the queue the job waits in, and its attempts. Negative attempts
//     are refused with INVALID_ARGUMENT.
//   - FindJobIds refuses a limit that is not positive with
//     INVALID_ARGUMENT.
//   - A database opened read-only (the read_only option, or a file the
//     process cannot write) answers every write with UNAVAILABLE.
//   - The MutateJob callback runs under the store's lock: it must not call
//     back into the store.
//
// Thread safety: safe for concurrent use. All calls share one connection
// and are serialized by an internal mutex.

#ifndef JOBLINE_STORAGE_SQLITE_JOB_STORE_H_
#define JOBLINE_STORAGE_SQLITE_JOB_STORE_H_

#include <sqlite3.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "storage/job_store.h"
#include "storage/sqlite_statement.h"

namespace jobline {

struct SqliteJobStoreOptions {
  // A file path, or ":memory:" for a private in-memory database.
  std::string path;
  // How long a statement waits for another connection's lock before it
  // fails with ABORTED.
  absl::Duration busy_timeout = absl::Seconds(5);
  // PRAGMA synchronous=FULL when true, NORMAL otherwise.
  bool synchronous_full = true;
  // Open with SQLITE_OPEN_READONLY. The file must exist and its schema be
  // current; reads work and writes answer UNAVAILABLE.
  bool read_only = false;
  // Source of every timestamp the store writes. Not owned; must outlive
  // the store. Null means RealClock().
  Clock* clock = RealClock();
};

class SqliteJobStore;

// Opens (creating it if needed, unless read_only) and migrates the
// database at `options.path`. Messages name the path (they are for the
// operator). Errors:
//   INVALID_ARGUMENT     empty path
//   FAILED_PRECONDITION  the schema is newer than this binary, or the file
//                        needs a migration but cannot be written
//   DATA_LOSS            the file is not a SQLite database, or is corrupt
//   UNAVAILABLE          the file cannot be opened
//   others               as storage/sqlite_status.h maps them
absl::StatusOr<std::unique_ptr<SqliteJobStore>> OpenSqliteJobStore(
    const SqliteJobStoreOptions& options);

// The schema version this binary writes.
int SqliteSchemaVersion();

class SqliteJobStore final : public JobStore {
 public:
  ~SqliteJobStore() override;

  SqliteJobStore(const SqliteJobStore&) = delete;
  SqliteJobStore& operator=(const SqliteJobStore&) = delete;

  using JobStore::CreateJob;
  absl::StatusOr<v2::Job> CreateJob(const v2::Job& job,
                                    const std::vector<NewLogLine>& logs,
                                    const JobLease& lease) override;
  absl::StatusOr<v2::Job> GetJob(int64_t id) override;
  absl::StatusOr<JobPage> ListJobs(const JobQuery& query) override;
  absl::StatusOr<v2::Job> MutateJob(
      int64_t id,
      const std::function<absl::Status(JobMutation&)>& mutate) override;
  absl::Status DeleteJob(int64_t id) override;
  absl::StatusOr<std::vector<int64_t>> FindJobIds(
      const JobIdQuery& query) override;
  absl::StatusOr<JobLease> GetLease(int64_t id) override;

  void SetChangeListener(JobChangeListener listener) override;
  absl::StatusOr<JobChanges> ReadChanges(int64_t id, int64_t after_sequence,
                                         int max_logs) override;

  absl::Status AppendLogs(int64_t job_id,
                          const std::vector<NewLogLine>& lines) override;
  absl::StatusOr<std::vector<LogLine>> ReadLogs(int64_t job_id,
                                                int limit) override;

  absl::StatusOr<v2::ImportCatalogResponse> ImportCatalog(
      const v2::Catalog& catalog) override;
  absl::StatusOr<int64_t> SetCollectionCaptures(
      int64_t collection_id, const std::vector<v2::Capture>& captures) override;
  absl::StatusOr<std::vector<int64_t>> ListCollectionCaptureIds(
      int64_t collection_id) override;
  absl::StatusOr<v2::Project> GetProject(int64_t id) override;
  absl::StatusOr<v2::Deployment> GetDeployment(int64_t id) override;
  absl::StatusOr<v2::CaptureCollection> GetCaptureCollection(
      int64_t id) override;
  absl::StatusOr<v2::Capture> GetCapture(int64_t id) override;
  absl::StatusOr<v2::Pipeline> GetPipeline(int64_t id) override;
  absl::StatusOr<v2::DataExport> GetDataExport(int64_t id) override;

  // True if the database cannot be written (every write answers
  // UNAVAILABLE).
  bool read_only() const { return read_only_; }

  // The query plan SQLite chooses for the page query of `query` (EXPLAIN
  // QUERY PLAN, one step per line). For tests of index use.
  absl::StatusOr<std::string> TEST_ExplainListJobs(const JobQuery& query);

  // Transactions committed by writes so far, and writes waiting for a
  // batch now. For tests of group commit.
  int64_t TEST_commits() ABSL_LOCKS_EXCLUDED(mu_);
  int TEST_queued_writes() ABSL_LOCKS_EXCLUDED(queue_mu_);

  // The query plan SQLite chooses for FindJobIds(query), as above.
  absl::StatusOr<std::string> TEST_ExplainFindJobIds(const JobIdQuery& query);

 private:
  // A job's columns, as written by CreateJob and MutateJob.
  struct JobRow;

  friend absl::StatusOr<std::unique_ptr<SqliteJobStore>> OpenSqliteJobStore(
      const SqliteJobStoreOptions& options);

  SqliteJobStore(SqliteDbPtr db, Clock* clock, bool read_only);

  // The cached prepared statement for `sql`, prepared on first use.
  absl::StatusOr<sqlite3_stmt*> CachedLocked(absl::string_view sql)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Transactions. BeginWriteLocked refuses on a read-only database; the
  // End functions commit when `status` is OK and roll back otherwise, and
  // return `status` or the commit's error.
  absl::Status BeginWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status BeginReadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status EndLocked(absl::Status status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Current time of the clock, in microseconds since the Unix epoch.
  int64_t NowMicros();

  absl::StatusOr<v2::Job> ReadJobLocked(int64_t id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // NOT_FOUND "job <id> not found" for an unknown job.
  absl::StatusOr<JobLease> ReadLeaseLocked(int64_t id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // INVALID_ARGUMENT naming the field if a reference of `row` names no
  // record.
  absl::Status CheckJobReferencesLocked(const JobRow& row)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // True if `exists_sql` (one "?" for the id) finds a row for `id`.
  absl::StatusOr<bool> ExistsLocked(absl::string_view exists_sql, int64_t id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The writes: each fills `event` with what it wrote.
  absl::StatusOr<v2::Job> CreateJobLocked(const v2::Job& job,
                                          const std::vector<NewLogLine>& logs,
                                          const JobLease& lease,
                                          JobChangeEvent* event)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<v2::Job> MutateJobLocked(
      int64_t id, const std::function<absl::Status(JobMutation&)>& mutate,
      JobChangeEvent* event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Appends `lines` as change `sequence` of the job, adding them, with
  // their ids, to `inserted`.
  absl::Status InsertLogsLocked(int64_t job_id,
                                const std::vector<NewLogLine>& lines,
                                int64_t now, int64_t sequence,
                                std::vector<LogLine>* inserted)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records that change `sequence` gave the job `status`, adding it to
  // `event`.
  absl::Status InsertStatusChangeLocked(int64_t job_id, int64_t sequence,
                                        v2::JobStatus status, int64_t now,
                                        JobChangeEvent* event)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // ---- Group commit ----
  //
  // Every write runs through Write(): concurrent writes share one
  // transaction and one commit (so one fsync with synchronous=FULL), each
  // in a savepoint of its own, and none returns before the commit that
  // makes it durable. The first waiting writer leads: it runs every write
  // queued so far as a batch under mu_, commits, tells the listener of
  // each successful write in order, and wakes their writers.

  // The body of a write: runs under mu_ inside the batch's transaction and
  // fills the event the listener is told of (job_id 0: no event). An error
  // undoes the body's changes only.
  using WriteBody = std::function<absl::Status(JobChangeEvent*)>;
  struct PendingWrite {
    const WriteBody* body = nullptr;
    JobChangeEvent event;
    absl::Status status;
    bool done = false;  // Guarded by queue_mu_.
  };
  // Runs `body` in the next batch and returns its status, or the batch's
  // commit error.
  absl::Status Write(const WriteBody& body) ABSL_LOCKS_EXCLUDED(mu_, queue_mu_);
  void RunBatch(const std::vector<PendingWrite*>& batch)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Runs the cached statement `sql`, which returns no rows.
  absl::Status RunCachedLocked(absl::string_view sql, absl::string_view what)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<JobChanges> ReadChangesLocked(int64_t id,
                                               int64_t after_sequence,
                                               int max_logs)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<JobPage> ListJobsLocked(const JobQuery& query)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<v2::ImportCatalogResponse> ImportCatalogLocked(
      const v2::Catalog& catalog) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes capture `record` of a request, `where` naming it in errors
  // ("captures[3]"): INVALID_ARGUMENT if its deployment, when non-zero,
  // does not exist or its path is another capture's. A record whose id is
  // 0 takes the id of the capture stored with its path, or a new one; the
  // stored record holds that id. Returns the id. REQUIRES: record.id() >= 0,
  // and a non-empty path when it is 0.
  absl::StatusOr<int64_t> UpsertCaptureLocked(absl::string_view where,
                                              v2::Capture record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<int64_t> SetCollectionCapturesLocked(
      int64_t collection_id, const std::vector<v2::Capture>& captures)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The serialized record `id` read with `select_sql`. NOT_FOUND
  // "<kind> <id> not found".
  absl::StatusOr<std::string> ReadRecordLocked(absl::string_view select_sql,
                                               absl::string_view kind,
                                               int64_t id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  template <typename Record>
  absl::StatusOr<Record> GetRecord(absl::string_view select_sql,
                                   absl::string_view kind, int64_t id)
      ABSL_LOCKS_EXCLUDED(mu_);

  Clock* const clock_;  // Not owned.
  const bool read_only_;

  absl::Mutex mu_;
  // The connection. Used only under mu_.
  const SqliteDbPtr db_;
  // Prepared statements by SQL text; finalized before db_ closes.
  std::map<std::string, SqliteStmtPtr> statements_ ABSL_GUARDED_BY(mu_);
  JobChangeListener listener_ ABSL_GUARDED_BY(mu_);
  int64_t commits_ ABSL_GUARDED_BY(mu_) = 0;

  // Writes waiting for a batch, in arrival order, and whether a writer
  // leads batches now. queue_mu_ is never held while waiting for mu_.
  absl::Mutex queue_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  std::deque<PendingWrite*> queue_ ABSL_GUARDED_BY(queue_mu_);
  bool leading_ ABSL_GUARDED_BY(queue_mu_) = false;
};

}  // namespace jobline

#endif  // JOBLINE_STORAGE_SQLITE_JOB_STORE_H_
