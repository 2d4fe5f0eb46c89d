// GET SAM TOTALS and CLEAR SAM TOTALS: the signed settlement accumulator.
#include <gtest/gtest.h>

#include "psam_test_util.h"

namespace medcard::psam::testing {
namespace {

const Bytes kHostChallenge = HexToBytes("0102030405060708");

Bytes GetTotalsApdu(const Bytes& challenge) { return Apdu(0x80, 0x7A, 0x00, 0x00, challenge, 22); }
Bytes ClearApdu(const Bytes& mac) { return Apdu(0x80, 0x7C, 0x00, 0x00, mac); }

// Two purchases (2500 + 777 fen), serials 1 and 2.
TestPsam PsamWithTwoPurchases() {
  TestPsam t = PersonalisedPsam();
  CompletePurchase(*t);
  Purchase second;
  second.amount = 777;
  CompletePurchase(*t, second);
  return t;
}

TEST(PsamGetTotals, answersTheTotalsSignedUnderTheSettlementKey) {
  TestPsam t = PsamWithTwoPurchases();
  const Rsp r = Send(*t, GetTotalsApdu(kHostChallenge));
  ASSERT_EQ(r.sw, 0x9000);
  ASSERT_EQ(r.data.size(), 22u);
  const ByteView d = View(r.data);
  EXPECT_EQ(ReadU32(d, 0), 2u);
  EXPECT_EQ(ReadU48(d, 4), 2500u + 777u);
  EXPECT_EQ(ReadU32(d, 10), 1u);
  EXPECT_EQ(ReadU32(d, 14), 2u);
  // The host recomputes the MAC over hostChallenge ‖ totals.
  const Bytes totals(r.data.begin(), r.data.begin() + 18);
  EXPECT_EQ(Bytes(r.data.begin() + 18, r.data.end()),
            Mac(kSettlementKey, Concat({View(kHostChallenge), View(totals)})));
}

TEST(PsamGetTotals, remembersTheSignedSnapshotAcrossReopen) {
  TestPsam t = PsamWithTwoPurchases();
  ASSERT_EQ(Send(*t, GetTotalsApdu(kHostChallenge)).sw, 0x9000);
  TestPsam again = Reopen(t);
  const Inspection in = again->Inspect();
  EXPECT_EQ(in.signed_challenge, kHostChallenge);
  EXPECT_EQ(in.signed_totals, in.totals);
}

TEST(PsamGetTotals, emptyAccumulator_signsZeros) {
  TestPsam t = PersonalisedPsam();
  const Rsp r = Send(*t, GetTotalsApdu(kHostChallenge));
  ASSERT_EQ(r.sw, 0x9000);
  EXPECT_EQ(Bytes(r.data.begin(), r.data.begin() + 18), Bytes(18, 0));
}

TEST(PsamGetTotals, malformed_answersPreciseStatus) {
  TestPsam t = PsamWithTwoPurchases();
  const Inspection before = t->Inspect();
  EXPECT_EQ(Send(*t, Apdu(0x80, 0x7A, 0x00, 0x00, HexToBytes("01020304"), 22)).sw, 0x6700);
  EXPECT_EQ(Send(*t, Apdu(0x80, 0x7A, 0x00, 0x00, kHostChallenge, 10)).sw, 0x6C16);
  EXPECT_EQ(Send(*t, Apdu(0x80, 0x7A, 0x01, 0x00, kHostChallenge, 22)).sw, 0x6A86);
  EXPECT_EQ(t->Inspect(), before);
}

TEST(PsamClearTotals, rightAcknowledgement_resetsTheAccumulatorButNotTheSerial) {
  TestPsam t = PsamWithTwoPurchases();
  const SamTotals signed_totals = t->Inspect().totals;
  ASSERT_EQ(Send(*t, GetTotalsApdu(kHostChallenge)).sw, 0x9000);
  EXPECT_EQ(Send(*t, ClearApdu(ClearAck(kHostChallenge, signed_totals))).sw, 0x9000);
  Inspection in = t->Inspect();
  EXPECT_EQ(in.totals, SamTotals{});
  EXPECT_FALSE(in.signed_totals.has_value());
  EXPECT_EQ(in.terminal_transaction_serial, 2u);
  // The next purchase starts a new accumulator at serial 3.
  EXPECT_EQ(CompletePurchase(*t), 3u);
  in = t->Inspect();
  EXPECT_EQ(in.totals, (SamTotals{1, 2500, 3, 3}));
}

TEST(PsamClearTotals, replayedAcknowledgement_answers6985) {
  TestPsam t = PsamWithTwoPurchases();
  const SamTotals signed_totals = t->Inspect().totals;
  ASSERT_EQ(Send(*t, GetTotalsApdu(kHostChallenge)).sw, 0x9000);
  const Bytes ack = ClearAck(kHostChallenge, signed_totals);
  ASSERT_EQ(Send(*t, ClearApdu(ack)).sw, 0x9000);
  CompletePurchase(*t);
  const Inspection before = t->Inspect();
  EXPECT_EQ(Send(*t, ClearApdu(ack)).sw, 0x6985);
  EXPECT_EQ(t->Inspect(), before);
}

TEST(PsamClearTotals, purchaseAfterGetTotals_answers6985AndClearsNothing) {
  TestPsam t = PsamWithTwoPurchases();
  const SamTotals signed_totals = t->Inspect().totals;
  ASSERT_EQ(Send(*t, GetTotalsApdu(kHostChallenge)).sw, 0x9000);
  CompletePurchase(*t);
  const Inspection before = t->Inspect();
  EXPECT_EQ(Send(*t, ClearApdu(ClearAck(kHostChallenge, signed_totals))).sw, 0x6985);
  EXPECT_EQ(t->Inspect(), before);
  EXPECT_EQ(t->Inspect().totals.count, 3u);
}

TEST(PsamClearTotals, thePsamsOwnSignature_isNotAnAcknowledgement) {
  TestPsam t = PsamWithTwoPurchases();
  const Rsp r = Send(*t, GetTotalsApdu(kHostChallenge));
  ASSERT_EQ(r.sw, 0x9000);
  EXPECT_EQ(Send(*t, ClearApdu(Bytes(r.data.begin() + 18, r.data.end()))).sw, 0x9302);
  EXPECT_EQ(t->Inspect().totals.count, 2u);
}

TEST(PsamClearTotals, withoutSignedTotals_answers6985) {
  TestPsam t = PsamWithTwoPurchases();
  EXPECT_EQ(Send(*t, ClearApdu(ClearAck(kHostChallenge, t->Inspect().totals))).sw, 0x6985);
  EXPECT_EQ(t->Inspect().totals.count, 2u);
}

TEST(PsamClearTotals, threeWrongMacs_lockTheSettlementKey) {
  TestPsam t = PsamWithTwoPurchases();
  ASSERT_EQ(Send(*t, GetTotalsApdu(kHostChallenge)).sw, 0x9000);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(SendHex(*t, "807C00000400000000").sw, 0x9302);
  const Inspection in = t->Inspect();
  EXPECT_TRUE(in.keys[2].locked);
  EXPECT_EQ(in.totals.count, 2u);
  // Locked persists and refuses even the right acknowledgement, and GET SAM TOTALS.
  TestPsam again = Reopen(t);
  EXPECT_EQ(Send(*again, ClearApdu(ClearAck(kHostChallenge, in.totals))).sw, 0x6983);
  EXPECT_EQ(Send(*again, GetTotalsApdu(kHostChallenge)).sw, 0x6983);
  EXPECT_EQ(again->Inspect().totals.count, 2u);
}

TEST(PsamClearTotals, rightMac_resetsTheConsecutiveFailureCount) {
  TestPsam t = PsamWithTwoPurchases();
  ASSERT_EQ(Send(*t, GetTotalsApdu(kHostChallenge)).sw, 0x9000);
  EXPECT_EQ(SendHex(*t, "807C00000400000000").sw, 0x9302);
  EXPECT_EQ(SendHex(*t, "807C00000400000000").sw, 0x9302);
  EXPECT_EQ(t->Inspect().keys[2].failures, 2);
  // A right MAC over totals that have changed since: refused, but the MAC was right.
  const SamTotals signed_totals = t->Inspect().totals;
  CompletePurchase(*t);
  EXPECT_EQ(Send(*t, ClearApdu(ClearAck(kHostChallenge, signed_totals))).sw, 0x6985);
  EXPECT_EQ(t->Inspect().keys[2].failures, 0);
}

TEST(PsamClearTotals, malformed_answersPreciseStatus) {
  TestPsam t = PsamWithTwoPurchases();
  ASSERT_EQ(Send(*t, GetTotalsApdu(kHostChallenge)).sw, 0x9000);
  const Inspection before = t->Inspect();
  EXPECT_EQ(SendHex(*t, "807C0000030102").sw, 0x6700);
  EXPECT_EQ(SendHex(*t, "807C00000801020304").sw, 0x6700);
  EXPECT_EQ(SendHex(*t, "807C00000801020304050607").sw, 0x6700);
  EXPECT_EQ(SendHex(*t, "807C01000401020304").sw, 0x6A86);
  EXPECT_EQ(t->Inspect(), before);
}

}  // namespace
}  // namespace medcard::psam::testing
