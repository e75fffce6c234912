// Loading a compiled kernel binary and launching it on the caller's tensors.
// Part of heed_runtime: no MLIR or LLVM here, so deployed programs link it
// alone.
#ifndef HEED_RUNTIME_LAUNCH_H
#define HEED_RUNTIME_LAUNCH_H

#include "heed/Runtime/Artifact.h"
#include "heed/Runtime/Tensor.h"

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace heed {

/// The tensors of one attention call. Shapes follow the kernel's layout:
/// BHSD q [B, Hq, Sq, D], k [B, Hkv, Skv, D], v [B, Hkv, Skv, Dv],
/// out [B, Hq, Sq, Dv]; BSHD swaps the heads and sequence dims. Buffers come
/// in the variant's declaration order.
struct AttentionArgs {
  TensorRef q, k, v, out;
  TensorRef lse; ///< [B, Hq, Sq] f32; required iff the kernel writes it
  std::vector<TensorRef> buffers;
  /// The index tensors below (kv_lens, page_table, q_lens, cu_seqlens) are
  /// in host memory for every launch, GPU ones too: checkAttentionArgs reads
  /// them, and the GPU launch copies them to the device.
  /// Serving layouts (KernelInfo::kvLens, pageSize; docs/decode.md):
  /// kv_lens i32 [B], each batch entry's keys; page_table i32 [B, max_pages]
  /// with k, v as pages [pages, P, Hkv, D] (BSHD) or [pages, Hkv, P, D] (BHSD).
  TensorRef kvLens, pageTable;
  /// KernelInfo::qLens: q_lens i32 [B], each batch entry's queries (q's
  /// length is a capacity; out and lse rows past an entry's queries are not
  /// written).
  TensorRef qLens;
  /// KernelInfo::cuSeqlensQ / cuSeqlensKV (packed sequences, FlashAttention's
  /// varlen layout): i32 [B+1] offsets, non-decreasing from >= 0; entry b's
  /// queries (keys) are rows [cu[b], cu[b+1]) of q, out, lse (k, v), which
  /// then have batch 1: q [1, total_q, Hq, D] (BSHD) or [1, Hq, total_q, D]
  /// (BHSD), lse [1, Hq, total_q]. Rows past cu[B] are neither read nor
  /// written. `Sq` (`Skv`) in buffer shapes is the longest entry's length.
  TensorRef cuSeqlensQ, cuSeqlensKV;
};

/// What one run did, summed over work items: KV blocks visited, and of them
/// those the analysis proved FULL (no mask evaluated) and PARTIAL.
struct RunStats {
  int64_t visitedBlocks = 0, fullBlocks = 0, partialBlocks = 0;
  int64_t totalBlocks = 0; ///< q-tiles x kv-blocks x batch x heads
  int outOfRangeBuffer = 0; ///< 1-based buffer the variant read out of range, or 0
  /// Key ranges per work item (split-KV, chosen per call; 1: not split).
  int64_t splits = 1;
  /// The kernel packed each GQA group's query heads into one tile
  /// (--attn-pack-gqa's run-time condition held for the call).
  bool packedGQA = false;
};

/// A kernel binary mapped into this process. Thread-safe: run() may be
/// called concurrently.
class LoadedKernel {
public:
  /// Loads the entry of `artifact` this machine runs; the error says which
  /// targets the artifact has and why none fits.
  static std::shared_ptr<LoadedKernel> load(const Artifact &artifact, std::string &error);
  static std::shared_ptr<LoadedKernel> load(const ArtifactEntry &entry, std::string &error);
  ~LoadedKernel();
  LoadedKernel(const LoadedKernel &) = delete;
  LoadedKernel &operator=(const LoadedKernel &) = delete;

  /// Checks every tensor against the kernel (dtypes, shapes, strides, buffer
  /// sizes), then runs on up to `threads` threads (0 = all cores). Returns
  /// "" or a message naming the offending tensor, or the buffer the variant
  /// read out of range.
  std::string run(const AttentionArgs &args, unsigned threads = 0,
                  RunStats *stats = nullptr) const;

  const KernelInfo &info() const;
  const std::string &target() const;
  /// The address of a symbol of the binary, or null (entry points other
  /// than the attention kernel's, such as the backward's).
  void *symbol(const std::string &name) const;

  struct Impl;

private:
  explicit LoadedKernel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl;
};

/// Checks q, k, v, out, lse and the buffers against a kernel's description
/// (dtypes, ranks, shapes, strides, buffer sizes); fills the logical sizes.
/// "" or a message naming the offending tensor. Every backend calls it.
std::string checkAttentionArgs(const AttentionArgs &args, const KernelInfo &info,
                               AttentionDims &dims);

/// Checks a call's buffers against the variant's declarations in `info`
/// (count, dtype, shape resolved for `dims`, contiguous); "" or a message
/// naming the buffer. checkAttentionArgs calls it; so does the backward.
std::string checkBuffers(const std::vector<TensorRef> &buffers, const KernelInfo &info,
                         const AttentionDims &dims);

/// The view a kernel takes of q, k, v, out or lse (`which`) of a call whose
/// arguments passed checkAttentionArgs: the tensor itself, or for packed
/// sequences (KernelInfo::cuSeqlensQ for q, out, lse; cuSeqlensKV for k,
/// v) the packed tensor as [B, longest entry, ...] with batch stride 0,
/// which the kernel views from each entry's first row.
enum class CallTensor { Q, K, V, Out, Lse };
TensorRef kernelView(const AttentionArgs &args, const KernelInfo &info, const AttentionDims &dims,
                     CallTensor which);

/// The serving index tensors of a call in the kernel's argument order
/// (after q, k, v): kv_lens, page_table, q_lens, cu_seqlens_q,
/// cu_seqlens_kv, those the kernel takes, then the call's entryOrder() as
/// i32 [B] where it takes that (KernelInfo::entryOrder), held here. Made in
/// place: `tensors` points into it.
struct ServingTensors {
  ServingTensors(const AttentionArgs &args, const KernelInfo &info, const AttentionDims &dims);
  ServingTensors(const ServingTensors &) = delete;
  ServingTensors &operator=(const ServingTensors &) = delete;

  std::vector<const TensorRef *> tensors;

private:
  std::vector<int32_t> order;
  TensorRef orderTensor;
};

/// The order to start a call's batch entries in: the entries with the most
/// keys first (stable: equal ones in index order), an entry with no query
/// last. The kernel's work item b computes entry order[b] (attn.attention's
/// entry_order), so a GPU, which starts blocks in grid order, and the CPU's
/// threads start the longest entries first.
std::vector<int32_t> entryOrder(const AttentionArgs &args, const KernelInfo &info,
                                const AttentionDims &dims);

/// Runs fn(0) .. fn(tasks - 1) on a process-wide pool of worker threads and
/// waits for all of them.
void runTasks(unsigned tasks, const std::function<void(unsigned)> &fn);
unsigned hardwareThreads();

/// The argument array of a JIT kernel's packed C interface: a pointer to
/// each memref descriptor's pointer in `descriptors`, then to the work range
/// (begin, end), which the caller sets before each call.
std::vector<void *> packKernelArgs(std::vector<void *> &descriptors, int64_t &begin,
                                   int64_t &end);

/// Whether a kernel with `packedRows` (KernelInfo::packedRows or, for GPU
/// kernels, GPULaunch::packedRows: -1 never, 0 unknown) packs this call's
/// GQA groups into one query tile per key/value head (--attn-pack-gqa; its
/// run-time condition). `numQTiles` decides where packedRows is 0 (older
/// CPU kernels); without it, 0 means no.
bool packsGQA(const AttentionDims &dims, int64_t (*numQTiles)(int64_t), int64_t packedRows);

/// The work items a CPU kernel's grid has per batch entry (the grid is B x
/// this, entry-major): Hkv when it packs GQA groups, else Hq x query tiles.
int64_t kernelItemsPerEntry(const AttentionDims &dims, int64_t (*numQTiles)(int64_t),
                            int64_t packedRows);

/// The order the threads take a call's `items` in (a permutation of [0,
/// items)): the blocks of `perEntry` items of each batch entry, entries with
/// more key tiles (`entryTiles`, one per entry) first, the items past the
/// kernel's grid (B x perEntry) last: no long entry starts last and leaves
/// the other threads idle (longest processing time first). Empty (index
/// order) when the entries are alike or the sizes do not fit.
std::vector<int64_t> longestFirst(int64_t items, int64_t perEntry,
                                  const std::vector<int64_t> &entryTiles);

/// Key ranges per work item for a call (split-KV; docs/decode.md): enough
/// parts of the longest item's key tiles for about four per thread, each
/// of at least 8 tiles, at most 32; 1 when the items already keep the
/// threads busy. HEED_SPLIT_KV=N in the environment forces N. With
/// `qLens` (a kernel compiled for q_lens), entry b has qLens[b] queries
/// (GQA packing is chosen on the capacity, dims.seqQ, as the kernel does).
/// `packedRows`: the kernel's packed GQA tile (KernelInfo::packedRows; 0:
/// one query tile of numQTiles). `partKeys` (optional): the keys per part
/// the kernel is to take (splitPartKeys of the longest entry with queries).
int64_t chooseKVSplits(const AttentionDims &dims, const std::vector<int64_t> &kvLens,
                       unsigned threads, int64_t (*numQTiles)(int64_t),
                       int64_t (*numKVTiles)(int64_t),
                       const std::vector<int64_t> *qLens = nullptr, int64_t packedRows = 0,
                       int64_t *partKeys = nullptr);

/// Split-KV's parts of equal work (docs/decode.md, "Parts of equal work"):
/// the keys per part when the call's longest entry, of `longestKeys` keys,
/// is cut into `splits` parts. Every item's parts take that many keys (its
/// range never in more than `splits` parts), so a short entry's item runs
/// in fewer parts, none of them larger than a long one's; 0 (unsplit, or
/// HEED_SPLIT_KV_PARTS=even in the environment, to compare): the kernel
/// divides each item's range into `splits` equal parts.
int64_t splitPartKeys(int64_t longestKeys, int64_t splits);

/// Split-KV's workspace of a call cut into `splits` parts: f32 partial
/// accumulators [S, B, Hq, Sq, Dv], then the rows' statistics [S, B, Hq, Sq,
/// 2] (max, sum). Every dim is 0 for an unsplit call (never read).
struct SplitWorkspaceLayout {
  std::vector<int64_t> acc, stats;
  SplitWorkspaceLayout(int64_t splits, const AttentionDims &dims, int64_t valueDim);
  int64_t accElements() const;
  int64_t elements() const; ///< accumulators and statistics
  /// The f32 elements one part takes.
  static int64_t partElements(const AttentionDims &dims, int64_t valueDim) {
    return dims.batch * dims.headsQ * dims.seqQ * (valueDim + 2);
  }
};

/// Each batch entry's keys where the call gives them (kv_lens, or the
/// lengths of cu_seqlens_kv; checked by checkAttentionArgs), else empty.
std::vector<int64_t> entryKeyLengths(const AttentionArgs &args, const KernelInfo &info,
                                     const AttentionDims &dims);

/// Each batch entry's queries where the call gives them (q_lens, or the
/// lengths of cu_seqlens_q; checked by checkAttentionArgs), else empty.
std::vector<int64_t> entryQueryLengths(const AttentionArgs &args, const KernelInfo &info,
                                       const AttentionDims &dims);

/// Key ranges per work item for a GPU call of `blocks` thread blocks whose
/// longest entry has `longestKeys` keys, on a device that runs
/// `residentBlocks` of the kernel's blocks at once (multiprocessors times
/// blocks per multiprocessor; 0 when unknown: no split). 1 when the blocks
/// already fill 80% of one wave; else the fewest parts (of at least 256
/// keys, at most 64) whose waves are within 85% of the best wave
/// efficiency (FlashAttention-2's heuristic). HEED_SPLIT_KV=N forces N.
int64_t chooseGPUKVSplits(int64_t blocks, int64_t longestKeys, int64_t residentBlocks);

/// The keys of the call's longest batch entry with queries (entryKeyLengths'
/// longest over the entries q_lens or cu_seqlens_q give queries, else
/// dims.seqKV).
int64_t longestKeys(const AttentionArgs &args, const KernelInfo &info, const AttentionDims &dims);

} // namespace heed

#endif
