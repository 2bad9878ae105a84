"""The head sweep's table: several ``mask_head_ablation.py`` results (one or more per
training budget: a head swept later may have its own file) as one Markdown table, with
the paper's quantity (unseen / seen AP) per head and the deep-vs-shallow unseen gap
measured against the seeds' spread.

    .venv/bin/python benchmarks/head_sweep_table.py runs/sweep/quick.json \\
        runs/sweep/long.json [--shallow conv2 --deep hourglass52] [--out table.json]

Per head and budget: mean and sample standard deviation over seeds of the GT-box mask
AP (seen, unseen) and of unseen / seen. The gap line per budget is
``deep - shallow`` unseen AP with the pooled standard deviation
``sqrt((sd_deep^2 + sd_shallow^2) / 2)``; the claim "deep beats shallow" holds on a
budget when the gap exceeds twice the pooled deviation. Baselines (no learning, so no
seeds) close the table. Nothing is trained here; it only reads the JSON files.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path


def stats(values: list[float]) -> dict:
    """Mean and sample standard deviation (0 for one value) of ``values``."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return {"mean": None, "sd": None, "n": 0}
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(statistics.fmean(values), 2), "sd": round(sd, 2), "n": len(values)}


def head_rows(results: dict) -> list[dict]:
    """One row per head of one results file: seen / unseen / ratio statistics."""
    seen, unseen = results["splits"]
    rows = []
    for head in results["heads"]:
        runs = [r for r in results["runs"] if r["head"] == head]
        s = [r["eval"]["gt"]["mask"][seen]["AP"] for r in runs]
        u = [r["eval"]["gt"]["mask"][unseen]["AP"] for r in runs]
        ratios = [b / a for a, b in zip(s, u, strict=True) if a]
        rows.append(
            {
                "steps": results["steps"],
                "head": head,
                "params": results["heads"][head]["params"],
                "seeds": [r["seed"] for r in runs],
                "seen": stats(s),
                "unseen": stats(u),
                "unseen/seen": stats(ratios),
            }
        )
    return rows


def gap(rows: list[dict], shallow: str, deep: str) -> dict | None:
    """Deep minus shallow unseen AP, pooled seed deviation and whether gap > 2 x pooled."""
    by_head = {r["head"]: r for r in rows}
    if shallow not in by_head or deep not in by_head:
        return None
    a, b = by_head[shallow]["unseen"], by_head[deep]["unseen"]
    pooled = math.sqrt((a["sd"] ** 2 + b["sd"] ** 2) / 2)
    diff = b["mean"] - a["mean"]
    return {
        "steps": rows[0]["steps"],
        "shallow": shallow,
        "deep": deep,
        "gap": round(diff, 2),
        "pooled_sd": round(pooled, 2),
        "holds": bool(diff > 2 * pooled and min(a["n"], b["n"]) >= 3),
    }


def _pm(stat: dict, digits: int = 1) -> str:
    if stat["mean"] is None:
        return "-"
    return f"{stat['mean']:.{digits}f} ± {stat['sd']:.{digits}f}"


def markdown(all_rows: list[dict], gaps: list[dict], baselines: dict) -> str:
    lines = [
        "| steps | head | params | seeds | seen AP | unseen AP | unseen / seen |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in all_rows:
        lines.append(
            f"| {r['steps']} | `{r['head']}` | {r['params']:,} | {len(r['seeds'])} | "
            f"{_pm(r['seen'])} | **{_pm(r['unseen'])}** | {_pm(r['unseen/seen'], 2)} |"
        )
    for method, b in baselines.items():
        ratio = b["unseen"] / b["seen"] if b["seen"] else float("nan")
        lines.append(
            f"| - | `{method}` (no learning) | 0 | - | {b['seen']:.1f} | **{b['unseen']:.1f}** | "
            f"{ratio:.2f} |"
        )
    lines.append("")
    for g in gaps:
        verdict = "holds" if g["holds"] else "does not hold"
        lines.append(
            f"* {g['steps']} steps: `{g['deep']}` - `{g['shallow']}` unseen AP = "
            f"{g['gap']:+.1f}, pooled seed sd {g['pooled_sd']:.1f}: gap > 2 sd {verdict}."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="mask_head_ablation.py results JSON files")
    parser.add_argument("--shallow", default="conv2")
    parser.add_argument("--deep", default="hourglass52")
    parser.add_argument("--out", default=None, help="also write the table as JSON")
    args = parser.parse_args(argv)
    all_rows, baselines = [], {}
    for path in args.results:
        results = json.loads(Path(path).read_text())
        all_rows += head_rows(results)
        seen, unseen = results["splits"]
        for method, b in results.get("baselines", {}).items():
            baselines[method] = {"seen": b[seen]["AP"], "unseen": b[unseen]["AP"]}
    # One gap per budget, whichever files its heads came from (a head swept later has
    # its own file). A head given twice for one budget is printed twice; its last file's
    # row is the one the gap uses.
    budgets = sorted({r["steps"] for r in all_rows})
    gaps = [g for n in budgets if (g := gap([r for r in all_rows if r["steps"] == n],
                                            args.shallow, args.deep))]  # fmt: skip
    print(markdown(all_rows, gaps, baselines))
    if args.out:
        table = {"rows": all_rows, "gaps": gaps, "baselines": baselines}
        Path(args.out).write_text(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
