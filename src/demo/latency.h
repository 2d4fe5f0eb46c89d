// Latency figures of `medcard demo`'s city-scale day (docs/demo.md "City scale"): every sample
// kept (µs), sorted once when summarised, so the percentiles are exact (nearest rank). A million
// samples are 8 MB; one recorder per worker thread, merged after the join.
//
//   LatencyRecorder loads;
//   loads.Add(elapsed_us);
//   LatencySummary s = loads.Summary();   // s.p50_us <= s.p95_us <= s.p99_us <= s.max_us
#pragma once

#include <cstdint>
#include <vector>

namespace medcard::demo {

struct LatencySummary {
  std::int64_t count = 0;
  std::int64_t p50_us = 0, p95_us = 0, p99_us = 0, max_us = 0;
  std::int64_t total_us = 0;  // the samples' sum
};

class LatencyRecorder {
 public:
  void Add(std::int64_t us) { samples_.push_back(us < 0 ? 0 : us); }
  void Merge(const LatencyRecorder& other) {
    samples_.insert(samples_.end(), other.samples_.begin(), other.samples_.end());
  }
  std::int64_t count() const { return static_cast<std::int64_t>(samples_.size()); }
  // Sorts the samples (once); all zero when there are none.
  LatencySummary Summary();

 private:
  std::vector<std::int64_t> samples_;
};

// The nearest-rank percentile (0 < percent <= 100) of sorted samples: the smallest sample that
// at least `percent` % of the samples do not exceed. REQUIRES: sorted is not empty.
std::int64_t NearestRank(const std::vector<std::int64_t>& sorted, int percent);

}  // namespace medcard::demo
