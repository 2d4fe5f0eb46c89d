#include "issuance/test_issuer.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "crypto/crypto.h"

namespace medcard::issuance {
namespace {

std::string ShippedKeySetText() {
  std::ifstream in(std::string(MEDCARD_TEST_DATA_DIR) + "/../../share/test-keyset.json");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(TestKeySet, ShippedFileParsesAndMatchesTheEmbeddedCopy) {
  auto set = TestKeySet::FromJson(ShippedKeySetText());
  ASSERT_TRUE(set.ok()) << set.error().message;
  for (const auto& role : TestKeySet::RequiredRoles()) {
    EXPECT_EQ(set->MasterKey(role), TestKeySet::Embedded().MasterKey(role)) << role;
    EXPECT_EQ(set->MasterKey(role).size(), 16u) << role;
  }
}

TEST(TestKeySet, RefusesAFileNotMarkedTestOnly) {
  std::string text = ShippedKeySetText();
  auto pos = text.find("\"test_only\": true");
  ASSERT_NE(pos, std::string::npos);
  text.replace(pos, 17, "\"test_only\": false");
  auto set = TestKeySet::FromJson(text);
  ASSERT_FALSE(set.ok());
  EXPECT_NE(set.error().message.find("test_only"), std::string::npos);
}

TEST(TestKeySet, RefusesBadKeysNamingTheRole) {
  std::string base = ShippedKeySetText();
  auto with = [&](const std::string& from, const std::string& to) {
    std::string t = base;
    auto pos = t.find(from);
    EXPECT_NE(pos, std::string::npos);
    t.replace(pos, from.size(), to);
    return TestKeySet::FromJson(t);
  };
  auto short_key = with("\"purchase\": \"", "\"purchase\": \"00");
  ASSERT_FALSE(short_key.ok());
  EXPECT_NE(short_key.error().message.find("purchase"), std::string::npos);
  auto unknown = with("\"purchase\"", "\"purchace\"");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.error().message.find("purchace"), std::string::npos);
  EXPECT_FALSE(TestKeySet::FromJson("not json").ok());
  EXPECT_FALSE(TestKeySet::FromJson("[]").ok());
}

TEST(IssueTestCard, GivesAnOperationalTestCardWithTheHolderData) {
  Bytes asn = HexToBytes("11000000000000000042");
  auto card = IssueTestCard(TestKeySet::Embedded(), std::make_unique<nvm::FaultInjectionMedium>(),
                            TestHolder(asn, "123456"));
  ASSERT_TRUE(card.ok()) << card.error().message;
  auto summary = (*card)->Inspect();
  EXPECT_EQ(summary.lifecycle, card::Lifecycle::kOperational);
  EXPECT_FALSE(summary.transport_key_present);
  ASSERT_EQ(summary.purses.size(), 1u);
  EXPECT_EQ(summary.purses[0].asn, asn);
  EXPECT_EQ(summary.purses[0].ed.balance, 0u);
  EXPECT_EQ(summary.purses[0].ep.balance, 0u);
}

TEST(IssueTestCard, RefusesAMediumThatAlreadyHoldsACard) {
  Bytes asn = HexToBytes("11000000000000000043");
  auto medium = std::make_unique<nvm::FaultInjectionMedium>();
  auto* raw = medium.get();
  auto first = IssueTestCard(TestKeySet::Embedded(), std::move(medium), TestHolder(asn, "123456"));
  ASSERT_TRUE(first.ok());
  auto second = IssueTestCard(TestKeySet::Embedded(), raw->Reopen(), TestHolder(asn, "123456"));
  EXPECT_FALSE(second.ok());
}

TEST(IssueTestPsam, GivesAnOperationalPsamForTheTerminal) {
  auto psam = IssueTestPsam(TestKeySet::Embedded(), std::make_unique<nvm::FaultInjectionMedium>(),
                            HexToBytes("50000000000000000007"), HexToBytes("000000000007"));
  ASSERT_TRUE(psam.ok()) << psam.error().message;
  auto inspection = (*psam)->Inspect();
  EXPECT_EQ(inspection.lifecycle, psam::Lifecycle::kOperational);
  EXPECT_EQ(inspection.terminal_number, HexToBytes("000000000007"));
  EXPECT_EQ(inspection.totals.count, 0u);
}

}  // namespace
}  // namespace medcard::issuance
