// The one frame walker: every reader of the event log (open's recovery scan,
// refresh, read_all, stats, verify and repair) walks frames through LogReader,
// so no two of them can judge the same bytes differently. See format-spec.md
// "Reading the log" for the rules it applies.
// Thread safety: a LogReader is used by one thread; the bytes it reads must
// stay mapped while it runs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/frame.h"

namespace eventsource {

// An event segment in log order. Immutable once published.
struct EventSeg {
  uint64_t slot = 0;
  uint64_t epoch = 0;
  uint64_t first_position = 0;
  bool operator==(const EventSeg&) const = default;
};

// Where the walk found bytes that do not continue the log.
struct BadFrame {
  size_t seg_index = 0;  // index into the event segment list
  uint64_t offset = 0;   // file offset
  uint64_t expected_position = 0;
  std::string why;
  bool gap = false;  // a segment that does not start at the expected position
};

// The event segments of one log and how to reach their bytes.
class LogView {
 public:
  virtual ~LogView() = default;
  virtual size_t segment_count() const = 0;
  virtual const EventSeg& segment(size_t index) const = 0;
  // The mapped bytes of segment slot `slot` (starting at its segment header)
  // and how many of them exist; bytes past *avail read as never written (a
  // file cut short inside its last segment). nullptr when not mapped.
  virtual const uint8_t* bytes(uint64_t slot, uint64_t* avail) const = 0;

  uint64_t segment_size = 0;
  uint64_t seed = 0;
  // The frame type its segments hold: the event log, or the aux chain
  // (whose "positions" are aux sequences, format-spec.md "Aux segments").
  format::FrameType frame_type = format::FrameType::kEvents;
  uint64_t slot_offset(uint64_t slot) const;
};

// A frame that continues the log: checksummed, at its own offset, in its
// segment's epoch, starting at the expected position.
struct LogFrame {
  const uint8_t* bytes = nullptr;
  FrameHeader header;
  size_t seg_index = 0;
  uint64_t slot = 0;
  uint64_t offset = 0;  // file offset of the frame
};

class LogReader {
 public:
  enum class Step : uint8_t {
    kFrame,  // *frame holds the next frame of the log
    kEnd,    // the log ends here: a never-written header in the last segment
    kBad,    // *bad says where and why the bytes do not continue the log
  };

  // Starts at file offset `offset` of segment `seg_index`, expecting the
  // frame that holds `expected_position`. Offset 0 enters the segment at its
  // first frame the way the walk enters every next segment: it must start at
  // `expected_position`, else next() returns kBad ("gap"). Any other offset
  // continues inside a segment already entered, without that check.
  LogReader(const LogView& view, size_t seg_index, uint64_t offset, uint64_t expected_position);

  // The next frame, by the log-scan rules of format-spec.md [F-30]:
  //  - a segment entered at its first frame (every segment after the first
  //    one walked, and that one when started at offset 0) must start at the
  //    expected position, else kBad at its first frame ("gap");
  //  - a never-written (all-zero) header ends the segment; the log goes on
  //    in the next segment, if any, else kEnd;
  //  - an invalid frame ([F-11]), or a valid one that starts at another
  //    position than expected, ends the segment when the next segment starts
  //    at the expected position (a failed write the writer retried there);
  //    else it is kBad.
  // Records are not decoded here ([F-12]: callers decode the frames they use).
  // After kBad the walk stays put: seek() goes on past the damage.
  Step next(LogFrame* frame, BadFrame* bad);

  // Frames that end before `position` are passed over on their header's
  // structure alone (position, count, length, offset), without a checksum.
  // A header that misleads the skip is caught by next() at the frame after.
  void skip_before(uint64_t position);

  // Continues at (seg_index, offset) expecting `expected_position`; offset 0
  // enters the segment afresh, as the constructor does.
  void seek(size_t seg_index, uint64_t offset, uint64_t expected_position);
  // Leaves the current segment: the walk goes on at the start of the next
  // one, which must start at the expected position.
  void skip_segment();

  uint64_t expected_position() const { return expected_; }
  size_t seg_index() const { return si_; }
  // File offset where the next frame would start (past the last one read).
  uint64_t offset() const { return off_; }
  // The last segment the walk left for the next one, and the offset where it
  // stopped in it (where appends would continue had the log ended there).
  bool left_a_segment() const { return left_seg_ != kNone; }
  size_t left_seg_index() const { return left_seg_; }
  uint64_t left_offset() const { return left_off_; }

 private:
  const LogView& view_;
  size_t si_;
  uint64_t off_;
  uint64_t expected_;
  bool entered_;  // false: entering segment si_ checks its first position
  static constexpr size_t kNone = ~size_t{0};
  size_t left_seg_ = kNone;
  uint64_t left_off_ = 0;
};

// Checks the single frame at file offset `offset` of event segment `seg`
// (e.g. the frame a checkpoint or a locator names) as next() would, less the
// position rule. Offsets past the bytes a short file has are never written.
FrameState check_frame_at(const LogView& view, const EventSeg& seg, uint64_t offset, FrameHeader* h,
                          Status* problem);

// Checks a checkpoint's claim [F-23]: the frame at `last_frame_offset` is a
// valid frame of an event segment whose last position is `durable_position`.
// Fails (kCorruption) saying why the data does not back the claim; on
// success *frame_end is the file offset just past that frame.
Status check_checkpoint_claim(const LogView& view, uint64_t last_frame_offset,
                              uint64_t durable_position, uint64_t* frame_end);

// Checks an index's log_end_offset [F-21] against `frame_end`, the end of
// the frame the checkpoint names (from check_checkpoint_claim), and the
// index's covers_position. It is the writer's append offset when the index
// was built: `frame_end`, or, when the writer had rolled to a new segment
// and written nothing there yet, offset 64 of the event segment that follows
// the frame's segment in log order, which then starts at covers + 1.
// Fails (kCorruption) saying why when log_end_offset is neither.
Status check_log_end(const LogView& view, uint64_t frame_end, uint64_t log_end, uint64_t covers);

// The first offset >= `from` in segment `seg_index` where a frame that
// passes check_frame starts (at any position), or 0. Used to tell a torn
// tail from damage with valid frames after it.
uint64_t find_valid_frame(const LogView& view, size_t seg_index, uint64_t from, FrameHeader* h);

// Classifies the first bad spot of a log scan [F-31]: true when some valid
// frame at or after it (at any 8-aligned offset from bad.offset on in its
// segment, or in any later segment) records durable_position >=
// bad.expected_position, i.e. the bad bytes were durable once (damage, never
// a torn tail). The caller also treats bad.expected_position <= the
// checkpoint's durable position as damage.
bool later_frame_proves_durable(const LogView& view, const BadFrame& bad);

}  // namespace eventsource
