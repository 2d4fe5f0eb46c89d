// Issue 5's POS benchmark: a pos::Terminal doing offline ED and EP purchases with a TEST card and
// a TEST PSAM (a) in in-process readers — the baseline — and (b) through pcscd + vsmartcard-vpcd:
// the card and PSAM served by reader::VpcdBridge into "Virtual PCD 00 00" / "00 01", the
// terminal on reader::PcscReader. Each purchase is timed alone (manual time); printed per
// variant: p50/p99 latency, APDUs per purchase (card and PSAM apart, as the terminal sent them
// and as they reached the card) beside the PBOC minimum, and the ratio pcsc / in-process.
//
// The PBOC minimum (shared/spec/pboc-ed-ep.md): card — SELECT the ADF (its FCI carries 9F0C, the
// copy of SFI 15, so no READ BINARY), VERIFY (ED only: the cardholder's PIN), INITIALIZE FOR
// PURCHASE, DEBIT FOR PURCHASE; ED 4, EP 3. PSAM — INIT_SAM_FOR_PURCHASE (MAC1) and
// CREDIT_SAM_FOR_PURCHASE (MAC2): 2, once its purchase DF is selected (it stays selected).
//
// The journal (SQLite, synchronous FULL: pending, completed and PSAM-credited are three durable
// commits per purchase) is on disk as a terminal has it, and on tmpfs to show what the readers
// alone cost.
// The pcscd variants need pcscd running with vpcd (`pcscd -f &`); without it they are skipped
// with the reason. They take /tmp/medcard-vpcd.lock, the lock the PC/SC tests take, so a test
// binary bridging cards into the same slots waits instead of colliding.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "issuance/test_issuer.h"
#include "nvm/nvm.h"
#include "pos/journal.h"
#include "pos/pos.h"
#include "rate_reporter.h"
#include "reader/reader.h"
#include "terminal/purse.h"

namespace medcard {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using terminal::Wallet;

constexpr char kPin[] = "123456";
constexpr char kVpcdLock[] = "/tmp/medcard-vpcd.lock";
constexpr int kPurchases = 200;  // timed purchases per variant: p99 is the 2nd slowest
const Bytes kAsn = HexToBytes("11000000000000005501");
const Bytes kPsamSerial = HexToBytes("50000000000000005501");
const Bytes kTerminalNumber = HexToBytes("000000005501");
const pos::DateTime kNow{{2026, 11, 25}, {10, 0, 0}};

int MinimumCardApdus(Wallet wallet) { return wallet == Wallet::kEd ? 4 : 3; }
constexpr int kMinimumPsamApdus = 2;

// The command's name for the printed list; a SELECT names the PSE when it selects it.
std::string CommandName(ByteView command) {
  const std::uint8_t cla = command[0], ins = command[1];
  static const std::string kPse = "1PAY.SYS.DDF01";
  switch (ins) {
    case 0xA4:
      return command.size() >= 5 + kPse.size() && command[4] == kPse.size() &&
                     std::equal(kPse.begin(), kPse.end(), command.begin() + 5)
                 ? "SELECT PSE"
                 : "SELECT by name";
    case 0x20:
      return "VERIFY";
    case 0xB0:
      return "READ BINARY";
    case 0xC0:
      return "GET RESPONSE";
    default:
      break;
  }
  if (cla == 0x80) {
    switch (ins) {
      case 0x50:
        return "INITIALIZE FOR PURCHASE";
      case 0x54:
        return "DEBIT FOR PURCHASE";
      case 0x70:
        return "INIT_SAM_FOR_PURCHASE";
      case 0x72:
        return "CREDIT_SAM_FOR_PURCHASE";
      default:
        break;
    }
  }
  char hex[16];
  std::snprintf(hex, sizeof hex, "%02X %02X", cla, ins);
  return hex;
}

// The APDUs a reader carried for the terminal (card or PSAM side), with the commands of the
// last purchase by name.
class CountingReader final : public reader::Reader {
 public:
  explicit CountingReader(reader::Reader& inner) : inner_(inner) {}
  int count() const { return count_; }
  void StartPurchase() { last_.clear(); }
  const std::vector<std::string>& last() const { return last_; }

  std::string Name() const override { return inner_.Name(); }
  Result<Bytes> Connect() override { return inner_.Connect(); }
  Status Disconnect() override { return inner_.Disconnect(); }
  bool Connected() const override { return inner_.Connected(); }
  Result<bool> CardPresent() override { return inner_.CardPresent(); }
  Result<bool> WaitForCard(std::chrono::milliseconds t) override { return inner_.WaitForCard(t); }
  Result<bool> WaitForRemoval(std::chrono::milliseconds t) override {
    return inner_.WaitForRemoval(t);
  }
  Result<Bytes> Transmit(ByteView command) override {
    ++count_;
    if (command.size() >= 2) last_.push_back(CommandName(command));
    return inner_.Transmit(command);
  }
  Result<Bytes> PowerCycle(reader::Reset kind) override { return inner_.PowerCycle(kind); }
  Status BeginTransaction() override { return inner_.BeginTransaction(); }
  Status EndTransaction() override { return inner_.EndTransaction(); }

 private:
  reader::Reader& inner_;
  int count_ = 0;
  std::vector<std::string> last_;
};

// The APDUs that reached the card itself: what pcscd and vpcd add (or not) on the way shows as
// the difference to the terminal's count. Transmit runs on the vpcd bridge's thread.
class CountingIcc final : public iso7816::Icc {
 public:
  explicit CountingIcc(std::shared_ptr<iso7816::Icc> inner) : inner_(std::move(inner)) {}
  int count() const { return count_.load(); }
  Bytes PowerOn() override { return inner_->PowerOn(); }
  void PowerOff() override { inner_->PowerOff(); }
  Bytes Atr() const override { return inner_->Atr(); }
  Bytes Transmit(ByteView command) override {
    ++count_;
    return inner_->Transmit(command);
  }

 private:
  std::shared_ptr<iso7816::Icc> inner_;
  std::atomic<int> count_{0};
};

// A TEST card with both wallets loaded (in-process, before any reader of the rig sees it) and
// a TEST PSAM of kTerminalNumber. The card's image is in memory: the card's own write cost is
// the same in every variant.
struct Chips {
  std::shared_ptr<CountingIcc> card, psam;
  std::string error;  // empty when issued and loaded
};
Chips IssueChips() {
  Chips chips;
  const auto& keys = issuance::TestKeySet::Embedded();
  auto card = issuance::IssueTestCard(keys, std::make_unique<nvm::FaultInjectionMedium>(),
                                      issuance::TestHolder(kAsn, kPin));
  auto psam = issuance::IssueTestPsam(keys, std::make_unique<nvm::FaultInjectionMedium>(),
                                      kPsamSerial, kTerminalNumber);
  if (!card.ok() || !psam.ok()) {
    chips.error =
        "issuing the test card/PSAM: " + (card.ok() ? psam.error().message : card.error().message);
    return chips;
  }
  std::shared_ptr<iso7816::Icc> card_icc = std::move(card).value();
  reader::InProcessReader loader("loader", card_icc);
  issuance::TestIssuerHost issuer(keys);
  auto app = loader.Connect().ok() ? terminal::SelectMedicalApplication(loader)
                                   : Result<terminal::ApplicationData>(MakeError("no ATR"));
  if (!app.ok()) {
    chips.error = "selecting the test card: " + app.error().message;
    return chips;
  }
  if (Status verified = terminal::VerifyPin(loader, kPin); !verified.ok()) {
    chips.error = "VERIFY: " + verified.error().message;
    return chips;
  }
  // The EP holds at most 1,000.00 yuan; a purchase is 0.01, so either lasts every iteration.
  for (auto [wallet, amount] : {std::pair{Wallet::kEd, 500000u}, std::pair{Wallet::kEp, 100000u}}) {
    auto loaded = terminal::Load(loader, issuer, *app,
                                 {wallet, amount, kTerminalNumber, kNow.date, {8, 0, 0}});
    if (!loaded.ok()) {
      chips.error = "loading the test card: " + loaded.error().message;
      return chips;
    }
  }
  loader.RemoveCard();
  chips.card = std::make_shared<CountingIcc>(std::move(card_icc));
  chips.psam =
      std::make_shared<CountingIcc>(std::shared_ptr<iso7816::Icc>(std::move(psam).value()));
  return chips;
}

enum class Path { kInProcess, kPcscd };
enum class JournalOn { kDisk, kTmpfs };

fs::path JournalDir(JournalOn where) {
  const fs::path base = where == JournalOn::kTmpfs && fs::exists("/dev/shm") ? fs::path("/dev/shm")
                                                                             : fs::current_path();
  return base / ("medcard-pos-bench-" + std::to_string(getpid()));
}

// /tmp/medcard-vpcd.lock while it lives (see the header comment).
class VpcdLock {
 public:
  VpcdLock() = default;
  VpcdLock(const VpcdLock&) = delete;
  VpcdLock& operator=(const VpcdLock&) = delete;
  ~VpcdLock() {
    if (fd_ >= 0) close(fd_);  // releases the flock
  }
  Status Acquire(std::chrono::seconds patience) {
    fd_ = open(kVpcdLock, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd_ < 0) return MakeError(std::string("cannot open ") + kVpcdLock);
    const auto deadline = std::chrono::steady_clock::now() + patience;
    while (flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      if (std::chrono::steady_clock::now() >= deadline) {
        return MakeError(std::string("the vpcd slots stayed busy: another program holds ") +
                         kVpcdLock);
      }
      std::this_thread::sleep_for(50ms);
    }
    return Status::Ok();
  }

 private:
  int fd_ = -1;
};

// A chip in a vpcd slot while this lives, served from its own thread.
class VpcdSlot {
 public:
  VpcdSlot(std::shared_ptr<iso7816::Icc> chip, unsigned slot)
      : slot_(slot), bridge_(std::move(chip), slot), thread_([this] { (void)bridge_.Run(); }) {}
  VpcdSlot(const VpcdSlot&) = delete;
  VpcdSlot& operator=(const VpcdSlot&) = delete;
  ~VpcdSlot() {
    bridge_.Stop();
    thread_.join();
    // The next rig finds the slot empty.
    if (auto r = reader::PcscReader::Open(reader::VpcdReaderName(slot_)); r.ok()) {
      (void)(*r)->WaitForRemoval(5s);
    }
  }

 private:
  unsigned slot_;
  reader::VpcdBridge bridge_;
  std::thread thread_;
};

// Why the pcscd variants cannot run here, or "" when pcscd lists both empty vpcd slots.
std::string PcscdUnavailable() {
  auto readers = reader::ListReaders();
  if (!readers.ok()) {
    return "pcscd is not running (start it with `pcscd -f &`): " + readers.error().message;
  }
  for (unsigned slot : {0u, 1u}) {
    const std::string name = reader::VpcdReaderName(slot);
    if (std::find(readers->begin(), readers->end(), name) == readers->end()) {
      return "pcscd lists no '" + name + "' reader: install vsmartcard-vpcd and restart pcscd";
    }
    auto r = reader::PcscReader::Open(name);
    if (!r.ok()) return r.error().message;
    auto present = (*r)->CardPresent();
    if (!present.ok()) return name + ": " + present.error().message;
    if (*present) return "another program keeps a card in '" + name + "'";
  }
  return "";
}

// The terminal and its two readers, over either path.
class Rig {
 public:
  // On failure, error() says why; nothing else may be used then.
  Rig(Path path, JournalOn journal_on) : dir_(JournalDir(journal_on)) {
    chips_ = IssueChips();
    if (!chips_.error.empty()) {
      error_ = chips_.error;
      return;
    }
    if (path == Path::kInProcess) {
      card_reader_ = std::make_unique<reader::InProcessReader>("card", chips_.card);
      psam_reader_ = std::make_unique<reader::InProcessReader>("psam", chips_.psam);
    } else if (!OpenPcsc()) {
      return;
    }
    card_ = std::make_unique<CountingReader>(*card_reader_);
    psam_ = std::make_unique<CountingReader>(*psam_reader_);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    auto journal = pos::Journal::Open((dir_ / "pos.db").string());
    if (!journal.ok()) {
      error_ = "journal: " + journal.error().message;
      return;
    }
    journal_ = std::move(journal).value();
    terminal_ = std::make_unique<pos::Terminal>(
        pos::TerminalIdentity{"898440154110001", "POS05501", "Bench Pharmacy", kTerminalNumber,
                              "H1"},
        *card_, *psam_, *journal_, nullptr, [] { return kNow; });
  }
  Rig(const Rig&) = delete;
  Rig& operator=(const Rig&) = delete;
  ~Rig() {
    terminal_.reset();
    journal_.reset();
    if (card_reader_) (void)card_reader_->Disconnect();
    if (psam_reader_) (void)psam_reader_->Disconnect();
    card_reader_.reset();
    psam_reader_.reset();
    card_slot_.reset();
    psam_slot_.reset();
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  const std::string& error() const { return error_; }
  pos::Terminal& terminal() { return *terminal_; }
  CountingReader& card() { return *card_; }
  CountingReader& psam() { return *psam_; }
  const Chips& chips() const { return chips_; }

 private:
  bool OpenPcsc() {
    if (Status locked = lock_.Acquire(60s); !locked.ok()) {
      error_ = locked.error().message;
      return false;
    }
    if (error_ = PcscdUnavailable(); !error_.empty()) return false;
    card_slot_ = std::make_unique<VpcdSlot>(chips_.card, 0);
    psam_slot_ = std::make_unique<VpcdSlot>(chips_.psam, 1);
    for (unsigned slot : {0u, 1u}) {
      auto r = reader::PcscReader::Open(reader::VpcdReaderName(slot));
      if (!r.ok()) {
        error_ = r.error().message;
        return false;
      }
      auto present = (*r)->WaitForCard(5s);
      if (!present.ok() || !*present) {
        error_ = "the bridged chip did not appear in '" + reader::VpcdReaderName(slot) + "'";
        return false;
      }
      (slot == 0 ? card_reader_ : psam_reader_) = std::move(r).value();
    }
    return true;
  }

  fs::path dir_;
  std::string error_;
  Chips chips_;
  VpcdLock lock_;
  std::unique_ptr<VpcdSlot> card_slot_, psam_slot_;
  std::unique_ptr<reader::Reader> card_reader_, psam_reader_;
  std::unique_ptr<CountingReader> card_, psam_;
  std::unique_ptr<pos::Journal> journal_;
  std::unique_ptr<pos::Terminal> terminal_;
};

struct Figures {
  double p50_ms = 0, p99_ms = 0;
  double card_apdus = 0, psam_apdus = 0;  // per purchase, as the terminal sent them
  double card_apdus_at_chip = 0, psam_apdus_at_chip = 0;
  std::vector<std::string> card_commands, psam_commands;  // the last purchase's
};
std::map<std::string, Figures>& Results() {
  static std::map<std::string, Figures> results;
  return results;
}

std::string VariantName(Path path, Wallet wallet, JournalOn journal_on) {
  return std::string("PosPurchase/") + (path == Path::kInProcess ? "in_process" : "pcscd") + "/" +
         terminal::WalletName(wallet) + "/journal_" +
         (journal_on == JournalOn::kDisk ? "disk" : "tmpfs");
}

void RunPurchases(benchmark::State& state, Path path, Wallet wallet, JournalOn journal_on) {
  Rig rig(path, journal_on);
  if (!rig.error().empty()) {
    state.SkipWithError(rig.error().c_str());
    return;
  }
  const pos::PurchaseOrder order{wallet, 1, std::string(kPin)};
  // Untimed: the first purchase also connects both readers (SCardConnect for pcscd).
  auto first = rig.terminal().Purchase(order);
  if (!first.ok()) {
    state.SkipWithError(("first purchase: " + first.error().message).c_str());
    return;
  }
  std::uint32_t expected_balance = first->balance_after;
  const int card_before = rig.card().count(), psam_before = rig.psam().count();
  const int card_chip_before = rig.chips().card->count();
  const int psam_chip_before = rig.chips().psam->count();
  std::vector<double> ms;
  ms.reserve(kPurchases);
  for (auto _ : state) {
    rig.card().StartPurchase();
    rig.psam().StartPurchase();
    const auto start = std::chrono::steady_clock::now();
    auto receipt = rig.terminal().Purchase(order);
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    state.SetIterationTime(took.count());
    ms.push_back(took.count() * 1000);
    --expected_balance;
    if (!receipt.ok() || receipt->balance_after != expected_balance) {
      state.SkipWithError(receipt.ok() ? "the balance after a purchase is not 0.01 less"
                                       : ("purchase: " + receipt.error().message).c_str());
      return;
    }
  }
  const auto n = static_cast<double>(ms.size());
  std::sort(ms.begin(), ms.end());
  Figures f;
  f.p50_ms = ms[ms.size() / 2];
  f.p99_ms = ms[std::min(ms.size() - 1, ms.size() * 99 / 100)];
  f.card_apdus = (rig.card().count() - card_before) / n;
  f.psam_apdus = (rig.psam().count() - psam_before) / n;
  f.card_apdus_at_chip = (rig.chips().card->count() - card_chip_before) / n;
  f.psam_apdus_at_chip = (rig.chips().psam->count() - psam_chip_before) / n;
  f.card_commands = rig.card().last();
  f.psam_commands = rig.psam().last();
  state.counters["p50_ms"] = f.p50_ms;
  state.counters["p99_ms"] = f.p99_ms;
  state.counters["card_apdus"] = f.card_apdus;
  state.counters["card_min"] = MinimumCardApdus(wallet);
  state.counters["psam_apdus"] = f.psam_apdus;
  state.counters["psam_min"] = kMinimumPsamApdus;
  state.SetItemsProcessed(state.iterations());
  Results()[VariantName(path, wallet, journal_on)] = std::move(f);
}

void RegisterAll() {
  for (JournalOn journal_on : {JournalOn::kDisk, JournalOn::kTmpfs}) {
    for (Wallet wallet : {Wallet::kEd, Wallet::kEp}) {
      for (Path path : {Path::kInProcess, Path::kPcscd}) {
        benchmark::RegisterBenchmark(
            VariantName(path, wallet, journal_on).c_str(),
            [=](benchmark::State& state) { RunPurchases(state, path, wallet, journal_on); })
            ->Iterations(kPurchases)
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);
      }
    }
  }
}

std::string Joined(const std::vector<std::string>& commands) {
  std::string out;
  for (const std::string& c : commands) out += (out.empty() ? "" : ", ") + c;
  return out;
}

void PrintSummary(const bench::RateKeepingReporter& reporter) {
  std::printf("\nAPDUs per purchase (terminal side; reaching the chip) beside the PBOC minimum:\n");
  for (const auto& [name, f] : Results()) {
    const Wallet wallet = name.find("/ED/") != std::string::npos ? Wallet::kEd : Wallet::kEp;
    std::printf("  %-40s card %.2f (%.2f at the card; minimum %d)  PSAM %.2f (%.2f; minimum %d)\n",
                name.c_str(), f.card_apdus, f.card_apdus_at_chip, MinimumCardApdus(wallet),
                f.psam_apdus, f.psam_apdus_at_chip, kMinimumPsamApdus);
  }
  for (const char* wallet : {"ED", "EP"}) {
    const auto it =
        Results().find(std::string("PosPurchase/in_process/") + wallet + "/journal_disk");
    if (it == Results().end()) continue;
    std::printf("  %s card commands:  %s\n  %s PSAM commands:  %s\n", wallet,
                Joined(it->second.card_commands).c_str(), wallet,
                Joined(it->second.psam_commands).c_str());
  }
  std::printf(
      "\nLatency per purchase, p50 / p99 (ms), and pcscd / in-process. Compare the readers\n"
      "on the tmpfs rows: on disk the journal's fsyncs dominate, and in a VM an fsync can\n"
      "wait for a timer tick when nothing else wakes the CPU (see docs/pos.md):\n");
  for (const char* journal : {"disk", "tmpfs"}) {
    for (const char* wallet : {"ED", "EP"}) {
      const std::string suffix = std::string("/") + wallet + "/journal_" + journal;
      const auto base = Results().find("PosPurchase/in_process" + suffix);
      const auto pcsc = Results().find("PosPurchase/pcscd" + suffix);
      if (base == Results().end()) continue;
      std::printf("  %s, journal on %-5s in-process %7.3f / %7.3f", wallet, journal,
                  base->second.p50_ms, base->second.p99_ms);
      if (pcsc == Results().end()) {
        std::printf("   pcscd n/a (skipped)\n");
        continue;
      }
      std::printf("   pcscd %7.3f / %7.3f   ratio p50 %.1fx, p99 %.1fx\n", pcsc->second.p50_ms,
                  pcsc->second.p99_ms, pcsc->second.p50_ms / base->second.p50_ms,
                  pcsc->second.p99_ms / base->second.p99_ms);
      reporter.PrintRatio(("  purchases/s pcscd / in-process" + suffix).c_str(),
                          "PosPurchase/pcscd" + suffix, "PosPurchase/in_process" + suffix);
    }
  }
}

}  // namespace
}  // namespace medcard

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  medcard::RegisterAll();
  medcard::bench::RateKeepingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  medcard::PrintSummary(reporter);
  return 0;
}
