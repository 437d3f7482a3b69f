#include "server/rest/rest_server.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/json_shape.h"
#include "glog/logging.h"
#include "httplib.h"
#include "server/rest/error_mapping.h"
#include "server/rest/http_message.h"

namespace jobline {
namespace rest {
namespace {

// The library-neutral request of an httplib request.
HttpRequest ToHttpRequest(const httplib::Request& request) {
  HttpRequest http;
  // HEAD is answered as GET; httplib leaves the body out.
  http.verb = request.method == "HEAD" ? "GET" : request.method;
  const size_t question = request.target.find('?');
  http.path = request.target.substr(0, question);
  if (question != std::string::npos) {
    http.raw_query = request.target.substr(question + 1);
  }
  // httplib keeps the parameters in a multimap sorted by name; the values
  // of one name stay in request order.
  for (const auto& [name, value] : request.params) {
    http.query.emplace_back(name, value);
  }
  http.content_type = request.get_header_value("Content-Type");
  http.accept = request.get_header_value("Accept");
  http.last_event_id = request.get_header_value("Last-Event-ID");
  http.body = request.body;
  const std::string host = request.get_header_value("Host");
  // A proxy that ends TLS says so; any other value is ignored.
  const std::string forwarded =
      absl::AsciiStrToLower(absl::StripAsciiWhitespace(
          request.get_header_value("X-Forwarded-Proto")));
  const absl::string_view scheme =
      absl::StartsWith(forwarded, "https") ? "https://" : "http://";
  http.base_url = absl::StrCat(
      scheme, host.empty()
                  ? absl::StrCat(request.local_addr, ":", request.local_port)
                  : host);
  return http;
}

// Whether `host` is a Host header value: a name or IPv4 address, or an
// IPv6 address in brackets, with an optional port.
bool IsValidHost(absl::string_view host) {
  if (host.empty() || host.size() > 255) return false;
  absl::string_view name = host;
  if (absl::StartsWith(name, "[")) {
    const size_t close = name.find(']');
    if (close == absl::string_view::npos) return false;
    for (char c : name.substr(1, close - 1)) {
      if (!absl::ascii_isxdigit(c) && c != ':' && c != '.') return false;
    }
    name = name.substr(close + 1);
    if (name.empty()) return true;
    if (name[0] != ':') return false;
  } else {
    const size_t colon = name.rfind(':');
    const absl::string_view label = name.substr(0, colon);
    if (label.empty()) return false;
    for (char c : label) {
      if (!absl::ascii_isalnum(c) && c != '-' && c != '.') return false;
    }
    if (colon == absl::string_view::npos) return true;
    name = name.substr(colon);
  }
  const absl::string_view port = name.substr(1);
  return !port.empty() && port.size() <= 5 &&
         std::all_of(port.begin(), port.end(),
                     [](char c) { return absl::ascii_isdigit(c); });
}

// The framing and Host checks of RFC 9112 that httplib leaves out, so that
// no request is read in two ways by a proxy in front and by this server:
// conflicting or malformed Content-Length, Content-Length with
// Transfer-Encoding, a coding other than chunked, a header name with white
// space, and a missing (HTTP/1.1), repeated or malformed Host.
absl::Status CheckRequestFraming(const httplib::Request& request) {
  for (const auto& [name, value] : request.headers) {
    if (name.find_first_of(" \t") != std::string::npos) {
      return absl::InvalidArgumentError("A header name has white space.");
    }
  }
  if (request.get_header_value_count("Content-Length") > 0) {
    const std::string length = request.get_header_value("Content-Length");
    for (size_t i = 0; i < request.get_header_value_count("Content-Length");
         ++i) {
      if (request.get_header_value("Content-Length", i) != length) {
        return absl::InvalidArgumentError(
            "The request has conflicting Content-Length headers.");
      }
    }
    if (length.empty() ||
        !std::all_of(length.begin(), length.end(),
                     [](char c) { return absl::ascii_isdigit(c); })) {
      return absl::InvalidArgumentError("Invalid Content-Length header.");
    }
    if (request.has_header("Transfer-Encoding")) {
      return absl::InvalidArgumentError(
          "A request may not have both Content-Length and "
          "Transfer-Encoding.");
    }
  }
  if (request.has_header("Transfer-Encoding") &&
      !absl::EqualsIgnoreCase(
          absl::StripAsciiWhitespace(
              request.get_header_value("Transfer-Encoding")),
          "chunked")) {
    return absl::InvalidArgumentError(
        "Transfer-Encoding other than chunked is not supported.");
  }
  const size_t hosts = request.get_header_value_count("Host");
  if (hosts > 1) {
    return absl::InvalidArgumentError("The request has more than one Host.");
  }
  if (hosts == 0 && request.version != "HTTP/1.0") {
    return absl::InvalidArgumentError("The request has no Host header.");
  }
  if (hosts == 1 && !IsValidHost(request.get_header_value("Host"))) {
    return absl::InvalidArgumentError("Invalid Host header.");
  }
  return absl::OkStatus();
}

// ---- Connections ----

class ConnectionStream;

}  // namespace

// The connections being served, so that Stop() can end their waits and,
// after the grace period, cut them. A connection is added before its first
// read and removed before its socket is closed, so a socket the table
// shuts down is always still open.
//
// Thread safety: every method may be called from any thread.
class ConnectionTable {
 public:
  // Adds `stream`; false once BeginStop() has been called (the caller then
  // closes the connection without reading it).
  bool Add(ConnectionStream* stream) ABSL_LOCKS_EXCLUDED(mu_);
  void Remove(ConnectionStream* stream) ABSL_LOCKS_EXCLUDED(mu_);

  // Whether `stream` waits for a request or for the rest of its head, which
  // BeginStop() ends. Setting it is refused (false) once stopping.
  bool SetWaiting(ConnectionStream* stream, bool waiting)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Refuses new connections and ends the waits of the waiting ones: their
  // sockets are shut down for reading, so a wait sees the end at once.
  void BeginStop() ABSL_LOCKS_EXCLUDED(mu_);
  // Shuts every connection down both ways: reads and writes fail at once.
  void ShutdownAll() ABSL_LOCKS_EXCLUDED(mu_);

  bool stopping() const { return stopping_.load(); }

  // Connections accepted and still waiting for a thread. While any wait, a
  // connection closes after the answer it is giving (Connection: close),
  // so kept-alive clients cannot hold every thread.
  void AddQueued(int delta) { queued_.fetch_add(delta); }
  bool HasQueued() const { return queued_.load() > 0; }

 private:
  std::atomic<int> queued_{0};
  absl::Mutex mu_;
  // Each connection and whether it waits.
  std::map<ConnectionStream*, bool> connections_ ABSL_GUARDED_BY(mu_);
  // Written under mu_; read without it.
  std::atomic<bool> stopping_{false};
};

namespace {

// Why a read of a connection failed, for the answer the request gets.
enum class ReadFailure { kNone, kTimedOut, kStopped, kHeadTooLarge };

// An accepted connection as httplib reads and writes it: reads wait at most
// until the request's deadline, writes at most write_timeout each, and
// reads before the handler starts are limited to the longest head.
// Used by the connection's thread only (the table only shuts its socket
// down).
class ConnectionStream final : public httplib::Stream {
 public:
  // `table` (not owned) tells whether the server stops.
  ConnectionStream(int fd, const RestServerOptions& options,
                   ConnectionTable* table)
      : fd_(fd), options_(options), table_(table) {}

  int fd() const { return fd_; }

  // Waits until the client sends a byte of a request, or `deadline`
  // passes, or the connection ends. False unless a byte is there.
  bool WaitForRequest(absl::Time deadline) {
    if (begin_ < end_) return true;
    return Poll(POLLIN, deadline);
  }

  // A request starts: its reads may wait until `deadline`, and at most
  // max_head_bytes may be read before HeadReceived().
  void BeginRequest(absl::Time deadline) {
    read_deadline_ = deadline;
    head_bytes_ = 0;
    in_head_ = true;
    failure_ = ReadFailure::kNone;
    close_after_answer_ = false;
    answered_ = false;
  }

  // Whether anything of an answer to the request was written.
  bool answered() const { return answered_; }

  // Before the connection closes after an answer that left input unread:
  // the rest of the input is read and dropped for up to a second (or 1
  // MiB), so that the close does not reset the connection before the
  // client has read the answer.
  void DrainBeforeClose() {
    if (!Poll(POLLIN, absl::InfinitePast())) return;
    ::shutdown(fd_, SHUT_WR);
    const absl::Time deadline = absl::Now() + absl::Seconds(1);
    char scratch[4096];
    size_t dropped = 0;
    while (dropped < (1 << 20) && Poll(POLLIN, deadline)) {
      const ssize_t n = recv(fd_, scratch, sizeof(scratch), MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) return;
      if (n > 0) dropped += static_cast<size_t>(n);
    }
  }

  // The answer says "Connection: close": the connection ends after it.
  void CloseAfterAnswer() { close_after_answer_ = true; }
  bool close_after_answer() const { return close_after_answer_; }

  // The request's head has been read: a handler runs, which Stop() lets
  // finish.
  void HeadReceived() {
    in_head_ = false;
    table_->SetWaiting(this, false);
  }

  // Why the last read failed, kNone if none did.
  ReadFailure failure() const { return failure_; }

  bool is_readable() const override {
    return begin_ < end_ || Poll(POLLIN, read_deadline_);
  }

  // Whether a write could go now (waiting at most write_timeout) to a
  // client still there: one that has closed its end reads as its end.
  bool is_writable() const override {
    if (!Poll(POLLOUT, absl::Now() + options_.write_timeout)) return false;
    if (!Poll(POLLIN, absl::InfinitePast())) return true;
    char byte;
    return recv(fd_, &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
  }

  ssize_t read(char* ptr, size_t size) override {
    if (begin_ == end_) {
      const ssize_t filled = Fill();
      if (filled <= 0) return filled;
    }
    size = std::min(size, end_ - begin_);
    if (in_head_) {
      if (head_bytes_ + size > options_.max_head_bytes) {
        failure_ = ReadFailure::kHeadTooLarge;
        return -1;
      }
      head_bytes_ += size;
    }
    std::memcpy(ptr, buffer_ + begin_, size);
    begin_ += size;
    return static_cast<ssize_t>(size);
  }

  // Writes all of `size` bytes within write_timeout, or fails.
  ssize_t write(const char* ptr, size_t size) override {
    answered_ = true;
    const absl::Time deadline = absl::Now() + options_.write_timeout;
    size_t written = 0;
    while (written < size) {
      const ssize_t n =
          send(fd_, ptr + written, size - written, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        written += static_cast<size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (!Poll(POLLOUT, deadline)) return -1;
      } else {
        return -1;
      }
    }
    return static_cast<ssize_t>(size);
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage address = {};
    socklen_t length = sizeof(address);
    if (getpeername(fd_, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
      NumericName(address, length, ip, port);
    }
  }

  void get_local_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage address = {};
    socklen_t length = sizeof(address);
    if (getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
      NumericName(address, length, ip, port);
    }
  }

  socket_t socket() const override { return fd_; }

 private:
  // The numeric host and port of `address`.
  static void NumericName(const sockaddr_storage& address, socklen_t length,
                          std::string& ip, int& port) {
    char host[NI_MAXHOST];
    char service[NI_MAXSERV];
    if (getnameinfo(reinterpret_cast<const sockaddr*>(&address), length, host,
                    sizeof(host), service, sizeof(service),
                    NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
      ip = host;
      port = std::atoi(service);
    }
  }

  // Waits until the socket is ready for `events` (or has an error or hang
  // up, which the next call sees) or `deadline` passes; false then. A
  // deadline already past still finds a socket that is ready now.
  bool Poll(short events, absl::Time deadline) const {
    while (true) {
      const int64_t wait_ms = std::max<int64_t>(
          0, absl::ToInt64Milliseconds(
                 absl::Ceil(deadline - absl::Now(), absl::Milliseconds(1))));
      pollfd entry = {fd_, events, 0};
      const int ready = poll(
          &entry, 1, static_cast<int>(std::min<int64_t>(wait_ms, 1 << 30)));
      if (ready > 0) return true;
      if (ready < 0 && errno == EINTR) continue;
      return false;
    }
  }

  // Reads what the socket has into the buffer, waiting until the read
  // deadline: the number of bytes, 0 at the end of the connection, -1 when
  // the wait timed out or the read failed. A socket that Stop() shut down
  // reads as its end; failure_ then says so.
  ssize_t Fill() {
    begin_ = end_ = 0;
    while (true) {
      if (!Poll(POLLIN, read_deadline_)) {
        failure_ = ReadFailure::kTimedOut;
        return -1;
      }
      const ssize_t n = recv(fd_, buffer_, sizeof(buffer_), MSG_DONTWAIT);
      if (n > 0) {
        end_ = static_cast<size_t>(n);
        return n;
      }
      if (n < 0 &&
          (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) {
        continue;
      }
      if (table_->stopping()) {
        failure_ = ReadFailure::kStopped;
        return -1;
      }
      return n < 0 ? -1 : 0;
    }
  }

  const int fd_;
  const RestServerOptions& options_;
  ConnectionTable* const table_;  // Not owned.
  char buffer_[4096];
  size_t begin_ = 0;
  size_t end_ = 0;
  absl::Time read_deadline_ = absl::InfinitePast();
  size_t head_bytes_ = 0;
  bool in_head_ = false;
  ReadFailure failure_ = ReadFailure::kNone;
  bool close_after_answer_ = false;
  bool answered_ = false;
};

HttpResponse ReadFailureResponse(ReadFailure failure,
                                 const RestServerOptions& options);

// `response` (a small JSON error) as the bytes of an HTTP/1.1 answer that
// closes the connection.
std::string RawErrorAnswer(const HttpResponse& response) {
  absl::string_view reason = "Error";
  switch (response.status) {
    case 408:
      reason = "Request Timeout";
      break;
    case 431:
      reason = "Request Header Fields Too Large";
      break;
    case 503:
      reason = "Service Unavailable";
      break;
  }
  return absl::StrCat(
      "HTTP/1.1 ", response.status, " ", reason,
      "\r\nConnection: close\r\nContent-Length: ", response.body.size(),
      "\r\nContent-Type: application/json\r\n\r\n", response.body);
}

// The connection the calling thread serves; null outside a connection
// thread.
thread_local ConnectionStream* current_connection = nullptr;
// When the connection the calling thread is about to serve was accepted.
thread_local absl::Time current_accepted_at = absl::InfinitePast();

// httplib's thread pool, handing each connection's thread the time the
// connection was accepted, and counting in `table` (not owned) the
// connections that wait for a thread.
class AcceptTimeQueue final : public httplib::TaskQueue {
 public:
  AcceptTimeQueue(size_t threads, ConnectionTable* table)
      : pool_(threads), table_(table) {}

  void enqueue(std::function<void()> serve) override {
    table_->AddQueued(1);
    pool_.enqueue(
        [serve = std::move(serve), accepted = absl::Now(), table = table_] {
          table->AddQueued(-1);
          current_accepted_at = accepted;
          serve();
        });
  }

  // Serves what is queued, then ends the threads.
  void shutdown() override { pool_.shutdown(); }

 private:
  httplib::ThreadPool pool_;
  ConnectionTable* const table_;
};

// httplib's server, with each accepted connection served through a
// ConnectionStream registered in a ConnectionTable.
class HttpServer final : public httplib::Server {
 public:
  HttpServer(const RestServerOptions& options, ConnectionTable* connections)
      : options_(options), connections_(connections) {}

 private:
  // Serves the requests of the connection `sock` (httplib's keep-alive
  // loop, with the deadlines of RestServerOptions), then closes it.
  bool process_and_close_socket(socket_t sock) override {
    ConnectionStream stream(sock, options_, connections_);
    bool served = false;
    if (connections_->Add(&stream)) {
      current_connection = &stream;
      size_t left = keep_alive_max_count_;
      absl::Time deadline = current_accepted_at + options_.read_timeout;
      bool first = true;
      while (left > 0) {
        // Between requests the connection waits, and Stop() ends the wait.
        if (!connections_->SetWaiting(&stream, true)) break;
        if (!first) {
          if (!stream.WaitForRequest(absl::Now() +
                                     options_.keep_alive_timeout) ||
              connections_->stopping()) {
            break;
          }
          deadline = absl::Now() + options_.read_timeout;
        }
        first = false;
        stream.BeginRequest(deadline);
        bool connection_closed = false;
        // The last request of a connection: its keep-alive allowance is
        // spent, the server stops, or other connections wait for a thread.
        const bool last =
            left == 1 || connections_->stopping() || connections_->HasQueued();
        served = process_request(stream, last, connection_closed, nullptr);
        connections_->SetWaiting(&stream, false);
        // A read that failed before httplib could answer (in the request
        // line) is answered here.
        if (!served && !stream.answered() &&
            stream.failure() != ReadFailure::kNone) {
          const std::string answer =
              RawErrorAnswer(ReadFailureResponse(stream.failure(), options_));
          stream.write(answer.data(), answer.size());
        }
        if (!served || connection_closed || last ||
            stream.close_after_answer() || connections_->stopping()) {
          if (stream.answered() && !connections_->stopping()) {
            stream.DrainBeforeClose();
          }
          break;
        }
        --left;
      }
      current_connection = nullptr;
      connections_->Remove(&stream);
    }
    ::shutdown(sock, SHUT_RDWR);
    ::close(sock);
    return served;
  }

  const RestServerOptions& options_;
  ConnectionTable* const connections_;  // Not owned.
};

// Marks the head of the calling thread's request as read: Stop() no longer
// ends it, and its body is not counted as head.
void HeadReceived() {
  if (current_connection != nullptr) current_connection->HeadReceived();
}

// Why the calling thread's last read failed.
ReadFailure CurrentReadFailure() {
  return current_connection == nullptr ? ReadFailure::kNone
                                       : current_connection->failure();
}

// The answer to a request whose reading failed for `failure` (not kNone),
// with the connection closed after it: 408 past the read timeout, 503 when
// the server stops, 431 for a head over the limit.
HttpResponse ReadFailureResponse(ReadFailure failure,
                                 const RestServerOptions& options) {
  HttpResponse response;
  switch (failure) {
    case ReadFailure::kTimedOut:
      response = ErrorResponse(absl::DeadlineExceededError(
          absl::StrCat("The request did not arrive within ",
                       absl::FormatDuration(options.read_timeout), ".")));
      response.status = 408;
      break;
    case ReadFailure::kHeadTooLarge:
      response = ErrorResponse(absl::ResourceExhaustedError(
          absl::StrCat("The request head is larger than ",
                       options.max_head_bytes, " bytes.")));
      response.status = 431;
      break;
    default:
      response = ErrorResponse(ShuttingDownError());
      break;
  }
  response.headers.emplace_back("Connection", "close");
  return response;
}

// A streamed body's way to the client: httplib's sink of the connection.
class DataSinkAdapter final : public HttpBodySink {
 public:
  explicit DataSinkAdapter(httplib::DataSink& sink) : sink_(sink) {}

  bool Write(const std::string& data) override {
    return sink_.write(data.data(), data.size());
  }
  // httplib's check sees a connection the client has closed.
  bool IsWritable() override { return sink_.is_writable(); }

 private:
  httplib::DataSink& sink_;
};

void WriteResponse(const HttpResponse& response, httplib::Response& out) {
  out.status = response.status;
  for (const auto& [name, value] : response.headers) {
    out.set_header(name.c_str(), value);
    // httplib would keep the connection for another request.
    if (absl::EqualsIgnoreCase(name, "Connection") &&
        absl::EqualsIgnoreCase(value, "close") &&
        current_connection != nullptr) {
      current_connection->CloseAfterAnswer();
    }
  }
  if (response.stream != nullptr) {
    // Run on this connection's thread once the head is sent; a false
    // return drops the connection. httplib compresses neither
    // text/event-stream nor NDJSON, so every event leaves at once.
    out.set_chunked_content_provider(
        response.content_type,
        [stream = response.stream](size_t /*offset*/, httplib::DataSink& sink) {
          DataSinkAdapter adapter(sink);
          if (!stream->Run(adapter)) return false;
          sink.done();
          return true;
        });
  } else if (!response.content_type.empty()) {
    out.set_content(response.body, response.content_type.c_str());
  }
}

// The answer to a request that fails CheckRequestFraming: 400, and the
// connection closes, since where its body ends is not known.
void WriteFramingError(const absl::Status& status,
                       httplib::Response& response) {
  HttpResponse error = ErrorResponse(status);
  error.status = 400;
  error.headers.emplace_back("Connection", "close");
  WriteResponse(error, response);
}

// The transcoder's options of a server with `options`.
TranscoderOptions TranscoderOptionsOf(const RestServerOptions& options) {
  TranscoderOptions transcoder = options.transcoder;
  transcoder.max_streams = options.max_streams > 0
                               ? options.max_streams
                               : std::max(options.threads / 2, 1);
  return transcoder;
}

// Whether the media type of `content_type` (parameters ignored, any case)
// is `type`.
bool HasMediaType(const std::string& content_type, absl::string_view type) {
  const absl::string_view bare = absl::StripAsciiWhitespace(
      absl::string_view(content_type).substr(0, content_type.find(';')));
  return absl::EqualsIgnoreCase(bare, type);
}

// Whether `content_type` is JSON as the transcoder reads it:
// application/json or a type ending in +json, parameters ignored.
bool HasJsonMediaType(const std::string& content_type) {
  const std::string bare = absl::AsciiStrToLower(absl::StripAsciiWhitespace(
      absl::string_view(content_type).substr(0, content_type.find(';'))));
  return bare == "application/json" || absl::EndsWith(bare, "+json");
}

// Reads the body of `http` through `read`: as it is, or decoded into
// `http->form` for a form. RESOURCE_EXHAUSTED once it passes `limit` bytes
// (what was read so far is dropped with the request); INVALID_ARGUMENT when
// the connection or the multipart framing breaks.
absl::Status ReadBody(const httplib::ContentReader& read, size_t limit,
                      HttpRequest* http) {
  size_t total = 0;
  bool too_large = false;
  // Counts `length` more bytes against the limit.
  auto fits = [&](size_t length) {
    total += length;
    too_large = too_large || total > limit;
    return !too_large;
  };
  bool read_ok;
  if (HasMediaType(http->content_type, "multipart/form-data")) {
    // httplib splits the parts; a part's bytes go to the last field.
    http->has_form = true;
    read_ok = read(
        [&](const httplib::MultipartFormData& part) {
          http->form.emplace_back(part.name, "");
          return true;
        },
        [&](const char* data, size_t length) {
          if (http->form.empty() || !fits(length)) return false;
          http->form.back().second.append(data, length);
          return true;
        });
  } else {
    read_ok = read([&](const char* data, size_t length) {
      if (!fits(length)) return false;
      http->body.append(data, length);
      return true;
    });
    if (read_ok &&
        HasMediaType(http->content_type, "application/x-www-form-urlencoded")) {
      // httplib's decoder keeps the values of one name in request order.
      httplib::Params params;
      httplib::detail::parse_query_text(http->body, params);
      http->has_form = true;
      http->body.clear();
      for (const auto& [name, value] : params) {
        http->form.emplace_back(name, value);
      }
    }
  }
  if (too_large) {
    return absl::ResourceExhaustedError("The request body is too large.");
  }
  if (!read_ok) {
    return absl::InvalidArgumentError("The request body could not be read.");
  }
  return absl::OkStatus();
}

}  // namespace

bool ConnectionTable::Add(ConnectionStream* stream) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return false;
  connections_.emplace(stream, false);
  return true;
}

void ConnectionTable::Remove(ConnectionStream* stream) {
  absl::MutexLock lock(&mu_);
  connections_.erase(stream);
}

bool ConnectionTable::SetWaiting(ConnectionStream* stream, bool waiting) {
  absl::MutexLock lock(&mu_);
  auto it = connections_.find(stream);
  if (it == connections_.end()) return false;
  it->second = waiting && !stopping_;
  return !stopping_;
}

void ConnectionTable::BeginStop() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  for (const auto& [stream, waiting] : connections_) {
    if (waiting) ::shutdown(stream->fd(), SHUT_RD);
  }
}

void ConnectionTable::ShutdownAll() {
  absl::MutexLock lock(&mu_);
  for (const auto& [stream, waiting] : connections_) {
    ::shutdown(stream->fd(), SHUT_RDWR);
  }
}

RestServer::RestServer(std::shared_ptr<grpc::Channel> channel,
                       RestServerOptions options)
    : options_(std::move(options)),
      transcoder_(&RouteTable::Jobline(), std::move(channel),
                  TranscoderOptionsOf(options_)),
      connections_(std::make_unique<ConnectionTable>()),
      http_(std::make_unique<HttpServer>(options_, connections_.get())) {
  auto handler = [this](const httplib::Request& request,
                        httplib::Response& response) {
    if (absl::Status framing = CheckRequestFraming(request); !framing.ok()) {
      WriteFramingError(framing, response);
      return;
    }
    WriteResponse(transcoder_.Handle(ToHttpRequest(request)), response);
  };
  // Verbs that may carry a body read it through a content reader: httplib
  // would otherwise wait for the end of the connection when a request has
  // neither Content-Length nor Transfer-Encoding (curl -X POST), which per
  // RFC 9112 means an empty body.
  auto body_handler = [this](const httplib::Request& request,
                             httplib::Response& response,
                             const httplib::ContentReader& read) {
    if (absl::Status framing = CheckRequestFraming(request); !framing.ok()) {
      WriteFramingError(framing, response);
      return;
    }
    HttpRequest http = ToHttpRequest(request);
    if (request.has_header("Content-Length") ||
        request.has_header("Transfer-Encoding")) {
      absl::Status read_status = ReadBody(read, options_.max_body_bytes, &http);
      if (!read_status.ok()) {
        // A declared length over the limit is refused by httplib (413,
        // the body skipped); a chunked one by the receivers.
        // The rest of the body is unread: the connection closes.
        const ReadFailure failure = CurrentReadFailure();
        if (failure != ReadFailure::kNone) {
          WriteResponse(ReadFailureResponse(failure, options_), response);
          return;
        }
        HttpResponse error =
            absl::IsResourceExhausted(read_status) || response.status == 413
                ? PayloadTooLargeResponse(options_.max_body_bytes)
                : ErrorResponse(read_status);
        error.headers.emplace_back("Connection", "close");
        WriteResponse(error, response);
        return;
      }
    }
    if (!http.has_form && HasJsonMediaType(http.content_type) &&
        JsonNestedDeeperThan(http.body, kMaxJsonDepth)) {
      WriteResponse(ErrorResponse(absl::InvalidArgumentError(
                        absl::StrCat("JSON parse error - nested deeper than ",
                                     kMaxJsonDepth, " levels."))),
                    response);
      return;
    }
    WriteResponse(transcoder_.Handle(http), response);
  };
  http_->Get(".*", handler);
  http_->Post(".*", body_handler);
  http_->Put(".*", body_handler);
  http_->Patch(".*", body_handler);
  http_->Delete(".*", body_handler);
  http_->Options(".*", handler);
  http_->set_payload_max_length(options_.max_body_bytes);
  // Small answers leave at once: without TCP_NODELAY the body, written
  // after the headers, waits for the client's delayed ACK (~40 ms).
  http_->set_tcp_nodelay(true);
  http_->set_keep_alive_max_count(
      static_cast<size_t>(std::max(options_.keep_alive_requests, 1)));
  // HttpServer keeps the deadlines itself; httplib's socket timeouts are
  // set to match.
  auto whole_seconds = [](absl::Duration duration) {
    return static_cast<time_t>(std::max<int64_t>(
        1, absl::ToInt64Seconds(absl::Ceil(duration, absl::Seconds(1)))));
  };
  http_->set_read_timeout(whole_seconds(options_.read_timeout));
  http_->set_write_timeout(whole_seconds(options_.write_timeout));
  http_->set_keep_alive_timeout(whole_seconds(options_.keep_alive_timeout));
  const size_t threads = static_cast<size_t>(std::max(options_.threads, 1));
  http_->new_task_queue = [threads, table = connections_.get()] {
    return new AcceptTimeQueue(threads, table);
  };
  // Every request httplib has parsed passes here first: its head is read.
  http_->set_pre_routing_handler(
      [](const httplib::Request&, httplib::Response&) {
        HeadReceived();
        return httplib::Server::HandlerResponse::Unhandled;
      });

  // httplib's default socket options add SO_REUSEPORT, with which a second
  // server on the same port would silently share its traffic; a port in
  // use must be an error, as it is for the gRPC port.
  http_->set_socket_options([this](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    listen_socket_ = sock;
  });

  // Answers httplib produces itself (413 for an oversize body, 400 for a
  // request it cannot parse, 414 for a long target) get a JSON body like
  // every other error, and close the connection: where such a request
  // ends is not known.
  http_->set_error_handler(httplib::Server::HandlerWithResponse(
      [this](const httplib::Request&, httplib::Response& response) {
        if (!response.body.empty()) {
          return httplib::Server::HandlerResponse::Unhandled;
        }
        HttpResponse error;
        if (const ReadFailure failure = CurrentReadFailure();
            failure != ReadFailure::kNone) {
          error = ReadFailureResponse(failure, options_);
        } else if (response.status == 413) {
          error = PayloadTooLargeResponse(options_.max_body_bytes);
        } else {
          error = ErrorResponse(absl::UnknownError("Bad request."));
          error.status = response.status;
        }
        if (error.status != 408 && error.status != 431 && error.status != 503) {
          error.headers.emplace_back("Connection", "close");
        }
        WriteResponse(error, response);
        return httplib::Server::HandlerResponse::Handled;
      }));
}

RestServer::~RestServer() { Stop(); }

absl::Status RestServer::Start() {
  if (options_.port == 0) {
    port_ = http_->bind_to_any_port(options_.host);
  } else if (http_->bind_to_port(options_.host, options_.port)) {
    port_ = options_.port;
  }
  if (port_ <= 0) {
    port_ = 0;
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options_.host, ":", options_.port));
  }
  // httplib listens with a backlog of 5, which drops connections of a
  // burst; listening again on the bound socket raises it.
  if (listen_socket_ >= 0) ::listen(listen_socket_, SOMAXCONN);
  thread_ = std::thread([this] {
    http_->listen_after_bind();
    listen_returned_.Notify();
  });
  // httplib's stop() does nothing before the listening loop has started,
  // so Start() returns only once it runs: a Stop() right after Start()
  // then always ends the loop.
  while (!http_->is_running() && !listen_returned_.HasBeenNotified()) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  LOG(INFO) << "serving REST on " << options_.host << ":" << port_;
  return absl::OkStatus();
}

void RestServer::Stop() {
  // The streams' threads are free again before httplib joins its pool.
  transcoder_.StopStreams();
  if (!thread_.joinable()) return;

  // No new connection is served and no wait goes on; httplib's loop ends
  // and its pool serves (closes) the queued connections, then joins.
  connections_->BeginStop();
  http_->stop();

  // Requests being served have until the grace deadline; then the gRPC
  // calls they wait on are cancelled and every connection is cut, so that
  // neither a backend that does not answer nor a client that reads nothing
  // holds the stop.
  if (!listen_returned_.WaitForNotificationWithTimeout(
          options_.shutdown_grace)) {
    LOG(INFO) << "REST: cancelling the calls and cutting the connections "
                 "still open after "
              << absl::FormatDuration(options_.shutdown_grace);
    transcoder_.CancelCalls();
    // A request whose call was cancelled answers 503 at once: a moment for
    // those answers before the connections still open are cut.
    if (!listen_returned_.WaitForNotificationWithTimeout(
            absl::Milliseconds(500))) {
      connections_->ShutdownAll();
    }
  }
  thread_.join();
}

}  // namespace rest
}  // namespace jobline
