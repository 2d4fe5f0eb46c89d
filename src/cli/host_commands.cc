// medcard host ...: the bank host's operations (docs/host.md "Running the host", docs/cli.md).
//   init        data directory, database (migrated), key store, host.json
//   run         the terminal server (host_run.cc)
//   terminals   add (register a merchant's terminal; its TMK is generated in the key store) |
//               list | block | unblock
//   cards       import an issuance log
//   blacklist   add | remove | list
//   report      settlement per merchant and day; branch: cards per branch and day
//   check       the ledger's and the host's invariants (read-only)
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>

#include "access/directory.h"
#include "audit/audit_log.h"
#include "branch/services.h"
#include "cli/commands.h"
#include "cli/host_config.h"
#include "cli/host_session.h"
#include "cli/key_delivery.h"
#include "cli/key_store_access.h"
#include "cli/pos_tmk.h"
#include "cli/teller_pek.h"
#include "common/bytes.h"
#include "common/money.h"
#include "host/host.h"
#include "issuance/test_issuer.h"
#include "ledger/ledger.h"
#include "store/store.h"

namespace medcard::cli {
namespace {

namespace fs = std::filesystem;

// --- host init ----------------------------------------------------------------------------------

struct HostInitOptions {
  std::string data_dir;
  std::string db_url;
  KeyStoreLocation key_store;
  bool test_keys = false;
  std::string listen;
};

void ParseListen(const std::string& listen, HostConfig& config) {
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    throw CommandFailed("--listen takes ADDRESS:PORT, e.g. 127.0.0.1:8583", 2);
  }
  const std::string port = listen.substr(colon + 1);
  char* end = nullptr;
  const unsigned long number = std::strtoul(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || number == 0 || number > 65535) {
    throw CommandFailed("--listen: the port must be 1..65535", 2);
  }
  config.listen_address = listen.substr(0, colon);
  config.port = static_cast<std::uint16_t>(number);
}

void RunHostInit(const HostInitOptions& given) {
  HostInitOptions options = given;
  std::error_code ec;
  fs::create_directories(options.data_dir, ec);
  if (ec) throw CommandFailed("cannot create " + options.data_dir + ": " + ec.message());
  // host.json names the database and the key store by absolute path, so every later command
  // (and a service started in /) finds them whatever its working directory.
  options.data_dir = fs::absolute(options.data_dir).lexically_normal().string();
  if (options.data_dir.size() > 1 && options.data_dir.back() == '/') options.data_dir.pop_back();
  const std::string config_path = HostConfigPath(options.data_dir);
  HostConfig config = DefaultHostConfig(options.data_dir);
  const bool existing = fs::exists(config_path);
  if (existing) {
    config = Check(LoadHostConfig(config_path, options.data_dir), "reading the configuration");
  }
  if (!options.db_url.empty()) config.database = options.db_url;
  if (!options.key_store.store.empty()) config.key_store = options.key_store.store;
  if (!options.key_store.pkcs11_module.empty()) {
    config.pkcs11_module = options.key_store.pkcs11_module;
  }
  if (!options.listen.empty()) ParseListen(options.listen, config);

  // The key store: an existing one is used as it is; a new software store is created (with the
  // published test key set when --test-keys).
  KeyStoreLocation location{config.key_store, config.pkcs11_module};
  std::unique_ptr<keys::KeyStore> key_store;
  const bool store_exists =
      location.is_pkcs11() || fs::exists(fs::path(location.directory()) / "keystore.mks");
  if (store_exists) {
    key_store = OpenKeyStore(location);
  } else {
    SecretString passphrase;
    ReadSecret(kPassphraseVariable, "passphrase for the new key store", passphrase);
    key_store = Check(
        keys::CreateSoftwareKeyStore(location.directory(), passphrase.value, options.test_keys),
        "creating the key store");
  }
  if (options.test_keys) {
    if (!key_store->test_only()) {
      throw CommandFailed("--test-keys: " + key_store->Describe() +
                          " is not a test key store; the published test keys never go into a "
                          "real one");
    }
    const auto& test_set = issuance::TestKeySet::Embedded();
    for (const std::string& role : issuance::TestKeySet::RequiredRoles()) {
      if (key_store->Find(role).ok()) continue;
      Check(Result<keys::KeyInfo>(key_store->ImportTestKey(role, test_set.MasterKey(role))),
            "importing the test key " + role);
    }
  }

  auto database =
      Check(Result<std::unique_ptr<store::Database>>(store::Database::Open(config.database)),
            "opening the database");
  auto connection =
      Check(Result<std::unique_ptr<store::Connection>>(database->Connect()), "connecting");
  Check(Result<int>(store::Migrate(*connection, ledger::Migrations())), "migrating the ledger");
  Check(Result<int>(store::Migrate(*connection, host::Migrations())), "migrating the host");
  Check(Result<int>(store::Migrate(*connection, audit::Migrations())), "migrating the audit log");
  Check(Result<int>(store::Migrate(*connection, access::Migrations())), "migrating the users");

  std::ofstream out(config_path, std::ios::trunc);
  out << HostConfigToJson(config);
  out.close();
  if (!out) throw CommandFailed("cannot write " + config_path);

  std::printf("host %s in %s\n", existing ? "updated" : "initialised", options.data_dir.c_str());
  std::printf("  database   %s\n", database->description().c_str());
  std::printf("  key store  %s%s\n", key_store->Describe().c_str(),
              key_store->test_only() ? " (TEST keys: test cards only)" : "");
  std::printf("  listens on %s:%u when run (%s)\n", config.listen_address.c_str(),
              static_cast<unsigned>(config.port), config_path.c_str());
  if (!options.test_keys && !key_store->Find("purchase").ok()) {
    std::printf(
        "  the key store has no issuer keys yet: run the key ceremony "
        "(medcard keys ceremony --store %s --role ...)\n",
        config.key_store.c_str());
  }
}

// --- terminals, cards, blacklist, report ---------------------------------------------------------

struct DataDirOption {
  std::string data_dir;
};

Bytes HexArgument(const std::string& text, std::size_t size, const std::string& what) {
  auto bytes = FromHex(text);
  if (!bytes || bytes->size() != size) {
    throw CommandFailed(what + " must be " + std::to_string(size * 2) + " hex digits", 2);
  }
  return *bytes;
}

// A refusal prefixed with what was being done, for RunAudited.
host::HostError Refusal(host::HostError error, const std::string& context) {
  error.message = context + ": " + error.message;
  return error;
}

// A database failure inside an audited change (retryable when the engine says so).
host::HostError DatabaseFailure(const store::DbError& error) {
  host::HostError failure;
  failure.message = "database: " + error.message;
  failure.retryable = error.retryable();
  return failure;
}

template <typename T>
T HostCheck(host::HostResult<T> result, const std::string& context) {
  if (!result.ok()) throw CommandFailed(context + ": " + result.error().message);
  return std::move(result).value();
}

struct TerminalAddOptions {
  std::string data_dir;
  std::string merchant_id, merchant_name, grade = "hospital";
  std::string terminal_number, psam_serial, terminal_id;
};

// The merchant id is what the terminal sends in field 42 (ans 15, docs/protocol.md): exactly
// 15 printable characters, or no POS could ever be installed for it.
void CheckMerchantId(const std::string& id) {
  const bool printable =
      std::all_of(id.begin(), id.end(), [](char c) { return c > ' ' && c < 127; });
  if (id.size() != 15 || !printable) {
    throw CommandFailed(
        "--merchant must be 15 printable characters (ISO 8583 field 42), e.g. "
        "898110001000001; got \"" +
            id + "\"",
        2);
  }
}

void RunTerminalAdd(const TerminalAddOptions& options) {
  // Every argument is checked before anything is registered.
  CheckMerchantId(options.merchant_id);
  host::TerminalRegistration terminal{
      .terminal_number = HexArgument(options.terminal_number, 6, "--terminal-no"),
      .merchant_id = options.merchant_id,
      .psam_serial = HexArgument(options.psam_serial, 10, "--psam-serial")};
  terminal.terminal_id = options.terminal_id;
  HostSession session = OpenHostSession(options.data_dir);
  host::Host& host = session.host();
  const std::string number = ToHex(terminal.terminal_number);
  // Merchant and terminal in one transaction with their audit entries; registering them again
  // changes nothing and writes no entry.
  RunAudited(session, "", [&]() -> host::HostResult<std::vector<audit::Entry>> {
    // Whether they are new, from the host's tables: the Host answers a replay as a success.
    auto merchant_rows = session.connection().Query("SELECT 1 FROM host_merchants WHERE id = ?",
                                                    {options.merchant_id});
    if (!merchant_rows.ok()) return DatabaseFailure(merchant_rows.error());
    auto terminals = host.Terminals();
    if (!terminals.ok()) return Refusal(terminals.error(), "reading the terminals");
    const bool terminal_is_new =
        std::none_of(terminals->begin(), terminals->end(),
                     [&](const host::TerminalInfo& t) { return t.terminal_number == number; });
    auto merchant =
        host.RegisterMerchant({options.merchant_id, options.merchant_name, options.grade});
    if (!merchant.ok()) {
      return Refusal(merchant.error(), "registering merchant " + options.merchant_id);
    }
    auto registered = host.RegisterTerminal(terminal);
    if (!registered.ok()) return Refusal(registered.error(), "registering the terminal");
    std::vector<audit::Entry> entries;
    if (merchant_rows->empty()) {
      entries.push_back(HostCommandEntry(
          "merchant.register", "merchant:" + options.merchant_id,
          nlohmann::json{{"name", options.merchant_name}, {"grade", options.grade}}.dump()));
    }
    if (terminal_is_new) {
      // The TMK by name, version and KCV (a check value, not the key).
      auto now_registered = host.Terminals();
      if (!now_registered.ok()) return Refusal(now_registered.error(), "reading the terminals");
      const auto row =
          std::find_if(now_registered->begin(), now_registered->end(),
                       [&](const host::TerminalInfo& t) { return t.terminal_number == number; });
      nlohmann::json details = {{"merchant", options.merchant_id},
                                {"psam_serial", ToHex(terminal.psam_serial)},
                                {"tmk", "tmk/" + number}};
      if (row != now_registered->end()) details["terminal_id"] = row->terminal_id;
      auto tmk = LatestKeyVersion(session.key_store(), "tmk/" + number);
      if (tmk.ok() && tmk->first != 0) {
        details["tmk_version"] = tmk->first;
        details["tmk_kcv"] = tmk->second;
      }
      entries.push_back(
          HostCommandEntry("terminal.register", "terminal:" + number, details.dump()));
    }
    return entries;
  });
  auto tmk = session.key_store().Find("tmk/" + ToHex(terminal.terminal_number));
  std::string kcv = "?";
  if (tmk.ok()) {
    auto value = session.key_store().Kcv(*tmk);
    if (value.ok()) kcv = ToHex(*value);
  }
  std::printf("terminal %s registered for merchant %s (%s), PSAM %s\n",
              ToHex(terminal.terminal_number).c_str(), options.merchant_id.c_str(),
              options.merchant_name.c_str(), ToHex(terminal.psam_serial).c_str());
  std::printf("  terminal master key tmk/%s in %s, KCV %s\n",
              ToHex(terminal.terminal_number).c_str(), session.key_store().Describe().c_str(),
              kcv.c_str());
}

struct TerminalStatusOptions {
  std::string data_dir;
  std::string terminal_number;
};

// status: host::kTerminalActive (unblock) or host::kTerminalBlocked (block).
void RunTerminalSetStatus(const TerminalStatusOptions& options, const char* status) {
  const Bytes number = HexArgument(options.terminal_number, 6, "the terminal number");
  HostSession session = OpenHostSession(options.data_dir);
  const bool blocking = std::string_view(status) == host::kTerminalBlocked;
  RunAudited(session, "setting terminal " + options.terminal_number + " " + status,
             [&]() -> host::HostResult<std::vector<audit::Entry>> {
               auto set = session.host().SetTerminalStatus(number, status);
               if (!set.ok()) return set.error();
               return std::vector<audit::Entry>{HostCommandEntry(
                   blocking ? "terminal.block" : "terminal.unblock", "terminal:" + ToHex(number),
                   nlohmann::json{{"status", status}}.dump())};
             });
  std::printf("terminal %s %s\n", ToHex(number).c_str(), status);
}

void RunTerminalList(const DataDirOption& options) {
  HostSession session = OpenHostSession(options.data_dir);
  const auto terminals = HostCheck(session.host().Terminals(), "reading the terminals");
  std::printf("%zu terminal(s)\n", terminals.size());
  if (terminals.empty()) return;
  std::printf("  %-12s  %-8s  %-15s  %-20s  %-7s  %s\n", "terminal no", "id", "merchant",
              "PSAM serial", "status", "merchant name");
  for (const host::TerminalInfo& t : terminals) {
    std::printf("  %-12s  %-8s  %-15s  %-20s  %-7s  %s\n", t.terminal_number.c_str(),
                t.terminal_id.c_str(), t.merchant_id.c_str(), t.psam_serial.c_str(),
                t.status.c_str(), t.merchant_name.c_str());
  }
}

struct CardsImportOptions {
  std::string data_dir;
  std::string log_path;
  bool accept_test_cards = false;
};

void RunCardsImport(const CardsImportOptions& options) {
  std::ifstream in(options.log_path);
  if (!in) throw CommandFailed("cannot read " + options.log_path);
  std::stringstream text;
  text << in.rdbuf();
  HostSession session = OpenHostSession(options.data_dir);
  const bool accept_test = options.accept_test_cards || session.key_store().test_only();
  host::Host::ImportSummary summary;
  RunAudited(session, "importing " + options.log_path,
             [&]() -> host::HostResult<std::vector<audit::Entry>> {
               auto imported = session.host().ImportIssuanceLog(text.str(), accept_test);
               if (!imported.ok()) return imported.error();
               summary = *imported;
               const std::string path = fs::absolute(options.log_path).lexically_normal().string();
               return std::vector<audit::Entry>{
                   HostCommandEntry("card.import", "file:" + path,
                                    nlohmann::json{{"cards", summary.cards},
                                                   {"skipped", summary.skipped},
                                                   {"accept_test_cards", accept_test}}
                                        .dump())};
             });
  std::printf("%d card(s) registered, %d other record(s) skipped\n", summary.cards,
              summary.skipped);
}

struct BlacklistOptions {
  std::string data_dir;
  std::string asn;
  std::string effective_at;
};

std::string NowTimestamp() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char text[16];
  std::strftime(text, sizeof text, "%Y%m%d%H%M%S", &utc);
  return text;
}

// The version terminals see (docs/host.md "Blacklist"): version v holds every host_blacklist
// entry numbered below v, so entry e is in version e + 1 and the empty list is version 1.
std::int64_t WireBlacklistVersion(std::int64_t entry) { return entry + 1; }

void RunBlacklistAdd(const BlacklistOptions& options) {
  const Bytes asn = HexArgument(options.asn, 10, "the ASN");
  const std::string at = options.effective_at.empty() ? NowTimestamp() : options.effective_at;
  if (at.size() != 14 || at.find_first_not_of("0123456789") != std::string::npos) {
    throw CommandFailed("--at takes YYYYMMDDhhmmss", 2);
  }
  HostSession session = OpenHostSession(options.data_dir);
  std::int64_t version = 0;
  RunAudited(session, "adding " + options.asn,
             [&]() -> host::HostResult<std::vector<audit::Entry>> {
               auto added = session.host().AddToBlacklist(asn, at);
               if (!added.ok()) return added.error();
               version = WireBlacklistVersion(*added);
               return std::vector<audit::Entry>{HostCommandEntry(
                   "blacklist.add", "card:" + ToHex(asn),
                   nlohmann::json{{"effective_at", at}, {"blacklist_version", version}}.dump())};
             });
  std::printf("card %s blacklisted from %s (blacklist version %lld)\n", ToHex(asn).c_str(),
              at.c_str(), static_cast<long long>(version));
}

void RunBlacklistRemove(const BlacklistOptions& options) {
  const Bytes asn = HexArgument(options.asn, 10, "the ASN");
  HostSession session = OpenHostSession(options.data_dir);
  std::int64_t version = 0;
  RunAudited(session, "removing " + options.asn,
             [&]() -> host::HostResult<std::vector<audit::Entry>> {
               auto removed = session.host().RemoveFromBlacklist(asn);
               if (!removed.ok()) return removed.error();
               version = WireBlacklistVersion(*removed);
               return std::vector<audit::Entry>{
                   HostCommandEntry("blacklist.remove", "card:" + ToHex(asn),
                                    nlohmann::json{{"blacklist_version", version}}.dump())};
             });
  std::printf("card %s removed from the blacklist (blacklist version %lld)\n", ToHex(asn).c_str(),
              static_cast<long long>(version));
}

void RunBlacklistList(const DataDirOption& options) {
  HostSession session = OpenHostSession(options.data_dir);
  const auto changes = HostCheck(session.host().BlacklistSince(0), "reading the blacklist");
  // The changes in version order; the list is what the last change of each card says.
  std::map<std::string, host::BlacklistEntry> current;
  std::int64_t version = WireBlacklistVersion(0);
  for (const host::BlacklistEntry& change : changes) {
    version = std::max(version, WireBlacklistVersion(change.version));
    if (change.added) {
      current[change.asn] = change;
    } else {
      current.erase(change.asn);
    }
  }
  std::printf("blacklist version %lld: %zu card(s)\n", static_cast<long long>(version),
              current.size());
  for (const auto& [asn, entry] : current) {
    std::printf("  %s  from %s  (since version %lld)\n", asn.c_str(), entry.effective_at.c_str(),
                static_cast<long long>(WireBlacklistVersion(entry.version)));
  }
}

struct ReportOptions {
  std::string data_dir;
  std::string date;
  std::string csv_path;
};

std::vector<std::string> SplitCsvLine(const std::string& line) {
  std::vector<std::string> fields;
  std::stringstream in(line);
  std::string field;
  while (std::getline(in, field, ',')) fields.push_back(field);
  return fields;
}

// A fen column of the report's CSV, in yuan.
std::string YuanOfFenText(const std::string& fen_text) { return FormatFen(std::stoll(fen_text)); }

void RunSettlementReport(const ReportOptions& options) {
  if (!options.date.empty() &&
      (options.date.size() != 8 ||
       options.date.find_first_not_of("0123456789") != std::string::npos)) {
    throw CommandFailed("--date takes YYYYMMDD", 2);
  }
  HostSession session = OpenHostSession(options.data_dir);
  const std::string csv =
      HostCheck(session.host().MerchantSettlementCsv(), "making the settlement report");
  std::stringstream in(csv);
  std::string header;
  std::getline(in, header);
  std::string selected = header + "\n";
  std::printf("%-16s %-8s %10s %14s %10s %14s %10s %14s\n", "merchant", "day", "accepted", "yuan",
              "suspense", "yuan", "paid later", "yuan");
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    const auto fields = SplitCsvLine(line);
    if (fields.size() != 8) continue;
    if (!options.date.empty() && fields[1] != options.date) continue;
    selected += line + "\n";
    ++lines;
    std::printf("%-16s %-8s %10s %14s %10s %14s %10s %14s\n", fields[0].c_str(), fields[1].c_str(),
                fields[2].c_str(), YuanOfFenText(fields[3]).c_str(), fields[4].c_str(),
                YuanOfFenText(fields[5]).c_str(), fields[6].c_str(),
                YuanOfFenText(fields[7]).c_str());
  }
  if (lines == 0)
    std::printf("(no purchases cleared%s)\n",
                options.date.empty() ? "" : (" on " + options.date).c_str());
  if (!options.csv_path.empty()) {
    std::ofstream out(options.csv_path, std::ios::trunc);
    out << selected;
    out.close();
    if (!out) throw CommandFailed("cannot write " + options.csv_path);
    std::printf("written to %s\n", options.csv_path.c_str());
  }
}

// The branch day-end report (docs/branch.md): cards applied, issued, activated, lost, captured,
// replaced and closed per branch per local day, on the console and optionally as CSV.
struct BranchReportOptions {
  std::string data_dir;
  std::string day;
  std::string to_day;
  std::string csv_path;
};

bool IsDay(const std::string& text) {
  if (text.size() != 10 || text[4] != '-' || text[7] != '-') return false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (i != 4 && i != 7 && (text[i] < '0' || text[i] > '9')) return false;
  }
  return true;
}

void RunBranchReport(const BranchReportOptions& options) {
  const std::string to_day = options.to_day.empty() ? options.day : options.to_day;
  if (!IsDay(options.day) || !IsDay(to_day)) {
    throw CommandFailed("--day and --to take YYYY-MM-DD", 2);
  }
  if (to_day < options.day) throw CommandFailed("--to is before --day", 2);
  HostSession session = OpenHostSession(options.data_dir);
  // A host whose API never ran has no branch tables yet: they are created empty.
  for (const store::MigrationSet* set : {&audit::Migrations(), &branch::Migrations()}) {
    auto migrated = store::Migrate(session.connection(), *set);
    if (!migrated.ok()) {
      throw CommandFailed("migrating " + set->component + ": " + migrated.error().message);
    }
  }
  branch::BranchServices services(session.connection(), session.key_store());
  auto report = services.DayEndReport(options.day, to_day);
  if (!report) throw CommandFailed("making the branch report: " + report.error().message);
  std::string csv = "day,branch,applied,issued,activated,lost,captured,replaced,closed\n";
  std::printf("%-10s %-16s %8s %8s %9s %6s %8s %8s %6s\n", "day", "branch", "applied", "issued",
              "activated", "lost", "captured", "replaced", "closed");
  for (const branch::DayEndLine& line : *report) {
    std::printf("%-10s %-16s %8lld %8lld %9lld %6lld %8lld %8lld %6lld\n", line.day.c_str(),
                line.branch.c_str(), static_cast<long long>(line.applied),
                static_cast<long long>(line.issued), static_cast<long long>(line.activated),
                static_cast<long long>(line.lost), static_cast<long long>(line.captured),
                static_cast<long long>(line.replaced), static_cast<long long>(line.closed));
    csv += line.day + "," + line.branch + "," + std::to_string(line.applied) + "," +
           std::to_string(line.issued) + "," + std::to_string(line.activated) + "," +
           std::to_string(line.lost) + "," + std::to_string(line.captured) + "," +
           std::to_string(line.replaced) + "," + std::to_string(line.closed) + "\n";
  }
  if (report->empty()) std::printf("(no card actions)\n");
  if (!options.csv_path.empty()) {
    std::ofstream out(options.csv_path, std::ios::trunc);
    out << csv;
    out.close();
    if (!out) throw CommandFailed("cannot write " + options.csv_path);
    std::printf("written to %s\n", options.csv_path.c_str());
  }
}

// --- load reconciliation -----------------------------------------------------------------------

struct ReconcileOptions {
  std::string data_dir;
  int older_than_minutes = 10;
};

void RunLoadsReconcile(const ReconcileOptions& options) {
  if (options.older_than_minutes < 0) throw CommandFailed("--older-than-minutes is >= 0", 2);
  HostSession session = OpenHostSession(options.data_dir);
  const std::int64_t before_us =
      std::chrono::duration_cast<std::chrono::microseconds>(
          (std::chrono::system_clock::now() - std::chrono::minutes(options.older_than_minutes))
              .time_since_epoch())
          .count();
  std::vector<host::LoadReconciliation> decided;
  RunAudited(
      session, "reconciling pending loads", [&]() -> host::HostResult<std::vector<audit::Entry>> {
        auto reconciled = session.host().ReconcileLoads(before_us);
        if (!reconciled.ok()) return reconciled.error();
        decided = std::move(*reconciled);
        std::map<std::string, int> by_state;
        for (const host::LoadReconciliation& load : decided) ++by_state[load.state];
        return std::vector<audit::Entry>{
            HostCommandEntry("load.reconcile", "loads",
                             nlohmann::json{{"older_than_minutes", options.older_than_minutes},
                                            {"looked_at", decided.size()},
                                            {"completed", by_state["completed"]},
                                            {"reversed", by_state["reversed"]},
                                            {"still_pending", by_state["pending"]}}
                                 .dump())};
      });
  int still_pending = 0;
  for (const host::LoadReconciliation& load : decided) {
    if (load.state == "pending") ++still_pending;
    std::printf("  load %s/%06u: %s\n", load.terminal_number.c_str(), load.trace,
                load.state == "pending" ? "still pending (no evidence from the card yet)"
                                        : load.state.c_str());
  }
  std::printf("%zu pending load(s) looked at, %zu decided, %d still pending\n", decided.size(),
              decided.size() - static_cast<std::size_t>(still_pending), still_pending);
}

// --- suspense review -------------------------------------------------------------------------

struct SuspenseOptions {
  std::string data_dir;
  std::int64_t item = 0;
  std::string decision;
  std::string reviewer;
  std::string note;
};

void RunSuspenseList(const DataDirOption& options) {
  HostSession session = OpenHostSession(options.data_dir);
  const auto items = HostCheck(session.host().ReviewQueue(), "reading the review queue");
  std::printf("%zu open review item(s)\n", items.size());
  for (const host::SuspenseItem& item : items) {
    std::printf("  #%lld  card %s  serial %lld  type %02d  %s yuan  %s%s\n",
                static_cast<long long>(item.id), item.asn.c_str(),
                static_cast<long long>(item.offline_serial), item.type,
                FormatFen(item.amount).c_str(), item.reason.c_str(),
                item.money_held ? "  (money held in suspense)" : "");
  }
}

// Open serial gaps (Clearing rules 4): a card's offline purchase that no terminal has uploaded
// yet, listed until its upload closes the gap.
void RunGapsList(const DataDirOption& options) {
  HostSession session = OpenHostSession(options.data_dir);
  const auto gaps = HostCheck(session.host().OpenGaps(), "reading the serial gaps");
  std::printf("%zu open serial gap(s): purchases the cards made that no terminal has uploaded\n",
              gaps.size());
  for (const host::SerialGap& gap : gaps) {
    const std::time_t opened = static_cast<std::time_t>(gap.opened_at_us / 1'000'000);
    std::tm utc{};
    ::gmtime_r(&opened, &utc);
    char since[32];
    std::strftime(since, sizeof since, "%Y-%m-%d %H:%M:%S UTC", &utc);
    std::printf("  card %s  %s  offline serial %lld  missing since %s\n", gap.asn.c_str(),
                gap.wallet.c_str(), static_cast<long long>(gap.offline_serial), since);
  }
}

void RunSuspenseResolve(const SuspenseOptions& options) {
  const auto decision = host::ParseSuspenseDecision(options.decision);
  if (!decision) {
    throw CommandFailed("--decision is pay-merchant, refund-cardholder or reject", 2);
  }
  HostSession session = OpenHostSession(options.data_dir);
  RunAudited(session, "resolving review item " + std::to_string(options.item),
             [&]() -> host::HostResult<std::vector<audit::Entry>> {
               auto resolved = session.host().ResolveSuspense(
                   {options.item, *decision, options.reviewer, options.note});
               if (!resolved.ok()) return resolved.error();
               return std::vector<audit::Entry>{
                   HostCommandEntry("suspense.resolve", "suspense:" + std::to_string(options.item),
                                    nlohmann::json{{"decision", options.decision},
                                                   {"reviewer", options.reviewer},
                                                   {"note", options.note}}
                                        .dump())};
             });
  std::printf("review item #%lld resolved: %s (by %s)\n", static_cast<long long>(options.item),
              options.decision.c_str(), options.reviewer.c_str());
}

// --- host check
// -----------------------------------------------------------------------------------

struct HostCheckOptions {
  std::string data_dir;
  std::string db_url;
};

void RunHostCheck(const HostCheckOptions& options) {
  if (options.data_dir.empty() == options.db_url.empty()) {
    throw CommandFailed("say where the host's database is: --data DIR or --db URL", 2);
  }
  std::string url = options.db_url;
  if (url.empty()) {
    url = store::SqliteUrlForDataDir(options.data_dir);
    if (fs::exists(HostConfigPath(options.data_dir))) {
      url = Check(LoadHostConfig(HostConfigPath(options.data_dir), options.data_dir),
                  "reading the configuration")
                .database;
    }
  }
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
  std::vector<std::string> problems;
  for (const ledger::Problem& problem : report.problems) problems.push_back(problem.description);
  // The host's own invariants when the host's schema is there (a bare ledger has none).
  const int host_version =
      Check(Result<int>(store::SchemaVersion(*connection, "host")), "reading the schema version");
  if (host_version > 0) {
    problems = HostCheck(host::CheckHostDatabase(*connection), "checking the host");
  }
  for (const std::string& problem : problems) std::printf("%s\n", problem.c_str());
  std::printf("ledger %s: %lld accounts, %lld postings, %zu problems\n",
              problems.empty() ? "consistent" : "INCONSISTENT",
              static_cast<long long>(report.accounts), static_cast<long long>(report.postings),
              problems.size());
  if (!problems.empty()) {
    std::fflush(stdout);
    throw CommandFailed("the check found " + std::to_string(problems.size()) + " problem(s)");
  }
}

CLI::Option* AddDataOption(CLI::App* command, std::string& data_dir) {
  return command
      ->add_option("--data", data_dir, "The host's data directory (made by medcard host init)")
      ->required();
}

}  // namespace

void AddHostCommands(CLI::App& app) {
  CLI::App* host = app.add_subcommand("host", "The bank host");
  host->require_subcommand(1);
  AddHostAccessCommands(*host);
  AddHostAllocationCommands(*host);

  {
    auto options = std::make_shared<HostInitOptions>();
    CLI::App* init = host->add_subcommand(
        "init",
        "Create (or update) the host's data directory: database with its schema, key store, "
        "DIR/host.json");
    init->add_option("--data", options->data_dir, "The data directory")->required();
    init->add_option("--db", options->db_url,
                     "A PostgreSQL URL (postgresql://...); default: SQLite in DIR/medcard.db");
    init->add_option("--store", options->key_store.store,
                     "Key store: a directory or pkcs11:<token label>; default DIR/keys");
    init->add_option("--pkcs11-module", options->key_store.pkcs11_module,
                     "PKCS#11 module for a pkcs11: store");
    init->add_flag("--test-keys", options->test_keys,
                   "A TEST key store with the published test key set (test cards only)");
    init->add_option("--listen", options->listen, "ADDRESS:PORT (default 127.0.0.1:8583)");
    init->callback([options] { RunHostInit(*options); });
  }
  AddHostRunCommand(*host);
  AddWorkstationCommands(*host);  // host workstations export-pek (teller_pek.cc)
  {
    CLI::App* terminals = host->add_subcommand("terminals", "POS terminals");
    terminals->require_subcommand(1);
    auto options = std::make_shared<TerminalAddOptions>();
    CLI::App* add = terminals->add_subcommand(
        "add", "Register a merchant (if new) and its terminal; the TMK is made in the key store");
    AddDataOption(add, options->data_dir);
    add->add_option("--merchant", options->merchant_id, "Merchant id (field 42)")->required();
    add->add_option("--merchant-name", options->merchant_name, "Name on receipts")->required();
    add->add_option("--grade", options->grade,
                    "Facility grade or type, e.g. hospital-3A, pharmacy");
    add->add_option("--terminal-no", options->terminal_number,
                    "The PSAM's terminal number, 12 hex digits")
        ->required();
    add->add_option("--psam-serial", options->psam_serial, "The PSAM's serial, 20 hex digits")
        ->required();
    add->add_option("--terminal-id", options->terminal_id,
                    "Terminal id (field 41, 8 characters); default: the last 8 digits of the "
                    "terminal number");
    add->callback([options] { RunTerminalAdd(*options); });
    AddExportTmkCommand(*terminals);
    auto list_options = std::make_shared<DataDirOption>();
    CLI::App* list = terminals->add_subcommand("list", "Every registered terminal and its status");
    AddDataOption(list, list_options->data_dir);
    list->callback([list_options] { RunTerminalList(*list_options); });
    auto block_options = std::make_shared<TerminalStatusOptions>();
    CLI::App* block = terminals->add_subcommand(
        "block", "Block a terminal (stolen, decommissioned): the gateway refuses it with 97");
    block
        ->add_option("terminal_no", block_options->terminal_number,
                     "The terminal number, 12 hex digits")
        ->required();
    AddDataOption(block, block_options->data_dir);
    block->callback(
        [block_options] { RunTerminalSetStatus(*block_options, host::kTerminalBlocked); });
    auto unblock_options = std::make_shared<TerminalStatusOptions>();
    CLI::App* unblock =
        terminals->add_subcommand("unblock", "Let a blocked terminal transact again");
    unblock
        ->add_option("terminal_no", unblock_options->terminal_number,
                     "The terminal number, 12 hex digits")
        ->required();
    AddDataOption(unblock, unblock_options->data_dir);
    unblock->callback(
        [unblock_options] { RunTerminalSetStatus(*unblock_options, host::kTerminalActive); });
  }
  {
    CLI::App* cards = host->add_subcommand("cards", "Cards");
    cards->require_subcommand(1);
    auto options = std::make_shared<CardsImportOptions>();
    CLI::App* import_log = cards->add_subcommand(
        "import", "Register every issued card of an issuance log (again: changes nothing)");
    import_log->add_option("log", options->log_path, "The issuance log (JSON lines)")->required();
    AddDataOption(import_log, options->data_dir);
    import_log->add_flag("--accept-test-cards", options->accept_test_cards,
                         "Also register TEST cards (always on with a test key store)");
    import_log->callback([options] { RunCardsImport(*options); });
  }
  {
    CLI::App* blacklist = host->add_subcommand("blacklist", "Lost and blocked cards");
    blacklist->require_subcommand(1);
    auto add_options = std::make_shared<BlacklistOptions>();
    CLI::App* add = blacklist->add_subcommand(
        "add", "Blacklist a card: purchases from --at on are refused at clearing");
    add->add_option("asn", add_options->asn, "The card's ASN, 20 hex digits")->required();
    AddDataOption(add, add_options->data_dir);
    add->add_option("--at", add_options->effective_at, "YYYYMMDDhhmmss (UTC); default: now");
    add->callback([add_options] { RunBlacklistAdd(*add_options); });
    auto remove_options = std::make_shared<BlacklistOptions>();
    CLI::App* remove = blacklist->add_subcommand("remove", "Take a card off the blacklist");
    remove->add_option("asn", remove_options->asn, "The card's ASN, 20 hex digits")->required();
    AddDataOption(remove, remove_options->data_dir);
    remove->callback([remove_options] { RunBlacklistRemove(*remove_options); });
    auto list_options = std::make_shared<DataDirOption>();
    CLI::App* list = blacklist->add_subcommand("list", "The current blacklist");
    AddDataOption(list, list_options->data_dir);
    list->callback([list_options] { RunBlacklistList(*list_options); });
  }
  {
    CLI::App* report = host->add_subcommand("report", "Reports");
    report->require_subcommand(1);
    auto options = std::make_shared<ReportOptions>();
    CLI::App* settlement = report->add_subcommand(
        "settlement", "Per merchant and day: accepted and suspense purchases (count, amount)");
    AddDataOption(settlement, options->data_dir);
    settlement->add_option("--date", options->date, "YYYYMMDD; default: every day");
    settlement->add_option("--csv", options->csv_path, "Also write the report as CSV");
    settlement->callback([options] { RunSettlementReport(*options); });
    auto branch_options = std::make_shared<BranchReportOptions>();
    CLI::App* branch_report = report->add_subcommand(
        "branch",
        "Per branch and local day: cards applied, issued, activated, lost, captured, "
        "replaced, closed");
    AddDataOption(branch_report, branch_options->data_dir);
    branch_report->add_option("--day", branch_options->day, "YYYY-MM-DD (local time)")->required();
    branch_report->add_option("--to", branch_options->to_day,
                              "YYYY-MM-DD: the last day of a range; default: --day");
    branch_report->add_option("--csv", branch_options->csv_path, "Also write the report as CSV");
    branch_report->callback([branch_options] { RunBranchReport(*branch_options); });
  }
  {
    CLI::App* loads = host->add_subcommand("loads", "Online loads");
    loads->require_subcommand(1);
    auto options = std::make_shared<ReconcileOptions>();
    CLI::App* reconcile = loads->add_subcommand(
        "reconcile",
        "Decide loads left pending (no confirmation, no reversal) from the cards' later loads; "
        "host run does this once a minute");
    AddDataOption(reconcile, options->data_dir);
    reconcile->add_option("--older-than-minutes", options->older_than_minutes,
                          "Only loads authorised at least this long ago (default 10)");
    reconcile->callback([options] { RunLoadsReconcile(*options); });
  }
  {
    CLI::App* suspense = host->add_subcommand(
        "suspense", "The review queue: purchases clearing could not pay to a merchant");
    suspense->require_subcommand(1);
    auto list_options = std::make_shared<DataDirOption>();
    CLI::App* list = suspense->add_subcommand("list", "Open review items");
    AddDataOption(list, list_options->data_dir);
    list->callback([list_options] { RunSuspenseList(*list_options); });
    auto options = std::make_shared<SuspenseOptions>();
    CLI::App* resolve = suspense->add_subcommand(
        "resolve", "Decide an item: money held goes to the merchant or back to the cardholder");
    resolve->add_option("item", options->item, "The item number from suspense list")->required();
    AddDataOption(resolve, options->data_dir);
    resolve
        ->add_option("--decision", options->decision, "pay-merchant | refund-cardholder | reject")
        ->required();
    resolve->add_option("--reviewer", options->reviewer, "Who decides")->required();
    resolve->add_option("--note", options->note, "Why (required to reject)");
    resolve->callback([options] { RunSuspenseResolve(*options); });
  }
  {
    auto options = std::make_shared<DataDirOption>();
    CLI::App* gaps = host->add_subcommand(
        "gaps", "Open serial gaps: card purchases no terminal has uploaded yet (until uploaded)");
    AddDataOption(gaps, options->data_dir);
    gaps->callback([options] { RunGapsList(*options); });
  }
  {
    auto options = std::make_shared<HostCheckOptions>();
    CLI::App* check = host->add_subcommand(
        "check",
        "Verify the ledger and the host: balances sum to zero and match their postings, every "
        "transfer has both legs, card floats match the cards, every accepted purchase posted "
        "once, every load's state matches its transfer. Exit 1 when not.");
    CLI::Option* data = check->add_option("--data", options->data_dir,
                                          "The host's data directory (its host.json's database)");
    CLI::Option* db = check->add_option("--db", options->db_url,
                                        "A database URL: postgresql://... or sqlite:PATH");
    data->excludes(db);
    check->callback([options] { RunHostCheck(*options); });
  }
  AddHostConsumptionCommands(*host);  // host report consumption (after the report group)
}  // namespace medcard::cli

}  // namespace medcard::cli
