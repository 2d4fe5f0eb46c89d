// The TEST issuer: issues TEST cards and PSAMs from the published test key set
// (share/test-keyset.json) and plays the issuer's part of a transaction (load MAC2, TAC
// verification, PSAM totals acknowledgement) with those keys in memory.
//
// For demos and tests only: every key here is public. A card it issues carries the test marker
// (SFI 15 issuer data "TE") so no production host accepts it. The production issuer
// (src/keys + HSM) does the same work without ever holding a clear key.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "card/card.h"
#include "card/personalize.h"
#include "common/bcd.h"
#include "common/bytes.h"
#include "common/result.h"
#include "nvm/nvm.h"
#include "psam/psam.h"
#include "terminal/purse.h"

namespace medcard::issuance {

// SFI 15 issuer data of every card issued with a test key set.
inline constexpr std::uint8_t kTestCardMarker[2] = {'T', 'E'};

// The issuer master keys of a test key set, by role ("purchase", "load", "tac", ...).
class TestKeySet {
 public:
  // {"test_only": true, "keys": {"purchase": "<32 hex>", ...}}. Refuses a file without
  // "test_only": true, an unknown role, a missing role or a key that is not 32 hex digits.
  static Result<TestKeySet> FromJson(std::string_view json_text);
  // The set shipped in share/test-keyset.json, compiled in.
  static const TestKeySet& Embedded();

  // REQUIRES: role is one of RequiredRoles().
  const Bytes& MasterKey(std::string_view role) const;
  static const std::vector<std::string>& RequiredRoles();

 private:
  std::map<std::string, Bytes, std::less<>> keys_;
};

// A holder with plausible data for a TEST card: name "TEST CARDHOLDER", the given ASN and PIN.
card::HolderData TestHolder(ByteView asn, std::string pin);

// Manufactures a blank card on `medium` (chip serial derived from the ASN, transport key
// diversified from the set's transport key) and personalises it through the card's own
// personalisation commands with the standard layout. Marks it as a test card.
Result<std::unique_ptr<card::Card>> IssueTestCard(const TestKeySet& keys,
                                                  std::unique_ptr<nvm::Medium> medium,
                                                  card::HolderData holder,
                                                  card::CardOptions options = {});

// Manufactures and personalises a PSAM: purchase master key (version 1), settlement key
// diversified by the PSAM serial, maintenance and visit-record master keys.
Result<std::unique_ptr<psam::Psam>> IssueTestPsam(const TestKeySet& keys,
                                                  std::unique_ptr<nvm::Medium> medium,
                                                  ByteView psam_serial, ByteView terminal_number);

// The issuer's side of PBOC transactions, with the test key set.
class TestIssuerHost final : public terminal::LoadAuthoriser {
 public:
  explicit TestIssuerHost(const TestKeySet& keys) : keys_(keys) {}

  // Checks MAC1 (an error when wrong: the load is refused) and returns MAC2 for CREDIT FOR LOAD.
  Result<Bytes> Authorise(const terminal::LoadInitialisation& init) override;
  // Checks the TAC CREDIT FOR LOAD answered: new balance = old + amount.
  Status Confirm(const terminal::LoadInitialisation& init, ByteView tac) override;
  // Checks a purchase's TAC as the host does at clearing.
  Status VerifyPurchaseTac(const terminal::PurchaseResult& purchase) const;
  // Checks the PSAM's GET SAM TOTALS answer (count ‖ amount ‖ first ‖ last ‖ MAC) for the
  // challenge and returns the CLEAR SAM TOTALS acknowledgement MAC.
  Result<Bytes> AcknowledgeSamTotals(ByteView psam_serial, ByteView challenge,
                                     ByteView totals_answer) const;

 private:
  Result<Bytes> CardKey(std::string_view role, ByteView asn) const;
  const TestKeySet& keys_;
};

}  // namespace medcard::issuance
