// Opening a store and crash recovery: the file header, the slot table, the
// checkpoint and persisted index, the scan of the log past it, and cutting a
// torn tail (or, for repair, damage) off the end of the log.
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

Status Store::Impl::create_file() {
  header_.segment_size = opt_.segment_size;
  uint64_t s = header_.segment_size;
  if (s < format::kMinSegmentSize || s > format::kMaxSegmentSize || (s & (s - 1)) != 0)
    return invalid_argument(fmt::format(
        "{}: segment_size {} must be a power of two between 1 MiB and 1 GiB", path_, s));
  header_.store_id = Uuid::random();
  header_.created_us = now_us();
  std::string block(format::kFileHeaderSize, '\0');
  encode_file_header(header_, reinterpret_cast<uint8_t*>(block.data()));
  EVENTSOURCE_RETURN_IF_ERROR(write_all(block.data(), block.size(), 0, "writing the file header"));
  EVENTSOURCE_RETURN_IF_ERROR(sync_data("new store header"));
  int r = os_->sync_dir_of(path_);
  if (r < 0)
    return io_error(fmt::format("{}: fsync of the directory failed: {}", path_, errno_text(-r)),
                    -r);
  return Status();
}

Status Store::Impl::open() {
  // Nothing else can reach this Impl yet; the lock is for the analysis.
  MutexLock lock(&write_mu_);
  return open_locked();
}

Status Store::Impl::open_locked() {
  bool created = false;
  int flags = read_only_ ? O_RDONLY : O_RDWR;
  fd_ = os_->open(path_, flags, 0);
  if (fd_ == -ENOENT) {
    if (read_only_ || opt_.create == CreateMode::kMustExist)
      return not_found(fmt::format("{}: no such store", path_));
    fd_ = os_->open(path_, O_RDWR | O_CREAT | O_EXCL, opt_.file_mode);
    if (fd_ == -EEXIST)
      fd_ = os_->open(path_, O_RDWR, 0);
    else
      created = fd_ >= 0;
  }
  if (fd_ < 0) {
    int e = -fd_;
    fd_ = -1;
    return io_error(fmt::format("{}: cannot open: {}", path_, errno_text(e)), e);
  }
  if (!read_only_) {
    int holder = 0;
    int r = os_->lock_exclusive(fd_, &holder);
    if (r == -EAGAIN || r == -EACCES) {
      std::string who = holder > 0 ? fmt::format("process {}", holder) : "another writer";
      return Status(Code::kBusy,
                    fmt::format("{}: store is locked by {}; only one writer process may open it "
                                "(open it read-only, or stop that writer)",
                                path_, who));
    }
    if (r < 0) return io_error(fmt::format("{}: cannot lock: {}", path_, errno_text(-r)), -r);
  }
  int64_t size = os_->file_size(fd_);
  if (size < 0)
    return io_error(fmt::format("{}: fstat failed: {}", path_, errno_text(static_cast<int>(-size))),
                    static_cast<int>(-size));
  if (created || (size == 0 && !read_only_)) {
    EVENTSOURCE_RETURN_IF_ERROR(create_file());
  } else {
    uint8_t buf[format::file_header::kSize];
    if (static_cast<uint64_t>(size) < sizeof buf)
      return corruption(fmt::format("{}: file is {} bytes, too short to be a store (file header "
                                    "damaged or not a store)",
                                    path_, size),
                        -1, 0);
    EVENTSOURCE_RETURN_IF_ERROR(read_exact(buf, sizeof buf, 0, "reading the file header"));
    if (Status bad = parse_file_header(buf, sizeof buf, &header_); !bad.ok())
      return corruption(
          fmt::format("{}: offset 0x0: {} (run 'esdump verify {}')", path_, bad.message(), path_),
          -1, 0);
    if (header_.version > format::kFormatVersion)
      return not_supported(
          fmt::format("{}: format version {} is newer than this library's {}; "
                      "upgrade eventsource to open it",
                      path_, header_.version, format::kFormatVersion));
    if (header_.version < format::kFormatVersion)
      return not_supported(fmt::format(
          "{}: format version {} is older than this library's {} and is not read by it (no "
          "migration exists: version {} was a development format); read it with the eventsource "
          "that wrote it, export its events with that version's 'esdump export', and import them",
          path_, header_.version, format::kFormatVersion, header_.version));
  }
  seed_ = header_.seed();
  seg_size_ = header_.segment_size;
  seg_shift_ = static_cast<unsigned>(__builtin_ctzll(seg_size_));  // a power of two (checked)
  map_cap_ = kMaxSlots;
  maps_ = std::make_unique<std::atomic<const uint8_t*>[]>(map_cap_);
  for (size_t i = 0; i < map_cap_; ++i) maps_[i].store(nullptr, std::memory_order_relaxed);

  if (!read_only_ && size > static_cast<int64_t>(format::kFileHeaderSize) &&
      (static_cast<uint64_t>(size) - format::kFileHeaderSize) % seg_size_ != 0) {
    // A file cut short inside a segment (copied half-way, truncated): pad the
    // last segment back to full size; the missing bytes read as zeros, i.e.
    // as a torn tail (or as damage, if the checkpoint says they were durable).
    uint64_t whole = align_up(static_cast<uint64_t>(size) - format::kFileHeaderSize, seg_size_);
    int r = os_->ftruncate(fd_, format::kFileHeaderSize + whole);
    if (r < 0)
      return io_error(fmt::format("{}: file ends inside a segment and extending it failed: {}",
                                  path_, errno_text(-r)),
                      -r);
  }
  EVENTSOURCE_RETURN_IF_ERROR(read_slots());

  uint64_t scan_seg = 0, scan_off = 0, expected = 1;
  EVENTSOURCE_RETURN_IF_ERROR(load_checkpoint_and_index(&scan_seg, &scan_off, &expected));
  std::optional<BadFrame> bad;
  EVENTSOURCE_RETURN_IF_ERROR(scan_log(scan_seg, scan_off, expected, &bad));
  if (index_damaged()) EVENTSOURCE_RETURN_IF_ERROR(rescan_without_index(&bad));
  if (bad && repair_mode_) {
    RepairReport& rep = *repair_report_;
    uint64_t cut = 0;
    EVENTSOURCE_RETURN_IF_ERROR(cut_log(*bad, &rep.side_file, &cut, /*save_side_file=*/true));
    rep.changed = true;
    rep.bytes_cut += cut;
    bad.reset();
  }
  if (bad) {
    uint64_t durable = ckpt_ ? ckpt_->durable_position : 0;
    const EventSeg seg = (*seg_table())[bad->seg_index];
    if (bad->expected_position <= durable || later_frame_proves_durable(*bad))
      return corruption(fmt::format("{}: {} (position {} was durable; open refuses to drop it: "
                                    "run 'esdump verify {}' for a full report, 'esdump repair {}' "
                                    "to cut the log there, keeping the cut bytes in a side file)",
                                    where(seg.slot, bad->offset), bad->why, bad->expected_position,
                                    path_, path_, path_),
                        static_cast<int64_t>(seg.slot), static_cast<int64_t>(bad->offset));
    if (!read_only_) {
      // A torn tail: the writer died before these bytes were durable, and no
      // acknowledged event can be in them (see later_frame_proves_durable).
      std::string side;
      uint64_t cut = 0;
      EVENTSOURCE_RETURN_IF_ERROR(cut_log(*bad, &side, &cut, /*save_side_file=*/false));
    }
  }
  uint64_t index_covers = 0, index_slot = kNoSlot;
  {
    WriterLock ix(&index_mu_);
    committed_.store(next_position_ - 1, std::memory_order_release);
    index_covers = index_covers_;
    index_slot = index_slot_;
  }
  written_.store(next_position_ - 1);
  alloc_end_ = tail_offset_;  // what lies past the tail is allocated again as it fills
  if (!read_only_ && next_position_ - 1 > index_covers) {
    // Everything recovered past the checkpoint becomes durable now, so the
    // durable hints written into new frames are exact. (A clean open has
    // nothing past the checkpoint and skips this sync.)
    EVENTSOURCE_RETURN_IF_ERROR(sync_data("after recovery"));
  }
  synced_.store(next_position_ - 1);
  // Snapshots, dead letters, projection states (aux_store.cc).
  EVENTSOURCE_RETURN_IF_ERROR(open_aux());
  if (!read_only_) {
    // Index segments the checkpoint does not name are leftovers (replaced,
    // or written by a checkpoint that crashed before its rename): free them.
    for (uint64_t slot = 0; slot < slots_.size(); ++slot)
      if (slots_[slot].kind == SegmentKind::kIndex && slots_[slot].slot_count > 0 &&
          slot != index_slot)
        EVENTSOURCE_RETURN_IF_ERROR(free_index_segment(slot));
  }
  return Status();
}

Status Store::Impl::read_slots() {
  int64_t size = os_->file_size(fd_);
  if (size < 0)
    return io_error(fmt::format("{}: fstat failed: {}", path_, errno_text(static_cast<int>(-size))),
                    static_cast<int>(-size));
  const uint64_t body = size < static_cast<int64_t>(format::kFileHeaderSize)
                            ? 0
                            : static_cast<uint64_t>(size) - format::kFileHeaderSize;
  uint64_t nslots = body / seg_size_;
  // A file cut short inside its last slot: a read-write open has padded it
  // (open()); a read-only handle reads that slot as padded (map_slot).
  short_slot_ = kNoSlot;
  if (read_only_ && body % seg_size_ != 0) {
    short_slot_ = nslots++;
    short_len_ = body % seg_size_;
  }
  if (nslots > map_cap_)
    return corruption(fmt::format("{}: file holds {} segments, more than the {} a store may have",
                                  path_, nslots, map_cap_),
                      -1, size);
  size_t known = slots_.size();
  slots_.resize(nslots);
  if (copied_slot_ != kNoSlot && (copied_slot_ != short_slot_ || copied_len_ != short_len_)) {
    // The file grew since this handle copied its short last slot (a writer
    // padded it): read that slot again. The old copy stays for readers.
    const uint64_t slot = copied_slot_;
    copied_slot_ = kNoSlot;
    if (slot < nslots && slots_[slot].kind != SegmentKind::kFree)
      EVENTSOURCE_RETURN_IF_ERROR(slot == short_slot_ ? copy_short_slot(slot)
                                                      : map_file_slot(slot));
  }
  std::vector<EventSeg> events;
  const std::shared_ptr<const SegTable> known_segs = seg_table();
  for (const EventSeg& e : *known_segs) events.push_back(e);
  for (uint64_t slot = 0; slot < nslots; ++slot) {
    // On refresh (read-only) re-read all but event segments: the writer frees
    // index segments and reuses slots.
    if (slot < known && slots_[slot].kind == SegmentKind::kEvents) continue;
    uint8_t buf[sh::kSize + fh::kSize] = {};
    EVENTSOURCE_RETURN_IF_ERROR(read_exact(
        buf, slot == short_slot_ ? std::min<uint64_t>(sizeof buf, short_len_) : sizeof buf,
        slot_offset(slot), "reading a segment header"));
    SegmentHeader h;
    Status bad;
    switch (parse_segment_header(buf, slot, seed_, &h, &bad)) {
      case SegmentHeaderState::kZero:
        slots_[slot] = SlotInfo{};
        break;
      case SegmentHeaderState::kBad:
        // A header is synced before any frame is written into its segment, so
        // a bad header over an empty segment is an interrupted allocation.
        if (all_zero(buf + sh::kSize, fh::kSize)) {
          slots_[slot] = SlotInfo{};
          break;
        }
        if (repair_mode_) {
          uint64_t saved = 0;
          EVENTSOURCE_RETURN_IF_ERROR(save_ranges({Range{slot_offset(slot), seg_size_}},
                                                  &repair_report_->side_file, &saved));
          EVENTSOURCE_RETURN_IF_ERROR(zero_range(slot_offset(slot), seg_size_));
          repair_report_->changed = true;
          repair_report_->bytes_cut += saved;
          slots_[slot] = SlotInfo{};
          break;
        }
        return corruption(fmt::format("{}: {} (run 'esdump verify {}')",
                                      where(slot, slot_offset(slot)), bad.message(), path_),
                          static_cast<int64_t>(slot), static_cast<int64_t>(slot_offset(slot)));
      case SegmentHeaderState::kValid:
        if (h.slot_count > nslots - slot && read_only_ && h.kind != SegmentKind::kEvents) {
          // A live writer extends the file, then writes the header of the
          // multi-slot segment it allocated there: this handle measured the
          // file before. It reads no index or aux segment after open, so the
          // slots past its measure are simply not known yet.
          for (uint64_t k = slot; k < nslots; ++k)
            slots_[k] = SlotInfo{h.kind, h.epoch, 0, k == slot ? nslots - slot : 0, 0};
          slot = nslots - 1;
          break;
        }
        if (h.slot_count > nslots - slot) {
          return corruption(fmt::format("{}: segment spans {} slots, past the end of the file",
                                        where(slot, slot_offset(slot)), h.slot_count),
                            static_cast<int64_t>(slot), static_cast<int64_t>(slot_offset(slot)));
        }
        slots_[slot] = SlotInfo{h.kind, h.epoch, h.first_position, h.slot_count, h.payload_len};
        next_epoch_ = std::max(next_epoch_, h.epoch + 1);
        if (h.kind == SegmentKind::kEvents) {
          bool have = false;
          for (const EventSeg& e : events) have |= e.slot == slot && e.epoch == h.epoch;
          if (!have) events.push_back(EventSeg{slot, h.epoch, h.first_position});
        }
        // Index segments span several slots; skip the ones they cover.
        for (uint64_t k = 1; k < h.slot_count; ++k)
          slots_[slot + k] = SlotInfo{SegmentKind::kIndex, h.epoch, 0, 0, 0};
        slot += h.slot_count - 1;
        break;
    }
  }
  std::sort(events.begin(), events.end(),
            [](const EventSeg& a, const EventSeg& b) { return a.epoch < b.epoch; });
  for (size_t i = 0; i < events.size(); ++i) {
    if (i > 0 && events[i].epoch == events[i - 1].epoch)
      return corruption(fmt::format("{}: segments {} and {} share epoch {}", path_,
                                    events[i - 1].slot, events[i].slot, events[i].epoch),
                        static_cast<int64_t>(events[i].slot),
                        static_cast<int64_t>(slot_offset(events[i].slot)));
    EVENTSOURCE_RETURN_IF_ERROR(map_slot(events[i].slot));
  }
  // Published whole: readers keep using the table they started with.
  if (events != *known_segs) set_seg_table(std::move(events));
  return Status();
}

Status Store::Impl::load_checkpoint_and_index(uint64_t* scan_seg, uint64_t* scan_off,
                                              uint64_t* expected) {
  // Without a usable index: a full scan, entering the first segment in log
  // order afresh (offset 0), so that it must start at position 1 [F-30].
  *scan_seg = 0;
  *scan_off = 0;
  *expected = 1;
  if (repair_mode_) return Status();  // full scan; close() writes a fresh checkpoint
  Status problem;
  EVENTSOURCE_ASSIGN_OR_RETURN(
      ckpt_, read_checkpoint_file(*os_, path_, header_.store_id, seed_, &problem));
  if (!problem.ok()) ckpt_problem_ = problem.message();
  if (!ckpt_) return Status();
  const Checkpoint& c = *ckpt_;
  // The checkpoint's claim must be backed by the data: the frame it names
  // must exist, be valid and end exactly at its durable position.
  uint64_t claimed_end = 0;  // file offset past the frame the checkpoint names
  if (c.durable_position > 0) {
    const Status why = check_checkpoint_claim(MappedLog(*this), c.last_frame_offset,
                                              c.durable_position, &claimed_end);
    if (!why.ok())
      return corruption(
          fmt::format("{}: the checkpoint file says events up to position {} are "
                      "durable in a frame at offset {}, but the data file does not "
                      "hold them ({}). The data file was truncated, replaced or "
                      "damaged: restore it, or run 'esdump repair {}'",
                      path_, c.durable_position, hex(c.last_frame_offset), why.message(), path_),
          c.last_frame_offset < format::kFileHeaderSize
              ? -1
              : static_cast<int64_t>(slot_of(c.last_frame_offset)),
          static_cast<int64_t>(c.last_frame_offset));
  }
  if (c.index_slot == kNoSlot || c.index_slot >= slots_.size()) return Status();
  const SlotInfo& si = slots_[c.index_slot];
  if (si.kind != SegmentKind::kIndex || si.epoch != c.index_epoch || si.slot_count == 0 ||
      si.payload_len > si.slot_count * seg_size_ - sh::kSize) {
    ckpt_problem_ =
        fmt::format("{}: the index segment the checkpoint names is gone; scanning the log",
                    where(c.index_slot, slot_offset(c.index_slot)));
    return Status();
  }
  if (short_slot_ != kNoSlot && slot_offset(c.index_slot) + sh::kSize + si.payload_len >
                                    slot_offset(short_slot_) + short_len_) {
    // (A read-write open padded the file: it finds zeros there, and scans.)
    ckpt_problem_ = fmt::format(
        "{}: the end of the file cuts the index segment short; scanning "
        "the log",
        where(c.index_slot, slot_offset(c.index_slot)));
    return Status();
  }
  WriterLock ix(&index_mu_);  // (open: nothing else runs yet)
  int err = 0;
  size_t len = si.slot_count * seg_size_;
  const void* m = os_->map_read(fd_, slot_offset(c.index_slot), len, &err);
  if (m == nullptr)
    return io_error(fmt::format("{}: mmap of index segment {} failed: {}", path_, c.index_slot,
                                errno_text(err)),
                    err);
  StreamIndex::BlobInfo info;
  Status why = index_.load_blob(static_cast<const uint8_t*>(m) + sh::kSize, si.payload_len, seed_,
                                /*copy=*/read_only_, &info);
  if (why.ok() && info.covers_position != c.durable_position)
    why = bad_bytes(fmt::format("it covers position {}, the checkpoint says {}",
                                info.covers_position, c.durable_position));
  // Where the index says the log continues must agree with the frame the
  // checkpoint names; a blob that disagrees is not trusted [F-21].
  if (why.ok() && info.covers_position > 0)
    why = check_log_end(MappedLog(*this), claimed_end, info.log_end_offset, info.covers_position);
  // The scan does not walk what the index covers, so the start of the log is
  // checked here: the first event segment in log order starts at position 1.
  if (why.ok() && info.covers_position > 0) {
    const std::shared_ptr<const SegTable> segs = seg_table();
    if (segs->empty() || segs->front().first_position != 1)
      why = bad_bytes("the first event segment does not start at position 1");
  }
  if (!why.ok()) {
    // The index is only an accelerator: fall back to scanning the whole log,
    // whose walk judges the bytes the index would have skipped [F-21].
    os_->unmap(m, len);
    index_.clear();
    ckpt_problem_ = fmt::format("{}: persisted index unusable ({}); scanning the log",
                                where(c.index_slot, slot_offset(c.index_slot)), why.message());
    return Status();
  }
  if (read_only_) {
    os_->unmap(m, len);
  } else {
    index_map_ = static_cast<const uint8_t*>(m);
    index_map_len_ = len;
  }
  index_slot_ = c.index_slot;
  index_epoch_ = c.index_epoch;
  index_covers_ = info.covers_position;
  *expected = info.covers_position + 1;
  next_position_ = *expected;
  // Continue after the last indexed frame: at the end of the frame the
  // checkpoint names (validated above), not at log_end_offset, so that the
  // walk judges the rest of that segment and enters the next one itself, as
  // a full scan would [F-30]. (check_checkpoint_claim found the segment.)
  if (info.covers_position > 0) {
    const uint64_t slot = slot_of(c.last_frame_offset);
    const std::shared_ptr<const SegTable> segs = seg_table();
    for (size_t i = 0; i < segs->size(); ++i) {
      if ((*segs)[i].slot == slot) {
        *scan_seg = i;
        *scan_off = claimed_end;
        tail_slot_ = slot;
        tail_epoch_ = (*segs)[i].epoch;
        tail_offset_ = claimed_end;
        last_frame_offset_ = c.last_frame_offset;
        return Status();
      }
    }
    // Unreachable: check_checkpoint_claim found the frame in this table.
    return corruption(fmt::format("{}: the checkpoint's last frame at offset {} is not in an "
                                  "event segment (run 'esdump repair {}')",
                                  path_, hex(c.last_frame_offset), path_),
                      static_cast<int64_t>(slot), static_cast<int64_t>(c.last_frame_offset));
  }
  return Status();
}

Status Store::Impl::index_frame(const uint8_t* frame, const FrameHeader& h, uint64_t offset,
                                uint64_t slot) {
  // Two passes: check every record first, index only a wholly good frame, so
  // a frame found bad halfway leaves no locator behind (it may be cut as a
  // torn tail and its positions written again).
  struct Stream {
    std::string key;
    uint8_t type_len;
    uint64_t version;  // indexed version + this frame's records so far
  };
  thread_local std::string buf;
  thread_local std::vector<Stream> streams;     // distinct streams of the frame (usually one)
  thread_local std::vector<size_t> stream_of;   // index into streams, per record
  thread_local std::vector<uint64_t> locators;  // per record
  thread_local std::vector<uint64_t> fps;       // of each record's id
  streams.clear();
  stream_of.clear();
  locators.clear();
  fps.clear();
  std::string key;
  Status status;
  const StreamIndex* index = &index_;  // (index_mu_ is held; the lambda cannot show it)
  std::string index_damage;
  const Status walked = for_each_record(
      frame, h, seed_, &buf,
      [&](const RecordedEvent& ev, uint32_t i, uint32_t body_off) {
        if (Status bad = check_record_stream(ev); !bad.ok()) {
          status =
              corruption(fmt::format("{}: record {}: {}", where(slot, offset), i, bad.message()),
                         static_cast<int64_t>(slot), static_cast<int64_t>(offset));
          return false;
        }
        key.assign(ev.stream_type);
        key += '-';
        key.append(ev.stream_id);
        size_t k = 0;
        while (k < streams.size() && streams[k].key != key) ++k;
        if (k == streams.size()) {
          const StreamIndex::Entry* e = index->find(key);
          if (e != nullptr && !e->damage.empty()) {
            index_damage = e->damage;
            return false;
          }
          streams.push_back(
              {key, static_cast<uint8_t>(ev.stream_type.size()), e ? e->version() : 0});
        }
        Stream& st = streams[k];
        if (ev.version.value != st.version + 1) {
          status = corruption(fmt::format("{}: stream {} jumps from version {} to {}",
                                          where(slot, offset), key, st.version, ev.version.value),
                              static_cast<int64_t>(slot), static_cast<int64_t>(offset));
          return false;
        }
        ++st.version;
        stream_of.push_back(k);
        locators.push_back(format::encode_locator(
            h.compressed() ? format::Locator{offset, true, i}
                           : format::Locator{offset + fh::kSize + body_off}));
        fps.push_back(IdTable::fingerprint(ev.id, seed_));
        return true;
      },
      RecordCheck::kFrameVerified);
  if (!index_damage.empty()) {
    // Not the frame's fault: the persisted index cannot say where this
    // stream stands. open() drops the index and scans the whole log.
    index_damaged_ = true;
    return corruption(fmt::format("{}: the persisted index is damaged: {}", path_, index_damage),
                      static_cast<int64_t>(index_slot_), -1);
  }
  if (!walked.ok())
    return corruption(fmt::format("{}: {}", where(slot, offset), walked.message()),
                      static_cast<int64_t>(slot), static_cast<int64_t>(offset));
  if (!status.ok()) return status;
  std::vector<StreamIndex::Entry*> entries;
  entries.reserve(streams.size());
  for (const Stream& st : streams) entries.push_back(&index_.get_or_add(st.key, st.type_len));
  for (size_t i = 0; i < locators.size(); ++i) entries[stream_of[i]]->delta.push_back(locators[i]);
  index_.ids().add_batch(fps.data(), locators.data(), locators.size());
  index_.note_added(h.count);
  return Status();
}

bool Store::Impl::index_damaged() const {
  ReaderLock ix(&index_mu_);
  return index_damaged_;
}

Status Store::Impl::rescan_without_index(std::optional<BadFrame>* bad) {
  {
    WriterLock ix(&index_mu_);
    ckpt_problem_ = fmt::format(
        "{}: persisted index unusable (a directory entry is damaged); "
        "scanning the log",
        where(index_slot_, slot_offset(index_slot_)));
    index_.clear();
    if (index_map_ != nullptr) os_->unmap(index_map_, index_map_len_);
    index_map_ = nullptr;
    index_slot_ = kNoSlot;
    index_epoch_ = 0;
    index_covers_ = 0;
    index_damaged_ = false;
    committed_.store(0, std::memory_order_release);
  }
  next_position_ = 1;
  tail_offset_ = tail_slot_ = tail_epoch_ = 0;
  last_frame_offset_ = 0;
  return scan_log(0, 0, 1, bad);
}

Status Store::Impl::scan_log(size_t seg_index, uint64_t offset, uint64_t expected,
                             std::optional<BadFrame>* bad) {
  bad->reset();
  MappedLog log(*this);
  // A scan that starts at a segment's first frame enters that segment: it
  // must start at `expected` [F-30]. (Nothing of it has been read, so this
  // holds for every consistent log: open's full scan, and a read-only
  // refresh of a store that had no event segment before, start so.)
  if (seg_index < log.segment_count() &&
      offset == slot_offset(log.segment(seg_index).slot) + sh::kSize)
    offset = 0;
  LogReader reader(log, seg_index, offset, expected);
  WriterLock ix(&index_mu_);
  LogFrame f;
  BadFrame b;
  std::optional<size_t> frames_seg;  // segment of the last good frame
  for (;;) {
    const LogReader::Step step = reader.next(&f, &b);
    if (step == LogReader::Step::kFrame) {
      Status s = index_frame(f.bytes, f.header, f.offset, f.slot);
      if (!s.ok()) {
        *bad = BadFrame{f.seg_index, f.offset, f.header.first_position, s.message()};
        break;
      }
      last_frame_offset_ = f.offset;
      next_position_ = reader.expected_position();
      tail_slot_ = f.slot;
      tail_epoch_ = log.segment(f.seg_index).epoch;
      tail_offset_ = reader.offset();
      frames_seg = f.seg_index;
      continue;
    }
    if (step == LogReader::Step::kBad) *bad = std::move(b);
    break;
  }
  // What was indexed is committed: in one step with the index (a read-only
  // handle's readers never see a stream version ahead of its events).
  committed_.store(next_position_ - 1, std::memory_order_release);
  // Appends continue where the walk stopped: after the last good frame, or
  // where it stopped in a later segment it went on to (the possibly empty
  // last segment, or one ended by junk that the next segment retried).
  std::optional<std::pair<size_t, uint64_t>> stop;
  if (!*bad && reader.seg_index() < log.segment_count())
    stop = {reader.seg_index(), reader.offset()};
  else if (reader.left_a_segment() && (!frames_seg || reader.left_seg_index() >= *frames_seg))
    stop = {reader.left_seg_index(), reader.left_offset()};
  if (stop) {
    const EventSeg& seg = log.segment(stop->first);
    tail_slot_ = seg.slot;
    tail_epoch_ = seg.epoch;
    tail_offset_ = std::min(stop->second, slot_offset(seg.slot) + seg_size_);
  }
  return Status();
}

bool Store::Impl::later_frame_proves_durable(const BadFrame& bad) const {
  return ::eventsource::later_frame_proves_durable(MappedLog(*this), bad);  // verify judges alike
}

Status Store::Impl::save_ranges(const std::vector<Range>& ranges, std::string* side_file,
                                uint64_t* bytes_saved) {
  // Side file: for each range, u64 file offset, u64 length, then the bytes
  // (trailing never-written zeros dropped).
  if (side_file->empty()) *side_file = fmt::format("{}.cut-{}", path_, now_us() / 1000000);
  int sfd = os_->open(*side_file, O_WRONLY | O_CREAT | O_APPEND, opt_.file_mode);
  if (sfd < 0)
    return io_error(fmt::format("{}: cannot create side file for the cut bytes: {}", *side_file,
                                errno_text(-sfd)),
                    -sfd);
  int64_t out = os_->file_size(sfd);
  Status s = out < 0 ? io_error(fmt::format("{}: fstat failed", *side_file), static_cast<int>(-out))
                     : Status();
  std::string buf;
  for (const Range& r : ranges) {
    if (!s.ok()) break;
    buf.resize(r.len);
    s = read_exact(buf.data(), r.len, r.off, "saving cut bytes");
    if (!s.ok()) break;
    size_t keep = buf.size();
    while (keep > 0 && buf[keep - 1] == 0) --keep;
    uint8_t hdr[16];
    put_u64(hdr, r.off);
    put_u64(hdr + 8, keep);
    buf.resize(keep);
    buf.insert(0, reinterpret_cast<const char*>(hdr), sizeof hdr);
    int w = write_full(*os_, sfd, buf.data(), buf.size(), static_cast<uint64_t>(out));
    if (w < 0) {
      s = io_error(fmt::format("{}: writing the side file failed: {}", *side_file, errno_text(-w)),
                   -w);
      break;
    }
    out += static_cast<int64_t>(buf.size());
    *bytes_saved += keep;
  }
  if (s.ok()) {
    int r = os_->fsync(sfd);
    if (r < 0) s = io_error(fmt::format("{}: fsync failed: {}", *side_file, errno_text(-r)), -r);
  }
  os_->close(sfd);
  if (s.ok()) {
    int r = os_->sync_dir_of(*side_file);
    if (r < 0) s = io_error(fmt::format("{}: fsync of its directory failed", *side_file), -r);
  }
  return s;
}

Status Store::Impl::cut_log(const BadFrame& bad, std::string* side_file, uint64_t* bytes_cut,
                            bool save_side_file) {
  SegTable segs = *seg_table();
  const size_t nsegs = segs.size();
  // Ranges to drop: the rest of the bad frame's segment, then whole later segments.
  std::vector<Range> ranges;
  const EventSeg first = segs[bad.seg_index];
  // A segment bad from its first frame on (e.g. it does not continue the
  // previous one) goes whole, header included.
  const bool drop_whole = bad.offset == slot_offset(first.slot) + sh::kSize;
  const size_t keep_segs = drop_whole ? bad.seg_index : bad.seg_index + 1;
  ranges.push_back(
      {drop_whole ? slot_offset(first.slot) : bad.offset,
       slot_offset(first.slot) + seg_size_ - (drop_whole ? slot_offset(first.slot) : bad.offset)});
  for (size_t si = bad.seg_index + 1; si < nsegs; ++si)
    ranges.push_back({slot_offset(segs[si].slot), seg_size_});
  *bytes_cut = 0;
  if (save_side_file) {
    EVENTSOURCE_RETURN_IF_ERROR(save_ranges(ranges, side_file, bytes_cut));
  } else {
    for (const Range& r : ranges) *bytes_cut += r.len;
  }
  // Every cut range gives its space back; the segment appends continue in
  // allocates it again, extent by extent, as it fills [F-8].
  for (const Range& r : ranges) EVENTSOURCE_RETURN_IF_ERROR(zero_range(r.off, r.len));
  // Later segments are now all-zero slots: free.
  // (Open and repair cut before any reader can see the store.)
  for (size_t si = keep_segs; si < nsegs; ++si) {
    slots_[segs[si].slot] = SlotInfo{};
    os_->unmap(maps_[segs[si].slot].exchange(nullptr), seg_size_);
  }
  segs.resize(keep_segs);
  set_seg_table(std::move(segs));
  EVENTSOURCE_RETURN_IF_ERROR(sync_data("after cutting a torn tail"));
  if (!drop_whole) {
    tail_slot_ = first.slot;
    tail_epoch_ = first.epoch;
    tail_offset_ = bad.offset;
  } else if (keep_segs == 0) {
    tail_offset_ = 0;  // no event segment left: the next append allocates one
  }                    // else: the scan left the tail at the end of the previous segment
  next_position_ = bad.expected_position;
  return Status();
}

}  // namespace eventsource
