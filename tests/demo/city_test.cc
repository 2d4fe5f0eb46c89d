// The demo city (src/demo/city.h): deterministic from its seed, and data the agency and the bank
// accept as they are (valid identity numbers that carry the birth date, unique keys).
#include "demo/city.h"

#include <gtest/gtest.h>

#include <set>
#include <tuple>

#include "insurance/registry.h"

namespace medcard::demo {
namespace {

bool SameCity(const City& a, const City& b) {
  if (a.people.size() != b.people.size() || a.units.size() != b.units.size() ||
      a.merchants.size() != b.merchants.size() || a.cards.size() != b.cards.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.people.size(); ++i) {
    const Person &x = a.people[i], &y = b.people[i];
    if (x.ssn != y.ssn || x.name != y.name || !(x.birth_date == y.birth_date) ||
        x.unit_code != y.unit_code || x.wage_fen != y.wage_fen || x.retired != y.retired) {
      return false;
    }
  }
  for (std::size_t i = 0; i < a.units.size(); ++i) {
    if (a.units[i].name != b.units[i].name || a.units[i].bank_account != b.units[i].bank_account) {
      return false;
    }
  }
  for (std::size_t i = 0; i < a.terminals.size(); ++i) {
    if (a.terminals[i].tmk != b.terminals[i].tmk || a.merchants[i].name != b.merchants[i].name) {
      return false;
    }
  }
  for (std::size_t i = 0; i < a.cards.size(); ++i) {
    if (a.cards[i].asn != b.cards[i].asn || a.cards[i].pin != b.cards[i].pin) return false;
  }
  return true;
}

TEST(DemoCityTest, TheSameSeedGivesTheSameCityAndAnotherSeedAnother) {
  const City first = GenerateCity({.seed = 42});
  EXPECT_TRUE(SameCity(first, GenerateCity({.seed = 42})));
  EXPECT_FALSE(SameCity(first, GenerateCity({.seed = 43})));
  EXPECT_EQ(first.people[0].ssn, GenerateCity({.seed = 42}).people[0].ssn);
}

TEST(DemoCityTest, PeopleHaveValidIdentityNumbersCarryingTheirBirthDates) {
  const City city = GenerateCity({.seed = 7, .people = 200, .cards = 50});
  std::set<std::string> ssns;
  int retirees = 0;
  for (const Person& p : city.people) {
    ASSERT_TRUE(insurance::IsValidSocialSecurityNumber(p.ssn)) << p.ssn;
    EXPECT_EQ(insurance::BirthDateOfSsn(p.ssn), p.birth_date) << p.ssn;
    EXPECT_TRUE(ssns.insert(p.ssn).second) << "duplicate " << p.ssn;
    EXPECT_FALSE(p.name.empty());
    EXPECT_GE(p.wage_fen, 400000);
    EXPECT_LE(p.wage_fen, 3000000);
    if (p.retired) {
      ++retirees;
      EXPECT_LE(p.birth_date.year, 1961);
    }
  }
  EXPECT_EQ(retirees, 25);  // one in eight
  // The published example: 11010519491231002X.
  EXPECT_EQ(IdentityCheckCharacter("11010519491231002"), 'X');
}

TEST(DemoCityTest, MerchantsCoverTheThreeHospitalGradesAndPharmaciesEachWithATerminal) {
  const City city = GenerateCity({.seed = 3, .hospitals = 3, .pharmacies = 2});
  ASSERT_EQ(city.merchants.size(), 5u);
  ASSERT_EQ(city.terminals.size(), 5u);
  std::set<int> grades;
  std::set<std::string> ids, terminal_ids;
  for (std::size_t i = 0; i < city.merchants.size(); ++i) {
    const Merchant& m = city.merchants[i];
    EXPECT_EQ(m.id.size(), 15u) << m.id;
    EXPECT_TRUE(ids.insert(m.id).second);
    if (m.kind == MerchantKind::kHospital) grades.insert(m.grade);
    EXPECT_EQ(city.terminals[i].merchant_id, m.id);
    EXPECT_EQ(city.terminals[i].terminal_id.size(), 8u);
    EXPECT_TRUE(terminal_ids.insert(city.terminals[i].terminal_id).second);
    EXPECT_EQ(city.terminals[i].terminal_number.size(), 6u);
    EXPECT_EQ(city.terminals[i].psam_serial.size(), 10u);
    EXPECT_EQ(city.terminals[i].tmk.size(), 16u);
  }
  EXPECT_EQ(grades, (std::set<int>{1, 2, 3}));
  EXPECT_EQ(city.merchants[3].kind, MerchantKind::kPharmacy);
}

TEST(DemoCityTest, TheFirstPeopleHoldTheCardsAndCardsNeverOutnumberPeople) {
  const City city = GenerateCity({.seed = 9, .people = 5, .cards = 8});
  ASSERT_EQ(city.cards.size(), 5u);
  std::set<Bytes> asns;
  for (std::size_t i = 0; i < city.cards.size(); ++i) {
    EXPECT_EQ(city.cards[i].person_ssn, city.people[i].ssn);
    EXPECT_EQ(city.cards[i].asn.size(), 10u);
    EXPECT_EQ(city.cards[i].pin.size(), 6u);
    EXPECT_TRUE(asns.insert(city.cards[i].asn).second);
  }
}

TEST(DemoCityTest, TerminalsAreThreeInFiveHospitalsTheRestPharmacies) {
  for (auto [terminals, hospitals, pharmacies] :
       {std::tuple{5, 3, 2}, std::tuple{1, 1, 0}, std::tuple{20, 12, 8},
        std::tuple{500, 300, 200}}) {
    CityOptions options;
    SetTerminals(options, terminals);
    EXPECT_EQ(options.hospitals, hospitals) << terminals;
    EXPECT_EQ(options.pharmacies, pharmacies) << terminals;
  }
}

// City scale: beyond 999 people, 99 terminals and 9,999 cards the numbers stay unique and well
// formed, and the small city's numbers are what they always were.
TEST(DemoCityTest, AtCityScaleEveryNumberIsUniqueAndTheSmallCitysUnchanged) {
  CityOptions options{.seed = 5, .people = 30000, .cards = 12000};
  SetTerminals(options, 250);
  const City city = GenerateCity(options);
  std::set<std::string> ssns;
  for (const Person& p : city.people) {
    ASSERT_TRUE(insurance::IsValidSocialSecurityNumber(p.ssn)) << p.ssn;
    EXPECT_EQ(insurance::BirthDateOfSsn(p.ssn), p.birth_date) << p.ssn;
    EXPECT_TRUE(ssns.insert(p.ssn).second) << "duplicate " << p.ssn;
  }
  std::set<Bytes> asns, factors;
  for (const Card& c : city.cards) {
    ASSERT_EQ(c.asn.size(), 10u);
    EXPECT_TRUE(asns.insert(c.asn).second);
    factors.insert(Bytes(c.asn.begin() + 2, c.asn.end()));  // the key diversification factor
  }
  EXPECT_EQ(factors.size(), city.cards.size());
  EXPECT_EQ(ToHex(city.cards.front().asn), "11000000000000010001");
  EXPECT_EQ(ToHex(city.cards.back().asn), "11000000000000022000");
  ASSERT_EQ(city.terminals.size(), 250u);
  std::set<Bytes> numbers, serials;
  std::set<std::string> ids, merchants;
  for (const Terminal& t : city.terminals) {
    ASSERT_EQ(t.terminal_number.size(), 6u);
    ASSERT_EQ(t.psam_serial.size(), 10u);
    EXPECT_TRUE(numbers.insert(t.terminal_number).second);
    EXPECT_TRUE(serials.insert(t.psam_serial).second);
    EXPECT_TRUE(ids.insert(t.terminal_id).second);
    EXPECT_TRUE(merchants.insert(t.merchant_id).second);
    EXPECT_EQ(t.merchant_id.size(), 15u);
  }
  EXPECT_EQ(ToHex(city.terminals.front().terminal_number), "000000110001");
  EXPECT_EQ(ToHex(city.terminals.back().terminal_number), "000000110250");
  EXPECT_EQ(ToHex(city.terminals.front().psam_serial), "50000000000000110001");
  // The first 1000 people's identity numbers do not depend on how many more there are.
  const City small = GenerateCity({.seed = 5, .people = 24, .cards = 12});
  for (std::size_t i = 0; i < small.people.size(); ++i) {
    EXPECT_EQ(small.people[i].ssn, city.people[i].ssn);
  }
}

}  // namespace
}  // namespace medcard::demo
