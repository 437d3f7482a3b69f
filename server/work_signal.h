// WorkSignal: wakes threads that wait for jobs to change.
//
// Writers call Notify() after a commit that may give waiters something to
// do (a job enqueued, cancelled or returned to a queue). A waiter reads
// generation(), looks for work, and when it found none calls
// WaitForChange(seen, deadline), which returns as soon as a Notify() came
// after `seen` was read, so no notification between the look and the wait
// is lost.
//
// Thread safety: safe for concurrent use.

#ifndef JOBLINE_SERVER_WORK_SIGNAL_H_
#define JOBLINE_SERVER_WORK_SIGNAL_H_

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace jobline {

class WorkSignal {
 public:
  WorkSignal() = default;
  WorkSignal(const WorkSignal&) = delete;
  WorkSignal& operator=(const WorkSignal&) = delete;

  void Notify() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    ++generation_;
  }

  // Wakes every waiter for good: WaitForChange returns at once from now on.
  void Close() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    ++generation_;
  }

  uint64_t generation() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return generation_;
  }

  bool closed() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return closed_;
  }

  // Blocks until the generation differs from `seen`, the signal is closed
  // or `deadline` passes. Returns the current generation.
  uint64_t WaitForChange(uint64_t seen, absl::Time deadline)
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto changed = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return closed_ || generation_ != seen;
    };
    mu_.AwaitWithDeadline(absl::Condition(&changed), deadline);
    return generation_;
  }

 private:
  mutable absl::Mutex mu_;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace jobline

#endif  // JOBLINE_SERVER_WORK_SIGNAL_H_
