// The kernel's tiling seen from C++.
#include "heed/Compiler/Tiling.h"

#include "KernelModule.h"

#include "dialects/attn/AttnOps.h"
#include "heed/Pipelines/Pipelines.h"
#include "heed/Transforms/Passes.h"

#include "mlir/Pass/PassManager.h"

#include <fmt/format.h>


using namespace mlir;

namespace heed {

int64_t SequenceTiling::tileSize() const {
  int64_t n = 1;
  for (int64_t p : patch)
    n *= p;
  return n;
}

int64_t SequenceTiling::numTiles(int64_t seq) const {
  int64_t stride0 = 1;
  for (int64_t e : grid)
    stride0 *= e;
  int64_t rows = (seq + stride0 - 1) / stride0;
  int64_t n = (rows + patch[0] - 1) / patch[0];
  for (size_t k = 0; k < grid.size(); ++k)
    n *= (grid[k] + patch[k + 1] - 1) / patch[k + 1];
  return n;
}

std::vector<int64_t> SequenceTiling::tokens(int64_t tile, int64_t seq) const {
  size_t dims = patch.size();
  std::vector<int64_t> origin(dims), extent(dims, 0);
  for (size_t k = dims - 1; k > 0; --k) {
    extent[k] = grid[k - 1];
    int64_t m = (extent[k] + patch[k] - 1) / patch[k];
    origin[k] = tile % m * patch[k];
    tile /= m;
  }
  origin[0] = tile * patch[0];
  std::vector<int64_t> out(tileSize());
  for (int64_t lane = 0; lane < tileSize(); ++lane) {
    int64_t rest = lane, token = 0, stride = 1;
    bool valid = true;
    for (size_t k = dims; k-- > 0;) {
      int64_t d = origin[k] + rest % patch[k];
      rest /= patch[k];
      valid = valid && (k == 0 || d < extent[k]);
      token += d * stride;
      stride *= k == 0 ? 1 : extent[k];
    }
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

llvm::Expected<KernelTiling> kernelTiling(const spec::Variant &variant,
                                          const KernelConfig &config) {
  KernelTiling tiling{SequenceTiling::flat(config.blockQ), SequenceTiling::flat(config.blockKV)};
  if (!config.analyzeMask || !config.patchTiling)
    return tiling;
  std::unique_ptr<MLIRContext> ctx = detail::makeContext();
  OwningOpRef<ModuleOp> module = detail::buildKernelModule(*ctx, variant, config);
  PassManager pm(ctx.get());
  pm.addPass(createAttnSimplify());
  AttnAnalyzeMaskOptions options;
  options.blockQ = config.blockQ;
  options.blockKV = config.blockKV;
  options.patchTiling = config.patchTiling;
  pm.addPass(createAttnAnalyzeMask(options));
  if (failed(pm.run(*module)))
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "the mask analysis failed on " + variant.name);
  module->walk([&](attn::VariantOp op) {
    auto attr = op->getAttrOfType<DictionaryAttr>("patch_tiling");
    if (!attr)
      return;
    auto get = [&](StringRef name) {
      ArrayRef<int64_t> v = cast<DenseI64ArrayAttr>(attr.get(name)).asArrayRef();
      return std::vector<int64_t>(v.begin(), v.end());
    };
    tiling.q = {get("grid"), get("q_patch")};
    tiling.kv = {get("grid"), get("kv_patch")};
  });
  return tiling;
}

TokenTiles SequenceTiling::tiles(int64_t seq) const {
  TokenTiles out(numTiles(seq));
  for (int64_t i = 0; i < static_cast<int64_t>(out.size()); ++i)
    out[i] = tokens(i, seq);
  return out;
}

} // namespace heed
