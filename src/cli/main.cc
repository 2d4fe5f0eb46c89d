// medcard: the one command of the scheme. Each subcommand group lives in its own file; this file
// wires them to CLI11 and turns errors into messages and exit codes (docs/cli.md):
//   0 success · 1 the operation failed (message on stderr) · 2 usage error
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"medcard — the city medical-insurance smart card scheme"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "medcard 0.1.0");
  medcard::cli::AddCardCommands(app);
  medcard::cli::AddPsamCommands(app);
  medcard::cli::AddReaderCommands(app);
  medcard::cli::AddDemoCommand(app);
  medcard::cli::AddKeysCommands(app);
  medcard::cli::AddHostCommands(app);
  medcard::cli::AddIssueCommands(app);
  medcard::cli::AddPosCommands(app);
  medcard::cli::AddSiCommands(app);
  medcard::cli::AddTellerCommands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  } catch (const medcard::cli::CommandFailed& e) {
    std::fprintf(stderr, "medcard: %s\n", e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "medcard: %s\n", e.what());
    return 1;
  }
  return 0;
}
