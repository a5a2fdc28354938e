// UTF-8 well-formedness (RFC 3629) for the dump tool: which names travel as
// JSON text and which as base64, and which bytes print as they are.
#pragma once

#include <cstddef>
#include <string_view>

namespace eventsource::tools {

// Length (1..4) of the well-formed UTF-8 sequence at s[i], or 0 when there
// is none: overlong forms, surrogates (U+D800..U+DFFF) and code points past
// U+10FFFF are not well-formed. REQUIRES: i < s.size().
size_t utf8_sequence_length(std::string_view s, size_t i);

// Whether all of `s` is well-formed UTF-8 (the empty string is).
bool is_utf8(std::string_view s);

}  // namespace eventsource::tools
