// The few JSON encoders esbench's output needs: strings and numbers, written
// into result lines and the --json document by hand (no JSON library here).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace esbench {

// `s` as a JSON string literal, quotes included.
std::string json_string(std::string_view s);

// `v` with `precision` decimals, or null when unset or not finite.
std::string json_number(std::optional<double> v, int precision);

}  // namespace esbench
