// End-to-end tests: the real job_server binary on a free port, driven with
// the C++ client library and with jobctl.

#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/job_client.h"
#include "client/status_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/server_process.h"

namespace jobline {
namespace {

using ::jobline::testing::CommandResult;
using ::jobline::testing::NewTempDir;
using ::jobline::testing::RunCommand;
using ::jobline::testing::RunfilePath;
using ::jobline::testing::ServerProcess;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string CatalogPath() { return RunfilePath("tools/demo-catalog.json"); }

// The seed document's folder: $JOBLINE_SEED_DIR (tools/test sets it to
// ../shared/seed).
std::string SeedPath() {
  const char* dir = std::getenv("JOBLINE_SEED_DIR");
  return absl::StrCat(dir == nullptr ? "../shared/seed" : dir,
                      "/job-1256.json");
}

v2::JobInput SeedInput() {
  v2::JobInput input;
  input.set_name("Populate captures for collection 111");
  input.set_project_id(16);
  input.set_source_image_collection_id(111);
  input.set_job_type_key("populate_captures_collection");
  return input;
}

// The field of the single violation of `status`, "" if none.
std::string ViolatedField(const absl::Status& status) {
  const auto violations = FieldViolations(status);
  return violations.size() == 1 ? violations[0].first : "";
}

class ServerEndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = NewTempDir("e2e");
    ASSERT_FALSE(dir_.empty());
    db_ = dir_ + "/jobline.db";
  }

  // Starts the server on db_ with the demo catalogue.
  void StartServer(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> flags = {"--db=" + db_,
                                      "--seed_catalog=" + CatalogPath()};
    flags.insert(flags.end(), extra.begin(), extra.end());
    server_ = std::make_unique<ServerProcess>();
    const absl::Status started = server_->Start(flags);
    ASSERT_TRUE(started.ok()) << started;
    client_ =
        std::make_unique<JobClient>(JobClient::Connect(server_->address()));
  }

  // Stops the server with SIGTERM and expects a clean exit.
  // The client's connection goes first: a connected client makes the
  // server wait out its shutdown grace period.
  void StopServer() {
    client_.reset();
    absl::StatusOr<int> code = server_->Stop(SIGTERM);
    ASSERT_TRUE(code.ok()) << code.status();
    EXPECT_EQ(*code, 0) << server_->stderr_text();
  }

  // Runs jobctl against the server.
  CommandResult Jobctl(std::vector<std::string> args) {
    args.insert(args.begin(),
                {RunfilePath("client/jobctl"), "--server", server_->address()});
    absl::StatusOr<CommandResult> result = RunCommand(args);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : CommandResult();
  }

  std::string dir_;
  std::string db_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<JobClient> client_;
};

TEST_F(ServerEndToEnd, SeedJobAndItsLogSurviveARestart) {
  StartServer();
  absl::StatusOr<v2::Job> created = client_->CreateJob(SeedInput(), false);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->status(), v2::CREATED);
  EXPECT_EQ(created->project().name(),
            "Aarhus Universitet, Department of Ecoscience");
  EXPECT_EQ(created->source_image_collection().name(), "Random 1000");
  EXPECT_EQ(created->source_image_collection().method(), "random");
  ASSERT_TRUE(client_->RunJob(created->id()).ok());
  absl::StatusOr<v2::Job> cancelled = client_->CancelJob(created->id());
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->status(), v2::REVOKED);
  ASSERT_EQ(cancelled->logs().stdout_size(), 1);
  StopServer();

  // The same database, a new process: every job and log line is there.
  StartServer();
  absl::StatusOr<v2::Job> read = client_->GetJob(created->id());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->name(), "Populate captures for collection 111");
  EXPECT_EQ(read->status(), v2::REVOKED);
  EXPECT_EQ(read->finished_at().seconds(), cancelled->finished_at().seconds());
  EXPECT_EQ(read->created_at().seconds(), created->created_at().seconds());
  EXPECT_EQ(read->created_at().nanos(), created->created_at().nanos());
  EXPECT_THAT(read->logs().stdout(), ElementsAre(cancelled->logs().stdout(0)));
  EXPECT_THAT(cancelled->logs().stdout(0),
              HasSubstr("INFO Changing status of job 1 from PENDING to "
                        "REVOKED"));

  // The catalogue was loaded once: the second start did not load it again
  // (an import would have logged it).
  StopServer();
  EXPECT_FALSE(absl::StrContains(server_->stderr_text(), "loaded the"));
}

TEST_F(ServerEndToEnd, BadInputGetsFieldErrorsAndChangesNothing) {
  StartServer();
  ASSERT_TRUE(client_->CreateJob(SeedInput(), false).ok());

  v2::JobInput blank = SeedInput();
  blank.set_name("");
  EXPECT_EQ(ViolatedField(client_->CreateJob(blank, false).status()), "name");
  v2::JobInput long_name = SeedInput();
  long_name.set_name(std::string(300, 'a'));
  EXPECT_EQ(ViolatedField(client_->CreateJob(long_name, false).status()),
            "name");
  v2::JobInput bad_project = SeedInput();
  bad_project.set_project_id(999);
  EXPECT_EQ(ViolatedField(client_->CreateJob(bad_project, false).status()),
            "project_id");
  v2::JobInput bad_collection = SeedInput();
  bad_collection.set_source_image_collection_id(999);
  EXPECT_EQ(ViolatedField(client_->CreateJob(bad_collection, false).status()),
            "source_image_collection_id");
  v2::JobInput bad_pipeline = SeedInput();
  bad_pipeline.set_pipeline_id(999);
  EXPECT_EQ(ViolatedField(client_->CreateJob(bad_pipeline, false).status()),
            "pipeline_id");
  v2::JobInput bad_type = SeedInput();
  bad_type.set_job_type_key("nope");
  EXPECT_EQ(ViolatedField(client_->CreateJob(bad_type, false).status()),
            "job_type_key");
  // Not UTF-8: protobuf refuses to parse the string field, so the server
  // answers INTERNAL without crashing; the next call still works.
  v2::JobInput bad_text = SeedInput();
  bad_text.set_name("caf\xe9");
  EXPECT_FALSE(client_->CreateJob(bad_text, false).ok());

  EXPECT_EQ(client_->GetJob(12345).status().code(),
            absl::StatusCode::kNotFound);
  v2::ListJobsRequest negative;
  negative.set_limit(-1);
  EXPECT_EQ(ViolatedField(client_->ListJobs(negative).status()), "limit");

  // The server still serves, and only the first job exists.
  absl::StatusOr<v2::ListJobsResponse> list =
      client_->ListJobs(v2::ListJobsRequest());
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(list->count(), 1);
  StopServer();
}

TEST_F(ServerEndToEnd, JobctlFirstSessionShowsTheSeedShape) {
  StartServer();
  CommandResult created = Jobctl(
      {"create", "--name", "Populate captures for collection 111", "--project",
       "16", "--collection", "111", "--type", "populate_captures_collection"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  EXPECT_EQ(created.out, "created job 1 (CREATED)\n");

  CommandResult got = Jobctl({"get", "1", "--json"});
  ASSERT_EQ(got.exit_code, 0) << got.err;
  const nlohmann::ordered_json job =
      nlohmann::ordered_json::parse(got.out, nullptr, false);
  ASSERT_FALSE(job.is_discarded()) << got.out;

  // Every key of the seed document, in the seed's order, with its JSON
  // type (nulls where the seed has values that only a run produces).
  std::ifstream seed_file(SeedPath());
  ASSERT_TRUE(seed_file) << "cannot read " << SeedPath();
  const nlohmann::ordered_json seed = nlohmann::ordered_json::parse(seed_file);
  std::vector<std::string> seed_keys;
  std::vector<std::string> job_keys;
  for (const auto& item : seed.items()) seed_keys.push_back(item.key());
  for (const auto& item : job.items()) job_keys.push_back(item.key());
  EXPECT_EQ(job_keys, seed_keys);
  for (const char* key : {"id",
                          "details",
                          "name",
                          "delay",
                          "limit",
                          "shuffle",
                          "project",
                          "deployment",
                          "source_image_collection",
                          "source_image_single",
                          "pipeline",
                          "status",
                          "created_at",
                          "updated_at",
                          "progress",
                          "logs",
                          "job_type",
                          "data_export",
                          "dispatch_mode",
                          "result",
                          "user_permissions"}) {
    EXPECT_EQ(job[key].type_name(), seed[key].type_name()) << key;
  }
  EXPECT_EQ(job["name"], seed["name"]);
  EXPECT_EQ(job["project"]["id"], 16);
  EXPECT_EQ(job["project"]["name"], seed["project"]["name"]);
  EXPECT_EQ(job["source_image_collection"]["name"], "Random 1000");
  EXPECT_EQ(job["source_image_collection"]["method"], "random");
  EXPECT_EQ(job["job_type"], seed["job_type"]);
  EXPECT_EQ(job["dispatch_mode"], "internal");
  EXPECT_EQ(job["status"], "CREATED");
  EXPECT_TRUE(job["started_at"].is_null());
  EXPECT_TRUE(job["duration"].is_null());
  EXPECT_EQ(job["details"], "http://localhost:8000/api/v2/jobs/1/");

  // An error names the field and exits 1.
  CommandResult blank = Jobctl({"create", "--name", "", "--project", "16"});
  EXPECT_EQ(blank.exit_code, 1);
  EXPECT_EQ(blank.err,
            "jobctl: INVALID_ARGUMENT: name: This field may not be blank.\n");

  // Text that is not UTF-8 never reaches the server.
  CommandResult bytes =
      Jobctl({"create", "--name", "caf\xe9", "--project", "16"});
  EXPECT_EQ(bytes.exit_code, 2);
  EXPECT_THAT(bytes.err, HasSubstr("the value of --name is not valid UTF-8"));

  CommandResult run = Jobctl({"run", "1"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  CommandResult again = Jobctl({"run", "1"});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_EQ(again.err,
            "jobctl: FAILED_PRECONDITION: cannot run job 1 while it is "
            "PENDING\n");
  StopServer();
}

TEST_F(ServerEndToEnd, RefusesASecondServerOnTheSameDatabaseOrPort) {
  StartServer();
  ServerProcess same_db;
  absl::Status started = same_db.Start({"--db=" + db_});
  EXPECT_THAT(std::string(started.message()),
              HasSubstr("is in use by another job_server"));
  // The same file under another name is the same database.
  const std::string link = dir_ + "/hard-link.db";
  std::filesystem::create_hard_link(db_, link);
  ServerProcess same_file;
  started = same_file.Start({"--db=" + link});
  EXPECT_THAT(std::string(started.message()),
              HasSubstr(link + " is in use by another job_server"));

  const std::string port =
      server_->address().substr(server_->address().find(':') + 1);
  ServerProcess same_port;
  started =
      same_port.Start({"--db=" + dir_ + "/other.db", "--grpc_port=" + port});
  EXPECT_THAT(std::string(started.message()),
              HasSubstr("cannot listen on 127.0.0.1:" + port));

  // The first server is unharmed.
  EXPECT_TRUE(client_->ListJobs(v2::ListJobsRequest()).ok());
  StopServer();
}

TEST_F(ServerEndToEnd, RefusesAFileThatIsNotADatabase) {
  {
    std::ofstream garbage(db_);
    garbage << std::string(8192, 'x');
  }
  ServerProcess server;
  const absl::Status started = server.Start({"--db=" + db_});
  EXPECT_EQ(started.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(started.message()), HasSubstr("exit 1"));
  EXPECT_THAT(std::string(started.message()),
              HasSubstr("is not a SQLite database"));

  // The file is untouched.
  EXPECT_EQ(std::filesystem::file_size(db_), 8192u);
}

TEST_F(ServerEndToEnd, RefusesADatabaseFromANewerVersion) {
  StartServer();
  StopServer();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(db, "PRAGMA user_version = 99", nullptr, nullptr, nullptr),
      SQLITE_OK);
  sqlite3_close(db);

  ServerProcess server;
  const absl::Status started = server.Start({"--db=" + db_});
  EXPECT_EQ(started.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(started.message()), HasSubstr("version 99"));
}

TEST_F(ServerEndToEnd, UnknownFlagsAndBadValuesAreRefused) {
  ServerProcess server;
  absl::Status started = server.Start({"--db=" + db_, "--no_such_flag=1"});
  EXPECT_THAT(std::string(started.message()), HasSubstr("no_such_flag"));
  started = server.Start({"--db=" + db_, "--synchronous=sometimes"});
  EXPECT_THAT(std::string(started.message()),
              HasSubstr("--synchronous must be \"full\" or \"normal\""));
  started = server.Start({"--db=" + db_, "--time_zone=Mars/Olympus"});
  EXPECT_THAT(std::string(started.message()),
              HasSubstr("unknown --time_zone \"Mars/Olympus\""));

  // A seed catalogue that protobuf's parser would read as another one (the
  // nested list flattened) is refused, naming the member, and the new
  // database is not left behind.
  const std::string catalog = db_ + ".nested.json";
  std::ofstream(catalog) << R"({"projects": [[{"id": 930, "name": "x"}]]})";
  const std::string fresh = db_ + ".fresh";
  started = server.Start({"--db=" + fresh, "--seed_catalog=" + catalog});
  EXPECT_THAT(std::string(started.message()),
              HasSubstr("job_server: cannot load --seed_catalog: " + catalog +
                        " is not a catalogue in JSON: projects[0]: Invalid "
                        "data. Expected a dictionary, but got list.\n"));
  EXPECT_FALSE(std::filesystem::exists(fresh));
}

// A database the server's user cannot write: reads work, writes answer
// UNAVAILABLE. Tests run as root, whom file modes do not stop, so the
// server runs as the unprivileged user "nobody" from a copy of the binary
// in a folder that user can reach.
TEST_F(ServerEndToEnd, ServesAReadOnlyDatabaseForReadingOnly) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to switch users";
  namespace fs = std::filesystem;
  char pattern[] = "/tmp/jobline-ro-XXXXXX";
  ASSERT_NE(mkdtemp(pattern), nullptr);
  const std::string dir = pattern;
  const std::string binary = dir + "/job_server";
  fs::copy_file(RunfilePath("server/job_server"), binary);
  db_ = dir + "/jobline.db";

  StartServer();
  absl::StatusOr<v2::Job> created = client_->CreateJob(SeedInput(), false);
  ASSERT_TRUE(created.ok()) << created.status();
  StopServer();
  chmod(db_.c_str(), 0444);
  chmod(dir.c_str(), 0555);

  ServerProcess server(binary);
  const absl::Status started = server.Start(
      {"--db=" + db_},
      {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"});
  ASSERT_TRUE(started.ok()) << started;
  {
    JobClient client(JobClient::Connect(server.address()));
    absl::StatusOr<v2::Job> read = client.GetJob(created->id());
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_EQ(read->name(), "Populate captures for collection 111");

    const absl::StatusOr<v2::Job> write = client.CancelJob(created->id());
    EXPECT_EQ(write.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(std::string(write.status().message()), HasSubstr("read-only"));
    EXPECT_TRUE(client.GetJob(created->id()).ok());
  }
  EXPECT_EQ(*server.Stop(SIGTERM), 0);

  chmod(dir.c_str(), 0755);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace jobline
