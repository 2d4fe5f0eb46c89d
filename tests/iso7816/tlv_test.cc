#include "iso7816/tlv.h"

#include <gtest/gtest.h>

#include <string>

namespace medcard::iso7816 {
namespace {

// The PSE FCI of a PBOC card: 6F { 84 "1PAY.SYS.DDF01", A5 { 88 SFI of DIR = 01,
// 5F2D language "zh", 9F11 issuer code table 01 } }.
const char* const kPseFci =
    "6F1E"
    "840E315041592E5359532E4444463031"
    "A50C"
    "880101"
    "5F2D027A68"
    "9F110101";

std::vector<Tlv> MustParse(const Bytes& raw) {
  auto parsed = ParseBerTlv(View(raw));
  if (!parsed.ok()) {
    ADD_FAILURE() << ToHex(raw) << ": " << parsed.error().message;
    return {};
  }
  return *parsed;
}

std::string ErrorOf(const Bytes& raw) {
  auto parsed = ParseBerTlv(View(raw));
  return parsed.ok() ? std::string("(parsed)") : parsed.error().message;
}

Bytes Nested(int levels, ByteView innermost) {
  Bytes value(innermost.begin(), innermost.end());
  for (int i = 0; i < levels; ++i) value = BuildTlv(0x70, View(value));
  return value;
}

TEST(BerTlv, ParsesThePseFci) {
  const Bytes raw = HexToBytes(kPseFci);
  std::vector<Tlv> objects = MustParse(raw);
  ASSERT_EQ(objects.size(), 1u);
  const Tlv& fci = objects[0];
  EXPECT_EQ(fci.tag, 0x6Fu);
  EXPECT_TRUE(fci.constructed());
  ASSERT_EQ(fci.children.size(), 2u);
  EXPECT_EQ(fci.children[0].tag, 0x84u);
  EXPECT_EQ(std::string(fci.children[0].value.begin(), fci.children[0].value.end()),
            "1PAY.SYS.DDF01");
  const Tlv& proprietary = fci.children[1];
  EXPECT_EQ(proprietary.tag, 0xA5u);
  ASSERT_EQ(proprietary.children.size(), 3u);
  EXPECT_EQ(proprietary.children[0].tag, 0x88u);
  EXPECT_EQ(proprietary.children[0].value, Bytes{0x01});
  EXPECT_EQ(proprietary.children[1].tag, 0x5F2Du);
  EXPECT_EQ(proprietary.children[1].value, HexToBytes("7A68"));
  EXPECT_EQ(proprietary.children[2].tag, 0x9F11u);
  // The raw value of a constructed object is kept too.
  EXPECT_EQ(proprietary.value, HexToBytes("8801015F2D027A689F110101"));
}

TEST(BerTlv, ParsesTheAdfFciWithMultiByteTags) {
  const Bytes basic_data = HexToBytes(
      "D156000005030000"
      "03"
      "02"
      "00000000000000012345"
      "20240101"
      "20340101"
      "0000");
  ASSERT_EQ(basic_data.size(), 30u);
  // 6F { 84 AID, A5 { 9F08 version, 9F0C the 30 bytes of SFI 15 } }
  const Bytes raw = HexToBytes(
      "6F2F"
      "8406D15600000503"
      "A525"
      "9F080102"
      "9F0C1E" +
      ToHex(basic_data));
  std::vector<Tlv> objects = MustParse(raw);
  const Tlv* version = FindTag(objects, 0x9F08);
  ASSERT_NE(version, nullptr);
  EXPECT_EQ(version->value, Bytes{0x02});
  EXPECT_FALSE(version->constructed());
  const Tlv* copy = FindTag(objects, 0x9F0C);
  ASSERT_NE(copy, nullptr);
  EXPECT_EQ(copy->value, basic_data);
  EXPECT_EQ(FindTag(objects, 0x84)->value, HexToBytes("D15600000503"));
}

TEST(BerTlv, ParsesTheFciIssuerDiscretionaryDataBf0c) {
  // A5 { BF0C { 61 { 4F AID } } }: BF0C is a two-byte constructed tag.
  const Bytes raw = HexToBytes("A50ABF0C0761054F03A00001");
  std::vector<Tlv> objects = MustParse(raw);
  const Tlv* discretionary = FindTag(objects, 0xBF0C);
  ASSERT_NE(discretionary, nullptr);
  EXPECT_TRUE(discretionary->constructed());
  ASSERT_EQ(discretionary->children.size(), 1u);
  EXPECT_EQ(discretionary->children[0].tag, 0x61u);
  EXPECT_EQ(discretionary->Find(0x4F)->value, HexToBytes("A00001"));
}

TEST(BerTlv, ParsesAThreeByteTag) {
  std::vector<Tlv> objects = MustParse(HexToBytes("9F810502ABCD"));
  ASSERT_EQ(objects.size(), 1u);
  EXPECT_EQ(objects[0].tag, 0x9F8105u);
  EXPECT_EQ(objects[0].value, HexToBytes("ABCD"));
  EXPECT_FALSE(objects[0].constructed());
}

TEST(BerTlv, RejectsAFourByteTag) {
  EXPECT_NE(ErrorOf(HexToBytes("DF81818101AA")).find("tag longer than 3 bytes"), std::string::npos);
}

TEST(BerTlv, RejectsATruncatedTag) {
  EXPECT_NE(ErrorOf(HexToBytes("9F")).find("truncated tag"), std::string::npos);
  EXPECT_NE(ErrorOf(HexToBytes("DF81")).find("truncated tag"), std::string::npos);
}

TEST(BerTlv, ReadsEveryLongLengthForm) {
  for (std::size_t length : {std::size_t{0x7F}, std::size_t{0x80}, std::size_t{0xFF},
                             std::size_t{0x100}, std::size_t{0xFFFF}, std::size_t{0x10000}}) {
    const Bytes value(length, 0x5A);
    const Bytes raw = BuildTlv(0x04, View(value));
    std::vector<Tlv> objects = MustParse(raw);
    ASSERT_EQ(objects.size(), 1u);
    EXPECT_EQ(objects[0].value.size(), length);
  }
}

TEST(BerTlv, ReadsTheFourByteLengthForm) {
  Bytes raw = HexToBytes("048400000102");
  Append(raw, View(Bytes(0x102, 0x11)));
  std::vector<Tlv> objects = MustParse(raw);
  ASSERT_EQ(objects.size(), 1u);
  EXPECT_EQ(objects[0].value.size(), 0x102u);
}

TEST(BerTlv, AcceptsNonMinimalLongLengths) {
  std::vector<Tlv> objects = MustParse(HexToBytes("04810201020482000103"));
  ASSERT_EQ(objects.size(), 2u);
  EXPECT_EQ(objects[0].value, HexToBytes("0102"));
  EXPECT_EQ(objects[1].value, HexToBytes("03"));
}

TEST(BerTlv, RejectsIndefiniteLength) {
  EXPECT_NE(ErrorOf(HexToBytes("6F80840100")).find("indefinite length"), std::string::npos);
}

TEST(BerTlv, RejectsLengthFieldsLongerThanFourBytes) {
  EXPECT_NE(ErrorOf(HexToBytes("04850000000001AA")).find("longer than 4 bytes"), std::string::npos);
  EXPECT_NE(ErrorOf(HexToBytes("04FF")).find("longer than 4 bytes"), std::string::npos);
}

TEST(BerTlv, RejectsTruncatedOrMissingLength) {
  EXPECT_NE(ErrorOf(HexToBytes("048201")).find("truncated length"), std::string::npos);
  EXPECT_NE(ErrorOf(HexToBytes("84")).find("missing length"), std::string::npos);
}

TEST(BerTlv, RejectsAValueRunningPastTheEnd) {
  EXPECT_NE(ErrorOf(HexToBytes("04050102")).find("runs past the end"), std::string::npos);
  // A 4-byte length near 4 GiB must fail cleanly, not allocate.
  EXPECT_NE(ErrorOf(HexToBytes("0484FFFFFFFF00")).find("runs past the end"), std::string::npos);
}

TEST(BerTlv, ErrorsNameTheByteOffsetInTheWholeBuffer) {
  // The bad object (9F11 with a length past its parent's end) starts at byte 9.
  EXPECT_EQ(ErrorOf(HexToBytes("0102AABB"
                               "A506"
                               "880101"
                               "9F1105")),
            "BER-TLV at byte 9: value of 5 bytes runs past the end");
}

TEST(BerTlv, SkipsPaddingBetweenObjects) {
  std::vector<Tlv> objects =
      MustParse(HexToBytes("0000"
                           "0401AA"
                           "FFFF"
                           "050100"
                           "00"));
  ASSERT_EQ(objects.size(), 2u);
  EXPECT_EQ(objects[0].tag, 0x04u);
  EXPECT_EQ(objects[1].tag, 0x05u);
  EXPECT_EQ(objects[1].value, Bytes{0x00}) << "a 00 inside a value is data, not padding";
}

TEST(BerTlv, SkipsPaddingInsideConstructedValues) {
  std::vector<Tlv> objects =
      MustParse(HexToBytes("7006"
                           "00"
                           "0401AA"
                           "FF00"));
  ASSERT_EQ(objects.size(), 1u);
  ASSERT_EQ(objects[0].children.size(), 1u);
  EXPECT_EQ(objects[0].children[0].value, Bytes{0xAA});
}

TEST(BerTlv, EmptyInputAndPaddingOnlyAreEmptySequences) {
  EXPECT_TRUE(MustParse(Bytes{}).empty());
  EXPECT_TRUE(MustParse(HexToBytes("00FF00")).empty());
}

TEST(BerTlv, EmptyConstructedObjectHasNoChildren) {
  std::vector<Tlv> objects = MustParse(HexToBytes("A500"));
  ASSERT_EQ(objects.size(), 1u);
  EXPECT_TRUE(objects[0].constructed());
  EXPECT_TRUE(objects[0].children.empty());
}

TEST(BerTlv, RejectsAConstructedValueThatIsNotTlv) {
  EXPECT_NE(ErrorOf(HexToBytes("70029F05")).find("missing length"), std::string::npos);
}

TEST(BerTlv, AcceptsNestingUpToTheDepthLimit) {
  // kMaxTlvDepth - 1 templates around a primitive: the primitive is at depth kMaxTlvDepth.
  const Bytes raw = Nested(kMaxTlvDepth - 1, View(HexToBytes("5A01AA")));
  std::vector<Tlv> objects = MustParse(raw);
  const Tlv* pan = FindTag(objects, 0x5A);
  ASSERT_NE(pan, nullptr);
  EXPECT_EQ(pan->value, Bytes{0xAA});
}

TEST(BerTlv, RejectsNestingDeeperThanTheLimit) {
  const Bytes raw = Nested(kMaxTlvDepth, View(HexToBytes("5A01AA")));
  EXPECT_NE(ErrorOf(raw).find("nested deeper than 16"), std::string::npos) << ErrorOf(raw);
  const Bytes empty_innermost = Nested(kMaxTlvDepth + 1, ByteView());
  EXPECT_NE(ErrorOf(empty_innermost).find("nested deeper"), std::string::npos);
  EXPECT_TRUE(ParseBerTlv(View(Nested(kMaxTlvDepth, ByteView()))).ok());
}

TEST(BerTlv, EveryTruncationOfTheFciIsAnError) {
  const Bytes raw = HexToBytes(kPseFci);
  for (std::size_t n = 1; n < raw.size(); ++n) {
    const Bytes prefix(raw.begin(), raw.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_FALSE(ParseBerTlv(View(prefix)).ok()) << "prefix of " << n << " bytes";
  }
}

TEST(BerTlv, EveryTruncationOfANestedLongObjectIsAnError) {
  Bytes inner = BuildTlv(0x9F0C, View(Bytes(300, 0x31)));
  Append(inner, View(BuildTlv(0x9F8105, View(HexToBytes("01")))));
  const Bytes raw = BuildTlv(0xBF0C, View(BuildTlv(0x61, View(inner))));
  ASSERT_TRUE(ParseBerTlv(View(raw)).ok());
  for (std::size_t n = 1; n < raw.size(); ++n) {
    const Bytes prefix(raw.begin(), raw.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_FALSE(ParseBerTlv(View(prefix)).ok()) << "prefix of " << n << " bytes";
  }
}

TEST(BerTlv, EverySingleByteCorruptionOfTheFciParsesOrFailsWithoutCrashing) {
  const Bytes raw = HexToBytes(kPseFci);
  int rejected = 0;
  for (std::size_t i = 0; i < raw.size(); ++i) {
    for (std::uint8_t value : {std::uint8_t{0x00}, std::uint8_t{0x1F}, std::uint8_t{0x80},
                               std::uint8_t{0x84}, std::uint8_t{0xFF}}) {
      Bytes corrupt = raw;
      corrupt[i] = value;
      auto parsed = ParseBerTlv(View(corrupt));
      if (!parsed.ok()) ++rejected;
    }
  }
  EXPECT_GT(rejected, 0);
}

TEST(Tlv, ConstructedIsBit6OfTheFirstTagByte) {
  Tlv tlv;
  for (std::uint32_t tag : {0x6Fu, 0xA5u, 0x70u, 0xBF0Cu, 0xFF8101u}) {
    tlv.tag = tag;
    EXPECT_TRUE(tlv.constructed()) << std::hex << tag;
  }
  for (std::uint32_t tag : {0x84u, 0x88u, 0x9F08u, 0x5F2Du, 0x9F8101u}) {
    tlv.tag = tag;
    EXPECT_FALSE(tlv.constructed()) << std::hex << tag;
  }
}

TEST(Tlv, FindIsDepthFirstAndIncludesSelf) {
  // 70 { 61 { 4F A1 }, 4F A2 }: depth first finds A1 before A2.
  std::vector<Tlv> objects =
      MustParse(HexToBytes("7008"
                           "6103"
                           "4F01A1"
                           "4F01A2"));
  ASSERT_EQ(objects.size(), 1u);
  EXPECT_EQ(objects[0].Find(0x70), &objects[0]);
  ASSERT_NE(objects[0].Find(0x4F), nullptr);
  EXPECT_EQ(objects[0].Find(0x4F)->value, Bytes{0xA1});
  EXPECT_EQ(objects[0].Find(0x9F08), nullptr);
  EXPECT_EQ(FindTag(objects, 0x50), nullptr);
}

TEST(TlvEncoding, EncodesTagsWithTheirOwnBytes) {
  EXPECT_EQ(ToHex(EncodeTag(0x6F)), "6F");
  EXPECT_EQ(ToHex(EncodeTag(0x9F08)), "9F08");
  EXPECT_EQ(ToHex(EncodeTag(0xBF0C)), "BF0C");
  EXPECT_EQ(ToHex(EncodeTag(0xDF8105)), "DF8105");
}

TEST(TlvEncoding, EncodesLengthsInMinimalForm) {
  EXPECT_EQ(ToHex(EncodeLength(0)), "00");
  EXPECT_EQ(ToHex(EncodeLength(0x7F)), "7F");
  EXPECT_EQ(ToHex(EncodeLength(0x80)), "8180");
  EXPECT_EQ(ToHex(EncodeLength(0xFF)), "81FF");
  EXPECT_EQ(ToHex(EncodeLength(0x100)), "820100");
  EXPECT_EQ(ToHex(EncodeLength(0xFFFF)), "82FFFF");
  EXPECT_EQ(ToHex(EncodeLength(0x10000)), "83010000");
  EXPECT_EQ(ToHex(EncodeLength(0x1000000)), "8401000000");
  EXPECT_EQ(ToHex(EncodeLength(0xFFFFFFFF)), "84FFFFFFFF");
}

TEST(TlvEncoding, BuildTlvConcatenatesTagLengthValue) {
  EXPECT_EQ(ToHex(BuildTlv(0x9F08, View(HexToBytes("02")))), "9F080102");
  EXPECT_EQ(ToHex(BuildTlv(0x84, View(HexToBytes("315041592E5359532E4444463031")))),
            "840E315041592E5359532E4444463031");
}

TEST(TlvEncoding, ReencodingTheParsedFciGivesBackTheSameBytes) {
  const Bytes raw = HexToBytes(kPseFci);
  std::vector<Tlv> objects = MustParse(raw);
  ASSERT_EQ(objects.size(), 1u);
  EXPECT_EQ(ToHex(BuildTlv(objects[0])), kPseFci);
}

TEST(TlvEncoding, BuildFromChildrenDropsPaddingAndReparsesToTheSameTree) {
  std::vector<Tlv> padded =
      MustParse(HexToBytes("700B"
                           "00"
                           "6103"
                           "4F01A1"
                           "FF"
                           "4F01A2"
                           "00"));
  ASSERT_EQ(padded.size(), 1u);
  const Bytes rebuilt = BuildTlv(padded[0]);
  EXPECT_EQ(ToHex(rebuilt),
            "7008"
            "6103"
            "4F01A1"
            "4F01A2");
  std::vector<Tlv> again = MustParse(rebuilt);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].children, padded[0].children);
}

TEST(TlvEncoding, BuildFromAHandMadeTree) {
  Tlv aid{0x4F, HexToBytes("D15600000503"), {}};
  Tlv label{0x50, Bytes{'M', 'E', 'D'}, {}};
  Tlv entry{0x61, {}, {aid, label}};
  Tlv record{0x70, {}, {entry}};
  const Bytes raw = BuildTlv(record);
  EXPECT_EQ(ToHex(raw),
            "700F"
            "610D"
            "4F06D15600000503"
            "50034D4544");
  std::vector<Tlv> objects = MustParse(raw);
  EXPECT_EQ(FindTag(objects, 0x50)->value, label.value);
}

}  // namespace
}  // namespace medcard::iso7816
