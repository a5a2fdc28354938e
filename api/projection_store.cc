#include "eventsource/projection_store.h"

#include <fmt/format.h>

#include <algorithm>

#include "clock.h"

namespace eventsource {

// ------------------------------------------------------------- engine --

EngineProjectionStore::EngineProjectionStore(std::shared_ptr<Store> store,
                                             EngineProjectionStoreOptions options)
    : store_(std::move(store)), options_(options) {}

Result<std::optional<ProjectionState>> EngineProjectionStore::load_checkpoint(
    std::string_view name) const {
  return store_->projection_state(name);
}

Status EngineProjectionStore::save_checkpoint(std::string_view name, GlobalPosition position,
                                              std::string_view state) {
  return store_->save_projection_state(name, position, state, options_.checkpoints);
}

Result<uint64_t> EngineProjectionStore::add_dead_letter(const DeadLetter& letter) {
  return store_->add_dead_letter(letter, options_.letters);
}

Result<std::vector<DeadLetter>> EngineProjectionStore::dead_letters(
    std::string_view projection) const {
  return store_->dead_letters(projection);
}

Result<DeadLetter> EngineProjectionStore::dead_letter(uint64_t id) const {
  return store_->dead_letter(id);
}

Status EngineProjectionStore::remove_dead_letter(uint64_t id) {
  return store_->remove_dead_letter(id, options_.letters);
}

Result<uint64_t> EngineProjectionStore::purge_dead_letters(std::string_view projection) {
  return store_->purge_dead_letters(projection, options_.letters);
}

Result<uint64_t> EngineProjectionStore::mark_for_retry(std::span<const uint64_t> ids) {
  return store_->mark_dead_letters_for_retry(ids, options_.letters);
}

Result<std::vector<uint64_t>> EngineProjectionStore::marked_for_retry() const {
  return store_->dead_letters_marked_for_retry();
}

Status EngineProjectionStore::unmark(std::span<const uint64_t> ids) {
  return store_->unmark_dead_letters(ids, options_.letters);
}

// ------------------------------------------------------------- memory --

namespace {

Status no_letter(uint64_t id) {
  return not_found(fmt::format("no dead letter #{} (list them with dead_letters())", id));
}

}  // namespace

Result<std::optional<ProjectionState>> InMemoryProjectionStore::load_checkpoint(
    std::string_view name) const {
  std::lock_guard lock(mu_);
  auto it = checkpoints_.find(name);
  if (it == checkpoints_.end()) return std::optional<ProjectionState>();
  return std::optional<ProjectionState>(it->second);
}

Status InMemoryProjectionStore::save_checkpoint(std::string_view name, GlobalPosition position,
                                                std::string_view state) {
  if (name.empty() || name.size() > 255)
    return invalid_argument(
        fmt::format("a checkpoint name must be 1..255 bytes, not {}", name.size()));
  std::lock_guard lock(mu_);
  ProjectionState& s = checkpoints_[std::string(name)];
  s.position = position;
  s.state = std::string(state);
  s.updated_us = api_internal::now_us();
  return Status();
}

Result<uint64_t> InMemoryProjectionStore::add_dead_letter(const DeadLetter& letter) {
  if (letter.projection.empty() || letter.projection.size() > 255)
    return invalid_argument(fmt::format(
        "a dead letter's projection name must be 1..255 bytes, not {}", letter.projection.size()));
  std::lock_guard lock(mu_);
  DeadLetter d = letter;
  d.id = next_id_++;
  letters_.emplace(d.id, d);
  return d.id;
}

Result<std::vector<DeadLetter>> InMemoryProjectionStore::dead_letters(
    std::string_view projection) const {
  std::lock_guard lock(mu_);
  std::vector<DeadLetter> out;
  for (const auto& [id, d] : letters_)
    if (projection.empty() || d.projection == projection) out.push_back(d);
  return out;
}

Result<DeadLetter> InMemoryProjectionStore::dead_letter(uint64_t id) const {
  std::lock_guard lock(mu_);
  auto it = letters_.find(id);
  if (it == letters_.end()) return no_letter(id);
  return it->second;
}

Status InMemoryProjectionStore::remove_dead_letter(uint64_t id) {
  std::lock_guard lock(mu_);
  if (letters_.erase(id) == 0) return no_letter(id);
  marks_.erase(id);
  return Status();
}

Result<uint64_t> InMemoryProjectionStore::purge_dead_letters(std::string_view projection) {
  std::lock_guard lock(mu_);
  uint64_t n = 0;
  for (auto it = letters_.begin(); it != letters_.end();) {
    if (projection.empty() || it->second.projection == projection) {
      marks_.erase(it->first);
      it = letters_.erase(it);
      ++n;
    } else {
      ++it;
    }
  }
  return n;
}

Result<uint64_t> InMemoryProjectionStore::mark_for_retry(std::span<const uint64_t> ids) {
  std::lock_guard lock(mu_);
  for (uint64_t id : ids)
    if (!letters_.contains(id)) return no_letter(id);
  uint64_t added = 0;
  for (uint64_t id : ids) added += marks_.insert(id).second ? 1 : 0;
  return added;
}

Result<std::vector<uint64_t>> InMemoryProjectionStore::marked_for_retry() const {
  std::lock_guard lock(mu_);
  return std::vector<uint64_t>(marks_.begin(), marks_.end());
}

Status InMemoryProjectionStore::unmark(std::span<const uint64_t> ids) {
  std::lock_guard lock(mu_);
  for (uint64_t id : ids) marks_.erase(id);
  return Status();
}

}  // namespace eventsource
