#include "tools/loadgen/process_memory.h"

#include <unistd.h>

#include <cstdint>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace jobline {
namespace loadgen {
namespace {

using ::testing::HasSubstr;

constexpr char kStatus[] =
    "Name:\tjob_server\n"
    "State:\tS (sleeping)\n"
    "VmPeak:\t  912340 kB\n"
    "VmHWM:\t   70312 kB\n"
    "VmRSS:\t   65536 kB\n"
    "RssAnon:\t   40960 kB\n"
    "Threads:\t17\n";

TEST(ParseVmRssKib, ReadsTheVmRssLine) {
  const absl::StatusOr<int64_t> kib = ParseVmRssKib(kStatus);
  ASSERT_TRUE(kib.ok()) << kib.status();
  EXPECT_EQ(*kib, 65536);
}

TEST(ParseVmRssKib, NoLineIsNotFound) {
  const absl::StatusOr<int64_t> kib =
      ParseVmRssKib("Name:\tkthreadd\nState:\tS (sleeping)\n");
  EXPECT_EQ(kib.status().code(), absl::StatusCode::kNotFound);
}

TEST(ParseVmRssKib, AMalformedLineIsDataLoss) {
  const absl::StatusOr<int64_t> kib = ParseVmRssKib("VmRSS:\t 12 MB\n");
  EXPECT_EQ(kib.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(kib.status().message(), HasSubstr("12 MB"));
}

TEST(ReadVmRssKib, ReadsThisProcess) {
  const absl::StatusOr<int64_t> kib = ReadVmRssKib(getpid());
  ASSERT_TRUE(kib.ok()) << kib.status();
  // A running test binary holds at least a page.
  EXPECT_GE(*kib, 4);
}

TEST(ReadVmRssKib, AMissingProcessIsNotFound) {
  // Above the kernel's largest pid (4194304), so no process has it.
  const absl::StatusOr<int64_t> kib = ReadVmRssKib(5000000);
  EXPECT_EQ(kib.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(kib.status().message(), HasSubstr("/proc/5000000/status"));
}

}  // namespace
}  // namespace loadgen
}  // namespace jobline
