// The compiler half of the C API (heed.h): compiling specs through the
// kernel cache, exporting artifacts, cache control. The runtime half
// (loading, launching, errors) is runtime/CApi.cpp; libheed holds both.
#include "GPULauncher.h"
#include "Request.h"

#include "heed/Compiler/Compiler.h"
#include "heed/Compiler/KernelCache.h"
#include "heed/Frontend/Parser.h"
#include "heed/Runtime/CApiSupport.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSet.h"

#include <exception>
#include <fstream>

using namespace heed;
using heed::capi::fail;
using heed::capi::Request;
using heed::capi::readRequest;

namespace {

/// Reads the options into `r`; "" or an error naming the bad field.
std::string readOptions(const heed_compile_options *o, Request &r) {
  KernelConfig &config = r.config;
  heed_compile_options defaults;
  heed_compile_options_init(&defaults);
  if (!o)
    o = &defaults;
  else if (o->struct_size < offsetof(heed_compile_options, kv_lens))
    return "options.struct_size is not set (call heed_compile_options_init)";
  // Fields a caller's (older) struct ends before keep their defaults.
  bool serving = o->struct_size >= offsetof(heed_compile_options, q_lens);
  bool ragged = o->struct_size >= offsetof(heed_compile_options, q_lens) + sizeof(o->q_lens);
  bool training =
      o->struct_size >= offsetof(heed_compile_options, out_f32) + sizeof(o->out_f32);
  bool packed = o->struct_size >=
                offsetof(heed_compile_options, cu_seqlens_kv) + sizeof(o->cu_seqlens_kv);
  bool kernelKind =
      o->struct_size >= offsetof(heed_compile_options, gpu_kernel) + sizeof(o->gpu_kernel);
  bool tiling =
      o->struct_size >= offsetof(heed_compile_options, patch_tiling) + sizeof(o->patch_tiling);
  switch (o->dtype) {
  case HEED_F32: config.dtype = DType::F32; break;
  case HEED_F16: config.dtype = DType::F16; break;
  case HEED_BF16: config.dtype = DType::BF16; break;
  default:
    return "options.dtype must be HEED_F32, HEED_F16 or HEED_BF16, got " +
           std::to_string(o->dtype);
  }
  if (o->layout != HEED_LAYOUT_BHSD && o->layout != HEED_LAYOUT_BSHD)
    return "options.layout must be HEED_LAYOUT_BHSD or HEED_LAYOUT_BSHD, got " +
           std::to_string(o->layout);
  config.layout = o->layout == HEED_LAYOUT_BSHD ? Layout::BSHD : Layout::BHSD;
  config.headDim = o->head_dim;
  config.headDimV = o->head_dim_v;
  config.lse = o->lse != 0;
  config.scale = o->scale;
  config.analyzeMask = o->analyze_mask != 0;
  config.patchTiling = !tiling || o->patch_tiling != 0;
  config.kvLens = serving && o->kv_lens != 0;
  config.pageSize = serving ? o->page_size : 0;
  config.qLens = ragged && o->q_lens != 0;
  config.outF32 = training && o->out_f32 != 0;
  config.cuSeqlensQ = packed && o->cu_seqlens_q != 0;
  config.cuSeqlensKV = packed && o->cu_seqlens_kv != 0;
  r.variantName = o->variant ? o->variant : "";
  r.params.clear();
  if (o->params) {
    llvm::SmallVector<llvm::StringRef> parts;
    llvm::StringRef(o->params).split(parts, ',', -1, /*KeepEmpty=*/false);
    llvm::StringSet<> names;
    for (llvm::StringRef p : parts) {
      // The spec language would take the last of two values silently.
      llvm::StringRef name = p.split('=').first.trim();
      if (!names.insert(name).second)
        return "options.params sets '" + name.str() + "' more than once (\"" + o->params +
               "\"); give each param once";
      r.params.push_back(p.trim().str());
    }
  }
  r.target = o->target ? o->target : "";
  r.useCache = o->use_cache != 0;
  r.gpuKernel = GPUKernelKind::Auto;
  if (kernelKind && o->gpu_kernel) {
    auto kind = parseGPUKernelKind(o->gpu_kernel);
    if (!kind)
      return "options.gpu_kernel: " + llvm::toString(kind.takeError());
    r.gpuKernel = *kind;
  }
  if (llvm::Error err = config.validate())
    return "options: " + llvm::toString(std::move(err));
  return "";
}

} // namespace

heed_status heed::capi::readRequest(const char *caller, const char *text, const char *sourceName,
                        const heed_compile_options *options, Request &r) {
  if (std::string err = readOptions(options, r); !err.empty())
    return fail(HEED_ERROR_INVALID_ARGUMENT, std::string(caller) + ": " + err);
  auto overrides = spec::parseParamAssignments(r.params);
  if (!overrides)
    return fail(HEED_ERROR_INVALID_ARGUMENT,
                "options.params: " + llvm::toString(overrides.takeError()));
  auto variants = spec::parseSpec(text, sourceName ? sourceName : "<spec>", *overrides);
  if (!variants)
    return fail(HEED_ERROR_SPEC, llvm::toString(variants.takeError()));
  auto variant = spec::selectVariant(std::move(*variants), r.variantName);
  if (!variant)
    return fail(HEED_ERROR_SPEC, llvm::toString(variant.takeError()));
  r.variant = std::move(*variant);
  return HEED_OK;
}

extern "C" {

void heed_compile_options_init(heed_compile_options *o) {
  if (!o)
    return;
  *o = heed_compile_options{};
  o->struct_size = sizeof(heed_compile_options);
  o->dtype = HEED_F32;
  o->head_dim = 64;
  o->layout = HEED_LAYOUT_BHSD;
  o->analyze_mask = 1;
  o->use_cache = 1;
  o->patch_tiling = 1;
}

heed_status heed_compile(const char *specText, const char *sourceName,
                         const heed_compile_options *options, heed_kernel **kernel) {
  if (!specText || !kernel)
    return fail(HEED_ERROR_INVALID_ARGUMENT, "heed_compile: NULL spec text or kernel pointer");
  *kernel = nullptr;
  try {
    Request r;
    if (heed_status s = readRequest("heed_compile", specText, sourceName, options, r))
      return s;
    capi::GPUChoice gpu;
    std::string badChip;
    if (capi::parseGPUTarget(r.target, gpu, badChip)) {
      // One GPU platform only: no CPU code; compiled for the chip of the
      // first call, or now for a chip given as "cuda:sm_XX" / "rocm:gfxNNN".
      if (!badChip.empty())
        return fail(HEED_ERROR_UNSUPPORTED,
                    "heed_compile: target '" + r.target + "': " + badChip);
      auto launcher = std::make_shared<capi::GPULauncher>(
          r.variant, r.config, std::vector<capi::GPUChoice>{gpu}, r.useCache, r.gpuKernel);
      if (heed_status s = launcher->compileNow())
        return s;
      KernelInfo info = launcher->info();
      *kernel = capi::wrapDeviceOnly(info, gpu.label(), std::move(launcher));
      return capi::ok();
    }
    if (!r.target.empty() && r.target != "cpu" && r.target != "cpu:native" && r.target != "host")
      return fail(HEED_ERROR_UNSUPPORTED,
                  "heed_compile builds kernels for this machine: target NULL or \"cpu\" (CPU "
                  "code; GPU code too, compiled at the first call on CUDA or ROCm tensors), "
                  "\"cuda\" or \"cuda:sm_XX\" (CUDA only), \"rocm\" or \"rocm:gfxNNN\" "
                  "(ROCm only); got '" +
                      r.target + "'; use heed_export for other CPUs");
    std::shared_ptr<LoadedKernel> loaded;
    if (r.useCache) {
      auto got = KernelCache::global().get(r.variant, r.config);
      if (!got)
        return fail(HEED_ERROR_COMPILE, llvm::toString(got.takeError()));
      loaded = std::move(*got);
    } else {
      auto entry = compileEntry(r.variant, r.config, CPUTarget::jit());
      if (!entry)
        return fail(HEED_ERROR_COMPILE, llvm::toString(entry.takeError()));
      std::string error;
      loaded = LoadedKernel::load(*entry, error);
      if (!loaded)
        return fail(HEED_ERROR_LOAD, error);
    }
    // The same kernel runs on GPU tensors: compiled for the GPU at the first such call.
    *kernel = capi::wrap(std::move(loaded), std::make_shared<capi::GPULauncher>(
                                                r.variant, r.config, capi::everyGPU(),
                                                r.useCache, r.gpuKernel));
    return capi::ok();
  } catch (const std::exception &e) {
    return fail(HEED_ERROR_COMPILE, std::string("heed_compile: ") + e.what());
  }
}

heed_status heed_compile_file(const char *path, const heed_compile_options *options,
                              heed_kernel **kernel) {
  if (!path || !kernel)
    return fail(HEED_ERROR_INVALID_ARGUMENT, "heed_compile_file: NULL path or kernel pointer");
  *kernel = nullptr;
  std::string text, error;
  if (!readFile(path, text, error))
    return fail(HEED_ERROR_IO, error);
  // heed_compile takes a C string: a NUL would silently end the spec there.
  if (size_t nul = text.find('\0'); nul != std::string::npos)
    return fail(HEED_ERROR_SPEC, std::string(path) + ": the spec contains a NUL byte (at byte " +
                                     std::to_string(nul) + ")");
  return heed_compile(text.c_str(), path, options, kernel);
}

heed_status heed_export(const char *specText, const char *sourceName,
                        const heed_compile_options *options, const char *artifactPath) {
  if (!specText || !artifactPath)
    return fail(HEED_ERROR_INVALID_ARGUMENT, "heed_export: NULL spec text or artifact path");
  try {
    Request r;
    if (heed_status s = readRequest("heed_export", specText, sourceName, options, r))
      return s;
    std::string targets = r.target.empty() ? "cpu" : r.target;
    if (r.gpuKernel != GPUKernelKind::Auto)
      return fail(HEED_ERROR_UNSUPPORTED,
                  "heed_export writes CPU artifacts: options.gpu_kernel is for heed_compile "
                  "(GPU artifacts: heed-compile --aot --target=sm_90 --gpu-kernel=...)");
    // An unknown target is unsupported; anything else that fails is the compile.
    for (llvm::StringRef t : llvm::split(targets, ','))
      if (t.trim() != "cpu")
        if (auto parsed = CPUTarget::parse(t.trim().str()); !parsed)
          return fail(HEED_ERROR_UNSUPPORTED, llvm::toString(parsed.takeError()));
    auto artifact = compileArtifact(r.variant, r.config, targets);
    if (!artifact)
      return fail(HEED_ERROR_COMPILE, llvm::toString(artifact.takeError()));
    std::string bytes = artifact->serialize();
    std::ofstream out(artifactPath, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
    out.close();
    if (!out)
      return fail(HEED_ERROR_IO, std::string("cannot write ") + artifactPath);
    return capi::ok();
  } catch (const std::exception &e) {
    return fail(HEED_ERROR_COMPILE, std::string("heed_export: ") + e.what());
  }
}

void heed_cache_stats_init(heed_cache_stats *stats) {
  if (!stats)
    return;
  *stats = heed_cache_stats{};
  stats->struct_size = sizeof(heed_cache_stats);
  stats->directory = "";
}

heed_status heed_cache_get_stats(heed_cache_stats *stats) {
  if (!stats || stats->struct_size < sizeof(heed_cache_stats))
    return fail(HEED_ERROR_INVALID_ARGUMENT,
                "heed_cache_get_stats: NULL or uninitialized stats (call heed_cache_stats_init)");
  KernelCache &cache = KernelCache::global();
  CacheStats s = cache.stats();
  stats->memory_hits = s.memoryHits;
  stats->disk_hits = s.diskHits;
  stats->compiles = s.compiles;
  stats->rejected_entries = s.rejectedEntries;
  stats->store_failures = s.storeFailures;
  stats->disk_entries = stats->disk_bytes = stats->disk_limit_bytes = 0;
  static thread_local std::string directory;
  directory.clear();
  if (auto disk = cache.disk()) {
    directory = disk->directory();
    stats->disk_limit_bytes = disk->maxBytes();
    for (const DiskCache::Entry &e : disk->list(/*verify=*/false)) {
      ++stats->disk_entries;
      stats->disk_bytes += e.bytes;
    }
  }
  stats->directory = directory.c_str();
  return capi::ok();
}

heed_status heed_cache_set_directory(const char *directory) {
  KernelCache::global().setDirectory(directory ? directory : "");
  return capi::ok();
}

heed_status heed_cache_clear(void) {
  KernelCache &cache = KernelCache::global();
  cache.clearMemory();
  capi::clearGPUModules();
  if (auto disk = cache.disk())
    disk->clear();
  return capi::ok();
}

} // extern "C"
