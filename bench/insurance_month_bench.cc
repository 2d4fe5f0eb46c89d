// The agency's monthly run (docs/insurance.md "The monthly run"): contributions and
// personal-account allocations for a generated registry on SQLite, people per second, against a
// baseline measured in the same run: the same people's contributions computed by the rules
// alone (rules.h), no database. The ratio says what storing the lines, bills and books costs.
//
//   insurance_month_bench                      # 20,000 people in 400 units (a short run)
//   insurance_month_bench --people=1000000     # the figure: 1,000,000 in 20,000 units
//
// Each iteration runs a new month over the same registry (months are never run twice), so
// every iteration is a full run. The registry is written with multi-row inserts before timing
// (its time is printed, not measured). Peak resident memory is printed at the end.
#include <benchmark/benchmark.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "insurance/monthly_run.h"
#include "insurance/policy.h"
#include "insurance/registry.h"
#include "insurance/rules.h"
#include "rate_reporter.h"
#include "store/store.h"

namespace {

using namespace medcard;             // NOLINT(google-build-using-namespace)
using namespace medcard::insurance;  // NOLINT(google-build-using-namespace)

constexpr std::int64_t kPeoplePerUnit = 50;  // 1,000,000 people in 20,000 units

Policy BeijingLike() {
  Policy p;
  p.area_code = "110000";
  p.name = "bench";
  p.effective_from = {2024, 1, 1};
  p.average_annual_wage_fen = 14'113'200;
  p.contributions = {600, 200, 6000, 30000};
  p.allocation.employer_share_of_base = {{0, 80}, {35, 100}, {45, 200}};
  p.allocation.retiree_share_of_average_wage = {{0, 430}, {70, 480}};
  p.benefits.deductible_first_admission_bp = 92;
  p.benefits.deductible_later_admission_bp = 46;
  p.benefits.annual_cap_bp = 40000;
  p.benefits.copay[0] = {{3'000'000, 1000}, {4'000'000, 700}, {std::nullopt, 300}};
  p.benefits.copay[1] = {{3'000'000, 1200}, {4'000'000, 800}, {std::nullopt, 400}};
  p.benefits.copay[2] = {{3'000'000, 1500}, {4'000'000, 1000}, {std::nullopt, 500}};
  p.benefits.retiree_copay_factor = {{0, 6000}};
  return p;
}

// A person of the generated registry: a valid 18-digit number (area 110101, the birth date,
// a sequence, the ISO 7064 MOD 11-2 check character); born before 1960: a retiree.
struct GeneratedPerson {
  std::string ssn;
  Date birth_date;
  PersonCategory category;
  Fen wage_fen;
  std::string unit_code;
};

GeneratedPerson Generate(std::int64_t i) {
  GeneratedPerson p;
  // 21,000 birth dates over 1940..2002, consecutive people scattered across them (11 is prime
  // to 21,000), then a sequence number: different people never share a number.
  const std::int64_t date = (i % 21'000) * 11 % 21'000;
  p.birth_date = {static_cast<int>(1940 + date / 336), static_cast<int>(1 + date / 28 % 12),
                  static_cast<int>(1 + date % 28)};
  p.category = p.birth_date.year < 1960 ? PersonCategory::kRetiree : PersonCategory::kEmployee;
  char body[48];
  std::snprintf(body, sizeof body, "110101%04d%02d%02d%03d", p.birth_date.year, p.birth_date.month,
                p.birth_date.day, static_cast<int>(i / 21'000));
  static constexpr int kWeights[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
  int sum = 0;
  for (int k = 0; k < 17; ++k) sum += (body[k] - '0') * kWeights[k];
  p.ssn = std::string(body, 17) + "10X98765432"[sum % 11];
  p.wage_fen = p.category == PersonCategory::kRetiree ? 0 : 300'000 + (i * 7919) % 3'000'000;
  char unit[32];
  std::snprintf(unit, sizeof unit, "U%06lld", static_cast<long long>(i / kPeoplePerUnit));
  p.unit_code = unit;
  return p;
}

std::int64_t PeopleOption(int& argc, char** argv) {
  std::int64_t people = 20'000;
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--people=", 9) == 0) {
      people = std::atoll(argv[i] + 9);
    } else {
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  return people;
}

struct Registry {
  std::filesystem::path dir;
  std::unique_ptr<store::Database> database;
  std::unique_ptr<store::Connection> connection;
  PolicyBook policies;
  std::int64_t people = 0;
  int next_month = 0;  // months since 2025-01 run so far
};

// The generated registry on a fresh SQLite file; empty `error` on success.
std::unique_ptr<Registry> BuildRegistry(std::int64_t people, std::string& error) {
  auto r = std::make_unique<Registry>();
  r->people = people;
  r->dir = std::filesystem::temp_directory_path() /
           ("medcard-month-bench-" + std::to_string(::getpid()));
  std::filesystem::remove_all(r->dir);
  std::filesystem::create_directories(r->dir);
  auto database = store::Database::Open(store::SqliteUrlForDataDir(r->dir.string()));
  if (!database.ok()) return error = database.error().message, nullptr;
  r->database = std::move(database).value();
  auto connection = r->database->Connect();
  if (!connection.ok()) return error = connection.error().message, nullptr;
  r->connection = std::move(connection).value();
  if (auto m = store::Migrate(*r->connection, Migrations()); !m.ok()) {
    return error = m.error().message, nullptr;
  }
  if (Status s = r->policies.Add(BeijingLike()); !s.ok()) return error = s.error().message, nullptr;

  const auto started = std::chrono::steady_clock::now();
  constexpr std::int64_t kPerTransaction = 50'000;
  for (std::int64_t first = 0; first < people; first += kPerTransaction) {
    const std::int64_t last = std::min(people, first + kPerTransaction);
    store::Params units, persons, events;
    for (std::int64_t i = first; i < last; ++i) {
      const GeneratedPerson p = Generate(i);
      if (i % kPeoplePerUnit == 0) {
        units.insert(units.end(), {p.unit_code, "Unit " + p.unit_code, "6222020200" + p.unit_code,
                                   "110000", std::int64_t{0}});
      }
      persons.insert(persons.end(), {p.ssn, "Person", p.birth_date.ToString(), std::int64_t{0}});
      events.insert(events.end(),
                    {p.ssn, "enrol", "2024-01-01", p.unit_code, p.wage_fen,
                     std::string(ToString(p.category)), "active", "", std::int64_t{0}});
    }
    auto status = store::RunTransaction(
        *r->connection, store::TransactionMode::kWrite,
        [&](store::Connection& c) -> store::DbStatus {
          if (!units.empty()) {
            auto done = store::ExecuteRows(
                c, "INSERT INTO si_units (code, name, bank_account, area, created_at_us) VALUES ",
                "(?, ?, ?, ?, ?)", 5, units);
            if (!done.ok()) return done.error();
          }
          auto done = store::ExecuteRows(
              c, "INSERT INTO si_people (ssn, name, birth_date, created_at_us) VALUES ",
              "(?, ?, ?, ?)", 4, persons);
          if (!done.ok()) return done.error();
          done = store::ExecuteRows(c,
                                    "INSERT INTO si_person_events (ssn, event, effective,"
                                    " unit_code, wage_base, category, status, note,"
                                    " recorded_at_us) VALUES ",
                                    "(?, ?, ?, ?, ?, ?, ?, ?, ?)", 9, events);
          if (!done.ok()) return done.error();
          return store::Done{};
        });
    if (!status.ok()) return error = status.error().message, nullptr;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf("registry: %lld people in %lld units written in %.1f s (%s)\n",
              static_cast<long long>(people),
              static_cast<long long>((people + kPeoplePerUnit - 1) / kPeoplePerUnit), seconds,
              r->dir.c_str());
  return r;
}

void BM_MonthlyRun(benchmark::State& state, Registry* registry) {
  for (auto _ : state) {
    const int index = registry->next_month++;
    const YearMonth month{2025 + index / 12, 1 + index % 12};
    auto summary = RunMonth(*registry->connection, registry->policies, month);
    if (!summary.ok()) {
      state.SkipWithError(summary.error().message.c_str());
      break;
    }
    if (summary->people != registry->people) {
      state.SkipWithError("the run did not bill everyone");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * registry->people);
  state.counters["people"] = static_cast<double>(registry->people);
}

// The baseline: the same people's contributions and allocations, computed only.
void BM_MonthlyRulesOnly(benchmark::State& state, std::int64_t people) {
  const Policy policy = BeijingLike();
  std::vector<ContributingPerson> registry;
  registry.reserve(static_cast<std::size_t>(people));
  for (std::int64_t i = 0; i < people; ++i) {
    const GeneratedPerson p = Generate(i);
    registry.push_back({p.category, p.birth_date, p.wage_fen});
  }
  for (auto _ : state) {
    Fen allocated = 0;
    for (const auto& person : registry) {
      auto month = ComputeMonthlyContribution(policy, person, {2025, 1});
      if (!month.ok()) {
        state.SkipWithError(month.error().message.c_str());
        return;
      }
      allocated += month->personal_account_fen;
    }
    benchmark::DoNotOptimize(allocated);
  }
  state.SetItemsProcessed(state.iterations() * people);
}

}  // namespace

int main(int argc, char** argv) {
  const std::int64_t people = PeopleOption(argc, argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  if (people < 1 || people > 20'000'000) {
    std::fprintf(stderr, "--people: 1 .. 20,000,000\n");
    return 1;
  }
  std::string error;
  auto registry = BuildRegistry(people, error);
  if (!registry) {
    std::filesystem::remove_all(std::filesystem::temp_directory_path() /
                                ("medcard-month-bench-" + std::to_string(::getpid())));
    std::fprintf(stderr, "generating the registry: %s\n", error.c_str());
    return 1;
  }
  // One iteration of a million-person run is already long; small registries repeat a few times.
  const int iterations = people >= 500'000 ? 1 : people >= 100'000 ? 2 : 5;
  benchmark::RegisterBenchmark("BM_MonthlyRun", BM_MonthlyRun, registry.get())
      ->Iterations(iterations)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("BM_MonthlyRulesOnly", BM_MonthlyRulesOnly, people)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  medcard::bench::RateKeepingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  reporter.PrintRatio("monthly_run_people_per_s / rules_only_people_per_s", "BM_MonthlyRun",
                      "BM_MonthlyRulesOnly");
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::printf("peak resident memory: %.0f MB\n", static_cast<double>(usage.ru_maxrss) / 1024.0);
  registry->connection.reset();
  registry->database.reset();
  std::filesystem::remove_all(registry->dir);
  return 0;
}
