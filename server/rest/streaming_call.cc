#include "server/rest/streaming_call.h"

#include <vector>

#include "grpcpp/support/slice.h"

namespace jobline {
namespace rest {

StreamingCall::StreamingCall(const std::shared_ptr<grpc::Channel>& channel,
                             const std::string& method,
                             const std::string& request, absl::Time deadline) {
  grpc::GenericStub stub(channel);
  call_ = stub.PrepareCall(&context_, method, &queue_);

  // Each step waits for the one before it; a step that does not complete
  // in time is cancelled, which completes it at once.
  auto step_ok = [this, deadline] {
    in_flight_ = true;
    Wait wait = Await(deadline);
    if (wait == Wait::kTimeout) {
      Cancel();
      wait = Await(absl::InfiniteFuture());
    }
    return wait == Wait::kOk;
  };
  call_->StartCall(this);
  if (!step_ok()) {
    ended_ = true;
    return;
  }
  grpc::Slice slice(request);
  grpc::ByteBuffer message(&slice, 1);
  call_->WriteLast(message, grpc::WriteOptions(), this);
  if (!step_ok()) ended_ = true;
}

StreamingCall::~StreamingCall() {
  if (!finished_) {
    if (!ended_) Cancel();
    // The cancelled read completes at once.
    if (in_flight_) Await(absl::InfiniteFuture());
    ended_ = true;
    Finish();
  }
  queue_.Shutdown();
  void* tag;
  bool ok;
  while (queue_.Next(&tag, &ok)) {
  }
}

StreamingCall::Wait StreamingCall::Await(absl::Time deadline) {
  void* tag = nullptr;
  bool ok = false;
  switch (queue_.AsyncNext(&tag, &ok, absl::ToChronoTime(deadline))) {
    case grpc::CompletionQueue::TIMEOUT:
      return Wait::kTimeout;
    case grpc::CompletionQueue::GOT_EVENT:
      in_flight_ = false;
      return ok ? Wait::kOk : Wait::kFailed;
    case grpc::CompletionQueue::SHUTDOWN:
      break;
  }
  // Only the destructor shuts the queue down, after the last operation.
  in_flight_ = false;
  return Wait::kFailed;
}

StreamingCall::ReadResult StreamingCall::Read(absl::Time deadline,
                                              std::string* message) {
  if (ended_) return ReadResult::kEnd;
  if (!in_flight_) {
    call_->Read(&buffer_, this);
    in_flight_ = true;
  }
  switch (Await(deadline)) {
    case Wait::kTimeout:
      return ReadResult::kTimeout;
    case Wait::kFailed:
      ended_ = true;
      return ReadResult::kEnd;
    case Wait::kOk:
      break;
  }
  std::vector<grpc::Slice> slices;
  const bool dumped = buffer_.Dump(&slices).ok();
  buffer_.Clear();
  if (!dumped) {
    // A message that cannot be read ends the call.
    Cancel();
    ended_ = true;
    return ReadResult::kEnd;
  }
  message->clear();
  for (const grpc::Slice& slice : slices) {
    message->append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return ReadResult::kMessage;
}

void StreamingCall::Cancel() { context_.TryCancel(); }

grpc::Status StreamingCall::Finish() {
  if (finished_) return status_;
  call_->Finish(&status_, this);
  in_flight_ = true;
  Await(absl::InfiniteFuture());
  finished_ = true;
  return status_;
}

}  // namespace rest
}  // namespace jobline
