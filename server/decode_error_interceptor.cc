#include "server/decode_error_interceptor.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "google/protobuf/descriptor.h"
#include "grpcpp/support/status.h"

namespace jobline {
namespace {

using grpc::experimental::InterceptionHookPoints;

// Notes a request that did not decode and rewrites the INTERNAL status
// gRPC then sends.
class DecodeErrorInterceptor final : public grpc::experimental::Interceptor {
 public:
  // `method` is the call's method name, which gRPC keeps at least as long
  // as the call and so as its interceptors.
  explicit DecodeErrorInterceptor(const char* method)
      : method_(method == nullptr ? "" : method) {}

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    // A message that failed to decode reaches this point as null.
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_MESSAGE) &&
        methods->GetRecvMessage() == nullptr) {
      undecodable_ = true;
    }
    if (undecodable_ &&
        methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_STATUS) &&
        methods->GetSendStatus().error_code() == grpc::StatusCode::INTERNAL) {
      methods->ModifySendStatus(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                       UndecodableRequestMessage(method_)));
    }
    methods->Proceed();
  }

 private:
  const char* const method_;
  bool undecodable_ = false;
};

}  // namespace

grpc::experimental::Interceptor*
DecodeErrorInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new DecodeErrorInterceptor(info->method());
}

std::string UndecodableRequestMessage(const std::string& method) {
  // "/jobline.v2.JobService/GetJob" is "jobline.v2.JobService.GetJob" in
  // the descriptor pool.
  const std::string full_name =
      absl::StrReplaceAll(method.substr(method.empty() ? 0 : 1), {{"/", "."}});
  const google::protobuf::MethodDescriptor* descriptor =
      google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(
          full_name);
  const std::string type = descriptor == nullptr
                               ? std::string("request")
                               : descriptor->input_type()->full_name();
  return absl::StrCat("The request is not a valid ", type,
                      " message (truncated, malformed, or a string that is "
                      "not UTF-8).");
}

std::vector<
    std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
DecodeErrorInterceptorCreators() {
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      creators;
  creators.push_back(std::make_unique<DecodeErrorInterceptorFactory>());
  return creators;
}

}  // namespace jobline
