// The append rules of the backends without the engine (append_rules.h).
#include "append_rules.h"

#include <fmt/format.h>

#include <algorithm>

namespace eventsource::api_internal {

Status version_conflict(const StreamId& stream, ExpectedVersion expected, StreamVersion current) {
  return conflict(fmt::format("stream {}: expected {}, but the stream is at version {}; reload "
                              "it and decide again",
                              stream.name(), expected.to_string(), current.value),
                  static_cast<int64_t>(current.value));
}

Result<AppendPlan> judge_append(const StreamId& stream, ExpectedVersion expected,
                                StreamVersion current, std::span<const NewEvent> events,
                                const IdLookup& lookup) {
  std::vector<std::optional<IdLocation>> found(events.size());
  bool any = false;
  for (size_t i = 0; i < events.size(); ++i) {
    if (events[i].id.is_nil()) continue;
    EVENTSOURCE_ASSIGN_OR_RETURN(found[i], lookup(events[i].id));
    any = any || found[i].has_value();
  }
  if (!any) {
    if (!expected.accepts(current)) return version_conflict(stream, expected, current);
    return AppendPlan{};
  }
  // A retry: every event is stored, in this stream, at consecutive versions
  // in batch order.
  bool retry = true;
  for (size_t i = 0; i < found.size() && retry; ++i)
    retry = found[i] && found[i]->stream == stream &&
            found[i]->version.value == found[0]->version.value + i;
  if (!retry) {
    size_t i = 0;
    while (!found[i]) ++i;
    const IdLocation& f = *found[i];
    return Status(
        Code::kDuplicateEvent,
        fmt::format("stream {}: event {} of the batch has an id already stored in "
                    "stream {} at version {} (position {}); nothing was written. A "
                    "retry must resend the whole batch, with the same ids in the same "
                    "order, to the same stream; new events need new ids",
                    stream.name(), i, f.stream.name(), f.version.value, f.position.value));
  }
  const uint64_t before = found.front()->version.value - 1;
  if (!expected.accepts(StreamVersion(before)))
    return conflict(fmt::format("stream {}: expected {}, but this batch is already stored at "
                                "versions {}..{} (the stream is at version {})",
                                stream.name(), expected.to_string(), before + 1,
                                before + found.size(), current.value),
                    static_cast<int64_t>(current.value));
  AppendPlan plan;
  plan.write = false;
  plan.retry.version = current;
  plan.retry.first_position = plan.retry.last_position = found.front()->position;
  for (const auto& f : found) {
    plan.retry.first_position = std::min(plan.retry.first_position, f->position);
    plan.retry.last_position = std::max(plan.retry.last_position, f->position);
  }
  plan.retry.deduplicated = true;
  return plan;
}

}  // namespace eventsource::api_internal
