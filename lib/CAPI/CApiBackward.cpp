// The backward pass in the C API (heed.h, "the backward pass"): compiling a
// heed::BackwardKernel (through the kernel cache unless use_cache = 0) and
// running it on CPU tensors, or on CUDA or ROCm tensors the GPU backward's
// dQ and dK/dV kernels, compiled for the device's chip at the first such
// call.
#include "Request.h"

#include "heed/Compiler/Backward.h"
#include "heed/Compiler/GPU.h"
#include "heed/Compiler/KernelCache.h"
#include "heed/Runtime/CApiSupport.h"
#include "heed/Runtime/CUDA.h"
#include "heed/Runtime/GPUImage.h"
#include "heed/Runtime/HIP.h"

#include <cstring>
#include <exception>
#include <tuple>
#include <map>
#include <memory>
#include <mutex>
#include <set>

using namespace heed;
using heed::capi::fail;

struct heed_backward {
  std::unique_ptr<BackwardKernel> kernel;
  // The GPU backward, made at the first call on GPU tensors.
  spec::Variant variant;
  KernelConfig config; ///< with lse: the forward's description the kernels take
  bool useCache = true;
  /// The GPU kernels (options.gpu_kernel): tensor cores (also for auto), or
  /// a wgmma kind (Hopper, sm_90a).
  GPUKernelKind kind = GPUKernelKind::TensorCores;
  std::mutex gpuMutex;
  /// The dQ and dK/dV images by chip (CUDA's sm_*, ROCm's gfx*).
  std::map<std::string, std::pair<std::shared_ptr<const GPUImage>,
                                  std::shared_ptr<const GPUImage>>> images;
  /// Each device's chip (gpuChip), asked once: a ROCm device's is read from
  /// its properties, too dear for every call.
  std::map<std::pair<GPUPlatform, int32_t>, std::string> chips;
};

namespace {

/// The handles heed_backward_compile returned and that are not released.
std::mutex liveMutex;
std::set<const heed_backward *> live;

bool isLive(const heed_backward *b, const char *caller) {
  std::lock_guard<std::mutex> lock(liveMutex);
  if (b && live.count(b))
    return true;
  fail(HEED_ERROR_INVALID_ARGUMENT,
       std::string(caller) + ": not a live backward handle (NULL, released, or not from "
                             "heed_backward_compile)");
  return false;
}

/// A tensor of the call (a CPU, CUDA or ROCm one; all must be on one device); ""
/// or why not. `device`: (device type, id) of the first tensor, checked
/// against the others'.
std::string toRef(const heed_tensor *t, const std::string &what, TensorRef &out,
                  std::pair<int32_t, int32_t> &device) {
  if (!t)
    return what + " is missing (NULL)";
  if (t->device_type != HEED_DEVICE_CPU && !capi::platformOfDevice(t->device_type))
    return what + " is on device type " + std::to_string(t->device_type) +
           ": the backward runs on CPU, CUDA and ROCm tensors";
  std::pair<int32_t, int32_t> here{t->device_type,
                                   t->device_type == HEED_DEVICE_CPU ? 0 : t->device_id};
  if (device.first == 0)
    device = here;
  else if (device != here)
    return what + " is on " + capi::deviceName(here.first, here.second) + ", q on " +
           capi::deviceName(device.first, device.second) +
           ": every tensor of the backward must be on one device";
  static const DType codes[] = {DType::F32, DType::F16, DType::BF16, DType::I8,
                                DType::I32, DType::I64, DType::Bool};
  if (t->dtype < 0 || t->dtype > HEED_BOOL)
    return what + " has an unknown dtype code " + std::to_string(t->dtype);
  if (t->ndim < 0 || t->ndim > 16 || (t->ndim > 0 && !t->shape))
    return what + " has a bad rank or no shape";
  out.data = t->data;
  out.dtype = codes[t->dtype];
  out.shape.assign(t->shape, t->shape + t->ndim);
  out.strides.clear();
  if (t->strides)
    out.strides.assign(t->strides, t->strides + t->ndim);
  return checkView(what, out);
}

/// The scratch delta = rowsum(dO * O) (f32, at least `bytes`) of the calls
/// on (platform, device, stream), which the dQ kernel writes and the dK/dV
/// kernel reads: one per stream for the process, as the stream's launch
/// state (a call on the stream is ordered after the earlier ones' kernels;
/// freed never, as a handle's release could not know them finished). Null
/// with `error` set on failure.
template <typename DeviceBuffer>
void *scratchDeltaOf(GPUPlatform platform, int device, void *stream, size_t bytes,
                     std::string &error) {
  static std::mutex mutex;
  static std::map<std::pair<int, void *>, std::unique_ptr<DeviceBuffer>> deltas;
  std::lock_guard<std::mutex> lock(mutex);
  std::unique_ptr<DeviceBuffer> &delta = deltas[{device, stream}];
  if (!delta || delta->size() < bytes) {
    // The old scratch may still be read by kernels queued on the stream.
    if (delta)
      if (std::string err = synchronizeGPU(platform, device, stream); !err.empty()) {
        error = err;
        return nullptr;
      }
    delta.reset();
    delta = DeviceBuffer::allocate(bytes, error, device);
    if (!delta) {
      error = "the scratch delta: " + error;
      return nullptr;
    }
  }
  return delta->data();
}

void *scratchDelta(GPUPlatform platform, int device, void *stream, size_t bytes,
                   std::string &error) {
  return platform == GPUPlatform::CUDA
             ? scratchDeltaOf<cuda::DeviceBuffer>(platform, device, stream, bytes, error)
             : scratchDeltaOf<hip::DeviceBuffer>(platform, device, stream, bytes, error);
}

/// The dQ and dK/dV images of `b` for `chip` of `platform` (compiled on
/// first use, through the kernel cache unless use_cache = 0); HEED_OK or the
/// failure.
heed_status gpuImages(heed_backward &b, GPUPlatform platform, const std::string &chip,
                      std::pair<std::shared_ptr<const GPUImage>,
                                std::shared_ptr<const GPUImage>> &out) {
  auto it = b.images.find(chip);
  if (it != b.images.end()) {
    out = it->second;
    return HEED_OK;
  }
  std::shared_ptr<const GPUImage> made[2];
  GPUComputation computations[] = {GPUComputation::BackwardDQ, GPUComputation::BackwardDKDV};
  for (int i = 0; i < 2; ++i) {
    GPUTarget target{platform == GPUPlatform::CUDA ? GPUVendor::NVIDIA : GPUVendor::AMD, chip,
                     b.kind};
    target.computation = computations[i];
    auto entry = [&]() -> llvm::Expected<std::shared_ptr<const ArtifactEntry>> {
      if (b.useCache)
        return KernelCache::global().getGPU(b.variant, b.config, target);
      auto compiled = compileGPUEntry(b.variant, b.config, target);
      if (!compiled)
        return compiled.takeError();
      return std::make_shared<const ArtifactEntry>(std::move(*compiled));
    }();
    if (!entry)
      return fail(HEED_ERROR_COMPILE, "heed_attention_backward: compiling the GPU backward of '" +
                                          b.variant.name + "' for " + chip + ": " +
                                          llvm::toString(entry.takeError()));
    made[i] = std::make_shared<const GPUImage>(std::move(*entry));
  }
  out = b.images[chip] = {made[0], made[1]};
  return HEED_OK;
}

/// The backward on GPU tensors of (`deviceType`, `device`) (launchGPUBackward
/// through the runtime's modules); HEED_OK or the failure.
heed_status runOnGPU(heed_backward &b, const BackwardArgs &a, int32_t deviceType, int32_t device,
                     void *stream) {
  GPUPlatform platform = *capi::platformOfDevice(deviceType);
  if (std::string why = gpuUnavailable(platform); !why.empty())
    return fail(HEED_ERROR_UNSUPPORTED, "heed_attention_backward: cannot run on " +
                                            capi::deviceName(deviceType, device) + ": " + why);
  GPUBackwardTensors t;
  t.forward.q = a.q, t.forward.k = a.k, t.forward.v = a.v;
  t.forward.out = a.out, t.forward.lse = a.lse, t.forward.buffers = a.buffers;
  t.dout = a.dout, t.dq = a.dq, t.dk = a.dk, t.dv = a.dv, t.bufferGrads = a.bufferGrads;
  t.forward.kvLens = a.kvLens, t.forward.qLens = a.qLens;
  t.forward.cuSeqlensQ = a.cuSeqlensQ, t.forward.cuSeqlensKV = a.cuSeqlensKV;
  if (std::string why = checkGPUDevice(platform, t.forward, device); !why.empty())
    return fail(HEED_ERROR_INVALID_ARGUMENT, "heed_attention_backward: " + why);
  // Before the modules' first load and the scratch delta's allocation,
  // which would invalidate a capture on the stream.
  if (std::string why = gpuCaptureRefusal(platform, device, stream); !why.empty())
    return fail(HEED_ERROR_UNSUPPORTED, "heed_attention_backward: " + why);
  std::string why;
  std::lock_guard<std::mutex> lock(b.gpuMutex);
  std::string &chip = b.chips[{platform, device}];
  if (chip.empty() && (chip = gpuChip(platform, device, why)).empty())
    return fail(HEED_ERROR_RUN, "heed_attention_backward: " + why);
  std::pair<std::shared_ptr<const GPUImage>, std::shared_ptr<const GPUImage>> images;
  if (heed_status s = gpuImages(b, platform, chip, images))
    return s;
  // The scratch delta, shaped like lse (the launch checks lse against q).
  size_t bytes = size_t(std::max<int64_t>(a.lse.numElements(), 1)) * sizeof(float);
  void *delta = scratchDelta(platform, device, stream, bytes, why);
  if (!delta)
    return fail(HEED_ERROR_RUN, "heed_attention_backward: " + why);
  t.delta = TensorRef{delta, DType::F32, a.lse.shape, {}};
  KernelInfo info = describeKernel(b.variant, b.config);
  if (std::string err = images.first->launchBackward(info, t, b.kernel->gradientBuffers(),
                                                     *images.second, device, stream,
                                                     GPULaunchOptions::fromEnvironment());
      !err.empty())
    return fail(HEED_ERROR_RUN, "heed_attention_backward: " + err);
  return HEED_OK;
}

} // namespace

extern "C" {

heed_status heed_backward_compile(const char *specText, const char *sourceName,
                                  const heed_compile_options *options,
                                  heed_backward **backward) {
  if (!specText || !backward)
    return fail(HEED_ERROR_INVALID_ARGUMENT,
                "heed_backward_compile: NULL spec text or backward pointer");
  *backward = nullptr;
  try {
    capi::Request r;
    if (heed_status s = readRequest("heed_backward_compile", specText, sourceName, options, r))
      return s;
    if (r.gpuKernel == GPUKernelKind::SIMT)
      return fail(HEED_ERROR_INVALID_ARGUMENT,
                  "heed_backward_compile: options.gpu_kernel: the GPU backward runs on matrix "
                  "cores (tensor-cores, the default, or a wgmma kind on sm_90a), not simt");
    auto kernel = BackwardKernel::compile(r.variant, r.config,
                                          r.useCache ? &KernelCache::global() : nullptr);
    if (!kernel)
      return fail(HEED_ERROR_COMPILE, llvm::toString(kernel.takeError()));
    auto *handle = new heed_backward{};
    handle->kernel = std::move(*kernel);
    handle->variant = r.variant;
    handle->config = r.config;
    handle->config.lse = true; // the kernels read the forward's lse
    handle->useCache = r.useCache;
    if (r.gpuKernel != GPUKernelKind::Auto)
      handle->kind = r.gpuKernel;
    {
      std::lock_guard<std::mutex> lock(liveMutex);
      live.insert(handle);
    }
    *backward = handle;
    return capi::ok();
  } catch (const std::exception &e) {
    return fail(HEED_ERROR_COMPILE, std::string("heed_backward_compile: ") + e.what());
  }
}

void heed_backward_release(heed_backward *backward) {
  if (!backward)
    return;
  {
    std::lock_guard<std::mutex> lock(liveMutex);
    if (!live.erase(backward)) {
      fail(HEED_ERROR_INVALID_ARGUMENT,
           "heed_backward_release: not a live backward handle (released twice?)");
      return;
    }
  }
  delete backward;
}

int32_t heed_backward_num_buffer_grads(const heed_backward *backward) {
  if (!isLive(backward, "heed_backward_num_buffer_grads"))
    return -1;
  return static_cast<int32_t>(backward->kernel->gradientBuffers().size());
}

int32_t heed_backward_buffer_grad_index(const heed_backward *backward, int32_t i) {
  if (!isLive(backward, "heed_backward_buffer_grad_index"))
    return -1;
  const std::vector<unsigned> &g = backward->kernel->gradientBuffers();
  if (i < 0 || size_t(i) >= g.size()) {
    fail(HEED_ERROR_INVALID_ARGUMENT, "heed_backward_buffer_grad_index: index " +
                                          std::to_string(i) + " out of range");
    return -1;
  }
  return static_cast<int32_t>(g[size_t(i)]);
}

void heed_backward_args_init(heed_backward_args *args) {
  if (!args)
    return;
  *args = heed_backward_args{};
  args->struct_size = sizeof(heed_backward_args);
}

heed_status heed_attention_backward(const heed_backward *backward,
                                    const heed_backward_args *args) {
  if (!isLive(backward, "heed_attention_backward"))
    return HEED_ERROR_INVALID_ARGUMENT;
  if (!args || args->struct_size < offsetof(heed_backward_args, stream))
    return fail(HEED_ERROR_INVALID_ARGUMENT,
                "heed_attention_backward: NULL args or struct_size not set (call "
                "heed_backward_args_init)");
  void *stream = args->struct_size >= offsetof(heed_backward_args, stream) + sizeof(void *)
                     ? args->stream
                     : nullptr;
  BackwardArgs a;
  std::string err;
  std::pair<int32_t, int32_t> device{0, 0};
  const std::pair<const heed_tensor *, std::pair<const char *, TensorRef *>> tensors[] = {
      {args->q, {"q", &a.q}},       {args->k, {"k", &a.k}},   {args->v, {"v", &a.v}},
      {args->out, {"out", &a.out}}, {args->lse, {"lse", &a.lse}}, {args->dout, {"dout", &a.dout}},
      {args->dq, {"dq", &a.dq}},    {args->dk, {"dk", &a.dk}}, {args->dv, {"dv", &a.dv}}};
  for (const auto &[t, named] : tensors)
    if (err.empty())
      err = toRef(t, named.first, *named.second, device);
  if (args->num_buffers < 0 || (args->num_buffers > 0 && !args->buffers) ||
      args->num_buffer_grads < 0 || (args->num_buffer_grads > 0 && !args->buffer_grads))
    err = "bad buffers or buffer_grads (a negative count, or NULL with a positive count)";
  for (int32_t i = 0; err.empty() && i < args->num_buffers; ++i) {
    a.buffers.emplace_back();
    err = toRef(&args->buffers[i], "buffer " + std::to_string(i), a.buffers.back(), device);
  }
  for (int32_t i = 0; err.empty() && i < args->num_buffer_grads; ++i) {
    a.bufferGrads.emplace_back();
    err = toRef(&args->buffer_grads[i], "buffer gradient " + std::to_string(i),
                a.bufferGrads.back(), device);
  }
  // A ragged batch's lengths: host tensors, each read only where the
  // caller's struct has its field (an older caller's struct ends before).
  auto given = [&](size_t offset) -> const heed_tensor * {
    if (args->struct_size < offset + sizeof(const heed_tensor *))
      return nullptr;
    const heed_tensor *t;
    std::memcpy(&t, reinterpret_cast<const char *>(args) + offset, sizeof t);
    return t;
  };
  const std::tuple<const heed_tensor *, const char *, TensorRef *> lengths[] = {
      {given(offsetof(heed_backward_args, kv_lens)), "kv_lens", &a.kvLens},
      {given(offsetof(heed_backward_args, q_lens)), "q_lens", &a.qLens},
      {given(offsetof(heed_backward_args, cu_seqlens_q)), "cu_seqlens_q", &a.cuSeqlensQ},
      {given(offsetof(heed_backward_args, cu_seqlens_kv)), "cu_seqlens_kv", &a.cuSeqlensKV}};
  for (const auto &[t, name, ref] : lengths) {
    if (!t || !err.empty())
      continue;
    std::pair<int32_t, int32_t> host{0, 0};
    err = toRef(t, name, *ref, host);
    if (err.empty() && host.first != HEED_DEVICE_CPU)
      err = std::string(name) + " is on " + capi::deviceName(host.first, host.second) +
            "; pass the lengths as host (CPU) tensors, for GPU calls too (heed checks "
            "them and sizes the launch on the host)";
  }
  if (!err.empty())
    return fail(HEED_ERROR_INVALID_ARGUMENT, "heed_attention_backward: " + err);
  if (device.first != HEED_DEVICE_CPU) {
    try {
      heed_status s = runOnGPU(*const_cast<heed_backward *>(backward), a, device.first,
                               device.second, stream);
      if (s == HEED_OK && args->stats)
        *args->stats = {-1, -1, -1, -1};
      return s == HEED_OK ? capi::ok() : s;
    } catch (const std::exception &e) {
      return fail(HEED_ERROR_RUN, std::string("heed_attention_backward: ") + e.what());
    }
  }
  RunStats stats;
  if (llvm::Error e = backward->kernel->run(a, unsigned(std::max(0, args->num_threads)), &stats))
    // A buffer read out of range is the kernel's error; the rest are the arguments'.
    return fail(stats.outOfRangeBuffer ? HEED_ERROR_RUN : HEED_ERROR_INVALID_ARGUMENT,
                "heed_attention_backward: " + llvm::toString(std::move(e)));
  if (args->stats)
    *args->stats = {stats.visitedBlocks, stats.fullBlocks, stats.partialBlocks,
                    stats.totalBlocks};
  return capi::ok();
}

} // extern "C"
