// The HIP runtime through dlopen (see HIP.h). Only the entry points heed uses
// are resolved; every failure becomes a message naming the call and HIP's
// own description of the error. Kernel arguments are packed as for CUDA
// (GPUAttentionLaunch.h): ROCDL kernels take the same expanded memref
// descriptors.
#include "heed/Runtime/HIP.h"

#include "heed/Runtime/GPUAttentionLaunch.h"

#include <dlfcn.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <vector>

#include <mutex>

namespace heed::hip {

namespace {
using hipError_t = int;
using hipModule_t = void *;
using hipFunction_t = void *;
using hipStream_t = void *;
using hipEvent_t = void *;
} // namespace

struct Runtime {
  void *library = nullptr;
  int deviceCount = 0;
  hipError_t (*hipInit)(unsigned) = nullptr;
  hipError_t (*hipGetDeviceCount)(int *) = nullptr;
  hipError_t (*hipSetDevice)(int) = nullptr;
  const char *(*hipGetErrorString)(hipError_t) = nullptr;
  hipError_t (*hipPointerGetAttribute)(void *, int, void *) = nullptr; ///< optional
  hipError_t (*hipModuleLoadData)(hipModule_t *, const void *) = nullptr;
  hipError_t (*hipModuleUnload)(hipModule_t) = nullptr;
  hipError_t (*hipModuleGetFunction)(hipFunction_t *, hipModule_t, const char *) = nullptr;
  hipError_t (*hipModuleLaunchKernel)(hipFunction_t, unsigned, unsigned, unsigned, unsigned,
                                      unsigned, unsigned, unsigned, hipStream_t, void **,
                                      void **) = nullptr;
  hipError_t (*hipStreamSynchronize)(hipStream_t) = nullptr;
  hipError_t (*hipMalloc)(void **, size_t) = nullptr;
  hipError_t (*hipFree)(void *) = nullptr;
  hipError_t (*hipHostMalloc)(void **, size_t, unsigned) = nullptr;
  hipError_t (*hipHostFree)(void *) = nullptr;
  hipError_t (*hipMemcpyHtoD)(void *, const void *, size_t) = nullptr;
  hipError_t (*hipMemcpyDtoH)(void *, void *, size_t) = nullptr;
  hipError_t (*hipMemcpyHtoDAsync)(void *, const void *, size_t, hipStream_t) = nullptr;
  hipError_t (*hipMemcpyDtoHAsync)(void *, void *, size_t, hipStream_t) = nullptr;
  hipError_t (*hipMemsetD32Async)(void *, int, size_t, hipStream_t) = nullptr;
  hipError_t (*hipEventCreateWithFlags)(hipEvent_t *, unsigned) = nullptr;
  hipError_t (*hipEventRecord)(hipEvent_t, hipStream_t) = nullptr;
  hipError_t (*hipEventQuery)(hipEvent_t) = nullptr;
  /// Optional: whether a stream is being captured (hipStreamCaptureStatus).
  hipError_t (*hipStreamIsCapturing)(hipStream_t, int *) = nullptr;
  /// Optional: split-KV's measure of the device (compute units x the
  /// kernel's occupancy); unknown without them.
  hipError_t (*hipDeviceGetAttribute)(int *, int, int) = nullptr;
  hipError_t (*hipModuleOccupancyMaxActiveBlocksPerMultiprocessor)(int *, hipFunction_t, int,
                                                                    size_t) = nullptr;
  /// Optional: the device's properties (ROCm 6's R0600 struct, else the
  /// unversioned call), read only for the gcnArchName in them (deviceChip).
  hipError_t (*hipGetDeviceProperties)(void *, int) = nullptr;

  GPUStreamStates streams;

  /// "" or "<call> failed: <HIP message> (code N)".
  std::string check(hipError_t r, const char *call) const {
    if (r == 0)
      return "";
    const char *text = hipGetErrorString ? hipGetErrorString(r) : nullptr;
    return std::string(call) + " failed: " + (text ? text : "unknown HIP error") + " (code " +
           std::to_string(r) + ")";
  }
  /// `device` for the calling thread.
  std::string bind(int device) const {
    if (device < 0 || device >= deviceCount)
      return "ROCm device " + std::to_string(device) + " does not exist (HIP sees " +
             std::to_string(deviceCount) + ")";
    return check(hipSetDevice(device), "hipSetDevice");
  }
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
    auto resolve = [&](auto &fn, const char *name, bool required = true) {
      void *p = dlsym(r->library, name);
      if (!p && required) {
        why = std::string("the HIP runtime lacks ") + name;
        ok = false;
      }
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(p);
    };
    resolve(r->hipInit, "hipInit");
    resolve(r->hipGetDeviceCount, "hipGetDeviceCount");
    resolve(r->hipSetDevice, "hipSetDevice");
    resolve(r->hipGetErrorString, "hipGetErrorString");
    resolve(r->hipPointerGetAttribute, "hipPointerGetAttribute", /*required=*/false);
    resolve(r->hipModuleLoadData, "hipModuleLoadData");
    resolve(r->hipModuleUnload, "hipModuleUnload");
    resolve(r->hipModuleGetFunction, "hipModuleGetFunction");
    resolve(r->hipModuleLaunchKernel, "hipModuleLaunchKernel");
    resolve(r->hipStreamSynchronize, "hipStreamSynchronize");
    resolve(r->hipMalloc, "hipMalloc");
    resolve(r->hipFree, "hipFree");
    resolve(r->hipHostMalloc, "hipHostMalloc");
    resolve(r->hipHostFree, "hipHostFree");
    resolve(r->hipMemcpyHtoD, "hipMemcpyHtoD");
    resolve(r->hipMemcpyDtoH, "hipMemcpyDtoH");
    resolve(r->hipMemcpyHtoDAsync, "hipMemcpyHtoDAsync");
    resolve(r->hipMemcpyDtoHAsync, "hipMemcpyDtoHAsync");
    resolve(r->hipMemsetD32Async, "hipMemsetD32Async");
    resolve(r->hipEventCreateWithFlags, "hipEventCreateWithFlags");
    resolve(r->hipEventRecord, "hipEventRecord");
    resolve(r->hipEventQuery, "hipEventQuery");
    resolve(r->hipStreamIsCapturing, "hipStreamIsCapturing", /*required=*/false);
    resolve(r->hipDeviceGetAttribute, "hipDeviceGetAttribute", /*required=*/false);
    resolve(r->hipModuleOccupancyMaxActiveBlocksPerMultiprocessor,
            "hipModuleOccupancyMaxActiveBlocksPerMultiprocessor", /*required=*/false);
    resolve(r->hipGetDeviceProperties, "hipGetDevicePropertiesR0600", /*required=*/false);
    if (!r->hipGetDeviceProperties)
      resolve(r->hipGetDeviceProperties, "hipGetDeviceProperties", /*required=*/false);
    if (!ok)
      return;
    if ((why = r->check(r->hipInit(0), "hipInit")).size())
      return;
    if ((why = r->check(r->hipGetDeviceCount(&r->deviceCount), "hipGetDeviceCount")).size())
      return;
    if (r->deviceCount <= 0) {
      why = "the HIP runtime sees no AMD GPU";
      return;
    }
    loaded = r.release();
  });
  if (!loaded)
    error = why;
  return loaded;
}

std::string deviceChip(int device, std::string &error) {
  Runtime *r = runtime(error);
  if (!r || !r->hipGetDeviceProperties)
    return "";
  if (device < 0 || device >= r->deviceCount) {
    error = "ROCm device " + std::to_string(device) + " does not exist";
    return "";
  }
  // hipDeviceProp_t's layout changes between ROCm releases, but its
  // gcnArchName ("gfx942:sramecc+:xnack-") is the one string in it that
  // starts with "gfx" and a digit: found by scanning, in a buffer far larger
  // than any release's struct.
  std::vector<char> props(size_t(64) << 10, 0);
  if (!(error = r->check(r->hipGetDeviceProperties(props.data(), device),
                         "hipGetDeviceProperties"))
           .empty())
    return "";
  for (size_t i = 0; i + 4 < props.size(); ++i) {
    if (std::strncmp(&props[i], "gfx", 3) != 0 || !std::isdigit((unsigned char)props[i + 3]) ||
        (i > 0 && props[i - 1] != 0))
      continue;
    size_t end = i + 3;
    while (end < props.size() && std::isalnum((unsigned char)props[end]))
      ++end;
    if (end < props.size() && (props[end] == 0 || props[end] == ':'))
      return std::string(&props[i], end - i);
  }
  return "";
}

int deviceOf(const void *pointer, std::string &error) {
  Runtime *r = runtime(error);
  if (!r)
    return -1;
  if (!r->hipPointerGetAttribute)
    return -1; // an older HIP: the caller's device id stands
  constexpr int kDeviceOrdinal = 9; // HIP_POINTER_ATTRIBUTE_DEVICE_ORDINAL
  int ordinal = -1;
  error = r->check(r->hipPointerGetAttribute(&ordinal, kDeviceOrdinal, const_cast<void *>(pointer)),
                   "hipPointerGetAttribute(DEVICE_ORDINAL)");
  return error.empty() ? ordinal : -1;
}

namespace {

/// HIP's calls on one device and the caller's stream.
class StreamDriver final : public GPUStreamDriver {
public:
  StreamDriver(Runtime &r, hipStream_t stream, hipFunction_t function = nullptr,
               int64_t threads = 0, int64_t sharedBytes = 0, int64_t resident = 0,
               hipModule_t module = nullptr)
      : r(r), stream(stream), function(function), threads(threads), sharedBytes(sharedBytes),
        resident(resident), module(module) {}

  int64_t residentBlocks() override { return resident; }

  std::string allocate(size_t bytes, void **p) override {
    return r.check(r.hipMalloc(p, bytes), "hipMalloc");
  }
  void free(void *p) override { r.hipFree(p); }
  std::string allocateHost(size_t bytes, void **p) override {
    return r.check(r.hipHostMalloc(p, bytes, 0), "hipHostMalloc");
  }
  void freeHost(void *p) override { r.hipHostFree(p); }
  std::string createEvent(void **event) override {
    constexpr unsigned kDisableTiming = 2; // hipEventDisableTiming
    return r.check(r.hipEventCreateWithFlags(event, kDisableTiming), "hipEventCreateWithFlags");
  }
  std::string zeroAsync(void *p, size_t words) override {
    return r.check(r.hipMemsetD32Async(p, 0, words, stream), "hipMemsetD32Async");
  }
  std::string uploadAsync(void *p, const void *host, size_t n) override {
    return r.check(r.hipMemcpyHtoDAsync(p, host, n, stream), "hipMemcpyHtoDAsync");
  }
  std::string downloadAsync(void *host, const void *p, size_t n) override {
    return r.check(r.hipMemcpyDtoHAsync(host, const_cast<void *>(p), n, stream),
                   "hipMemcpyDtoHAsync");
  }
  std::string recordEvent(void *event) override {
    return r.check(r.hipEventRecord(event, stream), "hipEventRecord");
  }
  std::string launch(unsigned x, unsigned y, unsigned z, void **params) override {
    return r.check(r.hipModuleLaunchKernel(function, x, y, z, unsigned(threads), 1, 1,
                                           unsigned(sharedBytes), stream, params, nullptr),
                   "hipModuleLaunchKernel");
  }
  bool hasKernel(const std::string &name) override {
    hipFunction_t f = nullptr;
    return module && r.hipModuleGetFunction(&f, module, name.c_str()) == 0 && f;
  }
  std::string launchKernel(const std::string &name, unsigned blocks, unsigned threadsPerBlock,
                           void **params) override {
    hipFunction_t f = nullptr;
    constexpr hipError_t kNotFound = 500; // hipErrorNotFound
    if (std::string e = r.check(module ? r.hipModuleGetFunction(&f, module, name.c_str())
                                       : kNotFound,
                                "hipModuleGetFunction");
        !e.empty())
      return e;
    return r.check(r.hipModuleLaunchKernel(f, blocks, 1, 1, threadsPerBlock, 1, 1, 0, stream,
                                           params, nullptr),
                   "hipModuleLaunchKernel");
  }
  std::string synchronize() override {
    return r.check(r.hipStreamSynchronize(stream), "hipStreamSynchronize");
  }
  std::string capturing(bool &active) override {
    int status = 0; // hipStreamCaptureStatusNone
    active = false;
    if (!r.hipStreamIsCapturing)
      return "";
    std::string e = r.check(r.hipStreamIsCapturing(stream, &status), "hipStreamIsCapturing");
    active = status != 0;
    return e;
  }
  std::string queryEvent(void *event, bool &done) override {
    constexpr hipError_t kNotReady = 600; // hipErrorNotReady
    hipError_t e = r.hipEventQuery(event);
    done = e == 0;
    return e == kNotReady ? "" : r.check(e, "hipEventQuery");
  }
  std::string download(void *host, const void *p, size_t n) override {
    return r.check(r.hipMemcpyDtoH(host, const_cast<void *>(p), n), "hipMemcpyDtoH");
  }

private:
  Runtime &r;
  hipStream_t stream;
  hipFunction_t function;
  int64_t threads, sharedBytes;
  int64_t resident; ///< blocks of the kernel the device holds at once (0: unknown)
  hipModule_t module; ///< the kernel's module (its other kernels: buffer summaries)
};

} // namespace

std::string captureRefusal(int device, void *stream) {
  std::string error;
  Runtime *r = runtime(error);
  if (!r || !r->bind(device).empty())
    return ""; // (what fails here fails, and is reported, at the launch)
  StreamDriver calls(*r, stream);
  return refuseGraphCapture(calls);
}

std::string synchronize(int device, void *stream) {
  std::string error;
  Runtime *r = runtime(error);
  if (!r || !(error = r->bind(device)).empty())
    return error;
  StreamDriver calls(*r, stream);
  return checkGPUStream(calls, r->streams.get(device, stream));
}

std::unique_ptr<DeviceBuffer> DeviceBuffer::allocate(size_t bytes, std::string &error,
                                                     int device) {
  Runtime *r = runtime(error);
  if (!r || !(error = r->bind(device)).empty())
    return nullptr;
  std::unique_ptr<DeviceBuffer> b(new DeviceBuffer());
  b->bytes = bytes;
  b->device = device;
  if (bytes && !(error = r->check(r->hipMalloc(&b->pointer, bytes), "hipMalloc")).empty())
    return nullptr;
  return b;
}

DeviceBuffer::~DeviceBuffer() {
  std::string error;
  if (Runtime *r = runtime(error); r && pointer && r->bind(device).empty())
    r->hipFree(pointer);
}

std::string DeviceBuffer::upload(const void *host, size_t n) {
  std::string error;
  Runtime *r = runtime(error);
  if (!r)
    return error;
  if (n > bytes)
    return "upload of " + std::to_string(n) + " bytes into a buffer of " + std::to_string(bytes);
  if (!(error = r->bind(device)).empty() || !n)
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
  if (!(error = r->bind(device)).empty() || !n)
    return error;
  return r->check(r->hipMemcpyDtoH(host, pointer, n), "hipMemcpyDtoH");
}

std::unique_ptr<KernelModule> KernelModule::load(const std::string &image,
                                                 const GPULaunch &launch, int device,
                                                 std::string &error) {
  Runtime *r = runtime(error);
  if (!r || !(error = r->bind(device)).empty())
    return nullptr;
  std::unique_ptr<KernelModule> m(new KernelModule());
  m->shape = launch;
  m->deviceOrdinal = device;
  if (!(error = r->check(r->hipModuleLoadData(&m->module, image.data()), "hipModuleLoadData"))
           .empty())
    return nullptr;
  if (!(error = r->check(r->hipModuleGetFunction(&m->function, m->module,
                                                 launch.kernelName.c_str()),
                         "hipModuleGetFunction"))
           .empty())
    return nullptr;
  // Split-KV's measure: hipDeviceAttributeMultiprocessorCount (63 in HIP's
  // hipDeviceAttribute_t) times the kernel's occupancy; unknown (0) where
  // the runtime lacks either call: no split.
  constexpr int kMultiprocessorCount = 63;
  int units = 0, perUnit = 1;
  if (r->hipDeviceGetAttribute &&
      r->hipDeviceGetAttribute(&units, kMultiprocessorCount, device) == 0 && units > 0) {
    if (r->hipModuleOccupancyMaxActiveBlocksPerMultiprocessor &&
        r->hipModuleOccupancyMaxActiveBlocksPerMultiprocessor(
            &perUnit, m->function, int(launch.threads), size_t(launch.sharedBytes)) != 0)
      perUnit = 1;
    m->resident = int64_t(units) * std::max(perUnit, 1);
  }
  return m;
}

KernelModule::~KernelModule() {
  std::string error;
  if (Runtime *r = runtime(error); r && module && r->bind(deviceOrdinal).empty())
    r->hipModuleUnload(module);
}

std::string KernelModule::launchAttention(const KernelInfo &info, const AttentionArgs &args,
                                          void *stream, const GPULaunchOptions &options,
                                          GPULaunchChoice *choice) const {
  std::string error;
  Runtime *r = runtime(error);
  if (!r || !(error = r->bind(deviceOrdinal)).empty())
    return error;
  StreamDriver calls(*r, stream, function, shape.threads, shape.sharedBytes, resident, module);
  return launchGPUAttention(info, args, shape, calls, r->streams.get(deviceOrdinal, stream),
                            options, choice);
}

std::string KernelModule::launchBackward(const KernelInfo &info, const GPUBackwardTensors &args,
                                         const std::vector<unsigned> &gradients,
                                         const KernelModule &dkdv, void *stream,
                                         const GPULaunchOptions &options) const {
  if (dkdv.deviceOrdinal != deviceOrdinal)
    return "the backward's two kernels are loaded on different devices";
  std::string error;
  Runtime *r = runtime(error);
  if (!r || !(error = r->bind(deviceOrdinal)).empty())
    return error;
  StreamDriver dqCalls(*r, stream, function, shape.threads, shape.sharedBytes, 0, module);
  StreamDriver dkdvCalls(*r, stream, dkdv.function, dkdv.shape.threads, dkdv.shape.sharedBytes);
  return launchGPUBackward(info, args, gradients, shape, dqCalls, dkdv.shape, dkdvCalls,
                           r->streams.get(deviceOrdinal, stream), options);
}

} // namespace heed::hip
