// The JSON codec's compiled half (json.h): JsonWriter over RapidJSON's
// Writer, JsonValue and JsonDecoder over simdjson's On-Demand parser, the
// per-thread decoder pool, and the readers and writers that json.h's
// templates end in. The only file of the library that includes either
// library's headers.
#include "eventsource/json.h"

#include <fmt/format.h>
#include <rapidjson/writer.h>  // warning-free with GCC 12 and clang 14 at -Wall -Wextra
#include <simdjson.h>

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <exception>
#include <new>

namespace eventsource {

namespace od = simdjson::ondemand;

namespace {

// ---- Writing -----------------------------------------------------------------

// RapidJSON's output stream, writing straight into the caller's string:
// the string is grown to its capacity and written through a pointer, then
// trimmed to what was written (no intermediate buffer, no copy, and a
// reused string's capacity is reused).
class Sink {
 public:
  using Ch = char;

  explicit Sink(std::string* s) : s_(s), start_(s->size()) { cur_ = end_ = s->data() + start_; }

  void Put(char c) {
    if (cur_ == end_) grow(1);
    *cur_++ = c;
  }
  void Flush() {}
  void reserve(size_t n) {
    if (static_cast<size_t>(end_ - cur_) < n) grow(n);
  }
  void put_unsafe(char c) { *cur_++ = c; }
  // Bulk writes: the caller fills [cursor(), cursor() + reserved) through a
  // local pointer and hands back the end (a member pointer written byte by
  // byte would be reloaded after every byte: a char store may alias it).
  char* cursor() { return cur_; }
  void advance_to(char* end) { cur_ = end; }

  // What this writer has written so far.
  std::string_view written() const { return {s_->data() + start_, used() - start_}; }
  // Cuts the string to what was written (keep) or to where it began.
  void trim(bool keep) {
    s_->resize(keep ? used() : start_);
    cur_ = end_ = s_->data() + s_->size();
  }

 private:
  size_t used() const { return static_cast<size_t>(cur_ - s_->data()); }
  void grow(size_t n) {
    const size_t used = this->used();
    size_t size = std::max(used + n, s_->capacity());
    if (size > s_->capacity()) size = std::max({size, 2 * s_->capacity(), size_t{256}});
    s_->resize(size);
    cur_ = s_->data() + used;
    end_ = s_->data() + s_->size();
  }

  std::string* s_;
  size_t start_;
  char* cur_;
  char* end_;
};

// Found by argument-dependent lookup from RapidJSON's Writer, in place of
// its generic versions (which would call Put() for every byte).
[[maybe_unused]] inline void PutReserve(Sink& sink, size_t n) { sink.reserve(n); }
[[maybe_unused]] inline void PutUnsafe(Sink& sink, char c) { sink.put_unsafe(c); }

// The level stack's allocator: stateless, shared, so that the stack does
// not allocate an allocator object of its own.
rapidjson::CrtAllocator& stack_allocator() {
  static rapidjson::CrtAllocator allocator;
  return allocator;
}

enum class Place { kRoot, kRootDone, kObjectKey, kObjectValue, kArray };

using RapidWriter = rapidjson::Writer<Sink, rapidjson::UTF8<>, rapidjson::UTF8<>,
                                      rapidjson::CrtAllocator, rapidjson::kWriteNoFlags>;

// How a byte is written inside a JSON string, as RapidJSON's Writer does it:
// 0 = as is, 'u' = \u00XX, else a backslash and that letter.
constexpr std::array<char, 256> kEscapes = [] {
  std::array<char, 256> e{};
  for (int c = 0; c < 0x20; ++c) e[c] = 'u';
  e['\b'] = 'b';
  e['\t'] = 't';
  e['\n'] = 'n';
  e['\f'] = 'f';
  e['\r'] = 'r';
  e['"'] = '"';
  e['\\'] = '\\';
  return e;
}();

// RapidJSON's Writer, telling where the next call writes (its level stack
// knows, and checking it first keeps RapidJSON's asserts from ever firing),
// with faster strings and numbers: RapidJSON places them (separators, level
// counts) and formats the numbers (i64toa, u64toa, Grisu2), but the bytes
// are copied in here through a local pointer rather than one stream call per
// byte, which cost ~2 ns a byte.
class Writer : public RapidWriter {
 public:
  explicit Writer(Sink& sink) : RapidWriter(sink, &stack_allocator(), kLevels) {}

  Place place() const {
    if (level_stack_.Empty()) return hasRoot_ ? Place::kRootDone : Place::kRoot;
    const Level* level = level_stack_.template Top<Level>();
    if (level->inArray) return Place::kArray;
    return level->valueCount % 2 == 0 ? Place::kObjectKey : Place::kObjectValue;
  }

  // A string value or an object's key (both are strings to RapidJSON).
  // `plain`: the caller knows no byte needs escaping (a mapping's names).
  void string(std::string_view text, bool plain) {
    Prefix(rapidjson::kStringType);
    os_->reserve(2 + escaped_size(text, plain));
    char* out = os_->cursor();
    *out++ = '"';
    if (plain) {
      for (char ch : text) *out++ = ch;  // short names: a loop beats a call to memcpy
    } else {
      static constexpr char kHex[] = "0123456789ABCDEF";
      for (char ch : text) {
        const auto c = static_cast<unsigned char>(ch);
        const char escape = kEscapes[c];
        if (escape == 0) {
          *out++ = ch;
          continue;
        }
        *out++ = '\\';
        *out++ = escape;
        if (escape == 'u') {
          *out++ = '0';
          *out++ = '0';
          *out++ = kHex[c >> 4];
          *out++ = kHex[c & 15];
        }
      }
    }
    *out++ = '"';
    os_->advance_to(out);
    EndValue(true);
  }

  // An upper bound of the bytes `text` takes escaped: exact for long
  // strings, so that one long string does not leave the output six times
  // its size.
  static size_t escaped_size(std::string_view text, bool plain) {
    if (plain) return text.size();
    if (text.size() < 1024) return text.size() * 6;  // "\u00XX" per byte at worst
    size_t n = text.size();
    for (char ch : text) {
      const char escape = kEscapes[static_cast<unsigned char>(ch)];
      if (escape != 0) n += escape == 'u' ? 5 : 1;
    }
    return n;
  }

  void int64(int64_t value) {
    char text[24];
    number(text, rapidjson::internal::i64toa(value, text));
  }
  void uint64(uint64_t value) {
    char text[24];
    number(text, rapidjson::internal::u64toa(value, text));
  }
  // REQUIRES: finite.
  void float64(double value) {
    char text[32];
    number(text, rapidjson::internal::dtoa(value, text, maxDecimalPlaces_));
  }
  void number(const char* text, const char* end) {
    Prefix(rapidjson::kNumberType);
    const auto n = static_cast<size_t>(end - text);
    os_->reserve(n);
    char* out = os_->cursor();
    for (const char* p = text; p != end; ++p) *out++ = *p;
    os_->advance_to(out);
    EndValue(true);
  }

 private:
  static constexpr size_t kLevels = 8;  // initial depth; the stack grows beyond
};

struct WriterImpl {
  explicit WriterImpl(std::string* out) : sink(out), writer(sink) {}
  Sink sink;
  Writer writer;
};

// Whether `s` is UTF-8: ASCII eight bytes at a time, simdjson's validator
// for the rest. A string that is not UTF-8 could be written, but simdjson
// would refuse the whole document when it is read back.
bool valid_utf8(std::string_view s) {
  const char* p = s.data();
  const size_t n = s.size();
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t word;
    std::memcpy(&word, p + i, 8);
    if (word & 0x8080808080808080ull) return simdjson::validate_utf8(p, n);
  }
  for (; i < n; ++i) {
    if (static_cast<unsigned char>(p[i]) & 0x80) return simdjson::validate_utf8(p, n);
  }
  return true;
}

// The path of the place a writer is at, recovered from the JSON written so
// far (only when there is an error: the writer keeps no path of its own).
std::string path_of_prefix(std::string_view json) {
  struct Frame {
    bool array;
    bool expect_key;  // an object between members
    size_t index;
    std::string_view key;
  };
  std::vector<Frame> frames;
  for (size_t i = 0; i < json.size(); ++i) {
    switch (json[i]) {
      case '{':
        frames.push_back({false, true, 0, {}});
        break;
      case '[':
        frames.push_back({true, false, 0, {}});
        break;
      case '}':
      case ']':
        if (!frames.empty()) frames.pop_back();
        break;
      case ',':
        if (!frames.empty()) {
          if (frames.back().array) {
            ++frames.back().index;
          } else {
            frames.back().expect_key = true;
          }
        }
        break;
      case '"': {
        size_t j = i + 1;
        while (j < json.size() && json[j] != '"') j += json[j] == '\\' ? 2 : 1;
        if (!frames.empty() && !frames.back().array && frames.back().expect_key) {
          frames.back().key = json.substr(i + 1, j - i - 1);
          frames.back().expect_key = false;
        }
        i = j;
        break;
      }
      default:
        break;
    }
  }
  std::string path;
  for (const Frame& f : frames) {
    if (f.array) {
      path += fmt::format("[{}]", f.index);
    } else if (!f.expect_key) {
      if (!path.empty()) path += '.';
      path += f.key;
    }
  }
  return path;
}

// ---- Reading -----------------------------------------------------------------

std::string_view type_phrase(JsonType t) {
  switch (t) {
    case JsonType::kNull:
      return "null";
    case JsonType::kBool:
      return "a boolean";
    case JsonType::kNumber:
      return "a number";
    case JsonType::kString:
      return "a string";
    case JsonType::kArray:
      return "an array";
    case JsonType::kObject:
      return "an object";
  }
  return "a value";
}

JsonType from_simdjson(od::json_type t) {
  switch (t) {
    case od::json_type::array:
      return JsonType::kArray;
    case od::json_type::object:
      return JsonType::kObject;
    case od::json_type::number:
      return JsonType::kNumber;
    case od::json_type::string:
      return JsonType::kString;
    case od::json_type::boolean:
      return JsonType::kBool;
    case od::json_type::null:
      break;
  }
  return JsonType::kNull;
}

// Whether `t` reads as a JSON integer: -?(0|[1-9][0-9]*).
bool integer_text(std::string_view t) {
  if (!t.empty() && t[0] == '-') t.remove_prefix(1);
  if (t.empty() || (t[0] == '0' && t.size() > 1)) return false;
  return std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Uuid::parse's rules (8-4-4-4-12 hex digits, either case), by table: a
// UUID is read with every event that carries one, and this is 4x faster.
constexpr std::array<int8_t, 256> kHexValues = [] {
  std::array<int8_t, 256> v{};
  v.fill(-1);
  for (int c = 0; c < 10; ++c) v['0' + c] = static_cast<int8_t>(c);
  for (int c = 0; c < 6; ++c) {
    v['a' + c] = static_cast<int8_t>(10 + c);
    v['A' + c] = static_cast<int8_t>(10 + c);
  }
  return v;
}();

bool parse_uuid(std::string_view text, Uuid& out) {
  if (text.size() != 36 || text[8] != '-' || text[13] != '-' || text[18] != '-' ||
      text[23] != '-') {
    return false;
  }
  static constexpr uint8_t kDigitAt[16] = {0,  2,  4,  6,  9,  11, 14, 16,
                                           19, 21, 24, 26, 28, 30, 32, 34};
  Uuid u;
  int bad = 0;
  for (size_t i = 0; i < 16; ++i) {
    const int hi = kHexValues[static_cast<unsigned char>(text[kDigitAt[i]])];
    const int lo = kHexValues[static_cast<unsigned char>(text[kDigitAt[i] + 1])];
    bad |= hi | lo;  // negative if either is not a hex digit
    u.bytes[i] = static_cast<uint8_t>((hi & 15) << 4 | (lo & 15));
  }
  if (bad < 0) return false;
  out = u;
  return true;
}

// Member names are short: a loop beats a call to memcmp.
bool same_key(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

constexpr size_t kPoolKeep = 4;              // decoders kept per thread
constexpr size_t kPoolMaxBuffer = 1u << 20;  // a decoder grown past this is not kept
constexpr size_t kMinBuffer = 1024;

}  // namespace

// The parser, the document being read and the padded copy of its text.
struct JsonDecoder::Impl {
  od::parser parser;
  od::document doc;
  std::unique_ptr<char[]> buffer;
  size_t buffer_capacity = 0;  // bytes before the padding
  bool busy = false;           // a parse is under way (re-entry is refused)

  Status parse(std::string_view json, FunctionRef<Status(JsonValue&)> fn);

 private:
  Status parse_unguarded(std::string_view json, FunctionRef<Status(JsonValue&)> fn);
  Status check_end(JsonValue& root, const char* root_start);
};

namespace json_detail {

// json.cc's way into the classes of json.h.
struct Access {
  static_assert(sizeof(WriterImpl) <= sizeof(JsonWriter::impl_), "grow JsonWriter::impl_");
  static_assert(sizeof(WriterImpl) + 64 > sizeof(JsonWriter::impl_), "shrink JsonWriter::impl_");
  static_assert(alignof(WriterImpl) <= 16);  // impl_ is alignas(16)

  static WriterImpl& impl(JsonWriter& w) {
    return *std::launder(reinterpret_cast<WriterImpl*>(w.impl_));
  }
  static void construct(JsonWriter& w, std::string* out) { new (w.impl_) WriterImpl(out); }

  static od::value& value(JsonValue& v) { return *static_cast<od::value*>(v.value_); }
  static JsonDecoder::Impl& decoder(const JsonValue& v) {
    return *static_cast<JsonDecoder::Impl*>(v.decoder_);
  }
  static const PathNode* path(const JsonValue& v) { return v.path_; }
  static bool root(const JsonValue& v) { return v.root_; }

  // Calls fn(root) with the root value of the document `decoder` parses.
  template <class F>
  static auto with_root(JsonDecoder::Impl* decoder, F&& fn) {
    JsonValue root;
    root.decoder_ = decoder;
    root.root_ = true;
    return fn(root);
  }
  // Calls fn(child) with `value`, a member or element of `parent` at `node`.
  template <class F>
  static auto with_child(od::value& value, const JsonValue& parent, const PathNode* node, F&& fn) {
    JsonValue child;
    child.value_ = &value;
    child.decoder_ = parent.decoder_;
    child.path_ = node;
    return fn(child);
  }
  // Field names come from the mapping's table: C++ identifiers, which need
  // neither a UTF-8 check nor escaping.
  static void trusted_key(JsonWriter& w, std::string_view name) {
    if (!w.error_.ok() || w.finished_) return;
    Writer& writer = impl(w).writer;
    if (writer.place() != Place::kObjectKey) {
      w.fail("a member's key where a value belongs");
      return;
    }
    writer.string(name, /*plain=*/true);
  }
};

}  // namespace json_detail

using json_detail::Access;
using json_detail::PathNode;

namespace {

// Calls `fn` with what a value reads through: the document at the root (a
// scalar document cannot be an On-Demand value), the value elsewhere.
template <class F>
auto with_source(JsonValue& v, F&& fn) {
  if (Access::root(v)) return fn(Access::decoder(v).doc);
  return fn(Access::value(v));
}

std::string path_string(const PathNode* node) {
  std::vector<const PathNode*> nodes;
  for (; node != nullptr; node = node->parent) nodes.push_back(node);
  std::string path;
  for (auto it = nodes.rbegin(); it != nodes.rend(); ++it) {
    if ((*it)->is_index) {
      path += fmt::format("[{}]", (*it)->index);
    } else {
      if (!path.empty()) path += '.';
      path += (*it)->key;
    }
  }
  return path;
}

Status value_error(const JsonValue& v, std::string_view message) {
  std::string path = path_string(Access::path(v));
  return invalid_argument(path.empty() ? std::string(message)
                                       : fmt::format("{}: {}", path, message));
}

Status malformed(JsonValue& v, simdjson::error_code e) {
  JsonDecoder::Impl& d = Access::decoder(v);
  auto location = d.doc.current_location();
  std::string where = location.error()
                          ? std::string("at the end")
                          : fmt::format("at byte {}", location.value_unsafe() - d.buffer.get());
  return value_error(v, fmt::format("malformed JSON {}: {}", where, simdjson::error_message(e)));
}

// The number's text as written (simdjson's token runs to the next
// structural character, whitespace included).
std::string_view token_of(od::value& v) { return v.raw_json_token(); }
std::string_view token_of(od::document& d) {
  std::string_view token;
  if (d.raw_json_token().get(token)) return {};
  return token;
}

std::string_view number_text(JsonValue& v) {
  std::string_view token = with_source(v, [](auto& s) { return token_of(s); });
  auto numeric = [](char c) {
    return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
  };
  size_t n = 0;
  while (n < token.size() && numeric(token[n])) ++n;
  return token.substr(0, n);
}

// What a failed get_* reports: the type that was there instead, or the
// place where the JSON is broken.
Status read_error(JsonValue& v, simdjson::error_code e, std::string_view expected) {
  if (e == simdjson::INCORRECT_TYPE || e == simdjson::NUMBER_ERROR ||
      e == simdjson::NUMBER_OUT_OF_RANGE) {
    od::json_type t;
    if (!with_source(v, [&](auto& s) { return s.type().get(t); })) {
      if (t == od::json_type::number) {
        return value_error(v, fmt::format("expected {}, got {}", expected, number_text(v)));
      }
      return value_error(
          v, fmt::format("expected {}, got {}", expected, type_phrase(from_simdjson(t))));
    }
  }
  return malformed(v, e);
}

Status integer_error(JsonValue& v, simdjson::error_code e, std::string_view range) {
  od::json_type t;
  if (e != simdjson::TRAILING_CONTENT &&
      !with_source(v, [&](auto& s) { return s.type().get(t); }) && t == od::json_type::number) {
    std::string_view text = number_text(v);
    if (integer_text(text))
      return value_error(v, fmt::format("{} is out of range {}", text, range));
  }
  return read_error(v, e, "an integer");
}

// Iterates an object's members, handing each to `fn(key, value)`.
template <class F>
Status iterate_fields(JsonValue& v, F&& fn) {
  od::object object;
  simdjson::error_code e = with_source(v, [&](auto& s) { return s.get_object().get(object); });
  if (e) return read_error(v, e, "an object");
  for (auto member : object) {
    if ((e = member.error())) return malformed(v, e);
    od::field& field = member.value_unsafe();  // a reference: no copy
    std::string_view key;
    if ((e = field.unescaped_key().get(key))) return malformed(v, e);
    const PathNode node{Access::path(v), key, 0, false};
    Status s = Access::with_child(field.value(), v, &node,
                                  [&](JsonValue& child) { return fn(key, child); });
    if (!s.ok()) return s;
  }
  return Status();
}

// ---- The per-thread pool of decoders -----------------------------------------
// from_json runs on every load: a fresh parser per call would allocate its
// buffers every time. A thread keeps a few decoders; a call takes one out
// of the pool for its whole length, so a nested call (a codec decoding
// another document while the outer one is being read) takes another one and
// cannot disturb the outer parse.

enum class PoolState : uint8_t { kUnused, kLive, kGone };
thread_local PoolState pool_state = PoolState::kUnused;  // trivial: valid until the thread ends

struct Pool {
  Pool() {
    free.reserve(kPoolKeep);  // so that giving a decoder back never allocates
    pool_state = PoolState::kLive;
  }
  ~Pool() { pool_state = PoolState::kGone; }
  std::vector<std::unique_ptr<JsonDecoder::Impl>> free;
};

Pool* pool() {
  // A decode run by another thread_local's destructor, after this pool is
  // gone, gets a decoder of its own instead.
  if (pool_state == PoolState::kGone) return nullptr;
  thread_local Pool p;
  return &p;
}

class PooledDecoder {
 public:
  PooledDecoder() {
    Pool* p = pool();
    if (p != nullptr && !p->free.empty()) {
      impl_ = std::move(p->free.back());
      p->free.pop_back();
    } else {
      impl_ = std::make_unique<JsonDecoder::Impl>();
    }
  }
  ~PooledDecoder() {
    Pool* p = pool();
    if (p != nullptr && p->free.size() < kPoolKeep && impl_->buffer_capacity <= kPoolMaxBuffer) {
      p->free.push_back(std::move(impl_));
    }
  }
  PooledDecoder(const PooledDecoder&) = delete;
  PooledDecoder& operator=(const PooledDecoder&) = delete;

  JsonDecoder::Impl& operator*() { return *impl_; }

 private:
  std::unique_ptr<JsonDecoder::Impl> impl_;
};

}  // namespace

// ---- JsonWriter --------------------------------------------------------------

JsonWriter::JsonWriter() : JsonWriter(owned_) {}

JsonWriter::JsonWriter(std::string& out) { Access::construct(*this, &out); }

JsonWriter::~JsonWriter() {
  WriterImpl& impl = Access::impl(*this);
  if (!finished_) impl.sink.trim(error_.ok());
  impl.~WriterImpl();
}

void JsonWriter::fail(std::string_view message) {
  if (finished_) {
    error_ = invalid_argument(fmt::format("JsonWriter: {}", message));
    return;
  }
  std::string path = path_of_prefix(Access::impl(*this).sink.written());
  error_ =
      invalid_argument(path.empty() ? std::string(message) : fmt::format("{}: {}", path, message));
}

// Whether a value may be written now; if not, the writer fails.
bool JsonWriter::begin_value() {
  if (!error_.ok()) return false;
  if (finished_) {
    fail("a value written after finish()");
    return false;
  }
  switch (Access::impl(*this).writer.place()) {
    case Place::kRootDone:
      fail("a second value after the root value");
      return false;
    case Place::kObjectKey:
      fail("a value where a member's key belongs (call key() first)");
      return false;
    default:
      return true;
  }
}

void JsonWriter::start_object() {
  if (begin_value()) Access::impl(*this).writer.StartObject();
}

void JsonWriter::key(std::string_view name) {
  if (!error_.ok()) return;
  if (finished_) return fail("key() after finish()");
  Writer& writer = Access::impl(*this).writer;
  switch (writer.place()) {
    case Place::kObjectKey:
      break;
    case Place::kObjectValue:
      return fail("key() where the previous key's value belongs");
    default:
      return fail("key() outside an object");
  }
  if (!valid_utf8(name)) return fail("a key that is not valid UTF-8");
  writer.string(name, /*plain=*/false);
}

void JsonWriter::end_object() {
  if (!error_.ok()) return;
  if (finished_) return fail("end_object() after finish()");
  Writer& writer = Access::impl(*this).writer;
  switch (writer.place()) {
    case Place::kObjectKey:
      writer.EndObject();
      return;
    case Place::kObjectValue:
      return fail("end_object() where the last key's value belongs");
    case Place::kArray:
      return fail("end_object() in an array (call end_array())");
    default:
      return fail("end_object() outside an object");
  }
}

void JsonWriter::start_array() {
  if (begin_value()) Access::impl(*this).writer.StartArray();
}

void JsonWriter::end_array() {
  if (!error_.ok()) return;
  if (finished_) return fail("end_array() after finish()");
  Writer& writer = Access::impl(*this).writer;
  if (writer.place() != Place::kArray) return fail("end_array() outside an array");
  writer.EndArray();
}

void JsonWriter::string(std::string_view text) {
  if (!begin_value()) return;
  if (!valid_utf8(text)) return fail("a string that is not valid UTF-8");
  Access::impl(*this).writer.string(text, /*plain=*/false);
}

void JsonWriter::int64(int64_t value) {
  if (begin_value()) Access::impl(*this).writer.int64(value);
}

void JsonWriter::uint64(uint64_t value) {
  if (begin_value()) Access::impl(*this).writer.uint64(value);
}

void JsonWriter::number(double value) {
  if (!begin_value()) return;
  if (!std::isfinite(value)) {
    return fail(fmt::format("{} cannot be written in JSON (no NaN or infinity)", value));
  }
  Access::impl(*this).writer.float64(value);
}

void JsonWriter::float32(float value) {
  if (!begin_value()) return;
  if (!std::isfinite(value)) {
    return fail(fmt::format("{} cannot be written in JSON (no NaN or infinity)", value));
  }
  char text[32];
  auto [end, ec] = std::to_chars(text, text + sizeof(text), value);
  (void)ec;  // 32 bytes hold any float's shortest form
  Access::impl(*this).writer.number(text, end);
}

void JsonWriter::boolean(bool value) {
  if (begin_value()) Access::impl(*this).writer.Bool(value);
}

void JsonWriter::null() {
  if (begin_value()) Access::impl(*this).writer.Null();
}

Status JsonWriter::finish() {
  if (finished_) return error_;
  WriterImpl& impl = Access::impl(*this);
  if (error_.ok()) {
    switch (impl.writer.place()) {
      case Place::kRootDone:
        break;
      case Place::kRoot:
        error_ = invalid_argument("JsonWriter: nothing was written");
        break;
      default:
        fail("the JSON is incomplete: an object or array is still open");
        break;
    }
  }
  impl.sink.trim(error_.ok());
  finished_ = true;
  return error_;
}

Result<std::string> JsonWriter::take() {
  EVENTSOURCE_RETURN_IF_ERROR(finish());
  return std::move(owned_);
}

// ---- JsonValue ---------------------------------------------------------------

Status JsonValue::get_string_view(std::string_view& out) {
  simdjson::error_code e = with_source(*this, [&](auto& s) { return s.get_string().get(out); });
  if (e) return read_error(*this, e, "a string");
  return Status();
}

Status JsonValue::get_string(std::string& out) {
  std::string_view text;
  EVENTSOURCE_RETURN_IF_ERROR(get_string_view(text));
  out.assign(text);
  return Status();
}

Status JsonValue::get_int64(int64_t& out) {
  return json_detail::read_signed(*this, std::numeric_limits<int64_t>::min(),
                                  std::numeric_limits<int64_t>::max(), out);
}

Status JsonValue::get_uint64(uint64_t& out) {
  return json_detail::read_unsigned(*this, std::numeric_limits<uint64_t>::max(), out);
}

Status JsonValue::get_double(double& out) {
  simdjson::error_code e = with_source(*this, [&](auto& s) { return s.get_double().get(out); });
  if (e) return read_error(*this, e, "a number (a double)");
  return Status();
}

Status JsonValue::get_bool(bool& out) {
  simdjson::error_code e = with_source(*this, [&](auto& s) { return s.get_bool().get(out); });
  if (e) return read_error(*this, e, "a boolean");
  return Status();
}

bool JsonValue::is_null() {
  bool null = false;
  if (with_source(*this, [&](auto& s) { return s.is_null().get(null); })) return false;
  return null;
}

Status JsonValue::type(JsonType& out) {
  od::json_type t;
  simdjson::error_code e = with_source(*this, [&](auto& s) { return s.type().get(t); });
  if (e) return malformed(*this, e);
  out = from_simdjson(t);
  return Status();
}

Status JsonValue::for_each_field(FieldCallback fn) {
  return iterate_fields(*this,
                        [&fn](std::string_view key, JsonValue& value) { return fn(key, value); });
}

Status JsonValue::for_each_element(ElementCallback fn) {
  od::array array;
  simdjson::error_code e = with_source(*this, [&](auto& s) { return s.get_array().get(array); });
  if (e) return read_error(*this, e, "an array");
  size_t index = 0;
  for (auto element : array) {
    if ((e = element.error())) return malformed(*this, e);
    od::value& value = element.value_unsafe();
    const PathNode node{path_, {}, index++, true};
    Status s = Access::with_child(value, *this, &node, fn);
    if (!s.ok()) return s;
  }
  return Status();
}

std::string JsonValue::path() const { return path_string(path_); }

Status JsonValue::error(std::string_view message) const { return value_error(*this, message); }

// ---- JsonDecoder ---------------------------------------------------------------

Status JsonDecoder::Impl::parse(std::string_view json, FunctionRef<Status(JsonValue&)> fn) {
  if (busy) {
    return invalid_argument(
        "JsonDecoder::parse called from inside its own callback (a nested decode needs another "
        "decoder, or from_json)");
  }
  busy = true;
  struct Done {
    bool& busy;
    ~Done() { busy = false; }
  } done{busy};
  try {
    return parse_unguarded(json, fn);
  } catch (const std::exception& e) {
    return invalid_argument(fmt::format("reading JSON: an exception was thrown: {}", e.what()));
  } catch (...) {
    return invalid_argument("reading JSON: an exception was thrown");
  }
}

Status JsonDecoder::Impl::parse_unguarded(std::string_view json,
                                          FunctionRef<Status(JsonValue&)> fn) {
  // simdjson indexes documents with 32-bit offsets.
  if (json.size() >= (size_t{1} << 32) - simdjson::SIMDJSON_PADDING) {
    return invalid_argument(fmt::format("a JSON document of {} bytes is too large", json.size()));
  }
  if (buffer_capacity < json.size()) {
    const size_t capacity = std::bit_ceil(std::max(json.size(), kMinBuffer));
    buffer.reset(new char[capacity + simdjson::SIMDJSON_PADDING]);
    buffer_capacity = capacity;
  }
  std::memcpy(buffer.get(), json.data(), json.size());
  // simdjson may read the padding; zero it so that no earlier document's
  // bytes can ever be taken for this one's.
  std::memset(buffer.get() + json.size(), 0, simdjson::SIMDJSON_PADDING);
  // Sized to the buffer, not to this document: the parser is not
  // reallocated for every slightly larger document.
  if (parser.capacity() < json.size()) {
    if (auto e = parser.allocate(buffer_capacity)) {
      return invalid_argument(fmt::format("reading JSON: {}", simdjson::error_message(e)));
    }
  }
  if (auto e =
          parser.iterate(buffer.get(), json.size(), buffer_capacity + simdjson::SIMDJSON_PADDING)
              .get(doc)) {
    return invalid_argument(fmt::format("malformed JSON: {}", simdjson::error_message(e)));
  }
  return Access::with_root(this, [&](JsonValue& root) -> Status {
    auto start = doc.current_location();
    if (start.error()) return malformed(root, start.error());
    EVENTSOURCE_RETURN_IF_ERROR(fn(root));
    return check_end(root, start.value_unsafe());
  });
}

// After the root value: nothing may follow it.
Status JsonDecoder::Impl::check_end(JsonValue& root, const char* root_start) {
  auto location = doc.current_location();
  if (!location.error() && location.value_unsafe() == root_start) {
    // The callback left the root unread: step over it.
    std::string_view raw;
    if (auto e = doc.raw_json().get(raw)) return malformed(root, e);
    location = doc.current_location();
  }
  if (location.error() == simdjson::OUT_OF_BOUNDS) return Status();
  if (location.error()) return malformed(root, location.error());
  return invalid_argument(fmt::format("malformed JSON at byte {}: more after the value",
                                      location.value_unsafe() - buffer.get()));
}

JsonDecoder::JsonDecoder() : impl_(std::make_unique<Impl>()) {}
JsonDecoder::~JsonDecoder() = default;
JsonDecoder::JsonDecoder(JsonDecoder&&) noexcept = default;
JsonDecoder& JsonDecoder::operator=(JsonDecoder&&) noexcept = default;

Status JsonDecoder::parse(std::string_view json, FunctionRef<Status(JsonValue&)> fn) {
  if (!impl_) return invalid_argument("JsonDecoder::parse on a moved-from decoder");
  return impl_->parse(json, fn);
}

// ---- json_detail ---------------------------------------------------------------

namespace json_detail {

Status read_signed(JsonValue& v, int64_t min, int64_t max, int64_t& out) {
  int64_t x = 0;
  simdjson::error_code e = with_source(v, [&](auto& s) { return s.get_int64().get(x); });
  if (e) return integer_error(v, e, fmt::format("[{}, {}]", min, max));
  if (x < min || x > max)
    return value_error(v, fmt::format("{} is out of range [{}, {}]", x, min, max));
  out = x;
  return Status();
}

Status read_unsigned(JsonValue& v, uint64_t max, uint64_t& out) {
  uint64_t x = 0;
  simdjson::error_code e = with_source(v, [&](auto& s) { return s.get_uint64().get(x); });
  if (e) return integer_error(v, e, fmt::format("[0, {}]", max));
  if (x > max) return value_error(v, fmt::format("{} is out of range [0, {}]", x, max));
  out = x;
  return Status();
}

Status read_float(JsonValue& v, float& out) {
  double d = 0;
  EVENTSOURCE_RETURN_IF_ERROR(v.get_double(d));
  // Past the midpoint between FLT_MAX and the next power of two, a double
  // would round to infinity.
  if (std::fabs(d) >= 0x1.ffffffp+127) {
    return value_error(v, fmt::format("{} is out of range for a float", d));
  }
  out = static_cast<float>(d);
  return Status();
}

Status read_object(JsonValue& v, const FieldTable& table, void* object) {
  size_t next = 0;  // members usually come in declaration order: try the next one first
  return iterate_fields(v, [&](std::string_view key, JsonValue& value) -> Status {
    for (size_t n = 0; n < table.size; ++n) {
      size_t i = next + n;
      if (i >= table.size) i -= table.size;
      if (same_key(table.fields[i].name, key)) {
        next = i + 1 == table.size ? 0 : i + 1;
        return table.fields[i].read(value, object);
      }
    }
    return Status();  // an unknown key: the iteration skips its value
  });
}

void write_object(JsonWriter& w, const FieldTable& table, const void* object) {
  w.start_object();
  for (size_t i = 0; i < table.size; ++i) {
    Access::trusted_key(w, table.fields[i].name);
    table.fields[i].write(w, object);
  }
  w.end_object();
}

Status write_json(std::string& out, FunctionRef<void(JsonWriter&)> fn) {
  const size_t start = out.size();
  try {
    JsonWriter writer(out);
    fn(writer);
    return writer.finish();
  } catch (const std::exception& e) {
    out.resize(start);
    return invalid_argument(fmt::format("writing JSON: an exception was thrown: {}", e.what()));
  } catch (...) {
    out.resize(start);
    return invalid_argument("writing JSON: an exception was thrown");
  }
}

Status read_json(std::string_view json, FunctionRef<Status(JsonValue&)> fn) {
  try {
    PooledDecoder decoder;
    return (*decoder).parse(json, fn);
  } catch (const std::exception& e) {  // the pool's allocation (parse catches its own)
    return invalid_argument(fmt::format("reading JSON: {}", e.what()));
  }
}

}  // namespace json_detail

// ---- The non-template overloads ------------------------------------------------

void json_write(JsonWriter& w, std::string_view value) { w.string(value); }

void json_write(JsonWriter& w, const Uuid& value) {
  static constexpr char kHex[] = "0123456789abcdef";
  char text[36];
  size_t n = 0;
  for (size_t i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) text[n++] = '-';
    text[n++] = kHex[value.bytes[i] >> 4];
    text[n++] = kHex[value.bytes[i] & 15];
  }
  w.string(std::string_view(text, sizeof(text)));
}

Status json_read(JsonValue& v, bool& out) { return v.get_bool(out); }
Status json_read(JsonValue& v, float& out) { return json_detail::read_float(v, out); }
Status json_read(JsonValue& v, double& out) { return v.get_double(out); }
Status json_read(JsonValue& v, std::string& out) { return v.get_string(out); }

Status json_read(JsonValue& v, Uuid& out) {
  std::string_view text;
  EVENTSOURCE_RETURN_IF_ERROR(v.get_string_view(text));
  if (!parse_uuid(text, out)) {
    return v.error(
        fmt::format("expected a UUID (8-4-4-4-12 hex digits), got \"{}\"", text.substr(0, 64)));
  }
  return Status();
}

}  // namespace eventsource
