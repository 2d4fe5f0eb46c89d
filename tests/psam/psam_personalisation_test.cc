// Manufacture, personalisation commands (WRITE KEY, EF writes, END PERSONALISATION), the
// personalisation builder and runner, and the lifecycle rules.
#include <gtest/gtest.h>

#include "psam_test_util.h"

namespace medcard::psam::testing {
namespace {

Bytes GetChallenge(Psam& psam) {
  const Rsp r = SendHex(psam, "0084000004");
  EXPECT_EQ(r.sw, 0x9000);
  return r.data;
}

Bytes WriteKeyApdu(const Bytes& data) { return Apdu(0x84, 0xD4, 0x00, 0x00, data); }

Bytes WriteKeyData(const KeyHeader& header, const Bytes& key, const Bytes& challenge,
                   const Bytes& transport_key = kTransportKey) {
  auto data = BuildWriteKeyData(View(transport_key), header, View(key), View(challenge));
  EXPECT_TRUE(data.ok());
  return *data;
}

Bytes EndPersonalisationApdu(const Bytes& challenge) {
  auto mac = BuildEndPersonalisationMac(View(kTransportKey), View(challenge));
  EXPECT_TRUE(mac.ok());
  return Apdu(0x84, 0xEE, 0x00, 0x00, *mac);
}

// Everything END PERSONALISATION requires, written without the script.
void WriteMinimalContent(Psam& psam) {
  ASSERT_EQ(Send(psam, Apdu(0x00, 0xD6, 0x97, 0x00, HexToBytes("012010010120301231"))).sw, 0x9000);
  const KeyHeader purchase{KeyUsage::kPurchase, 1, 1, kAlgTdes, 3};
  ASSERT_EQ(
      Send(psam, WriteKeyApdu(WriteKeyData(purchase, kPurchaseMasterKeyV1, GetChallenge(psam)))).sw,
      0x9000);
  const KeyHeader settlement{KeyUsage::kSettlement, 1, 1, kAlgTdes, 3};
  ASSERT_EQ(
      Send(psam, WriteKeyApdu(WriteKeyData(settlement, kSettlementKey, GetChallenge(psam)))).sw,
      0x9000);
}

TEST(PsamManufacture, newPsam_isInPersonalisationStateWithItsChipSerial) {
  TestPsam t = NewPsam();
  const Inspection in = t->Inspect();
  EXPECT_EQ(in.lifecycle, Lifecycle::kPersonalisation);
  EXPECT_TRUE(in.transport_key_present);
  EXPECT_EQ(in.chip_serial, kChipSerial);
  EXPECT_TRUE(in.keys.empty());
  EXPECT_EQ(in.terminal_transaction_serial, 0u);
}

TEST(PsamManufacture, usedMedium_isRefused) {
  TestPsam t = NewPsam();
  auto again =
      Psam::Manufacture(std::make_unique<nvm::FaultInjectionMedium>(t.medium->SurvivingContent()),
                        ManufactureInfo{kChipSerial, kTransportKey});
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.error().message.find("only once"), std::string::npos);
}

TEST(PsamManufacture, wrongSizes_areRefused) {
  EXPECT_FALSE(Psam::Manufacture(std::make_unique<nvm::FaultInjectionMedium>(),
                                 ManufactureInfo{HexToBytes("0102"), kTransportKey})
                   .ok());
  EXPECT_FALSE(Psam::Manufacture(std::make_unique<nvm::FaultInjectionMedium>(),
                                 ManufactureInfo{kChipSerial, HexToBytes("0011223344556677")})
                   .ok());
}

TEST(PsamOpen, emptyMedium_isNotAPsam) {
  auto opened = Psam::Open(std::make_unique<nvm::FaultInjectionMedium>());
  ASSERT_FALSE(opened.ok());
  EXPECT_NE(opened.error().message.find("never manufactured"), std::string::npos);
}

TEST(PsamOpen, garbageMedium_isAnError) {
  EXPECT_FALSE(Psam::Open(std::make_unique<nvm::FaultInjectionMedium>(Bytes(3000, 0xA5))).ok());
}

TEST(PsamOpen, reopened_keepsEverything) {
  TestPsam t = PersonalisedPsam();
  const Inspection before = t->Inspect();
  TestPsam again = Reopen(t);
  EXPECT_EQ(again->Inspect(), before);
}

TEST(PsamPersonalisation, script_writesFilesAndKeysAndEndsPersonalisation) {
  TestPsam t = PersonalisedPsam();
  const Inspection in = t->Inspect();
  EXPECT_EQ(in.lifecycle, Lifecycle::kOperational);
  EXPECT_FALSE(in.transport_key_present);
  EXPECT_EQ(in.psam_serial, kPsamSerial);
  EXPECT_EQ(in.psam_version, 0x02);
  EXPECT_EQ(in.key_type, 0x01);
  EXPECT_EQ(in.issuer_data, HexToBytes("5301"));
  EXPECT_EQ(in.terminal_number, kTerminalNumber);
  EXPECT_EQ(in.purchase_key_index, 0x01);
  EXPECT_EQ(in.valid_from, EncodeBcdDate(kValidFrom));
  EXPECT_EQ(in.valid_to, EncodeBcdDate(kValidTo));
  ASSERT_EQ(in.keys.size(), 5u);
  EXPECT_EQ(in.keys[0].usage, KeyUsage::kPurchase);
  EXPECT_EQ(in.keys[0].version, 1);
  EXPECT_EQ(in.keys[1].usage, KeyUsage::kPurchase);
  EXPECT_EQ(in.keys[1].version, 2);
  EXPECT_EQ(in.keys[2].usage, KeyUsage::kSettlement);
  EXPECT_EQ(in.keys[2].error_limit, 3);
  EXPECT_FALSE(in.keys[2].locked);
  EXPECT_EQ(in.keys[3].usage, KeyUsage::kMaintenance);
  EXPECT_EQ(in.keys[4].usage, KeyUsage::kVisitRecord);
}

TEST(PsamPersonalisation, inspectionJson_namesKeysButNeverTheirValuesOrCheckValues) {
  TestPsam t = PersonalisedPsam();
  const std::string json = ToJson(t->Inspect()).dump();
  EXPECT_NE(json.find("\"usage\":\"visit_record\""), std::string::npos);
  EXPECT_NE(json.find("\"terminal_number\":\"110100000088\""), std::string::npos);
  EXPECT_NE(json.find("\"valid_to\":\"2030-12-31\""), std::string::npos);
  EXPECT_NE(json.find("\"lifecycle\":\"operational\""), std::string::npos);
  for (const Bytes& key : {kTransportKey, kPurchaseMasterKeyV1, kPurchaseMasterKeyV2,
                           kSettlementKey, kMaintenanceMasterKey, kVisitRecordMasterKey}) {
    const std::string hex = ToHex(View(key));
    EXPECT_EQ(json.find(hex.substr(0, 8)), std::string::npos) << "key bytes leaked";
    EXPECT_EQ(json.find(ToHex(View(*crypto::Kcv(View(key))))), std::string::npos)
        << "check value leaked";
  }
}

TEST(PsamPersonalisation, updateBinary_writesTheFileFreely) {
  TestPsam t = NewPsam();
  EXPECT_EQ(Send(*t, Apdu(0x00, 0xD6, 0x96, 0x00, kTerminalNumber)).sw, 0x9000);
  EXPECT_EQ(t->Inspect().terminal_number, kTerminalNumber);
  // Current EF after SELECT, at an offset.
  EXPECT_EQ(Send(*t, Apdu(0x00, 0xA4, 0x00, 0x0C, HexToBytes("0015"))).sw, 0x9000);
  EXPECT_EQ(Send(*t, Apdu(0x00, 0xD6, 0x00, 0x0A, HexToBytes("07"))).sw, 0x9000);
  EXPECT_EQ(t->Inspect().psam_version, 0x07);
}

TEST(PsamPersonalisation, updateBinary_outsideTheFile_isRefused) {
  TestPsam t = NewPsam();
  const Inspection before = t->Inspect();
  EXPECT_EQ(Send(*t, Apdu(0x00, 0xD6, 0x96, 0x06, HexToBytes("01"))).sw, 0x6B00);
  EXPECT_EQ(Send(*t, Apdu(0x00, 0xD6, 0x96, 0x02, HexToBytes("0102030405"))).sw, 0x6700);
  EXPECT_EQ(Send(*t, Apdu(0x00, 0xD6, 0x99, 0x00, HexToBytes("01"))).sw, 0x6A82);
  EXPECT_EQ(Send(*t, Apdu(0x00, 0xD6, 0x00, 0x00, HexToBytes("01"))).sw, 0x6986);
  EXPECT_EQ(Send(*t, Apdu(0x00, 0xD6, 0xC6, 0x00, HexToBytes("01"))).sw, 0x6A86);
  EXPECT_EQ(SendHex(*t, "00D6960000").sw, 0x6700);  // case 2: no data
  EXPECT_EQ(t->Inspect(), before);
}

TEST(PsamWriteKey, rightMac_storesTheKey) {
  TestPsam t = NewPsam();
  const KeyHeader h{KeyUsage::kVisitRecord, 0x02, 0x05, kAlgTdes, 3};
  EXPECT_EQ(Send(*t, WriteKeyApdu(WriteKeyData(h, kVisitRecordMasterKey, GetChallenge(*t)))).sw,
            0x9000);
  const Inspection in = t->Inspect();
  ASSERT_EQ(in.keys.size(), 1u);
  EXPECT_EQ(in.keys[0], (KeyInfo{KeyUsage::kVisitRecord, 0x02, 0x05, kAlgTdes, 3, 0, false}));
}

TEST(PsamWriteKey, withoutChallenge_answers6984) {
  TestPsam t = NewPsam();
  const Bytes data = WriteKeyData({}, kPurchaseMasterKeyV1, HexToBytes("00000000"));
  EXPECT_EQ(Send(*t, WriteKeyApdu(data)).sw, 0x6984);
  EXPECT_TRUE(t->Inspect().keys.empty());
}

TEST(PsamWriteKey, challengeServesOneCommandOnly) {
  TestPsam t = NewPsam();
  const Bytes challenge = GetChallenge(*t);
  EXPECT_EQ(Send(*t, WriteKeyApdu(WriteKeyData({}, kPurchaseMasterKeyV1, challenge))).sw, 0x9000);
  KeyHeader v2;
  v2.version = 2;
  EXPECT_EQ(Send(*t, WriteKeyApdu(WriteKeyData(v2, kPurchaseMasterKeyV2, challenge))).sw, 0x6984);
  // Any command in between spends it too.
  const Bytes fresh = GetChallenge(*t);
  EXPECT_EQ(SendHex(*t, "00B0960006").sw, 0x9000);
  EXPECT_EQ(Send(*t, WriteKeyApdu(WriteKeyData(v2, kPurchaseMasterKeyV2, fresh))).sw, 0x6984);
  EXPECT_EQ(t->Inspect().keys.size(), 1u);
}

TEST(PsamWriteKey, wrongMac_answers6988AndStoresNothing) {
  TestPsam t = NewPsam();
  const Bytes challenge = GetChallenge(*t);
  Bytes data = WriteKeyData({}, kPurchaseMasterKeyV1, challenge);
  data.back() ^= 0x01;
  EXPECT_EQ(Send(*t, WriteKeyApdu(data)).sw, 0x6988);
  // A cryptogram under another transport key fails the MAC as well.
  const Bytes other = WriteKeyData({}, kPurchaseMasterKeyV1, GetChallenge(*t),
                                   HexToBytes("000102030405060708090A0B0C0D0E0F"));
  EXPECT_EQ(Send(*t, WriteKeyApdu(other)).sw, 0x6988);
  EXPECT_TRUE(t->Inspect().keys.empty());
  EXPECT_EQ(t->Inspect().transport_key_failures, 2);
}

TEST(PsamWriteKey, rightMac_resetsTheTransportKeyFailureCount) {
  TestPsam t = NewPsam();
  EXPECT_EQ(SendHex(*t, "0084000004").sw, 0x9000);
  EXPECT_EQ(SendHex(*t, "84EE00000400000000").sw, 0x6988);
  EXPECT_EQ(t->Inspect().transport_key_failures, 1);
  EXPECT_EQ(Send(*t, WriteKeyApdu(WriteKeyData({}, kPurchaseMasterKeyV1, GetChallenge(*t)))).sw,
            0x9000);
  EXPECT_EQ(t->Inspect().transport_key_failures, 0);
}

TEST(PsamWriteKey, threeWrongMacs_lockTheTransportKey) {
  TestPsam t = NewPsam();
  for (int i = 0; i < 3; ++i) {
    Bytes data = WriteKeyData({}, kPurchaseMasterKeyV1, GetChallenge(*t));
    data.back() ^= 0x01;
    EXPECT_EQ(Send(*t, WriteKeyApdu(data)).sw, 0x6988);
  }
  TestPsam again = Reopen(t);
  EXPECT_EQ(
      Send(*again, WriteKeyApdu(WriteKeyData({}, kPurchaseMasterKeyV1, GetChallenge(*again)))).sw,
      0x6983);
  EXPECT_EQ(Send(*again, EndPersonalisationApdu(GetChallenge(*again))).sw, 0x6983);
  EXPECT_TRUE(again->Inspect().keys.empty());
}

TEST(PsamWriteKey, eightByteChallenge_isTheWholeIv) {
  TestPsam t = NewPsam();
  const Rsp challenge = SendHex(*t, "0084000008");
  ASSERT_EQ(challenge.data.size(), 8u);
  EXPECT_EQ(Send(*t, WriteKeyApdu(WriteKeyData({}, kPurchaseMasterKeyV1, challenge.data))).sw,
            0x9000);
}

TEST(PsamWriteKey, badHeader_answers6A80) {
  TestPsam t = NewPsam();
  KeyHeader unknown_usage;
  unknown_usage.usage = static_cast<KeyUsage>(0x09);
  EXPECT_EQ(
      Send(*t, WriteKeyApdu(WriteKeyData(unknown_usage, kPurchaseMasterKeyV1, GetChallenge(*t))))
          .sw,
      0x6A80);
  KeyHeader sm4;
  sm4.alg_id = 0x04;
  EXPECT_EQ(Send(*t, WriteKeyApdu(WriteKeyData(sm4, kPurchaseMasterKeyV1, GetChallenge(*t)))).sw,
            0x6A80);
  KeyHeader index_zero;
  index_zero.index = 0;
  EXPECT_EQ(
      Send(*t, WriteKeyApdu(WriteKeyData(index_zero, kPurchaseMasterKeyV1, GetChallenge(*t)))).sw,
      0x6A80);
  KeyHeader no_limit;
  no_limit.error_limit = 0;
  EXPECT_EQ(
      Send(*t, WriteKeyApdu(WriteKeyData(no_limit, kPurchaseMasterKeyV1, GetChallenge(*t)))).sw,
      0x6A80);
  // An 8-byte key is well formed in transport but not a 3DES key.
  EXPECT_EQ(
      Send(*t, WriteKeyApdu(WriteKeyData({}, HexToBytes("0102030405060708"), GetChallenge(*t)))).sw,
      0x6A80);
  EXPECT_TRUE(t->Inspect().keys.empty());
}

TEST(PsamWriteKey, cryptogramWithBadPadding_answers6A80) {
  TestPsam t = NewPsam();
  const Bytes challenge = GetChallenge(*t);
  // A right MAC over a cryptogram that does not decrypt to len ‖ key ‖ 80 00..: 24 random bytes.
  const Bytes header = KeyHeader{}.Encode();
  const Bytes cryptogram(24, 0x5A);
  const Bytes mac_input = Concat({View(HexToBytes("84D4000021")), View(header), View(cryptogram)});
  Bytes iv = Bytes(challenge.begin(), challenge.begin() + 4);
  iv.resize(8, 0);
  const Bytes data =
      Concat({View(header), View(cryptogram), View(Mac(kTransportKey, mac_input, iv))});
  EXPECT_EQ(Send(*t, WriteKeyApdu(data)).sw, 0x6A80);
  EXPECT_TRUE(t->Inspect().keys.empty());
}

TEST(PsamWriteKey, malformed_answersPreciseStatusWords) {
  TestPsam t = NewPsam();
  const Bytes data = WriteKeyData({}, kPurchaseMasterKeyV1, GetChallenge(*t));
  EXPECT_EQ(Send(*t, Apdu(0x84, 0xD4, 0x01, 0x00, data)).sw, 0x6A86);
  EXPECT_EQ(Send(*t, Apdu(0x80, 0xD4, 0x00, 0x00, data)).sw, 0x6E00);
  const Bytes short_data(data.begin(), data.end() - 1);
  EXPECT_EQ(Send(*t, WriteKeyApdu(short_data)).sw, 0x6700);
  EXPECT_EQ(Send(*t, WriteKeyApdu(HexToBytes("0101010003"))).sw, 0x6700);
  EXPECT_TRUE(t->Inspect().keys.empty());
}

TEST(PsamWriteKey, sameUsageAndVersion_replacesTheKey) {
  TestPsam t = NewPsam();
  KeyHeader h;
  EXPECT_EQ(Send(*t, WriteKeyApdu(WriteKeyData(h, kPurchaseMasterKeyV2, GetChallenge(*t)))).sw,
            0x9000);
  h.index = 0x07;
  EXPECT_EQ(Send(*t, WriteKeyApdu(WriteKeyData(h, kPurchaseMasterKeyV1, GetChallenge(*t)))).sw,
            0x9000);
  const Inspection in = t->Inspect();
  ASSERT_EQ(in.keys.size(), 1u);
  EXPECT_EQ(in.keys[0].index, 0x07);
}

TEST(PsamWriteKey, sixteenKeysFill_theKeyFile) {
  TestPsam t = NewPsam();
  KeyHeader h;
  h.usage = KeyUsage::kMaintenance;
  for (int v = 1; v <= 16; ++v) {
    h.version = static_cast<std::uint8_t>(v);
    ASSERT_EQ(Send(*t, WriteKeyApdu(WriteKeyData(h, kMaintenanceMasterKey, GetChallenge(*t)))).sw,
              0x9000);
  }
  h.version = 17;
  EXPECT_EQ(Send(*t, WriteKeyApdu(WriteKeyData(h, kMaintenanceMasterKey, GetChallenge(*t)))).sw,
            0x6A84);
  EXPECT_EQ(t->Inspect().keys.size(), 16u);
}

TEST(PsamEndPersonalisation, incompletePsam_answers6985) {
  TestPsam t = NewPsam();
  EXPECT_EQ(Send(*t, EndPersonalisationApdu(GetChallenge(*t))).sw, 0x6985);
  EXPECT_EQ(t->Inspect().lifecycle, Lifecycle::kPersonalisation);
}

TEST(PsamEndPersonalisation, wrongMac_answers6988) {
  TestPsam t = NewPsam();
  WriteMinimalContent(*t);
  Bytes apdu = EndPersonalisationApdu(GetChallenge(*t));
  apdu.back() ^= 0x80;
  EXPECT_EQ(Send(*t, apdu).sw, 0x6988);
  EXPECT_EQ(SendHex(*t, "84EE00000400000000").sw, 0x6984);  // no challenge
  EXPECT_EQ(t->Inspect().lifecycle, Lifecycle::kPersonalisation);
}

TEST(PsamEndPersonalisation, erasesTransportKeyAndRefusesPersonalisationForever) {
  TestPsam t = NewPsam();
  WriteMinimalContent(*t);
  ASSERT_EQ(Send(*t, EndPersonalisationApdu(GetChallenge(*t))).sw, 0x9000);
  EXPECT_EQ(t->Inspect().lifecycle, Lifecycle::kOperational);
  EXPECT_FALSE(t->Inspect().transport_key_present);

  TestPsam after = Reopen(t);
  const Inspection before = after->Inspect();
  EXPECT_EQ(
      Send(*after, WriteKeyApdu(WriteKeyData({}, kPurchaseMasterKeyV2, GetChallenge(*after)))).sw,
      0x6985);
  EXPECT_EQ(Send(*after, Apdu(0x00, 0xD6, 0x96, 0x00, kTerminalNumber)).sw, 0x6985);
  EXPECT_EQ(Send(*after, EndPersonalisationApdu(GetChallenge(*after))).sw, 0x6985);
  EXPECT_EQ(after->Inspect(), before);
}

TEST(PsamLifecycle, personalisingPsam_refusesOperationalCommands) {
  TestPsam t = NewPsam();
  WriteMinimalContent(*t);
  const Inspection before = t->Inspect();
  EXPECT_EQ(Send(*t, Purchase{}.InitApdu()).sw, 0x6985);
  EXPECT_EQ(SendHex(*t, "807200000401020304").sw, 0x6985);
  EXPECT_EQ(SendHex(*t, "807A0000080102030405060708").sw, 0x6985);
  EXPECT_EQ(SendHex(*t, "807C00000401020304").sw, 0x6985);
  EXPECT_EQ(SendHex(*t, "801A2403080102030405060708").sw, 0x6985);
  EXPECT_EQ(SendHex(*t, "80FA0000080102030405060708").sw, 0x6985);
  EXPECT_EQ(t->Inspect(), before);
}

// ---- builder and runner ------------------------------------------------------------------

TEST(PsamPersonalisationScript, listsFilesThenKeysThenEnd) {
  auto script = BuildPersonalisationScript(TestProfile());
  ASSERT_TRUE(script.ok());
  ASSERT_EQ(script->size(), 9u);
  EXPECT_EQ((*script)[0].kind, ScriptStep::Kind::kCommand);
  EXPECT_EQ((*script)[1].command, Apdu(0x00, 0xD6, 0x96, 0x00, kTerminalNumber));
  EXPECT_EQ((*script)[3].kind, ScriptStep::Kind::kWriteKey);
  EXPECT_EQ((*script)[3].key.label, "mpk1");
  EXPECT_EQ((*script)[8].kind, ScriptStep::Kind::kEndPersonalisation);
  for (const ScriptStep& step : *script) {
    for (const Bytes& key : {kPurchaseMasterKeyV1, kSettlementKey}) {
      EXPECT_EQ(std::search(step.command.begin(), step.command.end(), key.begin(), key.end()),
                step.command.end());
    }
  }
}

TEST(PsamPersonalisationScript, invalidProfiles_areRefusedWithTheReason) {
  const auto refused = [](PsamProfile p, std::string_view reason) {
    auto script = BuildPersonalisationScript(p);
    ASSERT_FALSE(script.ok());
    EXPECT_NE(script.error().message.find(reason), std::string::npos) << script.error().message;
  };
  PsamProfile p = TestProfile();
  p.psam_serial.pop_back();
  refused(p, "PSAM serial");
  p = TestProfile();
  p.terminal_number = HexToBytes("0102");
  refused(p, "terminal number");
  p = TestProfile();
  p.valid_from = Date{2031, 1, 1};
  refused(p, "valid-from");
  p = TestProfile();
  p.valid_to = Date{2030, 2, 30};
  refused(p, "real dates");
  p = TestProfile();
  p.keys.erase(p.keys.begin() + 2);  // the settlement key
  refused(p, "settlement");
  p = TestProfile();
  p.keys.erase(p.keys.begin(), p.keys.begin() + 2);
  refused(p, "purchase master key");
  p = TestProfile();
  p.keys.push_back(p.keys[0]);
  refused(p, "two purchase keys with version 01");
  p = TestProfile();
  p.keys[0].header.index = 0;
  refused(p, "index must not be 0");
}

TEST(PsamPersonalisationScript, runner_stopsAtFirstFailureNamingStepAndStatus) {
  TestPsam t = PersonalisedPsam();
  auto script = BuildPersonalisationScript(TestProfile());
  ASSERT_TRUE(script.ok());
  ClearKeyWrapper wrapper = TestWrapper();
  int sent = 0;
  const Status st = RunPersonalisationScript(*script, wrapper, [&](ByteView apdu) {
    ++sent;
    return t->Transmit(apdu);
  });
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(sent, 1);
  EXPECT_NE(st.error().message.find("step 1 of 9 (UPDATE BINARY EF 15"), std::string::npos)
      << st.error().message;
  EXPECT_NE(st.error().message.find("6985"), std::string::npos) << st.error().message;
}

TEST(PsamPersonalisationScript, wrongTransportKey_stopsAtTheFirstWriteKey) {
  TestPsam t = NewPsam();
  auto script = BuildPersonalisationScript(TestProfile());
  ASSERT_TRUE(script.ok());
  ClearKeyWrapper wrong(HexToBytes("000102030405060708090A0B0C0D0E0F"),
                        {{"mpk1", kPurchaseMasterKeyV1}});
  const Status st =
      RunPersonalisationScript(*script, wrong, [&](ByteView apdu) { return t->Transmit(apdu); });
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("step 4 of 9 (WRITE KEY purchase key v01"), std::string::npos)
      << st.error().message;
  EXPECT_NE(st.error().message.find("6988"), std::string::npos) << st.error().message;
  EXPECT_TRUE(t->Inspect().keys.empty());
}

TEST(PsamPersonalisationScript, missingKeyInWrapper_isNamed) {
  TestPsam t = NewPsam();
  auto script = BuildPersonalisationScript(TestProfile());
  ASSERT_TRUE(script.ok());
  ClearKeyWrapper partial(kTransportKey, {{"mpk1", kPurchaseMasterKeyV1}});
  const Status st =
      RunPersonalisationScript(*script, partial, [&](ByteView apdu) { return t->Transmit(apdu); });
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("'mpk2'"), std::string::npos) << st.error().message;
  EXPECT_EQ(t->Inspect().keys.size(), 1u);
}

TEST(PsamPersonalisationScript, muteDevice_isReportedAsNoAnswer) {
  auto script = BuildPersonalisationScript(TestProfile());
  ASSERT_TRUE(script.ok());
  ClearKeyWrapper wrapper = TestWrapper();
  const Status st = RunPersonalisationScript(*script, wrapper, [](ByteView) { return Bytes{}; });
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("no answer"), std::string::npos) << st.error().message;
}

}  // namespace
}  // namespace medcard::psam::testing
