// The backward kernel through the kernel cache (BackwardKernel::compile,
// KernelCache::getKind): memory and disk hits, corrupt and foreign entries
// rebuilt, never trusted, and a forward and a backward of one variant under
// different keys. Each kernel that comes back is checked against the
// float64 reference backward.
#include "heed/Compiler/Backward.h"
#include "heed/Compiler/KernelCache.h"
#include "heed/Runtime/ReferenceBackward.h"

#include "CacheFiles.h"
#include "TestSpecs.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <random>

using namespace heed;

namespace {

using test::readBytes;
using test::TempDir;
using test::writeBytes;

/// The entry files of the disk cache under `dir`.
std::vector<std::string> entriesIn(const std::string &dir) {
  std::vector<std::string> out;
  for (const std::string &name : test::filesIn(dir))
    out.push_back(dir + "/v" + std::to_string(kCacheFormatVersion) + "/" + name);
  return out;
}

/// Forward (with lse) and `backward` on fresh random inputs (seed printed,
/// outputs poisoned); dq, dk, dv and the slopes' gradient against the
/// float64 reference.
void expectGradientsRight(const BackwardKernel &backward, const spec::Variant &variant,
                          KernelConfig config, int64_t seq) {
  config.lse = true;
  auto forward = Kernel::compile(variant, config);
  ASSERT_TRUE(static_cast<bool>(forward)) << llvm::toString(forward.takeError());
  unsigned seed = std::random_device{}();
  std::printf("seed %u\n", seed);
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const int64_t D = config.headDim;
  HostTensor q(DType::F32, {1, 2, seq, D}), k(DType::F32, {1, 2, seq, D}),
      v(DType::F32, {1, 2, seq, D}), dout(DType::F32, {1, 2, seq, D});
  HostTensor out(DType::F32, {1, 2, seq, D}), lse(DType::F32, {1, 2, seq});
  HostTensor dq(DType::F32, q.shape()), dk(DType::F32, k.shape()), dv(DType::F32, v.shape());
  HostTensor slopes(DType::F32, {2}), dslopes(DType::F32, {2});
  for (HostTensor *t : {&q, &k, &v, &dout})
    t->fillUniform(rng, -1, 1);
  slopes.fillUniform(rng, 0.05, 0.5);
  for (HostTensor *t : {&out, &lse, &dq, &dk, &dv, &dslopes})
    t->poison();
  AttentionArgs fwd{q.ref(), k.ref(), v.ref(), out.ref(), lse.ref(), {slopes.ref()}};
  if (llvm::Error err = (*forward)->run(fwd, 2))
    FAIL() << llvm::toString(std::move(err));
  ASSERT_EQ(backward.gradientBuffers(), std::vector<unsigned>{0});
  BackwardArgs bwd{q.ref(),  k.ref(),  v.ref(),  out.ref(), lse.ref(), dout.ref(), {slopes.ref()},
                   dq.ref(), dk.ref(), dv.ref(), {dslopes.ref()}};
  if (llvm::Error err = backward.run(bwd, 2))
    FAIL() << llvm::toString(std::move(err));
  ReferenceGradients ref = referenceBackward(
      variant, backwardProblem(q, k, v, dout, Layout::BHSD, config.effectiveScale(), {slopes}));
  double tolerance = gradientTolerance(DType::F32, ref.maxAbsScore, 0, ref.dq);
  EXPECT_LE(normwiseError(bhsdValues(dq, Layout::BHSD), ref.dq), tolerance);
  EXPECT_LE(normwiseError(bhsdValues(dk, Layout::BHSD), ref.dk), tolerance);
  EXPECT_LE(normwiseError(bhsdValues(dv, Layout::BHSD), ref.dv), tolerance);
  // The slopes' gradient, 2 sums over every (q, kv) pair of dS (kv - q),
  // cancels: its f32 error reaches 1.5e-5 on some inputs (1 run in ~15;
  // docs/backward.md, "Accuracy (f32)"). This test is about the cache;
  // BackwardKernelTest holds the accuracy bounds.
  EXPECT_LE(normwiseError(bhsdValues(dslopes, Layout::BHSD), ref.dBuffers[0]), 5 * tolerance);
}

struct BackwardCacheTest : ::testing::Test {
  TempDir dir;
  spec::Variant variant = test::parse("variant bwd_cache_test { buffer slopes: f32[H]\n"
                                      " score = alibi(score, slopes)\n mask = causal() }");
  KernelConfig config;

  /// The backward through a cache over `dir` with a cold memory (a new
  /// process, in effect).
  std::unique_ptr<BackwardKernel> compileFresh(CacheStats *stats = nullptr) {
    KernelCache cache(dir.path, 1 << 30, 4);
    auto got = BackwardKernel::compile(variant, config, &cache);
    EXPECT_TRUE(static_cast<bool>(got)) << llvm::toString(got.takeError());
    if (stats)
      *stats = cache.stats();
    return got ? std::move(*got) : nullptr;
  }

  /// The one entry a backward compile leaves in `dir`.
  std::string entryPath() {
    std::vector<std::string> entries = entriesIn(dir.path);
    EXPECT_EQ(entries.size(), 1u);
    return entries.empty() ? "" : entries[0];
  }

  /// With the entry damaged or foreign, a fresh cache rejects it (one
  /// rejection, a warning mentioning `inWarning`), compiles anew, and the
  /// kernel is right.
  void expectRejectedAndRebuilt(const std::string &inWarning) {
    CacheStats stats;
    testing::internal::CaptureStderr();
    std::unique_ptr<BackwardKernel> kernel = compileFresh(&stats);
    std::string warning = testing::internal::GetCapturedStderr();
    ASSERT_TRUE(kernel);
    EXPECT_EQ(kernel->cacheOutcome(), CacheOutcome::Compiled);
    EXPECT_EQ(stats.rejectedEntries, 1u);
    EXPECT_NE(warning.find(inWarning), std::string::npos) << warning;
    expectGradientsRight(*kernel, variant, config, 45);
  }
};

TEST_F(BackwardCacheTest, CompiledThenMemoryThenDiskHits) {
  KernelCache cache(dir.path, 1 << 30, 4);
  auto first = BackwardKernel::compile(variant, config, &cache);
  ASSERT_TRUE(static_cast<bool>(first)) << llvm::toString(first.takeError());
  EXPECT_EQ((*first)->cacheOutcome(), CacheOutcome::Compiled);
  auto second = BackwardKernel::compile(variant, config, &cache);
  ASSERT_TRUE(static_cast<bool>(second));
  EXPECT_EQ((*second)->cacheOutcome(), CacheOutcome::MemoryHit);
  EXPECT_LT((*second)->compileSeconds(), (*first)->compileSeconds());
  // lse does not change the backward: the same kernel. Patch tiling does
  // (the one loop walks a neighborhood's patches): another entry.
  KernelConfig withLse = config;
  withLse.lse = true;
  auto third = BackwardKernel::compile(variant, withLse, &cache);
  ASSERT_TRUE(static_cast<bool>(third));
  EXPECT_EQ((*third)->cacheOutcome(), CacheOutcome::MemoryHit);
  EXPECT_EQ(cache.stats().compiles, 1u);
  KernelConfig flat = config;
  flat.patchTiling = !config.patchTiling;
  auto fourth = BackwardKernel::compile(variant, flat, &cache);
  ASSERT_TRUE(static_cast<bool>(fourth));
  EXPECT_EQ((*fourth)->cacheOutcome(), CacheOutcome::Compiled);
  EXPECT_EQ(cache.stats().compiles, 2u);

  std::unique_ptr<BackwardKernel> fromDisk = compileFresh();
  ASSERT_TRUE(fromDisk);
  EXPECT_EQ(fromDisk->cacheOutcome(), CacheOutcome::DiskHit);
  // Lengths are run-time arguments: one kernel serves them all.
  for (int64_t seq : {1, 37, 130})
    expectGradientsRight(*fromDisk, variant, config, seq);
}

TEST_F(BackwardCacheTest, ForwardAndBackwardKeysDiffer) {
  KernelConfig keyed = config;
  keyed.lse = false; // what the backward keys on (it ignores lse)
  Digest forwardKey = KernelCache::key(variant, keyed, CPUTarget::jit());
  Digest backwardKey = KernelCache::key(variant, keyed, CPUTarget::jit(), "backward");
  EXPECT_NE(forwardKey, backwardKey);
  EXPECT_NE(KernelCache::key(variant, keyed, CPUTarget::jit(), "other"), backwardKey);
  ASSERT_TRUE(compileFresh());
  EXPECT_EQ(entryPath(), DiskCache(dir.path, 1 << 30).pathFor(backwardKey));
  // The forward of the same variant and config is compiled, not served the
  // backward's entry; both entries stay.
  KernelCache cache(dir.path, 1 << 30, 4);
  CacheOutcome outcome;
  ASSERT_TRUE(static_cast<bool>(cache.get(variant, keyed, &outcome)));
  EXPECT_EQ(outcome, CacheOutcome::Compiled);
  EXPECT_EQ(entriesIn(dir.path).size(), 2u);
  std::unique_ptr<BackwardKernel> backward = compileFresh();
  ASSERT_TRUE(backward);
  EXPECT_EQ(backward->cacheOutcome(), CacheOutcome::DiskHit);
}

TEST_F(BackwardCacheTest, CorruptedEntriesAreRebuilt) {
  ASSERT_TRUE(compileFresh());
  std::string path = entryPath(), good = readBytes(path);
  ASSERT_GT(good.size(), 200u);
  for (size_t at : {size_t(20), good.size() / 2, good.size() - 1}) {
    SCOPED_TRACE("byte " + std::to_string(at) + " flipped");
    std::string bad = good;
    bad[at] ^= 0x5a;
    writeBytes(path, bad);
    expectRejectedAndRebuilt("rejected");
    EXPECT_EQ(readBytes(path).size(), good.size()); // the rebuilt entry replaced it
  }
  SCOPED_TRACE("truncated");
  writeBytes(path, good.substr(0, good.size() / 3));
  expectRejectedAndRebuilt("rejected");
}

TEST_F(BackwardCacheTest, AForwardBinaryUnderTheBackwardsKeyIsNotTrusted) {
  // A forward's artifact filed under the backward's key and request, with a
  // valid checksum: it verifies and loads, but it is no backward kernel.
  ASSERT_TRUE(compileFresh());
  std::string path = entryPath();
  Digest key;
  std::string request;
  Artifact backwardArtifact;
  ASSERT_EQ(DiskCache::decodeEntry(readBytes(path), key, request, backwardArtifact), "");
  KernelConfig keyed = config;
  keyed.lse = false;
  auto forward = compileEntry(variant, keyed, CPUTarget::jit());
  ASSERT_TRUE(static_cast<bool>(forward)) << llvm::toString(forward.takeError());
  Artifact foreign;
  foreign.key = key;
  foreign.entries.push_back(std::move(*forward));
  writeBytes(path, DiskCache::encodeEntry(key, request, foreign));
  expectRejectedAndRebuilt("not a backward kernel");
}

TEST_F(BackwardCacheTest, NoCacheCompilesAndLeavesNothing) {
  auto kernel = BackwardKernel::compile(variant, config, nullptr);
  ASSERT_TRUE(static_cast<bool>(kernel)) << llvm::toString(kernel.takeError());
  EXPECT_EQ((*kernel)->cacheOutcome(), CacheOutcome::Compiled);
  EXPECT_TRUE(entriesIn(dir.path).empty());
  expectGradientsRight(**kernel, variant, config, 33);
}

} // namespace
