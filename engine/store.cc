// The store: open and crash recovery, append with group commit, segment
// allocation, checkpoints, and the read paths over the mapped segments.
#include "eventsource/store.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/falloc.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "engine/coding.h"
#include "engine/format.h"
#include "engine/store_impl.h"

namespace eventsource {

namespace fh = format::frame_header;
namespace sh = format::segment_header;
using format::SegmentKind;

namespace {
// Most slots a store can have: 16384 x 64 MiB = 1 TiB by default.
constexpr size_t kMaxSlots = 16384;

std::string errno_text(int e) { return std::strerror(e); }

std::string stream_key(const StreamId& s) {
  std::string k;
  k.reserve(s.type.size() + 1 + s.id.size());
  k += s.type;
  k += '-';
  k += s.id;
  return k;
}
}  // namespace

Store::Impl::Impl(std::string path, const StoreOptions& options)
    : path_(std::move(path)), opt_(options) {
  os_ = opt_.os ? opt_.os : default_os();
  read_only_ = opt_.mode == OpenMode::kReadOnly;
}

Store::Impl::~Impl() { close().ignore_error(); }

std::string Store::Impl::where(uint64_t slot, uint64_t offset) const {
  return fmt::format("{}: segment {} offset {}", path_, slot, hex(offset));
}

Status Store::Impl::write_all(const void* p, size_t n, uint64_t off, const char* what) {
  const uint8_t* b = static_cast<const uint8_t*>(p);
  while (n > 0) {
    ssize_t w = os_->pwrite(fd_, b, n, off);
    if (w < 0) {
      int e = static_cast<int>(-w);
      return io_error(fmt::format("{}: {} failed writing {} bytes at offset {}: {}", path_, what, n,
                                  hex(off), errno_text(e)),
                      e);
    }
    if (w == 0)
      return io_error(fmt::format("{}: {} made no progress at offset {}", path_, what, hex(off)),
                      EIO);
    b += w;
    n -= static_cast<size_t>(w);
    off += static_cast<uint64_t>(w);
  }
  return Status();
}

Status Store::Impl::read_exact(void* p, size_t n, uint64_t off, const char* what) {
  uint8_t* b = static_cast<uint8_t*>(p);
  while (n > 0) {
    ssize_t r = os_->pread(fd_, b, n, off);
    if (r < 0) {
      int e = static_cast<int>(-r);
      return io_error(fmt::format("{}: {} failed reading at offset {}: {}", path_, what, hex(off),
                                  errno_text(e)),
                      e);
    }
    if (r == 0)
      return corruption(fmt::format("{}: {}: file ends at offset {}", path_, what, hex(off)), -1,
                        static_cast<int64_t>(off));
    b += r;
    n -= static_cast<size_t>(r);
    off += static_cast<uint64_t>(r);
  }
  return Status();
}

Status Store::Impl::sync_data(const char* what) {
  int r = os_->fdatasync(fd_);
  if (r < 0)
    return io_error(fmt::format("{}: fdatasync ({}) failed: {}", path_, what, errno_text(-r)), -r);
  return Status();
}

Status Store::Impl::map_slot(uint64_t slot) {
  if (slot >= map_cap_)
    return invalid_argument(fmt::format("{}: segment {} exceeds the {} segments a store may have",
                                        path_, slot, map_cap_));
  if (maps_[slot].load(std::memory_order_relaxed) != nullptr) return Status();
  int err = 0;
  const void* p = os_->map_read(fd_, slot_offset(slot), seg_size_, &err);
  if (p == nullptr)
    return io_error(fmt::format("{}: mmap of segment {} failed: {}", path_, slot, errno_text(err)),
                    err);
  maps_[slot].store(static_cast<const uint8_t*>(p), std::memory_order_release);
  return Status();
}

// Makes [off, off+len) read as zeros: punch a hole, then (kKeep) allocate it
// again so later writes there cannot hit ENOSPC; where holes are not
// supported, write zeros.
Status Store::Impl::zero_range(uint64_t off, uint64_t len, Space space) {
  if (len == 0) return Status();
  int r = os_->fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
  if (r == 0) {
    if (space == Space::kRelease) return Status();
    r = os_->fallocate(fd_, 0, off, len);
    if (r < 0)
      return io_error(fmt::format("{}: re-allocating {} bytes at {} failed: {}", path_, len,
                                  hex(off), errno_text(-r)),
                      -r);
    return Status();
  }
  static const std::string kZeros(1 << 20, '\0');
  while (len > 0) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(len, kZeros.size()));
    EVENTSOURCE_RETURN_IF_ERROR(write_all(kZeros.data(), n, off, "zeroing a cut range"));
    off += n;
    len -= n;
  }
  return Status();
}

// ---------------------------------------------------------------------------
// Open and recovery

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
    std::string why = parse_file_header(buf, sizeof buf, &header_);
    if (!why.empty())
      return corruption(
          fmt::format("{}: offset 0x0: {} (run 'esdump verify {}')", path_, why, path_), -1, 0);
    if (header_.version > format::kFormatVersion)
      return not_supported(
          fmt::format("{}: format version {} is newer than this library's {}; "
                      "upgrade eventsource to open it",
                      path_, header_.version, format::kFormatVersion));
    if (header_.version < format::kFormatVersion)
      return not_supported(fmt::format("{}: format version {} is not readable by this library",
                                       path_, header_.version));
  }
  seed_ = header_.seed();
  seg_size_ = header_.segment_size;
  seg_shift_ = static_cast<unsigned>(__builtin_ctzll(seg_size_));  // a power of two (checked)
  map_cap_ = kMaxSlots;
  maps_ = std::make_unique<std::atomic<const uint8_t*>[]>(map_cap_);
  segs_ = std::make_unique<EventSeg[]>(map_cap_);
  for (size_t i = 0; i < map_cap_; ++i) maps_[i].store(nullptr, std::memory_order_relaxed);

  if (!read_only_ && size > static_cast<int64_t>(format::kFileHeaderSize) &&
      (static_cast<uint64_t>(size) - format::kFileHeaderSize) % seg_size_ != 0) {
    // A file cut short inside a segment (copied half-way, truncated): pad the
    // last segment back to full size; the missing bytes read as zeros, i.e.
    // as a torn tail (or as damage, if the checkpoint says they were durable).
    uint64_t whole = align_up(static_cast<uint64_t>(size) - format::kFileHeaderSize, seg_size_);
    int r = os_->fallocate(fd_, 0, static_cast<uint64_t>(size),
                           format::kFileHeaderSize + whole - static_cast<uint64_t>(size));
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
    const EventSeg& seg = segs_[bad->seg_index];
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
  committed_.store(next_position_ - 1, std::memory_order_release);
  written_.store(next_position_ - 1);
  if (!read_only_ && next_position_ - 1 > index_covers_) {
    // Everything recovered past the checkpoint becomes durable now, so the
    // durable hints written into new frames are exact. (A clean open has
    // nothing past the checkpoint and skips this sync.)
    EVENTSOURCE_RETURN_IF_ERROR(sync_data("after recovery"));
  }
  synced_.store(next_position_ - 1);
  if (!read_only_) {
    // Index segments the checkpoint does not name are leftovers (replaced,
    // or written by a checkpoint that crashed before its rename): free them.
    for (uint64_t slot = 0; slot < slots_.size(); ++slot)
      if (slots_[slot].kind == SegmentKind::kIndex && slots_[slot].slot_count > 0 &&
          slot != index_slot_)
        EVENTSOURCE_RETURN_IF_ERROR(free_index_segment(slot));
  }
  return Status();
}

Status Store::Impl::read_slots() {
  int64_t size = os_->file_size(fd_);
  if (size < 0)
    return io_error(fmt::format("{}: fstat failed: {}", path_, errno_text(static_cast<int>(-size))),
                    static_cast<int>(-size));
  uint64_t nslots = size < static_cast<int64_t>(format::kFileHeaderSize)
                        ? 0
                        : (static_cast<uint64_t>(size) - format::kFileHeaderSize) / seg_size_;
  if (nslots > map_cap_)
    return corruption(fmt::format("{}: file holds {} segments, more than the {} a store may have",
                                  path_, nslots, map_cap_),
                      -1, size);
  size_t known = slots_.size();
  slots_.resize(nslots);
  std::vector<EventSeg> events;
  for (uint32_t i = 0; i < seg_count_.load(); ++i) events.push_back(segs_[i]);
  for (uint64_t slot = 0; slot < nslots; ++slot) {
    // On refresh (read-only) re-read all but event segments: the writer frees
    // index segments and reuses slots.
    if (slot < known && slots_[slot].kind == SegmentKind::kEvents) continue;
    uint8_t buf[sh::kSize + fh::kSize];
    EVENTSOURCE_RETURN_IF_ERROR(
        read_exact(buf, sizeof buf, slot_offset(slot), "reading a segment header"));
    SegmentHeader h;
    std::string why;
    switch (parse_segment_header(buf, slot, seed_, &h, &why)) {
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
          EVENTSOURCE_RETURN_IF_ERROR(zero_range(slot_offset(slot), seg_size_, Space::kRelease));
          repair_report_->changed = true;
          repair_report_->bytes_cut += saved;
          slots_[slot] = SlotInfo{};
          break;
        }
        return corruption(fmt::format("{}: {} (run 'esdump verify {}')",
                                      where(slot, slot_offset(slot)), why, path_),
                          static_cast<int64_t>(slot), static_cast<int64_t>(slot_offset(slot)));
      case SegmentHeaderState::kValid:
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
    segs_[i] = events[i];
  }
  seg_count_.store(static_cast<uint32_t>(events.size()), std::memory_order_release);
  return Status();
}

Status Store::Impl::load_checkpoint_and_index(uint64_t* scan_seg, uint64_t* scan_off,
                                              uint64_t* expected) {
  *scan_seg = 0;
  *scan_off = seg_count_ > 0 ? slot_offset(segs_[0].slot) + sh::kSize : 0;
  *expected = 1;
  if (repair_mode_) return Status();  // full scan; close() writes a fresh checkpoint
  EVENTSOURCE_ASSIGN_OR_RETURN(
      ckpt_, read_checkpoint_file(*os_, path_, header_.store_id, seed_, &ckpt_problem_));
  if (!ckpt_) return Status();
  const Checkpoint& c = *ckpt_;
  // The checkpoint's claim must be backed by the data: the frame it names
  // must exist, be valid and end exactly at its durable position.
  if (c.durable_position > 0) {
    uint64_t slot =
        c.last_frame_offset < format::kFileHeaderSize ? kNoSlot : slot_of(c.last_frame_offset);
    const EventSeg* seg = nullptr;
    for (uint32_t i = 0; i < seg_count_; ++i)
      if (segs_[i].slot == slot) seg = &segs_[i];
    std::string why = "its segment is not an event segment";
    FrameHeader h;
    if (seg != nullptr && c.last_frame_offset >= slot_offset(slot) + sh::kSize) {
      uint64_t in = c.last_frame_offset - slot_offset(slot);
      FrameState st = check_frame(slot_map(slot) + in, seg_size_ - in, c.last_frame_offset,
                                  seg->epoch, seed_, &h, &why, seg_size_);
      if (st == FrameState::kValid && h.first_position + h.count - 1 == c.durable_position)
        why.clear();
      else if (st == FrameState::kValid)
        why = fmt::format("the frame there ends at position {}", h.first_position + h.count - 1);
      else if (st == FrameState::kNeverWritten)
        why = "nothing was ever written there";
    }
    if (!why.empty())
      return corruption(
          fmt::format("{}: the checkpoint file says events up to position {} are "
                      "durable in a frame at offset {}, but the data file does not "
                      "hold them ({}). The data file was truncated, replaced or "
                      "damaged: restore it, or run 'esdump repair {}'",
                      path_, c.durable_position, hex(c.last_frame_offset), why, path_),
          slot == kNoSlot ? -1 : static_cast<int64_t>(slot),
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
  int err = 0;
  size_t len = si.slot_count * seg_size_;
  const void* m = os_->map_read(fd_, slot_offset(c.index_slot), len, &err);
  if (m == nullptr)
    return io_error(fmt::format("{}: mmap of index segment {} failed: {}", path_, c.index_slot,
                                errno_text(err)),
                    err);
  StreamIndex::BlobInfo info;
  std::string why = index_.load_blob(static_cast<const uint8_t*>(m) + sh::kSize, si.payload_len,
                                     seed_, /*copy=*/read_only_, &info);
  if (!why.empty() || info.covers_position != c.durable_position) {
    // The index is only an accelerator: fall back to scanning the whole log.
    os_->unmap(m, len);
    index_.clear();
    ckpt_problem_ = fmt::format("{}: persisted index unusable ({}); scanning the log",
                                where(c.index_slot, slot_offset(c.index_slot)),
                                why.empty() ? "covers a different position" : why);
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
  // Continue after the last indexed frame.
  if (info.covers_position > 0) {
    // -1: a last frame that fills its segment ends exactly at the next slot.
    uint64_t slot = slot_of(info.log_end_offset - 1);
    for (uint32_t i = 0; i < seg_count_; ++i) {
      if (segs_[i].slot == slot) {
        *scan_seg = i;
        *scan_off = info.log_end_offset;
        tail_slot_ = slot;
        tail_epoch_ = segs_[i].epoch;
        tail_offset_ = info.log_end_offset;
        last_frame_offset_ = c.last_frame_offset;
        return Status();
      }
    }
    return corruption(fmt::format("{}: the persisted index continues at offset {}, which is not in "
                                  "an event segment (run 'esdump repair {}')",
                                  path_, hex(info.log_end_offset), path_),
                      static_cast<int64_t>(slot), static_cast<int64_t>(info.log_end_offset));
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
  thread_local std::vector<Stream> streams;  // distinct streams of the frame (usually one)
  thread_local std::vector<std::pair<size_t, uint64_t>> locators;  // (stream, locator)
  streams.clear();
  locators.clear();
  std::string err;
  std::string key;
  Status status;
  bool ok = for_each_record(
      frame, h, seed_, &buf, &err,
      [&](const RecordedEvent& ev, uint32_t i, uint32_t body_off) {
        if (ev.stream_type.empty() || ev.stream_id.empty() || ev.stream_type.size() > 255 ||
            ev.stream_type.find('-') != std::string_view::npos) {
          status = corruption(
              fmt::format("{}: record {} has an invalid stream name", where(slot, offset), i),
              static_cast<int64_t>(slot), static_cast<int64_t>(offset));
          return false;
        }
        key.assign(ev.stream_type);
        key += '-';
        key.append(ev.stream_id);
        size_t k = 0;
        while (k < streams.size() && streams[k].key != key) ++k;
        if (k == streams.size()) {
          const StreamIndex::Entry* e = index_.find(key);
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
        locators.emplace_back(k, h.compressed()
                                     ? (format::kLocatorCompressed | (uint64_t{i} << 48) | offset)
                                     : offset + fh::kSize + body_off);
        return true;
      },
      RecordCheck::kFrameVerified);
  if (!ok)
    return corruption(fmt::format("{}: {}", where(slot, offset), err), static_cast<int64_t>(slot),
                      static_cast<int64_t>(offset));
  if (!status.ok()) return status;
  std::vector<StreamIndex::Entry*> entries;
  entries.reserve(streams.size());
  for (const Stream& st : streams) entries.push_back(&index_.get_or_add(st.key, st.type_len));
  for (const auto& [k, loc] : locators) entries[k]->delta.push_back(loc);
  index_.note_added(h.count);
  return Status();
}

Status Store::Impl::scan_log(size_t seg_index, uint64_t offset, uint64_t expected,
                             std::optional<BadFrame>* bad) {
  bad->reset();
  uint32_t nsegs = seg_count_.load();
  std::unique_lock ix(index_mu_);
  for (size_t si = seg_index; si < nsegs; ++si) {
    const EventSeg& seg = segs_[si];
    uint64_t base = slot_offset(seg.slot);
    uint64_t end = base + seg_size_;
    if (si != seg_index) {
      offset = base + sh::kSize;
      if (seg.first_position != expected) {
        // A gap between segments: frames at the end of the previous one are
        // missing (never written, or lost).
        *bad = BadFrame{si, offset, expected,
                        fmt::format("segment starts at position {}, expected {}",
                                    seg.first_position, expected)};
        return Status();
      }
    }
    const uint8_t* map = slot_map(seg.slot);
    while (offset < end) {
      FrameHeader h;
      std::string why;
      FrameState st = check_frame(map + (offset - base), end - offset, offset, seg.epoch, seed_, &h,
                                  &why, seg_size_);
      if (st == FrameState::kNeverWritten) break;
      if (st == FrameState::kValid && h.first_position != expected) {
        st = FrameState::kBad;
        why = fmt::format("frame starts at position {}, expected {}", h.first_position, expected);
      }
      if (st == FrameState::kBad) {
        // Junk after the last frame of a segment that the next segment
        // continues seamlessly is a failed write that was retried there.
        if (si + 1 < nsegs && segs_[si + 1].first_position == expected) break;
        *bad = BadFrame{si, offset, expected, why};
        return Status();
      }
      Status s = index_frame(map + (offset - base), h, offset, seg.slot);
      if (!s.ok()) {
        *bad = BadFrame{si, offset, expected, s.message()};
        return Status();
      }
      expected += h.count;
      last_frame_offset_ = offset;
      offset += h.frame_len;
      next_position_ = expected;
      tail_slot_ = seg.slot;
      tail_epoch_ = seg.epoch;
      tail_offset_ = offset;
    }
    if (si + 1 == nsegs || tail_slot_ != seg.slot) {
      // The (possibly empty) last segment is where appends continue.
      tail_slot_ = seg.slot;
      tail_epoch_ = seg.epoch;
      tail_offset_ = offset < end ? offset : end;
    }
  }
  return Status();
}

bool Store::Impl::later_frame_proves_durable(const BadFrame& bad) const {
  // A frame written after position P was durable records durable >= P; if
  // such a frame follows the bad one, the bad bytes were once durable data.
  uint32_t nsegs = seg_count_.load();
  for (size_t si = bad.seg_index; si < nsegs; ++si) {
    const EventSeg& seg = segs_[si];
    uint64_t base = slot_offset(seg.slot);
    uint64_t end = base + seg_size_;
    const uint8_t* map = slot_map(seg.slot);
    // From the bad offset itself: a valid frame with an unexpected position
    // carries its own durable hint.
    uint64_t off = si == bad.seg_index ? bad.offset : base + sh::kSize;
    for (; off + fh::kSize <= end; off += format::kFrameAlign) {
      const uint8_t* p = map + (off - base);
      if (get_u64(p + fh::kFileOffset) != off) continue;  // cheap filter first
      FrameHeader h;
      std::string why;
      if (check_frame(p, end - off, off, seg.epoch, seed_, &h, &why, seg_size_) ==
              FrameState::kValid &&
          h.durable_position >= bad.expected_position)
        return true;
    }
  }
  return false;
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
    for (size_t done = 0; done < buf.size() && s.ok();) {
      ssize_t w =
          os_->pwrite(sfd, buf.data() + done, buf.size() - done, static_cast<uint64_t>(out));
      if (w <= 0) {
        int e = w < 0 ? static_cast<int>(-w) : EIO;
        s = io_error(fmt::format("{}: writing the side file failed: {}", *side_file, errno_text(e)),
                     e);
        break;
      }
      done += static_cast<size_t>(w);
      out += w;
    }
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
  uint32_t nsegs = seg_count_.load();
  // Ranges to drop: the rest of the bad frame's segment, then whole later segments.
  std::vector<Range> ranges;
  const EventSeg first = segs_[bad.seg_index];
  // A segment bad from its first frame on (e.g. it does not continue the
  // previous one) goes whole, header included.
  const bool drop_whole = bad.offset == slot_offset(first.slot) + sh::kSize;
  const size_t keep_segs = drop_whole ? bad.seg_index : bad.seg_index + 1;
  ranges.push_back(
      {drop_whole ? slot_offset(first.slot) : bad.offset,
       slot_offset(first.slot) + seg_size_ - (drop_whole ? slot_offset(first.slot) : bad.offset)});
  for (size_t si = bad.seg_index + 1; si < nsegs; ++si)
    ranges.push_back({slot_offset(segs_[si].slot), seg_size_});
  *bytes_cut = 0;
  if (save_side_file) {
    EVENTSOURCE_RETURN_IF_ERROR(save_ranges(ranges, side_file, bytes_cut));
  } else {
    for (const Range& r : ranges) *bytes_cut += r.len;
  }
  // The segment appends continue in keeps its space; dropped ones give it back.
  for (size_t k = 0; k < ranges.size(); ++k)
    EVENTSOURCE_RETURN_IF_ERROR(zero_range(ranges[k].off, ranges[k].len,
                                           k == 0 && !drop_whole ? Space::kKeep : Space::kRelease));
  // Later segments are now all-zero slots: free.
  for (size_t si = keep_segs; si < nsegs; ++si) {
    slots_[segs_[si].slot] = SlotInfo{};
    os_->unmap(maps_[segs_[si].slot].exchange(nullptr), seg_size_);
  }
  seg_count_.store(static_cast<uint32_t>(keep_segs), std::memory_order_release);
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

Status Store::Impl::close() { return release(/*checkpoint=*/!closed_); }

Status Store::Impl::release(bool checkpoint) {
  Status result;
  if (checkpoint && fd_ >= 0 && !read_only_ && !poisoned_ && maps_) {
    std::lock_guard lock(write_mu_);
    result = checkpoint_locked();
  }
  closed_ = true;
  if (maps_) {
    for (size_t i = 0; i < map_cap_; ++i) {
      const uint8_t* p = maps_[i].exchange(nullptr);
      if (p != nullptr) os_->unmap(p, seg_size_);
    }
  }
  if (index_map_ != nullptr) os_->unmap(index_map_, index_map_len_);
  index_map_ = nullptr;
  if (fd_ >= 0) {
    int r = os_->close(fd_);
    if (r < 0 && result.ok())
      result = io_error(fmt::format("{}: close failed: {}", path_, errno_text(-r)), -r);
  }
  fd_ = -1;
  return result;
}

// ---------------------------------------------------------------------------
// Writes

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
  // Event segments are preallocated whole (appends never hit ENOSPC midway);
  // an index segment is written once, so it only needs its own bytes and the
  // rest of its slots stays a hole.
  const uint64_t span = count * seg_size_;
  const uint64_t need =
      kind == SegmentKind::kEvents ? span : std::min(span, align_up(sh::kSize + payload_len, 4096));
  if (slot < slots_.size()) {
    // Reused slots may hold stale bytes: zero them.
    EVENTSOURCE_RETURN_IF_ERROR(zero_range(slot_offset(slot), span, Space::kRelease));
  }
  int r = os_->fallocate(fd_, 0, slot_offset(slot), need);
  if (r < 0)
    return io_error(fmt::format("{}: cannot allocate {} bytes for a new segment at offset {}: {} "
                                "(free disk space; events already stored stay readable)",
                                path_, need, hex(slot_offset(slot)), errno_text(-r)),
                    -r);
  if (slot + count > slots_.size()) {
    // The file always ends on a slot boundary.
    int64_t size = os_->file_size(fd_);
    if (size >= 0 && static_cast<uint64_t>(size) < slot_offset(slot + count))
      size = os_->ftruncate(fd_, slot_offset(slot + count));
    if (size < 0)
      return io_error(fmt::format("{}: cannot extend the file to {} bytes: {}", path_,
                                  slot_offset(slot + count), errno_text(static_cast<int>(-size))),
                      static_cast<int>(-size));
    slots_.resize(slot + count);
  }
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
  EVENTSOURCE_RETURN_IF_ERROR(zero_range(slot_offset(slot), span * seg_size_, Space::kRelease));
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
  uint32_t n = seg_count_.load();
  segs_[n] = EventSeg{slot, slots_[slot].epoch, first_position};
  seg_count_.store(n + 1, std::memory_order_release);
  tail_slot_ = slot;
  tail_epoch_ = slots_[slot].epoch;
  tail_offset_ = slot_offset(slot) + sh::kSize;
  synced_.store(written_.load());
  return Status();
}

Status Store::Impl::poison(Status why) {
  std::lock_guard lock(poison_mu_);
  if (!poisoned_.load()) poison_ = why;
  poisoned_.store(true);
  return why;
}

std::string Store::Impl::poison_message() const {
  std::lock_guard lock(poison_mu_);
  return poison_.message();
}

void Store::Impl::publish_committed(uint64_t position) {
  uint64_t cur = committed_.load(std::memory_order_relaxed);
  while (cur < position &&
         !committed_.compare_exchange_weak(cur, position, std::memory_order_release)) {
  }
}

Status Store::Impl::wait_durable(uint64_t position, Durability mode) {
  std::unique_lock lock(sync_mu_);
  while (synced_.load() < position) {
    if (poisoned_) return closed(fmt::format("{}: not durable: {}", path_, poison_message()));
    if (syncing_) {
      sync_cv_.wait(lock);
      continue;
    }
    // This thread leads the next sync; it covers everything written before
    // `target` is read, so appenders that wrote meanwhile ride along.
    syncing_ = true;
    lock.unlock();
    if (mode == Durability::kGroup && opt_.group_commit_window_us > 0 && in_flight_.load() > 1)
      std::this_thread::sleep_for(std::chrono::microseconds(opt_.group_commit_window_us));
    const uint64_t target = written_.load();
    int r = os_->fdatasync(fd_);
    lock.lock();
    syncing_ = false;
    if (r < 0) {
      // Never retried: the kernel may have dropped the dirty pages.
      Status failed = io_error(fmt::format("{}: fdatasync failed: {}; the append is not "
                                           "acknowledged and the store refuses writes until it "
                                           "is reopened and recovered",
                                           path_, errno_text(-r)),
                               -r);
      poison(failed).ignore_error();
      sync_cv_.notify_all();
      return failed;
    }
    uint64_t cur = synced_.load();
    if (target > cur) synced_.store(target);
    publish_committed(target);
    sync_cv_.notify_all();
  }
  return Status();
}

Result<AppendResult> Store::Impl::append(const StreamId& stream, ExpectedVersion expected,
                                         std::span<const EventData> events,
                                         const AppendOptions& options) {
  if (closed_) return closed(fmt::format("{}: store is closed", path_));
  if (read_only_)
    return Status(Code::kReadOnly, fmt::format("{}: store was opened read-only", path_));
  EVENTSOURCE_RETURN_IF_ERROR(stream.validate());
  const std::string key = stream_key(stream);
  const size_t n = events.size();
  if (n == 0 || n > format::kMaxEventsPerBatch)
    return invalid_argument(fmt::format("stream {}: a batch holds 1..{} events, got {}", key,
                                        format::kMaxEventsPerBatch, n));
  uint64_t bytes = 0;
  bool all_ids = true;
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
    all_ids &= !e.id.is_nil();
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

  in_flight_.fetch_add(1);
  struct Leave {
    std::atomic<int>& n;
    ~Leave() { n.fetch_sub(1); }
  } leave{in_flight_};

  AppendResult result;
  bool checkpoint_due = false;
  {
    std::unique_lock lock(write_mu_);
    if (closed_) return closed(fmt::format("{}: store is closed", path_));
    if (poisoned_)
      return closed(
          fmt::format("{}: store refuses writes until reopened: {}", path_, poison_message()));
    const StreamIndex::Entry* entry = index_.find(key);
    const uint64_t current = entry ? entry->version() : 0;
    if (entry != nullptr) {
      std::string why = StreamIndex::verify_entry(*entry, seed_);
      if (!why.empty())
        return corruption(
            fmt::format("{}: stream {}: {} (run 'esdump verify {}')", path_, key, why, path_),
            static_cast<int64_t>(index_slot_), -1);
    }
    // Idempotent retry: the stream already ends with exactly these ids.
    if (all_ids && current >= n && expected.accepts(StreamVersion(current - n))) {
      bool same = true;
      for (size_t i = 0; i < n && same; ++i) {
        RecordedEvent ev;
        Status s = read_locator(entry->locator(current - n + 1 + i), &ev);
        if (!s.ok()) return s;
        same = ev.id == events[i].id;
        if (i == 0) result.first_position = ev.position;
        result.last_position = ev.position;
      }
      if (same) {
        result.version = StreamVersion(current);
        result.deduplicated = true;
        lock.unlock();
        if (mode != Durability::kNone)
          EVENTSOURCE_RETURN_IF_ERROR(wait_durable(result.last_position.value, mode));
        return result;
      }
    }
    if (!expected.accepts(StreamVersion(current)))
      return conflict(fmt::format("{}: stream {}: expected {}, but the stream is at version {}",
                                  path_, key, expected.to_string(), current),
                      static_cast<int64_t>(current));

    const uint64_t first = next_position_;
    const int64_t now = now_us();
    encoder_.reset();
    for (size_t i = 0; i < n; ++i) {
      const EventData& e = events[i];
      encoder_.add({&stream, &e, e.id.is_nil() ? Uuid::random() : e.id,
                    e.timestamp_us == 0 ? now : e.timestamp_us, first + i, current + 1 + i},
                   seed_);
    }
    if (tail_offset_ == 0 ||
        tail_offset_ + encoder_.uncompressed_frame_len() > slot_offset(tail_slot_) + seg_size_)
      EVENTSOURCE_RETURN_IF_ERROR(roll_segment(first));
    auto frame = encoder_.finish(tail_offset_, tail_epoch_, first, synced_.load(),
                                 opt_.compress_min_bytes, opt_.compression_level, seed_);
    EVENTSOURCE_RETURN_IF_ERROR(
        write_all(frame.data(), frame.size(), tail_offset_, "appending a batch"));
    {
      std::unique_lock ix(index_mu_);
      StreamIndex::Entry& e = index_.get_or_add(key, static_cast<uint8_t>(stream.type.size()));
      const auto& offs = encoder_.record_offsets();
      for (size_t i = 0; i < n; ++i)
        e.delta.push_back(encoder_.compressed()
                              ? (format::kLocatorCompressed | (uint64_t{i} << 48) | tail_offset_)
                              : tail_offset_ + fh::kSize + offs[i]);
      index_.note_added(n);
    }
    last_frame_offset_ = tail_offset_;
    tail_offset_ += frame.size();
    next_position_ += n;
    written_.store(next_position_ - 1);
    bytes_since_checkpoint_ += frame.size();
    result.version = StreamVersion(current + n);
    result.first_position = GlobalPosition(first);
    result.last_position = GlobalPosition(first + n - 1);
    if (mode == Durability::kNone) publish_committed(first + n - 1);
    checkpoint_due = opt_.checkpoint_interval_bytes > 0 &&
                     bytes_since_checkpoint_ >= opt_.checkpoint_interval_bytes;
    if (checkpoint_due && mode == Durability::kNone) {
      // A failed checkpoint does not undo the append; it is retried later.
      checkpoint_locked().ignore_error();
      checkpoint_due = false;
    }
  }
  if (mode != Durability::kNone) {
    EVENTSOURCE_RETURN_IF_ERROR(wait_durable(result.last_position.value, mode));
    if (checkpoint_due) {
      std::lock_guard lock(write_mu_);
      if (!poisoned_ && bytes_since_checkpoint_ >= opt_.checkpoint_interval_bytes)
        checkpoint_locked().ignore_error();
    }
  }
  return result;
}

Status Store::Impl::checkpoint_locked() {
  if (read_only_ || closed_) return Status();
  if (poisoned_)
    return closed(
        fmt::format("{}: store refuses writes until reopened: {}", path_, poison_message()));
  if (next_position_ - 1 == index_covers_ && index_slot_ != kNoSlot && ckpt_ &&
      ckpt_->durable_position == index_covers_)
    return Status();  // nothing written since the last checkpoint
  {
    std::unique_lock lock(sync_mu_);
    while (syncing_) sync_cv_.wait(lock);
    Status s = sync_data("checkpoint");
    if (!s.ok()) {
      poison(s).ignore_error();
      sync_cv_.notify_all();
      return s;
    }
    synced_.store(written_.load());
    publish_committed(written_.load());
  }
  const uint64_t covers = next_position_ - 1;
  std::string blob = index_.build_blob(covers, tail_offset_, seed_);
  uint64_t count = (sh::kSize + blob.size() + seg_size_ - 1) / seg_size_;
  EVENTSOURCE_ASSIGN_OR_RETURN(uint64_t slot,
                               allocate_slots(SegmentKind::kIndex, count, covers, blob.size()));
  Status s = write_all(blob.data(), blob.size(), slot_offset(slot) + sh::kSize,
                       "writing the stream index");
  if (s.ok()) s = sync_data("stream index");
  if (!s.ok()) {
    for (uint64_t k = 0; k < count; ++k) slots_[slot + k] = SlotInfo{};
    if (s.code() == Code::kIoError) poison(s).ignore_error();
    return s;
  }
  Checkpoint c;
  c.store_id = header_.store_id;
  c.durable_position = covers;
  c.last_frame_offset = covers > 0 ? last_frame_offset_ : 0;
  c.index_slot = slot;
  c.index_epoch = slots_[slot].epoch;
  c.written_us = now_us();
  EVENTSOURCE_RETURN_IF_ERROR(write_checkpoint_file(*os_, path_, c, seed_, opt_.file_mode));
  ckpt_ = c;
  // Swap the in-memory index onto the new persisted one.
  int err = 0;
  size_t len = count * seg_size_;
  const void* m = os_->map_read(fd_, slot_offset(slot), len, &err);
  uint64_t old_slot = index_slot_;
  if (m != nullptr) {
    std::unique_lock ix(index_mu_);
    StreamIndex fresh;
    StreamIndex::BlobInfo info;
    std::string why = fresh.load_blob(static_cast<const uint8_t*>(m) + sh::kSize, blob.size(),
                                      seed_, false, &info);
    if (why.empty()) {
      index_ = std::move(fresh);
      if (index_map_ != nullptr) os_->unmap(index_map_, index_map_len_);
      index_map_ = static_cast<const uint8_t*>(m);
      index_map_len_ = len;
    } else {
      os_->unmap(m, len);
    }
    index_slot_ = slot;
    index_epoch_ = c.index_epoch;
    index_covers_ = covers;
  } else {
    std::unique_lock ix(index_mu_);
    index_slot_ = slot;
    index_epoch_ = c.index_epoch;
    index_covers_ = covers;
  }
  // The previous index segment is no longer referenced: zero it (so no
  // stale header or blob byte outlives it) and free its slots.
  if (old_slot != kNoSlot && old_slot < slots_.size() && old_slot != slot)
    free_index_segment(old_slot).ignore_error();  // retried at the next open
  bytes_since_checkpoint_ = 0;
  return Status();
}

// ---------------------------------------------------------------------------
// Reads

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

StoreStats Store::Impl::stats() const {
  StoreStats st;
  st.format_version = header_.version;
  st.segment_size = seg_size_;
  st.events = committed_.load();
  st.first_position = GlobalPosition(st.events > 0 ? 1 : 0);
  st.last_position = GlobalPosition(st.events);
  {
    std::shared_lock ix(index_mu_);
    st.streams = index_.stream_count();
    st.index_persisted_position = index_covers_;
  }
  uint32_t nsegs = seg_count_.load();
  st.event_segments = nsegs;
  {
    // The slot table belongs to the writer.
    std::lock_guard lock(write_mu_);
    uint64_t used = 0;
    for (uint64_t s = 0; s < slots_.size(); ++s) {
      if (slots_[s].kind == SegmentKind::kIndex && slots_[s].slot_count > 0) ++st.index_segments;
      if (slots_[s].kind != SegmentKind::kFree) ++used;
    }
    st.free_segments = static_cast<uint32_t>(slots_.size() - used);
    if (ckpt_) st.file_bytes += format::checkpoint::kSize;
  }
  for (uint32_t i = 0; i < nsegs; ++i) {
    const uint64_t base = slot_offset(segs_[i].slot);
    const uint8_t* map = slot_map(segs_[i].slot);
    for (uint64_t off = base + sh::kSize; off + fh::kSize <= base + seg_size_;) {
      FrameHeader h;
      std::string why;
      if (get_u64(map + (off - base) + fh::kFirstPosition) > st.events) break;
      if (check_frame(map + (off - base), base + seg_size_ - off, off, segs_[i].epoch, seed_, &h,
                      &why, seg_size_) != FrameState::kValid)
        break;
      st.log_bytes += h.frame_len;
      st.raw_record_bytes += h.raw_len;
      st.stored_record_bytes += h.body_len;
      st.compressed_frames += h.compressed() ? 1 : 0;
      off += h.frame_len;
    }
  }
  // Holes (the unused part of index segments, freed segments) take no space.
  int64_t used_bytes = os_->allocated_bytes(fd_);
  st.file_bytes += used_bytes > 0 ? static_cast<uint64_t>(used_bytes) : 0;
  return st;
}

// ---------------------------------------------------------------------------
// Public wrappers

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Store::~Store() = default;

Result<std::unique_ptr<Store>> Store::open(const std::string& path, const StoreOptions& options) {
  auto impl = std::make_unique<Impl>(path, options);
  Status s = impl->open();
  if (!s.ok()) {
    impl->release(/*checkpoint=*/false).ignore_error();  // frees fd (and lock) and mappings
    return s;
  }
  return std::unique_ptr<Store>(new Store(std::move(impl)));
}

Status Store::close() { return impl_->close(); }

Result<AppendResult> Store::append(const StreamId& stream, ExpectedVersion expected,
                                   std::span<const EventData> events,
                                   const AppendOptions& options) {
  return impl_->append(stream, expected, events, options);
}

Status Store::read_stream(const StreamId& stream, StreamVersion from, uint64_t max_count,
                          ReadDirection direction, const EventCallback& fn) const {
  return impl_->read_stream(stream, from, max_count, direction, fn);
}

Status Store::read_all(GlobalPosition from, const ReadFilter& filter, uint64_t max_count,
                       const EventCallback& fn) const {
  return impl_->read_all(from, filter, max_count, fn);
}

StreamVersion Store::stream_version(const StreamId& stream) const {
  std::shared_lock ix(impl_->index_mu_);
  const StreamIndex::Entry* e = impl_->index_.find(stream_key(stream));
  return StreamVersion(e ? e->version() : 0);
}

std::vector<StreamInfo> Store::list_streams() const {
  std::vector<StreamInfo> out;
  {
    std::shared_lock ix(impl_->index_mu_);
    out.reserve(impl_->index_.stream_count());
    for (const auto& [key, e] : impl_->index_.entries())
      out.push_back(StreamInfo{key.substr(0, e.type_len), key.substr(e.type_len + 1),
                               StreamVersion(e.version())});
  }
  std::sort(out.begin(), out.end(), [](const StreamInfo& a, const StreamInfo& b) {
    return std::tie(a.type, a.id) < std::tie(b.type, b.id);
  });
  return out;
}

GlobalPosition Store::committed_position() const {
  return GlobalPosition(impl_->committed_.load(std::memory_order_acquire));
}

Result<GlobalPosition> Store::refresh() { return impl_->refresh(); }

Status Store::checkpoint() {
  if (impl_->closed_) return closed(fmt::format("{}: store is closed", impl_->path_));
  std::lock_guard lock(impl_->write_mu_);
  return impl_->checkpoint_locked();
}

StoreStats Store::stats() const { return impl_->stats(); }
const std::string& Store::path() const { return impl_->path_; }

}  // namespace eventsource
