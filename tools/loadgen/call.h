// Asynchronous unary calls on a gRPC completion queue, the building block of
// the load generator's methods.
//
// A Caller starts calls through the stubs of one channel on one completion
// queue. Every call is a Tag: the thread that polls the queue takes the
// tag out, calls Complete() once (which runs the call's continuation) and
// then destroys it. A continuation may start further calls, so a method
// made of several calls is a chain of continuations.
//
// Thread safety: a Caller is immutable; calls are started and completed on
// the one thread that polls its queue.
//
// Example (the continuation runs when the answer arrives):
//   caller.Unary(caller.jobs(), &v2::JobService::Stub::PrepareAsyncGetJob,
//                request, [](const grpc::Status& status, v2::Job& job) {
//                  ...
//                });

#ifndef JOBLINE_TOOLS_LOADGEN_CALL_H_
#define JOBLINE_TOOLS_LOADGEN_CALL_H_

#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/completion_queue.h"
#include "grpcpp/support/async_unary_call.h"
#include "grpcpp/support/status.h"
#include "jobline/v2/jobs.grpc.pb.h"
#include "jobline/v2/worker.grpc.pb.h"

namespace jobline {
namespace loadgen {

// The name of `code`, e.g. "NOT_FOUND".
inline std::string CodeName(grpc::StatusCode code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

// "CODE: message" of `status`, e.g. "NOT_FOUND: job 7 not found".
inline std::string ErrorText(const grpc::Status& status) {
  return absl::StrCat(CodeName(status.error_code()), ": ",
                      status.error_message());
}

// What one completion-queue event finishes. The polling thread calls
// Complete() exactly once, with the queue's `ok` flag, and then deletes
// the tag.
class Tag {
 public:
  virtual ~Tag() = default;
  virtual void Complete(bool ok) = 0;
};

// The stubs of one channel. gRPC stubs are safe for concurrent use.
struct Stubs {
  explicit Stubs(const std::shared_ptr<grpc::Channel>& channel)
      : jobs(v2::JobService::NewStub(channel)),
        workers(v2::WorkerService::NewStub(channel)) {}

  std::unique_ptr<v2::JobService::Stub> jobs;
  std::unique_ptr<v2::WorkerService::Stub> workers;
};

// The PrepareAsync<Method> member of a generated stub.
template <typename Stub, typename Request, typename Response>
using PrepareMethod =
    std::unique_ptr<grpc::ClientAsyncResponseReader<Response>> (Stub::*)(
        grpc::ClientContext*, const Request&, grpc::CompletionQueue*);

// One unary call in flight: its context, answer and continuation.
template <typename Response>
class UnaryCall final : public Tag {
 public:
  using Continuation = std::function<void(const grpc::Status&, Response&)>;

  explicit UnaryCall(Continuation then) : then_(std::move(then)) {}

  grpc::ClientContext* context() { return &context_; }

  // Starts the prepared call; its end is posted to the queue with this
  // tag.
  void Start(std::unique_ptr<grpc::ClientAsyncResponseReader<Response>> call) {
    call_ = std::move(call);
    call_->StartCall();
    call_->Finish(&response_, &status_, this);
  }

  // A unary call's finish event always comes with ok == true; the outcome
  // is in the status.
  void Complete(bool /*ok*/) override { then_(status_, response_); }

 private:
  grpc::ClientContext context_;
  Response response_;
  grpc::Status status_;
  std::unique_ptr<grpc::ClientAsyncResponseReader<Response>> call_;
  const Continuation then_;
};

class Caller {
 public:
  // Not owned: `stubs` and `queue` outlive the caller. Every call gets
  // `deadline` from the moment it starts.
  Caller(const Stubs* stubs, grpc::CompletionQueue* queue,
         absl::Duration deadline)
      : stubs_(stubs), queue_(queue), deadline_(deadline) {}

  v2::JobService::Stub* jobs() const { return stubs_->jobs.get(); }
  v2::WorkerService::Stub* workers() const { return stubs_->workers.get(); }

  // Starts the call `prepare` of `stub` with `request`. `then`, callable
  // as then(const grpc::Status&, Response&), runs on the queue's thread
  // when the call ends, whatever the outcome (a missed deadline is
  // DEADLINE_EXCEEDED); the answer is valid only during that call.
  template <typename Stub, typename Request, typename Response, typename Then>
  void Unary(Stub* stub, PrepareMethod<Stub, Request, Response> prepare,
             const Request& request, Then then) const {
    auto call = std::make_unique<UnaryCall<Response>>(std::move(then));
    call->context()->set_deadline(absl::ToChronoTime(absl::Now() + deadline_));
    auto prepared = (stub->*prepare)(call->context(), request, queue_);
    // From here the queue owns the call; the polling thread deletes it.
    call.release()->Start(std::move(prepared));
  }

 private:
  const Stubs* const stubs_;
  grpc::CompletionQueue* const queue_;
  const absl::Duration deadline_;
};

}  // namespace loadgen
}  // namespace jobline

#endif  // JOBLINE_TOOLS_LOADGEN_CALL_H_
