// InMemoryEventStore (memory_event_store.h): a vector per stream and one for
// the global log, shared pointers so reads can leave the lock early.
#include "eventsource/memory_event_store.h"

#include <fmt/format.h>

#include <chrono>
#include <cstring>
#include <mutex>

#include "append_rules.h"
#include "clock.h"

namespace eventsource {
namespace {

// How many events a read copies out under the lock at a time.
constexpr size_t kPage = 256;

// Calls fn for each event of `page`; false when fn stopped the read.
bool deliver(const std::vector<std::shared_ptr<const StoredEvent>>& page,
             const RecordCallback& fn) {
  for (const auto& e : page)
    if (!fn(e->view())) return false;
  return true;
}

}  // namespace

size_t InMemoryEventStore::UuidHash::operator()(const Uuid& u) const {
  uint64_t a, b;
  std::memcpy(&a, u.bytes.data(), 8);
  std::memcpy(&b, u.bytes.data() + 8, 8);
  return a ^ (b * 0x9e3779b97f4a7c15ull);
}

InMemoryEventStore::InMemoryEventStore(Observability observability)
    : EventStore(std::move(observability)) {}

InMemoryEventStore::~InMemoryEventStore() = default;

Status InMemoryEventStore::close() {
  std::unique_lock lock(mu_);
  closed_ = true;
  log_.clear();
  streams_.clear();
  ids_.clear();
  return Status();
}

Status InMemoryEventStore::check_open() const {
  if (closed_) return closed("in-memory event store: closed; create a new one");
  return Status();
}

Result<AppendResult> InMemoryEventStore::do_append(const StreamId& stream, ExpectedVersion expected,
                                                   std::span<const NewEvent> events) {
  std::unique_lock lock(mu_);
  EVENTSOURCE_RETURN_IF_ERROR(check_open());
  auto found = streams_.find(stream);
  const uint64_t current = found == streams_.end() ? 0 : found->second.size();
  EVENTSOURCE_ASSIGN_OR_RETURN(
      const api_internal::AppendPlan plan,
      api_internal::judge_append(
          stream, expected, StreamVersion(current), events,
          [&](const Uuid& id) -> Result<std::optional<api_internal::IdLocation>> {
            auto it = ids_.find(id);
            if (it == ids_.end()) return std::optional<api_internal::IdLocation>();
            const StoredEvent& e = *it->second;
            return std::optional(api_internal::IdLocation{e.stream, e.version, e.position});
          }));
  if (!plan.write) return plan.retry;
  std::vector<EventPtr>& versions = streams_[stream];
  const int64_t now = api_internal::now_us();
  AppendResult result;
  result.first_position = GlobalPosition(log_.size() + 1);
  for (const NewEvent& n : events) {
    auto e = std::make_shared<StoredEvent>();
    e->position = GlobalPosition(log_.size() + 1);
    e->version = StreamVersion(versions.size() + 1);
    e->timestamp_us = n.timestamp_us == 0 ? now : n.timestamp_us;
    e->schema_version = n.schema_version;
    e->id = n.id.is_nil() ? Uuid::random() : n.id;
    e->correlation_id = n.correlation_id;
    e->causation_id = n.causation_id;
    e->stream = stream;
    e->type = n.type;
    e->tenant = n.tenant;
    e->actor = n.actor;
    e->metadata = n.metadata;
    e->payload = n.payload;
    log_.push_back(e);
    versions.push_back(e);
    ids_.emplace(e->id, std::move(e));
  }
  result.last_position = GlobalPosition(log_.size());
  result.version = StreamVersion(versions.size());
  return result;
}

Status InMemoryEventStore::do_read_stream(const StreamId& stream, const StreamReadOptions& o,
                                          const RecordCallback& fn) const {
  const bool forward = o.direction == ReadDirection::kForward;
  uint64_t left = o.max_count;
  uint64_t next = 0;  // the next version to read; set on the first page
  bool first = true;
  std::vector<EventPtr> page;
  while (left > 0) {
    page.clear();
    {
      std::shared_lock lock(mu_);
      EVENTSOURCE_RETURN_IF_ERROR(check_open());
      auto it = streams_.find(stream);
      if (it == streams_.end()) return Status();
      const std::vector<EventPtr>& v = it->second;
      const uint64_t current = v.size();
      if (first) {
        first = false;
        if (forward)
          next = std::max<uint64_t>(o.from.value, 1);
        else
          next = o.from.value == 0 || o.from.value > current ? current : o.from.value;
      }
      const uint64_t last = forward ? (o.to.value == 0 ? current : std::min(o.to.value, current))
                                    : std::max<uint64_t>(o.to.value, 1);
      while (page.size() < kPage && left > 0) {
        if (forward ? next > last : (next < last || next == 0)) break;
        page.push_back(v[next - 1]);
        next = forward ? next + 1 : next - 1;
        --left;
      }
    }
    if (page.empty() || !deliver(page, fn) || page.size() < kPage) break;
  }
  return Status();
}

Status InMemoryEventStore::do_read_all(const AllReadOptions& o, const RecordCallback& fn) const {
  uint64_t next = std::max<uint64_t>(o.from.value, 1);
  uint64_t left = o.max_count;
  std::vector<EventPtr> page;
  while (left > 0) {
    page.clear();
    {
      std::shared_lock lock(mu_);
      EVENTSOURCE_RETURN_IF_ERROR(check_open());
      for (; next <= log_.size() && page.size() < kPage && left > 0; ++next) {
        const EventPtr& e = log_[next - 1];
        if (!matches(o, e->view())) continue;
        page.push_back(e);
        --left;
      }
    }
    if (page.empty() || !deliver(page, fn)) break;
  }
  return Status();
}

Result<bool> InMemoryEventStore::do_event_exists(const Uuid& id) const {
  std::shared_lock lock(mu_);
  EVENTSOURCE_RETURN_IF_ERROR(check_open());
  return ids_.count(id) > 0;
}

Result<GlobalPosition> InMemoryEventStore::do_current_position() const {
  std::shared_lock lock(mu_);
  EVENTSOURCE_RETURN_IF_ERROR(check_open());
  return GlobalPosition(log_.size());
}

Result<StreamVersion> InMemoryEventStore::do_stream_version(const StreamId& stream) const {
  std::shared_lock lock(mu_);
  EVENTSOURCE_RETURN_IF_ERROR(check_open());
  auto it = streams_.find(stream);
  return StreamVersion(it == streams_.end() ? 0 : it->second.size());
}

}  // namespace eventsource
