// Field formats and length types: what each field's bytes look like on the wire, and every way
// a field's bytes or a setter's value can be wrong.
#include <gtest/gtest.h>

#include <string>

#include "iso8583/iso8583.h"

namespace medcard::iso8583 {
namespace {

// A bitmap with just `field` set.
Bytes BitmapWith(int field) {
  Bytes bitmap(8, 0);
  bitmap[static_cast<std::size_t>(field - 1) / 8] =
      static_cast<std::uint8_t>(0x80u >> static_cast<unsigned>((field - 1) % 8));
  return bitmap;
}

// The bytes of a one-field 0800 message after MTI and bitmap.
Bytes FieldBytes(const Message& m) {
  const Bytes encoded = m.Encode();
  return Bytes(encoded.begin() + 10, encoded.end());
}

// A 0800 message with only `field`, whose encoded bytes are `hex`.
Result<Message> ParseOneField(int field, std::string_view hex) {
  return Message::Parse(
      View(Concat({View(HexToBytes("0800")), View(BitmapWith(field)), View(HexToBytes(hex))})));
}

// The parse error without the "iso8583: " every codec error starts with.
std::string ParseError(int field, std::string_view hex) {
  auto parsed = ParseOneField(field, hex);
  if (parsed.ok()) return "(parsed)";
  const std::string& message = parsed.error().message;
  EXPECT_EQ(message.rfind("iso8583: ", 0), 0u) << message;
  return message.substr(9);
}

TEST(FieldTable, DefinesTheCupPosFieldsMedcardNeeds) {
  for (int number : {2,  3,  4,  11, 12, 13, 14, 22, 23, 25, 26, 32, 35, 37, 38,
                     39, 41, 42, 44, 48, 49, 52, 53, 54, 55, 60, 61, 62, 63, 64}) {
    EXPECT_NE(FindField(number), nullptr) << "field " << number;
  }
  EXPECT_EQ(FindField(1), nullptr);  // the secondary-bitmap bit, never a field
  EXPECT_EQ(FindField(5), nullptr);
  EXPECT_EQ(FindField(65), nullptr);
  EXPECT_EQ(FindField(-3), nullptr);
}

TEST(FieldTable, FormatsAndLengthsFollowCupPosUsage) {
  struct Expected {
    int number;
    FieldFormat format;
    LengthType length;
    std::size_t max;
  };
  for (const Expected& e : {Expected{2, FieldFormat::kN, LengthType::kLlvar, 19},
                            Expected{4, FieldFormat::kN, LengthType::kFixed, 12},
                            Expected{35, FieldFormat::kZ, LengthType::kLlvar, 37},
                            Expected{41, FieldFormat::kAns, LengthType::kFixed, 8},
                            Expected{42, FieldFormat::kAns, LengthType::kFixed, 15},
                            Expected{52, FieldFormat::kB, LengthType::kFixed, 8},
                            Expected{55, FieldFormat::kB, LengthType::kLllvar, 255},
                            Expected{60, FieldFormat::kN, LengthType::kLllvar, 17},
                            Expected{62, FieldFormat::kB, LengthType::kLllvar, 999},
                            Expected{64, FieldFormat::kB, LengthType::kFixed, 8}}) {
    const FieldDefinition* def = FindField(e.number);
    ASSERT_NE(def, nullptr);
    EXPECT_EQ(def->format, e.format) << e.number;
    EXPECT_EQ(def->length_type, e.length) << e.number;
    EXPECT_EQ(def->max_length, e.max) << e.number;
    EXPECT_FALSE(def->name.empty());
  }
}

TEST(FieldCodec, FixedNumericIsRightAlignedBcd) {
  Message m(0x0800);
  ASSERT_TRUE(m.SetNumber(4, 1500).ok());
  EXPECT_EQ(ToHex(View(FieldBytes(m))), "000000001500");
  EXPECT_EQ(*m.GetDigits(4), "000000001500");
  EXPECT_EQ(*m.GetNumber(4), 1500u);
}

TEST(FieldCodec, OddLengthFixedNumericGetsALeadingZeroNibble) {
  Message m(0x0800);
  ASSERT_TRUE(m.SetDigits(22, "051").ok());
  EXPECT_EQ(ToHex(View(FieldBytes(m))), "0051");
  auto parsed = ParseOneField(22, "0051");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(*parsed->GetDigits(22), "051");
}

TEST(FieldCodec, OddLengthLlvarNumericCountsDigitsAndPadsOnTheLeft) {
  Message m(0x0800);
  ASSERT_TRUE(m.SetDigits(2, "6222021234567").ok());  // 13 digits
  EXPECT_EQ(ToHex(View(FieldBytes(m))),
            "13"
            "06222021234567");
  auto parsed = ParseOneField(2, "1306222021234567");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(*parsed->GetDigits(2), "6222021234567");
}

TEST(FieldCodec, LlvarNumericAtItsMaximumOf19Digits) {
  Message m(0x0800);
  ASSERT_TRUE(m.SetDigits(2, "6222021234567890123").ok());
  EXPECT_EQ(ToHex(View(FieldBytes(m))),
            "19"
            "06222021234567890123");
  EXPECT_FALSE(m.SetDigits(2, "62220212345678901234").ok());  // 20 digits
  EXPECT_EQ(ParseError(2,
                       "20"
                       "62220212345678901234"),
            "field 2 (primary account number): length 20 above the maximum 19");
}

TEST(FieldCodec, TrackDataIsLeftAlignedWithTheSeparatorAsD) {
  Message m(0x0800);
  ASSERT_TRUE(m.SetDigits(35, "6222021234567=2512").ok());  // 18 characters
  EXPECT_EQ(ToHex(View(FieldBytes(m))),
            "18"
            "6222021234567D2512");
  ASSERT_TRUE(m.SetDigits(35, "622202123=25121").ok());  // 15: a trailing 0 nibble
  EXPECT_EQ(ToHex(View(FieldBytes(m))),
            "15"
            "622202123D251210");
  auto parsed = ParseOneField(35, "15622202123D251210");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(*parsed->GetDigits(35), "622202123=25121");
}

TEST(FieldCodec, TrackDataRefusesNibblesOtherThanDigitsAndD) {
  EXPECT_EQ(ParseError(35,
                       "04"
                       "12E4"),
            "field 35 (track 2 data): bad BCD digit E at digit 3");
  EXPECT_EQ(ParseError(35,
                       "03"
                       "1231"),
            "field 35 (track 2 data): pad nibble 1 is not 0");
  Message m(0x0800);
  EXPECT_FALSE(m.SetDigits(35, "1234A").ok());
}

TEST(FieldCodec, LllvarPrefixIsTwoBcdBytes) {
  Message m(0x0800);
  ASSERT_TRUE(m.SetText(63, "001").ok());
  EXPECT_EQ(ToHex(View(FieldBytes(m))),
            "0003"
            "303031");
  ASSERT_TRUE(m.SetBytes(62, View(Bytes(300, 0xAB))).ok());
  const Bytes encoded = m.Encode();
  // 62 comes before 63: prefix 0300 then 300 bytes.
  EXPECT_EQ(ToHex(ByteView(encoded).subspan(10, 3)), "0300AB");
}

TEST(FieldCodec, LllvarNumericCountsDigits) {
  Message m(0x0800);
  ASSERT_TRUE(m.SetDigits(60, "00000012003").ok());  // 11 digits
  EXPECT_EQ(ToHex(View(FieldBytes(m))),
            "0011"
            "000000012003");
}

TEST(FieldCodec, BinaryFieldAtItsMaximumOf999Bytes) {
  Message m(0x0800);
  ASSERT_TRUE(m.SetBytes(62, View(Bytes(999, 0x5A))).ok());
  const Bytes encoded = m.Encode();
  EXPECT_EQ(encoded.size(), 10u + 2 + 999);
  auto parsed = Message::Parse(View(encoded));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(*parsed, m);
  EXPECT_EQ(m.SetBytes(62, View(Bytes(1000, 0x5A))).error().message,
            "iso8583: field 62 (reserved private (medcard data)): at most 999 bytes, got 1000");
}

TEST(FieldCodec, LllvarPrefixAbove999IsRefused) {
  EXPECT_EQ(ParseError(62, "1000"),
            "field 62 (reserved private (medcard data)): length prefix 1000 above 999");
}

TEST(FieldCodec, LengthPrefixAboveTheFieldMaximumIsRefused) {
  EXPECT_EQ(ParseError(60,
                       "0018"
                       "000000000000000000"),
            "field 60 (reserved private (transaction, batch, network management)): length 18 "
            "above the maximum 17");
}

TEST(FieldCodec, BadBcdInALengthPrefixIsRefused) {
  EXPECT_EQ(ParseError(2,
                       "1A"
                       "0000"),
            "field 2 (primary account number): bad BCD digit in the length prefix 1A");
  EXPECT_EQ(ParseError(63,
                       "00F3"
                       "303030"),
            "field 63 (reserved private (operator)): bad BCD digit in the length prefix 00F3");
}

TEST(FieldCodec, ZeroLengthVariableFieldIsRefused) {
  EXPECT_EQ(ParseError(63, "0000"),
            "field 63 (reserved private (operator)): length 0 (absent fields are left out)");
  Message m(0x0800);
  EXPECT_FALSE(m.SetText(63, "").ok());
  EXPECT_FALSE(m.Has(63));
}

TEST(FieldCodec, BadBcdDigitInANumericFieldNamesTheField) {
  EXPECT_EQ(ParseError(4, "00000000150A"),
            "field 4 (amount, transaction): bad BCD digit A at digit 12");
  EXPECT_EQ(ParseError(11, "F00001"),
            "field 11 (system trace audit number): bad BCD digit F at digit 1");
}

TEST(FieldCodec, OddNumericPadNibbleMustBeZero) {
  EXPECT_EQ(ParseError(22, "1051"),
            "field 22 (point of service entry mode): pad nibble 1 is not 0");
}

TEST(FieldCodec, AlphanumericRefusesSpacesAndPunctuation) {
  EXPECT_EQ(ParseError(39, "3020"),
            "field 39 (response code): character 2 (byte 20) is not a letter or digit");
  Message m(0x0810);
  EXPECT_FALSE(m.SetText(39, "0-").ok());
  EXPECT_TRUE(m.SetText(39, "A0").ok());
}

TEST(FieldCodec, PrintableTextRefusesControlAndNonAsciiBytes) {
  EXPECT_EQ(ParseError(41, "504F53303030301F"),
            "field 41 (card acceptor terminal identification): character 8 (byte 1F) is not "
            "printable ASCII");
  EXPECT_EQ(ParseError(41, "504F5330303030C3"),
            "field 41 (card acceptor terminal identification): character 8 (byte C3) is not "
            "printable ASCII");
  auto parsed = ParseOneField(41, "504F532030302D31");  // "POS 00-1": spaces are fine
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(*parsed->GetText(41), "POS 00-1");
}

TEST(FieldCodec, TruncatedFieldSaysHowMuchWasMissing) {
  EXPECT_EQ(ParseError(4, "000000"),
            "field 4 (amount, transaction): truncated (needs 6 bytes, 3 left)");
  EXPECT_EQ(ParseError(62, "00"),
            "field 62 (reserved private (medcard data)): truncated in its length prefix (2 bytes, "
            "1 left)");
  EXPECT_EQ(ParseError(62,
                       "0005"
                       "0102"),
            "field 62 (reserved private (medcard data)): truncated (needs 5 bytes, 2 left)");
}

TEST(FieldSetters, FixedFieldsNeedTheirExactLength) {
  Message m(0x0200);
  EXPECT_EQ(m.SetText(41, "POS0001").error().message,
            "iso8583: field 41 (card acceptor terminal identification): must be exactly 8 bytes, "
            "got 7");
  EXPECT_EQ(m.SetDigits(3, "31000").error().message,
            "iso8583: field 3 (processing code): must be exactly 6 digits, got 5");
  EXPECT_EQ(m.SetBytes(52, View(Bytes(7))).error().message,
            "iso8583: field 52 (PIN data): must be exactly 8 bytes, got 7");
  EXPECT_TRUE(m.Fields().empty());
}

TEST(FieldSetters, SetNumberPadsFixedFieldsAndRefusesTooManyDigits) {
  Message m(0x0200);
  ASSERT_TRUE(m.SetNumber(11, 42).ok());
  EXPECT_EQ(*m.GetDigits(11), "000042");
  EXPECT_FALSE(m.SetNumber(11, 1000000).ok());
  EXPECT_EQ(*m.GetNumber(11), 42u);            // unchanged
  ASSERT_TRUE(m.SetNumber(2, 12345678).ok());  // variable: as many digits as the value has
  EXPECT_EQ(*m.GetDigits(2), "12345678");
}

TEST(FieldSetters, WrongKindOfValueIsRefused) {
  Message m(0x0200);
  EXPECT_EQ(m.SetText(4, "000000001500").error().message,
            "iso8583: field 4 (amount, transaction) is n (numeric), not text");
  EXPECT_FALSE(m.SetNumber(41, 1).ok());
  EXPECT_FALSE(m.SetBytes(39, View(HexToBytes("3030"))).ok());
  EXPECT_FALSE(m.SetDigits(62, "12").ok());
  ASSERT_TRUE(m.SetText(41, "POS00001").ok());
  EXPECT_FALSE(m.GetBytes(41).ok());
  EXPECT_FALSE(m.GetNumber(41).ok());
}

TEST(FieldSetters, UndefinedFieldsAreRefused) {
  Message m(0x0200);
  EXPECT_EQ(m.SetNumber(5, 1).error().message, "iso8583: field 5 is not defined by medcard");
  EXPECT_FALSE(m.SetBytes(65, View(Bytes(8))).ok());
  EXPECT_FALSE(m.SetBytes(1, View(Bytes(8))).ok());
  EXPECT_FALSE(m.GetBytes(128).ok());
}

TEST(FieldGetters, AbsentFieldIsAnError) {
  Message m(0x0200);
  EXPECT_EQ(m.GetNumber(4).error().message, "iso8583: field 4 (amount, transaction) is absent");
  EXPECT_FALSE(m.GetText(41).ok());
}

TEST(FieldGetters, NumericFieldLongerThan19DigitsIsNotANumber) {
  Message m(0x0500);
  ASSERT_TRUE(m.SetDigits(48, std::string(36, '1')).ok());
  EXPECT_EQ(m.GetNumber(48).error().message,
            "iso8583: field 48 (additional data, private) has 36 digits, too many for a number");
  EXPECT_EQ(*m.GetDigits(48), std::string(36, '1'));
}

TEST(FieldSetters, ReplacingAFieldKeepsOneCopyInOrder) {
  Message m(0x0200);
  ASSERT_TRUE(m.SetNumber(11, 1).ok());
  ASSERT_TRUE(m.SetNumber(4, 5).ok());
  ASSERT_TRUE(m.SetNumber(11, 2).ok());
  EXPECT_EQ(m.Fields(), (std::vector<int>{4, 11}));
  EXPECT_EQ(*m.GetNumber(11), 2u);
  m.Remove(4);
  EXPECT_EQ(m.Fields(), (std::vector<int>{11}));
}

}  // namespace
}  // namespace medcard::iso8583
