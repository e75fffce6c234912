// The tile ops on matrix cores, target-neutral (see MatrixCore.h): each op
// becomes lane-level code through the MatrixCoreTarget. The variant's score
// and mask run per accumulator element with (q, kv) from the fragment
// layout; the online softmax keeps each row's max (shared by the lanes of
// the row) and this lane's part of its sum; the output is normalized once.
#include "MatrixCore.h"

#include "../TileCommon/Normalize.h"
#include "../TileCommon/VariantRegions.h"

#include "dialects/attn/AttnOps.h"

#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/Matchers.h"
#include "llvm/Support/MathExtras.h"

#include <cmath>

using namespace mlir;
using namespace heed::attn;

namespace heed::gpu_tile {

void MatrixCoreTarget::convertTile(TileType t, SmallVectorImpl<Type> &out) const {
  MLIRContext *ctx = t.getContext();
  switch (t.getRole()) {
  case TileRole::Q: {
    if (residentOperands()) {
      out.push_back(IndexType::get(ctx));
      return;
    }
    auto [type, cols] = operandFragment(ctx);
    out.append(t.getCols() / cols, type);
    return;
  }
  case TileRole::K:
  case TileRole::V:
    out.append(2, IndexType::get(ctx)); // the staging slot, the part
    return;
  case TileRole::S:
  case TileRole::Acc: {
    auto [type, cols] = accumulatorFragment(ctx);
    out.append(t.getCols() / cols, type.clone(t.getElementType()));
    return;
  }
  case TileRole::Row:
    out.append(shape.rowSlots, Float32Type::get(ctx));
    return;
  case TileRole::Col:
    out.append(columnsPerLane(t.getRows()), Float32Type::get(ctx));
    return;
  }
}

SmallVector<Value> MatrixCoreTarget::assemble(OpBuilder &b, Location loc, ValueRange fragments,
                                              ArrayRef<Value> values) const {
  SmallVector<Value> out;
  for (Value frag : fragments) {
    auto type = cast<VectorType>(frag.getType());
    int64_t n = type.getNumElements();
    out.push_back(vector::FromElementsOp::create(b, loc, type, values.take_front(n)));
    values = values.drop_front(n);
  }
  return out;
}

Value MatrixCoreTarget::exp2(OpBuilder &b, Location loc, Value x) const {
  return math::Exp2Op::create(b, loc, x);
}

Value probIn(OpBuilder &b, Location loc, Type elt, Value p) {
  if (p.getType() == elt)
    return p;
  return arith::TruncFOp::create(b, loc, elt, p);
}

Value expMinus(const MatrixCoreTarget &target, OpBuilder &b, Location loc, Value x, Value m) {
  Value y = arith::MulFOp::create(b, loc, arith::SubFOp::create(b, loc, x, m),
                                  f32Like(b, loc, b.getF32Type(), llvm::numbers::log2e));
  return target.exp2(b, loc, y);
}

MatrixCoreTypeConverter::MatrixCoreTypeConverter(const MatrixCoreTarget &target) {
  addConversion([](Type t) { return t; });
  addConversion([&target](TileType t, SmallVectorImpl<Type> &out) -> LogicalResult {
    target.convertTile(t, out);
    return success();
  });
  addConversion([](SpanType t, SmallVectorImpl<Type> &out) -> LogicalResult {
    Type index = IndexType::get(t.getContext());
    // first token, sequence length, and a packed GQA tile's per-head
    // length (0 for other tiles; QueryRows)
    out.append({index, index, index});
    return success();
  });
}

namespace {

Value f32(OpBuilder &b, Location loc, double v) { return f32Like(b, loc, b.getF32Type(), v); }


/// The part of a staged K/V tile's converted (slot, part): a constant
/// (LoadLowering's), 0 if it is not one.
int64_t slotPart(ValueRange staged) { return getConstantIntValue(staged[1]).value_or(0); }


struct LoadLowering : TargetPattern<TileLoadOp> {
  using TargetPattern::TargetPattern;
  LogicalResult matchAndRewrite(TileLoadOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    auto role = cast<TileType>(op.getResult().getType()).getRole();
    if (role != TileRole::Q) {
      // K and V are read where attn.tile.copy_kv staged them.
      if (adaptor.getStage().empty())
        return op.emitOpError() << "reads K/V without staging: run --attn-pipeline-kv";
      auto span = op.getSpan().getDefiningOp<TileSpanOp>();
      if (!(span && span.getInBounds()) && adaptor.getSpan().size() >= 2)
        target.readStaged(rewriter, op.getLoc(), adaptor.getTensor().front(),
                          adaptor.getStage().front(), op.getPart(), adaptor.getSpan()[0],
                          adaptor.getSpan()[1]);
      Value part = index(rewriter, op.getLoc(), op.getPart());
      rewriter.replaceOpWithMultiple(op, {{adaptor.getStage().front(), part}});
      return success();
    }
    SmallVector<Value> q = target.loadQ(rewriter, op.getLoc(), adaptor.getTensor().front(),
                                        adaptor.getBatch().front(), adaptor.getHead().front(),
                                        QueryRows::of(op.getSpan(), adaptor.getSpan()),
                                        op.getLayout(),
                                        cast<TileType>(op.getResult().getType()).getCols(),
                                        op.getPart(),
                                        adaptor.getRound().empty() ? Value()
                                                                   : adaptor.getRound().front());
    rewriter.replaceOpWithMultiple(op, {q});
    return success();
  }
};

struct CopyKVLowering : TargetPattern<TileCopyKVOp> {
  using TargetPattern::TargetPattern;
  LogicalResult matchAndRewrite(TileCopyKVOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Value pages = adaptor.getPageTable().empty() ? Value() : adaptor.getPageTable().front();
    target.copyKV(rewriter, op.getLoc(), adaptor.getKey().front(), adaptor.getValue().front(),
                  adaptor.getBatch().front(), adaptor.getHead().front(),
                  QueryRows::of(op.getSpan(), adaptor.getSpan()), adaptor.getStage().front(),
                  op.getLayout(), pages);
    rewriter.eraseOp(op);
    return success();
  }
};

struct CommitKVLowering : TargetPattern<TileCommitKVOp> {
  using TargetPattern::TargetPattern;
  LogicalResult matchAndRewrite(TileCommitKVOp op, OpAdaptor,
                                ConversionPatternRewriter &rewriter) const override {
    target.commitKV(rewriter, op.getLoc());
    rewriter.eraseOp(op);
    return success();
  }
};

/// The error of a warp-specialized op on a target without a producer.
LogicalResult noWarpSpecialization(Operation *op) {
  return op->emitOpError() << "is warp-specialized code (--attn-warp-specialize): only the "
                              "wgmma kernel (Hopper) runs it";
}

struct WaitKVLowering : TargetPattern<TileWaitKVOp> {
  using TargetPattern::TargetPattern;
  LogicalResult matchAndRewrite(TileWaitKVOp op, OpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    if (!op.getStage())
      target.waitKV(rewriter, op.getLoc(), op.getPending());
    else if (failed(target.waitFill(rewriter, op.getLoc(), adaptor.getStage(), adaptor.getRound(),
                                    op.getPart())))
      return noWarpSpecialization(op);
    rewriter.eraseOp(op);
    return success();
  }
};

/// A target with a producer warpgroup replaces the op before the patterns
/// run (prepareKernel); any other refuses it.
struct WarpSpecializeLowering : TargetPattern<TileWarpSpecializeOp> {
  using TargetPattern::TargetPattern;
  LogicalResult matchAndRewrite(TileWarpSpecializeOp op, OpAdaptor,
                                ConversionPatternRewriter &) const override {
    return noWarpSpecialization(op);
  }
};

struct AcquireKVLowering : TargetPattern<TileAcquireKVOp> {
  using TargetPattern::TargetPattern;
  LogicalResult matchAndRewrite(TileAcquireKVOp op, OpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    if (failed(target.acquireKV(rewriter, op.getLoc(), adaptor.getStage(), adaptor.getRound())))
      return noWarpSpecialization(op);
    rewriter.eraseOp(op);
    return success();
  }
};

struct ReleaseKVLowering : TargetPattern<TileReleaseKVOp> {
  using TargetPattern::TargetPattern;
  LogicalResult matchAndRewrite(TileReleaseKVOp op, OpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    if (failed(target.releaseKV(rewriter, op.getLoc(), adaptor.getStage())))
      return noWarpSpecialization(op);
    rewriter.eraseOp(op);
    return success();
  }
};

struct FillLowering : TargetPattern<TileFillOp> {
  using TargetPattern::TargetPattern;
  LogicalResult matchAndRewrite(TileFillOp op, OpAdaptor,
                                ConversionPatternRewriter &rewriter) const override {
    SmallVector<Type> types;
    target.convertTile(cast<TileType>(op.getResult().getType()), types);
    SmallVector<Value> values;
    for (Type t : types) {
      auto vec = dyn_cast<VectorType>(t);
      auto value = rewriter.getFloatAttr(vec ? vec.getElementType() : t,
                                         op.getValue().convertToDouble());
      values.push_back(arith::ConstantOp::create(
          rewriter, op.getLoc(), vec ? TypedAttr(DenseElementsAttr::get(vec, value)) : value));
    }
    rewriter.replaceOpWithMultiple(op, {values});
    return success();
  }
};

/// Each fragment rounded (or widened) to the result's element type: the
/// fragments keep their shape and element order.
struct ConvertLowering : TargetPattern<TileConvertOp> {
  using TargetPattern::TargetPattern;
  LogicalResult matchAndRewrite(TileConvertOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Type to = cast<TileType>(op.getResult().getType()).getElementType();
    SmallVector<Value> out;
    for (Value frag : adaptor.getSource()) {
      auto type = cast<VectorType>(frag.getType());
      Type want = type.clone(to);
      unsigned from = type.getElementType().getIntOrFloatBitWidth();
      if (want == type)
        out.push_back(frag);
      else if (from > to.getIntOrFloatBitWidth())
        out.push_back(arith::TruncFOp::create(rewriter, op.getLoc(), want, frag));
      else
        out.push_back(arith::ExtFOp::create(rewriter, op.getLoc(), want, frag));
    }
    rewriter.replaceOpWithMultiple(op, {out});
    return success();
  }
};

struct QKLowering : TargetPattern<TileQKOp> {
  using TargetPattern::TargetPattern;
  LogicalResult matchAndRewrite(TileQKOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    if (op.getAsync() && target.asyncProducts()) {
      // (Scaled where attn.tile.mma_wait returns them: MMAWaitLowering.)
      rewriter.replaceOpWithMultiple(
          op, {target.scoresAsync(rewriter, loc, adaptor.getQ(), adaptor.getK()[0],
                                  slotPart(adaptor.getK()))});
      return success();
    }
    SmallVector<Value> s = target.scores(rewriter, loc, adaptor.getQ(), adaptor.getK()[0],
                                         slotPart(adaptor.getK()));
    scale(rewriter, loc, s, op.getScale().convertToFloat());
    rewriter.replaceOpWithMultiple(op, {s});
    return success();
  }

  static void scale(OpBuilder &b, Location loc, MutableArrayRef<Value> s, float factor) {
    for (Value &frag : s) {
      auto type = cast<VectorType>(frag.getType());
      Value scale = arith::ConstantOp::create(
          b, loc, DenseElementsAttr::get(type, b.getF32FloatAttr(factor)));
      frag = arith::MulFOp::create(b, loc, frag, scale);
    }
  }
};

/// The asynchronous products' results, complete: the target's wait, then
/// the scale of scores (QKLowering leaves async scores unscaled).
struct MMAWaitLowering : TargetPattern<TileMMAWaitOp> {
  using TargetPattern::TargetPattern;
  LogicalResult matchAndRewrite(TileMMAWaitOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    SmallVector<Value> all;
    for (ValueRange tile : adaptor.getTiles())
      llvm::append_range(all, tile);
    target.waitProducts(rewriter, loc, op.getPending(), all);
    SmallVector<SmallVector<Value>> results;
    ArrayRef<Value> rest = all;
    for (auto [tile, converted] : llvm::zip(op.getTiles(), adaptor.getTiles())) {
      SmallVector<Value> frags(rest.take_front(converted.size()));
      rest = rest.drop_front(converted.size());
      if (auto qk = tile.getDefiningOp<TileQKOp>(); qk && target.asyncProducts())
        QKLowering::scale(rewriter, loc, frags, qk.getScale().convertToFloat());
      results.push_back(std::move(frags));
    }
    SmallVector<ValueRange> ranges(results.begin(), results.end());
    rewriter.replaceOpWithMultiple(op, ranges);
    return success();
  }
};

/// Ping-pong's explicit turns (attn.tile.take_turn / pass_turn).
template <typename Op, bool Take>
struct TurnLowering : TargetPattern<Op> {
  using TargetPattern<Op>::TargetPattern;
  LogicalResult matchAndRewrite(Op op, typename Op::Adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    this->target.turn(rewriter, op.getLoc(), Take);
    rewriter.eraseOp(op);
    return success();
  }
};

bool isConstant(Value v, bool value) {
  APInt c;
  return v && matchPattern(v, m_ConstantInt(&c)) && c.getBoolValue() == value;
}

} // namespace

ElementPositions elementPositions(OpBuilder &b, Location loc, const MatrixCoreTarget &target,
                                  ArrayRef<Element> elements, VariantOp variant,
                                  const QueryRows &rows, const QueryRows &cols,
                                  bool keysInBounds, bool masked, bool transposed, Value batch,
                                  Value head, const RegionInlining &regions) {
  // With regions.narrow, the positions are i32, computed in 32 bits: keys
  // are below 2^31 and a tile's first key plus an offset below 2^32, so
  // the unsigned compare and clamp are exact.
  bool narrow = regions.narrow;
  auto narrowed = [&](Value v) -> Value {
    return narrow ? arith::IndexCastUIOp::create(b, loc, b.getI32Type(), v) : v;
  };
  Value firstKV = narrowed(cols.first), endKV = narrowed(cols.end);
  Value lastKV = arith::SubIOp::create(
      b, loc, endKV,
      narrow ? Value(arith::ConstantIntOp::create(b, loc, 1, 32)) : index(b, loc, 1));
  auto keyAt = [&](Value offset, Value &inRange) {
    if (cols.patched()) { // (a patch's holes are not in range)
      inRange = cols.contains(b, loc, offset);
      return narrow ? cols.clampedToken32(b, loc, offset) : cols.clampedToken(b, loc, offset);
    }
    Value kvPos = arith::AddIOp::create(b, loc, firstKV, narrowed(offset));
    if (!keysInBounds)
      inRange = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, kvPos, endKV);
    return Value(arith::MinUIOp::create(b, loc, kvPos, lastKV));
  };
  // Per row slot, once: its query token (clamped to the last real row;
  // padding rows are evaluated there), or in a transposed tile its key.
  SmallVector<Value> slotPos, slotHead, slotInRange(target.shape.rowSlots);
  {
    OpBuilder::InsertionGuard guard(b);
    if (!transposed)
      rows.moveToSpan(b);
    for (unsigned s = 0; s < target.shape.rowSlots; ++s) {
      Value r = target.slotRow(b, loc, s);
      slotPos.push_back(transposed ? keyAt(r, slotInRange[s])
                        : narrow   ? rows.clampedToken32(b, loc, r)
                                   : rows.clampedToken(b, loc, r));
      // (A packed GQA tile's rows are of several heads.)
      slotHead.push_back(transposed ? head : rows.head(b, loc, head, r));
    }
  }
  // Every element's visibility first: the masks' bounds-checked reads do
  // not keep the tile's scores live.
  ElementPositions out;
  RegionInlining how = regions;
  for (const Element &e : elements) {
    Value visible;
    if (transposed) {
      // The columns are queries: padding columns are not visible (a
      // transposed tile's rows are summed over them).
      out.kv.push_back(slotPos[e.slot]);
      out.q.push_back(narrow ? rows.clampedToken32(b, loc, e.col)
                             : rows.clampedToken(b, loc, e.col));
      out.head.push_back(rows.head(b, loc, head, e.col));
      // Terms of a position are recomputed beside each use (RegionMemo):
      // a column's, and in the transposed tiles a row's too (shared, the
      // rows' doc ids of per-batch documents made the dK/dV kernel spill
      // 12 bytes on sm_80 at D = 128).
      if (how.memo) {
        how.memo->vary(out.q.back());
        how.memo->vary(out.kv.back());
        if (out.head.back() != head) // (a packed GQA tile's: per column)
          how.memo->vary(out.head.back());
      }
      visible = rows.contains(b, loc, e.col);
      if (slotInRange[e.slot])
        visible = arith::AndIOp::create(b, loc, visible, slotInRange[e.slot]);
    } else {
      out.q.push_back(slotPos[e.slot]);
      out.kv.push_back(keyAt(e.col, visible));
      out.head.push_back(slotHead[e.slot]);
      if (how.memo)
        how.memo->vary(out.kv.back());
    }
    if (masked) {
      Value leading[] = {batch, out.head.back(), out.q.back(), out.kv.back()};
      how.leading = leading;
      Value m = inlineVariantRegion(b, loc, variant.getMask(), how);
      visible = visible ? Value(arith::AndIOp::create(b, loc, visible, m)) : m;
    }
    out.visible.push_back(visible);
  }
  return out;
}

namespace {

/// Score modifier and mask per element. Rows past Sq and keys past Skv are
/// padding: the variant is evaluated at the last real row / key instead
/// (and the result dropped), so their buffer reads are never reported.
struct ApplyLowering : TargetPattern<TileApplyOp> {
  using TargetPattern::TargetPattern;
  LogicalResult matchAndRewrite(TileApplyOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    VariantOp variant = lookupVariant(op, op.getVariantAttr());
    auto span = op.getCols().getDefiningOp<TileSpanOp>();
    // A dynamic mask_if may be ignored: the mask holds on FULL tiles anyway.
    bool masked = !isConstant(op.getMaskIf(), false);
    Value batch = adaptor.getBatch().front(), head = adaptor.getHead().front();
    SmallVector<Element> elements = target.elements(rewriter, loc, adaptor.getScores());
    RegionOperands operands(adaptor); // what `how` refers to
    RegionInlining how = operands.inlining(target.narrowIntegers(/*transposed=*/false));
    ElementPositions at = elementPositions(
        rewriter, loc, target, elements, variant, QueryRows::of(op.getRows(), adaptor.getRows()),
        QueryRows::of(op.getCols(), adaptor.getCols()), span && span.getInBounds(), masked,
        /*transposed=*/false, batch, head, how);
    SmallVector<Value> values;
    for (auto [i, e] : llvm::enumerate(elements)) {
      Value indices[] = {batch, at.head[i], at.q[i], at.kv[i]};
      Value x = inlineScore(rewriter, loc, variant, how, e.value, indices);
      values.push_back(maskedScore(rewriter, loc, at.visible[i], x));
    }
    rewriter.replaceOpWithMultiple(op, {target.assemble(rewriter, loc, adaptor.getScores(), values)});
    return success();
  }
};

/// The online softmax per row slot: the row's max over the lanes holding
/// it; p and this lane's part of the sum.
struct SoftmaxLowering : TargetPattern<TileSoftmaxOp> {
  using TargetPattern::TargetPattern;
  LogicalResult matchAndRewrite(TileSoftmaxOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    unsigned slots = target.shape.rowSlots;
    ValueRange m = adaptor.getMax(), l = adaptor.getSum();
    Value negInf = f32(rewriter, loc, -INFINITY);
    SmallVector<Element> elements = target.elements(rewriter, loc, adaptor.getScores());
    SmallVector<Value> rowMax(slots, negInf);
    for (Element &e : elements)
      rowMax[e.slot] = arith::MaximumFOp::create(rewriter, loc, rowMax[e.slot], e.value);
    // e^(x - m) through the hardware's base-2 exponential (expMinus).
    SmallVector<Value> mNew(slots), mUse(slots), alpha(slots), rowSum(slots, f32(rewriter, loc, 0));
    for (unsigned s = 0; s < slots; ++s) {
      mNew[s] = arith::MaximumFOp::create(rewriter, loc, m[s],
                                          target.rowReduce(rewriter, loc, rowMax[s], true));
      mUse[s] = exponentBase(rewriter, loc, mNew[s]);
      alpha[s] = expMinus(target, rewriter, loc, m[s], mUse[s]);
    }
    SmallVector<Value> p;
    for (Element &e : elements) {
      Value x = expMinus(target, rewriter, loc, e.value, mUse[e.slot]);
      rowSum[e.slot] = arith::AddFOp::create(rewriter, loc, rowSum[e.slot], x);
      p.push_back(x);
    }
    SmallVector<Value> lNew;
    for (unsigned s = 0; s < slots; ++s)
      lNew.push_back(arith::AddFOp::create(
          rewriter, loc, arith::MulFOp::create(rewriter, loc, l[s], alpha[s]), rowSum[s]));
    SmallVector<Value> probs = target.assemble(rewriter, loc, adaptor.getScores(), p);
    rewriter.replaceOpWithMultiple(op, {mNew, lNew, probs, alpha});
    return success();
  }
};

/// Sigmoid weights per element: no row statistics, no shuffles.
struct SigmoidLowering : TargetPattern<TileSigmoidOp> {
  using TargetPattern::TargetPattern;
  LogicalResult matchAndRewrite(TileSigmoidOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    SmallVector<Value> p;
    for (Element &e : target.elements(rewriter, loc, adaptor.getScores()))
      p.push_back(sigmoid(rewriter, loc, e.value, op.getBias().convertToDouble(), mathExp));
    rewriter.replaceOpWithMultiple(op, {target.assemble(rewriter, loc, adaptor.getScores(), p)});
    return success();
  }
};

struct PVLowering : TargetPattern<TilePVOp> {
  using TargetPattern::TargetPattern;
  LogicalResult matchAndRewrite(TilePVOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    SmallVector<Value> acc(adaptor.getAcc());
    if (!adaptor.getAlpha().empty())
      for (Value &frag : acc)
        frag = target.scaleRows(rewriter, loc, frag, llvm::to_vector(adaptor.getAlpha()));
    SmallVector<Value> p;
    for (Element &e : target.elements(rewriter, loc, adaptor.getProbs()))
      p.push_back(e.value);
    if (op.getAsync())
      target.accumulatePVAsync(rewriter, loc, p, adaptor.getV()[0], slotPart(adaptor.getV()),
                               acc);
    else
      target.accumulatePV(rewriter, loc, p, adaptor.getV()[0], slotPart(adaptor.getV()), acc);
    rewriter.replaceOpWithMultiple(op, {acc});
    return success();
  }
};

/// Whether `out` (rank 4, 16-bit) takes 16-byte stores of 8 consecutive
/// head-dim elements: the head dim contiguous and every row's first element
/// 16-byte aligned (the base and the other strides multiples of 16 bytes).
/// Decided at run time, once per store: a caller's tensor may be a view.
Value alignedForRuns(OpBuilder &b, Location loc, Value out) {
  auto meta = memref::ExtractStridedMetadataOp::create(b, loc, out);
  ValueRange strides = meta.getStrides();
  Value bits = arith::AddIOp::create(
      b, loc, memref::ExtractAlignedPointerAsIndexOp::create(b, loc, out),
      arith::MulIOp::create(b, loc, meta.getOffset(), index(b, loc, 2)));
  for (Value s : strides.drop_back())
    bits = arith::OrIOp::create(b, loc, bits, arith::MulIOp::create(b, loc, s, index(b, loc, 2)));
  Value aligned = arith::CmpIOp::create(
      b, loc, arith::CmpIPredicate::eq,
      arith::AndIOp::create(b, loc, bits, index(b, loc, 15)), index(b, loc, 0));
  Value contiguous =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, strides.back(), index(b, loc, 1));
  return arith::AndIOp::create(b, loc, aligned, contiguous);
}

/// `out` (rank 4) as a 1-D view with unit stride from its base, and the
/// element offset of [batch, head, row, 0] in it.
std::pair<Value, Value> rowStart(OpBuilder &b, Location loc, Value out, Layout layout,
                                 Value batch, Value head, Value row) {
  auto meta = memref::ExtractStridedMetadataOp::create(b, loc, out);
  Value view = unitStrideView(b, loc, out, meta, meta.getOffset());
  SmallVector<Value> indices = at(layout, batch, head, row, index(b, loc, 0));
  Value offset = index(b, loc, 0);
  for (auto [i, s] : llvm::zip(ArrayRef<Value>(indices).drop_back(), meta.getStrides()))
    offset = arith::AddIOp::create(b, loc, offset, arith::MulIOp::create(b, loc, i, s));
  return {view, offset};
}

/// Normalizes and writes the lane's elements of O and (one lane per row)
/// the lse; rows that are not real are not written. With a gate, a row is
/// scaled by its gate, and a row whose gate is 0 has lse -inf. Where the
/// target regroups a row's elements into runs of 8 columns (hasRowRuns: f16
/// and bf16 O on NVIDIA) and the tensor allows it at run time, O is written
/// in 16-byte stores, else element by element.
struct StoreLowering : TargetPattern<TileStoreOp> {
  using TargetPattern::TargetPattern;
  LogicalResult matchAndRewrite(TileStoreOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    QueryRows rows = QueryRows::of(op.getSpan(), adaptor.getSpan());
    Value out = adaptor.getOut().front(), batch = adaptor.getBatch().front();
    Value itemHead = adaptor.getHead().front();
    Type outElt = cast<MemRefType>(out.getType()).getElementType();
    unsigned slots = target.shape.rowSlots;
    // A slot's scale and lse, where its elements are written (every lane:
    // the sum's reduction shuffles).
    auto finishSlot = [&](OpBuilder &b, unsigned s) {
      // The lanes' parts of the sum, reduced once (sigmoid rows have none).
      Value lFinal = op.isSigmoid() ? adaptor.getSum()[s]
                                    : target.rowReduce(b, loc, adaptor.getSum()[s], false);
      // A packed GQA tile's per-head sinks: one per row slot (LaneSinksLowering).
      Value sink = adaptor.getLaneSinks().empty() ? optionalValue(adaptor.getSink())
                                                  : adaptor.getLaneSinks()[s];
      return finishRow(b, loc, adaptor.getMax()[s], lFinal, sink, op.isSigmoid(), mathExp,
                       mathLog);
    };
    auto storeLse = [&](OpBuilder &b, Value lse, Value head, Value row) {
      if (adaptor.getLse().empty())
        return;
      auto once = scf::IfOp::create(b, loc, target.ownsRowStats(b, loc), false);
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(&once.getThenRegion().front());
      memref::StoreOp::create(b, loc, lse, adaptor.getLse().front(), ValueRange{batch, head, row});
    };
    // Element by element (a gate read per real row).
    auto storeElements = [&](OpBuilder &b) {
      SmallVector<Element> outputs = target.elements(b, loc, adaptor.getAcc());
      for (unsigned s = 0; s < slots; ++s) {
        Value slotRow = target.slotRow(b, loc, s);
        RowFinish finish = finishSlot(b, s);
        Value inv = finish.scale, lse = finish.lse;
        auto ifOp = scf::IfOp::create(b, loc, rows.contains(b, loc, slotRow), false);
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPointToStart(&ifOp.getThenRegion().front());
        Value row = rows.token(b, loc, slotRow);
        Value head = rows.head(b, loc, itemHead, slotRow);
        if (Value gate = rowGate(b, loc, op, adaptor.getGate(), batch, head, row)) {
          // Scaled by its gate; a row not routed (gate 0) has lse -inf.
          inv = arith::MulFOp::create(b, loc, inv, gate);
          Value notRouted =
              arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, gate, f32(b, loc, 0));
          lse = arith::SelectOp::create(b, loc, notRouted, f32(b, loc, -INFINITY), lse);
        }
        for (const Element &e : outputs) {
          if (e.slot != s)
            continue;
          Value x = arith::MulFOp::create(b, loc, e.value, inv);
          if (!outElt.isF32())
            x = arith::TruncFOp::create(b, loc, outElt, x);
          memref::StoreOp::create(b, loc, x, out, at(op.getLayout(), batch, head, row, e.col));
        }
        storeLse(b, lse, head, row);
      }
    };
    // Runs of 8 columns, 16 bytes each, each stored as soon as the lanes
    // have exchanged its words (no gate: it would be read per real row).
    // The row's token and head are plain arithmetic without a row list, so
    // they are computed for every lane; the stores are guarded.
    auto storeRuns = [&](OpBuilder &b) {
      for (unsigned s = 0; s < slots; ++s) {
        Value slotRow = target.slotRow(b, loc, s);
        RowFinish finish = finishSlot(b, s);
        Value real = rows.contains(b, loc, slotRow);
        Value row = rows.token(b, loc, slotRow);
        Value head = rows.head(b, loc, itemHead, slotRow);
        auto [view, start] = rowStart(b, loc, out, op.getLayout(), batch, head, row);
        target.rowRuns(b, loc, adaptor.getAcc(), s, finish.scale, outElt,
                       [&](Value col, Value run) {
                         auto ifOp = scf::IfOp::create(b, loc, real, false);
                         OpBuilder::InsertionGuard guard(b);
                         b.setInsertionPointToStart(&ifOp.getThenRegion().front());
                         Value at = arith::AddIOp::create(b, loc, start, col);
                         vector::StoreOp::create(b, loc, run, view, ValueRange{at})
                             .setAlignment(16);
                       });
        auto ifOp = scf::IfOp::create(b, loc, real, false);
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPointToStart(&ifOp.getThenRegion().front());
        storeLse(b, finish.lse, head, row);
      }
    };
    if (adaptor.getGate().empty() && !rows.list &&
        target.hasRowRuns(adaptor.getAcc().size(), outElt)) {
      auto wide = scf::IfOp::create(rewriter, loc, alignedForRuns(rewriter, loc, out),
                                    /*withElseRegion=*/true);
      OpBuilder::InsertionGuard guard(rewriter);
      rewriter.setInsertionPointToStart(&wide.getThenRegion().front());
      storeRuns(rewriter);
      rewriter.setInsertionPointToStart(&wide.getElseRegion().front());
      storeElements(rewriter);
    } else {
      storeElements(rewriter);
    }
    rewriter.eraseOp(op);
    return success();
  }
};

/// A packed GQA tile's sink logits (--attn-pack-gqa): the variant's sink
/// region on each row slot's head (a padding row's: the last real row's).
struct LaneSinksLowering : TargetPattern<TileLaneSinksOp> {
  using TargetPattern::TargetPattern;
  LogicalResult matchAndRewrite(TileLaneSinksOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    QueryRows rows = QueryRows::of(op.getRows(), adaptor.getRows());
    VariantOp variant = lookupVariant(op, op.getVariantAttr());
    SmallVector<Value> buffers;
    for (ValueRange b : adaptor.getBuffers())
      buffers.push_back(b.front());
    RegionInlining how;
    how.buffers = buffers;
    if (!adaptor.getStatus().empty())
      how.status = adaptor.getStatus().front();
    SmallVector<Value> sinks;
    for (unsigned s = 0; s < target.shape.rowSlots; ++s) {
      Value head = rows.head(rewriter, loc, adaptor.getHead().front(),
                             target.slotRow(rewriter, loc, s));
      Value leading[] = {adaptor.getBatch().front(), head};
      how.leading = leading;
      sinks.push_back(inlineVariantRegion(rewriter, loc, variant.getSink(), how));
    }
    rewriter.replaceOpWithMultiple(op, {sinks});
    return success();
  }
};

/// Split-KV's partial phase: the lane's unnormalized elements of O and (one
/// lane per row) the row's max and whole sum, at [split, batch, head, row]
/// of the workspace; rows that are not real are not written.
struct StorePartialLowering : TargetPattern<TileStorePartialOp> {
  using TargetPattern::TargetPattern;
  LogicalResult matchAndRewrite(TileStorePartialOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    QueryRows rows = QueryRows::of(op.getSpan(), adaptor.getSpan());
    Value pacc = adaptor.getPartialAcc().front(), pstats = adaptor.getPartialStats().front();
    Value split = adaptor.getSplit().front(), batch = adaptor.getBatch().front();
    Value itemHead = adaptor.getHead().front();
    SmallVector<Element> outputs = target.elements(rewriter, loc, adaptor.getAcc());
    for (unsigned s = 0; s < target.shape.rowSlots; ++s) {
      Value slotRow = target.slotRow(rewriter, loc, s);
      // Every lane takes part in the reduction; the row's owner writes it.
      Value l = target.rowReduce(rewriter, loc, adaptor.getSum()[s], false);
      auto ifOp = scf::IfOp::create(rewriter, loc, rows.contains(rewriter, loc, slotRow), false);
      OpBuilder::InsertionGuard guard(rewriter);
      rewriter.setInsertionPointToStart(&ifOp.getThenRegion().front());
      Value row = rows.token(rewriter, loc, slotRow);
      Value head = rows.head(rewriter, loc, itemHead, slotRow);
      for (const Element &e : outputs)
        if (e.slot == s)
          memref::StoreOp::create(rewriter, loc, e.value, pacc,
                                  ValueRange{split, batch, head, row, e.col});
      auto once = scf::IfOp::create(rewriter, loc, target.ownsRowStats(rewriter, loc), false);
      rewriter.setInsertionPointToStart(&once.getThenRegion().front());
      storeRowStats(rewriter, loc, pstats, {split, batch, head, row}, adaptor.getMax()[s], l);
    }
    rewriter.eraseOp(op);
    return success();
  }
};

/// Split-KV's merge phase: for each row slot in turn, a loop over the
/// splits reads the row's state back (real rows only: holes read nothing,
/// so no unwritten workspace is read) and merges it as one online-softmax
/// step (sums for sigmoid); one slot at a time keeps the loop's registers
/// to one slot's elements. The sum is given to the row's owner lane alone,
/// so the store's reduction over the row's lanes gives it back whole.
struct MergePartialsLowering : TargetPattern<TileMergePartialsOp> {
  using TargetPattern::TargetPattern;
  LogicalResult matchAndRewrite(TileMergePartialsOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    QueryRows rows = QueryRows::of(op.getSpan(), adaptor.getSpan());
    Value pacc = adaptor.getPartialAcc().front(), pstats = adaptor.getPartialStats().front();
    Value batch = adaptor.getBatch().front(), itemHead = adaptor.getHead().front();
    Value negInf = f32(rewriter, loc, -INFINITY), zero = f32(rewriter, loc, 0);
    SmallVector<Type> fragTypes;
    target.convertTile(cast<TileType>(op.getAcc().getType()), fragTypes);
    SmallVector<Value> zeros;
    for (Type t : fragTypes)
      zeros.push_back(arith::ConstantOp::create(
          rewriter, loc, DenseElementsAttr::get(cast<VectorType>(t), rewriter.getF32FloatAttr(0))));
    SmallVector<Element> elements = target.elements(rewriter, loc, zeros);
    SmallVector<Value> merged(elements.size()), m, l;
    Value owner = target.ownsRowStats(rewriter, loc);
    for (unsigned s = 0; s < target.shape.rowSlots; ++s) {
      Value slotRow = target.slotRow(rewriter, loc, s);
      Value real = rows.contains(rewriter, loc, slotRow);
      Value token = rows.token(rewriter, loc, slotRow, real);
      Value head = rows.head(rewriter, loc, itemHead, slotRow);
      SmallVector<unsigned> mine;
      for (auto [i, e] : llvm::enumerate(elements))
        if (e.slot == s)
          mine.push_back(i);
      // Carried: max, sum, then the slot's elements.
      SmallVector<Value> init = {negInf, zero};
      init.append(mine.size(), zero);
      auto loop = scf::ForOp::create(rewriter, loc, index(rewriter, loc, 0),
                                     adaptor.getCount().front(), index(rewriter, loc, 1), init);
      {
        OpBuilder::InsertionGuard guard(rewriter);
        rewriter.setInsertionPointToStart(loop.getBody());
        Value split = loop.getInductionVar();
        ValueRange carried = loop.getRegionIterArgs();
        SmallVector<Type> types(init.size(), rewriter.getF32Type());
        auto read = scf::IfOp::create(rewriter, loc, types, real, /*withElse=*/true);
        {
          OpBuilder::InsertionGuard inner(rewriter);
          rewriter.setInsertionPointToStart(&read.getThenRegion().front());
          auto [ms, ls] = loadRowStats(rewriter, loc, pstats, {split, batch, head, token});
          SmallVector<Value> values = {ms, ls};
          for (unsigned i : mine)
            values.push_back(memref::LoadOp::create(
                rewriter, loc, pacc, ValueRange{split, batch, head, token, elements[i].col}));
          scf::YieldOp::create(rewriter, loc, values);
          rewriter.setInsertionPointToStart(&read.getElseRegion().front());
          scf::YieldOp::create(rewriter, loc, init);
        }
        Value ms = read.getResult(0), ls = read.getResult(1);
        Value lOld = carried[1];
        auto [mNew, a, as] = mergeFactors(rewriter, loc, carried[0], ms, op.getSigmoid(), mathExp);
        auto step = [&](Value x, Value y) -> Value {
          return arith::AddFOp::create(rewriter, loc, arith::MulFOp::create(rewriter, loc, x, a),
                                       arith::MulFOp::create(rewriter, loc, y, as));
        };
        SmallVector<Value> next = {mNew, step(lOld, ls)};
        for (size_t k = 0; k < mine.size(); ++k)
          next.push_back(step(carried[2 + k], read.getResult(2 + k)));
        scf::YieldOp::create(rewriter, loc, next);
      }
      m.push_back(loop.getResult(0));
      l.push_back(op.getSigmoid()
                      ? loop.getResult(1)
                      : arith::SelectOp::create(rewriter, loc, owner, loop.getResult(1), zero)
                            .getResult());
      for (auto [k, i] : llvm::enumerate(mine))
        merged[i] = loop.getResult(2 + k);
    }
    SmallVector<Value> acc = target.assemble(rewriter, loc, zeros, merged);
    rewriter.replaceOpWithMultiple(op, {acc, m, l});
    return success();
  }
};

} // namespace

void populateMatrixCorePatterns(const TypeConverter &converter, const MatrixCoreTarget &target,
                                RewritePatternSet &patterns) {
  patterns.add<LoadLowering, CopyKVLowering, CommitKVLowering, WaitKVLowering,
               WarpSpecializeLowering, AcquireKVLowering, ReleaseKVLowering, FillLowering,
               ConvertLowering, QKLowering, MMAWaitLowering, TurnLowering<TileTakeTurnOp, true>,
               TurnLowering<TilePassTurnOp, false>, ApplyLowering, SoftmaxLowering, SigmoidLowering, PVLowering, StoreLowering,
               LaneSinksLowering, StorePartialLowering, MergePartialsLowering>(
      converter, patterns.getContext(), target);
}

} // namespace heed::gpu_tile
