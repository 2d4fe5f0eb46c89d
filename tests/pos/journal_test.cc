// The POS journal on its own: states, durability across reopening, what may be deleted.
#include "pos/journal.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "test_database.h"

namespace medcard::pos {
namespace {

PurchaseRecord Pending(std::uint32_t amount, std::uint32_t terminal_serial) {
  PurchaseRecord r;
  r.asn = HexToBytes("11000000000000000421");
  r.wallet = terminal::Wallet::kEp;
  r.amount = amount;
  r.balance_before = 10000;
  r.card_offline_serial = 7;
  r.terminal_serial = terminal_serial;
  r.terminal_number = HexToBytes("000000000421");
  r.key_version = 1;
  r.date = {2026, 11, 25};
  r.time = {10, 0, 0};
  return r;
}

class JournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (std::filesystem::path(test_support::NewTempDir("medcard-pos-journal")) / "pos.db")
                .string();
    Reopen();
  }
  void Reopen() {
    journal_.reset();
    auto opened = Journal::Open(path_);
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    journal_ = std::move(opened).value();
  }
  std::string path_;
  std::unique_ptr<Journal> journal_;
};

TEST_F(JournalTest, APurchaseGoesPendingToCompletedAndSurvivesReopening) {
  auto id = journal_->AddPending(Pending(1250, 1));
  ASSERT_TRUE(id.ok()) << id.error().message;
  Reopen();
  auto pending = journal_->Purchases(PurchaseState::kPending);
  ASSERT_TRUE(pending.ok());
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ((*pending)[0].amount, 1250u);
  EXPECT_EQ((*pending)[0].date, (Date{2026, 11, 25}));
  EXPECT_EQ((*pending)[0].time, (TimeOfDay{10, 0, 0}));
  ASSERT_TRUE(journal_->Complete(*id, HexToBytes("A1A2A3A4"), HexToBytes("B1B2B3B4"), false).ok());
  // Completing twice is refused: a record leaves PENDING once.
  EXPECT_FALSE(journal_->Complete(*id, HexToBytes("A1A2A3A4"), HexToBytes("B1B2B3B4"), false).ok());
  EXPECT_FALSE(journal_->Void(*id, true).ok());
  Reopen();
  auto record = journal_->Purchase(*id);
  ASSERT_TRUE(record.ok() && record->has_value());
  EXPECT_EQ((*record)->state, PurchaseState::kCompleted);
  EXPECT_EQ(ToHex((*record)->tac), "A1A2A3A4");
  EXPECT_EQ((*record)->balance_after(), 10000u - 1250u);
  EXPECT_FALSE((*record)->psam_credited);
  const terminal::PurchaseResult upload = (*record)->ToPurchaseResult();
  EXPECT_EQ(upload.type, 0x06);
  EXPECT_EQ(ToHex(upload.mac2), "B1B2B3B4");
  EXPECT_EQ(upload.terminal_serial, 1u);
}

TEST_F(JournalTest, IsWalWithFullSync) {
  auto mode = journal_->connection().Query("PRAGMA journal_mode");
  ASSERT_TRUE(mode.ok());
  EXPECT_EQ((*mode)[0].Text(0), "wal");
  auto sync = journal_->connection().Query("PRAGMA synchronous");
  ASSERT_TRUE(sync.ok());
  EXPECT_EQ((*sync)[0].Int(0), 2);  // FULL
}

TEST_F(JournalTest, OnePsamSerialIsOnePurchase) {
  ASSERT_TRUE(journal_->AddPending(Pending(100, 5)).ok());
  EXPECT_FALSE(journal_->AddPending(Pending(200, 5)).ok());
}

TEST_F(JournalTest, NothingUnsettledIsPruned) {
  auto a = journal_->AddPending(Pending(100, 1));
  auto b = journal_->AddPending(Pending(200, 2));
  auto c = journal_->AddPending(Pending(300, 3));
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  ASSERT_TRUE(journal_->Complete(*a, HexToBytes("00000001"), HexToBytes("00000001"), false).ok());
  ASSERT_TRUE(journal_->Void(*b, true).ok());
  ASSERT_TRUE(journal_->Complete(*c, HexToBytes("00000003"), HexToBytes("00000003"), false).ok());
  ASSERT_TRUE(journal_->MarkUploaded({*a}, 1).ok());
  auto unuploaded = journal_->Unuploaded();
  ASSERT_TRUE(unuploaded.ok());
  ASSERT_EQ(unuploaded->size(), 1u);
  EXPECT_EQ((*unuploaded)[0].id, *c);

  // Uploaded but not settled: kept.
  EXPECT_EQ(*journal_->Prune(100), 0);
  auto settlement = journal_->AddSettlement({0, 1, {1, 100, 0, 0}, HexToBytes("0A0B0C0D"), false});
  ASSERT_TRUE(settlement.ok()) << settlement.error().message;
  auto uncleared = journal_->UnclearedSettlement();
  ASSERT_TRUE(uncleared.ok() && uncleared->has_value());
  EXPECT_EQ((*uncleared)->batch_number, 1u);
  EXPECT_EQ((*uncleared)->totals.purchase_amount, 100u);
  ASSERT_TRUE(journal_->MarkPsamCleared(*settlement).ok());
  EXPECT_FALSE(journal_->UnclearedSettlement()->has_value());
  // Settled in batch 1 and the voided one before the unsettled c go; c stays.
  EXPECT_EQ(*journal_->Prune(2), 2);
  EXPECT_FALSE(journal_->Purchase(*a)->has_value());
  EXPECT_FALSE(journal_->Purchase(*b)->has_value());
  EXPECT_TRUE(journal_->Purchase(*c)->has_value());
}

TEST_F(JournalTest, BlacklistFullThenDeltaAndLinkStateAndParameters) {
  terminal::BlacklistReply full;
  full.version = 3;
  full.full = true;
  full.entries = {{HexToBytes("11000000000000000001"), iso8583::BlacklistAction::kAdd},
                  {HexToBytes("11000000000000000002"), iso8583::BlacklistAction::kAdd}};
  ASSERT_TRUE(journal_->ApplyBlacklist(full).ok());
  terminal::BlacklistReply delta;
  delta.version = 4;
  delta.entries = {{HexToBytes("11000000000000000001"), iso8583::BlacklistAction::kRemove},
                   {HexToBytes("11000000000000000003"), iso8583::BlacklistAction::kAdd}};
  ASSERT_TRUE(journal_->ApplyBlacklist(delta).ok());
  Reopen();
  EXPECT_EQ(*journal_->BlacklistVersion(), 4u);
  EXPECT_EQ(*journal_->BlacklistSize(), 2u);
  EXPECT_FALSE(*journal_->IsBlacklisted(HexToBytes("11000000000000000001")));
  EXPECT_TRUE(*journal_->IsBlacklisted(HexToBytes("11000000000000000003")));
  // A full list replaces everything.
  full.version = 5;
  full.entries = {{HexToBytes("11000000000000000009"), iso8583::BlacklistAction::kAdd}};
  ASSERT_TRUE(journal_->ApplyBlacklist(full).ok());
  EXPECT_EQ(*journal_->BlacklistSize(), 1u);

  EXPECT_EQ(*journal_->LinkState(), terminal::LinkState{});
  ASSERT_TRUE(journal_->SaveLinkState({41, 3}).ok());
  ASSERT_TRUE(journal_->SaveLinkState({42, 3}).ok());
  Reopen();
  EXPECT_EQ(*journal_->LinkState(), (terminal::LinkState{42, 3}));

  EXPECT_FALSE(journal_->Parameters()->has_value());
  StoredParameters p;
  p.version = 7;
  p.parameters.merchant_name = "City Hospital";
  p.parameters.purchase_limit = 500000;
  p.parameters.card_key_versions = {1, 2};
  ASSERT_TRUE(journal_->SaveParameters(p).ok());
  Reopen();
  auto stored = journal_->Parameters();
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_EQ((*stored)->version, 7u);
  EXPECT_EQ((*stored)->parameters, p.parameters);
}

TEST_F(JournalTest, AnUnconfirmedLoadStaysUntilConfirmed) {
  JournalledLoad load;
  load.load = {1, 12, 11, 25, 0x01, 30000, HexToBytes("11000000000000000421")};
  load.tac = HexToBytes("01020304");
  load.balance_after = 30000;
  auto id = journal_->AddLoad(load);
  ASSERT_TRUE(id.ok()) << id.error().message;
  Reopen();
  auto unconfirmed = journal_->UnconfirmedLoads();
  ASSERT_TRUE(unconfirmed.ok());
  ASSERT_EQ(unconfirmed->size(), 1u);
  EXPECT_EQ((*unconfirmed)[0].load, load.load);
  EXPECT_TRUE(journal_->ConfirmedLoadsIn(1)->empty());
  ASSERT_TRUE(journal_->MarkLoadConfirmed(*id).ok());
  EXPECT_TRUE(journal_->UnconfirmedLoads()->empty());
  EXPECT_EQ(journal_->ConfirmedLoadsIn(1)->size(), 1u);
}

}  // namespace
}  // namespace medcard::pos
