// The agency's tables (docs/insurance.md "Registry and the monthly run", "Allocation batches").
// Add a migration by appending one entry; never edit one that has shipped.
#include "insurance/registry.h"

namespace medcard::insurance {

namespace {

// Units, people and the effective-dated events: each event row carries the person's whole state
// from `effective` on; ids grow in the order events were recorded (and, per person, in
// effective-date order, which Registry enforces).
constexpr char kRegistry[] = R"sql(
CREATE TABLE si_units (
  code TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  bank_account TEXT NOT NULL,
  area TEXT NOT NULL,
  created_at_us BIGINT NOT NULL
);
CREATE TABLE si_people (
  ssn TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  birth_date TEXT NOT NULL,
  created_at_us BIGINT NOT NULL
);
CREATE TABLE si_person_events (
  id {{ID}},
  ssn TEXT NOT NULL REFERENCES si_people (ssn),
  event TEXT NOT NULL,
  effective TEXT NOT NULL,
  unit_code TEXT NOT NULL REFERENCES si_units (code),
  wage_base BIGINT NOT NULL CHECK (wage_base >= 0),
  category TEXT NOT NULL CHECK (category IN ('employee', 'retiree', 'flexible')),
  status TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'closed')),
  note TEXT NOT NULL,
  recorded_at_us BIGINT NOT NULL
);
CREATE INDEX si_person_events_by_person ON si_person_events (ssn, id);
)sql";

// The monthly run (its progress is committed with each chunk), the per-person lines and the
// per-unit bills, the units' payments, and the agency's books: double entry between named
// accounts ("receivable/<unit>", "pooled_fund", "personal_accounts", "collections",
// "bank_allocations"), each entry's id its idempotency key.
constexpr char kMonthlyRun[] = R"sql(
CREATE TABLE si_month_runs (
  month TEXT PRIMARY KEY,
  state TEXT NOT NULL CHECK (state IN ('running', 'finished')),
  progress_ssn TEXT NOT NULL,
  chunks BIGINT NOT NULL,
  people BIGINT NOT NULL,
  started_at_us BIGINT NOT NULL,
  finished_at_us BIGINT
);
CREATE TABLE si_bill_lines (
  month TEXT NOT NULL,
  ssn TEXT NOT NULL,
  unit_code TEXT NOT NULL,
  category TEXT NOT NULL,
  age BIGINT NOT NULL,
  base_fen BIGINT NOT NULL,
  employer_fen BIGINT NOT NULL CHECK (employer_fen >= 0),
  employee_fen BIGINT NOT NULL CHECK (employee_fen >= 0),
  personal_account_fen BIGINT NOT NULL CHECK (personal_account_fen >= 0),
  retiree_allowance_fen BIGINT NOT NULL CHECK (retiree_allowance_fen >= 0),
  PRIMARY KEY (month, ssn)
);
CREATE INDEX si_bill_lines_by_unit ON si_bill_lines (month, unit_code);
CREATE TABLE si_unit_bills (
  month TEXT NOT NULL,
  unit_code TEXT NOT NULL,
  people BIGINT NOT NULL,
  employer_fen BIGINT NOT NULL,
  employee_fen BIGINT NOT NULL,
  personal_account_fen BIGINT NOT NULL,
  retiree_allowance_fen BIGINT NOT NULL,
  PRIMARY KEY (month, unit_code)
);
CREATE TABLE si_payments (
  id {{ID}},
  unit_code TEXT NOT NULL REFERENCES si_units (code),
  month TEXT NOT NULL,
  amount BIGINT NOT NULL CHECK (amount > 0),
  paid_on TEXT NOT NULL,
  recorded_at_us BIGINT NOT NULL
);
CREATE INDEX si_payments_by_unit ON si_payments (unit_code, month);
CREATE TABLE si_book_entries (
  id TEXT PRIMARY KEY,
  debit TEXT NOT NULL,
  credit TEXT NOT NULL,
  amount BIGINT NOT NULL CHECK (amount > 0),
  kind TEXT NOT NULL,
  month TEXT NOT NULL,
  recorded_at_us BIGINT NOT NULL,
  CHECK (debit <> credit)
);
)sql";

// Allocation batches sent to the bank, their lines, and what the bank acknowledged.
constexpr char kBatches[] = R"sql(
CREATE TABLE si_batches (
  batch_id TEXT PRIMARY KEY,
  month TEXT NOT NULL UNIQUE,
  line_count BIGINT NOT NULL,
  total_fen BIGINT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('exported', 'reconciled')),
  created_at_us BIGINT NOT NULL,
  reconciled_at_us BIGINT
);
CREATE TABLE si_batch_lines (
  batch_id TEXT NOT NULL REFERENCES si_batches (batch_id),
  line_no BIGINT NOT NULL,
  person_id TEXT NOT NULL,
  amount BIGINT NOT NULL CHECK (amount > 0),
  outcome TEXT NOT NULL CHECK (outcome IN ('sent', 'credited', 'refused')),
  reason TEXT NOT NULL,
  PRIMARY KEY (batch_id, line_no),
  UNIQUE (batch_id, person_id)
);
)sql";

// Claims submitted by facilities (claims_store.h): the claim as submitted (claim-file JSON), its
// state, the adjudication's split and explanation; one claim number per facility. And the bank's
// daily consumption detail (consumption.h): one import per day, each purchase once.
constexpr char kClaims[] = R"sql(
CREATE TABLE si_claims (
  id {{ID}},
  facility TEXT NOT NULL,
  claim_number TEXT NOT NULL,
  person_id TEXT NOT NULL,
  admission TEXT NOT NULL,
  kind TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('submitted', 'adjudicated', 'approved', 'paid',
                                       'rejected')),
  claim_json TEXT NOT NULL,
  total_billed BIGINT NOT NULL CHECK (total_billed >= 0),
  pooled_fund BIGINT NOT NULL DEFAULT 0 CHECK (pooled_fund >= 0),
  personal_account BIGINT NOT NULL DEFAULT 0 CHECK (personal_account >= 0),
  self_pay BIGINT NOT NULL DEFAULT 0 CHECK (self_pay >= 0),
  adjudication_json TEXT,
  reasons TEXT NOT NULL,
  decided_by TEXT NOT NULL,
  submitted_at_us BIGINT NOT NULL,
  adjudicated_at_us BIGINT,
  decided_at_us BIGINT,
  paid_at_us BIGINT,
  UNIQUE (facility, claim_number)
);
CREATE INDEX si_claims_by_person ON si_claims (person_id, admission);
CREATE TABLE si_consumption_days (
  day TEXT PRIMARY KEY,
  line_count BIGINT NOT NULL,
  total_fen BIGINT NOT NULL,
  imported_at_us BIGINT NOT NULL
);
CREATE TABLE si_consumption (
  day TEXT NOT NULL REFERENCES si_consumption_days (day),
  line_no BIGINT NOT NULL,
  reference TEXT NOT NULL UNIQUE,
  person_id TEXT NOT NULL,
  merchant_id TEXT NOT NULL,
  amount BIGINT NOT NULL CHECK (amount > 0),
  txn_time TEXT NOT NULL,
  PRIMARY KEY (day, line_no)
);
CREATE INDEX si_consumption_by_person ON si_consumption (person_id, day);
CREATE INDEX si_consumption_by_merchant ON si_consumption (merchant_id, day);
)sql";

// Which card purchase paid a claim's personal-account share at the facility's POS
// (ClaimStore::RecordCardPayment): the consumption detail's <asn>/ED/<offline serial>, so one
// purchase pays one claim.
constexpr char kClaimCardPayments[] = R"sql(
ALTER TABLE si_claims ADD COLUMN card_asn TEXT;
ALTER TABLE si_claims ADD COLUMN card_offline_serial BIGINT;
ALTER TABLE si_claims ADD COLUMN card_terminal TEXT;
ALTER TABLE si_claims ADD COLUMN card_amount BIGINT;
CREATE UNIQUE INDEX si_claims_by_card_payment ON si_claims (card_asn, card_offline_serial);
)sql";

}  // namespace

const store::MigrationSet& Migrations() {
  static const store::MigrationSet set{"insurance",
                                       {
                                           {1, "units, people, person events", kRegistry},
                                           {2, "monthly runs, bills, payments, books", kMonthlyRun},
                                           {3, "allocation batches", kBatches},
                                           {4, "claims, consumption detail", kClaims},
                                           {5, "claims' card payments", kClaimCardPayments},
                                       }};
  return set;
}

}  // namespace medcard::insurance
