// The rest_request fuzz target: one REST request through the REST face,
// without sockets.
//
// Input, in FuzzedDataProvider parts: the verb, the request target (path
// and query), Content-Type, Accept, Last-Event-ID, and the rest as the
// body. The HttpRequest is built as server/rest/rest_server.cc builds it
// from httplib's request: HEAD is answered as GET, the query and a
// form-urlencoded body are decoded by httplib's own decoder (parameters
// sorted by name, as httplib's multimap keeps them).
//
// Checked:
//   - routing: AllowedVerbs is sorted and unique, and a verb is allowed
//     exactly when Match finds a route of it; a match binds the template's
//     variables to the percent-decoded segments, and its literals are the
//     path's;
//   - BuildRequestMessage: a message of the method's input type that
//     survives serialization unchanged, integer path variables as parsed;
//     an error is INVALID_ARGUMENT or NOT_FOUND, and its ErrorResponse is a
//     4xx or 5xx JSON body of the documented shape;
//   - Transcoder::Handle, for a request an HTTP server can deliver, over a
//     channel that reaches no server (every call fails with UNAVAILABLE):
//     a documented status, never 201 or 204 (they need an answer from the
//     server), redirects to the slashed URL with the query kept, 405 with
//     an Allow header, JSON bodies that parse (so valid UTF-8), and no CR or
//     LF in a header value.

#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/message.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "server/rest/error_mapping.h"
#include "server/rest/http_message.h"
#include "server/rest/http_rules.h"
#include "server/rest/transcoder.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/fuzz_targets.h"

namespace jobline {
namespace fuzz {
namespace {

using ::google::protobuf::FieldDescriptor;
using ::google::protobuf::Message;
using rest::HttpRequest;
using rest::HttpResponse;
using rest::RouteMatch;
using rest::RouteTable;

constexpr size_t kMaxVerbBytes = 16;
constexpr size_t kMaxTargetBytes = 4096;
constexpr size_t kMaxHeaderBytes = 512;

// The verbs the REST server hands to the transcoder (others are answered by
// httplib itself).
constexpr absl::string_view kServedVerbs[] = {
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
// The verbs of routes.
constexpr absl::string_view kRouteVerbs[] = {"GET", "POST", "PUT", "PATCH",
                                             "DELETE"};

bool IsServedVerb(absl::string_view verb) {
  for (absl::string_view served : kServedVerbs) {
    if (verb == served) return true;
  }
  return false;
}

// A channel on which every call fails at once: a Unix socket path that
// cannot exist (its directory does not). No network is touched.
std::shared_ptr<grpc::Channel> UnreachableChannel() {
  static const auto* const channel = new std::shared_ptr<grpc::Channel>(
      grpc::CreateChannel("unix:/nonexistent-jobline-fuzz/jobline.sock",
                          grpc::InsecureChannelCredentials()));
  return *channel;
}

const rest::Transcoder& TheTranscoder() {
  static const rest::Transcoder* const transcoder = [] {
    rest::TranscoderOptions options;
    // The channel fails at once; the deadline only bounds a surprise.
    options.call_timeout = absl::Seconds(5);
    return new rest::Transcoder(&RouteTable::Jobline(), UnreachableChannel(),
                                options);
  }();
  return *transcoder;
}

// Percent-decoding as the route table's contract states it: %XX escapes
// decoded, malformed ones kept.
std::string DecodePercent(absl::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    int high = 0;
    int low = 0;
    auto hex = [](char c, int* value) {
      if (c >= '0' && c <= '9') {
        *value = c - '0';
      } else if (c >= 'a' && c <= 'f') {
        *value = c - 'a' + 10;
      } else if (c >= 'A' && c <= 'F') {
        *value = c - 'A' + 10;
      } else {
        return false;
      }
      return true;
    };
    if (text[i] == '%' && i + 2 < text.size() && hex(text[i + 1], &high) &&
        hex(text[i + 2], &low)) {
      out.push_back(static_cast<char>(high * 16 + low));
      i += 2;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

// The segments of a path without its leading slash ("" has none).
std::vector<std::string> Segments(absl::string_view path) {
  absl::ConsumePrefix(&path, "/");
  if (path.empty()) return {};
  return absl::StrSplit(path, '/');
}

// The message's bytes, deterministic (maps and unknown fields in a fixed
// order).
std::string DeterministicBytes(const Message& message) {
  std::string bytes;
  google::protobuf::io::StringOutputStream stream(&bytes);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  message.SerializeToCodedStream(&coded);
  coded.Trim();
  return bytes;
}

// A JSON text as the REST face must send it: it parses, so it is also
// valid UTF-8.
bool IsJsonText(const std::string& text) {
  return nlohmann::json::accept(text);
}

void CheckRouting(absl::string_view verb, absl::string_view route_path) {
  const RouteTable& table = RouteTable::Jobline();
  const std::vector<std::string> allowed = table.AllowedVerbs(route_path);
  for (size_t i = 1; i < allowed.size(); ++i) {
    JOBLINE_FUZZ_CHECK(
        allowed[i - 1] < allowed[i],
        "AllowedVerbs is not sorted and unique: ", absl::StrJoin(allowed, ","));
  }
  for (absl::string_view route_verb : kRouteVerbs) {
    RouteMatch match;
    const bool matched = table.Match(route_verb, route_path, &match);
    bool listed = false;
    for (const std::string& v : allowed) listed = listed || v == route_verb;
    JOBLINE_FUZZ_CHECK(matched == listed, route_verb, " ", route_path,
                       ": Match says ", matched, ", AllowedVerbs says ",
                       listed);
  }

  RouteMatch match;
  if (!table.Match(verb, route_path, &match)) return;
  JOBLINE_FUZZ_CHECK(match.route != nullptr, "a match without a route");
  const rest::HttpRoute& route = *match.route;
  JOBLINE_FUZZ_CHECK(route.verb == verb, "route verb ", route.verb,
                     " for request verb ", verb);
  const std::vector<std::string> parts = Segments(route_path);
  JOBLINE_FUZZ_CHECK(parts.size() == route.segments.size(), route_path,
                     " matched ", route.path_template);
  size_t variable = 0;
  for (size_t i = 0; i < parts.size() && i < route.segments.size(); ++i) {
    const rest::PathSegment& segment = route.segments[i];
    if (!segment.is_variable) {
      JOBLINE_FUZZ_CHECK(parts[i] == segment.text, "segment ", i, " of ",
                         route_path, " is not ", segment.text);
      continue;
    }
    JOBLINE_FUZZ_CHECK(variable < match.variables.size(), "variable ",
                       segment.text, " of ", route.path_template,
                       " not bound for ", route_path);
    if (variable >= match.variables.size()) return;
    JOBLINE_FUZZ_CHECK(
        match.variables[variable].first == segment.text &&
            match.variables[variable].second == DecodePercent(parts[i]),
        "variable ", segment.text, " bound to \"",
        match.variables[variable].second, "\" for segment \"", parts[i], "\"");
    ++variable;
  }
  JOBLINE_FUZZ_CHECK(variable == match.variables.size(), "extra variables");
}

// An error answer of the error mapping (server/rest/error_mapping.h).
void CheckErrorResponse(const absl::Status& status) {
  const HttpResponse response = rest::ErrorResponse(status);
  JOBLINE_FUZZ_CHECK(response.status >= 400 && response.status <= 599,
                     "status ", response.status, " for ", status.ToString());
  JOBLINE_FUZZ_CHECK(response.status == rest::HttpStatusForCode(status.code()),
                     "status ", response.status, " but the table says ",
                     rest::HttpStatusForCode(status.code()));
  JOBLINE_FUZZ_CHECK(response.content_type == "application/json",
                     "content type ", response.content_type);
  JOBLINE_FUZZ_CHECK(IsJsonText(response.body),
                     "body is not JSON: ", response.body);
  if (!IsJsonText(response.body)) return;
  const nlohmann::json body = nlohmann::json::parse(response.body);
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument: {
      // {"field": ["message", ...], ...} or {"detail": "message"}.
      bool shaped = body.is_object() && !body.empty();
      for (const auto& [field, messages] : body.items()) {
        if (field == "detail" && messages.is_string()) continue;
        shaped = shaped && messages.is_array() && !messages.empty();
        for (const auto& message : messages) {
          shaped = shaped && message.is_string();
        }
      }
      JOBLINE_FUZZ_CHECK(shaped,
                         "400 body of the wrong shape: ", response.body);
      break;
    }
    case absl::StatusCode::kNotFound:
      JOBLINE_FUZZ_CHECK(response.body == "{\"detail\":\"Not found.\"}",
                         "404 body ", response.body);
      break;
    default:
      break;
  }
}

void CheckRequestMessage(const RouteMatch& match, const HttpRequest& request) {
  const rest::HttpRoute& route = *match.route;
  const absl::StatusOr<std::unique_ptr<Message>> built =
      rest::BuildRequestMessage(match, request, rest::TranscoderOptions());
  if (!built.ok()) {
    JOBLINE_FUZZ_CHECK(absl::IsInvalidArgument(built.status()) ||
                           absl::IsNotFound(built.status()),
                       "BuildRequestMessage: ", built.status().ToString());
    CheckErrorResponse(built.status());
    return;
  }
  const Message& message = **built;
  JOBLINE_FUZZ_CHECK(message.GetDescriptor() == route.method->input_type(),
                     "built a ", message.GetDescriptor()->full_name(), " for ",
                     route.method_full_name());

  // The bytes sent to the server read back as the same message.
  const std::string bytes = DeterministicBytes(message);
  std::unique_ptr<Message> parsed(message.New());
  JOBLINE_FUZZ_CHECK(parsed->ParseFromString(bytes),
                     "the request does not parse back");
  JOBLINE_FUZZ_CHECK(DeterministicBytes(*parsed) == bytes,
                     "the request changes through serialization: ",
                     message.ShortDebugString());

  // Integer path variables hold the number the segment spells.
  for (const auto& [name, text] : match.variables) {
    const FieldDescriptor* field =
        message.GetDescriptor()->FindFieldByName(name);
    if (field == nullptr ||
        field->cpp_type() != FieldDescriptor::CPPTYPE_INT64 ||
        field->is_repeated()) {
      continue;
    }
    int64_t expected = 0;
    const bool parses =
        absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &expected);
    const int64_t value = message.GetReflection()->GetInt64(message, field);
    JOBLINE_FUZZ_CHECK(parses && value == expected, name, " is ", value,
                       " for the segment \"", text, "\"");
  }
}

void CheckHandle(const HttpRequest& request) {
  const HttpResponse response = TheTranscoder().Handle(request);
  const int status = response.status;
  JOBLINE_FUZZ_CHECK(status == 200 || status == 301 || status == 308 ||
                         (status >= 400 && status <= 599),
                     "status ", status, " for ", request.verb, " ",
                     request.path);
  // Created and No Content come only from the server's answer, and no
  // server is reachable.
  JOBLINE_FUZZ_CHECK(status != 201 && status != 204, "status ", status,
                     " without a server");

  const std::string* allow = nullptr;
  const std::string* location = nullptr;
  for (const auto& [name, value] : response.headers) {
    JOBLINE_FUZZ_CHECK(value.find_first_of("\r\n") == std::string::npos,
                       "header ", name, " holds CR or LF: ", value);
    if (name == "Allow") allow = &value;
    if (name == "Location") location = &value;
  }

  if (status == 301 || status == 308) {
    JOBLINE_FUZZ_CHECK(
        (status == 301) == (request.verb == "GET" || request.verb == "HEAD"),
        status, " for ", request.verb);
    std::string expected = absl::StrCat(request.path, "/");
    if (!request.raw_query.empty()) {
      absl::StrAppend(&expected, "?", request.raw_query);
    }
    JOBLINE_FUZZ_CHECK(location != nullptr && *location == expected,
                       "redirect of ", request.path, " to ",
                       location == nullptr ? "nowhere" : *location);
    JOBLINE_FUZZ_CHECK(response.body.empty(), "a redirect with a body");
    return;
  }
  if (status == 405) {
    JOBLINE_FUZZ_CHECK(allow != nullptr && !allow->empty(),
                       "405 without Allow");
  }
  if (allow != nullptr) {
    const std::vector<std::string> verbs = absl::StrSplit(*allow, ", ");
    JOBLINE_FUZZ_CHECK(!verbs.empty() && verbs.back() == "OPTIONS",
                       "Allow: ", *allow);
    for (const std::string& verb : verbs) {
      JOBLINE_FUZZ_CHECK(IsServedVerb(verb), "Allow: ", *allow);
      if (status == 405) {
        JOBLINE_FUZZ_CHECK(verb != request.verb, "405 for ", request.verb,
                           " which Allow lists: ", *allow);
      }
    }
  }

  if (response.stream != nullptr) return;
  if (absl::StartsWith(response.content_type, "application/json")) {
    JOBLINE_FUZZ_CHECK(IsJsonText(response.body), status,
                       " body is not JSON: ", response.body);
  } else if (absl::StartsWith(response.content_type, "text/html")) {
    JOBLINE_FUZZ_CHECK(!response.body.empty(), "an empty HTML page");
  } else {
    JOBLINE_FUZZ_CHECK(false, "content type \"", response.content_type,
                       "\" with status ", status);
  }
}

}  // namespace

int RestRequestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider input(data, size);
  const std::string verb = input.ConsumeRandomLengthString(kMaxVerbBytes);
  const std::string target = input.ConsumeRandomLengthString(kMaxTargetBytes);

  // The request as the REST server builds it from httplib's.
  HttpRequest request;
  request.verb = verb == "HEAD" ? "GET" : verb;
  const size_t question = target.find('?');
  request.path = target.substr(0, question);
  if (question != std::string::npos) {
    request.raw_query = target.substr(question + 1);
    httplib::Params params;
    httplib::detail::parse_query_text(request.raw_query, params);
    for (const auto& [name, value] : params) {
      request.query.emplace_back(name, value);
    }
  }
  request.content_type = input.ConsumeRandomLengthString(kMaxHeaderBytes);
  request.accept = input.ConsumeRandomLengthString(kMaxHeaderBytes);
  request.last_event_id = input.ConsumeRandomLengthString(kMaxHeaderBytes);
  request.body = input.ConsumeRemainingBytesAsString();
  const std::string media_type =
      absl::AsciiStrToLower(absl::StripAsciiWhitespace(
          absl::string_view(request.content_type)
              .substr(0, request.content_type.find(';'))));
  if (media_type == "application/x-www-form-urlencoded" ||
      media_type == "multipart/form-data") {
    // A multipart body's parts, approximated by the urlencoded decoder.
    httplib::Params params;
    httplib::detail::parse_query_text(request.body, params);
    for (const auto& [name, value] : params) {
      request.form.emplace_back(name, value);
    }
    request.has_form = true;
    request.body.clear();
  }
  request.base_url = "http://localhost:8000";

  // Routing works on the path without its trailing slash.
  absl::string_view route_path = request.path;
  absl::ConsumeSuffix(&route_path, "/");
  CheckRouting(request.verb, route_path);
  RouteMatch match;
  if (RouteTable::Jobline().Match(request.verb, route_path, &match)) {
    CheckRequestMessage(match, request);
  }

  // The whole transcoder, for what the HTTP server can hand it: a served
  // verb, a request target without spaces and line breaks (they end the
  // request line's parts), header values without line breaks.
  const bool deliverable =
      IsServedVerb(verb) &&
      target.find_first_of(" \r\n") == std::string::npos &&
      (request.content_type + request.accept + request.last_event_id)
              .find_first_of("\r\n") == std::string::npos;
  if (deliverable) CheckHandle(request);
  return 0;
}

}  // namespace fuzz
}  // namespace jobline
