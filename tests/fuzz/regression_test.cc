// Runs each fuzz target (tests/fuzz/fuzz_targets.h) on the files of its
// seed corpus (tests/fuzz/corpus/<target>/) and of its regressions
// (tests/fuzz/regressions/<target>/: inputs a fuzzer found to break an
// invariant or crash, minimized), with the default toolchain and without
// libFuzzer. A broken invariant fails the test case of that target, naming
// the file; a crash ends the test binary.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/fuzz_targets.h"

namespace jobline {
namespace fuzz {
namespace {

struct Target {
  const char* name;
  int (*run)(const uint8_t* data, size_t size);
};

constexpr Target kTargets[] = {
    {"rest_request_fuzzer", &RestRequestOneInput},
    {"json_body_fuzzer", &JsonBodyOneInput},
    {"progress_merge_fuzzer", &ProgressMergeOneInput},
    {"worker_report_fuzzer", &WorkerReportOneInput},
};

// The brief minimum of a seed corpus.
constexpr size_t kMinCorpusFiles = 10;

// A broken invariant fails the running test, where the check is.
void FailTest(const char* file, int line, const std::string& message) {
  ADD_FAILURE_AT(file, line) << message;
}

// The folder of this package in the test's runfiles.
std::filesystem::path PackageDir() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  return std::filesystem::path(srcdir != nullptr ? srcdir : ".") /
         (workspace != nullptr ? workspace : "jobline") / "tests" / "fuzz";
}

// The regular files of `dir`, sorted; none when it does not exist.
std::vector<std::filesystem::path> FilesIn(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> files;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    if (entry.is_regular_file()) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(file)),
                     std::istreambuf_iterator<char>());
}

// Runs `target` on every file of `files`, each under its name.
void RunFiles(const Target& target,
              const std::vector<std::filesystem::path>& files) {
  SetBrokenInvariantHandler(&FailTest);
  for (const std::filesystem::path& file : files) {
    SCOPED_TRACE(file.string());
    const std::string bytes = ReadFile(file);
    target.run(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  }
  SetBrokenInvariantHandler(nullptr);
}

class FuzzTargetTest : public ::testing::TestWithParam<Target> {};

TEST_P(FuzzTargetTest, SeedCorpusKeepsEveryInvariant) {
  const std::vector<std::filesystem::path> files =
      FilesIn(PackageDir() / "corpus" / GetParam().name);
  EXPECT_GE(files.size(), kMinCorpusFiles);
  RunFiles(GetParam(), files);
}

TEST_P(FuzzTargetTest, RegressionsKeepEveryInvariant) {
  RunFiles(GetParam(), FilesIn(PackageDir() / "regressions" / GetParam().name));
}

INSTANTIATE_TEST_SUITE_P(Targets, FuzzTargetTest, ::testing::ValuesIn(kTargets),
                         [](const ::testing::TestParamInfo<Target>& info) {
                           std::string name = info.param.name;
                           // Test names take letters and digits only.
                           name.erase(
                               std::remove(name.begin(), name.end(), '_'),
                               name.end());
                           return name;
                         });

}  // namespace
}  // namespace fuzz
}  // namespace jobline
