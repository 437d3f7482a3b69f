// ThreadSanitizer annotations for Debian's prebuilt gRPC.
//
// libgrpc, libgrpc++ and libgpr are not built with -fsanitize=thread, but
// much of gRPC's C++ API is code from its headers, compiled into Jobline's
// instrumented objects: the sync server's method handlers, the callback
// API's tags and reactor plumbing, the call operation sets. That code runs
// on whichever thread gRPC hands a completed operation to, and gRPC orders
// the hand-over with atomics inside its libraries, which ThreadSanitizer
// cannot see. This file, linked into every binary of the tsan
// configuration, tells ThreadSanitizer of four such orderings:
//
// 1. A completion queue orders an operation's start before its completion.
//    Every tag handed to the C core (grpc_call_start_batch, the server's
//    request functions, shutdown and connectivity notifications) is
//    released before the call; a tag that grpc_completion_queue_next or
//    grpc_completion_queue_pluck returns is acquired before the caller sees
//    it. The C++ library's sync server, its blocking client calls and the
//    threads that run callback-API tags (libgrpc++'s "callback alternative"
//    queue: Next, then the tag's functor) all take their tags from these
//    two functions, so whatever the starting thread wrote before it started
//    the operation happens before the code that handles its completion.
//
// 2. A server reactor's OnDone comes after all its reactions. The C++
//    library counts a callback call's outstanding reactions in
//    ServerCallbackCall::callbacks_outstanding_ (acquire-release decrements,
//    the last one calls ScheduleOnDone). The decrements compiled into
//    Jobline's objects are seen, but those compiled into libgrpc++ (the
//    cancellation path) are not: ScheduleOnDone acquires the counter, as
//    the last decrement does.
//
// 3. A message's bytes are written before they are sent and read after
//    they are received. In-process channels (the REST face's) hand the
//    sender's slices to the receiver as they are, so that the receiver
//    reads what the sender's thread wrote (a message serialized once and
//    written to many streams) with nothing ThreadSanitizer sees between
//    them: grpc_call_start_batch releases the bytes of each slice it
//    sends, and grpc_byte_buffer_reader_init, through which the C++
//    library reads every received message, acquires those it reads.
//
// 4. A slice's bytes are freed by its last reference, on whichever thread
//    drops it, after a decrement inside libgrpc: grpc_slice_unref runs with
//    the thread's accesses ignored, so that the free is not a write (as
//    tsan_allocations.cc does for the library's own deletes, which it
//    cannot tell apart here: libgrpc reaches the free through tail calls,
//    and the free's return address is that of the caller of
//    grpc::Slice's destructor).
//
// The library's functions are found with dlsym(RTLD_NEXT); a missing one
// aborts at first use with its name. Calls from libgrpc++ (and from libgrpc
// itself) reach these definitions through the dynamic linker: .bazelrc links
// every binary of the configuration with --export-dynamic.

#include <dlfcn.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/slice.h>
#include <grpcpp/support/server_callback.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>

extern "C" void __tsan_acquire(void* address);
extern "C" void __tsan_release(void* address);
extern "C" void __tsan_ignore_thread_begin();
extern "C" void __tsan_ignore_thread_end();

namespace {

// The library's definition of the function named `name`.
template <typename Function>
Function Next(const char* name) {
  void* symbol = dlsym(RTLD_NEXT, name);
  if (symbol == nullptr) {
    std::fprintf(stderr, "tsan_grpc: %s not found\n", name);
    std::abort();
  }
  return reinterpret_cast<Function>(symbol);
}

// Calls `annotate` with the first byte of each slice of `buffer` (null or
// not a raw buffer: none).
void ForEachSlice(grpc_byte_buffer* buffer, void (*annotate)(void*)) {
  if (buffer == nullptr || buffer->type != GRPC_BB_RAW) return;
  const grpc_slice_buffer& slices = buffer->data.raw.slice_buffer;
  for (size_t i = 0; i < slices.count; ++i) {
    if (GRPC_SLICE_LENGTH(slices.slices[i]) == 0) continue;
    annotate(GRPC_SLICE_START_PTR(slices.slices[i]));
  }
}

// Acquires the tag of a completed operation.
grpc_event Acquired(grpc_event event) {
  if (event.type == GRPC_OP_COMPLETE && event.tag != nullptr) {
    __tsan_acquire(event.tag);
  }
  return event;
}

}  // namespace

// ---- Completion queues: a started operation happens before its
// completion ----

extern "C" {

grpc_call_error grpc_call_start_batch(grpc_call* call, const grpc_op* ops,
                                      size_t nops, void* tag, void* reserved) {
  static const auto next =
      Next<grpc_call_error (*)(grpc_call*, const grpc_op*, size_t, void*,
                               void*)>("grpc_call_start_batch");
  for (size_t i = 0; i < nops; ++i) {
    if (ops[i].op == GRPC_OP_SEND_MESSAGE) {
      ForEachSlice(ops[i].data.send_message.send_message, &__tsan_release);
    }
  }
  if (tag != nullptr) __tsan_release(tag);
  return next(call, ops, nops, tag, reserved);
}

grpc_call_error grpc_server_request_call(
    grpc_server* server, grpc_call** call, grpc_call_details* details,
    grpc_metadata_array* request_metadata,
    grpc_completion_queue* cq_bound_to_call,
    grpc_completion_queue* cq_for_notification, void* tag_new) {
  static const auto next = Next<grpc_call_error (*)(
      grpc_server*, grpc_call**, grpc_call_details*, grpc_metadata_array*,
      grpc_completion_queue*, grpc_completion_queue*, void*)>(
      "grpc_server_request_call");
  if (tag_new != nullptr) __tsan_release(tag_new);
  return next(server, call, details, request_metadata, cq_bound_to_call,
              cq_for_notification, tag_new);
}

grpc_call_error grpc_server_request_registered_call(
    grpc_server* server, void* registered_method, grpc_call** call,
    gpr_timespec* deadline, grpc_metadata_array* request_metadata,
    grpc_byte_buffer** optional_payload,
    grpc_completion_queue* cq_bound_to_call,
    grpc_completion_queue* cq_for_notification, void* tag_new) {
  static const auto next = Next<grpc_call_error (*)(
      grpc_server*, void*, grpc_call**, gpr_timespec*, grpc_metadata_array*,
      grpc_byte_buffer**, grpc_completion_queue*, grpc_completion_queue*,
      void*)>("grpc_server_request_registered_call");
  if (tag_new != nullptr) __tsan_release(tag_new);
  return next(server, registered_method, call, deadline, request_metadata,
              optional_payload, cq_bound_to_call, cq_for_notification, tag_new);
}

void grpc_server_shutdown_and_notify(grpc_server* server,
                                     grpc_completion_queue* cq, void* tag) {
  static const auto next =
      Next<void (*)(grpc_server*, grpc_completion_queue*, void*)>(
          "grpc_server_shutdown_and_notify");
  if (tag != nullptr) __tsan_release(tag);
  next(server, cq, tag);
}

void grpc_channel_watch_connectivity_state(
    grpc_channel* channel, grpc_connectivity_state last_observed_state,
    gpr_timespec deadline, grpc_completion_queue* cq, void* tag) {
  static const auto next =
      Next<void (*)(grpc_channel*, grpc_connectivity_state, gpr_timespec,
                    grpc_completion_queue*, void*)>(
          "grpc_channel_watch_connectivity_state");
  if (tag != nullptr) __tsan_release(tag);
  next(channel, last_observed_state, deadline, cq, tag);
}

grpc_event grpc_completion_queue_next(grpc_completion_queue* cq,
                                      gpr_timespec deadline, void* reserved) {
  static const auto next =
      Next<grpc_event (*)(grpc_completion_queue*, gpr_timespec, void*)>(
          "grpc_completion_queue_next");
  return Acquired(next(cq, deadline, reserved));
}

grpc_event grpc_completion_queue_pluck(grpc_completion_queue* cq, void* tag,
                                       gpr_timespec deadline, void* reserved) {
  static const auto next =
      Next<grpc_event (*)(grpc_completion_queue*, void*, gpr_timespec, void*)>(
          "grpc_completion_queue_pluck");
  return Acquired(next(cq, tag, deadline, reserved));
}

int grpc_byte_buffer_reader_init(grpc_byte_buffer_reader* reader,
                                 grpc_byte_buffer* buffer) {
  static const auto next =
      Next<int (*)(grpc_byte_buffer_reader*, grpc_byte_buffer*)>(
          "grpc_byte_buffer_reader_init");
  ForEachSlice(buffer, &__tsan_acquire);
  return next(reader, buffer);
}

void grpc_slice_unref(grpc_slice slice) {
  static const auto next = Next<void (*)(grpc_slice)>("grpc_slice_unref");
  __tsan_ignore_thread_begin();
  next(slice);
  __tsan_ignore_thread_end();
}

}  // extern "C"

// ---- Server reactors: OnDone after every reaction ----

namespace grpc {
namespace internal {

// Called by the decrement of callbacks_outstanding_ that reached zero.
void ServerCallbackCall::ScheduleOnDone(bool inline_ondone) {
  static const auto next = Next<void (*)(ServerCallbackCall*, bool)>(
      "_ZN4grpc8internal18ServerCallbackCall14ScheduleOnDoneEb");
  __tsan_acquire(&callbacks_outstanding_);
  next(this, inline_ondone);
}

}  // namespace internal
}  // namespace grpc
