// The SIMT lowering of the tile ops (private to lib/Conversion/TileToSIMT):
// how a thread holds the tiles, and one populate function per op family.
//
// A work item runs on a block of R threads, R the query tile's rows: thread
// x owns row x of the tile, walks the key tiles (N keys each) alone and
// keeps its row's softmax statistics in registers. Per thread:
//   q   [R x D]  -> its query row in f32: memref<D x f32, private>
//   k/v [N x D]  -> nothing staged: (tensor, batch, head, first key, Skv
//                   [, page table]); qk and pv read the keys' rows from
//                   global memory (through the page table of a paged cache)
//   s   [R x N]  -> N f32: the row's scores
//   acc [R x Dv] -> memref<Dv x f32, private>, updated in place
//   row [R]      -> one f32
//   span         -> (first token, sequence length); a gated head's query
//                   tile: (first list slot, slot past the last), the tokens
//                   read from its routed-row list (gpu_tile::QueryRows)
// Private buffers are allocated at the kernel's entry (AMDGPU cannot
// allocate stack dynamically), and the loops over the head dims stay loops:
// NVIDIA then keeps q and acc in local memory (L1) instead of D + Dv
// registers, AMDGPU promotes them to registers itself.
#ifndef HEED_LIB_CONVERSION_TILETOSIMT_SIMTPATTERNS_H
#define HEED_LIB_CONVERSION_TILETOSIMT_SIMTPATTERNS_H

#include "../TileToGPU/MatrixCore.h"

#include "dialects/attn/AttnTileOps.h"

#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Transforms/DialectConversion.h"

namespace heed::simt {

using gpu_tile::at;
using gpu_tile::index;

/// What one kernel's patterns need to know: the K and V tensors' types and
/// layouts (a k/v tile's converted values include its tensor).
struct KernelInfo {
  mlir::Type keyType, valueType;
  /// A paged cache's page table (i32 [B, max_pages]) that k and v tiles
  /// read through; null for contiguous K/V.
  mlir::Type pageTable;
  attn::Layout keyLayout = attn::Layout::BHSD, valueLayout = attn::Layout::BHSD;
  int64_t rows = 0; ///< the query tile's rows: threads per block
};

class SIMTTypeConverter : public mlir::TypeConverter {
public:
  explicit SIMTTypeConverter(const KernelInfo &kernel);
  /// The kernel the tiles are converted for (the patterns read it here).
  const KernelInfo &kernel;
};

/// The token of key `j` of the key tile starting at `first` in a sequence
/// of `seq` keys; a key past the sequence (a hole) gets the last key's
/// (holes are masked, so what is read there has weight 0).
mlir::Value keyToken(mlir::OpBuilder &b, mlir::Location loc, mlir::Value first, mlir::Value seq,
                     int64_t j);

/// A k or v tile's converted values.
struct KeyTile {
  mlir::Value tensor, batch, head, first, seq;
  mlir::Value pages; ///< a paged cache's page table, or null
  explicit KeyTile(mlir::ValueRange converted)
      : tensor(converted[0]), batch(converted[1]), head(converted[2]), first(converted[3]),
        seq(converted[4]), pages(converted.size() > 5 ? converted[5] : mlir::Value()) {}
  mlir::Value token(mlir::OpBuilder &b, mlir::Location loc, int64_t j) const {
    return keyToken(b, loc, first, seq, j);
  }
  /// The indices of element `d` of key `token`'s row in `tensor` (a paged
  /// cache: through its page; `row` from rowOf, read once per key).
  std::pair<mlir::Value, mlir::Value> rowOf(mlir::OpBuilder &b, mlir::Location loc,
                                            attn::Layout layout, mlir::Value token) const;
  llvm::SmallVector<mlir::Value> at(attn::Layout layout, std::pair<mlir::Value, mlir::Value> row,
                                    mlir::Value d) const {
    return gpu_tile::at(layout, row.first, head, row.second, d);
  }
};

mlir::Value f32(mlir::OpBuilder &b, mlir::Location loc, double value);
/// `x` (f32, f16 or bf16) as f32.
mlir::Value toF32(mlir::OpBuilder &b, mlir::Location loc, mlir::Value x);
/// An scf.if (no else) on the thread's token in the span (first, seq) being
/// in the sequence; `row` is set to the token.
mlir::scf::IfOp ifRowInSequence(mlir::OpBuilder &b, mlir::Location loc, mlir::Value first,
                                mlir::Value seq, mlir::Value &row);
/// A loop over [0, n) whose body `body(d)` builds.
void forEach(mlir::OpBuilder &b, mlir::Location loc, int64_t n,
             llvm::function_ref<void(mlir::Value)> body);

/// Work items (a thread whose row is past Sq leaves), tile loads, fills and
/// stores.
void populateLoadStorePatterns(const SIMTTypeConverter &converter,
                               mlir::RewritePatternSet &patterns);
/// qk, the variant, the online softmax and pv.
void populateMathPatterns(const SIMTTypeConverter &converter,
                          mlir::RewritePatternSet &patterns);

} // namespace heed::simt

#endif
