// The transcoder of the REST face: one HTTP request in, one gRPC call over
// a channel, one HTTP answer out.
//
// Handle() does, in order:
//   1. routing (server/rest/http_rules.h): a format suffix on the last
//      segment ("/api/v2/jobs/12.json", slash optional) stands for the
//      trailing slash and sets the format; otherwise a path that a route
//      matches only without its trailing slash is redirected to the
//      slashed URL, query kept (301 for GET and HEAD, 308 for other verbs,
//      so that a POST is sent again with its body); "/api/v2/" is the API
//      root; an unknown path is 404;
//   2. the representation: the suffix or ?format ("json", or "api" for the
//      HTML page; any other value 404), else the Accept header
//      (NegotiateRepresentation; 406 when it takes neither);
//   3. OPTIONS answers upstream's metadata; a known path with another verb
//      gets 405; both with an Allow header (GET, POST, PUT, PATCH, DELETE,
//      HEAD, OPTIONS as the path takes them);
//   4. the request message, built by reflection (BuildRequestMessage):
//      path variables, query parameters and the body (JSON or a form;
//      another media type is 415);
//   5. the call, by method name with grpc::GenericStub, with the serialized
//      message;
//   6. the answer: 200 (201 for a method named Create*, 204 without a body
//      for google.protobuf.Empty) with the upstream document of the
//      response (client/job_document.h), or the error mapped by
//      server/rest/error_mapping.h; as the HTML page
//      (server/rest/html_page.h) when that is the representation. With a
//      suffix, details links carry it ("/api/v2/jobs/12.json").
//
// A GET of a server-streaming method (WatchProgress) is answered with an
// event stream instead (server/rest/event_stream.h): Server-Sent Events,
// or NDJSON with ?format=ndjson (or the .ndjson suffix); any other format
// is 404 and the Accept header is not consulted. The request message is
// built as for a unary call, and a Last-Event-ID header sets its
// `after_sequence` field, over the query's: a value that is not a whole
// number >= 0 is 400 naming the header (D20). At most
// TranscoderOptions::max_streams streams are open at once; past that the
// answer is 429. The first message is read before anything is answered,
// so a call that fails at once is the plain error answer (404 for an
// unknown job); after it, the answer is 200 and the body the events.
//
// Thread safety: Handle() may be called from many threads at once; the
// transcoder holds immutable state, a thread-safe channel and the
// thread-safe registry of its open streams.

#ifndef JOBLINE_SERVER_REST_TRANSCODER_H_
#define JOBLINE_SERVER_REST_TRANSCODER_H_

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "server/rest/event_stream.h"
#include "server/rest/http_message.h"
#include "server/rest/http_rules.h"

namespace jobline {
namespace rest {

struct TranscoderOptions {
  // Zone in which timestamps are shown (naive local time, D11).
  absl::TimeZone zone = absl::UTCTimeZone();
  // Query parameters that upstream reads leniently (spec 6.4): a value that
  // is not a whole number >= 0 is dropped, as if absent, instead of being a
  // 400.
  std::set<std::string> lenient_query_fields = {"limit", "offset"};
  // Deadline of one gRPC call; for a stream, of its first message.
  absl::Duration call_timeout = absl::Seconds(30);
  // Streams open at once; past it a stream request is 429.
  int max_streams = 32;
  // Silence after which a stream sends a keep-alive.
  absl::Duration stream_keep_alive = absl::Seconds(15);
};

// The representations of the REST face: JSON, or the HTML page of the same
// document.
enum class Representation { kJson, kHtml, kNone };

// The representation the Accept header `accept` prefers, as upstream
// negotiates it (spec 0): JSON for an empty header or when JSON ranks at
// least as high as HTML; HTML when text/html ranks higher, or equal through
// a more specific range ("text/html" over "*/*"); kNone when neither is
// acceptable (q=0 or not named).
Representation NegotiateRepresentation(absl::string_view accept);

// Spec 6.6: absent is false (the caller's business); present and empty is
// true; "false" and "0" in any case are false; anything else is true.
bool ParseBooleanParam(absl::string_view value);

// Sets the singular or repeated scalar `field` of `message` from the text
// of a query parameter or path variable: integers in decimal, booleans by
// ParseBooleanParam, strings as they are (bytes that are not UTF-8 become
// U+FFFD, as upstream decodes them), enums by value name. A text that
// does not parse is a FieldError(field, "A valid integer is required.")
// (or "A valid number is required.", "Select a valid choice."). A message
// field is INVALID_ARGUMENT.
absl::Status SetFieldFromText(google::protobuf::Message* message,
                              const google::protobuf::FieldDescriptor* field,
                              absl::string_view text);

// Builds the request message of `match` (a new message of the method's
// input type) from its path variables, the query and the JSON body.
//   - A path variable that does not parse is NOT_FOUND (a non-integer id is
//     a 404, spec 0).
//   - A query parameter names a top-level scalar field of the request
//     other than the body field and the path variables; unknown ones are
//     ignored; the last of
//     repeated singular ones wins; TranscoderOptions::lenient_query_fields
//     apply.
//   - A form body (HttpRequest::has_form) is read as upstream reads a form:
//     the last value of a singular field, every value of a repeated one,
//     an empty value of a non-string field as null, and a boolean field of
//     the body message left out as false except in a PATCH.
//   - The body, for a route with one, must be a JSON object (else
//     FieldError("non_field_errors", ...)); its members are checked and
//     normalized as upstream's serializer fields would (an integer field
//     takes integers and their strings, a bool field true/false, 1/0 and
//     their strings, a string field strings and numbers; others are
//     FieldErrors), unknown members are ignored, and the rest is parsed
//     with JsonStringToMessage. Text that is not JSON is INVALID_ARGUMENT
//     "JSON parse error - ...".
//   - PATCH on a request with a google.protobuf.FieldMask field
//     `update_mask` that the query did not set: the mask lists the body's
//     members that are fields of the body message.
absl::StatusOr<std::unique_ptr<google::protobuf::Message>> BuildRequestMessage(
    const RouteMatch& match, const HttpRequest& request,
    const TranscoderOptions& options);

class Transcoder {
 public:
  // `routes` is not owned and must outlive the transcoder. Calls go over
  // `channel` (an in-process channel of the server, or one to any Jobline
  // gRPC address).
  Transcoder(const RouteTable* routes, std::shared_ptr<grpc::Channel> channel,
             TranscoderOptions options = {});

  // Answers one request (see the file comment). Never fails: every error
  // is an HTTP answer.
  HttpResponse Handle(const HttpRequest& request) const;

  // Ends every open stream, with an UNAVAILABLE end event, within the
  // streams' check interval, and answers new stream requests 503; for the
  // server's shutdown. Idempotent.
  void StopStreams();

  // Cancels every unary call in flight (its request is answered 503) and
  // answers 503 to every later request that would make one; for the end of
  // the server's shutdown grace, so that no handler waits out
  // call_timeout on a backend that does not answer. Idempotent.
  void CancelCalls();

  // Streams open now.
  int open_streams() const { return streams_.open(); }

 private:
  // The API root document; `suffix` (e.g. ".json") replaces the trailing
  // slash of its links.
  HttpResponse ApiRoot(const HttpRequest& request,
                       absl::string_view suffix) const;

  // Steps 3 to 5 of Handle() for `slashed_path` (a path with its trailing
  // slash, the format suffix taken off) whose routes take `allowed`;
  // `match` is the route of the request's verb, null when it has none.
  // `details_suffix` is added to every details link.
  HttpResponse Dispatch(const HttpRequest& request,
                        absl::string_view slashed_path, const RouteMatch* match,
                        const std::vector<std::string>& allowed,
                        absl::string_view details_suffix) const;

  // The answer to OPTIONS: upstream's metadata of the view and Allow.
  HttpResponse OptionsResponse(absl::string_view slashed_path,
                               const std::vector<std::string>& allowed) const;

  // `json` rendered as the HTML page of `slashed_path` (the request's path
  // with its trailing slash, format suffix taken off), status and headers
  // kept.
  HttpResponse HtmlResponse(const HttpRequest& request,
                            absl::string_view slashed_path,
                            const std::vector<std::string>& allowed,
                            HttpResponse json) const;

  // The event stream answer of the server-streaming method of `match`;
  // `format` is the requested one ("" or "ndjson").
  HttpResponse StreamResponse(const HttpRequest& request,
                              const RouteMatch& match,
                              absl::string_view format) const;

  // Calls the method of `route` with `message`; the response message is of
  // the method's output type.
  absl::StatusOr<std::unique_ptr<google::protobuf::Message>> Call(
      const HttpRoute& route, const google::protobuf::Message& message) const;

  const RouteTable* const routes_;  // Not owned.
  const std::shared_ptr<grpc::Channel> channel_;
  const TranscoderOptions options_;
  // Thread-safe; mutable because Handle() is const.
  mutable StreamRegistry streams_;
  // The contexts of the unary calls in flight, for CancelCalls().
  mutable absl::Mutex calls_mu_;
  mutable std::set<grpc::ClientContext*> calls_ ABSL_GUARDED_BY(calls_mu_);
  bool calls_cancelled_ ABSL_GUARDED_BY(calls_mu_) = false;
};

}  // namespace rest
}  // namespace jobline

#endif  // JOBLINE_SERVER_REST_TRANSCODER_H_
