"""A read's fixed cost: everything but the model (start-up, study load, selection, tools,
reports, DICOM outputs, exit) of `edge-agent read --policy protocol`, split per stage, for a
5- and a 300-slice CT, with each process's peak memory.

    .venv/bin/python benchmarks/read.py [--slices 5 300] [--rounds 3] [--baseline TREE]
        [--source 693_UNCR.dcm]

Each read is the console script's own path in a fresh process (`python -m edge_agent.cli read`),
so imports and interpreter exit count as a user pays them. The stages are marked from inside by
wrapping the functions `edge_agent.read.read_study` calls (the code under test is not changed):
start (interpreter up to the first line), imports (the console script's, up to main() having
imported the command's modules), parse (the command line and the settings), load (files ->
Study), select, setup
(toolbox, policy, shown images), agent (the protocol's tools), evidence + reports (PNG, JSON,
HTML), dicom (headers + SR/SEG/SC/KO), cli (the rest of the command), exit (interpreter
shutdown, seen from outside). Then the service's side: a reader opened as `serve` opens it (with
its warm-up, where the tree has one), then two reads of the study in that process, each split the
same way: what the gateway pays per study once its process is up. With `--baseline TREE`
(another checkout, e.g. the main branch) the same reads of the same files run from TREE too,
interleaved round by round, and the ratio ours/baseline is printed per stage. Modules run from
bytecode, as an installed package's do: it is cached outside the trees (whatever
PYTHONDONTWRITEBYTECODE says), written by one untimed read per tree. The series is SOURCE (a
512x512 CT in pydicom-data; CT_small.dcm has a vendor's 258-element header) copied with new
UIDs and slice positions. The reads run with this interpreter: run it with one installed as the
bundle installs a workstation (`pip install '.[llm]' pydicom-data`, pydicom-data for SOURCE) to
measure what a site runs; a development environment with the test extras has requests and tqdm,
which pydicom imports at start when they are there (~50 ms more). Not a test."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
# what pydicom imports when it is installed (for downloads of its test data): the dicomweb and
# eval extras bring them, a workstation's bundle does not
OPTIONAL_AT_START = ("requests", "tqdm")
READ_STAGES = ("load", "select", "setup", "agent", "reports", "dicom")  # read_study's
STAGES = ("start", "imports", "parse", *READ_STAGES, "cli")
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


def child(mode: str, study: str, out: str, marks: str) -> None:
    """One read as the console script runs it (`cli`), or a reader opened as `serve` opens it
    and then two reads of the study (`service`); a timestamp is written as each stage ends."""
    with open(marks, "a") as sink:
        prefix = [""]

        def mark(stage: str, value: object = None) -> None:
            sink.write(f"{prefix[0]}{stage} {time.time() if value is None else value}\n")
            sink.flush()

        mark("start")
        if mode == "service":
            service(study, out, mark, prefix)
            return
        import edge_agent.cli.app as app  # what `python -m edge_agent.cli` imports first

        # The console script imports the command's modules in main() (make_app): imports end
        # when it returns, as main() leaves them (with whatever it does to the collector).
        made = app.make_app

        def make_app(*args, **kwargs):
            made_app = made(*args, **kwargs)
            mark("imports")
            _wrap_stages(mark)
            import edge_agent.cli.read as command  # the command line is parsed when it is called

            command.read_and_show = _marked(command.read_and_show, "parse", None, mark)
            return made_app

        app.make_app = make_app
        sys.argv = ["edge-agent", "read", study, "--policy", "protocol", "-o", out]
        try:
            app.main()
        finally:
            mark("cli")


def service(study: str, out: str, mark, prefix: list[str]) -> None:
    """A reader opened as `serve` opens it (the command's imports under the console script's
    collector settings, where the tree has them; the warm-up, where it has one), then two reads
    of the study."""
    import edge_agent.cli.app as app

    # the name it had in older trees too, so a baseline runs under its own settings
    paused = getattr(app, "collector_paused", None) or getattr(
        app, "_collector_paused", contextlib.nullcontext
    )
    with paused():
        app.make_app(["serve"])
    from edge_agent.cli.config import FileConfig
    from edge_agent.cli.gateway_reader import AgentReader

    mark("imports")
    _wrap_stages(mark)
    prefix[0] = "open."  # the reader's warm-up read, where there is one
    reader = AgentReader(FileConfig())
    prefix[0] = ""
    mark("open")
    for number in (1, 2):
        prefix[0] = f"r{number}."
        reader.read(Path(study), Path(out) / str(number))
    reader.close()


def _wrap_stages(mark) -> None:
    import edge_agent.read as read

    mark("tree", Path(read.__file__).resolve().parents[1])  # whose code this process runs
    for name, (called, returned) in WRAPPED.items():
        setattr(read, name, _marked(getattr(read, name), called, returned, mark))


def _marked(function, called: str | None, returned: str | None, mark):
    def wrapper(*args, **kwargs):
        if called:
            mark(called)
        try:
            return function(*args, **kwargs)
        finally:
            if returned:
                mark(returned)

    return wrapper


MODES = ("cli", "service")


def one_read(tree: Path, study: Path, scratch: Path, mode: str = "cli") -> dict[str, float]:
    """Seconds per stage and peak memory (MiB) of one read run from `tree`."""
    marks = scratch / "marks.txt"
    marks.unlink(missing_ok=True)
    out = Path(tempfile.mkdtemp(dir=scratch))
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONPYCACHEPREFIX": str(scratch / "pycache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    # -P: benchmarks/ (whose tools.py would shadow the tools package) is not put on sys.path
    script = str(Path(__file__).resolve())
    command = [sys.executable, "-P", script, "--child", mode, str(study), str(out)]
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
    ran = Path(times.pop("tree"))
    if ran != tree:
        raise RuntimeError(f"the read meant for {tree} ran the code of {ran}")
    if mode == "service":
        return service_stages(times) | {"peak MiB": usage.ru_maxrss / 1024}
    result, last = {}, began
    for stage in STAGES:
        if stage in times:
            result[stage] = float(times[stage]) - last
            last = float(times[stage])
    result["exit"] = ended - last
    result["total"] = ended - began
    result["peak MiB"] = usage.ru_maxrss / 1024
    return result


def service_stages(times: dict[str, str]) -> dict[str, float]:
    """Reader open (with its warm-up, if any), then each read's stages and total."""
    at = {name: float(value) for name, value in times.items()}
    result = {"open": at["open"] - at["imports"]}
    for number in (1, 2):
        last = first = at["open"] if number == 1 else at["r1.dicom"]
        for stage in READ_STAGES:
            name = f"r{number}.{stage}"
            if name in at:
                result[name] = at[name] - last
                last = at[name]
        result[f"r{number}.total"] = last - first
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, nargs="+", default=[5, 300])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="another checkout to compare against")
    parser.add_argument("--source", default="693_UNCR.dcm", help="a pydicom test file")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # its tree comes from PYTHONPATH alone: HERE is not put before it
        child(*args.child)
        return
    sys.path.insert(0, str(HERE))
    trees = {"ours": HERE} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    with tempfile.TemporaryDirectory(prefix="edge-agent-read-bench-") as scratch:
        root = Path(scratch)
        studies = {n: make_series(root / f"ct{n}", n, args.source) for n in args.slices}
        # untimed, in both modes (the service imports modules the CLI does not): writes the
        # bytecode the timed reads start from, so no tree's first read pays for compiling
        for tree in trees.values():
            for mode in MODES:
                one_read(tree, studies[min(studies)], root, mode)
        samples: dict = {}
        for _ in range(args.rounds):  # interleaved: a busy moment falls on every tree alike
            for slices, study in studies.items():
                for name, tree in trees.items():
                    for mode in MODES:
                        result = one_read(tree, study, root, mode)
                        samples.setdefault((mode, slices, name), []).append(result)
    print(f"{args.source} series, `read --policy protocol`, {os.cpu_count()} CPU(s), ", end="")
    print(f"median of {args.rounds} interleaved round(s), seconds (total: min/median/max)")
    present = [name for name in OPTIONAL_AT_START if importlib.util.find_spec(name)]
    print(f"{sys.executable}; imported by pydicom at start: {', '.join(present) or 'none'}")
    for slices in studies:
        report(f"{slices} slices, `edge-agent read`", _runs(samples, "cli", slices, trees))
    for slices in studies:
        title = f"{slices} slices, service: reader open (+ warm-up), then read 1 and read 2"
        report(title, _runs(samples, "service", slices, trees))


def _runs(samples: dict, mode: str, slices: int, trees: dict) -> dict[str, list[dict]]:
    return {name: samples[(mode, slices, name)] for name in trees}


def report(title: str, runs: dict[str, list[dict]]) -> None:
    columns = list(dict.fromkeys(column for results in runs.values() for column in results[0]))
    medians = {
        name: {c: statistics.median(r.get(c, 0.0) for r in results) for c in columns}
        for name, results in runs.items()
    }
    print(f"\n{title}")
    print(f"{'stage':<12}" + "".join(f"{name:>12}" for name in runs) + ("  ours/baseline"))
    for column in columns:
        values = [medians[name][column] for name in runs]
        form = ".0f" if column == "peak MiB" else ".3f"
        line = f"{column:<12}" + "".join(f"{v:>12{form}}" for v in values)
        if len(values) == 2 and values[1] > 0.0005:
            line += f"  {values[0] / values[1]:>12.2f}x"
        print(line)
    from benchmarks.spread import spread

    for name, results in runs.items():
        totals = [r.get("total", r.get("r1.total", 0.0)) for r in results]
        print(f"  {name}: total min/median/max {spread(totals)} s")


if __name__ == "__main__":
    main()
