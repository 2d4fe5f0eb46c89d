// The branch's tables (docs/branch.md "Schema"): the card lifecycle's rows with their versions,
// the day's actions for the day-end report, and the transfers waiting for the clearing window.
#include "branch/services.h"

namespace medcard::branch {

const store::MigrationSet& Migrations() {
  static const store::MigrationSet set{"branch",
                                       {
                                           {1, "cards, events, scheduled transfers",
                                            R"sql(
CREATE TABLE branch_cards (
  application_id {{ID}},
  asn TEXT UNIQUE,
  person_id TEXT NOT NULL,
  holder_reference TEXT NOT NULL,
  branch TEXT NOT NULL,
  state TEXT NOT NULL,
  version BIGINT NOT NULL,
  valid_to TEXT,
  replaces BIGINT,
  replaced_by BIGINT,
  created_at_us BIGINT NOT NULL,
  updated_at_us BIGINT NOT NULL
);
CREATE INDEX branch_cards_by_person ON branch_cards (person_id);
CREATE TABLE branch_card_events (
  id {{ID}},
  application_id BIGINT NOT NULL,
  asn TEXT,
  branch TEXT NOT NULL,
  action TEXT NOT NULL,
  actor TEXT NOT NULL,
  day TEXT NOT NULL,
  at_us BIGINT NOT NULL
);
CREATE INDEX branch_card_events_by_day ON branch_card_events (day, branch);
CREATE TABLE branch_transfers (
  id {{ID}},
  asn TEXT NOT NULL UNIQUE,
  person_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  due_at_us BIGINT NOT NULL,
  state TEXT NOT NULL,
  moved_ed BIGINT NOT NULL DEFAULT 0,
  moved_ep BIGINT NOT NULL DEFAULT 0,
  refunded BIGINT NOT NULL DEFAULT 0,
  payee_reference TEXT NOT NULL,
  created_at_us BIGINT NOT NULL,
  done_at_us BIGINT
);
CREATE INDEX branch_transfers_due ON branch_transfers (state, due_at_us))sql"},
                                       }};
  return set;
}

}  // namespace medcard::branch
