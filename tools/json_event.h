// Events <-> JSON lines for esdump's export/import and `events --json`:
// one JSON object per event, payloads and metadata inline when they are JSON,
// base64 (with a "*_encoding" key) when they are not; names and tenants as
// JSON strings when they are UTF-8, else their raw bytes as base64 under
// "<key>_b64" (the engine stores raw bytes, so export never loses any).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "eventsource/status.h"
#include "eventsource/types.h"

namespace eventsource::tools {

// Insertion-ordered JSON, so payload keys keep their order on a round trip.
using Json = nlohmann::ordered_json;

// Deeper JSON than this is treated as opaque bytes (payloads) or rejected
// (import lines): nlohmann's serializer recurses once per level.
inline constexpr size_t kMaxJsonDepth = 256;

struct ExportOptions {
  // When set, a payload (or metadata) that is JSON but not in the compact form
  // that re-dumping produces is exported as base64, so an import stores the
  // very same bytes. When clear, it is exported as (re-dumped) JSON.
  bool exact_bytes = false;
};

// Parses `bytes` as one JSON value (no exceptions). Returns nullopt when it is
// not JSON or nests deeper than kMaxJsonDepth.
std::optional<Json> parse_json_bytes(std::string_view bytes);

// Whether `text` nests arrays/objects deeper than `max_depth` (a cheap scan
// that ignores brackets inside strings; does not validate).
bool json_nests_deeper_than(std::string_view text, size_t max_depth);

// Compact dump that never throws: invalid UTF-8 in strings becomes U+FFFD.
std::string dump_json(const Json& value);

// Puts the text `bytes` under `key` when it is well-formed UTF-8, else its
// base64 under "<key>_b64" (JSON strings cannot hold other bytes).
void put_text(Json& obj, const std::string& key, std::string_view bytes);

// The export object of one event; keys in this order: position, stream,
// version, type, id, time, tenant, metadata[, metadata_encoding],
// correlation_id, causation_id, data[, data_encoding], where stream, type
// and tenant may be stream_b64, type_b64, tenant_b64 (see put_text). Empty
// tenant/metadata and nil correlation/causation ids are omitted. "time" is RFC 3339 UTC with
// microseconds, or an integer of microseconds when the year is not 0..9999.
Json event_to_json(const RecordedEvent& event, const ExportOptions& options = {});

// One parsed import line.
struct ImportedEvent {
  StreamId stream;
  EventData data;
  std::optional<ExpectedVersion> expected;  // set when the line had "expected_version"
};

// Parses one import line (see `esdump import --help` for the keys). Errors are
// kInvalidArgument with a message saying what is wrong with the line.
Result<ImportedEvent> parse_import_line(std::string_view line);

}  // namespace eventsource::tools
