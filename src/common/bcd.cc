#include "common/bcd.h"

#include <cstdio>
#include <ctime>

namespace medcard {

namespace {
bool IsLeap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }
int DaysInMonth(int y, int m) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && IsLeap(y) ? 29 : kDays[m - 1];
}
std::uint8_t ToBcd(int v) { return static_cast<std::uint8_t>(((v / 10) << 4) | (v % 10)); }
int FromBcd(std::uint8_t b) {
  int hi = b >> 4, lo = b & 0x0F;
  if (hi > 9 || lo > 9) return -1;
  return hi * 10 + lo;
}
}  // namespace

std::string Date::ToString() const {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d", year, month, day);
  return buf;
}
std::string TimeOfDay::ToString() const {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%02d:%02d:%02d", hour, minute, second);
  return buf;
}

bool IsValidDate(const Date& d) {
  return d.year >= 0 && d.year <= 9999 && d.month >= 1 && d.month <= 12 && d.day >= 1 &&
         d.day <= DaysInMonth(d.year, d.month);
}

Bytes EncodeBcdDate(const Date& d) {
  return {ToBcd(d.year / 100), ToBcd(d.year % 100), ToBcd(d.month), ToBcd(d.day)};
}

std::optional<Date> DecodeBcdDate(ByteView bcd) {
  if (bcd.size() != 4) return std::nullopt;
  int c = FromBcd(bcd[0]), y = FromBcd(bcd[1]), m = FromBcd(bcd[2]), d = FromBcd(bcd[3]);
  if (c < 0 || y < 0 || m < 0 || d < 0) return std::nullopt;
  Date date{c * 100 + y, m, d};
  if (!IsValidDate(date)) return std::nullopt;
  return date;
}

Bytes EncodeBcdTime(const TimeOfDay& t) {
  return {ToBcd(t.hour), ToBcd(t.minute), ToBcd(t.second)};
}

std::optional<TimeOfDay> DecodeBcdTime(ByteView bcd) {
  if (bcd.size() != 3) return std::nullopt;
  int h = FromBcd(bcd[0]), m = FromBcd(bcd[1]), s = FromBcd(bcd[2]);
  if (h < 0 || h > 23 || m < 0 || m > 59 || s < 0 || s > 59) return std::nullopt;
  return TimeOfDay{h, m, s};
}

std::optional<Bytes> PackDigitsFPadded(std::string_view digits) {
  Bytes out;
  for (std::size_t i = 0; i < digits.size(); i += 2) {
    char a = digits[i];
    char b = i + 1 < digits.size() ? digits[i + 1] : 'F';
    if (a < '0' || a > '9' || (b != 'F' && (b < '0' || b > '9'))) return std::nullopt;
    int lo = b == 'F' ? 0xF : b - '0';
    out.push_back(static_cast<std::uint8_t>(((a - '0') << 4) | lo));
  }
  return out;
}

std::optional<std::string> UnpackDigitsFPadded(ByteView bcd) {
  std::string out;
  bool ended = false;
  for (std::uint8_t b : bcd) {
    for (int nibble : {b >> 4, b & 0x0F}) {
      if (nibble == 0xF) {
        ended = true;
      } else if (nibble <= 9 && !ended) {
        out.push_back(static_cast<char>('0' + nibble));
      } else {
        return std::nullopt;  // a digit after padding, or A-E
      }
    }
  }
  return out;
}

Date Today() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  return Date{tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday};
}

TimeOfDay Now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  return TimeOfDay{tm.tm_hour, tm.tm_min, tm.tm_sec};
}

}  // namespace medcard
