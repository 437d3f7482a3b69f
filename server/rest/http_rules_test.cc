#include "server/rest/http_rules.h"

#include <string>
#include <tuple>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace jobline {
namespace rest {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAreArray;

// (verb, template, body, method) of every route of `table`.
std::vector<std::tuple<std::string, std::string, std::string, std::string>>
Rows(const RouteTable& table, const std::string& service_prefix) {
  std::vector<std::tuple<std::string, std::string, std::string, std::string>>
      rows;
  for (const HttpRoute& route : table.routes()) {
    if (route.method_full_name().rfind(service_prefix, 0) != 0) continue;
    rows.emplace_back(route.verb, route.path_template, route.body,
                      route.method_full_name());
  }
  return rows;
}

TEST(RouteTable, HasEveryAnnotatedMethodOfJobService) {
  using Row = std::tuple<std::string, std::string, std::string, std::string>;
  const std::string s = "jobline.v2.JobService.";
  EXPECT_THAT(
      Rows(RouteTable::Jobline(), s),
      UnorderedElementsAreArray(std::vector<Row>{
          {"POST", "/api/v2/jobs", "job", s + "CreateJob"},
          {"GET", "/api/v2/jobs/{id}", "", s + "GetJob"},
          {"GET", "/api/v2/jobs", "", s + "ListJobs"},
          {"PUT", "/api/v2/jobs/{id}", "job", s + "UpdateJob"},
          {"PATCH", "/api/v2/jobs/{id}", "job", s + "UpdateJob"},
          {"DELETE", "/api/v2/jobs/{id}", "", s + "DeleteJob"},
          {"POST", "/api/v2/jobs/{id}/run", "", s + "RunJob"},
          {"POST", "/api/v2/jobs/{id}/retry", "", s + "RetryJob"},
          {"POST", "/api/v2/jobs/{id}/cancel", "", s + "CancelJob"},
          {"GET", "/api/v2/jobs/{job_id}/progress", "", s + "WatchProgress"},
      }));
}

TEST(RouteTable, TellsTheStreamingMethod) {
  RouteMatch match;
  ASSERT_TRUE(
      RouteTable::Jobline().Match("GET", "/api/v2/jobs/7/progress", &match));
  EXPECT_EQ(match.route->method_full_name(),
            "jobline.v2.JobService.WatchProgress");
  EXPECT_TRUE(match.route->method->server_streaming());
  EXPECT_THAT(match.variables, ElementsAre(Pair("job_id", "7")));
  ASSERT_TRUE(RouteTable::Jobline().Match("GET", "/api/v2/jobs/7", &match));
  EXPECT_FALSE(match.route->method->server_streaming());
}

TEST(RouteTable, LeavesOutUnannotatedMethods) {
  for (const HttpRoute& route : RouteTable::Jobline().routes()) {
    EXPECT_NE(route.method_full_name(),
              "jobline.v2.CatalogService.SetCollectionCaptures");
  }
}

TEST(RouteTable, HasTheCatalogRecordRoutes) {
  using Row = std::tuple<std::string, std::string, std::string, std::string>;
  const std::string s = "jobline.v2.CatalogService.";
  EXPECT_THAT(
      Rows(RouteTable::Jobline(), s),
      UnorderedElementsAreArray(std::vector<Row>{
          {"POST", "/api/v2/catalog/import", "catalog", s + "ImportCatalog"},
          {"GET", "/api/v2/projects/{id}", "", s + "GetProject"},
          {"GET", "/api/v2/deployments/{id}", "", s + "GetDeployment"},
          {"GET", "/api/v2/captures/collections/{id}", "",
           s + "GetCaptureCollection"},
          {"GET", "/api/v2/captures/{id}", "", s + "GetCapture"},
          {"GET", "/api/v2/ml/pipelines/{id}", "", s + "GetPipeline"},
      }));
}

TEST(RouteTable, MatchBindsPathVariables) {
  RouteMatch match;
  ASSERT_TRUE(RouteTable::Jobline().Match("GET", "/api/v2/jobs/12", &match));
  EXPECT_EQ(match.route->method_full_name(), "jobline.v2.JobService.GetJob");
  EXPECT_THAT(match.variables, ElementsAre(Pair("id", "12")));

  ASSERT_TRUE(
      RouteTable::Jobline().Match("POST", "/api/v2/jobs/7/cancel", &match));
  EXPECT_EQ(match.route->method_full_name(), "jobline.v2.JobService.CancelJob");
  EXPECT_THAT(match.variables, ElementsAre(Pair("id", "7")));

  ASSERT_TRUE(RouteTable::Jobline().Match("GET", "/api/v2/jobs", &match));
  EXPECT_EQ(match.route->method_full_name(), "jobline.v2.JobService.ListJobs");
  EXPECT_THAT(match.variables, IsEmpty());
}

TEST(RouteTable, MatchDecodesVariables) {
  RouteMatch match;
  ASSERT_TRUE(RouteTable::Jobline().Match("GET", "/api/v2/jobs/1%32", &match));
  EXPECT_THAT(match.variables, ElementsAre(Pair("id", "12")));
}

TEST(RouteTable, LiteralSegmentsWinOverVariables) {
  RouteMatch match;
  ASSERT_TRUE(RouteTable::Jobline().Match(
      "GET", "/api/v2/captures/collections/111", &match));
  EXPECT_EQ(match.route->method_full_name(),
            "jobline.v2.CatalogService.GetCaptureCollection");
  ASSERT_TRUE(RouteTable::Jobline().Match("GET", "/api/v2/captures/9", &match));
  EXPECT_EQ(match.route->method_full_name(),
            "jobline.v2.CatalogService.GetCapture");
}

TEST(RouteTable, MatchRefusesOtherVerbsAndPaths) {
  RouteMatch match;
  EXPECT_FALSE(RouteTable::Jobline().Match("POST", "/api/v2/jobs/1", &match));
  EXPECT_FALSE(RouteTable::Jobline().Match("GET", "/api/v2/jobs/1/x", &match));
  EXPECT_FALSE(RouteTable::Jobline().Match("GET", "/api/v2/jobs//", &match));
  EXPECT_FALSE(RouteTable::Jobline().Match("GET", "/api/v2", &match));
  EXPECT_FALSE(RouteTable::Jobline().Match("GET", "", &match));
}

TEST(RouteTable, AllowedVerbsOfAKnownPath) {
  EXPECT_THAT(RouteTable::Jobline().AllowedVerbs("/api/v2/jobs/3"),
              ElementsAre("DELETE", "GET", "PATCH", "PUT"));
  EXPECT_THAT(RouteTable::Jobline().AllowedVerbs("/api/v2/jobs"),
              ElementsAre("GET", "POST"));
  EXPECT_THAT(RouteTable::Jobline().AllowedVerbs("/api/v2/jobs/3/run"),
              ElementsAre("POST"));
  EXPECT_THAT(RouteTable::Jobline().AllowedVerbs("/api/v2/nothing"), IsEmpty());
}

TEST(ParsePathTemplate, LiteralsAndVariables) {
  absl::StatusOr<std::vector<PathSegment>> segments =
      ParsePathTemplate("/api/v2/jobs/{id=*}/run");
  ASSERT_TRUE(segments.ok()) << segments.status();
  ASSERT_EQ(segments->size(), 5);
  EXPECT_FALSE((*segments)[2].is_variable);
  EXPECT_EQ((*segments)[2].text, "jobs");
  EXPECT_TRUE((*segments)[3].is_variable);
  EXPECT_EQ((*segments)[3].text, "id");
}

TEST(ParsePathTemplate, RefusesWhatItDoesNotSupport) {
  for (const char* bad :
       {"api/v2/jobs", "/api/v2/jobs/", "/api/**", "/api/{id=a/*}", "/api/{}",
        "/api//jobs", "/api/jobs:run", "/api/{a.b}"}) {
    EXPECT_FALSE(ParsePathTemplate(bad).ok()) << bad;
  }
}

TEST(RouteTable, FromServicesRefusesAnUnknownService) {
  EXPECT_EQ(
      RouteTable::FromServices({"jobline.v2.NoSuchService"}).status().code(),
      absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace rest
}  // namespace jobline
