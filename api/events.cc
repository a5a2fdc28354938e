// The event registry's compiled half (events.h): the registration rules, the
// lookups by name and by C++ type, the upcaster chain, and the boundary that
// turns a codec's or an upcaster's failure or exception into an error naming
// the type and the record.
#include "eventsource/events.h"

#include <cxxabi.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <map>
#include <optional>
#include <unordered_map>

namespace eventsource {
namespace {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

std::string demangle(const std::type_info& type) {
  int status = 0;
  char* name = abi::__cxa_demangle(type.name(), nullptr, nullptr, &status);
  std::string out = status == 0 && name != nullptr ? name : type.name();
  std::free(name);
  return out;
}

// What an exception says, for a message.
std::string what_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return fmt::format("threw {}", ex.what());
  } catch (...) {
    return "threw an exception";
  }
}

struct Entry {
  EventTypeInfo info;
  std::shared_ptr<const void> codec;  // the Codec<E>
  events_detail::EncodeFn encode;
  events_detail::DecodeFn decode;
};

// "event "OrderPlaced" (schema v1) at position 42 (stream Order-7, version 3)"
std::string where(const EventRecord& r) {
  return fmt::format("event \"{}\" (schema v{}) at position {} (stream {}-{}, version {})", r.type,
                     r.schema_version, r.position.value, r.stream_type, r.stream_id,
                     r.version.value);
}

Status cannot_decode(Code code, const EventRecord& r, std::string_view why) {
  return Status(code, fmt::format("cannot decode {}: {}", where(r), why));
}

}  // namespace

struct EventRegistry::Impl {
  std::unordered_map<std::string, std::unique_ptr<Entry>, StringHash, std::equal_to<>> by_name;
  std::unordered_map<std::type_index, const Entry*> by_type;
  // Per type name, the upcaster steps by the version they start from.
  std::unordered_map<std::string, std::map<uint32_t, Upcaster>, StringHash, std::equal_to<>>
      upcasters;
};

EventRegistry::EventRegistry() : impl_(std::make_unique<Impl>()) {}
EventRegistry::~EventRegistry() = default;
EventRegistry::EventRegistry(EventRegistry&&) noexcept = default;
EventRegistry& EventRegistry::operator=(EventRegistry&&) noexcept = default;

Status EventRegistry::add_erased(std::string_view type_name, uint32_t schema_version,
                                 const std::type_info& type, std::shared_ptr<const void> codec,
                                 bool complete, events_detail::EncodeFn encode,
                                 events_detail::DecodeFn decode) {
  try {
    if (!impl_) impl_ = std::make_unique<Impl>();
    const std::string cpp_type = demangle(type);
    if (type_name.empty() || type_name.size() > 255) {
      return invalid_argument(
          fmt::format("cannot register {}: an event type name is 1..255 bytes, not {}", cpp_type,
                      type_name.size()));
    }
    if (schema_version == 0) {
      return invalid_argument(fmt::format(
          "cannot register event type \"{}\": schema versions start at 1, not 0", type_name));
    }
    if (!complete) {
      return invalid_argument(fmt::format(
          "cannot register event type \"{}\": its codec's encode or decode function is empty",
          type_name));
    }
    if (auto it = impl_->by_name.find(type_name); it != impl_->by_name.end()) {
      const EventTypeInfo& other = it->second->info;
      if (other.type == std::type_index(type)) {
        return invalid_argument(
            fmt::format("event type \"{}\" is already registered (as {})", type_name, cpp_type));
      }
      return invalid_argument(
          fmt::format("cannot register {} as \"{}\": that name is already registered for {}",
                      cpp_type, type_name, other.cpp_type));
    }
    if (auto it = impl_->by_type.find(std::type_index(type)); it != impl_->by_type.end()) {
      return invalid_argument(fmt::format(
          "cannot register {} as \"{}\": it is already registered as \"{}\" (one name per type)",
          cpp_type, type_name, it->second->info.name));
    }
    if (auto it = impl_->upcasters.find(type_name); it != impl_->upcasters.end() &&
                                                    !it->second.empty() &&
                                                    it->second.rbegin()->first >= schema_version) {
      return invalid_argument(fmt::format(
          "cannot register event type \"{}\" at schema version {}: an upcaster from version {} "
          "is registered for it, which would never run",
          type_name, schema_version, it->second.rbegin()->first));
    }
    auto entry = std::make_unique<Entry>(Entry{
        EventTypeInfo{std::string(type_name), schema_version, std::type_index(type), cpp_type},
        std::move(codec), encode, decode});
    const Entry* raw = entry.get();
    auto [it, inserted] = impl_->by_name.emplace(std::string(type_name), std::move(entry));
    try {
      impl_->by_type.emplace(std::type_index(type), raw);
    } catch (...) {
      impl_->by_name.erase(it);  // all or nothing
      throw;
    }
    return Status();
  } catch (const std::exception& e) {
    return invalid_argument(
        fmt::format("cannot register event type \"{}\": {}", type_name, e.what()));
  }
}

Status EventRegistry::add_upcaster(std::string_view type_name, uint32_t from_version, Upcaster fn) {
  try {
    if (!impl_) impl_ = std::make_unique<Impl>();
    if (type_name.empty() || type_name.size() > 255) {
      return invalid_argument(
          fmt::format("cannot register an upcaster: an event type name is 1..255 bytes, not {}",
                      type_name.size()));
    }
    if (!fn) {
      return invalid_argument(
          fmt::format("cannot register the upcaster of \"{}\" from schema version {}: it is empty",
                      type_name, from_version));
    }
    if (from_version == 0) {
      return invalid_argument(fmt::format(
          "cannot register an upcaster of \"{}\" from schema version 0: versions start at 1",
          type_name));
    }
    if (auto it = impl_->by_name.find(type_name);
        it != impl_->by_name.end() && from_version >= it->second->info.schema_version) {
      return invalid_argument(fmt::format(
          "cannot register the upcaster of \"{}\" from schema version {}: the type is registered "
          "at version {}, so it would never run",
          type_name, from_version, it->second->info.schema_version));
    }
    auto steps = impl_->upcasters.find(type_name);
    if (steps == impl_->upcasters.end()) {
      steps =
          impl_->upcasters.emplace(std::string(type_name), std::map<uint32_t, Upcaster>{}).first;
    }
    if (!steps->second.emplace(from_version, std::move(fn)).second) {
      return invalid_argument(
          fmt::format("the upcaster of \"{}\" from schema version {} is already registered",
                      type_name, from_version));
    }
    return Status();
  } catch (const std::exception& e) {
    return invalid_argument(
        fmt::format("cannot register an upcaster of \"{}\": {}", type_name, e.what()));
  }
}

Status EventRegistry::encode_erased(const std::type_info& type, const void* event,
                                    NewEvent& out) const {
  const Entry* entry = nullptr;
  Status s;
  try {
    if (impl_) {
      auto it = impl_->by_type.find(std::type_index(type));
      if (it != impl_->by_type.end()) entry = it->second;
    }
    if (entry == nullptr) {
      const std::string name = demangle(type);
      return invalid_argument(fmt::format(
          "cannot encode {}: the type is not registered (EventRegistry::add<{}>(\"TypeName\") at "
          "startup)",
          name, name));
    }
    out.payload.clear();
    s = entry->encode(entry->codec.get(), event, out.payload);
    if (s.ok()) {
      out.type = entry->info.name;
      out.schema_version = entry->info.schema_version;
      return s;
    }
  } catch (...) {
    s = invalid_argument(fmt::format("the codec {}", what_of(std::current_exception())));
  }
  if (entry == nullptr) return s;  // the lookup itself failed (out of memory)
  return invalid_argument(fmt::format("cannot encode event \"{}\" ({}): {}", entry->info.name,
                                      entry->info.cpp_type, s.message()));
}

Status EventRegistry::decode_erased(const EventRecord& record, const std::type_info* const* types,
                                    size_t count, bool variant,
                                    FunctionRef<void*(size_t)> slot) const {
  try {
    const Entry* entry = nullptr;
    if (impl_) {
      auto it = impl_->by_name.find(record.type);
      if (it != impl_->by_name.end()) entry = it->second.get();
    }
    if (entry == nullptr)
      return cannot_decode(Code::kNotFound, record, "the type is not registered");
    const EventTypeInfo& info = entry->info;

    size_t index = count;
    for (size_t i = 0; i < count; ++i) {
      if (info.type == std::type_index(*types[i])) {
        index = i;
        break;
      }
    }
    if (index == count) {
      if (variant) {
        return cannot_decode(
            Code::kNotFound, record,
            fmt::format("it is registered as {}, which is not an alternative of the variant",
                        info.cpp_type));
      }
      return cannot_decode(
          Code::kInvalidArgument, record,
          fmt::format("it is registered as {}, not {}", info.cpp_type, demangle(*types[0])));
    }

    // Bring an old payload up to the registered version; the record's
    // bytes stay as they are (each step writes a new string).
    const uint32_t stored = record.schema_version;
    if (stored == 0) {
      return cannot_decode(Code::kCorruption, record, "schema version 0 (versions start at 1)");
    }
    if (stored > info.schema_version) {
      return cannot_decode(
          Code::kNotSupported, record,
          fmt::format("its schema version {} is newer than version {} registered here (it was "
                      "written by a newer build of the program)",
                      stored, info.schema_version));
    }
    std::string_view bytes = record.payload;
    std::string upcast;
    if (stored < info.schema_version) {
      auto steps = impl_->upcasters.find(record.type);
      for (uint32_t v = stored; v < info.schema_version; ++v) {
        const Upcaster* step = nullptr;
        if (steps != impl_->upcasters.end()) {
          auto s = steps->second.find(v);
          if (s != steps->second.end()) step = &s->second;
        }
        if (step == nullptr) {
          return cannot_decode(Code::kNotSupported, record,
                               fmt::format("no upcaster from schema version {} to {} is registered "
                                           "(EventRegistry::add_upcaster(\"{}\", {}, ...))",
                                           v, v + 1, info.name, v));
        }
        std::optional<Result<std::string>> next;
        try {
          next.emplace((*step)(bytes));
        } catch (...) {
          return cannot_decode(Code::kCorruption, record,
                               fmt::format("the upcaster from schema version {} to {} {}", v, v + 1,
                                           what_of(std::current_exception())));
        }
        if (!next->ok()) {
          return cannot_decode(Code::kCorruption, record,
                               fmt::format("upcasting from schema version {} to {}: {}", v, v + 1,
                                           next->status().message()));
        }
        upcast = std::move(*next).value();  // `bytes` (the previous step's) is no longer needed
        bytes = upcast;
      }
    }

    Status s;
    try {
      s = entry->decode(entry->codec.get(), bytes, slot(index));
    } catch (...) {
      return cannot_decode(Code::kCorruption, record,
                           fmt::format("the codec {}", what_of(std::current_exception())));
    }
    if (!s.ok()) return cannot_decode(Code::kCorruption, record, s.message());
    return Status();
  } catch (const std::exception& e) {  // building a message ran out of memory
    return Status(Code::kCorruption,
                  fmt::format("cannot decode event \"{}\": {}", record.type, e.what()));
  }
}

const EventTypeInfo* EventRegistry::find(std::string_view type_name) const {
  if (!impl_) return nullptr;
  auto it = impl_->by_name.find(type_name);
  return it == impl_->by_name.end() ? nullptr : &it->second->info;
}

const EventTypeInfo* EventRegistry::find_type(const std::type_info& type) const {
  if (!impl_) return nullptr;
  auto it = impl_->by_type.find(std::type_index(type));
  return it == impl_->by_type.end() ? nullptr : &it->second->info;
}

std::vector<std::string> EventRegistry::type_names() const {
  std::vector<std::string> names;
  if (!impl_) return names;
  names.reserve(impl_->by_name.size());
  for (const auto& [name, entry] : impl_->by_name) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace eventsource
