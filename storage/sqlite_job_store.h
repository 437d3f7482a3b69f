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
//   - progress and result are stored as serialized messages; a write whose
//     progress or result holds a NaN or an infinity (JSON cannot show it)
//     or a string that is not UTF-8 is refused with INVALID_ARGUMENT
//     naming the field.
//   - A database opened read-only (the read_only option, or a file the
//     process cannot write) answers every write with UNAVAILABLE.
//   - The MutateJob callback runs under the store's lock: it must not call
//     back into the store.
//
// Thread safety: safe for concurrent use. Writes share one connection (the
// writer) and are serialized by an internal mutex; a write is acknowledged
// only after its COMMIT. Reads of a file database that can be written run
// on a small pool of read-only connections, each with its own mutex, so
// they never wait for the writer (WAL lets them read beside it); each read
// sees every commit made before it began, so every acknowledged write.
// ":memory:" and read-only databases serve reads on the writer's
// connection too. Reads inside MutateJob use the writer's connection.

#ifndef JOBLINE_STORAGE_SQLITE_JOB_STORE_H_
#define JOBLINE_STORAGE_SQLITE_JOB_STORE_H_

#include <sqlite3.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
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
  // Read-only connections that serve reads beside the writer, for a file
  // database that can be written (ignored otherwise). 0: every read shares
  // the writer's connection and mutex.
  int read_connections = 4;
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

  // Sets a function that the writer calls after the writes of each batch
  // and before its COMMIT, with the writer's lock and the database's write
  // lock held (empty: none). For tests that hold a write open.
  void TEST_SetBeforeCommitHook(std::function<void()> hook)
      ABSL_LOCKS_EXCLUDED(mu_);

  // The query plan SQLite chooses for FindJobIds(query), as above.
  absl::StatusOr<std::string> TEST_ExplainFindJobIds(const JobIdQuery& query);

 private:
  // A job's columns, as written by CreateJob and MutateJob.
  struct JobRow;

  // One read-only connection of the pool, used only under its mutex.
  struct Reader {
    explicit Reader(SqliteDbPtr db);
    absl::Mutex mu;
    SqliteConnection connection ABSL_GUARDED_BY(mu);
  };

  friend absl::StatusOr<std::unique_ptr<SqliteJobStore>> OpenSqliteJobStore(
      const SqliteJobStoreOptions& options);

  SqliteJobStore(SqliteDbPtr db, std::vector<SqliteDbPtr> readers, Clock* clock,
                 bool read_only);

  // Runs `read` (a callable taking SqliteConnection&) on a connection for
  // reads, and returns its result: a free reader of the pool, or the next
  // in turn once it is free; without a pool, the writer's under mu_.
  // (No static analysis: which reader's mutex is held is known only at run
  // time.)
  template <typename ReadFn>
  ABSL_NO_THREAD_SAFETY_ANALYSIS auto WithReadConnection(const ReadFn& read)
      -> decltype(read(std::declval<SqliteConnection&>()));

  // The writer's transactions. BeginWriteLocked refuses on a read-only
  // database; EndLocked commits when `status` is OK and rolls back
  // otherwise, and returns `status` or the commit's error.
  absl::Status BeginWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status EndLocked(absl::Status status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Current time of the clock, in microseconds since the Unix epoch.
  int64_t NowMicros();

  // Reads the records the references of `row` name into `job` (as GetJob
  // fills them). INVALID_ARGUMENT "<field>: record <id> does not exist" for
  // the first reference that names no record. A reference whose id is
  // `stored`'s (when given) takes its record from `stored_records`, the
  // records read with the stored row, instead.
  absl::Status ReadJobReferencesLocked(const JobRow& row, v2::Job* job,
                                       const JobRow* stored = nullptr,
                                       const v2::Job* stored_records = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Parses the record `id` read with `select_sql` into `record`; errors as
  // above, `field` naming the reference.
  absl::Status ReadJobRecordLocked(absl::string_view field,
                                   absl::string_view select_sql, int64_t id,
                                   google::protobuf::Message* record)
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
  template <typename Record>
  absl::StatusOr<Record> GetRecord(absl::string_view select_sql,
                                   absl::string_view kind, int64_t id)
      ABSL_LOCKS_EXCLUDED(mu_);

  Clock* const clock_;  // Not owned.
  const bool read_only_;

  // Held by the writer for a whole batch, COMMIT included.
  absl::Mutex mu_;
  // The writer's connection and its statements: every write, and every
  // read of a store without readers.
  SqliteConnection writer_ ABSL_GUARDED_BY(mu_);
  JobChangeListener listener_ ABSL_GUARDED_BY(mu_);
  int64_t commits_ ABSL_GUARDED_BY(mu_) = 0;
  std::function<void()> before_commit_hook_ ABSL_GUARDED_BY(mu_);

  // The read-only connections; fixed after construction (empty for
  // ":memory:" and read-only stores). No reader's mutex is held while
  // waiting for mu_ or queue_mu_, nor the other way round.
  const std::vector<std::unique_ptr<Reader>> readers_;
  // Where the next read starts looking for a free reader.
  std::atomic<size_t> next_reader_{0};

  // Writes waiting for a batch, in arrival order, and whether a writer
  // leads batches now. queue_mu_ is never held while waiting for mu_.
  absl::Mutex queue_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  std::deque<PendingWrite*> queue_ ABSL_GUARDED_BY(queue_mu_);
  bool leading_ ABSL_GUARDED_BY(queue_mu_) = false;
};

}  // namespace jobline

#endif  // JOBLINE_STORAGE_SQLITE_JOB_STORE_H_
