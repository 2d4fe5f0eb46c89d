// medcard host report consumption --day D --out FILE: the bank's daily consumption detail for
// the agency (docs/insurance.md "Consumption detail"): every purchase the host cleared that day,
// with the card's person, the merchant, the amount and the time, signed with the batch key in
// $MEDCARD_ALLOCATION_KEY (the allocation batches' key). Reads the host's database only: no key
// store is opened.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/host_config.h"
#include "common/money.h"
#include "insurance/consumption.h"
#include "store/store.h"

namespace medcard::cli {
namespace {

namespace fs = std::filesystem;

struct ConsumptionOptions {
  std::string data_dir;
  std::string day;
  std::string out_path;
};

void RunConsumptionReport(const ConsumptionOptions& o) {
  const auto day = insurance::ParseIsoDate(o.day);
  if (!day) throw CommandFailed("--day: expected YYYY-MM-DD, got '" + o.day + "'", 2);
  const char* hex = std::getenv(insurance::kBatchKeyEnvironment);
  if (hex == nullptr) {
    throw CommandFailed(std::string("the batch key is not set: put its 64 hex digits in ") +
                        insurance::kBatchKeyEnvironment);
  }
  const insurance::BatchKey key = Check(insurance::BatchKey::FromHex(hex), "batch key");
  const std::string path = HostConfigPath(o.data_dir);
  if (!fs::exists(path)) throw CommandFailed("no host in " + o.data_dir + " (no host.json)");
  const HostConfig config = Check(LoadHostConfig(path, o.data_dir), "reading the configuration");
  store::OpenOptions open;
  open.create_if_missing = false;
  auto database =
      Check(Result<std::unique_ptr<store::Database>>(store::Database::Open(config.database, open)),
            "opening the database");
  auto connection =
      Check(Result<std::unique_ptr<store::Connection>>(database->Connect()), "connecting");
  const insurance::ConsumptionDetail detail =
      Check(insurance::ExportConsumption(*connection, *day), "consumption");

  const std::string temporary = o.out_path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out << insurance::WriteConsumptionDetail(detail, key);
    out.flush();
    if (!out) throw CommandFailed("cannot write " + temporary);
  }
  std::error_code ec;
  fs::rename(temporary, o.out_path, ec);
  if (ec) throw CommandFailed("cannot write " + o.out_path + ": " + ec.message());
  std::printf("consumption %s: %lld purchases, %s yuan -> %s\n", day->ToString().c_str(),
              static_cast<long long>(detail.lines.size()), FormatFen(detail.total_fen()).c_str(),
              o.out_path.c_str());
}

}  // namespace

void AddHostConsumptionCommands(CLI::App& host) {
  auto groups = host.get_subcommands([](CLI::App* c) { return c->get_name() == "report"; });
  CLI::App* report = groups.empty() ? host.add_subcommand("report", "Reports") : groups.front();
  auto o = std::make_shared<ConsumptionOptions>();
  CLI::App* consumption = report->add_subcommand(
      "consumption", "The day's cleared purchases per person and merchant, signed for the agency");
  consumption->add_option("--data", o->data_dir, "The host's data directory")->required();
  consumption->add_option("--day", o->day, "YYYY-MM-DD (the card's transaction date)")->required();
  consumption->add_option("--out", o->out_path, "Where the detail file goes")->required();
  consumption->callback([o] { RunConsumptionReport(*o); });
}

}  // namespace medcard::cli
