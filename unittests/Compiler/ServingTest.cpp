// Serving layouts on the CPU (docs/decode.md): per-sequence key lengths
// (kv_lens) and paged key/value caches read through a page table, at
// decode, speculative and prefill shapes, both layouts, page sizes from 1 up,
// f32 and bf16. Checked against the float64 reference on the keys the cache
// stands for, each batch entry with its own length (fresh random inputs, seed
// printed, outputs poisoned), and the visited blocks against the
// brute-force census of each entry; bad lengths and page tables are errors.
#include "heed/Compiler/Compiler.h"
#include "heed/Compiler/Tiling.h"
#include "heed/Frontend/Parser.h"
#include "heed/Runtime/Reference.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <random>

using namespace heed;

namespace {

uint64_t freshSeed() {
  static uint64_t base = std::random_device{}();
  return base++;
}

spec::Variant parse(const std::string &text) {
  auto parsed = spec::parseSpec(text, "serving.attn");
  EXPECT_TRUE(static_cast<bool>(parsed)) << llvm::toString(parsed.takeError());
  auto variant = spec::selectVariant(std::move(*parsed), "");
  EXPECT_TRUE(static_cast<bool>(variant)) << llvm::toString(variant.takeError());
  return *variant;
}

constexpr int64_t kDim = 64;

struct Shape {
  int64_t batch, heads, kvHeads, seqQ;
  std::vector<int64_t> lens; ///< keys per batch entry
};

std::vector<int64_t> shapeOf(Layout layout, int64_t batch, int64_t heads, int64_t seq) {
  if (layout == Layout::BSHD)
    return {batch, seq, heads, kDim};
  return {batch, heads, seq, kDim};
}

/// One call: the kernel's tensors (paged or contiguous with a capacity) and,
/// per batch entry, the reference's contiguous BHSD tensors.
struct Call {
  HostTensor q, k, v, out, lse, kvLens, pageTable;
  std::vector<HostTensor> buffers;
};

class Serving {
public:
  Serving(const spec::Variant &variant, const KernelConfig &config)
      : variant(variant), config(config) {
    auto kernel = Kernel::compile(variant, config);
    EXPECT_TRUE(static_cast<bool>(kernel)) << llvm::toString(kernel.takeError());
    if (kernel)
      this->kernel = std::move(*kernel);
  }

  /// Runs at `s` (capacity: the keys a batch entry can hold) and checks
  /// every batch entry; exactBlocks: visited == the census' minimum.
  void check(const Shape &s, int64_t capacity, bool exactBlocks) {
    ASSERT_TRUE(kernel);
    uint64_t seed = freshSeed();
    std::string name = variant.name + " " + (config.layout == Layout::BSHD ? "bshd" : "bhsd") +
                       " " + toString(config.dtype) + " page=" +
                       std::to_string(config.pageSize) + " B=" + std::to_string(s.batch) +
                       " H=" + std::to_string(s.heads) + ":" + std::to_string(s.kvHeads) +
                       " Sq=" + std::to_string(s.seqQ) + " lens=";
    for (int64_t len : s.lens)
      name += std::to_string(len) + ",";
    SCOPED_TRACE(name + " seed=" + std::to_string(seed));
    std::printf("[ case     ] %s seed=%llu\n", name.c_str(),
                static_cast<unsigned long long>(seed));
    std::mt19937_64 rng(seed);
    Call c;
    build(s, capacity, rng, c);
    std::vector<TensorRef> views;
    for (HostTensor &b : c.buffers)
      views.push_back(b.ref());
    AttentionArgs args{c.q.ref(), c.k.ref(), c.v.ref(), c.out.ref(), c.lse.ref(), views};
    args.kvLens = c.kvLens.ref();
    if (config.paged())
      args.pageTable = c.pageTable.ref();
    RunStats stats;
    llvm::Error err = kernel->run(args, 0, &stats);
    ASSERT_FALSE(static_cast<bool>(err)) << llvm::toString(std::move(err));

    // The reference on the keys the cache stands for, each entry its own.
    HostTensor k = c.k, v = c.v;
    if (config.paged()) {
      k = gatherPages(c.k, c.pageTable, s.lens, config.pageSize, config.layout);
      v = gatherPages(c.v, c.pageTable, s.lens, config.pageSize, config.layout);
    }
    ReferenceResult ref = referenceAttention(variant, c.q, k, v, config.layout,
                                             config.effectiveScale(), c.buffers, 0, nullptr,
                                             &s.lens);
    ASSERT_EQ(ref.outOfRange, 0);
    ErrorStats e = compareOutput(c.out, ref.out, config.layout);
    EXPECT_TRUE(e.passes(config.dtype == DType::F32 ? ref.f32Tolerance() : 1e-2))
        << e.problem() << " max abs error " << e.maxAbs;
    ErrorStats l = compareLse(c.lse, ref.lse);
    EXPECT_TRUE(l.passes(1e-4)) << l.problem() << " max lse error " << l.maxAbs;

    auto tiling = kernelTiling(variant, config);
    ASSERT_TRUE(static_cast<bool>(tiling)) << llvm::toString(tiling.takeError());
    AttentionDims dims{s.batch, s.heads, s.kvHeads, s.seqQ, capacity};
    MaskCensus census = servingMaskCensus(variant, dims, c.buffers, *tiling, s.lens);
    EXPECT_GE(stats.visitedBlocks, census.nonEmptyBlocks);
    EXPECT_LE(stats.fullBlocks, census.fullBlocks);
    EXPECT_EQ(stats.totalBlocks, census.totalBlocks);
    if (exactBlocks) {
      EXPECT_EQ(stats.visitedBlocks, census.nonEmptyBlocks);
    }
  }

  Kernel *get() { return kernel.get(); }

private:
  void build(const Shape &s, int64_t capacity, std::mt19937_64 &rng, Call &c) {
    Layout layout = config.layout;
    c.q = HostTensor(config.dtype, shapeOf(layout, s.batch, s.heads, s.seqQ));
    c.out = HostTensor(config.dtype, shapeOf(layout, s.batch, s.heads, s.seqQ));
    c.lse = HostTensor(DType::F32, {s.batch, s.heads, s.seqQ});
    c.kvLens = HostTensor(DType::I32, {s.batch});
    for (int64_t b = 0; b < s.batch; ++b)
      c.kvLens.set(b, double(s.lens[b]));
    if (config.paged()) {
      int64_t p = config.pageSize, maxPages = (capacity + p - 1) / p;
      // A pool larger than needed, pages handed out in a random order; the
      // entries past a sequence's pages hold garbage the kernel must not read.
      int64_t pool = s.batch * maxPages + 3;
      std::vector<int64_t> order(pool);
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), rng);
      c.pageTable = HostTensor(DType::I32, {s.batch, maxPages});
      int64_t next = 0;
      for (int64_t b = 0; b < s.batch; ++b)
        for (int64_t i = 0; i < maxPages; ++i)
          c.pageTable.set(b * maxPages + i,
                          i * p < s.lens[b] ? double(order[next++]) : double(-1000 - i));
      c.k = HostTensor(config.dtype, shapeOf(layout, pool, s.kvHeads, p));
      c.v = HostTensor(config.dtype, shapeOf(layout, pool, s.kvHeads, p));
    } else {
      c.k = HostTensor(config.dtype, shapeOf(layout, s.batch, s.kvHeads, capacity));
      c.v = HostTensor(config.dtype, shapeOf(layout, s.batch, s.kvHeads, capacity));
    }
    c.q.fillUniform(rng, -2, 2);
    c.k.fillUniform(rng, -2, 2);
    c.v.fillUniform(rng, -1, 1);
    AttentionDims dims{s.batch, s.heads, s.kvHeads, s.seqQ, capacity};
    for (const spec::BufferDecl &decl : variant.buffers) {
      DType dt = DType::F32;
      ASSERT_TRUE(parseDType(spec::toString(decl.elem), dt));
      c.buffers.emplace_back(dt, resolveDims(decl.shape, dims));
      ASSERT_EQ(c.buffers.back().fill("", rng), "");
    }
    c.out.poison();
    c.lse.poison();
  }

  const spec::Variant &variant;
  KernelConfig config;
  std::unique_ptr<Kernel> kernel;
};

KernelConfig servingConfig(DType dtype, Layout layout, int64_t pageSize) {
  KernelConfig config;
  config.dtype = dtype;
  config.headDim = config.headDimV = kDim;
  config.layout = layout;
  config.lse = true;
  config.kvLens = true;
  config.pageSize = pageSize;
  return config;
}

/// Decode with GQA (packed), a speculative tail, prefill longer than some
/// entries' keys; lengths of 0, 1, page boundaries and the full capacity.
const Shape kShapes[] = {
    {3, 8, 2, 1, {300, 1, 129}},
    {2, 4, 1, 4, {0, 77}},
    {2, 4, 2, 16, {200, 64}},
    {2, 2, 2, 40, {17, 320}},
};

struct Case {
  const char *spec;
  bool exact;
};
const Case kCases[] = {
    {"variant causal_end { mask = causal_bottom_right() }", true},
    {"variant window_end { mask = causal_bottom_right() && q + (Skv - Sq) - kv < 48 }", true},
    {"variant recency { score = softcap(score, 8.0) - 0.01 * f32(Skv - kv)\n"
     " mask = causal_bottom_right() }",
     true},
    {"variant doc_batched { buffer doc: i32[B, Skv]\n"
     " mask = doc[b, max(q + (Skv - Sq), 0)] == doc[b, kv] && causal_bottom_right() }",
     false},
    {"variant plain { }", true},
};

TEST(Serving, PagedCachesMatchTheReference) {
  for (const Case &c : kCases) {
    spec::Variant variant = parse(c.spec);
    for (int64_t page : {16, 1, 5, 64})
      for (Layout layout : {Layout::BSHD, Layout::BHSD}) {
        DType dtype = page == 16 ? DType::BF16 : DType::F32;
        Serving serving(variant, servingConfig(dtype, layout, page));
        for (const Shape &s : kShapes)
          serving.check(s, 320, c.exact);
      }
  }
}

TEST(Serving, PerSequenceLengthsOnContiguousKeys) {
  for (const Case &c : kCases) {
    spec::Variant variant = parse(c.spec);
    for (DType dtype : {DType::F32, DType::BF16}) {
      Serving serving(variant, servingConfig(dtype, Layout::BHSD, 0));
      for (const Shape &s : kShapes)
        serving.check(s, 320, c.exact);
    }
  }
}

TEST(Serving, BadLengthsAndPageTablesAreErrors) {
  spec::Variant variant = parse("variant v { mask = causal_bottom_right() }");
  Serving serving(variant, servingConfig(DType::F32, Layout::BSHD, 16));
  ASSERT_TRUE(serving.get());
  HostTensor q(DType::F32, {2, 1, 4, kDim}), out(DType::F32, {2, 1, 4, kDim}),
      lse(DType::F32, {2, 4, 1}), k(DType::F32, {6, 16, 2, kDim}), v(DType::F32, {6, 16, 2, kDim});
  HostTensor lens(DType::I32, {2}), table(DType::I32, {2, 3});
  std::mt19937_64 rng(7);
  q.fillUniform(rng, -1, 1);
  k.fillUniform(rng, -1, 1);
  v.fillUniform(rng, -1, 1);
  auto run = [&]() {
    AttentionArgs args{q.ref(), k.ref(), v.ref(), out.ref(), lse.ref(), {}};
    args.kvLens = lens.ref();
    args.pageTable = table.ref();
    llvm::Error err = serving.get()->run(args);
    return err ? llvm::toString(std::move(err)) : std::string();
  };
  auto expectError = [&](const std::string &want) {
    std::string got = run();
    EXPECT_NE(got.find(want), std::string::npos) << "got: '" << got << "'";
  };
  for (int i = 0; i < 6; ++i)
    table.set(i, i);
  lens.set(0, 48);
  lens.set(1, 17);
  EXPECT_EQ(run(), "");
  lens.set(1, 49);
  expectError("kv_lens[1] = 49 is outside [0, 48]");
  lens.set(1, -1);
  expectError("kv_lens[1] = -1 is outside [0, 48]");
  lens.set(1, 17);
  table.set(4, 6); // batch 1, its second page: one past the cache
  expectError("page_table[1, 1] = 6 is not a page of the cache (it has 6)");
  table.set(4, 4);
  table.set(5, 99); // past batch 1's 17 keys: never read, never checked
  EXPECT_EQ(run(), "");
  HostTensor wrongPage(DType::F32, {6, 8, 2, kDim});
  {
    AttentionArgs args{q.ref(), wrongPage.ref(), wrongPage.ref(), out.ref(), lse.ref(), {}};
    args.kvLens = lens.ref();
    args.pageTable = table.ref();
    llvm::Error err = serving.get()->run(args);
    ASSERT_TRUE(static_cast<bool>(err));
    EXPECT_NE(llvm::toString(std::move(err)).find("page size must be 16"), std::string::npos);
  }
  {
    AttentionArgs args{q.ref(), k.ref(), v.ref(), out.ref(), lse.ref(), {}};
    llvm::Error err = serving.get()->run(args);
    ASSERT_TRUE(static_cast<bool>(err));
    EXPECT_NE(llvm::toString(std::move(err)).find("kv_lens must be i32[B]"), std::string::npos);
  }
}

} // namespace
