// Runs each fuzz target (tests/fuzz/fuzz_targets.h) on the files of its
// seed corpus (tests/fuzz/corpus/<target>/) and of its regressions
// (tests/fuzz/regressions/<target>/: inputs a fuzzer found to break an
// invariant or crash, minimized), with the default toolchain and without
// libFuzzer. Each input runs in a child process of its own, so that a crash,
// an exception or a broken invariant (which aborts) fails the test case of
// its target, naming the file, and the other inputs still run; the child's
// stderr (the broken invariant, the stack) is in the test log. The test runs
// with --gtest_catch_exceptions=0 (BUILD.bazel), so that an exception ends
// the child instead of being caught by GoogleTest in it.

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
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

// gtest's name of a parameter.
void PrintTo(const Target& target, std::ostream* out) { *out << target.name; }

// The least a seed corpus holds.
constexpr size_t kMinCorpusFiles = 10;

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

// Runs `target` on `bytes` in a child process. Returns how the child
// failed, or "" when it returned normally.
std::string RunInChild(const Target& target, const std::string& bytes) {
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t child = fork();
  if (child < 0) return "fork failed";
  if (child == 0) {
    target.run(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    std::fflush(stderr);
    _exit(0);
  }
  int status = 0;
  if (waitpid(child, &status, 0) != child) return "waitpid failed";
  if (WIFSIGNALED(status)) {
    return absl::StrCat("killed by signal ", WTERMSIG(status),
                        " (its stderr is above)");
  }
  if (WEXITSTATUS(status) != 0) {
    return absl::StrCat("exited with ", WEXITSTATUS(status));
  }
  return "";
}

void RunFiles(const Target& target,
              const std::vector<std::filesystem::path>& files) {
  for (const std::filesystem::path& file : files) {
    const std::string name =
        (file.parent_path().filename() / file.filename()).string();
    std::fprintf(stderr, "running %s\n", name.c_str());
    const std::string failure = RunInChild(target, ReadFile(file));
    EXPECT_EQ(failure, "") << name;
  }
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
