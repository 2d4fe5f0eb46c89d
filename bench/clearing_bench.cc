// Clearing throughput: Host::ClearPurchases over offline purchases with valid TACs, on SQLite in a
// file on disk (WAL, synchronous=FULL) and on PostgreSQL, beside the rate of the TAC verification
// alone through the same key store (the crypto limit: diversify + TAC key + MAC per purchase),
// measured in the same run. Figures only; nothing here asserts on time.
//
// The population (bench/host_workload.h) is made and registered outside the timed part: cards
// imported through the issuance log, each card's EP loaded, purchases round-robin over the cards
// in batches of MEDCARD_BENCH_BATCH (default 1,000) per ClearPurchases call, each batch one
// database transaction. Only the ClearPurchases calls are timed.
//
// Sizes (environment): MEDCARD_BENCH_CARDS (default 5,000), MEDCARD_BENCH_PURCHASES (default
// 50,000), MEDCARD_BENCH_BATCH (1,000). The full size:
//   MEDCARD_BENCH_CARDS=100000 MEDCARD_BENCH_PURCHASES=1000000 build/bench/bench/clearing_bench
// MEDCARD_BENCH_DIR: where the SQLite file goes (default: the current directory; the program says
// whether that is tmpfs). PostgreSQL: MEDCARD_BENCH_PG_URL names an EMPTY database to use; else a
// throwaway server is started (tests/support/postgres_fixture.h; it runs with fsync=off, which
// the program prints); when neither works the PostgreSQL row says why and is skipped.
// MEDCARD_BENCH_CHECK=1 runs Host::CheckHost after clearing (default: at ≤ 100,000 purchases).
// MEDCARD_BENCH_ENGINES=sqlite or postgresql runs one engine only.
#include <benchmark/benchmark.h>

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
  reporter.PrintRatio("keystore_tac_verify_per_s / raw_crypto_tac_verify_per_s",
                      "BM_TacVerifyKeyStore", "BM_TacVerifyRawCrypto");
  return 0;
}
