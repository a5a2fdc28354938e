// RFC 3339 timestamps <-> microseconds since the Unix epoch, for the dump
// tool: events print as UTC with microseconds, imports accept any offset.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace eventsource::tools {

// Formats as "YYYY-MM-DDTHH:MM:SS.ffffffZ". Returns nullopt when the year
// falls outside 0000..9999 (RFC 3339 has four-digit years only).
std::optional<std::string> format_rfc3339_us(int64_t micros);

// Parses "YYYY-MM-DD(T|t| )HH:MM:SS[.fraction](Z|z|+HH:MM|-HH:MM)". Digits of
// the fraction past microseconds are truncated. On failure returns nullopt
// and sets `*error` to the reason.
std::optional<int64_t> parse_rfc3339_us(std::string_view text, std::string* error);

}  // namespace eventsource::tools
