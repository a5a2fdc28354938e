// A small command-line parser for esdump's subcommands: long options
// (--name, --name VALUE, --name=VALUE), -h/--help, "--" ends options, and
// clear errors as values. Also number parsing with usage-style messages.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "eventsource/status.h"

namespace eventsource::tools {

enum class OptionKind : uint8_t {
  kFlag,      // --name
  kValue,     // --name VALUE, at most once
  kRepeated,  // --name VALUE, any number of times
};

struct OptionSpec {
  std::string_view name;  // without the leading "--"
  OptionKind kind;
};

struct ParsedArgs {
  std::vector<std::string> positionals;
  bool help = false;  // -h or --help was given

  bool has(std::string_view name) const { return values.count(std::string(name)) != 0; }
  // The value of a kValue option, or nullptr when absent.
  const std::string* get(std::string_view name) const;
  // Every value of a kRepeated option (empty when absent).
  const std::vector<std::string>& all(std::string_view name) const;

  std::map<std::string, std::vector<std::string>> values;  // flags map to {}
};

// Parses `args` (without the program and subcommand names) against `specs`.
// Errors (kInvalidArgument): unknown option, missing value, value given to a
// flag, kValue option given twice.
Result<ParsedArgs> parse_args(std::span<char* const> args, std::span<const OptionSpec> specs);

// Parses a decimal unsigned integer; `what` names it in the error message.
Result<uint64_t> parse_u64(std::string_view text, std::string_view what);

// Parses a byte count: a decimal number with an optional binary suffix
// K, M, G (or KiB, MiB, GiB), e.g. "1M" = 1048576.
Result<uint64_t> parse_byte_size(std::string_view text, std::string_view what);

}  // namespace eventsource::tools
