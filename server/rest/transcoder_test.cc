#include "server/rest/transcoder.h"

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "jobline/v2/jobs.pb.h"
#include "server/rest/error_mapping.h"
#include "server/rest/http_rules.h"

namespace jobline {
namespace rest {
namespace {

using ::testing::ElementsAre;

TEST(ParseBooleanParam, FollowsSpec66) {
  EXPECT_TRUE(ParseBooleanParam(""));
  for (const char* value : {"true", "True", "1", "yes", "no", "abc", "2"}) {
    EXPECT_TRUE(ParseBooleanParam(value)) << value;
  }
  for (const char* value : {"false", "FALSE", "False", "0"}) {
    EXPECT_FALSE(ParseBooleanParam(value)) << value;
  }
}

TEST(NegotiateRepresentation, AsUpstreamNegotiates) {
  EXPECT_EQ(NegotiateRepresentation(""), Representation::kJson);
  EXPECT_EQ(NegotiateRepresentation("*/*"), Representation::kJson);
  EXPECT_EQ(NegotiateRepresentation("application/json"), Representation::kJson);
  EXPECT_EQ(NegotiateRepresentation("application/*"), Representation::kJson);
  EXPECT_EQ(NegotiateRepresentation("application/json, text/html"),
            Representation::kJson);
  EXPECT_EQ(NegotiateRepresentation("text/html"), Representation::kHtml);
  EXPECT_EQ(NegotiateRepresentation("TEXT/HTML; charset=utf-8"),
            Representation::kHtml);
  EXPECT_EQ(NegotiateRepresentation(
                "text/html,application/xhtml+xml,application/xml;q=0.9,"
                "*/*;q=0.8"),
            Representation::kHtml);
  EXPECT_EQ(NegotiateRepresentation("text/html;q=0.5, application/json"),
            Representation::kJson);
  EXPECT_EQ(NegotiateRepresentation("text/*, */*;q=0.1"),
            Representation::kHtml);
  EXPECT_EQ(NegotiateRepresentation("application/json;q=0, text/html"),
            Representation::kHtml);
  EXPECT_EQ(NegotiateRepresentation("application/xml"), Representation::kNone);
  EXPECT_EQ(NegotiateRepresentation("application/json;q=0"),
            Representation::kNone);
}

// Builds the request of `verb` `path` (no trailing slash) with `query` and
// `body`.
absl::StatusOr<std::unique_ptr<google::protobuf::Message>> Build(
    const std::string& verb, const std::string& path, QueryParams query,
    const std::string& body = "") {
  RouteMatch match;
  if (!RouteTable::Jobline().Match(verb, path, &match)) {
    return absl::NotFoundError("no route");
  }
  HttpRequest request;
  request.verb = verb;
  request.path = path + "/";
  request.query = std::move(query);
  request.body = body;
  request.content_type = "application/json";
  return BuildRequestMessage(match, request, TranscoderOptions());
}

TEST(BuildRequestMessage, PathVariableAndIntegerQuery) {
  auto message = Build("GET", "/api/v2/jobs/12",
                       {{"logs_limit", "5"}, {"project_id", "16"}});
  ASSERT_TRUE(message.ok()) << message.status();
  const auto& request = dynamic_cast<const v2::GetJobRequest&>(**message);
  EXPECT_EQ(request.id(), 12);
  EXPECT_EQ(request.logs_limit(), 5);
  EXPECT_EQ(request.project_id(), 16);
  EXPECT_FALSE(request.has_cutoff_hours());
}

TEST(BuildRequestMessage, PathVariablesWinOverTheQuery) {
  auto message = Build("GET", "/api/v2/jobs/12", {{"id", "13"}});
  ASSERT_TRUE(message.ok()) << message.status();
  EXPECT_EQ(dynamic_cast<const v2::GetJobRequest&>(**message).id(), 12);
}

TEST(BuildRequestMessage, WholeFloatsAreIntegersOthersAreNot) {
  auto whole = Build("POST", "/api/v2/jobs", {}, R"({"delay": 3.0})");
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(dynamic_cast<const v2::CreateJobRequest&>(**whole).job().delay(),
            3);
  // As upstream's IntegerField, a string with a point and zeros is whole.
  auto text = Build("POST", "/api/v2/jobs", {}, R"({"delay": "4.00"})");
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(dynamic_cast<const v2::CreateJobRequest&>(**text).job().delay(), 4);
  for (const char* body :
       {R"({"delay": 3.5})", R"({"delay": 1e300})", R"({"delay": true})",
        R"({"delay": "1.5"})", R"({"delay": ".0"})",
        R"({"delay": 18446744073709551615})"}) {
    auto message = Build("POST", "/api/v2/jobs", {}, body);
    ASSERT_FALSE(message.ok()) << body;
    EXPECT_EQ(ErrorResponse(message.status()).body,
              R"({"delay":["A valid integer is required."]})")
        << body;
  }
}

TEST(BuildRequestMessage, NonIntegerIdIsNotFound) {
  auto message = Build("GET", "/api/v2/jobs/abc", {});
  EXPECT_EQ(message.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ErrorResponse(message.status()).body, R"({"detail":"Not found."})");
}

TEST(BuildRequestMessage, BadIntegerQueryIsAFieldError) {
  auto message = Build("GET", "/api/v2/jobs", {{"project_id", "x"}});
  ASSERT_FALSE(message.ok());
  const HttpResponse response = ErrorResponse(message.status());
  EXPECT_EQ(response.status, 400);
  EXPECT_EQ(response.body,
            R"({"project_id":["A valid integer is required."]})");
  EXPECT_FALSE(Build("GET", "/api/v2/jobs", {{"cutoff_hours", "1.5"}}).ok());
  EXPECT_FALSE(Build("GET", "/api/v2/jobs", {{"project", ""}}).ok());
}

TEST(BuildRequestMessage, LimitAndOffsetAreLenient) {
  auto message = Build("GET", "/api/v2/jobs",
                       {{"limit", "abc"}, {"offset", "-3"}, {"status", "x"}});
  ASSERT_TRUE(message.ok()) << message.status();
  const auto& request = dynamic_cast<const v2::ListJobsRequest&>(**message);
  EXPECT_FALSE(request.has_limit());
  EXPECT_FALSE(request.has_offset());
  EXPECT_EQ(request.status(), "x");

  message = Build("GET", "/api/v2/jobs", {{"limit", "20"}, {"offset", "40"}});
  ASSERT_TRUE(message.ok()) << message.status();
  const auto& paged = dynamic_cast<const v2::ListJobsRequest&>(**message);
  EXPECT_EQ(paged.limit(), 20);
  EXPECT_EQ(paged.offset(), 40);
}

TEST(BuildRequestMessage, BooleanQueryParameters) {
  auto bare = Build("GET", "/api/v2/jobs",
                    {{"ids_only", ""}, {"incomplete_only", "False"}});
  ASSERT_TRUE(bare.ok()) << bare.status();
  const auto& request = dynamic_cast<const v2::ListJobsRequest&>(**bare);
  EXPECT_TRUE(request.ids_only());
  EXPECT_FALSE(request.incomplete_only());

  auto absent = Build("GET", "/api/v2/jobs", {});
  ASSERT_TRUE(absent.ok());
  EXPECT_FALSE(dynamic_cast<const v2::ListJobsRequest&>(**absent).ids_only());
}

TEST(BuildRequestMessage, UnknownQueryParametersAreIgnored) {
  auto message = Build("GET", "/api/v2/jobs",
                       {{"format", "json"}, {"page", "3"}, {"nothing", ""}});
  EXPECT_TRUE(message.ok()) << message.status();
}

TEST(BuildRequestMessage, QueryTextThatIsNotUtf8IsReplaced) {
  auto message =
      Build("GET", "/api/v2/jobs", {{"search", "a\xff\xc3\xa6\xed\xa0\x80z"}});
  ASSERT_TRUE(message.ok()) << message.status();
  // U+FFFD for the stray byte and for each byte of the encoded surrogate;
  // the valid "\xc3\xa6" is kept.
  EXPECT_EQ(dynamic_cast<const v2::ListJobsRequest&>(**message).search(),
            "a\xef\xbf\xbd\xc3\xa6\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdz");
}

TEST(BuildRequestMessage, LastOfRepeatedParametersWins) {
  auto message = Build("GET", "/api/v2/jobs",
                       {{"status", "CREATED"}, {"status", "PENDING"}});
  ASSERT_TRUE(message.ok());
  EXPECT_EQ(dynamic_cast<const v2::ListJobsRequest&>(**message).status(),
            "PENDING");
}

TEST(BuildRequestMessage, CreateBodyAndStartNow) {
  auto message = Build("POST", "/api/v2/jobs", {{"start_now", ""}},
                       R"({"name": "Populate", "project_id": "16",
                           "source_image_collection_id": 111,
                           "job_type_key": "populate_captures_collection",
                           "delay": 0, "shuffle": "false",
                           "status": "SUCCESS", "start_now": false})");
  ASSERT_TRUE(message.ok()) << message.status();
  const auto& request = dynamic_cast<const v2::CreateJobRequest&>(**message);
  EXPECT_TRUE(request.start_now());
  EXPECT_EQ(request.job().name(), "Populate");
  EXPECT_EQ(request.job().project_id(), 16);
  EXPECT_EQ(request.job().source_image_collection_id(), 111);
  EXPECT_EQ(request.job().job_type_key(), "populate_captures_collection");
  ASSERT_TRUE(request.job().has_delay());
  EXPECT_EQ(request.job().delay(), 0);
  ASSERT_TRUE(request.job().has_shuffle());
  EXPECT_FALSE(request.job().shuffle());
  EXPECT_FALSE(request.job().has_limit());
}

TEST(BuildRequestMessage, NullClearsAnOptionalField) {
  auto message = Build("POST", "/api/v2/jobs", {},
                       R"({"name": "x", "pipeline_id": null})");
  ASSERT_TRUE(message.ok()) << message.status();
  EXPECT_FALSE(dynamic_cast<const v2::CreateJobRequest&>(**message)
                   .job()
                   .has_pipeline_id());
}

TEST(BuildRequestMessage, BodyTypeErrorsAreFieldErrors) {
  auto delay = Build("POST", "/api/v2/jobs", {}, R"({"delay": "x"})");
  EXPECT_EQ(ErrorResponse(delay.status()).body,
            R"({"delay":["A valid integer is required."]})");
  auto shuffle = Build("POST", "/api/v2/jobs", {}, R"({"shuffle": "maybe"})");
  EXPECT_EQ(ErrorResponse(shuffle.status()).body,
            R"({"shuffle":["Must be a valid boolean."]})");
  auto name = Build("POST", "/api/v2/jobs", {}, R"({"name": ["a"]})");
  EXPECT_EQ(ErrorResponse(name.status()).body,
            R"({"name":["Not a valid string."]})");
  auto list = Build("POST", "/api/v2/jobs", {}, R"([1, 2])");
  EXPECT_EQ(ErrorResponse(list.status()).body,
            R"({"non_field_errors":["Invalid data. Expected a dictionary, )"
            R"(but got list."]})");
}

// A list field takes a list of its element type, and a record's members
// fit their fields: protobuf's parser would flatten nested lists, skip
// null elements and take an object for a list of one, so that such a body
// imported nothing and answered 200.
TEST(BuildRequestMessage, ListFieldsTakeListsOfTheirElementType) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"projects": [[[]]]})",
       R"({"projects[0]":["Invalid data. Expected a dictionary, but got )"
       R"(list."]})"},
      {R"({"projects": [[]]})",
       R"({"projects[0]":["Invalid data. Expected a dictionary, but got )"
       R"(list."]})"},
      {R"({"projects": [null]})",
       R"({"projects[0]":["This field may not be null."]})"},
      {R"({"projects": [{"id": 1}, 7]})",
       R"({"projects[1]":["Invalid data. Expected a dictionary, but got )"
       R"(int."]})"},
      {R"({"projects": {"id": 1}})",
       R"({"projects":["Expected a list of items but got type \"dict\"."]})"},
      {R"({"projects": "p"})",
       R"({"projects":["Expected a list of items but got type \"str\"."]})"},
      // Inside the records too.
      {R"({"projects": [{"id": "abc", "name": "x"}]})",
       R"({"projects[0].id":["A valid integer is required."]})"},
      {R"({"projects": [{"id": 1, "name": ["a"]}]})",
       R"({"projects[0].name":["Not a valid string."]})"},
      {R"({"projects": [{"id": 1, "user_permissions": "update"}]})",
       R"({"projects[0].user_permissions":["Expected a list of items but )"
       R"(got type \"str\"."]})"},
      {R"({"projects": [{"id": 1, "user_permissions": [["a"]]}]})",
       R"({"projects[0].user_permissions[0]":["Not a valid string."]})"},
  };
  for (const auto& [body, expected] : cases) {
    auto message = Build("POST", "/api/v2/catalog/import", {}, body);
    ASSERT_FALSE(message.ok()) << body;
    const HttpResponse response = ErrorResponse(message.status());
    EXPECT_EQ(response.status, 400) << body;
    EXPECT_EQ(response.body, expected) << body;
  }
  auto empty = Build("POST", "/api/v2/catalog/import", {},
                     R"({"projects": [], "deployments": null})");
  EXPECT_TRUE(empty.ok()) << empty.status();
  auto two = Build("POST", "/api/v2/catalog/import", {},
                   R"({"projects": [{"id": 1}, {"id": 2}]})");
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ((*two)->ShortDebugString(),
            "catalog { projects { id: 1 } projects { id: 2 } }");
}

TEST(BuildRequestMessage, EveryBodyTypeErrorIsReportedInFieldOrder) {
  auto message = Build("POST", "/api/v2/jobs", {},
                       R"({"shuffle": "maybe", "delay": "x", "name": ["a"],
                           "project_id": 16})");
  ASSERT_FALSE(message.ok());
  const HttpResponse response = ErrorResponse(message.status());
  EXPECT_EQ(response.status, 400);
  EXPECT_EQ(response.body, R"({"name":["Not a valid string."],)"
                           R"("delay":["A valid integer is required."],)"
                           R"("shuffle":["Must be a valid boolean."]})");
}

TEST(BuildRequestMessage, NullIsRefusedWhereTheFieldTakesNone) {
  auto message = Build("POST", "/api/v2/jobs", {},
                       R"({"job_type_key": null, "shuffle": null,
                           "project_id": null, "delay": null, "name": null,
                           "limit": null, "pipeline_id": null})");
  ASSERT_FALSE(message.ok());
  EXPECT_EQ(ErrorResponse(message.status()).body,
            R"({"name":["This field may not be null."],)"
            R"("delay":["This field may not be null."],)"
            R"("project_id":["This field may not be null."],)"
            R"("shuffle":["This field may not be null."],)"
            R"("job_type_key":["This field may not be null."]})");
  auto patch = Build("PATCH", "/api/v2/jobs/4", {}, R"({"name": null})");
  ASSERT_FALSE(patch.ok());
  EXPECT_EQ(ErrorResponse(patch.status()).body,
            R"({"name":["This field may not be null."]})");
}

// Builds `verb` `path` with a form body of `fields`.
absl::StatusOr<std::unique_ptr<google::protobuf::Message>> BuildForm(
    const std::string& verb, const std::string& path, QueryParams fields) {
  RouteMatch match;
  if (!RouteTable::Jobline().Match(verb, path, &match)) {
    return absl::NotFoundError("no route");
  }
  HttpRequest request;
  request.verb = verb;
  request.path = path + "/";
  request.content_type = "application/x-www-form-urlencoded";
  request.has_form = true;
  request.form = std::move(fields);
  return BuildRequestMessage(match, request, TranscoderOptions());
}

TEST(BuildRequestMessage, EmptyFormValuesOfOptionalFieldsTakeTheDefault) {
  auto message = BuildForm("POST", "/api/v2/jobs",
                           {{"name", "x"},
                            {"project_id", "16"},
                            {"delay", ""},
                            {"shuffle", ""},
                            {"limit", ""}});
  ASSERT_TRUE(message.ok()) << message.status();
  const auto& job = dynamic_cast<const v2::CreateJobRequest&>(**message).job();
  EXPECT_FALSE(job.has_delay());
  // Sent empty is "not given" (the default, true, applies), where a box
  // not sent at all is an unticked checkbox.
  EXPECT_FALSE(job.has_shuffle());
  EXPECT_FALSE(job.has_limit());

  auto unticked =
      BuildForm("POST", "/api/v2/jobs", {{"name", "x"}, {"project_id", "16"}});
  ASSERT_TRUE(unticked.ok()) << unticked.status();
  const auto& unticked_job =
      dynamic_cast<const v2::CreateJobRequest&>(**unticked).job();
  ASSERT_TRUE(unticked_job.has_shuffle());
  EXPECT_FALSE(unticked_job.shuffle());

  auto no_project =
      BuildForm("POST", "/api/v2/jobs", {{"name", "x"}, {"project_id", ""}});
  ASSERT_FALSE(no_project.ok());
  EXPECT_EQ(ErrorResponse(no_project.status()).body,
            R"({"project_id":["This field may not be null."]})");
}

TEST(BuildRequestMessage, TextThatIsNotJsonIsAParseError) {
  for (const char* body : {"{", "{\"name\": }", "name=x", "\"\xff\""}) {
    auto message = Build("POST", "/api/v2/jobs", {}, body);
    ASSERT_FALSE(message.ok()) << body;
    const HttpResponse response = ErrorResponse(message.status());
    EXPECT_EQ(response.status, 400) << body;
    EXPECT_THAT(response.body,
                ::testing::StartsWith(R"({"detail":"JSON parse error - )"))
        << body;
  }
}

TEST(BuildRequestMessage, PatchMasksTheBodyMembers) {
  auto message = Build("PATCH", "/api/v2/jobs/4", {},
                       R"({"delay": 3, "name": "n", "unknown": 1})");
  ASSERT_TRUE(message.ok()) << message.status();
  const auto& request = dynamic_cast<const v2::UpdateJobRequest&>(**message);
  EXPECT_EQ(request.id(), 4);
  ASSERT_TRUE(request.has_update_mask());
  EXPECT_THAT(request.update_mask().paths(), ElementsAre("delay", "name"));

  auto put = Build("PUT", "/api/v2/jobs/4", {}, R"({"delay": 3})");
  ASSERT_TRUE(put.ok());
  EXPECT_FALSE(
      dynamic_cast<const v2::UpdateJobRequest&>(**put).has_update_mask());

  auto empty_patch = Build("PATCH", "/api/v2/jobs/4", {}, "");
  ASSERT_TRUE(empty_patch.ok());
  EXPECT_TRUE(dynamic_cast<const v2::UpdateJobRequest&>(**empty_patch)
                  .has_update_mask());
}

}  // namespace
}  // namespace rest
}  // namespace jobline
