// PEK delivery (docs/teller.md "The PIN pad's key"): a teller workstation's PIN pad encrypts
// the new PIN of a PIN reset under its PIN encryption key "pek/<workstation>", which the host's
// key store also holds (it translates the block for the card, KeyStore::TranslatePinForCard).
// The key reaches the workstation the way a terminal's master key reaches the terminal
// (docs/pos.md "TMK delivery"): the bank exports it encrypted under the key-exchange key "tkek"
// — which the bank and the workstation each assembled from the same custodians' components —
// into a small JSON file, and the workstation imports it into its own key store
// (keys::KeyStore::ImportWrapped), which checks the KCV. The file holds no key in clear: only
// the cryptogram and check values.
//
//   medcard host workstations export-pek --data DIR --workstation NAME --out FILE  (the bank)
//   medcard teller pinpad init --pek FILE --store DIR                              (the
//   workstation)
//
// The software PIN pad (PinPadBlock) forms the ISO 9564 format 0 block of the new PIN with the
// card's PAN and encrypts it under the PEK inside the workstation's key store; the clear block is
// wiped before it returns.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <string_view>

#include "common/bytes.h"
#include "common/result.h"
#include "keys/key_store.h"

namespace medcard::cli {

inline constexpr int kPekDeliveryFormat = 1;

struct PekDelivery {
  std::string workstation;       // 1 to 32 of A-Z 0-9 -
  std::uint8_t pek_version = 0;  // the bank's version of pek/<workstation>
  Bytes cryptogram;              // 16: Wrap(tkek, pek) = 3DES-ECB(tkek, pek)
  Bytes pek_kcv;                 // 3
  Bytes tkek_kcv;                // 3: which tkek it is under
  bool test_keys = false;        // exported from a test key store
  std::string created;           // ISO 8601 UTC

  std::string key_name() const;  // "pek/<workstation>"
  std::string ToJson() const;
  static Result<PekDelivery> Parse(std::string_view json);
};

Result<PekDelivery> ReadPekDelivery(const std::string& path);

// The bank's side: Wrap(tkek, the latest pek/<workstation>) from `store`, generating the PEK
// first when the store has none for that workstation (`generated` says so). Errors: a
// workstation name that is not 1-32 of A-Z 0-9 -, no tkek (hold the key ceremony first), a store
// whose keys never leave it (PKCS#11: load the PEK into both by ceremony instead).
Result<PekDelivery> ExportPek(keys::KeyStore& store, std::string_view workstation,
                              bool* generated = nullptr);

// The workstation's side: checks the delivery against `store` (its tkek's KCV; a test delivery
// only into a test store) and imports it as the next version of pek/<workstation>, unless the
// latest version already has the delivery's KCV (init run again). Returns that version.
Result<std::uint8_t> ImportPek(keys::KeyStore& store, const PekDelivery& delivery);

// The PIN pad's one operation: the format 0 block of `pin` (6 digits) for the card `asn`
// (branch::PinBlockPan), encrypted 3DES-ECB under `pek_name` in `store`. The PIN and the clear
// block are wiped before it returns; errors never show them.
Result<Bytes> PinPadBlock(keys::KeyStore& store, std::string_view pek_name, std::string_view pin,
                          ByteView asn);

// The one pek/... key in `store` ("pek/<workstation>" when `workstation` is given). Errors: none,
// or several and no workstation named.
Result<std::string> PinPadKeyName(keys::KeyStore& store, std::string_view workstation);

// `medcard host workstations export-pek` under the host's command group.
void AddWorkstationCommands(CLI::App& host);

}  // namespace medcard::cli
