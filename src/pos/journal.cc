#include "pos/journal.h"

#include <utility>

namespace medcard::pos {

namespace {

// The journal's on-disk format is this migration set (SQLite only): every money column is an
// integer in fen, dates and times are text (YYYY-MM-DD, hh:mm:ss), binary values are blobs. A
// later change is a new migration, never an edit of an applied one (store::Migrate checks).
const store::MigrationSet& Migrations() {
  static const store::MigrationSet set{"pos",
                                       {
                                           {1, "purchases", R"sql(
CREATE TABLE pos_purchase (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  state TEXT NOT NULL CHECK (state IN ('pending', 'completed', 'voided')),
  asn BLOB NOT NULL,
  wallet INTEGER NOT NULL,
  amount INTEGER NOT NULL CHECK (amount > 0),
  balance_before INTEGER NOT NULL,
  card_offline_serial INTEGER NOT NULL,
  terminal_serial INTEGER NOT NULL,
  terminal_number BLOB NOT NULL,
  key_version INTEGER NOT NULL,
  txn_date TEXT NOT NULL,
  txn_time TEXT NOT NULL,
  tac BLOB,
  mac2 BLOB,
  psam_credited INTEGER NOT NULL DEFAULT 0,
  recovered INTEGER NOT NULL DEFAULT 0,
  uploaded_batch INTEGER,
  settled INTEGER NOT NULL DEFAULT 0,
  CHECK (state <> 'completed' OR (tac IS NOT NULL AND mac2 IS NOT NULL)),
  CHECK (uploaded_batch IS NULL OR state = 'completed')
);
CREATE UNIQUE INDEX pos_purchase_psam_serial ON pos_purchase (terminal_number, terminal_serial);
CREATE INDEX pos_purchase_state ON pos_purchase (state, uploaded_batch);
CREATE TABLE pos_link_state (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  last_trace INTEGER NOT NULL,
  batch_number INTEGER NOT NULL
);
CREATE TABLE pos_load (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  batch_number INTEGER NOT NULL,
  trace INTEGER NOT NULL,
  month INTEGER NOT NULL,
  day INTEGER NOT NULL,
  type INTEGER NOT NULL,
  amount INTEGER NOT NULL,
  asn BLOB NOT NULL,
  tac BLOB NOT NULL,
  balance_after INTEGER NOT NULL,
  online_serial INTEGER NOT NULL,
  confirmed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE pos_settlement (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  batch_number INTEGER NOT NULL UNIQUE,
  purchase_count INTEGER NOT NULL,
  purchase_amount INTEGER NOT NULL,
  load_count INTEGER NOT NULL,
  load_amount INTEGER NOT NULL,
  clear_totals_mac BLOB NOT NULL,
  psam_cleared INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE pos_blacklist (asn BLOB PRIMARY KEY);
CREATE TABLE pos_setting (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE pos_parameters (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  version INTEGER NOT NULL,
  merchant_name TEXT,
  purchase_limit INTEGER,
  load_limit INTEGER,
  ep_balance_limit INTEGER,
  card_key_versions BLOB NOT NULL,
  upload_threshold INTEGER,
  blacklist_version INTEGER
)
)sql"},
                                       }};
  return set;
}

std::string DateText(const Date& d) { return d.ToString(); }
std::string TimeText(const TimeOfDay& t) { return t.ToString(); }
Date ParseDate(const std::string& s) {
  // YYYY-MM-DD, as written by DateText.
  return Date{std::stoi(s.substr(0, 4)), std::stoi(s.substr(5, 2)), std::stoi(s.substr(8, 2))};
}
TimeOfDay ParseTime(const std::string& s) {
  return TimeOfDay{std::stoi(s.substr(0, 2)), std::stoi(s.substr(3, 2)), std::stoi(s.substr(6, 2))};
}

PurchaseState StateOf(const std::string& s) {
  if (s == "completed") return PurchaseState::kCompleted;
  if (s == "voided") return PurchaseState::kVoided;
  return PurchaseState::kPending;
}

template <typename T>
T Narrow(std::int64_t v) {
  return static_cast<T>(v);
}

PurchaseRecord RecordOf(const store::Row& row) {
  PurchaseRecord r;
  r.id = row.Int("id");
  r.state = StateOf(row.Text("state"));
  r.asn = row.Blob("asn");
  r.wallet = static_cast<terminal::Wallet>(row.Int("wallet"));
  r.amount = Narrow<std::uint32_t>(row.Int("amount"));
  r.balance_before = Narrow<std::uint32_t>(row.Int("balance_before"));
  r.card_offline_serial = Narrow<std::uint16_t>(row.Int("card_offline_serial"));
  r.terminal_serial = Narrow<std::uint32_t>(row.Int("terminal_serial"));
  r.terminal_number = row.Blob("terminal_number");
  r.key_version = Narrow<std::uint8_t>(row.Int("key_version"));
  r.date = ParseDate(row.Text("txn_date"));
  r.time = ParseTime(row.Text("txn_time"));
  if (!row.IsNull("tac")) r.tac = row.Blob("tac");
  if (!row.IsNull("mac2")) r.mac2 = row.Blob("mac2");
  r.psam_credited = row.Int("psam_credited") != 0;
  r.recovered = row.Int("recovered") != 0;
  if (auto b = row.OptionalInt("uploaded_batch")) r.uploaded_batch = Narrow<std::uint32_t>(*b);
  r.settled = row.Int("settled") != 0;
  return r;
}

JournalledLoad LoadOf(const store::Row& row) {
  JournalledLoad l;
  l.id = row.Int("id");
  l.load.batch_number = Narrow<std::uint32_t>(row.Int("batch_number"));
  l.load.trace = Narrow<std::uint32_t>(row.Int("trace"));
  l.load.month = Narrow<int>(row.Int("month"));
  l.load.day = Narrow<int>(row.Int("day"));
  l.load.type = Narrow<std::uint8_t>(row.Int("type"));
  l.load.amount = Narrow<std::uint32_t>(row.Int("amount"));
  l.load.asn = row.Blob("asn");
  l.tac = row.Blob("tac");
  l.balance_after = Narrow<std::uint32_t>(row.Int("balance_after"));
  l.online_serial = Narrow<std::uint16_t>(row.Int("online_serial"));
  l.confirmed = row.Int("confirmed") != 0;
  return l;
}

SettlementRecord SettlementOf(const store::Row& row) {
  SettlementRecord s;
  s.id = row.Int("id");
  s.batch_number = Narrow<std::uint32_t>(row.Int("batch_number"));
  s.totals.purchase_count = Narrow<std::uint32_t>(row.Int("purchase_count"));
  s.totals.purchase_amount = static_cast<std::uint64_t>(row.Int("purchase_amount"));
  s.totals.load_count = Narrow<std::uint32_t>(row.Int("load_count"));
  s.totals.load_amount = static_cast<std::uint64_t>(row.Int("load_amount"));
  s.clear_totals_mac = row.Blob("clear_totals_mac");
  s.psam_cleared = row.Int("psam_cleared") != 0;
  return s;
}

Result<std::vector<PurchaseRecord>> Records(store::Connection& c, std::string_view sql,
                                            const store::Params& params) {
  auto rows = c.Query(sql, params);
  if (!rows.ok()) return Error(rows.error());
  std::vector<PurchaseRecord> out;
  for (const auto& row : *rows) out.push_back(RecordOf(row));
  return out;
}

Result<std::vector<JournalledLoad>> Loads(store::Connection& c, std::string_view sql,
                                          const store::Params& params) {
  auto rows = c.Query(sql, params);
  if (!rows.ok()) return Error(rows.error());
  std::vector<JournalledLoad> out;
  for (const auto& row : *rows) out.push_back(LoadOf(row));
  return out;
}

// One statement that must change exactly one row.
Status ExecuteOne(store::Connection& c, std::string_view what, std::string_view sql,
                  const store::Params& params) {
  auto changed = c.Execute(sql, params);
  if (!changed.ok()) return Error(changed.error());
  if (*changed != 1) return MakeError(std::string("journal: ") + std::string(what));
  return Status::Ok();
}

constexpr char kPurchaseColumns[] = "SELECT * FROM pos_purchase ";

}  // namespace

const char* PurchaseStateName(PurchaseState state) {
  switch (state) {
    case PurchaseState::kPending:
      return "pending";
    case PurchaseState::kCompleted:
      return "completed";
    case PurchaseState::kVoided:
      return "voided";
  }
  return "?";
}

std::uint32_t PurchaseRecord::balance_after() const {
  return balance_before >= amount ? balance_before - amount : 0;
}

terminal::PurchaseResult PurchaseRecord::ToPurchaseResult() const {
  terminal::PurchaseResult p;
  p.asn = asn;
  p.type = wallet == terminal::Wallet::kEd ? 0x05 : 0x06;
  p.amount = amount;
  p.balance_before = balance_before;
  p.balance_after = balance_after();
  p.card_offline_serial = card_offline_serial;
  p.terminal_serial = terminal_serial;
  p.terminal_number = terminal_number;
  p.tac = tac;
  p.mac2 = mac2;
  p.date = date;
  p.time = time;
  p.key_version = key_version;
  return p;
}

Journal::Journal(std::unique_ptr<store::Database> database,
                 std::unique_ptr<store::Connection> connection)
    : database_(std::move(database)), connection_(std::move(connection)) {}
Journal::~Journal() = default;

Result<std::unique_ptr<Journal>> Journal::Open(const std::string& path) {
  if (path.empty()) return MakeError("journal: no path given");
  auto database = store::Database::Open("sqlite:" + path);
  if (!database.ok()) return MakeError("journal " + path + ": " + database.error().message);
  if ((*database)->engine() != store::Engine::kSqlite) return MakeError("journal: not SQLite");
  auto connection = (*database)->Connect();
  if (!connection.ok()) return MakeError("journal " + path + ": " + connection.error().message);
  auto migrated = store::Migrate(**connection, Migrations());
  if (!migrated.ok()) return MakeError("journal " + path + ": " + migrated.error().message);
  return std::unique_ptr<Journal>(
      new Journal(std::move(database).value(), std::move(connection).value()));
}

Result<terminal::LinkState> Journal::LinkState() {
  auto rows = connection_->Query("SELECT last_trace, batch_number FROM pos_link_state");
  if (!rows.ok()) return Error(rows.error());
  if (rows->empty()) return terminal::LinkState{};
  return terminal::LinkState{Narrow<std::uint32_t>((*rows)[0].Int(0)),
                             Narrow<std::uint32_t>((*rows)[0].Int(1))};
}

Status Journal::SaveLinkState(const terminal::LinkState& state) {
  return connection_->Execute(
      "INSERT INTO pos_link_state (id, last_trace, batch_number) VALUES (1, ?, ?) "
      "ON CONFLICT (id) DO UPDATE SET last_trace = excluded.last_trace, "
      "batch_number = excluded.batch_number",
      {state.last_trace, state.batch_number});
}

Result<std::int64_t> Journal::AddPending(const PurchaseRecord& r) {
  auto id = connection_->InsertReturningId(
      "INSERT INTO pos_purchase (state, asn, wallet, amount, balance_before, card_offline_serial, "
      "terminal_serial, terminal_number, key_version, txn_date, txn_time) "
      "VALUES ('pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
      "id",
      {r.asn, static_cast<int>(r.wallet), r.amount, r.balance_before, r.card_offline_serial,
       r.terminal_serial, r.terminal_number, r.key_version, DateText(r.date), TimeText(r.time)});
  if (!id.ok()) return Error(id.error());
  if (!id->has_value()) return MakeError("journal: pending purchase not inserted");
  return **id;
}

Status Journal::Complete(std::int64_t id, ByteView tac, ByteView mac2, bool recovered) {
  return ExecuteOne(
      *connection_, "no pending purchase to complete",
      "UPDATE pos_purchase SET state = 'completed', tac = ?, mac2 = ?, recovered = ? "
      "WHERE id = ? AND state = 'pending'",
      {Bytes(tac.begin(), tac.end()), Bytes(mac2.begin(), mac2.end()), recovered, id});
}

Status Journal::MarkPsamCredited(std::int64_t id) {
  return ExecuteOne(
      *connection_, "no completed purchase to mark credited",
      "UPDATE pos_purchase SET psam_credited = 1 WHERE id = ? AND state = 'completed'", {id});
}

Status Journal::Void(std::int64_t id, bool recovered) {
  return ExecuteOne(*connection_, "no pending purchase to void",
                    "UPDATE pos_purchase SET state = 'voided', recovered = ? "
                    "WHERE id = ? AND state = 'pending'",
                    {recovered, id});
}

Result<std::optional<PurchaseRecord>> Journal::Purchase(std::int64_t id) {
  auto records = Records(*connection_, std::string(kPurchaseColumns) + "WHERE id = ?", {id});
  if (!records.ok()) return records.error();
  if (records->empty()) return std::optional<PurchaseRecord>();
  return std::optional<PurchaseRecord>((*records)[0]);
}

Result<std::vector<PurchaseRecord>> Journal::Purchases(PurchaseState state) {
  return Records(*connection_, std::string(kPurchaseColumns) + "WHERE state = ? ORDER BY id",
                 {PurchaseStateName(state)});
}

Result<std::vector<PurchaseRecord>> Journal::Unuploaded() {
  return Records(*connection_,
                 std::string(kPurchaseColumns) +
                     "WHERE state = 'completed' AND uploaded_batch IS NULL ORDER BY id",
                 {});
}

Result<std::vector<PurchaseRecord>> Journal::UploadedIn(std::uint32_t batch) {
  return Records(*connection_,
                 std::string(kPurchaseColumns) + "WHERE uploaded_batch = ? ORDER BY id", {batch});
}

Result<std::vector<PurchaseRecord>> Journal::UnsettledBefore(std::uint32_t batch) {
  return Records(
      *connection_,
      std::string(kPurchaseColumns) + "WHERE uploaded_batch < ? AND settled = 0 ORDER BY id",
      {batch});
}

Status Journal::MarkUploaded(const std::vector<std::int64_t>& ids, std::uint32_t batch) {
  return store::RunTransaction(
      *connection_, store::TransactionMode::kWrite, [&](store::Connection& c) -> store::DbStatus {
        for (std::int64_t id : ids) {
          auto changed = c.Execute(
              "UPDATE pos_purchase SET uploaded_batch = ? "
              "WHERE id = ? AND state = 'completed' AND uploaded_batch IS NULL",
              {batch, id});
          if (!changed.ok()) return changed.error();
        }
        return store::Done{};
      });
}

Result<std::int64_t> Journal::AddLoad(const JournalledLoad& l) {
  auto id = connection_->InsertReturningId(
      "INSERT INTO pos_load (batch_number, trace, month, day, type, amount, asn, tac, "
      "balance_after, online_serial, confirmed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
      "id",
      {l.load.batch_number, l.load.trace, l.load.month, l.load.day, l.load.type, l.load.amount,
       l.load.asn, l.tac, l.balance_after, l.online_serial, l.confirmed});
  if (!id.ok()) return Error(id.error());
  if (!id->has_value()) return MakeError("journal: load not inserted");
  return **id;
}

Status Journal::MarkLoadConfirmed(std::int64_t id) {
  return ExecuteOne(*connection_, "no such load", "UPDATE pos_load SET confirmed = 1 WHERE id = ?",
                    {id});
}

Result<std::vector<JournalledLoad>> Journal::UnconfirmedLoads() {
  return Loads(*connection_, "SELECT * FROM pos_load WHERE confirmed = 0 ORDER BY id", {});
}

Result<std::vector<JournalledLoad>> Journal::ConfirmedLoadsIn(std::uint32_t batch) {
  return Loads(*connection_,
               "SELECT * FROM pos_load WHERE confirmed = 1 AND batch_number = ? ORDER BY id",
               {batch});
}

Result<std::int64_t> Journal::AddSettlement(const SettlementRecord& s) {
  std::int64_t id = 0;
  store::DbStatus done = store::RunTransaction(
      *connection_, store::TransactionMode::kWrite, [&](store::Connection& c) -> store::DbStatus {
        auto inserted = c.InsertReturningId(
            "INSERT INTO pos_settlement (batch_number, purchase_count, purchase_amount, "
            "load_count, load_amount, clear_totals_mac, psam_cleared) VALUES (?, ?, ?, ?, ?, ?, ?)",
            "id",
            {s.batch_number, s.totals.purchase_count,
             static_cast<std::int64_t>(s.totals.purchase_amount), s.totals.load_count,
             static_cast<std::int64_t>(s.totals.load_amount), s.clear_totals_mac, s.psam_cleared});
        if (!inserted.ok()) return inserted.error();
        id = inserted->value_or(0);
        auto settled = c.Execute("UPDATE pos_purchase SET settled = 1 WHERE uploaded_batch = ?",
                                 {s.batch_number});
        if (!settled.ok()) return settled.error();
        return store::Done{};
      });
  if (!done.ok()) return Error(done.error());
  return id;
}

Status Journal::MarkPsamCleared(std::int64_t settlement_id) {
  return ExecuteOne(*connection_, "no such settlement",
                    "UPDATE pos_settlement SET psam_cleared = 1 WHERE id = ?", {settlement_id});
}

Result<std::vector<SettlementRecord>> Journal::Settlements() {
  auto rows = connection_->Query("SELECT * FROM pos_settlement ORDER BY id");
  if (!rows.ok()) return Error(rows.error());
  std::vector<SettlementRecord> out;
  for (const auto& row : *rows) out.push_back(SettlementOf(row));
  return out;
}

Result<std::optional<SettlementRecord>> Journal::UnclearedSettlement() {
  auto rows = connection_->Query(
      "SELECT * FROM pos_settlement WHERE psam_cleared = 0 ORDER BY id DESC LIMIT 1");
  if (!rows.ok()) return Error(rows.error());
  if (rows->empty()) return std::optional<SettlementRecord>();
  return std::optional<SettlementRecord>(SettlementOf((*rows)[0]));
}

Result<std::uint32_t> Journal::BlacklistVersion() {
  auto rows = connection_->Query("SELECT value FROM pos_setting WHERE name = 'blacklist_version'");
  if (!rows.ok()) return Error(rows.error());
  if (rows->empty()) return std::uint32_t{0};
  return Narrow<std::uint32_t>((*rows)[0].Int(0));
}

Result<bool> Journal::IsBlacklisted(ByteView asn) {
  auto rows = connection_->Query("SELECT 1 FROM pos_blacklist WHERE asn = ?",
                                 {Bytes(asn.begin(), asn.end())});
  if (!rows.ok()) return Error(rows.error());
  return !rows->empty();
}

Result<std::size_t> Journal::BlacklistSize() {
  auto rows = connection_->Query("SELECT COUNT(*) FROM pos_blacklist");
  if (!rows.ok()) return Error(rows.error());
  return static_cast<std::size_t>((*rows)[0].Int(0));
}

Status Journal::ApplyBlacklist(const terminal::BlacklistReply& reply) {
  return store::RunTransaction(
      *connection_, store::TransactionMode::kWrite, [&](store::Connection& c) -> store::DbStatus {
        if (reply.full) {
          auto cleared = c.Execute("DELETE FROM pos_blacklist");
          if (!cleared.ok()) return cleared.error();
        }
        for (const auto& entry : reply.entries) {
          auto applied =
              entry.action == iso8583::BlacklistAction::kAdd
                  ? c.Execute("INSERT INTO pos_blacklist (asn) VALUES (?) ON CONFLICT DO NOTHING",
                              {entry.asn})
                  : c.Execute("DELETE FROM pos_blacklist WHERE asn = ?", {entry.asn});
          if (!applied.ok()) return applied.error();
        }
        auto version = c.Execute(
            "INSERT INTO pos_setting (name, value) VALUES ('blacklist_version', ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            {reply.version});
        if (!version.ok()) return version.error();
        return store::Done{};
      });
}

Result<std::optional<StoredParameters>> Journal::Parameters() {
  auto rows = connection_->Query("SELECT * FROM pos_parameters WHERE id = 1");
  if (!rows.ok()) return Error(rows.error());
  if (rows->empty()) return std::optional<StoredParameters>();
  const store::Row& row = (*rows)[0];
  StoredParameters s;
  s.version = Narrow<std::uint32_t>(row.Int("version"));
  s.parameters.merchant_name = row.OptionalText("merchant_name");
  auto u32 = [&](std::string_view column) -> std::optional<std::uint32_t> {
    if (auto v = row.OptionalInt(column)) return Narrow<std::uint32_t>(*v);
    return std::nullopt;
  };
  s.parameters.purchase_limit = u32("purchase_limit");
  s.parameters.load_limit = u32("load_limit");
  s.parameters.ep_balance_limit = u32("ep_balance_limit");
  const Bytes& versions = row.Blob("card_key_versions");
  s.parameters.card_key_versions.assign(versions.begin(), versions.end());
  if (auto v = u32("upload_threshold")) s.parameters.upload_threshold = Narrow<std::uint16_t>(*v);
  s.parameters.blacklist_version = u32("blacklist_version");
  return std::optional<StoredParameters>(std::move(s));
}

// The host clock (tag 06) is not kept: it is a reading of the moment, not a setting.
Status Journal::SaveParameters(const StoredParameters& s) {
  const iso8583::Parameters& p = s.parameters;
  return connection_->Execute(
      "INSERT INTO pos_parameters (id, version, merchant_name, purchase_limit, load_limit, "
      "ep_balance_limit, card_key_versions, upload_threshold, blacklist_version) "
      "VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
      "version = excluded.version, merchant_name = excluded.merchant_name, "
      "purchase_limit = excluded.purchase_limit, load_limit = excluded.load_limit, "
      "ep_balance_limit = excluded.ep_balance_limit, "
      "card_key_versions = excluded.card_key_versions, "
      "upload_threshold = excluded.upload_threshold, "
      "blacklist_version = excluded.blacklist_version",
      {s.version, p.merchant_name, p.purchase_limit, p.load_limit, p.ep_balance_limit,
       Bytes(p.card_key_versions.begin(), p.card_key_versions.end()), p.upload_threshold,
       p.blacklist_version});
}

Result<std::int64_t> Journal::Prune(std::uint32_t below_batch) {
  std::int64_t removed = 0;
  store::DbStatus done = store::RunTransaction(
      *connection_, store::TransactionMode::kWrite, [&](store::Connection& c) -> store::DbStatus {
        removed = 0;
        auto settled = c.Execute(
            "DELETE FROM pos_purchase WHERE settled = 1 AND uploaded_batch < ?", {below_batch});
        if (!settled.ok()) return settled.error();
        removed += *settled;
        // A voided purchase moved no money; it goes once every purchase before it is settled.
        auto voided = c.Execute(
            "DELETE FROM pos_purchase WHERE state = 'voided' AND id < "
            "(SELECT COALESCE(MIN(id), 9223372036854775807) FROM pos_purchase WHERE settled = 0 "
            "AND state <> 'voided')",
            {});
        if (!voided.ok()) return voided.error();
        removed += *voided;
        return store::Done{};
      });
  if (!done.ok()) return Error(done.error());
  return removed;
}

}  // namespace medcard::pos
