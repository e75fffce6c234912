// The prelude: heed's library of named masks and modifiers, written in the
// spec language itself. Both frontends inline these definitions (the text is
// parsed and checked once, on first use); docs/spec-language.md quotes them.
#include "Elaborate.h"

#include "heed/Frontend/Library.h"

#include "llvm/Support/ErrorHandling.h"

#include <mutex>

namespace heed::spec {

llvm::StringRef preludeText() {
  return R"attn(
# --- masks ---------------------------------------------------------------
# Each query sees itself and the keys before it.
def causal() = q >= kv
# Causal window of w keys, the diagonal included.
def sliding_window(w: i64) = q >= kv && q - kv < w
# Bidirectional window: `left` keys before and `right` keys after the query.
def band(left: i64, right: i64) = kv >= q - left && kv <= q + right
# The first n tokens are seen by every query; the rest is causal.
def prefix_lm(n: i64) = kv < n || q >= kv
# Attention sinks: the first n tokens, to be combined: sinks(4) || sliding_window(256).
def sinks(n: i64) = kv < n
# Causal, aligned to the bottom right: the last query sees every key, query q
# the keys up to q + Skv - Sq (decode, chunked prefill, speculative tails).
def causal_bottom_right() = q + (Skv - Sq) >= kv
# Packed documents: doc holds one document id per token.
def document(doc: buffer) = doc[q] == doc[kv]
# Per-batch packed documents, doc[b, t]; document(doc) with a rank-2 doc is this.
def document_batched(doc: buffer) = doc[b, q] == doc[b, kv]
# layout[h, i, j] != 0 enables block (i, j) of bq x bk tokens.
def block_sparse(layout: buffer, bq: i64, bk: i64) = layout[h, q / bq, kv / bk] != 0

# Neighborhood attention (NATTEN semantics) along one axis of length n:
# kernel size k (odd), dilation d. A key must share the query's residue
# modulo d; counting in steps of d (ii, jj) along the query's dilation group
# of `len` positions, the window of k keys is centred on the query and
# shifted inward at the borders, so every query keeps k neighbours; causal
# keeps the k positions up to the query. Helpers take the shared
# subexpressions as arguments, so each is built once.
def na_start(ii: i64, len: i64, k: i64) = clamp(ii - k / 2, 0, max(len - k, 0))
def na_window(jj: i64, start: i64, k: i64) = jj >= start && jj < start + k
def na_dilated(ii: i64, jj: i64, len: i64, k: i64, causal: bool) =
  causal ? jj <= ii && ii - jj < k : na_window(jj, na_start(ii, len, k), k)
def na_axis(i: i64, j: i64, n: i64, k: i64, d: i64, causal: bool) =
  j % d == i % d && na_dilated(i / d, j / d, (n - i % d + d - 1) / d, k, causal)
def neighborhood_1d(n: i64, k: i64, d: i64 = 1, causal: bool = false) =
  na_axis(q, kv, n, k, d, causal)
# Tokens row-major on an h0 x w grid.
def neighborhood_2d(h0: i64, w: i64, kh: i64, kw: i64, dh: i64 = 1, dw: i64 = 1,
                    causal_h: bool = false, causal_w: bool = false) =
  na_axis(q / w, kv / w, h0, kh, dh, causal_h) && na_axis(q % w, kv % w, w, kw, dw, causal_w)
# Tokens row-major on a d0 x d1 x d2 grid.
def neighborhood_3d(d0: i64, d1: i64, d2: i64, k0: i64, k1: i64, k2: i64,
                    dil0: i64 = 1, dil1: i64 = 1, dil2: i64 = 1,
                    causal0: bool = false, causal1: bool = false, causal2: bool = false) =
  na_axis(q / (d1 * d2), kv / (d1 * d2), d0, k0, dil0, causal0) &&
  na_axis(q / d2 % d1, kv / d2 % d1, d1, k1, dil1, causal1) &&
  na_axis(q % d2, kv % d2, d2, k2, dil2, causal2)

# --- score modifiers -----------------------------------------------------
# ALiBi: a linear bias on the distance, one slope per head.
def alibi(s: f32, slopes: buffer) = s + slopes[h] * f32(kv - q)
# Soft-capping of logits (Gemma 2, Grok).
def softcap(s: f32, c: f32) = c * tanh(s / c)
# Relative position bias from a [H, 2r+1] table, distances clamped at +-r.
def relative_bias(s: f32, table: buffer, r: i64) = s + table[h, clamp(kv - q, -r, r) + r]
)attn";
}

namespace detail {

const Module &preludeModule() {
  static Module module;
  static std::once_flag once;
  std::call_once(once, [] {
    std::optional<Failure> f = parseModule(preludeText(), module);
    for (auto &d : module.defs)
      d->fromPrelude = true;
    if (!f)
      f = checkDefs(module, nullptr);
    // The prelude ships with heed: a failure here is a bug in heed, not in
    // the user's input (and ParserTest parses it).
    if (f)
      llvm::report_fatal_error(llvm::Twine("heed prelude is invalid: ") + f->message);
  });
  return module;
}

} // namespace detail

using namespace detail;

llvm::Expected<ExprPtr> callLibrary(llvm::StringRef name, llvm::ArrayRef<CallArg> args,
                                    llvm::ArrayRef<BufferDecl> buffers) {
  const Module &prelude = preludeModule();
  const Def *def = nullptr;
  std::vector<std::string> names;
  for (const auto &d : prelude.defs) {
    names.push_back(d->name);
    if (d->name == name)
      def = d.get();
  }
  if (!def)
    return plainError("unknown library function '" + name + "'" + didYouMean(name, names));
  std::vector<BufferDecl> bufferList(buffers.begin(), buffers.end());
  const Module *modules[] = {&prelude};
  Elaborator el(modules);
  el.buffers = &bufferList;
  el.libraryMode = true;
  std::vector<Actual> actuals;
  for (const CallArg &a : args) {
    Actual act;
    act.expr = a.expr;
    act.buffer = a.buffer;
    actuals.push_back(std::move(act));
  }
  ExprPtr r = el.callDef(*def, actuals, llvm::SMLoc(), {}, /*scoreAllowed=*/true);
  if (!r)
    return plainError(el.failure ? el.failure->message : name.str() + ": elaboration failed");
  return r;
}

} // namespace heed::spec
