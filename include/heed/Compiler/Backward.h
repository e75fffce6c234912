// The backward pass of a variant on the CPU: a compiled kernel that, given
// the forward's output and log-sum-exp and the gradient of the output, gives
// the gradients of q, k, v and of the variant's float buffers
// (docs/backward.md).
#ifndef HEED_COMPILER_BACKWARD_H
#define HEED_COMPILER_BACKWARD_H

#include "heed/Compiler/Compiler.h"

#include <memory>
#include <utility>
#include <vector>

namespace heed {

/// The tensors of one backward call, in the kernel's layout (as
/// AttentionArgs): q, k, v, buffers and the forward's out and lse (f32
/// [B, Hq, Sq]); dout shaped like out. dq, dk, dv are written, shaped like
/// q, k, v in the kernel's dtype. bufferGrads: one contiguous f32 tensor per
/// entry of BackwardKernel::gradientBuffers(), shaped like that buffer; written.
struct BackwardArgs {
  TensorRef q, k, v, out, lse, dout;
  std::vector<TensorRef> buffers;
  TensorRef dq, dk, dv;
  std::vector<TensorRef> bufferGrads;
  /// A ragged batch (KernelConfig::kvLens, qLens, cuSeqlensQ, cuSeqlensKV;
  /// docs/backward.md, "Ragged batches"), as AttentionArgs takes it: the
  /// forward's kv_lens, q_lens (i32 [B]) or offsets of packed sequences
  /// (i32 [B+1]); packed, dout and dq are packed like q, dk and dv like k.
  /// Rows past an entry's length get zero gradients.
  TensorRef kvLens, qLens, cuSeqlensQ, cuSeqlensKV;

  /// The backward of the forward call `fwd` (its q, k, v, out, lse,
  /// buffers and lengths), with the incoming gradient and where the
  /// gradients go.
  static BackwardArgs of(const AttentionArgs &fwd, TensorRef dout, TensorRef dq, TensorRef dk,
                         TensorRef dv, std::vector<TensorRef> bufferGrads) {
    return {fwd.q,      fwd.k,       fwd.v,         fwd.out,      fwd.lse,
            dout,       fwd.buffers, dq,            dk,           dv,
            std::move(bufferGrads),  fwd.kvLens,    fwd.qLens,    fwd.cuSeqlensQ,
            fwd.cuSeqlensKV};
  }
};

class KernelCache;

/// The float buffers the variant's score (or sink logit) is differentiable
/// in, in declaration order: the ones whose gradients the backward's
/// kernels add (the GPU backward's, as BackwardKernel::gradientBuffers()
/// less a gated variant's gate). Fails where the variant cannot be
/// differentiated.
llvm::Expected<std::vector<unsigned>> differentiableBuffers(const spec::Variant &variant);

/// The backward's query rows and keys per tile for `config` (blockQ 0: 16
/// rows; backwardBlockKV 0: 64 keys; its own schedule's choice).
std::pair<int64_t, int64_t> backwardTiles(const KernelConfig &config);

class BackwardKernel {
public:
  /// Finds the backward of `variant` for `config` (its dtype, head dims,
  /// layout, scale, tiles, analysis, ragged operands but a paged cache;
  /// `lse` and `patchTiling` are ignored)
  /// in the process-wide KernelCache (memory, then disk) or compiles it for
  /// this machine. Fails with the compiler's message where the score is not
  /// differentiable.
  static llvm::Expected<std::unique_ptr<BackwardKernel>> compile(const spec::Variant &variant,
                                                                 const KernelConfig &config);
  /// The same through `cache` (KernelCache::getKind, kind "backward"), or
  /// compiled with no cache at all when it is null.
  static llvm::Expected<std::unique_ptr<BackwardKernel>>
  compile(const spec::Variant &variant, const KernelConfig &config, KernelCache *cache);
  ~BackwardKernel();

  /// The positions of the buffers whose gradients run() writes: the float
  /// buffers the score (or sink) is differentiable in and a gated variant's
  /// gate buffer (its gradient added by the host), in declaration order.
  const std::vector<unsigned> &gradientBuffers() const;

  /// Runs on up to `threads` threads (0 = all cores): delta = rowsum(dout *
  /// out), then the KV-major kernel with each thread's dq and buffer
  /// gradients in memory of its own, summed in thread order (bitwise
  /// reproducible for a given thread count). `stats` gets the blocks
  /// visited.
  llvm::Error run(const BackwardArgs &args, unsigned threads = 0,
                  RunStats *stats = nullptr) const;

  /// Seconds compile() took (a cache hit included), and where it found the
  /// kernel.
  double compileSeconds() const;
  CacheOutcome cacheOutcome() const;

  struct Impl;

private:
  explicit BackwardKernel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl;
};

} // namespace heed

#endif // HEED_COMPILER_BACKWARD_H
