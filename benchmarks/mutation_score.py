"""Mutation score of the core modules, from the results of ``mutmut run`` (`make mutation`).

Reads ``mutmut results --all true``, prints per module the mutants killed, survived and
otherwise ended (no test reaches them, timeout, ...), the score ``killed / (killed + survived)``,
and every surviving mutant, marked when ``tests/MUTATION_SURVIVORS.md`` explains it (an
equivalent mutant). Exits 1 when a survivor is not explained.

    python benchmarks/mutation_score.py [--mutmut .venv/bin/mutmut]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPLAINED = ROOT / "tests" / "MUTATION_SURVIVORS.md"


def read_results(mutmut: str) -> dict[str, str]:
    """``{mutant name: status}`` of every mutant mutmut has generated."""
    output = subprocess.run([mutmut, "results", "--all", "true"], cwd=ROOT, capture_output=True, text=True, check=True)
    pairs = (line.strip().rsplit(": ", 1) for line in output.stdout.splitlines() if ": " in line)
    return {name: status for name, status in pairs}


def module_of(mutant: str) -> str:
    """``selfdetr_hf.nms.x_nms__mutmut_3`` -> ``selfdetr_hf.nms``."""
    return re.sub(r"\.(x_|xǁ)[^.]*$", "", mutant)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutmut", default=str(ROOT / ".venv" / "bin" / "mutmut"))
    args = parser.parse_args()

    results = read_results(args.mutmut)
    if not results:
        print("no mutation results: run `make mutation` first")
        return 1
    explained = set(re.findall(r"`([\w.ǁ]+__mutmut_\d+)`", EXPLAINED.read_text())) if EXPLAINED.exists() else set()
    by_module: dict[str, Counter] = defaultdict(Counter)
    for name, status in results.items():
        by_module[module_of(name)][status] += 1

    print(f"{'module':42s} {'mutants':>7s} {'killed':>7s} {'survived':>8s} {'other':>6s} {'score':>7s}")
    total = Counter()
    for module in sorted(by_module):
        counts = by_module[module]
        total += counts
        checked = counts["killed"] + counts["survived"]
        other = sum(counts.values()) - checked
        score = f"{100 * counts['killed'] / checked:6.1f}%" if checked else "      -"
        print(
            f"{module:42s} {sum(counts.values()):7d} {counts['killed']:7d} {counts['survived']:8d} {other:6d} {score}"
        )
    checked = total["killed"] + total["survived"]
    print(f"{'all':42s} {sum(total.values()):7d} {total['killed']:7d} {total['survived']:8d} "
          f"{sum(total.values()) - checked:6d} {100 * total['killed'] / max(checked, 1):6.1f}%")  # fmt: skip
    others = {status: count for status, count in total.items() if status not in ("killed", "survived")}
    if others:
        print("other outcomes:", ", ".join(f"{count} {status}" for status, count in sorted(others.items())))

    survivors = sorted(name for name, status in results.items() if status == "survived")
    unexplained = [name for name in survivors if name not in explained]
    print(
        f"\nsurvivors: {len(survivors)}, explained in {EXPLAINED.relative_to(ROOT)}: {len(survivors) - len(unexplained)}"
    )
    for name in unexplained:
        print(f"  unexplained: {name}   (mutmut show {name})")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
