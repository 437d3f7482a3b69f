#include "client/catalog_file.h"

#include <cstdlib>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace jobline {
namespace {

// Writes `text` to a new file of the test's temporary folder; its path.
std::string WriteFile(const std::string& name, const std::string& text) {
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path =
      std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

TEST(ReadCatalogFile, ReadsACatalogue) {
  const std::string path =
      WriteFile("good.json", R"({"projects": [{"id": 16, "name": "Aarhus"}],
          "deployments": [{"id": 60, "name": "Station", "project_id": 16}]})");
  absl::StatusOr<v2::Catalog> catalog = ReadCatalogFile(path);
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  EXPECT_EQ(catalog->ShortDebugString(),
            R"(projects { id: 16 name: "Aarhus" } deployments { id: 60 )"
            R"(name: "Station" project_id: 16 })");
}

TEST(ReadCatalogFile, AFileThatCannotBeReadIsNamed) {
  const std::string missing = WriteFile("x", "") + ".missing";
  EXPECT_EQ(ReadCatalogFile(missing).status(),
            absl::NotFoundError("cannot read " + missing +
                                ": No such file or directory"));
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string folder = dir != nullptr ? dir : "/tmp";
  EXPECT_EQ(ReadCatalogFile(folder).status().message(),
            "cannot read " + folder + ": Is a directory");
}

// Shapes protobuf's parser would read as something else (a nested list
// flattened, a null element dropped, an object taken as a list of one)
// and wrong types are refused, naming the member.
TEST(ReadCatalogFile, RefusesWhatIsNotACatalogueNamingTheMember) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"projects": [[{"id": 930, "name": "nested"}]]})",
       "projects[0]: Invalid data. Expected a dictionary, but got list."},
      {R"({"deployments": [null]})",
       "deployments[0]: This field may not be null."},
      {R"({"captures": {"id": 5930, "deployment_id": 60}})",
       "captures: Expected a list of items but got type \"dict\"."},
      {R"({"projects": [{"id": "abc", "name": "x"}]})",
       "projects[0].id: A valid integer is required."},
      {R"([{"id": 1}])", "Invalid data. Expected a dictionary, but got list."},
      {R"({"projects": [)",
       "Unexpected end of string. Expected a value or ] within an array."},
      {std::string(1000, '[') + std::string(1000, ']'),
       "nested deeper than 100 levels"},
      // A misspelt member is refused, not left out.
      {R"({"project": [{"id": 1}]})", "project: Cannot find field."},
  };
  for (const auto& [text, reason] : cases) {
    const std::string path = WriteFile("bad.json", text);
    const absl::Status status = ReadCatalogFile(path).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_EQ(status.message(), path + " is not a catalogue in JSON: " + reason)
        << text;
  }
}

}  // namespace
}  // namespace jobline
