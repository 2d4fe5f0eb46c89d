// The host's tables (docs/host.md "Schema"). Every card row is keyed by ASN first and every
// terminal row by terminal/merchant, so they partition like the ledger (docs/store.md).
#include "host/host.h"

namespace medcard::host {

const store::MigrationSet& Migrations() {
  static const store::MigrationSet set{
      "host",
      {
          {1, "merchants, terminals, cards",
           R"sql(
CREATE TABLE host_merchants (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  grade TEXT NOT NULL
);
CREATE TABLE host_terminals (
  terminal_number TEXT PRIMARY KEY,
  merchant_id TEXT NOT NULL REFERENCES host_merchants(id),
  psam_serial TEXT NOT NULL,
  tmk_name TEXT NOT NULL,
  status TEXT NOT NULL,
  working_key_version BIGINT NOT NULL DEFAULT 0,
  last_trace BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE host_cards (
  asn TEXT PRIMARY KEY,
  holder_reference TEXT NOT NULL,
  person_id TEXT NOT NULL,
  status TEXT NOT NULL,
  blacklisted_at TEXT
);
CREATE TABLE host_card_wallets (
  asn TEXT NOT NULL,
  wallet TEXT NOT NULL,
  last_offline_serial BIGINT,
  PRIMARY KEY (asn, wallet)
))sql"},
          {2, "blacklist, loads, purchases, suspense, gaps",
           R"sql(
CREATE TABLE host_blacklist (
  version {{ID}},
  asn TEXT NOT NULL,
  action TEXT NOT NULL,
  effective_at TEXT NOT NULL
);
CREATE TABLE host_loads (
  terminal_number TEXT NOT NULL,
  trace BIGINT NOT NULL,
  asn TEXT NOT NULL,
  type BIGINT NOT NULL,
  amount BIGINT NOT NULL,
  old_balance BIGINT NOT NULL,
  online_serial BIGINT NOT NULL,
  key_version BIGINT NOT NULL,
  random TEXT NOT NULL,
  mac1 TEXT NOT NULL,
  txn_time TEXT NOT NULL,
  mac2 TEXT NOT NULL,
  state TEXT NOT NULL,
  created_at_us BIGINT NOT NULL,
  PRIMARY KEY (terminal_number, trace)
);
CREATE TABLE host_purchases (
  asn TEXT NOT NULL,
  offline_serial BIGINT NOT NULL,
  type BIGINT NOT NULL,
  amount BIGINT NOT NULL,
  balance_before BIGINT NOT NULL,
  balance_after BIGINT NOT NULL,
  terminal_number TEXT NOT NULL,
  terminal_serial BIGINT NOT NULL,
  txn_time TEXT NOT NULL,
  tac TEXT NOT NULL,
  outcome TEXT NOT NULL,
  reason TEXT NOT NULL,
  PRIMARY KEY (asn, offline_serial, type)
);
CREATE TABLE host_suspense (
  id {{ID}},
  asn TEXT NOT NULL,
  offline_serial BIGINT NOT NULL,
  type BIGINT NOT NULL,
  amount BIGINT NOT NULL,
  reason TEXT NOT NULL,
  created_at_us BIGINT NOT NULL
);
CREATE TABLE host_gaps (
  asn TEXT NOT NULL,
  wallet TEXT NOT NULL,
  offline_serial BIGINT NOT NULL,
  opened_at_us BIGINT NOT NULL,
  closed_at_us BIGINT,
  PRIMARY KEY (asn, wallet, offline_serial)
))sql"},
          {3, "settlements",
           R"sql(
CREATE TABLE host_settlements (
  terminal_number TEXT NOT NULL,
  day TEXT NOT NULL,
  first_serial BIGINT NOT NULL,
  last_serial BIGINT NOT NULL,
  psam_count BIGINT NOT NULL,
  psam_amount BIGINT NOT NULL,
  uploaded_count BIGINT NOT NULL,
  uploaded_amount BIGINT NOT NULL,
  status TEXT NOT NULL,
  settled_at_us BIGINT NOT NULL,
  PRIMARY KEY (terminal_number, day, first_serial)
))sql"},
          {4, "terminal gateway: terminal ids, sessions, answers",
           R"sql(
ALTER TABLE host_terminals ADD COLUMN terminal_id TEXT NOT NULL DEFAULT '';
UPDATE host_terminals SET terminal_id = SUBSTR(terminal_number, 5, 8);
CREATE INDEX host_terminals_by_id ON host_terminals (terminal_id);
CREATE TABLE host_parameters (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
INSERT INTO host_parameters (name, value) VALUES
  ('purchase_limit', '100000'),
  ('load_limit', '200000'),
  ('ep_balance_ceiling', '100000'),
  ('card_key_versions', '1'),
  ('upload_threshold', '20');
CREATE TABLE host_terminal_sessions (
  terminal_number TEXT PRIMARY KEY,
  key_version BIGINT NOT NULL,
  tmk_version BIGINT NOT NULL,
  pin_key_cryptogram TEXT,
  mac_key_cryptogram TEXT,
  data_key_cryptogram TEXT,
  open_batch BIGINT,
  challenge TEXT,
  parameter_version BIGINT,
  blacklist_version BIGINT
);
CREATE TABLE host_gateway_answers (
  terminal_number TEXT NOT NULL,
  batch BIGINT NOT NULL,
  trace BIGINT NOT NULL,
  request_digest TEXT NOT NULL,
  answer TEXT NOT NULL,
  created_at_us BIGINT NOT NULL,
  PRIMARY KEY (terminal_number, batch, trace)
);
CREATE TABLE host_gateway_loads (
  id {{ID}},
  terminal_number TEXT NOT NULL,
  batch BIGINT NOT NULL,
  trace BIGINT NOT NULL,
  host_trace BIGINT,
  asn TEXT NOT NULL,
  amount BIGINT NOT NULL,
  UNIQUE (terminal_number, batch, trace)
);
CREATE TABLE host_gateway_uploads (
  terminal_number TEXT NOT NULL,
  batch BIGINT NOT NULL,
  asn TEXT NOT NULL,
  offline_serial BIGINT NOT NULL,
  type BIGINT NOT NULL,
  amount BIGINT NOT NULL,
  PRIMARY KEY (terminal_number, batch, asn, offline_serial, type)
))sql"},
          {5, "money held in suspense per card wallet; suspense review",
           R"sql(
ALTER TABLE host_card_wallets ADD COLUMN held_in_suspense BIGINT NOT NULL DEFAULT 0;
ALTER TABLE host_suspense ADD COLUMN money_held BIGINT NOT NULL DEFAULT 0;
ALTER TABLE host_suspense ADD COLUMN resolution TEXT;
ALTER TABLE host_suspense ADD COLUMN resolved_by TEXT;
ALTER TABLE host_suspense ADD COLUMN resolution_note TEXT;
ALTER TABLE host_suspense ADD COLUMN resolved_at_us BIGINT;
)sql"},
          {6, "card expiry",
           R"sql(
ALTER TABLE host_cards ADD COLUMN valid_to TEXT;
)sql"},
          {7, "online PIN verification values and wrong-PIN counts",
           R"sql(
CREATE TABLE host_card_pins (
  asn TEXT PRIMARY KEY,
  method TEXT NOT NULL,
  key_name TEXT NOT NULL,
  key_version BIGINT NOT NULL,
  pin_offset TEXT NOT NULL,
  failed_tries BIGINT NOT NULL DEFAULT 0,
  updated_at_us BIGINT NOT NULL,
  last_failure_at_us BIGINT
);
)sql"},
          {8, "ED overdraw: the card's limit and what it has used, as the host knows them",
           R"sql(
ALTER TABLE host_card_wallets ADD COLUMN overdraw_limit BIGINT NOT NULL DEFAULT 0;
ALTER TABLE host_card_wallets ADD COLUMN overdraw_used BIGINT NOT NULL DEFAULT 0;
)sql"},
          // The pending loads by card: what a confirmation after a lost one, and reconciliation,
          // read to decide a pending load (its completed loads are in the card state). Pending
          // loads only: a handful of index pages, however many loads the host has had.
          {9, "pending loads by card", R"sql(
CREATE INDEX host_loads_pending_by_card ON host_loads (asn, type, online_serial)
  WHERE state = 'pending';
)sql"},
      }};
  return set;
}

}  // namespace medcard::host
