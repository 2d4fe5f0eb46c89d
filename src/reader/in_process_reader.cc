// InProcessReader: an iso7816::Icc object behind the Reader interface.
#include <utility>

#include "reader/reader.h"

namespace medcard::reader {

namespace {
// Lets the reader hold a card it does not own.
std::shared_ptr<iso7816::Icc> Borrow(iso7816::Icc* card) {
  if (card == nullptr) return nullptr;
  return std::shared_ptr<iso7816::Icc>(card, [](iso7816::Icc*) {});
}
}  // namespace

InProcessReader::InProcessReader(std::string name) : name_(std::move(name)) {}

InProcessReader::InProcessReader(std::string name, std::shared_ptr<iso7816::Icc> card)
    : name_(std::move(name)), card_(std::move(card)) {}

InProcessReader::InProcessReader(std::string name, iso7816::Icc* card)
    : InProcessReader(std::move(name), Borrow(card)) {}

Status InProcessReader::InsertCard(std::shared_ptr<iso7816::Icc> card) {
  if (card == nullptr) return MakeError("no card to insert into reader '" + name_ + "'");
  std::lock_guard lock(mutex_);
  if (card_ != nullptr) return MakeError("reader '" + name_ + "' already holds a card");
  card_ = std::move(card);
  powered_ = false;
  ++card_generation_;
  changed_.notify_all();
  return Status::Ok();
}

Status InProcessReader::InsertCard(iso7816::Icc* card) { return InsertCard(Borrow(card)); }

std::shared_ptr<iso7816::Icc> InProcessReader::RemoveCard() {
  std::lock_guard lock(mutex_);
  std::shared_ptr<iso7816::Icc> card = std::exchange(card_, nullptr);
  if (card != nullptr && powered_) card->PowerOff();
  powered_ = false;
  ++card_generation_;
  // Pulling the card ends any transaction on it, as in PC/SC.
  transaction_depth_ = 0;
  transaction_owner_ = {};
  changed_.notify_all();
  return card;
}

Result<Bytes> InProcessReader::Connect() {
  std::unique_lock lock(mutex_);
  WaitForTurn(lock);
  if (card_ == nullptr) return MakeError("no card in reader '" + name_ + "'");
  if (connected_ && connected_generation_ == card_generation_) return card_->Atr();
  Bytes atr = powered_ ? card_->Atr() : card_->PowerOn();
  if (atr.empty()) return MakeError("the card in reader '" + name_ + "' is mute (no ATR)");
  powered_ = true;
  connected_ = true;
  connected_generation_ = card_generation_;
  return atr;
}

Status InProcessReader::Disconnect() {
  std::lock_guard lock(mutex_);
  connected_ = false;
  return Status::Ok();
}

bool InProcessReader::Connected() const {
  std::lock_guard lock(mutex_);
  return connected_;
}

Result<bool> InProcessReader::CardPresent() {
  std::lock_guard lock(mutex_);
  return card_ != nullptr;
}

Result<bool> InProcessReader::WaitForCard(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [this] { return card_ != nullptr; });
}

Result<bool> InProcessReader::WaitForRemoval(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [this] { return card_ == nullptr; });
}

Result<Bytes> InProcessReader::Transmit(ByteView command_apdu) {
  std::unique_lock lock(mutex_);
  WaitForTurn(lock);
  if (Status status = CheckConnected(); !status) return status.error();
  Bytes response = card_->Transmit(command_apdu);
  if (response.empty()) {
    return MakeError("the card in reader '" + name_ + "' did not answer (mute card)");
  }
  return response;
}

Result<Bytes> InProcessReader::PowerCycle(Reset kind) {
  std::unique_lock lock(mutex_);
  WaitForTurn(lock);
  if (Status status = CheckConnected(); !status) return status.error();
  if (kind == Reset::kCold) card_->PowerOff();
  Bytes atr = card_->PowerOn();
  if (atr.empty()) return MakeError("the card in reader '" + name_ + "' is mute (no ATR)");
  powered_ = true;
  return atr;
}

Status InProcessReader::BeginTransaction() {
  std::unique_lock lock(mutex_);
  WaitForTurn(lock);
  if (Status status = CheckConnected(); !status) return status;
  transaction_owner_ = std::this_thread::get_id();
  ++transaction_depth_;
  return Status::Ok();
}

Status InProcessReader::EndTransaction() {
  std::lock_guard lock(mutex_);
  if (transaction_depth_ == 0 || transaction_owner_ != std::this_thread::get_id()) {
    return MakeError("no transaction of this thread on reader '" + name_ + "'");
  }
  if (--transaction_depth_ == 0) {
    transaction_owner_ = {};
    changed_.notify_all();
  }
  return Status::Ok();
}

void InProcessReader::WaitForTurn(std::unique_lock<std::mutex>& lock) {
  changed_.wait(lock, [this] {
    return transaction_depth_ == 0 || transaction_owner_ == std::this_thread::get_id();
  });
}

Status InProcessReader::CheckConnected() const {
  if (!connected_) return MakeError("not connected to reader '" + name_ + "' (Connect first)");
  if (card_ == nullptr || connected_generation_ != card_generation_) {
    return MakeError("card removed from reader '" + name_ + "'");
  }
  return Status::Ok();
}

}  // namespace medcard::reader
