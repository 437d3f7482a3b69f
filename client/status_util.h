// The client side of the boundary between gRPC and absl::Status.
//
// The server turns every absl::Status into a grpc::Status with the same code
// and message; a field error additionally carries a google.rpc.BadRequest
// inside the serialized google.rpc.Status of the error details. These
// functions undo that mapping so that client code only sees absl::Status.
//
// Thread safety: all functions are pure and safe to call concurrently.

#ifndef JOBLINE_CLIENT_STATUS_UTIL_H_
#define JOBLINE_CLIENT_STATUS_UTIL_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "grpcpp/support/status.h"

namespace jobline {

// Type URL of the absl::Status payload that holds a serialized
// google.rpc.BadRequest.
inline constexpr absl::string_view kBadRequestTypeUrl =
    "type.googleapis.com/google.rpc.BadRequest";

// Returns an absl::Status with the code and message of `status`. When the
// error details hold a serialized google.rpc.Status with a
// google.rpc.BadRequest detail, that BadRequest is attached as the payload
// kBadRequestTypeUrl. Unparsable details are ignored (the code and message
// still come through). An OK status maps to absl::OkStatus().
absl::Status FromGrpcStatus(const grpc::Status& status);

// The (field, description) pairs of the BadRequest payload of `status`, in
// order. Empty when there is no such payload or it does not parse.
std::vector<std::pair<std::string, std::string>> FieldViolations(
    const absl::Status& status);

}  // namespace jobline

#endif  // JOBLINE_CLIENT_STATUS_UTIL_H_
