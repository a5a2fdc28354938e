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

// Cache lines read_stream prefetches per record: a record of a few hundred
// bytes (the header alone is 96) spans about this many.
static constexpr uint64_t kPrefetchLines = 4;

Status Store::Impl::read_locator(uint64_t locator, RecordedEvent* ev, DecodeCache* cache) const {
  const format::Locator loc = format::decode_locator(locator);
  const bool compressed = loc.compressed;
  const uint64_t off = loc.offset;
  const uint64_t slot = off < format::kFileHeaderSize ? kNoSlot : slot_of(off);
  const uint8_t* map = slot == kNoSlot ? nullptr : slot_map(slot);
  if (map == nullptr)
    return corruption(fmt::format("{}: index points at offset {}, outside every event segment "
                                  "(run 'esdump verify {}')",
                                  path_, hex(off), path_),
                      -1, static_cast<int64_t>(off));
  const uint64_t in = off - slot_offset(slot);
  auto bad_record = [&](std::string_view why) {
    return corruption(fmt::format("{}: {} (run 'esdump verify {}')", where(slot, off), why, path_),
                      static_cast<int64_t>(slot), static_cast<int64_t>(off));
  };
  if (!compressed) {
    uint32_t len;
    if (in < sh::kSize + fh::kSize) return bad_record("index points inside a segment header");
    if (Status s = decode_record(map + in, seg_size_ - in, seed_, ev, &len); !s.ok())
      return bad_record(s.message());
    return Status();
  }
  const uint32_t want = loc.record;
  FrameHeader h;
  const EventSeg seg{slot, get_u64(map + sh::kEpoch), 0};
  Status problem;
  if (check_frame_at(MappedLog(*this), seg, off, &h, &problem) != FrameState::kValid)
    return bad_record(problem.ok() ? "no frame at the indexed offset" : problem.message());
  const uint8_t* p = map + in + fh::kSize;
  if (h.compressed()) {
    // Consecutive reads often hit the same compressed frame: keep its body.
    // The cache belongs to one read call, so a callback that reads again
    // (with a cache of its own) cannot pull the bytes from under the views
    // this read handed out.
    if (!cache->valid || cache->frame != off || cache->epoch != seg.epoch) {
      const uint8_t* b;
      cache->valid = false;
      if (Status s = frame_body(map + in, h, &cache->body, &b); !s.ok())
        return bad_record(s.message());
      cache->valid = true;
      cache->frame = off;
      cache->epoch = seg.epoch;
    }
    p = reinterpret_cast<const uint8_t*>(cache->body.data());
  }
  uint64_t pos = 0;
  for (uint32_t i = 0; i <= want; ++i) {
    uint32_t len;
    if (i >= h.count)
      return bad_record(fmt::format("record {}: index names a record past the frame's count", i));
    if (Status s = decode_record(p + pos, h.raw_len - pos, seed_, ev, &len); !s.ok())
      return bad_record(fmt::format("record {}: {}", i, s.message()));
    pos += len;
  }
  return Status();
}

Status Store::Impl::read_stream(const StreamId& stream, const ReadStreamOptions& options,
                                const EventCallback& fn) const {
  const StreamVersion from = options.from;
  const uint64_t max_count = options.max_count;
  const ReadDirection direction = options.direction;
  OpGuard guard(*this);
  if (!guard.ok()) return closed_status();
  const std::string key = stream_key(stream);
  std::vector<uint64_t> locs;  // per call: fn may read again on this thread
  uint64_t first_version = 0;
  uint64_t committed = 0;
  {
    ReaderLock ix(&index_mu_);  // the index holds committed events only
    committed = committed_.load(std::memory_order_acquire);
    const StreamIndex::Entry* e = index_.find(key);
    if (e == nullptr || max_count == 0) return Status();
    if (Status bad = StreamIndex::verify_entry(*e, seed_); !bad.ok())
      return corruption(fmt::format("{}: stream {}: {} (run 'esdump verify {}')", path_, key,
                                    bad.message(), path_),
                        static_cast<int64_t>(index_slot_ == kNoSlot ? -1 : index_slot_), -1);
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
  // A stream's events lie in many frames, so each record is a cache (and
  // TLB) miss. Ask for the next kPrefetchAhead records while decoding this
  // one, so the misses overlap instead of queueing one after another.
  // Prefetches never fault; a locator that points nowhere is still reported
  // by read_locator when its turn comes.
  constexpr size_t kPrefetchAhead = 16;
  auto prefetch = [this](uint64_t locator) {
    const uint64_t off = format::decode_locator(locator).offset;
    if (off < format::kFileHeaderSize) return;
    const uint64_t slot = slot_of(off);
    const uint8_t* map = slot_map(slot);
    const uint64_t in = off - slot_offset(slot);
    if (map == nullptr || in >= seg_size_) return;
    // The record header and what follows it (a frame header for a
    // compressed frame): the first lines are where decoding starts.
    for (uint64_t line = 0; line < kPrefetchLines && in + line * 64 < seg_size_; ++line)
      __builtin_prefetch(map + in + line * 64, 0, 3);
  };
  for (size_t i = 0; i < std::min(locs.size(), kPrefetchAhead); ++i) prefetch(locs[i]);
  DecodeCache cache;
  for (size_t i = 0; i < locs.size(); ++i) {
    if (i + kPrefetchAhead < locs.size()) prefetch(locs[i + kPrefetchAhead]);
    RecordedEvent ev;
    Status s = read_locator(locs[i], &ev, &cache);
    if (!s.ok()) return s;
    const uint64_t want =
        direction == ReadDirection::kForward ? first_version + i : first_version - i;
    if (ev.version.value != want || ev.stream_type != stream.type || ev.stream_id != stream.id)
      return corruption(fmt::format("{}: index entry for {} version {} points at {} version {} "
                                    "(run 'esdump verify {}')",
                                    path_, key, want, ev.stream_name(), ev.version.value, path_),
                        -1, static_cast<int64_t>(format::decode_locator(locs[i]).offset));
    if (ev.position.value > committed) {
      if (direction == ReadDirection::kForward) break;
      continue;
    }
    if (!fn(ev)) break;
  }
  return Status();
}

Status Store::Impl::read_all(const ReadAllOptions& options, const EventCallback& fn) const {
  const ReadFilter& filter = options.filter;
  const uint64_t max_count = options.max_count;
  OpGuard guard(*this);
  if (!guard.ok()) return closed_status();
  const uint64_t committed = committed_.load(std::memory_order_acquire);
  const uint64_t want = std::max<uint64_t>(options.from.value, 1);
  if (want > committed || max_count == 0) return Status();
  const MappedLog log(*this);
  // Last segment starting at or before `want`.
  size_t si = 0;
  {
    size_t lo = 0, hi = log.segment_count();
    while (lo < hi) {
      size_t mid = (lo + hi) / 2;
      if (log.segment(mid).first_position <= want)
        lo = mid + 1;
      else
        hi = mid;
    }
    si = lo == 0 ? 0 : lo - 1;
  }
  LogReader reader(log, si, 0, si < log.segment_count() ? log.segment(si).first_position : 1);
  reader.skip_before(want);
  std::string buf;  // decompressed bodies; per call, as callbacks may read again
  uint64_t delivered = 0;
  bool stop = false;
  LogFrame f;
  BadFrame bad;
  // Everything up to `committed` must be there [F-36]: running out of log
  // before it is corruption, never a silent short read.
  while (!stop && reader.expected_position() <= committed) {
    const LogReader::Step step = reader.next(&f, &bad);
    if (step != LogReader::Step::kFrame) {
      const bool end = step == LogReader::Step::kEnd;
      const uint64_t slot =
          end ? (log.segment_count() > 0 ? log.segment(reader.seg_index()).slot : 0)
              : log.segment(bad.seg_index).slot;
      const uint64_t off = end ? reader.offset() : bad.offset;
      return corruption(fmt::format("{}: {}; events {}..{} are committed but unreadable (run "
                                    "'esdump verify {}')",
                                    where(slot, off), end ? "the log ends here" : bad.why,
                                    reader.expected_position(), committed, path_),
                        static_cast<int64_t>(slot), static_cast<int64_t>(off));
    }
    const Status walked = for_each_record(
        f.bytes, f.header, seed_, &buf,
        [&](const RecordedEvent& ev, uint32_t, uint32_t) {
          const uint64_t pos = ev.position.value;
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
    if (!walked.ok())
      return corruption(fmt::format("{}: {} (run 'esdump verify {}')", where(f.slot, f.offset),
                                    walked.message(), path_),
                        static_cast<int64_t>(f.slot), static_cast<int64_t>(f.offset));
  }
  return Status();
}

Result<GlobalPosition> Store::Impl::refresh() {
  OpGuard guard(*this);
  if (!guard.ok()) return closed_status();
  if (!read_only_) return GlobalPosition(committed_.load());
  MutexLock lock(&write_mu_);
  EVENTSOURCE_RETURN_IF_ERROR(read_slots());
  {
    // The aux state as the writer has it now (aux_store.cc). Damage seen
    // mid-compaction of a live writer is not final: keep the old state.
    Status aux = open_aux();
    if (!aux.ok() && aux.code() != Code::kCorruption) return aux;
  }
  const std::shared_ptr<const SegTable> segs = seg_table();
  if (segs->empty()) return GlobalPosition(committed_.load());
  size_t si = 0;
  uint64_t off = 0;
  if (tail_offset_ != 0) {
    for (size_t i = 0; i < segs->size(); ++i)
      if ((*segs)[i].slot == tail_slot_ && (*segs)[i].epoch == tail_epoch_) si = i;
    off = tail_offset_;
  }
  // scan_log publishes what it indexed as committed, in one step with the
  // index. A bad frame at the tail of a live store is a write in progress;
  // damage before the tail is reported by read_all/read_stream and verify.
  std::optional<BadFrame> bad;
  EVENTSOURCE_RETURN_IF_ERROR(scan_log(si, off, next_position_, &bad));
  return GlobalPosition(committed_.load());
}

Result<std::optional<EventLocation>> Store::Impl::find_event(const Uuid& id) const {
  OpGuard guard(*this);
  if (!guard.ok()) return closed_status();
  std::vector<uint64_t> candidates;
  {
    ReaderLock ix(&index_mu_);  // the committed view: pending batches are not in it
    const Status bad = index_.ids().find(IdTable::fingerprint(id, seed_),
                                         [&](uint64_t loc) { candidates.push_back(loc); });
    if (!bad.ok())
      return corruption(fmt::format("{}: index segment {}: {} (run 'esdump verify {}')", path_,
                                    index_slot_, bad.message(), path_),
                        static_cast<int64_t>(index_slot_), -1);
  }
  // Committed records stay where they are: the locators outlive the lock.
  DecodeCache cache;
  for (uint64_t loc : candidates) {
    RecordedEvent ev;
    EVENTSOURCE_RETURN_IF_ERROR(read_locator(loc, &ev, &cache));
    if (ev.id == id)
      return std::optional<EventLocation>(EventLocation{
          ev.position, StreamId{std::string(ev.stream_type), std::string(ev.stream_id)},
          ev.version});
  }
  return std::optional<EventLocation>();
}

StreamVersion Store::Impl::stream_version(const StreamId& stream) const {
  OpGuard guard(*this);
  if (!guard.ok()) return StreamVersion(0);
  ReaderLock ix(&index_mu_);
  const StreamIndex::Entry* e = index_.find(stream_key(stream));
  return StreamVersion(e ? e->version() : 0);
}

std::vector<StreamInfo> Store::Impl::list_streams() const {
  std::vector<StreamInfo> out;
  OpGuard guard(*this);
  if (!guard.ok()) return out;
  {
    ReaderLock ix(&index_mu_);
    out.reserve(index_.stream_count());
    // (A damaged persisted entry ends the list early; reads of the streams
    // it hides fail with kCorruption, and verify names it.)
    index_
        .for_each([&](const std::string& key, const auto& e) {
          out.push_back(StreamInfo{key.substr(0, e.type_len), key.substr(e.type_len + 1),
                                   StreamVersion(e.version())});
        })
        .ignore_error();
  }
  std::sort(out.begin(), out.end(), [](const StreamInfo& a, const StreamInfo& b) {
    return std::tie(a.type, a.id) < std::tie(b.type, b.id);
  });
  return out;
}

}  // namespace eventsource
