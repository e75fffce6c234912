// The products of a packed decode tile on whole bf16 K/V tiles read in place,
// on AVX-512 BF16 dot products (InPlaceTiles in CPUPatterns.h; docs/decode.md,
// "Decode bandwidth"). The design is heed-bench-decode-roofline's
// (bench/decode_roofline.cpp):
//   S^T = scale Q K^T: 4 query rows x 4 keys of vdpbf16ps sums over the head
//     dim (Q's rows rounded back to the bf16 they were stored as), reduced
//     by one transposing tree into the score tile's [key][row] lanes;
//   acc = acc * alpha + P V: keys in pairs, the two V rows interleaved so
//     that a dot product's pair is (v[k][d], v[k+1][d]) and P's pair for a
//     row broadcast from a tile of interleaved bf16 weights; 4 rows x 64
//     value dims of accumulators at a time;
// the K and V rows kPrefetchKeys ahead prefetched between the dot products
// (4 K rows per 4-key group, 2 V rows per key pair), not in a burst.
#include "CPUPatterns.h"

#include "../TileCommon/Normalize.h"

#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/X86Vector/X86VectorDialect.h"

using namespace mlir;
using namespace heed::attn;

namespace heed::cpu {
namespace {

/// Rows and keys per group of dot products (4 x 4 sums: 16 registers).
constexpr int64_t kRowGroup = 4, kKeyGroup = 4;
/// The lanes of a packed tile this lowering takes (one 16-lane f32 vector
/// per score column, converted to 16 bf16 at once).
constexpr int64_t kLanes = 16;

VectorType f32s(OpBuilder &b, int64_t n) { return VectorType::get({n}, b.getF32Type()); }
VectorType bf16s(OpBuilder &b, int64_t n) { return VectorType::get({n}, b.getBF16Type()); }

/// 16 f32 -> 16 bf16 (vcvtneps2bf16, round to nearest even).
Value toBF16(OpBuilder &b, Location loc, Value x) {
  return x86vector::CvtPackedF32ToBF16Op::create(b, loc, bf16s(b, kLanes), x);
}

/// The interleaving of two vectors of n elements: a[0], b[0], a[1], b[1], ...
/// of elements [from, from + count) of each.
SmallVector<int64_t> interleave(int64_t n, int64_t from, int64_t count) {
  SmallVector<int64_t> mask;
  for (int64_t i = from; i < from + count; ++i) {
    mask.push_back(i);
    mask.push_back(n + i);
  }
  return mask;
}

Value dot(OpBuilder &b, Location loc, Value acc, Value x, Value y) {
  return x86vector::DotBF16Op::create(b, loc, acc.getType(), acc, x, y);
}

/// Emits `body` under `if (cond)`.
void emitIf(OpBuilder &b, Location loc, Value cond, llvm::function_ref<void()> body) {
  auto ifOp = scf::IfOp::create(b, loc, cond, /*withElseRegion=*/false);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&ifOp.getThenRegion().front());
  body();
}

} // namespace

bool InPlaceTiles::takes(TileLoadOp load) const {
  if (!bf16Dot || load.getResult().use_empty())
    return false;
  auto type = cast<TileType>(load.getResult().getType());
  if (!type.getElementType().isBF16() || type.getCols() % 64 || type.getRows() % kKeyGroup)
    return false;
  if (type.getRole() == TileRole::K) {
    return llvm::all_of(load.getResult().getUsers(), [&](Operation *user) {
      auto qk = dyn_cast<TileQKOp>(user);
      if (!qk || qk.getK() != load.getResult() || !packedQuery(qk.getQ()))
        return false;
      auto q = cast<TileType>(qk.getQ().getType());
      return q.getElementType().isBF16() && q.getRows() == kLanes;
    });
  }
  if (type.getRole() != TileRole::V)
    return false;
  // A v tile of a loop whose k tile is read in place (a packed decode loop).
  bool packedLoop = llvm::any_of(load.getSpan().getUsers(), [&](Operation *user) {
    auto k = dyn_cast<TileLoadOp>(user);
    return k && cast<TileType>(k.getResult().getType()).getRole() == TileRole::K && takes(k);
  });
  return packedLoop && llvm::all_of(load.getResult().getUsers(), [&](Operation *user) {
           auto pv = dyn_cast<TilePVOp>(user);
           return pv && pv.getV() == load.getResult() &&
                  cast<TileType>(pv.getProbs().getType()).getRows() == kLanes;
         });
}

SmallVector<Value> ifWhole(OpBuilder &b, Location loc, const InPlaceTile &tile, TypeRange types,
                           function_ref<SmallVector<Value>()> inPlace,
                           function_ref<SmallVector<Value>()> staged) {
  auto ifOp = scf::IfOp::create(b, loc, types, tile.whole, /*withElseRegion=*/true);
  OpBuilder::InsertionGuard guard(b);
  for (auto [region, body] : {std::pair(&ifOp.getThenRegion(), inPlace),
                              std::pair(&ifOp.getElseRegion(), staged)}) {
    Block &block = region->front();
    // Without results the builder made the (empty) terminator.
    if (types.empty())
      b.setInsertionPoint(block.getTerminator());
    else
      b.setInsertionPointToEnd(&block);
    SmallVector<Value> results = body();
    if (!types.empty())
      scf::YieldOp::create(b, loc, results);
  }
  return SmallVector<Value>(ifOp.getResults());
}

const InPlaceTile *InPlaceTiles::lookup(Value tile) const {
  auto it = tiles.find(tile.getDefiningOp());
  return it == tiles.end() ? nullptr : &it->second;
}

void inPlaceScores(ConversionPatternRewriter &rewriter, Location loc, TilePackedSpanOp packed,
                   Value qRows, const InPlaceTile &k, Value sT, int64_t keys, int64_t rows,
                   int64_t depth, double scale) {
  OpBuilder &b = rewriter;
  // The real rows in groups of 4 (rows past them are zero rows of the
  // query tile: their scores are 0).
  Value real = packedRealRows(rewriter, loc, packed, rows);
  // The group's query rows as bf16 (exact: they were stored as bf16).
  Value qb = allocaAtEntry(b, packed, MemRefType::get({kRowGroup, depth}, b.getBF16Type()));
  auto rowLoop = scf::ForOp::create(b, loc, index(b, loc, 0), real, index(b, loc, kRowGroup));
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(rowLoop.getBody());
  Value r0 = rowLoop.getInductionVar();
  Value firstGroup =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, r0, index(b, loc, 0));
  // Row r's chunk c (of R elements) is at [r * D/R + c, 0] (packedQuery).
  for (int64_t r = 0; r < kRowGroup; ++r) {
    Value row = arith::MulIOp::create(b, loc, arith::AddIOp::create(b, loc, r0, index(b, loc, r)),
                                      index(b, loc, depth / rows));
    for (int64_t c = 0; c < depth / rows; ++c) {
      Value x = vector::LoadOp::create(b, loc, f32s(b, rows), qRows,
                                       ValueRange{arith::AddIOp::create(b, loc, row, index(b, loc, c)),
                                                  index(b, loc, 0)});
      vector::StoreOp::create(b, loc, toBF16(b, loc, x), qb,
                              ValueRange{index(b, loc, r), index(b, loc, c * rows)});
    }
  }
  Value scaleVec = splat(b, loc, f32s(b, kLanes), scale);
  // The key groups as a loop, not unrolled: unrolled, LLVM issued all the
  // tile's K loads up front and spilled them to the stack (a staging copy
  // by another name: a quarter of the kernel's samples).
  auto groups = scf::ForOp::create(b, loc, index(b, loc, 0), index(b, loc, keys),
                                   index(b, loc, kKeyGroup));
  b.setInsertionPointToStart(groups.getBody());
  Value k0 = groups.getInductionVar();
  auto key = [&](int64_t j) { return arith::AddIOp::create(b, loc, k0, index(b, loc, j)); };
  emitIf(b, loc, firstGroup, [&] {
    for (int64_t j = 0; j < kKeyGroup; ++j)
      k.prefetchAhead(b, loc, key(j));
  });
  SmallVector<Value> acc(kKeyGroup * kRowGroup, splat(b, loc, f32s(b, kLanes), 0));
  for (int64_t c = 0; c < depth; c += 32) {
    SmallVector<Value> q;
    for (int64_t r = 0; r < kRowGroup; ++r)
      q.push_back(vector::LoadOp::create(b, loc, bf16s(b, 32), qb,
                                         ValueRange{index(b, loc, r), index(b, loc, c)}));
    for (int64_t j = 0; j < kKeyGroup; ++j) {
      Value row = vector::LoadOp::create(b, loc, bf16s(b, 32), k.tensor, k.at(b, loc, key(j), c));
      for (int64_t r = 0; r < kRowGroup; ++r)
        acc[j * kRowGroup + r] = dot(b, loc, acc[j * kRowGroup + r], q[r], row);
    }
  }
  // Lane j * 4 + r: key k0 + j, row r0 + r.
  Value dots = arith::MulFOp::create(b, loc, sumAcross(b, loc, acc), scaleVec);
  for (int64_t j = 0; j < kKeyGroup; ++j) {
    Value part = vector::ExtractStridedSliceOp::create(
        b, loc, dots, ArrayRef<int64_t>{j * kRowGroup}, ArrayRef<int64_t>{kRowGroup},
        ArrayRef<int64_t>{1});
    vector::StoreOp::create(b, loc, part, sT, ValueRange{key(j), r0});
  }
}

void inPlacePV(ConversionPatternRewriter &rewriter, Operation *op, Value pT, const InPlaceTile &v,
               Value acc, Value alpha, Value realRows, int64_t keys, int64_t width) {
  OpBuilder &b = rewriter;
  Location loc = op->getLoc();
  Value c0 = index(b, loc, 0);
  // P's key pairs: pairs[j][r] = (P[2j][r], P[2j + 1][r]) as bf16 in one i32.
  Value pairs = allocaAtEntry(b, op, MemRefType::get({keys / 2, kLanes}, b.getI32Type()));
  for (int64_t j = 0; j < keys; j += 2) {
    Value a = toBF16(b, loc, vector::LoadOp::create(b, loc, f32s(b, kLanes), pT,
                                                    ValueRange{index(b, loc, j), c0}));
    Value c = toBF16(b, loc, vector::LoadOp::create(b, loc, f32s(b, kLanes), pT,
                                                    ValueRange{index(b, loc, j + 1), c0}));
    Value both = vector::ShuffleOp::create(b, loc, a, c, interleave(kLanes, 0, kLanes));
    vector::StoreOp::create(
        b, loc, vector::BitCastOp::create(b, loc, VectorType::get({kLanes}, b.getI32Type()), both),
        pairs, ValueRange{index(b, loc, j / 2), c0});
  }
  auto rowLoop = scf::ForOp::create(b, loc, c0, realRows, index(b, loc, kRowGroup));
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(rowLoop.getBody());
  Value r0 = rowLoop.getInductionVar();
  Value firstGroup = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, r0, c0);
  constexpr int64_t kSpan = 64; // value dims per pass: 4 rows x 4 vectors of sums
  for (int64_t d0 = 0; d0 < width; d0 += kSpan) {
    SmallVector<Value> rowIds, sums;
    for (int64_t r = 0; r < kRowGroup; ++r) {
      Value i = arith::AddIOp::create(b, loc, r0, index(b, loc, r));
      rowIds.push_back(i);
      Value factor = alpha ? vector::BroadcastOp::create(
                                 b, loc, f32s(b, kLanes),
                                 vector::ExtractOp::create(b, loc, alpha, ArrayRef<OpFoldResult>{i}))
                           : Value();
      for (int64_t d = d0; d < d0 + kSpan; d += kLanes) {
        Value x = vector::LoadOp::create(b, loc, f32s(b, kLanes), acc,
                                         ValueRange{i, index(b, loc, d)});
        sums.push_back(factor ? arith::MulFOp::create(b, loc, x, factor).getResult() : x);
      }
    }
    auto keyLoop = scf::ForOp::create(b, loc, c0, index(b, loc, keys / 2), index(b, loc, 1), sums);
    {
      OpBuilder::InsertionGuard inner(b);
      b.setInsertionPointToStart(keyLoop.getBody());
      Value pair = keyLoop.getInductionVar();
      Value k = arith::MulIOp::create(b, loc, pair, index(b, loc, 2));
      Value k1 = arith::AddIOp::create(b, loc, k, index(b, loc, 1));
      if (d0 == 0)
        emitIf(b, loc, firstGroup, [&] {
          v.prefetchAhead(b, loc, k);
          v.prefetchAhead(b, loc, k1);
        });
      SmallVector<Value> weights;
      for (int64_t r = 0; r < kRowGroup; ++r) {
        Value w = memref::LoadOp::create(b, loc, pairs, ValueRange{pair, rowIds[r]});
        weights.push_back(vector::BitCastOp::create(
            b, loc, bf16s(b, 32),
            vector::BroadcastOp::create(b, loc, VectorType::get({kLanes}, b.getI32Type()), w)));
      }
      SmallVector<Value> next(keyLoop.getRegionIterArgs());
      for (int64_t d = d0; d < d0 + kSpan; d += 32) {
        Value a = vector::LoadOp::create(b, loc, bf16s(b, 32), v.tensor, v.at(b, loc, k, d));
        Value c = vector::LoadOp::create(b, loc, bf16s(b, 32), v.tensor, v.at(b, loc, k1, d));
        Value halves[2] = {vector::ShuffleOp::create(b, loc, a, c, interleave(32, 0, 16)),
                           vector::ShuffleOp::create(b, loc, a, c, interleave(32, 16, 16))};
        for (int64_t r = 0; r < kRowGroup; ++r)
          for (int64_t h = 0; h < 2; ++h) {
            int64_t at = r * (kSpan / kLanes) + (d - d0) / kLanes + h;
            next[at] = dot(b, loc, next[at], halves[h], weights[r]);
          }
      }
      scf::YieldOp::create(b, loc, next);
    }
    for (int64_t r = 0; r < kRowGroup; ++r)
      for (int64_t d = d0; d < d0 + kSpan; d += kLanes)
        vector::StoreOp::create(b, loc, keyLoop.getResult(r * (kSpan / kLanes) + (d - d0) / kLanes),
                                acc, ValueRange{rowIds[r], index(b, loc, d)});
  }
}


SmallVector<Value> inPlaceSoftmax(ConversionPatternRewriter &rewriter, Operation *op, Value sT,
                                  Value m, Value l, Value realRows) {
  OpBuilder &b = rewriter;
  Location loc = op->getLoc();
  int64_t keys = cast<MemRefType>(sT.getType()).getDimSize(0);
  Value c0 = index(b, loc, 0);
  // The statistics go through the stack: a row group's 4 lanes at a
  // dynamic offset.
  auto statType = MemRefType::get({kLanes}, b.getF32Type());
  Value mBuf = allocaAtEntry(b, op, statType), lBuf = allocaAtEntry(b, op, statType),
        aBuf = allocaAtEntry(b, op, statType);
  vector::StoreOp::create(b, loc, m, mBuf, ValueRange{c0});
  vector::StoreOp::create(b, loc, l, lBuf, ValueRange{c0});
  vector::StoreOp::create(b, loc, splat(b, loc, f32s(b, kLanes), 1), aBuf, ValueRange{c0});
  auto rowLoop = scf::ForOp::create(b, loc, c0, realRows, index(b, loc, kRowGroup));
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(rowLoop.getBody());
    Value r0 = rowLoop.getInductionVar();
    auto vec = [&](int64_t n) { return f32s(b, n); };
    auto concat = [&](Value x, Value y) {
      int64_t n = cast<VectorType>(x.getType()).getDimSize(0);
      SmallVector<int64_t> mask;
      for (int64_t i = 0; i < 2 * n; ++i)
        mask.push_back(i);
      return vector::ShuffleOp::create(b, loc, x, y, mask).getResult();
    };
    // Group g: lane 4 j + r holds the score of key 4 g + j, row r0 + r.
    SmallVector<Value> groups;
    for (int64_t g = 0; g < keys / kKeyGroup; ++g) {
      SmallVector<Value> parts;
      for (int64_t j = 0; j < kKeyGroup; ++j)
        parts.push_back(vector::LoadOp::create(b, loc, vec(kRowGroup), sT,
                                               ValueRange{index(b, loc, 4 * g + j), r0}));
      groups.push_back(concat(concat(parts[0], parts[1]), concat(parts[2], parts[3])));
    }
    auto maxOf = [&](Value x, Value y) { return runningMax(b, loc, x, y); };
    // Lane 4 j + r of the result combines lanes r, 4 + r, 8 + r, 12 + r.
    auto acrossKeys = [&](Value x, function_ref<Value(Value, Value)> combine) {
      SmallVector<int64_t> swap8, swap4;
      for (int64_t i = 0; i < kLanes; ++i) {
        swap8.push_back((i + 8) % kLanes);
        swap4.push_back(i / 8 * 8 + (i % 8 + 4) % 8);
      }
      x = combine(x, vector::ShuffleOp::create(b, loc, x, x, swap8));
      return combine(x, vector::ShuffleOp::create(b, loc, x, x, swap4));
    };
    Value top = groups[0];
    for (size_t g = 1; g < groups.size(); ++g)
      top = maxOf(groups[g], top);
    top = acrossKeys(top, maxOf);
    // The rows' statistics repeated in the four key slots.
    auto spread = [&](Value buf) {
      Value four = vector::LoadOp::create(b, loc, vec(kRowGroup), buf, ValueRange{r0});
      return concat(concat(four, four), concat(four, four));
    };
    Value mOld = spread(mBuf), lOld = spread(lBuf);
    Value mNew = maxOf(top, mOld);
    // 2^((x - m) log2 e), as the general step (softmaxStep) has it.
    Value base = exponentBase(b, loc, mNew);
    Value alpha = cpuExp(b, loc, arith::SubFOp::create(b, loc, mOld, base));
    Value sum = splat(b, loc, vec(kLanes), 0);
    for (auto [g, x] : llvm::enumerate(groups)) {
      Value p = cpuExp(b, loc, arith::SubFOp::create(b, loc, x, base));
      sum = arith::AddFOp::create(b, loc, sum, p);
      for (int64_t j = 0; j < kKeyGroup; ++j)
        vector::StoreOp::create(
            b, loc,
            vector::ExtractStridedSliceOp::create(b, loc, p, ArrayRef<int64_t>{j * kRowGroup},
                                                  ArrayRef<int64_t>{kRowGroup},
                                                  ArrayRef<int64_t>{1}),
            sT, ValueRange{index(b, loc, 4 * int64_t(g) + j), r0});
    }
    sum = acrossKeys(sum, [&](Value x, Value y) -> Value { return arith::AddFOp::create(b, loc, x, y); });
    Value lNew = arith::AddFOp::create(b, loc, arith::MulFOp::create(b, loc, lOld, alpha), sum);
    auto firstFour = [&](Value x) {
      return vector::ExtractStridedSliceOp::create(b, loc, x, ArrayRef<int64_t>{0},
                                                   ArrayRef<int64_t>{kRowGroup},
                                                   ArrayRef<int64_t>{1});
    };
    vector::StoreOp::create(b, loc, firstFour(mNew), mBuf, ValueRange{r0});
    vector::StoreOp::create(b, loc, firstFour(lNew), lBuf, ValueRange{r0});
    vector::StoreOp::create(b, loc, firstFour(alpha), aBuf, ValueRange{r0});
  }
  auto load = [&](Value buf) {
    return vector::LoadOp::create(b, loc, f32s(b, kLanes), buf, ValueRange{c0}).getResult();
  };
  return {load(mBuf), load(lBuf), load(aBuf)};
}

} // namespace heed::cpu
