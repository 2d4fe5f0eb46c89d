// Allocation batches from the agency to the bank and the bank's acknowledgements
// (docs/insurance.md "Allocation batches").
//
// A batch is a JSON-lines file: a header (batch id, month, count, total, the key's check value),
// one line per person (line number, person id = the bank's medical-account key, amount in fen)
// and a trailer (count, total, HMAC-SHA256 over every byte before the trailer line, under the
// batch key both sides hold). The acknowledgement has the same shape: per line "credited" or
// "refused" with the reason. Parsers authenticate before they trust anything and check every
// count and total: a batch that fails any check is refused whole.
//
//   agency:  ExportAllocations(conn, month, key)         → the batch file (recorded; idempotent)
//   bank:    ImportAllocationBatch(file, key, credit)    → the acknowledgement (credit is the
//            bank's posting, idempotent on batch id + person: a re-import posts nothing twice)
//   agency:  ReconcileAcknowledgement(conn, ack, key)    → credited / refused, every fen counted
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.h"
#include "common/result.h"
#include "insurance/registry.h"
#include "insurance/rules.h"
#include "store/store.h"

namespace medcard::insurance {

// The 256-bit HMAC key of the batches. It is never written to disk by medcard and never shown:
// the CLI takes it from MEDCARD_ALLOCATION_KEY (64 hex digits). The bytes are wiped on
// destruction.
class BatchKey {
 public:
  static Result<BatchKey> FromHex(std::string_view hex);
  BatchKey(const BatchKey& other) = default;
  BatchKey& operator=(const BatchKey& other) = default;
  ~BatchKey();
  ByteView bytes() const { return key_; }
  // 6 hex digits that tell which key made a batch without revealing it.
  std::string CheckValue() const;

 private:
  explicit BatchKey(Bytes key) : key_(std::move(key)) {}
  Bytes key_;
};

inline constexpr char kBatchKeyEnvironment[] = "MEDCARD_ALLOCATION_KEY";
inline constexpr std::size_t kMaxBatchLines = 10'000'000;

struct AllocationLine {
  std::int64_t line = 0;  // 1, 2, ...
  std::string person_id;  // 1..64 letters and digits
  Fen amount_fen = 0;     // > 0
  bool operator==(const AllocationLine&) const = default;
};

struct AllocationBatch {
  std::string batch_id;  // 1..64 of A-Z a-z 0-9 . _ -
  YearMonth month;
  std::vector<AllocationLine> lines;
  Fen total_fen() const;
};

std::string WriteAllocationBatch(const AllocationBatch& batch, const BatchKey& key);
// The batch, authenticated and checked (format, line numbers, unique people, counts, totals).
Result<AllocationBatch> ParseAllocationBatch(std::string_view text, const BatchKey& key);

enum class LineOutcome { kCredited, kRefused };

struct AcknowledgedLine {
  AllocationLine allocation;
  LineOutcome outcome = LineOutcome::kCredited;
  std::string reason;  // refused: why (1..200 characters); credited: empty
  bool operator==(const AcknowledgedLine&) const = default;
};

struct Acknowledgement {
  std::string batch_id;
  YearMonth month;
  std::vector<AcknowledgedLine> lines;  // one per batch line, in order
};

std::string WriteAcknowledgement(const Acknowledgement& ack, const BatchKey& key);
Result<Acknowledgement> ParseAcknowledgement(std::string_view text, const BatchKey& key);

// ---- The bank's side --------------------------------------------------------------------------

// Credits one line: nullopt = credited (or credited before: idempotent), a string = refused
// with that reason; an error stops the import (a database failure: run it again, nothing is
// posted twice).
using CreditLine = std::function<Result<std::optional<std::string>>(const std::string& batch_id,
                                                                    const AllocationLine& line)>;
// Verifies the whole batch first (a bad batch credits nothing), then credits line by line.
Result<Acknowledgement> ImportAllocationBatch(std::string_view text, const BatchKey& key,
                                              const CreditLine& credit);

// ---- The agency's side ------------------------------------------------------------------------

struct ExportedBatch {
  std::string batch_id;  // "SIA-<YYYY-MM>"
  std::string text;      // the file
  std::int64_t count = 0;
  Fen total_fen = 0;
  bool already_exported = false;  // the month's batch existed: the same file again
};
// The finished month's allocations (every person with a personal-account allocation > 0) as the
// month's one batch, recorded with its book entry (personal_accounts → bank_allocations).
ServiceResult<ExportedBatch> ExportAllocations(store::Connection& connection,
                                               const YearMonth& month, const BatchKey& key,
                                               std::function<std::int64_t()> clock_us = {});

struct ReconciliationReport {
  std::string batch_id;
  YearMonth month;
  std::int64_t credited_count = 0;
  Fen credited_fen = 0;
  std::vector<AcknowledgedLine> refused;  // returned to the personal-account book, reported
  Fen refused_fen = 0;
  bool already_reconciled = false;  // the same acknowledgement was reconciled before
};
// Matches the bank's acknowledgement line by line against the recorded batch: every line must
// be acknowledged once with its person and amount, or nothing is recorded and the error lists
// the differences. Refused lines go back to the personal-account book (bank_allocations →
// personal_accounts) and are reported.
ServiceResult<ReconciliationReport> ReconcileAcknowledgement(
    store::Connection& connection, std::string_view ack_text, const BatchKey& key,
    std::function<std::int64_t()> clock_us = {});

}  // namespace medcard::insurance
