// Decode, speculative and chunked-prefill shapes on the CPU: one kernel per
// variant, compiled once and run at many lengths (the sizes are run-time
// values), against the float64 reference on fresh random inputs (seed
// printed) with NaN-poisoned outputs; per-batch document ids visit exactly
// the brute-force minimum of blocks.
#include "heed/Compiler/Compiler.h"
#include "heed/Compiler/Tiling.h"
#include "heed/Frontend/Parser.h"
#include "heed/Runtime/Artifact.h"
#include "heed/Runtime/Reference.h"

#include "llvm/ADT/StringMap.h"
#include "llvm/TargetParser/Host.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <random>

using namespace heed;

namespace {

struct Sizes {
  int64_t batch, heads, kvHeads, seqQ, seqKV;
};

uint64_t freshSeed() {
  static uint64_t base = std::random_device{}();
  return base++;
}

std::unique_ptr<Kernel> compileOnce(const spec::Variant &variant, DType dtype,
                                    int64_t headDim = 64, Layout layout = Layout::BHSD) {
  KernelConfig config;
  config.dtype = dtype;
  config.headDim = headDim;
  config.headDimV = headDim;
  config.layout = layout;
  config.lse = true;
  auto kernel = Kernel::compile(variant, config);
  EXPECT_TRUE(static_cast<bool>(kernel)) << llvm::toString(kernel.takeError());
  return kernel ? std::move(*kernel) : nullptr;
}

spec::Variant parse(const std::string &text) {
  auto parsed = spec::parseSpec(text, "decode.attn");
  EXPECT_TRUE(static_cast<bool>(parsed)) << llvm::toString(parsed.takeError());
  auto variant = spec::selectVariant(std::move(*parsed), "");
  EXPECT_TRUE(static_cast<bool>(variant)) << llvm::toString(variant.takeError());
  return *variant;
}

/// Runs `kernel` at `s` on random inputs; checks out and lse against the
/// reference, and the visited blocks against the brute-force census.
void runAt(Kernel &kernel, const spec::Variant &variant, DType dtype, const Sizes &s,
           const std::string &fill, bool exactBlocks) {
  uint64_t seed = freshSeed();
  const int64_t d = kernel.config().headDim;
  const Layout layout = kernel.config().layout;
  std::string name = variant.name + " B=" + std::to_string(s.batch) + " H=" +
                     std::to_string(s.heads) + ":" + std::to_string(s.kvHeads) + " Sq=" +
                     std::to_string(s.seqQ) + " Skv=" + std::to_string(s.seqKV) + " D=" +
                     std::to_string(d) + (layout == Layout::BSHD ? " bshd" : "");
  SCOPED_TRACE(name + " seed=" + std::to_string(seed));
  std::printf("[ case     ] %s seed=%llu\n", name.c_str(), static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  auto shape = [&](int64_t heads, int64_t seq) -> std::vector<int64_t> {
    if (layout == Layout::BSHD)
      return {s.batch, seq, heads, d};
    return {s.batch, heads, seq, d};
  };
  HostTensor q(dtype, shape(s.heads, s.seqQ));
  HostTensor k(dtype, shape(s.kvHeads, s.seqKV));
  HostTensor v(dtype, shape(s.kvHeads, s.seqKV));
  HostTensor out(dtype, shape(s.heads, s.seqQ));
  HostTensor lse(DType::F32, {s.batch, s.heads, s.seqQ});
  q.fillUniform(rng, -2, 2);
  k.fillUniform(rng, -2, 2);
  v.fillUniform(rng, -1, 1);
  AttentionDims dims{s.batch, s.heads, s.kvHeads, s.seqQ, s.seqKV};
  std::vector<HostTensor> buffers;
  for (const spec::BufferDecl &decl : variant.buffers) {
    DType dt = DType::F32;
    ASSERT_TRUE(parseDType(spec::toString(decl.elem), dt));
    buffers.emplace_back(dt, resolveDims(decl.shape, dims));
    ASSERT_EQ(buffers.back().fill(fill, rng), "");
  }
  std::vector<TensorRef> views;
  for (HostTensor &b : buffers)
    views.push_back(b.ref());
  out.poison();
  lse.poison();
  RunStats stats;
  llvm::Error err =
      kernel.run(AttentionArgs{q.ref(), k.ref(), v.ref(), out.ref(), lse.ref(), views}, 0, &stats);
  ASSERT_FALSE(static_cast<bool>(err)) << llvm::toString(std::move(err));

  ReferenceResult ref = referenceAttention(variant, q, k, v, layout,
                                           kernel.config().effectiveScale(), buffers);
  ASSERT_EQ(ref.outOfRange, 0);
  ErrorStats e = compareOutput(out, ref.out, layout);
  EXPECT_TRUE(e.passes(dtype == DType::F32 ? ref.f32Tolerance() : 1e-2))
      << e.problem() << " max abs error " << e.maxAbs;
  ErrorStats l = compareLse(lse, ref.lse);
  EXPECT_TRUE(l.passes(1e-4)) << l.problem() << " max lse error " << l.maxAbs;

  auto tiling = kernelTiling(variant, kernel.config());
  ASSERT_TRUE(static_cast<bool>(tiling)) << llvm::toString(tiling.takeError());
  MaskCensus census = tiledMaskCensus(variant, dims, buffers, *tiling);
  EXPECT_GE(stats.visitedBlocks, census.nonEmptyBlocks);
  EXPECT_LE(stats.fullBlocks, census.fullBlocks);
  if (exactBlocks) {
    EXPECT_EQ(stats.visitedBlocks, census.nonEmptyBlocks);
  }
}

/// Decode (Sq = 1), speculative tails (Sq = 2..16), chunked prefill, and
/// more queries than keys; GQA groups of 4 and 1.
const Sizes kShapes[] = {{2, 8, 2, 1, 300},  {3, 4, 1, 1, 1},    {2, 8, 2, 2, 129},
                         {1, 4, 4, 5, 77},   {2, 8, 2, 16, 200}, {1, 4, 2, 64, 190},
                         {1, 2, 2, 40, 17}};

TEST(Decode, MasksOverLengthsFromOneKernel) {
  struct Case {
    const char *spec;
    const char *fill;
    bool exact;
  };
  const Case cases[] = {
      {"variant causal_bottom_right { mask = causal_bottom_right() }", "", true},
      {"variant window_end { mask = causal_bottom_right() && q + (Skv - Sq) - kv < 48 }", "",
       true},
      {"variant sinks_window { mask = causal_bottom_right() && (sinks(4) || "
       "kv > q + (Skv - Sq) - 33) }", "", false},
      {"variant recency { score = softcap(score, 8.0) - 0.01 * f32(Skv - kv)\n"
       " mask = causal_bottom_right() }", "", true},
      // Per-batch documents at decode: the query's own token is q + Skv - Sq.
      {"variant doc_batched { buffer doc: i32[B, Skv]\n"
       " mask = doc[b, max(q + (Skv - Sq), 0)] == doc[b, kv] && causal_bottom_right() }",
       "docs:1:40", true},
      {"variant plain { }", "", true},
  };
  for (DType dtype : {DType::F32, DType::BF16}) {
    for (const Case &c : cases) {
      spec::Variant variant = parse(c.spec);
      std::unique_ptr<Kernel> kernel = compileOnce(variant, dtype);
      ASSERT_TRUE(kernel);
      for (const Sizes &s : kShapes)
        runAt(*kernel, variant, dtype, s, c.fill, c.exact);
    }
  }
}

// Packed decode tiles of bf16 K/V read in place by AVX-512 BF16 products
// (InPlaceTiles: whole tiles in place, a sequence's last partial tile
// staged): head dims 64 to 256, GQA groups of 4 and 8 (one and two groups of
// 4 rows), speculative tails filling the 16-row tile, BSHD caches, masks with
// PARTIAL tiles. The numerics run on every CPU (elsewhere the general
// products); that the in-place products were compiled is checked only where
// the host has AVX-512 BF16, and reported SKIPPED elsewhere.
TEST(Decode, InPlaceBF16Tiles) {
  const char *specs[] = {"variant end { mask = causal_bottom_right() }",
                         "variant sinks_window { mask = causal_bottom_right() && (sinks(4) || "
                         "kv > q + (Skv - Sq) - 33) }"};
  const Sizes shapes[] = {{2, 8, 2, 1, 300}, {1, 16, 2, 1, 64}, {2, 8, 2, 4, 129},
                          {1, 4, 1, 4, 17},  {2, 8, 1, 1, 95}};
  for (const char *text : specs) {
    spec::Variant variant = parse(text);
    for (int64_t d : {64, 128, 256})
      for (Layout layout : {Layout::BHSD, Layout::BSHD}) {
        if (d == 256 && layout == Layout::BSHD)
          continue;
        std::unique_ptr<Kernel> kernel = compileOnce(variant, DType::BF16, d, layout);
        ASSERT_TRUE(kernel);
        for (const Sizes &s : shapes)
          runAt(*kernel, variant, DType::BF16, s, "", false);
      }
  }
  llvm::StringMap<bool> features = llvm::sys::getHostCPUFeatures();
  if (!features.lookup("avx512bf16"))
    GTEST_SKIP() << "SKIPPED: the host has no AVX-512 BF16: the numerics above ran the general "
                    "products; the in-place ones (x86vector.avx512.dot) are checked by "
                    "test/Conversion/TileToCPU/in-place-decode.mlir only";
  KernelConfig config;
  config.dtype = DType::BF16;
  config.headDim = config.headDimV = 128;
  auto tiled = emit(parse(specs[0]), config, Stage::Tiled);
  ASSERT_TRUE(static_cast<bool>(tiled)) << llvm::toString(tiled.takeError());
  EXPECT_NE(tiled->find("x86vector.avx512.dot"), std::string::npos);
  config.dtype = DType::F16; // no bf16 storage: the general products
  tiled = emit(parse(specs[0]), config, Stage::Tiled);
  ASSERT_TRUE(static_cast<bool>(tiled)) << llvm::toString(tiled.takeError());
  EXPECT_EQ(tiled->find("x86vector"), std::string::npos);
}

TEST(Decode, BufferShapedByTheLengths) {
  // The layout's shape follows each call's lengths; the runtime checks it.
  spec::Variant variant = parse("variant v {\n buffer layout: i8[H, cdiv(Sq, 16), cdiv(Skv, 16)]\n"
                                " mask = block_sparse(layout, 16, 16) && causal_bottom_right() }");
  std::unique_ptr<Kernel> kernel = compileOnce(variant, DType::F32);
  ASSERT_TRUE(kernel);
  for (const Sizes &s : kShapes)
    runAt(*kernel, variant, DType::F32, s, "bits:0.6", false);

  // A layout of the wrong shape for this call is an error, not a read out of range.
  HostTensor q(DType::F32, {1, 2, 3, 64}), k(DType::F32, {1, 2, 40, 64}),
      v(DType::F32, {1, 2, 40, 64}), out(DType::F32, {1, 2, 3, 64}),
      lse(DType::F32, {1, 2, 3});
  HostTensor layout(DType::I8, {2, 1, 2});
  AttentionArgs args{q.ref(), k.ref(), v.ref(), out.ref(), lse.ref(), {layout.ref()}};
  llvm::Error err = kernel->run(args);
  ASSERT_TRUE(static_cast<bool>(err));
  std::string msg = llvm::toString(std::move(err));
  EXPECT_NE(msg.find("buffer 'layout' must have shape [H, cdiv(Sq,16), cdiv(Skv,16)] = "
                     "[2, 1, 3]"),
            std::string::npos)
      << msg;
}

TEST(Decode, ShapeExpressionsSurviveTheArtifact) {
  // A kernel's description keeps each dim whole through the disk cache.
  KernelInfo info;
  info.name = "v";
  info.headDim = info.headDimV = 64;
  info.buffers.push_back({"layout", DType::I8, {"H", "cdiv(Sq,16)", "((max(Skv,4)+1)/2)"}});
  KernelInfo back;
  ASSERT_EQ(back.parse(info.serialize()), "");
  ASSERT_EQ(back.buffers.size(), 1u);
  EXPECT_EQ(back.buffers[0].shape, info.buffers[0].shape);
  EXPECT_EQ(resolveDims(back.buffers[0].shape, {2, 3, 1, 33, 7}),
            (std::vector<int64_t>{3, 3, 4}));
}

TEST(Decode, PerBatchDocumentsVisitTheMinimum) {
  // Sorted per-batch ids (packed documents of each sequence): the summaries
  // make the classifier exact, so no block beyond the brute-force minimum.
  spec::Variant variant = parse("variant v { buffer doc: i32[B, Skv]\n mask = document(doc) }");
  std::unique_ptr<Kernel> kernel = compileOnce(variant, DType::F32);
  ASSERT_TRUE(kernel);
  runAt(*kernel, variant, DType::F32, {3, 2, 1, 300, 300}, "docs:1:40", true);
  runAt(*kernel, variant, DType::F32, {2, 2, 2, 1, 500}, "docs:1:90", true);
}

} // namespace
