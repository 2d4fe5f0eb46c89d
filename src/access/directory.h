// The people who use the bank's services (docs/access.md): users with a role and a branch,
// passwords (scrypt), sessions (a random token, idle timeout and absolute lifetime), lock-out
// after failed sign-ins, and the permission table of which role may do which operation. Every
// sign-in, failed sign-in, lock, unlock and user change is written to the audit log in the same
// transaction.
//
// Each Directory call runs its own transaction(s) on the connection it is given: call it outside
// any open transaction. A Directory is immutable after construction and may be shared by
// threads; a Connection is used by one thread at a time.
//
//   access::Directory directory;
//   auto session = directory.SignIn(connection, "t01", password, "10.0.0.7");   // → token
//   auto principal = directory.Authenticate(connection, session->token);        // → t01, teller
//   if (auto allowed = access::Require(*principal, "card.report_loss"); !allowed) → 403
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "access/service_error.h"
#include "store/store.h"

namespace medcard::access {

const store::MigrationSet& Migrations();

enum class Role {
  kTeller,
  kSeniorTeller,
  kSupervisor,
  kAuditor,
  kAdministrator,
  kAgencySystem,
  kInsuranceOfficer,  // the agency's staff (docs/access.md "The agency's roles")
};
// "teller", "senior_teller", "supervisor", "auditor", "administrator", "agency_system",
// "insurance_officer".
std::string_view RoleName(Role role);
std::optional<Role> ParseRole(std::string_view name);
// Tellers and senior tellers work at a branch: their branch code is required.
bool RoleNeedsBranch(Role role);

enum class UserState { kActive, kLocked, kDisabled };
std::string_view UserStateName(UserState state);  // "active", "locked", "disabled"
std::optional<UserState> ParseUserState(std::string_view name);

// Who is acting: what Authenticate returns for a session and Authorise for an authoriser.
struct Principal {
  std::string login;
  Role role = Role::kTeller;
  std::string branch;  // the branch code; empty for roles without one
};
// A principal for programs acting as themselves (the CLI's bootstrap, the host's jobs): an
// administrator with no password, never stored as a user. Its actions are audited under `login`.
Principal SystemPrincipal(std::string login);

// ---------------------------------------------------------------------------------------------
// Permissions (docs/access.md "Permissions"): operation names like "card.report_loss".

// True when `role` may perform `operation` (alone or with an authoriser).
bool Permits(Role role, std::string_view operation);
// 403 with a message naming the role and the operation when it may not.
ServiceResult<store::Done> Require(const Principal& principal, std::string_view operation);
// Every operation the permission table knows, in name order.
std::vector<std::string> KnownOperations();
// The operations `role` may perform, in name order.
std::vector<std::string> PermittedOperations(Role role);

// ---------------------------------------------------------------------------------------------
// Users.

// Logins are [a-z0-9._-]{3,32}. Nullopt when `login` is valid, else a message.
std::optional<std::string> CheckLogin(std::string_view login);
// The password policy: at least 10 characters, not the login (nor the login with case changed).
std::optional<std::string> CheckPasswordPolicy(std::string_view login, std::string_view password);

struct User {
  std::string login;
  std::string display_name;
  Role role = Role::kTeller;
  std::string branch;
  UserState state = UserState::kActive;
  std::int64_t failed_sign_ins = 0;  // in a row since the last successful sign-in or unlock
  std::int64_t created_at_us = 0;
  std::int64_t password_changed_at_us = 0;
};

struct NewUser {
  std::string login;
  std::string display_name;
  Role role = Role::kTeller;
  std::string branch;
  std::string password;
};

struct Session {
  std::string token;  // 64 hex digits (256 random bits); returned once, only its SHA-256 stored
  Principal principal;
  std::int64_t idle_expires_at_us = 0;      // when it ends unless used before
  std::int64_t absolute_expires_at_us = 0;  // when it ends whatever happens
};

// Microseconds since the epoch, UTC.
using Clock = std::function<std::int64_t()>;
std::int64_t SystemClockMicros();

struct DirectoryOptions {
  std::chrono::seconds idle_timeout{std::chrono::minutes(15)};
  std::chrono::seconds absolute_lifetime{std::chrono::hours(8)};
  int max_failed_sign_ins = 5;  // this many wrong passwords in a row lock the account
  Clock clock = SystemClockMicros;
};

class Directory {
 public:
  explicit Directory(DirectoryOptions options = {});

  const DirectoryOptions& options() const { return options_; }

  // Operation "user.add". 400 (field named) for a bad login, role/branch mismatch or a password
  // the policy refuses; 409 when the login exists.
  ServiceResult<User> AddUser(store::Connection& connection, const Principal& by,
                              const NewUser& user, std::string_view from) const;
  // Operation "user.read". In login order.
  ServiceResult<std::vector<User>> ListUsers(store::Connection& connection,
                                             const Principal& by) const;
  ServiceResult<User> GetUser(store::Connection& connection, const Principal& by,
                              std::string_view login) const;
  // Operations "user.lock", "user.unlock" (also clears the failed sign-in count), "user.disable".
  // 404 for an unknown login; 403 for acting on oneself.
  ServiceResult<User> Lock(store::Connection& connection, const Principal& by,
                           std::string_view login, std::string_view from) const;
  ServiceResult<User> Unlock(store::Connection& connection, const Principal& by,
                             std::string_view login, std::string_view from) const;
  ServiceResult<User> Disable(store::Connection& connection, const Principal& by,
                              std::string_view login, std::string_view from) const;
  // Operation "user.passwd": an administrator sets another user's password (ends their sessions).
  ServiceResult<store::Done> SetPassword(store::Connection& connection, const Principal& by,
                                         std::string_view login, std::string_view new_password,
                                         std::string_view from) const;
  // Any user changes their own password, giving the current one (401 when wrong; counts toward
  // lock-out). Ends all the user's sessions: they sign in again with the new password.
  ServiceResult<store::Done> ChangeOwnPassword(store::Connection& connection,
                                               const Principal& principal,
                                               std::string_view current_password,
                                               std::string_view new_password,
                                               std::string_view from) const;

  // Sign-in: 401 for an unknown login or a wrong password (the same message for both), 423 for a
  // locked account (even with the right password), 403 for a disabled one. The max_failed_sign_ins
  // th wrong password in a row locks the account (audited "user.lock").
  ServiceResult<Session> SignIn(store::Connection& connection, std::string_view login,
                                std::string_view password, std::string_view from) const;
  // 401 when the token is unknown, expired, signed out, or its user is no longer active.
  // Extends the idle timeout.
  ServiceResult<Principal> Authenticate(store::Connection& connection,
                                        std::string_view token) const;
  // Ends the session (audited "user.sign_out"); 401 when it is not a live session.
  ServiceResult<store::Done> SignOut(store::Connection& connection, std::string_view token,
                                     std::string_view from) const;

  // Checks a user's password for an authorisation (authority.h): the user's Principal, or 401
  // (wrong password; counts toward lock-out and is audited "user.authorise_failed"), 423, 403.
  ServiceResult<Principal> VerifyCredentials(store::Connection& connection, std::string_view login,
                                             std::string_view password, std::string_view for_login,
                                             std::string_view operation,
                                             std::string_view from) const;

 private:
  DirectoryOptions options_;
};

}  // namespace medcard::access
