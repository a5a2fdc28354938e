// JSON for api/: the default event codec. JsonWriter writes JSON through
// RapidJSON's Writer, JsonValue reads it through simdjson's On-Demand parser;
// json_write / json_read map C++ values onto them, and EVENTSOURCE_JSON
// declares a struct's mapping in one line. Neither library shows here (their
// headers are large): the templates below are thin and end in json.cc.
//
// Supported out of the box: bool, every integer type (range-checked on read:
// 300 into a uint8_t is an error), float, double (NaN and infinity are
// refused: JSON has neither), std::string, Uuid (as its 8-4-4-4-12 string),
// enums (as their underlying integer), std::vector<T>, std::optional<T>
// (null or absent <-> nullopt), std::map<std::string, T>, and structs mapped
// with EVENTSOURCE_JSON. Other types plug in with their own
// `Status json_read(JsonValue&, T&)` and `void json_write(JsonWriter&, const T&)`
// next to the type, found by argument-dependent lookup.
//
// Example:
//   struct OrderPlaced { Uuid order_id; std::string customer; int64_t total = 0; };
//   EVENTSOURCE_JSON(OrderPlaced, order_id, customer, total)
//   Result<std::string> json = to_json(event);
//   Status s = from_json(json.value(), event);
//
// Errors are values (kInvalidArgument) naming the path and what was found
// ("items[2].sku: expected a string, got 5"); no exception escapes these
// calls: one thrown by a custom json_read/json_write is caught at
// to_json/from_json/JsonDecoder::parse. The output is compact, members in
// declaration order; reading takes members in any order.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "eventsource/status.h"
#include "eventsource/types.h"

namespace eventsource {

// A non-owning reference to a callable: a function pointer and a context
// pointer, so that compiled code can call back into a template's lambda
// without std::function's allocation. REQUIRES: the callable outlives the
// FunctionRef (pass lambdas straight to the call that takes one).
template <class Signature>
class FunctionRef;

namespace json_detail {
// A callable (not a function: pass &f) that a FunctionRef `Self` may refer to.
template <class F, class Self, class R, class... Args>
concept FunctionRefTarget =
    !std::is_same_v<std::remove_cvref_t<F>, Self> &&
    !std::is_function_v<std::remove_reference_t<F>> && std::is_invocable_r_v<R, F&, Args...>;
}  // namespace json_detail

template <class R, class... Args>
class FunctionRef<R(Args...)> {
 public:
  template <json_detail::FunctionRefTarget<FunctionRef, R, Args...> F>
  FunctionRef(F&& f) noexcept  // NOLINT: implicit by design, like std::function
      : object_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
        call_(&invoke<std::remove_reference_t<F>>) {}

  R operator()(Args... args) const { return call_(object_, std::forward<Args>(args)...); }

 private:
  template <class F>
  static R invoke(void* object, Args... args) {
    return std::invoke(*static_cast<F*>(object), std::forward<Args>(args)...);
  }

  void* object_;
  R (*call_)(void*, Args...);
};

enum class JsonType : uint8_t { kNull, kBool, kNumber, kString, kArray, kObject };

class JsonValue;
class JsonWriter;

namespace json_detail {
struct Access;  // json.cc's way in to the private parts below

// Where a value sits in its document, for error messages: a chain of nodes
// on the stack of the calls iterating the enclosing objects and arrays.
struct PathNode {
  const PathNode* parent;
  std::string_view key;  // an object member's name, unless is_index
  size_t index;          // an array element's index, if is_index
  bool is_index;
};
}  // namespace json_detail

// Writes one JSON value (usually an object) by appending to a std::string.
// Misuse (a value where a key belongs, end_object() in an array, a second
// root value) and unwritable values (NaN, infinity, invalid UTF-8) put the
// writer in an error state instead of writing: later calls do nothing, and
// status()/finish() report the first error with its path
// ("items[1].price: nan cannot be written in JSON (no NaN or infinity)").
// Strings must be UTF-8 (checked: anything else could be written but never
// read back). Not copyable or movable; callers serialize (one thread).
class JsonWriter {
 public:
  // Writes into a string of its own: take() hands it over.
  JsonWriter();
  // Appends to `out` (its content so far stays). REQUIRES: `out` outlives
  // the writer and is not touched until finish() or the destructor, which
  // trim it to the JSON written, or back to its old length after an error.
  explicit JsonWriter(std::string& out);
  ~JsonWriter();
  JsonWriter(const JsonWriter&) = delete;
  JsonWriter& operator=(const JsonWriter&) = delete;

  void start_object();
  void key(std::string_view name);  // REQUIRES: in an object, before each member's value
  void end_object();
  void start_array();
  void end_array();
  void string(std::string_view text);
  void int64(int64_t value);
  void uint64(uint64_t value);
  // Shortest text that reads back as the same double. NaN/inf: error.
  void number(double value);
  // Shortest text that reads back as the same float ("0.1", not "0.100000001").
  void float32(float value);
  void boolean(bool value);
  void null();

  bool ok() const { return error_.ok(); }
  // The first error, or ok.
  const Status& status() const { return error_; }
  // Ends the writing: an error unless exactly one complete value was
  // written. Trims the output to it (after an error: back to where it
  // started). Calls after finish() are errors. Idempotent.
  Status finish();
  // finish(), then the JSON text. REQUIRES: the writer owns its string
  // (default-constructed); otherwise the result is in the caller's string.
  Result<std::string> take();

 private:
  friend struct json_detail::Access;
  bool begin_value();
  void fail(std::string_view message);

  // RapidJSON's Writer and its output stream, constructed in place by
  // json.cc (which checks the size): no allocation for the writer itself.
  alignas(16) unsigned char impl_[128];
  std::string owned_;
  Status error_;
  bool finished_ = false;
};

// One value of a document being parsed; handed out by JsonDecoder::parse and
// by the iteration calls, and valid only during the callback that receives
// it. A value is read once, forward only (simdjson's On-Demand model): read
// it with one get_* call or one iteration; a failed get_* leaves it unread.
// Errors name the value's path and what was found.
class JsonValue {
 public:
  JsonValue(const JsonValue&) = delete;
  JsonValue& operator=(const JsonValue&) = delete;

  Status get_string(std::string& out);
  // The unescaped text, valid until the parse call that produced this value
  // returns (it points into the decoder's buffer).
  Status get_string_view(std::string_view& out);
  Status get_int64(int64_t& out);
  Status get_uint64(uint64_t& out);
  Status get_double(double& out);
  Status get_bool(bool& out);
  // True (and the null is read) if the value is null; false otherwise, the
  // value still unread.
  bool is_null();
  Status type(JsonType& out);

  using FieldCallback = FunctionRef<Status(std::string_view key, JsonValue& value)>;
  using ElementCallback = FunctionRef<Status(JsonValue& element)>;
  // Calls `fn` for each member in document order (a duplicate key comes
  // twice); a member whose value `fn` leaves unread is skipped. Stops at
  // the first error, of the JSON or of `fn`, and returns it.
  Status for_each_field(FieldCallback fn);
  Status for_each_element(ElementCallback fn);

  // "items[2].sku", or "" at the root.
  std::string path() const;
  // kInvalidArgument "<path>: <message>", for custom json_read functions.
  Status error(std::string_view message) const;

 private:
  friend struct json_detail::Access;
  JsonValue() = default;

  // The simdjson::ondemand::value, on the stack of the call iterating the
  // parent (pointed to, not copied: copying it cost a store-forwarding
  // stall per member); unused at the root.
  void* value_ = nullptr;
  void* decoder_ = nullptr;                      // the JsonDecoder::Impl parsing the document
  const json_detail::PathNode* path_ = nullptr;  // nullptr at the root
  bool root_ = false;  // the document's root: read through the document, not value_
};

// Parses JSON documents, reusing one padded buffer and one simdjson parser
// (simdjson reads up to 64 bytes past the end of its input, so every input
// is copied into the buffer first). A decoder parses one document at a
// time: calling parse() again from inside its callback is an error, not a
// clobbered buffer; a nested decode needs another decoder (from_json takes
// one from a small per-thread pool, so nesting it is safe). Movable; callers
// serialize (one thread at a time).
class JsonDecoder {
 public:
  JsonDecoder();
  ~JsonDecoder();
  JsonDecoder(JsonDecoder&&) noexcept;
  JsonDecoder& operator=(JsonDecoder&&) noexcept;

  // Parses `json` and calls `fn` with its root value. Errors: malformed
  // JSON (naming the byte offset), anything after the root value, and
  // whatever `fn` returns; an exception from `fn` is caught and returned as
  // kInvalidArgument.
  Status parse(std::string_view json, FunctionRef<Status(JsonValue&)> fn);
  template <class T>
  Status read(std::string_view json, T& out);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

namespace json_detail {

// One mapped member: its JSON name and how to read and write it.
struct Field {
  std::string_view name;
  Status (*read)(JsonValue& value, void* object);
  void (*write)(JsonWriter& writer, const void* object);
};
struct FieldTable {
  std::string_view type_name;
  const Field* fields;
  size_t size;
};
// The argument of the function EVENTSOURCE_JSON declares: found by ADL in
// T's namespace, and never through a conversion (a struct derived from a
// mapped one is not mapped by accident).
template <class T>
struct Tag {};

// The compiled calls the templates end in.
Status read_signed(JsonValue& v, int64_t min, int64_t max, int64_t& out);
Status read_unsigned(JsonValue& v, uint64_t max, uint64_t& out);
Status read_float(JsonValue& v, float& out);
Status read_object(JsonValue& v, const FieldTable& table, void* object);
void write_object(JsonWriter& w, const FieldTable& table, const void* object);
// Appends `fn`'s JSON to `out` (after an error `out` is as before); catches
// what `fn` throws.
Status write_json(std::string& out, FunctionRef<void(JsonWriter&)> fn);
// Parses `json` with a decoder from this thread's pool (a nested call takes
// another one); catches what `fn` throws.
Status read_json(std::string_view json, FunctionRef<Status(JsonValue&)> fn);

template <class T>
concept Integer = std::is_integral_v<T> && !std::is_same_v<T, bool>;
template <class T>
concept Enum = std::is_enum_v<T>;

template <class T>
concept Mapped = requires {
  { eventsource_json_fields(Tag<T>{}) } -> std::same_as<const FieldTable&>;
};

}  // namespace json_detail

// ---- json_write / json_read for the supported types ------------------------
// Declared first, defined after, so that they find one another in any
// nesting (std::vector<std::optional<Item>>).

template <std::same_as<bool> T>
void json_write(JsonWriter& w, T value);
template <json_detail::Integer T>
void json_write(JsonWriter& w, T value);
template <std::floating_point T>
void json_write(JsonWriter& w, T value);
template <json_detail::Enum T>
void json_write(JsonWriter& w, T value);
void json_write(JsonWriter& w, std::string_view value);
void json_write(JsonWriter& w, const Uuid& value);
template <class T, class A>
void json_write(JsonWriter& w, const std::vector<T, A>& value);
template <class T>
void json_write(JsonWriter& w, const std::optional<T>& value);
template <class T, class C, class A>
void json_write(JsonWriter& w, const std::map<std::string, T, C, A>& value);
template <json_detail::Mapped T>
void json_write(JsonWriter& w, const T& value);

Status json_read(JsonValue& v, bool& out);
template <json_detail::Integer T>
Status json_read(JsonValue& v, T& out);
Status json_read(JsonValue& v, float& out);
Status json_read(JsonValue& v, double& out);
template <json_detail::Enum T>
Status json_read(JsonValue& v, T& out);
Status json_read(JsonValue& v, std::string& out);
Status json_read(JsonValue& v, Uuid& out);
template <class T, class A>
Status json_read(JsonValue& v, std::vector<T, A>& out);
template <class T>
Status json_read(JsonValue& v, std::optional<T>& out);
template <class T, class C, class A>
Status json_read(JsonValue& v, std::map<std::string, T, C, A>& out);
template <json_detail::Mapped T>
Status json_read(JsonValue& v, T& out);

// Whether T has both directions of a JSON mapping.
template <class T>
concept JsonCodable = requires(JsonWriter& w, JsonValue& v, const T& in, T& out) {
  json_write(w, in);
  { json_read(v, out) } -> std::same_as<Status>;
};

template <std::same_as<bool> T>
void json_write(JsonWriter& w, T value) {
  w.boolean(value);
}

template <json_detail::Integer T>
void json_write(JsonWriter& w, T value) {
  if constexpr (std::is_signed_v<T>) {
    w.int64(static_cast<int64_t>(value));
  } else {
    w.uint64(static_cast<uint64_t>(value));
  }
}

template <std::floating_point T>
void json_write(JsonWriter& w, T value) {
  static_assert(!std::is_same_v<T, long double>, "long double has no JSON mapping");
  if constexpr (std::is_same_v<T, float>) {
    w.float32(value);
  } else {
    w.number(value);
  }
}

template <json_detail::Enum T>
void json_write(JsonWriter& w, T value) {
  json_write(w, static_cast<std::underlying_type_t<T>>(value));
}

template <class T, class A>
void json_write(JsonWriter& w, const std::vector<T, A>& value) {
  w.start_array();
  for (const auto& element : value) json_write(w, static_cast<const T&>(element));
  w.end_array();
}

template <class T>
void json_write(JsonWriter& w, const std::optional<T>& value) {
  if (value) {
    json_write(w, *value);
  } else {
    w.null();
  }
}

template <class T, class C, class A>
void json_write(JsonWriter& w, const std::map<std::string, T, C, A>& value) {
  w.start_object();
  for (const auto& [k, v] : value) {
    w.key(k);
    json_write(w, v);
  }
  w.end_object();
}

template <json_detail::Mapped T>
void json_write(JsonWriter& w, const T& value) {
  json_detail::write_object(w, eventsource_json_fields(json_detail::Tag<T>{}), &value);
}

template <json_detail::Integer T>
Status json_read(JsonValue& v, T& out) {
  if constexpr (std::is_signed_v<T>) {
    int64_t x = 0;
    EVENTSOURCE_RETURN_IF_ERROR(json_detail::read_signed(v, std::numeric_limits<T>::min(),
                                                         std::numeric_limits<T>::max(), x));
    out = static_cast<T>(x);
  } else {
    uint64_t x = 0;
    EVENTSOURCE_RETURN_IF_ERROR(json_detail::read_unsigned(v, std::numeric_limits<T>::max(), x));
    out = static_cast<T>(x);
  }
  return Status();
}

template <json_detail::Enum T>
Status json_read(JsonValue& v, T& out) {
  std::underlying_type_t<T> x{};
  EVENTSOURCE_RETURN_IF_ERROR(json_read(v, x));
  out = static_cast<T>(x);
  return Status();
}

template <class T, class A>
Status json_read(JsonValue& v, std::vector<T, A>& out) {
  out.clear();
  return v.for_each_element([&out](JsonValue& element) -> Status {
    if constexpr (std::is_same_v<T, bool>) {  // vector<bool> has no bool& to read into
      bool b = false;
      EVENTSOURCE_RETURN_IF_ERROR(json_read(element, b));
      out.push_back(b);
      return Status();
    } else {
      return json_read(element, out.emplace_back());
    }
  });
}

template <class T>
Status json_read(JsonValue& v, std::optional<T>& out) {
  if (v.is_null()) {
    out.reset();
    return Status();
  }
  return json_read(v, out.emplace());
}

template <class T, class C, class A>
Status json_read(JsonValue& v, std::map<std::string, T, C, A>& out) {
  out.clear();
  return v.for_each_field([&out](std::string_view key, JsonValue& value) -> Status {
    T item{};
    EVENTSOURCE_RETURN_IF_ERROR(json_read(value, item));
    out.insert_or_assign(std::string(key), std::move(item));
    return Status();
  });
}

// Members absent from the JSON keep the value they had (their defaults, for
// a fresh object: adding a member needs no upcaster); unknown keys are
// skipped; the order of the keys does not matter.
template <json_detail::Mapped T>
Status json_read(JsonValue& v, T& out) {
  return json_detail::read_object(v, eventsource_json_fields(json_detail::Tag<T>{}), &out);
}

template <class T>
Status JsonDecoder::read(std::string_view json, T& out) {
  return parse(json, [&out](JsonValue& v) { return json_read(v, out); });
}

// ---- Top-level helpers ------------------------------------------------------

// Replaces `out`'s content with `value`'s JSON (reusing its capacity).
template <class T>
Status to_json(const T& value, std::string& out) {
  out.clear();
  return json_detail::write_json(out, [&value](JsonWriter& w) { json_write(w, value); });
}

template <class T>
Result<std::string> to_json(const T& value) {
  std::string out;
  EVENTSOURCE_RETURN_IF_ERROR(to_json(value, out));
  return out;
}

// Reads `json` into `out`. For a struct, members absent from the JSON keep
// the value `out` had. On error `out` may be partly assigned.
template <class T>
Status from_json(std::string_view json, T& out) {
  return json_detail::read_json(json, [&out](JsonValue& v) { return json_read(v, out); });
}

namespace json_detail {
template <class C, auto Member>
Status read_member(JsonValue& v, void* object) {
  return json_read(v, static_cast<C*>(object)->*Member);
}
template <class C, auto Member>
void write_member(JsonWriter& w, const void* object) {
  json_write(w, static_cast<const C*>(object)->*Member);
}
}  // namespace json_detail

}  // namespace eventsource

// ---- EVENTSOURCE_JSON -------------------------------------------------------
// EVENTSOURCE_JSON(Type, member1, member2, ...) at namespace scope, in the
// namespace of Type, declares Type's JSON mapping: an object whose keys are
// the member names, written in this order. It defines an inline function
// that argument-dependent lookup finds and that returns a static table of
// {name, reader, writer}. Up to 256 members; none is fine too.

#define EVENTSOURCE_JSON(Type, ...)                                                              \
  [[maybe_unused]] inline const ::eventsource::json_detail::FieldTable& eventsource_json_fields( \
      ::eventsource::json_detail::Tag<Type>) {                                                   \
    static constexpr ::eventsource::json_detail::Field kFields[] = {                             \
        EVENTSOURCE_PP_FOR_EACH(EVENTSOURCE_JSON_FIELD_, Type, __VA_ARGS__){}};                  \
    static constexpr ::eventsource::json_detail::FieldTable kTable{                              \
        #Type, kFields, sizeof(kFields) / sizeof(kFields[0]) - 1};                               \
    return kTable;                                                                               \
  }

#define EVENTSOURCE_JSON_FIELD_(Type, member)                              \
  {#member, &::eventsource::json_detail::read_member<Type, &Type::member>, \
   &::eventsource::json_detail::write_member<Type, &Type::member>},

// EVENTSOURCE_PP_FOR_EACH(m, ctx, a, b, c) expands to m(ctx, a) m(ctx, b)
// m(ctx, c): __VA_OPT__ recursion, one step per rescan, 4^4 = 256 rescans.
#define EVENTSOURCE_PP_PARENS ()
#define EVENTSOURCE_PP_EXPAND(...) \
  EVENTSOURCE_PP_EXPAND4(          \
      EVENTSOURCE_PP_EXPAND4(EVENTSOURCE_PP_EXPAND4(EVENTSOURCE_PP_EXPAND4(__VA_ARGS__))))
#define EVENTSOURCE_PP_EXPAND4(...) \
  EVENTSOURCE_PP_EXPAND3(           \
      EVENTSOURCE_PP_EXPAND3(EVENTSOURCE_PP_EXPAND3(EVENTSOURCE_PP_EXPAND3(__VA_ARGS__))))
#define EVENTSOURCE_PP_EXPAND3(...) \
  EVENTSOURCE_PP_EXPAND2(           \
      EVENTSOURCE_PP_EXPAND2(EVENTSOURCE_PP_EXPAND2(EVENTSOURCE_PP_EXPAND2(__VA_ARGS__))))
#define EVENTSOURCE_PP_EXPAND2(...) \
  EVENTSOURCE_PP_EXPAND1(           \
      EVENTSOURCE_PP_EXPAND1(EVENTSOURCE_PP_EXPAND1(EVENTSOURCE_PP_EXPAND1(__VA_ARGS__))))
#define EVENTSOURCE_PP_EXPAND1(...) __VA_ARGS__
#define EVENTSOURCE_PP_FOR_EACH(macro, ctx, ...) \
  __VA_OPT__(EVENTSOURCE_PP_EXPAND(EVENTSOURCE_PP_FOR_EACH_STEP(macro, ctx, __VA_ARGS__)))
#define EVENTSOURCE_PP_FOR_EACH_STEP(macro, ctx, first, ...) \
  macro(ctx, first)                                          \
      __VA_OPT__(EVENTSOURCE_PP_FOR_EACH_AGAIN EVENTSOURCE_PP_PARENS(macro, ctx, __VA_ARGS__))
#define EVENTSOURCE_PP_FOR_EACH_AGAIN() EVENTSOURCE_PP_FOR_EACH_STEP
