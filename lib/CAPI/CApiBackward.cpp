// The backward pass in the C API (heed.h, "the backward pass"): compiling a
// heed::BackwardKernel (through the kernel cache unless use_cache = 0) and
// running it on CPU tensors.
#include "Request.h"

#include "heed/Compiler/Backward.h"
#include "heed/Compiler/KernelCache.h"
#include "heed/Runtime/CApiSupport.h"

#include <exception>
#include <memory>
#include <mutex>
#include <set>

using namespace heed;
using heed::capi::fail;

struct heed_backward {
  std::unique_ptr<BackwardKernel> kernel;
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

/// A CPU tensor of f32, f16 or bf16 (or, for buffers, any dtype); "" or why not.
std::string toRef(const heed_tensor *t, const std::string &what, TensorRef &out) {
  if (!t)
    return what + " is missing (NULL)";
  if (t->device_type != HEED_DEVICE_CPU)
    return what + " is not a CPU tensor: the backward runs on the CPU only";
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
    auto kernel = BackwardKernel::compile(r.variant, r.config,
                                          r.useCache ? &KernelCache::global() : nullptr);
    if (!kernel)
      return fail(HEED_ERROR_COMPILE, llvm::toString(kernel.takeError()));
    auto *handle = new heed_backward{std::move(*kernel)};
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
  if (!args || args->struct_size < sizeof(heed_backward_args))
    return fail(HEED_ERROR_INVALID_ARGUMENT,
                "heed_attention_backward: NULL args or struct_size not set (call "
                "heed_backward_args_init)");
  BackwardArgs a;
  std::string err;
  const std::pair<const heed_tensor *, std::pair<const char *, TensorRef *>> tensors[] = {
      {args->q, {"q", &a.q}},       {args->k, {"k", &a.k}},   {args->v, {"v", &a.v}},
      {args->out, {"out", &a.out}}, {args->lse, {"lse", &a.lse}}, {args->dout, {"dout", &a.dout}},
      {args->dq, {"dq", &a.dq}},    {args->dk, {"dk", &a.dk}}, {args->dv, {"dv", &a.dv}}};
  for (const auto &[t, named] : tensors)
    if (err.empty())
      err = toRef(t, named.first, *named.second);
  if (args->num_buffers < 0 || (args->num_buffers > 0 && !args->buffers) ||
      args->num_buffer_grads < 0 || (args->num_buffer_grads > 0 && !args->buffer_grads))
    err = "bad buffers or buffer_grads (a negative count, or NULL with a positive count)";
  for (int32_t i = 0; err.empty() && i < args->num_buffers; ++i) {
    a.buffers.emplace_back();
    err = toRef(&args->buffers[i], "buffer " + std::to_string(i), a.buffers.back());
  }
  for (int32_t i = 0; err.empty() && i < args->num_buffer_grads; ++i) {
    a.bufferGrads.emplace_back();
    err = toRef(&args->buffer_grads[i], "buffer gradient " + std::to_string(i),
                a.bufferGrads.back());
  }
  if (!err.empty())
    return fail(HEED_ERROR_INVALID_ARGUMENT, "heed_attention_backward: " + err);
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
