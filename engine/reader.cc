// The read paths over the mapped segments: one record by locator, one
// stream through the index, the whole log in order, and refresh() for
// read-only handles following a live writer.
#include <fmt/format.h>

#include <algorithm>

#include "engine/coding.h"
#include "engine/format.h"
#include "engine/store_impl.h"

namespace eventsource {

namespace fh = format::frame_header;
namespace sh = format::segment_header;
using format::SegmentKind;

Status Store::Impl::read_locator(uint64_t locator, RecordedEvent* ev) const {
  const bool compressed = (locator & format::kLocatorCompressed) != 0;
  const uint64_t off = locator & format::kLocatorOffsetMask;
  const uint64_t slot = off < format::kFileHeaderSize ? kNoSlot : slot_of(off);
  const uint8_t* map = slot == kNoSlot ? nullptr : slot_map(slot);
  if (map == nullptr)
    return corruption(fmt::format("{}: index points at offset {}, outside every event segment "
                                  "(run 'esdump verify {}')",
                                  path_, hex(off), path_),
                      -1, static_cast<int64_t>(off));
  const uint64_t in = off - slot_offset(slot);
  std::string why;
  if (!compressed) {
    uint32_t len;
    if (in < sh::kSize + fh::kSize ||
        !decode_record(map + in, seg_size_ - in, seed_, ev, &len, &why))
      return corruption(
          fmt::format("{}: {} (run 'esdump verify {}')", where(slot, off),
                      why.empty() ? "index points inside a segment header" : why, path_),
          static_cast<int64_t>(slot), static_cast<int64_t>(off));
    return Status();
  }
  const uint32_t want = static_cast<uint32_t>((locator >> 48) & 0x7fff);
  // Consecutive reads often hit the same compressed frame: keep its body.
  thread_local std::string body;
  thread_local const void* body_owner = nullptr;
  thread_local uint64_t body_frame = 0, body_epoch = 0, body_seed = 0;
  FrameHeader h;
  uint64_t epoch = get_u64(map + sh::kEpoch);
  if (in < sh::kSize || check_frame(map + in, seg_size_ - in, off, epoch, seed_, &h, &why,
                                    seg_size_) != FrameState::kValid)
    return corruption(fmt::format("{}: {} (run 'esdump verify {}')", where(slot, off),
                                  why.empty() ? "no frame at the indexed offset" : why, path_),
                      static_cast<int64_t>(slot), static_cast<int64_t>(off));
  const uint8_t* p = map + in + fh::kSize;
  if (h.compressed()) {
    if (body_owner != this || body_frame != off || body_epoch != epoch || body_seed != seed_) {
      const uint8_t* b;
      body_owner = nullptr;
      if (!frame_body(map + in, h, &body, &b, &why))
        return corruption(fmt::format("{}: {}", where(slot, off), why), static_cast<int64_t>(slot),
                          static_cast<int64_t>(off));
      body_owner = this;
      body_frame = off;
      body_epoch = epoch;
      body_seed = seed_;
    }
    p = reinterpret_cast<const uint8_t*>(body.data());
  }
  uint64_t pos = 0;
  for (uint32_t i = 0; i <= want; ++i) {
    uint32_t len;
    if (i >= h.count || !decode_record(p + pos, h.raw_len - pos, seed_, ev, &len, &why))
      return corruption(
          fmt::format("{}: record {}: {}", where(slot, off), i,
                      why.empty() ? "index names a record past the frame's count" : why),
          static_cast<int64_t>(slot), static_cast<int64_t>(off));
    pos += len;
  }
  return Status();
}

Status Store::Impl::read_stream(const StreamId& stream, StreamVersion from, uint64_t max_count,
                                ReadDirection direction, const EventCallback& fn) const {
  if (closed_) return closed(fmt::format("{}: store is closed", path_));
  const std::string key = stream_key(stream);
  thread_local std::vector<uint64_t> locs;
  locs.clear();
  uint64_t first_version = 0;
  {
    std::shared_lock ix(index_mu_);
    const StreamIndex::Entry* e = index_.find(key);
    if (e == nullptr || max_count == 0) return Status();
    std::string why = StreamIndex::verify_entry(*e, seed_);
    if (!why.empty())
      return corruption(
          fmt::format("{}: stream {}: {} (run 'esdump verify {}')", path_, key, why, path_),
          static_cast<int64_t>(index_slot_), -1);
    const uint64_t version = e->version();
    if (direction == ReadDirection::kForward) {
      uint64_t start = std::max<uint64_t>(from.value, 1);
      for (uint64_t v = start; v <= version && locs.size() < max_count; ++v)
        locs.push_back(e->locator(v));
      first_version = start;
    } else {
      uint64_t start = (from.value == 0 || from.value > version) ? version : from.value;
      for (uint64_t v = start; v >= 1 && locs.size() < max_count; --v)
        locs.push_back(e->locator(v));
      first_version = start;
    }
  }
  const uint64_t committed = committed_.load(std::memory_order_acquire);
  std::vector<uint64_t> mine;  // fn may read again on this thread
  mine.swap(locs);
  for (size_t i = 0; i < mine.size(); ++i) {
    RecordedEvent ev;
    Status s = read_locator(mine[i], &ev);
    if (!s.ok()) return s;
    const uint64_t want =
        direction == ReadDirection::kForward ? first_version + i : first_version - i;
    if (ev.version.value != want || ev.stream_type != stream.type || ev.stream_id != stream.id)
      return corruption(fmt::format("{}: index entry for {} version {} points at {} version {} "
                                    "(run 'esdump verify {}')",
                                    path_, key, want, ev.stream_name(), ev.version.value, path_),
                        -1, static_cast<int64_t>(mine[i] & format::kLocatorOffsetMask));
    if (ev.position.value > committed) {
      if (direction == ReadDirection::kForward) break;
      continue;
    }
    if (!fn(ev)) break;
  }
  mine.clear();
  if (locs.capacity() < mine.capacity()) locs.swap(mine);
  return Status();
}

Status Store::Impl::read_all(GlobalPosition from, const ReadFilter& filter, uint64_t max_count,
                             const EventCallback& fn) const {
  if (closed_) return closed(fmt::format("{}: store is closed", path_));
  const uint64_t committed = committed_.load(std::memory_order_acquire);
  uint64_t want = std::max<uint64_t>(from.value, 1);
  if (want > committed || max_count == 0) return Status();
  const uint32_t nsegs = seg_count_.load(std::memory_order_acquire);
  // Last segment starting at or before `want`.
  size_t si = 0;
  {
    size_t lo = 0, hi = nsegs;
    while (lo < hi) {
      size_t mid = (lo + hi) / 2;
      if (segs_[mid].first_position <= want)
        lo = mid + 1;
      else
        hi = mid;
    }
    si = lo == 0 ? 0 : lo - 1;
  }
  thread_local std::string buf;
  uint64_t delivered = 0;
  bool stop = false;
  uint64_t expected = si < nsegs ? segs_[si].first_position : 1;
  // Everything up to `committed` must be there: running out of log before it
  // (a zeroed or damaged header, a segment that does not continue the log)
  // is corruption, never a silent short read.
  auto missing = [&](uint64_t slot, uint64_t off, const std::string& why) {
    return corruption(fmt::format("{}: {}; events {}..{} are committed but unreadable (run "
                                  "'esdump verify {}')",
                                  where(slot, off), why, expected, committed, path_),
                      static_cast<int64_t>(slot), static_cast<int64_t>(off));
  };
  for (; si < nsegs && !stop; ++si) {
    const EventSeg seg = segs_[si];
    const uint64_t base = slot_offset(seg.slot);
    const uint64_t end = base + seg_size_;
    const uint8_t* map = slot_map(seg.slot);
    uint64_t off = base + sh::kSize;
    if (seg.first_position != expected)
      return missing(
          seg.slot, off,
          fmt::format("segment starts at position {}, expected {}", seg.first_position, expected));
    while (off < end && !stop) {
      if (expected > committed) return Status();
      const uint8_t* p = map + (off - base);
      if (end - off >= fh::kSize) {
        // Frames wholly before `want` are skipped on their header alone; if
        // a damaged length misleads the skip, the next header is caught below.
        uint64_t first = get_u64(p + fh::kFirstPosition);
        uint32_t count = get_u32(p + fh::kCount);
        uint32_t len = get_u32(p + fh::kFrameLen);
        if (first == expected && count > 0 && first + count <= want && len >= fh::kSize &&
            len % format::kFrameAlign == 0 && len <= end - off &&
            get_u64(p + fh::kFileOffset) == off) {
          expected += count;
          off += len;
          continue;
        }
      }
      FrameHeader h;
      std::string why;
      FrameState st = check_frame(p, end - off, off, seg.epoch, seed_, &h, &why, seg_size_);
      if (st == FrameState::kValid && h.first_position != expected) {
        st = FrameState::kBad;
        why = fmt::format("frame starts at position {}, expected {}", h.first_position, expected);
      }
      if (st != FrameState::kValid) {
        // The rest of a segment that the next one continues is skipped (see scan_log).
        if (si + 1 < nsegs && segs_[si + 1].first_position == expected) break;
        return missing(seg.slot, off, st == FrameState::kNeverWritten ? "the log ends here" : why);
      }
      bool ok = for_each_record(
          p, h, seed_, &buf, &why,
          [&](const RecordedEvent& ev, uint32_t, uint32_t) {
            uint64_t pos = ev.position.value;
            if (pos > committed) {
              stop = true;
              return false;
            }
            if (pos < want) return true;
            if (!filter.event_types.empty() &&
                std::find(filter.event_types.begin(), filter.event_types.end(), ev.type) ==
                    filter.event_types.end())
              return true;
            if (!filter.stream_type.empty() && ev.stream_type != filter.stream_type) return true;
            if (filter.tenant && ev.tenant != *filter.tenant) return true;
            if (!fn(ev) || ++delivered >= max_count) {
              stop = true;
              return false;
            }
            return true;
          },
          RecordCheck::kFrameVerified);
      if (!ok)
        return corruption(
            fmt::format("{}: {} (run 'esdump verify {}')", where(seg.slot, off), why, path_),
            static_cast<int64_t>(seg.slot), static_cast<int64_t>(off));
      expected += h.count;
      off += h.frame_len;
    }
  }
  if (!stop && expected <= committed)
    return corruption(fmt::format("{}: the log ends at position {} but {} events are committed "
                                  "(run 'esdump verify {}')",
                                  path_, expected - 1, committed, path_),
                      -1, -1);
  return Status();
}

Result<GlobalPosition> Store::Impl::refresh() {
  if (closed_) return closed(fmt::format("{}: store is closed", path_));
  if (!read_only_) return GlobalPosition(committed_.load());
  std::lock_guard lock(write_mu_);
  EVENTSOURCE_RETURN_IF_ERROR(read_slots());
  uint32_t nsegs = seg_count_.load();
  if (nsegs == 0) return GlobalPosition(committed_.load());
  size_t si = 0;
  uint64_t off = 0;
  if (tail_offset_ == 0) {
    off = slot_offset(segs_[0].slot) + sh::kSize;
  } else {
    for (uint32_t i = 0; i < nsegs; ++i)
      if (segs_[i].slot == tail_slot_ && segs_[i].epoch == tail_epoch_) si = i;
    off = tail_offset_;
  }
  std::optional<BadFrame> bad;
  EVENTSOURCE_RETURN_IF_ERROR(scan_log(si, off, next_position_, &bad));
  // A bad frame at the tail of a live store is a write in progress; damage
  // before the tail is reported by read_all/read_stream and verify.
  publish_committed(next_position_ - 1);
  return GlobalPosition(committed_.load());
}

}  // namespace eventsource
