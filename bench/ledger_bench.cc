// Ledger Post() per second: SQLite (WAL, synchronous=FULL) in a file on disk, and PostgreSQL when
// $MEDCARD_BENCH_PG names a server (scripts/pg-test.sh start prints one), else n/a. Each beside a
// baseline measured in the same run on the same database: the same number of single-row INSERT
// transactions. The ratio is what double entry, idempotency and balances cost over the engine's
// bare commit. Each Post is a cleared purchase: card float → merchant, its own transaction.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "ledger/ledger.h"
#include "rate_reporter.h"
#include "store/store.h"

namespace medcard {
namespace {

namespace fs = std::filesystem;

constexpr int kIterations = 400;
constexpr int kCards = 20;
constexpr int kMerchants = 5;

// A SQLite file on the disk the benchmark runs from (not tmpfs: fsync is the point).
struct DiskDatabase {
  fs::path dir = fs::current_path() / ("medcard-bench-ledger-" + std::to_string(::getpid()));
  DiskDatabase() { fs::create_directories(dir); }
  ~DiskDatabase() { fs::remove_all(dir); }
  std::string Url(const char* name) const { return "sqlite:" + (dir / name).string(); }
};

const char* PostgresUrl() {
  const char* url = std::getenv("MEDCARD_BENCH_PG");
  return url != nullptr && *url != '\0' ? url : nullptr;
}

// Unique per run, so runs against one PostgreSQL database never collide.
std::string RunTag() {
  return std::to_string(::getpid()) + "-" +
         std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
}

std::string Asn(int card) {
  char asn[21];
  std::snprintf(asn, sizeof asn, "88888888888888%06d", card);
  return asn;
}

std::unique_ptr<store::Connection> Connect(benchmark::State& state, const std::string& url) {
  auto db = store::Database::Open(url);
  if (!db.ok()) {
    state.SkipWithError(db.error().message.c_str());
    return nullptr;
  }
  auto conn = (*db)->Connect();
  if (!conn.ok()) {
    state.SkipWithError(conn.error().message.c_str());
    return nullptr;
  }
  return std::move(conn).value();
}

void PostPurchases(benchmark::State& state, const std::string& url) {
  auto conn = Connect(state, url);
  if (!conn) return;
  if (auto migrated = store::Migrate(*conn, ledger::Migrations()); !migrated.ok()) {
    state.SkipWithError(migrated.error().message.c_str());
    return;
  }
  ledger::Ledger ledger(*conn);
  for (int i = 0; i < kCards; ++i)
    (void)ledger.OpenAccount(ledger::AccountId::CardFloat(Asn(i), ledger::Wallet::kEp));
  for (int i = 0; i < kMerchants; ++i) {
    (void)ledger.OpenAccount(ledger::AccountId::Merchant("M" + std::to_string(i)));
  }
  const std::string tag = RunTag();
  int n = 0;
  for (auto _ : state) {
    const std::string asn = Asn(n % kCards);
    const std::string reference = asn + "/" + tag + "/" + std::to_string(n) + "/06";
    auto r =
        ledger.Post({.id = "purchase/" + reference,
                     .debit = ledger::AccountId::CardFloat(asn, ledger::Wallet::kEp),
                     .credit = ledger::AccountId::Merchant("M" + std::to_string(n % kMerchants)),
                     .amount = 100 + n % 900,
                     .cause = {ledger::cause::kPurchase, reference}});
    if (!r.ok() || r->outcome != ledger::Outcome::kPosted) {
      state.SkipWithError(r.ok() ? "not posted" : r.error().message.c_str());
      break;
    }
    ++n;
  }
  state.SetItemsProcessed(n);
}

void RawInserts(benchmark::State& state, const std::string& url) {
  auto conn = Connect(state, url);
  if (!conn) return;
  if (auto made = conn->ExecuteScript(
          "CREATE TABLE IF NOT EXISTS bench_raw_inserts (id TEXT PRIMARY KEY, amount BIGINT)");
      !made.ok()) {
    state.SkipWithError(made.error().message.c_str());
    return;
  }
  const std::string tag = RunTag();
  int n = 0;
  for (auto _ : state) {
    auto tx = store::Transaction::Begin(*conn);
    auto inserted = tx.ok() ? conn->Execute("INSERT INTO bench_raw_inserts VALUES (?, ?)",
                                            {tag + "/" + std::to_string(n), 100 + n % 900})
                            : store::DbResult<std::int64_t>(tx.error());
    auto committed = inserted.ok() ? tx->Commit() : store::DbStatus(inserted.error());
    if (!committed.ok()) {
      state.SkipWithError(committed.error().message.c_str());
      break;
    }
    ++n;
  }
  state.SetItemsProcessed(n);
}

void BM_LedgerPost_Sqlite(benchmark::State& state) {
  DiskDatabase disk;
  PostPurchases(state, disk.Url("ledger.db"));
}
BENCHMARK(BM_LedgerPost_Sqlite)
    ->Unit(benchmark::kMicrosecond)
    ->Iterations(kIterations)
    ->UseRealTime();

void BM_RawInsertTxn_Sqlite(benchmark::State& state) {
  DiskDatabase disk;
  RawInserts(state, disk.Url("raw.db"));
}
BENCHMARK(BM_RawInsertTxn_Sqlite)
    ->Unit(benchmark::kMicrosecond)
    ->Iterations(kIterations)
    ->UseRealTime();

void BM_LedgerPost_Postgres(benchmark::State& state) {
  if (PostgresUrl() == nullptr) {
    state.SkipWithError("n/a: set MEDCARD_BENCH_PG=postgresql://...");
    return;
  }
  PostPurchases(state, PostgresUrl());
}
BENCHMARK(BM_LedgerPost_Postgres)
    ->Unit(benchmark::kMicrosecond)
    ->Iterations(kIterations)
    ->UseRealTime();

void BM_RawInsertTxn_Postgres(benchmark::State& state) {
  if (PostgresUrl() == nullptr) {
    state.SkipWithError("n/a: set MEDCARD_BENCH_PG=postgresql://...");
    return;
  }
  RawInserts(state, PostgresUrl());
}
BENCHMARK(BM_RawInsertTxn_Postgres)
    ->Unit(benchmark::kMicrosecond)
    ->Iterations(kIterations)
    ->UseRealTime();

}  // namespace
}  // namespace medcard

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  medcard::bench::RateKeepingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  reporter.PrintRatio("SQLite: ledger Post / single-row insert transaction", "BM_LedgerPost_Sqlite",
                      "BM_RawInsertTxn_Sqlite");
  if (medcard::PostgresUrl() == nullptr) {
    std::printf("PostgreSQL: n/a (set MEDCARD_BENCH_PG, e.g. from scripts/pg-test.sh start)\n");
  } else {
    reporter.PrintRatio("PostgreSQL: ledger Post / single-row insert transaction",
                        "BM_LedgerPost_Postgres", "BM_RawInsertTxn_Postgres");
  }
  return 0;
}
