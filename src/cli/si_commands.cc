// medcard si: the social-insurance agency's system (docs/insurance.md).
#include "cli/commands.h"

namespace medcard::cli {

void AddSiCommands(CLI::App& app) {
  CLI::App* si = app.add_subcommand("si", "The social-insurance agency: policy, registry, claims");
  si->require_subcommand(1);
  AddSiPolicyCommands(*si);
  AddSiRegistryCommands(*si);
  AddSiClaimsCommands(*si);
  AddSiServeCommands(*si);
  AddSiReportCommands(*si);
}

}  // namespace medcard::cli
