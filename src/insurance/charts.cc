#include "insurance/charts.h"

#include <algorithm>
#include <cstdio>

#include "common/money.h"

namespace medcard::insurance {
namespace {

// The drawing area inside an 800×480 picture; pixel positions are not money, so doubles here.
constexpr double kWidth = 800, kHeight = 480;
constexpr double kLeft = 100, kRight = 770, kTop = 50, kBottom = 400;
constexpr int kTicks = 5;

const char* const kColours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"};

std::string Px(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f", v);
  return text;
}

struct Scale {
  Fen low = 0, high = 1;  // the value range, always including 0
  double Y(Fen v) const {
    return kBottom -
           (kBottom - kTop) * static_cast<double>(v - low) / static_cast<double>(high - low);
  }
};

Scale MakeScale(const std::vector<Fen>& values) {
  Scale s;
  for (const Fen v : values) {
    s.low = std::min(s.low, v);
    s.high = std::max(s.high, v);
  }
  if (s.high == s.low) s.high = s.low + 1;
  // Round the ends outwards to a multiple of the tick step so the tick labels are even.
  const Fen step = std::max<Fen>(1, (s.high - s.low + kTicks - 1) / kTicks);
  s.high = (s.high >= 0 ? (s.high + step - 1) / step : s.high / step) * step;
  s.low = (s.low >= 0 ? s.low / step : (s.low - step + 1) / step) * step;
  if (s.high == s.low) s.high = s.low + step;
  return s;
}

std::string Text(double x, double y, std::string_view text, std::string_view attributes = {}) {
  std::string out = "<text x=\"" + Px(x) + "\" y=\"" + Px(y) + "\"";
  if (!attributes.empty()) out += " " + std::string(attributes);
  return out + ">" + XmlEscape(text) + "</text>\n";
}

std::string Line(double x1, double y1, double x2, double y2, std::string_view style) {
  return "<line x1=\"" + Px(x1) + "\" y1=\"" + Px(y1) + "\" x2=\"" + Px(x2) + "\" y2=\"" + Px(y2) +
         "\" " + std::string(style) + "/>\n";
}

std::string Begin(std::string_view title) {
  return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
         "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"800\" height=\"480\""
         " viewBox=\"0 0 800 480\" font-family=\"sans-serif\" font-size=\"12\">\n"
         "<rect x=\"0\" y=\"0\" width=\"" +
         Px(kWidth) + "\" height=\"" + Px(kHeight) + "\" fill=\"white\"/>\n" +
         Text(kWidth / 2, 28, title, "text-anchor=\"middle\" font-size=\"18\" class=\"title\"");
}

// The y axis with its ticks and the x axis at zero.
std::string Axes(const Scale& s, std::string_view y_label, bool money) {
  std::string out = Line(kLeft, kTop, kLeft, kBottom, "stroke=\"black\"");
  for (int i = 0; i <= kTicks; ++i) {
    const Fen v = s.low + (s.high - s.low) * i / kTicks;
    const double y = s.Y(v);
    out += Line(kLeft - 5, y, kLeft, y, "stroke=\"black\"");
    out += Line(kLeft, y, kRight, y, "stroke=\"#dddddd\"");
    out += Text(kLeft - 8, y + 4, money ? FormatFen(v) : std::to_string(v),
                "text-anchor=\"end\" class=\"tick\"");
  }
  out += Line(kLeft, s.Y(0), kRight, s.Y(0), "stroke=\"black\"");
  out += "<text x=\"20\" y=\"" + Px((kTop + kBottom) / 2) + "\" transform=\"rotate(-90 20 " +
         Px((kTop + kBottom) / 2) + ")\" text-anchor=\"middle\" class=\"axis-label\">" +
         XmlEscape(y_label) + "</text>\n";
  return out;
}

std::string Bars(const BarChart& chart, bool gaps, bool money) {
  std::vector<Fen> values;
  for (const auto& b : chart.bars) values.push_back(b.value_fen);
  const Scale s = MakeScale(values);
  std::string out = Begin(chart.title) + Axes(s, chart.y_label, money);
  const double slot =
      (kRight - kLeft) / static_cast<double>(std::max<std::size_t>(1, chart.bars.size()));
  const double width = gaps ? slot * 0.7 : slot;
  for (std::size_t i = 0; i < chart.bars.size(); ++i) {
    const auto& bar = chart.bars[i];
    const double x = kLeft + slot * static_cast<double>(i) + (slot - width) / 2;
    const double top = std::min(s.Y(bar.value_fen), s.Y(0));
    const double height = std::abs(s.Y(bar.value_fen) - s.Y(0));
    out += "<rect class=\"bar\" x=\"" + Px(x) + "\" y=\"" + Px(top) + "\" width=\"" + Px(width) +
           "\" height=\"" + Px(height) + "\" fill=\"" + kColours[0] +
           "\" stroke=\"white\"><title>" + XmlEscape(bar.label) + ": " +
           XmlEscape(money ? FormatFen(bar.value_fen) : std::to_string(bar.value_fen)) +
           "</title></rect>\n";
    const double cx = x + width / 2;
    out += "<text x=\"" + Px(cx) + "\" y=\"" + Px(kBottom + 14) + "\" transform=\"rotate(30 " +
           Px(cx) + " " + Px(kBottom + 14) + ")\" class=\"x-label\">" + XmlEscape(bar.label) +
           "</text>\n";
  }
  return out + "</svg>\n";
}

}  // namespace

std::string XmlEscape(std::string_view text) {
  std::string out;
  for (const char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string BarChartSvg(const BarChart& chart) { return Bars(chart, true, true); }

std::string HistogramSvg(const BarChart& chart) { return Bars(chart, false, false); }

std::string LineChartSvg(const LineChart& chart) {
  std::vector<Fen> values;
  for (const auto& series : chart.series) {
    values.insert(values.end(), series.values_fen.begin(), series.values_fen.end());
  }
  const Scale s = MakeScale(values);
  std::string out = Begin(chart.title) + Axes(s, chart.y_label, true);
  const std::size_t points = std::max<std::size_t>(2, chart.x_labels.size());
  const auto x_at = [&](std::size_t i) {
    return kLeft + 20 +
           (kRight - kLeft - 40) * static_cast<double>(i) / static_cast<double>(points - 1);
  };
  for (std::size_t i = 0; i < chart.x_labels.size(); ++i) {
    out +=
        Text(x_at(i), kBottom + 18, chart.x_labels[i], "text-anchor=\"middle\" class=\"x-label\"");
  }
  for (std::size_t k = 0; k < chart.series.size(); ++k) {
    const auto& series = chart.series[k];
    const char* colour = kColours[k % std::size(kColours)];
    std::string path;
    for (std::size_t i = 0; i < series.values_fen.size(); ++i) {
      path += (i == 0 ? "" : " ") + Px(x_at(i)) + "," + Px(s.Y(series.values_fen[i]));
    }
    out += "<polyline class=\"series\" fill=\"none\" stroke-width=\"2\" stroke=\"" +
           std::string(colour) + "\" points=\"" + path + "\"><title>" + XmlEscape(series.name) +
           "</title></polyline>\n";
    const double legend_y = kBottom + 40 + 16 * static_cast<double>(k);
    out += Line(kLeft, legend_y - 4, kLeft + 24, legend_y - 4,
                "stroke-width=\"2\" stroke=\"" + std::string(colour) + "\"");
    out += Text(kLeft + 30, legend_y, series.name, "class=\"legend\"");
  }
  return out + "</svg>\n";
}

}  // namespace medcard::insurance
