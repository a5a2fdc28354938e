// esbench backend over the eventsource engine's public API: one store file
// (events.evs, plus events.evs.ckpt) in the backend's directory.
#include <utility>
#include <vector>

#include "bench/backend.h"
#include "eventsource/store.h"

namespace esbench {
namespace {

constexpr const char* kFileName = "events.evs";

// StoreOptions::compress_min_bytes for every engine store this process opens
// (esbench --compress); 0 = off, the engine's default.
uint32_t g_compress_min_bytes = 0;

uint64_t record_bytes(const eventsource::RecordedEvent& e) {
  return e.payload.size() + e.type.size() + e.stream_type.size() + 1 + e.stream_id.size() +
         e.tenant.size() + e.metadata.size() + kFixedRecordBytes;
}

ReadEvent to_read_event(const eventsource::RecordedEvent& e) {
  ReadEvent out;
  out.position = e.position.value;
  out.version = e.version.value;
  out.type = e.type;
  out.payload = e.payload;
  out.record_bytes = record_bytes(e);
  return out;
}

class EngineBackend final : public Backend {
 public:
  std::string_view name() const override { return "engine"; }

  eventsource::Status open(const std::string& dir, bool read_only) override {
    eventsource::StoreOptions options;
    options.durability = eventsource::Durability::kNone;
    options.compress_min_bytes = g_compress_min_bytes;
    if (read_only) {
      options.mode = eventsource::OpenMode::kReadOnly;
      options.create = eventsource::CreateMode::kMustExist;
    }
    auto store = eventsource::Store::open(dir + "/" + kFileName, options);
    if (!store.ok()) return store.take_status();
    store_ = std::move(store).value();
    return eventsource::Status();
  }

  eventsource::Status close() override {
    if (store_ == nullptr) return eventsource::Status();
    eventsource::Status status = store_->close();
    store_.reset();
    return status;
  }

  eventsource::Status append(const eventsource::StreamId& stream, uint64_t expected_version,
                             std::span<const BenchEvent> events,
                             eventsource::Durability durability) override {
    // One scratch batch per thread: assigning into it reuses string capacity.
    thread_local std::vector<eventsource::EventData> batch;
    batch.resize(events.size());
    for (size_t i = 0; i < events.size(); ++i) {
      batch[i].type.assign(events[i].type);
      batch[i].payload.assign(events[i].payload);
      if (caller_event_ids()) batch[i].id = eventsource::Uuid::random();
    }
    eventsource::AppendOptions options;
    options.durability = durability;
    auto result = store_->append(
        stream, eventsource::ExpectedVersion::exact(eventsource::StreamVersion(expected_version)),
        batch, options);
    if (!result.ok()) return result.take_status();
    if (result->version.value != expected_version + events.size()) {
      return eventsource::Status(eventsource::Code::kCorruption,
                                 "append to " + stream.name() + " returned version " +
                                     std::to_string(result->version.value) + ", expected " +
                                     std::to_string(expected_version + events.size()));
    }
    return eventsource::Status();
  }

  eventsource::Status read_stream(const eventsource::StreamId& stream, const ReadFn& fn) override {
    return store_->read_stream(
        stream, {.from = eventsource::StreamVersion(1), .max_count = UINT64_MAX},
        [&fn](const eventsource::RecordedEvent& e) { return fn(to_read_event(e)); });
  }

  eventsource::Status read_all(uint64_t from, std::string_view type, uint64_t max_count,
                               const ReadFn& fn) override {
    eventsource::ReadFilter filter;
    if (!type.empty()) filter.event_types.emplace_back(type);
    return store_->read_all(
        {.from = eventsource::GlobalPosition(from), .max_count = max_count, .filter = filter},
        [&fn](const eventsource::RecordedEvent& e) { return fn(to_read_event(e)); });
  }

  eventsource::Result<uint64_t> last_position() override {
    return store_->committed_position().value;
  }

  eventsource::Result<uint64_t> stored_bytes() override { return store_->stats().log_bytes; }

 private:
  std::unique_ptr<eventsource::Store> store_;
};

}  // namespace

std::unique_ptr<Backend> make_engine_backend() { return std::make_unique<EngineBackend>(); }

void set_engine_compression(uint32_t min_bytes) { g_compress_min_bytes = min_bytes; }

}  // namespace esbench
