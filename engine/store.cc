// The store's front door: Store's public calls forward to Store::Impl, whose
// parts live in recovery.cc, writer.cc, group_commit.cc, checkpoint.cc,
// reader.cc and verify.cc. Here: construction, shared I/O helpers, close,
// and stats.
#include "eventsource/store.h"

#include <fmt/format.h>

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

std::string stream_key(const StreamId& s) {
  std::string k;
  k.reserve(s.type.size() + 1 + s.id.size());
  k += s.type;
  k += '-';
  k += s.id;
  return k;
}

MappedLog::MappedLog(const Store::Impl& impl) : impl_(impl), segs_(impl.seg_table()) {
  segment_size = impl.seg_size_;
  seed = impl.seed_;
}

const uint8_t* MappedLog::bytes(uint64_t slot, uint64_t* avail) const {
  *avail = segment_size;
  return impl_.slot_map(slot);
}

Store::Impl::Impl(std::string path, const StoreOptions& options)
    : path_(std::move(path)), opt_(options), segs_(std::make_shared<const SegTable>()) {
  os_ = opt_.os ? opt_.os : default_os();
  read_only_ = opt_.mode == OpenMode::kReadOnly;
}

Store::Impl::~Impl() { release(/*checkpoint=*/true).ignore_error(); }

std::shared_ptr<const Store::Impl::SegTable> Store::Impl::seg_table() const {
  MutexLock lock(&seg_mu_);
  return segs_;
}

void Store::Impl::set_seg_table(SegTable table) {
  auto fresh = std::make_shared<const SegTable>(std::move(table));
  MutexLock lock(&seg_mu_);
  segs_ = std::move(fresh);
}

namespace {
// The stores this thread is inside a call of (a read callback may call
// again): close() from inside one would wait for itself.
thread_local std::vector<const Store::Impl*> t_inside;
}  // namespace

Store::Impl::OpGuard::OpGuard(const Impl& impl) : impl_(impl) {
  // Paired with release(): it sets closed_ and then waits for active_ops_
  // to drain; seq_cst on both sides means either this call sees closed_ or
  // release() sees this call.
  impl_.active_ops_.fetch_add(1, std::memory_order_seq_cst);
  ok_ = !impl_.closed_.load(std::memory_order_seq_cst);
  t_inside.push_back(&impl_);
}

Store::Impl::OpGuard::~OpGuard() {
  t_inside.pop_back();
  if (impl_.active_ops_.fetch_sub(1, std::memory_order_seq_cst) == 1 &&
      impl_.closed_.load(std::memory_order_seq_cst)) {
    MutexLock lock(&impl_.close_mu_);
    impl_.close_cv_.notify_all();
  }
}

Status Store::Impl::closed_status() const {
  return closed(fmt::format("{}: store is closed", path_));
}

std::string Store::Impl::where(uint64_t slot, uint64_t offset) const {
  return fmt::format("{}: segment {} offset {}", path_, slot, hex(offset));
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

Status Store::Impl::close() {
  if (std::find(t_inside.begin(), t_inside.end(), this) != t_inside.end())
    return invalid_argument(fmt::format(
        "{}: close() called from inside a read callback of this store; it would wait for that "
        "read to finish: return from the callback first",
        path_));
  return release(/*checkpoint=*/true);
}

Status Store::Impl::release(bool checkpoint) {
  closed_.store(true, std::memory_order_seq_cst);
  {
    MutexLock lock(&close_mu_);
    while (active_ops_.load(std::memory_order_seq_cst) != 0) close_cv_.wait(lock);
  }
  // No call is in flight and none can start: the rest runs alone, but under
  // write_mu_ so that two closers release once.
  MutexLock lock(&write_mu_);
  if (fd_ < 0) return Status();
  Status result;
  if (checkpoint && !read_only_ && !poisoned_ && maps_) result = checkpoint_locked();
  if (maps_) {
    for (size_t i = 0; i < map_cap_; ++i) {
      const uint8_t* p = maps_[i].exchange(nullptr);
      const bool copy = std::any_of(slot_copies_.begin(), slot_copies_.end(),
                                    [p](const auto& c) { return c.get() == p; });
      if (p != nullptr && !copy) os_->unmap(p, seg_size_);
    }
  }
  {
    WriterLock ix(&index_mu_);
    if (index_map_ != nullptr) os_->unmap(index_map_, index_map_len_);
    index_map_ = nullptr;
  }
  slot_copies_.clear();
  copied_slot_ = kNoSlot;
  int r = os_->close(fd_);
  if (r < 0 && result.ok())
    result = io_error(fmt::format("{}: close failed: {}", path_, errno_text(-r)), -r);
  fd_ = -1;
  return result;
}

StoreStats Store::Impl::stats() const {
  StoreStats st;
  OpGuard guard(*this);
  if (!guard.ok()) return st;
  st.format_version = header_.version;
  st.segment_size = seg_size_;
  {
    ReaderLock ix(&index_mu_);  // the committed view: events and streams agree
    st.events = committed_.load(std::memory_order_acquire);
    st.streams = index_.stream_count();
    st.index_persisted_position = index_covers_;
  }
  st.first_position = GlobalPosition(st.events > 0 ? 1 : 0);
  st.last_position = GlobalPosition(st.events);
  st.event_segments = static_cast<uint32_t>(seg_table()->size());
  {
    // The slot table belongs to the writer.
    MutexLock lock(&write_mu_);
    st.checkpoint_failures = checkpoint_failures_;
    st.checkpoint_failures_in_row = checkpoint_failures_in_row_;
    st.last_checkpoint_error = last_checkpoint_error_;
    uint64_t used = 0;
    for (uint64_t s = 0; s < slots_.size(); ++s) {
      if (slots_[s].kind == SegmentKind::kIndex && slots_[s].slot_count > 0) ++st.index_segments;
      if (slots_[s].kind != SegmentKind::kFree) ++used;
    }
    st.free_segments = static_cast<uint32_t>(slots_.size() - used);
    st.aux_segments = static_cast<uint32_t>(aux_segs_.size());
    st.aux_bytes = aux_frame_bytes_;
    st.aux_compactions = aux_compactions_;
    if (ckpt_) st.file_bytes += format::checkpoint::kSize;
  }
  {
    MutexLock lock(&aux_mu_);
    st.snapshots = aux_state_.snapshot_count;
    st.snapshot_streams = aux_state_.snapshots.size();
    st.dead_letters = aux_state_.dead_letters.size();
    st.projection_states = static_cast<uint64_t>(
        std::count_if(aux_state_.projections.begin(), aux_state_.projections.end(),
                      [](const auto& p) { return !reserved_aux_name(p.first); }));
    st.aux_live_bytes = aux_state_.live_bytes;
  }
  {
    // Log totals: the frames up to the committed position are walked once;
    // later calls walk only the frames committed since (stats_mu_ keeps
    // concurrent callers from walking twice).
    MutexLock lock(&stats_mu_);
    LogTotals& t = totals_;
    const MappedLog log(*this);
    size_t si = 0;
    uint64_t offset = 0;  // 0: the first frame of segment si
    uint64_t expected = log.segment_count() > 0 ? log.segment(0).first_position : 1;
    if (t.expected > 1) {  // continue after the last frame counted
      size_t i = 0;
      while (i < log.segment_count() &&
             !(log.segment(i).slot == t.slot && log.segment(i).epoch == t.epoch))
        ++i;
      if (i < log.segment_count()) {
        si = i;
        offset = t.offset;
        expected = t.expected;
      } else {
        t = LogTotals{};  // the log was cut under a read-only handle: count again
      }
    }
    LogReader reader(log, si, offset, expected);
    LogFrame f;
    BadFrame bad;
    while (reader.expected_position() <= st.events &&
           reader.next(&f, &bad) == LogReader::Step::kFrame) {
      t.log_bytes += f.header.frame_len;
      t.raw_record_bytes += f.header.raw_len;
      t.stored_record_bytes += f.header.body_len;
      t.compressed_frames += f.header.compressed() ? 1 : 0;
      t.slot = f.slot;
      t.epoch = log.segment(f.seg_index).epoch;
      t.offset = reader.offset();
      t.expected = reader.expected_position();
    }
    st.log_bytes = t.log_bytes;
    st.raw_record_bytes = t.raw_record_bytes;
    st.stored_record_bytes = t.stored_record_bytes;
    st.compressed_frames = t.compressed_frames;
  }
  // Holes (the unused part of index segments, freed segments) take no space.
  int64_t used_bytes = os_->allocated_bytes(fd_);
  st.file_bytes += used_bytes > 0 ? static_cast<uint64_t>(used_bytes) : 0;
  return st;
}

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

Status Store::read_stream(const StreamId& stream, const ReadStreamOptions& options,
                          const EventCallback& fn) const {
  return impl_->read_stream(stream, options, fn);
}

Status Store::read_all(const ReadAllOptions& options, const EventCallback& fn) const {
  return impl_->read_all(options, fn);
}

Result<std::optional<EventLocation>> Store::find_event(const Uuid& id) const {
  return impl_->find_event(id);
}

Result<bool> Store::event_exists(const Uuid& id) const {
  EVENTSOURCE_ASSIGN_OR_RETURN(std::optional<EventLocation> at, impl_->find_event(id));
  return at.has_value();
}

StreamVersion Store::stream_version(const StreamId& stream) const {
  return impl_->stream_version(stream);
}

std::vector<StreamInfo> Store::list_streams() const { return impl_->list_streams(); }

bool Store::is_open() const { return !impl_->closed_.load(std::memory_order_acquire); }

GlobalPosition Store::committed_position() const {
  return GlobalPosition(impl_->committed_.load(std::memory_order_acquire));
}

Result<GlobalPosition> Store::refresh() { return impl_->refresh(); }
Status Store::checkpoint() { return impl_->checkpoint(); }
StoreStats Store::stats() const { return impl_->stats(); }
const std::string& Store::path() const { return impl_->path_; }

}  // namespace eventsource
