// LatencyHistogram: a fixed-memory histogram of latencies in microseconds,
// with percentiles good to 1/128 of the value.
//
// Values below 256 each have a bucket of their own (exact). Above that,
// every power of two [2^e, 2^(e+1)) is cut into 128 equal buckets, so a
// bucket is at most 1/128 of its lower bound wide. A percentile answers
// the upper bound of the bucket that holds it, never more than the largest
// value recorded: it is at least the true value and less than 1/128 above
// it. The memory is a few tens of KiB whatever the number of values.
//
// Thread safety: none; a histogram is used by one thread at a time (the
// load generator keeps one per thread and merges them at the end).

#ifndef JOBLINE_TOOLS_LOADGEN_LATENCY_HISTOGRAM_H_
#define JOBLINE_TOOLS_LOADGEN_LATENCY_HISTOGRAM_H_

#include <cstdint>
#include <vector>

namespace jobline {
namespace loadgen {

class LatencyHistogram {
 public:
  LatencyHistogram();

  // Records one value; a negative value counts as 0.
  void Record(int64_t micros);

  // Adds every value of `other`.
  void Merge(const LatencyHistogram& other);

  // The nearest-rank percentile `percent` (0 < percent <= 100) as described
  // above; 0 when nothing was recorded.
  int64_t Percentile(double percent) const;

  int64_t count() const { return count_; }
  // The largest value recorded; 0 when nothing was.
  int64_t max() const { return max_; }

 private:
  std::vector<int64_t> buckets_;
  int64_t count_ = 0;
  int64_t max_ = 0;
};

}  // namespace loadgen
}  // namespace jobline

#endif  // JOBLINE_TOOLS_LOADGEN_LATENCY_HISTOGRAM_H_
