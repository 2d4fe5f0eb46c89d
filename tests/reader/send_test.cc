// Send(): serialization and the T=0 transport rules (61xx GET RESPONSE chaining, 6Cxx re-send),
// through an in-process reader and a scripted card.
#include <gtest/gtest.h>

#include <memory>

#include "iso7816/apdu.h"
#include "reader/reader.h"
#include "scripted_icc.h"

namespace medcard::reader {
namespace {

using iso7816::CommandApdu;
using iso7816::ResponseApdu;
using testing::ScriptedIcc;

class SendTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(reader_.Connect().ok()); }

  std::vector<std::string> CommandsHex() const {
    std::vector<std::string> out;
    for (const Bytes& c : card_->commands()) out.push_back(ToHex(View(c)));
    return out;
  }

  Bytes Counting(std::size_t n) {
    Bytes out(n);
    for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::uint8_t>(i * 7);
    return out;
  }

  std::shared_ptr<ScriptedIcc> card_ = std::make_shared<ScriptedIcc>();
  InProcessReader reader_{"desk", card_};
};

TEST_F(SendTest, Case1_SendsTheHeaderOnly) {
  Result<ResponseApdu> response = Send(reader_, CommandApdu::Case1(0x80, 0xEE, 0x01, 0x02));
  ASSERT_TRUE(response.ok()) << response.error().message;
  EXPECT_TRUE(response->ok());
  EXPECT_TRUE(response->data.empty());
  EXPECT_EQ(CommandsHex(), std::vector<std::string>{"80EE0102"});
}

TEST_F(SendTest, Case2Short_ReturnsLeBytes) {
  Result<ResponseApdu> response = Send(reader_, CommandApdu::Case2(0x80, 0xEE, 0, 0, 256));
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->data.size(), 256u);
  EXPECT_EQ(CommandsHex(), std::vector<std::string>{"80EE000000"});
}

TEST_F(SendTest, Case3AndCase4Short_CarryTheData) {
  Result<ResponseApdu> case3 = Send(reader_, CommandApdu::Case3(0x80, 0xEE, 0, 0, {0x01, 0x02}));
  ASSERT_TRUE(case3.ok());
  EXPECT_EQ(ToHex(View(case3->data)), "0102");
  Result<ResponseApdu> case4 =
      Send(reader_, CommandApdu::Case4(0x80, 0xEE, 0, 0, {0x03, 0x04, 0x05}, 3));
  ASSERT_TRUE(case4.ok());
  EXPECT_EQ(ToHex(View(case4->data)), "030405");
  EXPECT_EQ(CommandsHex(), (std::vector<std::string>{"80EE0000020102", "80EE00000303040503"}));
}

TEST_F(SendTest, ExtendedCase2And4_CarryMoreThan256Bytes) {
  Result<ResponseApdu> case2 = Send(reader_, CommandApdu::Case2(0x80, 0xEE, 0, 0, 65536));
  ASSERT_TRUE(case2.ok());
  EXPECT_EQ(case2->data.size(), 65536u);
  EXPECT_EQ(case2->data[65535], 0xFF);
  const Bytes big = Counting(3000);
  Result<ResponseApdu> case4 = Send(reader_, CommandApdu::Case4(0x80, 0xEE, 0, 0, big, 3000));
  ASSERT_TRUE(case4.ok());
  EXPECT_EQ(case4->data, big);
  EXPECT_EQ(CommandsHex()[0], "80EE0000000000");
}

TEST_F(SendTest, Answer61xx_IsCompletedWithGetResponse) {
  card_->OnChunked("00A40400", HexToBytes("6F0A8408A000000003101001"), 12);
  Result<ResponseApdu> response = Send(
      reader_, CommandApdu::Case4(0x00, 0xA4, 0x04, 0x00, HexToBytes("A000000003101001"), 256));
  ASSERT_TRUE(response.ok()) << response.error().message;
  EXPECT_EQ(ToHex(View(response->data)), "6F0A8408A000000003101001");
  EXPECT_EQ(response->sw, iso7816::sw::kOk);
  EXPECT_EQ(CommandsHex(),
            (std::vector<std::string>{"00A4040008A00000000310100100", "00C000000C"}));
}

TEST_F(SendTest, Repeated61xx_ConcatenatesEveryChunk) {
  const Bytes data = Counting(700);
  card_->OnChunked("80CA", data, 100);
  Result<ResponseApdu> response = Send(reader_, CommandApdu::Case2(0x80, 0xCA, 0, 0, 256));
  ASSERT_TRUE(response.ok()) << response.error().message;
  EXPECT_EQ(response->data, data);
  EXPECT_TRUE(response->ok());
  // First GET RESPONSE asks for the 100 announced, then 256, 256, and the last 88.
  const std::vector<std::string> commands = CommandsHex();
  ASSERT_EQ(commands.size(), 5u);
  EXPECT_EQ(commands[1], "00C0000064");
  EXPECT_EQ(commands[2], "00C0000000");
  EXPECT_EQ(commands[3], "00C0000000");
  EXPECT_EQ(commands[4], "00C0000058");
}

TEST_F(SendTest, Answer6100_MeansGetResponseFor256Bytes) {
  const Bytes data = Counting(256);
  card_->OnChunked("80CA", data, 256);
  Result<ResponseApdu> response = Send(reader_, CommandApdu::Case2(0x80, 0xCA, 0, 0, 256));
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->data, data);
  EXPECT_EQ(CommandsHex().at(1), "00C0000000");
}

TEST_F(SendTest, Answer6Cxx_ResendsTheCommandWithLeXx) {
  card_->OnExactLe("80B2", HexToBytes("0102030405060708090A"));
  Result<ResponseApdu> response = Send(reader_, CommandApdu::Case2(0x80, 0xB2, 0x01, 0x0C, 256));
  ASSERT_TRUE(response.ok()) << response.error().message;
  EXPECT_EQ(ToHex(View(response->data)), "0102030405060708090A");
  EXPECT_TRUE(response->ok());
  EXPECT_EQ(CommandsHex(), (std::vector<std::string>{"80B2010C00", "80B2010C0A"}));
}

TEST_F(SendTest, Answer6C00_ResendsWithLe256) {
  card_->OnExactLe("80B2", Counting(256));
  Result<ResponseApdu> response = Send(reader_, CommandApdu::Case2(0x80, 0xB2, 0x01, 0x0C, 16));
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->data.size(), 256u);
  EXPECT_EQ(CommandsHex(), (std::vector<std::string>{"80B2010C10", "80B2010C00"}));
}

TEST_F(SendTest, Answer6CxxToAnExtendedCommand_ResendsInExtendedForm) {
  card_->OnExactLe("80B2", Counting(32));
  CommandApdu command = CommandApdu::Case2(0x80, 0xB2, 0x01, 0x0C, 1000);
  command.extended = true;
  Result<ResponseApdu> response = Send(reader_, command);
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->data.size(), 32u);
  EXPECT_EQ(CommandsHex(), (std::vector<std::string>{"80B2010C0003E8", "80B2010C000020"}));
}

TEST_F(SendTest, WrongLeOnlyOnce_ASecond6CxxIsReturnedAsIs) {
  card_->On("80B2", "6C08");  // a card that never accepts any Le
  Result<ResponseApdu> response = Send(reader_, CommandApdu::Case2(0x80, 0xB2, 0x01, 0x0C, 4));
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->sw, iso7816::sw::WrongLe(8));
  EXPECT_EQ(CommandsHex().size(), 2u);
}

TEST_F(SendTest, ErrorStatusWords_AreReturnedNotRetried) {
  card_->On("0020", "63C2");
  Result<ResponseApdu> response =
      Send(reader_, CommandApdu::Case3(0x00, 0x20, 0x00, 0x00, HexToBytes("123456")));
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->sw, iso7816::sw::PinWrong(2));
  EXPECT_EQ(CommandsHex().size(), 1u);
}

TEST_F(SendTest, CardAnswering61xxWithoutData_IsAnErrorNotALoop) {
  card_->On("80CA", "6110");
  card_->On("00C0", "6110");
  Result<ResponseApdu> response = Send(reader_, CommandApdu::Case2(0x80, 0xCA, 0, 0, 256));
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.error().message,
            "reader 'desk': the card answers GET RESPONSE with 61xx but no data");
}

TEST_F(SendTest, CardChainingForever_StopsPast65536Bytes) {
  card_->On("80CA", "6100");
  card_->On("00C0", std::string(512, 'A') + "6100");  // 256 bytes of AA, "more to come"
  Result<ResponseApdu> response = Send(reader_, CommandApdu::Case2(0x80, 0xCA, 0, 0, 256));
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.error().message,
            "reader 'desk': the card's response exceeds 65536 bytes of 61xx chaining");
  EXPECT_EQ(CommandsHex().size(), 1u + 257u);
}

TEST_F(SendTest, AnswerShorterThanAStatusWord_IsAnError) {
  card_->On("80CA", "90");
  Result<ResponseApdu> response = Send(reader_, CommandApdu::Case2(0x80, 0xCA, 0, 0, 1));
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.error().message, "reader 'desk': the card answered 1 byte(s), no status word");
}

TEST_F(SendTest, ReaderErrors_AreReturned) {
  reader_.RemoveCard();
  Result<ResponseApdu> response = Send(reader_, CommandApdu::Case1(0x80, 0xEE, 0, 0));
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.error().message, "card removed from reader 'desk'");
}

}  // namespace
}  // namespace medcard::reader
