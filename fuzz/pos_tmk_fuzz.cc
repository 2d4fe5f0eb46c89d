// Fuzzes the TMK delivery file a POS imports (docs/pos.md "TMK delivery", cli::TmkDelivery::Parse):
// a file that parses holds fields of the right sizes and writes back (ToJson) into the same
// delivery; a file that does not parse is refused with a message, never an exception.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "cli/pos_tmk.h"

namespace {

using medcard::cli::TmkDelivery;

void Check(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto parsed = TmkDelivery::Parse(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!parsed.ok()) {
    Check(parsed.error().message.starts_with("TMK delivery: "));
    return 0;
  }
  const TmkDelivery& d = *parsed;
  Check(d.terminal_number.size() == 6);
  Check(d.cryptogram.size() == 16);
  Check(d.tmk_kcv.size() == 3 && d.tkek_kcv.size() == 3);
  Check(d.tmk_version >= 1);
  Check(d.key_name().size() == 4 + 12);

  auto again = TmkDelivery::Parse(d.ToJson());
  Check(again.ok());
  Check(again->terminal_number == d.terminal_number && again->cryptogram == d.cryptogram &&
        again->tmk_kcv == d.tmk_kcv && again->tkek_kcv == d.tkek_kcv &&
        again->tmk_version == d.tmk_version && again->test_keys == d.test_keys &&
        again->merchant_id == d.merchant_id && again->terminal_id == d.terminal_id &&
        again->created == d.created);
  return 0;
}
