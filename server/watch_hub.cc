#include "server/watch_hub.h"

#include <deque>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "google/protobuf/util/time_util.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/status.h"
#include "server/job_manager.h"
#include "server/job_rules.h"
#include "server/status_util.h"
#include "storage/status_macros.h"

namespace jobline {
namespace {

using Response = v2::WatchProgressResponse;
using ResponsePtr = std::shared_ptr<const WatchMessage>;
using google::protobuf::util::TimeUtil;

// Log lines in a snapshot when the request names no limit.
constexpr int kDefaultSnapshotLogs = 100;

void AddStatusChange(const StatusChange& change, Response* response) {
  v2::JobStatusChange* out = response->add_status_changes();
  out->set_sequence(change.sequence);
  out->set_status(change.status);
  *out->mutable_changed_at() =
      TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(change.changed_at));
}

void AddLogLine(const LogLine& line, absl::TimeZone zone, Response* response) {
  v2::JobLogLine* out = response->add_logs();
  out->set_sequence(line.sequence);
  out->set_level(LogLevelName(line.level));
  out->set_text(FormatLogLine(line, zone));
}

// A stream that fails before it starts.
class FailedStream final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  explicit FailedStream(const absl::Status& status) {
    Finish(ToGrpcStatus(status));
  }
  void OnDone() override { delete this; }
};

}  // namespace

struct WatchMessage {
  Response response;
  // `response` serialized; every stream writes these same bytes (gRPC
  // shares their slices, it does not copy them).
  grpc::ByteBuffer bytes;
};

namespace {

// `response` with its wire form.
ResponsePtr Serialized(Response response) {
  auto message = std::make_shared<WatchMessage>();
  bool own_buffer = false;
  const grpc::Status serialized =
      grpc::SerializationTraits<Response>::Serialize(response, &message->bytes,
                                                     &own_buffer);
  // Only a message past protobuf's 2 GiB fails: a job's log limits keep
  // every message far below it.
  if (!serialized.ok()) {
    LOG(ERROR) << "serializing a WatchProgress message failed: "
               << serialized.error_message();
  }
  message->response = std::move(response);
  return message;
}

}  // namespace

// What the hub keeps of one watched job. Exists while it has watchers.
class WatchHub::Feed {
 public:
  explicit Feed(int64_t job_id) : job_id_(job_id) {}

  int64_t job_id() const { return job_id_; }

  // Records a committed change of the job.
  void Record(const JobChangeEvent& event, int window_changes)
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (event.deleted) {
      deleted_ = true;
      return;
    }
    if (event.sequence <= latest_) return;  // Known from a seed.
    if (floor_ < 0) floor_ = event.sequence - 1;
    latest_ = event.sequence;
    if (event.job != nullptr) SetDocumentLocked(event.job);
    Change& change = window_.emplace_back();
    change.sequence = event.sequence;
    change.status_change = event.status_change;
    change.logs = event.logs;
    while (static_cast<int>(window_.size()) > window_changes) {
      floor_ = window_.front().sequence;
      window_.pop_front();
    }
  }

  // Gives the feed a document read from the store, when it is newer than
  // what the feed has.
  void Seed(const v2::Job& job) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (document_ != nullptr && job.sequence() <= document_->sequence()) {
      return;
    }
    v2::Job stored = job;
    stored.clear_logs();
    SetDocumentLocked(std::make_shared<const v2::Job>(std::move(stored)));
    if (latest_ < job.sequence()) {
      // Nothing in the window is older than the seed; later changes
      // continue from it.
      latest_ = job.sequence();
      floor_ = job.sequence();
      window_.clear();
    }
  }

  bool deleted() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return deleted_;
  }

  // Whether something happened after `cursor`.
  bool HasNews(int64_t cursor) const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return deleted_ || latest_ > cursor;
  }

  enum class Outcome { kNothing, kMessage, kFromStore, kDeleted };

  // The message after `cursor` from the window, shared by every watcher
  // at the same cursor.
  Outcome Next(int64_t cursor, absl::TimeZone zone, ResponsePtr* message)
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (deleted_) return Outcome::kDeleted;
    if (latest_ <= cursor) return Outcome::kNothing;
    if (floor_ < 0 || cursor < floor_ || document_ == nullptr) {
      return Outcome::kFromStore;
    }
    if (cached_ != nullptr && cached_cursor_ == cursor &&
        cached_->response.sequence() == latest_) {
      *message = cached_;
      return Outcome::kMessage;
    }
    if (decorated_ == nullptr) {
      v2::Job decorated = *document_;
      DecorateJob(decorated);
      decorated_ = std::make_shared<const v2::Job>(std::move(decorated));
    }
    Response response;
    response.set_sequence(latest_);
    *response.mutable_job() = *decorated_;
    response.mutable_job()->set_sequence(latest_);
    for (const Change& change : window_) {
      if (change.sequence <= cursor) continue;
      if (change.status_change.has_value()) {
        AddStatusChange(*change.status_change, &response);
      }
      for (const LogLine& line : change.logs) {
        AddLogLine(line, zone, &response);
      }
    }
    // Serialized here, once for every watcher at this cursor.
    cached_ = Serialized(std::move(response));
    cached_cursor_ = cursor;
    *message = cached_;
    return Outcome::kMessage;
  }

  // The streams of the job, strongly held for the caller's use.
  std::vector<std::shared_ptr<Stream>> Streams() const
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    std::vector<std::shared_ptr<Stream>> streams;
    streams.reserve(streams_.size());
    for (const auto& [raw, weak] : streams_) {
      if (std::shared_ptr<Stream> stream = weak.lock()) {
        streams.push_back(std::move(stream));
      }
    }
    return streams;
  }

  void Add(const std::shared_ptr<Stream>& stream) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    streams_.emplace(stream.get(), stream);
  }
  // Returns the streams left.
  int Remove(Stream* stream) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    streams_.erase(stream);
    return static_cast<int>(streams_.size());
  }
  int size() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return static_cast<int>(streams_.size());
  }

  // Guarded by WatchHub::mu_: whether the feed is queued for delivery.
  bool queued = false;

 private:
  struct Change {
    int64_t sequence = 0;
    std::optional<StatusChange> status_change;
    std::vector<LogLine> logs;
  };

  // Decoration waits for the first message that needs it, so that Record,
  // which runs under the store's lock, stays quick.
  void SetDocumentLocked(std::shared_ptr<const v2::Job> job)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    document_ = std::move(job);
    decorated_.reset();
  }

  const int64_t job_id_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<Stream*, std::weak_ptr<Stream>> streams_
      ABSL_GUARDED_BY(mu_);
  // The newest sequence known, and the window: the changes with a sequence
  // in (floor_, latest_], oldest first. floor_ is -1 until the first
  // change or seed.
  int64_t latest_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t floor_ ABSL_GUARDED_BY(mu_) = -1;
  std::deque<Change> window_ ABSL_GUARDED_BY(mu_);
  // The newest document as stored, and decorated as the API shows it (null
  // until a message needs it).
  std::shared_ptr<const v2::Job> document_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const v2::Job> decorated_ ABSL_GUARDED_BY(mu_);
  bool deleted_ ABSL_GUARDED_BY(mu_) = false;
  // The last message built, for watchers at the same cursor.
  ResponsePtr cached_ ABSL_GUARDED_BY(mu_);
  int64_t cached_cursor_ ABSL_GUARDED_BY(mu_) = -1;
};

// One WatchProgress call. Owns itself (self_) from Start() to OnDone().
//
// At most one write is in flight: the thread that sets writing_ is the only
// one that builds and starts the next write, and the only one that touches
// cursor_, until OnWriteDone.
class WatchHub::Stream final
    : public grpc::ServerWriteReactor<grpc::ByteBuffer>,
      public std::enable_shared_from_this<Stream> {
 public:
  Stream(WatchHub* hub, int64_t job_id, int logs_limit)
      : hub_(hub), job_id_(job_id), logs_limit_(logs_limit) {}

  // Registers the stream and sends its first message. Returns the error
  // that ends it at once, after which the caller must not use it.
  absl::Status Start(int64_t after_sequence) {
    self_ = shared_from_this();
    absl::StatusOr<std::shared_ptr<Feed>> feed = hub_->Register(job_id_, self_);
    if (!feed.ok()) {
      self_.reset();
      return feed.status();
    }
    feed_ = *std::move(feed);
    // Registered first, read second: a change committed in between is in
    // the feed's window, after the cursor of the first message.
    absl::StatusOr<ResponsePtr> first =
        hub_->FirstMessage(job_id_, after_sequence, logs_limit_);
    if (!first.ok()) {
      hub_->Unregister(feed_, this);
      feed_.reset();
      self_.reset();
      return first.status();
    }
    feed_->Seed((*first)->response.job());
    Write(*std::move(first));
    return absl::OkStatus();
  }

  // Starts the next write if the stream is idle and something is newer
  // than what it was sent.
  void Pump() ABSL_LOCKS_EXCLUDED(mu_) {
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        if (writing_ || finished_) return;
        writing_ = true;
      }
      absl::StatusOr<ResponsePtr> next =
          hub_->NextMessage(*feed_, cursor_, logs_limit_);
      if (!next.ok()) {
        Release();
        End(next.status());
        return;
      }
      if (*next != nullptr) {
        Write(*std::move(next));
        return;
      }
      Release();
      if (!feed_->HasNews(cursor_)) return;
    }
  }

  // Ends the stream with `status` now, or after the write in flight.
  void End(const absl::Status& status) ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      if (writing_) {
        if (!pending_end_.has_value()) pending_end_ = status;
        return;
      }
      finished_ = true;
    }
    Finish(ToGrpcStatus(status));
  }

  void OnWriteDone(bool ok) override {
    std::optional<absl::Status> end;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      in_flight_.reset();
      if (!ok && !pending_end_.has_value()) {
        // The call is over (cancelled, or the server is stopping).
        pending_end_ = absl::CancelledError("the watcher went away");
      }
      end = pending_end_;
    }
    if (end.has_value()) {
      End(*end);
      return;
    }
    Pump();
  }

  void OnCancel() override { End(absl::CancelledError("cancelled")); }

  void OnDone() override {
    // gRPC calls OnDone after every other reaction; taking the lock once
    // more also makes their end visible to ThreadSanitizer, which cannot
    // see gRPC's own ordering.
    { absl::MutexLock lock(&mu_); }
    hub_->Unregister(feed_, this);
    std::shared_ptr<Stream> self = std::move(self_);
    // `self` may be the last owner: this ends with the function.
  }

 private:
  // Gives up the write claim without writing.
  void Release() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    writing_ = false;
  }

  // Writes `message`; the last one, with OK, when its job is final.
  // REQUIRES: the write claim (writing_ set by this thread).
  void Write(ResponsePtr message) ABSL_LOCKS_EXCLUDED(mu_) {
    cursor_ = message->response.sequence();
    const grpc::ByteBuffer* raw = &message->bytes;
    const bool last = IsFinalStatus(message->response.job().status());
    {
      absl::MutexLock lock(&mu_);
      in_flight_ = std::move(message);
      if (last) finished_ = true;
    }
    if (last) {
      StartWriteAndFinish(raw, grpc::WriteOptions(), grpc::Status::OK);
    } else {
      StartWrite(raw);
    }
  }

  WatchHub* const hub_;
  const int64_t job_id_;
  const int logs_limit_;
  std::shared_ptr<Feed> feed_;
  std::shared_ptr<Stream> self_;
  // The sequence of the last message started; see the class comment.
  int64_t cursor_ = 0;

  absl::Mutex mu_;
  // Set from the start: Start() holds the write claim for the first
  // message, so that no delivery overtakes it.
  bool writing_ ABSL_GUARDED_BY(mu_) = true;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<absl::Status> pending_end_ ABSL_GUARDED_BY(mu_);
  // The message being written; gRPC reads it until OnWriteDone.
  ResponsePtr in_flight_ ABSL_GUARDED_BY(mu_);
};

WatchHub::WatchHub(JobStore* store, WatchHubOptions options)
    : store_(store), options_(std::move(options)) {
  delivery_ = std::thread([this] { DeliveryLoop(); });
}

WatchHub::~WatchHub() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  delivery_.join();
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* WatchHub::Watch(
    grpc::CallbackServerContext* context,
    const v2::WatchProgressRequest& request) {
  (void)context;
  if (request.after_sequence() < 0) {
    return new FailedStream(InvalidFieldError(
        "after_sequence", "Ensure this value is greater than or equal to 0."));
  }
  int logs_limit = kDefaultSnapshotLogs;
  if (request.has_logs_limit()) {
    if (request.logs_limit() < 1 || request.logs_limit() > kMaxLogsLimit) {
      return new FailedStream(InvalidFieldError(
          "logs_limit", absl::StrCat("Ensure this value is between 1 and ",
                                     kMaxLogsLimit, ".")));
    }
    logs_limit = request.logs_limit();
  }
  auto stream = std::make_shared<Stream>(this, request.job_id(), logs_limit);
  if (absl::Status started = stream->Start(request.after_sequence());
      !started.ok()) {
    return new FailedStream(started);
  }
  return stream.get();
}

void WatchHub::OnCommit(const JobChangeEvent& event) {
  std::shared_ptr<Feed> feed;
  {
    absl::MutexLock lock(&mu_);
    auto it = feeds_.find(event.job_id);
    if (it == feeds_.end()) return;
    feed = it->second;
  }
  feed->Record(event, options_.window_changes);
  absl::MutexLock lock(&mu_);
  if (!feed->queued) {
    feed->queued = true;
    dirty_.push_back(std::move(feed));
  }
}

void WatchHub::Shutdown() {
  std::vector<std::shared_ptr<Feed>> feeds;
  {
    absl::MutexLock lock(&mu_);
    shut_down_ = true;
    for (const auto& [id, feed] : feeds_) feeds.push_back(feed);
  }
  const absl::Status unavailable = absl::UnavailableError(
      "the server is shutting down; watch again with after_sequence to "
      "resume");
  for (const std::shared_ptr<Feed>& feed : feeds) {
    for (const std::shared_ptr<Stream>& stream : feed->Streams()) {
      stream->End(unavailable);
    }
  }
}

int WatchHub::open_streams() const {
  absl::MutexLock lock(&mu_);
  return open_streams_;
}

absl::StatusOr<std::shared_ptr<WatchHub::Feed>> WatchHub::Register(
    int64_t job_id, const std::shared_ptr<Stream>& stream) {
  absl::MutexLock lock(&mu_);
  if (shut_down_) {
    return absl::UnavailableError("the server is shutting down");
  }
  if (open_streams_ >= options_.max_watchers) {
    return absl::ResourceExhaustedError(
        absl::StrCat("too many watchers: the server allows ",
                     options_.max_watchers, " (--max_watchers)"));
  }
  // A deleted job's feed stays with its streams until they end; a job
  // made since with the same id gets a feed of its own.
  std::shared_ptr<Feed>& feed = feeds_[job_id];
  if (feed == nullptr || feed->deleted()) {
    feed = std::make_shared<Feed>(job_id);
  }
  if (feed->size() >= options_.max_watchers_per_job) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "too many watchers of job ", job_id, ": the server allows ",
        options_.max_watchers_per_job, " (--max_watchers_per_job)"));
  }
  feed->Add(stream);
  ++open_streams_;
  return feed;
}

void WatchHub::Unregister(const std::shared_ptr<Feed>& feed, Stream* stream) {
  if (feed == nullptr) return;
  absl::MutexLock lock(&mu_);
  --open_streams_;
  if (feed->Remove(stream) == 0) {
    auto it = feeds_.find(feed->job_id());
    if (it != feeds_.end() && it->second == feed) feeds_.erase(it);
  }
}

absl::StatusOr<ResponsePtr> WatchHub::Snapshot(int64_t job_id, int logs_limit) {
  JOBS_ASSIGN_OR_RETURN(v2::Job job, store_->GetJob(job_id));
  JOBS_ASSIGN_OR_RETURN(std::vector<LogLine> lines,
                        store_->ReadLogs(job_id, logs_limit));
  // Lines newer than the document come in the messages after it.
  std::vector<LogLine> shown;
  for (LogLine& line : lines) {
    if (line.sequence <= job.sequence()) shown.push_back(std::move(line));
  }
  Response response;
  response.set_sequence(job.sequence());
  response.set_snapshot(true);
  DecorateJob(job);
  FillLogs(shown, options_.zone, job);
  *response.mutable_job() = std::move(job);
  return Serialized(std::move(response));
}

absl::StatusOr<ResponsePtr> WatchHub::FirstMessage(int64_t job_id,
                                                   int64_t after_sequence,
                                                   int logs_limit) {
  if (after_sequence == 0) return Snapshot(job_id, logs_limit);
  JOBS_ASSIGN_OR_RETURN(
      JobChanges changes,
      store_->ReadChanges(job_id, after_sequence, options_.max_replay_logs));
  if (changes.too_many_logs || after_sequence > changes.job.sequence()) {
    // What it missed is more than the server replays, or the sequence is
    // not one of this job's.
    return Snapshot(job_id, logs_limit);
  }
  Response response;
  response.set_sequence(changes.job.sequence());
  for (const StatusChange& change : changes.status_changes) {
    AddStatusChange(change, &response);
  }
  for (const LogLine& line : changes.logs) {
    AddLogLine(line, options_.zone, &response);
  }
  DecorateJob(changes.job);
  *response.mutable_job() = std::move(changes.job);
  return Serialized(std::move(response));
}

absl::StatusOr<ResponsePtr> WatchHub::NextMessage(Feed& feed, int64_t cursor,
                                                  int logs_limit) {
  ResponsePtr message;
  switch (feed.Next(cursor, options_.zone, &message)) {
    case Feed::Outcome::kNothing:
      return ResponsePtr();
    case Feed::Outcome::kMessage:
      return message;
    case Feed::Outcome::kDeleted:
      return absl::NotFoundError(
          absl::StrCat("job ", feed.job_id(), " was deleted"));
    case Feed::Outcome::kFromStore:
      break;
  }
  // The watcher is behind the window: the store has every status and line.
  absl::StatusOr<ResponsePtr> replay =
      FirstMessage(feed.job_id(), cursor, logs_limit);
  if (absl::IsNotFound(replay.status())) {
    return absl::NotFoundError(
        absl::StrCat("job ", feed.job_id(), " was deleted"));
  }
  if (replay.ok() && (*replay)->response.sequence() <= cursor) {
    return ResponsePtr();
  }
  return replay;
}

bool WatchHub::HasDeliveryWork() const { return stopping_ || !dirty_.empty(); }

void WatchHub::DeliveryLoop() {
  while (true) {
    std::vector<std::shared_ptr<Feed>> feeds;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &WatchHub::HasDeliveryWork));
      if (stopping_) return;
      feeds.swap(dirty_);
      for (const std::shared_ptr<Feed>& feed : feeds) feed->queued = false;
    }
    for (const std::shared_ptr<Feed>& feed : feeds) {
      for (const std::shared_ptr<Stream>& stream : feed->Streams()) {
        stream->Pump();
      }
    }
  }
}

}  // namespace jobline
