// medcard demo (issue 8, docs/demo.md): the whole scheme's day in one command. A city is
// generated from --seed; the agency runs the month and sends its signed allocation batch; the bank
// host credits the medical accounts, issues TEST cards and PSAMs and opens its terminal gateway on
// loopback; every POS signs on over ISO 8583/TCP; cardholders load and spend, with a wrong PIN,
// an insufficient balance, a lost card and a torn purchase; every terminal settles; the agency
// imports the consumption detail; then the reconciliation. Exit 0 only when it is clean to the
// fen. Without --no-serve the bank host then keeps running (`medcard host run` on the demo's
// data) until Ctrl-C, for `medcard teller` to try against it.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/host_config.h"
#include "common/money.h"
#include "demo/scenario.h"
#include "reader/reader.h"
#include "store/store.h"

namespace medcard::cli {
namespace {

namespace fs = std::filesystem;

struct Options {
  std::string dir = "medcard-demo";
  std::string readers = "auto";
  std::string db;
  std::string listen, api_listen;  // for the host afterwards; empty: host.json's defaults
  std::uint64_t seed = 1;
  int cards = 12;
  bool quiet = false;
  bool no_serve = false;
};

void PrintReport(const demo::ScenarioReport& r) {
  auto line = [](const std::string& text) { std::printf("%s\n", text.c_str()); };
  auto count = [](std::int64_t n) { return std::to_string(n); };
  line("medcard demo report — business day " + r.day + ", data in " + r.data_dir);
  line("  agency    " + count(r.people) + " insured (" + count(r.retirees) + " retired) in " +
       count(r.units) + " units; " + r.month + " billed " + FormatFen(r.contributions_fen) +
       ", allocated " + FormatFen(r.allocated_fen) + " to " + count(r.batch_lines) +
       " personal accounts");
  line("  bank      batch imported: " + count(r.credited_lines) + " credited " +
       FormatFen(r.credited_fen) + ", " + count(r.refused_lines) + " refused; " + count(r.cards) +
       " TEST cards, " + count(r.terminals) + " terminals (" + count(r.merchants) +
       " merchants), " + count(r.sign_ons) + " sign-ons over ISO 8583/TCP");
  if (r.pcsc_insertions > 0) {
    line("  readers   the first terminal through pcscd + vpcd: " + count(r.pcsc_insertions) +
         " card insertions; the others in-process");
  }
  line("  loads     " + count(r.loads) + " online, " + FormatFen(r.loaded_fen));
  line("  purchases " + count(r.ed_purchases) + " ED " + FormatFen(r.ed_fen) + ", " +
       count(r.ep_purchases) + " EP " + FormatFen(r.ep_fen));
  line(std::string("  refused   wrong PIN: ") + (r.wrong_pin_refused ? "yes" : "NO") +
       "; insufficient balance: " + (r.insufficient_balance_refused ? "yes" : "NO") +
       "; lost card " + r.lost_card +
       " after the blacklist download: " + (r.lost_card_refused ? "yes" : "NO"));
  line("  torn      card " + r.torn_card + " pulled mid-purchase (" + FormatFen(r.torn_amount_fen) +
       "): recovered " + std::to_string(r.torn_recoveries) + "x, cleared " +
       count(r.torn_uploaded) + "x");
  line("  day end   " + count(r.terminals_settled) + "/" + count(r.terminals) +
       " terminals settled, " + count(r.settlement_exceptions) + " exceptions, " +
       count(r.suspense_items) + " in suspense; host check " +
       (r.host_check_problems.empty()
            ? std::string("clean")
            : count(static_cast<std::int64_t>(r.host_check_problems.size())) + " problem(s)"));
  line("  agency    consumption detail: " + count(r.consumption_lines) + " purchases " +
       FormatFen(r.consumption_fen));
  line("  claim     inpatient, " + r.claim_person + ", billed " + FormatFen(r.claim_billed_fen) +
       ": pooled fund " + FormatFen(r.claim_pooled_fund_fen) + ", personal account " +
       FormatFen(r.claim_personal_account_fen) + ", self-pay " + FormatFen(r.claim_self_pay_fen) +
       " — " + r.claim_state);
  line("  money     allocated " + FormatFen(r.allocated_fen) + " = medical accounts " +
       FormatFen(r.medical_fen) + " + on cards " + FormatFen(r.on_cards_fen) + " + merchants " +
       FormatFen(r.merchant_fen) + " + suspense " + FormatFen(r.suspense_fen));
  line("  files     " + r.merchant_settlement_csv + ", " + r.terminal_settlement_csv);
  if (r.clean()) {
    line("reconciliation: clean — every fen accounted for");
  } else {
    line("reconciliation: NOT clean");
    for (const auto& p : r.problems) line("  - " + p);
  }
}

// `medcard host run` on the demo's bank data, in place of this process, until Ctrl-C.
[[noreturn]] void Serve(const Options& o, const demo::ScenarioOptions& scenario) {
  const std::string bank_dir = (fs::absolute(o.dir) / "bank").string();
  HostConfig config = DefaultHostConfig(bank_dir);
  if (!o.db.empty()) config.database = o.db;
  config.log_file.clear();
  const std::string path = HostConfigPath(bank_dir);
  if (FILE* f = std::fopen(path.c_str(), "w")) {
    const std::string json = HostConfigToJson(config);
    const bool written = std::fwrite(json.data(), 1, json.size(), f) == json.size();
    if (std::fclose(f) != 0 || !written) throw CommandFailed("cannot write " + path);
  } else {
    throw CommandFailed("cannot write " + path);
  }
  const std::string terminals =
      o.listen.empty() ? config.listen_address + ":" + std::to_string(config.port) : o.listen;
  const std::string api = o.api_listen.empty()
                              ? config.api_listen_address + ":" + std::to_string(config.api_port)
                              : o.api_listen;
  std::printf(
      "\nThe bank host now keeps running on the demo's data (Ctrl-C stops it):\n"
      "  terminals: %s   API: http://%s\n"
      "Try the teller workstation from another shell:\n"
      "  medcard host users add --data %s --login t01 --role teller --branch B001\n"
      "  medcard teller login --host http://%s --login t01\n"
      "(the key store passphrase is MEDCARD_KEYSTORE_PASSPHRASE, else the demo's: "
      "docs/demo.md)\n\n",
      terminals.c_str(), api.c_str(), bank_dir.c_str(), api.c_str());
  std::fflush(stdout);
  ::setenv("MEDCARD_KEYSTORE_PASSPHRASE", scenario.passphrase.c_str(), 1);
  std::vector<std::string> args = {"medcard", "host", "run", "--data", bank_dir};
  if (!o.listen.empty()) args.insert(args.end(), {"--listen", o.listen});
  if (!o.api_listen.empty()) args.insert(args.end(), {"--api-listen", o.api_listen});
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  ::execv("/proc/self/exe", argv.data());
  throw CommandFailed("cannot start `medcard host run`");
}

// pcscd is running with vsmartcard-vpcd's two readers.
bool VpcdAvailable() {
  auto names = reader::ListReaders();
  if (!names.ok()) return false;
  auto has = [&](const std::string& n) {
    return std::find(names->begin(), names->end(), n) != names->end();
  };
  return has(reader::VpcdReaderName(0)) && has(reader::VpcdReaderName(1));
}

void RunDemo(const Options& o) {
  const bool vpcd = o.readers != "inproc" && VpcdAvailable();
  if (o.readers == "pcsc" && !vpcd) {
    throw CommandFailed("--readers pcsc: pcscd with the vsmartcard-vpcd readers is not running", 2);
  }
  if (o.cards < 4) throw CommandFailed("--cards: at least 4 (the day's exceptions need them)", 2);
  demo::ScenarioOptions scenario;
  scenario.data_dir = o.dir;
  scenario.bank_database_url = scenario.agency_database_url = o.db;
  if (const char* passphrase = std::getenv("MEDCARD_KEYSTORE_PASSPHRASE");
      passphrase != nullptr && *passphrase != '\0') {
    scenario.passphrase = passphrase;
  }
  scenario.pcsc = vpcd;
  scenario.city.seed = o.seed;
  scenario.city.cards = o.cards;
  scenario.city.people = std::max(24, o.cards * 2);
  scenario.city.units = std::max(4, o.cards / 6);
  if (!o.quiet) {
    scenario.progress = [](const std::string& line) { std::printf("%s\n", line.c_str()); };
  }
  // The terminal server's connection log is for `host run`; the demo tells its own story.
  spdlog::set_level(spdlog::level::warn);
  auto report = demo::RunScenario(scenario);
  if (!report.ok()) throw CommandFailed("demo: " + report.error().message);
  if (!o.quiet) std::printf("\n");
  PrintReport(*report);
  if (!report->clean()) throw CommandFailed("the demo's day does not reconcile", 1);
  if (!o.no_serve) Serve(o, scenario);
}

}  // namespace

void AddDemoCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "demo", "run the whole scheme's day on a generated city and reconcile it to the fen");
  static Options options;
  cmd->add_option("--dir", options.dir, "data directory (created; its demo data is replaced)");
  cmd->add_option("--seed", options.seed, "the city's seed (the same seed, the same city)");
  cmd->add_option("--cards", options.cards, "cards issued (>= 4; default 12)");
  cmd->add_option("--db", options.db,
                  "an EMPTY PostgreSQL database (postgresql://...) for the bank and the agency; "
                  "default SQLite in --dir");
  cmd->add_option("--readers", options.readers, "auto | inproc | pcsc (auto: in-process)")
      ->check(CLI::IsMember({"auto", "pcsc", "inproc"}));
  cmd->add_flag("--quiet", options.quiet, "print only the report");
  cmd->add_flag("--no-serve", options.no_serve,
                "exit after the report instead of keeping the bank host running");
  cmd->add_option(
      "--listen", options.listen,
      "after the day: the host's terminal address ADDRESS:PORT (default 127.0.0.1:8583)");
  cmd->add_option("--api-listen", options.api_listen,
                  "after the day: the host's API address ADDRESS:PORT (default 127.0.0.1:8080)");
  cmd->callback([] { RunDemo(options); });
}

}  // namespace medcard::cli
