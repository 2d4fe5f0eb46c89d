// The host process's memory with many cards registered: VmRSS and VmHWM (/proc/self/status)
// before registration, as cards are imported (issuance log import, big transactions), after, and
// after clearing purchases that touch many of those cards; plus the SQLite database's size on
// disk. The host keeps nothing per card in memory (every card lives in the database), so RSS
// should stay flat while the file grows. Figures only.
//
// Sizes (environment): MEDCARD_BENCH_CARDS (default 100,000), MEDCARD_BENCH_TOUCHED (cards that
// each get one cleared purchase afterwards, default 10,000, at most the cards), MEDCARD_BENCH_DIR
// (where the database goes; default the current directory). The size:
//   MEDCARD_BENCH_CARDS=1000000 build/bench/bench/host_memory_bench
// Only this program's own small buffers come on top of the host's memory: the cards are generated
// chunk by chunk, and the clearing workload holds only the touched cards.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "host_workload.h"

namespace medcard::bench {
namespace {

void PrintMemory(const char* when) {
  std::printf("%-44s VmRSS %8.1f MiB   VmHWM %8.1f MiB\n", when,
              static_cast<double>(ProcStatusKib("VmRSS")) / 1024.0,
              static_cast<double>(ProcStatusKib("VmHWM")) / 1024.0);
  std::fflush(stdout);
}

double FileMib(const std::filesystem::path& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  return ec ? 0.0 : static_cast<double>(size) / (1024.0 * 1024.0);
}

int Run() {
  const std::size_t cards = EnvSize("MEDCARD_BENCH_CARDS", 100'000);
  const std::size_t touched = std::min(cards, EnvSize("MEDCARD_BENCH_TOUCHED", 10'000));
  constexpr std::size_t kChunk = 50'000;  // cards per import transaction

  BenchDir dir("medcard-bench-memory");
  const std::filesystem::path db_file = dir.path / "host.db";
  std::printf("host memory: %zu cards; SQLite file in %s: %s\n", cards, dir.path.c_str(),
              FilesystemKind(dir.path).c_str());
  PrintMemory("at start");
  auto key_store = TestKeyStore(dir.path / "keys");
  HostDatabase db("sqlite:" + db_file.string(), *key_store);
  // A few terminals at a few merchants; purchases for the touched cards only.
  const Population population = MakePopulation(touched, touched, 20, 4);
  RegisterMerchantsAndTerminals(*db.host, population);
  PrintMemory("host open, terminals registered");
  const long rss_before = ProcStatusKib("VmRSS");

  const auto start = std::chrono::steady_clock::now();
  long rss_half = -1;  // once half the cards are in: what the second half adds is per-card state
  std::size_t cards_half = 0;
  for (std::size_t first = 0; first < cards; first += kChunk) {
    const std::size_t last = std::min(cards, first + kChunk);
    ImportCards(*db.host, first, last, kChunk);
    if (rss_half < 0 && last >= cards / 2) {
      rss_half = ProcStatusKib("VmRSS");
      cards_half = last;
    }
    const std::string when = std::to_string(last) + " cards registered";
    PrintMemory(when.c_str());
  }
  const double import_s = Seconds(std::chrono::steady_clock::now() - start);
  const long rss_after = ProcStatusKib("VmRSS");
  std::printf("registered %zu cards in %.1f s (%.0f cards/s)\n", cards, import_s,
              static_cast<double>(cards) / import_s);
  std::printf("database: %s %.1f MiB + WAL %.1f MiB\n", db_file.filename().c_str(),
              FileMib(db_file), FileMib(db_file.string() + "-wal"));
  std::printf(
      "RSS growth while registering: %.1f MiB in all (bounded caches filling: the SQLite"
      " page cache is up to 64 MiB)\n",
      static_cast<double>(rss_after - rss_before) / 1024.0);
  if (cards > cards_half) {
    std::printf("RSS growth over the last %zu cards: %.1f MiB (%.1f bytes per card)\n",
                cards - cards_half, static_cast<double>(rss_after - rss_half) / 1024.0,
                static_cast<double>(rss_after - rss_half) * 1024.0 /
                    static_cast<double>(cards - cards_half));
  }

  LoadCards(*db.connection, population, 0, touched);
  PrintMemory("after loading the touched cards");
  std::size_t accepted = 0;
  std::vector<host::PurchaseUpload> batch;
  for (std::size_t first = 0; first < population.purchases.size(); first += 1000) {
    batch.clear();
    for (std::size_t i = first; i < std::min(population.purchases.size(), first + 1000); ++i) {
      batch.push_back(Upload(population, population.purchases[i]));
    }
    auto results = db.host->ClearPurchases(batch);
    Require(results.ok(), results.ok() ? "" : results.error().message);
    for (const auto& r : *results) accepted += r.outcome == host::ClearingOutcome::kAccepted;
  }
  batch = {};
  const std::string cleared = "after clearing " + std::to_string(accepted) + "/" +
                              std::to_string(touched) + " purchases (1 per card)";
  PrintMemory(cleared.c_str());
  std::printf("database after clearing: %.1f MiB + WAL %.1f MiB\n", FileMib(db_file),
              FileMib(db_file.string() + "-wal"));
  return accepted == touched ? 0 : 1;
}

}  // namespace
}  // namespace medcard::bench

int main() { return medcard::bench::Run(); }
