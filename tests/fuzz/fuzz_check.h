// Invariant checks of Jobline's fuzz targets.
//
// A fuzz target states what must hold for every input with
// JOBLINE_FUZZ_CHECK(condition, message parts...). A broken invariant goes
// to the current handler: by default it is printed to stderr and the
// process aborts, which libFuzzer records as a crash and saves the input
// for. The regression test (tests/fuzz/regression_test.cc) installs a
// handler that records the failure instead, so that one run reports every
// input that breaks a rule.
//
// Thread safety: the handler is a process-wide setting; set it before any
// target runs. Checks may then be made from any thread.

#ifndef JOBLINE_TESTS_FUZZ_FUZZ_CHECK_H_
#define JOBLINE_TESTS_FUZZ_FUZZ_CHECK_H_

#include <string>

#include "absl/strings/str_cat.h"

namespace jobline {
namespace fuzz {

// Receives a broken invariant: the source location of the check and a
// message that names the condition and the values involved.
using BrokenInvariantHandler = void (*)(const char* file, int line,
                                        const std::string& message);

// Replaces the handler; null restores the default (print and abort).
void SetBrokenInvariantHandler(BrokenInvariantHandler handler);

// Passes a broken invariant to the current handler.
void ReportBrokenInvariant(const char* file, int line,
                           const std::string& message);

// Whether the targets describe each step they take on stderr: set the
// environment variable JOBLINE_FUZZ_TRACE (to anything) to follow what an
// input does, e.g. a regression input replayed by a fuzz binary.
bool TraceEnabled();

// Prints one line to stderr.
void TraceLine(const std::string& line);

}  // namespace fuzz
}  // namespace jobline

// Prints a trace line joined with absl::StrCat when tracing is enabled; the
// arguments are evaluated only then.
#define JOBLINE_FUZZ_TRACE(...)                                \
  do {                                                         \
    if (::jobline::fuzz::TraceEnabled()) {                     \
      ::jobline::fuzz::TraceLine(::absl::StrCat(__VA_ARGS__)); \
    }                                                          \
  } while (false)

// Reports a broken invariant unless `condition` holds. The remaining
// arguments are joined with absl::StrCat into the message; they are
// evaluated only when the condition fails.
#define JOBLINE_FUZZ_CHECK(condition, ...)                                \
  do {                                                                    \
    if (!(condition)) {                                                   \
      ::jobline::fuzz::ReportBrokenInvariant(                             \
          __FILE__, __LINE__,                                             \
          ::absl::StrCat("check failed: " #condition "; ", __VA_ARGS__)); \
    }                                                                     \
  } while (false)

#endif  // JOBLINE_TESTS_FUZZ_FUZZ_CHECK_H_
