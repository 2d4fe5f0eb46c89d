// The message catalogue and its validators: every transaction's request and answer, and the
// response code each kind of fault gets.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <tuple>

#include "iso8583/iso8583.h"
#include "iso8583/messages.h"
#include "sample_messages.h"

namespace medcard::iso8583 {
namespace {

using testing::SampleRequest;
using testing::SampleResponse;

struct Verdict {
  bool ok = false;
  ResponseCode code = ResponseCode::kApproved;
  std::string message;
};

Verdict Validate(const Message& request) {
  ResponseCode code = ResponseCode::kApproved;
  const Status status = ValidateRequest(request, &code);
  return {status.ok(), code, status.ok() ? "" : status.error().message};
}

std::string ResponseError(const Message& response, const Message& request) {
  const Status status = ValidateResponse(response, &request);
  return status.ok() ? "(valid)" : status.error().message;
}

class EveryTransaction : public ::testing::TestWithParam<Transaction> {};

TEST_P(EveryTransaction, RequestValidatesAndIdentifiesAsItself) {
  const Message request = SampleRequest(GetParam());
  const Verdict v = Validate(request);
  EXPECT_TRUE(v.ok) << v.message << "\n" << request.ToString();
  auto spec = Identify(request);
  ASSERT_TRUE(spec.ok()) << spec.error().message;
  EXPECT_EQ((*spec)->transaction, GetParam());
}

TEST_P(EveryTransaction, ApprovedResponseValidatesAgainstItsRequest) {
  const Message request = SampleRequest(GetParam());
  const Message response = SampleResponse(GetParam());
  EXPECT_EQ(ResponseError(response, request), "(valid)") << response.ToString();
  EXPECT_TRUE(ValidateResponse(response).ok());
  EXPECT_EQ(response.mti(), ResponseMti(request.mti()));
}

TEST_P(EveryTransaction, RoundTripsThroughFramesAndStaysValid) {
  for (const Message& m : {SampleRequest(GetParam()), SampleResponse(GetParam())}) {
    const Bytes wire = EncodeFrame(testing::SampleFrame(m));
    auto frame = ParseFrame(ByteView(wire).subspan(2));
    ASSERT_TRUE(frame.ok()) << frame.error().message;
    EXPECT_EQ(frame->message, m);
  }
  EXPECT_TRUE(Validate(*Message::Parse(View(SampleRequest(GetParam()).Encode()))).ok);
}

TEST_P(EveryTransaction, RefusalWithOnlyTheCodeIsAValidAnswer) {
  const Message request = SampleRequest(GetParam());
  auto refusal = StartResponse(request, ResponseCode::kSystemMalfunction);
  ASSERT_TRUE(refusal.ok());
  EXPECT_EQ(ResponseError(*refusal, request), "(valid)") << refusal->ToString();
  // Even the bare minimum: the response MTI and 39.
  Message bare(ResponseMti(request.mti()));
  ASSERT_TRUE(bare.SetText(39, "96").ok());
  EXPECT_EQ(ResponseError(bare, request), "(valid)");
}

TEST_P(EveryTransaction, MissingMandatoryFieldIsNamed) {
  const Message request = SampleRequest(GetParam());
  const TransactionSpec& spec = SpecOf(GetParam());
  for (const FieldRule& rule : spec.request_fields) {
    if (rule.presence != Presence::kMandatory) continue;
    Message m = request;
    m.Remove(rule.field);
    const Verdict v = Validate(m);
    ASSERT_FALSE(v.ok) << "without field " << rule.field;
    // Without 3 or 60 the transaction itself cannot be told; otherwise the field is named.
    EXPECT_NE(v.message.find("field " + std::to_string(rule.field)), std::string::npos)
        << v.message;
    EXPECT_EQ(v.code, ResponseCode::kFormatError) << v.message;
  }
}

TEST_P(EveryTransaction, FieldTheTransactionDoesNotListIsRefused) {
  Message m = SampleRequest(GetParam());
  ASSERT_TRUE(m.SetDigits(14, "2512").ok());
  const Verdict v = Validate(m);
  ASSERT_FALSE(v.ok);
  EXPECT_EQ(v.code, ResponseCode::kFormatError);
  EXPECT_NE(v.message.find(": field 14 not allowed"), std::string::npos) << v.message;
}

TEST_P(EveryTransaction, ApprovedAnswerWithoutItsMacIsRefused) {
  Message response = SampleResponse(GetParam());
  response.Remove(64);
  EXPECT_NE(ResponseError(response, SampleRequest(GetParam())).find("field 64 missing"),
            std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Catalogue, EveryTransaction,
                         ::testing::Values(Transaction::kSignOn, Transaction::kSignOff,
                                           Transaction::kEchoTest, Transaction::kParameterDownload,
                                           Transaction::kBlacklistDownload,
                                           Transaction::kSettlementChallenge,
                                           Transaction::kBalanceInquiry, Transaction::kLoad,
                                           Transaction::kLoadConfirmation,
                                           Transaction::kLoadReversal, Transaction::kBatchUpload,
                                           Transaction::kSettlement));

TEST(Catalogue, EachTransactionIsToldApartByMtiProcessingCodeAndNetworkCode) {
  std::set<std::tuple<Mti, std::string, std::uint16_t>> keys;
  for (const TransactionSpec& spec : Catalogue()) {
    for (std::string_view proc : spec.processing_codes) {
      for (std::uint16_t code : spec.network_codes) {
        keys.insert({spec.request_mti, std::string(proc), code});
      }
    }
  }
  std::size_t distinct_per_entry = 0;
  for (const TransactionSpec& spec : Catalogue()) {
    std::set<std::pair<std::string_view, std::uint16_t>> own;
    for (std::string_view proc : spec.processing_codes) {
      for (std::uint16_t code : spec.network_codes) own.insert({proc, code});
    }
    distinct_per_entry += own.size();
  }
  EXPECT_EQ(keys.size(), distinct_per_entry);  // no two entries share a key
  EXPECT_EQ(Catalogue().size(), 12u);
}

TEST(Catalogue, OnlyTheSignOnIsMacedUnderTheTerminalMasterKey) {
  for (const TransactionSpec& spec : Catalogue()) {
    EXPECT_EQ(spec.mac_key == MacKeyUse::kTerminalMasterKey,
              spec.transaction == Transaction::kSignOn)
        << spec.name;
    // Every request of the catalogue carries a MAC.
    bool has_mac = false;
    for (const FieldRule& rule : spec.request_fields) {
      has_mac = has_mac || (rule.field == 64 && rule.presence == Presence::kMandatory);
    }
    EXPECT_TRUE(has_mac) << spec.name;
  }
}

TEST(ValidateRequest, UnknownProcessingCodeIsAnInvalidTransaction) {
  Message m = SampleRequest(Transaction::kLoad);
  ASSERT_TRUE(m.SetDigits(3, "000000").ok());
  const Verdict v = Validate(m);
  EXPECT_EQ(v.code, ResponseCode::kInvalidTransaction);
  EXPECT_EQ(v.message, "iso8583: 0200: processing code 000000 is not a medcard transaction");
}

TEST(ValidateRequest, SingleLengthKeySignOnIsAnInvalidTransaction) {
  Message m = SampleRequest(Transaction::kSignOn);
  ASSERT_TRUE(m.SetDigits(60, "00000012001").ok());
  const Verdict v = Validate(m);
  EXPECT_EQ(v.code, ResponseCode::kInvalidTransaction);
  EXPECT_EQ(v.message,
            "iso8583: 0800: sign-on with single-length keys (60.3 = 001) is not supported: use "
            "003 or 004");
}

TEST(ValidateRequest, UnknownNetworkManagementCodeIsAnInvalidTransaction) {
  Message m = SampleRequest(Transaction::kEchoTest);
  ASSERT_TRUE(m.SetDigits(60, "00000012999").ok());
  const Verdict v = Validate(m);
  EXPECT_EQ(v.code, ResponseCode::kInvalidTransaction);
  EXPECT_EQ(v.message, "iso8583: 0820: network management code 999 unknown");
}

TEST(ValidateRequest, ResponseMtiIsNotARequest) {
  const Verdict v = Validate(SampleResponse(Transaction::kLoad));
  EXPECT_EQ(v.code, ResponseCode::kInvalidTransaction);
  EXPECT_EQ(v.message, "iso8583: MTI 0210 is a response, not a request");
}

TEST(ValidateRequest, ZeroOrOversizedAmountIsAnInvalidAmount) {
  for (std::uint64_t amount : {std::uint64_t{0}, std::uint64_t{4294967296}}) {
    Message m = SampleRequest(Transaction::kLoad);
    ASSERT_TRUE(m.SetNumber(4, amount).ok());
    const Verdict v = Validate(m);
    EXPECT_EQ(v.code, ResponseCode::kInvalidAmount) << v.message;
    EXPECT_NE(v.message.find("outside 1..4294967295 fen"), std::string::npos) << v.message;
  }
  Message largest = SampleRequest(Transaction::kLoad);
  ASSERT_TRUE(largest.SetNumber(4, 4294967295u).ok());
  EXPECT_TRUE(Validate(largest).ok);
}

TEST(ValidateRequest, EntryModeMustSayWhetherAPinBlockIsPresent) {
  Message m = SampleRequest(Transaction::kLoad);
  ASSERT_TRUE(m.SetDigits(22, "051").ok());
  const Verdict v = Validate(m);
  EXPECT_EQ(v.code, ResponseCode::kFormatError);
  EXPECT_EQ(v.message,
            "iso8583: online load request 0200: field 22 must be 052 without a PIN block");
}

TEST(ValidateRequest, PinBlockIsNotAllowedInALoad) {
  Message m = SampleRequest(Transaction::kLoad);
  ASSERT_TRUE(m.SetBytes(52, View(Bytes(8, 0x11))).ok());
  const Verdict v = Validate(m);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.message, "iso8583: online load request 0200: field 52 not allowed");
}

TEST(ValidateRequest, BalanceInquiryWithoutPinNeedsNoPanOrCaptureCode) {
  Message m = SampleRequest(Transaction::kBalanceInquiry);
  m.Remove(52);
  m.Remove(2);
  m.Remove(26);
  ASSERT_TRUE(m.SetDigits(22, "052").ok());
  ASSERT_TRUE(m.SetDigits(53, *SecurityControl{false, 7}.Encode()).ok());
  EXPECT_TRUE(Validate(m).ok) << Validate(m).message;
}

TEST(ValidateRequest, PinBlockNeedsThePanAndTheCaptureCode) {
  Message m = SampleRequest(Transaction::kBalanceInquiry);
  m.Remove(2);
  EXPECT_EQ(Validate(m).message, "iso8583: balance inquiry request 0200: field 2 missing");
  Message without_pin = SampleRequest(Transaction::kBalanceInquiry);
  without_pin.Remove(52);
  EXPECT_EQ(Validate(without_pin).message,
            "iso8583: balance inquiry request 0200: field 2 not allowed without a PIN block "
            "(field 52)");
}

TEST(ValidateRequest, PanMustBeTheCardsAsnDigits) {
  Message m = SampleRequest(Transaction::kBalanceInquiry);
  ASSERT_TRUE(m.SetDigits(2, "4100000089999986").ok());
  EXPECT_EQ(Validate(m).message,
            "iso8583: balance inquiry request 0200: field 2 is not the card's PAN (the ASN's "
            "digits)");
}

TEST(ValidateRequest, SecurityControlMustAgreeWithThePinBlock) {
  Message m = SampleRequest(Transaction::kBalanceInquiry);
  ASSERT_TRUE(m.SetDigits(53, *SecurityControl{false, 7}.Encode()).ok());
  EXPECT_EQ(Validate(m).message,
            "iso8583: balance inquiry request 0200: field 53 PIN format digit disagrees with "
            "field 52");
}

TEST(ValidateRequest, Field60MustCarryTheTransactionsMessageType) {
  Message m = SampleRequest(Transaction::kLoad);
  ASSERT_TRUE(m.SetDigits(60, "01000012000").ok());
  EXPECT_EQ(Validate(m).message,
            "iso8583: online load request 0200: 60.1 message type 01, expected 10");
  ASSERT_TRUE(m.SetDigits(60, "10000000000").ok());
  EXPECT_EQ(Validate(m).message,
            "iso8583: online load request 0200: field 60: batch number 000000");
}

TEST(ValidateRequest, CurrencyMustBeYuan) {
  Message m = SampleRequest(Transaction::kSettlement);
  ASSERT_TRUE(m.SetText(49, "840").ok());
  EXPECT_EQ(Validate(m).message, "iso8583: settlement request 0500: currency 840, expected 156");
}

TEST(ValidateRequest, ReversalReasonMustBeAReversalReason) {
  Message m = SampleRequest(Transaction::kLoadReversal);
  for (const char* reason : {"98", "06", "A0"}) {
    ASSERT_TRUE(m.SetText(39, reason).ok());
    EXPECT_TRUE(Validate(m).ok) << reason;
  }
  ASSERT_TRUE(m.SetText(39, "00").ok());
  EXPECT_EQ(Validate(m).message,
            "iso8583: load reversal request 0400: reversal reason 00 must be 98, 06 or A0");
}

TEST(ValidateRequest, TraceNumberZeroIsRefused) {
  Message m = SampleRequest(Transaction::kEchoTest);
  ASSERT_TRUE(m.SetNumber(11, 0).ok());
  EXPECT_EQ(Validate(m).message, "iso8583: echo test request 0820: trace number 000000");
}

TEST(ValidateRequest, BadLayoutInField62NamesTheLayout) {
  Message m = SampleRequest(Transaction::kLoad);
  ASSERT_TRUE(m.SetBytes(62, View(Bytes(31, 0))).ok());
  EXPECT_EQ(Validate(m).message,
            "iso8583: online load request 0200: load request (field 62): 31 bytes, expected 32");
}

TEST(ValidateRequest, MacFieldWithNonZeroTailIsAFormatError) {
  Message m = SampleRequest(Transaction::kEchoTest);
  ASSERT_TRUE(m.SetBytes(64, View(HexToBytes("0102030405060708"))).ok());
  const Verdict v = Validate(m);
  EXPECT_EQ(v.code, ResponseCode::kFormatError);
  EXPECT_NE(v.message.find("bytes 5..8 are 05060708"), std::string::npos) << v.message;
}

TEST(ValidateResponse, ApprovedAnswerWithoutItsDataIsRefused) {
  Message response = SampleResponse(Transaction::kLoad);
  response.Remove(62);
  EXPECT_EQ(ResponseError(response, SampleRequest(Transaction::kLoad)),
            "iso8583: online load response 0210: field 62 missing");
}

TEST(ValidateResponse, RefusalMustNotCarryApprovedData) {
  Message response = SampleResponse(Transaction::kLoad);
  ASSERT_TRUE(response.SetText(39, "51").ok());
  EXPECT_EQ(ResponseError(response, SampleRequest(Transaction::kLoad)),
            "iso8583: online load response 0210: field 12 not allowed when 39 is not 00");
}

TEST(ValidateResponse, EchoedFieldMustEqualTheRequests) {
  Message response = SampleResponse(Transaction::kLoad);
  ASSERT_TRUE(response.SetNumber(4, 1).ok());
  EXPECT_EQ(ResponseError(response, SampleRequest(Transaction::kLoad)),
            "iso8583: online load response 0210: field 4 differs from the request's");
  Message refusal = *StartResponse(SampleRequest(Transaction::kLoad), ResponseCode::kLostCard);
  ASSERT_TRUE(refusal.SetNumber(11, 999).ok());
  EXPECT_EQ(ResponseError(refusal, SampleRequest(Transaction::kLoad)),
            "iso8583: online load response 0210: field 11 differs from the request's");
}

TEST(ValidateResponse, AnswerToAnotherTransactionIsRefused) {
  EXPECT_EQ(ResponseError(SampleResponse(Transaction::kBalanceInquiry),
                          SampleRequest(Transaction::kLoad)),
            "iso8583: the response belongs to another transaction than the request");
  EXPECT_EQ(ResponseError(SampleResponse(Transaction::kLoad),
                          SampleRequest(Transaction::kLoadConfirmation)),
            "iso8583: response MTI 0210 does not answer 0220");
}

TEST(ValidateResponse, UnknownResponseCodeIsRefused) {
  const Message request = SampleRequest(Transaction::kEchoTest);
  Message response = *StartResponse(request, ResponseCode::kApproved);
  ASSERT_TRUE(response.SetText(39, "Z9").ok());
  EXPECT_EQ(ResponseError(response, request),
            "iso8583: echo test response 0830: response code 'Z9' unknown");
}

TEST(ValidateResponse, LoadAuthorisationTimeMustBeTheAnswersTime) {
  Message response = SampleResponse(Transaction::kLoad);
  ASSERT_TRUE(response.SetDigits(12, "103101").ok());
  EXPECT_EQ(ResponseError(response, SampleRequest(Transaction::kLoad)),
            "iso8583: online load response 0210: load authorisation (field 62): date and time "
            "differ from fields 12 and 13");
}

TEST(ValidateResponse, SignOnWithDataKeyAnswersThreeKeys) {
  Message request = SampleRequest(Transaction::kSignOn);
  ASSERT_TRUE(request.SetDigits(60, "00000012004").ok());
  ASSERT_TRUE(Validate(request).ok);
  Message response = *StartResponse(request, ResponseCode::kApproved);
  const Message sample = SampleResponse(Transaction::kSignOn);
  for (int field : {12, 13, 53}) {
    ASSERT_TRUE(response.SetDigits(field, *sample.GetDigits(field)).ok());
  }
  for (int field : {62, 64})
    ASSERT_TRUE(response.SetBytes(field, View(*sample.GetBytes(field))).ok());
  EXPECT_EQ(ResponseError(response, request),
            "iso8583: sign-on response 0810: working keys (field 62): sign-on 004 needs a data "
            "key");
  WorkingKeys keys = *WorkingKeys::Parse(View(*sample.GetBytes(62)));
  keys.data_key = KeyCryptogram{Bytes(16, 0x3C), HexToBytes("ABCDEF")};
  ASSERT_TRUE(response.SetBytes(62, View(*keys.Encode())).ok());
  EXPECT_EQ(ResponseError(response, request), "(valid)");
}

TEST(StartResponse, EchoesWhatTheAnswerMustEcho) {
  const Message request = SampleRequest(Transaction::kSettlement);
  auto response = StartResponse(request, ResponseCode::kReconciliationError);
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->mti(), 0x0510);
  EXPECT_EQ(response->Fields(), (std::vector<int>{11, 39, 41, 42, 48, 49, 60}));
  EXPECT_EQ(*response->GetText(39), "95");
  EXPECT_EQ(*response->GetDigits(48), *request.GetDigits(48));
}

TEST(Refusal, UnidentifiableRequestStillGetsTheEchoableFields) {
  Message request = SampleRequest(Transaction::kLoad);
  ASSERT_TRUE(request.SetDigits(3, "990000").ok());
  auto refusal = Refusal(request, ResponseCode::kInvalidTransaction);
  ASSERT_TRUE(refusal.ok());
  EXPECT_EQ(refusal->Fields(), (std::vector<int>{3, 4, 11, 25, 39, 41, 42, 49, 60}));
  EXPECT_EQ(*refusal->GetText(39), "12");
}

TEST(Refusal, UnknownMtiIsNotAnswered) {
  Message unknown(0x0300);
  EXPECT_EQ(Refusal(unknown, ResponseCode::kInvalidTransaction).error().message,
            "iso8583: MTI 0300 is not a medcard request: not answered");
  EXPECT_FALSE(Refusal(SampleResponse(Transaction::kLoad), ResponseCode::kFormatError).ok());
}

TEST(ResponseCodes, TextNameAndParseAgree) {
  std::set<std::string> names, texts;
  for (ResponseCode code : AllResponseCodes()) {
    const std::string text = ResponseCodeText(code);
    EXPECT_EQ(ParseResponseCode(text), code) << text;
    names.insert(std::string(ResponseCodeName(code)));
    texts.insert(text);
  }
  EXPECT_EQ(names.size(), AllResponseCodes().size());
  EXPECT_EQ(texts.size(), AllResponseCodes().size());
  EXPECT_EQ(ResponseCodeText(ResponseCode::kMacError), "A0");
  EXPECT_EQ(ResponseCodeName(ResponseCode::kMacError), "MAC error");
  EXPECT_EQ(ResponseCodeText(ResponseCode::kDuplicateTransmission), "94");
  EXPECT_EQ(ResponseCodeName(ResponseCode::kFormatError), "format error");
  EXPECT_FALSE(ParseResponseCode("Z9").has_value());
  EXPECT_FALSE(ParseResponseCode("0").has_value());
  EXPECT_FALSE(ParseResponseCode("000").has_value());
}

}  // namespace
}  // namespace medcard::iso8583
