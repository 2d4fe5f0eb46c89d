// medcard si init | unit | person | month | payment | allocations | check: the agency's registry,
// monthly run and allocation batches (docs/insurance.md "Registry and the monthly run",
// "Allocation batches"). The agency's data directory holds si.json (the database URL and the
// policy file or directory) and, by default, the SQLite database medcard.db.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "access/directory.h"
#include "audit/audit_log.h"
#include "cli/commands.h"
#include "cli/si_session.h"
#include "common/money.h"
#include "insurance/allocation_batch.h"
#include "insurance/monthly_run.h"
#include "insurance/policy.h"
#include "insurance/registry.h"
#include "store/store.h"

namespace medcard::cli {
namespace {

namespace fs = std::filesystem;
using namespace medcard::insurance;  // NOLINT(google-build-using-namespace): the commands' domain

// --- The agency's data directory -----------------------------------------------------------------

void WriteFileAtomically(const std::string& path, const std::string& text) {
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) throw CommandFailed("cannot write " + temporary);
  }
  std::error_code ec;
  fs::rename(temporary, path, ec);
  if (ec) throw CommandFailed("cannot write " + path + ": " + ec.message());
}

Fen ParseYuanOption(const std::string& text, const std::string& option) {
  auto fen = ParseYuan(text);
  if (!fen.ok()) throw CommandFailed(option + ": " + fen.error().message, 2);
  return *fen;
}

void AddData(CLI::App* command, std::string& dir) {
  command->add_option("--data", dir, "The agency's data directory")->required();
}

void PrintState(const PersonState& s) {
  std::printf("%s  %-10s %-9s unit %-8s wage %s  from %s (%s%s%s)\n", s.ssn.c_str(),
              std::string(ToString(s.category)).c_str(), std::string(ToString(s.status)).c_str(),
              s.unit_code.c_str(), FormatFen(s.wage_base_fen).c_str(),
              s.effective.ToString().c_str(), s.event.c_str(), s.note.empty() ? "" : ": ",
              s.note.c_str());
}

// --- Options -------------------------------------------------------------------------------------

struct InitOptions {
  std::string dir, db_url, policy;
};

struct UnitOptions {
  std::string dir;
  Unit unit;
};

struct PersonOptions {
  std::string dir, ssn, name, birth_date, unit, wage, category = "employee", effective, reason, on;
};

struct MonthOptions {
  std::string dir, month;
  int chunk_size = 1000;
};

struct PaymentOptions {
  std::string dir, unit, month, amount, date;
};

struct AllocationOptions {
  std::string dir, month, out, ack;
};

// --- Commands ------------------------------------------------------------------------------------

void RunInit(const InitOptions& o) {
  std::error_code ec;
  fs::create_directories(o.dir, ec);
  if (ec) throw CommandFailed("cannot create " + o.dir + ": " + ec.message());
  const std::string policy = fs::absolute(o.policy).string();
  const PolicyBook book = LoadSiPolicies(policy);
  SiConfig config{
      o.db_url.empty() ? store::SqliteUrlForDataDir(fs::absolute(o.dir).string()) : o.db_url,
      policy};
  auto database = SiDb(store::Database::Open(config.database), "opening the database");
  auto connection = SiDb(database->Connect(), "connecting");
  const int applied = SiDb(store::Migrate(*connection, insurance::Migrations()), "migrating");
  // The agency's users and audit log live in its own database (`si users add`, `si serve`).
  SiDb(store::Migrate(*connection, audit::Migrations()), "migrating the audit log");
  SiDb(store::Migrate(*connection, access::Migrations()), "migrating the users");
  nlohmann::json json{{"database", config.database}, {"policy", config.policy}};
  WriteFileAtomically(SiConfigPath(o.dir), json.dump(2) + "\n");
  std::printf(
      "agency data directory %s: database %s (%d migration(s) applied), policy %s (%zu"
      " area(s))\n",
      o.dir.c_str(), database->description().c_str(), applied, policy.c_str(), book.Areas().size());
}

void RunUnitAdd(const UnitOptions& o) {
  SiSession s = SiSession::Open(o.dir);
  Registry registry(s.connection());
  SiService(registry.AddUnit(o.unit), "unit add");
  s.Audit("si.unit.add", "unit:" + o.unit.code,
          nlohmann::json{{"name", o.unit.name}, {"area", o.unit.area}}.dump());
  std::printf("unit %s added (area %s)\n", o.unit.code.c_str(), o.unit.area.c_str());
}

void RunUnitList(const std::string& dir) {
  SiSession s = SiSession::Open(dir);
  Registry registry(s.connection());
  for (const Unit& u : SiService(registry.Units(), "unit list")) {
    std::printf("%-10s %-6s %-20s %s\n", u.code.c_str(), u.area.c_str(), u.bank_account.c_str(),
                u.name.c_str());
  }
}

void RunPersonEvent(const PersonOptions& o, const std::string& event) {
  SiSession s = SiSession::Open(o.dir);
  Registry registry(s.connection());
  const Date effective = SiDateOption(o.effective, "--effective");
  ServiceResult<PersonState> state = MakeServiceError(access::ErrorCode::kInternal, "no event");
  if (event == "enrol") {
    auto category = ParsePersonCategory(o.category);
    if (!category) throw CommandFailed("--category: employee, retiree or flexible", 2);
    state = registry.Enrol({.ssn = o.ssn,
                            .name = o.name,
                            .birth_date = SiDateOption(o.birth_date, "--birth-date"),
                            .unit_code = o.unit,
                            .wage_base_fen = o.wage.empty() ? 0 : ParseYuanOption(o.wage, "--wage"),
                            .category = *category,
                            .effective = effective});
  } else if (event == "transfer") {
    state = registry.Transfer(o.ssn, o.unit, effective);
  } else if (event == "wage") {
    state = registry.ChangeWageBase(o.ssn, ParseYuanOption(o.wage, "--wage"), effective);
  } else if (event == "suspend") {
    state = registry.Suspend(o.ssn, effective);
  } else if (event == "resume") {
    state = registry.Resume(o.ssn, effective);
  } else if (event == "retire") {
    state = registry.Retire(o.ssn, effective);
  } else if (event == "close") {
    state = registry.Close(o.ssn, effective, o.reason);
  }
  const PersonState changed = SiService(std::move(state), "person " + event);
  s.Audit("si.person." + event, "person:" + changed.ssn,
          nlohmann::json{{"effective", changed.effective.ToString()},
                         {"unit_code", changed.unit_code},
                         {"status", std::string(ToString(changed.status))}}
              .dump());
  PrintState(changed);
}

void RunPersonShow(const PersonOptions& o) {
  SiSession s = SiSession::Open(o.dir);
  Registry registry(s.connection());
  if (!o.on.empty()) {
    auto state = SiService(registry.PersonOn(o.ssn, SiDateOption(o.on, "--on")), "person show");
    if (!state) {
      std::printf("%s was not enrolled on %s\n", o.ssn.c_str(), o.on.c_str());
      return;
    }
    PrintState(*state);
    return;
  }
  auto history = SiService(registry.History(o.ssn), "person show");
  std::printf("%s %s, born %s\n", history.front().ssn.c_str(), history.front().name.c_str(),
              history.front().birth_date.ToString().c_str());
  for (const PersonState& state : history) PrintState(state);
}

void PrintBills(store::Connection& connection, const YearMonth& month) {
  std::printf("unit        people        billed          paid       arrears  personal accounts\n");
  for (const UnitBill& b : SiService(UnitBills(connection, month), "month " + MonthText(month))) {
    std::printf("%-10s %7lld %13s %13s %13s %18s\n", b.unit_code.c_str(),
                static_cast<long long>(b.people), FormatFen(b.billed_fen).c_str(),
                FormatFen(b.paid_fen).c_str(), FormatFen(b.arrears_fen).c_str(),
                FormatFen(b.personal_account_fen).c_str());
  }
}

void RunMonthRun(const MonthOptions& o) {
  const YearMonth month = SiMonthOption(o.month, "month");
  SiSession s = SiSession::Open(o.dir);
  const PolicyBook& policies = s.policies();
  MonthlyRunOptions options;
  options.chunk_size = o.chunk_size;
  auto summary = SiService(RunMonth(s.connection(), policies, month, options), "month run");
  if (!summary.already_finished) {
    s.Audit("si.month.run", "month:" + MonthText(month),
            nlohmann::json{{"people", summary.people}, {"resumed", summary.resumed}}.dump());
  }
  if (summary.already_finished) {
    std::printf("month %s was already run: nothing changed\n", o.month.c_str());
  } else {
    std::printf("month %s run%s: %d chunk(s)\n", o.month.c_str(),
                summary.resumed ? " (resumed)" : "", summary.chunks);
  }
  std::printf(
      "%lld people in %lld unit(s): employer %s, employee %s, personal accounts %s (retirees %s"
      " from the pooled fund), pooled fund %s\n",
      static_cast<long long>(summary.people), static_cast<long long>(summary.units),
      FormatFen(summary.employer_fen).c_str(), FormatFen(summary.employee_fen).c_str(),
      FormatFen(summary.personal_account_fen).c_str(),
      FormatFen(summary.retiree_allowance_fen).c_str(), FormatFen(summary.pooled_fund_fen).c_str());
}

void RunMonthShow(const MonthOptions& o) {
  const YearMonth month = SiMonthOption(o.month, "month");
  SiSession s = SiSession::Open(o.dir);
  PrintBills(s.connection(), month);
}

void RunPaymentAdd(const PaymentOptions& o) {
  SiSession s = SiSession::Open(o.dir);
  const Payment payment{o.unit, SiMonthOption(o.month, "month"),
                        ParseYuanOption(o.amount, "--amount"), SiDateOption(o.date, "--date")};
  const auto id = SiService(AddPayment(s.connection(), payment), "payment add");
  s.Audit(
      "si.payment.add", "unit:" + payment.unit_code,
      nlohmann::json{{"id", id}, {"month", o.month}, {"amount_fen", payment.amount_fen}}.dump());
  std::printf("payment %lld: unit %s paid %s for %s\n", static_cast<long long>(id), o.unit.c_str(),
              FormatFen(payment.amount_fen).c_str(), o.month.c_str());
}

void RunAllocationsExport(const AllocationOptions& o) {
  const YearMonth month = SiMonthOption(o.month, "month");
  const BatchKey key = SiBatchKeyFromEnvironment();
  SiSession s = SiSession::Open(o.dir);
  auto batch = SiService(ExportAllocations(s.connection(), month, key), "allocations export");
  WriteFileAtomically(o.out, batch.text);
  if (!batch.already_exported) {
    s.Audit("si.allocation.export", "month:" + MonthText(month),
            nlohmann::json{{"batch_id", batch.batch_id}, {"count", batch.count}}.dump());
  }
  std::printf("batch %s%s: %lld line(s), %s, written to %s\n", batch.batch_id.c_str(),
              batch.already_exported ? " (exported before: the same batch again)" : "",
              static_cast<long long>(batch.count), FormatFen(batch.total_fen).c_str(),
              o.out.c_str());
}

void RunAllocationsReconcile(const AllocationOptions& o) {
  const BatchKey key = SiBatchKeyFromEnvironment();
  const std::string ack = ReadFileOrFail(o.ack);
  SiSession s = SiSession::Open(o.dir);
  auto report = SiService(ReconcileAcknowledgement(s.connection(), ack, key), "reconcile " + o.ack);
  if (!report.already_reconciled) {
    s.Audit("si.allocation.reconcile", "batch:" + report.batch_id,
            nlohmann::json{{"credited", report.credited_count}, {"refused", report.refused.size()}}
                .dump());
  }
  std::printf("batch %s%s: %lld credited (%s), %zu refused (%s)\n", report.batch_id.c_str(),
              report.already_reconciled ? " (reconciled before: nothing changed)" : "",
              static_cast<long long>(report.credited_count), FormatFen(report.credited_fen).c_str(),
              report.refused.size(), FormatFen(report.refused_fen).c_str());
  for (const AcknowledgedLine& l : report.refused) {
    std::printf("refused line %lld: %s %s: %s\n", static_cast<long long>(l.allocation.line),
                l.allocation.person_id.c_str(), FormatFen(l.allocation.amount_fen).c_str(),
                l.reason.c_str());
  }
}

void RunCheck(const std::string& dir) {
  SiSession s = SiSession::Open(dir);
  const auto problems = SiService(CheckBooks(s.connection()), "check");
  for (const BookBalance& b : SiService(BookBalances(s.connection()), "check")) {
    std::printf("%-24s %15s\n", b.account.c_str(), FormatFen(b.balance_fen).c_str());
  }
  if (!problems.empty()) {
    for (const std::string& p : problems) std::printf("PROBLEM: %s\n", p.c_str());
    throw CommandFailed(std::to_string(problems.size()) + " problem(s) in the agency's books");
  }
  std::printf("books OK: the pooled fund and the personal accounts are apart\n");
}

}  // namespace

void AddSiRegistryCommands(CLI::App& si) {
  {
    auto o = std::make_shared<InitOptions>();
    CLI::App* init = si.add_subcommand("init", "Create (or update) an agency data directory");
    AddData(init, o->dir);
    init->add_option("--db", o->db_url, "postgresql://... (default: SQLite in the directory)");
    init->add_option("--policy", o->policy, "The policy file, or a directory of them")->required();
    init->callback([o] { RunInit(*o); });
  }
  {
    CLI::App* unit = si.add_subcommand("unit", "Employer units");
    unit->require_subcommand(1);
    auto o = std::make_shared<UnitOptions>();
    CLI::App* add = unit->add_subcommand("add", "Register an employer unit");
    AddData(add, o->dir);
    add->add_option("--code", o->unit.code, "Unit code")->required();
    add->add_option("--name", o->unit.name, "Name")->required();
    add->add_option("--bank-account", o->unit.bank_account, "Bank account (digits)")->required();
    add->add_option("--area", o->unit.area, "Pooling area code, e.g. 110000")->required();
    add->callback([o] { RunUnitAdd(*o); });
    auto dir = std::make_shared<std::string>();
    CLI::App* list = unit->add_subcommand("list", "The units");
    AddData(list, *dir);
    list->callback([dir] { RunUnitList(*dir); });
  }
  {
    CLI::App* person = si.add_subcommand("person", "Insured people and their events");
    person->require_subcommand(1);
    struct EventSpec {
      const char* name;
      const char* help;
    };
    for (const EventSpec spec :
         {EventSpec{"enrol", "Enrol an insured person"},
          EventSpec{"transfer", "Move a person to another unit"},
          EventSpec{"wage", "Change the declared monthly wage"},
          EventSpec{"suspend", "Suspend a person's insurance"},
          EventSpec{"resume", "Resume a suspended person"},
          EventSpec{"retire", "A person retires (pays nothing from then on)"},
          EventSpec{"close", "Death or leaving the scheme"}}) {
      auto o = std::make_shared<PersonOptions>();
      const std::string event = spec.name;
      CLI::App* c = person->add_subcommand(event, spec.help);
      AddData(c, o->dir);
      c->add_option("--ssn", o->ssn, "Social-security number (18-character resident id)")
          ->required();
      c->add_option("--effective", o->effective, "From this day on, YYYY-MM-DD")->required();
      if (event == "enrol") {
        c->add_option("--name", o->name, "Name")->required();
        c->add_option("--birth-date", o->birth_date, "YYYY-MM-DD (as in the ssn)")->required();
        c->add_option("--unit", o->unit, "Unit code")->required();
        c->add_option("--wage", o->wage, "Declared monthly wage, yuan (e.g. 8000.00)");
        c->add_option("--category", o->category, "employee, retiree or flexible");
      } else if (event == "transfer") {
        c->add_option("--unit", o->unit, "The new unit's code")->required();
      } else if (event == "wage") {
        c->add_option("--wage", o->wage, "Declared monthly wage, yuan")->required();
      } else if (event == "close") {
        c->add_option("--reason", o->reason, "death, emigration, ...")->required();
      }
      c->callback([o, event] { RunPersonEvent(*o, event); });
    }
    auto o = std::make_shared<PersonOptions>();
    CLI::App* show = person->add_subcommand("show", "A person's history, or state on a date");
    AddData(show, o->dir);
    show->add_option("--ssn", o->ssn, "Social-security number")->required();
    show->add_option("--on", o->on, "The state in force on YYYY-MM-DD");
    show->callback([o] { RunPersonShow(*o); });
  }
  {
    CLI::App* month = si.add_subcommand("month", "The monthly run");
    month->require_subcommand(1);
    auto o = std::make_shared<MonthOptions>();
    CLI::App* run = month->add_subcommand(
        "run", "Bill the month, allocate personal accounts (resumable; once per month)");
    run->add_option("month", o->month, "YYYY-MM")->required();
    AddData(run, o->dir);
    run->add_option("--chunk-size", o->chunk_size, "People per committed chunk")
        ->check(CLI::Range(1, 1000000));
    run->callback([o] { RunMonthRun(*o); });
    auto so = std::make_shared<MonthOptions>();
    CLI::App* show = month->add_subcommand("show", "A run month's bills, payments and arrears");
    show->add_option("month", so->month, "YYYY-MM")->required();
    AddData(show, so->dir);
    show->callback([so] { RunMonthShow(*so); });
  }
  {
    CLI::App* payment = si.add_subcommand("payment", "Units' payments");
    payment->require_subcommand(1);
    auto o = std::make_shared<PaymentOptions>();
    CLI::App* add = payment->add_subcommand("add", "Record a unit's payment of a month's bill");
    AddData(add, o->dir);
    add->add_option("--unit", o->unit, "Unit code")->required();
    add->add_option("--month", o->month, "The bill's month, YYYY-MM")->required();
    add->add_option("--amount", o->amount, "Yuan, e.g. 1200.00")->required();
    add->add_option("--date", o->date, "Paid on, YYYY-MM-DD")->required();
    add->callback([o] { RunPaymentAdd(*o); });
  }
  {
    CLI::App* allocations = si.add_subcommand(
        "allocations", "Allocation batches to the bank (key: $MEDCARD_ALLOCATION_KEY)");
    allocations->require_subcommand(1);
    auto o = std::make_shared<AllocationOptions>();
    CLI::App* exp = allocations->add_subcommand("export", "Write a run month's allocation batch");
    exp->add_option("month", o->month, "YYYY-MM")->required();
    AddData(exp, o->dir);
    exp->add_option("--out", o->out, "The batch file to write")->required();
    exp->callback([o] { RunAllocationsExport(*o); });
    auto r = std::make_shared<AllocationOptions>();
    CLI::App* rec = allocations->add_subcommand(
        "reconcile", "Match the bank's acknowledgement against the batch");
    rec->add_option("ack", r->ack, "The acknowledgement file")->required();
    AddData(rec, r->dir);
    rec->callback([r] { RunAllocationsReconcile(*r); });
  }
  {
    auto dir = std::make_shared<std::string>();
    CLI::App* check = si.add_subcommand(
        "check", "The agency's books: the pooled fund and personal accounts never mix");
    AddData(check, *dir);
    check->callback([dir] { RunCheck(*dir); });
  }
}

}  // namespace medcard::cli
