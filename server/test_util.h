// Helpers shared by the server's unit tests and the end-to-end tests.
//
// Thread safety: the functions are pure; the matcher is as safe as gMock's.

#ifndef JOBLINE_SERVER_TEST_UTIL_H_
#define JOBLINE_SERVER_TEST_UTIL_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "server/status_util.h"
#include "storage/job_store.h"

namespace jobline {
namespace testing {

// Matches a message equal to `expected` (field by field).
MATCHER_P(EqualsProto, expected, expected.ShortDebugString()) {
  return google::protobuf::util::MessageDifferencer::Equals(arg, expected);
}

// The message written in text format as `text`; a parse error fails the
// test.
template <typename Message>
Message ParseText(const std::string& text) {
  Message message;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &message))
      << text;
  return message;
}

// "field: description" of the single field violation of `status`, or a
// marker that says why there is none.
inline std::string Violation(const absl::Status& status) {
  if (status.code() != absl::StatusCode::kInvalidArgument) {
    return absl::StrCat("<not INVALID_ARGUMENT: ", status.ToString(), ">");
  }
  const std::optional<google::rpc::BadRequest> bad_request =
      GetBadRequest(status);
  if (!bad_request.has_value()) return "<no BadRequest>";
  if (bad_request->field_violations_size() != 1) return "<not one violation>";
  const auto& violation = bad_request->field_violations(0);
  return absl::StrCat(violation.field(), ": ", violation.description());
}

// `duration` as a protobuf Duration, to the nanosecond.
inline google::protobuf::Duration ProtoDuration(absl::Duration duration) {
  return google::protobuf::util::TimeUtil::NanosecondsToDuration(
      absl::ToInt64Nanoseconds(duration));
}

// The log lines of a mutation as "LEVEL message".
inline std::vector<std::string> Logs(const JobMutation& mutation) {
  std::vector<std::string> lines;
  for (const NewLogLine& line : mutation.logs) {
    lines.push_back(absl::StrCat(LogLevelName(line.level), " ", line.message));
  }
  return lines;
}

}  // namespace testing
}  // namespace jobline

#endif  // JOBLINE_SERVER_TEST_UTIL_H_
