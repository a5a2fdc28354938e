// Forked child processes for crash, lock and live-reader tests: a child runs
// a function and _exit()s with its result (never returning into the test
// framework); two pipes carry fixed-size messages each way.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace eventsource::testing {

// The child's ends of the two pipes.
struct ChildPipes {
  int to_parent = -1;    // write end
  int from_parent = -1;  // read end

  // Both abort the child (_exit(120)) when the parent is gone.
  void send(uint64_t value) const;
  uint64_t receive() const;
  // Length-prefixed text.
  void send_text(const std::string& text) const;
};

// Move-only handle of a forked child. The destructor SIGKILLs and reaps a
// child that is still running, so a failing test never leaves one behind.
class Child {
 public:
  // Forks; the child runs `body` and _exit()s with its return value (99 when
  // it throws). Stdout/stderr are flushed before the fork.
  static Child spawn(const std::function<int(const ChildPipes&)>& body);

  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  Child(Child&& other) noexcept;
  Child& operator=(Child&&) = delete;
  ~Child();

  pid_t pid() const { return pid_; }

  // Next value from the child; std::nullopt at EOF (the child exited or died).
  std::optional<uint64_t> receive();
  // Like receive(), but gives up after `timeout_ms` (std::nullopt then too).
  std::optional<uint64_t> receive_within(int timeout_ms);
  std::optional<std::string> receive_text();
  // False when the child is gone.
  bool send(uint64_t value);

  void kill(int signal);
  // Waits for the child; returns the raw wait status. Idempotent.
  int wait();
  // Waits and returns the exit code, or -signal when killed by a signal.
  int wait_exit_code();

 private:
  Child() = default;
  pid_t pid_ = -1;
  int from_child_ = -1;
  int to_child_ = -1;
  std::optional<int> status_;
};

// "exited 3", "killed by signal 9".
std::string describe_wait_status(int status);

}  // namespace eventsource::testing
