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

std::string SiConfigPath(const std::string& dir) { return (fs::path(dir) / "si.json").string(); }

struct SiConfig {
  std::string database;
  std::string policy;  // a policy file or a directory of them
};

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

SiConfig LoadSiConfig(const std::string& dir) {
  const std::string path = SiConfigPath(dir);
  if (!fs::exists(path)) {
    throw CommandFailed(dir + " is not an agency data directory (run `medcard si init` first)");
  }
  const auto json = nlohmann::json::parse(ReadFileOrFail(path), nullptr, false);
  if (!json.is_object() || !json.contains("database") || !json["database"].is_string() ||
      !json.contains("policy") || !json["policy"].is_string()) {
    throw CommandFailed(path + ": expected {\"database\": \"...\", \"policy\": \"...\"}");
  }
  return {json["database"].get<std::string>(), json["policy"].get<std::string>()};
}

PolicyBook LoadPolicies(const std::string& path) {
  if (fs::is_directory(path)) {
    return Check(PolicyBook::LoadDirectory(path), "policy directory " + path);
  }
  PolicyBook book;
  Check(book.Add(Check(LoadPolicyFile(path), "policy " + path)), "policy " + path);
  return book;
}

// Unwraps a database result or throws CommandFailed with `context: message`.
template <typename T, typename E>
T Db(store::Expected<T, E> r, const std::string& context) {
  if (!r.ok()) throw CommandFailed(context + ": " + r.error().message);
  return std::move(r).value();
}

struct SiSession {
  SiConfig config;
  std::unique_ptr<store::Database> database;
  std::unique_ptr<store::Connection> connection;
};

SiSession OpenSiSession(const std::string& dir) {
  SiSession session;
  session.config = LoadSiConfig(dir);
  store::OpenOptions open;
  open.create_if_missing = false;
  session.database = Db(store::Database::Open(session.config.database, open),
                        "opening " + store::RedactUrl(session.config.database));
  session.connection = Db(session.database->Connect(), "connecting");
  Db(store::Migrate(*session.connection, insurance::Migrations()), "migrating");
  return session;
}

template <typename T>
T Service(ServiceResult<T> r, const std::string& context) {
  if (!r.ok()) {
    const int exit_code = r.error().code == access::ErrorCode::kInvalid ? 2 : 1;
    throw CommandFailed(context + ": " + r.error().message, exit_code);
  }
  return std::move(r).value();
}

Date ParseDateOption(const std::string& text, const std::string& option) {
  auto date = ParseIsoDate(text);
  if (!date) throw CommandFailed(option + ": expected YYYY-MM-DD, got '" + text + "'", 2);
  return *date;
}

YearMonth ParseMonthOption(const std::string& text) {
  auto month = ParseMonthText(text);
  if (!month) throw CommandFailed("month: expected YYYY-MM, got '" + text + "'", 2);
  return *month;
}

Fen ParseYuanOption(const std::string& text, const std::string& option) {
  auto fen = ParseYuan(text);
  if (!fen.ok()) throw CommandFailed(option + ": " + fen.error().message, 2);
  return *fen;
}

BatchKey KeyFromEnvironment() {
  const char* hex = std::getenv(kBatchKeyEnvironment);
  if (hex == nullptr) {
    throw CommandFailed(std::string("the allocation batch key is not set: put its 64 hex digits"
                                    " in ") +
                        kBatchKeyEnvironment);
  }
  return Check(BatchKey::FromHex(hex), "batch key");
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
  const PolicyBook book = LoadPolicies(policy);
  SiConfig config{
      o.db_url.empty() ? store::SqliteUrlForDataDir(fs::absolute(o.dir).string()) : o.db_url,
      policy};
  auto database = Db(store::Database::Open(config.database), "opening the database");
  auto connection = Db(database->Connect(), "connecting");
  const int applied = Db(store::Migrate(*connection, insurance::Migrations()), "migrating");
  // The agency's users and audit log live in its own database (`si users add`, `si serve`).
  Db(store::Migrate(*connection, audit::Migrations()), "migrating the audit log");
  Db(store::Migrate(*connection, access::Migrations()), "migrating the users");
  nlohmann::json json{{"database", config.database}, {"policy", config.policy}};
  WriteFileAtomically(SiConfigPath(o.dir), json.dump(2) + "\n");
  std::printf(
      "agency data directory %s: database %s (%d migration(s) applied), policy %s (%zu"
      " area(s))\n",
      o.dir.c_str(), database->description().c_str(), applied, policy.c_str(), book.Areas().size());
}

void RunUnitAdd(const UnitOptions& o) {
  SiSession s = OpenSiSession(o.dir);
  Registry registry(*s.connection);
  Service(registry.AddUnit(o.unit), "unit add");
  std::printf("unit %s added (area %s)\n", o.unit.code.c_str(), o.unit.area.c_str());
}

void RunUnitList(const std::string& dir) {
  SiSession s = OpenSiSession(dir);
  Registry registry(*s.connection);
  for (const Unit& u : Service(registry.Units(), "unit list")) {
    std::printf("%-10s %-6s %-20s %s\n", u.code.c_str(), u.area.c_str(), u.bank_account.c_str(),
                u.name.c_str());
  }
}

void RunPersonEvent(const PersonOptions& o, const std::string& event) {
  SiSession s = OpenSiSession(o.dir);
  Registry registry(*s.connection);
  const Date effective = ParseDateOption(o.effective, "--effective");
  ServiceResult<PersonState> state = MakeServiceError(access::ErrorCode::kInternal, "no event");
  if (event == "enrol") {
    auto category = ParsePersonCategory(o.category);
    if (!category) throw CommandFailed("--category: employee, retiree or flexible", 2);
    state = registry.Enrol({.ssn = o.ssn,
                            .name = o.name,
                            .birth_date = ParseDateOption(o.birth_date, "--birth-date"),
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
  PrintState(Service(std::move(state), "person " + event));
}

void RunPersonShow(const PersonOptions& o) {
  SiSession s = OpenSiSession(o.dir);
  Registry registry(*s.connection);
  if (!o.on.empty()) {
    auto state = Service(registry.PersonOn(o.ssn, ParseDateOption(o.on, "--on")), "person show");
    if (!state) {
      std::printf("%s was not enrolled on %s\n", o.ssn.c_str(), o.on.c_str());
      return;
    }
    PrintState(*state);
    return;
  }
  auto history = Service(registry.History(o.ssn), "person show");
  std::printf("%s %s, born %s\n", history.front().ssn.c_str(), history.front().name.c_str(),
              history.front().birth_date.ToString().c_str());
  for (const PersonState& state : history) PrintState(state);
}

void PrintBills(store::Connection& connection, const YearMonth& month) {
  std::printf("unit        people        billed          paid       arrears  personal accounts\n");
  for (const UnitBill& b : Service(UnitBills(connection, month), "month " + MonthText(month))) {
    std::printf("%-10s %7lld %13s %13s %13s %18s\n", b.unit_code.c_str(),
                static_cast<long long>(b.people), FormatFen(b.billed_fen).c_str(),
                FormatFen(b.paid_fen).c_str(), FormatFen(b.arrears_fen).c_str(),
                FormatFen(b.personal_account_fen).c_str());
  }
}

void RunMonthRun(const MonthOptions& o) {
  const YearMonth month = ParseMonthOption(o.month);
  SiSession s = OpenSiSession(o.dir);
  const PolicyBook policies = LoadPolicies(s.config.policy);
  MonthlyRunOptions options;
  options.chunk_size = o.chunk_size;
  auto summary = Service(RunMonth(*s.connection, policies, month, options), "month run");
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
  const YearMonth month = ParseMonthOption(o.month);
  SiSession s = OpenSiSession(o.dir);
  PrintBills(*s.connection, month);
}

void RunPaymentAdd(const PaymentOptions& o) {
  SiSession s = OpenSiSession(o.dir);
  const Payment payment{o.unit, ParseMonthOption(o.month), ParseYuanOption(o.amount, "--amount"),
                        ParseDateOption(o.date, "--date")};
  const auto id = Service(AddPayment(*s.connection, payment), "payment add");
  std::printf("payment %lld: unit %s paid %s for %s\n", static_cast<long long>(id), o.unit.c_str(),
              FormatFen(payment.amount_fen).c_str(), o.month.c_str());
}

void RunAllocationsExport(const AllocationOptions& o) {
  const YearMonth month = ParseMonthOption(o.month);
  const BatchKey key = KeyFromEnvironment();
  SiSession s = OpenSiSession(o.dir);
  auto batch = Service(ExportAllocations(*s.connection, month, key), "allocations export");
  WriteFileAtomically(o.out, batch.text);
  std::printf("batch %s%s: %lld line(s), %s, written to %s\n", batch.batch_id.c_str(),
              batch.already_exported ? " (exported before: the same batch again)" : "",
              static_cast<long long>(batch.count), FormatFen(batch.total_fen).c_str(),
              o.out.c_str());
}

void RunAllocationsReconcile(const AllocationOptions& o) {
  const BatchKey key = KeyFromEnvironment();
  const std::string ack = ReadFileOrFail(o.ack);
  SiSession s = OpenSiSession(o.dir);
  auto report = Service(ReconcileAcknowledgement(*s.connection, ack, key), "reconcile " + o.ack);
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
  SiSession s = OpenSiSession(dir);
  const auto problems = Service(CheckBooks(*s.connection), "check");
  for (const BookBalance& b : Service(BookBalances(*s.connection), "check")) {
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
