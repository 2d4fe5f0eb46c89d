// Fuzzes the command APDU parser (iso7816/apdu.h). Every accepted input is canonical: Parse
// records the form it saw (`extended`) and Le 00 / 0000 decode to 256 / 65536, which is how
// Serialize encodes them, so serializing what parsed must give back the input exactly, and
// parsing that again the same APDU. Everything rejected is 6700.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <variant>

#include "iso7816/apdu.h"

namespace {

using medcard::Bytes;
using medcard::ByteView;
using medcard::iso7816::CommandApdu;
using medcard::iso7816::ResponseApdu;
using medcard::iso7816::StatusWord;

void Check(bool condition) {
  if (!condition) std::abort();
}

void CheckCommand(ByteView input) {
  auto parsed = CommandApdu::Parse(input);
  if (const auto* sw = std::get_if<StatusWord>(&parsed)) {
    Check(*sw == medcard::iso7816::sw::kWrongLength);
    return;
  }
  const CommandApdu& apdu = std::get<CommandApdu>(parsed);
  Check(apdu.data.size() <= (apdu.extended ? 65535u : 255u));
  if (apdu.le) Check(*apdu.le >= 1 && *apdu.le <= (apdu.extended ? 65536u : 256u));
  const Bytes wire = apdu.Serialize();
  Check(wire == Bytes(input.begin(), input.end()));
  auto again = CommandApdu::Parse(medcard::View(wire));
  Check(std::holds_alternative<CommandApdu>(again) && std::get<CommandApdu>(again) == apdu);
  Check(!apdu.ToString().empty());
}

void CheckResponse(ByteView input) {
  auto response = ResponseApdu::Parse(input);
  Check(response.ok() == (input.size() >= 2));
  if (response.ok()) Check(response->Serialize() == Bytes(input.begin(), input.end()));
}

void CheckAddressing(ByteView input) {
  if (input.size() < 4) return;
  if (auto address = medcard::iso7816::DecodeBinaryAddress(input[2], input[3])) {
    if (address->sfi) {
      Check(*address->sfi >= 1 && *address->sfi <= 30 && address->offset <= 0xFF);
    } else {
      Check(address->offset <= 0x7FFF);
    }
  }
  const auto record = medcard::iso7816::DecodeRecordAddress(input[3]);
  Check(record.mode <= 7 && (!record.sfi || (*record.sfi >= 1 && *record.sfi <= 31)));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const ByteView input(data, size);
  CheckCommand(input);
  CheckResponse(input);
  CheckAddressing(input);
  return 0;
}
