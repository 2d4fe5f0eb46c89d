// The agency's claims on its database (claims_store.h).
#include "insurance/claims_store.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "insurance/rules.h"

namespace medcard::insurance {

using access::ErrorCode;
using access::MakeServiceError;
using json = nlohmann::json;
using store::Done;

namespace {

constexpr char kClaimColumns[] =
    "SELECT id, facility, state, claim_json, adjudication_json, reasons, decided_by,"
    " submitted_at_us, paid_at_us, card_asn, card_offline_serial, card_terminal, card_amount"
    " FROM si_claims ";

// The states whose split counts for the year so far and the personal account.
constexpr char kCountedStates[] = "('adjudicated', 'approved', 'paid')";

std::string LineCategoryText(const ClaimLine& line) { return std::string(ToString(line.category)); }

// The claim in the claim-file format (docs/insurance.md "Claim file"), so ParseClaimJson reads it
// back; year_so_far is not the store's input (it is computed), so it is written as zeros.
std::string ClaimToJson(const Claim& claim) {
  json lines = json::array();
  for (const auto& line : claim.lines) {
    json entry = {{"code", line.code},
                  {"description", line.description},
                  {"category", LineCategoryText(line)},
                  {"amount_fen", line.amount_fen}};
    if (line.category == CatalogueCategory::kPartlyCovered) entry["self_pay_bp"] = line.self_pay_bp;
    lines.push_back(entry);
  }
  json document = {{"claim_id", claim.claim_id},
                   {"person_id", claim.person_id},
                   {"category", ToString(claim.category)},
                   {"age", claim.age},
                   {"facility_grade", static_cast<int>(claim.grade)},
                   {"kind", ToString(claim.kind)},
                   {"admission", claim.admission.ToString()},
                   {"discharge", claim.discharge.ToString()},
                   {"diagnosis_icd10", claim.diagnosis_icd10},
                   {"lines", lines},
                   {"year_so_far",
                    {{"eligible_on_service_date", true},
                     {"admissions_adjudicated", 0},
                     {"pooled_fund_paid_fen", 0},
                     {"personal_account_balance_fen", 0}}}};
  return document.dump();
}

std::optional<Payer> ParsePayer(std::string_view text) {
  if (text == "pooled_fund") return Payer::kPooledFund;
  if (text == "personal_account") return Payer::kPersonalAccount;
  if (text == "self_pay") return Payer::kSelfPay;
  return std::nullopt;
}

// AdjudicationToJson read back (the store wrote it, so it is trusted to have its shape).
std::optional<Adjudication> AdjudicationFromJson(const std::string& text) {
  const json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return std::nullopt;
  Adjudication a;
  a.state = ParseClaimState(doc.value("state", "")).value_or(ClaimState::kRejected);
  a.reasons = doc.value("reasons", std::vector<std::string>{});
  a.total_billed_fen = doc.value("total_billed_fen", Fen{0});
  a.pooled_fund_fen = doc.value("pooled_fund_fen", Fen{0});
  a.personal_account_fen = doc.value("personal_account_fen", Fen{0});
  a.self_pay_fen = doc.value("self_pay_fen", Fen{0});
  a.deductible_fen = doc.value("deductible_fen", Fen{0});
  a.copay_fen = doc.value("copay_fen", Fen{0});
  a.not_covered_fen = doc.value("not_covered_fen", Fen{0});
  a.partly_covered_self_pay_fen = doc.value("partly_covered_self_pay_fen", Fen{0});
  a.above_cap_fen = doc.value("above_cap_fen", Fen{0});
  a.cap_reached = doc.value("cap_reached", false);
  if (doc.contains("steps") && doc["steps"].is_array()) {
    for (const auto& s : doc["steps"]) {
      ExplanationStep step;
      step.line = s.value("line", -1);
      step.rule = s.value("rule", "");
      step.detail = s.value("detail", "");
      step.amount_fen = s.value("amount_fen", Fen{0});
      step.payer = ParsePayer(s.value("payer", "")).value_or(Payer::kSelfPay);
      a.steps.push_back(std::move(step));
    }
  }
  return a;
}

std::string ReasonsToJson(const std::vector<std::string>& reasons) { return json(reasons).dump(); }

std::vector<std::string> ReasonsFromJson(const std::string& text) {
  const json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_array()) return {};
  std::vector<std::string> reasons;
  for (const auto& r : doc) {
    if (r.is_string()) reasons.push_back(r.get<std::string>());
  }
  return reasons;
}

StoredClaim ClaimFromRow(const store::Row& row) {
  StoredClaim c;
  c.id = row.Int("id");
  c.facility = row.Text("facility");
  c.state = ParseClaimState(row.Text("state")).value_or(ClaimState::kRejected);
  if (auto file = ParseClaimJson(row.Text("claim_json")); file.ok()) c.claim = file->claim;
  if (auto text = row.OptionalText("adjudication_json"))
    c.adjudication = AdjudicationFromJson(*text);
  c.reasons = ReasonsFromJson(row.Text("reasons"));
  c.decided_by = row.Text("decided_by");
  c.submitted_at_us = row.Int("submitted_at_us");
  c.paid_at_us = row.OptionalInt("paid_at_us");
  if (auto asn = row.OptionalText("card_asn")) {
    c.card_payment = CardPayment{.asn = *asn,
                                 .offline_serial = static_cast<std::uint16_t>(
                                     row.OptionalInt("card_offline_serial").value_or(0)),
                                 .terminal_id = row.OptionalText("card_terminal").value_or(""),
                                 .amount_fen = row.OptionalInt("card_amount").value_or(0)};
  }
  return c;
}

bool IsDigits(std::string_view text, std::size_t length) {
  return text.size() == length &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool IsTerminalId(std::string_view text) {
  return text.size() == 8 && std::all_of(text.begin(), text.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
         });
}

bool IsOfficerName(std::string_view name) {
  if (name.empty() || name.size() > 100) return false;
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7F) return false;
  }
  return true;
}

ServiceResult<StoredClaim> NotFound(std::int64_t id) {
  return MakeServiceError(ErrorCode::kNotFound, "id: no claim " + std::to_string(id), "id");
}

ServiceResult<StoredClaim> WrongState(const StoredClaim& claim, std::string_view step) {
  return MakeServiceError(ErrorCode::kUnprocessable,
                          "state: claim " + std::to_string(claim.id) + " is " +
                              std::string(ToString(claim.state)) + "; it cannot be " +
                              std::string(step),
                          "state");
}

store::DbResult<std::optional<StoredClaim>> LoadClaim(store::Connection& c, std::int64_t id) {
  auto rows = c.Query(std::string(kClaimColumns) + "WHERE id = ?", {id});
  if (!rows.ok()) return rows.error();
  if (rows->empty()) return std::optional<StoredClaim>{};
  return std::optional<StoredClaim>(ClaimFromRow((*rows)[0]));
}

// The claim a state change works on; none (and `refused` says not found) for an unknown id.
store::DbResult<std::optional<StoredClaim>> LoadClaimToChange(
    store::Connection& c, std::int64_t id, std::optional<access::ServiceError>& refused) {
  auto loaded = LoadClaim(c, id);
  if (loaded.ok() && !loaded->has_value()) refused = NotFound(id).error();
  return loaded;
}

// The month (YYYY-MM) of a time in microseconds since the epoch, UTC.
std::string MonthOfTime(std::int64_t us) {
  const std::chrono::sys_days day{std::chrono::floor<std::chrono::days>(
      std::chrono::sys_time<std::chrono::microseconds>(std::chrono::microseconds(us)))};
  const std::chrono::year_month_day ymd{day};
  return MonthText({static_cast<int>(ymd.year()), static_cast<int>(unsigned{ymd.month()})});
}

// Sum of a column over the person's counted claims, except `except_id`.
constexpr char kYearSoFarSql[] =
    "SELECT COALESCE(CAST(SUM(CASE WHEN kind = 'inpatient' THEN 1 ELSE 0 END) AS BIGINT), 0),"
    " COALESCE(CAST(SUM(pooled_fund) AS BIGINT), 0) FROM si_claims"
    " WHERE person_id = ? AND id <> ? AND admission >= ? AND admission <= ? AND state IN ";

store::DbResult<Fen> BalanceOf(store::Connection& c, std::string_view person,
                               std::int64_t except_id) {
  auto allocated = c.Query(
      "SELECT COALESCE(CAST(SUM(personal_account_fen) AS BIGINT), 0) FROM si_bill_lines"
      " WHERE ssn = ?",
      {person});
  if (!allocated.ok()) return allocated.error();
  auto spent =
      c.Query(std::string("SELECT COALESCE(CAST(SUM(personal_account) AS BIGINT), 0)"
                          " FROM si_claims WHERE person_id = ? AND id <> ? AND state IN ") +
                  kCountedStates,
              {person, except_id});
  if (!spent.ok()) return spent.error();
  return (*allocated)[0].Int(0) - (*spent)[0].Int(0);
}

}  // namespace

std::optional<ClaimState> ParseClaimState(std::string_view text) {
  for (auto state : {ClaimState::kSubmitted, ClaimState::kAdjudicated, ClaimState::kApproved,
                     ClaimState::kPaid, ClaimState::kRejected}) {
    if (ToString(state) == text) return state;
  }
  return std::nullopt;
}

bool IsFacilityCode(std::string_view code) {
  if (code.empty() || code.size() > 20) return false;
  for (char c : code) {
    const bool ok =
        (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '-';
    if (!ok) return false;
  }
  return true;
}

ClaimStore::ClaimStore(store::Connection& connection, const PolicyBook& policies, Options options)
    : connection_(connection), policies_(policies), options_(std::move(options)) {}

std::int64_t ClaimStore::Now() const {
  if (options_.clock_us) return options_.clock_us();
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

ServiceResult<StoredClaim> ClaimStore::Submit(std::string_view facility, const Claim& claim) {
  if (!IsFacilityCode(facility)) {
    return MakeServiceError(ErrorCode::kInvalid, "facility: 1 to 20 letters, digits or '-'",
                            "facility");
  }
  if (claim.claim_id.empty() || claim.claim_id.size() > 64) {
    return MakeServiceError(ErrorCode::kInvalid, "claim_id: 1 to 64 characters", "claim_id");
  }
  if (auto problems = ClaimProblems(claim); !problems.empty()) {
    std::string message;
    for (const auto& p : problems) message += (message.empty() ? "" : "; ") + p;
    return MakeServiceError(ErrorCode::kInvalid, message, "claim");
  }
  std::optional<access::ServiceError> refused;
  std::int64_t id = 0;
  const std::int64_t now = Now();
  auto status = store::RunTransaction(
      connection_, store::TransactionMode::kWrite, [&](store::Connection& c) -> store::DbStatus {
        refused.reset();
        auto existing = c.Query("SELECT id FROM si_claims WHERE facility = ? AND claim_number = ?",
                                {facility, claim.claim_id});
        if (!existing.ok()) return existing.error();
        if (!existing->empty()) {
          refused = MakeServiceError(ErrorCode::kConflict,
                                     "claim_id: facility " + std::string(facility) +
                                         " submitted claim " + claim.claim_id + " before (id " +
                                         std::to_string((*existing)[0].Int(0)) + ")",
                                     "claim_id");
          return Done{};
        }
        auto inserted = c.InsertReturningId(
            "INSERT INTO si_claims (facility, claim_number, person_id, admission, kind, state,"
            " claim_json, total_billed, reasons, decided_by, submitted_at_us)"
            " VALUES (?, ?, ?, ?, ?, 'submitted', ?, ?, '[]', '', ?)",
            "id",
            {facility, claim.claim_id, claim.person_id, claim.admission.ToString(),
             std::string(ToString(claim.kind)), ClaimToJson(claim), claim.TotalBilledFen(), now});
        if (!inserted.ok()) return inserted.error();
        id = inserted->value_or(0);
        return Done{};
      });
  if (!status.ok()) return StoreError(status.error());
  if (refused) return *refused;
  return Find(id);
}

ServiceResult<StoredClaim> ClaimStore::Adjudicate(std::int64_t id,
                                                  std::optional<Fen> card_balance_fen) {
  if (card_balance_fen && *card_balance_fen < 0) {
    return MakeServiceError(ErrorCode::kInvalid, "card_balance_fen: must not be negative",
                            "card_balance_fen");
  }
  std::optional<access::ServiceError> refused;
  const std::int64_t now = Now();
  auto status = store::RunTransaction(
      connection_, store::TransactionMode::kWrite, [&](store::Connection& c) -> store::DbStatus {
        refused.reset();
        auto loaded = LoadClaimToChange(c, id, refused);
        if (!loaded.ok()) return loaded.error();
        if (!loaded->has_value()) return Done{};  // refused: not found
        StoredClaim stored = **loaded;
        if (stored.state != ClaimState::kSubmitted) {
          refused = WrongState(stored, "adjudicated").error();
          return Done{};
        }
        Claim claim = stored.claim;
        Registry registry(c);
        auto person = registry.PersonOn(claim.person_id, claim.admission);
        if (!person.ok()) {
          if (person.error().code != ErrorCode::kNotFound) {
            return store::MakeDbError(store::ErrorKind::kOther, person.error().message);
          }
          refused = MakeServiceError(
              ErrorCode::kNotFound, "person_id: no insured person " + claim.person_id, "person_id");
          return Done{};
        }
        YearSoFar year;
        std::string unit_code;
        if (!person->has_value()) {
          year.eligible_on_service_date = false;
          year.ineligible_reason = "not insured yet on " + claim.admission.ToString();
          // Any state of the person tells the area for the policy lookup below.
          auto history = registry.History(claim.person_id);
          if (history.ok() && !history->empty()) unit_code = history->front().unit_code;
        } else {
          const PersonState& state = **person;
          claim.category = state.category;
          claim.age = AgeOn(state.birth_date, claim.admission);
          unit_code = state.unit_code;
          if (state.status != PersonStatus::kActive) {
            year.eligible_on_service_date = false;
            year.ineligible_reason = "the person is " + std::string(ToString(state.status)) +
                                     " since " + state.effective.ToString() +
                                     (state.note.empty() ? "" : " (" + state.note + ")");
          }
        }
        auto unit = registry.FindUnit(unit_code);
        if (!unit.ok()) {
          refused = unit.error();
          return Done{};
        }
        auto policy = policies_.For(unit->area, claim.admission);
        if (!policy.ok()) {
          refused =
              MakeServiceError(ErrorCode::kUnprocessable,
                               "admission: no policy in force in area " + unit->area + " on " +
                                   claim.admission.ToString() + ": " + policy.error().message,
                               "admission");
          return Done{};
        }
        const int year_number = claim.admission.year;
        char first[16], last[16];
        std::snprintf(first, sizeof first, "%04d-01-01", year_number);
        std::snprintf(last, sizeof last, "%04d-12-31", year_number);
        auto so_far = c.Query(std::string(kYearSoFarSql) + kCountedStates,
                              {claim.person_id, id, first, last});
        if (!so_far.ok()) return so_far.error();
        year.admissions_adjudicated = static_cast<int>((*so_far)[0].Int(0));
        year.pooled_fund_paid_fen = (*so_far)[0].Int(1);
        auto balance = BalanceOf(c, claim.person_id, id);
        if (!balance.ok()) return balance.error();
        year.personal_account_balance_fen = std::max<Fen>(*balance, 0);
        // What the card holds is what the patient can pay from at the facility's POS.
        if (card_balance_fen) {
          year.personal_account_balance_fen =
              std::min(year.personal_account_balance_fen, *card_balance_fen);
        }

        const Adjudication result = insurance::Adjudicate(**policy, claim, year);
        const bool rejected = result.state == ClaimState::kRejected;
        auto updated = c.Execute(
            "UPDATE si_claims SET state = ?, pooled_fund = ?, personal_account = ?, self_pay = ?,"
            " adjudication_json = ?, reasons = ?, adjudicated_at_us = ? WHERE id = ?",
            {rejected ? "rejected" : "adjudicated", result.pooled_fund_fen,
             result.personal_account_fen, result.self_pay_fen, AdjudicationToJson(result),
             ReasonsToJson(result.reasons), now, id});
        if (!updated.ok()) return updated.error();
        return Done{};
      });
  if (!status.ok()) return StoreError(status.error());
  if (refused) return *refused;
  return Find(id);
}

ServiceResult<StoredClaim> ClaimStore::Approve(std::int64_t id, std::string_view officer) {
  if (!IsOfficerName(officer)) {
    return MakeServiceError(ErrorCode::kInvalid, "officer: 1 to 100 characters", "officer");
  }
  std::optional<access::ServiceError> refused;
  const std::int64_t now = Now();
  auto status = store::RunTransaction(
      connection_, store::TransactionMode::kWrite, [&](store::Connection& c) -> store::DbStatus {
        refused.reset();
        auto loaded = LoadClaimToChange(c, id, refused);
        if (!loaded.ok()) return loaded.error();
        if (!loaded->has_value()) return Done{};  // refused: not found
        if ((*loaded)->state != ClaimState::kAdjudicated) {
          refused = WrongState(**loaded, "approved").error();
          return Done{};
        }
        auto updated = c.Execute(
            "UPDATE si_claims SET state = 'approved', decided_by = ?, decided_at_us = ?"
            " WHERE id = ?",
            {officer, now, id});
        if (!updated.ok()) return updated.error();
        return Done{};
      });
  if (!status.ok()) return StoreError(status.error());
  if (refused) return *refused;
  return Find(id);
}

ServiceResult<StoredClaim> ClaimStore::Reject(std::int64_t id, std::string_view officer,
                                              std::string_view reason) {
  if (!IsOfficerName(officer)) {
    return MakeServiceError(ErrorCode::kInvalid, "officer: 1 to 100 characters", "officer");
  }
  if (!IsOfficerName(reason)) {
    return MakeServiceError(ErrorCode::kInvalid, "reason: 1 to 100 characters", "reason");
  }
  std::optional<access::ServiceError> refused;
  const std::int64_t now = Now();
  auto status = store::RunTransaction(
      connection_, store::TransactionMode::kWrite, [&](store::Connection& c) -> store::DbStatus {
        refused.reset();
        auto loaded = LoadClaimToChange(c, id, refused);
        if (!loaded.ok()) return loaded.error();
        if (!loaded->has_value()) return Done{};  // refused: not found
        const auto state = (*loaded)->state;
        if (state != ClaimState::kSubmitted && state != ClaimState::kAdjudicated) {
          refused = WrongState(**loaded, "rejected").error();
          return Done{};
        }
        // A rejected claim's split no longer counts for the year or the personal account.
        auto updated = c.Execute(
            "UPDATE si_claims SET state = 'rejected', reasons = ?, decided_by = ?,"
            " decided_at_us = ? WHERE id = ?",
            {ReasonsToJson({std::string(reason)}), officer, now, id});
        if (!updated.ok()) return updated.error();
        return Done{};
      });
  if (!status.ok()) return StoreError(status.error());
  if (refused) return *refused;
  return Find(id);
}

ServiceResult<StoredClaim> ClaimStore::Pay(std::int64_t id) {
  std::optional<access::ServiceError> refused;
  const std::int64_t now = Now();
  auto status = store::RunTransaction(
      connection_, store::TransactionMode::kWrite, [&](store::Connection& c) -> store::DbStatus {
        refused.reset();
        auto loaded = LoadClaimToChange(c, id, refused);
        if (!loaded.ok()) return loaded.error();
        if (!loaded->has_value()) return Done{};  // refused: not found
        const StoredClaim& stored = **loaded;
        if (stored.state == ClaimState::kPaid) return Done{};  // paid before: nothing again
        if (stored.state != ClaimState::kApproved) {
          refused = WrongState(stored, "paid").error();
          return Done{};
        }
        const std::string payable = "facility_payable/" + stored.facility;
        const std::string prefix = "claim/" + std::to_string(id) + "/";
        const std::string month = MonthOfTime(now);
        auto post = [&](const std::string& entry, const char* debit, Fen amount,
                        const char* kind) -> store::DbStatus {
          if (amount <= 0) return Done{};
          // The entry id is the idempotency key: a claim's part is booked once, ever.
          auto inserted = c.Execute(
              "INSERT INTO si_book_entries (id, debit, credit, amount, kind, month, recorded_at_us)"
              " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
              {prefix + entry, debit, payable, amount, kind, month, now});
          if (!inserted.ok()) return inserted.error();
          return Done{};
        };
        // Only the pooled fund pays from the agency's books. The personal-account share was
        // allocated to the person's medical account at the bank already: the cardholder pays it
        // there (the card at the facility's POS), so it stays on the claim as a record.
        const Fen pooled = stored.adjudication ? stored.adjudication->pooled_fund_fen : 0;
        if (auto s = post("pooled_fund", "pooled_fund", pooled, "claim_pooled_fund"); !s.ok()) {
          return s;
        }
        auto updated = c.Execute("UPDATE si_claims SET state = 'paid', paid_at_us = ? WHERE id = ?",
                                 {now, id});
        if (!updated.ok()) return updated.error();
        return Done{};
      });
  if (!status.ok()) return StoreError(status.error());
  if (refused) return *refused;
  return Find(id);
}

std::string CardPayment::Reference() const { return asn + "/ED/" + std::to_string(offline_serial); }

ServiceResult<StoredClaim> ClaimStore::RecordCardPayment(std::int64_t id,
                                                         const CardPayment& payment) {
  if (!IsDigits(payment.asn, 20)) {
    return MakeServiceError(ErrorCode::kInvalid, "asn: 20 digits", "asn");
  }
  if (!IsTerminalId(payment.terminal_id)) {
    return MakeServiceError(ErrorCode::kInvalid, "terminal_id: 8 letters or digits", "terminal_id");
  }
  std::optional<access::ServiceError> refused;
  auto status = store::RunTransaction(
      connection_, store::TransactionMode::kWrite, [&](store::Connection& c) -> store::DbStatus {
        refused.reset();
        auto loaded = LoadClaimToChange(c, id, refused);
        if (!loaded.ok()) return loaded.error();
        if (!loaded->has_value()) return Done{};  // refused: not found
        const StoredClaim& stored = **loaded;
        if (stored.state != ClaimState::kAdjudicated && stored.state != ClaimState::kApproved &&
            stored.state != ClaimState::kPaid) {
          refused = WrongState(stored, "paid by card").error();
          return Done{};
        }
        if (stored.card_payment) {
          if (*stored.card_payment != payment) {
            refused = MakeServiceError(ErrorCode::kConflict,
                                       "claim " + std::to_string(id) + " was paid by card " +
                                           stored.card_payment->Reference() + " before",
                                       "card_payment");
          }
          return Done{};
        }
        const Fen share = stored.adjudication ? stored.adjudication->personal_account_fen : 0;
        if (share <= 0 || payment.amount_fen != share) {
          refused = MakeServiceError(ErrorCode::kInvalid,
                                     "amount_fen: " + std::to_string(payment.amount_fen) +
                                         ", the claim's personal-account share is " +
                                         std::to_string(share),
                                     "amount_fen");
          return Done{};
        }
        auto other =
            c.Query("SELECT id FROM si_claims WHERE card_asn = ? AND card_offline_serial = ?",
                    {payment.asn, std::int64_t{payment.offline_serial}});
        if (!other.ok()) return other.error();
        if (!other->empty()) {
          refused = MakeServiceError(ErrorCode::kConflict,
                                     "card purchase " + payment.Reference() + " paid claim " +
                                         std::to_string((*other)[0].Int(0)),
                                     "card_payment");
          return Done{};
        }
        auto updated = c.Execute(
            "UPDATE si_claims SET card_asn = ?, card_offline_serial = ?, card_terminal = ?,"
            " card_amount = ? WHERE id = ?",
            {payment.asn, std::int64_t{payment.offline_serial}, payment.terminal_id,
             payment.amount_fen, id});
        if (!updated.ok()) return updated.error();
        return Done{};
      });
  if (!status.ok()) return StoreError(status.error());
  if (refused) return *refused;
  return Find(id);
}

ServiceResult<StoredClaim> ClaimStore::Find(std::int64_t id) {
  auto loaded = LoadClaim(connection_, id);
  if (!loaded.ok()) return StoreError(loaded.error());
  if (!loaded->has_value()) return NotFound(id);
  return **loaded;
}

ServiceResult<std::vector<StoredClaim>> ClaimStore::List(std::optional<ClaimState> state,
                                                         std::string_view person) {
  std::string sql = std::string(kClaimColumns) + "WHERE 1 = 1";
  store::Params params;
  if (state) {
    sql += " AND state = ?";
    params.emplace_back(std::string(ToString(*state)));
  }
  if (!person.empty()) {
    sql += " AND person_id = ?";
    params.emplace_back(person);
  }
  auto rows = connection_.Query(sql + " ORDER BY id", params);
  if (!rows.ok()) return StoreError(rows.error());
  std::vector<StoredClaim> claims;
  for (const auto& row : *rows) claims.push_back(ClaimFromRow(row));
  return claims;
}

ServiceResult<Fen> ClaimStore::PersonalAccountBalance(std::string_view person) {
  auto balance = BalanceOf(connection_, person, 0);
  if (!balance.ok()) return StoreError(balance.error());
  return *balance;
}

}  // namespace medcard::insurance
