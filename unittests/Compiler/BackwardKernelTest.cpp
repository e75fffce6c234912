// The CPU backward kernel (BackwardKernel) against the float64 reference
// backward for each normalization: softmax, softmax with a sink logit
// (whose buffer gets a gradient), softmax_off_by_one and sigmoid; ALiBi
// slopes in bf16, and bf16 with the forward's f32 output (outF32).
#include "heed/Compiler/Backward.h"
#include "heed/Compiler/Compiler.h"
#include "heed/Compiler/Tiling.h"
#include "heed/Runtime/ReferenceBackward.h"

#include "TestSpecs.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <random>

using namespace heed;

namespace {

struct Case {
  const char *name, *spec;
  int64_t headsQ, headsKV, seqQ, seqKV;
  DType dtype;
  /// The forward writes out in f32 (KernelConfig::outF32): delta is then
  /// exact, and every gradient must be within the storage's base bound
  /// (1e-2 for bf16), the buffers' gradients included.
  bool outF32 = false;
  /// The buffers' values: uniform in [bufferLo, 1].
  double bufferLo = -1;
};

std::vector<double> values(const HostTensor &t) {
  std::vector<double> out(size_t(t.size()));
  for (int64_t i = 0; i < t.size(); ++i)
    out[size_t(i)] = t.get(i);
  return out;
}

/// Each case with the CPU's one KV-major kernel, and split: the GPUs' two
/// kernels (dQ, then dK/dV with key-major tiles; docs/backward.md, "GPU
/// kernels"), the tile IR the GPU lowers, run on the CPU.
class BackwardKernelNormalizations : public ::testing::TestWithParam<std::tuple<Case, bool>> {};

TEST_P(BackwardKernelNormalizations, MatchesTheReference) {
  const Case &c = std::get<0>(GetParam());
  spec::Variant variant = test::parse(c.spec);
  KernelConfig config;
  config.backwardSplit = std::get<1>(GetParam());
  config.dtype = c.dtype;
  config.headDim = 32;
  config.lse = true;
  KernelConfig forwardConfig = config;
  forwardConfig.outF32 = c.outF32;
  auto forward = Kernel::compile(variant, forwardConfig);
  ASSERT_TRUE(static_cast<bool>(forward)) << llvm::toString(forward.takeError());
  KernelConfig backwardConfig = config;
  backwardConfig.outF32 = c.outF32; // the dtype of the out it reads (split)
  auto backward = BackwardKernel::compile(variant, backwardConfig);
  ASSERT_TRUE(static_cast<bool>(backward)) << llvm::toString(backward.takeError());

  unsigned seed = std::random_device{}();
  std::printf("seed %u\n", seed);
  std::mt19937_64 rng(seed);
  const int64_t B = 2, D = config.headDim;
  HostTensor q(c.dtype, {B, c.headsQ, c.seqQ, D}), k(c.dtype, {B, c.headsKV, c.seqKV, D});
  HostTensor v(c.dtype, {B, c.headsKV, c.seqKV, D}), dout(c.dtype, {B, c.headsQ, c.seqQ, D});
  HostTensor out(c.outF32 ? DType::F32 : c.dtype, {B, c.headsQ, c.seqQ, D});
  HostTensor lse(DType::F32, {B, c.headsQ, c.seqQ});
  HostTensor dq(c.dtype, q.shape()), dk(c.dtype, k.shape()), dv(c.dtype, v.shape());
  for (HostTensor *t : {&q, &k, &v, &dout})
    t->fillUniform(rng, -1, 1);
  AttentionDims dims{B, c.headsQ, c.headsKV, c.seqQ, c.seqKV};
  std::vector<HostTensor> buffers;
  for (const spec::BufferDecl &decl : variant.buffers) {
    ASSERT_EQ(decl.elem, spec::ElemType::F32) << "the cases use f32 buffers";
    buffers.emplace_back(DType::F32, resolveDims(decl.shape, dims));
    buffers.back().fillUniform(rng, c.bufferLo, 1);
  }
  const std::vector<unsigned> &gradBuffers = (*backward)->gradientBuffers();
  std::vector<HostTensor> grads;
  for (unsigned g : gradBuffers)
    grads.emplace_back(DType::F32, buffers[g].shape());

  AttentionArgs fwd{q.ref(), k.ref(), v.ref(), out.ref(), lse.ref(), {}};
  for (HostTensor &b : buffers)
    fwd.buffers.push_back(b.ref());
  std::vector<TensorRef> gradRefs;
  for (HostTensor &g : grads)
    gradRefs.push_back(g.ref());
  BackwardArgs bwd = BackwardArgs::of(fwd, dout.ref(), dq.ref(), dk.ref(), dv.ref(), gradRefs);
  for (HostTensor *t : {&out, &lse, &dq, &dk, &dv})
    t->poison();
  for (HostTensor &g : grads)
    g.poison();
  if (llvm::Error err = (*forward)->run(fwd, 2))
    FAIL() << llvm::toString(std::move(err));
  if (llvm::Error err = (*backward)->run(bwd, 2))
    FAIL() << llvm::toString(std::move(err));

  // Against the exact gradients, with the tolerance the storage allows
  // (gradientTolerance: delta from a rounded out moves them); and against
  // the gradients of the kernel's own stored out, where only the
  // backward's rounding remains: the base tolerance, for every gradient.
  BackwardProblem problem =
      backwardProblem(q, k, v, dout, Layout::BHSD, config.effectiveScale(), buffers);
  problem.deltaSensitivity = !c.outF32;
  ReferenceGradients exact = referenceBackward(variant, problem);
  problem.storedOut = bhsdValues(out, Layout::BHSD);
  problem.deltaSensitivity = false;
  ReferenceGradients stored = referenceBackward(variant, problem);
  ASSERT_EQ(exact.outOfRange, 0);
  auto check = [&](const std::string &what, const std::vector<double> &got,
                   const std::vector<double> &want, const std::vector<double> &wantStored,
                   double deltaRms, const std::vector<double> *magnitudes = nullptr) {
    double err = normwiseError(got, want), errStored = normwiseError(got, wantStored);
    double tolerance = gradientTolerance(c.dtype, exact.maxAbsScore, deltaRms, want, magnitudes);
    double base = gradientTolerance(c.dtype, exact.maxAbsScore, 0, want, magnitudes);
    std::printf("%s %s: normwise error %.3g (tolerance %.3g); given the stored out %.3g\n",
                c.name, what.c_str(), err, tolerance, errStored);
    EXPECT_LE(err, tolerance) << what << " of " << c.name << " (seed " << seed << ")";
    // The bound, normwise: 1e-5 in f32, 1e-2 in bf16 with the f32
    // output (from a bf16 out, delta alone moves the gradients more).
    if (c.outF32 || c.dtype == DType::F32)
      EXPECT_LE(err, c.dtype == DType::F32 ? 1e-5 : 1e-2)
          << what << " of " << c.name << " (seed " << seed << ")";
    EXPECT_LE(errStored, base) << what << " of " << c.name << " (seed " << seed << ")";
  };
  check("dq", bhsdValues(dq, Layout::BHSD), exact.dq, stored.dq, exact.deltaRms.dq);
  check("dk", bhsdValues(dk, Layout::BHSD), exact.dk, stored.dk, exact.deltaRms.dk);
  check("dv", bhsdValues(dv, Layout::BHSD), exact.dv, stored.dv, 0);
  for (size_t i = 0; i < gradBuffers.size(); ++i) {
    unsigned g = gradBuffers[i];
    check("d" + variant.buffers[g].name, values(grads[i]), exact.dBuffers[g], stored.dBuffers[g],
          exact.deltaRms.dBuffers[g], &exact.dBufferMagnitudes[g]);
  }
}

// `q >= kv + 3` leaves the first rows without a key (output 0, the sink's
// whole weight); odd lengths leave holes in the last tiles.
const Case cases[] = {
    {"sink_gqa",
     "variant s { buffer sinks: f32[H]\n normalize = softmax(sink = sinks[h])\n"
     " mask = q >= kv + 3 }",
     4, 2, 37, 37, DType::F32},
    {"sink_expression_alibi_window",
     "variant s { buffer sinks: f32[H]\n buffer slopes: f32[H]\n"
     " normalize = softmax(sink = 2.0 * tanh(sinks[h]) - slopes[h])\n"
     " score = alibi(score, slopes)\n mask = sliding_window(9) }",
     2, 2, 45, 45, DType::F32},
    {"sink_bf16",
     "variant s { buffer sinks: f32[H]\n normalize = softmax(sink = sinks[h])\n"
     " mask = causal() }",
     4, 2, 40, 40, DType::BF16},
    {"off_by_one_window",
     "variant o { normalize = softmax_off_by_one\n mask = sliding_window(7) }", 4, 1, 33, 33,
     DType::F32},
    {"sigmoid_relative_bias",
     "variant g { buffer table: f32[H, 9]\n normalize = sigmoid(bias = -3.0)\n"
     " score = relative_bias(score, table, 4)\n mask = causal() }",
     4, 2, 39, 39, DType::F32},
    {"sigmoid_softcap_window",
     "variant g { normalize = sigmoid\n score = softcap(score, 2.0)\n"
     " mask = sliding_window(11) }",
     2, 2, 30, 41, DType::F32},
    // The slopes' gradient cancels heavily: computed from the bf16 out,
    // delta moves it by several percent (docs/backward.md, "Accuracy").
    {"alibi_bf16", "variant a { buffer slopes: f32[H]\n score = alibi(score, slopes)\n"
                   " mask = causal() }",
     4, 2, 100, 100, DType::BF16},
    {"sigmoid_bf16", "variant g { normalize = sigmoid(bias = -1.0)\n mask = causal() }", 4, 2, 40,
     40, DType::BF16},
    // The same slopes, and a learned bias table, with the f32 output.
    {"alibi_bf16_f32_out",
     "variant a { buffer slopes: f32[H]\n score = alibi(score, slopes)\n mask = causal() }", 4,
     2, 100, 100, DType::BF16, /*outF32=*/true},
    // f32 ALiBi with ALiBi's slopes (positive: a penalty growing with the
    // distance) and a learned bias table, at a length where the distances
    // reach 127: both within 1e-5. (Slopes of the other sign make the far
    // keys dominate with scores near 127; then the f32 scores' own rounding,
    // about 6e-8 * 127 * log2(e), bounds every f32 kernel's gradients near
    // 1e-5: docs/backward.md, "Accuracy".)
    {"alibi_f32", "variant a { buffer slopes: f32[H]\n score = alibi(score, slopes)\n"
                  " mask = causal() }",
     4, 2, 128, 128, DType::F32, /*outF32=*/false, /*bufferLo=*/0},
    {"relative_bias_f32",
     "variant r { buffer table: f32[H, 9]\n score = relative_bias(score, table, 4)\n"
     " mask = causal() }",
     4, 2, 128, 128, DType::F32},
    // Per-token head gating (MoH) beside ALiBi: dout scaled by each row's
    // gate, the router's gradient rowsum(dout * out) / g (the host's).
    {"gated_alibi",
     "variant g { buffer router: f32[B, Sq, H]\n buffer slopes: f32[H]\n"
     " gate = router[b, q, h]\n score = alibi(score, slopes)\n mask = causal() }",
     4, 2, 41, 41, DType::F32, /*outF32=*/false, /*bufferLo=*/0},
    // The router read by the score too: the kernel's gradient of it and the
    // host's gate term add up in one slot.
    {"gated_router_in_score",
     "variant g { buffer router: f32[B, Sq, H]\n gate = router[b, q, h]\n"
     " score = score + 0.5 * router[b, q, h]\n mask = causal() }",
     4, 2, 35, 35, DType::F32},
    {"gated_sigmoid_sink",
     "variant g { buffer router: f32[B, Sq, H]\n normalize = sigmoid(bias = -1.0)\n"
     " gate = router[b, q, h]\n mask = sliding_window(13) }",
     2, 2, 37, 37, DType::F32},
    {"gated_sink",
     "variant g { buffer router: f32[B, Sq, H]\n buffer sinks: f32[H]\n"
     " normalize = softmax(sink = sinks[h])\n gate = router[b, q, h]\n mask = causal() }",
     4, 2, 39, 39, DType::F32},
    {"relative_bias_bf16_f32_out",
     "variant r { buffer table: f32[H, 9]\n score = relative_bias(score, table, 4)\n"
     " mask = causal() }",
     4, 2, 77, 77, DType::BF16, /*outF32=*/true},
    // Neighborhoods: the one loop walks patches of the grid (4 x 1 x 4
    // query and 8 x 1 x 8 key patches of the dilated 2-D grid, 2 x 4 x 2 and
    // 8 x 4 x 2 of the 3-D one), the split kernels flat tiles; a learned
    // table and a sink logit get their gradients through either.
    {"neighborhood_2d_dilated_bias",
     "variant n { buffer table: f32[H, 41]\n"
     " score = relative_bias(score, table, 20)\n"
     " mask = neighborhood_2d(10, 24, kh=5, kw=7, dh=2) }",
     4, 2, 240, 240, DType::F32},
    {"neighborhood_3d_sink",
     "variant n { buffer sinks: f32[H]\n normalize = softmax(sink = sinks[h])\n"
     " mask = neighborhood_3d(4, 6, 5, k0=3, k1=3, k2=3) }",
     2, 2, 120, 120, DType::BF16, /*outF32=*/true},
};

INSTANTIATE_TEST_SUITE_P(Variants, BackwardKernelNormalizations,
                         ::testing::Combine(::testing::ValuesIn(cases), ::testing::Bool()),
                         [](const auto &info) {
                           return std::string(std::get<0>(info.param).name) +
                                  (std::get<1>(info.param) ? "_split" : "");
                         });

/// The blocks one backward run visits.
int64_t visitedBlocks(const spec::Variant &variant, const KernelConfig &config,
                      const AttentionDims &dims, std::mt19937_64 &rng) {
  auto backward = BackwardKernel::compile(variant, config);
  if (!backward) {
    ADD_FAILURE() << llvm::toString(backward.takeError());
    return -1;
  }
  const int64_t D = config.headDim;
  HostTensor q(DType::F32, {dims.batch, dims.headsQ, dims.seqQ, D});
  HostTensor k(DType::F32, {dims.batch, dims.headsKV, dims.seqKV, D}), v(k.dtype(), k.shape());
  HostTensor out(q.dtype(), q.shape()), dout(q.dtype(), q.shape()), dq(q.dtype(), q.shape());
  HostTensor dk(k.dtype(), k.shape()), dv(k.dtype(), k.shape());
  HostTensor lse(DType::F32, {dims.batch, dims.headsQ, dims.seqQ});
  for (HostTensor *t : {&q, &k, &v, &out, &dout, &lse})
    t->fillUniform(rng, -1, 1);
  BackwardArgs args{q.ref(), k.ref(), v.ref(), out.ref(), lse.ref(), dout.ref(),
                    {},      dq.ref(), dk.ref(), dv.ref(), {}};
  RunStats stats;
  if (llvm::Error err = (*backward)->run(args, 2, &stats)) {
    ADD_FAILURE() << llvm::toString(std::move(err));
    return -1;
  }
  return stats.visitedBlocks;
}

// A 2-D neighborhood (17 x 17 window on a 32 x 48 grid): the one loop walks
// patches and visits exactly the non-EMPTY patch blocks the brute-force
// census counts, fewer than flat tiles visit (2544 of a 2528 minimum).
TEST(BackwardKernel, NeighborhoodPatchesVisitTheirMinimum) {
  spec::Variant variant =
      test::parse("variant n { mask = neighborhood_2d(32, 48, kh=17, kw=17) }");
  unsigned seed = std::random_device{}();
  std::printf("seed %u\n", seed);
  std::mt19937_64 rng(seed);
  AttentionDims dims{1, 2, 2, 32 * 48, 32 * 48};
  KernelConfig config;
  config.headDim = 16;
  int64_t visited[2], minimum[2];
  for (bool patches : {true, false}) {
    config.patchTiling = patches;
    auto tiling = backwardTiling(variant, config);
    ASSERT_TRUE(static_cast<bool>(tiling)) << llvm::toString(tiling.takeError());
    EXPECT_EQ(tiling->patched(), patches) << tiling->describe();
    MaskCensus census = tiledMaskCensus(variant, dims, {}, *tiling);
    visited[patches] = visitedBlocks(variant, config, dims, rng);
    minimum[patches] = census.nonEmptyBlocks;
    std::printf("%s: %lld blocks visited, minimum %lld\n", tiling->describe().c_str(),
                static_cast<long long>(visited[patches]),
                static_cast<long long>(minimum[patches]));
    // (Flat tiles see the grid through a band of rows: the analysis of
    // their boxes is conservative there, a few blocks above the minimum.)
    if (patches)
      EXPECT_EQ(visited[patches], minimum[patches]);
    else
      EXPECT_GE(visited[patches], minimum[patches]);
  }
  EXPECT_LT(visited[1], visited[0]);
}

TEST(BackwardKernel, BuffersAreCheckedAsTheForwardChecksThem) {
  // A gated variant's router is read, and its gradient written, by the
  // host: a router of the wrong shape is an error, not an overflow.
  spec::Variant v = test::parse(
      "variant g { buffer router: f32[B, Sq, H]\n gate = router[b, q, h]\n mask = causal() }");
  KernelConfig config;
  config.headDim = config.headDimV = 16;
  auto backward = BackwardKernel::compile(v, config);
  ASSERT_TRUE(static_cast<bool>(backward)) << llvm::toString(backward.takeError());
  const int64_t B = 2, H = 2, S = 20;
  HostTensor q(DType::F32, {B, H, S, 16}), out(q.dtype(), q.shape()), dout(q.dtype(), q.shape());
  HostTensor dq(q.dtype(), q.shape()), dk(q.dtype(), q.shape()), dv(q.dtype(), q.shape());
  HostTensor lse(DType::F32, {B, H, S});
  HostTensor router(DType::F32, {1, S, H}), drouter(DType::F32, {1, S, H});
  BackwardArgs args{q.ref(), q.ref(), q.ref(), out.ref(), lse.ref(), dout.ref(),
                    {router.ref()}, dq.ref(), dk.ref(), dv.ref(), {drouter.ref()}};
  llvm::Error err = (*backward)->run(args, 1);
  ASSERT_TRUE(static_cast<bool>(err));
  std::string message = llvm::toString(std::move(err));
  EXPECT_NE(message.find("buffer 'router' must have shape [B, Sq, H] = [2, 20, 2]"),
            std::string::npos)
      << message;
}

TEST(BackwardKernel, SinkNotDifferentiableInItsBufferIsACompileError) {
  spec::Variant v = test::parse(
      "variant s { buffer sinks: f32[H]\n"
      " normalize = softmax(sink = select(sinks[h] > 0.0, 1.0, -1.0))\n mask = causal() }");
  auto backward = BackwardKernel::compile(v, KernelConfig{});
  ASSERT_FALSE(static_cast<bool>(backward));
  std::string message = llvm::toString(backward.takeError());
  EXPECT_NE(message.find("not differentiable in buffer 'sinks'"), std::string::npos) << message;
}

} // namespace
