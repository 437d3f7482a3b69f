#include "server/status_util.h"

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "glog/logging.h"
#include "google/protobuf/any.pb.h"
#include "google/rpc/status.pb.h"

namespace jobline {
namespace {

// A short random reference that ties a client's generic error message to
// the operator's log line.
std::string NewErrorRef() {
  thread_local std::mt19937_64 generator{std::random_device{}()};
  return absl::StrFormat("%08x", static_cast<uint32_t>(generator()));
}

bool HidesMessage(absl::StatusCode code) {
  return code == absl::StatusCode::kInternal ||
         code == absl::StatusCode::kUnknown ||
         code == absl::StatusCode::kDataLoss;
}

}  // namespace

absl::Status InvalidFieldError(absl::string_view field,
                               absl::string_view message) {
  google::rpc::BadRequest bad_request;
  google::rpc::BadRequest::FieldViolation* violation =
      bad_request.add_field_violations();
  violation->set_field(std::string(field));
  violation->set_description(std::string(message));

  absl::Status status(absl::StatusCode::kInvalidArgument,
                      absl::StrCat(field, ": ", message));
  status.SetPayload(kBadRequestTypeUrl,
                    absl::Cord(bad_request.SerializeAsString()));
  return status;
}

absl::Status CombineFieldErrors(absl::Span<const absl::Status> statuses) {
  google::rpc::BadRequest combined;
  std::vector<absl::string_view> messages;
  for (const absl::Status& status : statuses) {
    if (status.ok()) continue;
    const std::optional<google::rpc::BadRequest> bad_request =
        GetBadRequest(status);
    if (!bad_request.has_value()) return status;
    for (const auto& violation : bad_request->field_violations()) {
      *combined.add_field_violations() = violation;
    }
    messages.push_back(status.message());
  }
  if (messages.empty()) return absl::OkStatus();
  absl::Status status(absl::StatusCode::kInvalidArgument,
                      absl::StrJoin(messages, "; "));
  status.SetPayload(kBadRequestTypeUrl,
                    absl::Cord(combined.SerializeAsString()));
  return status;
}

absl::Status WithFieldViolation(absl::Status status) {
  if (status.code() != absl::StatusCode::kInvalidArgument ||
      status.GetPayload(kBadRequestTypeUrl).has_value()) {
    return status;
  }
  const absl::string_view message = status.message();
  const size_t colon = message.find(": ");
  if (colon == absl::string_view::npos || colon == 0) return status;
  const absl::string_view field = message.substr(0, colon);
  if (field.find(' ') != absl::string_view::npos) return status;
  return InvalidFieldError(field, message.substr(colon + 2));
}

std::optional<google::rpc::BadRequest> GetBadRequest(
    const absl::Status& status) {
  const auto payload = status.GetPayload(kBadRequestTypeUrl);
  if (!payload.has_value()) return std::nullopt;
  google::rpc::BadRequest bad_request;
  if (!bad_request.ParseFromString(std::string(*payload))) {
    return std::nullopt;
  }
  return bad_request;
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const auto code = static_cast<grpc::StatusCode>(status.code());

  // Server faults: the client gets a reference, the log gets the details.
  if (HidesMessage(status.code())) {
    const std::string ref = NewErrorRef();
    LOG(ERROR) << "ref " << ref << ": "
               << absl::StatusCodeToString(status.code()) << ": "
               << status.message();
    return grpc::Status(code, absl::StrCat("internal error (ref ", ref, ")"));
  }

  const std::string message(status.message());
  const auto payload = status.GetPayload(kBadRequestTypeUrl);
  if (!payload.has_value()) return grpc::Status(code, message);

  // A field error: carry the BadRequest as google.rpc.Status details, the
  // shape gRPC's rich error model expects in the trailers.
  google::rpc::Status rich;
  rich.set_code(static_cast<int32_t>(status.code()));
  rich.set_message(message);
  google::protobuf::Any* detail = rich.add_details();
  detail->set_type_url(std::string(kBadRequestTypeUrl));
  detail->set_value(std::string(*payload));
  return grpc::Status(code, message, rich.SerializeAsString());
}

}  // namespace jobline
