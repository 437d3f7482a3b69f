#include "server/rest/event_stream.h"

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"
#include "gtest/gtest.h"
#include "jobline/v2/jobs.pb.h"
#include "nlohmann/json.hpp"

namespace jobline {
namespace rest {
namespace {

using Json = nlohmann::ordered_json;

// 2025-11-12 19:00:59.806356 UTC.
google::protobuf::Timestamp SeedTime() {
  const absl::Time time =
      absl::FromCivil(absl::CivilSecond(2025, 11, 12, 19, 0, 59),
                      absl::UTCTimeZone()) +
      absl::Microseconds(806356);
  google::protobuf::Timestamp timestamp;
  timestamp.set_seconds(absl::ToUnixSeconds(time));
  timestamp.set_nanos(806356000);
  return timestamp;
}

v2::WatchProgressResponse Progress() {
  v2::WatchProgressResponse progress;
  progress.set_sequence(7);
  v2::Job* job = progress.mutable_job();
  job->set_id(12);
  job->set_details("/api/v2/jobs/12/");
  job->set_name("Sync");
  job->set_status(v2::STARTED);
  v2::JobStatusChange* change = progress.add_status_changes();
  change->set_sequence(6);
  change->set_status(v2::STARTED);
  *change->mutable_changed_at() = SeedTime();
  v2::JobLogLine* line = progress.add_logs();
  line->set_sequence(7);
  line->set_level("INFO");
  line->set_text("[2025-11-12 14:00:59] INFO Working \"hard\"\non two lines");
  return progress;
}

DocumentOptions Options() {
  DocumentOptions options;
  options.base_url = "http://localhost:8000";
  options.zone = absl::FixedTimeZone(-5 * 3600);
  return options;
}

TEST(MessageEvent, RendersAProgressMessage) {
  const v2::WatchProgressResponse progress = Progress();
  const StreamEvent event = MessageEvent(progress, Options());
  EXPECT_EQ(event.id, "7");
  EXPECT_EQ(event.type, "progress");
  const std::string job =
      ToJsonText(JobDocument(progress.job(), JobView::kDetail, Options()));
  EXPECT_EQ(ToJsonText(event.data),
            R"({"sequence":7,"snapshot":false,"job":)" + job +
                R"(,"status_changes":[{"sequence":6,"status":"STARTED",)"
                R"("changed_at":"2025-11-12T14:00:59.806356"}],)"
                R"("logs":[{"sequence":7,"level":"INFO","text":)"
                R"("[2025-11-12 14:00:59] INFO Working \"hard\"\non two )"
                R"(lines"}]})");
  // The job's links are absolute.
  EXPECT_EQ(event.data["job"]["details"],
            "http://localhost:8000/api/v2/jobs/12/");
}

TEST(MessageEvent, NamesASnapshot) {
  v2::WatchProgressResponse progress = Progress();
  progress.set_snapshot(true);
  const StreamEvent event = MessageEvent(progress, Options());
  EXPECT_EQ(event.type, "snapshot");
  EXPECT_EQ(event.data["snapshot"], true);
}

TEST(MessageEvent, GivesOtherMessagesAsProtobufJson) {
  v2::JobLogLine line;
  line.set_sequence(3);
  line.set_level("ERROR");
  const StreamEvent event = MessageEvent(line, Options());
  EXPECT_EQ(event.id, "");
  EXPECT_EQ(event.type, "message");
  EXPECT_EQ(ToJsonText(event.data),
            R"({"sequence":"3","level":"ERROR","text":""})");
}

TEST(EventText, WritesSseAndNdjson) {
  StreamEvent event;
  event.id = "4";
  event.type = "progress";
  event.data = {{"sequence", 4}, {"text", "a\nb"}};
  EXPECT_EQ(EventText(StreamFormat::kSse, event),
            "id: 4\nevent: progress\ndata: {\"sequence\":4,\"text\":\"a\\nb\"}"
            "\n\n");
  EXPECT_EQ(EventText(StreamFormat::kNdjson, event),
            "{\"sequence\":4,\"text\":\"a\\nb\"}\n");
  event.id.clear();
  EXPECT_EQ(EventText(StreamFormat::kSse, event),
            "event: progress\ndata: {\"sequence\":4,\"text\":\"a\\nb\"}\n\n");
}

TEST(EndText, GivesTheStatusAndTheDetail) {
  EXPECT_EQ(EndText(StreamFormat::kSse, absl::OkStatus()),
            "event: end\ndata: {\"status\":\"OK\"}\n\n");
  EXPECT_EQ(EndText(StreamFormat::kNdjson, absl::OkStatus()),
            "{\"end\":{\"status\":\"OK\"}}\n");
  EXPECT_EQ(
      EndText(StreamFormat::kSse, absl::NotFoundError("job 7 was deleted")),
      "event: end\ndata: {\"status\":\"NOT_FOUND\",\"detail\":\"job 7 was "
      "deleted\"}\n\n");
  EXPECT_EQ(EndText(StreamFormat::kNdjson, absl::UnavailableError("")),
            "{\"end\":{\"status\":\"UNAVAILABLE\"}}\n");
}

TEST(KeepAliveText, IsACommentOrAnEmptyLine) {
  EXPECT_EQ(KeepAliveText(StreamFormat::kSse), ": keep-alive\n\n");
  EXPECT_EQ(KeepAliveText(StreamFormat::kNdjson), "\n");
  EXPECT_STREQ(StreamContentType(StreamFormat::kSse), "text/event-stream");
  EXPECT_STREQ(StreamContentType(StreamFormat::kNdjson),
               "application/x-ndjson");
}

TEST(StreamRegistry, AdmitsUpToTheLimit) {
  StreamRegistry registry(2);
  absl::StatusOr<std::unique_ptr<StreamRegistry::Slot>> first =
      registry.Admit();
  absl::StatusOr<std::unique_ptr<StreamRegistry::Slot>> second =
      registry.Admit();
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(registry.open(), 2);
  const absl::Status refused = registry.Admit().status();
  EXPECT_EQ(refused, absl::ResourceExhaustedError(
                         "Too many open progress streams (limit 2)."));

  // A slot given back makes room.
  first->reset();
  EXPECT_EQ(registry.open(), 1);
  EXPECT_TRUE(registry.Admit().ok());
  EXPECT_EQ(registry.open(), 1);
}

TEST(StreamRegistry, ShutdownStopsTheOpenAndRefusesNewOnes) {
  StreamRegistry registry(5);
  absl::StatusOr<std::unique_ptr<StreamRegistry::Slot>> slot = registry.Admit();
  ASSERT_TRUE(slot.ok());
  EXPECT_FALSE((*slot)->stopping());
  registry.Shutdown();
  EXPECT_TRUE((*slot)->stopping());
  EXPECT_EQ(registry.Admit().status().code(), absl::StatusCode::kUnavailable);
  registry.Shutdown();
  EXPECT_EQ(registry.open(), 1);
}

}  // namespace
}  // namespace rest
}  // namespace jobline
