#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <thread>

#include "reader/reader.h"
#include "scripted_icc.h"

namespace medcard::reader {
namespace {

using std::chrono::milliseconds;
using testing::ScriptedIcc;

constexpr milliseconds kLongEnough{5000};  // upper bound for anything that should happen now

TEST(InProcessReader, ConnectWithoutCard_SaysNoCardInReader) {
  InProcessReader reader("desk");
  Result<Bytes> atr = reader.Connect();
  ASSERT_FALSE(atr.ok());
  EXPECT_EQ(atr.error().message, "no card in reader 'desk'");
  EXPECT_FALSE(reader.Connected());
}

TEST(InProcessReader, Connect_PowersTheCardOnAndReturnsItsAtr) {
  auto card = std::make_shared<ScriptedIcc>(testing::T1Atr("ABC"));
  InProcessReader reader("desk", card);
  Result<Bytes> atr = reader.Connect();
  ASSERT_TRUE(atr.ok()) << atr.error().message;
  EXPECT_EQ(*atr, testing::T1Atr("ABC"));
  EXPECT_EQ(card->power_ons(), 1);
  EXPECT_TRUE(reader.Connected());
}

TEST(InProcessReader, ConnectAgain_DoesNotResetTheCard) {
  auto card = std::make_shared<ScriptedIcc>();
  InProcessReader reader("desk", card);
  ASSERT_TRUE(reader.Connect().ok());
  ASSERT_TRUE(reader.Disconnect().ok());
  ASSERT_TRUE(reader.Connect().ok());
  ASSERT_TRUE(reader.Connect().ok());
  EXPECT_EQ(card->power_ons(), 1);
}

TEST(InProcessReader, NonOwningCard_IsUsedInPlace) {
  ScriptedIcc card;
  InProcessReader reader("desk", &card);
  ASSERT_TRUE(reader.Connect().ok());
  Result<Bytes> response = reader.Transmit(View(HexToBytes("80EE000002CAFE")));
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(ToHex(View(*response)), "CAFE9000");
  EXPECT_EQ(card.commands().size(), 1u);
}

TEST(InProcessReader, TransmitBeforeConnect_SaysNotConnected) {
  InProcessReader reader("desk", std::make_shared<ScriptedIcc>());
  Result<Bytes> response = reader.Transmit(View(HexToBytes("80EE0000")));
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.error().message, "not connected to reader 'desk' (Connect first)");
}

TEST(InProcessReader, Transmit_ReturnsTheRApduUnchangedEvenFor61xx) {
  auto card = std::make_shared<ScriptedIcc>();
  card->OnChunked("00A40400", HexToBytes("6F0A8408A000000003101001"), 4);
  InProcessReader reader("desk", card);
  ASSERT_TRUE(reader.Connect().ok());
  Result<Bytes> response = reader.Transmit(View(HexToBytes("00A4040008A000000003101001")));
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(ToHex(View(*response)), "6104");  // Transmit is raw; Send applies the rules
}

TEST(InProcessReader, RemoveCard_ThenTransmitSaysCardRemovedAndTheCardLostPower) {
  auto card = std::make_shared<ScriptedIcc>();
  InProcessReader reader("desk", card);
  ASSERT_TRUE(reader.Connect().ok());
  EXPECT_EQ(reader.RemoveCard(), card);
  EXPECT_FALSE(card->powered());
  EXPECT_EQ(*reader.CardPresent(), false);
  Result<Bytes> response = reader.Transmit(View(HexToBytes("80EE0000")));
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.error().message, "card removed from reader 'desk'");
}

TEST(InProcessReader, RemoveCardFromEmptyReader_ReturnsNull) {
  InProcessReader reader("desk");
  EXPECT_EQ(reader.RemoveCard(), nullptr);
}

TEST(InProcessReader, ReinsertedCard_NeedsAConnectAndGetsAColdReset) {
  auto card = std::make_shared<ScriptedIcc>();
  InProcessReader reader("desk", card);
  ASSERT_TRUE(reader.Connect().ok());
  reader.RemoveCard();
  ASSERT_TRUE(reader.InsertCard(card).ok());
  // The old connection belonged to the card that was pulled out.
  Result<Bytes> stale = reader.Transmit(View(HexToBytes("80EE0000")));
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.error().message, "card removed from reader 'desk'");
  ASSERT_TRUE(reader.Connect().ok());
  EXPECT_EQ(card->power_ons(), 2);
  EXPECT_TRUE(reader.Transmit(View(HexToBytes("80EE0000"))).ok());
}

TEST(InProcessReader, InsertIntoOccupiedReader_Fails) {
  InProcessReader reader("desk", std::make_shared<ScriptedIcc>());
  Status inserted = reader.InsertCard(std::make_shared<ScriptedIcc>());
  ASSERT_FALSE(inserted.ok());
  EXPECT_EQ(inserted.error().message, "reader 'desk' already holds a card");
}

TEST(InProcessReader, WaitForCard_WakesWhenAnotherThreadInserts) {
  InProcessReader reader("desk");
  EXPECT_EQ(*reader.WaitForCard(milliseconds(0)), false);
  auto waiter = std::async(std::launch::async, [&] { return reader.WaitForCard(kLongEnough); });
  std::this_thread::sleep_for(milliseconds(20));
  ASSERT_TRUE(reader.InsertCard(std::make_shared<ScriptedIcc>()).ok());
  ASSERT_EQ(waiter.wait_for(kLongEnough), std::future_status::ready);
  EXPECT_EQ(*waiter.get(), true);
}

TEST(InProcessReader, WaitForCard_TimesOutWithFalse) {
  InProcessReader reader("desk");
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(*reader.WaitForCard(milliseconds(50)), false);
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(50));
}

TEST(InProcessReader, WaitForRemoval_WakesWhenAnotherThreadRemoves) {
  InProcessReader reader("desk", std::make_shared<ScriptedIcc>());
  EXPECT_EQ(*reader.WaitForRemoval(milliseconds(10)), false);
  auto waiter = std::async(std::launch::async, [&] { return reader.WaitForRemoval(kLongEnough); });
  std::this_thread::sleep_for(milliseconds(20));
  reader.RemoveCard();
  ASSERT_EQ(waiter.wait_for(kLongEnough), std::future_status::ready);
  EXPECT_EQ(*waiter.get(), true);
}

TEST(InProcessReader, ColdPowerCycle_PowersOffAndOnAndReturnsTheAtr) {
  auto card = std::make_shared<ScriptedIcc>(testing::T1Atr("XY"));
  InProcessReader reader("desk", card);
  ASSERT_TRUE(reader.Connect().ok());
  Result<Bytes> atr = reader.PowerCycle(Reset::kCold);
  ASSERT_TRUE(atr.ok());
  EXPECT_EQ(*atr, testing::T1Atr("XY"));
  EXPECT_EQ(card->power_offs(), 1);
  EXPECT_EQ(card->power_ons(), 2);
}

TEST(InProcessReader, WarmPowerCycle_ResetsWithoutPowerOff) {
  auto card = std::make_shared<ScriptedIcc>();
  InProcessReader reader("desk", card);
  ASSERT_TRUE(reader.Connect().ok());
  ASSERT_TRUE(reader.PowerCycle(Reset::kWarm).ok());
  EXPECT_EQ(card->power_offs(), 0);
  EXPECT_EQ(card->power_ons(), 2);
}

TEST(InProcessReader, PowerCycleWhenNotConnected_Fails) {
  InProcessReader reader("desk", std::make_shared<ScriptedIcc>());
  EXPECT_FALSE(reader.PowerCycle().ok());
}

TEST(InProcessReader, DeadCard_TransmitSaysMute) {
  auto card = std::make_shared<ScriptedIcc>();
  InProcessReader reader("desk", card);
  ASSERT_TRUE(reader.Connect().ok());
  card->Kill();
  Result<Bytes> response = reader.Transmit(View(HexToBytes("80EE0000")));
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.error().message, "the card in reader 'desk' did not answer (mute card)");
}

TEST(InProcessReader, DeadCard_ConnectSaysNoAtr) {
  auto card = std::make_shared<ScriptedIcc>();
  card->Kill();
  InProcessReader reader("desk", card);
  Result<Bytes> atr = reader.Connect();
  ASSERT_FALSE(atr.ok());
  EXPECT_EQ(atr.error().message, "the card in reader 'desk' is mute (no ATR)");
}

TEST(InProcessReader, Transaction_MakesOtherThreadsWaitUntilItEnds) {
  auto card = std::make_shared<ScriptedIcc>();
  InProcessReader reader("desk", card);
  ASSERT_TRUE(reader.Connect().ok());
  auto transaction = Transaction::Begin(reader);
  ASSERT_TRUE(transaction.ok());

  std::atomic<bool> other_done{false};
  std::thread other([&] {
    (void)reader.Transmit(View(HexToBytes("80EE000001BB")));
    other_done = true;
  });
  // Our own APDUs go through while the other thread waits.
  ASSERT_TRUE(reader.Transmit(View(HexToBytes("80EE000001AA"))).ok());
  std::this_thread::sleep_for(milliseconds(50));
  EXPECT_FALSE(other_done.load());
  ASSERT_TRUE(transaction->End().ok());
  other.join();
  EXPECT_TRUE(other_done.load());
  const std::vector<Bytes> commands = card->commands();
  ASSERT_EQ(commands.size(), 2u);
  EXPECT_EQ(ToHex(View(commands[0])), "80EE000001AA");
  EXPECT_EQ(ToHex(View(commands[1])), "80EE000001BB");
}

TEST(InProcessReader, TransactionGuard_EndsTheTransactionWhenDestroyed) {
  InProcessReader reader("desk", std::make_shared<ScriptedIcc>());
  ASSERT_TRUE(reader.Connect().ok());
  {
    auto transaction = Transaction::Begin(reader);
    ASSERT_TRUE(transaction.ok());
  }
  auto other = std::async(std::launch::async,
                          [&] { return reader.Transmit(View(HexToBytes("80EE0000"))).ok(); });
  ASSERT_EQ(other.wait_for(kLongEnough), std::future_status::ready);
  EXPECT_TRUE(other.get());
}

TEST(InProcessReader, EndTransactionWithoutBegin_Fails) {
  InProcessReader reader("desk", std::make_shared<ScriptedIcc>());
  ASSERT_TRUE(reader.Connect().ok());
  Status ended = reader.EndTransaction();
  ASSERT_FALSE(ended.ok());
  EXPECT_EQ(ended.error().message, "no transaction of this thread on reader 'desk'");
}

TEST(InProcessReader, TransactionEndedTwice_SecondEndFails) {
  InProcessReader reader("desk", std::make_shared<ScriptedIcc>());
  ASSERT_TRUE(reader.Connect().ok());
  auto transaction = Transaction::Begin(reader);
  ASSERT_TRUE(transaction.ok());
  EXPECT_TRUE(transaction->End().ok());
  EXPECT_FALSE(transaction->End().ok());
}

TEST(InProcessReader, RemovingTheCard_EndsTheTransaction) {
  auto card = std::make_shared<ScriptedIcc>();
  InProcessReader reader("desk", card);
  ASSERT_TRUE(reader.Connect().ok());
  ASSERT_TRUE(reader.BeginTransaction().ok());
  reader.RemoveCard();
  ASSERT_TRUE(reader.InsertCard(card).ok());
  // Another thread can use the reader at once.
  auto other = std::async(std::launch::async, [&] { return reader.Connect().ok(); });
  ASSERT_EQ(other.wait_for(kLongEnough), std::future_status::ready);
  EXPECT_TRUE(other.get());
}

}  // namespace
}  // namespace medcard::reader
