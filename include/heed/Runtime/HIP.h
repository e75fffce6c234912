// The HIP runtime (ROCm), loaded with dlopen: heed binaries run (on the CPU)
// on machines without ROCm, and say so clearly when asked for an AMD GPU.
// The same shape as heed::cuda (CUDA.h). Part of heed_runtime: no MLIR or
// LLVM here.
//
// NOTE: no AMD GPU or ROCm install exists where heed is developed (ROCm is
// not packaged for Debian 12): this backend compiles and reports a missing
// runtime clearly, but has never launched a kernel. docs/runtime.md says so.
#ifndef HEED_RUNTIME_HIP_H
#define HEED_RUNTIME_HIP_H

#include "heed/Runtime/Artifact.h"
#include "heed/Runtime/Launch.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace heed::hip {

/// libamdhip64.so, loaded and initialized once per process (device 0). Null
/// with `error` saying why: no HIP runtime, no device, or HIP's own message.
struct Runtime;
Runtime *runtime(std::string &error);

/// Device memory (freed on destruction).
class DeviceBuffer {
public:
  static std::unique_ptr<DeviceBuffer> allocate(size_t bytes, std::string &error);
  ~DeviceBuffer();
  void *data() const { return pointer; }
  size_t size() const { return bytes; }
  std::string upload(const void *host, size_t n);
  std::string download(void *host, size_t n) const;

private:
  DeviceBuffer() = default;
  void *pointer = nullptr;
  size_t bytes = 0;
};

/// A code object (HSACO from heed::compileAMDGPU) loaded on device 0.
class KernelModule {
public:
  static std::unique_ptr<KernelModule> load(const std::string &image, const std::string &entry,
                                            std::string &error);
  ~KernelModule();

  /// Launches a heed attention kernel (--attn-lower-to-amdgpu or -gpu) on
  /// device tensors: grid (ceil(Sq / blockRows), Hq, B), `threads` work
  /// items, on `stream` (a hipStream_t; null: the null stream), and waits
  /// for it. Checks the tensors against `info`; "" or an error.
  /// `sharedBytes`: dynamic LDS per block (heed's AMD kernels use static
  /// LDS: 0).
  std::string launchAttention(const KernelInfo &info, const AttentionArgs &args,
                              int64_t blockRows, int64_t threads, void *stream,
                              int64_t sharedBytes = 0) const;

private:
  KernelModule() = default;
  void *module = nullptr, *function = nullptr;
};

} // namespace heed::hip

#endif
