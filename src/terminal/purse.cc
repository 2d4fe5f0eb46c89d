#include "terminal/purse.h"

#include <string>

#include "crypto/crypto.h"

namespace medcard::terminal {

using iso7816::CommandApdu;
using iso7816::ResponseApdu;
using iso7816::StatusWord;

namespace {

constexpr std::uint8_t kKeyIndex = 0x01;  // medcard profile: key index 01
const Bytes kPseName = {'1', 'P', 'A', 'Y', '.', 'S', 'Y', 'S', '.', 'D', 'D', 'F', '0', '1'};
const Bytes kMedicalAid = {0xD1, 0x56, 0x00, 0x00, 0x05, 0x03};
const Bytes kPsamPurchaseAid = {0xD1, 0x56, 0x00, 0x00, 0x05, 0x50, 0x53, 0x41, 0x4D};

// Sends and returns the response only when it is 9000 with `expected` data bytes (or any
// length when expected < 0); otherwise the error names the command and the status word.
Result<Bytes> Exchange(reader::Reader& r, const char* what, const CommandApdu& c,
                       int expected = -1) {
  auto response = reader::Send(r, c);
  if (!response.ok()) return MakeError(std::string(what) + ": " + response.error().message);
  if (!response->ok()) return CardError(what, response->sw);
  if (expected >= 0 && response->data.size() != static_cast<std::size_t>(expected)) {
    return MakeError(std::string(what) + ": answer of " + std::to_string(response->data.size()) +
                     " bytes, expected " + std::to_string(expected));
  }
  return std::move(response->data);
}

Bytes DateTime(const Date& d, const TimeOfDay& t) {
  return Concat({EncodeBcdDate(d), EncodeBcdTime(t)});
}

}  // namespace

const char* WalletName(Wallet w) { return w == Wallet::kEd ? "ED" : "EP"; }

Error CardError(const char* command, StatusWord sw) {
  std::string meaning;
  switch (sw.value) {
    case 0x6982:
      meaning = "PIN not verified or security condition not satisfied";
      break;
    case 0x6983:
      meaning = "key or PIN blocked";
      break;
    case 0x6985:
      meaning = "conditions of use not satisfied";
      break;
    case 0x6A81:
      meaning = "application blocked";
      break;
    case 0x6A82:
      meaning = "not a medcard card (application not found)";
      break;
    case 0x9302:
      meaning = "MAC invalid";
      break;
    case 0x9303:
      meaning = "application permanently blocked";
      break;
    case 0x9401:
      meaning = "insufficient balance";
      break;
    case 0x9402:
      meaning = "transaction counter at maximum";
      break;
    case 0x9403:
      meaning = "key index not supported";
      break;
    case 0x9406:
      meaning = "MAC/TAC not available";
      break;
    default:
      if ((sw.value & 0xFFF0) == 0x63C0) {
        int left = sw.value & 0x0F;
        meaning = left == 0 ? "wrong PIN, PIN now blocked"
                            : "wrong PIN, " + std::to_string(left) +
                                  (left == 1 ? " try" : " tries") + " left";
      } else {
        meaning = sw.Name();
      }
  }
  return MakeError(std::string(command) + ": " + meaning + " (" + ToHex(Bytes{sw.sw1(), sw.sw2()}) +
                   ")");
}

Result<ApplicationData> ApplicationData::Parse(ByteView b) {
  // issuerId(8) ‖ appType(1) ‖ appVersion(1) ‖ ASN(10) ‖ start(4) ‖ expiry(4) ‖ issuerData(2)
  if (b.size() != 30) return MakeError("SFI 15: expected 30 bytes");
  ApplicationData a;
  a.issuer_id.assign(b.begin(), b.begin() + 8);
  a.app_type = b[8];
  a.app_version = b[9];
  a.asn.assign(b.begin() + 10, b.begin() + 20);
  auto start = DecodeBcdDate(b.subspan(20, 4));
  auto expiry = DecodeBcdDate(b.subspan(24, 4));
  if (!start || !expiry) return MakeError("SFI 15: invalid start or expiry date");
  a.start_date = *start;
  a.expiry_date = *expiry;
  a.issuer_data.assign(b.begin() + 28, b.end());
  a.test_card = a.issuer_data == Bytes{'T', 'E'};
  return a;
}

Result<ApplicationData> SelectMedicalApplication(reader::Reader& card) {
  auto pse =
      Exchange(card, "SELECT PSE", CommandApdu::Case4(0x00, 0xA4, 0x04, 0x00, kPseName, 256));
  if (!pse.ok()) return pse.error();
  auto adf = reader::Send(card, CommandApdu::Case4(0x00, 0xA4, 0x04, 0x00, kMedicalAid, 256));
  if (!adf.ok()) return adf.error();
  if (!adf->ok()) return CardError("SELECT medical application", adf->sw);
  auto sfi15 =
      Exchange(card, "READ BINARY SFI 15", CommandApdu::Case2(0x00, 0xB0, 0x95, 0x00, 30), 30);
  if (!sfi15.ok()) return sfi15.error();
  return ApplicationData::Parse(*sfi15);
}

Status VerifyPin(reader::Reader& card, const std::string& pin) {
  auto packed = PackDigitsFPadded(pin);
  if (!packed || pin.size() < 4 || pin.size() > 12) return MakeError("PIN must be 4 to 12 digits");
  auto r = Exchange(card, "VERIFY", CommandApdu::Case3(0x00, 0x20, 0x00, 0x00, *packed));
  SecureWipe(*packed);
  if (!r.ok()) return r.error();
  return Status::Ok();
}

Result<std::uint32_t> GetBalance(reader::Reader& card, Wallet wallet) {
  auto r = Exchange(card, "GET BALANCE",
                    CommandApdu::Case2(0x80, 0x5C, 0x00, static_cast<std::uint8_t>(wallet), 4), 4);
  if (!r.ok()) return r.error();
  return ReadU32(*r);
}

Result<std::vector<LogRecord>> ReadTransactionLog(reader::Reader& card) {
  std::vector<LogRecord> log;
  for (std::uint8_t n = 1; n <= 10; ++n) {
    auto r = reader::Send(card, CommandApdu::Case2(0x00, 0xB2, n, 0xC4, 23));
    if (!r.ok()) return r.error();
    if (r->sw == iso7816::sw::kRecordNotFound) break;
    if (!r->ok()) return CardError("READ RECORD SFI 18", r->sw);
    if (r->data.size() != 23) return MakeError("READ RECORD SFI 18: record is not 23 bytes");
    // serial(2) ‖ overdrawLimit(3) ‖ amount(4) ‖ type(1) ‖ termNo(6) ‖ date(4) ‖ time(3)
    const Bytes& d = r->data;
    LogRecord rec;
    rec.serial = ReadU16(d, 0);
    rec.overdraw_limit = ReadU24(d, 2);
    rec.amount = ReadU32(d, 5);
    rec.type = d[9];
    rec.terminal_number.assign(d.begin() + 10, d.begin() + 16);
    rec.date = DecodeBcdDate(ByteView(d).subspan(16, 4));
    rec.time = DecodeBcdTime(ByteView(d).subspan(20, 3));
    log.push_back(std::move(rec));
  }
  return log;
}

Result<Bytes> ReadTerminalNumber(reader::Reader& psam) {
  return Exchange(psam, "READ PSAM terminal number", CommandApdu::Case2(0x00, 0xB0, 0x96, 0x00, 6),
                  6);
}

Result<Bytes> ReadPsamSerial(reader::Reader& psam) {
  auto file =
      Exchange(psam, "READ PSAM serial", CommandApdu::Case2(0x00, 0xB0, 0x95, 0x00, 14), 14);
  if (!file.ok()) return file.error();
  return Bytes(file->begin(), file->begin() + 10);
}

Result<PurchaseResult> Purchase(reader::Reader& card, reader::Reader& psam,
                                const ApplicationData& app, const PurchaseRequest& req) {
  if (req.amount == 0) return MakeError("purchase amount must be greater than zero");
  if (app.asn.size() != 10) return MakeError("no application selected");
  auto terminal_number = ReadTerminalNumber(psam);
  if (!terminal_number.ok()) return terminal_number.error();
  auto select_psam = Exchange(psam, "SELECT PSAM purchase DF",
                              CommandApdu::Case4(0x00, 0xA4, 0x04, 0x00, kPsamPurchaseAid, 256));
  if (!select_psam.ok()) return select_psam.error();

  PurchaseResult result;
  result.asn = app.asn;
  result.type = req.wallet == Wallet::kEd ? 0x05 : 0x06;
  result.amount = req.amount;
  result.terminal_number = *terminal_number;
  result.date = req.date;
  result.time = req.time;

  auto txn = reader::Transaction::Begin(card);
  if (!txn.ok()) return txn.error();
  // INITIALIZE FOR PURCHASE: keyIndex ‖ amount ‖ termNo → balance(4) ‖ offlineSerial(2) ‖
  // overdrawLimit(3) ‖ keyVersion(1) ‖ algId(1) ‖ random(4)
  Bytes init_data{kKeyIndex};
  AppendU32(init_data, req.amount);
  Append(init_data, *terminal_number);
  auto init = Exchange(
      card, "INITIALIZE FOR PURCHASE",
      CommandApdu::Case4(0x80, 0x50, 0x01, static_cast<std::uint8_t>(req.wallet), init_data, 0x0F),
      15);
  if (!init.ok()) return init.error();
  result.balance_before = ReadU32(*init, 0);
  result.card_offline_serial = ReadU16(*init, 4);
  result.key_version = (*init)[9];
  ByteView init_view(*init);

  // INIT_SAM_FOR_PURCHASE: random ‖ offlineSerial ‖ amount ‖ type ‖ date ‖ time ‖ keyVersion ‖
  // algId ‖ ASN factor → termTxnSerial(4) ‖ MAC1(4)
  Bytes sam_data = Concat({init_view.subspan(11, 4), init_view.subspan(4, 2)});
  AppendU32(sam_data, req.amount);
  sam_data.push_back(result.type);
  Append(sam_data, DateTime(req.date, req.time));
  sam_data.push_back((*init)[9]);
  sam_data.push_back((*init)[10]);
  Append(sam_data, crypto::AsnFactor(app.asn));
  auto sam = Exchange(psam, "INIT_SAM_FOR_PURCHASE",
                      CommandApdu::Case4(0x80, 0x70, 0x00, 0x00, sam_data, 8), 8);
  if (!sam.ok()) return sam.error();
  result.terminal_serial = ReadU32(*sam, 0);

  // DEBIT FOR PURCHASE: termTxnSerial ‖ date ‖ time ‖ MAC1 → TAC(4) ‖ MAC2(4)
  Bytes debit_data(sam->begin(), sam->begin() + 4);
  Append(debit_data, DateTime(req.date, req.time));
  Append(debit_data, ByteView(*sam).subspan(4, 4));
  auto debit = Exchange(card, "DEBIT FOR PURCHASE",
                        CommandApdu::Case4(0x80, 0x54, 0x01, 0x00, debit_data, 8), 8);
  if (!debit.ok()) return debit.error();
  (void)txn->End();
  result.tac.assign(debit->begin(), debit->begin() + 4);
  result.mac2.assign(debit->begin() + 4, debit->end());

  auto credit = Exchange(psam, "CREDIT_SAM_FOR_PURCHASE",
                         CommandApdu::Case3(0x80, 0x72, 0x00, 0x00, result.mac2));
  if (!credit.ok()) return credit.error();
  // The card debited: balance + overdraw limit covered the amount (INITIALIZE checked it).
  result.balance_after =
      result.balance_before >= req.amount ? result.balance_before - req.amount : 0;
  return result;
}

Result<LoadResult> Load(reader::Reader& card, LoadAuthoriser& issuer, const ApplicationData& app,
                        const LoadRequest& req) {
  if (req.amount == 0) return MakeError("load amount must be greater than zero");
  if (req.terminal_number.size() != 6) return MakeError("terminal number must be 6 bytes");
  auto txn = reader::Transaction::Begin(card);
  if (!txn.ok()) return txn.error();
  Bytes init_data{kKeyIndex};
  AppendU32(init_data, req.amount);
  Append(init_data, req.terminal_number);
  // INITIALIZE FOR LOAD → balance(4) ‖ onlineSerial(2) ‖ keyVersion ‖ algId ‖ random(4) ‖ MAC1(4)
  auto init = Exchange(
      card, "INITIALIZE FOR LOAD",
      CommandApdu::Case4(0x80, 0x50, 0x00, static_cast<std::uint8_t>(req.wallet), init_data, 0x10),
      16);
  if (!init.ok()) return init.error();
  LoadInitialisation li;
  li.asn = app.asn;
  li.type = req.wallet == Wallet::kEd ? 0x01 : 0x02;
  li.amount = req.amount;
  li.terminal_number = req.terminal_number;
  li.old_balance = ReadU32(*init, 0);
  li.online_serial = ReadU16(*init, 4);
  li.key_version = (*init)[6];
  li.alg_id = (*init)[7];
  li.random.assign(init->begin() + 8, init->begin() + 12);
  li.mac1.assign(init->begin() + 12, init->end());
  li.date = req.date;
  li.time = req.time;
  auto approval = issuer.Approve(li);
  if (!approval.ok()) return approval.error();
  li.date = approval->date;
  li.time = approval->time;
  Bytes credit_data = DateTime(li.date, li.time);
  Append(credit_data, approval->mac2);
  auto credit = Exchange(card, "CREDIT FOR LOAD",
                         CommandApdu::Case4(0x80, 0x52, 0x00, 0x00, credit_data, 4), 4);
  if (!credit.ok()) return credit.error();
  (void)txn->End();
  Status confirmed = issuer.Confirm(li, *credit);
  if (!confirmed.ok()) return confirmed.error();
  return LoadResult{li.old_balance + req.amount, li.online_serial, *credit};
}

}  // namespace medcard::terminal
