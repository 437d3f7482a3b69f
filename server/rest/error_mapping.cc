#include "server/rest/error_mapping.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/job_document.h"
#include "client/status_util.h"
#include "google/rpc/error_details.pb.h"
#include "nlohmann/json.hpp"

namespace jobline {
namespace rest {
namespace {

// How the body of an error answer is shaped.
enum class BodyShape {
  kFieldErrors,  // {"field": ["message"]}, else {"detail": message}
  kNotFound,     // {"detail": "Not found."}
  kMessageList,  // ["message"]
  kDetail,       // {"detail": message}
};

struct CodeMapping {
  absl::StatusCode code;
  int http_status;
  BodyShape shape;
};

// The table of the file comment in error_mapping.h; codes not listed answer
// 500 with kDetail.
constexpr CodeMapping kCodeTable[] = {
    {absl::StatusCode::kInvalidArgument, 400, BodyShape::kFieldErrors},
    {absl::StatusCode::kNotFound, 404, BodyShape::kNotFound},
    {absl::StatusCode::kFailedPrecondition, 400, BodyShape::kMessageList},
    {absl::StatusCode::kUnauthenticated, 401, BodyShape::kDetail},
    {absl::StatusCode::kPermissionDenied, 403, BodyShape::kDetail},
    {absl::StatusCode::kResourceExhausted, 429, BodyShape::kDetail},
    {absl::StatusCode::kUnavailable, 503, BodyShape::kDetail},
};

constexpr CodeMapping kOtherCodes = {absl::StatusCode::kUnknown, 500,
                                     BodyShape::kDetail};

const CodeMapping& MappingFor(absl::StatusCode code) {
  for (const CodeMapping& mapping : kCodeTable) {
    if (mapping.code == code) return mapping;
  }
  return kOtherCodes;
}

HttpResponse JsonResponse(int status, const nlohmann::ordered_json& body) {
  HttpResponse response;
  response.status = status;
  response.body = ToJsonText(body);
  return response;
}

nlohmann::ordered_json Detail(absl::string_view message) {
  nlohmann::ordered_json body = nlohmann::ordered_json::object();
  body["detail"] = std::string(message);
  return body;
}

}  // namespace

int HttpStatusForCode(absl::StatusCode code) {
  if (code == absl::StatusCode::kOk) return 200;
  return MappingFor(code).http_status;
}

HttpResponse ErrorResponse(const absl::Status& status) {
  const CodeMapping& mapping = MappingFor(status.code());
  switch (mapping.shape) {
    case BodyShape::kFieldErrors: {
      const auto violations = FieldViolations(status);
      if (violations.empty()) {
        return JsonResponse(mapping.http_status, Detail(status.message()));
      }
      // Messages of one field are grouped, fields in order of appearance.
      nlohmann::ordered_json body = nlohmann::ordered_json::object();
      for (const auto& [field, message] : violations) {
        body[field].push_back(message);
      }
      return JsonResponse(mapping.http_status, body);
    }
    case BodyShape::kNotFound:
      return NotFoundResponse();
    case BodyShape::kMessageList:
      return JsonResponse(
          mapping.http_status,
          nlohmann::ordered_json::array({std::string(status.message())}));
    case BodyShape::kDetail:
      break;
  }
  // A fault without a message (a channel error) still says what happened.
  return JsonResponse(mapping.http_status,
                      Detail(status.message().empty()
                                 ? absl::string_view("A server error occurred.")
                                 : status.message()));
}

namespace {

// INVALID_ARGUMENT with `message` and a BadRequest of `violations`.
absl::Status BadRequestStatus(const google::rpc::BadRequest& violations,
                              absl::string_view message) {
  absl::Status status = absl::InvalidArgumentError(message);
  status.SetPayload(kBadRequestTypeUrl,
                    absl::Cord(violations.SerializeAsString()));
  return status;
}

}  // namespace

absl::Status FieldError(absl::string_view field, absl::string_view message) {
  google::rpc::BadRequest bad_request;
  google::rpc::BadRequest::FieldViolation* violation =
      bad_request.add_field_violations();
  violation->set_field(std::string(field));
  violation->set_description(std::string(message));
  return BadRequestStatus(bad_request, absl::StrCat(field, ": ", message));
}

absl::Status CombineFieldErrors(const std::vector<absl::Status>& errors) {
  google::rpc::BadRequest combined;
  std::vector<absl::string_view> messages;
  for (const absl::Status& error : errors) {
    if (error.ok()) continue;
    const auto violations = FieldViolations(error);
    if (violations.empty()) return error;
    for (const auto& [field, message] : violations) {
      google::rpc::BadRequest::FieldViolation* violation =
          combined.add_field_violations();
      violation->set_field(field);
      violation->set_description(message);
    }
    messages.push_back(error.message());
  }
  if (messages.empty()) return absl::OkStatus();
  return BadRequestStatus(combined, absl::StrJoin(messages, "; "));
}

absl::Status ShuttingDownError() {
  return absl::UnavailableError("The server is shutting down.");
}

HttpResponse NotFoundResponse() {
  return JsonResponse(404, Detail("Not found."));
}

HttpResponse MethodNotAllowedResponse(absl::string_view verb,
                                      const std::vector<std::string>& allowed) {
  HttpResponse response = JsonResponse(
      405, Detail(absl::StrCat("Method \"", verb, "\" not allowed.")));
  response.headers.emplace_back("Allow", absl::StrJoin(allowed, ", "));
  return response;
}

HttpResponse UnsupportedMediaTypeResponse(absl::string_view content_type) {
  return JsonResponse(
      415, Detail(absl::StrCat("Unsupported media type \"", content_type,
                               "\" in request.")));
}

HttpResponse NotAcceptableResponse() {
  return JsonResponse(406,
                      Detail("Could not satisfy the request Accept header."));
}

HttpResponse PayloadTooLargeResponse(size_t limit) {
  return JsonResponse(413, Detail(absl::StrCat("Request body is larger than ",
                                               limit, " bytes.")));
}

}  // namespace rest
}  // namespace jobline
