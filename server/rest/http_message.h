// The HTTP request and response of the REST face, independent of the HTTP
// library, so that the transcoder can be tested without sockets.
//
// An answer whose body is produced while it is sent (a progress stream)
// carries an HttpBodyStream; the HTTP server runs it on the connection's
// thread through an HttpBodySink.

#ifndef JOBLINE_SERVER_REST_HTTP_MESSAGE_H_
#define JOBLINE_SERVER_REST_HTTP_MESSAGE_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace jobline {
namespace rest {

using QueryParams = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  // Upper case, e.g. "GET".
  std::string verb;
  // The path as sent, still percent-encoded, without the query; e.g.
  // "/api/v2/jobs/12/".
  std::string path;
  // The query parameters, decoded, in request order. "?start_now" gives
  // ("start_now", "").
  QueryParams query;
  // The query as sent, without "?"; kept in redirects.
  std::string raw_query;
  // The Content-Type header, empty when absent.
  std::string content_type;
  // The Accept header, empty when absent.
  std::string accept;
  // The Last-Event-ID header of a resuming event stream, empty when absent
  // (an empty header is the same as none, as for an EventSource).
  std::string last_event_id;
  // The body as sent; empty when it was a form (see `form`).
  std::string body;
  // Whether the body was a form (application/x-www-form-urlencoded or
  // multipart/form-data), decoded into `form`: fields in request order, a
  // name once per value. Uploaded files are kept as their bytes.
  bool has_form = false;
  QueryParams form;
  // Scheme, host and port the client used, without a trailing slash, e.g.
  // "http://localhost:8000"; the base of every absolute URL in answers. The
  // scheme is the X-Forwarded-Proto of a proxy in front when it sent one.
  std::string base_url;
};

// Where a streamed body goes: the client's connection.
class HttpBodySink {
 public:
  virtual ~HttpBodySink() = default;
  // Sends `data` (not empty) to the client at once; false when the client
  // is gone.
  virtual bool Write(const std::string& data) = 0;
  // Whether the client is still connected and taking data; false soon
  // after it closed the connection, without anything being written.
  virtual bool IsWritable() = 0;
};

// A body produced while it is sent.
class HttpBodyStream {
 public:
  virtual ~HttpBodyStream() = default;
  // Writes the body to `sink`, blocking the calling thread until the body
  // is complete (true) or the client went away (false). Called at most
  // once; an answer that is never sent (HEAD) destroys the stream unrun.
  virtual bool Run(HttpBodySink& sink) = 0;
};

struct HttpResponse {
  int status = 200;
  // Empty for a response without a body (204, 301).
  std::string content_type = "application/json";
  std::string body;
  // Extra headers, e.g. ("Allow", "GET, POST") or ("Location", ...).
  std::vector<std::pair<std::string, std::string>> headers;
  // When set, the body is not `body` but what the stream writes, sent
  // with chunked transfer coding as it comes.
  std::shared_ptr<HttpBodyStream> stream;
};

}  // namespace rest
}  // namespace jobline

#endif  // JOBLINE_SERVER_REST_HTTP_MESSAGE_H_
