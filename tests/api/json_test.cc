// api/ JSON codec (json.h): round trips of every supported type, nested
// structs, unicode and escapes, integer limits and range errors, NaN refused,
// key order, unknown and absent members, errors naming their path, malformed
// input (every truncation, trailing bytes, random damage) as errors and never
// crashes, nested and concurrent decodes, and JsonWriter misuse.
#include "eventsource/json.h"

#include <doctest/doctest.h>

#include <bit>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace eventsource {
namespace {

enum class Color : int8_t { kRed = -1, kGreen = 2, kBlue = 100 };
enum Size : uint16_t { kSmall = 1, kLarge = 65535 };

struct Item {
  std::string sku;
  uint32_t qty = 0;
  double price = 0;
  bool operator==(const Item&) const = default;
};
EVENTSOURCE_JSON(Item, sku, qty, price)

struct Everything {
  bool flag = false;
  int8_t i8 = 0;
  int16_t i16 = 0;
  int32_t i32 = 0;
  int64_t i64 = 0;
  uint8_t u8 = 0;
  uint16_t u16 = 0;
  uint32_t u32 = 0;
  uint64_t u64 = 0;
  float f = 0;
  double d = 0;
  std::string s;
  Uuid id;
  Color color = Color::kRed;
  Size size = kSmall;
  std::vector<int> ints;
  std::vector<bool> bools;
  std::vector<Item> items;
  std::optional<int> maybe;
  std::optional<Item> maybe_item;
  std::map<std::string, int> counts;
  std::map<std::string, Item> by_sku;
  Item nested;
  std::vector<std::vector<std::string>> grid;
  bool operator==(const Everything&) const = default;
};
EVENTSOURCE_JSON(Everything, flag, i8, i16, i32, i64, u8, u16, u32, u64, f, d, s, id, color, size,
                 ints, bools, items, maybe, maybe_item, counts, by_sku, nested, grid)

struct Small {
  int a = 7;
  std::string b = "default";
  std::optional<int> c;
  bool operator==(const Small&) const = default;
};
EVENTSOURCE_JSON(Small, a, b, c)

struct Order {
  std::vector<Item> items;
  std::map<std::string, int> labels;
};
EVENTSOURCE_JSON(Order, items, labels)

struct Narrow {
  uint8_t u8 = 0;
  int8_t i8 = 0;
  uint32_t u32 = 0;
  int64_t i64 = 0;
  uint64_t u64 = 0;
  float f = 0;
  Color color = Color::kRed;
};
EVENTSOURCE_JSON(Narrow, u8, i8, u32, i64, u64, f, color)

struct Empty {
  bool operator==(const Empty&) const = default;
};
EVENTSOURCE_JSON(Empty)

// 40 members: the mapping macro goes well past 32.
struct Wide {
  int m0 = 0, m1 = 0, m2 = 0, m3 = 0, m4 = 0, m5 = 0, m6 = 0, m7 = 0, m8 = 0, m9 = 0;
  int m10 = 0, m11 = 0, m12 = 0, m13 = 0, m14 = 0, m15 = 0, m16 = 0, m17 = 0, m18 = 0, m19 = 0;
  int m20 = 0, m21 = 0, m22 = 0, m23 = 0, m24 = 0, m25 = 0, m26 = 0, m27 = 0, m28 = 0, m29 = 0;
  int m30 = 0, m31 = 0, m32 = 0, m33 = 0, m34 = 0, m35 = 0, m36 = 0, m37 = 0, m38 = 0, m39 = 0;
  bool operator==(const Wide&) const = default;
};
EVENTSOURCE_JSON(Wide, m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16,
                 m17, m18, m19, m20, m21, m22, m23, m24, m25, m26, m27, m28, m29, m30, m31, m32,
                 m33, m34, m35, m36, m37, m38, m39)

// Derives from a mapped struct without a mapping of its own: not mapped.
struct DerivedItem : Item {
  int extra = 0;
};
static_assert(JsonCodable<Item>);
static_assert(!JsonCodable<DerivedItem>);
static_assert(JsonCodable<std::vector<std::optional<Item>>>);
static_assert(!JsonCodable<const char*>);

// Carries a JSON document in a string member and decodes it while the outer
// document is still being read: a nested decode.
struct Inner {
  std::string name;
  std::vector<int> values;
  bool operator==(const Inner&) const = default;
};
EVENTSOURCE_JSON(Inner, name, values)

struct Wrapped {
  Inner inner;
};
Status json_read(JsonValue& v, Wrapped& out) {
  std::string text;
  EVENTSOURCE_RETURN_IF_ERROR(v.get_string(text));
  return from_json(text, out.inner);  // the outer parse is mid-way
}
void json_write(JsonWriter& w, const Wrapped& value) {
  Result<std::string> text = to_json(value.inner);
  w.string(text.ok() ? *text : std::string());
}

struct Envelope {
  std::string before;
  Wrapped wrapped;
  std::string after;
  std::vector<Wrapped> more;
};
EVENTSOURCE_JSON(Envelope, before, wrapped, after, more)

// Throws from its reader or writer.
struct Throwing {
  int x = 0;
};
Status json_read(JsonValue&, Throwing&) { throw std::runtime_error("reader exploded"); }
void json_write(JsonWriter&, const Throwing&) { throw std::runtime_error("writer exploded"); }
struct HasThrowing {
  int a = 0;
  Throwing t;
};
EVENTSOURCE_JSON(HasThrowing, a, t)

Uuid uuid_of(uint8_t seed) {
  Uuid u;
  for (size_t i = 0; i < 16; ++i) u.bytes[i] = static_cast<uint8_t>(seed * 31 + i * 7);
  return u;
}

Everything sample() {
  Everything e;
  e.flag = true;
  e.i8 = -128;
  e.i16 = 32767;
  e.i32 = -2147483647 - 1;
  e.i64 = std::numeric_limits<int64_t>::min();
  e.u8 = 255;
  e.u16 = 65535;
  e.u32 = 4294967295u;
  e.u64 = std::numeric_limits<uint64_t>::max();
  e.f = 0.1f;
  e.d = -1234.5678e-300;
  e.s = "plain";
  e.id = uuid_of(3);
  e.color = Color::kBlue;
  e.size = kLarge;
  e.ints = {1, -2, 3};
  e.bools = {true, false, true};
  e.items = {{"a", 1, 1.5}, {"b", 2, 0.25}, {"c", 3, 1e21}};
  e.maybe = 0;
  e.maybe_item = Item{"m", 9, -0.0};
  e.counts = {{"x", 1}, {"y", -1}};
  e.by_sku = {{"a", {"a", 1, 2}}, {"\xc3\xa9", {"e", 2, 3}}};
  e.nested = {"n", 4, 4.5};
  e.grid = {{"a", "b"}, {}, {"c"}};
  return e;
}

template <class T>
T round_trip(const T& in) {
  Result<std::string> json = to_json(in);
  REQUIRE_MESSAGE(json.ok(), json.status().to_string());
  T out{};
  Status s = from_json(*json, out);
  REQUIRE_MESSAGE(s.ok(), (s.to_string() + " in " + *json));
  return out;
}

// The error of reading `json` as a T ("" when it reads).
template <class T>
std::string read_error(std::string_view json) {
  T out{};
  Status s = from_json(json, out);
  return s.ok() ? std::string() : s.message();
}

TEST_SUITE("api-json") {
  TEST_CASE("every supported member type round-trips") {
    const Everything in = sample();
    const Everything out = round_trip(in);
    CHECK(out == in);
    CHECK(std::signbit(out.maybe_item->price));  // -0.0 stays negative
  }

  TEST_CASE("absent optionals and empty containers round-trip") {
    Everything in;
    const Everything out = round_trip(in);
    CHECK(out == in);
    CHECK_FALSE(out.maybe.has_value());
    CHECK_FALSE(out.maybe_item.has_value());
  }

  TEST_CASE("the text is compact, keys in declaration order, nullopt as null") {
    Small s{1, "x", std::nullopt};
    CHECK(to_json(s).value() == R"({"a":1,"b":"x","c":null})");
    s.c = -3;
    CHECK(to_json(s).value() == R"({"a":1,"b":"x","c":-3})");
    Item item{"k", 2, 0.5};
    CHECK(to_json(item).value() == R"({"sku":"k","qty":2,"price":0.5})");
    Everything e;
    e.id = uuid_of(1);
    const std::string json = to_json(e).value();
    CHECK(json.find("\"id\":\"" + e.id.to_string() + "\"") != std::string::npos);
    CHECK(json.find(R"("color":-1,"size":1,)") != std::string::npos);
    CHECK(to_json(Empty{}).value() == "{}");
  }

  TEST_CASE("floats are written in their shortest form") {
    CHECK(to_json(0.1f).value() == "0.1");
    CHECK(to_json(1.0f / 3).value() == "0.33333334");
    CHECK(to_json(0.1).value() == "0.1");
    CHECK(to_json(100.0).value() == "100.0");
  }

  TEST_CASE("strings with escapes, control characters, NUL and non-BMP characters round-trip") {
    std::string all_controls;
    for (int c = 0; c < 0x20; ++c) all_controls += static_cast<char>(c);
    const std::vector<std::string> cases = {
        "",
        "quote \" and backslash \\ and slash /",
        std::string("embedded\0nul", 12),
        all_controls,
        "\x7f delete",
        "caf\xc3\xa9 \xe2\x82\xac \xe4\xb8\xad",  // 2- and 3-byte UTF-8
        "\xf0\x9f\x98\x80 \xf0\x90\x8d\x88",      // non-BMP: U+1F600, U+10348
        std::string(1000, 'x') + "\"" + std::string(1000, '\\'),
    };
    for (const std::string& text : cases) {
      Small in{1, text, 2};
      CHECK(round_trip(in) == in);
      CHECK(round_trip(text) == text);
    }
    const std::string json =
        to_json(std::string("a\"b\\c\n\x01", 7) + std::string(1, '\0')).value();
    CHECK(json == R"("a\"b\\c\n\u0001\u0000")");
  }

  TEST_CASE("JSON escapes read as UTF-8, surrogate pairs included") {
    std::string s;
    REQUIRE(from_json(R"("\u00e9\u20ac\ud83d\ude00\/\b\f\n\r\t\u0000")", s).ok());
    CHECK(s == std::string("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80/\b\f\n\r\t\0", 16));
    Small small;
    REQUIRE(from_json(R"({"\u0062":"escaped key"})", small).ok());
    CHECK(small.b == "escaped key");
  }

  TEST_CASE("a string that is not UTF-8 is refused on write, naming its path") {
    Order order;
    order.items = {{"ok", 1, 1}, {"bad\xff", 1, 1}};
    Result<std::string> json = to_json(order);
    REQUIRE_FALSE(json.ok());
    CHECK(json.status().code() == Code::kInvalidArgument);
    CHECK_MESSAGE(json.status().message().find("items[1].sku") != std::string::npos,
                  json.status().message());
    CHECK(json.status().message().find("UTF-8") != std::string::npos);
    order.items.clear();
    order.labels["\xed\xa0\x80"] = 1;  // a UTF-16 surrogate encoded as UTF-8
    CHECK_FALSE(to_json(order).ok());
    CHECK(read_error<std::string>("\"\xff\"") != "");  // and refused on read
  }

  TEST_CASE("integer limits round-trip; out of range values are errors naming the member") {
    Narrow n;
    n.u8 = 255;
    n.i8 = -128;
    n.u32 = 4294967295u;
    n.i64 = std::numeric_limits<int64_t>::max();
    n.u64 = std::numeric_limits<uint64_t>::max();
    Narrow out = round_trip(n);
    CHECK(out.u8 == 255);
    CHECK(out.i8 == -128);
    CHECK(out.u32 == 4294967295u);
    CHECK(out.i64 == std::numeric_limits<int64_t>::max());
    CHECK(out.u64 == std::numeric_limits<uint64_t>::max());

    CHECK(read_error<Narrow>(R"({"u8":300})") == "u8: 300 is out of range [0, 255]");
    CHECK(read_error<Narrow>(R"({"u8":-1})") == "u8: -1 is out of range [0, 255]");
    CHECK(read_error<Narrow>(R"({"i8":-129})") == "i8: -129 is out of range [-128, 127]");
    CHECK(read_error<Narrow>(R"({"i8":128})") == "i8: 128 is out of range [-128, 127]");
    CHECK(read_error<Narrow>(R"({"u32":4294967296})").find("u32: 4294967296 is out of range") == 0);
    CHECK(read_error<Narrow>(R"({"i64":9223372036854775808})")
              .find("i64: 9223372036854775808 is out of range") == 0);
    CHECK(read_error<Narrow>(R"({"u64":18446744073709551616})")
              .find("u64: 18446744073709551616 is out of range") == 0);
    CHECK(read_error<Narrow>(R"({"u64":-5})").find("u64: -5 is out of range") == 0);
    CHECK(read_error<Narrow>(R"({"u32":1.5})") == "u32: expected an integer, got 1.5");
    CHECK(read_error<Narrow>(R"({"u32":1e3})") == "u32: expected an integer, got 1e3");
    CHECK(read_error<Narrow>(R"({"i64":"12"})") == "i64: expected an integer, got a string");
    CHECK(read_error<Narrow>(R"({"color":101})") == "");  // any underlying value reads
    CHECK(read_error<Narrow>(R"({"color":128})") == "color: 128 is out of range [-128, 127]");
    CHECK(read_error<Narrow>(R"({"f":1e39})") == "f: 1e+39 is out of range for a float");
    CHECK(read_error<Narrow>(R"({"f":-3.5e38})").find("out of range for a float") !=
          std::string::npos);
  }

  TEST_CASE("NaN and infinity are refused on write, naming the member") {
    Item item{"x", 1, std::nan("")};
    Result<std::string> json = to_json(item);
    REQUIRE_FALSE(json.ok());
    CHECK(json.status().code() == Code::kInvalidArgument);
    CHECK_MESSAGE(json.status().message().find("price: nan cannot be written") == 0,
                  json.status().message());
    Order order;
    order.items = {{"a", 1, 1}, {"b", 1, -INFINITY}};
    json = to_json(order);
    REQUIRE_FALSE(json.ok());
    CHECK(json.status().message().find("items[1].price: -inf") == 0);
    Everything e;
    e.f = std::numeric_limits<float>::infinity();
    CHECK_FALSE(to_json(e).ok());
    CHECK(read_error<double>("NaN") != "");
  }

  TEST_CASE("doubles and floats read back bit for bit") {
    std::mt19937_64 rng(42);
    std::vector<double> doubles = {0.0,      -0.0, DBL_MAX, -DBL_MAX, DBL_MIN,
                                   4.9e-324, 0.1,  1e21,    1e-7,     123456789012345678.0};
    for (int i = 0; i < 2000; ++i) {
      double d = std::bit_cast<double>(rng());
      if (std::isfinite(d)) doubles.push_back(d);
    }
    for (double d : doubles) {
      double out = 1;
      REQUIRE(from_json(to_json(d).value(), out).ok());
      CHECK(std::bit_cast<uint64_t>(out) == std::bit_cast<uint64_t>(d));
    }
    std::vector<float> floats = {0.0f,    -0.0f,  FLT_MAX, -FLT_MAX,
                                 FLT_MIN, 1e-45f, 0.1f,    16777217.0f};
    for (int i = 0; i < 2000; ++i) {
      float f = std::bit_cast<float>(static_cast<uint32_t>(rng()));
      if (std::isfinite(f)) floats.push_back(f);
    }
    for (float f : floats) {
      float out = 1;
      REQUIRE(from_json(to_json(f).value(), out).ok());
      CHECK(std::bit_cast<uint32_t>(out) == std::bit_cast<uint32_t>(f));
    }
  }

  TEST_CASE("members are matched by name in any order; unknown keys are skipped") {
    Item item;
    REQUIRE(
        from_json(R"({"price":2.5,"unknown":{"deep":[1,{"x":null}]},"qty":3,"more":[],"sku":"s"})",
                  item)
            .ok());
    CHECK(item == Item{"s", 3, 2.5});
    Everything in = sample();
    std::string json = to_json(in).value();
    // Reverse the top-level members' order: same value.
    Everything reordered;
    REQUIRE(from_json(R"({"grid":[["q"]],"i8":5,"flag":true})", reordered).ok());
    CHECK(reordered.grid == std::vector<std::vector<std::string>>{{"q"}});
    CHECK(reordered.i8 == 5);
    CHECK(reordered.flag);
    Everything out;
    REQUIRE(from_json(json, out).ok());
    CHECK(out == in);
  }

  TEST_CASE("absent members keep their defaults; null resets an optional") {
    Small s;
    REQUIRE(from_json(R"({"c":4})", s).ok());
    CHECK(s == Small{7, "default", 4});
    REQUIRE(from_json(R"({"c":null})", s).ok());
    CHECK_FALSE(s.c.has_value());
    REQUIRE(from_json("{}", s).ok());
    CHECK(s == Small{});
    CHECK(read_error<Small>(R"({"a":1,"a":2})") == "");  // a duplicate key: the last one wins
    Small dup;
    REQUIRE(from_json(R"({"a":1,"a":2})", dup).ok());
    CHECK(dup.a == 2);
  }

  TEST_CASE("a wrong JSON type is an error naming the path and what was there") {
    CHECK(read_error<Order>(R"({"items":[{"sku":"a","qty":1},{"sku":"b"},{"sku":5,"qty":1}]})") ==
          "items[2].sku: expected a string, got 5");
    CHECK(read_error<Order>(R"({"items":5})") == "items: expected an array, got 5");
    CHECK(read_error<Order>(R"({"items":[{"sku":"a","qty":true}]})") ==
          "items[0].qty: expected an integer, got a boolean");
    CHECK(read_error<Order>(R"({"labels":{"x":1,"y":"no"}})") ==
          "labels.y: expected an integer, got a string");
    CHECK(read_error<Order>(R"([1,2])") == "expected an object, got an array");
    CHECK(read_error<Order>(R"("text")") == "expected an object, got a string");
    CHECK(read_error<Everything>(R"({"grid":[["a"],["b",null]]})") ==
          "grid[1][1]: expected a string, got null");
    CHECK(read_error<Everything>(R"({"flag":"yes"})") == "flag: expected a boolean, got a string");
    CHECK(read_error<Everything>(R"({"d":{}})") ==
          "d: expected a number (a double), got an object");
    Everything upper;
    REQUIRE(from_json(R"({"id":"3F2B8C1E-9A4D-4E7B-8F61-2C5D0A9E7B13"})", upper).ok());
    CHECK(upper.id == *Uuid::parse("3f2b8c1e-9a4d-4e7b-8f61-2c5d0a9e7b13"));
    CHECK(read_error<Everything>(R"({"id":"3f2b8c1e-9a4d-4e7b-8f61-2c5d0a9e7b1g"})") != "");
    CHECK(read_error<Everything>(R"({"id":"3f2b8c1e-9a4d-4e7b-8f61+2c5d0a9e7b13"})") != "");
    CHECK(read_error<Everything>(R"({"id":"not-a-uuid"})") ==
          R"(id: expected a UUID (8-4-4-4-12 hex digits), got "not-a-uuid")");
    CHECK(read_error<Everything>(R"({"maybe_item":{"qty":-1}})") ==
          "maybe_item.qty: -1 is out of range [0, 4294967295]");
  }

  TEST_CASE("top-level scalars and containers") {
    CHECK(to_json(42).value() == "42");
    CHECK(to_json(std::string("x")).value() == R"("x")");
    CHECK(to_json(std::vector<int>{1, 2}).value() == "[1,2]");
    CHECK(to_json(std::optional<int>()).value() == "null");
    int i = 0;
    CHECK(from_json(" 42 ", i).ok());
    CHECK(i == 42);
    CHECK_FALSE(from_json("42 43", i).ok());
    std::vector<int> v;
    CHECK(from_json("[3,4,5]", v).ok());
    CHECK(v == std::vector<int>{3, 4, 5});
    std::optional<int> o = 5;
    CHECK(from_json("null", o).ok());
    CHECK_FALSE(o.has_value());
    bool b = false;
    CHECK(from_json("true", b).ok());
    CHECK(b);
  }

  TEST_CASE("malformed JSON is an error, never a crash") {
    const std::string json = to_json(sample()).value();
    // Every proper prefix of an object is malformed.
    for (size_t n = 0; n < json.size(); ++n) {
      Everything out;
      Status s = from_json(std::string_view(json).substr(0, n), out);
      CHECK_MESSAGE(!s.ok(), "prefix of " << n << " bytes read: " << json.substr(0, n));
    }
    const std::vector<std::string> bad = {"",
                                          " ",
                                          "{",
                                          "}",
                                          R"({"a":1} x)",
                                          R"({"a":1}})",
                                          R"({"a":1}{})",
                                          R"({"a":1,})",
                                          R"({"a" 1})",
                                          R"({"a":1])",
                                          R"({"a":01})",
                                          R"({"a":-})",
                                          R"({"b":"unterminated})",
                                          "{\"b\":\"\xff\"}",
                                          R"({"b":"bad \x escape"})",
                                          R"({'a':1})",
                                          R"({"a":tru})",
                                          R"({"c":nul})"};
    for (const std::string& text : bad) {
      Small out;
      Status s = from_json(text, out);
      CHECK_MESSAGE(!s.ok(), "read: " << text);
      CHECK(s.code() == Code::kInvalidArgument);
    }
    CHECK(read_error<Small>(R"({"a":1} x)").find("malformed JSON at byte") == 0);
    CHECK(read_error<Small>(R"({"a":1} {})").find("malformed JSON at byte") == 0);
    // Random damage: errors or values, never a crash.
    std::mt19937 rng(7);
    for (int i = 0; i < 3000; ++i) {
      std::string damaged = json;
      for (int k = 0; k < 3; ++k) damaged[rng() % damaged.size()] = static_cast<char>(rng());
      Everything out;
      (void)from_json(damaged, out).ok();
    }
  }

  TEST_CASE("deep nesting in a skipped member is stepped over; cut short, it is an error") {
    const std::string deep = std::string(5000, '[') + std::string(5000, ']');
    Small s;
    Status st = from_json(R"({"a":3,"unknown":)" + deep + R"(,"b":"x"})", s);
    REQUIRE_MESSAGE(st.ok(), st.to_string());
    CHECK(s.a == 3);
    CHECK(s.b == "x");
    CHECK_FALSE(from_json(R"({"a":3,"unknown":)" + deep.substr(0, 9000) + R"(,"b":"x"})", s).ok());
  }

  TEST_CASE("a codec may decode another document while decoding (nested decode)") {
    Envelope in;
    in.before = "before";
    in.wrapped.inner = {"inner", {1, 2, 3}};
    in.after = "after";
    // One nested document far larger than the outer one: the nested decoder
    // grows its buffer while the outer document is still being read.
    Inner big{std::string(100000, 'z'), std::vector<int>(5000, 9)};
    in.more = {Wrapped{{"first", {4}}}, Wrapped{big}, Wrapped{{"last", {}}}};
    const std::string json = to_json(in).value();
    for (int round = 0; round < 3; ++round) {  // again, with the pool's decoders reused
      Envelope out;
      Status s = from_json(json, out);
      REQUIRE_MESSAGE(s.ok(), s.to_string());
      CHECK(out.before == "before");
      CHECK(out.wrapped.inner == in.wrapped.inner);
      CHECK(out.after == "after");
      REQUIRE(out.more.size() == 3);
      CHECK(out.more[0].inner == in.more[0].inner);
      CHECK(out.more[1].inner == big);
      CHECK(out.more[2].inner.name == "last");
    }
  }

  TEST_CASE("a JsonDecoder refuses to be re-entered and stays usable") {
    JsonDecoder decoder;
    Small outer;
    Status inner_status;
    Status s = decoder.parse(R"({"a":1,"b":"x"})", [&](JsonValue& root) -> Status {
      inner_status = decoder.read(R"({"a":2})", outer);
      return json_read(root, outer);
    });
    CHECK(s.ok());
    CHECK_FALSE(inner_status.ok());
    CHECK(inner_status.message().find("inside its own callback") != std::string::npos);
    CHECK(outer.a == 1);
    CHECK(outer.b == "x");
    Item item;
    REQUIRE(decoder.read(R"({"sku":"again"})", item).ok());
    CHECK(item.sku == "again");
    // A callback that leaves the root unread: fine, and trailing bytes are
    // still found.
    CHECK(decoder.parse(R"({"a":[1,2]})", [](JsonValue&) { return Status(); }).ok());
    CHECK(decoder.parse("7", [](JsonValue&) { return Status(); }).ok());
    CHECK_FALSE(decoder.parse(R"({"a":1} 2)", [](JsonValue&) { return Status(); }).ok());
  }

  TEST_CASE("JsonValue's iteration and getters, for custom readers") {
    JsonDecoder decoder;
    std::vector<std::string> seen;
    Status s = decoder.parse(R"({"a":[1,"two",null,{"k":true}],"b":-1.5})", [&](JsonValue& root) {
      return root.for_each_field([&](std::string_view key, JsonValue& value) -> Status {
        seen.push_back(std::string(key) + "@" + value.path());
        if (key == "b") {
          double d = 0;
          EVENTSOURCE_RETURN_IF_ERROR(value.get_double(d));
          CHECK(d == -1.5);
          return Status();
        }
        return value.for_each_element([&](JsonValue& element) -> Status {
          JsonType t;
          EVENTSOURCE_RETURN_IF_ERROR(element.type(t));
          seen.push_back(element.path());
          if (t == JsonType::kNull) CHECK(element.is_null());
          if (t == JsonType::kObject) {
            return element.for_each_field([&](std::string_view, JsonValue& inner) {
              seen.push_back(inner.path());
              return inner.error("custom complaint");
            });
          }
          return Status();
        });
      });
    });
    CHECK(s.message() == "a[3].k: custom complaint");
    CHECK(seen == std::vector<std::string>{"a@a", "a[0]", "a[1]", "a[2]", "a[3]", "a[3].k"});
  }

  TEST_CASE("an exception from a custom reader or writer becomes an error") {
    HasThrowing h;
    Result<std::string> json = to_json(h);
    REQUIRE_FALSE(json.ok());
    CHECK(json.status().message().find("writer exploded") != std::string::npos);
    std::string out = "kept";
    CHECK_FALSE(to_json(h, out).ok());
    CHECK(out.empty());  // to_json replaces: nothing half-written is left
    Status s = from_json(R"({"a":1,"t":2})", h);
    REQUIRE_FALSE(s.ok());
    CHECK(s.message().find("reader exploded") != std::string::npos);
    // The thread's decoders are fine afterwards.
    Item item;
    CHECK(from_json(R"({"sku":"after"})", item).ok());
    CHECK(item.sku == "after");
  }

  TEST_CASE("structs with no members, and with 40") {
    CHECK(round_trip(Empty{}) == Empty{});
    Wide w;
    w.m0 = 1;
    w.m31 = 31;
    w.m39 = 39;
    CHECK(round_trip(w) == w);
    CHECK(to_json(w).value().find(R"("m39":39})") != std::string::npos);
  }

  TEST_CASE("JsonWriter misuse is an error, and the output is left as it was") {
    {
      std::string out = "prefix:";
      JsonWriter w(out);
      w.start_object();
      w.int64(1);  // no key
      CHECK_FALSE(w.ok());
      CHECK(w.status().message().find("call key() first") != std::string::npos);
      CHECK_FALSE(w.finish().ok());
      CHECK(out == "prefix:");
    }
    {
      std::string out = "prefix:";
      {
        JsonWriter w(out);
        w.start_array();
        w.int64(1);
        w.end_array();
        CHECK(w.finish().ok());
      }
      CHECK(out == "prefix:[1]");  // appends
    }
    {
      JsonWriter w;
      w.start_object();
      w.key("k");
      w.start_array();
      w.end_object();
      CHECK(w.status().message() == "k[0]: end_object() in an array (call end_array())");
    }
    {
      JsonWriter w;
      w.start_object();
      w.key("a");
      w.key("b");
      CHECK(w.status().message() == "a: key() where the previous key's value belongs");
    }
    {
      JsonWriter w;
      w.int64(1);
      w.int64(2);
      CHECK(w.status().message() == "a second value after the root value");
    }
    {
      JsonWriter w;
      w.start_object();
      w.key("open");
      w.start_array();
      CHECK(w.finish().message().find("still open") != std::string::npos);
    }
    {
      JsonWriter w;
      CHECK_FALSE(w.finish().ok());  // nothing written
    }
    {
      JsonWriter w;
      w.start_object();
      w.key("s");
      w.string("v");
      w.end_object();
      Result<std::string> text = w.take();
      REQUIRE(text.ok());
      CHECK(*text == R"({"s":"v"})");
      w.null();  // after finish: ignored, the JSON is already out
    }
  }

  TEST_CASE("decodes from many threads at once") {
    const Everything in = sample();
    const std::string json = to_json(in).value();
    std::vector<std::thread> threads;
    std::vector<int> failures(4, 0);
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < 500; ++i) {
          Everything out;
          if (!from_json(json, out).ok() || !(out == in)) ++failures[t];
          std::string again;
          if (!to_json(out, again).ok() || again != json) ++failures[t];
        }
      });
    }
    for (auto& th : threads) th.join();
    CHECK(failures == std::vector<int>(4, 0));
  }
}

}  // namespace
}  // namespace eventsource
