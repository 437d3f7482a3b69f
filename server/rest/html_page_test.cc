#include "server/rest/html_page.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace jobline {
namespace rest {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Json = nlohmann::ordered_json;

constexpr char kBase[] = "http://localhost:8000";

// A job document of the detail view (spec 1.5, shortened) with the given
// id, status, name and user_permissions.
Json JobDocument(int id, const std::string& status,
                 const std::string& name = "Nightly batch",
                 const std::vector<std::string>& permissions = {
                     "update", "delete", "run", "run_single_image"}) {
  Json job = Json::object();
  job["id"] = id;
  job["details"] = absl::StrCat(kBase, "/api/v2/jobs/", id, "/");
  job["name"] = name;
  job["delay"] = 0;
  job["limit"] = nullptr;
  job["shuffle"] = true;
  job["project"] = {{"id", 16},
                    {"name", "Demo"},
                    {"details", absl::StrCat(kBase, "/api/v2/projects/16/")},
                    {"user_permissions", Json::array()}};
  job["deployment"] = nullptr;
  job["source_image_collection"] = nullptr;
  job["source_image_single"] = nullptr;
  job["pipeline"] = nullptr;
  job["status"] = status;
  job["progress"] = {{"summary", {{"status", status}, {"progress", 0.5}}},
                     {"stages", Json::array()},
                     {"errors", Json::array()},
                     {"logs", Json::array()}};
  job["job_type"] = {{"name", "ML pipeline"}, {"key", "ml"}};
  job["user_permissions"] = permissions;
  return job;
}

HtmlPageInput DetailPage(const Json& job) {
  HtmlPageInput input;
  input.verb = "GET";
  input.path = absl::StrCat("/api/v2/jobs/", job["id"].get<int>(), "/");
  input.base_url = kBase;
  input.status = 200;
  input.json_body = job.dump();
  input.allowed_verbs = {"GET", "PUT", "PATCH", "DELETE"};
  return input;
}

// The markup of the button of `action` ("run", ...), as the page has it.
std::string Button(const std::string& action, const std::string& label,
                   const std::string& classes = "btn") {
  return absl::StrCat("<button type=\"button\" class=\"", classes,
                      "\" data-action=\"", action, "\">", label, "</button>");
}

std::string ActionsDiv(const std::string& buttons) {
  return absl::StrCat("<div class=\"actions\" id=\"actions\">", buttons,
                      "</div>");
}

int Count(const std::string& text, const std::string& needle) {
  int count = 0;
  for (size_t at = text.find(needle); at != std::string::npos;
       at = text.find(needle, at + 1)) {
    ++count;
  }
  return count;
}

TEST(HtmlEscape, EscapesTheFiveSpecialCharacters) {
  EXPECT_EQ(HtmlEscape(R"(<a href="x">Tom & 'Jerry'</a>)"),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;");
  EXPECT_EQ(HtmlEscape("plain text, ünïcode"), "plain text, ünïcode");
  EXPECT_EQ(HtmlEscape(""), "");
}

TEST(JobActions, FollowsTheUiRuleOnEveryStatus) {
  struct Case {
    const char* status;
    bool run, cancel, retry;
  };
  const Case cases[] = {
      {"CREATED", true, false, false},    {"PENDING", false, true, false},
      {"STARTED", false, true, false},    {"SUCCESS", false, false, true},
      {"FAILURE", false, false, true},    {"RETRY", false, false, false},
      {"REVOKED", false, false, true},    {"RECEIVED", false, false, true},
      {"CANCELING", false, false, false}, {"UNKNOWN", false, false, true},
  };
  for (const Case& c : cases) {
    const JobActionSet actions = JobActions(c.status);
    EXPECT_EQ(actions.run, c.run) << c.status;
    EXPECT_EQ(actions.cancel, c.cancel) << c.status;
    EXPECT_EQ(actions.retry, c.retry) << c.status;
  }
}

TEST(JobActions, TextsOutsideTheTenStatusesAllowNothing) {
  for (const char* status : {"", "created", "Success", "DONE"}) {
    const JobActionSet actions = JobActions(status);
    EXPECT_FALSE(actions.run) << status;
    EXPECT_FALSE(actions.cancel) << status;
    EXPECT_FALSE(actions.retry) << status;
  }
}

TEST(StatusColorClass, AsTheUiColoursStatuses) {
  EXPECT_EQ(StatusColorClass("SUCCESS"), "success");
  EXPECT_EQ(StatusColorClass("FAILURE"), "error");
  EXPECT_EQ(StatusColorClass("REVOKED"), "error");
  EXPECT_EQ(StatusColorClass("CANCELING"), "warning");
  EXPECT_EQ(StatusColorClass("PENDING"), "warning");
  EXPECT_EQ(StatusColorClass("RETRY"), "warning");
  EXPECT_EQ(StatusColorClass("STARTED"), "warning");
  EXPECT_EQ(StatusColorClass("CREATED"), "neutral");
  EXPECT_EQ(StatusColorClass("RECEIVED"), "neutral");
  EXPECT_EQ(StatusColorClass("UNKNOWN"), "neutral");
  EXPECT_EQ(StatusColorClass("other"), "neutral");
}

TEST(RenderHtmlPage, JobPageHeadingStatusLineAllowAndJsonLink) {
  const std::string page =
      RenderHtmlPage(DetailPage(JobDocument(12, "STARTED")));
  EXPECT_THAT(page, HasSubstr("<!DOCTYPE html>"));
  EXPECT_THAT(page, HasSubstr("<title>Job 12 &middot; Jobline API</title>"));
  EXPECT_THAT(page, HasSubstr("<h1>Job 12</h1>"));
  EXPECT_THAT(page,
              HasSubstr("<a href=\"http://localhost:8000/api/v2/\">API "
                        "root</a> / <a href=\"http://localhost:8000/api/v2/"
                        "jobs/\">Job list</a> / <span>Job 12</span>"));
  EXPECT_THAT(page, HasSubstr("<span class=\"request\">GET /api/v2/jobs/12/"
                              "</span>\n<b class=\"status\">HTTP 200 OK</b>"
                              "\n<b>Allow:</b> GET, PUT, PATCH, DELETE\n"
                              "<b>Content-Type:</b> application/json</pre>"));
  EXPECT_THAT(page,
              HasSubstr("<a class=\"format\" "
                        "href=\"/api/v2/jobs/12/?format=json\">JSON</a>"));
  EXPECT_THAT(page, HasSubstr("<p class=\"subtitle\" id=\"job-name\">Nightly "
                              "batch</p>"));
  EXPECT_THAT(page,
              HasSubstr("<span class=\"pill warning\">STARTED</span> <span "
                        "class=\"progress\"><span class=\"bar\" "
                        "style=\"width:50%\"></span></span> <span "
                        "class=\"percent\">50%</span> <span "
                        "class=\"type\">ML pipeline</span>"));
  EXPECT_THAT(page, HasSubstr("function applyDocument(doc)"));
  EXPECT_THAT(page, HasSubstr("\"jobPath\":\"/api/v2/jobs/12/\""));
  EXPECT_THAT(page,
              HasSubstr("\"documentUrl\":\"/api/v2/jobs/12/?format=json\""));
  // The script's copy of the rules, for every status.
  std::string actions;
  std::string colors;
  for (const char* status :
       {"CREATED", "PENDING", "STARTED", "SUCCESS", "FAILURE", "RETRY",
        "REVOKED", "RECEIVED", "CANCELING", "UNKNOWN"}) {
    const JobActionSet set = JobActions(status);
    absl::StrAppend(&actions, actions.empty() ? "" : ",", "\"", status,
                    "\":{\"run\":", set.run ? "true" : "false",
                    ",\"cancel\":", set.cancel ? "true" : "false",
                    ",\"retry\":", set.retry ? "true" : "false", "}");
    absl::StrAppend(&colors, colors.empty() ? "" : ",", "\"", status, "\":\"",
                    StatusColorClass(status), "\"");
  }
  EXPECT_THAT(page,
              HasSubstr(absl::StrCat("\"jobActions\":{", actions,
                                     "},\"statusColors\":{", colors, "}")));
  EXPECT_THAT(page, HasSubstr("\"CREATED\":{\"run\":true,\"cancel\":false,"
                              "\"retry\":false}"));
  // No external assets.
  EXPECT_THAT(page, Not(HasSubstr("<link")));
  EXPECT_THAT(page, Not(HasSubstr("src=")));
}

TEST(RenderHtmlPage, DocumentIsPrettyPrinted) {
  HtmlPageInput input;
  input.verb = "GET";
  input.path = "/api/v2/";
  input.base_url = kBase;
  input.json_body = R"({"jobs":"x","n":[1,2.5,true,null],"e":{},"a":[]})";
  input.allowed_verbs = {"GET"};
  const std::string page = RenderHtmlPage(input);
  EXPECT_THAT(page, HasSubstr("<h1>API root</h1>"));
  EXPECT_THAT(page, HasSubstr("<nav class=\"crumbs\"><span>API root</span>"));
  EXPECT_THAT(page, HasSubstr("<pre class=\"document\" id=\"document\">{\n"
                              "  <span class=\"k\">&quot;jobs&quot;</span>: "
                              "<span class=\"s\">&quot;x&quot;</span>,\n"
                              "  <span class=\"k\">&quot;n&quot;</span>: [\n"
                              "    <span class=\"n\">1</span>,\n"
                              "    <span class=\"n\">2.5</span>,\n"
                              "    <span class=\"l\">true</span>,\n"
                              "    <span class=\"l\">null</span>\n"
                              "  ],\n"
                              "  <span class=\"k\">&quot;e&quot;</span>: {},\n"
                              "  <span class=\"k\">&quot;a&quot;</span>: []\n"
                              "}</pre>"));
}

TEST(RenderHtmlPage, EscapesNamesEverywhere) {
  const std::string name = R"(<script>alert("x")</script> & 'y')";
  const std::string page =
      RenderHtmlPage(DetailPage(JobDocument(7, "CREATED", name)));
  EXPECT_THAT(page, HasSubstr("<p class=\"subtitle\" id=\"job-name\">"
                              "&lt;script&gt;alert(&quot;x&quot;)&lt;/script"
                              "&gt; &amp; &#39;y&#39;</p>"));
  // In the document: JSON-escaped, then HTML-escaped.
  EXPECT_THAT(page, HasSubstr("<span class=\"s\">&quot;&lt;script&gt;alert("
                              "\\&quot;x\\&quot;)&lt;/script&gt; &amp; "
                              "&#39;y&#39;&quot;</span>"));
  // In the script's copy: \u escapes, so nothing can end the element.
  EXPECT_THAT(page, HasSubstr("\"name\":\"\\u003cscript\\u003ealert(\\\"x\\\")"
                              "\\u003c/script\\u003e \\u0026 'y'\""));
  EXPECT_THAT(page, Not(HasSubstr("<script>alert")));
  EXPECT_EQ(Count(page, "<script"), 3);
  EXPECT_EQ(Count(page, "</script>"), 3);
}

TEST(RenderHtmlPage, ScriptEndInAStringCannotCloseTheScriptElement) {
  const std::string page = RenderHtmlPage(DetailPage(
      JobDocument(8, "SUCCESS", "</script><script>alert(1)</script><!--")));
  EXPECT_EQ(Count(page, "</script>"), 3);
  EXPECT_EQ(Count(page, "<!--"), 0);
  EXPECT_THAT(page, HasSubstr("\\u003c/script\\u003e\\u003cscript\\u003e"
                              "alert(1)\\u003c/script\\u003e\\u003c!--"));
}

TEST(RenderHtmlPage, HttpUrlStringsAreLinksAndOthersAreNot) {
  Json job = JobDocument(12, "SUCCESS");
  job["result"] = {
      {"page", "https://example.org/api/v2/jobs/?limit=10&offset=20"},
      {"upper", "HTTP://EXAMPLE.ORG/"},
      {"script", "javascript:alert(1)"},
      {"bare", "http://"},
      {"spaced", "http://a b"},
      {"quoted", "http://x/\"onmouseover=\"alert(1)"},
  };
  const std::string page = RenderHtmlPage(DetailPage(job));
  EXPECT_THAT(page, HasSubstr("<span class=\"k\">&quot;details&quot;</span>: "
                              "<span class=\"s\">\"<a href=\"http://localhost"
                              ":8000/api/v2/jobs/12/\">http://localhost:8000"
                              "/api/v2/jobs/12/</a>\"</span>"));
  EXPECT_THAT(page, HasSubstr("<a href=\"http://localhost:8000/api/v2/"
                              "projects/16/\">http://localhost:8000/api/v2/"
                              "projects/16/</a>"));
  EXPECT_THAT(page, HasSubstr("<span class=\"s\">\"<a href=\"https://"
                              "example.org/api/v2/jobs/?limit=10&amp;offset="
                              "20\">https://example.org/api/v2/jobs/?limit=10"
                              "&amp;offset=20</a>\"</span>"));
  EXPECT_THAT(page, HasSubstr("<a href=\"HTTP://EXAMPLE.ORG/\">"));
  EXPECT_THAT(page, HasSubstr("<span class=\"s\">&quot;javascript:alert(1)"
                              "&quot;</span>"));
  EXPECT_THAT(page, HasSubstr("<span class=\"s\">&quot;http://&quot;</span>"));
  EXPECT_THAT(page,
              HasSubstr("<span class=\"s\">&quot;http://a b&quot;</span>"));
  EXPECT_THAT(page, HasSubstr("<a href=\"http://x/&quot;onmouseover=&quot;"
                              "alert(1)\">http://x/\\&quot;onmouseover=\\"
                              "&quot;alert(1)</a>"));
  EXPECT_THAT(page, Not(HasSubstr("href=\"javascript")));
}

TEST(RenderHtmlPage, CreatedJobOffersRunAndDelete) {
  const std::string page =
      RenderHtmlPage(DetailPage(JobDocument(1, "CREATED")));
  EXPECT_THAT(page,
              HasSubstr(ActionsDiv(Button("run", "Run") +
                                   Button("delete", "Delete", "btn danger"))));
  EXPECT_THAT(page, Not(HasSubstr("data-action=\"cancel\"")));
  EXPECT_THAT(page, Not(HasSubstr("data-action=\"retry\"")));
}

TEST(RenderHtmlPage, StartedJobOffersCancelAndDelete) {
  const std::string page =
      RenderHtmlPage(DetailPage(JobDocument(2, "STARTED")));
  EXPECT_THAT(page,
              HasSubstr(ActionsDiv(Button("cancel", "Cancel") +
                                   Button("delete", "Delete", "btn danger"))));
  EXPECT_THAT(page, Not(HasSubstr("data-action=\"run\"")));
  EXPECT_THAT(page, Not(HasSubstr("data-action=\"retry\"")));
}

TEST(RenderHtmlPage, SuccessfulJobOffersRetryAndDelete) {
  const std::string page =
      RenderHtmlPage(DetailPage(JobDocument(3, "SUCCESS")));
  EXPECT_THAT(page,
              HasSubstr(ActionsDiv(Button("retry", "Retry") +
                                   Button("delete", "Delete", "btn danger"))));
  EXPECT_THAT(page, HasSubstr("<span class=\"pill success\">SUCCESS</span>"));
}

TEST(RenderHtmlPage, ButtonsNeedThePermissions) {
  // An "unknown" job of a superuser: update and delete, no run (10.3).
  const std::string no_run = RenderHtmlPage(
      DetailPage(JobDocument(4, "CREATED", "x", {"update", "delete"})));
  EXPECT_THAT(no_run,
              HasSubstr(ActionsDiv(Button("delete", "Delete", "btn danger"))));

  const std::string nothing =
      RenderHtmlPage(DetailPage(JobDocument(5, "SUCCESS", "x", {})));
  EXPECT_THAT(nothing, HasSubstr(ActionsDiv("")));
  EXPECT_THAT(nothing, Not(HasSubstr("id=\"edit-form\"")));

  // Delete also needs DELETE on the path.
  HtmlPageInput input = DetailPage(JobDocument(6, "CREATED"));
  input.allowed_verbs = {"GET", "PUT", "PATCH"};
  EXPECT_THAT(RenderHtmlPage(input),
              HasSubstr(ActionsDiv(Button("run", "Run"))));
}

TEST(RenderHtmlPage, EditFormHoldsTheWritableFields) {
  Json job = JobDocument(12, "CREATED", "Edit me");
  job["pipeline"] = {{"id", 2}, {"name", "Moth detector"}};
  const std::string page = RenderHtmlPage(DetailPage(job));
  EXPECT_THAT(page,
              HasSubstr("<details class=\"panel\" "
                        "id=\"edit-form\"><summary>Edit this job</summary>"));
  EXPECT_THAT(page,
              HasSubstr("<form data-url=\"/api/v2/jobs/12/\"><textarea "
                        "name=\"body\" rows=\"12\" spellcheck=\"false\">{\n"
                        "  &quot;name&quot;: &quot;Edit me&quot;,\n"
                        "  &quot;delay&quot;: 0,\n"
                        "  &quot;limit&quot;: null,\n"
                        "  &quot;shuffle&quot;: true,\n"
                        "  &quot;project_id&quot;: 16,\n"
                        "  &quot;deployment_id&quot;: null,\n"
                        "  &quot;source_image_collection_id&quot;: null,\n"
                        "  &quot;source_image_single_id&quot;: null,\n"
                        "  &quot;pipeline_id&quot;: 2,\n"
                        "  &quot;job_type_key&quot;: &quot;ml&quot;\n"
                        "}</textarea>"));
  EXPECT_THAT(page, HasSubstr("<button type=\"button\" class=\"btn\" "
                              "data-method=\"PUT\">PUT</button><button "
                              "type=\"button\" class=\"btn\" "
                              "data-method=\"PATCH\">PATCH</button>"));
  EXPECT_THAT(page, HasSubstr("window.confirm("));
}

Json ListDocument(const Json& previous, const Json& next) {
  Json list = Json::object();
  list["count"] = 25;
  list["next"] = next;
  list["previous"] = previous;
  list["results"] = {JobDocument(12, "FAILURE", "<b>bold</b>"),
                     JobDocument(11, "CREATED")};
  list["user_permissions"] = {"create"};
  return list;
}

HtmlPageInput ListPage(const Json& list, const std::string& raw_query) {
  HtmlPageInput input;
  input.verb = "GET";
  input.path = "/api/v2/jobs/";
  input.raw_query = raw_query;
  input.base_url = kBase;
  input.json_body = list.dump();
  input.allowed_verbs = {"GET", "POST"};
  return input;
}

TEST(RenderHtmlPage, ListPageHasThePaginationLinksOfTheDocument) {
  const std::string page = RenderHtmlPage(
      ListPage(ListDocument("http://localhost:8000/api/v2/jobs/?limit=10",
                            "http://localhost:8000/api/v2/jobs/"
                            "?limit=10&offset=20"),
               "limit=10&offset=10&format=api"));
  EXPECT_THAT(page, HasSubstr("<h1>Job list</h1>"));
  EXPECT_THAT(page,
              HasSubstr("<nav class=\"pager\"><a rel=\"prev\" "
                        "href=\"http://localhost:8000/api/v2/jobs/?limit=10\">"
                        "&laquo; Previous</a> <span class=\"count\">25 in "
                        "all</span> <a rel=\"next\" href=\"http://localhost:"
                        "8000/api/v2/jobs/?limit=10&amp;offset=20\">Next "
                        "&raquo;</a></nav>"));
  EXPECT_THAT(page, HasSubstr("href=\"/api/v2/jobs/?limit=10&amp;offset=10&amp;"
                              "format=json\">JSON</a>"));
  EXPECT_THAT(page, HasSubstr("\"documentUrl\":\"/api/v2/jobs/?limit=10"
                              "\\u0026offset=10\\u0026format=json\""));
  EXPECT_THAT(page, HasSubstr("<tr><td><a href=\"http://localhost:8000/api/v2/"
                              "jobs/12/\">12</a></td><td>&lt;b&gt;bold&lt;/b"
                              "&gt;</td><td>ML pipeline</td><td><span "
                              "class=\"pill error\">FAILURE</span></td><td>50"
                              "%</td><td></td></tr>"));
  // Buttons belong to a job page, not to the list.
  EXPECT_THAT(page, Not(HasSubstr("id=\"actions\"")));
}

TEST(RenderHtmlPage, FirstAndLastPagesGreyOutTheMissingLink) {
  const std::string first = RenderHtmlPage(
      ListPage(ListDocument(nullptr,
                            "http://localhost:8000/api/v2/jobs/?limit=10"
                            "&offset=10"),
               ""));
  EXPECT_THAT(first, HasSubstr("<nav class=\"pager\"><span class=\"off\">"
                               "&laquo; Previous</span> "));
  EXPECT_THAT(first, HasSubstr("href=\"/api/v2/jobs/?format=json\">JSON</a>"));

  const std::string last = RenderHtmlPage(
      ListPage(ListDocument("javascript:alert(1)", nullptr), "offset=20"));
  EXPECT_THAT(last, HasSubstr("<nav class=\"pager\"><span class=\"off\">"
                              "&laquo; Previous</span> <span class=\"count\">"
                              "25 in all</span> <span class=\"off\">Next "
                              "&raquo;</span></nav>"));
}

TEST(RenderHtmlPage, ListPageHasTheCreateForm) {
  const std::string page =
      RenderHtmlPage(ListPage(ListDocument(nullptr, nullptr), ""));
  EXPECT_THAT(page,
              HasSubstr("<form data-url=\"/api/v2/jobs/\"><textarea "
                        "name=\"body\" rows=\"12\" spellcheck=\"false\">{\n"
                        "  &quot;name&quot;: &quot;&quot;,\n"
                        "  &quot;delay&quot;: 0,\n"
                        "  &quot;project_id&quot;: 16,\n"
                        "  &quot;job_type_key&quot;: &quot;ml&quot;,\n"
                        "  &quot;pipeline_id&quot;: null,\n"
                        "  &quot;source_image_collection_id&quot;: null\n"
                        "}</textarea><div class=\"form-row\"><label><input "
                        "type=\"checkbox\" name=\"start_now\"> "
                        "<code>start_now</code>: run it at once</label>"
                        "<button type=\"button\" class=\"btn\" "
                        "data-method=\"POST\">POST</button></div>"));
  EXPECT_THAT(page, HasSubstr("\"Content-Type\"] = \"application/json\""));

  // Without "create" in the list's permissions, or without POST: no form.
  Json list = ListDocument(nullptr, nullptr);
  list["user_permissions"] = Json::array();
  EXPECT_THAT(RenderHtmlPage(ListPage(list, "")),
              Not(HasSubstr("id=\"create-form\"")));
  HtmlPageInput get_only = ListPage(ListDocument(nullptr, nullptr), "");
  get_only.allowed_verbs = {"GET"};
  EXPECT_THAT(RenderHtmlPage(get_only), Not(HasSubstr("id=\"create-form\"")));
}

TEST(RenderHtmlPage, NoContentPage) {
  HtmlPageInput input;
  input.verb = "DELETE";
  input.path = "/api/v2/jobs/12/";
  input.base_url = kBase;
  input.status = 204;
  input.allowed_verbs = {"GET", "PUT", "PATCH", "DELETE"};
  const std::string page = RenderHtmlPage(input);
  EXPECT_THAT(page, HasSubstr("<h1>Job 12</h1>"));
  EXPECT_THAT(page,
              HasSubstr("<span class=\"request\">DELETE /api/v2/jobs/12/</span>"
                        "\n<b class=\"status\">HTTP 204 No Content</b>\n"
                        "<b>Allow:</b> GET, PUT, PATCH, DELETE</pre>"));
  EXPECT_THAT(page, HasSubstr("<pre class=\"document\" id=\"document\"><span "
                              "class=\"l\">No content.</span></pre>"));
  EXPECT_THAT(page, HasSubstr("<script type=\"application/json\" "
                              "id=\"page-document\">null</script>"));
  EXPECT_THAT(page, Not(HasSubstr("Content-Type:</b>")));
  EXPECT_THAT(page, Not(HasSubstr("id=\"actions\"")));
}

TEST(RenderHtmlPage, ErrorPageShowsTheErrorBody) {
  HtmlPageInput input;
  input.verb = "GET";
  input.path = "/api/v2/jobs/99/";
  input.base_url = kBase;
  input.status = 404;
  input.json_body = R"({"detail":"Not found."})";
  input.allowed_verbs = {"GET", "PUT", "PATCH", "DELETE"};
  const std::string page = RenderHtmlPage(input);
  EXPECT_THAT(page, HasSubstr("<title>Job 99 \u2014 Not Found &middot; Jobline "
                              "API</title>"));
  EXPECT_THAT(page, HasSubstr("<h1>Job 99 \u2014 Not Found</h1>"));
  EXPECT_THAT(page, HasSubstr("<p class=\"error-message\">Not found.</p>"));
  EXPECT_THAT(page, HasSubstr("<div class=\"response failed\">"));
  EXPECT_THAT(page, HasSubstr("<b class=\"status\">HTTP 404 Not Found</b>"));
  EXPECT_THAT(page, HasSubstr("<pre class=\"document\" id=\"document\">{\n"
                              "  <span class=\"k\">&quot;detail&quot;</span>: "
                              "<span class=\"s\">&quot;Not found.&quot;</span>"
                              "\n}</pre>"));
  EXPECT_THAT(page, Not(HasSubstr("id=\"edit-form\"")));
}

TEST(RenderHtmlPage, ErrorMessagesAsTheUiShowsThem) {
  HtmlPageInput input;
  input.verb = "POST";
  input.path = "/api/v2/jobs/";
  input.base_url = kBase;
  input.status = 400;
  input.json_body = R"({"name":["This field may not be blank."],)"
                    R"("delay":["A valid integer is required."]})";
  EXPECT_THAT(RenderHtmlPage(input),
              HasSubstr("<p class=\"error-message\">name: This field may not "
                        "be blank.; delay: A valid integer is required.</p>"));
  EXPECT_THAT(RenderHtmlPage(input),
              HasSubstr("<h1>Job list \u2014 Bad Request</h1>"));

  input.path = "/api/v2/jobs/3/run/";
  input.json_body = R"(["Job 3 is PENDING & cannot be run."])";
  EXPECT_THAT(RenderHtmlPage(input),
              HasSubstr("<p class=\"error-message\">Job 3 is PENDING &amp; "
                        "cannot be run.</p>"));
  EXPECT_THAT(RenderHtmlPage(input),
              HasSubstr("<h1>Job 3: run \u2014 Bad Request</h1>"));

  input.json_body = R"({"non_field_errors":["Expected a dictionary."]})";
  EXPECT_THAT(RenderHtmlPage(input),
              HasSubstr("<p class=\"error-message\">Expected a "
                        "dictionary.</p>"));
}

TEST(RenderHtmlPage, BodyThatIsNotJsonIsShownAsText) {
  HtmlPageInput input;
  input.verb = "GET";
  input.path = "/api/v2/jobs/";
  input.base_url = kBase;
  input.status = 500;
  input.json_body = "<b>Server Error</b>";
  const std::string page = RenderHtmlPage(input);
  EXPECT_THAT(page, HasSubstr("<pre class=\"document\" id=\"document\">"
                              "&lt;b&gt;Server Error&lt;/b&gt;</pre>"));
  EXPECT_THAT(page,
              HasSubstr("<h1>Job list \u2014 Internal Server Error</h1>"));
  EXPECT_THAT(page, HasSubstr("id=\"page-document\">null</script>"));
}

TEST(RenderHtmlPage, FormatSuffixNamesTheSlashedPath) {
  HtmlPageInput input = DetailPage(JobDocument(12, "CREATED"));
  input.path = "/api/v2/jobs/12.api";
  const std::string page = RenderHtmlPage(input);
  EXPECT_THAT(page, HasSubstr("<h1>Job 12</h1>"));
  EXPECT_THAT(page, HasSubstr("href=\"/api/v2/jobs/12/?format=json\">JSON"));
  EXPECT_THAT(page, HasSubstr("\"jobPath\":\"/api/v2/jobs/12/\""));
  EXPECT_THAT(page, HasSubstr("<span class=\"request\">GET "
                              "/api/v2/jobs/12.api</span>"));

  HtmlPageInput list = ListPage(ListDocument(nullptr, nullptr), "");
  list.path = "/api/v2/jobs.api";
  EXPECT_THAT(RenderHtmlPage(list), HasSubstr("<h1>Job list</h1>"));
}

TEST(RenderHtmlPage, TitlesOfOtherResources) {
  HtmlPageInput input;
  input.verb = "GET";
  input.base_url = kBase;
  input.json_body = R"({"id":111,"name":"Random 1000"})";
  input.path = "/api/v2/captures/collections/111/";
  const std::string collection = RenderHtmlPage(input);
  EXPECT_THAT(collection, HasSubstr("<h1>Collection 111</h1>"));
  EXPECT_THAT(collection,
              HasSubstr("<a href=\"http://localhost:8000/api/v2/captures/"
                        "collections/\">Collection list</a> / <span>"
                        "Collection 111</span>"));
  // Not a job: no summary, no buttons.
  EXPECT_THAT(collection, Not(HasSubstr("id=\"summary\"")));

  input.path = "/api/v2/ml/pipelines/2/";
  EXPECT_THAT(RenderHtmlPage(input), HasSubstr("<h1>Pipeline 2</h1>"));
  input.path = "/api/v2/data_exports/";
  input.json_body = R"({"count":0,"next":null,"previous":null,"results":[]})";
  const std::string exports = RenderHtmlPage(input);
  EXPECT_THAT(exports, HasSubstr("<h1>Data export list</h1>"));
  EXPECT_THAT(exports, HasSubstr("<p class=\"none\">No results.</p>"));
}

TEST(RenderHtmlPage, ActionAnswerActsOnTheJob) {
  HtmlPageInput input = DetailPage(JobDocument(12, "PENDING"));
  input.verb = "POST";
  input.path = "/api/v2/jobs/12/run/";
  input.allowed_verbs = {"POST"};
  const std::string page = RenderHtmlPage(input);
  EXPECT_THAT(page, HasSubstr("<h1>Job 12: run</h1>"));
  EXPECT_THAT(page, HasSubstr("\"jobPath\":\"/api/v2/jobs/12/\""));
  EXPECT_THAT(page,
              HasSubstr("\"documentUrl\":\"/api/v2/jobs/12/?format=json\""));
  EXPECT_THAT(page, HasSubstr(ActionsDiv(Button("cancel", "Cancel"))));
  EXPECT_THAT(page, Not(HasSubstr("id=\"edit-form\"")));

  // The 201 of a create, answered on the list.
  input.path = "/api/v2/jobs/";
  input.status = 201;
  const std::string created = RenderHtmlPage(input);
  EXPECT_THAT(created, HasSubstr("<b class=\"status\">HTTP 201 Created</b>"));
  EXPECT_THAT(created, HasSubstr("\"jobPath\":\"/api/v2/jobs/12/\""));
}

TEST(RenderHtmlPage, JobPageFollowsTheJobLive) {
  const std::string page =
      RenderHtmlPage(DetailPage(JobDocument(12, "STARTED")));
  EXPECT_THAT(page, HasSubstr("\"progressUrl\":\"/api/v2/jobs/12/progress/"
                              "?logs_limit=1000\""));
  EXPECT_THAT(page, HasSubstr("new EventSource(CONFIG.progressUrl)"));
  EXPECT_THAT(page, HasSubstr("source.addEventListener(\"end\""));

  // The same job through a format suffix.
  HtmlPageInput suffixed = DetailPage(JobDocument(12, "STARTED"));
  suffixed.path = "/api/v2/jobs/12.api";
  EXPECT_THAT(RenderHtmlPage(suffixed),
              HasSubstr("\"progressUrl\":\"/api/v2/jobs/12/progress/"
                        "?logs_limit=1000\""));

  // Not the answer of an action, a list, another record or an error.
  HtmlPageInput action = DetailPage(JobDocument(12, "PENDING"));
  action.verb = "POST";
  action.path = "/api/v2/jobs/12/run/";
  EXPECT_THAT(RenderHtmlPage(action), HasSubstr("\"progressUrl\":\"\""));
  HtmlPageInput list;
  list.verb = "GET";
  list.path = "/api/v2/jobs/";
  list.base_url = kBase;
  list.json_body = Json({{"count", 1},
                         {"next", nullptr},
                         {"previous", nullptr},
                         {"results", Json::array({JobDocument(12, "PENDING")})},
                         {"user_permissions", Json::array({"create"})}})
                       .dump();
  EXPECT_THAT(RenderHtmlPage(list), HasSubstr("\"progressUrl\":\"\""));
  HtmlPageInput missing = DetailPage(JobDocument(12, "PENDING"));
  missing.status = 404;
  missing.json_body = R"({"detail":"Not found."})";
  EXPECT_THAT(RenderHtmlPage(missing), HasSubstr("\"progressUrl\":\"\""));
}

}  // namespace
}  // namespace rest
}  // namespace jobline
