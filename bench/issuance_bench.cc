// Personalisation time per card: the production issuer (keys only in a software key store,
// issuance log fsync'd) on a virtual card in process, and through pcscd + vpcd when a vpcd
// reader is there; baseline in the same run: the TEST issuer with clear keys
// (issuance::IssueTestCard). Also a PSAM. Card images in memory; the log on /dev/shm (tmpfs,
// so the figure is the issuer's work, not the disk) and on the current directory's disk.
#include <benchmark/benchmark.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "crypto/crypto.h"
#include "issuance/issuer.h"
#include "issuance/test_issuer.h"
#include "nvm/nvm.h"
#include "rate_reporter.h"
#include "reader/reader.h"

namespace medcard {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr char kPassphrase[] = "issuance bench passphrase";

fs::path Scratch(const char* what, bool tmpfs) {
  const fs::path base = tmpfs && fs::exists("/dev/shm") ? fs::path("/dev/shm") : fs::current_path();
  return base / ("medcard-issuance-bench-" + std::string(what) + "-" + std::to_string(getpid()));
}

// A test key store (the published test keys, so the baseline issues the same cards), its log
// and an issuer, in a scratch directory removed afterwards.
class Station {
 public:
  explicit Station(fs::path dir) : dir_(std::move(dir)) {
    fs::remove_all(dir_);
    ::setenv("MEDCARD_KEYSTORE_TEST_KDF", "fast", 1);  // store creation only
    store_ = std::move(keys::CreateSoftwareKeyStore((dir_ / "store").string(), kPassphrase, true))
                 .value();
    const auto& test_keys = issuance::TestKeySet::Embedded();
    for (const auto& role : issuance::TestKeySet::RequiredRoles()) {
      (void)store_->ImportTestKey(role, test_keys.MasterKey(role));
    }
    log_ = std::move(issuance::IssuanceLog::Open((dir_ / "log").string())).value();
    issuance::IssuanceConfig config;
    config.asn_prefix = "1100";
    config.psam_serial_prefix = "5000";
    issuer_ = std::make_unique<issuance::Issuer>(*store_, *log_, config, "bench");
    auto holder = issuance::ParseHolderJson(R"({
      "social_security_number": "11010519491231002X", "name": "张三", "sex": "male",
      "ethnicity": "01", "birthplace": "110105", "birth_date": "1949-12-31",
      "id_number": "11010519491231002X", "id_type": "resident_id",
      "insured_category": "retiree", "employer_unit_code": "91110105MA01",
      "pooling_area": "110100"})",
                                            Today());
    request_.holder = *holder;
    request_.pin = "135790";
  }
  ~Station() {
    issuer_.reset();
    log_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }

  std::shared_ptr<card::Card> Blank() {
    return std::move(issuance::ManufactureBlankCard(*store_,
                                                    std::make_unique<nvm::FaultInjectionMedium>(),
                                                    crypto::RandomBytes(8)))
        .value();
  }
  keys::KeyStore& store() { return *store_; }
  issuance::Issuer& issuer() { return *issuer_; }
  const issuance::CardIssueRequest& request() const { return request_; }

 private:
  fs::path dir_;
  std::unique_ptr<keys::KeyStore> store_;
  std::unique_ptr<issuance::IssuanceLog> log_;
  std::unique_ptr<issuance::Issuer> issuer_;
  issuance::CardIssueRequest request_;
};

void IssueCardsInProcess(benchmark::State& state, bool log_on_tmpfs) {
  Station station(Scratch("card", log_on_tmpfs));
  for (auto _ : state) {
    state.PauseTiming();  // the chip factory's part is not the station's
    reader::InProcessReader reader("station", station.Blank());
    state.ResumeTiming();
    auto issued = station.issuer().IssueCard(reader, station.request());
    if (!issued.ok()) {
      state.SkipWithError(issued.error().message.c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_IssueCardKeyStore(benchmark::State& state) { IssueCardsInProcess(state, true); }
BENCHMARK(BM_IssueCardKeyStore)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_IssueCardKeyStoreLogOnDisk(benchmark::State& state) { IssueCardsInProcess(state, false); }
BENCHMARK(BM_IssueCardKeyStoreLogOnDisk)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(100)
    ->UseRealTime();

// The baseline: the same personalisation with clear keys, no probe, no log.
void BM_IssueTestCardClearKeys(benchmark::State& state) {
  const auto& keys = issuance::TestKeySet::Embedded();
  std::uint64_t n = 0;
  for (auto _ : state) {
    Bytes asn = HexToBytes("1100");
    AppendU64(asn, ++n);
    auto card = issuance::IssueTestCard(keys, std::make_unique<nvm::FaultInjectionMedium>(),
                                        issuance::TestHolder(asn, "135790"));
    if (!card.ok()) {
      state.SkipWithError(card.error().message.c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_IssueTestCardClearKeys)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_IssuePsamKeyStore(benchmark::State& state) {
  Station station(Scratch("psam", true));
  for (auto _ : state) {
    state.PauseTiming();
    const Bytes chip = crypto::RandomBytes(8);
    std::shared_ptr<psam::Psam> psam =
        std::move(issuance::ManufactureBlankPsam(
                      station.store(), std::make_unique<nvm::FaultInjectionMedium>(), chip))
            .value();
    reader::InProcessReader reader("station", psam);
    state.ResumeTiming();
    issuance::PsamIssueRequest request;
    request.terminal_number = HexToBytes("000000000001");
    request.chip_serial = chip;
    auto issued = station.issuer().IssuePsam(reader, request);
    if (!issued.ok()) {
      state.SkipWithError(issued.error().message.c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_IssuePsamKeyStore)->Unit(benchmark::kMillisecond)->UseRealTime();

// Through pcscd + vpcd: each blank card is served into "Virtual PCD 00 00" from this process.
// Bounded: 10 cards. Skipped (with the reason) when pcscd or vpcd is not there.
void BM_IssueCardThroughPcsc(benchmark::State& state) {
  auto readers = reader::ListReaders();
  const std::string name = reader::VpcdReaderName(0);
  if (!readers.ok() || std::find(readers->begin(), readers->end(), name) == readers->end()) {
    state.SkipWithError("no pcscd with vpcd (\"Virtual PCD 00 00\"): nothing to measure");
    return;
  }
  // The tests' lock on the two vpcd slots (tests/support/pcscd_fixture.h).
  const int lock = ::open("/tmp/medcard-vpcd.lock", O_RDWR | O_CREAT, 0666);
  if (lock < 0 || ::flock(lock, LOCK_EX) != 0) {
    state.SkipWithError("cannot lock /tmp/medcard-vpcd.lock");
    return;
  }
  Station station(Scratch("pcsc", true));
  for (auto _ : state) {
    state.PauseTiming();
    std::shared_ptr<card::Card> card = station.Blank();
    reader::VpcdBridge bridge(card, 0);
    std::thread serving([&bridge] { (void)bridge.Run(); });
    auto pcsc = reader::PcscReader::Open(name);
    const auto waited = pcsc.ok() ? (*pcsc)->WaitForCard(10s) : Result<bool>(false);
    const bool present = waited.ok() && *waited;
    state.ResumeTiming();
    Result<issuance::IssuedCard> issued = MakeError("no card in " + name);
    if (present) issued = station.issuer().IssueCard(**pcsc, station.request());
    state.PauseTiming();
    if (pcsc.ok()) (void)(*pcsc)->Disconnect();
    bridge.Stop();
    serving.join();
    if (pcsc.ok()) (void)(*pcsc)->WaitForRemoval(5s);
    state.ResumeTiming();
    if (!issued.ok()) {
      state.SkipWithError(issued.error().message.c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  ::flock(lock, LOCK_UN);
  ::close(lock);
}
BENCHMARK(BM_IssueCardThroughPcsc)->Unit(benchmark::kMillisecond)->Iterations(10)->UseRealTime();

}  // namespace
}  // namespace medcard

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  medcard::bench::RateKeepingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  reporter.PrintRatio("key-store issuance / clear-key test issuance", "BM_IssueCardKeyStore",
                      "BM_IssueTestCardClearKeys");
  reporter.PrintRatio("log fsync'd on disk / on tmpfs", "BM_IssueCardKeyStoreLogOnDisk",
                      "BM_IssueCardKeyStore");
  reporter.PrintRatio("in process / through pcscd+vpcd", "BM_IssueCardKeyStore",
                      "BM_IssueCardThroughPcsc");
  return 0;
}
