// Glue shared by the two halves of the C API (heed.h): the runtime half in
// heed_runtime and the compiler half in libheed.
#ifndef HEED_RUNTIME_CAPISUPPORT_H
#define HEED_RUNTIME_CAPISUPPORT_H

#include "heed/Runtime/Launch.h"
#include "heed/heed.h"

#include <memory>
#include <string>

namespace heed::capi {

/// Records `message` as this thread's last error and returns `status`.
heed_status fail(heed_status status, const std::string &message);
/// Clears the last error and returns HEED_OK.
heed_status ok();
/// A C handle owning a reference to `kernel`.
heed_kernel *wrap(std::shared_ptr<LoadedKernel> kernel);

} // namespace heed::capi

#endif
