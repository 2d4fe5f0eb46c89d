#include "api/json_request.h"

#include <set>

namespace medcard::api {
namespace {

using access::ErrorCode;
using access::MakeServiceError;
using nlohmann::json;

bool IsHexDigit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

bool IsLeapYear(int year) { return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0; }

bool IsCalendarDate(std::string_view text) {
  if (text.size() != 10 || text[4] != '-' || text[7] != '-') return false;
  for (std::size_t i : {0, 1, 2, 3, 5, 6, 8, 9}) {
    if (!IsDigit(text[i])) return false;
  }
  auto number = [&](std::size_t from, std::size_t count) {
    int n = 0;
    for (std::size_t i = from; i < from + count; ++i) n = n * 10 + (text[i] - '0');
    return n;
  };
  const int year = number(0, 4);
  const int month = number(5, 2);
  const int day = number(8, 2);
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (year < 1900 || month < 1 || month > 12 || day < 1) return false;
  const int last = kDays[month - 1] + (month == 2 && IsLeapYear(year) ? 1 : 0);
  return day <= last;
}

bool HasControlCharacter(std::string_view text) {
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return true;
  }
  return false;
}

std::string_view TypeName(FieldType type) {
  switch (type) {
    case FieldType::kString:
      return "a string";
    case FieldType::kInteger:
      return "an integer";
    case FieldType::kBoolean:
      return "true or false";
    case FieldType::kObject:
      return "an object";
  }
  return "a value";
}

access::ServiceError Invalid(std::string message, std::string field) {
  return MakeServiceError(ErrorCode::kInvalid, std::move(message), std::move(field));
}

}  // namespace

std::size_t CodePoints(std::string_view text) {
  std::size_t count = 0;
  for (char c : text) {
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++count;
  }
  return count;
}

bool MatchesPattern(std::string_view text, Pattern pattern) {
  switch (pattern) {
    case Pattern::kAny:
      return !HasControlCharacter(text);
    case Pattern::kAsn:
      if (text.size() != 20) return false;
      for (char c : text) {
        if (!IsHexDigit(c)) return false;
      }
      return true;
    case Pattern::kDate:
      return IsCalendarDate(text);
    case Pattern::kHex:
      if (text.size() % 2 != 0) return false;
      for (char c : text) {
        if (!IsHexDigit(c)) return false;
      }
      return true;
    case Pattern::kLogin:
      if (text.empty()) return false;
      for (char c : text) {
        if (!((c >= 'a' && c <= 'z') || IsDigit(c) || c == '.' || c == '_' || c == '-')) {
          return false;
        }
      }
      return true;
    case Pattern::kDecimal:
      if (text.empty()) return false;
      for (char c : text) {
        if (!IsDigit(c)) return false;
      }
      return true;
  }
  return false;
}

Schema& Schema::String(std::string name, Presence presence, std::size_t min_length,
                       std::size_t max_length, Pattern pattern) {
  FieldRule rule;
  rule.name = std::move(name);
  rule.type = FieldType::kString;
  rule.required = presence == Presence::kRequired;
  rule.min_length = min_length;
  rule.max_length = max_length;
  rule.pattern = pattern;
  fields_.push_back(std::move(rule));
  return *this;
}

Schema& Schema::Integer(std::string name, Presence presence, std::int64_t min_value,
                        std::int64_t max_value) {
  FieldRule rule;
  rule.name = std::move(name);
  rule.type = FieldType::kInteger;
  rule.required = presence == Presence::kRequired;
  rule.min_value = min_value;
  rule.max_value = max_value;
  fields_.push_back(std::move(rule));
  return *this;
}

Schema& Schema::Money(std::string name, Presence presence, std::int64_t max_fen) {
  return Integer(std::move(name), presence, 0, max_fen);
}

Schema& Schema::Boolean(std::string name, Presence presence) {
  FieldRule rule;
  rule.name = std::move(name);
  rule.type = FieldType::kBoolean;
  rule.required = presence == Presence::kRequired;
  fields_.push_back(std::move(rule));
  return *this;
}

Schema& Schema::Object(std::string name, Presence presence, const Schema& nested) {
  FieldRule rule;
  rule.name = std::move(name);
  rule.type = FieldType::kObject;
  rule.required = presence == Presence::kRequired;
  rule.nested = &nested;
  fields_.push_back(std::move(rule));
  return *this;
}

access::ServiceResult<store::Done> Schema::Check(const json& object,
                                                 const std::string& path) const {
  if (!object.is_object()) {
    return Invalid("the request body must be a JSON object", path.empty() ? "" : path);
  }
  // Unknown fields first: a misspelt optional field must not pass silently.
  for (const auto& [key, value] : object.items()) {
    bool known = false;
    for (const auto& rule : fields_) known = known || rule.name == key;
    if (!known) return Invalid("unknown field", path + key);
  }
  for (const auto& rule : fields_) {
    const std::string field = path + rule.name;
    auto it = object.find(rule.name);
    if (it == object.end() || it->is_null()) {
      if (rule.required) return Invalid("missing field", field);
      continue;
    }
    const json& value = *it;
    switch (rule.type) {
      case FieldType::kString: {
        if (!value.is_string())
          return Invalid("must be " + std::string(TypeName(rule.type)), field);
        const auto& text = value.get_ref<const std::string&>();
        const std::size_t length = CodePoints(text);
        if (length < rule.min_length || length > rule.max_length) {
          return Invalid("must be " + std::to_string(rule.min_length) + " to " +
                             std::to_string(rule.max_length) + " characters",
                         field);
        }
        if (!MatchesPattern(text, rule.pattern)) return Invalid("has the wrong format", field);
        break;
      }
      case FieldType::kInteger: {
        std::int64_t number = 0;
        if (value.is_number_integer() && !value.is_number_unsigned()) {
          number = value.get<std::int64_t>();
        } else if (value.is_number_unsigned()) {
          const auto unsigned_number = value.get<std::uint64_t>();
          if (unsigned_number > static_cast<std::uint64_t>(rule.max_value)) {
            return Invalid("out of range", field);
          }
          number = static_cast<std::int64_t>(unsigned_number);
        } else {
          return Invalid("must be " + std::string(TypeName(rule.type)), field);
        }
        if (number < rule.min_value || number > rule.max_value) {
          return Invalid("out of range", field);
        }
        break;
      }
      case FieldType::kBoolean:
        if (!value.is_boolean())
          return Invalid("must be " + std::string(TypeName(rule.type)), field);
        break;
      case FieldType::kObject: {
        if (!value.is_object())
          return Invalid("must be " + std::string(TypeName(rule.type)), field);
        auto nested = rule.nested->Check(value, field + ".");
        if (!nested) return nested.error();
        break;
      }
    }
  }
  return store::Done{};
}

access::ServiceResult<JsonRequest> ParseJsonRequest(std::string_view body, const Schema& schema) {
  if (body.size() > kMaxBodyBytes) {
    return Invalid("the request body is too large", "");
  }
  std::string_view text = body;
  while (!text.empty() && (text.front() == ' ' || text.front() == '\n' || text.front() == '\r' ||
                           text.front() == '\t')) {
    text.remove_prefix(1);
  }
  if (text.empty()) text = "{}";
  // The parser callback sees every key as it is read: duplicates (which nlohmann would silently
  // collapse to the last one) and too deep nesting are refused.
  std::vector<std::set<std::string>> keys_per_object;
  std::string duplicate;
  bool too_deep = false;
  auto callback = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth > kMaxJsonDepth) too_deep = true;
    switch (event) {
      case json::parse_event_t::object_start:
        keys_per_object.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!keys_per_object.empty()) keys_per_object.pop_back();
        break;
      case json::parse_event_t::key:
        if (!keys_per_object.empty() && parsed.is_string()) {
          const auto& key = parsed.get_ref<const std::string&>();
          if (!keys_per_object.back().insert(key).second && duplicate.empty()) duplicate = key;
        }
        break;
      default:
        break;
    }
    return true;
  };
  json parsed = json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return Invalid("the request body is not valid JSON", "");
  if (too_deep) return Invalid("the request body is nested too deeply", "");
  if (!duplicate.empty()) return Invalid("duplicate field", duplicate);
  auto checked = schema.Check(parsed);
  if (!checked) return checked.error();
  return JsonRequest(std::move(parsed));
}

std::string JsonRequest::String(std::string_view name) const {
  return body_.at(std::string(name)).get<std::string>();
}

std::optional<std::string> JsonRequest::OptionalString(std::string_view name) const {
  auto it = body_.find(std::string(name));
  if (it == body_.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

std::int64_t JsonRequest::Integer(std::string_view name) const {
  return body_.at(std::string(name)).get<std::int64_t>();
}

std::optional<std::int64_t> JsonRequest::OptionalInteger(std::string_view name) const {
  auto it = body_.find(std::string(name));
  if (it == body_.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<std::int64_t>();
}

std::optional<bool> JsonRequest::OptionalBoolean(std::string_view name) const {
  auto it = body_.find(std::string(name));
  if (it == body_.end() || !it->is_boolean()) return std::nullopt;
  return it->get<bool>();
}

bool JsonRequest::Has(std::string_view name) const {
  auto it = body_.find(std::string(name));
  return it != body_.end() && !it->is_null();
}

std::optional<JsonRequest> JsonRequest::OptionalObject(std::string_view name) const {
  auto it = body_.find(std::string(name));
  if (it == body_.end() || !it->is_object()) return std::nullopt;
  return JsonRequest(*it);
}

}  // namespace medcard::api
