#include "server/status_util.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "glog/logging.h"
#include "gmock/gmock.h"
#include "google/rpc/status.pb.h"
#include "gtest/gtest.h"

namespace jobline {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

// Collects the ERROR lines glog writes while it is registered.
class ErrorLogCollector : public google::LogSink {
 public:
  ErrorLogCollector() { google::AddLogSink(this); }
  ~ErrorLogCollector() override { google::RemoveLogSink(this); }

  void send(google::LogSeverity severity, const char* /*full_filename*/,
            const char* /*base_filename*/, int /*line*/,
            const google::LogMessageTime& /*time*/, const char* message,
            size_t message_len) override {
    if (severity != google::GLOG_ERROR) return;
    absl::MutexLock lock(&mu_);
    lines_.emplace_back(message, message_len);
  }

  std::vector<std::string> lines() {
    absl::MutexLock lock(&mu_);
    return lines_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> lines_ ABSL_GUARDED_BY(mu_);
};

struct CodeCase {
  absl::StatusCode absl_code;
  grpc::StatusCode grpc_code;
  bool hides_message;
};

// Every canonical code, with the gRPC code it must become.
const CodeCase kCodeCases[] = {
    {absl::StatusCode::kCancelled, grpc::StatusCode::CANCELLED, false},
    {absl::StatusCode::kUnknown, grpc::StatusCode::UNKNOWN, true},
    {absl::StatusCode::kInvalidArgument, grpc::StatusCode::INVALID_ARGUMENT,
     false},
    {absl::StatusCode::kDeadlineExceeded, grpc::StatusCode::DEADLINE_EXCEEDED,
     false},
    {absl::StatusCode::kNotFound, grpc::StatusCode::NOT_FOUND, false},
    {absl::StatusCode::kAlreadyExists, grpc::StatusCode::ALREADY_EXISTS, false},
    {absl::StatusCode::kPermissionDenied, grpc::StatusCode::PERMISSION_DENIED,
     false},
    {absl::StatusCode::kResourceExhausted, grpc::StatusCode::RESOURCE_EXHAUSTED,
     false},
    {absl::StatusCode::kFailedPrecondition,
     grpc::StatusCode::FAILED_PRECONDITION, false},
    {absl::StatusCode::kAborted, grpc::StatusCode::ABORTED, false},
    {absl::StatusCode::kOutOfRange, grpc::StatusCode::OUT_OF_RANGE, false},
    {absl::StatusCode::kUnimplemented, grpc::StatusCode::UNIMPLEMENTED, false},
    {absl::StatusCode::kInternal, grpc::StatusCode::INTERNAL, true},
    {absl::StatusCode::kUnavailable, grpc::StatusCode::UNAVAILABLE, false},
    {absl::StatusCode::kDataLoss, grpc::StatusCode::DATA_LOSS, true},
    {absl::StatusCode::kUnauthenticated, grpc::StatusCode::UNAUTHENTICATED,
     false},
};

TEST(ToGrpcStatus, OkMapsToOk) {
  const grpc::Status status = ToGrpcStatus(absl::OkStatus());
  EXPECT_TRUE(status.ok());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::OK);
  EXPECT_EQ(status.error_message(), "");
  EXPECT_EQ(status.error_details(), "");
}

TEST(ToGrpcStatus, MapsEveryCodeAndScrubsServerFaults) {
  ASSERT_EQ(std::size(kCodeCases), 16u);  // Plus OK above: all 17 codes.
  for (const CodeCase& c : kCodeCases) {
    SCOPED_TRACE(absl::StatusCodeToString(c.absl_code));
    const std::string secret = "SELECT * FROM jobs /var/lib/jobline.db";
    ErrorLogCollector errors;
    const grpc::Status status = ToGrpcStatus(absl::Status(c.absl_code, secret));

    EXPECT_EQ(status.error_code(), c.grpc_code);
    EXPECT_EQ(static_cast<int>(status.error_code()),
              static_cast<int>(c.absl_code));
    EXPECT_EQ(status.error_details(), "");
    if (c.hides_message) {
      EXPECT_THAT(status.error_message(),
                  MatchesRegex("internal error \\(ref [0-9a-f]{8}\\)"));
      const std::string ref =
          status.error_message().substr(20, 8);  // After "(ref ".
      const std::vector<std::string> lines = errors.lines();
      ASSERT_EQ(lines.size(), 1u);
      EXPECT_THAT(lines[0], HasSubstr(absl::StrCat("ref ", ref)));
      EXPECT_THAT(lines[0], HasSubstr(secret));
    } else {
      EXPECT_EQ(status.error_message(), secret);
      EXPECT_TRUE(errors.lines().empty());
    }
  }
}

TEST(ToGrpcStatus, RefsDifferBetweenErrors) {
  const grpc::Status a = ToGrpcStatus(absl::InternalError("a"));
  const grpc::Status b = ToGrpcStatus(absl::InternalError("b"));
  EXPECT_NE(a.error_message(), b.error_message());
}

TEST(InvalidFieldError, BuildsMessageAndPayload) {
  const absl::Status status =
      InvalidFieldError("name", "This field may not be blank.");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "name: This field may not be blank.");

  const std::optional<google::rpc::BadRequest> bad_request =
      GetBadRequest(status);
  ASSERT_TRUE(bad_request.has_value());
  ASSERT_EQ(bad_request->field_violations_size(), 1);
  EXPECT_EQ(bad_request->field_violations(0).field(), "name");
  EXPECT_EQ(bad_request->field_violations(0).description(),
            "This field may not be blank.");
}

TEST(WithFieldViolation, TurnsAStorageFieldErrorIntoAFieldError) {
  const absl::Status status = WithFieldViolation(absl::InvalidArgumentError(
      "capture_collections[0].method: unknown sampling method \"x\""));
  EXPECT_EQ(status.message(),
            "capture_collections[0].method: unknown sampling method \"x\"");
  const std::optional<google::rpc::BadRequest> bad_request =
      GetBadRequest(status);
  ASSERT_TRUE(bad_request.has_value());
  ASSERT_EQ(bad_request->field_violations_size(), 1);
  EXPECT_EQ(bad_request->field_violations(0).field(),
            "capture_collections[0].method");
  EXPECT_EQ(bad_request->field_violations(0).description(),
            "unknown sampling method \"x\"");
}

TEST(WithFieldViolation, LeavesOtherStatusesAlone) {
  const absl::Status prose = absl::InvalidArgumentError("no field here");
  EXPECT_FALSE(GetBadRequest(WithFieldViolation(prose)).has_value());
  const absl::Status spaced =
      absl::InvalidArgumentError("two words: are not a field");
  EXPECT_FALSE(GetBadRequest(WithFieldViolation(spaced)).has_value());
  const absl::Status not_found = absl::NotFoundError("job: 12");
  EXPECT_EQ(WithFieldViolation(not_found), not_found);

  const absl::Status field = InvalidFieldError("name", "bad");
  EXPECT_EQ(WithFieldViolation(field), field);
}

TEST(CombineFieldErrors, ListsEveryViolationInOrder) {
  const absl::Status status = CombineFieldErrors(
      {InvalidFieldError("name", "This field is required."), absl::OkStatus(),
       InvalidFieldError("project_id", "This field is required.")});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "name: This field is required.; "
            "project_id: This field is required.");
  const std::optional<google::rpc::BadRequest> bad_request =
      GetBadRequest(status);
  ASSERT_TRUE(bad_request.has_value());
  ASSERT_EQ(bad_request->field_violations_size(), 2);
  EXPECT_EQ(bad_request->field_violations(0).field(), "name");
  EXPECT_EQ(bad_request->field_violations(1).field(), "project_id");
  EXPECT_EQ(bad_request->field_violations(1).description(),
            "This field is required.");
}

TEST(CombineFieldErrors, OkWhenNothingFailed) {
  EXPECT_TRUE(CombineFieldErrors({}).ok());
  EXPECT_TRUE(CombineFieldErrors({absl::OkStatus(), absl::OkStatus()}).ok());
}

TEST(CombineFieldErrors, OneFieldErrorIsKeptAsItIs) {
  const absl::Status field = InvalidFieldError("delay", "bad");
  EXPECT_EQ(CombineFieldErrors({absl::OkStatus(), field}), field);
}

TEST(CombineFieldErrors, AFaultIsNotMergedIntoFieldErrors) {
  const absl::Status fault = absl::UnavailableError("database is locked");
  EXPECT_EQ(CombineFieldErrors({InvalidFieldError("name", "bad"), fault}),
            fault);
  const absl::Status prose = absl::InvalidArgumentError("no field here");
  EXPECT_EQ(CombineFieldErrors({prose, InvalidFieldError("name", "bad")}),
            prose);
}

TEST(GetBadRequest, AbsentWithoutPayload) {
  EXPECT_FALSE(GetBadRequest(absl::InvalidArgumentError("x")).has_value());
  EXPECT_FALSE(GetBadRequest(absl::OkStatus()).has_value());
}

TEST(ToGrpcStatus, FieldErrorCarriesBadRequestInDetails) {
  const grpc::Status status = ToGrpcStatus(InvalidFieldError(
      "pipeline_id", "Invalid pk \"99\" - object does not exist."));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(),
            "pipeline_id: Invalid pk \"99\" - object does not exist.");

  google::rpc::Status rich;
  ASSERT_TRUE(rich.ParseFromString(status.error_details()));
  EXPECT_EQ(rich.code(), 3);
  EXPECT_EQ(rich.message(), status.error_message());
  ASSERT_EQ(rich.details_size(), 1);
  EXPECT_EQ(rich.details(0).type_url(),
            "type.googleapis.com/google.rpc.BadRequest");
  google::rpc::BadRequest bad_request;
  ASSERT_TRUE(rich.details(0).UnpackTo(&bad_request));
  ASSERT_EQ(bad_request.field_violations_size(), 1);
  EXPECT_EQ(bad_request.field_violations(0).field(), "pipeline_id");
  EXPECT_EQ(bad_request.field_violations(0).description(),
            "Invalid pk \"99\" - object does not exist.");
}

TEST(ToGrpcStatus, ServerFaultDropsPayload) {
  absl::Status status = absl::InternalError("disk on fire");
  status.SetPayload(kBadRequestTypeUrl, absl::Cord("x"));
  const grpc::Status mapped = ToGrpcStatus(status);
  EXPECT_EQ(mapped.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(mapped.error_details(), "");
  EXPECT_FALSE(absl::StrContains(mapped.error_message(), "disk"));
}

}  // namespace
}  // namespace jobline
