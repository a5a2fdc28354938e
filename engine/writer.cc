// The write path: append (validation, optimistic concurrency, idempotent
// retry, encoding one frame per batch) and the space it writes into
// (allocating, zeroing and freeing segment slots, rolling to a new segment).
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/falloc.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "engine/coding.h"
#include "engine/format.h"
#include "engine/store_impl.h"

namespace eventsource {

namespace fh = format::frame_header;
namespace sh = format::segment_header;
using format::SegmentKind;

Status Store::Impl::write_all(const void* p, size_t n, uint64_t off, const char* what) {
  int r = write_full(*os_, fd_, p, n, off);
  if (r < 0)
    return io_error(fmt::format("{}: {} failed writing {} bytes at offset {}: {}", path_, what, n,
                                hex(off), errno_text(-r)),
                    -r);
  return Status();
}

Status Store::Impl::map_slot(uint64_t slot) {
  if (slot >= map_cap_)
    return invalid_argument(fmt::format("{}: segment {} exceeds the {} segments a store may have",
                                        path_, slot, map_cap_));
  if (maps_[slot].load(std::memory_order_relaxed) != nullptr) return Status();
  if (read_only_ && slot == short_slot_) return copy_short_slot(slot);
  return map_file_slot(slot);
}

Status Store::Impl::map_file_slot(uint64_t slot) {
  int err = 0;
  const void* p = os_->map_read(fd_, slot_offset(slot), seg_size_, &err);
  if (p == nullptr)
    return io_error(fmt::format("{}: mmap of segment {} failed: {}", path_, slot, errno_text(err)),
                    err);
  maps_[slot].store(static_cast<const uint8_t*>(p), std::memory_order_release);
  return Status();
}

Status Store::Impl::copy_short_slot(uint64_t slot) {
  // calloc: the zeros past the file's bytes stay untouched pages.
  std::unique_ptr<uint8_t, FreeDeleter> copy(static_cast<uint8_t*>(std::calloc(1, seg_size_)));
  if (!copy)
    return io_error(fmt::format("{}: cannot allocate {} bytes to read segment {}, which the end "
                                "of the file cuts short",
                                path_, seg_size_, slot),
                    ENOMEM);
  EVENTSOURCE_RETURN_IF_ERROR(read_exact(copy.get(), short_len_, slot_offset(slot),
                                         "reading a segment the end of the file cuts short"));
  maps_[slot].store(copy.get(), std::memory_order_release);
  copied_slot_ = slot;
  copied_len_ = short_len_;
  slot_copies_.push_back(std::move(copy));
  return Status();
}

// Makes [off, off+len) read as zeros and gives its space back: punch a
// hole; where holes are not supported, write zeros.
Status Store::Impl::zero_range(uint64_t off, uint64_t len) {
  if (len == 0) return Status();
  if (os_->fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) == 0)
    return Status();
  static const std::string kZeros(1 << 20, '\0');
  while (len > 0) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(len, kZeros.size()));
    EVENTSOURCE_RETURN_IF_ERROR(write_all(kZeros.data(), n, off, "zeroing a cut range"));
    off += n;
    len -= n;
  }
  return Status();
}

Result<uint64_t> Store::Impl::allocate_slots(SegmentKind kind, uint64_t count,
                                             uint64_t first_position, uint64_t payload_len) {
  // Prefer a run of free slots; else extend the file.
  uint64_t slot = slots_.size();
  for (uint64_t s = 0; s + count <= slots_.size(); ++s) {
    uint64_t k = 0;
    while (k < count && slots_[s + k].kind == SegmentKind::kFree) ++k;
    if (k == count) {
      slot = s;
      break;
    }
    s += k;
  }
  if (slot + count > map_cap_)
    return Status(Code::kIoError,
                  fmt::format("{}: store is full: it may hold at most {} segments of {} bytes",
                              path_, map_cap_, seg_size_))
        .with_errno(EFBIG);
  // An event segment gets its first extent now and grows as it fills (a
  // store of a few events stays small); an index segment is written once,
  // so it only needs its own bytes. The rest of the slots stays a hole.
  const uint64_t span = count * seg_size_;
  const uint64_t need = kind == SegmentKind::kEvents
                            ? std::min(span, format::kFirstExtent)
                            : std::min(span, align_up(sh::kSize + payload_len, 4096));
  if (slot < slots_.size()) {
    // Reused slots may hold stale bytes: zero them.
    EVENTSOURCE_RETURN_IF_ERROR(zero_range(slot_offset(slot), span));
  }
  if (slot + count > slots_.size()) {
    // The file always ends on a slot boundary, even for a moment: extend it
    // by whole slots before allocating any bytes, so that verify and
    // read-only handles, which check the size, never see it end mid-slot.
    // A crash after this leaves trailing all-zero slots, which open treats
    // as free.
    int64_t size = os_->file_size(fd_);
    if (size >= 0 && static_cast<uint64_t>(size) < slot_offset(slot + count))
      size = os_->ftruncate(fd_, slot_offset(slot + count));
    if (size < 0)
      return io_error(fmt::format("{}: cannot extend the file to {} bytes: {}", path_,
                                  slot_offset(slot + count), errno_text(static_cast<int>(-size))),
                      static_cast<int>(-size));
    slots_.resize(slot + count);
  }
  int r = os_->fallocate(fd_, 0, slot_offset(slot), need);
  if (r < 0)
    return io_error(fmt::format("{}: cannot allocate {} bytes for a new segment at offset {}: {} "
                                "(free disk space; events already stored stay readable)",
                                path_, need, hex(slot_offset(slot)), errno_text(-r)),
                    -r);
  SegmentHeader h;
  h.kind = kind;
  h.slot = slot;
  h.epoch = next_epoch_++;
  h.first_position = first_position;
  h.slot_count = count;
  h.payload_len = payload_len;
  h.created_us = now_us();
  uint8_t buf[sh::kSize];
  encode_segment_header(h, seed_, buf);
  EVENTSOURCE_RETURN_IF_ERROR(
      write_all(buf, sizeof buf, slot_offset(slot), "writing a segment header"));
  for (uint64_t k = 0; k < count; ++k)
    slots_[slot + k] = SlotInfo{kind, h.epoch, first_position, k == 0 ? count : 0, payload_len};
  return slot;
}

Status Store::Impl::free_index_segment(uint64_t slot) {
  uint64_t span = std::max<uint64_t>(slots_[slot].slot_count, 1);
  span = std::min<uint64_t>(span, slots_.size() - slot);
  EVENTSOURCE_RETURN_IF_ERROR(zero_range(slot_offset(slot), span * seg_size_));
  for (uint64_t k = 0; k < span; ++k) slots_[slot + k] = SlotInfo{};
  return Status();
}

Status Store::Impl::roll_segment(uint64_t first_position) {
  EVENTSOURCE_ASSIGN_OR_RETURN(uint64_t slot,
                               allocate_slots(SegmentKind::kEvents, 1, first_position, 0));
  // The header is durable before any frame goes in, so after a crash a bad
  // header over a non-empty segment is damage, not an interrupted allocation.
  Status s = sync_data("new segment header");
  if (!s.ok()) return poison(std::move(s));
  EVENTSOURCE_RETURN_IF_ERROR(map_slot(slot));
  SegTable table = *seg_table();
  table.push_back(EventSeg{slot, slots_[slot].epoch, first_position});
  set_seg_table(std::move(table));
  tail_slot_ = slot;
  tail_epoch_ = slots_[slot].epoch;
  tail_offset_ = slot_offset(slot) + sh::kSize;
  alloc_end_ = slot_offset(slot) + std::min(seg_size_, format::kFirstExtent);
  store_max(synced_, written_.load());  // the sync covered every batch written so far
  return Status();
}

Status Store::Impl::ensure_allocated(uint64_t end) {
  if (end <= alloc_end_) return Status();
  const uint64_t base = slot_offset(tail_slot_);
  // Invariant: appends write inside the tail segment.
  assert(end <= base + seg_size_ && alloc_end_ >= base);
  const uint64_t have = alloc_end_ - base;
  const uint64_t want = std::min(seg_size_, align_up(std::max(2 * have, end - base), 4096));
  int r = os_->fallocate(fd_, 0, alloc_end_, base + want - alloc_end_);
  if (r < 0)
    return io_error(fmt::format("{}: cannot allocate {} bytes for the log at offset {}: {} (free "
                                "disk space; events already stored stay readable, and appends "
                                "succeed again once there is room)",
                                path_, base + want - alloc_end_, hex(alloc_end_), errno_text(-r)),
                    -r);
  alloc_end_ = base + want;
  return Status();
}

Status Store::Impl::poison(Status why) {
  MutexLock lock(&poison_mu_);
  if (!poisoned_.load()) poison_ = why;
  poisoned_.store(true);
  return why;
}

std::string Store::Impl::poison_message() const {
  MutexLock lock(&poison_mu_);
  return poison_.message();
}

Result<uint64_t> Store::Impl::writer_version(const std::string& key) {
  // Both locks: a batch moves from pending to the index under them.
  MutexLock pending(&pending_mu_);
  ReaderLock ix(&index_mu_);
  const StreamIndex::Entry* entry = index_.find(key);
  if (entry != nullptr) {
    if (Status bad = StreamIndex::verify_entry(*entry, seed_); !bad.ok())
      return corruption(fmt::format("{}: stream {}: {} (run 'esdump verify {}')", path_, key,
                                    bad.message(), path_),
                        index_slot_ == kNoSlot ? -1 : static_cast<int64_t>(index_slot_), -1);
  }
  uint64_t version = entry ? entry->version() : 0;
  for (const PendingBatch& b : pending_)
    if (b.key == key) version += b.locators.size();
  return version;
}

Status Store::Impl::find_stored_ids(std::span<const EventData> events,
                                    std::span<const uint64_t> fps,
                                    std::vector<std::optional<StoredEvent>>* found) {
  // The batch's ids by fingerprint, so that each stored candidate (committed
  // in the id table, or in a pending batch) costs one probe.
  std::vector<std::pair<uint64_t, size_t>> want;
  for (size_t i = 0; i < events.size(); ++i)
    if (!events[i].id.is_nil()) want.emplace_back(fps[i], i);
  std::sort(want.begin(), want.end());
  std::vector<std::pair<size_t, uint64_t>> candidates;  // (event, locator)
  auto offer = [&](uint64_t fp, uint64_t loc) {
    auto it = std::lower_bound(want.begin(), want.end(), std::pair<uint64_t, size_t>{fp, 0});
    for (; it != want.end() && it->first == fp; ++it) candidates.emplace_back(it->second, loc);
  };
  {
    MutexLock pending(&pending_mu_);
    ReaderLock ix(&index_mu_);
    for (const auto& w : want) {
      const size_t i = w.second;  // (clang 14 cannot capture a structured binding)
      const Status bad =
          index_.ids().find(w.first, [&](uint64_t loc) { candidates.emplace_back(i, loc); });
      if (!bad.ok())
        return corruption(fmt::format("{}: index segment {}: {} (run 'esdump verify {}')", path_,
                                      index_slot_, bad.message(), path_),
                          static_cast<int64_t>(index_slot_), -1);
    }
    for (const PendingBatch& b : pending_)
      for (size_t k = 0; k < b.fps.size(); ++k) offer(b.fps[k], b.locators[k]);
  }
  // Candidates share a fingerprint: the record says whether the id is the same.
  found->assign(events.size(), std::nullopt);
  DecodeCache cache;
  for (const auto& [i, loc] : candidates) {
    RecordedEvent ev;
    EVENTSOURCE_RETURN_IF_ERROR(read_locator(loc, &ev, &cache));
    if (ev.id != events[i].id) continue;
    (*found)[i] = StoredEvent{StreamId{std::string(ev.stream_type), std::string(ev.stream_id)},
                              ev.version, ev.position};
  }
  return Status();
}

Result<AppendResult> Store::Impl::judge_stored_ids(
    const StreamId& stream, ExpectedVersion expected, uint64_t current,
    const std::vector<std::optional<StoredEvent>>& found) const {
  const std::string key = stream_key(stream);
  // A retry: every event is stored, in this stream, at consecutive versions
  // in batch order.
  bool retry = true;
  for (size_t i = 0; i < found.size() && retry; ++i)
    retry = found[i] && found[i]->stream == stream &&
            found[i]->version.value == found[0]->version.value + i;
  if (!retry) {
    size_t i = 0;
    while (!found[i]) ++i;
    const StoredEvent& f = *found[i];
    return Status(Code::kDuplicateEvent,
                  fmt::format("{}: stream {}: event {} of the batch has an id already stored in "
                              "stream {} at version {} (position {}); nothing was written. A "
                              "retry must resend the whole batch, with the same ids in the same "
                              "order, to the same stream; new events need new ids",
                              path_, key, i, f.stream.name(), f.version.value, f.position.value));
  }
  const uint64_t before = found.front()->version.value - 1;
  if (!expected.accepts(StreamVersion(before)))
    return conflict(
        fmt::format("{}: stream {}: expected {}, but this batch is already stored at "
                    "versions {}..{} (the stream is at version {})",
                    path_, key, expected.to_string(), before + 1, before + found.size(), current),
        static_cast<int64_t>(current));
  AppendResult result;
  result.version = StreamVersion(current);
  result.first_position = result.last_position = found.front()->position;
  for (const auto& f : found) {
    result.first_position = std::min(result.first_position, f->position);
    result.last_position = std::max(result.last_position, f->position);
  }
  result.deduplicated = true;
  return result;
}

Result<AppendResult> Store::Impl::append(const StreamId& stream, ExpectedVersion expected,
                                         std::span<const EventData> events,
                                         const AppendOptions& options) {
  OpGuard guard(*this);
  if (!guard.ok()) return closed_status();
  if (read_only_)
    return Status(Code::kReadOnly, fmt::format("{}: store was opened read-only", path_));
  EVENTSOURCE_RETURN_IF_ERROR(stream.validate());
  const std::string key = stream_key(stream);
  const size_t n = events.size();
  if (n == 0 || n > format::kMaxEventsPerBatch)
    return invalid_argument(fmt::format("stream {}: a batch holds 1..{} events, got {}", key,
                                        format::kMaxEventsPerBatch, n));
  uint64_t bytes = 0;
  bool any_id = false;
  for (size_t i = 0; i < n; ++i) {
    const EventData& e = events[i];
    if (e.type.empty() || e.type.size() > 255)
      return invalid_argument(fmt::format("stream {}: event {} has a type of {} bytes (1..255)",
                                          key, i, e.type.size()));
    if (e.tenant.size() > 255 || e.metadata.size() > 65535 || e.payload.size() > 0xffffffffull)
      return invalid_argument(fmt::format(
          "stream {}: event {} has a tenant over 255 bytes, metadata over 64 KiB or a payload "
          "over 4 GiB",
          key, i));
    any_id |= !e.id.is_nil();
    bytes += record_size(stream, e);
  }
  {
    // Ids given by the caller must be distinct within the batch.
    thread_local std::vector<std::pair<Uuid, size_t>> ids;
    ids.clear();
    for (size_t i = 0; i < n; ++i)
      if (!events[i].id.is_nil()) ids.emplace_back(events[i].id, i);
    std::sort(ids.begin(), ids.end());
    for (size_t k = 1; k < ids.size(); ++k)
      if (ids[k].first == ids[k - 1].first)
        return invalid_argument(fmt::format("stream {}: events {} and {} share the id {}", key,
                                            ids[k - 1].second, ids[k].second,
                                            ids[k].first.to_string()));
  }
  if (align_up(fh::kSize + bytes, format::kFrameAlign) > seg_size_ - sh::kSize)
    return invalid_argument(fmt::format(
        "{}: stream {}: a batch of {} bytes does not fit in a segment of {} bytes; split it or "
        "create the store with a larger segment_size",
        path_, key, bytes, seg_size_));
  const Durability mode = options.durability.value_or(opt_.durability);

  in_flight_.fetch_add(1);  // for the group-commit window
  struct Leave {
    std::atomic<int>& n;
    ~Leave() { n.fetch_sub(1); }
  } leave{in_flight_};

  // Each event's id (a random one for nil) and its fingerprint, hashed
  // before the write lock: the duplicate check and the id table use them.
  std::vector<Uuid> ids(n);
  std::vector<uint64_t> fps(n);
  for (size_t i = 0; i < n; ++i) {
    ids[i] = events[i].id.is_nil() ? Uuid::random() : events[i].id;
    fps[i] = IdTable::fingerprint(ids[i], seed_);
  }

  AppendResult result;
  bool checkpoint_due = false;
  {
    MutexLock lock(&write_mu_);
    if (poisoned_)
      return closed(
          fmt::format("{}: store refuses writes until reopened: {}", path_, poison_message()));
    EVENTSOURCE_ASSIGN_OR_RETURN(const uint64_t current, writer_version(key));
    // Ids stored before: a retry, a duplicate or a conflict (format-spec.md [F-25]).
    std::vector<std::optional<StoredEvent>> found;
    if (any_id) EVENTSOURCE_RETURN_IF_ERROR(find_stored_ids(events, fps, &found));
    if (std::any_of(found.begin(), found.end(), [](const auto& f) { return f.has_value(); })) {
      EVENTSOURCE_ASSIGN_OR_RETURN(result, judge_stored_ids(stream, expected, current, found));
      lock.unlock();
      if (mode != Durability::kNone)
        EVENTSOURCE_RETURN_IF_ERROR(wait_durable(result.last_position.value, mode));
      return result;
    }
    if (!expected.accepts(StreamVersion(current)))
      return conflict(fmt::format("{}: stream {}: expected {}, but the stream is at version {}",
                                  path_, key, expected.to_string(), current),
                      static_cast<int64_t>(current));

    const uint64_t first = next_position_;
    const int64_t now = now_us();
    PendingBatch batch{first + n - 1, key, static_cast<uint8_t>(stream.type.size()), {}, {}};
    batch.fps = std::move(fps);
    encoder_.reset();
    for (size_t i = 0; i < n; ++i) {
      const EventData& e = events[i];
      encoder_.add({&stream, &e, ids[i], e.timestamp_us == 0 ? now : e.timestamp_us, first + i,
                    current + 1 + i},
                   seed_);
    }
    if (tail_offset_ == 0 ||
        tail_offset_ + encoder_.uncompressed_frame_len() > slot_offset(tail_slot_) + seg_size_)
      EVENTSOURCE_RETURN_IF_ERROR(roll_segment(first));
    auto frame = encoder_.finish(tail_offset_, tail_epoch_, first, synced_.load(),
                                 opt_.compress_min_bytes, opt_.compression_level, seed_);
    EVENTSOURCE_RETURN_IF_ERROR(ensure_allocated(tail_offset_ + frame.size()));
    EVENTSOURCE_RETURN_IF_ERROR(
        write_all(frame.data(), frame.size(), tail_offset_, "appending a batch"));
    batch.locators.reserve(n);
    const auto& offs = encoder_.record_offsets();
    for (size_t i = 0; i < n; ++i)
      batch.locators.push_back(format::encode_locator(
          encoder_.compressed() ? format::Locator{tail_offset_, true, static_cast<uint32_t>(i)}
                                : format::Locator{tail_offset_ + fh::kSize + offs[i]}));
    {
      // Pending until committed: invisible to every read-side call.
      MutexLock pending(&pending_mu_);
      pending_.push_back(std::move(batch));
    }
    last_frame_offset_ = tail_offset_;
    tail_offset_ += frame.size();
    next_position_ += n;
    written_.store(next_position_ - 1);
    writes_.fetch_add(1);
    bytes_since_checkpoint_ += frame.size();
    result.version = StreamVersion(current + n);
    result.first_position = GlobalPosition(first);
    result.last_position = GlobalPosition(first + n - 1);
    checkpoint_due = opt_.checkpoint_interval_bytes > 0 &&
                     bytes_since_checkpoint_ >= opt_.checkpoint_interval_bytes;
    if (mode == Durability::kNone) {
      publish_committed(first + n - 1);
      if (checkpoint_due) auto_checkpoint_locked();
    }
  }
  if (mode != Durability::kNone) {
    EVENTSOURCE_RETURN_IF_ERROR(wait_durable(result.last_position.value, mode));
    if (checkpoint_due) {  // (re-checked under the lock: another append may have done it)
      MutexLock lock(&write_mu_);
      auto_checkpoint_locked();
    }
  }
  return result;
}

}  // namespace eventsource
