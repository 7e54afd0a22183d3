"""What every benchmark script shares: progress lines, memory readings, fresh child processes.

Each measurement runs in a child started with multiprocessing's "spawn" method, so that
it begins with a fresh interpreter: no memory high-water mark, threads or imports carried
over from the parent or from the other package. The scripts import this module by its
bare name; running ``python benchmarks/NAME.py`` puts this folder on ``sys.path``, and
spawned children inherit that path.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import sys
import time
import traceback
from pathlib import Path

#: thread settings a script exports before spawning, so the children inherit them
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
#: the MD17 ethanol files of the workplace's shared data (``shared/data/README.md``),
#: next to the repository
RMD17 = Path(__file__).resolve().parents[2] / "shared" / "data" / "rmd17"


def log(message: str) -> None:
    """Progress to stderr, so that stdout holds only the table."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cores() -> int:
    """CPU cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def set_threads(threads: int) -> None:
    """Threads of torch's CPU kernels in this process."""
    import torch

    torch.set_num_threads(threads)


def add_rmd17_arguments(parser, n_train: int = 1000) -> None:
    """``--train``, ``--test``, ``--labels`` and ``--n-train``: which MD17 frames a benchmark uses."""
    parser.add_argument("--train", type=Path, default=RMD17 / "ethanol_train.npz")
    parser.add_argument("--test", type=Path, default=RMD17 / "ethanol_test.npz")
    parser.add_argument(
        "--labels",
        choices=("old", "revised"),
        default="old",
        help="old: the original MD17 labels (those of the published figures); revised: rMD17",
    )
    parser.add_argument(
        "--n-train", type=int, default=n_train, help="first N frames of the training file"
    )


def load_rmd17(args):
    """The files named by :func:`add_rmd17_arguments`: whole training file and test file.

    Datasets in eV and Å (``mlffkit.load`` converts MD17's kcal/mol); exits with a message
    for a missing file or an ``--n-train`` larger than the training file.
    """
    from mlffkit.data import load

    for path in (args.train, args.test):
        if not Path(path).is_file():
            raise SystemExit(f"no data file at {path}; pass --train/--test (rMD17-style npz files)")
    train = load(args.train, labels=args.labels)
    if args.n_train > len(train):
        raise SystemExit(
            f"--n-train {args.n_train} exceeds the {len(train)} frames of {args.train}"
        )
    return train, load(args.test, labels=args.labels)


def check_target(ratio: float, op: str, bound: float) -> dict:
    """``{"target": "op bound", "met": bool}`` for a ratio mlffkit/peer and its target."""
    if op not in ("<=", ">="):
        raise ValueError(f"a target compares with <= or >=, not {op!r}")
    met = ratio <= bound if op == "<=" else ratio >= bound
    return {"target": f"{op} {bound:g}", "met": bool(met)}


# ---------------------------------------------------------------------------- memory
def status_mb(key: str) -> float | None:
    """A ``/proc/self/status`` memory entry (``VmHWM``, ``VmRSS``) in MB, None off Linux."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def peak_rss_mb() -> float:
    """This process's resident-set high-water mark, MB.

    ``VmHWM`` belongs to the process's own address space, which ``exec`` renews, so a
    spawned child does not inherit its parent's peak (``getrusage``'s ``ru_maxrss``
    survives ``exec`` on Linux and would). ``ru_maxrss`` is the fallback elsewhere.
    """
    hwm = status_mb("VmHWM")
    if hwm is not None:
        return hwm
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1024**2


def rss_mb() -> float:
    """Current resident set, MB (NaN where unknown)."""
    value = status_mb("VmRSS")
    return float("nan") if value is None else value


# ---------------------------------------------------------------------------- children
class ChildDied(RuntimeError):
    """The child ended without a result (killed, most likely for memory)."""

    def __init__(self, exitcode: int | None):
        super().__init__(f"died with exit code {exitcode} (killed for memory?)")
        self.exitcode = exitcode


class ChildFailed(RuntimeError):
    """The child raised; the message holds its exception and traceback."""


def _child(fn, job: dict, conn) -> None:
    try:
        conn.send(("ok", fn(job)))
    except BaseException as err:  # reported by the parent, which decides what to do
        conn.send(("error", f"{type(err).__name__}: {err}\n{traceback.format_exc()}"))
    finally:
        conn.close()


def run_in_child(fn, job: dict) -> dict:
    """``fn(job)`` in a fresh spawned process; its (picklable) result.

    ``fn`` must be a module-level function of the script (spawn re-imports the script
    in the child to find it).

    Raises
    ------
    ChildDied
        When the child ends without sending a result.
    ChildFailed
        When ``fn`` raised in the child.
    """
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(fn, job, send))
    process.start()
    send.close()
    try:
        status, payload = receive.recv()
    except EOFError:
        process.join()
        raise ChildDied(process.exitcode) from None
    process.join()
    if status != "ok":
        raise ChildFailed(payload)
    return payload
