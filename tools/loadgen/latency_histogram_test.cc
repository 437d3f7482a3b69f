#include "tools/loadgen/latency_histogram.h"

#include <cstdint>

#include "gtest/gtest.h"

namespace jobline {
namespace loadgen {
namespace {

TEST(LatencyHistogram, EmptyAnswersZero) {
  LatencyHistogram histogram;
  EXPECT_EQ(histogram.count(), 0);
  EXPECT_EQ(histogram.max(), 0);
  EXPECT_EQ(histogram.Percentile(50), 0);
  EXPECT_EQ(histogram.Percentile(100), 0);
}

TEST(LatencyHistogram, SmallValuesAreExact) {
  LatencyHistogram histogram;
  for (int64_t value = 100; value >= 1; --value) histogram.Record(value);
  EXPECT_EQ(histogram.count(), 100);
  EXPECT_EQ(histogram.max(), 100);
  EXPECT_EQ(histogram.Percentile(50), 50);
  EXPECT_EQ(histogram.Percentile(90), 90);
  EXPECT_EQ(histogram.Percentile(99), 99);
  EXPECT_EQ(histogram.Percentile(99.9), 100);
  EXPECT_EQ(histogram.Percentile(100), 100);
  EXPECT_EQ(histogram.Percentile(0.5), 1);
}

TEST(LatencyHistogram, LargeValuesAnswerTheirBucketsUpperBound) {
  LatencyHistogram histogram;
  // 1000 and 1001 share the bucket [1000, 1003] (width 4 from 512 to 1023).
  histogram.Record(1000);
  histogram.Record(1001);
  histogram.Record(5000);
  EXPECT_EQ(histogram.Percentile(50), 1003);
  // The top bucket is capped at the largest value seen.
  EXPECT_EQ(histogram.Percentile(100), 5000);
  EXPECT_EQ(histogram.max(), 5000);
}

TEST(LatencyHistogram, PercentileIsWithinOneBucketAboveTheValue) {
  for (int64_t value : {int64_t{256}, int64_t{257}, int64_t{65535},
                        int64_t{1234567}, int64_t{9876543210}}) {
    LatencyHistogram histogram;
    histogram.Record(value);
    histogram.Record(value * 4);
    const int64_t p50 = histogram.Percentile(50);
    EXPECT_GE(p50, value);
    EXPECT_LE(p50, value + value / 128) << value;
  }
}

TEST(LatencyHistogram, NegativeValuesCountAsZero) {
  LatencyHistogram histogram;
  histogram.Record(-5);
  EXPECT_EQ(histogram.count(), 1);
  EXPECT_EQ(histogram.Percentile(100), 0);
}

TEST(LatencyHistogram, HugeValuesAreKept) {
  LatencyHistogram histogram;
  histogram.Record(INT64_MAX);
  EXPECT_EQ(histogram.max(), INT64_MAX);
  EXPECT_EQ(histogram.Percentile(50), INT64_MAX);
}

TEST(LatencyHistogram, MergeAddsCountsAndKeepsTheMax) {
  LatencyHistogram first;
  LatencyHistogram second;
  for (int64_t value = 1; value <= 50; ++value) first.Record(value);
  for (int64_t value = 51; value <= 100; ++value) second.Record(value);
  first.Merge(second);
  EXPECT_EQ(first.count(), 100);
  EXPECT_EQ(first.max(), 100);
  EXPECT_EQ(first.Percentile(50), 50);
  EXPECT_EQ(first.Percentile(90), 90);
  EXPECT_EQ(second.count(), 50);
}

}  // namespace
}  // namespace loadgen
}  // namespace jobline
