// --attn-differentiate: the derivative variant of each attn.variant, by
// reverse-mode differentiation of its score and sink regions
// (docs/backward.md).
#include "heed/Transforms/Passes.h"

#include "dialects/attn/AttnOps.h"
#include "dialects/attn/AttnTileOps.h"

#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Transforms/RegionUtils.h"

namespace heed {
#define GEN_PASS_DEF_ATTNDIFFERENTIATE
#include "heed/Transforms/Passes.h.inc"
} // namespace heed

using namespace mlir;
using namespace heed::attn;

namespace {

bool isF32(Value v) { return v.getType().isF32(); }

/// The f32 operands of `op` through which a derivative flows to its result;
/// failure for an op producing f32 that has no rule.
FailureOr<SmallVector<Value>> differentiableOperands(Operation *op) {
  if (isa<arith::ConstantOp, arith::SIToFPOp, arith::UIToFPOp, RouteOp, LoadOp>(op))
    return SmallVector<Value>{};
  if (auto select = dyn_cast<arith::SelectOp>(op))
    return SmallVector<Value>{select.getTrueValue(), select.getFalseValue()};
  if (isa<arith::AddFOp, arith::SubFOp, arith::MulFOp, arith::DivFOp, arith::NegFOp,
          arith::MaximumFOp, arith::MinimumFOp, arith::MaxNumFOp, arith::MinNumFOp,
          arith::ExtFOp, arith::TruncFOp, math::ExpOp, math::LogOp, math::TanhOp, math::SqrtOp,
          math::AbsFOp>(op))
    return SmallVector<Value>(op->getOperands());
  return failure();
}

/// A variant region that is differentiated: its block and where its
/// buffer arguments start.
struct DiffRegion {
  Block *block;
  unsigned firstBuffer;
  const char *what; // for errors: "score", "sink logit"
};

/// The score region, then the sink region where the variant has one.
SmallVector<DiffRegion, 2> diffRegions(VariantOp v) {
  SmallVector<DiffRegion, 2> out = {{&v.getScore().front(), VariantOp::kScoreIndexArgs, "score"}};
  if (v.hasSink())
    out.push_back({&v.getSink().front(), VariantOp::kSinkIndexArgs, "sink logit"});
  return out;
}

/// Reverse-mode differentiation of one cloned region block.
class Differentiator {
public:
  Differentiator(DiffRegion region, ArrayRef<Value> gradients, ArrayRef<int> gradientOf)
      : block(*region.block), region(region), b(block.getParentOp()->getContext()),
        gradients(gradients), gradientOf(gradientOf) {}

  /// Emits the adjoint code before the block's yield. The score region then
  /// yields d result / d score; the sink region keeps yielding the sink
  /// logit (its lowering needs the value to weigh the partials).
  LogicalResult run();

private:
  Value constant(Location loc, double v) {
    return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(static_cast<float>(v)));
  }
  void accumulate(Value v, Value adjoint) {
    Value &slot = adjoints[v];
    slot = slot ? arith::AddFOp::create(b, v.getLoc(), slot, adjoint).getResult() : adjoint;
  }
  /// adjoint * (c ? x : y) for constants x, y.
  Value pick(Location loc, Value c, double x, double y) {
    return arith::SelectOp::create(b, loc, c, constant(loc, x), constant(loc, y));
  }
  void propagate(Operation *op, Value adjoint);

  Block &block;
  DiffRegion region;
  OpBuilder b;
  ArrayRef<Value> gradients;
  ArrayRef<int> gradientOf; // buffer position -> index into gradients, or -1
  DenseMap<Value, Value> adjoints;
};

LogicalResult Differentiator::run() {
  Operation *yield = block.getTerminator();
  Value result = yield->getOperand(0);
  // The ops the result depends on differentiably (so that an op without a
  // rule elsewhere, e.g. in a select's condition, is no error).
  DenseSet<Value> live{result};
  SmallVector<Operation *> ops;
  for (Operation &op : llvm::reverse(block.without_terminator())) {
    if (llvm::none_of(op.getResults(), [&](Value r) { return live.contains(r); }))
      continue;
    FailureOr<SmallVector<Value>> operands = differentiableOperands(&op);
    if (failed(operands))
      return op.emitOpError() << "has no derivative rule: the " << region.what
                              << " cannot be differentiated (docs/backward.md lists the "
                                 "supported ops)";
    for (Value v : *operands)
      if (isF32(v))
        live.insert(v);
    ops.push_back(&op);
  }
  b.setInsertionPoint(yield);
  adjoints[result] = constant(yield->getLoc(), 1);
  for (Operation *op : ops)
    if (Value adjoint = adjoints.lookup(op->getResult(0)))
      propagate(op, adjoint);
  if (region.firstBuffer != VariantOp::kScoreIndexArgs)
    return success();
  Value dScore = adjoints.lookup(block.getArgument(0));
  if (!dScore)
    dScore = constant(yield->getLoc(), 0);
  yield->setOperand(0, dScore);
  return success();
}

void Differentiator::propagate(Operation *op, Value adj) {
  Location loc = op->getLoc();
  auto mul = [&](Value x, Value y) { return arith::MulFOp::create(b, loc, x, y).getResult(); };
  auto div = [&](Value x, Value y) { return arith::DivFOp::create(b, loc, x, y).getResult(); };
  auto cmp = [&](arith::CmpFPredicate p, Value x, Value y) {
    return arith::CmpFOp::create(b, loc, p, x, y).getResult();
  };
  if (isa<arith::ConstantOp, arith::SIToFPOp, arith::UIToFPOp, RouteOp>(op))
    return; // nothing flows into constants and integers
  Value r = op->getResult(0);
  if (auto load = dyn_cast<LoadOp>(op)) {
    auto buffer = cast<BlockArgument>(load.getBuffer());
    int slot = gradientOf[buffer.getArgNumber() - region.firstBuffer];
    if (slot >= 0)
      GradAddOp::create(b, loc, adj, gradients[slot], load.getIndices());
    return;
  }
  if (auto select = dyn_cast<arith::SelectOp>(op)) {
    Value zero = constant(loc, 0);
    accumulate(select.getTrueValue(),
               arith::SelectOp::create(b, loc, select.getCondition(), adj, zero));
    accumulate(select.getFalseValue(),
               arith::SelectOp::create(b, loc, select.getCondition(), zero, adj));
    return;
  }
  if (op->getNumOperands() == 1) {
    Value x = op->getOperand(0);
    Value d;
    if (isa<arith::ExtFOp, arith::TruncFOp>(op))
      d = adj;
    else if (isa<arith::NegFOp>(op))
      d = arith::NegFOp::create(b, loc, adj);
    else if (isa<math::ExpOp>(op))
      d = mul(adj, r);
    else if (isa<math::LogOp>(op))
      d = div(adj, x);
    else if (isa<math::TanhOp>(op)) // 1 - tanh^2
      d = mul(adj, arith::SubFOp::create(b, loc, constant(loc, 1), mul(r, r)));
    else if (isa<math::SqrtOp>(op))
      d = div(mul(adj, constant(loc, 0.5)), r);
    else if (isa<math::AbsFOp>(op)) // sign(x), 0 at 0
      d = mul(adj, arith::SelectOp::create(b, loc, cmp(arith::CmpFPredicate::OGT, x, constant(loc, 0)),
                                           constant(loc, 1),
                                           pick(loc, cmp(arith::CmpFPredicate::OLT, x,
                                                         constant(loc, 0)),
                                                -1, 0)));
    if (d && isF32(x))
      accumulate(x, d);
    return;
  }
  Value x = op->getOperand(0), y = op->getOperand(1);
  Value dx, dy;
  if (isa<arith::AddFOp>(op)) {
    dx = dy = adj;
  } else if (isa<arith::SubFOp>(op)) {
    dx = adj;
    dy = arith::NegFOp::create(b, loc, adj);
  } else if (isa<arith::MulFOp>(op)) {
    dx = mul(adj, y);
    dy = mul(adj, x);
  } else if (isa<arith::DivFOp>(op)) {
    dx = div(adj, y);
    dy = arith::NegFOp::create(b, loc, div(mul(adj, r), y));
  } else {
    // max/min: the side chosen, half to each on a tie (torch.maximum).
    bool isMax = isa<arith::MaximumFOp, arith::MaxNumFOp>(op);
    Value wins = cmp(isMax ? arith::CmpFPredicate::OGT : arith::CmpFPredicate::OLT, x, y);
    Value tie = cmp(arith::CmpFPredicate::OEQ, x, y);
    Value share = arith::SelectOp::create(b, loc, wins, constant(loc, 1),
                                          pick(loc, tie, 0.5, 0));
    dx = mul(adj, share);
    dy = mul(adj, arith::SubFOp::create(b, loc, constant(loc, 1), share));
  }
  accumulate(x, dx);
  accumulate(y, dy);
}

/// The values `block`'s result depends on through f32 ops. An op without a
/// rule passes its operands on, so that the Differentiator names it.
DenseSet<Value> liveValues(Block &block) {
  DenseSet<Value> live{block.getTerminator()->getOperand(0)};
  for (Operation &op : llvm::reverse(block.without_terminator())) {
    if (llvm::none_of(op.getResults(), [&](Value r) { return live.contains(r); }))
      continue;
    FailureOr<SmallVector<Value>> operands = differentiableOperands(&op);
    if (succeeded(operands))
      live.insert(operands->begin(), operands->end());
    else
      for (Value x : op.getOperands())
        if (isF32(x))
          live.insert(x);
  }
  return live;
}

/// Which float buffers the score or the sink logit reads differentiably, or
/// an error naming one they read but are not differentiable in.
FailureOr<SmallVector<unsigned>> differentiableBuffers(VariantOp v) {
  SmallVector<DiffRegion, 2> regions = diffRegions(v);
  SmallVector<DenseSet<Value>, 2> live;
  for (const DiffRegion &r : regions)
    live.push_back(liveValues(*r.block));
  SmallVector<unsigned> out;
  for (unsigned i = 0; i < v.getNumBuffers(); ++i) {
    auto type = cast<MemRefType>(cast<TypeAttr>(v.getBufferTypes()[i]).getValue());
    if (!isa<FloatType>(type.getElementType()))
      continue;
    bool read = false, reaches = false;
    for (auto [r, values] : llvm::zip(regions, live))
      for (Operation *user : r.block->getArgument(r.firstBuffer + i).getUsers())
        if (auto load = dyn_cast<LoadOp>(user); load && isF32(load.getResult())) {
          read = true;
          reaches |= values.contains(load.getResult());
        }
    if (read && !reaches) {
      StringRef what = v.hasSink() ? "score and sink logit" : "score";
      return v.emitOpError() << what << (v.hasSink() ? " are" : " is")
                             << " not differentiable in buffer '"
                             << cast<StringAttr>(v.getBufferNames()[i]).getValue()
                             << "': it reaches the " << what
                             << " only through comparisons or integer conversions, so its "
                                "gradient is zero almost everywhere";
    }
    if (reaches)
      out.push_back(i);
  }
  return out;
}

/// Clones `from` into `to`, adding trailing block arguments of `extra`.
void cloneRegion(Region &from, Region &to, TypeRange extra, Location loc) {
  IRMapping map;
  from.cloneInto(&to, map);
  for (Type t : extra)
    to.front().addArgument(t, loc);
}

LogicalResult differentiate(VariantOp v, SymbolTable &symbols) {
  std::string name = (v.getSymName() + "_grad").str();
  if (symbols.lookup(name))
    return success(); // already differentiated
  FailureOr<SmallVector<unsigned>> buffers = differentiableBuffers(v);
  if (failed(buffers))
    return failure();
  MLIRContext *ctx = v.getContext();
  Builder b(ctx);
  SmallVector<Attribute> types(v.getBufferTypes().begin(), v.getBufferTypes().end());
  SmallVector<Attribute> names(v.getBufferNames().begin(), v.getBufferNames().end());
  SmallVector<Attribute> shapes(v.getBufferShapes().begin(), v.getBufferShapes().end());
  SmallVector<Type> gradTypes;
  SmallVector<int> gradientOf(v.getNumBuffers(), -1);
  for (auto [slot, i] : llvm::enumerate(*buffers)) {
    auto type = cast<MemRefType>(cast<TypeAttr>(types[i]).getValue());
    auto gradType = MemRefType::get(type.getShape(), b.getF32Type());
    gradTypes.push_back(gradType);
    types.push_back(TypeAttr::get(gradType));
    names.push_back(b.getStringAttr("d" + cast<StringAttr>(names[i]).getValue().str()));
    shapes.push_back(shapes[i]);
    gradientOf[i] = static_cast<int>(slot);
  }
  OpBuilder builder(v);
  builder.setInsertionPointAfter(v);
  auto grad = cast<VariantOp>(builder.clone(*v.getOperation()));
  grad.setSymName(name);
  grad.setBufferTypesAttr(b.getArrayAttr(types));
  grad.setBufferNamesAttr(b.getArrayAttr(names));
  grad.setBufferShapesAttr(b.getArrayAttr(shapes));
  grad.removeSparsityAttr();
  // A name, not a symbol reference: the derivative must not keep its
  // variant alive once the lowering has inlined both.
  grad->setAttr("derivative_of", v.getSymNameAttr());
  SmallVector<int64_t> positions(buffers->begin(), buffers->end());
  grad->setAttr("gradients", b.getDenseI64ArrayAttr(positions));
  // The classifier stays the forward's (the backward kernel classifies with v).
  for (Region *r : {&grad.getScore(), &grad.getMask(), &grad.getBlocks(), &grad.getRoute(),
                    &grad.getSink()})
    r->getBlocks().clear();
  Location loc = v.getLoc();
  cloneRegion(v.getScore(), grad.getScore(), gradTypes, loc);
  cloneRegion(v.getMask(), grad.getMask(), gradTypes, loc);
  if (v.isRouted())
    cloneRegion(v.getRoute(), grad.getRoute(), gradTypes, loc);
  if (v.hasSink())
    cloneRegion(v.getSink(), grad.getSink(), gradTypes, loc);
  IRRewriter rewriter(ctx);
  for (DiffRegion r : diffRegions(grad)) {
    SmallVector<Value> gradients(r.block->getArguments().take_back(gradTypes.size()));
    if (failed(Differentiator(r, gradients, gradientOf).run())) {
      grad.erase();
      return failure();
    }
    (void)runRegionDCE(rewriter, *r.block->getParent());
  }
  return success();
}

struct AttnDifferentiatePass : heed::impl::AttnDifferentiateBase<AttnDifferentiatePass> {
  void runOnOperation() override {
    SymbolTable symbols(getOperation());
    SmallVector<VariantOp> variants;
    getOperation().walk([&](VariantOp v) {
      if (!v->hasAttr("derivative_of"))
        variants.push_back(v);
    });
    for (VariantOp v : variants)
      if (failed(differentiate(v, symbols)))
        return signalPassFailure();
  }
};

} // namespace
