#include "client/json_shape.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "jobline/v2/catalog.pb.h"

namespace jobline {
namespace {

using Json = nlohmann::ordered_json;

// "path: message" of the first error of `text` as a catalogue, or "ok".
std::string CatalogError(const std::string& text) {
  const std::optional<JsonShapeError> error =
      CheckJsonShape(v2::Catalog::descriptor(), Json::parse(text));
  return error ? error->path + ": " + error->message : "ok";
}

TEST(CheckJsonShape, AcceptsWhatTheParserReadsAsMeant) {
  EXPECT_EQ(CatalogError(R"({})"), "ok");
  EXPECT_EQ(CatalogError(R"({"projects": [], "deployments": null})"), "ok");
  EXPECT_EQ(CatalogError(R"({"projects": [{"id": 16, "name": "Aarhus",
      "user_permissions": ["update"]}], "unknown": [[1]]})"),
            "ok");
  // Integers as numbers, whole floats or strings of digits; a null
  // singular field; a timestamp left to the parser.
  EXPECT_EQ(CatalogError(R"({"captures": [{"id": "7", "width": 2.0,
      "height": null, "deployment_id": -1,
      "timestamp": "2025-11-12T19:00:59Z"}]})"),
            "ok");
  // JSON names too.
  EXPECT_EQ(CatalogError(R"({"captureCollections": [{"projectId": 16}]})"),
            "ok");
}

TEST(CheckJsonShape, NamesTheFirstMemberThatDoesNotFit) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"projects": [[{"id": 1}]]})",
       "projects[0]: Invalid data. Expected a dictionary, but got list."},
      {R"({"projects": [{"id": 1}, null]})",
       "projects[1]: This field may not be null."},
      {R"({"captures": {"id": 5}})",
       "captures: Expected a list of items but got type \"dict\"."},
      {R"({"projects": [{"id": "abc"}]})",
       "projects[0].id: A valid integer is required."},
      {R"({"projects": [{"id": 1.5}]})",
       "projects[0].id: A valid integer is required."},
      {R"({"projects": [{"id": 1, "name": ["a"]}]})",
       "projects[0].name: Not a valid string."},
      {R"({"projects": [{"id": 1, "name": {"a": 1}}]})",
       "projects[0].name: Not a valid string."},
      {R"({"projects": [{"id": 1, "user_permissions": "update"}]})",
       "projects[0].user_permissions: Expected a list of items but got type "
       "\"str\"."},
      {R"({"projects": [{"id": 1, "user_permissions": [null]}]})",
       "projects[0].user_permissions[0]: This field may not be null."},
      {R"({"projects": [{"id": 1, "user_permissions": [["a"]]}]})",
       "projects[0].user_permissions[0]: Not a valid string."},
      {R"({"captureCollections": [{"id": 2, "projectId": true}]})",
       "capture_collections[0].project_id: A valid integer is required."},
  };
  for (const auto& [text, expected] : cases) {
    EXPECT_EQ(CatalogError(text), expected) << text;
  }
}

TEST(JsonNestedDeeperThan, CountsBracketsOutsideStrings) {
  EXPECT_FALSE(JsonNestedDeeperThan("[[[]]]", 3));
  EXPECT_TRUE(JsonNestedDeeperThan("[[[[]]]]", 3));
  EXPECT_FALSE(JsonNestedDeeperThan(R"({"a": "[[[[[[", "b": [1]})", 3));
  EXPECT_FALSE(JsonNestedDeeperThan(R"(["\"[[[[[["])", 1));
  EXPECT_TRUE(JsonNestedDeeperThan(std::string(500000, '['), 100));
}

TEST(IsDecimalInteger, TakesSignedRunsOfDigitsOnly) {
  EXPECT_TRUE(IsDecimalInteger("12"));
  EXPECT_TRUE(IsDecimalInteger("-3"));
  EXPECT_TRUE(IsDecimalInteger("+7"));
  EXPECT_TRUE(IsDecimalInteger("99999999999999999999"));
  EXPECT_FALSE(IsDecimalInteger(""));
  EXPECT_FALSE(IsDecimalInteger("-"));
  EXPECT_FALSE(IsDecimalInteger("1.5"));
  EXPECT_FALSE(IsDecimalInteger(" 1"));
  EXPECT_FALSE(IsDecimalInteger("1e3"));
  EXPECT_FALSE(IsDecimalInteger("--1"));
}

TEST(PythonTypeName, NamesEachJsonType) {
  EXPECT_EQ(PythonTypeName(Json::object().type()), "dict");
  EXPECT_EQ(PythonTypeName(Json::array().type()), "list");
  EXPECT_EQ(PythonTypeName(Json("x").type()), "str");
  EXPECT_EQ(PythonTypeName(Json(true).type()), "bool");
  EXPECT_EQ(PythonTypeName(Json(1.5).type()), "float");
  EXPECT_EQ(PythonTypeName(Json(3).type()), "int");
  EXPECT_EQ(PythonTypeName(Json(nullptr).type()), "NoneType");
}

}  // namespace
}  // namespace jobline
