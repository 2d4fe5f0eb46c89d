// Dual control and amount limits (docs/access.md "Dual control"). Sensitive operations (the
// table access_dual_control: card.close, card.replace, card.unblock, card.pin_reset by default)
// always need an authoriser; an operation with an amount needs one when the amount is above the
// acting role's own limit. The authoriser gives their own login and password in the same request
// and must be another person, active, of a role that may authorise (senior_teller, supervisor),
// permitted the operation, and within their role's authorisation limit. Limits are per role, in
// fen, in the table access_role_limits.
//
//   access::Authority authority(directory);
//   auto authorised_by = authority.Check(connection, teller, "card.close", balance_fen,
//                                        credentials, from);
//   // → nullopt (no authoriser needed), the authoriser's Principal, or 401/403/423
//
// Like Directory, each call runs its own transaction: call it before opening the action's
// transaction (a wrong authoriser password must count even though the action does not happen),
// then audit the action with authorised_by = the authoriser's login.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "access/directory.h"
#include "access/service_error.h"
#include "store/store.h"

namespace medcard::access {

struct AuthoriserCredentials {
  std::string login;
  std::string password;
};

struct RoleLimit {
  Role role = Role::kTeller;
  std::int64_t own_limit_fen = 0;  // the largest amount the role may handle alone
  // The largest amount the role may authorise; nullopt: the role may not authorise.
  std::optional<std::int64_t> authorise_limit_fen;
};

class Authority {
 public:
  explicit Authority(const Directory& directory) : directory_(&directory) {}

  // True when `principal` needs an authoriser for `operation` at `amount_fen` (0 when the
  // operation has no amount). 400 for a negative amount.
  ServiceResult<bool> NeedsAuthoriser(store::Connection& connection, const Principal& principal,
                                      std::string_view operation, std::int64_t amount_fen) const;

  // The authoriser's Principal, or: 401 (wrong password; counts toward the authoriser's
  // lock-out), 423 (authoriser locked), 403 (the same person, a role that may not authorise or
  // may not perform the operation, over the role's limit, disabled).
  ServiceResult<Principal> Authorise(store::Connection& connection, const Principal& principal,
                                     std::string_view operation, std::int64_t amount_fen,
                                     std::string_view authoriser_login,
                                     std::string_view authoriser_password,
                                     std::string_view from) const;

  // Everything a service needs in one call: Require(principal, operation); then, when an
  // authoriser is needed, 403 "needs authorisation" without credentials, else Authorise. An
  // authoriser given when none is needed is still checked (and returned).
  ServiceResult<std::optional<Principal>> Check(
      store::Connection& connection, const Principal& principal, std::string_view operation,
      std::int64_t amount_fen, const std::optional<AuthoriserCredentials>& authoriser,
      std::string_view from) const;

  // The limits of every role, in RoleName order; "limits.read".
  ServiceResult<std::vector<RoleLimit>> Limits(store::Connection& connection) const;
  // Sets one role's limits (operation "limits.change", audited).
  ServiceResult<store::Done> SetLimit(store::Connection& connection, const Principal& by,
                                      const RoleLimit& limit, std::string_view from) const;
  // The operations that always need an authoriser, in name order.
  ServiceResult<std::vector<std::string>> DualControlOperations(
      store::Connection& connection) const;
  // Adds or removes one (operation "limits.change", audited).
  ServiceResult<store::Done> SetDualControl(store::Connection& connection, const Principal& by,
                                            std::string_view operation, bool required,
                                            std::string_view from) const;

 private:
  const Directory* directory_;
};

}  // namespace medcard::access
