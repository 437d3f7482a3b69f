#include "tools/loadgen/watch_bench.h"

#include <cstdint>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tools/loadgen/latency_histogram.h"

namespace jobline {
namespace loadgen {
namespace {

TEST(UpdateLedger, AnUnstampedUpdateAnswersZero) {
  UpdateLedger ledger(/*jobs=*/2, /*updates_per_job=*/3);
  EXPECT_EQ(ledger.updates_per_job(), 3);
  EXPECT_EQ(ledger.Sent(0, 1), 0);
  EXPECT_EQ(ledger.Sent(1, 3), 0);
  // Out of range.
  EXPECT_EQ(ledger.Sent(0, -1), 0);
  EXPECT_EQ(ledger.Sent(0, 4), 0);
}

TEST(UpdateLedger, KeepsEachJobsStampsApart) {
  UpdateLedger ledger(/*jobs=*/2, /*updates_per_job=*/3);
  ledger.Stamp(0, 3, 700);
  ledger.Stamp(1, 0, 50);
  ledger.Stamp(1, 3, 900);
  EXPECT_EQ(ledger.Sent(0, 3), 700);
  EXPECT_EQ(ledger.Sent(1, 0), 50);
  EXPECT_EQ(ledger.Sent(1, 3), 900);
  EXPECT_EQ(ledger.Sent(0, 0), 0);
  EXPECT_EQ(ledger.Sent(1, 2), 0);
}

TEST(UpdateLedger, AMergedMessageCountsEveryUpdateItCarries) {
  UpdateLedger ledger(/*jobs=*/1, /*updates_per_job=*/4);
  ledger.Stamp(0, 1, 100);
  ledger.Stamp(0, 2, 200);
  ledger.Stamp(0, 3, 350);
  LatencyHistogram delay;
  // Update 1 alone at 150, then 2 and 3 together at 500.
  EXPECT_EQ(ledger.RecordDelivered(0, 0, 1, 150, &delay), 0);
  EXPECT_EQ(ledger.RecordDelivered(0, 1, 3, 500, &delay), 0);
  EXPECT_EQ(delay.count(), 3);
  // The delays are 50, 300 and 150.
  EXPECT_EQ(delay.Percentile(100.0 / 3), 50);
  EXPECT_EQ(delay.Percentile(200.0 / 3), 150);
  EXPECT_EQ(delay.max(), 300);
}

TEST(UpdateLedger, UnstampedUpdatesAreCountedNotRecorded) {
  UpdateLedger ledger(/*jobs=*/1, /*updates_per_job=*/4);
  ledger.Stamp(0, 2, 100);
  LatencyHistogram delay;
  // 1 and 3 have no stamp; 5 is past the ledger.
  EXPECT_EQ(ledger.RecordDelivered(0, 0, 3, 180, &delay), 2);
  EXPECT_EQ(ledger.RecordDelivered(0, 3, 5, 200, &delay), 2);
  EXPECT_EQ(delay.count(), 1);
  EXPECT_EQ(delay.max(), 80);
}

TEST(WatchResult, UpdatesPerSecondIsOverTheWindow) {
  WatchResult result;
  result.updates = 3000;
  EXPECT_DOUBLE_EQ(result.updates_per_second(absl::Seconds(3)), 1000.0);
  EXPECT_DOUBLE_EQ(result.updates_per_second(absl::ZeroDuration()), 0.0);
}

TEST(WatchResult, MemoryPerWatcherNeedsBothReadings) {
  WatchResult result;
  EXPECT_FALSE(result.kib_per_watcher(100).has_value());
  result.rss_before_kib = 50000;
  EXPECT_FALSE(result.kib_per_watcher(100).has_value());
  result.rss_open_kib = 51250;
  ASSERT_TRUE(result.kib_per_watcher(100).has_value());
  EXPECT_DOUBLE_EQ(*result.kib_per_watcher(100), 12.5);
}

}  // namespace
}  // namespace loadgen
}  // namespace jobline
