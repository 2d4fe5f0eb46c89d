// medcard demo (issue 8, docs/demo.md): the whole scheme's day in one command. A city is
// generated from --seed; the agency runs the month and sends its signed allocation batch; the bank
// host credits the medical accounts, issues TEST cards and PSAMs and opens its terminal gateway on
// loopback; every POS signs on over ISO 8583/TCP; cardholders load and spend, with a wrong PIN,
// an insufficient balance, a lost card and a torn purchase; every terminal settles; the agency
// imports the consumption detail; then the reconciliation. Exit 0 only when it is clean to the
// fen. Without --no-serve the bank host then keeps running (`medcard host run` on the demo's
// data) until Ctrl-C, for `medcard teller` to try against it. With --purchases the same day runs
// at city scale (docs/demo.md "City scale") and the report adds each phase's wall time, the
// throughput and the latency percentiles.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
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
  std::int64_t purchases = 0;  // 0: the scripted day
  int terminals = 5;
  int workers = 0;  // 0 and not given: the default, DefaultWorkers()
  bool workers_given = false;
  bool quiet = false;
  bool no_serve = false;
};

int DefaultWorkers() {
  const unsigned cores = std::thread::hardware_concurrency();
  return cores > 0 ? static_cast<int>(cores) : 2;
}

std::string Fixed(double value, int decimals) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", decimals, value);
  return text;
}

std::string Millis(std::int64_t us) { return Fixed(static_cast<double>(us) / 1000.0, 2) + " ms"; }

std::string Padded(std::string text, std::size_t width, bool right = false) {
  if (text.size() < width) text.insert(right ? 0 : text.size(), width - text.size(), ' ');
  return text;
}

// The city-scale figures (ScenarioReport's measurements).
void PrintMeasurements(const demo::ScenarioReport& r) {
  auto line = [](const std::string& text) { std::printf("%s\n", text.c_str()); };
  auto count = [](std::int64_t n) { return std::to_string(n); };
  line("  scale     " + count(r.cards) + " cards (" + count(r.branch_cards) + " at the branch, " +
       count(r.bureau_cards) + " by the card bureau), " + count(r.terminals) + " terminals, " +
       count(r.workers) + " POS driver threads; " + count(r.purchase_attempts) +
       " purchase attempts: " + count(r.ed_purchases + r.ep_purchases) + " made, " +
       count(r.purchases_refused) + " refused");
  line("  timing    " + Padded("phase", 18) + Padded("wall", 11, true) + Padded("items", 10, true) +
       "  " + Padded("per second", 12, true) + "   host handler wall / CPU");
  for (const demo::PhaseTiming& p : r.phases) {
    std::string text = "            " + Padded(p.name, 18) +
                       Padded(Fixed(static_cast<double>(p.wall_us) / 1e6, 2) + " s", 11, true) +
                       Padded(p.items > 0 ? count(p.items) : std::string("-"), 10, true) + "  " +
                       Padded(p.items > 0 ? Fixed(p.per_second(), 1) : std::string("-"), 12, true);
    if (p.host_wall_us > 0) {
      text += "   " + Fixed(static_cast<double>(p.host_wall_us) / 1e6, 2) + " s / " +
              Fixed(static_cast<double>(p.host_cpu_us) / 1e6, 2) + " s";
    }
    if (!p.unit.empty() && p.items > 0) text += "   (" + p.unit + ")";
    line(text);
  }
  line("            " + Padded("total", 18) +
       Padded(Fixed(static_cast<double>(r.total_wall_us) / 1e6, 2) + " s", 11, true));
  auto latency = [&](const std::string& what, const demo::LatencySummary& s) {
    line("            " + Padded(what, 18) + "n=" + count(s.count) + "  p50 " + Millis(s.p50_us) +
         "  p95 " + Millis(s.p95_us) + "  p99 " + Millis(s.p99_us) + "  max " + Millis(s.max_us));
  };
  line("  latency   (wall clock per operation, at the POS)");
  latency("online load", r.load_latency);
  latency("offline purchase", r.purchase_latency);
  latency("day end/terminal", r.day_end_latency);
  line("  clearing  " + count(r.purchases_uploaded) +
       " purchases uploaded, settled and cleared at the host: " + Fixed(r.cleared_per_second, 1) +
       " per second of the day end");
}

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
  if (!r.claim_card.empty()) {
    line("            personal account share " + FormatFen(r.claim_card_paid_fen) +
         " paid by card " + r.claim_card + " at " + r.claim_hospital + " terminal " +
         r.claim_terminal + ", card serial " + count(r.claim_card_serial) + "; cleared " +
         count(r.claim_card_cleared) + "x");
  }
  line("  money     allocated " + FormatFen(r.allocated_fen) + " = medical accounts " +
       FormatFen(r.medical_fen) + " + on cards " + FormatFen(r.on_cards_fen) + " + merchants " +
       FormatFen(r.merchant_fen) + " + suspense " + FormatFen(r.suspense_fen));
  line("  files     " + r.merchant_settlement_csv + ", " + r.terminal_settlement_csv);
  if (r.city_scale) PrintMeasurements(r);
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
  if (o.purchases != 0 && o.readers == "pcsc") {
    throw CommandFailed(
        "--readers pcsc: not with --purchases (the city-scale day's readers are "
        "in-process)",
        2);
  }
  const bool vpcd = o.readers != "inproc" && o.purchases == 0 && VpcdAvailable();
  if (o.readers == "pcsc" && !vpcd) {
    throw CommandFailed("--readers pcsc: pcscd with the vsmartcard-vpcd readers is not running", 2);
  }
  if (o.cards < 4) throw CommandFailed("--cards: at least 4 (the day's exceptions need them)", 2);
  if (o.cards > 989'999) throw CommandFailed("--cards: at most 989999", 2);
  if (o.terminals < 1 || o.terminals > 9'999) {
    throw CommandFailed("--terminals: 1 to 9999", 2);
  }
  if (o.workers < 0 || (o.workers == 0 && o.workers_given)) {
    throw CommandFailed("--workers: at least 1", 2);
  }
  const bool scale = o.purchases != 0;
  if (o.purchases < 0 || (scale && o.purchases < 3)) {
    throw CommandFailed(
        "--purchases: 0 (the scripted day) or at least 3 (the day's exceptions make three)", 2);
  }
  if (o.purchases > demo::kMaxPurchasesPerCard * o.cards) {
    const std::int64_t needed =
        (o.purchases + demo::kMaxPurchasesPerCard - 1) / demo::kMaxPurchasesPerCard;
    throw CommandFailed("--purchases " + std::to_string(o.purchases) + " needs at least " +
                            std::to_string(needed) + " cards (--cards): at most " +
                            std::to_string(demo::kMaxPurchasesPerCard) +
                            " purchases per cardholder a day",
                        2);
  }
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
  demo::SetTerminals(scenario.city, o.terminals);
  if (scale) {
    // City scale: the cardholders and a few insured people without a card (enrolling twice as
    // many people as cards would only cost time); units of about fifty.
    scenario.city.people = o.cards + std::max(4, o.cards / 100);
    scenario.city.units = std::max(4, scenario.city.people / 50);
  } else {
    scenario.city.people = std::max(24, o.cards * 2);
    scenario.city.units = std::max(4, o.cards / 6);
  }
  scenario.purchases = o.purchases;
  scenario.workers = o.workers > 0 ? o.workers : DefaultWorkers();
  if (!o.quiet) {
    static bool bar_open = false;  // a progress bar is on the current line
    scenario.progress = [](const std::string& line) {
      if (bar_open) std::printf("\n");
      bar_open = false;
      std::printf("%s\n", line.c_str());
      std::fflush(stdout);
    };
    // On a terminal: a progress bar for the long steps, redrawn in place.
    if (::isatty(STDOUT_FILENO) == 1) {
      scenario.step_progress = [](const demo::StepProgress& p) {
        constexpr std::int64_t kWidth = 30;
        const std::int64_t filled = p.total > 0 ? p.done * kWidth / p.total : kWidth;
        const std::int64_t percent = p.total > 0 ? p.done * 100 / p.total : 100;
        std::printf("\r%-20s [%s%s] %3lld%%  %lld/%lld", p.step.c_str(),
                    std::string(static_cast<std::size_t>(filled), '#').c_str(),
                    std::string(static_cast<std::size_t>(kWidth - filled), '.').c_str(),
                    static_cast<long long>(percent), static_cast<long long>(p.done),
                    static_cast<long long>(p.total));
        bar_open = p.done < p.total;
        if (!bar_open) std::printf("\n");
        std::fflush(stdout);
      };
    }
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
  cmd->add_option("--purchases", options.purchases,
                  "city scale: the day's purchase attempts (>= 3, at most 20 per card); "
                  "0: the scripted day (default)");
  cmd->add_option("--terminals", options.terminals,
                  "merchants, one POS terminal each: 3 in 5 hospitals, the rest pharmacies "
                  "(default 5)");
  cmd->add_option("--workers", options.workers,
                  "city scale: POS driver threads (default: the machine's cores)")
      ->each([](const std::string&) { options.workers_given = true; });
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
