// The exhaustive power-cut test (DESIGN.md, Reliability): for every state-changing command, count
// the sector writes it makes, then cut the power at every one of them, reopen the card from what
// survived, and require exactly the old state or exactly the new one (full Inspect() output and
// the image bytes). A debit whose answer was lost must be recoverable with GET TRANSACTION
// PROVE: the MAC2/TAC the host computes when the new state survived, 9406 when the old one did.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "card_test_util.h"
#include "crypto/crypto.h"
#include "iso7816/tlv.h"

namespace medcard::card_test {
namespace {

// What a scenario's preparation hands over: the command to cut, and for purse transactions the
// proof the host expects afterwards.
struct Prepared {
  Bytes command;
  Bytes prove;           // GET TRANSACTION PROVE for this transaction; empty when none
  Bytes expected_proof;  // what the host computes: MAC2 ‖ TAC or 00000000 ‖ TAC
};

struct Scenario {
  std::string name;
  Bytes start;  // medium content before the command
  // Sends whatever volatile set-up the command needs (SELECT, VERIFY, INITIALIZE, GET
  // CHALLENGE) and builds the command. Must be deterministic: every card opened for the
  // scenario has the same CountingRandom.
  std::function<Prepared(card::Card&)> prepare;
  std::string expected_sw = "9000";
};

TestCard Open(const Bytes& content) {
  return OpenCard(content, card::CardOptions{CountingRandom()});
}

struct Outcome {
  int writes = 0;
  int old_survived = 0;
  int new_survived = 0;
};

// The image (AtomicImage payload) decides which state survived: Inspect() hides secrets such as
// the PIN, so two states can look alike there and still differ.
Outcome RunScenario(const Scenario& s) {
  SCOPED_TRACE(s.name);
  Outcome out;
  // Reference run: the command completes.
  TestCard ref = Open(s.start);
  EXPECT_TRUE(ref.card);
  if (!ref.card) return out;
  const std::string old_json = StateJson(*ref.card);
  const Bytes old_image = ImageOf(s.start);
  const Prepared prepared = s.prepare(*ref.card);
  const int writes_before = ref.medium->sector_writes();
  const Answer done = Send(*ref.card, prepared.command);
  out.writes = ref.medium->sector_writes() - writes_before;
  EXPECT_EQ(SwHex(done.sw), s.expected_sw);
  EXPECT_GT(out.writes, 0) << "the command should change the card";
  const std::string new_json = StateJson(*ref.card);
  const Bytes new_image = ImageOf(ref.medium->SurvivingContent());
  EXPECT_TRUE(new_image != old_image) << "the command should change the image";
  if (!prepared.prove.empty()) {
    // The completed transaction answers what the host computes.
    EXPECT_GE(done.data.size(), 4u);
    EXPECT_EQ(ToHex(View(prepared.expected_proof)).substr(8), ToHex(View(done.data)).substr(0, 8));
  }

  for (int n = 1; n <= out.writes; ++n) {
    SCOPED_TRACE("power cut at sector write " + std::to_string(n) + " of " +
                 std::to_string(out.writes));
    TestCard c = Open(s.start);
    const Prepared again = s.prepare(*c.card);
    EXPECT_EQ(ToHex(View(again.command)), ToHex(View(prepared.command)));
    c.medium->CutPowerAtWrite(n);
    const Answer cut = Send(*c.card, again.command);
    EXPECT_TRUE(cut.empty) << "a card that lost power answers nothing";
    EXPECT_TRUE(c.card->dead());
    EXPECT_TRUE(StateJson(*c.card) == old_json) << "no change may stay in memory";

    TestCard reopened = Open(c.medium->SurvivingContent());
    if (!reopened.card) {
      ADD_FAILURE() << "the card must reopen after a cut";
      continue;
    }
    const Bytes image = ImageOf(c.medium->SurvivingContent());
    const bool is_old = image == old_image;
    const bool is_new = image == new_image;
    if (!is_old && !is_new) {
      ADD_FAILURE() << "an image that is neither the old nor the new one";
      continue;
    }
    // Balance, serials, log, counters: all of the old state or all of the new one.
    EXPECT_TRUE(StateJson(*reopened.card) == (is_old ? old_json : new_json))
        << "Inspect() disagrees with the image that survived";
    (is_old ? out.old_survived : out.new_survived)++;

    if (!prepared.prove.empty()) {
      SelectAdf(*reopened.card, false);
      const Answer proof = Send(*reopened.card, prepared.prove);
      if (is_new) {
        EXPECT_EQ(SwHex(proof.sw), "9000");
        EXPECT_EQ(ToHex(View(proof.data)), ToHex(View(prepared.expected_proof)));
      } else {
        EXPECT_EQ(SwHex(proof.sw), "9406");
      }
    }
    // The reopened card keeps working.
    EXPECT_EQ(SwHex(Send(*reopened.card, "00A40000023F00").sw), "9000");
  }
  EXPECT_EQ(out.old_survived + out.new_survived, out.writes);
  return out;
}

// The medium content after `steps` ran on a card opened on `start`.
Bytes After(const Bytes& start, const std::function<void(card::Card&)>& steps) {
  TestCard c = Open(start);
  steps(*c.card);
  return c.medium->SurvivingContent();
}

Bytes U16Bytes(std::uint16_t v) {
  Bytes b;
  AppendU16(b, v);
  return b;
}

Bytes ProveApdu(std::uint8_t type, std::uint16_t serial) {
  Bytes apdu{0x80, 0x5A, 0x00, type, 0x02};
  Append(apdu, View(U16Bytes(serial)));
  apdu.push_back(0x08);
  return apdu;
}

// ---- Purse ------------------------------------------------------------------------------------

Prepared PrepareCredit(card::Card& card, bool ed, std::uint32_t amount) {
  SelectAdf(card);
  const std::uint8_t type = ed ? card::kTxnEdLoad : card::kTxnEpLoad;
  Bytes init{0x80, 0x50, 0x00, static_cast<std::uint8_t>(ed ? 1 : 2), 0x0B, 0x01};
  AppendU32(init, amount);
  Append(init, View(kTerminal));
  init.push_back(0x10);
  const Answer a = Send(card, init);
  EXPECT_EQ(SwHex(a.sw), "9000");
  const std::uint32_t balance = ReadU32(View(a.data));
  const std::uint16_t serial = ReadU16(View(a.data), 4);
  const Bytes seslk = SessionKeyForLoad(View(CardKey("load")), View(a.data).subspan(8, 4), serial);
  Prepared p;
  p.command = HexToBytes("805200000B");
  Append(p.command, View(kDate));
  Append(p.command, View(kTime));
  Append(p.command,
         View(LoadMac2(View(seslk), amount, type, View(kTerminal), View(kDate), View(kTime))));
  p.command.push_back(0x04);
  p.prove = ProveApdu(type, serial);
  p.expected_proof = Concat(
      {View(Bytes(4, 0)), View(LoadTac(View(CardKey("tac")), balance + amount, serial, amount, type,
                                       View(kTerminal), View(kDate), View(kTime)))});
  return p;
}

Prepared PrepareDebit(card::Card& card, bool ed, std::uint32_t amount, bool cash = false) {
  SelectAdf(card, ed);
  const std::uint8_t type =
      cash ? card::kTxnCashWithdraw : (ed ? card::kTxnEdPurchase : card::kTxnEpPurchase);
  Bytes init{
      0x80, 0x50, static_cast<std::uint8_t>(cash ? 2 : 1), static_cast<std::uint8_t>(ed ? 1 : 2),
      0x0B, 0x01};
  AppendU32(init, amount);
  Append(init, View(kTerminal));
  init.push_back(0x0F);
  const Answer a = Send(card, init);
  EXPECT_EQ(SwHex(a.sw), "9000");
  const std::uint16_t serial = ReadU16(View(a.data), 4);
  const Bytes terminal_serial = HexToBytes("00000077");
  const Bytes sespk = SessionKeyForPurchase(View(CardKey("purchase")), View(a.data).subspan(11, 4),
                                            serial, View(terminal_serial));
  Prepared p;
  p.command = HexToBytes("805401000F");
  Append(p.command, View(terminal_serial));
  Append(p.command, View(kDate));
  Append(p.command, View(kTime));
  Append(p.command,
         View(PurchaseMac1(View(sespk), amount, type, View(kTerminal), View(kDate), View(kTime))));
  p.command.push_back(0x08);
  p.prove = ProveApdu(type, serial);
  p.expected_proof = Concat({View(PurchaseMac2(View(sespk), amount)),
                             View(PurchaseTac(View(CardKey("tac")), amount, type, View(kTerminal),
                                              View(terminal_serial), View(kDate), View(kTime)))});
  return p;
}

class CardPowerCutTest : public ::testing::Test {
 protected:
  static const Bytes& Loaded() {  // ED 50000 and EP 20000 loaded
    static const Bytes* content = new Bytes(After(PersonalisedImage(), [](card::Card& c) {
      SelectAdf(c);
      EXPECT_EQ(SwHex(Load(c, true, 50000).sw), "9000");
      EXPECT_EQ(SwHex(Load(c, false, 20000).sw), "9000");
    }));
    return *content;
  }
};

TEST_F(CardPowerCutTest, CreditForLoad_ed) {
  // A first torn sector always leaves the old state here: the spare slot holds an older image.
  EXPECT_GT(RunScenario({"credit for load ED", Loaded(),
                         [](card::Card& c) { return PrepareCredit(c, true, 1234); }})
                .old_survived,
            0);
}

TEST_F(CardPowerCutTest, CreditForLoad_ep) {
  RunScenario(
      {"credit for load EP", Loaded(), [](card::Card& c) { return PrepareCredit(c, false, 500); }});
}

TEST_F(CardPowerCutTest, DebitForPurchase_ed) {
  EXPECT_GT(RunScenario({"debit for purchase ED", Loaded(),
                         [](card::Card& c) { return PrepareDebit(c, true, 4321); }})
                .old_survived,
            0);
}

TEST_F(CardPowerCutTest, DebitForPurchase_ep) {
  RunScenario({"debit for purchase EP", Loaded(),
               [](card::Card& c) { return PrepareDebit(c, false, 999); }});
}

TEST_F(CardPowerCutTest, DebitForCashWithdraw) {
  RunScenario({"debit for cash withdraw", Loaded(),
               [](card::Card& c) { return PrepareDebit(c, true, 10000, true); }});
}

TEST_F(CardPowerCutTest, DebitForPurchase_answerLostAfterCommit_isRecoveredWithTheProve) {
  TestCard c = Open(Loaded());
  const Prepared p = PrepareDebit(*c.card, false, 777);
  Send(*c.card, p.command);  // the terminal never sees this answer
  TestCard reinserted = Open(c.medium->SurvivingContent());
  SelectAdf(*reinserted.card, false);
  const Answer proof = Send(*reinserted.card, p.prove);
  EXPECT_EQ(SwHex(proof.sw), "9000");
  EXPECT_EQ(ToHex(View(proof.data)), ToHex(View(p.expected_proof)));
}

TEST_F(CardPowerCutTest, DebitForUnload) {
  RunScenario({"debit for unload", Loaded(), [](card::Card& c) {
                 SelectAdf(c);
                 const Answer a = Send(c, "805005010B0100000BB8" + ToHex(View(kTerminal)) + "10");
                 EXPECT_EQ(SwHex(a.sw), "9000");
                 const std::uint16_t serial = ReadU16(View(a.data), 4);
                 const Bytes sesulk =
                     SessionKeyForLoad(View(CardKey("unload")), View(a.data).subspan(8, 4), serial);
                 Prepared p;
                 p.command = Concat({View(HexToBytes("805403000B")), View(kDate), View(kTime),
                                     View(LoadMac2(View(sesulk), 3000, card::kTxnUnload,
                                                   View(kTerminal), View(kDate), View(kTime))),
                                     View(HexToBytes("04"))});
                 p.prove = ProveApdu(card::kTxnUnload, serial);
                 p.expected_proof = Concat(
                     {View(Bytes(4, 0)),
                      View(LoadTac(View(CardKey("tac")), 47000, serial, 3000, card::kTxnUnload,
                                   View(kTerminal), View(kDate), View(kTime)))});
                 return p;
               }});
}

TEST_F(CardPowerCutTest, UpdateOverdrawLimit) {
  RunScenario(
      {"update overdraw limit", Loaded(), [](card::Card& c) {
         SelectAdf(c);
         const Answer a = Send(c,
                               "8050040107"
                               "01" +
                                   ToHex(View(kTerminal)) + "13");
         EXPECT_EQ(SwHex(a.sw), "9000");
         const std::uint16_t serial = ReadU16(View(a.data), 4);
         const Bytes sesuk =
             SessionKeyForLoad(View(CardKey("overdraw")), View(a.data).subspan(11, 4), serial);
         Bytes head = HexToBytes("002710");  // 10000 fen
         head.push_back(card::kTxnOverdrawUpdate);
         Append(head, View(kTerminal));
         Append(head, View(kDate));
         Append(head, View(kTime));
         Prepared p;
         p.command = Concat({View(HexToBytes("805800000E002710")), View(kDate), View(kTime),
                             View(Mac4(View(sesuk), View(head))), View(HexToBytes("04"))});
         const Bytes tac_key = std::move(crypto::TacKey(View(CardKey("tac")))).value();
         p.prove = ProveApdu(card::kTxnOverdrawUpdate, serial);
         p.expected_proof = Concat(
             {View(Bytes(4, 0)),
              View(Mac4(View(tac_key), View(Concat({View(HexToBytes("0000C350")),
                                                    View(U16Bytes(serial)), View(head)}))))});
         return p;
       }});
}

TEST_F(CardPowerCutTest, CreditForLoad_wrongMac2_countsTheFailureAllOrNothing) {
  RunScenario({"credit with a wrong MAC2", Loaded(),
               [](card::Card& c) {
                 Prepared p = PrepareCredit(c, true, 100);
                 p.command[p.command.size() - 2] ^= 0x01;
                 p.prove.clear();
                 return p;
               },
               "9302"});
}

TEST_F(CardPowerCutTest, DebitForPurchase_wrongMac1_countsTheFailureAllOrNothing) {
  RunScenario({"debit with a wrong MAC1", Loaded(),
               [](card::Card& c) {
                 Prepared p = PrepareDebit(c, false, 100);
                 p.command[p.command.size() - 2] ^= 0x01;
                 p.prove.clear();
                 return p;
               },
               "9302"});
}

// ---- PIN --------------------------------------------------------------------------------------

TEST_F(CardPowerCutTest, Verify_wrongPin) {
  RunScenario({"wrong VERIFY", Loaded(),
               [](card::Card& c) {
                 SelectAdf(c, false);
                 return Prepared{HexToBytes("0020000003999999"), {}, {}};
               },
               "63C2"});
}

TEST_F(CardPowerCutTest, Verify_rightPinAfterAWrongOne) {
  const Bytes one_wrong = After(Loaded(), [](card::Card& c) {
    SelectAdf(c, false);
    EXPECT_EQ(SwHex(Send(c, "0020000003999999").sw), "63C2");
  });
  RunScenario({"right VERIFY resetting the counter", one_wrong, [](card::Card& c) {
                 SelectAdf(c, false);
                 return Prepared{HexToBytes("0020000003123456"), {}, {}};
               }});
}

TEST_F(CardPowerCutTest, ChangePin) {
  RunScenario({"CHANGE PIN", Loaded(), [](card::Card& c) {
                 SelectAdf(c, false);
                 return Prepared{HexToBytes("805E010007123456FF654321"), {}, {}};
               }});
}

TEST_F(CardPowerCutTest, ReloadPin) {
  RunScenario({"RELOAD PIN", Loaded(), [](card::Card& c) {
                 SelectAdf(c, false);
                 const Bytes pin = HexToBytes("778899");
                 const Bytes key = std::move(crypto::TacKey(View(CardKey("pin_reload")))).value();
                 return Prepared{Concat({View(HexToBytes("805E000007")), View(pin),
                                         View(Mac4(View(key), View(pin)))}),
                                 {},
                                 {}};
               }});
}

TEST_F(CardPowerCutTest, PinUnblock) {
  RunScenario(
      {"PIN UNBLOCK", Loaded(), [](card::Card& c) {
         SelectAdf(c, false);
         const Bytes dpuk = CardKey("pin_unblock");
         const Bytes block =
             crypto::BlockCipher::Des(View(dpuk))->EncryptEcb(View(HexToBytes("0365432180000000")));
         return Prepared{SmCommand(c, 0x84, 0x24, 0x00, 0x00, block, View(dpuk)), {}, {}};
       }});
}

// ---- Blocking -----------------------------------------------------------------------------------

TEST_F(CardPowerCutTest, ApplicationBlock_temporaryAndPermanent) {
  for (std::uint8_t p2 : {std::uint8_t{0x00}, std::uint8_t{0x01}}) {
    RunScenario(
        {"APPLICATION BLOCK " + std::to_string(p2), Loaded(), [p2](card::Card& c) {
           SelectAdf(c, false);
           return Prepared{
               SmCommand(c, 0x84, 0x1E, 0x00, p2, {}, View(CardKey("maintenance"))), {}, {}};
         }});
  }
}

TEST_F(CardPowerCutTest, ApplicationUnblock) {
  const Bytes blocked = After(Loaded(), [](card::Card& c) {
    SelectAdf(c, false);
    EXPECT_EQ(
        SwHex(Send(c, SmCommand(c, 0x84, 0x1E, 0x00, 0x00, {}, View(CardKey("maintenance")))).sw),
        "9000");
  });
  RunScenario(
      {"APPLICATION UNBLOCK", blocked, [](card::Card& c) {
         Send(c, "00A4040006D15600000503");
         return Prepared{
             SmCommand(c, 0x84, 0x18, 0x00, 0x00, {}, View(CardKey("maintenance"))), {}, {}};
       }});
}

TEST_F(CardPowerCutTest, CardBlock) {
  RunScenario(
      {"CARD BLOCK", Loaded(), [](card::Card& c) {
         SelectAdf(c, false);
         return Prepared{
             SmCommand(c, 0x84, 0x16, 0x00, 0x00, {}, View(CardKey("maintenance"))), {}, {}};
       }});
}

// ---- Secure-messaging file updates ------------------------------------------------------------

TEST_F(CardPowerCutTest, UpdateBinaryWithSm) {
  RunScenario({"SM UPDATE BINARY", Loaded(), [](card::Card& c) {
                 SelectAdf(c, false);
                 return Prepared{SmCommand(c, 0x04, 0xD6, 0x96, 0x02, HexToBytes("C1C2C3"),
                                           View(CardKey("maintenance"))),
                                 {},
                                 {}};
               }});
}

TEST_F(CardPowerCutTest, UpdateRecordWithSm) {
  RunScenario({"SM UPDATE RECORD", Loaded(), [](card::Card& c) {
                 SelectSsse(c);
                 return Prepared{SmCommand(c, 0x04, 0xDC, 0x22, 0x3C, HexToBytes("220102"),
                                           View(CardKey("ssse_maintenance"))),
                                 {},
                                 {}};
               }});
}

TEST_F(CardPowerCutTest, AppendRecordWithSm) {
  RunScenario({"SM APPEND RECORD", Loaded(), [](card::Card& c) {
                 SelectSsse(c);
                 return Prepared{SmCommand(c, 0x04, 0xE2, 0x00, 0x40, Bytes(38, 0x31),
                                           View(CardKey("visit_record"))),
                                 {},
                                 {}};
               }});
}

TEST_F(CardPowerCutTest, UpdateBinaryWithWrongSmMac_countsTheFailureAllOrNothing) {
  RunScenario({"SM UPDATE BINARY with a wrong MAC", Loaded(),
               [](card::Card& c) {
                 SelectAdf(c, false);
                 Bytes apdu = SmCommand(c, 0x04, 0xD6, 0x96, 0x02, HexToBytes("C1C2C3"),
                                        View(CardKey("maintenance")));
                 apdu.back() ^= 0x01;
                 return Prepared{apdu, {}, {}};
               },
               "6988"});
}

// ---- Personalisation: every step of the standard script, then a perso-time APPEND ---------------

TEST_F(CardPowerCutTest, EveryPersonalisationStep) {
  auto layout = card::StandardLayout(TestHolder());
  auto keys = TestWrapper();
  auto script = card::BuildPersonalisation(*layout, keys);
  ASSERT_TRUE(script.ok());
  TestCard blank = MakeBlankCard(card::CardOptions{CountingRandom()});
  Bytes content = blank.medium->SurvivingContent();
  // The selection the script runner has reached before each step: the DF it works in and the
  // EF it just created.
  std::optional<std::uint16_t> df, ef;
  int cut_steps = 0;
  for (std::size_t i = 0; i < script->steps.size(); ++i) {
    const card::ScriptStep step = script->steps[i];
    if (step.command.ins == 0xA4) {  // SELECT changes nothing persistent
      df = ReadU16(View(step.command.data));
      ef.reset();
      continue;
    }
    Scenario s{
        "step " + std::to_string(i + 1) + " " + step.what, content, [df, ef, step](card::Card& c) {
          if (df) {
            EXPECT_EQ(
                SwHex(Send(c, Concat({View(HexToBytes("00A4000C02")), View(U16Bytes(*df))})).sw),
                "9000");
          }
          if (ef) {
            EXPECT_EQ(
                SwHex(Send(c, Concat({View(HexToBytes("00A4000C02")), View(U16Bytes(*ef))})).sw),
                "9000");
          }
          Bytes apdu = step.transport_mac
                           ? SmCommand(c, step.command.cla, step.command.ins, step.command.p1,
                                       step.command.p2, step.command.data, View(TestTransportKey()))
                           : step.command.Serialize();
          return Prepared{apdu, {}, {}};
        }};
    RunScenario(s);
    ++cut_steps;
    content = After(content, [&s](card::Card& c) {
      const Prepared p = s.prepare(c);
      EXPECT_EQ(SwHex(Send(c, p.command).sw), "9000");
    });
    if (step.command.ins == 0xE0) {
      auto fcp = iso7816::ParseBerTlv(View(step.command.data));
      ASSERT_TRUE(fcp.ok());
      const std::uint16_t fid = ReadU16(View(iso7816::FindTag(*fcp, 0x83)->value));
      if (iso7816::FindTag(*fcp, 0x82)->value[0] == 0x38) {
        df = fid;
        ef.reset();
      } else {
        ef = fid;
      }
    }
  }
  EXPECT_GT(cut_steps, 40);
  TestCard done = Open(content);
  EXPECT_EQ(done.card->Inspect().lifecycle, card::Lifecycle::kOperational);
  EXPECT_EQ(StateJson(*done.card), StateJson(*OpenCard(PersonalisedImage()).card));
}

TEST_F(CardPowerCutTest, AppendRecordDuringPersonalisation) {
  TestCard blank = MakeBlankCard(card::CardOptions{CountingRandom()});
  card::FileSpec spec = EfSpec(card::FileType::kCyclic, 0x0101, 0x01, card::AccessCondition::Free(),
                               card::AccessCondition::Never());
  spec.record_length = 8;
  spec.record_count = 3;
  const Bytes fcp = card::EncodeFcp(spec);
  Bytes create{0x80, 0xE0, 0x00, 0x00, static_cast<std::uint8_t>(fcp.size())};
  Append(create, View(fcp));
  ASSERT_EQ(SwHex(Send(*blank.card, create).sw), "9000");
  RunScenario({"perso APPEND RECORD", blank.medium->SurvivingContent(), [](card::Card&) {
                 return Prepared{HexToBytes("00E20008080102030405060708"), {}, {}};
               }});
}

TEST_F(CardPowerCutTest, ExternalAuthenticateFailure) {
  card::CardLayout layout;
  layout.mf.keys = {card::KeySpec{"ext", card::KeyUsage::kExternalAuth, 1, 1, 3}};
  card::ClearKeyWrapper keys(TestTransportKey(), {{"ext", Bytes(16, 0x11)}});
  TestCard c = MakeCardWithLayout(layout, keys);
  RunScenario({"wrong EXTERNAL AUTHENTICATE", c.medium->SurvivingContent(),
               [](card::Card& card) {
                 Send(card, "0084000004");
                 return Prepared{HexToBytes("00820001080102030405060708"), {}, {}};
               },
               "63C2"});
}

}  // namespace
}  // namespace medcard::card_test
