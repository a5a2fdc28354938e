// The aux chain of a store: snapshots, dead letters and projection states
// as records in aux segments (format-spec.md "Aux segments"): open and
// recovery of the chain, writes (one frame per call, group-committed like
// appends), lookups from the in-memory state, and compaction.
#include <fmt/format.h>

#include <algorithm>
#include <cassert>
#include <functional>
#include <iterator>
#include <span>

#include "engine/coding.h"
#include "engine/format.h"
#include "engine/store_impl.h"

namespace eventsource {

namespace fh = format::frame_header;
namespace sh = format::segment_header;
namespace ar = format::aux_record;
using format::AuxKind;
using format::SegmentKind;

// How many times a read-only handle reads the slot headers again when the
// aux chain it walks changes under it (a writer compacting without pause).
constexpr int kAuxRereads = 100;

std::vector<EventSeg> aux_segments(const std::vector<SlotInfo>& slots) {
  std::vector<EventSeg> segs;
  for (uint64_t slot = 0; slot < slots.size(); ++slot)
    if (slots[slot].kind == SegmentKind::kAux)
      segs.push_back(EventSeg{slot, slots[slot].epoch, slots[slot].first_position});
  std::sort(segs.begin(), segs.end(),
            [](const EventSeg& a, const EventSeg& b) { return a.epoch < b.epoch; });
  return segs;
}

AuxChainView Store::Impl::aux_view(std::vector<EventSeg> segs) const {
  return AuxChainView(std::move(segs), seg_size_, seed_,
                      [this](uint64_t slot, uint64_t* avail) -> const uint8_t* {
                        *avail = seg_size_;
                        return slot_map(slot);
                      });
}

Status Store::Impl::open_aux() {
  // The aux segments the slot headers name, mapped, in epoch order.
  std::vector<EventSeg> segs;
  auto read_chain = [&]() EVENTSOURCE_NO_THREAD_SAFETY_ANALYSIS -> Status {
    segs = aux_segments(slots_);
    for (const EventSeg& seg : segs) EVENTSOURCE_RETURN_IF_ERROR(map_slot(seg.slot));
    return Status();
  };
  EVENTSOURCE_RETURN_IF_ERROR(read_chain());
  AuxScan scan = scan_aux_chain(aux_view(segs));
  // A read-only handle beside a writer that compacts the aux chain: the
  // writer writes the live records into new segments, then zeroes and frees
  // the old ones, so a walk over the chain the headers named can meet zeros:
  // a bad frame, or what looks like the end of the chain (an older state).
  // Read the headers again after every walk; a chain that changed is walked
  // anew.
  for (int attempt = 0; read_only_ && attempt < kAuxRereads; ++attempt) {
    const std::vector<EventSeg> before = segs;
    EVENTSOURCE_RETURN_IF_ERROR(read_slots());
    EVENTSOURCE_RETURN_IF_ERROR(read_chain());
    if (segs == before) break;
    scan = scan_aux_chain(aux_view(segs));
  }
  uint64_t floor_seq = 1;
  for (int round = 0; scan.bad && round < 2; ++round) {
    const BadFrame bad = *scan.bad;
    const EventSeg seg = segs[bad.seg_index];
    if (repair_mode_) {
      EVENTSOURCE_RETURN_IF_ERROR(aux_cut(aux_view(segs), bad, /*save_side_file=*/true));
    } else if (scan.bad_is_damage) {
      return corruption(
          fmt::format("{}: aux chain: {} (a later aux frame says sequence {} was durable; open "
                      "refuses to drop it: run 'esdump verify {}' for a full report, 'esdump "
                      "repair {}' to cut the aux chain there, keeping the cut bytes in a side "
                      "file)",
                      where(seg.slot, bad.offset), bad.why, bad.expected_position, path_, path_),
          static_cast<int64_t>(seg.slot), static_cast<int64_t>(bad.offset));
    } else if (read_only_) {
      break;  // a torn tail (or a live writer's write in progress): ignored
    } else {
      // A torn tail: never durable, so no acknowledged group/each aux write is in it.
      EVENTSOURCE_RETURN_IF_ERROR(aux_cut(aux_view(segs), bad, /*save_side_file=*/false));
    }
    floor_seq = bad.expected_position;
    EVENTSOURCE_RETURN_IF_ERROR(read_chain());
    scan = scan_aux_chain(aux_view(segs));
  }
  if (scan.bad && !read_only_) {
    const EventSeg seg = segs[scan.bad->seg_index];
    return corruption(
        fmt::format("{}: aux chain: {} remains after cutting (run 'esdump repair {}')",
                    where(seg.slot, scan.bad->offset), scan.bad->why, path_),
        static_cast<int64_t>(seg.slot), static_cast<int64_t>(scan.bad->offset));
  }
  aux_segs_ = segs;
  aux_next_seq_ = std::max(scan.next_seq, floor_seq);
  aux_frame_bytes_ = scan.frame_bytes;
  aux_tail_offset_ = segs.empty() ? 0 : scan.tail_offset;
  // Appends grow the tail segment's allocation again from the tail on [F-8].
  aux_alloc_end_ = aux_tail_offset_;
  aux_written_.store(aux_next_seq_ - 1);
  // Only what a frame proved durable counts as durable: new frames' hints
  // stay exact without a sync at open.
  aux_synced_.store(std::min(scan.durable_hint, aux_next_seq_ - 1));
  MutexLock lock(&aux_mu_);
  aux_state_ = std::move(scan.state);
  aux_pending_.clear();
  return Status();
}

Status Store::Impl::aux_cut(const AuxChainView& view, const BadFrame& bad, bool save_side_file) {
  const EventSeg first = view.segment(bad.seg_index);
  const bool drop_whole = bad.offset == slot_offset(first.slot) + sh::kSize;
  std::vector<Range> ranges;
  const uint64_t from = drop_whole ? slot_offset(first.slot) : bad.offset;
  ranges.push_back({from, slot_offset(first.slot) + seg_size_ - from});
  for (size_t si = bad.seg_index + 1; si < view.segment_count(); ++si)
    ranges.push_back({slot_offset(view.segment(si).slot), seg_size_});
  uint64_t cut = 0;
  if (save_side_file) {
    EVENTSOURCE_RETURN_IF_ERROR(save_ranges(ranges, &repair_report_->side_file, &cut));
    repair_report_->changed = true;
    repair_report_->bytes_cut += cut;
  }
  for (const Range& r : ranges) EVENTSOURCE_RETURN_IF_ERROR(zero_range(r.off, r.len));
  if (drop_whole) slots_[first.slot] = SlotInfo{};
  for (size_t si = bad.seg_index + 1; si < view.segment_count(); ++si)
    slots_[view.segment(si).slot] = SlotInfo{};
  return sync_data("after cutting a torn aux tail");
}

Status Store::Impl::aux_roll(uint64_t first_seq) {
  EVENTSOURCE_ASSIGN_OR_RETURN(uint64_t slot, allocate_slots(SegmentKind::kAux, 1, first_seq, 0));
  // As for event segments [F-9]: the header is durable before any frame.
  Status s = sync_data("new aux segment header");
  if (!s.ok()) return poison(std::move(s));
  store_max(aux_synced_, aux_written_.load());
  EVENTSOURCE_RETURN_IF_ERROR(map_slot(slot));
  aux_segs_.push_back(EventSeg{slot, slots_[slot].epoch, first_seq});
  aux_tail_offset_ = slot_offset(slot) + sh::kSize;
  // allocate_slots allocated the header's page.
  aux_alloc_end_ = slot_offset(slot) + std::min<uint64_t>(seg_size_, 4096);
  return Status();
}

Status Store::Impl::aux_ensure_allocated(uint64_t end) {
  if (end <= aux_alloc_end_) return Status();
  const uint64_t base = slot_offset(aux_segs_.back().slot);
  // Invariant: aux writes go inside the tail aux segment.
  assert(end <= base + seg_size_ && aux_alloc_end_ >= base);
  const uint64_t have = aux_alloc_end_ - base;
  const uint64_t want = std::min(seg_size_, align_up(std::max(2 * have, end - base), 4096));
  int r = os_->fallocate(fd_, 0, aux_alloc_end_, base + want - aux_alloc_end_);
  if (r < 0)
    return io_error(
        fmt::format("{}: cannot allocate {} bytes for aux records at offset {}: {} "
                    "(free disk space; stored records stay readable)",
                    path_, base + want - aux_alloc_end_, hex(aux_alloc_end_), errno_text(-r)),
        -r);
  aux_alloc_end_ = base + want;
  return Status();
}

Status Store::Impl::aux_write_locked(const AuxRecord& r, Durability mode, uint64_t* seq_out) {
  if (poisoned_)
    return closed(
        fmt::format("{}: store refuses writes until reopened: {}", path_, poison_message()));
  const uint64_t seq = aux_next_seq_;
  std::string rec;
  encode_aux_record(r, seed_, &rec);
  const uint64_t frame_len = align_up(fh::kSize + rec.size(), format::kFrameAlign);
  if (aux_tail_offset_ == 0 ||
      aux_tail_offset_ + frame_len > slot_offset(aux_segs_.back().slot) + seg_size_)
    EVENTSOURCE_RETURN_IF_ERROR(aux_roll(seq));
  const std::string frame = encode_aux_frame(rec, 1, aux_tail_offset_, aux_segs_.back().epoch, seq,
                                             aux_synced_.load(), seed_);
  EVENTSOURCE_RETURN_IF_ERROR(aux_ensure_allocated(aux_tail_offset_ + frame.size()));
  EVENTSOURCE_RETURN_IF_ERROR(
      write_all(frame.data(), frame.size(), aux_tail_offset_, "writing an aux record"));
  {
    MutexLock lock(&aux_mu_);
    aux_pending_.push_back(AuxPending{seq, aux_tail_offset_ + fh::kSize, std::move(rec)});
  }
  aux_tail_offset_ += frame.size();
  aux_frame_bytes_ += frame.size();
  aux_next_seq_ = seq + 1;
  aux_written_.store(seq);
  writes_.fetch_add(1);
  if (mode == Durability::kNone) publish_aux(seq);
  *seq_out = seq;
  return Status();
}

void Store::Impl::publish_aux(uint64_t seq) {
  MutexLock lock(&aux_mu_);
  while (!aux_pending_.empty() && aux_pending_.front().seq <= seq) {
    const AuxPending& p = aux_pending_.front();
    AuxRecord r;
    uint32_t len = 0;
    // Our own encoding: it decodes (asserted in tests); never skip silently.
    if (decode_aux_record(reinterpret_cast<const uint8_t*>(p.record.data()), p.record.size(), seed_,
                          &r, &len, /*frame_verified=*/true)
            .ok())
      aux_state_.apply(r, p.offset, len);
    aux_pending_.pop_front();
  }
}

Status Store::Impl::aux_flush_locked() {
  if (aux_written_.load() > aux_synced_.load()) {
    Status s = sync_data("making aux records durable");
    if (!s.ok()) return poison(std::move(s));
    store_max(aux_synced_, aux_written_.load());
  }
  publish_aux(aux_written_.load());
  return Status();
}

Status Store::Impl::aux_maybe_compact_locked() {
  if (aux_segs_.size() < 2) return Status();
  uint64_t live = 0;
  {
    MutexLock lock(&aux_mu_);
    live = aux_state_.live_bytes;
  }
  // Frame headers count as dead: a chain of one-record frames of live
  // records is compacted into many-record frames.
  if (aux_frame_bytes_ <= 2 * live) return Status();
  return aux_compact_locked();
}

Status Store::Impl::aux_compact_locked() {
  // Every record written is durable and applied: the state is the whole chain.
  EVENTSOURCE_RETURN_IF_ERROR(aux_flush_locked());
  // The live records, copied byte for byte (records carry no sequence).
  std::vector<std::pair<uint64_t, uint32_t>> live;
  {
    MutexLock lock(&aux_mu_);
    for (const auto& [key, versions] : aux_state_.snapshots)
      for (const auto& [v, loc] : versions) live.emplace_back(loc.offset, loc.record_len);
    for (const auto& [id, l] : aux_state_.dead_letters) live.emplace_back(l.offset, l.record_len);
    for (const auto& [name, p] : aux_state_.projections) live.emplace_back(p.offset, p.record_len);
  }
  std::sort(live.begin(), live.end());
  // Every aux segment of the file goes, the chain's and any orphan (one
  // allocated by a roll whose mapping then failed, never written to).
  const std::vector<EventSeg> old = aux_segments(slots_);
  // Any failure from here on poisons the store: reopening recovers a chain
  // that holds the same logical state (old records, then whole copies).
  auto fail = [&](Status s) { return poison(std::move(s)); };
  Status s = aux_roll(aux_next_seq_);
  if (!s.ok()) return fail(std::move(s));
  const uint64_t max_body = seg_size_ - sh::kSize - fh::kSize;
  std::string body;
  uint32_t count = 0;
  uint64_t first = aux_next_seq_;
  // (Runs under write_mu_, held by this function; the analysis cannot see
  // into the lambda.)
  auto flush_frame = [&]() EVENTSOURCE_NO_THREAD_SAFETY_ANALYSIS -> Status {
    if (count == 0) return Status();
    const uint64_t frame_len = align_up(fh::kSize + body.size(), format::kFrameAlign);
    if (aux_tail_offset_ + frame_len > slot_offset(aux_segs_.back().slot) + seg_size_)
      EVENTSOURCE_RETURN_IF_ERROR(aux_roll(first));
    const std::string frame = encode_aux_frame(
        body, count, aux_tail_offset_, aux_segs_.back().epoch, first, aux_synced_.load(), seed_);
    EVENTSOURCE_RETURN_IF_ERROR(aux_ensure_allocated(aux_tail_offset_ + frame.size()));
    EVENTSOURCE_RETURN_IF_ERROR(
        write_all(frame.data(), frame.size(), aux_tail_offset_, "compacting aux records"));
    aux_tail_offset_ += frame.size();
    first += count;
    aux_next_seq_ = first;
    aux_written_.store(first - 1);
    body.clear();
    count = 0;
    return Status();
  };
  for (const auto& [off, len] : live) {
    AuxRecord r;
    s = read_aux_record(off, len, &r);
    if (!s.ok()) return fail(std::move(s));
    // A frame's body holds what fits in the rest of a segment.
    if (count > 0 && (body.size() + len > max_body / 2 || count == format::kMaxEventsPerBatch)) {
      s = flush_frame();
      if (!s.ok()) return fail(std::move(s));
    }
    const uint64_t base = slot_offset(aux_segs_.back().slot);
    if (count > 0 &&
        aux_tail_offset_ + align_up(fh::kSize + body.size() + len, 8) > base + seg_size_) {
      s = flush_frame();
      if (!s.ok()) return fail(std::move(s));
    }
    body.append(
        reinterpret_cast<const char*>(slot_map(slot_of(off)) + (off - slot_offset(slot_of(off)))),
        len);
    ++count;
  }
  s = flush_frame();
  if (!s.ok()) return fail(std::move(s));
  s = sync_data("compacting aux records");
  if (!s.ok()) return fail(std::move(s));
  store_max(aux_synced_, aux_written_.load());
  // The chain is now the copies: the segments allocated since `old`. Their
  // state (the records' new offsets) is published before the old segments
  // are zeroed: a reader of this handle (latest_snapshot reads a record
  // where the state says it is, under aux_mu_) never meets the zeros.
  std::erase_if(aux_segs_, [&](const EventSeg& seg) {
    return std::any_of(old.begin(), old.end(), [&](const EventSeg& o) { return o == seg; });
  });
  AuxScan scan = scan_aux_chain(aux_view(aux_segs_));
  if (scan.bad)
    return fail(corruption(
        fmt::format("{}: aux compaction: the copies do not read back: {}", path_, scan.bad->why),
        -1, static_cast<int64_t>(scan.bad->offset)));
  aux_frame_bytes_ = scan.frame_bytes;
  {
    MutexLock lock(&aux_mu_);
    aux_state_ = std::move(scan.state);
  }
  // Free the old segments oldest first, each header zeroed and synced before
  // the next: a crash leaves a contiguous chain (a suffix of the old
  // segments, then the copies) whose replay gives the same state.
  static const uint8_t kZeroHeader[sh::kSize] = {};
  for (const EventSeg& seg : old) {
    s = write_all(kZeroHeader, sizeof kZeroHeader, slot_offset(seg.slot), "freeing an aux segment");
    if (s.ok()) s = sync_data("freeing an aux segment");
    if (!s.ok()) return fail(std::move(s));
  }
  for (const EventSeg& seg : old) {
    s = zero_range(slot_offset(seg.slot), seg_size_);
    if (!s.ok()) return fail(std::move(s));
    slots_[seg.slot] = SlotInfo{};
  }
  ++aux_compactions_;
  return Status();
}

Status Store::Impl::read_aux_record(uint64_t offset, uint32_t len, AuxRecord* r) const {
  const uint64_t slot = offset < format::kFileHeaderSize ? kNoSlot : slot_of(offset);
  const uint8_t* map = slot == kNoSlot ? nullptr : slot_map(slot);
  const uint64_t in = map == nullptr ? 0 : offset - slot_offset(slot);
  std::string why = "it lies outside every aux segment";
  uint32_t got = 0;
  if (map != nullptr && in >= sh::kSize + fh::kSize && in < seg_size_) {
    const Status decoded = decode_aux_record(map + in, seg_size_ - in, seed_, r, &got);
    if (decoded.ok() && got == len) return Status();
    why = decoded.ok()
              ? fmt::format("record length {} differs from the {} recorded at open", got, len)
              : decoded.message();
  }
  return corruption(
      fmt::format("{}: aux record: {} (run 'esdump verify {}')", where(slot, offset), why, path_),
      slot == kNoSlot ? -1 : static_cast<int64_t>(slot), static_cast<int64_t>(offset));
}

Status Store::Impl::aux_writable() const {
  if (closed_.load()) return closed_status();
  if (read_only_)
    return Status(Code::kReadOnly, fmt::format("{}: store was opened read-only", path_));
  return Status();
}

// --- Store: the public aux calls ---

namespace {

Status check_name(const std::string& path, std::string_view what, std::string_view name) {
  if (name.empty() || name.size() > format::kMaxAuxName)
    return invalid_argument(fmt::format("{}: {} must be 1..{} bytes, got {}", path, what,
                                        format::kMaxAuxName, name.size()));
  return Status();
}

// A name the app may use: check_name's limits, and not reserved [F-47].
Status check_user_name(const std::string& path, std::string_view what, std::string_view name) {
  EVENTSOURCE_RETURN_IF_ERROR(check_name(path, what, name));
  if (reserved_aux_name(name))
    return invalid_argument(fmt::format(
        "{}: {} '{}': names starting with '{}' are reserved for the library (choose another name)",
        path, what, name, kReservedNamePrefix));
  return Status();
}

// --- retry marks [F-47]: the kRetryMarksName projection state holds the
// marked dead-letter ids as u64 little-endian, strictly ascending, each >= 1.

static_assert(kMaxRetryMarks * 8 == format::kMaxProjectionState,
              "the retry marks fill at most one projection state");

std::string encode_retry_marks(const std::vector<uint64_t>& ids) {
  // Invariant: ids are ascending, distinct and >= 1, as [F-47] requires.
  assert(std::adjacent_find(ids.begin(), ids.end(), std::greater_equal<>()) == ids.end());
  assert(ids.empty() || ids.front() >= 1);
  std::string out(ids.size() * 8, '\0');
  for (size_t i = 0; i < ids.size(); ++i)
    put_u64(reinterpret_cast<uint8_t*>(out.data()) + 8 * i, ids[i]);
  return out;
}

struct RetryMarks {
  std::vector<uint64_t> live;  // marked ids that have a dead letter, ascending
  bool stale = false;          // the record also holds ids whose dead letter is gone
};

// The marks the aux state holds now. The state's bytes come from disk:
// malformed ones are kCorruption naming the record, never a guess.
Result<RetryMarks> read_retry_marks(const Store::Impl& impl) EVENTSOURCE_REQUIRES(impl.aux_mu_) {
  RetryMarks marks;
  auto it = impl.aux_state_.projections.find(kRetryMarksName);
  if (it == impl.aux_state_.projections.end()) return marks;
  const std::string& state = it->second.state.state;
  const auto* p = reinterpret_cast<const uint8_t*>(state.data());
  std::string why;
  if (state.size() % 8 != 0) why = fmt::format("{} bytes, not a multiple of 8", state.size());
  uint64_t prev = 0;
  for (size_t i = 0; why.empty() && i < state.size() / 8; ++i) {
    const uint64_t id = get_u64(p + 8 * i);
    if (id <= prev) {
      why = i == 0
                ? "id 0 at index 0 (ids are >= 1)"
                : fmt::format("id {} at index {} is not above the id before it ({})", id, i, prev);
      break;
    }
    prev = id;
    if (impl.aux_state_.dead_letters.contains(id)) {
      marks.live.push_back(id);
    } else {
      marks.stale = true;
    }
  }
  if (!why.empty()) {
    const uint64_t offset = it->second.offset;
    const uint64_t slot = impl.slot_of(offset);
    return corruption(
        fmt::format("{}: the retry marks of dead letters (projection state '{}') are malformed: "
                    "{} (format-spec.md [F-47]); the dead letters themselves are intact: 'esdump "
                    "dlq {}' lists them",
                    impl.where(slot, offset), kRetryMarksName, why, impl.path_),
        static_cast<int64_t>(slot), static_cast<int64_t>(offset));
  }
  return marks;
}

// The record that stores `state` (from encode_retry_marks) as the marks.
AuxRecord retry_marks_record(std::string_view state) {
  AuxRecord r;
  r.kind = AuxKind::kProjectionState;
  r.name = kRetryMarksName;
  r.position = 0;
  r.time_us = now_us();
  r.data = state;
  return r;
}

// `ids` sorted, without duplicates.
std::vector<uint64_t> sorted_ids(std::span<const uint64_t> ids) {
  std::vector<uint64_t> out(ids.begin(), ids.end());
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

// Runs one aux write: the write lock, the record, then (kGroup/kEach) the
// shared sync, then visible. `prepare` runs under the write lock (after a
// flush when `needs_view`) and fills the record or fails.
template <class Prepare>
Status aux_op(Store::Impl& impl, const AppendOptions& options, bool needs_view, Prepare&& prepare,
              uint64_t* seq_out = nullptr) EVENTSOURCE_NO_THREAD_SAFETY_ANALYSIS {
  Store::Impl::OpGuard guard(impl);
  if (!guard.ok()) return impl.closed_status();
  EVENTSOURCE_RETURN_IF_ERROR(impl.aux_writable());
  const Durability mode = options.durability.value_or(impl.opt_.durability);
  impl.in_flight_.fetch_add(1);
  struct Leave {
    std::atomic<int>& n;
    ~Leave() { n.fetch_sub(1); }
  } leave{impl.in_flight_};
  uint64_t seq = 0;
  {
    MutexLock lock(&impl.write_mu_);
    if (impl.poisoned_)
      return closed(fmt::format("{}: store refuses writes until reopened: {}", impl.path_,
                                impl.poison_message()));
    EVENTSOURCE_RETURN_IF_ERROR(impl.aux_maybe_compact_locked());
    if (needs_view) EVENTSOURCE_RETURN_IF_ERROR(impl.aux_flush_locked());
    std::optional<AuxRecord> rec;
    EVENTSOURCE_RETURN_IF_ERROR(prepare(&rec));
    if (!rec) return Status();  // nothing to write
    EVENTSOURCE_RETURN_IF_ERROR(impl.aux_write_locked(*rec, mode, &seq));
  }
  if (mode != Durability::kNone) {
    EVENTSOURCE_RETURN_IF_ERROR(impl.sync_until(0, seq, mode));
    impl.publish_aux(seq);
  }
  if (seq_out != nullptr) *seq_out = seq;
  return Status();
}

}  // namespace

Status Store::put_snapshot(const StreamId& stream, StreamVersion version, uint32_t schema_version,
                           std::string_view bytes, const AppendOptions& options) {
  EVENTSOURCE_RETURN_IF_ERROR(stream.validate());
  if (version.value == 0)
    return invalid_argument(
        fmt::format("{}: snapshot of {}: version must be >= 1", impl_->path_, stream.name()));
  AuxRecord r;
  r.kind = AuxKind::kSnapshotPut;
  r.stream_type = stream.type;
  r.stream_id = stream.id;
  r.version = version.value;
  r.schema_version = schema_version;
  r.time_us = now_us();
  r.data = bytes;
  const uint64_t need = align_up(fh::kSize + aux_record_size(r), format::kFrameAlign);
  if (need > impl_->seg_size_ - sh::kSize)
    return invalid_argument(fmt::format(
        "{}: snapshot of {}: {} bytes do not fit in a segment of {} bytes; store less, or create "
        "the store with a larger segment_size",
        impl_->path_, stream.name(), bytes.size(), impl_->seg_size_));
  return aux_op(*impl_, options, false, [&](std::optional<AuxRecord>* out) {
    *out = r;
    return Status();
  });
}

Result<std::optional<Snapshot>> Store::latest_snapshot(const StreamId& stream) const {
  Impl::OpGuard guard(*impl_);
  if (!guard.ok()) return impl_->closed_status();
  for (int attempt = 0;; ++attempt) {
    Status bad;
    {
      MutexLock lock(&impl_->aux_mu_);
      auto it = impl_->aux_state_.snapshots.find(stream.name());
      if (it == impl_->aux_state_.snapshots.end() || it->second.empty())
        return std::optional<Snapshot>();
      const auto& [version, loc] = *it->second.rbegin();
      AuxRecord r;
      bad = impl_->read_aux_record(loc.offset, loc.record_len, &r);
      if (bad.ok() && (r.kind != AuxKind::kSnapshotPut || r.stream_type != stream.type ||
                       r.stream_id != stream.id || r.version != version))
        bad = corruption(fmt::format("{}: the snapshot record of {} version {} holds another "
                                     "record (run 'esdump verify {}')",
                                     impl_->where(impl_->slot_of(loc.offset), loc.offset),
                                     stream.name(), version, impl_->path_),
                         static_cast<int64_t>(impl_->slot_of(loc.offset)),
                         static_cast<int64_t>(loc.offset));
      if (bad.ok())
        return std::optional<Snapshot>(
            Snapshot{StreamVersion(version), r.schema_version, r.time_us, std::string(r.data)});
    }
    if (!impl_->read_only_ || attempt == 1) return bad;
    // A read-only handle whose writer compacted the aux chain since this
    // handle read it: the record moved. Read the chain again, look again.
    MutexLock lock(&impl_->write_mu_);
    Status again = impl_->open_aux();
    if (!again.ok() && again.code() != Code::kCorruption) return again;
  }
}

Result<std::vector<StreamVersion>> Store::snapshot_versions(const StreamId& stream) const {
  Impl::OpGuard guard(*impl_);
  if (!guard.ok()) return impl_->closed_status();
  MutexLock lock(&impl_->aux_mu_);
  std::vector<StreamVersion> out;
  auto it = impl_->aux_state_.snapshots.find(stream.name());
  if (it != impl_->aux_state_.snapshots.end())
    for (const auto& [v, loc] : it->second) out.push_back(StreamVersion(v));
  return out;
}

Result<std::vector<std::pair<StreamId, Snapshot>>> Store::list_snapshots() const {
  Impl::OpGuard guard(*impl_);
  if (!guard.ok()) return impl_->closed_status();
  MutexLock lock(&impl_->aux_mu_);
  std::vector<std::pair<StreamId, Snapshot>> out;
  for (const auto& [key, versions] : impl_->aux_state_.snapshots) {
    if (versions.empty()) continue;
    const size_t dash = key.find('-');
    const auto& [v, loc] = *versions.rbegin();
    Snapshot s{StreamVersion(v), loc.schema_version, loc.timestamp_us, {}};
    out.emplace_back(StreamId{key.substr(0, dash), key.substr(dash + 1)}, std::move(s));
  }
  return out;
}

Result<uint64_t> Store::prune_snapshots(const StreamId& stream, StreamVersion keep_from,
                                        const AppendOptions& options) {
  EVENTSOURCE_RETURN_IF_ERROR(stream.validate());
  uint64_t n = 0;
  const std::string key = stream.name();
  Status s = aux_op(*impl_, options, true, [&](std::optional<AuxRecord>* out) {
    MutexLock lock(&impl_->aux_mu_);
    auto it = impl_->aux_state_.snapshots.find(key);
    if (it != impl_->aux_state_.snapshots.end())
      for (const auto& [v, loc] : it->second) n += v < keep_from.value ? 1 : 0;
    if (n == 0) return Status();
    AuxRecord r;
    r.kind = AuxKind::kSnapshotPrune;
    r.stream_type = stream.type;
    r.stream_id = stream.id;
    r.version = keep_from.value;
    *out = r;
    return Status();
  });
  if (!s.ok()) return s;
  return n;
}

Result<uint64_t> Store::add_dead_letter(const DeadLetter& letter, const AppendOptions& options) {
  EVENTSOURCE_RETURN_IF_ERROR(
      check_user_name(impl_->path_, "a dead letter's projection name", letter.projection));
  if (letter.error.size() > format::kMaxAuxError)
    return invalid_argument(fmt::format("{}: dead letter of {}: error text of {} bytes exceeds {}",
                                        impl_->path_, letter.projection, letter.error.size(),
                                        format::kMaxAuxError));
  uint64_t id = 0;
  Status s = aux_op(*impl_, options, false,
                    [&](std::optional<AuxRecord>* out) EVENTSOURCE_NO_THREAD_SAFETY_ANALYSIS {
                      // The id is the record's sequence: dense, increasing, never reused
                      // (compaction copies keep their ids and get later sequences).
                      id = impl_->aux_next_seq_;
                      AuxRecord r;
                      r.kind = AuxKind::kDeadLetterAdd;
                      r.id = id;
                      r.name = letter.projection;
                      r.position = letter.position.value;
                      r.attempts = letter.attempts;
                      r.time_us = letter.first_failure_us;
                      r.time2_us = letter.last_failure_us;
                      r.text = letter.error;
                      *out = r;
                      return Status();
                    });
  if (!s.ok()) return s;
  return id;
}

Result<std::vector<DeadLetter>> Store::dead_letters(std::string_view projection) const {
  Impl::OpGuard guard(*impl_);
  if (!guard.ok()) return impl_->closed_status();
  MutexLock lock(&impl_->aux_mu_);
  std::vector<DeadLetter> out;
  for (const auto& [id, l] : impl_->aux_state_.dead_letters)
    if (projection.empty() || l.letter.projection == projection) out.push_back(l.letter);
  return out;
}

Result<DeadLetter> Store::dead_letter(uint64_t id) const {
  Impl::OpGuard guard(*impl_);
  if (!guard.ok()) return impl_->closed_status();
  MutexLock lock(&impl_->aux_mu_);
  auto it = impl_->aux_state_.dead_letters.find(id);
  if (it == impl_->aux_state_.dead_letters.end())
    return not_found(fmt::format("{}: no dead letter with id {} (list them with 'esdump dlq {}')",
                                 impl_->path_, id, impl_->path_));
  return it->second.letter;
}

Status Store::remove_dead_letter(uint64_t id, const AppendOptions& options) {
  return aux_op(*impl_, options, true, [&](std::optional<AuxRecord>* out) {
    MutexLock lock(&impl_->aux_mu_);
    if (!impl_->aux_state_.dead_letters.contains(id))
      return not_found(fmt::format("{}: no dead letter with id {} (list them with 'esdump dlq {}')",
                                   impl_->path_, id, impl_->path_));
    AuxRecord r;
    r.kind = AuxKind::kDeadLetterRemove;
    r.id = id;
    *out = r;
    return Status();
  });
}

Result<uint64_t> Store::purge_dead_letters(std::string_view projection,
                                           const AppendOptions& options) {
  if (projection.size() > format::kMaxAuxName)
    return invalid_argument(fmt::format("{}: projection name of {} bytes exceeds {}", impl_->path_,
                                        projection.size(), format::kMaxAuxName));
  uint64_t n = 0;
  Status s = aux_op(*impl_, options, true, [&](std::optional<AuxRecord>* out) {
    MutexLock lock(&impl_->aux_mu_);
    for (const auto& [id, l] : impl_->aux_state_.dead_letters)
      n += projection.empty() || l.letter.projection == projection ? 1 : 0;
    if (n == 0) return Status();
    AuxRecord r;
    r.kind = AuxKind::kDeadLetterPurge;
    r.all = projection.empty();
    r.name = projection;
    *out = r;
    return Status();
  });
  if (!s.ok()) return s;
  return n;
}

Status Store::save_projection_state(std::string_view name, GlobalPosition position,
                                    std::string_view state, const AppendOptions& options) {
  EVENTSOURCE_RETURN_IF_ERROR(check_user_name(impl_->path_, "a projection name", name));
  if (state.size() > format::kMaxProjectionState)
    return invalid_argument(fmt::format("{}: projection {}: state of {} bytes exceeds {}",
                                        impl_->path_, name, state.size(),
                                        format::kMaxProjectionState));
  AuxRecord r;
  r.kind = AuxKind::kProjectionState;
  r.name = name;
  r.position = position.value;
  r.time_us = now_us();
  r.data = state;
  return aux_op(*impl_, options, false, [&](std::optional<AuxRecord>* out) {
    *out = r;
    return Status();
  });
}

Result<std::optional<ProjectionState>> Store::projection_state(std::string_view name) const {
  if (reserved_aux_name(name))
    return invalid_argument(
        fmt::format("{}: projection name '{}': names starting with '{}' are reserved for the "
                    "library (choose another name)",
                    impl_->path_, name, kReservedNamePrefix));
  Impl::OpGuard guard(*impl_);
  if (!guard.ok()) return impl_->closed_status();
  MutexLock lock(&impl_->aux_mu_);
  auto it = impl_->aux_state_.projections.find(name);
  if (it == impl_->aux_state_.projections.end()) return std::optional<ProjectionState>();
  return std::optional<ProjectionState>(it->second.state);
}

Result<std::vector<std::string>> Store::projection_names() const {
  Impl::OpGuard guard(*impl_);
  if (!guard.ok()) return impl_->closed_status();
  MutexLock lock(&impl_->aux_mu_);
  std::vector<std::string> out;
  for (const auto& [name, p] : impl_->aux_state_.projections)
    if (!reserved_aux_name(name)) out.push_back(name);
  return out;
}

Result<uint64_t> Store::mark_dead_letters_for_retry(std::span<const uint64_t> ids,
                                                    const AppendOptions& options) {
  const std::vector<uint64_t> want = sorted_ids(ids);
  uint64_t added = 0;
  std::string state;  // the record's state: outlives the write
  // Read, merge and write under the write lock, after pending aux writes
  // are applied: two concurrent calls never both start from the same marks.
  Status s = aux_op(*impl_, options, true, [&](std::optional<AuxRecord>* out) {
    MutexLock lock(&impl_->aux_mu_);
    for (uint64_t id : ids)
      if (!impl_->aux_state_.dead_letters.contains(id))
        return not_found(
            fmt::format("{}: no dead letter with id {}, nothing was marked for retry (list them "
                        "with 'esdump dlq {}')",
                        impl_->path_, id, impl_->path_));
    EVENTSOURCE_ASSIGN_OR_RETURN(RetryMarks marks, read_retry_marks(*impl_));
    std::vector<uint64_t> merged;
    std::set_union(marks.live.begin(), marks.live.end(), want.begin(), want.end(),
                   std::back_inserter(merged));
    const uint64_t fresh = merged.size() - marks.live.size();
    if (merged.size() > kMaxRetryMarks)
      return invalid_argument(fmt::format(
          "{}: cannot mark {} more dead letters for retry: {} are marked and at most {} can be "
          "(let the app retry the marked ones on its next start, or resolve or purge dead "
          "letters with 'esdump dlq {} resolve ID' or 'purge', first)",
          impl_->path_, fresh, marks.live.size(), kMaxRetryMarks, impl_->path_));
    if (fresh == 0 && !marks.stale) return Status();  // nothing changes
    state = encode_retry_marks(merged);
    *out = retry_marks_record(state);
    added = fresh;
    return Status();
  });
  if (!s.ok()) return s;
  return added;
}

Result<std::vector<uint64_t>> Store::dead_letters_marked_for_retry() const {
  Impl::OpGuard guard(*impl_);
  if (!guard.ok()) return impl_->closed_status();
  MutexLock lock(&impl_->aux_mu_);
  EVENTSOURCE_ASSIGN_OR_RETURN(RetryMarks marks, read_retry_marks(*impl_));
  return std::move(marks.live);
}

Status Store::unmark_dead_letters(std::span<const uint64_t> ids, const AppendOptions& options) {
  const std::vector<uint64_t> drop = sorted_ids(ids);
  std::string state;  // the record's state: outlives the write
  return aux_op(*impl_, options, true, [&](std::optional<AuxRecord>* out) {
    MutexLock lock(&impl_->aux_mu_);
    EVENTSOURCE_ASSIGN_OR_RETURN(RetryMarks marks, read_retry_marks(*impl_));
    std::vector<uint64_t> kept;
    std::set_difference(marks.live.begin(), marks.live.end(), drop.begin(), drop.end(),
                        std::back_inserter(kept));
    if (kept.size() == marks.live.size() && !marks.stale) return Status();  // nothing changes
    state = encode_retry_marks(kept);
    *out = retry_marks_record(state);
    return Status();
  });
}

}  // namespace eventsource
