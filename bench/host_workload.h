// A synthetic host population for the host benchmarks (clearing_bench.cc, host_memory_bench.cc):
// merchants with terminals, cards imported through the issuance log, each card's EP float loaded
// as a completed online load leaves it, and offline purchases with valid TACs computed from the
// test key set's TAC master key (pboc-ed-ep.md "Cryptography"), outside any timed part.
//
// Purchases go round-robin over the cards: purchase i is card i % cards' purchase number
// i / cards (its offline serial, from 0 as on a fresh card), so every batch touches many cards and
// each card's uploads arrive in serial order with balance_before = the previous balance_after (the
// balance chain).
#pragma once

#include <sys/statfs.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "common/bcd.h"
#include "common/bytes.h"
#include "crypto/crypto.h"
#include "host/host.h"
#include "issuance/test_issuer.h"
#include "keys/key_store.h"
#include "keys/pboc.h"
#include "ledger/ledger.h"
#include "store/store.h"

namespace medcard::bench {

// A setup step that fails ends the benchmark program with the reason: its figures would be
// meaningless.
inline void Require(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "benchmark setup failed: %s\n", what.c_str());
    std::exit(1);
  }
}

// A size from the environment (digits only), else `fallback`.
inline std::size_t EnvSize(const char* name, std::size_t fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  char* end = nullptr;
  const unsigned long long value = std::strtoull(text, &end, 10);
  Require(*end == '\0' && value > 0, std::string(name) + " must be a positive number");
  return static_cast<std::size_t>(value);
}

inline double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// /proc/self/status figures in KiB ("VmRSS", "VmHWM").
inline long ProcStatusKib(const char* field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  const std::string prefix = std::string(field) + ":";
  while (std::getline(status, line)) {
    if (line.rfind(prefix, 0) == 0) return std::strtol(line.c_str() + prefix.size(), nullptr, 10);
  }
  return -1;
}

// What kind of filesystem `dir` is on: a SQLite figure with synchronous=FULL means nothing on
// tmpfs, where fsync is free.
inline std::string FilesystemKind(const std::string& dir) {
  struct statfs info {};
  if (::statfs(dir.c_str(), &info) != 0) return "unknown";
  switch (static_cast<unsigned long>(info.f_type)) {
    case 0x01021994UL:
      return "tmpfs (fsync is free: not a disk figure)";
    case 0xEF53UL:
      return "ext2/3/4 (disk)";
    case 0x58465342UL:
      return "xfs (disk)";
    case 0x9123683EUL:
      return "btrfs (disk)";
    case 0x794C7630UL:
      return "overlayfs";
    default: {
      char text[48];
      std::snprintf(text, sizeof text, "filesystem type 0x%lx",
                    static_cast<unsigned long>(info.f_type));
      return text;
    }
  }
}

// A directory for the benchmark's SQLite file and key store: $MEDCARD_BENCH_DIR, else the current
// directory (the build directory when run from there), never tmpfs unless asked for.
struct BenchDir {
  std::filesystem::path path;
  explicit BenchDir(const std::string& prefix) {
    const char* base = std::getenv("MEDCARD_BENCH_DIR");
    const std::filesystem::path root = base != nullptr && *base != '\0'
                                           ? std::filesystem::path(base)
                                           : std::filesystem::current_path();
    path = root / (prefix + "-" + std::to_string(::getpid()));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~BenchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  BenchDir(const BenchDir&) = delete;
  BenchDir& operator=(const BenchDir&) = delete;
};

inline constexpr Date kPurchaseDate{2026, 11, 25};

// A purchase as generated: compact (the upload is built from it batch by batch).
struct SyntheticPurchase {
  std::uint32_t card = 0;
  std::uint32_t terminal = 0;
  std::uint32_t amount = 0;
  std::uint32_t balance_before = 0;
  std::uint32_t terminal_serial = 0;
  std::uint16_t offline_serial = 0;
  std::uint32_t second_of_day = 0;
  std::array<std::uint8_t, 4> tac{};
};

struct Population {
  std::size_t merchants = 0;
  std::vector<Bytes>
      terminals;            // 6-byte terminal numbers; terminal t belongs to merchant t % merchants
  std::vector<Bytes> asns;  // 10-byte ASNs
  std::vector<std::uint32_t> opening_balance;  // EP balance each card's load leaves, fen
  std::vector<SyntheticPurchase> purchases;
};

inline Bytes CardAsn(std::size_t card) {
  Bytes asn = {0x41, 0x00};
  AppendU64(asn, 0x3101000000000000ULL + card);
  return asn;
}
inline std::string PersonOf(std::size_t card) { return "P" + std::to_string(1000000000 + card); }
inline std::string MerchantId(std::size_t m) { return "M" + std::to_string(10000 + m); }

inline TimeOfDay TimeOf(std::uint32_t second_of_day) {
  return {static_cast<int>(second_of_day / 3600), static_cast<int>(second_of_day / 60 % 60),
          static_cast<int>(second_of_day % 60)};
}

// TAC = MAC(DTK_L ⊕ DTK_R, amount ‖ type ‖ termNo ‖ termTxnSerial ‖ date ‖ time), the data
// keys::VerifyPurchaseTac checks; computed with crypto directly from the clear test key.
inline Bytes PurchaseTacData(std::uint32_t amount, std::uint8_t type, ByteView terminal,
                             std::uint32_t terminal_serial, const Date& date,
                             const TimeOfDay& time) {
  Bytes data;
  AppendU32(data, amount);
  data.push_back(type);
  Append(data, terminal);
  AppendU32(data, terminal_serial);
  Append(data, EncodeBcdDate(date));
  Append(data, EncodeBcdTime(time));
  return data;
}

inline constexpr std::uint8_t kEpPurchase = 0x06;

// `cards` cards, `purchases` purchases over them, `terminal_count` terminals at `merchants`.
inline Population MakePopulation(std::size_t cards, std::size_t purchases,
                                 std::size_t terminal_count, std::size_t merchants) {
  Population p;
  p.merchants = merchants;
  for (std::size_t t = 0; t < terminal_count; ++t) {
    Bytes number;
    AppendU48(number, 0x990000000000ULL + t);
    p.terminals.push_back(number);
  }
  const std::size_t rounds = (purchases + cards - 1) / cards;
  p.asns.reserve(cards);
  p.opening_balance.reserve(cards);
  for (std::size_t c = 0; c < cards; ++c) {
    p.asns.push_back(CardAsn(c));
    p.opening_balance.push_back(static_cast<std::uint32_t>(1000 + rounds * 300));
  }
  if (purchases == 0) return p;

  const Bytes& tac_master = issuance::TestKeySet::Embedded().MasterKey("tac");
  std::vector<crypto::MacKey> tac_keys;
  tac_keys.reserve(std::min(cards, purchases));
  for (std::size_t c = 0; c < cards && c < purchases; ++c) {
    auto dtk = crypto::Diversify(tac_master, crypto::AsnFactor(p.asns[c]));
    Require(dtk.ok(), "diversifying a card's TAC key");
    auto tac_key = crypto::TacKey(*dtk);
    Require(tac_key.ok(), "deriving a card's TAC key");
    auto mac_key = crypto::MacKey::Create(*tac_key);
    Require(mac_key.ok(), "keying a card's TAC");
    tac_keys.push_back(std::move(mac_key).value());
  }
  std::vector<std::uint32_t> balance = p.opening_balance;
  std::vector<std::uint32_t> terminal_serial(terminal_count, 0);
  p.purchases.reserve(purchases);
  for (std::size_t i = 0; i < purchases; ++i) {
    SyntheticPurchase s;
    s.card = static_cast<std::uint32_t>(i % cards);
    s.offline_serial = static_cast<std::uint16_t>(i / cards);
    s.terminal = static_cast<std::uint32_t>((i * 7) % terminal_count);
    s.amount = static_cast<std::uint32_t>(1 + (i * 37) % 299);
    s.balance_before = balance[s.card];
    balance[s.card] -= s.amount;
    s.terminal_serial = ++terminal_serial[s.terminal];
    s.second_of_day = static_cast<std::uint32_t>(8 * 3600 + i * 86000 / purchases % 50000);
    const Bytes data = PurchaseTacData(s.amount, kEpPurchase, p.terminals[s.terminal],
                                       s.terminal_serial, kPurchaseDate, TimeOf(s.second_of_day));
    s.tac = tac_keys[s.card].Mac4(data);
    p.purchases.push_back(s);
  }
  return p;
}

inline host::PurchaseUpload Upload(const Population& p, const SyntheticPurchase& s) {
  return {.asn = p.asns[s.card],
          .type = kEpPurchase,
          .amount = s.amount,
          .balance_before = s.balance_before,
          .balance_after = s.balance_before - s.amount,
          .card_offline_serial = s.offline_serial,
          .terminal_serial = s.terminal_serial,
          .terminal_number = p.terminals[s.terminal],
          .date = kPurchaseDate,
          .time = TimeOf(s.second_of_day),
          .key_version = 1,
          .tac = Bytes(s.tac.begin(), s.tac.end())};
}

inline keys::PurchaseRecord TacRecord(const Population& p, const SyntheticPurchase& s) {
  return {.asn = p.asns[s.card],
          .type = kEpPurchase,
          .amount = s.amount,
          .terminal_number = p.terminals[s.terminal],
          .terminal_serial = s.terminal_serial,
          .date = kPurchaseDate,
          .time = TimeOf(s.second_of_day),
          .key_version = 1,
          .tac = Bytes(s.tac.begin(), s.tac.end())};
}

// A test-only software key store holding the embedded test key set (as the host's tests do).
inline std::unique_ptr<keys::KeyStore> TestKeyStore(const std::filesystem::path& dir) {
  ::setenv("MEDCARD_KEYSTORE_TEST_KDF", "fast", 1);
  auto store = keys::CreateSoftwareKeyStore(dir.string(), "host benchmark", true);
  Require(store.ok(), store.ok() ? "" : store.error().message);
  for (const auto& role : issuance::TestKeySet::RequiredRoles()) {
    auto imported = (*store)->ImportTestKey(role, issuance::TestKeySet::Embedded().MasterKey(role));
    Require(imported.ok(), "importing test key " + role);
  }
  return std::move(store).value();
}

// A migrated database with a host on it.
struct HostDatabase {
  std::unique_ptr<store::Database> database;
  std::unique_ptr<store::Connection> connection;
  std::unique_ptr<host::Host> host;

  HostDatabase(const std::string& url, keys::KeyStore& key_store) {
    auto db = store::Database::Open(url);
    Require(db.ok(), db.ok() ? "" : "opening " + url + ": " + db.error().message);
    database = std::move(db).value();
    auto conn = database->Connect();
    Require(conn.ok(), conn.ok() ? "" : conn.error().message);
    connection = std::move(conn).value();
    Require(store::Migrate(*connection, ledger::Migrations()).ok(), "ledger migrations");
    Require(store::Migrate(*connection, host::Migrations()).ok(), "host migrations");
    host = std::make_unique<host::Host>(*connection, key_store);
  }
};

inline void RegisterMerchantsAndTerminals(host::Host& host, const Population& p) {
  for (std::size_t m = 0; m < p.merchants; ++m) {
    auto done = host.RegisterMerchant({MerchantId(m), "Facility " + std::to_string(m), "pharmacy"});
    Require(done.ok(), done.ok() ? "" : done.error().message);
  }
  for (std::size_t t = 0; t < p.terminals.size(); ++t) {
    Bytes psam_serial = {0x10, 0x00};
    AppendU64(psam_serial, t);
    auto done = host.RegisterTerminal({.terminal_number = p.terminals[t],
                                       .merchant_id = MerchantId(t % p.merchants),
                                       .psam_serial = psam_serial});
    Require(done.ok(), done.ok() ? "" : done.error().message);
  }
}

// Registers cards [first, last) through the issuance log import, `chunk` cards per transaction.
inline void ImportCards(host::Host& host, std::size_t first, std::size_t last,
                        std::size_t chunk = 20000) {
  for (std::size_t start = first; start < last; start += chunk) {
    std::string log;
    const std::size_t end = std::min(last, start + chunk);
    for (std::size_t c = start; c < end; ++c) {
      log += R"({"event":"issued","kind":"card","test":true,"asn":")" + ToHex(CardAsn(c)) +
             R"(","holder":")" + PersonOf(c) + R"(","time":"2026-11-01T08:00:00Z"})" + "\n";
    }
    auto imported = host.ImportIssuanceLog(log, /*accept_test_cards=*/true);
    Require(imported.ok(), imported.ok() ? "" : imported.error().message);
    Require(imported->cards == static_cast<int>(end - start), "every card imported");
  }
}

// Each card [first, last) gets its opening EP balance as an allocation to its holder's medical
// account and a completed online load leave them: medical → card float, the card state at the new
// balance and online serial 1. `chunk` cards per transaction.
inline void LoadCards(store::Connection& connection, const Population& p, std::size_t first,
                      std::size_t last, std::size_t chunk = 20000) {
  ledger::Ledger ledger(connection);
  for (std::size_t start = first; start < last; start += chunk) {
    auto tx = store::Transaction::Begin(connection);
    Require(tx.ok(), "beginning a load transaction");
    for (std::size_t c = start; c < std::min(last, start + chunk); ++c) {
      const std::string asn = ToHex(p.asns[c]);
      const std::string person = PersonOf(c);
      const std::int64_t amount = p.opening_balance[c];
      auto allocated = ledger.Post({.id = "allocation/bench/" + person,
                                    .debit = ledger::AccountId::SiaFund(),
                                    .credit = ledger::AccountId::Medical(person),
                                    .amount = amount,
                                    .cause = {ledger::cause::kAllocation, "bench/" + person}});
      Require(allocated.ok(), allocated.ok() ? "" : allocated.error().message);
      const std::string load_id = "load/bench/" + asn;
      auto loaded = ledger.Post(
          {.id = load_id,
           .debit = ledger::AccountId::Medical(person),
           .credit = ledger::AccountId::CardFloat(asn, ledger::Wallet::kEp),
           .amount = amount,
           .cause = {ledger::cause::kLoad, load_id},
           .card_state = ledger::CardState{
               .asn = asn, .wallet = ledger::Wallet::kEp, .balance = amount, .online_serial = 1}});
      Require(loaded.ok(), loaded.ok() ? "" : loaded.error().message);
    }
    Require(tx->Commit().ok(), "committing loads");
  }
}

}  // namespace medcard::bench
