// ThreadSanitizer annotations for Debian's prebuilt Abseil Mutex.
//
// Jobline links Debian's libabsl_synchronization.so, which is not built
// with -fsanitize=thread: ThreadSanitizer cannot see that absl::Mutex
// orders memory, and would report every access guarded by one as a race.
// This file, linked into every binary of the tsan configuration
// (--custom_malloc in .bazelrc adds it to each cc_binary and cc_test),
// interposes the public locking functions of absl::Mutex and absl::CondVar:
// each calls the library's own function (found with dlsym(RTLD_NEXT)) and
// tells ThreadSanitizer that the mutex was acquired (after it is held) or
// released (before it is let go). Conditions, which Abseil evaluates with
// the mutex held on whichever thread, acquire it before they run. Calls from
// gRPC and from Abseil itself go through the dynamic linker too, so they are
// annotated as well.
//
// The mangled names are those of Debian 12's libabsl (inline namespace
// "debian3"); a missing one aborts at first use with its name.

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

extern "C" void __tsan_acquire(void* address);
extern "C" void __tsan_release(void* address);

namespace {

// The library's definition of the function named `mangled`.
template <typename Function>
Function Next(const char* mangled) {
  void* symbol = dlsym(RTLD_NEXT, mangled);
  if (symbol == nullptr) {
    std::fprintf(stderr, "tsan_absl_mutex: %s not found\n", mangled);
    std::abort();
  }
  return reinterpret_cast<Function>(symbol);
}

// A condition evaluated by Abseil with the mutex held, but inside the
// library where no annotation sees it: the wrapper tells ThreadSanitizer
// that the mutex was acquired before it evaluates the caller's condition.
struct AnnotatedCondition {
  void* mutex;
  const absl::Condition* condition;

  // Acquires before, and releases after: a thread whose condition is
  // false lets the mutex go inside the library, unseen. The evaluating
  // thread may not be the waiter, whose stack holds `arg` and the
  // condition it wraps: the waiter released `arg` once both were built,
  // and this acquires it before reading them.
  static bool Evaluate(void* arg) {
    AnnotatedCondition* const self = static_cast<AnnotatedCondition*>(arg);
    __tsan_acquire(self);
    __tsan_acquire(self->mutex);
    const bool met = self->condition->Eval();
    __tsan_release(self->mutex);
    return met;
  }
};

// A condition that annotates `condition` (of `mutex`), kept in `storage`.
absl::Condition Annotate(void* mutex, const absl::Condition& condition,
                         AnnotatedCondition* storage) {
  *storage = AnnotatedCondition{mutex, &condition};
  __tsan_release(storage);
  // The void* form: the library's own (uninstrumented) code reads the
  // returned condition; a template form would read it in this file, before
  // Evaluate() could acquire.
  return absl::Condition(&AnnotatedCondition::Evaluate,
                         static_cast<void*>(storage));
}

}  // namespace

// Each function below keeps the library's one in a function-local static.
#define JOBLINE_NEXT(type, mangled) static const auto next = Next<type>(mangled)

namespace absl {
ABSL_NAMESPACE_BEGIN

// ---- Acquiring ----

void Mutex::Lock() {
  JOBLINE_NEXT(void (*)(Mutex*), "_ZN4absl7debian35Mutex4LockEv");
  next(this);
  __tsan_acquire(this);
}

void Mutex::ReaderLock() {
  JOBLINE_NEXT(void (*)(Mutex*), "_ZN4absl7debian35Mutex10ReaderLockEv");
  next(this);
  __tsan_acquire(this);
}

bool Mutex::TryLock() {
  JOBLINE_NEXT(bool (*)(Mutex*), "_ZN4absl7debian35Mutex7TryLockEv");
  const bool locked = next(this);
  if (locked) __tsan_acquire(this);
  return locked;
}

bool Mutex::ReaderTryLock() {
  JOBLINE_NEXT(bool (*)(Mutex*), "_ZN4absl7debian35Mutex13ReaderTryLockEv");
  const bool locked = next(this);
  if (locked) __tsan_acquire(this);
  return locked;
}

void Mutex::LockWhen(const Condition& condition) {
  JOBLINE_NEXT(void (*)(Mutex*, const Condition&),
               "_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE");
  AnnotatedCondition annotated;
  next(this, Annotate(this, condition, &annotated));
  __tsan_acquire(this);
}

void Mutex::ReaderLockWhen(const Condition& condition) {
  JOBLINE_NEXT(void (*)(Mutex*, const Condition&),
               "_ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE");
  AnnotatedCondition annotated;
  next(this, Annotate(this, condition, &annotated));
  __tsan_acquire(this);
}

// The lock is held on return whether or not the condition became true.
bool Mutex::LockWhenWithTimeout(const Condition& condition,
                                absl::Duration timeout) {
  JOBLINE_NEXT(
      bool (*)(Mutex*, const Condition&, absl::Duration),
      "_ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_"
      "8DurationE");
  AnnotatedCondition annotated;
  const bool met = next(this, Annotate(this, condition, &annotated), timeout);
  __tsan_acquire(this);
  return met;
}

bool Mutex::LockWhenWithDeadline(const Condition& condition,
                                 absl::Time deadline) {
  JOBLINE_NEXT(
      bool (*)(Mutex*, const Condition&, absl::Time),
      "_ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_"
      "4TimeE");
  AnnotatedCondition annotated;
  const bool met = next(this, Annotate(this, condition, &annotated), deadline);
  __tsan_acquire(this);
  return met;
}

bool Mutex::ReaderLockWhenWithTimeout(const Condition& condition,
                                      absl::Duration timeout) {
  JOBLINE_NEXT(bool (*)(Mutex*, const Condition&, absl::Duration),
               "_ZN4absl7debian35Mutex25ReaderLockWhenWithTimeoutERKNS0_"
               "9ConditionENS0_8DurationE");
  AnnotatedCondition annotated;
  const bool met = next(this, Annotate(this, condition, &annotated), timeout);
  __tsan_acquire(this);
  return met;
}

bool Mutex::ReaderLockWhenWithDeadline(const Condition& condition,
                                       absl::Time deadline) {
  JOBLINE_NEXT(bool (*)(Mutex*, const Condition&, absl::Time),
               "_ZN4absl7debian35Mutex26ReaderLockWhenWithDeadlineERKNS0_"
               "9ConditionENS0_4TimeE");
  AnnotatedCondition annotated;
  const bool met = next(this, Annotate(this, condition, &annotated), deadline);
  __tsan_acquire(this);
  return met;
}

// ---- Releasing ----

void Mutex::Unlock() {
  JOBLINE_NEXT(void (*)(Mutex*), "_ZN4absl7debian35Mutex6UnlockEv");
  __tsan_release(this);
  next(this);
}

void Mutex::ReaderUnlock() {
  JOBLINE_NEXT(void (*)(Mutex*), "_ZN4absl7debian35Mutex12ReaderUnlockEv");
  __tsan_release(this);
  next(this);
}

// ---- Waiting: the lock is let go and taken again ----

void Mutex::Await(const Condition& condition) {
  JOBLINE_NEXT(void (*)(Mutex*, const Condition&),
               "_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE");
  __tsan_release(this);
  AnnotatedCondition annotated;
  next(this, Annotate(this, condition, &annotated));
  __tsan_acquire(this);
}

bool Mutex::AwaitWithTimeout(const Condition& condition,
                             absl::Duration timeout) {
  JOBLINE_NEXT(bool (*)(Mutex*, const Condition&, absl::Duration),
               "_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_"
               "8DurationE");
  __tsan_release(this);
  AnnotatedCondition annotated;
  const bool met = next(this, Annotate(this, condition, &annotated), timeout);
  __tsan_acquire(this);
  return met;
}

bool Mutex::AwaitWithDeadline(const Condition& condition, absl::Time deadline) {
  JOBLINE_NEXT(bool (*)(Mutex*, const Condition&, absl::Time),
               "_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_"
               "4TimeE");
  __tsan_release(this);
  AnnotatedCondition annotated;
  const bool met = next(this, Annotate(this, condition, &annotated), deadline);
  __tsan_acquire(this);
  return met;
}

void CondVar::Wait(Mutex* mutex) {
  JOBLINE_NEXT(void (*)(CondVar*, Mutex*),
               "_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE");
  __tsan_release(mutex);
  next(this, mutex);
  __tsan_acquire(mutex);
}

bool CondVar::WaitWithTimeout(Mutex* mutex, absl::Duration timeout) {
  JOBLINE_NEXT(
      bool (*)(CondVar*, Mutex*, absl::Duration),
      "_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  __tsan_release(mutex);
  const bool timed_out = next(this, mutex, timeout);
  __tsan_acquire(mutex);
  return timed_out;
}

bool CondVar::WaitWithDeadline(Mutex* mutex, absl::Time deadline) {
  JOBLINE_NEXT(
      bool (*)(CondVar*, Mutex*, absl::Time),
      "_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  __tsan_release(mutex);
  const bool timed_out = next(this, mutex, deadline);
  __tsan_acquire(mutex);
  return timed_out;
}

// ---- Notification: Notify happens before a wait that returns ----

void Notification::Notify() {
  JOBLINE_NEXT(void (*)(Notification*),
               "_ZN4absl7debian312Notification6NotifyEv");
  __tsan_release(this);
  next(this);
}

void Notification::WaitForNotification() const {
  JOBLINE_NEXT(void (*)(const Notification*),
               "_ZNK4absl7debian312Notification19WaitForNotificationEv");
  next(this);
  __tsan_acquire(const_cast<Notification*>(this));
}

bool Notification::WaitForNotificationWithTimeout(
    absl::Duration timeout) const {
  JOBLINE_NEXT(bool (*)(const Notification*, absl::Duration),
               "_ZNK4absl7debian312Notification30WaitForNotificationWithTimeou"
               "tENS0_8DurationE");
  const bool notified = next(this, timeout);
  if (notified) __tsan_acquire(const_cast<Notification*>(this));
  return notified;
}

bool Notification::WaitForNotificationWithDeadline(absl::Time deadline) const {
  JOBLINE_NEXT(bool (*)(const Notification*, absl::Time),
               "_ZNK4absl7debian312Notification31WaitForNotificationWithDeadli"
               "neENS0_4TimeE");
  const bool notified = next(this, deadline);
  if (notified) __tsan_acquire(const_cast<Notification*>(this));
  return notified;
}

ABSL_NAMESPACE_END
}  // namespace absl
