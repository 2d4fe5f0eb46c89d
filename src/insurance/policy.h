// The insurance agency's policy for one pooling area, as data (docs/insurance.md, "Policy"):
// contribution rates and base limits, personal-account allocation by age band, and the
// pooled fund's benefits (deductible, annual cap, co-payment by facility grade and cost band,
// retiree factor). A PolicyBook holds several versions per area by effective date.
//
// Money is integer fen (std::int64_t); rates are integer basis points (1 bp = 0.01%,
// 10000 bp = 100%). Nothing here is floating point.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/bcd.h"
#include "common/result.h"

namespace medcard::insurance {

using Fen = std::int64_t;
using BasisPoints = std::int32_t;

inline constexpr BasisPoints kWholeBp = 10000;

// Who a person is to the scheme. Flexible workers (self-employed, gig) pay both the employer's
// and the employee's part themselves.
enum class PersonCategory { kEmployee, kRetiree, kFlexible };
std::string_view ToString(PersonCategory category);  // "employee" / "retiree" / "flexible"
std::optional<PersonCategory> ParsePersonCategory(std::string_view text);

// Hospital / facility grade (一级 / 二级 / 三级). Grade 3 is the largest hospital.
enum class FacilityGrade { kGrade1 = 1, kGrade2 = 2, kGrade3 = 3 };

// One band of an age-banded rate: applies from `from_age` (completed years, inclusive) up to the
// next band's from_age. The first band of a list starts at 0; bands are strictly ascending.
struct AgeBandRate {
  int from_age = 0;
  BasisPoints rate_bp = 0;
};

// One co-payment band of an admission's eligible cost, measured from 0 fen of the admission:
// the band covers costs above the previous band's upto_fen up to this band's `upto_fen`; the
// last band has no upper bound (upto_fen empty). personal_bp is the insured person's share.
struct CopayBand {
  std::optional<Fen> upto_fen;
  BasisPoints personal_bp = 0;
};

struct ContributionRules {
  BasisPoints employer_rate_bp = 0;  // of the contribution base (the employee's payroll)
  BasisPoints employee_rate_bp = 0;  // of the contribution base (own wage)
  // The monthly contribution base is the declared monthly wage clamped to
  // [floor, cap] × the average monthly wage.
  BasisPoints base_floor_bp = 0;
  BasisPoints base_cap_bp = 0;
};

struct AllocationRules {
  // Employees and flexible workers: their whole employee part plus this share of the
  // contribution base from the employer part, by age.
  std::vector<AgeBandRate> employer_share_of_base;
  // Retirees (who pay nothing): this share of the average monthly wage, by age.
  std::vector<AgeBandRate> retiree_share_of_average_wage;
};

// Which parts of an insured person's share of a claim the personal account may pay (up to its
// balance); the rest is self-pay.
struct PersonalAccountUse {
  bool deductible = true;
  bool copay = true;
  bool partly_covered_self_pay = true;
  bool not_covered = false;
  bool above_cap = false;
  // Outpatient claims are paid from the personal account only (the pooled fund pays nothing).
  bool outpatient = true;
};

struct BenefitRules {
  BasisPoints deductible_first_admission_bp = 0;  // of the average annual wage
  BasisPoints deductible_later_admission_bp = 0;  // of the average annual wage
  BasisPoints annual_cap_bp = 0;  // of the average annual wage; pooled fund per year
  // Co-payment bands per facility grade: index 0 = grade 1, 1 = grade 2, 2 = grade 3.
  std::array<std::vector<CopayBand>, 3> copay;
  // Retirees pay this share of what an employee would pay as co-payment, by age.
  std::vector<AgeBandRate> retiree_copay_factor;
  PersonalAccountUse personal_account;
};

struct Policy {
  std::string area_code;  // pooling area, e.g. "110000"
  std::string name;
  std::string notes;  // optional: where the figures come from
  Date effective_from;
  Fen average_annual_wage_fen = 0;  // the area's published average wage of the previous year
  ContributionRules contributions;
  AllocationRules allocation;
  BenefitRules benefits;

  // Average annual wage / 12, rounded half up to the fen.
  Fen AverageMonthlyWageFen() const;
  Fen DeductibleFen(bool first_admission_of_year) const;
  Fen AnnualCapFen() const;
  const std::vector<CopayBand>& CopayBands(FacilityGrade grade) const;
};

// Rate of the band an age falls in. REQUIRES: bands validated (first from_age 0, ascending).
BasisPoints RateForAge(const std::vector<AgeBandRate>& bands, int age);

// amount × bp / 10000, rounded half up to the fen (half away from zero for negative amounts).
// REQUIRES: |amount| ≤ 9e14 fen so the product fits in 64 bits.
Fen ApplyBp(Fen amount_fen, BasisPoints bp);

// Strict JSON loading (docs/insurance.md, "Policy file"): unknown keys are rejected, types and
// ranges checked; every error message starts with the field path, e.g.
// "benefits.copay.grade3[1].upto_fen: must be greater than the previous band".
Result<Policy> ParsePolicyJson(std::string_view json_text);
Result<Policy> LoadPolicyFile(const std::filesystem::path& path);
// Semantic checks on a Policy built in code (ParsePolicyJson runs these too).
Status ValidatePolicy(const Policy& policy);
// The policy back as JSON in the file format (ParsePolicyJson(ToJson(p)) gives p back).
std::string PolicyToJson(const Policy& policy);

// Several policies per area, versioned by effective date.
class PolicyBook {
 public:
  // Fails if the policy does not validate or the area already has a version from that date.
  Status Add(Policy policy);
  // The version in force in `area_code` on `date`: the latest effective_from ≤ date.
  Result<const Policy*> For(std::string_view area_code, const Date& date) const;
  std::vector<std::string> Areas() const;
  // Every *.json file in a directory; an error names the file and the field.
  static Result<PolicyBook> LoadDirectory(const std::filesystem::path& directory);

 private:
  std::map<std::string, std::map<Date, Policy>, std::less<>> by_area_;
};

}  // namespace medcard::insurance
