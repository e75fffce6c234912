// Serving layouts on the CPU (docs/decode.md): per-sequence key lengths
// (kv_lens), query lengths (q_lens: rows past them must stay unwritten) and
// paged key/value caches read through a page table, at
// decode, speculative and prefill shapes, both layouts, page sizes from 1 up,
// f32 and bf16. Checked against the float64 reference on the keys the cache
// stands for, each batch entry with its own length (fresh random inputs, seed
// printed, outputs poisoned), and the visited blocks against the
// brute-force census of each entry; bad lengths and page tables are errors.
#include "heed/Compiler/Compiler.h"
#include "heed/Compiler/Tiling.h"
#include "heed/Frontend/Parser.h"
#include "heed/Runtime/Reference.h"
#include "dialects/attn/TileMath.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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
  std::vector<int64_t> lens;  ///< keys per batch entry (empty: no kv_lens)
  std::vector<int64_t> qLens; ///< queries per batch entry (with q_lens)
};

std::vector<int64_t> shapeOf(Layout layout, int64_t batch, int64_t heads, int64_t seq) {
  if (layout == Layout::BSHD)
    return {batch, seq, heads, kDim};
  return {batch, heads, seq, kDim};
}

/// One call: the kernel's tensors (paged or contiguous with a capacity) and,
/// per batch entry, the reference's contiguous BHSD tensors.
struct Call {
  HostTensor q, k, v, out, lse, kvLens, pageTable, qLens;
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
    if (config.qLens || config.cuSeqlensQ) {
      name += " q_lens=";
      for (int64_t len : s.qLens)
        name += std::to_string(len) + ",";
    }
    if (config.cuSeqlensQ || config.cuSeqlensKV)
      name += std::string(" packed") + (config.cuSeqlensQ ? " q" : "") +
              (config.cuSeqlensKV ? " kv" : "");
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
    if (config.hasKVLens())
      args.kvLens = c.kvLens.ref();
    if (config.paged())
      args.pageTable = c.pageTable.ref();
    if (config.qLens)
      args.qLens = c.qLens.ref();
    // Packed sequences: the same entries end to end (then slack rows of NaN
    // the kernel must neither read nor write), unpacked after the run.
    Packed p;
    if (config.cuSeqlensQ) {
      p.q = packSequences(c.q, s.qLens, config.layout, kSlack, &p.cuQ);
      p.out = packSequences(c.out, s.qLens, config.layout, kSlack);
      p.lse = packSequences(c.lse, s.qLens, config.layout, kSlack);
      args.q = p.q.ref(), args.out = p.out.ref(), args.lse = p.lse.ref();
      args.cuSeqlensQ = p.cuQ.ref();
    }
    if (config.cuSeqlensKV) {
      p.k = packSequences(c.k, s.lens, config.layout, kSlack, &p.cuKV);
      p.v = packSequences(c.v, s.lens, config.layout, kSlack);
      args.k = p.k.ref(), args.v = p.v.ref();
      args.cuSeqlensKV = p.cuKV.ref();
    }
    RunStats stats;
    llvm::Error err = kernel->run(args, 0, &stats);
    ASSERT_FALSE(static_cast<bool>(err)) << llvm::toString(std::move(err));
    if (config.cuSeqlensQ) {
      unpackSequences(p.out, s.qLens, config.layout, c.out);
      unpackSequences(p.lse, s.qLens, config.layout, c.lse);
      expectSlackUnwritten(p, s);
    }
    if (const char *forced = std::getenv("HEED_SPLIT_KV"))
      EXPECT_EQ(stats.splits, std::atol(forced)) << "the forced split was not taken";

    // The reference on the keys the cache stands for, each entry its own.
    HostTensor k = c.k, v = c.v;
    if (config.paged()) {
      k = gatherPages(c.k, c.pageTable, s.lens, config.pageSize, config.layout);
      v = gatherPages(c.v, c.pageTable, s.lens, config.pageSize, config.layout);
    }
    const std::vector<int64_t> *kvLens =
        config.hasKVLens() || config.cuSeqlensKV ? &s.lens : nullptr;
    const std::vector<int64_t> *qLens = config.qLens || config.cuSeqlensQ ? &s.qLens : nullptr;
    std::vector<uint8_t> rows = queryRows(s.qLens, s.heads, s.seqQ);
    const std::vector<uint8_t> *only = qLens ? &rows : nullptr;
    ReferenceResult ref = referenceAttention(variant, c.q, k, v, config.layout,
                                             config.effectiveScale(), c.buffers, 0, only,
                                             kvLens, qLens);
    ASSERT_EQ(ref.outOfRange, 0);
    ErrorStats e = compareOutput(c.out, ref.out, config.layout, only);
    EXPECT_TRUE(e.passes(config.dtype == DType::F32 ? ref.f32Tolerance() : 1e-2))
        << e.problem() << " max abs error " << e.maxAbs;
    ErrorStats l = compareLse(c.lse, ref.lse, only);
    EXPECT_TRUE(l.passes(1e-4)) << l.problem() << " max lse error " << l.maxAbs;
    if (qLens)
      expectUnwritten(c, s, rows);

    auto tiling = kernelTiling(variant, config);
    ASSERT_TRUE(static_cast<bool>(tiling)) << llvm::toString(tiling.takeError());
    AttentionDims dims{s.batch, s.heads, s.kvHeads, s.seqQ, capacity};
    MaskCensus census = servingMaskCensus(variant, dims, c.buffers, *tiling, s.lens, 0,
                                          s.qLens);
    EXPECT_GE(stats.visitedBlocks, census.nonEmptyBlocks);
    EXPECT_LE(stats.fullBlocks, census.fullBlocks);
    EXPECT_EQ(stats.totalBlocks, census.totalBlocks);
    if (exactBlocks) {
      EXPECT_EQ(stats.visitedBlocks, census.nonEmptyBlocks);
    }
  }

  Kernel *get() { return kernel.get(); }

private:
  static constexpr int64_t kSlack = 3;
  struct Packed {
    HostTensor q, k, v, out, lse, cuQ, cuKV;
  };

  /// The rows after the packed entries (out, lse) are still NaN.
  void expectSlackUnwritten(const Packed &p, const Shape &s) {
    int64_t total = 0, written = 0;
    for (int64_t len : s.qLens)
      total += len;
    bool bshd = config.layout == Layout::BSHD;
    for (int64_t h = 0; h < s.heads; ++h)
      for (int64_t i = total; i < total + kSlack; ++i) {
        written += !std::isnan(p.lse.get(h * (total + kSlack) + i));
        for (int64_t d = 0; d < kDim; ++d)
          written += !std::isnan(p.out.get(
              (bshd ? i * s.heads + h : h * (total + kSlack) + i) * kDim + d));
      }
    EXPECT_EQ(written, 0) << "elements written past cu_seqlens_q[B]";
  }

  /// Rows past an entry's queries are not written: still NaN.
  void expectUnwritten(const Call &c, const Shape &s, const std::vector<uint8_t> &rows) {
    bool bshd = config.layout == Layout::BSHD;
    int64_t written = 0;
    for (int64_t row = 0; row < int64_t(rows.size()); ++row) {
      if (rows[size_t(row)])
        continue;
      int64_t i = row % s.seqQ, h = (row / s.seqQ) % s.heads, b = row / (s.seqQ * s.heads);
      written += !std::isnan(c.lse.get(row));
      for (int64_t d = 0; d < kDim; ++d) {
        int64_t at = bshd ? ((b * s.seqQ + i) * s.heads + h) * kDim + d
                          : ((b * s.heads + h) * s.seqQ + i) * kDim + d;
        written += !std::isnan(c.out.get(at));
      }
    }
    EXPECT_EQ(written, 0) << "elements written past q_lens";
  }

  void build(const Shape &s, int64_t capacity, std::mt19937_64 &rng, Call &c) {
    Layout layout = config.layout;
    c.q = HostTensor(config.dtype, shapeOf(layout, s.batch, s.heads, s.seqQ));
    c.out = HostTensor(config.dtype, shapeOf(layout, s.batch, s.heads, s.seqQ));
    c.lse = HostTensor(DType::F32, {s.batch, s.heads, s.seqQ});
    c.kvLens = HostTensor(DType::I32, {s.batch});
    for (int64_t b = 0; b < int64_t(s.lens.size()); ++b)
      c.kvLens.set(b, double(s.lens[b]));
    c.qLens = HostTensor(DType::I32, {s.batch});
    for (int64_t b = 0; b < int64_t(s.qLens.size()); ++b)
      c.qLens.set(b, double(s.qLens[b]));
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

/// Ragged queries (q_lens): decode with an entry out of the batch (0), a
/// speculative batch of different draft lengths, chunked prefill with one
/// chunk of the whole capacity, one across a tile edge and one of a query.
const Shape kRaggedShapes[] = {
    {3, 8, 2, 1, {300, 1, 129}, {1, 0, 1}},
    {3, 4, 1, 4, {77, 300, 5}, {4, 1, 0}},
    {3, 4, 2, 33, {320, 40, 64}, {33, 17, 1}},
    {2, 2, 2, 40, {17, 320}, {40, 13}},
};

/// Sets HEED_SPLIT_KV for the scope (unset after).
struct ForcedSplits {
  explicit ForcedSplits(const char *n) { setenv("HEED_SPLIT_KV", n, 1); }
  ~ForcedSplits() { unsetenv("HEED_SPLIT_KV"); }
};

void checkRagged(const Case &c, const spec::Variant &variant) {
  struct RaggedConfig {
    DType dtype;
    Layout layout;
    bool kvLens;
    int64_t page;
  } configs[] = {{DType::F32, Layout::BHSD, false, 0},
                 {DType::BF16, Layout::BSHD, true, 0},
                 {DType::F32, Layout::BSHD, true, 16},
                 {DType::BF16, Layout::BHSD, true, 5}};
  for (const RaggedConfig &r : configs) {
    KernelConfig config = servingConfig(r.dtype, r.layout, r.page);
    config.kvLens = r.kvLens;
    config.qLens = true;
    Serving serving(variant, config);
    for (Shape s : kRaggedShapes) {
      if (!r.kvLens)
        s.lens.clear();
      serving.check(s, 320, c.exact);
    }
  }
}

TEST(Serving, RaggedQueriesMatchTheReference) {
  for (const Case &c : kCases)
    checkRagged(c, parse(c.spec));
}

/// Sets HEED_SPLIT_KV_PARTS=even for the scope: split-KV's parts divide each
/// item's range evenly instead of taking equal work (docs/decode.md).
struct EvenParts {
  EvenParts() { setenv("HEED_SPLIT_KV_PARTS", "even", 1); }
  ~EvenParts() { unsetenv("HEED_SPLIT_KV_PARTS"); }
};

// The split-KV phases with ragged queries: the merge must leave the rows past
// q_lens unwritten too. Parts of equal work (the entries of 1 and 5 keys
// then run in one part, the others empty) and parts dividing each range.
TEST(Serving, RaggedQueriesSplitKV) {
  ForcedSplits forced("3");
  for (const Case &c : {kCases[0], kCases[3]})
    checkRagged(c, parse(c.spec));
  EvenParts even;
  checkRagged(kCases[0], parse(kCases[0].spec));
}

/// Packed sequences (cu_seqlens): queries and/or keys end to end, on
/// contiguous and paged keys, each entry with its own lengths; a shape's
/// capacity is its longest entry (what `Skv` means in buffer shapes then).
void checkPacked(const Case &c, const spec::Variant &variant) {
  struct PackedConfig {
    DType dtype;
    Layout layout;
    bool packQ, packKV, kvLens;
    int64_t page;
  } configs[] = {{DType::F32, Layout::BHSD, true, true, false, 0},
                 {DType::BF16, Layout::BSHD, true, true, false, 0},
                 {DType::F32, Layout::BSHD, true, false, true, 0},
                 {DType::BF16, Layout::BSHD, true, false, true, 16},
                 {DType::F32, Layout::BHSD, false, true, false, 0}};
  for (const PackedConfig &r : configs) {
    KernelConfig config = servingConfig(r.dtype, r.layout, r.page);
    config.kvLens = r.kvLens;
    config.cuSeqlensQ = r.packQ;
    config.cuSeqlensKV = r.packKV;
    Serving serving(variant, config);
    for (Shape s : kRaggedShapes) {
      if (!r.packQ) // every entry has Sq queries
        s.qLens.assign(size_t(s.batch), s.seqQ);
      int64_t capacity = *std::max_element(s.lens.begin(), s.lens.end());
      serving.check(s, r.packKV ? capacity : 320, c.exact);
    }
  }
}

TEST(Serving, PackedSequencesMatchTheReference) {
  for (const Case &c : kCases)
    checkPacked(c, parse(c.spec));
}

TEST(Serving, PackedSequencesSplitKV) {
  ForcedSplits forced("3");
  for (const Case &c : {kCases[0], kCases[3]})
    checkPacked(c, parse(c.spec));
  EvenParts even;
  checkPacked(kCases[0], parse(kCases[0].spec));
}

// q_lens changes the kernel's arguments: it is in the cache key and in the
// kernel's description (artifacts, the C API).
TEST(Serving, QueryLengthsAreInTheKeyAndTheDescription) {
  KernelConfig plain = servingConfig(DType::F32, Layout::BHSD, 16), ragged = plain;
  ragged.qLens = true;
  EXPECT_NE(plain.canonical(), ragged.canonical());
  spec::Variant variant = parse("variant v { mask = causal_bottom_right() }");
  KernelInfo info = describeKernel(variant, ragged), back;
  ASSERT_TRUE(info.qLens);
  ASSERT_EQ(back.parse(info.serialize()), "");
  EXPECT_TRUE(back.qLens);
  EXPECT_EQ(back.pageSize, 16);
  ASSERT_EQ(back.parse(describeKernel(variant, plain).serialize()), "");
  EXPECT_FALSE(back.qLens);
  EXPECT_FALSE(back.cuSeqlensQ || back.cuSeqlensKV);
  // Packed sequences likewise, each side on its own.
  KernelConfig packedQ = servingConfig(DType::F32, Layout::BHSD, 0), packedKV = packedQ;
  packedQ.kvLens = packedKV.kvLens = false;
  packedQ.cuSeqlensQ = true;
  packedKV.cuSeqlensKV = true;
  EXPECT_NE(packedQ.canonical(), packedKV.canonical());
  for (const KernelConfig &c : {packedQ, packedKV}) {
    ASSERT_EQ(back.parse(describeKernel(variant, c).serialize()), "");
    EXPECT_EQ(back.cuSeqlensQ, c.cuSeqlensQ);
    EXPECT_EQ(back.cuSeqlensKV, c.cuSeqlensKV);
  }
  // An artifact with a packed entry is format version 2 (a version-1 reader
  // would ignore the packed operands and launch with the wrong arguments:
  // it refuses version 2), one whose entry takes the entry order (every
  // kernel of entries that may differ in length, since entry_order) version
  // 3 (a version-2 reader would miss that operand); others stay version 1.
  // All read back.
  auto version = [](const std::string &bytes) {
    uint32_t v = 0;
    std::memcpy(&v, bytes.data() + 8, 4);
    return v;
  };
  KernelInfo packedBefore = describeKernel(variant, packedQ); // an entry from before it
  packedBefore.entryOrder = false;
  KernelConfig contiguous = plain; // one length for every entry
  contiguous.kvLens = false;
  contiguous.pageSize = 0;
  EXPECT_TRUE(describeKernel(variant, packedQ).entryOrder);
  EXPECT_TRUE(describeKernel(variant, plain).entryOrder); // kv_lens and pages
  EXPECT_FALSE(describeKernel(variant, contiguous).entryOrder);
  struct Expected {
    KernelInfo info;
    uint32_t version;
  };
  for (const Expected &e : {Expected{describeKernel(variant, contiguous), kArtifactVersion},
                            Expected{packedBefore, kArtifactVersionPacked},
                            Expected{describeKernel(variant, packedQ), kArtifactVersionEntryOrder}}) {
    Artifact artifact;
    artifact.entries.push_back({"cpu:test", e.info, "binary"});
    std::string bytes = artifact.serialize();
    EXPECT_EQ(version(bytes), e.version);
    Artifact read;
    ASSERT_EQ(read.parse(bytes), "");
    EXPECT_EQ(read.entries.at(0).info.cuSeqlensQ, e.info.cuSeqlensQ);
    EXPECT_EQ(read.entries.at(0).info.entryOrder, e.info.entryOrder);
  }
  // A GPU entry's launch written and read back: the artifact's version and
  // the launch as read.
  auto roundTrip = [&](const GPULaunch &launch, uint32_t expectedVersion) {
    KernelInfo info = describeKernel(variant, contiguous);
    GPULaunch &g = info.gpu.emplace(launch);
    g.format = "ptx";
    g.kernelName = "heed_kernel";
    Artifact artifact;
    artifact.entries.push_back({"cuda:sm_90a", info, "// PTX .version 8.0 heed_kernel"});
    std::string bytes = artifact.serialize();
    EXPECT_EQ(version(bytes), expectedVersion);
    Artifact read;
    EXPECT_EQ(read.parse(bytes), "");
    return read.entries.empty() || !read.entries[0].info.gpu ? GPULaunch{}
                                                             : *read.entries[0].info.gpu;
  };
  // A GPU entry that packs GQA groups (gpu_packed_rows) is version 4: a
  // reader from before it would launch Hq blocks on a kernel taking Hkv
  // items. Its packed rows read back; one that never packs reads -1.
  for (int64_t rows : {int64_t(64), int64_t(-1)}) {
    GPULaunch g;
    g.blockRows = 64;
    g.threads = 128;
    g.packedRows = rows;
    EXPECT_EQ(roundTrip(g, rows > 0 ? kArtifactVersionGPUPacking : kArtifactVersion).packedRows,
              rows);
  }
  // A GPU entry of persistent workers (gpu_persistent) is version 5: a
  // reader from before it would launch a block per item, each block then a
  // worker walking the items again. The flag reads back.
  for (bool persistent : {true, false}) {
    GPULaunch g;
    g.blockRows = 128;
    g.threads = 384;
    g.persistent = persistent;
    EXPECT_EQ(
        roundTrip(g, persistent ? kArtifactVersionPersistent : kArtifactVersion).persistent,
        persistent);
  }
  // Split-KV's keys per part (split_kv / gpu_split_kv's last number) is
  // version 6: a reader from before it would pass the workspace in its
  // place. Entries without it (an older heed's) read back without it.
  for (bool parts : {true, false}) {
    KernelInfo info = describeKernel(variant, contiguous);
    info.splitKV = true;
    info.splitPartKeys = parts;
    Artifact artifact;
    artifact.entries.push_back({"cpu:test", info, "binary"});
    std::string bytes = artifact.serialize();
    EXPECT_EQ(version(bytes), parts ? kArtifactVersionSplitParts : kArtifactVersion);
    Artifact read;
    ASSERT_EQ(read.parse(bytes), "");
    EXPECT_TRUE(read.entries.at(0).info.splitKV);
    EXPECT_EQ(read.entries.at(0).info.splitPartKeys, parts);

    GPULaunch g;
    g.blockRows = 64;
    g.threads = 128;
    g.splitKV = true;
    g.splitKVWhole = !parts;
    g.splitPartKeys = parts;
    GPULaunch back = roundTrip(g, parts ? kArtifactVersionSplitParts : kArtifactVersion);
    EXPECT_TRUE(back.splitKV);
    EXPECT_EQ(back.splitKVWhole, !parts);
    EXPECT_EQ(back.splitPartKeys, parts);
  }
  // Query patches of a token grid (gpu_patches) are version 7: a reader
  // from before it would launch ceil(Sq / blockRows) blocks, fewer than the
  // patches. The grid and patch read back, and grid x counts the patches
  // (TileMath.h's numTiles): 8 x 8 patches of a ? x 40 grid, 5 per row band.
  {
    GPULaunch g;
    g.blockRows = 64;
    g.threads = 128;
    g.queryGrid = {40};
    g.queryPatch = {8, 8};
    GPULaunch back = roundTrip(g, kArtifactVersionGPUPatches);
    EXPECT_EQ(back.queryGrid, g.queryGrid);
    EXPECT_EQ(back.queryPatch, g.queryPatch);
    for (int64_t seq : {int64_t(1), int64_t(320), int64_t(321), int64_t(800), int64_t(801)})
      EXPECT_EQ(back.queryTiles(seq),
                heed::attn::numTiles<int64_t>(g.queryGrid, g.queryPatch, seq))
          << seq;
    EXPECT_EQ(back.queryTiles(800), 15); // 20 rows: 3 bands of 8 rows, 5 patches each
    GPULaunch flat;
    flat.blockRows = 64;
    flat.threads = 128;
    EXPECT_EQ(roundTrip(flat, kArtifactVersion).queryTiles(130), 3);
    // A patch whose lanes are not the block's rows is refused.
    KernelInfo info = describeKernel(variant, contiguous);
    info.gpu = g;
    info.gpu->format = "ptx";
    info.gpu->kernelName = "heed_kernel";
    info.gpu->queryPatch = {8, 4};
    KernelInfo parsed;
    EXPECT_NE(parsed.parse(info.serialize()), "");
    // Malformed lines are errors, not crashes (a rank of 2^64 - 1 or 10^11).
    info.gpu->queryPatch = {8, 8};
    std::string text = info.serialize();
    EXPECT_EQ(parsed.parse(text), "");
    for (const char *bad : {"gpu_patches 18446744073709551615\n", "gpu_patches 100000000000\n",
                            "gpu_patches 1 40 8\n", "gpu_patches 1 1 64 1\n"})
      EXPECT_NE(parsed.parse(text + bad), "") << bad;
  }
}

// The split-KV cost model counts each entry's own queries: a long entry with
// no query this call runs nothing and calls for no split.
TEST(Serving, SplitCostModelCountsEntriesWithQueries) {
  unsetenv("HEED_SPLIT_KV");
  auto tiles16 = [](int64_t n) { return (n + 15) / 16; };
  AttentionDims dims{2, 8, 8, 1, 32768};
  std::vector<int64_t> keys = {32768, 16}, none = {0, 1}, both = {1, 1};
  EXPECT_EQ(chooseKVSplits(dims, keys, 64, +tiles16, +tiles16, &both), 32);
  EXPECT_EQ(chooseKVSplits(dims, keys, 64, +tiles16, +tiles16, &none), 1);
}

TEST(Serving, BadQueryLengthsAreErrors) {
  spec::Variant variant = parse("variant v { mask = causal_bottom_right() }");
  KernelConfig config = servingConfig(DType::F32, Layout::BHSD, 0);
  config.kvLens = false;
  config.qLens = true;
  Serving serving(variant, config);
  Serving without(variant, servingConfig(DType::F32, Layout::BHSD, 0));
  ASSERT_TRUE(serving.get() && without.get());
  HostTensor q(DType::F32, {2, 2, 4, kDim}), out(DType::F32, {2, 2, 4, kDim}),
      lse(DType::F32, {2, 2, 4}), k(DType::F32, {2, 1, 8, kDim}), lens(DType::I32, {2}),
      kvLens(DType::I32, {2}), wrongShape(DType::I32, {3});
  std::mt19937_64 rng(11);
  q.fillUniform(rng, -1, 1);
  k.fillUniform(rng, -1, 1);
  auto run = [&](Kernel *kernel, HostTensor *qLens, HostTensor *kvs) {
    AttentionArgs args{q.ref(), k.ref(), k.ref(), out.ref(), lse.ref(), {}};
    if (qLens)
      args.qLens = qLens->ref();
    if (kvs)
      args.kvLens = kvs->ref();
    llvm::Error err = kernel->run(args);
    return err ? llvm::toString(std::move(err)) : std::string();
  };
  auto expectError = [](const std::string &got, const std::string &want) {
    EXPECT_NE(got.find(want), std::string::npos) << "got: '" << got << "'";
  };
  lens.set(0, 4);
  lens.set(1, 0);
  EXPECT_EQ(run(serving.get(), &lens, nullptr), "");
  lens.set(1, 5);
  expectError(run(serving.get(), &lens, nullptr), "q_lens[1] = 5 is outside [0, 4]");
  lens.set(1, -1);
  expectError(run(serving.get(), &lens, nullptr), "q_lens[1] = -1 is outside [0, 4]");
  expectError(run(serving.get(), nullptr, nullptr), "q_lens must be i32[B]");
  expectError(run(serving.get(), &wrongShape, nullptr), "q_lens must be i32[B] = i32[2]");
  kvLens.set(0, 8);
  kvLens.set(1, 8);
  lens.set(1, 2);
  expectError(run(without.get(), &lens, &kvLens),
              "q_lens was given, but the kernel was compiled without it");
}

TEST(Serving, BadPackedOffsetsAreErrors) {
  spec::Variant variant = parse("variant v { mask = causal_bottom_right() }");
  KernelConfig config = servingConfig(DType::F32, Layout::BSHD, 0);
  config.kvLens = false;
  config.cuSeqlensQ = config.cuSeqlensKV = true;
  Serving serving(variant, config);
  Serving without(variant, servingConfig(DType::F32, Layout::BSHD, 0));
  ASSERT_TRUE(serving.get() && without.get());
  // Two entries: 3 + 4 queries of 7, 5 + 6 keys of 12.
  HostTensor q(DType::F32, {1, 7, 2, kDim}), out(DType::F32, {1, 7, 2, kDim}),
      lse(DType::F32, {1, 2, 7}), k(DType::F32, {1, 12, 1, kDim}), cuQ(DType::I32, {3}),
      cuKV(DType::I32, {3}), rank2(DType::I32, {3, 1}), three(DType::I32, {4});
  std::mt19937_64 rng(12);
  q.fillUniform(rng, -1, 1);
  k.fillUniform(rng, -1, 1);
  auto set = [](HostTensor &t, std::vector<double> v) {
    for (size_t i = 0; i < v.size(); ++i)
      t.set(int64_t(i), v[i]);
  };
  set(cuQ, {0, 3, 7});
  set(cuKV, {0, 5, 11});
  set(three, {0, 1, 2, 3});
  auto run = [&](Kernel *kernel, HostTensor *cq, HostTensor *ckv, HostTensor *l = nullptr) {
    AttentionArgs args{q.ref(), k.ref(), k.ref(), out.ref(), (l ? *l : lse).ref(), {}};
    if (cq)
      args.cuSeqlensQ = cq->ref();
    if (ckv)
      args.cuSeqlensKV = ckv->ref();
    llvm::Error err = kernel->run(args);
    return err ? llvm::toString(std::move(err)) : std::string();
  };
  auto expectError = [](const std::string &got, const std::string &want) {
    EXPECT_NE(got.find(want), std::string::npos) << "got: '" << got << "'";
  };
  EXPECT_EQ(run(serving.get(), &cuQ, &cuKV), "");
  set(cuQ, {0, 3, 8});
  expectError(run(serving.get(), &cuQ, &cuKV),
              "cu_seqlens_q[2] = 8 is past the 7 rows the packed tensor holds");
  set(cuQ, {0, 4, 3});
  expectError(run(serving.get(), &cuQ, &cuKV),
              "cu_seqlens_q must not decrease: cu_seqlens_q[2] = 3 < cu_seqlens_q[1] = 4");
  set(cuQ, {-1, 3, 7});
  expectError(run(serving.get(), &cuQ, &cuKV), "cu_seqlens_q[0] = -1 is negative");
  set(cuQ, {0, 3, 7});
  expectError(run(serving.get(), &cuQ, &three),
              "cu_seqlens_q and cu_seqlens_kv must describe the same batch");
  expectError(run(serving.get(), &rank2, &cuKV), "cu_seqlens_q must be i32[B + 1]");
  expectError(run(serving.get(), nullptr, &cuKV), "cu_seqlens_q must be i32[B + 1]");
  HostTensor padded(DType::F32, {2, 2, 7});
  expectError(run(serving.get(), &cuQ, &cuKV, &padded), "lse must be f32[1, 2, 7]");
  // A strided view of the right offsets: the kernel reads them contiguous.
  HostTensor wide(DType::I32, {9});
  set(wide, {0, 100, 200, 3, 300, 400, 7, 500, 600});
  {
    AttentionArgs args{q.ref(), k.ref(), k.ref(), out.ref(), lse.ref(), {}};
    args.cuSeqlensQ = wide.ref();
    args.cuSeqlensQ.shape = {3}, args.cuSeqlensQ.strides = {3};
    args.cuSeqlensKV = cuKV.ref();
    llvm::Error err = serving.get()->run(args);
    expectError(err ? llvm::toString(std::move(err)) : "", "cu_seqlens_q must be contiguous");
  }
  expectError(run(without.get(), &cuQ, nullptr),
              "cu_seqlens_q was given, but the kernel was compiled without it");
  // The configuration refuses combinations whose lengths would disagree.
  config.qLens = true;
  EXPECT_TRUE(static_cast<bool>(Kernel::compile(variant, config).takeError()));
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
