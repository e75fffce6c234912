// Visited-block density of a mask under different tilings, by brute force
// over the actual tiles (every (q, kv) pair evaluated): the patches heed
// chooses, heed's flat 16-token tiles, the GPU mma.sync kernel's 64-row
// blocks as patches and flat, and flat 128-token tiles as FlexAttention
// uses. Prints a markdown table.
//   heed-bench-tile-density SPEC.attn SEQ
#include "heed/Compiler/Tiling.h"
#include "heed/Frontend/Parser.h"

#include <cstdio>
#include <cstdlib>

int main(int argc, char **argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s SPEC.attn SEQ\n", argv[0]);
    return 1;
  }
  int64_t seq = std::atoll(argv[2]);
  auto variants = heed::spec::parseSpecFile(argv[1], {});
  if (!variants) {
    std::fprintf(stderr, "%s\n", llvm::toString(variants.takeError()).c_str());
    return 1;
  }
  auto variant = heed::spec::selectVariant(std::move(*variants), "");
  if (!variant) {
    std::fprintf(stderr, "%s\n", llvm::toString(variant.takeError()).c_str());
    return 1;
  }
  if (!variant->buffers.empty()) {
    std::fprintf(stderr, "masks that read buffers are not supported here\n");
    return 1;
  }
  heed::KernelConfig config;
  auto patches = heed::kernelTiling(*variant, config);
  if (!patches) {
    std::fprintf(stderr, "%s\n", llvm::toString(patches.takeError()).c_str());
    return 1;
  }
  // The GPU's mma.sync kernel: 64-row blocks, 64 keys per tile (32 above
  // head dim 64), patches where the CPU takes them.
  auto gpuTiling = [&](int64_t keys) {
    heed::KernelConfig gpu;
    gpu.blockQ = 64;
    gpu.blockKV = keys;
    return heed::kernelTiling(*variant, gpu);
  };
  auto gpu64 = gpuTiling(64), gpu32 = gpuTiling(32);
  if (!gpu64 || !gpu32) {
    std::fprintf(stderr, "%s\n", llvm::toString(gpu64 ? gpu32.takeError() : gpu64.takeError()).c_str());
    return 1;
  }
  struct Row {
    const char *label;
    heed::KernelTiling tiling;
  } rows[] = {
      {"heed, patch tiles", *patches},
      {"heed, flat 16-token tiles",
       {heed::SequenceTiling::flat(16), heed::SequenceTiling::flat(16)}},
      {"GPU mma.sync D <= 64, patch tiles", *gpu64},
      {"GPU mma.sync D <= 64, flat tiles",
       {heed::SequenceTiling::flat(64), heed::SequenceTiling::flat(64)}},
      {"GPU mma.sync D > 64, patch tiles", *gpu32},
      {"GPU mma.sync D > 64, flat tiles",
       {heed::SequenceTiling::flat(64), heed::SequenceTiling::flat(32)}},
      {"flat 128-token tiles (FlexAttention's block size)",
       {heed::SequenceTiling::flat(128), heed::SequenceTiling::flat(128)}},
  };
  std::printf("| tiling | tile (q / kv) | blocks that must be visited | of | visited-block "
              "density | full blocks | pairs computed per visible pair |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- |\n");
  for (const Row &r : rows) {
    heed::MaskCensus c =
        heed::tiledMaskCensus(*variant, {1, 1, 1, seq, seq}, {}, r.tiling);
    double computed = double(c.nonEmptyBlocks) * double(r.tiling.q.tileSize()) *
                      double(r.tiling.kv.tileSize());
    std::printf("| %s | %s | %lld | %lld | %.4f | %lld | %.2f |\n", r.label,
                r.tiling.describe().c_str(), static_cast<long long>(c.nonEmptyBlocks),
                static_cast<long long>(c.totalBlocks),
                double(c.nonEmptyBlocks) / double(c.totalBlocks),
                static_cast<long long>(c.fullBlocks), computed / c.visiblePairs);
  }
  return 0;
}
