// The boundary between Jobline's absl::Status errors and gRPC.
//
// Everything below server/ reports failures as absl::Status. A handler turns
// its final status into a grpc::Status with ToGrpcStatus(), the only place
// where that mapping happens:
//   - the code is kept (absl and gRPC number their canonical codes alike);
//   - a field error made with InvalidFieldError() reaches the client as a
//     google.rpc.Status in the error details, holding a google.rpc.BadRequest
//     that names the field;
//   - INTERNAL, UNKNOWN and DATA_LOSS never show their message to a client:
//     it is replaced by "internal error (ref <id>)" and the real message is
//     logged once at ERROR with the same ref, so an operator can find it.
//
// Thread safety: every function is safe to call from many threads.

#ifndef JOBLINE_SERVER_STATUS_UTIL_H_
#define JOBLINE_SERVER_STATUS_UTIL_H_

#include <optional>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "google/rpc/error_details.pb.h"
#include "grpcpp/support/status.h"

namespace jobline {

// Type URL of the BadRequest payload attached by InvalidFieldError().
inline constexpr absl::string_view kBadRequestTypeUrl =
    "type.googleapis.com/google.rpc.BadRequest";

// Returns INVALID_ARGUMENT with the message "<field>: <message>" and a
// google.rpc.BadRequest payload holding one field violation (field,
// message).
absl::Status InvalidFieldError(absl::string_view field,
                               absl::string_view message);

// Combines field errors into one INVALID_ARGUMENT whose BadRequest payload
// lists the violations of every status, in order, and whose message joins
// theirs with "; ". OK statuses are skipped (all OK gives OK). The first
// status that is not a field error (no BadRequest payload) is returned as
// it is: a fault is never merged into a list of field errors.
absl::Status CombineFieldErrors(absl::Span<const absl::Status> statuses);

// Gives a storage-style field error a BadRequest payload: an
// INVALID_ARGUMENT without one whose message reads "<field>: <text>"
// (storage/job_store.h words its errors so) becomes
// InvalidFieldError(field, text). Any other status is returned as it is.
absl::Status WithFieldViolation(absl::Status status);

// Returns the BadRequest payload of `status`, if it has a well-formed one.
std::optional<google::rpc::BadRequest> GetBadRequest(
    const absl::Status& status);

// Maps `status` to the grpc::Status sent to a client (see the file comment).
// An OK status maps to grpc::Status::OK.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace jobline

#endif  // JOBLINE_SERVER_STATUS_UTIL_H_
