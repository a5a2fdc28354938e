// A testing kit for aggregates, with no I/O and no test framework tied in:
// given events, when a command, then the events it raised or its rejection.
// Each then_* returns a Status: ok when the expectation holds, otherwise an
// error saying what happened instead; CHECK it with any framework.
//
//   auto s = Scenario<DeciderAggregate<OrderDecider>>("42")
//                .given({OrderPlaced{...}, ItemAdded{...}})
//                .when(Ship{"TRACK-1"})
//                .then({OrderShipped{"TRACK-1"}});
//   CHECK(s.ok());
//
// For an aggregate root, `when` takes a callable that runs the command:
//   .when([](Cart& c) { return c.add("sku-1"); })
// Events compare with their operator== (declare `= default`).
#pragma once

#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "eventsource/aggregate.h"
#include "eventsource/status.h"

namespace eventsource {

template <class A>
class Scenario {
 public:
  using Event = typename A::Event;

  explicit Scenario(std::string id = "test") : aggregate_(std::move(id)) {}

  // History: applied as stored events.
  Scenario& given(const std::vector<Event>& history) {
    for (const Event& e : history) aggregate_.replay(e);
    return *this;
  }

  // Runs a command: a decider's Command, or a callable taking A& and
  // returning Status.
  template <class C>
  Scenario& when(C&& command) {
    if constexpr (std::is_invocable_r_v<Status, C, A&>)
      outcome_ = std::forward<C>(command)(aggregate_);
    else
      outcome_ = aggregate_.handle(std::forward<C>(command));
    ran_ = true;
    return *this;
  }

  // The command succeeded and raised exactly `expected`, in order.
  Status then(const std::vector<Event>& expected) const {
    if (!ran_) return invalid_argument("Scenario: then() before when()");
    if (!outcome_.ok())
      return invalid_argument("expected events, but the command failed: " + outcome_.to_string());
    const std::vector<Event>& got = aggregate_.pending_events();
    if (got.size() != expected.size())
      return invalid_argument("expected " + std::to_string(expected.size()) + " events, got " +
                              std::to_string(got.size()) + describe(got));
    for (size_t i = 0; i < got.size(); ++i)
      if (!(got[i] == expected[i]))
        return invalid_argument("event " + std::to_string(i) + " differs: expected " +
                                name_of(expected[i]) + ", got " + name_of(got[i]) + describe(got));
    return Status();
  }

  // The command was refused (kRejected), with `why` in its message when
  // given, and raised nothing.
  Status then_rejected(std::string_view why = {}) const {
    if (!ran_) return invalid_argument("Scenario: then_rejected() before when()");
    if (outcome_.code() != Code::kRejected)
      return invalid_argument("expected a rejection, got " + outcome_.to_string() +
                              describe(aggregate_.pending_events()));
    if (!why.empty() && outcome_.message().find(why) == std::string::npos)
      return invalid_argument("rejected for another reason: " + outcome_.message());
    if (!aggregate_.pending_events().empty())
      return invalid_argument("rejected, but events were raised" +
                              describe(aggregate_.pending_events()));
    return Status();
  }

  const A& aggregate() const { return aggregate_; }
  const Status& outcome() const { return outcome_; }

 private:
  // The alternative's position in the variant (types have no portable name).
  static std::string name_of(const Event& e) { return "alternative #" + std::to_string(e.index()); }
  static std::string describe(const std::vector<Event>& events) {
    std::string s = " (raised:";
    for (const Event& e : events) s += " " + name_of(e);
    return s + ")";
  }

  A aggregate_;
  Status outcome_;
  bool ran_ = false;
};

}  // namespace eventsource
