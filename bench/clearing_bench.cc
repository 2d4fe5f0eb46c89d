// Clearing throughput: Host::ClearPurchases over offline purchases with valid TACs, on SQLite in a
// file on disk (WAL, synchronous=FULL) and on PostgreSQL, beside the rate of the TAC verification
// alone through the same key store (the crypto limit: diversify + TAC key + MAC per purchase),
// measured in the same run, and beside SQLite's own floor for the rows clearing writes (the same
// schema and cards, raw single-row statements: "The database floor" below). Figures only; nothing
// here asserts on time.
//
// The population (bench/host_workload.h) is made and registered outside the timed part: cards
// imported through the issuance log, each card's EP loaded, purchases round-robin over the cards
// in batches of MEDCARD_BENCH_BATCH (default 1,000) per ClearPurchases call, each batch one
// database transaction. Only the ClearPurchases calls are timed.
//
// Sizes (environment): MEDCARD_BENCH_CARDS (default 5,000), MEDCARD_BENCH_PURCHASES (default
// 50,000), MEDCARD_BENCH_BATCH (1,000). The issue's full size:
//   MEDCARD_BENCH_CARDS=100000 MEDCARD_BENCH_PURCHASES=1000000 build/bench/bench/clearing_bench
// MEDCARD_BENCH_DIR: where the SQLite file goes (default: the current directory; the program says
// whether that is tmpfs). PostgreSQL: MEDCARD_BENCH_PG_URL names an EMPTY database to use; else a
// throwaway server is started (tests/support/postgres_fixture.h; it runs with fsync=off, which
// the program prints); when neither works the PostgreSQL row says why and is skipped.
// MEDCARD_BENCH_CHECK=1 runs Host::CheckHost after clearing (default: at ≤ 100,000 purchases).
// MEDCARD_BENCH_ENGINES=sqlite or postgresql runs one engine only.
#include <benchmark/benchmark.h>
#include <sqlite3.h>
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "host_workload.h"
#include "keys/pboc.h"
#ifdef MEDCARD_BENCH_PG_FIXTURE
#include "postgres_fixture.h"
#endif
#include "rate_reporter.h"

namespace medcard::bench {
namespace {

struct Config {
  std::size_t cards = EnvSize("MEDCARD_BENCH_CARDS", 5'000);
  std::size_t purchases = EnvSize("MEDCARD_BENCH_PURCHASES", 50'000);
  std::size_t batch = EnvSize("MEDCARD_BENCH_BATCH", 1'000);
  std::size_t terminals = 200;
  std::size_t merchants = 20;
  bool check = std::getenv("MEDCARD_BENCH_CHECK") != nullptr
                   ? std::string(std::getenv("MEDCARD_BENCH_CHECK")) == "1"
                   : purchases <= 100'000;
};

const Config& Settings() {
  static const Config config;
  return config;
}

const Population& Workload() {
  static const Population population = [] {
    const Config& c = Settings();
    const auto start = std::chrono::steady_clock::now();
    Population p = MakePopulation(c.cards, c.purchases, c.terminals, c.merchants);
    std::printf("population: %zu cards, %zu purchases (TACs computed) in %.1f s\n", c.cards,
                c.purchases, Seconds(std::chrono::steady_clock::now() - start));
    std::fflush(stdout);
    return p;
  }();
  return population;
}

double ThreadCpuSeconds() {
  timespec now{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) * 1e-9;
}

bool EngineWanted(const char* name) {
  const char* only = std::getenv("MEDCARD_BENCH_ENGINES");
  return only == nullptr || *only == '\0' || std::string(only).find(name) != std::string::npos;
}

// ---- The crypto limit -------------------------------------------------------------------------

// What clearing does per purchase for its TAC, through the key store the host uses.
void BM_TacVerifyKeyStore(benchmark::State& state) {
  const Population& p = Workload();
  BenchDir dir("medcard-bench-tac");
  auto key_store = TestKeyStore(dir.path / "keys");
  std::vector<keys::PurchaseRecord> records;
  const std::size_t count = std::min<std::size_t>(p.purchases.size(), 10'000);
  for (std::size_t i = 0; i < count; ++i) records.push_back(TacRecord(p, p.purchases[i]));
  std::size_t i = 0;
  for (auto _ : state) {
    Status verified = keys::VerifyPurchaseTac(*key_store, records[i]);
    if (!verified.ok()) {
      state.SkipWithError(verified.error().message.c_str());
      break;
    }
    i = i + 1 == records.size() ? 0 : i + 1;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_TacVerifyKeyStore);

// The same three steps with crypto.h and the clear key: no key store in between.
void BM_TacVerifyRawCrypto(benchmark::State& state) {
  const Population& p = Workload();
  const Bytes& master = issuance::TestKeySet::Embedded().MasterKey("tac");
  std::size_t i = 0;
  const std::size_t count = std::min<std::size_t>(p.purchases.size(), 10'000);
  for (auto _ : state) {
    const SyntheticPurchase& s = p.purchases[i];
    auto dtk = crypto::Diversify(master, crypto::AsnFactor(p.asns[s.card]));
    auto tac_key = crypto::TacKey(*dtk);
    auto tac = crypto::PbocMac(
        *tac_key, PurchaseTacData(s.amount, kEpPurchase, p.terminals[s.terminal], s.terminal_serial,
                                  kPurchaseDate, TimeOf(s.second_of_day)));
    if (!ConstantTimeEqual(*tac, s.tac)) {
      state.SkipWithError("a generated TAC does not verify");
      break;
    }
    i = i + 1 == count ? 0 : i + 1;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_TacVerifyRawCrypto);

// ---- Clearing ---------------------------------------------------------------------------------

void RunClearing(benchmark::State& state, const std::string& url, const std::string& where) {
  const Config& c = Settings();
  const Population& p = Workload();
  BenchDir dir("medcard-bench-clearing-keys");
  auto key_store = TestKeyStore(dir.path / "keys");
  HostDatabase db(url, *key_store);

  auto start = std::chrono::steady_clock::now();
  RegisterMerchantsAndTerminals(*db.host, p);
  ImportCards(*db.host, 0, c.cards);
  const double import_s = Seconds(std::chrono::steady_clock::now() - start);
  start = std::chrono::steady_clock::now();
  LoadCards(*db.connection, p, 0, c.cards);
  std::printf("%s: %zu cards imported in %.1f s, loaded in %.1f s (untimed)\n", where.c_str(),
              c.cards, import_s, Seconds(std::chrono::steady_clock::now() - start));
  std::fflush(stdout);

  std::size_t accepted = 0, other = 0;
  std::string first_other;
  std::chrono::steady_clock::duration clearing{};
  double clearing_cpu_s = 0;  // this thread's CPU time in ClearPurchases (the machine is shared)
  const std::int64_t statements_before = db.connection->statements_run();
  std::vector<host::PurchaseUpload> batch;
  for (auto _ : state) {
    for (std::size_t first = 0; first < p.purchases.size(); first += c.batch) {
      batch.clear();
      for (std::size_t i = first; i < std::min(p.purchases.size(), first + c.batch); ++i) {
        batch.push_back(Upload(p, p.purchases[i]));
      }
      const auto t0 = std::chrono::steady_clock::now();
      const double cpu0 = ThreadCpuSeconds();
      auto results = db.host->ClearPurchases(batch);
      clearing_cpu_s += ThreadCpuSeconds() - cpu0;
      clearing += std::chrono::steady_clock::now() - t0;
      if (!results.ok()) {
        state.SkipWithError(("ClearPurchases: " + results.error().message).c_str());
        return;
      }
      for (const host::ClearingResult& r : *results) {
        if (r.outcome == host::ClearingOutcome::kAccepted) {
          ++accepted;
        } else if (other++ == 0) {
          first_other = std::string(host::ClearingOutcomeName(r.outcome)) + " " + r.reason;
        }
      }
    }
    state.SetIterationTime(Seconds(clearing));
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(accepted + other));
  state.counters["accepted"] = static_cast<double>(accepted);
  state.counters["batch"] = static_cast<double>(c.batch);
  const double cleared = static_cast<double>(accepted + other);
  // Purchases per second of the clearing thread's own CPU time: what the host does per purchase,
  // apart from waiting for fsync and for the other processes on the machine.
  state.counters["per_cpu_s"] = clearing_cpu_s > 0 ? cleared / clearing_cpu_s : 0;
  state.counters["stmts_per_purchase"] =
      static_cast<double>(db.connection->statements_run() - statements_before) / cleared;
  if (other > 0) {
    std::printf("%s: %zu purchases NOT accepted (first: %s): the workload is wrong\n",
                where.c_str(), other, first_other.c_str());
  }
  if (c.check) {
    start = std::chrono::steady_clock::now();
    auto problems = db.host->CheckHost();
    Require(problems.ok(), problems.ok() ? "" : problems.error().message);
    std::printf("%s: CheckHost after clearing: %zu problems%s%s (%.1f s)\n", where.c_str(),
                problems->size(), problems->empty() ? "" : ", first: ",
                problems->empty() ? "" : problems->front().c_str(),
                Seconds(std::chrono::steady_clock::now() - start));
  }
  std::fflush(stdout);
}

void BM_ClearPurchasesSqlite(benchmark::State& state) {
  if (!EngineWanted("sqlite")) {
    state.SkipWithError("not asked for (MEDCARD_BENCH_ENGINES)");
    for (auto _ : state) {
    }
    return;
  }
  BenchDir dir("medcard-bench-clearing");
  std::printf("SQLite file in %s: %s\n", dir.path.c_str(), FilesystemKind(dir.path).c_str());
  RunClearing(state, "sqlite:" + (dir.path / "host.db").string(), "SQLite");
}
BENCHMARK(BM_ClearPurchasesSqlite)->Iterations(1)->UseManualTime()->Unit(benchmark::kSecond);

// ---- The database floor -----------------------------------------------------------------------
//
// What SQLite alone needs to read and write the rows clearing touches per purchase, in the host's
// real schema (the same migrations, pragmas and registered cards), with one prepared single-row
// statement per row and no decisions, no TAC, no layers: the limit of the schema on this machine,
// beside which the clearing figure is read. Two row sets, both with the batches of the clearing
// run:
//  - this_schema: what ClearPurchases writes today: the duplicate probe, the card's wallet, card
//    state and account reads, the ledger's id probe, a transfer, its two posting legs, the card
//    float's balance (the merchant's once per batch), the card state, the wallet, the purchase;
//  - one_transfer_per_merchant_batch: the model docs/host.md "Not done yet" names: one transfer
//    per merchant and batch, so per purchase one posting leg instead of a transfer and two legs.
// The rows are only a measurement: nothing here is a valid ledger afterwards.
class Sqlite {
 public:
  explicit Sqlite(const std::string& path) {
    Require(sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK,
            "opening " + path);
    // As store/sqlite_driver.cc sets them for the host's connection.
    for (const char* pragma :
         {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON",
          "PRAGMA cache_size=-65536", "PRAGMA temp_store=MEMORY"}) {
      Exec(pragma);
    }
  }
  ~Sqlite() {
    for (sqlite3_stmt* s : statements_) sqlite3_finalize(s);
    sqlite3_close(db_);
  }
  Sqlite(const Sqlite&) = delete;
  Sqlite& operator=(const Sqlite&) = delete;

  void Exec(const char* sql) {
    char* error = nullptr;
    const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &error);
    const std::string message = error != nullptr ? error : "";
    sqlite3_free(error);
    Require(rc == SQLITE_OK, std::string(sql) + ": " + message);
  }
  sqlite3_stmt* Prepare(const char* sql) {
    sqlite3_stmt* s = nullptr;
    Require(sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr) == SQLITE_OK,
            std::string(sql) + ": " + sqlite3_errmsg(db_));
    statements_.push_back(s);
    return s;
  }
  // Runs a bound statement; true when it produced a row (read with sqlite3_column_*, then Reset).
  bool Step(sqlite3_stmt* s) {
    const int rc = sqlite3_step(s);
    Require(rc == SQLITE_ROW || rc == SQLITE_DONE, std::string("step: ") + sqlite3_errmsg(db_));
    return rc == SQLITE_ROW;
  }
  void Run(sqlite3_stmt* s) {
    Step(s);
    Reset(s);
  }
  static void Reset(sqlite3_stmt* s) {
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
  }
  std::int64_t LastRowId() const { return sqlite3_last_insert_rowid(db_); }

 private:
  sqlite3* db_ = nullptr;
  std::vector<sqlite3_stmt*> statements_;
};

void BindText(sqlite3_stmt* s, int i, const std::string& text) {
  sqlite3_bind_text(s, i, text.data(), static_cast<int>(text.size()), SQLITE_STATIC);
}

void RunSqliteFloor(benchmark::State& state, bool one_transfer_per_batch) {
  if (!EngineWanted("sqlite")) {
    state.SkipWithError("not asked for (MEDCARD_BENCH_ENGINES)");
    for (auto _ : state) {
    }
    return;
  }
  const Config& c = Settings();
  const Population& p = Workload();
  BenchDir dir("medcard-bench-floor");
  const std::string path = (dir.path / "host.db").string();
  {
    // The same cards, accounts, card states and wallets the clearing run starts from.
    auto key_store = TestKeyStore(dir.path / "keys");
    HostDatabase db("sqlite:" + path, *key_store);
    RegisterMerchantsAndTerminals(*db.host, p);
    ImportCards(*db.host, 0, c.cards);
    LoadCards(*db.connection, p, 0, c.cards);
  }
  Sqlite db(path);
  std::vector<std::int64_t> merchant_account(p.merchants);
  {
    sqlite3_stmt* find =
        db.Prepare("SELECT id FROM ledger_accounts WHERE kind = 'merchant' AND account_key = ?");
    for (std::size_t m = 0; m < p.merchants; ++m) {
      const std::string id = MerchantId(m);
      BindText(find, 1, id);
      Require(db.Step(find), "merchant account " + id);
      merchant_account[m] = sqlite3_column_int64(find, 0);
      Sqlite::Reset(find);
    }
  }
  sqlite3_stmt* duplicate =
      db.Prepare("SELECT 1 FROM host_purchases WHERE asn = ? AND offline_serial = ? AND type = ?");
  sqlite3_stmt* wallet = db.Prepare(
      "SELECT c.blacklisted_at, w.last_offline_serial, w.held_in_suspense, s.balance,"
      " s.offline_serial, w.overdraw_limit, w.overdraw_used FROM host_cards c"
      " JOIN host_card_wallets w ON w.asn = c.asn AND w.wallet = 'EP'"
      " LEFT JOIN ledger_card_state s ON s.asn = c.asn AND s.wallet = w.wallet WHERE c.asn = ?");
  sqlite3_stmt* account = db.Prepare(
      "SELECT id, balance, debits_pending, credits_pending, shard FROM ledger_accounts"
      " WHERE kind = 'card_float' AND account_key = ?");
  sqlite3_stmt* transfer_probe = db.Prepare("SELECT 1 FROM ledger_transfers WHERE id = ?");
  sqlite3_stmt* transfer = db.Prepare(
      "INSERT INTO ledger_transfers (id, debit_account, credit_account, amount, pending,"
      " debit_must_not_go_negative, state, cause_kind, cause_reference, cause_details, card_state,"
      " shard, created_at) VALUES (?, ?, ?, ?, 0, 0, 'posted', 'purchase', ?, '{}', ?, ?, ?)");
  sqlite3_stmt* leg = db.Prepare(
      "INSERT INTO ledger_postings (transfer_seq, account_id, amount, balance_after, shard,"
      " created_at) VALUES (?, ?, ?, ?, ?, ?)");
  sqlite3_stmt* balance =
      db.Prepare("UPDATE ledger_accounts SET balance = balance + ? WHERE id = ?");
  sqlite3_stmt* card_state = db.Prepare(
      "UPDATE ledger_card_state SET balance = ?, offline_serial = ?, updated_at = ?"
      " WHERE account_id = ? AND COALESCE(? >= offline_serial, TRUE)");
  sqlite3_stmt* wallet_update = db.Prepare(
      "UPDATE host_card_wallets SET last_offline_serial = ?, held_in_suspense = ?,"
      " overdraw_used = ? WHERE asn = ? AND wallet = 'EP'");
  sqlite3_stmt* purchase = db.Prepare(
      "INSERT INTO host_purchases (asn, offline_serial, type, amount, balance_before,"
      " balance_after, terminal_number, terminal_serial, txn_time, tac, outcome, reason)"
      " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'accepted', '')");

  std::vector<std::string> asn_hex(p.asns.size()), terminal_hex(p.terminals.size());
  for (std::size_t i = 0; i < p.asns.size(); ++i) asn_hex[i] = ToHex(p.asns[i]);
  for (std::size_t i = 0; i < p.terminals.size(); ++i) terminal_hex[i] = ToHex(p.terminals[i]);
  const std::int64_t now = 1'764'000'000'000'000;
  std::chrono::steady_clock::duration elapsed{};
  for (auto _ : state) {
    for (std::size_t first = 0; first < p.purchases.size(); first += c.batch) {
      const std::size_t last = std::min(p.purchases.size(), first + c.batch);
      // Untimed: the texts a purchase's rows carry (clearing builds them too, but that is the
      // host's work, not the database's).
      struct Texts {
        std::string account_key, reference, transfer_id, card_state, when, tac;
      };
      std::vector<Texts> texts(last - first);
      for (std::size_t i = first; i < last; ++i) {
        const SyntheticPurchase& s = p.purchases[i];
        Texts& t = texts[i - first];
        t.account_key = asn_hex[s.card] + "/EP";
        t.reference = asn_hex[s.card] + "/" + std::to_string(s.offline_serial) + "/6";
        t.transfer_id = "purchase/" + t.reference;
        t.card_state = R"({"asn":")" + asn_hex[s.card] + R"(","balance":)" +
                       std::to_string(s.balance_before - s.amount) + R"(,"offline_serial":)" +
                       std::to_string(s.offline_serial) + R"(,"wallet":"EP"})";
        const TimeOfDay time = TimeOf(s.second_of_day);
        char when[32];
        std::snprintf(when, sizeof when, "20261125%02d%02d%02d", time.hour, time.minute,
                      time.second);
        t.when = when;
        t.tac = ToHex(ByteView(s.tac.data(), s.tac.size()));
      }
      const auto t0 = std::chrono::steady_clock::now();
      db.Exec("BEGIN IMMEDIATE");
      std::vector<std::int64_t> merchant_delta(p.merchants, 0);
      std::vector<std::int64_t> batch_transfer(p.merchants, 0);
      if (one_transfer_per_batch) {
        for (std::size_t m = 0; m < p.merchants; ++m) {
          const std::string id = "clearing/" + std::to_string(first) + "/" + MerchantId(m);
          BindText(transfer, 1, id);
          sqlite3_bind_int64(transfer, 2, merchant_account[m]);  // stands for the card legs
          sqlite3_bind_int64(transfer, 3, merchant_account[(m + 1) % p.merchants]);
          sqlite3_bind_int64(transfer, 4, 1);
          BindText(transfer, 5, id);
          sqlite3_bind_null(transfer, 6);
          sqlite3_bind_int64(transfer, 7, static_cast<std::int64_t>(m));
          sqlite3_bind_int64(transfer, 8, now);
          db.Run(transfer);
          batch_transfer[m] = db.LastRowId();
        }
      }
      for (std::size_t i = first; i < last; ++i) {
        const SyntheticPurchase& s = p.purchases[i];
        const Texts& t = texts[i - first];
        const std::string& asn = asn_hex[s.card];
        const std::size_t merchant = s.terminal % p.merchants;
        BindText(duplicate, 1, asn);
        sqlite3_bind_int64(duplicate, 2, s.offline_serial);
        sqlite3_bind_int64(duplicate, 3, kEpPurchase);
        Require(!db.Step(duplicate), "a purchase uploaded twice");
        Sqlite::Reset(duplicate);
        BindText(wallet, 1, asn);
        Require(db.Step(wallet), "card " + asn);
        Sqlite::Reset(wallet);
        BindText(account, 1, t.account_key);
        Require(db.Step(account), "card float " + t.account_key);
        const std::int64_t account_id = sqlite3_column_int64(account, 0);
        const std::int64_t balance_after = sqlite3_column_int64(account, 1) - s.amount;
        const std::int64_t shard = sqlite3_column_int64(account, 4);
        Sqlite::Reset(account);
        std::int64_t transfer_seq = batch_transfer[merchant];
        if (!one_transfer_per_batch) {
          BindText(transfer_probe, 1, t.transfer_id);
          Require(!db.Step(transfer_probe), "a transfer posted twice");
          Sqlite::Reset(transfer_probe);
          BindText(transfer, 1, t.transfer_id);
          sqlite3_bind_int64(transfer, 2, account_id);
          sqlite3_bind_int64(transfer, 3, merchant_account[merchant]);
          sqlite3_bind_int64(transfer, 4, s.amount);
          BindText(transfer, 5, t.reference);
          BindText(transfer, 6, t.card_state);
          sqlite3_bind_int64(transfer, 7, shard);
          sqlite3_bind_int64(transfer, 8, now);
          db.Run(transfer);
          transfer_seq = db.LastRowId();
          sqlite3_bind_int64(leg, 1, transfer_seq);
          sqlite3_bind_int64(leg, 2, merchant_account[merchant]);
          sqlite3_bind_int64(leg, 3, s.amount);
          sqlite3_bind_int64(leg, 4, 0);
          sqlite3_bind_int64(leg, 5, static_cast<std::int64_t>(merchant));
          sqlite3_bind_int64(leg, 6, now);
          db.Run(leg);
        }
        sqlite3_bind_int64(leg, 1, transfer_seq);
        sqlite3_bind_int64(leg, 2, account_id);
        sqlite3_bind_int64(leg, 3, -static_cast<std::int64_t>(s.amount));
        sqlite3_bind_int64(leg, 4, balance_after);
        sqlite3_bind_int64(leg, 5, shard);
        sqlite3_bind_int64(leg, 6, now);
        db.Run(leg);
        sqlite3_bind_int64(balance, 1, -static_cast<std::int64_t>(s.amount));
        sqlite3_bind_int64(balance, 2, account_id);
        db.Run(balance);
        merchant_delta[merchant] += s.amount;
        sqlite3_bind_int64(card_state, 1, balance_after);
        sqlite3_bind_int64(card_state, 2, s.offline_serial);
        sqlite3_bind_int64(card_state, 3, now);
        sqlite3_bind_int64(card_state, 4, account_id);
        sqlite3_bind_int64(card_state, 5, s.offline_serial);
        db.Run(card_state);
        sqlite3_bind_int64(wallet_update, 1, s.offline_serial);
        sqlite3_bind_int64(wallet_update, 2, 0);
        sqlite3_bind_int64(wallet_update, 3, 0);
        BindText(wallet_update, 4, asn);
        db.Run(wallet_update);
        BindText(purchase, 1, asn);
        sqlite3_bind_int64(purchase, 2, s.offline_serial);
        sqlite3_bind_int64(purchase, 3, kEpPurchase);
        sqlite3_bind_int64(purchase, 4, s.amount);
        sqlite3_bind_int64(purchase, 5, s.balance_before);
        sqlite3_bind_int64(purchase, 6, balance_after);
        BindText(purchase, 7, terminal_hex[s.terminal]);
        sqlite3_bind_int64(purchase, 8, s.terminal_serial);
        BindText(purchase, 9, t.when);
        BindText(purchase, 10, t.tac);
        db.Run(purchase);
      }
      for (std::size_t m = 0; m < p.merchants; ++m) {
        if (merchant_delta[m] == 0) continue;
        sqlite3_bind_int64(balance, 1, merchant_delta[m]);
        sqlite3_bind_int64(balance, 2, merchant_account[m]);
        db.Run(balance);
        if (one_transfer_per_batch) {
          sqlite3_bind_int64(leg, 1, batch_transfer[m]);
          sqlite3_bind_int64(leg, 2, merchant_account[m]);
          sqlite3_bind_int64(leg, 3, merchant_delta[m]);
          sqlite3_bind_int64(leg, 4, 0);
          sqlite3_bind_int64(leg, 5, static_cast<std::int64_t>(m));
          sqlite3_bind_int64(leg, 6, now);
          db.Run(leg);
        }
      }
      db.Exec("COMMIT");
      elapsed += std::chrono::steady_clock::now() - t0;
    }
    state.SetIterationTime(Seconds(elapsed));
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(p.purchases.size()));
}

void BM_SqliteFloorThisSchema(benchmark::State& state) { RunSqliteFloor(state, false); }
BENCHMARK(BM_SqliteFloorThisSchema)->Iterations(1)->UseManualTime()->Unit(benchmark::kSecond);

void BM_SqliteFloorOneTransferPerMerchantBatch(benchmark::State& state) {
  RunSqliteFloor(state, true);
}
BENCHMARK(BM_SqliteFloorOneTransferPerMerchantBatch)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kSecond);

// MEDCARD_BENCH_PG_URL, else a database on the throwaway test server; empty with *why.
std::string PostgresUrl(std::string* why) {
  if (const char* url = std::getenv("MEDCARD_BENCH_PG_URL"); url != nullptr && *url != '\0') {
    std::printf("PostgreSQL: %s (MEDCARD_BENCH_PG_URL)\n", store::RedactUrl(url).c_str());
    return url;
  }
#ifndef MEDCARD_BENCH_PG_FIXTURE
  *why = "PostgreSQL skipped: no MEDCARD_BENCH_PG_URL and no test fixture (tests not configured)";
  return "";
#else
  auto url = test_support::NewPostgresDatabase();
  if (!url.ok()) {
    *why = "PostgreSQL unavailable: " + url.error().message;
    return "";
  }
  // The test fixture's server runs with fsync=off (set on its command line, which ALTER SYSTEM
  // cannot override): its figure is an upper bound, not a durable one like SQLite's. Say so.
  auto db = store::Database::Open(*url);
  if (db.ok()) {
    auto conn = (*db)->Connect();
    if (conn.ok()) {
      auto fsync = (*conn)->Query("SHOW fsync");
      auto commit = (*conn)->Query("SHOW synchronous_commit");
      std::printf("PostgreSQL: throwaway test server, fsync=%s, synchronous_commit=%s%s\n",
                  fsync.ok() && !fsync->empty() ? fsync->rows[0].Text(0).c_str() : "?",
                  commit.ok() && !commit->empty() ? commit->rows[0].Text(0).c_str() : "?",
                  " (not durable: set MEDCARD_BENCH_PG_URL for a real server)");
    }
  }
  return *url;
#endif
}

void BM_ClearPurchasesPostgres(benchmark::State& state) {
  std::string why = "not asked for (MEDCARD_BENCH_ENGINES)";
  const std::string url = EngineWanted("postgres") ? PostgresUrl(&why) : "";
  if (url.empty()) {
    std::printf("%s\n", why.c_str());
    state.SkipWithError(why.c_str());
    for (auto _ : state) {
    }
    return;
  }
  RunClearing(state, url, "PostgreSQL");
}
BENCHMARK(BM_ClearPurchasesPostgres)->Iterations(1)->UseManualTime()->Unit(benchmark::kSecond);

}  // namespace
}  // namespace medcard::bench

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  medcard::bench::RateKeepingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
#ifdef MEDCARD_BENCH_PG_FIXTURE
  medcard::test_support::StopPostgres();
#endif

  const auto& c = medcard::bench::Settings();
  std::printf("cards=%zu purchases=%zu batch=%zu (target: >= 100000 purchases/s on SQLite)\n",
              c.cards, c.purchases, c.batch);
  reporter.PrintRatio("sqlite_clearing_per_s / keystore_tac_verify_per_s",
                      "BM_ClearPurchasesSqlite", "BM_TacVerifyKeyStore");
  reporter.PrintRatio("postgresql_clearing_per_s / keystore_tac_verify_per_s",
                      "BM_ClearPurchasesPostgres", "BM_TacVerifyKeyStore");
  // How near clearing is to what SQLite alone needs for the rows it writes (1.0: no host cost).
  reporter.PrintRatio("sqlite_clearing_per_s / sqlite_floor_this_schema_per_s",
                      "BM_ClearPurchasesSqlite", "BM_SqliteFloorThisSchema");
  reporter.PrintRatio("sqlite_floor_one_transfer_per_merchant_batch / sqlite_floor_this_schema",
                      "BM_SqliteFloorOneTransferPerMerchantBatch", "BM_SqliteFloorThisSchema");
  reporter.PrintRatio("keystore_tac_verify_per_s / raw_crypto_tac_verify_per_s",
                      "BM_TacVerifyKeyStore", "BM_TacVerifyRawCrypto");
  return 0;
}
