#include "iso7816/status.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

namespace medcard::iso7816 {
namespace {

TEST(StatusWord, ToStringIsHexThenName) {
  EXPECT_EQ(sw::kSecurityNotSatisfied.ToString(), "6982 security status not satisfied");
  EXPECT_EQ(sw::kOk.ToString(), "9000 ok");
  EXPECT_EQ(sw::kWrongLength.ToString(), "6700 wrong length");
  EXPECT_EQ(StatusWord(0x6A, 0x82).ToString(), "6A82 file not found");
}

TEST(StatusWord, WrongPinNamesTheTriesLeft) {
  EXPECT_EQ(sw::PinWrong(2).ToString(), "63C2 wrong PIN, 2 tries left");
  EXPECT_EQ(sw::PinWrong(1).ToString(), "63C1 wrong PIN, 1 try left");
  EXPECT_EQ(sw::PinWrong(0).ToString(), "63C0 wrong PIN, 0 tries left");
  EXPECT_EQ(sw::PinWrong(15).value, 0x63CF);
}

TEST(StatusWord, BytesAvailableAndWrongLeNameTheCount) {
  EXPECT_EQ(sw::BytesAvailable(0x10).ToString(), "6110 16 bytes available");
  EXPECT_EQ(sw::BytesAvailable(0x00).Name(), "256 or more bytes available");
  EXPECT_EQ(sw::WrongLe(0x17).ToString(), "6C17 wrong Le, exact length 23");
}

TEST(StatusWord, PbocPurseWordsHaveTheirSpecNames) {
  EXPECT_EQ(sw::kMacInvalid.Name(), "MAC invalid");
  EXPECT_EQ(sw::kAppPermanentlyBlocked.Name(), "application permanently blocked");
  EXPECT_EQ(sw::kInsufficientFunds.Name(), "insufficient funds");
  EXPECT_EQ(sw::kCounterAtMaximum.Name(), "transaction counter at maximum");
  EXPECT_EQ(sw::kKeyIndexNotSupported.Name(), "key index not supported");
  EXPECT_EQ(sw::kMacTacNotAvailable.Name(), "required MAC/TAC not available");
  EXPECT_EQ(sw::kBlocked.Name(), "key or PIN blocked");
  EXPECT_EQ(sw::kRandomInvalid.Name(), "random invalid");
}

// Every word in pboc-ed-ep.md "Status words" and the usual ISO 7816-4 ones has a name of its
// own: none falls back to a class description, and no two share a name.
TEST(StatusWord, EveryKnownWordHasItsOwnName) {
  const std::vector<std::uint16_t> known = {0x9000, 0x6281, 0x6283, 0x6581, 0x6700, 0x6882, 0x6981,
                                            0x6982, 0x6983, 0x6984, 0x6985, 0x6986, 0x6987, 0x6988,
                                            0x6A80, 0x6A81, 0x6A82, 0x6A83, 0x6A84, 0x6A85, 0x6A86,
                                            0x6A87, 0x6A88, 0x6A89, 0x6B00, 0x6D00, 0x6E00, 0x6F00,
                                            0x9302, 0x9303, 0x9401, 0x9402, 0x9403, 0x9406};
  const std::set<std::string> fallbacks = {
      StatusWord(0x62FE).Name(), StatusWord(0x63FE).Name(), StatusWord(0x64FE).Name(),
      StatusWord(0x65FE).Name(), StatusWord(0x66FE).Name(), StatusWord(0x68FE).Name(),
      StatusWord(0x69FE).Name(), StatusWord(0x6AFE).Name(), StatusWord(0x9999).Name()};
  std::set<std::string> names;
  for (std::uint16_t value : known) {
    const std::string name = StatusWord(value).Name();
    EXPECT_EQ(fallbacks.count(name), 0u) << std::hex << value << " named only " << name;
    EXPECT_TRUE(names.insert(name).second) << std::hex << value << " shares " << name;
  }
}

TEST(StatusWord, UnknownWordsFallBackToTheirIsoClass) {
  EXPECT_EQ(StatusWord(0x9999).ToString(), "9999 unknown status word");
  EXPECT_EQ(StatusWord(0x6999).Name(), "command not allowed");
  EXPECT_EQ(StatusWord(0x6400).Name(), "execution error, non-volatile memory unchanged");
}

TEST(StatusWord, OkOnlyFor9000) {
  EXPECT_TRUE(sw::kOk.ok());
  EXPECT_FALSE(StatusWord(0x6100).ok());
  EXPECT_FALSE(sw::PinWrong(3).ok());
}

TEST(StatusWord, BytesConstructorAndAccessorsAgree) {
  StatusWord word(0x94, 0x01);
  EXPECT_EQ(word, sw::kInsufficientFunds);
  EXPECT_EQ(word.sw1(), 0x94);
  EXPECT_EQ(word.sw2(), 0x01);
}

}  // namespace
}  // namespace medcard::iso7816
