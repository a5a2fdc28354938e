// Terminal-safe one-line event text (see event_text.h).
#include "tools/event_text.h"

#include <fmt/format.h>

#include <cstdint>
#include <optional>

#include "tools/rfc3339.h"
#include "tools/utf8.h"

namespace eventsource::tools {

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
    // C1 controls (U+0080..U+009F, C2 80..C2 9F) are escaped too.
    if (len == 2 && c == 0xc2 && static_cast<uint8_t>(bytes[i + 1]) <= 0x9f) len = 0;
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
