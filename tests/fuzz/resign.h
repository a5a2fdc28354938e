// Checksum fixups for the fuzz targets: recompute the checksums of structures
// whose other bytes a mutation changed, so inputs reach the checks that
// follow a checksum. Each function only signs what its layout bounds allow
// and never reads or writes outside [p, p + n).
#pragma once

#include <cstdint>
#include <string>

#include "engine/coding.h"
#include "engine/format.h"
#include "engine/segment.h"
#include "engine/stream_index.h"
#include "tests/support/codec_text.h"

namespace eventsource::fuzz {

// Record checksums of an uncompressed frame body of `n` bytes: walks the
// records by their len varints while each is canonical and fits.
inline void resign_records(uint8_t* body, uint64_t n, uint64_t seed) {
  namespace rec = format::record;
  uint64_t off = 0;
  while (off < n) {
    const uint8_t* q = body + off;
    uint64_t len;
    if (get_varint(&q, body + n, &len) != nullptr) return;
    uint8_t* r = body + (q - body);
    if (len < rec::kChecksumSize || len > n - static_cast<uint64_t>(r - body)) return;
    put_u32(r, static_cast<uint32_t>(
                   checksum64(r + rec::kChecksumSize, len - rec::kChecksumSize, seed)));
    off = static_cast<uint64_t>(r - body) + len;
  }
}

// The frame at p (`avail` bytes to the segment end): its records when
// uncompressed, then its checksum, if its lengths fit. Returns frame_len, or
// 0 when the header is zero or its length does not fit.
inline uint32_t resign_frame(uint8_t* p, uint64_t avail, uint64_t seed) {
  namespace fh = format::frame_header;
  if (avail < fh::kSize || all_zero(p, fh::kSize)) return 0;
  uint32_t frame_len = get_u32(p + fh::kFrameLen);
  uint32_t body_len = get_u32(p + fh::kBodyLen);
  if (frame_len < fh::kSize || frame_len > avail) return 0;
  if ((p[fh::kFlags] & format::kFrameFlagZstd) == 0 && body_len <= frame_len - fh::kSize)
    resign_records(p + fh::kSize, body_len, seed);
  put_u64(p + fh::kChecksum, checksum64(p + fh::kFrameLen, frame_len - fh::kFrameLen, seed));
  return frame_len;
}

// An index blob of `n` bytes: per-stream locator checksums and the blob
// checksum, with locators_offset set to what the counts imply.
inline void resign_index_blob(uint8_t* p, uint64_t n, uint64_t seed) {
  namespace ih = format::index_header;
  namespace ie = format::index_entry;
  if (n < ih::kSize) return;
  uint64_t streams = get_u64(p + ih::kStreamCount);
  uint64_t locators = get_u64(p + ih::kLocatorCount);
  uint64_t names_len = get_u64(p + ih::kNamesLen);
  if (streams > n / ie::kSize || names_len > n || locators > n / 8) return;
  const uint64_t names_off = ih::kSize + streams * ie::kSize;
  const uint64_t loc_off = align_up(names_off + names_len, 8);
  if (loc_off + locators * 8 > n) return;
  put_u64(p + ih::kLocatorsOffset, loc_off);
  const uint64_t ids_off = loc_off + locators * 8;
  put_u64(p + ih::kIdsOffset, ids_off);
  if (IdTable::section_size(locators) == n - ids_off)
    IdTable::sign_section(p + ids_off, locators, seed);
  for (uint64_t i = 0; i < streams; ++i) {
    uint8_t* d = p + ih::kSize + i * ie::kSize;
    uint64_t first = get_u64(d + ie::kLocatorsIndex);
    uint64_t count = get_u64(d + ie::kCount);
    if (first <= locators && count <= locators - first)
      put_u64(d + ie::kLocatorsChecksum, checksum64(p + loc_off + first * 8, count * 8, seed));
    const uint64_t name_at = get_u32(d + ie::kNameOffset);
    const uint64_t name_len = uint64_t{d[ie::kTypeLen]} + get_u16(d + ie::kIdLen);
    if (name_at + name_len <= names_len)
      put_u64(d + ie::kEntryChecksum,
              StreamIndex::entry_checksum(d, p + names_off + name_at, name_len, seed));
  }
  if (uint64_t sum = StreamIndex::blob_checksum(p, n, seed); sum != 0)
    put_u64(p + ih::kChecksum, sum);
}

// A whole data file of `n` bytes (and its 128-byte checkpoint file when
// `ckpt` is not null): the file header, every slot header that has the
// segment magic, the frames of event segments (walking frame_len from
// offset 64 until a zero or impossible header) and index blobs.
inline void resign_store(uint8_t* d, uint64_t n, uint8_t* ckpt) {
  namespace fhdr = format::file_header;
  namespace sh = format::segment_header;
  if (n < fhdr::kSize) return;
  put_u64(d + fhdr::kChecksum, checksum64(d, fhdr::kChecksum, 0));
  FileHeader h;
  if (!testing::parse_file_header_text(d, n, &h).empty()) return;
  const uint64_t seed = h.seed();
  if (ckpt != nullptr)
    put_u64(ckpt + format::checkpoint::kChecksum,
            checksum64(ckpt, format::checkpoint::kChecksum, seed));
  if (n < format::kFileHeaderSize) return;
  const uint64_t seg = h.segment_size;
  const uint64_t nslots = (n - format::kFileHeaderSize) / seg;
  for (uint64_t k = 0; k < nslots; ++k) {
    uint8_t* p = d + format::kFileHeaderSize + k * seg;
    if (get_u32(p + sh::kMagic) != format::kSegmentMagic) continue;
    put_u64(p + sh::kChecksum, checksum64(p, sh::kChecksum, seed));
    SegmentHeader s;
    std::string why;
    if (testing::parse_segment_header_text(p, k, seed, &s, &why) != SegmentHeaderState::kValid)
      continue;
    if (s.kind == format::SegmentKind::kEvents) {
      uint64_t off = sh::kSize;
      while (uint32_t len = resign_frame(p + off, seg - off, seed)) off += len;
    } else if (s.slot_count <= nslots - k) {
      uint64_t room = s.slot_count * seg - sh::kSize;
      resign_index_blob(p + sh::kSize, s.payload_len < room ? s.payload_len : room, seed);
      k += s.slot_count - 1;
    }
  }
}

}  // namespace eventsource::fuzz
