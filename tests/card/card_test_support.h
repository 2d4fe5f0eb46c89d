// Test support for anything that needs a medcard card: fixed test keys and holder data, cards
// manufactured and personalised through the real personalisation commands, APDU helpers, and the
// issuer/PSAM side of the PBOC purse crypto computed with crypto.h directly.
//
// Library medcard_card_test_support (tests/card/CMakeLists.txt); link it from any test folder
// processed after tests/card.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "card/card.h"
#include "card/personalize.h"
#include "common/bytes.h"
#include "common/result.h"
#include "iso7816/icc.h"
#include "nvm/nvm.h"

namespace medcard::card_test {

// ---- Test keys and data (never used outside tests) ------------------------------------------

inline constexpr std::string_view kTestPin = "123456";
// Every issuer master key the standard profile uses, by name (KeySpec::master_key).
std::map<std::string, Bytes> TestMasterKeys();
Bytes TestTransportKey();
Bytes TestChipSerial();
Bytes TestAsn();  // 10 bytes
card::HolderData TestHolder();

// A deterministic card random source: each call answers the next bytes of 01 02 03 ...
std::function<Bytes(std::size_t)> CountingRandom();
// A random source that answers `fixed` (repeated or cut to the length asked).
std::function<Bytes(std::size_t)> FixedRandom(Bytes fixed);

// ---- Cards ----------------------------------------------------------------------------------

struct TestCard {
  std::unique_ptr<card::Card> card;
  nvm::FaultInjectionMedium* medium = nullptr;  // owned by `card`
};

// A blank card (Card::Manufacture) on a FaultInjectionMedium, powered on.
TestCard MakeBlankCard(card::CardOptions options = {});
// A card personalised with the standard profile through RunPersonalisation, powered on.
// REQUIRES (checked with a gtest failure): personalisation succeeds.
TestCard MakePersonalisedCard(card::CardOptions options = {},
                              const card::HolderData& holder = TestHolder());
// The image (medium content) of MakePersonalisedCard(), built once per process.
const Bytes& PersonalisedImage();
// A card opened on a FaultInjectionMedium holding `content`, powered on.
TestCard OpenCard(const Bytes& content, card::CardOptions options = {});

// The card's clear keys (issuer side), by master-key name, for TestHolder()'s ASN.
card::ClearKeyWrapper& TestKeys();
Bytes CardKey(const std::string& master_key);

// ---- APDUs ----------------------------------------------------------------------------------

struct Answer {
  Bytes data;
  std::uint16_t sw = 0;  // 0 when the card answered nothing (dead)
  bool empty = false;    // no bytes at all
};
// Sends hex ("00A4040006D15600000503", spaces allowed) or bytes.
Answer Send(iso7816::Icc& icc, std::string_view hex);
Answer Send(iso7816::Icc& icc, const Bytes& apdu);
std::string SwHex(std::uint16_t sw);

// SELECT the ED/EP ADF (9000 expected) and VERIFY the test PIN when `verify_pin`.
void SelectAdf(iso7816::Icc& icc, bool verify_pin = true);
void SelectSsse(iso7816::Icc& icc);

// Inspect() as JSON text, for whole-state comparisons.
std::string StateJson(const card::Card& card);

// ---- Issuer / PSAM side of the purse (pboc-ed-ep.md "Cryptography") --------------------------

Bytes SessionKeyForLoad(ByteView dlk, ByteView random, std::uint16_t online_serial);
Bytes SessionKeyForPurchase(ByteView dpk, ByteView random, std::uint16_t offline_serial,
                            ByteView terminal_serial);
Bytes Mac4(ByteView key, ByteView data, ByteView iv = {});
// Load (and unload with type 03): MAC1 = MAC(SESLK, oldBalance ‖ amount ‖ type ‖ termNo)
Bytes LoadMac1(ByteView seslk, std::uint32_t balance, std::uint32_t amount, std::uint8_t type,
               ByteView terminal);
// MAC2 = MAC(SESLK, amount ‖ type ‖ termNo ‖ date ‖ time)
Bytes LoadMac2(ByteView seslk, std::uint32_t amount, std::uint8_t type, ByteView terminal,
               ByteView date, ByteView time);
// TAC = MAC(DTK_L ⊕ DTK_R, newBalance ‖ onlineSerial ‖ amount ‖ type ‖ termNo ‖ date ‖ time)
Bytes LoadTac(ByteView dtk, std::uint32_t new_balance, std::uint16_t online_serial,
              std::uint32_t amount, std::uint8_t type, ByteView terminal, ByteView date,
              ByteView time);
// MAC1 = MAC(SESPK, amount ‖ type ‖ termNo ‖ date ‖ time) (the PSAM's)
Bytes PurchaseMac1(ByteView sespk, std::uint32_t amount, std::uint8_t type, ByteView terminal,
                   ByteView date, ByteView time);
// MAC2 = MAC(SESPK, amount)
Bytes PurchaseMac2(ByteView sespk, std::uint32_t amount);
// TAC = MAC(DTK_L ⊕ DTK_R, amount ‖ type ‖ termNo ‖ termTxnSerial ‖ date ‖ time)
Bytes PurchaseTac(ByteView dtk, std::uint32_t amount, std::uint8_t type, ByteView terminal,
                  ByteView terminal_serial, ByteView date, ByteView time);
// Secure messaging: MAC(key, header(Lc counting the MAC) ‖ data, IV = challenge ‖ 00..).
Bytes SmMac(ByteView key, ByteView header_and_data, ByteView challenge);
// A full SM command: header ‖ Lc ‖ data ‖ MAC, after a GET CHALLENGE sent to `icc`.
Bytes SmCommand(iso7816::Icc& icc, std::uint8_t cla, std::uint8_t ins, std::uint8_t p1,
                std::uint8_t p2, const Bytes& data, ByteView key);

// ---- Whole transactions, checked like the host/PSAM would ------------------------------------

inline const Bytes kTerminal = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55};
inline const Bytes kDate = {0x20, 0x24, 0x03, 0x15};
inline const Bytes kTime = {0x10, 0x20, 0x30};

struct LoadOutcome {
  std::uint16_t sw = 0;  // of the step that stopped the flow, 9000 when complete
  std::uint32_t old_balance = 0;
  std::uint16_t serial = 0;
  Bytes mac2, tac;
};
// INITIALIZE FOR LOAD -> check MAC1 -> MAC2 -> CREDIT FOR LOAD -> check TAC (gtest checks).
// The ADF must be selected (and the PIN verified).
LoadOutcome Load(iso7816::Icc& icc, bool ed, std::uint32_t amount);

struct PurchaseOutcome {
  std::uint16_t sw = 0;
  std::uint32_t old_balance = 0;
  std::uint16_t serial = 0;
  Bytes terminal_serial, mac2, tac;
};
// INITIALIZE FOR PURCHASE (or CASH WITHDRAW) -> PSAM MAC1 -> DEBIT -> check MAC2 and TAC.
PurchaseOutcome Purchase(iso7816::Icc& icc, bool ed, std::uint32_t amount,
                         std::uint32_t terminal_serial = 1, bool cash = false);

}  // namespace medcard::card_test
