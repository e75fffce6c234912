// BackwardKernel: the backward kernel module of a variant, its compilation
// through heed-cpu-backward-pipeline, and the run: delta pre-pass, the
// KV-major kernel on threads with private dq and buffer gradients, and
// their reduction in a fixed order (docs/backward.md).
#include "heed/Compiler/Backward.h"

#include "KernelModule.h"

#include "dialects/attn/AttnOps.h"
#include "dialects/attn/AttnTileOps.h"
#include "heed/Compiler/KernelCache.h"
#include "heed/Conversion/Passes.h"
#include "heed/Frontend/EmitIR.h"
#include "heed/Pipelines/Pipelines.h"
#include "heed/Runtime/BufferSummary.h"
#include "heed/Runtime/GateRows.h"
#include "heed/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/IR/LLVMContext.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <mutex>

namespace heed {

using namespace mlir;

llvm::Expected<std::vector<unsigned>> differentiableBuffers(const spec::Variant &variant) {
  std::unique_ptr<MLIRContext> ctx = detail::makeContext();
  return detail::gradientPositions(*ctx, variant);
}

std::pair<int64_t, int64_t> backwardTiles(const KernelConfig &config) {
  return {config.blockQ ? config.blockQ : kBackwardQueryRows,
          config.backwardBlockKV ? config.backwardBlockKV : kBackwardKeys};
}

namespace {

using PackedFn = void (*)(void **);
using CountFn = int64_t (*)(int64_t);

llvm::Error fail(const std::string &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

} // namespace

llvm::Expected<std::vector<unsigned>> detail::gradientPositions(MLIRContext &ctx,
                                                                const spec::Variant &variant) {
  OwningOpRef<ModuleOp> module = emitVariantModule(ctx, variant);
  detail::DiagnosticCollector diags(ctx);
  PassManager pm(&ctx);
  pm.addNestedPass<attn::VariantOp>(createAttnSimplify());
  pm.addPass(createAttnDifferentiate());
  if (failed(pm.run(*module)))
    return diags.error("the variant cannot be differentiated");
  auto grad = module->lookupSymbol<attn::VariantOp>(variant.name + "_grad");
  std::vector<unsigned> out;
  if (auto positions = grad->getAttrOfType<DenseI64ArrayAttr>("gradients"))
    for (int64_t p : positions.asArrayRef())
      out.push_back(static_cast<unsigned>(p));
  return out;
}

namespace {

/// The backward's symbol that lists its gradient buffers.
constexpr const char *kGradientBufferName = "heed_gradient_buffer";

/// func @heed_gradient_buffer(i) -> the variant buffer whose gradient is the
/// i-th, -1 past the last: the list travels with the binary, so a cached
/// kernel needs no --attn-differentiate run to know it.
void buildGradientListFunction(OpBuilder &b, Location loc, ModuleOp module,
                               const std::vector<unsigned> &gradients) {
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToEnd(module.getBody());
  auto func = func::FuncOp::create(b, loc, kGradientBufferName,
                                   b.getFunctionType({b.getIndexType()}, {b.getIndexType()}));
  Block *body = func.addEntryBlock();
  b.setInsertionPointToStart(body);
  Value result = arith::ConstantIndexOp::create(b, loc, -1);
  for (size_t n = 0; n < gradients.size(); ++n) {
    Value isN = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, body->getArgument(0),
                                      arith::ConstantIndexOp::create(b, loc, int64_t(n)));
    result = arith::SelectOp::create(b, loc, isN,
                                     arith::ConstantIndexOp::create(b, loc, gradients[n]), result);
  }
  func::ReturnOp::create(b, loc, result);
}

} // namespace

OwningOpRef<ModuleOp> detail::buildBackwardModule(MLIRContext &ctx, const spec::Variant &variant,
                                                  const KernelConfig &config,
                                                  const std::vector<unsigned> &gradients,
                                                  const std::vector<unsigned> &summarized,
                                                  int64_t tileRows, int64_t tileKeys,
                                                  bool dqStorage, bool deltaFromOut) {
  OwningOpRef<ModuleOp> module = emitVariantModule(ctx, variant);
  auto b = OpBuilder::atBlockEnd(module->getBody());
  Location loc = module->getLoc();
  int64_t dyn = ShapedType::kDynamic;
  Type elt = detail::storageType(ctx, config.dtype), f32 = b.getF32Type();
  MemRefType qk = detail::stridedType(ctx, {dyn, dyn, dyn, config.headDim}, elt);
  MemRefType vo = detail::stridedType(ctx, {dyn, dyn, dyn, config.valueDim()}, elt);
  MemRefType rows = detail::stridedType(ctx, {dyn, dyn, dyn}, f32);
  MemRefType dqType =
      detail::stridedType(ctx, {dyn, dyn, dyn, config.headDim}, dqStorage ? elt : f32);
  SmallVector<Type> args = {qk, qk, vo, vo};
  if (deltaFromOut) // out: f32 from a forward with KernelConfig::outF32
    args.push_back(detail::stridedType(ctx, {dyn, dyn, dyn, config.valueDim()},
                                       config.outF32 ? f32 : elt));
  args.append({rows, rows});
  for (const spec::BufferDecl &buf : variant.buffers)
    args.push_back(bufferType(ctx, buf));
  for (size_t i = 0; i < summarized.size(); ++i)
    args.push_back(MemRefType::get({dyn, dyn, 2}, b.getI64Type()));
  args.append({dqType, qk, vo});
  for (unsigned g : gradients)
    args.push_back(MemRefType::get(bufferType(ctx, variant.buffers[g]).getShape(), f32));
  // A ragged batch's lengths (docs/backward.md): kv_lens, q_lens,
  // cu_seqlens_q, cu_seqlens_kv, those the config takes.
  bool serving[] = {config.kvLens, config.qLens, config.cuSeqlensQ, config.cuSeqlensKV};
  for (bool taken : serving)
    if (taken)
      args.push_back(detail::stridedType(ctx, {dyn}, b.getI32Type()));
  args.append({MemRefType::get({1}, b.getI32Type()), MemRefType::get({3}, b.getI64Type()),
               b.getIndexType(), b.getIndexType()});
  auto func = func::FuncOp::create(b, loc, detail::kKernelName, b.getFunctionType(args, {}));
  func->setAttr("llvm.emit_c_interface", b.getUnitAttr());
  Block *body = func.addEntryBlock();
  b.setInsertionPointToStart(body);
  ValueRange all = body->getArguments();
  Value out = deltaFromOut ? all[4] : Value();
  SmallVector<Value> a(all.begin(), all.end());
  if (deltaFromOut)
    a.erase(a.begin() + 4);
  size_t nb = variant.buffers.size(), ns = summarized.size(), ng = gradients.size();
  size_t at = 6 + nb + ns;
  auto slice = [&](size_t from, size_t n) { return ValueRange(ArrayRef<Value>(a).slice(from, n)); };
  auto tiling = attn::TilingAttr::getFlat(&ctx, tileRows, tileKeys);
  size_t lens = at + 3 + ng;
  Value entryLengths[4];
  for (size_t i = 0; i < 4; ++i)
    if (serving[i])
      entryLengths[i] = a[lens++];
  attn::AttentionBackwardOp::create(
      b, loc, FlatSymbolRefAttr::get(&ctx, variant.name), a[0], a[1], a[2], a[3],
      entryLengths[0], entryLengths[1], entryLengths[2], entryLengths[3], a[4], a[5],
      slice(6, nb), slice(6 + nb, ns), a[at], a[at + 1], a[at + 2], slice(at + 3, ng),
      a[lens], a[lens + 1], a[lens + 2], a[lens + 3], out,
      b.getF32FloatAttr(static_cast<float>(config.effectiveScale())),
      attn::LayoutAttr::get(&ctx, config.layout == Layout::BSHD ? attn::Layout::BSHD
                                                                : attn::Layout::BHSD),
      tiling);
  func::ReturnOp::create(b, loc);
  detail::buildTileCountFunctions(b, loc, module.get(), variant.name);
  buildGradientListFunction(b, loc, module.get(), gradients);
  module->walk([&](attn::NumTilesOp op) { op.setTilingAttr(tiling); });
  return module;
}

namespace {

/// Whether the split backward's dQ kernel computes delta itself from out
/// (as on GPUs), not the host: not for a gated variant, whose kernel sees
/// dout scaled by the gate (rowsum(dout' * out) would be g delta).
bool dqComputesDelta(const spec::Variant &variant) { return !variant.gate; }

/// The backward of `variant` for this machine's CPU as a cache entry: a
/// shared object whose KernelInfo names it "<variant>.backward".
llvm::Expected<ArtifactEntry> compileBackwardEntry(const spec::Variant &variant,
                                                   const KernelConfig &config,
                                                   const std::string &kernel) {
  std::unique_ptr<MLIRContext> ctx = detail::makeContext();
  auto gradients = detail::gradientPositions(*ctx, variant);
  if (!gradients)
    return gradients.takeError();
  std::vector<unsigned> summarized;
  if (config.analyzeMask)
    summarized = detail::summarizedBuffers(variant);
  auto [tileRows, tileKeys] = backwardTiles(config);
  OwningOpRef<ModuleOp> module = detail::buildBackwardModule(
      *ctx, variant, config, *gradients, summarized, tileRows, tileKeys, /*dqStorage=*/false,
      /*deltaFromOut=*/kernel == "dq" && dqComputesDelta(variant));
  {
    detail::DiagnosticCollector diags(*ctx);
    if (failed(verify(*module)))
      return diags.error("the generated backward IR does not verify");
    PassManager pm(ctx.get());
    CPUPipelineOptions options = detail::pipelineOptions(config);
    options.backwardKernel = kernel;
    // The backward's tiles (choose-tiling's, where it makes patches).
    options.blockQ = tileRows;
    options.blockKV = tileKeys;
    buildCPUBackwardTilingPipeline(pm, options);
    buildCPUToLLVMPipeline(pm);
    if (failed(pm.run(*module)))
      return diags.error("lowering the backward to the CPU failed");
  }
  CPUTarget target = CPUTarget::jit();
  auto shared = detail::compileSharedObject(*module, target);
  if (!shared)
    return shared.takeError();
  KernelInfo info = describeKernel(variant, config);
  info.name = variant.name + (kernel == "fused" ? ".backward" : ".backward." + kernel);
  return ArtifactEntry{target.artifactTarget(), std::move(info), std::move(*shared)};
}

/// A memref descriptor as the C interface expects it:
/// {allocated, aligned, offset, sizes[rank], strides[rank]}.
std::vector<int64_t> descriptor(const void *data, const std::vector<int64_t> &shape,
                                const std::vector<int64_t> &strides) {
  auto ptr = reinterpret_cast<int64_t>(data);
  std::vector<int64_t> words = {ptr, ptr, 0};
  words.insert(words.end(), shape.begin(), shape.end());
  words.insert(words.end(), strides.begin(), strides.end());
  return words;
}

std::vector<int64_t> rowMajor(const std::vector<int64_t> &shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (size_t d = shape.size(); d-- > 1;)
    strides[d - 1] = strides[d] * shape[d];
  return strides;
}

double readAt(const TensorRef &t, int64_t offset) {
  const char *p = static_cast<const char *>(t.data) + offset * int64_t(dtypeSize(t.dtype));
  if (t.dtype == DType::F32) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  }
  uint16_t bits;
  std::memcpy(&bits, p, 2);
  return t.dtype == DType::BF16 ? bf16ToFloat(bits) : f16ToFloat(bits);
}

void writeAt(const TensorRef &t, int64_t offset, float value) {
  char *p = static_cast<char *>(t.data) + offset * int64_t(dtypeSize(t.dtype));
  if (t.dtype == DType::F32) {
    std::memcpy(p, &value, 4);
    return;
  }
  uint16_t bits = t.dtype == DType::BF16 ? floatToBF16(value) : floatToF16(value);
  std::memcpy(p, &bits, 2);
}

int64_t offsetOf(const std::vector<int64_t> &strides, std::initializer_list<int64_t> index) {
  int64_t o = 0, d = 0;
  for (int64_t i : index)
    o += i * strides[size_t(d++)];
  return o;
}

} // namespace

namespace {

/// What run() takes from a backward binary.
struct BackwardSymbols {
  PackedFn entry = nullptr;
  CountFn numQTiles = nullptr, numKVTiles = nullptr;
  std::vector<unsigned> gradients;
};

/// The entry points and gradient list of a backward binary of `variant`; ""
/// or why it is not one (a cache entry that says so is rebuilt).
std::string readBackwardSymbols(const LoadedKernel &binary, const spec::Variant &variant,
                                BackwardSymbols &out) {
  auto listed = reinterpret_cast<CountFn>(binary.symbol(kGradientBufferName));
  out.entry = reinterpret_cast<PackedFn>(binary.symbol("heed_packed_heed_kernel"));
  out.numQTiles = reinterpret_cast<CountFn>(binary.symbol(detail::kNumQTilesName));
  out.numKVTiles = reinterpret_cast<CountFn>(binary.symbol(detail::kNumKVTilesName));
  if (!listed || !out.entry || !out.numQTiles || !out.numKVTiles)
    return "the binary is not a backward kernel (it lacks the backward's entry points)";
  out.gradients.clear();
  for (int64_t i = 0, at; (at = listed(i)) >= 0; ++i) {
    spec::ElemType elem =
        size_t(at) < variant.buffers.size() ? variant.buffers[size_t(at)].elem : spec::ElemType::I32;
    bool isFloat = elem == spec::ElemType::F32 || elem == spec::ElemType::F16 ||
                   elem == spec::ElemType::BF16;
    if (!isFloat || (!out.gradients.empty() && unsigned(at) <= out.gradients.back()))
      return fmt::format("the binary lists buffer {} as a gradient of variant '{}', which has "
                         "no such float buffer in that order",
                         at, variant.name);
    out.gradients.push_back(unsigned(at));
  }
  return "";
}

} // namespace

struct BackwardKernel::Impl {
  /// The KV-major kernel (fused, or dK/dV with KernelConfig::backwardSplit)
  /// and, split, the query-major dQ kernel.
  std::shared_ptr<LoadedKernel> loaded, loadedDQ;
  BackwardSymbols symbolsDQ;
  spec::Variant variant;
  KernelConfig config;
  std::vector<unsigned> summarized;
  BackwardSymbols symbols;
  /// The buffers run() returns gradients of: the kernel's (symbols) and, for
  /// a gated variant, its float gate buffer, whose gradient the host adds.
  std::vector<unsigned> gradients;
  /// A gated variant's [buffer, dim of b, dim of q, dim of h]
  /// (spec::gateLayout), or empty; gateGradient: its slot in `gradients`.
  std::vector<int64_t> gate;
  int gateGradient = -1;
  /// The variant's description, for checking the buffers of each call.
  KernelInfo info;

  /// gradients and gate from symbols and the variant.
  void listGradients();
  double seconds = 0;
  CacheOutcome outcome = CacheOutcome::Compiled;

  llvm::Error checkArgs(const BackwardArgs &args, AttentionDims &dims) const;
  llvm::Error checkTensors(const BackwardArgs &args, AttentionDims &dims) const;
  llvm::Error checkRaggedTensors(const BackwardArgs &args, AttentionDims &dims) const;

  /// The tasks' dq arrays (f32, `floats` each), kept between calls up to
  /// kKeptScratchBytes in all: a new allocation per call cost its page
  /// faults and unmapping (a few percent of a causal backward at S = 4096).
  /// A call takes the kept set (or makes one) and gives it back; concurrent
  /// calls each get their own.
  static constexpr size_t kKeptScratchBytes = size_t(256) << 20;
  using DQScratch = std::vector<std::unique_ptr<float[]>>;
  DQScratch takeScratch(size_t count, size_t floats) const {
    {
      std::lock_guard<std::mutex> lock(scratchMutex);
      if (kept.size() >= count && keptFloats >= floats) {
        DQScratch out = std::move(kept);
        kept.clear();
        keptFloats = 0;
        out.resize(count);
        return out;
      }
    }
    DQScratch out(count);
    for (auto &dq : out)
      dq.reset(new float[floats]);
    return out;
  }
  void giveScratch(DQScratch scratch, size_t floats) const {
    if (scratch.size() * floats * sizeof(float) > kKeptScratchBytes)
      return;
    std::lock_guard<std::mutex> lock(scratchMutex);
    if (kept.empty() || (scratch.size() >= kept.size() && floats >= keptFloats)) {
      kept = std::move(scratch);
      keptFloats = floats;
    }
  }
  mutable std::mutex scratchMutex;
  mutable DQScratch kept;
  mutable size_t keptFloats = 0;
};

BackwardKernel::BackwardKernel(std::unique_ptr<Impl> impl) : impl(std::move(impl)) {}
BackwardKernel::~BackwardKernel() = default;
const std::vector<unsigned> &BackwardKernel::gradientBuffers() const {
  return impl->gradients;
}

void BackwardKernel::Impl::listGradients() {
  gradients = symbols.gradients;
  if (!variant.gate)
    return;
  gate = spec::gateLayout(*variant.gate);
  unsigned buffer = unsigned(gate[0]);
  auto at = std::lower_bound(gradients.begin(), gradients.end(), buffer);
  if (at == gradients.end() || *at != buffer)
    at = gradients.insert(at, buffer);
  gateGradient = int(at - gradients.begin());
}
double BackwardKernel::compileSeconds() const { return impl->seconds; }
CacheOutcome BackwardKernel::cacheOutcome() const { return impl->outcome; }

llvm::Expected<std::unique_ptr<BackwardKernel>>
BackwardKernel::compile(const spec::Variant &variant, const KernelConfig &config) {
  return compile(variant, config, &KernelCache::global());
}

llvm::Expected<std::unique_ptr<BackwardKernel>>
BackwardKernel::compile(const spec::Variant &variant, const KernelConfig &config,
                        KernelCache *cache) {
  auto start = std::chrono::steady_clock::now();
  if (llvm::Error err = config.validateFor(variant))
    return std::move(err);
  if (config.paged())
    return fail("the backward takes keys and values as tensors, not as a paged KV cache (a "
                "cache for inference; kv_lens and packed sequences (cu_seqlens) are taken)");
  auto impl = std::make_unique<Impl>();
  impl->variant = variant;
  // What the kernel depends on: lse does not change it, so configs that
  // differ in it share one cache entry; patch tiling does where it applies
  // (the one loop, with the analysis, walks a neighborhood mask's patches).
  impl->config = config;
  impl->config.lse = false;
  impl->config.patchTiling = config.backwardPatches();
  if (impl->config.analyzeMask)
    impl->summarized = detail::summarizedBuffers(variant);
  // One kernel, or the dK/dV and dQ kernels (each its own cache entry).
  auto load = [&](const std::string &kernel) -> llvm::Expected<std::shared_ptr<LoadedKernel>> {
    // Only the dQ kernel reads out: the others' entries do not depend on
    // its dtype.
    KernelConfig config = impl->config;
    if (kernel != "dq")
      config.outF32 = false;
    auto build = [&] { return compileBackwardEntry(variant, config, kernel); };
    if (cache) {
      CacheOutcome outcome;
      auto got = cache->getKind(
          kernel == "fused" ? std::string("backward") : "backward-" + kernel, variant, config,
          build,
          [&](const LoadedKernel &binary) {
            BackwardSymbols symbols;
            return readBackwardSymbols(binary, variant, symbols);
          },
          &outcome);
      if (got && kernel != "dq")
        impl->outcome = outcome;
      return got;
    }
    auto entry = build();
    if (!entry)
      return entry.takeError();
    std::string error;
    std::shared_ptr<LoadedKernel> loaded = LoadedKernel::load(*entry, error);
    if (!loaded)
      return fail(error);
    return loaded;
  };
  bool split = impl->config.backwardSplit;
  auto got = load(split ? "dkdv" : "fused");
  if (!got)
    return got.takeError();
  std::shared_ptr<LoadedKernel> loaded = std::move(*got);
  if (split) {
    auto dq = load("dq");
    if (!dq)
      return dq.takeError();
    impl->loadedDQ = std::move(*dq);
    if (std::string error = readBackwardSymbols(*impl->loadedDQ, variant, impl->symbolsDQ);
        !error.empty())
      return fail(error);
  }
  if (std::string error = readBackwardSymbols(*loaded, variant, impl->symbols); !error.empty())
    return fail(error);
  impl->listGradients();
  impl->info = describeKernel(variant, impl->config);
  impl->loaded = std::move(loaded);
  impl->seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return std::unique_ptr<BackwardKernel>(new BackwardKernel(std::move(impl)));
}

/// The forward call a backward call is of (its lengths included).
static AttentionArgs forwardArgs(const BackwardArgs &a) {
  AttentionArgs fwd{a.q, a.k, a.v, a.out, a.lse, a.buffers};
  fwd.kvLens = a.kvLens, fwd.qLens = a.qLens;
  fwd.cuSeqlensQ = a.cuSeqlensQ, fwd.cuSeqlensKV = a.cuSeqlensKV;
  return fwd;
}

/// A ragged call's tensors: q, k, v, out, lse, the buffers and the
/// lengths as the forward takes them (checkAttentionArgs), dout, dq, dk and
/// dv shaped like out, q, k and v. dims gets the entries and their longest
/// lengths.
llvm::Error BackwardKernel::Impl::checkRaggedTensors(const BackwardArgs &args,
                                                     AttentionDims &dims) const {
  const KernelConfig &c = config;
  AttentionArgs fwd = forwardArgs(args);
  KernelInfo call = info;
  call.lse = true;
  // out in f32 (a training forward) or in the inputs' dtype
  call.outF32 = args.out.dtype == DType::F32 && c.dtype != DType::F32;
  if (std::string err = checkAttentionArgs(fwd, call, dims); !err.empty())
    return fail(err);
  struct Like {
    const char *name;
    const TensorRef *t, *like;
  };
  for (Like n : {Like{"dout", &args.dout, &args.out}, Like{"dq", &args.dq, &args.q},
                 Like{"dk", &args.dk, &args.k}, Like{"dv", &args.dv, &args.v}})
    if (n.t->dtype != c.dtype || n.t->shape != n.like->shape ||
        (!n.t->data && n.t->numElements() > 0) ||
        n.t->effectiveStrides()[3] != 1)
      return fail(fmt::format("{} must be a {} tensor shaped like {} ({}), contiguous in its "
                              "last dim, got {}",
                              n.name, toString(c.dtype), n.like == &args.out ? "out" : "its input",
                              n.like->describe(), n.t->describe()));
  return llvm::Error::success();
}

/// Checks every tensor of a call against the kernel; fills the sizes.
llvm::Error BackwardKernel::Impl::checkArgs(const BackwardArgs &args, AttentionDims &dims) const {
  const KernelConfig &c = config;
  if (c.backwardSplit && dqComputesDelta(variant) &&
      args.out.dtype != (c.outF32 ? DType::F32 : c.dtype))
    return fail(fmt::format("the split backward's dQ kernel reads out as {} "
                            "(KernelConfig::outF32 {}), got {}",
                            toString(c.outF32 ? DType::F32 : c.dtype), c.outF32 ? "set" : "unset",
                            args.out.describe()));
  if (c.ragged()) {
    if (llvm::Error err = checkRaggedTensors(args, dims))
      return err;
  } else {
    // Lengths given to a kernel of one length would be ignored: refused.
    for (auto [t, name] : {std::pair{&args.kvLens, "kv_lens"}, std::pair{&args.qLens, "q_lens"},
                           std::pair{&args.cuSeqlensQ, "cu_seqlens_q"},
                           std::pair{&args.cuSeqlensKV, "cu_seqlens_kv"}})
      if (t->data || !t->shape.empty())
        return fail(std::string(name) + " was given, but the backward was compiled for batches "
                                        "of one length (compile it with the lengths the "
                                        "forward takes)");
    if (llvm::Error err = checkTensors(args, dims))
      return err;
  }
  if (args.bufferGrads.size() != gradients.size())
    return fail(fmt::format("the backward writes {} buffer gradients, got {} tensors",
                            gradients.size(), args.bufferGrads.size()));
  for (size_t g = 0; g < gradients.size(); ++g) {
    const TensorRef &t = args.bufferGrads[g], &buf = args.buffers[gradients[g]];
    if (t.dtype != DType::F32 || t.shape != buf.shape || !t.isContiguous())
      return fail(fmt::format("the gradient of buffer '{}' must be contiguous f32 shaped like "
                              "it ({}), got {}",
                              variant.buffers[gradients[g]].name, buf.describe(),
                              t.describe()));
  }
  return llvm::Error::success();
}

/// One length's tensors (q, k, v, out, lse, dout, dq, dk, dv, buffers).
llvm::Error BackwardKernel::Impl::checkTensors(const BackwardArgs &args, AttentionDims &dims) const {
  const KernelConfig &c = config;
  bool bshd = c.layout == Layout::BSHD;
  auto logical = [&](const TensorRef &t, int d) { // 0 batch, 1 heads, 2 sequence, 3 dim
    return t.shape[size_t(bshd && d != 0 && d != 3 ? 3 - d : d)];
  };
  struct Named {
    const char *name;
    const TensorRef *t;
    int64_t dim;
  };
  for (Named n : {Named{"q", &args.q, c.headDim}, Named{"k", &args.k, c.headDim},
                  Named{"v", &args.v, c.valueDim()}, Named{"out", &args.out, c.valueDim()},
                  Named{"dout", &args.dout, c.valueDim()}, Named{"dq", &args.dq, c.headDim},
                  Named{"dk", &args.dk, c.headDim}, Named{"dv", &args.dv, c.valueDim()}}) {
    // out may also be f32 (a forward with KernelConfig::outF32: delta from
    // the exact O); it is read only by the delta pre-pass.
    bool dtypeOk = n.t->dtype == c.dtype || (n.t == &args.out && n.t->dtype == DType::F32);
    if (n.t->shape.size() != 4 || n.t->shape[3] != n.dim || !dtypeOk ||
        n.t->effectiveStrides()[3] != 1 || (!n.t->data && n.t->numElements() > 0))
      return fail(fmt::format("{} must be a {} tensor of rank 4 with head dim {} (contiguous), "
                              "got {}",
                              n.name, toString(c.dtype), n.dim, n.t->describe()));
  }
  int64_t B = logical(args.q, 0), Hq = logical(args.q, 1), Sq = logical(args.q, 2);
  int64_t Hkv = logical(args.k, 1), Skv = logical(args.k, 2);
  for (const TensorRef *t : {&args.out, &args.dout, &args.dq})
    if (logical(*t, 0) != B || logical(*t, 1) != Hq || logical(*t, 2) != Sq)
      return fail("out, dout and dq must have q's batch, heads and length, got " + t->describe());
  for (const TensorRef *t : {&args.k, &args.v, &args.dk, &args.dv})
    if (logical(*t, 0) != B || logical(*t, 1) != Hkv || logical(*t, 2) != Skv)
      return fail("k, v, dk and dv must have one batch, heads and length, got " + t->describe());
  if (Hkv == 0 || Hq % Hkv != 0)
    return fail(fmt::format("query heads ({}) must be a multiple of kv heads ({})", Hq, Hkv));
  if (args.lse.dtype != DType::F32 || args.lse.shape != std::vector<int64_t>{B, Hq, Sq})
    return fail("lse must be f32 [B, Hq, Sq], got " + args.lse.describe());
  // Every buffer as the forward checks it (count, dtype, shape, contiguous):
  // the kernel reads them bounds-checked, but a gated variant's gate is also
  // read, and its gradient written, by the host.
  if (std::string err = checkBuffers(args.buffers, info, AttentionDims{B, Hq, Hkv, Sq, Skv});
      !err.empty())
    return fail(err);
  dims = AttentionDims{B, Hq, Hkv, Sq, Skv};
  return llvm::Error::success();
}

namespace {

/// Zeros every element of a rank-4 tensor contiguous in its last dim.
void zeroRows(const TensorRef &t) {
  std::vector<int64_t> s = t.effectiveStrides();
  size_t row = size_t(t.shape[3]) * dtypeSize(t.dtype);
  for (int64_t i = 0; i < t.shape[0]; ++i)
    for (int64_t j = 0; j < t.shape[1]; ++j)
      for (int64_t k = 0; k < t.shape[2]; ++k)
        std::memset(static_cast<char *>(t.data) +
                        (i * s[0] + j * s[1] + k * s[2]) * int64_t(dtypeSize(t.dtype)),
                    0, row);
}

/// delta = rowsum(dout * out), [B, Hq, Sq], each summed in double on the
/// host threads.
std::vector<float> rowDeltas(const TensorRef &out, const TensorRef &dout, Layout layout,
                             const AttentionDims &dims, int64_t Dv) {
  int64_t rows = dims.batch * dims.headsQ, Sq = dims.seqQ, Hq = dims.headsQ;
  std::vector<float> delta(size_t(rows * Sq));
  std::vector<int64_t> so = out.effectiveStrides(), sd = dout.effectiveStrides();
  auto idx4 = [&](const std::vector<int64_t> &s, int64_t b, int64_t h, int64_t i, int64_t d) {
    return layout == Layout::BSHD ? offsetOf(s, {b, i, h, d}) : offsetOf(s, {b, h, i, d});
  };
  unsigned tasks = unsigned(std::max<int64_t>(1, std::min<int64_t>(hardwareThreads(), rows)));
  // f32 rows are read straight (the common case: training keeps f32 or
  // reads bf16 through readAt); the last dim is contiguous (checked).
  bool f32 = out.dtype == DType::F32 && dout.dtype == DType::F32;
  runTasks(tasks, [&](unsigned task) {
    for (int64_t bh = task; bh < rows; bh += tasks)
      for (int64_t i = 0; i < Sq; ++i) {
        int64_t ro = idx4(so, bh / Hq, bh % Hq, i, 0), rd = idx4(sd, bh / Hq, bh % Hq, i, 0);
        double sum = 0;
        if (f32) {
          const float *o = static_cast<const float *>(out.data) + ro;
          const float *g = static_cast<const float *>(dout.data) + rd;
          for (int64_t d = 0; d < Dv; ++d)
            sum += double(g[d]) * double(o[d]);
        } else {
          for (int64_t d = 0; d < Dv; ++d)
            sum += readAt(dout, rd + d * sd.back()) * readAt(out, ro + d * so.back());
        }
        delta[size_t(bh * Sq + i)] = float(sum);
      }
  });
  return delta;
}

/// Each row's gate of a gated variant, g[(b * Hq + h) * Sq + i] =
/// buffer[b, i, h] through `layout` ([buffer, dim of b, dim of q, dim of h]).
std::vector<float> gateValues(const TensorRef &buffer, const std::vector<int64_t> &layout,
                              const AttentionDims &dims) {
  std::vector<float> g(size_t(dims.batch * dims.headsQ * dims.seqQ));
  std::vector<int64_t> strides = buffer.effectiveStrides();
  for (int64_t b = 0; b < dims.batch; ++b)
    for (int64_t h = 0; h < dims.headsQ; ++h)
      for (int64_t i = 0; i < dims.seqQ; ++i) {
        g[size_t((b * dims.headsQ + h) * dims.seqQ + i)] =
            float(readAt(buffer, gateElement(strides, layout, b, i, h)));
      }
  return g;
}

/// dout with each row times its gate, contiguous in dout's dtype and layout
/// (the bytes in `storage`).
TensorRef gatedRows(const TensorRef &dout, const std::vector<float> &gates, Layout layout,
                    const AttentionDims &dims, int64_t Dv, std::vector<char> &storage) {
  TensorRef scaled{nullptr, dout.dtype, dout.shape, rowMajor(dout.shape)};
  storage.assign(size_t(dout.numElements()) * dtypeSize(dout.dtype), 0);
  scaled.data = storage.data();
  std::vector<int64_t> from = dout.effectiveStrides(), to = scaled.strides;
  auto at = [&](const std::vector<int64_t> &s, int64_t b, int64_t h, int64_t i) {
    return layout == Layout::BSHD ? offsetOf(s, {b, i, h, 0}) : offsetOf(s, {b, h, i, 0});
  };
  int64_t rows = dims.batch * dims.headsQ;
  unsigned tasks = unsigned(std::max<int64_t>(1, std::min<int64_t>(hardwareThreads(), rows)));
  runTasks(tasks, [&](unsigned task) {
    for (int64_t bh = task; bh < rows; bh += tasks)
      for (int64_t i = 0; i < dims.seqQ; ++i) {
        int64_t b = bh / dims.headsQ, h = bh % dims.headsQ;
        double g = gates[size_t(bh * dims.seqQ + i)];
        int64_t src = at(from, b, h, i), dst = at(to, b, h, i);
        for (int64_t d = 0; d < Dv; ++d)
          writeAt(scaled, dst + d, float(g * readAt(dout, src + d * from.back())));
      }
  });
  return scaled;
}

/// dq = the sum of the tasks' f32 rows `dqs` (row-major in dq's shape), in
/// task order (the same sums on every run), a row of D at a time, rows
/// spread over the tasks: each element 0 + part 0 + part 1 + ..., summed
/// part by part over the row (vectorized), then stored (f32 directly, other
/// dtypes rounded by writeAt).
void sumTaskRows(const TensorRef &dq, const std::vector<std::unique_ptr<float[]>> &dqs,
                 int64_t D, unsigned tasks) {
  const std::vector<int64_t> &shape = dq.shape;
  std::vector<int64_t> sq = dq.effectiveStrides();
  int64_t rows = shape[0] * shape[1] * shape[2];
  bool direct = dq.dtype == DType::F32 && sq[3] == 1;
  runTasks(tasks, [&](unsigned task) {
    std::vector<float> sum(static_cast<size_t>(D));
    for (int64_t r = task; r < rows; r += tasks) {
      int64_t o = (r / (shape[1] * shape[2])) * sq[0] + (r / shape[2] % shape[1]) * sq[1] +
                  (r % shape[2]) * sq[2];
      std::fill(sum.begin(), sum.end(), 0.0f);
      for (const auto &part : dqs) {
        const float *row = part.get() + r * D;
        for (int64_t d = 0; d < D; ++d)
          sum[size_t(d)] += row[d];
      }
      if (direct)
        std::copy(sum.begin(), sum.end(), static_cast<float *>(dq.data) + o);
      else
        for (int64_t d = 0; d < D; ++d)
          writeAt(dq, o + d * sq[3], sum[size_t(d)]);
    }
  });
}

/// A gated variant's gate gradient: rowsum(dout * out) / g on each routed
/// row (`dots`, per row as `gates`), 0 on the others (routing is not
/// differentiated), added into `grad` through the gate's `layout`.
void addGateGradient(const TensorRef &grad, const std::vector<int64_t> &layout,
                     const std::vector<float> &gates, const std::vector<float> &dots,
                     const AttentionDims &dims) {
  std::vector<int64_t> strides = rowMajor(grad.shape);
  auto *out = static_cast<float *>(grad.data);
  for (int64_t b = 0; b < dims.batch; ++b)
    for (int64_t h = 0; h < dims.headsQ; ++h)
      for (int64_t i = 0; i < dims.seqQ; ++i) {
        size_t row = size_t((b * dims.headsQ + h) * dims.seqQ + i);
        if (gates[row] != 0)
          out[gateElement(strides, layout, b, i, h)] += dots[row] / gates[row];
      }
}

} // namespace

llvm::Error BackwardKernel::run(const BackwardArgs &args, unsigned threads,
                                RunStats *stats) const {
  AttentionDims dims;
  if (llvm::Error err = impl->checkArgs(args, dims))
    return err;
  const KernelConfig &c = impl->config;
  int64_t B = dims.batch, Hq = dims.headsQ, Hkv = dims.headsKV, Sq = dims.seqQ,
          Skv = dims.seqKV, D = c.headDim;
  // Sigmoid rows are not normalized: no delta (zeros the kernel never reads).
  bool sigmoid = impl->variant.normalize == spec::Normalization::Sigmoid;
  // Split (the GPUs' kernels), the dQ kernel computes delta and writes it
  // for the dK/dV kernel (but for a gated variant's, docs/backward.md).
  bool split = impl->loadedDQ != nullptr;
  bool kernelDelta = split && dqComputesDelta(impl->variant);
  // The rows the tensors hold: dims' but for packed queries ([1, Hq,
  // total_q]: delta and dq are sized by them, and the kernel views them
  // from each entry's first row).
  AttentionDims held = dims;
  if (c.cuSeqlensQ)
    held.batch = args.lse.shape[0], held.seqQ = args.lse.shape[2];
  std::vector<float> delta = sigmoid || kernelDelta
                                 ? std::vector<float>(size_t(held.batch * Hq * held.seqQ))
                                 : rowDeltas(args.out, args.dout, c.layout, held, c.valueDim());
  // A gated variant: out = g * (the attention row), g = the gate buffer's
  // entry of the row (0: not routed; its lse is -inf, so it sees no key).
  // The kernel runs on dout scaled by g; delta = rowsum(dout * out) is
  // already the scaled one's; the gate's gradient, rowsum(dout * out) / g
  // on routed rows (0 on the others: routing is not differentiated), is
  // added here.
  std::vector<float> gates;
  std::vector<char> scaledStorage;
  TensorRef dout = args.dout;
  if (!impl->gate.empty()) {
    gates = gateValues(args.buffers[size_t(impl->gate[0])], impl->gate, dims);
    dout = gatedRows(args.dout, gates, c.layout, dims, c.valueDim(), scaledStorage);
  }
  std::vector<SummaryTable> tables;
  for (unsigned s : impl->summarized)
    tables.push_back(buildSummaryTable(args.buffers[s], attn::VariantOp::kSummaryBlock));

  int64_t items = B * Hkv * impl->symbols.numKVTiles(Skv);
  unsigned tasks = unsigned(std::max<int64_t>(
      1, std::min<int64_t>(threads ? threads : hardwareThreads(), std::max<int64_t>(items, 1))));
  std::vector<int64_t> dqShape = args.dq.shape, dqStrides = rowMajor(dqShape);
  size_t dqSize = size_t(args.dq.numElements());
  // A ragged batch: rows past an entry's keys get no gradient from the
  // kernel (dq's rows come from the zeroed task arrays).
  if (c.ragged())
    for (const TensorRef *t : {&args.dk, &args.dv})
      zeroRows(*t);
  // Each task's dq, zeroed by the task itself (in parallel, and its pages
  // first touched by the thread that adds into them). Split, the dQ kernel
  // writes each row once: one dq for all.
  Impl::DQScratch dqs = impl->takeScratch(split ? 1 : tasks, dqSize);
  // The kernel's gradients: their slots among args.bufferGrads.
  std::vector<size_t> slots;
  for (unsigned buffer : impl->symbols.gradients)
    slots.push_back(size_t(std::lower_bound(impl->gradients.begin(), impl->gradients.end(),
                                            buffer) -
                           impl->gradients.begin()));
  std::vector<std::vector<std::vector<float>>> grads(tasks);
  for (auto &g : grads)
    for (size_t slot : slots)
      g.emplace_back(size_t(args.bufferGrads[slot].numElements()), 0.0f);
  std::vector<int32_t> statuses(tasks, 0);
  std::vector<std::array<int64_t, 3>> counts(tasks, {0, 0, 0});
  // A tensor as the kernel takes it: packed sequences as [B, longest, ...]
  // of batch stride 0 (the kernel views each entry from its first row).
  auto add = [&](std::vector<std::vector<int64_t>> &d, const TensorRef &t, bool packed = false,
                 int64_t longest = 0) {
    std::vector<int64_t> shape = t.shape, strides = t.effectiveStrides();
    if (packed) {
      size_t seqDim = shape.size() == 3 || c.layout == Layout::BHSD ? 2 : 1;
      shape[0] = B, strides[0] = 0, shape[seqDim] = longest;
    }
    d.push_back(descriptor(t.data, shape, strides));
  };
  bool packedQ = c.cuSeqlensQ, packedKV = c.cuSeqlensKV;
  TensorRef deltaRef{delta.data(), DType::F32, {held.batch, Hq, held.seqQ}, {}};
  std::vector<const TensorRef *> lengths;
  for (auto [taken, t] : {std::pair{c.kvLens, &args.kvLens}, std::pair{c.qLens, &args.qLens},
                          std::pair{c.cuSeqlensQ, &args.cuSeqlensQ},
                          std::pair{c.cuSeqlensKV, &args.cuSeqlensKV}})
    if (taken)
      lengths.push_back(t);
  // Runs `entry` over `count` items on the tasks, each task with its dq
  // (`dq(task)`), gradients, status and counts.
  auto runItems = [&](PackedFn entry, int64_t count, bool withOut, auto dqOf) {
    runTasks(tasks, [&](unsigned task) {
      std::vector<std::vector<int64_t>> d;
      add(d, args.q, packedQ, Sq);
      add(d, args.k, packedKV, Skv);
      add(d, args.v, packedKV, Skv);
      add(d, dout, packedQ, Sq);
      if (withOut)
        add(d, args.out, packedQ, Sq);
      add(d, args.lse, packedQ, Sq);
      add(d, deltaRef, packedQ, Sq);
      for (const TensorRef &t : args.buffers)
        add(d, t);
      for (const SummaryTable &s : tables)
        d.push_back(descriptor(s.data.data(), {s.levels, s.blocks, 2}, {s.blocks * 2, 2, 1}));
      add(d, TensorRef{dqOf(task), DType::F32, dqShape, dqStrides}, packedQ, Sq);
      add(d, args.dk, packedKV, Skv);
      add(d, args.dv, packedKV, Skv);
      for (size_t g = 0; g < slots.size(); ++g)
        d.push_back(descriptor(grads[task][g].data(), args.bufferGrads[slots[g]].shape,
                               rowMajor(args.bufferGrads[slots[g]].shape)));
      for (const TensorRef *t : lengths)
        add(d, *t);
      d.push_back(descriptor(&statuses[task], {1}, {1}));
      d.push_back(descriptor(counts[task].data(), {3}, {1}));
      std::vector<void *> pointers;
      for (auto &words : d)
        pointers.push_back(words.data());
      int64_t begin = 0, end = 0;
      std::vector<void *> packed = packKernelArgs(pointers, begin, end);
      // A fixed assignment of items to tasks: each task's dq and gradients
      // are the same sums on every run.
      for (begin = task; begin < count; begin += tasks) {
        end = begin + 1;
        entry(packed.data());
      }
    });
  };
  if (split) {
    // dQ first (its items are (b, h, query tile); it adds every buffer
    // gradient, as on GPUs; it counts no block), then dK and dV.
    std::fill_n(dqs[0].get(), dqSize, 0.0f);
    runItems(impl->symbolsDQ.entry, B * Hq * impl->symbolsDQ.numQTiles(Sq), kernelDelta,
             [&](unsigned) { return dqs[0].get(); });
    runItems(impl->symbols.entry, items, false, [&](unsigned) { return dqs[0].get(); });
  } else {
    runItems(impl->symbols.entry, items, false, [&](unsigned task) {
      std::fill_n(dqs[task].get(), dqSize, 0.0f);
      return dqs[task].get();
    });
  }
  sumTaskRows(args.dq, dqs, D, tasks);
  impl->giveScratch(std::move(dqs), dqSize);
  for (const TensorRef &t : args.bufferGrads)
    std::fill_n(static_cast<float *>(t.data), t.numElements(), 0.0f);
  for (size_t g = 0; g < slots.size(); ++g) {
    auto *out = static_cast<float *>(args.bufferGrads[slots[g]].data);
    for (size_t e = 0; e < grads[0][g].size(); ++e) {
      float sum = 0;
      for (unsigned t = 0; t < tasks; ++t)
        sum += grads[t][g][e];
      out[e] = sum;
    }
  }
  if (impl->gateGradient >= 0)
    addGateGradient(args.bufferGrads[size_t(impl->gateGradient)], impl->gate, gates,
                    sigmoid ? rowDeltas(args.out, args.dout, c.layout, dims, c.valueDim()) : delta,
                    dims);
  if (stats) {
    std::array<int64_t, 3> total = {0, 0, 0};
    for (const auto &n : counts)
      for (size_t i = 0; i < 3; ++i)
        total[i] += n[i];
    int64_t blocks = B * Hq * impl->symbols.numQTiles(Sq) * impl->symbols.numKVTiles(Skv);
    if (c.ragged()) { // each entry's own tiles
      AttentionArgs fwd = forwardArgs(args);
      std::vector<int64_t> queries = entryQueryLengths(fwd, impl->info, dims),
                           keys = entryKeyLengths(fwd, impl->info, dims);
      blocks = 0;
      for (size_t b = 0; b < size_t(B); ++b)
        blocks += Hq * impl->symbols.numQTiles(queries.empty() ? Sq : queries[b]) *
                  impl->symbols.numKVTiles(keys.empty() ? Skv : keys[b]);
    }
    *stats = RunStats{total[0], total[1], total[2], blocks, 0};
  }
  for (int32_t s : statuses)
    if (s > 0 && size_t(s) <= impl->variant.buffers.size()) {
      if (stats)
        stats->outOfRangeBuffer = s;
      return fail("the variant read buffer '" + impl->variant.buffers[size_t(s) - 1].name +
                  "' out of range; the gradients are not valid");
    }
  return llvm::Error::success();
}

} // namespace heed
