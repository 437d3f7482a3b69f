// jobctl: the command line client of Jobline's JobService and
// CatalogService.
//
//   jobctl COMMAND [ARGUMENTS] [FLAGS]
//
// Each command makes its call through JobClient and prints the answer: a
// short text for people by default, or with --json the document the REST
// API would answer (client/job_document.h). `jobctl help` lists the
// commands and their flags.
//
// Flags may come before or after the command, written "--flag=value" or
// "--flag value"; boolean flags stand alone ("--json") or take "=false".
//
// Exit status: 0 on success; 1 when the call fails (the server's error, or
// an unreadable import file), printed as "jobctl: <CODE>: <message>"; 2 for
// a usage error (an unknown command or flag, a bad value), printed with a
// pointer to `jobctl help`. `watch` has its own statuses, which tell how
// the job ended (client/jobctl_watch.h); its usage errors exit 3.
//
// The program runs in two steps so that the two kinds of error stay apart:
// Plan() checks the command line and builds the request without touching
// the network, and the planned Action makes the call and prints.

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "client/catalog_file.h"
#include "client/job_client.h"
#include "client/job_document.h"
#include "client/jobctl_text.h"
#include "client/jobctl_watch.h"
#include "client/status_util.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/util/json_util.h"
#include "jobline/v2/catalog.pb.h"
#include "jobline/v2/jobs.pb.h"

namespace jobline {
namespace {

constexpr absl::string_view kDefaultServer = "localhost:50051";
constexpr absl::string_view kDefaultBaseUrl = "http://localhost:8000";
constexpr absl::string_view kDefaultTimeZone = "UTC";

// Log lines `get` shows when --logs_limit is not given.
constexpr int kSummaryLogLines = 10;

// ---- The command set ----

enum class FlagKind {
  kText,     // Any text, possibly empty.
  kInteger,  // A 64-bit integer; an empty value means "no value".
  kBoolean,  // Stands alone, or "=true" / "=false".
};

struct FlagSpec {
  absl::string_view name;
  FlagKind kind;
  // Placeholder of the value in the help text ("ID"); empty for booleans.
  absl::string_view value_name;
  absl::string_view help;
};

// What a command takes besides flags.
enum class Operand { kNone, kJobId, kFile };

struct CommandSpec {
  absl::string_view name;
  Operand operand;
  absl::string_view summary;
  // The job field flags (kJobFieldFlags) for create and update, else empty.
  absl::Span<const FlagSpec> job_field_flags;
  // The command's other flags.
  absl::Span<const FlagSpec> flags;
};

// Flags every command accepts. A flag name has the same kind wherever it
// appears, so the command line can be split before the command is known.
constexpr FlagSpec kGlobalFlags[] = {
    {"server", FlagKind::kText, "HOST:PORT",
     "the Jobline server (default localhost:50051)"},
    {"json", FlagKind::kBoolean, "",
     "print the REST API's JSON document instead of text"},
    {"base_url", FlagKind::kText, "URL",
     "scheme://host:port of links in --json output (default "
     "http://localhost:8000)"},
    {"time_zone", FlagKind::kText, "ZONE",
     "zone of the times shown, e.g. America/New_York (default UTC)"},
    {"help", FlagKind::kBoolean, "", "print this help"},
};

// The writable job fields, shared by create and update.
constexpr FlagSpec kJobFieldFlags[] = {
    {"name", FlagKind::kText, "TEXT", "name of the job"},
    {"project", FlagKind::kInteger, "ID", "project id"},
    {"delay", FlagKind::kInteger, "SECONDS",
     "seconds of simulated work (default 0)"},
    {"limit", FlagKind::kInteger, "N", "most images an ML job processes"},
    {"shuffle", FlagKind::kBoolean, "",
     "process images in random order (default true; --shuffle=false)"},
    {"deployment", FlagKind::kInteger, "ID", "deployment (station) id"},
    {"collection", FlagKind::kInteger, "ID", "capture collection id"},
    {"capture", FlagKind::kInteger, "ID", "single capture id"},
    {"pipeline", FlagKind::kInteger, "ID", "pipeline id"},
    {"type", FlagKind::kText, "KEY",
     "job type key: ml, populate_captures_collection, data_storage_sync, "
     "regroup_events, unknown, data_export, post_processing"},
};

constexpr FlagSpec kCreateFlags[] = {
    {"start_now", FlagKind::kBoolean, "", "enqueue the job at once"},
};

constexpr FlagSpec kGetFlags[] = {
    {"logs_limit", FlagKind::kInteger, "N",
     "fetch and show the N newest log lines (default: show 10)"},
};

constexpr FlagSpec kListFlags[] = {
    {"status", FlagKind::kText, "STATUS", "e.g. CREATED, SUCCESS"},
    {"project", FlagKind::kInteger, "ID", "jobs of this project"},
    {"project_id", FlagKind::kInteger, "ID",
     "the active project (ignored when it does not exist)"},
    {"deployment", FlagKind::kInteger, "ID", "deployment id"},
    {"collection", FlagKind::kInteger, "ID", "capture collection id"},
    {"capture", FlagKind::kInteger, "ID", "single capture id"},
    {"pipeline", FlagKind::kInteger, "ID", "pipeline id"},
    {"pipeline_slug", FlagKind::kText, "SLUG", "pipeline slug"},
    {"pipeline_slug_in", FlagKind::kText, "SLUG,...",
     "any of these pipeline slugs"},
    {"type", FlagKind::kText, "KEY", "job type key"},
    {"dispatch_mode", FlagKind::kText, "MODE",
     "internal, sync_api or async_api"},
    {"incomplete_only", FlagKind::kBoolean, "", "leave out finished jobs"},
    {"ids_only", FlagKind::kBoolean, "", "ids and pipeline slugs only"},
    {"search", FlagKind::kText, "TERMS", "words in the job or pipeline name"},
    {"ordering", FlagKind::kText, "FIELD,...",
     "e.g. -created_at,name (\"-\" for descending)"},
    {"limit", FlagKind::kInteger, "N", "page size (default 10)"},
    {"offset", FlagKind::kInteger, "N", "jobs to skip (default 0)"},
};

constexpr FlagSpec kUpdateFlags[] = {
    {"patch", FlagKind::kBoolean, "",
     "change only the flags given; an empty number (--limit=) clears the "
     "field"},
};

constexpr FlagSpec kWatchFlags[] = {
    {"after", FlagKind::kInteger, "N",
     "resume after change N (the [seq N] of an earlier watch)"},
    {"reconnect_timeout", FlagKind::kInteger, "SECONDS",
     "give up after this long without a connection (default 60)"},
};

constexpr FlagSpec kReapFlags[] = {
    {"minutes", FlagKind::kInteger, "N",
     "reap jobs without an update for N minutes (default 10)"},
    {"dry-run", FlagKind::kBoolean, "", "list them without changing them"},
};

constexpr CommandSpec kCommands[] = {
    {"create", Operand::kNone, "Create a job.", kJobFieldFlags, kCreateFlags},
    {"get",
     Operand::kJobId,
     "Show a job with its newest log lines.",
     {},
     kGetFlags},
    {"list", Operand::kNone, "List jobs, newest first.", {}, kListFlags},
    {"update", Operand::kJobId,
     "Replace a job's fields (--name and --project required), or with "
     "--patch change only the flags given.",
     kJobFieldFlags, kUpdateFlags},
    {"delete", Operand::kJobId, "Delete a job.", {}, {}},
    {"run", Operand::kJobId, "Enqueue a job.", {}, {}},
    {"retry",
     Operand::kJobId,
     "Reset a job's progress and enqueue it.",
     {},
     {}},
    {"cancel", Operand::kJobId, "Cancel a job.", {}, {}},
    {"watch",
     Operand::kJobId,
     "Follow a job until it finishes: on a terminal a live view redrawn in "
     "place, otherwise one line per change and each new log line (--json: "
     "one JSON document per change). Reconnects by itself when the "
     "connection is lost. Exit status: 0 SUCCESS, 1 FAILURE or another "
     "error, 2 REVOKED, 3 unknown job or bad command line, 4 no connection "
     "for --reconnect_timeout, 130 interrupted.",
     {},
     kWatchFlags},
    {"import",
     Operand::kFile,
     "Upsert the reference records of a catalogue file (the JSON form of "
     "jobline.v2.Catalog, as tools/demo-catalog.json).",
     {},
     {}},
    {"reap",
     Operand::kNone,
     "Revoke stale jobs: jobs in a running status that nobody updated for a "
     "while (the server also does this once a minute).",
     {},
     kReapFlags},
    {"help", Operand::kNone, "Print this help.", {}, {}},
};

const CommandSpec* FindCommand(absl::string_view name) {
  for (const CommandSpec& command : kCommands) {
    if (command.name == name) return &command;
  }
  return nullptr;
}

const FlagSpec* FindFlag(absl::Span<const FlagSpec> flags,
                         absl::string_view name) {
  for (const FlagSpec& flag : flags) {
    if (flag.name == name) return &flag;
  }
  return nullptr;
}

// The spec of flag `name` for `command`, global flags included; null when
// the command has no such flag.
const FlagSpec* FindCommandFlag(const CommandSpec& command,
                                absl::string_view name) {
  if (const FlagSpec* flag = FindFlag(kGlobalFlags, name)) return flag;
  if (const FlagSpec* flag = FindFlag(command.job_field_flags, name)) {
    return flag;
  }
  return FindFlag(command.flags, name);
}

// The spec of flag `name` in any command, or null for an unknown name.
const FlagSpec* FindAnyFlag(absl::string_view name) {
  for (const CommandSpec& command : kCommands) {
    if (const FlagSpec* flag = FindCommandFlag(command, name)) return flag;
  }
  return nullptr;
}

// Appends `text` to `out` wrapped at 80 columns, every line starting at
// column `indent`. `column` is where `out` currently ends on its line; when
// that leaves no room before the indent the text starts on a new line.
void AppendWrapped(absl::string_view text, size_t indent, size_t column,
                   std::string& out) {
  constexpr size_t kWidth = 80;
  if (column >= indent) {
    out += '\n';
    column = 0;
  }
  bool line_empty = true;
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    if (!line_empty && column + 1 + word.size() > kWidth) {
      out += '\n';
      column = 0;
      line_empty = true;
    }
    if (line_empty) {
      out.append(indent - column, ' ');
      column = indent;
    } else {
      out += ' ';
      ++column;
    }
    out.append(word.data(), word.size());
    column += word.size();
    line_empty = false;
  }
  out += '\n';
}

// One flag in the help text: "    --name=TEXT   help", wrapped.
std::string FlagUsage(const FlagSpec& flag) {
  constexpr size_t kHelpColumn = 28;
  std::string text = absl::StrCat("    --", flag.name);
  if (!flag.value_name.empty()) absl::StrAppend(&text, "=", flag.value_name);
  AppendWrapped(flag.help, kHelpColumn, text.size(), text);
  return text;
}

std::string OperandUsage(Operand operand) {
  switch (operand) {
    case Operand::kNone:
      return "";
    case Operand::kJobId:
      return " ID";
    case Operand::kFile:
      return " FILE.json";
  }
  return "";
}

// The text of `jobctl help`, built from the command specs.
std::string HelpText() {
  std::string text =
      "jobctl: the command line client of Jobline's job service.\n"
      "\n"
      "Usage: jobctl COMMAND [ARGUMENTS] [FLAGS]\n"
      "Flags go before or after the command, as --flag=value or "
      "--flag value.\n"
      "Exit status: 0 done, 1 the call failed, 2 bad command line (watch: "
      "below).\n"
      "\n"
      "Commands:\n";
  for (const CommandSpec& command : kCommands) {
    absl::StrAppend(&text, "  ", command.name, OperandUsage(command.operand),
                    "\n");
    AppendWrapped(command.summary, 6, 0, text);
    for (const FlagSpec& flag : command.job_field_flags) {
      absl::StrAppend(&text, FlagUsage(flag));
    }
    for (const FlagSpec& flag : command.flags) {
      absl::StrAppend(&text, FlagUsage(flag));
    }
  }
  absl::StrAppend(&text, "\nFlags of every command:\n");
  for (const FlagSpec& flag : kGlobalFlags) {
    absl::StrAppend(&text, FlagUsage(flag));
  }
  return text;
}

// ---- Parsing the command line ----

// The command line split into its parts; flag values are still text.
struct CommandLine {
  std::string command;
  // Arguments after the command that are not flags.
  std::vector<std::string> operands;
  // Flag name -> value as given; booleans are "true" or "false". A flag
  // given twice keeps its last value.
  std::map<std::string, std::string> flags;

  bool Has(absl::string_view name) const {
    return flags.count(std::string(name)) > 0;
  }
  // The value of flag `name`, or `fallback` when it was not given.
  std::string Get(absl::string_view name,
                  absl::string_view fallback = "") const {
    const auto it = flags.find(std::string(name));
    return it == flags.end() ? std::string(fallback) : it->second;
  }
  bool GetBoolean(absl::string_view name) const {
    return Get(name, "false") == "true";
  }
};

absl::Status UsageError(absl::string_view message) {
  return absl::InvalidArgumentError(message);
}

// "true" or "false" for the spellings of a boolean flag value.
absl::StatusOr<std::string> NormalizeBoolean(absl::string_view flag,
                                             absl::string_view value) {
  const std::string lower = absl::AsciiStrToLower(value);
  if (lower == "true" || lower == "1" || lower == "yes") return "true";
  if (lower == "false" || lower == "0" || lower == "no") return "false";
  return UsageError(absl::StrCat("--", flag, ": expected true or false, got \"",
                                 value, "\""));
}

// Whether `arg` is written as a flag: "--name", "--name=value", or the
// single-dash form "-name". "-5" and "-" are operands.
bool LooksLikeFlag(absl::string_view arg) {
  if (absl::StartsWith(arg, "--")) return arg.size() > 2;
  return arg.size() > 1 && arg[0] == '-' && absl::ascii_isalpha(arg[1]);
}

// Splits `args` (argv without the program name) into command, operands and
// flags in `line`. Fails, naming the argument, on an unknown flag, a flag
// that needs a value and has none, or a bad boolean; `line` then still
// holds the command (so that its exit status for usage errors applies)
// and the first error is returned. "--" ends the flags.
absl::Status ParseCommandLine(const std::vector<std::string>& args,
                              CommandLine& line) {
  absl::Status first_error;
  const auto error = [&first_error](absl::string_view message) {
    if (first_error.ok()) first_error = UsageError(message);
  };
  std::vector<std::string> words;
  bool flags_ended = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const absl::string_view arg = args[i];
    if (flags_ended || !LooksLikeFlag(arg)) {
      words.emplace_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_ended = true;
      continue;
    }

    // Name and the value written after "=", if any.
    absl::string_view body =
        absl::StripPrefix(absl::StripPrefix(arg, "-"), "-");
    std::optional<std::string> value;
    const size_t equals = body.find('=');
    if (equals != absl::string_view::npos) {
      value = std::string(body.substr(equals + 1));
      body = body.substr(0, equals);
    }
    const FlagSpec* spec = FindAnyFlag(body);
    if (spec == nullptr) {
      error(absl::StrCat("unknown flag --", body));
      continue;
    }

    // A boolean stands alone; any other flag takes "=value" or the next
    // argument, unless that argument is itself a "--" flag.
    if (spec->kind == FlagKind::kBoolean) {
      absl::StatusOr<std::string> normalized =
          NormalizeBoolean(spec->name, value.value_or("true"));
      if (!normalized.ok()) {
        error(normalized.status().message());
        continue;
      }
      value = *std::move(normalized);
    } else if (!value.has_value()) {
      if (i + 1 == args.size() || absl::StartsWith(args[i + 1], "--")) {
        error(absl::StrCat("flag --", spec->name, " needs a value"));
        continue;
      }
      value = args[++i];
    }
    line.flags[std::string(spec->name)] = *std::move(value);
  }

  if (!words.empty()) {
    line.command = words.front();
    line.operands.assign(words.begin() + 1, words.end());
  }
  return first_error;
}

// A signed 64-bit integer written in decimal.
absl::StatusOr<int64_t> ParseInteger(absl::string_view what,
                                     absl::string_view text) {
  int64_t number = 0;
  if (!absl::SimpleAtoi(text, &number) ||
      absl::StripAsciiWhitespace(text).size() != text.size()) {
    return UsageError(
        absl::StrCat(what, ": expected an integer, got \"", text, "\""));
  }
  return number;
}

// Checks that every flag of `line` belongs to its command and that the
// operands match what the command takes.
absl::Status CheckCommandLine(const CommandLine& line,
                              const CommandSpec& command) {
  for (const auto& [name, value] : line.flags) {
    if (FindCommandFlag(command, name) == nullptr) {
      return UsageError(absl::StrCat("flag --", name, " is not valid for '",
                                     command.name, "'"));
    }
  }
  const size_t wanted = command.operand == Operand::kNone ? 0 : 1;
  if (line.operands.size() == wanted) return absl::OkStatus();
  if (wanted == 0) {
    return UsageError(absl::StrCat("'", command.name,
                                   "' takes no arguments, got \"",
                                   line.operands.front(), "\""));
  }
  const std::string usage =
      absl::StrCat("jobctl ", command.name, OperandUsage(command.operand));
  if (line.operands.empty()) {
    return UsageError(absl::StrCat("'", command.name, "' needs",
                                   OperandUsage(command.operand), ": ", usage));
  }
  return UsageError(absl::StrCat(
      "'", command.name, "' takes one argument, got ", line.operands.size(),
      " (\"", absl::StrJoin(line.operands, "\" \""), "\"): ", usage));
}

// The job id operand: a positive integer.
absl::StatusOr<int64_t> ParseJobId(absl::string_view text) {
  int64_t id = 0;
  if (!absl::SimpleAtoi(text, &id) || id <= 0 ||
      absl::StripAsciiWhitespace(text).size() != text.size()) {
    return UsageError(
        absl::StrCat("job id must be a positive integer, got \"", text, "\""));
  }
  return id;
}

// ---- Building requests ----

// Sets field `field_name` of `message` from the value of `flag`, converted
// to the field's type (int64, int32, string or bool). An empty value leaves
// a numeric field unset. Fails, naming the flag, on a bad number.
absl::Status SetFieldFromFlag(absl::string_view flag, absl::string_view value,
                              absl::string_view field_name,
                              google::protobuf::Message& message) {
  const google::protobuf::FieldDescriptor* field =
      message.GetDescriptor()->FindFieldByName(std::string(field_name));
  if (field == nullptr) {
    return absl::InternalError(absl::StrCat("no field ", field_name));
  }
  const google::protobuf::Reflection* reflection = message.GetReflection();
  const std::string flag_name = absl::StrCat("--", flag);
  switch (field->cpp_type()) {
    case google::protobuf::FieldDescriptor::CPPTYPE_STRING:
      reflection->SetString(&message, field, std::string(value));
      return absl::OkStatus();
    case google::protobuf::FieldDescriptor::CPPTYPE_BOOL:
      reflection->SetBool(&message, field, value == "true");
      return absl::OkStatus();
    case google::protobuf::FieldDescriptor::CPPTYPE_INT64:
    case google::protobuf::FieldDescriptor::CPPTYPE_INT32: {
      if (value.empty()) return absl::OkStatus();
      absl::StatusOr<int64_t> number = ParseInteger(flag_name, value);
      if (!number.ok()) return number.status();
      if (field->cpp_type() ==
          google::protobuf::FieldDescriptor::CPPTYPE_INT64) {
        reflection->SetInt64(&message, field, *number);
      } else if (*number < std::numeric_limits<int32_t>::min() ||
                 *number > std::numeric_limits<int32_t>::max()) {
        return UsageError(absl::StrCat(flag_name, ": ", *number,
                                       " is outside the 32-bit range"));
      } else {
        reflection->SetInt32(&message, field, static_cast<int32_t>(*number));
      }
      return absl::OkStatus();
    }
    default:
      return absl::InternalError(
          absl::StrCat("field ", field_name, " has an unsupported type"));
  }
}

// A command line flag and the request field (the REST name) it sets.
struct FlagField {
  absl::string_view flag;
  absl::string_view field;
};

// Flags of create and update -> JobInput fields; the field names are also
// the update_mask paths.
constexpr FlagField kJobInputFields[] = {
    {"name", "name"},
    {"project", "project_id"},
    {"delay", "delay"},
    {"limit", "limit"},
    {"shuffle", "shuffle"},
    {"deployment", "deployment_id"},
    {"collection", "source_image_collection_id"},
    {"capture", "source_image_single_id"},
    {"pipeline", "pipeline_id"},
    {"type", "job_type_key"},
};

// Flags of list -> ListJobsRequest fields, which are also the REST query
// parameters.
constexpr FlagField kListFields[] = {
    {"status", "status"},
    {"project", "project"},
    {"project_id", "project_id"},
    {"deployment", "deployment"},
    {"collection", "source_image_collection"},
    {"capture", "source_image_single"},
    {"pipeline", "pipeline"},
    {"pipeline_slug", "pipeline__slug"},
    {"pipeline_slug_in", "pipeline__slug__in"},
    {"type", "job_type_key"},
    {"dispatch_mode", "dispatch_mode"},
    {"incomplete_only", "incomplete_only"},
    {"ids_only", "ids_only"},
    {"search", "search"},
    {"ordering", "ordering"},
    {"limit", "limit"},
    {"offset", "offset"},
};

// A JobInput holding the job fields given on `line`, and the paths of
// those fields in flag order.
struct JobFields {
  v2::JobInput input;
  std::vector<std::string> paths;
};

absl::StatusOr<JobFields> BuildJobInput(const CommandLine& line) {
  JobFields result;
  for (const FlagField& mapping : kJobInputFields) {
    if (!line.Has(mapping.flag)) continue;
    const absl::Status status = SetFieldFromFlag(
        mapping.flag, line.Get(mapping.flag), mapping.field, result.input);
    if (!status.ok()) return status;
    result.paths.emplace_back(mapping.field);
  }
  return result;
}

absl::StatusOr<v2::ListJobsRequest> BuildListRequest(const CommandLine& line) {
  v2::ListJobsRequest request;
  for (const FlagField& mapping : kListFields) {
    if (!line.Has(mapping.flag)) continue;
    const absl::Status status = SetFieldFromFlag(
        mapping.flag, line.Get(mapping.flag), mapping.field, request);
    if (!status.ok()) return status;
  }
  return request;
}

// The REST query parameters of a list command line other than limit and
// offset (which ListPageLinks sets), for the next/previous links.
std::vector<std::pair<std::string, std::string>> ListQuery(
    const CommandLine& line) {
  std::vector<std::pair<std::string, std::string>> query;
  for (const FlagField& mapping : kListFields) {
    if (mapping.flag == "limit" || mapping.flag == "offset") continue;
    if (!line.Has(mapping.flag)) continue;
    const std::string value = line.Get(mapping.flag);
    const FlagSpec* spec = FindAnyFlag(mapping.flag);
    // A false boolean is the same as an absent one.
    if (spec->kind == FlagKind::kBoolean && value != "true") continue;
    query.emplace_back(std::string(mapping.field), value);
  }
  return query;
}

// ---- Text for people ----

std::string TimeText(bool present, const google::protobuf::Timestamp& time,
                     absl::TimeZone zone) {
  return present ? IsoDateTime(time, zone) : "-";
}

// The readable summary that `get` prints: the job's fields, one per line,
// its stages with their params, and at most `max_log_lines` of its newest
// log lines (all of them when negative).
std::string JobSummaryText(const v2::Job& job, absl::TimeZone zone,
                           int max_log_lines) {
  std::string text;
  const auto field = [&text](absl::string_view label, absl::string_view value) {
    absl::StrAppendFormat(&text, "%-12s%s\n", absl::StrCat(label, ":"), value);
  };

  // Identity and references.
  field("id", absl::StrCat(job.id()));
  field("name", OneLine(job.name()));
  field("status", v2::JobStatus_Name(job.status()));
  field("type",
        absl::StrCat(job.job_type().key(), " (", job.job_type().name(), ")"));
  if (job.has_project()) {
    field("project",
          absl::StrCat(job.project().id(), " ", OneLine(job.project().name())));
  }
  if (job.has_deployment()) {
    field("deployment", absl::StrCat(job.deployment().id(), " ",
                                     OneLine(job.deployment().name())));
  }
  if (job.has_source_image_collection()) {
    const v2::CaptureCollection& collection = job.source_image_collection();
    field("collection",
          absl::StrCat(collection.id(), " ", OneLine(collection.name()), " (",
                       collection.method(), ")"));
  }
  if (job.has_source_image_single()) {
    field("capture", absl::StrCat(job.source_image_single().id()));
  }
  if (job.has_pipeline()) {
    field("pipeline",
          absl::StrCat(job.pipeline().id(), " ", OneLine(job.pipeline().name()),
                       " (", job.pipeline().slug(), " v",
                       job.pipeline().version(), ")"));
  }
  if (job.has_data_export()) {
    field("export", absl::StrCat(job.data_export().id(), " (",
                                 job.data_export().format(), ")"));
  }
  field("options",
        absl::StrCat("delay ", job.delay(), " s, limit ",
                     job.has_limit() ? absl::StrCat(job.limit()) : "none",
                     ", shuffle ", job.shuffle() ? "on" : "off", ", dispatch ",
                     job.dispatch_mode()));

  // Times.
  field("created", TimeText(job.has_created_at(), job.created_at(), zone));
  field("updated", TimeText(job.has_updated_at(), job.updated_at(), zone));
  field("started", TimeText(job.has_started_at(), job.started_at(), zone));
  field("finished", TimeText(job.has_finished_at(), job.finished_at(), zone));
  field("duration", job.has_duration()
                        ? absl::StrCat(DurationText(job.duration()), " s")
                        : "-");

  // Progress, stage by stage.
  const v2::JobProgress& progress = job.progress();
  field("progress",
        absl::StrCat(PercentText(progress.summary().progress()), " ",
                     v2::JobStatus_Name(progress.summary().status())));
  for (const v2::ProgressStage& stage : progress.stages()) {
    absl::StrAppend(&text, "  ", OneLine(stage.name()), " [", stage.key(),
                    "]: ", PercentText(stage.progress()), " ",
                    v2::JobStatus_Name(stage.status()), "\n");
    for (const v2::StageParam& param : stage.params()) {
      absl::StrAppend(&text, "    ", OneLine(param.name()), ": ",
                      OneLine(ParamValueText(param.value())), "\n");
    }
  }
  for (const std::string& error : progress.errors()) {
    absl::StrAppend(&text, "  error: ", OneLine(error), "\n");
  }

  // Newest log lines; the job carries them newest first.
  const int fetched = job.logs().stdout_size();
  const int shown =
      max_log_lines < 0 ? fetched : std::min(fetched, max_log_lines);
  field("logs", shown == 0 ? "none" : "newest first");
  for (int i = 0; i < shown; ++i) {
    absl::StrAppend(&text, "  ", OneLine(job.logs().stdout(i)), "\n");
  }
  if (shown < fetched) {
    absl::StrAppend(&text, "  (", fetched - shown,
                    " older lines; --logs_limit=N shows N lines)\n");
  }
  return text;
}

// The table that `list` prints (id, status, type, name), then
// "N of M jobs". With `ids_only` only the ids are listed.
std::string JobTableText(const v2::ListJobsResponse& response, bool ids_only) {
  std::vector<std::vector<std::string>> rows;
  if (ids_only) {
    rows.push_back({"ID"});
  } else {
    rows.push_back({"ID", "STATUS", "TYPE", "NAME"});
  }
  for (const v2::Job& job : response.results()) {
    if (ids_only) {
      rows.push_back({absl::StrCat(job.id())});
    } else {
      rows.push_back({absl::StrCat(job.id()), v2::JobStatus_Name(job.status()),
                      job.job_type().key(), OneLine(job.name())});
    }
  }

  // Every column but the last is padded to its widest cell.
  std::vector<size_t> widths(rows.front().size(), 0);
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  std::string text;
  if (response.results_size() > 0) {
    for (const auto& row : rows) {
      for (size_t i = 0; i < row.size(); ++i) {
        if (i + 1 < row.size()) {
          absl::StrAppendFormat(&text, "%-*s  ", static_cast<int>(widths[i]),
                                row[i]);
        } else {
          absl::StrAppend(&text, row[i], "\n");
        }
      }
    }
  }
  absl::StrAppend(&text, response.results_size(), " of ", response.count(),
                  " jobs");
  if (response.offset() > 0) {
    absl::StrAppend(&text, ", from offset ", response.offset());
  }
  absl::StrAppend(&text, "\n");
  return text;
}

// "1 project" or "2 projects".
std::string CountText(int64_t count, absl::string_view singular,
                      absl::string_view plural) {
  return absl::StrCat(count, " ", count == 1 ? singular : plural);
}

// The line that `import` prints, e.g. "imported 2 projects, 1 deployment,
// ...".
std::string ImportCountsText(const v2::ImportCatalogResponse& counts) {
  return absl::StrCat(
      "imported ",
      absl::StrJoin(
          {CountText(counts.projects(), "project", "projects"),
           CountText(counts.deployments(), "deployment", "deployments"),
           CountText(counts.pipelines(), "pipeline", "pipelines"),
           CountText(counts.capture_collections(), "capture collection",
                     "capture collections"),
           CountText(counts.captures(), "capture", "captures"),
           CountText(counts.data_exports(), "data export", "data exports")},
          ", "),
      "\n");
}

// The import counts as a JSON object, in the order of the message.
std::string ImportCountsJson(const v2::ImportCatalogResponse& counts) {
  nlohmann::ordered_json document = nlohmann::ordered_json::object();
  document["projects"] = counts.projects();
  document["deployments"] = counts.deployments();
  document["pipelines"] = counts.pipelines();
  document["capture_collections"] = counts.capture_collections();
  document["captures"] = counts.captures();
  document["data_exports"] = counts.data_exports();
  return ToJsonText(document);
}

// ---- Commands ----

// How answers are printed.
struct OutputOptions {
  bool json = false;
  DocumentOptions document;
};

absl::StatusOr<OutputOptions> BuildOutputOptions(const CommandLine& line) {
  OutputOptions options;
  options.json = line.GetBoolean("json");
  options.document.base_url = line.Get("base_url", kDefaultBaseUrl);
  while (absl::EndsWith(options.document.base_url, "/")) {
    options.document.base_url.pop_back();
  }
  const std::string zone_name = line.Get("time_zone", kDefaultTimeZone);
  if (!absl::LoadTimeZone(zone_name, &options.document.zone)) {
    return UsageError(
        absl::StrCat("--time_zone: unknown time zone \"", zone_name, "\""));
  }
  return options;
}

// A planned command: makes its call(s) through the client and prints the
// answer to `out`. A non-OK status is the failure to report (exit 1).
using Action = std::function<absl::Status(const JobClient&, std::ostream&)>;

// Prints a job answered by an action: the JSON document, or the line
// `human(job)`.
absl::Status PrintJob(const absl::StatusOr<v2::Job>& job,
                      const OutputOptions& options,
                      const std::function<std::string(const v2::Job&)>& human,
                      std::ostream& out) {
  if (!job.ok()) return job.status();
  out << (options.json ? RenderJob(*job, options.document) : human(*job))
      << "\n";
  return absl::OkStatus();
}

std::string StatusLine(const v2::Job& job) {
  return absl::StrCat("job ", job.id(), ": ", v2::JobStatus_Name(job.status()));
}

absl::StatusOr<Action> PlanCreate(const CommandLine& line,
                                  const OutputOptions& options) {
  absl::StatusOr<JobFields> fields = BuildJobInput(line);
  if (!fields.ok()) return fields.status();
  const bool start_now = line.GetBoolean("start_now");
  return Action([input = fields->input, start_now, options](
                    const JobClient& client, std::ostream& out) {
    return PrintJob(
        client.CreateJob(input, start_now), options,
        [](const v2::Job& job) {
          return absl::StrCat("created job ", job.id(), " (",
                              v2::JobStatus_Name(job.status()), ")");
        },
        out);
  });
}

absl::StatusOr<Action> PlanGet(const CommandLine& line, int64_t id,
                               const OutputOptions& options) {
  std::optional<int32_t> logs_limit;
  if (line.Has("logs_limit")) {
    v2::GetJobRequest request;
    const absl::Status status = SetFieldFromFlag(
        "logs_limit", line.Get("logs_limit"), "logs_limit", request);
    if (!status.ok()) return status;
    if (request.has_logs_limit()) logs_limit = request.logs_limit();
  }
  const int shown = logs_limit.has_value() ? -1 : kSummaryLogLines;
  return Action([id, logs_limit, shown, options](const JobClient& client,
                                                 std::ostream& out) {
    const absl::StatusOr<v2::Job> job = client.GetJob(id, logs_limit);
    if (!job.ok()) return job.status();
    if (options.json) {
      out << RenderJob(*job, options.document) << "\n";
    } else {
      out << JobSummaryText(*job, options.document.zone, shown);
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<Action> PlanList(const CommandLine& line,
                                const OutputOptions& options) {
  absl::StatusOr<v2::ListJobsRequest> request = BuildListRequest(line);
  if (!request.ok()) return request.status();
  return Action([request = *std::move(request), query = ListQuery(line),
                 options](const JobClient& client, std::ostream& out) {
    const absl::StatusOr<v2::ListJobsResponse> response =
        client.ListJobs(request);
    if (!response.ok()) return response.status();
    if (!options.json) {
      out << JobTableText(*response, request.ids_only());
      return absl::OkStatus();
    }

    // The envelope of the REST answer; an answer without its page size
    // falls back to what was asked (default 10).
    int64_t limit = response->limit();
    if (limit <= 0) limit = request.has_limit() ? request.limit() : 10;
    const PageLinks links =
        ListPageLinks(absl::StrCat(options.document.base_url, "/api/v2/jobs/"),
                      query, response->count(), limit, response->offset());
    JobListEnvelope envelope;
    envelope.count = response->count();
    envelope.next = links.next;
    envelope.previous = links.previous;
    envelope.user_permissions.assign(response->user_permissions().begin(),
                                     response->user_permissions().end());
    out << ToJsonText(JobListDocument(response->results(), envelope,
                                      request.ids_only(), options.document))
        << "\n";
    return absl::OkStatus();
  });
}

absl::StatusOr<Action> PlanUpdate(const CommandLine& line, int64_t id,
                                  const OutputOptions& options) {
  absl::StatusOr<JobFields> fields = BuildJobInput(line);
  if (!fields.ok()) return fields.status();

  // A patch names the fields given; a full replace needs the required ones.
  std::optional<google::protobuf::FieldMask> mask;
  if (line.GetBoolean("patch")) {
    if (fields->paths.empty()) {
      return UsageError("update --patch needs at least one field flag");
    }
    mask.emplace();
    for (const std::string& path : fields->paths) mask->add_paths(path);
  } else if (!fields->input.has_name() || !fields->input.has_project_id()) {
    return UsageError(
        "update replaces the whole job and needs --name and --project; "
        "add --patch to change only the flags given");
  }
  return Action([id, input = fields->input, mask, options](
                    const JobClient& client, std::ostream& out) {
    return PrintJob(
        client.UpdateJob(id, input, mask), options,
        [](const v2::Job& job) {
          return absl::StrCat("updated job ", job.id(), " (",
                              v2::JobStatus_Name(job.status()), ")");
        },
        out);
  });
}

absl::StatusOr<Action> PlanDelete(int64_t id, const OutputOptions& options) {
  return Action([id, options](const JobClient& client, std::ostream& out) {
    const absl::Status status = client.DeleteJob(id);
    if (!status.ok()) return status;
    // The REST answer is an empty 204; --json prints nothing.
    if (!options.json) out << "deleted job " << id << "\n";
    return absl::OkStatus();
  });
}

// run, retry and cancel: one call that answers the job.
absl::StatusOr<Action> PlanAction(
    absl::StatusOr<v2::Job> (JobClient::*call)(int64_t) const, int64_t id,
    const OutputOptions& options) {
  return Action(
      [call, id, options](const JobClient& client, std::ostream& out) {
        return PrintJob((client.*call)(id), options, StatusLine, out);
      });
}

// reap: the stale-job reaper, printed as the upstream command prints it.
absl::StatusOr<Action> PlanReap(const CommandLine& line,
                                const OutputOptions& options) {
  int32_t minutes = 10;
  const std::string text = line.Get("minutes", "");
  if (!text.empty()) {
    absl::StatusOr<int64_t> parsed = ParseInteger("--minutes", text);
    if (!parsed.ok()) return parsed.status();
    if (*parsed < 0 || *parsed > 1000000) {
      return UsageError("--minutes must be 0 to 1000000");
    }
    minutes = static_cast<int32_t>(*parsed);
  }
  const bool dry_run = line.GetBoolean("dry-run");
  return Action([minutes, dry_run, options](const JobClient& client,
                                            std::ostream& out) {
    absl::StatusOr<v2::ReapStaleJobsResponse> reaped =
        client.ReapStaleJobs(minutes, dry_run);
    if (!reaped.ok()) return reaped.status();
    if (options.json) {
      std::string json;
      google::protobuf::util::JsonPrintOptions print;
      print.preserve_proto_field_names = true;
      (void)google::protobuf::util::MessageToJsonString(*reaped, &json, print);
      out << json << "\n";
      return absl::OkStatus();
    }
    if (reaped->jobs_size() == 0) {
      out << "No stale jobs found.\n";
      return absl::OkStatus();
    }
    for (const v2::ReapedJob& job : reaped->jobs()) {
      out << (dry_run ? "[dry-run] " : "") << "Job " << job.job_id()
          << ": revoked (no known Celery state)\n";
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<Action> PlanImport(const std::string& path,
                                  const OutputOptions& options) {
  return Action([path, options](const JobClient& client, std::ostream& out) {
    absl::StatusOr<v2::Catalog> catalog = ReadCatalogFile(path);
    if (!catalog.ok()) return catalog.status();
    const absl::StatusOr<v2::ImportCatalogResponse> counts =
        client.ImportCatalog(*catalog);
    if (!counts.ok()) return counts.status();
    if (options.json) {
      out << ImportCountsJson(*counts) << "\n";
    } else {
      out << ImportCountsText(*counts);
    }
    return absl::OkStatus();
  });
}

// Checks the command line of `watch` and builds its options. Every failure
// is a usage error.
absl::StatusOr<WatchOptions> PlanWatch(const CommandLine& line,
                                       const std::string& server) {
  const CommandSpec& command = *FindCommand("watch");
  if (const absl::Status status = CheckCommandLine(line, command);
      !status.ok()) {
    return status;
  }
  WatchOptions options;
  options.server = server;
  absl::StatusOr<int64_t> id = ParseJobId(line.operands.front());
  if (!id.ok()) return id.status();
  options.job_id = *id;

  const std::string after = line.Get("after", "");
  if (!after.empty()) {
    absl::StatusOr<int64_t> parsed = ParseInteger("--after", after);
    if (!parsed.ok()) return parsed.status();
    if (*parsed < 0) return UsageError("--after must not be negative");
    options.after_sequence = *parsed;
  }
  const std::string timeout = line.Get("reconnect_timeout", "");
  if (!timeout.empty()) {
    absl::StatusOr<int64_t> parsed =
        ParseInteger("--reconnect_timeout", timeout);
    if (!parsed.ok()) return parsed.status();
    if (*parsed < 0 || *parsed > 1000000) {
      return UsageError("--reconnect_timeout must be 0 to 1000000 seconds");
    }
    options.reconnect_timeout = absl::Seconds(*parsed);
  }
  return options;
}

// Checks `line` against `command` and builds its action. Every failure is
// a usage error.
absl::StatusOr<Action> Plan(const CommandLine& line, const CommandSpec& command,
                            const OutputOptions& options) {
  if (const absl::Status status = CheckCommandLine(line, command);
      !status.ok()) {
    return status;
  }
  if (command.operand == Operand::kFile) {
    return PlanImport(line.operands.front(), options);
  }
  int64_t id = 0;
  if (command.operand == Operand::kJobId) {
    absl::StatusOr<int64_t> parsed = ParseJobId(line.operands.front());
    if (!parsed.ok()) return parsed.status();
    id = *parsed;
  }

  const absl::string_view name = command.name;
  if (name == "create") return PlanCreate(line, options);
  if (name == "get") return PlanGet(line, id, options);
  if (name == "list") return PlanList(line, options);
  if (name == "update") return PlanUpdate(line, id, options);
  if (name == "delete") return PlanDelete(id, options);
  if (name == "run") return PlanAction(&JobClient::RunJob, id, options);
  if (name == "retry") return PlanAction(&JobClient::RetryJob, id, options);
  if (name == "cancel") return PlanAction(&JobClient::CancelJob, id, options);
  if (name == "reap") return PlanReap(line, options);
  return absl::InternalError(absl::StrCat("no plan for ", name));
}

// The whole program; returns the exit status.
int Main(const std::vector<std::string>& args, std::ostream& out,
         std::ostream& err) {
  // Split the command line and find the command. A usage error exits 2,
  // or 3 for watch, whose 2 means REVOKED.
  CommandLine line;
  const absl::Status parse_status = ParseCommandLine(args, line);
  const auto usage_error = [&err, &line](const absl::Status& status) {
    err << "jobctl: " << status.message()
        << "\nRun 'jobctl help' for the commands and flags.\n";
    return line.command == "watch" ? kWatchNotFound : 2;
  };
  if (!parse_status.ok()) return usage_error(parse_status);
  for (const auto& [name, value] : line.flags) {
    if (!IsValidUtf8(value)) {
      return usage_error(UsageError(
          absl::StrCat("the value of --", name, " is not valid UTF-8")));
    }
  }
  if (line.command == "help" || line.GetBoolean("help")) {
    out << HelpText();
    return 0;
  }
  if (line.command.empty()) {
    return usage_error(UsageError("no command given"));
  }
  const CommandSpec* command = FindCommand(line.command);
  if (command == nullptr) {
    return usage_error(
        UsageError(absl::StrCat("unknown command '", line.command, "'")));
  }

  // Check the flags and build the request.
  const absl::StatusOr<OutputOptions> options = BuildOutputOptions(line);
  if (!options.ok()) return usage_error(options.status());
  const std::string server = line.Get("server", kDefaultServer);
  if (server.empty()) return usage_error(UsageError("--server is empty"));
  if (command->name == "watch") {
    absl::StatusOr<WatchOptions> watch = PlanWatch(line, server);
    if (!watch.ok()) return usage_error(watch.status());
    return RunWatchCommand(*watch, options->json, options->document, out, err);
  }
  const absl::StatusOr<Action> action = Plan(line, *command, *options);
  if (!action.ok()) return usage_error(action.status());

  // Make the call.
  const JobClient client(JobClient::Connect(server));
  const absl::Status status = (*action)(client, out);
  out.flush();
  if (!status.ok()) {
    err << ErrorText(status) << "\n";
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace jobline

int main(int argc, char** argv) {
  return jobline::Main(std::vector<std::string>(argv + 1, argv + argc),
                       std::cout, std::cerr);
}
