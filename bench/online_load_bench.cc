// Online loads over loopback (issue: "100 concurrent terminals, each load durably committed:
// target ≥ 5,000 loads/s with p99 < 50 ms (group commit is allowed and expected); report
// p50/p99").
//
// The real host stack in this process — server::Server (Asio) → host::TerminalGateway → Host →
// ledger → SQLite on disk with synchronous FULL (or PostgreSQL) — and T terminals, each a thread
// with its own HostLink over TCP, its own key store holding its TMK and a real test card in an
// in-process reader. One load = INITIALIZE FOR LOAD on the card → 0200 (MAC1 → MAC2, reserved,
// committed) → CREDIT FOR LOAD → 0220 with the card's TAC (completed, committed): two durable
// round trips. Latency is per load, both round trips and the card included.
//
// Baseline in the same run: one terminal alone (no concurrency: every request pays its own
// commit). The ratio shows what group commit buys.
//   MEDCARD_BENCH_TERMINALS (100), MEDCARD_BENCH_LOADS (loads per terminal, 30),
//   MEDCARD_BENCH_PG_URL (a PostgreSQL database to run the same against; optional).
#include <benchmark/benchmark.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "host/gateway.h"
#include "host/host.h"
#include "issuance/test_issuer.h"
#include "keys/key_store.h"
#include "ledger/ledger.h"
#include "rate_reporter.h"
#include "reader/reader.h"
#include "server/server.h"
#include "store/store.h"
#include "terminal/host_link.h"
#include "terminal/purse.h"

namespace medcard {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr char kPassphrase[] = "bench passphrase";
constexpr char kTestTmk[] = "2A4C6E8091B3D5F71A3C5E7092B4D6F8";  // TEST key

int EnvInt(const char* name, int fallback) {
  const char* value = std::getenv(name);
  return value ? std::atoi(value) : fallback;
}

Bytes TerminalNumber(int i) {
  char text[13];
  std::snprintf(text, sizeof text, "%012d", 900000 + i);
  return HexToBytes(text);
}
std::string TerminalId(int i) {  // field 41, 8 characters
  std::string digits = std::to_string(i % 10'000'000);
  return "B" + std::string(7 - digits.size(), '0') + digits;
}
Bytes Asn(int i) {
  char text[21];
  std::snprintf(text, sizeof text, "1100%016d", 900000 + i);
  return HexToBytes(text);
}

struct Terminal {
  std::unique_ptr<keys::KeyStore> keys;
  std::unique_ptr<terminal::Transport> transport;
  std::unique_ptr<terminal::HostLink> link;
  std::shared_ptr<card::Card> card;
  std::unique_ptr<reader::Reader> reader;
  terminal::ApplicationData app;
  Bytes terminal_number;
};

// The host (server + gateway on the database) and T signed-on terminals.
class LoadRig {
 public:
  LoadRig(const std::string& database_url, int terminals) {
    ::setenv("MEDCARD_KEYSTORE_TEST_KDF", "fast", 1);
    dir_ = fs::temp_directory_path() / ("medcard-load-bench-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    const std::string url =
        database_url.empty() ? store::SqliteUrlForDataDir(dir_.string()) : database_url;
    database_ = Take(store::Database::Open(url), "database");
    connection_ = Take(database_->Connect(), "connect");
    Require(store::Migrate(*connection_, ledger::Migrations()).ok(), "migrate ledger");
    Require(store::Migrate(*connection_, host::Migrations()).ok(), "migrate host");
    host_keys_ = Take(keys::CreateSoftwareKeyStore((dir_ / "keys").string(), kPassphrase, true),
                      "key store");
    const auto& test_keys = issuance::TestKeySet::Embedded();
    for (const auto& role : issuance::TestKeySet::RequiredRoles()) {
      Require(host_keys_->ImportTestKey(role, test_keys.MasterKey(role)).ok(), "test key");
    }
    host::Host host(*connection_, *host_keys_);
    Require(host.RegisterMerchant({"H0001", "City Hospital", "hospital-3A"}).ok(), "merchant");
    for (int i = 0; i < terminals; ++i) {
      const Bytes number = TerminalNumber(i);
      Require(host_keys_->ImportTestKey("tmk/" + ToHex(number), HexToBytes(kTestTmk)).ok(), "tmk");
      host::TerminalRegistration registration{
          number, "H0001", HexToBytes("5000" + ToHex(number).substr(0, 12) + "0000")};
      registration.terminal_id = TerminalId(i);
      Require(host.RegisterTerminal(registration).ok(), "terminal");
      const std::string person = "P" + std::to_string(i);
      Require(host.RegisterCard({Asn(i), "holder", person}).ok(), "card");
      Require(host.CreditMedicalAccount("bench", person, 1'000'000'000).ok(), "credit");
    }

    gateway_ = std::make_unique<host::TerminalGateway>(*connection_, *host_keys_);
    server::Options options;
    options.port = 0;
    server_ = Take(server::Server::Start(options,
                                         [this](std::span<const Bytes> frames) {
                                           auto answers = gateway_->HandleGroup(frames);
                                           std::vector<server::Reply> replies;
                                           for (auto& a : answers) {
                                             replies.push_back({std::move(a.frame), a.close});
                                           }
                                           return replies;
                                         }),
                   "server");

    for (int i = 0; i < terminals; ++i) {
      auto t = std::make_unique<Terminal>();
      t->terminal_number = TerminalNumber(i);
      t->keys = Take(keys::CreateSoftwareKeyStore((dir_ / ("t" + std::to_string(i))).string(),
                                                  kPassphrase, true),
                     "terminal key store");
      Require(t->keys->ImportTestKey("tmk/" + ToHex(t->terminal_number), HexToBytes(kTestTmk)).ok(),
              "terminal tmk");
      terminal::TcpConfig tcp;
      tcp.host = "127.0.0.1";
      tcp.port = server_->port();
      t->transport = Take(terminal::MakeTcpTransport(tcp), "transport");
      terminal::HostLinkConfig config;
      config.terminal_id = TerminalId(i);
      config.merchant_id = "H0001";
      config.terminal_number = t->terminal_number;
      t->link = std::make_unique<terminal::HostLink>(config, *t->transport, *t->keys);
      Require(t->link->SignOn().ok(), "sign-on");
      t->card =
          Take(issuance::IssueTestCard(test_keys, std::make_unique<nvm::FaultInjectionMedium>(),
                                       issuance::TestHolder(Asn(i), "123456")),
               "card");
      t->reader = std::make_unique<reader::InProcessReader>("card", t->card);
      Require(t->reader->Connect().ok(), "reader");
      t->app = Take(terminal::SelectMedicalApplication(*t->reader), "select");
      Require(terminal::VerifyPin(*t->reader, "123456").ok(), "PIN");
      terminals_.push_back(std::move(t));
    }
  }
  ~LoadRig() {
    if (server_) server_->Shutdown(std::chrono::seconds(5));
    terminals_.clear();
    server_.reset();
    gateway_.reset();
    connection_.reset();
    database_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // `count` loads on each of the first `active` terminals at once; per-load latencies in µs.
  std::vector<double> Run(int active, int count, bool* ok) {
    std::vector<std::vector<double>> latencies(static_cast<std::size_t>(active));
    std::atomic<bool> failed{false};
    std::vector<std::thread> threads;
    for (int i = 0; i < active; ++i) {
      threads.emplace_back([&, i] {
        Terminal& t = *terminals_[static_cast<std::size_t>(i)];
        for (int n = 0; n < count && !failed; ++n) {
          terminal::HostLoadAuthoriser issuer(*t.link);
          const auto start = Clock::now();
          auto loaded = terminal::Load(*t.reader, issuer, t.app,
                                       {terminal::Wallet::kEd, 100, t.terminal_number,
                                        Date{2026, 11, 25}, TimeOfDay{10, 0, 0}});
          const auto end = Clock::now();
          if (!loaded.ok() || !issuer.last_confirmation() ||
              !issuer.last_confirmation()->approved()) {
            std::fprintf(stderr, "load failed: %s\n",
                         loaded.ok() ? "not confirmed" : loaded.error().message.c_str());
            failed = true;
            return;
          }
          latencies[static_cast<std::size_t>(i)].push_back(
              std::chrono::duration<double, std::micro>(end - start).count());
        }
      });
    }
    for (auto& thread : threads) thread.join();
    *ok = !failed;
    std::vector<double> all;
    for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
    std::sort(all.begin(), all.end());
    return all;
  }

  server::Stats stats() const { return server_->stats(); }

 private:
  template <typename T>
  static T Take(Result<T> result, const char* what) {
    if (!result.ok()) {
      std::fprintf(stderr, "setup (%s): %s\n", what, result.error().message.c_str());
      std::exit(1);
    }
    return std::move(result).value();
  }
  template <typename T, typename E>
  static T Take(store::Expected<T, E> result, const char* what) {
    if (!result.ok()) {
      std::fprintf(stderr, "setup (%s): %s\n", what, result.error().message.c_str());
      std::exit(1);
    }
    return std::move(result).value();
  }
  static void Require(bool ok, const char* what) {
    if (!ok) {
      std::fprintf(stderr, "setup failed: %s\n", what);
      std::exit(1);
    }
  }

  fs::path dir_;
  std::unique_ptr<store::Database> database_;
  std::unique_ptr<store::Connection> connection_;
  std::unique_ptr<keys::KeyStore> host_keys_;
  std::unique_ptr<host::TerminalGateway> gateway_;
  std::unique_ptr<server::Server> server_;
  std::vector<std::unique_ptr<Terminal>> terminals_;
};

// User + system CPU time of the whole process so far.
double ProcessCpuSeconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const auto index = static_cast<std::size_t>(p * static_cast<double>(sorted.size() - 1));
  return sorted[index];
}

void RunLoads(benchmark::State& state, const std::string& url, int terminals) {
  const int per_terminal = EnvInt("MEDCARD_BENCH_LOADS", 30);
  LoadRig rig(url, terminals);
  for (auto _ : state) {
    bool ok = false;
    const server::Stats before = rig.stats();
    const double cpu_before = ProcessCpuSeconds();
    const auto start = Clock::now();
    auto latencies = rig.Run(terminals, per_terminal, &ok);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    const double cpu = ProcessCpuSeconds() - cpu_before;
    const server::Stats after = rig.stats();
    if (!ok) {
      state.SkipWithError("a load failed");
      return;
    }
    const auto loads = static_cast<double>(latencies.size());
    state.SetIterationTime(seconds);
    state.SetItemsProcessed(static_cast<std::int64_t>(latencies.size()));
    state.counters["p50_ms"] = Percentile(latencies, 0.50) / 1000.0;
    state.counters["p99_ms"] = Percentile(latencies, 0.99) / 1000.0;
    state.counters["terminals"] = terminals;
    const auto groups = static_cast<double>(after.groups - before.groups);
    state.counters["requests_per_group"] =
        groups > 0 ? static_cast<double>(after.frames_received - before.frames_received) / groups
                   : 0;
    // The host alone: its processing thread's time per load (both requests, the group's commit
    // included) and what that thread could do if terminals were never the wait.
    const auto handler_wall_us =
        static_cast<double>(after.handler_wall_us - before.handler_wall_us);
    state.counters["host_cpu_us_per_load"] =
        static_cast<double>(after.handler_cpu_us - before.handler_cpu_us) / loads;
    state.counters["host_wall_us_per_load"] = handler_wall_us / loads;
    state.counters["host_only_loads_per_s"] =
        handler_wall_us > 0 ? loads * 1e6 / handler_wall_us : 0;
    // Everything of this process per load: host, 100 simulated terminals and their cards.
    state.counters["process_cpu_us_per_load"] = cpu * 1e6 / loads;
    // The most this process could do on this machine's cores at that CPU cost, with no waiting
    // at all: where the loads/s above cannot go, whatever the host's own share.
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    state.counters["cpu_bound_loads_per_s"] = cpu > 0 ? loads * cores / cpu : 0;
  }
}

void BM_OnlineLoads_Sqlite_1Terminal(benchmark::State& state) { RunLoads(state, "", 1); }
void BM_OnlineLoads_Sqlite_ManyTerminals(benchmark::State& state) {
  RunLoads(state, "", EnvInt("MEDCARD_BENCH_TERMINALS", 100));
}
void BM_OnlineLoads_Postgres_ManyTerminals(benchmark::State& state) {
  const char* url = std::getenv("MEDCARD_BENCH_PG_URL");
  if (url == nullptr) {
    state.SkipWithError("set MEDCARD_BENCH_PG_URL to run against PostgreSQL");
    return;
  }
  RunLoads(state, url, EnvInt("MEDCARD_BENCH_TERMINALS", 100));
}

BENCHMARK(BM_OnlineLoads_Sqlite_1Terminal)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_OnlineLoads_Sqlite_ManyTerminals)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_OnlineLoads_Postgres_ManyTerminals)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace medcard

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  spdlog::set_level(spdlog::level::warn);  // refusals only: the figures stay readable
  medcard::bench::RateKeepingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.PrintRatio("SQLite loads/s: many terminals (group commit) / one terminal",
                      "BM_OnlineLoads_Sqlite_ManyTerminals", "BM_OnlineLoads_Sqlite_1Terminal");
  benchmark::Shutdown();
  return 0;
}
