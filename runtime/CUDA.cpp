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

} // namespace

struct Driver {
  void *library = nullptr;
  CUcontext context = nullptr;
  CUresult (*cuInit)(unsigned) = nullptr;
  CUresult (*cuDeviceGetCount)(int *) = nullptr;
  CUresult (*cuDeviceGet)(CUdevice *, int) = nullptr;
  CUresult (*cuDeviceGetAttribute)(int *, int, CUdevice) = nullptr;
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice) = nullptr;
  CUresult (*cuCtxSetCurrent)(CUcontext) = nullptr;
  CUresult (*cuGetErrorString)(CUresult, const char **) = nullptr;
  CUresult (*cuModuleLoadData)(CUmodule *, const void *) = nullptr;
  CUresult (*cuModuleUnload)(CUmodule) = nullptr;
  CUresult (*cuModuleGetFunction)(CUfunction *, CUmodule, const char *) = nullptr;
  CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                             unsigned, unsigned, CUstream, void **, void **) = nullptr;
  CUresult (*cuStreamSynchronize)(CUstream) = nullptr;
  CUresult (*cuFuncSetAttribute)(CUfunction, int, int) = nullptr;
  CUresult (*cuMemAlloc)(CUdeviceptr *, size_t) = nullptr;
  CUresult (*cuMemFree)(CUdeviceptr) = nullptr;
  CUresult (*cuMemcpyHtoD)(CUdeviceptr, const void *, size_t) = nullptr;
  CUresult (*cuMemcpyDtoH)(void *, CUdeviceptr, size_t) = nullptr;
  CUresult (*cuMemsetD8)(CUdeviceptr, unsigned char, size_t) = nullptr;

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
  /// Makes device 0's primary context current on the calling thread.
  std::string bind() const { return check(cuCtxSetCurrent(context), "cuCtxSetCurrent"); }
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
    resolve(d->cuModuleLoadData, "cuModuleLoadData");
    resolve(d->cuModuleUnload, "cuModuleUnload");
    resolve(d->cuModuleGetFunction, "cuModuleGetFunction");
    resolve(d->cuLaunchKernel, "cuLaunchKernel");
    resolve(d->cuStreamSynchronize, "cuStreamSynchronize");
    resolve(d->cuFuncSetAttribute, "cuFuncSetAttribute");
    resolve(d->cuMemAlloc, "cuMemAlloc", "cuMemAlloc_v2");
    resolve(d->cuMemFree, "cuMemFree", "cuMemFree_v2");
    resolve(d->cuMemcpyHtoD, "cuMemcpyHtoD", "cuMemcpyHtoD_v2");
    resolve(d->cuMemcpyDtoH, "cuMemcpyDtoH", "cuMemcpyDtoH_v2");
    resolve(d->cuMemsetD8, "cuMemsetD8", "cuMemsetD8_v2");
    if (!ok)
      return;
    if ((why = d->check(d->cuInit(0), "cuInit")).size())
      return;
    int count = 0;
    if ((why = d->check(d->cuDeviceGetCount(&count), "cuDeviceGetCount")).size())
      return;
    if (count == 0) {
      why = "the CUDA driver sees no GPU";
      return;
    }
    CUdevice dev = 0;
    if ((why = d->check(d->cuDeviceGet(&dev, 0), "cuDeviceGet")).size() ||
        (why = d->check(d->cuDevicePrimaryCtxRetain(&d->context, dev),
                        "cuDevicePrimaryCtxRetain"))
            .size())
      return;
    loaded = d.release();
  });
  if (!loaded)
    error = why;
  return loaded;
}

int computeCapability(std::string &error) {
  Driver *d = driver(error);
  if (!d)
    return -1;
  // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR (cuda.h).
  constexpr int kMajor = 75, kMinor = 76;
  CUdevice dev = 0;
  int major = 0, minor = 0;
  if (!(error = d->check(d->cuDeviceGet(&dev, 0), "cuDeviceGet")).empty() ||
      !(error = d->check(d->cuDeviceGetAttribute(&major, kMajor, dev), "cuDeviceGetAttribute"))
           .empty() ||
      !(error = d->check(d->cuDeviceGetAttribute(&minor, kMinor, dev), "cuDeviceGetAttribute"))
           .empty())
    return -1;
  return major * 10 + minor;
}

std::unique_ptr<DeviceBuffer> DeviceBuffer::allocate(size_t bytes, std::string &error) {
  Driver *d = driver(error);
  if (!d || !(error = d->bind()).empty())
    return nullptr;
  std::unique_ptr<DeviceBuffer> b(new DeviceBuffer());
  b->bytes = bytes;
  if (bytes && !(error = d->check(d->cuMemAlloc(&b->pointer, bytes), "cuMemAlloc")).empty())
    return nullptr;
  return b;
}

DeviceBuffer::~DeviceBuffer() {
  std::string error;
  if (Driver *d = driver(error); d && pointer)
    d->cuMemFree(pointer);
}

std::string DeviceBuffer::upload(const void *host, size_t n) {
  std::string error;
  Driver *d = driver(error);
  if (!d)
    return error;
  if (n > bytes)
    return "upload of " + std::to_string(n) + " bytes into a buffer of " + std::to_string(bytes);
  if (!(error = d->bind()).empty() || !n)
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
  if (!(error = d->bind()).empty() || !n)
    return error;
  return d->check(d->cuMemcpyDtoH(host, pointer, n), "cuMemcpyDtoH");
}

std::unique_ptr<KernelModule> KernelModule::load(const std::string &image,
                                                 const std::string &entry, std::string &error) {
  Driver *d = driver(error);
  if (!d || !(error = d->bind()).empty())
    return nullptr;
  std::unique_ptr<KernelModule> m(new KernelModule());
  // PTX must be NUL-terminated for the driver's JIT; a cubin is binary.
  std::string copy = image;
  copy.push_back('\0');
  if (!(error = d->check(d->cuModuleLoadData(&m->module, copy.data()), "cuModuleLoadData"))
           .empty())
    return nullptr;
  if (!(error = d->check(d->cuModuleGetFunction(&m->function, m->module, entry.c_str()),
                         "cuModuleGetFunction"))
           .empty())
    return nullptr;
  return m;
}

KernelModule::~KernelModule() {
  std::string error;
  if (Driver *d = driver(error); d && module)
    d->cuModuleUnload(module);
}

std::string KernelModule::launchAttention(const KernelInfo &info, const AttentionArgs &args,
                                          int64_t blockRows, int64_t threads,
                                          void *stream, int64_t sharedBytes) const {
  std::string error;
  Driver *d = driver(error);
  if (!d || !(error = d->bind()).empty())
    return error;
  // Past 48 KB of dynamic shared memory a kernel must be opted in
  // (CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES).
  constexpr int kMaxDynamicShared = 8;
  if (sharedBytes > 48 * 1024 &&
      !(error = d->check(d->cuFuncSetAttribute(function, kMaxDynamicShared, int(sharedBytes)),
                         "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)"))
           .empty())
    return error;
  auto dev = [](const void *p) { return reinterpret_cast<CUdeviceptr>(p); };
  GPUDriverCalls calls;
  calls.allocate = [&](size_t n, void **p) {
    CUdeviceptr x = 0;
    std::string e = d->check(d->cuMemAlloc(&x, n), "cuMemAlloc");
    *p = reinterpret_cast<void *>(x);
    return e;
  };
  calls.free = [&](void *p) { d->cuMemFree(dev(p)); };
  calls.zero = [&](void *p, size_t n) { return d->check(d->cuMemsetD8(dev(p), 0, n), "cuMemsetD8"); };
  calls.upload = [&](void *p, const void *host, size_t n) {
    return d->check(d->cuMemcpyHtoD(dev(p), host, n), "cuMemcpyHtoD");
  };
  calls.download = [&](void *host, const void *p, size_t n) {
    return d->check(d->cuMemcpyDtoH(host, dev(p), n), "cuMemcpyDtoH");
  };
  calls.launch = [&](unsigned x, unsigned y, unsigned z, void **params) {
    return d->check(d->cuLaunchKernel(function, x, y, z, unsigned(threads), 1, 1,
                                      unsigned(sharedBytes), stream, params, nullptr),
                    "cuLaunchKernel");
  };
  calls.synchronize = [&] { return d->check(d->cuStreamSynchronize(stream), "cuStreamSynchronize"); };
  // The tensor-core kernel (the one with dynamic shared memory) copies K
  // and V rows with 16-byte cp.async: rows must start 16-byte aligned.
  if (sharedBytes > 0)
    calls.checkTensors = [](const AttentionArgs &args) -> std::string {
      for (const auto &[name, t] : {std::pair<const char *, const TensorRef *>{"k", &args.k},
                                    {"v", &args.v}}) {
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
    };
  return launchGPUAttention(info, args, blockRows, calls);
}

} // namespace heed::cuda
