#include "tests/fuzz/fuzz_check.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>

namespace jobline {
namespace fuzz {
namespace {

void PrintAndAbort(const char* file, int line, const std::string& message) {
  std::fprintf(stderr, "%s:%d: broken invariant: %s\n", file, line,
               message.c_str());
  std::fflush(stderr);
  std::abort();
}

std::atomic<BrokenInvariantHandler> handler{&PrintAndAbort};

}  // namespace

bool TraceEnabled() {
  static const bool enabled = std::getenv("JOBLINE_FUZZ_TRACE") != nullptr;
  return enabled;
}

void TraceLine(const std::string& line) {
  std::fprintf(stderr, "%s\n", line.c_str());
}

void SetBrokenInvariantHandler(BrokenInvariantHandler new_handler) {
  handler.store(new_handler != nullptr ? new_handler : &PrintAndAbort);
}

void ReportBrokenInvariant(const char* file, int line,
                           const std::string& message) {
  handler.load()(file, line, message);
}

}  // namespace fuzz
}  // namespace jobline
