// heed-run --backward: the forward and backward kernels of a spec on random
// inputs, checked against the float64 reference backward.
#ifndef HEED_TOOLS_HEED_RUN_BACKWARD_H
#define HEED_TOOLS_HEED_RUN_BACKWARD_H

#include "heed/Compiler/Compiler.h"

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
};

/// The same on device 0 with CUDA (`chip`, "" for the device's): the GPU
/// forward and the backward's two tensor-core kernels; 77 (SKIPPED) without
/// a CUDA driver.
int runBackwardOnCUDA(const spec::Variant &variant, KernelConfig config, HostTensor &q,
                      HostTensor &k, HostTensor &v, std::vector<HostTensor> &buffers,
                      std::mt19937_64 &rng, const BackwardOptions &options, std::string chip);

/// Runs and checks; returns the exit code (0 passed, 2 failed, 1 error).
int runBackward(const spec::Variant &variant, KernelConfig config, HostTensor &q, HostTensor &k,
                HostTensor &v, std::vector<HostTensor> &buffers, std::mt19937_64 &rng,
                const BackwardOptions &options);

} // namespace heed::run

#endif
