// See GPUKernelArgs.h.
#include "heed/Runtime/GPUKernelArgs.h"


namespace heed {

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

std::string gpuKernelStatusMessage(const KernelInfo &info, int32_t status) {
  if (status > 0 && size_t(status) <= info.buffers.size())
    return "the variant read buffer '" + info.buffers[status - 1].name +
           "' out of range (an index computed by the spec fell outside the buffer's shape); "
           "outputs are not valid";
  return "";
}

} // namespace heed
