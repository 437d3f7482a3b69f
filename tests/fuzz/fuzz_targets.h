// The fuzz targets of Jobline: each takes one input of arbitrary bytes,
// drives real product code with it and checks the invariants of that code
// with JOBLINE_FUZZ_CHECK (tests/fuzz/fuzz_check.h). Each returns 0, as
// LLVMFuzzerTestOneInput must.
//
// Every target is deterministic (the same input does the same work) and
// keeps no state from one input to the next. Inputs are carved with
// FuzzedDataProvider: a text part ends at a backslash followed by any
// character other than a backslash ("\\" stands for one backslash), and
// numbers are taken from the end of the input, so that a seed written as
// text lines ending in "\" reads as its parts.
//
// The libFuzzer binaries (rest_request_fuzzer, ...) call one target each;
// the regression test calls all four on the files of tests/fuzz/corpus/
// and tests/fuzz/regressions/.
//
// Thread safety: a target may run on one thread at a time (libFuzzer's
// way); the targets share no state with each other.

#ifndef JOBLINE_TESTS_FUZZ_FUZZ_TARGETS_H_
#define JOBLINE_TESTS_FUZZ_FUZZ_TARGETS_H_

#include <cstddef>
#include <cstdint>

namespace jobline {
namespace fuzz {

// One REST request: verb, path with query, Content-Type, Accept and body,
// through routing, BuildRequestMessage, the error mapping and the whole
// Transcoder::Handle (with a gRPC channel that reaches no server).
int RestRequestOneInput(const uint8_t* data, size_t size);

// The whole input as the JSON body of every route that takes a body
// (CreateJob, UpdateJob PUT and PATCH, ImportCatalog), then the job input
// rules on what it built.
int JsonBodyOneInput(const uint8_t* data, size_t size);

// A sequence of progress reports and status transitions applied to one job
// through the rule functions of server/job_rules.h and
// server/lease_rules.h.
int ProgressMergeOneInput(const uint8_t* data, size_t size);

// A sequence of worker protocol calls (LeaseJobs, Heartbeat,
// ReportProgress, FinishJob) and upkeep (lease expiry, cancel, retry, the
// reaper) on WorkerProtocol over an in-memory SqliteJobStore and a
// FakeClock.
int WorkerReportOneInput(const uint8_t* data, size_t size);

}  // namespace fuzz
}  // namespace jobline

#endif  // JOBLINE_TESTS_FUZZ_FUZZ_TARGETS_H_
