#include "insurance/policy.h"

#include <algorithm>
#include <fstream>
#include <limits>
#include <sstream>

#include <nlohmann/json.hpp>

#include "insurance/json_fields.h"

namespace medcard::insurance {
namespace {

using json_fields::Errors;
using json_fields::Index;
using json_fields::Join;
using nlohmann::json;

constexpr std::int64_t kMaxBp = std::numeric_limits<BasisPoints>::max();
// Bounds that keep every bp product inside 64 bits (ApplyBp's precondition).
constexpr Fen kMaxAverageWageFen = 100'000'000'000;  // 1,000,000,000 yuan a year
constexpr BasisPoints kMaxBaseCapBp = 100'000;       // 10× the average wage
constexpr BasisPoints kMaxAnnualCapBp = 1'000'000;   // 100× the average wage
constexpr Fen kMaxBandFen = 100'000'000'000;
constexpr int kMaxAge = 150;

constexpr std::array<std::string_view, 3> kGradeKeys = {"grade1", "grade2", "grade3"};

std::vector<AgeBandRate> ReadAgeBands(json_fields::Object& parent, std::string_view key,
                                      Errors* errors) {
  std::vector<AgeBandRate> bands;
  const auto* array = parent.Array(key);
  if (array == nullptr) return bands;
  const auto path = parent.PathOf(key);
  for (std::size_t i = 0; i < array->size(); ++i) {
    json_fields::Object band((*array)[i], Index(path, i), errors);
    const auto from_age =
        band.Int("from_age", std::numeric_limits<int>::min(), std::numeric_limits<int>::max());
    const auto rate = band.Int("rate_bp", -kMaxBp, kMaxBp);
    band.Finish();
    if (!errors->ok()) return bands;
    bands.push_back({static_cast<int>(*from_age), static_cast<BasisPoints>(*rate)});
  }
  return bands;
}

std::vector<CopayBand> ReadCopayBands(json_fields::Object& parent, std::string_view key,
                                      Errors* errors) {
  std::vector<CopayBand> bands;
  const auto* array = parent.Array(key);
  if (array == nullptr) return bands;
  const auto path = parent.PathOf(key);
  for (std::size_t i = 0; i < array->size(); ++i) {
    json_fields::Object band((*array)[i], Index(path, i), errors);
    CopayBand read;
    if (const auto* upto = band.Find("upto_fen"); upto != nullptr && !upto->is_null()) {
      const auto value =
          json_fields::ReadInt(*upto, band.PathOf("upto_fen"), std::numeric_limits<Fen>::min(),
                               std::numeric_limits<Fen>::max(), errors);
      if (value) read.upto_fen = *value;
    }
    const auto personal = band.Int("personal_bp", -kMaxBp, kMaxBp);
    band.Finish();
    if (!errors->ok()) return bands;
    read.personal_bp = static_cast<BasisPoints>(*personal);
    bands.push_back(read);
  }
  return bands;
}

BasisPoints ReadBp(json_fields::Object& object, std::string_view key) {
  return static_cast<BasisPoints>(object.Int(key, -kMaxBp, kMaxBp).value_or(0));
}

void CheckBp(const std::string& path, std::int64_t value, std::int64_t max, Errors* errors) {
  if (value < 0 || value > max) {
    errors->Fail(path, "must be between 0 and " + std::to_string(max) + " bp");
  }
}

void CheckAgeBands(const std::string& path, const std::vector<AgeBandRate>& bands,
                   BasisPoints max_rate, const std::string& max_rate_name, Errors* errors) {
  if (bands.empty()) errors->Fail(path, "must have at least one age band");
  for (std::size_t i = 0; i < bands.size(); ++i) {
    const auto band_path = Index(path, i);
    if (i == 0 && bands[i].from_age != 0) {
      errors->Fail(Join(band_path, "from_age"), "the first band must start at age 0");
    } else if (i > 0 && bands[i].from_age <= bands[i - 1].from_age) {
      errors->Fail(Join(band_path, "from_age"), "must be greater than the previous band");
    } else if (bands[i].from_age < 0 || bands[i].from_age > kMaxAge) {
      errors->Fail(Join(band_path, "from_age"), "must be between 0 and 150");
    }
    CheckBp(Join(band_path, "rate_bp"), bands[i].rate_bp, kWholeBp, errors);
    if (bands[i].rate_bp > max_rate) {
      errors->Fail(Join(band_path, "rate_bp"), "must not exceed " + max_rate_name);
    }
  }
}

void CheckCopayBands(const std::string& path, const std::vector<CopayBand>& bands, Errors* errors) {
  if (bands.empty()) errors->Fail(path, "must have at least one band");
  for (std::size_t i = 0; i < bands.size(); ++i) {
    const auto band_path = Index(path, i);
    const bool last = i + 1 == bands.size();
    const auto& upto = bands[i].upto_fen;
    if (last && upto) {
      errors->Fail(Join(band_path, "upto_fen"),
                   "the last band must be open-ended (leave upto_fen out)");
    } else if (!last && !upto) {
      errors->Fail(Join(band_path, "upto_fen"), "is required on every band but the last");
    } else if (upto && (*upto <= 0 || *upto > kMaxBandFen)) {
      errors->Fail(Join(band_path, "upto_fen"),
                   "must be between 1 and " + std::to_string(kMaxBandFen) + " fen");
    } else if (upto && i > 0 && bands[i - 1].upto_fen && *upto <= *bands[i - 1].upto_fen) {
      errors->Fail(Join(band_path, "upto_fen"), "must be greater than the previous band");
    }
    CheckBp(Join(band_path, "personal_bp"), bands[i].personal_bp, kWholeBp, errors);
  }
}

bool IsAreaCode(std::string_view code) {
  return code.size() == 6 &&
         std::all_of(code.begin(), code.end(), [](char c) { return c >= '0' && c <= '9'; });
}

Status Validate(const Policy& policy, Errors* errors) {
  if (!IsAreaCode(policy.area_code)) {
    errors->Fail("area_code", "must be a 6-digit administrative division code (GB/T 2260)");
  }
  if (policy.name.empty()) errors->Fail("name", "must not be empty");
  if (!IsValidDate(policy.effective_from)) errors->Fail("effective_from", "is not a calendar date");
  if (policy.average_annual_wage_fen <= 0 || policy.average_annual_wage_fen > kMaxAverageWageFen) {
    errors->Fail("average_annual_wage_fen",
                 "must be between 1 and " + std::to_string(kMaxAverageWageFen) + " fen");
  }
  const auto& c = policy.contributions;
  CheckBp("contributions.employer_rate_bp", c.employer_rate_bp, kWholeBp, errors);
  CheckBp("contributions.employee_rate_bp", c.employee_rate_bp, kWholeBp, errors);
  if (errors->ok() && c.employer_rate_bp + c.employee_rate_bp > kWholeBp) {
    errors->Fail("contributions.employee_rate_bp",
                 "employer and employee rates together must not exceed 10000 bp");
  }
  CheckBp("contributions.base_floor_bp", c.base_floor_bp, kMaxBaseCapBp, errors);
  CheckBp("contributions.base_cap_bp", c.base_cap_bp, kMaxBaseCapBp, errors);
  if (errors->ok() && c.base_cap_bp < c.base_floor_bp) {
    errors->Fail("contributions.base_cap_bp", "must not be below contributions.base_floor_bp");
  }
  CheckAgeBands("allocation.employer_share_of_base", policy.allocation.employer_share_of_base,
                c.employer_rate_bp, "contributions.employer_rate_bp", errors);
  CheckAgeBands("allocation.retiree_share_of_average_wage",
                policy.allocation.retiree_share_of_average_wage, kWholeBp, "10000 bp", errors);
  const auto& b = policy.benefits;
  CheckBp("benefits.deductible_first_admission_bp", b.deductible_first_admission_bp, kWholeBp,
          errors);
  CheckBp("benefits.deductible_later_admission_bp", b.deductible_later_admission_bp, kWholeBp,
          errors);
  CheckBp("benefits.annual_cap_bp", b.annual_cap_bp, kMaxAnnualCapBp, errors);
  for (std::size_t grade = 0; grade < b.copay.size(); ++grade) {
    CheckCopayBands(Join("benefits.copay", kGradeKeys[grade]), b.copay[grade], errors);
  }
  CheckAgeBands("benefits.retiree_copay_factor", b.retiree_copay_factor, kWholeBp, "10000 bp",
                errors);
  if (!errors->ok()) return MakeError(errors->message());
  return Status::Ok();
}

json AgeBandsToJson(const std::vector<AgeBandRate>& bands) {
  json array = json::array();
  for (const auto& band : bands)
    array.push_back({{"from_age", band.from_age}, {"rate_bp", band.rate_bp}});
  return array;
}

}  // namespace

std::string_view ToString(PersonCategory category) {
  switch (category) {
    case PersonCategory::kEmployee:
      return "employee";
    case PersonCategory::kRetiree:
      return "retiree";
    case PersonCategory::kFlexible:
      return "flexible";
  }
  return "unknown";
}

std::optional<PersonCategory> ParsePersonCategory(std::string_view text) {
  if (text == "employee") return PersonCategory::kEmployee;
  if (text == "retiree") return PersonCategory::kRetiree;
  if (text == "flexible") return PersonCategory::kFlexible;
  return std::nullopt;
}

Fen ApplyBp(Fen amount_fen, BasisPoints bp) {
  const Fen product = amount_fen * bp;
  const Fen whole = product / kWholeBp;
  const Fen remainder = product % kWholeBp;
  // Round half away from zero: |remainder| ≥ 5000 moves one fen further from zero.
  if (remainder >= kWholeBp / 2) return whole + 1;
  if (remainder <= -kWholeBp / 2) return whole - 1;
  return whole;
}

BasisPoints RateForAge(const std::vector<AgeBandRate>& bands, int age) {
  BasisPoints rate = bands.empty() ? 0 : bands.front().rate_bp;
  for (const auto& band : bands) {
    if (age >= band.from_age) rate = band.rate_bp;
  }
  return rate;
}

Fen Policy::AverageMonthlyWageFen() const {
  return (average_annual_wage_fen + 6) / 12;  // half up: x/12 rounds up from .5 (6/12)
}

Fen Policy::DeductibleFen(bool first_admission_of_year) const {
  return ApplyBp(average_annual_wage_fen, first_admission_of_year
                                              ? benefits.deductible_first_admission_bp
                                              : benefits.deductible_later_admission_bp);
}

Fen Policy::AnnualCapFen() const {
  return ApplyBp(average_annual_wage_fen, benefits.annual_cap_bp);
}

const std::vector<CopayBand>& Policy::CopayBands(FacilityGrade grade) const {
  return benefits.copay[static_cast<std::size_t>(static_cast<int>(grade) - 1)];
}

Status ValidatePolicy(const Policy& policy) {
  Errors errors;
  return Validate(policy, &errors);
}

Result<Policy> ParsePolicyJson(std::string_view json_text) {
  const json document = json::parse(json_text.begin(), json_text.end(), nullptr,
                                    /*allow_exceptions=*/false);
  if (document.is_discarded()) return MakeError("(document): not valid JSON");
  Errors errors;
  Policy policy;
  json_fields::Object root(document, "", &errors);
  if (auto v = root.String("area_code")) policy.area_code = *v;
  if (auto v = root.String("name")) policy.name = *v;
  if (root.Find("notes") != nullptr) {
    if (auto v = root.String("notes", /*allow_empty=*/true)) policy.notes = *v;
  }
  if (auto v = root.DateField("effective_from")) policy.effective_from = *v;
  if (auto v = root.Int("average_annual_wage_fen", std::numeric_limits<Fen>::min(),
                        std::numeric_limits<Fen>::max())) {
    policy.average_annual_wage_fen = *v;
  }
  if (const auto* node = root.Required("contributions")) {
    json_fields::Object object(*node, "contributions", &errors);
    auto& c = policy.contributions;
    c.employer_rate_bp = ReadBp(object, "employer_rate_bp");
    c.employee_rate_bp = ReadBp(object, "employee_rate_bp");
    c.base_floor_bp = ReadBp(object, "base_floor_bp");
    c.base_cap_bp = ReadBp(object, "base_cap_bp");
    object.Finish();
  }
  if (const auto* node = root.Required("allocation")) {
    json_fields::Object object(*node, "allocation", &errors);
    policy.allocation.employer_share_of_base =
        ReadAgeBands(object, "employer_share_of_base", &errors);
    policy.allocation.retiree_share_of_average_wage =
        ReadAgeBands(object, "retiree_share_of_average_wage", &errors);
    object.Finish();
  }
  if (const auto* node = root.Required("benefits")) {
    json_fields::Object object(*node, "benefits", &errors);
    auto& b = policy.benefits;
    b.deductible_first_admission_bp = ReadBp(object, "deductible_first_admission_bp");
    b.deductible_later_admission_bp = ReadBp(object, "deductible_later_admission_bp");
    b.annual_cap_bp = ReadBp(object, "annual_cap_bp");
    if (const auto* copay_node = object.Required("copay")) {
      json_fields::Object copay(*copay_node, "benefits.copay", &errors);
      for (std::size_t grade = 0; grade < kGradeKeys.size(); ++grade) {
        b.copay[grade] = ReadCopayBands(copay, kGradeKeys[grade], &errors);
      }
      copay.Finish();
    }
    b.retiree_copay_factor = ReadAgeBands(object, "retiree_copay_factor", &errors);
    if (const auto* use_node = object.Required("personal_account_pays")) {
      json_fields::Object use(*use_node, "benefits.personal_account_pays", &errors);
      auto& p = b.personal_account;
      p.deductible = use.Bool("deductible").value_or(false);
      p.copay = use.Bool("copay").value_or(false);
      p.partly_covered_self_pay = use.Bool("partly_covered_self_pay").value_or(false);
      p.not_covered = use.Bool("not_covered").value_or(false);
      p.above_cap = use.Bool("above_cap").value_or(false);
      p.outpatient = use.Bool("outpatient").value_or(false);
      use.Finish();
    }
    object.Finish();
  }
  root.Finish();
  if (!errors.ok()) return MakeError(errors.message());
  if (auto status = Validate(policy, &errors); !status.ok()) return status.error();
  return policy;
}

Result<Policy> LoadPolicyFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return MakeError(path.string() + ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  auto policy = ParsePolicyJson(text.str());
  if (!policy.ok()) return MakeError(path.string() + ": " + policy.error().message);
  return policy;
}

std::string PolicyToJson(const Policy& policy) {
  json copay = json::object();
  for (std::size_t grade = 0; grade < kGradeKeys.size(); ++grade) {
    json bands = json::array();
    for (const auto& band : policy.benefits.copay[grade]) {
      json entry = json::object();
      if (band.upto_fen) entry["upto_fen"] = *band.upto_fen;
      entry["personal_bp"] = band.personal_bp;
      bands.push_back(entry);
    }
    copay[std::string(kGradeKeys[grade])] = bands;
  }
  const auto& use = policy.benefits.personal_account;
  json document = {
      {"area_code", policy.area_code},
      {"name", policy.name},
      {"effective_from", policy.effective_from.ToString()},
      {"average_annual_wage_fen", policy.average_annual_wage_fen},
      {"contributions",
       {{"employer_rate_bp", policy.contributions.employer_rate_bp},
        {"employee_rate_bp", policy.contributions.employee_rate_bp},
        {"base_floor_bp", policy.contributions.base_floor_bp},
        {"base_cap_bp", policy.contributions.base_cap_bp}}},
      {"allocation",
       {{"employer_share_of_base", AgeBandsToJson(policy.allocation.employer_share_of_base)},
        {"retiree_share_of_average_wage",
         AgeBandsToJson(policy.allocation.retiree_share_of_average_wage)}}},
      {"benefits",
       {{"deductible_first_admission_bp", policy.benefits.deductible_first_admission_bp},
        {"deductible_later_admission_bp", policy.benefits.deductible_later_admission_bp},
        {"annual_cap_bp", policy.benefits.annual_cap_bp},
        {"copay", copay},
        {"retiree_copay_factor", AgeBandsToJson(policy.benefits.retiree_copay_factor)},
        {"personal_account_pays",
         {{"deductible", use.deductible},
          {"copay", use.copay},
          {"partly_covered_self_pay", use.partly_covered_self_pay},
          {"not_covered", use.not_covered},
          {"above_cap", use.above_cap},
          {"outpatient", use.outpatient}}}}},
  };
  if (!policy.notes.empty()) document["notes"] = policy.notes;
  return document.dump(2);
}

Status PolicyBook::Add(Policy policy) {
  if (auto status = ValidatePolicy(policy); !status.ok()) return status;
  auto& versions = by_area_[policy.area_code];
  if (versions.contains(policy.effective_from)) {
    return MakeError("area " + policy.area_code + " already has a policy effective from " +
                     policy.effective_from.ToString());
  }
  const auto from = policy.effective_from;
  versions.emplace(from, std::move(policy));
  return Status::Ok();
}

Result<const Policy*> PolicyBook::For(std::string_view area_code, const Date& date) const {
  const auto area = by_area_.find(area_code);
  if (area == by_area_.end()) {
    return MakeError("no policy for area " + std::string(area_code));
  }
  // The latest version that starts on or before the date.
  auto it = area->second.upper_bound(date);
  if (it == area->second.begin()) {
    return MakeError("no policy in force in area " + std::string(area_code) + " on " +
                     date.ToString() + " (the first starts " +
                     area->second.begin()->first.ToString() + ")");
  }
  return &std::prev(it)->second;
}

std::vector<std::string> PolicyBook::Areas() const {
  std::vector<std::string> areas;
  for (const auto& [area, versions] : by_area_) areas.push_back(area);
  return areas;
}

Result<PolicyBook> PolicyBook::LoadDirectory(const std::filesystem::path& directory) {
  std::error_code error;
  std::vector<std::filesystem::path> files;
  for (std::filesystem::directory_iterator it(directory, error), end; !error && it != end;
       it.increment(error)) {
    if (it->is_regular_file() && it->path().extension() == ".json") files.push_back(it->path());
  }
  if (error) return MakeError(directory.string() + ": " + error.message());
  std::sort(files.begin(), files.end());
  PolicyBook book;
  for (const auto& file : files) {
    auto policy = LoadPolicyFile(file);
    if (!policy.ok()) return policy.error();
    if (auto status = book.Add(std::move(policy).value()); !status.ok()) {
      return MakeError(file.string() + ": " + status.error().message);
    }
  }
  return book;
}

}  // namespace medcard::insurance
