"""Naive dense autodiff vs matrix-free products for GDML-type kernels: time and peak memory.

For ``M`` training frames of the bundled ethanol (``mlffkit.data.load("ethanol_gfn2")``,
N = 9 atoms, kernel size n = 27 M) and the inverse-distance descriptor written as a
plain torch function, three ways to do the two operations a GDML model is made of:

``naive AD``
    every (3N × 3N) kernel block by ``jacfwd(jacrev(k(D(r), D(r'))))``
    (:func:`mlffkit.kernels.autodiff.hessian_blocks`), then a dense product;
``matrix-free AD``
    forward-mode tangents of the descriptor, directional kernel derivatives in descriptor
    space, one reverse pass per row frame (:class:`~mlffkit.kernels.autodiff.AutoDiffKernelOperator`,
    :func:`~mlffkit.kernels.autodiff.kernel_rows`); no block is formed;
``analytic``
    the hand-derived inverse-distance GDML kernel of :mod:`mlffkit.kernels.gdml`
    (its matrix-free :class:`~mlffkit.kernels.gdml.GDMLKernelOperator` for the product,
    :func:`~mlffkit.kernels.gdml.predict_descriptor_space` for prediction), for reference.

Operations (the coefficients are random: timing does not depend on them):

* **training product**: one kernel–vector product ``K v`` over the training set, the step
  of which CG takes one per iteration (naive: the dense ``K`` is formed first);
* **force prediction** for ``--n-predict`` new frames: ``f = K(new, train) alpha``.

Each (method, M) runs in a fresh child process (multiprocessing "spawn"), warmed up on a
tiny problem first; time is the best of ``--repeats``, peak memory the growth of the
process's resident-set high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs``)
over the operation. Run from the repository root, on an idle machine::

    OMP_NUM_THREADS=1 python benchmarks/autodiff_kernels.py              # a few minutes
    python benchmarks/autodiff_kernels.py --sizes 50,100,200,400 --naive-max 200 --json ad.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from _harness import THREAD_VARIABLES, ChildDied, ChildFailed, log, run_in_child, status_mb

METHODS = ("naive AD", "matrix-free AD", "analytic")


# ---------------------------------------------------------------------------- memory
def _reset_peak() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux ≥ 4.0); False if impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def measure(fn, repeats: int) -> tuple[float, float]:
    """Best wall time (s) of ``repeats`` calls and the peak resident-set growth (MB) of one."""
    import gc

    gc.collect()
    can_reset = _reset_peak()
    before = status_mb("VmRSS")
    start = time.perf_counter()
    fn()
    best = time.perf_counter() - start
    peak = status_mb("VmHWM")
    memory = peak - before if can_reset and None not in (peak, before) else float("nan")
    memory = max(0.0, memory)  # RSS can shrink when the allocator returns memory
    for _ in range(repeats - 1):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best, memory


# ---------------------------------------------------------------------------- the child
def _inverse_distances(r):
    """The GDML descriptor of one frame, ``(N, 3) -> (N (N - 1) / 2,)``, as a user writes it."""
    import torch

    i, j = torch.tril_indices(len(r), len(r), offset=-1, device=r.device)
    return 1.0 / torch.linalg.vector_norm(r[i] - r[j], dim=-1)


def _operations(method: str, train, new, alpha, v, perms, sigma: float):
    """The two operations of ``method`` as callables ``(training product, force prediction)``."""
    import numpy as np
    import torch

    from mlffkit.descriptors.inverse_distances import inverse_distances, pair_permutation
    from mlffkit.kernels import autodiff as ad
    from mlffkit.kernels.gdml import GDMLKernelOperator, predict_descriptor_space

    kernel = ad.make_kernel("matern52", sigma)
    if method == "naive AD":

        def product():
            return ad.hessian_blocks(_inverse_distances, kernel, train, train, perms) @ v

        def predict():
            return ad.hessian_blocks(_inverse_distances, kernel, new, train, perms) @ alpha

        return product, predict
    if method == "matrix-free AD":
        operator = ad.AutoDiffKernelOperator(_inverse_distances, kernel, train, perms)

        def predict():
            # tangents of the training frames (once per model), then one row pass
            t = operator.tangents(alpha.reshape(1, *train.shape)).flatten(1, 2)
            x = operator.descriptors.flatten(0, 1)
            return ad.kernel_rows(_inverse_distances, kernel, new, x, t)[0]

        return (lambda: operator.matmat(v)), predict

    perm_index = torch.as_tensor(np.stack([pair_permutation(p) for p in perms]))
    x, jac = inverse_distances(train, jacobian=True)
    jac = jac.flatten(2)
    operator = GDMLKernelOperator(x, jac, perm_index, sigma)

    def predict():
        vd = torch.einsum("mdk,mk->md", jac, alpha.reshape(len(train), -1))
        x_train = x[:, perm_index].reshape(-1, x.shape[1])
        v_train = vd[:, perm_index].reshape(-1, x.shape[1])
        xn, jn = inverse_distances(new, jacobian=True)
        _, f_desc = predict_descriptor_space(
            xn, x_train, v_train, (x_train * v_train).sum(1), sigma
        )
        return torch.einsum("nd,ndac->nac", f_desc, jn)

    return (lambda: operator.matmat(v)), predict


def run_child(job: dict) -> dict:
    """Time and memory of one method at one training size (runs in a child process)."""
    import numpy as np
    import torch

    import mlffkit
    from mlffkit.symmetry import find_permutations

    torch.set_num_threads(job["threads"])
    ds = mlffkit.data.load("ethanol_gfn2")
    M, n_new = job["n_train"], job["n_predict"]
    positions = torch.as_tensor(ds.positions, dtype=torch.float64)
    train, new = positions[:M], positions[-n_new:]
    perms = (
        find_permutations(ds.positions[:M], ds.numbers)
        if job["permutations"] == "auto"
        else np.arange(len(ds.numbers))[None]
    )
    gen = torch.Generator().manual_seed(0)
    n = M * 3 * len(ds.numbers)
    alpha = torch.randn(n, dtype=torch.float64, generator=gen)
    v = torch.randn(n, 1, dtype=torch.float64, generator=gen)

    # warm-up: torch.func loads its decompositions and caches on first use
    small = _operations(job["method"], train[:2], new[:2], alpha[: 2 * n // M], v[: 2 * n // M],
                        perms, job["sigma"])  # fmt: skip
    for op in small:
        op()
    product, predict = _operations(job["method"], train, new, alpha, v, perms, job["sigma"])
    product_s, product_mb = measure(product, job["repeats"])
    predict_s, predict_mb = measure(predict, job["repeats"])
    # a sample of the results, to check that the methods compute the same numbers
    samples = {}
    for name, op in (("product", product), ("predict", predict)):
        values = op().reshape(-1)
        samples[name] = values[:: max(1, len(values) // 64)].tolist()
    return {
        "method": job["method"],
        "n_train": M,
        "n": n,
        "n_permutations": len(perms),
        "product_s": product_s,
        "product_peak_mb": product_mb,
        "predict_s": predict_s,
        "predict_peak_mb": predict_mb,
        "predict_frames_per_s": n_new / predict_s,
        "samples": samples,
    }


def spawn(job: dict) -> dict:
    """Run :func:`run_child` in a fresh spawned process and return its result dict."""
    what = f"{job['method']} at M = {job['n_train']}"
    try:
        return run_in_child(run_child, job)
    except ChildDied as err:
        raise RuntimeError(f"{what} {err}; lower --naive-max") from None
    except ChildFailed as err:
        raise RuntimeError(f"{what} failed: {err}") from None


# ---------------------------------------------------------------------------- the table
def add_deviations(results: list[dict]) -> None:
    """Each result's largest deviation from the analytic one, relative to its largest entry."""
    import numpy as np

    reference = {r["n_train"]: r["samples"] for r in results if r["method"] == "analytic"}
    for r in results:
        ref = reference.get(r["n_train"])
        if ref is None:
            continue
        r["max_rel_deviation"] = max(
            float(np.abs(np.subtract(r["samples"][k], ref[k])).max() / np.abs(ref[k]).max())
            for k in ("product", "predict")
        )


def table(results: list[dict], args) -> str:
    by = {(r["method"], r["n_train"]): r for r in results}
    head = f"{'':34s}" + "".join(f"{m:>16s}" for m in METHODS)
    lines = [
        f"GDML-type kernels on ethanol (N = 9, inverse distances, sigma = {args.sigma:g}, "
        f"permutations: {args.permutations}), {args.threads} thread(s); "
        f"prediction of {args.n_predict} frames",
        head,
    ]
    rows = [
        ("K v product (s)", "product_s", "{:16.3f}"),
        ("K v peak memory (MB)", "product_peak_mb", "{:16.1f}"),
        ("force prediction (s)", "predict_s", "{:16.3f}"),
        ("prediction peak memory (MB)", "predict_peak_mb", "{:16.1f}"),
        ("max deviation from analytic", "max_rel_deviation", "{:16.1e}"),
    ]
    for M in args.sizes:
        any_row = next(r for (m, size), r in by.items() if size == M)
        lines.append(f"M = {M} (n = {any_row['n']}, G = {any_row['n_permutations']})")
        for label, key, fmt in rows:
            cells = "".join(
                fmt.format(by[(m, M)][key]) if key in by.get((m, M), {}) else f"{'—':>16s}"
                for m in METHODS
            )
            lines.append(f"  {label:32s}{cells}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="25,50,100", help="training sizes M, comma-separated")
    parser.add_argument("--naive-max", type=int, default=100,
                        help="largest M for the naive dense method (its cost grows as M²)")  # fmt: skip
    parser.add_argument("--n-predict", type=int, default=50, help="frames to predict")
    parser.add_argument("--sigma", type=float, default=10.0)
    parser.add_argument("--permutations", choices=("none", "auto"), default="none",
                        help="sGDML symmetries: 'auto' multiplies every cost by the group order")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write every number to this file")
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    for M in args.sizes:
        for method in METHODS:
            if method == "naive AD" and M > args.naive_max:
                continue
            log(f"{method}, M = {M}")
            job = {
                "method": method,
                "n_train": M,
                "n_predict": args.n_predict,
                "sigma": args.sigma,
                "permutations": args.permutations,
                "threads": args.threads,
                "repeats": args.repeats,
            }
            results.append(spawn(job))
    add_deviations(results)
    print(table(results, args))
    if args.json is not None:
        import torch

        from mlffkit.fileio import atomic_write_text

        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        payload = {
            "config": config,
            "results": results,
            "versions": {"python": platform.python_version(), "torch": torch.__version__},
            "machine": platform.platform(),
            "threads_env": {k: os.environ.get(k) for k in THREAD_VARIABLES},
        }
        atomic_write_text(args.json, json.dumps(payload, indent=2), overwrite=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
