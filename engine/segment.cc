// File header and segment header codecs.
#include "engine/segment.h"

#include <fmt/format.h>

#include <chrono>
#include <cstring>

#include "engine/coding.h"

namespace eventsource {

namespace fhdr = format::file_header;
namespace sh = format::segment_header;

uint64_t FileHeader::seed() const {
  return get_u64(store_id.bytes.data()) ^ get_u64(store_id.bytes.data() + 8);
}

void encode_file_header(const FileHeader& h, uint8_t out[fhdr::kSize]) {
  std::memset(out, 0, fhdr::kSize);
  std::memcpy(out + fhdr::kMagic, format::kFileMagic, 8);
  put_u32(out + fhdr::kVersion, h.version);
  put_u32(out + fhdr::kHeaderSize, static_cast<uint32_t>(format::kFileHeaderSize));
  put_u64(out + fhdr::kSegmentSize, h.segment_size);
  std::memcpy(out + fhdr::kStoreId, h.store_id.bytes.data(), 16);
  put_u64(out + fhdr::kCreatedUs, static_cast<uint64_t>(h.created_us));
  put_u64(out + fhdr::kChecksum, checksum64(out, fhdr::kChecksum, 0));
}

Status parse_file_header(const uint8_t* p, size_t n, FileHeader* out) {
  if (n < fhdr::kSize)
    return bad_bytes(fmt::format("file is {} bytes, too short for a store header", n), 0);
  if (std::memcmp(p + fhdr::kMagic, format::kFileMagic, 8) != 0)
    return bad_bytes("not an eventsource store (bad magic)", 0);
  if (get_u64(p + fhdr::kChecksum) != checksum64(p, fhdr::kChecksum, 0))
    return bad_bytes("file header checksum mismatch", 0);
  out->version = get_u32(p + fhdr::kVersion);
  out->segment_size = get_u64(p + fhdr::kSegmentSize);
  std::memcpy(out->store_id.bytes.data(), p + fhdr::kStoreId, 16);
  out->created_us = static_cast<int64_t>(get_u64(p + fhdr::kCreatedUs));
  if (get_u32(p + fhdr::kHeaderSize) != format::kFileHeaderSize ||
      get_u64(p + fhdr::kReserved) != 0)
    return bad_bytes("file header has an unexpected header size or non-zero reserved bytes", 0);
  uint64_t s = out->segment_size;
  if (s < format::kMinSegmentSize || s > format::kMaxSegmentSize || (s & (s - 1)) != 0)
    return bad_bytes(fmt::format("segment size {} is not a power of two in 1 MiB..1 GiB", s), 0);
  return Status();
}

void encode_segment_header(const SegmentHeader& h, uint64_t seed, uint8_t out[sh::kSize]) {
  std::memset(out, 0, sh::kSize);
  put_u32(out + sh::kMagic, format::kSegmentMagic);
  put_u16(out + sh::kKind, static_cast<uint16_t>(h.kind));
  put_u64(out + sh::kSlot, h.slot);
  put_u64(out + sh::kEpoch, h.epoch);
  put_u64(out + sh::kFirstPosition, h.first_position);
  put_u64(out + sh::kSlotCount, h.slot_count);
  put_u64(out + sh::kPayloadLen, h.payload_len);
  put_u64(out + sh::kCreatedUs, static_cast<uint64_t>(h.created_us));
  put_u64(out + sh::kChecksum, checksum64(out, sh::kChecksum, seed));
}

SegmentHeaderState parse_segment_header(const uint8_t* p, uint64_t slot, uint64_t seed,
                                        SegmentHeader* out, Status* problem) {
  if (all_zero(p, sh::kSize)) return SegmentHeaderState::kZero;
  if (get_u32(p + sh::kMagic) != format::kSegmentMagic) {
    *problem = bad_bytes("segment header has a bad magic");
    return SegmentHeaderState::kBad;
  }
  if (get_u64(p + sh::kChecksum) != checksum64(p, sh::kChecksum, seed)) {
    *problem = bad_bytes("segment header checksum mismatch");
    return SegmentHeaderState::kBad;
  }
  uint16_t kind = get_u16(p + sh::kKind);
  out->kind = static_cast<format::SegmentKind>(kind);
  out->slot = get_u64(p + sh::kSlot);
  out->epoch = get_u64(p + sh::kEpoch);
  out->first_position = get_u64(p + sh::kFirstPosition);
  out->slot_count = get_u64(p + sh::kSlotCount);
  out->payload_len = get_u64(p + sh::kPayloadLen);
  out->created_us = static_cast<int64_t>(get_u64(p + sh::kCreatedUs));
  if (kind != static_cast<uint16_t>(format::SegmentKind::kEvents) &&
      kind != static_cast<uint16_t>(format::SegmentKind::kIndex) &&
      kind != static_cast<uint16_t>(format::SegmentKind::kAux)) {
    *problem = bad_bytes(fmt::format("segment kind {} is unknown", kind));
    return SegmentHeaderState::kBad;
  }
  if (out->slot != slot || get_u16(p + sh::kReserved0) != 0 || out->epoch == 0 ||
      out->slot_count == 0 ||
      ((out->kind == format::SegmentKind::kEvents || out->kind == format::SegmentKind::kAux) &&
       (out->slot_count != 1 || out->first_position == 0))) {
    *problem = bad_bytes(
        fmt::format("segment header fields are inconsistent (slot {} in slot {}, epoch {})",
                    out->slot, slot, out->epoch));
    return SegmentHeaderState::kBad;
  }
  return SegmentHeaderState::kValid;
}

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace eventsource
