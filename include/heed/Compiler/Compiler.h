// The compiler's C++ entry points: a Variant plus a kernel configuration ->
// IR at any stage, an object file, or a JIT-compiled CPU kernel that runs
// on the caller's tensors.
#ifndef HEED_COMPILER_COMPILER_H
#define HEED_COMPILER_COMPILER_H

#include "heed/Frontend/Spec.h"
#include "heed/Runtime/Artifact.h"
#include "heed/Runtime/Launch.h"
#include "heed/Runtime/Tensor.h"

#include "llvm/Support/Error.h"

#include <memory>
#include <string>
#include <vector>

namespace heed {

/// What a kernel is specialized for (everything here is compile time; batch,
/// heads and sequence lengths are run-time arguments).
struct KernelConfig {
  DType dtype = DType::F32; ///< storage of q, k, v and out: f32, f16 or bf16 (out: see outF32)
  int64_t headDim = 64;     ///< head dim of q and k
  int64_t headDimV = 0;     ///< head dim of v and out; 0 means headDim
  Layout layout = Layout::BHSD;
  bool lse = false;    ///< the kernel also writes log-sum-exp [B, Hq, Sq] (f32)
  double scale = 0;    ///< 0 means 1 / sqrt(headDim)
  /// Query rows per work item (CPU); 0: by schedule (32-row flat prefill
  /// tiles, 16-lane neighborhood patches, 16-row packed GQA decode tiles,
  /// 16-row backward tiles).
  int64_t blockQ = 0;
  int64_t blockKV = 16; ///< keys per KV block
  /// Keys per tile of the backward kernel (BackwardKernel); 0: by schedule
  /// (32: each block stages its query and dO tiles once for twice the keys
  /// of the forward's tile).
  int64_t backwardBlockKV = 0;
  /// The backward as the GPUs' two kernels (a query-major dQ kernel, then a
  /// key-major dK/dV one; docs/backward.md, "GPU kernels") on the CPU: S and
  /// dP are computed twice, so it is slower than the one KV-major kernel;
  /// what the tests check the GPU arrangement with.
  bool backwardSplit = false;
  /// Split-KV in the GPU kernels' one-loop form (--attn-split-kv{one-loop})
  /// on the CPU: what the tests check that form's numerics with.
  bool splitOneLoop = false;
  bool analyzeMask = true; ///< skip KV blocks the mask empties, and the mask of full ones
  /// With the analysis: tile masks on 2-D/3-D token grids by patches.
  bool patchTiling = true;
  /// Serving layouts (docs/decode.md). kvLens: the call passes kv_lens
  /// (i32 [B]), each batch entry's number of keys (k and v hold at least
  /// that many). pageSize > 0: k and v are a paged cache [pages, pageSize,
  /// Hkv, D] (bshd; bhsd: [pages, Hkv, pageSize, D]) read through a page
  /// table (i32 [B, max_pages]), with kv_lens.
  bool kvLens = false;
  /// qLens: the call passes q_lens (i32 [B]), each batch entry's number of
  /// queries (q holds at least that many; rows of out and lse past them
  /// are not written).
  bool qLens = false;
  /// Packed sequences (FlashAttention's varlen layout; docs/decode.md).
  /// cuSeqlensQ: q, out and lse hold the entries' queries end to end ([1,
  /// total_q, Hq, D] in bshd, [1, Hq, total_q, D] in bhsd; lse [1, Hq,
  /// total_q]) and the call passes cu_seqlens_q (i32 [B+1]): entry b's rows
  /// are [cu[b], cu[b+1]). Excludes qLens. cuSeqlensKV: k and v likewise,
  /// with cu_seqlens_kv; excludes kvLens and a paged cache.
  bool cuSeqlensQ = false;
  bool cuSeqlensKV = false;
  /// out is f32 whatever `dtype` is (CPU): a training forward keeps O exact
  /// for the backward's delta = rowsum(dO * O), which O rounded to bf16
  /// moves by more than the gradients' own rounding (docs/backward.md).
  bool outF32 = false;
  int64_t pageSize = 0;

  int64_t valueDim() const { return headDimV ? headDimV : headDim; }
  bool paged() const { return pageSize > 0; }
  bool hasKVLens() const { return kvLens || paged(); }
  /// Entries may differ in length (kv_lens, a paged cache, q_lens, packed
  /// sequences): the kernel then takes the order to start them in
  /// (attn.attention's entry_order, KernelInfo::entryOrder).
  bool ragged() const { return hasKVLens() || qLens || cuSeqlensQ || cuSeqlensKV; }
  /// The backward's one loop walks a neighborhood mask's patches (patch
  /// tiling with the analysis; the split kernels, the GPUs', take flat tiles).
  /// (Flat tiles for a ragged batch: --attn-backward-to-tile takes patches
  /// for one length only.)
  bool backwardPatches() const {
    return patchTiling && analyzeMask && !backwardSplit && !ragged();
  }
  double effectiveScale() const;
  llvm::Error validate() const;
  /// validate(), then what `variant` needs of the config (a gated variant
  /// takes no q_lens or cu_seqlens_q: its routed rows are listed over the
  /// whole Sq).
  llvm::Error validateFor(const spec::Variant &variant) const;
  /// Every field, in one line: what the kernel cache keys on. Two configs
  /// that compile to different kernels never share it.
  std::string canonical() const;
};

/// Stages `emit` can print.
enum class Stage {
  Attn,   ///< the attn dialect: variant + kernel function with attn.attention
  Tile,   ///< the tile IR after the schedule passes (attn.tile.* ops)
  Tiled,  ///< after the CPU lowering: scf/vector/memref loops with online softmax
  LLVM,   ///< LLVM dialect
  LLVMIR, ///< LLVM IR (optimized as for the JIT)
  Object, ///< a host object file (bytes)
};

/// The CPU a kernel is compiled for.
struct CPUTarget {
  std::string triple;   ///< e.g. x86_64-unknown-linux-gnu
  std::string cpu;      ///< LLVM CPU name: znver4, x86-64-v3, ...
  std::string features; ///< LLVM feature string ("" = the CPU's defaults)

  /// This machine's CPU with every feature it has.
  static CPUTarget host();
  /// What the JIT compiles for: host(), or the LLVM CPU that HEED_JIT_CPU
  /// names (e.g. x86-64-v3: to run here the code a portable AOT target
  /// gets; a name LLVM does not know, or a CPU this machine cannot run,
  /// warns once and compiles for the host).
  static CPUTarget jit();
  /// "cpu" (this machine) or "cpu:<cpu name>", e.g. "cpu:x86-64-v3" for any
  /// x86-64 with AVX2/FMA; an error for anything else.
  static llvm::Expected<CPUTarget> parse(const std::string &name);
  /// The artifact entry's target string: "cpu:<arch>:<cpu>".
  std::string artifactTarget() const;
};

/// Compiles `variant` to `stage` and returns the text (or object bytes).
llvm::Expected<std::string> emit(const spec::Variant &variant,
                                 const KernelConfig &config, Stage stage);

/// Compiles `variant` for `target` into an artifact entry: a shared object
/// the runtime (heed_runtime) loads, and the description it checks calls by.
llvm::Expected<ArtifactEntry> compileEntry(const spec::Variant &variant,
                                           const KernelConfig &config,
                                           const CPUTarget &target);

/// Compiles `variant` for every target in `targets` (comma-separated) into
/// one artifact; the runtime loads the first entry the machine runs.
/// "cpu" is the portable bundle (x86-64-v3, then baseline x86-64, on
/// x86-64 hosts), "cpu:native" this machine exactly, "cpu:<LLVM CPU>" one CPU.
llvm::Expected<Artifact> compileArtifact(const spec::Variant &variant,
                                         const KernelConfig &config,
                                         const std::string &targets);

/// The kernel description the runtime checks and launches by.
KernelInfo describeKernel(const spec::Variant &variant, const KernelConfig &config);

/// Where compile() found a kernel.
enum class CacheOutcome { Compiled, DiskHit, MemoryHit };
const char *toString(CacheOutcome outcome);

/// A compiled CPU kernel, ready to run. Thread-safe: run() may be called
/// concurrently.
class Kernel {
public:
  /// Finds the kernel in the process-wide KernelCache (memory, then disk)
  /// or compiles it for this machine.
  static llvm::Expected<std::unique_ptr<Kernel>>
  compile(const spec::Variant &variant, const KernelConfig &config);
  /// Wraps a loaded binary.
  Kernel(std::shared_ptr<LoadedKernel> loaded, const spec::Variant &variant,
         const KernelConfig &config, double seconds, CacheOutcome outcome);
  ~Kernel();

  /// Checks every tensor against the variant and config (dtypes, shapes,
  /// strides, buffer sizes), then runs on up to `threads` threads (0 = all
  /// cores). Fails with a message naming the offending tensor, or the buffer
  /// read out of range by the variant.
  llvm::Error run(const AttentionArgs &args, unsigned threads = 0,
                  RunStats *stats = nullptr) const;

  const spec::Variant &variant() const;
  const KernelConfig &config() const;
  /// Seconds compile() took (a cache hit included), and where it found it.
  double compileSeconds() const;
  CacheOutcome cacheOutcome() const;
  const std::shared_ptr<LoadedKernel> &loaded() const;

  struct Impl;

private:
  std::unique_ptr<Impl> impl;
};

} // namespace heed

#endif // HEED_COMPILER_COMPILER_H
