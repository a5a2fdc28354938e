// One-line, terminal-safe text forms of events for esdump's human output and
// the example app: `#<pos> <stream>@<version> <type> <time> <tenant> <payload>`.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "eventsource/types.h"

namespace eventsource::tools {

// Payloads are cut to about this many characters in one-line output.
inline constexpr size_t kPayloadPreviewChars = 120;

// Makes arbitrary bytes safe to print on one terminal line: valid UTF-8 is
// kept, control characters and invalid bytes become \n, \t, \xNN escapes.
// Cuts after `max_chars` characters (escapes count as their length) and then
// appends "...". max_chars = 0 means no limit.
std::string printable(std::string_view bytes, size_t max_chars = 0);

// "#12 Order-42@3 ItemAdded 2026-11-27T14:13:01.123456Z acme {"sku":...}";
// "-" stands for an empty tenant.
std::string format_event_line(const RecordedEvent& event);

}  // namespace eventsource::tools
