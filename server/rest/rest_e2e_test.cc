// End-to-end tests of the REST face: a real JobServiceImpl and
// CatalogServiceImpl on an in-memory SqliteJobStore, served by an
// in-process grpc::Server, with a RestServer on a free port in front of its
// in-process channel, driven over HTTP with httplib::Client.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "jobline/v2/catalog.pb.h"
#include "jobline/v2/jobs.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "server/job_manager.h"
#include "server/job_service_impl.h"
#include "server/rest/rest_server.h"
#include "server/rest/transcoder.h"
#include "storage/sqlite_job_store.h"

namespace jobline {
namespace rest {
namespace {

using Json = nlohmann::ordered_json;

// Sends `request` (raw HTTP/1.1) to 127.0.0.1:`port` and returns the
// whole answer, read until the server closes the connection.
std::string RawExchange(int port, const std::string& request) {
  const int sock = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string answer;
  if (connect(sock, reinterpret_cast<sockaddr*>(&address), sizeof(address)) ==
          0 &&
      send(sock, request.data(), request.size(), 0) ==
          static_cast<ssize_t>(request.size())) {
    char buffer[4096];
    ssize_t got;
    while ((got = recv(sock, buffer, sizeof(buffer), 0)) > 0) {
      answer.append(buffer, static_cast<size_t>(got));
    }
  }
  close(sock);
  return answer;
}

// The seed document: $JOBLINE_SEED_DIR/job-1256.json, else
// ../shared/seed/job-1256.json beside the workspace root. The root is found
// through this test's source file, which the test has as data: its runfile
// links to the source tree.
std::filesystem::path SeedPath() {
  namespace fs = std::filesystem;
  if (const char* dir = std::getenv("JOBLINE_SEED_DIR")) {
    return fs::path(dir) / "job-1256.json";
  }
  std::error_code error;
  std::vector<fs::path> starts = {fs::current_path(error)};
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  if (srcdir != nullptr && workspace != nullptr) {
    starts.push_back(fs::path(srcdir) / workspace);
  }
  for (const fs::path& start : starts) {
    const fs::path source = start / "server" / "rest" / "rest_e2e_test.cc";
    if (fs::exists(source, error)) {
      const fs::path root = fs::canonical(source, error)
                                .parent_path()
                                .parent_path()
                                .parent_path();
      return root.parent_path() / "shared" / "seed" / "job-1256.json";
    }
  }
  return "../shared/seed/job-1256.json";
}

constexpr char kSeedBody[] =
    R"({"name": "Populate captures for collection 111", "project_id": "16",)"
    R"( "source_image_collection_id": 111,)"
    R"( "job_type_key": "populate_captures_collection", "delay": 0})";

class RestEndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    SqliteJobStoreOptions store_options;
    store_options.path = ":memory:";
    absl::StatusOr<std::unique_ptr<SqliteJobStore>> store =
        OpenSqliteJobStore(store_options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    manager_ = std::make_unique<JobManager>(store_.get(), RealClock());

    v2::Catalog catalog;
    v2::Project* project = catalog.add_projects();
    project->set_id(16);
    project->set_name("Aarhus Universitet, Department of Ecoscience");
    v2::CaptureCollection* collection = catalog.add_capture_collections();
    collection->set_id(111);
    collection->set_name("Random 1000");
    collection->set_method("random");
    collection->set_project_id(16);
    ASSERT_TRUE(manager_->ImportCatalog(catalog).ok());

    job_service_ = std::make_unique<JobServiceImpl>(manager_.get());
    catalog_service_ = std::make_unique<CatalogServiceImpl>(manager_.get());
    grpc::ServerBuilder builder;
    builder.RegisterService(job_service_.get());
    builder.RegisterService(catalog_service_.get());
    grpc_server_ = builder.BuildAndStart();
    ASSERT_NE(grpc_server_, nullptr);

    RestServerOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    rest_server_ = std::make_unique<RestServer>(
        grpc_server_->InProcessChannel(grpc::ChannelArguments()), options);
    ASSERT_TRUE(rest_server_->Start().ok());
    client_ =
        std::make_unique<httplib::Client>("127.0.0.1", rest_server_->port());
    base_url_ = absl::StrCat("http://127.0.0.1:", rest_server_->port());
  }

  void TearDown() override {
    if (rest_server_ != nullptr) rest_server_->Stop();
    if (grpc_server_ != nullptr) grpc_server_->Shutdown();
  }

  // Creates the seed's job over REST and returns its id.
  int64_t CreateSeedJob(const std::string& query = "") {
    httplib::Result result = client_->Post(("/api/v2/jobs/" + query).c_str(),
                                           kSeedBody, "application/json");
    EXPECT_TRUE(result) << httplib::to_string(result.error());
    if (!result) return 0;
    EXPECT_EQ(result->status, 201) << result->body;
    const Json job = Json::parse(result->body, nullptr, false);
    return job.is_object() ? job.value("id", int64_t{0}) : 0;
  }

  std::unique_ptr<SqliteJobStore> store_;
  std::unique_ptr<JobManager> manager_;
  std::unique_ptr<JobServiceImpl> job_service_;
  std::unique_ptr<CatalogServiceImpl> catalog_service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  std::unique_ptr<RestServer> rest_server_;
  std::unique_ptr<httplib::Client> client_;
  std::string base_url_;
};

TEST_F(RestEndToEnd, CreateWithStartNowGivesTheSeedShape) {
  httplib::Result result =
      client_->Post("/api/v2/jobs/?start_now", kSeedBody, "application/json");
  ASSERT_TRUE(result) << httplib::to_string(result.error());
  EXPECT_EQ(result->status, 201) << result->body;
  EXPECT_EQ(result->get_header_value("Content-Type"), "application/json");
  const Json job = Json::parse(result->body, nullptr, false);
  ASSERT_TRUE(job.is_object()) << result->body;

  std::ifstream seed_file(SeedPath());
  ASSERT_TRUE(seed_file) << "cannot read " << SeedPath();
  const Json seed = Json::parse(seed_file, nullptr, false);
  ASSERT_TRUE(seed.is_object());
  std::vector<std::string> job_keys;
  std::vector<std::string> seed_keys;
  for (const auto& item : job.items()) job_keys.push_back(item.key());
  for (const auto& item : seed.items()) seed_keys.push_back(item.key());
  EXPECT_EQ(job_keys, seed_keys);

  // The nested records have the seed's keys in the seed's order, and every
  // value the seed's JSON type where the seed's is not null (the progress
  // summary carries status_label too, D3, so it is not compared here).
  auto keys_of = [](const Json& object) {
    std::vector<std::string> keys;
    for (const auto& item : object.items()) keys.push_back(item.key());
    return keys;
  };
  for (const char* nested :
       {"project", "source_image_collection", "logs", "job_type"}) {
    ASSERT_TRUE(job.contains(nested)) << nested;
    EXPECT_EQ(keys_of(job[nested]), keys_of(seed[nested])) << nested;
  }
  for (const auto& item : seed.items()) {
    if (item.value().is_null() || !job.contains(item.key()) ||
        job[item.key()].is_null()) {
      continue;
    }
    EXPECT_EQ(job[item.key()].type_name(), item.value().type_name())
        << item.key();
  }

  const int64_t id = job["id"].get<int64_t>();
  EXPECT_EQ(job["details"], absl::StrCat(base_url_, "/api/v2/jobs/", id, "/"));
  EXPECT_EQ(job["name"], seed["name"]);
  EXPECT_EQ(job["status"], "PENDING");
  EXPECT_EQ(job["project"]["id"], 16);
  EXPECT_EQ(job["project"]["details"],
            absl::StrCat(base_url_, "/api/v2/projects/16/"));
  EXPECT_EQ(job["source_image_collection"]["name"], "Random 1000");
  EXPECT_EQ(job["job_type"], seed["job_type"]);
  EXPECT_TRUE(job["deployment"].is_null());
  EXPECT_TRUE(job["user_permissions"].is_array());
  // Compact text (D15).
  EXPECT_EQ(result->body.find(": "), std::string::npos);
}

TEST_F(RestEndToEnd, GetDetailAndReferencedRecords) {
  const int64_t id = CreateSeedJob();
  httplib::Result result =
      client_->Get(absl::StrCat("/api/v2/jobs/", id, "/").c_str());
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  const Json job = Json::parse(result->body, nullptr, false);
  EXPECT_EQ(job["id"], id);
  EXPECT_EQ(job["status"], "CREATED");
  EXPECT_TRUE(job.contains("result"));

  // Every details link of the job answers GET.
  for (const std::string& url :
       {job["project"]["details"].get<std::string>(),
        job["source_image_collection"]["details"].get<std::string>()}) {
    const std::string path = url.substr(base_url_.size());
    httplib::Result record = client_->Get(path.c_str());
    ASSERT_TRUE(record) << path;
    EXPECT_EQ(record->status, 200) << path << " " << record->body;
    EXPECT_EQ(Json::parse(record->body, nullptr, false)["details"], url);
  }
}

TEST_F(RestEndToEnd, ListEnvelopeAndPageLinks) {
  for (int i = 0; i < 3; ++i) CreateSeedJob();
  httplib::Result result = client_->Get("/api/v2/jobs/?limit=2");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200) << result->body;
  const Json list = Json::parse(result->body, nullptr, false);
  std::vector<std::string> keys;
  for (const auto& item : list.items()) keys.push_back(item.key());
  EXPECT_THAT(keys, ::testing::ElementsAre("count", "next", "previous",
                                           "results", "user_permissions"));
  EXPECT_EQ(list["count"], 3);
  EXPECT_EQ(list["results"].size(), 2);
  EXPECT_EQ(list["next"], base_url_ + "/api/v2/jobs/?limit=2&offset=2");
  EXPECT_TRUE(list["previous"].is_null());
  EXPECT_FALSE(list["results"][0].contains("result"));

  result = client_->Get("/api/v2/jobs/?limit=2&offset=2");
  ASSERT_TRUE(result);
  const Json last = Json::parse(result->body, nullptr, false);
  EXPECT_TRUE(last["next"].is_null());
  EXPECT_EQ(last["previous"], base_url_ + "/api/v2/jobs/?limit=2");
}

TEST_F(RestEndToEnd, ActionsPatchAndDelete) {
  const int64_t id = CreateSeedJob();
  const std::string item = absl::StrCat("/api/v2/jobs/", id, "/");

  httplib::Result run = client_->Post((item + "run/").c_str());
  ASSERT_TRUE(run);
  EXPECT_EQ(run->status, 200) << run->body;
  EXPECT_EQ(Json::parse(run->body, nullptr, false)["status"], "PENDING");
  httplib::Result again = client_->Post((item + "run/").c_str());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 400);
  EXPECT_TRUE(Json::parse(again->body, nullptr, false).is_array())
      << again->body;

  httplib::Result patch =
      client_->Patch(item.c_str(), R"({"delay": 3})", "application/json");
  ASSERT_TRUE(patch);
  EXPECT_EQ(patch->status, 200) << patch->body;
  const Json patched = Json::parse(patch->body, nullptr, false);
  EXPECT_EQ(patched["delay"], 3);
  EXPECT_EQ(patched["name"], "Populate captures for collection 111");

  httplib::Result deleted = client_->Delete(item.c_str());
  ASSERT_TRUE(deleted);
  EXPECT_EQ(deleted->status, 204);
  EXPECT_EQ(deleted->body, "");
  httplib::Result gone = client_->Get(item.c_str());
  ASSERT_TRUE(gone);
  EXPECT_EQ(gone->status, 404);
}

TEST_F(RestEndToEnd, ErrorBodies) {
  const int64_t id = CreateSeedJob();
  const std::string item = absl::StrCat("/api/v2/jobs/", id, "/");

  // Unknown path, unknown id, non-integer id.
  for (const char* path : {"/api/v2/nothing/", "/api/v2/jobs/999/",
                           "/api/v2/jobs/abc/", "/api/v2/jobs/1/unknown/"}) {
    httplib::Result result = client_->Get(path);
    ASSERT_TRUE(result) << path;
    EXPECT_EQ(result->status, 404) << path;
    EXPECT_EQ(result->body, R"({"detail":"Not found."})") << path;
  }

  // A known path with another verb.
  httplib::Result post = client_->Post(item.c_str(), "{}", "application/json");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 405);
  EXPECT_EQ(post->body, R"({"detail":"Method \"POST\" not allowed."})");
  EXPECT_EQ(post->get_header_value("Allow"),
            "GET, PUT, PATCH, DELETE, HEAD, OPTIONS");

  // Field errors of the server and of the transcoder.
  httplib::Result blank = client_->Post(
      "/api/v2/jobs/", R"({"name": "", "project_id": 16})", "application/json");
  ASSERT_TRUE(blank);
  EXPECT_EQ(blank->status, 400);
  EXPECT_EQ(blank->body, R"({"name":["This field may not be blank."]})");
  httplib::Result delay = client_->Post(
      "/api/v2/jobs/", R"({"name": "x", "project_id": 16, "delay": "x"})",
      "application/json");
  ASSERT_TRUE(delay);
  EXPECT_EQ(delay->status, 400);
  EXPECT_EQ(delay->body, R"({"delay":["A valid integer is required."]})");
  httplib::Result query = client_->Get("/api/v2/jobs/?project_id=x");
  ASSERT_TRUE(query);
  EXPECT_EQ(query->status, 400);
  EXPECT_EQ(query->body, R"({"project_id":["A valid integer is required."]})");

  // Query text that is not UTF-8 is searched for as U+FFFD, not a fault.
  httplib::Result junk = client_->Get("/api/v2/jobs/?search=%FF&status=%FF");
  ASSERT_TRUE(junk);
  EXPECT_EQ(junk->status, 400) << junk->body;
  EXPECT_THAT(junk->body, ::testing::StartsWith(R"({"status":[)"));

  // Text that is not JSON, a body that is not JSON at all, and one too big.
  httplib::Result broken =
      client_->Post("/api/v2/jobs/", "{\"name\": ", "application/json");
  ASSERT_TRUE(broken);
  EXPECT_EQ(broken->status, 400);
  EXPECT_THAT(broken->body,
              ::testing::StartsWith(R"({"detail":"JSON parse error - )"));
  httplib::Result text = client_->Post("/api/v2/jobs/", "name=x", "text/plain");
  ASSERT_TRUE(text);
  EXPECT_EQ(text->status, 415);
  EXPECT_EQ(
      text->body,
      R"({"detail":"Unsupported media type \"text/plain\" in request."})");
  const std::string big(1024 * 1024 + 1, ' ');
  httplib::Result large =
      client_->Post("/api/v2/jobs/", big, "application/json");
  ASSERT_TRUE(large) << httplib::to_string(large.error());
  EXPECT_EQ(large->status, 413);
  EXPECT_EQ(large->body,
            R"({"detail":"Request body is larger than 1048576 bytes."})");

  // Nothing of the above was stored.
  httplib::Result list = client_->Get("/api/v2/jobs/");
  ASSERT_TRUE(list);
  EXPECT_EQ(Json::parse(list->body, nullptr, false)["count"], 1);
}

TEST_F(RestEndToEnd, SlashLessUrlsRedirect) {
  httplib::Result result = client_->Get("/api/v2/jobs?limit=2&status=CREATED");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 301);
  EXPECT_EQ(result->get_header_value("Location"),
            "/api/v2/jobs/?limit=2&status=CREATED");
  result = client_->Get("/api/v2/jobs/12");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 301);
  EXPECT_EQ(result->get_header_value("Location"), "/api/v2/jobs/12/");
  result = client_->Get("/api/v2/nothing");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 404);
}

TEST_F(RestEndToEnd, ApiRootAndFormat) {
  httplib::Result root = client_->Get("/api/v2/");
  ASSERT_TRUE(root);
  EXPECT_EQ(root->status, 200);
  EXPECT_EQ(Json::parse(root->body, nullptr, false)["jobs"],
            base_url_ + "/api/v2/jobs/");

  httplib::Result json = client_->Get("/api/v2/jobs/?format=json");
  ASSERT_TRUE(json);
  EXPECT_EQ(json->status, 200);
  httplib::Result head = client_->Head("/api/v2/jobs/");
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 200);
  EXPECT_EQ(head->body, "");

  httplib::Result unknown = client_->Get("/api/v2/jobs/?format=xml");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
}

TEST_F(RestEndToEnd, RequestsWithoutContentLengthHaveNoBody) {
  const int64_t id = CreateSeedJob();
  // curl -X POST and -X DELETE send neither Content-Length nor
  // Transfer-Encoding.
  const std::string cancel = RawExchange(
      rest_server_->port(),
      absl::StrCat(
          "POST /api/v2/jobs/", id,
          "/cancel/ HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"));
  EXPECT_THAT(cancel, ::testing::StartsWith("HTTP/1.1 200 "));
  EXPECT_THAT(cancel, ::testing::HasSubstr(R"("status":"REVOKED")"));
  const std::string remove = RawExchange(
      rest_server_->port(),
      absl::StrCat("DELETE /api/v2/jobs/", id,
                   "/ HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"));
  EXPECT_THAT(remove, ::testing::StartsWith("HTTP/1.1 204 "));
}

TEST_F(RestEndToEnd, ChunkedBodiesAreReadAndLimited) {
  const std::string body = kSeedBody;
  const std::string created = RawExchange(
      rest_server_->port(),
      absl::StrCat("POST /api/v2/jobs/ HTTP/1.1\r\nHost: h\r\n"
                   "Content-Type: application/json\r\n"
                   "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                   absl::Hex(body.size()), "\r\n", body, "\r\n0\r\n\r\n"));
  EXPECT_THAT(created, ::testing::StartsWith("HTTP/1.1 201 "));

  const std::string chunk(512 * 1024, ' ');
  std::string request =
      "POST /api/v2/jobs/ HTTP/1.1\r\nHost: h\r\n"
      "Content-Type: application/json\r\n"
      "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
  for (int i = 0; i < 3; ++i) {
    absl::StrAppend(&request, absl::Hex(chunk.size()), "\r\n", chunk, "\r\n");
  }
  absl::StrAppend(&request, "0\r\n\r\n");
  const std::string refused = RawExchange(rest_server_->port(), request);
  EXPECT_THAT(refused, ::testing::StartsWith("HTTP/1.1 413 "));
}

TEST_F(RestEndToEnd, SlashLessPostsRedirectWithTheirBody) {
  const int64_t id = CreateSeedJob();
  // 308 asks the client to send the same verb and body again.
  const std::string cancel = absl::StrCat("/api/v2/jobs/", id, "/cancel");
  httplib::Result result = client_->Post(cancel.c_str(), "", "");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 308);
  EXPECT_EQ(result->get_header_value("Location"), cancel + "/");
  result =
      client_->Post("/api/v2/jobs?start_now", kSeedBody, "application/json");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 308);
  EXPECT_EQ(result->get_header_value("Location"), "/api/v2/jobs/?start_now");

  // A client that follows it creates the job once, with its body.
  httplib::Client following("127.0.0.1", rest_server_->port());
  following.set_follow_location(true);
  result = following.Post("/api/v2/jobs", kSeedBody, "application/json");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 201) << result->body;
  EXPECT_EQ(Json::parse(result->body, nullptr, false)["name"],
            Json::parse(kSeedBody)["name"]);
  httplib::Result list = client_->Get("/api/v2/jobs/");
  ASSERT_TRUE(list);
  EXPECT_EQ(Json::parse(list->body, nullptr, false)["count"], 2);
}

TEST_F(RestEndToEnd, FormBodiesAreAccepted) {
  // URL-encoded: ids as text, and shuffle left out is false (an unticked
  // checkbox).
  httplib::Result form = client_->Post(
      "/api/v2/jobs/",
      "name=Form+job%21&project_id=16&delay=3&source_image_collection_id=111"
      "&deployment_id=&job_type_key=populate_captures_collection",
      "application/x-www-form-urlencoded");
  ASSERT_TRUE(form);
  ASSERT_EQ(form->status, 201) << form->body;
  Json job = Json::parse(form->body, nullptr, false);
  EXPECT_EQ(job["name"], "Form job!");
  EXPECT_EQ(job["delay"], 3);
  EXPECT_EQ(job["shuffle"], false);
  EXPECT_EQ(job["deployment"], nullptr);
  EXPECT_EQ(job["source_image_collection"]["id"], 111);
  EXPECT_EQ(job["job_type"]["key"], "populate_captures_collection");
  const int64_t id = job["id"];

  // Multipart, as an HTML form with a file input sends it.
  httplib::MultipartFormDataItems items = {
      {"name", "Multipart job", "", ""},
      {"project_id", "16", "", ""},
      {"delay", "0", "", ""},
      {"shuffle", "true", "", ""},
  };
  httplib::Result multipart = client_->Post("/api/v2/jobs/", items);
  ASSERT_TRUE(multipart);
  ASSERT_EQ(multipart->status, 201) << multipart->body;
  job = Json::parse(multipart->body, nullptr, false);
  EXPECT_EQ(job["name"], "Multipart job");
  EXPECT_EQ(job["shuffle"], true);

  // A partial update from a form leaves the booleans it does not name.
  const std::string item = absl::StrCat("/api/v2/jobs/", id, "/");
  httplib::Result patch = client_->Patch(item.c_str(), "name=Renamed",
                                         "application/x-www-form-urlencoded");
  ASSERT_TRUE(patch);
  ASSERT_EQ(patch->status, 200) << patch->body;
  job = Json::parse(patch->body, nullptr, false);
  EXPECT_EQ(job["name"], "Renamed");
  EXPECT_EQ(job["delay"], 3);
  EXPECT_EQ(job["shuffle"], false);

  // Form fields are checked as JSON members are.
  httplib::Result bad =
      client_->Post("/api/v2/jobs/", "name=x&project_id=sixteen&delay=0",
                    "application/x-www-form-urlencoded");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_EQ(bad->body, R"({"project_id":["A valid integer is required."]})");
}

TEST_F(RestEndToEnd, FormatSuffixes) {
  const int64_t id = CreateSeedJob();
  const std::string item = absl::StrCat("/api/v2/jobs/", id);
  for (const std::string& path : {item + ".json", item + ".json/"}) {
    httplib::Result result = client_->Get(path.c_str());
    ASSERT_TRUE(result) << path;
    EXPECT_EQ(result->status, 200) << path;
    EXPECT_EQ(result->get_header_value("Content-Type"), "application/json");
    const Json job = Json::parse(result->body, nullptr, false);
    EXPECT_EQ(job["details"], absl::StrCat(base_url_, item, ".json"));
    EXPECT_EQ(job["project"]["details"],
              absl::StrCat(base_url_, "/api/v2/projects/16.json"));
  }
  httplib::Result list = client_->Get("/api/v2/jobs.json?limit=1");
  ASSERT_TRUE(list);
  EXPECT_EQ(list->status, 200);
  EXPECT_EQ(Json::parse(list->body, nullptr, false)["count"], 1);
  httplib::Result root = client_->Get("/api/v2/.json");
  ASSERT_TRUE(root);
  EXPECT_EQ(Json::parse(root->body, nullptr, false)["jobs"],
            base_url_ + "/api/v2/jobs.json");
  httplib::Result cancel =
      client_->Post((item + "/cancel.json").c_str(), "", "");
  ASSERT_TRUE(cancel);
  EXPECT_EQ(cancel->status, 200);
  EXPECT_EQ(Json::parse(cancel->body, nullptr, false)["status"], "REVOKED");

  httplib::Result page = client_->Get((item + ".api").c_str());
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_EQ(page->get_header_value("Content-Type"), "text/html; charset=utf-8");
  for (const std::string& path :
       {item + ".xml", item + ".JSON", std::string("/api/v2/nothing.json")}) {
    httplib::Result unknown = client_->Get(path.c_str());
    ASSERT_TRUE(unknown) << path;
    EXPECT_EQ(unknown->status, 404) << path;
  }
}

TEST_F(RestEndToEnd, HtmlPageByFormatAndAccept) {
  const int64_t id = CreateSeedJob();
  const std::string item = absl::StrCat("/api/v2/jobs/", id, "/");
  httplib::Result page = client_->Get((item + "?format=api").c_str());
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_EQ(page->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_THAT(page->body, ::testing::StartsWith("<!DOCTYPE html>"));
  EXPECT_THAT(
      page->body,
      ::testing::HasSubstr(Json::parse(kSeedBody)["name"].get<std::string>()));

  // What a browser sends gets the page; curl's */* and JSON clients get
  // JSON; a client that takes neither gets 406.
  const httplib::Headers browser = {
      {"Accept",
       "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}};
  httplib::Result negotiated = client_->Get(item.c_str(), browser);
  ASSERT_TRUE(negotiated);
  EXPECT_EQ(negotiated->get_header_value("Content-Type"),
            "text/html; charset=utf-8");
  for (const char* accept :
       {"*/*", "application/json", "application/json, text/html"}) {
    httplib::Result json = client_->Get(item.c_str(), {{"Accept", accept}});
    ASSERT_TRUE(json) << accept;
    EXPECT_EQ(json->get_header_value("Content-Type"), "application/json")
        << accept;
  }
  httplib::Result forced =
      client_->Get((item + "?format=json").c_str(), browser);
  ASSERT_TRUE(forced);
  EXPECT_EQ(forced->get_header_value("Content-Type"), "application/json");
  httplib::Result refused =
      client_->Get(item.c_str(), {{"Accept", "application/xml"}});
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 406);
  EXPECT_EQ(refused->body,
            R"({"detail":"Could not satisfy the request Accept header."})");

  // Errors are pages too, with their status.
  httplib::Result missing = client_->Get("/api/v2/jobs/999/?format=api");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(missing->get_header_value("Content-Type"),
            "text/html; charset=utf-8");
}

TEST_F(RestEndToEnd, OptionsDescribesTheView) {
  httplib::Result list = client_->Options("/api/v2/jobs/");
  ASSERT_TRUE(list);
  EXPECT_EQ(list->status, 200);
  EXPECT_EQ(list->get_header_value("Allow"), "GET, POST, HEAD, OPTIONS");
  const Json metadata = Json::parse(list->body, nullptr, false);
  EXPECT_EQ(metadata["name"], "Job List");
  EXPECT_EQ(metadata["renders"],
            Json::parse(R"(["application/json","text/html"])"));
  EXPECT_EQ(metadata["parses"],
            Json::parse(R"(["application/json",)"
                        R"("application/x-www-form-urlencoded",)"
                        R"("multipart/form-data"])"));
  httplib::Result item = client_->Options("/api/v2/jobs/5/");
  ASSERT_TRUE(item);
  EXPECT_EQ(item->get_header_value("Allow"),
            "GET, PUT, PATCH, DELETE, HEAD, OPTIONS");
  EXPECT_EQ(Json::parse(item->body, nullptr, false)["name"], "Job Instance");
  httplib::Result run = client_->Options("/api/v2/jobs/5/run/");
  ASSERT_TRUE(run);
  EXPECT_EQ(run->get_header_value("Allow"), "POST, OPTIONS");
  EXPECT_EQ(Json::parse(run->body, nullptr, false)["name"], "Run");
}

TEST_F(RestEndToEnd, ForwardedProtoSetsTheScheme) {
  const int64_t id = CreateSeedJob();
  const std::string item = absl::StrCat("/api/v2/jobs/", id, "/");
  httplib::Result result = client_->Get(
      item.c_str(),
      {{"X-Forwarded-Proto", "https"}, {"Host", "jobs.example.org"}});
  ASSERT_TRUE(result);
  EXPECT_EQ(Json::parse(result->body, nullptr, false)["details"],
            absl::StrCat("https://jobs.example.org", item));
  result = client_->Get(item.c_str(), {{"X-Forwarded-Proto", "gopher"}});
  ASSERT_TRUE(result);
  EXPECT_EQ(Json::parse(result->body, nullptr, false)["details"],
            absl::StrCat(base_url_, item));
}

TEST_F(RestEndToEnd, AmbiguousFramingAndBadHostsAreRefused) {
  const std::string body = kSeedBody;
  const std::string length = std::to_string(body.size());
  const std::vector<std::string> requests = {
      // Two lengths, a length with chunked coding, a bad length, an
      // unknown coding, white space in a header name.
      "POST /api/v2/jobs/ HTTP/1.1\r\nHost: h\r\nContent-Type: "
      "application/json\r\nContent-Length: " +
          length + "\r\nContent-Length: 5\r\n\r\n" + body,
      "POST /api/v2/jobs/ HTTP/1.1\r\nHost: h\r\nContent-Type: "
      "application/json\r\nContent-Length: " +
          length + "\r\nTransfer-Encoding: chunked\r\n\r\n" + body,
      "POST /api/v2/jobs/ HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n",
      "POST /api/v2/jobs/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, "
      "chunked\r\n\r\n0\r\n\r\n",
      "POST /api/v2/jobs/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : "
      "chunked\r\n\r\n0\r\n\r\n",
      // No Host, two Hosts, a Host that is no host name.
      "GET /api/v2/ HTTP/1.1\r\n\r\n",
      "GET /api/v2/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
      "GET /api/v2/ HTTP/1.1\r\nHost: evil.example/\"<script>\r\n\r\n",
  };
  for (std::string request : requests) {
    // Each asks to close, so that the test waits for no keep-alive.
    request.insert(request.find("\r\n") + 2, "Connection: close\r\n");
    const std::string answer = RawExchange(rest_server_->port(), request);
    EXPECT_THAT(answer, ::testing::StartsWith("HTTP/1.1 400 ")) << request;
    EXPECT_THAT(answer, ::testing::HasSubstr("Connection: close")) << request;
    EXPECT_THAT(answer, ::testing::HasSubstr(R"({"detail":")")) << request;
  }
  // HTTP/1.0 needs no Host; names, addresses and ports are hosts.
  for (const char* request :
       {"GET /api/v2/ HTTP/1.0\r\n\r\n",
        "GET /api/v2/ HTTP/1.1\r\nHost: [::1]:8000\r\nConnection: "
        "close\r\n\r\n",
        "GET /api/v2/ HTTP/1.1\r\nHost: jobs-1.example.org:80\r\nConnection: "
        "close\r\n\r\n"}) {
    EXPECT_THAT(RawExchange(rest_server_->port(), request),
                ::testing::StartsWith("HTTP/1.1 200 "))
        << request;
  }
  // Nothing was created.
  httplib::Result list = client_->Get("/api/v2/jobs/");
  ASSERT_TRUE(list);
  EXPECT_EQ(Json::parse(list->body, nullptr, false)["count"], 0);
}

TEST_F(RestEndToEnd, IntegerFieldsTakeWholeFloatsAndRefuseHugeOnes) {
  httplib::Result whole = client_->Post(
      "/api/v2/jobs/", R"({"name": "x", "project_id": "16", "delay": "2.0"})",
      "application/json");
  ASSERT_TRUE(whole);
  EXPECT_EQ(whole->status, 201) << whole->body;
  EXPECT_EQ(Json::parse(whole->body, nullptr, false)["delay"], 2);
  httplib::Result huge = client_->Post(
      "/api/v2/jobs/",
      R"({"name": "x", "project_id": 16, "delay": 9223372036854775808})",
      "application/json");
  ASSERT_TRUE(huge);
  EXPECT_EQ(huge->status, 400);
  EXPECT_EQ(huge->body, R"({"delay":["A valid integer is required."]})");
  httplib::Result fraction = client_->Post(
      "/api/v2/jobs/", R"({"name": "x", "project_id": 16, "delay": "2.5"})",
      "application/json");
  ASSERT_TRUE(fraction);
  EXPECT_EQ(fraction->status, 400);
}

TEST_F(RestEndToEnd, SuffixWithSlashIsTheSamePage) {
  const int64_t id = CreateSeedJob();
  httplib::Result slashed =
      client_->Get(absl::StrCat("/api/v2/jobs/", id, ".api/").c_str());
  httplib::Result bare =
      client_->Get(absl::StrCat("/api/v2/jobs/", id, ".api").c_str());
  ASSERT_TRUE(slashed);
  ASSERT_TRUE(bare);
  EXPECT_EQ(slashed->status, 200);
  EXPECT_EQ(slashed->body, bare->body);
  EXPECT_THAT(bare->body, ::testing::HasSubstr(absl::StrCat("Job ", id)));
  httplib::Result empty_stem = client_->Get("/api/v2/jobs/.json");
  ASSERT_TRUE(empty_stem);
  EXPECT_EQ(empty_stem->status, 404);
}

TEST_F(RestEndToEnd, APortInUseIsRefused) {
  RestServerOptions options;
  options.host = "127.0.0.1";
  options.port = rest_server_->port();
  RestServer second(grpc_server_->InProcessChannel(grpc::ChannelArguments()),
                    options);
  EXPECT_EQ(second.Start().code(), absl::StatusCode::kUnavailable);
}

// A JobService whose GetJob answers only once released, or when its call
// is cancelled.
class StuckJobService final : public v2::JobService::Service {
 public:
  grpc::Status GetJob(grpc::ServerContext* context, const v2::GetJobRequest*,
                      v2::Job*) override {
    entered_.Notify();
    while (!released_.WaitForNotificationWithTimeout(absl::Milliseconds(10))) {
      if (context->IsCancelled()) {
        cancelled_.Notify();
        return grpc::Status::CANCELLED;
      }
    }
    return grpc::Status::OK;
  }

  absl::Notification entered_;
  absl::Notification released_;
  absl::Notification cancelled_;
};

// A gRPC server of a StuckJobService, released and shut down at the end.
class RestStop : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.RegisterService(&service_);
    grpc_server_ = builder.BuildAndStart();
    ASSERT_NE(grpc_server_, nullptr);
  }

  void TearDown() override {
    service_.released_.Notify();
    if (grpc_server_ != nullptr) grpc_server_->Shutdown();
  }

  std::shared_ptr<grpc::Channel> Channel() {
    return grpc_server_->InProcessChannel(grpc::ChannelArguments());
  }

  StuckJobService service_;
  std::unique_ptr<grpc::Server> grpc_server_;
};

// At the end of the grace the REST face cancels the gRPC calls its requests
// wait on: a backend that does not answer cannot hold the stop for the
// call's whole deadline.
TEST_F(RestStop, CancelsTheCallsOfABackendThatDoesNotAnswer) {
  RestServerOptions options;
  options.host = "127.0.0.1";
  options.port = 0;
  options.shutdown_grace = absl::Seconds(1);
  options.transcoder.call_timeout = absl::Seconds(300);
  RestServer rest(Channel(), options);
  ASSERT_TRUE(rest.Start().ok());

  std::string answer;
  std::thread client([port = rest.port(), &answer] {
    httplib::Client http("127.0.0.1", port);
    http.set_read_timeout(300, 0);
    httplib::Result result = http.Get("/api/v2/jobs/1/");
    answer = result ? absl::StrCat(result->status, " ", result->body)
                    : httplib::to_string(result.error());
  });
  ASSERT_TRUE(
      service_.entered_.WaitForNotificationWithTimeout(absl::Seconds(30)));
  const absl::Time start = absl::Now();
  rest.Stop();
  // The grace was given, and the stop did not wait out the 300 s deadline
  // (the bound only keeps a broken stop from hanging the test).
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(900));
  EXPECT_LT(absl::Now() - start, absl::Seconds(60));
  // The backend sees the cancel (it polls for it).
  EXPECT_TRUE(
      service_.cancelled_.WaitForNotificationWithTimeout(absl::Seconds(30)));
  client.join();
  // The request whose call was cancelled is answered before its connection
  // closes.
  EXPECT_EQ(answer, R"(503 {"detail":"The server is shutting down."})");
}

// After CancelCalls() a request that would call the backend is answered
// 503 without calling it.
TEST_F(RestStop, RequestsAfterTheCancelAre503) {
  Transcoder transcoder(&RouteTable::Jobline(), Channel());
  transcoder.CancelCalls();
  HttpRequest request;
  request.verb = "GET";
  request.path = "/api/v2/jobs/1/";
  request.base_url = "http://localhost:8000";
  const HttpResponse response = transcoder.Handle(request);
  EXPECT_EQ(response.status, 503);
  EXPECT_EQ(response.body, R"({"detail":"The server is shutting down."})");
  EXPECT_FALSE(service_.entered_.HasBeenNotified());
}

}  // namespace
}  // namespace rest
}  // namespace jobline
