// The launch arguments of heed's GPU attention kernels, shared by the CUDA
// and HIP runtimes: the kernel takes each memref as its descriptor expanded
// into scalars (allocated and aligned pointers, offset, sizes, strides:
// MLIR's default GPU calling convention), then the two index arguments of
// the work range; the driver APIs take a pointer per argument.
#ifndef HEED_RUNTIME_GPUKERNELARGS_H
#define HEED_RUNTIME_GPUKERNELARGS_H

#include "heed/Runtime/Artifact.h"
#include "heed/Runtime/BufferSummary.h"
#include "heed/Runtime/Launch.h"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace heed {

/// The summaries of `info.summarized` for a GPU launch, from device
/// buffers: `download(host, device, bytes)` copies one buffer to the host
/// ("" or an error). Returns "" or an error.
std::string summarizeDeviceBuffers(
    const KernelInfo &info, const AttentionArgs &args,
    const std::function<std::string(void *, const void *, size_t)> &download,
    std::vector<SummaryTable> &out);

/// A summary table in device memory.
struct DeviceSummary {
  const void *data = nullptr;
  int64_t levels = 1, blocks = 1;
};

class GPUKernelArgs {
public:
  /// q, k, v, the buffers, the summaries (one per `info.summarized`), out,
  /// lse if the kernel writes it, then the status word (i32) and the stats
  /// (3 x i64) at device addresses `status` and `stats`.
  GPUKernelArgs(const KernelInfo &info, const AttentionArgs &args,
                const std::vector<DeviceSummary> &summaries, void *status, void *stats);
  GPUKernelArgs(const GPUKernelArgs &) = delete;
  GPUKernelArgs &operator=(const GPUKernelArgs &) = delete;
  /// What cuLaunchKernel / hipModuleLaunchKernel take as kernelParams.
  void **params() { return pointers.data(); }

private:
  std::vector<int64_t> words;
  std::vector<void *> pointers;
};

/// "" or what a nonzero status word of a finished kernel means.
std::string gpuKernelStatusMessage(const KernelInfo &info, int32_t status);

} // namespace heed

#endif
