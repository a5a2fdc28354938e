// Errors as values: Status and Result<T>, used by every fallible engine call.
// A Status is cheap when ok (one null pointer); a failure carries a code the
// caller branches on, a message naming file/segment/offset/stream and what to
// do, and optional details (errno, actual stream version, segment, offset).
#pragma once

#include <cassert>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace eventsource {

// The small set of outcomes a caller can act on.
enum class Code : uint8_t {
  kOk = 0,
  kNotFound,         // the stream/store/item does not exist
  kConflict,         // expected version mismatch; actual_version() says what is there
  kCorruption,       // bytes on disk are damaged; segment()/offset() locate them
  kIoError,          // a system call failed; sys_errno() and the message name file + operation
  kInvalidArgument,  // the caller passed something unusable
  kNotSupported,     // e.g. a format version newer than this library
  kClosed,           // the store is closed or refuses writes until reopened
  kBusy,             // another process holds the writer lock
  kReadOnly,         // a write on a store opened read-only
  kDuplicateEvent,   // an appended event's id is already stored (not as a retry)
  kRejected,         // api/: a command broke a business rule (a decider's or aggregate's refusal)
  kTimedOut,         // api/: a wait or a handler call ran past its time limit
};

std::string_view code_name(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // ok
  Status(Code code, std::string message);
  Status(const Status& other);
  Status& operator=(const Status& other);
  Status(Status&&) noexcept = default;
  Status& operator=(Status&&) noexcept = default;
  ~Status() = default;

  static Status ok_status() { return Status(); }

  bool ok() const { return rep_ == nullptr; }
  Code code() const { return rep_ ? rep_->code : Code::kOk; }
  // "ok" when ok; otherwise "<code name>: <message>".
  std::string to_string() const;
  const std::string& message() const;

  // Details; meaningful only for the codes that set them (-1 / 0 otherwise).
  int sys_errno() const { return rep_ ? rep_->sys_errno : 0; }
  int64_t actual_version() const { return rep_ ? rep_->actual_version : -1; }
  // kConflict from api/: the version the caller expected (-1 when not an exact version).
  int64_t expected_version() const { return rep_ ? rep_->expected_version : -1; }
  int64_t segment() const { return rep_ ? rep_->segment : -1; }
  int64_t offset() const { return rep_ ? rep_->offset : -1; }

  Status& with_errno(int e);
  Status& with_actual_version(int64_t v);
  Status& with_expected_version(int64_t v);
  Status& with_location(int64_t segment, int64_t offset);

  // Must be consumed explicitly when a caller decides a failure does not matter.
  void ignore_error() const {}

 private:
  struct Rep {
    Code code;
    std::string message;
    int sys_errno = 0;
    int64_t actual_version = -1;
    int64_t expected_version = -1;
    int64_t segment = -1;
    int64_t offset = -1;
  };
  std::unique_ptr<Rep> rep_;
};

// Convenience constructors; the message should name the file/stream involved.
Status not_found(std::string message);
Status conflict(std::string message, int64_t actual_version);
Status corruption(std::string message, int64_t segment, int64_t offset);
Status io_error(std::string message, int sys_errno);
Status invalid_argument(std::string message);
Status not_supported(std::string message);
Status closed(std::string message);

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {  // NOLINT
    assert(!status_.ok() && "Result constructed from an ok Status without a value");
  }

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  Status take_status() { return std::move(status_); }

  // REQUIRES: ok().
  T& value() & {
    assert(ok());
    return *value_;
  }
  const T& value() const& {
    assert(ok());
    return *value_;
  }
  T&& value() && {
    assert(ok());
    return std::move(*value_);
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace eventsource

// Early-return helpers for code that propagates failures unchanged.
#define EVENTSOURCE_RETURN_IF_ERROR(expr)                      \
  do {                                                         \
    ::eventsource::Status eventsource_status_ = (expr);        \
    if (!eventsource_status_.ok()) return eventsource_status_; \
  } while (0)

#define EVENTSOURCE_CONCAT_INNER(a, b) a##b
#define EVENTSOURCE_CONCAT(a, b) EVENTSOURCE_CONCAT_INNER(a, b)
#define EVENTSOURCE_ASSIGN_OR_RETURN(lhs, expr) \
  EVENTSOURCE_ASSIGN_OR_RETURN_IMPL(EVENTSOURCE_CONCAT(eventsource_result_, __LINE__), lhs, expr)
#define EVENTSOURCE_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                      \
  if (!tmp.ok()) return tmp.take_status();                \
  lhs = std::move(tmp).value()
