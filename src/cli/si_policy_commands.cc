// medcard si policy check | show, si claim adjudicate (docs/insurance.md, "Policy" and "Claims").
//   policy check FILE     validate a policy file: "ok" and a summary, or the bad field (exit 1)
//   policy show FILE      the validated policy back as normalised JSON
//   claim adjudicate --policy FILE CLAIM.json [--json]
//                         split a claim into pooled fund / personal account / self-pay and
//                         explain each step (the claim file format is in docs/insurance.md)
#include <fmt/format.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "common/money.h"
#include "insurance/claims.h"
#include "insurance/policy.h"

namespace medcard::cli {
namespace {

using insurance::Fen;

std::string Percent(insurance::BasisPoints bp) { return FormatFen(bp) + "%"; }

std::string BandsText(const std::vector<insurance::CopayBand>& bands) {
  std::string text;
  for (const auto& band : bands) {
    if (!text.empty()) text += ", ";
    text += Percent(band.personal_bp) +
            (band.upto_fen ? " up to " + FormatFen(*band.upto_fen) : std::string(" above"));
  }
  return text;
}

std::string AgeBandsText(const std::vector<insurance::AgeBandRate>& bands) {
  std::string text;
  for (const auto& band : bands) {
    if (!text.empty()) text += ", ";
    text += Percent(band.rate_bp) + " from " + std::to_string(band.from_age);
  }
  return text;
}

insurance::Policy LoadPolicyOrFail(const std::string& path) {
  auto policy = insurance::LoadPolicyFile(path);
  if (!policy.ok()) throw CommandFailed(policy.error().message);
  return std::move(policy).value();
}

void RunPolicyCheck(const std::string& path) {
  const auto policy = LoadPolicyOrFail(path);
  const auto& c = policy.contributions;
  const auto& b = policy.benefits;
  std::string out;
  out += fmt::format("ok: {} — area {}, effective from {}\n", policy.name, policy.area_code,
                     policy.effective_from.ToString());
  out += fmt::format("  average wage        {} a year, {} a month\n",
                     FormatFen(policy.average_annual_wage_fen),
                     FormatFen(policy.AverageMonthlyWageFen()));
  out += fmt::format("  contributions       employer {}, employee {} of a base of {}..{} a month\n",
                     Percent(c.employer_rate_bp), Percent(c.employee_rate_bp),
                     FormatFen(insurance::ApplyBp(policy.AverageMonthlyWageFen(), c.base_floor_bp)),
                     FormatFen(insurance::ApplyBp(policy.AverageMonthlyWageFen(), c.base_cap_bp)));
  out += fmt::format("  personal account    employee part + {} of the base by age\n",
                     AgeBandsText(policy.allocation.employer_share_of_base));
  out += fmt::format("  retirees            {} of the average monthly wage by age\n",
                     AgeBandsText(policy.allocation.retiree_share_of_average_wage));
  out += fmt::format("  deductible          first admission {}, later {}\n",
                     FormatFen(policy.DeductibleFen(true)), FormatFen(policy.DeductibleFen(false)));
  out += fmt::format("  annual cap          {}\n", FormatFen(policy.AnnualCapFen()));
  for (int grade = 3; grade >= 1; --grade) {
    out += fmt::format("  co-pay grade {}      {}\n", grade,
                       BandsText(policy.CopayBands(static_cast<insurance::FacilityGrade>(grade))));
  }
  out += fmt::format("  retiree factor      {} of the co-pay by age\n",
                     AgeBandsText(b.retiree_copay_factor));
  std::fputs(out.c_str(), stdout);
}

struct AdjudicateOptions {
  std::string policy_path;
  std::string claim_path;
  bool json = false;
};

std::string ExplanationTable(const insurance::Claim& claim, const insurance::Adjudication& a) {
  std::string out =
      fmt::format("claim {}  person {}  {} aged {}  grade {}  {}  {}..{}  {}\n", claim.claim_id,
                  claim.person_id, insurance::ToString(claim.category), claim.age,
                  static_cast<int>(claim.grade), insurance::ToString(claim.kind),
                  claim.admission.ToString(), claim.discharge.ToString(), claim.diagnosis_icd10);
  out += fmt::format("state: {}\n", insurance::ToString(a.state));
  for (const auto& reason : a.reasons) out += fmt::format("  reason: {}\n", reason);
  out += fmt::format("{:<5} {:<14} {:<24} {:<17} {:>12}  {}\n", "line", "item", "rule", "payer",
                     "amount", "detail");
  for (const auto& step : a.steps) {
    const bool has_line =
        step.line >= 0 && static_cast<std::size_t>(step.line) < claim.lines.size();
    out += fmt::format(
        "{:<5} {:<14} {:<24} {:<17} {:>12}  {}\n", has_line ? std::to_string(step.line) : "-",
        has_line ? claim.lines[static_cast<std::size_t>(step.line)].code : "", step.rule,
        insurance::ToString(step.payer), FormatFen(step.amount_fen), step.detail);
  }
  out += fmt::format("total billed {} = pooled fund {} + personal account {} + self-pay {}\n",
                     FormatFen(a.total_billed_fen), FormatFen(a.pooled_fund_fen),
                     FormatFen(a.personal_account_fen), FormatFen(a.self_pay_fen));
  if (a.cap_reached) out += "the annual cap is reached\n";
  return out;
}

void RunClaimAdjudicate(const AdjudicateOptions& options) {
  const auto policy = LoadPolicyOrFail(options.policy_path);
  auto file = insurance::ParseClaimJson(ReadFileOrFail(options.claim_path));
  if (!file.ok()) throw CommandFailed(options.claim_path + ": " + file.error().message);
  if (file->claim.admission < policy.effective_from) {
    throw CommandFailed(options.policy_path + ": the policy takes effect " +
                        policy.effective_from.ToString() + ", after the admission " +
                        file->claim.admission.ToString());
  }
  const auto adjudication = insurance::Adjudicate(policy, file->claim, file->year_so_far);
  const std::string out = options.json ? insurance::AdjudicationToJson(adjudication) + "\n"
                                       : ExplanationTable(file->claim, adjudication);
  std::fputs(out.c_str(), stdout);
}

}  // namespace

void AddSiPolicyCommands(CLI::App& si) {
  CLI::App* policy = si.add_subcommand("policy", "The agency's policy files");
  policy->require_subcommand(1);
  {
    auto path = std::make_shared<std::string>();
    CLI::App* check = policy->add_subcommand("check", "Validate a policy file and summarise it");
    check->add_option("file", *path, "The policy (JSON)")->required();
    check->callback([path] { RunPolicyCheck(*path); });
  }
  {
    auto path = std::make_shared<std::string>();
    CLI::App* show = policy->add_subcommand("show", "A validated policy as normalised JSON");
    show->add_option("file", *path, "The policy (JSON)")->required();
    show->callback([path] {
      const std::string out = insurance::PolicyToJson(LoadPolicyOrFail(*path)) + "\n";
      std::fputs(out.c_str(), stdout);
    });
  }
  CLI::App* claim = si.add_subcommand("claim", "Claims for inpatient and large costs");
  claim->require_subcommand(1);
  {
    auto options = std::make_shared<AdjudicateOptions>();
    CLI::App* adjudicate = claim->add_subcommand(
        "adjudicate", "Split a claim into pooled fund / personal account / self-pay");
    adjudicate->add_option("--policy", options->policy_path, "The policy (JSON)")->required();
    adjudicate->add_option("claim", options->claim_path, "The claim (JSON)")->required();
    adjudicate->add_flag("--json", options->json, "Print the adjudication as JSON");
    adjudicate->callback([options] { RunClaimAdjudicate(*options); });
  }
}

}  // namespace medcard::cli
