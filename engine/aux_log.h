// Aux records (snapshots, dead letters, projection states): their encoding
// inside aux frames, the in-memory state built by replaying them in chain
// order, and a LogView over the aux chain so that the one frame walker
// (log_reader.h) judges aux frames as it judges event frames.
// See format-spec.md "Aux segments" and "Aux records".
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "engine/format.h"
#include "engine/frame.h"
#include "engine/log_reader.h"
#include "eventsource/store.h"

namespace eventsource {

// One aux record, decoded (views point into the decoded bytes) or to encode.
// Which fields a kind uses: format-spec.md "Aux records".
struct AuxRecord {
  format::AuxKind kind = format::AuxKind::kSnapshotPut;
  std::string_view stream_type;  // snapshot put, prune
  std::string_view stream_id;    // snapshot put, prune
  uint64_t version = 0;          // snapshot put: its version; prune: keep_from
  uint32_t schema_version = 0;   // snapshot put
  uint64_t id = 0;               // dead letter add, remove
  std::string_view name;         // dead letter add/purge: projection; projection state: name
  bool all = false;              // dead letter purge: every projection
  uint64_t position = 0;         // dead letter add, projection state
  uint32_t attempts = 0;         // dead letter add
  int64_t time_us = 0;           // snapshot put: timestamp; dl add: first failure; state: updated
  int64_t time2_us = 0;          // dl add: last failure
  std::string_view text;         // dl add: error text
  std::string_view data;         // snapshot put: bytes; projection state: state blob
};

// Bytes the record takes when encoded.
uint64_t aux_record_size(const AuxRecord& r);
// Appends the encoded record (checksum included) to *out.
void encode_aux_record(const AuxRecord& r, uint64_t seed, std::string* out);
// Decodes the record at `p` (`avail` bytes left in the body); never reads
// outside [p, p + avail). Checks the checksum unless `frame_verified`.
Status decode_aux_record(const uint8_t* p, size_t avail, uint64_t seed, AuxRecord* out,
                         uint32_t* record_len, bool frame_verified = false);

// Builds an aux frame (never compressed) around `body`, which holds `count`
// encoded records.
std::string encode_aux_frame(std::string_view body, uint32_t count, uint64_t file_offset,
                             uint64_t epoch, uint64_t first_seq, uint64_t durable_seq,
                             uint64_t seed);

// Calls fn(record, seq, body_offset) for each record of a valid aux frame;
// fails when a record is malformed or the records do not fill the body
// exactly.
Status for_each_aux_record(
    const uint8_t* frame, const FrameHeader& h, uint64_t seed,
    const std::function<void(const AuxRecord&, uint64_t seq, uint32_t body_off, uint32_t len)>& fn);

// Whether `name` (a projection state's or dead letter's) is reserved for
// the library's own records (kReservedNamePrefix, format-spec.md [F-47]).
inline bool reserved_aux_name(std::string_view name) {
  return !name.empty() && name.front() == kReservedNamePrefix;
}

// The replayed aux state. Applying records in chain order is idempotent for
// repeated values (compaction copies), and removals of absent entries are
// no-ops. Not thread-safe: the owner locks.
struct AuxState {
  struct SnapshotLoc {
    uint32_t schema_version = 0;
    int64_t timestamp_us = 0;
    uint64_t offset = 0;  // file offset of the record
    uint32_t record_len = 0;
    uint64_t size = 0;  // snapshot bytes
  };
  struct Letter {
    DeadLetter letter;
    uint64_t offset = 0;
    uint32_t record_len = 0;
  };
  struct Proj {
    ProjectionState state;
    uint64_t offset = 0;
    uint32_t record_len = 0;
  };
  // "<type>-<id>" -> version -> where its record is.
  std::map<std::string, std::map<uint64_t, SnapshotLoc>, std::less<>> snapshots;
  std::map<uint64_t, Letter> dead_letters;
  std::map<std::string, Proj, std::less<>> projections;
  uint64_t snapshot_count = 0;
  uint64_t live_bytes = 0;  // record bytes of live entries
  uint64_t max_id = 0;      // highest dead letter id seen

  // `offset` is the record's file offset (snapshots are read through it).
  void apply(const AuxRecord& r, uint64_t offset, uint32_t record_len);
};

// The aux chain as a LogView: aux segments in epoch order ("positions" are
// aux sequences), through a caller's byte accessor.
class AuxChainView final : public LogView {
 public:
  using Bytes = std::function<const uint8_t*(uint64_t slot, uint64_t* avail)>;
  AuxChainView(std::vector<EventSeg> segs, uint64_t segment_size, uint64_t seed, Bytes bytes);
  size_t segment_count() const override { return segs_.size(); }
  const EventSeg& segment(size_t index) const override { return segs_[index]; }
  const uint8_t* bytes(uint64_t slot, uint64_t* avail) const override {
    return bytes_(slot, avail);
  }

 private:
  std::vector<EventSeg> segs_;
  Bytes bytes_;
};

// What a walk of the aux chain found.
struct AuxScan {
  AuxState state;
  uint64_t frames = 0;
  uint64_t frame_bytes = 0;
  uint64_t next_seq = 1;        // the sequence the next record gets
  uint64_t durable_hint = 0;    // highest durable_position of the frames read
  size_t tail_seg = 0;          // where the walk stopped (appends continue there)
  uint64_t tail_offset = 0;     // 0: the chain has no segment
  std::optional<BadFrame> bad;  // the first bad frame, if any
  bool bad_is_damage = false;   // a later frame proves it durable [F-31]
};

// Walks the whole aux chain of `view` by [F-30]/[F-38], replaying records.
AuxScan scan_aux_chain(const AuxChainView& view);

}  // namespace eventsource
