#include "server/rest/error_mapping.h"

#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace jobline {
namespace rest {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

TEST(ErrorMapping, HttpStatusOfEveryCode) {
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kOk), 200);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kNotFound), 404);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kFailedPrecondition), 400);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kUnauthenticated), 401);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kPermissionDenied), 403);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kResourceExhausted), 429);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kUnavailable), 503);
  for (absl::StatusCode code :
       {absl::StatusCode::kCancelled, absl::StatusCode::kUnknown,
        absl::StatusCode::kDeadlineExceeded, absl::StatusCode::kAlreadyExists,
        absl::StatusCode::kAborted, absl::StatusCode::kOutOfRange,
        absl::StatusCode::kUnimplemented, absl::StatusCode::kInternal,
        absl::StatusCode::kDataLoss}) {
    EXPECT_EQ(HttpStatusForCode(code), 500) << code;
  }
}

TEST(ErrorMapping, FieldErrorsBecomeAFieldObject) {
  const HttpResponse response =
      ErrorResponse(FieldError("name", "This field may not be blank."));
  EXPECT_EQ(response.status, 400);
  EXPECT_EQ(response.content_type, "application/json");
  EXPECT_EQ(response.body, R"({"name":["This field may not be blank."]})");
}

TEST(ErrorMapping, InvalidArgumentWithoutFieldIsADetail) {
  const HttpResponse response = ErrorResponse(
      absl::InvalidArgumentError("JSON parse error - Unexpected token."));
  EXPECT_EQ(response.status, 400);
  EXPECT_EQ(response.body,
            R"({"detail":"JSON parse error - Unexpected token."})");
}

TEST(ErrorMapping, NotFoundHidesTheMessage) {
  const HttpResponse response =
      ErrorResponse(absl::NotFoundError("job 12 not found"));
  EXPECT_EQ(response.status, 404);
  EXPECT_EQ(response.body, R"({"detail":"Not found."})");
}

TEST(ErrorMapping, FailedPreconditionIsAMessageList) {
  const HttpResponse response = ErrorResponse(
      absl::FailedPreconditionError("Job 3 is PENDING and cannot be run."));
  EXPECT_EQ(response.status, 400);
  EXPECT_EQ(response.body, R"(["Job 3 is PENDING and cannot be run."])");
}

TEST(ErrorMapping, OtherCodesAreDetails) {
  EXPECT_EQ(ErrorResponse(absl::UnavailableError("read-only")).body,
            R"({"detail":"read-only"})");
  EXPECT_EQ(ErrorResponse(absl::ResourceExhaustedError("full")).status, 429);
  const HttpResponse internal =
      ErrorResponse(absl::InternalError("internal error (ref 1a2b3c4d)"));
  EXPECT_EQ(internal.status, 500);
  EXPECT_EQ(internal.body,
            R"json({"detail":"internal error (ref 1a2b3c4d)"})json");
}

TEST(ErrorMapping, AFaultWithoutAMessageSaysSo) {
  const HttpResponse response = ErrorResponse(absl::InternalError(""));
  EXPECT_EQ(response.status, 500);
  EXPECT_EQ(response.body, R"({"detail":"A server error occurred."})");
}

TEST(ErrorMapping, MethodNotAllowedListsTheVerbs) {
  const HttpResponse response =
      MethodNotAllowedResponse("POST", {"DELETE", "GET", "PATCH", "PUT"});
  EXPECT_EQ(response.status, 405);
  EXPECT_EQ(response.body, R"({"detail":"Method \"POST\" not allowed."})");
  EXPECT_THAT(response.headers,
              ElementsAre(Pair("Allow", "DELETE, GET, PATCH, PUT")));
}

TEST(ErrorMapping, MediaTypeAndSize) {
  EXPECT_EQ(
      UnsupportedMediaTypeResponse("text/plain").body,
      R"({"detail":"Unsupported media type \"text/plain\" in request."})");
  EXPECT_EQ(UnsupportedMediaTypeResponse("text/plain").status, 415);
  EXPECT_EQ(PayloadTooLargeResponse(1048576).status, 413);
  EXPECT_EQ(PayloadTooLargeResponse(1048576).body,
            R"({"detail":"Request body is larger than 1048576 bytes."})");
}

}  // namespace
}  // namespace rest
}  // namespace jobline
