// Text on cards: the card profile stores names and free text in GBK (GB 18030's two-byte
// subset, card-profile.md); programs speak UTF-8. One conversion for issuance and terminals.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "common/bytes.h"
#include "common/result.h"

namespace medcard {

// Decodes one code point at `pos` (advancing it); nullopt on malformed UTF-8 (overlong forms,
// surrogates and values above U+10FFFF included). REQUIRES: pos < s.size().
std::optional<char32_t> NextCodePoint(std::string_view s, std::size_t& pos);
// "U+4E2D".
std::string CodePointName(char32_t cp);

// UTF-8 → GBK through glibc iconv. Errors: not UTF-8, or a character GBK cannot hold (named).
Result<Bytes> Utf8ToGbk(std::string_view utf8);
// GBK → UTF-8 (for showing what a card holds). Error on bytes that are not GBK.
Result<std::string> GbkToUtf8(ByteView gbk);

}  // namespace medcard
