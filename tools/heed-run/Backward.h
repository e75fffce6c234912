// heed-run --backward: the forward and backward kernels of a spec on random
// inputs, checked against the float64 reference backward.
#ifndef HEED_TOOLS_HEED_RUN_BACKWARD_H
#define HEED_TOOLS_HEED_RUN_BACKWARD_H

#include "heed/Compiler/Compiler.h"
#include "heed/Compiler/GPU.h"
#include "heed/Runtime/GPUImage.h"
#include "heed/Runtime/Tensor.h"

#include "Serving.h"

#include <random>
#include <vector>

namespace heed::run {

struct BackwardOptions {
  unsigned threads = 0, repeat = 5;
  double tolerance = 0; ///< 0: by dtype
  bool json = false;
  bool check = true; ///< compare with the float64 reference (else time only)
  int64_t blockKV = 0; ///< keys per tile of the backward (0: by schedule, 64)
  bool split = false;  ///< the GPUs' two kernels on the CPU (KernelConfig::backwardSplit)
  /// The forward writes O in f32 for f16/bf16 inputs (KernelConfig::outF32).
  bool outF32 = true;
  uint64_t seed = 0;
  std::string shape; ///< for the report
  /// The GPU kernels (--gpu-kernel): tensor cores (mma.sync; also for
  /// auto), or a wgmma kind (Hopper, sm_90a).
  GPUKernelKind kind = GPUKernelKind::TensorCores;
};

/// The host tensors of one backward run (shapes from q, k, v): the
/// forward's out (in `outDType`) and lse, a random dout, dq, dk, dv, f32
/// delta, and the f32 gradient of each of `gradients`; every output
/// poisoned. "" or the error.
struct BackwardTensors {
  HostTensor out, lse, delta, dout, dq, dk, dv;
  std::vector<HostTensor> grads;
  std::string create(const spec::Variant &variant, const KernelConfig &config, DType outDType,
                     const HostTensor &q, const HostTensor &k, const HostTensor &v,
                     const std::vector<HostTensor> &buffers,
                     const std::vector<unsigned> &gradients, std::mt19937_64 &rng);
};

/// A ragged batch's packed row tensors of a backward run (--packed): dout,
/// delta, dq (queries) and dk, dv (keys) end to end as the call packs q and
/// k, made from `t`'s padded ones; unpack() puts the gradients back into
/// `t`'s padded tensors, zero past each entry (what the check reads).
struct PackedBackward {
  HostTensor dout, delta, dq, dk, dv;
  void pack(const ServingCall &call, const BackwardTensors &t, Layout layout);
  void unpack(const ServingCall &call, BackwardTensors &t, Layout layout) const;
};

/// One gradient's normwise error and its tolerance.
struct GradientError {
  std::string name;
  double error, tolerance;
};

/// dq, dk, dv and the buffers' gradients of `t` against the float64
/// reference backward (tolerances by dtype, or options.tolerance; with
/// `deltaSensitivity` where out is stored in f16/bf16); `outOfRange` gets
/// whether the reference read a buffer out of range. A ragged batch's
/// lengths (kvLens, qLens; padded tensors) where not empty.
std::vector<GradientError> gradientErrors(const spec::Variant &variant, const KernelConfig &config,
                                          const HostTensor &q, const HostTensor &k,
                                          const HostTensor &v,
                                          const std::vector<HostTensor> &buffers,
                                          const BackwardTensors &t,
                                          const std::vector<unsigned> &gradients,
                                          const BackwardOptions &options, bool &outOfRange,
                                          const std::vector<int64_t> &kvLens = {},
                                          const std::vector<int64_t> &qLens = {});

/// Whether every error is finite and within its tolerance; `worst` gets the
/// largest (the first non-finite one if any).
bool withinTolerances(const std::vector<GradientError> &errors, double &worst);

/// The same on device 0 of `platform` (CUDA or ROCm; `chip`, "" for the
/// device's): the GPU forward and the backward's two matrix-core kernels; 77
/// (SKIPPED) without the platform's driver or runtime. `call`: a ragged
/// batch, as runBackward takes it.
int runBackwardOnGPU(GPUPlatform platform, const spec::Variant &variant, KernelConfig config,
                     HostTensor &q, HostTensor &k, HostTensor &v, std::vector<HostTensor> &buffers,
                     std::mt19937_64 &rng, const BackwardOptions &options, std::string chip,
                     ServingCall *call = nullptr);

/// Runs and checks; returns the exit code (0 passed, 2 failed, 1 error).
/// With `call` (--kv-lens, --q-lens, --packed; no page size): a ragged
/// batch, q, k, v padded to its capacities (packed for the kernels where
/// call->packQ), checked entry by entry.
int runBackward(const spec::Variant &variant, KernelConfig config, HostTensor &q, HostTensor &k,
                HostTensor &v, std::vector<HostTensor> &buffers, std::mt19937_64 &rng,
                const BackwardOptions &options, ServingCall *call = nullptr);

} // namespace heed::run

#endif
