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
  /// Empty, or the output (BHSD) delta_i = rowsum(dOut_i * out_i) is
  /// computed from: a kernel's stored output gives the gradients that
  /// kernel computes, in exact arithmetic (out, lse and the weights stay
  /// the exact ones).
  std::vector<double> storedOut;
  /// Also compute ReferenceGradients::deltaRms (about doubles the time).
  bool deltaSensitivity = false;
  /// A ragged batch (padded: the tensors hold seqQ / seqKV rows per
  /// entry): entry b's first qLens[b] queries see its first kvLens[b] keys,
  /// with Sq and Skv its own; the other rows get zero gradients. Empty: all.
  std::vector<int64_t> kvLens, qLens;
};

/// How far rounding the output moves the gradients of a kernel that
/// computes delta_i = rowsum(dOut_i * out_i) from its stored output (every
/// gradient but dv is affine in delta): with out rounded to a unit roundoff
/// u, each element off by a fraction of itself uniform in [-u, u] and the
/// rows independent, a gradient g moves by u * rms normwise in root mean
/// square, rms = sqrt(sum_i var(delta_i) ||d g / d delta_i||^2) at u = 1.
struct DeltaSensitivity {
  double dq = 0, dk = 0;
  std::vector<double> dBuffers; ///< per buffer, as ReferenceGradients::dBuffers
};

/// The forward (out, lse) and the gradients of sum(dOut * out), all BHSD.
/// dBuffers[i] holds the gradient of buffer i's elements (row-major) for a
/// float buffer (f32, f16, bf16) and is empty for the others.
struct ReferenceGradients {
  std::vector<double> out, lse, dq, dk, dv;
  std::vector<std::vector<double>> dBuffers;
  /// Per buffer element, the root sum of squares of the terms its gradient
  /// adds (over (row, key) of dS * df/dbuffer): beside dBuffers, how much a
  /// sum that cancels magnifies its terms' rounding (an ALiBi slope's
  /// gradient sums dS (j - i), whose row sums of dS are 0).
  std::vector<std::vector<double>> dBufferMagnitudes;
  int outOfRange = 0; ///< 1-based buffer number read out of range, or 0
  double maxAbsScore = 0; ///< largest finite |modified score| of a visible pair
  DeltaSensitivity deltaRms; ///< with BackwardProblem::deltaSensitivity
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

/// The normwise error a kernel storing q, k, v and out in `dtype` may have
/// on a gradient whose reference is `ref` (docs/backward.md, "Accuracy"):
/// f32, 1e-5, more where the scores are large (|s| * 2^-24 * 16, at most
/// kMaxTolerance); f16 and bf16, 1e-2 plus 4 standard deviations of the
/// change that computing delta from the stored output causes
/// (`deltaRms` * u / ||ref||, u = 2^-11 for f16, 2^-8 for bf16; 0 for dv).
/// With `magnitudes` (a buffer gradient's ReferenceGradients::dBufferMagnitudes):
/// plus 4 standard deviations of the terms' f32 rounding (each off by about
/// 4 roundings, 4 * 2^-24 relative, independently: they add as the root sum
/// of squares) over ||ref||, whatever the storage (the kernel computes in
/// f32). (The terms' |s|-dependent error is in the base.)
double gradientTolerance(DType dtype, double maxAbsScore, double deltaRms,
                         const std::vector<double> &ref,
                         const std::vector<double> *magnitudes = nullptr);

/// Is a buffer of this element type differentiated (f32, f16, bf16)?
bool isFloatBuffer(spec::ElemType elem);

/// ||got - ref||_2 / ||ref||_2 (||got - ref||_2 when ref is 0; infinite
/// where either holds a NaN or the sizes differ): the backward's error
/// measure per gradient tensor.
double normwiseError(const std::vector<double> &got, const std::vector<double> &ref);

} // namespace heed

#endif
