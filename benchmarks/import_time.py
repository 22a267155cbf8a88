"""Time ``import rnapaint as rp`` and the first access of ``rp.pp``, ``rp.tl`` and ``rp.pl``.

Every measurement runs in a fresh subprocess (so nothing is already imported), is repeated
``--runs`` times after one untimed warm-up run (which fills the OS file cache), and is reported as
best and median. The import time is taken inside the child with ``time.perf_counter`` around the
statement; the wall time of the whole child (interpreter start included) is shown next to that of
``python -c pass``. After each statement the child reports which heavy modules are in
``sys.modules`` (the package imports its sub-packages lazily, so ``import rnapaint`` should load
none of them).

Examples
--------
::

    .venv/bin/python benchmarks/import_time.py
    .venv/bin/python benchmarks/import_time.py --runs 10 --json import_time.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("torch", "lightning", "scanpy", "anndata", "matplotlib", "sklearn")
SRC = Path(__file__).resolve().parents[1] / "src"

# Run in the child: time the setup statement, then the measured statement, report what got loaded.
CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import rnapaint as rp
t_import = time.perf_counter() - t0
before = set(sys.modules)
t0 = time.perf_counter()
{stmt}
t_stmt = time.perf_counter() - t0
heavy = {heavy!r}
print(json.dumps({{
    "import_s": t_import,
    "stmt_s": t_stmt,
    "heavy": [m for m in heavy if m in sys.modules],
    "n_new_modules": len(set(sys.modules) - before),
    "n_modules": len(sys.modules),
    "rnapaint_file": rp.__file__,
}}))
"""

CASES = {
    "import rnapaint as rp": "pass",
    "rp.pp (first access)": "rp.pp",
    "rp.tl (first access)": "rp.tl",
    "rp.pl (first access)": "rp.pl",
}


def _loadavg() -> str:
    try:
        return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:  # pragma: no cover
        return "n/a"


def _env(python: str) -> dict[str, str]:
    """The current environment, plus ``<repo>/src`` on PYTHONPATH if ``python`` cannot import rnapaint."""
    env = dict(os.environ)
    probe = subprocess.run([python, "-c", "import rnapaint"], env=env, capture_output=True)
    if probe.returncode != 0:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return env


def _run(python: str, code: str, env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"child failed ({out.returncode}):\n{out.stderr}")
    return wall, out.stdout


def _importtime_top(python: str, env: dict[str, str], stmt: str, n: int) -> list[tuple[float, str]]:
    """The ``n`` slowest outside modules that rnapaint imports for ``stmt`` (``-X importtime``).

    An outside module counts if it is not part of rnapaint and every module above it in the import
    chain is; its cumulative time covers what it imports in turn. Interpreter start-up is left out.
    """
    code = "import rnapaint as rp" + ("" if stmt == "pass" else f"; {stmt}")
    out = subprocess.run([python, "-X", "importtime", "-c", code], env=env, capture_output=True, text=True)
    parsed = []
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cum, raw = line[len("import time:") :].split("|")
        parsed.append(((len(raw) - len(raw.lstrip()) - 1) // 2, int(cum) / 1e3, raw.strip()))
    # The output is in post-order (children first), so walking it backwards meets parents first.
    chain: dict[int, str] = {}
    rows = []
    for depth, ms, name in reversed(parsed):
        chain[depth] = name
        above = [chain[d] for d in range(depth)]
        if not name.startswith("rnapaint") and above and all(a.startswith("rnapaint") for a in above):
            rows.append((ms, name))
    return sorted(rows, reverse=True)[:n]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5, help="timed runs per case (after one warm-up run)")
    p.add_argument("--python", default=sys.executable, help="interpreter to measure")
    p.add_argument("--top", type=int, default=8, help="show the N slowest outside imports per case (0: none)")
    p.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = p.parse_args(argv)

    env = _env(args.python)
    info = subprocess.run(
        [args.python, "-c", "import sys, platform; print(platform.python_version(), sys.executable)"],
        env=env,
        capture_output=True,
        text=True,
    ).stdout.strip()
    print(
        f"python {info}; PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}; "
        f"{platform.platform()}   [load {_loadavg()}]"
    )
    if "PYTHONPATH" in env and str(SRC) in env["PYTHONPATH"].split(os.pathsep):
        print(f"rnapaint is not installed for {args.python}: using {SRC}")

    results: dict[str, dict] = {}
    # Interpreter start alone, as the baseline of the wall times.
    walls = [_run(args.python, "pass", env)[0] for _ in range(args.runs + 1)][1:]
    results["python -c pass"] = {"wall_s": walls, "in_process_s": None, "heavy": []}
    for label, stmt in CASES.items():
        code = CHILD.format(stmt=stmt, heavy=HEAVY)
        walls, inproc, heavy, new = [], [], None, None
        for i in range(args.runs + 1):
            wall, out = _run(args.python, code, env)
            r = json.loads(out.strip().splitlines()[-1])
            if i == 0:  # warm-up: file cache
                continue
            walls.append(wall)
            inproc.append(r["import_s"] if stmt == "pass" else r["stmt_s"])
            heavy, new = r["heavy"], r["n_new_modules"] if stmt != "pass" else r["n_modules"]
        results[label] = {"wall_s": walls, "in_process_s": inproc, "heavy": heavy, "modules": new}
        print(
            f"{label}: best {min(inproc) * 1e3:.1f} ms, median {statistics.median(inproc) * 1e3:.1f} ms "
            f"in process; heavy modules loaded: {', '.join(heavy) or 'none'}   [load {_loadavg()}]"
        )

    top: dict[str, list[tuple[float, str]]] = {}
    if args.top:
        print("\nslowest outside imports, cumulative ms (-X importtime, one run each, overhead included):")
        for label, stmt in CASES.items():
            top[label] = _importtime_top(args.python, env, stmt, args.top)
            shown = ", ".join(f"{name} {ms:.0f}" for ms, name in top[label]) or "none"
            print(f"  {label}: {shown}")

    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {"python": info, "loadavg": _loadavg(), "runs": args.runs, "results": results, "top": top},
                indent=2,
            )
        )
        print(f"wrote {args.json}")

    print(
        f"\n{args.runs} fresh subprocesses per row after 1 warm-up; in-process time of the statement "
        f"(rp.X rows: after `import rnapaint as rp`); load at the end {_loadavg()}\n"
    )
    head = ["statement", "best (ms)", "median (ms)", "child wall best/median (ms)", *HEAVY]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for label, r in results.items():
        ip = r["in_process_s"]
        cells = [
            label,
            f"{min(ip) * 1e3:.1f}" if ip else "–",
            f"{statistics.median(ip) * 1e3:.1f}" if ip else "–",
            f"{min(r['wall_s']) * 1e3:.0f} / {statistics.median(r['wall_s']) * 1e3:.0f}",
            *(("–" if ip is None else ("yes" if m in r["heavy"] else "no")) for m in HEAVY),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    print("\n".join(lines))
    return results


if __name__ == "__main__":
    main()
