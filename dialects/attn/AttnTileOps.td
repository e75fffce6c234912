// The tile level of the attn dialect: the small ops `--attn-to-tile` breaks
// an `attn.attention` into. Their arrangement (loops, branches, which ops a
// schedule pass adds or duplicates) is the kernel's schedule; each target
// lowers the ops themselves through its own patterns (lib/Conversion/TileTo*).
// See docs/dialect.md, "The tile level".
#ifndef HEED_ATTN_TILE_OPS
#define HEED_ATTN_TILE_OPS

include "AttnDialect.td"
include "AttnAttrs.td"
include "AttnTypes.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/Interfaces/ControlFlowInterfaces.td"

class Attn_TileOp<string mnemonic, list<Trait> traits = []>
    : Attn_Op<"tile." # mnemonic, traits>;

//===----------------------------------------------------------------------===//
// Work and tokens
//===----------------------------------------------------------------------===//

def Attn_TileWorkOp : Attn_TileOp<"work", [SingleBlock, NoTerminator, AttrSizedOperandSegments,
    RecursiveMemoryEffects]> {
  let summary = "The work items: one per (batch, query head, query tile)";
  let description = [{
    Runs its body once per work item (b, h, t) of the grid B x H x T, in any
    order and in parallel. `range(begin, end)`, where given, restricts it to
    the flattened items [begin, end) of that grid (t fastest), for callers
    that split the work across threads. `split(phase, count) partials(acc,
    stats)` are the run-time operands of the split-KV schedule (the call's
    phase, its key ranges per work item, the workspace of partial states),
    `part_keys(n)` the keys per part (equal work across items; 0 or
    absent: each item's range in `count` equal parts): --attn-split-kv
    consumes them. The CPU runs the items as a loop;
    a GPU runs one per thread block, with t, h, b the block's x, y, z.

    ```mlir
    attn.tile.work %B, %H, %T range(%begin, %end) {
    ^bb0(%b: index, %h: index, %t: index):
      ...
    }
    ```

    With `persistent` (--attn-persistent-workers), the body runs
    once per worker instead, taking (worker, workers): a GPU launches as
    many workers as it holds blocks at once (at most one per item), the
    block's x and the grid's x, and the body walks the items itself
    (worker, worker + workers, ..., each decoded by `attn.tile.work_item`).
    No range or split then.
  }];
  let arguments = (ins Index:$batches, Index:$heads, Index:$tiles,
                       Optional<Index>:$begin, Optional<Index>:$end,
                       Optional<Index>:$split_phase, Optional<Index>:$split_count,
                       Optional<Index>:$split_part_keys,
                       Optional<MemRefRankOf<[F32], [5]>>:$partial_acc,
                       Optional<MemRefRankOf<[F32], [5]>>:$partial_stats,
                       UnitAttr:$persistent);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = [{
    $batches `,` $heads `,` $tiles (`range` `(` $begin^ `,` $end `)`)?
    (`split` `(` $split_phase^ `,` $split_count `)` `partials` `(` $partial_acc `,`
     $partial_stats `:` type($partial_acc) `,` type($partial_stats) `)`)?
    (`part_keys` `(` $split_part_keys^ `)`)? $body attr-dict
  }];
  let hasVerifier = 1;
}

def Attn_TileWorkItemOp : Attn_TileOp<"work_item", [Pure]> {
  let summary = "A persistent worker's item: (b, h, t) of item number `index`";
  let description = [{
    The items of the grid B x H x T in the order persistent workers take
    them: the (b, h) pairs (b major) in sections of `section` pairs (the
    last may be smaller), a section's items before the next's; within a
    section, the last query tile first (t = T - 1 down to 0), its pairs in
    order. Under a causal-like mask a later query tile has more keys, so
    the longest items start first and the short ones fill the workers'
    tails; a section's K/V are meant to fit the L2 cache while its items
    run (FlashAttention-3's scheduler). `section` 0 counts as 1.

    ```mlir
    %b, %h, %t = attn.tile.work_item %i of %B, %H, %T section(%pairs)
    ```
  }];
  let arguments = (ins Index:$index, Index:$batches, Index:$heads, Index:$tiles, Index:$section);
  let results = (outs Index:$batch, Index:$head, Index:$tile);
  let assemblyFormat = [{
    $index `of` $batches `,` $heads `,` $tiles `section` `(` $section `)` attr-dict
  }];
}

def Attn_TileSpanOp : Attn_TileOp<"span", [Pure]> {
  let summary = "The tokens of a tile of a sequence under a tiling";
  let description = [{
    The tile of `side` (its rows, or its keys) of a sequence of `seq` tokens
    under `tiling`: with one coordinate, the tile's number; with one per
    grid dim, its patch coordinates (patch-tiled key walks). Lanes past the
    sequence or past the grid's edges are holes.

    ```mlir
    %rows = attn.tile.span %Sq [%t] tiling #attn.tiling<q = [16], kv = [16]> side <q> : !attn.span<16>
    ```
  }];
  let arguments = (ins Index:$seq, Variadic<Index>:$coords, Attn_TilingAttr:$tiling,
                       Attn_SideAttr:$side, UnitAttr:$in_bounds);
  let results = (outs Attn_SpanType:$result);
  let assemblyFormat = [{
    $seq `[` $coords `]` `tiling` $tiling `side` $side (`in_bounds` $in_bounds^)? attr-dict
    `:` type($result)
  }];
  let hasVerifier = 1;
}

def Attn_TilePackedSpanOp : Attn_TileOp<"packed_span", [Pure]> {
  let summary = "The rows of a query tile that packs the query heads of a GQA group";
  let description = [{
    Written by --attn-pack-gqa. The `group` query heads that share one
    key/value head are laid end to end: virtual row `v = g * seq + q` is
    query `q` of head `g` of the group, and tile `tile` holds virtual rows
    [tile * N, tile * N + N) of `group * seq`. Each lane's token is its `q`
    and it carries its head's offset `g` in the group, so one tile reads the
    group's key/value tiles once for all its heads (decode: Sq = 1 and a
    group of 4 is one tile of 4 rows). The work item's head is the group's
    first query head.

    ```mlir
    %rows = attn.tile.packed_span %Sq group %g [%t] tiling #attn.tiling<q = [16], kv = [16]> : !attn.span<16>
    ```
  }];
  let arguments = (ins Index:$seq, Index:$group, Index:$tile, Attn_TilingAttr:$tiling);
  let results = (outs Attn_SpanType:$result);
  let assemblyFormat = [{
    $seq `group` $group `[` $tile `]` `tiling` $tiling attr-dict `:` type($result)
  }];
}

def Attn_TileRoutedSpanOp : Attn_TileOp<"routed_span", [Pure]> {
  let summary = "The query rows of a gated head's tile, read from its routed-row list";
  let description = [{
    Lane i (i < `lanes`) is the query row `rows[offset + i]`; lanes past
    `lanes` are holes. The first `routed` lanes are the head's routed rows
    (ascending); the box of the span (`attn.tile.span_box`) is theirs.
  }];
  let arguments = (ins MemRefRankOf<[I32], [1]>:$rows, Index:$offset, Index:$lanes,
                       Index:$routed);
  let results = (outs Attn_SpanType:$result);
  let assemblyFormat = [{
    $rows `[` $offset `]` `lanes` `(` $lanes `)` `routed` `(` $routed `)` attr-dict
    `:` type($rows) `->` type($result)
  }];
}

def Attn_TileSpanBoxOp : Attn_TileOp<"span_box", [Pure]> {
  let summary = "The first and last token a span's box covers";
  let description = [{
    Tokens `lo` and `hi` such that every real lane's token lies in the box
    they span: the interval [lo, hi] for flat tiles and routed rows, the
    Cartesian box of grid points with corners lo and hi for patches. What
    the classifier (`blocks` region) is asked about.
  }];
  let arguments = (ins Attn_SpanType:$span);
  let results = (outs Index:$lo, Index:$hi);
  let assemblyFormat = "$span attr-dict `:` type($span)";
}

//===----------------------------------------------------------------------===//
// Tiles
//===----------------------------------------------------------------------===//

def Attn_TileLoadOp : Attn_TileOp<"load", [AttrSizedOperandSegments,
    DeclareOpInterfaceMethods<MemoryEffectsOpInterface>]> {
  let summary = "A q, k or v tile: the rows of a span, for one batch and head";
  let description = [{
    Rows `span` of `tensor[batch, head]` (in `layout`); holes read as zeros.
    The role of the result says which operand it is. With `stage(%s)`, the
    tile is the one `attn.tile.copy_kv` put in staging slot %s (after an
    `attn.tile.wait_kv`), not a new read of the tensor. With `pages(%table)`
    (k and v only), `tensor` is a paged cache: token t of `batch` is slot
    t % P of page %table[batch, t / P], P the tensor's static sequence dim.
    A slot holds two tensors' rows (`--attn-pipeline-kv`): `part` says which
    (0: the key-side tensor of head dim D, 1: the value-side one of Dv).
    With `round(%j)` (q tiles of a persistent worker, --attn-persistent-workers),
    the load is the worker's j-th into the same q buffer: a
    target that loads q asynchronously waits for phase j of its barrier and
    lets the load start only once the previous q tile's readers are done.

    ```mlir
    %q = attn.tile.load %Q[%b, %h] span(%rows) : memref<?x?x?x64xbf16> -> !attn.tile<16x64xbf16, q>
    ```
  }];
  let arguments = (ins AnyMemRef:$tensor, Index:$batch, Index:$head, Attn_SpanType:$span,
                       Optional<Index>:$stage,
                       Optional<MemRefRankOf<[I32], [2]>>:$page_table,
                       DefaultValuedAttr<Attn_LayoutAttr, "::heed::attn::Layout::BHSD">:$layout,
                       DefaultValuedAttr<I64Attr, "0">:$part,
                       Optional<Index>:$round);
  let results = (outs Attn_AnyTile:$result);
  let assemblyFormat = [{
    $tensor `[` $batch `,` $head `]` `span` `(` $span `)` (`stage` `(` $stage^ `)`)?
    (`round` `(` $round^ `)`)?
    (`pages` `(` $page_table^ `:` type($page_table) `)`)? attr-dict
    `:` type($tensor) `,` type($span) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Attn_TileFillOp : Attn_TileOp<"fill", [Pure]> {
  let summary = "A tile with every element `value`";
  let arguments = (ins F32Attr:$value);
  let results = (outs Attn_AnyTile:$result);
  let assemblyFormat = "$value attr-dict `:` type($result)";
}

def Attn_TileQKOp : Attn_TileOp<"qk", [
    DeclareOpInterfaceMethods<MemoryEffectsOpInterface>,
    DeclareOpInterfaceMethods<ConditionallySpeculatable>]> {
  let summary = "Scores S = scale * Q K^T";
  let description = [{
    With `async` (--attn-overlap-softmax), the product may still run when
    the op returns: its result may be used only by an `attn.tile.mma_wait`,
    which returns it complete (and scaled). Targets whose products are
    synchronous treat `async` as absent.
  }];
  let arguments = (ins Attn_TileOf<"Q">:$q, Attn_TileOf<"K">:$k, F32Attr:$scale,
                       UnitAttr:$async);
  let results = (outs Attn_TileOf<"S">:$result);
  let assemblyFormat = [{
    $q `,` $k attr-dict `:` type($q) `,` type($k) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Attn_TileApplyOp : Attn_TileOp<"apply", [
    AttrSizedOperandSegments, AllTypesMatch<["scores", "result"]>,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>,
    DeclareOpInterfaceMethods<MemoryEffectsOpInterface>]> {
  let summary = "The variant's score modifier and mask on every element of a score tile";
  let description = [{
    Element (i, j) becomes score(s, b, h, q_i, kv_j) where mask(b, h, q_i,
    kv_j) holds, -inf where it does not or where row i or key j is a hole.
    With `mask_if(%p)`, the mask is evaluated only when %p is true (a FULL
    tile passes false: every pair is visible). Buffer reads are
    bounds-checked (`attn.load`): out of range gives 0 and records the
    buffer's 1-based number in `status`. `route` is the head's route value
    (routed variants).

    ```mlir
    %s2 = attn.tile.apply @causal(%s) [%b, %h] rows(%rows) cols(%keys) mask_if(%partial)
        : !attn.tile<16x16xf32, s>, !attn.span<16>, !attn.span<16>
    ```
  }];
  let arguments = (ins FlatSymbolRefAttr:$variant, Attn_TileOf<"S">:$scores, Index:$batch,
                       Index:$head, Attn_SpanType:$rows, Attn_SpanType:$cols,
                       Variadic<AnyMemRef>:$buffers, Optional<I64>:$route,
                       Optional<MemRefOf<[I32]>>:$status, Optional<I1>:$maskIf);
  let results = (outs Attn_TileOf<"S">:$result);
  let assemblyFormat = [{
    $variant `(` $scores `)` `[` $batch `,` $head `]` `rows` `(` $rows `)` `cols` `(` $cols `)`
    (`buffers` `(` $buffers^ `:` type($buffers) `)`)? (`route` `(` $route^ `)`)?
    (`status` `(` $status^ `:` type($status) `)`)? (`mask_if` `(` $maskIf^ `)`)?
    attr-dict `:` type($scores) `,` type($rows) `,` type($cols)
  }];
}

def Attn_TileSoftmaxOp : Attn_TileOp<"softmax", [Pure, AllTypesMatch<["scores", "probs"]>,
    AllTypesMatch<["max", "sum", "newMax", "newSum", "alpha"]>]> {
  let summary = "One step of the online softmax over a score tile";
  let description = [{
    With the running max `m` and sum `l` of each row:
    m' = max(m, max_j s[., j]); alpha = exp(m - m'); p = exp(s - m');
    l' = l * alpha + sum_j p[., j]. While m' is -inf (nothing visible yet)
    the exponents are taken against 0, so alpha = p = 0, never NaN.
  }];
  let arguments = (ins Attn_TileOf<"S">:$scores, Attn_TileOf<"Row">:$max,
                       Attn_TileOf<"Row">:$sum);
  let results = (outs Attn_TileOf<"Row">:$newMax, Attn_TileOf<"Row">:$newSum,
                      Attn_TileOf<"S">:$probs, Attn_TileOf<"Row">:$alpha);
  let assemblyFormat = [{
    $scores `,` $max `,` $sum attr-dict `:` type($scores) `,` type($max)
  }];
}

def Attn_TilePVOp : Attn_TileOp<"pv", [AttrSizedOperandSegments,
    AllTypesMatch<["acc", "result"]>,
    DeclareOpInterfaceMethods<MemoryEffectsOpInterface>,
    DeclareOpInterfaceMethods<ConditionallySpeculatable>]> {
  let summary = "acc' = acc * alpha (per row) + P V";
  let description = [{
    Lowered in place on targets whose accumulators live in memory: `acc`
    must not be used after this op (attn-to-tile's loops only carry it).
    Without `alpha` (sigmoid: weights are not rescaled), acc' = acc + P V.
    With `rows(%span)`, only the rows that are real lanes of the span matter
    (the others are never stored): a target may skip them. With `async`
    (--attn-overlap-softmax), the product may still run when the op
    returns: the result may be used only by an `attn.tile.mma_wait`. `probs`
    is f32, or already in a 16-bit type (`attn.tile.convert`): the product
    takes P in V's type either way.
  }];
  let arguments = (ins Attn_ProbsTile:$probs, Attn_TileOf<"V">:$v,
                       Attn_TileOf<"Acc">:$acc, Optional<Attn_TileOf<"Row">>:$alpha,
                       Optional<Attn_SpanType>:$rows, UnitAttr:$async);
  let results = (outs Attn_TileOf<"Acc">:$result);
  let assemblyFormat = [{
    $probs `,` $v `,` $acc (`,` $alpha^)? (`rows` `(` $rows^ `:` type($rows) `)`)? attr-dict `:`
    type($probs) `,` type($v) `,` type($acc) (`,` type($alpha)^)?
  }];
  let hasVerifier = 1;
}

def Attn_TileConvertOp : Attn_TileOp<"convert", [Pure]> {
  let summary = "The tile's elements in another float type";
  let description = [{
    An s tile of probabilities rounded (to nearest even) to f16 or bf16, or
    back to f32; same shape and role. `--attn-overlap-softmax` carries the
    previous tile's P from one key tile to the next in V's type, as the
    product reads it: half the registers of f32 P, the same rounded values.
    Lowered by the matrix-core targets (NVIDIA, Hopper, AMD).
  }];
  let arguments = (ins Attn_ProbsTile:$source);
  let results = (outs Attn_ProbsTile:$result);
  let assemblyFormat = "$source attr-dict `:` type($source) `to` type($result)";
  let hasVerifier = 1;
}

def Attn_TileMMAWaitOp : Attn_TileOp<"mma_wait", [
    DeclareOpInterfaceMethods<MemoryEffectsOpInterface>]> {
  let summary = "Waits for the asynchronous products but the `pending` newest";
  let description = [{
    The `async` `attn.tile.qk` / `attn.tile.pv` issued by this thread's
    warpgroup complete in order; after this op every one of them but the
    `pending` newest has, and `results` are `tiles` (results of such
    products, now complete) to be used in their place (wgmma.wait_group on
    Hopper; nothing on targets whose products are synchronous). Written by
    --attn-overlap-softmax.

    ```mlir
    %s = attn.tile.qk %q, %k {async, scale = 0.125 : f32} : ...
    %o = attn.tile.pv %p, %v, %acc, %alpha {async} : ...
    %s2 = attn.tile.mma_wait %s {pending = 1 : i64} : !attn.tile<64x128xf32, s> -> !attn.tile<64x128xf32, s>
    ```
  }];
  let arguments = (ins Variadic<Attn_AnyTile>:$tiles, I64Attr:$pending);
  let results = (outs Variadic<Attn_AnyTile>:$results);
  let assemblyFormat = "$tiles attr-dict `:` type($tiles) `->` type($results)";
  let hasVerifier = 1;
}

def Attn_TileTakeTurnOp : Attn_TileOp<"take_turn"> {
  let summary = "Ping-pong: waits for this consumer warpgroup's turn at the matrix units";
  let description = [{
    In the consumer region of an `attn.tile.warp_specialize {pingpong}`
    whose products --attn-overlap-softmax made asynchronous, the turns are
    explicit: a warpgroup takes its turn before it issues its products and
    passes it (`attn.tile.pass_turn`) once they are issued, so that one
    warpgroup's softmax runs beside the other's products. Nothing without
    ping-pong.
  }];
  let assemblyFormat = "attr-dict";
}

def Attn_TilePassTurnOp : Attn_TileOp<"pass_turn"> {
  let summary = "Ping-pong: hands the matrix units to the next consumer warpgroup";
  let description = [{ See `attn.tile.take_turn`. }];
  let assemblyFormat = "attr-dict";
}

def Attn_TileSigmoidOp : Attn_TileOp<"sigmoid", [Pure, AllTypesMatch<["scores", "probs"]>]> {
  let summary = "Sigmoid weights of a score tile: p = 1 / (1 + exp(-(s + bias)))";
  let description = [{
    The weights of a sigmoid variant (FlashSigmoid), element by element: no
    row statistics, so the key loop carries only the accumulator and
    `attn.tile.pv` takes no rescale. A masked score (-inf) gives 0.

    ```mlir
    %p = attn.tile.sigmoid %s bias -2.0 : !attn.tile<16x16xf32, s>
    ```
  }];
  let arguments = (ins Attn_TileOf<"S">:$scores, F32Attr:$bias);
  let results = (outs Attn_TileOf<"S">:$probs);
  let assemblyFormat = "$scores `bias` $bias attr-dict `:` type($scores)";
}

def Attn_TileStoreOp : Attn_TileOp<"store", [AttrSizedOperandSegments,
    DeclareOpInterfaceMethods<MemoryEffectsOpInterface>]> {
  let summary = "Normalize and write the output rows (and lse) of a tile";
  let description = [{
    Row i of `span`: out[batch, head, q_i] = acc[i] / l[i] (0 where l = 0:
    every key masked), lse[batch, head, q_i] = m[i] + log l[i] (-inf there).
    With `sink(%x)`, the sink logit x joins the denominator: with
    m* = max(m, x), out = acc e^(m - m*) / (l e^(m - m*) + e^(x - m*)) and
    lse = m* + log(l e^(m - m*) + e^(x - m*)) (x for a fully masked row).
    `lane_sinks(%xs)` is the same with a logit per row (a packed GQA tile's
    heads: `attn.tile.lane_sinks`).
    With `normalize <sigmoid>`, the row is not normalized: out = acc (max
    and sum are not read) and lse, where given, is NaN.
    With `gate(buffer)`, the row is scaled by the gate read at
    (b, q_i, h) in the buffer's dims `gate_dims`; a 0 gate gives lse -inf.
    Holes are not written.
  }];
  let arguments = (ins Attn_TileOf<"Acc">:$acc, Attn_TileOf<"Row">:$max,
                       Attn_TileOf<"Row">:$sum, AnyMemRef:$out, Index:$batch, Index:$head,
                       Attn_SpanType:$span, Optional<AnyMemRef>:$lse,
                       Optional<AnyMemRef>:$gate, Optional<F32>:$sink,
                       Optional<Attn_TileOf<"Row">>:$lane_sinks,
                       OptionalAttr<DenseI64ArrayAttr>:$gate_dims,
                       OptionalAttr<Attn_NormalizationAttr>:$normalize,
                       DefaultValuedAttr<Attn_LayoutAttr, "::heed::attn::Layout::BHSD">:$layout);
  let assemblyFormat = [{
    $acc `,` $max `,` $sum `to` $out `[` $batch `,` $head `]` `span` `(` $span `)`
    (`lse` `(` $lse^ `:` type($lse) `)`)? (`gate` `(` $gate^ `:` type($gate) `)`)?
    (`sink` `(` $sink^ `)`)? (`lane_sinks` `(` $lane_sinks^ `:` type($lane_sinks) `)`)?
    (`normalize` $normalize^)? attr-dict `:` type($acc) `,` type($max) `,` type($sum) `,` type($out) `,` type($span)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    bool isSigmoid() {
      return getNormalize() == ::heed::attn::Normalization::Sigmoid;
    }
  }];
}

def Attn_TileStorePartialOp : Attn_TileOp<"store_partial", [
    DeclareOpInterfaceMethods<MemoryEffectsOpInterface>]> {
  let summary = "Write a split's online-softmax state of a tile's rows (split-KV)";
  let description = [{
    Written by --attn-split-kv in place of `attn.tile.store` in the partial
    phase: row i of `span` (query token q_i, head `head` plus the lane's
    head offset) writes its unnormalized accumulator to
    `partial_acc[split, batch, head_i, q_i, :]` and its running max and sum
    to `partial_stats[split, batch, head_i, q_i, 0 and 1]`
    ([splits, B, Hq, Sq, Dv] and [splits, B, Hq, Sq, 2], f32). Holes are
    not written.
  }];
  let arguments = (ins Attn_TileOf<"Acc">:$acc, Attn_TileOf<"Row">:$max,
                       Attn_TileOf<"Row">:$sum, MemRefRankOf<[F32], [5]>:$partial_acc,
                       MemRefRankOf<[F32], [5]>:$partial_stats, Index:$split, Index:$batch,
                       Index:$head, Attn_SpanType:$span);
  let assemblyFormat = [{
    $acc `,` $max `,` $sum `to` $partial_acc `,` $partial_stats `[` $split `,` $batch `,`
    $head `]` `span` `(` $span `)` attr-dict `:` type($acc) `,` type($max) `,` type($sum) `,`
    type($partial_acc) `,` type($partial_stats) `,` type($span)
  }];
}

def Attn_TileMergePartialsOp : Attn_TileOp<"merge_partials", [
    DeclareOpInterfaceMethods<MemoryEffectsOpInterface>]> {
  let summary = "The state of a tile's rows merged from its splits' partial states";
  let description = [{
    Written by --attn-split-kv in the merge phase: for each row of `span`,
    the states `attn.tile.store_partial` wrote for splits 0 .. count - 1
    merged as one online-softmax step each (max m = max of the maxes, sum
    and accumulator rescaled by e^(m_s - m)); with `sigmoid`, the
    accumulators summed (max and sum are -inf and 0). The result feeds
    `attn.tile.store`, which normalizes as if one key loop had run. Holes
    give the empty state.
  }];
  let arguments = (ins MemRefRankOf<[F32], [5]>:$partial_acc,
                       MemRefRankOf<[F32], [5]>:$partial_stats, Index:$count, Index:$batch,
                       Index:$head, Attn_SpanType:$span, UnitAttr:$sigmoid);
  let results = (outs Attn_TileOf<"Acc">:$acc, Attn_TileOf<"Row">:$max,
                      Attn_TileOf<"Row">:$sum);
  let assemblyFormat = [{
    $partial_acc `,` $partial_stats `[` $batch `,` $head `]` `splits` `(` $count `)` `span`
    `(` $span `)` attr-dict `:` type($partial_acc) `,` type($partial_stats) `,` type($span)
    `->` type($acc) `,` type($max) `,` type($sum)
  }];
}

def Attn_TileCopyKVOp : Attn_TileOp<"copy_kv", [
    DeclareOpInterfaceMethods<MemoryEffectsOpInterface>]> {
  let summary = "Stages the K and V rows of a key span in a slot of workgroup memory";
  let description = [{
    Copies rows `span` of `key[batch, head]` and `value[batch, head]` into
    staging slot `stage` (of `stages`), where `attn.tile.load ... stage(%s)`
    reads them once an `attn.tile.wait_kv` has completed the copy. With
    `pages(%table)` key and value are a paged cache: key token t of entry
    `batch` is slot t % P of page table[batch, t / P] (P, the page size, the
    caches' static sequence dim). With
    `async`, the copy may still run when the op returns (cp.async on NVIDIA)
    and belongs to the group the next `attn.tile.commit_kv` closes;
    otherwise it is done when every thread has passed the next wait.
    Written by --attn-pipeline-kv.
  }];
  let arguments = (ins AnyMemRef:$key, AnyMemRef:$value, Index:$batch, Index:$head,
                       Attn_SpanType:$span, Index:$stage,
                       Optional<MemRefRankOf<[I32], [2]>>:$page_table, I64Attr:$stages,
                       UnitAttr:$async,
                       DefaultValuedAttr<Attn_LayoutAttr, "::heed::attn::Layout::BHSD">:$layout);
  let assemblyFormat = [{
    $key `,` $value `[` $batch `,` $head `]` `span` `(` $span `)` `stage` `(` $stage `)`
    (`pages` `(` $page_table^ `:` type($page_table) `)`)?
    `of` $stages (`async` $async^)? attr-dict `:` type($key) `,` type($value) `,` type($span)
  }];
}

def Attn_TileCommitKVOp : Attn_TileOp<"commit_kv"> {
  let summary = "Closes a group of K/V copies (possibly empty)";
  let description = [{
    The `attn.tile.copy_kv` ops issued since the previous commit form one
    group, which `attn.tile.wait_kv {pending = n}` counts. A pipeline commits
    once per tile it prefetches, copies or not (an EMPTY tile gives an empty
    group), so that "the n newest groups may be in flight" always means "the
    tile to compute has arrived" (cp.async.commit_group on NVIDIA).
  }];
  let assemblyFormat = "attr-dict";
}

def Attn_TileWaitKVOp : Attn_TileOp<"wait_kv", [AttrSizedOperandSegments]> {
  let summary = "Waits for K/V copies, then for every thread of the work item";
  let description = [{
    After it, the slots filled by the copies of every group but the
    `pending` newest hold their rows for every thread (cp.async.wait_group
    `pending` and a workgroup barrier on GPUs).

    With `stage(%s) round(%r)` (a warp-specialized loop,
    --attn-warp-specialize): after it, slot `s` holds its `r`-th fill (the
    producer's copy has landed); no barrier between the consumer threads.
    With `part`, only that tensor of the fill (0: the slot's first, K in the
    forward; 1: the other, V), so that Q K^T need not wait for V.
  }];
  let arguments = (ins DefaultValuedAttr<I64Attr, "0">:$pending, Optional<Index>:$stage,
                       Optional<Index>:$round, OptionalAttr<I64Attr>:$part);
  let assemblyFormat = "(`stage` `(` $stage^ `)` `round` `(` $round `)`)? attr-dict";
  let hasVerifier = 1;
}

def Attn_TileWarpSpecializeOp : Attn_TileOp<"warp_specialize", [SingleBlock, NoTerminator,
    RecursiveMemoryEffects]> {
  let summary = "A work item's code split between a producer and consumer warps";
  let description = [{
    The `producer` region runs on one extra warpgroup of the block (one of
    its threads: it issues copies), the `consumer` region on the warps that
    own the query rows. They meet only at the K/V staging slots: the
    producer `attn.tile.acquire_kv`s a slot and `attn.tile.copy_kv`s a tile
    into it, the consumers `attn.tile.wait_kv stage(..) round(..)` for it
    and `attn.tile.release_kv` it once read. `producer_registers` /
    `consumer_registers` (0: unchanged) are the per-thread register budgets
    each side moves to at its start (setmaxnreg on Hopper). With
    `pingpong`, the consumer warpgroups take turns at the matrix units: one
    issues its products (this tile's P V, the next tile's Q K^T) while the
    others compute their softmax (FlashAttention-3's ping-pong schedule).
    Written by --attn-warp-specialize.

    ```mlir
    attn.tile.warp_specialize producer {
      // the key loop's tiles: acquire a slot, copy into it
    } consumer {
      // the work item's code: wait for a slot, compute, release it
    } {producer_registers = 24 : i64, consumer_registers = 240 : i64, pingpong}
    ```
  }];
  let arguments = (ins DefaultValuedAttr<I64Attr, "0">:$producer_registers,
                       DefaultValuedAttr<I64Attr, "0">:$consumer_registers,
                       UnitAttr:$pingpong);
  let regions = (region SizedRegion<1>:$producer, SizedRegion<1>:$consumer);
  let assemblyFormat = "`producer` $producer `consumer` $consumer attr-dict";
}

def Attn_TileAcquireKVOp : Attn_TileOp<"acquire_kv"> {
  let summary = "The producer waits until a staging slot is free for a fill";
  let description = [{
    Returns once staging slot `stage` may take its `round`-th fill (0, 1,
    ...): at once for round 0, otherwise once every consumer thread has
    `attn.tile.release_kv`d the slot's previous fill.
  }];
  let arguments = (ins Index:$stage, Index:$round);
  let assemblyFormat = "`stage` `(` $stage `)` `round` `(` $round `)` attr-dict";
}

def Attn_TileReleaseKVOp : Attn_TileOp<"release_kv"> {
  let summary = "A consumer thread is done with a staging slot's tiles";
  let description = [{
    Once every consumer thread has released the slot, the producer's
    `attn.tile.acquire_kv` of its next round returns.
  }];
  let arguments = (ins Index:$stage);
  let assemblyFormat = "`stage` `(` $stage `)` attr-dict";
}

def Attn_TileBarrierOp : Attn_TileOp<"barrier"> {
  let summary = "Every thread of the work item reaches this point before any goes on";
  let description = [{
    A workgroup barrier on GPUs (staging buffers are reused: the query
    tile's staging and the key slots may share memory), nothing on the CPU.
  }];
  let assemblyFormat = "attr-dict";
}

//===----------------------------------------------------------------------===//
// Block skipping, routing, statistics
//===----------------------------------------------------------------------===//

def Attn_TileClassifyOp : Attn_TileOp<"classify", [AttrSizedOperandSegments,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>,
    DeclareOpInterfaceMethods<MemoryEffectsOpInterface>]> {
  let summary = "The variant's block class (0 EMPTY, 1 PARTIAL, 2 FULL) of a box";
  let description = [{
    Runs the variant's `blocks` region (from --attn-analyze-mask) on the box
    [qLo, qHi] x [kvLo, kvHi] of batch b and query head h.
  }];
  let arguments = (ins FlatSymbolRefAttr:$variant, Index:$batch, Index:$head, Index:$qLo,
                       Index:$qHi, Index:$kvLo, Index:$kvHi, Variadic<AnyMemRef>:$buffers,
                       Variadic<AnyMemRef>:$summaries, Optional<I64>:$route);
  let results = (outs I8:$result);
  let assemblyFormat = [{
    $variant `[` $batch `,` $head `]` `box` `(` $qLo `,` $qHi `,` $kvLo `,` $kvHi `)`
    (`buffers` `(` $buffers^ `:` type($buffers) `)`)?
    (`summaries` `(` $summaries^ `:` type($summaries) `)`)? (`route` `(` $route^ `)`)?
    attr-dict
  }];
}

def Attn_TileKVRangeOp : Attn_TileOp<"kv_range", [AttrSizedOperandSegments,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>,
    DeclareOpInterfaceMethods<MemoryEffectsOpInterface>]> {
  let summary = "The key tiles a query box may see, along one dim of the key tiling";
  let description = [{
    The first and one-past-the-last tile coordinate along `dim` of the key
    tiling whose boxes the classifier cannot prove EMPTY for the query box
    [qLo, qHi], the coordinates of the outer dims fixed to `outer` and the
    inner dims whole. Both ends are found by binary search: a box that is
    EMPTY stays EMPTY when it shrinks. For flat tiles (dim 0, no outer
    coordinates) it is the range of key tiles.
  }];
  let arguments = (ins FlatSymbolRefAttr:$variant, Index:$batch, Index:$head, Index:$qLo,
                       Index:$qHi, Index:$seq, Variadic<Index>:$outer,
                       Variadic<AnyMemRef>:$buffers, Variadic<AnyMemRef>:$summaries,
                       Optional<I64>:$route, Attn_TilingAttr:$tiling, I64Attr:$dim);
  let results = (outs Index:$first, Index:$end);
  let assemblyFormat = [{
    $variant `[` $batch `,` $head `]` `rows` `(` $qLo `,` $qHi `)` `of` $seq
    `outer` `[` $outer `]` (`buffers` `(` $buffers^ `:` type($buffers) `)`)?
    (`summaries` `(` $summaries^ `:` type($summaries) `)`)? (`route` `(` $route^ `)`)?
    `tiling` $tiling `dim` $dim attr-dict
  }];
  let hasVerifier = 1;
}

def Attn_TileRouteOp : Attn_TileOp<"route", [AttrSizedOperandSegments,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>,
    DeclareOpInterfaceMethods<MemoryEffectsOpInterface>]> {
  let summary = "The route value of head (b, h): the variant's `route` region";
  let description = [{
    Buffer reads out of range give 0 and record the buffer's number in
    `status`, as in attn.tile.apply.
  }];
  let arguments = (ins FlatSymbolRefAttr:$variant, Index:$batch, Index:$head,
                       Variadic<AnyMemRef>:$buffers, Optional<MemRefOf<[I32]>>:$status);
  let results = (outs I64:$result);
  let assemblyFormat = [{
    $variant `[` $batch `,` $head `]` (`buffers` `(` $buffers^ `:` type($buffers) `)`)?
    (`status` `(` $status^ `:` type($status) `)`)? attr-dict
  }];
}

def Attn_TileSinkOp : Attn_TileOp<"sink", [AttrSizedOperandSegments,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>,
    DeclareOpInterfaceMethods<MemoryEffectsOpInterface>]> {
  let summary = "The sink logit of head (b, h): the variant's `sink` region";
  let description = [{
    What `attn.tile.store ... sink(%x)` adds to the softmax denominator.
    Buffer reads out of range give 0 and record the buffer's number in
    `status`, as in attn.tile.apply.
  }];
  let arguments = (ins FlatSymbolRefAttr:$variant, Index:$batch, Index:$head,
                       Variadic<AnyMemRef>:$buffers, Optional<MemRefOf<[I32]>>:$status);
  let results = (outs F32:$result);
  let assemblyFormat = [{
    $variant `[` $batch `,` $head `]` (`buffers` `(` $buffers^ `:` type($buffers) `)`)?
    (`status` `(` $status^ `:` type($status) `)`)? attr-dict
  }];
}

def Attn_TileLaneSinksOp : Attn_TileOp<"lane_sinks", [AttrSizedOperandSegments,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>,
    DeclareOpInterfaceMethods<MemoryEffectsOpInterface>]> {
  let summary = "The sink logit of each row's head: a packed GQA tile's per-lane sinks";
  let description = [{
    `attn.tile.sink` for a query tile whose rows belong to several heads
    (`attn.tile.packed_span`, --attn-pack-gqa): lane i gets the variant's
    `sink` region on (b, h + the lane's head offset). Feeds
    `attn.tile.store ... lane_sinks(%x)`. Holes get 0.
  }];
  let arguments = (ins FlatSymbolRefAttr:$variant, Index:$batch, Index:$head,
                       Attn_SpanType:$rows, Variadic<AnyMemRef>:$buffers,
                       Optional<MemRefOf<[I32]>>:$status);
  let results = (outs Attn_TileOf<"Row">:$result);
  let assemblyFormat = [{
    $variant `[` $batch `,` $head `]` `rows` `(` $rows `)`
    (`buffers` `(` $buffers^ `:` type($buffers) `)`)?
    (`status` `(` $status^ `:` type($status) `)`)? attr-dict `:` type($rows) `->` type($result)
  }];
}

def Attn_TileBindShapesOp : Attn_TileOp<"bind_shapes", [
    DeclareOpInterfaceMethods<MemoryEffectsOpInterface>]> {
  let summary = "The run-time sizes the variant's attn.shape ops read below it";
  let description = [{
    Emitted by --attn-to-tile before the work loop when the variant reads
    run-time sizes: the batch count, query heads, key/value heads and the
    query and key lengths, each read from the attention's operands. Where a
    target inlines a variant region, an `attn.shape` becomes the operand
    of the nearest enclosing binding; the target pass erases the binding
    afterwards. It has an effect only so that nothing removes it before then.
  }];
  let arguments = (ins Index:$batches, Index:$heads, Index:$headsKV, Index:$seqQ,
                       Index:$seqKV);
  let assemblyFormat = [{
    `B` `=` $batches `,` `H` `=` $heads `,` `Hkv` `=` $headsKV `,` `Sq` `=` $seqQ `,`
    `Skv` `=` $seqKV attr-dict
  }];
}

def Attn_TileCountOp : Attn_TileOp<"count", [
    DeclareOpInterfaceMethods<MemoryEffectsOpInterface>]> {
  let summary = "Counts a visited key tile in the statistics";
  let description = [{
    stats[0] += 1 (visited); stats[1] += 1 if `class` is FULL; stats[2] += 1
    if it is PARTIAL.
  }];
  let arguments = (ins MemRefOf<[I64]>:$stats, I8:$blockClass);
  let assemblyFormat = "$stats `class` `(` $blockClass `)` attr-dict `:` type($stats)";
}

//===----------------------------------------------------------------------===//
// The backward pass (docs/backward.md)
//===----------------------------------------------------------------------===//

def Attn_GradAddOp : Attn_Op<"grad_add", [
    DeclareOpInterfaceMethods<MemoryEffectsOpInterface>]> {
  let summary = "A buffer element's share of the gradient, in a derivative score region";
  let description = [{
    Inside the score region of a derivative variant (written by
    `--attn-differentiate`): the partial derivative `value` of the modified
    score with respect to the buffer element read at `indices`. Lowerings
    add dS * value to `gradient[indices]`, where dS is the gradient of the
    loss with respect to the modified score of the (b, h, q, kv) element
    the region is evaluated for, and reduce the contributions of different
    work items deterministically. Indices out of range add nothing (the
    forward read 0 there).

    ```mlir
    attn.grad_add %one to %dtable[%h, %col] : f32, memref<?x33xf32>
    ```
  }];
  let arguments = (ins F32:$value, AnyMemRef:$gradient, Variadic<Index>:$indices);
  let assemblyFormat = [{
    $value `to` $gradient `[` $indices `]` attr-dict `:` type($value) `,` type($gradient)
  }];
  let hasVerifier = 1;
}

def Attn_AttentionBackwardOp : Attn_Op<"attention_backward", [AttrSizedOperandSegments,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>,
    DeclareOpInterfaceMethods<MemoryEffectsOpInterface>]> {
  let summary = "The gradients of an attn.attention: dq, dk, dv and the buffers'";
  let description = [{
    FlashAttention-2's backward of `attn.attention @variant` (same q, k, v,
    buffers, scale, layout): given the forward's `lse` [B, Hq, Sq] and
    `delta` = rowsum(dout * out) [B, Hq, Sq] (both f32), writes dk and dv
    (shaped and laid out like k and v; the sums over the query heads of a
    GQA group), adds the rows of dq into `dq` (f32, [B, Hq, Sq, D] in
    `layout`, accumulated, not overwritten, so that callers that split the
    work give each part its own and reduce them in a fixed order), and adds
    dS * d score'/d buffer into `gradients` (f32, shaped like the float
    buffers the derivative variant `@<variant>_grad` lists in `gradients`).
    `work(begin, end)` restricts it to the items [begin, end) of the
    (batch, kv head, key tile) grid. `stats` counts the (query tile, key
    tile) blocks visited, as attn.attention's does. With `out` (the
    forward's output), `delta` is not an input but computed from out and
    dout and written (the GPUs' dQ kernel does, for the dK/dV kernel after
    it; docs/backward.md, "GPU kernels").

    Entries of different lengths (docs/backward.md, "Ragged batches"), as
    attn.attention takes them: `kv_lens` / `q_lens` (i32 [B]) give entry
    b's keys / queries within the tensors' lengths (capacities); with
    `cu_seqlens_q` (i32 [B+1]) query, dout, out, lse, delta and dq hold
    the entries' rows end to end (entry b's are [cu[b], cu[b+1]); the
    caller passes them as [B, longest, ...] views of batch stride 0), with
    `cu_seqlens_kv` key, value, dk and dv likewise. The variant's `Sq` and
    `Skv` are the entry's. Rows past an entry's length are neither read nor
    written (dk and dv there keep what they held; dq gets nothing added).
    `cu_seqlens_q` excludes `q_lens`, `cu_seqlens_kv` `kv_lens`.
  }];
  let arguments = (ins FlatSymbolRefAttr:$variant,
                       AnyMemRef:$query, AnyMemRef:$key, AnyMemRef:$value, AnyMemRef:$dout,
                       Optional<MemRefRankOf<[I32], [1]>>:$kv_lens,
                       Optional<MemRefRankOf<[I32], [1]>>:$q_lens,
                       Optional<MemRefRankOf<[I32], [1]>>:$cu_seqlens_q,
                       Optional<MemRefRankOf<[I32], [1]>>:$cu_seqlens_kv,
                       AnyMemRef:$lse, AnyMemRef:$delta,
                       Variadic<AnyMemRef>:$buffers,
                       Variadic<AnyMemRef>:$summaries,
                       AnyMemRef:$dq, AnyMemRef:$dk, AnyMemRef:$dv,
                       Variadic<AnyMemRef>:$gradients,
                       Optional<AnyMemRef>:$status,
                       Optional<AnyMemRef>:$stats,
                       Optional<Index>:$work_begin,
                       Optional<Index>:$work_end,
                       Optional<AnyMemRef>:$out,
                       F32Attr:$scale,
                       DefaultValuedAttr<Attn_LayoutAttr, "::heed::attn::Layout::BHSD">:$layout,
                       OptionalAttr<Attn_TilingAttr>:$tiling);
  let assemblyFormat = [{
    $variant `ins` `(` $query `,` $key `,` $value `,` $dout `:` type($query) `,` type($key) `,`
    type($value) `,` type($dout) `)`
    (`kv_lens` `(` $kv_lens^ `:` type($kv_lens) `)`)?
    (`q_lens` `(` $q_lens^ `:` type($q_lens) `)`)?
    (`cu_seqlens_q` `(` $cu_seqlens_q^ `:` type($cu_seqlens_q) `)`)?
    (`cu_seqlens_kv` `(` $cu_seqlens_kv^ `:` type($cu_seqlens_kv) `)`)?
    `lse` `(` $lse `,` $delta `:` type($lse) `,` type($delta) `)`
    (`buffers` `(` $buffers^ `:` type($buffers) `)`)?
    (`summaries` `(` $summaries^ `:` type($summaries) `)`)?
    `grads` `(` $dq `,` $dk `,` $dv `:` type($dq) `,` type($dk) `,` type($dv) `)`
    (`buffer_grads` `(` $gradients^ `:` type($gradients) `)`)?
    (`status` `(` $status^ `:` type($status) `)`)?
    (`stats` `(` $stats^ `:` type($stats) `)`)?
    (`work` `(` $work_begin^ `,` $work_end `)`)?
    (`out` `(` $out^ `:` type($out) `)`)?
    attr-dict
  }];
}

def Attn_TileRowDeltaOp : Attn_TileOp<"row_delta", [
    DeclareOpInterfaceMethods<MemoryEffectsOpInterface>]> {
  let summary = "delta = rowsum(out * dout) of a span's rows";
  let description = [{
    Lane i is sum_d out[batch, head, token_i, d] * dout[batch, head, token_i,
    d] in f32 (rank-4 tensors in `layout`, the same head dim); holes are 0.
  }];
  let arguments = (ins AnyMemRef:$out, AnyMemRef:$dout, Index:$batch, Index:$head,
                       Attn_SpanType:$span,
                       DefaultValuedAttr<Attn_LayoutAttr, "::heed::attn::Layout::BHSD">:$layout);
  let results = (outs Attn_TileOf<"Row">:$result);
  let assemblyFormat = [{
    $out `,` $dout `[` $batch `,` $head `]` `span` `(` $span `)` attr-dict
    `:` type($out) `,` type($dout) `,` type($span) `->` type($result)
  }];
}

def Attn_TileStoreRowsOp : Attn_TileOp<"store_rows", [
    DeclareOpInterfaceMethods<MemoryEffectsOpInterface>]> {
  let summary = "Writes a per-row f32 statistic to a [B, H, S] tensor";
  let description = [{
    Lane i to `tensor[batch, head, token_i]`; holes are not written.
  }];
  let arguments = (ins Attn_TileOf<"Row">:$rows, AnyMemRef:$tensor, Index:$batch, Index:$head,
                       Attn_SpanType:$span);
  let assemblyFormat = [{
    $rows `to` $tensor `[` $batch `,` $head `]` `span` `(` $span `)` attr-dict
    `:` type($rows) `,` type($tensor) `,` type($span)
  }];
}

def Attn_TileLoadRowsOp : Attn_TileOp<"load_rows", [
    DeclareOpInterfaceMethods<MemoryEffectsOpInterface>]> {
  let summary = "A per-row f32 statistic (lse, delta) of a span's rows";
  let description = [{
    Lane i is `tensor[batch, head, token_i]` (a [B, H, S] f32 tensor); holes
    read 0. A `row` tile indexes the rows of a score tile, a `col` tile the
    columns of a transposed one (attn.tile.probs `transposed`).
  }];
  let arguments = (ins AnyMemRef:$tensor, Index:$batch, Index:$head, Attn_SpanType:$span);
  let results = (outs Attn_AnyTile:$result);
  let assemblyFormat = [{
    $tensor `[` $batch `,` $head `]` `span` `(` $span `)` attr-dict
    `:` type($tensor) `,` type($span) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Attn_TileProbsOp : Attn_TileOp<"probs", [AttrSizedOperandSegments,
    AllTypesMatch<["scores", "result"]>,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>,
    DeclareOpInterfaceMethods<MemoryEffectsOpInterface>]> {
  let summary = "P = exp(score'(s) - lse) where visible, recomputed from the forward's lse";
  let description = [{
    Element (i, j): exp(score(s, b, h, q_i, kv_j) - lse_i) where the mask
    holds (evaluated only when `mask_if` is true, as in attn.tile.apply),
    0 elsewhere, at holes and in rows whose lse is -inf. A sigmoid
    variant's weights are 1 / (1 + exp(-(score' + bias))) and `lse` is not
    read. `scores` is not modified (the backward still needs the raw scores).
    With `transposed`, the tile is key-major: element (i, j) is key kv_i of
    `cols` and query q_j of `rows`, and `lse` is a `col` tile (one value per
    query column); the GPUs' dK/dV kernel computes S^T = K Q^T so.
  }];
  let arguments = (ins FlatSymbolRefAttr:$variant, Attn_TileOf<"S">:$scores,
                       Attn_AnyTile:$lse, Index:$batch, Index:$head,
                       Attn_SpanType:$rows, Attn_SpanType:$cols,
                       Variadic<AnyMemRef>:$buffers, Optional<I64>:$route,
                       Optional<MemRefOf<[I32]>>:$status, Optional<I1>:$maskIf,
                       UnitAttr:$transposed);
  let results = (outs Attn_TileOf<"S">:$result);
  let assemblyFormat = [{
    $variant `(` $scores `)` `lse` `(` $lse `)` `[` $batch `,` $head `]` `rows` `(` $rows `)`
    `cols` `(` $cols `)` (`buffers` `(` $buffers^ `:` type($buffers) `)`)?
    (`route` `(` $route^ `)`)? (`status` `(` $status^ `:` type($status) `)`)?
    (`mask_if` `(` $maskIf^ `)`)? (`transposed` $transposed^)?
    attr-dict `:` type($scores) `,` type($lse) `,` type($rows) `,` type($cols)
  }];
  let hasVerifier = 1;
}

def Attn_TileGradScoresOp : Attn_TileOp<"grad_scores", [AttrSizedOperandSegments,
    AllTypesMatch<["scores", "probs", "dp", "result"]>,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>,
    DeclareOpInterfaceMethods<MemoryEffectsOpInterface>]> {
  let summary = "dS = P * (dP - delta) * d score'/d s, and the buffers' gradients";
  let description = [{
    `variant` is a derivative variant (`--attn-differentiate`); its score
    region runs at each element's raw score s, and its `attn.grad_add`s add
    dS * value into the gradient buffers (the last operands of `buffers`).
    Elements whose P is 0 contribute nothing. A sigmoid variant has no row
    normalization: dS = dP * P (1 - P) * d score'/d s, `delta` unused.
    `transposed` as in attn.tile.probs (key-major tiles, `delta` a `col`
    tile). With `no_buffer_grads` the grad_adds are dropped (the split
    backward's dK/dV kernel: the dQ kernel adds the buffers' gradients, once).
  }];
  let arguments = (ins FlatSymbolRefAttr:$variant, Attn_TileOf<"S">:$scores,
                       Attn_TileOf<"S">:$probs, Attn_TileOf<"S">:$dp,
                       Attn_AnyTile:$delta, Index:$batch, Index:$head,
                       Attn_SpanType:$rows, Attn_SpanType:$cols,
                       Variadic<AnyMemRef>:$buffers, Optional<I64>:$route,
                       UnitAttr:$transposed, UnitAttr:$no_buffer_grads);
  let results = (outs Attn_TileOf<"S">:$result);
  let assemblyFormat = [{
    $variant `(` $scores `,` $probs `,` $dp `)` `delta` `(` $delta `)` `[` $batch `,` $head `]`
    `rows` `(` $rows `)` `cols` `(` $cols `)` (`buffers` `(` $buffers^ `:` type($buffers) `)`)?
    (`route` `(` $route^ `)`)? (`transposed` $transposed^)?
    (`no_buffer_grads` $no_buffer_grads^)?
    attr-dict `:` type($scores) `,` type($delta) `,` type($rows) `,` type($cols)
  }];
  let hasVerifier = 1;
}

def Attn_TileGradSinkOp : Attn_TileOp<"grad_sink", [AllTypesMatch<["lse", "delta"]>,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>,
    DeclareOpInterfaceMethods<MemoryEffectsOpInterface>]> {
  let summary = "The sink logit's gradient over a span's rows, into the buffers it reads";
  let description = [{
    `variant` is a derivative variant whose `sink` region yields the head's
    sink logit x and states its partial derivatives with `attn.grad_add`.
    With a = -sum_i exp(x - lse_i) delta_i over the span's real rows (the
    loss's gradient with respect to x: d out_i / d x = -exp(x - lse_i)
    out_i), adds a * value to each grad_add's gradient element. Rows whose
    lse is -inf add nothing.
  }];
  let arguments = (ins FlatSymbolRefAttr:$variant, Attn_TileOf<"Row">:$lse,
                       Attn_TileOf<"Row">:$delta, Index:$batch, Index:$head,
                       Attn_SpanType:$rows, Variadic<AnyMemRef>:$buffers);
  let assemblyFormat = [{
    $variant `lse` `(` $lse `)` `delta` `(` $delta `)` `[` $batch `,` $head `]`
    `rows` `(` $rows `)` (`buffers` `(` $buffers^ `:` type($buffers) `)`)?
    attr-dict `:` type($lse) `,` type($rows)
  }];
}

def Attn_TileGradKVOp : Attn_TileOp<"grad_kv", [Pure, AllTypesMatch<["acc", "result"]>]> {
  let summary = "acc' = acc + X^T Y: dV += P^T dO and dK += dS^T Q";
  let description = [{
    `x` [R x N] (probabilities or score gradients), `y` [R x D] (rows of
    dO or Q, role K: row-major), `acc` [N x D]. Lowered in place, like
    attn.tile.pv.
  }];
  let arguments = (ins Attn_TileOf<"S">:$x, Attn_TileOf<"K">:$y, Attn_TileOf<"Acc">:$acc);
  let results = (outs Attn_TileOf<"Acc">:$result);
  let assemblyFormat = [{
    $x `,` $y `,` $acc attr-dict `:` type($x) `,` type($y) `,` type($acc)
  }];
  let hasVerifier = 1;
}

def Attn_TileWriteRowsOp : Attn_TileOp<"write_rows", [
    DeclareOpInterfaceMethods<MemoryEffectsOpInterface>]> {
  let summary = "Writes (or, with `accumulate`, adds) an accumulator's rows to a tensor";
  let description = [{
    Row i of `acc`, times `scale`, goes to tensor[batch, head, token_i] in
    `layout` (converted to the tensor's element type); with `accumulate` it
    is added to what is there (f32 tensors). Holes are not written.
  }];
  let arguments = (ins Attn_TileOf<"Acc">:$acc, AnyMemRef:$tensor, Index:$batch, Index:$head,
                       Attn_SpanType:$span, UnitAttr:$accumulate,
                       DefaultValuedAttr<F32Attr, "1.0f">:$scale,
                       DefaultValuedAttr<Attn_LayoutAttr, "::heed::attn::Layout::BHSD">:$layout);
  let assemblyFormat = [{
    $acc `to` $tensor `[` $batch `,` $head `]` `span` `(` $span `)` (`accumulate` $accumulate^)?
    attr-dict `:` type($acc) `,` type($tensor) `,` type($span)
  }];
}

#endif // HEED_ATTN_TILE_OPS
