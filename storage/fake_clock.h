// FakeClock: a Clock for tests that moves only when told to.
//
// Thread safety: safe for concurrent use (the runner's threads read it while
// a test advances it).

#ifndef JOBLINE_STORAGE_FAKE_CLOCK_H_
#define JOBLINE_STORAGE_FAKE_CLOCK_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "storage/job_store.h"

namespace jobline {

class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time now) : now_(now) {}

  absl::Time Now() override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return now_;
  }

  void Advance(absl::Duration duration) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    now_ += duration;
  }

  void Set(absl::Time now) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    now_ = now;
  }

 private:
  absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace jobline

#endif  // JOBLINE_STORAGE_FAKE_CLOCK_H_
