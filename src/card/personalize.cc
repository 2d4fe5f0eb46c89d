// Personalisation builder, standard profile and script runner (docs/card-commands.md,
// "Personalisation commands" and "The medcard standard profile").
#include "card/personalize.h"

#include <algorithm>
#include <string>
#include <utility>

#include "crypto/crypto.h"
#include "iso7816/status.h"
#include "iso7816/tlv.h"

namespace medcard::card {

namespace {

using iso7816::BuildTlv;
using iso7816::CommandApdu;

Bytes U16Bytes(std::uint16_t v) {
  Bytes b;
  AppendU16(b, v);
  return b;
}

std::string FidHex(std::uint16_t fid) { return ToHex(View(U16Bytes(fid))); }

Bytes AsciiBytes(std::string_view s) { return Bytes(s.begin(), s.end()); }

// Text padded with spaces to exactly `length` bytes; error when longer.
Result<Bytes> Padded(ByteView text, std::size_t length, const char* field) {
  if (text.size() > length) {
    return MakeError(std::string("card profile: ") + field + " is longer than " +
                     std::to_string(length) + " bytes");
  }
  Bytes out(text.begin(), text.end());
  out.resize(length, ' ');
  return out;
}

Result<Bytes> BcdDate(const Date& d, const char* field) {
  if (!IsValidDate(d)) return MakeError(std::string("card profile: invalid ") + field);
  return EncodeBcdDate(d);
}

Bytes SimpleTlv(std::uint8_t tag, ByteView value) {
  Bytes out{tag, static_cast<std::uint8_t>(value.size())};
  Append(out, value);
  return out;
}

// EF.DIR record, EMV style: 70 L 61 L {4F L AID, 50 L label}.
Bytes DirEntry(ByteView aid, std::string_view label) {
  const Bytes inner =
      Concat({View(BuildTlv(0x4F, aid)), View(BuildTlv(0x50, View(AsciiBytes(label))))});
  return BuildTlv(0x70, View(BuildTlv(0x61, View(inner))));
}

FileSpec Ef(FileType type, std::uint16_t fid, std::uint8_t sfi, AccessCondition read,
            AccessCondition write) {
  FileSpec spec;
  spec.type = type;
  spec.fid = fid;
  spec.sfi = sfi;
  spec.read = read;
  spec.write = write;
  return spec;
}

FileSpec Df(std::uint16_t fid, Bytes name) {
  FileSpec spec;
  spec.type = FileType::kDf;
  spec.fid = fid;
  spec.df_name = std::move(name);
  return spec;
}

// Linear-fixed EF holding these records, each padded with 00 (ISO 7816-4 padding) to the
// longest.
EfLayout RecordsEf(std::uint16_t fid, std::uint8_t sfi, std::vector<Bytes> records) {
  EfLayout ef;
  ef.file = Ef(FileType::kLinearFixed, fid, sfi, AccessCondition::Free(), AccessCondition::Never());
  std::size_t longest = 0;
  for (const Bytes& r : records) longest = std::max(longest, r.size());
  for (Bytes& r : records) r.resize(longest, 0x00);
  ef.file.record_length = static_cast<std::uint8_t>(longest);
  ef.file.record_count = static_cast<std::uint8_t>(records.size());
  ef.records = std::move(records);
  return ef;
}

KeySpec Key(std::string master, KeyUsage usage, std::uint8_t version) {
  return KeySpec{std::move(master), usage, 0x01, version, 3};
}

}  // namespace

// ---- CREATE FILE encoding --------------------------------------------------------------------

Bytes EncodeFcp(const FileSpec& spec) {
  Bytes inner;
  const auto type = static_cast<std::uint8_t>(spec.type);
  if (spec.type == FileType::kLinearFixed || spec.type == FileType::kCyclic) {
    const std::uint8_t descriptor[] = {type, spec.record_length, spec.record_count};
    Append(inner, View(BuildTlv(0x82, ByteView(descriptor))));
  } else {
    const std::uint8_t descriptor[] = {type};
    Append(inner, View(BuildTlv(0x82, ByteView(descriptor))));
  }
  Append(inner, View(BuildTlv(0x83, View(U16Bytes(spec.fid)))));
  if (spec.type == FileType::kDf) {
    if (!spec.df_name.empty()) Append(inner, View(BuildTlv(0x84, View(spec.df_name))));
    if (!spec.fci_proprietary.empty()) {
      Append(inner, View(BuildTlv(0xA5, View(spec.fci_proprietary))));
    }
    if (spec.purse) {
      Bytes purse{spec.purse->app_type};
      AppendU32(purse, spec.purse->ed_max_balance);
      AppendU32(purse, spec.purse->ep_max_balance);
      AppendU24(purse, spec.purse->ed_overdraw_limit);
      Append(inner, View(BuildTlv(0xC0, View(purse))));
    }
    return BuildTlv(0x62, View(inner));
  }
  if (spec.sfi != 0) {
    const std::uint8_t sfi[] = {spec.sfi};
    Append(inner, View(BuildTlv(0x88, ByteView(sfi))));
  }
  if (spec.type == FileType::kTransparent || spec.type == FileType::kTlvRecords) {
    Append(inner, View(BuildTlv(0x80, View(U16Bytes(spec.size)))));
  }
  const std::uint8_t ac[] = {static_cast<std::uint8_t>(spec.read.kind), spec.read.key_ref,
                             static_cast<std::uint8_t>(spec.write.kind), spec.write.key_ref};
  Append(inner, View(BuildTlv(0x86, ByteView(ac))));
  return BuildTlv(0x62, View(inner));
}

// ---- ClearKeyWrapper -------------------------------------------------------------------------

ClearKeyWrapper::ClearKeyWrapper(Bytes transport_key, std::map<std::string, Bytes> card_keys)
    : transport_key_(std::move(transport_key)), card_keys_(std::move(card_keys)) {}

ClearKeyWrapper::~ClearKeyWrapper() {
  SecureWipe(transport_key_);
  for (auto& [name, key] : card_keys_) SecureWipe(key);
}

Result<ClearKeyWrapper> ClearKeyWrapper::FromMasterKeys(
    Bytes transport_key, const std::map<std::string, Bytes>& master_keys, ByteView asn) {
  if (asn.size() < 8) return MakeError("card keys: an ASN has at least 8 bytes");
  const Bytes factor = crypto::AsnFactor(asn);
  std::map<std::string, Bytes> card_keys;
  for (const auto& [name, master] : master_keys) {
    auto derived = crypto::Diversify(View(master), View(factor));
    if (!derived.ok()) return MakeError("card key " + name + ": " + derived.error().message);
    card_keys.emplace(name, std::move(derived).value());
  }
  return ClearKeyWrapper(std::move(transport_key), std::move(card_keys));
}

const Bytes* ClearKeyWrapper::CardKey(const std::string& master_key) const {
  const auto it = card_keys_.find(master_key);
  return it == card_keys_.end() ? nullptr : &it->second;
}

Result<Bytes> ClearKeyWrapper::WrapKey(const KeySpec& key) {
  const Bytes* value = CardKey(key.master_key);
  if (value == nullptr) return MakeError("no card key for master key '" + key.master_key + "'");
  return crypto::EncryptKeyForTransport(View(transport_key_), View(*value));
}

Result<Bytes> ClearKeyWrapper::WrapPin(std::string_view pin) {
  auto packed = PackDigitsFPadded(pin);
  if (!packed || packed->empty() || packed->size() > 6) {
    return MakeError("a PIN is 1 to 12 decimal digits");
  }
  Bytes block{static_cast<std::uint8_t>(packed->size())};
  Append(block, View(*packed));
  block.push_back(0x80);
  block.resize(8, 0x00);
  auto cipher = crypto::BlockCipher::Des(View(transport_key_));
  if (!cipher.ok()) return cipher.error();
  Bytes out = cipher->EncryptEcb(View(block));
  SecureWipe(block);
  SecureWipe(*packed);
  return out;
}

Result<Bytes> ClearKeyWrapper::TransportMac(ByteView data, ByteView iv) {
  return crypto::PbocMac(View(transport_key_), data, iv);
}

// ---- The standard profile --------------------------------------------------------------------

Bytes PseName() { return AsciiBytes("1PAY.SYS.DDF01"); }
Bytes AdfAid() { return HexToBytes("D15600000503"); }
Bytes SsseName() { return HexToBytes("7378312E73682EC9E7BBE1B1A3D5CF"); }

Result<CardLayout> StandardLayout(const HolderData& h) {
  if (h.issuer_id.size() != 8) return MakeError("card profile: the issuer id is 8 bytes");
  if (h.asn.size() != 10) return MakeError("card profile: the ASN is 10 bytes");
  if (h.issuer_data.size() != 2) return MakeError("card profile: issuer data is 2 bytes");
  if (h.birthplace.size() != 3) return MakeError("card profile: the birthplace is 3 bytes");
  if (h.app_type < kAppTypeEd || h.app_type > kAppTypeEdEp) {
    return MakeError("card profile: application type is 01, 02 or 03");
  }
  if (h.pin.size() != 6 ||
      !std::all_of(h.pin.begin(), h.pin.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return MakeError("card profile: the PIN is 6 digits");
  }
  if (h.designated_facilities.size() > 3) {
    return MakeError("card profile: at most 3 designated facilities");
  }
  if (h.emergency_gbk.size() > 64) {
    return MakeError("card profile: emergency data is at most 64 bytes");
  }
  if (h.purse.ed_overdraw_limit > 0xFFFFFF) {
    return MakeError("card profile: the overdraw limit is 3 bytes");
  }
  auto start = BcdDate(h.start_date, "start date");
  auto expiry = BcdDate(h.expiry_date, "expiry date");
  auto ssse_issue = BcdDate(h.ssse_issue_date, "SSSE issue date");
  auto ssse_expiry = BcdDate(h.ssse_expiry_date, "SSSE expiry date");
  auto birth = BcdDate(h.birth_date, "birth date");
  auto name = Padded(View(h.name_gbk), 20, "cardholder name");
  auto id = Padded(View(AsciiBytes(h.id_number)), 32, "ID number");
  auto card_id = Padded(View(AsciiBytes(h.ssse_card_id)), 16, "SSSE card id");
  auto card_number = Padded(View(AsciiBytes(h.ssse_card_number)), 9, "SSSE card number");
  auto ssn = Padded(View(AsciiBytes(h.social_security_number)), 18, "social security number");
  auto ssse_name = Padded(View(h.ssse_name_gbk), 30, "SSSE name");
  auto employer = Padded(View(AsciiBytes(h.employer_code)), 15, "employer unit code");
  auto pooling = Padded(View(AsciiBytes(h.pooling_area)), 6, "pooling area code");
  for (const Result<Bytes>* r : {&start, &expiry, &ssse_issue, &ssse_expiry, &birth, &name, &id,
                                 &card_id, &card_number, &ssn, &ssse_name, &employer, &pooling}) {
    if (!r->ok()) return r->error();
  }
  Bytes facilities;
  for (const std::string& f : h.designated_facilities) {
    auto code = Padded(View(AsciiBytes(f)), 10, "designated facility code");
    if (!code.ok()) return code.error();
    Append(facilities, View(*code));
  }

  CardLayout layout;
  DfLayout& mf = layout.mf;
  mf.file = Df(0x3F00, {});

  // EF.DIR under the MF: the medical-account ADF and the SSSE DDF.
  mf.efs.push_back(
      RecordsEf(kDirFid, 0x01,
                {DirEntry(View(AdfAid()), "MEDICAL ACCOUNT"), DirEntry(View(SsseName()), "SSSE")}));

  // PSE: FCI A5 = 88 01 01 (its DIR at SFI 1), listing the payment application.
  DfLayout pse;
  pse.file = Df(kPseFid, PseName());
  pse.file.fci_proprietary = {0x88, 0x01, 0x01};
  pse.efs.push_back(RecordsEf(0x0001, 0x01, {DirEntry(View(AdfAid()), "MEDICAL ACCOUNT")}));
  mf.dfs.push_back(std::move(pse));

  // The ED/EP application.
  DfLayout adf;
  adf.file = Df(kAdfFid, AdfAid());
  adf.file.purse = h.purse;
  adf.file.purse->app_type = h.app_type;
  const std::uint8_t v = h.key_version;
  adf.keys = {Key("purchase", KeyUsage::kPurchase, v),
              Key("load", KeyUsage::kLoad, v),
              Key("tac", KeyUsage::kTac, v),
              Key("unload", KeyUsage::kUnload, v),
              Key("overdraw", KeyUsage::kOverdrawUpdate, v),
              Key("pin_unblock", KeyUsage::kPinUnblock, v),
              Key("pin_reload", KeyUsage::kPinReload, v),
              Key("maintenance", KeyUsage::kMaintenance, v)};
  adf.pin = PinSpec{h.pin, 3};
  const AccessCondition by_maintenance = AccessCondition::Sm(KeyUsage::kMaintenance);
  {
    // SFI 15: issuerId(8) ‖ appType ‖ appVersion ‖ ASN(10) ‖ start(4) ‖ expiry(4) ‖ issuerData(2)
    EfLayout basic;
    basic.file = Ef(FileType::kTransparent, 0x0015, 0x15, AccessCondition::Free(), by_maintenance);
    basic.file.size = 30;
    basic.content =
        Concat({View(h.issuer_id), ByteView(&h.app_type, 1), ByteView(&h.app_version, 1),
                View(h.asn), View(*start), View(*expiry), View(h.issuer_data)});
    adf.efs.push_back(std::move(basic));
    // SFI 16: cardType ‖ staffFlag ‖ name(20) ‖ idNumber(32) ‖ idType
    EfLayout holder;
    holder.file = Ef(FileType::kTransparent, 0x0016, 0x16, AccessCondition::Free(), by_maintenance);
    holder.file.size = 55;
    holder.content = Concat({ByteView(&h.card_type, 1), ByteView(&h.staff_flag, 1), View(*name),
                             View(*id), ByteView(&h.id_type, 1)});
    adf.efs.push_back(std::move(holder));
    // SFI 18: the transaction log, written by the card only.
    EfLayout log;
    log.file =
        Ef(FileType::kCyclic, 0x0018, 0x18, AccessCondition::Free(), AccessCondition::Never());
    log.file.record_length = 23;
    log.file.record_count = 10;
    adf.efs.push_back(std::move(log));
  }
  mf.dfs.push_back(std::move(adf));

  // The social-security DDF.
  DfLayout ssse;
  ssse.file = Df(kSsseFid, SsseName());
  ssse.keys = {Key("ssse_maintenance", KeyUsage::kMaintenance, v),
               Key("visit_record", KeyUsage::kVisitRecord, v)};
  {
    EfLayout ef05;
    ef05.file =
        Ef(FileType::kTlvRecords, 0xEF05, 0x05, AccessCondition::Free(), AccessCondition::Never());
    ef05.file.size = 64;
    ef05.records = {SimpleTlv(0x01, View(*card_id)), SimpleTlv(0x05, View(*ssse_issue)),
                    SimpleTlv(0x06, View(*ssse_expiry)), SimpleTlv(0x07, View(*card_number))};
    ssse.efs.push_back(std::move(ef05));

    EfLayout ef06;
    ef06.file =
        Ef(FileType::kTlvRecords, 0xEF06, 0x06, AccessCondition::Free(), AccessCondition::Never());
    ef06.file.size = 96;
    ef06.records = {
        SimpleTlv(0x08, View(*ssn)),          SimpleTlv(0x09, View(*ssse_name)),
        SimpleTlv(0x0A, ByteView(&h.sex, 1)), SimpleTlv(0x0B, ByteView(&h.ethnicity, 1)),
        SimpleTlv(0x0C, View(h.birthplace)),  SimpleTlv(0x0D, View(*birth))};
    ssse.efs.push_back(std::move(ef06));

    EfLayout ef07;
    ef07.file = Ef(FileType::kTlvRecords, 0xEF07, 0x07, AccessCondition::Free(),
                   AccessCondition::Sm(KeyUsage::kMaintenance));
    ef07.file.size = 192;
    ef07.records = {
        SimpleTlv(0x20, ByteView(&h.insured_category, 1)), SimpleTlv(0x21, View(*employer)),
        SimpleTlv(0x22, ByteView(&h.insurance_status, 1)), SimpleTlv(0x23, View(*pooling))};
    if (!facilities.empty()) ef07.records.push_back(SimpleTlv(0x24, View(facilities)));
    if (!h.emergency_gbk.empty()) ef07.records.push_back(SimpleTlv(0x25, View(h.emergency_gbk)));
    ssse.efs.push_back(std::move(ef07));

    // EF08 visit history: date(4) ‖ time(3) ‖ facility(10) ‖ visitType(1) ‖ diagnosis(8) ‖
    // total(4) ‖ paidByAccount(4) ‖ paidByPool(4), appended by a facility terminal with SM.
    EfLayout ef08;
    ef08.file = Ef(FileType::kCyclic, 0xEF08, 0x08, AccessCondition::Free(),
                   AccessCondition::Sm(KeyUsage::kVisitRecord));
    ef08.file.record_length = 38;
    ef08.file.record_count = 10;
    ssse.efs.push_back(std::move(ef08));
  }
  mf.dfs.push_back(std::move(ssse));
  return layout;
}

// ---- Script builder --------------------------------------------------------------------------

namespace {

class ScriptBuilder {
 public:
  explicit ScriptBuilder(KeyWrapper& wrapper) : wrapper_(wrapper) {}

  Status Df(const DfLayout& df, bool is_mf) {
    const std::string where = FidHex(is_mf ? 0x3F00 : df.file.fid);
    if (!is_mf) {
      if (df.file.type != FileType::kDf) return MakeError("layout: DF " + where + " is not a DF");
      Add("CREATE FILE " + where, CommandApdu::Case3(0x80, 0xE0, 0x00, 0x00, EncodeFcp(df.file)));
    }
    for (const KeySpec& key : df.keys) {
      auto cryptogram = wrapper_.WrapKey(key);
      if (!cryptogram.ok()) return cryptogram.error();
      Bytes data{static_cast<std::uint8_t>(key.usage), key.index, key.version, kAlgTdes,
                 key.error_limit};
      Append(data, View(*cryptogram));
      Add("WRITE KEY " + std::string(KeyUsageName(key.usage)) + " " + std::to_string(key.index) +
              " in " + where,
          CommandApdu::Case3(0x84, 0xD4, 0x00, 0x00, std::move(data)), true);
    }
    if (df.pin) {
      auto cryptogram = wrapper_.WrapPin(df.pin->digits);
      if (!cryptogram.ok()) return cryptogram.error();
      Bytes data{df.pin->try_limit};
      Append(data, View(*cryptogram));
      Add("SET PIN in " + where, CommandApdu::Case3(0x84, 0xD8, 0x00, 0x00, std::move(data)), true);
    }
    for (const EfLayout& ef : df.efs) {
      if (Status s = Ef(ef); !s.ok()) return s;
    }
    for (const DfLayout& child : df.dfs) {
      if (Status s = Df(child, false); !s.ok()) return s;
      Add("SELECT " + where,
          CommandApdu::Case3(0x00, 0xA4, 0x00, 0x0C, U16Bytes(is_mf ? 0x3F00 : df.file.fid)));
    }
    return Status::Ok();
  }

  Status Ef(const EfLayout& ef) {
    const std::string where = FidHex(ef.file.fid);
    if (ef.file.type == FileType::kDf) return MakeError("layout: EF " + where + " is a DF");
    Add("CREATE FILE " + where, CommandApdu::Case3(0x80, 0xE0, 0x00, 0x00, EncodeFcp(ef.file)));
    // The created EF is the current one: contents go to "current EF" addresses.
    constexpr std::size_t kChunk = 240;
    for (std::size_t offset = 0; offset < ef.content.size(); offset += kChunk) {
      const std::size_t n = std::min(kChunk, ef.content.size() - offset);
      const auto begin = ef.content.begin() + static_cast<std::ptrdiff_t>(offset);
      Add("UPDATE BINARY " + where,
          CommandApdu::Case3(0x00, 0xD6, static_cast<std::uint8_t>((offset >> 8) & 0x7F),
                             static_cast<std::uint8_t>(offset & 0xFF),
                             Bytes(begin, begin + static_cast<std::ptrdiff_t>(n))));
    }
    for (std::size_t i = 0; i < ef.records.size(); ++i) {
      const Bytes& record = ef.records[i];
      switch (ef.file.type) {
        case FileType::kLinearFixed:
          Add("UPDATE RECORD " + where,
              CommandApdu::Case3(0x00, 0xDC, static_cast<std::uint8_t>(i + 1), 0x04, record));
          break;
        case FileType::kCyclic:
          Add("APPEND RECORD " + where, CommandApdu::Case3(0x00, 0xE2, 0x00, 0x00, record));
          break;
        case FileType::kTlvRecords:
          if (record.size() < 2) return MakeError("layout: empty TLV record in " + where);
          Add("UPDATE RECORD " + where, CommandApdu::Case3(0x00, 0xDC, record[0], 0x04, record));
          break;
        default:
          return MakeError("layout: records for EF " + where + " which has none");
      }
    }
    return Status::Ok();
  }

  void Add(std::string what, CommandApdu command, bool transport_mac = false) {
    script.steps.push_back(ScriptStep{std::move(what), std::move(command), transport_mac});
  }

  PersonalisationScript script;

 private:
  KeyWrapper& wrapper_;
};

std::string AnswerText(ByteView response) {
  if (response.size() < 2) return "no answer (card mute)";
  const iso7816::StatusWord word(response[response.size() - 2], response.back());
  return word.ToString();
}

}  // namespace

Result<PersonalisationScript> BuildPersonalisation(const CardLayout& layout, KeyWrapper& wrapper) {
  ScriptBuilder builder(wrapper);
  builder.Add("SELECT MF", CommandApdu::Case3(0x00, 0xA4, 0x00, 0x0C, U16Bytes(0x3F00)));
  if (Status s = builder.Df(layout.mf, true); !s.ok()) return s.error();
  builder.Add("END PERSONALISATION", CommandApdu::Case1(0x84, 0xEE, 0x00, 0x00), true);
  return std::move(builder.script);
}

Status RunPersonalisation(const PersonalisationScript& script, KeyWrapper& wrapper,
                          const Transmit& transmit) {
  const std::size_t total = script.steps.size();
  for (std::size_t i = 0; i < total; ++i) {
    const ScriptStep& step = script.steps[i];
    const std::string where = "personalisation step " + std::to_string(i + 1) + " of " +
                              std::to_string(total) + " (" + step.what + ")";
    CommandApdu command = step.command;
    if (step.transport_mac) {
      const Bytes challenge =
          transmit(View(CommandApdu::Case2(0x00, 0x84, 0x00, 0x00, 4).Serialize()));
      if (challenge.size() != 6 || challenge[4] != 0x90 || challenge[5] != 0x00) {
        return MakeError(where + ": GET CHALLENGE answered " + AnswerText(View(challenge)));
      }
      Bytes mac_input{command.cla, command.ins, command.p1, command.p2,
                      static_cast<std::uint8_t>(command.data.size() + 4)};
      Append(mac_input, View(command.data));
      Bytes iv(challenge.begin(), challenge.begin() + 4);
      iv.resize(8, 0x00);
      auto mac = wrapper.TransportMac(View(mac_input), View(iv));
      if (!mac.ok()) return MakeError(where + ": " + mac.error().message);
      Append(command.data, View(*mac));
    }
    const Bytes response = transmit(View(command.Serialize()));
    if (response.size() < 2 || response[response.size() - 2] != 0x90 || response.back() != 0x00) {
      return MakeError(where + ": card answered " + AnswerText(View(response)));
    }
  }
  return Status::Ok();
}

Status RunPersonalisation(const PersonalisationScript& script, KeyWrapper& wrapper,
                          iso7816::Icc& icc) {
  return RunPersonalisation(script, wrapper, [&icc](ByteView apdu) { return icc.Transmit(apdu); });
}

}  // namespace medcard::card
