#include "server/rest/html_page.h"

#include <cmath>
#include <cstddef>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace jobline {
namespace rest {
namespace {

using Json = nlohmann::ordered_json;

constexpr char kApiRoot[] = "/api/v2/";
constexpr char kJobsPath[] = "/api/v2/jobs/";
// Log lines of the live stream's snapshot: as many as GET shows by default.
constexpr int kLiveLogsLimit = 1000;

// The 10 statuses of spec 2.1, in definition order.
constexpr const char* kStatuses[] = {
    "CREATED", "PENDING", "STARTED",  "SUCCESS",   "FAILURE",
    "RETRY",   "REVOKED", "RECEIVED", "CANCELING", "UNKNOWN",
};

bool IsStatus(absl::string_view status) {
  for (const char* known : kStatuses) {
    if (status == known) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------
// Text helpers.

std::string ReasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 406:
      return "Not Acceptable";
    case 409:
      return "Conflict";
    case 413:
      return "Payload Too Large";
    case 415:
      return "Unsupported Media Type";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "";
  }
}

// "HTTP 200 OK"; "HTTP 299" for a status without a known phrase.
std::string StatusLine(int status) {
  const std::string reason = ReasonPhrase(status);
  return reason.empty() ? absl::StrCat("HTTP ", status)
                        : absl::StrCat("HTTP ", status, " ", reason);
}

// True for "http://..." and "https://..." (scheme in any case) with at
// least one character after "//" and no ASCII space or control character;
// the page's script uses the same rule.
bool IsHttpUrl(absl::string_view text) {
  size_t rest = 0;
  if (absl::StartsWithIgnoreCase(text, "http://")) {
    rest = 7;
  } else if (absl::StartsWithIgnoreCase(text, "https://")) {
    rest = 8;
  } else {
    return false;
  }
  if (text.size() == rest) return false;
  for (const char c : text) {
    const unsigned char byte = static_cast<unsigned char>(c);
    if (byte <= 0x20 || byte == 0x7F) return false;
  }
  return true;
}

bool IsDecimal(absl::string_view text) {
  if (text.empty()) return false;
  for (const char c : text) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// "captures" -> "Capture", "data_exports" -> "Data export".
std::string SingularName(absl::string_view segment) {
  std::string name(segment);
  if (name.size() > 1 && name.back() == 's') name.pop_back();
  for (char& c : name) {
    if (c == '_' || c == '-') c = ' ';
  }
  if (!name.empty()) name[0] = absl::ascii_toupper(name[0]);
  return name;
}

// `value` as compact JSON text, non-ASCII kept, bytes that are not UTF-8
// replaced by U+FFFD.
std::string Dump(const Json& value, int indent = -1) {
  return value.dump(indent, ' ', false, Json::error_handler_t::replace);
}

// JSON text that is safe inside a <script> element: '<', '>' and '&' (which
// can only occur inside strings) become \u escapes.
std::string ScriptJson(const Json& value) {
  const std::string text = Dump(value);
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '<':
        out += "\\u003c";
        break;
      case '>':
        out += "\\u003e";
        break;
      case '&':
        out += "\\u0026";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Reading the document without exceptions.

// The member `key` of `object`, or null when `object` is not an object or
// has no such member.
const Json* Find(const Json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  const auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

// The string member `key`, or "" when absent or not a string.
std::string StringMember(const Json& object, const char* key) {
  const Json* value = Find(object, key);
  return value != nullptr && value->is_string() ? value->get<std::string>()
                                                : std::string();
}

// Whether the array member `key` holds the string `wanted`.
bool ListHolds(const Json& object, const char* key, absl::string_view wanted) {
  const Json* list = Find(object, key);
  if (list == nullptr || !list->is_array()) return false;
  for (const Json& item : *list) {
    if (item.is_string() && item.get<std::string>() == wanted) return true;
  }
  return false;
}

// An object with "id", a string "status" and "job_type" or "job_type_key".
// The page's script uses the same rule.
bool IsJobDocument(const Json& document) {
  return Find(document, "id") != nullptr &&
         !StringMember(document, "status").empty() &&
         (Find(document, "job_type") != nullptr ||
          Find(document, "job_type_key") != nullptr);
}

// A paginated list: an object with a "results" array.
bool IsListDocument(const Json& document) {
  const Json* results = Find(document, "results");
  return results != nullptr && results->is_array();
}

// The job's summary progress as a whole percent in 0..100 (truncated, so
// a job shows 100% only when it is done).
int ProgressPercent(const Json& job) {
  const Json* progress = Find(job, "progress");
  const Json* summary = progress ? Find(*progress, "summary") : nullptr;
  const Json* value = summary ? Find(*summary, "progress") : nullptr;
  if (value == nullptr || !value->is_number()) return 0;
  const double fraction = value->get<double>();
  if (!(fraction > 0)) return 0;
  if (fraction >= 1) return 100;
  return static_cast<int>(std::floor(fraction * 100 + 1e-9));
}

// The text of a job's id: a number as JSON, a string as it is.
std::string IdText(const Json& job) {
  const Json* id = Find(job, "id");
  if (id == nullptr) return "";
  return id->is_string() ? id->get<std::string>() : Dump(*id);
}

// The id of the nested object `key` (e.g. "project"), or null.
Json NestedId(const Json& job, const char* key) {
  const Json* nested = Find(job, key);
  const Json* id = nested ? Find(*nested, "id") : nullptr;
  return id != nullptr ? *id : Json(nullptr);
}

// The message of an error body as the Antenna UI shows it (spec 12): the
// strings of an array joined; of an object its "detail", else the first
// of "non_field_errors", else "<field>: <first message>" of each field.
std::string ErrorMessage(const Json& body) {
  std::vector<std::string> parts;
  if (body.is_array()) {
    for (const Json& item : body) {
      parts.push_back(item.is_string() ? item.get<std::string>() : Dump(item));
    }
    return absl::StrJoin(parts, " ");
  }
  if (!body.is_object()) return body.is_string() ? body.get<std::string>() : "";
  const std::string detail = StringMember(body, "detail");
  if (!detail.empty()) return detail;
  for (const auto& member : body.items()) {
    const Json& value = member.value();
    const Json& first =
        value.is_array() && !value.empty() ? value.front() : value;
    const std::string text =
        first.is_string() ? first.get<std::string>() : Dump(first);
    if (member.key() == "non_field_errors") return text;
    parts.push_back(absl::StrCat(member.key(), ": ", text));
  }
  return absl::StrJoin(parts, "; ");
}

// ---------------------------------------------------------------------------
// Where the page is.

struct Crumb {
  std::string path;
  std::string text;
};

struct PagePath {
  // The path without a format suffix, e.g. "/api/v2/jobs/12/" for
  // "/api/v2/jobs/12.api".
  std::string canonical;
  // From the API root to the page itself (the last one).
  std::vector<Crumb> crumbs;
  // The innermost item the path names ("/api/v2/jobs/12/" for
  // "/api/v2/jobs/12/run/"), or "".
  std::string item_path;
  // The collection the path names itself ("/api/v2/jobs/"), or "".
  std::string collection_path;
  // The last segment of collection_path ("jobs"), or "".
  std::string collection_name;

  const std::string& title() const { return crumbs.back().text; }
  bool is_item() const { return !item_path.empty() && item_path == canonical; }
};

PagePath AnalyzePath(absl::string_view path) {
  PagePath page;

  // A format suffix on the last segment names the slashed path.
  std::string canonical(path);
  for (const char* suffix : {".api", ".json"}) {
    const size_t slash = canonical.rfind('/');
    if (slash != std::string::npos &&
        absl::EndsWith(absl::string_view(canonical).substr(slash + 1),
                       suffix)) {
      canonical.resize(canonical.size() - strlen(suffix));
      if (canonical.back() != '/') canonical += '/';
      break;
    }
  }
  page.canonical = canonical;
  page.crumbs.push_back({kApiRoot, "API root"});
  if (canonical == kApiRoot) return page;
  if (!absl::StartsWith(canonical, kApiRoot)) {
    page.crumbs.push_back({canonical, canonical});
    return page;
  }

  // Collections are the segments followed by an id; an item's further
  // segments name its actions ("Job 12: run"); other segments are
  // prefixes ("captures/collections/").
  const std::vector<std::string> segments =
      absl::StrSplit(absl::string_view(canonical).substr(strlen(kApiRoot)), '/',
                     absl::SkipEmpty());
  std::string prefix = kApiRoot;
  std::string item_title;
  for (size_t i = 0; i < segments.size(); ++i) {
    const std::string& segment = segments[i];
    if (i + 1 < segments.size() && IsDecimal(segments[i + 1])) {
      const std::string collection = absl::StrCat(prefix, segment, "/");
      item_title = absl::StrCat(SingularName(segment), " ", segments[i + 1]);
      prefix = absl::StrCat(collection, segments[i + 1], "/");
      page.crumbs.push_back(
          {collection, absl::StrCat(SingularName(segment), " list")});
      page.crumbs.push_back({prefix, item_title});
      page.item_path = prefix;
      ++i;
      continue;
    }
    absl::StrAppend(&prefix, segment, "/");
    if (i + 1 < segments.size()) continue;
    if (item_title.empty()) {
      page.crumbs.push_back(
          {prefix, absl::StrCat(SingularName(segment), " list")});
      page.collection_path = prefix;
      page.collection_name = segment;
    } else {
      std::string action = segment;
      for (char& c : action) {
        if (c == '_') c = ' ';
      }
      page.crumbs.push_back({prefix, absl::StrCat(item_title, ": ", action)});
    }
  }
  return page;
}

// `raw_query` without its "format" parameters.
std::string QueryWithoutFormat(absl::string_view raw_query) {
  std::vector<absl::string_view> kept;
  for (absl::string_view part :
       absl::StrSplit(raw_query, '&', absl::SkipEmpty())) {
    const absl::string_view key = part.substr(0, part.find('='));
    if (key != "format") kept.push_back(part);
  }
  return absl::StrJoin(kept, "&");
}

// `path` with `query` (may be empty) and then `extra`.
std::string WithQuery(absl::string_view path, absl::string_view query,
                      absl::string_view extra) {
  if (query.empty()) return absl::StrCat(path, "?", extra);
  return absl::StrCat(path, "?", query, "&", extra);
}

// ---------------------------------------------------------------------------
// HTML pieces. The page's script builds the same markup (keep them alike).

// `value` pretty-printed with two spaces per level, as HTML: keys, strings,
// numbers and literals in spans of class k, s, n and l; an http(s) URL
// string is a link inside its quotes.
void AppendJsonHtml(const Json& value, int depth, std::string* out) {
  const std::string pad((depth + 1) * 2, ' ');
  if (value.is_object() || value.is_array()) {
    const bool is_object = value.is_object();
    const char* open = is_object ? "{" : "[";
    const char* close = is_object ? "}" : "]";
    if (value.empty()) {
      absl::StrAppend(out, open, close);
      return;
    }
    absl::StrAppend(out, open, "\n");
    size_t index = 0;
    for (const auto& member : value.items()) {
      out->append(pad);
      if (is_object) {
        absl::StrAppend(out, "<span class=\"k\">",
                        HtmlEscape(Dump(Json(member.key()))), "</span>: ");
      }
      AppendJsonHtml(member.value(), depth + 1, out);
      out->append(++index < value.size() ? ",\n" : "\n");
    }
    absl::StrAppend(out, std::string(depth * 2, ' '), close);
    return;
  }
  if (value.is_string()) {
    const std::string text = value.get<std::string>();
    const std::string quoted = Dump(value);
    if (IsHttpUrl(text)) {
      absl::StrAppend(
          out, "<span class=\"s\">\"<a href=\"", HtmlEscape(text), "\">",
          HtmlEscape(absl::string_view(quoted).substr(1, quoted.size() - 2)),
          "</a>\"</span>");
    } else {
      absl::StrAppend(out, "<span class=\"s\">", HtmlEscape(quoted), "</span>");
    }
    return;
  }
  absl::StrAppend(out, "<span class=\"", value.is_number() ? "n" : "l", "\">",
                  HtmlEscape(Dump(value)), "</span>");
}

std::string StatusPill(absl::string_view status) {
  return absl::StrCat("<span class=\"pill ", StatusColorClass(status), "\">",
                      HtmlEscape(status), "</span>");
}

// Status, progress bar, status label (else the percent) and type of a
// job.
std::string JobSummaryHtml(const Json& job) {
  const int percent = ProgressPercent(job);
  const Json* progress = Find(job, "progress");
  const Json* summary = progress ? Find(*progress, "summary") : nullptr;
  const std::string label =
      summary ? StringMember(*summary, "status_label") : "";
  std::string html = absl::StrCat(
      StatusPill(StringMember(job, "status")),
      " <span class=\"progress\"><span class=\"bar\" style=\"width:", percent,
      "%\"></span></span> <span class=\"percent\">",
      label.empty() ? absl::StrCat(percent, "%") : HtmlEscape(label),
      "</span>");
  const Json* type = Find(job, "job_type");
  const std::string type_name = type ? StringMember(*type, "name") : "";
  if (!type_name.empty()) {
    absl::StrAppend(&html, " <span class=\"type\">", HtmlEscape(type_name),
                    "</span>");
  }
  return html;
}

std::string ActionButton(const char* action, const char* label,
                         const char* classes) {
  return absl::StrCat("<button type=\"button\" class=\"", classes,
                      "\" data-action=\"", action, "\">", label, "</button>");
}

// The buttons the job allows: Run, Cancel, Retry by JobActions when its
// user_permissions hold "run"; Delete when they hold "delete" and
// `can_delete`.
std::string JobButtonsHtml(const Json& job, bool can_delete) {
  const JobActionSet actions = JobActions(StringMember(job, "status"));
  const bool may_run = ListHolds(job, "user_permissions", "run");
  std::string html;
  if (may_run && actions.run) html += ActionButton("run", "Run", "btn");
  if (may_run && actions.cancel) {
    html += ActionButton("cancel", "Cancel", "btn");
  }
  if (may_run && actions.retry) html += ActionButton("retry", "Retry", "btn");
  if (can_delete && ListHolds(job, "user_permissions", "delete")) {
    html += ActionButton("delete", "Delete", "btn danger");
  }
  return html;
}

// A link to `url` when it is an http(s) URL, else `text` greyed out.
std::string LinkOrPlain(const Json* url, const char* text, const char* rel) {
  if (url != nullptr && url->is_string() &&
      IsHttpUrl(url->get<std::string>())) {
    return absl::StrCat("<a rel=\"", rel, "\" href=\"",
                        HtmlEscape(url->get<std::string>()), "\">", text,
                        "</a>");
  }
  return absl::StrCat("<span class=\"off\">", text, "</span>");
}

// A table of the list's jobs (when every result is a job) and the
// previous/next links.
std::string ListHtml(const Json& list) {
  const Json& results = *Find(list, "results");
  std::string html;
  bool all_jobs = !results.empty();
  for (const Json& item : results) all_jobs = all_jobs && IsJobDocument(item);
  if (results.empty()) {
    html += "<p class=\"none\">No results.</p>";
  } else if (all_jobs) {
    html +=
        "<table class=\"jobs\"><thead><tr><th>ID</th><th>Name</th>"
        "<th>Type</th><th>Status</th><th>Progress</th><th>Created</th>"
        "</tr></thead><tbody>";
    for (const Json& job : results) {
      const std::string id = HtmlEscape(IdText(job));
      const std::string details = StringMember(job, "details");
      const Json* type = Find(job, "job_type");
      absl::StrAppend(
          &html, "<tr><td>",
          IsHttpUrl(details) ? absl::StrCat("<a href=\"", HtmlEscape(details),
                                            "\">", id, "</a>")
                             : id,
          "</td><td>", HtmlEscape(StringMember(job, "name")), "</td><td>",
          HtmlEscape(type ? StringMember(*type, "name") : ""), "</td><td>",
          StatusPill(StringMember(job, "status")), "</td><td>",
          ProgressPercent(job), "%</td><td>",
          HtmlEscape(StringMember(job, "created_at")), "</td></tr>");
    }
    html += "</tbody></table>";
  }
  const Json* count = Find(list, "count");
  absl::StrAppend(
      &html, "<nav class=\"pager\">",
      LinkOrPlain(Find(list, "previous"), "&laquo; Previous", "prev"),
      " <span class=\"count\">",
      count != nullptr ? HtmlEscape(Dump(*count)) : "?", " in all</span> ",
      LinkOrPlain(Find(list, "next"), "Next &raquo;", "next"), "</nav>");
  return html;
}

// The writable fields of a job (spec 1.2) with its current values: what a
// PUT needs, ready to edit.
Json EditableFields(const Json& job) {
  Json fields = Json::object();
  for (const char* key : {"name", "delay", "limit", "shuffle"}) {
    const Json* value = Find(job, key);
    fields[key] = value != nullptr ? *value : Json(nullptr);
  }
  fields["project_id"] = NestedId(job, "project");
  fields["deployment_id"] = NestedId(job, "deployment");
  fields["source_image_collection_id"] =
      NestedId(job, "source_image_collection");
  fields["source_image_single_id"] = NestedId(job, "source_image_single");
  fields["pipeline_id"] = NestedId(job, "pipeline");
  const Json* type = Find(job, "job_type");
  const std::string key = type ? StringMember(*type, "key") : "";
  fields["job_type_key"] = key.empty() ? Json(nullptr) : Json(key);
  return fields;
}

// A new job's body, in the project and of the type of the list's first
// job when there is one.
Json NewJobTemplate(const Json& list) {
  const Json& results = *Find(list, "results");
  const Json first = !results.empty() && IsJobDocument(results.front())
                         ? results.front()
                         : Json::object();
  const Json* type = Find(first, "job_type");
  const std::string key = type ? StringMember(*type, "key") : "";
  Json body = Json::object();
  body["name"] = "";
  body["delay"] = 0;
  body["project_id"] = NestedId(first, "project");
  body["job_type_key"] = key.empty() ? "ml" : key;
  body["pipeline_id"] = nullptr;
  body["source_image_collection_id"] = nullptr;
  return body;
}

std::string FormHtml(const char* id, const char* heading, const char* intro,
                     const std::string& url, const std::string& text,
                     const std::vector<std::string>& methods,
                     bool with_start_now) {
  std::string html = absl::StrCat(
      "<details class=\"panel\" id=\"", id, "\"><summary>", heading,
      "</summary><p class=\"hint\">", intro, "</p><form data-url=\"",
      HtmlEscape(url),
      "\"><textarea name=\"body\" rows=\"12\" spellcheck=\"false\">",
      HtmlEscape(text), "</textarea><div class=\"form-row\">");
  if (with_start_now) {
    html +=
        "<label><input type=\"checkbox\" name=\"start_now\"> "
        "<code>start_now</code>: run it at once</label>";
  }
  for (const std::string& method : methods) {
    absl::StrAppend(&html, "<button type=\"button\" class=\"btn\" ",
                    "data-method=\"", method, "\">", method, "</button>");
  }
  html += "</div></form></details>\n";
  return html;
}

bool Allows(const HtmlPageInput& input, absl::string_view verb) {
  for (const std::string& allowed : input.allowed_verbs) {
    if (allowed == verb) return true;
  }
  return false;
}

constexpr char kStyle[] = R"css(
:root{--fg:#1f2933;--muted:#5f6b7a;--line:#d9e2ec;--bg:#f5f7fa;
--accent:#2f5d8a;--bad:#b02a2a}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
sans-serif;color:var(--fg);background:var(--bg)}
.topbar{background:#243b53;padding:10px 24px}
.topbar a{color:#fff;font-weight:600;text-decoration:none}
main{max-width:1100px;margin:0 auto;padding:12px 24px 48px}
a{color:var(--accent)}
.crumbs{font-size:14px;color:var(--muted)}
.heading{display:flex;align-items:center;justify-content:space-between;
gap:16px}
h1{font-size:26px;margin:6px 0}
.format{border:1px solid var(--line);border-radius:4px;padding:2px 10px;
background:#fff;text-decoration:none;font-size:13px}
.subtitle{margin:0 0 6px;color:var(--muted);font-size:17px}
.summary{display:flex;align-items:center;gap:10px;margin:6px 0;
flex-wrap:wrap}
.pill{display:inline-block;padding:1px 10px;border-radius:999px;
font-size:12px;font-weight:600;letter-spacing:.03em}
.pill.success{background:#d3f9d8;color:#1b6e2a}
.pill.error{background:#ffe3e3;color:var(--bad)}
.pill.warning{background:#fff3bf;color:#8a5a00}
.pill.neutral{background:#e4e7eb;color:#3e4c59}
.progress{display:inline-block;width:160px;height:8px;background:#e4e7eb;
border-radius:4px;overflow:hidden}
.bar{display:block;height:100%;background:var(--accent)}
.percent,.type{font-size:14px;color:var(--muted)}
.type::before{content:"\00b7";margin-right:10px}
.actions{display:flex;gap:8px;margin:12px 0}
.actions:empty{display:none}
.btn{font:inherit;font-size:14px;padding:4px 16px;border:1px solid
var(--accent);border-radius:4px;background:var(--accent);color:#fff;
cursor:pointer}
.btn:hover{background:#244a6f}
.btn.danger{background:#fff;color:var(--bad);border-color:var(--bad)}
.btn.danger:hover{background:#ffe3e3}
.btn:disabled{opacity:.5;cursor:wait}
.response,.answer{background:#fff;border:1px solid var(--line);
border-radius:6px;margin:12px 0;overflow:hidden}
.response.failed,.answer.failed{border-color:#f0b4b4}
.answer{border-left:4px solid var(--accent)}
.answer.failed{border-left-color:var(--bad)}
.answer summary{padding:6px 16px;cursor:pointer;color:var(--muted);
font-size:14px}
.answer>a{display:block;padding:6px 16px}
.answer-head{padding:6px 16px;font-weight:600;background:#f0f4f8;
border-bottom:1px solid var(--line)}
pre{margin:0;padding:10px 16px;font:13px/1.45 ui-monospace,SFMono-Regular,
Menlo,Consolas,monospace;white-space:pre-wrap;overflow-wrap:anywhere}
.info{background:#f0f4f8;border-bottom:1px solid var(--line);
color:var(--muted)}
.info b{color:var(--fg)}
.failed .info .status{color:var(--bad)}
.k{color:#7b2e8e}.s{color:#1d6b2f}.n{color:#1c4fb8}.l{color:#b4501b}
.s a{color:inherit}
.error-message{color:var(--bad);font-weight:600;margin:8px 0}
table{width:100%;border-collapse:collapse;background:#fff;
border:1px solid var(--line);font-size:14px}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid var(--line)}
th{background:#f0f4f8;font-weight:600}
.pager{display:flex;gap:16px;align-items:center;margin:10px 0;
font-size:14px}
.pager .off{color:#9aa5b1}
.count{color:var(--muted)}
.panel{background:#fff;border:1px solid var(--line);border-radius:6px;
padding:12px 16px;margin:16px 0}
.panel summary{font-weight:600;cursor:pointer}
.hint{color:var(--muted);font-size:14px;margin:2px 0 8px}
textarea{width:100%;font:13px/1.45 ui-monospace,Menlo,Consolas,monospace;
padding:8px;border:1px solid var(--line);border-radius:4px}
.form-row{display:flex;gap:12px;align-items:center;margin-top:8px;
justify-content:flex-end}
.form-row label{margin-right:auto;font-size:14px}
)css";

// The page's script (plain ES2017). It mirrors the markup of the functions
// above; CONFIG carries the rules (JobActions, StatusColorClass) so that
// they are written once, in C++.
constexpr char kScript[] = R"js(
"use strict";
const CONFIG = JSON.parse(document.getElementById("page-config").textContent);
const URL_RULE = /^https?:\/\/[^\x00-\x20\x7f]+$/i;
let currentDocument =
    JSON.parse(document.getElementById("page-document").textContent);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}
function own(object, key) {
  return object !== null && typeof object === "object" &&
      Object.prototype.hasOwnProperty.call(object, key);
}
function isJob(doc) {
  return own(doc, "id") && typeof doc.status === "string" &&
      doc.status !== "" && (own(doc, "job_type") || own(doc, "job_type_key"));
}
function isList(doc) {
  return own(doc, "results") && Array.isArray(doc.results);
}
function permissions(doc) {
  return own(doc, "user_permissions") && Array.isArray(doc.user_permissions)
      ? doc.user_permissions : [];
}
function percent(job) {
  const summary = own(job, "progress") && own(job.progress, "summary")
      ? job.progress.summary : {};
  const value = typeof summary.progress === "number" ? summary.progress : 0;
  if (!(value > 0)) return 0;
  return value >= 1 ? 100 : Math.floor(value * 100 + 1e-9);
}
function pill(status) {
  const color = own(CONFIG.statusColors, status)
      ? CONFIG.statusColors[status] : "neutral";
  return el("span", "pill " + color, status);
}

// Appends `value` to `parent` pretty-printed, as the server renders it.
function renderJson(value, depth, parent) {
  const pad = "  ".repeat(depth + 1);
  if (value !== null && typeof value === "object") {
    const isArray = Array.isArray(value);
    const keys = isArray ? value.map((item, i) => i) : Object.keys(value);
    const close = isArray ? "]" : "}";
    if (keys.length === 0) {
      parent.append((isArray ? "[" : "{") + close);
      return;
    }
    parent.append(isArray ? "[\n" : "{\n");
    keys.forEach((key, i) => {
      parent.append(pad);
      if (!isArray) parent.append(el("span", "k", JSON.stringify(key)), ": ");
      renderJson(value[key], depth + 1, parent);
      parent.append(i + 1 < keys.length ? ",\n" : "\n");
    });
    parent.append("  ".repeat(depth) + close);
  } else if (typeof value === "string") {
    const quoted = JSON.stringify(value);
    if (URL_RULE.test(value)) {
      const span = el("span", "s");
      const link = el("a", "", quoted.slice(1, -1));
      link.href = value;
      span.append('"', link, '"');
      parent.append(span);
    } else {
      parent.append(el("span", "s", quoted));
    }
  } else {
    parent.append(el("span", typeof value === "number" ? "n" : "l",
                     String(value)));
  }
}

function renderSummary(job) {
  const box = document.getElementById("summary");
  if (!box) return;
  box.textContent = "";
  const bar = el("span", "progress");
  const fill = el("span", "bar");
  fill.style.width = percent(job) + "%";
  bar.append(fill);
  const summary = own(job, "progress") && own(job.progress, "summary")
      ? job.progress.summary : {};
  const label = typeof summary.status_label === "string" &&
      summary.status_label ? summary.status_label : percent(job) + "%";
  box.append(pill(job.status), " ", bar, " ", el("span", "percent", label));
  if (own(job, "job_type") && typeof job.job_type.name === "string" &&
      job.job_type.name) {
    box.append(" ", el("span", "type", job.job_type.name));
  }
  const name = document.getElementById("job-name");
  if (name) name.textContent = typeof job.name === "string" ? job.name : "";
}

function renderButtons(job) {
  const box = document.getElementById("actions");
  if (!box) return;
  box.textContent = "";
  const allowed = own(CONFIG.jobActions, job.status)
      ? CONFIG.jobActions[job.status] : {};
  const perms = permissions(job);
  const mayRun = perms.includes("run");
  const buttons = [["run", "Run", "btn"], ["cancel", "Cancel", "btn"],
                   ["retry", "Retry", "btn"]]
      .filter((entry) => mayRun && allowed[entry[0]]);
  if (CONFIG.canDelete && perms.includes("delete")) {
    buttons.push(["delete", "Delete", "btn danger"]);
  }
  for (const [action, label, className] of buttons) {
    const button = el("button", className, label);
    button.type = "button";
    button.dataset.action = action;
    box.append(button);
  }
}

function linkOrPlain(url, text, rel) {
  if (typeof url !== "string" || !URL_RULE.test(url)) {
    return el("span", "off", text);
  }
  const link = el("a", "", text);
  link.href = url;
  link.rel = rel;
  return link;
}

function renderList(list) {
  const box = document.getElementById("list");
  if (!box) return;
  box.textContent = "";
  const results = list.results;
  if (results.length === 0) {
    box.append(el("p", "none", "No results."));
  } else if (results.every(isJob)) {
    const table = el("table", "jobs");
    const head = table.createTHead().insertRow();
    for (const title of ["ID", "Name", "Type", "Status", "Progress",
                         "Created"]) {
      head.append(el("th", "", title));
    }
    const body = table.createTBody();
    for (const job of results) {
      const row = body.insertRow();
      const id = typeof job.id === "string" ? job.id : JSON.stringify(job.id);
      const cells = [
        typeof job.details === "string" && URL_RULE.test(job.details)
            ? linkOrPlain(job.details, id, "") : id,
        typeof job.name === "string" ? job.name : "",
        own(job, "job_type") && typeof job.job_type.name === "string"
            ? job.job_type.name : "",
        pill(job.status),
        percent(job) + "%",
        typeof job.created_at === "string" ? job.created_at : "",
      ];
      for (const cell of cells) row.insertCell().append(cell);
    }
    box.append(table);
  }
  const pager = el("nav", "pager");
  pager.append(linkOrPlain(list.previous, "\u00ab Previous", "prev"), " ",
               el("span", "count", (own(list, "count")
                   ? JSON.stringify(list.count) : "?") + " in all"), " ",
               linkOrPlain(list.next, "Next \u00bb", "next"));
  box.append(pager);
}

// Shows `doc` on the page: the document, and for a job its summary and
// buttons, for a list its table and links. Every change of the document
// on the page goes through here, whatever brings the fresher document.
function applyDocument(doc) {
  currentDocument = doc;
  const pre = document.getElementById("document");
  pre.textContent = "";
  renderJson(doc, 0, pre);
  if (isJob(doc)) {
    renderSummary(doc);
    renderButtons(doc);
  }
  if (isList(doc)) renderList(doc);
}

function showAnswer(request, status, failed, body) {
  const box = document.getElementById("answer");
  box.hidden = false;
  box.className = failed ? "answer failed" : "answer";
  box.textContent = "";
  box.append(el("div", "answer-head", request + " \u2192 " + status));
  if (body === null || body === "") return box;
  // A success's body is most often the document itself: folded.
  const fold = el("details");
  fold.open = failed;
  fold.append(el("summary", "", "Body of the answer"));
  const pre = el("pre");
  if (typeof body === "object") renderJson(body, 0, pre);
  else pre.textContent = String(body);
  fold.append(pre);
  box.append(fold);
  return box;
}

// Sends one request with a JSON body (or none) and shows its answer;
// resolves to the response, or null when the request could not be sent.
async function send(method, url, body) {
  const init = {method: method, headers: {"Accept": "application/json"}};
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = body;
  }
  const request = method + " " + url;
  showAnswer(request, "sending\u2026", false, null);
  let response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    showAnswer(request, "not sent", true, String(error));
    return null;
  }
  const text = await response.text();
  let parsed = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch (error) {
    parsed = text;
  }
  showAnswer(request, "HTTP " + response.status + " " + response.statusText,
             !response.ok, parsed);
  return response;
}

// Loads the page's document again and shows it.
async function refresh() {
  let response;
  try {
    response = await fetch(CONFIG.documentUrl,
                           {headers: {"Accept": "application/json"}});
  } catch (error) {
    return;
  }
  if (response.ok) applyDocument(await response.json());
}

// Follows the job live through its progress stream (CONFIG.progressUrl):
// each event carries the job's document, shown through applyDocument. A
// progress event's document has no log lines of its own: the lines the
// event brings are added to those shown, newest first as the document
// lists them (ERROR and CRITICAL ones to stderr too, by their message).
// The stream is closed at its end event; starting the job again from the
// page opens it anew.
let progressSource = null;
function withNewLines(job, lines) {
  const shown = own(currentDocument, "logs") ? currentDocument.logs : {};
  const stdout = Array.isArray(shown.stdout) ? shown.stdout.slice() : [];
  const stderr = Array.isArray(shown.stderr) ? shown.stderr.slice() : [];
  for (const line of lines) {
    stdout.unshift(line.text);
    if (line.level === "ERROR" || line.level === "CRITICAL") {
      const marker = "] " + line.level + " ";
      const at = line.text.indexOf(marker);
      stderr.unshift(at < 0 ? line.text : line.text.slice(at + marker.length));
    }
  }
  job.logs = {stdout: stdout, stderr: stderr};
  return job;
}
function watchProgress() {
  if (!CONFIG.progressUrl || progressSource !== null ||
      typeof EventSource !== "function") {
    return;
  }
  const source = new EventSource(CONFIG.progressUrl);
  progressSource = source;
  const show = (event) => {
    const message = JSON.parse(event.data);
    applyDocument(message.snapshot ? message.job
                                   : withNewLines(message.job, message.logs));
  };
  source.addEventListener("snapshot", show);
  source.addEventListener("progress", show);
  source.addEventListener("end", () => {
    source.close();
    progressSource = null;
  });
  // A refused reconnection (the job deleted meanwhile) closes the source.
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) progressSource = null;
  });
}

async function runAction(action) {
  if (action === "delete") {
    if (!window.confirm("Delete job " + JSON.stringify(currentDocument.id) +
                        "? This cannot be undone.")) {
      return;
    }
    const response = await send("DELETE", CONFIG.jobPath);
    if (response && response.ok) {
      document.getElementById("actions").textContent = "";
      const form = document.getElementById("edit-form");
      if (form) form.hidden = true;
      const back = el("a", "", "Back to the list");
      back.href = CONFIG.listPath;
      document.getElementById("answer").append(back);
    }
    return;
  }
  if (await send("POST", CONFIG.jobPath + action + "/")) {
    await refresh();
    watchProgress();
  }
}

async function submitForm(form, method) {
  let url = form.dataset.url;
  if (form.elements.start_now && form.elements.start_now.checked) {
    url += "?start_now";
  }
  const response = await send(method, url, form.elements.body.value);
  if (response && response.ok) {
    await refresh();
    watchProgress();
  }
}

document.addEventListener("click", async (event) => {
  const button =
      event.target.closest("button[data-action],button[data-method]");
  if (!button) return;
  event.preventDefault();
  button.disabled = true;
  try {
    if (button.dataset.action) await runAction(button.dataset.action);
    else await submitForm(button.form, button.dataset.method);
  } finally {
    button.disabled = false;
  }
});
watchProgress();
)js";

}  // namespace

JobActionSet JobActions(absl::string_view status) {
  JobActionSet actions;
  if (!IsStatus(status)) return actions;
  actions.run = status == "CREATED";
  actions.cancel = status == "STARTED" || status == "PENDING";
  actions.retry = status != "CREATED" && status != "STARTED" &&
                  status != "PENDING" && status != "CANCELING" &&
                  status != "RETRY";
  return actions;
}

std::string StatusColorClass(absl::string_view status) {
  if (status == "SUCCESS") return "success";
  if (status == "FAILURE" || status == "REVOKED") return "error";
  if (status == "CANCELING" || status == "PENDING" || status == "RETRY" ||
      status == "STARTED") {
    return "warning";
  }
  return "neutral";
}

std::string HtmlEscape(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string RenderHtmlPage(const HtmlPageInput& input) {
  const PagePath page = AnalyzePath(input.path);

  // What the answer is.
  const bool has_body = !input.json_body.empty();
  const Json document =
      has_body ? Json::parse(input.json_body, nullptr, false) : Json();
  const bool is_json = has_body && !document.is_discarded();
  const bool failed = input.status >= 400;
  const bool is_job = !failed && is_json && IsJobDocument(document);
  const bool is_list = !failed && is_json && IsListDocument(document);

  // Where its requests go: the job's own path (also for a job answered on
  // an action or on the list), the list, and the document as JSON.
  const std::string query = QueryWithoutFormat(input.raw_query);
  std::string job_path;
  if (is_job && !page.item_path.empty()) {
    job_path = page.item_path;
  } else if (is_job && Find(document, "id")->is_number_integer()) {
    job_path = absl::StrCat(page.canonical, IdText(document), "/");
  } else if (is_job) {
    job_path = page.canonical;
  }
  const std::string json_url = WithQuery(page.canonical, query, "format=json");
  const std::string document_url = is_job && job_path != page.canonical
                                       ? absl::StrCat(job_path, "?format=json")
                                       : json_url;
  std::string list_path = page.collection_path;
  if (list_path.empty() && page.crumbs.size() > 1) {
    list_path = page.crumbs[1].path;
  }
  const bool can_delete = is_job && page.is_item() && Allows(input, "DELETE");
  const bool job_list = is_list && page.collection_name == "jobs";

  std::string title = page.title();
  if (failed) {
    const std::string reason = ReasonPhrase(input.status);
    absl::StrAppend(
        &title, " \u2014 ",
        reason.empty() ? absl::StrCat("Error ", input.status) : reason);
  }

  // Head, bar, breadcrumbs and heading.
  std::string html = absl::StrCat(
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, "
      "initial-scale=1\">\n<title>",
      HtmlEscape(title), " &middot; Jobline API</title>\n<style>", kStyle,
      "</style>\n</head>\n<body>\n<header class=\"topbar\"><a href=\"",
      HtmlEscape(input.base_url), kApiRoot,
      "\">Jobline API</a></header>\n<main>\n<nav class=\"crumbs\">");
  for (size_t i = 0; i < page.crumbs.size(); ++i) {
    const Crumb& crumb = page.crumbs[i];
    if (i > 0) html += " / ";
    if (i + 1 == page.crumbs.size()) {
      absl::StrAppend(&html, "<span>", HtmlEscape(crumb.text), "</span>");
    } else {
      absl::StrAppend(&html, "<a href=\"", HtmlEscape(input.base_url),
                      HtmlEscape(crumb.path), "\">", HtmlEscape(crumb.text),
                      "</a>");
    }
  }
  absl::StrAppend(&html, "</nav>\n<div class=\"heading\"><h1>",
                  HtmlEscape(title), "</h1><a class=\"format\" href=\"",
                  HtmlEscape(json_url), "\">JSON</a></div>\n");

  // A job's name, summary, buttons and edit form; a list's table and
  // create form; the answers of their requests; an error's message.
  if (is_job) {
    absl::StrAppend(&html, "<p class=\"subtitle\" id=\"job-name\">",
                    HtmlEscape(StringMember(document, "name")),
                    "</p>\n<div class=\"summary\" id=\"summary\">",
                    JobSummaryHtml(document),
                    "</div>\n<div class=\"actions\" id=\"actions\">",
                    JobButtonsHtml(document, can_delete), "</div>\n");
  }
  if (is_job && page.is_item() &&
      ListHolds(document, "user_permissions", "update")) {
    std::vector<std::string> methods;
    for (const char* verb : {"PUT", "PATCH"}) {
      if (Allows(input, verb)) methods.push_back(verb);
    }
    if (!methods.empty()) {
      html +=
          FormHtml("edit-form", "Edit this job",
                   "PUT replaces the writable fields below (name and "
                   "project_id are required); PATCH changes only the "
                   "fields sent.",
                   job_path, Dump(EditableFields(document), 2), methods, false);
    }
  }
  if (is_list) {
    absl::StrAppend(&html, "<div id=\"list\">", ListHtml(document), "</div>\n");
  }
  if (is_list && Allows(input, "POST") &&
      (Find(document, "user_permissions") == nullptr ||
       ListHolds(document, "user_permissions", "create"))) {
    html +=
        FormHtml("create-form", job_list ? "Create a job" : "Create",
                 "The JSON body of the new record; POST sends it to this list.",
                 page.canonical,
                 Dump(job_list ? NewJobTemplate(document) : Json::object(), 2),
                 {"POST"}, job_list);
  }
  html += "<div id=\"answer\" class=\"answer\" hidden></div>\n";
  if (failed && is_json) {
    const std::string message = ErrorMessage(document);
    if (!message.empty()) {
      absl::StrAppend(&html, "<p class=\"error-message\">", HtmlEscape(message),
                      "</p>\n");
    }
  }

  // The response: request line, status line, headers and document.
  absl::StrAppend(&html, "<div class=\"response", failed ? " failed" : "",
                  "\">\n<pre class=\"info\"><span class=\"request\">",
                  HtmlEscape(input.verb), " ", HtmlEscape(input.path));
  if (!input.raw_query.empty()) {
    absl::StrAppend(&html, "?", HtmlEscape(input.raw_query));
  }
  absl::StrAppend(&html, "</span>\n<b class=\"status\">",
                  StatusLine(input.status), "</b>");
  if (!input.allowed_verbs.empty()) {
    absl::StrAppend(&html, "\n<b>Allow:</b> ",
                    HtmlEscape(absl::StrJoin(input.allowed_verbs, ", ")));
  }
  if (has_body) html += "\n<b>Content-Type:</b> application/json";
  html += "</pre>\n<pre class=\"document\" id=\"document\">";
  if (is_json) {
    AppendJsonHtml(document, 0, &html);
  } else if (has_body) {
    html += HtmlEscape(input.json_body);
  } else {
    html += "<span class=\"l\">No content.</span>";
  }
  html += "</pre>\n</div>\n</main>\n";

  // The script, its configuration and the document it starts from.
  Json config = Json::object();
  config["documentUrl"] = document_url;
  config["jobPath"] = job_path;
  config["listPath"] = list_path;
  config["canDelete"] = can_delete;
  // The page of a job follows it live.
  config["progressUrl"] =
      is_job && page.is_item() && absl::StartsWith(job_path, kJobsPath)
          ? absl::StrCat(job_path, "progress/?logs_limit=", kLiveLogsLimit)
          : "";
  Json actions = Json::object();
  Json colors = Json::object();
  for (const char* status : kStatuses) {
    const JobActionSet set = JobActions(status);
    actions[status] = {
        {"run", set.run}, {"cancel", set.cancel}, {"retry", set.retry}};
    colors[status] = StatusColorClass(status);
  }
  config["jobActions"] = std::move(actions);
  config["statusColors"] = std::move(colors);
  absl::StrAppend(
      &html, "<script type=\"application/json\" id=\"page-config\">",
      ScriptJson(config),
      "</script>\n<script type=\"application/json\" id=\"page-document\">",
      is_json ? ScriptJson(document) : "null", "</script>\n<script>", kScript,
      "</script>\n</body>\n</html>\n");
  return html;
}

}  // namespace rest
}  // namespace jobline
