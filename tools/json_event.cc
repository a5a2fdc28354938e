// Event <-> JSON conversion for esdump (see json_event.h). Never throws out of
// its functions: nlohmann exceptions are caught here and become messages.
#include "tools/json_event.h"

#include <string>

#include "tools/base64.h"
#include "tools/rfc3339.h"
#include "tools/utf8.h"

namespace eventsource::tools {
namespace {

std::string to_string(std::string_view s) { return std::string(s); }

// Puts `bytes` under `key`: as JSON when it is JSON (and, with exact_bytes,
// when re-dumping gives the same bytes), else as base64 with `<key>_encoding`.
void put_bytes(Json& obj, const char* key, std::string_view bytes, const ExportOptions& options) {
  std::optional<Json> parsed = parse_json_bytes(bytes);
  if (parsed && (!options.exact_bytes || dump_json(*parsed) == bytes)) {
    obj[key] = std::move(*parsed);
    return;
  }
  obj[key] = base64_encode(bytes);
  obj[std::string(key) + "_encoding"] = "base64";
}

Status bad(std::string message) { return invalid_argument(std::move(message)); }

// Decodes the base64 string `value` (the value of `key`) into *out.
Status decode_base64_value(const Json& value, const std::string& key, std::string* out) {
  if (!value.is_string()) return bad("\"" + key + "\" must be a base64 string");
  std::optional<std::string> decoded = base64_decode(value.get_ref<const std::string&>());
  if (!decoded) return bad("\"" + key + "\" is not valid base64");
  *out = std::move(*decoded);
  return Status();
}

// Reads an optional UUID key (a string, or null for none) into `out`.
Status read_uuid(const Json& obj, const char* key, Uuid* out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return Status();
  if (!it->is_string()) return bad(std::string("\"") + key + "\" must be a UUID string");
  std::optional<Uuid> uuid = Uuid::parse(it->get_ref<const std::string&>());
  if (!uuid) {
    return bad(std::string("\"") + key + "\" is not a UUID (expected 8-4-4-4-12 hex): \"" +
               it->get_ref<const std::string&>() + "\"");
  }
  *out = *uuid;
  return Status();
}

// Reads "<key>" (+ "<key>_encoding") as stored bytes: JSON values are stored
// as their compact dump, base64 strings as the decoded bytes.
Status read_bytes(const Json& obj, const std::string& key, bool required, std::string* out) {
  const std::string encoding_key = key + "_encoding";
  auto it = obj.find(key);
  auto enc = obj.find(encoding_key);
  if (it == obj.end()) {
    if (required) return bad("missing key \"" + key + "\"");
    if (enc != obj.end()) return bad("\"" + encoding_key + "\" without \"" + key + "\"");
    return Status();
  }
  if (enc != obj.end()) {
    if (!enc->is_string() || enc->get_ref<const std::string&>() != "base64") {
      return bad("\"" + encoding_key + "\" must be \"base64\"");
    }
    return decode_base64_value(*it, key, out);
  }
  *out = dump_json(*it);
  return Status();
}

// Reads the text `key` (a JSON string; null = absent) or "<key>_b64" (the
// raw bytes in base64, as put_text writes bytes that are not UTF-8) into
// *out; leaves *out empty when neither is there. Giving both is an error.
Status read_text(const Json& obj, const std::string& key, std::optional<std::string>* out) {
  const std::string b64_key = key + "_b64";
  auto it = obj.find(key);
  auto b64 = obj.find(b64_key);
  if (b64 != obj.end()) {
    if (it != obj.end()) return bad("give \"" + key + "\" or \"" + b64_key + "\", not both");
    out->emplace();
    return decode_base64_value(*b64, b64_key, &**out);
  }
  if (it == obj.end() || it->is_null()) return Status();
  if (!it->is_string()) return bad("\"" + key + "\" must be a string");
  *out = it->get<std::string>();
  return Status();
}

Status read_expected_version(const Json& value, std::optional<ExpectedVersion>* out) {
  if (value.is_number_unsigned() || (value.is_number_integer() && value.get<int64_t>() >= 0)) {
    *out = ExpectedVersion::exact(StreamVersion(value.get<uint64_t>()));
    return Status();
  }
  if (value.is_string()) {
    const std::string& s = value.get_ref<const std::string&>();
    if (s == "any") {
      *out = ExpectedVersion::any();
    } else if (s == "no_stream") {
      *out = ExpectedVersion::no_stream();
    } else if (s == "exists") {
      *out = ExpectedVersion::exists();
    } else {
      return bad(
          "\"expected_version\" must be a version >= 0 or \"any\", \"no_stream\", \"exists\"");
    }
    return Status();
  }
  return bad("\"expected_version\" must be a version >= 0 or \"any\", \"no_stream\", \"exists\"");
}

bool is_known_key(const std::string& key) {
  static const char* const kKeys[] = {
      "stream",
      "stream_b64",
      "type",
      "type_b64",
      "data",
      "data_encoding",
      "id",
      "tenant",
      "tenant_b64",
      "metadata",
      "metadata_encoding",
      "correlation_id",
      "causation_id",
      "time",
      "expected_version",
      "position",
      "version",
  };
  for (const char* k : kKeys) {
    if (key == k) return true;
  }
  return false;
}

Result<ImportedEvent> parse_object(const Json& obj) {
  if (!obj.is_object()) return bad("a line must be a JSON object");
  for (const auto& item : obj.items()) {
    if (!is_known_key(item.key())) return bad("unknown key \"" + item.key() + "\"");
  }

  ImportedEvent ev;
  std::optional<std::string> stream;
  EVENTSOURCE_RETURN_IF_ERROR(read_text(obj, "stream", &stream));
  if (!stream) return bad("missing key \"stream\" (a string like \"Order-42\")");
  Result<StreamId> id = StreamId::parse(*stream);
  if (!id.ok()) return bad("bad \"stream\": " + id.status().message());
  ev.stream = std::move(id).value();
  if (Status s = ev.stream.validate(); !s.ok()) return bad("bad \"stream\": " + s.message());

  std::optional<std::string> type;
  EVENTSOURCE_RETURN_IF_ERROR(read_text(obj, "type", &type));
  if (!type) return bad("missing key \"type\"");
  if (type->empty()) return bad("\"type\" must be a non-empty string");
  ev.data.type = std::move(*type);

  EVENTSOURCE_RETURN_IF_ERROR(read_bytes(obj, "data", /*required=*/true, &ev.data.payload));
  EVENTSOURCE_RETURN_IF_ERROR(read_bytes(obj, "metadata", /*required=*/false, &ev.data.metadata));
  EVENTSOURCE_RETURN_IF_ERROR(read_uuid(obj, "id", &ev.data.id));
  EVENTSOURCE_RETURN_IF_ERROR(read_uuid(obj, "correlation_id", &ev.data.correlation_id));
  EVENTSOURCE_RETURN_IF_ERROR(read_uuid(obj, "causation_id", &ev.data.causation_id));

  std::optional<std::string> tenant;
  EVENTSOURCE_RETURN_IF_ERROR(read_text(obj, "tenant", &tenant));
  if (tenant) ev.data.tenant = std::move(*tenant);

  if (auto time = obj.find("time"); time != obj.end() && !time->is_null()) {
    if (time->is_string()) {
      std::string why;
      std::optional<int64_t> us = parse_rfc3339_us(time->get_ref<const std::string&>(), &why);
      if (!us) {
        return bad("bad \"time\" \"" + time->get_ref<const std::string&>() + "\": " + why +
                   " (expected RFC 3339, e.g. 2026-11-27T14:13:01.123456Z)");
      }
      ev.data.timestamp_us = *us;
    } else if (time->is_number_integer()) {
      ev.data.timestamp_us = time->get<int64_t>();  // microseconds, as export writes odd years
    } else {
      return bad("\"time\" must be an RFC 3339 string");
    }
  }

  if (auto expected = obj.find("expected_version"); expected != obj.end()) {
    EVENTSOURCE_RETURN_IF_ERROR(read_expected_version(*expected, &ev.expected));
  }
  // "position" and "version" (written by export) are informational only.
  for (const char* key : {"position", "version"}) {
    auto it = obj.find(key);
    if (it != obj.end() && !it->is_number_unsigned() && !it->is_null()) {
      return bad(std::string("\"") + key + "\" must be a number");
    }
  }
  return ev;
}

}  // namespace

bool json_nests_deeper_than(std::string_view text, size_t max_depth) {
  size_t depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return true;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return false;
}

std::optional<Json> parse_json_bytes(std::string_view bytes) {
  if (json_nests_deeper_than(bytes, kMaxJsonDepth)) return std::nullopt;
  try {
    Json value = Json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
    if (value.is_discarded()) return std::nullopt;
    return value;
  } catch (const std::exception&) {  // allocation failure or a library surprise
    return std::nullopt;
  }
}

std::string dump_json(const Json& value) {
  return value.dump(-1, ' ', /*ensure_ascii=*/false, nlohmann::detail::error_handler_t::replace);
}

void put_text(Json& obj, const std::string& key, std::string_view bytes) {
  if (is_utf8(bytes)) {
    obj[key] = to_string(bytes);
  } else {
    obj[key + "_b64"] = base64_encode(bytes);
  }
}

Json event_to_json(const RecordedEvent& event, const ExportOptions& options) {
  Json obj = Json::object();
  obj["position"] = event.position.value;
  put_text(obj, "stream", to_string(event.stream_type) + "-" + to_string(event.stream_id));
  obj["version"] = event.version.value;
  put_text(obj, "type", event.type);
  obj["id"] = event.id.to_string();
  if (std::optional<std::string> time = format_rfc3339_us(event.timestamp_us)) {
    obj["time"] = std::move(*time);
  } else {
    obj["time"] = event.timestamp_us;
  }
  if (!event.tenant.empty()) put_text(obj, "tenant", event.tenant);
  if (!event.metadata.empty()) put_bytes(obj, "metadata", event.metadata, options);
  if (!event.correlation_id.is_nil()) obj["correlation_id"] = event.correlation_id.to_string();
  if (!event.causation_id.is_nil()) obj["causation_id"] = event.causation_id.to_string();
  put_bytes(obj, "data", event.payload, options);
  return obj;
}

Result<ImportedEvent> parse_import_line(std::string_view line) {
  if (json_nests_deeper_than(line, kMaxJsonDepth)) {
    return bad("JSON nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  }
  try {
    Json obj = Json::parse(line.begin(), line.end());
    return parse_object(obj);
  } catch (const Json::exception& e) {
    // what() reads "[json.exception.parse_error.101] parse error at ...": drop the tag.
    std::string what = e.what();
    if (size_t close = what.find("] ");
        what.rfind("[json.exception.", 0) == 0 && close != std::string::npos) {
      what.erase(0, close + 2);
    }
    return bad("invalid JSON: " + what);
  } catch (const std::exception& e) {
    return bad(std::string("cannot parse line: ") + e.what());
  }
}

}  // namespace eventsource::tools
