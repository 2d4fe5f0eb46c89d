// The agency's reports (docs/insurance.md "Reports"): fund income by month, arrears by unit and
// the distribution of what was allocated to personal accounts, from the finished monthly runs
// and the units' payments. Deterministic: the same database gives the same rows and the same
// CSV bytes; money is integer fen, written as yuan with two decimals (common/money.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "insurance/monthly_run.h"
#include "insurance/registry.h"
#include "store/store.h"

namespace medcard::insurance {

// One finished month of the fund.
struct FundMonth {
  YearMonth month;
  std::int64_t people = 0;
  Fen employer_fen = 0;
  Fen employee_fen = 0;
  Fen billed_fen = 0;             // employer + employee
  Fen collected_fen = 0;          // the units' payments against the month's bills
  Fen arrears_fen = 0;            // billed − collected
  Fen personal_account_fen = 0;   // allocated to personal accounts (with the allowance)
  Fen retiree_allowance_fen = 0;  // of which the pooled fund paid for retirees
  Fen pooled_fund_fen = 0;        // net pooled-fund income: billed − personal_account
};
// The finished months in [from, to], oldest first (months never run are left out).
ServiceResult<std::vector<FundMonth>> FundByMonth(store::Connection& connection,
                                                  const YearMonth& from, const YearMonth& to);

struct UnitArrears {
  std::string unit_code;
  std::string unit_name;
  std::int64_t months = 0;  // finished months billed in the range
  Fen billed_fen = 0;
  Fen paid_fen = 0;
  Fen arrears_fen = 0;  // billed − paid; negative: paid ahead
};
// Units billed in [from, to], largest arrears first (then by code).
ServiceResult<std::vector<UnitArrears>> ArrearsByUnit(store::Connection& connection,
                                                      const YearMonth& from, const YearMonth& to);

// A band of the distribution: people whose amount is in [from_fen, to_fen) (to_fen empty: no
// upper bound).
struct BalanceBand {
  Fen from_fen = 0;
  std::optional<Fen> to_fen;
  std::int64_t people = 0;
  Fen total_fen = 0;
};
// The default band edges: 0, 500, 1,000, 2,000, 5,000, 10,000 and 20,000 yuan.
std::vector<Fen> DefaultBalanceBandEdges();
// What each person billed in [from, to] had allocated to the personal account over the range,
// counted in bands (edges strictly ascending, the first one 0). The accounts themselves are
// kept by the bank: this is the agency's side (allocation), not what people have spent.
ServiceResult<std::vector<BalanceBand>> AllocationDistribution(store::Connection& connection,
                                                               const YearMonth& from,
                                                               const YearMonth& to,
                                                               const std::vector<Fen>& edges);

// CSV (RFC 4180: comma-separated, CRLF-free "\n" line ends, fields with ',' '"' or a line end
// quoted), a header line first; money in yuan "12.50".
std::string FundByMonthCsv(const std::vector<FundMonth>& months);
std::string ArrearsByUnitCsv(const std::vector<UnitArrears>& units);
std::string AllocationDistributionCsv(const std::vector<BalanceBand>& bands);

// "500.00–1000.00", "20000.00+": how a band is labelled in CSV and charts.
std::string BandLabel(const BalanceBand& band);
// One CSV field, quoted when it has to be.
std::string CsvField(std::string_view text);

}  // namespace medcard::insurance
