// CheckInvariants: everything the ledger promises, re-derived from the rows in one snapshot
// (docs/ledger.md "Invariants").
#include <string>

#include "ledger/internal.h"
#include "ledger/ledger.h"

namespace medcard::ledger {

namespace {

using detail::StoreError;
using store::Connection;
using store::Row;

const std::string kLimit = " LIMIT " + std::to_string(kMaxProblemsPerCheck);

std::string AccountName(const Row& row, std::string_view kind_column, std::string_view key_column) {
  std::string name = row.Text(kind_column);
  if (!row.Text(key_column).empty()) name += "/" + row.Text(key_column);
  return name;
}

LedgerResult<std::int64_t> Count(Connection& c, const std::string& sql) {
  auto rows = c.Query(sql);
  if (!rows) return StoreError(rows.error(), "counting");
  return rows->rows.at(0).Int(0);
}

LedgerResult<store::Rows> Ask(Connection& c, const std::string& sql) {
  auto rows = c.Query(sql);
  if (!rows) return StoreError(rows.error(), "checking invariants");
  return std::move(rows).value();
}

}  // namespace

LedgerResult<InvariantReport> Ledger::CheckInvariants() {
  return Run<InvariantReport>(
      store::TransactionMode::kRead, [&]() -> LedgerResult<InvariantReport> {
        Connection& c = connection_;
        InvariantReport report;
        auto add = [&](Problem::Kind kind, std::string text) {
          report.problems.push_back(Problem{kind, std::move(text)});
        };

        for (auto [field, sql] :
             {std::pair{&report.accounts, "SELECT COUNT(*) FROM ledger_accounts"},
              std::pair{&report.postings, "SELECT COUNT(*) FROM ledger_postings"},
              std::pair{&report.transfers, "SELECT COUNT(*) FROM ledger_transfers"},
              std::pair{&report.pending,
                        "SELECT COUNT(*) FROM ledger_transfers WHERE state = 'pending'"}}) {
          auto n = Count(c, sql);
          if (!n) return n.error();
          *field = *n;
        }

        // 1. Double entry: all balances sum to zero; all holds are matched by promises.
        auto totals = Ask(c,
                          "SELECT COALESCE(SUM(balance), 0) AS balances,"
                          " COALESCE(SUM(debits_pending), 0) AS held,"
                          " COALESCE(SUM(credits_pending), 0) AS promised FROM ledger_accounts");
        if (!totals) return totals.error();
        const Row& t = totals->rows.at(0);
        if (t["balances"].type() != store::Value::Type::kInt || t.Int("balances") != 0) {
          add(Problem::Kind::kBalancesDoNotSumToZero,
              "the balances of all accounts sum to " + t["balances"].ToString() + " fen, not 0");
        }
        if (t["held"] != t["promised"]) {
          add(Problem::Kind::kPendingDoesNotBalance,
              "pending debits total " + t["held"].ToString() + " fen but pending credits " +
                  t["promised"].ToString());
        }

        // 2. Every balance is re-derivable from its postings.
        auto balances = Ask(
            c,
            "SELECT a.kind, a.account_key, a.balance, COALESCE(p.total, 0) AS derived"
            " FROM ledger_accounts a LEFT JOIN"
            " (SELECT account_id, SUM(amount) AS total FROM ledger_postings GROUP BY account_id) p"
            " ON p.account_id = a.id WHERE a.balance <> COALESCE(p.total, 0) ORDER BY a.id" +
                kLimit);
        if (!balances) return balances.error();
        for (const Row& row : *balances) {
          add(Problem::Kind::kBalanceDiffersFromPostings,
              "account " + AccountName(row, "kind", "account_key") + ": balance " +
                  row["balance"].ToString() + " fen but its postings sum to " +
                  row["derived"].ToString());
        }

        // 3. Every hold is re-derivable from the pending transfers.
        auto holds = Ask(
            c,
            "SELECT a.kind, a.account_key, a.debits_pending, a.credits_pending,"
            " COALESCE(d.total, 0) AS derived_debits, COALESCE(cr.total, 0) AS derived_credits"
            " FROM ledger_accounts a"
            " LEFT JOIN (SELECT debit_account AS id, SUM(amount) AS total FROM ledger_transfers"
            "   WHERE state = 'pending' GROUP BY debit_account) d ON d.id = a.id"
            " LEFT JOIN (SELECT credit_account AS id, SUM(amount) AS total FROM ledger_transfers"
            "   WHERE state = 'pending' GROUP BY credit_account) cr ON cr.id = a.id"
            " WHERE a.debits_pending <> COALESCE(d.total, 0)"
            "    OR a.credits_pending <> COALESCE(cr.total, 0) ORDER BY a.id" +
                kLimit);
        if (!holds) return holds.error();
        for (const Row& row : *holds) {
          add(Problem::Kind::kPendingDiffersFromTransfers,
              "account " + AccountName(row, "kind", "account_key") + ": holds " +
                  row["debits_pending"].ToString() + "/" + row["credits_pending"].ToString() +
                  " fen (debit/credit) but its pending transfers make " +
                  row["derived_debits"].ToString() + "/" + row["derived_credits"].ToString());
        }

        // 4. A posted or completed transfer has exactly its two legs; any other state none.
        auto legs =
            Ask(c,
                "SELECT t.id, t.state, t.amount, COUNT(p.seq) AS legs,"
                " COALESCE(SUM(p.amount), 0) AS net"
                " FROM ledger_transfers t LEFT JOIN ledger_postings p ON p.transfer_seq = t.seq"
                " GROUP BY t.seq, t.id, t.state, t.amount, t.debit_account, t.credit_account"
                " HAVING (t.state IN ('posted', 'completed') AND (COUNT(p.seq) <> 2"
                "   OR SUM(CASE WHEN p.account_id = t.debit_account AND p.amount = -t.amount"
                "              THEN 1 ELSE 0 END) <> 1"
                "   OR SUM(CASE WHEN p.account_id = t.credit_account AND p.amount = t.amount"
                "              THEN 1 ELSE 0 END) <> 1))"
                " OR (t.state NOT IN ('posted', 'completed') AND COUNT(p.seq) <> 0)"
                " ORDER BY t.seq" +
                    kLimit);
        if (!legs) return legs.error();
        for (const Row& row : *legs) {
          add(Problem::Kind::kUnbalancedTransfer,
              "transfer " + row.Text("id") + " (" + row.Text("state") + ", " +
                  row["amount"].ToString() + " fen) has " + row["legs"].ToString() +
                  " posting leg(s) netting " + row["net"].ToString() +
                  " fen instead of its debit and credit");
        }

        // 5. The card float of every known card wallet is what the card last said it holds.
        auto cards =
            Ask(c,
                "SELECT s.asn, s.wallet, s.balance AS card_balance, a.balance AS float_balance"
                " FROM ledger_card_state s JOIN ledger_accounts a ON a.id = s.account_id"
                " WHERE a.balance <> s.balance ORDER BY s.account_id" +
                    kLimit);
        if (!cards) return cards.error();
        for (const Row& row : *cards) {
          add(Problem::Kind::kCardFloatDiffersFromCard,
              "card " + row.Text("asn") + " " + row.Text("wallet") + ": float " +
                  row["float_balance"].ToString() + " fen but the card's last known balance is " +
                  row["card_balance"].ToString());
        }
        auto unknown_cards =
            Ask(c,
                "SELECT a.account_key, a.balance FROM ledger_accounts a"
                " WHERE a.kind = 'card_float' AND a.balance <> 0"
                " AND NOT EXISTS (SELECT 1 FROM ledger_card_state s WHERE s.account_id = a.id)"
                " ORDER BY a.id" +
                    kLimit);
        if (!unknown_cards) return unknown_cards.error();
        for (const Row& row : *unknown_cards) {
          add(Problem::Kind::kCardFloatDiffersFromCard,
              "card float " + row.Text("account_key") + " holds " + row["balance"].ToString() +
                  " fen but no balance of that card is known");
        }

        // 6. A card transaction is cleared once: one live transfer per purchase or load.
        auto twice = Ask(c,
                         "SELECT cause_kind, cause_reference, COUNT(*) AS n, MIN(id) AS first_id,"
                         " MAX(id) AS last_id FROM ledger_transfers"
                         " WHERE cause_kind IN ('purchase', 'load')"
                         "   AND state IN ('posted', 'pending', 'completed')"
                         " GROUP BY cause_kind, cause_reference HAVING COUNT(*) > 1"
                         " ORDER BY cause_kind, cause_reference" +
                             kLimit);
        if (!twice) return twice.error();
        for (const Row& row : *twice) {
          add(Problem::Kind::kCardTransactionPostedTwice,
              row.Text("cause_kind") + " " + row.Text("cause_reference") + " is posted " +
                  row["n"].ToString() + " times (transfers " + row.Text("first_id") + " ... " +
                  row.Text("last_id") + ")");
        }
        return report;
      });
}

}  // namespace medcard::ledger
