// Invariant checks of Jobline's fuzz targets.
//
// A fuzz target states what must hold for every input with
// JOBLINE_FUZZ_CHECK(condition, message parts...). A broken invariant is
// printed to stderr and the process aborts, which libFuzzer records as a
// crash and saves the input for; the regression test
// (tests/fuzz/regression_test.cc) runs each input in a child process and
// fails on it.
//
// Thread safety: checks and traces may be made from any thread.

#ifndef JOBLINE_TESTS_FUZZ_FUZZ_CHECK_H_
#define JOBLINE_TESTS_FUZZ_FUZZ_CHECK_H_

#include <string>

#include "absl/strings/str_cat.h"
#include "google/protobuf/message.h"

namespace jobline {
namespace fuzz {

// Prints a broken invariant with the source location of its check and
// aborts.
[[noreturn]] void ReportBrokenInvariant(const char* file, int line,
                                        const std::string& message);

// Whether `a` and `b` hold the same fields and values, a NaN being equal
// to a NaN: a NaN that did not change is no change.
bool SameMessage(const google::protobuf::Message& a,
                 const google::protobuf::Message& b);

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
