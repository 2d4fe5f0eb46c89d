// The audit log's tables (docs/audit.md "Schema"): the entries, the one-row head that appends
// lock and advance, and triggers that refuse UPDATE and DELETE of entries on both engines. Add a
// migration by appending one entry; never edit one that has shipped.
#include "audit/audit_log.h"

namespace medcard::audit {

namespace {

constexpr char kTables[] = R"sql(
CREATE TABLE audit_entries (
  sequence BIGINT PRIMARY KEY,
  at_us BIGINT NOT NULL,
  actor TEXT NOT NULL,
  authorised_by TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  details TEXT NOT NULL,
  from_address TEXT NOT NULL,
  previous_hash TEXT NOT NULL,
  hash TEXT NOT NULL
);
CREATE INDEX audit_entries_by_actor ON audit_entries (actor, sequence);
CREATE INDEX audit_entries_by_action ON audit_entries (action, sequence);
CREATE INDEX audit_entries_by_target ON audit_entries (target, sequence);
CREATE INDEX audit_entries_by_time ON audit_entries (at_us);
CREATE TABLE audit_head (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  sequence BIGINT NOT NULL,
  hash TEXT NOT NULL
);
INSERT INTO audit_head (id, sequence, hash)
  VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000'))sql";

// SQLite: RAISE(ABORT) in BEFORE triggers. The head only moves forward one entry at a time.
constexpr char kSqliteTriggers[] = R"sql(
CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: entries cannot be changed'); END;
CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: entries cannot be deleted'); END;
CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head
BEGIN SELECT RAISE(ABORT, 'the audit log head cannot be deleted'); END;
CREATE TRIGGER audit_head_forward BEFORE UPDATE ON audit_head
WHEN NEW.sequence <> OLD.sequence + 1 OR NEW.id <> OLD.id
BEGIN SELECT RAISE(ABORT, 'the audit log head only moves forward one entry at a time'); END)sql";

// PostgreSQL: plpgsql trigger functions; TRUNCATE is refused too.
constexpr char kPostgresTriggers[] = R"sql(
CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  RAISE EXCEPTION 'the audit log is append-only: entries cannot be changed or deleted';
END
$fn$;
CREATE TRIGGER audit_entries_no_change BEFORE UPDATE OR DELETE ON audit_entries
  FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries
  FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE FUNCTION audit_head_forward() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP = 'DELETE' OR NEW.sequence <> OLD.sequence + 1 OR NEW.id <> OLD.id THEN
    RAISE EXCEPTION 'the audit log head only moves forward one entry at a time';
  END IF;
  RETURN NEW;
END
$fn$;
CREATE TRIGGER audit_head_forward BEFORE UPDATE OR DELETE ON audit_head
  FOR EACH ROW EXECUTE FUNCTION audit_head_forward();
CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head
  FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change())sql";

}  // namespace

const store::MigrationSet& Migrations() {
  static const store::MigrationSet set{
      "audit",
      {
          {1, "entries and head", kTables},
          {2, "append-only triggers", "", kSqliteTriggers, kPostgresTriggers},
      },
  };
  return set;
}

}  // namespace medcard::audit
