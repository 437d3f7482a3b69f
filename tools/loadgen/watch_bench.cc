#include "tools/loadgen/watch_bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "grpc/support/time.h"
#include "grpcpp/alarm.h"
#include "grpcpp/client_context.h"
#include "grpcpp/completion_queue.h"
#include "grpcpp/support/async_stream.h"
#include "grpcpp/support/status.h"
#include "jobline/v2/jobs.grpc.pb.h"
#include "jobline/v2/jobs.pb.h"
#include "jobline/v2/worker.grpc.pb.h"
#include "jobline/v2/worker.pb.h"
#include "tools/loadgen/methods.h"
#include "tools/loadgen/process_memory.h"

namespace jobline {
namespace loadgen {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kWorkerId[] = "jobline_watchbench";
// Most jobs one LeaseJobs call hands out.
constexpr int kLeaseBatch = 100;
// How long LeaseJobs waits for a job that is not pending yet.
constexpr int kLeaseWaitSeconds = 1;
// Leases last the longest the server allows, so that a slow opening of
// the streams cannot let them run out before the first update.
constexpr int kLeaseSeconds = 3600;

// Microseconds on the steady clock since shortly before the clock was
// made, so that every reading is positive.
class RunClock {
 public:
  RunClock() : epoch_(Clock::now() - std::chrono::seconds(1)) {}

  int64_t Now() const {
    return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() -
                                                                 epoch_)
        .count();
  }

 private:
  const Clock::time_point epoch_;
};

// "what: CODE: message" of a failed call.
std::string CallError(absl::string_view what, const grpc::Status& status) {
  return absl::StrCat(what, ": ", ErrorText(status));
}

absl::Status FromGrpc(absl::string_view what, const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(what, ": ", status.error_message()));
}

void SetDeadline(grpc::ClientContext& context, absl::Duration deadline) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
}

// The highest update number of a run: the updates of the window, then the
// final one.
int UpdatesPerJob(const WatchOptions& options) {
  const double in_window =
      std::ceil(options.update_hz * absl::ToDoubleSeconds(options.duration));
  return static_cast<int>(in_window) + 1;
}

// The stage update that sets the parameter to `update`. `status` unset
// (JOB_STATUS_UNSPECIFIED) keeps the stage's status.
void FillStage(int update, double progress, v2::JobStatus status,
               v2::StageUpdate* stage) {
  stage->set_name(kWatchStageName);
  if (status != v2::JOB_STATUS_UNSPECIFIED) stage->set_status(status);
  stage->set_progress(progress);
  v2::ParamUpdate* param = stage->add_params();
  param->set_name(kWatchParamName);
  param->mutable_value()->set_number_value(update);
}

// The parameter's value in `job`, or -1 when the job has none.
int UpdateOf(const v2::Job& job) {
  for (const v2::ProgressStage& stage : job.progress().stages()) {
    if (stage.key() != kWatchStageKey) continue;
    for (const v2::StageParam& param : stage.params()) {
      if (param.key() == kWatchParamKey) {
        return static_cast<int>(param.value().number_value());
      }
    }
  }
  return -1;
}

// ---- Setup ------------------------------------------------------------------

struct BenchJob {
  int64_t id = 0;
  std::string lease_id;
};

// Creates, leases and starts the run's jobs (step 1 of the header).
absl::StatusOr<std::vector<BenchJob>> PrepareJobs(const Stubs& stubs,
                                                  const WatchOptions& options) {
  // The jobs, queued for a worker.
  std::vector<BenchJob> jobs;
  absl::flat_hash_map<int64_t, int> index_of;
  for (int i = 0; i < options.jobs; ++i) {
    v2::CreateJobRequest request;
    request.mutable_job()->set_name(absl::StrCat("Watch benchmark ", i + 1));
    request.mutable_job()->set_project_id(options.project_id);
    request.mutable_job()->set_job_type_key(std::string(kCycleJobType));
    request.set_start_now(true);
    grpc::ClientContext context;
    SetDeadline(context, options.deadline);
    v2::Job job;
    const grpc::Status status = stubs.jobs->CreateJob(&context, request, &job);
    if (!status.ok()) return FromGrpc("CreateJob", status);
    index_of[job.id()] = i;
    jobs.push_back({job.id(), ""});
  }

  // Leased, a batch a call.
  int leased = 0;
  while (leased < options.jobs) {
    v2::LeaseJobsRequest request;
    request.set_worker_id(kWorkerId);
    request.add_job_types(std::string(kCycleJobType));
    request.set_max_jobs(std::min(kLeaseBatch, options.jobs - leased));
    request.mutable_lease_duration()->set_seconds(kLeaseSeconds);
    request.mutable_wait()->set_seconds(kLeaseWaitSeconds);
    grpc::ClientContext context;
    SetDeadline(context, options.deadline);
    v2::LeaseJobsResponse response;
    const grpc::Status status =
        stubs.workers->LeaseJobs(&context, request, &response);
    if (!status.ok()) return FromGrpc("LeaseJobs", status);
    if (response.leases_size() == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "LeaseJobs leased nothing although ", options.jobs - leased,
          " jobs of this run are pending (does another worker lease ",
          kCycleJobType, "?)"));
    }
    for (const v2::Lease& lease : response.leases()) {
      auto it = index_of.find(lease.job().id());
      if (it == index_of.end()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "LeaseJobs handed out job ", lease.job().id(),
            ", which this run did not create: run against a server without "
            "other pending ",
            kCycleJobType, " jobs"));
      }
      jobs[it->second].lease_id = lease.lease_id();
      ++leased;
    }
  }

  // Each with its stage, at update 0.
  for (const BenchJob& job : jobs) {
    v2::ReportProgressRequest request;
    request.set_lease_id(job.lease_id);
    request.set_job_id(job.id);
    FillStage(0, 0.0, v2::STARTED, request.add_stages());
    request.mutable_lease_duration()->set_seconds(kLeaseSeconds);
    grpc::ClientContext context;
    SetDeadline(context, options.deadline);
    v2::ReportProgressResponse response;
    const grpc::Status status =
        stubs.workers->ReportProgress(&context, request, &response);
    if (!status.ok()) return FromGrpc("ReportProgress", status);
  }
  return jobs;
}

// ---- Watchers ---------------------------------------------------------------

// How many streams had their first message and how many ended, for the
// run's thread to wait on.
class WatchTally {
 public:
  void FirstMessage() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    ++opened_;
  }
  // A stream ended; `opened` tells whether it had its first message.
  void Ended(bool opened) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    ++ended_;
    if (!opened) ++ended_unopened_;
  }

  // Waits until each of `watchers` streams had its first message or
  // ended, at most `timeout`; returns the streams that had it.
  int AwaitOpen(int watchers, absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto all_open = [this, watchers]() {
      mu_.AssertReaderHeld();
      return opened_ + ended_unopened_ >= watchers;
    };
    mu_.AwaitWithTimeout(absl::Condition(&all_open), timeout);
    return opened_;
  }

  // Waits until `watchers` streams ended, at most `timeout` (forever for
  // absl::InfiniteDuration()); returns whether they all did.
  bool AwaitEnded(int watchers, absl::Duration timeout)
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto all_ended = [this, watchers]() {
      mu_.AssertReaderHeld();
      return ended_ >= watchers;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&all_ended), timeout);
  }

 private:
  absl::Mutex mu_;
  int opened_ ABSL_GUARDED_BY(mu_) = 0;
  int ended_ ABSL_GUARDED_BY(mu_) = 0;
  int ended_unopened_ ABSL_GUARDED_BY(mu_) = 0;
};

// What the watchers of one queue thread counted.
struct WatcherStats {
  LatencyHistogram delay;
  int64_t messages = 0;
  int64_t updates_delivered = 0;
  int64_t unstamped = 0;
};

// One completion queue, the thread that polls it and the figures of its
// watchers. Everything but the constructor runs on the thread.
class WatcherThread {
 public:
  WatcherThread(const UpdateLedger* ledger, const RunClock* clock,
                WatchTally* tally)
      : ledger_(ledger), clock_(clock), tally_(tally) {}

  WatcherThread(const WatcherThread&) = delete;
  WatcherThread& operator=(const WatcherThread&) = delete;

  grpc::CompletionQueue* queue() { return &queue_; }
  const UpdateLedger& ledger() const { return *ledger_; }
  const RunClock& clock() const { return *clock_; }
  WatchTally& tally() { return *tally_; }
  WatcherStats& stats() { return stats_; }

  // Polls the queue until it is shut down and drained.
  void Run();

 private:
  const UpdateLedger* const ledger_;
  const RunClock* const clock_;
  WatchTally* const tally_;
  grpc::CompletionQueue queue_;
  WatcherStats stats_;
};

// One WatchProgress stream. It is its own completion-queue tag: one
// operation at a time is in flight (start, then each read, then finish),
// and each event runs OnEvent on the queue's thread.
class Watcher {
 public:
  // `job` is the job's index in the run. Not owned: `stubs` and `thread`.
  Watcher(int job, int64_t job_id, const Stubs* stubs, WatcherThread* thread)
      : job_(job), job_id_(job_id), stubs_(stubs), thread_(thread) {}

  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  // Starts the stream; its events go to the thread's queue.
  void Start() {
    v2::WatchProgressRequest request;
    request.set_job_id(job_id_);
    reader_ = stubs_->jobs->PrepareAsyncWatchProgress(&context_, request,
                                                      thread_->queue());
    reader_->StartCall(this);
  }

  // Ends the stream early (it then finishes with CANCELLED). Safe from
  // any thread, also after the stream ended.
  void Cancel() { context_.TryCancel(); }

  void OnEvent(bool ok) {
    switch (state_) {
      case State::kStarting:
      case State::kReading:
        if (state_ == State::kReading && ok) OnMessage();
        if (ok) {
          state_ = State::kReading;
          reader_->Read(&response_, this);
        } else {
          // The stream is over (or never started): its status says how.
          state_ = State::kFinishing;
          reader_->Finish(&status_, this);
        }
        return;
      case State::kFinishing:
        state_ = State::kEnded;
        thread_->tally().Ended(last_update_ >= 0);
        return;
      case State::kEnded:
        return;
    }
  }

  // After the stream ended.
  bool got_final() const { return got_final_; }
  const grpc::Status& status() const { return status_; }

 private:
  enum class State { kStarting, kReading, kFinishing, kEnded };

  void OnMessage() {
    const int64_t now = thread_->clock().Now();
    WatcherStats& stats = thread_->stats();
    ++stats.messages;
    const v2::Job& job = response_.job();
    const int update = UpdateOf(job);
    if (last_update_ < 0) {
      // The snapshot: what the job was when the stream opened.
      last_update_ = std::max(update, 0);
      thread_->tally().FirstMessage();
    } else if (update > last_update_) {
      stats.updates_delivered += update - last_update_;
      stats.unstamped += thread_->ledger().RecordDelivered(
          job_, last_update_, update, now, &stats.delay);
      last_update_ = update;
    }
    if (job.status() == v2::SUCCESS) got_final_ = true;
  }

  const int job_;
  const int64_t job_id_;
  const Stubs* const stubs_;
  WatcherThread* const thread_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientAsyncReader<v2::WatchProgressResponse>> reader_;
  v2::WatchProgressResponse response_;
  grpc::Status status_;
  State state_ = State::kStarting;
  // The update of the last message; -1 until the first one.
  int last_update_ = -1;
  bool got_final_ = false;
};

void WatcherThread::Run() {
  void* tag = nullptr;
  bool ok = false;
  while (queue_.Next(&tag, &ok)) static_cast<Watcher*>(tag)->OnEvent(ok);
}

// ---- Writer -----------------------------------------------------------------

// A completion-queue tag that runs a function when its alarm goes off.
class AlarmTag final : public Tag {
 public:
  explicit AlarmTag(std::function<void()> then) : then_(std::move(then)) {}

  // Posts this tag to `queue` `delay_us` microseconds from now (at once
  // for a delay <= 0). From then on the queue owns the tag.
  void Arm(grpc::CompletionQueue* queue, int64_t delay_us) {
    const gpr_timespec at = gpr_time_add(
        gpr_now(GPR_CLOCK_MONOTONIC),
        gpr_time_from_micros(std::max<int64_t>(delay_us, 0), GPR_TIMESPAN));
    alarm_.Set(queue, at, this);
  }

  // The alarm is never cancelled, so `ok` is always true.
  void Complete(bool /*ok*/) override { then_(); }

 private:
  grpc::Alarm alarm_;
  const std::function<void()> then_;
};

// The writer of steps 3 and 4 of the header. Everything but the
// constructor and the accessors of the figures runs on the thread that
// calls Run(); the figures are read after Run() returned.
class Writer {
 public:
  // Not owned: `stubs`, `jobs`, `ledger` and `clock` outlive the writer.
  // `at_window_end` runs on the writer's thread once the last update of
  // the window was answered, before the jobs are finished.
  Writer(const Stubs* stubs, const WatchOptions& options,
         const std::vector<BenchJob>* jobs, UpdateLedger* ledger,
         const RunClock* clock, std::function<void()> at_window_end)
      : options_(options),
        jobs_(*jobs),
        ledger_(ledger),
        clock_(clock),
        at_window_end_(std::move(at_window_end)),
        caller_(stubs, &queue_, options.deadline),
        next_update_(jobs->size(), 1),
        period_us_(1e6 / options.update_hz) {}

  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // Runs the window from now and the finishes; returns when every call
  // ended.
  void Run() {
    start_us_ = clock_->Now();
    end_us_ = start_us_ + absl::ToInt64Microseconds(options_.duration);
    for (size_t job = 0; job < jobs_.size(); ++job) Schedule(job);
    void* tag = nullptr;
    bool ok = false;
    while (queue_.Next(&tag, &ok)) {
      std::unique_ptr<Tag> event(static_cast<Tag*>(tag));
      event->Complete(ok);
    }
  }

  int64_t updates() const { return updates_; }
  int64_t update_errors() const { return update_errors_; }
  int64_t finish_errors() const { return finish_errors_; }
  const LatencyHistogram& write_latency() const { return write_latency_; }
  const std::string& first_error() const { return first_error_; }

 private:
  // When update `update` of job `job` is due: the jobs' updates are spread
  // evenly over each period.
  int64_t DueAt(size_t job, int update) const {
    const double offset =
        (update - 1 + static_cast<double>(job) / jobs_.size()) * period_us_;
    return start_us_ + static_cast<int64_t>(offset);
  }

  // Arms the job's next update, or retires the job when the update falls
  // after the window or the window is over (a writer that fell behind
  // does not catch up after it).
  void Schedule(size_t job) {
    const int update = next_update_[job];
    const int64_t due = DueAt(job, update);
    const int64_t now = clock_->Now();
    if (due >= end_us_ || now >= end_us_ ||
        update >= ledger_->updates_per_job()) {
      Retire();
      return;
    }
    auto alarm = std::make_unique<AlarmTag>([this, job] { SendUpdate(job); });
    alarm.release()->Arm(&queue_, due - now);
  }

  // A job is done with its updates; after the last one, the window ends.
  void Retire() {
    if (++jobs_done_ == static_cast<int>(jobs_.size())) {
      at_window_end_();
      FinishAll();
    }
  }

  // Sends the job's next update, unless its alarm went off after the
  // window (a busy queue thread).
  void SendUpdate(size_t job) {
    if (clock_->Now() >= end_us_) {
      Retire();
      return;
    }
    const int update = next_update_[job]++;
    v2::ReportProgressRequest request;
    request.set_lease_id(jobs_[job].lease_id);
    request.set_job_id(jobs_[job].id);
    const double progress =
        static_cast<double>(update) / (ledger_->updates_per_job() + 1);
    FillStage(update, progress, v2::JOB_STATUS_UNSPECIFIED,
              request.add_stages());
    request.mutable_lease_duration()->set_seconds(kLeaseSeconds);
    const int64_t sent = clock_->Now();
    ledger_->Stamp(static_cast<int>(job), update, sent);
    caller_.Unary(caller_.workers(),
                  &v2::WorkerService::Stub::PrepareAsyncReportProgress, request,
                  [this, job, sent](const grpc::Status& status,
                                    v2::ReportProgressResponse&) {
                    write_latency_.Record(clock_->Now() - sent);
                    if (status.ok()) {
                      ++updates_;
                    } else {
                      ++update_errors_;
                      NoteError("ReportProgress", status);
                    }
                    Schedule(job);
                  });
  }

  // Finishes every job with SUCCESS, its stage complete and the parameter
  // one past the last update; shuts the queue down after the last answer.
  void FinishAll() {
    for (size_t job = 0; job < jobs_.size(); ++job) {
      const int update = next_update_[job];
      v2::FinishJobRequest request;
      request.set_lease_id(jobs_[job].lease_id);
      request.set_job_id(jobs_[job].id);
      request.set_status(v2::SUCCESS);
      FillStage(update, 1.0, v2::SUCCESS, request.add_stages());
      ledger_->Stamp(static_cast<int>(job), update, clock_->Now());
      caller_.Unary(caller_.workers(),
                    &v2::WorkerService::Stub::PrepareAsyncFinishJob, request,
                    [this](const grpc::Status& status, v2::FinishJobResponse&) {
                      if (!status.ok()) {
                        ++finish_errors_;
                        NoteError("FinishJob", status);
                      }
                      if (++jobs_finished_ == static_cast<int>(jobs_.size())) {
                        queue_.Shutdown();
                      }
                    });
    }
  }

  void NoteError(absl::string_view what, const grpc::Status& status) {
    if (first_error_.empty()) first_error_ = CallError(what, status);
  }

  const WatchOptions& options_;
  const std::vector<BenchJob>& jobs_;
  UpdateLedger* const ledger_;
  const RunClock* const clock_;
  const std::function<void()> at_window_end_;
  grpc::CompletionQueue queue_;
  const Caller caller_;
  // The number of each job's next update.
  std::vector<int> next_update_;
  const double period_us_;
  int64_t start_us_ = 0;
  int64_t end_us_ = 0;
  int jobs_done_ = 0;
  int jobs_finished_ = 0;

  int64_t updates_ = 0;
  int64_t update_errors_ = 0;
  int64_t finish_errors_ = 0;
  LatencyHistogram write_latency_;
  std::string first_error_;
};

// The server's VmRSS, or unset when not measured or unreadable (then
// `problem` says why, unless it already holds a problem).
absl::optional<int64_t> ServerRss(pid_t pid, std::string* problem) {
  if (pid == 0) return absl::nullopt;
  absl::StatusOr<int64_t> kib = ReadVmRssKib(pid);
  if (!kib.ok()) {
    if (problem->empty()) {
      *problem = absl::StrCat("server memory: ", kib.status().ToString());
    }
    return absl::nullopt;
  }
  return *kib;
}

void Step(const WatchOptions& options, absl::string_view text) {
  if (options.on_step) options.on_step(text);
}

}  // namespace

// ---- UpdateLedger -----------------------------------------------------------

UpdateLedger::UpdateLedger(int jobs, int updates_per_job)
    : updates_per_job_(updates_per_job),
      stamps_(new std::atomic<int64_t>[static_cast<size_t>(jobs) *
                                       (updates_per_job + 1)]) {
  const size_t size = static_cast<size_t>(jobs) * (updates_per_job + 1);
  for (size_t i = 0; i < size; ++i) {
    stamps_[i].store(0, std::memory_order_relaxed);
  }
}

void UpdateLedger::Stamp(int job, int update, int64_t micros) {
  stamps_[static_cast<size_t>(job) * (updates_per_job_ + 1) + update].store(
      micros, std::memory_order_release);
}

int64_t UpdateLedger::Sent(int job, int update) const {
  if (update < 0 || update > updates_per_job_) return 0;
  return stamps_[static_cast<size_t>(job) * (updates_per_job_ + 1) + update]
      .load(std::memory_order_acquire);
}

int UpdateLedger::RecordDelivered(int job, int after, int upto,
                                  int64_t delivered,
                                  LatencyHistogram* delay) const {
  int unstamped = 0;
  for (int update = after + 1; update <= upto; ++update) {
    const int64_t sent = Sent(job, update);
    if (sent == 0) {
      ++unstamped;
    } else {
      delay->Record(delivered - sent);
    }
  }
  return unstamped;
}

// ---- WatchResult ------------------------------------------------------------

double WatchResult::updates_per_second(absl::Duration duration) const {
  const double seconds = absl::ToDoubleSeconds(duration);
  return seconds > 0 ? static_cast<double>(updates) / seconds : 0.0;
}

absl::optional<double> WatchResult::kib_per_watcher(int watchers) const {
  if (!rss_before_kib.has_value() || !rss_open_kib.has_value() ||
      watchers <= 0) {
    return absl::nullopt;
  }
  return static_cast<double>(*rss_open_kib - *rss_before_kib) / watchers;
}

// ---- The run ----------------------------------------------------------------

absl::StatusOr<WatchResult> RunWatchBench(
    const WatchOptions& options,
    absl::Span<const std::unique_ptr<Stubs>> watch_stubs,
    const Stubs& writer_stubs) {
  const RunClock clock;
  WatchResult result;
  std::string& memory_problem = result.memory_problem;

  // 1. The jobs.
  Step(options, absl::StrCat("creating and leasing ", options.jobs, " jobs"));
  absl::StatusOr<std::vector<BenchJob>> jobs =
      PrepareJobs(writer_stubs, options);
  if (!jobs.ok()) return jobs.status();
  UpdateLedger ledger(options.jobs, UpdatesPerJob(options));
  result.rss_before_kib = ServerRss(options.server_pid, &memory_problem);

  // 2. The streams, each with its first message.
  WatchTally tally;
  std::vector<std::unique_ptr<WatcherThread>> queue_threads;
  std::vector<std::thread> threads;
  for (int i = 0; i < options.threads; ++i) {
    queue_threads.push_back(
        std::make_unique<WatcherThread>(&ledger, &clock, &tally));
    threads.emplace_back(
        [thread = queue_threads.back().get()] { thread->Run(); });
  }
  std::vector<std::unique_ptr<Watcher>> watchers;
  watchers.reserve(options.watchers);
  for (int i = 0; i < options.watchers; ++i) {
    const int job = i % options.jobs;
    watchers.push_back(std::make_unique<Watcher>(
        job, (*jobs)[job].id, watch_stubs[i % watch_stubs.size()].get(),
        queue_threads[i % options.threads].get()));
  }
  Step(options, absl::StrCat("opening ", options.watchers, " streams"));
  const int64_t open_start = clock.Now();
  for (const std::unique_ptr<Watcher>& watcher : watchers) watcher->Start();
  result.opened = tally.AwaitOpen(options.watchers, options.open_timeout);
  result.open_seconds = (clock.Now() - open_start) / 1e6;
  result.rss_open_kib = ServerRss(options.server_pid, &memory_problem);
  Step(options,
       absl::StrFormat("%d of %d streams open after %.2f s; updating %d jobs "
                       "%g times a second for %g s",
                       result.opened, options.watchers, result.open_seconds,
                       options.jobs, options.update_hz,
                       absl::ToDoubleSeconds(options.duration)));

  // 3 and 4. The updates and the finishes.
  Writer writer(&writer_stubs, options, &*jobs, &ledger, &clock,
                [&result, &options, &memory_problem] {
                  result.rss_end_kib =
                      ServerRss(options.server_pid, &memory_problem);
                  Step(options,
                       "the updates are over; finishing the jobs and waiting "
                       "for every stream to end");
                });
  writer.Run();

  // Every stream's end; those that outlive the timeout are cancelled.
  if (!tally.AwaitEnded(options.watchers, options.final_timeout)) {
    for (const std::unique_ptr<Watcher>& watcher : watchers) {
      watcher->Cancel();
    }
    tally.AwaitEnded(options.watchers, absl::InfiniteDuration());
  }
  for (const std::unique_ptr<WatcherThread>& thread : queue_threads) {
    thread->queue()->Shutdown();
  }
  for (std::thread& thread : threads) thread.join();

  // The figures.
  result.updates = writer.updates();
  result.update_errors = writer.update_errors();
  result.finish_errors = writer.finish_errors();
  result.write_latency = writer.write_latency();
  result.first_error = writer.first_error();
  for (const std::unique_ptr<WatcherThread>& thread : queue_threads) {
    const WatcherStats& stats = thread->stats();
    result.delay.Merge(stats.delay);
    result.messages += stats.messages;
    result.updates_delivered += stats.updates_delivered;
    result.unstamped += stats.unstamped;
  }
  for (const std::unique_ptr<Watcher>& watcher : watchers) {
    if (!watcher->got_final()) ++result.missing_final;
    if (!watcher->status().ok()) {
      ++result.stream_errors;
      ++result.stream_errors_by_code[CodeName(watcher->status().error_code())];
      if (result.first_error.empty()) {
        result.first_error = CallError("WatchProgress", watcher->status());
      }
    }
  }
  return result;
}

}  // namespace loadgen
}  // namespace jobline
