// TMK delivery (docs/pos.md "TMK delivery"): the bank exports a terminal's master key encrypted
// under the terminal key-exchange key "tkek" — which the bank and the terminal each assembled
// from the same custodians' components — into a small JSON file; the terminal imports it into
// its own key store (keys::KeyStore::ImportWrapped), where it checks the KCV. The file holds no
// key in clear: only the cryptogram and check values.
//
//   medcard host terminals export-tmk --data DIR --terminal-no HEX12 --out FILE   (the bank)
//   medcard pos init --tmk FILE                                                   (the terminal)
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <string_view>

#include "common/bytes.h"
#include "common/result.h"
#include "keys/key_store.h"

namespace medcard::cli {

inline constexpr int kTmkDeliveryFormat = 1;

struct TmkDelivery {
  Bytes terminal_number;  // 6
  std::string merchant_id, terminal_id;
  Bytes psam_serial;  // 10: the PSAM the bank registered for the terminal; empty when not said
  std::uint8_t tmk_version = 0;  // the bank's version of tmk/<terminal number>
  Bytes cryptogram;              // 16: Wrap(tkek, tmk) = 3DES-ECB(tkek, tmk)
  Bytes tmk_kcv;                 // 3
  Bytes tkek_kcv;                // 3: which tkek it is under
  bool test_keys = false;        // exported from a test key store
  std::string created;           // ISO 8601 UTC

  std::string key_name() const;  // "tmk/<12 hex digits>"
  std::string ToJson() const;
  static Result<TmkDelivery> Parse(std::string_view json);
};

Result<TmkDelivery> ReadTmkDelivery(const std::string& path);

// The bank's side: Wrap(tkek, the latest tmk/<terminal number>) from `store`. Errors: no tkek
// (hold the key ceremony first), no TMK for that terminal, a store whose keys never leave it.
Result<TmkDelivery> ExportTmk(keys::KeyStore& store, ByteView terminal_number);

// The terminal's side: checks the delivery against `store` (its tkek's KCV; a test delivery
// only into a test store) and imports it as the next version of tmk/<terminal number>, unless
// the latest version already has the delivery's KCV (init run again). Returns the version that
// holds it.
Result<std::uint8_t> ImportTmk(keys::KeyStore& store, const TmkDelivery& delivery);

// `medcard host terminals export-tmk` under the host's `terminals` command group.
void AddExportTmkCommand(CLI::App& terminals);

}  // namespace medcard::cli
