// The terminal's side of the PBOC ED/EP transactions (pboc-ed-ep.md), over any Reader: select
// the medical application, verify the PIN, read balances and the log, and run a purchase with a
// PSAM or a load with an issuer that authorises it. Each card command's status words are
// translated into a precise message here, in one place (CardError).
//
// This is the transaction core; the POS terminal (journal, recovery, upload) builds on it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/bcd.h"
#include "common/bytes.h"
#include "common/result.h"
#include "iso7816/status.h"
#include "reader/reader.h"

namespace medcard::terminal {

enum class Wallet : std::uint8_t { kEd = 0x01, kEp = 0x02 };  // P2 of the purse commands
const char* WalletName(Wallet w);                             // "ED" / "EP"

// SFI 15, public application basic data (30 bytes).
struct ApplicationData {
  Bytes issuer_id;  // 8
  std::uint8_t app_type = 0;
  std::uint8_t app_version = 0;
  Bytes asn;  // 10
  Date start_date, expiry_date;
  Bytes issuer_data;       // 2
  bool test_card = false;  // issuer data "TE": issued with the published test key set
  static Result<ApplicationData> Parse(ByteView sfi15);
};

// Selects the PSE and then the medical-account ADF (D15600000503) and reads SFI 15.
// Errors name the cause: not a medcard card, application blocked (6A81), permanently blocked.
Result<ApplicationData> SelectMedicalApplication(reader::Reader& card);

// VERIFY. Errors: "wrong PIN, 2 tries left", "PIN blocked".
Status VerifyPin(reader::Reader& card, const std::string& pin);

Result<std::uint32_t> GetBalance(reader::Reader& card, Wallet wallet);

struct LogRecord {  // SFI 18 (pboc-ed-ep.md, "Files in the ED/EP application")
  std::uint16_t serial = 0;
  std::uint32_t overdraw_limit = 0;
  std::uint32_t amount = 0;
  std::uint8_t type = 0;
  Bytes terminal_number;
  std::optional<Date> date;
  std::optional<TimeOfDay> time;
};
// The log, newest first (up to 10 records).
Result<std::vector<LogRecord>> ReadTransactionLog(reader::Reader& card);

struct PurchaseRequest {
  Wallet wallet = Wallet::kEd;
  std::uint32_t amount = 0;  // fen, > 0
  Date date;
  TimeOfDay time;
};

struct PurchaseResult {
  Bytes asn;
  std::uint8_t type = 0;  // 05 ED, 06 EP
  std::uint32_t amount = 0;
  std::uint32_t balance_before = 0, balance_after = 0;
  std::uint16_t card_offline_serial = 0;
  std::uint32_t terminal_serial = 0;  // from the PSAM
  Bytes terminal_number;              // 6, from the PSAM
  Bytes tac, mac2;
  Date date;
  TimeOfDay time;
  std::uint8_t key_version = 0;  // the card's, from INITIALIZE FOR PURCHASE
};

// The PSAM's terminal number (EF 16).
Result<Bytes> ReadTerminalNumber(reader::Reader& psam);
// The PSAM's serial (the first 10 bytes of EF 15, docs/psam-commands.md).
Result<Bytes> ReadPsamSerial(reader::Reader& psam);

// A complete offline purchase: INITIALIZE FOR PURCHASE, INIT_SAM_FOR_PURCHASE (MAC1), DEBIT FOR
// PURCHASE, CREDIT_SAM_FOR_PURCHASE (MAC2). REQUIRES: SelectMedicalApplication (and VerifyPin
// for ED) done on `card`. The card command pair runs inside one reader transaction.
Result<PurchaseResult> Purchase(reader::Reader& card, reader::Reader& psam,
                                const ApplicationData& app, const PurchaseRequest& request);

// The issuer's side of an online load (the bank host; the test issuer in tests and the demo).
struct LoadInitialisation {
  Bytes asn;
  std::uint8_t type = 0;  // 01 ED, 02 EP
  std::uint32_t amount = 0;
  Bytes terminal_number;
  std::uint32_t old_balance = 0;
  std::uint16_t online_serial = 0;
  std::uint8_t key_version = 0, alg_id = 0;
  Bytes random, mac1;
  Date date;
  TimeOfDay time;
};
// MAC2 and the date and time it covers, which CREDIT FOR LOAD carries.
struct LoadApproval {
  Bytes mac2;
  Date date;
  TimeOfDay time;
};
class LoadAuthoriser {
 public:
  virtual ~LoadAuthoriser() = default;
  // Checks MAC1 and reserves the money; returns MAC2.
  virtual Result<Bytes> Authorise(const LoadInitialisation& init) = 0;
  // MAC2 with its date and time. An issuer that chooses them itself (the bank host:
  // docs/protocol.md 5.6.4) overrides this; by default MAC2 covers init's date and time.
  virtual Result<LoadApproval> Approve(const LoadInitialisation& init) {
    auto mac2 = Authorise(init);
    if (!mac2.ok()) return mac2.error();
    return LoadApproval{*mac2, init.date, init.time};
  }
  // The card's TAC for the completed load.
  virtual Status Confirm(const LoadInitialisation& init, ByteView tac) = 0;
};

struct LoadRequest {
  Wallet wallet = Wallet::kEd;
  std::uint32_t amount = 0;
  Bytes terminal_number;  // 6
  Date date;
  TimeOfDay time;
};
struct LoadResult {
  std::uint32_t balance_after = 0;
  std::uint16_t online_serial = 0;
  Bytes tac;
};
// INITIALIZE FOR LOAD → issuer (MAC1 → MAC2) → CREDIT FOR LOAD → issuer (TAC). CREDIT FOR LOAD
// carries the date and time the issuer's approval names.
Result<LoadResult> Load(reader::Reader& card, LoadAuthoriser& issuer, const ApplicationData& app,
                        const LoadRequest& request);

// The message for a card's status word answering `command` ("INITIALIZE FOR PURCHASE").
Error CardError(const char* command, iso7816::StatusWord sw);

}  // namespace medcard::terminal
