// Checks that the ThreadSanitizer configuration still sees races in code that
// gRPC calls, and only those: a server reaction and a client's completion
// callback that write a variable another thread writes without a lock are
// reported; the same with a lock, or with the write before the call that
// the callback completes, are not. The server is a callback service of
// generated code, as Jobline's are. Each case runs in a child process (a
// death test) over a real server on a loopback port, because a report ends
// the process that makes it.
//
// Under any other configuration than --config=tsan the tests are skipped:
// there is no race detector to check.

#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tools/sanitizers/probe.grpc.pb.h"

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define JOBLINE_TSAN 1
#endif
#endif

namespace jobline {
namespace {

// ThreadSanitizer's exit code after a report.
constexpr int kReported = 66;

// What the probes write from two threads.
int shared_value = 0;
absl::Mutex shared_mutex;

void WriteShared(int value, bool locked) {
  if (locked) {
    absl::MutexLock lock(&shared_mutex);
    shared_value = value;
  } else {
    shared_value = value;
  }
}

// Streams one message; the reaction to its write writes shared_value.
class WatchReactor final
    : public grpc::ServerWriteReactor<probe::ProbeMessage> {
 public:
  explicit WatchReactor(bool locked) : locked_(locked) {
    message_.set_value(7);
    StartWrite(&message_);
  }

  void OnWriteDone(bool /*ok*/) override {
    WriteShared(1, locked_);
    Finish(grpc::Status::OK);
  }
  void OnDone() override { delete this; }

 private:
  const bool locked_;
  probe::ProbeMessage message_;
};

class ProbeService final : public probe::Probe::CallbackService {
 public:
  explicit ProbeService(bool locked) : locked_(locked) {}

  grpc::ServerWriteReactor<probe::ProbeMessage>* Watch(
      grpc::CallbackServerContext* /*context*/,
      const probe::ProbeMessage* /*request*/) override {
    return new WatchReactor(locked_);
  }

  grpc::ServerUnaryReactor* Echo(grpc::CallbackServerContext* context,
                                 const probe::ProbeMessage* request,
                                 probe::ProbeMessage* response) override {
    *response = *request;
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  const bool locked_;
};

// A server of ProbeService on a loopback port and a channel to it.
struct Probe {
  explicit Probe(bool locked) : service(locked) {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(&service);
    server = builder.BuildAndStart();
    channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                  grpc::InsecureChannelCredentials());
  }
  ~Probe() { server->Shutdown(); }

  // Watches to the end with the generated stub; true when it streamed one
  // message and ended OK.
  bool Watch() {
    auto stub = probe::Probe::NewStub(channel);
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReader<probe::ProbeMessage>> reader =
        stub->Watch(&context, probe::ProbeMessage());
    probe::ProbeMessage message;
    int messages = 0;
    while (reader->Read(&message)) ++messages;
    return reader->Finish().ok() && messages == 1;
  }

  // Calls Echo with the generic stub's callback unary call (as the REST
  // face does), with completion callback `done`, and waits for it;
  // `after_start` runs between the start of the call and the wait.
  grpc::Status Echo(const std::function<void()>& done,
                    const std::function<void()>& after_start) {
    grpc::GenericStub stub(channel);
    grpc::ClientContext context;
    probe::ProbeMessage message;
    message.set_value(7);
    grpc::Slice slice(message.SerializeAsString());
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer response;
    absl::Notification finished;
    grpc::Status status;
    stub.UnaryCall(&context, "/jobline.probe.Probe/Echo", grpc::StubOptions(),
                   &request, &response, [&](grpc::Status result) {
                     done();
                     status = std::move(result);
                     finished.Notify();
                   });
    after_start();
    finished.WaitForNotification();
    return status;
  }

  ProbeService service;
  std::unique_ptr<grpc::Server> server;
  std::shared_ptr<grpc::Channel> channel;
};

// A server reaction writes shared_value while another thread, not
// synchronized with it, writes it too. Exits 0 unless reported.
void ReactionRace(bool locked) {
  {
    Probe probe(locked);
    std::thread other([locked] { WriteShared(2, locked); });
    const bool watched = probe.Watch();
    other.join();
    if (!watched) std::exit(1);
  }
  std::exit(0);
}

// A client's completion callback writes shared_value; the caller writes it
// before it starts the call (`before`) or after (a race). Exits 0 unless
// reported.
void CompletionRace(bool before) {
  {
    Probe probe(/*locked=*/true);
    if (before) WriteShared(2, /*locked=*/false);
    const grpc::Status status =
        probe.Echo([] { WriteShared(1, /*locked=*/false); },
                   [before] {
                     if (!before) WriteShared(2, /*locked=*/false);
                   });
    if (!status.ok() || shared_value != 1) std::exit(1);
  }
  std::exit(0);
}

class TsanProbe : public ::testing::Test {
 protected:
  void SetUp() override {
#ifndef JOBLINE_TSAN
    GTEST_SKIP() << "not built with ThreadSanitizer (--config=tsan)";
#endif
    GTEST_FLAG_SET(death_test_style, "threadsafe");
  }
};

TEST_F(TsanProbe, AnUnlockedWriteInAServerReactionIsReported) {
  EXPECT_EXIT(ReactionRace(/*locked=*/false),
              ::testing::ExitedWithCode(kReported),
              "ThreadSanitizer: data race");
}

TEST_F(TsanProbe, ALockedWriteInAServerReactionIsNotReported) {
  EXPECT_EXIT(ReactionRace(/*locked=*/true), ::testing::ExitedWithCode(0), "");
}

TEST_F(TsanProbe, AWriteAfterStartingACallRacesWithItsCallback) {
  EXPECT_EXIT(CompletionRace(/*before=*/false),
              ::testing::ExitedWithCode(kReported),
              "ThreadSanitizer: data race");
}

TEST_F(TsanProbe, AWriteBeforeStartingACallHappensBeforeItsCallback) {
  EXPECT_EXIT(CompletionRace(/*before=*/true), ::testing::ExitedWithCode(0),
              "");
}

}  // namespace
}  // namespace jobline
