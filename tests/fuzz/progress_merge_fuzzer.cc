// libFuzzer's entry point of the progress_merge fuzz target
// (tests/fuzz/fuzz_targets.h).

#include <cstddef>
#include <cstdint>

#include "tests/fuzz/fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return jobline::fuzz::ProgressMergeOneInput(data, size);
}
