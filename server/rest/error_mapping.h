// The one table that turns errors into the REST face's answers.
//
// Errors reach the REST face as absl::Status: from the gRPC call (through
// FromGrpcStatus, client/status_util.h, which keeps the google.rpc.BadRequest
// of a field error as a payload) or from the transcoder itself. They are
// answered with the status codes and body shapes of upstream (spec 0):
//
//   code                 HTTP  body
//   INVALID_ARGUMENT     400   {"<field>": ["<message>", ...], ...} from the
//                              BadRequest field violations; without any,
//                              {"detail": "<message>"}
//   NOT_FOUND            404   {"detail": "Not found."}
//   FAILED_PRECONDITION  400   ["<message>"]
//   UNAUTHENTICATED      401   {"detail": "<message>"}
//   PERMISSION_DENIED    403   {"detail": "<message>"}
//   RESOURCE_EXHAUSTED   429   {"detail": "<message>"}
//   UNAVAILABLE          503   {"detail": "<message>"}
//   anything else        500   {"detail": "<message>"}
//
// A {"detail"} body without a message says "A server error occurred.".
//
// Messages of INTERNAL, UNKNOWN and DATA_LOSS are already scrubbed by the
// server (server/status_util.h), so they are safe to show.
//
// Thread safety: all functions are pure.

#ifndef JOBLINE_SERVER_REST_ERROR_MAPPING_H_
#define JOBLINE_SERVER_REST_ERROR_MAPPING_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "server/rest/http_message.h"

namespace jobline {
namespace rest {

// The HTTP status code for `code` (the table above); 200 for OK.
int HttpStatusForCode(absl::StatusCode code);

// The answer to a failed call or request. REQUIRES: !status.ok().
HttpResponse ErrorResponse(const absl::Status& status);

// INVALID_ARGUMENT naming `field`, with a google.rpc.BadRequest payload
// (type URL kBadRequestTypeUrl), answered {"<field>": ["<message>"]}.
absl::Status FieldError(absl::string_view field, absl::string_view message);

// One INVALID_ARGUMENT listing every field violation of `errors` in order
// (answered {"<field>": ["<message>", ...], ...}), with their messages
// joined by "; ". OK statuses are skipped; all OK gives OK. The first
// status that is not a field error is returned as it is.
absl::Status CombineFieldErrors(const std::vector<absl::Status>& errors);

// UNAVAILABLE "The server is shutting down." (503): what a request gets
// while the REST face stops.
absl::Status ShuttingDownError();

// 404 {"detail": "Not found."}.
HttpResponse NotFoundResponse();

// 405 {"detail": "Method \"<verb>\" not allowed."} with an Allow header
// listing `allowed` (e.g. "GET, POST").
HttpResponse MethodNotAllowedResponse(absl::string_view verb,
                                      const std::vector<std::string>& allowed);

// 415 {"detail": "Unsupported media type \"<type>\" in request."}.
HttpResponse UnsupportedMediaTypeResponse(absl::string_view content_type);

// 406 {"detail": "Could not satisfy the request Accept header."}.
HttpResponse NotAcceptableResponse();

// 413 {"detail": "Request body is larger than <limit> bytes."}.
HttpResponse PayloadTooLargeResponse(size_t limit);

}  // namespace rest
}  // namespace jobline

#endif  // JOBLINE_SERVER_REST_ERROR_MAPPING_H_
