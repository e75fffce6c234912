// Target-independent passes on the attn dialect.
#ifndef HEED_TRANSFORMS_PASSES
#define HEED_TRANSFORMS_PASSES

include "mlir/Pass/PassBase.td"

def AttnSimplify : Pass<"attn-simplify", "heed::attn::VariantOp"> {
  let summary = "Fold and canonicalize the score and mask regions of variants";
  let description = [{
    Runs arith/math folding and canonicalization patterns plus CSE inside an
    `attn.variant` (isolated from above: variants are simplified in
    parallel), so later passes see the simplest form of each expression
    (constant parameters folded, `x * 1.0` gone, `true && m` reduced to `m`).
  }];
  let dependentDialects = ["mlir::arith::ArithDialect"];
}

def AttnRuntimeABI : Pass<"attn-runtime-abi", "mlir::ModuleOp"> {
  let summary = "Give each attention function the arguments heed's runtime passes";
  let description = [{
    For every function holding an `attn.attention` with no runtime operands
    (no status, stats or work), inserts the arguments the runtime calls a
    kernel with and hands them to the op: a summary (`memref<?x?x2xi64>`)
    per rank-1 or rank-2 integer buffer of the variant and, for a gated variant, the
    routed rows and their counts (`memref<?xi32>` twice), before the output;
    then `status` (`memref<1xi32>`), `stats` (`memref<3xi64>`) and the work
    range (`index`, `index`) at the end:

        (q, k, v, buffers..., summaries..., [gate_rows, gate_counts,]
         out, [lse,] status, stats, begin, end)

    Ops that already have them (hand-written IR) are left alone. The
    frontend and the builder API emit the op without them; every heed
    pipeline starts with this pass.

    With `split-kv` (the CPU and GPU pipelines), five more at the very end:
    the call's split-KV phase, number of key ranges and keys per range
    (`index` each; 0 keys: each item's range in equal parts) and the workspace of partial states (`memref<?x?x?x?x?xf32>` twice), which
    --attn-split-kv turns into the three phases (docs/decode.md).
  }];
  let options = [
    Option<"splitKV", "split-kv", "bool", /*default=*/"false",
           "also pass the split-KV phase, count, part keys and workspace">,
  ];
}

def AttnChooseTiling : Pass<"attn-choose-tiling", "mlir::ModuleOp"> {
  let summary = "Choose how each attention op cuts q and kv into tiles (#attn.tiling)";
  let description = [{
    Sets `tiling` on every `attn.attention` and `attn.attention_backward` (and
    `attn.num_tiles`): flat tiles
    of `block-q` queries and `block-kv` keys, or, where the variant's mask
    reads q and kv only through floor divisions and remainders by constants
    that form a chain of strides (a 2-D or 3-D token grid, as the
    neighborhood masks do) and `patches` is set, patches of that grid with
    block-q / block-kv lanes each, shaped to waste the fewest lanes past the
    grid's edges. `block-q = 0` (the default) chooses per schedule: 32
    query rows for flat tiles, 16 lanes for patches. It then records the grid on the variant (`#attn.grid`), so
    that --attn-analyze-mask (run after it) classifies grid boxes. Gated
    variants keep flat tiles (their query tiles are routed rows).

    ```mlir
    attn.attention @nbhd ... {tiling = #attn.tiling<q = [4, 4], kv = [4, 4], grid = [128]>}
    ```
  }];
  let options = [
    Option<"blockQ", "block-q", "int64_t", "0",
           "query tokens per tile; 0: by schedule, 32-row flat tiles and 16-lane patches "
           "(the CPU's vectors: a patch of 32 lanes wastes more of a neighborhood)">,
    Option<"blockKV", "block-kv", "int64_t", "16",
           "keys per KV tile; 0: by head dim, 64 up to head dim 64, else 32 (matrix-core "
           "kernels: fewer score registers beside wide accumulators)">,
    Option<"patches", "patches", "bool", "true",
           "tile token grids by multi-dimensional patches where the mask allows">,
  ];
}

def AttnAnalyzeMask : Pass<"attn-analyze-mask", "heed::attn::VariantOp"> {
  let summary = "Derive a block classifier (EMPTY / FULL / PARTIAL) from each mask";
  let description = [{
    Fills the `blocks` region of an `attn.variant` with an abstract
    interpretation of its mask over intervals: given a box of (q, kv) pairs
    (and exact b, h) it yields 0 (EMPTY: the mask is false everywhere on the
    box), 2 (FULL: true everywhere) or 1 (PARTIAL). It is sound by
    construction (each abstract op over-approximates its concrete op) and exact
    for masks built from comparisons of sums/differences of q, kv and
    constants. It also sets `sparsity` on the variant: dense (no mask),
    empty, closed_form, or data_dependent (the mask reads buffers or
    floats, so boxes are PARTIAL unless decided by the rest of the mask).
    The lowerings use the classifier to skip EMPTY tiles and the mask of
    FULL ones.

    Where the variant has a `grid` (from --attn-choose-tiling), the box is a
    Cartesian box of that token grid whose corners are `q_lo`/`q_hi` and
    `kv_lo`/`kv_hi`: q and kv then carry their grid digits through the
    interpretation, so neighborhood masks classify patches exactly.
  }];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::memref::MemRefDialect",
                           "mlir::scf::SCFDialect"];
}

def AttnSkipTiles : Pass<"attn-skip-tiles", "mlir::ModuleOp"> {
  let summary = "Visit only the key tiles the mask does not empty";
  let description = [{
    On the tile loops of --attn-to-tile with classified key tiles
    (`attn.tile.classify`, present when the variant has a `blocks` region):
    narrows each key loop (one per grid dim) to the tiles whose boxes the
    classifier cannot prove EMPTY (`attn.tile.kv_range`: both ends by binary
    search), and runs a tile's work only where its class is not EMPTY
    (`scf.if`; the loop state passes through otherwise). FULL tiles already
    skip the mask.
  }];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::scf::SCFDialect"];
}

def AttnPackGQA : Pass<"attn-pack-gqa", "mlir::ModuleOp"> {
  let summary = "Pack the query heads of a GQA group into one query tile when Sq is small";
  let description = [{
    Decode and speculative decode (a few queries per sequence, Sq * group <=
    the query tile's rows): instead of one work item per query head, each
    reading the whole key/value cache of its group, one work item per
    key/value head whose query tile holds every head of the group
    (`attn.tile.packed_span`: Sq = 1 and 4 heads per group is one tile of 4
    rows), so the cache is read once per group. The choice is made when the
    kernel runs, from its sizes: each work loop becomes
    `scf.if (group > 1 && group * Sq <= rows) { packed } else { as before }`,
    so one kernel serves prefill and decode. Loops whose key-tile classifier
    reads the head, routed and gated variants are left as they are; a sink
    logit that reads the head becomes one per row (`attn.tile.lane_sinks`).
    Each
    visited block counts once per head of the tile in the statistics.

    The packed tile has its own row count (`rows`, at most the loop's): a
    packed decode tile holds a handful of real rows (group x Sq), so it is
    kept narrower than a prefill tile. The packed branch's q, s, acc and row
    tiles, its span and its tilings are retyped to it (`rows = 16` on a
    32-row loop: the packed branch computes 16-row tiles).

    `one-loop` (the GPU kernels): the loop is not copied; its sizes are
    chosen at run time instead. Its items are (B, packs ? Hkv : H) with
    `g = packs ? group : 1` heads per item, its tiles those of g x Sq rows,
    and every query tile is an `attn.tile.packed_span` of g heads (g = 1:
    the item's own head, row v token v). One copy of the kernel's code, so
    compile time and code size stay those of the unpacked kernel; `rows`
    is then the loop's own.
  }];
  let options = [
    Option<"rows", "rows", "int64_t", "16",
           "query rows of a packed tile (the loop's rows where fewer)">,
    Option<"oneLoop", "one-loop", "bool", "false",
           "choose the packing inside one loop (GPU kernels) instead of copying it">
  ];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::scf::SCFDialect"];
}

def AttnSplitKV : Pass<"attn-split-kv", "mlir::ModuleOp"> {
  let summary = "Split each work item's key range across work items, merged by log-sum-exp";
  let description = [{
    FlashDecoding's schedule, for calls with fewer work items than cores or
    with a few long sequences among short ones: every work loop carrying
    `split(phase, count) partials(acc, stats)` becomes
    `scf.index_switch phase`:
    0: the loop as it was (one key range per item);
    1: the partial phase: `tiles * count` items, item (b, h, t * count + s)
       running key tiles [first + s c, min(end, first + (s + 1) c)) of its
       range [first, end), c = ceil((end - first) / count), and writing its
       state with `attn.tile.store_partial`;
    2: the merge phase: the loop's items again, each merging its splits'
       states (`attn.tile.merge_partials`) into the state its store
       normalizes, sink, gate and lse included.
    The runtime chooses `count` per call from the work and the machine and
    runs phase 1 then phase 2 (or phase 0 alone). Work loops whose shape it
    does not know (a gated item's idle branch, a routed item's switch) run
    whole in phase 0 and 1 and do nothing in phase 2.

    With `one-loop` (the GPU kernels' form) the three phases share one work
    loop over `tiles * parts` items (parts = 1 in phase 2, count otherwise;
    the runtime runs phase 0 with count = 1), one key loop and one store:
    the state is `scf.if (phase == 2) { merge } else { the key loop over
    part s: tiles first + s, first + s + parts, ... }`, the store partial in
    phase 1 and final in phases 0 and 2. A loop of another shape runs part
    0 of its items whole there (the module gets `heed.split_kv_whole`).
  }];
  let options = [
    Option<"oneLoop", "one-loop", "bool", /*default=*/"false",
           "the three phases in one work loop, one key loop and one store (GPU kernels)">
  ];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::scf::SCFDialect"];
}

def AttnSpecializeRoutes : Pass<"attn-specialize-routes", "mlir::ModuleOp"> {
  let summary = "Specialize a routed variant's work items per route case";
  let description = [{
    After `attn.tile.route` in a work item, switches (`scf.index_switch`) on
    the route value into one copy of the item's code per case of the
    variant, with the value a constant there, so each case pays only for its
    own mask and score; heads whose value has no case take a value matching
    none.
  }];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::scf::SCFDialect"];
}

def AttnPipelineKV : Pass<"attn-pipeline-kv", "mlir::ModuleOp"> {
  let summary = "Stage the key loop's K/V tiles in workgroup memory, N slots deep";
  let description = [{
    Each flat key loop's K and V loads become reads of a staging slot
    (`attn.tile.load ... stage(%s)`) that `attn.tile.copy_kv` fills:
    with `stages=1` each tile is copied (unless EMPTY), waited for and
    computed in turn; with `stages=N` the copies of tiles t + 1 .. t + N - 1
    (asynchronous, one `attn.tile.commit_kv` group per tile, empty for an
    EMPTY tile) are in flight while tile t is computed, after a prologue
    that issues the first N - 1 tiles; `attn.tile.wait_kv {pending = N - 2}`
    waits for tile t. A prefetched tile's class comes from a copy of the
    code that classifies a tile.
  }];
  let options = [
    Option<"stages", "stages", "int64_t", "2", "staging slots, 1 to 4">,
  ];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::scf::SCFDialect"];
}

def AttnWarpSpecialize : Pass<"attn-warp-specialize", "mlir::ModuleOp"> {
  let summary = "Stage the key loop's K/V tiles from a producer warpgroup (Hopper)";
  let description = [{
    The K/V schedule of FlashAttention-3: a work item's code becomes an
    `attn.tile.warp_specialize` whose consumer region is the code as it was
    and whose producer region walks the same key tiles, copying each tile
    the consumers compute (and no other: EMPTY tiles are never copied) into
    the next of `stages` slots: `attn.tile.acquire_kv` (the slot is free),
    `attn.tile.copy_kv`. The consumers' loop counts the tiles it computes;
    tile n is in slot n mod N, fill n / N: `attn.tile.wait_kv stage round`
    before its code, `attn.tile.release_kv` after it. The producer's copy
    of the loop's bounds, the tile's span and the test that guards the
    tile's code are clones of the consumers' (pure code only; anything
    else is an error). One key loop per work item. In place of
    --attn-pipeline-kv.
  }];
  let options = [
    Option<"stages", "stages", "int64_t", "2", "staging slots, 1 to 4">,
    Option<"producerRegisters", "producer-registers", "int64_t", "0",
           "the producer's registers per thread (setmaxnreg; 0: unchanged)">,
    Option<"consumerRegisters", "consumer-registers", "int64_t", "0",
           "the consumers' registers per thread (setmaxnreg; 0: unchanged)">,
    Option<"pingpong", "pingpong", "bool", "false",
           "the consumer warpgroups take turns at the matrix units">,
  ];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::scf::SCFDialect"];
}

def AttnPersistentWorkers : Pass<"attn-persistent-workers", "mlir::ModuleOp"> {
  let summary = "Persistent, longest-first work items of warp-specialized kernels (Hopper)";
  let description = [{
    FlashAttention-3's tile scheduler on --attn-warp-specialize's work
    items: the `attn.tile.work` becomes `persistent` (one body per worker,
    as many workers as the device holds blocks at once), and the producer
    and the consumers each walk the items worker, worker + workers, ...
    (`attn.tile.work_item`: the last query tiles first, in sections of
    (b, h) pairs whose K and V fit `l2-bytes`), carrying their count of
    K/V tiles across items (tile n of the walk in slot n mod N); the q
    tile's load gets its round (the worker's how-many-th). Work items it
    does not recognize stay one per block (docs/passes.md).
  }];
  let options = [
    Option<"l2Bytes", "l2-bytes", "int64_t", "0",
           "the K/V bytes of a section of (b, h) pairs (0: one section)">,
  ];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::scf::SCFDialect",
                           "mlir::memref::MemRefDialect"];
}

def AttnOverlapSoftmax : Pass<"attn-overlap-softmax", "mlir::ModuleOp"> {
  let summary = "Each tile's softmax beside the previous tile's P V (Hopper)";
  let description = [{
    FlashAttention-3's intra-warpgroup overlap on --attn-warp-specialize's
    consumers: a computed tile issues its Q K^T and then the previous
    computed tile's P V as asynchronous products (`async` attn.tile.qk /
    pv), waits for the Q K^T alone (`attn.tile.mma_wait {pending = 1}`) and
    runs its softmax while the P V runs; the loop carries the previous
    tile's probabilities, rescale, slot and key tile, and the last tile's
    P V follows the loop. A slot is released one tile later, so it needs
    two staging slots or more. With ping-pong the consumer warpgroups'
    turns become explicit (attn.tile.take_turn / pass_turn). Loops it does
    not recognize are left as they are (docs/passes.md).
  }];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::scf::SCFDialect"];
}

def AttnOverlapBackward : Pass<"attn-overlap-backward", "mlir::ModuleOp"> {
  let summary = "The backward's dP product issued beside S, P computed while it runs (Hopper)";
  let description = [{
    In a backward kernel's tile (attn.tile.grad_scores of an S and a dP
    from attn.tile.qk, the probabilities of S between them), the dP
    product moves right after S's; both become `async`; S is waited for
    with dP in flight (`attn.tile.mma_wait {pending = 1}`), so P is
    computed beside dP on the matrix units, and dP before its first use.
    Tiles of another shape are left as they are (docs/backward.md).
  }];
}

def AttnSpecializeFullTiles : Pass<"attn-specialize-full-tiles", "mlir::ModuleOp"> {
  let summary = "A mask-free copy of the tile's code for FULL tiles inside the sequence";
  let description = [{
    Inside a key loop's EMPTY check, the tile's code is versioned on
    "the classifier says FULL and no key is past the sequence's end": that
    copy evaluates no mask (`mask_if` false) and its key span is `in_bounds`.
    For matrix-core targets, where merging masked and unmasked scores at a
    join would keep every score of the tile live across it.
  }];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::scf::SCFDialect"];
}

def ApproximateMath : Pass<"heed-approximate-math"> {
  let summary = "Rewrite math.exp/log/tanh/... into polynomial approximations";
  let description = [{
    Replaces transcendental math ops (on scalars and vectors of f32) by
    MLIR's polynomial approximations, so the CPU code stays vectorized and
    calls no libm function per element.
  }];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::math::MathDialect",
                           "mlir::vector::VectorDialect"];
}

def AttnDifferentiate : Pass<"attn-differentiate", "mlir::ModuleOp"> {
  let summary = "Derive each variant's derivative variant for the backward pass";
  let description = [{
    For every `attn.variant @v` (not itself a derivative), writes `@v_grad`
    after it: its buffers are v's, then one f32 gradient buffer `d<name>`
    (same rank and symbolic shape) per float buffer the score is
    differentiable in; attribute `derivative_of = "v"` (a name, so that it does not keep v alive) and `gradients` (the
    positions of those buffers in v). Its `score` region yields
    d score' / d score at (score, b, h, q, kv) and, for every float buffer
    element read there, states its partial derivative with
    `attn.grad_add` (lowerings scale it by dS and accumulate it). Its mask
    and route regions are v's (a mask needs no derivative).

    Derivatives are PyTorch autograd's at non-smooth points: abs'(0) = 0,
    max/min split a tie evenly, select differentiates the branch taken.
    A float buffer read by the score only through comparisons or integer
    conversions (a gradient of zero almost everywhere) and an f32 op with no
    derivative rule are compile-time errors naming the buffer or op.
    See docs/backward.md.
  }];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::math::MathDialect"];
}

#endif // HEED_TRANSFORMS_PASSES
