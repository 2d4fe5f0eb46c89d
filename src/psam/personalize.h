// PSAM personalisation: a PSAM profile becomes the APDU script that writes its files and keys
// and ends personalisation (docs/psam-commands.md, "Personalisation"). Keys never appear in the
// profile or in clear on the wire: the script names them by label and a KeyWrapper (the key
// store, an HSM) turns each into a WRITE KEY cryptogram and MAC under the PSAM's transport key.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/bcd.h"
#include "common/bytes.h"
#include "common/result.h"
#include "psam/psam.h"

namespace medcard::psam {

// WRITE KEY key header: usage(1) ‖ index(1) ‖ version(1) ‖ algId(1) ‖ errorLimit(1).
struct KeyHeader {
  KeyUsage usage = KeyUsage::kPurchase;
  std::uint8_t index = 1;
  std::uint8_t version = 1;
  std::uint8_t alg_id = kAlgTdes;
  std::uint8_t error_limit = 3;  // 1..15 consecutive MAC failures before the key locks
  Bytes Encode() const;
};

// The WRITE KEY data field `header ‖ cryptogram ‖ MAC`: cryptogram =
// crypto::EncryptKeyForTransport(transport_key, key); MAC = PBOC MAC under the transport key with
// IV = challenge ‖ 00000000 (a 4-byte GET CHALLENGE; an 8-byte one is the IV itself) over
// `84 D4 00 00 Lc ‖ header ‖ cryptogram`. The same layout as the card's WRITE KEY.
Result<Bytes> BuildWriteKeyData(ByteView transport_key, const KeyHeader& header, ByteView key,
                                ByteView challenge);
// The 4-byte MAC of END PERSONALISATION: under the transport key, IV as for WRITE KEY, over
// `84 EE 00 00 04`.
Result<Bytes> BuildEndPersonalisationMac(ByteView transport_key, ByteView challenge);

// Where keys live. The key store / HSM implements it so keys leave it only wrapped.
class KeyWrapper {
 public:
  virtual ~KeyWrapper() = default;
  // The WRITE KEY data field (see BuildWriteKeyData) for the key named `label`.
  virtual Result<Bytes> WrapKey(const KeyHeader& header, std::string_view label,
                                ByteView challenge) = 0;
  // The END PERSONALISATION MAC (see BuildEndPersonalisationMac).
  virtual Result<Bytes> EndPersonalisationMac(ByteView challenge) = 0;
};

// Keys held in clear in memory: for tests and throwaway demo PSAMs only. Wipes them on
// destruction.
class ClearKeyWrapper final : public KeyWrapper {
 public:
  ClearKeyWrapper(Bytes transport_key, std::map<std::string, Bytes, std::less<>> keys);
  ~ClearKeyWrapper() override;
  ClearKeyWrapper(const ClearKeyWrapper&) = delete;
  ClearKeyWrapper& operator=(const ClearKeyWrapper&) = delete;

  Result<Bytes> WrapKey(const KeyHeader& header, std::string_view label,
                        ByteView challenge) override;
  Result<Bytes> EndPersonalisationMac(ByteView challenge) override;

 private:
  Bytes transport_key_;
  std::map<std::string, Bytes, std::less<>> keys_;
};

struct ProfileKey {
  KeyHeader header;
  std::string label;  // the key's name in the KeyWrapper
};

// What an issuer personalises into one PSAM (card-profile.md, "PSAM").
struct PsamProfile {
  Bytes psam_serial;  // 10 bytes
  std::uint8_t version = 1;
  std::uint8_t key_type = 0;
  Bytes issuer_data = Bytes(2, 0);  // 2 bytes
  Bytes terminal_number;            // 6 bytes
  std::uint8_t purchase_key_index = 1;
  Date valid_from;
  Date valid_to;
  // At least one purchase key and exactly one settlement key.
  std::vector<ProfileKey> keys;
};

struct ScriptStep {
  enum class Kind {
    kCommand,             // `command` as is
    kWriteKey,            // GET CHALLENGE, then WRITE KEY wrapped by the KeyWrapper
    kEndPersonalisation,  // GET CHALLENGE, then END PERSONALISATION with its MAC
  };
  Kind kind = Kind::kCommand;
  std::string description;  // "UPDATE BINARY EF 16 (terminal number)", "WRITE KEY purchase v01"
  Bytes command;            // kCommand
  ProfileKey key;           // kWriteKey
};
using PersonalisationScript = std::vector<ScriptStep>;

// Checks the profile (sizes, dates, keys) and builds its script: EF 15, 16, 17, every key,
// END PERSONALISATION.
Result<PersonalisationScript> BuildPersonalisationScript(const PsamProfile& profile);

// Sends one C-APDU, returns the R-APDU (empty when the device is mute).
using TransmitFn = std::function<Bytes(ByteView)>;

// Runs the script, stopping at the first answer that is not 9000 with an error naming the step
// and the status word.
Status RunPersonalisationScript(const PersonalisationScript& script, KeyWrapper& wrapper,
                                const TransmitFn& transmit);

}  // namespace medcard::psam
