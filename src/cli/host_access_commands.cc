// medcard host users | audit.
#include "cli/commands.h"

namespace medcard::cli {

void AddHostAccessCommands(CLI::App& parent) { (void)parent; }

}  // namespace medcard::cli
