// GBK and UTF-8 (common/text.h).
#include "common/text.h"

#include <iconv.h>

#include <cstdio>
#include <utility>

namespace medcard {

namespace {

// Runs iconv over the whole input. On EILSEQ/EINVAL returns the input offset where it stopped.
struct IconvOutcome {
  Bytes output;
  std::optional<std::size_t> failed_at;
};
Result<IconvOutcome> RunIconv(const char* to, const char* from, ByteView input) {
  iconv_t cd = iconv_open(to, from);
  if (cd == reinterpret_cast<iconv_t>(-1)) {
    return MakeError(std::string("iconv cannot convert ") + from + " to " + to);
  }
  IconvOutcome outcome;
  outcome.output.resize(input.size() * 4 + 4);
  Bytes in(input.begin(), input.end());
  char* in_ptr = reinterpret_cast<char*>(in.data());
  std::size_t in_left = in.size();
  char* out_ptr = reinterpret_cast<char*>(outcome.output.data());
  std::size_t out_left = outcome.output.size();
  while (in_left > 0) {
    if (iconv(cd, &in_ptr, &in_left, &out_ptr, &out_left) == static_cast<std::size_t>(-1)) {
      outcome.failed_at = in.size() - in_left;
      break;
    }
  }
  if (!outcome.failed_at) {
    // Flush any shift state (none for GBK/UTF-8, but iconv's contract asks for it).
    iconv(cd, nullptr, nullptr, &out_ptr, &out_left);
  }
  iconv_close(cd);
  outcome.output.resize(outcome.output.size() - out_left);
  return outcome;
}

}  // namespace

// Decodes one code point at `pos` (advancing it); nullopt on malformed UTF-8 (overlong forms,
// surrogates and values above U+10FFFF included).
std::optional<char32_t> NextCodePoint(std::string_view s, std::size_t& pos) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char lead = byte(pos);
  std::size_t length = 0;
  char32_t cp = 0;
  if (lead < 0x80) {
    ++pos;
    return lead;
  } else if ((lead & 0xE0) == 0xC0) {
    length = 2;
    cp = lead & 0x1F;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3;
    cp = lead & 0x0F;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4;
    cp = lead & 0x07;
  } else {
    return std::nullopt;
  }
  if (pos + length > s.size()) return std::nullopt;
  for (std::size_t i = 1; i < length; ++i) {
    if ((byte(pos + i) & 0xC0) != 0x80) return std::nullopt;
    cp = (cp << 6) | (byte(pos + i) & 0x3F);
  }
  static constexpr char32_t kMinimum[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMinimum[length] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    return std::nullopt;
  }
  pos += length;
  return cp;
}

std::string CodePointName(char32_t cp) {
  char buffer[16];
  std::snprintf(buffer, sizeof buffer, "U+%04X", static_cast<unsigned>(cp));
  return buffer;
}

Result<Bytes> Utf8ToGbk(std::string_view utf8) {
  std::size_t pos = 0;
  while (pos < utf8.size()) {
    if (!NextCodePoint(utf8, pos)) return MakeError("not valid UTF-8");
  }
  const ByteView input(reinterpret_cast<const std::uint8_t*>(utf8.data()), utf8.size());
  auto converted = RunIconv("GBK", "UTF-8", input);
  if (!converted.ok()) return converted.error();
  if (converted->failed_at) {
    std::size_t at = *converted->failed_at;
    auto cp = NextCodePoint(utf8, at);
    return MakeError("character " + CodePointName(cp ? *cp : 0) + " cannot be written in GBK");
  }
  return std::move(converted->output);
}

Result<std::string> GbkToUtf8(ByteView gbk) {
  auto converted = RunIconv("UTF-8", "GBK", gbk);
  if (!converted.ok()) return converted.error();
  if (converted->failed_at) {
    return MakeError("not GBK text (byte " + std::to_string(*converted->failed_at) + ")");
  }
  return std::string(converted->output.begin(), converted->output.end());
}

}  // namespace medcard
