// See GPUAttentionLaunch.h.
#include "heed/Runtime/GPUAttentionLaunch.h"

#include "heed/Runtime/BufferSummary.h"

#include <algorithm>
#include <memory>
#include <vector>

namespace heed {

namespace {

/// The summaries of `info.summarized` from device buffers, built on the host.
std::string summarizeDeviceBuffers(
    const KernelInfo &info, const AttentionArgs &args,
    const std::function<std::string(void *, const void *, size_t)> &download,
    std::vector<SummaryTable> &out) {
  for (unsigned which : info.summarized) {
    const TensorRef &device = args.buffers[which];
    int64_t length = device.numElements();
    int64_t stride = device.effectiveStrides().empty() ? 1 : device.effectiveStrides()[0];
    size_t bytes = size_t(length > 0 ? (length - 1) * stride + 1 : 0) * dtypeSize(device.dtype);
    std::vector<char> host(std::max<size_t>(bytes, 1));
    if (bytes)
      if (std::string err = download(host.data(), device.data, bytes); !err.empty())
        return "reading buffer '" + info.buffers[which].name + "' for its summary: " + err;
    TensorRef copy = device;
    copy.data = host.data();
    out.push_back(buildSummaryTable(copy, info.summaryBlock));
  }
  return "";
}

/// A summary table in device memory.
struct DeviceSummary {
  const void *data = nullptr;
  int64_t levels = 1, blocks = 1;
};

/// The kernel's arguments, a pointer per scalar as the driver APIs take them:
/// q, k, v, the buffers, the summaries, out, lse if written, the status word
/// (i32) and the stats (3 x i64), the work range.
class GPUKernelArgs {
public:
  GPUKernelArgs(const KernelInfo &info, const AttentionArgs &args,
                const std::vector<DeviceSummary> &summaries, void *status, void *stats);
  GPUKernelArgs(const GPUKernelArgs &) = delete;
  GPUKernelArgs &operator=(const GPUKernelArgs &) = delete;
  void **params() { return pointers.data(); }

private:
  std::vector<int64_t> words;
  std::vector<void *> pointers;
};

GPUKernelArgs::GPUKernelArgs(const KernelInfo &info, const AttentionArgs &args,
                             const std::vector<DeviceSummary> &summaries, void *status,
                             void *stats) {
  auto memref = [&](const void *data, const std::vector<int64_t> &shape,
                    const std::vector<int64_t> &strides) {
    auto p = reinterpret_cast<int64_t>(data);
    words.push_back(p);
    words.push_back(p);
    words.push_back(0);
    words.insert(words.end(), shape.begin(), shape.end());
    words.insert(words.end(), strides.begin(), strides.end());
  };
  auto tensor = [&](const TensorRef &t) { memref(t.data, t.shape, t.effectiveStrides()); };
  tensor(args.q);
  tensor(args.k);
  tensor(args.v);
  for (const TensorRef &b : args.buffers)
    tensor(b);
  for (size_t n = 0; n < info.summarized.size(); ++n) {
    DeviceSummary t = n < summaries.size() ? summaries[n] : DeviceSummary{};
    memref(t.data, {t.levels, t.blocks, 2}, {t.blocks * 2, 2, 1});
  }
  tensor(args.out);
  if (info.lse)
    tensor(args.lse);
  memref(status, {1}, {1});
  memref(stats, {3}, {1});
  words.push_back(0);
  words.push_back(0);
  for (int64_t &w : words)
    pointers.push_back(&w);
}

/// Device memory from a driver's calls, freed on destruction.
struct DeviceMemory {
  const GPUDriverCalls &calls;
  void *pointer = nullptr;
  explicit DeviceMemory(const GPUDriverCalls &calls) : calls(calls) {}
  DeviceMemory(const DeviceMemory &) = delete;
  ~DeviceMemory() {
    if (pointer)
      calls.free(pointer);
  }
};

} // namespace

/// "" or what a nonzero status word of a finished kernel means.
static std::string gpuKernelStatusMessage(const KernelInfo &info, int32_t status) {
  if (status > 0 && size_t(status) <= info.buffers.size())
    return "the variant read buffer '" + info.buffers[status - 1].name +
           "' out of range (an index computed by the spec fell outside the buffer's shape); "
           "outputs are not valid";
  return "";
}

std::string launchGPUAttention(const KernelInfo &info, const AttentionArgs &args,
                               int64_t blockRows, const GPUDriverCalls &calls) {
  AttentionDims dims;
  if (std::string err = checkAttentionArgs(args, info, dims); !err.empty())
    return err;
  if (!info.gate.empty())
    return "gated kernels do not run on the GPU yet";
  if (calls.checkTensors)
    if (std::string err = calls.checkTensors(args); !err.empty())
      return err;
  if (dims.batch == 0 || dims.headsQ == 0 || dims.seqQ == 0)
    return "";
  std::string error;
  // Device words for status (i32) and stats (3 x i64), zeroed.
  DeviceMemory status(calls), stats(calls);
  if (!(error = calls.allocate(4, &status.pointer)).empty() ||
      !(error = calls.allocate(24, &stats.pointer)).empty() ||
      !(error = calls.zero(status.pointer, 4)).empty() ||
      !(error = calls.zero(stats.pointer, 24)).empty())
    return error;
  // The summaries the block classifier reads (document ids), built on the
  // host from the device buffers once the caller's stream has written them.
  std::vector<std::unique_ptr<DeviceMemory>> tables;
  std::vector<DeviceSummary> summaries;
  if (!info.summarized.empty()) {
    if (!(error = calls.synchronize()).empty())
      return error;
    std::vector<SummaryTable> built;
    if (!(error = summarizeDeviceBuffers(info, args, calls.download, built)).empty())
      return error;
    for (const SummaryTable &t : built) {
      size_t bytes = t.data.size() * sizeof(int64_t);
      tables.push_back(std::make_unique<DeviceMemory>(calls));
      if (!(error = calls.allocate(bytes, &tables.back()->pointer)).empty() ||
          !(error = calls.upload(tables.back()->pointer, t.data.data(), bytes)).empty())
        return error;
      summaries.push_back({tables.back()->pointer, t.levels, t.blocks});
    }
  }
  GPUKernelArgs params(info, args, summaries, status.pointer, stats.pointer);
  unsigned gridX = unsigned((dims.seqQ + blockRows - 1) / blockRows);
  if (!(error = calls.launch(gridX, unsigned(dims.headsQ), unsigned(dims.batch),
                             params.params()))
           .empty() ||
      !(error = calls.synchronize()).empty())
    return error;
  int32_t bad = 0;
  if (!(error = calls.download(&bad, status.pointer, 4)).empty())
    return error;
  return gpuKernelStatusMessage(info, bad);
}

} // namespace heed
