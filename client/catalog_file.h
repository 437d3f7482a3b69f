// Reads a catalogue file: the JSON form of jobline.v2.Catalog that
// `jobctl import` sends and `job_server --seed_catalog` loads.
//
// Thread safety: the function is safe to call from any thread.

#ifndef JOBLINE_CLIENT_CATALOG_FILE_H_
#define JOBLINE_CLIENT_CATALOG_FILE_H_

#include <string>

#include "absl/status/statusor.h"
#include "jobline/v2/catalog.pb.h"

namespace jobline {

// The catalogue in the file at `path`. Errors name the file:
//   errno's code      it cannot be read ("cannot read <path>: <reason>"):
//                     NOT_FOUND, PERMISSION_DENIED, FAILED_PRECONDITION
//                     for a folder, ...
//   INVALID_ARGUMENT  it is not a catalogue in JSON:
//                     text that is not JSON, nesting deeper than
//                     kMaxJsonDepth, a member no record has, or a member
//                     whose value does not fit its field
//                     (client/json_shape.h), named by its path, e.g.
//                     "<path> is not a catalogue in JSON: projects[0].name:
//                     Not a valid string."
absl::StatusOr<v2::Catalog> ReadCatalogFile(const std::string& path);

}  // namespace jobline

#endif  // JOBLINE_CLIENT_CATALOG_FILE_H_
