#include "eventsource/projection_runner.h"

#include <fmt/format.h>

#include <algorithm>

namespace eventsource {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

ProjectionRunner::ProjectionRunner(EventStore& events, ProjectionStore& store,
                                   ProjectionRunnerOptions options)
    : events_(events), store_(store), options_(std::move(options)) {}

ProjectionRunner::~ProjectionRunner() {
  stop(Subscription::StopMode::kNow, std::chrono::hours(24)).ignore_error();
}

Status ProjectionRunner::add(Projection& projection, std::optional<SubscriptionOptions> options) {
  const std::string name(projection.name());
  EVENTSOURCE_RETURN_IF_ERROR(check_projection_name(name));
  std::lock_guard lock(mu_);
  if (stopping_)
    return closed(fmt::format("projection runner: stopped; cannot add projection {}", name));
  Group& group = groups_[name];
  for (const auto& e : group.versions)
    if (e->projection->version() == projection.version())
      return invalid_argument(
          fmt::format("projection {} version {} is added already", name, projection.version()));
  auto entry = std::make_unique<Entry>();
  entry->projection = &projection;
  entry->options = options ? std::move(*options) : options_.defaults;
  entry->options.store = &store_;
  auto at = std::find_if(group.versions.begin(), group.versions.end(), [&](const auto& e) {
    return e->projection->version() > projection.version();
  });
  group.versions.insert(at, std::move(entry));
  if (!started_) return Status();
  return start_group_locked(group);
}

Status ProjectionRunner::start() {
  std::lock_guard lock(mu_);
  if (stopping_) return closed("projection runner: stopped; make a new one to start again");
  started_ = true;
  Status first;
  for (auto& [name, group] : groups_) {
    Status s = start_group_locked(group);
    if (!s.ok() && first.ok()) first = std::move(s);
  }
  return first;
}

// Runs the newest version; while it catches up, the one before it serves.
Status ProjectionRunner::start_group_locked(Group& group) {
  const size_t n = group.versions.size();
  Entry* next = group.versions[n - 1].get();
  Entry* old = n > 1 ? group.versions[n - 2].get() : nullptr;
  auto run = [&](Entry* e) -> Status {
    if (e->sub || e->retired) return Status();
    Result<std::unique_ptr<Subscription>> sub =
        Subscription::start(events_, *e->projection, e->options);
    if (!sub.ok()) return sub.take_status();
    e->sub = std::move(sub).value();
    return Status();
  };
  // A version added after a newer one took over never runs.
  for (size_t i = 0; i + 2 < n; ++i) {
    Entry* e = group.versions[i].get();
    if (e->sub && !e->retired) e->sub->stop(Subscription::StopMode::kNow).ignore_error();
    e->active = false;
    e->retired = true;
  }
  EVENTSOURCE_RETURN_IF_ERROR(run(next));
  if (old == nullptr || old->retired) {
    next->active = true;
    return Status();
  }
  Status s = run(old);
  if (!s.ok()) {
    next->active = true;  // the old one cannot serve: the new one does
    return s;
  }
  old->active = true;
  next->active = false;
  watchers_.emplace_back([this, next, old] { watch_switch(next, old); });
  return Status();
}

void ProjectionRunner::watch_switch(Entry* next, Entry* old) {
  while (true) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
    }
    Status live = next->sub->wait_live(milliseconds(100));
    if (live.ok()) break;
    if (live.code() != Code::kTimedOut) return;  // it stopped: the old one keeps serving
  }
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    next->active = true;
    old->active = false;
    old->retired = true;
  }
  old->sub->stop(Subscription::StopMode::kNow).ignore_error();
  if (options_.on_switch) {
    try {
      options_.on_switch(*old->projection, *next->projection);
    } catch (...) {  // the switch is done; a throwing callback changes nothing
    }
  }
}

Status ProjectionRunner::stop(Subscription::StopMode mode, milliseconds timeout) {
  std::vector<Subscription*> subs;
  std::vector<std::thread> watchers;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    watchers.swap(watchers_);
    for (auto& [name, group] : groups_)
      for (auto& e : group.versions)
        if (e->sub) subs.push_back(e->sub.get());
  }
  for (std::thread& t : watchers) t.join();
  Status first;
  for (Subscription* sub : subs) {
    Status s = sub->stop(mode, timeout);
    if (!s.ok() && first.ok()) first = std::move(s);
  }
  return first;
}

ProjectionRunner::Entry* ProjectionRunner::active_locked(std::string_view name) const {
  auto it = groups_.find(name);
  if (it == groups_.end()) return nullptr;
  for (const auto& e : it->second.versions)
    if (e->active && e->sub) return e.get();
  return nullptr;
}

Status ProjectionRunner::wait_until(GlobalPosition position, milliseconds timeout) const {
  const Clock::time_point deadline = Clock::now() + timeout;
  std::vector<Subscription*> subs;
  {
    std::lock_guard lock(mu_);
    for (const auto& [name, group] : groups_)
      for (const auto& e : group.versions)
        if (e->sub && !e->retired) subs.push_back(e->sub.get());
  }
  for (Subscription* sub : subs) {
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    EVENTSOURCE_RETURN_IF_ERROR(sub->wait_until(position, std::max(left, milliseconds(0))));
  }
  return Status();
}

Status ProjectionRunner::wait_until(std::string_view name, GlobalPosition position,
                                    milliseconds timeout) const {
  Subscription* sub = subscription(name);
  if (sub == nullptr)
    return not_found(fmt::format("projection runner: no running projection named {}", name));
  return sub->wait_until(position, timeout);
}

std::vector<ProjectionHealth> ProjectionRunner::health() const {
  std::vector<std::pair<Subscription*, bool>> subs;
  {
    std::lock_guard lock(mu_);
    for (const auto& [name, group] : groups_)
      for (const auto& e : group.versions)
        if (e->sub && !e->retired) subs.emplace_back(e->sub.get(), e->active);
  }
  std::vector<ProjectionHealth> out;
  out.reserve(subs.size());
  for (auto [sub, active] : subs) {
    out.push_back(sub->health());
    out.back().active = active;
  }
  return out;
}

Subscription* ProjectionRunner::subscription(std::string_view name) const {
  std::lock_guard lock(mu_);
  Entry* e = active_locked(name);
  return e ? e->sub.get() : nullptr;
}

uint32_t ProjectionRunner::active_version(std::string_view name) const {
  std::lock_guard lock(mu_);
  Entry* e = active_locked(name);
  return e ? e->projection->version() : 0;
}

Result<RebuildReport> ProjectionRunner::rebuild(std::string_view name, milliseconds timeout) {
  Subscription* sub = subscription(name);
  if (sub == nullptr)
    return not_found(fmt::format("projection runner: no running projection named {}", name));
  return sub->rebuild(timeout);
}

Result<std::vector<DeadLetter>> ProjectionRunner::dead_letters(std::string_view projection) const {
  return store_.dead_letters(projection);
}

Result<DeadLetter> ProjectionRunner::dead_letter(uint64_t id) const {
  return store_.dead_letter(id);
}

Status ProjectionRunner::retry_dead_letter(uint64_t id) {
  DeadLetter letter;
  EVENTSOURCE_ASSIGN_OR_RETURN(letter, store_.dead_letter(id));
  Subscription* sub = subscription(letter.projection);
  if (sub == nullptr)
    return not_found(fmt::format(
        "dead letter #{}: its projection {} is not running here; add and start it first", id,
        letter.projection));
  return sub->retry_dead_letter(id);
}

Result<DeadLetterRetryReport> ProjectionRunner::retry_dead_letters(std::string_view projection) {
  std::vector<DeadLetter> letters;
  EVENTSOURCE_ASSIGN_OR_RETURN(letters, store_.dead_letters(projection));
  DeadLetterRetryReport report;
  for (const DeadLetter& d : letters) {
    ++report.retried;
    Status s = retry_dead_letter(d.id);
    if (s.ok()) {
      ++report.succeeded;
    } else {
      report.failures.push_back(fmt::format("#{} ({} at position {}): {}", d.id, d.projection,
                                            d.position.value, s.to_string()));
    }
  }
  return report;
}

Status ProjectionRunner::resolve_dead_letter(uint64_t id) { return store_.remove_dead_letter(id); }

Result<uint64_t> ProjectionRunner::purge_dead_letters(std::string_view projection) {
  return store_.purge_dead_letters(projection);
}

}  // namespace eventsource
