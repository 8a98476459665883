"""The mutation score of each mutated module, and its surviving mutants, from mutmut's results.

Run by ``make mutation`` in its working directory (test-output/mutation), after ``mutmut run``:
it reads ``mutants/**/*.py.meta``, mutmut's record of each mutant's test exit code, and prints a
Markdown table (docs/testing.md keeps the measured one). errors.py and payloads.py are scored
together, as issue 15 set their goal.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

# mutmut's exit codes (mutmut.stats.status_by_exit_code): 1 and 3 kill a mutant, 0 is a survivor.
KILLED = {1, 3}
SURVIVED = {0}
NO_TESTS = {5, 33}
TIMEOUT = {24, -24, 36, 152, 255}
GROUPS = {"errors.py": "errors.py + payloads.py", "payloads.py": "errors.py + payloads.py"}


def main() -> None:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    survivors: dict[str, list[str]] = defaultdict(list)
    for meta in sorted(Path("mutants").rglob("*.py.meta")):
        module = meta.name.removesuffix(".meta")
        group = GROUPS.get(module, module)
        for mutant, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            kind = ("killed" if code in KILLED else "survived" if code in SURVIVED else "no tests" if code in NO_TESTS
                    else "timeout" if code in TIMEOUT else "not checked" if code is None else f"exit {code}")
            counts[group][kind] += 1
            if kind in ("survived", "no tests"):
                survivors[group].append(f"{mutant} ({kind})")
    print("| module | mutants | killed | survived | no tests | timeout | score |")
    print("|---|---|---|---|---|---|---|")
    for group, count in sorted(counts.items()):
        total = sum(count.values()) - count["not checked"]  # MUTANTS= narrowed the run
        if not total:
            continue
        # A timeout is a kill: the mutant made the tests hang, which a run would notice.
        caught = count["killed"] + count["timeout"]
        print(f"| `{group}` | {total} | {count['killed']} | {count['survived']} | {count['no tests']} | "
              f"{count['timeout']} | {100 * caught / total:.0f}% |")
    for group, names in sorted(survivors.items()):
        print(f"\n{group}:")
        for name in names:
            print(f"- {name}")


if __name__ == "__main__":
    main()
