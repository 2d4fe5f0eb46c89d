// Framing (length ‖ TPDU ‖ header ‖ message) and the TCP stream deframer: split and coalesced
// reads, bad lengths, bad headers.
#include <gtest/gtest.h>

#include <string>

#include "iso8583/iso8583.h"
#include "iso8583/messages.h"
#include "sample_messages.h"

namespace medcard::iso8583 {
namespace {

using testing::SampleFrame;
using testing::SampleRequest;
using testing::SampleResponse;

Message SmallMessage() {
  Message m(0x0820);
  EXPECT_TRUE(m.SetNumber(11, 7).ok());
  return m;
}

// 0820 with field 11 = 000007.
constexpr const char* kSmallMessage =
    "0820"
    "0020000000000000"
    "000007";

Bytes FrameOf(const Message& m) { return EncodeFrame(SampleFrame(m)); }

std::string FrameError(const Bytes& frame, ParseFailure* failure = nullptr) {
  auto parsed = ParseFrame(View(frame), failure);
  return parsed.ok() ? "(parsed)" : parsed.error().message;
}

TEST(Frame, EncodesLengthTpduHeaderAndMessage) {
  Frame frame;
  frame.tpdu = Tpdu{0x0003, 0x0102};
  frame.message = SmallMessage();
  EXPECT_EQ(ToHex(View(EncodeFrame(frame))),
            std::string("0018") +  // 24 bytes follow
                "6000030102"       // TPDU: 60, destination 0003, source 0102
                "600100000000"     // header: POS application, version 01, normal, no handling
                + kSmallMessage);
}

TEST(Frame, ResponseHeaderCarriesTheHandlingFlags) {
  Frame frame;
  frame.tpdu = Tpdu{0x0003, 0x0102}.Reply();
  frame.header = Header{TerminalStatus::kTest, kHandleSignOn | kHandleBlacklist};
  frame.message = SmallMessage();
  frame.message.set_mti(0x0830);
  const Bytes bytes = EncodeFrame(frame);
  EXPECT_EQ(ToHex(ByteView(bytes).first(13)),
            "0018"
            "6001020003"
            "600101050000");
  auto parsed = ParseFrame(ByteView(bytes).subspan(2));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(*parsed, frame);
}

TEST(Frame, TpduReplySwapsTheAddresses) {
  const Tpdu request{0x0003, 0x0102};
  EXPECT_EQ(request.Reply(), (Tpdu{0x0102, 0x0003}));
  EXPECT_EQ(request.Reply().Reply(), request);
}

TEST(Frame, EveryCatalogueFrameRoundTrips) {
  for (const TransactionSpec& spec : Catalogue()) {
    for (const Message& m : {SampleRequest(spec.transaction), SampleResponse(spec.transaction)}) {
      const Frame frame = SampleFrame(m);
      const Bytes bytes = EncodeFrame(frame);
      ASSERT_EQ(ReadU16(View(bytes)), bytes.size() - 2);
      auto parsed = ParseFrame(ByteView(bytes).subspan(2));
      ASSERT_TRUE(parsed.ok()) << spec.name << ": " << parsed.error().message;
      EXPECT_EQ(*parsed, frame) << spec.name;
    }
  }
}

TEST(Frame, BadTpduIdIsRefused) {
  Bytes frame = FrameOf(SmallMessage());
  frame.erase(frame.begin(), frame.begin() + 2);
  frame[0] = 0x61;
  EXPECT_EQ(FrameError(frame), "iso8583: TPDU id 61, expected 60");
}

TEST(Frame, HeaderValuesAreCheckedOneByOne) {
  Bytes base = FrameOf(SmallMessage());
  base.erase(base.begin(), base.begin() + 2);
  struct Case {
    std::size_t offset;
    std::uint8_t value;
    const char* error;
  };
  for (const Case& c :
       {Case{5, 0x61, "iso8583: header application type 61, expected 60"},
        Case{6, 0x02, "iso8583: header protocol version 02, expected 01"},
        Case{7, 0x02, "iso8583: header terminal status 02 unknown"},
        Case{8, 0x08, "iso8583: header handling requirement 08 has unknown flags"},
        Case{9, 0x01, "iso8583: header reserved bytes 0100, expected 0000"},
        Case{10, 0x01, "iso8583: header reserved bytes 0001, expected 0000"},
        Case{8, 0x01, "iso8583: header handling requirement 01 in a request, expected 00"}}) {
    Bytes frame = base;
    frame[c.offset] = c.value;
    ParseFailure failure;
    EXPECT_EQ(FrameError(frame, &failure), c.error);
    EXPECT_EQ(failure.code, ResponseCode::kFormatError);
    ASSERT_TRUE(failure.tpdu.has_value()) << c.error;
    EXPECT_EQ(*failure.tpdu, (Tpdu{0x0003, 0x0000}));
  }
}

TEST(Frame, TruncatedFramesAreRefusedAtEveryByte) {
  Bytes frame = FrameOf(SampleRequest(Transaction::kBatchUpload));
  frame.erase(frame.begin(), frame.begin() + 2);
  for (std::size_t n = 0; n < frame.size(); ++n) {
    ParseFailure failure;
    EXPECT_FALSE(ParseFrame(ByteView(frame).first(n), &failure).ok()) << n;
    EXPECT_EQ(failure.code, ResponseCode::kFormatError) << n;
  }
}

TEST(Frame, FailureInTheMessageKeepsTpduHeaderAndEchoableFields) {
  Bytes frame = FrameOf(SampleRequest(Transaction::kLoad));
  frame.erase(frame.begin(), frame.begin() + 2);
  frame.resize(frame.size() - 20);  // without the MAC (8) and the last 12 bytes of field 62
  ParseFailure failure;
  ASSERT_FALSE(ParseFrame(View(frame), &failure).ok());
  ASSERT_TRUE(failure.tpdu && failure.header);
  EXPECT_EQ(failure.tpdu->Reply(), (Tpdu{0x0000, 0x0003}));
  EXPECT_EQ(failure.field, 62);
  auto refusal = Refusal(failure.partial, failure.code);
  ASSERT_TRUE(refusal.ok()) << refusal.error().message;
  EXPECT_EQ(refusal->mti(), 0x0210);
  EXPECT_EQ(*refusal->GetText(39), "30");
  EXPECT_EQ(*refusal->GetNumber(11), 123u);
  EXPECT_EQ(*refusal->GetText(41), testing::kTerminalId);
}

TEST(Deframer, WholeFrameInOneRead) {
  const Bytes bytes = FrameOf(SmallMessage());
  Deframer deframer;
  ASSERT_TRUE(deframer.Feed(View(bytes)).ok());
  auto frame = deframer.Next();
  ASSERT_TRUE(frame.has_value());
  EXPECT_EQ(*frame, Bytes(bytes.begin() + 2, bytes.end()));
  EXPECT_FALSE(deframer.Next().has_value());
  EXPECT_EQ(deframer.buffered(), 0u);
}

TEST(Deframer, FrameArrivingOneByteAtATime) {
  const Bytes bytes = FrameOf(SampleRequest(Transaction::kBatchUpload));
  Deframer deframer;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    EXPECT_FALSE(deframer.Next().has_value()) << "whole after only " << i << " bytes";
    ASSERT_TRUE(deframer.Feed(ByteView(bytes).subspan(i, 1)).ok());
  }
  auto frame = deframer.Next();
  ASSERT_TRUE(frame.has_value());
  auto parsed = ParseFrame(View(*frame));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->message, SampleRequest(Transaction::kBatchUpload));
}

TEST(Deframer, CoalescedFramesComeOutInOrder) {
  Bytes stream;
  std::vector<Message> sent;
  for (std::uint32_t trace = 1; trace <= 3; ++trace) {
    sent.push_back(SampleRequest(Transaction::kEchoTest, trace));
    Append(stream, View(FrameOf(sent.back())));
  }
  // Three frames and the first 5 bytes of a fourth in one read, then the rest of it.
  const Bytes fourth = FrameOf(SampleRequest(Transaction::kSignOff, 4));
  Append(stream, ByteView(fourth).first(5));
  Deframer deframer;
  ASSERT_TRUE(deframer.Feed(View(stream)).ok());
  for (const Message& m : sent) {
    auto frame = deframer.Next();
    ASSERT_TRUE(frame.has_value());
    EXPECT_EQ(ParseFrame(View(*frame))->message, m);
  }
  EXPECT_FALSE(deframer.Next().has_value());
  EXPECT_EQ(deframer.buffered(), 5u);
  ASSERT_TRUE(deframer.Feed(ByteView(fourth).subspan(5)).ok());
  auto last = deframer.Next();
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(ParseFrame(View(*last))->message, SampleRequest(Transaction::kSignOff, 4));
}

TEST(Deframer, SplitInsideTheLengthPrefix) {
  const Bytes bytes = FrameOf(SmallMessage());
  Deframer deframer;
  ASSERT_TRUE(deframer.Feed(ByteView(bytes).first(1)).ok());
  EXPECT_FALSE(deframer.Next().has_value());
  ASSERT_TRUE(deframer.Feed(ByteView(bytes).subspan(1)).ok());
  EXPECT_TRUE(deframer.Next().has_value());
}

TEST(Deframer, ZeroLengthClosesTheStream) {
  Deframer deframer;
  const Status fed = deframer.Feed(View(HexToBytes("0000")));
  ASSERT_FALSE(fed.ok());
  EXPECT_EQ(fed.error().message, "iso8583: frame length 0 is zero: close the connection");
  EXPECT_FALSE(deframer.Next().has_value());
  // Nothing after it is accepted any more.
  EXPECT_FALSE(deframer.Feed(View(FrameOf(SmallMessage()))).ok());
  EXPECT_FALSE(deframer.Next().has_value());
}

TEST(Deframer, OversizeLengthClosesTheStreamBeforeTheBodyArrives) {
  Deframer deframer;
  const Status fed = deframer.Feed(View(HexToBytes("2001")));  // 8193
  ASSERT_FALSE(fed.ok());
  EXPECT_EQ(fed.error().message,
            "iso8583: frame length 8193 above the maximum 8192: close the connection");
}

TEST(Deframer, FrameOfExactlyTheMaximumIsAccepted) {
  Deframer deframer(30);
  Bytes bytes = {0x00, 30};
  bytes.resize(32, 0x60);
  ASSERT_TRUE(deframer.Feed(View(bytes)).ok());
  EXPECT_EQ(deframer.Next()->size(), 30u);
  EXPECT_FALSE(deframer.Feed(View(HexToBytes("001F"))).ok());
}

TEST(Deframer, BadLengthMakesTheWholeStreamUnusable) {
  Bytes stream = FrameOf(SmallMessage());
  Append(stream, View(HexToBytes("0000")));
  Deframer deframer;
  EXPECT_FALSE(deframer.Feed(View(stream)).ok());
  // The stream is unusable: the connection closes; frames before the fault are not served.
  EXPECT_FALSE(deframer.Next().has_value());
}

TEST(Deframer, ManySmallFramesDoNotGrowTheBuffer) {
  const Bytes bytes = FrameOf(SmallMessage());
  Deframer deframer;
  for (int i = 0; i < 10000; ++i) {
    ASSERT_TRUE(deframer.Feed(View(bytes)).ok());
    ASSERT_TRUE(deframer.Next().has_value());
  }
  EXPECT_EQ(deframer.buffered(), 0u);
}

}  // namespace
}  // namespace medcard::iso8583
