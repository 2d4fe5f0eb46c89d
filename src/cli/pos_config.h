// The POS terminal's configuration file (docs/pos.md "Configuration"): JSON naming the card
// reader and the PSAM reader, the host, the merchant and terminal ids, the journal and the key
// store. Read by every `medcard pos` command (--config FILE, default ./pos.json). Unknown fields
// and bad values are refused with the field's name; relative paths are relative to the file.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/bytes.h"
#include "common/result.h"

namespace medcard::cli {

struct PosConfig {
  std::string path;  // the file it came from
  // A PC/SC reader (exact name, index or unique part of the name: reader::ResolveReaderName), or
  // "image:PATH" for a virtual card / PSAM image served in this process (tests, demos).
  std::string card_reader = "0";
  std::string psam_reader = "1";
  std::string host;             // "HOST:PORT"; empty: no host (offline only)
  std::string tls_ca;           // PEM; empty: plain TCP
  std::string tls_server_name;  // default: the host part of `host`
  std::string merchant_id;      // field 42, 15 characters
  std::string terminal_id;      // field 41, 8 characters
  std::string merchant_name;    // on receipts
  std::string facility_code;    // for visit records (hospital terminals)
  Bytes terminal_number;        // 6, optional: checked against the PSAM's when set
  std::string journal;          // default: pos-journal.db beside the file
  std::string key_store;        // a software store directory or pkcs11:<label>; default keys/
  std::string pkcs11_module;
  bool test_mode = false;  // header terminal status 01: the host serves only test cards
  std::chrono::seconds host_timeout{30};
  int max_retries = 2;

  // `host` split; nullopt when empty.
  struct HostPort {
    std::string host;
    std::uint16_t port = 0;
  };
  std::optional<HostPort> host_port() const;
};

Result<PosConfig> ParsePosConfig(std::string_view json, const std::string& path);
Result<PosConfig> LoadPosConfig(const std::string& path);

// An amount as typed ("12.50", "12.5", "12"): fen, more than 0 and at most 4294967295 (the
// card's 4-byte amount). Errors quote the text and say what is wrong.
Result<std::uint32_t> ParseAmount(std::string_view text);

}  // namespace medcard::cli
