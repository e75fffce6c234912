// Launching a heed GPU attention kernel, the part the CUDA and HIP runtimes
// share: the tensor checks, the status and stats words, the buffer summaries
// the block classifier reads, the kernel arguments (each memref as its
// descriptor expanded into scalars: allocated and aligned pointers, offset,
// sizes, strides, MLIR's default GPU calling convention, then the two index
// arguments of the work range), the launch on the caller's stream, the wait,
// and the out-of-range report. Each runtime supplies its driver's calls.
#ifndef HEED_RUNTIME_GPUATTENTIONLAUNCH_H
#define HEED_RUNTIME_GPUATTENTIONLAUNCH_H

#include "heed/Runtime/Artifact.h"
#include "heed/Runtime/Launch.h"

#include <cstdint>
#include <functional>
#include <string>

namespace heed {

/// The calls of one GPU driver API (CUDA or HIP) a launch makes; each
/// returns "" or the driver's error.
struct GPUDriverCalls {
  std::function<std::string(size_t bytes, void **device)> allocate;
  std::function<void(void *device)> free;
  std::function<std::string(void *device, size_t bytes)> zero;
  std::function<std::string(void *device, const void *host, size_t bytes)> upload;
  std::function<std::string(void *host, const void *device, size_t bytes)> download;
  /// The kernel on the caller's stream, grid (x, y, z), with these params.
  std::function<std::string(unsigned x, unsigned y, unsigned z, void **params)> launch;
  /// Waits for the caller's stream.
  std::function<std::string()> synchronize;
  /// Optional: what this kernel needs of the tensors beyond checkAttentionArgs.
  std::function<std::string(const AttentionArgs &)> checkTensors;
};

/// Checks the tensors against `info`, launches on a grid of
/// (ceil(Sq / blockRows), Hq, B) blocks, waits, and reports an out-of-range
/// buffer read. "" or an error.
std::string launchGPUAttention(const KernelInfo &info, const AttentionArgs &args,
                               int64_t blockRows, const GPUDriverCalls &calls);

} // namespace heed

#endif
