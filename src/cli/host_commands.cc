// medcard host check: the ledger's invariants, verified against the host's database
// (docs/ledger.md "Invariants"). Read-only: it opens no database that does not exist and migrates
// nothing.
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "ledger/ledger.h"
#include "store/store.h"

namespace medcard::cli {
namespace {

struct HostCheckOptions {
  std::string data_dir;
  std::string db_url;
};

void RunHostCheck(const HostCheckOptions& options) {
  if (options.data_dir.empty() == options.db_url.empty()) {
    throw CommandFailed("say where the host's database is: --data DIR or --db URL", 2);
  }
  const std::string url =
      options.db_url.empty() ? store::SqliteUrlForDataDir(options.data_dir) : options.db_url;
  store::OpenOptions open;
  open.create_if_missing = false;
  auto database = Check(Result<std::unique_ptr<store::Database>>(store::Database::Open(url, open)),
                        "opening the database");
  auto connection =
      Check(Result<std::unique_ptr<store::Connection>>(database->Connect()), "connecting");
  const int newest = ledger::Migrations().migrations.back().version;
  const int version =
      Check(Result<int>(store::SchemaVersion(*connection, "ledger")), "reading the schema version");
  if (version == 0) {
    throw CommandFailed("no ledger in " + database->description() +
                        " (the host creates it when it first starts)");
  }
  if (version < newest) {
    throw CommandFailed("the ledger in " + database->description() + " has schema version " +
                        std::to_string(version) + ", older than this program's " +
                        std::to_string(newest) + ": start the host once to migrate it");
  }
  ledger::Ledger ledger(*connection);
  const ledger::InvariantReport report =
      Check(Result<ledger::InvariantReport>(ledger.CheckInvariants()), "checking the ledger");
  for (const ledger::Problem& problem : report.problems) {
    std::printf("%s\n", problem.description.c_str());
  }
  std::printf("ledger %s: %lld accounts, %lld postings, %zu problems\n",
              report.ok() ? "consistent" : "INCONSISTENT", static_cast<long long>(report.accounts),
              static_cast<long long>(report.postings), report.problems.size());
  if (!report.ok()) {
    std::fflush(stdout);
    throw CommandFailed("the ledger check found " + std::to_string(report.problems.size()) +
                        " problem(s)");
  }
}

}  // namespace

void AddHostCommands(CLI::App& app) {
  CLI::App* host = app.add_subcommand("host", "The bank host");
  host->require_subcommand(1);

  auto options = std::make_shared<HostCheckOptions>();
  CLI::App* check = host->add_subcommand(
      "check",
      "Verify the ledger: balances sum to zero and match their postings, every transfer has both "
      "legs, card floats match the cards, no card transaction is posted twice. Exit 1 when not.");
  CLI::Option* data =
      check->add_option("--data", options->data_dir, "The host's data directory (DIR/medcard.db)");
  CLI::Option* db =
      check->add_option("--db", options->db_url, "A database URL: postgresql://... or sqlite:PATH");
  data->excludes(db);
  check->callback([options] { RunHostCheck(*options); });
}

}  // namespace medcard::cli
