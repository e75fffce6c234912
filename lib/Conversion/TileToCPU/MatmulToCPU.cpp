// CPU patterns for the two products of the attention loop:
//   attn.tile.qk: S = scale * Q K^T with the head dim as the outer loop and
//     the N partial sums (one vector over the rows per key) in registers;
//   attn.tile.pv: acc = acc * alpha + P V, rows in pairs so that each V row
//     loaded serves two accumulators, the weights broadcast from memory.
#include "CPUPatterns.h"

#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace heed::attn;

namespace heed::cpu {

/// The sums of R vectors of R lanes (R a power of two) as one vector, lane j
/// the sum of vector j: a transposing tree of shuffles and adds, log2(R)
/// levels, R - 1 adds in all, where R separate horizontal reductions take
/// R log2(R) dependent steps.
Value sumAcross(OpBuilder &b, Location loc, ArrayRef<Value> vectors) {
  int64_t lanes = cast<VectorType>(vectors.front().getType()).getDimSize(0);
  SmallVector<Value> level(vectors);
  // Each vector holds lanes / width segments of `width` lanes, segment s
  // partial sums of one vector of the input; pairs halve the width.
  for (int64_t width = lanes; width > 1; width /= 2) {
    SmallVector<Value> next;
    for (size_t i = 0; i < level.size(); i += 2) {
      SmallVector<int64_t> lo, hi;
      for (int64_t from : {int64_t(0), lanes})
        for (int64_t seg = 0; seg < lanes; seg += width)
          for (int64_t k = 0; k < width / 2; ++k) {
            lo.push_back(from + seg + k);
            hi.push_back(from + seg + width / 2 + k);
          }
      Value a = level[i], c = level[i + 1];
      next.push_back(arith::AddFOp::create(b, loc, vector::ShuffleOp::create(b, loc, a, c, lo),
                                           vector::ShuffleOp::create(b, loc, a, c, hi)));
    }
    level = std::move(next);
  }
  return level.front();
}

namespace {

/// S^T for a packed GQA query tile (see packedQuery): per real row, the N
/// dot products along the head dim, R elements at a time, then one
/// reduction each. Decode has few real rows, so each key element costs a
/// load and one FMA per row instead of a broadcast FMA over every lane.
void packedScores(ConversionPatternRewriter &rewriter, Location loc, TilePackedSpanOp packed,
                  Value qRows, Value kS, Value sT, int64_t keys, int64_t rows, int64_t depth,
                  double scale) {
  auto chunkType = VectorType::get({rows}, rewriter.getF32Type());
  Value real = packedRealRows(rewriter, loc, packed, rows);
  auto rowLoop = scf::ForOp::create(rewriter, loc, index(rewriter, loc, 0), real,
                                    index(rewriter, loc, 1));
  OpBuilder::InsertionGuard guard(rewriter);
  rewriter.setInsertionPointToStart(rowLoop.getBody());
  Value r = rowLoop.getInductionVar();
  Value rowBase = arith::MulIOp::create(rewriter, loc, r, index(rewriter, loc, depth / rows));
  Value factor = arith::ConstantOp::create(rewriter, loc,
                                           rewriter.getF32FloatAttr(static_cast<float>(scale)));
  Value scaleVec = splat(rewriter, loc, chunkType, scale);
  // Keys in register-sized groups (16 of a 16-lane tile): a tile of more
  // keys would otherwise keep one accumulator per key.
  int64_t group = registerGroup(keys, rows);
  for (int64_t g0 = 0; g0 < keys; g0 += group) {
    SmallVector<Value> acc(group, splat(rewriter, loc, chunkType, 0));
    for (int64_t c = 0; c < depth / rows; ++c) {
      Value at = arith::AddIOp::create(rewriter, loc, rowBase, index(rewriter, loc, c));
      Value q = vector::LoadOp::create(rewriter, loc, chunkType, qRows,
                                       ValueRange{at, index(rewriter, loc, 0)});
      for (int64_t j = 0; j < group; ++j) {
        Value k = vector::LoadOp::create(
            rewriter, loc, chunkType, kS,
            ValueRange{index(rewriter, loc, g0 + j), index(rewriter, loc, c * rows)});
        acc[j] = vector::FMAOp::create(rewriter, loc, q, k, acc[j]);
      }
    }
    int64_t whole = llvm::isPowerOf2_64(rows) && rows > 1 ? group / rows * rows : 0;
    // R keys at a time: their R sums in one vector (sumAcross), one multiply.
    for (int64_t j0 = 0; j0 < whole; j0 += rows) {
      Value dots = arith::MulFOp::create(
          rewriter, loc, sumAcross(rewriter, loc, ArrayRef<Value>(acc).slice(j0, rows)), scaleVec);
      for (int64_t j = 0; j < rows; ++j)
        memref::StoreOp::create(rewriter, loc,
                                vector::ExtractOp::create(rewriter, loc, dots, ArrayRef<int64_t>{j}),
                                sT, ValueRange{index(rewriter, loc, g0 + j0 + j), r});
    }
    for (int64_t j = whole; j < group; ++j) {
      Value dot = vector::ReductionOp::create(rewriter, loc, vector::CombiningKind::ADD, acc[j]);
      memref::StoreOp::create(rewriter, loc, arith::MulFOp::create(rewriter, loc, dot, factor), sT,
                              ValueRange{index(rewriter, loc, g0 + j), r});
    }
  }
}

struct QKLowering : OpConversionPattern<TileQKOp> {
  QKLowering(const TypeConverter &converter, MLIRContext *ctx, const InPlaceTiles &inPlace)
      : OpConversionPattern(converter, ctx), inPlace(inPlace) {}
  const InPlaceTiles &inPlace;
  LogicalResult matchAndRewrite(TileQKOp op, OpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value qT = adaptor.getQ(), kS = adaptor.getK();
    auto sType = cast<MemRefType>(getTypeConverter()->convertType(op.getResult().getType()));
    int64_t keys = sType.getDimSize(0), rows = sType.getDimSize(1);
    int64_t depth = cast<MemRefType>(qT.getType()).getDimSize(0);
    auto laneType = VectorType::get({rows}, rewriter.getF32Type());
    Value sT = allocaAtEntry(rewriter, op, sType);
    if (TilePackedSpanOp packed = packedQuery(op.getQ())) {
      double scale = op.getScale().convertToDouble();
      auto staged = [&] {
        packedScores(rewriter, loc, packed, qT, kS, sT, keys, rows, depth, scale);
        return SmallVector<Value>();
      };
      if (const InPlaceTile *k = inPlace.lookup(op.getK()))
        ifWhole(rewriter, loc, *k, {}, [&] {
          inPlaceScores(rewriter, loc, packed, qT, *k, sT, keys, rows, depth, scale);
          return SmallVector<Value>();
        }, staged);
      else
        staged();
      rewriter.replaceOp(op, sT);
      return success();
    }
    // Keys in groups whose accumulators fit the register file with the
    // query vector and a broadcast: 16 AVX-512 registers of sums (16 keys
    // of a 16-row tile, 8 of a 32-row one). All the keys at once left LLVM
    // 32 accumulators for 32 registers: spills and a chain of register
    // copies per head-dim step, as many instructions as the FMAs.
    int64_t group = registerGroup(keys, rows);
    Value scale = splat(rewriter, loc, laneType, op.getScale().convertToDouble());
    for (int64_t j0 = 0; j0 < keys; j0 += group) {
      int64_t n = std::min(group, keys - j0);
      SmallVector<Value> zeros(n, splat(rewriter, loc, laneType, 0));
      auto dot = scf::ForOp::create(rewriter, loc, index(rewriter, loc, 0),
                                    index(rewriter, loc, depth), index(rewriter, loc, 1), zeros);
      {
        OpBuilder::InsertionGuard guard(rewriter);
        rewriter.setInsertionPointToStart(dot.getBody());
        Value d = dot.getInductionVar();
        Value qv = vector::LoadOp::create(rewriter, loc, laneType, qT,
                                          ValueRange{d, index(rewriter, loc, 0)});
        SmallVector<Value> next;
        for (int64_t j = 0; j < n; ++j) {
          Value k = memref::LoadOp::create(rewriter, loc, kS,
                                           ValueRange{index(rewriter, loc, j0 + j), d});
          next.push_back(vector::FMAOp::create(
              rewriter, loc, vector::BroadcastOp::create(rewriter, loc, laneType, k), qv,
              dot.getRegionIterArgs()[j]));
        }
        scf::YieldOp::create(rewriter, loc, next);
      }
      for (int64_t j = 0; j < n; ++j)
        vector::StoreOp::create(rewriter, loc,
                                arith::MulFOp::create(rewriter, loc, dot.getResult(j), scale), sT,
                                ValueRange{index(rewriter, loc, j0 + j), index(rewriter, loc, 0)});
    }
    rewriter.replaceOp(op, sT);
    return success();
  }
};

/// acc = acc * alpha + P V on staged V rows (vS), rows [0, end) in
/// register-sized groups (registerGroup: 4 rows at Dv = 64, 2 at 128), each
/// V row loaded serving the group; only the rows that can be real (a query
/// tile at the sequence's end, a decode step's one row): the last group's
/// rows past them are holes, with weights 0, never stored.
void stagedPV(OpBuilder &b, Location loc, Value pT, Value vS, Value acc, Value alpha, Value end,
              int64_t keys, int64_t rows, int64_t width) {
  auto rowType = VectorType::get({width}, b.getF32Type());
  Value c0 = index(b, loc, 0);
  int64_t group = registerGroup(rows, width);
  auto rowLoop = scf::ForOp::create(b, loc, c0, end, index(b, loc, group));
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(rowLoop.getBody());
  SmallVector<Value> rowIds, accRows;
  for (int64_t r = 0; r < group; ++r) {
    Value i = arith::AddIOp::create(b, loc, rowLoop.getInductionVar(), index(b, loc, r));
    rowIds.push_back(i);
    Value row = vector::LoadOp::create(b, loc, rowType, acc, ValueRange{i, c0});
    if (alpha) {
      Value a = vector::ExtractOp::create(b, loc, alpha, ArrayRef<OpFoldResult>{i});
      row = arith::MulFOp::create(b, loc, row, vector::BroadcastOp::create(b, loc, rowType, a));
    }
    accRows.push_back(row);
  }
  SmallVector<Value> sums = accumulateRows(
      b, loc, index(b, loc, keys), accRows,
      [&](Value j) { return vector::LoadOp::create(b, loc, rowType, vS, ValueRange{j, c0}); },
      [&](Value j, int64_t r) {
        return memref::LoadOp::create(b, loc, pT, ValueRange{j, rowIds[r]});
      });
  for (int64_t r = 0; r < group; ++r)
    vector::StoreOp::create(b, loc, sums[r], acc, ValueRange{rowIds[r], c0});
}

struct PVLowering : OpConversionPattern<TilePVOp> {
  PVLowering(const TypeConverter &converter, MLIRContext *ctx, const InPlaceTiles &inPlace)
      : OpConversionPattern(converter, ctx), inPlace(inPlace) {}
  const InPlaceTiles &inPlace;
  LogicalResult matchAndRewrite(TilePVOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value pT = adaptor.getProbs().front(), vS = adaptor.getV().front();
    Value acc = adaptor.getAcc().front();
    Value alpha = adaptor.getAlpha().empty() ? Value() : adaptor.getAlpha().front();
    auto pType = cast<MemRefType>(pT.getType());
    int64_t keys = pType.getDimSize(0), rows = pType.getDimSize(1);
    int64_t width = cast<MemRefType>(acc.getType()).getDimSize(1);
    Value end = adaptor.getRows().empty() ? index(rewriter, loc, rows) : Span(adaptor.getRows()).lanes;
    auto staged = [&] {
      stagedPV(rewriter, loc, pT, vS, acc, alpha, end, keys, rows, width);
      return SmallVector<Value>();
    };
    if (const InPlaceTile *v = inPlace.lookup(op.getV()))
      ifWhole(rewriter, loc, *v, {}, [&] {
        inPlacePV(rewriter, op, pT, *v, acc, alpha, end, keys, width);
        return SmallVector<Value>();
      }, staged);
    else
      staged();
    rewriter.replaceOp(op, acc);
    return success();
  }
};

} // namespace

Value packedRealRows(ConversionPatternRewriter &rewriter, Location loc, TilePackedSpanOp packed,
                     int64_t rows) {
  Value seq = rewriter.getRemappedValue(packed.getSeq());
  Value total = arith::MulIOp::create(rewriter, loc, seq, rewriter.getRemappedValue(packed.getGroup()));
  Value first = arith::MulIOp::create(rewriter, loc, rewriter.getRemappedValue(packed.getTile()),
                                      index(rewriter, loc, rows));
  return arith::MinUIOp::create(rewriter, loc, index(rewriter, loc, rows),
                                arith::SubIOp::create(rewriter, loc, total, first));
}

TilePackedSpanOp packedQuery(Value qTile) {
  auto load = qTile.getDefiningOp<TileLoadOp>();
  if (!load)
    return {};
  auto type = cast<TileType>(load.getResult().getType());
  auto packed = load.getSpan().getDefiningOp<TilePackedSpanOp>();
  if (!packed || type.getRole() != TileRole::Q || type.getCols() % type.getRows() != 0)
    return {};
  return packed;
}

void populateMatmulPatterns(const CPUTypeConverter &converter, RewritePatternSet &patterns,
                            const InPlaceTiles &inPlace) {
  patterns.add<QKLowering, PVLowering>(converter, patterns.getContext(), inPlace);
}

} // namespace heed::cpu
