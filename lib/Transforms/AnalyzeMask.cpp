// --attn-analyze-mask: derives, from a variant's mask region, a `blocks`
// region that classifies any box of (q, kv) pairs as EMPTY, FULL or PARTIAL.
//
// The derivation is an abstract interpretation of the mask over intervals:
// every integer value becomes [lo, hi] (computed at run time from the box
// corners), every boolean becomes (mayBeTrue, mayBeFalse). Each abstract op
// over-approximates the set of values its concrete op can produce on the box,
// so a box is claimed EMPTY only if the mask is false on all of it, FULL only
// if true on all of it. Values the analysis cannot bound (buffer reads,
// floats, unknown ops) are "top", which makes every comparison on them
// unknown: the box is then PARTIAL, never wrongly EMPTY or FULL.
//
// The run-time sizes (attn.shape: B, H, Hkv, Sq, Skv) are read in the blocks
// region too, where each is one value of the launch: an exact interval.
//
// For masks that are comparisons of sums and differences of q, kv and
// constants (causal, windows, prefix-LM, sinks, bands and their && || !),
// interval arithmetic on a box is exact, so the classification is exact.
//
// i64 arithmetic wraps (docs/spec-language.md, "Semantics"), and a wrapped
// value can lie anywhere: an interval holds only where no value of the box
// overflows. Each bound the blocks region computes with + - * (and negation,
// abs, division by -1) comes with an i1 saying that neither end overflowed,
// found with compare-and-xor checks or a widening multiply; where one did,
// the interval is not `known` and every comparison on it is unknown (PARTIAL).
// The check is exact for the ends, and the ends bound the box: a sum, a
// difference or a product of intervals overflows somewhere in the box only
// if it does at an end (a corner for products).
//
// Patch tiling: where --attn-choose-tiling found that the mask reads q and kv
// only through floor divisions and remainders by constants s_0 > s_1 > ...
// (each dividing the one before), tokens lie on a grid, token = sum_k d_k *
// s_k with 0 <= d_k < s_{k-1} / s_k for k > 0 (the variant's `grid`). A box
// is then a Cartesian product of digit intervals, with corner tokens q_lo and
// q_hi. q and kv carry their digits through the interpretation: t floordiv
// s_j keeps the digits up to j, t - floordiv(t, s_j) * s_j those after j,
// both exactly; any other use sees the hull [q_lo, q_hi]. A dilated axis
// (read as both i floordiv d and i mod d) becomes two digits, and patches
// keep one residue of it, so i mod d is exact on a patch.
#include "heed/Transforms/Passes.h"

#include "dialects/attn/AttnOps.h"

#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Matchers.h"
#include "llvm/ADT/DenseMap.h"

#include <limits>
#include <optional>
#include <tuple>

namespace heed {
#define GEN_PASS_DEF_ATTNANALYZEMASK
#include "heed/Transforms/Passes.h.inc"
} // namespace heed

using namespace mlir;
using heed::attn::VariantOp;

namespace {

/// An integer interval [lo, hi] (i64 values), or top (no bound known). An
/// interval read from a buffer may be known only at run time: then `known`
/// (i1) says whether [lo, hi] holds, and `data` marks it data-dependent.
struct AbsInt {
  Value lo, hi;
  bool top = true;
  std::optional<int64_t> constant;
  Value known;
  bool data = false;
};

/// A value known to be sum_k [lo_k, hi_k] * strides[k] where every digit
/// after the first stays below strides[k-1] / strides[k] (a token of a grid,
/// or its row, or its column).
struct Digits {
  SmallVector<int64_t> strides;
  SmallVector<Value> lo, hi;
};

/// A boolean: may it be true, may it be false (i1 values).
struct AbsBool {
  Value mayTrue, mayFalse;
  bool fromTop = false; ///< depends on a value the analysis could not bound
};

class MaskInterpreter {
public:
  MaskInterpreter(OpBuilder &b, Location loc, ArrayRef<unsigned> summarized)
      : b(b), loc(loc), summarized(summarized) {}

  /// Builds the blocks region body; returns whether the result depends on a
  /// value the analysis could not bound. With `strides` (patch tiling), q and
  /// kv range over the Cartesian boxes of grid digits between the corners.
  bool run(Block &mask, Block &blocks, ArrayRef<int64_t> strides = {});

private:
  Value i64(int64_t v) { return arith::ConstantIntOp::create(b, loc, v, 64); }
  Value i1(bool v) { return arith::ConstantIntOp::create(b, loc, v, 1); }
  Value cmp(arith::CmpIPredicate p, Value x, Value y) {
    return arith::CmpIOp::create(b, loc, p, x, y);
  }
  Value min(Value x, Value y) { return arith::MinSIOp::create(b, loc, x, y); }
  Value max(Value x, Value y) { return arith::MaxSIOp::create(b, loc, x, y); }
  Value andI(Value x, Value y) { return arith::AndIOp::create(b, loc, x, y); }
  Value orI(Value x, Value y) { return arith::OrIOp::create(b, loc, x, y); }
  Value notI(Value x) { return arith::XOrIOp::create(b, loc, x, i1(true)); }
  Value sel(Value c, Value x, Value y) { return arith::SelectOp::create(b, loc, c, x, y); }

  /// x + y, x - y and x * y, each with an i1 that holds where the result did
  /// not overflow (wrapped).
  std::pair<Value, Value> addChecked(Value x, Value y) {
    // Overflow iff the sum's sign differs from both operands'.
    Value s = arith::AddIOp::create(b, loc, x, y);
    Value xs = arith::XOrIOp::create(b, loc, x, s);
    Value signs = arith::AndIOp::create(b, loc, xs, arith::XOrIOp::create(b, loc, y, s));
    return {s, cmp(arith::CmpIPredicate::sge, signs, i64(0))};
  }
  std::pair<Value, Value> subChecked(Value x, Value y) {
    // Overflow iff the operands' signs differ and the result's differs from x's.
    Value d = arith::SubIOp::create(b, loc, x, y);
    Value xy = arith::XOrIOp::create(b, loc, x, y);
    Value signs = arith::AndIOp::create(b, loc, xy, arith::XOrIOp::create(b, loc, x, d));
    return {d, cmp(arith::CmpIPredicate::sge, signs, i64(0))};
  }
  std::pair<Value, Value> mulChecked(Value x, Value y) {
    // The 128-bit product fits in 64 bits iff its high half is the sign of the low.
    auto m = arith::MulSIExtendedOp::create(b, loc, x, y);
    Value sign = arith::ShRSIOp::create(b, loc, m.getLow(), i64(63));
    return {m.getLow(), cmp(arith::CmpIPredicate::eq, m.getHigh(), sign)};
  }
  /// x * c for x in [lo, hi], and whether no product overflowed: the bounds
  /// compared with the range of x whose products fit (constants here).
  std::tuple<Value, Value, Value> mulByConstant(const AbsInt &x, int64_t c);

  AbsInt top() { return AbsInt{}; }
  AbsInt interval(Value lo, Value hi) { return AbsInt{lo, hi, false, std::nullopt, {}, false}; }
  /// `r` with the run-time validity and data dependence of `x` and `y`.
  AbsInt inherit(AbsInt r, const AbsInt &x, const AbsInt &y) {
    r.known = both(x.known, y.known);
    r.data = x.data || y.data;
    return r;
  }
  /// `r` from `x` and `y` (see inherit), holding only where `ok`.
  AbsInt checked(AbsInt r, Value ok, const AbsInt &x, const AbsInt &y) {
    r = inherit(r, x, y);
    r.known = both(r.known, ok);
    return r;
  }
  Value both(Value a, Value c) {
    if (!a || a == c)
      return c;
    if (!c)
      return a;
    return andI(a, c);
  }
  /// mayX is forced true where the interval is not known.
  Value orUnknown(Value known, Value may) { return known ? orI(notI(known), may) : may; }
  AbsInt load(heed::attn::LoadOp load);
  AbsBool unknown(bool fromTop) { return AbsBool{i1(true), i1(true), fromTop}; }

  AbsInt intOf(Value v) {
    auto it = ints.find(v);
    return it == ints.end() ? top() : it->second;
  }
  AbsBool boolOf(Value v) {
    auto it = bools.find(v);
    return it == bools.end() ? unknown(true) : it->second;
  }

  void visit(Operation &op);
  /// Digits of a floordiv or remainder by a stride of a value with digits.
  std::optional<Digits> visitDigits(Operation &op);
  /// The digits of corner tokens lo and hi of a box on a grid.
  Digits decode(Value lo, Value hi, ArrayRef<int64_t> strides);
  AbsInt visitInt(Operation &op);
  AbsBool visitBool(Operation &op);
  AbsBool compare(arith::CmpIPredicate p, const AbsInt &x, const AbsInt &y);

  OpBuilder &b;
  Location loc;
  ArrayRef<unsigned> summarized;
  llvm::DenseMap<Value, AbsInt> ints;
  llvm::DenseMap<Value, AbsBool> bools;
  llvm::DenseMap<Value, Digits> digits;
  llvm::DenseMap<Value, Value> bufferArgs; ///< mask buffer arg -> blocks buffer arg
  llvm::DenseMap<Value, Value> summaryArgs; ///< mask buffer arg -> its summary
  /// [min, max] of a summarized buffer over entries [lo, hi].
  std::pair<Value, Value> summaryRange(Value summary, Value lo, Value hi);
  /// [min, max] of `buffer` (at `row` if rank 2) over entries [lo, hi] of the
  /// row, exactly: `base` is where the row starts in the summary.
  std::pair<Value, Value> exactRange(Value buffer, Value row, Value summary, Value base,
                                     Value lo, Value hi);
};

bool isIntLike(Type t) { return t.isIndex() || (t.isInteger() && !t.isInteger(1)); }

AbsBool MaskInterpreter::compare(arith::CmpIPredicate p, const AbsInt &x, const AbsInt &y) {
  using P = arith::CmpIPredicate;
  if (x.top || y.top)
    return unknown(true);
  Value known = both(x.known, y.known);
  bool data = x.data || y.data;
  auto make = [&](Value mayTrue, Value mayFalse) {
    return AbsBool{orUnknown(known, mayTrue), orUnknown(known, mayFalse), data};
  };
  switch (p) {
  case P::slt: return make(cmp(P::slt, x.lo, y.hi), cmp(P::sge, x.hi, y.lo));
  case P::sle: return make(cmp(P::sle, x.lo, y.hi), cmp(P::sgt, x.hi, y.lo));
  case P::sgt: return make(cmp(P::sgt, x.hi, y.lo), cmp(P::sle, x.lo, y.hi));
  case P::sge: return make(cmp(P::sge, x.hi, y.lo), cmp(P::slt, x.lo, y.hi));
  case P::eq:
  case P::ne: {
    Value overlap = andI(cmp(P::sle, x.lo, y.hi), cmp(P::sle, y.lo, x.hi));
    Value single = andI(andI(cmp(P::eq, x.lo, x.hi), cmp(P::eq, y.lo, y.hi)),
                        cmp(P::eq, x.lo, y.lo));
    if (p == P::eq)
      return make(overlap, notI(single));
    return make(notI(single), overlap);
  }
  default:
    return unknown(false); // unsigned comparisons: not reasoned about
  }
}

std::pair<Value, Value> MaskInterpreter::summaryRange(Value summary, Value lo, Value hi) {
  // Sparse-table query: two overlapping power-of-two runs of blocks.
  Value g = i64(VariantOp::kSummaryBlock);
  Value blo = arith::DivSIOp::create(b, loc, lo, g);
  Value bhi = arith::DivSIOp::create(b, loc, hi, g);
  Value len = arith::AddIOp::create(b, loc, arith::SubIOp::create(b, loc, bhi, blo), i64(1));
  Value level = arith::SubIOp::create(b, loc, i64(63), math::CountLeadingZerosOp::create(b, loc, len));
  Value span = arith::ShLIOp::create(b, loc, i64(1), level);
  Value second = arith::AddIOp::create(b, loc, arith::SubIOp::create(b, loc, bhi, span), i64(1));
  auto at = [&](Value v) { return arith::IndexCastOp::create(b, loc, b.getIndexType(), v).getResult(); };
  auto entry = [&](Value block, int64_t which) {
    Value c = arith::ConstantIndexOp::create(b, loc, which);
    return memref::LoadOp::create(b, loc, summary, ValueRange{at(level), at(block), c}).getResult();
  };
  return {min(entry(blo, 0), entry(second, 0)), max(entry(blo, 1), entry(second, 1))};
}

std::pair<Value, Value> MaskInterpreter::exactRange(Value buffer, Value row, Value summary,
                                                    Value base, Value lo, Value hi) {
  // The whole summary blocks inside [lo, hi] from the table; the entries
  // before and after them (fewer than a block at each end: a query tile
  // shifted by Skv - Sq is not block-aligned) read one by one.
  Value g = i64(VariantOp::kSummaryBlock);
  Value one = i64(1);
  Value firstFull = arith::CeilDivSIOp::create(b, loc, lo, g);
  Value endFull = arith::FloorDivSIOp::create(b, loc, arith::AddIOp::create(b, loc, hi, one), g);
  Value hasFull = cmp(arith::CmpIPredicate::slt, firstFull, endFull);
  Value fullLo = arith::MulIOp::create(b, loc, firstFull, g);
  Value fullEnd = arith::MulIOp::create(b, loc, endFull, g);
  Value headEnd = sel(hasFull, fullLo, arith::AddIOp::create(b, loc, hi, one));
  Value tailLo = sel(hasFull, fullEnd, headEnd);
  Type t64 = b.getI64Type();
  Type elem = cast<MemRefType>(buffer.getType()).getElementType();
  bool narrow = elem.isSignlessInteger() && elem.getIntOrFloatBitWidth() > 1 &&
                elem.getIntOrFloatBitWidth() < 64;
  Type scanType = narrow ? elem : t64;
  auto extend = [&](Value v) -> Value {
    if (v.getType() == t64)
      return v;
    return v.getType().isInteger(1) ? Value(arith::ExtUIOp::create(b, loc, t64, v))
                                    : Value(arith::ExtSIOp::create(b, loc, t64, v));
  };
  auto constant = [&](bool largest) -> Value {
    unsigned w = scanType.getIntOrFloatBitWidth();
    APInt v = largest ? APInt::getSignedMaxValue(w) : APInt::getSignedMinValue(w);
    return arith::ConstantOp::create(b, loc, IntegerAttr::get(scanType, v));
  };
  auto idx = [&](Value v) { return arith::IndexCastOp::create(b, loc, b.getIndexType(), v).getResult(); };
  auto scan = [&](Value from, Value to, Value mn, Value mx) -> std::pair<Value, Value> {
    auto loop = scf::ForOp::create(b, loc, idx(from), idx(to), idx(one), ValueRange{mn, mx});
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(loop.getBody());
    SmallVector<Value> at;
    if (row)
      at.push_back(idx(row));
    at.push_back(loop.getInductionVar());
    Value v = memref::LoadOp::create(b, loc, buffer, at);
    if (!narrow)
      v = extend(v);
    Value args[] = {min(loop.getRegionIterArgs()[0], v), max(loop.getRegionIterArgs()[1], v)};
    scf::YieldOp::create(b, loc, args);
    return {loop.getResult(0), loop.getResult(1)};
  };
  auto [mn, mx] = scan(lo, headEnd, constant(true), constant(false));
  std::tie(mn, mx) = scan(tailLo, arith::AddIOp::create(b, loc, hi, one), mn, mx);
  mn = extend(mn);
  mx = extend(mx);
  auto full = scf::IfOp::create(b, loc, TypeRange{t64, t64}, hasFull, true);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&full.getThenRegion().front());
    auto [tlo, thi] = summaryRange(summary, arith::AddIOp::create(b, loc, base, fullLo),
                                   arith::SubIOp::create(b, loc,
                                                         arith::AddIOp::create(b, loc, base, fullEnd),
                                                         one));
    scf::YieldOp::create(b, loc, ValueRange{min(mn, tlo), max(mx, thi)});
    b.setInsertionPointToStart(&full.getElseRegion().front());
    scf::YieldOp::create(b, loc, ValueRange{mn, mx});
  }
  return {full.getResult(0), full.getResult(1)};
}

/// A buffer read is exact where every index is a single in-range value (a
/// block-sparse layout read with block-aligned tiles, say). A rank-1 integer
/// buffer read over an index interval, or a rank-2 one read at one row over
/// an interval, takes the range of the buffer there from its summary
/// (document ids, per-batch document ids). Elsewhere the read is unknown.
AbsInt MaskInterpreter::load(heed::attn::LoadOp load) {
  Value buffer = bufferArgs.lookup(load.getBuffer());
  if (!buffer || !isa<IntegerType>(cast<MemRefType>(buffer.getType()).getElementType()))
    return top();
  if (Value summary = summaryArgs.lookup(load.getBuffer())) {
    // A rank-2 buffer (per-batch document ids, doc[b, t]) is summarized as
    // its rows laid end to end, each padded to whole summary blocks (with its
    // last entry), so no block mixes two rows: with an exact row, entries
    // [lo, hi] of the row are [row * n' + lo, row * n' + hi] there, where n'
    // is n rounded up to the block size.
    auto type = cast<MemRefType>(buffer.getType());
    unsigned last = type.getRank() - 1;
    AbsInt i = intOf(load.getIndices()[last]);
    if (i.top)
      return top();
    auto dimOf = [&](unsigned d) {
      return arith::IndexCastOp::create(b, loc, b.getI64Type(),
                                        memref::DimOp::create(b, loc, buffer, d))
          .getResult();
    };
    Value size = dimOf(last);
    Value ok = andI(cmp(arith::CmpIPredicate::sle, i.lo, i.hi),
                    andI(cmp(arith::CmpIPredicate::sge, i.lo, i64(0)),
                         cmp(arith::CmpIPredicate::slt, i.hi, size)));
    if (i.known)
      ok = andI(ok, i.known);
    Value row, base = i64(0);
    if (last == 1) {
      AbsInt r = intOf(load.getIndices()[0]);
      if (r.top)
        return top();
      ok = andI(ok, andI(cmp(arith::CmpIPredicate::eq, r.lo, r.hi),
                         andI(cmp(arith::CmpIPredicate::sge, r.lo, i64(0)),
                              cmp(arith::CmpIPredicate::slt, r.lo, dimOf(0)))));
      if (r.known)
        ok = andI(ok, r.known);
      row = r.lo;
      Value g = i64(VariantOp::kSummaryBlock);
      Value padded = arith::MulIOp::create(
          b, loc, arith::CeilDivSIOp::create(b, loc, size, g), g);
      base = arith::MulIOp::create(b, loc, r.lo, padded);
    }
    Type t64 = b.getI64Type();
    auto ifOp = scf::IfOp::create(b, loc, TypeRange{t64, t64}, ok, true);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(&ifOp.getThenRegion().front());
      // One index (a per-head table read at h, say): the entry itself, not
      // the range of its 16-entry summary block.
      Value point = cmp(arith::CmpIPredicate::eq, i.lo, i.hi);
      auto pick = scf::IfOp::create(b, loc, TypeRange{t64, t64}, point, true);
      b.setInsertionPointToStart(&pick.getThenRegion().front());
      auto at = [&](Value v) {
        return arith::IndexCastOp::create(b, loc, b.getIndexType(), v).getResult();
      };
      SmallVector<Value> indices;
      if (row)
        indices.push_back(at(row));
      indices.push_back(at(i.lo));
      Value v = memref::LoadOp::create(b, loc, buffer, indices);
      if (v.getType() != t64)
        v = v.getType().isInteger(1) ? Value(arith::ExtUIOp::create(b, loc, t64, v))
                                     : Value(arith::ExtSIOp::create(b, loc, t64, v));
      scf::YieldOp::create(b, loc, ValueRange{v, v});
      b.setInsertionPointToStart(&pick.getElseRegion().front());
      auto [lo, hi] = exactRange(buffer, row, summary, base, i.lo, i.hi);
      scf::YieldOp::create(b, loc, ValueRange{lo, hi});
      b.setInsertionPointAfter(pick);
      scf::YieldOp::create(b, loc, pick.getResults());
      b.setInsertionPointToStart(&ifOp.getElseRegion().front());
      scf::YieldOp::create(b, loc, ValueRange{i64(0), i64(0)});
    }
    AbsInt r = interval(ifOp.getResult(0), ifOp.getResult(1));
    r.known = ok;
    r.data = true;
    return r;
  }
  Value exact;
  SmallVector<Value> at;
  for (auto [d, index] : llvm::enumerate(load.getIndices())) {
    AbsInt i = intOf(index);
    if (i.top)
      return top();
    Value size = arith::IndexCastOp::create(
        b, loc, b.getI64Type(), memref::DimOp::create(b, loc, buffer, d));
    Value ok = andI(andI(cmp(arith::CmpIPredicate::eq, i.lo, i.hi),
                         cmp(arith::CmpIPredicate::sge, i.lo, i64(0))),
                    cmp(arith::CmpIPredicate::slt, i.lo, size));
    if (i.known)
      ok = andI(ok, i.known);
    exact = exact ? andI(exact, ok) : ok;
    at.push_back(i.lo);
  }
  if (!exact)
    return top();
  auto ifOp = scf::IfOp::create(b, loc, TypeRange{b.getI64Type()}, exact, true);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&ifOp.getThenRegion().front());
    SmallVector<Value> indices;
    for (Value i : at)
      indices.push_back(arith::IndexCastOp::create(b, loc, b.getIndexType(), i));
    Value v = memref::LoadOp::create(b, loc, buffer, indices);
    if (v.getType() != b.getI64Type())
      v = v.getType().isInteger(1) ? Value(arith::ExtUIOp::create(b, loc, b.getI64Type(), v))
                                   : Value(arith::ExtSIOp::create(b, loc, b.getI64Type(), v));
    scf::YieldOp::create(b, loc, v);
    b.setInsertionPointToStart(&ifOp.getElseRegion().front());
    scf::YieldOp::create(b, loc, i64(0));
  }
  AbsInt r = interval(ifOp.getResult(0), ifOp.getResult(0));
  r.known = exact;
  r.data = true;
  return r;
}

std::tuple<Value, Value, Value> MaskInterpreter::mulByConstant(const AbsInt &x, int64_t c) {
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  Value lo = arith::MulIOp::create(b, loc, x.lo, i64(c));
  Value hi = arith::MulIOp::create(b, loc, x.hi, i64(c));
  if (c < 0)
    std::swap(lo, hi);
  if (c == 0)
    return {lo, hi, i1(true)};
  // The x whose products with c fit: [first, last] (C++ division truncates,
  // which rounds each bound inwards here).
  int64_t first = c == -1 ? kMin + 1 : c > 0 ? kMin / c : kMax / c;
  int64_t last = c == -1 ? kMax : c > 0 ? kMax / c : kMin / c;
  Value ok = andI(cmp(arith::CmpIPredicate::sge, x.lo, i64(first)),
                  cmp(arith::CmpIPredicate::sle, x.hi, i64(last)));
  return {lo, hi, ok};
}

AbsInt MaskInterpreter::visitInt(Operation &op) {
  APInt value;
  if (matchPattern(op.getResult(0), m_ConstantInt(&value))) {
    AbsInt r = interval(i64(value.getSExtValue()), Value());
    r.hi = r.lo;
    r.constant = value.getSExtValue();
    return r;
  }
  if (isa<arith::IndexCastOp, arith::IndexCastUIOp>(op) && isIntLike(op.getOperand(0).getType()))
    return intOf(op.getOperand(0));
  if (auto ld = dyn_cast<heed::attn::LoadOp>(op))
    return load(ld);
  if (isa<heed::attn::RouteOp>(op)) {
    // The head's route value: exact (one value per b, h), read in the blocks
    // region too, where specialized lowerings make it each case's constant.
    Value r = heed::attn::RouteOp::create(b, loc, b.getI64Type());
    return interval(r, r);
  }
  if (auto shape = dyn_cast<heed::attn::ShapeOp>(op)) {
    // A run-time size is one value per launch, and the blocks region is
    // evaluated at run time: read there, it is exact.
    Value r = heed::attn::ShapeOp::create(b, loc, b.getI64Type(), shape.getShapeAttr());
    return interval(r, r);
  }
  if (auto ext = dyn_cast<arith::ExtSIOp>(op); ext && isIntLike(ext.getIn().getType()))
    return intOf(ext.getIn());
  if (auto ext = dyn_cast<arith::ExtUIOp>(op); ext && ext.getIn().getType().isInteger(1)) {
    AbsBool c = boolOf(ext.getIn());
    return interval(sel(c.mayFalse, i64(0), i64(1)), sel(c.mayTrue, i64(1), i64(0)));
  }
  if (op.getNumOperands() == 2) {
    AbsInt x = intOf(op.getOperand(0)), y = intOf(op.getOperand(1));
    if (isa<arith::SubIOp>(op) && !x.top) {
      // a - floordiv(a, c) * c with a constant c > 0 is a floor remainder:
      // exact when the box stays within one period, else [0, c - 1].
      auto mul = op.getOperand(1).getDefiningOp<arith::MulIOp>();
      arith::FloorDivSIOp div = mul ? mul.getLhs().getDefiningOp<arith::FloorDivSIOp>() : nullptr;
      AbsInt c = mul ? intOf(mul.getRhs()) : top();
      if (div && div.getLhs() == op.getOperand(0) && c.constant && *c.constant > 0 &&
          intOf(div.getRhs()).constant == c.constant) {
        // Computed with wrapping, the remainder is still exact (the true
        // value fits, so the wrapped one is it): [0, c - 1] always holds.
        Value period = i64(*c.constant);
        Value qlo = arith::FloorDivSIOp::create(b, loc, x.lo, period);
        Value qhi = arith::FloorDivSIOp::create(b, loc, x.hi, period);
        Value same = cmp(arith::CmpIPredicate::eq, qlo, qhi);
        if (x.known)
          same = andI(same, x.known);
        Value base = arith::MulIOp::create(b, loc, qlo, period);
        AbsInt r = interval(sel(same, arith::SubIOp::create(b, loc, x.lo, base), i64(0)),
                            sel(same, arith::SubIOp::create(b, loc, x.hi, base),
                                i64(*c.constant - 1)));
        r.data = x.data;
        return r;
      }
    }
    if (x.top || y.top)
      return top();
    if (isa<arith::AddIOp>(op)) {
      auto [lo, loOk] = addChecked(x.lo, y.lo);
      auto [hi, hiOk] = addChecked(x.hi, y.hi);
      return checked(interval(lo, hi), andI(loOk, hiOk), x, y);
    }
    if (isa<arith::SubIOp>(op)) {
      auto [lo, loOk] = subChecked(x.lo, y.hi);
      auto [hi, hiOk] = subChecked(x.hi, y.lo);
      return checked(interval(lo, hi), andI(loOk, hiOk), x, y);
    }
    // min and max cannot overflow.
    if (isa<arith::MinSIOp>(op))
      return inherit(interval(min(x.lo, y.lo), min(x.hi, y.hi)), x, y);
    if (isa<arith::MaxSIOp>(op))
      return inherit(interval(max(x.lo, y.lo), max(x.hi, y.hi)), x, y);
    if (isa<arith::MulIOp>(op)) {
      if (x.constant && !y.constant)
        std::swap(x, y);
      if (y.constant) {
        auto [lo, hi, ok] = mulByConstant(x, *y.constant);
        return checked(interval(lo, hi), ok, x, y);
      }
      std::pair<Value, Value> c[4];
      c[0] = mulChecked(x.lo, y.lo);
      c[1] = mulChecked(x.lo, y.hi);
      c[2] = mulChecked(x.hi, y.lo);
      c[3] = mulChecked(x.hi, y.hi);
      Value ok = andI(andI(c[0].second, c[1].second), andI(c[2].second, c[3].second));
      return checked(interval(min(min(c[0].first, c[1].first), min(c[2].first, c[3].first)),
                              max(max(c[0].first, c[1].first), max(c[2].first, c[3].first))),
                     ok, x, y);
    }
    if (isa<arith::FloorDivSIOp>(op)) {
      // Monotone in each argument on either side of a divisor that excludes 0.
      if (!y.constant || *y.constant == 0)
        return top();
      if (*y.constant == -1) {
        // Negation, which wraps at the smallest i64 (and a floordivsi by -1
        // of it would trap in the blocks region itself).
        auto [lo, loOk] = subChecked(i64(0), x.hi);
        auto [hi, hiOk] = subChecked(i64(0), x.lo);
        return checked(interval(lo, hi), andI(loOk, hiOk), x, y);
      }
      Value lo = arith::FloorDivSIOp::create(b, loc, x.lo, y.lo);
      Value hi = arith::FloorDivSIOp::create(b, loc, x.hi, y.lo);
      return inherit(*y.constant > 0 ? interval(lo, hi) : interval(hi, lo), x, y);
    }
    return top();
  }
  if (auto abs = dyn_cast<math::AbsIOp>(op)) {
    AbsInt x = intOf(abs.getOperand());
    if (x.top)
      return top();
    // abs of the smallest i64 wraps to itself: then the interval does not hold.
    auto [negLo, ok] = subChecked(i64(0), x.lo);
    Value negHi = arith::SubIOp::create(b, loc, i64(0), x.hi);
    Value nonNeg = cmp(arith::CmpIPredicate::sge, x.lo, i64(0));
    Value nonPos = cmp(arith::CmpIPredicate::sle, x.hi, i64(0));
    Value lo = sel(nonNeg, x.lo, sel(nonPos, negHi, i64(0)));
    Value hi = sel(nonNeg, x.hi, sel(nonPos, negLo, max(negLo, x.hi)));
    return checked(interval(lo, hi), ok, x, x);
  }
  if (auto select = dyn_cast<arith::SelectOp>(op)) {
    AbsBool c = boolOf(select.getCondition());
    AbsInt x = intOf(select.getTrueValue()), y = intOf(select.getFalseValue());
    if (x.top || y.top)
      return top();
    // Both may be taken: the hull; only one: that one.
    Value both = andI(c.mayTrue, c.mayFalse);
    Value lo = sel(both, min(x.lo, y.lo), sel(c.mayTrue, x.lo, y.lo));
    Value hi = sel(both, max(x.hi, y.hi), sel(c.mayTrue, x.hi, y.hi));
    AbsInt r = inherit(interval(lo, hi), x, y);
    r.data = r.data || c.fromTop;
    return r;
  }
  return top();
}

AbsBool MaskInterpreter::visitBool(Operation &op) {
  APInt value;
  if (matchPattern(op.getResult(0), m_ConstantInt(&value)))
    return {i1(value.isOne()), i1(value.isZero()), false};
  if (auto c = dyn_cast<arith::CmpIOp>(op)) {
    if (c.getLhs().getType().isInteger(1)) {
      AbsBool x = boolOf(c.getLhs()), y = boolOf(c.getRhs());
      Value same = orI(andI(x.mayTrue, y.mayTrue), andI(x.mayFalse, y.mayFalse));
      Value differ = orI(andI(x.mayTrue, y.mayFalse), andI(x.mayFalse, y.mayTrue));
      bool fromTop = x.fromTop || y.fromTop;
      if (c.getPredicate() == arith::CmpIPredicate::eq)
        return {same, differ, fromTop};
      if (c.getPredicate() == arith::CmpIPredicate::ne)
        return {differ, same, fromTop};
      return unknown(fromTop);
    }
    return compare(c.getPredicate(), intOf(c.getLhs()), intOf(c.getRhs()));
  }
  if (op.getNumOperands() == 2 && op.getOperand(0).getType().isInteger(1)) {
    AbsBool x = boolOf(op.getOperand(0)), y = boolOf(op.getOperand(1));
    bool fromTop = x.fromTop || y.fromTop;
    if (isa<arith::AndIOp>(op))
      return {andI(x.mayTrue, y.mayTrue), orI(x.mayFalse, y.mayFalse), fromTop};
    if (isa<arith::OrIOp>(op))
      return {orI(x.mayTrue, y.mayTrue), andI(x.mayFalse, y.mayFalse), fromTop};
    if (isa<arith::XOrIOp>(op))
      return {orI(andI(x.mayTrue, y.mayFalse), andI(x.mayFalse, y.mayTrue)),
              orI(andI(x.mayTrue, y.mayTrue), andI(x.mayFalse, y.mayFalse)), fromTop};
  }
  if (auto select = dyn_cast<arith::SelectOp>(op)) {
    AbsBool c = boolOf(select.getCondition());
    AbsBool x = boolOf(select.getTrueValue()), y = boolOf(select.getFalseValue());
    // Reachable true: (c may be true and x may be true) or (c may be false and y may be true).
    return {orI(andI(c.mayTrue, x.mayTrue), andI(c.mayFalse, y.mayTrue)),
            orI(andI(c.mayTrue, x.mayFalse), andI(c.mayFalse, y.mayFalse)),
            c.fromTop || x.fromTop || y.fromTop};
  }
  return unknown(true);
}

std::optional<Digits> MaskInterpreter::visitDigits(Operation &op) {
  if (isa<arith::IndexCastOp, arith::IndexCastUIOp, arith::ExtSIOp>(op)) {
    auto it = digits.find(op.getOperand(0));
    if (it == digits.end())
      return std::nullopt;
    return it->second;
  }
  auto strideOf = [&](const Digits &x, Value c) -> std::optional<size_t> {
    std::optional<int64_t> value = intOf(c).constant;
    if (!value)
      return std::nullopt;
    for (auto [k, s] : llvm::enumerate(x.strides))
      if (s == *value && s > 1)
        return k;
    return std::nullopt;
  };
  if (auto div = dyn_cast<arith::FloorDivSIOp>(op)) {
    // floordiv(sum_k d_k s_k, s_j) = sum_{k <= j} d_k (s_k / s_j): the rest
    // of the sum lies in [0, s_j - 1].
    auto it = digits.find(div.getLhs());
    if (it == digits.end())
      return std::nullopt;
    std::optional<size_t> j = strideOf(it->second, div.getRhs());
    if (!j)
      return std::nullopt;
    Digits r;
    for (size_t k = 0; k <= *j; ++k) {
      r.strides.push_back(it->second.strides[k] / it->second.strides[*j]);
      r.lo.push_back(it->second.lo[k]);
      r.hi.push_back(it->second.hi[k]);
    }
    return r;
  }
  if (auto sub = dyn_cast<arith::SubIOp>(op)) {
    // x - floordiv(x, s_j) * s_j = sum_{k > j} d_k s_k.
    auto it = digits.find(sub.getLhs());
    auto mul = sub.getRhs().getDefiningOp<arith::MulIOp>();
    auto div = mul ? mul.getLhs().getDefiningOp<arith::FloorDivSIOp>() : nullptr;
    if (it == digits.end() || !div || div.getLhs() != sub.getLhs() ||
        intOf(div.getRhs()).constant != intOf(mul.getRhs()).constant)
      return std::nullopt;
    std::optional<size_t> j = strideOf(it->second, mul.getRhs());
    if (!j)
      return std::nullopt;
    Digits r;
    for (size_t k = *j + 1; k < it->second.strides.size(); ++k) {
      r.strides.push_back(it->second.strides[k]);
      r.lo.push_back(it->second.lo[k]);
      r.hi.push_back(it->second.hi[k]);
    }
    return r;
  }
  return std::nullopt;
}

void MaskInterpreter::visit(Operation &op) {
  if (op.getNumResults() != 1)
    return;
  Type t = op.getResult(0).getType();
  if (t.isInteger(1)) {
    bools[op.getResult(0)] = visitBool(op);
  } else if (isIntLike(t)) {
    if (std::optional<Digits> d = visitDigits(op)) {
      // The hull of the digits is the interval every other use sees.
      Value lo = i64(0), hi = i64(0);
      for (auto [k, s] : llvm::enumerate(d->strides)) {
        lo = arith::AddIOp::create(b, loc, lo, arith::MulIOp::create(b, loc, d->lo[k], i64(s)));
        hi = arith::AddIOp::create(b, loc, hi, arith::MulIOp::create(b, loc, d->hi[k], i64(s)));
      }
      ints[op.getResult(0)] = interval(lo, hi);
      digits[op.getResult(0)] = std::move(*d);
      return;
    }
    ints[op.getResult(0)] = visitInt(op);
  }
  // Floats and anything else stay unknown (top) by absence.
}

Digits MaskInterpreter::decode(Value lo, Value hi, ArrayRef<int64_t> strides) {
  Digits d;
  for (auto [k, s] : llvm::enumerate(strides)) {
    auto digit = [&](Value t) -> Value {
      Value r = arith::FloorDivSIOp::create(b, loc, t, i64(s));
      if (k == 0)
        return r;
      Value period = i64(strides[k - 1] / s);
      return arith::SubIOp::create(
          b, loc, r, arith::MulIOp::create(b, loc, arith::FloorDivSIOp::create(b, loc, r, period),
                                           period));
    };
    d.strides.push_back(s);
    d.lo.push_back(digit(lo));
    d.hi.push_back(digit(hi));
  }
  return d;
}

bool MaskInterpreter::run(Block &mask, Block &blocks, ArrayRef<int64_t> strides) {
  // b and h are exact, q and kv range over the box.
  auto arg = [&](unsigned i) {
    return arith::IndexCastOp::create(b, loc, b.getI64Type(), blocks.getArgument(i)).getResult();
  };
  Value bv = arg(0), hv = arg(1);
  ints[mask.getArgument(0)] = interval(bv, bv);
  ints[mask.getArgument(1)] = interval(hv, hv);
  ints[mask.getArgument(2)] = interval(arg(2), arg(3));
  ints[mask.getArgument(3)] = interval(arg(4), arg(5));
  if (!strides.empty()) {
    digits[mask.getArgument(2)] = decode(ints[mask.getArgument(2)].lo,
                                         ints[mask.getArgument(2)].hi, strides);
    digits[mask.getArgument(3)] = decode(ints[mask.getArgument(3)].lo,
                                         ints[mask.getArgument(3)].hi, strides);
  }
  unsigned numBuffers = mask.getNumArguments() - VariantOp::kMaskIndexArgs;
  for (unsigned i = 0; i < numBuffers; ++i)
    bufferArgs[mask.getArgument(VariantOp::kMaskIndexArgs + i)] =
        blocks.getArgument(VariantOp::kBlocksIndexArgs + i);
  for (auto [n, i] : llvm::enumerate(summarized))
    summaryArgs[mask.getArgument(VariantOp::kMaskIndexArgs + i)] =
        blocks.getArgument(VariantOp::kBlocksIndexArgs + numBuffers + n);
  for (Operation &op : mask.without_terminator())
    visit(op);
  auto yield = cast<heed::attn::YieldOp>(mask.getTerminator());
  AbsBool result = boolOf(yield.getValue());
  auto cls = [&](int v) { return arith::ConstantIntOp::create(b, loc, v, 8).getResult(); };
  Value klass = sel(notI(result.mayTrue), cls(int64_t(heed::attn::BlockClass::Empty)),
                    sel(notI(result.mayFalse), cls(int64_t(heed::attn::BlockClass::Full)), cls(int64_t(heed::attn::BlockClass::Partial))));
  heed::attn::YieldOp::create(b, loc, klass);
  return result.fromTop;
}

struct AttnAnalyzeMaskPass : heed::impl::AttnAnalyzeMaskBase<AttnAnalyzeMaskPass> {
  using Base::Base;

  void runOnOperation() override {
    VariantOp variant = getOperation();
    {
      Block &mask = variant.getMask().front();
      Region &region = variant.getBlocks();
      region.getBlocks().clear();
      OpBuilder b(variant.getContext());
      Type idx = b.getIndexType();
      SmallVector<Type> args(VariantOp::kBlocksIndexArgs, idx);
      for (Attribute t : variant.getBufferTypes())
        args.push_back(cast<TypeAttr>(t).getValue());
      SmallVector<unsigned> summarized = variant.getSummarizedBuffers();
      for (size_t i = 0; i < summarized.size(); ++i)
        args.push_back(MemRefType::get({ShapedType::kDynamic, ShapedType::kDynamic, 2},
                                       b.getI64Type()));
      SmallVector<Location> locs(args.size(), variant.getLoc());
      Block *block = b.createBlock(&region, {}, args, locs);
      b.setInsertionPointToStart(block);
      // Boxes of the token grid --attn-choose-tiling found, if any.
      SmallVector<int64_t> strides;
      if (heed::attn::GridAttr grid = variant.getGridAttr())
        strides = grid.getStrides();
      MaskInterpreter interpreter(b, variant.getLoc(), summarized);
      bool dataDependent = interpreter.run(mask, *block, strides);

      // A summary for readers of the IR: how the blocks are known.
      using heed::attn::Sparsity;
      Sparsity kind = Sparsity::ClosedForm;
      APInt value;
      auto yield = cast<heed::attn::YieldOp>(mask.getTerminator());
      if (matchPattern(yield.getValue(), m_ConstantInt(&value)))
        kind = value.isOne() ? Sparsity::Dense : Sparsity::Empty;
      else if (dataDependent)
        kind = Sparsity::DataDependent;
      variant.setSparsityAttr(heed::attn::SparsityAttr::get(b.getContext(), kind));
    }
  }
};

} // namespace
