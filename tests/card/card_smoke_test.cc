#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "card_test_support.h"

namespace medcard::card_test {
namespace {

TEST(Smoke, PersonaliseLoadPurchase) {
  TestCard c = MakePersonalisedCard();
  ASSERT_TRUE(c.card);
  std::cout << card::ToJson(c.card->Inspect()).dump(1) << "\n";
  SelectAdf(*c.card);
  LoadOutcome l = Load(*c.card, true, 1000);
  EXPECT_EQ(SwHex(l.sw), "9000");
  PurchaseOutcome p = Purchase(*c.card, true, 300);
  EXPECT_EQ(SwHex(p.sw), "9000");
  std::cout << c.medium->SurvivingContent().size() << "\n";
}

}  // namespace
}  // namespace medcard::card_test
