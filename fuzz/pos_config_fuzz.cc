// Fuzzes what a POS reads from its operator (docs/pos.md "Configuration"): the configuration file
// (cli::ParsePosConfig) and a typed amount (cli::ParseAmount). Whatever is accepted must hold the
// values the POS relies on later; whatever is refused must say why.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <string_view>

#include "cli/pos_config.h"
#include "common/money.h"

namespace {

using medcard::cli::ParseAmount;
using medcard::cli::ParsePosConfig;
using medcard::cli::PosConfig;

void Check(bool condition) {
  if (!condition) std::abort();
}

bool Printable(const std::string& text) {
  for (char c : text) {
    if (c < 0x20 || c > 0x7E) return false;
  }
  return true;
}

void CheckConfig(std::string_view text) {
  auto parsed = ParsePosConfig(text, "/etc/medcard/pos.json");
  if (!parsed.ok()) {
    Check(parsed.error().message.starts_with("POS configuration: "));
    return;
  }
  const PosConfig& config = *parsed;
  Check(config.path == "/etc/medcard/pos.json");
  Check(config.merchant_id.size() == 15 && Printable(config.merchant_id));
  Check(config.terminal_id.size() == 8 && Printable(config.terminal_id));
  Check(!config.card_reader.empty() && !config.psam_reader.empty());
  Check(config.terminal_number.empty() || config.terminal_number.size() == 6);
  Check(config.host_timeout.count() >= 1 && config.host_timeout.count() <= 600);
  Check(config.max_retries >= 0 && config.max_retries <= 10);
  // Files resolve against the configuration's directory.
  Check(config.journal.starts_with("/"));
  Check(config.key_store.starts_with("pkcs11:") || config.key_store.starts_with("/"));
  Check(config.tls_ca.empty() || config.tls_ca.starts_with("/"));
  const auto host_port = config.host_port();
  Check(host_port.has_value() == !config.host.empty());
  if (host_port) Check(!host_port->host.empty() && host_port->port != 0);
}

void CheckAmount(std::string_view text) {
  auto fen = ParseAmount(text);
  if (!fen.ok()) {
    Check(!fen.error().message.empty());
    return;
  }
  Check(*fen > 0);
  // What the POS shows back is what the cashier typed, as an amount.
  auto again = ParseAmount(medcard::FormatFen(*fen));
  Check(again.ok() && *again == *fen);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  CheckConfig(text);
  CheckAmount(text);
  return 0;
}
