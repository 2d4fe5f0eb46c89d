// The POS terminal's journal: one SQLite file (WAL, synchronous FULL: a committed write survives
// a power cut), schema by store::Migrate ("pos" migrations). It holds
//   - purchases: PENDING (written before DEBIT FOR PURCHASE) → COMPLETED (TAC and MAC2, written
//     before the receipt) | VOIDED (the card was never debited); a completed purchase is then
//     acknowledged by the host (upload) and settled with its batch. Nothing is deleted before
//     that; Prune removes only settled rows;
//   - the host link's trace and batch numbers (terminal::LinkState, saved before each request);
//   - the local blacklist and its version, the host's parameters and their version;
//   - online loads: credited on the card and awaiting the host's confirmation, then confirmed;
//   - settlements: what was settled and whether the PSAM's totals were cleared.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/bcd.h"
#include "common/bytes.h"
#include "common/result.h"
#include "iso8583/messages.h"
#include "store/store.h"
#include "terminal/host_link.h"
#include "terminal/purse.h"

namespace medcard::pos {

enum class PurchaseState { kPending, kCompleted, kVoided };
const char* PurchaseStateName(PurchaseState state);  // "pending", "completed", "voided"

struct PurchaseRecord {
  std::int64_t id = 0;  // journal id, increasing
  PurchaseState state = PurchaseState::kPending;
  Bytes asn;  // 10
  terminal::Wallet wallet = terminal::Wallet::kEd;
  std::uint32_t amount = 0;  // fen
  std::uint32_t balance_before = 0;
  std::uint16_t card_offline_serial = 0;  // as INITIALIZE FOR PURCHASE answered (before)
  std::uint32_t terminal_serial = 0;      // the PSAM's, from INIT_SAM_FOR_PURCHASE
  Bytes terminal_number;                  // 6
  std::uint8_t key_version = 0;
  Date date;
  TimeOfDay time;
  Bytes tac, mac2;                              // completed only
  bool psam_credited = false;                   // CREDIT_SAM_FOR_PURCHASE accepted (completed only)
  bool recovered = false;                       // completed or voided by recovery
  std::optional<std::uint32_t> uploaded_batch;  // the host acknowledged it in this batch
  bool settled = false;                         // its batch was settled

  std::uint32_t balance_after() const;  // balance_before − amount, not below 0 (overdraw)
  terminal::PurchaseResult ToPurchaseResult() const;  // REQUIRES: completed
};

struct StoredParameters {
  std::uint32_t version = 0;
  iso8583::Parameters parameters;
};

struct JournalledLoad {
  std::int64_t id = 0;
  terminal::LoadReference load;  // names it in the confirmation (field 61)
  Bytes tac;                     // the card's, for ConfirmLoad
  std::uint32_t balance_after = 0;
  std::uint16_t online_serial = 0;
  bool confirmed = false;
};

struct SettlementRecord {
  std::int64_t id = 0;
  std::uint32_t batch_number = 0;
  iso8583::BatchTotals totals;
  Bytes clear_totals_mac;  // 4, from the host's approval
  bool psam_cleared = false;
};

class Journal {
 public:
  // Opens (creating when missing) and migrates the journal at `path`.
  static Result<std::unique_ptr<Journal>> Open(const std::string& path);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // ---- Link state (terminal::HostLink's on_change) ----
  Result<terminal::LinkState> LinkState();  // {} when none saved
  Status SaveLinkState(const terminal::LinkState& state);

  // ---- Purchases ----
  // Inserts `record` as PENDING; returns its id. Durable when it returns.
  Result<std::int64_t> AddPending(const PurchaseRecord& record);
  // PENDING → COMPLETED with the card's answer. psam_credited false until MarkPsamCredited.
  Status Complete(std::int64_t id, ByteView tac, ByteView mac2, bool recovered);
  Status MarkPsamCredited(std::int64_t id);
  // PENDING → VOIDED: the card was not debited (it refused DEBIT, or recovery found so).
  Status Void(std::int64_t id, bool recovered);
  Result<std::optional<PurchaseRecord>> Purchase(std::int64_t id);
  Result<std::vector<PurchaseRecord>> Purchases(PurchaseState state);  // in id order
  // Completed purchases the host has not acknowledged yet, in id order (the upload's order).
  Result<std::vector<PurchaseRecord>> Unuploaded();
  // Completed purchases acknowledged in `batch` (what the settlement totals).
  Result<std::vector<PurchaseRecord>> UploadedIn(std::uint32_t batch);
  // Acknowledged in a batch before `batch` yet not settled: only possible when a settlement the
  // host approved was never journalled (the terminal stopped between the answer and the write).
  Result<std::vector<PurchaseRecord>> UnsettledBefore(std::uint32_t batch);
  // The host acknowledged these (in upload order) in `batch`.
  Status MarkUploaded(const std::vector<std::int64_t>& ids, std::uint32_t batch);

  // ---- Loads ----
  Result<std::int64_t> AddLoad(const JournalledLoad& load);
  Status MarkLoadConfirmed(std::int64_t id);
  Result<std::vector<JournalledLoad>> UnconfirmedLoads();
  // Confirmed loads of `batch` (the load half of the settlement totals).
  Result<std::vector<JournalledLoad>> ConfirmedLoadsIn(std::uint32_t batch);

  // ---- Settlements ----
  // The batch was settled by the host: records it and marks its purchases settled, at once.
  Result<std::int64_t> AddSettlement(const SettlementRecord& settlement);
  Status MarkPsamCleared(std::int64_t settlement_id);
  Result<std::vector<SettlementRecord>> Settlements();  // in id order
  Result<std::optional<SettlementRecord>> UnclearedSettlement();

  // ---- Blacklist and parameters ----
  Result<std::uint32_t> BlacklistVersion();  // 0: none held
  Result<bool> IsBlacklisted(ByteView asn);
  Result<std::size_t> BlacklistSize();
  // A full reply replaces the list, otherwise its entries are applied as changes; the version
  // is stored with them in one transaction.
  Status ApplyBlacklist(const terminal::BlacklistReply& reply);
  Result<std::optional<StoredParameters>> Parameters();
  Status SaveParameters(const StoredParameters& parameters);

  // Deletes settled purchases (and voided ones older than them) whose batch is below
  // `below_batch`; returns how many. Never touches anything unsettled.
  Result<std::int64_t> Prune(std::uint32_t below_batch);

  store::Connection& connection() { return *connection_; }  // tests: fault injection

 private:
  Journal(std::unique_ptr<store::Database> database, std::unique_ptr<store::Connection> connection);
  std::unique_ptr<store::Database> database_;
  std::unique_ptr<store::Connection> connection_;
};

}  // namespace medcard::pos
