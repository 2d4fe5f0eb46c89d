// medcard si init | unit | person | month | allocations.
#include "cli/commands.h"

namespace medcard::cli {

void AddSiRegistryCommands(CLI::App& parent) { (void)parent; }

}  // namespace medcard::cli
