// CPU patterns for attn.tile.softmax, the online softmax step, in base 2:
// exponents are exp2(s log2(e) - m log2(e)) by a polynomial on vectors (no
// libm call), and the probabilities overwrite the scores in place; and for
// attn.tile.sigmoid, the same polynomial per key, in place.
#include "CPUPatterns.h"

#include "../TileCommon/Normalize.h"

#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <cmath>

using namespace mlir;
using namespace heed::attn;

namespace heed::cpu {

constexpr double kLn2 = 0.6931471805599453;

/// 2^x for x <= 0 (all softmax exponents are): x = n + f with n = round(x),
/// |f| <= 1/2; 2^f by a degree-7 Taylor polynomial of e^(f ln 2) (relative
/// error < 1e-8), 2^n by building the exponent bits. x <= -127 (including
/// -inf) gives exactly 0, so masked scores contribute nothing.
Value exp2(OpBuilder &b, Location loc, Value x) {
  auto vt = cast<VectorType>(x.getType());
  auto it = VectorType::get(vt.getShape(), b.getI32Type());
  x = arith::MaximumFOp::create(b, loc, x, splat(b, loc, vt, -127.0));
  Value n = math::RoundEvenOp::create(b, loc, x);
  Value f = arith::MulFOp::create(b, loc, arith::SubFOp::create(b, loc, x, n), splat(b, loc, vt, kLn2));
  const double coeff[8] = {1, 1, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040};
  Value p = splat(b, loc, vt, coeff[7]);
  for (int i = 6; i >= 0; --i)
    p = math::FmaOp::create(b, loc, p, f, splat(b, loc, vt, coeff[i]));
  auto intSplat = [&](int32_t v) {
    return arith::ConstantOp::create(b, loc, DenseElementsAttr::get(it, b.getI32IntegerAttr(v)));
  };
  Value biased = arith::AddIOp::create(b, loc, arith::FPToSIOp::create(b, loc, it, n), intSplat(127));
  Value bits = arith::ShLIOp::create(b, loc, biased, intSplat(23));
  return arith::MulFOp::create(b, loc, p, arith::BitcastOp::create(b, loc, vt, bits));
}

Value runningMax(OpBuilder &b, Location loc, Value s, Value m) {
  return arith::SelectOp::create(
      b, loc, arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, s, m), s, m);
}

Value cpuExp(OpBuilder &b, Location loc, Value x) {
  auto vt = cast<VectorType>(x.getType());
  return exp2(b, loc, arith::MulFOp::create(b, loc, x, splat(b, loc, vt, kLog2E)));
}

Value cpuLog(OpBuilder &b, Location loc, Value x) {
  auto vt = cast<VectorType>(x.getType());
  return arith::MulFOp::create(b, loc, math::Log2Op::create(b, loc, x), splat(b, loc, vt, kLn2));
}

namespace {

/// Sigmoid weights key by key: no row statistics.
struct SigmoidLowering : OpConversionPattern<TileSigmoidOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileSigmoidOp op, OpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value sT = adaptor.getScores();
    auto sType = cast<MemRefType>(sT.getType());
    auto laneType = VectorType::get({sType.getDimSize(1)}, rewriter.getF32Type());
    Value c0 = index(rewriter, loc, 0);
    auto loop = scf::ForOp::create(rewriter, loc, c0, index(rewriter, loc, sType.getDimSize(0)),
                                   index(rewriter, loc, 1));
    OpBuilder::InsertionGuard guard(rewriter);
    rewriter.setInsertionPointToStart(loop.getBody());
    Value j = loop.getInductionVar();
    Value s = vector::LoadOp::create(rewriter, loc, laneType, sT, ValueRange{j, c0});
    Value p = sigmoid(rewriter, loc, s, op.getBias().convertToDouble(), cpuExp);
    vector::StoreOp::create(rewriter, loc, p, sT, ValueRange{j, c0});
    rewriter.replaceOp(op, sT);
    return success();
  }
};

/// The online softmax step on sT ([key][row]), a key at a time over the
/// rows' lanes: {m', l', alpha}.
SmallVector<Value> generalSoftmax(OpBuilder &b, Location loc, Value sT, Value m, Value l) {
  auto laneType = cast<VectorType>(m.getType());
  int64_t keys = cast<MemRefType>(sT.getType()).getDimSize(0);
  Value c0 = index(b, loc, 0), c1 = index(b, loc, 1);
  Value end = index(b, loc, keys);
  auto load = [&](Value j) {
    return vector::LoadOp::create(b, loc, laneType, sT, ValueRange{j, c0}).getResult();
  };
  // (runningMax: maxnum's NaN handling cost four instructions per key.)
  auto maxLoop = scf::ForOp::create(b, loc, c0, end, c1, ValueRange{m});
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(maxLoop.getBody());
    scf::YieldOp::create(b, loc,
                         ValueRange{runningMax(b, loc, load(maxLoop.getInductionVar()),
                                               maxLoop.getRegionIterArgs()[0])});
  }
  Value mNew = maxLoop.getResult(0);
  // e^(x - m) as 2^((x - m) log2 e): the difference first, so that an
  // unchanged max gives alpha exactly 1 and scores near -FLT_MAX (an
  // additive mask of the lowest float) never overflow m log2 e.
  Value mSafe = exponentBase(b, loc, mNew);
  Value alpha = cpuExp(b, loc, arith::SubFOp::create(b, loc, m, mSafe));
  auto probLoop = scf::ForOp::create(b, loc, c0, end, c1, ValueRange{splat(b, loc, laneType, 0)});
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(probLoop.getBody());
    Value j = probLoop.getInductionVar();
    Value p = cpuExp(b, loc, arith::SubFOp::create(b, loc, load(j), mSafe));
    vector::StoreOp::create(b, loc, p, sT, ValueRange{j, c0});
    scf::YieldOp::create(b, loc,
                         ValueRange{arith::AddFOp::create(b, loc, probLoop.getRegionIterArgs()[0], p)});
  }
  Value lNew = arith::AddFOp::create(b, loc, arith::MulFOp::create(b, loc, l, alpha),
                                     probLoop.getResult(0));
  return {mNew, lNew, alpha};
}

/// The packed query tile a score tile was computed for, where its k tile
/// was read in place (through attn.tile.apply), else null.
std::pair<TilePackedSpanOp, const InPlaceTile *> inPlaceScoresOf(Value scores,
                                                                  const InPlaceTiles &inPlace) {
  while (auto apply = scores.getDefiningOp<TileApplyOp>())
    scores = apply.getScores();
  auto qk = scores.getDefiningOp<TileQKOp>();
  if (!qk)
    return {};
  TilePackedSpanOp packed = packedQuery(qk.getQ());
  const InPlaceTile *k = packed ? inPlace.lookup(qk.getK()) : nullptr;
  return {k ? packed : TilePackedSpanOp(), k};
}

struct SoftmaxLowering : OpConversionPattern<TileSoftmaxOp> {
  SoftmaxLowering(const TypeConverter &converter, MLIRContext *ctx, const InPlaceTiles &inPlace)
      : OpConversionPattern(converter, ctx), inPlace(inPlace) {}
  const InPlaceTiles &inPlace;
  LogicalResult matchAndRewrite(TileSoftmaxOp op, OpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value sT = adaptor.getScores(), m = adaptor.getMax(), l = adaptor.getSum();
    auto [packed, k] = inPlaceScoresOf(op.getScores(), inPlace);
    auto general = [&] { return generalSoftmax(rewriter, loc, sT, m, l); };
    SmallVector<Value> r;
    if (!k) {
      r = general();
    } else {
      // A whole in-place tile (InPlaceTiles::takes made it 16 rows of key
      // groups of 4): by groups of 4 rows; else the general step.
      Value real = packedRealRows(rewriter, loc, packed, cast<MemRefType>(sT.getType()).getDimSize(1));
      Type lane = m.getType();
      r = ifWhole(
          rewriter, loc, *k, TypeRange{lane, lane, lane},
          [&] { return inPlaceSoftmax(rewriter, op, sT, m, l, real); }, general);
    }
    rewriter.replaceOp(op, {r[0], r[1], sT, r[2]});
    return success();
  }
};

} // namespace

void populateSoftmaxPatterns(const CPUTypeConverter &converter, RewritePatternSet &patterns,
                             const InPlaceTiles &inPlace) {
  patterns.add<SoftmaxLowering>(converter, patterns.getContext(), inPlace);
  patterns.add<SigmoidLowering>(converter, patterns.getContext());
}

} // namespace heed::cpu
