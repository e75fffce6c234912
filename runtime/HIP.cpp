// The HIP runtime through dlopen (see HIP.h). Only the entry points heed uses
// are resolved; every failure becomes a message naming the call and HIP's
// own description of the error. Kernel arguments are packed as for CUDA
// (GPUAttentionLaunch.h): ROCDL kernels take the same expanded memref
// descriptors.
#include "heed/Runtime/HIP.h"

#include "heed/Runtime/GPUAttentionLaunch.h"

#include <dlfcn.h>

#include <mutex>

namespace heed::hip {

namespace {
using hipError_t = int;
using hipModule_t = void *;
using hipFunction_t = void *;
using hipStream_t = void *;
} // namespace

struct Runtime {
  void *library = nullptr;
  hipError_t (*hipInit)(unsigned) = nullptr;
  hipError_t (*hipGetDeviceCount)(int *) = nullptr;
  hipError_t (*hipSetDevice)(int) = nullptr;
  const char *(*hipGetErrorString)(hipError_t) = nullptr;
  hipError_t (*hipModuleLoadData)(hipModule_t *, const void *) = nullptr;
  hipError_t (*hipModuleUnload)(hipModule_t) = nullptr;
  hipError_t (*hipModuleGetFunction)(hipFunction_t *, hipModule_t, const char *) = nullptr;
  hipError_t (*hipModuleLaunchKernel)(hipFunction_t, unsigned, unsigned, unsigned, unsigned,
                                      unsigned, unsigned, unsigned, hipStream_t, void **,
                                      void **) = nullptr;
  hipError_t (*hipStreamSynchronize)(hipStream_t) = nullptr;
  hipError_t (*hipMalloc)(void **, size_t) = nullptr;
  hipError_t (*hipFree)(void *) = nullptr;
  hipError_t (*hipMemcpyHtoD)(void *, const void *, size_t) = nullptr;
  hipError_t (*hipMemcpyDtoH)(void *, void *, size_t) = nullptr;
  hipError_t (*hipMemset)(void *, int, size_t) = nullptr;

  /// "" or "<call> failed: <HIP message> (code N)".
  std::string check(hipError_t r, const char *call) const {
    if (r == 0)
      return "";
    const char *text = hipGetErrorString ? hipGetErrorString(r) : nullptr;
    return std::string(call) + " failed: " + (text ? text : "unknown HIP error") + " (code " +
           std::to_string(r) + ")";
  }
  /// Device 0 for the calling thread.
  std::string bind() const { return check(hipSetDevice(0), "hipSetDevice"); }
};

Runtime *runtime(std::string &error) {
  static std::once_flag once;
  static Runtime *loaded = nullptr;
  static std::string why;
  std::call_once(once, [] {
    auto r = std::make_unique<Runtime>();
    std::string first;
    for (const char *name : {"libamdhip64.so", "libamdhip64.so.6", "libamdhip64.so.5"}) {
      if ((r->library = dlopen(name, RTLD_NOW | RTLD_LOCAL)))
        break;
      if (const char *e = dlerror(); e && first.empty())
        first = e;
    }
    if (!r->library) {
      why = "no HIP runtime: libamdhip64.so cannot be loaded (" +
            (first.empty() ? std::string("not found") : first) +
            "); install ROCm, or run on the CPU instead";
      return;
    }
    bool ok = true;
    auto resolve = [&](auto &fn, const char *name) {
      void *p = dlsym(r->library, name);
      if (!p) {
        why = std::string("the HIP runtime lacks ") + name;
        ok = false;
      }
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(p);
    };
    resolve(r->hipInit, "hipInit");
    resolve(r->hipGetDeviceCount, "hipGetDeviceCount");
    resolve(r->hipSetDevice, "hipSetDevice");
    resolve(r->hipGetErrorString, "hipGetErrorString");
    resolve(r->hipModuleLoadData, "hipModuleLoadData");
    resolve(r->hipModuleUnload, "hipModuleUnload");
    resolve(r->hipModuleGetFunction, "hipModuleGetFunction");
    resolve(r->hipModuleLaunchKernel, "hipModuleLaunchKernel");
    resolve(r->hipStreamSynchronize, "hipStreamSynchronize");
    resolve(r->hipMalloc, "hipMalloc");
    resolve(r->hipFree, "hipFree");
    resolve(r->hipMemcpyHtoD, "hipMemcpyHtoD");
    resolve(r->hipMemcpyDtoH, "hipMemcpyDtoH");
    resolve(r->hipMemset, "hipMemset");
    if (!ok)
      return;
    if ((why = r->check(r->hipInit(0), "hipInit")).size())
      return;
    int count = 0;
    if ((why = r->check(r->hipGetDeviceCount(&count), "hipGetDeviceCount")).size())
      return;
    if (count == 0) {
      why = "the HIP runtime sees no AMD GPU";
      return;
    }
    if ((why = r->bind()).size())
      return;
    loaded = r.release();
  });
  if (!loaded)
    error = why;
  return loaded;
}

std::unique_ptr<DeviceBuffer> DeviceBuffer::allocate(size_t bytes, std::string &error) {
  Runtime *r = runtime(error);
  if (!r || !(error = r->bind()).empty())
    return nullptr;
  std::unique_ptr<DeviceBuffer> b(new DeviceBuffer());
  b->bytes = bytes;
  if (bytes && !(error = r->check(r->hipMalloc(&b->pointer, bytes), "hipMalloc")).empty())
    return nullptr;
  return b;
}

DeviceBuffer::~DeviceBuffer() {
  std::string error;
  if (Runtime *r = runtime(error); r && pointer)
    r->hipFree(pointer);
}

std::string DeviceBuffer::upload(const void *host, size_t n) {
  std::string error;
  Runtime *r = runtime(error);
  if (!r)
    return error;
  if (n > bytes)
    return "upload of " + std::to_string(n) + " bytes into a buffer of " + std::to_string(bytes);
  if (!(error = r->bind()).empty() || !n)
    return error;
  return r->check(r->hipMemcpyHtoD(pointer, host, n), "hipMemcpyHtoD");
}

std::string DeviceBuffer::download(void *host, size_t n) const {
  std::string error;
  Runtime *r = runtime(error);
  if (!r)
    return error;
  if (n > bytes)
    return "download of " + std::to_string(n) + " bytes from a buffer of " +
           std::to_string(bytes);
  if (!(error = r->bind()).empty() || !n)
    return error;
  return r->check(r->hipMemcpyDtoH(host, pointer, n), "hipMemcpyDtoH");
}

std::unique_ptr<KernelModule> KernelModule::load(const std::string &image,
                                                 const std::string &entry, std::string &error) {
  Runtime *r = runtime(error);
  if (!r || !(error = r->bind()).empty())
    return nullptr;
  std::unique_ptr<KernelModule> m(new KernelModule());
  if (!(error = r->check(r->hipModuleLoadData(&m->module, image.data()), "hipModuleLoadData"))
           .empty())
    return nullptr;
  if (!(error = r->check(r->hipModuleGetFunction(&m->function, m->module, entry.c_str()),
                         "hipModuleGetFunction"))
           .empty())
    return nullptr;
  return m;
}

KernelModule::~KernelModule() {
  std::string error;
  if (Runtime *r = runtime(error); r && module)
    r->hipModuleUnload(module);
}

std::string KernelModule::launchAttention(const KernelInfo &info, const AttentionArgs &args,
                                          int64_t blockRows, int64_t threads,
                                          void *stream, int64_t sharedBytes) const {
  std::string error;
  Runtime *r = runtime(error);
  if (!r || !(error = r->bind()).empty())
    return error;
  GPUDriverCalls calls;
  calls.allocate = [&](size_t n, void **p) { return r->check(r->hipMalloc(p, n), "hipMalloc"); };
  calls.free = [&](void *p) { r->hipFree(p); };
  calls.zero = [&](void *p, size_t n) { return r->check(r->hipMemset(p, 0, n), "hipMemset"); };
  calls.upload = [&](void *p, const void *host, size_t n) {
    return r->check(r->hipMemcpyHtoD(p, host, n), "hipMemcpyHtoD");
  };
  calls.download = [&](void *host, const void *p, size_t n) {
    return r->check(r->hipMemcpyDtoH(host, const_cast<void *>(p), n), "hipMemcpyDtoH");
  };
  calls.launch = [&](unsigned x, unsigned y, unsigned z, void **params) {
    return r->check(r->hipModuleLaunchKernel(function, x, y, z, unsigned(threads), 1, 1,
                                             unsigned(sharedBytes), stream, params, nullptr),
                    "hipModuleLaunchKernel");
  };
  calls.synchronize = [&] {
    return r->check(r->hipStreamSynchronize(stream), "hipStreamSynchronize");
  };
  return launchGPUAttention(info, args, blockRows, calls);
}

} // namespace heed::hip
