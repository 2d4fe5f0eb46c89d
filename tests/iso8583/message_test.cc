// Whole messages: exact encoding, strict parsing (truncation at every byte, bitmap and field
// disagreements, secondary bitmap, MTIs), what a refusal can still echo, and log masking.
#include <gtest/gtest.h>

#include <string>

#include "iso8583/iso8583.h"
#include "iso8583/messages.h"
#include "sample_messages.h"

namespace medcard::iso8583 {
namespace {

using testing::SampleRequest;
using testing::SampleResponse;

// The echo test request of terminal POS00001 / merchant 898440154110001, trace 123, batch 12,
// working key version 7, without its MAC: MTI ‖ bitmap ‖ 11 ‖ 41 ‖ 42 ‖ 53 ‖ 60.
constexpr const char* kEchoTestWithoutMac =
    "0820"
    "0020000000C00810"                // fields 11, 41, 42, 53, 60
    "000123"                          // 11
    "504F533030303031"                // 41 "POS00001"
    "383938343430313534313130303031"  // 42 "898440154110001"
    "0600070000000000"                // 53 no PIN, 3DES, key version 007
    "0011000000012301";               // 60 "00" "000012" "301" (11 digits, 0-padded)

Message EchoTestWithoutMac() {
  Message m(0x0820);
  EXPECT_TRUE(m.SetNumber(11, 123).ok());
  EXPECT_TRUE(m.SetText(41, "POS00001").ok());
  EXPECT_TRUE(m.SetText(42, "898440154110001").ok());
  EXPECT_TRUE(m.SetDigits(53, "0600070000000000").ok());
  EXPECT_TRUE(m.SetDigits(60, "00000012301").ok());
  return m;
}

std::vector<Transaction> AllTransactions() {
  std::vector<Transaction> out;
  for (const TransactionSpec& spec : Catalogue()) out.push_back(spec.transaction);
  return out;
}

TEST(MessageEncode, EchoTestRequestBytesArePinned) {
  EXPECT_EQ(ToHex(View(EchoTestWithoutMac().Encode())), kEchoTestWithoutMac);
}

TEST(MessageEncode, FieldsAreWrittenInAscendingOrderWhateverTheSetOrder) {
  Message m(0x0820);
  ASSERT_TRUE(m.SetDigits(60, "00000012301").ok());
  ASSERT_TRUE(m.SetDigits(53, "0600070000000000").ok());
  ASSERT_TRUE(m.SetText(42, "898440154110001").ok());
  ASSERT_TRUE(m.SetText(41, "POS00001").ok());
  ASSERT_TRUE(m.SetNumber(11, 123).ok());
  EXPECT_EQ(ToHex(View(m.Encode())), kEchoTestWithoutMac);
}

TEST(MessageParse, PinnedBytesParseToTheSameMessage) {
  auto parsed = Message::Parse(View(HexToBytes(kEchoTestWithoutMac)));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(*parsed, EchoTestWithoutMac());
  EXPECT_EQ(parsed->mti(), 0x0820);
  EXPECT_EQ(*parsed->GetText(42), "898440154110001");
}

TEST(MessageParse, EveryCatalogueMessageRoundTrips) {
  for (Transaction t : AllTransactions()) {
    for (const Message& m : {SampleRequest(t), SampleResponse(t)}) {
      auto parsed = Message::Parse(View(m.Encode()));
      ASSERT_TRUE(parsed.ok()) << m.ToString() << ": " << parsed.error().message;
      EXPECT_EQ(*parsed, m) << m.ToString();
    }
  }
}

TEST(MessageParse, TruncationAtEveryByteIsAFormatError) {
  for (Transaction t : AllTransactions()) {
    const Bytes full = SampleRequest(t).Encode();
    for (std::size_t n = 0; n < full.size(); ++n) {
      ParseFailure failure;
      auto parsed = Message::Parse(ByteView(full).first(n), &failure);
      ASSERT_FALSE(parsed.ok()) << SpecOf(t).name << " cut to " << n << " bytes";
      EXPECT_EQ(failure.code, ResponseCode::kFormatError) << parsed.error().message;
      EXPECT_EQ(failure.reason, parsed.error().message);
      EXPECT_NE(parsed.error().message.find("truncated"), std::string::npos)
          << parsed.error().message;
    }
  }
}

TEST(MessageParse, TrailingBytesAreRefused) {
  Bytes bytes = HexToBytes(kEchoTestWithoutMac);
  bytes.push_back(0x00);
  ParseFailure failure;
  auto parsed = Message::Parse(View(bytes), &failure);
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.error().message, "iso8583: 1 bytes after the last field");
  EXPECT_EQ(failure.code, ResponseCode::kFormatError);
  EXPECT_EQ(failure.field, 0);
}

TEST(MessageParse, BitmapClaimingAFieldWhoseBytesAreMissingIsRefused) {
  Bytes bytes = HexToBytes(kEchoTestWithoutMac);
  bytes[2 + 7] |= 0x01;  // bit 64 set, no MAC bytes follow
  ParseFailure failure;
  auto parsed = Message::Parse(View(bytes), &failure);
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.error().message,
            "iso8583: field 64 (message authentication code): truncated (needs 8 bytes, 0 left)");
  EXPECT_EQ(failure.field, 64);
}

TEST(MessageParse, BitmapMissingAFieldWhoseBytesArePresentIsRefused) {
  Bytes bytes = HexToBytes(kEchoTestWithoutMac);
  bytes[2 + 6] &= static_cast<std::uint8_t>(~0x08);  // bit 53 cleared: its 8 bytes now are 60's
  auto parsed = Message::Parse(View(bytes));
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.error().message,
            "iso8583: field 60 (reserved private (transaction, batch, network management)): "
            "length 600 above the maximum 17");
}

TEST(MessageParse, BitForAnUndefinedFieldIsRefusedNamingIt) {
  Bytes bytes = HexToBytes(kEchoTestWithoutMac);
  bytes[2] |= 0x08;  // bit 5
  ParseFailure failure;
  auto parsed = Message::Parse(View(bytes), &failure);
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.error().message, "iso8583: bit 5 set: field 5 is not defined by medcard");
  EXPECT_EQ(failure.field, 5);
  EXPECT_EQ(failure.code, ResponseCode::kFormatError);
}

TEST(MessageParse, SecondaryBitmapIsRefused) {
  Bytes bytes = HexToBytes(kEchoTestWithoutMac);
  bytes[2] |= 0x80;
  bytes.insert(bytes.begin() + 10, 8, 0x00);  // an (empty) secondary bitmap
  ParseFailure failure;
  auto parsed = Message::Parse(View(bytes), &failure);
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.error().message,
            "iso8583: bit 1 (secondary bitmap) set: medcard defines no fields 65..128");
  EXPECT_EQ(failure.field, 1);
  EXPECT_EQ(failure.code, ResponseCode::kFormatError);
}

TEST(MessageParse, UnknownMtiIsAnInvalidTransaction) {
  ParseFailure failure;
  auto parsed = Message::Parse(View(HexToBytes("0300 0000000000000000")), &failure);
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.error().message, "iso8583: MTI 0300 is not a medcard message");
  EXPECT_EQ(failure.code, ResponseCode::kInvalidTransaction);
  EXPECT_TRUE(failure.mti_read);
  EXPECT_EQ(failure.partial.mti(), 0x0300);
}

TEST(MessageParse, MtiWithABadBcdDigitIsAFormatError) {
  ParseFailure failure;
  auto parsed = Message::Parse(View(HexToBytes("0A00 0000000000000000")), &failure);
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.error().message, "iso8583: MTI 0A00: bad BCD digit");
  EXPECT_EQ(failure.code, ResponseCode::kFormatError);
  EXPECT_FALSE(failure.mti_read);
}

TEST(MessageParse, FailureKeepsWhatWasReadBeforeTheFault) {
  Bytes bytes = SampleRequest(Transaction::kLoad).Encode();
  bytes.resize(bytes.size() - 12);  // cut inside field 62
  ParseFailure failure;
  ASSERT_FALSE(Message::Parse(View(bytes), &failure).ok());
  EXPECT_EQ(failure.field, 62);
  EXPECT_TRUE(failure.mti_read);
  EXPECT_EQ(failure.partial.mti(), 0x0200);
  EXPECT_EQ(failure.partial.Fields(), (std::vector<int>{3, 4, 11, 22, 25, 41, 42, 49, 53, 60}));
  EXPECT_EQ(*failure.partial.GetNumber(11), 123u);
}

TEST(MessageToString, ShowsFieldsForTheLog) {
  const std::string text = EchoTestWithoutMac().ToString();
  EXPECT_EQ(text,
            "0820 {11=000123 41='POS00001' 42='898440154110001' 53=0600070000000000 "
            "60=00000012301}");
}

TEST(MessageToString, MasksPanAndNeverShowsThePinBlock) {
  const Message m = SampleRequest(Transaction::kBalanceInquiry);
  const std::string text = m.ToString();
  EXPECT_NE(text.find("2=410000******9985 "), std::string::npos) << text;
  EXPECT_EQ(text.find("4100000089999985"), std::string::npos) << text;
  EXPECT_NE(text.find("52=<PIN block, 8 bytes>"), std::string::npos) << text;
  EXPECT_EQ(text.find(ToHex(View(*m.GetBytes(52)))), std::string::npos) << text;
}

TEST(MessageToString, NeverShowsTheSignOnKeyBlock) {
  const Message m = SampleResponse(Transaction::kSignOn);
  const std::string text = m.ToString();
  EXPECT_NE(text.find("62=<key block, 38 bytes>"), std::string::npos) << text;
  const Bytes keys = *m.GetBytes(62);
  EXPECT_EQ(text.find(ToHex(ByteView(keys).first(8))), std::string::npos) << text;
  // Other 62 contents are shown: they hold no key.
  const Message load = SampleRequest(Transaction::kLoad);
  EXPECT_NE(load.ToString().find("62=" + ToHex(View(*load.GetBytes(62)))), std::string::npos);
}

TEST(MessageToString, MasksTrackDataAndShowsOnlyTheStartOfIccData) {
  Message m(0x0200);
  ASSERT_TRUE(m.SetDigits(35, "6222021234567=2512").ok());
  ASSERT_TRUE(m.SetBytes(55, View(HexToBytes("9F2608A1B2C3D4E5F60718"))).ok());
  const std::string text = m.ToString();
  EXPECT_EQ(text, "0200 {35=<track data, 18 characters> 55=9F2608A1...<11 bytes>}");
}

TEST(MessageToString, ShortPanKeepsOnlyItsLastDigits) {
  Message m(0x0200);
  ASSERT_TRUE(m.SetDigits(2, "123456789").ok());
  EXPECT_EQ(m.ToString(), "0200 {2=*****6789}");
}

}  // namespace
}  // namespace medcard::iso8583
