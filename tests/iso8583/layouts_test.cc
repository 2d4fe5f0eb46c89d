// The layouts inside fields 48, 53, 54, 60, 61 and 62: exact bytes, round trips, and every
// refusal.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <string>

#include "iso8583/messages.h"
#include "sample_messages.h"

namespace medcard::iso8583 {
namespace {

template <typename T>
std::string ErrorOf(const Result<T>& r) {
  return r.ok() ? "(ok)" : r.error().message;
}

nlohmann::json Vector(std::string_view name) {
  std::ifstream in(std::string(MEDCARD_TEST_DATA_DIR) + "/test-vectors.json");
  const auto all = nlohmann::json::parse(in);
  for (const auto& v : all["vectors"]) {
    if (v["name"] == name) return v;
  }
  ADD_FAILURE() << "no vector " << name;
  return {};
}

Bytes Hex(const nlohmann::json& v, const char* key) {
  return HexToBytes(v[key].get<std::string>());
}

TEST(SecurityControlLayout, DigitsArePinned) {
  EXPECT_EQ((*SecurityControl{true, 7}.Encode()), "1600070000000000");
  EXPECT_EQ((*SecurityControl{false, 999}.Encode()), "0609990000000000");
  EXPECT_EQ(*SecurityControl::Parse("1600070000000000"), (SecurityControl{true, 7}));
}

TEST(SecurityControlLayout, RefusesWhatMedcardDoesNotUse) {
  EXPECT_FALSE((SecurityControl{false, 0}.Encode().ok()));
  EXPECT_FALSE((SecurityControl{false, 1000}.Encode().ok()));
  EXPECT_EQ(ErrorOf(SecurityControl::Parse("2600070000000000")),
            "iso8583: security control (field 53): PIN format digit 2, expected 0 (no PIN) or 1 "
            "(format 0)");
  EXPECT_EQ(ErrorOf(SecurityControl::Parse("1000070000000000")),
            "iso8583: security control (field 53): algorithm digit 0, expected 6 (3DES)");
  EXPECT_FALSE(SecurityControl::Parse("1610070000000000").ok());
  EXPECT_FALSE(SecurityControl::Parse("1600070000000001").ok());
  EXPECT_EQ(ErrorOf(SecurityControl::Parse("1600000000000000")),
            "iso8583: security control (field 53): key version 000");
  EXPECT_FALSE(SecurityControl::Parse("160007000000000").ok());
}

TEST(Field60Layout, DigitsArePinned) {
  EXPECT_EQ((*Field60{10, 12, 0}.Encode()), "10000012000");
  EXPECT_EQ(*Field60::Parse("00999999380"), (Field60{0, 999999, 380}));
  EXPECT_FALSE((Field60{0, 1000000, 0}.Encode().ok()));
  EXPECT_FALSE((Field60{0, 0, 3}.Encode().ok()));
  EXPECT_EQ(ErrorOf(Field60::Parse("000000120030")), "iso8583: field 60: 12 digits, expected 11");
}

TEST(OriginalTransactionLayout, DateIsAMonthDayOrZero) {
  EXPECT_EQ((*OriginalTransaction{12, 122, 8, 25}.Encode()), "0000120001220825");
  EXPECT_EQ((*OriginalTransaction{12, 122, 0, 0}.Encode()), "0000120001220000");
  EXPECT_TRUE(OriginalTransaction::Parse("0000120001220229").ok());  // any year's 29 February
  EXPECT_EQ(ErrorOf(OriginalTransaction::Parse("0000120001221301")),
            "iso8583: original transaction (field 61): original date 1301 is neither 0000 nor a "
            "month-day");
  EXPECT_FALSE(OriginalTransaction::Parse("0000120001220800").ok());
  EXPECT_EQ(ErrorOf(OriginalTransaction::Parse("0000120000000825")),
            "iso8583: original transaction (field 61): original trace number 000000");
}

TEST(BatchTotalsLayout, DigitsArePinned) {
  EXPECT_EQ((*BatchTotals{3, 4800, 1, 7223}.Encode()),
            "000003"
            "000000004800"
            "000001"
            "000000007223");
  EXPECT_EQ(*BatchTotals::Parse("000003000000004800000001000000007223"),
            (BatchTotals{3, 4800, 1, 7223}));
  EXPECT_FALSE((BatchTotals{1000000, 0, 0, 0}.Encode().ok()));
  EXPECT_FALSE(BatchTotals::Parse("00000300000000480000000100000000722").ok());
}

TEST(AvailableBalanceLayout, IsAnIso8583AdditionalAmount) {
  EXPECT_EQ((*AvailableBalance{false, 1234567}.Encode()), "0002156C000001234567");
  EXPECT_EQ(*AvailableBalance::Parse("0002156D000000000100"), (AvailableBalance{true, 100}));
  EXPECT_EQ(ErrorOf(AvailableBalance::Parse("0002840C000001234567")),
            "iso8583: available balance (field 54): currency must be 156");
  EXPECT_FALSE(AvailableBalance::Parse("0001156C000001234567").ok());
  EXPECT_FALSE(AvailableBalance::Parse("0002156X000001234567").ok());
  EXPECT_FALSE(AvailableBalance::Parse("0002156C00000123456").ok());
}

TEST(LoadRequestLayout, CarriesTheCardsInitializeForLoadAnswerAsIs) {
  const auto v = Vector("EP load on a real card (trace)");
  // INITIALIZE FOR LOAD answer: balance ‖ online serial ‖ key version ‖ algorithm ‖ random ‖ MAC1.
  const Bytes answer =
      Concat({View(Hex(v, "oldBalance")), View(Hex(v, "onlineSerial")), View(HexToBytes("0100")),
              View(Hex(v, "random")), View(Hex(v, "MAC1"))});
  const Bytes asn = HexToBytes(testing::kAsnHex);
  auto load = LoadRequest::FromInitializeForLoad(View(asn), View(Hex(v, "termNo")), View(answer));
  ASSERT_TRUE(load.ok()) << load.error().message;
  EXPECT_EQ(load->asn, asn);
  EXPECT_EQ(load->terminal_number, Hex(v, "termNo"));
  EXPECT_EQ(load->balance, ReadU32(View(Hex(v, "oldBalance"))));
  EXPECT_EQ(load->online_serial, ReadU16(View(Hex(v, "onlineSerial"))));
  EXPECT_EQ(load->key_version, 1);
  EXPECT_EQ(load->algorithm_id, 0);
  EXPECT_EQ(load->random, Hex(v, "random"));
  EXPECT_EQ(load->mac1, Hex(v, "MAC1"));
  EXPECT_EQ(*load->Encode(), Concat({View(asn), View(Hex(v, "termNo")), View(answer)}));
  EXPECT_EQ(*LoadRequest::Parse(View(*load->Encode())), *load);
}

TEST(LoadRequestLayout, RefusesWrongSizes) {
  EXPECT_EQ(
      ErrorOf(LoadRequest::FromInitializeForLoad(View(Bytes(10)), View(Bytes(6)), View(Bytes(15)))),
      "iso8583: load request (field 62): INITIALIZE FOR LOAD answer is 15 bytes, expected "
      "16");
  LoadRequest load = testing::SampleLoadRequest();
  load.mac1.pop_back();
  EXPECT_EQ(ErrorOf(load.Encode()),
            "iso8583: load request (field 62): MAC1 is 3 bytes, expected 4");
  EXPECT_FALSE(LoadRequest::Parse(View(Bytes(33))).ok());
}

TEST(LoadAuthorisationLayout, MacTwoThenTheHostDateAndTime) {
  const auto v = Vector("EP load on a real card (trace)");
  const LoadAuthorisation auth{Hex(v, "MAC2"), Date{2014, 8, 25}, TimeOfDay{10, 31, 0}};
  EXPECT_EQ(
      ToHex(View(*auth.Encode())),
      v["MAC2"].get<std::string>() + v["date"].get<std::string>() + v["time"].get<std::string>());
  EXPECT_EQ(*LoadAuthorisation::Parse(View(*auth.Encode())), auth);
  EXPECT_EQ(ErrorOf(LoadAuthorisation::Parse(View(HexToBytes("0641DCD8 20140230 103100")))),
            "iso8583: load authorisation (field 62): host date 20140230 invalid");
  EXPECT_FALSE(LoadAuthorisation::Parse(View(HexToBytes("0641DCD8 20140825 246000"))).ok());
  EXPECT_FALSE((LoadAuthorisation{Hex(v, "MAC2"), Date{2014, 2, 30}, TimeOfDay{}}.Encode().ok()));
}

TEST(LoadConfirmationAndCardReference, FixedSizes) {
  const LoadConfirmation c{HexToBytes(testing::kAsnHex), HexToBytes("ED0F8755")};
  EXPECT_EQ(ToHex(View(*c.Encode())), std::string(testing::kAsnHex) + "ED0F8755");
  EXPECT_EQ(*LoadConfirmation::Parse(View(*c.Encode())), c);
  EXPECT_FALSE(LoadConfirmation::Parse(View(Bytes(13))).ok());
  EXPECT_EQ(ErrorOf(CardReference::Parse(View(Bytes(9)))),
            "iso8583: card reference (field 62): 9 bytes, expected 10");
  EXPECT_FALSE((CardReference{Bytes(11)}.Encode().ok()));
}

TEST(SignOnLayouts, RequestAndWorkingKeys) {
  const SignOnRequest request{HexToBytes(testing::kTerminalNumberHex), 2};
  EXPECT_EQ(ToHex(View(*request.Encode())), std::string(testing::kTerminalNumberHex) + "02");
  EXPECT_EQ(ErrorOf(SignOnRequest::Parse(View(HexToBytes("00000100005000")))),
            "iso8583: sign-on request (field 62): TMK version 0");
  WorkingKeys keys{{Bytes(16, 0x11), HexToBytes("010203")},
                   {Bytes(16, 0x22), HexToBytes("040506")},
                   std::nullopt};
  const Bytes encoded = *keys.Encode();
  EXPECT_EQ(encoded.size(), 38u);
  EXPECT_EQ(ToHex(ByteView(encoded).subspan(16, 3)), "010203");
  EXPECT_EQ(*WorkingKeys::Parse(View(encoded)), keys);
  keys.data_key = KeyCryptogram{Bytes(16, 0x33), HexToBytes("070809")};
  EXPECT_EQ(keys.Encode()->size(), 57u);
  EXPECT_EQ(*WorkingKeys::Parse(View(*keys.Encode())), keys);
  EXPECT_EQ(ErrorOf(WorkingKeys::Parse(View(Bytes(40)))),
            "iso8583: working keys (field 62): 40 bytes, expected 38 or 57");
  keys.mac_key.kcv.push_back(0);
  EXPECT_FALSE(keys.Encode().ok());
}

TEST(PurchaseBatchLayout, RecordBytesArePinned) {
  const PurchaseBatch batch = testing::SamplePurchaseBatch(1);
  EXPECT_EQ(ToHex(View(*batch.Encode())),
            "01"                    // one record
            "00004100000089999910"  // ASN
            "05"                    // ED purchase
            "000005DC"              // 1500 fen
            "0028"                  // card offline serial 40
            "000001000050"          // terminal number
            "000003E8"              // terminal serial 1000
            "20250314"
            "092600"  // date, time
            "01"      // card key version
            "44A8E04A"
            "350AC480"  // TAC, MAC2
            "000186A0"
            "000180C4");  // balance 100000 before, 98500 after
}

TEST(PurchaseBatchLayout, UpToSixteenRecordsRoundTrip) {
  for (std::size_t n : {1u, 2u, 16u}) {
    const PurchaseBatch batch = testing::SamplePurchaseBatch(n);
    auto encoded = batch.Encode();
    ASSERT_TRUE(encoded.ok()) << encoded.error().message;
    EXPECT_EQ(encoded->size(), 1 + 51 * n);
    EXPECT_EQ(*PurchaseBatch::Parse(View(*encoded)), batch);
  }
  EXPECT_EQ(ErrorOf(testing::SamplePurchaseBatch(17).Encode()),
            "iso8583: purchase batch (field 62): 17 purchases, expected 1..16");
  EXPECT_FALSE((PurchaseBatch{}.Encode().ok()));
}

TEST(PurchaseBatchLayout, RefusesCountMismatchBadDatesAndNonPurchases) {
  Bytes two = *testing::SamplePurchaseBatch(2).Encode();
  Bytes wrong_count = two;
  wrong_count[0] = 3;
  EXPECT_EQ(ErrorOf(PurchaseBatch::Parse(View(wrong_count))),
            "iso8583: purchase batch (field 62): 103 bytes, expected 154");
  Bytes bad_date = two;
  bad_date[1 + 51 + 29] = 0x13;  // second record, month 13
  EXPECT_EQ(ErrorOf(PurchaseBatch::Parse(View(bad_date))),
            "iso8583: purchase batch (field 62): record 2: date 20251314 invalid");
  Bytes load = two;
  load[1 + 10] = 0x01;
  EXPECT_EQ(ErrorOf(PurchaseBatch::Parse(View(load))),
            "iso8583: purchase batch (field 62): record 1: transaction type 01 is not a purchase "
            "(05, 06, 09)");
  EXPECT_FALSE(PurchaseBatch::Parse(View(HexToBytes("00"))).ok());
}

TEST(SamTotalsLayout, CarriesTheGetSamTotalsAnswer) {
  const SamTotals t = testing::SampleSamTotals();
  const Bytes encoded = *t.Encode();
  EXPECT_EQ(ToHex(View(encoded)),
            "31000000000000000001"  // PSAM serial
            "01"                    // settlement key version
            "1122334455667788"      // host challenge
            "00000003"              // count
            "0000000012C0"          // amount 4800
            "000003E8"
            "000003EA"    // first, last serial
            "A1B2C3D4");  // PSAM MAC
  EXPECT_EQ(ToHex(View(t.TotalsAnswer())), ToHex(ByteView(encoded).subspan(19)));
  EXPECT_EQ(*SamTotals::Parse(View(encoded)), t);
  EXPECT_FALSE(SamTotals::Parse(ByteView(encoded).first(40)).ok());
  SamTotals too_much = t;
  too_much.amount = 0x1000000000000ull;
  EXPECT_EQ(ErrorOf(too_much.Encode()), "iso8583: PSAM totals (field 62): amount above 6 bytes");
}

TEST(SettlementLayouts, ChallengeAndClearMacHaveFixedSizes) {
  EXPECT_TRUE(ParseSettlementChallenge(View(Bytes(8))).ok());
  EXPECT_FALSE(ParseSettlementChallenge(View(Bytes(4))).ok());
  EXPECT_TRUE(ParseClearTotalsMac(View(Bytes(4))).ok());
  EXPECT_EQ(ErrorOf(ParseClearTotalsMac(View(Bytes(8)))),
            "iso8583: CLEAR SAM TOTALS MAC (field 62): 8 bytes, expected 4");
}

TEST(DownloadRequestLayout, LaterPartsNameTheirTarget) {
  EXPECT_EQ(ToHex(View(*DownloadRequest{41, 0, 0}.Encode())),
            "00000029"
            "00000000"
            "0000");
  EXPECT_TRUE(DownloadRequest::Parse(View(HexToBytes("00000029 0000002A 0001"))).ok());
  EXPECT_EQ(ErrorOf(DownloadRequest::Parse(View(HexToBytes("00000029 00000000 0001")))),
            "iso8583: download request (field 62): part 1 asked without the target version of "
            "part 0");
}

TEST(BlacklistPartLayout, BytesArePinned) {
  const BlacklistPart part = testing::SampleBlacklist();
  EXPECT_EQ(ToHex(View(*part.Encode())),
            "0000002A"
            "01"
            "0000"
            "02"
            "00004100000089999901"
            "01"
            "00004100000089999902"
            "02");
  EXPECT_EQ(*BlacklistPart::Parse(View(*part.Encode())), part);
}

TEST(BlacklistPartLayout, RefusesBadFlagsActionsAndCounts) {
  EXPECT_EQ(ErrorOf(BlacklistPart::Parse(View(HexToBytes("0000002A 04 0000 00")))),
            "iso8583: blacklist part (field 62): unknown flags 04");
  EXPECT_EQ(ErrorOf(BlacklistPart::Parse(View(HexToBytes("0000002A 02 0000 01 "
                                                         "00004100000089999902 02")))),
            "iso8583: blacklist part (field 62): entry 1: a full list holds only additions");
  EXPECT_FALSE(BlacklistPart::Parse(View(HexToBytes("0000002A 00 0000 01 "
                                                    "00004100000089999902 03")))
                   .ok());
  EXPECT_FALSE(BlacklistPart::Parse(View(HexToBytes("0000002A 00 0000 02 "
                                                    "00004100000089999902 01")))
                   .ok());
  EXPECT_FALSE(BlacklistPart::Parse(View(HexToBytes("00000000 00 0000 00"))).ok());
  BlacklistPart big;
  big.version = 1;
  big.entries.assign(91, BlacklistEntry{Bytes(10, 0x01), BlacklistAction::kAdd});
  EXPECT_FALSE(big.Encode().ok());
  big.entries.resize(90);
  auto encoded = big.Encode();
  ASSERT_TRUE(encoded.ok());
  EXPECT_EQ(encoded->size(), 8u + 90 * 11);                           // 998: fits field 62
  EXPECT_TRUE((BlacklistPart{1, false, true, 0, {}}.Encode().ok()));  // an empty full list
}

TEST(ParameterPartLayout, RoundTripsAndIsComplete) {
  const ParameterPart part = testing::SampleParameters();
  auto encoded = part.Encode();
  ASSERT_TRUE(encoded.ok()) << encoded.error().message;
  EXPECT_EQ(ToHex(ByteView(*encoded).first(9)),
            "00000005"
            "00"
            "0000"
            "01"
            "2B");  // 43-byte name
  auto parsed = ParameterPart::Parse(View(*encoded));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(*parsed, part);
  EXPECT_TRUE(CheckComplete(parsed->parameters).ok());
}

TEST(ParameterPartLayout, RecordsArePinned) {
  ParameterPart part;
  part.version = 1;
  part.more = true;
  part.part = 2;
  part.parameters.purchase_limit = 500000;
  part.parameters.clock_date = Date{2025, 3, 14};
  part.parameters.clock_time = TimeOfDay{8, 5, 9};
  part.parameters.upload_threshold = 50;
  EXPECT_EQ(ToHex(View(*part.Encode())),
            "00000001"
            "01"
            "0002"
            "02"
            "04"
            "0007A120"
            "06"
            "07"
            "20250314080509"
            "07"
            "02"
            "0032");
}

TEST(ParameterPartLayout, RefusesUnknownRepeatedAndMalformedRecords) {
  EXPECT_EQ(ErrorOf(ParameterPart::Parse(View(HexToBytes("00000001 00 0000 09 01 00")))),
            "iso8583: parameter part (field 62): tag 09 unknown");
  EXPECT_EQ(ErrorOf(ParameterPart::Parse(
                View(HexToBytes("00000001 00 0000 02 04 00000001 02 04 00000002")))),
            "iso8583: parameter part (field 62): tag 02 repeated");
  EXPECT_EQ(ErrorOf(ParameterPart::Parse(View(HexToBytes("00000001 00 0000 02 03 000001")))),
            "iso8583: parameter part (field 62): tag 02: 3 bytes, expected 4");
  EXPECT_EQ(ErrorOf(ParameterPart::Parse(View(HexToBytes("00000001 00 0000 02 04 0000")))),
            "iso8583: parameter part (field 62): tag 02 truncated");
  EXPECT_FALSE(ParameterPart::Parse(View(HexToBytes("00000001 00 0000 02"))).ok());
  EXPECT_FALSE(ParameterPart::Parse(View(HexToBytes("00000001 02 0000"))).ok());  // flag 02
  EXPECT_FALSE(ParameterPart::Parse(View(HexToBytes("00000001 00 0000 05 02 0100"))).ok());
  EXPECT_FALSE(
      ParameterPart::Parse(View(HexToBytes("00000001 00 0000 06 07 20250230080000"))).ok());
  EXPECT_FALSE(ParameterPart::Parse(View(HexToBytes("00000001 00 0000 07 02 0000"))).ok());
}

TEST(ParameterPartLayout, MerchantNameMustBePrintableUtf8) {
  auto with_name = [](std::string_view hex) {
    const Bytes name = HexToBytes(hex);
    Bytes bytes = HexToBytes("00000001 00 0000 01");
    bytes.push_back(static_cast<std::uint8_t>(name.size()));
    Append(bytes, View(name));
    return ParameterPart::Parse(View(bytes));
  };
  EXPECT_EQ(*with_name("E4BABAE6B091")->parameters.merchant_name, "人民");
  for (const char* bad :
       {"41 0A 42", "C3", "E4BA", "C0AF", "ED A0 80", "F8 88 80 80 80", "C2 85"}) {
    EXPECT_EQ(ErrorOf(with_name(bad)),
              "iso8583: parameter part (field 62): tag 01: merchant name must be 1..60 bytes of "
              "printable UTF-8")
        << bad;
  }
  ParameterPart part;
  part.version = 1;
  part.parameters.merchant_name = std::string(61, 'M');
  EXPECT_FALSE(part.Encode().ok());
  part.parameters.merchant_name = std::string(60, 'M');
  EXPECT_TRUE(part.Encode().ok());
}

TEST(Parameters, PartsMergeUntilCompleteAndATagMayNotRepeat) {
  const Parameters all = testing::SampleParameters().parameters;
  Parameters first, second;
  first.merchant_name = all.merchant_name;
  first.purchase_limit = all.purchase_limit;
  first.load_limit = all.load_limit;
  first.ep_balance_limit = all.ep_balance_limit;
  second.card_key_versions = all.card_key_versions;
  second.clock_date = all.clock_date;
  second.clock_time = all.clock_time;
  second.upload_threshold = all.upload_threshold;
  second.blacklist_version = all.blacklist_version;

  Parameters gathered;
  ASSERT_TRUE(Merge(gathered, first).ok());
  EXPECT_EQ(CheckComplete(gathered).error().message,
            "iso8583: parameters incomplete: tag 05 card key versions missing");
  ASSERT_TRUE(Merge(gathered, second).ok());
  EXPECT_TRUE(CheckComplete(gathered).ok());
  EXPECT_EQ(gathered, all);
  EXPECT_FALSE(Merge(gathered, first).ok());
  EXPECT_EQ(gathered, all);  // unchanged by the refused merge
}

TEST(PanFromAsn, DecimalAsnWithoutLeadingZeros) {
  EXPECT_EQ(PanFromAsn(View(HexToBytes("00004100000089999985"))), "4100000089999985");
  EXPECT_EQ(PanFromAsn(View(HexToBytes("00000000000012345678"))), "12345678");
  EXPECT_EQ(PanFromAsn(View(HexToBytes("01234567890123456789"))), "1234567890123456789");
  EXPECT_FALSE(PanFromAsn(View(HexToBytes("12345678901234567890"))));  // 20 digits
  EXPECT_FALSE(PanFromAsn(View(HexToBytes("0000000000000001234F"))));  // not decimal
  EXPECT_FALSE(PanFromAsn(View(HexToBytes("00000000000001234567"))));  // 7 digits
  EXPECT_FALSE(PanFromAsn(View(Bytes(10, 0))));
  EXPECT_FALSE(PanFromAsn(View(Bytes(9, 0x11))));
}

}  // namespace
}  // namespace medcard::iso8583
