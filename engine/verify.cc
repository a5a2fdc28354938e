// Store::verify (read every checksum and cross-check the index, reporting
// every problem with its location, changing nothing) and Store::repair.
#include <fcntl.h>
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

#include "engine/coding.h"
#include "engine/format.h"
#include "engine/store_impl.h"

namespace eventsource {

namespace fh = format::frame_header;
namespace sh = format::segment_header;
using format::SegmentKind;

namespace {

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

class Verifier {
 public:
  Verifier(std::string path, std::shared_ptr<Os> os, const ProgressCallback& progress)
      : path_(std::move(path)), os_(std::move(os)), progress_(progress) {}
  ~Verifier() {
    if (map_ != nullptr) os_->unmap(map_, size_);
    if (fd_ >= 0) os_->close(fd_);
  }

  Result<VerifyReport> run();

 private:
  friend class FileLog;

  void problem(int64_t segment, int64_t offset, std::string what) {
    report_.problems.push_back(VerifyProblem{path_, segment, offset, std::move(what)});
  }
  uint64_t slot_offset(uint64_t slot) const { return format::kFileHeaderSize + slot * seg_size_; }
  void scan_segments();
  void note_tail(uint64_t slot, uint64_t offset, uint64_t expected, std::string why) {
    torn_tail_slot_ = slot;
    torn_tail_offset_ = offset;
    torn_tail_expected_ = expected;
    torn_tail_why_ = std::move(why);
  }
  void check_checkpoint_and_index();
  void check_index(uint64_t slot, const SlotInfo& si, uint64_t durable);

  std::string path_;
  std::shared_ptr<Os> os_;
  ProgressCallback progress_;
  int fd_ = -1;
  const uint8_t* map_ = nullptr;
  uint64_t size_ = 0;
  uint64_t seg_size_ = 0;
  uint64_t seed_ = 0;
  FileHeader header_;
  std::vector<SlotInfo> slots_;
  std::vector<EventSeg> segs_;
  std::map<std::string, uint64_t> versions_;
  std::map<uint64_t, std::pair<std::string, uint64_t>> by_position_;  // only used for index checks
  uint64_t last_position_ = 0;
  uint64_t torn_tail_offset_ = 0;  // a bad frame with nothing valid after it
  uint64_t torn_tail_slot_ = 0;
  uint64_t torn_tail_expected_ = 0;
  std::string torn_tail_why_;
  uint64_t claimed_end_ = 0;  // offset past the frame the checkpoint names (0: none)
  VerifyReport report_;
};

Result<VerifyReport> Verifier::run() {
  fd_ = os_->open(path_, O_RDONLY, 0);
  if (fd_ < 0)
    return io_error(fmt::format("{}: cannot open: {}", path_, std::strerror(-fd_)), -fd_);
  int64_t size = os_->file_size(fd_);
  if (size < 0) return io_error(fmt::format("{}: fstat failed", path_), static_cast<int>(-size));
  size_ = static_cast<uint64_t>(size);
  if (size_ < format::file_header::kSize) {
    problem(-1, 0, fmt::format("file is {} bytes, too short for a store header", size_));
    return report_;
  }
  int err = 0;
  map_ = static_cast<const uint8_t*>(os_->map_read(fd_, 0, size_, &err));
  if (map_ == nullptr)
    return io_error(fmt::format("{}: mmap failed: {}", path_, std::strerror(err)), err);
  std::string why = parse_file_header(map_, size_, &header_);
  if (!why.empty()) {
    problem(-1, 0, "file header: " + why);
    return report_;
  }
  if (header_.version != format::kFormatVersion)
    return not_supported(fmt::format("{}: format version {} is not {}", path_, header_.version,
                                     format::kFormatVersion));
  seg_size_ = header_.segment_size;
  seed_ = header_.seed();
  report_.bytes_checked += format::file_header::kSize;
  if (size_ < format::kFileHeaderSize) {
    // Regression: the slot count below underflowed on such files (fuzz crasher).
    problem(-1, static_cast<int64_t>(size_),
            fmt::format("file is {} bytes, shorter than the {}-byte header region", size_,
                        format::kFileHeaderSize));
    return report_;
  }
  if ((size_ - format::kFileHeaderSize) % seg_size_ != 0)
    problem(-1, static_cast<int64_t>(size_),
            fmt::format("file size {} is not the header plus whole segments of {} bytes (a "
                        "partial segment at the end is ignored)",
                        size_, seg_size_));
  uint64_t nslots = (size_ - format::kFileHeaderSize) / seg_size_;
  slots_.resize(nslots);
  for (uint64_t slot = 0; slot < nslots; ++slot) {
    const uint8_t* p = map_ + slot_offset(slot);
    SegmentHeader h;
    std::string w;
    switch (parse_segment_header(p, slot, seed_, &h, &w)) {
      case SegmentHeaderState::kZero:
        break;
      case SegmentHeaderState::kBad:
        if (!all_zero(p + sh::kSize, fh::kSize))
          problem(static_cast<int64_t>(slot), static_cast<int64_t>(slot_offset(slot)),
                  "segment header: " + w);
        break;
      case SegmentHeaderState::kValid:
        if (h.slot_count > nslots - slot) {
          problem(static_cast<int64_t>(slot), static_cast<int64_t>(slot_offset(slot)),
                  "segment spans past the end of the file");
          break;
        }
        slots_[slot] = SlotInfo{h.kind, h.epoch, h.first_position, h.slot_count, h.payload_len};
        if (h.kind == SegmentKind::kEvents)
          segs_.push_back(EventSeg{slot, h.epoch, h.first_position});
        slot += h.slot_count - 1;
        break;
    }
    report_.bytes_checked += sh::kSize;
  }
  std::sort(segs_.begin(), segs_.end(),
            [](const EventSeg& a, const EventSeg& b) { return a.epoch < b.epoch; });
  for (size_t i = 1; i < segs_.size(); ++i)
    if (segs_[i].epoch == segs_[i - 1].epoch)
      problem(static_cast<int64_t>(segs_[i].slot), static_cast<int64_t>(slot_offset(segs_[i].slot)),
              fmt::format("segments {} and {} share epoch {}", segs_[i - 1].slot, segs_[i].slot,
                          segs_[i].epoch));
  scan_segments();
  check_checkpoint_and_index();
  report_.streams = versions_.size();
  return report_;
}

void Verifier::scan_segments() {
  const FileLog log(*this);
  LogReader reader(log, 0, 0, 1);
  std::string buf;
  size_t progress_seg = 0;
  LogFrame f;
  BadFrame bad;
  for (;;) {
    const LogReader::Step step = reader.next(&f, &bad);
    if (progress_ && reader.seg_index() != progress_seg && reader.seg_index() <= segs_.size()) {
      progress_(slot_offset(segs_[progress_seg].slot) + seg_size_, size_);
      progress_seg = reader.seg_index();
    }
    if (step == LogReader::Step::kEnd) {
      // The end of the log: judged against the checkpoint's durable position later.
      if (!segs_.empty() && reader.offset() < slot_offset(segs_.back().slot) + seg_size_)
        note_tail(segs_.back().slot, reader.offset(), reader.expected_position(),
                  "the log ends here (never-written frame header)");
      break;
    }
    if (step == LogReader::Step::kBad) {
      const EventSeg& seg = segs_[bad.seg_index];
      if (bad.gap) {
        problem(
            static_cast<int64_t>(seg.slot), static_cast<int64_t>(slot_offset(seg.slot)),
            fmt::format("segment starts at position {}, expected {} (events {}..{} are missing)",
                        seg.first_position, bad.expected_position, bad.expected_position,
                        seg.first_position - 1));
        reader.seek(bad.seg_index, bad.offset, seg.first_position);
        continue;
      }
      FrameHeader h;
      if (find_valid_frame(log, bad.seg_index, bad.offset, &h) == bad.offset) {
        // A valid frame in the wrong place of the sequence: report it and go on from it.
        problem(static_cast<int64_t>(seg.slot), static_cast<int64_t>(bad.offset), bad.why);
        reader.seek(bad.seg_index, bad.offset, h.first_position);
        continue;
      }
      const uint64_t at = find_valid_frame(log, bad.seg_index, bad.offset + 1, &h);
      const bool later_segment = bad.seg_index + 1 < segs_.size();
      if (at == 0 && !later_segment) {
        // Nothing valid follows: a torn tail (a crashed or live writer). The
        // next read-write open cuts it; it holds no acknowledged event.
        note_tail(seg.slot, bad.offset, bad.expected_position, bad.why);
        break;
      }
      problem(static_cast<int64_t>(seg.slot), static_cast<int64_t>(bad.offset),
              at == 0 ? bad.why + " (rest of the segment skipped)"
                      : fmt::format("{} ({} bytes skipped to the next valid frame)", bad.why,
                                    at - bad.offset));
      if (at == 0)
        reader.skip_segment();
      else
        reader.seek(bad.seg_index, at, bad.expected_position);
      continue;
    }
    report_.frames++;
    report_.bytes_checked += f.header.frame_len;
    std::string why;
    bool ok = for_each_record(
        f.bytes, f.header, seed_, &buf, &why, [&](const RecordedEvent& ev, uint32_t i, uint32_t) {
          if (std::string w = check_record_stream(ev); !w.empty())  // as open's scan [F-16]
            problem(static_cast<int64_t>(f.slot), static_cast<int64_t>(f.offset),
                    fmt::format("record {}: {}", i, w));
          std::string key = ev.stream_name();
          uint64_t& v = versions_[key];
          if (ev.version.value != v + 1)
            problem(static_cast<int64_t>(f.slot), static_cast<int64_t>(f.offset),
                    fmt::format("record {}: stream {} jumps from version {} "
                                "to {}",
                                i, key, v, ev.version.value));
          v = ev.version.value;
          report_.events++;
          return true;
        });
    if (!ok) problem(static_cast<int64_t>(f.slot), static_cast<int64_t>(f.offset), why);
  }
  if (progress_ && !segs_.empty()) progress_(size_, size_);
  last_position_ = reader.expected_position() - 1;
}

void Verifier::check_checkpoint_and_index() {
  std::string why;
  Result<std::optional<Checkpoint>> c =
      read_checkpoint_file(*os_, path_, header_.store_id, seed_, &why);
  const std::string ck = checkpoint_path(path_);
  if (!c.ok()) {
    report_.problems.push_back(VerifyProblem{ck, -1, 0, c.status().message()});
    return;
  }
  if (!why.empty()) {
    report_.problems.push_back(VerifyProblem{ck, -1, 0, why + " (open falls back to a full scan)"});
    return;
  }
  if (!c.value()) return;
  const Checkpoint& cp = **c;
  report_.bytes_checked += format::checkpoint::kSize;
  if (cp.durable_position > last_position_)
    report_.problems.push_back(
        VerifyProblem{ck, -1, static_cast<int64_t>(format::checkpoint::kDurablePosition),
                      fmt::format("checkpoint says events up to {} are durable, the log ends at {}",
                                  cp.durable_position, last_position_)});
  // A bad tail frame is a torn write only past the durable end (as open judges it).
  if (torn_tail_offset_ != 0 && torn_tail_expected_ <= cp.durable_position)
    problem(static_cast<int64_t>(torn_tail_slot_), static_cast<int64_t>(torn_tail_offset_),
            fmt::format("{} (position {} was durable: this is damage, not a torn write)",
                        torn_tail_why_, torn_tail_expected_));
  // The frame the checkpoint names must hold its durable position, as open checks.
  claimed_end_ = 0;
  if (cp.durable_position > 0) {
    const std::string claim = check_checkpoint_claim(FileLog(*this), cp.last_frame_offset,
                                                     cp.durable_position, &claimed_end_);
    if (!claim.empty())
      report_.problems.push_back(VerifyProblem{
          ck, -1, static_cast<int64_t>(format::checkpoint::kLastFrameOffset),
          fmt::format("checkpoint names the frame at {} as holding position {}, but {}",
                      hex(cp.last_frame_offset), cp.durable_position, claim)});
  }
  if (cp.index_slot == kNoSlot) return;
  if (cp.index_slot >= slots_.size() || slots_[cp.index_slot].kind != SegmentKind::kIndex ||
      slots_[cp.index_slot].epoch != cp.index_epoch) {
    problem(cp.index_slot < slots_.size() ? static_cast<int64_t>(cp.index_slot) : -1, -1,
            "the index segment named by the checkpoint is missing");
    return;
  }
  check_index(cp.index_slot, slots_[cp.index_slot], cp.durable_position);
}

void Verifier::check_index(uint64_t slot, const SlotInfo& si, uint64_t durable) {
  const uint64_t base = slot_offset(slot);
  if (si.payload_len > si.slot_count * seg_size_ - sh::kSize) {
    problem(static_cast<int64_t>(slot), static_cast<int64_t>(base),
            "index length exceeds its segment");
    return;
  }
  StreamIndex index;
  StreamIndex::BlobInfo info;
  std::string why = index.load_blob(map_ + base + sh::kSize, si.payload_len, seed_, true, &info);
  report_.bytes_checked += si.payload_len;
  if (!why.empty()) {
    problem(static_cast<int64_t>(slot), static_cast<int64_t>(base + sh::kSize), "index: " + why);
    return;
  }
  if (info.covers_position != durable)
    problem(
        static_cast<int64_t>(slot), static_cast<int64_t>(base + sh::kSize),
        fmt::format("index covers position {}, checkpoint says {}", info.covers_position, durable));
  if (claimed_end_ != 0 && info.covers_position == durable) {  // as open checks it [F-21]
    const std::string end =
        check_log_end(FileLog(*this), claimed_end_, info.log_end_offset, durable);
    if (!end.empty())
      problem(static_cast<int64_t>(slot), static_cast<int64_t>(base + sh::kSize), end);
  }
  // Every locator must lead to the record of that stream and version.
  std::string buf;  // the decoded body of frame_off (views in frame_events point into it)
  uint64_t frame_off = ~0ull;
  std::vector<RecordedEvent> frame_events;
  std::string frame_err;
  for (const auto& [key, e] : index.entries()) {
    for (uint64_t v = 1; v <= e.version(); ++v) {
      uint64_t loc = e.locator(v);
      uint64_t off = loc & format::kLocatorOffsetMask;
      bool compressed = (loc & format::kLocatorCompressed) != 0;
      std::string err = "index points outside the event segments";
      RecordedEvent ev;
      bool found = false;
      if (off >= format::kFileHeaderSize && off < size_) {
        uint64_t s = (off - format::kFileHeaderSize) / seg_size_;
        uint64_t end = slot_offset(s) + seg_size_;
        if (s < slots_.size() && slots_[s].kind == SegmentKind::kEvents && end <= size_) {
          if (!compressed) {
            uint32_t len;
            found = off >= slot_offset(s) + sh::kSize &&
                    decode_record(map_ + off, end - off, seed_, &ev, &len, &err);
          } else {
            // Decode each compressed frame once, however many locators name it.
            uint32_t want = static_cast<uint32_t>((loc >> 48) & 0x7fff);
            if (off != frame_off) {
              frame_off = off;
              frame_events.clear();
              frame_err.clear();
              FrameHeader h;
              const EventSeg seg{s, slots_[s].epoch, 0};
              if (check_frame_at(FileLog(*this), seg, off, &h, &frame_err) == FrameState::kValid)
                for_each_record(map_ + off, h, seed_, &buf, &frame_err,
                                [&](const RecordedEvent& r, uint32_t, uint32_t) {
                                  frame_events.push_back(r);
                                  return true;
                                });
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
        break;
      }
    }
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
