// The load generator's methods: what one operation of a benchmark does.
//
// An operation is one or more asynchronous calls started through a Caller
// (tools/loadgen/call.h) that end with one status: OK, or the first error.
// Each method is one row of a table: a name, a line of help, whether it
// reads an existing job, and the function that starts one operation. A new
// method is a new function and a new row.
//
//   get     JobService.GetJob of one job (--job_id).
//   create  JobService.CreateJob of a job in --project_id.
//   list    JobService.ListJobs, status = --list_status, 20 per page.
//   cycle   CreateJob (start_now, a worker's job type), then
//           WorkerService.LeaseJobs of one job of that type, then FinishJob
//           SUCCESS: the work of a worker that does nothing.
//
// Thread safety: the table is immutable; an operation runs on the thread
// of its Caller's queue.

#ifndef JOBLINE_TOOLS_LOADGEN_METHODS_H_
#define JOBLINE_TOOLS_LOADGEN_METHODS_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "grpcpp/support/status.h"
#include "tools/loadgen/call.h"

namespace jobline {
namespace loadgen {

// The inputs of the methods, from the command line.
struct MethodParams {
  // The job `get` reads.
  int64_t job_id = 0;
  // The project of the jobs `create` and `cycle` make.
  int64_t project_id = 16;
  // The status filter of `list`.
  std::string list_status = "CREATED";
};

// The job type of the jobs `cycle` makes: one no built-in work runs, so
// each job waits in the workers' queue until the cycle leases it.
inline constexpr absl::string_view kCycleJobType = "data_storage_sync";

// Receives the outcome of one operation, exactly once.
using DoneCallback = std::function<void(const grpc::Status&)>;

// Starts one operation; `done` runs on the caller's queue thread. `caller`
// must outlive the operation.
using StartOperation = void (*)(const MethodParams& params,
                                const Caller& caller, DoneCallback done);

struct Method {
  absl::string_view name;
  absl::string_view help;
  // Whether the method reads the job of MethodParams::job_id.
  bool reads_job;
  StartOperation start;
};

// Every method, in the order of the help text.
absl::Span<const Method> Methods();

// The method named `name`, or nullptr.
const Method* FindMethod(absl::string_view name);

}  // namespace loadgen
}  // namespace jobline

#endif  // JOBLINE_TOOLS_LOADGEN_METHODS_H_
