// --attn-specialize-routes: a routed variant's work item switches once on
// its head's route value (`attn.tile.route`) into a copy of the item's code
// per case, in which the route value is that case's constant; the target
// patterns then inline each region with the constant, and canonicalization
// keeps only that case's mask and score. A head whose value has no case
// takes a sentinel matching none (its mask is false everywhere).
#include "heed/Transforms/Passes.h"

#include "dialects/attn/AttnOps.h"
#include "dialects/attn/AttnTileOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"

#include <limits>

namespace heed {
#define GEN_PASS_DEF_ATTNSPECIALIZEROUTES
#include "heed/Transforms/Passes.h.inc"
} // namespace heed

using namespace mlir;
using namespace heed::attn;

namespace {

/// A route value that no case has.
int64_t sentinel(ArrayRef<int64_t> cases) {
  int64_t low = *std::min_element(cases.begin(), cases.end());
  if (low != std::numeric_limits<int64_t>::min())
    return low - 1;
  return *std::max_element(cases.begin(), cases.end()) + 1;
}

void specialize(TileRouteOp route, ArrayRef<int64_t> cases) {
  // The rest of the route's block: the item's code after the route value.
  SmallVector<Operation *> rest;
  for (Operation *op = route->getNextNode(); op; op = op->getNextNode())
    rest.push_back(op);
  if (rest.empty() || rest.back()->hasTrait<OpTrait::IsTerminator>())
    return; // only work bodies (no terminator) are specialized
  OpBuilder b(route->getContext());
  b.setInsertionPointAfter(route);
  Location loc = route.getLoc();
  Value selector = arith::IndexCastOp::create(b, loc, b.getIndexType(), route);
  auto sw = scf::IndexSwitchOp::create(b, loc, TypeRange{}, selector, cases, cases.size());
  auto fill = [&](Region &region, int64_t value) {
    Block *block = b.createBlock(&region);
    b.setInsertionPointToStart(block);
    IRMapping map;
    map.map(route.getResult(), arith::ConstantIntOp::create(b, loc, value, 64).getResult());
    for (Operation *op : rest)
      b.clone(*op, map);
    scf::YieldOp::create(b, loc);
  };
  for (auto [i, value] : llvm::enumerate(cases))
    fill(sw.getCaseRegions()[i], value);
  fill(sw.getDefaultRegion(), sentinel(cases));
  for (Operation *op : llvm::reverse(rest))
    op->erase();
}

struct AttnSpecializeRoutesPass
    : heed::impl::AttnSpecializeRoutesBase<AttnSpecializeRoutesPass> {
  void runOnOperation() override {
    SymbolTableCollection symbols;
    SmallVector<TileRouteOp> routes;
    getOperation().walk([&](TileRouteOp op) { routes.push_back(op); });
    for (TileRouteOp route : routes) {
      auto variant = symbols.lookupNearestSymbolFrom<VariantOp>(route, route.getVariantAttr());
      if (!variant || !variant.getRouteCases() || variant.getRouteCases()->empty()) {
        route.emitOpError() << "needs a routed variant with route cases";
        return signalPassFailure();
      }
      specialize(route, *variant.getRouteCases());
    }
  }
};

} // namespace
