// Personalisation: turning a blank medcard card (Card::Manufacture) into an issued one through
// medcard's personalisation commands (docs/card-commands.md, "Personalisation commands").
//
//   FileSpec / CardLayout   what to create: files, keys, PIN, initial contents
//   StandardLayout()        the medcard standard profile (card-profile.md) from holder data
//   KeyWrapper              where key cryptograms and transport MACs come from: the HSM-backed
//                           key store in production, ClearKeyWrapper in tests. The builder never
//                           sees a clear key.
//   BuildPersonalisation()  layout -> script of APDUs
//   RunPersonalisation()    script -> card, stopping at the first answer other than 9000
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "card/card.h"
#include "common/bcd.h"
#include "common/bytes.h"
#include "common/result.h"
#include "iso7816/apdu.h"
#include "iso7816/icc.h"

namespace medcard::card {

// ---- Wire format of CREATE FILE (also the FCP a SELECT of an EF answers) ------------------

// CREATE FILE tag C0: the purse application of an ADF (ED/EP, pboc-ed-ep.md).
struct PurseParameters {
  std::uint8_t app_type = kAppTypeEdEp;
  std::uint32_t ed_max_balance = 0xFFFFFFFF;  // fen
  std::uint32_t ep_max_balance = 100000;      // fen (1,000.00 yuan)
  std::uint32_t ed_overdraw_limit = 0;        // fen, 24 bits
  bool operator==(const PurseParameters&) const = default;
};

struct FileSpec {
  FileType type = FileType::kTransparent;
  std::uint16_t fid = 0;
  std::uint8_t sfi = 0;                              // EF: 1..30, 0 for none
  Bytes df_name;                                     // DF: 1..16 bytes (optional)
  AccessCondition read, write;                       // EF
  std::uint16_t size = 0;                            // transparent: bytes; TLV records: capacity
  std::uint8_t record_length = 0, record_count = 0;  // linear fixed, cyclic
  Bytes fci_proprietary;  // DF: the content of FCI tag A5 (e.g. 88 01 01 for the PSE)
  std::optional<PurseParameters> purse;  // DF
  bool operator==(const FileSpec&) const = default;
};
// `62 L {82 .. 83 .. [84 ..] [88 ..] [80 ..] [86 ..] [A5 ..] [C0 ..]}`.
Bytes EncodeFcp(const FileSpec& spec);

// ---- Keys ---------------------------------------------------------------------------------

// A card key as the layout names it. `master_key` is the issuer master key it is diversified
// from by ASN ("purchase", "load", "tac", "unload", "overdraw", "pin_unblock", "pin_reload",
// "maintenance", "ssse_maintenance", "visit_record"): the key store knows the key by that name.
struct KeySpec {
  std::string master_key;
  KeyUsage usage = KeyUsage::kPurchase;
  std::uint8_t index = 1, version = 1, error_limit = 3;
  bool operator==(const KeySpec&) const = default;
};

// Everything secret the personalisation needs, without handing it out in clear.
class KeyWrapper {
 public:
  virtual ~KeyWrapper() = default;
  // The WRITE KEY cryptogram of the card's key `key`: crypto::EncryptKeyForTransport(card
  // transport key, card key).
  virtual Result<Bytes> WrapKey(const KeySpec& key) = 0;
  // The SET PIN cryptogram: 3DES-ECB(transport key, len ‖ packed PIN ‖ 80 00..), 8 bytes.
  virtual Result<Bytes> WrapPin(std::string_view pin) = 0;
  // PBOC MAC (4 bytes) with the card's transport key.
  virtual Result<Bytes> TransportMac(ByteView data, ByteView iv) = 0;
};

// Test and demo wrapper: holds the clear transport key and the card's (already diversified)
// keys by master-key name.
class ClearKeyWrapper : public KeyWrapper {
 public:
  ClearKeyWrapper(Bytes transport_key, std::map<std::string, Bytes> card_keys);
  // Diversifies each issuer master key by the ASN (crypto::Diversify(mk, AsnFactor(asn))).
  static Result<ClearKeyWrapper> FromMasterKeys(Bytes transport_key,
                                                const std::map<std::string, Bytes>& master_keys,
                                                ByteView asn);
  ~ClearKeyWrapper() override;

  Result<Bytes> WrapKey(const KeySpec& key) override;
  Result<Bytes> WrapPin(std::string_view pin) override;
  Result<Bytes> TransportMac(ByteView data, ByteView iv) override;

  // The card's clear key, for issuer-side test computations. nullptr if unknown.
  const Bytes* CardKey(const std::string& master_key) const;

 private:
  Bytes transport_key_;
  std::map<std::string, Bytes> card_keys_;
};

// ---- Layout -------------------------------------------------------------------------------

struct PinSpec {
  std::string digits;  // 6 decimal digits
  std::uint8_t try_limit = 3;
};

struct EfLayout {
  FileSpec file;
  Bytes content;               // transparent: written from offset 0 (may be shorter than size)
  std::vector<Bytes> records;  // linear: records 1..n; cyclic: appended in order (oldest
                               // first); TLV: whole objects tag ‖ len ‖ value
};

struct DfLayout {
  FileSpec file;  // ignored for the MF
  std::vector<KeySpec> keys;
  std::optional<PinSpec> pin;
  std::vector<EfLayout> efs;
  std::vector<DfLayout> dfs;
};

struct CardLayout {
  DfLayout mf;
};

// ---- The medcard standard profile (card-profile.md; layout in docs/card-commands.md) -------

// The AIDs and names of the standard profile.
inline constexpr std::uint16_t kDirFid = 0x2F00;
inline constexpr std::uint16_t kPseFid = 0xDF01;
inline constexpr std::uint16_t kAdfFid = 0x1001;
inline constexpr std::uint16_t kSsseFid = 0xDDF1;
Bytes PseName();   // "1PAY.SYS.DDF01"
Bytes AdfAid();    // D15600000503
Bytes SsseName();  // 7378312E73682EC9E7BBE1B1A3D5CF

struct HolderData {
  // SFI 15 public application basic data
  Bytes issuer_id;  // 8
  std::uint8_t app_type = kAppTypeEdEp;
  std::uint8_t app_version = 0x02;
  Bytes asn;  // 10
  Date start_date, expiry_date;
  Bytes issuer_data = {0x00, 0x00};  // 2
  // SFI 16 cardholder data
  std::uint8_t card_type = 0x00, staff_flag = 0x00;
  Bytes name_gbk;         // <= 20 bytes, space padded
  std::string id_number;  // <= 32 characters, space padded
  std::uint8_t id_type = 0x00;
  // SSSE EF05 card identification
  std::string ssse_card_id;  // <= 16, space padded
  Date ssse_issue_date, ssse_expiry_date;
  std::string ssse_card_number;  // <= 9
  // SSSE EF06 personal basic data
  std::string social_security_number;  // <= 18
  Bytes ssse_name_gbk;                 // <= 30, space padded
  std::uint8_t sex = '1';              // '1' male, '2' female (GB/T 2261.1)
  std::uint8_t ethnicity = 0x01;
  Bytes birthplace = {0x00, 0x00, 0x00};  // 3
  Date birth_date;
  // SSSE EF07 medical-insurance data (medcard TLV records 20..25)
  std::uint8_t insured_category = 0x01;  // 01 employee, 02 retiree, 03 flexible employment
  std::string employer_code;             // <= 15
  std::uint8_t insurance_status = 0x01;  // 01 active, 02 suspended, 03 ended
  std::string pooling_area;              // <= 6
  std::vector<std::string> designated_facilities;  // <= 3, each <= 10
  Bytes emergency_gbk;                             // <= 64
  // Purse application
  PurseParameters purse;
  std::string pin;  // 6 digits
  std::uint8_t key_version = 0x01;
};

// The full card-profile.md layout with these holder data. Error on a field that does not fit.
Result<CardLayout> StandardLayout(const HolderData& holder);

// ---- Script -------------------------------------------------------------------------------

struct ScriptStep {
  std::string what;              // "CREATE FILE 1001", "WRITE KEY purchase 01", ...
  iso7816::CommandApdu command;  // complete, except the trailing MAC when transport_mac
  bool transport_mac = false;    // GET CHALLENGE first, then append the transport-key MAC
};

struct PersonalisationScript {
  std::vector<ScriptStep> steps;
};

// Every file, key, PIN and content of the layout, then END PERSONALISATION.
Result<PersonalisationScript> BuildPersonalisation(const CardLayout& layout, KeyWrapper& wrapper);

using Transmit = std::function<Bytes(ByteView command_apdu)>;
// Runs the script; stops at the first step the card does not answer 9000 and says which.
Status RunPersonalisation(const PersonalisationScript& script, KeyWrapper& wrapper,
                          const Transmit& transmit);
Status RunPersonalisation(const PersonalisationScript& script, KeyWrapper& wrapper,
                          iso7816::Icc& icc);

}  // namespace medcard::card
