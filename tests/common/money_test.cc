// Money as people read and type it (common/money.h): exact, integer fen.
#include "common/money.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>

namespace medcard {
namespace {

template <typename T>
T Must(Result<T> r) {
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? *r : T{};
}

TEST(Money, FormatFenIsExact) {
  EXPECT_EQ(FormatFen(1250), "12.50");
  EXPECT_EQ(FormatFen(5), "0.05");
  EXPECT_EQ(FormatFen(0), "0.00");
  EXPECT_EQ(FormatFen(100), "1.00");
  EXPECT_EQ(FormatFen(-1250), "-12.50");
  EXPECT_EQ(FormatFen(std::numeric_limits<std::int64_t>::max()), "92233720368547758.07");
  EXPECT_EQ(FormatFen(std::numeric_limits<std::int64_t>::min()), "-92233720368547758.08");
}

TEST(Money, ParseYuanAcceptsOnlyPlainDecimalYuan) {
  EXPECT_EQ(Must(ParseYuan("12.50")), 1250);
  EXPECT_EQ(Must(ParseYuan("12.5")), 1250);
  EXPECT_EQ(Must(ParseYuan("12")), 1200);
  EXPECT_EQ(Must(ParseYuan("0.05")), 5);
  EXPECT_EQ(Must(ParseYuan("0")), 0);
  EXPECT_EQ(Must(ParseYuan("007.10")), 710);
  EXPECT_EQ(Must(ParseYuan("92233720368547758.07")), std::numeric_limits<std::int64_t>::max());
  for (const char* bad : {"", ".", ".5", "12.", "12.345", "-1", "+1", "1e3", " 12", "12 ", "12,50",
                          "1.2.3", "abc", "92233720368547758.08", "100000000000000000000"}) {
    auto r = ParseYuan(bad);
    EXPECT_FALSE(r.ok()) << "accepted \"" << bad << "\"";
    if (!r.ok()) {
      EXPECT_EQ(r.error().message.rfind(std::string("amount \"") + bad + "\": ", 0), 0u)
          << r.error().message;
    }
  }
  EXPECT_EQ(ParseYuan("12.345").error().message, "amount \"12.345\": at most 2 decimals (fen)");
  // Every amount survives the round trip.
  for (std::int64_t fen : {0, 1, 9, 10, 99, 100, 101, 123456789}) {
    EXPECT_EQ(Must(ParseYuan(FormatFen(fen))), fen);
  }
}

}  // namespace
}  // namespace medcard
