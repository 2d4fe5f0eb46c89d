#include "insurance/reports.h"

#include <algorithm>
#include <map>

#include "common/money.h"

namespace medcard::insurance {
namespace {

using access::ErrorCode;
using access::MakeServiceError;

std::optional<access::ServiceError> RangeProblem(const YearMonth& from, const YearMonth& to) {
  const auto valid = [](const YearMonth& m) {
    return m.year >= 1900 && m.year <= 9999 && m.month >= 1 && m.month <= 12;
  };
  if (!valid(from)) return MakeServiceError(ErrorCode::kInvalid, "from: not a month", "from");
  if (!valid(to)) return MakeServiceError(ErrorCode::kInvalid, "to: not a month", "to");
  if (to < from) return MakeServiceError(ErrorCode::kInvalid, "to: before from", "to");
  return std::nullopt;
}

// Only finished runs count: a run that stopped half way has some of its bill lines only.
constexpr char kFinished[] =
    " AND EXISTS (SELECT 1 FROM si_month_runs r WHERE r.month = b.month AND r.state = 'finished')";

}  // namespace

ServiceResult<std::vector<FundMonth>> FundByMonth(store::Connection& connection,
                                                  const YearMonth& from, const YearMonth& to) {
  if (auto problem = RangeProblem(from, to)) return *problem;
  const store::Params range{MonthText(from), MonthText(to)};
  auto rows = connection.Query(
      std::string("SELECT b.month, CAST(SUM(b.people) AS BIGINT), CAST(SUM(b.employer_fen) AS"
                  " BIGINT), CAST(SUM(b.employee_fen) AS BIGINT), CAST(SUM(b.personal_account_fen)"
                  " AS BIGINT), CAST(SUM(b.retiree_allowance_fen) AS BIGINT) FROM si_unit_bills b"
                  " WHERE b.month >= ? AND b.month <= ?") +
          kFinished + " GROUP BY b.month ORDER BY b.month",
      range);
  if (!rows.ok()) return StoreError(rows.error());
  auto paid = connection.Query(
      "SELECT month, CAST(SUM(amount) AS BIGINT) FROM si_payments WHERE month >= ? AND month <= ?"
      " GROUP BY month",
      range);
  if (!paid.ok()) return StoreError(paid.error());
  std::map<std::string, Fen> paid_by_month;
  for (const auto& r : *paid) paid_by_month[r.Text(0)] = r.Int(1);
  std::vector<FundMonth> months;
  for (const auto& r : *rows) {
    FundMonth m;
    m.month = ParseMonthText(r.Text(0)).value_or(YearMonth{});
    m.people = r.Int(1);
    m.employer_fen = r.Int(2);
    m.employee_fen = r.Int(3);
    m.billed_fen = m.employer_fen + m.employee_fen;
    m.personal_account_fen = r.Int(4);
    m.retiree_allowance_fen = r.Int(5);
    m.pooled_fund_fen = m.billed_fen - m.personal_account_fen;
    const auto p = paid_by_month.find(r.Text(0));
    m.collected_fen = p == paid_by_month.end() ? 0 : p->second;
    m.arrears_fen = m.billed_fen - m.collected_fen;
    months.push_back(m);
  }
  return months;
}

ServiceResult<std::vector<UnitArrears>> ArrearsByUnit(store::Connection& connection,
                                                      const YearMonth& from, const YearMonth& to) {
  if (auto problem = RangeProblem(from, to)) return *problem;
  const store::Params range{MonthText(from), MonthText(to)};
  auto rows = connection.Query(
      std::string("SELECT b.unit_code, u.name, COUNT(*), CAST(SUM(b.employer_fen + b.employee_fen)"
                  " AS BIGINT) FROM si_unit_bills b JOIN si_units u ON u.code = b.unit_code"
                  " WHERE b.month >= ? AND b.month <= ?") +
          kFinished + " GROUP BY b.unit_code, u.name",
      range);
  if (!rows.ok()) return StoreError(rows.error());
  auto paid = connection.Query(
      std::string("SELECT p.unit_code, CAST(SUM(p.amount) AS BIGINT) FROM si_payments p"
                  " WHERE p.month >= ? AND p.month <= ? AND EXISTS (SELECT 1 FROM si_unit_bills b"
                  " WHERE b.unit_code = p.unit_code AND b.month = p.month") +
          kFinished + ") GROUP BY p.unit_code",
      range);
  if (!paid.ok()) return StoreError(paid.error());
  std::map<std::string, Fen> paid_by_unit;
  for (const auto& r : *paid) paid_by_unit[r.Text(0)] = r.Int(1);
  std::vector<UnitArrears> units;
  for (const auto& r : *rows) {
    UnitArrears u{r.Text(0), r.Text(1), r.Int(2), r.Int(3), 0, 0};
    const auto p = paid_by_unit.find(u.unit_code);
    u.paid_fen = p == paid_by_unit.end() ? 0 : p->second;
    u.arrears_fen = u.billed_fen - u.paid_fen;
    units.push_back(std::move(u));
  }
  std::sort(units.begin(), units.end(), [](const UnitArrears& a, const UnitArrears& b) {
    if (a.arrears_fen != b.arrears_fen) return a.arrears_fen > b.arrears_fen;
    return a.unit_code < b.unit_code;
  });
  return units;
}

std::vector<Fen> DefaultBalanceBandEdges() {
  return {0, 50'000, 100'000, 200'000, 500'000, 1'000'000, 2'000'000};
}

ServiceResult<std::vector<BalanceBand>> AllocationDistribution(store::Connection& connection,
                                                               const YearMonth& from,
                                                               const YearMonth& to,
                                                               const std::vector<Fen>& edges) {
  if (auto problem = RangeProblem(from, to)) return *problem;
  if (edges.empty() || edges.front() != 0) {
    return MakeServiceError(ErrorCode::kInvalid, "bands: the first edge must be 0", "bands");
  }
  for (std::size_t i = 1; i < edges.size(); ++i) {
    if (edges[i] <= edges[i - 1]) {
      return MakeServiceError(ErrorCode::kInvalid, "bands: edges must be strictly ascending",
                              "bands");
    }
  }
  std::vector<BalanceBand> bands;
  for (std::size_t i = 0; i < edges.size(); ++i) {
    BalanceBand band;
    band.from_fen = edges[i];
    if (i + 1 < edges.size()) band.to_fen = edges[i + 1];
    bands.push_back(band);
  }
  auto rows = connection.Query(
      std::string("SELECT b.ssn, CAST(SUM(b.personal_account_fen) AS BIGINT) FROM si_bill_lines b"
                  " WHERE b.month >= ? AND b.month <= ?") +
          kFinished + " GROUP BY b.ssn",
      {MonthText(from), MonthText(to)});
  if (!rows.ok()) return StoreError(rows.error());
  for (const auto& r : *rows) {
    const Fen amount = r.Int(1);
    // The last band whose lower edge is at or below the amount (allocations are never negative).
    auto it = std::upper_bound(edges.begin(), edges.end(), amount);
    const auto index =
        static_cast<std::size_t>(std::max<std::ptrdiff_t>(0, it - edges.begin() - 1));
    bands[index].people += 1;
    bands[index].total_fen += amount;
  }
  return bands;
}

std::string CsvField(std::string_view text) {
  if (text.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(text);
  std::string quoted = "\"";
  for (const char c : text) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  return quoted + "\"";
}

std::string FundByMonthCsv(const std::vector<FundMonth>& months) {
  std::string csv =
      "month,people,employer,employee,billed,collected,arrears,personal_account_allocation,"
      "retiree_allowance,pooled_fund_income\n";
  for (const auto& m : months) {
    csv += MonthText(m.month) + "," + std::to_string(m.people) + "," + FormatFen(m.employer_fen) +
           "," + FormatFen(m.employee_fen) + "," + FormatFen(m.billed_fen) + "," +
           FormatFen(m.collected_fen) + "," + FormatFen(m.arrears_fen) + "," +
           FormatFen(m.personal_account_fen) + "," + FormatFen(m.retiree_allowance_fen) + "," +
           FormatFen(m.pooled_fund_fen) + "\n";
  }
  return csv;
}

std::string ArrearsByUnitCsv(const std::vector<UnitArrears>& units) {
  std::string csv = "unit,name,months,billed,paid,arrears\n";
  for (const auto& u : units) {
    csv += CsvField(u.unit_code) + "," + CsvField(u.unit_name) + "," + std::to_string(u.months) +
           "," + FormatFen(u.billed_fen) + "," + FormatFen(u.paid_fen) + "," +
           FormatFen(u.arrears_fen) + "\n";
  }
  return csv;
}

std::string BandLabel(const BalanceBand& band) {
  if (!band.to_fen) return FormatFen(band.from_fen) + "+";
  return FormatFen(band.from_fen) + "-" + FormatFen(*band.to_fen);
}

std::string AllocationDistributionCsv(const std::vector<BalanceBand>& bands) {
  std::string csv = "band,from,to,people,total\n";
  for (const auto& b : bands) {
    csv += BandLabel(b) + "," + FormatFen(b.from_fen) + "," +
           (b.to_fen ? FormatFen(*b.to_fen) : std::string()) + "," + std::to_string(b.people) +
           "," + FormatFen(b.total_fen) + "\n";
  }
  return csv;
}

}  // namespace medcard::insurance
