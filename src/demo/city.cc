#include "demo/city.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <unordered_set>

namespace medcard::demo {
namespace {

// SplitMix64: a fixed, documented generator, so a seed gives the same city on every platform
// (the standard library's distributions are implementation-defined).
class Random {
 public:
  explicit Random(std::uint64_t seed) : state_(seed) {}
  std::uint64_t Next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  // In [low, high].
  int Between(int low, int high) {
    const auto span = static_cast<std::uint64_t>(high - low + 1);
    return low + static_cast<int>(Next() % span);
  }
  template <typename T, std::size_t N>
  const T& Pick(const std::array<T, N>& items) {
    return items[static_cast<std::size_t>(Next() % N)];
  }
  Bytes TakeBytes(std::size_t n) {
    Bytes out(n);
    for (auto& b : out) b = static_cast<std::uint8_t>(Next() & 0xFF);
    return out;
  }

 private:
  std::uint64_t state_;
};

constexpr std::array<const char*, 16> kFamilyNames = {
    "Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Zhao", "Huang",
    "Zhou", "Wu", "Xu",    "Sun", "Ma",   "Zhu",  "Hu",   "Guo"};
constexpr std::array<const char*, 20> kGivenNames = {
    "Wei", "Fang", "Min",  "Jing",   "Lei", "Qiang", "Yan",  "Jun",  "Hui",   "Xin",
    "Tao", "Ming", "Chao", "Xiulan", "Yu",  "Hao",   "Ping", "Gang", "Lijun", "Guiying"};
constexpr std::array<const char*, 10> kUnitWords = {"Riverside", "Capital", "Northgate", "Lotus",
                                                    "Harbour",   "Jade",    "Eastern",   "Summit",
                                                    "Willow",    "Golden"};
constexpr std::array<const char*, 8> kUnitKinds = {"Steel Works", "Textiles", "Printing Co.",
                                                   "Logistics",   "Software", "Foods",
                                                   "Machinery",   "Ceramics"};
// Districts of the pooling area (the first six digits of an identity number).
constexpr std::array<const char*, 6> kDistricts = {"110101", "110102", "110105",
                                                   "110106", "110107", "110108"};

std::string Digits(Random& random, int count) {
  std::string out;
  for (int i = 0; i < count; ++i) out += static_cast<char>('0' + random.Between(0, 9));
  return out;
}

std::string Padded(int value, int width) {
  std::string text = std::to_string(value);
  if (static_cast<int>(text.size()) < width) {
    text.insert(0, static_cast<std::size_t>(width) - text.size(), '0');
  }
  return text;
}

int DaysIn(int year, int month) {
  static constexpr std::array<int, 12> kDays = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return month == 2 && leap ? 29 : kDays[static_cast<std::size_t>(month - 1)];
}

}  // namespace

char IdentityCheckCharacter(std::string_view first17) {
  static constexpr std::array<int, 17> kWeights = {7, 9, 10, 5,  8, 4, 2, 1, 6,
                                                   3, 7, 9,  10, 5, 8, 4, 2};
  int sum = 0;
  for (std::size_t i = 0; i < 17 && i < first17.size(); ++i) {
    sum += (first17[i] - '0') * kWeights[i];
  }
  static constexpr char kCheck[] = "10X98765432";
  return kCheck[sum % 11];
}

void SetTerminals(CityOptions& options, int terminals) {
  options.pharmacies = terminals * 2 / 5;
  options.hospitals = terminals - options.pharmacies;
}

City GenerateCity(const CityOptions& options) {
  Random random(options.seed);
  City city;
  city.seed = options.seed;

  for (int u = 0; u < options.units; ++u) {
    Unit unit;
    unit.code = "U" + Padded(u + 1, 3);
    unit.name = std::string(random.Pick(kUnitWords)) + " " + random.Pick(kUnitKinds);
    unit.bank_account = "6222" + Digits(random, 12);
    city.units.push_back(std::move(unit));
  }

  std::unordered_set<std::string> ssns;
  for (int p = 0; p < options.people; ++p) {
    Person person;
    // Every eighth person (from the fourth on) is retired: a few retirees in any city.
    person.retired = p % 8 == 3;
    const int year = person.retired ? random.Between(1940, 1961) : random.Between(1967, 2003);
    const int month = random.Between(1, 12);
    person.birth_date = Date{year, month, random.Between(1, DaysIn(year, month))};
    // The sequence number is the person's index (mod 1000): below 1000 people no two share a
    // number. Beyond, two born the same day in the same district may: the next free sequence
    // number then (no random draw, so the rest of the city stays the same).
    const std::string born = std::string(random.Pick(kDistricts)) + Padded(year, 4) +
                             Padded(month, 2) + Padded(person.birth_date.day, 2);
    std::string first17 = born + Padded(p % 1000, 3);
    for (int next = 1; ssns.contains(first17) && next < 1000; ++next) {
      first17 = born + Padded((p + next) % 1000, 3);
    }
    person.ssn = first17 + IdentityCheckCharacter(first17);
    ssns.insert(first17);
    person.name = std::string(random.Pick(kFamilyNames)) + " " + random.Pick(kGivenNames);
    person.unit_code = city.units.empty()
                           ? std::string()
                           : city.units[static_cast<std::size_t>(p) % city.units.size()].code;
    // 4,000.00 .. 30,000.00 yuan a month, in whole yuan.
    person.wage_fen = static_cast<std::int64_t>(random.Between(4000, 30000)) * 100;
    city.people.push_back(std::move(person));
  }

  const int hospitals = std::max(options.hospitals, 0);
  for (int h = 0; h < hospitals; ++h) {
    Merchant m;
    m.kind = MerchantKind::kHospital;
    m.grade = 3 - h % 3;
    m.id = "89811000" + std::to_string(m.grade) + Padded(h + 1, 6);
    static constexpr std::array<const char*, 3> kGradeNames = {
        "Community Health Centre", "District Hospital", "General Hospital"};
    m.name = std::string(random.Pick(kUnitWords)) + " " +
             kGradeNames[static_cast<std::size_t>(m.grade - 1)];
    m.grade_text = "hospital-grade" + std::to_string(m.grade);
    m.facility_code = "H" + Padded(h + 1, 2);
    city.merchants.push_back(std::move(m));
  }
  for (int f = 0; f < std::max(options.pharmacies, 0); ++f) {
    Merchant m;
    m.kind = MerchantKind::kPharmacy;
    m.id = "898110009" + Padded(f + 1, 6);
    m.name = std::string(random.Pick(kUnitWords)) + " Pharmacy";
    m.grade_text = "pharmacy";
    m.facility_code = "P" + Padded(f + 1, 2);
    city.merchants.push_back(std::move(m));
  }

  for (std::size_t t = 0; t < city.merchants.size(); ++t) {
    Terminal terminal;
    const int n = static_cast<int>(t) + 1;
    terminal.merchant_id = city.merchants[t].id;
    terminal.terminal_id = "POS" + Padded(n, 5);
    terminal.terminal_number = HexToBytes("00000011" + Padded(n, 4));
    terminal.psam_serial = HexToBytes("5000000000000011" + Padded(n, 4));
    terminal.tmk = random.TakeBytes(16);
    city.terminals.push_back(std::move(terminal));
  }

  const int cards = std::clamp(options.cards, 0, options.people);
  for (int c = 0; c < cards; ++c) {
    Card card;
    card.person_ssn = city.people[static_cast<std::size_t>(c)].ssn;
    card.asn = HexToBytes("11000000000000" + Padded(10000 + c + 1, 6));
    card.pin = Digits(random, 6);
    city.cards.push_back(std::move(card));
  }
  return city;
}

}  // namespace medcard::demo
