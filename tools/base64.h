// Standard base64 (RFC 4648, '+' '/' alphabet, '=' padding) for the dump
// tool's JSON: payloads and metadata that are not JSON travel as base64.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace eventsource::tools {

// Encodes `bytes` with padding.
std::string base64_encode(std::string_view bytes);

// Decodes `text`; padding is optional, whitespace is not allowed.
// Returns nullopt when `text` is not valid base64.
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace eventsource::tools
