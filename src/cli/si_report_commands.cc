// medcard si report fund | arrears | balances, medcard si forecast: the agency's reports, charts
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
#include "common/money.h"
#include "insurance/charts.h"
#include "insurance/forecast.h"
#include "insurance/policy.h"
#include "insurance/registry.h"
#include "insurance/reports.h"
#include "store/store.h"

namespace medcard::cli {
namespace {

namespace fs = std::filesystem;
using namespace medcard::insurance;  // NOLINT(google-build-using-namespace): the commands' domain

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.flush();
  if (!out) throw CommandFailed("cannot write " + path);
}

// The agency's data directory as `medcard si init` made it (si_registry_commands.cc).
struct ReportSession {
  std::string policy_path;
  std::unique_ptr<store::Database> database;
  std::unique_ptr<store::Connection> connection;
};

template <typename T, typename E>
T Db(store::Expected<T, E> r, const std::string& context) {
  if (!r.ok()) throw CommandFailed(context + ": " + r.error().message);
  return std::move(r).value();
}

template <typename T>
T Service(ServiceResult<T> r, const std::string& context) {
  if (!r.ok()) {
    throw CommandFailed(context + ": " + r.error().message,
                        r.error().code == access::ErrorCode::kInvalid ? 2 : 1);
  }
  return std::move(r).value();
}

ReportSession OpenReportSession(const std::string& dir) {
  const std::string path = (fs::path(dir) / "si.json").string();
  if (!fs::exists(path)) {
    throw CommandFailed(dir + " is not an agency data directory (run `medcard si init` first)");
  }
  const auto json = nlohmann::json::parse(ReadFileOrFail(path), nullptr, false);
  if (!json.is_object() || !json.contains("database") || !json["database"].is_string() ||
      !json.contains("policy") || !json["policy"].is_string()) {
    throw CommandFailed(path + ": expected {\"database\": \"...\", \"policy\": \"...\"}");
  }
  ReportSession session;
  session.policy_path = json["policy"].get<std::string>();
  const auto url = json["database"].get<std::string>();
  store::OpenOptions open;
  open.create_if_missing = false;
  session.database = Db(store::Database::Open(url, open), "opening " + store::RedactUrl(url));
  session.connection = Db(session.database->Connect(), "connecting");
  Db(store::Migrate(*session.connection, insurance::Migrations()), "migrating");
  return session;
}

PolicyBook LoadBook(const std::string& path) {
  if (fs::is_directory(path))
    return Check(PolicyBook::LoadDirectory(path), "policy directory " + path);
  PolicyBook book;
  Check(book.Add(Check(LoadPolicyFile(path), "policy " + path)), "policy " + path);
  return book;
}

YearMonth MonthOption(const std::string& text, const std::string& option) {
  auto month = ParseMonthText(text);
  if (!month) throw CommandFailed(option + ": expected YYYY-MM, got '" + text + "'", 2);
  return *month;
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
  auto session = OpenReportSession(o.data);
  const auto months = Service(
      FundByMonth(*session.connection, MonthOption(o.from, "--from"), MonthOption(o.to, "--to")),
      "fund report");
  Emit(FundByMonthCsv(months), o.csv);
  if (!o.svg.empty()) {
    BarChart chart{"Pooled-fund income by month, " + o.from + " to " + o.to, "yuan", {}};
    for (const auto& m : months) chart.bars.push_back({MonthText(m.month), m.pooled_fund_fen});
    WriteText(o.svg, BarChartSvg(chart));
  }
}

void RunArrears(const ReportOptions& o) {
  auto session = OpenReportSession(o.data);
  const auto units = Service(
      ArrearsByUnit(*session.connection, MonthOption(o.from, "--from"), MonthOption(o.to, "--to")),
      "arrears report");
  Emit(ArrearsByUnitCsv(units), o.csv);
  if (!o.svg.empty()) {
    BarChart chart{"Arrears by unit, " + o.from + " to " + o.to, "yuan", {}};
    for (const auto& u : units) chart.bars.push_back({u.unit_code, u.arrears_fen});
    WriteText(o.svg, BarChartSvg(chart));
  }
}

void RunBalances(const ReportOptions& o) {
  auto session = OpenReportSession(o.data);
  const auto bands =
      Service(AllocationDistribution(*session.connection, MonthOption(o.from, "--from"),
                                     MonthOption(o.to, "--to"), DefaultBalanceBandEdges()),
              "balances report");
  Emit(AllocationDistributionCsv(bands), o.csv);
  if (!o.svg.empty()) {
    BarChart chart{
        "Personal-account allocation per person, " + o.from + " to " + o.to, "people", {}};
    for (const auto& b : bands) chart.bars.push_back({BandLabel(b), b.people});
    WriteText(o.svg, HistogramSvg(chart));
  }
}

struct ForecastOptions {
  std::string data, start, scenario, policy, csv, svg;
  int years = 0;
};

void RunForecast(const ForecastOptions& o) {
  auto session = OpenReportSession(o.data);
  const PolicyBook book = LoadBook(session.policy_path);
  Scenario scenario;
  if (!o.scenario.empty()) {
    scenario = Check(ParseScenarioJson(ReadFileOrFail(o.scenario)), "scenario " + o.scenario);
  }
  std::optional<Policy> proposed;
  if (!o.policy.empty()) proposed = Check(LoadPolicyFile(o.policy), "policy " + o.policy);
  const YearMonth start = o.start.empty() ? NextMonth() : MonthOption(o.start, "--start");
  const auto what_if =
      Service(ForecastFromRegistry(*session.connection, book, scenario, start, o.years, proposed),
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
  CLI::App* report =
      si.add_subcommand("report", "Reports from the monthly runs and payments (CSV, SVG charts)");
  report->require_subcommand(1);
  AddReport(report, "fund", "Fund income by month: billed, collected, arrears, allocation, pooled",
            RunFund);
  AddReport(report, "arrears", "Arrears by unit, largest first", RunArrears);
  AddReport(report, "balances", "Personal-account allocation per person over the range, in bands",
            RunBalances);

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
