// Status construction and formatting, plus small shared helpers (checksum, hex).
#include "eventsource/status.h"

#include <fmt/format.h>
#include <xxhash.h>

#include "engine/coding.h"

namespace eventsource {

std::string_view code_name(Code code) {
  switch (code) {
    case Code::kOk:
      return "ok";
    case Code::kNotFound:
      return "not found";
    case Code::kConflict:
      return "conflict";
    case Code::kCorruption:
      return "corruption";
    case Code::kIoError:
      return "I/O error";
    case Code::kInvalidArgument:
      return "invalid argument";
    case Code::kNotSupported:
      return "not supported";
    case Code::kClosed:
      return "closed";
    case Code::kBusy:
      return "busy";
    case Code::kReadOnly:
      return "read-only";
    case Code::kDuplicateEvent:
      return "duplicate event";
    case Code::kRejected:
      return "rejected";
    case Code::kTimedOut:
      return "timed out";
  }
  return "unknown";
}

Status::Status(Code code, std::string message) {
  assert(code != Code::kOk);
  rep_ = std::make_unique<Rep>();
  rep_->code = code;
  rep_->message = std::move(message);
}

Status::Status(const Status& other)
    : rep_(other.rep_ ? std::make_unique<Rep>(*other.rep_) : nullptr) {}

Status& Status::operator=(const Status& other) {
  if (this != &other) rep_ = other.rep_ ? std::make_unique<Rep>(*other.rep_) : nullptr;
  return *this;
}

const std::string& Status::message() const {
  static const std::string kEmpty;
  return rep_ ? rep_->message : kEmpty;
}

std::string Status::to_string() const {
  if (ok()) return "ok";
  return fmt::format("{}: {}", code_name(rep_->code), rep_->message);
}

Status& Status::with_errno(int e) {
  if (rep_) rep_->sys_errno = e;
  return *this;
}
Status& Status::with_actual_version(int64_t v) {
  if (rep_) rep_->actual_version = v;
  return *this;
}
Status& Status::with_expected_version(int64_t v) {
  if (rep_) rep_->expected_version = v;
  return *this;
}
Status& Status::with_location(int64_t segment, int64_t offset) {
  if (rep_) {
    rep_->segment = segment;
    rep_->offset = offset;
  }
  return *this;
}

Status not_found(std::string message) { return Status(Code::kNotFound, std::move(message)); }
Status conflict(std::string message, int64_t actual_version) {
  Status s(Code::kConflict, std::move(message));
  s.with_actual_version(actual_version);
  return s;
}
Status corruption(std::string message, int64_t segment, int64_t offset) {
  Status s(Code::kCorruption, std::move(message));
  s.with_location(segment, offset);
  return s;
}
Status io_error(std::string message, int sys_errno) {
  Status s(Code::kIoError, std::move(message));
  s.with_errno(sys_errno);
  return s;
}
Status invalid_argument(std::string message) {
  return Status(Code::kInvalidArgument, std::move(message));
}
Status not_supported(std::string message) {
  return Status(Code::kNotSupported, std::move(message));
}
Status closed(std::string message) { return Status(Code::kClosed, std::move(message)); }

uint64_t checksum64(const void* data, size_t n, uint64_t seed) {
  return XXH3_64bits_withSeed(data, n, seed);
}

std::string hex(uint64_t v) { return fmt::format("{:#x}", v); }

}  // namespace eventsource
