#include "tools/loadgen/latency_histogram.h"

#include <algorithm>
#include <cmath>

namespace jobline {
namespace loadgen {
namespace {

// Buckets per power of two above the exact range, as a power of two.
constexpr int kSubBits = 7;
constexpr int64_t kSubBuckets = int64_t{1} << kSubBits;
// Values below this have a bucket each.
constexpr int64_t kExactLimit = 2 * kSubBuckets;
// Lowest and highest exponent e of the ranges [2^e, 2^(e+1)) above it.
constexpr int kFirstExponent = kSubBits + 1;
constexpr int kLastExponent = 62;
constexpr int64_t kBucketCount =
    kExactLimit + (kLastExponent - kFirstExponent + 1) * kSubBuckets;

int HighestBit(uint64_t value) { return 63 - __builtin_clzll(value); }

size_t BucketOf(int64_t value) {
  if (value < kExactLimit) return static_cast<size_t>(value);
  const int exponent = HighestBit(static_cast<uint64_t>(value));
  const int shift = exponent - kSubBits;
  const int64_t mantissa = value >> shift;  // kSubBuckets to 2*kSubBuckets-1
  return static_cast<size_t>(kExactLimit +
                             (exponent - kFirstExponent) * kSubBuckets +
                             (mantissa - kSubBuckets));
}

// The largest value that falls in bucket `index`.
int64_t UpperBound(size_t index) {
  const int64_t i = static_cast<int64_t>(index);
  if (i < kExactLimit) return i;
  const int64_t above = i - kExactLimit;
  const int exponent = kFirstExponent + static_cast<int>(above / kSubBuckets);
  const uint64_t mantissa =
      static_cast<uint64_t>(kSubBuckets + above % kSubBuckets);
  const int shift = exponent - kSubBits;
  return static_cast<int64_t>(((mantissa + 1) << shift) - 1);
}

}  // namespace

LatencyHistogram::LatencyHistogram() : buckets_(kBucketCount, 0) {}

void LatencyHistogram::Record(int64_t micros) {
  const int64_t value = std::max<int64_t>(micros, 0);
  ++buckets_[BucketOf(value)];
  ++count_;
  max_ = std::max(max_, value);
}

void LatencyHistogram::Merge(const LatencyHistogram& other) {
  for (size_t i = 0; i < buckets_.size(); ++i) {
    buckets_[i] += other.buckets_[i];
  }
  count_ += other.count_;
  max_ = std::max(max_, other.max_);
}

int64_t LatencyHistogram::Percentile(double percent) const {
  if (count_ == 0) return 0;
  // Nearest rank: the smallest value with at least percent% of the values
  // at or below it. The small margin keeps a rank that is a whole number
  // (99% of 100 values) from rounding up to the next one.
  const double exact_rank = percent / 100.0 * static_cast<double>(count_);
  int64_t rank = static_cast<int64_t>(std::ceil(exact_rank - 1e-6));
  rank = std::clamp<int64_t>(rank, 1, count_);
  int64_t seen = 0;
  for (size_t i = 0; i < buckets_.size(); ++i) {
    seen += buckets_[i];
    if (seen >= rank) return std::min(UpperBound(i), max_);
  }
  return max_;
}

}  // namespace loadgen
}  // namespace jobline
