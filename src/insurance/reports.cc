#include "insurance/reports.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include "common/money.h"
#include "insurance/claims.h"

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

// Empty bands for `edges` (the first 0, strictly ascending), or kInvalid naming "bands".
ServiceResult<std::vector<BalanceBand>> EmptyBands(const std::vector<Fen>& edges) {
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
  return bands;
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
  auto empty_bands = EmptyBands(edges);
  if (!empty_bands.ok()) return empty_bands.error();
  std::vector<BalanceBand> bands = std::move(empty_bands).value();
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

// --- Spending reports ---

namespace medcard::insurance {
namespace {

std::optional<access::ServiceError> DayRangeProblem(const Date& from, const Date& to) {
  if (!IsValidDate(from)) return MakeServiceError(ErrorCode::kInvalid, "from: not a date", "from");
  if (!IsValidDate(to)) return MakeServiceError(ErrorCode::kInvalid, "to: not a date", "to");
  if (to < from) return MakeServiceError(ErrorCode::kInvalid, "to: before from", "to");
  return std::nullopt;
}

// The claims that count as spending: the agency has split them (rejected and merely submitted
// ones have paid nothing).
constexpr char kSpentClaims[] =
    " FROM si_claims WHERE state IN ('adjudicated', 'approved', 'paid') AND admission >= ? AND"
    " admission <= ?";
constexpr char kDays[] = " FROM si_consumption WHERE day >= ? AND day <= ?";

// One claim row as the reports need it.
struct SpentClaim {
  std::string person_id;
  std::string facility;
  int grade = 0;
  std::string diagnosis;
  Fen billed_fen = 0, pooled_fund_fen = 0, personal_account_fen = 0, self_pay_fen = 0;
};

ServiceResult<std::vector<SpentClaim>> LoadSpentClaims(store::Connection& connection,
                                                       const store::Params& range) {
  // By admission then id: a later claim's grade overrides an earlier one's.
  auto rows = connection.Query(
      std::string("SELECT person_id, facility, claim_json, total_billed, pooled_fund,"
                  " personal_account, self_pay") +
          kSpentClaims + " ORDER BY admission, id",
      range);
  if (!rows.ok()) return StoreError(rows.error());
  std::vector<SpentClaim> claims;
  claims.reserve(rows->size());
  for (const auto& r : *rows) {
    SpentClaim c{r.Text(0), r.Text(1), 0, {}, r.Int(3), r.Int(4), r.Int(5), r.Int(6)};
    // The claim is stored in the claim-file format the store wrote (claims_store.cc); a row
    // that no longer parses still counts, with an unknown grade and diagnosis.
    if (auto file = ParseClaimJson(r.Text(2)); file.ok()) {
      c.grade = static_cast<int>(file->claim.grade);
      c.diagnosis = file->claim.diagnosis_icd10;
    }
    claims.push_back(std::move(c));
  }
  return claims;
}

// Totals straight from the database, independent of how the rows were grouped.
ServiceResult<SpendingTotals> LoadTotals(store::Connection& connection, const store::Params& range,
                                         bool with_card) {
  SpendingTotals totals;
  auto claims = connection.Query(
      std::string("SELECT COUNT(*), CAST(COALESCE(SUM(total_billed), 0) AS BIGINT),"
                  " CAST(COALESCE(SUM(pooled_fund), 0) AS BIGINT), CAST(COALESCE("
                  "SUM(personal_account), 0) AS BIGINT), CAST(COALESCE(SUM(self_pay), 0) AS"
                  " BIGINT)") +
          kSpentClaims,
      range);
  if (!claims.ok()) return StoreError(claims.error());
  const auto& c = claims->rows.at(0);
  totals.claims = c.Int(0);
  totals.billed_fen = c.Int(1);
  totals.pooled_fund_fen = c.Int(2);
  totals.personal_account_fen = c.Int(3);
  totals.self_pay_fen = c.Int(4);
  std::string people_sql =
      std::string("SELECT COUNT(*) FROM (SELECT DISTINCT person_id") + kSpentClaims;
  store::Params people_params = range;
  if (with_card) {
    auto card = connection.Query(
        std::string("SELECT COUNT(*), CAST(COALESCE(SUM(amount), 0) AS BIGINT)") + kDays, range);
    if (!card.ok()) return StoreError(card.error());
    totals.card_purchases = card->rows.at(0).Int(0);
    totals.card_spent_fen = card->rows.at(0).Int(1);
    people_sql += std::string(" UNION SELECT person_id") + kDays;
    people_params.insert(people_params.end(), range.begin(), range.end());
  }
  auto people = connection.Query(people_sql + ") p", people_params);
  if (!people.ok()) return StoreError(people.error());
  totals.people = people->rows.at(0).Int(0);
  return totals;
}

struct CardSpending {
  std::int64_t purchases = 0;
  Fen spent_fen = 0;
};
ServiceResult<std::map<std::string, CardSpending>> LoadCardSpending(store::Connection& connection,
                                                                    const std::string& key_column,
                                                                    const store::Params& range) {
  auto rows = connection.Query("SELECT " + key_column + ", COUNT(*), CAST(SUM(amount) AS BIGINT)" +
                                   kDays + " GROUP BY " + key_column,
                               range);
  if (!rows.ok()) return StoreError(rows.error());
  std::map<std::string, CardSpending> by_key;
  for (const auto& r : *rows) by_key[r.Text(0)] = {r.Int(1), r.Int(2)};
  return by_key;
}

struct Chapter {
  char first_letter;
  int first;  // the 2-digit number within the letter
  char last_letter;
  int last;
  const char* code;
  const char* title;
};
// The WHO ICD-10 (2019) chapters by their category ranges.
constexpr Chapter kChapters[] = {
    {'A', 0, 'B', 99, "I", "Certain infectious and parasitic diseases"},
    {'C', 0, 'D', 48, "II", "Neoplasms"},
    {'D', 50, 'D', 89, "III",
     "Diseases of the blood and blood-forming organs and certain disorders involving the immune"
     " mechanism"},
    {'E', 0, 'E', 90, "IV", "Endocrine, nutritional and metabolic diseases"},
    {'F', 0, 'F', 99, "V", "Mental and behavioural disorders"},
    {'G', 0, 'G', 99, "VI", "Diseases of the nervous system"},
    {'H', 0, 'H', 59, "VII", "Diseases of the eye and adnexa"},
    {'H', 60, 'H', 95, "VIII", "Diseases of the ear and mastoid process"},
    {'I', 0, 'I', 99, "IX", "Diseases of the circulatory system"},
    {'J', 0, 'J', 99, "X", "Diseases of the respiratory system"},
    {'K', 0, 'K', 93, "XI", "Diseases of the digestive system"},
    {'L', 0, 'L', 99, "XII", "Diseases of the skin and subcutaneous tissue"},
    {'M', 0, 'M', 99, "XIII", "Diseases of the musculoskeletal system and connective tissue"},
    {'N', 0, 'N', 99, "XIV", "Diseases of the genitourinary system"},
    {'O', 0, 'O', 99, "XV", "Pregnancy, childbirth and the puerperium"},
    {'P', 0, 'P', 96, "XVI", "Certain conditions originating in the perinatal period"},
    {'Q', 0, 'Q', 99, "XVII",
     "Congenital malformations, deformations and chromosomal abnormalities"},
    {'R', 0, 'R', 99, "XVIII",
     "Symptoms, signs and abnormal clinical and laboratory findings, not elsewhere classified"},
    {'S', 0, 'T', 98, "XIX", "Injury, poisoning and certain other consequences of external causes"},
    {'V', 1, 'Y', 98, "XX", "External causes of morbidity and mortality"},
    {'Z', 0, 'Z', 99, "XXI", "Factors influencing health status and contact with health services"},
    {'U', 0, 'U', 99, "XXII", "Codes for special purposes"},
};

bool SpentMore(Fen a_primary, Fen b_primary, Fen a_secondary, Fen b_secondary,
               const std::string& a_key, const std::string& b_key) {
  if (a_primary != b_primary) return a_primary > b_primary;
  if (a_secondary != b_secondary) return a_secondary > b_secondary;
  return a_key < b_key;
}

std::string SpendingColumns(std::int64_t claims, Fen billed, Fen pooled, Fen personal,
                            Fen self_pay) {
  return std::to_string(claims) + "," + FormatFen(billed) + "," + FormatFen(pooled) + "," +
         FormatFen(personal) + "," + FormatFen(self_pay);
}

std::string BarLabel(std::string_view text) {
  // Long labels would run into the next bar; the exact value is in the bar's <title>.
  constexpr std::size_t kMaxLabel = 18;
  if (text.size() <= kMaxLabel) return std::string(text);
  return std::string(text.substr(0, kMaxLabel - 3)) + "...";
}

}  // namespace

Icd10Chapter Icd10ChapterOf(std::string_view icd10) {
  if (icd10.size() < 3) return {};
  const char letter = static_cast<char>(std::toupper(static_cast<unsigned char>(icd10[0])));
  if (letter < 'A' || letter > 'Z' || !std::isdigit(static_cast<unsigned char>(icd10[1])) ||
      !std::isdigit(static_cast<unsigned char>(icd10[2]))) {
    return {};
  }
  const int number = (icd10[1] - '0') * 10 + (icd10[2] - '0');
  const int key = letter * 100 + number;
  for (const auto& chapter : kChapters) {
    if (key >= chapter.first_letter * 100 + chapter.first &&
        key <= chapter.last_letter * 100 + chapter.last) {
      return {chapter.code, chapter.title};
    }
  }
  return {};
}

ServiceResult<FacilityReport> SpendingByFacility(store::Connection& connection, const Date& from,
                                                 const Date& to) {
  if (auto problem = DayRangeProblem(from, to)) return *problem;
  const store::Params range{from.ToString(), to.ToString()};
  auto claims = LoadSpentClaims(connection, range);
  if (!claims.ok()) return claims.error();
  auto card = LoadCardSpending(connection, "merchant_id", range);
  if (!card.ok()) return card.error();
  auto totals = LoadTotals(connection, range, /*with_card=*/true);
  if (!totals.ok()) return totals.error();

  std::map<std::string, FacilitySpending> by_facility;
  for (const auto& c : *claims) {
    FacilitySpending& f = by_facility[c.facility];
    f.facility = c.facility;
    if (c.grade != 0) f.grade = c.grade;
    f.claims += 1;
    f.billed_fen += c.billed_fen;
    f.pooled_fund_fen += c.pooled_fund_fen;
    f.personal_account_fen += c.personal_account_fen;
    f.self_pay_fen += c.self_pay_fen;
  }
  for (const auto& [merchant, spending] : *card) {
    FacilitySpending& f = by_facility[merchant];
    f.facility = merchant;
    f.card_purchases = spending.purchases;
    f.card_spent_fen = spending.spent_fen;
  }
  FacilityReport report;
  report.totals = *totals;
  for (auto& [code, f] : by_facility) report.rows.push_back(std::move(f));
  std::sort(report.rows.begin(), report.rows.end(),
            [](const FacilitySpending& a, const FacilitySpending& b) {
              return SpentMore(a.billed_fen + a.card_spent_fen, b.billed_fen + b.card_spent_fen,
                               a.billed_fen, b.billed_fen, a.facility, b.facility);
            });
  return report;
}

ServiceResult<DiagnosisReport> SpendingByDiagnosis(store::Connection& connection, const Date& from,
                                                   const Date& to, DiagnosisLevel level) {
  if (auto problem = DayRangeProblem(from, to)) return *problem;
  const store::Params range{from.ToString(), to.ToString()};
  auto claims = LoadSpentClaims(connection, range);
  if (!claims.ok()) return claims.error();
  auto totals = LoadTotals(connection, range, /*with_card=*/false);
  if (!totals.ok()) return totals.error();

  std::map<std::string, DiagnosisSpending> by_code;
  std::map<std::string, std::set<std::string>> people_by_code;
  for (const auto& c : *claims) {
    DiagnosisSpending key;
    if (level == DiagnosisLevel::kChapter) {
      const Icd10Chapter chapter = Icd10ChapterOf(c.diagnosis);
      key.code = chapter.code.empty() ? "?" : chapter.code;
      key.title = chapter.title;
    } else {
      key.code = c.diagnosis.size() >= 3 ? c.diagnosis.substr(0, 3) : std::string("?");
      for (char& ch : key.code)
        ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    }
    DiagnosisSpending& d = by_code[key.code];
    if (d.code.empty()) d = key;
    d.claims += 1;
    d.billed_fen += c.billed_fen;
    d.pooled_fund_fen += c.pooled_fund_fen;
    d.personal_account_fen += c.personal_account_fen;
    d.self_pay_fen += c.self_pay_fen;
    people_by_code[key.code].insert(c.person_id);
  }
  DiagnosisReport report;
  report.totals = *totals;
  for (auto& [code, d] : by_code) {
    d.people = static_cast<std::int64_t>(people_by_code[code].size());
    report.rows.push_back(std::move(d));
  }
  std::sort(report.rows.begin(), report.rows.end(),
            [](const DiagnosisSpending& a, const DiagnosisSpending& b) {
              return SpentMore(a.billed_fen, b.billed_fen, a.pooled_fund_fen, b.pooled_fund_fen,
                               a.code, b.code);
            });
  return report;
}

ServiceResult<TopConsumersReport> TopConsumers(store::Connection& connection, const Date& from,
                                               const Date& to, std::int64_t limit) {
  if (auto problem = DayRangeProblem(from, to)) return *problem;
  if (limit < 1) return MakeServiceError(ErrorCode::kInvalid, "limit: must be at least 1", "limit");
  const store::Params range{from.ToString(), to.ToString()};
  auto claims = LoadSpentClaims(connection, range);
  if (!claims.ok()) return claims.error();
  auto card = LoadCardSpending(connection, "person_id", range);
  if (!card.ok()) return card.error();
  auto totals = LoadTotals(connection, range, /*with_card=*/true);
  if (!totals.ok()) return totals.error();

  std::map<std::string, ConsumerSpending> by_person;
  for (const auto& c : *claims) {
    ConsumerSpending& p = by_person[c.person_id];
    p.person_id = c.person_id;
    p.claims += 1;
    p.billed_fen += c.billed_fen;
    p.pooled_fund_fen += c.pooled_fund_fen;
    p.claims_personal_account_fen += c.personal_account_fen;
    p.self_pay_fen += c.self_pay_fen;
  }
  for (const auto& [person, spending] : *card) {
    ConsumerSpending& p = by_person[person];
    p.person_id = person;
    p.card_purchases = spending.purchases;
    p.card_spent_fen = spending.spent_fen;
  }
  TopConsumersReport report;
  report.totals = *totals;
  report.total_fen = totals->pooled_fund_fen + totals->card_spent_fen;
  for (auto& [person, p] : by_person) {
    p.total_fen = p.pooled_fund_fen + p.card_spent_fen;
    report.rows.push_back(std::move(p));
  }
  const auto keep = std::min<std::size_t>(report.rows.size(), static_cast<std::size_t>(limit));
  std::partial_sort(report.rows.begin(), report.rows.begin() + static_cast<std::ptrdiff_t>(keep),
                    report.rows.end(), [](const ConsumerSpending& a, const ConsumerSpending& b) {
                      return SpentMore(a.total_fen, b.total_fen, a.billed_fen, b.billed_fen,
                                       a.person_id, b.person_id);
                    });
  report.rows.resize(keep);
  for (auto& p : report.rows) {
    auto name = connection.Query("SELECT name FROM si_people WHERE ssn = ?", {p.person_id});
    if (!name.ok()) return StoreError(name.error());
    if (!name->empty()) p.name = name->rows.front().Text(0);
  }
  return report;
}

ServiceResult<BalanceDistribution> PersonalAccountBalances(store::Connection& connection,
                                                           const Date& as_of,
                                                           const std::vector<Fen>& edges) {
  if (!IsValidDate(as_of))
    return MakeServiceError(ErrorCode::kInvalid, "as_of: not a date", "as_of");
  auto empty_bands = EmptyBands(edges);
  if (!empty_bands.ok()) return empty_bands.error();
  BalanceDistribution distribution;
  distribution.bands = std::move(empty_bands).value();

  std::map<std::string, Fen> balance;
  auto allocated = connection.Query(
      std::string("SELECT b.ssn, CAST(SUM(b.personal_account_fen) AS BIGINT) FROM si_bill_lines b"
                  " WHERE b.month <= ?") +
          kFinished + " GROUP BY b.ssn",
      {MonthText({as_of.year, as_of.month})});
  if (!allocated.ok()) return StoreError(allocated.error());
  for (const auto& r : *allocated) balance[r.Text(0)] += r.Int(1);
  auto spent = connection.Query(
      "SELECT person_id, CAST(SUM(amount) AS BIGINT) FROM si_consumption WHERE day <= ?"
      " GROUP BY person_id",
      {as_of.ToString()});
  if (!spent.ok()) return StoreError(spent.error());
  for (const auto& r : *spent) balance[r.Text(0)] -= r.Int(1);

  for (const auto& [person, amount] : balance) {
    distribution.people += 1;
    distribution.total_fen += amount;
    if (amount < 0) {
      distribution.overdrawn_people += 1;
      distribution.overdrawn_fen += amount;
      continue;
    }
    auto it = std::upper_bound(edges.begin(), edges.end(), amount);
    const auto index = static_cast<std::size_t>(it - edges.begin() - 1);
    distribution.bands[index].people += 1;
    distribution.bands[index].total_fen += amount;
  }
  return distribution;
}

std::string SpendingByFacilityCsv(const FacilityReport& report) {
  std::string csv =
      "facility,grade,claims,billed,pooled_fund,personal_account,self_pay,card_purchases,"
      "card_spent\n";
  for (const auto& f : report.rows) {
    csv += CsvField(f.facility) + "," + (f.grade == 0 ? std::string() : std::to_string(f.grade)) +
           "," +
           SpendingColumns(f.claims, f.billed_fen, f.pooled_fund_fen, f.personal_account_fen,
                           f.self_pay_fen) +
           "," + std::to_string(f.card_purchases) + "," + FormatFen(f.card_spent_fen) + "\n";
  }
  const SpendingTotals& t = report.totals;
  csv += "total,," +
         SpendingColumns(t.claims, t.billed_fen, t.pooled_fund_fen, t.personal_account_fen,
                         t.self_pay_fen) +
         "," + std::to_string(t.card_purchases) + "," + FormatFen(t.card_spent_fen) + "\n";
  return csv;
}

std::string SpendingByDiagnosisCsv(const DiagnosisReport& report) {
  std::string csv = "diagnosis,title,claims,people,billed,pooled_fund,personal_account,self_pay\n";
  const auto line = [](std::int64_t claims, std::int64_t people, Fen billed, Fen pooled,
                       Fen personal, Fen self_pay) {
    return std::to_string(claims) + "," + std::to_string(people) + "," + FormatFen(billed) + "," +
           FormatFen(pooled) + "," + FormatFen(personal) + "," + FormatFen(self_pay) + "\n";
  };
  for (const auto& d : report.rows) {
    csv += CsvField(d.code) + "," + CsvField(d.title) + "," +
           line(d.claims, d.people, d.billed_fen, d.pooled_fund_fen, d.personal_account_fen,
                d.self_pay_fen);
  }
  const SpendingTotals& t = report.totals;
  csv += "total,," + line(t.claims, t.people, t.billed_fen, t.pooled_fund_fen,
                          t.personal_account_fen, t.self_pay_fen);
  return csv;
}

std::string TopConsumersCsv(const TopConsumersReport& report) {
  std::string csv =
      "rank,person,name,claims,billed,pooled_fund,claims_personal_account,self_pay,"
      "card_purchases,card_spent,total\n";
  std::int64_t rank = 0;
  for (const auto& p : report.rows) {
    csv += std::to_string(++rank) + "," + CsvField(p.person_id) + "," + CsvField(p.name) + "," +
           SpendingColumns(p.claims, p.billed_fen, p.pooled_fund_fen, p.claims_personal_account_fen,
                           p.self_pay_fen) +
           "," + std::to_string(p.card_purchases) + "," + FormatFen(p.card_spent_fen) + "," +
           FormatFen(p.total_fen) + "\n";
  }
  const SpendingTotals& t = report.totals;
  csv += "total,," + std::to_string(t.people) + " people," +
         SpendingColumns(t.claims, t.billed_fen, t.pooled_fund_fen, t.personal_account_fen,
                         t.self_pay_fen) +
         "," + std::to_string(t.card_purchases) + "," + FormatFen(t.card_spent_fen) + "," +
         FormatFen(report.total_fen) + "\n";
  return csv;
}

std::string PersonalAccountBalancesCsv(const BalanceDistribution& distribution) {
  std::string csv = "band,from,to,people,total\n";
  if (distribution.overdrawn_people > 0) {
    csv += "overdrawn,,0.00," + std::to_string(distribution.overdrawn_people) + "," +
           FormatFen(distribution.overdrawn_fen) + "\n";
  }
  for (const auto& b : distribution.bands) {
    csv += BandLabel(b) + "," + FormatFen(b.from_fen) + "," +
           (b.to_fen ? FormatFen(*b.to_fen) : std::string()) + "," + std::to_string(b.people) +
           "," + FormatFen(b.total_fen) + "\n";
  }
  csv += "total,,," + std::to_string(distribution.people) + "," +
         FormatFen(distribution.total_fen) + "\n";
  return csv;
}

BarChart SpendingByFacilityChart(const FacilityReport& report, std::string_view period) {
  BarChart chart{"Spending by facility (claims billed + card), " + std::string(period), "yuan", {}};
  for (const auto& f : report.rows) {
    if (chart.bars.size() == kMaxChartBars) break;
    chart.bars.push_back({BarLabel(f.facility), f.billed_fen + f.card_spent_fen});
  }
  return chart;
}

BarChart SpendingByDiagnosisChart(const DiagnosisReport& report, std::string_view period) {
  BarChart chart{"Claims billed by diagnosis, " + std::string(period), "yuan", {}};
  for (const auto& d : report.rows) {
    if (chart.bars.size() == kMaxChartBars) break;
    chart.bars.push_back({BarLabel(d.code), d.billed_fen});
  }
  return chart;
}

BarChart TopConsumersChart(const TopConsumersReport& report, std::string_view period) {
  BarChart chart{"Top consumers (pooled fund + card), " + std::string(period), "yuan", {}};
  for (const auto& p : report.rows) {
    if (chart.bars.size() == kMaxChartBars) break;
    chart.bars.push_back({BarLabel(p.person_id), p.total_fen});
  }
  return chart;
}

BarChart PersonalAccountBalancesChart(const BalanceDistribution& distribution, const Date& as_of) {
  BarChart chart{"Personal-account balances on " + as_of.ToString(), "people", {}};
  if (distribution.overdrawn_people > 0) {
    chart.bars.push_back({"overdrawn", distribution.overdrawn_people});
  }
  for (const auto& b : distribution.bands) chart.bars.push_back({BandLabel(b), b.people});
  return chart;
}

}  // namespace medcard::insurance
