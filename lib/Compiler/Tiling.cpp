// The kernel's tiling seen from C++.
#include "heed/Compiler/Tiling.h"

#include "heed/Compiler/Backward.h"

#include "KernelModule.h"

#include "dialects/attn/AttnOps.h"
#include "dialects/attn/TileMath.h"
#include "heed/Pipelines/Pipelines.h"
#include "heed/Transforms/Passes.h"

#include "mlir/Pass/PassManager.h"

#include <fmt/format.h>


using namespace mlir;

namespace heed {

int64_t SequenceTiling::tileSize() const { return attn::tileSize(patch); }

int64_t SequenceTiling::numTiles(int64_t seq) const { return attn::numTiles(grid, patch, seq); }

std::vector<int64_t> SequenceTiling::tokens(int64_t tile, int64_t seq) const {
  SmallVector<int64_t> origin = attn::tileOrigin(grid, patch, tile);
  int64_t rows = attn::gridRows(grid, seq);
  std::vector<int64_t> out(tileSize());
  SmallVector<int64_t> digits(patch.size());
  for (int64_t lane = 0; lane < tileSize(); ++lane) {
    bool valid = true;
    for (size_t k = 0; k < patch.size(); ++k) {
      digits[k] = origin[k] + attn::laneDigit(patch, lane, k);
      valid = valid && digits[k] < (k == 0 ? rows : grid[k - 1]);
    }
    int64_t token = attn::tokenOf<int64_t>(grid, digits);
    out[lane] = valid && token < seq ? token : -1;
  }
  return out;
}

std::string KernelTiling::describe() const {
  auto join = [](const std::vector<int64_t> &v) {
    std::string s;
    for (int64_t x : v)
      s += (s.empty() ? "" : "x") + std::to_string(x);
    return s;
  };
  if (!patched())
    return fmt::format("flat {} x {}", q.patch[0], kv.patch[0]);
  return fmt::format("patches {} / {} on a ?x{} grid", join(q.patch), join(kv.patch),
                     join(q.grid));
}

namespace {
/// --attn-choose-tiling's choice for `variant` (after simplification) with
/// these options.
llvm::Expected<KernelTiling> chooseTiling(const spec::Variant &variant,
                                          const KernelConfig &config, int64_t blockQ,
                                          int64_t blockKV, bool patches) {
  KernelTiling tiling;
  std::unique_ptr<MLIRContext> ctx = detail::makeContext();
  OwningOpRef<ModuleOp> module = detail::buildKernelModule(*ctx, variant, config);
  PassManager pm(ctx.get());
  pm.addNestedPass<attn::VariantOp>(createAttnSimplify());
  addChooseTiling(pm, blockQ, blockKV, patches);
  if (failed(pm.run(*module)))
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "choosing the tiling failed on " + variant.name);
  module->walk([&](attn::AttentionOp op) {
    attn::TilingAttr t = op.getTilingAttr();
    tiling.q = {t.getGrid().vec(), t.getQ().vec()};
    tiling.kv = {t.getGrid().vec(), t.getKv().vec()};
  });
  return tiling;
}
} // namespace

llvm::Expected<KernelTiling> kernelTiling(const spec::Variant &variant,
                                          const KernelConfig &config) {
  // The pass decides (block-q 0 is its choice per schedule).
  CPUPipelineOptions options = detail::pipelineOptions(config);
  return chooseTiling(variant, config, options.blockQ, options.blockKV, options.patches());
}

llvm::Expected<KernelTiling> backwardTiling(const spec::Variant &variant,
                                            const KernelConfig &config) {
  auto [rows, keys] = backwardTiles(config);
  if (!config.backwardPatches())
    return KernelTiling{SequenceTiling::flat(rows), SequenceTiling::flat(keys)};
  return chooseTiling(variant, config, rows, keys, /*patches=*/true);
}

TokenTiles SequenceTiling::tiles(int64_t seq) const {
  TokenTiles out(numTiles(seq));
  for (int64_t i = 0; i < static_cast<int64_t>(out.size()); ++i)
    out[i] = tokens(i, seq);
  return out;
}

} // namespace heed
