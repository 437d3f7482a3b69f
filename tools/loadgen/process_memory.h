// The resident memory of a process on Linux, as /proc/<pid>/status shows
// it (the VmRSS line), for benchmarks that measure a server's memory from
// the outside.
//
// Thread safety: the functions keep no state.

#ifndef JOBLINE_TOOLS_LOADGEN_PROCESS_MEMORY_H_
#define JOBLINE_TOOLS_LOADGEN_PROCESS_MEMORY_H_

#include <sys/types.h>

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace jobline {
namespace loadgen {

// The VmRSS figure of a /proc/<pid>/status text, in KiB (the kernel's
// "kB"). NOT_FOUND when the text has no VmRSS line (a kernel thread, a
// zombie); DATA_LOSS when the line is not "VmRSS: <digits> kB".
absl::StatusOr<int64_t> ParseVmRssKib(absl::string_view status_text);

// The resident memory of process `pid` now, in KiB. NOT_FOUND when the
// process does not exist (or its status cannot be read), and the errors
// of ParseVmRssKib.
absl::StatusOr<int64_t> ReadVmRssKib(pid_t pid);

}  // namespace loadgen
}  // namespace jobline

#endif  // JOBLINE_TOOLS_LOADGEN_PROCESS_MEMORY_H_
