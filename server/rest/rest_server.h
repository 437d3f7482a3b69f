// RestServer: the REST face of Jobline on an HTTP port.
//
// An HTTP server (cpp-httplib) whose every request goes to a Transcoder
// (server/rest/transcoder.h) over a given gRPC channel: the server's own
// in-process channel (grpc::Server::InProcessChannel) when built into
// job_server, or a channel to any Jobline gRPC address when standalone.
//
// Bodies over RestServerOptions::max_body_bytes are refused with 413 before
// they are read to the end.
//
// An event stream (GET /api/v2/jobs/{id}/progress/) holds one connection
// thread for its whole life; at most RestServerOptions::max_streams are
// open at once, so that the other threads stay free for unary requests.
//
// Thread safety: Start() and Stop() must not race each other; requests are
// served by httplib's thread pool while the server runs.

#ifndef JOBLINE_SERVER_REST_REST_SERVER_H_
#define JOBLINE_SERVER_REST_REST_SERVER_H_

#include <atomic>
#include <cstddef>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "grpcpp/channel.h"
#include "server/rest/transcoder.h"

namespace httplib {
class Server;
}  // namespace httplib

namespace jobline {
namespace rest {

struct RestServerOptions {
  // Address to listen on, e.g. "0.0.0.0" or "127.0.0.1".
  std::string host = "0.0.0.0";
  // Port; 0 picks a free one (see RestServer::port()).
  int port = 8000;
  // Largest request body accepted, in bytes (1 MiB by default).
  size_t max_body_bytes = 1 << 20;
  // Threads that serve connections; each serves one connection at a time.
  int threads = 64;
  // Event streams open at once (past it a stream request is 429); 0 means
  // threads / 2. It replaces transcoder.max_streams.
  int max_streams = 0;
  // Requests served on one kept-alive connection before it is closed.
  int keep_alive_requests = 1000;
  TranscoderOptions transcoder;
};

class RestServer {
 public:
  // Serves Jobline's routes (RouteTable::Jobline()) over `channel`.
  RestServer(std::shared_ptr<grpc::Channel> channel, RestServerOptions options);
  ~RestServer();  // Stops the server if it runs.

  RestServer(const RestServer&) = delete;
  RestServer& operator=(const RestServer&) = delete;

  // Binds the port and starts serving on a thread of its own.
  // UNAVAILABLE when the port cannot be bound, also when another process
  // or server listens on it (the port is never shared). Call at most once.
  absl::Status Start();

  // The bound port; valid after a successful Start().
  int port() const { return port_; }

  // Ends the open event streams (each with an UNAVAILABLE end event),
  // stops accepting, lets the listening thread end and joins it.
  // Idempotent.
  void Stop();

  // Event streams open now.
  int open_streams() const { return transcoder_.open_streams(); }

 private:
  const RestServerOptions options_;
  Transcoder transcoder_;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  // Set by the listening thread when httplib's loop has ended.
  std::atomic<bool> listen_returned_{false};
  // The listening socket, once bound (written by httplib's socket options
  // callback during Start()).
  int listen_socket_ = -1;
  int port_ = 0;
};

}  // namespace rest
}  // namespace jobline

#endif  // JOBLINE_SERVER_REST_REST_SERVER_H_
