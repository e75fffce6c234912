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
// For masks that are comparisons of sums and differences of q, kv and
// constants (causal, windows, prefix-LM, sinks, bands and their && || !),
// interval arithmetic on a box is exact, so the classification is exact.
#include "heed/Transforms/Passes.h"

#include "dialects/attn/AttnOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Matchers.h"
#include "llvm/ADT/DenseMap.h"

#include <optional>

namespace heed {
#define GEN_PASS_DEF_ATTNANALYZEMASK
#include "heed/Transforms/Passes.h.inc"
} // namespace heed

using namespace mlir;
using heed::attn::VariantOp;

namespace {

/// An integer interval [lo, hi] (i64 values), or top (no bound known).
struct AbsInt {
  Value lo, hi;
  bool top = true;
  std::optional<int64_t> constant;
};

/// A boolean: may it be true, may it be false (i1 values).
struct AbsBool {
  Value mayTrue, mayFalse;
  bool fromTop = false; ///< depends on a value the analysis could not bound
};

class MaskInterpreter {
public:
  MaskInterpreter(OpBuilder &b, Location loc) : b(b), loc(loc) {}

  /// Builds the blocks region body; returns whether the result depends on a
  /// value the analysis could not bound.
  bool run(Block &mask, Block &blocks);

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

  AbsInt top() { return AbsInt{}; }
  AbsInt interval(Value lo, Value hi) { return AbsInt{lo, hi, false, std::nullopt}; }
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
  AbsInt visitInt(Operation &op);
  AbsBool visitBool(Operation &op);
  AbsBool compare(arith::CmpIPredicate p, const AbsInt &x, const AbsInt &y);

  OpBuilder &b;
  Location loc;
  llvm::DenseMap<Value, AbsInt> ints;
  llvm::DenseMap<Value, AbsBool> bools;
};

bool isIntLike(Type t) { return t.isIndex() || (t.isInteger() && !t.isInteger(1)); }

AbsBool MaskInterpreter::compare(arith::CmpIPredicate p, const AbsInt &x, const AbsInt &y) {
  using P = arith::CmpIPredicate;
  if (x.top || y.top)
    return unknown(true);
  switch (p) {
  case P::slt: return {cmp(P::slt, x.lo, y.hi), cmp(P::sge, x.hi, y.lo)};
  case P::sle: return {cmp(P::sle, x.lo, y.hi), cmp(P::sgt, x.hi, y.lo)};
  case P::sgt: return {cmp(P::sgt, x.hi, y.lo), cmp(P::sle, x.lo, y.hi)};
  case P::sge: return {cmp(P::sge, x.hi, y.lo), cmp(P::slt, x.lo, y.hi)};
  case P::eq:
  case P::ne: {
    Value overlap = andI(cmp(P::sle, x.lo, y.hi), cmp(P::sle, y.lo, x.hi));
    Value single = andI(andI(cmp(P::eq, x.lo, x.hi), cmp(P::eq, y.lo, y.hi)),
                        cmp(P::eq, x.lo, y.lo));
    if (p == P::eq)
      return {overlap, notI(single)};
    return {notI(single), overlap};
  }
  default:
    return unknown(false); // unsigned comparisons: not reasoned about
  }
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
        Value period = i64(*c.constant);
        Value qlo = arith::FloorDivSIOp::create(b, loc, x.lo, period);
        Value qhi = arith::FloorDivSIOp::create(b, loc, x.hi, period);
        Value same = cmp(arith::CmpIPredicate::eq, qlo, qhi);
        Value base = arith::MulIOp::create(b, loc, qlo, period);
        return interval(sel(same, arith::SubIOp::create(b, loc, x.lo, base), i64(0)),
                        sel(same, arith::SubIOp::create(b, loc, x.hi, base),
                            i64(*c.constant - 1)));
      }
    }
    if (x.top || y.top)
      return top();
    if (isa<arith::AddIOp>(op))
      return interval(arith::AddIOp::create(b, loc, x.lo, y.lo),
                      arith::AddIOp::create(b, loc, x.hi, y.hi));
    if (isa<arith::SubIOp>(op))
      return interval(arith::SubIOp::create(b, loc, x.lo, y.hi),
                      arith::SubIOp::create(b, loc, x.hi, y.lo));
    if (isa<arith::MinSIOp>(op))
      return interval(min(x.lo, y.lo), min(x.hi, y.hi));
    if (isa<arith::MaxSIOp>(op))
      return interval(max(x.lo, y.lo), max(x.hi, y.hi));
    if (isa<arith::MulIOp>(op)) {
      Value c[4] = {arith::MulIOp::create(b, loc, x.lo, y.lo),
                    arith::MulIOp::create(b, loc, x.lo, y.hi),
                    arith::MulIOp::create(b, loc, x.hi, y.lo),
                    arith::MulIOp::create(b, loc, x.hi, y.hi)};
      return interval(min(min(c[0], c[1]), min(c[2], c[3])),
                      max(max(c[0], c[1]), max(c[2], c[3])));
    }
    if (isa<arith::FloorDivSIOp>(op)) {
      // Monotone in each argument on either side of a divisor that excludes 0.
      if (!y.constant || *y.constant == 0)
        return top();
      Value lo = arith::FloorDivSIOp::create(b, loc, x.lo, y.lo);
      Value hi = arith::FloorDivSIOp::create(b, loc, x.hi, y.lo);
      return *y.constant > 0 ? interval(lo, hi) : interval(hi, lo);
    }
    return top();
  }
  if (auto abs = dyn_cast<math::AbsIOp>(op)) {
    AbsInt x = intOf(abs.getOperand());
    if (x.top)
      return top();
    Value negLo = arith::SubIOp::create(b, loc, i64(0), x.lo);
    Value negHi = arith::SubIOp::create(b, loc, i64(0), x.hi);
    Value nonNeg = cmp(arith::CmpIPredicate::sge, x.lo, i64(0));
    Value nonPos = cmp(arith::CmpIPredicate::sle, x.hi, i64(0));
    Value lo = sel(nonNeg, x.lo, sel(nonPos, negHi, i64(0)));
    Value hi = sel(nonNeg, x.hi, sel(nonPos, negLo, max(negLo, x.hi)));
    return interval(lo, hi);
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
    return interval(lo, hi);
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

void MaskInterpreter::visit(Operation &op) {
  if (op.getNumResults() != 1)
    return;
  Type t = op.getResult(0).getType();
  if (t.isInteger(1))
    bools[op.getResult(0)] = visitBool(op);
  else if (isIntLike(t))
    ints[op.getResult(0)] = visitInt(op);
  // Floats and anything else stay unknown (top) by absence.
}

bool MaskInterpreter::run(Block &mask, Block &blocks) {
  // b and h are exact, q and kv range over the box.
  auto arg = [&](unsigned i) {
    return arith::IndexCastOp::create(b, loc, b.getI64Type(), blocks.getArgument(i)).getResult();
  };
  Value bv = arg(0), hv = arg(1);
  ints[mask.getArgument(0)] = interval(bv, bv);
  ints[mask.getArgument(1)] = interval(hv, hv);
  ints[mask.getArgument(2)] = interval(arg(2), arg(3));
  ints[mask.getArgument(3)] = interval(arg(4), arg(5));
  for (Operation &op : mask.without_terminator())
    visit(op);
  auto yield = cast<heed::attn::YieldOp>(mask.getTerminator());
  AbsBool result = boolOf(yield.getValue());
  auto cls = [&](int v) { return arith::ConstantIntOp::create(b, loc, v, 8).getResult(); };
  Value klass = sel(notI(result.mayTrue), cls(VariantOp::Empty),
                    sel(notI(result.mayFalse), cls(VariantOp::Full), cls(VariantOp::Partial)));
  heed::attn::YieldOp::create(b, loc, klass);
  return result.fromTop;
}

struct AttnAnalyzeMaskPass : heed::impl::AttnAnalyzeMaskBase<AttnAnalyzeMaskPass> {
  void runOnOperation() override {
    getOperation().walk([&](VariantOp variant) {
      Block &mask = variant.getMask().front();
      Region &region = variant.getBlocks();
      region.getBlocks().clear();
      OpBuilder b(variant.getContext());
      Type idx = b.getIndexType();
      SmallVector<Type> args(VariantOp::kBlocksIndexArgs, idx);
      for (Attribute t : variant.getBufferTypes())
        args.push_back(cast<TypeAttr>(t).getValue());
      SmallVector<Location> locs(args.size(), variant.getLoc());
      Block *block = b.createBlock(&region, {}, args, locs);
      b.setInsertionPointToStart(block);
      MaskInterpreter interpreter(b, variant.getLoc());
      bool dataDependent = interpreter.run(mask, *block);

      // A summary for readers of the IR: how the blocks are known.
      StringRef kind = "closed_form";
      APInt value;
      auto yield = cast<heed::attn::YieldOp>(mask.getTerminator());
      if (matchPattern(yield.getValue(), m_ConstantInt(&value)))
        kind = value.isOne() ? "dense" : "empty";
      else if (dataDependent)
        kind = "data_dependent";
      variant->setAttr("sparsity", b.getStringAttr(kind));
    });
  }
};

} // namespace
