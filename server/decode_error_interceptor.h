// DecodeErrorInterceptorFactory: gRPC server interceptors that answer a
// request whose message cannot be decoded with INVALID_ARGUMENT.
//
// gRPC's generated code answers such a request (a truncated or malformed
// protobuf, or a string field that is not UTF-8) itself, before any
// handler runs, with INTERNAL and an empty message: a fault of the server,
// by the codes' meaning, and nothing that says what was wrong. This
// interceptor sees the message fail to decode and rewrites that INTERNAL
// into INVALID_ARGUMENT "The request is not a valid <full message name>
// message (truncated, malformed, or a string that is not UTF-8).". Every
// other status passes unchanged.
//
// Thread safety: the factory is immutable; gRPC makes one interceptor per
// call and uses it from one call's operations at a time.

#ifndef JOBLINE_SERVER_DECODE_ERROR_INTERCEPTOR_H_
#define JOBLINE_SERVER_DECODE_ERROR_INTERCEPTOR_H_

#include <memory>
#include <string>
#include <vector>

#include "grpcpp/support/server_interceptor.h"

namespace jobline {

class DecodeErrorInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;
};

// The message of the INVALID_ARGUMENT for `method` ("/pkg.Service/Method"):
// names the method's input type when the generated pool knows it.
std::string UndecodableRequestMessage(const std::string& method);

// The interceptor creators to give grpc::ServerBuilder
// (experimental().SetInterceptorCreators).
std::vector<
    std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
DecodeErrorInterceptorCreators();

}  // namespace jobline

#endif  // JOBLINE_SERVER_DECODE_ERROR_INTERCEPTOR_H_
