"""``mlffkit train``: split a dataset, train a kernel or neural model, test it, save it.

Examples
--------
::

    mlffkit train ethanol --model sgdml --n-train 200 --n-valid 100 -o ethanol_sgdml.npz
    mlffkit train ethanol --model sgdml --n-train 200 --sigma 10 --n-test 1000 -o sgdml.npz
    mlffkit train md17_ethanol --model gdml --n-train 1000 --sigma-grid 10,20,40 -o gdml.npz
    mlffkit train ethanol --model krr --n-train 1000 -o ethanol_krr.npz
    mlffkit train ethanol --model schnet --n-train 1000 --n-valid 100 --epochs 500 -o schnet.npz
    mlffkit train ethanol --model schnet ... --checkpoint schnet.ckpt --resume   # continue a run

The split is written next to the model (``sgdml.npz`` → ``sgdml.split.json``), so that
``mlffkit evaluate sgdml.npz ethanol --split sgdml.split.json`` tests the same frames.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mlffkit.cli.data import _add_load_options, _load

MODELS = ("sgdml", "gdml", "krr", "schnet")
#: models trained by gradient descent (epochs, validation frames for early stopping)
NEURAL_MODELS = ("schnet",)
#: sigmas tried when GDML is trained without --sigma (descriptor units, 1/Å)
DEFAULT_SIGMA_GRID = (2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
#: validation frames drawn when sigma is chosen and --n-valid is not given
DEFAULT_N_VALID = 100


def parse_sigma_grid(text: str) -> list[float]:
    """``"2,5,10"`` → ``[2.0, 5.0, 10.0]``.

    Raises
    ------
    ValueError
        If an entry is not a positive number.
    """
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(
            f"--sigma-grid {text!r} is not a comma-separated list of numbers, e.g. 2,5,10,20,50"
        ) from None
    if not values or min(values) <= 0:
        raise ValueError(f"--sigma-grid needs positive numbers, e.g. 2,5,10,20,50; got {text!r}")
    return values


def make_model(kind: str, sigma=None, lam: float | None = None, device: str = "cpu"):
    """An unfitted model of ``kind`` (``"sgdml"``, ``"gdml"`` or ``"krr"``).

    ``sgdml`` is :class:`~mlffkit.models.GDML` with symmetries found from the data,
    ``gdml`` the same without symmetries, ``krr`` :class:`~mlffkit.models.KRR`
    (its sigma defaults to the median heuristic). ``lam`` None keeps the model's default.
    """
    from mlffkit.models import GDML, KRR

    extra = {} if lam is None else {"lam": lam}
    if kind == "krr":
        return KRR(sigma="median" if sigma is None else sigma, device=device, **extra)
    if kind in ("sgdml", "gdml"):
        permutations = "auto" if kind == "sgdml" else None
        return GDML(
            sigma=DEFAULT_SIGMA_GRID[0] if sigma is None else sigma,
            permutations=permutations,
            device=device,
            **extra,
        )
    raise ValueError(f"unknown model {kind!r}; use one of {MODELS}")


def make_neural_model(kind: str, args):
    """An unfitted neural model of ``kind`` from the command-line options."""
    from mlffkit.models import SchNet

    if kind != "schnet":
        raise ValueError(f"unknown neural model {kind!r}; use one of {NEURAL_MODELS}")
    return SchNet(
        n_features=args.features,
        n_interactions=args.interactions,
        cutoff=args.cutoff,
        lr=args.lr,
        batch_size=args.batch_size,
        max_epochs=args.epochs,
        patience=args.patience,
        max_time_s=None if args.max_time is None else 60.0 * args.max_time,
        seed=args.seed,
        dtype=args.dtype,
        device=args.device,
    )


def split_path(model_path) -> Path:
    """Where the split of a model file goes: ``model.npz`` → ``model.split.json``."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + ".split.json")


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a GDML/sGDML, KRR or SchNet model, test it on held-out frames and save it",
        description=(
            "Split a dataset into training, validation and test frames, choose the kernel "
            "length scale on the validation frames (or take --sigma) or train a network with "
            "early stopping on them, print the test errors in meV and kcal/mol, and save the "
            "model (.npz) with its split (.split.json)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("source", metavar="DATA", help="dataset name (mlffkit data list) or file")
    p.add_argument("--model", choices=MODELS, default="sgdml", help="model type")
    p.add_argument("-o", "--output", required=True, help="model file to write (.npz)")
    p.add_argument("--n-train", type=int, default=200, help="training frames")
    p.add_argument(
        "--n-valid",
        type=int,
        default=None,
        help=f"validation frames (default {DEFAULT_N_VALID} when sigma is chosen, else 0)",
    )
    p.add_argument("--n-test", type=int, default=None, help="test frames (default: all the rest)")
    sigma = p.add_mutually_exclusive_group()
    sigma.add_argument("--sigma", type=float, default=None, help="fixed kernel length scale")
    sigma.add_argument(
        "--sigma-grid",
        default=None,
        help="comma-separated length scales to choose from on the validation frames "
        f"(default for gdml/sgdml: {','.join(f'{s:g}' for s in DEFAULT_SIGMA_GRID)}; "
        "krr: the median heuristic)",
    )
    p.add_argument("--lam", type=float, default=None, help="ridge regularisation (model default)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split")
    p.add_argument("--stratified", action="store_true", help="stratify the split by energy")
    p.add_argument(
        "--split", default=None, help="use the frames of this split file instead of drawing one"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda (or auto for neural models)")
    nn = p.add_argument_group("neural models (--model schnet)")
    nn.add_argument("--epochs", type=int, default=1000, help="most passes over the training data")
    nn.add_argument("--batch-size", type=int, default=10, help="structures per step")
    nn.add_argument("--lr", type=float, default=1e-3, help="initial learning rate (Adam)")
    nn.add_argument("--patience", type=int, default=100, help="early-stopping patience, epochs")
    nn.add_argument("--features", type=int, default=64, help="atom feature width")
    nn.add_argument("--interactions", type=int, default=3, help="interaction blocks")
    nn.add_argument("--cutoff", type=float, default=5.0, help="cutoff radius, Å")
    nn.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    nn.add_argument("--max-time", type=float, default=None, help="stop training after N minutes")
    nn.add_argument("--checkpoint", default=None, help="training-state file written every epoch")
    nn.add_argument(
        "--resume", action="store_true", help="continue the run saved in --checkpoint"
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_load_options(p)
    p.set_defaults(func=_run)


def _sigma_plan(args) -> tuple[float | None, list[float] | None]:
    """(fixed sigma, grid to choose from): exactly one is set, except KRR's median heuristic."""
    if args.sigma is not None:
        return args.sigma, None
    if args.sigma_grid is not None:
        return None, parse_sigma_grid(args.sigma_grid)
    if args.model == "krr":
        return None, None
    if args.model in NEURAL_MODELS:
        return None, None
    return None, list(DEFAULT_SIGMA_GRID)


def _make_split(args, ds, grid):
    from mlffkit.data import Split, random_split, stratified_split

    if args.split is not None:
        return Split.load(args.split)
    wants_valid = grid or args.model in NEURAL_MODELS
    n_valid = args.n_valid if args.n_valid is not None else (DEFAULT_N_VALID if wants_valid else 0)
    if grid and n_valid == 0:
        raise ValueError(
            "choosing sigma needs validation frames: pass --n-valid N (e.g. 100), or a fixed --sigma"
        )
    make = stratified_split if args.stratified else random_split
    return make(ds, n_train=args.n_train, n_valid=n_valid, n_test=args.n_test, seed=args.seed)


def _print_curve(curve) -> None:
    from mlffkit import units

    print(f"  {'sigma':>8}  {'valid force MAE':>28}  {'valid energy MAE':>26}")
    for s, f, e in zip(curve.sigmas, curve.force_mae, curve.energy_mae, strict=True):
        force = f"{f * 1e3:8.2f} meV/Å {f / units.KCAL_PER_MOL:7.3f} kcal/mol/Å"
        energy = f"{e * 1e3:8.2f} meV {e / units.KCAL_PER_MOL:7.3f} kcal/mol"
        mark = "  <- best" if s == curve.best_sigma else ""
        print(f"  {s:8g}  {force}  {energy}{mark}")


def _run(args) -> int:
    from mlffkit.fileio import check_writable
    from mlffkit.models import select_sigma

    neural = args.model in NEURAL_MODELS
    if neural and (args.sigma is not None or args.sigma_grid is not None or args.lam is not None):
        raise ValueError(f"--sigma, --sigma-grid and --lam are kernel options; {args.model} has none")
    if args.resume and args.checkpoint is None:
        raise ValueError("--resume continues the run in --checkpoint FILE; name the file")
    output = Path(args.output)
    if output.suffix != ".npz":
        raise ValueError(f"model files are .npz; name the output e.g. {output.stem}.npz")
    split_file = split_path(output)
    # refuse before the long work, not after it
    check_writable(output, args.overwrite)
    check_writable(split_file, args.overwrite)
    sigma, grid = _sigma_plan(args)

    ds = _load(args)
    split = _make_split(args, ds, grid)
    train, valid, test = split.apply(ds)
    if test is None:
        raise ValueError(
            f"no test frames left: {len(train)} training and {split.valid.size} validation frames "
            f"use all {len(ds)} frames; ask for fewer training frames"
        )
    if grid and valid is None:
        raise ValueError("the split has no validation frames to choose sigma on; pass --sigma")
    print(ds.summary())
    print(
        f"split ({split.method}, seed {split.seed}): {split.train.size} train, "
        f"{split.valid.size} valid, {split.test.size} test"
    )

    progress = not args.no_progress
    start = time.perf_counter()
    if neural:
        model = make_neural_model(args.model, args).fit(
            train, valid, checkpoint=args.checkpoint, resume=args.resume, progress=progress
        )
        history = model.history_
        print(
            f"trained {model.display_name()} on {len(train)} frames in "
            f"{time.perf_counter() - start:.1f} s: {len(history)} epochs, stopped by "
            f"{history.stopped_because}, kept epoch {history.best_epoch}"
        )
        return _test_and_save(model, test, split, output, split_file, args, progress)
    template = make_model(args.model, sigma, args.lam, args.device)
    try:
        if grid:
            print(f"choosing sigma among {', '.join(f'{s:g}' for s in grid)} on the validation set")
            model, curve = select_sigma(train, valid, grid, model=template, progress=progress)
            _print_curve(curve)
        else:
            model = template.fit(train, progress=progress)
    except MemoryError as err:  # the kernel matrix does not fit: a clean message, no traceback
        raise RuntimeError(str(err)) from None
    fit_s = time.perf_counter() - start
    used_sigma = getattr(model, "sigma_", model.sigma)
    what = f"{args.model} (sigma {used_sigma:.4g}"
    if args.model == "sgdml":
        what += f", {len(model.permutations_)} symmetries"
    print(f"trained {what}) on {len(train)} frames in {fit_s:.1f} s")
    return _test_and_save(model, test, split, output, split_file, args, progress)


def _test_and_save(model, test, split, output, split_file, args, progress: bool) -> int:
    from mlffkit.evaluation import evaluate

    report = evaluate(model, test, progress=progress)
    print(report)
    model.save(output, overwrite=args.overwrite)
    split.save(split_file, overwrite=args.overwrite)
    print(f"saved the model to {output} and its split to {split_file}")
    return 0
