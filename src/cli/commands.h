// The subcommand groups of `medcard`. Commands report failure by throwing CommandFailed (the
// edge of the program: everything below returns Result/Status).
#pragma once

#include <CLI/CLI.hpp>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include "common/result.h"

namespace medcard::cli {

class CommandFailed : public std::runtime_error {
 public:
  explicit CommandFailed(const std::string& message, int exit_code = 1)
      : std::runtime_error(message), exit_code_(exit_code) {}
  int exit_code() const { return exit_code_; }

 private:
  int exit_code_;
};

// Unwraps a Result or throws CommandFailed with `context: message`.
template <typename T>
T Check(Result<T> r, const std::string& context) {
  if (!r.ok()) throw CommandFailed(context + ": " + r.error().message);
  return std::move(r).value();
}
inline void Check(const Status& s, const std::string& context) {
  if (!s.ok()) throw CommandFailed(context + ": " + s.error().message);
}

// The whole file at `path` (bytes as they are), or CommandFailed "cannot read <path>".
inline std::string ReadFileOrFail(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CommandFailed("cannot read " + path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void AddCardCommands(CLI::App& app);    // card new | show | attach
void AddPsamCommands(CLI::App& app);    // psam new | show | attach
void AddReaderCommands(CLI::App& app);  // reader list | apdu
void AddDemoCommand(CLI::App& app);     // demo
void AddKeysCommands(CLI::App& app);    // keys init | ceremony | generate | rotate | list | ...
void AddHostCommands(CLI::App& app);    // host check
void AddPosCommands(CLI::App& app);     // pos init | purchase | balance | ... (pos_commands.cc)
// issue card | issue psam, and card blank | psam blank (call after AddCard/AddPsamCommands).
void AddIssueCommands(CLI::App& app);
void AddSiCommands(CLI::App& app);      // si ... (si_commands.cc)
void AddTellerCommands(CLI::App& app);  // teller login | card ... (teller_commands.cc)

// Parts of a group, each in its own file: called by the group's Add... above.
void AddSiPolicyCommands(CLI::App& si);  // si policy | claim (si_policy_commands.cc)
void AddSiRegistryCommands(
    CLI::App& si);  // si init | unit | person | month ... (si_registry_commands.cc)
// si claim submit | show | approve | reject | pay | list, si import, si consumption
// (si_claims_commands.cc). Call after AddSiPolicyCommands: it adds to its `si claim` group.
void AddSiClaimsCommands(CLI::App& si);
// si serve | si users add: the agency's HTTPS/JSON API (si_serve_commands.cc).
void AddSiServeCommands(CLI::App& si);
// si report fund | arrears | balances, si forecast (si_report_commands.cc).
void AddSiReportCommands(CLI::App& si);
void AddHostAccessCommands(CLI::App& host);      // host users | audit (host_access_commands.cc)
void AddHostAllocationCommands(CLI::App& host);  // host allocations (host_allocation_commands.cc)
// host report consumption (host_consumption_commands.cc); call after the report group exists.
void AddHostConsumptionCommands(CLI::App& host);

// Installs SIGINT/SIGTERM handlers that call `stop` (async-signal-safe callers only).
void OnInterrupt(void (*stop)());

}  // namespace medcard::cli
