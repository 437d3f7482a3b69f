#include "tools/loadgen/load_generator.h"

#include <chrono>
#include <thread>
#include <utility>
#include <vector>

namespace jobline {
namespace loadgen {
namespace {

using Clock = std::chrono::steady_clock;

// When the measured window opens and closes.
struct Window {
  Clock::time_point start;
  Clock::time_point end;
};

// What one thread saw; merged into the LoadResult at the end.
struct ThreadStats {
  int64_t calls = 0;
  LatencyHistogram latency;
  int64_t errors = 0;
  std::map<std::string, int64_t> errors_by_code;
  int64_t warmup_errors = 0;
  std::string first_error;
  Clock::time_point first_error_at = Clock::time_point::max();
};

// One thread, its completion queue and its slots. Everything but the
// constructor and AddSlot runs on the thread, inside Run().
class QueueThread {
 public:
  QueueThread(const Window& window, const Operation& operation,
              absl::Duration deadline)
      : window_(window), operation_(operation), deadline_(deadline) {}

  QueueThread(const QueueThread&) = delete;
  QueueThread& operator=(const QueueThread&) = delete;

  // A slot whose calls go through `stubs` (not owned). Before Run() only.
  void AddSlot(const Stubs* stubs) {
    slots_.push_back(std::make_unique<Caller>(stubs, &queue_, deadline_));
  }

  // Starts every slot and polls the queue until the last operation has
  // ended after the window closed.
  void Run() {
    active_slots_ = static_cast<int>(slots_.size());
    if (active_slots_ == 0) queue_.Shutdown();
    for (const std::unique_ptr<Caller>& slot : slots_) StartOperation(*slot);
    void* tag = nullptr;
    bool ok = false;
    while (queue_.Next(&tag, &ok)) {
      std::unique_ptr<Tag> event(static_cast<Tag*>(tag));
      event->Complete(ok);
    }
  }

  const ThreadStats& stats() const { return stats_; }

 private:
  void StartOperation(const Caller& slot) {
    const Clock::time_point started = Clock::now();
    operation_(slot, [this, &slot, started](const grpc::Status& status) {
      OnOperationDone(slot, started, status);
    });
  }

  // Measures the operation that `slot` started at `started`, then starts
  // the next one or, after the window, retires the slot.
  void OnOperationDone(const Caller& slot, Clock::time_point started,
                       const grpc::Status& status) {
    const Clock::time_point now = Clock::now();
    if (!status.ok() && now < stats_.first_error_at) {
      stats_.first_error_at = now;
      stats_.first_error = ErrorText(status);
    }
    if (now < window_.start) {
      if (!status.ok()) ++stats_.warmup_errors;
    } else if (now <= window_.end) {
      if (status.ok()) {
        ++stats_.calls;
        stats_.latency.Record(
            std::chrono::duration_cast<std::chrono::microseconds>(now - started)
                .count());
      } else {
        ++stats_.errors;
        ++stats_.errors_by_code[CodeName(status.error_code())];
      }
    }

    if (now < window_.end) {
      StartOperation(slot);
    } else if (--active_slots_ == 0) {
      // No call is in flight any more: nothing else is posted to the queue.
      queue_.Shutdown();
    }
  }

  const Window& window_;
  const Operation& operation_;
  const absl::Duration deadline_;
  grpc::CompletionQueue queue_;
  std::vector<std::unique_ptr<Caller>> slots_;
  int active_slots_ = 0;
  ThreadStats stats_;
};

}  // namespace

double LoadResult::calls_per_second() const {
  const double seconds = absl::ToDoubleSeconds(duration);
  return seconds > 0 ? static_cast<double>(calls) / seconds : 0.0;
}

LoadResult RunLoad(const LoadOptions& options,
                   absl::Span<const std::unique_ptr<Stubs>> stubs,
                   const Operation& operation) {
  // The slots, dealt over the threads and the channels.
  const Clock::time_point now = Clock::now();
  Window window;
  window.start = now + absl::ToChronoNanoseconds(options.warmup);
  window.end = window.start + absl::ToChronoNanoseconds(options.duration);
  std::vector<std::unique_ptr<QueueThread>> queue_threads;
  for (int i = 0; i < options.threads; ++i) {
    queue_threads.push_back(
        std::make_unique<QueueThread>(window, operation, options.deadline));
  }
  for (int slot = 0; slot < options.concurrency; ++slot) {
    queue_threads[slot % options.threads]->AddSlot(
        stubs[slot % stubs.size()].get());
  }

  // The run.
  std::vector<std::thread> threads;
  for (const std::unique_ptr<QueueThread>& queue_thread : queue_threads) {
    threads.emplace_back([runner = queue_thread.get()] { runner->Run(); });
  }
  for (std::thread& thread : threads) thread.join();

  // The figures of every thread, together.
  LoadResult result;
  result.duration = options.duration;
  Clock::time_point first_error_at = Clock::time_point::max();
  for (const std::unique_ptr<QueueThread>& queue_thread : queue_threads) {
    const ThreadStats& stats = queue_thread->stats();
    result.calls += stats.calls;
    result.latency.Merge(stats.latency);
    result.errors += stats.errors;
    for (const auto& [code, count] : stats.errors_by_code) {
      result.errors_by_code[code] += count;
    }
    result.warmup_errors += stats.warmup_errors;
    if (stats.first_error_at < first_error_at) {
      first_error_at = stats.first_error_at;
      result.first_error = stats.first_error;
    }
  }
  return result;
}

}  // namespace loadgen
}  // namespace jobline
