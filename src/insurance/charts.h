// Charts for the agency's reports and forecasts (docs/insurance.md "Charts"): SVG 1.1 written
// by hand, no dependency. Each chart has a title, axes with labelled ticks in yuan, and its
// bars or lines; the output is well-formed XML (text is escaped) and the same data always gives
// the same bytes. Bars carry class="bar", line series class="series".
#pragma once

#include <string>
#include <vector>

#include "insurance/policy.h"

namespace medcard::insurance {

struct ChartBar {
  std::string label;  // under the bar, e.g. "2026-11" or "500.00-1000.00"
  Fen value_fen = 0;  // may be negative (drawn below the zero line)
};

struct BarChart {
  std::string title;
  std::string y_label;  // e.g. "yuan"
  std::vector<ChartBar> bars;
};
// Bars with gaps between them (by month, by unit).
std::string BarChartSvg(const BarChart& chart);
// The same data as a histogram: bars side by side, no gaps (distributions by band). Values are
// counts here, not money: value_fen holds the count and the axis is labelled as plain numbers.
std::string HistogramSvg(const BarChart& chart);

struct LineSeries {
  std::string name;             // in the legend, e.g. "current policy"
  std::vector<Fen> values_fen;  // one per x label
};
struct LineChart {
  std::string title;
  std::string y_label;
  std::vector<std::string> x_labels;  // e.g. "year 1" ...
  std::vector<LineSeries> series;
};
std::string LineChartSvg(const LineChart& chart);

// "&", "<", ">", '"' and "'" as XML entities.
std::string XmlEscape(std::string_view text);

}  // namespace medcard::insurance
