#include "iso7816/apdu.h"

#include <gtest/gtest.h>

#include <string>
#include <variant>
#include <vector>

namespace medcard::iso7816 {
namespace {

CommandApdu MustParse(const Bytes& raw) {
  auto parsed = CommandApdu::Parse(View(raw));
  if (auto* sw = std::get_if<StatusWord>(&parsed)) {
    ADD_FAILURE() << ToHex(raw) << " rejected with " << sw->ToString();
    return {};
  }
  return std::get<CommandApdu>(parsed);
}

std::optional<StatusWord> ParseError(const Bytes& raw) {
  auto parsed = CommandApdu::Parse(View(raw));
  if (auto* sw = std::get_if<StatusWord>(&parsed)) return *sw;
  return std::nullopt;
}

Bytes Filled(std::size_t n, std::uint8_t seed = 0) {
  Bytes out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::uint8_t>(i * 7 + seed);
  return out;
}

// --- Parse: every case and form (ISO 7816-3 §12.1.3) ---

TEST(CommandApduParse, Case1IsTheBareHeader) {
  CommandApdu apdu = MustParse(HexToBytes("00A40000"));
  EXPECT_EQ(apdu.Case(), 1);
  EXPECT_EQ(apdu.cla, 0x00);
  EXPECT_EQ(apdu.ins, 0xA4);
  EXPECT_TRUE(apdu.data.empty());
  EXPECT_FALSE(apdu.le.has_value());
  EXPECT_FALSE(apdu.extended);
}

TEST(CommandApduParse, Case2ShortReadsLe) {
  CommandApdu apdu = MustParse(HexToBytes("805C000204"));  // GET BALANCE, EP
  EXPECT_EQ(apdu.Case(), 2);
  EXPECT_EQ(apdu.cla, 0x80);
  EXPECT_EQ(apdu.ins, 0x5C);
  EXPECT_EQ(apdu.p1, 0x00);
  EXPECT_EQ(apdu.p2, 0x02);
  EXPECT_EQ(apdu.le, 4u);
  EXPECT_FALSE(apdu.extended);
}

TEST(CommandApduParse, Case2ShortLe00Means256) {
  EXPECT_EQ(MustParse(HexToBytes("00B0960000")).le, 256u);
}

TEST(CommandApduParse, Case3ShortTakesExactlyLcBytes) {
  CommandApdu apdu = MustParse(HexToBytes("0020000003123456"));
  EXPECT_EQ(apdu.Case(), 3);
  EXPECT_EQ(apdu.data, HexToBytes("123456"));
  EXPECT_FALSE(apdu.le.has_value());
  EXPECT_FALSE(apdu.extended);
}

TEST(CommandApduParse, Case3ShortWithMaximumLc255) {
  Bytes raw = HexToBytes("00D68100FF");
  Append(raw, View(Filled(255)));
  CommandApdu apdu = MustParse(raw);
  EXPECT_EQ(apdu.Case(), 3);
  EXPECT_EQ(apdu.data, Filled(255));
  EXPECT_FALSE(apdu.extended);
}

TEST(CommandApduParse, Case4ShortReadsDataAndLe) {
  // INITIALIZE FOR LOAD, ED: keyIndex ‖ amount ‖ termNo, Le 10.
  CommandApdu apdu =
      MustParse(HexToBytes("805000010B"
                           "01"
                           "00002710"
                           "112233445566"
                           "10"));
  EXPECT_EQ(apdu.Case(), 4);
  EXPECT_EQ(apdu.data, HexToBytes("0100002710112233445566"));
  EXPECT_EQ(apdu.le, 0x10u);
  EXPECT_FALSE(apdu.extended);
}

TEST(CommandApduParse, Case4ShortLe00Means256) {
  CommandApdu apdu = MustParse(HexToBytes("00A4040007A000000003101000"));
  EXPECT_EQ(apdu.data, HexToBytes("A0000000031010"));
  EXPECT_EQ(apdu.le, 256u);
}

TEST(CommandApduParse, Case2ExtendedReadsTwoByteLe) {
  CommandApdu apdu = MustParse(HexToBytes("00B00000000200"));
  EXPECT_EQ(apdu.Case(), 2);
  EXPECT_EQ(apdu.le, 512u);
  EXPECT_TRUE(apdu.extended);
}

TEST(CommandApduParse, Case2ExtendedLe0000Means65536) {
  CommandApdu apdu = MustParse(HexToBytes("00B00000000000"));
  EXPECT_EQ(apdu.le, 65536u);
  EXPECT_TRUE(apdu.extended);
}

TEST(CommandApduParse, Case3ExtendedTakesTwoByteLc) {
  Bytes raw = HexToBytes("00D60000000100");
  Append(raw, View(Filled(256)));
  CommandApdu apdu = MustParse(raw);
  EXPECT_EQ(apdu.Case(), 3);
  EXPECT_EQ(apdu.data, Filled(256));
  EXPECT_FALSE(apdu.le.has_value());
  EXPECT_TRUE(apdu.extended);
}

TEST(CommandApduParse, Case3ExtendedWithSmallLcStaysExtended) {
  CommandApdu apdu = MustParse(HexToBytes("00200000000003123456"));
  EXPECT_EQ(apdu.data, HexToBytes("123456"));
  EXPECT_TRUE(apdu.extended);
}

TEST(CommandApduParse, Case3ExtendedWithMaximumLc65535) {
  Bytes raw = HexToBytes("00D6000000FFFF");
  Append(raw, View(Filled(65535)));
  CommandApdu apdu = MustParse(raw);
  EXPECT_EQ(apdu.data.size(), 65535u);
  EXPECT_EQ(apdu.data, Filled(65535));
}

TEST(CommandApduParse, Case4ExtendedHasTwoByteLeAfterTheData) {
  CommandApdu apdu = MustParse(HexToBytes("80FA000000000311223301F4"));
  EXPECT_EQ(apdu.Case(), 4);
  EXPECT_EQ(apdu.data, HexToBytes("112233"));
  EXPECT_EQ(apdu.le, 500u);
  EXPECT_TRUE(apdu.extended);
}

TEST(CommandApduParse, Case4ExtendedLe0000Means65536) {
  CommandApdu apdu =
      MustParse(HexToBytes("80FA00000000021122"
                           "0000"));
  EXPECT_EQ(apdu.data, HexToBytes("1122"));
  EXPECT_EQ(apdu.le, 65536u);
}

// --- Parse: every error answers 6700 ---

TEST(CommandApduParse, ShorterThanHeaderIsWrongLength) {
  for (const char* hex : {"", "00", "00A4", "00A404"}) {
    EXPECT_EQ(ParseError(HexToBytes(hex)), sw::kWrongLength) << hex;
  }
}

TEST(CommandApduParse, ShortBodyLongerThanLcIsWrongLength) {
  EXPECT_EQ(ParseError(HexToBytes("00200000031234567800")), sw::kWrongLength);
  EXPECT_EQ(ParseError(HexToBytes("002000000312345678AABB")), sw::kWrongLength);
}

TEST(CommandApduParse, ShortBodyShorterThanLcIsWrongLength) {
  EXPECT_EQ(ParseError(HexToBytes("00200000051234")), sw::kWrongLength);
  EXPECT_EQ(ParseError(HexToBytes("00200000FF00")), sw::kWrongLength);
}

TEST(CommandApduParse, FiveBytesAreAlwaysCase2NotAnEmptyCase3) {
  EXPECT_EQ(MustParse(HexToBytes("00200000FF")).le, 255u);
}

TEST(CommandApduParse, ShortLcZeroIsWrongLength) {
  // Lc = 00 cannot start a short body: with one more byte it is an extended header cut short.
  EXPECT_EQ(ParseError(HexToBytes("00A404000000")), sw::kWrongLength);
}

TEST(CommandApduParse, ExtendedWithShortBodyIsWrongLength) {
  EXPECT_EQ(ParseError(HexToBytes("00B0000000")), std::nullopt) << "5 bytes: case 2, Le 256";
  EXPECT_EQ(ParseError(HexToBytes("00B000000001")), sw::kWrongLength);
}

TEST(CommandApduParse, ExtendedLcZeroIsWrongLength) {
  EXPECT_EQ(ParseError(HexToBytes("00D600000000001122")), sw::kWrongLength);
  EXPECT_EQ(ParseError(HexToBytes("00D60000000000AABB")), sw::kWrongLength);
}

TEST(CommandApduParse, ExtendedBodyLengthMismatchIsWrongLength) {
  EXPECT_EQ(ParseError(HexToBytes("00D600000000031122")), sw::kWrongLength);      // 1 short
  EXPECT_EQ(ParseError(HexToBytes("00D60000000003112233AA")), sw::kWrongLength);  // 1 over
  EXPECT_EQ(ParseError(HexToBytes("00D60000000003112233AABBCC")), sw::kWrongLength);
}

TEST(CommandApduParse, MoreThan65535DataBytesIsWrongLength) {
  Bytes raw = HexToBytes("00D6000000FFFF");
  Append(raw, View(Filled(65535 + 3)));  // no Lc/Le split explains 65538 bytes
  EXPECT_EQ(ParseError(raw), sw::kWrongLength);
}

TEST(CommandApduParse, EveryPrefixOfACase3IsRejectedOrIsItselfConsistent) {
  const Bytes full = HexToBytes("0020000006123456FFFFFF");
  for (std::size_t n = 0; n < full.size(); ++n) {
    const Bytes prefix(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    auto error = ParseError(prefix);
    if (n < 4 || n > 5) {
      EXPECT_EQ(error, sw::kWrongLength) << "prefix of " << n << " bytes";
    } else {
      EXPECT_EQ(error, std::nullopt) << "prefix of " << n << " bytes is case 1 or 2";
    }
  }
}

TEST(CommandApduParse, EveryPrefixOfAnExtendedCase4IsRejectedOrReserializesToItself) {
  Bytes full = HexToBytes("80FA0000000104");
  Append(full, View(Filled(260)));
  Append(full, {0x01, 0x08});
  int accepted = 0;
  for (std::size_t n = 0; n < full.size(); ++n) {
    const Bytes prefix(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    auto parsed = CommandApdu::Parse(View(prefix));
    if (auto* apdu = std::get_if<CommandApdu>(&parsed)) {
      ++accepted;
      EXPECT_EQ(apdu->Serialize(), prefix) << "prefix of " << n << " bytes";
    } else {
      EXPECT_EQ(std::get<StatusWord>(parsed), sw::kWrongLength);
    }
  }
  // Only the header (case 1), header + 1 (case 2), the 7-byte case 2 extended, and the full
  // data without Le (case 3 extended) are APDUs in their own right.
  EXPECT_EQ(accepted, 4);
}

TEST(CommandApduParse, ShortCase4WithoutItsLeIsACase3) {
  CommandApdu apdu = MustParse(HexToBytes("805000010B0100002710112233445566"));
  EXPECT_EQ(apdu.Case(), 3);
}

// --- Serialize ---

TEST(CommandApduSerialize, BuildersProduceTheShortForms) {
  EXPECT_EQ(ToHex(CommandApdu::Case1(0x00, 0xA4, 0x00, 0x00).Serialize()), "00A40000");
  EXPECT_EQ(ToHex(CommandApdu::Case2(0x80, 0x5C, 0x00, 0x02, 4).Serialize()), "805C000204");
  EXPECT_EQ(ToHex(CommandApdu::Case3(0x00, 0x20, 0x00, 0x00, HexToBytes("123456")).Serialize()),
            "0020000003123456");
  EXPECT_EQ(
      ToHex(CommandApdu::Case4(0x80, 0x50, 0x01, 0x02, HexToBytes("01000003E8112233445566"), 0x0F)
                .Serialize()),
      "805001020B01000003E81122334455660F");
}

TEST(CommandApduSerialize, Le256IsEncodedAs00) {
  EXPECT_EQ(ToHex(CommandApdu::Case2(0x00, 0xB0, 0x96, 0x00, 256).Serialize()), "00B0960000");
}

TEST(CommandApduSerialize, DataOver255ForcesExtended) {
  Bytes wire = CommandApdu::Case3(0x00, 0xD6, 0x00, 0x00, Filled(256)).Serialize();
  ASSERT_EQ(wire.size(), 4u + 3u + 256u);
  EXPECT_EQ(ToHex(Bytes(wire.begin(), wire.begin() + 7)), "00D60000000100");
}

TEST(CommandApduSerialize, LeOver256ForcesExtended) {
  EXPECT_EQ(ToHex(CommandApdu::Case2(0x00, 0xB0, 0x00, 0x00, 257).Serialize()), "00B00000000101");
  EXPECT_EQ(ToHex(CommandApdu::Case4(0x00, 0xB0, 0x00, 0x00, HexToBytes("AA"), 65536).Serialize()),
            "00B0000000"
            "0001"
            "AA"
            "0000");
}

TEST(CommandApduSerialize, ExtendedFlagUsesExtendedFieldsEvenForSmallSizes) {
  CommandApdu apdu = CommandApdu::Case4(0x80, 0xFA, 0x00, 0x00, HexToBytes("112233"), 8);
  apdu.extended = true;
  EXPECT_EQ(ToHex(apdu.Serialize()), "80FA00000000031122330008");
  CommandApdu case2 = CommandApdu::Case2(0x00, 0xB0, 0x00, 0x00, 256);
  case2.extended = true;
  EXPECT_EQ(ToHex(case2.Serialize()), "00B00000000100");
  CommandApdu case1 = CommandApdu::Case1(0x00, 0xA4, 0x00, 0x00);
  case1.extended = true;
  EXPECT_EQ(ToHex(case1.Serialize()), "00A40000") << "case 1 has no length fields";
}

TEST(CommandApduRoundTrip, ParseOfSerializeGivesBackEveryCombination) {
  const std::vector<std::size_t> data_sizes = {0, 1, 200, 255, 256, 4096, 65535};
  const std::vector<std::optional<std::uint32_t>> les = {std::nullopt, 1u,    255u,   256u,
                                                         257u,         4096u, 65535u, 65536u};
  int checked = 0;
  for (std::size_t size : data_sizes) {
    for (const auto& le : les) {
      for (bool extended : {false, true}) {
        CommandApdu apdu;
        apdu.cla = 0x84;
        apdu.ins = 0xD6;
        apdu.p1 = 0x95;
        apdu.p2 = 0x07;
        apdu.data = Filled(size, static_cast<std::uint8_t>(size));
        apdu.le = le;
        apdu.extended = extended;
        const Bytes wire = apdu.Serialize();
        CommandApdu back = MustParse(wire);
        CommandApdu expected = apdu;
        // Case 1 has no length field to carry the flag; big sizes force the extended form.
        expected.extended = apdu.Case() != 1 && (extended || size > 255 || (le && *le > 256));
        EXPECT_EQ(back, expected) << "data " << size << " le " << (le ? *le : 0) << " ext "
                                  << extended;
        EXPECT_EQ(back.Serialize(), wire);
        ++checked;
      }
    }
  }
  EXPECT_EQ(checked, 7 * 8 * 2);
}

TEST(CommandApduRoundTrip, SerializeOfParseGivesBackTheWireBytes) {
  for (const char* hex : {"00A40000", "805C000204", "00B0960000", "0020000003123456",
                          "805000010B0100002710112233445566"
                          "10",
                          "00B00000000000", "00200000000003123456", "80FA00000000031122330008",
                          "80FA00000000021122"
                          "0000"}) {
    const Bytes raw = HexToBytes(hex);
    EXPECT_EQ(MustParse(raw).Serialize(), raw) << hex;
  }
}

// --- ToString ---

TEST(CommandApduToString, PrintsSpacedHex) {
  EXPECT_EQ(CommandApdu::Case2(0x80, 0x5C, 0x00, 0x02, 4).ToString(), "80 5C 00 02 04");
  EXPECT_EQ(CommandApdu::Case1(0x00, 0xA4, 0x00, 0x00).ToString(), "00 A4 00 00");
}

TEST(CommandApduToString, HidesThePinOfVerify) {
  std::string text = CommandApdu::Case3(0x00, 0x20, 0x00, 0x00, HexToBytes("123456")).ToString();
  EXPECT_EQ(text, "00 20 00 00 03 <3 bytes hidden>");
  EXPECT_EQ(text.find("12 34"), std::string::npos);
}

TEST(CommandApduToString, HidesChangePinAndKeepsLe) {
  CommandApdu change = CommandApdu::Case4(0x80, 0x5E, 0x01, 0x00, HexToBytes("123456FF654321"), 4);
  EXPECT_EQ(change.ToString(), "80 5E 01 00 07 <7 bytes hidden> 04");
  change.extended = true;
  EXPECT_EQ(change.ToString(), "80 5E 01 00 00 00 07 <7 bytes hidden> 00 04");
}

TEST(CommandApduToString, HidesPinUnblockAndWriteKeyData) {
  EXPECT_EQ(CommandApdu::Case3(0x84, 0x24, 0x00, 0x00, Filled(12)).ToString(),
            "84 24 00 00 0C <12 bytes hidden>");
  EXPECT_EQ(CommandApdu::Case3(0x84, 0xD4, 0x01, 0x00, Filled(20)).ToString(),
            "84 D4 01 00 14 <20 bytes hidden>");
}

// --- Response APDUs ---

TEST(ResponseApdu, ParseSplitsDataAndStatusWord) {
  auto response = ResponseApdu::Parse(View(HexToBytes("000003E89000")));
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->data, HexToBytes("000003E8"));
  EXPECT_EQ(response->sw, sw::kOk);
  EXPECT_TRUE(response->ok());
}

TEST(ResponseApdu, StatusWordAloneHasNoData) {
  auto response = ResponseApdu::Parse(View(HexToBytes("6A82")));
  ASSERT_TRUE(response.ok());
  EXPECT_TRUE(response->data.empty());
  EXPECT_EQ(response->sw, sw::kFileNotFound);
  EXPECT_FALSE(response->ok());
}

TEST(ResponseApdu, FewerThanTwoBytesIsAnError) {
  EXPECT_FALSE(ResponseApdu::Parse(ByteView()).ok());
  auto one = ResponseApdu::Parse(View(HexToBytes("90")));
  ASSERT_FALSE(one.ok());
  EXPECT_NE(one.error().message.find("1 bytes"), std::string::npos) << one.error().message;
}

TEST(ResponseApdu, SerializeRoundTrips) {
  const Bytes raw = HexToBytes(
      "1122334455667788"
      "9000");
  auto response = ResponseApdu::Parse(View(raw));
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->Serialize(), raw);
}

TEST(Respond, AppendsTheStatusWord) {
  EXPECT_EQ(ToHex(Respond(sw::kSecurityNotSatisfied)), "6982");
  EXPECT_EQ(ToHex(Respond(View(HexToBytes("AABB")), sw::PinWrong(2))), "AABB63C2");
}

// --- Addressing (ISO 7816-4 §7.2, §7.3) ---

TEST(BinaryAddress, P1Bit8SetAddressesBySfiWithP2Offset) {
  auto address = DecodeBinaryAddress(0x96, 0x00);  // PSAM: READ terminal number, SFI 16
  ASSERT_TRUE(address.has_value());
  EXPECT_EQ(address->sfi, 0x16);
  EXPECT_EQ(address->offset, 0);
  address = DecodeBinaryAddress(0x95, 0x1E);
  ASSERT_TRUE(address.has_value());
  EXPECT_EQ(address->sfi, 0x15);
  EXPECT_EQ(address->offset, 0x1E);
}

TEST(BinaryAddress, EverySfiFrom1To30IsAccepted) {
  for (int sfi = 1; sfi <= 30; ++sfi) {
    auto address = DecodeBinaryAddress(static_cast<std::uint8_t>(0x80 | sfi), 0xFF);
    ASSERT_TRUE(address.has_value()) << sfi;
    EXPECT_EQ(address->sfi, sfi);
    EXPECT_EQ(address->offset, 0xFF);
  }
}

TEST(BinaryAddress, Sfi0And31AreRejected) {
  EXPECT_FALSE(DecodeBinaryAddress(0x80, 0x00).has_value());
  EXPECT_FALSE(DecodeBinaryAddress(0x9F, 0x00).has_value());
}

TEST(BinaryAddress, RfuBitsWithSfiAreRejected) {
  EXPECT_FALSE(DecodeBinaryAddress(0xA1, 0x00).has_value());
  EXPECT_FALSE(DecodeBinaryAddress(0xC1, 0x00).has_value());
}

TEST(BinaryAddress, P1Bit8ClearIsA15BitOffset) {
  auto address = DecodeBinaryAddress(0x7F, 0xFF);
  ASSERT_TRUE(address.has_value());
  EXPECT_FALSE(address->sfi.has_value());
  EXPECT_EQ(address->offset, 0x7FFF);
  address = DecodeBinaryAddress(0x01, 0x02);
  ASSERT_TRUE(address.has_value());
  EXPECT_EQ(address->offset, 0x0102);
}

TEST(RecordAddress, P2HighBitsAreTheSfiAndLowBitsTheMode) {
  RecordAddress log = DecodeRecordAddress(0xC4);  // 00 B2 nn C4: transaction log, SFI 18
  EXPECT_EQ(log.sfi, 0x18);
  EXPECT_EQ(log.mode, 4);
  RecordAddress dir = DecodeRecordAddress(0x0C);
  EXPECT_EQ(dir.sfi, 0x01);
  EXPECT_EQ(dir.mode, 4);
}

TEST(RecordAddress, Sfi0MeansTheCurrentEf) {
  RecordAddress current = DecodeRecordAddress(0x04);
  EXPECT_FALSE(current.sfi.has_value());
  EXPECT_EQ(current.mode, 4);
  RecordAddress by_identifier = DecodeRecordAddress(0x00);
  EXPECT_FALSE(by_identifier.sfi.has_value());
  EXPECT_EQ(by_identifier.mode, 0);
}

}  // namespace
}  // namespace medcard::iso7816
