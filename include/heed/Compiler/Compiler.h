// The compiler's C++ entry points: a Variant plus a kernel configuration ->
// IR at any stage, an object file, or a JIT-compiled CPU kernel that runs
// on the caller's tensors.
#ifndef HEED_COMPILER_COMPILER_H
#define HEED_COMPILER_COMPILER_H

#include "heed/Frontend/Spec.h"
#include "heed/Runtime/Tensor.h"

#include "llvm/Support/Error.h"

#include <memory>
#include <string>
#include <vector>

namespace heed {

/// What a kernel is specialized for (everything here is compile time; batch,
/// heads and sequence lengths are run-time arguments).
struct KernelConfig {
  DType dtype = DType::F32; ///< storage of q, k, v and out: f32, f16 or bf16
  int64_t headDim = 64;     ///< head dim of q and k
  int64_t headDimV = 0;     ///< head dim of v and out; 0 means headDim
  Layout layout = Layout::BHSD;
  bool lse = false;    ///< the kernel also writes log-sum-exp [B, Hq, Sq] (f32)
  double scale = 0;    ///< 0 means 1 / sqrt(headDim)
  int64_t blockQ = 16; ///< query rows per work item
  int64_t blockKV = 16; ///< keys per KV block
  bool analyzeMask = true; ///< skip KV blocks the mask empties, and the mask of full ones
  /// With the analysis: tile masks on 2-D/3-D token grids by patches.
  bool patchTiling = true;

  int64_t valueDim() const { return headDimV ? headDimV : headDim; }
  double effectiveScale() const;
  llvm::Error validate() const;
};

/// Stages `emit` can print.
enum class Stage {
  Attn,   ///< the attn dialect: variant + kernel function with attn.attention
  Tiled,  ///< after tiling: scf/vector/memref loops with online softmax
  LLVM,   ///< LLVM dialect
  LLVMIR, ///< LLVM IR (optimized as for the JIT)
  Object, ///< a host object file (bytes)
};

/// Compiles `variant` to `stage` and returns the text (or object bytes).
llvm::Expected<std::string> emit(const spec::Variant &variant,
                                 const KernelConfig &config, Stage stage);

/// The tensors of one attention call. Shapes follow the config's layout:
/// BHSD q [B, Hq, Sq, D], k [B, Hkv, Skv, D], v [B, Hkv, Skv, Dv],
/// out [B, Hq, Sq, Dv]; BSHD swaps the heads and sequence dims. Buffers come
/// in the variant's declaration order.
struct AttentionArgs {
  TensorRef q, k, v, out;
  TensorRef lse; ///< [B, Hq, Sq] f32; required iff the config asks for it
  std::vector<TensorRef> buffers;
};

/// What one run did, summed over work items: KV blocks visited, and of them
/// those the analysis proved FULL (no mask evaluated) and PARTIAL.
struct RunStats {
  int64_t visitedBlocks = 0, fullBlocks = 0, partialBlocks = 0;
  int64_t totalBlocks = 0; ///< q-blocks x kv-blocks x batch x heads
};

/// A JIT-compiled CPU kernel. Thread-safe: run() may be called concurrently.
class Kernel {
public:
  static llvm::Expected<std::unique_ptr<Kernel>>
  compile(const spec::Variant &variant, const KernelConfig &config);
  ~Kernel();

  /// Checks every tensor against the variant and config (dtypes, shapes,
  /// strides, buffer sizes), then runs on up to `threads` threads (0 = all
  /// cores). Fails with a message naming the offending tensor, or the buffer
  /// read out of range by the variant.
  llvm::Error run(const AttentionArgs &args, unsigned threads = 0,
                  RunStats *stats = nullptr) const;

  const spec::Variant &variant() const;
  const KernelConfig &config() const;
  /// Seconds spent in compile(): MLIR pipeline and LLVM code generation.
  double compileSeconds() const;

  struct Impl;

private:
  explicit Kernel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl;
};

} // namespace heed

#endif // HEED_COMPILER_COMPILER_H
