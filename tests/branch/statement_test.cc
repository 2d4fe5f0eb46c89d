// A card's statement as the cardholder receives it: CSV with yuan amounts and ISO dates, opening
// and closing balances of the period, and the same as a PDF.
#include "branch/statement.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>

#include "branch_test_scheme.h"

namespace medcard::branch::testing {
namespace {

using access::ErrorCode;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kAsn[] = "11000000000000000503";

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  return lines;
}

class StatementTest : public BranchTest {
 protected:
  void SetUp() override {
    BranchTest::SetUp();
    if (HasFatalFailure()) return;
    NewActiveCard(kAsn);
    Credit(100000);
    holder_ = Holder(kAsn);
    Load(holder_, 20000);  // 2026-11-25
    Clear({Purchase(holder_, 1250, {11, 5, 0})});
    // The next day, a second purchase.
    now_us_ += kDayUs;
    day_ = {2026, 11, 26};
    Clear({Purchase(holder_, 305, {8, 15, 0})});
  }
  test_support::TestCardholder holder_;
};

TEST_P(StatementTest, TheCsvListsThePeriodsMovementsBetweenOpeningAndClosingBalances) {
  auto csv = StatementCsv(*services_, {kAsn, "2026-11-26", "2026-11-30"});
  ASSERT_TRUE(csv.ok()) << csv.error().message;
  EXPECT_THAT(Lines(*csv),
              ElementsAre("date,time,wallet,kind,amount,balance,merchant_id,merchant,reference",
                          "2026-11-26,,ED,opening,,187.50,,,",  //
                          "2026-11-26,,EP,opening,,0.00,,,",
                          "2026-11-26,08:15:00,ED,purchase,-3.05,184.45,H0001,City Hospital," +
                              std::string(kAsn) + "/1/5",
                          "2026-11-30,,ED,closing,,184.45,,,",  //
                          "2026-11-30,,EP,closing,,0.00,,,"));
  auto whole = StatementCsv(*services_, {kAsn, "2026-11-01", "2026-11-30"});
  ASSERT_TRUE(whole.ok());
  const auto lines = Lines(*whole);
  ASSERT_EQ(lines.size(), 8u);
  EXPECT_THAT(lines[1], HasSubstr("ED,opening,,0.00"));
  EXPECT_THAT(lines[3], HasSubstr("2026-11-25,10:00:00,ED,load,200.00,200.00,,,"));
  EXPECT_THAT(lines[4], HasSubstr("2026-11-25,11:05:00,ED,purchase,-12.50,187.50,H0001"));
}

TEST_P(StatementTest, AMerchantNameWithACommaIsQuotedAndUtf8IsKept) {
  ASSERT_TRUE(conn_
                  ->Execute("UPDATE host_merchants SET name = ? WHERE id = ?",
                            {"中山药房, \"东\"", kMerchant})
                  .ok());
  auto csv = StatementCsv(*services_, {kAsn, "2026-11-26", "2026-11-26"});
  ASSERT_TRUE(csv.ok()) << csv.error().message;
  EXPECT_THAT(*csv, HasSubstr(",H0001,\"中山药房, \"\"东\"\"\","));
}

TEST_P(StatementTest, ThePdfIsAPdf14DocumentWithTheLinesAndAValidCrossReference) {
  auto pdf = StatementPdf(*services_, {kAsn, "2026-11-01", "2026-11-30"});
  ASSERT_TRUE(pdf.ok()) << pdf.error().message;
  EXPECT_EQ(pdf->rfind("%PDF-1.4\n", 0), 0u);
  EXPECT_THAT(*pdf, HasSubstr("(Statement of card " + std::string(kAsn) + ") Tj"));
  EXPECT_THAT(*pdf, HasSubstr("ED closing balance 184.45"));
  EXPECT_THAT(*pdf, HasSubstr("City Hospital"));
  ASSERT_GE(pdf->size(), 6u);
  EXPECT_EQ(pdf->substr(pdf->size() - 6), "%%EOF\n");
  // startxref points at the xref table, whose entries point at the objects.
  const auto start = pdf->rfind("startxref\n");
  ASSERT_NE(start, std::string::npos);
  const std::size_t xref = std::stoul(pdf->substr(start + 10));
  EXPECT_EQ(pdf->compare(xref, 5, "xref\n"), 0);
  const std::size_t first_object = std::stoul(pdf->substr(xref + 5 + 4 + 20, 10));
  EXPECT_EQ(pdf->compare(first_object, 8, "1 0 obj\n"), 0);
}

TEST_P(StatementTest, AMalformedPeriodOrUnknownCardIsRefused) {
  auto reversed = StatementCsv(*services_, {kAsn, "2026-11-30", "2026-11-01"});
  ASSERT_FALSE(reversed.ok());
  EXPECT_EQ(reversed.error().code, ErrorCode::kInvalid);
  EXPECT_EQ(reversed.error().field, "to");
  auto malformed = StatementPdf(*services_, {kAsn, "2026/11/01", "2026-11-30"});
  ASSERT_FALSE(malformed.ok());
  EXPECT_EQ(malformed.error().field, "from");
  auto unknown = StatementCsv(*services_, {"11000000000000000999", "2026-11-01", "2026-11-30"});
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
}

INSTANTIATE_TEST_SUITE_P(Engines, StatementTest, test_support::AllEngines(),
                         test_support::EngineTestName);

}  // namespace
}  // namespace medcard::branch::testing
