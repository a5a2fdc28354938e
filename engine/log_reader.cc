// The frame walker shared by every reader of the event log; see log_reader.h.
#include "engine/log_reader.h"

#include <fmt/format.h>

#include <algorithm>

#include "engine/coding.h"
#include "engine/format.h"

namespace eventsource {

namespace fh = format::frame_header;
namespace sh = format::segment_header;

uint64_t LogView::slot_offset(uint64_t slot) const {
  return format::kFileHeaderSize + slot * segment_size;
}

LogReader::LogReader(const LogView& view, size_t seg_index, uint64_t offset,
                     uint64_t expected_position)
    : view_(view) {
  seek(seg_index, offset, expected_position);
}

void LogReader::seek(size_t seg_index, uint64_t offset, uint64_t expected_position) {
  si_ = seg_index;
  expected_ = expected_position;
  // Offset 0 enters the segment as the walk enters every next one: next()
  // checks that it starts at the expected position [F-30].
  entered_ = offset != 0;
  off_ = offset;
  if (si_ < view_.segment_count() && off_ == 0)
    off_ = view_.slot_offset(view_.segment(si_).slot) + sh::kSize;
}

LogReader::Step LogReader::next(LogFrame* frame, BadFrame* bad) {
  const size_t nsegs = view_.segment_count();
  while (si_ < nsegs) {
    const EventSeg& seg = view_.segment(si_);
    const uint64_t base = view_.slot_offset(seg.slot);
    const uint64_t end = base + view_.segment_size;
    if (!entered_) {
      entered_ = true;
      off_ = base + sh::kSize;
      if (seg.first_position != expected_) {
        *bad = BadFrame{si_, off_, expected_,
                        fmt::format("segment starts at position {}, expected {}",
                                    seg.first_position, expected_),
                        /*gap=*/true};
        return Step::kBad;
      }
    }
    uint64_t avail = 0;
    const uint8_t* map = view_.bytes(seg.slot, &avail);
    const bool next_continues =
        si_ + 1 < nsegs && view_.segment(si_ + 1).first_position == expected_;
    if (off_ < end && map != nullptr && off_ - base < avail) {
      // Bytes past `avail` (a file cut short) read as never written.
      FrameHeader h;
      Status problem;
      FrameState st = check_frame_at(view_, seg, off_, &h, &problem);
      if (st == FrameState::kValid && h.first_position != expected_) {
        st = FrameState::kBad;
        problem = bad_bytes(
            fmt::format("frame starts at position {}, expected {}", h.first_position, expected_),
            off_);
      }
      if (st == FrameState::kValid) {
        *frame = LogFrame{map + (off_ - base), h, si_, seg.slot, off_};
        expected_ += h.count;
        off_ += h.frame_len;
        return Step::kFrame;
      }
      if (st == FrameState::kBad && !next_continues) {
        *bad = BadFrame{si_, off_, expected_, problem.message()};
        return Step::kBad;
      }
    }
    // The segment ends here: never written, full, or the remains of a
    // failed write that the next segment retried.
    if (si_ + 1 == nsegs) {
      if (off_ > end) off_ = end;
      return Step::kEnd;
    }
    left_seg_ = si_;
    left_off_ = std::min(off_, end);
    ++si_;
    entered_ = false;
  }
  return Step::kEnd;
}

void LogReader::skip_segment() {
  if (si_ >= view_.segment_count()) return;
  const uint64_t end = view_.slot_offset(view_.segment(si_).slot) + view_.segment_size;
  left_seg_ = si_;
  left_off_ = std::min(off_, end);
  ++si_;
  entered_ = false;
}

void LogReader::skip_before(uint64_t position) {
  const size_t nsegs = view_.segment_count();
  if (si_ < nsegs && !entered_) {
    // Enter the segment only where next() would; a gap is left for it to report.
    const EventSeg& seg = view_.segment(si_);
    if (seg.first_position != expected_) return;
    entered_ = true;
    off_ = view_.slot_offset(seg.slot) + sh::kSize;
  }
  while (si_ < nsegs && entered_) {
    const EventSeg& seg = view_.segment(si_);
    const uint64_t base = view_.slot_offset(seg.slot);
    const uint64_t end = base + view_.segment_size;
    uint64_t avail = 0;
    const uint8_t* map = view_.bytes(seg.slot, &avail);
    const uint64_t limit = base + std::min(avail, view_.segment_size);
    if (map == nullptr || off_ >= limit || limit - off_ < fh::kSize || off_ >= end) return;
    const uint8_t* p = map + (off_ - base);
    const uint64_t first = get_u64(p + fh::kFirstPosition);
    const uint32_t count = get_u32(p + fh::kCount);
    const uint32_t len = get_u32(p + fh::kFrameLen);
    if (first != expected_ || count == 0 || first + count > position || len < fh::kSize ||
        len % format::kFrameAlign != 0 || len > limit - off_ ||
        get_u64(p + fh::kFileOffset) != off_)
      return;
    expected_ += count;
    off_ += len;
  }
}

FrameState check_frame_at(const LogView& view, const EventSeg& seg, uint64_t offset, FrameHeader* h,
                          Status* problem) {
  const uint64_t base = view.slot_offset(seg.slot);
  uint64_t avail = 0;
  const uint8_t* map = view.bytes(seg.slot, &avail);
  avail = std::min(avail, view.segment_size);
  if (map == nullptr || offset < base + sh::kSize || offset >= base + view.segment_size) {
    *problem = bad_bytes("no frame can start there", static_cast<int64_t>(offset));
    return FrameState::kBad;
  }
  if (offset >= base + avail) return FrameState::kNeverWritten;
  return check_frame(map + (offset - base), base + avail - offset, offset, seg.epoch, view.seed, h,
                     problem, view.segment_size, view.frame_type);
}

Status check_checkpoint_claim(const LogView& view, uint64_t last_frame_offset,
                              uint64_t durable_position, uint64_t* frame_end) {
  const auto off = static_cast<int64_t>(last_frame_offset);
  const EventSeg* seg = nullptr;
  if (last_frame_offset >= format::kFileHeaderSize) {
    const uint64_t slot = (last_frame_offset - format::kFileHeaderSize) / view.segment_size;
    for (size_t i = 0; i < view.segment_count(); ++i)
      if (view.segment(i).slot == slot) seg = &view.segment(i);
  }
  if (seg == nullptr) return bad_bytes("its segment is not an event segment", off);
  FrameHeader h;
  Status problem;
  switch (check_frame_at(view, *seg, last_frame_offset, &h, &problem)) {
    case FrameState::kNeverWritten:
      return bad_bytes("nothing was ever written there", off);
    case FrameState::kBad:
      return problem;
    case FrameState::kValid:
      break;
  }
  if (h.first_position + h.count - 1 != durable_position)
    return bad_bytes(
        fmt::format("the frame there ends at position {}", h.first_position + h.count - 1), off);
  *frame_end = last_frame_offset + h.frame_len;
  return Status();
}

Status check_log_end(const LogView& view, uint64_t frame_end, uint64_t log_end, uint64_t covers) {
  if (log_end == frame_end) return Status();
  // frame_end - 1 lies in the frame, so in its segment (a frame that fills
  // its segment ends at the next slot).
  const uint64_t slot = (frame_end - 1 - format::kFileHeaderSize) / view.segment_size;
  for (size_t i = 0; i + 1 < view.segment_count(); ++i) {
    if (view.segment(i).slot != slot) continue;
    const EventSeg& next = view.segment(i + 1);
    if (log_end == view.slot_offset(next.slot) + sh::kSize && next.first_position == covers + 1)
      return Status();
  }
  return bad_bytes(
      fmt::format("the index says the log continues at {}, the checkpoint's last frame ends at {}",
                  hex(log_end), hex(frame_end)));
}

uint64_t find_valid_frame(const LogView& view, size_t seg_index, uint64_t from, FrameHeader* h) {
  const EventSeg& seg = view.segment(seg_index);
  const uint64_t base = view.slot_offset(seg.slot);
  uint64_t avail = 0;
  const uint8_t* map = view.bytes(seg.slot, &avail);
  if (map == nullptr) return 0;
  const uint64_t end = base + std::min(avail, view.segment_size);
  for (uint64_t off = align_up(std::max(from, base + sh::kSize), format::kFrameAlign);
       off + fh::kSize <= end; off += format::kFrameAlign) {
    const uint8_t* p = map + (off - base);
    if (get_u64(p + fh::kFileOffset) != off) continue;  // cheap filter first
    Status problem;
    if (check_frame_at(view, seg, off, h, &problem) == FrameState::kValid) return off;
  }
  return 0;
}

bool later_frame_proves_durable(const LogView& view, const BadFrame& bad) {
  // A frame written after position P was durable records durable >= P; if
  // such a frame follows the bad one, the bad bytes were once durable data.
  // From the bad offset itself: a valid frame with an unexpected position
  // carries its own durable hint.
  for (size_t si = bad.seg_index; si < view.segment_count(); ++si) {
    FrameHeader h;
    uint64_t off = si == bad.seg_index ? bad.offset : 0;
    while ((off = find_valid_frame(view, si, off, &h)) != 0) {
      if (h.durable_position >= bad.expected_position) return true;
      off += format::kFrameAlign;
    }
  }
  return false;
}

}  // namespace eventsource
