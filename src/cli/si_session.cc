#include "cli/si_session.h"

#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "audit/audit_log.h"

namespace medcard::cli {
namespace {

namespace fs = std::filesystem;

std::string OperatingSystemLogin() {
  if (const passwd* entry = getpwuid(geteuid()); entry != nullptr && entry->pw_name != nullptr) {
    return entry->pw_name;
  }
  return "uid" + std::to_string(geteuid());
}

int DaysInMonth(int year, int month) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return month == 2 && leap ? 29 : kDays[month - 1];
}

}  // namespace

std::string SiConfigPath(const std::string& dir) { return (fs::path(dir) / "si.json").string(); }

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

insurance::PolicyBook LoadSiPolicies(const std::string& path) {
  if (fs::is_directory(path)) {
    return Check(insurance::PolicyBook::LoadDirectory(path), "policy directory " + path);
  }
  insurance::PolicyBook book;
  Check(book.Add(Check(insurance::LoadPolicyFile(path), "policy " + path)), "policy " + path);
  return book;
}

SiSession SiSession::Open(const std::string& dir,
                          const std::vector<const store::MigrationSet*>& migrations) {
  SiSession session;
  session.config_ = LoadSiConfig(dir);
  store::OpenOptions open;
  open.create_if_missing = false;
  session.database_ = SiDb(store::Database::Open(session.config_.database, open),
                           "opening " + store::RedactUrl(session.config_.database));
  session.connection_ = SiDb(session.database_->Connect(), "connecting");
  for (const store::MigrationSet* set : migrations) {
    SiDb(store::Migrate(*session.connection_, *set), "migrating " + set->component);
  }
  session.actor_ = "cli:" + OperatingSystemLogin();
  return session;
}

const insurance::PolicyBook& SiSession::policies() {
  if (!policies_) policies_ = LoadSiPolicies(config_.policy);
  return *policies_;
}

void SiSession::Audit(const std::string& action, const std::string& target,
                      const std::string& details) {
  if (!audit_ready_) {
    SiDb(store::Migrate(*connection_, audit::Migrations()), "migrating the audit log");
    audit_ready_ = true;
  }
  const audit::Entry entry{.actor = actor_,
                           .authorised_by = "",
                           .action = action,
                           .target = target,
                           .details = details,
                           .from = "cli"};
  const auto written = store::RunTransaction(*connection_, store::TransactionMode::kWrite,
                                             [&entry](store::Connection& c) -> store::DbStatus {
                                               auto sequence = audit::AppendDb(c, entry);
                                               if (!sequence.ok()) return sequence.error();
                                               return store::Done{};
                                             });
  if (!written.ok()) {
    throw CommandFailed(action + " on " + target +
                        " was made but not audited: " + written.error().message);
  }
}

insurance::BatchKey SiBatchKeyFromEnvironment() {
  const char* hex = std::getenv(insurance::kBatchKeyEnvironment);
  if (hex == nullptr) {
    throw CommandFailed(std::string("the allocation batch key is not set: put its 64 hex digits"
                                    " in ") +
                        insurance::kBatchKeyEnvironment);
  }
  return Check(insurance::BatchKey::FromHex(hex), "batch key");
}

Date SiDateOption(const std::string& text, const std::string& option) {
  auto date = insurance::ParseIsoDate(text);
  if (!date) throw CommandFailed(option + ": expected YYYY-MM-DD, got '" + text + "'", 2);
  return *date;
}

insurance::YearMonth SiMonthOption(const std::string& text, const std::string& option) {
  auto month = insurance::ParseMonthText(text);
  if (!month) throw CommandFailed(option + ": expected YYYY-MM, got '" + text + "'", 2);
  return *month;
}

std::pair<Date, Date> SiDayRange(const std::string& from, const std::string& to) {
  const auto day = [](const std::string& text, const std::string& option, bool last) {
    if (auto month = insurance::ParseMonthText(text)) {
      return Date{month->year, month->month, last ? DaysInMonth(month->year, month->month) : 1};
    }
    if (auto date = insurance::ParseIsoDate(text)) return *date;
    throw CommandFailed(option + ": expected YYYY-MM-DD or YYYY-MM, got '" + text + "'", 2);
  };
  return {day(from, "--from", false), day(to, "--to", true)};
}

}  // namespace medcard::cli
