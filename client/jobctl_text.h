// Text pieces shared by jobctl's commands: error lines, percentages and
// stage params as people read them.
//
// Thread safety: all functions are pure and safe to call concurrently.

#ifndef JOBLINE_CLIENT_JOBCTL_TEXT_H_
#define JOBLINE_CLIENT_JOBCTL_TEXT_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/struct.pb.h"

namespace jobline {

// "jobctl: <CODE>: <message>" for a failed call. A field error of a
// google.rpc.BadRequest reads "field: description" (several joined by
// "; ") in place of the message.
std::string ErrorText(const absl::Status& status);

// Whole percent of a progress fraction, rounded down: 0.999 is "99%".
std::string PercentText(double progress);

// A stage param value: strings as they are, anything else as JSON.
std::string ParamValueText(const google::protobuf::Value& value);

// `text` on one line: control characters (below U+0020) become spaces.
std::string OneLine(absl::string_view text);

}  // namespace jobline

#endif  // JOBLINE_CLIENT_JOBCTL_TEXT_H_
