// Storage faults under the real job_server, seen through gRPC and the REST
// face: a database on a full disk, and a database on a read-only
// filesystem.
//
// The database lives on a 2 MiB tmpfs mounted for the test (and a read-only
// bind mount of it), so the test needs root with CAP_SYS_ADMIN outside
// Bazel's sandbox; where it cannot mount, every case is skipped and says
// why.
//
// Checked:
//   - on a full disk every write (CreateJob, CancelJob, LeaseJobs,
//     ReportProgress, FinishJob, and REST create and cancel) answers
//     UNAVAILABLE (HTTP 503 with a DRF {"detail": ...} body) saying the
//     disk is full, and changes nothing; reads keep working; the file stays
//     intact (PRAGMA integrity_check, read-only); once space returns, the
//     same writes work, a worker's lease included;
//   - a database on a read-only filesystem, cleanly stopped or left by a
//     killed server (WAL and shared-memory files beside it), serves every
//     job it holds, and answers every write UNAVAILABLE (503) saying the
//     database is read-only.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "jobline/v2/jobs.grpc.pb.h"
#include "jobline/v2/worker.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/server_process.h"

namespace jobline {
namespace {

using ::jobline::testing::NewTempDir;
using ::jobline::testing::RunfilePath;
using ::jobline::testing::ServerProcess;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using Json = nlohmann::ordered_json;

constexpr char kPopulate[] = "populate_captures_collection";
constexpr char kStageName[] = "Populate captures collection";
constexpr char kDiskFull[] = ": database or disk is full";
constexpr char kReadOnly[] =
    "the job database is read-only; writes are refused";
constexpr char kRestCreateBody[] =
    R"({"name": "Created over REST", "delay": 0, "project_id": "16",)"
    R"( "source_image_collection_id": 111,)"
    R"( "job_type_key": "populate_captures_collection"})";

google::protobuf::Duration LeaseSeconds(int64_t seconds) {
  google::protobuf::Duration duration;
  duration.set_seconds(seconds);
  return duration;
}

// A TCP port that was free a moment ago.
int FreePort() {
  const int sock = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  int port = 0;
  if (bind(sock, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      getsockname(sock, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  close(sock);
  return port;
}

// PRAGMA integrity_check of the database at `uri` (a file: URI), opened
// read-only, and its number of jobs: "ok 3".
std::string CheckFile(const std::string& uri) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(uri.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI,
                      nullptr) != SQLITE_OK) {
    const std::string error = sqlite3_errmsg(db);
    sqlite3_close(db);
    return "cannot open: " + error;
  }
  std::vector<std::string> rows;
  for (const char* sql :
       {"PRAGMA integrity_check", "SELECT count(*) FROM jobs"}) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) != SQLITE_OK) {
      rows.push_back(sqlite3_errmsg(db));
      continue;
    }
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      rows.push_back(
          reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)));
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  return absl::StrJoin(rows, " ");
}

// The body of a REST answer: `status` and its JSON.
struct RestAnswer {
  int status = 0;
  Json body;
};

class StorageFaults : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) {
      GTEST_SKIP() << "storage faults need root, to mount a small tmpfs";
    }
    // The mounts are made in a mount namespace of this thread (the one
    // that starts the servers), so they end with the test process and the
    // machine never sees them.
    static const int private_mounts = [] {
      if (unshare(CLONE_NEWNS) != 0) return errno;
      if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
        return errno;
      }
      return 0;
    }();
    if (private_mounts != 0) {
      GTEST_SKIP() << "cannot make a private mount namespace ("
                   << strerror(private_mounts)
                   << "); storage faults need root with CAP_SYS_ADMIN, "
                      "outside Bazel's sandbox";
    }
    dir_ = NewTempDir("faults");
    ASSERT_FALSE(dir_.empty());
    disk_ = dir_ + "/disk";
    ASSERT_EQ(mkdir(disk_.c_str(), 0755), 0) << strerror(errno);
    if (mount("jobline-faults", disk_.c_str(), "tmpfs", 0, "size=2m") != 0) {
      GTEST_SKIP() << "cannot mount a 2 MiB tmpfs at " << disk_ << " ("
                   << strerror(errno)
                   << "); storage faults need root with CAP_SYS_ADMIN, "
                      "outside Bazel's sandbox";
    }
    mounts_.push_back(disk_);
  }

  void TearDown() override {
    StopClients();
    server_.reset();  // Kills a server still running.
    for (auto it = mounts_.rbegin(); it != mounts_.rend(); ++it) {
      umount2(it->c_str(), MNT_DETACH);
    }
  }

  // Starts job_server on `db` with the demo catalogue and the REST face.
  void StartServer(const std::string& db) {
    http_port_ = FreePort();
    ASSERT_NE(http_port_, 0);
    server_ = std::make_unique<ServerProcess>();
    const absl::Status started = server_->Start(
        {"--db=" + db,
         "--seed_catalog=" + RunfilePath("tools/demo-catalog.json"),
         absl::StrCat("--http_port=", http_port_)});
    ASSERT_TRUE(started.ok()) << started;
    const std::shared_ptr<grpc::Channel> channel = grpc::CreateChannel(
        server_->address(), grpc::InsecureChannelCredentials());
    jobs_ = v2::JobService::NewStub(channel);
    workers_ = v2::WorkerService::NewStub(channel);
    rest_ = std::make_unique<httplib::Client>("127.0.0.1", http_port_);
  }

  // Stops the server with `signal_number`; returns its exit code.
  int StopServer(int signal_number) {
    StopClients();
    absl::StatusOr<int> code = server_->Stop(signal_number);
    EXPECT_TRUE(code.ok()) << code.status();
    return code.ok() ? *code : -1;
  }

  void StopClients() {
    jobs_.reset();
    workers_.reset();
    rest_.reset();
  }

  // Mounts a read-only view of disk_ and returns its path.
  std::string ReadOnlyView() {
    const std::string view = dir_ + "/read-only";
    EXPECT_EQ(mkdir(view.c_str(), 0755), 0) << strerror(errno);
    EXPECT_EQ(mount(disk_.c_str(), view.c_str(), nullptr, MS_BIND, nullptr), 0)
        << strerror(errno);
    mounts_.push_back(view);
    EXPECT_EQ(mount(nullptr, view.c_str(), nullptr,
                    MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr),
              0)
        << strerror(errno);
    return view;
  }

  // Fills disk_ with a file until the filesystem has no block left.
  void FillDisk() {
    filler_ = disk_ + "/filler";
    const int fd = open(filler_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0) << strerror(errno);
    const std::string chunk(64 * 1024, 'x');
    for (size_t size : {chunk.size(), size_t{4096}, size_t{1}}) {
      while (write(fd, chunk.data(), size) == static_cast<ssize_t>(size)) {
      }
    }
    const int error = errno;
    close(fd);
    EXPECT_EQ(error, ENOSPC) << strerror(error);
    struct statvfs stats;
    ASSERT_EQ(statvfs(disk_.c_str(), &stats), 0);
    ASSERT_EQ(stats.f_bavail, 0u);
  }

  void FreeDisk() { ASSERT_EQ(unlink(filler_.c_str()), 0) << strerror(errno); }

  // ---- gRPC ----

  absl::StatusOr<v2::Job> Create(const std::string& name, bool start_now) {
    v2::CreateJobRequest request;
    request.mutable_job()->set_name(name);
    request.mutable_job()->set_project_id(16);
    request.mutable_job()->set_source_image_collection_id(111);
    request.mutable_job()->set_job_type_key(kPopulate);
    request.set_start_now(start_now);
    grpc::ClientContext context;
    v2::Job job;
    return Answer(jobs_->CreateJob(&context, request, &job), job);
  }

  absl::StatusOr<v2::Job> Get(int64_t id) {
    v2::GetJobRequest request;
    request.set_id(id);
    grpc::ClientContext context;
    v2::Job job;
    return Answer(jobs_->GetJob(&context, request, &job), job);
  }

  absl::StatusOr<int64_t> Count() {
    v2::ListJobsRequest request;
    grpc::ClientContext context;
    v2::ListJobsResponse response;
    const grpc::Status status = jobs_->ListJobs(&context, request, &response);
    if (!status.ok()) return Answer(status, 0).status();
    return response.count();
  }

  absl::StatusOr<v2::Job> Cancel(int64_t id) {
    v2::CancelJobRequest request;
    request.set_id(id);
    grpc::ClientContext context;
    v2::Job job;
    return Answer(jobs_->CancelJob(&context, request, &job), job);
  }

  absl::StatusOr<v2::LeaseJobsResponse> Lease() {
    v2::LeaseJobsRequest request;
    request.set_worker_id("faults-worker");
    request.add_job_types(kPopulate);
    request.set_max_jobs(1);
    *request.mutable_lease_duration() = LeaseSeconds(300);
    grpc::ClientContext context;
    v2::LeaseJobsResponse response;
    return Answer(workers_->LeaseJobs(&context, request, &response), response);
  }

  absl::Status Report(const v2::Lease& lease, double progress) {
    v2::ReportProgressRequest request;
    request.set_lease_id(lease.lease_id());
    request.set_job_id(lease.job().id());
    *request.mutable_lease_duration() = LeaseSeconds(300);
    v2::StageUpdate* stage = request.add_stages();
    stage->set_name(kStageName);
    stage->set_status(v2::STARTED);
    stage->set_progress(progress);
    v2::WorkerLogLine* line = request.add_logs();
    line->set_level("INFO");
    line->set_message(absl::StrCat("at ", progress));
    grpc::ClientContext context;
    v2::ReportProgressResponse response;
    return Answer(workers_->ReportProgress(&context, request, &response),
                  response)
        .status();
  }

  absl::StatusOr<v2::Job> Finish(const v2::Lease& lease) {
    v2::FinishJobRequest request;
    request.set_lease_id(lease.lease_id());
    request.set_job_id(lease.job().id());
    request.set_status(v2::SUCCESS);
    v2::StageUpdate* stage = request.add_stages();
    stage->set_name(kStageName);
    stage->set_status(v2::SUCCESS);
    stage->set_progress(1.0);
    grpc::ClientContext context;
    v2::FinishJobResponse response;
    absl::StatusOr<v2::FinishJobResponse> answer =
        Answer(workers_->FinishJob(&context, request, &response), response);
    if (!answer.ok()) return answer.status();
    return answer->job();
  }

  template <typename T>
  static absl::StatusOr<T> Answer(const grpc::Status& status, const T& value) {
    if (status.ok()) return value;
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        status.error_message());
  }

  // ---- REST ----

  RestAnswer RestCall(const std::string& method, const std::string& path) {
    httplib::Result result =
        method == "GET"
            ? rest_->Get(path.c_str())
            : rest_->Post(path.c_str(),
                          path == "/api/v2/jobs/" ? kRestCreateBody : "{}",
                          "application/json");
    RestAnswer answer;
    if (!result) {
      ADD_FAILURE() << method << " " << path << ": "
                    << httplib::to_string(result.error());
      return answer;
    }
    answer.status = result->status;
    answer.body = Json::parse(result->body, nullptr, false);
    return answer;
  }

  // Every kind of write, over gRPC and REST, answers UNAVAILABLE (503) with
  // a message that `matches`; job `queued` is PENDING for workers, `lease`
  // a worker's live lease.
  void ExpectWritesRefused(int64_t queued, const v2::Lease& lease,
                           const ::testing::Matcher<std::string>& matches) {
    const absl::Status statuses[] = {
        Create("refused", false).status(),
        Cancel(queued).status(),
        Lease().status(),
        Report(lease, 0.9),
        Finish(lease).status(),
    };
    const char* const calls[] = {"CreateJob", "CancelJob", "LeaseJobs",
                                 "ReportProgress", "FinishJob"};
    for (int i = 0; i < 5; ++i) {
      EXPECT_EQ(statuses[i].code(), absl::StatusCode::kUnavailable)
          << calls[i] << ": " << statuses[i];
      EXPECT_THAT(std::string(statuses[i].message()), matches) << calls[i];
    }
    for (const std::string& path :
         {std::string("/api/v2/jobs/"),
          absl::StrCat("/api/v2/jobs/", queued, "/cancel/")}) {
      const RestAnswer answer = RestCall("POST", path);
      EXPECT_EQ(answer.status, 503) << path << " " << answer.body.dump();
      ASSERT_TRUE(answer.body.is_object()) << path;
      ASSERT_EQ(answer.body.size(), 1u) << answer.body.dump();
      ASSERT_TRUE(answer.body["detail"].is_string()) << answer.body.dump();
      EXPECT_THAT(answer.body["detail"].get<std::string>(), matches) << path;
    }
  }

  // Reads answer over gRPC and REST: `expected_count` jobs, job `id` named
  // `name`.
  void ExpectReads(int64_t expected_count, int64_t id,
                   const std::string& name) {
    absl::StatusOr<int64_t> count = Count();
    ASSERT_TRUE(count.ok()) << count.status();
    EXPECT_EQ(*count, expected_count);
    absl::StatusOr<v2::Job> job = Get(id);
    ASSERT_TRUE(job.ok()) << job.status();
    EXPECT_EQ(job->name(), name);
    const RestAnswer one =
        RestCall("GET", absl::StrCat("/api/v2/jobs/", id, "/"));
    EXPECT_EQ(one.status, 200);
    EXPECT_EQ(one.body.value("id", int64_t{0}), id);
    EXPECT_EQ(one.body.value("name", std::string()), name);
    const RestAnswer list = RestCall("GET", "/api/v2/jobs/?format=json");
    EXPECT_EQ(list.status, 200);
    EXPECT_EQ(list.body.value("count", int64_t{-1}), expected_count);
  }

  std::string dir_;
  std::string disk_;
  std::string filler_;
  std::vector<std::string> mounts_;
  int http_port_ = 0;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<v2::JobService::Stub> jobs_;
  std::unique_ptr<v2::WorkerService::Stub> workers_;
  std::unique_ptr<httplib::Client> rest_;
};

TEST_F(StorageFaults, AFullDiskRefusesWritesUntilSpaceReturns) {
  const std::string db = disk_ + "/jobline.db";
  StartServer(db);
  absl::StatusOr<v2::Job> leased_job = Create("leased", true);
  ASSERT_TRUE(leased_job.ok()) << leased_job.status();
  absl::StatusOr<v2::LeaseJobsResponse> leases = Lease();
  ASSERT_TRUE(leases.ok()) << leases.status();
  ASSERT_EQ(leases->leases_size(), 1);
  const v2::Lease lease = leases->leases(0);
  ASSERT_TRUE(Report(lease, 0.5).ok());
  absl::StatusOr<v2::Job> queued = Create("queued", true);
  ASSERT_TRUE(queued.ok()) << queued.status();

  // Full: writes are refused and say why; reads and the file are fine.
  FillDisk();
  ExpectWritesRefused(queued->id(), lease, EndsWith(kDiskFull));
  ExpectReads(2, queued->id(), "queued");
  absl::StatusOr<v2::Job> still = Get(leased_job->id());
  ASSERT_TRUE(still.ok());
  EXPECT_EQ(still->status(), v2::STARTED);
  EXPECT_EQ(still->progress().stages(0).progress(), 0.5);
  EXPECT_EQ(CheckFile("file:" + db), "ok 2");

  // Space returns: the same writes work, the worker's lease too.
  FreeDisk();
  ASSERT_TRUE(Report(lease, 0.9).ok());
  absl::StatusOr<v2::Job> finished = Finish(lease);
  ASSERT_TRUE(finished.ok()) << finished.status();
  EXPECT_EQ(finished->status(), v2::SUCCESS);
  absl::StatusOr<v2::LeaseJobsResponse> next = Lease();
  ASSERT_TRUE(next.ok()) << next.status();
  ASSERT_EQ(next->leases_size(), 1);
  EXPECT_EQ(next->leases(0).job().id(), queued->id());
  absl::StatusOr<v2::Job> cancelled = Cancel(queued->id());
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->status(), v2::CANCELING);
  absl::StatusOr<v2::Job> created = Create("after the fault", false);
  ASSERT_TRUE(created.ok()) << created.status();
  const RestAnswer rest_created = RestCall("POST", "/api/v2/jobs/");
  EXPECT_EQ(rest_created.status, 201) << rest_created.body.dump();
  ExpectReads(4, created->id(), "after the fault");

  EXPECT_EQ(StopServer(SIGTERM), 0) << server_->stderr_text();
  EXPECT_EQ(CheckFile("file:" + db), "ok 4");
}

TEST_F(StorageFaults, AReadOnlyFilesystemServesReadsAndRefusesWrites) {
  StartServer(disk_ + "/jobline.db");
  absl::StatusOr<v2::Job> queued = Create("queued", true);
  ASSERT_TRUE(queued.ok()) << queued.status();
  const RestAnswer rest_created = RestCall("POST", "/api/v2/jobs/");
  EXPECT_EQ(rest_created.status, 201);
  EXPECT_EQ(StopServer(SIGTERM), 0) << server_->stderr_text();

  const std::string view = ReadOnlyView();
  StartServer(view + "/jobline.db");
  EXPECT_THAT(server_->stderr_text(),
              HasSubstr("is read-only: jobs can be read, not written"));
  ExpectReads(2, queued->id(), "queued");
  v2::Lease lease;  // No lease can be taken: writes to a made-up one.
  lease.set_lease_id("0123456789abcdef0123456789abcdef");
  *lease.mutable_job() = *queued;
  ExpectWritesRefused(queued->id(), lease, ::testing::Eq(kReadOnly));
  EXPECT_EQ(StopServer(SIGTERM), 0) << server_->stderr_text();
  EXPECT_EQ(CheckFile("file:" + view + "/jobline.db?immutable=1"), "ok 2");
}

TEST_F(StorageFaults, AKilledServersDatabaseOnAReadOnlyFilesystemKeepsItsLog) {
  // A killed server leaves its last writes in the WAL, beside the
  // shared-memory index.
  const std::string db = disk_ + "/jobline.db";
  StartServer(db);
  std::vector<int64_t> ids;
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<v2::Job> job = Create(absl::StrCat("job ", i), i % 2 == 0);
    ASSERT_TRUE(job.ok()) << job.status();
    ids.push_back(job->id());
  }
  EXPECT_EQ(StopServer(SIGKILL), 128 + SIGKILL);
  struct stat wal;
  ASSERT_EQ(stat((db + "-wal").c_str(), &wal), 0);
  EXPECT_GT(wal.st_size, 0);

  const std::string view = ReadOnlyView();
  StartServer(view + "/jobline.db");
  ExpectReads(5, ids.back(), "job 4");
  for (size_t i = 0; i < ids.size(); ++i) {
    absl::StatusOr<v2::Job> job = Get(ids[i]);
    ASSERT_TRUE(job.ok()) << job.status();
    EXPECT_EQ(job->name(), absl::StrCat("job ", i));
    EXPECT_EQ(job->status(), i % 2 == 0 ? v2::PENDING : v2::CREATED);
  }
  v2::Lease lease;
  lease.set_lease_id("0123456789abcdef0123456789abcdef");
  lease.mutable_job()->set_id(ids[0]);
  ExpectWritesRefused(ids[0], lease, ::testing::Eq(kReadOnly));
  EXPECT_EQ(StopServer(SIGTERM), 0) << server_->stderr_text();
}

TEST_F(StorageFaults, AReadOnlyLogWithoutItsIndexIsRefusedNotIgnored) {
  // Without the shared-memory index the file could only be read as
  // immutable, which ignores the WAL: the killed server's last commits
  // would not be served. The server refuses to start instead.
  const std::string db = disk_ + "/jobline.db";
  StartServer(db);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(Create(absl::StrCat("job ", i), false).ok());
  }
  EXPECT_EQ(StopServer(SIGKILL), 128 + SIGKILL);
  ASSERT_EQ(unlink((db + "-shm").c_str()), 0) << strerror(errno);
  const std::string view = ReadOnlyView();
  ServerProcess refused;
  const absl::Status started = refused.Start(
      {"--db=" + view + "/jobline.db", "--http_port=0",
       "--seed_catalog=" + RunfilePath("tools/demo-catalog.json")});
  EXPECT_FALSE(started.ok());
  EXPECT_THAT(refused.stderr_text(),
              ::testing::HasSubstr("its write-ahead log"));
}

}  // namespace
}  // namespace jobline
