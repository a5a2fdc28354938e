// Declaring events: the EventRegistry maps each event type's name to its C++
// struct, codec and schema version. It encodes a typed event into a
// NewEvent's type, schema_version and payload (event_store.h), and decodes a
// stored EventRecord back into the struct, first running the upcasters that
// bring an old payload up to the current schema (the stored bytes are never
// rewritten).
//
//   struct OrderPlaced { Uuid order_id; std::string customer; int64_t total = 0; };
//   EVENTSOURCE_JSON(OrderPlaced, order_id, customer, total)   // json.h
//
//   EventRegistry registry;
//   registry.add<OrderPlaced>("OrderPlaced");                   // JSON, schema v1
//   registry.add<OrderShipped>("OrderShipped", 2);              // v1 payloads upcast
//   registry.add_upcaster<ShippedV1, OrderShipped>("OrderShipped", 1,
//       [](const ShippedV1& old) { return OrderShipped{old.id, "unknown"}; });
//   Result<NewEvent> e = registry.encode(OrderPlaced{...});
//   Result<OrderEvent> back = registry.decode_variant<OrderEvent>(record);
//
// Errors are values naming the type, and on decode the record's position
// and stream. No exception escapes: one thrown by a codec or an upcaster is
// caught here and returned as an error.
//
// Thread safety: register (add, add_upcaster) at startup, before the
// registry is shared; after that every const call is safe from any number
// of threads at once (they only read; there is no lock on the path), so
// codecs and upcasters are called concurrently: the JSON codec is safe so,
// and custom ones must be too. Registering while other threads use the
// registry is a data race.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <typeindex>
#include <typeinfo>
#include <utility>
#include <variant>
#include <vector>

#include "eventsource/event_store.h"
#include "eventsource/json.h"
#include "eventsource/status.h"

namespace eventsource {

// How one event type becomes bytes and back. JSON by default (json_codec);
// any other encoding (a binary one, say) plugs in per type by handing add()
// another Codec.
template <class E>
struct Codec {
  // Replaces `out`'s content with the encoded event.
  std::function<Status(const E& event, std::string& out)> encode;
  // Reads `bytes` into `out`, which starts default-constructed.
  std::function<Status(std::string_view bytes, E& out)> decode;
};

// The JSON codec of E: its EVENTSOURCE_JSON mapping (json.h).
template <class E>
Codec<E> json_codec() {
  static_assert(JsonCodable<E>,
                "this type has no JSON mapping: add EVENTSOURCE_JSON(Type, members...) next to "
                "it, or register it with a Codec of its own");
  return Codec<E>{[](const E& event, std::string& out) { return to_json(event, out); },
                  [](std::string_view bytes, E& out) { return from_json(bytes, out); }};
}

// One upcaster step: a payload of schema version N in, version N + 1 out.
using Upcaster = std::function<Result<std::string>(std::string_view payload)>;

// What the registry knows of one event type.
struct EventTypeInfo {
  std::string name;             // the stored type name, e.g. "OrderPlaced"
  uint32_t schema_version = 1;  // the version encode() writes and decode() reads
  std::type_index type;         // the C++ struct
  std::string cpp_type;         // its name, demangled, for messages
};

namespace events_detail {
// A Codec<E> with its type erased: what the compiled registry calls.
using EncodeFn = Status (*)(const void* codec, const void* event, std::string& out);
using DecodeFn = Status (*)(const void* codec, std::string_view bytes, void* out);

template <class E>
Status encode_as(const void* codec, const void* event, std::string& out) {
  return static_cast<const Codec<E>*>(codec)->encode(*static_cast<const E*>(event), out);
}
template <class E>
Status decode_as(const void* codec, std::string_view bytes, void* out) {
  return static_cast<const Codec<E>*>(codec)->decode(bytes, *static_cast<E*>(out));
}

template <class T>
struct IsVariant : std::false_type {};
template <class... Ts>
struct IsVariant<std::variant<Ts...>> : std::true_type {};
}  // namespace events_detail

class EventRegistry {
 public:
  EventRegistry();
  ~EventRegistry();
  // A moved-from registry is empty (and may be registered into again).
  EventRegistry(EventRegistry&&) noexcept;
  EventRegistry& operator=(EventRegistry&&) noexcept;
  EventRegistry(const EventRegistry&) = delete;
  EventRegistry& operator=(const EventRegistry&) = delete;

  // Registers E under `type_name` (1..255 bytes), written at
  // `schema_version` (>= 1). Errors (kInvalidArgument, nothing registered):
  // the name is taken (by E too: registering twice is a mistake, not a
  // no-op), E is registered under another name, a bad name or version, a
  // codec with an empty function, an upcaster from a version >= this one.
  template <class E>
  Status add(std::string_view type_name, uint32_t schema_version = 1,
             Codec<E> codec = json_codec<E>()) {
    static_assert(!events_detail::IsVariant<E>::value, "register each alternative on its own");
    const bool complete = codec.encode && codec.decode;
    return add_erased(type_name, schema_version, typeid(E),
                      std::make_shared<const Codec<E>>(std::move(codec)), complete,
                      &events_detail::encode_as<E>, &events_detail::decode_as<E>);
  }

  // Registers the step that turns a `type_name` payload of schema version
  // `from_version` into one of `from_version + 1`. Steps chain: a v1 record
  // of a type registered at v3 goes through the 1 and 2 steps. Byte level:
  // it works with any codec. Either order with add() is fine. Errors
  // (kInvalidArgument): an empty function, from_version 0, a step already
  // registered, from_version >= the type's registered version.
  Status add_upcaster(std::string_view type_name, uint32_t from_version, Upcaster fn);

  // The typed form: decodes the old payload as Old, converts it, encodes
  // the result as New, both through their JSON mappings (so: for types
  // whose payloads are JSON). Old and New are any mapped structs (New is
  // usually the registered type, or an intermediate version's struct).
  template <class Old, class New>
  Status add_upcaster(std::string_view type_name, uint32_t from_version,
                      std::function<New(const Old&)> fn) {
    static_assert(JsonCodable<Old> && JsonCodable<New>, "typed upcasters need JSON mappings");
    if (!fn) return add_upcaster(type_name, from_version, Upcaster());
    return add_upcaster(type_name, from_version,
                        [fn = std::move(fn)](std::string_view payload) -> Result<std::string> {
                          Old old{};
                          EVENTSOURCE_RETURN_IF_ERROR(from_json(payload, old));
                          return to_json(fn(old));
                        });
  }

  // Fills `out`'s type, schema_version and payload from `event`, leaving
  // the rest of the envelope alone (reuses the payload's capacity).
  // Errors (kInvalidArgument, naming the type): E is not registered; the
  // codec fails or throws. On error those three fields are unspecified.
  template <class E>
  Status encode(const E& event, NewEvent& out) const {
    if constexpr (events_detail::IsVariant<E>::value) {
      return std::visit([&](const auto& e) { return encode(e, out); }, event);
    } else {
      return encode_erased(typeid(E), &event, out);
    }
  }
  template <class E>
  Result<NewEvent> encode(const E& event) const {
    NewEvent out;
    EVENTSOURCE_RETURN_IF_ERROR(encode(event, out));
    return out;
  }
  template <class... Ts>
  Result<NewEvent> encode(const std::variant<Ts...>& event) const {
    NewEvent out;
    EVENTSOURCE_RETURN_IF_ERROR(encode(event, out));
    return out;
  }

  // Decodes `record` as E, upcasting an old payload first. Errors, each
  // naming the type, the record's position and stream:
  //  kNotFound        record.type is not registered;
  //  kInvalidArgument it is registered as another C++ type than E;
  //  kNotSupported    the record's schema version is newer than the
  //                   registered one, or an upcaster step is missing;
  //  kCorruption      the payload does not decode (malformed, wrong types),
  //                   an upcaster fails, or a codec or upcaster throws.
  template <class E>
  Result<E> decode(const EventRecord& record) const {
    E out{};
    const std::type_info* type = &typeid(E);
    EVENTSOURCE_RETURN_IF_ERROR(decode_erased(record, &type, 1, /*variant=*/false,
                                              [&out](size_t) -> void* { return &out; }));
    return out;
  }

  // Decodes `record` as the alternative of V = std::variant<Ts...> that its
  // type is registered as. Errors as decode()'s, except that a type
  // registered as none of the alternatives is kNotFound too: a caller
  // reading a mixed log can skip the records its variant does not cover.
  template <class V>
  Result<V> decode_variant(const EventRecord& record) const {
    return decode_variant_impl(record, static_cast<V*>(nullptr));
  }

  // nullptr when not registered. Valid as long as the registry.
  const EventTypeInfo* find(std::string_view type_name) const;
  template <class E>
  const EventTypeInfo* find() const {
    return find_type(typeid(E));
  }
  // Every registered name, sorted.
  std::vector<std::string> type_names() const;

 private:
  struct Impl;

  Status add_erased(std::string_view type_name, uint32_t schema_version, const std::type_info& type,
                    std::shared_ptr<const void> codec, bool complete,
                    events_detail::EncodeFn encode, events_detail::DecodeFn decode);
  Status encode_erased(const std::type_info& type, const void* event, NewEvent& out) const;
  // Decodes `record` into slot(i), where types[i] is the type it is
  // registered as (`variant`: types are a variant's alternatives).
  Status decode_erased(const EventRecord& record, const std::type_info* const* types, size_t count,
                       bool variant, FunctionRef<void*(size_t)> slot) const;
  const EventTypeInfo* find_type(const std::type_info& type) const;

  template <class... Ts>
  Result<std::variant<Ts...>> decode_variant_impl(const EventRecord& record,
                                                  std::variant<Ts...>*) const {
    using V = std::variant<Ts...>;
    static_assert(sizeof...(Ts) > 0);
    const std::type_info* types[] = {&typeid(Ts)...};
    V out;
    EVENTSOURCE_RETURN_IF_ERROR(decode_erased(
        record, types, sizeof...(Ts), /*variant=*/true,
        [&out](size_t i) { return emplace_at(out, i, std::index_sequence_for<Ts...>{}); }));
    return out;
  }
  // Makes alternative `i` of `v` current (value-initialized); its address.
  template <class V, size_t... Is>
  static void* emplace_at(V& v, size_t i, std::index_sequence<Is...>) {
    using Emplace = void* (*)(V&);
    static constexpr Emplace kEmplace[] = {
        [](V& x) -> void* { return &x.template emplace<Is>(); }...};
    return kEmplace[i](v);
  }

  std::unique_ptr<Impl> impl_;
};

}  // namespace eventsource
