// Unit tests of eventsource/types.h: Uuid text form and random ids, StreamId
// parsing and its length/character bounds ([F-14]), the ExpectedVersion rule
// of each kind, and the strong number types that must not mix.
#include "eventsource/types.h"

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <concepts>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <type_traits>

#include "tests/support/store_helpers.h"

namespace eventsource::testing {
namespace {

// Strong types: no conversion to each other, from or to a bare number
// (except by explicit construction), and no comparison across types.
static_assert(!std::is_convertible_v<GlobalPosition, StreamVersion>);
static_assert(!std::is_convertible_v<StreamVersion, GlobalPosition>);
static_assert(!std::is_convertible_v<SegmentId, GlobalPosition>);
static_assert(!std::is_constructible_v<StreamVersion, GlobalPosition>);
static_assert(!std::is_assignable_v<GlobalPosition&, StreamVersion>);
static_assert(!std::is_convertible_v<uint64_t, GlobalPosition>);
static_assert(!std::is_convertible_v<GlobalPosition, uint64_t>);
static_assert(std::is_constructible_v<GlobalPosition, uint64_t>);
static_assert(!std::equality_comparable_with<GlobalPosition, StreamVersion>);
static_assert(!std::totally_ordered_with<StreamVersion, SegmentId>);
static_assert(std::totally_ordered<GlobalPosition>);
static_assert(GlobalPosition().value == 0 && GlobalPosition(3) < GlobalPosition(4));
static_assert(sizeof(GlobalPosition) == sizeof(uint64_t));

constexpr char kText[] = "00010203-0405-0607-0809-0a0b0c0d0e0f";

Uuid counting_uuid() {
  Uuid u;
  for (uint8_t i = 0; i < 16; ++i) u.bytes[i] = i;
  return u;
}

TEST_SUITE("types") {
  TEST_CASE("a uuid prints as lower-case 8-4-4-4-12 hex in byte order and parses back") {
    const Uuid u = counting_uuid();
    CHECK(u.to_string() == kText);
    std::optional<Uuid> p = Uuid::parse(kText);
    REQUIRE(p.has_value());
    CHECK(*p == u);
    std::optional<Uuid> upper = Uuid::parse("00010203-0405-0607-0809-0A0B0C0D0E0F");
    REQUIRE(upper.has_value());
    CHECK(*upper == u);
    CHECK(Uuid::parse("ffffffff-ffff-ffff-ffff-ffffffffffff")->to_string() ==
          "ffffffff-ffff-ffff-ffff-ffffffffffff");
    std::optional<Uuid> nil = Uuid::parse("00000000-0000-0000-0000-000000000000");
    REQUIRE(nil.has_value());
    CHECK(nil->is_nil());
    CHECK(*nil == Uuid());
    CHECK_FALSE(u.is_nil());
    Uuid last_byte;
    last_byte.bytes[15] = 1;
    CHECK_FALSE(last_byte.is_nil());
    // Ordered by bytes, first byte most significant.
    CHECK(last_byte < u);
    CHECK(Uuid() < last_byte);
  }

  TEST_CASE("a uuid text with a wrong length, separator or digit is refused") {
    const std::string good = kText;
    CHECK_FALSE(Uuid::parse("").has_value());
    CHECK_FALSE(Uuid::parse(good.substr(1)).has_value());
    CHECK_FALSE(Uuid::parse(good + "0").has_value());
    CHECK_FALSE(Uuid::parse("000102030405060708090a0b0c0d0e0f").has_value());
    CHECK_FALSE(Uuid::parse("{" + good.substr(1, 34) + "}").has_value());
    for (size_t i = 0; i < good.size(); ++i) {
      CAPTURE(i);
      const bool dash = good[i] == '-';
      for (char c : {'g', 'G', ' ', ':', dash ? '0' : '-'}) {
        std::string bad = good;
        bad[i] = c;
        CHECK_FALSE(Uuid::parse(bad).has_value());
      }
    }
  }

  TEST_CASE("random uuids are version 4, RFC 4122 variant, and distinct") {
    std::set<Uuid> seen;
    for (int i = 0; i < 1000; ++i) {
      const Uuid u = Uuid::random();
      CHECK((u.bytes[6] & 0xf0) == 0x40);
      CHECK((u.bytes[8] & 0xc0) == 0x80);
      CHECK(u.to_string()[14] == '4');
      CHECK(Uuid::parse(u.to_string()) == u);
      seen.insert(u);
    }
    CHECK(seen.size() == 1000);
  }

  TEST_CASE("a forked child draws other uuids than its parent") {
    // Before the fix the child inherited the parent's generator state and
    // drew exactly the parent's next ids (an append from each then failed
    // with kDuplicateEvent).
    (void)Uuid::random();  // this thread's generator exists before the fork
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      Uuid ids[4];
      for (Uuid& u : ids) u = Uuid::random();
      const ssize_t n = write(fds[1], ids, sizeof(ids));
      _exit(n == static_cast<ssize_t>(sizeof(ids)) ? 0 : 1);
    }
    close(fds[1]);
    Uuid child[4];
    size_t got = 0;
    while (got < sizeof(child)) {
      const ssize_t n = read(fds[0], reinterpret_cast<char*>(child) + got, sizeof(child) - got);
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    close(fds[0]);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    REQUIRE(got == sizeof(child));
    std::set<Uuid> parent;
    for (int i = 0; i < 4; ++i) parent.insert(Uuid::random());
    for (const Uuid& u : child) CHECK(parent.count(u) == 0);
  }

  TEST_CASE("stream type is 1..255 bytes without '-'; stream id is 1..65535 of any bytes") {
    // [F-14]
    CHECK(StreamId{"O", "1"}.validate().ok());
    CHECK(StreamId{std::string(255, 't'), "1"}.validate().ok());
    CHECK(StreamId{"Order", std::string(65535, 'i')}.validate().ok());
    CHECK(StreamId{"Order", std::string("a-\0\xff-", 5)}.validate().ok());
    const StreamId bad[] = {
        {"", "1"},
        {std::string(256, 't'), "1"},
        {"-Order", "1"},
        {"Or-der", "1"},
        {"Order-", "1"},
        {"Order", ""},
        {"Order", std::string(65536, 'i')},
    };
    for (const StreamId& s : bad) {
      CAPTURE(s.type.size());
      CAPTURE(s.id.size());
      Status st = s.validate();
      CHECK(st.code() == Code::kInvalidArgument);
      CHECK(st.message().find(s.id.empty() || s.id.size() > 65535 ? "stream id" : "stream type") !=
            std::string::npos);
    }
  }

  TEST_CASE("stream names are type + '-' + id and parse at the first '-'") {
    CHECK(StreamId{"Order", "42"}.name() == "Order-42");
    const StreamId cases[] = {{"Order", "42"},
                              {"Order", "-42"},
                              {"O", "a-b-c"},
                              {std::string(255, 't'), std::string(65535, 'i')}};
    for (const StreamId& s : cases) {
      Result<StreamId> p = StreamId::parse(s.name());
      EVENTSOURCE_REQUIRE_OK(p);
      CHECK(*p == s);
    }
    for (std::string name : {"", "-", "Order", "-42", "Order-"}) {
      CAPTURE(name);
      EVENTSOURCE_CHECK_CODE(StreamId::parse(name), Code::kInvalidArgument);
    }
    // Parsing applies validate()'s bounds too.
    EVENTSOURCE_CHECK_CODE(StreamId::parse(std::string(256, 't') + "-1"), Code::kInvalidArgument);
    EVENTSOURCE_CHECK_CODE(StreamId::parse("t-" + std::string(65536, 'i')), Code::kInvalidArgument);
    CHECK(StreamId{"A", "2"} < StreamId{"B", "1"});
    CHECK(StreamId{"A", "1"} < StreamId{"A", "2"});
  }

  TEST_CASE("ExpectedVersion accepts exactly the stream versions its kind allows") {
    // format-spec.md "Append": any; no stream (current = 0); stream exists
    // (current > 0); exact v (current = v).
    struct Row {
      ExpectedVersion rule;
      ExpectedVersion::Kind kind;
      const char* text;
      bool accepts[4];  // current = 0, 1, 2, 5
    };
    const Row rows[] = {
        {ExpectedVersion::any(), ExpectedVersion::Kind::kAny, "any", {true, true, true, true}},
        {ExpectedVersion::no_stream(),
         ExpectedVersion::Kind::kNoStream,
         "no stream",
         {true, false, false, false}},
        {ExpectedVersion::exists(),
         ExpectedVersion::Kind::kStreamExists,
         "stream exists",
         {false, true, true, true}},
        {ExpectedVersion::exact(StreamVersion(2)),
         ExpectedVersion::Kind::kExact,
         "version 2",
         {false, false, true, false}},
        {ExpectedVersion::exact(StreamVersion(0)),
         ExpectedVersion::Kind::kExact,
         "version 0",
         {true, false, false, false}},  // the same as no_stream()
    };
    const uint64_t currents[] = {0, 1, 2, 5};
    for (const Row& r : rows) {
      const std::string text = r.text;
      CAPTURE(text);
      CHECK(r.rule.kind() == r.kind);
      CHECK(r.rule.to_string() == r.text);
      for (size_t i = 0; i < 4; ++i) {
        CAPTURE(currents[i]);
        CHECK(r.rule.accepts(StreamVersion(currents[i])) == r.accepts[i]);
      }
    }
    CHECK(ExpectedVersion::exact(StreamVersion(7)).version() == StreamVersion(7));
  }

  TEST_CASE("a recorded event's stream name joins its type and id") {
    RecordedEvent e;
    e.stream_type = "Order";
    e.stream_id = "4-2";
    CHECK(e.stream_name() == "Order-4-2");
  }
}

}  // namespace
}  // namespace eventsource::testing
