// The demo's latency recorder (src/demo/latency.h): exact nearest-rank percentiles.
#include "demo/latency.h"

#include <gtest/gtest.h>

namespace medcard::demo {
namespace {

TEST(DemoLatencyTest, PercentilesAreTheNearestRankOfTheSortedSamples) {
  LatencyRecorder recorder;
  for (int us = 100; us >= 1; --us) recorder.Add(us);  // 1..100, any order
  const LatencySummary s = recorder.Summary();
  EXPECT_EQ(s.count, 100);
  EXPECT_EQ(s.p50_us, 50);
  EXPECT_EQ(s.p95_us, 95);
  EXPECT_EQ(s.p99_us, 99);
  EXPECT_EQ(s.max_us, 100);
  EXPECT_EQ(s.total_us, 5050);
}

TEST(DemoLatencyTest, FewSamplesAndMergedRecorders) {
  LatencyRecorder one;
  one.Add(7);
  LatencySummary s = one.Summary();
  EXPECT_EQ(s.p50_us, 7);
  EXPECT_EQ(s.p99_us, 7);
  EXPECT_EQ(s.max_us, 7);

  LatencyRecorder a, b;
  a.Add(10);
  a.Add(30);
  b.Add(20);
  b.Add(-5);  // a clock step backwards counts as 0
  a.Merge(b);
  EXPECT_EQ(a.count(), 4);
  s = a.Summary();
  EXPECT_EQ(s.p50_us, 10);  // ceil(0.5 * 4) = 2nd of 0, 10, 20, 30
  EXPECT_EQ(s.p95_us, 30);
  EXPECT_EQ(s.max_us, 30);
}

TEST(DemoLatencyTest, NoSamplesGiveZeros) {
  LatencyRecorder none;
  const LatencySummary s = none.Summary();
  EXPECT_EQ(s.count, 0);
  EXPECT_EQ(s.p50_us, 0);
  EXPECT_EQ(s.max_us, 0);
}

}  // namespace
}  // namespace medcard::demo
