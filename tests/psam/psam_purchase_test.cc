// INIT_SAM_FOR_PURCHASE and CREDIT_SAM_FOR_PURCHASE: MAC1, DPK derivation, the terminal
// transaction serial, MAC2 checks and torn-purchase completion.
#include <gtest/gtest.h>

#include "psam_test_util.h"

namespace medcard::psam::testing {
namespace {

// The oracle itself reproduces the published purchase example, so the comparisons below test
// the PSAM against the standard and not against a shared mistake.
TEST(PsamPurchaseOracle, reproducesThePublishedPurchaseVector) {
  const auto v = LoadVector("purchase session key + MACs (published worked example)");
  Purchase p;
  p.card_random = VectorBytes(v, "random");
  p.offline_serial = VectorBytes(v, "offlineSerial");
  p.amount = ReadU32(View(VectorBytes(v, "amount")));
  p.type = VectorBytes(v, "type")[0];
  p.date = VectorBytes(v, "date");
  p.time = VectorBytes(v, "time");
  const Bytes sespk =
      SessionKey(VectorBytes(v, "DPK"), p, ReadU32(View(VectorBytes(v, "termTxnSerial"))));
  EXPECT_EQ(sespk, VectorBytes(v, "SESPK"));
  EXPECT_EQ(ExpectedMac1(sespk, p, VectorBytes(v, "termNo")), VectorBytes(v, "MAC1"));
  EXPECT_EQ(Mac(sespk, U32(p.amount)), VectorBytes(v, "MAC2"));
}

// The vector's transaction on a PSAM whose EF 16 holds the vector's terminal number: the
// first INIT_SAM uses terminal serial 00000001 as the vector does; the DPK is the one this
// PSAM derives (the vector's DPK cannot be reached without its master key).
TEST(PsamInitSam, vectorTransaction_answersSerialOneAndMac1) {
  const auto v = LoadVector("purchase session key + MACs (published worked example)");
  PsamProfile profile = TestProfile();
  profile.terminal_number = VectorBytes(v, "termNo");
  TestPsam t = PersonalisedPsam(profile);
  Purchase p;
  p.card_random = VectorBytes(v, "random");
  p.offline_serial = VectorBytes(v, "offlineSerial");
  p.amount = ReadU32(View(VectorBytes(v, "amount")));
  p.type = VectorBytes(v, "type")[0];
  p.date = VectorBytes(v, "date");
  p.time = VectorBytes(v, "time");
  const Rsp r = Send(*t, p.InitApdu());
  ASSERT_EQ(r.sw, 0x9000);
  ASSERT_EQ(r.data.size(), 8u);
  EXPECT_EQ(Bytes(r.data.begin(), r.data.begin() + 4), VectorBytes(v, "termTxnSerial"));
  const Bytes dpk = DpkByHand(kPurchaseMasterKeyV1, p.factors);
  const Bytes sespk = SessionKey(dpk, p, 1);
  EXPECT_EQ(Bytes(r.data.begin() + 4, r.data.end()),
            ExpectedMac1(sespk, p, VectorBytes(v, "termNo")));
}

TEST(PsamInitSam, oneFactor_dpkIsTheMasterDiversifiedByTheAsn) {
  TestPsam t = PersonalisedPsam();
  const Purchase p;
  const Rsp r = Send(*t, p.InitApdu());
  ASSERT_EQ(r.sw, 0x9000);
  auto dpk = crypto::Diversify(View(kPurchaseMasterKeyV1), View(p.factors[0]));
  ASSERT_TRUE(dpk.ok());
  EXPECT_EQ(Bytes(r.data.begin() + 4, r.data.end()),
            ExpectedMac1(SessionKey(*dpk, p, 1), p, kTerminalNumber));
}

TEST(PsamInitSam, twoAndThreeFactors_deriveFromTheTopLevelDown) {
  TestPsam t = PersonalisedPsam();
  const Bytes asn = HexToBytes("3100000000004321");
  const Bytes city = HexToBytes("0000000000005301");
  const Bytes province = HexToBytes("0000000000000053");
  {
    Purchase p;
    p.factors = {asn, city};
    const Rsp r = Send(*t, p.InitApdu());
    ASSERT_EQ(r.sw, 0x9000);
    const Bytes dpk = *crypto::Diversify(
        View(*crypto::Diversify(View(kPurchaseMasterKeyV1), View(city))), View(asn));
    EXPECT_EQ(Bytes(r.data.begin() + 4, r.data.end()),
              ExpectedMac1(SessionKey(dpk, p, 1), p, kTerminalNumber));
  }
  {
    Purchase p;
    p.factors = {asn, city, province};
    const Rsp r = Send(*t, p.InitApdu());
    ASSERT_EQ(r.sw, 0x9000);
    const Bytes level1 = *crypto::Diversify(View(kPurchaseMasterKeyV1), View(province));
    const Bytes level2 = *crypto::Diversify(View(level1), View(city));
    const Bytes dpk = *crypto::Diversify(View(level2), View(asn));
    EXPECT_EQ(Bytes(r.data.begin() + 4, r.data.end()),
              ExpectedMac1(SessionKey(dpk, p, 2), p, kTerminalNumber));
  }
}

TEST(PsamInitSam, keyVersionSelectsTheMasterKey) {
  TestPsam t = PersonalisedPsam();
  Purchase p;
  p.key_version = 0x02;
  const Rsp r = Send(*t, p.InitApdu());
  ASSERT_EQ(r.sw, 0x9000);
  EXPECT_EQ(Bytes(r.data.begin() + 4, r.data.end()),
            ExpectedMac1(SessionKey(DpkByHand(kPurchaseMasterKeyV2, p.factors), p, 1), p,
                         kTerminalNumber));
}

TEST(PsamInitSam, unknownKeyVersionOrAlgorithm_answers9403) {
  TestPsam t = PersonalisedPsam();
  const Inspection before = t->Inspect();
  Purchase p;
  p.key_version = 0x03;
  EXPECT_EQ(Send(*t, p.InitApdu()).sw, 0x9403);
  p.key_version = 0x01;
  p.alg_id = 0x04;
  EXPECT_EQ(Send(*t, p.InitApdu()).sw, 0x9403);
  EXPECT_EQ(t->Inspect(), before);
}

TEST(PsamInitSam, badDateTimeOrType_answers6A80) {
  TestPsam t = PersonalisedPsam();
  const Inspection before = t->Inspect();
  Purchase p;
  p.date = HexToBytes("20230229");  // not a leap year
  EXPECT_EQ(Send(*t, p.InitApdu()).sw, 0x6A80);
  p = Purchase{};
  p.date = HexToBytes("2024031A");
  EXPECT_EQ(Send(*t, p.InitApdu()).sw, 0x6A80);
  p = Purchase{};
  p.time = HexToBytes("240000");
  EXPECT_EQ(Send(*t, p.InitApdu()).sw, 0x6A80);
  p = Purchase{};
  p.type = 0x02;  // EP load is not signed by the PSAM
  EXPECT_EQ(Send(*t, p.InitApdu()).sw, 0x6A80);
  EXPECT_EQ(t->Inspect(), before);
}

TEST(PsamInitSam, purchaseTypes_cashWithdrawEdEpAndComposite_areAccepted) {
  TestPsam t = PersonalisedPsam();
  for (std::uint8_t type :
       {std::uint8_t{0x04}, std::uint8_t{0x05}, std::uint8_t{0x06}, std::uint8_t{0x09}}) {
    Purchase p;
    p.type = type;
    EXPECT_EQ(Send(*t, p.InitApdu()).sw, 0x9000) << int{type};
  }
}

TEST(PsamInitSam, dateOutsideThePsamValidity_answers6985) {
  TestPsam t = PersonalisedPsam();
  const Inspection before = t->Inspect();
  Purchase p;
  p.date = HexToBytes("20091231");
  EXPECT_EQ(Send(*t, p.InitApdu()).sw, 0x6985);
  p.date = HexToBytes("20310101");
  EXPECT_EQ(Send(*t, p.InitApdu()).sw, 0x6985);
  p.date = EncodeBcdDate(kValidTo);  // the last valid day still works
  EXPECT_EQ(Send(*t, p.InitApdu()).sw, 0x9000);
  EXPECT_EQ(t->Inspect().terminal_transaction_serial, before.terminal_transaction_serial + 1);
}

TEST(PsamInitSam, malformed_answersPreciseStatusAndChangesNothing) {
  TestPsam t = PersonalisedPsam();
  const Inspection before = t->Inspect();
  const Bytes data = Purchase{}.Data();
  const Bytes no_factor(data.begin(), data.begin() + 20);
  EXPECT_EQ(Send(*t, Apdu(0x80, 0x70, 0x00, 0x00, no_factor, 8)).sw, 0x6700);
  const Bytes ragged(data.begin(), data.end() - 1);
  EXPECT_EQ(Send(*t, Apdu(0x80, 0x70, 0x00, 0x00, ragged, 8)).sw, 0x6700);
  Bytes four_factors = data;
  for (int i = 0; i < 3; ++i) Append(four_factors, View(Purchase{}.factors[0]));
  EXPECT_EQ(Send(*t, Apdu(0x80, 0x70, 0x00, 0x00, four_factors, 8)).sw, 0x6700);
  EXPECT_EQ(Send(*t, Apdu(0x80, 0x70, 0x01, 0x00, data, 8)).sw, 0x6A86);
  EXPECT_EQ(SendHex(*t, "8070000008").sw, 0x6700);  // no data at all
  // Le too small: 6C08 and the serial has not moved.
  EXPECT_EQ(Send(*t, Apdu(0x80, 0x70, 0x00, 0x00, data, 4)).sw, 0x6C08);
  EXPECT_EQ(t->Inspect(), before);
}

TEST(PsamInitSam, withoutLe_stillAnswersTheEightBytes) {
  TestPsam t = PersonalisedPsam();
  const Rsp r = Send(*t, Apdu(0x80, 0x70, 0x00, 0x00, Purchase{}.Data()));
  EXPECT_EQ(r.sw, 0x9000);
  EXPECT_EQ(r.data.size(), 8u);
}

TEST(PsamInitSam, serialIncrementsAndPersistsAcrossReopen) {
  TestPsam t = PersonalisedPsam();
  for (std::uint32_t expected = 1; expected <= 3; ++expected) {
    const Rsp r = Send(*t, Purchase{}.InitApdu());
    ASSERT_EQ(r.sw, 0x9000);
    EXPECT_EQ(ReadU32(View(r.data)), expected);
  }
  TestPsam again = Reopen(t);
  EXPECT_EQ(again->Inspect().terminal_transaction_serial, 3u);
  const Rsp r = Send(*again, Purchase{}.InitApdu());
  EXPECT_EQ(ReadU32(View(r.data)), 4u);
}

TEST(PsamInitSam, serialAtMaximum_answers9402) {
  TestPsam base = PersonalisedPsam();
  internal::State state = StateOf(base);
  state.terminal_serial = 0xFFFFFFFF;
  TestPsam t = PsamWithState(state);
  EXPECT_EQ(Send(*t, Purchase{}.InitApdu()).sw, 0x9402);
  EXPECT_EQ(t->Inspect().terminal_transaction_serial, 0xFFFFFFFFu);
}

// ---- CREDIT_SAM_FOR_PURCHASE -----------------------------------------------------------------

TEST(PsamCreditSam, rightMac2_addsTheTransactionToTheTotals) {
  TestPsam t = PersonalisedPsam();
  const Purchase p;
  const Rsp init = Send(*t, p.InitApdu());
  ASSERT_EQ(init.sw, 0x9000);
  EXPECT_EQ(t->Inspect().pending_purchases, (std::vector<PendingPurchase>{{1, p.amount}}));
  EXPECT_EQ(Send(*t, CreditApdu(CardMac2(kPurchaseMasterKeyV1, p, 1))).sw, 0x9000);
  const Inspection in = t->Inspect();
  EXPECT_EQ(in.totals, (SamTotals{1, p.amount, 1, 1}));
  EXPECT_TRUE(in.pending_purchases.empty());
  EXPECT_EQ(in.completed_serials, std::vector<std::uint32_t>{1});
}

TEST(PsamCreditSam, secondCreditOfTheSameSession_answers6985) {
  TestPsam t = PersonalisedPsam();
  const Purchase p;
  ASSERT_EQ(Send(*t, p.InitApdu()).sw, 0x9000);
  const Bytes mac2 = CardMac2(kPurchaseMasterKeyV1, p, 1);
  EXPECT_EQ(Send(*t, CreditApdu(mac2)).sw, 0x9000);
  EXPECT_EQ(Send(*t, CreditApdu(mac2)).sw, 0x6985);
  EXPECT_EQ(Send(*t, CreditBySerialApdu(1, mac2)).sw, 0x6985);
  EXPECT_EQ(t->Inspect().totals.count, 1u);
}

TEST(PsamCreditSam, wrongMac2_answers9302ChangesNothingAndAllowsRetry) {
  TestPsam t = PersonalisedPsam();
  const Purchase p;
  ASSERT_EQ(Send(*t, p.InitApdu()).sw, 0x9000);
  const Inspection before = t->Inspect();
  Bytes mac2 = CardMac2(kPurchaseMasterKeyV1, p, 1);
  mac2[0] ^= 0xFF;
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Send(*t, CreditApdu(mac2)).sw, 0x9302);
  EXPECT_EQ(t->Inspect(), before);
  mac2[0] ^= 0xFF;
  EXPECT_EQ(Send(*t, CreditApdu(mac2)).sw, 0x9000);
  EXPECT_EQ(t->Inspect().totals.count, 1u);
}

TEST(PsamCreditSam, withoutSession_answers6985) {
  TestPsam t = PersonalisedPsam();
  EXPECT_EQ(SendHex(*t, "807200000401020304").sw, 0x6985);
}

TEST(PsamCreditSam, malformed_answersPreciseStatus) {
  TestPsam t = PersonalisedPsam();
  ASSERT_EQ(Send(*t, Purchase{}.InitApdu()).sw, 0x9000);
  const Inspection before = t->Inspect();
  EXPECT_EQ(SendHex(*t, "8072000003010203").sw, 0x6700);
  EXPECT_EQ(SendHex(*t, "80720000050102030405").sw, 0x6700);
  EXPECT_EQ(SendHex(*t, "80720000").sw, 0x6700);
  EXPECT_EQ(SendHex(*t, "807200010401020304").sw, 0x6A86);
  EXPECT_EQ(t->Inspect(), before);
}

TEST(PsamCreditSam, afterPowerCycle_currentSessionIsGoneButCompletesBySerial) {
  TestPsam t = PersonalisedPsam();
  const Purchase p;
  ASSERT_EQ(Send(*t, p.InitApdu()).sw, 0x9000);
  const Bytes mac2 = CardMac2(kPurchaseMasterKeyV1, p, 1);
  TestPsam again = Reopen(t);  // the terminal lost power between DEBIT and CREDIT_SAM
  EXPECT_EQ(Send(*again, CreditApdu(mac2)).sw, 0x6985);
  EXPECT_EQ(Send(*again, CreditBySerialApdu(1, mac2)).sw, 0x9000);
  EXPECT_EQ(again->Inspect().totals, (SamTotals{1, p.amount, 1, 1}));
}

TEST(PsamCreditSam, tornCompletion_neverCountsTwice) {
  TestPsam t = PersonalisedPsam();
  Purchase first;
  Purchase second;
  second.amount = 777;
  second.card_random = HexToBytes("0BADF00D");
  ASSERT_EQ(Send(*t, first.InitApdu()).sw, 0x9000);
  ASSERT_EQ(Send(*t, second.InitApdu()).sw, 0x9000);
  // The first purchase was torn; the second one completes normally.
  EXPECT_EQ(Send(*t, CreditApdu(CardMac2(kPurchaseMasterKeyV1, second, 2))).sw, 0x9000);
  // The first completes later by serial (MAC2 from GET TRANSACTION PROVE).
  const Bytes mac2 = CardMac2(kPurchaseMasterKeyV1, first, 1);
  Bytes wrong = mac2;
  wrong[3] ^= 1;
  EXPECT_EQ(Send(*t, CreditBySerialApdu(1, wrong)).sw, 0x9302);
  EXPECT_EQ(Send(*t, CreditBySerialApdu(1, mac2)).sw, 0x9000);
  EXPECT_EQ(Send(*t, CreditBySerialApdu(1, mac2)).sw, 0x6985);
  EXPECT_EQ(Send(*t, CreditBySerialApdu(2, CardMac2(kPurchaseMasterKeyV1, second, 2))).sw, 0x6985);
  EXPECT_EQ(Send(*t, CreditBySerialApdu(99, mac2)).sw, 0x6A88);
  const Inspection in = t->Inspect();
  EXPECT_EQ(in.totals, (SamTotals{2, first.amount + second.amount, 2, 1}));
  EXPECT_TRUE(in.pending_purchases.empty());
}

TEST(PsamCreditSam, completingByTheCurrentSerial_endsTheCurrentSession) {
  TestPsam t = PersonalisedPsam();
  const Purchase p;
  ASSERT_EQ(Send(*t, p.InitApdu()).sw, 0x9000);
  const Bytes mac2 = CardMac2(kPurchaseMasterKeyV1, p, 1);
  EXPECT_EQ(Send(*t, CreditBySerialApdu(1, mac2)).sw, 0x9000);
  EXPECT_EQ(Send(*t, CreditApdu(mac2)).sw, 0x6985);
  EXPECT_EQ(t->Inspect().totals.count, 1u);
}

TEST(PsamCreditSam, onlyTheLastEightUncompletedSessionsAreKept) {
  TestPsam t = PersonalisedPsam();
  const Purchase p;
  for (int i = 0; i < 9; ++i) ASSERT_EQ(Send(*t, p.InitApdu()).sw, 0x9000);
  EXPECT_EQ(t->Inspect().pending_purchases.size(), 8u);
  EXPECT_EQ(Send(*t, CreditBySerialApdu(1, CardMac2(kPurchaseMasterKeyV1, p, 1))).sw, 0x6A88);
  EXPECT_EQ(Send(*t, CreditBySerialApdu(2, CardMac2(kPurchaseMasterKeyV1, p, 2))).sw, 0x9000);
  TestPsam again = Reopen(t);
  EXPECT_EQ(Send(*again, CreditBySerialApdu(9, CardMac2(kPurchaseMasterKeyV1, p, 9))).sw, 0x9000);
  EXPECT_EQ(again->Inspect().totals, (SamTotals{2, 2 * p.amount, 2, 9}));
}

TEST(PsamCreditSam, totalsAtTheirMaximum_answer9402AndKeepTheSession) {
  TestPsam base = PersonalisedPsam();
  internal::State state = StateOf(base);
  state.totals = SamTotals{5, internal::kMaxAmount - 10, 1, 5};
  TestPsam t = PsamWithState(state);
  const Purchase p;  // 2500 fen: would overflow the 6-byte amount
  ASSERT_EQ(Send(*t, p.InitApdu()).sw, 0x9000);
  const Inspection before = t->Inspect();
  EXPECT_EQ(Send(*t, CreditApdu(CardMac2(kPurchaseMasterKeyV1, p, 1))).sw, 0x9402);
  EXPECT_EQ(t->Inspect(), before);
}

}  // namespace
}  // namespace medcard::psam::testing
