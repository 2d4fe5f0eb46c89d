// The agency's reports (docs/insurance.md "Reports"): fund income by month, arrears by unit and
// the distribution of what was allocated to personal accounts, from the finished monthly runs
// and the units' payments. Deterministic: the same database gives the same rows and the same
// CSV bytes; money is integer fen, written as yuan with two decimals (common/money.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/bcd.h"
#include "insurance/charts.h"
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

// --- Spending (docs/insurance.md "Spending reports") ---
// What was spent in a period of days [from, to] (both inclusive), from two sources:
//   - the stored claims (claims_store.h) admitted in the period that the agency adjudicated,
//     approved or paid (submitted and rejected claims are left out): the bill and its split into
//     pooled fund / personal account / self-pay;
//   - the bank's consumption detail (consumption.h) for the days in the period: what the
//     cardholders spent from their personal accounts at the bank's merchants (the personal
//     account's share of a claim is paid this way too, so it is not added to the claims' figures).
// Every report comes with totals computed by the database on their own (not by adding up the
// rows), so a caller or a test can check that the rows add up to the fen.

// Spending at one facility: a facility's claims (by its code) and the card purchases at the
// merchant with the same id (the scheme gives a facility's POS merchant its facility code).
struct FacilitySpending {
  std::string facility;  // facility code = merchant id
  // The facility's grade as its latest claim in the period gives it (1..3); 0: no claims, only
  // card purchases (a pharmacy, or a facility that made no claim in the period).
  int grade = 0;
  std::int64_t claims = 0;
  Fen billed_fen = 0;  // pooled + personal + self-pay
  Fen pooled_fund_fen = 0;
  Fen personal_account_fen = 0;  // the claims' personal-account share
  Fen self_pay_fen = 0;
  std::int64_t card_purchases = 0;  // consumption detail lines at the merchant
  Fen card_spent_fen = 0;
};
struct SpendingTotals {
  std::int64_t claims = 0;
  std::int64_t people = 0;  // distinct people with a claim or a card purchase
  Fen billed_fen = 0;
  Fen pooled_fund_fen = 0;
  Fen personal_account_fen = 0;
  Fen self_pay_fen = 0;
  std::int64_t card_purchases = 0;
  Fen card_spent_fen = 0;
};
struct FacilityReport {
  std::vector<FacilitySpending> rows;  // largest billed + card spent first, then by code
  SpendingTotals totals;
};
ServiceResult<FacilityReport> SpendingByFacility(store::Connection& connection, const Date& from,
                                                 const Date& to);

// Spending by ICD-10 diagnosis (claims only: card purchases carry no diagnosis).
enum class DiagnosisLevel {
  kChapter,   // the WHO ICD-10 chapter: "IX" (I00–I99) "Diseases of the circulatory system"
  kCategory,  // the 3-character category: "I21"
};
struct DiagnosisSpending {
  std::string code;   // "IX" or "I21"; "?" for a code outside every chapter
  std::string title;  // the chapter's title; empty for a category
  std::int64_t claims = 0;
  std::int64_t people = 0;  // distinct people
  Fen billed_fen = 0;
  Fen pooled_fund_fen = 0;
  Fen personal_account_fen = 0;
  Fen self_pay_fen = 0;
};
struct DiagnosisReport {
  std::vector<DiagnosisSpending> rows;  // largest billed first, then by code
  SpendingTotals totals;                // card_purchases/card_spent_fen stay 0
};
ServiceResult<DiagnosisReport> SpendingByDiagnosis(store::Connection& connection, const Date& from,
                                                   const Date& to, DiagnosisLevel level);
// The chapter of an ICD-10 code ("I21.0" → {"IX", "Diseases of the circulatory system"}); empty
// code when the letter and number fall in no chapter.
struct Icd10Chapter {
  std::string code;
  std::string title;
};
Icd10Chapter Icd10ChapterOf(std::string_view icd10);

// The people who cost the scheme most in the period: total = what the pooled fund paid on
// their claims + what they spent from the personal account by card. Self-pay is the person's
// own money and does not count towards the rank.
struct ConsumerSpending {
  std::string person_id;  // ssn
  std::string name;       // from the registry; empty if the person is not in it
  std::int64_t claims = 0;
  Fen billed_fen = 0;
  Fen pooled_fund_fen = 0;
  Fen claims_personal_account_fen = 0;  // the claims' personal-account share (paid by card)
  Fen self_pay_fen = 0;
  std::int64_t card_purchases = 0;
  Fen card_spent_fen = 0;  // personal account spent by card (consumption detail)
  Fen total_fen = 0;       // pooled_fund_fen + card_spent_fen
};
struct TopConsumersReport {
  std::vector<ConsumerSpending> rows;  // at most `limit`, largest total first, then by person id
  SpendingTotals totals;               // over everyone in the period, not only the rows
  Fen total_fen = 0;                   // totals.pooled_fund_fen + totals.card_spent_fen
};
// kInvalid when limit < 1.
ServiceResult<TopConsumersReport> TopConsumers(store::Connection& connection, const Date& from,
                                               const Date& to, std::int64_t limit);

// Personal-account balances (the agency's estimate): per person with an allocation, what the
// finished monthly runs allocated up to and including the month of `as_of`, less what the
// person spent by card (consumption detail) up to and including `as_of`, in bands of `edges`
// (as AllocationDistribution). A person whose spending exceeds the allocations (detail for
// money the agency did not allocate, e.g. a transfer from another area) is counted in
// `overdrawn`, outside the bands. People: everyone with an allocation or a card purchase.
struct BalanceDistribution {
  std::vector<BalanceBand> bands;
  std::int64_t overdrawn_people = 0;
  Fen overdrawn_fen = 0;  // the sum of the negative balances (≤ 0)
  std::int64_t people = 0;
  Fen total_fen = 0;  // the sum of all balances, bands and overdrawn
};
ServiceResult<BalanceDistribution> PersonalAccountBalances(store::Connection& connection,
                                                           const Date& as_of,
                                                           const std::vector<Fen>& edges);

std::string SpendingByFacilityCsv(const FacilityReport& report);
std::string SpendingByDiagnosisCsv(const DiagnosisReport& report);
std::string TopConsumersCsv(const TopConsumersReport& report);
std::string PersonalAccountBalancesCsv(const BalanceDistribution& distribution);

// The reports' charts (charts.h), titled with `period` (e.g. "2026-11-01 to 2026-11-30"): a bar
// per facility (claims billed + card spent), per diagnosis (billed), per consumer (total), the
// first kMaxChartBars rows only; balances as a histogram of people per band (overdrawn first
// when there are any).
inline constexpr std::size_t kMaxChartBars = 20;
BarChart SpendingByFacilityChart(const FacilityReport& report, std::string_view period);
BarChart SpendingByDiagnosisChart(const DiagnosisReport& report, std::string_view period);
BarChart TopConsumersChart(const TopConsumersReport& report, std::string_view period);
BarChart PersonalAccountBalancesChart(const BalanceDistribution& distribution, const Date& as_of);

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
