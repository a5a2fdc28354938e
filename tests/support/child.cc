// Child: fork + two pipes, exact reads and writes with EINTR retry, and
// cleanup that kills and reaps whatever a failed test left running.
#include "tests/support/child.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace eventsource::testing {
namespace {

// True when all `n` bytes were written.
bool write_all(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// True when all `n` bytes were read; false at EOF or error.
bool read_all(int fd, void* data, size_t n) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    ssize_t r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

}  // namespace

void ChildPipes::send(uint64_t value) const {
  if (!write_all(to_parent, &value, sizeof value)) _exit(120);
}

uint64_t ChildPipes::receive() const {
  uint64_t value = 0;
  if (!read_all(from_parent, &value, sizeof value)) _exit(120);
  return value;
}

void ChildPipes::send_text(const std::string& text) const {
  send(text.size());
  if (!write_all(to_parent, text.data(), text.size())) _exit(120);
}

Child Child::spawn(const std::function<int(const ChildPipes&)>& body) {
  int up[2];
  int down[2];
  if (::pipe2(up, O_CLOEXEC) != 0 || ::pipe2(down, O_CLOEXEC) != 0) {
    std::perror("pipe2");
    std::abort();
  }
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("fork");
    std::abort();
  }
  if (pid == 0) {
    ::close(up[0]);
    ::close(down[1]);
    // A parent that dies must not leave this child running forever.
    ::signal(SIGPIPE, SIG_DFL);
    int code = 99;
    try {
      code = body(ChildPipes{up[1], down[0]});
    } catch (...) {
      code = 99;
    }
    _exit(code);
  }
  ::close(up[1]);
  ::close(down[0]);
  Child child;
  child.pid_ = pid;
  child.from_child_ = up[0];
  child.to_child_ = down[1];
  return child;
}

Child::Child(Child&& other) noexcept
    : pid_(other.pid_),
      from_child_(other.from_child_),
      to_child_(other.to_child_),
      status_(other.status_) {
  other.pid_ = -1;
  other.from_child_ = -1;
  other.to_child_ = -1;
}

Child::~Child() {
  if (pid_ > 0 && !status_) {
    ::kill(pid_, SIGKILL);
    wait();
  }
  close_fd(from_child_);
  close_fd(to_child_);
}

std::optional<uint64_t> Child::receive() {
  uint64_t value = 0;
  if (!read_all(from_child_, &value, sizeof value)) return std::nullopt;
  return value;
}

std::optional<uint64_t> Child::receive_within(int timeout_ms) {
  struct pollfd pfd = {from_child_, POLLIN, 0};
  int r;
  do {
    r = ::poll(&pfd, 1, timeout_ms);
  } while (r < 0 && errno == EINTR);
  if (r <= 0) return std::nullopt;
  return receive();
}

std::optional<std::string> Child::receive_text() {
  std::optional<uint64_t> size = receive();
  if (!size || *size > (64u << 20)) return std::nullopt;
  std::string text(*size, '\0');
  if (!read_all(from_child_, text.data(), text.size())) return std::nullopt;
  return text;
}

bool Child::send(uint64_t value) {
  // A dead child must not kill the test with SIGPIPE.
  struct sigaction ignore = {};
  struct sigaction old = {};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ignore, &old);
  bool ok = write_all(to_child_, &value, sizeof value);
  ::sigaction(SIGPIPE, &old, nullptr);
  return ok;
}

void Child::kill(int signal) {
  if (pid_ > 0 && !status_) ::kill(pid_, signal);
}

int Child::wait() {
  if (status_) return *status_;
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, 0);
  } while (r < 0 && errno == EINTR);
  if (r < 0) {
    std::perror("waitpid");
    std::abort();
  }
  status_ = status;
  return status;
}

int Child::wait_exit_code() {
  int status = wait();
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return -1000;
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return "exited " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  }
  return "wait status " + std::to_string(status);
}

}  // namespace eventsource::testing
