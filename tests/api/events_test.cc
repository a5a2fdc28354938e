// api/ event registry (events.h): one-line registration and its refusals,
// encode and decode through the registry, variants, upcaster chains (typed
// and byte level) with their missing-step and too-new errors, codecs and
// upcasters that fail or throw, a binary codec for one type, and concurrent
// decoding.
#include "eventsource/events.h"

#include <doctest/doctest.h>

#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <variant>
#include <vector>

namespace eventsource {
namespace {

struct Item {
  std::string sku;
  int qty = 0;
  bool operator==(const Item&) const = default;
};
EVENTSOURCE_JSON(Item, sku, qty)

struct OrderPlaced {
  Uuid order_id;
  std::string customer;
  int64_t total = 0;
  std::vector<Item> items;
  bool operator==(const OrderPlaced&) const = default;
};
EVENTSOURCE_JSON(OrderPlaced, order_id, customer, total, items)

struct OrderShipped {
  std::string carrier;
  bool operator==(const OrderShipped&) const = default;
};
EVENTSOURCE_JSON(OrderShipped, carrier)

struct OrderCancelled {
  std::string reason;
  bool operator==(const OrderCancelled&) const = default;
};
EVENTSOURCE_JSON(OrderCancelled, reason)

struct NeverRegistered {
  int x = 0;
};
EVENTSOURCE_JSON(NeverRegistered, x)

// Three schema versions of one event, "CustomerRenamed":
//  v1 {"name": "Ada Lovelace"}
//  v2 {"first": "Ada", "last": "Lovelace"}            (typed upcaster 1 -> 2)
//  v3 {"first": "Ada", "last": "Lovelace", "title": ""} (byte-level 2 -> 3)
struct RenamedV1 {
  std::string name;
};
EVENTSOURCE_JSON(RenamedV1, name)
struct RenamedV2 {
  std::string first;
  std::string last;
};
EVENTSOURCE_JSON(RenamedV2, first, last)
struct CustomerRenamed {
  std::string first;
  std::string last;
  std::string title;
  bool operator==(const CustomerRenamed&) const = default;
};
EVENTSOURCE_JSON(CustomerRenamed, first, last, title)

// Encoded by a binary codec: 8 bytes of x, little-endian, then the label.
struct Tick {
  uint64_t x = 0;
  std::string label;
  bool operator==(const Tick&) const = default;
};

Codec<Tick> tick_codec() {
  return Codec<Tick>{[](const Tick& t, std::string& out) {
                       out.assign(8, '\0');
                       for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(t.x >> (8 * i));
                       out += t.label;
                       return Status();
                     },
                     [](std::string_view bytes, Tick& t) {
                       if (bytes.size() < 8)
                         return corruption("a Tick is at least 8 bytes", -1, -1);
                       t.x = 0;
                       for (int i = 0; i < 8; ++i) {
                         t.x |= uint64_t{static_cast<uint8_t>(bytes[i])} << (8 * i);
                       }
                       t.label = std::string(bytes.substr(8));
                       return Status();
                     }};
}

using OrderEvent = std::variant<OrderPlaced, OrderShipped>;

OrderPlaced sample_order() {
  OrderPlaced o;
  o.order_id = Uuid::random();
  o.customer = "Ada";
  o.total = 4200;
  o.items = {{"sku-1", 2}, {"sku-2", 1}};
  return o;
}

// A record as a read would deliver it (its strings owned by `backing`).
struct Stored {
  std::string type, payload;
  uint32_t schema_version = 1;
  EventRecord record() const {
    EventRecord r;
    r.position = GlobalPosition(42);
    r.version = StreamVersion(3);
    r.stream_type = "Order";
    r.stream_id = "7";
    r.type = type;
    r.schema_version = schema_version;
    r.payload = payload;
    return r;
  }
};

Stored stored(const NewEvent& e) { return Stored{e.type, e.payload, e.schema_version}; }

EventRegistry order_registry() {
  EventRegistry r;
  REQUIRE(r.add<OrderPlaced>("OrderPlaced").ok());
  REQUIRE(r.add<OrderShipped>("OrderShipped").ok());
  REQUIRE(r.add<OrderCancelled>("OrderCancelled").ok());
  return r;
}

bool mentions(const Status& s, std::string_view text) {
  return s.message().find(text) != std::string::npos;
}

TEST_SUITE("api-events") {
  TEST_CASE("a registered event encodes into a NewEvent and decodes back") {
    EventRegistry registry;
    REQUIRE(registry.add<OrderPlaced>("OrderPlaced").ok());  // one line
    const OrderPlaced order = sample_order();
    Result<NewEvent> e = registry.encode(order);
    REQUIRE(e.ok());
    CHECK(e->type == "OrderPlaced");
    CHECK(e->schema_version == 1);
    CHECK(e->payload == to_json(order).value());
    CHECK(e->id.is_nil());  // the envelope is left alone
    Stored s = stored(*e);
    Result<OrderPlaced> back = registry.decode<OrderPlaced>(s.record());
    REQUIRE(back.ok());
    CHECK(*back == order);

    // encode(event, out) fills the three fields and keeps the envelope.
    NewEvent out;
    out.actor = "me";
    out.payload = "stale";
    REQUIRE(registry.encode(order, out).ok());
    CHECK(out.actor == "me");
    CHECK(out.payload == e->payload);
  }

  TEST_CASE("encoding an unregistered type is an error naming the C++ type") {
    EventRegistry registry = order_registry();
    Result<NewEvent> e = registry.encode(NeverRegistered{1});
    REQUIRE_FALSE(e.ok());
    CHECK(e.status().code() == Code::kInvalidArgument);
    CHECK_MESSAGE(mentions(e.status(), "NeverRegistered"), e.status().message());
    CHECK(mentions(e.status(), "not registered"));
  }

  TEST_CASE("registration refuses name clashes, type clashes and bad arguments") {
    EventRegistry registry;
    REQUIRE(registry.add<OrderPlaced>("OrderPlaced").ok());
    Status s = registry.add<OrderShipped>("OrderPlaced");  // the name, for another type
    CHECK(s.code() == Code::kInvalidArgument);
    CHECK_MESSAGE(mentions(s, "already registered for"), s.message());
    CHECK(mentions(s, "OrderShipped"));
    s = registry.add<OrderPlaced>("OrderPlaced");  // the same pair again
    CHECK(s.code() == Code::kInvalidArgument);
    CHECK(mentions(s, "already registered"));
    s = registry.add<OrderPlaced>("OrderPlacedAgain");  // a second name for the type
    CHECK(s.code() == Code::kInvalidArgument);
    CHECK_MESSAGE(mentions(s, "already registered as \"OrderPlaced\""), s.message());
    CHECK(registry.find("OrderPlacedAgain") == nullptr);
    CHECK(registry.add<OrderShipped>("").code() == Code::kInvalidArgument);
    CHECK(registry.add<OrderShipped>(std::string(256, 'x')).code() == Code::kInvalidArgument);
    CHECK(registry.add<OrderShipped>(std::string(255, 'x')).ok());
    CHECK(registry.add<OrderCancelled>("Cancelled", 0).code() == Code::kInvalidArgument);
    CHECK(registry.add<Tick>("Tick", 1, Codec<Tick>{}).code() == Code::kInvalidArgument);
    CHECK(registry.type_names() == std::vector<std::string>{"OrderPlaced", std::string(255, 'x')});
  }

  TEST_CASE("find and type_names report what is registered") {
    EventRegistry registry = order_registry();
    REQUIRE(registry.add<CustomerRenamed>("CustomerRenamed", 3).ok());
    const EventTypeInfo* info = registry.find("CustomerRenamed");
    REQUIRE(info != nullptr);
    CHECK(info->name == "CustomerRenamed");
    CHECK(info->schema_version == 3);
    CHECK(info->type == std::type_index(typeid(CustomerRenamed)));
    CHECK(registry.find<CustomerRenamed>() == info);
    CHECK(registry.find<NeverRegistered>() == nullptr);
    CHECK(registry.find("Nope") == nullptr);
    CHECK(registry.type_names() == std::vector<std::string>{"CustomerRenamed", "OrderCancelled",
                                                            "OrderPlaced", "OrderShipped"});
  }

  TEST_CASE("decoding an unknown type is kNotFound naming the type, stream and position") {
    EventRegistry registry = order_registry();
    Stored s{"OrderLost", "{}"};
    Result<OrderPlaced> r = registry.decode<OrderPlaced>(s.record());
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Code::kNotFound);
    CHECK(r.status().message() ==
          "cannot decode event \"OrderLost\" (schema v1) at position 42 (stream Order-7, version "
          "3): the type is not registered");
    Result<OrderEvent> v = registry.decode_variant<OrderEvent>(s.record());
    CHECK(v.status().code() == Code::kNotFound);
  }

  TEST_CASE("decoding as the wrong type is an error naming both") {
    EventRegistry registry = order_registry();
    Stored s = stored(registry.encode(OrderShipped{"ups"}).value());
    Result<OrderPlaced> r = registry.decode<OrderPlaced>(s.record());
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Code::kInvalidArgument);
    CHECK_MESSAGE(mentions(r.status(),
                           "registered as eventsource::(anonymous namespace)::OrderShipped, not "
                           "eventsource::(anonymous namespace)::OrderPlaced"),
                  r.status().message());
  }

  TEST_CASE("a variant decodes into the alternative registered under the record's type") {
    EventRegistry registry = order_registry();
    const OrderPlaced order = sample_order();
    const OrderEvent events[] = {order, OrderShipped{"dhl"}};
    for (const OrderEvent& event : events) {
      Result<NewEvent> e = registry.encode(event);  // a variant encodes as its alternative
      REQUIRE(e.ok());
      CHECK(e->type == (event.index() == 0 ? "OrderPlaced" : "OrderShipped"));
      Stored s = stored(*e);
      Result<OrderEvent> back = registry.decode_variant<OrderEvent>(s.record());
      REQUIRE(back.ok());
      CHECK(*back == event);
    }
    // Registered, but not an alternative: kNotFound, so that a reader can skip it.
    Stored cancelled = stored(registry.encode(OrderCancelled{"changed mind"}).value());
    Result<OrderEvent> r = registry.decode_variant<OrderEvent>(cancelled.record());
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Code::kNotFound);
    CHECK(mentions(r.status(), "not an alternative"));
    // A one-alternative variant works the same way.
    Result<std::variant<OrderCancelled>> one =
        registry.decode_variant<std::variant<OrderCancelled>>(cancelled.record());
    REQUIRE(one.ok());
    CHECK(std::get<0>(*one).reason == "changed mind");
  }

  TEST_CASE("a malformed payload is kCorruption naming the type, position and field") {
    EventRegistry registry = order_registry();
    Stored s{"OrderPlaced", R"({"customer":"x","items":[{"sku":1}]})"};
    Result<OrderPlaced> r = registry.decode<OrderPlaced>(s.record());
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Code::kCorruption);
    CHECK(r.status().message() ==
          "cannot decode event \"OrderPlaced\" (schema v1) at position 42 (stream Order-7, "
          "version 3): items[0].sku: expected a string, got 1");
    s.payload = R"({"customer":"x")";
    r = registry.decode<OrderPlaced>(s.record());
    CHECK(r.status().code() == Code::kCorruption);
    CHECK(mentions(r.status(), "position 42"));
    CHECK(mentions(r.status(), "malformed JSON"));
  }

  TEST_CASE("upcasters chain v1 -> v2 -> v3, typed and byte level; stored bytes stay") {
    EventRegistry registry;
    REQUIRE(registry.add<CustomerRenamed>("CustomerRenamed", 3).ok());
    REQUIRE(registry
                .add_upcaster<RenamedV1, RenamedV2>(
                    "CustomerRenamed", 1,
                    [](const RenamedV1& old) {
                      const size_t space = old.name.find(' ');
                      return RenamedV2{old.name.substr(0, space), old.name.substr(space + 1)};
                    })
                .ok());
    REQUIRE(registry
                .add_upcaster("CustomerRenamed", 2,
                              [](std::string_view payload) -> Result<std::string> {
                                // Byte level: add a member before the closing brace.
                                std::string out(payload.substr(0, payload.rfind('}')));
                                out += R"(,"title":"Countess"})";
                                return out;
                              })
                .ok());

    const Stored v1{"CustomerRenamed", R"({"name":"Ada Lovelace"})", 1};
    const Stored v2{"CustomerRenamed", R"({"first":"Grace","last":"Hopper"})", 2};
    const Stored v3{"CustomerRenamed", R"({"first":"Alan","last":"Turing","title":"Dr"})", 3};
    const std::string v1_bytes = v1.payload;
    const EventRecord record = v1.record();
    Result<CustomerRenamed> r = registry.decode<CustomerRenamed>(record);
    REQUIRE_MESSAGE(r.ok(), r.status().to_string());
    CHECK(*r == CustomerRenamed{"Ada", "Lovelace", "Countess"});
    CHECK(record.payload == v1_bytes);  // the record's bytes are untouched
    CHECK(v1.payload == v1_bytes);
    r = registry.decode<CustomerRenamed>(v2.record());
    REQUIRE(r.ok());
    CHECK(*r == CustomerRenamed{"Grace", "Hopper", "Countess"});
    r = registry.decode<CustomerRenamed>(v3.record());
    REQUIRE(r.ok());
    CHECK(*r == CustomerRenamed{"Alan", "Turing", "Dr"});
    // New events are written at v3.
    CHECK(registry.encode(*r).value().schema_version == 3);
  }

  TEST_CASE("a missing upcaster step and a too-new record are kNotSupported") {
    EventRegistry registry;
    REQUIRE(registry.add<CustomerRenamed>("CustomerRenamed", 3).ok());
    REQUIRE(
        registry
            .add_upcaster("CustomerRenamed", 2,
                          [](std::string_view p) -> Result<std::string> { return std::string(p); })
            .ok());
    Result<CustomerRenamed> r =
        registry.decode<CustomerRenamed>(Stored{"CustomerRenamed", "{}", 1}.record());
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Code::kNotSupported);
    CHECK_MESSAGE(mentions(r.status(), "no upcaster from schema version 1 to 2"),
                  r.status().message());
    CHECK(mentions(r.status(), "position 42"));
    r = registry.decode<CustomerRenamed>(Stored{"CustomerRenamed", "{}", 2}.record());
    CHECK(r.ok());
    r = registry.decode<CustomerRenamed>(Stored{"CustomerRenamed", "{}", 5}.record());
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Code::kNotSupported);
    CHECK_MESSAGE(mentions(r.status(), "schema version 5 is newer than version 3"),
                  r.status().message());
    r = registry.decode<CustomerRenamed>(Stored{"CustomerRenamed", "{}", 0}.record());
    CHECK(r.status().code() == Code::kCorruption);
  }

  TEST_CASE("upcaster registration refuses what could never run") {
    EventRegistry registry;
    auto same = [](std::string_view p) -> Result<std::string> { return std::string(p); };
    CHECK(registry.add_upcaster("T", 0, same).code() == Code::kInvalidArgument);
    CHECK(registry.add_upcaster("T", 1, Upcaster()).code() == Code::kInvalidArgument);
    CHECK(registry.add_upcaster("", 1, same).code() == Code::kInvalidArgument);
    REQUIRE(registry.add_upcaster("T", 1, same).ok());  // before the type: fine
    CHECK(registry.add_upcaster("T", 1, same).code() == Code::kInvalidArgument);  // twice
    REQUIRE(registry.add_upcaster("T", 2, same).ok());
    // Registered at v2, the 2 -> 3 step would never run.
    Status s = registry.add<OrderShipped>("T", 2);
    CHECK(s.code() == Code::kInvalidArgument);
    CHECK(mentions(s, "upcaster from version 2"));
    REQUIRE(registry.add<OrderShipped>("T", 3).ok());
    CHECK(registry.add_upcaster("T", 3, same).code() == Code::kInvalidArgument);
    CHECK(registry.add_upcaster<RenamedV1, RenamedV2>("T", 1, nullptr).code() ==
          Code::kInvalidArgument);
  }

  TEST_CASE("a codec or upcaster that fails or throws becomes an error") {
    EventRegistry registry;
    Codec<OrderShipped> throwing{[](const OrderShipped& e, std::string& out) -> Status {
                                   if (e.carrier == "throw")
                                     throw std::runtime_error("encoder exploded");
                                   if (e.carrier == "fail")
                                     return invalid_argument("encoder refused");
                                   out = e.carrier;
                                   return Status();
                                 },
                                 [](std::string_view bytes, OrderShipped& e) -> Status {
                                   if (bytes == "throw")
                                     throw std::runtime_error("decoder exploded");
                                   if (bytes == "int") throw 7;
                                   e.carrier = std::string(bytes);
                                   return Status();
                                 }};
    REQUIRE(registry.add<OrderShipped>("OrderShipped", 1, throwing).ok());
    Result<NewEvent> e = registry.encode(OrderShipped{"throw"});
    REQUIRE_FALSE(e.ok());
    CHECK(e.status().code() == Code::kInvalidArgument);
    CHECK_MESSAGE(mentions(e.status(), "cannot encode event \"OrderShipped\""),
                  e.status().message());
    CHECK(mentions(e.status(), "encoder exploded"));
    e = registry.encode(OrderShipped{"fail"});
    CHECK(e.status().code() == Code::kInvalidArgument);
    CHECK(mentions(e.status(), "encoder refused"));
    CHECK(registry.encode(OrderShipped{"fine"}).ok());

    Result<OrderShipped> d =
        registry.decode<OrderShipped>(Stored{"OrderShipped", "throw"}.record());
    REQUIRE_FALSE(d.ok());
    CHECK(d.status().code() == Code::kCorruption);
    CHECK(mentions(d.status(), "decoder exploded"));
    CHECK(mentions(d.status(), "position 42"));
    d = registry.decode<OrderShipped>(Stored{"OrderShipped", "int"}.record());
    CHECK(d.status().code() == Code::kCorruption);
    CHECK(registry.decode<OrderShipped>(Stored{"OrderShipped", "ok"}.record()).value().carrier ==
          "ok");

    EventRegistry upcasting;
    REQUIRE(upcasting.add<OrderCancelled>("OrderCancelled", 3).ok());
    REQUIRE(upcasting
                .add_upcaster("OrderCancelled", 1,
                              [](std::string_view) -> Result<std::string> {
                                throw std::runtime_error("upcaster exploded");
                              })
                .ok());
    REQUIRE(upcasting
                .add_upcaster("OrderCancelled", 2,
                              [](std::string_view) -> Result<std::string> {
                                return invalid_argument("cannot make sense of it");
                              })
                .ok());
    Result<OrderCancelled> c =
        upcasting.decode<OrderCancelled>(Stored{"OrderCancelled", "{}", 1}.record());
    REQUIRE_FALSE(c.ok());
    CHECK(c.status().code() == Code::kCorruption);
    CHECK_MESSAGE(
        mentions(c.status(), "the upcaster from schema version 1 to 2 threw upcaster exploded"),
        c.status().message());
    c = upcasting.decode<OrderCancelled>(Stored{"OrderCancelled", "{}", 2}.record());
    CHECK(c.status().code() == Code::kCorruption);
    CHECK(mentions(c.status(), "upcasting from schema version 2 to 3: cannot make sense of it"));
    // A typed upcaster whose old payload does not decode.
    EventRegistry typed;
    REQUIRE(typed.add<CustomerRenamed>("CustomerRenamed", 2).ok());
    REQUIRE(typed
                .add_upcaster<RenamedV1, CustomerRenamed>("CustomerRenamed", 1,
                                                          [](const RenamedV1& o) {
                                                            return CustomerRenamed{o.name, "", ""};
                                                          })
                .ok());
    Result<CustomerRenamed> t =
        typed.decode<CustomerRenamed>(Stored{"CustomerRenamed", R"({"name":5})", 1}.record());
    CHECK(t.status().code() == Code::kCorruption);
    CHECK_MESSAGE(
        mentions(t.status(), "upcasting from schema version 1 to 2: name: expected a string"),
        t.status().message());
    t = typed.decode<CustomerRenamed>(Stored{"CustomerRenamed", R"({"name":"Ada"})", 1}.record());
    REQUIRE(t.ok());
    CHECK(t->first == "Ada");
  }

  TEST_CASE("a binary codec plugs in for one type") {
    EventRegistry registry = order_registry();
    REQUIRE(registry.add<Tick>("Tick", 1, tick_codec()).ok());
    const Tick tick{0x0102030405060708ull, "label"};
    Result<NewEvent> e = registry.encode(tick);
    REQUIRE(e.ok());
    CHECK(e->payload == std::string("\x08\x07\x06\x05\x04\x03\x02\x01label", 13));
    Stored s = stored(*e);
    Result<Tick> back = registry.decode<Tick>(s.record());
    REQUIRE(back.ok());
    CHECK(*back == tick);
    s.payload = "short";
    CHECK(registry.decode<Tick>(s.record()).status().code() == Code::kCorruption);
    // The other types are still JSON.
    CHECK(registry.encode(OrderShipped{"x"}).value().payload == R"({"carrier":"x"})");
  }

  TEST_CASE("a codec may decode another record while decoding") {
    // "Batch" carries an OrderPlaced's JSON in a string and decodes it
    // through the same registry, mid-decode.
    struct Batch {
      OrderPlaced inner;
      std::string note;
    };
    EventRegistry registry = order_registry();
    const EventRegistry* self = &registry;
    Codec<Batch> nested{[](const Batch& b, std::string& out) {
                          out = b.note + "|" + to_json(b.inner).value();
                          return Status();
                        },
                        [self](std::string_view bytes, Batch& b) -> Status {
                          const size_t bar = bytes.find('|');
                          b.note = std::string(bytes.substr(0, bar));
                          Stored inner{"OrderPlaced", std::string(bytes.substr(bar + 1))};
                          Result<OrderPlaced> o = self->decode<OrderPlaced>(inner.record());
                          if (!o.ok()) return o.status();
                          b.inner = *o;
                          return Status();
                        }};
    REQUIRE(registry.add<Batch>("Batch", 1, nested).ok());
    Batch batch{sample_order(), "note"};
    Stored s = stored(registry.encode(batch).value());
    Result<Batch> back = registry.decode<Batch>(s.record());
    REQUIRE(back.ok());
    CHECK(back->inner == batch.inner);
    CHECK(back->note == "note");
  }

  TEST_CASE("concurrent encode and decode from several threads") {
    const EventRegistry registry = order_registry();
    const OrderPlaced order = sample_order();
    const Stored s = stored(registry.encode(order).value());
    std::vector<int> failures(4, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < 2000; ++i) {
          Result<OrderEvent> e = registry.decode_variant<OrderEvent>(s.record());
          if (!e.ok() || std::get<OrderPlaced>(*e) != order) ++failures[t];
          Result<NewEvent> n = registry.encode(OrderShipped{"x"});
          if (!n.ok() || n->type != "OrderShipped") ++failures[t];
        }
      });
    }
    for (auto& th : threads) th.join();
    CHECK(failures == std::vector<int>(4, 0));
  }

  TEST_CASE("a moved-from registry is empty and can be used again") {
    EventRegistry a = order_registry();
    EventRegistry b = std::move(a);
    CHECK(b.find("OrderPlaced") != nullptr);
    CHECK(a.find("OrderPlaced") == nullptr);  // NOLINT: use after move is the point
    CHECK(a.type_names().empty());
    CHECK(a.encode(OrderShipped{"x"}).status().code() == Code::kInvalidArgument);
    CHECK(a.decode<OrderShipped>(Stored{"OrderShipped", "{}"}.record()).status().code() ==
          Code::kNotFound);
    CHECK(a.add<OrderShipped>("OrderShipped").ok());
  }
}

}  // namespace
}  // namespace eventsource
