// The host's tables (docs/host.md "Schema"). Every card row is keyed by ASN first and every
// terminal row by terminal/merchant, so they partition like the ledger (docs/store.md).
#include "host/host.h"

namespace medcard::host {

const store::MigrationSet& Migrations() {
  static const store::MigrationSet set{"host",
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
                                       }};
  return set;
}

}  // namespace medcard::host
