// Little-endian fixed-width encode/decode helpers (memcpy based, so unaligned
// access is fine) and the store-seeded XXH3 checksum used by every structure.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace eventsource {

inline void put_u16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }
inline void put_u32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
inline void put_u64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
inline uint16_t get_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline uint32_t get_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint64_t get_u64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "on-disk format is little-endian");

// XXH3-64 of `data` with `seed` (0 for the file header, the store seed otherwise).
uint64_t checksum64(const void* data, size_t n, uint64_t seed);

inline bool all_zero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != 0) return false;
  return true;
}

inline uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// "0x3a40"
std::string hex(uint64_t v);

}  // namespace eventsource
