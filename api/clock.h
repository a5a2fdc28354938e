// The wall clock every api/ component stamps times with: microseconds since
// the Unix epoch, as the engine's records carry them.
#pragma once

#include <chrono>
#include <cstdint>

namespace eventsource::api_internal {

inline int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace eventsource::api_internal
