// The issue's process-kill test through pcscd + vpcd: the card is served by `medcard card attach`
// (vpcd slot 0) and the PSAM by `medcard psam attach` (slot 1), each in its own process whose
// state is written through to its image; `medcard pos purchase` talks to them through PC/SC and
// is SIGKILLed at random moments. `pos recover` then completes or voids each torn purchase
// exactly once, and the card's balance, the journal and the PSAM's totals agree to the fen.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <thread>

#include "card/card.h"
#include "cli_run.h"
#include "issuance/test_issuer.h"
#include "medcard_processes.h"
#include "nvm/nvm.h"
#include "pcscd_fixture.h"
#include "pos/journal.h"
#include "psam/psam.h"
#include "reader/reader.h"
#include "terminal/purse.h"
#include "test_database.h"

namespace medcard {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

[[maybe_unused]] auto* const kPcscd = test_support::RegisterPcscdEnvironment();

constexpr char kAsn[] = "11000000000000000043";
constexpr char kTerminalNumber[] = "000000000102";
constexpr char kPsamSerial[] = "50000000000000000102";
constexpr std::uint32_t kLoaded = 1000;  // fen on the EP

TEST(PosPcscKill, PurchaseKilledThroughPcscIsRecoveredExactlyOnce) {
  const fs::path dir = test_support::NewTempDir("medcard-pos-pcsc");
  const std::string card_image = (dir / "card.img").string();
  const std::string psam_image = (dir / "psam.img").string();
  const auto& keys = issuance::TestKeySet::Embedded();
  {
    // The card, loaded with the test issuer, and the PSAM, as image files.
    auto medium = nvm::OpenFileMedium(card_image);
    ASSERT_TRUE(medium.ok()) << medium.error().message;
    auto card = issuance::IssueTestCard(keys, std::move(medium).value(),
                                        issuance::TestHolder(HexToBytes(kAsn), "123456"));
    ASSERT_TRUE(card.ok()) << card.error().message;
    std::shared_ptr<card::Card> shared = std::move(card).value();
    reader::InProcessReader reader("card", shared);
    ASSERT_TRUE(reader.Connect().ok());
    auto app = terminal::SelectMedicalApplication(reader);
    ASSERT_TRUE(app.ok()) << app.error().message;
    ASSERT_TRUE(terminal::VerifyPin(reader, "123456").ok());
    issuance::TestIssuerHost issuer(keys);
    auto loaded = terminal::Load(
        reader, issuer, *app,
        {terminal::Wallet::kEp, kLoaded, HexToBytes(kTerminalNumber), Today(), Now()});
    ASSERT_TRUE(loaded.ok()) << loaded.error().message;
    auto psam_medium = nvm::OpenFileMedium(psam_image);
    ASSERT_TRUE(psam_medium.ok());
    ASSERT_TRUE(issuance::IssueTestPsam(keys, std::move(psam_medium).value(),
                                        HexToBytes(kPsamSerial), HexToBytes(kTerminalNumber))
                    .ok());
  }
  std::ofstream(dir / "pos.json") << json{
      {"card_reader", reader::VpcdReaderName(0)},
      {"psam_reader", reader::VpcdReaderName(1)},
      {"merchant_id", "123456789012345"},
      {"terminal_id", "T0000102"},
      {"journal", "pos-journal.db"}}.dump();
  const std::string config = (dir / "pos.json").string();
  auto pos = [&](const std::string& args, std::optional<std::string> input = {}) {
    return test_support::RunCli({MEDCARD_CLI, "", "pos " + args + " --config " + config, input},
                                dir);
  };

  int killed = 0, pending_seen = 0, rounds = 0;
  std::map<std::string, int> outcomes;
  {
    test_support::AttachedImage card("card", card_image, 0, dir);
    test_support::AttachedImage psam("psam", psam_image, 1, dir);
    ASSERT_TRUE(card.WaitInserted());
    ASSERT_TRUE(psam.WaitInserted());

    const auto started = std::chrono::steady_clock::now();
    auto first = pos("purchase --ep --amount 0.01");
    ASSERT_EQ(first.exit_code, 0) << first.err;
    const auto whole = std::chrono::duration_cast<std::chrono::microseconds>(
                           std::chrono::steady_clock::now() - started)
                           .count();
    auto watcher = pos::Journal::Open((dir / "pos-journal.db").string());
    ASSERT_TRUE(watcher.ok()) << watcher.error().message;
    std::mt19937 random(std::random_device{}());
    std::uniform_int_distribution<std::int64_t> delay_us(whole / 5, whole + whole / 10);
    for (; rounds < 40; ++rounds) {
      // Past the card's 10-record log too: the terminal still tells a purchase that never
      // reached DEBIT by the newest debit's serial.
      auto completed = (*watcher)->Purchases(pos::PurchaseState::kCompleted);
      ASSERT_TRUE(completed.ok());
      if (completed->size() >= 14) break;
      const pid_t pid = ::fork();
      if (pid == 0) {
        const int null = ::open("/dev/null", O_RDWR);
        ::dup2(null, 0);
        ::dup2(null, 1);
        ::dup2(null, 2);
        ::execl(MEDCARD_CLI, "medcard", "pos", "purchase", "--ep", "--amount", "0.01", "--config",
                config.c_str(), static_cast<char*>(nullptr));
        ::_exit(127);
      }
      if (rounds % 2 == 0) {
        std::this_thread::sleep_for(std::chrono::microseconds(delay_us(random)));
      } else {
        const auto give_up = std::chrono::steady_clock::now() + 5s;
        while (std::chrono::steady_clock::now() < give_up &&
               ::waitpid(pid, nullptr, WNOHANG) == 0) {
          auto pending = (*watcher)->Purchases(pos::PurchaseState::kPending);
          if (pending.ok() && !pending->empty()) {
            ++pending_seen;
            break;
          }
        }
        std::this_thread::sleep_for(std::chrono::microseconds(delay_us(random) % 2000));
      }
      ::kill(pid, SIGKILL);
      int status = 0;
      ::waitpid(pid, &status, 0);
      if (WIFSIGNALED(status)) ++killed;
      auto recovered = pos("recover --json");
      ASSERT_EQ(recovered.exit_code, 0) << recovered.err;
      const json report = json::parse(recovered.out);
      for (const json& p : report["purchases"]) ++outcomes[p["outcome"].get<std::string>()];
      auto pending = (*watcher)->Purchases(pos::PurchaseState::kPending);
      ASSERT_TRUE(pending.ok() && pending->empty())
          << "round " << rounds << ": " << recovered.out << recovered.err;
    }
    auto again = pos("recover --json");
    ASSERT_EQ(again.exit_code, 0) << again.err;
    EXPECT_EQ(json::parse(again.out)["purchases"].size(), 0u);
  }  // both detached: their images hold their state
  std::printf("%d of %d purchases killed (%d seen pending); recovery completed %d, voided %d\n",
              killed, rounds, pending_seen, outcomes["completed"], outcomes["voided"]);
  EXPECT_GT(killed, 0);

  auto journal = pos::Journal::Open((dir / "pos-journal.db").string());
  ASSERT_TRUE(journal.ok());
  auto completed = (*journal)->Purchases(pos::PurchaseState::kCompleted);
  ASSERT_TRUE(completed.ok());
  std::uint32_t spent = 0;
  for (const pos::PurchaseRecord& p : *completed) {
    spent += p.amount;
    EXPECT_TRUE(p.psam_credited) << "purchase " << p.id;
  }
  auto card = card::Card::Open(std::move(nvm::OpenFileMedium(card_image)).value());
  ASSERT_TRUE(card.ok()) << card.error().message;
  std::shared_ptr<card::Card> shared = std::move(card).value();
  reader::InProcessReader card_reader("card", shared);
  ASSERT_TRUE(card_reader.Connect().ok());
  ASSERT_TRUE(terminal::SelectMedicalApplication(card_reader).ok());
  auto balance = terminal::GetBalance(card_reader, terminal::Wallet::kEp);
  ASSERT_TRUE(balance.ok()) << balance.error().message;
  EXPECT_EQ(*balance, kLoaded - spent) << completed->size() << " completed";
  auto psam = psam::Psam::Open(std::move(nvm::OpenFileMedium(psam_image)).value());
  ASSERT_TRUE(psam.ok()) << psam.error().message;
  const psam::Inspection inspection = (*psam)->Inspect();
  EXPECT_EQ(inspection.totals.count, completed->size());
  EXPECT_EQ(inspection.totals.amount, spent);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace medcard
