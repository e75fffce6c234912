"""Pictures of which blocks heed computes: EMPTY (never visited), FULL (visited, mask
skipped) and PARTIAL (mask evaluated) blocks of a traced mask, as a terminal text view and
as a PNG (matplotlib).

The classes are the compiled classifier's, not a re-evaluation of the mask: the mask is
compiled with its indices read at global positions (``q + heed_pos[0]``, ...; see
heed/_trace.py) and run once per block on a block-sized problem, and the kernel's block
statistics (``heed_run_stats``: visited, full, partial) give the block's class. A block of
BLOCK_SIZE holds several kernel tiles; it is EMPTY when the kernel visits none of them,
FULL when it proves all of them full, PARTIAL otherwise. (A C entry point returning the
classifier's tile classes directly would make this one call: see docs/python.md.)
"""

import numpy as np

from . import _kernels, _trace

EMPTY, FULL, PARTIAL = 0, 1, 2
CLASS_NAMES = {EMPTY: "empty", FULL: "full", PARTIAL: "partial"}

#: How a class is drawn in text: unicode (default) and ASCII.
_GLYPHS = {True: {EMPTY: " ", FULL: "\u2588", PARTIAL: "\u2591"},
           False: {EMPTY: ".", FULL: "#", PARTIAL: "+"}}


class BlockCensus:
    """Block classes of a mask: ``classes`` is a uint8 array [B, H, q blocks, kv blocks]
    of EMPTY / FULL / PARTIAL, at ``block`` = (rows, columns) tokens."""

    def __init__(self, classes, block, seq_lengths, tile_probes):
        self.classes = classes
        self.block = block
        self.seq_lengths = seq_lengths
        self.tile_probes = tile_probes

    def count(self, name):
        code = {v: k for k, v in CLASS_NAMES.items()}[name]
        return int((self.classes == code).sum())

    def fraction(self, name):
        return self.count(name) / float(self.classes.size)

    def __repr__(self):
        return "<BlockCensus %s blocks of %dx%d: %s>" % (
            "x".join(str(n) for n in self.classes.shape), self.block[0], self.block[1],
            ", ".join("%s %.1f%%" % (n, 100 * self.fraction(n)) for n in CLASS_NAMES.values()))


def _depends_on(value, name):
    """Whether the traced tree reads the index `name` ('b' or 'h')."""
    stack, seen = [value], set()
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if n.op == "var":
            if n.args[0] == name:
                return True
        elif n.op == "read":
            stack.extend(n.args[1:])
        elif n.op != "const":
            stack.extend(n.args)
    return False


def block_census(block_mask, head_dim=16, batches=None, heads=None):
    """The classes of every block of `block_mask` (from heed.create_block_mask) at its
    BLOCK_SIZE, from the compiled classifier. Batches and heads the mask does not read
    are computed once and repeated; `batches` / `heads` limit which are probed (None: all
    of the block mask's B and H)."""
    mask = block_mask.trace.value
    B, H, Sq, Skv = block_mask.shape
    bq, bk = block_mask.BLOCK_SIZE
    nq, nk = -(-Sq // bq), -(-Skv // bk)
    emitted = _trace.emit(mask=mask, positions=True)
    kernel = _kernels.compile(emitted.text, head_dim=head_dim)
    from .flex import _convert_buffer
    x = np.zeros((1, 1, bq, head_dim), np.float32)
    y = np.zeros((1, 1, bk, head_dim), np.float32)
    rng = np.random.default_rng(0)
    x[...] = rng.standard_normal(x.shape)
    y[...] = rng.standard_normal(y.shape)
    out = np.empty_like(x)
    buffers = [_convert_buffer(b, x) for b in emitted.buffers]
    b_range = list(batches) if batches is not None else list(range(B))
    h_range = list(heads) if heads is not None else list(range(H))
    by_b = _depends_on(mask, "b")
    by_h = _depends_on(mask, "h")
    classes = np.zeros((len(b_range), len(h_range), nq, nk), np.uint8)
    probes = 0
    pos = np.zeros(4, np.int64)
    done = {}
    for bi, b in enumerate(b_range):
        for hi, h in enumerate(h_range):
            key = (b if by_b else 0, h if by_h else 0)
            if key in done:
                classes[bi, hi] = classes[done[key]]
                continue
            done[key] = (bi, hi)
            for i in range(nq):
                rows = min(bq, Sq - i * bq)
                for j in range(nk):
                    cols = min(bk, Skv - j * bk)
                    pos[:] = (i * bq, j * bk, key[0], key[1])
                    kernel.run(x[:, :, :rows], y[:, :, :cols], y[:, :, :cols],
                               out=out[:, :, :rows], buffers=[pos] + buffers, num_threads=1)
                    st = kernel.last_stats
                    probes += 1
                    if st["visited_blocks"] == 0:
                        classes[bi, hi, i, j] = EMPTY
                    elif st["full_blocks"] == st["visited_blocks"] == st["total_blocks"]:
                        classes[bi, hi, i, j] = FULL
                    else:
                        classes[bi, hi, i, j] = PARTIAL
    return BlockCensus(classes, (bq, bk), (Sq, Skv), probes)


def _downsample(grid, rows, cols):
    """Cells of at most rows x cols: EMPTY if all blocks are, FULL if all are, else
    PARTIAL."""
    nq, nk = grid.shape
    fq, fk = -(-nq // rows), -(-nk // cols)
    if fq == 1 and fk == 1:
        return grid, 1, 1
    out = np.full((-(-nq // fq), -(-nk // fk)), PARTIAL, np.uint8)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            cell = grid[i * fq:(i + 1) * fq, j * fk:(j + 1) * fk]
            if (cell == EMPTY).all():
                out[i, j] = EMPTY
            elif (cell == FULL).all():
                out[i, j] = FULL
    return out, fq, fk


def census_text(census, b=0, h=None, max_rows=32, max_cols=64, limit=4, unicode=True):
    """The census as text: one grid per (b, h) (rows: query blocks, columns: key blocks;
    h None: the first `limit` heads), each cell one block or a group of blocks."""
    glyphs = _GLYPHS[bool(unicode)]
    heads = range(min(limit, census.classes.shape[1])) if h is None else [h]
    lines = ["heed blocks of %dx%d tokens, Q_LEN=%d KV_LEN=%d: %s" % (
        census.block[0], census.block[1], census.seq_lengths[0], census.seq_lengths[1],
        ", ".join("%s %s %.1f%%" % (glyphs[c] if glyphs[c] != " " else "' '", n,
                                    100 * census.fraction(n)) for c, n in CLASS_NAMES.items()))]
    for head in heads:
        grid, fq, fk = _downsample(census.classes[b, head], max_rows, max_cols)
        lines.append("b=%d h=%d%s" % (b, head, "" if fq == fk == 1 else
                                      " (a cell is %dx%d blocks)" % (fq, fk)))
        border = "+" + "-" * grid.shape[1] + "+"
        lines.append(border)
        for row in grid:
            lines.append("|" + "".join(glyphs[int(c)] for c in row) + "|")
        lines.append(border)
    return "\n".join(lines)


def block_text(block_mask, b=0, h=None, max_rows=32, max_cols=64, limit=4, unicode=True):
    """:func:`census_text` of a block mask (its census computed once and kept)."""
    return census_text(block_mask.census(), b, h, max_rows, max_cols, limit, unicode)


def show_blocks(block_mask, path=None, b=0, h=None, limit=4, unicode=True, dpi=100):
    """Shows the EMPTY / FULL / PARTIAL blocks of `block_mask` (heed.create_block_mask).

    path None: prints the text view and returns it. path 'x.png': writes a PNG with one
    panel per head (h None: the first `limit` heads) with matplotlib, and returns the path;
    without matplotlib it raises ImportError naming it (the text view needs nothing)."""
    census = block_mask.census()
    if path is None:
        text = census_text(census, b, h, limit=limit, unicode=unicode)
        print(text)
        return text
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.colors import ListedColormap
    except ImportError as e:
        raise ImportError("heed.show_blocks(path=...) writes a PNG with matplotlib, which is "
                          "not installed (%s); install python3-matplotlib / `pip install "
                          "matplotlib`, or call show_blocks() without a path for the text "
                          "view" % e) from e
    heads = list(range(min(limit, census.classes.shape[1]))) if h is None else [h]
    fig, axes = plt.subplots(1, len(heads), figsize=(4 * len(heads), 4), squeeze=False)
    cmap = ListedColormap(["#ffffff", "#1f4e79", "#9dc3e6"])  # empty, full, partial
    for ax, head in zip(axes[0], heads):
        ax.imshow(census.classes[b, head], cmap=cmap, vmin=0, vmax=2, interpolation="nearest")
        ax.set_title("b=%d h=%d" % (b, head))
        ax.set_xlabel("key block (%d tokens)" % census.block[1])
        ax.set_ylabel("query block (%d tokens)" % census.block[0])
    fig.suptitle("heed: full %.1f%%, partial %.1f%%, empty %.1f%% (never visited)" % (
        100 * census.fraction("full"), 100 * census.fraction("partial"),
        100 * census.fraction("empty")))
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
