# Formats one heed-run --json result (stdin) as a markdown table row.
import json
import sys

r = json.load(sys.stdin)
print("| {} | {:.3f} | {:.1f} | {:.1f} | {} / {} | {:.0f} |".format(
    sys.argv[1], r["density"], r["time_s"] * 1e3, r["gflops"],
    r["blocks_visited"], r["blocks_total"], r["compile_s"] * 1e3))
