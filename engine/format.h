// Every on-disk constant and layout offset of the store, in one place.
// format-spec.md is the normative description; section names are cited here.
// Change a value here only together with format-spec.md and kFormatVersion.
#pragma once

#include <cstddef>
#include <cstdint>

namespace eventsource::format {

// format-spec.md "Versioning": readers refuse files of any other version
// (2: variable-length records; 1 had a 96-byte fixed record header).
inline constexpr uint32_t kFormatVersion = 2;

// "File header": at offset 0 of the data file, kFileHeaderSize bytes reserved.
inline constexpr uint8_t kFileMagic[8] = {0x89, 'E', 'V', 'S', '\r', '\n', 0x1a, '\n'};
inline constexpr uint64_t kFileHeaderSize = 4096;
namespace file_header {
inline constexpr size_t kMagic = 0;         // 8 bytes
inline constexpr size_t kVersion = 8;       // u32
inline constexpr size_t kHeaderSize = 12;   // u32, == kFileHeaderSize
inline constexpr size_t kSegmentSize = 16;  // u64
inline constexpr size_t kStoreId = 24;      // 16 bytes
inline constexpr size_t kCreatedUs = 40;    // i64
inline constexpr size_t kReserved = 48;     // u64, must be zero
inline constexpr size_t kChecksum = 56;     // u64: XXH3-64, seed 0, over [0, 56)
inline constexpr size_t kSize = 64;
}  // namespace file_header

// Event segments are allocated in extents: the first one, then doubling [F-8].
inline constexpr uint64_t kFirstExtent = 64 << 10;
inline constexpr uint64_t kMinSegmentSize = 1ull << 20;
inline constexpr uint64_t kMaxSegmentSize = 1ull << 30;

// "Segment header": at the start of every segment slot.
inline constexpr uint32_t kSegmentMagic = 0x31474553;  // "SEG1" little-endian
enum class SegmentKind : uint16_t { kFree = 0, kEvents = 1, kIndex = 2, kAux = 3 };
namespace segment_header {
inline constexpr size_t kMagic = 0;      // u32
inline constexpr size_t kKind = 4;       // u16
inline constexpr size_t kReserved0 = 6;  // u16, must be zero
inline constexpr size_t kSlot = 8;       // u64: own slot number
inline constexpr size_t kEpoch = 16;     // u64: allocation sequence, unique, increasing
inline constexpr size_t kFirstPosition =
    24;  // u64: events: first position in it; index: covered position; aux: first aux sequence
inline constexpr size_t kSlotCount = 32;   // u64: slots this segment spans (events: 1)
inline constexpr size_t kPayloadLen = 40;  // u64: index: blob bytes after the header; events: 0
inline constexpr size_t kCreatedUs = 48;   // i64
inline constexpr size_t kChecksum = 56;    // u64: XXH3-64, store seed, over [0, 56)
inline constexpr size_t kSize = 64;
}  // namespace segment_header

// "Frames": 8-byte aligned, never span segments.
// Aux frames (format-spec.md "Aux segments") carry aux sequences where event
// frames carry positions: first_position, count, durable_position.
enum class FrameType : uint8_t { kNeverWritten = 0, kEvents = 1, kAux = 2 };
inline constexpr uint8_t kFrameFlagZstd = 0x01;
inline constexpr uint64_t kFrameAlign = 8;
namespace frame_header {
inline constexpr size_t kChecksum = 0;        // u64: XXH3-64, store seed, over [8, frame_len)
inline constexpr size_t kFrameLen = 8;        // u32: header + body + padding, multiple of 8
inline constexpr size_t kType = 12;           // u8
inline constexpr size_t kFlags = 13;          // u8
inline constexpr size_t kReserved0 = 14;      // u16, must be zero
inline constexpr size_t kFileOffset = 16;     // u64: where this frame must be
inline constexpr size_t kSegmentEpoch = 24;   // u64: epoch of the containing segment
inline constexpr size_t kFirstPosition = 32;  // u64
inline constexpr size_t kDurablePosition =
    40;                                   // u64: all positions <= this were durable when written
inline constexpr size_t kCount = 48;      // u32: events in the frame
inline constexpr size_t kBodyLen = 52;    // u32: stored body bytes
inline constexpr size_t kRawLen = 56;     // u32: body bytes after decompression
inline constexpr size_t kReserved1 = 60;  // u32, must be zero
inline constexpr size_t kSize = 64;
}  // namespace frame_header
inline constexpr uint32_t kMaxEventsPerBatch = 32767;

// "Records": consecutive inside a frame body, not padded. Fields in order,
// each right after the previous one (varints per "Varints", coding.h):
//   varint len (bytes after this field), u32 checksum (low 32 bits of XXH3-64,
//   store seed, over the len - 4 bytes after it), u8 flags, varint position,
//   varint version, i64 timestamp_us, 16-byte event id, [16-byte correlation
//   id], [16-byte causation id], u8 + stream type, varint + stream id,
//   u8 + event type, [u8 + tenant], [varint + metadata], payload (the rest).
// [..] fields are present only with their flag bit.
namespace record {
inline constexpr uint8_t kHasCorrelationId = 0x01;
inline constexpr uint8_t kHasCausationId = 0x02;
inline constexpr uint8_t kHasTenant = 0x04;
inline constexpr uint8_t kHasMetadata = 0x08;
inline constexpr uint8_t kKnownFlags = 0x0f;  // other bits must be zero
inline constexpr size_t kChecksumSize = 4;
inline constexpr size_t kTimestampSize = 8;
inline constexpr size_t kIdSize = 16;
inline constexpr uint64_t kMaxStreamIdLen = 65535;
inline constexpr uint64_t kMaxMetadataLen = 65535;
// Smallest len: checksum, flags, 1-byte position and version, timestamp,
// event id, and the three 1-byte lengths of stream type, stream id, event type.
inline constexpr uint64_t kMinLen = kChecksumSize + 1 + 1 + 1 + kTimestampSize + kIdSize + 3;
inline constexpr uint64_t kMinSize = 1 + kMinLen;  // with its 1-byte len
static_assert(kMinLen == 34 && kMinSize == 35);
}  // namespace record

// "Aux records": consecutive inside an aux frame body, not padded; then
// kind-specific fields (varints and length-prefixed byte strings).
namespace aux_record {
inline constexpr size_t kRecordLen = 0;  // u32: whole record
inline constexpr size_t kChecksum = 4;   // u32: low 32 bits of XXH3-64, store seed, over [8, len)
inline constexpr size_t kKind = 8;       // u8: AuxKind
inline constexpr size_t kReserved = 9;   // 3 bytes, must be zero
inline constexpr size_t kSize = 12;      // fixed part
}  // namespace aux_record
enum class AuxKind : uint8_t {
  kSnapshotPut = 1,
  kSnapshotPrune = 2,
  kDeadLetterAdd = 3,
  kDeadLetterRemove = 4,
  kDeadLetterPurge = 5,
  kProjectionState = 6,
};
inline constexpr uint8_t kMaxAuxKind = 6;
inline constexpr size_t kMaxAuxName = 255;               // projection names, stream type
inline constexpr size_t kMaxAuxError = 64 << 10;         // dead-letter error text
inline constexpr size_t kMaxProjectionState = 64 << 10;  // projection state blob

// "Index segment": the persisted stream index, one blob after the segment header.
inline constexpr uint8_t kIndexMagic[8] = {'E', 'S', 'I', 'N', 'D', 'E', 'X', '2'};
namespace index_header {
inline constexpr size_t kMagic = 0;            // 8 bytes
inline constexpr size_t kCoversPosition = 8;   // u64: every event <= this is indexed
inline constexpr size_t kLogEndOffset = 16;    // u64: file offset where the log continues
inline constexpr size_t kStreamCount = 24;     // u64
inline constexpr size_t kLocatorCount = 32;    // u64
inline constexpr size_t kNamesLen = 40;        // u64
inline constexpr size_t kLocatorsOffset = 48;  // u64: from blob start, 8-aligned
inline constexpr size_t kIdsOffset = 56;       // u64: the event-id section, 8-aligned
inline constexpr size_t kChecksum = 64;        // u64: over [0,64) + id fences/sums
inline constexpr size_t kSize = 72;
}  // namespace index_header
namespace index_entry {
inline constexpr size_t kLocatorsIndex = 0;      // u64: first locator (in units of 8 bytes)
inline constexpr size_t kCount = 8;              // u64
inline constexpr size_t kNameOffset = 16;        // u32: offset into the names area
inline constexpr size_t kTypeLen = 20;           // u8
inline constexpr size_t kReserved = 21;          // u8, must be zero
inline constexpr size_t kIdLen = 22;             // u16
inline constexpr size_t kLocatorsChecksum = 24;  // u64: XXH3-64, store seed, over the locators
inline constexpr size_t kEntryChecksum = 32;     // u64: over [0,32) XOR over the name
inline constexpr size_t kSize = 40;
}  // namespace index_entry
// Locator: uncompressed frame: file offset of the record (bit 63 clear).
// Compressed frame: bit 63 set, bits 48..62 = record index, bits 0..47 = frame offset.
inline constexpr uint64_t kLocatorCompressed = 1ull << 63;
inline constexpr uint64_t kLocatorOffsetMask = (1ull << 48) - 1;
struct Locator {
  uint64_t offset = 0;      // the record's offset, or (compressed) its frame's
  bool compressed = false;  // the record is the `record`-th of a compressed frame
  uint32_t record = 0;
};
// REQUIRES: offset < 2^48, record < 2^15 (kMaxEventsPerBatch).
constexpr uint64_t encode_locator(const Locator& l) {
  return l.compressed ? kLocatorCompressed | (uint64_t{l.record} << 48) | l.offset : l.offset;
}
constexpr Locator decode_locator(uint64_t v) {
  return Locator{v & kLocatorOffsetMask, (v & kLocatorCompressed) != 0,
                 static_cast<uint32_t>((v >> 48) & 0x7fff)};
}
static_assert(decode_locator(encode_locator({0x1040, true, 32766})).record == 32766);
static_assert(decode_locator(encode_locator({0x1040, false, 0})).offset == 0x1040);

// "Checkpoint file": PATH + ".ckpt", replaced atomically (temp, fsync, rename, fsync dir).
inline constexpr char kCheckpointSuffix[] = ".ckpt";
inline constexpr char kCheckpointTempSuffix[] = ".ckpt.tmp";
inline constexpr uint8_t kCheckpointMagic[8] = {'E', 'S', 'C', 'K', 'P', 'T', '0', '1'};
namespace checkpoint {
inline constexpr size_t kMagic = 0;             // 8 bytes
inline constexpr size_t kVersion = 8;           // u32
inline constexpr size_t kLength = 12;           // u32 == kSize
inline constexpr size_t kStoreId = 16;          // 16 bytes
inline constexpr size_t kDurablePosition = 32;  // u64
inline constexpr size_t kLastFrameOffset = 40;  // u64: frame holding kDurablePosition (0 if empty)
inline constexpr size_t kIndexSlot = 48;        // u64: first slot of the index segment
inline constexpr size_t kIndexEpoch = 56;       // u64
inline constexpr size_t kWrittenUs = 64;        // i64
inline constexpr size_t kReserved = 72;         // 48 bytes, must be zero
inline constexpr size_t kChecksum = 120;        // u64: XXH3-64, store seed, over [0, 120)
inline constexpr size_t kSize = 128;
}  // namespace checkpoint

// Each structure's fields end where the next begins, and its checksum closes it.
static_assert(file_header::kChecksum + 8 == file_header::kSize &&
              file_header::kSize <= kFileHeaderSize);
static_assert(segment_header::kChecksum + 8 == segment_header::kSize);
static_assert(frame_header::kReserved1 + 4 == frame_header::kSize &&
              frame_header::kSize % kFrameAlign == 0);
static_assert(aux_record::kReserved + 3 == aux_record::kSize);
static_assert(index_header::kChecksum + 8 == index_header::kSize);
static_assert(index_entry::kEntryChecksum + 8 == index_entry::kSize);
static_assert(checkpoint::kReserved + 48 == checkpoint::kChecksum &&
              checkpoint::kChecksum + 8 == checkpoint::kSize);
static_assert(kMaxEventsPerBatch < (1u << 15), "a locator holds a record index in 15 bits");
static_assert(kFirstExtent % 4096 == 0 && kFirstExtent <= kMinSegmentSize);

}  // namespace eventsource::format
