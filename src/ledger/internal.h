// Shared by the ledger's source files (private to src/ledger).
#pragma once

#include <string>

#include "ledger/ledger.h"

namespace medcard::ledger::detail {

LedgerError MakeLedgerError(ErrorKind kind, std::string message);
LedgerError StoreError(const store::DbError& error, std::string_view context);

std::optional<AccountKind> AccountKindFromName(std::string_view name);

}  // namespace medcard::ledger::detail

namespace medcard::ledger {

// Runs body in a transaction of `mode` with retries, or inside the caller's open transaction.
template <typename T>
LedgerResult<T> Ledger::Run(store::TransactionMode mode,
                            const std::function<LedgerResult<T>()>& body) {
  if (connection_.InTransaction()) return body();
  for (int attempt = 1;; ++attempt) {
    LedgerError error;
    auto tx = store::Transaction::Begin(connection_, mode);
    if (!tx) {
      error = detail::StoreError(tx.error(), "beginning a transaction");
    } else {
      LedgerResult<T> result = body();
      if (result) {
        auto committed = tx->Commit();
        if (committed) return result;
        error = detail::StoreError(committed.error(), "committing");
      } else {
        tx->Rollback();
        error = result.error();
      }
    }
    // A serialization failure, or a concurrent insert of the same transfer id or account: run
    // again; the second run sees the other writer's rows.
    const bool retryable =
        error.kind == ErrorKind::kStore && (error.store_kind == store::ErrorKind::kRetryable ||
                                            error.store_kind == store::ErrorKind::kUniqueViolation);
    if (!retryable || attempt >= options_.retry.max_attempts) return error;
    store::BackOff(options_.retry, attempt);
  }
}

}  // namespace medcard::ledger
