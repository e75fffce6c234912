// --attn-simplify: folds and canonicalizes the regions of attn.variant ops.
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
  void runOnOperation() override {
    MLIRContext *ctx = &getContext();
    RewritePatternSet patterns(ctx);
    for (Dialect *d : ctx->getLoadedDialects())
      d->getCanonicalizationPatterns(patterns);
    for (RegisteredOperationName op : ctx->getRegisteredOperations())
      op.getCanonicalizationPatterns(patterns, ctx);
    FrozenRewritePatternSet frozen(std::move(patterns));

    SmallVector<Operation *> variants;
    getOperation().walk([&](heed::attn::VariantOp op) { variants.push_back(op); });
    GreedyRewriteConfig config;
    config.setUseTopDownTraversal(true);
    for (Operation *op : variants) {
      // The variant is isolated from above: simplify its regions alone.
      for (Region &region : op->getRegions())
        if (failed(applyPatternsGreedily(region, frozen, config)))
          return signalPassFailure();
      IRRewriter rewriter(ctx);
      DominanceInfo dom(op);
      eliminateCommonSubExpressions(rewriter, dom, op);
    }
  }
};

} // namespace
