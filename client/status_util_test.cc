#include "client/status_util.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/cord.h"
#include "google/protobuf/any.pb.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "gtest/gtest.h"

namespace jobline {
namespace {

using Violations = std::vector<std::pair<std::string, std::string>>;

// The error details the server sends for a field error.
std::string DetailsWithViolations(const Violations& violations) {
  google::rpc::BadRequest bad_request;
  for (const auto& [field, description] : violations) {
    auto* violation = bad_request.add_field_violations();
    violation->set_field(field);
    violation->set_description(description);
  }
  google::rpc::Status rpc_status;
  rpc_status.set_code(grpc::StatusCode::INVALID_ARGUMENT);
  rpc_status.add_details()->PackFrom(bad_request);
  return rpc_status.SerializeAsString();
}

TEST(FromGrpcStatus, OkIsOk) {
  EXPECT_EQ(FromGrpcStatus(grpc::Status::OK), absl::OkStatus());
}

TEST(FromGrpcStatus, KeepsEveryCodeAndTheMessage) {
  const std::vector<std::pair<grpc::StatusCode, absl::StatusCode>> codes = {
      {grpc::StatusCode::CANCELLED, absl::StatusCode::kCancelled},
      {grpc::StatusCode::UNKNOWN, absl::StatusCode::kUnknown},
      {grpc::StatusCode::INVALID_ARGUMENT, absl::StatusCode::kInvalidArgument},
      {grpc::StatusCode::DEADLINE_EXCEEDED,
       absl::StatusCode::kDeadlineExceeded},
      {grpc::StatusCode::NOT_FOUND, absl::StatusCode::kNotFound},
      {grpc::StatusCode::ALREADY_EXISTS, absl::StatusCode::kAlreadyExists},
      {grpc::StatusCode::PERMISSION_DENIED,
       absl::StatusCode::kPermissionDenied},
      {grpc::StatusCode::RESOURCE_EXHAUSTED,
       absl::StatusCode::kResourceExhausted},
      {grpc::StatusCode::FAILED_PRECONDITION,
       absl::StatusCode::kFailedPrecondition},
      {grpc::StatusCode::ABORTED, absl::StatusCode::kAborted},
      {grpc::StatusCode::OUT_OF_RANGE, absl::StatusCode::kOutOfRange},
      {grpc::StatusCode::UNIMPLEMENTED, absl::StatusCode::kUnimplemented},
      {grpc::StatusCode::INTERNAL, absl::StatusCode::kInternal},
      {grpc::StatusCode::UNAVAILABLE, absl::StatusCode::kUnavailable},
      {grpc::StatusCode::DATA_LOSS, absl::StatusCode::kDataLoss},
      {grpc::StatusCode::UNAUTHENTICATED, absl::StatusCode::kUnauthenticated},
  };
  for (const auto& [grpc_code, absl_code] : codes) {
    const absl::Status status =
        FromGrpcStatus(grpc::Status(grpc_code, "went wrong"));
    EXPECT_EQ(status, absl::Status(absl_code, "went wrong"))
        << "grpc code " << grpc_code;
  }
}

TEST(FromGrpcStatus, AttachesTheBadRequestDetail) {
  const absl::Status status = FromGrpcStatus(grpc::Status(
      grpc::StatusCode::INVALID_ARGUMENT, "name: This field may not be blank.",
      DetailsWithViolations({{"name", "This field may not be blank."},
                             {"limit",
                              "Ensure this value is less than or "
                              "equal to 2147483647."}})));

  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "name: This field may not be blank.");
  EXPECT_TRUE(status.GetPayload(kBadRequestTypeUrl).has_value());
  EXPECT_EQ(FieldViolations(status),
            (Violations{{"name", "This field may not be blank."},
                        {"limit",
                         "Ensure this value is less than or equal "
                         "to 2147483647."}}));
}

TEST(FromGrpcStatus, FindsTheBadRequestAmongOtherDetails) {
  google::rpc::DebugInfo info;
  info.set_detail("BAD_JOB");
  google::rpc::BadRequest bad_request;
  auto* violation = bad_request.add_field_violations();
  violation->set_field("job_type_key");
  violation->set_description("\"x\" is not a valid choice.");
  google::rpc::Status rpc_status;
  rpc_status.add_details()->PackFrom(info);
  rpc_status.add_details()->PackFrom(bad_request);

  const absl::Status status = FromGrpcStatus(
      grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad job type",
                   rpc_status.SerializeAsString()));

  EXPECT_EQ(FieldViolations(status),
            (Violations{{"job_type_key", "\"x\" is not a valid choice."}}));
}

TEST(FromGrpcStatus, DetailsWithoutBadRequestAttachNothing) {
  google::rpc::DebugInfo info;
  info.set_detail("BUSY");
  google::rpc::Status rpc_status;
  rpc_status.add_details()->PackFrom(info);

  const absl::Status status = FromGrpcStatus(grpc::Status(
      grpc::StatusCode::ABORTED, "busy", rpc_status.SerializeAsString()));

  EXPECT_EQ(status, absl::AbortedError("busy"));
  EXPECT_FALSE(status.GetPayload(kBadRequestTypeUrl).has_value());
  EXPECT_EQ(FieldViolations(status), Violations{});
}

TEST(FromGrpcStatus, UnparsableDetailsKeepCodeAndMessage) {
  const absl::Status status = FromGrpcStatus(grpc::Status(
      grpc::StatusCode::INVALID_ARGUMENT, "bad", std::string("\xff\xff", 2)));

  EXPECT_EQ(status, absl::InvalidArgumentError("bad"));
  EXPECT_EQ(FieldViolations(status), Violations{});
}

TEST(FieldViolations, EmptyForOkAndPlainErrors) {
  EXPECT_EQ(FieldViolations(absl::OkStatus()), Violations{});
  EXPECT_EQ(FieldViolations(absl::NotFoundError("Not found.")), Violations{});
}

TEST(FieldViolations, EmptyForAnUnparsablePayload) {
  absl::Status status = absl::InvalidArgumentError("bad");
  status.SetPayload(kBadRequestTypeUrl, absl::Cord("\xff\xff"));
  EXPECT_EQ(FieldViolations(status), Violations{});
}

}  // namespace
}  // namespace jobline
