// Mutexes with clang's thread-safety annotations, so the compiler checks
// which lock guards which field (-Wthread-safety, a clang CI stage). After
// LevelDB's port/thread_annotations.h and port::Mutex. With other compilers
// the annotations compile to nothing.
#pragma once

#include <condition_variable>
#include <mutex>
#include <shared_mutex>

#if defined(__clang__)
#define EVENTSOURCE_TSA(x) __attribute__((x))
#else
#define EVENTSOURCE_TSA(x)
#endif

#define EVENTSOURCE_CAPABILITY(x) EVENTSOURCE_TSA(capability(x))
#define EVENTSOURCE_SCOPED_CAPABILITY EVENTSOURCE_TSA(scoped_lockable)
#define EVENTSOURCE_GUARDED_BY(x) EVENTSOURCE_TSA(guarded_by(x))
#define EVENTSOURCE_PT_GUARDED_BY(x) EVENTSOURCE_TSA(pt_guarded_by(x))
#define EVENTSOURCE_ACQUIRED_BEFORE(...) EVENTSOURCE_TSA(acquired_before(__VA_ARGS__))
#define EVENTSOURCE_REQUIRES(...) EVENTSOURCE_TSA(requires_capability(__VA_ARGS__))
#define EVENTSOURCE_REQUIRES_SHARED(...) EVENTSOURCE_TSA(requires_shared_capability(__VA_ARGS__))
#define EVENTSOURCE_EXCLUDES(...) EVENTSOURCE_TSA(locks_excluded(__VA_ARGS__))
#define EVENTSOURCE_ACQUIRE(...) EVENTSOURCE_TSA(acquire_capability(__VA_ARGS__))
#define EVENTSOURCE_ACQUIRE_SHARED(...) EVENTSOURCE_TSA(acquire_shared_capability(__VA_ARGS__))
#define EVENTSOURCE_RELEASE(...) EVENTSOURCE_TSA(release_capability(__VA_ARGS__))
#define EVENTSOURCE_RELEASE_SHARED(...) EVENTSOURCE_TSA(release_shared_capability(__VA_ARGS__))
#define EVENTSOURCE_ASSERT_HELD(...) EVENTSOURCE_TSA(assert_capability(__VA_ARGS__))
#define EVENTSOURCE_NO_THREAD_SAFETY_ANALYSIS EVENTSOURCE_TSA(no_thread_safety_analysis)

namespace eventsource {

class CondVar;

class EVENTSOURCE_CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() EVENTSOURCE_ACQUIRE() { mu_.lock(); }
  void unlock() EVENTSOURCE_RELEASE() { mu_.unlock(); }
  // Tells the analysis the caller holds the mutex (where it cannot see it).
  void assert_held() const EVENTSOURCE_ASSERT_HELD() {}

 private:
  friend class CondVar;
  std::mutex mu_;
};

class EVENTSOURCE_CAPABILITY("shared mutex") SharedMutex {
 public:
  SharedMutex() = default;
  SharedMutex(const SharedMutex&) = delete;
  SharedMutex& operator=(const SharedMutex&) = delete;

  void lock() EVENTSOURCE_ACQUIRE() { mu_.lock(); }
  void unlock() EVENTSOURCE_RELEASE() { mu_.unlock(); }
  void lock_shared() EVENTSOURCE_ACQUIRE_SHARED() { mu_.lock_shared(); }
  void unlock_shared() EVENTSOURCE_RELEASE_SHARED() { mu_.unlock_shared(); }

 private:
  std::shared_mutex mu_;
};

// Holds `mu` for its scope; unlock()/lock() let a caller drop it for a
// while (e.g. around a slow syscall).
class EVENTSOURCE_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) EVENTSOURCE_ACQUIRE(mu) : mu_(mu) { mu_->lock(); }
  ~MutexLock() EVENTSOURCE_RELEASE() {
    if (held_) mu_->unlock();
  }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  void unlock() EVENTSOURCE_RELEASE() {
    mu_->unlock();
    held_ = false;
  }
  void lock() EVENTSOURCE_ACQUIRE() {
    mu_->lock();
    held_ = true;
  }

 private:
  friend class CondVar;
  Mutex* mu_;
  bool held_ = true;
};

class EVENTSOURCE_SCOPED_CAPABILITY ReaderLock {
 public:
  explicit ReaderLock(SharedMutex* mu) EVENTSOURCE_ACQUIRE_SHARED(mu) : mu_(mu) {
    mu_->lock_shared();
  }
  ~ReaderLock() EVENTSOURCE_RELEASE() { mu_->unlock_shared(); }
  ReaderLock(const ReaderLock&) = delete;
  ReaderLock& operator=(const ReaderLock&) = delete;

 private:
  SharedMutex* mu_;
};

class EVENTSOURCE_SCOPED_CAPABILITY WriterLock {
 public:
  explicit WriterLock(SharedMutex* mu) EVENTSOURCE_ACQUIRE(mu) : mu_(mu) { mu_->lock(); }
  ~WriterLock() EVENTSOURCE_RELEASE() { mu_->unlock(); }
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  SharedMutex* mu_;
};

// A condition variable over a Mutex held by a MutexLock.
class CondVar {
 public:
  // REQUIRES: `lock` holds its mutex. Returns with it held again.
  void wait(MutexLock& lock) {
    std::unique_lock<std::mutex> native(lock.mu_->mu_, std::adopt_lock);
    cv_.wait(native);
    native.release();
  }
  void notify_all() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace eventsource
