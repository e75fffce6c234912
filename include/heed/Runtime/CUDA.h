// The CUDA driver API, loaded with dlopen: heed binaries run (on the CPU) on
// machines without a GPU or driver, and say so clearly when asked for one.
// Every device is used through its primary context, the one the CUDA runtime
// (and so PyTorch) uses. Part of heed_runtime: no MLIR or LLVM here.
#ifndef HEED_RUNTIME_CUDA_H
#define HEED_RUNTIME_CUDA_H

#include "heed/Runtime/Artifact.h"
#include "heed/Runtime/GPUAttentionLaunch.h"
#include "heed/Runtime/Launch.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace heed::cuda {

/// The driver, loaded and initialized (cuInit) once per process. Null with
/// `error` saying why: no libcuda.so.1, no device, or the driver's own
/// message.
struct Driver;
Driver *driver(std::string &error);

/// The ordinal of the device whose memory `pointer` is
/// (cuPointerGetAttribute DEVICE_ORDINAL), or -1 with `error` saying why
/// (no driver, or not CUDA memory).
int deviceOf(const void *pointer, std::string &error);

/// The compute capability of `device` as major * 10 + minor (90 for an H100
/// or H200, 80 for an A100), or -1 with `error` saying why.
int computeCapability(int device, std::string &error);

/// Waits for `stream` (null: the legacy default stream) on `device` and
/// reports the first error a heed kernel launched on it recorded since the
/// last report. "" or that error.
std::string synchronize(int device, void *stream);

/// "" unless `stream` of `device` is being captured into a graph: then why
/// heed refuses work on it (refuseGraphCapture).
std::string captureRefusal(int device, void *stream);

/// Device memory of one device (freed on destruction).
class DeviceBuffer {
public:
  static std::unique_ptr<DeviceBuffer> allocate(size_t bytes, std::string &error,
                                                int device = 0);
  ~DeviceBuffer();
  void *data() const { return reinterpret_cast<void *>(pointer); }
  size_t size() const { return bytes; }
  std::string upload(const void *host, size_t n);
  std::string download(void *host, size_t n) const;

private:
  DeviceBuffer() = default;
  unsigned long long pointer = 0; // CUdeviceptr
  size_t bytes = 0;
  int device = 0;
};

/// A kernel image (cubin, or PTX the driver compiles) loaded on one device.
class KernelModule {
public:
  /// Loads `image` into `device`'s primary context and finds
  /// `launch.kernelName`; a kernel with more than 48 KB of dynamic shared
  /// memory (launch.sharedBytes) is opted in here, once.
  static std::unique_ptr<KernelModule> load(const std::string &image, const GPULaunch &launch,
                                            int device, std::string &error);
  ~KernelModule();

  /// Queues a heed attention kernel (--convert-attn-tile-to-nvgpu or -simt) on
  /// tensors of this module's device, on `stream` (a CUstream or
  /// cudaStream_t; null: the legacy default stream): grid
  /// (ceil(Sq / blockRows), Hq, B). Checks the tensors against `info` like
  /// LoadedKernel::run. "" or an error (see launchGPUAttention for when a
  /// kernel's own error is reported).
  /// `choice` (if given) receives what the launch chose (split-KV, GQA packing).
  std::string launchAttention(const KernelInfo &info, const AttentionArgs &args, void *stream,
                              const GPULaunchOptions &options = {},
                              GPULaunchChoice *choice = nullptr) const;
  /// Queues the backward (this module: its dQ kernel, `dkdv` the dK/dV
  /// kernel of the same variant and options, both on this device) on
  /// `stream`; see launchGPUBackward.
  std::string launchBackward(const KernelInfo &info, const GPUBackwardTensors &args,
                             const std::vector<unsigned> &gradients, const KernelModule &dkdv,
                             void *stream, const GPULaunchOptions &options = {}) const;
  int device() const { return deviceOrdinal; }

private:
  KernelModule() = default;
  GPULaunch shape;
  int deviceOrdinal = 0;
  void *module = nullptr, *function = nullptr;
  /// Blocks of the kernel the device holds at once (split-KV's measure; 0:
  /// unknown).
  int64_t resident = 0;
};

} // namespace heed::cuda

#endif
