// A small city for `medcard demo` (issue 8), generated deterministically from a seed: employer
// units, insured people (names, resident identity numbers with a valid GB 11643 check character,
// birth dates, wages, a few retirees), hospitals of the three grades and pharmacies as merchants,
// one POS terminal (with its PSAM) per merchant, and the cards the bank issues to the first
// people. The same seed and options always give the same city; nothing here touches a clock or
// the system's random source.
//
//   demo::City city = demo::GenerateCity({.seed = 7});
//   for (const demo::Person& p : city.people) ...
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/bcd.h"
#include "common/bytes.h"

namespace medcard::demo {

struct CityOptions {
  std::uint64_t seed = 1;
  int units = 4;
  int people = 24;    // of whom about one in eight retired
  int cards = 12;     // the first `cards` people get a card (at most `people`)
  int hospitals = 3;  // grades 3, 2, 1, 3, 2, ... (at least one of each when >= 3)
  int pharmacies = 2;
};

// `terminals` merchants (one terminal each), as a city has them: three in five hospitals (of the
// three grades in turn), the rest pharmacies; 5 gives the default 3 + 2. REQUIRES: terminals >= 1.
void SetTerminals(CityOptions& options, int terminals);

// The pooling area every unit of the demo city belongs to: the example policy's
// (config/policy/beijing-example.json).
inline constexpr char kDemoArea[] = "110000";

struct Unit {
  std::string code;          // "U001"
  std::string name;          // "Riverside Steel Works"
  std::string bank_account;  // 16 digits
};

struct Person {
  std::string ssn;  // 18-character resident identity number, valid check character
  std::string name;
  Date birth_date;
  std::string unit_code;
  std::int64_t wage_fen = 0;  // declared monthly wage; retirees: their last one
  bool retired = false;
};

enum class MerchantKind { kHospital, kPharmacy };

struct Merchant {
  std::string id;  // field 42: 15 digits
  std::string name;
  MerchantKind kind = MerchantKind::kHospital;
  int grade = 0;              // hospitals: 1..3 (3 = largest); pharmacies: 0
  std::string grade_text;     // the host's facility grade: "hospital-grade3", "pharmacy"
  std::string facility_code;  // for hospital visit records: "H01", "P01"
};

// Numbers are counters: up to 9,999 terminals (terminal number 00000011nnnn, PSAM serial
// 5000000000000011nnnn) and 989,999 cards (ASN 11000000000000nnnnnn from 010001 on).
struct Terminal {
  std::string merchant_id;
  std::string terminal_id;  // field 41: 8 characters
  Bytes terminal_number;    // 6
  Bytes psam_serial;        // 10
  Bytes tmk;                // 16: the TEST terminal master key both sides load
};

struct Card {
  std::string person_ssn;
  Bytes asn;        // 10
  std::string pin;  // 6 digits
};

struct City {
  std::uint64_t seed = 0;
  std::vector<Unit> units;
  std::vector<Person> people;  // by generation order; people[i] holds cards[i] when i < cards
  std::vector<Merchant> merchants;
  std::vector<Terminal> terminals;  // terminals[i] belongs to merchants[i]
  std::vector<Card> cards;
};

// REQUIRES: every count >= 0 (cards is capped at people).
City GenerateCity(const CityOptions& options);

// The GB 11643 (ISO 7064 MOD 11-2) check character of the first 17 digits.
char IdentityCheckCharacter(std::string_view first17);

}  // namespace medcard::demo
