// The REST face's event streams: the answer of a server-streaming method
// (JobService.WatchProgress) as Server-Sent Events or as NDJSON.
//
//   SSE (text/event-stream), one event per message:
//     id: 7
//     event: progress
//     data: {"sequence":7,"snapshot":false,"job":{...},...}
//   and at the end "event: end" with data {"status":"OK"}, or the error:
//   {"status":"NOT_FOUND","detail":"job 7 was deleted"}.
//
//   NDJSON (application/x-ndjson): the same data, one JSON text per line,
//   and a last line {"end":{"status":"OK"}}.
//
// A stream with nothing to send for a while sends a keep-alive (an SSE
// comment, or an empty line, which NDJSON readers skip), so that proxies
// keep an idle connection open.
//
// Thread safety: the functions are pure; StreamRegistry is safe for
// concurrent use; an EventStreamBody is used by one thread at a time.

#ifndef JOBLINE_SERVER_REST_EVENT_STREAM_H_
#define JOBLINE_SERVER_REST_EVENT_STREAM_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/job_document.h"
#include "google/protobuf/message.h"
#include "nlohmann/json.hpp"
#include "server/rest/http_message.h"
#include "server/rest/streaming_call.h"

namespace jobline {
namespace rest {

enum class StreamFormat { kSse, kNdjson };

// "text/event-stream" or "application/x-ndjson".
const char* StreamContentType(StreamFormat format);

// One message of a stream, ready to be written.
struct StreamEvent {
  // The SSE event id, from which a client resumes (Last-Event-ID); empty
  // for none.
  std::string id;
  // The SSE event type.
  std::string type;
  nlohmann::ordered_json data;
};

// The event of one message of a stream:
//   - a jobline.v2.WatchProgressResponse: id its sequence, type "snapshot"
//     or "progress", data {"sequence", "snapshot", "job" (the job document
//     as GET /api/v2/jobs/{id}/ renders it, JobDocument), "status_changes":
//     [{"sequence", "status", "changed_at" (naive local time)}], "logs":
//     [{"sequence", "level", "text"}]};
//   - any other message: no id, type "message", protobuf's JSON of it with
//     proto field names.
StreamEvent MessageEvent(const google::protobuf::Message& message,
                         const DocumentOptions& options);

// The text of `event` on the wire: "id: <id>\nevent: <type>\ndata:
// <JSON>\n\n" for SSE (no id line without an id), "<JSON>\n" for NDJSON.
std::string EventText(StreamFormat format, const StreamEvent& event);

// The last text of a stream that ended with `status`: the SSE event "end"
// or the NDJSON line {"end": ...}, whose object is {"status": "OK"} or,
// for an error, {"status": "<code name>", "detail": "<message>"} (no
// detail without a message).
std::string EndText(StreamFormat format, const absl::Status& status);

// ": keep-alive\n\n" for SSE, "\n" for NDJSON.
std::string KeepAliveText(StreamFormat format);

// The streams a REST face has open: at most `limit` at once, and all told
// to end when the server stops, so that every connection thread is free
// again.
class StreamRegistry {
 private:
  struct State;

 public:
  // A place for one open stream, given back when destroyed.
  class Slot {
   public:
    explicit Slot(std::shared_ptr<State> state) : state_(std::move(state)) {}
    ~Slot();
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;

    // Whether the stream is to end now (Shutdown() was called).
    bool stopping() const;

   private:
    const std::shared_ptr<State> state_;
  };

  // At most `limit` (at least 1) streams at once.
  explicit StreamRegistry(int limit);

  // A slot for one more stream. RESOURCE_EXHAUSTED "Too many open progress
  // streams (limit N)." when `limit` are open; UNAVAILABLE after
  // Shutdown().
  absl::StatusOr<std::unique_ptr<Slot>> Admit();

  // Refuses new streams and tells the open ones to end. Idempotent.
  void Shutdown();

  // Streams open now.
  int open() const;

 private:
  const std::shared_ptr<State> state_;
};

struct StreamBodyOptions {
  StreamFormat format = StreamFormat::kSse;
  // How the messages' documents are rendered (base URL, zone).
  DocumentOptions document;
  // Silence after which a keep-alive is sent.
  absl::Duration keep_alive = absl::Seconds(15);
  // How often an idle stream checks that its client is still there and
  // that the server does not stop.
  absl::Duration check_interval = absl::Milliseconds(200);
};

// The body of a stream answer: the events of `call`'s messages as they
// come, then the end event.
//
// Open() reads the first message before anything is answered, so that a
// call that fails at once (an unknown job, a bad request) is answered as a
// plain HTTP error rather than as a 200 stream. Run() then writes that
// message's event and every next one. It ends early when the client goes
// away (a failed write, or HttpBodySink::IsWritable() false at a check):
// the call is cancelled at once. When the registry shuts down it cancels
// the call and ends with an UNAVAILABLE end event.
class EventStreamBody final : public HttpBodyStream {
 public:
  // `response_type` is the method's output message type, from the
  // generated pool.
  EventStreamBody(std::unique_ptr<StreamingCall> call,
                  std::unique_ptr<StreamRegistry::Slot> slot,
                  const google::protobuf::Descriptor* response_type,
                  StreamBodyOptions options);

  // Waits until `deadline` for the first message. OK when it came, or when
  // the stream ended with OK before any; otherwise the error to answer
  // instead of the stream: the call's status, DEADLINE_EXCEEDED past
  // `deadline`, UNAVAILABLE when the server stops meanwhile.
  absl::Status Open(absl::Time deadline);

  // Writes the stream; false when the client went away. REQUIRES: Open()
  // returned OK.
  bool Run(HttpBodySink& sink) override;

 private:
  // The event text of the serialized message `bytes`; INTERNAL when it
  // does not parse.
  absl::StatusOr<std::string> Render(const std::string& bytes) const;
  // How the call ended, once Read() gave kEnd.
  absl::Status EndStatus();
  // Whether the registry shuts down; the first time, cancels the call.
  bool CheckStopping();

  // Declared before the call, so that a call still open is cancelled and
  // released before its slot is given back.
  std::unique_ptr<StreamRegistry::Slot> slot_;
  std::unique_ptr<StreamingCall> call_;
  // The generated factory's message of the response type; not owned.
  const google::protobuf::Message* const prototype_;
  const StreamBodyOptions options_;
  // The first message, read by Open() and not yet written.
  std::optional<std::string> first_;
  // How the call ended, when Open() saw it end.
  std::optional<absl::Status> end_;
  // Whether the call was cancelled because the server stops.
  bool stopping_ = false;
};

}  // namespace rest
}  // namespace jobline

#endif  // JOBLINE_SERVER_REST_EVENT_STREAM_H_
