// job_server: Jobline's server binary.
//
// Opens (creating and migrating it if needed) the SQLite database named by
// --db, loads the --seed_catalog file into a database it has just created,
// runs the built-in job runner (server/job_runner.h), and serves
// JobService, CatalogService, WorkerService and OperatorService over gRPC
// on --grpc_port, with gRPC's health service and server reflection, and the
// REST face (/api/v2/, server/rest/rest_server.h) on --http_port over the
// server's in-process channel. SIGTERM or
// SIGINT stops it: it refuses new calls, lets calls in flight finish for up to
// --shutdown_grace_seconds, closes the database and exits 0.
//
// Once serving it prints to stdout
//   jobline: serving gRPC on <host>:<port> (database <path>)
//   jobline: serving REST on <host>:<port>      (unless --http_port=0)
// with the gRPC port actually bound (so --grpc_port=0, any free port, can
// be found by a test).

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/catalog_file.h"
#include "gflags/gflags.h"
#include "glog/logging.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "jobline/v2/catalog.pb.h"
#include "server/decode_error_interceptor.h"
#include "server/job_manager.h"
#include "server/job_runner.h"
#include "server/job_service_impl.h"
#include "server/rest/rest_flags.h"
#include "server/rest/rest_server.h"
#include "server/watch_hub.h"
#include "server/work_signal.h"
#include "server/worker_protocol.h"
#include "storage/sqlite_job_store.h"
#include "storage/status_macros.h"

DEFINE_string(db, "data/jobline.db",
              "SQLite database file; created with its folder's permission "
              "if missing. \":memory:\" keeps everything in memory.");
DEFINE_string(host, "0.0.0.0", "Address the gRPC port listens on.");
DEFINE_int32(grpc_port, 50051, "gRPC port; 0 picks a free port.");
DEFINE_int32(http_port, 8000,
             "Port of the REST face (/api/v2/), on --host; 0 turns it off.");
DEFINE_string(time_zone, "UTC",
              "Time zone of the timestamps in job log lines (an IANA name, "
              "e.g. America/New_York).");
DEFINE_string(seed_catalog, "",
              "JSON file of reference records (jobline.v2.Catalog) loaded "
              "when the database is created; ignored for an existing one.");
DEFINE_int32(busy_timeout_ms, 5000,
             "How long a write waits for a busy database before it fails.");
DEFINE_string(synchronous, "full",
              "SQLite synchronous level: \"full\" (an acknowledged write "
              "survives power loss) or \"normal\" (it survives a crash of "
              "the process).");
DEFINE_int32(runner_threads, 4,
             "Threads that run built-in work (delay stages, jobs without a "
             "worker type) at once.");
DEFINE_int32(delay_step_ms, 1000,
             "How often a job's Delay stage advances (one step per second "
             "of delay).");
DEFINE_int32(max_attempts, 3,
             "Leases one run of a job may use; when the last one runs out "
             "the job fails.");
DEFINE_int32(reap_minutes, 10,
             "Jobs in a running status without an update for this many "
             "minutes are revoked by the stale-job reaper.");
DEFINE_int32(max_request_mb, 16,
             "Largest request the server accepts, in MiB (a catalogue "
             "import is one request).");
DEFINE_int32(max_watchers, 20000,
             "Open WatchProgress streams allowed in all; past it a new one is "
             "RESOURCE_EXHAUSTED.");
DEFINE_int32(max_watchers_per_job, 10000,
             "Open WatchProgress streams allowed on one job.");
DEFINE_int32(max_page_size, 10000,
             "Most jobs in one ListJobs page; a larger limit is "
             "RESOURCE_EXHAUSTED (REST 429).");
DEFINE_int32(max_report_lines, 1000, "Most log lines in one worker report.");
DEFINE_int32(max_log_message_kb, 64,
             "Largest log message a worker may send, in KiB.");
DEFINE_int32(shutdown_grace_seconds, 5,
             "On SIGTERM or SIGINT, how long calls in flight may take to "
             "finish.");
DEFINE_int32(grpc_min_pollers, 1,
             "Threads of the synchronous gRPC server that always wait for "
             "calls.");
DEFINE_int32(grpc_max_pollers, 64,
             "Most threads of the synchronous gRPC server that wait for "
             "calls; a thread that finishes a call while this many wait "
             "exits, and a new one is made for the next call. gRPC's own "
             "default, 2, made 600 to 1,000 threads a second at 64 calls in "
             "flight.");
DEFINE_int32(grpc_num_cqs, 1,
             "Completion queues of the synchronous gRPC server, each with its "
             "own pollers.");
DEFINE_bool(mutex_deadlock_detection, false,
            "Keep Abseil's lock-order checking on (Debian's Abseil turns it "
            "on by default: every lock, gRPC's own included, then updates a "
            "graph of lock orders: a tenth of a GetJob's instructions). A "
            "cycle found aborts the server with both stacks.");

namespace jobline {
namespace {

constexpr char kUsage[] =
    "Jobline's job server.\n"
    "Usage: job_server [--db=FILE] [--grpc_port=N] [--seed_catalog=FILE] "
    "...";

// Checks the flags that gflags cannot check by type.
absl::Status ValidateFlags() {
  auto port_ok = [](int port) { return port >= 0 && port <= 65535; };
  if (!port_ok(FLAGS_grpc_port)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--grpc_port must be 0 to 65535, not ", FLAGS_grpc_port));
  }
  if (!port_ok(FLAGS_http_port)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--http_port must be 0 to 65535, not ", FLAGS_http_port));
  }
  if (FLAGS_grpc_port != 0 && FLAGS_grpc_port == FLAGS_http_port) {
    return absl::InvalidArgumentError(
        "--grpc_port and --http_port must differ");
  }
  if (FLAGS_busy_timeout_ms < 0) {
    return absl::InvalidArgumentError("--busy_timeout_ms must not be negative");
  }
  if (FLAGS_runner_threads < 1 || FLAGS_runner_threads > 256) {
    return absl::InvalidArgumentError("--runner_threads must be 1 to 256");
  }
  if (FLAGS_delay_step_ms < 1) {
    return absl::InvalidArgumentError("--delay_step_ms must be positive");
  }
  if (FLAGS_max_attempts < 1) {
    return absl::InvalidArgumentError("--max_attempts must be positive");
  }
  if (FLAGS_reap_minutes < 1) {
    return absl::InvalidArgumentError("--reap_minutes must be positive");
  }
  if (FLAGS_max_request_mb < 1 || FLAGS_max_request_mb > 1024) {
    return absl::InvalidArgumentError("--max_request_mb must be 1 to 1024");
  }
  if (FLAGS_max_page_size < 1 || FLAGS_max_report_lines < 1 ||
      FLAGS_max_log_message_kb < 1 || FLAGS_max_log_message_kb > 16 * 1024) {
    return absl::InvalidArgumentError(
        "--max_page_size and --max_report_lines must be positive, "
        "--max_log_message_kb 1 to 16384");
  }
  if (FLAGS_max_watchers < 1 || FLAGS_max_watchers_per_job < 1) {
    return absl::InvalidArgumentError(
        "--max_watchers and --max_watchers_per_job must be positive");
  }
  if (absl::Status rest = rest::CheckRestFlags(); !rest.ok()) return rest;
  if (FLAGS_grpc_num_cqs < 1 || FLAGS_grpc_num_cqs > 64 ||
      FLAGS_grpc_min_pollers < 1 ||
      FLAGS_grpc_max_pollers < FLAGS_grpc_min_pollers ||
      FLAGS_grpc_max_pollers > 1024) {
    return absl::InvalidArgumentError(
        "--grpc_num_cqs must be 1 to 64, --grpc_min_pollers at least 1 and "
        "--grpc_max_pollers from --grpc_min_pollers to 1024");
  }
  if (FLAGS_shutdown_grace_seconds < 0) {
    return absl::InvalidArgumentError(
        "--shutdown_grace_seconds must not be negative");
  }
  const std::string synchronous = absl::AsciiStrToLower(FLAGS_synchronous);
  if (synchronous != "full" && synchronous != "normal") {
    return absl::InvalidArgumentError(
        absl::StrCat("--synchronous must be \"full\" or \"normal\", not \"",
                     FLAGS_synchronous, "\""));
  }
  if (FLAGS_db.empty()) {
    return absl::InvalidArgumentError("--db must name a file");
  }
  return absl::OkStatus();
}

// Reads the catalogue file at `path`.
// Removes the database file at `path` with its WAL and shared-memory files.
void RemoveDatabase(const std::string& path) {
  std::error_code ignored;
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::filesystem::remove(path + suffix, ignored);
  }
}

// Holds an exclusive flock() on the database file itself for the life of
// the process, so that a second server cannot run on the same database,
// whatever path (a link, another spelling) it is given. SQLite's own locks
// are fcntl() locks, which flock() does not touch; the descriptor stays open
// until exit, so closing it can never drop SQLite's locks. Returns
// FAILED_PRECONDITION if another process holds the lock.
absl::Status LockDatabase(const std::string& path) {
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const std::string parent =
        std::filesystem::path(path).parent_path().string();
    if (!parent.empty() && !std::filesystem::is_directory(parent)) {
      return absl::NotFoundError(
          absl::StrCat("the folder of --db, ", parent, ", does not exist"));
    }
    return absl::UnavailableError(
        absl::StrCat("cannot open ", path, ": ", strerror(errno)));
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is in use by another job_server"));
  }
  return absl::OkStatus();  // The descriptor stays open until exit.
}

// Blocks until SIGTERM or SIGINT arrives. REQUIRES: both are blocked in
// every thread (BlockStopSignals() before any thread starts).
int WaitForStopSignal() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  int received = 0;
  sigwait(&signals, &received);
  return received;
}

void BlockStopSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
}

int Serve() {
  if (absl::Status flags = ValidateFlags(); !flags.ok()) {
    std::cerr << "job_server: " << flags.message() << "\n";
    return 2;
  }
  absl::TimeZone zone;
  if (!absl::LoadTimeZone(FLAGS_time_zone, &zone)) {
    std::cerr << "job_server: unknown --time_zone \"" << FLAGS_time_zone
              << "\"\n";
    return 2;
  }

  // The database; a new one gets the seed catalogue.
  const bool in_memory = FLAGS_db == ":memory:";
  std::error_code no_file;
  const bool is_new = in_memory || !std::filesystem::exists(FLAGS_db) ||
                      std::filesystem::file_size(FLAGS_db, no_file) == 0;
  if (!in_memory) {
    if (absl::Status lock = LockDatabase(FLAGS_db); !lock.ok()) {
      std::cerr << "job_server: " << lock.message() << "\n";
      return 1;
    }
  }

  SqliteJobStoreOptions store_options;
  store_options.path = FLAGS_db;
  store_options.busy_timeout = absl::Milliseconds(FLAGS_busy_timeout_ms);
  store_options.synchronous_full =
      absl::AsciiStrToLower(FLAGS_synchronous) == "full";
  absl::StatusOr<std::unique_ptr<SqliteJobStore>> store =
      OpenSqliteJobStore(store_options);
  if (!store.ok()) {
    std::cerr << "job_server: cannot open the database: "
              << store.status().message() << "\n";
    return 1;
  }
  if ((*store)->read_only()) {
    LOG(WARNING) << FLAGS_db << " is read-only: jobs can be read, not written";
  }
  // Waiting workers wake for jobs entering their queue, the runner for jobs
  // entering its own.
  WorkSignal work_signal;
  WorkSignal runner_signal;
  JobManagerOptions manager_options;
  manager_options.zone = zone;
  manager_options.work_signal = &work_signal;
  manager_options.runner_signal = &runner_signal;
  manager_options.max_page_size = FLAGS_max_page_size;
  JobManager manager(store->get(), RealClock(), manager_options);
  WorkerProtocolOptions protocol_options;
  protocol_options.max_attempts = FLAGS_max_attempts;
  protocol_options.report_limits.max_lines = FLAGS_max_report_lines;
  protocol_options.report_limits.max_message_bytes =
      static_cast<size_t>(FLAGS_max_log_message_kb) * 1024;
  protocol_options.runner_signal = &runner_signal;
  WorkerProtocol protocol(store->get(), RealClock(), &work_signal,
                          protocol_options);

  if (is_new && !FLAGS_seed_catalog.empty()) {
    absl::StatusOr<v2::Catalog> catalog = ReadCatalogFile(FLAGS_seed_catalog);
    absl::StatusOr<v2::ImportCatalogResponse> imported =
        catalog.ok()
            ? manager.ImportCatalog(*catalog)
            : absl::StatusOr<v2::ImportCatalogResponse>(catalog.status());
    if (!imported.ok()) {
      std::cerr << "job_server: cannot load --seed_catalog: "
                << imported.status().message() << "\n";
      // Leave no half-made database behind, so the next start seeds again.
      store->reset();
      if (!in_memory) RemoveDatabase(FLAGS_db);
      return 1;
    }
    LOG(INFO) << "loaded the catalogue " << FLAGS_seed_catalog << ": "
              << imported->projects() << " projects, "
              << imported->capture_collections() << " capture collections, "
              << imported->pipelines() << " pipelines";
  }

  // Recovery: built-in work that was running when the last process ended
  // is queued again (its attempt counted); PENDING jobs are still queued.
  if (!(*store)->read_only()) {
    absl::StatusOr<int> recovered = protocol.RecoverRunnerLeases();
    if (!recovered.ok()) {
      std::cerr << "job_server: recovering interrupted jobs failed: "
                << recovered.status().message() << "\n";
      return 1;
    }
    if (*recovered > 0) {
      LOG(INFO) << "queued " << *recovered << " interrupted jobs again";
    }
  }
  JobRunnerOptions runner_options;
  runner_options.threads = FLAGS_runner_threads;
  runner_options.delay_step = absl::Milliseconds(FLAGS_delay_step_ms);
  runner_options.reap_cutoff = absl::Minutes(FLAGS_reap_minutes);
  runner_options.queue_signal = &runner_signal;
  JobRunner runner(store->get(), RealClock(), &work_signal, &protocol,
                   runner_options);

  // Live progress: the hub hears every commit of the store.
  WatchHubOptions hub_options;
  hub_options.zone = zone;
  hub_options.max_watchers = FLAGS_max_watchers;
  hub_options.max_watchers_per_job = FLAGS_max_watchers_per_job;
  WatchHub hub(store->get(), hub_options);
  (*store)->SetChangeListener(
      [&hub](const JobChangeEvent& event) { hub.OnCommit(event); });

  // The gRPC server.
  JobServiceImpl job_service(&manager, &hub);
  CatalogServiceImpl catalog_service(&manager);
  WorkerServiceImpl worker_service(&protocol);
  OperatorServiceImpl operator_service(&protocol);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  const std::string address = absl::StrCat(FLAGS_host, ":", FLAGS_grpc_port);
  int bound_port = 0;
  // A port another process listens on is an error, not a shared port.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(),
                           &bound_port);
  builder.SetMaxReceiveMessageSize(FLAGS_max_request_mb * 1024 * 1024);
  builder.SetSyncServerOption(grpc::ServerBuilder::NUM_CQS, FLAGS_grpc_num_cqs);
  builder.SetSyncServerOption(grpc::ServerBuilder::MIN_POLLERS,
                              FLAGS_grpc_min_pollers);
  builder.SetSyncServerOption(grpc::ServerBuilder::MAX_POLLERS,
                              FLAGS_grpc_max_pollers);
  builder.experimental().SetInterceptorCreators(
      DecodeErrorInterceptorCreators());
  builder.RegisterService(&job_service);
  builder.RegisterService(&catalog_service);
  builder.RegisterService(&worker_service);
  builder.RegisterService(&operator_service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || bound_port == 0) {
    std::cerr << "job_server: cannot listen on " << address
              << " (is the port in use, or --host not an address of this "
                 "machine?)\n";
    return 1;
  }

  // The REST face, over the server's in-process channel.
  std::unique_ptr<rest::RestServer> rest_server;
  if (FLAGS_http_port != 0) {
    rest::RestServerOptions rest_options;
    rest_options.host = FLAGS_host;
    rest_options.port = FLAGS_http_port;
    rest_options.transcoder.zone = zone;
    rest::ApplyRestFlags(rest_options);
    rest_options.shutdown_grace = absl::Seconds(FLAGS_shutdown_grace_seconds);
    rest_server = std::make_unique<rest::RestServer>(
        server->InProcessChannel(grpc::ChannelArguments()), rest_options);
    if (absl::Status started = rest_server->Start(); !started.ok()) {
      std::cerr << "job_server: " << started.message()
                << " (is the port in use?)\n";
      server->Shutdown();
      return 1;
    }
  }

  if (!(*store)->read_only()) runner.Start();
  std::cout << "jobline: serving gRPC on " << FLAGS_host << ":" << bound_port
            << " (database " << FLAGS_db << ")" << std::endl;
  LOG(INFO) << "serving gRPC on " << FLAGS_host << ":" << bound_port;
  if (rest_server != nullptr) {
    std::cout << "jobline: serving REST on " << FLAGS_host << ":"
              << rest_server->port() << std::endl;
  }

  // Until SIGTERM or SIGINT.
  const int signal_number = WaitForStopSignal();
  LOG(INFO) << "received signal " << signal_number << "; shutting down";
  work_signal.Close();  // Workers waiting for a lease get their answer now.
  // Watchers (gRPC, and REST streams over the in-process channel) get
  // UNAVAILABLE and resume elsewhere; then REST, then gRPC stop.
  hub.Shutdown();
  if (rest_server != nullptr) rest_server->Stop();
  server->Shutdown(absl::ToChronoTime(
      absl::Now() + absl::Seconds(FLAGS_shutdown_grace_seconds)));
  server->Wait();
  runner.Stop();
  (*store)->SetChangeListener(nullptr);
  LOG(INFO) << "stopped";
  return 0;
}

}  // namespace
}  // namespace jobline

int main(int argc, char** argv) {
  jobline::BlockStopSignals();
  FLAGS_logtostderr = true;
  gflags::SetUsageMessage(jobline::kUsage);
  gflags::ParseCommandLineFlags(&argc, &argv, /*remove_flags=*/true);
  // Before any thread starts: the server's CPU goes to calls, not to
  // checking lock orders (the tests keep the check).
  absl::SetMutexDeadlockDetectionMode(FLAGS_mutex_deadlock_detection
                                          ? absl::OnDeadlockCycle::kAbort
                                          : absl::OnDeadlockCycle::kIgnore);
  google::InitGoogleLogging(argv[0]);
  if (argc > 1) {
    std::cerr << "job_server: unexpected argument \"" << argv[1]
              << "\"; flags are written --name=value (see --helpshort)\n";
    return 2;
  }
  return jobline::Serve();
}
