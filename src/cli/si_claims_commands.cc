// medcard si claim submit | show | approve | reject | pay | list, si import units | people |
// wages, si consumption import | show: stored claims, CSV imports and the bank's consumption
// detail on the agency's database (docs/insurance.md "Stored claims", "Imports", "Consumption
// detail"). Each command opens the agency's data directory (--data, made by `medcard si init`).
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/si_session.h"
#include "common/money.h"
#include "insurance/claims_store.h"
#include "insurance/consumption.h"
#include "insurance/imports.h"
#include "insurance/policy.h"
#include "insurance/registry.h"
#include "store/store.h"

namespace medcard::cli {
namespace {

namespace fs = std::filesystem;
using namespace medcard::insurance;  // NOLINT(google-build-using-namespace): the commands' domain

void AddData(CLI::App* command, std::string& dir) {
  command->add_option("--data", dir, "The agency's data directory")->required();
}

// --- Claims --------------------------------------------------------------------------------------

void PrintClaim(const StoredClaim& c) {
  std::printf("claim %lld  %s  facility %s no. %s  person %s  %s %s..%s  billed %s\n",
              static_cast<long long>(c.id), std::string(ToString(c.state)).c_str(),
              c.facility.c_str(), c.claim.claim_id.c_str(), c.claim.person_id.c_str(),
              std::string(ToString(c.claim.kind)).c_str(), c.claim.admission.ToString().c_str(),
              c.claim.discharge.ToString().c_str(), FormatFen(c.claim.TotalBilledFen()).c_str());
  if (c.adjudication) {
    const auto& a = *c.adjudication;
    std::printf("  pooled fund %s  personal account %s  self-pay %s%s\n",
                FormatFen(a.pooled_fund_fen).c_str(), FormatFen(a.personal_account_fen).c_str(),
                FormatFen(a.self_pay_fen).c_str(), a.cap_reached ? "  (annual cap reached)" : "");
  }
  for (const auto& reason : c.reasons) std::printf("  reason: %s\n", reason.c_str());
  if (!c.decided_by.empty()) std::printf("  decided by %s\n", c.decided_by.c_str());
}

std::string ClaimJson(const StoredClaim& c) {
  nlohmann::json doc = {{"id", c.id},
                        {"facility", c.facility},
                        {"claim_id", c.claim.claim_id},
                        {"person_id", c.claim.person_id},
                        {"state", ToString(c.state)},
                        {"total_billed_fen", c.claim.TotalBilledFen()},
                        {"reasons", c.reasons},
                        {"decided_by", c.decided_by}};
  if (c.adjudication) {
    doc["adjudication"] = nlohmann::json::parse(AdjudicationToJson(*c.adjudication));
  }
  return doc.dump(2);
}

struct ClaimOptions {
  std::string dir;
  std::string facility;
  std::string file;
  std::int64_t id = 0;
  std::string officer;
  std::string reason;
  std::string state;
  std::string person;
  bool json = false;
};

void RunClaimSubmit(const ClaimOptions& o) {
  auto file = ParseClaimJson(ReadFileOrFail(o.file));
  if (!file.ok()) throw CommandFailed(o.file + ": " + file.error().message, 2);
  SiSession s = SiSession::Open(o.dir);
  const PolicyBook& policies = s.policies();
  ClaimStore claims(s.connection(), policies);
  const StoredClaim submitted = SiService(claims.Submit(o.facility, file->claim), "submit");
  s.Audit("si.claim.submit", "claim:" + std::to_string(submitted.id),
          nlohmann::json{{"facility", o.facility}, {"claim_number", file->claim.claim_id}}.dump());
  // Adjudication follows at once; when it cannot run (no policy), the claim stays submitted.
  PrintClaim(SiService(claims.Adjudicate(submitted.id),
                       "claim " + std::to_string(submitted.id) + " stored, not adjudicated"));
}

void RunClaimShow(const ClaimOptions& o) {
  SiSession s = SiSession::Open(o.dir);
  const PolicyBook policies;
  ClaimStore claims(s.connection(), policies);
  const StoredClaim c = SiService(claims.Find(o.id), "claim");
  if (o.json) {
    std::printf("%s\n", ClaimJson(c).c_str());
    return;
  }
  PrintClaim(c);
  if (c.adjudication) {
    for (const auto& step : c.adjudication->steps) {
      std::printf("  %-3s %-26s %-17s %12s  %s\n",
                  step.line < 0 ? "-" : std::to_string(step.line).c_str(), step.rule.c_str(),
                  std::string(ToString(step.payer)).c_str(), FormatFen(step.amount_fen).c_str(),
                  step.detail.c_str());
    }
  }
}

void RunClaimStep(const ClaimOptions& o, const std::string& step) {
  SiSession s = SiSession::Open(o.dir);
  const PolicyBook policies;
  ClaimStore claims(s.connection(), policies);
  StoredClaim claim;
  nlohmann::json details = nlohmann::json::object();
  if (step == "approve") {
    claim = SiService(claims.Approve(o.id, o.officer), "approve");
    details["officer"] = o.officer;
  } else if (step == "reject") {
    claim = SiService(claims.Reject(o.id, o.officer, o.reason), "reject");
    details = {{"officer", o.officer}, {"reason", o.reason}};
  } else {
    claim = SiService(claims.Pay(o.id), "pay");
  }
  s.Audit("si.claim." + step, "claim:" + std::to_string(claim.id), details.dump());
  PrintClaim(claim);
}

void RunClaimList(const ClaimOptions& o) {
  std::optional<ClaimState> state;
  if (!o.state.empty()) {
    state = ParseClaimState(o.state);
    if (!state) {
      throw CommandFailed("--state: submitted, adjudicated, approved, paid or rejected", 2);
    }
  }
  SiSession s = SiSession::Open(o.dir);
  const PolicyBook policies;
  ClaimStore claims(s.connection(), policies);
  for (const auto& c : SiService(claims.List(state, o.person), "list")) {
    std::printf("%-6lld %-11s %-10s %-20s %-18s %12s %12s\n", static_cast<long long>(c.id),
                std::string(ToString(c.state)).c_str(), c.facility.c_str(),
                c.claim.claim_id.c_str(), c.claim.person_id.c_str(),
                FormatFen(c.claim.TotalBilledFen()).c_str(),
                c.adjudication ? FormatFen(c.adjudication->pooled_fund_fen).c_str() : "-");
  }
}

// --- Imports and consumption ---------------------------------------------------------------------

void RunImport(ImportKind kind, const std::string& dir, const std::string& path) {
  const std::string text = ReadFileOrFail(path);
  SiSession s = SiSession::Open(dir);
  const ImportReport report = SiService(Import(s.connection(), kind, text), "import");
  if (!report.applied) {
    std::fputs(FormatProblems(report).c_str(), stderr);
    throw CommandFailed(
        path + ": " + std::to_string(report.problems.size()) + " problem(s); nothing was imported",
        2);
  }
  s.Audit("si.import." + std::string(ToString(kind)),
          "import:" + fs::path(path).filename().string(),
          nlohmann::json{{"rows", report.rows}}.dump());
  std::printf("imported %lld %s from %s\n", static_cast<long long>(report.rows),
              std::string(ToString(kind)).c_str(), path.c_str());
}

void RunConsumptionImport(const std::string& dir, const std::string& path) {
  const BatchKey key = SiBatchKeyFromEnvironment();
  const std::string text = ReadFileOrFail(path);
  SiSession s = SiSession::Open(dir);
  const auto imported = SiService(ImportConsumption(s.connection(), text, key), path);
  if (!imported.already_imported) {
    s.Audit("si.consumption.import", "day:" + imported.day.ToString(),
            nlohmann::json{{"count", imported.count}, {"total_fen", imported.total_fen}}.dump());
  }
  std::printf("%s %s: %lld purchases, %s yuan\n",
              imported.already_imported ? "already imported" : "imported",
              imported.day.ToString().c_str(), static_cast<long long>(imported.count),
              FormatFen(imported.total_fen).c_str());
}

struct ConsumptionShowOptions {
  std::string dir, from, to, by = "person";
};

void RunConsumptionShow(const ConsumptionShowOptions& o) {
  const auto from = ParseIsoDate(o.from), to = ParseIsoDate(o.to);
  if (!from || !to) throw CommandFailed("--from/--to: expected YYYY-MM-DD", 2);
  if (o.by != "person" && o.by != "facility") {
    throw CommandFailed("--by: person or facility", 2);
  }
  SiSession s = SiSession::Open(o.dir);
  const auto totals = SiService(
      ConsumptionTotals(s.connection(),
                        o.by == "person" ? ConsumptionBy::kPerson : ConsumptionBy::kMerchant, *from,
                        *to),
      "consumption");
  for (const auto& t : totals) {
    std::printf("%-20s %8lld %14s\n", t.key.c_str(), static_cast<long long>(t.count),
                FormatFen(t.total_fen).c_str());
  }
}

CLI::App* ClaimGroup(CLI::App& si) {
  // `si claim adjudicate` (the claim file on its own) lives in si_policy_commands.cc.
  auto found = si.get_subcommands([](CLI::App* c) { return c->get_name() == "claim"; });
  if (!found.empty()) return found.front();
  CLI::App* claim = si.add_subcommand("claim", "Claims for inpatient and large costs");
  claim->require_subcommand(1);
  return claim;
}

}  // namespace

void AddSiClaimsCommands(CLI::App& si) {
  CLI::App* claim = ClaimGroup(si);
  {
    auto o = std::make_shared<ClaimOptions>();
    CLI::App* c = claim->add_subcommand(
        "submit", "Store a facility's claim file and adjudicate it against the registry");
    AddData(c, o->dir);
    c->add_option("--facility", o->facility, "The submitting facility's code")->required();
    c->add_option("file", o->file, "The claim (JSON, docs/insurance.md \"Claim file\")")
        ->required();
    c->callback([o] { RunClaimSubmit(*o); });
  }
  {
    auto o = std::make_shared<ClaimOptions>();
    CLI::App* c = claim->add_subcommand("show", "A stored claim with its explanation");
    AddData(c, o->dir);
    c->add_option("id", o->id, "The claim id")->required();
    c->add_flag("--json", o->json, "As JSON");
    c->callback([o] { RunClaimShow(*o); });
  }
  for (const char* step : {"approve", "reject", "pay"}) {
    auto o = std::make_shared<ClaimOptions>();
    const std::string name = step;
    CLI::App* c = claim->add_subcommand(
        name, name == "approve"  ? "Approve an adjudicated claim"
              : name == "reject" ? "Reject a submitted or adjudicated claim"
                                 : "Pay an approved claim (books it once, however often run)");
    AddData(c, o->dir);
    c->add_option("id", o->id, "The claim id")->required();
    if (name != "pay") c->add_option("--officer", o->officer, "Who decides")->required();
    if (name == "reject") c->add_option("--reason", o->reason, "Why")->required();
    c->callback([o, name] { RunClaimStep(*o, name); });
  }
  {
    auto o = std::make_shared<ClaimOptions>();
    CLI::App* c = claim->add_subcommand("list", "Stored claims");
    AddData(c, o->dir);
    c->add_option("--state", o->state, "Only claims in this state");
    c->add_option("--person", o->person, "Only this person's claims");
    c->callback([o] { RunClaimList(*o); });
  }
  {
    CLI::App* imports = si.add_subcommand("import", "Import units, people or wages from CSV");
    imports->require_subcommand(1);
    for (auto kind : {ImportKind::kUnits, ImportKind::kPeople, ImportKind::kWages}) {
      auto dir = std::make_shared<std::string>();
      auto path = std::make_shared<std::string>();
      CLI::App* c = imports->add_subcommand(
          std::string(ToString(kind)),
          "All rows or none; bad rows are listed with line and field (docs/insurance.md)");
      AddData(c, *dir);
      c->add_option("file", *path, "The CSV file")->required();
      c->callback([kind, dir, path] { RunImport(kind, *dir, *path); });
    }
  }
  {
    CLI::App* consumption = si.add_subcommand("consumption", "The bank's daily consumption detail");
    consumption->require_subcommand(1);
    auto dir = std::make_shared<std::string>();
    auto path = std::make_shared<std::string>();
    CLI::App* imp = consumption->add_subcommand(
        "import", "Import a day's signed detail (key in $MEDCARD_ALLOCATION_KEY)");
    AddData(imp, *dir);
    imp->add_option("file", *path, "The detail file from `medcard host report consumption`")
        ->required();
    imp->callback([dir, path] { RunConsumptionImport(*dir, *path); });
    auto o = std::make_shared<ConsumptionShowOptions>();
    CLI::App* show = consumption->add_subcommand("show", "Spending per person or facility");
    AddData(show, o->dir);
    show->add_option("--from", o->from, "First day, YYYY-MM-DD")->required();
    show->add_option("--to", o->to, "Last day, YYYY-MM-DD")->required();
    show->add_option("--by", o->by, "person (default) or facility");
    show->callback([o] { RunConsumptionShow(*o); });
  }
}

}  // namespace medcard::cli
