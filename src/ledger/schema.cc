// The ledger's tables (docs/ledger.md "Schema"). Add a migration by appending one entry; never
// edit one that has shipped (Migrate refuses a changed checksum).
#include "ledger/ledger.h"

namespace medcard::ledger {

namespace {

// Accounts, transfers (each row is also the idempotency record of its id) and the host's last
// known state of every card wallet. Every row carries the shard of the card ASN, merchant or
// person it belongs to (ShardOf), ready for partitioning.
constexpr char kAccountsAndTransfers[] = R"sql(
CREATE TABLE ledger_accounts (
  id {{ID}},
  kind TEXT NOT NULL,
  account_key TEXT NOT NULL,
  shard INTEGER NOT NULL,
  balance BIGINT NOT NULL DEFAULT 0,
  debits_pending BIGINT NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
  credits_pending BIGINT NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
  created_at BIGINT NOT NULL,
  UNIQUE (kind, account_key)
);
CREATE TABLE ledger_transfers (
  seq {{ID}},
  id TEXT NOT NULL UNIQUE,
  debit_account BIGINT NOT NULL REFERENCES ledger_accounts (id),
  credit_account BIGINT NOT NULL REFERENCES ledger_accounts (id),
  amount BIGINT NOT NULL CHECK (amount > 0),
  pending INTEGER NOT NULL CHECK (pending IN (0, 1)),
  debit_must_not_go_negative INTEGER NOT NULL CHECK (debit_must_not_go_negative IN (0, 1)),
  state TEXT NOT NULL CHECK (state IN ('posted', 'pending', 'completed', 'voided', 'rejected')),
  cause_kind TEXT NOT NULL,
  cause_reference TEXT NOT NULL,
  cause_details TEXT NOT NULL,
  card_state TEXT,
  shard INTEGER NOT NULL,
  created_at BIGINT NOT NULL,
  resolved_at BIGINT,
  CHECK (debit_account <> credit_account)
);
CREATE INDEX ledger_transfers_cause ON ledger_transfers (cause_kind, cause_reference);
CREATE INDEX ledger_transfers_pending ON ledger_transfers (seq) WHERE state = 'pending';
CREATE TABLE ledger_card_state (
  account_id BIGINT PRIMARY KEY REFERENCES ledger_accounts (id),
  asn TEXT NOT NULL,
  wallet TEXT NOT NULL CHECK (wallet IN ('ED', 'EP')),
  balance BIGINT NOT NULL,
  online_serial BIGINT,
  offline_serial BIGINT,
  shard INTEGER NOT NULL,
  updated_at BIGINT NOT NULL,
  UNIQUE (asn, wallet)
);
)sql";

// The posting legs: append-only, two per posted transfer, the ledger's largest table.
constexpr char kPostingsSqlite[] = R"sql(
CREATE TABLE ledger_postings (
  seq {{ID}},
  transfer_seq BIGINT NOT NULL REFERENCES ledger_transfers (seq),
  account_id BIGINT NOT NULL REFERENCES ledger_accounts (id),
  amount BIGINT NOT NULL CHECK (amount <> 0),
  balance_after BIGINT NOT NULL,
  shard INTEGER NOT NULL,
  created_at BIGINT NOT NULL
);
CREATE INDEX ledger_postings_account ON ledger_postings (account_id, seq);
CREATE INDEX ledger_postings_transfer ON ledger_postings (transfer_seq);
)sql";

// PostgreSQL: the same table partitioned by shard range, 16 partitions of 16 shards each; a
// partition is the unit that later moves to its own server. (Identity columns on partitioned
// tables need PostgreSQL 17, hence the sequence.)
constexpr char kPostingsPostgres[] = R"sql(
CREATE SEQUENCE ledger_postings_seq AS BIGINT;
CREATE TABLE ledger_postings (
  seq BIGINT NOT NULL DEFAULT nextval('ledger_postings_seq'),
  transfer_seq BIGINT NOT NULL REFERENCES ledger_transfers (seq),
  account_id BIGINT NOT NULL REFERENCES ledger_accounts (id),
  amount BIGINT NOT NULL CHECK (amount <> 0),
  balance_after BIGINT NOT NULL,
  shard INTEGER NOT NULL CHECK (shard >= 0 AND shard < 256),
  created_at BIGINT NOT NULL,
  PRIMARY KEY (shard, seq)
) PARTITION BY RANGE (shard);
ALTER SEQUENCE ledger_postings_seq OWNED BY ledger_postings.seq;
DO $$
BEGIN
  FOR p IN 0..15 LOOP
    EXECUTE format('CREATE TABLE ledger_postings_%s PARTITION OF ledger_postings'
                   ' FOR VALUES FROM (%s) TO (%s)', lpad(p::text, 2, '0'), p * 16, p * 16 + 16);
  END LOOP;
END
$$;
CREATE INDEX ledger_postings_account ON ledger_postings (account_id, seq);
CREATE INDEX ledger_postings_transfer ON ledger_postings (transfer_seq);
)sql";

// The cause index served no lookup (a card transaction's transfer is found by its id; the
// posted-twice check reads the whole table anyway) and cost one more random B-tree insert per
// transfer: about a tenth of clearing's database work (docs/host.md "Throughput").
constexpr char kDropCauseIndex[] = R"sql(
DROP INDEX ledger_transfers_cause;
)sql";

}  // namespace

const store::MigrationSet& Migrations() {
  static const store::MigrationSet set{
      "ledger",
      {
          {1, "accounts, transfers, card state", kAccountsAndTransfers},
          {2, "postings, partitioned by shard on PostgreSQL", kPostingsSqlite, kPostingsSqlite,
           kPostingsPostgres},
          {3, "no index on the transfers' cause", kDropCauseIndex},
      }};
  return set;
}

int ShardOf(std::string_view partition_key) {
  // FNV-1a 32: stable across versions and platforms (a shard number is stored in every row).
  std::uint32_t h = 2166136261u;
  for (const char c : partition_key) {
    h ^= static_cast<std::uint8_t>(c);
    h *= 16777619u;
  }
  return static_cast<int>(h % kShardCount);
}

}  // namespace medcard::ledger
