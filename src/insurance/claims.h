// Claim adjudication (docs/insurance.md, "Claims"): a facility's itemised bill is split into
// pooled fund / personal account / self-pay by the policy, with a step-by-step explanation.
// Pure computation: the caller supplies the person's year so far and eligibility.
//
// Invariant, to the fen: pooled_fund_fen + personal_account_fen + self_pay_fen == total_billed_fen.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/bcd.h"
#include "common/result.h"
#include "insurance/policy.h"

namespace medcard::insurance {

// Catalogue category of an item (甲类 covered / 乙类 partly covered / 丙类 not covered).
enum class CatalogueCategory { kCovered, kPartlyCovered, kNotCovered };
std::string_view ToString(CatalogueCategory category);  // "covered" / "partly_covered" / ...

enum class ClaimKind { kInpatient, kOutpatient };
std::string_view ToString(ClaimKind kind);  // "inpatient" / "outpatient"

// Lifecycle of a claim kept by whoever stores claims: submitted → adjudicated → approved → paid,
// or rejected with reasons.
enum class ClaimState { kSubmitted, kAdjudicated, kApproved, kPaid, kRejected };
std::string_view ToString(ClaimState state);

struct ClaimLine {
  std::string code;  // the facility's item / catalogue code
  std::string description;
  CatalogueCategory category = CatalogueCategory::kCovered;
  BasisPoints self_pay_bp = 0;  // partly covered: the share paid by the person up front
  Fen amount_fen = 0;
};

struct Claim {
  std::string claim_id;
  std::string person_id;  // social-security number, as the registry knows it
  PersonCategory category = PersonCategory::kEmployee;
  int age = 0;  // completed years on the admission date
  FacilityGrade grade = FacilityGrade::kGrade3;
  ClaimKind kind = ClaimKind::kInpatient;
  Date admission;
  Date discharge;
  std::string diagnosis_icd10;  // e.g. "I21.0", "J18.9", "S72"
  std::vector<ClaimLine> lines;

  Fen TotalBilledFen() const;
};

// What the caller knows about the person on the service date.
struct YearSoFar {
  bool eligible_on_service_date = true;
  std::string ineligible_reason;   // shown when not eligible
  int admissions_adjudicated = 0;  // earlier inpatient admissions approved this year
  Fen pooled_fund_paid_fen = 0;    // paid by the pooled fund this year, all claims
  // For an interim bill: the eligible cost of this admission already billed by earlier bills.
  // The deductible and the cost bands continue from there.
  Fen eligible_cost_earlier_bills_fen = 0;
  Fen personal_account_balance_fen = 0;  // available for this claim
};

enum class Payer { kPooledFund, kPersonalAccount, kSelfPay };
std::string_view ToString(Payer payer);  // "pooled_fund" / "personal_account" / "self_pay"

// One step of the explanation: which rule put how much of which line on whom.
struct ExplanationStep {
  int line = -1;       // index into claim.lines; -1 for a claim-level step
  std::string rule;    // "not_covered", "partly_covered_self_pay", "deductible", "copay",
                       // "pooled_fund_share", "annual_cap", "outpatient", "rejected",
                       // "personal_account", "personal_account_exhausted"
  std::string detail;  // human-readable: the rate, the band, the balance used
  Fen amount_fen = 0;
  Payer payer = Payer::kSelfPay;
};

struct Adjudication {
  ClaimState state = ClaimState::kAdjudicated;  // kApproved or kRejected
  std::vector<std::string> reasons;             // why rejected
  Fen total_billed_fen = 0;
  Fen pooled_fund_fen = 0;
  Fen personal_account_fen = 0;
  Fen self_pay_fen = 0;
  // Break-down of the person's share before the personal account pays.
  Fen deductible_fen = 0;
  Fen copay_fen = 0;
  Fen not_covered_fen = 0;
  Fen partly_covered_self_pay_fen = 0;
  Fen above_cap_fen = 0;
  bool cap_reached = false;
  std::vector<ExplanationStep> steps;
};

// Shape of an ICD-10 code: a letter, two digits, optionally '.' and 1–4 alphanumerics
// ("I21", "I21.0", "S72.001"). Not a check that the code exists.
bool IsIcd10Shape(std::string_view code);

// Why a claim cannot be adjudicated (bad dates, ICD-10 shape, amounts, lines); empty if none.
std::vector<std::string> ClaimProblems(const Claim& claim);

// Adjudicates an inpatient or outpatient claim. A claim with problems or outside eligibility is
// rejected: nothing paid, the whole bill self-pay, the reasons listed.
Adjudication Adjudicate(const Policy& policy, const Claim& claim, const YearSoFar& year_so_far);

// The claim file (docs/insurance.md, "Claim file"): strict like the policy file; errors name
// the field path ("lines[2].amount_fen: must be between 0 and ...").
struct ClaimFile {
  Claim claim;
  YearSoFar year_so_far;
};
Result<ClaimFile> ParseClaimJson(std::string_view json_text);
std::string AdjudicationToJson(const Adjudication& adjudication);

}  // namespace medcard::insurance
