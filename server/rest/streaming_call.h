// StreamingCall: one server-streaming gRPC call made by method name, read
// from the thread that serves its HTTP stream.
//
// gRPC 1.51's generic stub has no blocking streaming call. It offers a
// bidirectional call on a completion queue (GenericStub::PrepareCall) and a
// callback reactor (PrepareBidiStreamingCall). The completion queue is
// used here, one per call, driven only by the calling thread: a read waits
// with a deadline (CompletionQueue::AsyncNext), so the thread that writes
// the HTTP stream can, between two messages, notice a client that went
// away, a server that stops, and a silence long enough for a keep-alive,
// without another thread, callback or lock. A reactor would deliver the
// messages on gRPC's threads and need a queue and a condition variable to
// hand them to the HTTP thread, for the same result.
//
// A server-streaming method is called as a bidirectional one: its request
// is the one message the client sends, with the half-close (WriteLast);
// the server side cannot tell the difference.
//
// At most one operation is in flight at a time, so every event of the
// queue is that operation's.
//
// Thread safety: one thread at a time, except Cancel(), which may be
// called from any thread.

#ifndef JOBLINE_SERVER_REST_STREAMING_CALL_H_
#define JOBLINE_SERVER_REST_STREAMING_CALL_H_

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/completion_queue.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/status.h"

namespace jobline {
namespace rest {

class StreamingCall {
 public:
  // Starts `method` ("/package.Service/Method") over `channel` with the
  // serialized request `request`, waiting until `deadline` for gRPC to
  // take it. The call itself has no deadline. A call that cannot start, or
  // does not start in time (it is then cancelled), ends at the first Read()
  // with the reason in Finish().
  StreamingCall(const std::shared_ptr<grpc::Channel>& channel,
                const std::string& method, const std::string& request,
                absl::Time deadline);

  // Cancels a call still running and waits until gRPC has released it.
  ~StreamingCall();

  StreamingCall(const StreamingCall&) = delete;
  StreamingCall& operator=(const StreamingCall&) = delete;

  enum class ReadResult {
    kMessage,  // *message holds the next message, serialized.
    kEnd,      // The stream is over; Finish() says how.
    kTimeout,  // Nothing came by the deadline; the read stays pending.
  };

  // Waits until `deadline` for the next message.
  ReadResult Read(absl::Time deadline, std::string* message);

  // Asks gRPC to end the call: the pending or next Read() gives kEnd, and
  // Finish() then CANCELLED unless the call had ended already. Any thread.
  void Cancel();

  // The status the call ended with. REQUIRES: Read() returned kEnd. Blocks
  // only until gRPC delivers the status, which follows the end at once.
  grpc::Status Finish();

 private:
  // The outcome of waiting for the operation in flight.
  enum class Wait { kOk, kFailed, kTimeout };
  Wait Await(absl::Time deadline);

  grpc::CompletionQueue queue_;
  grpc::ClientContext context_;
  grpc::ByteBuffer buffer_;
  grpc::Status status_;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call_;
  // Whether an operation's completion is still to be taken from queue_.
  bool in_flight_ = false;
  // Whether no more reads are to be made: a read or the start failed.
  bool ended_ = false;
  bool finished_ = false;
};

}  // namespace rest
}  // namespace jobline

#endif  // JOBLINE_SERVER_REST_STREAMING_CALL_H_
