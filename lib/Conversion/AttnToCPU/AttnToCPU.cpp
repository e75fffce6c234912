// --attn-lower-to-cpu: attn.attention -> work-item loop, KV-block loop and
// online softmax on vectors, with the variant's regions inlined at tile level.
//
// The vector lanes are query rows, so the softmax statistics of a row live
// in one lane and no horizontal reduction is ever needed. Per work item
// (batch, query head, block of blockQ query rows):
//   qT[d][:]      <- Q transposed, as f32 (zero past the last row)
//   m = -inf, l = 0 (vector<blockQ>), acc[i][:] = 0
//   for each KV block of blockKV keys:
//     kS[j][:], vS[j][:] <- K and V rows as f32 (zero past the last key)
//     sT[j]  = sum_d kS[j][d] * qT[d]            (outer products, d outer)
//     sT[j]  = mask ? score_mod(scale * sT[j]) * log2(e) : -inf
//     m'     = max(m, max_j sT[j]); alpha = exp2(m - m'); pT[j] = exp2(sT[j] - m')
//     l      = l * alpha + sum_j pT[j]
//     acc[i] = acc[i] * alpha[i] + sum_j pT[j][i] * vS[j]
//   out = acc / l, lse = (m + log2 l) * ln 2; a row with l == 0 gives 0, -inf.
//
// Patch tiling (the variant's `patch_tiling`, chosen by the mask analysis):
// tokens lie on a grid, token = sum_k d_k * s_k, and a tile is a patch of
// P_0 x ... x P_{n-1} grid points in row-major lane order, so Q/K/V rows are
// gathered and output rows scattered through that permutation. Lanes past
// the grid's edges or past the sequence are invalid (zero rows, masked
// scores, never stored). The KV patches of a query patch are walked by nested
// loops, one per grid dimension, each bounded by binary search; the blocks
// region then classifies Cartesian boxes given by their corner tokens.
#include "heed/Conversion/Passes.h"

#include "../BlockSearch.h"

#include "dialects/attn/AttnOps.h"
#include "dialects/attn/TileMath.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/SymbolTable.h"

#include <cmath>

namespace heed {
#define GEN_PASS_DEF_ATTNLOWERTOCPU
#include "heed/Conversion/Passes.h.inc"
} // namespace heed

using namespace mlir;
using heed::attn::AttentionOp;
using heed::attn::VariantOp;

namespace {

constexpr double kLog2E = 1.4426950408889634;
constexpr double kLn2 = 0.6931471805599453;

/// A tiling of a sequence: tokens on a grid with strides `strides`
/// (s_{n-1} = 1) tiled by patches `patch`; flat tiles are strides {1}.
struct Tiling {
  SmallVector<int64_t> strides, patch;

  size_t dims() const { return strides.size(); }
  /// Extent of dim k > 0.
  int64_t extent(size_t k) const { return strides[k - 1] / strides[k]; }
  /// Patches along dim k > 0.
  int64_t patches(size_t k) const { return (extent(k) + patch[k] - 1) / patch[k]; }
  /// Lane digit of dim k for lane `lane`.
  int64_t laneDigit(int64_t lane, size_t k) const {
    int64_t inner = 1;
    for (size_t m = k + 1; m < dims(); ++m)
      inner *= patch[m];
    return lane / inner % patch[k];
  }
};

Tiling tilingOf(heed::attn::TilingAttr attr, heed::attn::Side side) {
  Tiling t;
  t.strides = heed::attn::gridStrides(attr.getGrid());
  ArrayRef<int64_t> patch = attr.getPatch(side);
  t.patch.assign(patch.begin(), patch.end());
  return t;
}

/// Extent of dim 0 for a sequence of `seq` tokens: ceil(seq / s_0).
Value rowsOf(OpBuilder &b, Location loc, Value seq, const Tiling &t) {
  if (t.strides[0] == 1)
    return seq;
  return arith::CeilDivUIOp::create(b, loc, seq, arith::ConstantIndexOp::create(b, loc, t.strides[0]));
}

/// Tiles of a sequence of `seq` tokens.
Value countTiles(OpBuilder &b, Location loc, Value seq, const Tiling &t) {
  Value n = arith::CeilDivUIOp::create(b, loc, rowsOf(b, loc, seq, t),
                                       arith::ConstantIndexOp::create(b, loc, t.patch[0]));
  int64_t inner = 1;
  for (size_t k = 1; k < t.dims(); ++k)
    inner *= t.patches(k);
  if (inner == 1)
    return n;
  return arith::MulIOp::create(b, loc, n, arith::ConstantIndexOp::create(b, loc, inner));
}

/// Builds the lowered code of one attention op.
class CPUAttentionLowering {
public:
  CPUAttentionLowering(AttentionOp op, VariantOp variant)
      : op(op), variant(variant), b(op.getLoc(), op),
        blockQ(op.getTilingAttr().getTileSize(heed::attn::Side::Q)),
        blockKV(op.getTilingAttr().getTileSize(heed::attn::Side::KV)) {}

  LogicalResult run();

private:
  // Small constructors.
  Value idx(int64_t v) { return arith::ConstantIndexOp::create(b, v); }
  Value f32(double v) {
    return arith::ConstantOp::create(b, b.getF32FloatAttr(static_cast<float>(v)));
  }
  Value splat(VectorType t, double v) {
    return arith::ConstantOp::create(
        b, DenseElementsAttr::get(t, b.getF32FloatAttr(static_cast<float>(v))));
  }
  Value minIdx(Value a, Value c) { return arith::MinSIOp::create(b, a, c); }

  /// Memref indices of (batch, head, position, dim) in the op's layout.
  SmallVector<Value> at(Value batch, Value head, Value pos, Value d) {
    if (op.isBSHD())
      return {batch, pos, head, d};
    return {batch, head, pos, d};
  }
  Value dim(Value memref, unsigned logical) {
    // logical: 0 batch, 1 heads, 2 sequence.
    unsigned physical = logical;
    if (op.isBSHD() && logical != 0)
      physical = logical == 1 ? 2 : 1;
    return memref::DimOp::create(b, memref, physical);
  }

  /// Loads `n` contiguous elements at `indices` as vector<n x f32>.
  Value loadRow(Value memref, ValueRange indices, int64_t n) {
    Type elt = cast<MemRefType>(memref.getType()).getElementType();
    Value v = vector::LoadOp::create(b, VectorType::get({n}, elt), memref, indices);
    if (!elt.isF32())
      v = arith::ExtFOp::create(b, VectorType::get({n}, b.getF32Type()), v);
    return v;
  }
  void storeRow(Value row, Value memref, ValueRange indices) {
    Type elt = cast<MemRefType>(memref.getType()).getElementType();
    if (!elt.isF32())
      row = arith::TruncFOp::create(
          b, VectorType::get(cast<VectorType>(row.getType()).getShape(), elt), row);
    vector::StoreOp::create(b, row, memref, indices);
  }

  // Patch tiling.
  /// Digits of the first grid point of tile `tile`.
  SmallVector<Value> tileOrigin(Value tile, const Tiling &t);
  /// Token and validity of lane `lane` (index) of the tile at `origin`.
  std::pair<Value, Value> laneToken(ArrayRef<Value> origin, Value lane, const Tiling &t,
                                    Value rows0, Value seq);
  /// The token of grid digits `d`.
  Value tokenOf(ArrayRef<Value> d, const Tiling &t);
  /// Last digits of the patch at `origin`, clipped to the grid.
  SmallVector<Value> patchEnd(ArrayRef<Value> origin, const Tiling &t, Value rows0);
  /// Loops over the KV patches of dims >= k (dims < k fixed to [lo, hi]).
  std::pair<Value, Value> emitKVPatches(size_t k, SmallVector<Value> &lo,
                                        SmallVector<Value> &hi, Value m, Value l);
  /// Classifies the KV block [kvLo, kvHi] and visits it unless EMPTY.
  std::pair<Value, Value> visitClassified(Value kb, Value kvLo, Value kvHi, Value m, Value l);

  Value exp2(Value x);
  FailureOr<Value> inlineRegion(Region &region, ArrayRef<Value> leading,
                                Value laneValid);
  LogicalResult checkRegion(Region &region, StringRef name);
  void emitItem(Value item);
  /// A routed variant: the item's route value picks a copy of the item
  /// specialized for its case (attn.route a constant there).
  void emitRoutedItem(Value item);
  /// One KV block; takes and returns the running (max, sum) vectors.
  std::pair<Value, Value> emitKVBlock(Value kb, Value rowMax, Value rowSum,
                                      Value partial);
  /// Runs the variant's `blocks` classifier on [qLo, qHi] x [kvLo, kvHi].
  Value classify(Value qLo, Value qHi, Value kvLo, Value kvHi);
  /// The smallest x in [lo, hi) with pred(x), or hi; pred must be monotone
  /// (false ... false true ... true).
  Value searchFirst(Value lo, Value hi, llvm::function_ref<Value(Value)> pred);
  /// Adds a visited block to `stats` (visited, full, partial), if present.
  void countBlock(Value visited, Value partial);

  AttentionOp op;
  VariantOp variant;
  ImplicitLocOpBuilder b;
  int64_t blockQ, blockKV;
  int64_t headDim = 0, headDimV = 0;
  VectorType laneType; // vector<blockQ x f32>: one lane per query row

  // Values live across the whole lowering.
  Value q, k, v, out, lse, status, stats;
  /// Gated variants (MoH): routed rows per (b, h) and their counts; the gate
  /// buffer and which of its dims b, q and h index.
  Value gateRows, gateCounts, gateBuffer, gateSlot0, gatedQHi;
  int64_t gateDims[3] = {0, 1, 2};
  SmallVector<Value> buffers, flatBuffers;
  SmallVector<SmallVector<Value>> bufferDims;
  Value numQBlocks, headsQ, seqQ, seqKV, group;
  Value qT, kS, vS, sT, acc, alphaBuf, statBuf;
  // Per work item.
  Value batch, headQ, headKV, q0, rows, qVec, qValid;
  bool identityScore = false, constantTrueMask = false, hasClassifier = false;
  /// The case the code being emitted is specialized for (routed variants).
  int64_t routeValue = 0;
  // Tiling of queries and keys; patched = patch tiling (else flat tiles).
  bool patched = false;
  Tiling qTiling, kvTiling;
  Value qRows0, kvRows0;        // extents of dim 0
  SmallVector<Value> qOrigin, qEnd, kvOrigin;
  Value qLoTok, qHiTok;         // corners of the query patch
};

SmallVector<Value> CPUAttentionLowering::tileOrigin(Value tile, const Tiling &t) {
  SmallVector<Value> origin(t.dims());
  for (size_t k = t.dims() - 1; k > 0; --k) {
    Value m = idx(t.patches(k));
    origin[k] = arith::MulIOp::create(b, arith::RemUIOp::create(b, tile, m), idx(t.patch[k]));
    tile = arith::DivUIOp::create(b, tile, m);
  }
  origin[0] = arith::MulIOp::create(b, tile, idx(t.patch[0]));
  return origin;
}

Value CPUAttentionLowering::tokenOf(ArrayRef<Value> d, const Tiling &t) {
  Value token = d.back();
  for (size_t k = 0; k + 1 < t.dims(); ++k)
    token = arith::AddIOp::create(b, token, arith::MulIOp::create(b, d[k], idx(t.strides[k])));
  return token;
}

std::pair<Value, Value> CPUAttentionLowering::laneToken(ArrayRef<Value> origin, Value lane,
                                                        const Tiling &t, Value rows0,
                                                        Value seq) {
  SmallVector<Value> d;
  Value valid;
  int64_t inner = 1;
  SmallVector<int64_t> inners(t.dims());
  for (size_t k = t.dims(); k > 0; --k) {
    inners[k - 1] = inner;
    inner *= t.patch[k - 1];
  }
  for (size_t k = 0; k < t.dims(); ++k) {
    Value l = arith::RemUIOp::create(b, arith::DivUIOp::create(b, lane, idx(inners[k])),
                                     idx(t.patch[k]));
    d.push_back(arith::AddIOp::create(b, origin[k], l));
    Value bound = k == 0 ? rows0 : idx(t.extent(k));
    Value ok = arith::CmpIOp::create(b, arith::CmpIPredicate::ult, d.back(), bound);
    valid = valid ? Value(arith::AndIOp::create(b, valid, ok)) : ok;
  }
  Value token = tokenOf(d, t);
  valid = arith::AndIOp::create(
      b, valid, arith::CmpIOp::create(b, arith::CmpIPredicate::ult, token, seq));
  return {token, valid};
}

SmallVector<Value> CPUAttentionLowering::patchEnd(ArrayRef<Value> origin, const Tiling &t,
                                                  Value rows0) {
  SmallVector<Value> end;
  for (size_t k = 0; k < t.dims(); ++k) {
    Value last = k == 0 ? Value(arith::SubIOp::create(b, rows0, idx(1))) : idx(t.extent(k) - 1);
    end.push_back(minIdx(arith::AddIOp::create(b, origin[k], idx(t.patch[k] - 1)), last));
  }
  return end;
}

/// 2^x for x <= 0 (all softmax exponents are), on vectors: x = n + f with
/// n = round(x), |f| <= 1/2; 2^f by a degree-7 Taylor polynomial of e^(f ln2)
/// (relative error < 1e-8), 2^n by building the exponent bits. x <= -127
/// (including -inf) gives exactly 0, so masked scores contribute nothing.
Value CPUAttentionLowering::exp2(Value x) {
  auto vt = cast<VectorType>(x.getType());
  auto it = VectorType::get(vt.getShape(), b.getI32Type());
  x = arith::MaximumFOp::create(b, x, splat(vt, -127.0));
  Value n = math::RoundEvenOp::create(b, x);
  Value f = arith::MulFOp::create(b, arith::SubFOp::create(b, x, n), splat(vt, kLn2));
  double coeff[8] = {1, 1, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040};
  Value p = splat(vt, coeff[7]);
  for (int i = 6; i >= 0; --i)
    p = math::FmaOp::create(b, p, f, splat(vt, coeff[i]));
  Value ni = arith::FPToSIOp::create(b, it, n);
  Value biased = arith::AddIOp::create(
      b, ni, arith::ConstantOp::create(b, DenseElementsAttr::get(it, b.getI32IntegerAttr(127))));
  Value bits = arith::ShLIOp::create(
      b, biased, arith::ConstantOp::create(b, DenseElementsAttr::get(it, b.getI32IntegerAttr(23))));
  Value scale = arith::BitcastOp::create(b, vt, bits);
  return arith::MulFOp::create(b, p, scale);
}

/// Only elementwise arith/math ops, constants and attn.load can be inlined
/// at tile level (each is applied to a vector of keys at once).
LogicalResult CPUAttentionLowering::checkRegion(Region &region, StringRef name) {
  for (Operation &inner : region.front()) {
    if (isa<heed::attn::YieldOp, heed::attn::LoadOp, heed::attn::RouteOp, arith::ConstantOp>(
            inner))
      continue;
    bool elementwise = inner.hasTrait<OpTrait::Elementwise>() ||
                       isa<arith::SelectOp>(inner);
    if (!elementwise || inner.getNumRegions() != 0)
      return inner.emitOpError()
             << "in the '" << name
             << "' region cannot be lowered to the CPU: only elementwise "
                "arith/math ops, constants and attn.load are supported";
  }
  return success();
}

/// Clones `region` with every scalar widened to vector<blockQ>: the leading
/// block arguments map to `leading` (vectors), buffers to the real memrefs.
FailureOr<Value> CPUAttentionLowering::inlineRegion(Region &region,
                                                    ArrayRef<Value> leading,
                                                    Value laneValid) {
  Block &block = region.front();
  IRMapping map;
  for (auto [arg, value] : llvm::zip(block.getArguments().take_front(leading.size()), leading))
    map.map(arg, value);
  auto widen = [&](Type t) { return VectorType::get({blockQ}, t); };
  for (Operation &inner : block) {
    if (auto yield = dyn_cast<heed::attn::YieldOp>(inner))
      return map.lookup(yield.getValue());
    if (auto route = dyn_cast<heed::attn::RouteOp>(inner)) {
      map.map(route.getResult(),
              arith::ConstantOp::create(
                  b, DenseElementsAttr::get(widen(b.getI64Type()),
                                            Attribute(b.getI64IntegerAttr(routeValue)))));
      continue;
    }
    if (auto cst = dyn_cast<arith::ConstantOp>(inner)) {
      auto attr = cast<TypedAttr>(cst.getValue());
      map.map(cst.getResult(),
              arith::ConstantOp::create(b, DenseElementsAttr::get(widen(attr.getType()), attr)));
      continue;
    }
    if (auto load = dyn_cast<heed::attn::LoadOp>(inner)) {
      unsigned which = cast<BlockArgument>(load.getBuffer()).getArgNumber() - leading.size();
      auto type = cast<MemRefType>(buffers[which].getType());
      // Linear index and bounds check over every dimension.
      VectorType idxType = widen(b.getIndexType());
      Value linear, inBounds;
      for (auto [d, index] : llvm::enumerate(load.getIndices())) {
        Value i = map.lookup(index);
        Value size = vector::BroadcastOp::create(b, idxType, bufferDims[which][d]);
        Value lo = arith::CmpIOp::create(b, arith::CmpIPredicate::sge, i,
                                         vector::BroadcastOp::create(b, idxType, idx(0)));
        Value hi = arith::CmpIOp::create(b, arith::CmpIPredicate::slt, i, size);
        Value ok = arith::AndIOp::create(b, lo, hi);
        inBounds = inBounds ? Value(arith::AndIOp::create(b, inBounds, ok)) : ok;
        linear = linear ? Value(arith::AddIOp::create(
                              b, arith::MulIOp::create(b, linear, size), i))
                        : i;
      }
      if (!linear) { // rank-0 buffer
        linear = vector::BroadcastOp::create(b, idxType, idx(0));
        inBounds = vector::BroadcastOp::create(
            b, widen(b.getI1Type()), arith::ConstantIntOp::create(b, 1, 1));
      }
      Type elt = type.getElementType();
      Value zero = arith::ConstantOp::create(
          b, DenseElementsAttr::get(widen(elt), b.getZeroAttr(elt)));
      Value got = vector::GatherOp::create(b, widen(elt), flatBuffers[which],
                                           ValueRange{idx(0)}, linear, inBounds, zero);
      Type result = load.getResult().getType();
      if (elt != result) {
        if (isa<FloatType>(elt))
          got = arith::ExtFOp::create(b, widen(result), got);
        else
          got = elt.isInteger(1) ? Value(arith::ExtUIOp::create(b, widen(result), got))
                                 : Value(arith::ExtSIOp::create(b, widen(result), got));
      }
      if (status) {
        // Lanes past the last row or key do not count: their indices are not
        // the user's.
        Value trueVec = vector::BroadcastOp::create(
            b, widen(b.getI1Type()), arith::ConstantIntOp::create(b, 1, 1));
        Value bad = arith::AndIOp::create(b, arith::XOrIOp::create(b, inBounds, trueVec),
                                          laneValid);
        Value any = vector::ReductionOp::create(b, vector::CombiningKind::OR, bad);
        auto ifOp = scf::IfOp::create(b, any, /*withElseRegion=*/false);
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPointToStart(&ifOp.getThenRegion().front());
        memref::StoreOp::create(
            b, arith::ConstantIntOp::create(b, which + 1, 32), status, ValueRange{idx(0)});
      }
      map.map(load.getResult(), got);
      continue;
    }
    Operation *clone = b.clone(inner, map);
    for (OpResult r : clone->getResults())
      r.setType(widen(r.getType()));
  }
  return failure();
}

Value CPUAttentionLowering::classify(Value qLo, Value qHi, Value kvLo, Value kvHi) {
  Block &block = variant.getBlocks().front();
  IRMapping map;
  Value args[] = {batch, headQ, qLo, qHi, kvLo, kvHi};
  for (unsigned i = 0; i < VariantOp::kBlocksIndexArgs; ++i)
    map.map(block.getArgument(i), args[i]);
  for (auto [i, buf] : llvm::enumerate(buffers))
    map.map(block.getArgument(VariantOp::kBlocksIndexArgs + i), buf);
  for (auto [i, summary] : llvm::enumerate(op.getSummaries()))
    map.map(block.getArgument(VariantOp::kBlocksIndexArgs + buffers.size() + i), summary);
  for (Operation &inner : block.without_terminator()) {
    if (auto route = dyn_cast<heed::attn::RouteOp>(inner)) {
      map.map(route.getResult(), arith::ConstantIntOp::create(b, routeValue, 64));
      continue;
    }
    b.clone(inner, map);
  }
  return map.lookup(cast<heed::attn::YieldOp>(block.getTerminator()).getValue());
}

void CPUAttentionLowering::emitRoutedItem(Value item) {
  Value rest = arith::DivUIOp::create(b, item, numQBlocks);
  Value head = arith::RemUIOp::create(b, rest, headsQ);
  Value bat = arith::DivUIOp::create(b, rest, headsQ);
  // The route region, evaluated like the others (lane 0 of a vector).
  VectorType idxVec = VectorType::get({blockQ}, b.getIndexType());
  Value allLanes = vector::BroadcastOp::create(b, VectorType::get({blockQ}, b.getI1Type()),
                                               arith::ConstantIntOp::create(b, 1, 1));
  Value routeVec = *inlineRegion(variant.getRoute(),
                                 {vector::BroadcastOp::create(b, idxVec, bat),
                                  vector::BroadcastOp::create(b, idxVec, head)},
                                 allLanes);
  Value route = vector::ExtractOp::create(b, routeVec, ArrayRef<int64_t>{0});
  ArrayRef<int64_t> cases = *variant.getRouteCases();
  // Values with no case: a sentinel that matches none, so the mask is false
  // (the analysis leaves every block EMPTY; the rows come out zero).
  int64_t none = *std::min_element(cases.begin(), cases.end());
  none = none == std::numeric_limits<int64_t>::min() ? *std::max_element(cases.begin(), cases.end()) + 1
                                                     : none - 1;
  // The switch is on index values: out-of-range i64 values go to default
  // only through an explicit check.
  SmallVector<int64_t> indexCases(cases.begin(), cases.end());
  auto sw = scf::IndexSwitchOp::create(b, TypeRange{},
                                       arith::IndexCastOp::create(b, b.getIndexType(), route),
                                       indexCases, indexCases.size());
  auto fill = [&](Region &region, int64_t value) {
    OpBuilder::InsertionGuard guard(b);
    Block *block = b.createBlock(&region);
    b.setInsertionPointToStart(block);
    routeValue = value;
    emitItem(item); // may leave the insertion point in a nested region
    b.setInsertionPointToEnd(block);
    scf::YieldOp::create(b);
  };
  for (auto [i, value] : llvm::enumerate(cases))
    fill(sw.getCaseRegions()[i], value);
  fill(sw.getDefaultRegion(), none);
}

void CPUAttentionLowering::countBlock(Value visited, Value partial) {
  if (!stats)
    return;
  auto bump = [&](int64_t slot, Value flag) {
    Value old = memref::LoadOp::create(b, stats, ValueRange{idx(slot)});
    Value inc = arith::ExtUIOp::create(b, b.getI64Type(), flag);
    memref::StoreOp::create(b, arith::AddIOp::create(b, old, inc), stats, ValueRange{idx(slot)});
  };
  bump(0, visited);
  bump(1, arith::XOrIOp::create(b, partial, arith::ConstantIntOp::create(b, 1, 1)));
  bump(2, partial);
}

Value CPUAttentionLowering::searchFirst(Value lo, Value hi,
                                        llvm::function_ref<Value(Value)> pred) {
  return heed::searchFirst(b, b.getLoc(), lo, hi, pred);
}

std::pair<Value, Value> CPUAttentionLowering::emitKVBlock(Value kb, Value mOld,
                                                          Value lOld, Value partial) {
  Value c0 = idx(0), c1 = idx(1);
  // Key j of the block: its token and whether it exists. Patches may have
  // holes (past the grid's edges): every slot is staged and masked.
  Value kv0, cols;
  if (patched) {
    cols = idx(blockKV);
  } else {
    kv0 = arith::MulIOp::create(b, kb, idx(blockKV));
    cols = minIdx(idx(blockKV), arith::SubIOp::create(b, seqKV, kv0));
  }
  auto keyAt = [&](Value j) -> std::pair<Value, Value> {
    if (patched)
      return laneToken(kvOrigin, j, kvTiling, kvRows0, seqKV);
    Value pos = arith::AddIOp::create(b, kv0, j);
    return {pos, arith::CmpIOp::create(b, arith::CmpIPredicate::slt, pos, seqKV)};
  };
  VectorType vRowType = VectorType::get({headDimV}, b.getF32Type());
  VectorType kRowType = VectorType::get({headDim}, b.getF32Type());

  // Stage K and V rows of this block as f32; rows past the last key are zero
  // so that 0 * garbage never makes a NaN.
  {
    auto staging = scf::ForOp::create(b, c0, idx(blockKV), c1);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(staging.getBody());
    Value j = staging.getInductionVar();
    auto [pos, valid] = keyAt(j);
    auto ifOp = scf::IfOp::create(b, valid, /*withElseRegion=*/true);
    b.setInsertionPointToStart(&ifOp.getThenRegion().front());
    vector::StoreOp::create(b, loadRow(k, at(batch, headKV, pos, c0), headDim), kS,
                            ValueRange{j, c0});
    vector::StoreOp::create(b, loadRow(v, at(batch, headKV, pos, c0), headDimV), vS,
                            ValueRange{j, c0});
    b.setInsertionPointToStart(&ifOp.getElseRegion().front());
    vector::StoreOp::create(b, splat(kRowType, 0), kS, ValueRange{j, c0});
    vector::StoreOp::create(b, splat(vRowType, 0), vS, ValueRange{j, c0});
  }

  // sT[j] = Q kS[j]^T for all keys of the block at once: the head dim is the
  // outer loop and the blockKV partial sums stay in registers.
  SmallVector<Value> zeros(blockKV, splat(laneType, 0));
  auto dot = scf::ForOp::create(b, c0, idx(headDim), c1, zeros);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(dot.getBody());
    Value d = dot.getInductionVar();
    Value qv = vector::LoadOp::create(b, laneType, qT, ValueRange{d, c0});
    SmallVector<Value> next;
    for (int64_t j = 0; j < blockKV; ++j) {
      Value kvScalar = memref::LoadOp::create(b, kS, ValueRange{idx(j), d});
      next.push_back(vector::FMAOp::create(b, vector::BroadcastOp::create(b, laneType, kvScalar),
                                           qv, dot.getRegionIterArgs()[j]));
    }
    scf::YieldOp::create(b, next);
  }
  Value scaleVec = splat(laneType, op.getScale().convertToFloat());
  for (int64_t j = 0; j < blockKV; ++j)
    vector::StoreOp::create(b, arith::MulFOp::create(b, dot.getResult(j), scaleVec), sT,
                            ValueRange{idx(j), c0});

  // The variant at tile level, one key (and all rows) at a time, and the
  // block's row max.
  VectorType idxVec = VectorType::get({blockQ}, b.getIndexType());
  Value bV = vector::BroadcastOp::create(b, idxVec, batch);
  Value hV = vector::BroadcastOp::create(b, idxVec, headQ);
  Value negInf = splat(laneType, -INFINITY);
  auto apply = scf::ForOp::create(b, c0, idx(blockKV), c1, ValueRange{mOld});
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(apply.getBody());
    Value j = apply.getInductionVar();
    auto [kvPos, kvValid] = keyAt(j);
    Value kvV = vector::BroadcastOp::create(b, idxVec, kvPos);
    Value laneValid = arith::AndIOp::create(
        b, qValid, vector::BroadcastOp::create(b, VectorType::get({blockQ}, b.getI1Type()),
                                               kvValid));
    Value s = vector::LoadOp::create(b, laneType, sT, ValueRange{j, c0});
    if (!identityScore)
      s = *inlineRegion(variant.getScore(), {s, bV, hV, qVec, kvV}, laneValid);
    Value visible = laneValid;
    if (!constantTrueMask) {
      // FULL blocks (partial == false) skip the mask.
      VectorType maskType = VectorType::get({blockQ}, b.getI1Type());
      auto ifOp = scf::IfOp::create(b, TypeRange{maskType}, partial, /*withElseRegion=*/true);
      {
        OpBuilder::InsertionGuard inner(b);
        b.setInsertionPointToStart(&ifOp.getThenRegion().front());
        scf::YieldOp::create(
            b, ValueRange{arith::AndIOp::create(
                   b, visible,
                   *inlineRegion(variant.getMask(), {bV, hV, qVec, kvV}, laneValid))});
        b.setInsertionPointToStart(&ifOp.getElseRegion().front());
        scf::YieldOp::create(b, ValueRange{visible});
      }
      visible = ifOp.getResult(0);
    }
    s = arith::SelectOp::create(b, visible, arith::MulFOp::create(b, s, splat(laneType, kLog2E)),
                                negInf);
    vector::StoreOp::create(b, s, sT, ValueRange{j, c0});
    scf::YieldOp::create(b, ValueRange{arith::MaxNumFOp::create(b, apply.getRegionIterArgs()[0], s)});
  }
  Value mNew = apply.getResult(0);

  // Online softmax: a row that has seen only masked keys keeps max -inf; its
  // exponents use 0 instead so that -inf - -inf never makes a NaN.
  Value allMasked = arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, mNew, negInf);
  Value mSafe = arith::SelectOp::create(b, allMasked, splat(laneType, 0), mNew);
  Value alpha = exp2(arith::SubFOp::create(b, mOld, mSafe));
  vector::StoreOp::create(b, alpha, alphaBuf, ValueRange{c0});
  auto probs = scf::ForOp::create(b, c0, idx(blockKV), c1, ValueRange{splat(laneType, 0)});
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(probs.getBody());
    Value j = probs.getInductionVar();
    Value s = vector::LoadOp::create(b, laneType, sT, ValueRange{j, c0});
    Value p = exp2(arith::SubFOp::create(b, s, mSafe));
    vector::StoreOp::create(b, p, sT, ValueRange{j, c0});
    scf::YieldOp::create(b, ValueRange{arith::AddFOp::create(b, probs.getRegionIterArgs()[0], p)});
  }
  Value lNew = arith::AddFOp::create(b, arith::MulFOp::create(b, lOld, alpha), probs.getResult(0));

  // acc[i] = acc[i] * alpha[i] + sum_j p[j][i] * vS[j]; each weight is a
  // broadcast load from memory rather than a register shuffle.
  // Rows go in pairs (blockQ is even or 1) so each V row loaded serves two
  // accumulators; a pair's second row may lie past the end: its weights are
  // 0, it stays 0 and is never written out.
  int64_t pair = blockQ > 1 ? 2 : 1;
  auto rowLoop = scf::ForOp::create(b, c0, rows, idx(pair));
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(rowLoop.getBody());
    Value i0 = rowLoop.getInductionVar();
    SmallVector<Value> rowsOf, accRows;
    for (int64_t r = 0; r < pair; ++r) {
      Value i = r ? Value(arith::AddIOp::create(b, i0, idx(r))) : i0;
      rowsOf.push_back(i);
      Value a = memref::LoadOp::create(b, alphaBuf, ValueRange{i});
      Value accRow = vector::LoadOp::create(b, vRowType, acc, ValueRange{i, c0});
      accRows.push_back(
          arith::MulFOp::create(b, accRow, vector::BroadcastOp::create(b, vRowType, a)));
    }
    auto pv = scf::ForOp::create(b, c0, cols, c1, accRows);
    {
      OpBuilder::InsertionGuard inner(b);
      b.setInsertionPointToStart(pv.getBody());
      Value j = pv.getInductionVar();
      Value vRow = vector::LoadOp::create(b, vRowType, vS, ValueRange{j, c0});
      SmallVector<Value> next;
      for (int64_t r = 0; r < pair; ++r) {
        Value w = memref::LoadOp::create(b, sT, ValueRange{j, rowsOf[r]});
        next.push_back(vector::FMAOp::create(b, vector::BroadcastOp::create(b, vRowType, w),
                                             vRow, pv.getRegionIterArgs()[r]));
      }
      scf::YieldOp::create(b, next);
    }
    for (int64_t r = 0; r < pair; ++r)
      vector::StoreOp::create(b, pv.getResult(r), acc, ValueRange{rowsOf[r], c0});
  }
  return {mNew, lNew};
}

std::pair<Value, Value> CPUAttentionLowering::visitClassified(Value kb, Value kvLo, Value kvHi,
                                                              Value m, Value l) {
  Value trueValue = arith::ConstantIntOp::create(b, 1, 1);
  Value cls = classify(qLoTok, qHiTok, kvLo, kvHi);
  Value visit = arith::CmpIOp::create(b, arith::CmpIPredicate::ne, cls,
                                      arith::ConstantIntOp::create(b, int64_t(heed::attn::BlockClass::Empty), 8));
  if (patched) {
    // A patch whose first token is past the end is all holes (a sequence
    // that ends mid-row): nothing to compute.
    Value real = arith::AndIOp::create(
        b, arith::CmpIOp::create(b, arith::CmpIPredicate::ult, kvLo, seqKV),
        arith::CmpIOp::create(b, arith::CmpIPredicate::ult, qLoTok, seqQ));
    visit = arith::AndIOp::create(b, visit, real);
  }
  Value partial = arith::CmpIOp::create(
      b, arith::CmpIPredicate::eq, cls, arith::ConstantIntOp::create(b, int64_t(heed::attn::BlockClass::Partial), 8));
  auto ifOp = scf::IfOp::create(b, TypeRange{laneType, laneType}, visit, true);
  OpBuilder::InsertionGuard inner(b);
  b.setInsertionPointToStart(&ifOp.getThenRegion().front());
  countBlock(trueValue, partial);
  auto [m2, l2] = emitKVBlock(kb, m, l, partial);
  scf::YieldOp::create(b, ValueRange{m2, l2});
  b.setInsertionPointToStart(&ifOp.getElseRegion().front());
  scf::YieldOp::create(b, ValueRange{m, l});
  return {ifOp.getResult(0), ifOp.getResult(1)};
}

std::pair<Value, Value> CPUAttentionLowering::emitKVPatches(size_t k, SmallVector<Value> &lo,
                                                            SmallVector<Value> &hi, Value m,
                                                            Value l) {
  // The box of patches [from, to] along dim k, the outer dims fixed, the
  // inner ones whole; an EMPTY box stays EMPTY when it shrinks, so the
  // first and last patches the query patch may see are found by bisection.
  const Tiling &t = kvTiling;
  Value c0 = idx(0), c1 = idx(1);
  Value last = k == 0 ? Value(arith::SubIOp::create(b, kvRows0, c1)) : idx(t.extent(k) - 1);
  Value count = k == 0 ? arith::CeilDivUIOp::create(b, kvRows0, idx(t.patch[0])).getResult()
                       : idx(t.patches(k));
  auto isEmpty = [&](Value from, Value to) {
    SmallVector<Value> boxLo(lo), boxHi(hi);
    boxLo.push_back(from);
    boxHi.push_back(to);
    for (size_t m = k + 1; m < t.dims(); ++m) {
      boxLo.push_back(c0);
      boxHi.push_back(idx(t.extent(m) - 1));
    }
    return arith::CmpIOp::create(b, arith::CmpIPredicate::eq,
                                 classify(qLoTok, qHiTok, tokenOf(boxLo, t), tokenOf(boxHi, t)),
                                 arith::ConstantIntOp::create(b, int64_t(heed::attn::BlockClass::Empty), 8));
  };
  Value first = searchFirst(c0, count, [&](Value x) -> Value {
    Value to = minIdx(arith::SubIOp::create(
                          b, arith::MulIOp::create(b, arith::AddIOp::create(b, x, c1),
                                                   idx(t.patch[k])), c1),
                      last);
    return arith::XOrIOp::create(b, isEmpty(c0, to), arith::ConstantIntOp::create(b, 1, 1));
  });
  Value end = searchFirst(first, count, [&](Value y) -> Value {
    return isEmpty(arith::MulIOp::create(b, y, idx(t.patch[k])), last);
  });
  auto loop = scf::ForOp::create(b, first, end, c1, ValueRange{m, l});
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(loop.getBody());
  Value from = arith::MulIOp::create(b, loop.getInductionVar(), idx(t.patch[k]));
  lo.push_back(from);
  hi.push_back(minIdx(arith::AddIOp::create(b, from, idx(t.patch[k] - 1)), last));
  Value mIn = loop.getRegionIterArgs()[0], lIn = loop.getRegionIterArgs()[1];
  std::pair<Value, Value> next;
  if (k + 1 < t.dims()) {
    next = emitKVPatches(k + 1, lo, hi, mIn, lIn);
  } else {
    kvOrigin.assign(lo.begin(), lo.end());
    next = visitClassified(Value(), tokenOf(lo, t), tokenOf(hi, t), mIn, lIn);
  }
  lo.pop_back();
  hi.pop_back();
  scf::YieldOp::create(b, ValueRange{next.first, next.second});
  return {loop.getResult(0), loop.getResult(1)};
}

void CPUAttentionLowering::emitItem(Value item) {
  Value c0 = idx(0), c1 = idx(1);
  Value qb = arith::RemUIOp::create(b, item, numQBlocks);
  Value rest = arith::DivUIOp::create(b, item, numQBlocks);
  headQ = arith::RemUIOp::create(b, rest, headsQ);
  batch = arith::DivUIOp::create(b, rest, headsQ);
  headKV = arith::DivUIOp::create(b, headQ, group);
  VectorType idxVec = VectorType::get({blockQ}, b.getIndexType());
  if (patched) {
    // Lane i of the patch: its grid digits are the origin's plus constant
    // offsets, so the tokens are origin token + a constant vector.
    qOrigin = tileOrigin(qb, qTiling);
    qEnd = patchEnd(qOrigin, qTiling, qRows0);
    q0 = tokenOf(qOrigin, qTiling);
    rows = idx(blockQ);
    SmallVector<int64_t> offsets(blockQ, 0);
    for (int64_t i = 0; i < blockQ; ++i)
      for (size_t k = 0; k < qTiling.dims(); ++k)
        offsets[i] += qTiling.laneDigit(i, k) * qTiling.strides[k];
    auto constVec = [&](ArrayRef<int64_t> values) {
      SmallVector<Attribute> attrs;
      for (int64_t x : values)
        attrs.push_back(b.getIndexAttr(x));
      return arith::ConstantOp::create(b, DenseElementsAttr::get(idxVec, attrs)).getResult();
    };
    qVec = arith::AddIOp::create(b, vector::BroadcastOp::create(b, idxVec, q0),
                                 constVec(offsets));
    qValid = arith::CmpIOp::create(b, arith::CmpIPredicate::slt, qVec,
                                   vector::BroadcastOp::create(b, idxVec, seqQ));
    for (size_t k = 1; k < qTiling.dims(); ++k) {
      SmallVector<int64_t> digit(blockQ);
      for (int64_t i = 0; i < blockQ; ++i)
        digit[i] = qTiling.laneDigit(i, k);
      Value d = arith::AddIOp::create(b, vector::BroadcastOp::create(b, idxVec, qOrigin[k]),
                                      constVec(digit));
      qValid = arith::AndIOp::create(
          b, qValid, arith::CmpIOp::create(b, arith::CmpIPredicate::slt, d,
                                           vector::BroadcastOp::create(b, idxVec,
                                                                       idx(qTiling.extent(k)))));
    }
  } else if (gateRows) {
    // The item's rows are routed rows of head (b, h): slots [slot0, slot0 +
    // rows) of its list. A tile past the routed ones only writes zeros.
    Value bh = arith::AddIOp::create(b, arith::MulIOp::create(b, batch, headsQ), headQ);
    Value base = arith::MulIOp::create(b, bh, seqQ);
    Value slot0 = arith::MulIOp::create(b, qb, idx(blockQ));
    rows = minIdx(idx(blockQ), arith::SubIOp::create(b, seqQ, slot0));
    gateSlot0 = arith::AddIOp::create(b, base, slot0);
    Value count = arith::IndexCastOp::create(
        b, b.getIndexType(), memref::LoadOp::create(b, gateCounts, ValueRange{bh}));
    Value idle = arith::CmpIOp::create(b, arith::CmpIPredicate::sge, slot0, count);
    auto ifOp = scf::IfOp::create(b, idle, /*withElseRegion=*/true);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(&ifOp.getThenRegion().front());
      auto zeros = scf::ForOp::create(b, c0, rows, c1);
      b.setInsertionPointToStart(zeros.getBody());
      Value pos = arith::IndexCastOp::create(
          b, b.getIndexType(),
          memref::LoadOp::create(
              b, gateRows, ValueRange{arith::AddIOp::create(b, gateSlot0, zeros.getInductionVar())}));
      storeRow(splat(VectorType::get({headDimV}, b.getF32Type()), 0), out,
               at(batch, headQ, pos, c0));
      if (lse)
        memref::StoreOp::create(b, f32(-INFINITY), lse, ValueRange{batch, headQ, pos});
    }
    b.setInsertionPointToStart(&ifOp.getElseRegion().front());
    VectorType i32Vec = VectorType::get({blockQ}, b.getI32Type());
    Value lanes = vector::StepOp::create(b, idxVec);
    qValid = arith::CmpIOp::create(b, arith::CmpIPredicate::slt, lanes,
                                   vector::BroadcastOp::create(b, idxVec, rows));
    Value tokens = vector::GatherOp::create(
        b, i32Vec, gateRows, ValueRange{gateSlot0}, lanes, qValid,
        arith::ConstantOp::create(b, DenseElementsAttr::get(i32Vec, Attribute(b.getI32IntegerAttr(0)))));
    qVec = arith::IndexCastOp::create(b, idxVec, tokens);
    // The box of the routed rows (ascending): the unrouted rows after them
    // in the last routed tile come out as gate 0 * anything = 0.
    auto tokenAt = [&](Value slot) {
      return arith::IndexCastOp::create(
                 b, b.getIndexType(),
                 memref::LoadOp::create(b, gateRows, ValueRange{arith::AddIOp::create(b, base, slot)}))
          .getResult();
    };
    q0 = tokenAt(slot0);
    Value lastRouted = arith::SubIOp::create(
        b, minIdx(arith::AddIOp::create(b, slot0, rows), count), c1);
    gatedQHi = tokenAt(lastRouted);
  } else {
    q0 = arith::MulIOp::create(b, qb, idx(blockQ));
    rows = minIdx(idx(blockQ), arith::SubIOp::create(b, seqQ, q0));
    qVec = arith::AddIOp::create(b, vector::BroadcastOp::create(b, idxVec, q0),
                                 vector::StepOp::create(b, idxVec));
    qValid = arith::CmpIOp::create(b, arith::CmpIPredicate::slt, qVec,
                                   vector::BroadcastOp::create(b, idxVec, seqQ));
  }
  // Row i of the item: its token and whether it exists.
  auto rowAt = [&](Value i) -> std::pair<Value, Value> {
    if (patched)
      return laneToken(qOrigin, i, qTiling, qRows0, seqQ);
    if (gateRows)
      return {arith::IndexCastOp::create(
                  b, b.getIndexType(),
                  memref::LoadOp::create(b, gateRows,
                                         ValueRange{arith::AddIOp::create(b, gateSlot0, i)})),
              arith::CmpIOp::create(b, arith::CmpIPredicate::slt, i, rows)};
    return {arith::AddIOp::create(b, q0, i),
            arith::CmpIOp::create(b, arith::CmpIPredicate::slt, i, rows)};
  };
  VectorType vRowType = VectorType::get({headDimV}, b.getF32Type());

  // Q transposed (rows past the end are zero) and a zero accumulator. The
  // transpose is done once per item and serves every KV block.
  {
    auto init = scf::ForOp::create(b, c0, idx(blockQ), c1);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(init.getBody());
    Value i = init.getInductionVar();
    vector::StoreOp::create(b, splat(vRowType, 0), acc, ValueRange{i, c0});
    auto [pos, valid] = rowAt(i);
    auto ifOp = scf::IfOp::create(b, valid, /*withElseRegion=*/true);
    b.setInsertionPointToStart(&ifOp.getThenRegion().front());
    Type qElt = cast<MemRefType>(q.getType()).getElementType();
    for (int64_t d = 0; d < headDim; ++d) {
      Value x = memref::LoadOp::create(b, q, at(batch, headQ, pos, idx(d)));
      if (!qElt.isF32())
        x = arith::ExtFOp::create(b, b.getF32Type(), x);
      memref::StoreOp::create(b, x, qT, ValueRange{idx(d), i});
    }
    b.setInsertionPointToStart(&ifOp.getElseRegion().front());
    Value zero = f32(0);
    for (int64_t d = 0; d < headDim; ++d)
      memref::StoreOp::create(b, zero, qT, ValueRange{idx(d), i});
  }

  Value numKVBlocks = arith::CeilDivUIOp::create(b, seqKV, idx(blockKV));
  Value qLo = q0, qHi = arith::SubIOp::create(b, arith::AddIOp::create(b, q0, rows), c1);
  if (patched)
    qHi = tokenOf(qEnd, qTiling);
  if (gateRows)
    qHi = gatedQHi;
  qLoTok = qLo;
  qHiTok = qHi;
  Value lastKV = arith::SubIOp::create(b, seqKV, c1);
  Value first = c0, end = numKVBlocks;
  if (hasClassifier && !patched) {
    // Visit only blocks between the first and last that the mask may reach:
    // both ends by binary search, since a box that is EMPTY stays EMPTY when
    // it shrinks.
    auto isEmpty = [&](Value lo, Value hi) {
      return arith::CmpIOp::create(b, arith::CmpIPredicate::eq, classify(qLo, qHi, lo, hi),
                                   arith::ConstantIntOp::create(b, int64_t(heed::attn::BlockClass::Empty), 8));
    };
    first = searchFirst(c0, numKVBlocks, [&](Value x) -> Value {
      Value hi = minIdx(arith::SubIOp::create(
                            b, arith::MulIOp::create(b, arith::AddIOp::create(b, x, c1),
                                                     idx(blockKV)), c1),
                        lastKV);
      return arith::XOrIOp::create(b, isEmpty(c0, hi), arith::ConstantIntOp::create(b, 1, 1));
    });
    end = searchFirst(first, numKVBlocks, [&](Value y) -> Value {
      return isEmpty(arith::MulIOp::create(b, y, idx(blockKV)), lastKV);
    });
  }
  Value trueValue = arith::ConstantIntOp::create(b, 1, 1);
  Value m, l;
  if (patched) {
    SmallVector<Value> lo, hi;
    std::tie(m, l) = emitKVPatches(0, lo, hi, splat(laneType, -INFINITY), splat(laneType, 0));
  } else {
    auto kvLoop = scf::ForOp::create(b, first, end, c1,
                                     ValueRange{splat(laneType, -INFINITY), splat(laneType, 0)});
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(kvLoop.getBody());
    Value kb = kvLoop.getInductionVar();
    Value mIn = kvLoop.getRegionIterArgs()[0], lIn = kvLoop.getRegionIterArgs()[1];
    if (!hasClassifier) {
      countBlock(trueValue, trueValue);
      auto [m2, l2] = emitKVBlock(kb, mIn, lIn, trueValue);
      scf::YieldOp::create(b, ValueRange{m2, l2});
    } else {
      Value kv0 = arith::MulIOp::create(b, kb, idx(blockKV));
      Value kvHi = minIdx(arith::AddIOp::create(b, kv0, idx(blockKV - 1)), lastKV);
      auto [m2, l2] = visitClassified(kb, kv0, kvHi, mIn, lIn);
      scf::YieldOp::create(b, ValueRange{m2, l2});
    }
    m = kvLoop.getResult(0);
    l = kvLoop.getResult(1);
  }

  // Normalize and write out: 1/l per row (0 for fully masked rows) and lse.
  Value empty = arith::CmpFOp::create(b, arith::CmpFPredicate::OLE, l, splat(laneType, 0));
  Value inv = arith::SelectOp::create(
      b, empty, splat(laneType, 0), arith::DivFOp::create(b, splat(laneType, 1), l));
  vector::StoreOp::create(b, inv, alphaBuf, ValueRange{c0});
  if (lse) {
    Value value = arith::MulFOp::create(
        b, arith::AddFOp::create(b, m, math::Log2Op::create(b, l)), splat(laneType, kLn2));
    value = arith::SelectOp::create(b, empty, splat(laneType, -INFINITY), value);
    vector::StoreOp::create(b, value, statBuf, ValueRange{c0});
  }
  auto fin = scf::ForOp::create(b, c0, rows, c1);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(fin.getBody());
  Value i = fin.getInductionVar();
  auto [pos, valid] = rowAt(i);
  if (patched) {
    // Holes of the patch are not the user's rows.
    auto ifOp = scf::IfOp::create(b, valid, /*withElseRegion=*/false);
    b.setInsertionPointToStart(&ifOp.getThenRegion().front());
  }
  Value scaleRow = memref::LoadOp::create(b, alphaBuf, ValueRange{i});
  Value gate;
  if (gateRows) {
    // Scaled by the row's gate; a row not routed (gate 0) is 0 with lse -inf.
    Value at3[3];
    at3[gateDims[0]] = batch, at3[gateDims[1]] = pos, at3[gateDims[2]] = headQ;
    gate = memref::LoadOp::create(b, gateBuffer, ValueRange{at3[0], at3[1], at3[2]});
    if (!gate.getType().isF32())
      gate = arith::ExtFOp::create(b, b.getF32Type(), gate);
    scaleRow = arith::MulFOp::create(b, scaleRow, gate);
  }
  Value row = vector::LoadOp::create(b, vRowType, acc, ValueRange{i, c0});
  row = arith::MulFOp::create(b, row, vector::BroadcastOp::create(b, vRowType, scaleRow));
  storeRow(row, out, at(batch, headQ, pos, c0));
  if (lse) {
    Value value = memref::LoadOp::create(b, statBuf, ValueRange{i});
    if (gate)
      value = arith::SelectOp::create(
          b, arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, gate, f32(0)), f32(-INFINITY),
          value);
    memref::StoreOp::create(b, value, lse, ValueRange{batch, headQ, pos});
  }
}
LogicalResult CPUAttentionLowering::run() {
  q = op.getQuery();
  k = op.getKey();
  v = op.getValue();
  out = op.getOut();
  lse = op.getLse();
  status = op.getStatus();
  stats = op.getStats();
  gateRows = op.getGateRows();
  gateCounts = op.getGateCounts();
  hasClassifier = !variant.getBlocks().empty();
  if (hasClassifier && op.getSummaries().empty() && !variant.getSummarizedBuffers().empty())
    return op.emitOpError() << "needs the summaries of the variant's rank-1 integer "
                               "buffers for its block classifier (or run without "
                               "--attn-analyze-mask)";
  headDim = cast<MemRefType>(q.getType()).getDimSize(3);
  headDimV = cast<MemRefType>(v.getType()).getDimSize(3);
  laneType = VectorType::get({blockQ}, b.getF32Type());
  for (Value t : {q, k, v, out}) {
    auto type = cast<MemRefType>(t.getType());
    if (!type.getLayout().isIdentity()) {
      SmallVector<int64_t> strides;
      int64_t offset;
      if (failed(type.getStridesAndOffset(strides, offset)) || strides.back() != 1)
        return op.emitOpError() << "needs tensors whose head dimension is contiguous";
    }
  }
  if (failed(checkRegion(variant.getScore(), "score")) ||
      failed(checkRegion(variant.getMask(), "mask")) ||
      (variant.isRouted() && failed(checkRegion(variant.getRoute(), "route"))))
    return failure();

  // An identity modifier and an always-true mask cost nothing.
  Block &scoreBlock = variant.getScore().front();
  auto scoreYield = cast<heed::attn::YieldOp>(scoreBlock.getTerminator());
  identityScore = scoreYield.getValue() == scoreBlock.getArgument(0);
  Block &maskBlock = variant.getMask().front();
  auto maskYield = cast<heed::attn::YieldOp>(maskBlock.getTerminator());
  APInt maskValue;
  constantTrueMask = matchPattern(maskYield.getValue(), m_ConstantInt(&maskValue)) &&
                     maskValue.isOne();

  // Buffers: flattened views for gathers, and their sizes for bounds checks.
  for (Value buf : op.getBuffers()) {
    auto type = cast<MemRefType>(buf.getType());
    buffers.push_back(buf);
    SmallVector<Value> dims;
    for (int64_t d = 0; d < type.getRank(); ++d)
      dims.push_back(memref::DimOp::create(b, buf, d));
    bufferDims.push_back(dims);
    if (type.getRank() == 1 && type.getLayout().isIdentity()) {
      flatBuffers.push_back(buf);
    } else if (type.getRank() == 0) { // one element: a view of shape [1]
      flatBuffers.push_back(memref::ReinterpretCastOp::create(
          b, b.getLoc(), MemRefType::get({1}, type.getElementType()), buf, /*offset=*/0,
          /*sizes=*/ArrayRef<int64_t>{1}, /*strides=*/ArrayRef<int64_t>{1}));
    } else if (!type.getLayout().isIdentity()) {
      return op.emitOpError() << "needs contiguous (identity layout) buffers";
    } else {
      SmallVector<ReassociationIndices> all(1);
      for (int64_t d = 0; d < type.getRank(); ++d)
        all[0].push_back(d);
      flatBuffers.push_back(memref::CollapseShapeOp::create(b, buf, all));
    }
  }

  if (variant.isGated() != bool(gateRows))
    return op.emitOpError() << "needs gate_rows and gate_counts exactly when its variant is gated";
  if (gateRows) {
    ArrayRef<int64_t> gate = *variant.getGate();
    gateBuffer = buffers[gate[0]];
    for (int d = 0; d < 3; ++d)
      gateDims[d] = gate[d + 1];
  }

  headsQ = dim(q, 1);
  seqQ = dim(q, 2);
  seqKV = dim(k, 2);
  Value headsKV = dim(k, 1);
  group = arith::DivUIOp::create(b, headsQ, headsKV);
  qTiling = tilingOf(op.getTilingAttr(), heed::attn::Side::Q);
  kvTiling = tilingOf(op.getTilingAttr(), heed::attn::Side::KV);
  patched = qTiling.dims() > 1;
  if (patched) {
    if (variant.getGridAttr() == nullptr ||
        variant.getGridAttr().getExtents() != op.getTilingAttr().getGrid())
      return op.emitOpError() << "is tiled by patches of a grid its variant's classifier "
                                 "does not use (run --attn-choose-tiling before "
                                 "--attn-analyze-mask)";
    qRows0 = rowsOf(b, b.getLoc(), seqQ, qTiling);
    kvRows0 = rowsOf(b, b.getLoc(), seqKV, kvTiling);
  }
  numQBlocks = countTiles(b, b.getLoc(), seqQ, qTiling);
  Value total = arith::MulIOp::create(
      b, arith::MulIOp::create(b, dim(q, 0), headsQ), numQBlocks);
  Value begin = op.getWorkBegin() ? op.getWorkBegin() : idx(0);
  Value end = op.getWorkEnd() ? minIdx(op.getWorkEnd(), total) : total;

  Type f32Type = b.getF32Type();
  qT = memref::AllocaOp::create(b, MemRefType::get({headDim, blockQ}, f32Type));
  kS = memref::AllocaOp::create(b, MemRefType::get({blockKV, headDim}, f32Type));
  vS = memref::AllocaOp::create(b, MemRefType::get({blockKV, headDimV}, f32Type));
  sT = memref::AllocaOp::create(b, MemRefType::get({blockKV, blockQ}, f32Type));
  acc = memref::AllocaOp::create(b, MemRefType::get({blockQ, headDimV}, f32Type));
  alphaBuf = memref::AllocaOp::create(b, MemRefType::get({blockQ}, f32Type));
  statBuf = memref::AllocaOp::create(b, MemRefType::get({blockQ}, f32Type));

  auto items = scf::ForOp::create(b, begin, end, idx(1));
  items->setAttr("attn.tiling", op.getTilingAttr()); // for readers of the tiled IR
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(items.getBody());
    if (variant.isRouted())
      emitRoutedItem(items.getInductionVar());
    else
      emitItem(items.getInductionVar());
  }
  op.erase();
  return success();
}

struct AttnLowerToCPUPass
    : heed::impl::AttnLowerToCPUBase<AttnLowerToCPUPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    SymbolTableCollection symbols;
    SmallVector<AttentionOp> ops;
    module.walk([&](AttentionOp op) { ops.push_back(op); });
    for (AttentionOp op : ops) {
      auto variant = symbols.lookupNearestSymbolFrom<VariantOp>(op, op.getVariantAttr());
      if (!variant) {
        op.emitOpError() << "refers to an unknown variant";
        return signalPassFailure();
      }
      heed::attn::TilingAttr tiling = op.getTilingAttr();
      if (!tiling) {
        op.emitOpError() << "has no tiling: run --attn-choose-tiling first";
        return signalPassFailure();
      }
      int64_t q = tiling.getTileSize(heed::attn::Side::Q);
      if (q > 64 || (q & (q - 1)) || tiling.getTileSize(heed::attn::Side::KV) > 64) {
        op.emitOpError() << "needs tiles of at most 64 keys and a power of two up to 64 "
                            "queries (the vector width) on the CPU";
        return signalPassFailure();
      }
      CPUAttentionLowering lowering(op, variant);
      if (failed(lowering.run()))
        return signalPassFailure();
    }
    // The tile counts the runtime asks for, from the tiling chosen.
    SmallVector<heed::attn::NumTilesOp> counts;
    module.walk([&](heed::attn::NumTilesOp op) { counts.push_back(op); });
    for (heed::attn::NumTilesOp count : counts) {
      if (!count.getTilingAttr()) {
        count.emitOpError() << "has no tiling: run --attn-choose-tiling first";
        return signalPassFailure();
      }
      OpBuilder b(count);
      Tiling t = tilingOf(count.getTilingAttr(), count.getSide());
      count.replaceAllUsesWith(countTiles(b, count.getLoc(), count.getSeq(), t));
      count.erase();
    }
    // Variants have been inlined where they were used.
    SmallVector<VariantOp> variants;
    module.walk([&](VariantOp v) { variants.push_back(v); });
    for (VariantOp v : variants)
      if (SymbolTable::symbolKnownUseEmpty(v, module))
        v.erase();
  }
};

} // namespace
