// The HTML page of the REST face: the browsable page that upstream serves
// for ?format=api, for .api URL suffixes and for Accept: text/html (spec 0,
// 6.8). It shows the same JSON answer a client would get, for a person:
//
//   - a heading naming the resource ("API root", "Job list", "Job 12",
//     "Collection 111", "Job 12: run"; for an error, the resource and the
//     reason, "Job 99 — Not Found"), breadcrumbs up to the API root, the
//     request line, the status line ("HTTP 200 OK"), the Allow verbs and a
//     link to the same document as JSON;
//   - the document, pretty-printed with two spaces, every string that is
//     an http(s) URL a link;
//   - for a job document: its status in the Antenna UI's colour, its
//     progress, the Run, Cancel, Retry and Delete buttons that the job
//     allows (JobActions and its user_permissions) and, on the job's own
//     path when its user_permissions hold "update", a form to PUT or PATCH
//     it (prefilled with its writable fields);
//   - for a list: a table of its jobs, the previous/next links of the
//     document and, where POST is allowed and the list's user_permissions
//     hold "create", a form to create a job (with start_now);
//   - for an error (status >= 400): the error body and its message as the
//     Antenna UI words it.
//
// The page is self-contained (inline CSS and JavaScript, no external
// assets). Buttons and forms send their request with fetch() and JSON,
// show the answer and then reload the document into the page. The script
// defines applyDocument(doc), which re-renders the document, its summary,
// its buttons and its list table from a parsed JSON object (it leaves the
// forms' text alone); every fresher document is shown through it. The page
// of a job (its own path under /api/v2/jobs/) follows the job live: an
// EventSource on "<job path>progress/?logs_limit=1000" feeds each event's
// job to applyDocument, adds the event's new log lines to those shown, and
// is closed at the stream's end event (opened again when a button or form
// of the page starts the job again).
//
// Every text from the document is HTML-escaped; the document given to the
// script is embedded as JSON in which '<', '>' and '&' are \u-escaped, so
// nothing in it can end the script element. The script builds its nodes
// with textContent, never from HTML text.
//
// Thread safety: all functions are pure.

#ifndef JOBLINE_SERVER_REST_HTML_PAGE_H_
#define JOBLINE_SERVER_REST_HTML_PAGE_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace jobline {
namespace rest {

struct HtmlPageInput {
  // The request verb, upper case, e.g. "GET".
  std::string verb;
  // The request path as sent, without the query, e.g. "/api/v2/jobs/12/";
  // a format suffix (".api", ".json") of the last segment is understood,
  // e.g. "/api/v2/jobs/12.api" is the page of "/api/v2/jobs/12/".
  std::string path;
  // The query as sent, still percent-encoded, without "?"; e.g.
  // "limit=5&offset=10&format=api". Kept, without its format parameter, in
  // the JSON link and when the page reloads its document.
  std::string raw_query;
  // Scheme, host and port, without a trailing slash, e.g.
  // "http://localhost:8000".
  std::string base_url;
  // The HTTP status of the JSON answer.
  int status = 200;
  // The JSON answer, compact; empty for 204. A body that is not JSON is
  // shown as text.
  std::string json_body;
  // The verbs the path accepts, as in the Allow header, e.g.
  // {"GET", "PUT", "PATCH", "DELETE"}. The edit and create forms and the
  // Delete button are offered only for verbs listed here.
  std::vector<std::string> allowed_verbs;
};

// A complete HTML5 page for `input` (see the file comment).
std::string RenderHtmlPage(const HtmlPageInput& input);

// The actions the Antenna UI offers for a job in `status` (spec 12),
// before permissions:
//   run     iff status is CREATED;
//   cancel  iff status is STARTED or PENDING;
//   retry   iff status is one of the 10 statuses other than CREATED,
//           STARTED, PENDING, CANCELING and RETRY (that is SUCCESS,
//           FAILURE, REVOKED, RECEIVED or UNKNOWN).
// A text that is not one of the 10 statuses (they are case-sensitive)
// allows nothing. The page shows each button only when the job's
// user_permissions also hold "run".
struct JobActionSet {
  bool run = false;
  bool cancel = false;
  bool retry = false;
};
JobActionSet JobActions(absl::string_view status);

// The colour class of `status` in the Antenna UI (spec 12): "success" for
// SUCCESS; "error" for FAILURE and REVOKED; "warning" for CANCELING,
// PENDING, RETRY and STARTED; "neutral" for CREATED, RECEIVED, UNKNOWN and
// any other text.
std::string StatusColorClass(absl::string_view status);

// `text` with &, <, >, " and ' replaced by character references, safe in
// element content and in quoted attribute values.
std::string HtmlEscape(absl::string_view text);

}  // namespace rest
}  // namespace jobline

#endif  // JOBLINE_SERVER_REST_HTML_PAGE_H_
