#include "iso7816/status.h"

#include <array>
#include <cstdio>

namespace medcard::iso7816 {

namespace {

struct NamedStatus {
  std::uint16_t value;
  std::string_view name;
};

// ISO 7816-4 §5.1.3 and pboc-ed-ep.md "Status words" (the PBOC meaning wins where both name
// the same word, e.g. 6984 and 6A81).
constexpr std::array kNames{
    NamedStatus{0x9000, "ok"},
    NamedStatus{0x6281, "part of returned data may be corrupted"},
    NamedStatus{0x6282, "end of file or record reached before reading Ne bytes"},
    NamedStatus{0x6283, "selected file deactivated"},
    NamedStatus{0x6284, "file control information not formatted"},
    NamedStatus{0x6300, "verification failed"},
    NamedStatus{0x6581, "memory failure"},
    NamedStatus{0x6700, "wrong length"},
    NamedStatus{0x6881, "logical channel not supported"},
    NamedStatus{0x6882, "secure messaging not supported"},
    NamedStatus{0x6981, "command incompatible with file structure"},
    NamedStatus{0x6982, "security status not satisfied"},
    NamedStatus{0x6983, "key or PIN blocked"},
    NamedStatus{0x6984, "random invalid"},
    NamedStatus{0x6985, "conditions of use not satisfied"},
    NamedStatus{0x6986, "command not allowed (no current EF)"},
    NamedStatus{0x6987, "secure messaging MAC missing"},
    NamedStatus{0x6988, "secure messaging MAC wrong"},
    NamedStatus{0x6A80, "incorrect parameters in the data field"},
    NamedStatus{0x6A81, "function not supported or application blocked"},
    NamedStatus{0x6A82, "file not found"},
    NamedStatus{0x6A83, "record not found"},
    NamedStatus{0x6A84, "not enough memory space"},
    NamedStatus{0x6A85, "Lc inconsistent with TLV structure"},
    NamedStatus{0x6A86, "incorrect parameters P1-P2"},
    NamedStatus{0x6A87, "Lc inconsistent with P1-P2"},
    NamedStatus{0x6A88, "referenced data not found"},
    NamedStatus{0x6A89, "file already exists"},
    NamedStatus{0x6B00, "wrong parameters P1-P2 (offset outside the EF)"},
    NamedStatus{0x6D00, "instruction code not supported"},
    NamedStatus{0x6E00, "class not supported"},
    NamedStatus{0x6F00, "no precise diagnosis"},
    NamedStatus{0x9302, "MAC invalid"},
    NamedStatus{0x9303, "application permanently blocked"},
    NamedStatus{0x9401, "insufficient funds"},
    NamedStatus{0x9402, "transaction counter at maximum"},
    NamedStatus{0x9403, "key index not supported"},
    NamedStatus{0x9406, "required MAC/TAC not available"},
};

// ISO 7816-4 §5.1.3 groups by SW1, for words without a name of their own.
std::string_view ClassName(std::uint8_t sw1) {
  switch (sw1) {
    case 0x62:
      return "warning, non-volatile memory unchanged";
    case 0x63:
      return "warning, non-volatile memory changed";
    case 0x64:
      return "execution error, non-volatile memory unchanged";
    case 0x65:
      return "execution error, non-volatile memory changed";
    case 0x66:
      return "security-related issue";
    case 0x68:
      return "functions in CLA not supported";
    case 0x69:
      return "command not allowed";
    case 0x6A:
      return "wrong parameters P1-P2";
    default:
      return "unknown status word";
  }
}

}  // namespace

std::string StatusWord::Name() const {
  const std::uint8_t low = sw2();
  switch (sw1()) {
    case 0x61:  // T=0 GET RESPONSE: 00 means 256 or more
      return low == 0 ? std::string("256 or more bytes available")
                      : std::to_string(low) + " bytes available";
    case 0x6C:
      return "wrong Le, exact length " + std::to_string(low == 0 ? 256 : low);
    case 0x63:
      if ((low & 0xF0) == 0xC0) {
        const int tries = low & 0x0F;
        return "wrong PIN, " + std::to_string(tries) + (tries == 1 ? " try left" : " tries left");
      }
      break;
    default:
      break;
  }
  for (const NamedStatus& named : kNames) {
    if (named.value == value) return std::string(named.name);
  }
  return std::string(ClassName(sw1()));
}

std::string StatusWord::ToString() const {
  char hex[5];
  std::snprintf(hex, sizeof hex, "%04X", static_cast<unsigned>(value));
  return std::string(hex) + " " + Name();
}

}  // namespace medcard::iso7816
