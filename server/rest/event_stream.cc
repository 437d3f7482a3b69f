#include "server/rest/event_stream.h"

#include <algorithm>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/status_util.h"
#include "glog/logging.h"
#include "google/protobuf/util/json_util.h"
#include "jobline/v2/jobs.pb.h"
#include "server/rest/error_mapping.h"

namespace jobline {
namespace rest {
namespace {

using ::google::protobuf::Message;
using Json = nlohmann::ordered_json;

constexpr char kStoppingMessage[] =
    "The server is shutting down; reconnect with Last-Event-ID to resume.";

Json ProgressData(const v2::WatchProgressResponse& progress,
                  const DocumentOptions& options) {
  Json data = Json::object();
  data["sequence"] = progress.sequence();
  data["snapshot"] = progress.snapshot();
  data["job"] = JobDocument(progress.job(), JobView::kDetail, options);
  Json changes = Json::array();
  for (const v2::JobStatusChange& change : progress.status_changes()) {
    Json item = Json::object();
    item["sequence"] = change.sequence();
    item["status"] = v2::JobStatus_Name(change.status());
    item["changed_at"] = IsoDateTime(change.changed_at(), options.zone);
    changes.push_back(std::move(item));
  }
  data["status_changes"] = std::move(changes);
  Json logs = Json::array();
  for (const v2::JobLogLine& line : progress.logs()) {
    Json item = Json::object();
    item["sequence"] = line.sequence();
    item["level"] = line.level();
    item["text"] = line.text();
    logs.push_back(std::move(item));
  }
  data["logs"] = std::move(logs);
  return data;
}

}  // namespace

const char* StreamContentType(StreamFormat format) {
  return format == StreamFormat::kSse ? "text/event-stream"
                                      : "application/x-ndjson";
}

StreamEvent MessageEvent(const Message& message,
                         const DocumentOptions& options) {
  StreamEvent event;
  if (const auto* progress =
          dynamic_cast<const v2::WatchProgressResponse*>(&message)) {
    event.id = absl::StrCat(progress->sequence());
    event.type = progress->snapshot() ? "snapshot" : "progress";
    event.data = ProgressData(*progress, options);
    return event;
  }
  event.type = "message";
  google::protobuf::util::JsonPrintOptions print_options;
  print_options.preserve_proto_field_names = true;
  print_options.always_print_primitive_fields = true;
  std::string text;
  event.data = Json::object();
  if (google::protobuf::util::MessageToJsonString(message, &text, print_options)
          .ok()) {
    event.data = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  }
  return event;
}

std::string EventText(StreamFormat format, const StreamEvent& event) {
  // The JSON text is one line: JSON escapes every line break in strings.
  const std::string data = ToJsonText(event.data);
  if (format == StreamFormat::kNdjson) return absl::StrCat(data, "\n");
  std::string text;
  if (!event.id.empty()) absl::StrAppend(&text, "id: ", event.id, "\n");
  absl::StrAppend(&text, "event: ", event.type, "\ndata: ", data, "\n\n");
  return text;
}

std::string EndText(StreamFormat format, const absl::Status& status) {
  Json end = Json::object();
  end["status"] = absl::StatusCodeToString(status.code());
  if (!status.ok() && !status.message().empty()) {
    end["detail"] = std::string(status.message());
  }
  if (format == StreamFormat::kNdjson) {
    Json line = Json::object();
    line["end"] = std::move(end);
    return absl::StrCat(ToJsonText(line), "\n");
  }
  return absl::StrCat("event: end\ndata: ", ToJsonText(end), "\n\n");
}

std::string KeepAliveText(StreamFormat format) {
  return format == StreamFormat::kSse ? ": keep-alive\n\n" : "\n";
}

// ---- StreamRegistry ---------------------------------------------------------

struct StreamRegistry::State {
  explicit State(int limit) : limit(limit) {}

  const int limit;
  mutable absl::Mutex mu;
  int open ABSL_GUARDED_BY(mu) = 0;
  bool shut_down ABSL_GUARDED_BY(mu) = false;
};

StreamRegistry::Slot::~Slot() {
  absl::MutexLock lock(&state_->mu);
  --state_->open;
}

bool StreamRegistry::Slot::stopping() const {
  absl::MutexLock lock(&state_->mu);
  return state_->shut_down;
}

StreamRegistry::StreamRegistry(int limit)
    : state_(std::make_shared<State>(std::max(limit, 1))) {}

absl::StatusOr<std::unique_ptr<StreamRegistry::Slot>> StreamRegistry::Admit() {
  absl::MutexLock lock(&state_->mu);
  if (state_->shut_down) {
    return ShuttingDownError();
  }
  if (state_->open >= state_->limit) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "Too many open progress streams (limit ", state_->limit, ")."));
  }
  ++state_->open;
  return std::make_unique<Slot>(state_);
}

void StreamRegistry::Shutdown() {
  absl::MutexLock lock(&state_->mu);
  state_->shut_down = true;
}

int StreamRegistry::open() const {
  absl::MutexLock lock(&state_->mu);
  return state_->open;
}

// ---- EventStreamBody --------------------------------------------------------

EventStreamBody::EventStreamBody(
    std::unique_ptr<StreamingCall> call,
    std::unique_ptr<StreamRegistry::Slot> slot,
    const google::protobuf::Descriptor* response_type,
    StreamBodyOptions options)
    : slot_(std::move(slot)),
      call_(std::move(call)),
      prototype_(
          google::protobuf::MessageFactory::generated_factory()->GetPrototype(
              response_type)),
      options_(std::move(options)) {}

bool EventStreamBody::CheckStopping() {
  if (!stopping_ && slot_->stopping()) {
    stopping_ = true;
    call_->Cancel();
  }
  return stopping_;
}

absl::Status EventStreamBody::EndStatus() {
  const grpc::Status status = call_->Finish();
  if (stopping_ && status.error_code() == grpc::StatusCode::CANCELLED) {
    return absl::UnavailableError(kStoppingMessage);
  }
  if (status.ok()) return absl::OkStatus();
  return FromGrpcStatus(status);
}

absl::StatusOr<std::string> EventStreamBody::Render(
    const std::string& bytes) const {
  std::unique_ptr<Message> message(prototype_->New());
  if (!message->ParseFromString(bytes)) {
    return absl::InternalError("cannot parse a message of the stream");
  }
  return EventText(options_.format, MessageEvent(*message, options_.document));
}

absl::Status EventStreamBody::Open(absl::Time deadline) {
  while (true) {
    std::string message;
    const absl::Time wake =
        std::min(deadline, absl::Now() + options_.check_interval);
    switch (call_->Read(wake, &message)) {
      case StreamingCall::ReadResult::kMessage:
        first_ = std::move(message);
        return absl::OkStatus();
      case StreamingCall::ReadResult::kEnd:
        end_ = EndStatus();
        return *end_;
      case StreamingCall::ReadResult::kTimeout:
        // A cancelled call ends at the next read.
        if (CheckStopping()) break;
        if (absl::Now() >= deadline) {
          return absl::DeadlineExceededError(
              "The stream sent nothing in time.");
        }
        break;
    }
  }
}

bool EventStreamBody::Run(HttpBodySink& sink) {
  absl::Time last_write = absl::Now();
  auto send = [&](const std::string& text) {
    if (!sink.Write(text)) return false;
    last_write = absl::Now();
    return true;
  };

  const bool complete = [&] {
    if (first_.has_value()) {
      absl::StatusOr<std::string> text = Render(*first_);
      first_.reset();
      // A message that cannot be shown ends the stream with the error.
      if (!text.ok()) return send(EndText(options_.format, text.status()));
      if (!send(*text)) return false;
    }
    if (end_.has_value()) return send(EndText(options_.format, *end_));
    while (true) {
      std::string message;
      const absl::Time wake = std::min(last_write + options_.keep_alive,
                                       absl::Now() + options_.check_interval);
      switch (call_->Read(wake, &message)) {
        case StreamingCall::ReadResult::kMessage: {
          absl::StatusOr<std::string> text = Render(message);
          if (!text.ok()) return send(EndText(options_.format, text.status()));
          if (!send(*text)) return false;
          break;
        }
        case StreamingCall::ReadResult::kEnd:
          return send(EndText(options_.format, EndStatus()));
        case StreamingCall::ReadResult::kTimeout:
          if (CheckStopping()) break;
          if (!sink.IsWritable()) return false;
          if (absl::Now() >= last_write + options_.keep_alive &&
              !send(KeepAliveText(options_.format))) {
            return false;
          }
          break;
      }
    }
  }();

  // The call and the slot are given back now, not when the HTTP library
  // drops the answer.
  call_.reset();
  slot_.reset();
  VLOG(1) << "[rest] stream "
          << (complete ? "ended" : "dropped: the client went away");
  return complete;
}

}  // namespace rest
}  // namespace jobline
