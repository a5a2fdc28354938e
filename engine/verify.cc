// Store::verify (read every checksum and cross-check the index, reporting
// every problem with its location, changing nothing) and Store::repair.
#include <fcntl.h>
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <unordered_map>

#include "engine/aux_log.h"
#include "engine/coding.h"
#include "engine/format.h"
#include "engine/store_impl.h"

namespace eventsource {

namespace fh = format::frame_header;
namespace sh = format::segment_header;
using format::SegmentKind;

namespace {

// Readings of PATH.ckpt and its index segment before verify gives up on a
// writer that replaces the checkpoint faster than verify can copy its index.
constexpr int kCheckpointAttempts = 100;

class Verifier;

// The whole file, mapped once, as the frame walker sees it.
class FileLog final : public LogView {
 public:
  explicit FileLog(const Verifier& v);
  size_t segment_count() const override;
  const EventSeg& segment(size_t index) const override;
  const uint8_t* bytes(uint64_t slot, uint64_t* avail) const override;

 private:
  const Verifier& v_;
};

// Verify judges one consistent view of a store that a live writer may be
// changing (format-spec.md "Verify and repair"):
//  - PATH.ckpt is read first, with a copy of the index segment it names, and
//    read again: the writer frees an index only after renaming a newer
//    checkpoint over the one naming it, so an unchanged checkpoint means the
//    copy is that index (else both are read again);
//  - the data file is mapped after that, so it holds every frame and event
//    segment the checkpoint names (written before its rename; event segments
//    are never freed while a writer runs). Segments added later are not
//    looked at: verify judges the log as far as it was when it looked;
//  - bytes being written read as damage for an instant: a frame met
//    mid-write (whole by the time a later one is found, else the torn tail of
//    the log), a slot being allocated or freed, the file being extended. Slot
//    headers and the file size are reported only if still wrong when read
//    again at the end.
class Verifier {
 public:
  Verifier(std::string path, std::shared_ptr<Os> os, const ProgressCallback& progress)
      : path_(std::move(path)), os_(std::move(os)), progress_(progress) {}
  ~Verifier() {
    if (map_ != nullptr) os_->unmap(map_, size_);
    if (aux_map_ != nullptr) os_->unmap(aux_map_, aux_map_size_);
    if (fd_ >= 0) os_->close(fd_);
  }

  Result<VerifyReport> run();

 private:
  friend class FileLog;

  // What one pass over the slot headers found [F-5]/[F-6].
  struct SlotScan {
    std::vector<SlotInfo> slots;
    std::vector<EventSeg> segs;           // event segments, in slot order
    std::map<uint64_t, std::string> bad;  // slot -> why its header is damage
  };

  void problem(int64_t segment, int64_t offset, std::string what) {
    report_.problems.push_back(VerifyProblem{path_, segment, offset, std::move(what)});
  }
  void checkpoint_problem(int64_t offset, std::string what) {
    report_.problems.push_back(VerifyProblem{checkpoint_path(path_), -1, offset, std::move(what)});
  }
  uint64_t slot_offset(uint64_t slot) const { return format::kFileHeaderSize + slot * seg_size_; }
  Result<int64_t> file_size();
  Status read_checkpoint_and_index();
  Result<bool> read_index(const Checkpoint& cp);
  // Reads the headers of slots [0, nslots) from `base` (map_ by default).
  SlotScan scan_slots(uint64_t nslots, uint64_t file_slots, const uint8_t* base = nullptr) const;
  void scan_segments();
  // Why open would refuse to cut the log at `bad` [F-31]: damage, never a
  // torn tail. "": a torn tail, which open cuts.
  std::string why_durable(const BadFrame& bad) const {
    if (bad.expected_position <= durable_)
      return fmt::format("position {} was durable: this is damage, not a torn write",
                         bad.expected_position);
    if (later_frame_proves_durable(FileLog(*this), bad))
      return fmt::format(
          "a later frame says position {} was durable: this is damage, not a "
          "torn write",
          bad.expected_position);
    return "";
  }
  void torn_tail(const BadFrame& bad) {
    report_.torn_tail = VerifyProblem{path_, static_cast<int64_t>(segs_[bad.seg_index].slot),
                                      static_cast<int64_t>(bad.offset), bad.why};
    last_position_ = bad.expected_position - 1;  // the log open keeps
  }
  void check_checkpoint_and_index();
  void check_index();
  // The aux chain (snapshots, dead letters, projection states): every frame
  // and record, by the rules open applies (format-spec.md "Aux segments").
  void check_aux_chain();
  // The aux segments of the file as it is now (a fresh mapping, aux_map_),
  // in epoch order; false if the file cannot be mapped again.
  bool current_aux_segments(std::vector<EventSeg>* segs);
  void confirm_slot_problems(const std::map<uint64_t, std::string>& bad, uint64_t size);
  // Slots of a file of `file_size` bytes, a partial one at the end included.
  uint64_t ceil_slots(uint64_t file_size) const;
  bool segment_appeared_before(const BadFrame& gap) const;

  std::string path_;
  std::shared_ptr<Os> os_;
  ProgressCallback progress_;
  int fd_ = -1;
  const uint8_t* map_ = nullptr;
  uint64_t size_ = 0;
  // A later mapping of the whole file, for a second look at the aux chain.
  const uint8_t* aux_map_ = nullptr;
  uint64_t aux_map_size_ = 0;
  uint64_t seg_size_ = 0;
  uint64_t seed_ = 0;
  FileHeader header_;
  // PATH.ckpt as read (with its index) in one consistent view.
  std::optional<Checkpoint> ckpt_;
  std::string ckpt_problem_;                   // why PATH.ckpt is unusable ("" = fine or absent)
  std::string ckpt_error_;                     // why it could not be read (an I/O error)
  std::optional<SegmentHeader> index_header_;  // the index segment it names, if found
  std::string index_blob_;
  uint64_t durable_ = 0;  // the checkpoint's durable position (0: none)
  std::vector<SlotInfo> slots_;
  std::vector<EventSeg> segs_;
  std::map<std::string, uint64_t> versions_;
  uint64_t last_position_ = 0;
  uint64_t claimed_end_ = 0;  // offset past the frame the checkpoint names (0: none)
  VerifyReport report_;
};

Result<int64_t> Verifier::file_size() {
  const int64_t size = os_->file_size(fd_);
  if (size < 0)
    return io_error(fmt::format("{}: fstat failed: {}", path_, errno_text(static_cast<int>(-size))),
                    static_cast<int>(-size));
  return size;
}

Result<VerifyReport> Verifier::run() {
  fd_ = os_->open(path_, O_RDONLY, 0);
  if (fd_ < 0)
    return io_error(fmt::format("{}: cannot open: {}", path_, std::strerror(-fd_)), -fd_);
  uint8_t head[format::file_header::kSize];
  const ssize_t got = os_->pread(fd_, head, sizeof head, 0);
  if (got < 0)
    return io_error(fmt::format("{}: read failed: {}", path_, errno_text(static_cast<int>(-got))),
                    static_cast<int>(-got));
  if (Status bad = parse_file_header(head, static_cast<size_t>(got), &header_); !bad.ok()) {
    problem(
        -1, 0,
        static_cast<size_t>(got) < sizeof head ? bad.message() : "file header: " + bad.message());
    return report_;
  }
  if (header_.version != format::kFormatVersion)
    return not_supported(fmt::format("{}: format version {} is not {}", path_, header_.version,
                                     format::kFormatVersion));
  seg_size_ = header_.segment_size;
  seed_ = header_.seed();
  report_.bytes_checked += format::file_header::kSize;
  // The checkpoint first: the data file mapped next holds all it names.
  EVENTSOURCE_RETURN_IF_ERROR(read_checkpoint_and_index());
  EVENTSOURCE_ASSIGN_OR_RETURN(const int64_t size, file_size());
  size_ = static_cast<uint64_t>(size);
  if (size_ < format::kFileHeaderSize) {
    // Regression: the slot count below underflowed on such files (fuzz crasher).
    problem(-1, static_cast<int64_t>(size_),
            fmt::format("file is {} bytes, shorter than the {}-byte header region", size_,
                        format::kFileHeaderSize));
    return report_;
  }
  int err = 0;
  map_ = static_cast<const uint8_t*>(os_->map_read(fd_, 0, size_, &err));
  if (map_ == nullptr)
    return io_error(fmt::format("{}: mmap failed: {}", path_, std::strerror(err)), err);
  // A partial slot at the end is read as opens read it: zeros after the
  // file's bytes (format-spec.md "Segments"; the mapping reads zeros to the
  // end of its last page, which holds the slot's headers).
  const uint64_t nslots = ceil_slots(size_);
  SlotScan scan = scan_slots(nslots, nslots);
  report_.bytes_checked += nslots * sh::kSize;
  slots_ = std::move(scan.slots);
  segs_ = std::move(scan.segs);
  std::sort(segs_.begin(), segs_.end(),
            [](const EventSeg& a, const EventSeg& b) { return a.epoch < b.epoch; });
  for (size_t i = 1; i < segs_.size(); ++i)
    if (segs_[i].epoch == segs_[i - 1].epoch)
      problem(static_cast<int64_t>(segs_[i].slot), static_cast<int64_t>(slot_offset(segs_[i].slot)),
              fmt::format("segments {} and {} share epoch {}", segs_[i - 1].slot, segs_[i].slot,
                          segs_[i].epoch));
  scan_segments();
  check_aux_chain();
  check_checkpoint_and_index();
  EVENTSOURCE_ASSIGN_OR_RETURN(const int64_t size_now, file_size());
  confirm_slot_problems(scan.bad, static_cast<uint64_t>(size_now));
  report_.streams = versions_.size();
  return report_;
}

Status Verifier::read_checkpoint_and_index() {
  for (int attempt = 0; attempt < kCheckpointAttempts; ++attempt) {
    Status problem;
    Result<std::optional<Checkpoint>> c =
        read_checkpoint_file(*os_, path_, header_.store_id, seed_, &problem);
    ckpt_problem_ = problem.ok() ? "" : problem.message();
    if (!c.ok()) {
      ckpt_error_ = c.status().message();  // reported; open fails on it too
      return Status();
    }
    ckpt_ = *c;
    index_header_.reset();
    index_blob_.clear();
    durable_ = ckpt_ ? ckpt_->durable_position : 0;
    if (ckpt_ && ckpt_->index_slot != kNoSlot) {
      EVENTSOURCE_ASSIGN_OR_RETURN(const bool found, read_index(*ckpt_));
      if (!found) index_header_.reset();
    }
    // Unchanged after the index was copied: the copy is the index it names.
    Status again_problem;
    Result<std::optional<Checkpoint>> again =
        read_checkpoint_file(*os_, path_, header_.store_id, seed_, &again_problem);
    if (again.ok() && *again == ckpt_ &&
        (again_problem.ok() ? "" : again_problem.message()) == ckpt_problem_)
      return Status();
  }
  return Status(Code::kBusy,
                fmt::format("{}: the checkpoint file changed {} times while verify read it (a "
                            "writer checkpointing without pause); run verify again",
                            checkpoint_path(path_), kCheckpointAttempts));
}

Result<bool> Verifier::read_index(const Checkpoint& cp) {
  // pread, not the mapping: the index may lie past the end of a mapping made earlier.
  if (cp.index_slot >= kMaxSlots) return false;
  const uint64_t base = slot_offset(cp.index_slot);
  uint8_t buf[sh::kSize];
  ssize_t got = os_->pread(fd_, buf, sizeof buf, base);
  if (got < 0)
    return io_error(fmt::format("{}: reading the index segment header at {} failed: {}", path_,
                                hex(base), errno_text(static_cast<int>(-got))),
                    static_cast<int>(-got));
  SegmentHeader h;
  Status bad;
  if (got != sizeof buf ||
      parse_segment_header(buf, cp.index_slot, seed_, &h, &bad) != SegmentHeaderState::kValid ||
      h.kind != SegmentKind::kIndex || h.epoch != cp.index_epoch)
    return false;
  index_header_ = h;
  // A blob that does not fit its segment or the file is not read (check_index reports it).
  EVENTSOURCE_ASSIGN_OR_RETURN(const int64_t size, file_size());
  const uint64_t room = static_cast<uint64_t>(size) > base ? static_cast<uint64_t>(size) - base : 0;
  if (h.slot_count > room / seg_size_ || h.payload_len > h.slot_count * seg_size_ - sh::kSize)
    return true;
  index_blob_.resize(h.payload_len);
  uint64_t done = 0;
  while (done < h.payload_len) {
    got = os_->pread(fd_, index_blob_.data() + done, h.payload_len - done, base + sh::kSize + done);
    if (got < 0)
      return io_error(fmt::format("{}: reading the index segment at {} failed: {}", path_,
                                  hex(base), errno_text(static_cast<int>(-got))),
                      static_cast<int>(-got));
    if (got == 0) break;
    done += static_cast<uint64_t>(got);
  }
  index_blob_.resize(done);
  return true;
}

Verifier::SlotScan Verifier::scan_slots(uint64_t nslots, uint64_t file_slots,
                                        const uint8_t* base) const {
  if (base == nullptr) base = map_;
  SlotScan scan;
  scan.slots.resize(nslots);
  for (uint64_t slot = 0; slot < nslots; ++slot) {
    const uint8_t* p = base + slot_offset(slot);
    SegmentHeader h;
    Status bad;
    switch (parse_segment_header(p, slot, seed_, &h, &bad)) {
      case SegmentHeaderState::kZero:
        break;
      case SegmentHeaderState::kBad:
        // Over a zero first frame header: an interrupted allocation, free.
        if (!all_zero(p + sh::kSize, fh::kSize))
          scan.bad[slot] = "segment header: " + bad.message();
        break;
      case SegmentHeaderState::kValid:
        if (h.slot_count > file_slots - slot) {
          scan.bad[slot] = "segment spans past the end of the file";
          break;
        }
        scan.slots[slot] = SlotInfo{h.kind, h.epoch, h.first_position, h.slot_count, h.payload_len};
        if (h.kind == SegmentKind::kEvents)
          scan.segs.push_back(EventSeg{slot, h.epoch, h.first_position});
        slot += h.slot_count - 1;
        break;
    }
  }
  return scan;
}

uint64_t Verifier::ceil_slots(uint64_t file_size) const {
  return file_size < format::kFileHeaderSize
             ? 0
             : (file_size - format::kFileHeaderSize + seg_size_ - 1) / seg_size_;
}

void Verifier::confirm_slot_problems(const std::map<uint64_t, std::string>& bad, uint64_t size) {
  // A live writer allocates slots, writes index segments that span slots,
  // and zeroes the ones it frees: a pass over the headers can meet them
  // halfway. Damage is still there when looked at again; a write in progress
  // is not.
  // A partial slot at the end whose header is zero is an allocation an
  // earlier writer of this format was making when it stopped ([F-8]: it
  // extended the file to the bytes a segment would use, then to its whole
  // slots, and then wrote its header; writers now extend by whole slots
  // first, so the file never ends mid-slot).
  const uint64_t whole = (size_ - format::kFileHeaderSize) / seg_size_;
  const uint64_t partial = slot_offset(whole);
  if (size == size_ && size_ > partial &&
      !all_zero(map_ + partial, std::min<uint64_t>(size_ - partial, sh::kSize + fh::kSize)))
    problem(static_cast<int64_t>(whole), static_cast<int64_t>(size_),
            fmt::format("file size {} ends inside segment {}: the file was cut short (copied "
                        "half-way or truncated), and whatever was written after offset {} is "
                        "gone; opens read that segment as if zeros followed (restore the file "
                        "from a whole copy if there is one)",
                        size_, whole, size_));
  if (bad.empty()) return;
  const uint64_t nslots = slots_.size();
  const SlotScan again = scan_slots(nslots, std::max(ceil_slots(size), nslots));
  for (const auto& [slot, why] : bad) {
    const auto still = again.bad.find(slot);
    if (still != again.bad.end())
      problem(static_cast<int64_t>(slot), static_cast<int64_t>(slot_offset(slot)), still->second);
  }
}

bool Verifier::segment_appeared_before(const BadFrame& gap) const {
  // A writer that filled a segment and rolled into the next one while verify
  // read the slot headers leaves verify with the later segment but not the
  // earlier one (read before its header was written, or past the end of the
  // file when verify mapped it). Event segments are never freed while a
  // writer runs: looked at again, that one is there.
  const uint64_t after = gap.seg_index > 0 ? segs_[gap.seg_index - 1].epoch : 0;
  const uint64_t before = segs_[gap.seg_index].epoch;
  const auto missed = [&](const SegmentHeader& h) {
    return h.kind == SegmentKind::kEvents && h.epoch > after && h.epoch < before &&
           h.first_position == gap.expected_position;
  };
  for (const EventSeg& s : scan_slots(slots_.size(), slots_.size()).segs)
    if (missed(SegmentHeader{SegmentKind::kEvents, s.slot, s.epoch, s.first_position})) return true;
  const int64_t size = os_->file_size(fd_);
  for (uint64_t slot = slots_.size();
       slot < kMaxSlots && size > 0 && slot_offset(slot + 1) <= static_cast<uint64_t>(size);
       ++slot) {
    uint8_t buf[sh::kSize];
    SegmentHeader h;
    Status bad;
    if (os_->pread(fd_, buf, sizeof buf, slot_offset(slot)) == sizeof buf &&
        parse_segment_header(buf, slot, seed_, &h, &bad) == SegmentHeaderState::kValid && missed(h))
      return true;
  }
  return false;
}

void Verifier::scan_segments() {
  const FileLog log(*this);
  LogReader reader(log, 0, 0, 1);
  std::string buf;
  size_t progress_seg = 0;
  bool damaged = false;  // a bad spot was damage: open refuses, nothing after it is cut
  LogFrame f;
  BadFrame bad;
  for (;;) {
    const LogReader::Step step = reader.next(&f, &bad);
    if (progress_ && reader.seg_index() != progress_seg && reader.seg_index() <= segs_.size()) {
      progress_(slot_offset(segs_[progress_seg].slot) + seg_size_, size_);
      progress_seg = reader.seg_index();
    }
    if (step == LogReader::Step::kEnd) {
      // The end of the log; the checkpoint says whether events past it were durable.
      if (!segs_.empty() && reader.offset() < slot_offset(segs_.back().slot) + seg_size_ &&
          reader.expected_position() <= durable_)
        problem(static_cast<int64_t>(segs_.back().slot), static_cast<int64_t>(reader.offset()),
                fmt::format("the log ends here (never-written frame header) (position {} was "
                            "durable: this is damage, not a torn write)",
                            reader.expected_position()));
      break;
    }
    if (step == LogReader::Step::kBad) {
      const EventSeg& seg = segs_[bad.seg_index];
      FrameHeader h;
      uint64_t at = 0;  // the first valid frame from the bad offset on in its segment (0: none)
      if (!bad.gap) {
        // Look past the bad frame first, then at it again: a live writer's
        // frame met mid-write is whole by now if a frame after it exists (one
        // write at a time, in order), and may be anyway.
        at = find_valid_frame(log, bad.seg_index, bad.offset, &h);
        Status problem;
        if (at != bad.offset &&
            check_frame_at(log, seg, bad.offset, &h, &problem) == FrameState::kValid)
          at = bad.offset;
        if (at == bad.offset && h.first_position == bad.expected_position) {
          reader.seek(bad.seg_index, bad.offset, bad.expected_position);
          continue;
        }
      }
      if (bad.gap && segment_appeared_before(bad)) {
        // The log goes on in a segment allocated after verify looked: its end
        // for verify (which judges the log as it was when it looked).
        break;
      }
      // Nothing valid follows: the end of the log.
      const bool tail = !bad.gap && at == 0 && bad.seg_index + 1 == segs_.size();
      // Open stops at the first bad spot and cuts the log there unless it
      // held a durable position; so it does at a bad tail after damage.
      std::string durable;
      if (!damaged || tail) {
        durable = why_durable(bad);
        if (durable.empty()) {
          torn_tail(bad);  // no acknowledged event is in it
          break;
        }
        durable = " (" + durable + ")";
      }
      damaged = true;
      if (bad.gap) {
        problem(static_cast<int64_t>(seg.slot), static_cast<int64_t>(slot_offset(seg.slot)),
                fmt::format("segment starts at position {}, expected {} (events {}..{} are "
                            "missing){}",
                            seg.first_position, bad.expected_position, bad.expected_position,
                            seg.first_position - 1, durable));
        reader.seek(bad.seg_index, bad.offset, seg.first_position);
        continue;
      }
      if (at == bad.offset) {
        // A valid frame in the wrong place of the sequence: report it and go on from it.
        problem(static_cast<int64_t>(seg.slot), static_cast<int64_t>(bad.offset),
                bad.why + durable);
        reader.seek(bad.seg_index, bad.offset, h.first_position);
        continue;
      }
      if (tail) {
        problem(static_cast<int64_t>(seg.slot), static_cast<int64_t>(bad.offset),
                bad.why + durable);
        break;
      }
      problem(static_cast<int64_t>(seg.slot), static_cast<int64_t>(bad.offset),
              (at == 0 ? bad.why + " (rest of the segment skipped)"
                       : fmt::format("{} ({} bytes skipped to the next valid frame)", bad.why,
                                     at - bad.offset)) +
                  durable);
      if (at == 0)
        reader.skip_segment();
      else
        reader.seek(bad.seg_index, at, bad.expected_position);
      continue;
    }
    // Records are judged with their frame, as open indexes a frame only when
    // all its records pass.
    std::vector<std::string> wrong;
    uint64_t events = 0;
    const Status walked = for_each_record(
        f.bytes, f.header, seed_, &buf, [&](const RecordedEvent& ev, uint32_t i, uint32_t) {
          if (Status bad = check_record_stream(ev); !bad.ok())  // [F-16]
            wrong.push_back(fmt::format("record {}: {}", i, bad.message()));
          std::string key = ev.stream_name();
          uint64_t& v = versions_[key];
          if (ev.version.value != v + 1)
            wrong.push_back(
                fmt::format("record {}: stream {} jumps from version "
                            "{} to {}",
                            i, key, v, ev.version.value));
          v = ev.version.value;
          ++events;
          return true;
        });
    if (!walked.ok()) wrong.push_back(walked.message());
    if (!wrong.empty()) {
      if (!damaged) {
        const BadFrame b{f.seg_index, f.offset, f.header.first_position, wrong.front()};
        const std::string durable = why_durable(b);
        if (durable.empty()) {
          torn_tail(b);
          break;
        }
        wrong.front() += " (" + durable + ")";
      }
      damaged = true;
      for (std::string& w : wrong)
        problem(static_cast<int64_t>(f.slot), static_cast<int64_t>(f.offset), std::move(w));
    }
    report_.frames++;
    report_.events += events;
    report_.bytes_checked += f.header.frame_len;
  }
  if (progress_ && !segs_.empty()) progress_(size_, size_);
  if (!report_.torn_tail) last_position_ = reader.expected_position() - 1;
}

void Verifier::check_checkpoint_and_index() {
  if (!ckpt_error_.empty()) {
    checkpoint_problem(0, ckpt_error_);
    return;
  }
  if (!ckpt_problem_.empty()) {
    checkpoint_problem(0, ckpt_problem_ + " (open falls back to a full scan)");
    return;
  }
  if (!ckpt_) return;
  const Checkpoint& cp = *ckpt_;
  report_.bytes_checked += format::checkpoint::kSize;
  if (cp.durable_position > last_position_)
    checkpoint_problem(
        static_cast<int64_t>(format::checkpoint::kDurablePosition),
        fmt::format("checkpoint says events up to {} are durable, the log ends at {}",
                    cp.durable_position, last_position_));
  // The frame the checkpoint names must hold its durable position, as open checks.
  claimed_end_ = 0;
  if (cp.durable_position > 0) {
    const Status claim = check_checkpoint_claim(FileLog(*this), cp.last_frame_offset,
                                                cp.durable_position, &claimed_end_);
    if (!claim.ok())
      checkpoint_problem(
          static_cast<int64_t>(format::checkpoint::kLastFrameOffset),
          fmt::format("checkpoint names the frame at {} as holding position {}, but {}",
                      hex(cp.last_frame_offset), cp.durable_position, claim.message()));
  }
  if (cp.index_slot == kNoSlot) return;
  if (!index_header_) {
    problem(cp.index_slot < kMaxSlots ? static_cast<int64_t>(cp.index_slot) : -1,
            cp.index_slot < kMaxSlots ? static_cast<int64_t>(slot_offset(cp.index_slot)) : -1,
            fmt::format("the index segment named by the checkpoint (slot {}, epoch {}) is missing",
                        cp.index_slot, cp.index_epoch));
    return;
  }
  check_index();
}

void Verifier::check_index() {
  const Checkpoint& cp = *ckpt_;
  const uint64_t slot = cp.index_slot;
  const uint64_t base = slot_offset(slot);
  const SegmentHeader& ih = *index_header_;
  if (index_blob_.size() != ih.payload_len) {
    problem(static_cast<int64_t>(slot), static_cast<int64_t>(base),
            ih.slot_count <= kMaxSlots && ih.payload_len <= ih.slot_count * seg_size_ - sh::kSize
                ? "index segment extends past the end of the file"
                : "index length exceeds its segment");
    return;
  }
  StreamIndex index;
  StreamIndex::BlobInfo info;
  // copy = true: every locator checksum is verified now.
  const Status loaded = index.load_blob(reinterpret_cast<const uint8_t*>(index_blob_.data()),
                                        index_blob_.size(), seed_, /*copy=*/true, &info);
  report_.bytes_checked += ih.payload_len;
  if (!loaded.ok()) {
    problem(static_cast<int64_t>(slot), static_cast<int64_t>(base + sh::kSize),
            "index: " + loaded.message());
    return;
  }
  if (info.covers_position != cp.durable_position)
    problem(static_cast<int64_t>(slot), static_cast<int64_t>(base + sh::kSize),
            fmt::format("index covers position {}, checkpoint says {}", info.covers_position,
                        cp.durable_position));
  if (claimed_end_ != 0 &&
      info.covers_position == cp.durable_position) {  // as open checks it [F-21]
    const Status end =
        check_log_end(FileLog(*this), claimed_end_, info.log_end_offset, cp.durable_position);
    if (!end.ok())
      problem(static_cast<int64_t>(slot), static_cast<int64_t>(base + sh::kSize), end.message());
  }
  // Every locator must lead to the record of that stream and version.
  std::string buf;  // the decoded body of frame_off (views in frame_events point into it)
  uint64_t frame_off = ~0ull;
  std::vector<RecordedEvent> frame_events;
  std::string frame_err;
  std::unordered_map<uint64_t, uint32_t> id_keys;  // locator -> id table key of its record
  id_keys.reserve(info.locator_count);
  bool locators_ok = true;
  // (The copying load checked every directory entry: for_each finds no damage.)
  Status walked = index.for_each([&](const std::string& key, const StreamIndex::Entry& e) {
    for (uint64_t v = 1; v <= e.version(); ++v) {
      uint64_t loc = e.locator(v);
      const format::Locator decoded = format::decode_locator(loc);
      uint64_t off = decoded.offset;
      bool compressed = decoded.compressed;
      std::string err = "index points outside the event segments";
      RecordedEvent ev;
      bool found = false;
      if (off >= format::kFileHeaderSize && off < size_) {
        uint64_t s = (off - format::kFileHeaderSize) / seg_size_;
        uint64_t end = slot_offset(s) + seg_size_;
        if (s < slots_.size() && slots_[s].kind == SegmentKind::kEvents && end <= size_) {
          if (!compressed) {
            uint32_t len;
            if (off >= slot_offset(s) + sh::kSize) {
              const Status decoded_record = decode_record(map_ + off, end - off, seed_, &ev, &len);
              found = decoded_record.ok();
              if (!found) err = decoded_record.message();
            }
          } else {
            // Decode each compressed frame once, however many locators name it.
            uint32_t want = decoded.record;
            if (off != frame_off) {
              frame_off = off;
              frame_events.clear();
              frame_err.clear();
              FrameHeader h;
              const EventSeg seg{s, slots_[s].epoch, 0};
              Status bad;
              if (check_frame_at(FileLog(*this), seg, off, &h, &bad) == FrameState::kValid)
                bad = for_each_record(map_ + off, h, seed_, &buf,
                                      [&](const RecordedEvent& r, uint32_t, uint32_t) {
                                        frame_events.push_back(r);
                                        return true;
                                      });
              if (!bad.ok()) frame_err = bad.message();
            }
            found = want < frame_events.size();
            if (found) ev = frame_events[want];
            err = frame_err.empty() ? "index names a record past the frame's count" : frame_err;
          }
        }
      }
      if (found && (ev.stream_name() != key || ev.version.value != v)) {
        found = false;
        err = fmt::format("it holds {} version {}", ev.stream_name(), ev.version.value);
      }
      if (!found) {
        problem(static_cast<int64_t>(slot), static_cast<int64_t>(base),
                fmt::format("index entry {} version {} -> offset {}: {}", key, v, hex(off), err));
        locators_ok = false;
        break;
      }
      id_keys.emplace(loc, IdTable::key(IdTable::fingerprint(ev.id, seed_)));
    }
  });
  if (!walked.ok())
    problem(static_cast<int64_t>(slot), static_cast<int64_t>(base + sh::kSize),
            "index: " + walked.message());
  // The event-id table [F-38]: exactly one entry per indexed event, each
  // with the key of that event's id. (Checked when every locator was good.)
  if (!locators_ok) return;
  uint64_t entry = 0;
  std::string bad;
  const Status damaged = index.ids().for_each_persisted([&](uint32_t k, uint64_t loc) {
    if (bad.empty()) {
      auto it = id_keys.find(loc);
      if (it == id_keys.end())
        bad = fmt::format("event-id entry {} -> {} names no indexed event, or one named before",
                          entry, hex(loc));
      else if (it->second != k)
        bad = fmt::format("event-id entry {} -> {} does not hold the key of that event's id", entry,
                          hex(loc));
      else
        id_keys.erase(it);
    }
    ++entry;
  });
  if (bad.empty() && !damaged.ok()) bad = damaged.message();
  if (bad.empty() && !id_keys.empty())
    bad = fmt::format("the event-id table misses {} indexed events", id_keys.size());
  if (!bad.empty())
    problem(static_cast<int64_t>(slot), static_cast<int64_t>(base + sh::kSize), "index: " + bad);
}

bool Verifier::current_aux_segments(std::vector<EventSeg>* segs) {
  const Result<int64_t> size = file_size();
  if (!size.ok() || static_cast<uint64_t>(*size) < format::kFileHeaderSize) return false;
  if (aux_map_ != nullptr) os_->unmap(aux_map_, aux_map_size_);
  aux_map_size_ = static_cast<uint64_t>(*size);
  int err = 0;
  aux_map_ = static_cast<const uint8_t*>(os_->map_read(fd_, 0, aux_map_size_, &err));
  if (aux_map_ == nullptr) return false;
  const uint64_t nslots = (aux_map_size_ - format::kFileHeaderSize) / seg_size_;
  *segs = aux_segments(scan_slots(nslots, nslots, aux_map_).slots);
  return true;
}

void Verifier::check_aux_chain() {
  std::vector<EventSeg> segs = aux_segments(slots_);
  const uint8_t* base = map_;
  uint64_t size = size_;
  for (int attempt = 1;; ++attempt) {
    if (segs.empty()) return;
    AuxChainView view(segs, seg_size_, seed_, [&](uint64_t slot, uint64_t* avail) {
      const uint64_t off = slot_offset(slot);
      *avail = off >= size ? 0 : std::min(seg_size_, size - off);
      return base + off;
    });
    const AuxScan scan = scan_aux_chain(view);
    if (scan.bad && attempt < kCheckpointAttempts) {
      // A live writer compacting the aux chain writes the live records into
      // new segments, then zeroes and frees the old ones: a walk over the
      // chain read before meets zeros. Looked at again, such a chain is
      // another one; walk that. Damage stays where it is.
      std::vector<EventSeg> now;
      if (current_aux_segments(&now) && now != segs) {
        segs = std::move(now);
        base = aux_map_;
        size = aux_map_size_;
        continue;
      }
    }
    report_.bytes_checked += scan.frame_bytes;
    if (!scan.bad) return;
    const EventSeg& seg = segs[scan.bad->seg_index];
    if (scan.bad_is_damage) {
      problem(static_cast<int64_t>(seg.slot), static_cast<int64_t>(scan.bad->offset),
              fmt::format("aux chain: {} (a later aux frame says sequence {} was durable: this is "
                          "damage, not a torn write)",
                          scan.bad->why, scan.bad->expected_position));
    } else if (!report_.torn_tail) {
      // A torn aux tail: open cuts it (read-write) or ignores it; not damage.
      report_.torn_tail =
          VerifyProblem{path_, static_cast<int64_t>(seg.slot),
                        static_cast<int64_t>(scan.bad->offset), "aux chain: " + scan.bad->why};
    }
    return;
  }
}

FileLog::FileLog(const Verifier& v) : v_(v) {
  segment_size = v.seg_size_;
  seed = v.seed_;
}
size_t FileLog::segment_count() const { return v_.segs_.size(); }
const EventSeg& FileLog::segment(size_t index) const { return v_.segs_[index]; }
const uint8_t* FileLog::bytes(uint64_t slot, uint64_t* avail) const {
  const uint64_t off = slot_offset(slot);
  *avail = off >= v_.size_ ? 0 : std::min(segment_size, v_.size_ - off);
  return v_.map_ + off;
}

}  // namespace

Result<VerifyReport> Store::verify(const std::string& path, const VerifyOptions& options) {
  Verifier v(path, options.os ? options.os : default_os(), options.progress);
  return v.run();
}

Result<RepairReport> Store::repair(const std::string& path, const RepairOptions& repair_options) {
  RepairReport report;
  {
    EVENTSOURCE_ASSIGN_OR_RETURN(VerifyReport before, verify(path, {.os = repair_options.os}));
    report.problems = std::move(before.problems);
  }
  StoreOptions options;
  options.os = repair_options.os;
  options.file_mode = repair_options.file_mode;
  options.create = CreateMode::kMustExist;
  options.mode = OpenMode::kReadWrite;
  auto impl = std::make_unique<Impl>(path, options);
  impl->repair_mode_ = true;
  impl->repair_report_ = &report;
  Status s = impl->open();
  if (!s.ok()) {
    impl->release(/*checkpoint=*/false).ignore_error();
    return s;
  }
  // A full scan replaced whatever the old checkpoint said; close() writes a new one.
  if (!report.problems.empty()) report.changed = true;
  report.kept_through = GlobalPosition(impl->committed_.load());
  EVENTSOURCE_RETURN_IF_ERROR(impl->close());
  return report;
}

}  // namespace eventsource
