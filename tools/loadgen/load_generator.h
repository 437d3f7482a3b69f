// RunLoad: keeps a number of operations in flight against a server for a
// while and measures them.
//
// Each of `concurrency` slots runs one operation at a time and starts the
// next as soon as the last one ends. The slots are spread over `threads`
// threads, each polling a completion queue of its own, and over the given
// channels (slot i uses thread i % threads and channel i % channels), so
// many calls are in flight on few threads and no single HTTP/2 connection
// carries them all.
//
// The run has a warmup (operations ending in it are not measured, only
// their errors counted apart) and then the measured window of `duration`.
// An operation counts when it ends inside the window: its latency, from
// its start to its end, goes to the histogram if it succeeded, and its
// status code to the error counts if it failed. When the window closes no
// slot starts another operation; RunLoad returns once every operation in
// flight has ended (at most `deadline` later for each call still running).
//
// Thread safety: RunLoad may be called from any thread; it starts and
// joins its own threads.

#ifndef JOBLINE_TOOLS_LOADGEN_LOAD_GENERATOR_H_
#define JOBLINE_TOOLS_LOADGEN_LOAD_GENERATOR_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "absl/types/span.h"
#include "tools/loadgen/call.h"
#include "tools/loadgen/latency_histogram.h"
#include "tools/loadgen/methods.h"

namespace jobline {
namespace loadgen {

struct LoadOptions {
  // Operations in flight at once; at least 1.
  int concurrency = 16;
  // Threads polling completion queues, one queue each; at least 1.
  int threads = 2;
  absl::Duration warmup = absl::Seconds(1);
  absl::Duration duration = absl::Seconds(10);
  // Deadline of every call.
  absl::Duration deadline = absl::Seconds(10);
};

struct LoadResult {
  // The length of the measured window.
  absl::Duration duration;
  // Operations that succeeded in the window, and their latency in
  // microseconds.
  int64_t calls = 0;
  LatencyHistogram latency;
  // Operations that failed in the window, by the name of their status
  // code ("NOT_FOUND").
  int64_t errors = 0;
  std::map<std::string, int64_t> errors_by_code;
  // Operations that failed during the warmup.
  int64_t warmup_errors = 0;
  // "CODE: message" of the earliest failure of the whole run; empty when
  // nothing failed.
  std::string first_error;

  // Successful operations per second of the window.
  double calls_per_second() const;
};

// Starts one operation through `caller` and reports its end to `done`.
using Operation = std::function<void(const Caller& caller, DoneCallback done)>;

// Runs `operation` as described above. REQUIRES: `stubs` is not empty and
// outlives the call; `options` are valid (positive counts and durations,
// warmup >= 0).
LoadResult RunLoad(const LoadOptions& options,
                   absl::Span<const std::unique_ptr<Stubs>> stubs,
                   const Operation& operation);

}  // namespace loadgen
}  // namespace jobline

#endif  // JOBLINE_TOOLS_LOADGEN_LOAD_GENERATOR_H_
