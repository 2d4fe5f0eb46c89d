// medcard si policy check | show, si claim adjudicate.
#include "cli/commands.h"

namespace medcard::cli {

void AddSiPolicyCommands(CLI::App& parent) { (void)parent; }

}  // namespace medcard::cli
