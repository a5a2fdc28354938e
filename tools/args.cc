// Command-line parsing for esdump (see args.h).
#include "tools/args.h"

#include <charconv>
#include <limits>

namespace eventsource::tools {

const std::string* ParsedArgs::get(std::string_view name) const {
  auto it = values.find(std::string(name));
  if (it == values.end() || it->second.empty()) return nullptr;
  return &it->second.front();
}

const std::vector<std::string>& ParsedArgs::all(std::string_view name) const {
  static const std::vector<std::string> kEmpty;
  auto it = values.find(std::string(name));
  return it == values.end() ? kEmpty : it->second;
}

Result<ParsedArgs> parse_args(std::span<char* const> args, std::span<const OptionSpec> specs) {
  ParsedArgs parsed;
  bool options_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i] != nullptr ? args[i] : "";
    if (options_done || arg == "-" || arg.empty() || arg[0] != '-') {
      parsed.positionals.emplace_back(arg);
      continue;
    }
    if (arg == "--") {
      options_done = true;
      continue;
    }
    if (arg == "-h" || arg == "--help") {
      parsed.help = true;
      continue;
    }
    if (arg.size() < 3 || arg[1] != '-') {
      return invalid_argument("unknown option '" + std::string(arg) + "'");
    }
    std::string_view body = arg.substr(2);
    std::string_view name = body;
    std::optional<std::string_view> inline_value;
    if (size_t eq = body.find('='); eq != std::string_view::npos) {
      name = body.substr(0, eq);
      inline_value = body.substr(eq + 1);
    }
    const OptionSpec* spec = nullptr;
    for (const OptionSpec& s : specs) {
      if (s.name == name) spec = &s;
    }
    if (spec == nullptr) return invalid_argument("unknown option '--" + std::string(name) + "'");

    std::vector<std::string>& slot = parsed.values[std::string(name)];
    if (spec->kind == OptionKind::kFlag) {
      if (inline_value)
        return invalid_argument("option '--" + std::string(name) + "' takes no value");
      continue;
    }
    if (spec->kind == OptionKind::kValue && !slot.empty()) {
      return invalid_argument("option '--" + std::string(name) + "' given more than once");
    }
    if (inline_value) {
      slot.emplace_back(*inline_value);
    } else if (i + 1 < args.size() && args[i + 1] != nullptr) {
      slot.emplace_back(args[++i]);
    } else {
      return invalid_argument("option '--" + std::string(name) + "' needs a value");
    }
  }
  return parsed;
}

Result<uint64_t> parse_u64(std::string_view text, std::string_view what) {
  uint64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end) {
    return invalid_argument(std::string(what) + " must be a non-negative integer, not '" +
                            std::string(text) + "'");
  }
  return value;
}

Result<uint64_t> parse_byte_size(std::string_view text, std::string_view what) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  std::string_view suffix = text.substr(digits);
  int shift = -1;
  if (suffix.empty() || suffix == "B") {
    shift = 0;
  } else if (suffix == "K" || suffix == "k" || suffix == "KiB") {
    shift = 10;
  } else if (suffix == "M" || suffix == "MiB") {
    shift = 20;
  } else if (suffix == "G" || suffix == "GiB") {
    shift = 30;
  }
  Result<uint64_t> number = parse_u64(text.substr(0, digits), what);
  if (shift < 0 || !number.ok()) {
    return invalid_argument(std::string(what) +
                            " must be a byte count like 1048576, 1M or 64MiB, not '" +
                            std::string(text) + "'");
  }
  if (*number > (std::numeric_limits<uint64_t>::max() >> shift)) {
    return invalid_argument(std::string(what) + " is too large: '" + std::string(text) + "'");
  }
  return *number << shift;
}

}  // namespace eventsource::tools
