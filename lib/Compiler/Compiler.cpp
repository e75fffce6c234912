// Building the kernel module from a Variant and lowering it stage by stage.
#include "KernelModule.h"

#include "dialects/attn/AttnOps.h"
#include "heed/Frontend/EmitIR.h"
#include "heed/Runtime/Artifact.h"
#include "heed/Pipelines/Pipelines.h"
#include "heed/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/TargetParser/Host.h"
#include "llvm/TargetParser/SubtargetFeature.h"
#include "llvm/TargetParser/Triple.h"
#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/Support/raw_ostream.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <cmath>
#include <limits>
#include <mutex>

using namespace mlir;

namespace heed {

double KernelConfig::effectiveScale() const {
  return scale != 0 ? scale : 1.0 / std::sqrt(static_cast<double>(headDim));
}

std::string KernelConfig::canonical() const {
  // A new field changes the size: add it below, then update the size (qLens,
  // cuSeqlensQ and cuSeqlensKV took padding after kvLens: the size stayed).
  static_assert(sizeof(KernelConfig) == 88, "KernelConfig changed: update canonical()");
  return fmt::format(
      "{} d={} dv={} layout={} lse={} scale={:a} block={}x{} backward_kv={} backward_split={} "
      "analyze={} patches={} kv_lens={} page={} q_lens={} cu_seqlens={}{} out_f32={}{}",
      toString(dtype), headDim, valueDim(), int(layout), int(lse), effectiveScale(), blockQ,
      blockKV, backwardBlockKV, int(backwardSplit), int(analyzeMask), int(patchTiling),
      int(hasKVLens()), pageSize, int(qLens), int(cuSeqlensQ), int(cuSeqlensKV), int(outF32),
      splitOneLoop ? " split_one_loop=1" : "");
}

llvm::Error KernelConfig::validateFor(const spec::Variant &variant) const {
  if (llvm::Error err = validate())
    return err;
  if (variant.gate && (qLens || cuSeqlensQ))
    return llvm::createStringError(
        llvm::inconvertibleErrorCode(),
        fmt::format("variant '{}' gates its rows (its routed rows are listed over the whole Sq): "
                    "it takes no q_lens or cu_seqlens_q",
                    variant.name));
  return llvm::Error::success();
}

llvm::Error KernelConfig::validate() const {
  auto fail = [](std::string msg) {
    return llvm::createStringError(llvm::inconvertibleErrorCode(), msg);
  };
  if (dtype != DType::F32 && dtype != DType::F16 && dtype != DType::BF16)
    return fail(fmt::format("dtype must be f32, f16 or bf16, got {}", toString(dtype)));
  for (int64_t d : {headDim, valueDim()})
    if (d < 1 || d > 1024 || d % 8 != 0)
      return fail(fmt::format("head dims must be multiples of 8 in [8, 1024], got {}", d));
  if (!std::isfinite(scale))
    return fail("scale must be finite");
  if (blockQ < 0 || blockQ > 64 || (blockQ & (blockQ - 1)))
    return fail(fmt::format("block-q must be a power of two up to 64 (0: by schedule), got {}",
                            blockQ));
  if (blockKV < 1 || blockKV > 64)
    return fail(fmt::format("block-kv must be in [1, 64], got {}", blockKV));
  if (backwardBlockKV < 0 || backwardBlockKV > 64)
    return fail(fmt::format("the backward's block-kv must be in [1, 64] (0: by schedule), got {}",
                            backwardBlockKV));
  if (pageSize < 0 || pageSize > 4096)
    return fail(fmt::format("page size must be in [1, 4096] (0: no paged cache), got {}",
                            pageSize));
  if (cuSeqlensQ && qLens)
    return fail("packed queries (cu_seqlens_q) give each entry's length: q_lens is not taken "
                "with them");
  if (cuSeqlensKV && hasKVLens())
    return fail("packed keys (cu_seqlens_kv) give each entry's length and are not a paged "
                "cache: kv_lens and a page size are not taken with them");
  return llvm::Error::success();
}

namespace detail {

std::unique_ptr<MLIRContext> makeContext() {
  DialectRegistry registry;
  registerAllDialects(registry);
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  auto context = std::make_unique<MLIRContext>(registry, MLIRContext::Threading::DISABLED);
  context->loadAllAvailableDialects();
  return context;
}

Type storageType(MLIRContext &ctx, DType t) {
  switch (t) {
  case DType::F16: return Float16Type::get(&ctx);
  case DType::BF16: return BFloat16Type::get(&ctx);
  default: return Float32Type::get(&ctx);
  }
}

/// A rank-n memref with dynamic sizes and strides, innermost stride 1: it
/// accepts any caller layout whose last dimension is contiguous.
MemRefType stridedType(MLIRContext &ctx, ArrayRef<int64_t> shape, Type elt) {
  SmallVector<int64_t> strides(shape.size(), ShapedType::kDynamic);
  strides.back() = 1;
  return MemRefType::get(shape, elt,
                         StridedLayoutAttr::get(&ctx, ShapedType::kDynamic, strides));
}

std::vector<unsigned> summarizedBuffers(const spec::Variant &variant) {
  std::vector<unsigned> out;
  for (auto [i, buf] : llvm::enumerate(variant.buffers))
    if ((buf.shape.size() == 1 || buf.shape.size() == 2) && buf.elem != spec::ElemType::F32 &&
        buf.elem != spec::ElemType::F16 && buf.elem != spec::ElemType::BF16)
      out.push_back(i);
  return out;
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

/// `func @heed_num_q_tiles(%sq: index) -> index` and
/// `func @heed_num_kv_tiles(%skv: index) -> index`: how many query tiles a
/// (batch, head) has, and how many KV blocks a query tile may visit. The
/// runtime asks these instead of assuming a tiling: work items are
/// B x Hq x heed_num_q_tiles(Sq). Their bodies are `attn.num_tiles` of the
/// variant, which the lowering expands for the tiling it uses.
void buildTileCountFunctions(OpBuilder &b, Location loc, ModuleOp module, StringRef variant) {
  OpBuilder::InsertionGuard guard(b);
  for (auto [name, side] : {std::pair<const char *, attn::Side>{kNumQTilesName, attn::Side::Q},
                            {kNumKVTilesName, attn::Side::KV}}) {
    b.setInsertionPointToEnd(module.getBody());
    auto func = func::FuncOp::create(
        b, loc, name, b.getFunctionType({b.getIndexType()}, {b.getIndexType()}));
    Block *body = func.addEntryBlock();
    b.setInsertionPointToStart(body);
    Value count = attn::NumTilesOp::create(b, loc, b.getIndexType(), body->getArgument(0),
                                           FlatSymbolRefAttr::get(b.getContext(), variant),
                                           attn::SideAttr::get(b.getContext(), side),
                                           attn::TilingAttr());
    func::ReturnOp::create(b, loc, count);
  }
}

OwningOpRef<ModuleOp> buildKernelModule(MLIRContext &ctx, const spec::Variant &variant,
                                        const KernelConfig &config) {
  OpBuilder b(&ctx);
  Location loc = NameLoc::get(b.getStringAttr(variant.name));
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  b.setInsertionPointToEnd(module->getBody());
  emitVariant(b, loc, variant);

  int64_t dyn = ShapedType::kDynamic;
  Type elt = storageType(ctx, config.dtype);
  MemRefType qk = stridedType(ctx, {dyn, dyn, dyn, config.headDim}, elt);
  MemRefType vo = stridedType(ctx, {dyn, dyn, dyn, config.valueDim()}, elt);
  MemRefType k = qk, v = vo;
  if (config.paged()) { // [pages, P, Hkv, D] or [pages, Hkv, P, D]
    int64_t p = config.pageSize;
    bool bshd = config.layout == Layout::BSHD;
    k = stridedType(ctx, {dyn, bshd ? p : dyn, bshd ? dyn : p, config.headDim}, elt);
    v = stridedType(ctx, {dyn, bshd ? p : dyn, bshd ? dyn : p, config.valueDim()}, elt);
  }
  SmallVector<Type> args = {qk, k, v};
  unsigned serving = 0; // kv_lens, page_table, q_lens
  if (config.hasKVLens())
    args.push_back(stridedType(ctx, {dyn}, b.getI32Type())), ++serving;
  if (config.paged())
    args.push_back(stridedType(ctx, {dyn, dyn}, b.getI32Type())), ++serving;
  if (config.qLens)
    args.push_back(stridedType(ctx, {dyn}, b.getI32Type())), ++serving;
  unsigned packed = serving; // cu_seqlens_q, cu_seqlens_kv after them
  if (config.cuSeqlensQ)
    args.push_back(stridedType(ctx, {dyn}, b.getI32Type())), ++serving;
  if (config.cuSeqlensKV)
    args.push_back(stridedType(ctx, {dyn}, b.getI32Type())), ++serving;
  // Entries of different lengths: the order the runtime starts them in.
  bool ordered = config.ragged();
  if (ordered)
    args.push_back(stridedType(ctx, {dyn}, b.getI32Type())), ++serving;
  for (const spec::BufferDecl &buf : variant.buffers)
    args.push_back(bufferType(ctx, buf));
  args.push_back(config.outF32 ? stridedType(ctx, {dyn, dyn, dyn, config.valueDim()},
                                             b.getF32Type())
                                : vo);
  if (config.lse)
    args.push_back(stridedType(ctx, {dyn, dyn, dyn}, b.getF32Type()));
  auto func = func::FuncOp::create(b, loc, kKernelName, b.getFunctionType(args, {}));
  func->setAttr("llvm.emit_c_interface", b.getUnitAttr());
  Block *body = func.addEntryBlock();
  b.setInsertionPointToStart(body);
  auto arg = [&](unsigned i) { return body->getArgument(i); };
  unsigned nb = variant.buffers.size();
  SmallVector<Value> buffers, summaries;
  for (unsigned i = 0; i < nb; ++i)
    buffers.push_back(arg(3 + serving + i));
  unsigned next = 3 + serving + nb;
  Value out = arg(next++);
  Value lse = config.lse ? arg(next++) : Value();
  Value kvLens = config.hasKVLens() ? arg(3) : Value();
  Value pageTable = config.paged() ? arg(4) : Value();
  Value qLens = config.qLens ? arg(2 + packed) : Value();
  Value cuQ = config.cuSeqlensQ ? arg(3 + packed) : Value();
  Value cuKV = config.cuSeqlensKV ? arg(3 + packed + unsigned(config.cuSeqlensQ)) : Value();
  Value order = ordered ? arg(2 + serving) : Value();
  attn::AttentionOp::create(
      b, loc, FlatSymbolRefAttr::get(&ctx, variant.name), arg(0), arg(1), arg(2), kvLens,
      pageTable, qLens, cuQ, cuKV, order, buffers,
      /*summaries=*/ValueRange{}, out, lse, /*status=*/Value(), /*stats=*/Value(),
      /*gate_rows=*/Value(), /*gate_counts=*/Value(), /*work_begin=*/Value(),
      /*work_end=*/Value(), /*split_phase=*/Value(), /*split_count=*/Value(),
      /*split_part_keys=*/Value(),
      /*partial_acc=*/Value(), /*partial_stats=*/Value(), b.getF32FloatAttr(static_cast<float>(config.effectiveScale())),
      attn::LayoutAttr::get(&ctx, config.layout == Layout::BSHD ? attn::Layout::BSHD
                                                                : attn::Layout::BHSD),
      attn::TilingAttr());
  func::ReturnOp::create(b, loc);

  buildTileCountFunctions(b, loc, module.get(), variant.name);
  return module;
}

CPUPipelineOptions pipelineOptions(const KernelConfig &config) {
  CPUPipelineOptions options;
  options.blockQ = config.blockQ;
  options.blockKV = config.blockKV;
  options.analyzeMask = config.analyzeMask;
  options.patchTiling = config.patchTiling;
  options.splitOneLoop = config.splitOneLoop;
  return options;
}

std::unique_ptr<llvm::MCSubtargetInfo> x86Subtarget(const CPUTarget &t) {
  // (Only x86-64: checkFeatures aborts on a feature the target does not know.)
  if (llvm::Triple(t.triple).getArch() != llvm::Triple::x86_64)
    return nullptr;
  initializeNativeTarget();
  std::string error;
  const llvm::Target *target = llvm::TargetRegistry::lookupTarget(llvm::Triple(t.triple), error);
  if (!target)
    return nullptr;
  return std::unique_ptr<llvm::MCSubtargetInfo>(
      target->createMCSubtargetInfo(llvm::Triple(t.triple), t.cpu, t.features));
}

bool hasBF16Dot(const CPUTarget &target) {
  std::unique_ptr<llvm::MCSubtargetInfo> info = x86Subtarget(target);
  return info && info->checkFeatures("+avx512bf16");
}

llvm::Error lowerTo(ModuleOp module, const KernelConfig &config, Stage stage,
                    const CPUTarget &target) {
  MLIRContext &ctx = *module.getContext();
  detail::DiagnosticCollector diags(ctx);
  if (failed(verify(module)))
    return diags.error("the generated attn IR does not verify");
  PassManager pm(&ctx);
  CPUPipelineOptions options = pipelineOptions(config);
  options.bf16Dot = hasBF16Dot(target);
  buildCPUTilePipeline(pm, options);
  if (stage != Stage::Tile)
    buildTileToCPUPipeline(pm, options.bf16Dot);
  if (stage != Stage::Tile && stage != Stage::Tiled)
    buildCPUToLLVMPipeline(pm);
  if (failed(pm.run(module)))
    return diags.error("lowering to the CPU failed");
  return llvm::Error::success();
}

void initializeNativeTarget() {
  static std::once_flag once;
  std::call_once(once, [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
  });
}

llvm::Expected<std::unique_ptr<llvm::TargetMachine>> targetMachine(const CPUTarget &target) {
  initializeNativeTarget();
  llvm::orc::JITTargetMachineBuilder builder{llvm::Triple(target.triple)};
  builder.setCPU(target.cpu);
  llvm::SubtargetFeatures features(target.features);
  builder.addFeatures(features.getFeatures());
  builder.setRelocationModel(llvm::Reloc::PIC_);
  builder.setCodeGenOptLevel(llvm::CodeGenOptLevel::Aggressive);
  return builder.createTargetMachine();
}

/// Translates to LLVM IR and runs LLVM's -O3 for the host.
llvm::Expected<std::unique_ptr<llvm::Module>>
translateAndOptimize(ModuleOp module, llvm::LLVMContext &llvmContext,
                     llvm::TargetMachine &tm, bool packed) {
  std::unique_ptr<llvm::Module> llvmModule = translateModuleToLLVMIR(module, llvmContext);
  if (!llvmModule)
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "translation to LLVM IR failed");
  llvmModule->setDataLayout(tm.createDataLayout());
  llvmModule->setTargetTriple(tm.getTargetTriple());
  if (packed)
    detail::addPackedWrappers(*llvmModule);
  auto optimize = makeOptimizingTransformer(3, 0, &tm);
  if (llvm::Error err = optimize(llvmModule.get()))
    return std::move(err);
  return std::move(llvmModule);
}

llvm::Expected<std::string> emitObject(llvm::Module &module, llvm::TargetMachine &tm) {
  llvm::SmallVector<char, 0> buffer;
  llvm::raw_svector_ostream objStream(buffer);
  llvm::legacy::PassManager codegen;
  if (tm.addPassesToEmitFile(codegen, objStream, nullptr, llvm::CodeGenFileType::ObjectFile))
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "the target cannot emit object files");
  codegen.run(module);
  return std::string(buffer.begin(), buffer.end());
}

llvm::Expected<std::string> compileSharedObject(ModuleOp module, const CPUTarget &target) {
  auto tm = targetMachine(target);
  if (!tm)
    return tm.takeError();
  llvm::LLVMContext llvmContext;
  auto llvmModule = translateAndOptimize(module, llvmContext, **tm, /*packed=*/true);
  if (!llvmModule)
    return llvmModule.takeError();
  auto object = emitObject(**llvmModule, **tm);
  if (!object)
    return object.takeError();
  return linkSharedObject(*object);
}

} // namespace detail

using detail::emitObject;
using detail::translateAndOptimize;

llvm::Expected<std::string> emit(const spec::Variant &variant, const KernelConfig &config,
                                 Stage stage) {
  if (llvm::Error err = config.validateFor(variant))
    return std::move(err);
  std::unique_ptr<MLIRContext> ctx = detail::makeContext();
  OwningOpRef<ModuleOp> module = detail::buildKernelModule(*ctx, variant, config);
  std::string text;
  llvm::raw_string_ostream os(text);
  if (stage == Stage::Attn) {
    module->print(os);
    return text;
  }
  bool textStage = stage == Stage::Tile || stage == Stage::Tiled || stage == Stage::LLVM;
  if (llvm::Error err = detail::lowerTo(*module, config, textStage ? stage : Stage::LLVM,
                                       CPUTarget::jit()))
    return std::move(err);
  if (textStage) {
    module->print(os);
    return text;
  }
  auto tm = detail::targetMachine(CPUTarget::jit());
  if (!tm)
    return tm.takeError();
  llvm::LLVMContext llvmContext;
  auto llvmModule = translateAndOptimize(*module, llvmContext, **tm);
  if (!llvmModule)
    return llvmModule.takeError();
  if (stage == Stage::LLVMIR) {
    (*llvmModule)->print(os, nullptr);
    return text;
  }
  return emitObject(**llvmModule, **tm);
}

CPUTarget CPUTarget::host() {
  CPUTarget t;
  t.triple = llvm::sys::getProcessTriple();
  t.cpu = llvm::sys::getHostCPUName().str();
  llvm::SubtargetFeatures features;
  for (auto &[name, enabled] : llvm::sys::getHostCPUFeatures())
    features.AddFeature(name, enabled);
  t.features = features.getString();
  return t;
}

CPUTarget CPUTarget::jit() {
  static const CPUTarget target = [] {
    const char *name = std::getenv("HEED_JIT_CPU");
    if (!name || !*name)
      return host();
    auto parsed = parse(std::string("cpu:") + name);
    std::string problem;
    if (!parsed)
      problem = llvm::toString(parsed.takeError());
    else if (std::string why; !hostRuns(parsed->artifactTarget(), why))
      problem = why;
    if (!problem.empty()) {
      llvm::errs() << "heed: warning: HEED_JIT_CPU=" << name << ": " << problem
                   << "; compiling for this machine's CPU\n";
      return host();
    }
    return *parsed;
  }();
  return target;
}

llvm::Expected<CPUTarget> CPUTarget::parse(const std::string &name) {
  if (name == "cpu" || name == "cpu:native" || name == "host")
    return host();
  llvm::StringRef rest(name);
  if (!rest.consume_front("cpu:"))
    return llvm::createStringError(
        llvm::inconvertibleErrorCode(),
        fmt::format("unknown target '{}': expected cpu, cpu:native or cpu:<LLVM CPU name> "
                    "(e.g. cpu:x86-64-v3); GPU targets are not available in this build",
                    name));
  CPUTarget t;
  t.triple = llvm::sys::getProcessTriple();
  t.cpu = rest.str();
  detail::initializeNativeTarget();
  std::string error;
  const llvm::Target *target = llvm::TargetRegistry::lookupTarget(llvm::Triple(t.triple), error);
  if (!target)
    return llvm::createStringError(llvm::inconvertibleErrorCode(), error);
  std::unique_ptr<llvm::MCSubtargetInfo> info(
      target->createMCSubtargetInfo(llvm::Triple(t.triple), t.cpu, ""));
  if (!info || !info->isCPUStringValid(t.cpu))
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   fmt::format("unknown CPU '{}' for {}", t.cpu, t.triple));
  return t;
}

std::string CPUTarget::artifactTarget() const {
  std::string out = "cpu:" + llvm::Triple(triple).getArchName().str() + ":" + cpu;
  // The instruction-set extensions the code may use that the runtime can
  // check for (hostRuns): a kernel for a CPU this machine is not refuses to
  // load instead of dying on an illegal instruction.
  std::unique_ptr<llvm::MCSubtargetInfo> info = detail::x86Subtarget(*this);
  if (!info)
    return out;
  std::string used;
  for (const char *f : kCheckedX86Features)
    if (info->checkFeatures(std::string("+") + f))
      used += (used.empty() ? "" : ",") + std::string(f);
  return out + ":" + used;
}

KernelInfo describeKernel(const spec::Variant &variant, const KernelConfig &config) {
  KernelInfo info;
  info.name = variant.name;
  info.dtype = config.dtype;
  info.headDim = config.headDim;
  info.headDimV = config.valueDim();
  info.layout = config.layout;
  info.lse = config.lse;
  info.kvLens = config.hasKVLens();
  info.entryOrder = config.ragged();
  info.pageSize = config.pageSize;
  info.qLens = config.qLens;
  info.cuSeqlensQ = config.cuSeqlensQ;
  info.cuSeqlensKV = config.cuSeqlensKV;
  info.outF32 = config.outF32;
  info.scale = config.effectiveScale();
  for (const spec::BufferDecl &b : variant.buffers)
    info.buffers.push_back({b.name, detail::bufferDType(b.elem), b.shape});
  info.summarized = detail::summarizedBuffers(variant);
  if (variant.gate)
    info.gate = spec::gateLayout(*variant.gate);
  info.summaryBlock = attn::VariantOp::kSummaryBlock;
  return info;
}

llvm::Expected<ArtifactEntry> compileEntry(const spec::Variant &variant,
                                           const KernelConfig &config,
                                           const CPUTarget &target) {
  if (llvm::Error err = config.validateFor(variant))
    return std::move(err);
  std::unique_ptr<MLIRContext> ctx = detail::makeContext();
  OwningOpRef<ModuleOp> module = detail::buildKernelModule(*ctx, variant, config);
  if (llvm::Error err = detail::lowerTo(*module, config, Stage::LLVM, target))
    return std::move(err);
  // --attn-pack-gqa's tile where it packed the loop (it declines some
  // variants: a mask reading h, routing); -1 where it did not.
  int64_t packedRows = takePackedRows(*module);
  auto shared = detail::compileSharedObject(*module, target);
  if (!shared)
    return shared.takeError();
  KernelInfo info = describeKernel(variant, config);
  info.splitKV = true; // the CPU pipeline's --attn-runtime-abi{split-kv}
  info.splitPartKeys = true;
  info.packedRows = packedRows;
  return ArtifactEntry{target.artifactTarget(), std::move(info),
                       std::move(*shared)};
}

llvm::Expected<Artifact> compileArtifact(const spec::Variant &variant,
                                         const KernelConfig &config,
                                         const std::string &targets) {
  llvm::SmallVector<llvm::StringRef> names;
  llvm::StringRef(targets).split(names, ',', -1, /*KeepEmpty=*/false);
  std::vector<std::string> expanded;
  for (llvm::StringRef n : names) {
    n = n.trim();
    if (n == "cpu" && llvm::Triple(llvm::sys::getProcessTriple()).getArch() == llvm::Triple::x86_64) {
      expanded.push_back("cpu:x86-64-v3");
      expanded.push_back("cpu:x86-64");
    } else {
      expanded.push_back(n == "cpu" ? "cpu:native" : n.str());
    }
  }
  if (expanded.empty())
    return llvm::createStringError(llvm::inconvertibleErrorCode(), "no target given");
  Artifact artifact;
  std::vector<std::string> seen;
  for (const std::string &name : expanded) {
    if (std::find(seen.begin(), seen.end(), name) != seen.end())
      continue;
    seen.push_back(name);
    auto target = CPUTarget::parse(name);
    if (!target)
      return target.takeError();
    auto entry = compileEntry(variant, config, *target);
    if (!entry)
      return entry.takeError();
    artifact.entries.push_back(std::move(*entry));
  }
  return artifact;
}

} // namespace heed
