// SIMT patterns for the attention step of one key tile, on the thread's
// row: attn.tile.qk (dot products with the keys' rows in global memory),
// attn.tile.apply (the variant's score and mask per key, scalar),
// attn.tile.softmax (the online update, in-thread), attn.tile.sigmoid and attn.tile.pv (acc
// scaled and accumulated in place, skipped when every weight is 0).
#include "SIMTPatterns.h"

#include "../TileCommon/Normalize.h"
#include "../TileCommon/VariantRegions.h"

#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/Matchers.h"

#include <cmath>

using namespace mlir;
using namespace heed::attn;

namespace heed::simt {
namespace {

/// The kernel a pattern's tiles are converted for.
template <typename Pattern> const KernelInfo &kernelOf(const Pattern *pattern) {
  return pattern->template getTypeConverter<SIMTTypeConverter>()->kernel;
}

/// s_j = scale * q . K[key j]: one loop over the head dim, the N dot
/// products carried by it, under a guard (an scf.if, true for now) that the
/// apply of these scores narrows to "some key is visible": the mask is then
/// evaluated first and a thread skips the dot products of keys it does not
/// see, as the per-key SIMT kernel did (and AMDGPU allocates fewer
/// registers when a mask's buffer reads come before the dot products).
struct QKLowering : OpConversionPattern<TileQKOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileQKOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value q = adaptor.getQ().front();
    KeyTile k(adaptor.getK());
    int64_t keys = cast<TileType>(op.getResult().getType()).getCols();
    int64_t depth = cast<MemRefType>(q.getType()).getDimSize(0);
    Layout layout = kernelOf(this).keyLayout;
    Value zero = f32(rewriter, loc, 0);
    SmallVector<Type> types(keys, rewriter.getF32Type());
    auto guard = scf::IfOp::create(rewriter, loc, types,
                                   arith::ConstantIntOp::create(rewriter, loc, 1, 1),
                                   /*withElseRegion=*/true);
    OpBuilder::InsertionGuard insertion(rewriter);
    // Scores of keys no one sees are never used.
    rewriter.setInsertionPointToStart(&guard.getElseRegion().front());
    scf::YieldOp::create(rewriter, loc, SmallVector<Value>(keys, zero));
    rewriter.setInsertionPointToStart(&guard.getThenRegion().front());
    // Each key's row (a paged cache's page read once), where some key is
    // visible only.
    SmallVector<std::pair<Value, Value>> rows;
    for (int64_t j = 0; j < keys; ++j)
      rows.push_back(k.rowOf(rewriter, loc, layout, k.token(rewriter, loc, j)));
    auto dot = scf::ForOp::create(rewriter, loc, index(rewriter, loc, 0),
                                  index(rewriter, loc, depth), index(rewriter, loc, 1),
                                  SmallVector<Value>(keys, zero));
    {
      OpBuilder::InsertionGuard body(rewriter);
      rewriter.setInsertionPointToStart(dot.getBody());
      Value d = dot.getInductionVar();
      Value x = memref::LoadOp::create(rewriter, loc, q, ValueRange{d});
      SmallVector<Value> next;
      for (int64_t j = 0; j < keys; ++j) {
        Value y = memref::LoadOp::create(rewriter, loc, k.tensor, k.at(layout, rows[j], d));
        next.push_back(math::FmaOp::create(rewriter, loc, x, toF32(rewriter, loc, y),
                                           dot.getRegionIterArgs()[j]));
      }
      scf::YieldOp::create(rewriter, loc, next);
    }
    Value scale = f32(rewriter, loc, op.getScale().convertToDouble());
    SmallVector<Value> s;
    for (Value x : dot.getResults())
      s.push_back(arith::MulFOp::create(rewriter, loc, x, scale));
    scf::YieldOp::create(rewriter, loc, s);
    rewriter.replaceOpWithMultiple(op, {SmallVector<Value>(guard.getResults())});
    return success();
  }
};

bool isConstant(Value v, bool value) {
  APInt c;
  return v && matchPattern(v, m_ConstantInt(&c)) && c.getBoolValue() == value;
}

/// Whether `v` is available right before `op`.
bool availableBefore(Value v, Operation *op) {
  Operation *ancestor = v.getParentBlock()->findAncestorOpInBlock(*op);
  if (!ancestor)
    return false;
  Operation *def = v.getDefiningOp();
  return !def || (def != ancestor && def->isBeforeInBlock(ancestor));
}

/// QKLowering's guard of `scores`, if these scores are all its results and
/// the apply is their only user.
scf::IfOp scoreGuard(TileApplyOp op, ValueRange scores) {
  auto guard = scores.front().getDefiningOp<scf::IfOp>();
  if (!guard || !op.getScores().hasOneUse() || !isConstant(guard.getCondition(), true) ||
      guard.getResults() != scores)
    return {};
  return guard;
}

/// Score modifier and mask per key. A key past Skv is masked (its variant
/// evaluated at the last key and dropped); a row past Sq is evaluated at the
/// last row (it is never stored), so neither reports a buffer read. With a
/// dynamic mask_if (FULL tiles pass false) the mask is evaluated only where
/// it holds: the branch is uniform over the block. The visibility comes
/// before the dot products where they are QKLowering's (see there).
struct ApplyLowering : OpConversionPattern<TileApplyOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileApplyOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    VariantOp variant = lookupVariant(op, op.getVariantAttr());
    ValueRange rows = adaptor.getRows(), cols = adaptor.getCols();
    Value batch = adaptor.getBatch().front(), head = adaptor.getHead().front();
    RegionOperands operands(adaptor);
    RegionInlining how = operands.inlining(/*narrow=*/true);
    Value maskIf = optionalValue(adaptor.getMaskIf());
    ValueRange scores = adaptor.getScores();
    scf::IfOp guard = scoreGuard(op, scores);
    SmallVector<Value> inputs = {rows[0], rows[1], cols[0], cols[1], batch, head};
    inputs.append(operands.buffers.begin(), operands.buffers.end());
    for (Value v : {how.route, how.status, maskIf})
      if (v)
        inputs.push_back(v);
    if (guard && !llvm::all_of(inputs, [&](Value v) { return availableBefore(v, guard); }))
      guard = {};
    SmallVector<Value> tokens, visible;
    Value rowQ;
    {
      OpBuilder::InsertionGuard insertion(rewriter);
      if (guard)
        rewriter.setInsertionPoint(guard);
      auto queryRows = gpu_tile::QueryRows::of(op.getRows(), rows);
      {
        OpBuilder::InsertionGuard atSpan(rewriter);
        queryRows.moveToSpan(rewriter);
        rowQ = queryRows.clampedToken(rewriter, loc, gpu_tile::threadId(rewriter, loc));
      }
      visibility(rewriter, loc, op, variant, how, batch, head, rowQ, cols, maskIf,
                 scores.size(), tokens, visible);
      // A key always visible (null) keeps the guard true.
      if (guard && llvm::all_of(visible, [](Value v) { return bool(v); })) {
        Value any = visible.front();
        for (Value v : ArrayRef(visible).drop_front())
          any = arith::OrIOp::create(rewriter, loc, any, v);
        rewriter.modifyOpInPlace(guard, [&] { guard->setOperand(0, any); });
      }
    }
    SmallVector<Value> values;
    for (auto [j, x] : llvm::enumerate(scores)) {
      Value indices[] = {batch, head, rowQ, tokens[j]};
      values.push_back(
          maskedScore(rewriter, loc, visible[j], inlineScore(rewriter, loc, variant, how, x, indices)));
    }
    rewriter.replaceOpWithMultiple(op, {values});
    return success();
  }

  /// Each key's token and visibility (null: visible): real (key 0 always
  /// is, see keyToken) and, unless mask_if is false, the mask.
  static void visibility(OpBuilder &b, Location loc, TileApplyOp op, VariantOp variant,
                         RegionInlining how, Value batch, Value head, Value rowQ, ValueRange cols,
                         Value maskIf, int64_t keys, SmallVectorImpl<Value> &tokens,
                         SmallVectorImpl<Value> &visible) {
    auto span = op.getCols().getDefiningOp<TileSpanOp>();
    bool inBounds = span && span.getInBounds();
    for (int64_t j = 0; j < keys; ++j) {
      tokens.push_back(keyToken(b, loc, cols[0], cols[1], j));
      Value real;
      if (j > 0 && !inBounds)
        real = arith::CmpIOp::create(
            b, loc, arith::CmpIPredicate::ult,
            arith::AddIOp::create(b, loc, cols[0], index(b, loc, j)), cols[1]);
      visible.push_back(real);
    }
    if (isConstant(maskIf, false))
      return;
    SmallVector<Value> masks = evaluateMasks(b, loc, variant, how, batch, head, rowQ, tokens,
                                             isConstant(maskIf, true) ? Value() : maskIf);
    for (auto [v, m] : llvm::zip(visible, masks))
      v = v ? Value(arith::AndIOp::create(b, loc, v, m)) : m;
  }

  /// The mask at each key token; under `onlyIf` (if given) in a branch
  /// whose other side says every key is visible.
  static SmallVector<Value> evaluateMasks(OpBuilder &b, Location loc, VariantOp variant,
                                          RegionInlining how, Value batch, Value head, Value rowQ,
                                          ArrayRef<Value> tokens, Value onlyIf) {
    auto masks = [&]() {
      SmallVector<Value> out;
      for (Value t : tokens) {
        Value leading[] = {batch, head, rowQ, t};
        how.leading = leading;
        out.push_back(inlineVariantRegion(b, loc, variant.getMask(), how));
      }
      return out;
    };
    if (!onlyIf)
      return masks();
    SmallVector<Type> types(tokens.size(), b.getI1Type());
    auto ifOp = scf::IfOp::create(b, loc, types, onlyIf, /*withElseRegion=*/true);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&ifOp.getThenRegion().front());
    scf::YieldOp::create(b, loc, masks());
    b.setInsertionPointToStart(&ifOp.getElseRegion().front());
    scf::YieldOp::create(
        b, loc, SmallVector<Value>(tokens.size(), arith::ConstantIntOp::create(b, loc, 1, 1)));
    return SmallVector<Value>(ifOp.getResults());
  }
};

/// m' = max(m, s_j), alpha = exp(m - m'), p_j = exp(s_j - m'), l' = l alpha
/// + sum p_j; exponents against 0 while m' is -inf (alpha = p = 0, no NaN).
struct SoftmaxLowering : OpConversionPattern<TileSoftmaxOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileSoftmaxOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value m = adaptor.getMax().front(), l = adaptor.getSum().front();
    Value mNew = m;
    for (Value s : adaptor.getScores())
      mNew = arith::MaximumFOp::create(rewriter, loc, mNew, s);
    Value mUse = exponentBase(rewriter, loc, mNew);
    Value alpha = math::ExpOp::create(rewriter, loc, arith::SubFOp::create(rewriter, loc, m, mUse));
    SmallVector<Value> p;
    Value sum;
    for (Value s : adaptor.getScores()) {
      p.push_back(math::ExpOp::create(rewriter, loc, arith::SubFOp::create(rewriter, loc, s, mUse)));
      sum = sum ? Value(arith::AddFOp::create(rewriter, loc, sum, p.back())) : p.back();
    }
    Value lNew = arith::AddFOp::create(rewriter, loc, arith::MulFOp::create(rewriter, loc, l, alpha), sum);
    rewriter.replaceOpWithMultiple(op, {{mNew}, {lNew}, p, {alpha}});
    return success();
  }
};

/// Sigmoid weights, key by key in the thread.
struct SigmoidLowering : OpConversionPattern<TileSigmoidOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileSigmoidOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    SmallVector<Value> p;
    for (Value s : adaptor.getScores())
      p.push_back(sigmoid(rewriter, op.getLoc(), s, op.getBias().convertToDouble(), mathExp));
    rewriter.replaceOpWithMultiple(op, {p});
    return success();
  }
};

/// acc = acc * alpha + sum_j p_j V[key j], in place, one pass over the head
/// dim. Where every p_j is 0 (masked keys) acc stays as it is: alpha is then
/// 1, or 0 while acc is still 0, so skipping is exact (as the old per-key
/// kernel skipped masked keys) and 0 * V never makes a NaN.
struct PVLowering : OpConversionPattern<TilePVOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TilePVOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value acc = adaptor.getAcc().front();
    Value alpha = optionalValue(adaptor.getAlpha());
    ValueRange p = adaptor.getProbs();
    KeyTile v(adaptor.getV());
    Value zero = f32(rewriter, loc, 0), any;
    Layout layout = kernelOf(this).valueLayout;
    for (Value w : p) {
      Value nonzero = arith::CmpFOp::create(rewriter, loc, arith::CmpFPredicate::UNE, w, zero);
      any = any ? Value(arith::OrIOp::create(rewriter, loc, any, nonzero)) : nonzero;
    }
    auto ifOp = scf::IfOp::create(rewriter, loc, any, /*withElseRegion=*/false);
    OpBuilder::InsertionGuard guard(rewriter);
    rewriter.setInsertionPointToStart(&ifOp.getThenRegion().front());
    SmallVector<std::pair<Value, Value>> rows; // each key's row, its page read once
    for (int64_t j = 0; j < int64_t(p.size()); ++j)
      rows.push_back(v.rowOf(rewriter, loc, layout, v.token(rewriter, loc, j)));
    forEach(rewriter, loc, cast<MemRefType>(acc.getType()).getDimSize(0), [&](Value d) {
      Value x = memref::LoadOp::create(rewriter, loc, acc, ValueRange{d});
      if (alpha)
        x = arith::MulFOp::create(rewriter, loc, x, alpha);
      for (auto [w, row] : llvm::zip(p, rows)) {
        Value y = memref::LoadOp::create(rewriter, loc, v.tensor, v.at(layout, row, d));
        x = math::FmaOp::create(rewriter, loc, w, toF32(rewriter, loc, y), x);
      }
      memref::StoreOp::create(rewriter, loc, x, acc, ValueRange{d});
    });
    rewriter.replaceOp(op, acc);
    return success();
  }
};

} // namespace

void populateMathPatterns(const SIMTTypeConverter &converter, RewritePatternSet &patterns) {
  patterns.add<QKLowering, ApplyLowering, SoftmaxLowering, SigmoidLowering, PVLowering>(converter,
                                                                      patterns.getContext());
}

} // namespace heed::simt
