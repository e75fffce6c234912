// The CUDA driver API, loaded with dlopen: heed binaries run (on the CPU) on
// machines without a GPU or driver, and say so clearly when asked for one.
// Part of heed_runtime: no MLIR or LLVM here.
#ifndef HEED_RUNTIME_CUDA_H
#define HEED_RUNTIME_CUDA_H

#include "heed/Runtime/Artifact.h"
#include "heed/Runtime/Launch.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace heed::cuda {

/// The driver, loaded and initialized once per process (device 0's primary
/// context). Null with `error` saying why: no libcuda.so.1, no device, or the
/// driver's own message.
struct Driver;
Driver *driver(std::string &error);

/// Device 0's compute capability as major * 10 + minor (90 for an H100 or
/// H200, 80 for an A100), or -1 with `error` saying why.
int computeCapability(std::string &error);

/// Device memory (freed on destruction).
class DeviceBuffer {
public:
  static std::unique_ptr<DeviceBuffer> allocate(size_t bytes, std::string &error);
  ~DeviceBuffer();
  void *data() const { return reinterpret_cast<void *>(pointer); }
  size_t size() const { return bytes; }
  std::string upload(const void *host, size_t n);
  std::string download(void *host, size_t n) const;

private:
  DeviceBuffer() = default;
  unsigned long long pointer = 0; // CUdeviceptr
  size_t bytes = 0;
};

/// A kernel image (cubin, or PTX the driver compiles) in device 0's primary
/// context.
class KernelModule {
public:
  static std::unique_ptr<KernelModule> load(const std::string &image, const std::string &entry,
                                            std::string &error);
  ~KernelModule();

  /// Launches a heed attention kernel (--attn-lower-to-gpu or -nvgpu) on
  /// device tensors: grid (ceil(Sq / blockRows), Hq, B), `threads` threads, on
  /// `stream` (null: the default stream), and waits for it. Checks the
  /// tensors against `info` like LoadedKernel::run; "" or an error.
  /// `sharedBytes` of dynamic shared memory per block (GPUKernelBinary::
  /// sharedBytes; above 48 KB the kernel is opted in first).
  std::string launchAttention(const KernelInfo &info, const AttentionArgs &args,
                              int64_t blockRows, int64_t threads, void *stream,
                              int64_t sharedBytes = 0) const;

private:
  KernelModule() = default;
  void *module = nullptr, *function = nullptr;
};

} // namespace heed::cuda

#endif
