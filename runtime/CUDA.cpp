// The CUDA driver API through dlopen (see CUDA.h). Only the handful of entry
// points heed uses are resolved; every failure becomes a message naming the
// call and the driver's own description of the error.
#include "heed/Runtime/CUDA.h"

#include "heed/Runtime/GPUAttentionLaunch.h"

#include <dlfcn.h>

#include <mutex>
#include <utility>
#include <vector>

namespace heed::cuda {

namespace {

using CUresult = int;
using CUdevice = int;
using CUcontext = void *;
using CUmodule = void *;
using CUfunction = void *;
using CUstream = void *;
using CUdeviceptr = unsigned long long;
using CUevent = void *;

} // namespace

struct Driver {
  void *library = nullptr;
  int deviceCount = 0;
  CUresult (*cuInit)(unsigned) = nullptr;
  CUresult (*cuDeviceGetCount)(int *) = nullptr;
  CUresult (*cuDeviceGet)(CUdevice *, int) = nullptr;
  CUresult (*cuDeviceGetAttribute)(int *, int, CUdevice) = nullptr;
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice) = nullptr;
  CUresult (*cuCtxSetCurrent)(CUcontext) = nullptr;
  CUresult (*cuGetErrorString)(CUresult, const char **) = nullptr;
  CUresult (*cuPointerGetAttribute)(void *, int, CUdeviceptr) = nullptr;
  CUresult (*cuModuleLoadData)(CUmodule *, const void *) = nullptr;
  CUresult (*cuModuleUnload)(CUmodule) = nullptr;
  CUresult (*cuModuleGetFunction)(CUfunction *, CUmodule, const char *) = nullptr;
  CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                             unsigned, unsigned, CUstream, void **, void **) = nullptr;
  CUresult (*cuStreamSynchronize)(CUstream) = nullptr;
  CUresult (*cuFuncSetAttribute)(CUfunction, int, int) = nullptr;
  CUresult (*cuMemAlloc)(CUdeviceptr *, size_t) = nullptr;
  CUresult (*cuMemFree)(CUdeviceptr) = nullptr;
  CUresult (*cuMemAllocHost)(void **, size_t) = nullptr;
  CUresult (*cuMemFreeHost)(void *) = nullptr;
  CUresult (*cuMemcpyHtoD)(CUdeviceptr, const void *, size_t) = nullptr;
  CUresult (*cuMemcpyDtoH)(void *, CUdeviceptr, size_t) = nullptr;
  CUresult (*cuMemcpyHtoDAsync)(CUdeviceptr, const void *, size_t, CUstream) = nullptr;
  CUresult (*cuMemcpyDtoHAsync)(void *, CUdeviceptr, size_t, CUstream) = nullptr;
  CUresult (*cuMemsetD32Async)(CUdeviceptr, unsigned, size_t, CUstream) = nullptr;
  CUresult (*cuEventCreate)(CUevent *, unsigned) = nullptr;
  CUresult (*cuEventRecord)(CUevent, CUstream) = nullptr;
  CUresult (*cuEventQuery)(CUevent) = nullptr;
  /// Optional: the resident blocks split-KV is chosen from (null: 1 per
  /// multiprocessor).
  CUresult (*cuOccupancyMaxActiveBlocksPerMultiprocessor)(int *, CUfunction, int, size_t) = nullptr;
  /// Optional: whether a stream is being captured (CUstreamCaptureStatus).
  CUresult (*cuStreamIsCapturing)(CUstream, int *) = nullptr;
  /// CUDA 12+ (the wgmma kernel's TMA descriptors); null on older drivers.
  CUresult (*cuTensorMapEncodeTiled)(void *, int, unsigned, void *, const uint64_t *,
                                     const uint64_t *, const unsigned *, const unsigned *, int,
                                     int, int, int) = nullptr;

  std::mutex mutex;                 ///< guards contexts
  std::vector<CUcontext> contexts;  ///< primary contexts, retained at first use
  GPUStreamStates streams;

  /// "" or "<call> failed: <driver message> (code N)".
  std::string check(CUresult r, const char *call) const {
    if (r == 0)
      return "";
    const char *text = nullptr;
    if (cuGetErrorString)
      cuGetErrorString(r, &text);
    return std::string(call) + " failed: " + (text ? text : "unknown CUDA error") + " (code " +
           std::to_string(r) + ")";
  }
  /// Makes `device`'s primary context current on the calling thread,
  /// retaining it the first time.
  std::string bind(int device) {
    if (device < 0 || device >= deviceCount)
      return "CUDA device " + std::to_string(device) + " does not exist (the driver sees " +
             std::to_string(deviceCount) + ")";
    CUcontext context = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (!contexts[device]) {
        CUdevice dev = 0;
        if (std::string e = check(cuDeviceGet(&dev, device), "cuDeviceGet"); !e.empty())
          return e;
        if (std::string e = check(cuDevicePrimaryCtxRetain(&contexts[device], dev),
                                  "cuDevicePrimaryCtxRetain");
            !e.empty())
          return e;
      }
      context = contexts[device];
    }
    return check(cuCtxSetCurrent(context), "cuCtxSetCurrent");
  }
};

Driver *driver(std::string &error) {
  static std::once_flag once;
  static Driver *loaded = nullptr;
  static std::string why;
  std::call_once(once, [] {
    auto d = std::make_unique<Driver>();
    d->library = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!d->library) {
      const char *e = dlerror();
      why = std::string("no CUDA driver: libcuda.so.1 cannot be loaded (") +
            (e ? e : "not found") + "); run on the CPU instead";
      return;
    }
    bool ok = true;
    auto resolve = [&](auto &fn, const char *name, const char *alias = nullptr) {
      void *p = dlsym(d->library, alias ? alias : name);
      if (!p && alias)
        p = dlsym(d->library, name);
      if (!p) {
        why = std::string("the CUDA driver lacks ") + name;
        ok = false;
      }
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(p);
    };
    resolve(d->cuInit, "cuInit");
    resolve(d->cuDeviceGetCount, "cuDeviceGetCount");
    resolve(d->cuDeviceGet, "cuDeviceGet");
    resolve(d->cuDeviceGetAttribute, "cuDeviceGetAttribute");
    resolve(d->cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
    resolve(d->cuCtxSetCurrent, "cuCtxSetCurrent");
    resolve(d->cuGetErrorString, "cuGetErrorString");
    resolve(d->cuPointerGetAttribute, "cuPointerGetAttribute");
    resolve(d->cuModuleLoadData, "cuModuleLoadData");
    resolve(d->cuModuleUnload, "cuModuleUnload");
    resolve(d->cuModuleGetFunction, "cuModuleGetFunction");
    resolve(d->cuLaunchKernel, "cuLaunchKernel");
    resolve(d->cuStreamSynchronize, "cuStreamSynchronize");
    resolve(d->cuFuncSetAttribute, "cuFuncSetAttribute");
    resolve(d->cuMemAlloc, "cuMemAlloc", "cuMemAlloc_v2");
    resolve(d->cuMemFree, "cuMemFree", "cuMemFree_v2");
    resolve(d->cuMemAllocHost, "cuMemAllocHost", "cuMemAllocHost_v2");
    resolve(d->cuMemFreeHost, "cuMemFreeHost");
    resolve(d->cuMemcpyHtoD, "cuMemcpyHtoD", "cuMemcpyHtoD_v2");
    resolve(d->cuMemcpyDtoH, "cuMemcpyDtoH", "cuMemcpyDtoH_v2");
    resolve(d->cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync", "cuMemcpyHtoDAsync_v2");
    resolve(d->cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync", "cuMemcpyDtoHAsync_v2");
    resolve(d->cuMemsetD32Async, "cuMemsetD32Async");
    resolve(d->cuEventCreate, "cuEventCreate");
    resolve(d->cuEventRecord, "cuEventRecord");
    resolve(d->cuEventQuery, "cuEventQuery");
    d->cuOccupancyMaxActiveBlocksPerMultiprocessor =
        reinterpret_cast<decltype(d->cuOccupancyMaxActiveBlocksPerMultiprocessor)>(
            dlsym(d->library, "cuOccupancyMaxActiveBlocksPerMultiprocessor"));
    d->cuStreamIsCapturing = reinterpret_cast<decltype(d->cuStreamIsCapturing)>(
        dlsym(d->library, "cuStreamIsCapturing"));
    if (!ok)
      return;
    d->cuTensorMapEncodeTiled = reinterpret_cast<decltype(d->cuTensorMapEncodeTiled)>(
        dlsym(d->library, "cuTensorMapEncodeTiled"));
    if ((why = d->check(d->cuInit(0), "cuInit")).size())
      return;
    if ((why = d->check(d->cuDeviceGetCount(&d->deviceCount), "cuDeviceGetCount")).size())
      return;
    if (d->deviceCount <= 0) {
      why = "the CUDA driver sees no GPU";
      return;
    }
    d->contexts.assign(size_t(d->deviceCount), nullptr);
    loaded = d.release();
  });
  if (!loaded)
    error = why;
  return loaded;
}

int deviceOf(const void *pointer, std::string &error) {
  Driver *d = driver(error);
  if (!d)
    return -1;
  // CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL (cuda.h).
  constexpr int kDeviceOrdinal = 9;
  int ordinal = -1;
  error = d->check(d->cuPointerGetAttribute(&ordinal, kDeviceOrdinal,
                                            reinterpret_cast<CUdeviceptr>(pointer)),
                   "cuPointerGetAttribute(DEVICE_ORDINAL)");
  return error.empty() ? ordinal : -1;
}

int computeCapability(int device, std::string &error) {
  Driver *d = driver(error);
  if (!d)
    return -1;
  if (device < 0 || device >= d->deviceCount) {
    error = "CUDA device " + std::to_string(device) + " does not exist (the driver sees " +
            std::to_string(d->deviceCount) + ")";
    return -1;
  }
  // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR (cuda.h).
  constexpr int kMajor = 75, kMinor = 76;
  CUdevice dev = 0;
  int major = 0, minor = 0;
  if (!(error = d->check(d->cuDeviceGet(&dev, device), "cuDeviceGet")).empty() ||
      !(error = d->check(d->cuDeviceGetAttribute(&major, kMajor, dev), "cuDeviceGetAttribute"))
           .empty() ||
      !(error = d->check(d->cuDeviceGetAttribute(&minor, kMinor, dev), "cuDeviceGetAttribute"))
           .empty())
    return -1;
  return major * 10 + minor;
}

namespace {

/// The driver's calls on one device and the caller's stream.
class StreamDriver final : public GPUStreamDriver {
public:
  StreamDriver(Driver &d, CUstream stream, CUfunction function = nullptr, int64_t threads = 0,
               int64_t sharedBytes = 0, int64_t resident = 0, CUmodule module = nullptr)
      : d(d), stream(stream), function(function), threads(threads), sharedBytes(sharedBytes),
        resident(resident), module(module) {}

  int64_t residentBlocks() override { return resident; }

  std::string allocate(size_t bytes, void **p) override {
    CUdeviceptr x = 0;
    std::string e = d.check(d.cuMemAlloc(&x, bytes), "cuMemAlloc");
    *p = reinterpret_cast<void *>(x);
    return e;
  }
  void free(void *p) override { d.cuMemFree(dev(p)); }
  std::string allocateHost(size_t bytes, void **p) override {
    return d.check(d.cuMemAllocHost(p, bytes), "cuMemAllocHost");
  }
  void freeHost(void *p) override { d.cuMemFreeHost(p); }
  std::string createEvent(void **event) override {
    constexpr unsigned kDisableTiming = 2; // CU_EVENT_DISABLE_TIMING
    return d.check(d.cuEventCreate(event, kDisableTiming), "cuEventCreate");
  }
  std::string zeroAsync(void *p, size_t words) override {
    return d.check(d.cuMemsetD32Async(dev(p), 0, words, stream), "cuMemsetD32Async");
  }
  std::string uploadAsync(void *p, const void *host, size_t n) override {
    return d.check(d.cuMemcpyHtoDAsync(dev(p), host, n, stream), "cuMemcpyHtoDAsync");
  }
  std::string downloadAsync(void *host, const void *p, size_t n) override {
    return d.check(d.cuMemcpyDtoHAsync(host, dev(p), n, stream), "cuMemcpyDtoHAsync");
  }
  std::string recordEvent(void *event) override {
    return d.check(d.cuEventRecord(event, stream), "cuEventRecord");
  }
  std::string launch(unsigned x, unsigned y, unsigned z, void **params) override {
    return d.check(d.cuLaunchKernel(function, x, y, z, unsigned(threads), 1, 1,
                                    unsigned(sharedBytes), stream, params, nullptr),
                   "cuLaunchKernel");
  }
  bool hasKernel(const std::string &name) override {
    CUfunction f = nullptr;
    return module && d.cuModuleGetFunction(&f, module, name.c_str()) == 0 && f;
  }
  std::string launchKernel(const std::string &name, unsigned blocks, unsigned threadsPerBlock,
                           void **params) override {
    CUfunction f = nullptr;
    if (std::string e = d.check(module ? d.cuModuleGetFunction(&f, module, name.c_str()) : 500,
                                "cuModuleGetFunction");
        !e.empty())
      return e;
    return d.check(d.cuLaunchKernel(f, blocks, 1, 1, threadsPerBlock, 1, 1, 0, stream, params,
                                    nullptr),
                   "cuLaunchKernel");
  }
  std::string synchronize() override {
    return d.check(d.cuStreamSynchronize(stream), "cuStreamSynchronize");
  }
  std::string capturing(bool &active) override {
    int status = 0; // CU_STREAM_CAPTURE_STATUS_NONE
    active = false;
    if (!d.cuStreamIsCapturing)
      return "";
    CUresult r = d.cuStreamIsCapturing(stream, &status);
    // CUDA_ERROR_STREAM_CAPTURE_IMPLICIT: the legacy stream while another
    // stream of the context captures (the query itself is harmless).
    constexpr CUresult kCaptureImplicit = 906;
    active = r == kCaptureImplicit || (r == 0 && status != 0); // active, or invalidated
    return r == kCaptureImplicit ? "" : d.check(r, "cuStreamIsCapturing");
  }
  std::string queryEvent(void *event, bool &done) override {
    constexpr CUresult kNotReady = 600; // CUDA_ERROR_NOT_READY
    CUresult r = d.cuEventQuery(event);
    done = r == 0;
    return r == kNotReady ? "" : d.check(r, "cuEventQuery");
  }
  std::string download(void *host, const void *p, size_t n) override {
    return d.check(d.cuMemcpyDtoH(host, dev(p), n), "cuMemcpyDtoH");
  }
  std::string checkTensors(const AttentionArgs &args) override {
    // The tensor-core kernel (the one with dynamic shared memory) copies K
    // and V rows with 16-byte cp.async: rows must start 16-byte aligned.
    if (sharedBytes <= 0)
      return "";
    for (const auto &[name, t] :
         {std::pair<const char *, const TensorRef *>{"k", &args.k}, {"v", &args.v}}) {
      bool aligned = reinterpret_cast<uintptr_t>(t->data) % 16 == 0;
      std::vector<int64_t> strides = t->effectiveStrides();
      for (size_t i = 0; i + 1 < strides.size(); ++i)
        aligned = aligned && (strides[i] * int64_t(dtypeSize(t->dtype))) % 16 == 0;
      if (!aligned)
        return std::string("the tensor-core kernel reads ") + name +
               " in 16-byte rows: its data pointer and its batch, head and sequence strides "
               "must be multiples of 16 bytes (compile with the SIMT kernel for other views)";
    }
    return "";
  }

  std::string encodeTensorMap(void *map, const TensorRef &t, Layout layout,
                              int64_t rows) override {
    if (!d.cuTensorMapEncodeTiled)
      return "the CUDA driver lacks cuTensorMapEncodeTiled (the wgmma kernel needs CUDA 12 "
             "or newer)";
    std::vector<int64_t> strides = t.effectiveStrides();
    size_t elt = dtypeSize(t.dtype);
    if ((t.dtype != DType::F16 && t.dtype != DType::BF16) || t.shape.size() != 4 ||
        strides.size() != 4 || strides[3] != 1)
      return "the wgmma kernel reads f16/bf16 [B, H, S, D] or [B, S, H, D] tensors with a "
             "contiguous head dim";
    // The tensor map's dims run innermost first: the tensor's, reversed.
    uint64_t dims[4], bytes[3];
    unsigned box[4] = {64, 1, 1, 1}, elementStrides[4] = {1, 1, 1, 1};
    for (int i = 0; i < 4; ++i)
      dims[i] = uint64_t(t.shape[3 - i]);
    for (int i = 1; i < 4; ++i) {
      bytes[i - 1] = uint64_t(strides[3 - i]) * elt;
      if (bytes[i - 1] % 16)
        return "the wgmma kernel's TMA needs batch, head and sequence strides of a multiple "
               "of 16 bytes";
    }
    if (reinterpret_cast<uintptr_t>(t.data) % 16)
      return "the wgmma kernel's TMA needs tensors whose data is 16-byte aligned";
    box[layout == Layout::BHSD ? 1 : 2] = unsigned(rows);
    // CUtensorMapDataType FLOAT16 = 6, BFLOAT16 = 9; no interleave; 128B
    // swizzle (3); L2 promotion of 128 bytes (2); zeros out of bounds (0).
    int type = t.dtype == DType::F16 ? 6 : 9;
    return d.check(d.cuTensorMapEncodeTiled(map, type, 4, t.data, dims, bytes, box,
                                            elementStrides, 0, 3, 2, 0),
                   "cuTensorMapEncodeTiled");
  }

private:
  static CUdeviceptr dev(const void *p) { return reinterpret_cast<CUdeviceptr>(p); }
  Driver &d;
  CUstream stream;
  CUfunction function;
  int64_t threads, sharedBytes;
  int64_t resident; ///< blocks of the kernel the device holds at once (0: unknown)
  CUmodule module;  ///< the kernel's module (its other kernels: buffer summaries)
};

} // namespace

std::string captureRefusal(int device, void *stream) {
  std::string error;
  Driver *d = driver(error);
  if (!d || !d->bind(device).empty())
    return ""; // (what fails here fails, and is reported, at the launch)
  StreamDriver calls(*d, stream);
  return refuseGraphCapture(calls);
}

std::string synchronize(int device, void *stream) {
  std::string error;
  Driver *d = driver(error);
  if (!d || !(error = d->bind(device)).empty())
    return error;
  StreamDriver calls(*d, stream);
  return checkGPUStream(calls, d->streams.get(device, stream));
}

std::unique_ptr<DeviceBuffer> DeviceBuffer::allocate(size_t bytes, std::string &error,
                                                     int device) {
  Driver *d = driver(error);
  if (!d || !(error = d->bind(device)).empty())
    return nullptr;
  std::unique_ptr<DeviceBuffer> b(new DeviceBuffer());
  b->bytes = bytes;
  b->device = device;
  if (bytes && !(error = d->check(d->cuMemAlloc(&b->pointer, bytes), "cuMemAlloc")).empty())
    return nullptr;
  return b;
}

DeviceBuffer::~DeviceBuffer() {
  std::string error;
  if (Driver *d = driver(error); d && pointer && d->bind(device).empty())
    d->cuMemFree(pointer);
}

std::string DeviceBuffer::upload(const void *host, size_t n) {
  std::string error;
  Driver *d = driver(error);
  if (!d)
    return error;
  if (n > bytes)
    return "upload of " + std::to_string(n) + " bytes into a buffer of " + std::to_string(bytes);
  if (!(error = d->bind(device)).empty() || !n)
    return error;
  return d->check(d->cuMemcpyHtoD(pointer, host, n), "cuMemcpyHtoD");
}

std::string DeviceBuffer::download(void *host, size_t n) const {
  std::string error;
  Driver *d = driver(error);
  if (!d)
    return error;
  if (n > bytes)
    return "download of " + std::to_string(n) + " bytes from a buffer of " +
           std::to_string(bytes);
  if (!(error = d->bind(device)).empty() || !n)
    return error;
  return d->check(d->cuMemcpyDtoH(host, pointer, n), "cuMemcpyDtoH");
}

std::unique_ptr<KernelModule> KernelModule::load(const std::string &image,
                                                 const GPULaunch &launch, int device,
                                                 std::string &error) {
  Driver *d = driver(error);
  if (!d || !(error = d->bind(device)).empty())
    return nullptr;
  std::unique_ptr<KernelModule> m(new KernelModule());
  m->shape = launch;
  m->deviceOrdinal = device;
  // PTX must be NUL-terminated for the driver's JIT; a cubin is binary.
  std::string copy = image;
  copy.push_back('\0');
  if (!(error = d->check(d->cuModuleLoadData(&m->module, copy.data()), "cuModuleLoadData"))
           .empty())
    return nullptr;
  if (!(error = d->check(d->cuModuleGetFunction(&m->function, m->module,
                                                launch.kernelName.c_str()),
                         "cuModuleGetFunction"))
           .empty())
    return nullptr;
  // Past 48 KB of dynamic shared memory a kernel must be opted in
  // (CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES).
  constexpr int kMaxDynamicShared = 8;
  if (launch.sharedBytes > 48 * 1024 &&
      !(error = d->check(d->cuFuncSetAttribute(m->function, kMaxDynamicShared,
                                               int(launch.sharedBytes)),
                         "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)"))
           .empty())
    return nullptr;
  // Split-KV's measure of the device (CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
  // times the kernel's occupancy); unknown (0) is no split.
  constexpr int kMultiprocessors = 16;
  int sms = 0, perSM = 1;
  CUdevice dev = 0;
  if (d->cuDeviceGet(&dev, device) == 0 &&
      d->cuDeviceGetAttribute(&sms, kMultiprocessors, dev) == 0 && sms > 0) {
    if (d->cuOccupancyMaxActiveBlocksPerMultiprocessor &&
        d->cuOccupancyMaxActiveBlocksPerMultiprocessor(&perSM, m->function, int(launch.threads),
                                                       size_t(launch.sharedBytes)) != 0)
      perSM = 1;
    m->resident = int64_t(sms) * std::max(perSM, 1);
  }
  return m;
}

KernelModule::~KernelModule() {
  std::string error;
  if (Driver *d = driver(error); d && module && d->bind(deviceOrdinal).empty())
    d->cuModuleUnload(module);
}

std::string KernelModule::launchAttention(const KernelInfo &info, const AttentionArgs &args,
                                          void *stream, const GPULaunchOptions &options,
                                          GPULaunchChoice *choice) const {
  std::string error;
  Driver *d = driver(error);
  if (!d || !(error = d->bind(deviceOrdinal)).empty())
    return error;
  StreamDriver calls(*d, stream, function, shape.threads, shape.sharedBytes, resident, module);
  return launchGPUAttention(info, args, shape, calls, d->streams.get(deviceOrdinal, stream),
                            options, choice);
}

std::string KernelModule::launchBackward(const KernelInfo &info, const GPUBackwardTensors &args,
                                         const std::vector<unsigned> &gradients,
                                         const KernelModule &dkdv, void *stream,
                                         const GPULaunchOptions &options) const {
  if (dkdv.deviceOrdinal != deviceOrdinal)
    return "the backward's two kernels are loaded on different devices";
  std::string error;
  Driver *d = driver(error);
  if (!d || !(error = d->bind(deviceOrdinal)).empty())
    return error;
  StreamDriver dqCalls(*d, stream, function, shape.threads, shape.sharedBytes, 0, module);
  StreamDriver dkdvCalls(*d, stream, dkdv.function, dkdv.shape.threads, dkdv.shape.sharedBytes);
  return launchGPUBackward(info, args, gradients, shape, dqCalls, dkdv.shape, dkdvCalls,
                           d->streams.get(deviceOrdinal, stream), options);
}

} // namespace heed::cuda
