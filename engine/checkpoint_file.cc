// Checkpoint file codec and its atomic-replace protocol.
#include "engine/checkpoint_file.h"

#include <fcntl.h>
#include <fmt/format.h>

#include <cerrno>
#include <cstring>

#include "engine/coding.h"
#include "engine/format.h"
#include "engine/segment.h"

namespace eventsource {

namespace ck = format::checkpoint;

std::string checkpoint_path(const std::string& data_path) {
  return data_path + format::kCheckpointSuffix;
}

static Status write_all(Os& os, int fd, const uint8_t* p, size_t n, uint64_t off,
                        const std::string& path) {
  int r = write_full(os, fd, p, n, off);
  if (r < 0) return io_error(fmt::format("{}: write failed: {}", path, std::strerror(-r)), -r);
  return Status();
}

Status write_checkpoint_file(Os& os, const std::string& data_path, const Checkpoint& c,
                             uint64_t seed, unsigned file_mode, bool* renamed) {
  if (renamed != nullptr) *renamed = false;
  uint8_t buf[ck::kSize] = {};
  std::memcpy(buf + ck::kMagic, format::kCheckpointMagic, 8);
  put_u32(buf + ck::kVersion, format::kFormatVersion);
  put_u32(buf + ck::kLength, ck::kSize);
  std::memcpy(buf + ck::kStoreId, c.store_id.bytes.data(), 16);
  put_u64(buf + ck::kDurablePosition, c.durable_position);
  put_u64(buf + ck::kLastFrameOffset, c.last_frame_offset);
  put_u64(buf + ck::kIndexSlot, c.index_slot);
  put_u64(buf + ck::kIndexEpoch, c.index_epoch);
  put_u64(buf + ck::kWrittenUs, static_cast<uint64_t>(c.written_us));
  put_u64(buf + ck::kChecksum, checksum64(buf, ck::kChecksum, seed));

  const std::string tmp = data_path + format::kCheckpointTempSuffix;
  const std::string final_path = checkpoint_path(data_path);
  int fd = os.open(tmp, O_WRONLY | O_CREAT | O_TRUNC, file_mode);
  if (fd < 0)
    return io_error(
        fmt::format("{}: cannot create checkpoint temp file: {}", tmp, std::strerror(-fd)), -fd);
  Status s = write_all(os, fd, buf, sizeof buf, 0, tmp);
  if (s.ok()) {
    int r = os.fsync(fd);
    if (r < 0) s = io_error(fmt::format("{}: fsync failed: {}", tmp, std::strerror(-r)), -r);
  }
  int cr = os.close(fd);
  if (s.ok() && cr < 0)
    s = io_error(fmt::format("{}: close failed: {}", tmp, std::strerror(-cr)), -cr);
  if (!s.ok()) {
    os.unlink(tmp);
    return s;
  }
  int r = os.rename(tmp, final_path);
  if (r < 0) {
    os.unlink(tmp);
    return io_error(fmt::format("{}: rename to {} failed: {}", tmp, final_path, std::strerror(-r)),
                    -r);
  }
  if (renamed != nullptr) *renamed = true;
  r = os.sync_dir_of(final_path);
  if (r < 0)
    return io_error(
        fmt::format("{}: fsync of its directory failed: {}", final_path, std::strerror(-r)), -r);
  return Status();
}

Status parse_checkpoint(const uint8_t* p, size_t n, uint64_t seed, Checkpoint* out) {
  if (n != ck::kSize)
    return bad_bytes(fmt::format("checkpoint file is {} bytes, expected {}", n, ck::kSize), 0);
  if (std::memcmp(p + ck::kMagic, format::kCheckpointMagic, 8) != 0)
    return bad_bytes("checkpoint file has a bad magic", 0);
  if (get_u64(p + ck::kChecksum) != checksum64(p, ck::kChecksum, seed))
    return bad_bytes("checkpoint checksum mismatch (or it belongs to another store)", 0);
  if (get_u32(p + ck::kVersion) != format::kFormatVersion ||
      get_u32(p + ck::kLength) != ck::kSize ||
      !all_zero(p + ck::kReserved, ck::kChecksum - ck::kReserved))
    return bad_bytes("checkpoint has an unknown version or non-zero reserved bytes", 0);
  std::memcpy(out->store_id.bytes.data(), p + ck::kStoreId, 16);
  out->durable_position = get_u64(p + ck::kDurablePosition);
  out->last_frame_offset = get_u64(p + ck::kLastFrameOffset);
  out->index_slot = get_u64(p + ck::kIndexSlot);
  out->index_epoch = get_u64(p + ck::kIndexEpoch);
  out->written_us = static_cast<int64_t>(get_u64(p + ck::kWrittenUs));
  return Status();
}

Result<std::optional<Checkpoint>> read_checkpoint_file(Os& os, const std::string& data_path,
                                                       const Uuid& store_id, uint64_t seed,
                                                       Status* problem) {
  *problem = Status();
  const std::string path = checkpoint_path(data_path);
  int fd = os.open(path, O_RDONLY, 0);
  if (fd == -ENOENT) return std::optional<Checkpoint>();
  if (fd < 0)
    return io_error(fmt::format("{}: cannot open checkpoint file: {}", path, std::strerror(-fd)),
                    -fd);
  uint8_t buf[ck::kSize + 1];
  size_t got = 0;
  Status s;
  while (got < sizeof buf) {
    ssize_t r = os.pread(fd, buf + got, sizeof buf - got, got);
    if (r < 0) {
      s = io_error(fmt::format("{}: read failed: {}", path, std::strerror(static_cast<int>(-r))),
                   static_cast<int>(-r));
      break;
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  os.close(fd);
  if (!s.ok()) return s;
  Checkpoint c;
  Status bad = parse_checkpoint(buf, got, seed, &c);
  if (bad.ok() && c.store_id != store_id)
    bad = bad_bytes("checkpoint belongs to another store", ck::kStoreId);
  if (!bad.ok()) {
    *problem = corruption(fmt::format("{}: {}", path, bad.message()), -1, bad.offset());
    return std::optional<Checkpoint>();
  }
  return std::optional<Checkpoint>(c);
}

}  // namespace eventsource
