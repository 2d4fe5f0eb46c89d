// The monthly run, the units' payments and the agency's books (docs/insurance.md "Registry and
// the monthly run").
//
// RunMonth bills every person active on the first day of the month, under the policy in force
// in the person's unit's pooling area on that day: one line per person (contribution parts and
// personal-account allocation, rules.h), then one bill per unit and the book entries. It works
// in chunks of people (by ssn), each chunk committed together with the run's progress, so a run
// that stops (crash, database failure, missing policy) resumes where it stopped; a finished month
// is never run again (the call says so and changes nothing).
//
// The books keep the pooled fund and the personal accounts apart: a bill credits
// "personal_accounts" with the allocation the contributions pay for and "pooled_fund" with the
// rest; the only movement between them is the retirees' allowance (pooled fund → personal
// accounts), which the policy defines. CheckBooks proves it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "insurance/policy.h"
#include "insurance/registry.h"
#include "insurance/rules.h"
#include "store/store.h"

namespace medcard::insurance {

struct MonthlyRunOptions {
  int chunk_size = 1000;  // people per committed chunk
  // Test seam: called after each chunk is committed (1, 2, ... within this call); an error
  // stops the run there, as a crash would.
  std::function<Status(int chunk)> after_chunk;
  std::function<std::int64_t()> clock_us;  // default: the system clock
};

struct MonthlyRunSummary {
  YearMonth month;
  bool already_finished = false;  // the month was run before: nothing was changed
  bool resumed = false;           // this call continued a run that had stopped
  int chunks = 0;                 // chunks committed by this call
  // The month's totals (all chunks, also those of earlier calls).
  std::int64_t people = 0;
  std::int64_t units = 0;
  Fen employer_fen = 0;
  Fen employee_fen = 0;
  Fen personal_account_fen = 0;   // allocated to personal accounts in all
  Fen retiree_allowance_fen = 0;  // of which the pooled fund pays (retirees)
  Fen pooled_fund_fen = 0;        // net pooled-fund income: contributions − allocation
};

ServiceResult<MonthlyRunSummary> RunMonth(store::Connection& connection, const PolicyBook& policies,
                                          const YearMonth& month,
                                          const MonthlyRunOptions& options = {});

// One person's line of a month's bill.
struct BillLine {
  std::string ssn;
  std::string unit_code;
  PersonCategory category = PersonCategory::kEmployee;
  int age = 0;
  Fen base_fen = 0;
  Fen employer_fen = 0;
  Fen employee_fen = 0;
  Fen personal_account_fen = 0;
  Fen retiree_allowance_fen = 0;
};
// A finished month's lines of one unit (all units when unit_code is empty), by ssn.
ServiceResult<std::vector<BillLine>> BillLines(store::Connection& connection,
                                               const YearMonth& month,
                                               std::string_view unit_code = {});

// A unit's bill for a month with what it paid: arrears = billed − paid (negative: paid ahead).
struct UnitBill {
  std::string unit_code;
  YearMonth month;
  std::int64_t people = 0;
  Fen employer_fen = 0;
  Fen employee_fen = 0;
  Fen billed_fen = 0;  // employer + employee
  Fen personal_account_fen = 0;
  Fen paid_fen = 0;
  Fen arrears_fen = 0;
};
// The bills of a finished month, by unit code.
ServiceResult<std::vector<UnitBill>> UnitBills(store::Connection& connection,
                                               const YearMonth& month);

struct Payment {
  std::string unit_code;
  YearMonth month;  // the bill it pays
  Fen amount_fen = 0;
  Date paid_on;
};
// Records a unit's payment (and its book entry collections ← receivable/<unit>); returns its id.
ServiceResult<std::int64_t> AddPayment(store::Connection& connection, const Payment& payment,
                                       std::function<std::int64_t()> clock_us = {});

// The balance of each book account (credits − debits), by account name.
struct BookBalance {
  std::string account;
  Fen balance_fen = 0;
};
ServiceResult<std::vector<BookBalance>> BookBalances(store::Connection& connection);

// The books' invariants, one line per problem (empty: all hold):
//   - every finished month's bills equal the sum of their lines, and their book entries equal
//     the bills (nothing billed twice or missed);
//   - the pooled fund is debited only by the retirees' allowance, and never by more than the
//     month's retiree lines say; personal accounts are credited only by allocation and the
//     retirees' allowance, debited only by batches sent to the bank — so neither ever draws on
//     the other — and never go below zero;
//   - every allocation batch's lines add up to its total, and each month's batch is the month's
//     allocation; the sum of all balances is zero.
ServiceResult<std::vector<std::string>> CheckBooks(store::Connection& connection);

}  // namespace medcard::insurance
