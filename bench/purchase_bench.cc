// A complete offline purchase in process: SELECT ... DEBIT on the card OS plus the PSAM's MAC1
// and MAC2 (terminal::Purchase: READ terminal number, SELECT PSAM DF, INITIALIZE FOR PURCHASE,
// INIT_SAM_FOR_PURCHASE, DEBIT FOR PURCHASE, CREDIT_SAM_FOR_PURCHASE; ED adds SELECT + VERIFY).
// Card and PSAM images on tmpfs without fsync, and on disk with fsync after every commit.
// Baseline in the same run: the bare crypto of one purchase (DPK derivation, SESPK, MAC1, MAC2,
// TAC) without any card OS — the ratio is what the card OS, APDUs and persistence cost.
// Target (issue 2): >= 20,000 purchases/s on one core on tmpfs.
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "crypto/crypto.h"
#include "issuance/test_issuer.h"
#include "nvm/nvm.h"
#include "rate_reporter.h"
#include "reader/reader.h"
#include "terminal/purse.h"

namespace medcard {
namespace {

namespace fs = std::filesystem;

// A card + PSAM pair in image files under `dir`, reissued before the card's offline serial
// (16 bits) runs out.
class Rig {
 public:
  Rig(fs::path dir, nvm::SyncMode sync) : dir_(std::move(dir)), sync_(sync) { Issue(); }
  ~Rig() { fs::remove_all(dir_); }

  bool Purchase(terminal::Wallet wallet) {
    if (++purchases_ >= 60000) Issue();  // REQUIRES: the caller paused timing (rare)
    if (wallet == terminal::Wallet::kEd) {
      if (!terminal::SelectMedicalApplication(*card_reader_).ok()) return false;
      if (!terminal::VerifyPin(*card_reader_, "123456").ok()) return false;
    }
    return terminal::Purchase(*card_reader_, *psam_reader_, app_,
                              {wallet, 1, Date{2026, 11, 25}, TimeOfDay{12, 0, 0}})
        .ok();
  }
  bool NeedsReissue() const { return purchases_ + 1 >= 60000; }

 private:
  void Issue() {
    card_reader_.reset();
    psam_reader_.reset();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    const auto& keys = issuance::TestKeySet::Embedded();
    Bytes asn = HexToBytes("11000000000000009999");
    std::shared_ptr<card::Card> card =
        std::move(issuance::IssueTestCard(
                      keys,
                      std::move(nvm::OpenFileMedium((dir_ / "card.img").string(), sync_).value()),
                      issuance::TestHolder(asn, "123456")))
            .value();
    std::shared_ptr<psam::Psam> psam =
        std::move(issuance::IssueTestPsam(
                      keys,
                      std::move(nvm::OpenFileMedium((dir_ / "psam.img").string(), sync_).value()),
                      HexToBytes("50000000000000009999"), HexToBytes("000000009999")))
            .value();
    card_reader_ = std::make_unique<reader::InProcessReader>("card", card);
    psam_reader_ = std::make_unique<reader::InProcessReader>("psam", psam);
    (void)card_reader_->Connect();
    (void)psam_reader_->Connect();
    app_ = terminal::SelectMedicalApplication(*card_reader_).value();
    issuance::TestIssuerHost issuer(keys);
    (void)terminal::VerifyPin(*card_reader_, "123456");
    for (auto w : {terminal::Wallet::kEd, terminal::Wallet::kEp}) {
      auto loaded = terminal::Load(
          *card_reader_, issuer, app_,
          {w, 90000, HexToBytes("000000009999"), Date{2026, 11, 25}, TimeOfDay{8, 0, 0}});
      if (!loaded.ok()) std::fprintf(stderr, "load failed: %s\n", loaded.error().message.c_str());
    }
    purchases_ = 0;
  }

  fs::path dir_;
  nvm::SyncMode sync_;
  std::unique_ptr<reader::Reader> card_reader_, psam_reader_;
  terminal::ApplicationData app_;
  int purchases_ = 0;
};

fs::path TmpfsDir() {
  fs::path base = fs::exists("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
  return base / ("medcard-bench-" + std::to_string(getpid()));
}
fs::path DiskDir() {
  return fs::current_path() / ("medcard-bench-disk-" + std::to_string(getpid()));
}

void RunPurchases(benchmark::State& state, Rig& rig, terminal::Wallet wallet) {
  for (auto _ : state) {
    if (rig.NeedsReissue()) {
      state.PauseTiming();
      rig.Purchase(wallet);
      state.ResumeTiming();
      continue;
    }
    if (!rig.Purchase(wallet)) {
      state.SkipWithError("purchase failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_PurchaseEpTmpfs(benchmark::State& state) {
  Rig rig(TmpfsDir(), nvm::SyncMode::kNone);
  RunPurchases(state, rig, terminal::Wallet::kEp);
}
BENCHMARK(BM_PurchaseEpTmpfs)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_PurchaseEdWithPinTmpfs(benchmark::State& state) {
  Rig rig(TmpfsDir(), nvm::SyncMode::kNone);
  RunPurchases(state, rig, terminal::Wallet::kEd);
}
BENCHMARK(BM_PurchaseEdWithPinTmpfs)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_PurchaseEpFsyncDisk(benchmark::State& state) {
  Rig rig(DiskDir(), nvm::SyncMode::kFsync);
  RunPurchases(state, rig, terminal::Wallet::kEp);
}
BENCHMARK(BM_PurchaseEpFsyncDisk)->Unit(benchmark::kMicrosecond)->Iterations(300)->UseRealTime();

// The crypto a purchase cannot avoid, with nothing else.
void BM_PurchaseCryptoOnly(benchmark::State& state) {
  Bytes mpk = issuance::TestKeySet::Embedded().MasterKey("purchase");
  Bytes mtk = issuance::TestKeySet::Embedded().MasterKey("tac");
  Bytes factor = HexToBytes("0000000000009999");
  Bytes random = HexToBytes("11223344"), serial = HexToBytes("0001"), tts = HexToBytes("00000001");
  Bytes mac1_data = HexToBytes("000000010600000000999920261125120000");
  Bytes tac_data = HexToBytes("0000000106000000009999000000012026112512000000");
  for (auto _ : state) {
    Bytes dpk = crypto::Diversify(mpk, factor).value();  // PSAM
    Bytes sespk = crypto::PurchaseSessionKey(dpk, random, serial, tts).value();
    benchmark::DoNotOptimize(crypto::PbocMac(sespk, mac1_data).value());               // MAC1
    benchmark::DoNotOptimize(crypto::PbocMac(sespk, HexToBytes("00000001")).value());  // MAC2
    Bytes dtk = crypto::Diversify(mtk, factor).value();  // card holds DTK; host derives it
    benchmark::DoNotOptimize(crypto::PbocMac(crypto::TacKey(dtk).value(), tac_data).value());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PurchaseCryptoOnly)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace medcard

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  medcard::bench::RateKeepingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  const double ep = reporter.Rate("BM_PurchaseEpTmpfs");
  if (ep > 0)
    std::printf("EP purchases/s on tmpfs = %.0f (target >= 20000: %s)\n", ep,
                ep >= 20000 ? "met" : "NOT met");
  reporter.PrintRatio("purchase / bare purchase crypto", "BM_PurchaseEpTmpfs",
                      "BM_PurchaseCryptoOnly");
  reporter.PrintRatio("purchase with fsync / on tmpfs", "BM_PurchaseEpFsyncDisk",
                      "BM_PurchaseEpTmpfs");
  return 0;
}
