// The exhaustive power-cut test: for every state-changing command, cut the power at every sector
// write of its commit, reopen from what survived, and find exactly the old or exactly the new
// state (terminal serial, totals, sessions and keys move together).
#include <gtest/gtest.h>

#include <functional>

#include "psam_test_util.h"

namespace medcard::psam::testing {
namespace {

const Bytes kHostChallenge = HexToBytes("A0A1A2A3A4A5A6A7");

// Sets up volatile state on a freshly opened PSAM (GET CHALLENGE, INIT_SAM, ...) and returns the
// state-changing command to cut.
using PrepareCommand = std::function<Bytes(Psam&)>;

struct CutResult {
  int write_points = 0;
  int old_states = 0;
  int new_states = 0;
};

CutResult CutAtEveryWrite(const Bytes& content, const PrepareCommand& prepare,
                          std::uint16_t expected_sw = 0x9000) {
  CutResult result;
  // Reference run: how many sector writes the command makes, and the state after it.
  TestPsam ref = OpenFrom(content);
  const Bytes command = prepare(*ref);
  const Inspection before = ref->Inspect();
  const internal::State state_before = StateOf(ref);
  const int writes_before = ref.medium->sector_writes();
  const Rsp r = Send(*ref, command);
  EXPECT_EQ(r.sw, expected_sw);
  result.write_points = ref.medium->sector_writes() - writes_before;
  const Inspection after = ref->Inspect();
  const internal::State state_after = StateOf(ref);
  EXPECT_GT(result.write_points, 0) << "the command wrote nothing";
  EXPECT_NE(before, after) << "the command changed nothing visible";
  EXPECT_EQ(Reopen(ref)->Inspect(), after) << "the completed command did not persist";

  for (int n = 1; n <= result.write_points; ++n) {
    TestPsam t = OpenFrom(content);
    const Bytes cmd = prepare(*t);
    EXPECT_EQ(t->Inspect(), before);
    t.medium->CutPowerAtWrite(n);
    const Rsp cut = Send(*t, cmd);
    EXPECT_TRUE(cut.mute) << "cut at write " << n << " answered " << std::hex << cut.sw;
    EXPECT_TRUE(t->dead());
    EXPECT_TRUE(t->PowerOn().empty());
    TestPsam again = Reopen(t);
    if (!again.psam) {
      ADD_FAILURE() << "cut at write " << n << ": the PSAM does not reopen";
      continue;
    }
    const Inspection seen = again->Inspect();
    const internal::State state_seen = StateOf(again);
    if (seen == before) {
      EXPECT_EQ(state_seen, state_before) << "cut at write " << n;
      ++result.old_states;
    } else if (seen == after) {
      EXPECT_EQ(state_seen, state_after) << "cut at write " << n;
      ++result.new_states;
    } else {
      ADD_FAILURE() << "cut at write " << n << ": neither the old nor the new state\n"
                    << ToJson(seen).dump(1);
    }
  }
  // Cutting the first write can never leave the new state behind.
  EXPECT_GE(result.old_states, 1);
  return result;
}

Bytes Content(const TestPsam& t) { return t.medium->SurvivingContent(); }

Bytes GetChallenge(Psam& psam) { return SendHex(psam, "0084000004").data; }

TEST(PsamPowerCut, initSamForPurchase) {
  TestPsam t = PersonalisedPsam();
  CompletePurchase(*t);
  const CutResult r = CutAtEveryWrite(Content(t), [](Psam&) { return Purchase{}.InitApdu(); });
  EXPECT_GT(r.write_points, 0);
}

TEST(PsamPowerCut, creditSamForPurchase_currentSession) {
  TestPsam t = PersonalisedPsam();
  CompletePurchase(*t);
  CutAtEveryWrite(Content(t), [](Psam& psam) {
    const Rsp init = Send(psam, Purchase{}.InitApdu());
    EXPECT_EQ(init.sw, 0x9000);
    return CreditApdu(CardMac2(kPurchaseMasterKeyV1, Purchase{}, ReadU32(View(init.data))));
  });
}

TEST(PsamPowerCut, creditSamForPurchase_tornCompletionBySerial) {
  TestPsam t = PersonalisedPsam();
  CompletePurchase(*t);
  ASSERT_EQ(Send(*t, Purchase{}.InitApdu()).sw, 0x9000);  // serial 2, left pending
  CutAtEveryWrite(Content(t), [](Psam&) {
    return CreditBySerialApdu(2, CardMac2(kPurchaseMasterKeyV1, Purchase{}, 2));
  });
}

TEST(PsamPowerCut, getSamTotals) {
  TestPsam t = PersonalisedPsam();
  CompletePurchase(*t);
  CutAtEveryWrite(Content(t),
                  [](Psam&) { return Apdu(0x80, 0x7A, 0x00, 0x00, kHostChallenge, 22); });
}

TEST(PsamPowerCut, clearSamTotals) {
  TestPsam t = PersonalisedPsam();
  CompletePurchase(*t);
  CompletePurchase(*t);
  const SamTotals totals = t->Inspect().totals;
  ASSERT_EQ(Send(*t, Apdu(0x80, 0x7A, 0x00, 0x00, kHostChallenge, 22)).sw, 0x9000);
  CutAtEveryWrite(Content(t), [&](Psam&) {
    return Apdu(0x80, 0x7C, 0x00, 0x00, ClearAck(kHostChallenge, totals));
  });
}

TEST(PsamPowerCut, clearSamTotals_wrongMacCountsTheFailure) {
  TestPsam t = PersonalisedPsam();
  CompletePurchase(*t);
  ASSERT_EQ(Send(*t, Apdu(0x80, 0x7A, 0x00, 0x00, kHostChallenge, 22)).sw, 0x9000);
  CutAtEveryWrite(
      Content(t), [](Psam&) { return HexToBytes("807C00000400000000"); }, 0x9302);
}

TEST(PsamPowerCut, writeKey) {
  TestPsam t = NewPsam();
  CutAtEveryWrite(Content(t), [](Psam& psam) {
    auto data = BuildWriteKeyData(View(kTransportKey), KeyHeader{}, View(kPurchaseMasterKeyV1),
                                  View(GetChallenge(psam)));
    EXPECT_TRUE(data.ok());
    return Apdu(0x84, 0xD4, 0x00, 0x00, *data);
  });
}

TEST(PsamPowerCut, writeKey_wrongMacCountsTheFailure) {
  TestPsam t = NewPsam();
  CutAtEveryWrite(
      Content(t),
      [](Psam& psam) {
        auto data = BuildWriteKeyData(View(kTransportKey), KeyHeader{}, View(kPurchaseMasterKeyV1),
                                      View(GetChallenge(psam)));
        EXPECT_TRUE(data.ok());
        data->back() ^= 0x01;
        return Apdu(0x84, 0xD4, 0x00, 0x00, *data);
      },
      0x6988);
}

TEST(PsamPowerCut, updateBinary) {
  TestPsam t = NewPsam();
  CutAtEveryWrite(Content(t), [](Psam&) { return Apdu(0x00, 0xD6, 0x96, 0x00, kTerminalNumber); });
}

TEST(PsamPowerCut, endPersonalisation) {
  TestPsam t = NewPsam();
  auto script = BuildPersonalisationScript(TestProfile());
  ASSERT_TRUE(script.ok());
  script->pop_back();  // everything but END PERSONALISATION
  ClearKeyWrapper wrapper = TestWrapper();
  ASSERT_TRUE(
      RunPersonalisationScript(*script, wrapper, [&](ByteView a) { return t->Transmit(a); }).ok());
  CutAtEveryWrite(Content(t), [](Psam& psam) {
    auto mac = BuildEndPersonalisationMac(View(kTransportKey), View(GetChallenge(psam)));
    EXPECT_TRUE(mac.ok());
    return Apdu(0x84, 0xEE, 0x00, 0x00, *mac);
  });
}

// A PSAM with a full key file and eight pending sessions: its image spans several sectors, so a
// commit has several write points.
TEST(PsamPowerCut, initSamForPurchase_onAMultiSectorImage) {
  PsamProfile profile = TestProfile();
  for (std::uint8_t v = 2; profile.keys.size() < internal::kMaxKeys; ++v) {
    profile.keys.push_back(
        {KeyHeader{KeyUsage::kMaintenance, 0x01, v, kAlgTdes, 3}, "maintenance"});
  }
  TestPsam t = PersonalisedPsam(profile);
  ASSERT_EQ(t->Inspect().keys.size(), internal::kMaxKeys);
  for (std::size_t i = 0; i < internal::kMaxPendingSessions; ++i) {
    ASSERT_EQ(Send(*t, Purchase{}.InitApdu()).sw, 0x9000);
  }
  ASSERT_GT(internal::EncodeImage(StateOf(t)).size(), nvm::FaultInjectionMedium::kSectorSize);
  const CutResult r = CutAtEveryWrite(Content(t), [](Psam&) { return Purchase{}.InitApdu(); });
  EXPECT_GE(r.write_points, 2);
  const CutResult credit = CutAtEveryWrite(Content(t), [](Psam&) {
    return CreditBySerialApdu(5, CardMac2(kPurchaseMasterKeyV1, Purchase{}, 5));
  });
  EXPECT_GE(credit.write_points, 2);
}

TEST(PsamPowerCut, deadPsam_staysMuteUntilReopened) {
  TestPsam t = PersonalisedPsam();
  t.medium->CutPowerAtWrite(1);
  EXPECT_TRUE(Send(*t, Purchase{}.InitApdu()).mute);
  EXPECT_TRUE(t->dead());
  EXPECT_TRUE(t->Transmit(HexToBytes("00B0960006")).empty());
  EXPECT_TRUE(t->Atr().empty());
  TestPsam again = Reopen(t);
  EXPECT_FALSE(again->dead());
  EXPECT_EQ(SendHex(*again, "00B0960006").sw, 0x9000);
  EXPECT_EQ(again->Inspect().terminal_transaction_serial, 0u);
}

}  // namespace
}  // namespace medcard::psam::testing
