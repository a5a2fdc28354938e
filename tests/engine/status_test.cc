// Unit tests of eventsource/status.h: Status (cheap when ok, codes, names,
// details, deep copies), Result<T>, and the EVENTSOURCE_RETURN_IF_ERROR /
// EVENTSOURCE_ASSIGN_OR_RETURN early-return macros.
#include "eventsource/status.h"

#include <doctest/doctest.h>

#include <cerrno>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "tests/support/store_helpers.h"

namespace eventsource::testing {
namespace {

static_assert(sizeof(Status) == sizeof(void*), "an ok Status is one null pointer");
static_assert(std::is_nothrow_move_constructible_v<Status>);
static_assert(std::is_nothrow_move_assignable_v<Status>);

struct Named {
  Code code;
  const char* name;
};
const Named kCodes[] = {
    {Code::kNotFound, "not found"},
    {Code::kConflict, "conflict"},
    {Code::kCorruption, "corruption"},
    {Code::kIoError, "I/O error"},
    {Code::kInvalidArgument, "invalid argument"},
    {Code::kNotSupported, "not supported"},
    {Code::kClosed, "closed"},
    {Code::kBusy, "busy"},
    {Code::kReadOnly, "read-only"},
    {Code::kDuplicateEvent, "duplicate event"},
    {Code::kRejected, "rejected"},
    {Code::kTimedOut, "timed out"},
};

void check_no_details(const Status& s) {
  CHECK(s.sys_errno() == 0);
  CHECK(s.actual_version() == -1);
  CHECK(s.expected_version() == -1);
  CHECK(s.segment() == -1);
  CHECK(s.offset() == -1);
}

// Counts its calls; fails with an I/O error when asked to.
Status step(bool fail, int* calls) {
  ++*calls;
  return fail ? io_error("step " + std::to_string(*calls) + " failed", EIO) : Status();
}

Status two_steps(bool first_fails, bool second_fails, int* calls) {
  EVENTSOURCE_RETURN_IF_ERROR(step(first_fails, calls));
  EVENTSOURCE_RETURN_IF_ERROR(step(second_fails, calls));
  return Status();
}

Result<int> digit(char c, int* calls) {
  ++*calls;
  if (c < '0' || c > '9') return invalid_argument(std::string("not a digit: ") + c);
  return c - '0';
}

// Two uses in one function (distinct temporaries), one declaring, one
// assigning to an existing variable; returns Result<int>.
Result<int> sum_of_two_digits(std::string_view s, int* calls) {
  EVENTSOURCE_ASSIGN_OR_RETURN(int a, digit(s[0], calls));
  int b = -1;
  EVENTSOURCE_ASSIGN_OR_RETURN(b, digit(s[1], calls));
  return a + b;
}

Result<std::unique_ptr<int>> boxed(int v) {
  if (v < 0) return conflict("negative", v);
  return std::make_unique<int>(v);
}

// ASSIGN_OR_RETURN of a move-only value in a function returning Status.
Status unbox_into(int v, int* out) {
  EVENTSOURCE_ASSIGN_OR_RETURN(std::unique_ptr<int> p, boxed(v));
  *out = *p;
  return Status();
}

TEST_SUITE("status") {
  TEST_CASE("a default Status is ok, says 'ok' and carries no details") {
    Status s;
    CHECK(s.ok());
    CHECK(s.code() == Code::kOk);
    CHECK(s.to_string() == "ok");
    CHECK(s.message().empty());
    check_no_details(s);
    CHECK(Status::ok_status().ok());
    CHECK(code_name(Code::kOk) == "ok");
  }

  TEST_CASE("each failure code has its own name, used by to_string") {
    std::set<std::string_view> names;
    for (const Named& n : kCodes) {
      const std::string name = n.name;
      CAPTURE(name);
      CHECK(code_name(n.code) == n.name);
      names.insert(code_name(n.code));
      Status s(n.code, "orders.evs: something happened");
      CHECK_FALSE(s.ok());
      CHECK(s.code() == n.code);
      CHECK(s.message() == "orders.evs: something happened");
      CHECK(s.to_string() == std::string(n.name) + ": orders.evs: something happened");
      check_no_details(s);
    }
    CHECK(names.size() == std::size(kCodes));
  }

  TEST_CASE("the convenience constructors set their code and their details") {
    Status c = conflict("Order-42 is at version 3", 3);
    CHECK(c.code() == Code::kConflict);
    CHECK(c.actual_version() == 3);
    CHECK(c.sys_errno() == 0);
    Status k = corruption("record checksum mismatch", 12, 0x3a40);
    CHECK(k.code() == Code::kCorruption);
    CHECK(k.segment() == 12);
    CHECK(k.offset() == 0x3a40);
    CHECK(k.actual_version() == -1);
    Status io = io_error("orders.evs: write failed", ENOSPC);
    CHECK(io.code() == Code::kIoError);
    CHECK(io.sys_errno() == ENOSPC);
    CHECK(io.segment() == -1);
    CHECK(io.to_string() == "I/O error: orders.evs: write failed");
    CHECK(not_found("x").code() == Code::kNotFound);
    CHECK(invalid_argument("x").code() == Code::kInvalidArgument);
    CHECK(not_supported("x").code() == Code::kNotSupported);
    CHECK(closed("x").code() == Code::kClosed);
    check_no_details(not_found("x"));
  }

  TEST_CASE("details chain onto a failure and are dropped on an ok Status") {
    Status s = not_found("gone");
    Status& same =
        s.with_errno(ENOENT).with_actual_version(0).with_expected_version(7).with_location(2, 64);
    CHECK(&same == &s);
    CHECK(s.expected_version() == 7);
    CHECK(s.sys_errno() == ENOENT);
    CHECK(s.actual_version() == 0);
    CHECK(s.segment() == 2);
    CHECK(s.offset() == 64);
    CHECK(s.code() == Code::kNotFound);
    Status ok;
    ok.with_errno(EIO).with_actual_version(5).with_expected_version(4).with_location(1, 2);
    CHECK(ok.ok());
    check_no_details(ok);
  }

  TEST_CASE("copies are deep, and moves carry the failure over") {
    Status a = corruption("bad frame", 3, 0x1040);
    a.with_errno(EIO);
    Status b = a;
    CHECK(b.code() == Code::kCorruption);
    CHECK(b.message() == "bad frame");
    CHECK(b.segment() == 3);
    CHECK(b.offset() == 0x1040);
    CHECK(b.sys_errno() == EIO);
    b.with_location(4, 8);  // changes the copy only
    CHECK(a.segment() == 3);
    Status c;
    c = a;
    CHECK(c.to_string() == a.to_string());
    c = *&c;  // self-assignment keeps it
    CHECK(c.code() == Code::kCorruption);
    c = Status();
    CHECK(c.ok());
    Status moved = std::move(b);
    CHECK(moved.code() == Code::kCorruption);
    CHECK(moved.segment() == 4);
    Status assigned;
    assigned = std::move(moved);
    CHECK(assigned.offset() == 8);
    const Status ok_source;
    Status ok_copy = ok_source;
    CHECK(ok_copy.ok());
    ok_copy = a;
    CHECK(ok_copy.code() == Code::kCorruption);
  }

  TEST_CASE("Result holds a value or a failure") {
    Result<std::string> v = std::string("Order-42");
    REQUIRE(v.ok());
    CHECK(v.status().ok());
    CHECK(v.value() == "Order-42");
    CHECK(*v == "Order-42");
    CHECK(v->size() == 8);
    v.value() += "!";
    CHECK(*v == "Order-42!");
    const Result<std::string>& cv = v;
    CHECK(cv.value() == "Order-42!");
    CHECK(cv->back() == '!');
    std::string taken = std::move(v).value();
    CHECK(taken == "Order-42!");

    Result<std::string> e = conflict("Order-42 is at 3", 3);
    CHECK_FALSE(e.ok());
    CHECK(e.status().code() == Code::kConflict);
    CHECK(e.status().actual_version() == 3);
    Status s = e.take_status();
    CHECK(s.code() == Code::kConflict);
    CHECK(s.actual_version() == 3);

    // "Nothing" is a value, not a failure.
    Result<std::optional<int>> none = std::optional<int>();
    CHECK(none.ok());
    CHECK_FALSE(none->has_value());

    Result<std::unique_ptr<int>> box = boxed(7);
    REQUIRE(box.ok());
    std::unique_ptr<int> p = std::move(box).value();
    REQUIRE(p != nullptr);
    CHECK(*p == 7);
  }

  TEST_CASE("EVENTSOURCE_RETURN_IF_ERROR returns the first failure and evaluates once") {
    int calls = 0;
    EVENTSOURCE_CHECK_OK(two_steps(false, false, &calls));
    CHECK(calls == 2);
    calls = 0;
    Status s = two_steps(true, false, &calls);
    CHECK(calls == 1);  // stopped at the first failure
    CHECK(s.code() == Code::kIoError);
    CHECK(s.sys_errno() == EIO);
    CHECK(s.message() == "step 1 failed");
    calls = 0;
    s = two_steps(false, true, &calls);
    CHECK(calls == 2);
    CHECK(s.message() == "step 2 failed");
  }

  TEST_CASE("EVENTSOURCE_ASSIGN_OR_RETURN assigns the value or returns the failure") {
    int calls = 0;
    Result<int> r = sum_of_two_digits("34", &calls);
    REQUIRE(r.ok());
    CHECK(*r == 7);
    CHECK(calls == 2);
    calls = 0;
    r = sum_of_two_digits("x4", &calls);
    CHECK(calls == 1);
    EVENTSOURCE_CHECK_CODE(r, Code::kInvalidArgument);
    CHECK(r.status().message() == "not a digit: x");
    calls = 0;
    r = sum_of_two_digits("3y", &calls);
    CHECK(calls == 2);
    CHECK(r.status().message() == "not a digit: y");

    int out = 0;
    EVENTSOURCE_CHECK_OK(unbox_into(5, &out));
    CHECK(out == 5);
    Status s = unbox_into(-2, &out);
    CHECK(s.code() == Code::kConflict);
    CHECK(s.actual_version() == -2);  // details survive the propagation
    CHECK(out == 5);
  }
}

}  // namespace
}  // namespace eventsource::testing
