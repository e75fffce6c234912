// --attn-simplify: folds and canonicalizes the regions of an attn.variant
// (a pass on the variant: it is isolated from above).
#include "heed/Transforms/Passes.h"

#include "dialects/attn/AttnOps.h"

#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/IR/Dominance.h"
#include "mlir/Transforms/CSE.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace heed {
#define GEN_PASS_DEF_ATTNSIMPLIFY
#include "heed/Transforms/Passes.h.inc"
} // namespace heed

using namespace mlir;

namespace {

struct AttnSimplifyPass : heed::impl::AttnSimplifyBase<AttnSimplifyPass> {
  /// The patterns, once per pass instance (not once per variant).
  LogicalResult initialize(MLIRContext *ctx) override {
    RewritePatternSet patterns(ctx);
    for (Dialect *d : ctx->getLoadedDialects())
      d->getCanonicalizationPatterns(patterns);
    for (RegisteredOperationName op : ctx->getRegisteredOperations())
      op.getCanonicalizationPatterns(patterns, ctx);
    frozen = FrozenRewritePatternSet(std::move(patterns));
    return success();
  }

  void runOnOperation() override {
    Operation *variant = getOperation();
    GreedyRewriteConfig config;
    config.setUseTopDownTraversal(true);
    for (Region &region : variant->getRegions())
      if (failed(applyPatternsGreedily(region, frozen, config)))
        return signalPassFailure();
    IRRewriter rewriter(&getContext());
    DominanceInfo dom(variant);
    eliminateCommonSubExpressions(rewriter, dom, variant);
  }

  FrozenRewritePatternSet frozen;
};

} // namespace
