"""A read's fixed cost: everything but the model (start-up, study load, selection, tools,
reports, DICOM outputs, exit) of `edge-agent read --policy protocol`, split per stage, for a
5- and a 300-slice CT, with each process's peak memory.

    .venv/bin/python benchmarks/read.py [--slices 5 300] [--rounds 3] [--baseline TREE]
        [--source 693_UNCR.dcm]

Each read is the console script's own path in a fresh process (`python -m edge_agent.cli read`),
so imports and interpreter exit count as a user pays them. The stages are marked from inside by
wrapping the functions `edge_agent.read.read_study` calls (the code under test is not changed):
start (interpreter up to the first line), imports, load (files -> Study), select, setup
(toolbox, policy, shown images), agent (the protocol's tools), evidence + reports (PNG, JSON,
HTML), dicom (headers + SR/SEG/SC/KO), cli (the rest of the command), exit (interpreter
shutdown, seen from outside). With `--baseline TREE` (another checkout, e.g. the main branch)
the same reads of the same files run from TREE too, interleaved round by round, and the ratio
ours/baseline is printed per stage. The series is SOURCE (a 512x512 CT in pydicom-data) copied
with new UIDs and slice positions. Not a test."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
STAGES = ("start", "imports", "load", "select", "setup", "agent", "reports", "dicom", "cli")
WRAPPED = {  # edge_agent.read's names: the stages that end when each is called and returns
    "load_study": (None, "load"),
    "select": (None, "select"),
    "run": ("setup", "agent"),
    "write_reports": (None, "reports"),
    "write_dicom": (None, "dicom"),
}


def make_series(folder: Path, count: int, source: str) -> Path:
    """`count` slices of one new CT series from one pydicom-data slice, 1 mm apart."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    ds = pydicom.dcmread(get_testdata_file(source, download=False))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.FrameOfReferenceUID = generate_uid()  # every acquired CT series has one
    z = float(ds.ImagePositionPatient[2])
    for i in range(count):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [*ds.ImagePositionPatient[:2], z + i]
        ds.save_as(folder / f"{i:04d}.dcm", enforce_file_format=True)
    return folder


def child(study: str, out: str, marks: str) -> None:
    """One read as the console script runs it, with a timestamp written when each stage ends."""
    with open(marks, "a") as sink:

        def mark(stage: str) -> None:
            sink.write(f"{stage} {time.time()}\n")
            sink.flush()

        mark("start")
        import edge_agent.cli as cli
        import edge_agent.read as read

        mark("imports")
        for name, (called, returned) in WRAPPED.items():
            setattr(read, name, _marked(getattr(read, name), called, returned, mark))
        sys.argv = ["edge-agent", "read", study, "--policy", "protocol", "-o", out]
        try:
            cli.main()
        finally:
            mark("cli")


def _marked(function, called: str | None, returned: str, mark):
    def wrapper(*args, **kwargs):
        if called:
            mark(called)
        try:
            return function(*args, **kwargs)
        finally:
            mark(returned)

    return wrapper


def one_read(tree: Path, study: Path, scratch: Path) -> dict[str, float]:
    """Seconds per stage and peak memory (MiB) of one read run from `tree`."""
    marks = scratch / "marks.txt"
    marks.unlink(missing_ok=True)
    out = Path(tempfile.mkdtemp(dir=scratch))
    env = {**os.environ, "PYTHONPATH": str(tree)}
    # -P: benchmarks/ (whose tools.py would shadow the tools package) is not put on sys.path
    script = str(Path(__file__).resolve())
    command = [sys.executable, "-P", script, "--child", str(study), str(out)]
    began = time.time()
    process = subprocess.Popen(
        [*command, str(marks)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(process.pid, 0)
    ended = time.time()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"read from {tree} failed: {process.stderr.read().decode()[-800:]}")
    times = dict(line.split() for line in marks.read_text().splitlines())
    result, last = {}, began
    for stage in STAGES:
        if stage in times:
            result[stage] = float(times[stage]) - last
            last = float(times[stage])
    result["exit"] = ended - last
    result["total"] = ended - began
    result["peak MiB"] = usage.ru_maxrss / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, nargs="+", default=[5, 300])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="another checkout to compare against")
    parser.add_argument("--source", default="693_UNCR.dcm", help="a pydicom test file")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    trees = {"ours": HERE} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    with tempfile.TemporaryDirectory(prefix="edge-agent-read-bench-") as scratch:
        root = Path(scratch)
        studies = {n: make_series(root / f"ct{n}", n, args.source) for n in args.slices}
        samples: dict = {}
        for _ in range(args.rounds):  # interleaved: a busy moment falls on every tree alike
            for slices, study in studies.items():
                for name, tree in trees.items():
                    result = one_read(tree, study, root)
                    samples.setdefault((slices, name), []).append(result)
    print(f"{args.source} series, `read --policy protocol`, {os.cpu_count()} CPU(s), ", end="")
    print(f"median of {args.rounds} interleaved round(s), seconds (total: min/median/max)")
    for slices in studies:
        report(slices, {name: samples[(slices, name)] for name in trees})


def report(slices: int, runs: dict[str, list[dict]]) -> None:
    columns = [*STAGES, "exit", "total", "peak MiB"]
    medians = {
        name: {c: statistics.median(r.get(c, 0.0) for r in results) for c in columns}
        for name, results in runs.items()
    }
    print(f"\n{slices} slices")
    print(f"{'stage':<10}" + "".join(f"{name:>12}" for name in runs) + ("  ours/baseline"))
    for column in columns:
        values = [medians[name][column] for name in runs]
        form = ".0f" if column == "peak MiB" else ".3f"
        line = f"{column:<10}" + "".join(f"{v:>12{form}}" for v in values)
        if len(values) == 2 and values[1] > 0.0005:
            line += f"  {values[0] / values[1]:>12.2f}x"
        print(line)
    for name, results in runs.items():
        totals = sorted(r["total"] for r in results)
        spread = f"{totals[0]:.2f}/{statistics.median(totals):.2f}/{totals[-1]:.2f}"
        print(f"  {name}: total min/median/max {spread} s")


if __name__ == "__main__":
    main()
