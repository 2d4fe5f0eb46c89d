#include "cli/render.h"

#include <gtest/gtest.h>

namespace medcard::cli {
namespace {

TEST(Yuan, FormatsFenExactly) {
  EXPECT_EQ(Yuan(0), "0.00");
  EXPECT_EQ(Yuan(5), "0.05");
  EXPECT_EQ(Yuan(1250), "12.50");
  EXPECT_EQ(Yuan(-1250), "-12.50");
  EXPECT_EQ(Yuan(4294967295LL), "42949672.95");
  EXPECT_EQ(Yuan(INT64_MIN), "-92233720368547758.08");
}

TEST(ParseYuan, AcceptsWholeAndDecimalYuan) {
  EXPECT_EQ(*ParseYuan("12.50"), 1250);
  EXPECT_EQ(*ParseYuan("12.5"), 1250);
  EXPECT_EQ(*ParseYuan("12"), 1200);
  EXPECT_EQ(*ParseYuan("0.01"), 1);
  EXPECT_EQ(*ParseYuan(".5"), 50);
}

TEST(ParseYuan, RejectsWhatIsNotAnAmount) {
  for (const char* bad :
       {"", ".", "-1", "1.234", "1,50", "12a", "1e3", " 1", "1..2", "99999999999999999999"}) {
    EXPECT_FALSE(ParseYuan(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace medcard::cli
