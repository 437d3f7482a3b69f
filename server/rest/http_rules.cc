#include "server/rest/http_rules.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "glog/logging.h"
#include "google/api/annotations.pb.h"
#include "google/api/http.pb.h"
#include "jobline/v2/catalog.pb.h"
#include "jobline/v2/jobs.pb.h"
#include "storage/status_macros.h"

namespace jobline {
namespace rest {
namespace {

using ::google::protobuf::Descriptor;
using ::google::protobuf::MethodDescriptor;

// The verb and template of one binding; false for a custom verb or an
// empty pattern.
bool VerbAndTemplate(const google::api::HttpRule& rule, std::string* verb,
                     std::string* path_template) {
  switch (rule.pattern_case()) {
    case google::api::HttpRule::kGet:
      *verb = "GET";
      *path_template = rule.get();
      return true;
    case google::api::HttpRule::kPost:
      *verb = "POST";
      *path_template = rule.post();
      return true;
    case google::api::HttpRule::kPut:
      *verb = "PUT";
      *path_template = rule.put();
      return true;
    case google::api::HttpRule::kPatch:
      *verb = "PATCH";
      *path_template = rule.patch();
      return true;
    case google::api::HttpRule::kDelete:
      *verb = "DELETE";
      *path_template = rule.delete_();
      return true;
    default:
      return false;
  }
}

// Builds the route of one binding and checks its fields against the
// request message.
absl::StatusOr<HttpRoute> MakeRoute(const MethodDescriptor* method,
                                    const google::api::HttpRule& rule) {
  HttpRoute route;
  route.method = method;
  if (!VerbAndTemplate(rule, &route.verb, &route.path_template)) {
    return absl::InvalidArgumentError(
        absl::StrCat(method->full_name(), ": unsupported HTTP rule"));
  }
  JOBS_ASSIGN_OR_RETURN(route.segments, ParsePathTemplate(route.path_template));
  const Descriptor* request = method->input_type();
  for (const PathSegment& segment : route.segments) {
    if (segment.is_variable &&
        request->FindFieldByName(segment.text) == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(method->full_name(), ": path variable ", segment.text,
                       " is not a field of ", request->full_name()));
    }
  }
  route.body = rule.body();
  if (!route.body.empty() && route.body != "*") {
    const auto* field = request->FindFieldByName(route.body);
    if (field == nullptr ||
        field->type() != google::protobuf::FieldDescriptor::TYPE_MESSAGE ||
        field->is_repeated()) {
      return absl::InvalidArgumentError(
          absl::StrCat(method->full_name(), ": body ", route.body,
                       " is not a message field of ", request->full_name()));
    }
  }
  return route;
}

// Splits a path without its leading "/" into segments ("" gives none).
std::vector<absl::string_view> SplitPath(absl::string_view path) {
  if (absl::StartsWith(path, "/")) path.remove_prefix(1);
  if (path.empty()) return {};
  return absl::StrSplit(path, '/');
}

// Decodes %XX escapes; a malformed escape is kept as it is.
std::string PercentDecode(absl::string_view text) {
  std::string decoded;
  decoded.reserve(text.size());
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() && hex(text[i + 1]) >= 0 &&
        hex(text[i + 2]) >= 0) {
      decoded.push_back(
          static_cast<char>(hex(text[i + 1]) * 16 + hex(text[i + 2])));
      i += 2;
    } else {
      decoded.push_back(text[i]);
    }
  }
  return decoded;
}

// Whether `route` matches the split path; fills `variables` when it does.
bool MatchSegments(const HttpRoute& route,
                   const std::vector<absl::string_view>& parts,
                   PathVariables* variables) {
  if (parts.size() != route.segments.size()) return false;
  PathVariables bound;
  for (size_t i = 0; i < parts.size(); ++i) {
    const PathSegment& segment = route.segments[i];
    if (segment.is_variable) {
      if (parts[i].empty()) return false;
      bound.emplace_back(segment.text, PercentDecode(parts[i]));
    } else if (parts[i] != segment.text) {
      return false;
    }
  }
  *variables = std::move(bound);
  return true;
}

// True when `a` is more specific than `b`: at the first segment where one
// is a literal and the other a variable, `a` has the literal.
bool MoreSpecific(const HttpRoute& a, const HttpRoute& b) {
  for (size_t i = 0; i < a.segments.size() && i < b.segments.size(); ++i) {
    if (a.segments[i].is_variable != b.segments[i].is_variable) {
      return !a.segments[i].is_variable;
    }
  }
  return false;
}

}  // namespace

absl::StatusOr<std::vector<PathSegment>> ParsePathTemplate(
    absl::string_view path_template) {
  if (!absl::StartsWith(path_template, "/")) {
    return absl::InvalidArgumentError(
        absl::StrCat("template \"", path_template, "\" must start with /"));
  }
  if (path_template.size() > 1 && absl::EndsWith(path_template, "/")) {
    return absl::InvalidArgumentError(
        absl::StrCat("template \"", path_template, "\" must not end with /"));
  }
  std::vector<PathSegment> segments;
  for (absl::string_view part : SplitPath(path_template)) {
    PathSegment segment;
    if (absl::StartsWith(part, "{") && absl::EndsWith(part, "}")) {
      absl::string_view name = part.substr(1, part.size() - 2);
      if (absl::EndsWith(name, "=*")) name.remove_suffix(2);
      const bool plain_name =
          !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
            return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                   (c >= '0' && c <= '9') || c == '_';
          });
      if (!plain_name) {
        return absl::InvalidArgumentError(absl::StrCat(
            "template \"", path_template, "\": unsupported variable ", part));
      }
      segment.is_variable = true;
      segment.text = std::string(name);
    } else if (part.empty() || absl::StrContains(part, "{") ||
               absl::StrContains(part, "}") || absl::StrContains(part, "*") ||
               absl::StrContains(part, ":")) {
      return absl::InvalidArgumentError(
          absl::StrCat("template \"", path_template,
                       "\": unsupported segment \"", part, "\""));
    } else {
      segment.text = std::string(part);
    }
    segments.push_back(std::move(segment));
  }
  return segments;
}

absl::StatusOr<RouteTable> RouteTable::FromServices(
    const std::vector<std::string>& service_names,
    const google::protobuf::DescriptorPool* pool) {
  std::vector<HttpRoute> routes;
  std::set<std::pair<std::string, std::string>> seen;
  for (const std::string& name : service_names) {
    const google::protobuf::ServiceDescriptor* service =
        pool->FindServiceByName(name);
    if (service == nullptr) {
      return absl::NotFoundError(absl::StrCat("no service ", name));
    }
    for (int i = 0; i < service->method_count(); ++i) {
      const MethodDescriptor* method = service->method(i);
      // A server-streaming method is served as an event stream; nothing
      // maps an HTTP request onto a stream of client messages.
      if (method->client_streaming()) continue;
      if (!method->options().HasExtension(google::api::http)) continue;
      const google::api::HttpRule& rule =
          method->options().GetExtension(google::api::http);
      std::vector<const google::api::HttpRule*> bindings = {&rule};
      for (const google::api::HttpRule& extra : rule.additional_bindings()) {
        bindings.push_back(&extra);
      }
      for (const google::api::HttpRule* binding : bindings) {
        JOBS_ASSIGN_OR_RETURN(HttpRoute route, MakeRoute(method, *binding));
        if (!seen.emplace(route.verb, route.path_template).second) {
          return absl::InvalidArgumentError(absl::StrCat(
              "two routes for ", route.verb, " ", route.path_template));
        }
        routes.push_back(std::move(route));
      }
    }
  }
  return RouteTable(std::move(routes));
}

const RouteTable& RouteTable::Jobline() {
  // Built once and never destroyed, so no destructor runs at exit.
  static const RouteTable* const table = [] {
    // Referencing a message of each file keeps the file's generated code
    // (and so its descriptor) linked into the binary.
    CHECK(v2::Job::descriptor() != nullptr);
    CHECK(v2::Catalog::descriptor() != nullptr);
    absl::StatusOr<RouteTable> read =
        FromServices({"jobline.v2.JobService", "jobline.v2.CatalogService"});
    CHECK(read.ok()) << read.status();
    return new RouteTable(*std::move(read));
  }();
  return *table;
}

bool RouteTable::Match(absl::string_view verb, absl::string_view path,
                       RouteMatch* match) const {
  const std::vector<absl::string_view> parts = SplitPath(path);
  const HttpRoute* best = nullptr;
  PathVariables best_variables;
  for (const HttpRoute& route : routes_) {
    if (route.verb != verb) continue;
    PathVariables variables;
    if (!MatchSegments(route, parts, &variables)) continue;
    if (best == nullptr || MoreSpecific(route, *best)) {
      best = &route;
      best_variables = std::move(variables);
    }
  }
  if (best == nullptr) return false;
  match->route = best;
  match->variables = std::move(best_variables);
  return true;
}

std::vector<std::string> RouteTable::AllowedVerbs(
    absl::string_view path) const {
  const std::vector<absl::string_view> parts = SplitPath(path);
  std::set<std::string> verbs;
  for (const HttpRoute& route : routes_) {
    PathVariables ignored;
    if (MatchSegments(route, parts, &ignored)) verbs.insert(route.verb);
  }
  return std::vector<std::string>(verbs.begin(), verbs.end());
}

}  // namespace rest
}  // namespace jobline
