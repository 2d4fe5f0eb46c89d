#include "insurance/claims.h"

#include <algorithm>
#include <limits>

#include <nlohmann/json.hpp>

#include "common/money.h"
#include "insurance/json_fields.h"

namespace medcard::insurance {
namespace {

using nlohmann::json;

// Keeps every sum and bp product inside 64 bits (ApplyBp's precondition).
constexpr Fen kMaxLineFen = 100'000'000'000;   // 1,000,000,000 yuan
constexpr Fen kMaxClaimFen = 900'000'000'000;  // 9,000,000,000 yuan
constexpr std::size_t kMaxLines = 100'000;

bool IsAsciiDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAsciiUpper(char c) { return c >= 'A' && c <= 'Z'; }
bool IsAsciiAlnum(char c) { return IsAsciiDigit(c) || IsAsciiUpper(c) || (c >= 'a' && c <= 'z'); }

std::string Yuan(Fen fen) { return FormatFen(fen); }

std::string Percent(BasisPoints bp) {
  // 1500 → "15%", 1250 → "12.5%", 1234 → "12.34%".
  std::string text = std::to_string(bp / 100);
  if (const int rest = bp % 100; rest != 0) {
    text += rest % 10 == 0 ? "." + std::to_string(rest / 10)
                           : (rest < 10 ? ".0" : ".") + std::to_string(rest);
  }
  return text + "%";
}

std::string BandName(const std::vector<CopayBand>& bands, std::size_t index) {
  const std::string from = index == 0 ? "0" : Yuan(*bands[index - 1].upto_fen);
  const auto& upto = bands[index].upto_fen;
  return "band " + std::to_string(index + 1) + " (" + from + "–" + (upto ? Yuan(*upto) : "") +
         " yuan)";
}

// Splits the adjudication's person-share steps between the personal account (where the policy
// lets it pay, up to the balance) and self-pay.
void PayFromPersonalAccount(const PersonalAccountUse& use, Fen balance_fen,
                            std::vector<ExplanationStep>* steps) {
  const auto account_may_pay = [&](const std::string& rule) {
    return (rule == "deductible" && use.deductible) || (rule == "copay" && use.copay) ||
           (rule == "partly_covered_self_pay" && use.partly_covered_self_pay) ||
           (rule == "not_covered" && use.not_covered) || (rule == "annual_cap" && use.above_cap) ||
           (rule == "outpatient" && use.outpatient);
  };
  std::vector<ExplanationStep> result;
  Fen balance = std::max<Fen>(balance_fen, 0);
  for (auto& step : *steps) {
    if (step.payer != Payer::kSelfPay || step.amount_fen == 0 || !account_may_pay(step.rule)) {
      result.push_back(std::move(step));
      continue;
    }
    const Fen from_account = std::min(step.amount_fen, balance);
    balance -= from_account;
    if (from_account > 0) {
      ExplanationStep paid = step;
      paid.amount_fen = from_account;
      paid.payer = Payer::kPersonalAccount;
      paid.detail += "; paid from the personal account";
      result.push_back(std::move(paid));
    }
    if (from_account < step.amount_fen) {
      step.amount_fen -= from_account;
      step.detail += from_account > 0 || balance_fen > 0
                         ? "; personal account exhausted, self-pay"
                         : "; no personal account balance, self-pay";
      result.push_back(std::move(step));
    }
  }
  *steps = std::move(result);
}

void Total(Adjudication* a) {
  for (const auto& step : a->steps) {
    switch (step.payer) {
      case Payer::kPooledFund:
        a->pooled_fund_fen += step.amount_fen;
        break;
      case Payer::kPersonalAccount:
        a->personal_account_fen += step.amount_fen;
        break;
      case Payer::kSelfPay:
        a->self_pay_fen += step.amount_fen;
        break;
    }
    if (step.payer == Payer::kPooledFund) continue;
    if (step.rule == "deductible") a->deductible_fen += step.amount_fen;
    if (step.rule == "copay") a->copay_fen += step.amount_fen;
    if (step.rule == "not_covered") a->not_covered_fen += step.amount_fen;
    if (step.rule == "partly_covered_self_pay") a->partly_covered_self_pay_fen += step.amount_fen;
    if (step.rule == "annual_cap") a->above_cap_fen += step.amount_fen;
  }
}

// The inpatient walk: each line's eligible cost continues the admission's running cost position
// through the deductible and then the grade's cost bands (docs/insurance.md, "Claims").
void AdjudicateInpatient(const Policy& policy, const Claim& claim, const YearSoFar& year,
                         Adjudication* a) {
  const bool first_admission = year.admissions_adjudicated == 0;
  const Fen deductible = policy.DeductibleFen(first_admission);
  const auto& bands = policy.CopayBands(claim.grade);
  const bool retiree = claim.category == PersonCategory::kRetiree;
  const BasisPoints retiree_factor = RateForAge(policy.benefits.retiree_copay_factor, claim.age);
  Fen cap_left = std::max<Fen>(0, policy.AnnualCapFen() - year.pooled_fund_paid_fen);
  Fen position = std::max<Fen>(0, year.eligible_cost_earlier_bills_fen);
  if (year.eligible_cost_earlier_bills_fen > 0) {
    a->steps.push_back(
        {-1, "interim_bill",
         "continues an admission with " + Yuan(position) + " yuan of eligible cost already billed",
         0, Payer::kSelfPay});
  }
  if (cap_left == 0) {
    a->cap_reached = true;
  }

  for (std::size_t i = 0; i < claim.lines.size(); ++i) {
    const auto& line = claim.lines[i];
    const int index = static_cast<int>(i);
    Fen eligible = line.amount_fen;
    if (line.category == CatalogueCategory::kNotCovered) {
      a->steps.push_back({index, "not_covered", "not in the catalogue: self-pay", line.amount_fen,
                          Payer::kSelfPay});
      continue;
    }
    if (line.category == CatalogueCategory::kPartlyCovered) {
      const Fen self_part = ApplyBp(line.amount_fen, line.self_pay_bp);
      eligible -= self_part;
      a->steps.push_back({index, "partly_covered_self_pay",
                          "partly covered: " + Percent(line.self_pay_bp) + " of " +
                              Yuan(line.amount_fen) + " paid by the person first",
                          self_part, Payer::kSelfPay});
    }
    // Deductible: the first `deductible` fen of the admission's eligible cost.
    if (const Fen in_deductible = std::clamp<Fen>(deductible - position, 0, eligible);
        in_deductible > 0) {
      a->steps.push_back({index, "deductible",
                          std::string(first_admission ? "first" : "later") +
                              " admission of the year: deductible " + Yuan(deductible) + " yuan",
                          in_deductible, Payer::kSelfPay});
      eligible -= in_deductible;
      position += in_deductible;
    }
    for (std::size_t b = 0; b < bands.size() && eligible > 0; ++b) {
      const Fen band_end = bands[b].upto_fen.value_or(std::numeric_limits<Fen>::max());
      if (position >= band_end) continue;
      const Fen segment = std::min(eligible, band_end - position);
      eligible -= segment;
      position += segment;
      Fen personal = ApplyBp(segment, bands[b].personal_bp);
      std::string detail = "grade " + std::to_string(static_cast<int>(claim.grade)) + " " +
                           BandName(bands, b) + ": person " + Percent(bands[b].personal_bp) +
                           " of " + Yuan(segment);
      if (retiree) {
        personal = ApplyBp(personal, retiree_factor);
        detail += ", retiree pays " + Percent(retiree_factor) + " of that";
      }
      Fen pooled = segment - personal;
      if (personal > 0) a->steps.push_back({index, "copay", detail, personal, Payer::kSelfPay});
      const Fen within_cap = std::min(pooled, cap_left);
      cap_left -= within_cap;
      if (within_cap > 0) {
        a->steps.push_back({index, "pooled_fund_share",
                            "grade " + std::to_string(static_cast<int>(claim.grade)) + " " +
                                BandName(bands, b) + ": the pooled fund pays the rest of " +
                                Yuan(segment),
                            within_cap, Payer::kPooledFund});
      }
      if (within_cap < pooled) {
        a->cap_reached = true;
        a->steps.push_back({index, "annual_cap",
                            "annual cap " + Yuan(policy.AnnualCapFen()) +
                                " yuan reached: the pooled fund's share above it is the "
                                "person's",
                            pooled - within_cap, Payer::kSelfPay});
      }
    }
  }
}

void AdjudicateOutpatient(const Claim& claim, Adjudication* a) {
  for (std::size_t i = 0; i < claim.lines.size(); ++i) {
    const auto& line = claim.lines[i];
    const bool not_covered = line.category == CatalogueCategory::kNotCovered;
    a->steps.push_back({static_cast<int>(i), not_covered ? "not_covered" : "outpatient",
                        not_covered ? "not in the catalogue: self-pay"
                                    : "outpatient cost: the pooled fund pays no outpatient costs",
                        line.amount_fen, Payer::kSelfPay});
  }
}

std::optional<CatalogueCategory> ParseCatalogueCategory(std::string_view text) {
  if (text == "covered") return CatalogueCategory::kCovered;
  if (text == "partly_covered") return CatalogueCategory::kPartlyCovered;
  if (text == "not_covered") return CatalogueCategory::kNotCovered;
  return std::nullopt;
}

}  // namespace

std::string_view ToString(CatalogueCategory category) {
  switch (category) {
    case CatalogueCategory::kCovered:
      return "covered";
    case CatalogueCategory::kPartlyCovered:
      return "partly_covered";
    case CatalogueCategory::kNotCovered:
      return "not_covered";
  }
  return "unknown";
}

std::string_view ToString(ClaimKind kind) {
  return kind == ClaimKind::kInpatient ? "inpatient" : "outpatient";
}

std::string_view ToString(ClaimState state) {
  switch (state) {
    case ClaimState::kSubmitted:
      return "submitted";
    case ClaimState::kAdjudicated:
      return "adjudicated";
    case ClaimState::kApproved:
      return "approved";
    case ClaimState::kPaid:
      return "paid";
    case ClaimState::kRejected:
      return "rejected";
  }
  return "unknown";
}

std::string_view ToString(Payer payer) {
  switch (payer) {
    case Payer::kPooledFund:
      return "pooled_fund";
    case Payer::kPersonalAccount:
      return "personal_account";
    case Payer::kSelfPay:
      return "self_pay";
  }
  return "unknown";
}

Fen Claim::TotalBilledFen() const {
  Fen total = 0;
  for (const auto& line : lines) total += line.amount_fen;
  return total;
}

bool IsIcd10Shape(std::string_view code) {
  if (code.size() < 3 || !IsAsciiUpper(code[0]) || !IsAsciiDigit(code[1]) ||
      !IsAsciiDigit(code[2])) {
    return false;
  }
  if (code.size() == 3) return true;
  // Subcategory: '.' and 1–8 alphanumerics (WHO "I21.0"; the national clinical version extends
  // it, "I21.000x001" style, hence up to 8).
  const auto rest = code.substr(4);
  return code[3] == '.' && !rest.empty() && rest.size() <= 8 &&
         std::all_of(rest.begin(), rest.end(), IsAsciiAlnum);
}

std::vector<std::string> ClaimProblems(const Claim& claim) {
  std::vector<std::string> problems;
  if (!IsIcd10Shape(claim.diagnosis_icd10)) {
    problems.push_back("diagnosis_icd10: \"" + claim.diagnosis_icd10 +
                       "\" is not an ICD-10 code (letter, two digits, optional .subcode)");
  }
  if (!IsValidDate(claim.admission)) problems.push_back("admission: not a calendar date");
  if (!IsValidDate(claim.discharge)) problems.push_back("discharge: not a calendar date");
  if (IsValidDate(claim.admission) && IsValidDate(claim.discharge) &&
      claim.discharge < claim.admission) {
    problems.push_back("discharge: " + claim.discharge.ToString() + " is before the admission " +
                       claim.admission.ToString());
  }
  if (claim.age < 0 || claim.age > 150) problems.push_back("age: must be between 0 and 150");
  const int grade = static_cast<int>(claim.grade);
  if (grade < 1 || grade > 3) problems.push_back("facility_grade: must be 1, 2 or 3");
  if (claim.lines.empty()) problems.push_back("lines: a claim needs at least one item");
  if (claim.lines.size() > kMaxLines) problems.push_back("lines: too many items");
  Fen total = 0;
  for (std::size_t i = 0; i < claim.lines.size() && i < kMaxLines; ++i) {
    const auto& line = claim.lines[i];
    const std::string path = "lines[" + std::to_string(i) + "]";
    if (line.amount_fen < 0 || line.amount_fen > kMaxLineFen) {
      problems.push_back(path + ".amount_fen: must be between 0 and " +
                         std::to_string(kMaxLineFen));
    } else {
      total += line.amount_fen;
    }
    if (line.self_pay_bp < 0 || line.self_pay_bp > kWholeBp) {
      problems.push_back(path + ".self_pay_bp: must be between 0 and 10000 bp");
    } else if (line.category != CatalogueCategory::kPartlyCovered && line.self_pay_bp != 0) {
      problems.push_back(path + ".self_pay_bp: only partly covered items have a self-pay share");
    }
  }
  if (total > kMaxClaimFen) problems.push_back("lines: the claim total is too large");
  return problems;
}

Adjudication Adjudicate(const Policy& policy, const Claim& claim, const YearSoFar& year_so_far) {
  Adjudication a;
  auto problems = ClaimProblems(claim);
  if (!year_so_far.eligible_on_service_date) {
    problems.insert(
        problems.begin(),
        "not eligible on the service date " + claim.admission.ToString() +
            (year_so_far.ineligible_reason.empty() ? std::string()
                                                   : ": " + year_so_far.ineligible_reason));
  }
  if (!problems.empty()) {
    // Rejected: nothing paid; the bill stays with the person. Lines that failed the checks
    // count as zero so the totals still add up.
    a.state = ClaimState::kRejected;
    a.reasons = std::move(problems);
    for (std::size_t i = 0; i < claim.lines.size() && i < kMaxLines; ++i) {
      const Fen amount = claim.lines[i].amount_fen;
      if (amount >= 0 && amount <= kMaxLineFen) a.total_billed_fen += amount;
    }
    if (a.total_billed_fen > kMaxClaimFen) a.total_billed_fen = 0;
    a.steps.push_back({-1, "rejected", a.reasons.front(), a.total_billed_fen, Payer::kSelfPay});
    a.self_pay_fen = a.total_billed_fen;
    return a;
  }
  a.state = ClaimState::kApproved;
  a.total_billed_fen = claim.TotalBilledFen();
  if (claim.kind == ClaimKind::kInpatient) {
    AdjudicateInpatient(policy, claim, year_so_far, &a);
  } else {
    AdjudicateOutpatient(claim, &a);
  }
  PayFromPersonalAccount(policy.benefits.personal_account, year_so_far.personal_account_balance_fen,
                         &a.steps);
  Total(&a);
  return a;
}

Result<ClaimFile> ParseClaimJson(std::string_view json_text) {
  const json document = json::parse(json_text.begin(), json_text.end(), nullptr,
                                    /*allow_exceptions=*/false);
  if (document.is_discarded()) return MakeError("(document): not valid JSON");
  json_fields::Errors errors;
  ClaimFile file;
  auto& claim = file.claim;
  json_fields::Object root(document, "", &errors);
  if (auto v = root.String("claim_id")) claim.claim_id = *v;
  if (auto v = root.String("person_id")) claim.person_id = *v;
  if (auto v = root.String("category")) {
    if (auto category = ParsePersonCategory(*v)) {
      claim.category = *category;
    } else {
      errors.Fail("category", "must be \"employee\", \"retiree\" or \"flexible\"");
    }
  }
  if (auto v = root.Int("age", 0, 150)) claim.age = static_cast<int>(*v);
  if (auto v = root.Int("facility_grade", 1, 3)) claim.grade = static_cast<FacilityGrade>(*v);
  if (root.Find("kind") != nullptr) {
    if (auto v = root.String("kind")) {
      if (*v == "inpatient") {
        claim.kind = ClaimKind::kInpatient;
      } else if (*v == "outpatient") {
        claim.kind = ClaimKind::kOutpatient;
      } else {
        errors.Fail("kind", "must be \"inpatient\" or \"outpatient\"");
      }
    }
  }
  if (auto v = root.DateField("admission")) claim.admission = *v;
  if (auto v = root.DateField("discharge")) claim.discharge = *v;
  if (errors.ok() && claim.discharge < claim.admission) {
    errors.Fail("discharge", "must not be before the admission");
  }
  if (auto v = root.String("diagnosis_icd10")) {
    if (IsIcd10Shape(*v)) {
      claim.diagnosis_icd10 = *v;
    } else {
      errors.Fail("diagnosis_icd10",
                  "\"" + *v + "\" is not an ICD-10 code (letter, two digits, optional .subcode)");
    }
  }
  if (const auto* lines = root.Array("lines")) {
    if (lines->empty()) errors.Fail("lines", "a claim needs at least one item");
    if (lines->size() > kMaxLines) errors.Fail("lines", "too many items");
    Fen total = 0;
    for (std::size_t i = 0; i < lines->size() && errors.ok(); ++i) {
      json_fields::Object item((*lines)[i], json_fields::Index("lines", i), &errors);
      ClaimLine line;
      if (auto v = item.String("code")) line.code = *v;
      if (auto v = item.String("description", /*allow_empty=*/true)) line.description = *v;
      if (auto v = item.String("category")) {
        if (auto category = ParseCatalogueCategory(*v)) {
          line.category = *category;
        } else {
          errors.Fail(item.PathOf("category"),
                      "must be \"covered\", \"partly_covered\" or \"not_covered\"");
        }
      }
      if (line.category == CatalogueCategory::kPartlyCovered) {
        if (auto v = item.Int("self_pay_bp", 0, kWholeBp))
          line.self_pay_bp = static_cast<BasisPoints>(*v);
      } else if (item.Find("self_pay_bp") != nullptr) {
        errors.Fail(item.PathOf("self_pay_bp"), "only partly_covered items have a self-pay share");
      }
      if (auto v = item.Int("amount_fen", 0, kMaxLineFen)) {
        line.amount_fen = *v;
        total += *v;
      }
      item.Finish();
      claim.lines.push_back(std::move(line));
    }
    if (errors.ok() && total > kMaxClaimFen) errors.Fail("lines", "the claim total is too large");
  }
  if (const auto* node = root.Required("year_so_far")) {
    json_fields::Object year(*node, "year_so_far", &errors);
    auto& y = file.year_so_far;
    if (auto v = year.Bool("eligible_on_service_date")) y.eligible_on_service_date = *v;
    if (year.Find("ineligible_reason") != nullptr) {
      if (auto v = year.String("ineligible_reason", /*allow_empty=*/true)) y.ineligible_reason = *v;
    }
    if (auto v = year.Int("admissions_adjudicated", 0, 10'000)) {
      y.admissions_adjudicated = static_cast<int>(*v);
    }
    if (auto v = year.Int("pooled_fund_paid_fen", 0, kMaxClaimFen)) y.pooled_fund_paid_fen = *v;
    if (auto v = year.OptionalInt("eligible_cost_earlier_bills_fen", 0, kMaxClaimFen)) {
      y.eligible_cost_earlier_bills_fen = *v;
    }
    if (auto v = year.Int("personal_account_balance_fen", 0, kMaxClaimFen)) {
      y.personal_account_balance_fen = *v;
    }
    year.Finish();
  }
  root.Finish();
  if (!errors.ok()) return MakeError(errors.message());
  return file;
}

std::string AdjudicationToJson(const Adjudication& a) {
  json steps = json::array();
  for (const auto& step : a.steps) {
    json entry = {{"rule", step.rule},
                  {"detail", step.detail},
                  {"amount_fen", step.amount_fen},
                  {"payer", ToString(step.payer)}};
    if (step.line >= 0) entry["line"] = step.line;
    steps.push_back(entry);
  }
  json document = {{"state", ToString(a.state)},
                   {"reasons", a.reasons},
                   {"total_billed_fen", a.total_billed_fen},
                   {"pooled_fund_fen", a.pooled_fund_fen},
                   {"personal_account_fen", a.personal_account_fen},
                   {"self_pay_fen", a.self_pay_fen},
                   {"deductible_fen", a.deductible_fen},
                   {"copay_fen", a.copay_fen},
                   {"not_covered_fen", a.not_covered_fen},
                   {"partly_covered_self_pay_fen", a.partly_covered_self_pay_fen},
                   {"above_cap_fen", a.above_cap_fen},
                   {"cap_reached", a.cap_reached},
                   {"steps", steps}};
  return document.dump(2);
}

}  // namespace medcard::insurance
