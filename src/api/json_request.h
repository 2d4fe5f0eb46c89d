// Strict JSON request bodies (docs/api.md "Requests"): a small schema per endpoint — required and
// optional fields with their types, string lengths, integer ranges and patterns. Anything else is
// refused with a 400 naming the field: malformed JSON, a duplicate or unknown field, a float or a
// string where an integer (money, in fen) is expected, a value out of range. The handlers read
// only validated values; every string goes to the database as a bound parameter.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "access/service_error.h"

namespace medcard::api {

// The largest body any endpoint accepts (413 above it) and the deepest nesting (400).
inline constexpr std::size_t kMaxBodyBytes = 64 * 1024;
inline constexpr int kMaxJsonDepth = 8;

enum class FieldType { kString, kInteger, kBoolean, kObject };

// Shapes a string must have, checked by hand (no regex engine on outside input).
enum class Pattern {
  kAny,      // any text without control characters
  kAsn,      // 20 hex digits (the card's application serial number)
  kDate,     // YYYY-MM-DD, a real calendar date
  kHex,      // an even number of hex digits
  kLogin,    // lowercase letters, digits, '.', '_', '-'
  kDecimal,  // digits only (an identity number, a PIN pad serial)
};

class Schema;

struct FieldRule {
  std::string name;
  FieldType type = FieldType::kString;
  bool required = true;
  // Strings: length in Unicode code points.
  std::size_t min_length = 0;
  std::size_t max_length = 0;
  Pattern pattern = Pattern::kAny;
  // Integers.
  std::int64_t min_value = std::numeric_limits<std::int64_t>::min();
  std::int64_t max_value = std::numeric_limits<std::int64_t>::max();
  // Objects.
  const Schema* nested = nullptr;
};

enum class Presence { kRequired, kOptional };

class Schema {
 public:
  Schema& String(std::string name, Presence presence, std::size_t min_length,
                 std::size_t max_length, Pattern pattern = Pattern::kAny);
  Schema& Integer(std::string name, Presence presence, std::int64_t min_value,
                  std::int64_t max_value);
  // Money: integer fen, 0..max_fen (floats, strings and negative amounts are refused).
  Schema& Money(std::string name, Presence presence, std::int64_t max_fen);
  Schema& Boolean(std::string name, Presence presence);
  // `nested` must outlive this schema (endpoint schemas are function-local statics).
  Schema& Object(std::string name, Presence presence, const Schema& nested);

  // Checks an already parsed object; `path` prefixes field names in errors ("authorisation.").
  access::ServiceResult<store::Done> Check(const nlohmann::json& object,
                                           const std::string& path = {}) const;

  const std::vector<FieldRule>& fields() const { return fields_; }

 private:
  std::vector<FieldRule> fields_;
};

// A body that passed its schema. Accessors REQUIRE the field to be in the schema with that type;
// optional ones return nullopt when absent.
class JsonRequest {
 public:
  explicit JsonRequest(nlohmann::json body) : body_(std::move(body)) {}

  std::string String(std::string_view name) const;
  std::optional<std::string> OptionalString(std::string_view name) const;
  std::int64_t Integer(std::string_view name) const;
  std::optional<std::int64_t> OptionalInteger(std::string_view name) const;
  std::optional<bool> OptionalBoolean(std::string_view name) const;
  bool Has(std::string_view name) const;
  // A nested object's fields, as a request of their own.
  std::optional<JsonRequest> OptionalObject(std::string_view name) const;

  const nlohmann::json& json() const { return body_; }

 private:
  nlohmann::json body_;
};

// Parses `body` as one JSON object and checks it against `schema`. An empty body counts as `{}`.
access::ServiceResult<JsonRequest> ParseJsonRequest(std::string_view body, const Schema& schema);

// The checks of the patterns, for path and query parameters too.
bool MatchesPattern(std::string_view text, Pattern pattern);
// Code points in valid UTF-8 text (nlohmann already refused invalid UTF-8).
std::size_t CodePoints(std::string_view text);

}  // namespace medcard::api
