// The route table of the REST face, read from the google.api.http
// annotations of gRPC service descriptors.
//
// Every annotated unary or server-streaming method of a service contributes
// one route per binding (the main rule and each additional_bindings
// entry): an HTTP verb, a path template such as "/api/v2/jobs/{id}", the
// body field ("*", a field name of the request, or empty for none) and the
// method (route.method->server_streaming() tells a stream). Methods
// without an annotation, and client-streaming methods, are left out.
//
// Templates are written without a trailing slash (Envoy refuses templates
// that end in "/"); matching works on paths without one too. The REST face
// (server/rest/rest_server.h) strips the trailing slash before it matches,
// and redirects a path that lacks it.
//
// Supported template syntax: literal segments and single-segment variables,
// "{name}" or "{name=*}", where `name` is a field of the request message
// (dotted paths are not supported). Anything else ("**", "{x=a/*}", a
// ":verb" suffix) makes RouteTable::FromServices fail.
//
// Thread safety: a RouteTable is immutable after construction; concurrent
// const calls are safe.

#ifndef JOBLINE_SERVER_REST_HTTP_RULES_H_
#define JOBLINE_SERVER_REST_HTTP_RULES_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"

namespace jobline {
namespace rest {

// One segment of a path template: a literal ("jobs") or a variable bound to
// a request field ("id").
struct PathSegment {
  bool is_variable = false;
  // The literal text, or the field name of a variable.
  std::string text;
};

// One HTTP binding of a gRPC method.
struct HttpRoute {
  // Upper case: "GET", "POST", "PUT", "PATCH" or "DELETE".
  std::string verb;
  // As annotated, e.g. "/api/v2/jobs/{id}".
  std::string path_template;
  std::vector<PathSegment> segments;
  // "*" (the whole request is the body), a top-level field of the request
  // message, or empty (no body).
  std::string body;
  // The method's descriptor, from the pool the table was read from; never
  // null. Not owned (descriptor pools outlive their users).
  const google::protobuf::MethodDescriptor* method = nullptr;

  // "jobline.v2.JobService.GetJob".
  const std::string& method_full_name() const { return method->full_name(); }
};

// A path variable bound by a match: field name and the (percent-decoded)
// segment text.
using PathVariables = std::vector<std::pair<std::string, std::string>>;

struct RouteMatch {
  const HttpRoute* route = nullptr;  // Points into the table; never null.
  PathVariables variables;
};

class RouteTable {
 public:
  // Reads the annotations of the named services from `pool`.
  // NOT_FOUND for a service the pool does not have; INVALID_ARGUMENT for a
  // template outside the supported syntax, a variable or body that names
  // no field of the request, or two routes with the same verb and template.
  static absl::StatusOr<RouteTable> FromServices(
      const std::vector<std::string>& service_names,
      const google::protobuf::DescriptorPool* pool =
          google::protobuf::DescriptorPool::generated_pool());

  // Jobline's REST services: jobline.v2.JobService and
  // jobline.v2.CatalogService, from the generated pool. Their annotations
  // are compiled in, so a failure is a programming error (CHECKed).
  static const RouteTable& Jobline();

  // Every route, in service and method declaration order.
  const std::vector<HttpRoute>& routes() const { return routes_; }

  // The route for `verb` (upper case) and `path` (no query, no trailing
  // slash, still percent-encoded). When several templates match, the one
  // whose first differing segment is a literal wins. Returns false when no
  // route of that verb matches.
  bool Match(absl::string_view verb, absl::string_view path,
             RouteMatch* match) const;

  // The verbs of every route whose template matches `path`, sorted and
  // unique; empty for an unknown path. Used for 405 and its Allow header.
  std::vector<std::string> AllowedVerbs(absl::string_view path) const;

 private:
  explicit RouteTable(std::vector<HttpRoute> routes)
      : routes_(std::move(routes)) {}

  std::vector<HttpRoute> routes_;
};

// Parses a path template into segments. INVALID_ARGUMENT outside the
// supported syntax (see the file comment).
absl::StatusOr<std::vector<PathSegment>> ParsePathTemplate(
    absl::string_view path_template);

}  // namespace rest
}  // namespace jobline

#endif  // JOBLINE_SERVER_REST_HTTP_RULES_H_
