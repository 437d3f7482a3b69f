#include "server/rest/rest_server.h"

#include <sys/socket.h>

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
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

RestServer::RestServer(std::shared_ptr<grpc::Channel> channel,
                       RestServerOptions options)
    : options_(std::move(options)),
      transcoder_(&RouteTable::Jobline(), std::move(channel),
                  TranscoderOptionsOf(options_)),
      http_(std::make_unique<httplib::Server>()) {
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
        WriteResponse(
            absl::IsResourceExhausted(read_status) || response.status == 413
                ? PayloadTooLargeResponse(options_.max_body_bytes)
                : ErrorResponse(read_status),
            response);
        return;
      }
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
  const size_t threads = static_cast<size_t>(std::max(options_.threads, 1));
  http_->new_task_queue = [threads] {
    return new httplib::ThreadPool(threads);
  };

  // httplib's default socket options add SO_REUSEPORT, with which a second
  // server on the same port would silently share its traffic; a port in
  // use must be an error, as it is for the gRPC port.
  http_->set_socket_options([this](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    listen_socket_ = sock;
  });

  // Answers httplib produces itself (413 for an oversize body, 400 for a
  // request it cannot parse) get a JSON body like every other error.
  http_->set_error_handler(httplib::Server::HandlerWithResponse(
      [this](const httplib::Request&, httplib::Response& response) {
        if (!response.body.empty()) {
          return httplib::Server::HandlerResponse::Unhandled;
        }
        HttpResponse error;
        if (response.status == 413) {
          error = PayloadTooLargeResponse(options_.max_body_bytes);
        } else {
          error = ErrorResponse(absl::UnknownError("Bad request."));
          error.status = response.status;
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
    listen_returned_ = true;
  });
  // httplib's stop() does nothing before the listening loop has started,
  // so Start() returns only once it runs: a Stop() right after Start()
  // then always ends the loop.
  while (!http_->is_running() && !listen_returned_) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  LOG(INFO) << "serving REST on " << options_.host << ":" << port_;
  return absl::OkStatus();
}

void RestServer::Stop() {
  // The streams' threads are free again before httplib joins its pool.
  transcoder_.StopStreams();
  if (!thread_.joinable()) return;
  http_->stop();
  thread_.join();
}

}  // namespace rest
}  // namespace jobline
