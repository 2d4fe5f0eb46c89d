// The access tables (docs/access.md "Schema"): users, sessions (only the token's SHA-256), the
// per-role amount limits and the operations under dual control, with their defaults. Add a
// migration by appending one entry; never edit one that has shipped.
#include "access/directory.h"

namespace medcard::access {

namespace {

constexpr char kUsersAndSessions[] = R"sql(
CREATE TABLE access_users (
  login TEXT PRIMARY KEY,
  display_name TEXT NOT NULL,
  role TEXT NOT NULL,
  branch TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('active', 'locked', 'disabled')),
  password_hash TEXT NOT NULL,
  failed_sign_ins BIGINT NOT NULL DEFAULT 0,
  created_at_us BIGINT NOT NULL,
  password_changed_at_us BIGINT NOT NULL
);
CREATE TABLE access_sessions (
  token_hash TEXT PRIMARY KEY,
  login TEXT NOT NULL REFERENCES access_users (login),
  created_at_us BIGINT NOT NULL,
  last_used_at_us BIGINT NOT NULL,
  ended_at_us BIGINT,
  from_address TEXT NOT NULL
);
CREATE INDEX access_sessions_by_login ON access_sessions (login))sql";

// Defaults in fen: a teller handles up to 1,000 yuan alone; a senior teller authorises up to
// 20,000 yuan, a supervisor up to 100,000 yuan. NULL: the role may not authorise.
constexpr char kLimits[] = R"sql(
CREATE TABLE access_role_limits (
  role TEXT PRIMARY KEY,
  own_limit_fen BIGINT NOT NULL CHECK (own_limit_fen >= 0),
  authorise_limit_fen BIGINT CHECK (authorise_limit_fen >= 0)
);
INSERT INTO access_role_limits (role, own_limit_fen, authorise_limit_fen) VALUES
  ('teller', 100000, NULL),
  ('senior_teller', 500000, 2000000),
  ('supervisor', 2000000, 10000000),
  ('auditor', 0, NULL),
  ('administrator', 0, NULL),
  ('agency_system', 0, NULL);
CREATE TABLE access_dual_control (
  operation TEXT PRIMARY KEY
);
INSERT INTO access_dual_control (operation) VALUES
  ('card.close'), ('card.pin_reset'), ('card.replace'), ('card.unblock'))sql";

}  // namespace

const store::MigrationSet& Migrations() {
  static const store::MigrationSet set{
      "access",
      {
          {1, "users and sessions", kUsersAndSessions},
          {2, "role limits and dual control", kLimits},
          {3, "the agency's insurance officer role",
           "INSERT INTO access_role_limits (role, own_limit_fen, authorise_limit_fen) VALUES "
           "('insurance_officer', 0, NULL)"},
      },
  };
  return set;
}

}  // namespace medcard::access
