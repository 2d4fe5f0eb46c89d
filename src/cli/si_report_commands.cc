// medcard si report fund | arrears | balances | facility | diagnosis | top-consumers |
// account-balances, medcard si forecast: the agency's reports, charts
// and forecasts (docs/insurance.md "Reports", "Forecast"). They read the agency's data directory
// (si.json: the database URL and the policy file or directory) and change nothing.
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/si_session.h"
#include "common/money.h"
#include "insurance/charts.h"
#include "insurance/forecast.h"
#include "insurance/policy.h"
#include "insurance/registry.h"
#include "insurance/reports.h"
#include "store/store.h"

namespace medcard::cli {
namespace {

using namespace medcard::insurance;  // NOLINT(google-build-using-namespace): the commands' domain

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.flush();
  if (!out) throw CommandFailed("cannot write " + path);
}

YearMonth NextMonth() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm utc{};
  gmtime_r(&now, &utc);
  const int index = (utc.tm_year + 1900) * 12 + utc.tm_mon + 1;
  return {index / 12, index % 12 + 1};
}

// The CSV to a file or, without --csv, to standard output.
void Emit(const std::string& csv, const std::string& csv_path) {
  if (csv_path.empty()) {
    std::fputs(csv.c_str(), stdout);
  } else {
    WriteText(csv_path, csv);
    std::printf("wrote %s\n", csv_path.c_str());
  }
}

struct ReportOptions {
  std::string data, from, to, csv, svg;
};

void AddReport(CLI::App* report, const std::string& name, const std::string& description,
               void (*run)(const ReportOptions&)) {
  auto options = std::make_shared<ReportOptions>();
  CLI::App* command = report->add_subcommand(name, description);
  command->add_option("--data", options->data, "The agency's data directory")->required();
  command->add_option("--from", options->from, "First month, YYYY-MM")->required();
  command->add_option("--to", options->to, "Last month, YYYY-MM")->required();
  command->add_option("--csv", options->csv, "Write the CSV here (default: standard output)");
  command->add_option("--svg", options->svg, "Also draw the chart as SVG here");
  command->callback([options, run] { run(*options); });
}

void RunFund(const ReportOptions& o) {
  SiSession session = SiSession::Open(o.data);
  const auto months = SiService(FundByMonth(session.connection(), SiMonthOption(o.from, "--from"),
                                            SiMonthOption(o.to, "--to")),
                                "fund report");
  Emit(FundByMonthCsv(months), o.csv);
  if (!o.svg.empty()) {
    BarChart chart{"Pooled-fund income by month, " + o.from + " to " + o.to, "yuan", {}};
    for (const auto& m : months) chart.bars.push_back({MonthText(m.month), m.pooled_fund_fen});
    WriteText(o.svg, BarChartSvg(chart));
  }
}

void RunArrears(const ReportOptions& o) {
  SiSession session = SiSession::Open(o.data);
  const auto units = SiService(ArrearsByUnit(session.connection(), SiMonthOption(o.from, "--from"),
                                             SiMonthOption(o.to, "--to")),
                               "arrears report");
  Emit(ArrearsByUnitCsv(units), o.csv);
  if (!o.svg.empty()) {
    BarChart chart{"Arrears by unit, " + o.from + " to " + o.to, "yuan", {}};
    for (const auto& u : units) chart.bars.push_back({u.unit_code, u.arrears_fen});
    WriteText(o.svg, BarChartSvg(chart));
  }
}

void RunBalances(const ReportOptions& o) {
  SiSession session = SiSession::Open(o.data);
  const auto bands =
      SiService(AllocationDistribution(session.connection(), SiMonthOption(o.from, "--from"),
                                       SiMonthOption(o.to, "--to"), DefaultBalanceBandEdges()),
                "balances report");
  Emit(AllocationDistributionCsv(bands), o.csv);
  if (!o.svg.empty()) {
    BarChart chart{
        "Personal-account allocation per person, " + o.from + " to " + o.to, "people", {}};
    for (const auto& b : bands) chart.bars.push_back({BandLabel(b), b.people});
    WriteText(o.svg, HistogramSvg(chart));
  }
}

// --- Spending (docs/insurance.md "Spending reports"): --from/--to as days or whole months ---

struct SpendingOptions {
  std::string data, from, to, csv, svg;
  std::string level = "chapter";
  std::int64_t limit = 20;
};

CLI::App* AddSpendingReport(CLI::App* report, const std::string& name,
                            const std::string& description,
                            const std::shared_ptr<SpendingOptions>& options) {
  CLI::App* command = report->add_subcommand(name, description);
  command->add_option("--data", options->data, "The agency's data directory")->required();
  command->add_option("--from", options->from, "First day, YYYY-MM-DD (or YYYY-MM)")->required();
  command->add_option("--to", options->to, "Last day, YYYY-MM-DD (or YYYY-MM)")->required();
  command->add_option("--csv", options->csv, "Write the CSV here (default: standard output)");
  command->add_option("--svg", options->svg, "Also draw the chart as SVG here");
  return command;
}

std::string Period(const std::pair<Date, Date>& range) {
  return range.first.ToString() + " to " + range.second.ToString();
}

void RunFacility(const SpendingOptions& o) {
  const auto range = SiDayRange(o.from, o.to);
  SiSession session = SiSession::Open(o.data);
  const auto report = SiService(SpendingByFacility(session.connection(), range.first, range.second),
                                "facility report");
  Emit(SpendingByFacilityCsv(report), o.csv);
  if (!o.svg.empty()) {
    WriteText(o.svg, BarChartSvg(SpendingByFacilityChart(report, Period(range))));
  }
}

void RunDiagnosis(const SpendingOptions& o) {
  if (o.level != "chapter" && o.level != "category") {
    throw CommandFailed("--level: chapter or category", 2);
  }
  const auto range = SiDayRange(o.from, o.to);
  SiSession session = SiSession::Open(o.data);
  const auto report =
      SiService(SpendingByDiagnosis(
                    session.connection(), range.first, range.second,
                    o.level == "chapter" ? DiagnosisLevel::kChapter : DiagnosisLevel::kCategory),
                "diagnosis report");
  Emit(SpendingByDiagnosisCsv(report), o.csv);
  if (!o.svg.empty()) {
    WriteText(o.svg, BarChartSvg(SpendingByDiagnosisChart(report, Period(range))));
  }
}

void RunTopConsumers(const SpendingOptions& o) {
  const auto range = SiDayRange(o.from, o.to);
  SiSession session = SiSession::Open(o.data);
  const auto report = SiService(
      TopConsumers(session.connection(), range.first, range.second, o.limit), "top consumers");
  Emit(TopConsumersCsv(report), o.csv);
  if (!o.svg.empty()) WriteText(o.svg, BarChartSvg(TopConsumersChart(report, Period(range))));
}

struct AccountBalancesOptions {
  std::string data, as_of, csv, svg;
};

void RunAccountBalances(const AccountBalancesOptions& o) {
  const Date as_of = SiDateOption(o.as_of, "--as-of");
  SiSession session = SiSession::Open(o.data);
  const auto distribution =
      SiService(PersonalAccountBalances(session.connection(), as_of, DefaultBalanceBandEdges()),
                "account balances");
  Emit(PersonalAccountBalancesCsv(distribution), o.csv);
  if (!o.svg.empty()) {
    WriteText(o.svg, HistogramSvg(PersonalAccountBalancesChart(distribution, as_of)));
  }
}

struct ForecastOptions {
  std::string data, start, scenario, policy, csv, svg;
  int years = 0;
};

void RunForecast(const ForecastOptions& o) {
  SiSession session = SiSession::Open(o.data);
  const PolicyBook& book = session.policies();
  Scenario scenario;
  if (!o.scenario.empty()) {
    scenario = Check(ParseScenarioJson(ReadFileOrFail(o.scenario)), "scenario " + o.scenario);
  }
  std::optional<Policy> proposed;
  if (!o.policy.empty()) proposed = Check(LoadPolicyFile(o.policy), "policy " + o.policy);
  const YearMonth start = o.start.empty() ? NextMonth() : SiMonthOption(o.start, "--start");
  const auto what_if = SiService(
      ForecastFromRegistry(session.connection(), book, scenario, start, o.years, proposed),
      "forecast");
  Emit(ForecastCsv(what_if, proposed.has_value()), o.csv);
  if (proposed) {
    const Fen change = what_if.pooled_fund_change_fen.back();
    std::printf(
        "The proposed policy moves the pooled fund's balance at the end of year %d by %s"
        " yuan (%s → %s).\n",
        o.years, FormatFen(change).c_str(),
        FormatFen(what_if.current.years.back().pooled_fund_closing_fen).c_str(),
        FormatFen(what_if.proposed.years.back().pooled_fund_closing_fen).c_str());
  }
  if (!o.svg.empty()) {
    LineChart chart{"Pooled-fund balance forecast from " + MonthText(start), "yuan", {}, {}};
    LineSeries current{"current policy", {}};
    LineSeries accounts{"personal accounts (current policy)", {}};
    LineSeries changed{"proposed policy " + o.policy, {}};
    for (std::size_t i = 0; i < what_if.current.years.size(); ++i) {
      chart.x_labels.push_back("year " + std::to_string(i + 1));
      current.values_fen.push_back(what_if.current.years[i].pooled_fund_closing_fen);
      accounts.values_fen.push_back(what_if.current.years[i].personal_accounts_closing_fen);
      if (proposed) changed.values_fen.push_back(what_if.proposed.years[i].pooled_fund_closing_fen);
    }
    chart.series.push_back(current);
    if (proposed) chart.series.push_back(changed);
    chart.series.push_back(accounts);
    WriteText(o.svg, LineChartSvg(chart));
  }
}

}  // namespace

void AddSiReportCommands(CLI::App& si) {
  CLI::App* report = si.add_subcommand(
      "report", "Reports from the monthly runs, payments, claims and card spending (CSV, SVG)");
  report->require_subcommand(1);
  AddReport(report, "fund", "Fund income by month: billed, collected, arrears, allocation, pooled",
            RunFund);
  AddReport(report, "arrears", "Arrears by unit, largest first", RunArrears);
  AddReport(report, "balances", "Personal-account allocation per person over the range, in bands",
            RunBalances);
  {
    auto o = std::make_shared<SpendingOptions>();
    AddSpendingReport(report, "facility",
                      "Spending by facility: claims (billed, pooled, personal, self-pay) and card",
                      o)
        ->callback([o] { RunFacility(*o); });
  }
  {
    auto o = std::make_shared<SpendingOptions>();
    CLI::App* c = AddSpendingReport(
        report, "diagnosis", "Claims by ICD-10 diagnosis: chapter or 3-character category", o);
    c->add_option("--level", o->level, "chapter (default) or category");
    c->callback([o] { RunDiagnosis(*o); });
  }
  {
    auto o = std::make_shared<SpendingOptions>();
    CLI::App* c =
        AddSpendingReport(report, "top-consumers",
                          "The people who cost most: pooled fund + personal account by card", o);
    c->add_option("--limit", o->limit, "How many people (default 20)")->check(CLI::PositiveNumber);
    c->callback([o] { RunTopConsumers(*o); });
  }
  {
    auto o = std::make_shared<AccountBalancesOptions>();
    CLI::App* c = report->add_subcommand(
        "account-balances", "Personal-account balances (allocated less card spending), in bands");
    c->add_option("--data", o->data, "The agency's data directory")->required();
    c->add_option("--as-of", o->as_of, "The day, YYYY-MM-DD")->required();
    c->add_option("--csv", o->csv, "Write the CSV here (default: standard output)");
    c->add_option("--svg", o->svg, "Also draw the chart as SVG here");
    c->callback([o] { RunAccountBalances(*o); });
  }

  auto options = std::make_shared<ForecastOptions>();
  CLI::App* forecast = si.add_subcommand(
      "forecast", "Project the pooled fund and personal accounts 1-5 years from the registry");
  forecast->add_option("--data", options->data, "The agency's data directory")->required();
  forecast->add_option("--years", options->years, "Years to project (1-5)")
      ->required()
      ->check(CLI::Range(1, 5));
  forecast->add_option("--start", options->start, "First projected month, YYYY-MM (default: next)");
  forecast->add_option("--scenario", options->scenario, "Scenario parameters (JSON)");
  forecast->add_option("--policy", options->policy, "A proposed policy to compare (JSON)");
  forecast->add_option("--csv", options->csv, "Write the CSV here (default: standard output)");
  forecast->add_option("--svg", options->svg, "Also draw the forecast as SVG here");
  forecast->callback([options] { RunForecast(*options); });
}

}  // namespace medcard::cli
