// Checks a JSON document against the shape of a protobuf message before
// protobuf's JSON parser reads it.
//
// protobuf's parser is lenient where a user's mistake should be an error:
// it flattens a list of lists into one list, drops null list elements, and
// takes an object where a list is expected as a list of one. A catalogue
// written so would import other records than its author meant, or none,
// without a word. CheckJsonShape() refuses those shapes, and values of the
// wrong JSON type, naming the member ("projects[0].name") in the wording of
// the API's field errors.
//
// Thread safety: every function is pure.

#ifndef JOBLINE_CLIENT_JSON_SHAPE_H_
#define JOBLINE_CLIENT_JSON_SHAPE_H_

#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "nlohmann/json.hpp"

namespace jobline {

// The deepest nesting of arrays and objects a JSON document of the API may
// have. None nests beyond a handful of levels; JSON parsers and printers
// recurse once a level, so a deeper text (one MiB of "[" is half a million
// levels) would overflow a thread's stack.
inline constexpr int kMaxJsonDepth = 100;

// Whether the JSON text `text` (valid or not) opens more than `limit`
// arrays and objects inside one another. Brackets inside strings do not
// count. Linear and without recursion: safe before parsing.
bool JsonNestedDeeperThan(absl::string_view text, int limit);

// Whether `text` is an optionally signed run of decimal digits ("12",
// "-3", "+7"), as protobuf's parser takes an integer in a string.
bool IsDecimalInteger(absl::string_view text);

// Python's name of a JSON value's type ("dict", "list", "str", "int",
// "float", "bool", "NoneType"), as the API's messages name types. Takes
// `value.type()`, which nlohmann::json and ordered_json share, so that
// neither is converted (copied) into the other.
std::string PythonTypeName(nlohmann::json::value_t type);

// The API's wording of field errors about a value's JSON type, shared by
// this check and the REST face's body parser.
inline constexpr char kNotAnIntegerMessage[] = "A valid integer is required.";
inline constexpr char kNotANumberMessage[] = "A valid number is required.";
inline constexpr char kNotABooleanMessage[] = "Must be a valid boolean.";
inline constexpr char kNotAStringMessage[] = "Not a valid string.";
inline constexpr char kNotNullMessage[] = "This field may not be null.";

// "Invalid data. Expected a dictionary, but got <type>." for a value of
// `type` where an object goes.
std::string ExpectedDictionaryMessage(nlohmann::json::value_t type);

// "Expected a list of items but got type "<type>"." for a value of `type`
// where a list goes.
std::string ExpectedListMessage(nlohmann::json::value_t type);

// The field of `descriptor` a JSON member `name` sets: by the field's name,
// else by its JSON name (lowerCamelCase unless set); null when none.
const google::protobuf::FieldDescriptor* FindJsonField(
    const google::protobuf::Descriptor* descriptor, absl::string_view name);

// A member of a document whose value does not fit its field.
struct JsonShapeError {
  // Where, from the document's top: "name", "projects[2].deployment_id".
  std::string path;
  // What is wrong, e.g. "Not a valid string.".
  std::string message;
};

// The first member of the JSON object `value` (members in document order,
// depth first) whose value does not fit its field of `descriptor`, or
// nullopt when all fit. `path` prefixes every reported path (empty at the
// top). Members that name no field are not checked; null is accepted for
// a singular field (it means unset) but not as a list element. A message
// of protobuf's own package (Timestamp, Duration, ...) is left to the
// parser, which knows its JSON forms. REQUIRES: `value` is an object.
std::optional<JsonShapeError> CheckJsonShape(
    const google::protobuf::Descriptor* descriptor,
    const nlohmann::ordered_json& value, const std::string& path = "");

// The check of one value that is not null (a singular field's value or one
// element of a list field) against `field`, reported as `path`.
std::optional<JsonShapeError> CheckJsonValue(
    const google::protobuf::FieldDescriptor* field,
    const nlohmann::ordered_json& value, const std::string& path);

// The same check for one member: `value` given for `field`, reported as
// `path`.
std::optional<JsonShapeError> CheckJsonMember(
    const google::protobuf::FieldDescriptor* field,
    const nlohmann::ordered_json& value, const std::string& path);

}  // namespace jobline

#endif  // JOBLINE_CLIENT_JSON_SHAPE_H_
