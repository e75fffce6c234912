// The backward's tile ops on matrix cores (docs/backward.md, "GPU
// kernels"), target-neutral as MatrixCorePatterns.cpp: the dQ kernel's
// score tiles are query-major (rows of the lane's row slots), the dK/dV
// kernel's key-major (`transposed`: the row slots are keys, the columns
// queries, and lse/delta are col tiles).
//   attn.tile.load_rows    lse / delta per row slot (row) or per column (col)
//   attn.tile.row_delta    delta = rowsum(out * dout) per row slot, the
//                          lanes of a row each reading chunks of 8 columns
//   attn.tile.store_rows   a row slot's value, by the lane owning the row
//   attn.tile.probs        P = exp(score'(s) - lse) where visible (sigmoid:
//                          the weights), element by element
//   attn.tile.grad_scores  dS = P (dP - delta) f'(s) (sigmoid: dP P (1 - P)
//                          f'(s)); the derivative's attn.grad_add become
//                          bounds-checked deterministic fixed-point adds
//                          (GradientAccumulators.cpp; unless
//                          `no_buffer_grads`), one per wave for an element
//                          of the head (ALiBi's slope), else per element
//   attn.tile.grad_sink    a sink logit's gradient over the dQ item's rows
//                          (the same adds, one per row)
//   attn.tile.write_rows   an accumulator's rows, scaled, stored
#include "MatrixCore.h"

#include "../TileCommon/Normalize.h"
#include "../TileCommon/VariantRegions.h"

#include "dialects/attn/AttnOps.h"

#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include <cmath>

using namespace mlir;
using namespace heed::attn;

namespace heed::gpu_tile {
namespace {

Value f32(OpBuilder &b, Location loc, double v) { return f32Like(b, loc, b.getF32Type(), v); }


struct LoadRowsLowering : TargetPattern<TileLoadRowsOp> {
  using TargetPattern::TargetPattern;
  LogicalResult matchAndRewrite(TileLoadRowsOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    auto type = cast<TileType>(op.getResult().getType());
    QueryRows rows = QueryRows::of(op.getSpan(), adaptor.getSpan());
    Value tensor = adaptor.getTensor().front();
    Value batch = adaptor.getBatch().front(), head = adaptor.getHead().front();
    if (type.getRole() == TileRole::Col) {
      SmallVector<Value> cols =
          target.loadColumns(rewriter, loc, tensor, batch, head, rows, type.getRows());
      if (cols.empty())
        return rewriter.notifyMatchFailure(op, "the target has no col tiles");
      rewriter.replaceOpWithMultiple(op, {cols});
      return success();
    }
    // Only real rows are read: a tile may have none (a ragged batch's entry
    // without queries), and then no row of the view is in bounds to clamp to.
    SmallVector<Value> values;
    for (unsigned s = 0; s < target.shape.rowSlots; ++s) {
      Value r = target.slotRow(rewriter, loc, s);
      Value real = rows.contains(rewriter, loc, r);
      auto ifOp = scf::IfOp::create(rewriter, loc, TypeRange{rewriter.getF32Type()}, real, true);
      {
        OpBuilder::InsertionGuard guard(rewriter);
        rewriter.setInsertionPointToStart(&ifOp.getThenRegion().front());
        Value x = memref::LoadOp::create(rewriter, loc, tensor,
                                         ValueRange{batch, head, rows.token(rewriter, loc, r)});
        scf::YieldOp::create(rewriter, loc, x);
        rewriter.setInsertionPointToStart(&ifOp.getElseRegion().front());
        scf::YieldOp::create(rewriter, loc, f32(rewriter, loc, 0));
      }
      values.push_back(ifOp.getResult(0));
    }
    rewriter.replaceOpWithMultiple(op, {values});
    return success();
  }
};

/// delta = rowsum(out * dout) per row slot: the lanes that hold a row
/// (rowReduce's group, rowLanes()) split its columns in chunks of 8, and
/// reduce.
struct RowDeltaLowering : TargetPattern<TileRowDeltaOp> {
  using TargetPattern::TargetPattern;
  LogicalResult matchAndRewrite(TileRowDeltaOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    QueryRows rows = QueryRows::of(op.getSpan(), adaptor.getSpan());
    Value out = adaptor.getOut().front(), dout = adaptor.getDout().front();
    Value batch = adaptor.getBatch().front(), head = adaptor.getHead().front();
    int64_t dim = cast<MemRefType>(out.getType()).getDimSize(3);
    int64_t group = target.rowLanes();
    if (!group || dim % 8)
      return rewriter.notifyMatchFailure(op, "needs row groups and a head dim multiple of 8");
    Type f32 = rewriter.getF32Type();
    auto f32x8 = VectorType::get({8}, f32);
    Value part = target.rowLane(rewriter, loc);
    auto chunk = [&](Value tensor, ValueRange at, Value in) {
      auto type = VectorType::get({8}, cast<MemRefType>(tensor.getType()).getElementType());
      Value x = loadOrZero(rewriter, loc, type, tensor, at, in);
      return type.getElementType().isF32() ? x : Value(arith::ExtFOp::create(rewriter, loc, f32x8, x));
    };
    SmallVector<Value> values;
    for (unsigned s = 0; s < target.shape.rowSlots; ++s) {
      Value r = target.slotRow(rewriter, loc, s);
      Value real = rows.contains(rewriter, loc, r);
      Value token = rows.clampedToken(rewriter, loc, r);
      Value sum = f32Like(rewriter, loc, f32x8, 0);
      for (int64_t c0 = 0; c0 < dim; c0 += 8 * group) {
        Value col = arith::AddIOp::create(
            rewriter, loc, index(rewriter, loc, c0),
            arith::MulIOp::create(rewriter, loc, part, index(rewriter, loc, 8)));
        Value in = arith::AndIOp::create(
            rewriter, loc, real,
            arith::CmpIOp::create(rewriter, loc, arith::CmpIPredicate::ult, col,
                                  index(rewriter, loc, dim)));
        SmallVector<Value> at = gpu_tile::at(op.getLayout(), batch, head, token, col);
        sum = math::FmaOp::create(rewriter, loc, chunk(out, at, in), chunk(dout, at, in), sum);
      }
      Value lane = vector::ReductionOp::create(rewriter, loc, vector::CombiningKind::ADD, sum);
      values.push_back(target.rowReduce(rewriter, loc, lane, /*max=*/false));
    }
    rewriter.replaceOpWithMultiple(op, {values});
    return success();
  }
};

/// Each row slot's value, by the lane that owns the row's statistics.
struct StoreRowsLowering : TargetPattern<TileStoreRowsOp> {
  using TargetPattern::TargetPattern;
  LogicalResult matchAndRewrite(TileStoreRowsOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    QueryRows rows = QueryRows::of(op.getSpan(), adaptor.getSpan());
    Value owner = target.ownsRowStats(rewriter, loc);
    for (unsigned s = 0; s < target.shape.rowSlots; ++s) {
      Value r = target.slotRow(rewriter, loc, s);
      auto ifOp = scf::IfOp::create(
          rewriter, loc, arith::AndIOp::create(rewriter, loc, owner, rows.contains(rewriter, loc, r)),
          false);
      OpBuilder::InsertionGuard guard(rewriter);
      rewriter.setInsertionPointToStart(&ifOp.getThenRegion().front());
      memref::StoreOp::create(rewriter, loc, adaptor.getRows()[s], adaptor.getTensor().front(),
                              ValueRange{adaptor.getBatch().front(), adaptor.getHead().front(),
                                         rows.token(rewriter, loc, r)});
    }
    rewriter.eraseOp(op);
    return success();
  }
};

/// The per-query statistic (lse or delta) of element `e` (position `i` in
/// elements() order): its row slot's, or in a transposed tile its column's.
Value statistic(const MatrixCoreTarget &target, ValueRange stat, const Element &e, unsigned i,
                bool transposed) {
  return transposed ? stat[target.columnOf(i)] : stat[e.slot];
}

bool isFalse(Value v) {
  auto c = v ? v.getDefiningOp<arith::ConstantIntOp>() : arith::ConstantIntOp();
  return c && c.value() == 0;
}

struct ProbsLowering : TargetPattern<TileProbsOp> {
  using TargetPattern::TargetPattern;
  LogicalResult matchAndRewrite(TileProbsOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    VariantOp variant = lookupVariant(op, op.getVariantAttr());
    bool transposed = op.getTransposed();
    auto span = op.getCols().getDefiningOp<TileSpanOp>();
    Value batch = adaptor.getBatch().front(), head = adaptor.getHead().front();
    SmallVector<Element> elements = target.elements(rewriter, loc, adaptor.getScores());
    RegionOperands operands(adaptor);
    RegionInlining how = operands.inlining(target.narrowIntegers(transposed));
    // A dynamic mask_if may be ignored: the mask holds on FULL blocks anyway.
    ElementPositions at = elementPositions(
        rewriter, loc, target, elements, variant, QueryRows::of(op.getRows(), adaptor.getRows()),
        QueryRows::of(op.getCols(), adaptor.getCols()), span && span.getInBounds(),
        !isFalse(op.getMaskIf()), transposed, batch, head, how);
    bool isSigmoid = variant.getNormalization() == Normalization::Sigmoid;
    double bias = variant.getSigmoidBiasAttr() ? variant.getSigmoidBiasAttr().getValueAsDouble() : 0;
    Value zero = f32(rewriter, loc, 0), negInf = f32(rewriter, loc, -INFINITY);
    SmallVector<Value> p;
    for (auto [i, e] : llvm::enumerate(elements)) {
      Value indices[] = {batch, head, at.q[i], at.kv[i]};
      Value s = inlineScore(rewriter, loc, variant, how, e.value, indices);
      Value visible = at.visible[i];
      Value x;
      if (isSigmoid) {
        x = sigmoid(rewriter, loc, s, bias, mathExp);
      } else {
        // Rows whose lse is -inf (no visible key) see none.
        Value lse = statistic(target, adaptor.getLse(), e, i, transposed);
        Value live = arith::CmpFOp::create(rewriter, loc, arith::CmpFPredicate::OGT, lse, negInf);
        visible = visible ? Value(arith::AndIOp::create(rewriter, loc, visible, live)) : live;
        x = expMinus(target, rewriter, loc, s, lse);
      }
      p.push_back(visible ? Value(arith::SelectOp::create(rewriter, loc, visible, x, zero)) : x);
    }
    rewriter.replaceOpWithMultiple(op, {target.assemble(rewriter, loc, adaptor.getScores(), p)});
    return success();
  }
};


/// Whether `v` (in a derivative score region, not inlined) is an integer
/// function of the region's index arguments made float (ALiBi's kv - q):
/// finite wherever it is evaluated, so that 0 * v is 0.
bool finiteFromIndices(Value v) {
  Operation *def = v.getDefiningOp();
  if (!def)
    return v.getType().isIndex() || v.getType().isInteger();
  if (!isa<arith::SIToFPOp, arith::UIToFPOp, arith::IndexCastOp, arith::SubIOp, arith::AddIOp,
           arith::MulIOp, arith::ExtSIOp, arith::ExtUIOp, arith::TruncIOp>(def) &&
      !(isa<arith::ConstantOp>(def) && !isa<FloatType>(v.getType())))
    return isa<arith::ConstantOp>(def); // a float constant is finite too
  return llvm::all_of(def->getOperands(), finiteFromIndices);
}

struct GradScoresLowering : TargetPattern<TileGradScoresOp> {
  using TargetPattern::TargetPattern;
  LogicalResult matchAndRewrite(TileGradScoresOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    VariantOp grad = lookupVariant(op, op.getVariantAttr());
    bool transposed = op.getTransposed();
    Value batch = adaptor.getBatch().front(), head = adaptor.getHead().front();
    SmallVector<Element> s = target.elements(rewriter, loc, adaptor.getScores());
    SmallVector<Element> p = target.elements(rewriter, loc, adaptor.getProbs());
    SmallVector<Element> dp = target.elements(rewriter, loc, adaptor.getDp());
    Block &region = grad.getScore().front();
    bool constantOne = false;
    if (auto cst = cast<YieldOp>(region.getTerminator()).getValue().getDefiningOp<arith::ConstantOp>())
      constantOne = cast<FloatAttr>(cst.getValue()).getValueAsDouble() == 1.0;
    bool addBuffers = !op.getNoBufferGrads() && !region.getOps<GradAddOp>().empty();
    bool isSigmoid = grad.getNormalization() == Normalization::Sigmoid;
    ElementPositions at;
    SmallVector<Value> buffers = firstValues(adaptor.getBuffers());
    RegionInlining how; // (no status: a derivative reads what the forward read)
    how.buffers = buffers;
    how.route = optionalValue(adaptor.getRoute());
    RegionMemo memo;
    how.memo = &memo;
    how.narrow = target.narrowIntegers(transposed);
    if (!constantOne || addBuffers) {
      auto span = op.getCols().getDefiningOp<TileSpanOp>();
      // Positions only (no mask): P is 0 wherever the pair is not visible.
      at = elementPositions(rewriter, loc, target, s, grad,
                            QueryRows::of(op.getRows(), adaptor.getRows()),
                            QueryRows::of(op.getCols(), adaptor.getCols()),
                            span && span.getInBounds(), /*masked=*/false, transposed, batch, head,
                            how);
    }
    Value zero = f32(rewriter, loc, 0), one = f32(rewriter, loc, 1);
    // Per-head gradient elements: the lane's sum (and the element's
    // indices, the same for every element), added once per wave below.
    SmallVector<bool> perHead = perHeadAdds(region);
    SmallVector<bool> finiteValue;
    for (GradAddOp add : region.getOps<GradAddOp>())
      finiteValue.push_back(finiteFromIndices(add.getValue()));
    SmallVector<Value> headSums(perHead.size());
    // A query-major tile's padding rows (past Sq) read lse 0 and zero Q and
    // dO rows: their P may overflow where the score is large (inf times 0 is
    // NaN), so they add nothing to the buffers' gradients (the key-major
    // tile's positions already test its columns' queries).
    SmallVector<Value> realRow;
    if (addBuffers && !transposed) {
      QueryRows rows = QueryRows::of(op.getRows(), adaptor.getRows());
      for (unsigned slot = 0; slot < target.shape.rowSlots; ++slot)
        realRow.push_back(rows.contains(rewriter, loc, target.slotRow(rewriter, loc, slot)));
    }
    SmallVector<Value> ds;
    for (size_t i = 0; i < s.size(); ++i) {
      Value pi = p[i].value;
      auto mul = [&](Value x, Value y) { return arith::MulFOp::create(rewriter, loc, x, y); };
      auto sub = [&](Value x, Value y) { return arith::SubFOp::create(rewriter, loc, x, y); };
      // Softmax: P (dP - delta); sigmoid: dP P (1 - P), rows not normalized.
      Value x = isSigmoid ? Value(mul(dp[i].value, mul(pi, sub(one, pi))))
                          : Value(mul(pi, sub(dp[i].value, statistic(target, adaptor.getDelta(),
                                                                      s[i], i, transposed))));
      if (!constantOne || addBuffers) {
        Value leading[] = {s[i].value, batch, head, at.q[i], at.kv[i]};
        how.leading = leading;
        SmallVector<GradAddOp> adds;
        Value derivative = inlineDerivative(rewriter, loc, grad.getScore(), how, adds);
        // Pairs with P = 0 (masked, holes) give 0 even where the derivative
        // is not finite there.
        Value active = arith::CmpFOp::create(rewriter, loc, arith::CmpFPredicate::UNE, pi, zero);
        if (at.visible[i])
          active = arith::AndIOp::create(rewriter, loc, active, at.visible[i]);
        if (!realRow.empty())
          active = arith::AndIOp::create(rewriter, loc, active, realRow[s[i].slot]);
        for (auto [n, add] : llvm::enumerate(adds)) {
          if (addBuffers && perHead[n]) {
            // 0 where inactive; where the value is finite everywhere (a
            // function of the indices), zeroing x first is enough (and takes
            // fewer registers: ALiBi's dK/dV kernel at D = 128).
            Value share = finiteValue[n]
                              ? Value(mul(arith::SelectOp::create(rewriter, loc, active, x, zero),
                                          add.getValue()))
                              : Value(arith::SelectOp::create(rewriter, loc, active,
                                                              mul(x, add.getValue()), zero));
            headSums[n] = headSums[n] ? Value(arith::AddFOp::create(rewriter, loc, headSums[n],
                                                                     share))
                                      : share;
          } else if (addBuffers) {
            target.gradients.add(rewriter, loc, add.getGradient(), add.getIndices(),
                                 mul(x, add.getValue()), active);
          }
          rewriter.eraseOp(add);
        }
        if (!constantOne)
          x = arith::SelectOp::create(rewriter, loc, active, mul(x, derivative), zero);
      }
      ds.push_back(x);
    }
    // The wave's sum of each per-head element, added by its first lane; the
    // element's indices from the region evaluated once more (they depend
    // on b and h only), not kept live across the tile.
    if (llvm::any_of(headSums, [](Value v) { return static_cast<bool>(v); })) {
      Value c0 = index(rewriter, loc, 0);
      Value leading[] = {zero, batch, head, c0, c0};
      how.leading = leading;
      how.memo = nullptr; // (afresh: the elements' values would stay live)
      SmallVector<GradAddOp> adds;
      inlineDerivative(rewriter, loc, grad.getScore(), how, adds);
      int64_t wave = target.shape.waveSize;
      Value first = arith::CmpIOp::create(rewriter, loc, arith::CmpIPredicate::eq,
                                          laneId(rewriter, loc, wave), index(rewriter, loc, 0));
      for (auto [n, add] : llvm::enumerate(adds)) {
        if (headSums[n]) {
          Value sum = xorReduce(rewriter, loc, headSums[n], 1, wave, wave, /*max=*/false);
          target.gradients.add(rewriter, loc, add.getGradient(), add.getIndices(), sum, first);
        }
        rewriter.eraseOp(add);
      }
    }
    rewriter.replaceOpWithMultiple(op, {target.assemble(rewriter, loc, adaptor.getScores(), ds)});
    return success();
  }
};

/// The sink logit x of (b, h): each real row i adds a_i = -exp(x - lse_i)
/// delta_i times each grad_add's value to its gradient element (the lane
/// that owns the row's statistics, into its fixed-point accumulator).
struct GradSinkLowering : TargetPattern<TileGradSinkOp> {
  using TargetPattern::TargetPattern;
  LogicalResult matchAndRewrite(TileGradSinkOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    VariantOp grad = lookupVariant(op, op.getVariantAttr());
    QueryRows rows = QueryRows::of(op.getRows(), adaptor.getRows());
    SmallVector<Value> buffers = firstValues(adaptor.getBuffers());
    Value leading[] = {adaptor.getBatch().front(), adaptor.getHead().front()};
    RegionInlining how;
    how.leading = leading;
    how.buffers = buffers;
    SmallVector<GradAddOp> adds;
    Value x = inlineDerivative(rewriter, loc, grad.getSink(), how, adds);
    Value zero = f32(rewriter, loc, 0), negInf = f32(rewriter, loc, -INFINITY);
    Value owner = target.ownsRowStats(rewriter, loc);
    for (unsigned s = 0; s < target.shape.rowSlots; ++s) {
      Value lse = adaptor.getLse()[s], delta = adaptor.getDelta()[s];
      Value live = arith::AndIOp::create(
          rewriter, loc,
          arith::AndIOp::create(rewriter, loc, owner,
                                rows.contains(rewriter, loc, target.slotRow(rewriter, loc, s))),
          arith::CmpFOp::create(rewriter, loc, arith::CmpFPredicate::OGT, lse, negInf));
      // lse >= x up to rounding: the min keeps the exponent <= 0.
      Value w = mathExp(rewriter, loc,
                        arith::MinimumFOp::create(
                            rewriter, loc, arith::SubFOp::create(rewriter, loc, x, lse), zero));
      Value a = arith::NegFOp::create(rewriter, loc, arith::MulFOp::create(rewriter, loc, w, delta));
      for (GradAddOp add : adds)
        target.gradients.add(rewriter, loc, add.getGradient(), add.getIndices(),
                             arith::MulFOp::create(rewriter, loc, a, add.getValue()), live);
    }
    for (GradAddOp add : adds)
      rewriter.eraseOp(add);
    rewriter.eraseOp(op);
    return success();
  }
};

/// Each real row's elements of an accumulator, times `scale`, stored in the
/// tensor's element type.
struct WriteRowsLowering : TargetPattern<TileWriteRowsOp> {
  using TargetPattern::TargetPattern;
  LogicalResult matchAndRewrite(TileWriteRowsOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    if (op.getAccumulate())
      return op.emitOpError() << "accumulates into shared rows: the GPU backward writes each "
                                 "row once (kernel=dq, kernel=dkdv)";
    Location loc = op.getLoc();
    QueryRows rows = QueryRows::of(op.getSpan(), adaptor.getSpan());
    Value out = adaptor.getTensor().front(), batch = adaptor.getBatch().front();
    Value head = adaptor.getHead().front();
    Type elt = cast<MemRefType>(out.getType()).getElementType();
    Value scale = f32(rewriter, loc, op.getScale().convertToFloat());
    bool scaled = op.getScale().convertToFloat() != 1.0f;
    SmallVector<Element> elements = target.elements(rewriter, loc, adaptor.getAcc());
    for (unsigned s = 0; s < target.shape.rowSlots; ++s) {
      Value slotRow = target.slotRow(rewriter, loc, s);
      auto ifOp = scf::IfOp::create(rewriter, loc, rows.contains(rewriter, loc, slotRow), false);
      OpBuilder::InsertionGuard guard(rewriter);
      rewriter.setInsertionPointToStart(&ifOp.getThenRegion().front());
      Value row = rows.token(rewriter, loc, slotRow);
      for (const Element &e : elements) {
        if (e.slot != s)
          continue;
        Value x = scaled ? Value(arith::MulFOp::create(rewriter, loc, e.value, scale)) : e.value;
        if (!elt.isF32())
          x = arith::TruncFOp::create(rewriter, loc, elt, x);
        memref::StoreOp::create(rewriter, loc, x, out, at(op.getLayout(), batch, head, row, e.col));
      }
    }
    rewriter.eraseOp(op);
    return success();
  }
};

} // namespace

void populateMatrixCoreBackwardPatterns(const TypeConverter &converter,
                                        const MatrixCoreTarget &target,
                                        RewritePatternSet &patterns) {
  patterns.add<LoadRowsLowering, RowDeltaLowering, StoreRowsLowering, ProbsLowering,
               GradScoresLowering, GradSinkLowering, WriteRowsLowering>(
      converter, patterns.getContext(), target);
}

} // namespace heed::gpu_tile
