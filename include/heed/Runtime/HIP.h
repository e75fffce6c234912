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
#include "heed/Runtime/GPUAttentionLaunch.h"
#include "heed/Runtime/Launch.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace heed::hip {

/// libamdhip64.so, loaded and initialized once per process. Null with
/// `error` saying why: no HIP runtime, no device, or HIP's own message.
struct Runtime;
Runtime *runtime(std::string &error);

/// The ordinal of the device whose memory `pointer` is
/// (hipPointerGetAttribute DEVICE_ORDINAL), or -1: with `error` saying why
/// when it is not HIP memory, with `error` empty when this HIP runtime has
/// no hipPointerGetAttribute (the caller's device id then stands).
int deviceOf(const void *pointer, std::string &error);

/// The device's chip ("gfx942") from its properties' gcnArchName (the
/// target features after ':' dropped), or "": `error` set when the call
/// failed, empty when this HIP runtime has no hipGetDeviceProperties or
/// names no chip.
std::string deviceChip(int device, std::string &error);

/// Waits for `stream` on `device` and reports the first error a heed kernel
/// launched on it recorded since the last report. "" or that error.
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
  void *data() const { return pointer; }
  size_t size() const { return bytes; }
  std::string upload(const void *host, size_t n);
  std::string download(void *host, size_t n) const;

private:
  DeviceBuffer() = default;
  void *pointer = nullptr;
  size_t bytes = 0;
  int device = 0;
};

/// A code object (HSACO from heed::compileAMDGPU) loaded on one device.
class KernelModule {
public:
  static std::unique_ptr<KernelModule> load(const std::string &image, const GPULaunch &launch,
                                            int device, std::string &error);
  ~KernelModule();

  /// Queues a heed attention kernel (MFMA or SIMT) on
  /// tensors of this module's device, on `stream` (a hipStream_t; null: the
  /// null stream): grid (ceil(Sq / blockRows), Hq, B). Checks the tensors
  /// against `info`. "" or an error (see launchGPUAttention).
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

} // namespace heed::hip

#endif
