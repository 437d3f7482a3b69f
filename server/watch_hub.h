// WatchHub: the live progress of jobs, to many watchers at once
// (JobService.WatchProgress).
//
// The store tells the hub of every committed write, in commit order
// (JobStore::SetChangeListener, wired to OnCommit). For each job somebody
// watches, the hub keeps the job's newest document and a window of its
// recent changes, and gives each watcher the changes after the last one it
// was sent:
//   - one message per change while the watcher keeps up;
//   - what it missed, batched into its next message, when it reads slowly.
//     OnCommit only records the change, and each watcher has at most one
//     write in flight, so a slow watcher slows neither the writer nor the
//     other watchers, and its memory stays one message;
//   - changes older than the window are read back from the store
//     (JobStore::ReadChanges): statuses and log lines are stored with their
//     sequence, so a watcher that resumes with after_sequence gets exactly
//     what it missed, also after a restart. When it missed more than
//     max_replay_logs lines it gets a fresh snapshot instead.
// Every status the job entered and every log line reach every watcher that
// stays connected; intermediate progress values may be merged into the
// newest document.
//
// A stream ends with OK right after a message whose job is final (SUCCESS,
// FAILURE, REVOKED), with NOT_FOUND when the job is deleted, and with
// UNAVAILABLE at Shutdown().
//
// Streams are gRPC callback reactors: no thread is held per stream, and the
// synchronous pool stays free for unary calls. One delivery thread wakes the
// idle watchers of the jobs that changed; the next write of a busy watcher
// starts from gRPC's completion of the previous one. Messages of watchers
// at the same point are built once and shared.
//
// Thread safety: every public method may be called from any thread.

#ifndef JOBLINE_SERVER_WATCH_HUB_H_
#define JOBLINE_SERVER_WATCH_HUB_H_

#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/server_callback.h"
#include "jobline/v2/jobs.pb.h"
#include "storage/job_store.h"

namespace jobline {

// A message of a stream, built once for every watcher at the same point:
// the response, and its wire form, serialized once (server/watch_hub.cc).
struct WatchMessage;

struct WatchHubOptions {
  // Zone of the timestamps inside log line texts.
  absl::TimeZone zone = absl::UTCTimeZone();
  // Open streams allowed in all and per job; past them a new watch is
  // RESOURCE_EXHAUSTED.
  int max_watchers = 20000;
  int max_watchers_per_job = 10000;
  // Recent changes kept in memory per watched job.
  int window_changes = 256;
  // Most log lines replayed to one watcher from the store; a watcher that
  // missed more gets a snapshot.
  int max_replay_logs = 5000;
};

class WatchHub {
 public:
  // `store` is not owned and must outlive the hub. The caller wires the
  // store's change listener to OnCommit.
  explicit WatchHub(JobStore* store, WatchHubOptions options = {});
  // Stops the delivery thread. REQUIRES: Shutdown() was called and the
  // gRPC server has finished every call (its Shutdown returned).
  ~WatchHub();

  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;

  // Starts the stream of one WatchProgress call; gRPC owns the reactor
  // until its OnDone. Errors finish the stream at once: INVALID_ARGUMENT
  // for a negative after_sequence or a logs_limit outside 1..5000
  // (naming the field), NOT_FOUND for an unknown job, RESOURCE_EXHAUSTED
  // past a watcher limit, UNAVAILABLE after Shutdown().
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Watch(
      grpc::CallbackServerContext* context,
      const v2::WatchProgressRequest& request) ABSL_LOCKS_EXCLUDED(mu_);

  // Records a committed change (the store's change listener). Quick: it
  // never writes to a stream itself.
  void OnCommit(const JobChangeEvent& event) ABSL_LOCKS_EXCLUDED(mu_);

  // Finishes every open stream with UNAVAILABLE and refuses new ones. A
  // stream whose client does not read finishes when the gRPC server's
  // shutdown deadline cancels its call.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

  // Streams open now.
  int open_streams() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  class Feed;
  class Stream;
  friend class Stream;

  // The feed of `job_id`, made if needed, with `stream` registered on it;
  // RESOURCE_EXHAUSTED past a limit, UNAVAILABLE after Shutdown().
  absl::StatusOr<std::shared_ptr<Feed>> Register(
      int64_t job_id, const std::shared_ptr<Stream>& stream)
      ABSL_LOCKS_EXCLUDED(mu_);
  void Unregister(const std::shared_ptr<Feed>& feed, Stream* stream)
      ABSL_LOCKS_EXCLUDED(mu_);

  // The first message of a stream: a snapshot, or the changes after
  // `after_sequence` read from the store.
  absl::StatusOr<std::shared_ptr<const WatchMessage>> FirstMessage(
      int64_t job_id, int64_t after_sequence, int logs_limit);
  // A snapshot of the job as stored now, with its newest `logs_limit`
  // lines.
  absl::StatusOr<std::shared_ptr<const WatchMessage>> Snapshot(int64_t job_id,
                                                               int logs_limit);
  // The next message for a watcher at `cursor`: null when nothing is
  // newer; NOT_FOUND once the job is deleted.
  absl::StatusOr<std::shared_ptr<const WatchMessage>> NextMessage(
      Feed& feed, int64_t cursor, int logs_limit);

  void DeliveryLoop() ABSL_LOCKS_EXCLUDED(mu_);
  bool HasDeliveryWork() const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  JobStore* const store_;  // Not owned.
  const WatchHubOptions options_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<int64_t, std::shared_ptr<Feed>> feeds_
      ABSL_GUARDED_BY(mu_);
  // Feeds with changes their idle watchers have not been given.
  std::vector<std::shared_ptr<Feed>> dirty_ ABSL_GUARDED_BY(mu_);
  int open_streams_ ABSL_GUARDED_BY(mu_) = 0;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread delivery_;
};

}  // namespace jobline

#endif  // JOBLINE_SERVER_WATCH_HUB_H_
