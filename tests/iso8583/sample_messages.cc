#include "sample_messages.h"

#include <cstdio>
#include <cstdlib>

#include "crypto/crypto.h"

namespace medcard::iso8583::testing {

namespace {

const crypto::MacKey& TestMacKey() {
  static const crypto::MacKey key = MustOk(crypto::MacKey::Create(HexToBytes(kMacKeyHex)));
  return key;
}

std::string Field60Digits(const TransactionSpec& spec) {
  return MustOk(Field60{spec.message_type, kBatch, spec.network_codes[0]}.Encode());
}

void Common(Message& m, const TransactionSpec& spec, std::uint32_t trace) {
  MustOk(m.SetNumber(11, trace));
  MustOk(m.SetText(41, kTerminalId));
  MustOk(m.SetText(42, kMerchantId));
  MustOk(m.SetDigits(60, Field60Digits(spec)));
}

void Security(Message& m, bool pin_block) {
  MustOk(m.SetDigits(53, MustOk(SecurityControl{pin_block, kKeyVersion}.Encode())));
}

void Financial(Message& m, std::string_view processing_code, std::uint64_t amount) {
  MustOk(m.SetDigits(3, processing_code));
  if (amount != 0) MustOk(m.SetNumber(4, amount));
  MustOk(m.SetDigits(25, "00"));
  MustOk(m.SetText(49, kCurrencyCny));
}

constexpr std::uint64_t kLoadAmount = 7223;  // 0x1C37 fen, as in the EP load trace

}  // namespace

void MustOk(const Status& status) {
  if (!status.ok()) {
    std::fprintf(stderr, "sample message builder: %s\n", status.error().message.c_str());
    std::abort();
  }
}

LoadRequest SampleLoadRequest() {
  // The card's INITIALIZE FOR LOAD answer: balance 0, online serial 0, key version 01, alg 00,
  // random CDEF4F20, MAC1 06B1BEF5 (the EP load trace of test-vectors.json).
  return MustOk(
      LoadRequest::FromInitializeForLoad(HexToBytes(kAsnHex), HexToBytes(kTerminalNumberHex),
                                         HexToBytes("00000000 0000 01 00 CDEF4F20 06B1BEF5")));
}

PurchaseBatch SamplePurchaseBatch(std::size_t records) {
  PurchaseBatch batch;
  for (std::size_t i = 0; i < records; ++i) {
    OfflinePurchase p;
    p.asn = HexToBytes(kAsnHex);
    p.asn.back() = static_cast<std::uint8_t>(0x10 + i);
    p.type = i % 2 == 0 ? 0x05 : 0x06;
    p.amount = static_cast<std::uint32_t>(1500 + 100 * i);
    p.card_offline_serial = static_cast<std::uint16_t>(40 + i);
    p.terminal_number = HexToBytes(kTerminalNumberHex);
    p.terminal_serial = static_cast<std::uint32_t>(1000 + i);
    p.date = Date{2025, 3, 14};
    p.time = TimeOfDay{9, 26, static_cast<int>(i % 60)};
    p.key_version = 1;
    p.tac = HexToBytes("44A8E04A");
    p.mac2 = HexToBytes("350AC480");
    p.balance_before = 100000;
    p.balance_after = 100000 - p.amount;
    batch.purchases.push_back(p);
  }
  return batch;
}

SamTotals SampleSamTotals() {
  SamTotals t;
  t.psam_serial = HexToBytes("31000000000000000001");
  t.key_version = 1;
  t.challenge = HexToBytes("1122334455667788");
  t.count = 3;
  t.amount = 4800;
  t.first_serial = 1000;
  t.last_serial = 1002;
  t.mac = HexToBytes("A1B2C3D4");
  return t;
}

ParameterPart SampleParameters() {
  ParameterPart part;
  part.version = 5;
  part.parameters.merchant_name = "Renmin Hospital Pharmacy 人民医院药房";
  part.parameters.purchase_limit = 500000;
  part.parameters.load_limit = 1000000;
  part.parameters.ep_balance_limit = 100000;
  part.parameters.card_key_versions = {1, 2};
  part.parameters.clock_date = Date{2025, 3, 14};
  part.parameters.clock_time = TimeOfDay{8, 0, 0};
  part.parameters.upload_threshold = 50;
  part.parameters.blacklist_version = 42;
  return part;
}

BlacklistPart SampleBlacklist() {
  BlacklistPart part;
  part.version = 42;
  part.more = true;
  part.part = 0;
  part.entries.push_back({HexToBytes("00004100000089999901"), BlacklistAction::kAdd});
  part.entries.push_back({HexToBytes("00004100000089999902"), BlacklistAction::kRemove});
  return part;
}

Message SampleRequest(Transaction transaction, std::uint32_t trace) {
  const TransactionSpec& spec = SpecOf(transaction);
  Message m(spec.request_mti);
  Common(m, spec, trace);
  switch (transaction) {
    case Transaction::kSignOn:
      MustOk(
          m.SetBytes(62, View(MustOk(SignOnRequest{HexToBytes(kTerminalNumberHex), 1}.Encode()))));
      MustOk(m.SetText(63, "001"));
      break;
    case Transaction::kSignOff:
    case Transaction::kEchoTest:
    case Transaction::kSettlementChallenge:
      Security(m, false);
      break;
    case Transaction::kParameterDownload:
    case Transaction::kBlacklistDownload:
      Security(m, false);
      MustOk(m.SetBytes(62, View(MustOk(DownloadRequest{41, 0, 0}.Encode()))));
      break;
    case Transaction::kBalanceInquiry: {
      Financial(m, "310000", 0);
      const std::string pan = *PanFromAsn(View(HexToBytes(kAsnHex)));
      MustOk(m.SetDigits(2, pan));
      MustOk(m.SetDigits(22, "051"));
      MustOk(m.SetDigits(26, "12"));
      // A format 0 PIN block as the terminal's PIN pad would encrypt it (the bytes only matter
      // to the host's key store).
      MustOk(m.SetBytes(52, View(HexToBytes("5A1F0C93D26E884B"))));
      Security(m, true);
      MustOk(m.SetBytes(62, View(HexToBytes(kAsnHex))));
      break;
    }
    case Transaction::kLoad:
      Financial(m, "600002", kLoadAmount);
      MustOk(m.SetDigits(22, "052"));
      Security(m, false);
      MustOk(m.SetBytes(62, View(MustOk(SampleLoadRequest().Encode()))));
      break;
    case Transaction::kLoadConfirmation:
      Financial(m, "600002", kLoadAmount);
      Security(m, false);
      MustOk(m.SetDigits(61, MustOk(OriginalTransaction{kBatch, trace - 1, 8, 25}.Encode())));
      MustOk(m.SetBytes(
          62,
          View(MustOk(LoadConfirmation{HexToBytes(kAsnHex), HexToBytes("ED0F8755")}.Encode()))));
      break;
    case Transaction::kLoadReversal:
      Financial(m, "600002", kLoadAmount);
      MustOk(m.SetText(39, "98"));
      Security(m, false);
      MustOk(m.SetDigits(61, MustOk(OriginalTransaction{kBatch, trace - 1, 0, 0}.Encode())));
      MustOk(m.SetBytes(62, View(HexToBytes(kAsnHex))));
      break;
    case Transaction::kBatchUpload:
      Security(m, false);
      MustOk(m.SetBytes(62, View(MustOk(SamplePurchaseBatch(3).Encode()))));
      break;
    case Transaction::kSettlement:
      MustOk(m.SetDigits(48, MustOk(BatchTotals{3, 4800, 1, kLoadAmount}.Encode())));
      MustOk(m.SetText(49, kCurrencyCny));
      Security(m, false);
      MustOk(m.SetBytes(62, View(MustOk(SampleSamTotals().Encode()))));
      break;
  }
  Sign(m, TestMacKey());
  return m;
}

Message SampleResponse(Transaction transaction, std::uint32_t trace) {
  const Message request = SampleRequest(transaction, trace);
  Message m = MustOk(StartResponse(request, ResponseCode::kApproved));
  auto host_clock = [&m] {
    MustOk(m.SetDigits(12, "103100"));
    MustOk(m.SetDigits(13, "0825"));
  };
  switch (transaction) {
    case Transaction::kSignOn: {
      host_clock();
      MustOk(m.SetDigits(53, MustOk(SecurityControl{false, kKeyVersion}.Encode())));
      WorkingKeys keys;
      keys.pin_key = {HexToBytes("8E4C1A72B390D5F6A7C8E9F001122334"), HexToBytes("9A1B2C")};
      keys.mac_key = {HexToBytes("2B7E151628AED2A6ABF7158809CF4F3C"), HexToBytes("3D4E5F")};
      MustOk(m.SetBytes(62, View(MustOk(keys.Encode()))));
      break;
    }
    case Transaction::kEchoTest:
      host_clock();
      break;
    case Transaction::kParameterDownload:
      MustOk(m.SetBytes(62, View(MustOk(SampleParameters().Encode()))));
      break;
    case Transaction::kBlacklistDownload:
      MustOk(m.SetBytes(62, View(MustOk(SampleBlacklist().Encode()))));
      break;
    case Transaction::kSettlementChallenge:
      MustOk(m.SetBytes(62, View(HexToBytes("0F1E2D3C4B5A6978"))));
      break;
    case Transaction::kBalanceInquiry:
      MustOk(m.SetText(54, MustOk(AvailableBalance{false, 1234567}.Encode())));
      break;
    case Transaction::kLoad:
      host_clock();
      MustOk(m.SetText(37, "250825000123"));
      MustOk(m.SetBytes(62, View(MustOk(LoadAuthorisation{HexToBytes("0641DCD8"), Date{2014, 8, 25},
                                                          TimeOfDay{10, 31, 0}}
                                            .Encode()))));
      break;
    case Transaction::kLoadConfirmation:
      MustOk(m.SetText(37, "250825000124"));
      break;
    case Transaction::kSettlement:
      MustOk(m.SetBytes(62, View(HexToBytes("5C6D7E8F"))));
      break;
    case Transaction::kSignOff:
    case Transaction::kLoadReversal:
    case Transaction::kBatchUpload:
      break;
  }
  Sign(m, TestMacKey());
  return m;
}

Frame SampleFrame(const Message& message) {
  Frame frame;
  frame.tpdu = Tpdu{0x0003, 0x0000};
  if (IsResponseMti(message.mti())) {
    frame.tpdu = frame.tpdu.Reply();
    frame.header.handling = kHandleParameters;
  }
  frame.message = message;
  return frame;
}

}  // namespace medcard::iso8583::testing
