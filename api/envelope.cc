// The engine backend's envelope bytes (envelope.h): RapidJSON writes them,
// simdjson reads them back.
#include "envelope.h"

#include <fmt/format.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <simdjson.h>

namespace eventsource::api_internal {
namespace {

constexpr size_t kMaxMetadata = (64u << 10) - (1u << 10);

}  // namespace

Status check_metadata(std::string_view metadata) {
  if (metadata.empty()) return Status();
  if (metadata.size() > kMaxMetadata)
    return invalid_argument(
        fmt::format("metadata of {} bytes is over the limit of {}", metadata.size(), kMaxMetadata));
  // Whitespace around the object would not survive the engine backend's
  // envelope, so no backend takes it.
  if (metadata.front() != '{' || metadata.back() != '}')
    return invalid_argument("metadata must be the text of one JSON object, from '{' to '}'");
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  const simdjson::padded_string padded(metadata);
  if (parser.parse(padded).get(doc) != simdjson::SUCCESS || !doc.is_object())
    return invalid_argument("metadata must be the text of one JSON object, or empty");
  return Status();
}

std::string encode_envelope(uint32_t schema_version, std::string_view actor,
                            std::string_view metadata) {
  if (schema_version == 1 && actor.empty() && metadata.empty()) return {};
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.StartObject();
  if (schema_version != 1) {
    w.Key("schema_version");
    w.Uint(schema_version);
  }
  if (!actor.empty()) {
    w.Key("actor");
    w.String(actor.data(), static_cast<rapidjson::SizeType>(actor.size()));
  }
  if (!metadata.empty()) {
    w.Key("metadata");
    // Checked by check_metadata: one JSON object, written as it is.
    w.RawValue(metadata.data(), metadata.size(), rapidjson::kObjectType);
  }
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

struct EnvelopeDecoder::Rep {
  simdjson::ondemand::parser parser;
  std::string padded;  // the bytes, then simdjson's padding
  std::string actor;   // unescaped
};

EnvelopeDecoder::EnvelopeDecoder() : rep_(std::make_unique<Rep>()) {}
EnvelopeDecoder::~EnvelopeDecoder() = default;

Status EnvelopeDecoder::decode(std::string_view bytes, EnvelopeFields* out) {
  *out = EnvelopeFields{};
  if (bytes.empty()) return Status();
  auto bad = [&](std::string_view why) {
    return Status(Code::kCorruption,
                  fmt::format("the event's envelope metadata is not what api/ writes: {}", why));
  };
  Rep& r = *rep_;
  r.actor.clear();
  r.padded.assign(bytes);
  r.padded.append(simdjson::SIMDJSON_PADDING, '\0');
  simdjson::ondemand::document doc;
  simdjson::ondemand::object obj;
  if (r.parser.iterate(r.padded.data(), bytes.size(), r.padded.size()).get(doc) ||
      doc.get_object().get(obj))
    return bad("not a JSON object");
  for (auto next : obj) {
    simdjson::ondemand::field field;
    if (std::move(next).get(field)) return bad("not a JSON object");
    std::string_view key;
    if (field.unescaped_key().get(key)) return bad("a bad key");
    if (key == "schema_version") {
      uint64_t v = 0;
      if (field.value().get_uint64().get(v) || v == 0 || v > UINT32_MAX)
        return bad("schema_version is not a number in 1..2^32-1");
      out->schema_version = static_cast<uint32_t>(v);
    } else if (key == "actor") {
      std::string_view a;
      if (field.value().get_string().get(a)) return bad("actor is not a string");
      r.actor.assign(a);
    } else if (key == "metadata") {
      simdjson::ondemand::object m;
      std::string_view raw;
      if (field.value().get_object().get(m) || m.raw_json().get(raw))
        return bad("metadata is not an object");
      out->metadata = raw;
    } else {
      return bad(fmt::format("unknown key \"{}\"", key));
    }
  }
  out->actor = r.actor;
  return Status();
}

}  // namespace eventsource::api_internal
