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
// Slow clients. Each connection holds one of RestServerOptions::threads
// while it is served; connections past them wait for a free thread. So
// that no client holds a thread for long without sending or reading:
//   - a request, head and body, must arrive within read_timeout of its
//     connection's acceptance (the first request) or of its first byte (a
//     later request on a kept-alive connection); once that has passed, a
//     read that would have to wait fails: the client gets 408 (if its
//     request line had arrived) and the connection is closed. Bytes that
//     are already there are still read, so a whole request that waited in
//     the queue for a thread is served;
//   - a request head (request line and headers) longer than max_head_bytes
//     is 431 and the connection closed;
//   - each write of an answer (its head, its body, one event of a stream)
//     must be taken by the client within write_timeout, else the
//     connection is closed;
//   - a kept-alive connection idle for keep_alive_timeout is closed.
//
// Thread safety: Start() and Stop() must not race each other; requests are
// served by the server's thread pool while the server runs.

#ifndef JOBLINE_SERVER_REST_REST_SERVER_H_
#define JOBLINE_SERVER_REST_REST_SERVER_H_

#include <cstddef>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
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
  // Slow clients (see the file comment): the time a request may take to
  // arrive, the time each write of an answer may take, the idle time of a
  // kept-alive connection, the longest request head.
  absl::Duration read_timeout = absl::Seconds(10);
  absl::Duration write_timeout = absl::Seconds(10);
  absl::Duration keep_alive_timeout = absl::Seconds(5);
  size_t max_head_bytes = 64 * 1024;
  // How long Stop() lets requests being served finish before it cuts their
  // connections.
  absl::Duration shutdown_grace = absl::Seconds(5);
  TranscoderOptions transcoder;
};

// The connections being served (defined in rest_server.cc).
class ConnectionTable;

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
  // stops accepting, and closes every connection that waits for a request
  // or for the rest of its head (a request whose head had started gets
  // 503), and those still waiting for a thread. Requests being served get
  // RestServerOptions::shutdown_grace to finish and answer; then the gRPC
  // calls they wait on are cancelled (those requests are answered 503) and,
  // half a second later, the connections still open are shut down, so
  // that neither a backend that does not answer nor a client that does not
  // read can hold the stop up. Returns when every connection thread has
  // ended. Idempotent.
  void Stop();

  // Event streams open now.
  int open_streams() const { return transcoder_.open_streams(); }

 private:
  const RestServerOptions options_;
  Transcoder transcoder_;
  // Declared before http_, which refers to it.
  const std::unique_ptr<ConnectionTable> connections_;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  // Notified by the listening thread when httplib's loop has ended (every
  // connection thread has then ended too).
  absl::Notification listen_returned_;
  // The listening socket, once bound (written by httplib's socket options
  // callback during Start()).
  int listen_socket_ = -1;
  int port_ = 0;
};

}  // namespace rest
}  // namespace jobline

#endif  // JOBLINE_SERVER_REST_REST_SERVER_H_
