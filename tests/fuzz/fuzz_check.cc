#include "tests/fuzz/fuzz_check.h"

#include <cstdio>
#include <cstdlib>

namespace jobline {
namespace fuzz {

bool TraceEnabled() {
  static const bool enabled = std::getenv("JOBLINE_FUZZ_TRACE") != nullptr;
  return enabled;
}

void TraceLine(const std::string& line) {
  std::fprintf(stderr, "%s\n", line.c_str());
}

void ReportBrokenInvariant(const char* file, int line,
                           const std::string& message) {
  std::fprintf(stderr, "%s:%d: broken invariant: %s\n", file, line,
               message.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace fuzz
}  // namespace jobline
