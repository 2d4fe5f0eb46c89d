#include "demo/scenario.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <utility>

#include "audit/audit_log.h"
#include "branch/services.h"
#include "common/money.h"
#include "crypto/crypto.h"
#include "demo/embedded_policy.h"
#include "demo/slot_medium.h"
#include "host/gateway.h"
#include "host/host.h"
#include "insurance/allocation_batch.h"
#include "insurance/claims.h"
#include "insurance/claims_store.h"
#include "insurance/consumption.h"
#include "insurance/monthly_run.h"
#include "insurance/policy.h"
#include "insurance/registry.h"
#include "issuance/test_issuer.h"
#include "keys/key_store.h"
#include "ledger/ledger.h"
#include "nvm/nvm.h"
#include "pos/journal.h"
#include "pos/pos.h"
#include "reader/reader.h"
#include "server/server.h"
#include "store/store.h"
#include "terminal/host_link.h"
#include "terminal/purse.h"

namespace medcard::demo {
namespace {

namespace fs = std::filesystem;
using terminal::Wallet;

constexpr char kBranch[] = "B001";
constexpr std::int64_t kMinuteUs = 60'000'000;
constexpr std::int64_t kHourUs = 60 * kMinuteUs;
constexpr std::int64_t kLocalOffsetUs = 8 * kHourUs;  // UTC+8
constexpr std::uint8_t kInsDebitForPurchase = 0x54;   // docs/card-commands.md

// Any of the components' results, as a step's error naming what failed.
template <typename R>
Error StepError(const std::string& what, const R& result) {
  return MakeError(what + ": " + result.error().message);
}

std::int64_t NowUs() {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

// For the measurements: a monotonic clock, µs.
std::int64_t SteadyUs() {
  using namespace std::chrono;
  return duration_cast<microseconds>(steady_clock::now().time_since_epoch()).count();
}

// The POS's and the branches' local time (UTC+8, docs/branch.md) of a UTC instant, whatever
// the machine's zone.
pos::DateTime LocalAt(std::int64_t utc_us) {
  using namespace std::chrono;
  const sys_time<microseconds> local{microseconds{utc_us + kLocalOffsetUs}};
  const sys_days day = floor<days>(local);
  const year_month_day ymd{day};
  const hh_mm_ss<microseconds> time{local - day};
  return {{static_cast<int>(ymd.year()), static_cast<int>(static_cast<unsigned>(ymd.month())),
           static_cast<int>(static_cast<unsigned>(ymd.day()))},
          {static_cast<int>(time.hours().count()), static_cast<int>(time.minutes().count()),
           static_cast<int>(time.seconds().count())}};
}

Status WriteText(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return MakeError("cannot write " + path.string());
  return Status::Ok();
}

// A card reader whose card can be pulled out right after the card executed a DEBIT FOR
// PURCHASE: the card is debited, the answer is lost — a torn purchase (docs/pos.md).
class TearingReader final : public reader::Reader {
 public:
  explicit TearingReader(reader::InProcessReader& inner) : inner_(inner) {}
  void TearAfterNextDebit() { armed_ = true; }

  std::string Name() const override { return inner_.Name(); }
  Result<Bytes> Connect() override { return inner_.Connect(); }
  Status Disconnect() override { return inner_.Disconnect(); }
  bool Connected() const override { return inner_.Connected(); }
  Result<bool> CardPresent() override { return inner_.CardPresent(); }
  Result<bool> WaitForCard(std::chrono::milliseconds t) override { return inner_.WaitForCard(t); }
  Result<bool> WaitForRemoval(std::chrono::milliseconds t) override {
    return inner_.WaitForRemoval(t);
  }
  Result<Bytes> Transmit(ByteView command) override {
    if (armed_ && command.size() > 1 && command[1] == kInsDebitForPurchase) {
      armed_ = false;
      (void)inner_.Transmit(command);
      inner_.RemoveCard();
      return MakeError("card removed");
    }
    return inner_.Transmit(command);
  }
  Result<Bytes> PowerCycle(reader::Reset kind) override { return inner_.PowerCycle(kind); }
  Status BeginTransaction() override { return inner_.BeginTransaction(); }
  Status EndTransaction() override { return inner_.EndTransaction(); }

 private:
  reader::InProcessReader& inner_;
  bool armed_ = false;
};

// A card or PSAM in one of pcscd's vpcd slots while this object lives (served on its own
// thread); gone, and seen gone by pcscd, after.
class VpcdSlot {
 public:
  VpcdSlot(std::shared_ptr<iso7816::Icc> icc, unsigned slot)
      : slot_(slot), bridge_(std::move(icc), slot), thread_([this] { (void)bridge_.Run(); }) {}
  ~VpcdSlot() {
    bridge_.Stop();
    thread_.join();
    if (auto r = reader::PcscReader::Open(reader::VpcdReaderName(slot_)); r.ok()) {
      (void)(*r)->WaitForRemoval(std::chrono::seconds(5));
    }
  }
  VpcdSlot(const VpcdSlot&) = delete;
  VpcdSlot& operator=(const VpcdSlot&) = delete;

 private:
  unsigned slot_;
  reader::VpcdBridge bridge_;
  std::thread thread_;
};

// One merchant's POS: its journal, its TCP link to the host, its readers and PSAM. With
// ScenarioOptions::pcsc the first terminal's card and PSAM sit in pcscd's vpcd slots 0 and 1.
struct Station {
  const Terminal* city_terminal = nullptr;
  const Merchant* merchant = nullptr;
  std::shared_ptr<psam::Psam> psam;
  std::unique_ptr<pos::Journal> journal;
  std::unique_ptr<terminal::Transport> transport;
  std::unique_ptr<terminal::HostLink> link;
  // Declared before the readers, so the readers go first.
  std::unique_ptr<VpcdSlot> vpcd_psam, vpcd_card;
  std::unique_ptr<reader::InProcessReader> card_slot;  // in-process
  std::unique_ptr<reader::Reader> psam_reader, pcsc_card_reader;
  std::unique_ptr<TearingReader> card_reader;  // in-process
  std::unique_ptr<pos::Terminal> pos;
  std::int64_t psam_signed_fen = 0;
  std::size_t worker = 0;  // the one POS driver thread that uses this terminal
  bool pcsc() const { return pcsc_card_reader != nullptr; }
};

struct Holder {
  const Card* card = nullptr;
  const Person* person = nullptr;
  std::shared_ptr<card::Card> chip;
  std::string asn;               // hex
  std::uint32_t ed = 0, ep = 0;  // what the scenario expects the card to hold
  // What the card itself holds, read (PIN verified) for the reconciliation.
  bool read = false;
  std::uint32_t card_ed = 0, card_ep = 0;
};

// One POS driver thread's counts and latencies, added to the report after the join.
struct Tally {
  std::int64_t sign_ons = 0, loads = 0, loaded_fen = 0;
  std::int64_t ed_purchases = 0, ed_fen = 0, ep_purchases = 0, ep_fen = 0, attempts = 0;
  std::int64_t skipped = 0;  // visits where neither wallet could pay anything
  std::int64_t purchases_uploaded = 0, uploaded_fen = 0, terminals_settled = 0;
  LatencyRecorder load_latency, purchase_latency, day_end_latency;
};

// ISO 8601 UTC, to the second, of a UTC instant.
std::string IsoUtc(std::int64_t utc_us) {
  using namespace std::chrono;
  const sys_time<microseconds> at{microseconds{utc_us}};
  const sys_days day = floor<days>(at);
  const year_month_day ymd{day};
  const hh_mm_ss<seconds> time{floor<seconds>(at - day)};
  char text[32];
  std::snprintf(text, sizeof text, "%04d-%02u-%02uT%02d:%02d:%02dZ", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<int>(time.hours().count()), static_cast<int>(time.minutes().count()),
                static_cast<int>(time.seconds().count()));
  return text;
}

class Scenario {
 public:
  explicit Scenario(const ScenarioOptions& options)
      : options_(options),
        city_(GenerateCity(options.city)),
        scale_(options.purchases > 0),
        workers_(scale_ ? static_cast<std::size_t>(std::clamp<std::int64_t>(
                              options.workers, 1,
                              std::max<std::int64_t>(1, std::ssize(city_.terminals))))
                        : 1),
        worker_stations_(workers_) {}
  ~Scenario() {
    // The POS links go before the server, the server before the gateway it calls.
    stations_.clear();
    if (server_) server_->Shutdown(std::chrono::milliseconds{2000});
    server_.reset();
    gateway_.reset();
  }

  Result<ScenarioReport> Run() {
    report_.city_scale = scale_;
    report_.workers = static_cast<std::int64_t>(workers_);
    const std::int64_t started = SteadyUs();
    struct Phase {
      const char* name;
      Status (Scenario::*run)();
    };
    // The inpatient claim is settled at discharge, before the day end that clears the card's
    // payment of its personal-account share.
    static constexpr Phase kPhases[] = {
        {"setup", &Scenario::Prepare},           {"agency month", &Scenario::AgencyMonth},
        {"bank import", &Scenario::BankImport},  {"issuance", &Scenario::IssueAndRegister},
        {"sign-on", &Scenario::OpenTerminals},   {"loads", &Scenario::Loads},
        {"purchases", &Scenario::TheDay},        {"discharge", &Scenario::Discharge},
        {"day end", &Scenario::DayEnd},          {"host check", &Scenario::AfterDayEnd},
        {"consumption", &Scenario::Consumption}, {"reconciliation", &Scenario::Reconcile}};
    for (const Phase& phase : kPhases) {
      if (Status done = Measure(phase.name, phase.run); !done.ok()) return done.error();
    }
    report_.total_wall_us = SteadyUs() - started;
    report_.load_latency = load_latency_.Summary();
    report_.purchase_latency = purchase_latency_.Summary();
    report_.day_end_latency = day_end_latency_.Summary();
    return report_;
  }

 private:
  void Say(const std::string& line) {
    if (options_.progress) options_.progress(line);
  }

  // ---- Measurements and the POS driver threads ------------------------------------------------
  // Runs one phase, recording its wall time, the items it set (items_, unit_) and the time the
  // host's request handler spent meanwhile.
  Status Measure(const char* name, Status (Scenario::*run)()) {
    items_ = 0;
    unit_.clear();
    const server::Stats before = server_ ? server_->stats() : server::Stats{};
    const std::int64_t start = SteadyUs();
    Status done = (this->*run)();
    PhaseTiming timing{.name = name, .wall_us = SteadyUs() - start, .items = items_, .unit = unit_};
    if (server_) {
      const server::Stats after = server_->stats();
      timing.host_wall_us =
          static_cast<std::int64_t>(after.handler_wall_us - before.handler_wall_us);
      timing.host_cpu_us = static_cast<std::int64_t>(after.handler_cpu_us - before.handler_cpu_us);
    }
    report_.phases.push_back(std::move(timing));
    return done;
  }

  // Runs body(w) for every worker w — on its own thread when there are several, else on this
  // one — with a progress meter over `total` items (body calls Advance). Once a worker failed the
  // others stop at their next item (Stopped()); the first worker's error is returned.
  Status ForEachWorker(const std::string& step, std::int64_t total,
                       const std::function<Status(std::size_t)>& body) {
    meter_step_ = step;
    meter_total_ = total;
    meter_done_ = 0;
    meter_last_us_ = SteadyUs();
    stop_ = false;
    Report(0);
    std::vector<Status> results(workers_);
    if (workers_ == 1) {
      results[0] = body(0);
    } else {
      std::vector<std::thread> threads;
      for (std::size_t w = 0; w < workers_; ++w) {
        threads.emplace_back([&, w] {
          results[w] = body(w);
          if (!results[w].ok()) stop_ = true;
        });
      }
      for (auto& t : threads) t.join();
    }
    Report(meter_done_.load());
    for (Status& result : results) {
      if (!result.ok()) return result;
    }
    return Status::Ok();
  }
  bool Stopped() const { return stop_.load(std::memory_order_relaxed); }
  // Thread-safe; reports at most every 100 ms.
  void Advance(std::int64_t n = 1) {
    const std::int64_t done = meter_done_.fetch_add(n) + n;
    if (!options_.step_progress) return;
    const std::int64_t now = SteadyUs();
    std::int64_t last = meter_last_us_.load();
    if (now - last < 100'000 || !meter_last_us_.compare_exchange_strong(last, now)) return;
    Report(done);
  }
  void Report(std::int64_t done) {
    if (!options_.step_progress) return;
    std::lock_guard lock(meter_mutex_);
    options_.step_progress({meter_step_, done, meter_total_});
  }
  // A worker's counts into the report, after the join.
  void Absorb(Tally& t) {
    report_.sign_ons += t.sign_ons;
    report_.loads += t.loads;
    report_.loaded_fen += t.loaded_fen;
    report_.ed_purchases += t.ed_purchases;
    report_.ed_fen += t.ed_fen;
    report_.ep_purchases += t.ep_purchases;
    report_.ep_fen += t.ep_fen;
    report_.purchase_attempts += t.attempts;
    skipped_purchases_ += t.skipped;
    report_.purchases_uploaded += t.purchases_uploaded;
    report_.uploaded_fen += t.uploaded_fen;
    report_.terminals_settled += t.terminals_settled;
    load_latency_.Merge(t.load_latency);
    purchase_latency_.Merge(t.purchase_latency);
    day_end_latency_.Merge(t.day_end_latency);
    t = Tally{};
  }
  // The cards of worker w, in order.
  template <typename F>
  Status ForEachHolderOf(std::size_t w, std::size_t first, F&& f) {
    std::size_t c = first + (w + workers_ - first % workers_) % workers_;
    for (; c < holders_.size(); c += workers_) {
      if (Stopped()) return Status::Ok();
      if (Status done = f(c); !done.ok()) return done;
      Advance();
    }
    return Status::Ok();
  }

  // ---- The data directory, the databases and the key stores -----------------------------------
  Status Prepare() {
    if (options_.data_dir.empty()) return MakeError("no data directory");
    if (scale_ && (options_.purchases < kExceptionPurchases ||
                   options_.purchases > kMaxPurchasesPerCard * std::ssize(city_.cards))) {
      return MakeError("city scale: from 3 purchases to " + std::to_string(kMaxPurchasesPerCard) +
                       " per card");
    }
    const fs::path dir = options_.data_dir;
    std::error_code ec;
    for (const char* sub : {"bank", "agency", "pos", "cards"}) fs::remove_all(dir / sub, ec);
    for (const char* sub : {"bank", "agency", "pos", "cards"}) {
      fs::create_directories(dir / sub, ec);
      if (ec) return MakeError("cannot create " + (dir / sub).string() + ": " + ec.message());
    }
    report_.data_dir = fs::absolute(dir).string();
    const pos::DateTime now = LocalAt(NowUs());
    day_ = now.date;
    // The day runs on a simulated clock from 08:00 local time of today (00:00 UTC), so its
    // events are minutes apart as they would be; the host, the branch and the POS share it.
    {
      using namespace std::chrono;
      const sys_days d{year{day_.year} / month{static_cast<unsigned>(day_.month)} /
                       std::chrono::day{static_cast<unsigned>(day_.day)}};
      day_start_us_ = duration_cast<microseconds>(d.time_since_epoch()).count();
      clock_us_ = day_start_us_;
    }
    report_.day = day_.ToString();
    month_ = insurance::YearMonth{day_.year, day_.month};
    report_.month = insurance::MonthText(month_);

    // The bank: a TEST key store with the published test key set and each terminal's TMK
    // (imported before the terminal is registered, so the host keeps it).
    auto bank_keys = keys::CreateSoftwareKeyStore((dir / "bank" / "keys").string(),
                                                  options_.passphrase, /*test_only=*/true);
    if (!bank_keys.ok()) return StepError("bank key store", bank_keys);
    bank_keys_ = std::move(bank_keys).value();
    const auto& test_keys = issuance::TestKeySet::Embedded();
    for (const auto& role : issuance::TestKeySet::RequiredRoles()) {
      auto imported = bank_keys_->ImportTestKey(role, test_keys.MasterKey(role));
      if (!imported.ok()) return StepError("bank key store", imported);
    }
    // Each POS driver thread's terminals' TMKs in its own store (a software KeyStore is used by
    // one thread at a time; each real POS has its own secure element anyway).
    for (std::size_t w = 0; w < workers_; ++w) {
      const fs::path path = dir / "pos" / ("keys-" + std::to_string(w));
      auto pos_keys =
          keys::CreateSoftwareKeyStore(path.string(), options_.passphrase, /*test_only=*/true);
      if (!pos_keys.ok()) return StepError("POS key store", pos_keys);
      pos_keys_.push_back(std::move(pos_keys).value());
    }
    for (std::size_t i = 0; i < city_.terminals.size(); ++i) {
      const Terminal& t = city_.terminals[i];
      const std::string name = "tmk/" + ToHex(t.terminal_number);
      if (auto r = bank_keys_->ImportTestKey(name, t.tmk); !r.ok()) return StepError(name, r);
      if (auto r = pos_keys_[i % workers_]->ImportTestKey(name, t.tmk); !r.ok()) {
        return StepError(name, r);
      }
    }

    const std::string bank_url = options_.bank_database_url.empty()
                                     ? store::SqliteUrlForDataDir((dir / "bank").string())
                                     : options_.bank_database_url;
    auto bank_db = store::Database::Open(bank_url, {});
    if (!bank_db.ok()) return StepError("bank database", bank_db);
    bank_db_ = std::move(bank_db).value();
    for (auto* conn : {&bank_conn_, &gateway_conn_}) {
      auto c = bank_db_->Connect();
      if (!c.ok()) return StepError("bank database", c);
      *conn = std::move(c).value();
    }
    for (const store::MigrationSet* set : {&ledger::Migrations(), &host::Migrations(),
                                           &audit::Migrations(), &branch::Migrations()}) {
      if (auto m = store::Migrate(*bank_conn_, *set); !m.ok()) return StepError("bank schema", m);
    }
    const std::string agency_url = options_.agency_database_url.empty()
                                       ? store::SqliteUrlForDataDir((dir / "agency").string())
                                       : options_.agency_database_url;
    auto agency_db = store::Database::Open(agency_url, {});
    if (!agency_db.ok()) return StepError("agency database", agency_db);
    agency_db_ = std::move(agency_db).value();
    auto agency_conn = agency_db_->Connect();
    if (!agency_conn.ok()) return StepError("agency database", agency_conn);
    agency_conn_ = std::move(agency_conn).value();
    if (auto m = store::Migrate(*agency_conn_, insurance::Migrations()); !m.ok()) {
      return StepError("agency schema", m);
    }
    host_ = std::make_unique<host::Host>(*bank_conn_, *bank_keys_,
                                         host::Host::Options{[this] { return clock_us_.load(); }});
    // The batch key both sides hold for this run (never written anywhere).
    auto key = insurance::BatchKey::FromHex(ToHex(crypto::RandomBytes(32)));
    if (!key.ok()) return StepError("batch key", key);
    batch_key_.emplace(*key);
    Say("data directory " + report_.data_dir + ", business day " + report_.day + " (UTC+8)");
    return Status::Ok();
  }

  // ---- The agency: registry, the month, the allocation batch ----------------------------------
  Status AgencyMonth() {
    insurance::Registry registry(*agency_conn_);
    for (const Unit& u : city_.units) {
      auto added = registry.AddUnit({u.code, u.name, u.bank_account, kDemoArea});
      if (!added.ok()) return StepError("unit " + u.code, added);
    }
    for (const Person& p : city_.people) {
      insurance::Enrolment e;
      e.ssn = p.ssn;
      e.name = p.name;
      e.birth_date = p.birth_date;
      e.unit_code = p.unit_code;
      e.wage_base_fen = p.wage_fen;
      e.category =
          p.retired ? insurance::PersonCategory::kRetiree : insurance::PersonCategory::kEmployee;
      e.effective = month_.FirstDay();
      auto enrolled = registry.Enrol(e);
      if (!enrolled.ok()) return StepError("enrolling " + p.ssn, enrolled);
      if (p.retired) ++report_.retirees;
    }
    report_.units = static_cast<std::int64_t>(city_.units.size());
    report_.people = static_cast<std::int64_t>(city_.people.size());
    items_ = report_.people;
    unit_ = "people";

    auto policy = insurance::ParsePolicyJson(kEmbeddedExamplePolicy);
    if (!policy.ok()) return StepError("the example policy", policy);
    if (Status added = policies_.Add(*policy); !added.ok()) {
      return StepError("the example policy", added);
    }
    auto run = insurance::RunMonth(*agency_conn_, policies_, month_);
    if (!run.ok()) return StepError("the monthly run", run);
    report_.contributions_fen = run->employer_fen + run->employee_fen;
    auto batch = insurance::ExportAllocations(*agency_conn_, month_, *batch_key_);
    if (!batch.ok()) return StepError("the allocation batch", batch);
    batch_text_ = batch->text;
    report_.allocated_fen = batch->total_fen;
    report_.batch_lines = batch->count;
    const fs::path file = fs::path(options_.data_dir) / "agency" / (batch->batch_id + ".jsonl");
    if (Status w = WriteText(file, batch_text_); !w.ok()) return w;
    Say("agency: " + std::to_string(report_.units) + " units, " + std::to_string(report_.people) +
        " people (" + std::to_string(report_.retirees) + " retired) billed " +
        FormatFen(report_.contributions_fen) + " for " + report_.month + "; allocation batch " +
        batch->batch_id + ": " + std::to_string(report_.batch_lines) + " lines, " +
        FormatFen(report_.allocated_fen) + " (HMAC-signed)");
    return Status::Ok();
  }

  // ---- The bank imports the batch; the agency reconciles the acknowledgement ------------------
  Status BankImport() {
    auto ack = insurance::ImportAllocationBatch(
        batch_text_, *batch_key_,
        [this](const std::string& batch_id,
               const insurance::AllocationLine& line) -> Result<std::optional<std::string>> {
          auto credited = host_->CreditMedicalAccount(batch_id, line.person_id, line.amount_fen);
          if (credited.ok()) return std::optional<std::string>();
          if (credited.error().retryable ||
              credited.error().code == iso8583::ResponseCode::kSystemMalfunction) {
            return MakeError(credited.error().message);
          }
          return std::optional<std::string>(credited.error().message);
        });
    if (!ack.ok()) return StepError("importing the batch at the bank", ack);
    for (const auto& line : ack->lines) {
      if (line.outcome == insurance::LineOutcome::kCredited) {
        ++report_.credited_lines;
        report_.credited_fen += line.allocation.amount_fen;
        allocated_people_.push_back(line.allocation.person_id);
        credited_[line.allocation.person_id] += line.allocation.amount_fen;
      } else {
        ++report_.refused_lines;
      }
    }
    const std::string ack_text = insurance::WriteAcknowledgement(*ack, *batch_key_);
    auto reconciled = insurance::ReconcileAcknowledgement(*agency_conn_, ack_text, *batch_key_);
    if (!reconciled.ok()) return StepError("the agency's reconciliation", reconciled);
    items_ = report_.batch_lines;
    unit_ = "lines";
    Say("bank: batch imported, " + std::to_string(report_.credited_lines) +
        " medical accounts credited " + FormatFen(report_.credited_fen) + ", " +
        std::to_string(report_.refused_lines) + " refused; the agency reconciled the " +
        "acknowledgement (" + FormatFen(reconciled->credited_fen) + " credited)");
    return Status::Ok();
  }

  // ---- The bank issues cards and PSAMs, registers merchants and terminals ----------------------
  Status IssueAndRegister() {
    const fs::path dir = options_.data_dir;
    const auto& test_keys = issuance::TestKeySet::Embedded();
    for (const Merchant& m : city_.merchants) {
      auto r = host_->RegisterMerchant({m.id, m.name, m.grade_text});
      if (!r.ok()) return StepError("merchant " + m.id, r);
    }
    for (std::size_t i = 0; i < city_.terminals.size(); ++i) {
      const Terminal& t = city_.terminals[i];
      host::TerminalRegistration registration{t.terminal_number, t.merchant_id, t.psam_serial};
      registration.terminal_id = t.terminal_id;
      if (auto r = host_->RegisterTerminal(registration); !r.ok()) {
        return StepError("terminal " + t.terminal_id, r);
      }
      auto station = std::make_unique<Station>();
      station->city_terminal = &t;
      station->merchant = &city_.merchants[i];
      station->worker = i % workers_;
      const fs::path station_dir = dir / "pos" / t.terminal_id;
      fs::create_directories(station_dir);
      // At city scale the PSAM images are not fsync'd: hundreds of PSAMs, each with its own
      // EEPROM in reality, would queue on this machine's one disk.
      auto medium = nvm::OpenFileMedium((station_dir / "psam.img").string(),
                                        scale_ ? nvm::SyncMode::kNone : nvm::SyncMode::kFsync);
      if (!medium.ok()) return StepError("PSAM image", medium);
      auto psam = issuance::IssueTestPsam(test_keys, std::move(medium).value(), t.psam_serial,
                                          t.terminal_number);
      if (!psam.ok()) return StepError("issuing the PSAM of " + t.terminal_id, psam);
      station->psam = std::move(psam).value();
      worker_stations_[station->worker].push_back(station.get());
      stations_.push_back(std::move(station));
    }
    report_.merchants = static_cast<std::int64_t>(city_.merchants.size());
    report_.terminals = report_.psams = static_cast<std::int64_t>(city_.terminals.size());

    holders_.resize(city_.cards.size());
    for (std::size_t c = 0; c < city_.cards.size(); ++c) {
      holders_[c].card = &city_.cards[c];
      holders_[c].person = &city_.people[c];  // people[i] holds cards[i]
      holders_[c].asn = ToHex(city_.cards[c].asn);
    }
    // The day's exceptions use the first four cards; at city scale the first kBranchCards go
    // through the branch, the rest through the card bureau.
    const std::size_t at_branch =
        scale_ ? std::min(kBranchCards, holders_.size()) : holders_.size();
    branch::BranchServices branch(*bank_conn_, *bank_keys_, BranchOptions());
    const branch::Actor teller{.login = "demo-teller", .from = "127.0.0.1", .branch = kBranch};
    for (std::size_t c = 0; c < at_branch; ++c) {
      Holder& holder = holders_[c];
      const Card& card = *holder.card;
      auto medium = nvm::OpenFileMedium((dir / "cards" / (holder.asn + ".img")).string());
      if (!medium.ok()) return StepError("card image", medium);
      auto chip = issuance::IssueTestCard(test_keys, std::move(medium).value(),
                                          issuance::TestHolder(card.asn, card.pin));
      if (!chip.ok()) return StepError("issuing card " + holder.asn, chip);
      holder.chip = std::move(chip).value();
      auto applied =
          branch.Apply(teller, {card.person_ssn, "demo-holder-" + std::to_string(c + 1), kBranch});
      if (!applied.ok()) return StepError("card application for " + card.person_ssn, applied);
      auto issued =
          branch.Issue(teller, {.application_id = applied->application_id, .asn = holder.asn});
      if (!issued.ok()) return StepError("registering card " + holder.asn, issued);
      auto active = branch.Activate(teller, {.asn = holder.asn});
      if (!active.ok()) return StepError("activating card " + holder.asn, active);
    }
    report_.branch_cards = static_cast<std::int64_t>(at_branch);
    if (at_branch < holders_.size()) {
      if (Status bureau = BureauIssuance(at_branch); !bureau.ok()) return bureau;
    }
    report_.cards = static_cast<std::int64_t>(holders_.size());
    items_ = report_.cards;
    unit_ = "cards";
    Say("bank: " + std::to_string(report_.cards) + " TEST cards issued and activated (" +
        std::to_string(report_.branch_cards) + " at branch " + kBranch +
        (report_.bureau_cards > 0
             ? ", " + std::to_string(report_.bureau_cards) +
                   " by the card bureau: in memory, one issuance log imported by the host"
             : std::string()) +
        "); " + std::to_string(report_.merchants) + " merchants, " +
        std::to_string(report_.terminals) + " terminals with TEST PSAMs registered");
    return Status::Ok();
  }

  // A card bureau's mass issuance (docs/issuance.md "The issuance log"): the cards from `first`
  // on are personalised in memory by the workers, and the host registers them all from the
  // bureau's issuance log in one transaction (Host::ImportIssuanceLog, test cards accepted).
  Status BureauIssuance(std::size_t first) {
    const auto& test_keys = issuance::TestKeySet::Embedded();
    const std::int64_t count = std::ssize(holders_) - static_cast<std::int64_t>(first);
    Status issued = ForEachWorker("issuing cards", count, [&](std::size_t w) {
      return ForEachHolderOf(w, first, [&](std::size_t c) -> Status {
        Holder& holder = holders_[c];
        auto chip =
            issuance::IssueTestCard(test_keys, std::make_unique<SlotMedium>(),
                                    issuance::TestHolder(holder.card->asn, holder.card->pin));
        if (!chip.ok()) return StepError("issuing card " + holder.asn, chip);
        holder.chip = std::move(chip).value();
        return Status::Ok();
      });
    });
    if (!issued.ok()) return issued;

    // The records as the issuance station writes them (never a key or a PIN); TestHolder's
    // validity; the master keys' check values.
    std::string keys = "[";
    for (const std::string& role : issuance::TestKeySet::RequiredRoles()) {
      auto kcv = crypto::Kcv(test_keys.MasterKey(role));
      if (!kcv.ok()) return StepError("key check value", kcv);
      keys += std::string(keys.size() > 1 ? "," : "") + R"({"kcv":")" + ToHex(*kcv) +
              R"(","name":")" + role + R"(","version":1})";
    }
    keys += "]";
    const std::string time = IsoUtc(clock_us_.load());
    const card::HolderData validity = issuance::TestHolder(holders_[first].card->asn, "");
    const std::string valid = R"(","valid_from":")" + validity.start_date.ToString() +
                              R"(","valid_to":")" + validity.expiry_date.ToString() + "\"}\n";
    std::string log;
    log.reserve(static_cast<std::size_t>(count) * (300 + keys.size()));
    for (std::size_t c = first; c < holders_.size(); ++c) {
      const Holder& h = holders_[c];
      const Bytes& asn = h.card->asn;
      log += R"({"asn":")" + h.asn + R"(","chip_serial":")" + ToHex(crypto::AsnFactor(asn)) +
             R"(","date":")" + day_.ToString() + R"(","event":"issued","format":1,"holder":")" +
             h.person->ssn + R"(","key_version":1,"keys":)" + keys +
             R"(,"kind":"card","operator":"demo-bureau","store":"test-keyset:embedded",)" +
             R"("test":true,"time":")" + time + valid;
    }
    const fs::path file = fs::path(options_.data_dir) / "cards" / "issuance-log.jsonl";
    if (Status w = WriteText(file, log); !w.ok()) return w;
    std::error_code ec;
    fs::permissions(file, fs::perms::owner_read | fs::perms::owner_write, ec);
    auto imported = host_->ImportIssuanceLog(log, /*accept_test_cards=*/true);
    if (!imported.ok()) return StepError("importing the issuance log", imported);
    if (imported->cards != count) {
      return MakeError("the host registered " + std::to_string(imported->cards) + " of the " +
                       std::to_string(count) + " cards of the issuance log");
    }
    report_.bureau_cards = count;
    return Status::Ok();
  }

  // ---- The host's gateway on loopback; every POS signs on over ISO 8583/TCP ---------------------
  Status OpenTerminals() {
    gateway_ = std::make_unique<host::TerminalGateway>(
        *gateway_conn_, *bank_keys_,
        host::GatewayOptions{[this] { return clock_us_.load(); }, 8192});
    server::Options server_options;
    server_options.address = "127.0.0.1";
    server_options.port = 0;
    // The terminals stay connected all day, as on a leased line: at city scale the purchases
    // (offline) take longer than the server's default idle timeout.
    server_options.idle_timeout = std::chrono::hours(24);
    auto server = server::Server::Start(server_options, [this](std::span<const Bytes> frames) {
      std::lock_guard lock(key_store_mutex_);
      std::vector<host::GatewayReply> answers = gateway_->HandleGroup(frames);
      std::vector<server::Reply> replies;
      replies.reserve(answers.size());
      for (auto& answer : answers) replies.push_back({std::move(answer.frame), answer.close});
      return replies;
    });
    if (!server.ok()) return StepError("starting the terminal gateway", server);
    server_ = std::move(server).value();
    port_ = server_->port();

    std::vector<Tally> tallies(workers_);
    Status opened = ForEachWorker("signing on", std::ssize(stations_), [&](std::size_t w) {
      for (Station* s : worker_stations_[w]) {
        if (Stopped()) break;
        if (Status open = OpenTerminal(*s, tallies[w]); !open.ok()) return open;
        Advance();
      }
      return Status::Ok();
    });
    for (Tally& t : tallies) Absorb(t);
    if (!opened.ok()) return opened;
    items_ = report_.sign_ons;
    unit_ = "sign-ons";
    Say("host: terminal gateway listening on 127.0.0.1:" + std::to_string(port_) + "; " +
        std::to_string(report_.sign_ons) + " POS signed on over ISO 8583/TCP");
    return Status::Ok();
  }

  // One POS: journal, TCP link with the worker's key store, readers, sign-on.
  Status OpenTerminal(Station& station, Tally& tally) {
    Station* s = &station;
    const fs::path dir = options_.data_dir;
    {
      const Terminal& t = *s->city_terminal;
      auto journal = pos::Journal::Open((dir / "pos" / t.terminal_id / "journal.db").string());
      if (!journal.ok()) return StepError("journal of " + t.terminal_id, journal);
      s->journal = std::move(journal).value();
      terminal::TcpConfig tcp;
      tcp.host = "127.0.0.1";
      tcp.port = port_;
      auto transport = terminal::MakeTcpTransport(tcp);
      if (!transport.ok()) return StepError("TCP transport", transport);
      s->transport = std::move(transport).value();
      terminal::HostLinkConfig link;
      link.terminal_id = t.terminal_id;
      link.merchant_id = t.merchant_id;
      link.terminal_number = t.terminal_number;
      auto state = s->journal->LinkState();
      if (!state.ok()) return StepError("journal of " + t.terminal_id, state);
      pos::Journal* journal_ptr = s->journal.get();
      s->link = std::make_unique<terminal::HostLink>(
          link, *s->transport, *pos_keys_[s->worker], *state,
          [journal_ptr](const terminal::LinkState& st) { (void)journal_ptr->SaveLinkState(st); });
      reader::Reader* card_reader = nullptr;
      if (options_.pcsc && s == stations_.front().get()) {
        if (Status opened = OpenPcscReaders(*s); !opened.ok()) return opened;
        card_reader = s->pcsc_card_reader.get();
      } else {
        s->card_slot = std::make_unique<reader::InProcessReader>("card reader " + t.terminal_id);
        s->card_reader = std::make_unique<TearingReader>(*s->card_slot);
        s->psam_reader =
            std::make_unique<reader::InProcessReader>("PSAM reader " + t.terminal_id, s->psam);
        card_reader = s->card_reader.get();
      }
      s->pos = std::make_unique<pos::Terminal>(
          pos::TerminalIdentity{t.merchant_id, t.terminal_id, s->merchant->name, t.terminal_number,
                                s->merchant->facility_code},
          *card_reader, *s->psam_reader, *s->journal, s->link.get(),
          [this] { return LocalAt(clock_us_.load()); });
      auto signed_on = s->link->SignOn();
      if (!signed_on.ok()) return StepError("sign-on of " + t.terminal_id, signed_on);
      if (!signed_on->approved()) {
        return MakeError("sign-on of " + t.terminal_id +
                         " refused: " + std::string(iso8583::ResponseCodeText(signed_on->code)));
      }
      ++tally.sign_ons;
    }
    return Status::Ok();
  }

  // ---- Cardholders at a POS --------------------------------------------------------------------
  // The PSAM into vpcd slot 1 for good, PC/SC readers on both slots.
  Status OpenPcscReaders(Station& s) {
    s.vpcd_psam = std::make_unique<VpcdSlot>(s.psam, 1);
    auto psam = reader::PcscReader::Open(reader::VpcdReaderName(1));
    if (!psam.ok()) return StepError("PC/SC reader", psam);
    auto present = (*psam)->WaitForCard(std::chrono::seconds(5));
    if (!present.ok() || !*present) {
      return MakeError("the PSAM did not appear in " + reader::VpcdReaderName(1));
    }
    s.psam_reader = std::move(psam).value();
    auto card = reader::PcscReader::Open(reader::VpcdReaderName(0));
    if (!card.ok()) return StepError("PC/SC reader", card);
    s.pcsc_card_reader = std::move(card).value();
    Say("readers: " + s.city_terminal->terminal_id + " reads cards in \"" +
        s.pcsc_card_reader->Name() + "\" and its PSAM in \"" + s.psam_reader->Name() +
        "\" (pcscd + vpcd); the other terminals in-process");
    return Status::Ok();
  }

  Status Insert(Station& s, Holder& h) {
    if (s.pcsc()) {
      s.vpcd_card = std::make_unique<VpcdSlot>(h.chip, 0);
      ++report_.pcsc_insertions;
      auto present = s.pcsc_card_reader->WaitForCard(std::chrono::seconds(5));
      if (!present.ok() || !*present) {
        return MakeError("card " + h.asn + " did not appear in " + s.pcsc_card_reader->Name());
      }
      return Status::Ok();
    }
    if (Status in = s.card_slot->InsertCard(h.chip); !in.ok()) return StepError("inserting", in);
    return Status::Ok();
  }
  void Remove(Station& s) {
    if (s.pcsc()) {
      (void)s.pcsc_card_reader->Disconnect();
      s.vpcd_card.reset();
    } else {
      s.card_slot->RemoveCard();
    }
  }
  Station& StationFor(std::size_t n) { return *stations_[n % stations_.size()]; }

  // Worker w's terminal for a cardholder's visit (n: any number the visit is known by). In the
  // scripted day (one worker) it is StationFor(n).
  Station& StationOf(std::size_t w, std::size_t n) {
    const std::vector<Station*>& mine = worker_stations_[w];
    return *mine[n % mine.size()];
  }

  Status Loads() {
    // Between 08:00 and 09:00: a minute per cardholder in the scripted day, the hour shared out
    // at city scale.
    const std::int64_t step =
        scale_ ? std::max<std::int64_t>(1, kHourUs / (std::ssize(holders_) + 1)) : kMinuteUs;
    std::vector<Tally> tallies(workers_);
    Status loaded = ForEachWorker("online loads", std::ssize(holders_), [&](std::size_t w) {
      return ForEachHolderOf(w, 0, [&](std::size_t c) -> Status {
        Holder& h = holders_[c];
        // The medical account holds what the batch credited (nothing else has moved it yet).
        const auto credited = credited_.find(h.person->ssn);
        const std::int64_t available = credited == credited_.end() ? 0 : credited->second;
        // Most of it to the passbook (ED), a tenth to the purse (EP), whole yuan.
        const auto ed = static_cast<std::uint32_t>(available * 6 / 10 / 100 * 100);
        const auto ep = static_cast<std::uint32_t>(available / 10 / 100 * 100);
        Station& s = StationOf(w, c / workers_);
        clock_us_ += step;
        if (Status in = Insert(s, h); !in.ok()) return in;
        for (auto [wallet, amount] : {std::pair{Wallet::kEd, ed}, std::pair{Wallet::kEp, ep}}) {
          if (amount == 0) continue;
          const std::int64_t start = SteadyUs();
          auto load = s.pos->LoadOnline(wallet, amount, h.card->pin);
          tallies[w].load_latency.Add(SteadyUs() - start);
          if (!load.ok()) {
            Remove(s);
            return StepError("online load of " + h.asn, load);
          }
          (wallet == Wallet::kEd ? h.ed : h.ep) = load->balance_after;
          ++tallies[w].loads;
          tallies[w].loaded_fen += amount;
        }
        Remove(s);
        return Status::Ok();
      });
    });
    for (Tally& t : tallies) Absorb(t);
    if (!loaded.ok()) return loaded;
    items_ = report_.loads;
    unit_ = "loads";
    Say("cardholders: " + std::to_string(report_.loads) + " online loads, " +
        FormatFen(report_.loaded_fen) + " from medical accounts to cards (MAC1/MAC2/TAC)");
    return Status::Ok();
  }

  // A purchase that should go through.
  Status Buy(Station& s, Holder& h, Wallet wallet, std::uint32_t amount, Tally& tally) {
    clock_us_ += step_us_;
    if (Status in = Insert(s, h); !in.ok()) return in;
    const std::int64_t start = SteadyUs();
    auto receipt = s.pos->Purchase(
        {wallet, amount, wallet == Wallet::kEd ? std::optional(h.card->pin) : std::nullopt});
    tally.purchase_latency.Add(SteadyUs() - start);
    Remove(s);
    ++tally.attempts;
    if (!receipt.ok()) return StepError("purchase by " + h.asn, receipt);
    (wallet == Wallet::kEd ? h.ed : h.ep) = receipt->balance_after;
    if (wallet == Wallet::kEd) {
      ++tally.ed_purchases;
      tally.ed_fen += amount;
    } else {
      ++tally.ep_purchases;
      tally.ep_fen += amount;
    }
    return Status::Ok();
  }

  // A purchase the terminal must refuse with `expected`; nothing moves.
  // on_the_day: one of the day's purchase attempts (counted, and refused when it is).
  Result<bool> Refused(Station& s, Holder& h, const pos::PurchaseOrder& order,
                       pos::ErrorKind expected, bool on_the_day = true) {
    clock_us_ += kMinuteUs;
    if (Status in = Insert(s, h); !in.ok()) return in.error();
    auto receipt = s.pos->Purchase(order);
    Remove(s);
    if (on_the_day && !receipt.ok()) ++report_.purchases_refused;
    if (receipt.ok()) return false;
    return receipt.error().kind == expected;
  }

  // 09:00 to about 15:00: everyone but the torn-purchase card visits merchants, in any order
  // (the host clears a card's purchases whichever terminal uploads first), paying from the
  // purse (EP, no PIN) on about a third of the visits and from the passbook (ED, PIN) on the
  // rest, so one card often pays from both in a day.
  Status ScriptedPurchases() {
    // Two or three visits per cardholder.
    step_us_ = std::min<std::int64_t>(
        3 * kMinuteUs, 6 * kHourUs / static_cast<std::int64_t>(3 * holders_.size() + 1));
    Tally tally;
    for (std::size_t c = 0; c < holders_.size(); ++c) {
      if (c == kTornHolder) continue;
      Holder& h = holders_[c];
      for (std::size_t visit = 0; visit < 2 + c % 2; ++visit) {
        Station& s = StationFor((c * 3 + visit * 5 + city_.seed % 7) % stations_.size());
        const Wallet wallet = (c + visit) % 3 == 1 ? Wallet::kEp : Wallet::kEd;
        const std::uint32_t held = wallet == Wallet::kEd ? h.ed : h.ep;
        // 3.00 .. 62.00 yuan, never more than the wallet holds.
        const auto wanted =
            static_cast<std::uint32_t>(300 + ((c * 7 + visit * 13 + city_.seed) % 60) * 100);
        const std::uint32_t amount = std::min(wanted, held / 3);
        if (amount == 0) continue;
        if (Status bought = Buy(s, h, wallet, amount, tally); !bought.ok()) {
          Absorb(tally);
          return bought;
        }
      }
    }
    Absorb(tally);
    return Status::Ok();
  }

  // City scale: the day's purchase attempts but the exceptions' three, shared out over every
  // cardholder but the torn-purchase card; each worker's cardholders visit its terminals in
  // rounds (everyone's first visit, then everyone's second...), so a card's purchases reach
  // several terminals and arrive at the host out of order.
  Status ScalePurchases() {
    const std::int64_t attempts = options_.purchases - kExceptionPurchases;
    const std::int64_t payers = std::ssize(holders_) - 1;
    const std::int64_t base = attempts / payers, extra = attempts % payers;
    auto visits_of = [&](std::size_t c) {
      const auto rank = static_cast<std::int64_t>(c < kTornHolder ? c : c - 1);
      return base + (rank < extra ? 1 : 0);
    };
    step_us_ = std::max<std::int64_t>(1, 6 * kHourUs / (attempts + 1));
    std::vector<Tally> tallies(workers_);
    Status done = ForEachWorker("purchases", attempts, [&](std::size_t w) -> Status {
      Tally& tally = tallies[w];
      for (std::int64_t round = 0; round <= base; ++round) {
        for (std::size_t c = w; c < holders_.size(); c += workers_) {
          if (Stopped()) return Status::Ok();
          const std::int64_t visits = visits_of(c);
          if (c == kTornHolder || round >= visits) continue;
          Holder& h = holders_[c];
          const auto r = static_cast<std::size_t>(round);
          Station& s = StationOf(w, c / workers_ * 3 + r * 7 + city_.seed % 7);
          Wallet wallet = (c + r) % 3 == 1 ? Wallet::kEp : Wallet::kEd;
          // 3.00 .. 62.00 yuan, and at most the wallet's share of the visits still to come, so
          // every visit can pay.
          const auto wanted =
              static_cast<std::uint32_t>(300 + ((c * 7 + r * 13 + city_.seed) % 60) * 100);
          const auto share = static_cast<std::uint32_t>(visits - round + 1);
          std::uint32_t amount = std::min(wanted, (wallet == Wallet::kEd ? h.ed : h.ep) / share);
          if (amount == 0) {
            wallet = wallet == Wallet::kEd ? Wallet::kEp : Wallet::kEd;
            amount = std::min(wanted, (wallet == Wallet::kEd ? h.ed : h.ep) / share);
          }
          if (amount == 0) {
            ++tally.skipped;
          } else if (Status bought = Buy(s, h, wallet, amount, tally); !bought.ok()) {
            return bought;
          }
          Advance();
        }
      }
      return Status::Ok();
    });
    for (Tally& t : tallies) Absorb(t);
    return done;
  }

  Status TheDay() {
    if (holders_.size() < 4) return MakeError("the demo needs at least 4 cards (--cards)");
    clock_us_ = day_start_us() + kHourUs;
    if (Status made = scale_ ? ScalePurchases() : ScriptedPurchases(); !made.ok()) return made;
    Say("the day: " + std::to_string(report_.ed_purchases) + " ED purchases (PIN) " +
        FormatFen(report_.ed_fen) + ", " + std::to_string(report_.ep_purchases) + " EP purchases " +
        FormatFen(report_.ep_fen));
    report_.purchase_attempts += kExceptionPurchases;

    // A wrong PIN: refused by the card, which counts it.
    {
      Holder& h = holders_[kWrongPinHolder];
      std::string wrong = h.card->pin;
      wrong[0] = wrong[0] == '9' ? '0' : static_cast<char>(wrong[0] + 1);
      auto refused =
          Refused(StationFor(0), h, {Wallet::kEd, 100, wrong}, pos::ErrorKind::kWrongPin);
      if (!refused.ok()) return refused.error();
      report_.wrong_pin_refused = *refused;
      Say(std::string("exception: wrong PIN on card ") + h.asn + " → " +
          (*refused ? "refused by the card" : "NOT refused as a wrong PIN"));
    }
    // More than the purse holds.
    {
      Holder& h = holders_[kPoorHolder];
      auto refused = Refused(StationFor(1), h, {Wallet::kEp, h.ep + 100, std::nullopt},
                             pos::ErrorKind::kInsufficientBalance);
      if (!refused.ok()) return refused.error();
      report_.insufficient_balance_refused = *refused;
      Say(std::string("exception: EP purchase of ") + FormatFen(h.ep + 100) + " on card " + h.asn +
          " holding " + FormatFen(h.ep) + " → " +
          (*refused ? "refused, insufficient balance" : "NOT refused for the balance"));
    }
    // Torn: the card is pulled right after it was debited; the terminal recovers it once, when the
    // card comes back.
    {
      Holder& h = holders_[kTornHolder];
      Station& s = *stations_.back();
      if (s.pcsc()) return MakeError("the torn purchase needs a second terminal (in-process)");
      const std::uint32_t amount = std::min<std::uint32_t>(2345, h.ed / 2);
      report_.torn_card = h.asn;
      report_.torn_amount_fen = amount;
      if (Status in = Insert(s, h); !in.ok()) return in;
      s.card_reader->TearAfterNextDebit();
      auto torn = s.pos->Purchase({Wallet::kEd, amount, h.card->pin});
      Remove(s);  // the reader is empty already; this only makes sure
      if (torn.ok() || torn.error().kind != pos::ErrorKind::kTornPurchase) {
        return MakeError("the pulled card's purchase was not torn: " +
                         (torn.ok() ? std::string("it completed") : torn.error().message));
      }
      for (int attempt = 0; attempt < 2; ++attempt) {  // the second finds nothing left to do
        if (Status in = Insert(s, h); !in.ok()) return in;
        auto recovered = s.pos->RecoverPending();
        Remove(s);
        if (!recovered.ok()) return StepError("torn-purchase recovery", recovered);
        for (const auto& p : recovered->purchases) {
          if (p.outcome == pos::RecoveryOutcome::kCompleted) {
            ++report_.torn_recoveries;
            h.ed = p.record.balance_after();
            ++report_.ed_purchases;
            report_.ed_fen += p.record.amount;
          }
        }
      }
      Say("exception: card " + h.asn + " pulled mid-purchase (" + FormatFen(amount) +
          ", debited, answer lost) → torn; recovered " + std::to_string(report_.torn_recoveries) +
          " time(s) when it came back");
    }
    // Lost: reported at the branch; the terminals learn it at their blacklist download.
    {
      Holder& h = holders_[kLostHolder];
      report_.lost_card = h.asn;
      clock_us_ = day_start_us() + 8 * kHourUs;  // 16:00
      branch::BranchServices branch(*bank_conn_, *bank_keys_, BranchOptions());
      std::lock_guard lock(key_store_mutex_);
      auto lost =
          branch.ReportLoss({.login = "demo-teller", .from = "127.0.0.1", .branch = kBranch},
                            {.asn = h.asn, .reason = "lost on the bus"});
      if (!lost.ok()) return StepError("reporting card " + h.asn + " lost", lost);
      Say("branch " + std::string(kBranch) + ": card " + h.asn + " reported lost → " +
          std::string(branch::CardStateName(lost->state)) + ", on the blacklist");
    }
    items_ = report_.purchase_attempts;
    unit_ = "purchase attempts";
    return Status::Ok();
  }

  // ---- Day end at every terminal ----------------------------------------------------------------
  Status DayEnd() {
    clock_us_ = day_start_us() + 10 * kHourUs;  // 18:00
    // A minute per terminal; at city scale at most two hours for them all.
    const std::int64_t step =
        std::min(kMinuteUs, 2 * kHourUs / (static_cast<std::int64_t>(stations_.size()) + 1));
    const std::int64_t start = SteadyUs();
    std::vector<Tally> tallies(workers_);
    Status ended = ForEachWorker("day end", std::ssize(stations_), [&](std::size_t w) -> Status {
      for (Station* s : worker_stations_[w]) {
        if (Stopped()) break;
        clock_us_ += step;
        const std::int64_t began = SteadyUs();
        auto report = s->pos->DayEnd();
        tallies[w].day_end_latency.Add(SteadyUs() - began);
        if (!report.ok()) return StepError("day end of " + s->city_terminal->terminal_id, report);
        tallies[w].purchases_uploaded += static_cast<std::int64_t>(report->purchases_uploaded);
        tallies[w].uploaded_fen += static_cast<std::int64_t>(report->totals.purchase_amount);
        s->psam_signed_fen += static_cast<std::int64_t>(report->totals.purchase_amount);
        if (report->psam_cleared) ++tallies[w].terminals_settled;
        Advance();
      }
      return Status::Ok();
    });
    for (Tally& t : tallies) Absorb(t);
    if (!ended.ok()) return ended;
    const std::int64_t wall_us = SteadyUs() - start;
    report_.cleared_per_second = wall_us > 0 ? static_cast<double>(report_.purchases_uploaded) *
                                                   1e6 / static_cast<double>(wall_us)
                                             : 0.0;
    items_ = report_.purchases_uploaded;
    unit_ = "purchases cleared";
    for (auto& s : stations_) {
      auto settlements = host_->Settlements(s->city_terminal->terminal_number);
      if (!settlements.ok()) return StepError("settlements", settlements);
      for (const auto& st : *settlements) {
        if (st.status != "acknowledged") ++report_.settlement_exceptions;
      }
    }
    Say("day end: " + std::to_string(report_.terminals_settled) + "/" +
        std::to_string(stations_.size()) + " terminals uploaded and settled, " +
        std::to_string(report_.purchases_uploaded) + " purchases " +
        FormatFen(report_.uploaded_fen) + " signed by the PSAMs, " +
        std::to_string(report_.settlement_exceptions) + " settlement exceptions");
    return Status::Ok();
  }

  // ---- The next morning: the finder tries the lost card; the host's books ----------------------
  Status AfterDayEnd() {
    clock_us_ = day_start_us() + 24 * kHourUs + 30 * kMinuteUs;  // 08:30 the next morning
    {
      Holder& h = holders_[kLostHolder];
      auto refused = Refused(StationFor(3), h, {Wallet::kEd, 500, h.card->pin},
                             pos::ErrorKind::kBlacklisted, /*on_the_day=*/false);
      if (!refused.ok()) return refused.error();
      report_.lost_card_refused = *refused;
      Say(std::string("exception: the lost card ") + h.asn + " tried at " +
          StationFor(3).city_terminal->terminal_id + " → " +
          (*refused ? "refused, blacklisted (downloaded at day end)" : "NOT refused"));
    }
    auto problems = host_->CheckHost();
    if (!problems.ok()) return StepError("host check", problems);
    report_.host_check_problems = *problems;
    auto queue = host_->ReviewQueue();
    if (!queue.ok()) return StepError("review queue", queue);
    report_.suspense_items = static_cast<std::int64_t>(queue->size());
    items_ = std::ssize(stations_);
    unit_ = "terminals";

    const fs::path dir = options_.data_dir;
    auto merchant_csv = host_->MerchantSettlementCsv();
    if (!merchant_csv.ok()) return StepError("merchant settlement", merchant_csv);
    report_.merchant_settlement_csv = (dir / "merchant-settlement.csv").string();
    if (Status w = WriteText(report_.merchant_settlement_csv, *merchant_csv); !w.ok()) return w;
    std::string terminal_csv =
        "terminal,day,first_serial,last_serial,psam_count,psam_fen,uploaded_count,uploaded_fen,"
        "status\n";
    for (auto& s : stations_) {
      auto settlements = host_->Settlements(s->city_terminal->terminal_number);
      if (!settlements.ok()) return StepError("settlements", settlements);
      for (const auto& st : *settlements) {
        terminal_csv += st.terminal_number + "," + st.day + "," + std::to_string(st.first_serial) +
                        "," + std::to_string(st.last_serial) + "," + std::to_string(st.psam_count) +
                        "," + std::to_string(st.psam_amount) + "," +
                        std::to_string(st.uploaded_count) + "," +
                        std::to_string(st.uploaded_amount) + "," + st.status + "\n";
      }
    }
    report_.terminal_settlement_csv = (dir / "terminal-settlement.csv").string();
    if (Status w = WriteText(report_.terminal_settlement_csv, terminal_csv); !w.ok()) return w;
    Say("host: ledger check " +
        (report_.host_check_problems.empty()
             ? std::string("clean")
             : std::to_string(report_.host_check_problems.size()) + " problem(s)") +
        ", " + std::to_string(report_.suspense_items) + " in suspense; settlement CSVs written");
    return Status::Ok();
  }

  // ---- The agency imports the day's consumption detail ------------------------------------------
  Status Consumption() {
    auto detail = insurance::ExportConsumption(*bank_conn_, day_);
    if (!detail.ok()) return StepError("consumption detail", detail);
    const std::string text = insurance::WriteConsumptionDetail(*detail, *batch_key_);
    const fs::path file =
        fs::path(options_.data_dir) / "agency" / ("consumption-" + day_.ToString() + ".jsonl");
    if (Status w = WriteText(file, text); !w.ok()) return w;
    auto imported = insurance::ImportConsumption(*agency_conn_, text, *batch_key_);
    if (!imported.ok()) return StepError("importing the consumption detail", imported);
    report_.consumption_lines = imported->count;
    report_.consumption_fen = imported->total_fen;
    items_ = report_.consumption_lines;
    unit_ = "lines";
    // The card payment the agency recorded on the inpatient claim, if any.
    if (claim_id_ != 0) {
      insurance::ClaimStore claims(*agency_conn_, policies_);
      auto claim = claims.Find(claim_id_);
      if (!claim.ok()) return StepError("the inpatient claim", claim);
      if (claim->card_payment) report_.claim_card_reference = claim->card_payment->Reference();
    }
    const std::string& claim_payment = report_.claim_card_reference;
    for (const auto& line : detail->lines) {
      if (line.reference.rfind(report_.torn_card + "/", 0) == 0 &&
          line.amount_fen == report_.torn_amount_fen) {
        ++report_.torn_uploaded;
      }
      if (!claim_payment.empty() && line.reference == claim_payment &&
          line.person_id == report_.claim_person && line.merchant_id == claim_hospital_id_) {
        ++report_.claim_card_cleared;
        report_.claim_card_cleared_fen += line.amount_fen;
      }
    }
    Say("agency: consumption detail of " + day_.ToString() + " imported, " +
        std::to_string(report_.consumption_lines) + " purchases " +
        FormatFen(report_.consumption_fen));
    return Status::Ok();
  }

  // ---- The inpatient claim ---------------------------------------------------------------------
  // Worker w's grade-3 hospital terminal: its first (the scripted day's one worker: the city's
  // first); nullptr when it has none.
  Station* Grade3HospitalOf(std::size_t w) const {
    for (Station* s : worker_stations_[w]) {
      if (s->merchant->kind == MerchantKind::kHospital && s->merchant->grade == 3) return s;
    }
    return nullptr;
  }

  // Who is discharged where: the last retired cardholder (else the last cardholder), never the
  // lost card nor the torn-purchase card, whose worker has a grade-3 hospital (a city without
  // one: the first terminal's merchant, worker 0's); the hospital is that worker's first, so the
  // card and the terminal are one worker's, as at every visit of the day.
  struct Discharged {
    Holder* holder = nullptr;
    Station* station = nullptr;
  };
  Result<Discharged> PatientAndHospital() {
    std::vector<Station*> hospitals(workers_);
    bool any = false;
    for (std::size_t w = 0; w < workers_; ++w) {
      hospitals[w] = Grade3HospitalOf(w);
      any = any || hospitals[w] != nullptr;
    }
    if (!any) hospitals[0] = stations_.front().get();
    Discharged chosen;
    bool retired = false;
    for (std::size_t c = 0; c < holders_.size(); ++c) {
      Station* hospital = hospitals[c % workers_];
      if (c == kLostHolder || c == kTornHolder || hospital == nullptr) continue;
      if (holders_[c].person->retired) {
        chosen = {&holders_[c], hospital};
        retired = true;
      } else if (!retired) {
        chosen = {&holders_[c], hospital};
      }
    }
    if (chosen.holder == nullptr) return MakeError("no cardholder to discharge from a hospital");
    return chosen;
  }

  // The stay: pneumonia, admitted on the month's 1st, discharged today; 5,900.00 billed (ward
  // bed and a covered drug, a partly covered drug, a single-room supplement not covered).
  insurance::Claim InpatientStay(const Person& patient) const {
    insurance::Claim claim;
    claim.claim_id = "DEMO-" + day_.ToString() + "-1";
    claim.person_id = patient.ssn;
    claim.category = patient.retired ? insurance::PersonCategory::kRetiree
                                     : insurance::PersonCategory::kEmployee;
    const Date admission = month_.FirstDay();
    const bool before_birthday = std::pair{admission.month, admission.day} <
                                 std::pair{patient.birth_date.month, patient.birth_date.day};
    claim.age = admission.year - patient.birth_date.year - (before_birthday ? 1 : 0);
    claim.grade = insurance::FacilityGrade::kGrade3;
    claim.kind = insurance::ClaimKind::kInpatient;
    claim.admission = admission;
    claim.discharge = day_;
    claim.diagnosis_icd10 = "J18.9";  // pneumonia
    using insurance::CatalogueCategory;
    claim.lines = {
        {"BED-WARD", "ward bed", CatalogueCategory::kCovered, 0, 120000},
        {"DRUG-CEF", "ceftriaxone", CatalogueCategory::kCovered, 0, 356000},
        {"DRUG-MOX", "moxifloxacin", CatalogueCategory::kPartlyCovered, 1000, 84000},
        {"ROOM-SGL", "single room supplement", CatalogueCategory::kNotCovered, 0, 30000},
    };
    return claim;
  }

  // The hospital submits the stay and the agency adjudicates it: card_balance_fen is what the
  // patient's card holds when the hospital's POS read it. The split goes into the report.
  Result<insurance::StoredClaim> SubmitAndAdjudicate(insurance::ClaimStore& claims,
                                                     const Person& patient,
                                                     const Merchant& hospital,
                                                     insurance::Fen card_balance_fen) {
    auto submitted = claims.Submit(hospital.id, InpatientStay(patient));
    if (!submitted.ok()) return StepError("submitting the inpatient claim", submitted);
    auto adjudicated = claims.Adjudicate(submitted->id, card_balance_fen);
    if (!adjudicated.ok()) return StepError("adjudicating the inpatient claim", adjudicated);
    claim_id_ = submitted->id;
    report_.claim_person = patient.ssn;
    report_.claim_hospital = hospital.name;
    claim_hospital_id_ = hospital.id;
    report_.claim_state = std::string(insurance::ToString(adjudicated->state));
    if (adjudicated->adjudication) {
      const insurance::Adjudication& a = *adjudicated->adjudication;
      report_.claim_billed_fen = a.total_billed_fen;
      report_.claim_pooled_fund_fen = a.pooled_fund_fen;
      report_.claim_personal_account_fen = a.personal_account_fen;
      report_.claim_self_pay_fen = a.self_pay_fen;
    }
    return *adjudicated;
  }

  // An officer approves the adjudicated claim and the agency pays it: the pooled fund's share is
  // booked to the hospital.
  Status ApproveAndPay(insurance::ClaimStore& claims, const insurance::StoredClaim& claim) {
    if (claim.state != insurance::ClaimState::kAdjudicated) return Status::Ok();
    auto approved = claims.Approve(claim.id, "demo-officer");
    if (!approved.ok()) return StepError("approving the inpatient claim", approved);
    auto paid = claims.Pay(claim.id);
    if (!paid.ok()) return StepError("paying the inpatient claim", paid);
    report_.claim_state = std::string(insurance::ToString(paid->state));
    return Status::Ok();
  }

  std::string ClaimSplit() const {
    return "pooled fund " + FormatFen(report_.claim_pooled_fund_fen) + ", personal account " +
           FormatFen(report_.claim_personal_account_fen) + ", self-pay " +
           FormatFen(report_.claim_self_pay_fen);
  }

  // 17:00: the patient is discharged and settles at the hospital's POS (at city scale on this
  // thread, after the purchases' workers joined: no other thread uses the card or the terminal).
  // The POS reads the card's passbook (ED, PIN verified); the agency adjudicates the stay with that
  // balance as the personal account available (its books count allocations, not what is left
  // on the card); the patient pays the personal-account share there by card (ED with the PIN,
  // offline: uploaded and cleared at day end like every purchase) and the self-pay part in
  // cash; an officer approves the claim and the agency pays the pooled fund's share to the
  // hospital.
  Status Discharge() {
    clock_us_ = day_start_us() + 9 * kHourUs;  // 17:00
    auto discharged = PatientAndHospital();
    if (!discharged.ok()) return discharged.error();
    Holder& h = *discharged->holder;
    Station* station = discharged->station;
    const Merchant& hospital = *station->merchant;
    const std::string& terminal_id = station->city_terminal->terminal_id;
    if (Status in = Insert(*station, h); !in.ok()) return in;
    auto balances = station->pos->ReadBalances(h.card->pin);
    if (!balances.ok()) {
      Remove(*station);
      return StepError("reading card " + h.asn + " at " + terminal_id, balances);
    }
    report_.claim_card_balance_fen = balances->ed;
    insurance::ClaimStore claims(*agency_conn_, policies_);
    auto claim = SubmitAndAdjudicate(claims, *h.person, hospital, insurance::Fen{balances->ed});
    if (!claim.ok()) {
      Remove(*station);
      return claim.error();
    }
    const insurance::Fen share = report_.claim_personal_account_fen;
    if (claim->state == insurance::ClaimState::kAdjudicated && share > 0) {
      ++report_.purchase_attempts;
      const std::int64_t start = SteadyUs();
      auto receipt =
          station->pos->Purchase({Wallet::kEd, static_cast<std::uint32_t>(share), h.card->pin});
      purchase_latency_.Add(SteadyUs() - start);
      Remove(*station);
      if (!receipt.ok()) {
        return StepError("paying the claim's personal-account share by card " + h.asn, receipt);
      }
      h.ed = receipt->balance_after;
      ++report_.ed_purchases;
      report_.ed_fen += receipt->amount;
      report_.claim_card = h.asn;
      report_.claim_terminal = receipt->terminal_id;
      report_.claim_card_paid_fen = receipt->amount;
      report_.claim_card_serial = receipt->card_offline_serial;
      // The hospital tells the agency which card purchase paid the share.
      auto recorded =
          claims.RecordCardPayment(claim->id, {.asn = h.asn,
                                               .offline_serial = receipt->card_offline_serial,
                                               .terminal_id = receipt->terminal_id,
                                               .amount_fen = receipt->amount});
      if (!recorded.ok()) return StepError("recording the claim's card payment", recorded);
    } else {
      Remove(*station);
    }
    if (Status paid = ApproveAndPay(claims, *claim); !paid.ok()) return paid;
    Say("discharge: " + h.person->ssn + " leaves " + hospital.name + " after an inpatient stay (" +
        FormatFen(report_.claim_billed_fen) + "); the POS reads card " + h.asn + ": ED " +
        FormatFen(report_.claim_card_balance_fen) + "; the agency adjudicates " + ClaimSplit() +
        (report_.claim_card.empty()
             ? std::string("; nothing to pay by card")
             : "; personal account share " + FormatFen(report_.claim_card_paid_fen) +
                   " paid by card " + report_.claim_card + " at " + hospital.name + " terminal " +
                   report_.claim_terminal + ", card serial " +
                   std::to_string(report_.claim_card_serial)) +
        ", self-pay in cash; claim " + report_.claim_state +
        " (the pooled fund's share to the hospital)");
    return Status::Ok();
  }

  // ---- Every fen
  // ---------------------------------------------------------------------------------
  std::int64_t Balance(const ledger::AccountId& id) {
    ledger::Ledger ledger(*bank_conn_);
    auto account = ledger.FindAccount(id);
    if (!account.ok()) {
      report_.problems.push_back("ledger: " + account.error().message);
      return 0;
    }
    return *account ? (*account)->balance : 0;
  }

  void Expect(bool holds, const std::string& problem) {
    if (!holds) report_.problems.push_back(problem);
  }

  Status Reconcile() {
    ScenarioReport& r = report_;
    for (const std::string& person : allocated_people_) {
      r.medical_fen += Balance(ledger::AccountId::Medical(person));
    }
    // Every card read (PIN verified) by the workers, each its own cards.
    (void)ForEachWorker("reading the cards", std::ssize(holders_), [&](std::size_t w) {
      return ForEachHolderOf(w, 0, [&](std::size_t c) {
        Holder& h = holders_[c];
        reader::InProcessReader direct("reconciliation reader", h.chip.get());
        h.read = direct.Connect().ok() && terminal::SelectMedicalApplication(direct).ok() &&
                 terminal::VerifyPin(direct, h.card->pin).ok();
        if (h.read) {
          auto e = terminal::GetBalance(direct, Wallet::kEd);
          auto p = terminal::GetBalance(direct, Wallet::kEp);
          h.card_ed = e.ok() ? *e : 0;
          h.card_ep = p.ok() ? *p : 0;
        }
        return Status::Ok();
      });
    });
    // At most kCardProblems cards named; the rest counted.
    constexpr std::int64_t kCardProblems = 20;
    std::int64_t wrong_cards = 0;
    for (Holder& h : holders_) {
      const std::int64_t ed = Balance(ledger::AccountId::CardFloat(h.asn, ledger::Wallet::kEd));
      const std::int64_t ep = Balance(ledger::AccountId::CardFloat(h.asn, ledger::Wallet::kEp));
      r.card_float_fen += ed + ep;
      r.on_cards_fen += static_cast<std::int64_t>(h.card_ed) + h.card_ep;
      const bool right =
          h.read && h.card_ed == ed && h.card_ep == ep && h.card_ed == h.ed && h.card_ep == h.ep;
      if (right || ++wrong_cards > kCardProblems) continue;
      Expect(h.read, "card " + h.asn + ": could not be read");
      Expect(h.card_ed == ed && h.card_ep == ep,
             "card " + h.asn + " holds ED " + FormatFen(h.card_ed) + " EP " + FormatFen(h.card_ep) +
                 ", the host's float says ED " + FormatFen(ed) + " EP " + FormatFen(ep));
      Expect(h.card_ed == h.ed && h.card_ep == h.ep,
             "card " + h.asn + " holds ED " + FormatFen(h.card_ed) + " EP " + FormatFen(h.card_ep) +
                 ", its receipts say ED " + FormatFen(h.ed) + " EP " + FormatFen(h.ep));
    }
    Expect(wrong_cards <= kCardProblems,
           std::to_string(wrong_cards - kCardProblems) + " more cards disagree likewise");
    items_ = std::ssize(holders_);
    unit_ = "cards read";
    for (const Merchant& m : city_.merchants)
      r.merchant_fen += Balance(ledger::AccountId::Merchant(m.id));
    r.suspense_fen = Balance(ledger::AccountId::Suspense());
    for (auto& s : stations_) r.psam_signed_fen += s->psam_signed_fen;
    const std::int64_t sia = Balance(ledger::AccountId::SiaFund());

    Expect(r.refused_lines == 0 && r.credited_fen == r.allocated_fen,
           "the bank credited " + FormatFen(r.credited_fen) + " of the " +
               FormatFen(r.allocated_fen) + " allocated");
    Expect(-sia == r.allocated_fen, "the SIA fund's ledger account moved " + FormatFen(-sia) +
                                        ", the batch allocated " + FormatFen(r.allocated_fen));
    const std::int64_t accounted =
        r.medical_fen + r.card_float_fen + r.merchant_fen + r.suspense_fen;
    Expect(accounted == r.allocated_fen, "allocated " + FormatFen(r.allocated_fen) +
                                             " but medical accounts + cards + merchants "
                                             "+ suspense hold " +
                                             FormatFen(accounted));
    Expect(r.on_cards_fen == r.card_float_fen, "the cards hold " + FormatFen(r.on_cards_fen) +
                                                   ", the host's card floats " +
                                                   FormatFen(r.card_float_fen));
    Expect(r.merchant_fen == r.psam_signed_fen && r.merchant_fen == r.ed_fen + r.ep_fen,
           "merchants were paid " + FormatFen(r.merchant_fen) + "; the PSAMs signed " +
               FormatFen(r.psam_signed_fen) + ", the receipts say " +
               FormatFen(r.ed_fen + r.ep_fen));
    Expect(r.consumption_fen == r.merchant_fen,
           "the agency's consumption detail says " + FormatFen(r.consumption_fen) +
               ", the merchants were paid " + FormatFen(r.merchant_fen));
    Expect(r.host_check_problems.empty(), "the host check found problems");
    for (const auto& p : r.host_check_problems) r.problems.push_back("host check: " + p);
    Expect(r.suspense_items == 0 && r.suspense_fen == 0, "purchases in suspense");
    Expect(r.settlement_exceptions == 0 &&
               r.terminals_settled == static_cast<std::int64_t>(stations_.size()),
           "not every terminal settled cleanly");
    Expect(r.wrong_pin_refused, "the wrong PIN was not refused");
    Expect(r.insufficient_balance_refused, "the purchase over the balance was not refused");
    Expect(r.lost_card_refused, "the lost card was not refused at the POS");
    Expect(r.torn_recoveries == 1, "the torn purchase was recovered " +
                                       std::to_string(r.torn_recoveries) + " times, not once");
    Expect(r.torn_uploaded == 1, "the torn purchase reached the agency " +
                                     std::to_string(r.torn_uploaded) + " times, not once");
    Expect(r.claim_state == "paid", "the inpatient claim was " + r.claim_state + ", not paid");
    Expect(r.claim_billed_fen > 0 &&
               r.claim_pooled_fund_fen + r.claim_personal_account_fen + r.claim_self_pay_fen ==
                   r.claim_billed_fen,
           "the inpatient claim's shares do not add up to its bill");
    {
      // Settled at discharge: the personal account paid no more than the card held, all of it
      // by card, and that purchase cleared once, for exactly the share.
      Expect(r.claim_personal_account_fen <= r.claim_card_balance_fen,
             "the inpatient claim's personal account pays " +
                 FormatFen(r.claim_personal_account_fen) + ", the card held " +
                 FormatFen(r.claim_card_balance_fen));
      Expect(r.claim_card_paid_fen == r.claim_personal_account_fen,
             "the card paid " + FormatFen(r.claim_card_paid_fen) +
                 " of the inpatient claim's personal-account share " +
                 FormatFen(r.claim_personal_account_fen));
      Expect(
          r.claim_card.empty() ||
              r.claim_card_reference == r.claim_card + "/ED/" + std::to_string(r.claim_card_serial),
          "the inpatient claim records the card payment " + r.claim_card_reference +
              ", the receipt says " + r.claim_card + "/ED/" + std::to_string(r.claim_card_serial));
      const std::int64_t payments = r.claim_personal_account_fen > 0 ? 1 : 0;
      Expect(r.claim_card_cleared == payments &&
                 r.claim_card_cleared_fen == r.claim_personal_account_fen,
             "the card payment of the inpatient claim cleared " +
                 std::to_string(r.claim_card_cleared) + " times for " +
                 FormatFen(r.claim_card_cleared_fen) + ", not " + std::to_string(payments) +
                 " for " + FormatFen(r.claim_personal_account_fen));
    }
    auto books = insurance::CheckBooks(*agency_conn_);
    Expect(books.ok(), "the agency's books could not be checked");
    if (books.ok()) {
      for (const auto& p : *books) r.problems.push_back("agency books: " + p);
    }
    Expect(r.purchase_attempts - r.purchases_refused == r.ed_purchases + r.ep_purchases,
           std::to_string(r.purchase_attempts) + " purchase attempts, " +
               std::to_string(r.purchases_refused) + " refused, but " +
               std::to_string(r.ed_purchases + r.ep_purchases) + " made");
    // At city scale: the attempts asked for, and the discharge's card payment on top.
    const std::int64_t discharge_payments = r.claim_card.empty() ? 0 : 1;
    Expect(!scale_ || r.purchase_attempts == options_.purchases + discharge_payments,
           std::to_string(r.purchase_attempts) + " purchase attempts, " +
               std::to_string(options_.purchases) + " asked for and " +
               std::to_string(discharge_payments) + " at discharge");
    Expect(skipped_purchases_ == 0,
           std::to_string(skipped_purchases_) + " visits could not pay: both wallets were empty");
    return Status::Ok();
  }

  // Which cards play the day's exceptions.
  static constexpr std::size_t kWrongPinHolder = 0, kPoorHolder = 1, kTornHolder = 2,
                               kLostHolder = 3;
  // The day's purchase attempts the exceptions make: the wrong PIN, the purchase over the
  // balance, the torn purchase (the lost card is tried the next morning).
  static constexpr std::int64_t kExceptionPurchases = 3;

  std::int64_t day_start_us() const { return day_start_us_; }
  branch::BranchOptions BranchOptions() {
    branch::BranchOptions options;
    options.clock_us = [this] { return clock_us_.load(); };
    return options;
  }

  const ScenarioOptions& options_;
  City city_;
  const bool scale_;           // ScenarioOptions::purchases > 0
  const std::size_t workers_;  // POS driver threads (1 in the scripted day)
  std::vector<std::vector<Station*>> worker_stations_;  // each worker's terminals, in order
  std::atomic<std::int64_t> clock_us_{0};               // the simulated host clock, UTC µs
  std::int64_t day_start_us_ = 0;                       // 08:00 local time of the business day
  std::int64_t step_us_ = kMinuteUs;                    // between two purchases
  ScenarioReport report_;
  Date day_;
  insurance::YearMonth month_;
  insurance::PolicyBook policies_;
  std::optional<insurance::BatchKey> batch_key_;
  std::string batch_text_;
  std::vector<std::string> allocated_people_;
  std::unordered_map<std::string, std::int64_t> credited_;  // person → fen the batch credited
  std::string claim_hospital_id_;                           // the claim's merchant id
  std::int64_t claim_id_ = 0;                               // the agency's id of the claim

  // Measurements and progress.
  std::int64_t items_ = 0;  // the current phase's
  std::string unit_;
  LatencyRecorder load_latency_, purchase_latency_, day_end_latency_;
  std::int64_t skipped_purchases_ = 0;
  std::string meter_step_;
  std::int64_t meter_total_ = 0;
  std::atomic<std::int64_t> meter_done_{0}, meter_last_us_{0};
  std::mutex meter_mutex_;
  std::atomic<bool> stop_{false};

  std::unique_ptr<keys::KeyStore> bank_keys_;
  std::vector<std::unique_ptr<keys::KeyStore>> pos_keys_;  // one per worker
  std::mutex
      key_store_mutex_;  // the bank's key store: the gateway's thread and this one take turns
  std::unique_ptr<store::Database> bank_db_, agency_db_;
  std::unique_ptr<store::Connection> bank_conn_, gateway_conn_, agency_conn_;
  std::unique_ptr<host::Host> host_;
  std::unique_ptr<host::TerminalGateway> gateway_;
  std::unique_ptr<server::Server> server_;
  std::uint16_t port_ = 0;
  std::vector<std::unique_ptr<Station>> stations_;
  std::vector<Holder> holders_;
};

}  // namespace

Result<ScenarioReport> RunScenario(const ScenarioOptions& options) {
  Scenario scenario(options);
  return scenario.Run();
}

}  // namespace medcard::demo
