#include "client/jobctl_text.h"

#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/job_document.h"
#include "client/status_util.h"

namespace jobline {

std::string ErrorText(const absl::Status& status) {
  std::string message(status.message());
  const std::vector<std::pair<std::string, std::string>> violations =
      FieldViolations(status);
  if (!violations.empty()) {
    std::vector<std::string> parts;
    for (const auto& [field, description] : violations) {
      parts.push_back(field.empty() ? description
                                    : absl::StrCat(field, ": ", description));
    }
    message = absl::StrJoin(parts, "; ");
  }
  return absl::StrCat("jobctl: ", absl::StatusCodeToString(status.code()), ": ",
                      message);
}

std::string PercentText(double progress) {
  return absl::StrCat(static_cast<int64_t>(std::floor(progress * 100 + 1e-9)),
                      "%");
}

std::string ParamValueText(const google::protobuf::Value& value) {
  if (value.kind_case() == google::protobuf::Value::kStringValue) {
    return value.string_value();
  }
  return ToJsonText(ValueToJson(value));
}

std::string OneLine(absl::string_view text) {
  std::string line(text);
  for (char& c : line) {
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  }
  return line;
}

}  // namespace jobline
