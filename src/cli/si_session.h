// The agency's data directory as every `medcard si` command opens it (docs/insurance.md
// "Registry and the monthly run"): si.json names the database and the policy file or directory
// (`medcard si init` writes it); a session opens the database, applies the migration sets the
// command needs, loads the policy book when asked, says who is acting and audits the changes.
//
//   SiSession s = SiSession::Open(dir);            // insurance tables
//   Service(RunMonth(s.connection(), s.policies(), month), "month run");
//
// Every failure throws CommandFailed with a message naming the file or the step (exit code 1;
// 2 for bad command-line values).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cli/commands.h"
#include "common/bcd.h"
#include "insurance/allocation_batch.h"
#include "insurance/policy.h"
#include "insurance/registry.h"
#include "store/store.h"

namespace medcard::cli {

// si.json: {"database": URL, "policy": file or directory}.
struct SiConfig {
  std::string database;
  std::string policy;
};
std::string SiConfigPath(const std::string& dir);
// Throws when dir has no si.json or it is not the expected object.
SiConfig LoadSiConfig(const std::string& dir);
// A policy file, or a directory of them (PolicyBook::LoadDirectory).
insurance::PolicyBook LoadSiPolicies(const std::string& path);

class SiSession {
 public:
  // Opens dir's database (never creating it) and applies `migrations` (default: the agency's
  // own tables; `si serve` passes the API's sets: users, audit, idempotency too).
  static SiSession Open(const std::string& dir,
                        const std::vector<const store::MigrationSet*>& migrations = {
                            &insurance::Migrations()});

  SiSession(SiSession&&) = default;
  SiSession& operator=(SiSession&&) = default;

  const SiConfig& config() const { return config_; }
  store::Database& database() { return *database_; }
  store::Connection& connection() { return *connection_; }
  // The policy book, loaded from config().policy on first use.
  const insurance::PolicyBook& policies();
  // Who runs the command, for the records: "cli:<login>" (the operating-system user).
  const std::string& actor() const { return actor_; }
  // Records a change this command made in the agency's audit log (docs/audit.md) as actor(),
  // from "cli", with the API's action names ("si.unit.add", "si.person.enrol", ...) and targets
  // ("unit:U001", "person:<ssn>", "month:2026-11"); details: a JSON object's text. Written in its
  // own transaction right after the change (the registry and run services commit their own):
  // if it fails, CommandFailed says the change was made but not audited.
  void Audit(const std::string& action, const std::string& target,
             const std::string& details = "{}");

 private:
  SiSession() = default;
  SiConfig config_;
  std::unique_ptr<store::Database> database_;
  std::unique_ptr<store::Connection> connection_;
  std::optional<insurance::PolicyBook> policies_;
  std::string actor_;
  bool audit_ready_ = false;
};

// A database result, or CommandFailed with `context: message`.
template <typename T, typename E>
T SiDb(store::Expected<T, E> r, const std::string& context) {
  if (!r.ok()) throw CommandFailed(context + ": " + r.error().message);
  return std::move(r).value();
}

// A service result, or CommandFailed with `context: message`: exit code 2 for invalid input,
// 1 otherwise.
template <typename T>
T SiService(insurance::ServiceResult<T> r, const std::string& context) {
  if (!r.ok()) {
    const int exit_code = r.error().code == access::ErrorCode::kInvalid ? 2 : 1;
    throw CommandFailed(context + ": " + r.error().message, exit_code);
  }
  return std::move(r).value();
}

// The batch key from $MEDCARD_ALLOCATION_KEY (docs/insurance.md "The batch key").
insurance::BatchKey SiBatchKeyFromEnvironment();

// Command-line values (exit code 2 when malformed): "YYYY-MM-DD", "YYYY-MM".
Date SiDateOption(const std::string& text, const std::string& option);
insurance::YearMonth SiMonthOption(const std::string& text, const std::string& option);
// A day range from --from/--to given as days or as whole months ("2026-11" is 1 to 30 November).
std::pair<Date, Date> SiDayRange(const std::string& from, const std::string& to);

}  // namespace medcard::cli
