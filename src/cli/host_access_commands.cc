// medcard host users ... | audit ... (docs/access.md "Commands", docs/audit.md "Commands"): the
// bootstrap and day-to-day management of the people who use the host, and the auditor's checks
// of the audit log. These commands open only the database (no key store): they act as the
// system account "host", from "cli". Passwords come from stdin, never from a flag.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>

#include "access/directory.h"
#include "audit/audit_log.h"
#include "cli/commands.h"
#include "cli/host_config.h"
#include "cli/key_store_access.h"
#include "store/store.h"

namespace medcard::cli {

namespace {

constexpr char kFrom[] = "cli";

struct AccessDatabase {
  std::unique_ptr<store::Database> database;
  std::unique_ptr<store::Connection> connection;
};

AccessDatabase OpenAccessDatabase(const std::string& data_dir) {
  const std::string path = HostConfigPath(data_dir);
  if (!std::ifstream(path)) {
    throw CommandFailed("no host in " + data_dir +
                        " (no host.json): run medcard host init --data " + data_dir);
  }
  HostConfig config = Check(LoadHostConfig(path, data_dir), "reading the configuration");
  store::OpenOptions open;
  open.create_if_missing = false;
  AccessDatabase db;
  db.database =
      Check(Result<std::unique_ptr<store::Database>>(store::Database::Open(config.database, open)),
            "opening the database");
  db.connection =
      Check(Result<std::unique_ptr<store::Connection>>(db.database->Connect()), "connecting");
  Check(Result<int>(store::Migrate(*db.connection, audit::Migrations())),
        "migrating the audit log");
  Check(Result<int>(store::Migrate(*db.connection, access::Migrations())), "migrating the users");
  return db;
}

template <typename T>
T CheckService(access::ServiceResult<T> r, const std::string& context) {
  if (!r.ok()) {
    std::string message = context + ": " + r.error().message;
    if (!r.error().field.empty()) message += " (" + r.error().field + ")";
    throw CommandFailed(message);
  }
  return std::move(r).value();
}

// The new password: one line from stdin; on a terminal, asked twice without echo.
void ReadNewPassword(const std::string& login, SecretString& password) {
  if (!ReadSecretLine("new password for " + login + ": ", password) || password.value.empty()) {
    throw CommandFailed("no password on stdin");
  }
  if (::isatty(STDIN_FILENO) != 0) {
    SecretString again;
    if (!ReadSecretLine("the same password again: ", again) || again.value != password.value) {
      throw CommandFailed("the two passwords differ");
    }
  }
}

void PrintUser(const access::User& u) {
  std::printf("%-20s %-14s %-8s %-9s %3lld  %s\n", u.login.c_str(),
              std::string(access::RoleName(u.role)).c_str(),
              u.branch.empty() ? "-" : u.branch.c_str(),
              std::string(access::UserStateName(u.state)).c_str(),
              static_cast<long long>(u.failed_sign_ins), u.display_name.c_str());
}

void AddUsersCommands(CLI::App& host) {
  CLI::App* users = host.add_subcommand("users", "The people who use the host: users and roles");
  users->require_subcommand(1);
  const access::Principal system = access::SystemPrincipal("host");
  const access::Directory directory;

  {
    struct Options {
      std::string data_dir, login, role, name, branch;
    };
    auto o = std::make_shared<Options>();
    CLI::App* add = users->add_subcommand(
        "add", "Add a user; the password is read from stdin (never a flag, never echoed)");
    add->add_option("--data", o->data_dir, "The host's data directory")->required();
    add->add_option("--login", o->login, "The login: 3-32 of a-z 0-9 . _ -")->required();
    add->add_option("--role", o->role,
                    "teller | senior_teller | supervisor | auditor | administrator | "
                    "agency_system")
        ->required();
    add->add_option("--name", o->name, "The display name (default: the login)");
    add->add_option("--branch", o->branch, "The branch code (required for tellers)");
    add->callback([o, system, directory] {
      const auto role = access::ParseRole(o->role);
      if (!role) throw CommandFailed("unknown role '" + o->role + "'");
      SecretString password;
      ReadNewPassword(o->login, password);
      AccessDatabase db = OpenAccessDatabase(o->data_dir);
      const access::User user = CheckService(
          directory.AddUser(
              *db.connection, system,
              {o->login, o->name.empty() ? o->login : o->name, *role, o->branch, password.value},
              kFrom),
          "adding " + o->login);
      std::printf("user %s added: %s%s%s\n", user.login.c_str(),
                  std::string(access::RoleName(user.role)).c_str(),
                  user.branch.empty() ? "" : " at branch ", user.branch.c_str());
    });
  }
  {
    auto data_dir = std::make_shared<std::string>();
    CLI::App* list = users->add_subcommand("list", "List the users");
    list->add_option("--data", *data_dir, "The host's data directory")->required();
    list->callback([data_dir, system, directory] {
      AccessDatabase db = OpenAccessDatabase(*data_dir);
      const auto all = CheckService(directory.ListUsers(*db.connection, system), "listing users");
      std::printf("%-20s %-14s %-8s %-9s %3s  %s\n", "LOGIN", "ROLE", "BRANCH", "STATE", "ERR",
                  "NAME");
      for (const auto& u : all) PrintUser(u);
    });
  }
  for (const char* verb : {"lock", "unlock", "disable"}) {
    struct Options {
      std::string data_dir, login;
    };
    auto o = std::make_shared<Options>();
    const std::string name = verb;
    CLI::App* cmd = users->add_subcommand(
        name, name == "lock"     ? "Lock a user out (ends their sessions)"
              : name == "unlock" ? "Unlock a user (also clears the failed sign-in count)"
                                 : "Disable a user for good (ends their sessions)");
    cmd->add_option("--data", o->data_dir, "The host's data directory")->required();
    cmd->add_option("--login", o->login, "The user")->required();
    cmd->callback([o, name, system, directory] {
      AccessDatabase db = OpenAccessDatabase(o->data_dir);
      access::ServiceResult<access::User> changed =
          name == "lock"     ? directory.Lock(*db.connection, system, o->login, kFrom)
          : name == "unlock" ? directory.Unlock(*db.connection, system, o->login, kFrom)
                             : directory.Disable(*db.connection, system, o->login, kFrom);
      const access::User user = CheckService(std::move(changed), name + " " + o->login);
      std::printf("user %s is %s\n", user.login.c_str(),
                  std::string(access::UserStateName(user.state)).c_str());
    });
  }
  {
    struct Options {
      std::string data_dir, login;
    };
    auto o = std::make_shared<Options>();
    CLI::App* passwd =
        users->add_subcommand("passwd", "Set a user's password from stdin (ends their sessions)");
    passwd->add_option("--data", o->data_dir, "The host's data directory")->required();
    passwd->add_option("--login", o->login, "The user")->required();
    passwd->callback([o, system, directory] {
      SecretString password;
      ReadNewPassword(o->login, password);
      AccessDatabase db = OpenAccessDatabase(o->data_dir);
      CheckService(directory.SetPassword(*db.connection, system, o->login, password.value, kFrom),
                   "setting the password of " + o->login);
      std::printf("password of %s changed\n", o->login.c_str());
    });
  }
}

void AddAuditCommands(CLI::App& host) {
  CLI::App* audit_app = host.add_subcommand("audit", "The hash-chained audit log");
  audit_app->require_subcommand(1);
  {
    struct Options {
      std::string data_dir, expected_head;
    };
    auto o = std::make_shared<Options>();
    CLI::App* verify = audit_app->add_subcommand(
        "verify", "Check every entry's hash and the chain; exit 1 naming the first bad entry");
    verify->add_option("--data", o->data_dir, "The host's data directory")->required();
    verify->add_option("--expect-head", o->expected_head,
                       "A head hash printed by an earlier verify: it must still be in the log");
    verify->callback([o] {
      AccessDatabase db = OpenAccessDatabase(o->data_dir);
      std::optional<std::string> expected;
      if (!o->expected_head.empty()) expected = o->expected_head;
      const audit::Verification v =
          Check(audit::Verify(*db.connection, expected), "verifying the audit log");
      if (!v.intact) {
        throw CommandFailed("audit log BROKEN at entry " + std::to_string(v.first_bad_sequence) +
                            " (" + v.problem + "): " + v.explanation);
      }
      std::printf("audit log intact: %lld entries, head %s\n", static_cast<long long>(v.count),
                  v.head_hash.c_str());
    });
  }
  {
    struct Options {
      std::string data_dir, format = "jsonl", actor, action, target, from_day, until_day, out;
    };
    auto o = std::make_shared<Options>();
    CLI::App* exp = audit_app->add_subcommand("export", "Export the audit log (CSV or JSON lines)");
    exp->add_option("--data", o->data_dir, "The host's data directory")->required();
    exp->add_option("--format", o->format, "csv | jsonl")->capture_default_str();
    exp->add_option("--actor", o->actor, "Only this actor's entries");
    exp->add_option("--action", o->action, "Only this action (a prefix ending in '.': card.)");
    exp->add_option("--target", o->target, "Only entries about this target (card:<ASN>, ...)");
    exp->add_option("--from-day", o->from_day, "From this UTC day (YYYY-MM-DD), inclusive");
    exp->add_option("--until-day", o->until_day, "Up to this UTC day (YYYY-MM-DD), inclusive");
    exp->add_option("--out", o->out, "Write to this file instead of stdout");
    exp->callback([o] {
      const auto format = audit::ParseExportFormat(o->format);
      if (!format) throw CommandFailed("--format must be csv or jsonl, not '" + o->format + "'");
      audit::Filter filter;
      if (!o->actor.empty()) filter.actor = o->actor;
      if (!o->action.empty()) filter.action = o->action;
      if (!o->target.empty()) filter.target = o->target;
      if (!o->from_day.empty()) {
        const auto range = audit::DayRange(o->from_day);
        if (!range) throw CommandFailed("--from-day must be YYYY-MM-DD");
        filter.from_us = range->first;
      }
      if (!o->until_day.empty()) {
        const auto range = audit::DayRange(o->until_day);
        if (!range) throw CommandFailed("--until-day must be YYYY-MM-DD");
        filter.until_us = range->second;
      }
      AccessDatabase db = OpenAccessDatabase(o->data_dir);
      if (o->out.empty()) {
        Check(audit::Export(*db.connection, filter, *format, std::cout), "exporting");
        std::cout.flush();
      } else {
        std::ofstream file(o->out, std::ios::trunc);
        if (!file) throw CommandFailed("cannot write " + o->out);
        Check(audit::Export(*db.connection, filter, *format, file), "exporting");
      }
    });
  }
  {
    struct Options {
      std::string data_dir, day;
    };
    auto o = std::make_shared<Options>();
    CLI::App* journal = audit_app->add_subcommand(
        "journal", "The teller day-end journal of a UTC day from the audit log");
    journal->add_option("--data", o->data_dir, "The host's data directory")->required();
    journal->add_option("--day", o->day, "The day, YYYY-MM-DD (UTC)")->required();
    journal->callback([o] {
      if (!audit::DayRange(o->day)) throw CommandFailed("--day must be YYYY-MM-DD");
      AccessDatabase db = OpenAccessDatabase(o->data_dir);
      const audit::Journal j =
          Check(audit::DayJournal(*db.connection, o->day), "reading the journal");
      std::printf("journal of %s\n", j.day.c_str());
      std::printf("  cards issued %lld, lost %lld, replaced %lld, closed %lld\n",
                  static_cast<long long>(j.cards_issued), static_cast<long long>(j.cards_lost),
                  static_cast<long long>(j.cards_replaced), static_cast<long long>(j.cards_closed));
      for (const auto& actor : j.actors) {
        std::printf("  %-20s %lld operations\n", actor.actor.c_str(),
                    static_cast<long long>(actor.operations));
        for (const auto& [action, count] : actor.by_action) {
          std::printf("    %-28s %lld\n", action.c_str(), static_cast<long long>(count));
        }
      }
    });
  }
}

}  // namespace

void AddHostAccessCommands(CLI::App& host) {
  AddUsersCommands(host);
  AddAuditCommands(host);
}

}  // namespace medcard::cli
