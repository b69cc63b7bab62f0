"""Run every benchmark script in this folder and print one table of their headline figures.

Each ``bench_*.py`` measures a hot path against a reference measured in the same run (ratios,
because absolute times on shared machines are noisy) and writes
``benchmarks/results/<name>.json``. This runner executes them one after another, collects
those files into ``benchmarks/results/latest.json`` and prints a Markdown table (the one in the
README). Scripts that need arguments (a dataset, an output path or earlier runs: the studies
behind docs/*.md, each with its command in its docstring; :func:`needs_arguments`) are listed
as skipped, not run.
Not part of the test suite.

    python benchmarks/run_all.py               # every benchmark, default (moderate) sizes
    python benchmarks/run_all.py engine tissue # only those whose name contains a word
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def headline(data: dict, prefix: str = "") -> dict[str, object]:
    """Scalar entries whose key mentions a ratio, a rate or a speed-up (searched one level deep)."""
    out: dict[str, object] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and not prefix:
            out.update(headline(value, f"{key}."))
        elif isinstance(value, (int, float, str)) and any(
            w in key.lower() for w in ("ratio", "speedup", "per_", "/s", "ms", "x_")
        ):
            out[name] = value
    return out


# An option default under the repository's results/ folder: ROOT / "results" / ..., "results/...".
EARLIER_RUN = re.compile(r"""(^|ROOT\s*/\s*)['"]results(['"]|/)""")


def needs_arguments(script: Path) -> bool:
    """Whether the script needs arguments (read from its source: nothing is run): its
    argparse parser has a positional or a required option, an option whose default is an
    earlier run (a path under ``results``: run without it, the study would rewrite its
    committed result from whatever run is there, or fail), or it loops over ``sys.argv[1:]``
    with no default (run without arguments it would write an empty result)."""
    for node in ast.walk(ast.parse(script.read_text(), filename=str(script))):
        if isinstance(node, ast.For) and ast.unparse(node.iter) == "sys.argv[1:]":
            return True
        if not (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument"):
            continue
        if any(k.arg == "default" and EARLIER_RUN.search(ast.unparse(k.value)) for k in node.keywords):
            return True
        first = node.args[0] if node.args else None
        if (
            isinstance(first, ast.Constant)
            and isinstance(first.value, str)
            and not first.value.startswith("-")
        ):
            return True
        if any(
            k.arg == "required" and isinstance(k.value, ast.Constant) and k.value.value for k in node.keywords
        ):
            return True
    return False


def main(argv: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if any(w in s.stem for w in argv)]
    skipped = [s.name for s in scripts if needs_arguments(s)]
    scripts = [s for s in scripts if s.name not in skipped]
    RESULTS.mkdir(exist_ok=True)
    collected, failed = {}, []
    for script in scripts:
        t0 = time.perf_counter()
        print(f"== {script.name}", flush=True)
        res = subprocess.run([sys.executable, str(script)], cwd=HERE.parent)
        if res.returncode != 0:
            failed.append(script.name)
            continue
        print(f"   ({time.perf_counter() - t0:.0f} s)")
    for path in sorted(RESULTS.glob("*.json")):
        if path.name != "latest.json":
            collected[path.stem] = json.loads(path.read_text())
    (RESULTS / "latest.json").write_text(json.dumps(collected, indent=2) + "\n")
    print("\n| benchmark | figure | value |\n|---|---|---|")
    for name, data in collected.items():
        for key, value in headline(data).items():
            shown = f"{value:.3g}" if isinstance(value, float) else value
            print(f"| {name} | {key} | {shown} |")
    if skipped:
        print(f"\nskipped (they need arguments; each docstring gives its command): {', '.join(skipped)}")
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
