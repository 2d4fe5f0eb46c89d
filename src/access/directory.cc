// Users, sessions, lock-out and the permission table (docs/access.md).
#include "access/directory.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "access/password.h"
#include "audit/audit_log.h"

namespace medcard::access {

namespace {

using nlohmann::json;

// docs/access.md "Permissions". Keep in step with the table there.
const std::map<std::string, std::set<Role>, std::less<>>& PermissionTable() {
  static const auto* table = [] {
    const std::set<Role> counter = {Role::kTeller, Role::kSeniorTeller, Role::kSupervisor};
    auto* t = new std::map<std::string, std::set<Role>, std::less<>>{
        {"card.issue", counter},
        {"card.activate", counter},
        {"card.report_loss", counter},
        {"card.cancel_loss", counter},
        {"card.capture", counter},
        {"card.unblock", counter},
        {"card.pin_reset", counter},
        {"card.change_validity", counter},
        {"card.replace", counter},
        {"card.close", counter},
        {"customer.read",
         {Role::kTeller, Role::kSeniorTeller, Role::kSupervisor, Role::kAuditor,
          Role::kAgencySystem}},
        {"journal.read", {Role::kSeniorTeller, Role::kSupervisor, Role::kAuditor}},
        {"audit.read", {Role::kSupervisor, Role::kAuditor}},
        {"audit.export", {Role::kAuditor}},
        {"audit.verify", {Role::kAuditor, Role::kAdministrator}},
        {"user.add", {Role::kAdministrator}},
        {"user.read", {Role::kSupervisor, Role::kAuditor, Role::kAdministrator}},
        {"user.lock", {Role::kSupervisor, Role::kAdministrator}},
        {"user.unlock", {Role::kAdministrator}},
        {"user.disable", {Role::kAdministrator}},
        {"user.passwd", {Role::kAdministrator}},
        {"limits.read",
         {Role::kTeller, Role::kSeniorTeller, Role::kSupervisor, Role::kAuditor,
          Role::kAdministrator}},
        {"limits.change", {Role::kAdministrator}},
        {"agency.submit", {Role::kAgencySystem}},
        // The agency's API (docs/api/si-openapi.yaml): officers run the registry and the money;
        // auditors read it and check the books.
        {"si.read", {Role::kInsuranceOfficer, Role::kAuditor}},
        {"si.check", {Role::kInsuranceOfficer, Role::kAuditor}},
        {"si.registry.change", {Role::kInsuranceOfficer}},
        {"si.month.run", {Role::kInsuranceOfficer}},
        {"si.payment.add", {Role::kInsuranceOfficer}},
        {"si.allocation.export", {Role::kInsuranceOfficer}},
        {"si.allocation.reconcile", {Role::kInsuranceOfficer}},
        {"si.policy.check", {Role::kInsuranceOfficer}},
        {"si.claim.adjudicate", {Role::kInsuranceOfficer}},
    };
    return t;
  }();
  return *table;
}

constexpr std::string_view kUserColumns =
    "login, display_name, role, branch, state, failed_sign_ins, created_at_us, "
    "password_changed_at_us, password_hash";

struct StoredUser {
  User user;
  std::string password_hash;
};

StoredUser UserOf(const store::Row& row) {
  StoredUser s;
  s.user.login = row.Text(0);
  s.user.display_name = row.Text(1);
  s.user.role = ParseRole(row.Text(2)).value_or(Role::kTeller);
  s.user.branch = row.Text(3);
  s.user.state = ParseUserState(row.Text(4)).value_or(UserState::kDisabled);
  s.user.failed_sign_ins = row.Int(5);
  s.user.created_at_us = row.Int(6);
  s.user.password_changed_at_us = row.Int(7);
  s.password_hash = row.Text(8);
  return s;
}

store::DbResult<std::optional<StoredUser>> LoadUser(store::Connection& c, std::string_view login) {
  auto rows = c.Query("SELECT " + std::string(kUserColumns) + " FROM access_users WHERE login = ?",
                      {login});
  if (!rows) return rows.error();
  if (rows->empty()) return std::optional<StoredUser>();
  return std::optional<StoredUser>(UserOf((*rows)[0]));
}

ServiceError Internal(const Error& error) {
  return MakeServiceError(ErrorCode::kInternal, "the database failed: " + error.message);
}

// Runs body in a write transaction (retried on serialization failures). The body sets the
// service outcome and returns Done to commit — also for refusals whose audit entries must stay
// (a failed sign-in) — or a DbError to roll back.
template <typename T, typename Body>
ServiceResult<T> WriteTransaction(store::Connection& connection, Body body) {
  std::optional<ServiceResult<T>> outcome;
  auto status = store::RunTransaction(connection, store::TransactionMode::kWrite,
                                      [&](store::Connection& c) -> store::DbStatus {
                                        outcome.reset();
                                        return body(c, outcome);
                                      });
  if (!status) return Internal(status.error());
  if (!outcome) return MakeServiceError(ErrorCode::kInternal, "no outcome");
  return std::move(*outcome);
}

std::string Sha256Hex(std::string_view text) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  EVP_Digest(text.data(), text.size(), digest.data(), &size, EVP_sha256(), nullptr);
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < size; ++i) {
    out.push_back(kDigits[digest[i] >> 4]);
    out.push_back(kDigits[digest[i] & 0x0F]);
  }
  return out;
}

bool IsTokenShape(std::string_view token) {
  return token.size() == 64 && std::all_of(token.begin(), token.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

std::string UserTarget(std::string_view login) { return "user:" + std::string(login); }

store::DbStatus Audit(store::Connection& c, std::int64_t at_us, std::string_view actor,
                      std::string_view action, std::string_view login, const json& details,
                      std::string_view from) {
  audit::Entry entry;
  entry.actor = std::string(actor);
  entry.action = std::string(action);
  entry.target = UserTarget(login);
  entry.details = details.dump(-1, ' ', false, json::error_handler_t::replace);
  entry.from = std::string(from);
  auto appended = audit::AppendDb(c, entry, at_us);
  if (!appended) return appended.error();
  return store::Done{};
}

// A hash to spend the same time on for unknown logins, so timing does not tell which exist.
const std::string& DummyHash() {
  static const std::string hash = HashPassword("medcard-no-such-user").value();
  return hash;
}

// The password check shared by sign-in, own password change and authorisation. Counts a wrong
// password toward lock-out and audits `failure_action`; the refusals commit with their entries.
ServiceResult<StoredUser> CheckPassword(store::Connection& connection,
                                        const DirectoryOptions& options, std::string_view login,
                                        std::string_view password, std::string_view failure_action,
                                        json failure_details, std::string_view from) {
  const std::string login_text(login);
  std::optional<StoredUser> before;
  if (!CheckLogin(login)) {
    auto loaded = LoadUser(connection, login);
    if (!loaded) return Internal(loaded.error());
    before = std::move(*loaded);
  }
  bool right = false;
  if (before) {
    auto verified = VerifyPassword(password, before->password_hash);
    if (!verified) return Internal(verified.error());
    right = *verified;
  } else {
    (void)VerifyPassword(password, DummyHash());
  }
  // The failure's audit entry names the login as given: printable ASCII only (it may be anything
  // a client sent), at most 64 characters, never empty.
  std::string shown_login = login_text.substr(0, 64);
  for (char& c : shown_login) {
    if (c < 0x20 || c > 0x7E) c = '?';
  }
  if (shown_login.empty()) shown_login = "(empty)";
  return WriteTransaction<StoredUser>(
      connection,
      [&](store::Connection& c,
          std::optional<ServiceResult<StoredUser>>& outcome) -> store::DbStatus {
        const std::int64_t now = options.clock();
        auto refuse = [&](ErrorCode code, std::string message,
                          std::string reason) -> store::DbStatus {
          json details = failure_details;
          details["reason"] = reason;
          if (auto s = Audit(c, now, shown_login, failure_action, shown_login, details, from); !s) {
            return s;
          }
          outcome = MakeServiceError(code, std::move(message));
          return store::Done{};
        };
        if (!before) {
          return refuse(ErrorCode::kUnauthenticated, "wrong login or password", "unknown login");
        }
        auto loaded = LoadUser(c, login);
        if (!loaded) return loaded.error();
        if (!*loaded) {
          return refuse(ErrorCode::kUnauthenticated, "wrong login or password", "unknown login");
        }
        StoredUser now_user = std::move(**loaded);
        if (now_user.user.state == UserState::kDisabled) {
          return refuse(ErrorCode::kForbidden, "the account " + login_text + " is disabled",
                        "disabled");
        }
        if (now_user.user.state == UserState::kLocked) {
          return refuse(ErrorCode::kLocked,
                        "the account " + login_text +
                            " is locked after too many failed sign-ins: an administrator must "
                            "unlock it",
                        "locked");
        }
        if (now_user.password_hash != before->password_hash) {
          outcome = MakeServiceError(ErrorCode::kUnauthenticated,
                                     "the password changed meanwhile: try again");
          return store::Done{};
        }
        if (right) {
          if (now_user.user.failed_sign_ins != 0) {
            auto reset =
                c.Execute("UPDATE access_users SET failed_sign_ins = 0 WHERE login = ?", {login});
            if (!reset) return reset.error();
            now_user.user.failed_sign_ins = 0;
          }
          outcome = std::move(now_user);
          return store::Done{};
        }
        const std::int64_t failed = now_user.user.failed_sign_ins + 1;
        const bool lock = failed >= options.max_failed_sign_ins;
        auto counted =
            c.Execute("UPDATE access_users SET failed_sign_ins = ?, state = ? WHERE login = ?",
                      {failed, lock ? "locked" : "active", login});
        if (!counted) return counted.error();
        json details = failure_details;
        details["reason"] = "wrong password";
        details["failed_in_a_row"] = failed;
        if (auto s = Audit(c, now, login, failure_action, login, details, from); !s) return s;
        if (lock) {
          auto ended = c.Execute(
              "UPDATE access_sessions SET ended_at_us = ? WHERE login = ? AND ended_at_us IS NULL",
              {now, login});
          if (!ended) return ended.error();
          if (auto s = Audit(c, now, "host", "user.lock", login,
                             json{{"reason", std::to_string(failed) + " failed sign-ins in a row"}},
                             from);
              !s) {
            return s;
          }
          outcome = MakeServiceError(ErrorCode::kLocked,
                                     "wrong password: the account " + login_text +
                                         " is now locked after " + std::to_string(failed) +
                                         " failed sign-ins; an administrator must unlock it");
          return store::Done{};
        }
        outcome = MakeServiceError(ErrorCode::kUnauthenticated, "wrong login or password");
        return store::Done{};
      });
}

ServiceResult<store::Done> NotSelf(const Principal& by, std::string_view login,
                                   std::string_view what) {
  if (by.login == login) {
    return MakeServiceError(ErrorCode::kForbidden,
                            "you cannot " + std::string(what) + " your own account", "login");
  }
  return store::Done{};
}

}  // namespace

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kTeller:
      return "teller";
    case Role::kSeniorTeller:
      return "senior_teller";
    case Role::kSupervisor:
      return "supervisor";
    case Role::kAuditor:
      return "auditor";
    case Role::kAdministrator:
      return "administrator";
    case Role::kAgencySystem:
      return "agency_system";
    case Role::kInsuranceOfficer:
      return "insurance_officer";
  }
  return "teller";
}

std::optional<Role> ParseRole(std::string_view name) {
  for (Role r : {Role::kTeller, Role::kSeniorTeller, Role::kSupervisor, Role::kAuditor,
                 Role::kAdministrator, Role::kAgencySystem, Role::kInsuranceOfficer}) {
    if (RoleName(r) == name) return r;
  }
  return std::nullopt;
}

bool RoleNeedsBranch(Role role) { return role == Role::kTeller || role == Role::kSeniorTeller; }

std::string_view UserStateName(UserState state) {
  switch (state) {
    case UserState::kActive:
      return "active";
    case UserState::kLocked:
      return "locked";
    case UserState::kDisabled:
      return "disabled";
  }
  return "disabled";
}

std::optional<UserState> ParseUserState(std::string_view name) {
  for (UserState s : {UserState::kActive, UserState::kLocked, UserState::kDisabled}) {
    if (UserStateName(s) == name) return s;
  }
  return std::nullopt;
}

Principal SystemPrincipal(std::string login) {
  return Principal{std::move(login), Role::kAdministrator, ""};
}

bool Permits(Role role, std::string_view operation) {
  const auto& table = PermissionTable();
  const auto it = table.find(operation);
  return it != table.end() && it->second.contains(role);
}

ServiceResult<store::Done> Require(const Principal& principal, std::string_view operation) {
  if (Permits(principal.role, operation)) return store::Done{};
  if (!PermissionTable().contains(operation)) {
    return MakeServiceError(ErrorCode::kForbidden,
                            "'" + std::string(operation) + "' is not a known operation");
  }
  return MakeServiceError(ErrorCode::kForbidden, "the role " +
                                                     std::string(RoleName(principal.role)) +
                                                     " may not perform " + std::string(operation));
}

std::vector<std::string> KnownOperations() {
  std::vector<std::string> out;
  for (const auto& [operation, roles] : PermissionTable()) out.push_back(operation);
  return out;
}

std::vector<std::string> PermittedOperations(Role role) {
  std::vector<std::string> out;
  for (const auto& [operation, roles] : PermissionTable()) {
    if (roles.contains(role)) out.push_back(operation);
  }
  return out;
}

std::optional<std::string> CheckLogin(std::string_view login) {
  if (login.size() < 3 || login.size() > 32) return "a login is 3 to 32 characters";
  for (char c : login) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) return "a login has only a-z, 0-9, '.', '_' and '-'";
  }
  return std::nullopt;
}

std::optional<std::string> CheckPasswordPolicy(std::string_view login, std::string_view password) {
  if (password.size() < 10) return "a password has at least 10 characters";
  std::string lowered(password);
  std::transform(lowered.begin(), lowered.end(), lowered.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lowered == login) return "a password cannot be the login";
  return std::nullopt;
}

std::int64_t SystemClockMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Directory::Directory(DirectoryOptions options) : options_(std::move(options)) {
  if (!options_.clock) options_.clock = SystemClockMicros;
  if (options_.max_failed_sign_ins < 1) options_.max_failed_sign_ins = 1;
}

ServiceResult<User> Directory::AddUser(store::Connection& connection, const Principal& by,
                                       const NewUser& user, std::string_view from) const {
  if (auto allowed = Require(by, "user.add"); !allowed) return allowed.error();
  if (auto bad = CheckLogin(user.login))
    return MakeServiceError(ErrorCode::kInvalid, *bad, "login");
  if (user.display_name.empty() || user.display_name.size() > 200) {
    return MakeServiceError(ErrorCode::kInvalid, "a display name is 1 to 200 characters",
                            "display_name");
  }
  if (RoleNeedsBranch(user.role) && user.branch.empty()) {
    return MakeServiceError(ErrorCode::kInvalid,
                            "a " + std::string(RoleName(user.role)) + " is bound to a branch",
                            "branch");
  }
  if (user.branch.size() > 32) {
    return MakeServiceError(ErrorCode::kInvalid, "a branch code is at most 32 characters",
                            "branch");
  }
  if (auto bad = CheckPasswordPolicy(user.login, user.password)) {
    return MakeServiceError(ErrorCode::kInvalid, *bad, "password");
  }
  auto hash = HashPassword(user.password);
  if (!hash) return Internal(hash.error());
  return WriteTransaction<User>(
      connection,
      [&](store::Connection& c, std::optional<ServiceResult<User>>& outcome) -> store::DbStatus {
        const std::int64_t now = options_.clock();
        auto existing = LoadUser(c, user.login);
        if (!existing) return existing.error();
        if (*existing) {
          outcome = MakeServiceError(ErrorCode::kConflict, "the login " + user.login + " is taken",
                                     "login");
          return store::Done{};
        }
        auto inserted = c.Execute(
            "INSERT INTO access_users (login, display_name, role, branch, state, password_hash, "
            "failed_sign_ins, created_at_us, password_changed_at_us) "
            "VALUES (?, ?, ?, ?, 'active', ?, 0, ?, ?)",
            {user.login, user.display_name, RoleName(user.role), user.branch, *hash, now, now});
        if (!inserted) return inserted.error();
        if (auto s = Audit(c, now, by.login, "user.add", user.login,
                           json{{"display_name", user.display_name},
                                {"role", RoleName(user.role)},
                                {"branch", user.branch}},
                           from);
            !s) {
          return s;
        }
        User added{
            user.login, user.display_name, user.role, user.branch, UserState::kActive, 0, now, now};
        outcome = std::move(added);
        return store::Done{};
      });
}

ServiceResult<std::vector<User>> Directory::ListUsers(store::Connection& connection,
                                                      const Principal& by) const {
  if (auto allowed = Require(by, "user.read"); !allowed) return allowed.error();
  auto rows =
      connection.Query("SELECT " + std::string(kUserColumns) + " FROM access_users ORDER BY login");
  if (!rows) return Internal(rows.error());
  std::vector<User> out;
  for (const auto& row : *rows) out.push_back(UserOf(row).user);
  return out;
}

ServiceResult<User> Directory::GetUser(store::Connection& connection, const Principal& by,
                                       std::string_view login) const {
  if (by.login != login) {
    if (auto allowed = Require(by, "user.read"); !allowed) return allowed.error();
  }
  auto loaded = LoadUser(connection, login);
  if (!loaded) return Internal(loaded.error());
  if (!*loaded) {
    return MakeServiceError(ErrorCode::kNotFound, "no user " + std::string(login), "login");
  }
  return (*loaded)->user;
}

namespace {

ServiceResult<User> ChangeState(store::Connection& connection, const DirectoryOptions& options,
                                const Principal& by, std::string_view login, UserState to,
                                std::string_view operation, std::string_view from) {
  if (auto allowed = Require(by, operation); !allowed) return allowed.error();
  if (auto self = NotSelf(by, login, operation.substr(5)); !self) return self.error();
  return WriteTransaction<User>(
      connection,
      [&](store::Connection& c, std::optional<ServiceResult<User>>& outcome) -> store::DbStatus {
        const std::int64_t now = options.clock();
        auto loaded = LoadUser(c, login);
        if (!loaded) return loaded.error();
        if (!*loaded) {
          outcome =
              MakeServiceError(ErrorCode::kNotFound, "no user " + std::string(login), "login");
          return store::Done{};
        }
        User user = (*loaded)->user;
        const UserState was = user.state;
        user.state = to;
        if (to == UserState::kActive) user.failed_sign_ins = 0;
        auto changed =
            c.Execute("UPDATE access_users SET state = ?, failed_sign_ins = ? WHERE login = ?",
                      {UserStateName(to), user.failed_sign_ins, login});
        if (!changed) return changed.error();
        if (to != UserState::kActive) {
          auto ended = c.Execute(
              "UPDATE access_sessions SET ended_at_us = ? WHERE login = ? AND ended_at_us IS NULL",
              {now, login});
          if (!ended) return ended.error();
        }
        if (auto s = Audit(
                c, now, by.login, operation, login,
                json{{"from_state", UserStateName(was)}, {"to_state", UserStateName(to)}}, from);
            !s) {
          return s;
        }
        outcome = std::move(user);
        return store::Done{};
      });
}

}  // namespace

ServiceResult<User> Directory::Lock(store::Connection& connection, const Principal& by,
                                    std::string_view login, std::string_view from) const {
  return ChangeState(connection, options_, by, login, UserState::kLocked, "user.lock", from);
}

ServiceResult<User> Directory::Unlock(store::Connection& connection, const Principal& by,
                                      std::string_view login, std::string_view from) const {
  return ChangeState(connection, options_, by, login, UserState::kActive, "user.unlock", from);
}

ServiceResult<User> Directory::Disable(store::Connection& connection, const Principal& by,
                                       std::string_view login, std::string_view from) const {
  return ChangeState(connection, options_, by, login, UserState::kDisabled, "user.disable", from);
}

namespace {

ServiceResult<store::Done> StorePassword(store::Connection& connection,
                                         const DirectoryOptions& options, const Principal& by,
                                         std::string_view login, const std::string& hash,
                                         std::string_view from) {
  return WriteTransaction<store::Done>(
      connection,
      [&](store::Connection& c,
          std::optional<ServiceResult<store::Done>>& outcome) -> store::DbStatus {
        const std::int64_t now = options.clock();
        auto changed = c.Execute(
            "UPDATE access_users SET password_hash = ?, password_changed_at_us = ? WHERE login = ?",
            {hash, now, login});
        if (!changed) return changed.error();
        if (*changed == 0) {
          outcome =
              MakeServiceError(ErrorCode::kNotFound, "no user " + std::string(login), "login");
          return store::Done{};
        }
        auto ended = c.Execute(
            "UPDATE access_sessions SET ended_at_us = ? WHERE login = ? AND ended_at_us IS NULL",
            {now, login});
        if (!ended) return ended.error();
        if (auto s = Audit(c, now, by.login, "user.passwd", login, json::object(), from); !s) {
          return s;
        }
        outcome = store::Done{};
        return store::Done{};
      });
}

}  // namespace

ServiceResult<store::Done> Directory::SetPassword(store::Connection& connection,
                                                  const Principal& by, std::string_view login,
                                                  std::string_view new_password,
                                                  std::string_view from) const {
  if (auto allowed = Require(by, "user.passwd"); !allowed) return allowed.error();
  if (auto bad = CheckPasswordPolicy(login, new_password)) {
    return MakeServiceError(ErrorCode::kInvalid, *bad, "password");
  }
  auto hash = HashPassword(new_password);
  if (!hash) return Internal(hash.error());
  return StorePassword(connection, options_, by, login, *hash, from);
}

ServiceResult<store::Done> Directory::ChangeOwnPassword(store::Connection& connection,
                                                        const Principal& principal,
                                                        std::string_view current_password,
                                                        std::string_view new_password,
                                                        std::string_view from) const {
  if (auto bad = CheckPasswordPolicy(principal.login, new_password)) {
    return MakeServiceError(ErrorCode::kInvalid, *bad, "password");
  }
  auto checked = CheckPassword(connection, options_, principal.login, current_password,
                               "user.passwd_failed", json::object(), from);
  if (!checked) return checked.error();
  auto hash = HashPassword(new_password);
  if (!hash) return Internal(hash.error());
  return StorePassword(connection, options_, principal, principal.login, *hash, from);
}

ServiceResult<Session> Directory::SignIn(store::Connection& connection, std::string_view login,
                                         std::string_view password, std::string_view from) const {
  auto checked = CheckPassword(connection, options_, login, password, "user.sign_in_failed",
                               json::object(), from);
  if (!checked) return checked.error();
  const User& user = checked->user;
  std::array<unsigned char, 32> random{};
  if (RAND_bytes(random.data(), static_cast<int>(random.size())) != 1) {
    return MakeServiceError(ErrorCode::kInternal, "no random bytes for a session token");
  }
  static constexpr char kDigits[] = "0123456789abcdef";
  Session session;
  for (unsigned char b : random) {
    session.token.push_back(kDigits[b >> 4]);
    session.token.push_back(kDigits[b & 0x0F]);
  }
  session.principal = Principal{user.login, user.role, user.branch};
  const std::string token_hash = Sha256Hex(session.token);
  return WriteTransaction<Session>(
      connection,
      [&](store::Connection& c, std::optional<ServiceResult<Session>>& outcome) -> store::DbStatus {
        const std::int64_t now = options_.clock();
        auto inserted = c.Execute(
            "INSERT INTO access_sessions (token_hash, login, created_at_us, last_used_at_us, "
            "ended_at_us, from_address) VALUES (?, ?, ?, ?, NULL, ?)",
            {token_hash, user.login, now, now, from});
        if (!inserted) return inserted.error();
        if (auto s = Audit(c, now, user.login, "user.sign_in", user.login, json::object(), from);
            !s) {
          return s;
        }
        Session out = session;
        out.idle_expires_at_us = now + options_.idle_timeout.count() * 1'000'000;
        out.absolute_expires_at_us = now + options_.absolute_lifetime.count() * 1'000'000;
        outcome = std::move(out);
        return store::Done{};
      });
}

namespace {

struct LiveSession {
  Principal principal;
};

// The session's principal if it is live at `now`, else the 401 saying why.
ServiceResult<LiveSession> FindLiveSession(store::Connection& c, const DirectoryOptions& options,
                                           const std::string& token_hash, std::int64_t now,
                                           store::DbError* db_error) {
  auto rows = c.Query(
      "SELECT s.login, s.created_at_us, s.last_used_at_us, s.ended_at_us, u.role, u.branch, "
      "u.state FROM access_sessions s JOIN access_users u ON u.login = s.login "
      "WHERE s.token_hash = ?",
      {token_hash});
  if (!rows) {
    *db_error = rows.error();
    return MakeServiceError(ErrorCode::kInternal, rows.error().message);
  }
  if (rows->empty()) return MakeServiceError(ErrorCode::kUnauthenticated, "no such session");
  const auto& row = (*rows)[0];
  if (!row.IsNull(3)) return MakeServiceError(ErrorCode::kUnauthenticated, "the session has ended");
  if (now - row.Int(2) > options.idle_timeout.count() * 1'000'000) {
    return MakeServiceError(ErrorCode::kUnauthenticated, "the session expired (idle)");
  }
  if (now - row.Int(1) > options.absolute_lifetime.count() * 1'000'000) {
    return MakeServiceError(ErrorCode::kUnauthenticated, "the session expired (lifetime)");
  }
  if (row.Text(6) != "active") {
    return MakeServiceError(ErrorCode::kUnauthenticated, "the account is " + row.Text(6));
  }
  LiveSession live;
  live.principal.login = row.Text(0);
  live.principal.role = ParseRole(row.Text(4)).value_or(Role::kTeller);
  live.principal.branch = row.Text(5);
  return live;
}

}  // namespace

ServiceResult<Principal> Directory::Authenticate(store::Connection& connection,
                                                 std::string_view token) const {
  if (!IsTokenShape(token)) return MakeServiceError(ErrorCode::kUnauthenticated, "no such session");
  const std::string token_hash = Sha256Hex(token);
  return WriteTransaction<Principal>(
      connection,
      [&](store::Connection& c,
          std::optional<ServiceResult<Principal>>& outcome) -> store::DbStatus {
        const std::int64_t now = options_.clock();
        store::DbError db_error;
        db_error.message.clear();
        auto live = FindLiveSession(c, options_, token_hash, now, &db_error);
        if (!db_error.message.empty()) return db_error;
        if (!live) {
          outcome = live.error();
          return store::Done{};
        }
        auto touched =
            c.Execute("UPDATE access_sessions SET last_used_at_us = ? WHERE token_hash = ?",
                      {now, token_hash});
        if (!touched) return touched.error();
        outcome = live->principal;
        return store::Done{};
      });
}

ServiceResult<store::Done> Directory::SignOut(store::Connection& connection, std::string_view token,
                                              std::string_view from) const {
  if (!IsTokenShape(token)) return MakeServiceError(ErrorCode::kUnauthenticated, "no such session");
  const std::string token_hash = Sha256Hex(token);
  return WriteTransaction<store::Done>(
      connection,
      [&](store::Connection& c,
          std::optional<ServiceResult<store::Done>>& outcome) -> store::DbStatus {
        const std::int64_t now = options_.clock();
        store::DbError db_error;
        auto live = FindLiveSession(c, options_, token_hash, now, &db_error);
        if (!db_error.message.empty()) return db_error;
        if (!live) {
          outcome = live.error();
          return store::Done{};
        }
        auto ended = c.Execute("UPDATE access_sessions SET ended_at_us = ? WHERE token_hash = ?",
                               {now, token_hash});
        if (!ended) return ended.error();
        const std::string& login = live->principal.login;
        if (auto s = Audit(c, now, login, "user.sign_out", login, json::object(), from); !s) {
          return s;
        }
        outcome = store::Done{};
        return store::Done{};
      });
}

ServiceResult<Principal> Directory::VerifyCredentials(
    store::Connection& connection, std::string_view login, std::string_view password,
    std::string_view for_login, std::string_view operation, std::string_view from) const {
  auto checked = CheckPassword(connection, options_, login, password, "user.authorise_failed",
                               json{{"for", for_login}, {"operation", operation}}, from);
  if (!checked) return checked.error();
  return Principal{checked->user.login, checked->user.role, checked->user.branch};
}

}  // namespace medcard::access
