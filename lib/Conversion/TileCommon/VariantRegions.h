// Inlining a variant's regions (score, mask, blocks, route) into target
// code: what every target does alike, once. A target says only how an
// `attn.load` reads its buffer (scalar bounds-checked loads on GPUs and in
// scalar code, gathers on CPU vectors) and how wide the code is.
#ifndef HEED_LIB_CONVERSION_TILECOMMON_VARIANTREGIONS_H
#define HEED_LIB_CONVERSION_TILECOMMON_VARIANTREGIONS_H

#include "dialects/attn/AttnOps.h"
#include "dialects/attn/AttnTileOps.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/SmallVector.h"

#include <functional>
#include <optional>

namespace heed {

/// The values a target's inlinings of variant regions produced, for the
/// later inlinings at the same place to reuse: an op of a region whose
/// operands map to the same values as at an earlier inlining yields the
/// same values (ops free of memory effects, and attn.load: a bounds-checked
/// read is idempotent, its status store too). A target that inlines a
/// region once per element of a tile (GPU fragments) thus reads a buffer
/// element the tile shares (ALiBi's slopes[h]) once and computes each
/// row's terms once per row, not per element; LLVM cannot merge the
/// reads itself (each sits in its own branch with a status store).
/// Reused only where the earlier value dominates the insertion point. One
/// memo serves the inlinings of one tile op (the same buffers, route,
/// status, width and loads): the key is the region's op and its operands.
/// Values the caller marks as varying (`vary`: a fragment element's column
/// position) make every op that depends on them inlined afresh: shared,
/// their many results would stay live across the whole tile's code (the
/// dK/dV kernel of per-batch documents spilled), where recomputing them
/// beside each use keeps one live at a time.
class RegionMemo {
public:
  /// Marks `v` (a value the inlinings are given) as varying.
  void vary(mlir::Value v) { varying.insert(v); }
  bool varies(mlir::Value v) const { return varying.contains(v); }
  /// The results of an earlier inlining of `op` with these operands.
  std::optional<llvm::SmallVector<mlir::Value, 1>>
  lookup(mlir::OpBuilder &b, mlir::Operation *op, llvm::ArrayRef<mlir::Value> operands) const;
  void record(mlir::Operation *op, llvm::ArrayRef<mlir::Value> operands, mlir::ValueRange results);
  /// `v` converted to `type` (an integer width change: RegionInlining's
  /// narrow), made by `make` once per value and type where it dominates.
  mlir::Value cast(mlir::OpBuilder &b, mlir::Value v, mlir::Type type,
                   llvm::function_ref<mlir::Value()> make);

private:
  struct Entry {
    llvm::SmallVector<mlir::Value, 4> operands;
    llvm::SmallVector<mlir::Value, 1> results;
  };
  llvm::DenseMap<mlir::Operation *, llvm::SmallVector<Entry, 2>> entries;
  llvm::DenseMap<std::pair<mlir::Value, mlir::Type>, llvm::SmallVector<mlir::Value, 1>> casts;
  llvm::DenseSet<mlir::Value> varying;
};

struct RegionInlining {
  /// The values of the region's leading (index/score) arguments.
  mlir::ValueRange leading;
  /// The run-time buffers, then (blocks region) the summaries.
  mlir::ValueRange buffers;
  /// The route value attn.route reads (routed variants), as the region's
  /// code sees it (a scalar i64, or a vector of them when vectorized).
  mlir::Value route;
  /// 0: scalar code; N: every value widened to vector<N x T>, constants
  /// splatted (the region's arguments must be given as such vectors).
  int64_t width = 0;
  /// Reads `buffer[indices]` for an attn.load (`which`: its buffer's
  /// position); null: the scalar bounds-checked read of scalarLoad().
  std::function<mlir::Value(mlir::OpBuilder &, attn::LoadOp, mlir::Value buffer,
                            mlir::ValueRange indices, unsigned which)>
      load;
  /// Where an out-of-range read records the buffer's 1-based number.
  mlir::Value status;
  /// Shared by the inlinings of one tile op (RegionMemo); null: none.
  RegionMemo *memo = nullptr;
  /// Integer code in 32 bits wherever that is exact (GPU targets: 64-bit
  /// integer ops take two instructions and two registers). The region's
  /// index arguments (b, h and the positions q, kv) are taken to lie in
  /// [0, 2^31 - 1), heed's limit on a dimension (callers clamp padding
  /// positions to real ones); from these, the buffers' element types and
  /// the shapes, each integer op's range is inferred, and an op whose
  /// operands and results provably fit in i32 computes in i32. The rest
  /// stays 64-bit (a product of two positions, a value read from an i64
  /// buffer). Leading index values may then be given as i32.
  bool narrow = false;
};

/// The variant `name` refers to, searched in every symbol table around `op`
/// (a GPU kernel's gpu.module is one: the variants stay in the module
/// around it).
attn::VariantOp lookupVariant(mlir::Operation *op, mlir::FlatSymbolRefAttr name);

/// The size `shape` as bound by the nearest attn.tile.bind_shapes before
/// the builder's insertion point (an index value), or null where none is.
mlir::Value boundShape(mlir::OpBuilder &b, attn::Shape shape);

/// Clones the ops of `region` at the builder's insertion point with the
/// mapping of `how`; returns the value its attn.yield yields.
mlir::Value inlineVariantRegion(mlir::OpBuilder &b, mlir::Location loc, mlir::Region &region,
                                const RegionInlining &how);

/// The loop-invariant part of `region`, hoisted: inlines at the builder's
/// insertion point the ops that depend on none of the leading values given
/// as null (the ones a loop below varies: a key's position, the score) and
/// records them in `how.memo` (required), so that the inlinings in the loop
/// (with the same memo, the same non-null values) reuse them: ALiBi's
/// slopes[h] and a document mask's doc[b, q] read once per tile, not per
/// key. Only memoizable ops that cannot fault are hoisted (speculatable
/// ones, attn.load: a bounds-checked read, attn.shape; a division by a
/// value that may be 0 is not): what depends on another op is left in
/// place.
void inlineInvariants(mlir::OpBuilder &b, mlir::Location loc, mlir::Region &region,
                      const RegionInlining &how);

/// Inlines a derivative region (--attn-differentiate) like
/// inlineVariantRegion and returns what it yields; `adds` receives its
/// attn.grad_adds (inlined right before the insertion point), for the
/// caller to lower and erase.
mlir::Value inlineDerivative(mlir::OpBuilder &b, mlir::Location loc, mlir::Region &region,
                             const RegionInlining &how,
                             llvm::SmallVectorImpl<attn::GradAddOp> &adds);

/// `ok` and every index in [0, dim) of `memref` (an attn.grad_add's
/// element: out-of-range ones add nothing; an attn.load's). Indices are
/// index values or i32 (RegionInlining::narrow).
mlir::Value indicesInRange(mlir::OpBuilder &b, mlir::Location loc, mlir::Value memref,
                           mlir::ValueRange indices, mlir::Value ok);

/// Which of a derivative score region's attn.grad_add (in order) add to an
/// element that does not depend on the pair beyond (b, h): its indices use
/// neither the score nor q nor kv (ALiBi's slope of head h). Every element
/// of a tile adds to the same one, so the lowerings sum the tile's shares
/// first (fewer adds; on GPUs fewer atomics to one address; a tree sum
/// where a sum that cancels needs it) and add once.
llvm::SmallVector<bool> perHeadAdds(mlir::Block &region);

/// Whether the variant's score region yields its score argument unchanged.
bool isIdentityScore(attn::VariantOp variant);

/// The variant's score region at score `s` with the leading (b, h, q, kv)
/// `indices` and the rest of `how`; `s` itself where the region is the
/// identity.
mlir::Value inlineScore(mlir::OpBuilder &b, mlir::Location loc, attn::VariantOp variant,
                        const RegionInlining &how, mlir::Value s, mlir::ValueRange indices);

/// `score` where `visible` holds, else -inf (scalars or vectors; a null
/// `visible`: visible everywhere).
mlir::Value maskedScore(mlir::OpBuilder &b, mlir::Location loc, mlir::Value visible,
                        mlir::Value score);

/// The first converted value of an optional operand, or null.
inline mlir::Value optionalValue(mlir::ValueRange converted) {
  return converted.empty() ? mlir::Value() : converted.front();
}

/// The first converted value of each operand of a variadic one (memrefs:
/// one value each).
llvm::SmallVector<mlir::Value> firstValues(llvm::ArrayRef<mlir::ValueRange> converted);

/// What a tile op hands its variant's regions, converted: its buffers,
/// route and status (`Adaptor`: a 1:N adaptor of an op with all three).
struct RegionOperands {
  template <typename Adaptor>
  explicit RegionOperands(Adaptor adaptor)
      : buffers(firstValues(adaptor.getBuffers())), route(optionalValue(adaptor.getRoute())),
        status(optionalValue(adaptor.getStatus())) {}

  /// Scalar inlining of these operands (the caller sets `leading`), its
  /// inlinings sharing `memo`; `narrow` as RegionInlining's (the caller's
  /// positions clamped to real ones).
  RegionInlining inlining(bool narrow = false) {
    RegionInlining how;
    how.buffers = buffers;
    how.route = route;
    how.status = status;
    how.memo = &memo;
    how.narrow = narrow;
    return how;
  }

  llvm::SmallVector<mlir::Value> buffers;
  mlir::Value route, status;
  RegionMemo memo;
};

/// A scalar attn.load: buffer[indices] where every index is in range
/// (sign- or zero-extended to i64, or extended to f32, as attn.load
/// defines), else 0 and `status` (if any) set to `which + 1`. Indices may
/// be i32 (RegionInlining::narrow: compared in 32 bits); `resultType`, if
/// given, replaces the load's (i32 for an integer buffer of at most 32
/// bits, narrowed).
mlir::Value scalarLoad(mlir::OpBuilder &b, mlir::Location loc, attn::LoadOp load,
                       mlir::Value buffer, mlir::ValueRange indices, unsigned which,
                       mlir::Value status, mlir::Type resultType = {});

/// Extends a value read from a buffer (scalar or vector) to attn.load's
/// result type: floats to f32, i1 zero-extended, other integers
/// sign-extended to i64.
mlir::Value extendLoaded(mlir::OpBuilder &b, mlir::Location loc, mlir::Value v,
                         mlir::Type resultType);

} // namespace heed

#endif
