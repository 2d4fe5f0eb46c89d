// The strict request bodies (docs/api.md "Requests"): what passes and what is refused, with the
// field named.
#include "api/json_request.h"

#include <gtest/gtest.h>

#include <string>

namespace medcard::api {
namespace {

using access::ErrorCode;

const Schema& Authorisation() {
  static const Schema schema = Schema()
                                   .String("login", Presence::kRequired, 3, 32, Pattern::kLogin)
                                   .String("password", Presence::kRequired, 1, 200);
  return schema;
}

const Schema& Payment() {
  static const Schema schema = Schema()
                                   .String("asn", Presence::kRequired, 20, 20, Pattern::kAsn)
                                   .Money("amount", Presence::kRequired, 1'000'000)
                                   .String("day", Presence::kOptional, 10, 10, Pattern::kDate)
                                   .String("note", Presence::kOptional, 0, 5)
                                   .Boolean("urgent", Presence::kOptional)
                                   .Object("authorisation", Presence::kOptional, Authorisation());
  return schema;
}

// The field a refused body names ("" for the body as a whole).
std::string RefusedField(const std::string& body) {
  auto parsed = ParseJsonRequest(body, Payment());
  EXPECT_FALSE(parsed.ok()) << body;
  if (parsed.ok()) return "<accepted>";
  EXPECT_EQ(parsed.error().code, ErrorCode::kInvalid) << body;
  return parsed.error().field;
}

TEST(JsonRequestTest, AcceptsAValidBodyAndReadsItsValues) {
  auto parsed = ParseJsonRequest(
      R"({"asn": "0123456789abcdef0123", "amount": 1500, "day": "2024-02-29", "note": "药费",
          "urgent": true, "authorisation": {"login": "s01", "password": "pw"}})",
      Payment());
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->String("asn"), "0123456789abcdef0123");
  EXPECT_EQ(parsed->Integer("amount"), 1500);
  EXPECT_EQ(parsed->OptionalString("note"), "药费");  // 2 characters, 6 bytes: within 5
  EXPECT_EQ(parsed->OptionalBoolean("urgent"), true);
  auto authorisation = parsed->OptionalObject("authorisation");
  ASSERT_TRUE(authorisation.has_value());
  EXPECT_EQ(authorisation->String("login"), "s01");
}

TEST(JsonRequestTest, OptionalFieldsMayBeAbsentOrNull) {
  auto parsed =
      ParseJsonRequest(R"({"asn": "0123456789ABCDEF0123", "amount": 0, "day": null})", Payment());
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_FALSE(parsed->OptionalString("day").has_value());
  EXPECT_FALSE(parsed->OptionalObject("authorisation").has_value());
}

TEST(JsonRequestTest, MalformedJsonIsRefused) {
  EXPECT_EQ(RefusedField(R"({"asn": "0123456789ABCDEF0123", "amount": 1)"), "");
  EXPECT_EQ(RefusedField("{'asn': 1}"), "");
  EXPECT_EQ(RefusedField(R"({"amount": 1,})"), "");
  EXPECT_EQ(RefusedField("[1, 2]"), "");
  EXPECT_EQ(RefusedField("\"text\""), "");
  EXPECT_EQ(RefusedField("{\"note\": \"\xff\xfe\"}"), "");  // not UTF-8
}

TEST(JsonRequestTest, MissingAndUnknownFieldsAreNamed) {
  EXPECT_EQ(RefusedField(R"({"amount": 1})"), "asn");
  EXPECT_EQ(RefusedField(R"({"asn": "0123456789ABCDEF0123"})"), "amount");
  EXPECT_EQ(RefusedField(R"({"asn": "0123456789ABCDEF0123", "amount": 1, "amout": 2})"), "amout");
  EXPECT_EQ(RefusedField(R"({"asn": "0123456789ABCDEF0123", "amount": 1,
                             "authorisation": {"login": "s01"}})"),
            "authorisation.password");
  EXPECT_EQ(RefusedField(R"({"asn": "0123456789ABCDEF0123", "amount": 1,
                             "authorisation": {"login": "s01", "password": "x", "pin": "1"}})"),
            "authorisation.pin");
}

TEST(JsonRequestTest, DuplicateFieldsAreRefused) {
  EXPECT_EQ(RefusedField(R"({"asn": "0123456789ABCDEF0123", "amount": 1, "amount": 100000})"),
            "amount");
}

TEST(JsonRequestTest, MoneyIsAnIntegerNumberOfFenInRange) {
  const std::string asn = R"("asn": "0123456789ABCDEF0123", )";
  EXPECT_EQ(RefusedField("{" + asn + R"("amount": 1.5})"), "amount");
  EXPECT_EQ(RefusedField("{" + asn + R"("amount": 1.0})"), "amount");
  EXPECT_EQ(RefusedField("{" + asn + R"("amount": 1e3})"), "amount");
  EXPECT_EQ(RefusedField("{" + asn + R"("amount": "100"})"), "amount");
  EXPECT_EQ(RefusedField("{" + asn + R"("amount": -1})"), "amount");
  EXPECT_EQ(RefusedField("{" + asn + R"("amount": 1000001})"), "amount");
  EXPECT_EQ(RefusedField("{" + asn + R"("amount": 18446744073709551615})"), "amount");
  EXPECT_EQ(RefusedField("{" + asn + R"("amount": true})"), "amount");
  EXPECT_EQ(RefusedField("{" + asn + R"("amount": null})"), "amount");
  EXPECT_TRUE(ParseJsonRequest("{" + asn + R"("amount": 1000000})", Payment()).ok());
}

TEST(JsonRequestTest, WrongTypesAreRefused) {
  const std::string base = R"("asn": "0123456789ABCDEF0123", "amount": 1, )";
  EXPECT_EQ(RefusedField(R"({"asn": 123456, "amount": 1})"), "asn");
  EXPECT_EQ(RefusedField("{" + base + R"("urgent": "yes"})"), "urgent");
  EXPECT_EQ(RefusedField("{" + base + R"("authorisation": "s01:pw"})"), "authorisation");
  EXPECT_EQ(RefusedField("{" + base + R"("note": ["a"]})"), "note");
}

TEST(JsonRequestTest, PatternsAndLengths) {
  EXPECT_EQ(RefusedField(R"({"asn": "0123456789ABCDEF012", "amount": 1})"), "asn");
  EXPECT_EQ(RefusedField(R"({"asn": "0123456789ABCDEF012G", "amount": 1})"), "asn");
  const std::string base = R"("asn": "0123456789ABCDEF0123", "amount": 1, )";
  EXPECT_EQ(RefusedField("{" + base + R"("day": "2023-02-29"})"), "day");
  EXPECT_EQ(RefusedField("{" + base + R"("day": "2024-13-01"})"), "day");
  EXPECT_EQ(RefusedField("{" + base + R"("day": "24-01-01xx"})"), "day");
  EXPECT_EQ(RefusedField("{" + base + R"("note": "abcdef"})"), "note");
  EXPECT_EQ(RefusedField("{" + base + R"("note": "a\u0000b"})"), "note");
  EXPECT_EQ(RefusedField("{" + base + R"("authorisation": {"login": "S01", "password": "x"}})"),
            "authorisation.login");
}

TEST(JsonRequestTest, EmptyBodyIsAnEmptyObject) {
  static const Schema optional_only = Schema().String("reason", Presence::kOptional, 0, 10);
  EXPECT_TRUE(ParseJsonRequest("", optional_only).ok());
  EXPECT_TRUE(ParseJsonRequest("  \n", optional_only).ok());
  EXPECT_FALSE(ParseJsonRequest("", Payment()).ok());
}

TEST(JsonRequestTest, DeepNestingAndOversizedBodiesAreRefused) {
  std::string deep = R"({"note": )" + std::string(100, '[') + std::string(100, ']') + "}";
  EXPECT_EQ(RefusedField(deep), "");
  EXPECT_EQ(RefusedField(std::string(kMaxBodyBytes + 1, ' ')), "");
}

}  // namespace
}  // namespace medcard::api
