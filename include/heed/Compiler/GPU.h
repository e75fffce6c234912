// Compiling a variant for GPUs. NVIDIA: the kernel module lowered through
// NVVM to PTX (LLVM's NVPTX backend), then to a cubin with ptxas when the
// CUDA toolkit is present. AMD: through ROCDL to AMDGCN (LLVM's AMDGPU
// backend), then to a code object (HSACO) linked by ld.lld. See
// docs/passes.md ("GPU").
#ifndef HEED_COMPILER_GPU_H
#define HEED_COMPILER_GPU_H

#include "heed/Compiler/Compiler.h"

#include "llvm/Support/Error.h"

#include <optional>
#include <string>

namespace heed {

/// An NVIDIA target: "sm_80", "sm_90", "sm_90a", ...
struct CUDATarget {
  std::string chip;
  static llvm::Expected<CUDATarget> parse(const std::string &name);
};

/// What the GPU compile produced.
struct GPUKernelBinary {
  GPULaunch launch; ///< entry point, block shape, dynamic shared memory ("cubin" or "ptx")
  std::string ptx;
  std::optional<std::string> cubin; ///< when ptxas was found
  std::string resources;            ///< ptxas -v: registers, shared memory, spills
};

/// An AMD target: "gfx90a" (MI200), "gfx942" (MI300), "gfx950".
struct AMDGPUTarget {
  std::string chip;
  int64_t mfma = 32; ///< the MFMA shape: 32 (32x32x8) or 16 (16x16x16)
  static llvm::Expected<AMDGPUTarget> parse(const std::string &name);
};

/// What the AMD compile produced.
struct AMDGPUKernelBinary {
  GPULaunch launch; ///< entry point, block shape ("hsaco"; LDS is static)
  std::string isa;          ///< AMDGCN assembly with the kernel metadata
  std::optional<std::string> hsaco; ///< the code object, when ld.lld was found
  std::string resources;    ///< VGPRs, AGPRs, SGPRs, LDS, scratch, spills
};

/// Which kernel: the matrix-core one where it applies (f16 or bf16, head
/// dims multiples of 16 up to 256 (AMD: v multiples of 32)), else
/// the SIMT baseline; or forced. TensorCores means MFMA on AMD. Wgmma is the
/// Hopper kernel (sm_90a: wgmma, TMA, mbarriers; a producer warpgroup staging
/// K/V for two consumer warpgroups, or one where a variant's registers need
/// it), only when asked for: it has not passed numerics on a GPU yet.
/// WgmmaPipelined is its first form (one warpgroup per 64 rows issuing its
/// own copies, --attn-pipeline-kv), kept to tell a fault of the warp
/// specialization from one of the wgmma lowering. WgmmaSerial is Wgmma
/// without the softmax overlap (--attn-overlap-softmax), to tell a fault of
/// the overlap from the rest and to measure what it gains. WgmmaGrid is Wgmma
/// with one block per work item instead of persistent workers
/// (--attn-persistent-workers), likewise.
enum class GPUKernelKind { Auto, TensorCores, SIMT, Wgmma, WgmmaPipelined, WgmmaSerial, WgmmaGrid };
enum class GPUVendor { NVIDIA, AMD };
/// Whether `kind` is one of the Hopper (wgmma) kernels.
inline bool isWgmma(GPUKernelKind kind) {
  return kind == GPUKernelKind::Wgmma || kind == GPUKernelKind::WgmmaPipelined ||
         kind == GPUKernelKind::WgmmaSerial || kind == GPUKernelKind::WgmmaGrid;
}
/// Whether `kind` is one of the warp-specialized Hopper kernels.
inline bool isWarpSpecializedWgmma(GPUKernelKind kind) {
  return isWgmma(kind) && kind != GPUKernelKind::WgmmaPipelined;
}
/// "auto" | "tensor-cores" (also "matrix-cores") | "simt" | "wgmma" |
/// "wgmma-pipelined" | "wgmma-serial" | "wgmma-grid".
llvm::Expected<GPUKernelKind> parseGPUKernelKind(const std::string &name);

/// Which of a variant's GPU kernels: the forward, or one of the backward's
/// two (docs/backward.md, "GPU kernels"): dQ (one block per query tile,
/// looping over key tiles; it also adds the buffers' gradients) and dK/dV
/// (one block per key tile, looping over the group's query tiles).
enum class GPUComputation { Forward, BackwardDQ, BackwardDKDV };
/// "forward" | "dq" | "dkdv".
llvm::Expected<GPUComputation> parseGPUComputation(const std::string &name);

/// A GPU kernel to build: the platform, the chip, which kernel and (AMD) the
/// MFMA shape; what the kernel cache keys GPU kernels by, beside the variant
/// and config.
struct GPUTarget {
  GPUVendor vendor = GPUVendor::NVIDIA;
  std::string chip; ///< "sm_90", "gfx942"
  GPUKernelKind kind = GPUKernelKind::Auto;
  int64_t mfma = 32; ///< AMD only
  /// The forward, or one of the backward's two kernels.
  GPUComputation computation = GPUComputation::Forward;

  /// The artifact entry's target: "cuda:<chip>" or "hip:<chip>".
  std::string entryTarget() const;
  /// Every field that changes the kernel, in one line (the cache key's).
  std::string canonical() const;
};

/// Lowers `variant` to the gpu-dialect module of `target`'s kernel (stage
/// "gpu": the platform, its chip where the lowering depends on it, the
/// kernel kind, AMD's MFMA shape, forward or a backward kernel).
llvm::Expected<std::string> emitGPUModule(const spec::Variant &variant,
                                          const KernelConfig &config, const GPUTarget &target);
/// All the way to PTX and, with ptxas, a cubin. The backward's kernels are
/// tensor-core kernels (NVIDIA, f16/bf16, not Hopper's wgmma yet).
llvm::Expected<GPUKernelBinary> compileCUDA(const spec::Variant &variant,
                                            const KernelConfig &config,
                                            const CUDATarget &target,
                                            GPUKernelKind kind = GPUKernelKind::Auto,
                                            GPUComputation computation = GPUComputation::Forward);

/// All the way to AMDGCN and, with ld.lld, an HSACO code object; the
/// backward's kernels are MFMA kernels (f16/bf16).
llvm::Expected<AMDGPUKernelBinary> compileAMDGPU(const spec::Variant &variant,
                                                 const KernelConfig &config,
                                                 const AMDGPUTarget &target,
                                                 GPUKernelKind kind = GPUKernelKind::Auto,
                                                 GPUComputation computation = GPUComputation::Forward);

/// compileCUDA or compileAMDGPU as an artifact entry: target
/// target.entryTarget(), binary the image the platform's module loader takes
/// (the cubin, or the PTX when there is no ptxas; the HSACO, an error without
/// ld.lld), info describeKernel's with the launch shape in info.gpu.
llvm::Expected<ArtifactEntry> compileGPUEntry(const spec::Variant &variant,
                                              const KernelConfig &config,
                                              const GPUTarget &target);

/// ld.lld from $HEED_LLD, LLVM's tools directory or PATH; "" if none.
std::string findLld();

/// The options heed gives ptxas after -arch and -v: $HEED_PTXAS_OPTIONS
/// (space-separated, e.g. "-O1"), else "-O3". Part of the kernel cache key.
std::string ptxasOptions();

/// ptxas from $HEED_PTXAS, $CUDA_HOME/bin, /usr/local/cuda/bin or PATH; "" if
/// none, or with HEED_PTXAS=none (PTX only: the driver compiles it at load).
std::string findPtxas();

} // namespace heed

#endif
