// JIT compilation of a kernel module (mlir::ExecutionEngine) and its launch:
// argument checking, memref descriptors, and work split over a thread pool.
#include "KernelModule.h"

#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/ExecutionEngine/OptUtils.h"
#include "llvm/Support/ThreadPool.h"
#include "llvm/Support/Threading.h"
#include "llvm/Support/xxhash.h"

#include <fmt/format.h>

#include <array>
#include <atomic>
#include <chrono>
#include <mutex>

namespace heed {

/// A built buffer summary and what it was built from.
struct SummaryEntry {
  unsigned buffer;
  uint64_t hash;
  int64_t length;
  std::shared_ptr<const std::vector<int64_t>> table;
  int64_t levels, blocks;
};

struct Kernel::Impl {
  spec::Variant variant;
  KernelConfig config;
  std::unique_ptr<mlir::ExecutionEngine> engine;
  void (*entry)(void **) = nullptr;
  int64_t (*numQTiles)(int64_t) = nullptr;
  int64_t (*numKVTiles)(int64_t) = nullptr;
  std::vector<unsigned> summarized;
  std::vector<void (*)(void **)> summaryEntries;
  double compileSeconds = 0;

  // Summaries are built once per buffer content: keyed by a hash of the bytes,
  // so a changed buffer always gets a new table.
  std::mutex summaryMutex;
  std::vector<SummaryEntry> summaryCache;

  SummaryEntry summarize(unsigned n, const TensorRef &buffer);
};

namespace {

llvm::Error fail(std::string msg) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), msg);
}

/// Process-wide worker threads, created on first use.
llvm::ThreadPoolInterface &threadPool() {
  static llvm::DefaultThreadPool pool(llvm::hardware_concurrency());
  return pool;
}

/// A memref descriptor as the C interface expects it:
/// {allocated, aligned, offset, sizes[rank], strides[rank]}.
struct Descriptor {
  std::vector<int64_t> words;
  void *pointer() { return words.data(); }
};

Descriptor describe(void *data, const std::vector<int64_t> &shape,
                    const std::vector<int64_t> &strides) {
  Descriptor d;
  auto ptr = reinterpret_cast<int64_t>(data);
  d.words = {ptr, ptr, 0};
  d.words.insert(d.words.end(), shape.begin(), shape.end());
  d.words.insert(d.words.end(), strides.begin(), strides.end());
  return d;
}

DType bufferDType(spec::ElemType e) {
  switch (e) {
  case spec::ElemType::F32: return DType::F32;
  case spec::ElemType::F16: return DType::F16;
  case spec::ElemType::BF16: return DType::BF16;
  case spec::ElemType::I8: return DType::I8;
  case spec::ElemType::I32: return DType::I32;
  case spec::ElemType::I64: return DType::I64;
  case spec::ElemType::Bool: return DType::Bool;
  }
  return DType::F32;
}

/// Checks q, k, v, out, lse against the config; fills the logical sizes.
llvm::Error checkTensors(const AttentionArgs &a, const KernelConfig &c, AttentionDims &dims) {
  bool bshd = c.layout == Layout::BSHD;
  const char *layoutName = bshd ? "[B, S, H, D]" : "[B, H, S, D]";
  struct Named {
    const char *name;
    const TensorRef *t;
    int64_t d;
  } all[] = {{"q", &a.q, c.headDim}, {"k", &a.k, c.headDim},
             {"v", &a.v, c.valueDim()}, {"out", &a.out, c.valueDim()}};
  for (const Named &n : all) {
    if (n.t->shape.size() != 4)
      return fail(fmt::format("{} must have rank 4 {}, got {}", n.name, layoutName,
                              n.t->describe()));
    if (n.t->dtype != c.dtype)
      return fail(fmt::format("{} must be {} (the kernel was compiled for it), got {}",
                              n.name, toString(c.dtype), toString(n.t->dtype)));
    if (n.t->shape[3] != n.d)
      return fail(fmt::format("{} must have head dim {}, got {}", n.name, n.d,
                              n.t->describe()));
    if (!n.t->strides.empty() && n.t->strides.size() != 4)
      return fail(fmt::format("{} has {} strides for rank 4", n.name, n.t->strides.size()));
    if (n.t->effectiveStrides()[3] != 1)
      return fail(fmt::format("{} must be contiguous in its last (head) dimension", n.name));
    for (int64_t s : n.t->shape)
      if (s < 0)
        return fail(fmt::format("{} has a negative size: {}", n.name, n.t->describe()));
    if (!n.t->data && n.t->numElements() > 0)
      return fail(fmt::format("{} has no data pointer", n.name));
  }
  unsigned hd = bshd ? 2 : 1, sd = bshd ? 1 : 2;
  dims = {a.q.shape[0], a.q.shape[hd], a.k.shape[hd], a.q.shape[sd], a.k.shape[sd]};
  if (a.k.shape[0] != dims.batch || a.v.shape[0] != dims.batch ||
      a.out.shape[0] != dims.batch)
    return fail(fmt::format("batch sizes differ: q {}, k {}, v {}, out {}", a.q.describe(),
                            a.k.describe(), a.v.describe(), a.out.describe()));
  if (a.v.shape[hd] != dims.headsKV || a.v.shape[sd] != dims.seqKV)
    return fail(fmt::format("k and v must have the same heads and length: k {}, v {}",
                            a.k.describe(), a.v.describe()));
  if (a.out.shape[hd] != dims.headsQ || a.out.shape[sd] != dims.seqQ)
    return fail(fmt::format("out must have the heads and length of q: q {}, out {}",
                            a.q.describe(), a.out.describe()));
  if (dims.headsKV == 0 ? dims.headsQ != 0 : dims.headsQ % dims.headsKV != 0)
    return fail(fmt::format("query heads ({}) must be a multiple of key/value heads ({})",
                            dims.headsQ, dims.headsKV));
  bool hasLse = !a.lse.shape.empty() || a.lse.data;
  if (c.lse && !hasLse)
    return fail("the kernel was compiled to write lse, but no lse tensor was given");
  if (!c.lse && hasLse)
    return fail("an lse tensor was given, but the kernel was compiled without lse");
  if (c.lse) {
    std::vector<int64_t> want = {dims.batch, dims.headsQ, dims.seqQ};
    if (a.lse.dtype != DType::F32 || a.lse.shape != want)
      return fail(fmt::format("lse must be f32[{}], got {}", fmt::join(want, ", "),
                              a.lse.describe()));
    if (!a.lse.strides.empty() && a.lse.strides.size() != 3)
      return fail("lse has the wrong number of strides");
    if (a.lse.effectiveStrides()[2] != 1)
      return fail("lse must be contiguous in its last dimension");
    if (!a.lse.data && a.lse.numElements() > 0)
      return fail("lse has no data pointer");
  }
  return llvm::Error::success();
}

llvm::Error checkBuffers(const AttentionArgs &a, const spec::Variant &v, const AttentionDims &dims) {
  if (a.buffers.size() != v.buffers.size()) {
    std::vector<std::string> names;
    for (const spec::BufferDecl &b : v.buffers)
      names.push_back(b.name);
    return fail(fmt::format("variant '{}' reads {} buffer(s) ({}), but {} were given",
                            v.name, v.buffers.size(), fmt::join(names, ", "),
                            a.buffers.size()));
  }
  for (size_t i = 0; i < v.buffers.size(); ++i) {
    const spec::BufferDecl &decl = v.buffers[i];
    const TensorRef &t = a.buffers[i];
    if (t.dtype != bufferDType(decl.elem))
      return fail(fmt::format("buffer '{}' must be {}, got {}", decl.name,
                              spec::toString(decl.elem), toString(t.dtype)));
    std::vector<int64_t> want = resolveDims(decl.shape, dims);
    if (t.shape != want)
      return fail(fmt::format("buffer '{}' must have shape [{}] = [{}], got {}", decl.name,
                              fmt::join(decl.shape, ", "), fmt::join(want, ", "),
                              t.describe()));
    if (!t.isContiguous())
      return fail(fmt::format("buffer '{}' must be contiguous", decl.name));
    if (!t.data && t.numElements() > 0)
      return fail(fmt::format("buffer '{}' has no data pointer", decl.name));
  }
  return llvm::Error::success();
}

} // namespace

SummaryEntry Kernel::Impl::summarize(unsigned n, const TensorRef &buffer) {
  int64_t length = buffer.numElements();
  auto bytes = llvm::ArrayRef<uint8_t>(static_cast<const uint8_t *>(buffer.data),
                                       static_cast<size_t>(length) * dtypeSize(buffer.dtype));
  uint64_t hash = llvm::xxh3_64bits(bytes);
  {
    std::lock_guard<std::mutex> lock(summaryMutex);
    for (const SummaryEntry &e : summaryCache)
      if (e.buffer == n && e.hash == hash && e.length == length)
        return e;
  }
  int64_t g = 16; // attn::VariantOp::kSummaryBlock
  int64_t blocks = (length + g - 1) / g, levels = 1;
  while ((int64_t(1) << levels) <= blocks)
    ++levels;
  auto table = std::make_shared<std::vector<int64_t>>(std::max<int64_t>(blocks, 1) * levels * 2);
  Descriptor in = describe(buffer.data, {length}, {1});
  Descriptor out = describe(table->data(), {levels, blocks, 2}, {blocks * 2, 2, 1});
  void *pointers[] = {in.pointer(), out.pointer()};
  void *packed[] = {&pointers[0], &pointers[1]};
  summaryEntries[n](packed);
  SummaryEntry e{n, hash, length, table, levels, blocks};
  std::lock_guard<std::mutex> lock(summaryMutex);
  if (summaryCache.size() >= 16)
    summaryCache.erase(summaryCache.begin());
  summaryCache.push_back(e);
  return e;
}

Kernel::Kernel(std::unique_ptr<Impl> impl) : impl(std::move(impl)) {}
Kernel::~Kernel() = default;
const spec::Variant &Kernel::variant() const { return impl->variant; }
const KernelConfig &Kernel::config() const { return impl->config; }
double Kernel::compileSeconds() const { return impl->compileSeconds; }

llvm::Expected<std::unique_ptr<Kernel>> Kernel::compile(const spec::Variant &variant,
                                                        const KernelConfig &config) {
  auto start = std::chrono::steady_clock::now();
  if (llvm::Error err = config.validate())
    return std::move(err);
  std::unique_ptr<mlir::MLIRContext> ctx = detail::makeContext();
  mlir::OwningOpRef<mlir::ModuleOp> module = detail::buildKernelModule(*ctx, variant, config);
  if (llvm::Error err = detail::lowerTo(*module, config, Stage::LLVM))
    return std::move(err);
  auto tm = detail::hostTargetMachine();
  if (!tm)
    return tm.takeError();
  auto optimize = mlir::makeOptimizingTransformer(3, 0, tm->get());
  mlir::ExecutionEngineOptions options;
  options.transformer = optimize;
  options.jitCodeGenOptLevel = llvm::CodeGenOptLevel::Aggressive;
  auto engine = mlir::ExecutionEngine::create(*module, options, std::move(*tm));
  if (!engine)
    return engine.takeError();
  auto entry = (*engine)->lookupPacked(std::string("_mlir_ciface_") + detail::kKernelName);
  if (!entry)
    return entry.takeError();
  auto impl = std::make_unique<Impl>();
  impl->summarized = detail::summarizedBuffers(variant);
  for (size_t n = 0; n < impl->summarized.size(); ++n) {
    auto fn = (*engine)->lookupPacked("_mlir_ciface_" + detail::summaryFunctionName(n));
    if (!fn)
      return fn.takeError();
    impl->summaryEntries.push_back(*fn);
  }
  for (auto [name, slot] : {std::pair<const char *, int64_t (**)(int64_t)>{
                                detail::kNumQTilesName, &impl->numQTiles},
                            {detail::kNumKVTilesName, &impl->numKVTiles}}) {
    auto fn = (*engine)->lookup(name);
    if (!fn)
      return fn.takeError();
    *slot = reinterpret_cast<int64_t (*)(int64_t)>(*fn);
  }
  impl->variant = variant;
  impl->config = config;
  impl->engine = std::move(*engine);
  impl->entry = *entry;
  impl->compileSeconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return std::unique_ptr<Kernel>(new Kernel(std::move(impl)));
}

llvm::Error Kernel::run(const AttentionArgs &args, unsigned threads,
                        RunStats *runStats) const {
  const KernelConfig &c = impl->config;
  AttentionDims dims;
  if (llvm::Error err = checkTensors(args, c, dims))
    return err;
  if (llvm::Error err = checkBuffers(args, impl->variant, dims))
    return err;
  int64_t items = dims.batch * dims.headsQ * impl->numQTiles(dims.seqQ);
  if (items == 0)
    return llvm::Error::success();

  // Descriptors are shared (read-only) by all threads; each thread has its own
  // status word and work range.
  std::vector<Descriptor> descs;
  auto add = [&](const TensorRef &t) {
    descs.push_back(describe(t.data, t.shape, t.effectiveStrides()));
  };
  add(args.q);
  add(args.k);
  add(args.v);
  for (const TensorRef &b : args.buffers)
    add(b);
  std::vector<SummaryEntry> summaries; // keeps the tables alive during the run
  for (size_t n = 0; n < impl->summarized.size(); ++n) {
    summaries.push_back(impl->summarize(n, args.buffers[impl->summarized[n]]));
    const SummaryEntry &e = summaries.back();
    descs.push_back(describe(const_cast<int64_t *>(e.table->data()), {e.levels, e.blocks, 2},
                             {e.blocks * 2, 2, 1}));
  }
  add(args.out);
  if (c.lse)
    add(args.lse);

  unsigned maxThreads = threads ? threads : llvm::hardware_concurrency().compute_thread_count();
  unsigned numTasks = static_cast<unsigned>(std::min<int64_t>(maxThreads, items));
  std::atomic<int64_t> next{0};
  std::vector<int32_t> statuses(numTasks, 0);
  std::vector<std::array<int64_t, 3>> blockCounts(numTasks, {0, 0, 0});
  auto work = [&](unsigned task) {
    std::vector<Descriptor> local = descs;
    int32_t statusWord = 0;
    Descriptor statusDesc = describe(&statusWord, {1}, {1});
    std::array<int64_t, 3> counts = {0, 0, 0};
    Descriptor statsDesc = describe(counts.data(), {3}, {1});
    std::vector<void *> pointers;
    for (Descriptor &d : local)
      pointers.push_back(d.pointer());
    pointers.push_back(statusDesc.pointer());
    pointers.push_back(statsDesc.pointer());
    int64_t begin = 0, end = 0;
    std::vector<void *> packed;
    for (void *&p : pointers)
      packed.push_back(&p);
    packed.push_back(&begin);
    packed.push_back(&end);
    // Items of a causal mask differ in cost: hand them out one by one.
    while ((begin = next.fetch_add(1)) < items) {
      end = begin + 1;
      impl->entry(packed.data());
    }
    statuses[task] = statusWord;
    blockCounts[task] = counts;
  };
  if (numTasks == 1) {
    work(0);
  } else {
    llvm::ThreadPoolTaskGroup group(threadPool());
    for (unsigned t = 0; t < numTasks; ++t)
      group.async([&work, t] { work(t); });
    group.wait();
  }
  if (runStats) {
    *runStats = RunStats{};
    for (const auto &c : blockCounts) {
      runStats->visitedBlocks += c[0];
      runStats->fullBlocks += c[1];
      runStats->partialBlocks += c[2];
    }
    runStats->totalBlocks = items * impl->numKVTiles(dims.seqKV);
  }
  for (int32_t s : statuses)
    if (s > 0 && static_cast<size_t>(s) <= impl->variant.buffers.size())
      return fail(fmt::format(
          "the variant read buffer '{}' out of range (an index computed by the spec fell "
          "outside the buffer's shape); outputs are not valid",
          impl->variant.buffers[s - 1].name));
  return llvm::Error::success();
}

} // namespace heed
