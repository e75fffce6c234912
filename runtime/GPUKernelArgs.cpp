// See GPUKernelArgs.h.
#include "heed/Runtime/GPUKernelArgs.h"

namespace heed {

GPUKernelArgs::GPUKernelArgs(const KernelInfo &info, const AttentionArgs &args, void *status,
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
  for (size_t n = 0; n < info.summarized.size(); ++n)
    memref(nullptr, {0, 0, 2}, {0, 2, 1}); // unread by the GPU kernels
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
