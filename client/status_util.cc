#include "client/status_util.h"

#include <optional>

#include "absl/strings/cord.h"
#include "google/protobuf/any.pb.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

namespace jobline {

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();

  // grpc::StatusCode and absl::StatusCode share the canonical numbering.
  absl::Status result(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
  if (status.error_details().empty()) return result;

  google::rpc::Status rpc_status;
  if (!rpc_status.ParseFromString(status.error_details())) return result;
  for (const google::protobuf::Any& detail : rpc_status.details()) {
    google::rpc::BadRequest bad_request;
    if (detail.UnpackTo(&bad_request)) {
      result.SetPayload(kBadRequestTypeUrl,
                        absl::Cord(bad_request.SerializeAsString()));
      break;
    }
  }
  return result;
}

std::vector<std::pair<std::string, std::string>> FieldViolations(
    const absl::Status& status) {
  std::vector<std::pair<std::string, std::string>> violations;
  const auto payload = status.GetPayload(kBadRequestTypeUrl);
  if (!payload.has_value()) return violations;

  google::rpc::BadRequest bad_request;
  if (!bad_request.ParseFromString(std::string(*payload))) return violations;
  for (const auto& violation : bad_request.field_violations()) {
    violations.emplace_back(violation.field(), violation.description());
  }
  return violations;
}

}  // namespace jobline
