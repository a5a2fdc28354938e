// Little-endian fixed-width encode/decode helpers (memcpy based, so unaligned
// access is fine), canonical bounded varints (format-spec.md "Varints") and the
// store-seeded XXH3 checksum used by every structure, and bad_bytes(), the
// one way the engine's codecs say that bytes are wrong.
//
// Error convention inside the engine: every fallible function returns Status
// or Result<T>. A codec that judges bytes returns kCorruption from
// bad_bytes() with why and, when it knows it, the file offset; its caller
// names the file and segment (Store::Impl::where) and says what to do.
// Checks that classify bytes (a frame or segment header: valid, never
// written, or bad) return their state and fill a Status when bad.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>

#include "eventsource/status.h"

namespace eventsource {

inline Status bad_bytes(std::string why, int64_t offset = -1) {
  return corruption(std::move(why), -1, offset);
}

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

// Varint: unsigned LEB128, 7 bits per byte, low bits first, the high bit of
// each byte but the last set. At most kMaxVarintLen bytes.
inline constexpr size_t kMaxVarintLen = 10;

inline constexpr size_t varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

// Writes the canonical (shortest) encoding of `v`; returns the end.
// REQUIRES: varint_size(v) bytes of room at p.
inline uint8_t* put_varint(uint8_t* p, uint64_t v) {
  while (v >= 0x80) {
    *p++ = static_cast<uint8_t>(v | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<uint8_t>(v);
  return p;
}

// Slow path of get_varint: four bytes or more, fewer than 3 bytes left, or an error.
inline const char* get_varint_long(const uint8_t** p, const uint8_t* end, uint64_t* v) {
  const uint8_t* q = *p;
  const size_t room = static_cast<size_t>(end - q);
  const size_t n = room < kMaxVarintLen ? room : kMaxVarintLen;
  uint64_t r = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint8_t b = q[i];
    r |= static_cast<uint64_t>(b & 0x7f) << (7 * i);
    if (b < 0x80) {
      // A zero last byte after others adds nothing: an overlong encoding.
      if (b == 0 && i > 0) return "is not minimally encoded";
      if (i == kMaxVarintLen - 1 && b > 1) return "is longer than 10 bytes or exceeds 64 bits";
      *v = r;
      *p = q + i + 1;
      return nullptr;
    }
  }
  return room < kMaxVarintLen ? "runs past the end" : "is longer than 10 bytes or exceeds 64 bits";
}

// Decodes the varint at *p, reading only [*p, end). On success stores it in
// *v, advances *p past it and returns nullptr; otherwise returns why not
// ("runs past the end", "is not minimally encoded", "is longer than 10
// bytes ..") and leaves *p and *v alone. Every value has exactly one
// accepted encoding.
inline const char* get_varint(const uint8_t** p, const uint8_t* end, uint64_t* v) {
  const uint8_t* q = *p;
  if (q < end && q[0] < 0x80) [[likely]] {
    *v = q[0];
    *p = q + 1;
    return nullptr;
  }
  // Two bytes (lengths of 128 B .. 16 KiB) or three (positions below 2^21):
  // the last one is not 0.
  if (end - q >= 3) {
    if (q[1] < 0x80) {
      if (q[1] != 0) {
        *v = (q[0] & 0x7fu) | (uint64_t{q[1]} << 7);
        *p = q + 2;
        return nullptr;
      }
    } else if (q[2] < 0x80 && q[2] != 0) {
      *v = (q[0] & 0x7fu) | (uint64_t{q[1] & 0x7fu} << 7) | (uint64_t{q[2]} << 14);
      *p = q + 3;
      return nullptr;
    }
  }
  return get_varint_long(p, end, v);
}

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
