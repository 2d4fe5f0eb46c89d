// The ED/EP purse: full load, purchase, cash, unload and overdraw-limit flows checked like the
// host and PSAM check them, and every error status word of every purse command.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "card_test_util.h"
#include "crypto/crypto.h"

namespace medcard::card_test {
namespace {

Bytes U32Bytes(std::uint32_t v) {
  Bytes b;
  AppendU32(b, v);
  return b;
}

// INITIALIZE for load (P1 00), purchase (01), cash (02), unload (05).
Bytes Init(std::uint8_t p1, std::uint8_t p2, std::uint32_t amount, std::uint8_t key_index = 1,
           std::optional<std::uint8_t> le = std::nullopt) {
  Bytes apdu{0x80, 0x50, p1, p2, 0x0B, key_index};
  Append(apdu, View(U32Bytes(amount)));
  Append(apdu, View(kTerminal));
  const std::uint8_t full = p1 == 0x00 || p1 == 0x05 ? 0x10 : 0x0F;
  apdu.push_back(le.value_or(full));
  return apdu;
}

class CardPurseTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(PersonalisedImage()); }
  void Open(const Bytes& content) {
    c_ = OpenCard(content, card::CardOptions{CountingRandom()});
    ASSERT_TRUE(c_.card);
  }
  card::Card& card() { return *c_.card; }
  std::string Sw(std::string_view apdu) { return SwHex(Send(card(), apdu).sw); }
  std::string Sw(const Bytes& apdu) { return SwHex(Send(card(), apdu).sw); }
  std::uint32_t Balance(bool ed) {
    const Answer a = Send(card(), ed ? "805C000104" : "805C000204");
    EXPECT_EQ(SwHex(a.sw), "9000");
    return a.data.size() == 4 ? ReadU32(View(a.data)) : 0xDEADBEEF;
  }
  const card::PurseSummary Purse() { return card().Inspect().purses.at(0); }
  // A state JSON without the key error counters (which a wrong MAC legitimately moves).
  std::string StateWithoutKeyCounters() {
    card::CardSummary s = card().Inspect();
    for (auto& f : s.files) {
      for (auto& k : f.keys) k.error_count = 0;
    }
    return card::ToJson(s).dump();
  }
  TestCard c_;
};

// ---- Whole transactions ----------------------------------------------------------------------

TEST_F(CardPurseTest, Load_edWithPin_severalAmounts_balanceLogAndProveMoveTogether) {
  SelectAdf(card());
  std::uint32_t total = 0;
  std::uint16_t serial = 0;
  for (std::uint32_t amount : {1u, 100u, 12345u, 999999u, 0x7FFFFFFFu}) {
    const LoadOutcome l = Load(card(), true, amount);
    ASSERT_EQ(SwHex(l.sw), "9000");
    EXPECT_EQ(l.old_balance, total);
    EXPECT_EQ(l.serial, serial);
    total += amount;
    EXPECT_EQ(Balance(true), total);
    const Answer log = Send(card(), "00B201C417");
    Bytes expected;  // serial(2) ‖ overdrawLimit(3) ‖ amount(4) ‖ type(1)
    AppendU16(expected, serial);
    AppendU24(expected, 0);
    AppendU32(expected, amount);
    expected.push_back(card::kTxnEdLoad);
    EXPECT_EQ(ToHex(View(log.data)).substr(0, 20), ToHex(View(expected)));
    Bytes prove = HexToBytes("805A00010200");
    prove.push_back(static_cast<std::uint8_t>(serial));
    prove.push_back(0x08);
    const Answer p = Send(card(), prove);
    EXPECT_EQ(SwHex(p.sw), "9000");
    EXPECT_EQ(ToHex(View(p.data)), "00000000" + ToHex(View(l.tac)));
    ++serial;
  }
  EXPECT_EQ(Purse().ed.online_serial, 5);
  EXPECT_EQ(Purse().ep.balance, 0u);
}

TEST_F(CardPurseTest, Load_ep_severalAmounts) {
  SelectAdf(card());
  std::uint32_t total = 0;
  for (std::uint32_t amount : {50u, 7u, 99943u}) {
    const LoadOutcome l = Load(card(), false, amount);
    ASSERT_EQ(SwHex(l.sw), "9000");
    total += amount;
    EXPECT_EQ(Balance(false), total);
  }
  EXPECT_EQ(Purse().ep.online_serial, 3);
  EXPECT_EQ(Purse().ed.online_serial, 0);
  EXPECT_EQ(Purse().log.size(), 3u);
  EXPECT_EQ(Purse().log[0].type, card::kTxnEpLoad);
}

TEST_F(CardPurseTest, Purchase_ed_severalAmounts_balanceLogAndProveMoveTogether) {
  SelectAdf(card());
  ASSERT_EQ(SwHex(Load(card(), true, 1000000).sw), "9000");
  std::uint32_t balance = 1000000;
  std::uint16_t serial = 0;
  for (std::uint32_t amount : {1u, 250u, 9999u, 100000u}) {
    const PurchaseOutcome p = Purchase(card(), true, amount, 1000 + serial);
    ASSERT_EQ(SwHex(p.sw), "9000");
    EXPECT_EQ(p.old_balance, balance);
    EXPECT_EQ(p.serial, serial);
    balance -= amount;
    EXPECT_EQ(Balance(true), balance);
    const card::LogEntry newest = Purse().log.at(0);
    EXPECT_EQ(newest.serial, serial);
    EXPECT_EQ(newest.amount, amount);
    EXPECT_EQ(newest.type, card::kTxnEdPurchase);
    EXPECT_EQ(ToHex(View(newest.terminal)), ToHex(View(kTerminal)));
    Bytes prove = HexToBytes("805A00050200");
    prove.push_back(static_cast<std::uint8_t>(serial));
    prove.push_back(0x08);
    const Answer proof = Send(card(), prove);
    EXPECT_EQ(SwHex(proof.sw), "9000");
    EXPECT_EQ(ToHex(View(proof.data)), ToHex(View(p.mac2)) + ToHex(View(p.tac)));
    ++serial;
  }
  EXPECT_EQ(Purse().ed.offline_serial, 4);
  EXPECT_EQ(Purse().ed.online_serial, 1);
}

TEST_F(CardPurseTest, Purchase_ep_needsNoPin) {
  SelectAdf(card());
  ASSERT_EQ(SwHex(Load(card(), false, 5000).sw), "9000");
  SelectAdf(card(), false);  // a new SELECT forgets the PIN
  for (std::uint32_t amount : {1200u, 3800u}) {
    ASSERT_EQ(SwHex(Purchase(card(), false, amount).sw), "9000");
  }
  EXPECT_EQ(Balance(false), 0u);
  EXPECT_EQ(Purse().ep.offline_serial, 2);
  EXPECT_EQ(Sw(Init(0x01, 0x01, 1)), "6982");  // ED purchase does need it
}

TEST_F(CardPurseTest, Purchase_edAndEp_keepTheirOwnSerials) {
  SelectAdf(card());
  ASSERT_EQ(SwHex(Load(card(), true, 100).sw), "9000");
  ASSERT_EQ(SwHex(Load(card(), false, 100).sw), "9000");
  ASSERT_EQ(SwHex(Load(card(), false, 100).sw), "9000");
  EXPECT_EQ(Purchase(card(), true, 10).serial, 0);
  EXPECT_EQ(Purchase(card(), false, 10).serial, 0);
  EXPECT_EQ(Purchase(card(), false, 10).serial, 1);
  const card::PurseSummary p = Purse();
  EXPECT_EQ(p.ed.online_serial, 1);
  EXPECT_EQ(p.ep.online_serial, 2);
  EXPECT_EQ(p.ed.offline_serial, 1);
  EXPECT_EQ(p.ep.offline_serial, 2);
}

TEST_F(CardPurseTest, CashWithdraw_ed_isAPurchaseOfType04) {
  SelectAdf(card());
  ASSERT_EQ(SwHex(Load(card(), true, 3000).sw), "9000");
  const PurchaseOutcome p = Purchase(card(), true, 2000, 7, true);
  ASSERT_EQ(SwHex(p.sw), "9000");
  EXPECT_EQ(Balance(true), 1000u);
  EXPECT_EQ(Purse().log.at(0).type, card::kTxnCashWithdraw);
  const Answer proof = Send(card(), "805A000402000008");
  EXPECT_EQ(ToHex(View(proof.data)), ToHex(View(p.mac2)) + ToHex(View(p.tac)));
}

TEST_F(CardPurseTest, Unload_ed_fullFlowWithMac1Mac2AndTac) {
  SelectAdf(card());
  ASSERT_EQ(SwHex(Load(card(), true, 8000).sw), "9000");
  const Answer init = Send(card(), Init(0x05, 0x01, 3000));
  ASSERT_EQ(SwHex(init.sw), "9000");
  ASSERT_EQ(init.data.size(), 16u);
  EXPECT_EQ(ReadU32(View(init.data)), 8000u);
  const std::uint16_t serial = ReadU16(View(init.data), 4);
  EXPECT_EQ(serial, 1);
  const Bytes sesulk =
      SessionKeyForLoad(View(CardKey("unload")), View(init.data).subspan(8, 4), serial);
  EXPECT_EQ(ToHex(View(init.data).subspan(12, 4)),
            ToHex(View(LoadMac1(View(sesulk), 8000, 3000, card::kTxnUnload, View(kTerminal)))));
  Bytes debit = HexToBytes("805403000B");
  Append(debit, View(kDate));
  Append(debit, View(kTime));
  Append(debit, View(LoadMac2(View(sesulk), 3000, card::kTxnUnload, View(kTerminal), View(kDate),
                              View(kTime))));
  debit.push_back(0x04);
  const Answer d = Send(card(), debit);
  ASSERT_EQ(SwHex(d.sw), "9000");
  EXPECT_EQ(ToHex(View(d.data)),
            ToHex(View(LoadTac(View(CardKey("tac")), 5000, serial, 3000, card::kTxnUnload,
                               View(kTerminal), View(kDate), View(kTime)))));
  EXPECT_EQ(Balance(true), 5000u);
  EXPECT_EQ(Purse().ed.online_serial, 2);
  EXPECT_EQ(Purse().log.at(0).type, card::kTxnUnload);
  EXPECT_EQ(ToHex(View(Send(card(), "805A000302000108").data)), "00000000" + ToHex(View(d.data)));
}

// INITIALIZE FOR UPDATE + UPDATE OVERDRAW LIMIT with the issuer's DUK; answers the TAC.
Bytes UpdateOverdraw(iso7816::Icc& icc, std::uint32_t new_limit, bool right_mac = true) {
  const Answer init = Send(icc, Concat({View(HexToBytes("8050040107"
                                                        "01")),
                                        View(kTerminal), View(HexToBytes("13"))}));
  EXPECT_EQ(SwHex(init.sw), "9000");
  if (init.data.size() != 19) return {};
  const std::uint32_t balance = ReadU32(View(init.data));
  const std::uint16_t serial = ReadU16(View(init.data), 4);
  const std::uint32_t limit = ReadU24(View(init.data), 6);
  const Bytes sesuk =
      SessionKeyForLoad(View(CardKey("overdraw")), View(init.data).subspan(11, 4), serial);
  Bytes mac1_input;
  AppendU32(mac1_input, balance);
  AppendU24(mac1_input, limit);
  mac1_input.push_back(card::kTxnOverdrawUpdate);
  Append(mac1_input, View(kTerminal));
  EXPECT_EQ(ToHex(View(init.data).subspan(15, 4)),
            ToHex(View(Mac4(View(sesuk), View(mac1_input)))));
  Bytes head;
  AppendU24(head, new_limit);
  head.push_back(card::kTxnOverdrawUpdate);
  Append(head, View(kTerminal));
  Append(head, View(kDate));
  Append(head, View(kTime));
  Bytes mac2 = Mac4(View(sesuk), View(head));
  if (!right_mac) mac2[0] ^= 0x01;
  Bytes update = HexToBytes("805800000E");
  AppendU24(update, new_limit);
  Append(update, View(kDate));
  Append(update, View(kTime));
  Append(update, View(mac2));
  update.push_back(0x04);
  const Answer u = Send(icc, update);
  if (!right_mac) {
    EXPECT_EQ(SwHex(u.sw), "9302");
    return {};
  }
  EXPECT_EQ(SwHex(u.sw), "9000");
  Bytes tac_input;
  AppendU32(tac_input, balance);
  AppendU16(tac_input, serial);
  Append(tac_input, View(head));
  const Bytes tac_key = std::move(crypto::TacKey(View(CardKey("tac")))).value();
  EXPECT_EQ(ToHex(View(u.data)), ToHex(View(Mac4(View(tac_key), View(tac_input)))));
  return u.data;
}

TEST_F(CardPurseTest, OverdrawUpdate_raisesTheLimitAndPurchasesMayUseIt) {
  SelectAdf(card());
  ASSERT_EQ(SwHex(Load(card(), true, 1000).sw), "9000");
  const Bytes tac = UpdateOverdraw(card(), 5000);
  ASSERT_EQ(tac.size(), 4u);
  EXPECT_EQ(Purse().ed.overdraw_limit, 5000u);
  EXPECT_EQ(Purse().ed.online_serial, 2);
  EXPECT_EQ(Purse().log.at(0).type, card::kTxnOverdrawUpdate);
  EXPECT_EQ(Purse().log.at(0).overdraw_limit, 5000u);
  EXPECT_EQ(ToHex(View(Send(card(), "805A000702000108").data)), "00000000" + ToHex(View(tac)));

  // 1000 of balance + 5000 of overdraw: 6000 may be spent, not 6001.
  EXPECT_EQ(Sw(Init(0x01, 0x01, 6001)), "9401");
  const Answer init = Send(card(), Init(0x01, 0x01, 2500));
  EXPECT_EQ(ToHex(View(init.data).subspan(6, 3)), "001388");  // what is left of the overdraw
  ASSERT_EQ(SwHex(Purchase(card(), true, 2500).sw), "9000");
  EXPECT_EQ(Balance(true), 0u);
  EXPECT_EQ(Purse().ed.overdraw_used, 1500u);
  const Answer next = Send(card(), Init(0x01, 0x01, 1));
  EXPECT_EQ(ToHex(View(next.data).subspan(6, 3)), "000DAC");  // 3500 left
}

TEST_F(CardPurseTest, OverdrawUpdate_loadRepaysTheOverdraftFirst) {
  SelectAdf(card());
  ASSERT_EQ(UpdateOverdraw(card(), 5000).size(), 4u);
  ASSERT_EQ(SwHex(Purchase(card(), true, 1500).sw), "9000");
  EXPECT_EQ(Purse().ed.overdraw_used, 1500u);
  const Answer init = Send(card(), Init(0x00, 0x01, 2000));
  ASSERT_EQ(SwHex(init.sw), "9000");
  const Bytes seslk = SessionKeyForLoad(View(CardKey("load")), View(init.data).subspan(8, 4), 1);
  Bytes credit = HexToBytes("805200000B");
  Append(credit, View(kDate));
  Append(credit, View(kTime));
  Append(credit, View(LoadMac2(View(seslk), 2000, card::kTxnEdLoad, View(kTerminal), View(kDate),
                               View(kTime))));
  const Answer c = Send(card(), credit);
  ASSERT_EQ(SwHex(c.sw), "9000");
  EXPECT_EQ(Balance(true), 500u);
  EXPECT_EQ(Purse().ed.overdraw_used, 0u);
  EXPECT_EQ(ToHex(View(c.data)),
            ToHex(View(LoadTac(View(CardKey("tac")), 500, 1, 2000, card::kTxnEdLoad,
                               View(kTerminal), View(kDate), View(kTime)))));
}

TEST_F(CardPurseTest, OverdrawUpdate_belowTheOverdraftInUse_answers6985) {
  SelectAdf(card());
  ASSERT_EQ(UpdateOverdraw(card(), 5000).size(), 4u);
  ASSERT_EQ(SwHex(Purchase(card(), true, 1500).sw), "9000");
  const Answer init = Send(card(), Concat({View(HexToBytes("8050040107"
                                                           "01")),
                                           View(kTerminal), View(HexToBytes("13"))}));
  ASSERT_EQ(SwHex(init.sw), "9000");
  EXPECT_EQ(Sw("805800000E0003E8"
               "20240315"
               "102030"
               "00000000"),
            "6985");
  EXPECT_EQ(Purse().ed.overdraw_limit, 5000u);
}

TEST_F(CardPurseTest, OverdrawUpdate_wrongMac_answers9302AndChangesNothing) {
  SelectAdf(card());
  const std::string before = StateWithoutKeyCounters();
  EXPECT_TRUE(UpdateOverdraw(card(), 5000, false).empty());
  EXPECT_EQ(StateWithoutKeyCounters(), before);
}

TEST_F(CardPurseTest, OverdrawUpdate_withoutInitialize_answers6985) {
  SelectAdf(card());
  EXPECT_EQ(Sw("805800000E001388"
               "20240315"
               "102030"
               "00000000"),
            "6985");
}

TEST_F(CardPurseTest, InitializeForUpdate_epOrWrongLength_isRefused) {
  SelectAdf(card());
  EXPECT_EQ(Sw("80500402070100112233445513"), "6A86");
  EXPECT_EQ(Sw(Init(0x04, 0x01, 1, 1, 0x13)), "6700");
}

TEST_F(CardPurseTest, UpdateOverdrawLimit_wrongP1P2OrLength_isRefused) {
  SelectAdf(card());
  EXPECT_EQ(Sw("805801000E001388"
               "20240315"
               "102030"
               "00000000"),
            "6A86");
  EXPECT_EQ(Sw("805800000D001388"
               "20240315"
               "102030"
               "000000"),
            "6700");
}

// ---- GET BALANCE ----------------------------------------------------------------------------

TEST_F(CardPurseTest, GetBalance_ed_needsThePin) {
  SelectAdf(card(), false);
  EXPECT_EQ(Sw("805C000104"), "6982");
  EXPECT_EQ(Sw("805C000204"), "9000");
}

TEST_F(CardPurseTest, GetBalance_badP1P2_answers6A86) {
  SelectAdf(card());
  EXPECT_EQ(Sw("805C000304"), "6A86");
  EXPECT_EQ(Sw("805C010104"), "6A86");
}

TEST_F(CardPurseTest, GetBalance_withData_answers6700) {
  SelectAdf(card());
  EXPECT_EQ(Sw("805C00010100"), "6700");
}

TEST_F(CardPurseTest, GetBalance_shortLe_answers6C04) {
  SelectAdf(card());
  EXPECT_EQ(Sw("805C000102"), "6C04");
}

TEST_F(CardPurseTest, GetBalance_outsideThePurseApplication_answers6985) {
  EXPECT_EQ(Sw("805C000204"), "6985");
}

TEST_F(CardPurseTest, GetBalance_ofAWalletTheApplicationLacks_answers6A81) {
  Open(EditImage(PersonalisedImage(), [](card::internal::CardState& s) {
    FileByFid(s, 0x1001).purse->app_type = card::kAppTypeEp;
  }));
  SelectAdf(card());
  EXPECT_EQ(Sw("805C000104"), "6A81");
  EXPECT_EQ(Sw(Init(0x00, 0x01, 1)), "6A81");
  EXPECT_EQ(Sw("805C000204"), "9000");
}

// ---- INITIALIZE errors ------------------------------------------------------------------------

TEST_F(CardPurseTest, InitializeForLoad_edWithoutPin_answers6982) {
  SelectAdf(card(), false);
  EXPECT_EQ(Sw(Init(0x00, 0x01, 100)), "6982");
}

TEST_F(CardPurseTest, InitializeForLoad_epWithoutPin_answers6982) {
  SelectAdf(card(), false);
  EXPECT_EQ(Sw(Init(0x00, 0x02, 100)), "6982");
}

TEST_F(CardPurseTest, InitializeForLoad_keyIndex02_answers9403) {
  SelectAdf(card());
  EXPECT_EQ(Sw(Init(0x00, 0x01, 100, 0x02)), "9403");
  EXPECT_EQ(Sw(Init(0x01, 0x02, 100, 0x00)), "9403");
}

TEST_F(CardPurseTest, InitializeForLoad_amountZero_answers6A80) {
  SelectAdf(card());
  EXPECT_EQ(Sw(Init(0x00, 0x01, 0)), "6A80");
  EXPECT_EQ(Sw(Init(0x01, 0x02, 0)), "6A80");
}

TEST_F(CardPurseTest, InitializeForLoad_aboveTheMaximumBalance_answers6985) {
  SelectAdf(card());
  EXPECT_EQ(Sw(Init(0x00, 0x02, 100001)), "6985");  // EP maximum 100000 fen
  EXPECT_EQ(Sw(Init(0x00, 0x02, 100000)), "9000");
}

TEST_F(CardPurseTest, InitializeForLoad_beyond32Bits_answers6985) {
  Open(EditImage(PersonalisedImage(), [](card::internal::CardState& s) {
    FileByFid(s, 0x1001).purse->ed.balance = 0xFFFFFF00;
  }));
  SelectAdf(card());
  EXPECT_EQ(Sw(Init(0x00, 0x01, 0x100)), "6985");
  EXPECT_EQ(Sw(Init(0x00, 0x01, 0xFF)), "9000");
}

TEST_F(CardPurseTest, InitializeForLoad_onlineSerialAtFFFF_answers9402) {
  Open(EditImage(PersonalisedImage(), [](card::internal::CardState& s) {
    FileByFid(s, 0x1001).purse->ed.online_serial = 0xFFFF;
  }));
  SelectAdf(card());
  EXPECT_EQ(Sw(Init(0x00, 0x01, 100)), "9402");
  EXPECT_EQ(Sw(Init(0x00, 0x02, 100)), "9000");  // the EP has its own serial
}

TEST_F(CardPurseTest, InitializeForLoad_badP2_answers6A86) {
  SelectAdf(card());
  EXPECT_EQ(Sw(Init(0x00, 0x03, 100)), "6A86");
  EXPECT_EQ(Sw(Init(0x00, 0x00, 100)), "6A86");
  EXPECT_EQ(Sw(Init(0x03, 0x01, 100)), "6A86");
}

TEST_F(CardPurseTest, InitializeForLoad_wrongLc_answers6700) {
  SelectAdf(card());
  EXPECT_EQ(Sw("805000010A01000000640011223344"
               "10"),
            "6700");
}

TEST_F(CardPurseTest, InitializeForLoad_shortLe_answers6C10) {
  SelectAdf(card());
  EXPECT_EQ(Sw(Init(0x00, 0x01, 100, 1, 0x04)), "6C10");
}

TEST_F(CardPurseTest, InitializeForLoad_outsideThePurseApplication_answers6985) {
  EXPECT_EQ(Sw(Init(0x00, 0x01, 100)), "6985");
}

TEST_F(CardPurseTest, InitializeForPurchase_moreThanTheBalance_answers9401) {
  SelectAdf(card());
  ASSERT_EQ(SwHex(Load(card(), false, 500).sw), "9000");
  EXPECT_EQ(Sw(Init(0x01, 0x02, 501)), "9401");
  EXPECT_EQ(Sw(Init(0x01, 0x02, 500)), "9000");
  EXPECT_EQ(Sw(Init(0x01, 0x01, 1)), "9401");
}

TEST_F(CardPurseTest, InitializeForPurchase_offlineSerialAtFFFF_answers9402) {
  Open(EditImage(PersonalisedImage(), [](card::internal::CardState& s) {
    auto& purse = *FileByFid(s, 0x1001).purse;
    purse.ep.offline_serial = 0xFFFF;
    purse.ep.balance = 1000;
  }));
  SelectAdf(card(), false);
  EXPECT_EQ(Sw(Init(0x01, 0x02, 100)), "9402");
}

TEST_F(CardPurseTest, InitializeForPurchase_shortLe_answers6C0F) {
  SelectAdf(card());
  EXPECT_EQ(Sw(Init(0x01, 0x02, 1, 1, 0x0E)), "6C0F");
}

TEST_F(CardPurseTest, InitializeForCashWithdraw_ep_answers6A86) {
  SelectAdf(card());
  EXPECT_EQ(Sw(Init(0x02, 0x02, 100)), "6A86");
}

TEST_F(CardPurseTest, InitializeForUnload_moreThanTheBalance_answers9401) {
  SelectAdf(card());
  ASSERT_EQ(SwHex(Load(card(), true, 500).sw), "9000");
  EXPECT_EQ(Sw(Init(0x05, 0x01, 501)), "9401");
  EXPECT_EQ(Sw(Init(0x05, 0x02, 1)), "6A86");
}

TEST_F(CardPurseTest, InitializeForUnload_withoutPin_answers6982) {
  SelectAdf(card(), false);
  EXPECT_EQ(Sw(Init(0x05, 0x01, 1)), "6982");
}

// ---- CREDIT FOR LOAD errors ------------------------------------------------------------------

TEST_F(CardPurseTest, CreditForLoad_withoutInitialize_answers6985) {
  SelectAdf(card());
  EXPECT_EQ(Sw("805200000B"
               "20240315"
               "102030"
               "01020304"
               "04"),
            "6985");
}

TEST_F(CardPurseTest, CreditForLoad_afterAnotherCommand_answers6985) {
  SelectAdf(card());
  ASSERT_EQ(Sw(Init(0x00, 0x02, 100)), "9000");
  EXPECT_EQ(Sw("805C000204"), "9000");
  EXPECT_EQ(Sw("805200000B"
               "20240315"
               "102030"
               "01020304"
               "04"),
            "6985");
}

TEST_F(CardPurseTest, CreditForLoad_afterInitializeForPurchase_answers6985) {
  SelectAdf(card());
  ASSERT_EQ(SwHex(Load(card(), false, 500).sw), "9000");
  ASSERT_EQ(Sw(Init(0x01, 0x02, 100)), "9000");
  EXPECT_EQ(Sw("805200000B"
               "20240315"
               "102030"
               "01020304"
               "04"),
            "6985");
}

TEST_F(CardPurseTest, CreditForLoad_whenMac2Wrong_answers9302AndChangesNothing) {
  SelectAdf(card());
  ASSERT_EQ(SwHex(Load(card(), false, 500).sw), "9000");
  const std::string before = StateWithoutKeyCounters();
  ASSERT_EQ(Sw(Init(0x00, 0x02, 100)), "9000");
  EXPECT_EQ(Sw("805200000B"
               "20240315"
               "102030"
               "01020304"
               "04"),
            "9302");
  EXPECT_EQ(StateWithoutKeyCounters(), before);
  EXPECT_EQ(Balance(false), 500u);
}

TEST_F(CardPurseTest, CreditForLoad_afterAMacFailure_theInitializeIsGone) {
  SelectAdf(card());
  const Answer init = Send(card(), Init(0x00, 0x02, 100));
  ASSERT_EQ(SwHex(init.sw), "9000");
  const Bytes seslk = SessionKeyForLoad(View(CardKey("load")), View(init.data).subspan(8, 4), 0);
  EXPECT_EQ(Sw("805200000B"
               "20240315"
               "102030"
               "01020304"
               "04"),
            "9302");
  Bytes credit = HexToBytes("805200000B");
  Append(credit, View(kDate));
  Append(credit, View(kTime));
  Append(credit, View(LoadMac2(View(seslk), 100, card::kTxnEpLoad, View(kTerminal), View(kDate),
                               View(kTime))));
  EXPECT_EQ(Sw(credit), "6985");
}

TEST_F(CardPurseTest, CreditForLoad_invalidDate_answers6A80) {
  SelectAdf(card());
  ASSERT_EQ(Sw(Init(0x00, 0x02, 100)), "9000");
  EXPECT_EQ(Sw("805200000B"
               "20241315"
               "102030"
               "01020304"
               "04"),
            "6A80");
  ASSERT_EQ(Sw(Init(0x00, 0x02, 100)), "9000");
  EXPECT_EQ(Sw("805200000B"
               "20240315"
               "106030"
               "01020304"
               "04"),
            "6A80");
}

TEST_F(CardPurseTest, CreditForLoad_wrongP1P2OrLength_isRefused) {
  SelectAdf(card());
  ASSERT_EQ(Sw(Init(0x00, 0x02, 100)), "9000");
  EXPECT_EQ(Sw("805201000B"
               "20240315"
               "102030"
               "01020304"
               "04"),
            "6A86");
  ASSERT_EQ(Sw(Init(0x00, 0x02, 100)), "9000");
  EXPECT_EQ(Sw("805200000A"
               "20240315"
               "102030"
               "010203"
               "04"),
            "6700");
}

TEST_F(CardPurseTest, CreditForLoad_shortLe_answers6C04AndKeepsTheInitialize) {
  SelectAdf(card());
  const Answer init = Send(card(), Init(0x00, 0x02, 100));
  const Bytes seslk = SessionKeyForLoad(View(CardKey("load")), View(init.data).subspan(8, 4), 0);
  Bytes credit = HexToBytes("805200000B");
  Append(credit, View(kDate));
  Append(credit, View(kTime));
  Append(credit, View(LoadMac2(View(seslk), 100, card::kTxnEpLoad, View(kTerminal), View(kDate),
                               View(kTime))));
  credit.push_back(0x02);
  EXPECT_EQ(Sw(credit), "6C04");
  credit.back() = 0x04;
  EXPECT_EQ(Sw(credit), "9000");
  EXPECT_EQ(Balance(false), 100u);
}

// ---- DEBIT errors -----------------------------------------------------------------------------

Bytes DebitApdu(const Bytes& mac1) {
  Bytes debit = HexToBytes(
      "805401000F"
      "00000001");
  Append(debit, View(kDate));
  Append(debit, View(kTime));
  Append(debit, View(mac1));
  debit.push_back(0x08);
  return debit;
}

TEST_F(CardPurseTest, DebitForPurchase_whenMac1Wrong_answers9302AndChangesNothing) {
  SelectAdf(card());
  ASSERT_EQ(SwHex(Load(card(), false, 500).sw), "9000");
  const std::string before = StateWithoutKeyCounters();
  ASSERT_EQ(Sw(Init(0x01, 0x02, 100)), "9000");
  EXPECT_EQ(Sw(DebitApdu(HexToBytes("01020304"))), "9302");
  EXPECT_EQ(StateWithoutKeyCounters(), before);
  EXPECT_EQ(Balance(false), 500u);
  EXPECT_EQ(Sw("805A000602000008"), "9406");
}

TEST_F(CardPurseTest, DebitForPurchase_withoutInitialize_answers6985) {
  SelectAdf(card());
  EXPECT_EQ(Sw(DebitApdu(HexToBytes("01020304"))), "6985");
}

TEST_F(CardPurseTest, DebitForPurchase_afterInitializeForLoad_answers6985) {
  SelectAdf(card());
  ASSERT_EQ(Sw(Init(0x00, 0x02, 100)), "9000");
  EXPECT_EQ(Sw(DebitApdu(HexToBytes("01020304"))), "6985");
}

TEST_F(CardPurseTest, DebitForPurchase_shortLe_answers6C08AndTheResentDebitCompletes) {
  SelectAdf(card());
  ASSERT_EQ(SwHex(Load(card(), false, 500).sw), "9000");
  const Answer init = Send(card(), Init(0x01, 0x02, 100));
  const Bytes sespk = SessionKeyForPurchase(
      View(CardKey("purchase")), View(init.data).subspan(11, 4), 0, View(HexToBytes("00000001")));
  Bytes debit = DebitApdu(PurchaseMac1(View(sespk), 100, card::kTxnEpPurchase, View(kTerminal),
                                       View(kDate), View(kTime)));
  debit.back() = 0x04;
  EXPECT_EQ(Sw(debit), "6C08");
  EXPECT_EQ(Purse().ep.balance, 500u);
  debit.back() = 0x08;
  EXPECT_EQ(Sw(debit), "9000");
  EXPECT_EQ(Balance(false), 400u);
}

TEST_F(CardPurseTest, DebitForPurchase_invalidTime_answers6A80) {
  SelectAdf(card());
  ASSERT_EQ(SwHex(Load(card(), false, 500).sw), "9000");
  ASSERT_EQ(Sw(Init(0x01, 0x02, 100)), "9000");
  EXPECT_EQ(Sw("805401000F"
               "00000001"
               "20240315"
               "25FF30"
               "01020304"
               "08"),
            "6A80");
}

TEST_F(CardPurseTest, DebitForPurchase_wrongP1P2OrLength_isRefused) {
  SelectAdf(card());
  ASSERT_EQ(SwHex(Load(card(), false, 500).sw), "9000");
  ASSERT_EQ(Sw(Init(0x01, 0x02, 100)), "9000");
  EXPECT_EQ(Sw("805402000F"
               "00000001"
               "20240315"
               "102030"
               "01020304"
               "08"),
            "6A86");
  ASSERT_EQ(Sw(Init(0x01, 0x02, 100)), "9000");
  EXPECT_EQ(Sw("805401010F"
               "00000001"
               "20240315"
               "102030"
               "01020304"
               "08"),
            "6A86");
  ASSERT_EQ(Sw(Init(0x01, 0x02, 100)), "9000");
  EXPECT_EQ(Sw("805401000B"
               "20240315"
               "102030"
               "01020304"
               "08"),
            "6700");
}

TEST_F(CardPurseTest, DebitForUnload_afterInitializeForPurchase_answers6985) {
  SelectAdf(card());
  ASSERT_EQ(SwHex(Load(card(), true, 500).sw), "9000");
  ASSERT_EQ(Sw(Init(0x01, 0x01, 100)), "9000");
  EXPECT_EQ(Sw("805403000B"
               "20240315"
               "102030"
               "01020304"
               "04"),
            "6985");
}

TEST_F(CardPurseTest, DebitForUnload_whenMac2Wrong_answers9302AndChangesNothing) {
  SelectAdf(card());
  ASSERT_EQ(SwHex(Load(card(), true, 500).sw), "9000");
  const std::string before = StateWithoutKeyCounters();
  ASSERT_EQ(Sw(Init(0x05, 0x01, 100)), "9000");
  EXPECT_EQ(Sw("805403000B"
               "20240315"
               "102030"
               "01020304"
               "04"),
            "9302");
  EXPECT_EQ(StateWithoutKeyCounters(), before);
}

TEST_F(CardPurseTest, DebitForUnload_invalidDate_answers6A80) {
  SelectAdf(card());
  ASSERT_EQ(SwHex(Load(card(), true, 500).sw), "9000");
  ASSERT_EQ(Sw(Init(0x05, 0x01, 100)), "9000");
  EXPECT_EQ(Sw("805403000B"
               "20240230"
               "102030"
               "01020304"
               "04"),
            "6A80");
}

TEST_F(CardPurseTest, UpdateOverdrawLimit_invalidTime_answers6A80) {
  SelectAdf(card());
  ASSERT_EQ(Sw(Concat({View(HexToBytes("8050040107"
                                       "01")),
                       View(kTerminal), View(HexToBytes("13"))})),
            "9000");
  EXPECT_EQ(Sw("805800000E001388"
               "20240315"
               "1020AA"
               "00000000"
               "04"),
            "6A80");
}

// ---- GET TRANSACTION PROVE --------------------------------------------------------------------

TEST_F(CardPurseTest, GetTransactionProve_answersForEachOfTheLastTenOnly) {
  SelectAdf(card());
  ASSERT_EQ(SwHex(Load(card(), false, 100000).sw), "9000");
  std::vector<PurchaseOutcome> purchases;
  for (std::uint32_t i = 0; i < 12; ++i) {
    purchases.push_back(Purchase(card(), false, 10 + i, 500 + i));
    ASSERT_EQ(SwHex(purchases.back().sw), "9000");
  }
  // 13 transactions in all: the load and the first two purchases have left the log.
  EXPECT_EQ(Sw("805A000202000008"), "9406");
  for (std::uint16_t serial = 0; serial < 12; ++serial) {
    Bytes prove = HexToBytes("805A00060200");
    prove.push_back(static_cast<std::uint8_t>(serial));
    prove.push_back(0x08);
    const Answer a = Send(card(), prove);
    if (serial < 2) {
      EXPECT_EQ(SwHex(a.sw), "9406") << serial;
    } else {
      EXPECT_EQ(SwHex(a.sw), "9000") << serial;
      EXPECT_EQ(ToHex(View(a.data)),
                ToHex(View(purchases[serial].mac2)) + ToHex(View(purchases[serial].tac)));
    }
  }
  EXPECT_EQ(Purse().log.size(), 10u);
}

TEST_F(CardPurseTest, GetTransactionProve_otherTypeForThatSerial_answers9406) {
  SelectAdf(card());
  ASSERT_EQ(SwHex(Load(card(), false, 500).sw), "9000");
  EXPECT_EQ(Sw("805A000102000008"), "9406");  // serial 0 is an EP load, not an ED load
  EXPECT_EQ(Sw("805A000202000008"), "9000");
}

TEST_F(CardPurseTest, GetTransactionProve_badTypeOrP1_answers6A86) {
  SelectAdf(card());
  EXPECT_EQ(Sw("805A000802000008"), "6A86");
  EXPECT_EQ(Sw("805A000002000008"), "6A86");
  EXPECT_EQ(Sw("805A010602000008"), "6A86");
}

TEST_F(CardPurseTest, GetTransactionProve_wrongLcOrShortLe_isRefused) {
  SelectAdf(card());
  EXPECT_EQ(Sw("805A0006010008"), "6700");
  EXPECT_EQ(Sw("805A000602000004"), "6C08");
}

TEST_F(CardPurseTest, GetTransactionProve_outsideThePurseApplication_answers6985) {
  EXPECT_EQ(Sw("805A000602000008"), "6985");
}

TEST_F(CardPurseTest, PurseCommands_survivePowerCyclesOnlyAsCommittedState) {
  SelectAdf(card());
  ASSERT_EQ(SwHex(Load(card(), false, 700).sw), "9000");
  ASSERT_EQ(Sw(Init(0x01, 0x02, 100)), "9000");
  card().PowerOn();  // a reset forgets the pending INITIALIZE
  SelectAdf(card(), false);
  EXPECT_EQ(Sw(DebitApdu(HexToBytes("01020304"))), "6985");
  TestCard reopened = OpenCard(c_.medium->SurvivingContent());
  EXPECT_EQ(StateJson(*reopened.card), StateJson(card()));
}

}  // namespace
}  // namespace medcard::card_test
