// Propagation macros for absl::Status and absl::StatusOr.
//
// Abseil 20220623 (Debian 12) has no status macros of its own, so Jobline
// defines these two:
//
//   JOBS_RETURN_IF_ERROR(expr);      // returns the status if not OK
//   JOBS_ASSIGN_OR_RETURN(lhs, expr) // lhs = value, or returns the status
//
// `expr` is evaluated exactly once.

#ifndef JOBLINE_STORAGE_STATUS_MACROS_H_
#define JOBLINE_STORAGE_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define JOBS_RETURN_IF_ERROR(expr)               \
  do {                                           \
    const absl::Status jobs_status_ = (expr);    \
    if (!jobs_status_.ok()) return jobs_status_; \
  } while (false)

#define JOBS_STATUS_CONCAT_INNER_(a, b) a##b
#define JOBS_STATUS_CONCAT_(a, b) JOBS_STATUS_CONCAT_INNER_(a, b)

#define JOBS_ASSIGN_OR_RETURN(lhs, expr)                                     \
  JOBS_ASSIGN_OR_RETURN_IMPL_(JOBS_STATUS_CONCAT_(jobs_statusor_, __LINE__), \
                              lhs, expr)

#define JOBS_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)   \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // JOBLINE_STORAGE_STATUS_MACROS_H_
