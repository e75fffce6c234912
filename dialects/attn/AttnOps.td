// Ops of the attn dialect: attn.variant, attn.yield, attn.load, attn.attention.
#ifndef HEED_ATTN_OPS
#define HEED_ATTN_OPS

include "AttnDialect.td"
include "AttnAttrs.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/IR/RegionKindInterface.td"

def Attn_VariantOp : Attn_Op<"variant", [Symbol, IsolatedFromAbove]> {
  let summary = "An attention variant: a score modifier and a mask";
  let description = [{
    Holds two single-block regions evaluated per (b, h, q, kv) element:

    * `score`: arguments `(%score: f32, %b: index, %h: index, %q: index,
      %kv: index, buffers...)`, yields the modified score (f32). The incoming
      score is `scale * dot(q_row, k_row)`.
    * `mask`: arguments `(%b, %h, %q, %kv: index, buffers...)`, yields `i1`:
      true where the key is visible to the query.

    `buffers` lists the run-time tensors (memrefs) the regions read through
    `attn.load`; `buffer_names` and `buffer_shapes` name them and give each
    dimension symbolically ("B", "H", "Hkv", "Sq", "Skv" or a decimal
    constant) so the runtime can check what it is given. `params` records the
    compile-time parameter values the regions were built with.

    The optional third region, `blocks`, is written by `--attn-analyze-mask`:
    arguments `(%b, %h, %q_lo, %q_hi, %kv_lo, %kv_hi: index, buffers...)`,
    it yields an `i8` classifying the box of (q, kv) pairs
    [q_lo, q_hi] x [kv_lo, kv_hi] for batch b, head h: 0 = EMPTY (the mask is
    false on every pair), 2 = FULL (true on every pair), 1 = PARTIAL (either
    may hold). It must be sound: EMPTY and FULL are only claimed when true.
    After the buffers come one summary per rank-1 or rank-2 integer buffer
    (`memref<?x?x2xi64>`): a sparse table whose entry [k][i] holds the min and
    max of the buffer over entries [i * 16, (i + 2^k) * 16), so the range of
    values over any index interval is two lookups (document ids, say).

    `--attn-analyze-mask` also records `sparsity` (how the blocks are known)
    and, where the mask reads q and kv through a token grid, `grid`: the
    classifier then takes boxes of that grid (see `#attn.grid`).

    The optional fourth region, `route`, makes the variant routed per head
    (DuoAttention, MoA): arguments `(%b, %h: index, buffers...)`, it yields
    the head's route value (i64). `route_cases` lists the values that have a
    case; inside `score`, `mask` and `blocks`, `attn.route` reads the value,
    and the regions select each case's expression with it. Lowerings
    specialize the kernel per case (`attn.route` becomes a constant), so a
    case pays only for its own mask; a head whose value has no case sees no
    key.

    `gate` (MoH per-token head gating), where present, is
    `array<i64: buffer, dim_b, dim_q, dim_h>`: the output row (b, h, q) is
    scaled by `buffer[...]` read with b, q, h in dimensions dim_b, dim_q,
    dim_h of that rank-3 float buffer; rows whose gate is 0 are not routed
    (output 0, lse -inf). The attention op then takes `gate_rows` and
    `gate_counts`: per (b, h), the query rows with a nonzero gate, ascending,
    then the others, and how many are routed.
  }];
  let arguments = (ins SymbolNameAttr:$sym_name,
                       TypeArrayAttr:$buffer_types,
                       StrArrayAttr:$buffer_names,
                       ArrayAttr:$buffer_shapes,
                       DictionaryAttr:$params,
                       OptionalAttr<DenseI64ArrayAttr>:$route_cases,
                       OptionalAttr<DenseI64ArrayAttr>:$gate,
                       OptionalAttr<Attn_SparsityAttr>:$sparsity,
                       OptionalAttr<Attn_GridAttr>:$grid,
                       OptionalAttr<Attn_NormalizationAttr>:$normalize,
                       OptionalAttr<F32Attr>:$sigmoid_bias);
  let regions = (region SizedRegion<1>:$score, SizedRegion<1>:$mask,
                 MaxSizedRegion<1>:$blocks, MaxSizedRegion<1>:$route,
                 MaxSizedRegion<1>:$sink);
  let assemblyFormat = [{
    $sym_name `buffers` `(` $buffer_names `:` $buffer_types `)` `shapes` $buffer_shapes
    `params` $params (`route_cases` $route_cases^)? (`gate` $gate^)?
    (`normalize` $normalize^)? (`sigmoid_bias` $sigmoid_bias^)? attr-dict-with-keyword
    (`route` $route^)? (`sink` $sink^)? `score` $score `mask` $mask (`blocks` $blocks^)?
  }];
  let hasVerifier = 1;
  let hasRegionVerifier = 1;
  let extraClassDeclaration = [{
    unsigned getNumBuffers() { return getBufferTypes().size(); }
    /// Number of leading non-buffer arguments of each region.
    static constexpr unsigned kScoreIndexArgs = 5; // score, b, h, q, kv
    static constexpr unsigned kMaskIndexArgs = 4;  // b, h, q, kv
    static constexpr unsigned kBlocksIndexArgs = 6; // b, h, q_lo, q_hi, kv_lo, kv_hi
    static constexpr unsigned kRouteIndexArgs = 2;  // b, h
    static constexpr unsigned kSinkIndexArgs = 2;   // b, h
    bool isRouted() { return !getRoute().empty(); }
    bool hasSink() { return !getSink().empty(); }
    /// Checks normalize, sigmoid_bias and the sink region.
    ::mlir::LogicalResult verifyNormalization();
    ::heed::attn::Normalization getNormalization() {
      return getNormalize().value_or(::heed::attn::Normalization::Softmax);
    }
    bool isGated() { return getGate().has_value(); }
    /// Entries per block of a buffer summary (see the `blocks` region).
    static constexpr int64_t kSummaryBlock = 16;
    /// Positions of the buffers that get a summary: rank-1 or rank-2 integer buffers.
    ::llvm::SmallVector<unsigned> getSummarizedBuffers();
  }];
}

def Attn_YieldOp : Attn_Op<"yield", [Pure, Terminator,
    ParentOneOf<["VariantOp"]>]> {
  let summary = "Yields the value of a variant region";
  let arguments = (ins AnyType:$value);
  let assemblyFormat = "$value attr-dict `:` type($value)";
}

def Attn_RouteOp : Attn_Op<"route", [Pure]> {
  let summary = "The route value of the current head";
  let description = [{
    Inside the `score`, `mask` and `blocks` regions of a routed variant: the
    value the variant's `route` region yields for the current (b, h). It is
    uniform over a head's work, so lowerings replace it by each case's
    constant in a kernel specialized per case.
  }];
  let results = (outs I64:$result);
  let assemblyFormat = "attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def Attn_ShapeOp : Attn_Op<"shape", [Pure]> {
  let summary = "A run-time size (B, H, Hkv, Sq or Skv) read inside a variant";
  let description = [{
    Inside the `score`, `mask`, `blocks` and `route` regions of a variant: the
    size of the attention it is applied to, read from its operands when the
    kernel runs (the batch count, the query and key/value head counts, the
    query and key sequence lengths). Nothing about it is compiled in, so one
    kernel serves every length. Lowerings inline it as the value the tile
    loop bound for its sizes (`attn.tile.bind_shapes`).

    ```mlir
    %skv = attn.shape <Skv> : i64
    ```
  }];
  let arguments = (ins Attn_ShapeAttr:$shape);
  let results = (outs I64:$result);
  let assemblyFormat = "$shape attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def Attn_LoadOp : Attn_Op<"load", [
    DeclareOpInterfaceMethods<MemoryEffectsOpInterface>]> {
  let summary = "Bounds-checked read of a run-time buffer";
  let description = [{
    Reads `buffer[indices]`. Unlike `memref.load`, an index out of range is
    not undefined behaviour: the result is zero (false for i1) and, where the
    enclosing attention op has a `status` operand, the 1-based number of the
    buffer is recorded there so the runtime can report the error.
    Integer elements are sign-extended to i64 (i1 zero-extended: true is 1),
    floating point to f32.
  }];
  let arguments = (ins AnyMemRef:$buffer, Variadic<Index>:$indices);
  let results = (outs AnyTypeOf<[I64, F32]>:$result);
  let assemblyFormat = "$buffer `[` $indices `]` attr-dict `:` type($buffer) `->` type($result)";
  let hasVerifier = 1;
}

def Attn_AttentionOp : Attn_Op<"attention", [AttrSizedOperandSegments,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>,
    DeclareOpInterfaceMethods<MemoryEffectsOpInterface>]> {
  let summary = "Applies an attention variant to q, k, v";
  let description = [{
    `out = normalize(mod(scale * q k^T) masked) v`, per batch and head, in
    destination-passing style on memrefs. Tensors are rank 4, in `layout`
    "bhsd" ([batch, heads, seq, dim]) or "bshd" ([batch, seq, heads, dim]);
    the head dims are static. The key/value heads may be fewer than the query
    heads (GQA/MQA): query head h reads kv head h / (Hq / Hkv). Storage types
    are f32, f16 or bf16; the arithmetic is f32. `lse` (rank 3, [B, Hq, Sq],
    f32) receives the natural-log sum of exponentials of the scores per row,
    -inf for a row whose keys are all masked (whose output is then zero);
    with a sink logit the sum includes exp(sink) (a fully masked row's lse
    is the sink). A sigmoid variant has no lse: its rows are not normalized,
    and the lse output, where given, is filled with NaN.
    `status` (memref<1xi32>) receives the buffer number of an out-of-range
    `attn.load`. `summaries` are the tables the variant's `blocks` region
    reads, one per rank-1 or rank-2 integer buffer, in order. `stats` (memref<3xi64>), where present, is incremented by
    the KV blocks visited, and of them those known FULL and PARTIAL. `work`
    `gate_rows` (memref<?xi32>, [B * Hq * Sq]) and `gate_counts`
    (memref<?xi32>, [B * Hq]) are required iff the variant is gated: the
    q-tiles of head (b, h) are taken from its routed rows, so the work
    follows the routed fraction. `work`
    restricts the op to the flattened work items
    [begin, end) of the (batch, head, q-block) grid, for callers that split
    the work across threads. `tiling`, chosen by `--attn-choose-tiling`, says
    how the lowering cuts both sequences into tiles.

    `split(phase, count) partials(acc, stats)`: the run-time operands of
    the CPU's split-KV schedule (--attn-runtime-abi{split-kv}, consumed by
    --attn-split-kv; docs/decode.md): phase 0 computes the op whole, phase 1
    the partial state of `count` key ranges per work item into the
    workspace (f32 [count, B, Hq, Sq, Dv] and [count, B, Hq, Sq, 2]),
    phase 2 merges them into out and lse. `part_keys(n)` (kernels from
    before it lack it): parts of about n keys (ceil(n / keys per tile)
    tiles), the same for every item, so that the parts are of equal work (a
    short item's later parts are empty); a part is never smaller than the
    item's range divided by `count`, so `count` parts always cover it; 0:
    each item's range in `count` equal parts.

    Serving layouts (docs/decode.md): with `kv_lens` (i32 [B]), batch entry
    b has kv_lens[b] keys (the key tensor's length is a capacity), and the
    variant's `Skv` is kv_lens[b]. With `page_table` (i32 [B, max_pages],
    which requires `kv_lens`), key and value are a paged cache: their batch
    dim counts pages and their (static) sequence dim is the page size, so
    key token t of batch entry b lives in page page_table[b, t / P], slot
    t % P (vLLM's and FlashInfer's convention; bshd is their NHD layout,
    bhsd their HND).

    With `q_lens` (i32 [B]), batch entry b has q_lens[b] queries (the query
    tensor's length is a capacity, like the keys' with `kv_lens`): the
    variant's `Sq` is q_lens[b], and the rows of out and lse past it are
    neither computed nor written (FlashAttention's varlen calls on a padded
    batch: chunked prefill, speculative drafts of different lengths).

    Packed sequences (FlashAttention's `cu_seqlens`; docs/decode.md): with
    `cu_seqlens_q` (i32 [B+1]), entry b's queries are the rows
    [cu_seqlens_q[b], cu_seqlens_q[b+1]) of query, out and lse, which hold
    all entries end to end; the query operand's sequence dim is then the
    longest entry's length (`max_seqlen_q`, a capacity, as with `q_lens`)
    and its batch stride 0 (the runtime passes the packed tensor so, and
    likewise out and lse), so that every entry's view starts at its own
    rows. `cu_seqlens_kv` does the same for key and value (entry b has
    cu_seqlens_kv[b+1] - cu_seqlens_kv[b] keys, the variant's `Skv`).
    `cu_seqlens_q` excludes `q_lens`; `cu_seqlens_kv` excludes `kv_lens`
    and `page_table`.

    `entry_order` (i32 [B], a permutation of 0..B-1; serving calls, whose
    entries differ in length): work item (b, h, t) computes batch entry
    entry_order[b] (clamped to B - 1). The runtime passes the entries longest
    first, so that a GPU, which starts blocks in grid order, starts the
    longest entries' blocks first (no long entry left to run alone at the
    end); the CPU's threads take items in the same order.
  }];
  let arguments = (ins FlatSymbolRefAttr:$variant,
                       AnyMemRef:$query, AnyMemRef:$key, AnyMemRef:$value,
                       Optional<MemRefRankOf<[I32], [1]>>:$kv_lens,
                       Optional<MemRefRankOf<[I32], [2]>>:$page_table,
                       Optional<MemRefRankOf<[I32], [1]>>:$q_lens,
                       Optional<MemRefRankOf<[I32], [1]>>:$cu_seqlens_q,
                       Optional<MemRefRankOf<[I32], [1]>>:$cu_seqlens_kv,
                       Optional<MemRefRankOf<[I32], [1]>>:$entry_order,
                       Variadic<AnyMemRef>:$buffers,
                       Variadic<AnyMemRef>:$summaries,
                       AnyMemRef:$out,
                       Optional<AnyMemRef>:$lse,
                       Optional<AnyMemRef>:$status,
                       Optional<AnyMemRef>:$stats,
                       Optional<AnyMemRef>:$gate_rows,
                       Optional<AnyMemRef>:$gate_counts,
                       Optional<Index>:$work_begin,
                       Optional<Index>:$work_end,
                       Optional<Index>:$split_phase,
                       Optional<Index>:$split_count,
                       Optional<Index>:$split_part_keys,
                       Optional<MemRefRankOf<[F32], [5]>>:$partial_acc,
                       Optional<MemRefRankOf<[F32], [5]>>:$partial_stats,
                       F32Attr:$scale,
                       DefaultValuedAttr<Attn_LayoutAttr, "::heed::attn::Layout::BHSD">:$layout,
                       OptionalAttr<Attn_TilingAttr>:$tiling);
  let assemblyFormat = [{
    $variant `ins` `(` $query `,` $key `,` $value `:` type($query) `,` type($key) `,` type($value) `)`
    (`kv_lens` `(` $kv_lens^ `:` type($kv_lens) `)`)?
    (`page_table` `(` $page_table^ `:` type($page_table) `)`)?
    (`q_lens` `(` $q_lens^ `:` type($q_lens) `)`)?
    (`cu_seqlens_q` `(` $cu_seqlens_q^ `:` type($cu_seqlens_q) `)`)?
    (`cu_seqlens_kv` `(` $cu_seqlens_kv^ `:` type($cu_seqlens_kv) `)`)?
    (`entry_order` `(` $entry_order^ `:` type($entry_order) `)`)?
    (`buffers` `(` $buffers^ `:` type($buffers) `)`)?
    (`summaries` `(` $summaries^ `:` type($summaries) `)`)?
    `outs` `(` $out `:` type($out) `)`
    (`lse` `(` $lse^ `:` type($lse) `)`)?
    (`status` `(` $status^ `:` type($status) `)`)?
    (`stats` `(` $stats^ `:` type($stats) `)`)?
    (`gate_rows` `(` $gate_rows^ `:` type($gate_rows) `)`)?
    (`gate_counts` `(` $gate_counts^ `:` type($gate_counts) `)`)?
    (`work` `(` $work_begin^ `,` $work_end `)`)?
    (`split` `(` $split_phase^ `,` $split_count `)` `partials` `(` $partial_acc `,`
     $partial_stats `:` type($partial_acc) `,` type($partial_stats) `)`)?
    (`part_keys` `(` $split_part_keys^ `)`)?
    attr-dict
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    bool isBSHD() { return getLayout() == ::heed::attn::Layout::BSHD; }
  }];
}

def Attn_NumTilesOp : Attn_Op<"num_tiles", [Pure,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "Tiles of a sequence of `seq` tokens under a variant's tiling";
  let description = [{
    How many tiles of `side` a sequence of `seq` tokens has under the tiling
    the attention ops of `variant` use: the runtime asks this (through the
    host functions `heed_num_q_tiles` / `heed_num_kv_tiles`) instead of
    assuming a tiling. `--attn-choose-tiling` sets `tiling`; the lowerings
    expand it into index arithmetic.

    ```mlir
    %n = attn.num_tiles %seq of @causal side <q> : index
    ```
  }];
  let arguments = (ins Index:$seq, FlatSymbolRefAttr:$variant, Attn_SideAttr:$side,
                       OptionalAttr<Attn_TilingAttr>:$tiling);
  let results = (outs Index:$result);
  let assemblyFormat = "$seq `of` $variant `side` $side attr-dict `:` type($result)";
}

#endif // HEED_ATTN_OPS
