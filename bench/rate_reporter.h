// Console reporter that also keeps each benchmark's items/s, so a benchmark program can print
// ratios between figures measured in the same run (never against numbers from elsewhere).
#pragma once

#include <benchmark/benchmark.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace medcard::bench {

class RateKeepingReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      const auto rate = run.counters.find("items_per_second");
      if (run.run_type == Run::RT_Iteration && !run.error_occurred && rate != run.counters.end()) {
        items_per_second_[run.run_name.function_name] = rate->second.value;
      }
    }
    ConsoleReporter::ReportRuns(runs);
  }

  // items/s of a benchmark by function name; 0 when it did not run.
  double Rate(const std::string& benchmark) const {
    const auto it = items_per_second_.find(benchmark);
    return it == items_per_second_.end() ? 0.0 : it->second;
  }

  // Prints "label = a/b" with both figures, or n/a when either did not run.
  void PrintRatio(const char* label, const std::string& numerator,
                  const std::string& denominator) const {
    const double a = Rate(numerator), b = Rate(denominator);
    if (a > 0 && b > 0) {
      std::printf("%s = %.3f  (%.0f/s vs %.0f/s)\n", label, a / b, a, b);
    } else {
      std::printf("%s = n/a (run both %s and %s)\n", label, numerator.c_str(), denominator.c_str());
    }
  }

 private:
  std::map<std::string, double> items_per_second_;
};

}  // namespace medcard::bench
