// The CPU backward of a ragged batch (docs/backward.md, "Ragged batches"):
// kv_lens and q_lens on padded tensors, and packed sequences (cu_seqlens),
// each against the float64 reference with the entries' lengths, and each
// entry's gradients against the same kernel run on that entry alone (one
// length, no ragged operands). Rows past an entry's length get zeros.
#include "heed/Compiler/Backward.h"
#include "heed/Compiler/Compiler.h"
#include "heed/Runtime/Reference.h"
#include "heed/Runtime/ReferenceBackward.h"

#include "TestSpecs.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>

using namespace heed;

namespace {

// Bottom-right causal (reads each entry's Sq and Skv) with ALiBi slopes
// (a buffer gradient summed over the entries).
const char *kSpec = "variant r {\n"
                    "  buffer slopes: f32[H]\n"
                    "  score = alibi(score, slopes)\n"
                    "  mask = causal_bottom_right()\n"
                    "}\n";

struct Layouts {
  bool packed, split;
};

class BackwardRagged : public ::testing::TestWithParam<Layouts> {};

/// Entry b of a padded BHSD tensor [B, H, S, D]: its first `len` rows, as
/// [1, H, len, D].
HostTensor entryOf(const HostTensor &padded, int64_t b, int64_t len) {
  const std::vector<int64_t> &s = padded.shape();
  HostTensor out(padded.dtype(), {1, s[1], len, s[3]});
  for (int64_t h = 0; h < s[1]; ++h)
    for (int64_t i = 0; i < len; ++i)
      for (int64_t d = 0; d < s[3]; ++d)
        out.set((h * len + i) * s[3] + d, padded.get(((b * s[1] + h) * s[2] + i) * s[3] + d));
  return out;
}

TEST_P(BackwardRagged, MatchesTheReferenceAndEachEntryAlone) {
  const Layouts layouts = GetParam();
  spec::Variant variant = test::parse(kSpec);
  const int64_t B = 3, Hq = 4, Hkv = 2, D = 16, Sq = 40, Skv = 70;
  const std::vector<int64_t> qLens = {40, 1, 17}, kvLens = {70, 0, 33};
  KernelConfig one;
  one.headDim = D;
  one.lse = true;
  one.backwardSplit = layouts.split;
  KernelConfig ragged = one;
  if (layouts.packed)
    ragged.cuSeqlensQ = ragged.cuSeqlensKV = true;
  else
    ragged.qLens = ragged.kvLens = true;
  auto forward = Kernel::compile(variant, ragged);
  ASSERT_TRUE(static_cast<bool>(forward)) << llvm::toString(forward.takeError());
  auto backward = BackwardKernel::compile(variant, ragged);
  ASSERT_TRUE(static_cast<bool>(backward)) << llvm::toString(backward.takeError());
  auto alone = BackwardKernel::compile(variant, one);
  ASSERT_TRUE(static_cast<bool>(alone)) << llvm::toString(alone.takeError());
  auto forwardAlone = Kernel::compile(variant, one);
  ASSERT_TRUE(static_cast<bool>(forwardAlone)) << llvm::toString(forwardAlone.takeError());

  unsigned seed = std::random_device{}();
  std::printf("seed %u (%s%s)\n", seed, layouts.packed ? "packed" : "padded",
              layouts.split ? ", split" : "");
  std::mt19937_64 rng(seed);
  HostTensor q(DType::F32, {B, Hq, Sq, D}), k(DType::F32, {B, Hkv, Skv, D});
  HostTensor v(DType::F32, {B, Hkv, Skv, D}), dout(DType::F32, {B, Hq, Sq, D});
  for (HostTensor *t : {&q, &k, &v, &dout})
    t->fillUniform(rng, -1, 1);
  HostTensor slopes(DType::F32, {Hq});
  slopes.fillUniform(rng, 0, 0.5);
  HostTensor out(DType::F32, q.shape()), lse(DType::F32, {B, Hq, Sq});
  HostTensor dq(DType::F32, q.shape()), dk(DType::F32, k.shape()), dv(DType::F32, v.shape());
  HostTensor dslopes(DType::F32, {Hq});
  HostTensor qLensT(DType::I32, {B}), kvLensT(DType::I32, {B});
  for (int64_t b = 0; b < B; ++b)
    qLensT.set(b, double(qLens[size_t(b)])), kvLensT.set(b, double(kvLens[size_t(b)]));

  // The call, padded or packed (then every row tensor end to end).
  HostTensor cuQ, cuKV, pq, pk, pv, pout, plse, pdout, pdq, pdk, pdv;
  AttentionArgs fwd{q.ref(), k.ref(), v.ref(), out.ref(), lse.ref(), {slopes.ref()}};
  BackwardArgs bwd;
  if (layouts.packed) {
    pq = packSequences(q, qLens, Layout::BHSD, 0, &cuQ);
    pk = packSequences(k, kvLens, Layout::BHSD, 0, &cuKV);
    pv = packSequences(v, kvLens, Layout::BHSD, 0);
    pout = packSequences(out, qLens, Layout::BHSD, 0);
    plse = packSequences(lse, qLens, Layout::BHSD, 0);
    pdout = packSequences(dout, qLens, Layout::BHSD, 0);
    pdq = packSequences(dq, qLens, Layout::BHSD, 0);
    pdk = packSequences(dk, kvLens, Layout::BHSD, 0);
    pdv = packSequences(dv, kvLens, Layout::BHSD, 0);
    fwd = AttentionArgs{pq.ref(), pk.ref(), pv.ref(), pout.ref(), plse.ref(), {slopes.ref()}};
    fwd.cuSeqlensQ = cuQ.ref(), fwd.cuSeqlensKV = cuKV.ref();
    bwd = BackwardArgs::of(fwd, pdout.ref(), pdq.ref(), pdk.ref(), pdv.ref(), {dslopes.ref()});
  } else {
    fwd.qLens = qLensT.ref(), fwd.kvLens = kvLensT.ref();
    bwd = BackwardArgs::of(fwd, dout.ref(), dq.ref(), dk.ref(), dv.ref(), {dslopes.ref()});
  }
  for (HostTensor *t : {&dq, &dk, &dv, &pdq, &pdk, &pdv, &dslopes})
    if (t->size())
      t->poison();
  if (llvm::Error err = (*forward)->run(fwd, 2))
    FAIL() << llvm::toString(std::move(err));
  RunStats stats;
  if (llvm::Error err = (*backward)->run(bwd, 2, &stats))
    FAIL() << llvm::toString(std::move(err));
  if (layouts.packed) { // back into padded tensors, zero past each entry
    for (HostTensor *t : {&dq, &dk, &dv})
      for (int64_t i = 0; i < t->size(); ++i)
        t->set(i, 0);
    unpackSequences(pdq, qLens, Layout::BHSD, dq);
    unpackSequences(pdk, kvLens, Layout::BHSD, dk);
    unpackSequences(pdv, kvLens, Layout::BHSD, dv);
  }

  // Against the float64 reference of the entries' lengths.
  BackwardProblem problem =
      backwardProblem(q, k, v, dout, Layout::BHSD, one.effectiveScale(), {slopes});
  problem.qLens = qLens;
  problem.kvLens = kvLens;
  ReferenceGradients ref = referenceBackward(variant, problem);
  ASSERT_EQ(ref.outOfRange, 0);
  auto values = [](const HostTensor &t) {
    std::vector<double> out(size_t(t.size()));
    for (int64_t i = 0; i < t.size(); ++i)
      out[size_t(i)] = t.get(i);
    return out;
  };
  for (auto [name, got, want] : {std::tuple{"dq", &dq, &ref.dq}, std::tuple{"dk", &dk, &ref.dk},
                                 std::tuple{"dv", &dv, &ref.dv}}) {
    double err = normwiseError(values(*got), *want);
    std::printf("%s normwise error %.3g\n", name, err);
    EXPECT_LE(err, 1e-5) << name << " (seed " << seed << ")";
  }
  double slopeErr = normwiseError(values(dslopes), ref.dBuffers[0]);
  std::printf("dslopes normwise error %.3g\n", slopeErr);
  EXPECT_LE(slopeErr, 1e-4) << "(seed " << seed << ")";

  // Each entry alone: the same kernel's tiles on one length. Rows past the
  // entry's length are 0; its own rows agree to rounding.
  for (int64_t b = 0; b < B; ++b) {
    int64_t nq = qLens[size_t(b)], nk = kvLens[size_t(b)];
    if (nq == 0)
      continue;
    HostTensor eq = entryOf(q, b, nq), ek = entryOf(k, b, nk), ev = entryOf(v, b, nk);
    HostTensor edout = entryOf(dout, b, nq);
    HostTensor eout(DType::F32, eq.shape()), elseOut(DType::F32, {1, Hq, nq});
    HostTensor edq(DType::F32, eq.shape()), edk(DType::F32, ek.shape()),
        edv(DType::F32, ev.shape()), eslopes(DType::F32, {Hq});
    AttentionArgs efwd{eq.ref(), ek.ref(), ev.ref(), eout.ref(), elseOut.ref(), {slopes.ref()}};
    if (llvm::Error err = (*forwardAlone)->run(efwd, 1))
      FAIL() << llvm::toString(std::move(err));
    BackwardArgs ebwd =
        BackwardArgs::of(efwd, edout.ref(), edq.ref(), edk.ref(), edv.ref(), {eslopes.ref()});
    if (llvm::Error err = (*alone)->run(ebwd, 1))
      FAIL() << llvm::toString(std::move(err));
    auto compare = [&](const char *name, const HostTensor &batch, const HostTensor &entry,
                       int64_t heads, int64_t len, int64_t capacity) {
      // (NaN-safe: a poisoned row left unwritten fails both.)
      double worst = 0;
      int64_t nonZeroPast = 0;
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < capacity; ++i)
          for (int64_t d = 0; d < D; ++d) {
            double got = batch.get(((b * heads + h) * capacity + i) * D + d);
            if (i >= len) {
              nonZeroPast += !(got == 0);
              continue;
            }
            double want = entry.get((h * len + i) * D + d);
            double err = std::fabs(got - want) / std::max(1.0, std::fabs(want));
            worst = err <= worst ? worst : err; // NaN sticks
          }
      EXPECT_LE(worst, 1e-5) << name << " of entry " << b << " (seed " << seed << ")";
      EXPECT_EQ(nonZeroPast, 0) << name << " past entry " << b << "'s length";
    };
    compare("dq", dq, edq, Hq, nq, Sq);
    compare("dk", dk, edk, Hkv, nk, Skv);
    compare("dv", dv, edv, Hkv, nk, Skv);
  }
  // Blocks: each entry's own tiles; an entry without queries or keys none.
  EXPECT_GT(stats.visitedBlocks, 0);
  EXPECT_LE(stats.visitedBlocks, stats.totalBlocks);
}

INSTANTIATE_TEST_SUITE_P(Layouts, BackwardRagged,
                         ::testing::Values(Layouts{false, false}, Layouts{true, false},
                                           Layouts{false, true}, Layouts{true, true}),
                         [](const ::testing::TestParamInfo<Layouts> &info) {
                           return std::string(info.param.packed ? "Packed" : "Padded") +
                                  (info.param.split ? "Split" : "Fused");
                         });

TEST(BackwardRagged, LengthsForAKernelOfOneLengthAreRefused) {
  // Ignored, they would give one long sequence attending across entries.
  spec::Variant variant = test::parse(kSpec);
  KernelConfig config;
  config.headDim = 16;
  auto backward = BackwardKernel::compile(variant, config);
  ASSERT_TRUE(static_cast<bool>(backward)) << llvm::toString(backward.takeError());
  HostTensor q(DType::F32, {1, 2, 8, 16}), lse(DType::F32, {1, 2, 8}), slopes(DType::F32, {2});
  HostTensor dslopes(DType::F32, {2}), cu(DType::I32, {3});
  for (int64_t i = 0; i < q.size(); ++i)
    q.set(i, 0.5);
  cu.set(0, 0), cu.set(1, 3), cu.set(2, 8);
  AttentionArgs fwd{q.ref(), q.ref(), q.ref(), q.ref(), lse.ref(), {slopes.ref()}};
  fwd.cuSeqlensKV = cu.ref();
  BackwardArgs args = BackwardArgs::of(fwd, q.ref(), q.ref(), q.ref(), q.ref(), {dslopes.ref()});
  llvm::Error err = (*backward)->run(args, 1);
  ASSERT_TRUE(static_cast<bool>(err));
  std::string message = llvm::toString(std::move(err));
  EXPECT_NE(message.find("cu_seqlens_kv was given, but the backward was compiled for batches of "
                         "one length"),
            std::string::npos)
      << message;
}

TEST(BackwardRagged, APagedCacheIsRefused) {
  spec::Variant variant = test::parse(kSpec);
  KernelConfig config;
  config.headDim = 16;
  config.kvLens = true;
  config.pageSize = 16;
  auto backward = BackwardKernel::compile(variant, config);
  ASSERT_FALSE(static_cast<bool>(backward));
  std::string message = llvm::toString(backward.takeError());
  EXPECT_NE(message.find("not as a paged KV cache"), std::string::npos) << message;
}

} // namespace
