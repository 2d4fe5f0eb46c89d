// The production issuer: probe, reserve, personalise, log (docs/issuance.md, "The flow").
#include "issuance/issuer.h"

#include <algorithm>
#include <ctime>
#include <map>

#include "crypto/crypto.h"
#include "iso7816/apdu.h"
#include "iso7816/status.h"
#include "iso8583/messages.h"
#include "issuance/test_issuer.h"
#include "keys/pboc.h"

namespace medcard::issuance {

namespace {

using iso7816::CommandApdu;
using nlohmann::json;
namespace sw = iso7816::sw;

constexpr std::size_t kPsamMaxKeys = 16;  // docs/psam-commands.md, "Keys"

std::string UtcTimestamp() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

bool IsPin(std::string_view pin) {
  return pin.size() == 6 &&
         std::all_of(pin.begin(), pin.end(), [](char c) { return c >= '0' && c <= '9'; });
}

Date AddYears(const Date& d, int years) {
  Date out{d.year + years, d.month, d.day};
  if (!IsValidDate(out)) out.day = 28;  // 29 February in a year that has none
  return out;
}

Result<iso7816::ResponseApdu> Exchange(reader::Reader& reader, const CommandApdu& command,
                                       const char* what) {
  auto response = reader::Send(reader, command);
  if (!response.ok()) return MakeError(std::string(what) + ": " + response.error().message);
  return response;
}

// The layout's keys as store roles (deduplicated, in layout order).
std::vector<std::string> LayoutRoles(const card::DfLayout& df) {
  std::vector<std::string> roles;
  const auto visit = [&roles](const card::DfLayout& d, const auto& self) -> void {
    for (const card::KeySpec& k : d.keys) {
      auto role = StoreRoleForLayoutKey(k.master_key);
      if (role.ok() && std::find(roles.begin(), roles.end(), *role) == roles.end()) {
        roles.push_back(*role);
      }
    }
    for (const card::DfLayout& child : d.dfs) self(child, self);
  };
  visit(df, visit);
  return roles;
}

// What the device is after a failed personalisation; `after` is an error when it left the reader.
std::string StateSentence(DeviceKind kind, const Result<DeviceProbe>& after, const Bytes& serial) {
  const std::string device = kind == DeviceKind::kCard ? "card" : "PSAM";
  const std::string number =
      std::string(kind == DeviceKind::kCard ? "ASN " : "PSAM serial ") + ToHex(View(serial));
  const std::string burned = number + " stays reserved in the issuance log and is never reused";
  if (!after.ok()) {
    return "The " + device +
           " left the reader: if any step reached it, it is half-personalised (lifecycle "
           "personalisation) and can never be used for payments; issuing it again tells (a "
           "half-personalised " +
           device + " is refused). " + burned + ".";
  }
  if (after->state == DeviceState::kBlank) {
    return "The " + device + " is still blank and can be issued again with a new number; " +
           burned + ".";
  }
  return "The " + device +
         " is half-personalised (lifecycle personalisation): it can never be used for payments "
         "and cannot be issued again (docs/issuance.md, \"Half-personalised cards\"); " +
         burned + ".";
}

}  // namespace

const char* DeviceStateName(DeviceState state) {
  switch (state) {
    case DeviceState::kBlank:
      return "blank";
    case DeviceState::kHalfPersonalised:
      return "half-personalised";
    case DeviceState::kPersonalised:
      return "personalised";
    case DeviceState::kBlocked:
      return "blocked";
  }
  return "unknown";
}

// ---- Probing --------------------------------------------------------------------------------

Result<DeviceProbe> ProbeCard(reader::Reader& reader) {
  DeviceProbe probe;
  auto chip = Exchange(reader, CommandApdu::Case2(0x80, 0xCA, 0x00, 0x01, 8), "GET DATA");
  if (!chip.ok()) return chip.error();
  if (chip->sw == sw::kFunctionNotSupported) {  // a blocked card answers 6A81 to everything
    probe.state = DeviceState::kBlocked;
    return probe;
  }
  if (!chip->ok() || chip->data.size() != 8) {
    return MakeError("the card does not answer GET DATA 80 CA 00 01 08 with its chip serial (" +
                     chip->sw.ToString() + "): not a medcard card");
  }
  probe.chip_serial = chip->data;
  // CREATE FILE with P1P2 FFFF changes nothing: 6985 once operational, else 6A86.
  auto lifecycle =
      Exchange(reader, CommandApdu::Case3(0x80, 0xE0, 0xFF, 0xFF, {0x62, 0x00}), "CREATE FILE");
  if (!lifecycle.ok()) return lifecycle.error();
  if (lifecycle->sw == sw::kConditionsNotSatisfied) {
    probe.state = DeviceState::kPersonalised;
    return probe;
  }
  if (lifecycle->sw != sw::kWrongP1P2) {
    return MakeError("the card answers a lifecycle probe with " + lifecycle->sw.ToString() +
                     ": not a medcard card");
  }
  // In personalisation: any file of the standard profile means an interrupted issuance.
  for (std::uint16_t fid : {card::kDirFid, card::kPseFid, card::kAdfFid, card::kSsseFid}) {
    auto mf = Exchange(reader, CommandApdu::Case3(0x00, 0xA4, 0x00, 0x0C, {0x3F, 0x00}), "SELECT");
    if (!mf.ok()) return mf.error();
    const Bytes fid_bytes{static_cast<std::uint8_t>(fid >> 8), static_cast<std::uint8_t>(fid)};
    auto found = Exchange(reader, CommandApdu::Case3(0x00, 0xA4, 0x00, 0x0C, fid_bytes), "SELECT");
    if (!found.ok()) return found.error();
    if (found->ok()) {
      probe.state = DeviceState::kHalfPersonalised;
      break;
    }
  }
  auto mf = Exchange(reader, CommandApdu::Case3(0x00, 0xA4, 0x00, 0x0C, {0x3F, 0x00}), "SELECT");
  if (!mf.ok()) return mf.error();
  return probe;
}

Result<DeviceProbe> ProbePsam(reader::Reader& reader) {
  DeviceProbe probe;
  auto chip = Exchange(reader, CommandApdu::Case2(0x80, 0xCA, 0x00, 0x01, 8), "GET DATA");
  if (!chip.ok()) return chip.error();
  if (chip->ok() && chip->data.size() == 8) probe.chip_serial = chip->data;
  // UPDATE BINARY with invalid P1 changes nothing: 6985 once operational, else 6A86.
  auto lifecycle =
      Exchange(reader, CommandApdu::Case3(0x00, 0xD6, 0xFF, 0x00, {0x00}), "UPDATE BINARY");
  if (!lifecycle.ok()) return lifecycle.error();
  if (lifecycle->sw == sw::kConditionsNotSatisfied) {
    probe.state = DeviceState::kPersonalised;
    return probe;
  }
  if (lifecycle->sw != sw::kWrongP1P2) {
    return MakeError("the device answers a lifecycle probe with " + lifecycle->sw.ToString() +
                     ": not a medcard PSAM");
  }
  // EF 15 (PSAM serial ...) is the first thing personalisation writes; zeros until then.
  auto ef15 = Exchange(reader, CommandApdu::Case2(0x00, 0xB0, 0x95, 0x00, 14), "READ BINARY");
  if (!ef15.ok()) return ef15.error();
  if (!ef15->ok()) {
    return MakeError("the PSAM answers READ BINARY EF 15 with " + ef15->sw.ToString());
  }
  if (std::any_of(ef15->data.begin(), ef15->data.end(), [](std::uint8_t b) { return b != 0; })) {
    probe.state = DeviceState::kHalfPersonalised;
  }
  return probe;
}

// ---- The issuer -----------------------------------------------------------------------------

Issuer::Issuer(keys::KeyStore& store, IssuanceLog& log, IssuanceConfig config,
               std::string operator_name)
    : store_(store),
      log_(log),
      config_(std::move(config)),
      operator_(std::move(operator_name)),
      issue_date_(Today()) {}

json Issuer::Context() const {
  return json{
      {"format", 1},           {"time", UtcTimestamp()},     {"date", issue_date_.ToString()},
      {"operator", operator_}, {"store", store_.Describe()}, {"test", store_.test_only()}};
}

Result<std::vector<KeyUse>> Issuer::KeyUses(
    const std::vector<std::pair<std::string, std::uint8_t>>& used) {
  auto list = store_.List();
  if (!list.ok()) return list.error();
  std::vector<KeyUse> uses;
  for (const auto& key : used) {
    const std::string& name = key.first;
    const std::uint8_t version = key.second;
    const auto it = std::find_if(list->begin(), list->end(), [&](const keys::KeyInfo& info) {
      return info.name == name && info.version == version;
    });
    if (it == list->end()) {
      return MakeError("key store " + store_.Describe() + " has no key " + name + " v" +
                       std::to_string(version));
    }
    uses.push_back(KeyUse{name, version, it->kcv});
  }
  return uses;
}

namespace {
json KeysJson(const std::vector<KeyUse>& keys) {
  json out = json::array();
  for (const KeyUse& k : keys)
    out.push_back({{"name", k.name}, {"version", k.version}, {"kcv", k.kcv}});
  return out;
}
}  // namespace

Result<json> PinVerificationRecord(keys::KeyStore& store, ByteView asn, std::string_view pin) {
  const auto pan = iso8583::PanFromAsn(asn);
  if (!pan) return json();  // no PAN, no online PIN (docs/protocol.md 5.7)
  auto listed = store.List();
  if (!listed.ok()) return listed.error();
  std::optional<std::uint8_t> version;
  for (const auto& key : *listed) {
    if (key.name == keys::kCardPinVerificationKey)
      version = std::max(version.value_or(0), key.version);
  }
  if (!version) return json();  // this store makes no PIN verification values
  auto pvk = store.Find(keys::kCardPinVerificationKey, *version);
  if (!pvk.ok()) return pvk.error();
  auto offset = store.PinOffset(*pvk, *pan, pin);
  store.Release(*pvk);
  if (!offset.ok()) return offset.error();
  return json{{"method", kPinVerificationMethod},
              {"key", std::string(keys::kCardPinVerificationKey)},
              {"version", *version},
              {"offset", *offset}};
}

Result<IssuedCard> Issuer::IssueCard(reader::Reader& reader, const CardIssueRequest& request) {
  if (!IsPin(request.pin)) return MakeError("the PIN is 6 digits");
  const std::string prefix = request.asn_prefix.empty() ? config_.asn_prefix : request.asn_prefix;
  if (!request.asn && prefix.empty()) {
    return MakeError("no ASN: give one, or an ASN prefix (--asn-prefix, or asn_prefix in " +
                     std::string(IssuanceConfig::kFileName) + ")");
  }
  const bool test_card = store_.test_only();
  CardIdentity identity;
  identity.issuer_id = config_.issuer_id;
  identity.asn = request.asn.value_or(Bytes(10, 0x00));  // preflight: a placeholder number
  if (test_card)
    identity.issuer_data.assign(std::begin(kTestCardMarker), std::end(kTestCardMarker));
  identity.issue_date = issue_date_;
  identity.validity_years = config_.validity_years;
  identity.pin = request.pin;

  // Everything that can be checked without the card and without a number comes first, so bad
  // holder data or an unready store burns no ASN.
  auto preflight = ToCardHolderData(request.holder, identity);
  if (!preflight.ok()) return preflight.error();
  auto preflight_layout = card::StandardLayout(*preflight);
  if (!preflight_layout.ok()) return preflight_layout.error();
  auto key_version = CardKeyVersion(store_, *preflight_layout);
  if (!key_version.ok()) return key_version.error();
  auto transport_version = LatestVersion(store_, "transport");
  if (!transport_version.ok()) return transport_version.error();
  std::vector<std::pair<std::string, std::uint8_t>> used;
  for (const std::string& role : LayoutRoles(preflight_layout->mf))
    used.emplace_back(role, *key_version);
  used.emplace_back("transport", *transport_version);
  auto key_uses = KeyUses(used);
  if (!key_uses.ok()) return key_uses.error();

  if (!reader.Connected()) {
    if (auto atr = reader.Connect(); !atr.ok()) return MakeError("reader: " + atr.error().message);
  }
  auto transaction = reader::Transaction::Begin(reader);
  if (!transaction.ok()) return MakeError("reader: " + transaction.error().message);
  auto probe = ProbeCard(reader);
  if (!probe.ok()) return probe.error();
  switch (probe->state) {
    case DeviceState::kBlank:
      break;
    case DeviceState::kPersonalised:
      return MakeError(
          "card is already personalised (lifecycle operational): it cannot be "
          "issued again");
    case DeviceState::kHalfPersonalised:
      return MakeError(
          "card is half-personalised (lifecycle personalisation, files of an interrupted "
          "issuance present): it cannot be issued again and can never pay; put it aside for "
          "destruction (docs/issuance.md, \"Half-personalised cards\")");
    case DeviceState::kBlocked:
      return MakeError("card is blocked (it answers 6A81 to everything): it cannot be issued");
  }
  const Bytes chip_serial = *probe->chip_serial;

  json context = Context();
  context["chip_serial"] = ToHex(View(chip_serial));
  auto asn = log_.Reserve(DeviceKind::kCard, request.asn, prefix, context);
  if (!asn.ok()) return asn.error();

  identity.asn = *asn;
  identity.key_version = *key_version;
  json outcome = context;
  outcome["kind"] = "card";
  outcome["asn"] = ToHex(View(*asn));
  outcome["holder"] = request.holder.social_security_number;
  const auto fail = [&](const std::string& message) -> Error {
    json failed = outcome;
    failed["event"] = "failed";
    failed["time"] = UtcTimestamp();
    failed["error"] = message;
    (void)log_.Append(failed);  // the reservation is already durable: the number stays burned
    return MakeError(message);
  };

  auto holder_data = ToCardHolderData(request.holder, identity);
  if (!holder_data.ok()) return fail(holder_data.error().message);
  // Before the card gets its PIN: a card the host could not verify online is not issued.
  auto pin_verification = PinVerificationRecord(store_, View(*asn), request.pin);
  if (!pin_verification.ok()) return fail(pin_verification.error().message);
  auto layout = card::StandardLayout(*holder_data);
  if (!layout.ok()) return fail(layout.error().message);
  auto wrapper = KeyStoreCardWrapper::Create(store_, View(chip_serial), View(*asn));
  if (!wrapper.ok()) return fail(wrapper.error().message);
  auto script = card::BuildPersonalisation(*layout, **wrapper);
  if (!script.ok()) return fail(script.error().message);

  std::string reader_error;
  const card::Transmit transmit = [&](ByteView apdu) -> Bytes {
    auto response = reader.Transmit(apdu);
    if (!response.ok()) {
      reader_error = response.error().message;
      return {};
    }
    return std::move(response).value();
  };
  Status run = card::RunPersonalisation(*script, **wrapper, transmit);
  if (!run.ok()) {
    std::string message = "card " + ToHex(View(*asn)) + ": " + run.error().message;
    if (!reader_error.empty()) message += " (reader: " + reader_error + ")";
    const auto after =
        reader_error.empty() ? ProbeCard(reader) : Result<DeviceProbe>(MakeError(""));
    return fail(message + ". " + StateSentence(DeviceKind::kCard, after, *asn));
  }
  (void)transaction->End();

  json issued = outcome;
  issued["event"] = "issued";
  issued["time"] = UtcTimestamp();
  issued["key_version"] = *key_version;
  issued["keys"] = KeysJson(*key_uses);
  issued["valid_from"] = holder_data->start_date.ToString();
  issued["valid_to"] = holder_data->expiry_date.ToString();
  if (!pin_verification->is_null()) issued["pin_verification"] = *pin_verification;
  if (Status logged = log_.Append(issued); !logged.ok()) {
    return MakeError("card " + ToHex(View(*asn)) + " is issued, but the issuance log failed: " +
                     logged.error().message + " — record it by hand before issuing more");
  }
  return IssuedCard{*asn, chip_serial, test_card, *key_version, std::move(*key_uses)};
}

Result<IssuedPsam> Issuer::IssuePsam(reader::Reader& reader, const PsamIssueRequest& request) {
  if (request.terminal_number.size() != 6) return MakeError("a terminal number is 6 bytes");
  if (request.chip_serial && request.chip_serial->size() != 8) {
    return MakeError("a chip serial is 8 bytes");
  }
  const std::string prefix =
      request.serial_prefix.empty() ? config_.psam_serial_prefix : request.serial_prefix;
  if (!request.psam_serial && prefix.empty()) {
    return MakeError(
        "no PSAM serial: give one, or a prefix (--serial-prefix, or "
        "psam_serial_prefix in " +
        std::string(IssuanceConfig::kFileName) + ")");
  }
  const bool test_psam = store_.test_only();

  // The keys: every version of the master keys a PSAM holds (one PSAM serves cards of every
  // key version), the latest settlement key.
  auto list = store_.List();
  if (!list.ok()) return list.error();
  std::vector<psam::ProfileKey> profile_keys;
  std::vector<std::pair<std::string, std::uint8_t>> used;
  const std::pair<const char*, psam::KeyUsage> masters[] = {
      {"purchase", psam::KeyUsage::kPurchase},
      {"maintenance", psam::KeyUsage::kMaintenance},
      {"visit_record", psam::KeyUsage::kVisitRecord}};
  for (const auto& [role, usage] : masters) {
    bool any = false;
    for (const keys::KeyInfo& info : *list) {
      if (info.name != role) continue;
      psam::ProfileKey key;
      key.header.usage = usage;
      key.header.version = info.version;
      key.label = role;
      profile_keys.push_back(key);
      used.emplace_back(role, info.version);
      any = true;
    }
    if (!any) {
      return MakeError("key store " + store_.Describe() + " has no key \"" + role + "\"");
    }
  }
  auto settlement_version = LatestVersion(store_, "settlement");
  if (!settlement_version.ok()) return settlement_version.error();
  psam::ProfileKey settlement;
  settlement.header.usage = psam::KeyUsage::kSettlement;
  settlement.header.version = *settlement_version;
  settlement.label = "settlement";
  profile_keys.push_back(settlement);
  used.emplace_back("settlement", *settlement_version);
  if (profile_keys.size() > kPsamMaxKeys) {
    return MakeError("a PSAM holds at most 16 keys; the store has " +
                     std::to_string(profile_keys.size()) +
                     " versions of purchase, maintenance, visit_record and settlement");
  }
  auto transport_version = LatestVersion(store_, "transport");
  if (!transport_version.ok()) return transport_version.error();
  used.emplace_back("transport", *transport_version);
  auto key_uses = KeyUses(used);
  if (!key_uses.ok()) return key_uses.error();

  psam::PsamProfile profile;
  profile.psam_serial = request.psam_serial.value_or(Bytes(10, 0x00));  // preflight placeholder
  if (test_psam) profile.issuer_data.assign(std::begin(kTestCardMarker), std::end(kTestCardMarker));
  profile.terminal_number = request.terminal_number;
  profile.valid_from = issue_date_;
  profile.valid_to = AddYears(issue_date_, config_.validity_years);
  profile.keys = profile_keys;
  if (auto checked = psam::BuildPersonalisationScript(profile); !checked.ok()) {
    return checked.error();
  }

  if (!reader.Connected()) {
    if (auto atr = reader.Connect(); !atr.ok()) return MakeError("reader: " + atr.error().message);
  }
  auto transaction = reader::Transaction::Begin(reader);
  if (!transaction.ok()) return MakeError("reader: " + transaction.error().message);
  auto probe = ProbePsam(reader);
  if (!probe.ok()) return probe.error();
  switch (probe->state) {
    case DeviceState::kBlank:
      break;
    case DeviceState::kBlocked:
      return MakeError("PSAM is blocked: it cannot be issued");
    case DeviceState::kPersonalised:
      return MakeError(
          "PSAM is already personalised (lifecycle operational): it cannot be "
          "issued again");
    case DeviceState::kHalfPersonalised:
      return MakeError(
          "PSAM is half-personalised (lifecycle personalisation, EF 15 written by an interrupted "
          "issuance): it cannot be issued again; put it aside for destruction");
  }
  if (probe->chip_serial && request.chip_serial && *probe->chip_serial != *request.chip_serial) {
    return MakeError("the PSAM's chip serial is " + ToHex(View(*probe->chip_serial)) + ", not " +
                     ToHex(View(*request.chip_serial)));
  }
  if (!probe->chip_serial && !request.chip_serial) {
    return MakeError(
        "the PSAM does not report its chip serial (no GET DATA 80 CA 00 01 08): give "
        "it (--chip-serial, as the PSAM's factory sheet or `medcard psam blank` "
        "printed it)");
  }
  const Bytes chip_serial = probe->chip_serial ? *probe->chip_serial : *request.chip_serial;

  // Every key must be wrappable before a serial is spent (an HSM may refuse to export a master).
  {
    auto dry_run =
        KeyStorePsamWrapper::Create(store_, View(chip_serial), View(profile.psam_serial));
    if (!dry_run.ok()) return dry_run.error();
    const Bytes challenge(4, 0x00);
    for (const psam::ProfileKey& key : profile.keys) {
      auto wrapped = (*dry_run)->WrapKey(key.header, key.label, View(challenge));
      if (!wrapped.ok()) return wrapped.error();
    }
  }

  json context = Context();
  context["chip_serial"] = ToHex(View(chip_serial));
  auto serial = log_.Reserve(DeviceKind::kPsam, request.psam_serial, prefix, context);
  if (!serial.ok()) return serial.error();
  json outcome = context;
  outcome["kind"] = "psam";
  outcome["psam_serial"] = ToHex(View(*serial));
  outcome["terminal_number"] = ToHex(View(request.terminal_number));
  const auto fail = [&](const std::string& message) -> Error {
    json failed = outcome;
    failed["event"] = "failed";
    failed["time"] = UtcTimestamp();
    failed["error"] = message;
    (void)log_.Append(failed);
    return MakeError(message);
  };

  profile.psam_serial = *serial;
  auto script = psam::BuildPersonalisationScript(profile);
  if (!script.ok()) return fail(script.error().message);
  auto wrapper = KeyStorePsamWrapper::Create(store_, View(chip_serial), View(*serial));
  if (!wrapper.ok()) return fail(wrapper.error().message);
  std::string reader_error;
  const psam::TransmitFn transmit = [&](ByteView apdu) -> Bytes {
    auto response = reader.Transmit(apdu);
    if (!response.ok()) {
      reader_error = response.error().message;
      return {};
    }
    return std::move(response).value();
  };
  Status run = psam::RunPersonalisationScript(*script, **wrapper, transmit);
  if (!run.ok()) {
    std::string message = "PSAM " + ToHex(View(*serial)) + ": " + run.error().message;
    if (!reader_error.empty()) message += " (reader: " + reader_error + ")";
    const auto after =
        reader_error.empty() ? ProbePsam(reader) : Result<DeviceProbe>(MakeError(""));
    return fail(message + ". " + StateSentence(DeviceKind::kPsam, after, *serial));
  }
  (void)transaction->End();

  json issued = outcome;
  issued["event"] = "issued";
  issued["time"] = UtcTimestamp();
  issued["keys"] = KeysJson(*key_uses);
  issued["valid_from"] = profile.valid_from.ToString();
  issued["valid_to"] = profile.valid_to.ToString();
  if (Status logged = log_.Append(issued); !logged.ok()) {
    return MakeError("PSAM " + ToHex(View(*serial)) + " is issued, but the issuance log failed: " +
                     logged.error().message + " — record it by hand before issuing more");
  }
  return IssuedPsam{*serial, chip_serial, request.terminal_number, test_psam, std::move(*key_uses)};
}

// ---- PIN -----------------------------------------------------------------------------------

bool IsTrivialPin(std::string_view pin) {
  if (pin.size() < 2) return true;
  bool same = true, up = true, down = true;
  for (std::size_t i = 1; i < pin.size(); ++i) {
    same = same && pin[i] == pin[0];
    up = up && pin[i] == pin[i - 1] + 1;
    down = down && pin[i] == pin[i - 1] - 1;
  }
  return same || up || down;
}

std::string RandomPin() {
  for (;;) {
    std::string pin;
    while (pin.size() < 6) {
      for (std::uint8_t b : crypto::RandomBytes(8)) {
        if (b < 250 && pin.size() < 6) pin.push_back(static_cast<char>('0' + b % 10));  // unbiased
      }
    }
    if (!IsTrivialPin(pin)) return pin;
  }
}

std::string PinMailerText(const Holder& holder, ByteView asn, std::string_view pin,
                          const Date& issue_date) {
  std::string text;
  text += "medcard PIN mailer - personal and confidential\n\n";
  text += "Cardholder:  " + holder.name + "\n";
  text += "Card (ASN):  " + ToHex(asn) + "\n";
  text += "Issued:      " + issue_date.ToString() + "\n";
  text += "PIN:         " + std::string(pin) + "\n\n";
  text +=
      "Keep this PIN secret and destroy this letter. You can change the PIN at any branch or "
      "self-service terminal.\n";
  return text;
}

// ---- The issuer's side of transactions ------------------------------------------------------

namespace {
keys::LoadAuthorisationRequest LoadRequest(const terminal::LoadInitialisation& init) {
  keys::LoadAuthorisationRequest r;
  r.asn = init.asn;
  r.type = init.type;
  r.amount = init.amount;
  r.terminal_number = init.terminal_number;
  r.old_balance = init.old_balance;
  r.online_serial = init.online_serial;
  r.key_version = init.key_version;
  r.random = init.random;
  r.mac1 = init.mac1;
  r.date = init.date;
  r.time = init.time;
  return r;
}
}  // namespace

Result<Bytes> KeyStoreIssuerHost::Authorise(const terminal::LoadInitialisation& init) {
  return keys::AuthoriseLoad(store_, LoadRequest(init));
}

Status KeyStoreIssuerHost::Confirm(const terminal::LoadInitialisation& init, ByteView tac) {
  return keys::VerifyLoadTac(store_, LoadRequest(init), tac);
}

Status KeyStoreIssuerHost::VerifyPurchaseTac(const terminal::PurchaseResult& p,
                                             std::uint8_t key_version) {
  keys::PurchaseRecord r;
  r.asn = p.asn;
  r.type = p.type;
  r.amount = p.amount;
  r.terminal_number = p.terminal_number;
  r.terminal_serial = p.terminal_serial;
  r.date = p.date;
  r.time = p.time;
  r.key_version = key_version;
  r.tac = p.tac;
  return keys::VerifyPurchaseTac(store_, r);
}

Result<Bytes> KeyStoreIssuerHost::AcknowledgeSamTotals(ByteView psam_serial, ByteView challenge,
                                                       ByteView totals_answer,
                                                       std::uint8_t settlement_version) {
  return keys::AcknowledgeSamTotals(store_, psam_serial, challenge, totals_answer,
                                    settlement_version);
}

}  // namespace medcard::issuance
