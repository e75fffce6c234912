// See GateRows.h.
#include "heed/Runtime/GateRows.h"

#include <cstring>

namespace heed {

GateRows buildGateRows(const TensorRef &gate, const std::vector<int64_t> &layout,
                       int64_t batches, int64_t heads, int64_t seq) {
  GateRows out;
  out.rows.resize(size_t(batches * heads * seq));
  out.counts.resize(size_t(batches * heads));
  std::vector<int64_t> strides = gate.effectiveStrides();
  auto nonzero = [&](int64_t element) {
    const char *at = static_cast<const char *>(gate.data) + element * dtypeSize(gate.dtype);
    if (gate.dtype == DType::F32) {
      float f;
      std::memcpy(&f, at, 4);
      return f != 0;
    }
    uint16_t bits;
    std::memcpy(&bits, at, 2);
    return (bits & 0x7fff) != 0; // f16 and bf16: +-0 are the zeros
  };
  std::vector<uint8_t> on(static_cast<size_t>(seq));
  for (int64_t b = 0; b < batches; ++b)
    for (int64_t h = 0; h < heads; ++h) {
      int32_t *rows = &out.rows[size_t((b * heads + h) * seq)];
      int64_t routed = 0, unrouted = 0;
      // First pass counts, second places: routed ascending, then the rest.
      for (int64_t q = 0; q < seq; ++q) {
        on[size_t(q)] = nonzero(gateElement(strides, layout, b, q, h));
        routed += on[size_t(q)];
      }
      for (int64_t q = 0, r = 0; q < seq; ++q)
        rows[on[size_t(q)] ? r++ : routed + unrouted++] = int32_t(q);
      out.counts[size_t(b * heads + h)] = int32_t(routed);
    }
  return out;
}

} // namespace heed
