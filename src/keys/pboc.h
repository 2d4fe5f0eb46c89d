// The issuer's side of PBOC ED/EP transactions computed inside a KeyStore (pboc-ed-ep.md,
// "Cryptography"): the bank host authorises loads and verifies TACs, and acknowledges a PSAM's
// signed totals, without ever holding a key in clear. Every transient key these functions
// derive is released before they return.
//
// Key versions: a card reports its key version in the INITIALIZE answer; medcard issues all of a
// card's keys from the same version of the issuer master keys, so that byte names the master key
// version for every card key of that card (DLK, DTK, ...).
#pragma once

#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "common/bcd.h"
#include "common/bytes.h"
#include "common/result.h"
#include "keys/key_store.h"

namespace medcard::keys {

// Releases a KeyRef when it goes out of scope.
class ScopedKey {
 public:
  ScopedKey(KeyStore& store, KeyRef ref) : store_(&store), ref_(ref) {}
  ScopedKey(const ScopedKey&) = delete;
  ScopedKey& operator=(const ScopedKey&) = delete;
  ~ScopedKey() { store_->Release(ref_); }
  KeyRef get() const { return ref_; }

 private:
  KeyStore* store_;
  KeyRef ref_;
};

// The card key of `role` for the card with application serial number `asn` (10 bytes): version
// `key_version` of the issuer master key `role` diversified by the ASN's rightmost 8 bytes.
// Transient: the caller releases it.
Result<KeyRef> CardKey(KeyStore& store, std::string_view role, ByteView asn,
                       std::uint8_t key_version);

// An online load as the host sees it: the terminal's request and the card's INITIALIZE FOR LOAD
// answer, plus the date and time the terminal will send in CREDIT FOR LOAD.
struct LoadAuthorisationRequest {
  Bytes asn;                 // 10
  std::uint8_t type = 0;     // 01 ED load, 02 EP load
  std::uint32_t amount = 0;  // fen
  Bytes terminal_number;     // 6
  std::uint32_t old_balance = 0;
  std::uint16_t online_serial = 0;  // before the load
  std::uint8_t key_version = 1;
  Bytes random;  // 4, the card's
  Bytes mac1;    // 4
  Date date;
  TimeOfDay time;
};

// Checks MAC1 = MAC(SESLK, oldBalance ‖ amount ‖ type ‖ termNo) and returns
// MAC2 = MAC(SESLK, amount ‖ type ‖ termNo ‖ date ‖ time) for CREDIT FOR LOAD;
// SESLK = 3DES(DLK, random ‖ onlineSerial ‖ 8000). Error "MAC1 invalid: load refused" when MAC1
// is wrong.
Result<Bytes> AuthoriseLoad(KeyStore& store, const LoadAuthorisationRequest& request);

// Checks the TAC CREDIT FOR LOAD answered: MAC(DTK_L ⊕ DTK_R, newBalance ‖ onlineSerial ‖
// amount ‖ type ‖ termNo ‖ date ‖ time), newBalance = old_balance + amount.
Status VerifyLoadTac(KeyStore& store, const LoadAuthorisationRequest& request, ByteView tac);
// The same for an ED load onto a card with overdraw used: the card repays `repaid` (≤ amount) of
// it first, so newBalance = old_balance + amount − repaid.
Status VerifyLoadTac(KeyStore& store, const LoadAuthorisationRequest& request, ByteView tac,
                     std::uint32_t repaid);

// A cleared offline purchase, as the terminal uploads it.
struct PurchaseRecord {
  Bytes asn;                          // 10
  std::uint8_t type = 0;              // 05 ED purchase, 06 EP purchase, 09 composite
  std::uint32_t amount = 0;           // fen
  Bytes terminal_number;              // 6
  std::uint32_t terminal_serial = 0;  // the PSAM's terminal transaction serial
  Date date;
  TimeOfDay time;
  std::uint8_t key_version = 1;
  Bytes tac;  // 4
};

// Checks TAC = MAC(DTK_L ⊕ DTK_R, amount ‖ type ‖ termNo ‖ termTxnSerial ‖ date ‖ time).
Status VerifyPurchaseTac(KeyStore& store, const PurchaseRecord& purchase);

// VerifyPurchaseTac for many purchases (a clearing batch): looks each TAC master key version up
// in the store once, not once per purchase. Releases what it found when destroyed.
class PurchaseTacVerifier {
 public:
  explicit PurchaseTacVerifier(KeyStore& store) : store_(store) {}
  ~PurchaseTacVerifier();
  PurchaseTacVerifier(const PurchaseTacVerifier&) = delete;
  PurchaseTacVerifier& operator=(const PurchaseTacVerifier&) = delete;

  Status Verify(const PurchaseRecord& purchase);

 private:
  KeyStore& store_;
  std::vector<std::pair<std::uint8_t, KeyRef>> masters_;  // by key version
};

// GET SAM TOTALS answer: count(4) ‖ amount(6) ‖ firstSerial(4) ‖ lastSerial(4) ‖ MAC(4), the MAC
// under the PSAM's settlement key (the settlement master key diversified by the PSAM serial)
// over challenge ‖ totals (card-profile.md, PSAM). Error when the PSAM did not sign these totals.
Status VerifySamTotals(KeyStore& store, ByteView psam_serial, ByteView challenge,
                       ByteView totals_answer, std::uint8_t key_version = 1);
// Verifies as above, then returns the CLEAR SAM TOTALS MAC = MAC(settlement key, 7C ‖ challenge
// ‖ totals).
Result<Bytes> AcknowledgeSamTotals(KeyStore& store, ByteView psam_serial, ByteView challenge,
                                   ByteView totals_answer, std::uint8_t key_version = 1);

}  // namespace medcard::keys
