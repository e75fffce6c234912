// The float64 reference backward pass: the gradients of attention with
// respect to q, k, v and the variant's float buffers, given dOut.
#ifndef HEED_RUNTIME_REFERENCEBACKWARD_H
#define HEED_RUNTIME_REFERENCEBACKWARD_H

#include "heed/Frontend/Evaluate.h"
#include "heed/Frontend/Spec.h"
#include "heed/Runtime/Tensor.h"

#include <vector>

namespace heed {

/// One attention problem in float64, every tensor BHSD and contiguous:
/// q [B, Hq, Sq, D], k [B, Hkv, Skv, D], v [B, Hkv, Skv, Dv], dOut like the
/// output [B, Hq, Sq, Dv]; buffers in the variant's order.
struct BackwardProblem {
  int64_t batch = 0, headsQ = 0, headsKV = 0, seqQ = 0, seqKV = 0, headDim = 0, valueDim = 0;
  double scale = 1;
  std::vector<double> q, k, v, dOut;
  std::vector<spec::BufferData> buffers;
};

/// The forward (out, lse) and the gradients of sum(dOut * out), all BHSD.
/// dBuffers[i] holds the gradient of buffer i's elements (row-major) for a
/// float buffer (f32, f16, bf16) and is empty for the others.
struct ReferenceGradients {
  std::vector<double> out, lse, dq, dk, dv;
  std::vector<std::vector<double>> dBuffers;
  int outOfRange = 0; ///< 1-based buffer number read out of range, or 0
  double maxAbsScore = 0; ///< largest finite |modified score| of a visible pair
};

/// Every f32 operation of the variant runs in float64 (evaluateExact), so
/// the result is the derivative of a smooth function that finite differences
/// can check. Each normalization is differentiated (docs/backward.md): a
/// sink logit's gradient flows into the buffers its expression reads;
/// sigmoid rows have no lse (NaN). The conventions at non-smooth points are PyTorch's
/// (spec::backpropagate); a gated row whose gate is 0 is not routed and
/// contributes nothing. Uses up to `threads` threads (0 = all cores).
ReferenceGradients referenceBackward(const spec::Variant &variant, const BackwardProblem &p,
                                     unsigned threads = 0);

/// The problem of host tensors in `layout` (dOut shaped like the output).
BackwardProblem backwardProblem(const HostTensor &q, const HostTensor &k, const HostTensor &v,
                                const HostTensor &dOut, Layout layout, double scale,
                                const std::vector<HostTensor> &buffers);

/// A tensor in `layout` as BHSD doubles.
std::vector<double> bhsdValues(const HostTensor &t, Layout layout);

/// Is a buffer of this element type differentiated (f32, f16, bf16)?
bool isFloatBuffer(spec::ElemType elem);

/// ||got - ref||_2 / ||ref||_2 (||got - ref||_2 when ref is 0; infinite
/// where either holds a NaN or the sizes differ): the backward's error
/// measure per gradient tensor.
double normwiseError(const std::vector<double> &got, const std::vector<double> &ref);

} // namespace heed

#endif
