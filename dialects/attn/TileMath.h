// The tiling arithmetic of `#attn.tiling`, written once for any integer-like
// type: int64_t where the runtime and tools count tiles and list a tile's
// tokens, heed::IndexExpr (lib/Conversion/TileCommon) where the lowerings
// emit the same formulas as index arithmetic.
//
// A sequence's tokens lie row-major on a grid with inner extents `grid`
// (empty: a 1-D sequence): token = sum_k d_k * s_k, s_{n-1} = 1. A tile is a
// patch with side patch[k] along dim k (flat tiles: grid {}, patch {n}), its
// lanes in row-major order. Tiles are numbered row-major over the patches.
#ifndef HEED_DIALECTS_ATTN_TILEMATH_H
#define HEED_DIALECTS_ATTN_TILEMATH_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/SmallVector.h"

#include <cstdint>

namespace heed::attn {

inline int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/// Lanes of a tile.
inline int64_t tileSize(llvm::ArrayRef<int64_t> patch) {
  int64_t n = 1;
  for (int64_t p : patch)
    n *= p;
  return n;
}

/// Strides s_0 > ... > s_{n-1} = 1 of a grid with inner extents `grid`.
inline llvm::SmallVector<int64_t> gridStrides(llvm::ArrayRef<int64_t> grid) {
  llvm::SmallVector<int64_t> strides(grid.size() + 1, 1);
  for (size_t k = grid.size(); k > 0; --k)
    strides[k - 1] = strides[k] * grid[k - 1];
  return strides;
}

/// Patches along inner dim k >= 1.
inline int64_t patchesAlong(llvm::ArrayRef<int64_t> grid, llvm::ArrayRef<int64_t> patch,
                            size_t k) {
  return ceilDiv(grid[k - 1], patch[k]);
}

/// The grid digit of lane `lane` along dim k, relative to the tile's origin.
inline int64_t laneDigit(llvm::ArrayRef<int64_t> patch, int64_t lane, size_t k) {
  int64_t inner = 1;
  for (size_t m = k + 1; m < patch.size(); ++m)
    inner *= patch[m];
  return lane / inner % patch[k];
}

/// Extent of the outer dim for `seq` tokens: ceil(seq / s_0).
template <class N> N gridRows(llvm::ArrayRef<int64_t> grid, N seq) {
  int64_t s0 = gridStrides(grid).front();
  return s0 == 1 ? seq : ceilDiv(seq, s0);
}

/// Tiles of a sequence of `seq` tokens.
template <class N>
N numTiles(llvm::ArrayRef<int64_t> grid, llvm::ArrayRef<int64_t> patch, N seq) {
  N n = ceilDiv(gridRows(grid, seq), patch[0]);
  int64_t inner = 1;
  for (size_t k = 1; k < patch.size(); ++k)
    inner *= patchesAlong(grid, patch, k);
  return inner == 1 ? n : n * inner;
}

/// Grid digits of the first point of tile `tile`.
template <class N>
llvm::SmallVector<N> tileOrigin(llvm::ArrayRef<int64_t> grid, llvm::ArrayRef<int64_t> patch,
                                N tile) {
  llvm::SmallVector<N> origin(patch.size(), tile);
  for (size_t k = patch.size() - 1; k > 0; --k) {
    int64_t m = patchesAlong(grid, patch, k);
    origin[k] = tile % m * patch[k];
    tile = tile / m;
  }
  origin[0] = tile * patch[0];
  return origin;
}

/// The token of grid digits `d`.
template <class N> N tokenOf(llvm::ArrayRef<int64_t> grid, llvm::ArrayRef<N> d) {
  llvm::SmallVector<int64_t> strides = gridStrides(grid);
  N token = d.back();
  for (size_t k = 0; k + 1 < d.size(); ++k)
    token = token + d[k] * strides[k];
  return token;
}

} // namespace heed::attn

#endif
