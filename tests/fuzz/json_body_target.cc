// The json_body fuzz target: the whole input as the JSON body of every
// route that takes a body (POST /api/v2/jobs, PUT and PATCH
// /api/v2/jobs/12, POST /api/v2/catalog/import), built into its request by
// BuildRequestMessage, then the job input rules of server/job_rules.h on
// what the job routes built, as the job manager applies them.
//
// Checked:
//   - every route answers OK or INVALID_ARGUMENT, whose ErrorResponse is a
//     400 JSON body; a built request survives serialization and prints as
//     JSON;
//   - the three job routes read a body alike: all succeed or all fail, with
//     the same JobInput;
//   - the PATCH mask names only JobInput fields, and every field the body
//     set;
//   - ValidateJobInput: kCreate accepting an input implies kReplace and
//     kPatch accept it; errors are INVALID_ARGUMENT naming a JobInput
//     field; MaskJobInput's result passes kPatch;
//   - a job made from a valid input (ApplyJobInput) gives back an input
//     (JobInputFromJob) that is valid and applies to the same job.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/field_mask.pb.h"
#include "google/protobuf/message.h"
#include "google/protobuf/util/json_util.h"
#include "jobline/v2/jobs.pb.h"
#include "nlohmann/json.hpp"
#include "server/job_rules.h"
#include "server/rest/error_mapping.h"
#include "server/rest/http_message.h"
#include "server/rest/http_rules.h"
#include "server/rest/transcoder.h"
#include "server/status_util.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/fuzz_targets.h"

namespace jobline {
namespace fuzz {
namespace {

using ::google::protobuf::FieldDescriptor;
using ::google::protobuf::Message;
using rest::HttpRequest;
using rest::HttpRoute;
using rest::RouteMatch;

// The id every path variable gets.
constexpr char kPathId[] = "12";

// What one body route built.
struct Built {
  const HttpRoute* route = nullptr;
  absl::StatusOr<std::unique_ptr<Message>> message;
};

// The JobInput a job route built (its `job` field), or null for another
// route or a failed build.
const v2::JobInput* JobInputOf(const Built& built) {
  if (!built.message.ok()) return nullptr;
  const Message& message = **built.message;
  const FieldDescriptor* field =
      message.GetDescriptor()->FindFieldByName("job");
  if (field == nullptr || field->message_type() != v2::JobInput::descriptor()) {
    return nullptr;
  }
  return static_cast<const v2::JobInput*>(
      &message.GetReflection()->GetMessage(message, field));
}

Built BuildForRoute(const HttpRoute& route, const std::string& body) {
  RouteMatch match;
  match.route = &route;
  HttpRequest request;
  request.verb = route.verb;
  request.path = "/api/v2";
  for (const rest::PathSegment& segment : route.segments) {
    if (segment.is_variable) {
      match.variables.emplace_back(segment.text, kPathId);
      absl::StrAppend(&request.path, "/", kPathId);
    } else if (segment.text != "api" && segment.text != "v2") {
      absl::StrAppend(&request.path, "/", segment.text);
    }
  }
  absl::StrAppend(&request.path, "/");
  request.content_type = "application/json";
  request.body = body;
  request.base_url = "http://localhost:8000";
  return Built{&route, rest::BuildRequestMessage(match, request,
                                                 rest::TranscoderOptions())};
}

void CheckBuilt(const Built& built) {
  const std::string name =
      absl::StrCat(built.route->verb, " ", built.route->path_template);
  if (!built.message.ok()) {
    const absl::Status& status = built.message.status();
    JOBLINE_FUZZ_CHECK(absl::IsInvalidArgument(status), name, ": ",
                       status.ToString());
    const rest::HttpResponse response = rest::ErrorResponse(status);
    JOBLINE_FUZZ_CHECK(response.status == 400, name, ": status ",
                       response.status);
    JOBLINE_FUZZ_CHECK(nlohmann::json::accept(response.body), name,
                       ": error body is not JSON: ", response.body);
    return;
  }
  const Message& message = **built.message;
  JOBLINE_FUZZ_CHECK(
      message.GetDescriptor() == built.route->method->input_type(), name,
      ": built a ", message.GetDescriptor()->full_name());
  std::unique_ptr<Message> parsed(message.New());
  JOBLINE_FUZZ_CHECK(parsed->ParseFromString(message.SerializeAsString()) &&
                         SameMessage(message, *parsed),
                     name, ": the request changes through serialization");
  std::string json;
  JOBLINE_FUZZ_CHECK(
      google::protobuf::util::MessageToJsonString(message, &json).ok(), name,
      ": the request does not print as JSON: ", message.ShortDebugString());
}

// A field error lists violations, each naming one of the fields of
// JobInput, each field once.
void CheckInputError(const absl::Status& status, absl::string_view what) {
  JOBLINE_FUZZ_CHECK(absl::IsInvalidArgument(status), what, ": ",
                     status.ToString());
  const std::optional<google::rpc::BadRequest> bad_request =
      GetBadRequest(status);
  JOBLINE_FUZZ_CHECK(
      bad_request.has_value() && bad_request->field_violations_size() >= 1,
      what, ": no field violation in ", status.ToString());
  if (!bad_request.has_value()) return;
  std::vector<std::string> seen;
  for (const auto& violation : bad_request->field_violations()) {
    const std::string& field = violation.field();
    bool known = field == "update_mask";
    for (absl::string_view input_field : JobInputFields()) {
      known = known || field == input_field;
    }
    JOBLINE_FUZZ_CHECK(known, what, ": violation on \"", field, "\"");
    JOBLINE_FUZZ_CHECK(std::find(seen.begin(), seen.end(), field) == seen.end(),
                       what, ": two violations on \"", field, "\"");
    seen.push_back(field);
  }
}

void CheckJobInputRules(const v2::JobInput& input) {
  const absl::Status create = ValidateJobInput(input, InputMode::kCreate);
  const absl::Status replace = ValidateJobInput(input, InputMode::kReplace);
  const absl::Status patch = ValidateJobInput(input, InputMode::kPatch);
  if (!create.ok()) CheckInputError(create, "kCreate");
  if (!replace.ok()) CheckInputError(replace, "kReplace");
  if (!patch.ok()) CheckInputError(patch, "kPatch");
  JOBLINE_FUZZ_CHECK(!create.ok() || (replace.ok() && patch.ok()),
                     "kCreate accepts ", input.ShortDebugString(),
                     " but kReplace says ", replace.ToString(),
                     " and kPatch says ", patch.ToString());
  if (!create.ok()) return;

  // A job made from the input, and the input it gives back.
  v2::Job job;
  ApplyJobInput(input, InputMode::kCreate, job);
  const v2::JobInput back = JobInputFromJob(job);
  const absl::Status again = ValidateJobInput(back, InputMode::kCreate);
  JOBLINE_FUZZ_CHECK(again.ok(), "the input of a job made from ",
                     input.ShortDebugString(),
                     " is refused: ", again.ToString());
  v2::Job remade = job;
  ApplyJobInput(back, InputMode::kReplace, remade);
  JOBLINE_FUZZ_CHECK(SameMessage(job, remade),
                     "the job's own input changes it: ", job.ShortDebugString(),
                     " became ", remade.ShortDebugString());
  JOBLINE_FUZZ_CHECK(
      job.job_type().key() == (input.has_job_type_key() ? input.job_type_key()
                                                        : kDefaultJobTypeKey),
      "job type ", job.job_type().key());
}

void CheckPatch(const Built& built) {
  const v2::JobInput* input = JobInputOf(built);
  if (input == nullptr) return;
  const auto& request =
      static_cast<const v2::UpdateJobRequest&>(**built.message);
  const google::protobuf::FieldMask& mask = request.update_mask();

  // The mask names JobInput fields, and every field the body set.
  for (const std::string& path : mask.paths()) {
    JOBLINE_FUZZ_CHECK(
        v2::JobInput::descriptor()->FindFieldByName(path) != nullptr,
        "mask path \"", path, "\" is no JobInput field");
  }
  std::vector<const FieldDescriptor*> set_fields;
  input->GetReflection()->ListFields(*input, &set_fields);
  for (const FieldDescriptor* field : set_fields) {
    bool listed = false;
    for (const std::string& path : mask.paths()) {
      listed = listed || path == field->name();
    }
    JOBLINE_FUZZ_CHECK(listed, "the body set ", field->name(),
                       " but the mask does not list it");
  }

  // The patch rules, as UpdateJob applies them to a stored job.
  const absl::StatusOr<v2::JobInput> masked = MaskJobInput(*input, mask);
  if (!masked.ok()) {
    CheckInputError(masked.status(), "MaskJobInput");
    return;
  }
  const absl::Status patch = ValidateJobInput(*masked, InputMode::kPatch);
  JOBLINE_FUZZ_CHECK(patch.ok(), "MaskJobInput gave an input kPatch refuses: ",
                     patch.ToString());
  v2::Job job;
  job.set_name("Populate captures for collection 111");
  job.mutable_project()->set_id(16);
  job.mutable_job_type()->set_key("populate_captures_collection");
  v2::JobInput merged = JobInputFromJob(job);
  OverlayJobInput(*masked, mask, merged);
  ApplyJobInput(merged, InputMode::kPatch, job);
}

}  // namespace

int JsonBodyOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);

  // Every body route reads the same bytes.
  std::vector<Built> job_routes;
  for (const HttpRoute& route : rest::RouteTable::Jobline().routes()) {
    if (route.body.empty()) continue;
    Built built = BuildForRoute(route, body);
    CheckBuilt(built);
    if (route.method->input_type() == v2::CreateJobRequest::descriptor() ||
        route.method->input_type() == v2::UpdateJobRequest::descriptor()) {
      job_routes.push_back(std::move(built));
    }
  }
  JOBLINE_FUZZ_CHECK(job_routes.size() == 3, job_routes.size(),
                     " job routes with a body");

  // The job routes agree on the body.
  const v2::JobInput* first = nullptr;
  for (const Built& built : job_routes) {
    JOBLINE_FUZZ_CHECK(built.message.ok() == job_routes[0].message.ok(),
                       built.route->verb, " ", built.route->path_template,
                       " says ", built.message.status().ToString(), " but ",
                       job_routes[0].route->verb, " ",
                       job_routes[0].route->path_template, " says ",
                       job_routes[0].message.status().ToString());
    const v2::JobInput* input = JobInputOf(built);
    if (input == nullptr) continue;
    if (first == nullptr) {
      first = input;
      CheckJobInputRules(*input);
    }
    JOBLINE_FUZZ_CHECK(SameMessage(*first, *input), built.route->verb, " read ",
                       input->ShortDebugString(), " where another route read ",
                       first->ShortDebugString());
    if (built.route->verb == "PATCH") CheckPatch(built);
  }
  return 0;
}

}  // namespace fuzz
}  // namespace jobline
