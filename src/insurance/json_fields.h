// Internal to src/insurance: strict reading of JSON objects for the policy and claim files.
// Every error is "<field path>: <what is wrong>"; the first error wins. Unknown keys are errors.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/bcd.h"

namespace medcard::insurance::json_fields {

class Errors {
 public:
  void Fail(const std::string& path, std::string_view what) {
    if (!first_)
      first_ = (path.empty() ? std::string("(document)") : path) + ": " + std::string(what);
  }
  bool ok() const { return !first_.has_value(); }
  const std::string& message() const { return *first_; }

 private:
  std::optional<std::string> first_;
};

inline std::string Join(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}
inline std::string Index(const std::string& path, std::size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

inline bool IsInteger(const nlohmann::json& value) {
  return value.is_number_integer() || value.is_number_unsigned();
}

// Reads one integer in [min, max] at `path`.
inline std::optional<std::int64_t> ReadInt(const nlohmann::json& value, const std::string& path,
                                           std::int64_t min, std::int64_t max, Errors* errors) {
  if (value.is_number_float()) {
    errors->Fail(path, "must be a whole number (fen, bp, years), not a decimal");
    return std::nullopt;
  }
  if (!IsInteger(value)) {
    errors->Fail(path, "must be an integer");
    return std::nullopt;
  }
  if (value.is_number_unsigned() &&
      value.get<std::uint64_t>() >
          static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    errors->Fail(path, "is out of range");
    return std::nullopt;
  }
  const auto number = value.get<std::int64_t>();
  if (number < min || number > max) {
    errors->Fail(path, "must be between " + std::to_string(min) + " and " + std::to_string(max));
    return std::nullopt;
  }
  return number;
}

// "YYYY-MM-DD", a real calendar date.
inline std::optional<Date> ReadDate(const nlohmann::json& value, const std::string& path,
                                    Errors* errors) {
  if (!value.is_string()) {
    errors->Fail(path, "must be a date string \"YYYY-MM-DD\"");
    return std::nullopt;
  }
  const auto& text = value.get_ref<const std::string&>();
  const auto digits = [&](std::size_t from, std::size_t count) -> std::optional<int> {
    int number = 0;
    for (std::size_t i = from; i < from + count; ++i) {
      if (text[i] < '0' || text[i] > '9') return std::nullopt;
      number = number * 10 + (text[i] - '0');
    }
    return number;
  };
  if (text.size() != 10 || text[4] != '-' || text[7] != '-') {
    errors->Fail(path, "must be a date \"YYYY-MM-DD\"");
    return std::nullopt;
  }
  const auto year = digits(0, 4), month = digits(5, 2), day = digits(8, 2);
  if (!year || !month || !day) {
    errors->Fail(path, "must be a date \"YYYY-MM-DD\"");
    return std::nullopt;
  }
  const Date date{*year, *month, *day};
  if (!IsValidDate(date)) {
    errors->Fail(path, "is not a calendar date");
    return std::nullopt;
  }
  return date;
}

// One JSON object: fields are asked for by name; Finish() rejects the keys nobody asked for.
class Object {
 public:
  Object(const nlohmann::json& value, std::string path, Errors* errors)
      : value_(value), path_(std::move(path)), errors_(errors) {
    if (!value_.is_object()) {
      errors_->Fail(path_, "must be an object");
      valid_ = false;
    }
  }
  bool valid() const { return valid_; }
  const std::string& path() const { return path_; }
  std::string PathOf(std::string_view key) const { return Join(path_, key); }

  const nlohmann::json* Find(std::string_view key) {
    if (!valid_) return nullptr;
    asked_.insert(std::string(key));
    const auto it = value_.find(std::string(key));
    return it == value_.end() ? nullptr : &*it;
  }
  const nlohmann::json* Required(std::string_view key) {
    const auto* found = Find(key);
    if (found == nullptr && valid_) errors_->Fail(PathOf(key), "is required");
    return found;
  }

  std::optional<std::int64_t> Int(std::string_view key, std::int64_t min, std::int64_t max) {
    const auto* found = Required(key);
    return found ? ReadInt(*found, PathOf(key), min, max, errors_) : std::nullopt;
  }
  std::optional<std::int64_t> OptionalInt(std::string_view key, std::int64_t min,
                                          std::int64_t max) {
    const auto* found = Find(key);
    return found ? ReadInt(*found, PathOf(key), min, max, errors_) : std::nullopt;
  }
  std::optional<std::string> String(std::string_view key, bool allow_empty = false) {
    const auto* found = Required(key);
    if (found == nullptr) return std::nullopt;
    if (!found->is_string()) {
      errors_->Fail(PathOf(key), "must be a string");
      return std::nullopt;
    }
    auto text = found->get<std::string>();
    if (text.empty() && !allow_empty) {
      errors_->Fail(PathOf(key), "must not be empty");
      return std::nullopt;
    }
    return text;
  }
  std::optional<bool> Bool(std::string_view key, std::optional<bool> fallback = std::nullopt) {
    const auto* found = fallback ? Find(key) : Required(key);
    if (found == nullptr) return fallback;
    if (!found->is_boolean()) {
      errors_->Fail(PathOf(key), "must be true or false");
      return std::nullopt;
    }
    return found->get<bool>();
  }
  std::optional<Date> DateField(std::string_view key) {
    const auto* found = Required(key);
    return found ? ReadDate(*found, PathOf(key), errors_) : std::nullopt;
  }
  const nlohmann::json* Array(std::string_view key) {
    const auto* found = Required(key);
    if (found != nullptr && !found->is_array()) {
      errors_->Fail(PathOf(key), "must be an array");
      return nullptr;
    }
    return found;
  }

  void Finish() {
    if (!valid_) return;
    for (const auto& item : value_.items()) {
      if (!asked_.contains(item.key())) errors_->Fail(PathOf(item.key()), "unknown field");
    }
  }

 private:
  const nlohmann::json& value_;
  std::string path_;
  Errors* errors_;
  bool valid_ = true;
  std::set<std::string, std::less<>> asked_;
};

}  // namespace medcard::insurance::json_fields
