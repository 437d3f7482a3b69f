#include "tools/loadgen/process_memory.h"

#include <fstream>
#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace jobline {
namespace loadgen {

absl::StatusOr<int64_t> ParseVmRssKib(absl::string_view status_text) {
  for (absl::string_view line : absl::StrSplit(status_text, '\n')) {
    const absl::string_view whole = line;
    if (!absl::ConsumePrefix(&line, "VmRSS:")) continue;
    line = absl::StripAsciiWhitespace(line);
    int64_t kib = 0;
    if (!absl::ConsumeSuffix(&line, "kB") ||
        !absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &kib) || kib < 0) {
      return absl::DataLossError(
          absl::StrCat("unexpected VmRSS line: \"", whole, "\""));
    }
    return kib;
  }
  return absl::NotFoundError("no VmRSS line");
}

absl::StatusOr<int64_t> ReadVmRssKib(pid_t pid) {
  const std::string path = absl::StrCat("/proc/", pid, "/status");
  std::ifstream file(path);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::ostringstream text;
  text << file.rdbuf();
  absl::StatusOr<int64_t> kib = ParseVmRssKib(text.str());
  if (!kib.ok()) {
    return absl::Status(kib.status().code(),
                        absl::StrCat(path, ": ", kib.status().message()));
  }
  return kib;
}

}  // namespace loadgen
}  // namespace jobline
