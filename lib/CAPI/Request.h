// What heed_compile, heed_export and heed_backward_compile were asked for
// (private to lib/CAPI).
#ifndef HEED_LIB_CAPI_REQUEST_H
#define HEED_LIB_CAPI_REQUEST_H

#include "heed/Compiler/Compiler.h"
#include "heed/Compiler/GPU.h"
#include "heed/heed.h"

#include <string>
#include <vector>

namespace heed::capi {

/// The options with every default filled in, and the variant parsed from
/// the spec.
struct Request {
  KernelConfig config;
  std::string variantName, target;
  std::vector<std::string> params;
  bool useCache = true;
  GPUKernelKind gpuKernel = GPUKernelKind::Auto; ///< options.gpu_kernel
  spec::Variant variant;
};

/// Reads the options and parses the spec into `r`; HEED_OK or the failure
/// recorded (`caller` prefixes option errors).
heed_status readRequest(const char *caller, const char *text, const char *sourceName,
                        const heed_compile_options *options, Request &r);

} // namespace heed::capi

#endif
