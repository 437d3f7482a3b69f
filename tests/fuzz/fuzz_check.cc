#include "tests/fuzz/fuzz_check.h"

#include <cstdio>
#include <cstdlib>

#include "google/protobuf/util/field_comparator.h"
#include "google/protobuf/util/message_differencer.h"

namespace jobline {
namespace fuzz {

bool SameMessage(const google::protobuf::Message& a,
                 const google::protobuf::Message& b) {
  google::protobuf::util::DefaultFieldComparator comparator;
  comparator.set_treat_nan_as_equal(true);
  google::protobuf::util::MessageDifferencer differencer;
  differencer.set_field_comparator(&comparator);
  return differencer.Compare(a, b);
}

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
