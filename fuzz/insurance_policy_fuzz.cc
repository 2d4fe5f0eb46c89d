// Fuzzes the insurance agency's two input files (docs/insurance.md): the policy file
// (insurance::ParsePolicyJson) and the claim file (insurance::ParseClaimJson). Whatever is
// refused must name a field; an accepted policy must validate and survive a round trip; an
// accepted claim must adjudicate to a split that adds up to the bill, to the fen.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "insurance/claims.h"
#include "insurance/policy.h"

namespace {

using namespace medcard::insurance;  // NOLINT(google-build-using-namespace)

void Check(bool condition) {
  if (!condition) std::abort();
}

// "path: what" — the path part is never empty.
void CheckNamesAField(const std::string& message) {
  const auto colon = message.find(": ");
  Check(colon != std::string::npos && colon > 0);
}

const Policy& FixedPolicy() {
  static const Policy policy = [] {
    Policy p;
    p.area_code = "110000";
    p.name = "fuzz";
    p.effective_from = {2024, 1, 1};
    p.average_annual_wage_fen = 14'113'200;
    p.contributions = {600, 200, 6000, 30000};
    p.allocation.employer_share_of_base = {{0, 80}, {35, 100}, {45, 200}};
    p.allocation.retiree_share_of_average_wage = {{0, 430}, {70, 480}};
    p.benefits.deductible_first_admission_bp = 92;
    p.benefits.deductible_later_admission_bp = 46;
    p.benefits.annual_cap_bp = 40000;
    p.benefits.copay[0] = {{3'000'000, 1000}, {4'000'000, 700}, {std::nullopt, 300}};
    p.benefits.copay[1] = {{3'000'000, 1200}, {4'000'000, 800}, {std::nullopt, 400}};
    p.benefits.copay[2] = {{3'000'000, 1500}, {4'000'000, 1000}, {std::nullopt, 500}};
    p.benefits.retiree_copay_factor = {{0, 6000}};
    return p;
  }();
  return policy;
}

void CheckPolicy(std::string_view text) {
  auto policy = ParsePolicyJson(text);
  if (!policy.ok()) {
    CheckNamesAField(policy.error().message);
    return;
  }
  Check(ValidatePolicy(*policy).ok());
  const std::string json = PolicyToJson(*policy);
  auto again = ParsePolicyJson(json);
  Check(again.ok() && PolicyToJson(*again) == json);
  Check(policy->DeductibleFen(true) >= 0 && policy->AnnualCapFen() >= 0);
}

void CheckClaim(std::string_view text) {
  auto file = ParseClaimJson(text);
  if (!file.ok()) {
    CheckNamesAField(file.error().message);
    return;
  }
  Check(ClaimProblems(file->claim).empty());
  for (const auto* policy : {&FixedPolicy()}) {
    const auto a = Adjudicate(*policy, file->claim, file->year_so_far);
    Check(a.total_billed_fen == file->claim.TotalBilledFen());
    Check(a.pooled_fund_fen + a.personal_account_fen + a.self_pay_fen == a.total_billed_fen);
    Check(a.pooled_fund_fen >= 0 && a.personal_account_fen >= 0 && a.self_pay_fen >= 0);
    Check(a.personal_account_fen <= file->year_so_far.personal_account_balance_fen);
    Check(a.state == (file->year_so_far.eligible_on_service_date ? ClaimState::kApproved
                                                                 : ClaimState::kRejected));
    Fen steps = 0;
    for (const auto& step : a.steps) steps += step.amount_fen;
    Check(steps == a.total_billed_fen);
    Check(!AdjudicationToJson(a).empty());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  CheckPolicy(text);
  CheckClaim(text);
  return 0;
}
