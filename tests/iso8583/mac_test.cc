// The message MAC: the exact bytes it covers, field 64's layout, and that it is ISO 9797-1
// algorithm 3 (checked against a computation from single-DES steps).
#include <gtest/gtest.h>

#include <string>

#include "crypto/crypto.h"
#include "iso8583/iso8583.h"
#include "iso8583/messages.h"
#include "sample_messages.h"

namespace medcard::iso8583 {
namespace {

using testing::SampleRequest;
using testing::SampleResponse;

const Bytes kKey = HexToBytes(testing::kMacKeyHex);

Message EchoTest() {
  Message m(0x0820);
  EXPECT_TRUE(m.SetNumber(11, 123).ok());
  EXPECT_TRUE(m.SetText(41, "POS00001").ok());
  EXPECT_TRUE(m.SetText(42, "898440154110001").ok());
  EXPECT_TRUE(m.SetDigits(53, "0600070000000000").ok());
  EXPECT_TRUE(m.SetDigits(60, "00000012301").ok());
  return m;
}

crypto::MacKey Key(const Bytes& key) {
  return std::move(crypto::MacKey::Create(View(key))).value();
}

// ISO 9797-1 algorithm 3 from single-DES steps: pad 80 00.., CBC with K_L from a zero IV, then
// the last block decrypted with K_R and encrypted with K_L.
Bytes RetailMac(const Bytes& key, const Bytes& data) {
  const Bytes left(key.begin(), key.begin() + 8), right(key.begin() + 8, key.end());
  auto des_left = crypto::BlockCipher::Des(View(left));
  auto des_right = crypto::BlockCipher::Des(View(right));
  EXPECT_TRUE(des_left.ok() && des_right.ok());
  Bytes padded = data;
  padded.push_back(0x80);
  while (padded.size() % 8 != 0) padded.push_back(0x00);
  const Bytes cbc = des_left->EncryptCbc(View(padded), View(Bytes(8, 0)));
  const Bytes last(cbc.end() - 8, cbc.end());
  return des_left->EncryptEcb(View(des_right->DecryptEcb(View(last))));
}

TEST(MacInput, EchoTestBytesArePinned) {
  EXPECT_EQ(ToHex(View(MacInput(EchoTest()))),
            "0820"
            "0020000000C00811"  // the bitmap already has bit 64 set
            "000123"
            "504F533030303031"
            "383938343430313534313130303031"
            "0600070000000000"
            "0011000000012301");
}

TEST(MacInput, SignedEchoTestIsPinned) {
  // docs/protocol.md, "Worked example": the whole frame with its MAC under the test key.
  Message m = EchoTest();
  Sign(m, Key(kKey));
  Frame frame;
  frame.tpdu = Tpdu{0x0003, 0x0000};
  frame.message = m;
  EXPECT_EQ(ToHex(View(EncodeFrame(frame))),
            "0047"
            "6000030000"
            "600100000000"
            "0820"
            "0020000000C00811"
            "000123"
            "504F533030303031"
            "383938343430313534313130303031"
            "0600070000000000"
            "0011000000012301"
            "572780BD00000000");
}

TEST(MacInput, IsTheSentMessageWithoutItsLastEightBytes) {
  for (const TransactionSpec& spec : Catalogue()) {
    const Message m = SampleRequest(spec.transaction);
    const Bytes sent = m.Encode();
    EXPECT_EQ(MacInput(m), Bytes(sent.begin(), sent.end() - 8)) << spec.name;
  }
}

TEST(MacInput, IsTheSameBeforeAndAfterSigning) {
  Message m = EchoTest();
  const Bytes before = MacInput(m);
  Sign(m, Key(kKey));
  EXPECT_TRUE(m.Has(64));
  EXPECT_EQ(MacInput(m), before);
}

TEST(Mac, IsIso9797Algorithm3TruncatedToFourBytesThenZeros) {
  Message m = EchoTest();
  Sign(m, Key(kKey));
  const Bytes expected = RetailMac(kKey, MacInput(m));
  const Bytes field64 = *m.GetBytes(64);
  EXPECT_EQ(ToHex(ByteView(field64).first(4)), ToHex(ByteView(expected).first(4)));
  EXPECT_EQ(ToHex(ByteView(field64).subspan(4)), "00000000");
  EXPECT_EQ(*MacOf(m), Bytes(expected.begin(), expected.begin() + 4));
}

TEST(Mac, IsWhatAKeyStoreComputesAsThePbocMac) {
  // The host computes field 64 with KeyStore::Mac, the PBOC 4-byte MAC over MacInput.
  Message m = SampleRequest(Transaction::kLoad);
  auto pboc = crypto::PbocMac(View(kKey), View(MacInput(m)));
  ASSERT_TRUE(pboc.ok());
  EXPECT_EQ(*MacOf(m), *pboc);
}

TEST(Mac, EverySampleVerifiesWithItsKeyAndNotWithAnother) {
  const auto right = Key(kKey);
  const auto wrong = Key(HexToBytes("00112233445566778899AABBCCDDEEFF"));
  for (const TransactionSpec& spec : Catalogue()) {
    for (const Message& m : {SampleRequest(spec.transaction), SampleResponse(spec.transaction)}) {
      EXPECT_TRUE(VerifyMac(m, right).ok()) << spec.name;
      const Status bad = VerifyMac(m, wrong);
      ASSERT_FALSE(bad.ok());
      EXPECT_EQ(bad.error().message, "iso8583: MAC invalid");
    }
  }
}

TEST(Mac, AnyChangedBitBeforeTheMacIsCaught) {
  const auto key = Key(kKey);
  const Bytes sent = SampleRequest(Transaction::kLoad).Encode();
  for (std::size_t i = 0; i + 8 < sent.size(); ++i) {
    Bytes changed = sent;
    changed[i] ^= 0x01;
    auto parsed = Message::Parse(View(changed));
    if (!parsed.ok()) continue;  // the codec caught it already
    EXPECT_FALSE(VerifyMac(*parsed, key).ok()) << "byte " << i;
  }
}

TEST(MacField, LastFourBytesMustBeZero) {
  Message m = EchoTest();
  ASSERT_TRUE(m.SetBytes(64, View(HexToBytes("A1B2C3D400000001"))).ok());
  EXPECT_EQ(MacOf(m).error().message,
            "iso8583: field 64 (message authentication code): bytes 5..8 are 00000001, must be "
            "00000000");
  EXPECT_FALSE(VerifyMac(m, Key(kKey)).ok());
}

TEST(MacField, SetMacTakesExactlyFourBytes) {
  Message m = EchoTest();
  EXPECT_EQ(SetMac(m, View(HexToBytes("A1B2C3D4E5"))).error().message,
            "iso8583: a MAC is 4 bytes, got 5");
  EXPECT_FALSE(m.Has(64));
  ASSERT_TRUE(SetMac(m, View(HexToBytes("A1B2C3D4"))).ok());
  EXPECT_EQ(ToHex(View(*m.GetBytes(64))), "A1B2C3D400000000");
}

TEST(MacField, AbsentMacIsAnError) {
  EXPECT_EQ(MacOf(EchoTest()).error().message,
            "iso8583: field 64 (message authentication code) is absent");
  EXPECT_FALSE(VerifyMac(EchoTest(), Key(kKey)).ok());
}

}  // namespace
}  // namespace medcard::iso8583
