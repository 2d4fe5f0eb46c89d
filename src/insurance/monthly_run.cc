// The monthly run, payments and the agency's books (monthly_run.h).
#include "insurance/monthly_run.h"

#include <chrono>
#include <map>

namespace medcard::insurance {

using access::ErrorCode;
using access::MakeServiceError;
using store::Done;

namespace {

std::int64_t SystemNowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::int64_t NowUs(const std::function<std::int64_t()>& clock) {
  return clock ? clock() : SystemNowUs();
}

bool IsValidMonth(const YearMonth& m) {
  return m.year >= 1900 && m.year <= 9999 && m.month >= 1 && m.month <= 12;
}

// PostgreSQL's SUM(BIGINT) is NUMERIC: cast back so both engines answer an integer.
constexpr char kLineTotals[] =
    "SELECT COUNT(*), COUNT(DISTINCT unit_code), COALESCE(CAST(SUM(employer_fen) AS BIGINT), 0),"
    " COALESCE(CAST(SUM(employee_fen) AS BIGINT), 0),"
    " COALESCE(CAST(SUM(personal_account_fen) AS BIGINT), 0),"
    " COALESCE(CAST(SUM(retiree_allowance_fen) AS BIGINT), 0) FROM si_bill_lines WHERE month = ?";

store::DbStatus ReadTotals(store::Connection& c, const std::string& month, MonthlyRunSummary& s) {
  auto rows = c.Query(kLineTotals, {month});
  if (!rows.ok()) return rows.error();
  const auto& r = (*rows)[0];
  s.people = r.Int(0);
  s.units = r.Int(1);
  s.employer_fen = r.Int(2);
  s.employee_fen = r.Int(3);
  s.personal_account_fen = r.Int(4);
  s.retiree_allowance_fen = r.Int(5);
  s.pooled_fund_fen = s.employer_fen + s.employee_fen - s.personal_account_fen;
  return Done{};
}

// The people active on `first_day` after `after_ssn`, with their unit's area: the state of the
// latest event effective on or before the day (ids grow in effective order per person).
constexpr char kChunkPeople[] =
    "SELECT e.ssn, p.birth_date, e.unit_code, u.area, e.wage_base, e.category"
    " FROM si_person_events e JOIN si_people p ON p.ssn = e.ssn"
    " JOIN si_units u ON u.code = e.unit_code"
    " WHERE e.ssn > ? AND e.status = 'active' AND e.id = (SELECT MAX(x.id) FROM si_person_events x"
    " WHERE x.ssn = e.ssn AND x.effective <= ?) ORDER BY e.ssn LIMIT ?";

// One chunk. Sets *done when no one is left; returns a refusal (no policy, bad data) in *refused.
store::DbStatus RunChunk(store::Connection& c, const PolicyBook& policies, const YearMonth& month,
                         int chunk_size, bool* done, std::optional<access::ServiceError>* refused) {
  const std::string month_text = MonthText(month);
  auto run = c.Query("SELECT state, progress_ssn FROM si_month_runs WHERE month = ?", {month_text});
  if (!run.ok()) return run.error();
  if (run->empty() || (*run)[0].Text(0) != "running") {
    *done = true;
    return Done{};
  }
  const std::string progress = (*run)[0].Text(1);
  auto people = c.Query(kChunkPeople, {progress, month.FirstDay().ToString(), chunk_size});
  if (!people.ok()) return people.error();
  if (people->empty()) {
    *done = true;
    return Done{};
  }
  std::map<std::string, const Policy*> policy_of_area;
  store::Params values;
  values.reserve(people->size() * 10);
  for (const auto& row : *people) {
    const std::string& ssn = row.Text(0);
    const std::string& area = row.Text(3);
    auto found = policy_of_area.find(area);
    if (found == policy_of_area.end()) {
      auto policy = policies.For(area, month.FirstDay());
      if (!policy.ok()) {
        *refused = MakeServiceError(ErrorCode::kUnprocessable,
                                    "no policy in force in area " + area + " on " +
                                        month.FirstDay().ToString() + " (person " + ssn +
                                        "): " + policy.error().message,
                                    "policy");
        return Done{};
      }
      found = policy_of_area.emplace(area, *policy).first;
    }
    ContributingPerson person;
    person.category = ParsePersonCategory(row.Text(5)).value_or(PersonCategory::kEmployee);
    person.birth_date = ParseIsoDate(row.Text(1)).value_or(Date{});
    person.monthly_wage_fen = row.Int(4);
    auto computed = ComputeMonthlyContribution(*found->second, person, month);
    if (!computed.ok()) {
      *refused = MakeServiceError(ErrorCode::kUnprocessable,
                                  "person " + ssn + ": " + computed.error().message, "ssn");
      return Done{};
    }
    const MonthlyContribution& m = *computed;
    // What the contributions pay into the personal account can never exceed the contributions:
    // otherwise the pooled fund would pay for an employee's allocation.
    if (m.personal_account_fen - m.retiree_allowance_fen > m.employer_fen + m.employee_fen ||
        m.retiree_allowance_fen < 0 || m.personal_account_fen < m.retiree_allowance_fen) {
      *refused = MakeServiceError(ErrorCode::kInternal,
                                  "person " + ssn + ": the rules allocate more than was paid");
      return Done{};
    }
    values.insert(values.end(),
                  {month_text, ssn, row.Text(2), row.Text(5), m.age, m.base_fen, m.employer_fen,
                   m.employee_fen, m.personal_account_fen, m.retiree_allowance_fen});
  }
  auto inserted = store::ExecuteRows(
      c,
      "INSERT INTO si_bill_lines (month, ssn, unit_code, category, age, base_fen, employer_fen,"
      " employee_fen, personal_account_fen, retiree_allowance_fen) VALUES ",
      "(?, ?, ?, ?, CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT),"
      " CAST(? AS BIGINT), CAST(? AS BIGINT))",
      10, std::move(values));
  if (!inserted.ok()) return inserted.error();
  auto progressed = c.Execute(
      "UPDATE si_month_runs SET progress_ssn = ?, chunks = chunks + 1, people = people + ?"
      " WHERE month = ?",
      {people->rows.back().Text(0), static_cast<std::int64_t>(people->size()), month_text});
  if (!progressed.ok()) return progressed.error();
  return Done{};
}

// The unit bills and their book entries from the lines; the run is finished.
store::DbStatus FinishRun(store::Connection& c, const YearMonth& month, std::int64_t now) {
  const std::string m = MonthText(month);
  auto state = c.Query("SELECT state FROM si_month_runs WHERE month = ?", {m});
  if (!state.ok()) return state.error();
  if (state->empty() || (*state)[0].Text(0) != "running") return Done{};
  auto bills = c.Execute(
      "INSERT INTO si_unit_bills (month, unit_code, people, employer_fen, employee_fen,"
      " personal_account_fen, retiree_allowance_fen)"
      " SELECT month, unit_code, COUNT(*), CAST(SUM(employer_fen) AS BIGINT),"
      " CAST(SUM(employee_fen) AS BIGINT), CAST(SUM(personal_account_fen) AS BIGINT),"
      " CAST(SUM(retiree_allowance_fen) AS BIGINT) FROM si_bill_lines WHERE month = ?"
      " GROUP BY month, unit_code",
      {m});
  if (!bills.ok()) return bills.error();
  auto rows = c.Query(
      "SELECT unit_code, employer_fen + employee_fen, personal_account_fen, retiree_allowance_fen"
      " FROM si_unit_bills WHERE month = ? ORDER BY unit_code",
      {m});
  if (!rows.ok()) return rows.error();
  store::Params entries;
  auto add = [&](std::string id, std::string debit, std::string credit, Fen amount,
                 const char* kind) {
    if (amount <= 0) return;
    entries.insert(entries.end(),
                   {std::move(id), std::move(debit), std::move(credit), amount, kind, m, now});
  };
  for (const auto& r : *rows) {
    const std::string unit = r.Text(0);
    const Fen contributions = r.Int(1), allocation = r.Int(2), allowance = r.Int(3);
    const Fen paid_by_contributions = allocation - allowance;
    const std::string prefix = "bill/" + m + "/" + unit + "/";
    add(prefix + "personal", "receivable/" + unit, "personal_accounts", paid_by_contributions,
        "allocation");
    add(prefix + "pool", "receivable/" + unit, "pooled_fund", contributions - paid_by_contributions,
        "contribution");
    add(prefix + "retiree", "pooled_fund", "personal_accounts", allowance, "retiree_allowance");
  }
  auto written = store::ExecuteRows(c,
                                    "INSERT INTO si_book_entries (id, debit, credit, amount, kind, "
                                    "month, recorded_at_us) VALUES ",
                                    "(?, ?, ?, CAST(? AS BIGINT), ?, ?, CAST(? AS BIGINT))", 7,
                                    std::move(entries));
  if (!written.ok()) return written.error();
  auto finished = c.Execute(
      "UPDATE si_month_runs SET state = 'finished', finished_at_us = ? WHERE month = ?", {now, m});
  if (!finished.ok()) return finished.error();
  return Done{};
}

}  // namespace

ServiceResult<MonthlyRunSummary> RunMonth(store::Connection& connection, const PolicyBook& policies,
                                          const YearMonth& month,
                                          const MonthlyRunOptions& options) {
  if (!IsValidMonth(month)) {
    return MakeServiceError(ErrorCode::kInvalid, "month: not a month", "month");
  }
  if (options.chunk_size < 1) {
    return MakeServiceError(ErrorCode::kInvalid, "chunk_size: at least 1", "chunk_size");
  }
  const std::string m = MonthText(month);
  MonthlyRunSummary summary;
  summary.month = month;
  auto started = store::RunTransaction(
      connection, store::TransactionMode::kWrite, [&](store::Connection& c) -> store::DbStatus {
        auto run = c.Query("SELECT state FROM si_month_runs WHERE month = ?", {m});
        if (!run.ok()) return run.error();
        summary.already_finished = !run->empty() && (*run)[0].Text(0) == "finished";
        summary.resumed = !run->empty() && (*run)[0].Text(0) == "running";
        if (!run->empty()) return Done{};
        auto inserted = c.Execute(
            "INSERT INTO si_month_runs (month, state, progress_ssn, chunks, people, started_at_us)"
            " VALUES (?, 'running', '', 0, 0, ?)",
            {m, NowUs(options.clock_us)});
        if (!inserted.ok()) return inserted.error();
        return Done{};
      });
  if (!started.ok()) return StoreError(started.error());

  if (!summary.already_finished) {
    for (bool done = false; !done;) {
      std::optional<access::ServiceError> refused;
      auto chunk = store::RunTransaction(
          connection, store::TransactionMode::kWrite, [&](store::Connection& c) -> store::DbStatus {
            done = false;
            refused.reset();
            auto ran = RunChunk(c, policies, month, options.chunk_size, &done, &refused);
            if (!ran.ok()) return ran;
            // A refusal must leave nothing of the chunk: fail the transaction so it rolls back.
            if (refused) return store::MakeDbError(store::ErrorKind::kOther, refused->message);
            return Done{};
          });
      if (refused) return *refused;
      if (!chunk.ok()) return StoreError(chunk.error());
      if (done) break;
      ++summary.chunks;
      if (options.after_chunk) {
        Status s = options.after_chunk(summary.chunks);
        if (!s.ok()) {
          return MakeServiceError(ErrorCode::kInternal,
                                  "monthly run " + m + " stopped after chunk " +
                                      std::to_string(summary.chunks) + ": " + s.error().message);
        }
      }
    }
    auto finished = store::RunTransaction(
        connection, store::TransactionMode::kWrite,
        [&](store::Connection& c) { return FinishRun(c, month, NowUs(options.clock_us)); });
    if (!finished.ok()) return StoreError(finished.error());
  }
  auto totals = ReadTotals(connection, m, summary);
  if (!totals.ok()) return StoreError(totals.error());
  return summary;
}

namespace {

store::DbResult<bool> MonthFinished(store::Connection& c, const std::string& month) {
  auto run = c.Query("SELECT state FROM si_month_runs WHERE month = ?", {month});
  if (!run.ok()) return run.error();
  return !run->empty() && (*run)[0].Text(0) == "finished";
}

access::ServiceError NotRun(const std::string& month) {
  return MakeServiceError(
      ErrorCode::kNotFound,
      "month: " + month + " has not been run (medcard si month run " + month + ")", "month");
}

}  // namespace

ServiceResult<std::vector<BillLine>> BillLines(store::Connection& connection,
                                               const YearMonth& month, std::string_view unit_code) {
  const std::string m = MonthText(month);
  auto finished = MonthFinished(connection, m);
  if (!finished.ok()) return StoreError(finished.error());
  if (!*finished) return NotRun(m);
  std::string sql =
      "SELECT ssn, unit_code, category, age, base_fen, employer_fen, employee_fen,"
      " personal_account_fen, retiree_allowance_fen FROM si_bill_lines WHERE month = ?";
  store::Params params{m};
  if (!unit_code.empty()) {
    sql += " AND unit_code = ?";
    params.emplace_back(unit_code);
  }
  auto rows = connection.Query(sql + " ORDER BY ssn", params);
  if (!rows.ok()) return StoreError(rows.error());
  std::vector<BillLine> lines;
  for (const auto& r : *rows) {
    lines.push_back({r.Text(0), r.Text(1),
                     ParsePersonCategory(r.Text(2)).value_or(PersonCategory::kEmployee),
                     static_cast<int>(r.Int(3)), r.Int(4), r.Int(5), r.Int(6), r.Int(7), r.Int(8)});
  }
  return lines;
}

ServiceResult<std::vector<UnitBill>> UnitBills(store::Connection& connection,
                                               const YearMonth& month) {
  const std::string m = MonthText(month);
  auto finished = MonthFinished(connection, m);
  if (!finished.ok()) return StoreError(finished.error());
  if (!*finished) return NotRun(m);
  auto rows = connection.Query(
      "SELECT b.unit_code, b.people, b.employer_fen, b.employee_fen, b.personal_account_fen,"
      " COALESCE((SELECT CAST(SUM(p.amount) AS BIGINT) FROM si_payments p"
      " WHERE p.unit_code = b.unit_code AND p.month = b.month), 0)"
      " FROM si_unit_bills b WHERE b.month = ? ORDER BY b.unit_code",
      {m});
  if (!rows.ok()) return StoreError(rows.error());
  std::vector<UnitBill> bills;
  for (const auto& r : *rows) {
    UnitBill b;
    b.unit_code = r.Text(0);
    b.month = month;
    b.people = r.Int(1);
    b.employer_fen = r.Int(2);
    b.employee_fen = r.Int(3);
    b.billed_fen = b.employer_fen + b.employee_fen;
    b.personal_account_fen = r.Int(4);
    b.paid_fen = r.Int(5);
    b.arrears_fen = b.billed_fen - b.paid_fen;
    bills.push_back(b);
  }
  return bills;
}

ServiceResult<std::int64_t> AddPayment(store::Connection& connection, const Payment& payment,
                                       std::function<std::int64_t()> clock_us) {
  if (!IsValidMonth(payment.month)) {
    return MakeServiceError(ErrorCode::kInvalid, "month: not a month", "month");
  }
  if (payment.amount_fen <= 0 || payment.amount_fen > 1'000'000'000'000'000) {
    return MakeServiceError(ErrorCode::kInvalid, "amount: more than 0, at most 10^13 yuan",
                            "amount");
  }
  if (!IsValidDate(payment.paid_on)) {
    return MakeServiceError(ErrorCode::kInvalid, "paid_on: not a date", "paid_on");
  }
  const std::string m = MonthText(payment.month);
  std::optional<access::ServiceError> refused;
  std::int64_t id = 0;
  const std::int64_t now = NowUs(clock_us);
  auto status = store::RunTransaction(
      connection, store::TransactionMode::kWrite, [&](store::Connection& c) -> store::DbStatus {
        refused.reset();
        auto unit = c.Query("SELECT code FROM si_units WHERE code = ?", {payment.unit_code});
        if (!unit.ok()) return unit.error();
        if (unit->empty()) {
          refused =
              MakeServiceError(ErrorCode::kNotFound, "unit: no unit " + payment.unit_code, "unit");
          return Done{};
        }
        auto inserted = c.InsertReturningId(
            "INSERT INTO si_payments (unit_code, month, amount, paid_on, recorded_at_us)"
            " VALUES (?, ?, ?, ?, ?)",
            "id", {payment.unit_code, m, payment.amount_fen, payment.paid_on.ToString(), now});
        if (!inserted.ok()) return inserted.error();
        id = inserted->value_or(0);
        auto entry = c.Execute(
            "INSERT INTO si_book_entries (id, debit, credit, amount, kind, month, recorded_at_us)"
            " VALUES (?, 'collections', ?, ?, 'payment', ?, ?)",
            {"payment/" + std::to_string(id), "receivable/" + payment.unit_code, payment.amount_fen,
             m, now});
        if (!entry.ok()) return entry.error();
        return Done{};
      });
  if (!status.ok()) return StoreError(status.error());
  if (refused) return *refused;
  return id;
}

ServiceResult<std::vector<BookBalance>> BookBalances(store::Connection& connection) {
  auto rows = connection.Query(
      "SELECT account, CAST(SUM(amount) AS BIGINT) FROM ("
      " SELECT credit AS account, amount FROM si_book_entries"
      " UNION ALL SELECT debit AS account, -amount AS amount FROM si_book_entries) legs"
      " GROUP BY account ORDER BY account");
  if (!rows.ok()) return StoreError(rows.error());
  std::vector<BookBalance> balances;
  for (const auto& r : *rows) balances.push_back({r.Text(0), r.Int(1)});
  return balances;
}

ServiceResult<std::vector<std::string>> CheckBooks(store::Connection& connection) {
  std::vector<std::string> problems;
  auto status = store::RunTransaction(
      connection, store::TransactionMode::kRead, [&](store::Connection& c) -> store::DbStatus {
        problems.clear();
        auto problem_rows = [&](const std::string& sql,
                                const std::string& what) -> store::DbStatus {
          auto rows = c.Query(sql);
          if (!rows.ok()) return rows.error();
          for (const auto& r : *rows) {
            std::string line = what;
            for (std::size_t i = 0; i < r.size(); ++i) line += " " + r[i].ToString();
            problems.push_back(line);
          }
          return Done{};
        };
        // Bills against their lines, per month and unit.
        auto s = problem_rows(
            "SELECT b.month, b.unit_code FROM si_unit_bills b LEFT JOIN (SELECT month, unit_code,"
            " COUNT(*) AS people, CAST(SUM(employer_fen) AS BIGINT) AS er,"
            " CAST(SUM(employee_fen) AS BIGINT) AS ee, CAST(SUM(personal_account_fen) AS BIGINT)"
            " AS pa, CAST(SUM(retiree_allowance_fen) AS BIGINT) AS ra FROM si_bill_lines"
            " GROUP BY month, unit_code) l ON l.month = b.month AND l.unit_code = b.unit_code"
            " WHERE l.people IS NULL OR l.people <> b.people OR l.er <> b.employer_fen OR"
            " l.ee <> b.employee_fen OR l.pa <> b.personal_account_fen OR"
            " l.ra <> b.retiree_allowance_fen ORDER BY b.month, b.unit_code",
            "bill differs from its lines: month, unit");
        if (!s.ok()) return s;
        // Every finished month's book entries, by kind, against its bills.
        s = problem_rows(
            "SELECT r.month, x.kind, x.expected, COALESCE(e.amount, 0) FROM si_month_runs r"
            " JOIN (SELECT month, 'allocation' AS kind,"
            "  CAST(SUM(personal_account_fen - retiree_allowance_fen) AS BIGINT) AS expected"
            "  FROM si_unit_bills GROUP BY month"
            " UNION ALL SELECT month, 'contribution', CAST(SUM(employer_fen + employee_fen"
            "  - personal_account_fen + retiree_allowance_fen) AS BIGINT) FROM si_unit_bills"
            "  GROUP BY month"
            " UNION ALL SELECT month, 'retiree_allowance',"
            "  CAST(SUM(retiree_allowance_fen) AS BIGINT) FROM si_unit_bills GROUP BY month) x"
            " ON x.month = r.month"
            " LEFT JOIN (SELECT month, kind, CAST(SUM(amount) AS BIGINT) AS amount"
            "  FROM si_book_entries GROUP BY month, kind) e ON e.month = x.month AND e.kind = "
            "x.kind"
            " WHERE r.state = 'finished' AND x.expected <> COALESCE(e.amount, 0)"
            " ORDER BY r.month, x.kind",
            "books differ from the bills: month, kind, billed, booked");
        if (!s.ok()) return s;
        // The pooled fund and the personal accounts never draw on each other.
        s = problem_rows(
            "SELECT id, debit, credit, amount FROM si_book_entries WHERE"
            " (debit = 'pooled_fund' AND NOT (kind = 'retiree_allowance' AND"
            "  credit = 'personal_accounts') AND NOT (kind = 'claim_pooled_fund' AND"
            "  credit LIKE 'facility_payable/%'))"
            " OR (credit = 'pooled_fund' AND kind <> 'contribution')"
            " OR (credit = 'personal_accounts' AND kind NOT IN"
            "  ('allocation', 'retiree_allowance', 'allocation_refused'))"
            " OR (debit = 'personal_accounts' AND NOT (kind = 'allocation_sent' AND"
            "  credit = 'bank_allocations')) ORDER BY id",
            "entry crosses the pooled fund and the personal accounts: id, debit, credit, amount");
        if (!s.ok()) return s;
        s = problem_rows(
            "SELECT balance FROM (SELECT COALESCE((SELECT CAST(SUM(amount) AS BIGINT)"
            " FROM si_book_entries WHERE credit = 'personal_accounts'), 0) -"
            " COALESCE((SELECT CAST(SUM(amount) AS BIGINT) FROM si_book_entries"
            " WHERE debit = 'personal_accounts'), 0) AS balance) b WHERE balance < 0",
            "personal accounts overdrawn: balance");
        if (!s.ok()) return s;
        // Batches: lines add up, and a month's batch is the month's allocation.
        s = problem_rows(
            "SELECT b.batch_id, b.line_count, b.total_fen, COUNT(l.line_no),"
            " COALESCE(CAST(SUM(l.amount) AS BIGINT), 0) FROM si_batches b"
            " LEFT JOIN si_batch_lines l ON l.batch_id = b.batch_id GROUP BY b.batch_id,"
            " b.line_count, b.total_fen HAVING b.line_count <> COUNT(l.line_no) OR"
            " b.total_fen <> COALESCE(CAST(SUM(l.amount) AS BIGINT), 0) ORDER BY b.batch_id",
            "batch lines differ from its totals: batch, count, total, lines, sum");
        if (!s.ok()) return s;
        s = problem_rows(
            "SELECT b.batch_id, b.total_fen, COALESCE(x.allocated, 0) FROM si_batches b LEFT JOIN"
            " (SELECT month, CAST(SUM(personal_account_fen) AS BIGINT) AS allocated"
            "  FROM si_unit_bills GROUP BY month) x ON x.month = b.month"
            " WHERE b.total_fen <> COALESCE(x.allocated, 0) ORDER BY b.batch_id",
            "batch differs from the month's allocation: batch, total, allocated");
        if (!s.ok()) return s;
        s = problem_rows(
            "SELECT x.kind, x.booked, x.lines FROM (SELECT 'allocation_sent' AS kind,"
            " COALESCE((SELECT CAST(SUM(amount) AS BIGINT) FROM si_book_entries"
            "  WHERE kind = 'allocation_sent'), 0) AS booked,"
            " COALESCE((SELECT CAST(SUM(total_fen) AS BIGINT) FROM si_batches), 0) AS lines"
            " UNION ALL SELECT 'allocation_refused', COALESCE((SELECT CAST(SUM(amount) AS BIGINT)"
            "  FROM si_book_entries WHERE kind = 'allocation_refused'), 0),"
            " COALESCE((SELECT CAST(SUM(amount) AS BIGINT) FROM si_batch_lines"
            "  WHERE outcome = 'refused'), 0)) x WHERE x.booked <> x.lines",
            "batch entries differ from the batches: kind, booked, lines");
        if (!s.ok()) return s;
        return Done{};
      });
  if (!status.ok()) return StoreError(status.error());
  return problems;
}

}  // namespace medcard::insurance
