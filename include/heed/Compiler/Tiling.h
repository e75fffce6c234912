// The tiling a compiled kernel uses, as the runtime and tools see it: flat
// tiles of consecutive tokens, or patches of a 2-D/3-D token grid (chosen by
// --attn-analyze-mask), and a brute-force census of the mask over its tiles.
#ifndef HEED_COMPILER_TILING_H
#define HEED_COMPILER_TILING_H

#include "heed/Compiler/Compiler.h"
#include "heed/Runtime/Reference.h"

#include <vector>

namespace heed {

/// How one sequence is cut into tiles. Tokens lie row-major on a grid whose
/// inner extents are `grid` (empty: a 1-D sequence); a tile is a patch with
/// side `patch[k]` along grid dim k (one more entry than `grid`), its lanes in
/// row-major order. Flat tiles of n tokens: grid {}, patch {n}.
struct SequenceTiling {
  std::vector<int64_t> grid;
  std::vector<int64_t> patch;

  static SequenceTiling flat(int64_t n) { return {{}, {n}}; }
  int64_t tileSize() const;
  /// Tiles of a sequence of `seq` tokens (what heed_num_q_tiles returns).
  int64_t numTiles(int64_t seq) const;
  /// The token of each lane of tile `tile`, or -1 for a lane past the grid's
  /// edges or the sequence's end.
  std::vector<int64_t> tokens(int64_t tile, int64_t seq) const;
  /// tokens() of every tile.
  TokenTiles tiles(int64_t seq) const;
};

struct KernelTiling {
  SequenceTiling q, kv;
  bool patched() const { return !q.grid.empty(); }
  /// "flat 16 x 16" or "patches 4x4 / 4x4 on a ? x 128 grid".
  std::string describe() const;
};

/// The tiling Kernel::compile(variant, config) chooses (runs the front of
/// the pipeline: simplification and the mask analysis).
llvm::Expected<KernelTiling> kernelTiling(const spec::Variant &variant,
                                          const KernelConfig &config);

/// The tiling BackwardKernel::compile(variant, config) uses: its one loop's
/// (patches of a neighborhood mask's grid where the forward's would be
/// patched: block-q and block-kv of backwardTiles), or flat backwardTiles for
/// KernelConfig::backwardSplit (the GPUs' two kernels choose their own:
/// patches of their tile sizes on NVIDIA's mma.sync, docs/backward.md).
llvm::Expected<KernelTiling> backwardTiling(const spec::Variant &variant,
                                            const KernelConfig &config);

/// maskCensus over the blocks of `tiling`: every (q-tile, kv-tile) pair of
/// every (b, h), brute force. totalBlocks matches RunStats::totalBlocks.
/// (Defined in HeedReference: link it to call this.)
inline MaskCensus tiledMaskCensus(const spec::Variant &variant, const AttentionDims &dims,
                                  const std::vector<HostTensor> &buffers,
                                  const KernelTiling &tiling, unsigned threads = 0) {
  return maskCensus(variant, dims, buffers, tiling.q.tiles(dims.seqQ),
                    tiling.kv.tiles(dims.seqKV), threads);
}

/// tiledMaskCensus of a serving call: batch entry b with kvLens[b] keys
/// (dims.seqKV where kvLens is empty) and qLens[b] queries (dims.seqQ
/// where empty).
inline MaskCensus servingMaskCensus(const spec::Variant &variant, const AttentionDims &dims,
                                    const std::vector<HostTensor> &buffers,
                                    const KernelTiling &tiling,
                                    const std::vector<int64_t> &kvLens, unsigned threads = 0,
                                    const std::vector<int64_t> &qLens = {}) {
  MaskCensus total;
  for (int64_t b = 0; b < dims.batch; ++b) {
    AttentionDims entry = dims;
    if (!kvLens.empty())
      entry.seqKV = kvLens[size_t(b)];
    if (!qLens.empty())
      entry.seqQ = qLens[size_t(b)];
    MaskCensus c = maskCensus(variant, entry, buffers, tiling.q.tiles(entry.seqQ),
                              tiling.kv.tiles(entry.seqKV), threads, b);
    total.visiblePairs += c.visiblePairs;
    total.totalPairs += c.totalPairs;
    total.nonEmptyBlocks += c.nonEmptyBlocks;
    total.fullBlocks += c.fullBlocks;
    total.totalBlocks += c.totalBlocks;
  }
  return total;
}

} // namespace heed

#endif // HEED_COMPILER_TILING_H
