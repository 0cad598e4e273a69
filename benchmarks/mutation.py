"""Mutation testing: how many plausible one-line bugs the suite catches, per module where a silent bug costs most.

Runs mutmut (configured in pyproject.toml's [tool.mutmut]: which modules, which tests) and reports, per module,
mutants killed, survived and never reached by a test, and the score

    killed / (mutants - judged equivalent)

(timeouts count as killed: the mutant hung the tests). Survivors judged equivalent (no test could tell them from
the original: the same behaviour by another route) are listed with the reason in benchmarks/mutation_equivalent.yaml,
matched by module, function and the mutated line, so they survive renumbering. Every other survivor is listed in
the report with its diff: each is a test to write or an equivalence to argue.

Only in-process tests can kill a mutant (a subprocess imports the package unmutated), so the tests selected are
the unit tests. mutmut keeps its state in mutants/ and re-tests only what changed since its last run.

Run: make mutate   (or .venv/bin/python benchmarks/mutation.py [--no-run]) -> results/mutation.{json,md}
"""

from __future__ import annotations

import argparse
import ast
import difflib
import fnmatch
import json
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
EQUIVALENT = REPO / "benchmarks" / "mutation_equivalent.yaml"
MUTMUT = Path(sys.executable).with_name("mutmut")
TARGET_SCORE = 0.90
_NAME = re.compile(r"^(?P<module>[\w.]+?)\.x(?:ǁ(?P<cls>\w+)ǁ|_)(?P<func>\w+?)__mutmut_(?P<n>\d+)$")


@dataclass(frozen=True)
class Mutant:
    name: str
    module: str
    function: str
    status: str
    #: the original and mutated source lines ("-" and "+" lines of mutmut's diff)
    removed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()


def log(message: str) -> None:
    print(f"[mutate] {message}", flush=True)


def run_mutmut() -> None:
    env = dict(os.environ)
    # the tests run inside mutants/: tell them where the shared photos and weights are
    env.setdefault("ANDI_EDGE_SHARED", str((REPO.parent / "shared").resolve()))
    jobs = str(max(1, os.cpu_count() or 1))
    log(f"mutmut run --max-children {jobs} (progress in mutants/run.log)")
    (REPO / "mutants").mkdir(exist_ok=True)
    with (REPO / "mutants" / "run.log").open("wb") as out:
        command = [str(MUTMUT), "run", "--max-children", jobs]
        done = subprocess.run(command, cwd=REPO, env=env, stdout=out, stderr=out, check=False)
    if done.returncode != 0:
        tail = (REPO / "mutants" / "run.log").read_bytes()[-3000:].decode(errors="replace")
        raise SystemExit(f"mutmut run failed ({done.returncode}):\n{tail}")


def statuses() -> dict[str, str]:
    text = subprocess.run(
        [str(MUTMUT), "results", "--all", "true"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    found = {}
    for line in text.splitlines():
        name, sep, status = line.strip().partition(": ")
        if sep:
            found[name] = status.strip()
    return found


class Diffs:
    """Each mutant's changed lines, read from mutmut's trampolined copy (mutants/PATH.py holds the original of
    each function as ``NAME__mutmut_orig`` beside ``NAME__mutmut_N``): one parse per module, not one
    `mutmut show` per mutant."""

    def __init__(self) -> None:
        self._functions: dict[str, dict[str, str]] = {}

    def _module(self, module: str) -> dict[str, str]:
        if module not in self._functions:
            path = REPO / "mutants" / (module.replace(".", "/") + ".py")
            source = path.read_text()
            lines = source.splitlines()
            self._functions[module] = {
                node.name: "\n".join(lines[node.lineno - 1 : node.end_lineno])
                for node in ast.walk(ast.parse(source))
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and "__mutmut_" in node.name
            }
        return self._functions[module]

    def of(self, mutant: Mutant) -> tuple[tuple[str, ...], tuple[str, ...]]:
        local = mutant.name[len(mutant.module) + 1 :]
        functions = self._module(mutant.module)
        original = functions.get(local.rsplit("__mutmut_", 1)[0] + "__mutmut_orig", "").splitlines()
        mutated = functions.get(local, "").splitlines()
        removed, added = [], []
        for line in difflib.unified_diff(original[1:], mutated[1:], lineterm="", n=0):
            if line.startswith(("---", "+++", "@@")):
                continue
            (removed if line.startswith("-") else added).append(line[1:].strip())
        return tuple(removed), tuple(added)


def parse(name: str, status: str) -> Mutant:
    match = _NAME.match(name)
    if match is None:
        return Mutant(name, name.rsplit(".", 1)[0], "?", status)
    function = match["func"] if match["cls"] is None else f"{match['cls']}.{match['func']}"
    return Mutant(name, match["module"], function, status)


def load_equivalent() -> list[dict[str, Any]]:
    """Each entry: ``module`` and ``function`` (globs), ``why``, and what it matches: ``mutated`` (text in a
    mutated line) or ``case_only: true`` (the mutant changes only letter case), optionally narrowed by
    ``original_matches`` (a regex the original line must match, e.g. SQL, whose keywords and names are
    case-insensitive)."""
    entries: list[dict[str, Any]] = yaml.safe_load(EQUIVALENT.read_text()) or []
    for e in entries:
        missing = {"module", "function", "why"} - set(e)
        if missing or ("mutated" in e) == bool(e.get("case_only")):
            raise SystemExit(f"{EQUIVALENT}: an entry needs module, function, why and one of mutated/case_only: {e}")
    return entries


def _matches(mutant: Mutant, e: dict[str, Any]) -> bool:
    if not fnmatch.fnmatchcase(mutant.module, e["module"]) or not fnmatch.fnmatchcase(mutant.function, e["function"]):
        return False
    if "original_matches" in e and not any(re.search(e["original_matches"], line) for line in mutant.removed):
        return False
    if e.get("case_only"):
        return len(mutant.removed) == len(mutant.added) > 0 and all(
            a != b and a.lower() == b.lower() for a, b in zip(mutant.removed, mutant.added, strict=True)
        )
    return any(e["mutated"] in line for line in mutant.added)


def equivalence(mutant: Mutant, entries: list[dict[str, Any]]) -> int | None:
    """The index of the first entry that judges this survivor equivalent."""
    return next((i for i, e in enumerate(entries) if _matches(mutant, e)), None)


def report(mutants: list[Mutant], entries: list[dict[str, Any]]) -> dict[str, Any]:
    by_module: dict[str, list[Mutant]] = defaultdict(list)
    for m in mutants:
        by_module[m.module].append(m)
    modules = {}
    used: set[int] = set()
    for module, items in sorted(by_module.items()):
        counts = Counter(m.status for m in items)
        survivors, equivalent = [], []
        for m in items:
            if m.status in ("survived", "no tests"):
                index = equivalence(m, entries)
                if index is None:
                    survivors.append(m)
                else:
                    equivalent.append((m, entries[index]["why"]))
                    used.add(index)
        killed = counts["killed"] + counts["timeout"]
        denominator = len(items) - len(equivalent)
        modules[module] = {
            "mutants": len(items),
            "killed": counts["killed"],
            "timeout": counts["timeout"],
            "survived": counts["survived"],
            "no_tests": counts["no tests"],
            "other": len(items) - sum(counts[s] for s in ("killed", "timeout", "survived", "no tests")),
            "equivalent": len(equivalent),
            "score": round(killed / denominator, 4) if denominator else 1.0,
            "survivors": [
                {"function": m.function, "status": m.status, "original": list(m.removed), "mutated": list(m.added)}
                for m in survivors
            ],
            "equivalent_survivors": [
                {"function": m.function, "mutated": list(m.added), "why": why} for m, why in equivalent
            ],
        }
    stale = [e for i, e in enumerate(entries) if i not in used]
    return {"when": datetime.now(UTC).isoformat(timespec="seconds"), "target": TARGET_SCORE, "modules": modules,
            "unused_equivalences": stale}  # fmt: skip


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Mutation testing (mutmut)",
        "",
        f"Run {result['when']} by `make mutate` on the unit tests. Score = killed / (mutants - judged equivalent);",
        f"target {result['target']:.0%}. Timeouts count as killed. *No tests*: no selected test reaches the code.",
        "",
        "| module | mutants | killed | survived | no tests | equivalent | score |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for module, m in result["modules"].items():
        flag = "" if m["score"] >= result["target"] else " (below target)"
        lines.append(
            f"| `{module}` | {m['mutants']} | {m['killed'] + m['timeout']} | {m['survived']} | {m['no_tests']} "
            f"| {m['equivalent']} | {m['score']:.1%}{flag} |"
        )
    for module, m in result["modules"].items():
        if m["equivalent_survivors"]:
            lines += ["", f"## `{module}`: survivors judged equivalent", ""]
            grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for s in m["equivalent_survivors"]:
                grouped[s["why"]].append(s)
            for why, group in grouped.items():
                shown = "; ".join(f"`{s['function']}`: `{' / '.join(s['mutated'])[:100]}`" for s in group[:3])
                more = f" (and {len(group) - 3} more)" if len(group) > 3 else ""
                lines.append(f"- {why} **{len(group)}** mutant(s), e.g. {shown}{more}")
        if m["survivors"]:
            lines += ["", f"## `{module}`: survivors not yet killed", ""]
            for s in m["survivors"]:
                change = f"`{' / '.join(s['original'])}` -> `{' / '.join(s['mutated'])}`"
                lines.append(f"- `{s['function']}` ({s['status']}): {change}")
    if result["unused_equivalences"]:
        lines += ["", "## Equivalences that matched no survivor (stale: remove them)", ""]
        lines += [f"- {e['module']} `{e['function']}`: {e['why']}" for e in result["unused_equivalences"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-run", action="store_true", help="report mutmut's last run without running it")
    args = parser.parse_args()
    if not MUTMUT.exists():
        raise SystemExit(f"mutmut is not installed beside {sys.executable}: run `make venv` (dev extra)")
    if not args.no_run:
        run_mutmut()
    entries = load_equivalent()
    mutants = []
    diffs = Diffs()
    for name, status in statuses().items():
        m = parse(name, status)
        if status in ("survived", "no tests"):
            removed, added = diffs.of(m)
            m = Mutant(m.name, m.module, m.function, status, removed, added)
        mutants.append(m)
    if not mutants:
        raise SystemExit("mutmut reported no mutants: run without --no-run first")
    result = report(mutants, entries)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "mutation.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "mutation.md").write_text(markdown(result))
    for module, m in result["modules"].items():
        log(f"{module}: {m['score']:.1%} of {m['mutants'] - m['equivalent']} ({m['survived']} survived, "
            f"{m['no_tests']} without tests, {m['equivalent']} equivalent)")  # fmt: skip
    log(f"-> {RESULTS / 'mutation.md'}")


if __name__ == "__main__":
    main()
