// CPU patterns for the backward's tile ops (docs/backward.md), in the CPU
// representation of CPUPatterns.h (rows in vector lanes):
//   attn.tile.load_rows    lse / delta of a span's rows, as a vector
//   attn.tile.row_delta    delta = rowsum(out * dout) of a span's rows
//   attn.tile.store_rows   a span's row values written to [B, H, S]
//   attn.tile.probs        P = exp(score'(s) - lse) (sigmoid: the weights),
//                          masked, into a new tile
//   attn.tile.grad_scores  dS = P (dP - delta) f'(s) (sigmoid: dP P (1 - P)
//                          f'(s)); the derivative region's attn.grad_add
//                          become lane-by-lane adds
//   attn.tile.grad_sink    the sink logit's gradient over a span's rows,
//                          through the scalar sink region's attn.grad_add
//   attn.tile.grad_kv      acc[j] += sum_i x[j][i] y[i] (dV, dK)
//   attn.tile.write_rows   rows of an accumulator, scaled, written or added
#include "CPUPatterns.h"

#include "../TileCommon/Normalize.h"
#include "../TileCommon/VariantRegions.h"

#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <cmath>

using namespace mlir;
using namespace heed::attn;

namespace heed::cpu {
namespace {

/// Element j of a per-query vector (a col tile), splatted over the lanes.
Value columnValue(OpBuilder &b, Location loc, Value perQuery, Value j, VectorType laneType) {
  return vector::BroadcastOp::create(b, loc, laneType, extractAt(b, loc, perQuery, j));
}

struct LoadRowsLowering : OpConversionPattern<TileLoadRowsOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileLoadRowsOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    auto type = cast<VectorType>(getTypeConverter()->convertType(op.getResult().getType()));
    Span span(adaptor.getSpan());
    Value tensor = adaptor.getTensor().front();
    Value batch = adaptor.getBatch().front(), head = adaptor.getHead().front();
    auto loop = scf::ForOp::create(rewriter, loc, index(rewriter, loc, 0),
                                   index(rewriter, loc, type.getDimSize(0)),
                                   index(rewriter, loc, 1), ValueRange{splat(rewriter, loc, type, 0)});
    {
      OpBuilder::InsertionGuard guard(rewriter);
      rewriter.setInsertionPointToStart(loop.getBody());
      Value i = loop.getInductionVar();
      auto ifOp = scf::IfOp::create(rewriter, loc, TypeRange{rewriter.getF32Type()},
                                    extractAt(rewriter, loc, span.real, i), true);
      rewriter.setInsertionPointToStart(&ifOp.getThenRegion().front());
      Value x = memref::LoadOp::create(rewriter, loc, tensor,
                                       ValueRange{batch, head, extractAt(rewriter, loc, span.tokens, i)});
      scf::YieldOp::create(rewriter, loc, x);
      rewriter.setInsertionPointToStart(&ifOp.getElseRegion().front());
      scf::YieldOp::create(rewriter, loc, ValueRange{arith::ConstantOp::create(
                                               rewriter, loc, rewriter.getF32FloatAttr(0))});
      rewriter.setInsertionPointAfter(ifOp);
      Value v = vector::InsertOp::create(rewriter, loc, ifOp.getResult(0),
                                         loop.getRegionIterArgs()[0], ArrayRef<OpFoldResult>{i});
      scf::YieldOp::create(rewriter, loc, v);
    }
    rewriter.replaceOp(op, loop.getResult(0));
    return success();
  }
};

/// delta per lane: sum_d out * dout of its row, 0 at holes; summed in f64
/// as the host's pre-pass does (rowDeltas): the slopes' and sinks'
/// gradients, sums that cancel, move with delta's rounding.
struct RowDeltaLowering : OpConversionPattern<TileRowDeltaOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileRowDeltaOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    auto type = cast<VectorType>(getTypeConverter()->convertType(op.getResult().getType()));
    Span span(adaptor.getSpan());
    Value out = adaptor.getOut().front(), dout = adaptor.getDout().front();
    Value batch = adaptor.getBatch().front(), head = adaptor.getHead().front();
    int64_t dim = cast<MemRefType>(out.getType()).getDimSize(3);
    Type f32 = rewriter.getF32Type(), f64 = rewriter.getF64Type();
    Value zero = arith::ConstantOp::create(rewriter, loc, rewriter.getF32FloatAttr(0));
    auto widen = [&](Value x) { return Value(arith::ExtFOp::create(rewriter, loc, f64, x)); };
    auto lanes = scf::ForOp::create(rewriter, loc, index(rewriter, loc, 0),
                                    index(rewriter, loc, type.getDimSize(0)),
                                    index(rewriter, loc, 1), ValueRange{splat(rewriter, loc, type, 0)});
    {
      OpBuilder::InsertionGuard guard(rewriter);
      rewriter.setInsertionPointToStart(lanes.getBody());
      Value i = lanes.getInductionVar();
      auto ifOp = scf::IfOp::create(rewriter, loc, TypeRange{f32},
                                    extractAt(rewriter, loc, span.real, i), true);
      rewriter.setInsertionPointToStart(&ifOp.getThenRegion().front());
      Value token = extractAt(rewriter, loc, span.tokens, i);
      auto dims = scf::ForOp::create(
          rewriter, loc, index(rewriter, loc, 0), index(rewriter, loc, dim), index(rewriter, loc, 1),
          ValueRange{arith::ConstantOp::create(rewriter, loc, rewriter.getF64FloatAttr(0))});
      {
        OpBuilder::InsertionGuard inner(rewriter);
        rewriter.setInsertionPointToStart(dims.getBody());
        Value d = dims.getInductionVar();
        SmallVector<Value> at = op.getLayout() == Layout::BSHD
                                    ? SmallVector<Value>{batch, token, head, d}
                                    : SmallVector<Value>{batch, head, token, d};
        Value o = widen(memref::LoadOp::create(rewriter, loc, out, at));
        Value g = widen(memref::LoadOp::create(rewriter, loc, dout, at));
        scf::YieldOp::create(rewriter, loc,
                             ValueRange{math::FmaOp::create(rewriter, loc, o, g,
                                                            dims.getRegionIterArgs()[0])});
      }
      scf::YieldOp::create(rewriter, loc,
                           ValueRange{arith::TruncFOp::create(rewriter, loc, f32, dims.getResult(0))});
      rewriter.setInsertionPointToStart(&ifOp.getElseRegion().front());
      scf::YieldOp::create(rewriter, loc, ValueRange{zero});
      rewriter.setInsertionPointAfter(ifOp);
      Value v = vector::InsertOp::create(rewriter, loc, ifOp.getResult(0),
                                         lanes.getRegionIterArgs()[0], ArrayRef<OpFoldResult>{i});
      scf::YieldOp::create(rewriter, loc, v);
    }
    rewriter.replaceOp(op, lanes.getResult(0));
    return success();
  }
};

/// tensor[b, h, token] = lane, for the real lanes.
struct StoreRowsLowering : OpConversionPattern<TileStoreRowsOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileStoreRowsOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value rows = adaptor.getRows().front(), tensor = adaptor.getTensor().front();
    Span span(adaptor.getSpan());
    int64_t lanes = cast<VectorType>(rows.getType()).getDimSize(0);
    auto loop = scf::ForOp::create(rewriter, loc, index(rewriter, loc, 0), index(rewriter, loc, lanes),
                                   index(rewriter, loc, 1));
    OpBuilder::InsertionGuard guard(rewriter);
    rewriter.setInsertionPointToStart(loop.getBody());
    Value i = loop.getInductionVar();
    auto ifOp = scf::IfOp::create(rewriter, loc, extractAt(rewriter, loc, span.real, i), false);
    rewriter.setInsertionPointToStart(&ifOp.getThenRegion().front());
    memref::StoreOp::create(rewriter, loc, extractAt(rewriter, loc, rows, i), tensor,
                            ValueRange{adaptor.getBatch().front(), adaptor.getHead().front(),
                                       extractAt(rewriter, loc, span.tokens, i)});
    rewriter.eraseOp(op);
    return success();
  }
};

struct ProbsLowering : OpConversionPattern<TileProbsOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileProbsOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    VariantOp variant = lookupVariant(op, op.getVariantAttr());
    Value sT = adaptor.getScores().front(), lse = adaptor.getLse().front();
    bool transposed = op.getTransposed();
    ScoreColumns tile(rewriter, op, sT, adaptor, optionalValue(adaptor.getStatus()), transposed);
    Location loc = tile.loc;
    VectorType laneType = tile.laneType;
    Value pT = allocaAtEntry(rewriter, op, tile.type);
    // exp(s - lse) = 2^((s - lse) log2 e); rows whose lse is -inf see no
    // key. Sigmoid weights need no lse.
    bool isSigmoid = variant.getNormalization() == Normalization::Sigmoid;
    double bias = variant.getSigmoidBiasAttr() ? variant.getSigmoidBiasAttr().getValueAsDouble() : 0;
    auto lseAndLive = [&](Value lse) -> std::pair<Value, Value> {
      if (isSigmoid)
        return {};
      return {lse, arith::CmpFOp::create(rewriter, loc, arith::CmpFPredicate::OGT, lse,
                                         splat(rewriter, loc, laneType, -INFINITY))};
    };
    // A row's lse per lane; a transposed tile's per column (its query).
    Value rowLse, live;
    if (!transposed)
      std::tie(rowLse, live) = lseAndLive(lse);
    tile.hoistInvariants(rewriter, variant, adaptor.getMaskIf());
    tile.forEachKey(rewriter, [&](const ScoreColumns::Column &c) {
      if (transposed)
        std::tie(rowLse, live) = lseAndLive(columnValue(rewriter, loc, lse, c.j, laneType));
      Value valid = live ? arith::AndIOp::create(rewriter, loc, c.laneValid, live) : c.laneValid;
      auto [s, visible] = tile.applyRegions(rewriter, variant, c, tile.load(rewriter, sT, c.j),
                                            valid, adaptor.getMaskIf());
      Value p = isSigmoid ? sigmoid(rewriter, loc, s, bias, cpuExp)
                          : cpuExp(rewriter, loc, arith::SubFOp::create(rewriter, loc, s, rowLse));
      p = arith::SelectOp::create(rewriter, loc, visible, p, splat(rewriter, loc, laneType, 0));
      tile.store(rewriter, p, pT, c.j);
    });
    rewriter.replaceOp(op, pT);
    return success();
  }
};

/// gradient[indices] += value where `ok` holds and every index is in range.
void addInRange(OpBuilder &b, Location loc, Value gradient, ArrayRef<Value> indices, Value value,
                Value ok) {
  auto ifOp = scf::IfOp::create(b, loc, indicesInRange(b, loc, gradient, indices, ok), false);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&ifOp.getThenRegion().front());
  Value old = memref::LoadOp::create(b, loc, gradient, indices);
  memref::StoreOp::create(b, loc, arith::AddFOp::create(b, loc, old, value), gradient, indices);
}

/// attn.grad_add on vectors: lane by lane (indices may repeat across
/// lanes), the active lanes add dS * value to gradient[indices] where the
/// indices are in range.
void scatterAdd(OpBuilder &b, Location loc, GradAddOp add, Value ds, Value active) {
  // The accessors' types are the scalar op's: read the widened operands.
  auto laneType = cast<VectorType>(ds.getType());
  Value contribution = arith::MulFOp::create(b, loc, ds, add->getOperand(0));
  auto loop = scf::ForOp::create(b, loc, index(b, loc, 0), index(b, loc, laneType.getDimSize(0)),
                                 index(b, loc, 1));
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(loop.getBody());
  Value l = loop.getInductionVar();
  SmallVector<Value> indices;
  for (Value v : add->getOperands().drop_front(2))
    indices.push_back(extractAt(b, loc, v, l));
  addInRange(b, loc, add->getOperand(1), indices, extractAt(b, loc, contribution, l),
             extractAt(b, loc, active, l));
}

/// attn.grad_add of an element of the head (perHeadAdds: the same indices
/// in every lane): the active lanes' dS * value summed (a tree reduction),
/// then one bounds-checked add.
void addLanesSum(OpBuilder &b, Location loc, GradAddOp add, Value ds, Value active) {
  auto laneType = cast<VectorType>(ds.getType());
  Value shares = arith::SelectOp::create(b, loc, active,
                                         arith::MulFOp::create(b, loc, ds, add->getOperand(0)),
                                         splat(b, loc, laneType, 0));
  Value sum = vector::ReductionOp::create(b, loc, vector::CombiningKind::ADD, shares);
  Value lane0 = index(b, loc, 0);
  SmallVector<Value> indices;
  for (Value v : add->getOperands().drop_front(2))
    indices.push_back(isa<VectorType>(v.getType()) ? extractAt(b, loc, v, lane0) : v);
  addInRange(b, loc, add->getOperand(1), indices, sum, arith::ConstantIntOp::create(b, loc, 1, 1));
}

struct GradScoresLowering : OpConversionPattern<TileGradScoresOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileGradScoresOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    VariantOp grad = lookupVariant(op, op.getVariantAttr());
    Value sT = adaptor.getScores().front(), pT = adaptor.getProbs().front();
    Value dpT = adaptor.getDp().front(), delta = adaptor.getDelta().front();
    bool transposed = op.getTransposed();
    ScoreColumns tile(rewriter, op, sT, adaptor, /*status=*/Value(), transposed);
    Location loc = tile.loc;
    VectorType laneType = tile.laneType;
    Value dsT = allocaAtEntry(rewriter, op, tile.type);
    Block &region = grad.getScore().front();
    bool constantOne = false;
    if (auto cst = cast<YieldOp>(region.getTerminator()).getValue().getDefiningOp<arith::ConstantOp>())
      constantOne = cast<FloatAttr>(cst.getValue()).getValueAsDouble() == 1.0;
    bool hasGradAdds = !region.getOps<GradAddOp>().empty() && !op.getNoBufferGrads();
    bool isSigmoid = grad.getNormalization() == Normalization::Sigmoid;
    SmallVector<bool> perHead = perHeadAdds(region);
    if (!constantOne || hasGradAdds)
      tile.hoistInvariants(rewriter, grad.getScore(), /*withScore=*/true);
    tile.forEachKey(rewriter, [&](const ScoreColumns::Column &c) {
      auto load = [&](Value t) { return tile.load(rewriter, t, c.j); };
      Value p = load(pT);
      auto mul = [&](Value x, Value y) { return arith::MulFOp::create(rewriter, loc, x, y); };
      auto sub = [&](Value x, Value y) { return arith::SubFOp::create(rewriter, loc, x, y); };
      // Softmax: P (dP - delta); sigmoid: dP P (1 - P), rows not normalized.
      Value rowDelta =
          transposed && !isSigmoid ? columnValue(rewriter, loc, delta, c.j, laneType) : delta;
      Value ds = isSigmoid ? mul(load(dpT), mul(p, sub(splat(rewriter, loc, laneType, 1), p)))
                           : mul(p, sub(load(dpT), rowDelta));
      if (!constantOne || hasGradAdds) {
        RegionInlining how = tile.inlining(c);
        SmallVector<Value, 5> leading = {load(sT)};
        leading.append(tile.positions(c));
        how.leading = leading;
        // The region's grad_adds come out as ops on vectors: they become
        // lane-by-lane adds.
        SmallVector<GradAddOp> adds;
        Value derivative = inlineDerivative(rewriter, loc, grad.getScore(), how, adds);
        Value active = arith::AndIOp::create(
            rewriter, loc, c.laneValid,
            arith::CmpFOp::create(rewriter, loc, arith::CmpFPredicate::UNE, p,
                                  splat(rewriter, loc, laneType, 0)));
        for (auto [n, add] : llvm::enumerate(adds)) {
          // (no_buffer_grads: the split dK/dV kernel; the dQ kernel adds them)
          if (!op.getNoBufferGrads() && perHead[n])
            addLanesSum(rewriter, loc, add, ds, active);
          else if (!op.getNoBufferGrads())
            scatterAdd(rewriter, loc, add, ds, active);
          rewriter.eraseOp(add);
        }
        // Pairs with P = 0 (masked, holes) give 0 even where the derivative
        // is not finite there.
        if (!constantOne)
          ds = arith::SelectOp::create(rewriter, loc, active,
                                       arith::MulFOp::create(rewriter, loc, ds, derivative),
                                       splat(rewriter, loc, laneType, 0));
      }
      tile.store(rewriter, ds, dsT, c.j);
    });
    rewriter.replaceOp(op, dsT);
    return success();
  }
};

/// The sink logit x of (b, h) and a = -sum_i exp(x - lse_i) delta_i over
/// the span's real rows; each grad_add of the scalar sink region adds
/// a * value.
struct GradSinkLowering : OpConversionPattern<TileGradSinkOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileGradSinkOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    VariantOp grad = lookupVariant(op, op.getVariantAttr());
    Location loc = op.getLoc();
    Value lse = adaptor.getLse().front(), delta = adaptor.getDelta().front();
    Span rows(adaptor.getRows());
    auto laneType = cast<VectorType>(lse.getType());
    SmallVector<Value> buffers = firstValues(adaptor.getBuffers());
    Value leading[] = {adaptor.getBatch().front(), adaptor.getHead().front()};
    RegionInlining how;
    how.leading = leading;
    how.buffers = buffers;
    SmallVector<GradAddOp> adds;
    Value sink = inlineDerivative(rewriter, loc, grad.getSink(), how, adds);
    // lse >= x up to rounding; the min keeps cpuExp's argument <= 0.
    Value zero = splat(rewriter, loc, laneType, 0);
    Value x = vector::BroadcastOp::create(rewriter, loc, laneType, sink);
    Value w = cpuExp(rewriter, loc,
                     arith::MinimumFOp::create(rewriter, loc,
                                               arith::SubFOp::create(rewriter, loc, x, lse), zero));
    Value live = arith::AndIOp::create(
        rewriter, loc, rows.real,
        arith::CmpFOp::create(rewriter, loc, arith::CmpFPredicate::OGT, lse,
                              splat(rewriter, loc, laneType, -INFINITY)));
    Value terms = arith::SelectOp::create(rewriter, loc, live,
                                          arith::MulFOp::create(rewriter, loc, w, delta), zero);
    Value adjoint = arith::NegFOp::create(
        rewriter, loc, vector::ReductionOp::create(rewriter, loc, vector::CombiningKind::ADD, terms));
    Value yes = arith::ConstantIntOp::create(rewriter, loc, 1, 1);
    for (GradAddOp add : adds) {
      addInRange(rewriter, loc, add.getGradient(), SmallVector<Value>(add.getIndices()),
                 arith::MulFOp::create(rewriter, loc, adjoint, add.getValue()), yes);
      rewriter.eraseOp(add);
    }
    rewriter.eraseOp(op);
    return success();
  }
};

struct GradKVLowering : OpConversionPattern<TileGradKVOp> {
  using OpConversionPattern::OpConversionPattern;
  /// Keys in register-sized groups (registerGroup: 4 at D = 64): each y row
  /// loaded serves the group, and the group's independent sums keep both
  /// FMA pipes busy (one key at a time was one dependent chain).
  LogicalResult matchAndRewrite(TileGradKVOp op, OpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value xT = adaptor.getX(), y = adaptor.getY(), acc = adaptor.getAcc();
    auto xType = cast<MemRefType>(xT.getType());
    int64_t keys = xType.getDimSize(0), rows = xType.getDimSize(1);
    int64_t width = cast<MemRefType>(acc.getType()).getDimSize(1);
    auto rowType = VectorType::get({width}, rewriter.getF32Type());
    int64_t group = registerGroup(keys, width);
    Value c0 = index(rewriter, loc, 0);
    auto keyLoop = scf::ForOp::create(rewriter, loc, c0, index(rewriter, loc, keys),
                                      index(rewriter, loc, group));
    OpBuilder::InsertionGuard guard(rewriter);
    rewriter.setInsertionPointToStart(keyLoop.getBody());
    SmallVector<Value> keyIds, sums;
    for (int64_t g = 0; g < group; ++g) {
      keyIds.push_back(
          arith::AddIOp::create(rewriter, loc, keyLoop.getInductionVar(), index(rewriter, loc, g)));
      sums.push_back(vector::LoadOp::create(rewriter, loc, rowType, acc, ValueRange{keyIds[g], c0}));
    }
    sums = accumulateRows(
        rewriter, loc, index(rewriter, loc, rows), sums,
        [&](Value i) { return vector::LoadOp::create(rewriter, loc, rowType, y, ValueRange{i, c0}); },
        [&](Value i, int64_t g) {
          return memref::LoadOp::create(rewriter, loc, xT, ValueRange{keyIds[g], i});
        });
    for (int64_t g = 0; g < group; ++g)
      vector::StoreOp::create(rewriter, loc, sums[g], acc, ValueRange{keyIds[g], c0});
    rewriter.replaceOp(op, acc);
    return success();
  }
};

struct WriteRowsLowering : OpConversionPattern<TileWriteRowsOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileWriteRowsOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value acc = adaptor.getAcc().front(), tensor = adaptor.getTensor().front();
    Value batch = adaptor.getBatch().front(), head = adaptor.getHead().front();
    Span span(adaptor.getSpan());
    auto accType = cast<MemRefType>(acc.getType());
    int64_t width = accType.getDimSize(1);
    auto rowType = VectorType::get({width}, rewriter.getF32Type());
    Type elt = cast<MemRefType>(tensor.getType()).getElementType();
    Value c0 = index(rewriter, loc, 0);
    Value scale = splat(rewriter, loc, rowType, op.getScale().convertToDouble());
    auto loop = scf::ForOp::create(rewriter, loc, c0, index(rewriter, loc, accType.getDimSize(0)),
                                   index(rewriter, loc, 1));
    OpBuilder::InsertionGuard guard(rewriter);
    rewriter.setInsertionPointToStart(loop.getBody());
    Value i = loop.getInductionVar();
    auto real = scf::IfOp::create(rewriter, loc, extractAt(rewriter, loc, span.real, i), false);
    rewriter.setInsertionPointToStart(&real.getThenRegion().front());
    SmallVector<Value> at = heed::cpu::at(op.getLayout(), batch, head,
                                          extractAt(rewriter, loc, span.tokens, i), c0);
    Value row = arith::MulFOp::create(
        rewriter, loc, vector::LoadOp::create(rewriter, loc, rowType, acc, ValueRange{i, c0}), scale);
    if (op.getAccumulate())
      row = arith::AddFOp::create(rewriter, loc, row,
                                  vector::LoadOp::create(rewriter, loc, rowType, tensor, at));
    else if (!elt.isF32())
      row = arith::TruncFOp::create(rewriter, loc, VectorType::get({width}, elt), row);
    vector::StoreOp::create(rewriter, loc, row, tensor, at);
    rewriter.eraseOp(op);
    return success();
  }
};

} // namespace

void populateBackwardPatterns(const CPUTypeConverter &converter, RewritePatternSet &patterns) {
  patterns.add<LoadRowsLowering, RowDeltaLowering, StoreRowsLowering, ProbsLowering,
               GradScoresLowering, GradSinkLowering, GradKVLowering, WriteRowsLowering>(
      converter, patterns.getContext());
}

} // namespace heed::cpu
