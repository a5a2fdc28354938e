// Terminal-safe one-line event text (see event_text.h).
#include "tools/event_text.h"

#include <fmt/format.h>

#include <cstdint>
#include <optional>

#include "tools/rfc3339.h"

namespace eventsource::tools {
namespace {

// Length of the valid UTF-8 sequence at `s[i]`, or 0 if it is not valid.
size_t utf8_sequence_length(std::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  uint8_t b0 = byte(i);
  size_t len;
  uint32_t cp;
  if (b0 < 0x80) return 1;
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    len = 2;
    cp = b0 & 0x1f;
  } else if (b0 >= 0xe0 && b0 <= 0xef) {
    len = 3;
    cp = b0 & 0x0f;
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    len = 4;
    cp = b0 & 0x07;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3f);
  }
  if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff))) return 0;
  if (cp >= 0xd800 && cp <= 0xdfff) return 0;  // surrogates
  if (cp >= 0x80 && cp <= 0x9f) return 0;      // C1 controls: escape them too
  return len;
}

}  // namespace

std::string printable(std::string_view bytes, size_t max_chars) {
  std::string out;
  size_t chars = 0;
  for (size_t i = 0; i < bytes.size();) {
    if (max_chars != 0 && chars >= max_chars) {
      out += "...";
      break;
    }
    uint8_t c = static_cast<uint8_t>(bytes[i]);
    size_t len = utf8_sequence_length(bytes, i);
    if (len == 1 && c >= 0x20 && c != 0x7f) {
      out.push_back(static_cast<char>(c));
      ++chars;
    } else if (len > 1) {
      out.append(bytes.substr(i, len));
      ++chars;
    } else {
      len = 1;
      if (c == '\n') {
        out += "\\n";
      } else if (c == '\t') {
        out += "\\t";
      } else if (c == '\r') {
        out += "\\r";
      } else {
        out += fmt::format("\\x{:02x}", c);
      }
      chars += 2;
    }
    i += len;
  }
  return out;
}

std::string format_event_line(const RecordedEvent& event) {
  std::optional<std::string> time = format_rfc3339_us(event.timestamp_us);
  return fmt::format("#{} {}-{}@{} {} {} {} {}", event.position.value, printable(event.stream_type),
                     printable(event.stream_id), event.version.value, printable(event.type),
                     time ? *time : fmt::format("{}us", event.timestamp_us),
                     event.tenant.empty() ? std::string("-") : printable(event.tenant),
                     printable(event.payload, kPayloadPreviewChars));
}

}  // namespace eventsource::tools
