// Split-KV on the CPU (--attn-split-kv, docs/decode.md): every normalization,
// mask and modifier kind, at decode, speculative and prefill shapes, with the
// key ranges split 2, 3 and 7 ways (HEED_SPLIT_KV), against the float64
// reference on fresh random inputs (seed printed, outputs poisoned), with
// the same blocks visited as the unsplit run; and the cost model's choices.
#include "heed/Compiler/Compiler.h"
#include "heed/Frontend/Parser.h"
#include "heed/Runtime/Launch.h"
#include "heed/Runtime/Reference.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>

using namespace heed;

namespace {

uint64_t freshSeed() {
  static uint64_t base = std::random_device{}();
  return base++;
}

/// Sets HEED_SPLIT_KV for the scope ("" unsets it).
struct ForcedSplits {
  explicit ForcedSplits(const std::string &n) {
    if (n.empty())
      unsetenv("HEED_SPLIT_KV");
    else
      setenv("HEED_SPLIT_KV", n.c_str(), 1);
  }
  ~ForcedSplits() { unsetenv("HEED_SPLIT_KV"); }
};

struct Shape {
  int64_t heads, kvHeads, seqQ, seqKV;
};

/// Runs `kernel` unsplit and split `splits` ways on the same random inputs:
/// both against the reference, and the same blocks visited.
void checkSplit(Kernel &kernel, const spec::Variant &variant, const Shape &s, int splits) {
  uint64_t seed = freshSeed();
  std::string name = variant.name + " H=" + std::to_string(s.heads) + ":" +
                     std::to_string(s.kvHeads) + " Sq=" + std::to_string(s.seqQ) +
                     " Skv=" + std::to_string(s.seqKV) + " splits=" + std::to_string(splits);
  SCOPED_TRACE(name + " seed=" + std::to_string(seed));
  std::printf("[ case     ] %s seed=%llu\n", name.c_str(), static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  const int64_t batch = 2, d = 32;
  HostTensor q(DType::F32, {batch, s.heads, s.seqQ, d}), k(DType::F32, {batch, s.kvHeads, s.seqKV, d}),
      v(DType::F32, {batch, s.kvHeads, s.seqKV, d}), out(DType::F32, {batch, s.heads, s.seqQ, d}),
      lse(DType::F32, {batch, s.heads, s.seqQ});
  q.fillUniform(rng, -2, 2);
  k.fillUniform(rng, -2, 2);
  v.fillUniform(rng, -1, 1);
  AttentionDims dims{batch, s.heads, s.kvHeads, s.seqQ, s.seqKV};
  std::vector<HostTensor> buffers;
  std::vector<TensorRef> views;
  for (const spec::BufferDecl &decl : variant.buffers) {
    DType dt = DType::F32;
    ASSERT_TRUE(parseDType(spec::toString(decl.elem), dt));
    buffers.emplace_back(dt, resolveDims(decl.shape, dims));
    ASSERT_EQ(buffers.back().fill("", rng), "");
  }
  for (HostTensor &b : buffers)
    views.push_back(b.ref());
  ReferenceResult ref = referenceAttention(variant, q, k, v, Layout::BHSD,
                                           kernel.config().effectiveScale(), buffers);
  RunStats stats[2];
  for (int split : {1, splits}) {
    ForcedSplits forced(std::to_string(split));
    out.poison();
    lse.poison();
    RunStats &st = stats[split == 1 ? 0 : 1];
    llvm::Error err =
        kernel.run(AttentionArgs{q.ref(), k.ref(), v.ref(), out.ref(), lse.ref(), views}, 0, &st);
    ASSERT_FALSE(static_cast<bool>(err)) << llvm::toString(std::move(err));
    EXPECT_EQ(st.splits, split);
    ErrorStats e = compareOutput(out, ref.out, Layout::BHSD);
    EXPECT_TRUE(e.passes(ref.f32Tolerance()))
        << "splits=" << split << ": " << e.problem() << " max abs error " << e.maxAbs;
    if (ref.lseDefined) {
      ErrorStats l = compareLse(lse, ref.lse);
      EXPECT_TRUE(l.passes(1e-4)) << "splits=" << split << ": " << l.problem();
    }
  }
  EXPECT_EQ(stats[0].visitedBlocks, stats[1].visitedBlocks);
  EXPECT_EQ(stats[0].fullBlocks, stats[1].fullBlocks);
}

void forcedSplitsMatchTheReference(bool oneLoop) {
  const char *specs[] = {
      "variant causal_end { mask = causal_bottom_right() }",
      "variant sinks_window { buffer sinks: f32[H]\n normalize = softmax(sink = sinks[h])\n"
      " mask = causal_bottom_right() && q + (Skv - Sq) - kv < 50 }",
      "variant off_by_one { normalize = softmax_off_by_one\n mask = causal() }",
      "variant sigmoid { normalize = sigmoid(bias = -2.0)\n mask = causal_bottom_right() }",
      "variant softcap_alibi { buffer slopes: f32[H]\n score = softcap(alibi(score, slopes), 20.0) }",
      "variant documents { buffer doc: i32[Skv]\n mask = document(doc) }",
      // Gated: its loop keeps one key range (computed whole in phase 1).
      "variant gated { buffer router: f32[B, Sq, H]\n gate = router[b, q, h]\n mask = causal() }",
  };
  const Shape shapes[] = {{8, 2, 1, 300}, {4, 4, 4, 150}, {4, 2, 70, 70}, {2, 1, 1, 5}};
  int splits[] = {2, 3, 7};
  int n = 0;
  for (const char *text : specs) {
    auto parsed = spec::parseSpec(text, "split.attn");
    ASSERT_TRUE(static_cast<bool>(parsed)) << llvm::toString(parsed.takeError());
    auto variant = spec::selectVariant(std::move(*parsed), "");
    ASSERT_TRUE(static_cast<bool>(variant)) << llvm::toString(variant.takeError());
    KernelConfig config;
    config.headDim = config.headDimV = 32;
    config.lse = true;
    config.splitOneLoop = oneLoop;
    auto kernel = Kernel::compile(*variant, config);
    ASSERT_TRUE(static_cast<bool>(kernel)) << llvm::toString(kernel.takeError());
    for (const Shape &s : shapes)
      checkSplit(**kernel, *variant, s, splits[n++ % 3]);
  }
}

TEST(SplitKV, ForcedSplitsMatchTheReference) { forcedSplitsMatchTheReference(false); }

// The GPU kernels' form of the schedule (--attn-split-kv{one-loop}: the
// three phases in one work loop, phase 0 with count 1) run by the CPU
// runtime, which calls it as the GPU runtime does: the pass's IR checked
// numerically where no GPU runs it.
TEST(SplitKV, OneLoopFormMatchesTheReference) { forcedSplitsMatchTheReference(true); }

int64_t tiles16(int64_t n) { return (n + 15) / 16; }

TEST(SplitKV, CostModelSplitsOnlyWhereItemsAreFewOrUneven) {
  ForcedSplits none("");
  // One long sequence, one key/value head: 2048 key tiles on one item.
  EXPECT_EQ(chooseKVSplits({1, 8, 1, 1, 32768}, {}, 2, tiles16, tiles16), 8);
  // The decode: 64 packed items of 2048 tiles keep 2 threads busy.
  EXPECT_EQ(chooseKVSplits({8, 32, 8, 1, 32768}, {}, 2, tiles16, tiles16), 1);
  // Prefill: thousands of items.
  EXPECT_EQ(chooseKVSplits({1, 8, 8, 4096, 4096}, {}, 16, tiles16, tiles16), 1);
  // Ragged: one 32K sequence among 1K ones, 16 threads.
  EXPECT_GT(chooseKVSplits({8, 8, 8, 1, 32768}, {32768, 1024, 1024, 1024, 1024, 1024, 1024, 1024},
                           16, tiles16, tiles16),
            1);
  // Short keys never split below 8 tiles a part.
  EXPECT_EQ(chooseKVSplits({1, 1, 1, 1, 100}, {}, 64, tiles16, tiles16), 1);
  ForcedSplits forced("5");
  EXPECT_EQ(chooseKVSplits({8, 32, 8, 1, 32768}, {}, 2, tiles16, tiles16), 5);
}

TEST(SplitKV, GPUCostModelFillsTheDevice) {
  ForcedSplits none("");
  const int64_t h100 = 132 * 2; // multiprocessors x blocks each
  // The decode (B = 8, Hq = 32, one query tile): 256 blocks fill
  // 97% of a wave already.
  EXPECT_EQ(chooseGPUKVSplits(256, 32768, h100), 1);
  // Prefill: thousands of blocks.
  EXPECT_EQ(chooseGPUKVSplits(8 * 64 * 32, 8192, h100), 1);
  // One sequence, 8 heads, 32K keys: enough parts for most of a wave, and
  // no more than the fewest within 85% of the best efficiency.
  int64_t s = chooseGPUKVSplits(8, 32768, h100);
  EXPECT_GE(8 * s, int64_t(0.85 * h100));
  EXPECT_LE(8 * s, h100);
  // Parts of at least 256 keys: 300 keys stay whole; 1024 keys at most 4.
  EXPECT_EQ(chooseGPUKVSplits(8, 300, h100), 1);
  EXPECT_LE(chooseGPUKVSplits(8, 1024, h100), 4);
  EXPECT_GT(chooseGPUKVSplits(8, 1024, h100), 1);
  // An unknown device (no multiprocessor count): never split.
  EXPECT_EQ(chooseGPUKVSplits(8, 32768, 0), 1);
  ForcedSplits forced("5");
  EXPECT_EQ(chooseGPUKVSplits(256, 32768, h100), 5);
}

} // namespace

namespace {

/// The makespan of greedy list scheduling (each item to the thread free
/// first), items taken in `order` (empty: index order), item i costing
/// cost[i]: what runItems' atomic counter does with equal-speed threads.
int64_t makespan(const std::vector<int64_t> &cost, const std::vector<int64_t> &order,
                 int threads) {
  std::vector<int64_t> freeAt(size_t(threads), 0);
  for (size_t n = 0; n < cost.size(); ++n) {
    auto first = std::min_element(freeAt.begin(), freeAt.end());
    *first += cost[size_t(order.empty() ? int64_t(n) : order[n])];
  }
  return *std::max_element(freeAt.begin(), freeAt.end());
}

} // namespace

// Work items are handed out longest entry first (runtime/Launch.cpp,
// longestFirst): a permutation of the items, which on a batch of very
// different lengths keeps the long entry from starting last.
TEST(SplitKV, LongestEntriesAreHandedOutFirst) {
  // Decode, 64 entries x 8 key/value heads (GQA packed: 8 items an entry),
  // lengths 64 key tiles but the last entry's 2048, 16 threads.
  int64_t batch = 64, perEntry = 8;
  std::vector<int64_t> tiles(size_t(batch), 64);
  tiles.back() = 2048;
  int64_t items = batch * perEntry + 5; // 5 past the grid: no work
  std::vector<int64_t> order = heed::longestFirst(items, perEntry, tiles);
  ASSERT_EQ(int64_t(order.size()), items);
  std::vector<int64_t> sorted = order;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < items; ++i)
    ASSERT_EQ(sorted[size_t(i)], i) << "not a permutation";
  EXPECT_EQ(order.front(), (batch - 1) * perEntry) << "the long entry's items come first";
  std::vector<int64_t> cost(size_t(items), 0);
  int64_t total = 0;
  for (int64_t i = 0; i < batch * perEntry; ++i)
    total += cost[size_t(i)] = tiles[size_t(i / perEntry)];
  int64_t inOrder = makespan(cost, {}, 16), longest = makespan(cost, order, 16);
  int64_t bound = std::max<int64_t>((total + 15) / 16, 2048);
  std::printf("[ makespan ] index order %lld, longest first %lld, lower bound %lld\n",
              (long long)inOrder, (long long)longest, (long long)bound);
  EXPECT_LT(longest, inOrder);
  EXPECT_LE(double(longest), 1.05 * double(bound));
  // Alike entries, or sizes that do not fit the grid: index order.
  EXPECT_TRUE(heed::longestFirst(items, perEntry, std::vector<int64_t>(64, 7)).empty());
  EXPECT_TRUE(heed::longestFirst(10, perEntry, tiles).empty());
  // Split-KV's phase 1: each entry's items times the parts, same blocks.
  std::vector<int64_t> split = heed::longestFirst(batch * perEntry * 3, perEntry * 3, tiles);
  ASSERT_EQ(int64_t(split.size()), batch * perEntry * 3);
  EXPECT_EQ(split.front(), (batch - 1) * perEntry * 3);
}
