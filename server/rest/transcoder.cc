#include "server/rest/transcoder.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "client/job_document.h"
#include "client/json_shape.h"
#include "client/status_util.h"
#include "glog/logging.h"
#include "google/protobuf/field_mask.pb.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/client_context.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"
#include "jobline/v2/catalog.pb.h"
#include "jobline/v2/jobs.pb.h"
#include "nlohmann/json.hpp"
#include "server/rest/error_mapping.h"
#include "server/rest/event_stream.h"
#include "server/rest/html_page.h"
#include "server/rest/streaming_call.h"
#include "storage/status_macros.h"

namespace jobline {
namespace rest {
namespace {

using ::google::protobuf::Descriptor;
using ::google::protobuf::FieldDescriptor;
using ::google::protobuf::Message;
using ::google::protobuf::Reflection;
using Json = nlohmann::json;

constexpr char kApiRoot[] = "/api/v2/";
constexpr char kInvalidChoice[] = "Select a valid choice.";
constexpr char kNotNegative[] =
    "Ensure this value is greater than or equal to 0.";
// The request field a stream resumes from; the Last-Event-ID header sets
// it.
constexpr char kResumeField[] = "after_sequence";
constexpr char kLastEventIdHeader[] = "Last-Event-ID";

bool IsIntegerField(const FieldDescriptor* field) {
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64:
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64:
      return true;
    default:
      return false;
  }
}

// Sets (or, for a repeated field, adds) an integer; false when `text` is
// not a decimal integer in the field's range.
bool SetInteger(Message* message, const FieldDescriptor* field,
                absl::string_view text) {
  const Reflection* reflection = message->GetReflection();
  const bool repeated = field->is_repeated();
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32: {
      int32_t value;
      if (!absl::SimpleAtoi(text, &value)) return false;
      repeated ? reflection->AddInt32(message, field, value)
               : reflection->SetInt32(message, field, value);
      return true;
    }
    case FieldDescriptor::CPPTYPE_INT64: {
      int64_t value;
      if (!absl::SimpleAtoi(text, &value)) return false;
      repeated ? reflection->AddInt64(message, field, value)
               : reflection->SetInt64(message, field, value);
      return true;
    }
    case FieldDescriptor::CPPTYPE_UINT32: {
      uint32_t value;
      if (!absl::SimpleAtoi(text, &value)) return false;
      repeated ? reflection->AddUInt32(message, field, value)
               : reflection->SetUInt32(message, field, value);
      return true;
    }
    case FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t value;
      if (!absl::SimpleAtoi(text, &value)) return false;
      repeated ? reflection->AddUInt64(message, field, value)
               : reflection->SetUInt64(message, field, value);
      return true;
    }
    default:
      return false;
  }
}

// `text` with every byte that is not part of a well-formed UTF-8 sequence
// replaced by U+FFFD, as Django decodes a query string.
std::string ValidUtf8(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char lead = static_cast<unsigned char>(text[i]);
    int length = 0;
    uint32_t min = 0;
    if (lead < 0x80) {
      length = 1;
    } else if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
      min = 0x80;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      min = 0x800;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      min = 0x10000;
    }
    bool valid = length > 0 && i + length <= text.size();
    uint32_t code = length == 1 ? lead : lead & (0x7F >> length);
    for (int k = 1; valid && k < length; ++k) {
      const unsigned char next = static_cast<unsigned char>(text[i + k]);
      valid = (next & 0xC0) == 0x80;
      code = (code << 6) | (next & 0x3F);
    }
    valid = valid && code >= min && code <= 0x10FFFF &&
            !(code >= 0xD800 && code <= 0xDFFF);
    if (valid) {
      out.append(text.data() + i, length);
      i += length;
    } else {
      out.append("\xEF\xBF\xBD");  // U+FFFD
      ++i;
    }
  }
  return out;
}

// Whether a body field takes null (which clears it). Upstream's job
// serializer declares name, delay, project_id, shuffle and job_type_key
// without null; every other field here is nullable.
bool TakesNull(const FieldDescriptor* field) {
  if (field->containing_type() != v2::JobInput::descriptor()) return true;
  switch (field->number()) {
    case v2::JobInput::kNameFieldNumber:
    case v2::JobInput::kDelayFieldNumber:
    case v2::JobInput::kProjectIdFieldNumber:
    case v2::JobInput::kShuffleFieldNumber:
    case v2::JobInput::kJobTypeKeyFieldNumber:
      return false;
    default:
      return true;
  }
}

// Whether a form may leave `field` empty to mean "not given": an optional
// field without null (upstream's serializer then uses its default).
bool EmptyFormValueIsOmitted(const FieldDescriptor* field) {
  return field->containing_type() == v2::JobInput::descriptor() &&
         (field->number() == v2::JobInput::kDelayFieldNumber ||
          field->number() == v2::JobInput::kShuffleFieldNumber);
}

// Checks one value of `field` that is not null (one element of a repeated
// field) and rewrites it into the form JsonStringToMessage takes, as
// upstream's serializer fields accept it. An error names `path`, the field
// or the element.
absl::Status NormalizeValue(const FieldDescriptor* field,
                            const std::string& path, Json& value) {
  if (IsIntegerField(field)) {
    if (value.is_number_unsigned() &&
        value.get<uint64_t>() >
            static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return FieldError(path, kNotAnIntegerMessage);
    }
    if (value.is_number_integer()) return absl::OkStatus();
    if (value.is_number_float()) {
      // Whole numbers in the int64 range only (the cast is undefined
      // outside it).
      const double number = value.get<double>();
      if (number >= -9.2e18 && number <= 9.2e18 &&
          number == static_cast<double>(static_cast<int64_t>(number))) {
        value = static_cast<int64_t>(number);
        return absl::OkStatus();
      }
    }
    if (value.is_string()) {
      // A copy: `value` is overwritten below, and get<std::string>()
      // returns a temporary that a view must not outlive.
      const std::string raw = value.get<std::string>();
      absl::string_view text = absl::StripAsciiWhitespace(raw);
      // Upstream's integer field takes "2.0" as 2: a point and zeros at
      // the end are dropped.
      if (const size_t point = text.find('.');
          point != absl::string_view::npos && point > 0 &&
          text.find_first_not_of('0', point + 1) == absl::string_view::npos) {
        text = text.substr(0, point);
      }
      int64_t number;
      if (IsDecimalInteger(text) && absl::SimpleAtoi(text, &number)) {
        value = number;
        return absl::OkStatus();
      }
    }
    return FieldError(path, kNotAnIntegerMessage);
  }
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_BOOL: {
      if (value.is_boolean()) return absl::OkStatus();
      if (value.is_number_integer()) {
        const int64_t number = value.get<int64_t>();
        if (number == 0 || number == 1) {
          value = number == 1;
          return absl::OkStatus();
        }
      }
      if (value.is_string()) {
        const std::string text =
            absl::AsciiStrToLower(value.get<std::string>());
        if (text == "true" || text == "1" || text == "yes" || text == "on") {
          value = true;
          return absl::OkStatus();
        }
        if (text == "false" || text == "0" || text == "no" || text == "off") {
          value = false;
          return absl::OkStatus();
        }
      }
      return FieldError(path, kNotABooleanMessage);
    }
    case FieldDescriptor::CPPTYPE_STRING:
      if (value.is_string()) return absl::OkStatus();
      if (value.is_number()) {
        value = value.dump();
        return absl::OkStatus();
      }
      return FieldError(path, kNotAStringMessage);
    case FieldDescriptor::CPPTYPE_MESSAGE:
      // A record: an object whose members fit their fields, down to the
      // leaves (protobuf's own types are left to its parser).
      if (const std::optional<JsonShapeError> error =
              CheckJsonValue(field, value, path)) {
        return FieldError(error->path, error->message);
      }
      return absl::OkStatus();
    default:
      return absl::OkStatus();
  }
}

// Checks one member of a JSON body against its field, as NormalizeValue.
// null is kept (it clears the field) where the field takes it. A repeated
// field takes a list whose elements are not null and have its type; the
// first bad element is reported, as "<field>[<index>]".
absl::Status NormalizeMember(const FieldDescriptor* field, Json& value) {
  if (value.is_null()) {
    return TakesNull(field) ? absl::OkStatus()
                            : FieldError(field->name(), kNotNullMessage);
  }
  // A map is a JSON object, left to protobuf's parser.
  if (field->is_map()) return absl::OkStatus();
  if (!field->is_repeated()) return NormalizeValue(field, field->name(), value);
  if (!value.is_array()) {
    return FieldError(field->name(), ExpectedListMessage(value.type()));
  }
  for (size_t i = 0; i < value.size(); ++i) {
    const std::string path = absl::StrCat(field->name(), "[", i, "]");
    if (value[i].is_null()) return FieldError(path, kNotNullMessage);
    if (absl::Status status = NormalizeValue(field, path, value[i]);
        !status.ok()) {
      return status;
    }
  }
  return absl::OkStatus();
}

absl::Status ParseDocument(Json document, Message* target,
                           google::protobuf::FieldMask* mask);

// Parses the JSON `body` into `target` (the body message) and, when
// `mask` is not null, lists the members it set there.
absl::Status ParseBody(absl::string_view body, Message* target,
                       google::protobuf::FieldMask* mask) {
  Json document = Json::parse(body.begin(), body.end(), nullptr,
                              /*allow_exceptions=*/false);
  if (document.is_discarded()) {
    // nlohmann gives no message without exceptions; protobuf's parser says
    // where the text stops being JSON.
    const std::unique_ptr<Message> scratch(target->New());
    const auto parsed = google::protobuf::util::JsonStringToMessage(
        std::string(body), scratch.get());
    const std::string reason =
        parsed.ok() ? "invalid JSON text" : std::string(parsed.message());
    return absl::InvalidArgumentError(absl::StrCat(
        "JSON parse error - ",
        std::vector<std::string>(absl::StrSplit(reason, '\n'))[0]));
  }
  return ParseDocument(std::move(document), target, mask);
}

// The JSON object of a form body, read as upstream's serializer reads a
// form: a singular field takes the last of its values, a repeated field
// all of them; an empty value of an optional field without null is left
// out (the default applies), of another field that is not a string null;
// a boolean field of `descriptor` not sent is false (an unticked HTML
// checkbox sends nothing), except in a partial update.
Json FormDocument(const QueryParams& form, const Descriptor* descriptor,
                  bool partial) {
  Json document = Json::object();
  std::vector<const FieldDescriptor*> sent;
  for (const auto& [name, value] : form) {
    const FieldDescriptor* field = FindJsonField(descriptor, name);
    if (field == nullptr) continue;
    sent.push_back(field);
    const std::string text = ValidUtf8(value);
    if (field->is_repeated()) {
      document[field->name()].push_back(text);
    } else if (text.empty() && EmptyFormValueIsOmitted(field)) {
      document.erase(field->name());
    } else if (text.empty() &&
               field->cpp_type() != FieldDescriptor::CPPTYPE_STRING) {
      document[field->name()] = nullptr;
    } else {
      document[field->name()] = text;
    }
  }
  if (!partial) {
    for (int i = 0; i < descriptor->field_count(); ++i) {
      const FieldDescriptor* field = descriptor->field(i);
      if (field->cpp_type() == FieldDescriptor::CPPTYPE_BOOL &&
          !field->is_repeated() &&
          std::find(sent.begin(), sent.end(), field) == sent.end()) {
        document[field->name()] = false;
      }
    }
  }
  return document;
}

// Parses the JSON `document` into `target`, as ParseBody.
absl::Status ParseDocument(Json document, Message* target,
                           google::protobuf::FieldMask* mask) {
  if (!document.is_object()) {
    return FieldError("non_field_errors",
                      ExpectedDictionaryMessage(document.type()));
  }

  // Known members are checked and normalized; unknown ones dropped. Every
  // member is checked, and the errors are reported together, in the order
  // of the message's fields.
  const Descriptor* descriptor = target->GetDescriptor();
  Json known = Json::object();
  std::vector<std::pair<int, absl::Status>> errors;
  for (auto& [name, value] : document.items()) {
    const FieldDescriptor* field = FindJsonField(descriptor, name);
    if (field == nullptr) continue;
    if (absl::Status status = NormalizeMember(field, value); !status.ok()) {
      errors.emplace_back(field->index(), std::move(status));
      continue;
    }
    if (mask != nullptr) mask->add_paths(field->name());
    known[field->name()] = value;
  }
  if (!errors.empty()) {
    std::stable_sort(
        errors.begin(), errors.end(),
        [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<absl::Status> statuses;
    for (auto& [index, status] : errors) statuses.push_back(std::move(status));
    return CombineFieldErrors(statuses);
  }

  google::protobuf::util::JsonParseOptions parse_options;
  parse_options.ignore_unknown_fields = true;
  const auto parsed = google::protobuf::util::JsonStringToMessage(
      known.dump(), target, parse_options);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("JSON parse error - ", std::string(parsed.message())));
  }
  return absl::OkStatus();
}

// Whether a path variable of `match` sets `field_name`; such a field is
// not also taken from the query.
bool BoundByPath(const RouteMatch& match, const std::string& field_name) {
  for (const auto& [name, text] : match.variables) {
    if (name == field_name) return true;
  }
  return false;
}

// The first value of query parameter `name`, or null.
const std::string* QueryValue(const QueryParams& query,
                              absl::string_view name) {
  for (const auto& [key, value] : query) {
    if (key == name) return &value;
  }
  return nullptr;
}

// Whether a media type (parameters ignored) is JSON.
bool IsJsonMediaType(absl::string_view content_type) {
  absl::string_view type = absl::StripAsciiWhitespace(
      content_type.substr(0, content_type.find(';')));
  const std::string lower = absl::AsciiStrToLower(type);
  return lower == "application/json" || absl::EndsWith(lower, "+json");
}

HttpResponse JsonResponse(int status, const nlohmann::ordered_json& body) {
  HttpResponse response;
  response.status = status;
  response.body = ToJsonText(body);
  return response;
}

// The document of a response message: the upstream shape for jobs, lists
// and reference records, protobuf's JSON with proto field names otherwise.
nlohmann::ordered_json ResponseDocument(const Message& response,
                                        const Message& request,
                                        const HttpRequest& http,
                                        const DocumentOptions& options) {
  if (const auto* job = dynamic_cast<const v2::Job*>(&response)) {
    return JobDocument(*job, JobView::kDetail, options);
  }
  if (const auto* list = dynamic_cast<const v2::ListJobsResponse*>(&response)) {
    const auto* list_request =
        dynamic_cast<const v2::ListJobsRequest*>(&request);
    const bool ids_only = list_request != nullptr && list_request->ids_only();
    const PageLinks links =
        ListPageLinks(absl::StrCat(http.base_url, http.path), http.query,
                      list->count(), list->limit(), list->offset());
    JobListEnvelope envelope;
    envelope.count = list->count();
    envelope.next = links.next;
    envelope.previous = links.previous;
    envelope.user_permissions.assign(list->user_permissions().begin(),
                                     list->user_permissions().end());
    return JobListDocument(list->results(), envelope, ids_only, options);
  }
  if (const auto* project = dynamic_cast<const v2::Project*>(&response)) {
    return ProjectDocument(*project, options);
  }
  if (const auto* deployment = dynamic_cast<const v2::Deployment*>(&response)) {
    return DeploymentDocument(*deployment, options);
  }
  if (const auto* collection =
          dynamic_cast<const v2::CaptureCollection*>(&response)) {
    return CaptureCollectionDocument(*collection, options);
  }
  if (const auto* capture = dynamic_cast<const v2::Capture*>(&response)) {
    return CaptureDocument(*capture, options);
  }
  if (const auto* pipeline = dynamic_cast<const v2::Pipeline*>(&response)) {
    return PipelineDocument(*pipeline, options);
  }
  google::protobuf::util::JsonPrintOptions print_options;
  print_options.preserve_proto_field_names = true;
  print_options.always_print_primitive_fields = true;
  std::string text;
  if (!google::protobuf::util::MessageToJsonString(response, &text,
                                                   print_options)
           .ok()) {
    return nlohmann::ordered_json::object();
  }
  return nlohmann::ordered_json::parse(text, nullptr,
                                       /*allow_exceptions=*/false);
}

// "/jobline.v2.JobService/GetJob": the gRPC path of the method of `route`.
std::string MethodPath(const HttpRoute& route) {
  return absl::StrCat("/", route.method->service()->full_name(), "/",
                      route.method->name());
}

// Sets the resume field of `message`, when it has one, from the
// Last-Event-ID header `header` (empty: absent). A value that is not a
// whole number >= 0 is a FieldError naming the header.
absl::Status ApplyLastEventId(absl::string_view header, Message* message) {
  const absl::string_view text = absl::StripAsciiWhitespace(header);
  const FieldDescriptor* field =
      message->GetDescriptor()->FindFieldByName(kResumeField);
  if (text.empty() || field == nullptr || field->is_repeated() ||
      field->cpp_type() != FieldDescriptor::CPPTYPE_INT64) {
    return absl::OkStatus();
  }
  int64_t sequence;
  if (!IsDecimalInteger(text) || !absl::SimpleAtoi(text, &sequence)) {
    return FieldError(kLastEventIdHeader, kNotAnIntegerMessage);
  }
  if (sequence < 0) return FieldError(kLastEventIdHeader, kNotNegative);
  message->GetReflection()->SetInt64(message, field, sequence);
  return absl::OkStatus();
}

// The URL with a trailing slash added to the path, query kept as sent.
std::string SlashedUrl(const HttpRequest& request) {
  std::string url = absl::StrCat(request.path, "/");
  if (!request.raw_query.empty()) absl::StrAppend(&url, "?", request.raw_query);
  return url;
}

// The verbs of an Allow header for a path whose routes take `verbs`, in
// upstream's order, with HEAD beside GET and OPTIONS always.
std::vector<std::string> AllowHeaderVerbs(
    const std::vector<std::string>& verbs) {
  auto takes = [&verbs](absl::string_view verb) {
    return std::find(verbs.begin(), verbs.end(), verb) != verbs.end();
  };
  std::vector<std::string> allowed;
  for (const char* verb : {"GET", "POST", "PUT", "PATCH", "DELETE"}) {
    if (takes(verb)) allowed.push_back(verb);
  }
  if (takes("GET")) allowed.push_back("HEAD");
  allowed.push_back("OPTIONS");
  return allowed;
}

// Splits a format suffix off the last segment of an API path:
// "/api/v2/jobs/12.json" and "/api/v2/jobs/12.json/" give
// "/api/v2/jobs/12/" and "json"; "/api/v2/.api" gives "/api/v2/" and
// "api". False, with the outputs untouched, when `path` has no suffix: a
// suffix is one or more lower-case letters and digits after the segment's
// last dot.
bool SplitFormatSuffix(absl::string_view path, std::string* slashed_path,
                       std::string* format) {
  if (!absl::StartsWith(path, kApiRoot)) return false;
  absl::ConsumeSuffix(&path, "/");
  const size_t dot = path.rfind('.');
  const size_t slash = path.rfind('/');
  if (dot == absl::string_view::npos || dot < slash) return false;
  const absl::string_view suffix = path.substr(dot + 1);
  if (suffix.empty() || !std::all_of(suffix.begin(), suffix.end(), [](char c) {
        return absl::ascii_islower(c) || absl::ascii_isdigit(c);
      })) {
    return false;
  }
  const absl::string_view stem = path.substr(0, dot);
  // A suffix names a resource: "/api/v2/jobs/.json" is nothing.
  if (absl::EndsWith(stem, "/") && stem != kApiRoot) return false;
  *slashed_path =
      absl::EndsWith(stem, "/") ? std::string(stem) : absl::StrCat(stem, "/");
  *format = std::string(suffix);
  return true;
}

// One media range of an Accept header.
struct MediaRange {
  std::string type;    // e.g. "text/html", "text/*", "*/*"; lower case
  double quality = 1;  // the q parameter
};

std::vector<MediaRange> ParseAccept(absl::string_view accept) {
  std::vector<MediaRange> ranges;
  for (absl::string_view item : absl::StrSplit(accept, ',')) {
    std::vector<absl::string_view> parts = absl::StrSplit(item, ';');
    MediaRange range;
    range.type = absl::AsciiStrToLower(absl::StripAsciiWhitespace(parts[0]));
    if (range.type.empty()) continue;
    for (size_t i = 1; i < parts.size(); ++i) {
      absl::string_view parameter = absl::StripAsciiWhitespace(parts[i]);
      double quality;
      if (absl::ConsumePrefix(&parameter, "q=") &&
          absl::SimpleAtod(parameter, &quality)) {
        range.quality = std::max(0.0, std::min(1.0, quality));
      }
    }
    ranges.push_back(std::move(range));
  }
  return ranges;
}

}  // namespace

bool ParseBooleanParam(absl::string_view value) {
  const std::string lower = absl::AsciiStrToLower(value);
  return lower != "false" && lower != "0";
}

Representation NegotiateRepresentation(absl::string_view accept) {
  const std::vector<MediaRange> ranges = ParseAccept(accept);
  if (ranges.empty()) return Representation::kJson;
  // The quality of `type` is that of the most specific range naming it
  // (RFC 9110 12.5.1); `specificity` is 2 for the type itself, 1 for
  // "main/*", 0 for "*/*" and -1 when nothing names it.
  struct Match {
    double quality = 0;
    int specificity = -1;
  };
  auto match = [&ranges](absl::string_view type) {
    const std::string wildcard =
        absl::StrCat(type.substr(0, type.find('/')), "/*");
    Match best;
    for (const MediaRange& range : ranges) {
      const int specificity = range.type == type       ? 2
                              : range.type == wildcard ? 1
                              : range.type == "*/*"    ? 0
                                                       : -1;
      if (specificity > best.specificity) {
        best.specificity = specificity;
        best.quality = range.quality;
      }
    }
    return best;
  };
  const Match json = match("application/json");
  const Match html = match("text/html");
  if (json.quality == 0 && html.quality == 0) return Representation::kNone;
  if (html.quality > json.quality ||
      (html.quality == json.quality && html.specificity > json.specificity)) {
    return Representation::kHtml;
  }
  return Representation::kJson;
}

absl::Status SetFieldFromText(Message* message, const FieldDescriptor* field,
                              absl::string_view text) {
  const Reflection* reflection = message->GetReflection();
  const bool repeated = field->is_repeated();
  if (IsIntegerField(field)) {
    if (!SetInteger(message, field, absl::StripAsciiWhitespace(text))) {
      return FieldError(field->name(), kNotAnIntegerMessage);
    }
    return absl::OkStatus();
  }
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_BOOL: {
      const bool value = ParseBooleanParam(text);
      repeated ? reflection->AddBool(message, field, value)
               : reflection->SetBool(message, field, value);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_STRING:
      // Protobuf strings must be UTF-8; bytes fields take the text as is.
      if (field->type() == FieldDescriptor::TYPE_BYTES) {
        repeated ? reflection->AddString(message, field, std::string(text))
                 : reflection->SetString(message, field, std::string(text));
      } else {
        repeated ? reflection->AddString(message, field, ValidUtf8(text))
                 : reflection->SetString(message, field, ValidUtf8(text));
      }
      return absl::OkStatus();
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT: {
      double value;
      if (!absl::SimpleAtod(text, &value)) {
        return FieldError(field->name(), kNotANumberMessage);
      }
      if (field->cpp_type() == FieldDescriptor::CPPTYPE_FLOAT) {
        repeated ? reflection->AddFloat(message, field, value)
                 : reflection->SetFloat(message, field, value);
      } else {
        repeated ? reflection->AddDouble(message, field, value)
                 : reflection->SetDouble(message, field, value);
      }
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_ENUM: {
      const auto* value =
          field->enum_type()->FindValueByName(std::string(text));
      if (value == nullptr) return FieldError(field->name(), kInvalidChoice);
      repeated ? reflection->AddEnum(message, field, value)
               : reflection->SetEnum(message, field, value);
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(field->name(), " cannot be set from text"));
  }
}

absl::StatusOr<std::unique_ptr<Message>> BuildRequestMessage(
    const RouteMatch& match, const HttpRequest& request,
    const TranscoderOptions& options) {
  const HttpRoute& route = *match.route;
  const Descriptor* descriptor = route.method->input_type();
  std::unique_ptr<Message> message(
      google::protobuf::MessageFactory::generated_factory()
          ->GetPrototype(descriptor)
          ->New());

  // Path variables: one that does not parse names no resource.
  for (const auto& [name, text] : match.variables) {
    const FieldDescriptor* field = descriptor->FindFieldByName(name);
    if (field == nullptr ||
        !SetFieldFromText(message.get(), field, text).ok()) {
      return absl::NotFoundError("Not found.");
    }
  }

  // Query parameters set the scalar fields outside the body; the last of
  // repeated singular parameters wins.
  if (route.body != "*") {
    for (const auto& [name, text] : request.query) {
      const FieldDescriptor* field = descriptor->FindFieldByName(name);
      if (field == nullptr || field->name() == route.body ||
          field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE ||
          BoundByPath(match, field->name())) {
        continue;
      }
      if (options.lenient_query_fields.count(field->name()) > 0) {
        int64_t value;
        if (!absl::SimpleAtoi(text, &value) || value < 0) continue;
      }
      JOBS_RETURN_IF_ERROR(SetFieldFromText(message.get(), field, text));
    }
  }

  // The body.
  if (route.body.empty()) return message;
  Message* target = message.get();
  if (route.body != "*") {
    target = message->GetReflection()->MutableMessage(
        message.get(), descriptor->FindFieldByName(route.body));
  }
  google::protobuf::FieldMask* mask = nullptr;
  const FieldDescriptor* mask_field =
      descriptor->FindFieldByName("update_mask");
  if (route.verb == "PATCH" && route.body != "*" && mask_field != nullptr &&
      mask_field->message_type() == google::protobuf::FieldMask::descriptor()) {
    mask = static_cast<google::protobuf::FieldMask*>(
        message->GetReflection()->MutableMessage(message.get(), mask_field));
  }
  if (request.has_form) {
    JOBS_RETURN_IF_ERROR(
        ParseDocument(FormDocument(request.form, target->GetDescriptor(),
                                   /*partial=*/route.verb == "PATCH"),
                      target, mask));
    return message;
  }
  if (absl::StripAsciiWhitespace(request.body).empty()) return message;
  JOBS_RETURN_IF_ERROR(ParseBody(request.body, target, mask));
  return message;
}

Transcoder::Transcoder(const RouteTable* routes,
                       std::shared_ptr<grpc::Channel> channel,
                       TranscoderOptions options)
    : routes_(routes),
      channel_(std::move(channel)),
      options_(std::move(options)),
      streams_(options_.max_streams) {}

void Transcoder::StopStreams() { streams_.Shutdown(); }

void Transcoder::CancelCalls() {
  absl::MutexLock lock(&calls_mu_);
  calls_cancelled_ = true;
  for (grpc::ClientContext* context : calls_) context->TryCancel();
}

HttpResponse Transcoder::ApiRoot(const HttpRequest& request,
                                 absl::string_view suffix) const {
  // Every collection: a GET route whose template is /api/v2/<name>.
  nlohmann::ordered_json root = nlohmann::ordered_json::object();
  for (const HttpRoute& route : routes_->routes()) {
    if (route.verb != "GET" || route.segments.size() != 3) continue;
    const PathSegment& last = route.segments.back();
    if (last.is_variable) continue;
    root[last.text] = absl::StrCat(request.base_url, route.path_template,
                                   suffix.empty() ? "/" : suffix);
  }
  return JsonResponse(200, root);
}

HttpResponse Transcoder::OptionsResponse(
    absl::string_view slashed_path,
    const std::vector<std::string>& allowed) const {
  // Upstream's metadata names the view: "Api Root", "Job List",
  // "Job Instance", or the action ("Run").
  std::string name = "Api Root";
  const std::vector<absl::string_view> segments = absl::StrSplit(
      slashed_path.substr(std::min(std::strlen(kApiRoot), slashed_path.size())),
      '/', absl::SkipEmpty());
  if (!segments.empty()) {
    absl::string_view collection = segments[0];
    absl::ConsumeSuffix(&collection, "s");
    std::string resource(collection);
    if (!resource.empty()) resource[0] = absl::ascii_toupper(resource[0]);
    if (segments.size() == 1) {
      name = absl::StrCat(resource, " List");
    } else if (segments.size() == 2) {
      name = absl::StrCat(resource, " Instance");
    } else {
      name = std::string(segments.back());
      name[0] = absl::ascii_toupper(name[0]);
    }
  }
  nlohmann::ordered_json metadata = nlohmann::ordered_json::object();
  metadata["name"] = name;
  metadata["description"] = "";
  metadata["renders"] = {"application/json", "text/html"};
  metadata["parses"] = {"application/json", "application/x-www-form-urlencoded",
                        "multipart/form-data"};
  HttpResponse response = JsonResponse(200, metadata);
  response.headers.emplace_back("Allow", absl::StrJoin(allowed, ", "));
  return response;
}

HttpResponse Transcoder::HtmlResponse(const HttpRequest& request,
                                      absl::string_view slashed_path,
                                      const std::vector<std::string>& allowed,
                                      HttpResponse json) const {
  HtmlPageInput page;
  page.verb = request.verb;
  // The page of "/api/v2/jobs/1.api/" is that of "/api/v2/jobs/1/".
  page.path = std::string(slashed_path);
  page.raw_query = request.raw_query;
  page.base_url = request.base_url;
  page.status = json.status;
  page.json_body = json.body;
  page.allowed_verbs = allowed;
  HttpResponse html = std::move(json);
  // A browser shows no body of a 204; the page of one is a 200.
  if (html.status == 204) html.status = 200;
  html.content_type = "text/html; charset=utf-8";
  html.body = RenderHtmlPage(page);
  return html;
}

absl::StatusOr<std::unique_ptr<Message>> Transcoder::Call(
    const HttpRoute& route, const Message& message) const {
  std::string serialized;
  if (!message.SerializeToString(&serialized)) {
    return absl::InternalError("cannot serialize the request");
  }
  grpc::Slice slice(serialized);
  grpc::ByteBuffer request_buffer(&slice, 1);
  grpc::ByteBuffer response_buffer;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + options_.call_timeout));
  const std::string method = MethodPath(route);
  {
    absl::MutexLock lock(&calls_mu_);
    if (calls_cancelled_) return ShuttingDownError();
    calls_.insert(&context);
  }

  // The generic stub only offers asynchronous unary calls in gRPC 1.51.
  grpc::GenericStub stub(channel_);
  absl::Notification done;
  grpc::Status status;
  stub.UnaryCall(&context, method, grpc::StubOptions(), &request_buffer,
                 &response_buffer, [&](grpc::Status call_status) {
                   status = std::move(call_status);
                   done.Notify();
                 });
  done.WaitForNotification();
  {
    absl::MutexLock lock(&calls_mu_);
    calls_.erase(&context);
    if (calls_cancelled_ &&
        status.error_code() == grpc::StatusCode::CANCELLED) {
      return ShuttingDownError();
    }
  }
  if (!status.ok()) return FromGrpcStatus(status);

  std::vector<grpc::Slice> slices;
  if (!response_buffer.Dump(&slices).ok()) {
    return absl::InternalError("cannot read the response");
  }
  std::string bytes;
  for (const grpc::Slice& part : slices) {
    bytes.append(reinterpret_cast<const char*>(part.begin()), part.size());
  }
  std::unique_ptr<Message> response(
      google::protobuf::MessageFactory::generated_factory()
          ->GetPrototype(route.method->output_type())
          ->New());
  if (!response->ParseFromString(bytes)) {
    return absl::InternalError("cannot parse the response");
  }
  return response;
}

HttpResponse Transcoder::Handle(const HttpRequest& request) const {
  // A format suffix names the representation and stands for the trailing
  // slash: /api/v2/jobs/12.json is /api/v2/jobs/12/ as JSON.
  std::string path;
  std::string format;
  const bool suffixed = SplitFormatSuffix(request.path, &path, &format);
  if (!suffixed) {
    path = request.path;
    // Every route is served with a trailing slash; a slash-less URL of a
    // route is redirected, with 308 for verbs other than GET and HEAD so
    // that the body and the verb are sent again.
    // Upstream's ids never hold a dot, so neither does a redirected
    // segment.
    if (!absl::EndsWith(path, "/")) {
      const bool dotted = absl::string_view(path)
                              .substr(std::min(path.rfind('/'), path.size()))
                              .find('.') != absl::string_view::npos;
      if ((!dotted && !routes_->AllowedVerbs(path).empty()) ||
          absl::StrCat(path, "/") == kApiRoot) {
        HttpResponse redirect;
        redirect.status =
            request.verb == "GET" || request.verb == "HEAD" ? 301 : 308;
        redirect.content_type.clear();
        redirect.headers.emplace_back("Location", SlashedUrl(request));
        return redirect;
      }
      return NotFoundResponse();
    }
    if (const std::string* param = QueryValue(request.query, "format")) {
      format = *param;
    }
  }
  std::vector<std::string> allowed =
      routes_->AllowedVerbs(absl::string_view(path).substr(0, path.size() - 1));
  if (path == kApiRoot) allowed.push_back("GET");
  if (allowed.empty()) return NotFoundResponse();
  allowed = AllowHeaderVerbs(allowed);

  // The route of the verb, if any; a streaming method answers with an
  // event stream, in formats of its own.
  RouteMatch match;
  const bool matched = routes_->Match(
      request.verb, absl::string_view(path).substr(0, path.size() - 1), &match);
  if (matched && request.verb == "GET" &&
      match.route->method->server_streaming()) {
    return StreamResponse(request, match, format);
  }

  // The representation: the suffix or ?format, else the Accept header.
  Representation representation = Representation::kJson;
  if (format == "api") {
    representation = Representation::kHtml;
  } else if (!format.empty() && format != "json") {
    return NotFoundResponse();
  } else if (format.empty()) {
    representation = NegotiateRepresentation(request.accept);
    if (representation == Representation::kNone) {
      return NotAcceptableResponse();
    }
  }

  HttpResponse response;
  if (request.verb == "OPTIONS") {
    response = OptionsResponse(path, allowed);
  } else {
    response = Dispatch(request, path, matched ? &match : nullptr, allowed,
                        suffixed ? absl::StrCat(".", format) : "");
  }
  if (representation == Representation::kHtml) {
    return HtmlResponse(request, path, allowed, std::move(response));
  }
  return response;
}

HttpResponse Transcoder::Dispatch(const HttpRequest& request,
                                  absl::string_view slashed_path,
                                  const RouteMatch* route_match,
                                  const std::vector<std::string>& allowed,
                                  absl::string_view details_suffix) const {
  if (slashed_path == kApiRoot) {
    if (request.verb != "GET") {
      return MethodNotAllowedResponse(request.verb, allowed);
    }
    return ApiRoot(request, details_suffix);
  }
  if (route_match == nullptr) {
    return MethodNotAllowedResponse(request.verb, allowed);
  }
  const RouteMatch& match = *route_match;

  // A body must be JSON or a form.
  if (!match.route->body.empty() && !request.has_form &&
      !absl::StripAsciiWhitespace(request.body).empty() &&
      !IsJsonMediaType(request.content_type)) {
    return UnsupportedMediaTypeResponse(request.content_type);
  }

  absl::StatusOr<std::unique_ptr<Message>> message =
      BuildRequestMessage(match, request, options_);
  if (!message.ok()) return ErrorResponse(message.status());
  VLOG(1) << "[rest] " << request.verb << " " << request.path << " -> "
          << match.route->method_full_name();
  absl::StatusOr<std::unique_ptr<Message>> response =
      Call(*match.route, **message);
  if (!response.ok()) return ErrorResponse(response.status());

  // The answer.
  if ((*response)->GetDescriptor()->full_name() == "google.protobuf.Empty") {
    HttpResponse empty;
    empty.status = 204;
    empty.content_type.clear();
    return empty;
  }
  DocumentOptions document_options;
  document_options.base_url = request.base_url;
  document_options.details_suffix = std::string(details_suffix);
  document_options.zone = options_.zone;
  const int status =
      absl::StartsWith(match.route->method->name(), "Create") ? 201 : 200;
  return JsonResponse(status, ResponseDocument(**response, **message, request,
                                               document_options));
}

HttpResponse Transcoder::StreamResponse(const HttpRequest& request,
                                        const RouteMatch& match,
                                        absl::string_view format) const {
  StreamBodyOptions body_options;
  if (format == "ndjson") {
    body_options.format = StreamFormat::kNdjson;
  } else if (!format.empty()) {
    return NotFoundResponse();
  }

  // The request, resumed from Last-Event-ID when the client sent one.
  absl::StatusOr<std::unique_ptr<Message>> message =
      BuildRequestMessage(match, request, options_);
  if (!message.ok()) return ErrorResponse(message.status());
  const absl::Status resumed =
      ApplyLastEventId(request.last_event_id, message->get());
  if (!resumed.ok()) return ErrorResponse(resumed);
  std::string serialized;
  if (!(*message)->SerializeToString(&serialized)) {
    return ErrorResponse(absl::InternalError("cannot serialize the request"));
  }

  // A place among the open streams, then the call and its first message.
  absl::StatusOr<std::unique_ptr<StreamRegistry::Slot>> slot = streams_.Admit();
  if (!slot.ok()) return ErrorResponse(slot.status());
  VLOG(1) << "[rest] stream " << request.path << " -> "
          << match.route->method_full_name();
  const absl::Time deadline = absl::Now() + options_.call_timeout;
  body_options.document.base_url = request.base_url;
  body_options.document.zone = options_.zone;
  body_options.keep_alive = options_.stream_keep_alive;
  auto body = std::make_shared<EventStreamBody>(
      std::make_unique<StreamingCall>(channel_, MethodPath(*match.route),
                                      serialized, deadline),
      *std::move(slot), match.route->method->output_type(), body_options);
  const absl::Status opened = body->Open(deadline);
  if (!opened.ok()) return ErrorResponse(opened);

  HttpResponse response;
  response.content_type = StreamContentType(body_options.format);
  response.headers.emplace_back("Cache-Control", "no-cache");
  // Proxies such as nginx pass each event on at once.
  response.headers.emplace_back("X-Accel-Buffering", "no");
  response.stream = std::move(body);
  return response;
}

}  // namespace rest
}  // namespace jobline
