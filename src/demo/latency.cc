#include "demo/latency.h"

#include <algorithm>

namespace medcard::demo {

std::int64_t NearestRank(const std::vector<std::int64_t>& sorted, int percent) {
  const auto n = static_cast<std::int64_t>(sorted.size());
  // ceil(percent * n / 100), 1-based; integer arithmetic, no rounding surprises.
  std::int64_t rank = (static_cast<std::int64_t>(percent) * n + 99) / 100;
  rank = std::clamp<std::int64_t>(rank, 1, n);
  return sorted[static_cast<std::size_t>(rank - 1)];
}

LatencySummary LatencyRecorder::Summary() {
  LatencySummary s;
  if (samples_.empty()) return s;
  std::sort(samples_.begin(), samples_.end());
  s.count = count();
  s.p50_us = NearestRank(samples_, 50);
  s.p95_us = NearestRank(samples_, 95);
  s.p99_us = NearestRank(samples_, 99);
  s.max_us = samples_.back();
  for (std::int64_t v : samples_) s.total_us += v;
  return s;
}

}  // namespace medcard::demo
