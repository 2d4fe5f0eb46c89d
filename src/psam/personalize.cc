#include "psam/personalize.h"

#include <algorithm>
#include <cstdio>

#include "crypto/crypto.h"
#include "iso7816/apdu.h"
#include "iso7816/status.h"

namespace medcard::psam {

namespace {

constexpr std::uint8_t kClaMac = 0x84;
constexpr std::uint8_t kInsWriteKey = 0xD4;
constexpr std::uint8_t kInsEndPersonalisation = 0xEE;
constexpr std::size_t kMacSize = 4;

// The challenge zero-padded to 8 bytes: challenge(4) ‖ 00000000.
Result<Bytes> ChallengeIv(ByteView challenge) {
  if (challenge.size() != 4 && challenge.size() != 8) {
    return MakeError("PSAM challenge must be 4 or 8 bytes");
  }
  Bytes iv(challenge.begin(), challenge.end());
  iv.resize(8, 0x00);
  return iv;
}

std::string Hex2(std::uint8_t b) {
  char buf[3];
  std::snprintf(buf, sizeof buf, "%02X", b);
  return buf;
}

Bytes UpdateBinaryBySfi(std::uint8_t sfi, ByteView data) {
  return iso7816::CommandApdu::Case3(0x00, 0xD6, static_cast<std::uint8_t>(0x80 | sfi), 0x00,
                                     Bytes(data.begin(), data.end()))
      .Serialize();
}

}  // namespace

Bytes KeyHeader::Encode() const {
  return {static_cast<std::uint8_t>(usage), index, version, alg_id, error_limit};
}

Result<Bytes> BuildWriteKeyData(ByteView transport_key, const KeyHeader& header, ByteView key,
                                ByteView challenge) {
  auto iv = ChallengeIv(challenge);
  if (!iv) return iv.error();
  auto cryptogram = crypto::EncryptKeyForTransport(transport_key, key);
  if (!cryptogram) return MakeError("wrapping key: " + cryptogram.error().message);
  const Bytes encoded_header = header.Encode();
  const std::size_t lc = encoded_header.size() + cryptogram->size() + kMacSize;
  if (lc > 255) return MakeError("WRITE KEY data too long");
  const Bytes apdu_header = {kClaMac, kInsWriteKey, 0x00, 0x00, static_cast<std::uint8_t>(lc)};
  auto mac = crypto::PbocMac(
      transport_key, View(Concat({View(apdu_header), View(encoded_header), View(*cryptogram)})),
      View(*iv));
  if (!mac) return MakeError("MAC of WRITE KEY: " + mac.error().message);
  return Concat({View(encoded_header), View(*cryptogram), View(*mac)});
}

Result<Bytes> BuildEndPersonalisationMac(ByteView transport_key, ByteView challenge) {
  auto iv = ChallengeIv(challenge);
  if (!iv) return iv.error();
  const Bytes apdu_header = {kClaMac, kInsEndPersonalisation, 0x00, 0x00,
                             static_cast<std::uint8_t>(kMacSize)};
  auto mac = crypto::PbocMac(transport_key, View(apdu_header), View(*iv));
  if (!mac) return MakeError("MAC of END PERSONALISATION: " + mac.error().message);
  return mac;
}

ClearKeyWrapper::ClearKeyWrapper(Bytes transport_key,
                                 std::map<std::string, Bytes, std::less<>> keys)
    : transport_key_(std::move(transport_key)), keys_(std::move(keys)) {}

ClearKeyWrapper::~ClearKeyWrapper() {
  SecureWipe(transport_key_);
  for (auto& [label, key] : keys_) SecureWipe(key);
}

Result<Bytes> ClearKeyWrapper::WrapKey(const KeyHeader& header, std::string_view label,
                                       ByteView challenge) {
  const auto it = keys_.find(label);
  if (it == keys_.end()) return MakeError("no key labelled '" + std::string(label) + "'");
  return BuildWriteKeyData(View(transport_key_), header, View(it->second), challenge);
}

Result<Bytes> ClearKeyWrapper::EndPersonalisationMac(ByteView challenge) {
  return BuildEndPersonalisationMac(View(transport_key_), challenge);
}

Result<PersonalisationScript> BuildPersonalisationScript(const PsamProfile& p) {
  if (p.psam_serial.size() != 10) return MakeError("PSAM serial must be 10 bytes");
  if (p.issuer_data.size() != 2) return MakeError("PSAM issuer data must be 2 bytes");
  if (p.terminal_number.size() != 6) return MakeError("terminal number must be 6 bytes");
  if (!IsValidDate(p.valid_from) || !IsValidDate(p.valid_to)) {
    return MakeError("PSAM validity dates must be real dates");
  }
  if (p.valid_from > p.valid_to) return MakeError("PSAM valid-from is after valid-to");
  int purchase_keys = 0;
  int settlement_keys = 0;
  for (std::size_t i = 0; i < p.keys.size(); ++i) {
    const KeyHeader& h = p.keys[i].header;
    if (h.usage == KeyUsage::kPurchase) ++purchase_keys;
    if (h.usage == KeyUsage::kSettlement) ++settlement_keys;
    if (h.alg_id != kAlgTdes) return MakeError("key '" + p.keys[i].label + "': algorithm not 3DES");
    if (h.index == 0) return MakeError("key '" + p.keys[i].label + "': index must not be 0");
    if (h.error_limit < 1 || h.error_limit > 15) {
      return MakeError("key '" + p.keys[i].label + "': error limit must be 1..15");
    }
    for (std::size_t j = 0; j < i; ++j) {
      const KeyHeader& o = p.keys[j].header;
      if (o.usage == h.usage && o.version == h.version) {
        return MakeError("two " + std::string(KeyUsageName(h.usage)) + " keys with version " +
                         Hex2(h.version));
      }
    }
  }
  if (purchase_keys == 0) return MakeError("a PSAM needs at least one purchase master key");
  if (settlement_keys != 1) return MakeError("a PSAM needs exactly one settlement key");

  PersonalisationScript script;
  const auto command = [&](std::string description, Bytes apdu) {
    ScriptStep step;
    step.description = std::move(description);
    step.command = std::move(apdu);
    script.push_back(std::move(step));
  };
  command("UPDATE BINARY EF 15 (PSAM serial, version, key type, issuer data)",
          UpdateBinaryBySfi(0x15, View(Concat({View(p.psam_serial), View(Bytes{p.version}),
                                               View(Bytes{p.key_type}), View(p.issuer_data)}))));
  command("UPDATE BINARY EF 16 (terminal number)",
          UpdateBinaryBySfi(0x16, View(p.terminal_number)));
  command("UPDATE BINARY EF 17 (purchase key index, validity)",
          UpdateBinaryBySfi(0x17, View(Concat({View(Bytes{p.purchase_key_index}),
                                               View(EncodeBcdDate(p.valid_from)),
                                               View(EncodeBcdDate(p.valid_to))}))));
  for (const ProfileKey& key : p.keys) {
    ScriptStep step;
    step.kind = ScriptStep::Kind::kWriteKey;
    step.description = "WRITE KEY " + std::string(KeyUsageName(key.header.usage)) + " key v" +
                       Hex2(key.header.version) + " ('" + key.label + "')";
    step.key = key;
    script.push_back(std::move(step));
  }
  ScriptStep end;
  end.kind = ScriptStep::Kind::kEndPersonalisation;
  end.description = "END PERSONALISATION";
  script.push_back(std::move(end));
  return script;
}

Status RunPersonalisationScript(const PersonalisationScript& script, KeyWrapper& wrapper,
                                const TransmitFn& transmit) {
  const auto where = [&](std::size_t i) {
    return "personalisation step " + std::to_string(i + 1) + " of " +
           std::to_string(script.size()) + " (" + script[i].description + ")";
  };
  // Sends one command; the response data, or an error naming the step and the status word.
  const auto exchange = [&](std::size_t i, const Bytes& apdu,
                            std::string_view what) -> Result<Bytes> {
    auto response = iso7816::ResponseApdu::Parse(transmit(View(apdu)));
    if (!response) return MakeError(where(i) + ": no answer to " + std::string(what));
    if (!response->ok()) {
      return MakeError(where(i) + ": " + std::string(what) + " answered " +
                       response->sw.ToString());
    }
    return std::move(response->data);
  };

  for (std::size_t i = 0; i < script.size(); ++i) {
    const ScriptStep& step = script[i];
    if (step.kind == ScriptStep::Kind::kCommand) {
      auto r = exchange(i, step.command, "the command");
      if (!r) return r.error();
      continue;
    }
    auto challenge = exchange(i, iso7816::CommandApdu::Case2(0x00, 0x84, 0x00, 0x00, 4).Serialize(),
                              "GET CHALLENGE");
    if (!challenge) return challenge.error();
    if (challenge->size() != 4) return MakeError(where(i) + ": GET CHALLENGE gave no 4 bytes");
    iso7816::CommandApdu apdu;
    apdu.cla = kClaMac;
    if (step.kind == ScriptStep::Kind::kWriteKey) {
      auto data = wrapper.WrapKey(step.key.header, step.key.label, View(*challenge));
      if (!data) return MakeError(where(i) + ": " + data.error().message);
      apdu.ins = kInsWriteKey;
      apdu.data = std::move(*data);
    } else {
      auto mac = wrapper.EndPersonalisationMac(View(*challenge));
      if (!mac) return MakeError(where(i) + ": " + mac.error().message);
      apdu.ins = kInsEndPersonalisation;
      apdu.data = std::move(*mac);
    }
    Bytes wire = apdu.Serialize();
    auto r = exchange(
        i, wire, step.kind == ScriptStep::Kind::kWriteKey ? "WRITE KEY" : "END PERSONALISATION");
    SecureWipe(wire);
    if (!r) return r.error();
  }
  return Status::Ok();
}

}  // namespace medcard::psam
