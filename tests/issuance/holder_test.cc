// HOLDER.json: strict validation (every error names its field), the MOD 11-2 check character,
// UTF-8 ↔ GBK, the card's holder data, and the JSON Schema file kept in step with the parser.
#include "issuance/holder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "issuance_test_support.h"

namespace medcard::issuance {
namespace {

using ::testing::HasSubstr;
using testing::SampleHolderJson;

const Date kToday{2026, 11, 25};

// The sample holder with one field replaced (or removed, when `value` is null).
std::string With(const std::string& field, const nlohmann::json& value) {
  auto doc = nlohmann::json::parse(SampleHolderJson());
  if (value.is_null()) {
    doc.erase(field);
  } else {
    doc[field] = value;
  }
  return doc.dump();
}

std::string ErrorOf(const std::string& json_text) {
  auto parsed = ParseHolderJson(json_text, kToday);
  if (parsed.ok()) return "(accepted)";
  return parsed.error().message;
}

TEST(HolderJson, AcceptsTheSampleWithEveryField) {
  auto h = ParseHolderJson(SampleHolderJson(), kToday);
  ASSERT_TRUE(h.ok()) << h.error().message;
  EXPECT_EQ(h->social_security_number, "11010519491231002X");
  EXPECT_EQ(h->name, "张三");
  EXPECT_EQ(h->sex, Sex::kMale);
  EXPECT_EQ(h->ethnicity, "01");
  EXPECT_EQ(h->birthplace, "110105");
  EXPECT_EQ(h->birth_date, (Date{1949, 12, 31}));
  EXPECT_EQ(h->id_type, IdType::kResidentId);
  EXPECT_EQ(h->insured_category, InsuredCategory::kRetiree);
  EXPECT_EQ(h->employer_unit_code, "91110105MA01");
  EXPECT_EQ(h->pooling_area, "110100");
  EXPECT_EQ(h->designated_facilities, (std::vector<std::string>{"H110105001", "H110105002"}));
  EXPECT_EQ(h->emergency_data, "血型 A，青霉素过敏");
  EXPECT_EQ(h->insurance_status, InsuranceStatus::kActive);
  EXPECT_FALSE(h->valid_from.has_value());
}

TEST(HolderJson, ReadsTheOptionalFields) {
  auto doc = nlohmann::json::parse(SampleHolderJson());
  doc["card_type"] = 7;
  doc["staff_flag"] = true;
  doc["insurance_status"] = "suspended";
  doc["validity"] = {{"start", "2026-12-01"}, {"expiry", "2031-11-30"}};
  doc["$schema"] = "holder.schema.json";
  auto h = ParseHolderJson(doc.dump(), kToday);
  ASSERT_TRUE(h.ok()) << h.error().message;
  EXPECT_EQ(h->card_type, 7);
  EXPECT_TRUE(h->staff);
  EXPECT_EQ(h->insurance_status, InsuranceStatus::kSuspended);
  EXPECT_EQ(h->valid_from, (Date{2026, 12, 1}));
  EXPECT_EQ(h->valid_to, (Date{2031, 11, 30}));
}

struct BadField {
  std::string label;  // the test's name
  std::string field;
  nlohmann::json value;  // null: the field is removed
  std::string expected;  // the whole message must contain it
};

class HolderJsonRefuses : public ::testing::TestWithParam<BadField> {};

TEST_P(HolderJsonRefuses, NamingTheField) {
  const BadField& c = GetParam();
  EXPECT_THAT(ErrorOf(With(c.field, c.value)), HasSubstr(c.expected));
}

INSTANTIATE_TEST_SUITE_P(
    EveryRule, HolderJsonRefuses,
    ::testing::Values(
        BadField{"MissingName", "name", nullptr, "holder.name: missing"},
        BadField{"UnknownField", "nickname", "Zhang", "holder.nickname: unknown field"},
        BadField{"ImpossibleBirthDate", "birth_date", "1990-02-30",
                 "holder.birth_date: \"1990-02-30\" is not a real date"},
        BadField{"BirthDateNotIso", "birth_date", "31/12/1949",
                 "holder.birth_date: not a date (YYYY-MM-DD)"},
        BadField{"BirthDateNotAString", "birth_date", 19491231, "holder.birth_date: not a string"},
        BadField{"BirthDateInTheFuture", "birth_date", "2030-01-01",
                 "holder.birth_date: 2030-01-01 is in the future"},
        BadField{"SsnTooShort", "social_security_number", "11010519491231002",
                 "holder.social_security_number: must be 17 digits and a check character"},
        BadField{"SsnWrongCheckCharacter", "social_security_number", "110105194912310021",
                 "holder.social_security_number: check character is 1, ISO 7064 MOD 11-2 gives X"},
        BadField{"SsnLowerCaseX", "social_security_number", "11010519491231002x",
                 "holder.social_security_number: check character is x"},
        BadField{"SsnBirthDateMismatch", "social_security_number", "110105195001010012",
                 "does not match holder.birth_date 1949-12-31"},
        BadField{"EmptyName", "name", "", "holder.name: empty"},
        BadField{"NameWithLeadingSpace", "name", " 张三", "holder.name: leading or trailing space"},
        BadField{"NameWithControlCharacter", "name", "张\t三",
                 "holder.name: control character U+0009"},
        BadField{"NameOutsideGbk", "name", "张三😀",
                 "holder.name: character U+1F600 cannot be written in GBK"},
        BadField{"NameTooLongInGbk", "name", "欧阳娜娜欧阳娜娜欧阳娜",
                 "holder.name: 22 bytes in GBK; the card holds at most 20"},
        BadField{"UnknownSex", "sex", "m",
                 "holder.sex: \"m\" is not one of male, female, unknown, unspecified"},
        BadField{"UnknownEthnicity", "ethnicity", "57",
                 "holder.ethnicity: \"57\" is not a GB 3304 code"},
        BadField{"EthnicityOneDigit", "ethnicity", "1", "holder.ethnicity: must be 2 digits"},
        BadField{"BirthplaceNotDigits", "birthplace", "11010A",
                 "holder.birthplace: must be 6 digits"},
        BadField{"PoolingAreaSevenDigits", "pooling_area", "1101000",
                 "holder.pooling_area: must be 6 digits"},
        BadField{"UnknownIdType", "id_type", "id_card",
                 "holder.id_type: \"id_card\" is not one of resident_id"},
        BadField{"ResidentIdWrongCheck", "id_number", "110105194912310021",
                 "holder.id_number: not a resident ID number"},
        BadField{"IdNumberWithSpace", "id_number", "G 1234567",
                 "holder.id_number: must be 1 to 32 printable ASCII"},
        BadField{"UnknownInsuredCategory", "insured_category", "student",
                 "holder.insured_category: \"student\""},
        BadField{"EmployerCodeLowerCase", "employer_unit_code", "91110105ma01",
                 "holder.employer_unit_code: must be 1 to 15"},
        BadField{"EmployerCodeTooLong", "employer_unit_code", "9111010500000000",
                 "holder.employer_unit_code: must be 1 to 15"},
        BadField{"UnknownInsuranceStatus", "insurance_status", "paused",
                 "holder.insurance_status: \"paused\""},
        BadField{"FacilitiesNotAnArray", "designated_facilities", "H110105001",
                 "holder.designated_facilities: not an array"},
        BadField{"FourFacilities", "designated_facilities",
                 nlohmann::json::array({"H1", "H2", "H3", "H4"}),
                 "holder.designated_facilities: at most 3 facilities"},
        BadField{"FacilityCodeTooLong", "designated_facilities",
                 nlohmann::json::array({"H1", "H12345678901"}),
                 "holder.designated_facilities[1]: must be 1 to 10 characters 0-9 A-Z"},
        BadField{"FacilityListedTwice", "designated_facilities",
                 nlohmann::json::array({"H1", "H1"}),
                 "holder.designated_facilities[1]: \"H1\" is listed twice"},
        BadField{"EmergencyDataTooLong", "emergency_data", std::string(65, 'A'),
                 "holder.emergency_data: 65 bytes in GBK; the card holds at most 64"},
        BadField{"CardTypeOutOfRange", "card_type", 256,
                 "holder.card_type: must be an integer 0 to 255"},
        BadField{"CardTypeNotAnInteger", "card_type", "1",
                 "holder.card_type: must be an integer 0 to 255"},
        BadField{"StaffFlagNotBoolean", "staff_flag", 1, "holder.staff_flag: not true or false"},
        BadField{"ValidityWithoutExpiry", "validity", nlohmann::json{{"start", "2026-01-01"}},
                 "holder.validity.expiry: missing"},
        BadField{"ValidityUnknownField", "validity",
                 nlohmann::json{
                     {"start", "2026-01-01"}, {"expiry", "2031-01-01"}, {"renewal", "2030-01-01"}},
                 "holder.validity.renewal: unknown field"},
        BadField{"ValidityReversed", "validity",
                 nlohmann::json{{"start", "2026-06-01"}, {"expiry", "2026-05-01"}},
                 "holder.validity.expiry: before validity.start"},
        BadField{"ValidityPassed", "validity",
                 nlohmann::json{{"start", "2010-01-01"}, {"expiry", "2020-01-01"}},
                 "holder.validity.expiry: 2020-01-01 has passed"}),
    [](const ::testing::TestParamInfo<BadField>& param_info) { return param_info.param.label; });

TEST(HolderJson, RefusesSyntaxErrorsByPositionWithoutQuotingTheText) {
  const std::string message = ErrorOf("{\n  \"name\": \"张三\",\n  oops\n}");
  EXPECT_THAT(message, HasSubstr("holder: not valid JSON (line 3, column 3)"));
  EXPECT_THAT(message, ::testing::Not(HasSubstr("张三")));
  EXPECT_THAT(ErrorOf("[1, 2]"), HasSubstr("holder: not a JSON object"));
}

TEST(HolderJson, RefusesAFieldGivenTwice) {
  std::string text = SampleHolderJson();
  text.insert(1, "\"sex\": \"female\",");
  EXPECT_THAT(ErrorOf(text), HasSubstr("holder.sex: appears twice"));
}

TEST(HolderJson, RefusesTextThatIsNotUtf8) {
  std::string text = With("name", "XY");
  text.replace(text.find("XY"), 2, "\xC3\x28");
  EXPECT_THAT(ErrorOf(text), HasSubstr("holder: not valid JSON (line 1"));
}

TEST(Mod112, GivesTheCheckCharacterOfPublishedExamples) {
  // GB 11643 sample numbers.
  EXPECT_EQ(Mod112CheckCharacter("11010519491231002"), 'X');
  EXPECT_EQ(Mod112CheckCharacter("44052418800101001"), '4');
  EXPECT_TRUE(IsValidResidentIdNumber("11010519491231002X"));
  EXPECT_TRUE(IsValidResidentIdNumber("440524188001010014"));
  EXPECT_FALSE(IsValidResidentIdNumber("440524188001010015"));
  EXPECT_FALSE(IsValidResidentIdNumber("11010519491231002x"));
  EXPECT_FALSE(IsValidResidentIdNumber("1101051949123100"));
}

TEST(Gbk, ConvertsChineseNamesBothWays) {
  auto gbk = Utf8ToGbk("张三");
  ASSERT_TRUE(gbk.ok()) << gbk.error().message;
  EXPECT_EQ(*gbk, HexToBytes("D5C5C8FD"));
  auto dot = Utf8ToGbk("阿依·买买提");  // a middle dot, as in transliterated names
  ASSERT_TRUE(dot.ok()) << dot.error().message;
  auto back = GbkToUtf8(View(*dot));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, "阿依·买买提");
  EXPECT_THAT(Utf8ToGbk("\xF0\x9F\x98\x80").error().message,
              HasSubstr("U+1F600 cannot be written in GBK"));
  EXPECT_THAT(Utf8ToGbk("\xE5\xBC").error().message, HasSubstr("not valid UTF-8"));
  EXPECT_FALSE(GbkToUtf8(HexToBytes("D5")).ok());
}

TEST(CardHolderData, PutsTheHolderOnTheCardInItsEncodings) {
  auto holder = ParseHolderJson(SampleHolderJson(), kToday);
  ASSERT_TRUE(holder.ok());
  CardIdentity identity;
  identity.issuer_id = HexToBytes("4D45444341524431");
  identity.asn = HexToBytes("11000000000123456789");
  identity.issue_date = Date{2028, 2, 29};
  identity.validity_years = 5;
  identity.key_version = 2;
  identity.pin = "246810";
  auto h = ToCardHolderData(*holder, identity);
  ASSERT_TRUE(h.ok()) << h.error().message;
  EXPECT_EQ(h->name_gbk, HexToBytes("D5C5C8FD"));
  EXPECT_EQ(h->ssse_name_gbk, HexToBytes("D5C5C8FD"));
  EXPECT_EQ(h->sex, '1');
  EXPECT_EQ(h->ethnicity, 0x01);
  EXPECT_EQ(h->birthplace, HexToBytes("110105"));
  EXPECT_EQ(h->birth_date, (Date{1949, 12, 31}));
  EXPECT_EQ(h->insured_category, 0x02);
  EXPECT_EQ(h->start_date, (Date{2028, 2, 29}));
  EXPECT_EQ(h->expiry_date, (Date{2033, 2, 28}));  // no 29 February in 2033
  EXPECT_EQ(h->ssse_card_id, "0000000123456789");
  EXPECT_EQ(h->ssse_card_number, "123456789");
  EXPECT_EQ(h->key_version, 2);
  EXPECT_EQ(h->issuer_data, Bytes(2, 0x00));
  auto layout = card::StandardLayout(*h);
  EXPECT_TRUE(layout.ok()) << layout.error().message;
}

TEST(HolderSchema, DocumentedSchemaListsExactlyTheFieldsTheParserTakes) {
  std::ifstream in(std::string(MEDCARD_TEST_DATA_DIR) + "/../../docs/holder.schema.json");
  ASSERT_TRUE(in) << "docs/holder.schema.json is missing";
  std::stringstream text;
  text << in.rdbuf();
  auto schema = nlohmann::json::parse(text.str());
  EXPECT_EQ(schema.at("additionalProperties"), false);
  std::vector<std::string> properties;
  for (const auto& [name, _] : schema.at("properties").items()) properties.push_back(name);
  std::vector<std::string> fields = HolderFields();
  std::sort(properties.begin(), properties.end());
  std::sort(fields.begin(), fields.end());
  EXPECT_EQ(properties, fields);
  std::vector<std::string> required = schema.at("required").get<std::vector<std::string>>();
  std::vector<std::string> expected_required = RequiredHolderFields();
  std::sort(required.begin(), required.end());
  std::sort(expected_required.begin(), expected_required.end());
  EXPECT_EQ(required, expected_required);
}

}  // namespace
}  // namespace medcard::issuance
