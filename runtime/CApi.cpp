// The runtime half of the C API (heed.h): errors, loading, introspection
// and launching. The compiler half lives in lib/CAPI.
#include "heed/Runtime/CApiSupport.h"
#include "heed/Runtime/DiskCache.h"

#include <exception>
#include <tuple>
#include <mutex>
#include <unordered_set>

#ifndef HEED_VERSION_STRING
#define HEED_VERSION_STRING "0.0.0"
#endif

struct heed_kernel {
  std::shared_ptr<heed::LoadedKernel> kernel; ///< CPU code; null for a GPU-only kernel
  std::shared_ptr<const heed::capi::DeviceLauncher> device; ///< null: CPU tensors only
  heed::KernelInfo info;
  std::string target;
  std::vector<std::string> bufferShapes;
};

namespace {
/// Every heed_kernel handed out and not yet released. Each call checks its
/// handle here before touching it, so a released (or never issued) handle is
/// an error with a message, not a use after free. Looking the pointer up
/// reads nothing through it. (A released handle whose address malloc gives
/// to a new kernel is that kernel: the check cannot see that far.)
struct LiveKernels {
  std::mutex mutex;
  std::unordered_set<const heed_kernel *> handles;
};
LiveKernels &liveKernels() {
  static LiveKernels *live = new LiveKernels; // never destroyed: calls may come at exit
  return *live;
}
} // namespace

namespace heed::capi {
namespace {
thread_local std::string lastError;
} // namespace

heed_status fail(heed_status status, const std::string &message) {
  lastError = message;
  return status;
}

heed_status ok() {
  lastError.clear();
  return HEED_OK;
}

std::string deviceName(int32_t deviceType, int32_t deviceId) {
  switch (deviceType) {
  case HEED_DEVICE_CPU: return "the CPU";
  case HEED_DEVICE_CUDA: return "CUDA device " + std::to_string(deviceId);
  case HEED_DEVICE_ROCM: return "ROCm device " + std::to_string(deviceId);
  }
  return "device type " + std::to_string(deviceType) + " id " + std::to_string(deviceId);
}

namespace {
heed_kernel *makeKernel(std::shared_ptr<LoadedKernel> kernel,
                        std::shared_ptr<const DeviceLauncher> device, const KernelInfo &info,
                        const std::string &target) {
  auto *k = new heed_kernel{std::move(kernel), std::move(device), info, target, {}};
  for (const BufferInfo &b : k->info.buffers) {
    std::string s;
    for (size_t i = 0; i < b.shape.size(); ++i)
      s += (i ? "," : "") + b.shape[i];
    k->bufferShapes.push_back(s);
  }
  LiveKernels &live = liveKernels();
  std::lock_guard<std::mutex> lock(live.mutex);
  live.handles.insert(k);
  return k;
}
} // namespace

heed_kernel *wrap(std::shared_ptr<LoadedKernel> kernel,
                  std::shared_ptr<const DeviceLauncher> device) {
  const KernelInfo &info = kernel->info();
  const std::string &target = kernel->target();
  return makeKernel(std::move(kernel), std::move(device), info, target);
}

heed_kernel *wrapDeviceOnly(const KernelInfo &info, const std::string &target,
                            std::shared_ptr<const DeviceLauncher> device) {
  return makeKernel(nullptr, std::move(device), info, target);
}

} // namespace heed::capi

using namespace heed;
using heed::capi::fail;

namespace {

/// Is `k` a handle heed issued and has not released? If not, records why
/// as the last error (naming `caller`).
bool isLive(const heed_kernel *k, const char *caller) {
  if (!k) {
    fail(HEED_ERROR_INVALID_ARGUMENT, std::string(caller) + ": NULL kernel");
    return false;
  }
  LiveKernels &live = liveKernels();
  std::lock_guard<std::mutex> lock(live.mutex);
  if (live.handles.count(k))
    return true;
  fail(HEED_ERROR_INVALID_ARGUMENT,
       std::string(caller) + ": not a live kernel handle (released already, or never "
                             "returned by heed_compile / heed_kernel_load)");
  return false;
}

bool toDType(int32_t code, DType &out) {
  if (code < HEED_F32 || code > HEED_BOOL)
    return false;
  out = static_cast<DType>(code); // heed_dtype mirrors heed::DType
  return true;
}

/// Where a tensor of the call lives.
struct Placement {
  std::string what;
  int32_t deviceType = HEED_DEVICE_CPU, deviceId = 0;

  bool sameDevice(const Placement &o) const {
    return deviceType == o.deviceType && (deviceType == HEED_DEVICE_CPU || deviceId == o.deviceId);
  }
  std::string device() const { return capi::deviceName(deviceType, deviceId); }
};

/// Converts a C tensor and records where it lives; HEED_OK, or the status
/// with `error` naming `what`.
heed_status convert(const heed_tensor *t, const std::string &what, TensorRef &out,
                    std::vector<Placement> &placements, std::string &error) {
  if (!t) {
    error = what + " is missing (NULL)";
    return HEED_ERROR_INVALID_ARGUMENT;
  }
  if (t->device_type != HEED_DEVICE_CPU && t->device_type != HEED_DEVICE_CUDA &&
      t->device_type != HEED_DEVICE_ROCM) {
    error = what + " lives on device type " + std::to_string(t->device_type) +
            "; heed runs on CPU tensors (device type 1), CUDA tensors (device type 2) and "
            "ROCm tensors (device type 10)";
    return HEED_ERROR_UNSUPPORTED;
  }
  if (t->device_type != HEED_DEVICE_CPU && t->device_id < 0) {
    error = what + " has a negative device id " + std::to_string(t->device_id);
    return HEED_ERROR_INVALID_ARGUMENT;
  }
  placements.push_back({what, t->device_type, t->device_id});
  if (!toDType(t->dtype, out.dtype)) {
    error = what + " has an unknown dtype code " + std::to_string(t->dtype);
    return HEED_ERROR_INVALID_ARGUMENT;
  }
  if (t->ndim < 0 || t->ndim > 16 || (t->ndim > 0 && !t->shape)) {
    error = what + " has a bad rank or no shape";
    return HEED_ERROR_INVALID_ARGUMENT;
  }
  out.data = t->data;
  out.shape.assign(t->shape, t->shape + t->ndim);
  out.strides.clear();
  if (t->strides)
    out.strides.assign(t->strides, t->strides + t->ndim);
  return HEED_OK;
}

/// "" when every tensor of the call lives on one device, else the message.
std::string checkOneDevice(const std::vector<Placement> &placements) {
  for (const Placement &p : placements)
    if (!p.sameDevice(placements.front()))
      return "heed_attention: " + placements.front().what + " is on " +
             placements.front().device() + " but " + p.what + " is on " + p.device() +
             "; every tensor of one call (q, k, v, out, lse, buffers) must be on the same "
             "device";
  return "";
}

} // namespace

extern "C" {

const char *heed_last_error(void) { return capi::lastError.c_str(); }

const char *heed_status_string(heed_status status) {
  switch (status) {
  case HEED_OK: return "ok";
  case HEED_ERROR_INVALID_ARGUMENT: return "invalid argument";
  case HEED_ERROR_SPEC: return "spec error";
  case HEED_ERROR_COMPILE: return "compile error";
  case HEED_ERROR_LOAD: return "load error";
  case HEED_ERROR_RUN: return "run error";
  case HEED_ERROR_UNSUPPORTED: return "unsupported";
  case HEED_ERROR_IO: return "I/O error";
  }
  return "unknown status";
}

int heed_abi_version(void) { return HEED_ABI_VERSION; }
const char *heed_version(void) { return HEED_VERSION_STRING; }

heed_status heed_kernel_load(const void *data, size_t size, heed_kernel **kernel) {
  if (!kernel || (!data && size))
    return fail(HEED_ERROR_INVALID_ARGUMENT, "heed_kernel_load: NULL argument");
  *kernel = nullptr;
  try {
    Artifact artifact;
    std::string bytes(static_cast<const char *>(data), size);
    if (std::string err = artifact.parse(bytes); !err.empty())
      return fail(HEED_ERROR_LOAD, err);
    // GPU entries run on GPU tensors; an artifact of GPU entries only has no CPU code.
    std::shared_ptr<const capi::ImageLauncher> gpu = capi::artifactLauncher(artifact);
    std::string error;
    auto loaded = LoadedKernel::load(artifact, error);
    if (!loaded && !gpu)
      return fail(HEED_ERROR_LOAD, error);
    if (loaded) {
      *kernel = capi::wrap(std::move(loaded), std::move(gpu));
      return capi::ok();
    }
    std::string target; // the first GPU entry's
    for (const ArtifactEntry &e : artifact.entries)
      if (target.empty() && isGPUTarget(e.target))
        target = e.target;
    *kernel = capi::wrapDeviceOnly(gpu->info(), target, gpu);
    return capi::ok();
  } catch (const std::exception &e) {
    return fail(HEED_ERROR_LOAD, std::string("heed_kernel_load: ") + e.what());
  }
}

heed_status heed_kernel_load_file(const char *path, heed_kernel **kernel) {
  if (!path || !kernel)
    return fail(HEED_ERROR_INVALID_ARGUMENT, "heed_kernel_load_file: NULL argument");
  *kernel = nullptr;
  std::string bytes, error;
  if (!readFile(path, bytes, error))
    return fail(HEED_ERROR_IO, error);
  heed_status s = heed_kernel_load(bytes.data(), bytes.size(), kernel);
  if (s != HEED_OK)
    return fail(s, std::string(path) + ": " + heed_last_error());
  return s;
}

void heed_kernel_release(heed_kernel *kernel) {
  if (!kernel)
    return;
  {
    LiveKernels &live = liveKernels();
    std::lock_guard<std::mutex> lock(live.mutex);
    if (!live.handles.erase(kernel)) {
      fail(HEED_ERROR_INVALID_ARGUMENT,
           "heed_kernel_release: not a live kernel handle (released already, or never "
           "returned by heed_compile / heed_kernel_load); nothing released");
      return;
    }
  }
  delete kernel;
}

const char *heed_kernel_name(const heed_kernel *k) {
  return isLive(k, "heed_kernel_name") ? k->info.name.c_str() : nullptr;
}
const char *heed_kernel_target(const heed_kernel *k) {
  return isLive(k, "heed_kernel_target") ? k->target.c_str() : nullptr;
}
int32_t heed_kernel_dtype(const heed_kernel *k) {
  return isLive(k, "heed_kernel_dtype") ? int32_t(k->info.dtype) : -1;
}
int64_t heed_kernel_head_dim(const heed_kernel *k) {
  return isLive(k, "heed_kernel_head_dim") ? k->info.headDim : -1;
}
int64_t heed_kernel_head_dim_v(const heed_kernel *k) {
  return isLive(k, "heed_kernel_head_dim_v") ? k->info.headDimV : -1;
}
int32_t heed_kernel_layout(const heed_kernel *k) {
  if (!isLive(k, "heed_kernel_layout"))
    return -1;
  return k->info.layout == Layout::BSHD ? HEED_LAYOUT_BSHD : HEED_LAYOUT_BHSD;
}
int32_t heed_kernel_has_lse(const heed_kernel *k) {
  return isLive(k, "heed_kernel_has_lse") ? k->info.lse : -1;
}
double heed_kernel_scale(const heed_kernel *k) {
  return isLive(k, "heed_kernel_scale") ? k->info.scale : 0;
}
int32_t heed_kernel_num_buffers(const heed_kernel *k) {
  return isLive(k, "heed_kernel_num_buffers") ? int32_t(k->info.buffers.size()) : -1;
}
int32_t heed_kernel_has_kv_lens(const heed_kernel *k) {
  return isLive(k, "heed_kernel_has_kv_lens") ? int32_t(k->info.kvLens) : -1;
}
int64_t heed_kernel_page_size(const heed_kernel *k) {
  return isLive(k, "heed_kernel_page_size") ? k->info.pageSize : -1;
}
int32_t heed_kernel_has_q_lens(const heed_kernel *k) {
  return isLive(k, "heed_kernel_has_q_lens") ? int32_t(k->info.qLens) : -1;
}
int32_t heed_kernel_has_cu_seqlens_q(const heed_kernel *k) {
  return isLive(k, "heed_kernel_has_cu_seqlens_q") ? int32_t(k->info.cuSeqlensQ) : -1;
}
int32_t heed_kernel_has_cu_seqlens_kv(const heed_kernel *k) {
  return isLive(k, "heed_kernel_has_cu_seqlens_kv") ? int32_t(k->info.cuSeqlensKV) : -1;
}
int32_t heed_kernel_out_dtype(const heed_kernel *k) {
  if (!isLive(k, "heed_kernel_out_dtype"))
    return -1;
  return k->info.outF32 ? int32_t(DType::F32) : int32_t(k->info.dtype);
}
const char *heed_kernel_buffer_name(const heed_kernel *k, int32_t i) {
  if (!isLive(k, "heed_kernel_buffer_name") || i < 0 || size_t(i) >= k->info.buffers.size())
    return nullptr;
  return k->info.buffers[i].name.c_str();
}
int32_t heed_kernel_buffer_dtype(const heed_kernel *k, int32_t i) {
  if (!isLive(k, "heed_kernel_buffer_dtype") || i < 0 || size_t(i) >= k->info.buffers.size())
    return -1;
  return int32_t(k->info.buffers[i].dtype);
}
const char *heed_kernel_buffer_shape(const heed_kernel *k, int32_t i) {
  if (!isLive(k, "heed_kernel_buffer_shape") || i < 0 || size_t(i) >= k->bufferShapes.size())
    return nullptr;
  return k->bufferShapes[i].c_str();
}

void heed_attention_args_init(heed_attention_args *args) {
  if (!args)
    return;
  *args = heed_attention_args{};
  args->struct_size = sizeof(heed_attention_args);
}

heed_status heed_attention(const heed_kernel *kernel, const heed_attention_args *a) {
  if (!a)
    return fail(HEED_ERROR_INVALID_ARGUMENT, "heed_attention: NULL arguments");
  if (!isLive(kernel, "heed_attention"))
    return HEED_ERROR_INVALID_ARGUMENT;
  if (a->struct_size < offsetof(heed_attention_args, kv_lens))
    return fail(HEED_ERROR_INVALID_ARGUMENT,
                "heed_attention: args.struct_size is not set (call heed_attention_args_init)");
  // A caller's (older) struct that ends before the serving tensors has none.
  bool serving = a->struct_size >= offsetof(heed_attention_args, q_lens);
  bool ragged = a->struct_size >= offsetof(heed_attention_args, q_lens) + sizeof(a->q_lens);
  bool packed = a->struct_size >=
                offsetof(heed_attention_args, cu_seqlens_kv) + sizeof(a->cu_seqlens_kv);
  try {
    AttentionArgs args;
    std::string err;
    const std::pair<const heed_tensor *, TensorRef *> tensors[] = {
        {a->q, &args.q}, {a->k, &args.k}, {a->v, &args.v}, {a->out, &args.out}};
    const char *names[] = {"q", "k", "v", "out"};
    std::vector<Placement> placed;
    for (int i = 0; i < 4; ++i)
      if (heed_status s = convert(tensors[i].first, names[i], *tensors[i].second, placed, err))
        return fail(s, err);
    if (a->lse)
      if (heed_status s = convert(a->lse, "lse", args.lse, placed, err))
        return fail(s, err);
    // The serving index tensors: on the host for every call (heed plans a
    // GPU serving call on the host: its grid and checks read the lengths).
    std::vector<Placement> indexPlaced;
    const std::tuple<bool, const heed_tensor *, const char *, TensorRef *> index[] = {
        {serving, a->kv_lens, "kv_lens", &args.kvLens},
        {serving, a->page_table, "page_table", &args.pageTable},
        {ragged, a->q_lens, "q_lens", &args.qLens},
        {packed, a->cu_seqlens_q, "cu_seqlens_q", &args.cuSeqlensQ},
        {packed, a->cu_seqlens_kv, "cu_seqlens_kv", &args.cuSeqlensKV}};
    for (const auto &[known, t, name, ref] : index)
      if (known && t)
        if (heed_status s = convert(t, name, *ref, indexPlaced, err))
          return fail(s, err);
    for (const Placement &p : indexPlaced)
      if (p.deviceType != HEED_DEVICE_CPU)
        return fail(HEED_ERROR_INVALID_ARGUMENT,
                    "heed_attention: " + p.what + " is on " + p.device() +
                        "; pass kv_lens, page_table, q_lens and cu_seqlens as host (CPU) "
                        "tensors, for GPU calls too (heed checks them and sizes the launch on "
                        "the host, then copies them to the device on the call's stream)");
    // C arrays carry no length: a count other than the kernel's is refused
    // before any element is read, so no more than it declares is read.
    const std::vector<BufferInfo> &declared = kernel->info.buffers;
    if (a->num_buffers < 0 || size_t(a->num_buffers) != declared.size()) {
      std::string names;
      for (const BufferInfo &b : declared)
        names += (names.empty() ? "" : ", ") + b.name;
      return fail(HEED_ERROR_INVALID_ARGUMENT,
                  "heed_attention: variant '" + kernel->info.name + "' reads " +
                      std::to_string(declared.size()) + " buffer(s)" +
                      (names.empty() ? "" : " (" + names + ")") + ", but num_buffers is " +
                      std::to_string(a->num_buffers));
    }
    if (a->num_buffers > 0 && !a->buffers)
      return fail(HEED_ERROR_INVALID_ARGUMENT,
                  "heed_attention: num_buffers is " + std::to_string(a->num_buffers) +
                      " but buffers is NULL");
    for (int32_t i = 0; i < a->num_buffers; ++i) {
      TensorRef t;
      std::string name = "buffer '" + declared[i].name + "'";
      if (heed_status s = convert(&a->buffers[i], name, t, placed, err))
        return fail(s, err);
      args.buffers.push_back(t);
    }
    if (std::string e = checkOneDevice(placed); !e.empty())
      return fail(HEED_ERROR_INVALID_ARGUMENT, e);
    const Placement &where = placed.front();
    if (where.deviceType != HEED_DEVICE_CPU) {
      if (!kernel->device)
        return fail(HEED_ERROR_UNSUPPORTED,
                    "heed_attention: kernel '" + kernel->info.name +
                        "' holds CPU code only (it was loaded from an artifact without GPU "
                        "entries); to run it on " + where.device() + " (device type " +
                        std::to_string(where.deviceType) +
                        "), export it with a GPU target (heed-compile --aot "
                        "--target=cpu,sm_90) or compile its spec with heed_compile");
      AttentionDims dims;
      if (std::string e = checkAttentionArgs(args, kernel->info, dims); !e.empty())
        return fail(HEED_ERROR_INVALID_ARGUMENT, e);
      if (heed_status s =
              kernel->device->launch(args, where.deviceType, where.deviceId, a->stream))
        return s;
      if (a->stats) // the GPU kernels do not count blocks
        *a->stats = {-1, -1, -1, -1};
      return capi::ok();
    }
    if (!kernel->kernel)
      return fail(HEED_ERROR_UNSUPPORTED,
                  "heed_attention: kernel '" + kernel->info.name + "' was compiled for " +
                      kernel->target + " only; its tensors must be " +
                      (kernel->device ? kernel->device->devices() : "GPU tensors") +
                      ". Compile it with target NULL or \"cpu\" to run it on CPU tensors");
    if (a->num_threads < 0)
      return fail(HEED_ERROR_INVALID_ARGUMENT, "heed_attention: num_threads must be >= 0");
    RunStats stats;
    err = kernel->kernel->run(args, unsigned(a->num_threads), &stats);
    if (!err.empty()) // a failed check, or the kernel's own out-of-range report
      return fail(stats.outOfRangeBuffer ? HEED_ERROR_RUN : HEED_ERROR_INVALID_ARGUMENT, err);
    if (a->stats)
      *a->stats = {stats.visitedBlocks, stats.fullBlocks, stats.partialBlocks, stats.totalBlocks};
    return capi::ok();
  } catch (const std::exception &e) {
    return fail(HEED_ERROR_RUN, std::string("heed_attention: ") + e.what());
  }
}

} // extern "C"
