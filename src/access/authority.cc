// Dual control and per-role amount limits (docs/access.md "Dual control").
#include "access/authority.h"

#include <algorithm>
#include <functional>
#include <nlohmann/json.hpp>

#include "audit/audit_log.h"

namespace medcard::access {

namespace {

using nlohmann::json;

ServiceError Internal(const Error& error) {
  return MakeServiceError(ErrorCode::kInternal, "the database failed: " + error.message);
}

ServiceResult<RoleLimit> LoadLimit(store::Connection& c, Role role) {
  auto rows =
      c.Query("SELECT own_limit_fen, authorise_limit_fen FROM access_role_limits WHERE role = ?",
              {RoleName(role)});
  if (!rows) return Internal(rows.error());
  RoleLimit limit;
  limit.role = role;
  if (rows->empty()) return limit;  // no row: nothing alone, no authorising
  limit.own_limit_fen = (*rows)[0].Int(0);
  if (!(*rows)[0].IsNull(1)) limit.authorise_limit_fen = (*rows)[0].Int(1);
  return limit;
}

std::string Yuan(std::int64_t fen) {
  return std::to_string(fen / 100) + "." + (fen % 100 < 10 ? "0" : "") + std::to_string(fen % 100);
}

// Runs body in a retried write transaction; the body returns a ServiceResult or a DbError.
ServiceResult<store::Done> Write(store::Connection& connection,
                                 const std::function<store::DbStatus(store::Connection&)>& body) {
  auto status = store::RunTransaction(connection, store::TransactionMode::kWrite, body);
  if (!status) return Internal(status.error());
  return store::Done{};
}

}  // namespace

ServiceResult<bool> Authority::NeedsAuthoriser(store::Connection& connection,
                                               const Principal& principal,
                                               std::string_view operation,
                                               std::int64_t amount_fen) const {
  if (amount_fen < 0) {
    return MakeServiceError(ErrorCode::kInvalid, "an amount cannot be negative", "amount");
  }
  auto dual =
      connection.Query("SELECT 1 FROM access_dual_control WHERE operation = ?", {operation});
  if (!dual) return Internal(dual.error());
  if (!dual->empty()) return true;
  auto limit = LoadLimit(connection, principal.role);
  if (!limit) return limit.error();
  return amount_fen > limit->own_limit_fen;
}

ServiceResult<Principal> Authority::Authorise(store::Connection& connection,
                                              const Principal& principal,
                                              std::string_view operation, std::int64_t amount_fen,
                                              std::string_view authoriser_login,
                                              std::string_view authoriser_password,
                                              std::string_view from) const {
  if (amount_fen < 0) {
    return MakeServiceError(ErrorCode::kInvalid, "an amount cannot be negative", "amount");
  }
  if (authoriser_login == principal.login) {
    return MakeServiceError(ErrorCode::kForbidden,
                            "dual control: the authoriser must be another person",
                            "authoriser.login");
  }
  auto authoriser = directory_->VerifyCredentials(connection, authoriser_login, authoriser_password,
                                                  principal.login, operation, from);
  if (!authoriser) {
    ServiceError error = authoriser.error();
    error.field = "authoriser";
    error.message = "authoriser: " + error.message;
    return error;
  }
  const std::string role_name(RoleName(authoriser->role));
  auto limit = LoadLimit(connection, authoriser->role);
  if (!limit) return limit.error();
  if (!limit->authorise_limit_fen) {
    return MakeServiceError(ErrorCode::kForbidden,
                            "dual control: the role " + role_name + " may not authorise",
                            "authoriser");
  }
  if (!Permits(authoriser->role, operation)) {
    return MakeServiceError(
        ErrorCode::kForbidden,
        "dual control: the role " + role_name + " may not perform " + std::string(operation),
        "authoriser");
  }
  if (amount_fen > *limit->authorise_limit_fen) {
    return MakeServiceError(ErrorCode::kForbidden,
                            "dual control: " + Yuan(amount_fen) + " yuan is over the " + role_name +
                                " authorisation limit of " + Yuan(*limit->authorise_limit_fen) +
                                " yuan",
                            "amount");
  }
  return *authoriser;
}

ServiceResult<std::optional<Principal>> Authority::Check(
    store::Connection& connection, const Principal& principal, std::string_view operation,
    std::int64_t amount_fen, const std::optional<AuthoriserCredentials>& authoriser,
    std::string_view from) const {
  if (auto allowed = Require(principal, operation); !allowed) return allowed.error();
  auto needed = NeedsAuthoriser(connection, principal, operation, amount_fen);
  if (!needed) return needed.error();
  if (*needed && !authoriser) {
    return MakeServiceError(ErrorCode::kForbidden,
                            std::string(operation) +
                                " needs a senior teller's or supervisor's "
                                "authorisation in the same request",
                            "authoriser");
  }
  if (!authoriser) return std::optional<Principal>();
  auto authorised = Authorise(connection, principal, operation, amount_fen, authoriser->login,
                              authoriser->password, from);
  if (!authorised) return authorised.error();
  return std::optional<Principal>(std::move(*authorised));
}

ServiceResult<std::vector<RoleLimit>> Authority::Limits(store::Connection& connection) const {
  std::vector<RoleLimit> out;
  for (Role role : {Role::kAdministrator, Role::kAgencySystem, Role::kAuditor, Role::kSeniorTeller,
                    Role::kSupervisor, Role::kTeller}) {
    auto limit = LoadLimit(connection, role);
    if (!limit) return limit.error();
    out.push_back(*limit);
  }
  return out;
}

ServiceResult<store::Done> Authority::SetLimit(store::Connection& connection, const Principal& by,
                                               const RoleLimit& limit,
                                               std::string_view from) const {
  if (auto allowed = Require(by, "limits.change"); !allowed) return allowed.error();
  if (limit.own_limit_fen < 0 || (limit.authorise_limit_fen && *limit.authorise_limit_fen < 0)) {
    return MakeServiceError(ErrorCode::kInvalid, "a limit cannot be negative", "limit");
  }
  return Write(connection, [&](store::Connection& c) -> store::DbStatus {
    auto removed =
        c.Execute("DELETE FROM access_role_limits WHERE role = ?", {RoleName(limit.role)});
    if (!removed) return removed.error();
    auto inserted = c.Execute(
        "INSERT INTO access_role_limits (role, own_limit_fen, authorise_limit_fen) "
        "VALUES (?, ?, ?)",
        {RoleName(limit.role), limit.own_limit_fen, limit.authorise_limit_fen});
    if (!inserted) return inserted.error();
    json details{{"role", RoleName(limit.role)}, {"own_limit_fen", limit.own_limit_fen}};
    details["authorise_limit_fen"] =
        limit.authorise_limit_fen ? json(*limit.authorise_limit_fen) : json(nullptr);
    auto appended =
        audit::AppendDb(c,
                        {by.login, "", "limits.change", "role:" + std::string(RoleName(limit.role)),
                         details.dump(), std::string(from)},
                        directory_->options().clock());
    if (!appended) return appended.error();
    return store::Done{};
  });
}

ServiceResult<std::vector<std::string>> Authority::DualControlOperations(
    store::Connection& connection) const {
  auto rows = connection.Query("SELECT operation FROM access_dual_control ORDER BY operation");
  if (!rows) return Internal(rows.error());
  std::vector<std::string> out;
  for (const auto& row : *rows) out.push_back(row.Text(0));
  return out;
}

ServiceResult<store::Done> Authority::SetDualControl(store::Connection& connection,
                                                     const Principal& by,
                                                     std::string_view operation, bool required,
                                                     std::string_view from) const {
  if (auto allowed = Require(by, "limits.change"); !allowed) return allowed.error();
  const auto known = KnownOperations();
  if (std::find(known.begin(), known.end(), operation) == known.end()) {
    return MakeServiceError(ErrorCode::kInvalid,
                            "'" + std::string(operation) + "' is not a known operation",
                            "operation");
  }
  return Write(connection, [&](store::Connection& c) -> store::DbStatus {
    auto removed = c.Execute("DELETE FROM access_dual_control WHERE operation = ?", {operation});
    if (!removed) return removed.error();
    if (required) {
      auto inserted =
          c.Execute("INSERT INTO access_dual_control (operation) VALUES (?)", {operation});
      if (!inserted) return inserted.error();
    }
    auto appended =
        audit::AppendDb(c,
                        {by.login, "", "limits.dual_control", "operation:" + std::string(operation),
                         json{{"required", required}}.dump(), std::string(from)},
                        directory_->options().clock());
    if (!appended) return appended.error();
    return store::Done{};
  });
}

}  // namespace medcard::access
