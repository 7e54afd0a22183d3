"""Train the small geometric attention model shipped in ``data/models/`` and print its card.

    OMP_NUM_THREADS=1 nice -n 15 python data/make_pretrained_attention.py              # if missing
    OMP_NUM_THREADS=1 nice -n 15 python data/make_pretrained_attention.py --overwrite  # retrain
    python data/make_pretrained_attention.py --card-only    # print the card section only

``tutorials/09_attention.ipynb`` loads this model in quick mode, where training a
geometric attention network for real would take many minutes, and
``tests/test_pretrained_attention.py`` checks it. The frames are those of the shipped
SchNet (``data/make_pretrained_models.py``), so that the two models can be compared on
the same test frames: ``random_split(ethanol_gfn2, n_train=3000, n_valid=500,
n_test=1500, seed=0)`` gives a training pool, validation and test frames; the pool is
shuffled with ``default_rng(1)`` and its first 500 frames train. Test frames are used
here only to report errors in the card.

Training runs on one CPU thread with seeded weights and shuffling for a fixed number
of epochs, so a rerun with the same software versions gives the same file;
``--max-minutes`` only guards against a slow machine (the card says what stopped the
run). The card section (Markdown) is printed at the end, for ``data/models/README.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from mlffkit import units
from mlffkit.data import Dataset, load, random_split
from mlffkit.evaluation import ErrorReport, evaluate
from mlffkit.fileio import check_writable
from mlffkit.models import GeometricAttention, load_model

FILE = Path(__file__).resolve().parent / "models" / "geomatt_ethanol_gfn2.npz"
DATASET = "ethanol_gfn2"
#: random_split(data, n_train=, n_valid=, n_test=, seed=SPLIT_SEED): pool, validation, test
SPLIT = (3000, 500, 1500)
SPLIT_SEED = 0
#: the pool is shuffled with default_rng(ORDER_SEED); its first N_TRAIN frames train
ORDER_SEED = 1
N_TRAIN = 500
#: the first N_VALID frames of the validation part steer the schedule and early stopping
N_VALID = 100
ARCHITECTURE = dict(orders=(2, 3, 4), n_features=64, n_layers=2, n_rbf=50, r_max=4.9, gamma=10.0)
TRAINING = dict(
    lr=1e-3,
    batch_size=10,
    max_epochs=250,
    patience=50,
    lr_patience=10,
    lr_factor=0.5,
    min_lr=1e-5,
    ema_decay=0.99,
    seed=0,
    dtype="float32",
    device="cpu",
)
USE = (
    "The quick mode of `tutorials/09_attention.ipynb` (attention matrices and atomic "
    "energies of a trained model, the attention viewer) and "
    "`tests/test_pretrained_attention.py`. Trained for minutes on one CPU thread, not for "
    "days on a GPU as in the paper: its errors are several times those of a converged "
    "model. Ethanol only (H, C, O), near the 500 K GFN2-xTB ensemble of the bundled set; "
    "molecules only (no periodic cells, no cutoff)."
)


def frames() -> tuple[Dataset, Dataset, Dataset]:
    """Training, validation and test frames (eV, Å) of the shipped model."""
    data = load(DATASET)
    n_pool, n_valid, n_test = SPLIT
    pool, valid, test = random_split(
        data, n_train=n_pool, n_valid=n_valid, n_test=n_test, seed=SPLIT_SEED
    ).apply(data)
    order = np.random.default_rng(ORDER_SEED).permutation(len(pool))
    return pool.subset(order[:N_TRAIN]), valid.subset(np.arange(N_VALID)), test


def train(*, overwrite: bool, max_minutes: float, progress: bool) -> None:
    """Train the model and save it (refuses to replace the file unless ``overwrite``)."""
    check_writable(FILE, overwrite=overwrite)
    train_set, valid_set, _ = frames()
    model = GeometricAttention(**ARCHITECTURE, **TRAINING, max_time_s=60.0 * max_minutes)
    start = time.perf_counter()
    model.fit(train_set, valid_set, progress=progress)
    print(
        f"{FILE.name}: {len(model.history_)} epochs in {time.perf_counter() - start:.0f} s, "
        f"stopped by {model.history_.stopped_because}",
        flush=True,
    )
    FILE.parent.mkdir(parents=True, exist_ok=True)
    model.save(FILE, overwrite=overwrite)


def _errors_row(what: str, report: ErrorReport) -> str:
    d = report.to_dict()
    return (
        f"| {what} ({report.n_frames} frames) | {d['energy_mae_meV']:.1f} meV = "
        f"{d['energy_mae_kcal_mol']:.3f} kcal/mol | {d['energy_rmse_meV']:.1f} meV | "
        f"{d['force_mae_meV_A']:.1f} meV/Å = {d['force_mae_kcal_mol_A']:.3f} kcal/mol/Å | "
        f"{d['force_rmse_meV_A']:.1f} meV/Å |"
    )


def card() -> str:
    """The data-card section of the shipped model (Markdown), measured from its file."""
    if not FILE.exists():
        raise FileNotFoundError(f"{FILE} does not exist; make it first (without --card-only)")
    model = load_model(FILE)
    train_set, valid_set, test = frames()
    if model.training_.frame_hashes != tuple(train_set.frame_hashes()):
        raise RuntimeError(f"{FILE} was not trained on the frames of this recipe; use --overwrite")
    with np.load(FILE) as npz:
        header = json.loads(str(npz["header"]))
    history = model.history_
    best = history.records[history.best_epoch]
    wall = sum(r.time_s for r in history.records)
    n_weights = sum(p.numel() for p in model.potential_.parameters())
    arch = ", ".join(f"{k}={v}" for k, v in ARCHITECTURE.items())
    settings = ", ".join(f"{k}={v}" for k, v in TRAINING.items() if k != "device")
    n_pool, n_valid, n_test = SPLIT
    kcal = 1.0 / units.KCAL_PER_MOL
    return f"""## `{FILE.name}`: {model.display_name()} on `{DATASET}`

| | |
|---|---|
| file | `data/models/{FILE.name}` ({FILE.stat().st_size / 1e3:.0f} kB, mlffkit model npz, {n_weights} float32 weights) |
| model | `GeometricAttention({arch})` (Frank & Chmiela, arXiv:2106.02549; shared filters, no softmax, no cutoff: see `mlffkit/nn/attention.py`) |
| data | bundled `{DATASET}` (GFN2-xTB, eV, Å; see `data/{DATASET}.md`) |
| split | `random_split(data, n_train={n_pool}, n_valid={n_valid}, n_test={n_test}, seed={SPLIT_SEED})` → pool, validation, test (the split of `schnet_ethanol_gfn2.npz`) |
| training frames | {N_TRAIN}: `pool.subset(np.random.default_rng({ORDER_SEED}).permutation({n_pool})[:{N_TRAIN}])` (the frames of `schnet_ethanol_gfn2.npz`); their content hashes and indices in the full set are stored in the file (`model.training_`) |
| validation frames | the first {N_VALID} of the validation part (early stopping, learning-rate schedule, which weights are kept) |
| training | {settings}; energy/force weights {model.energy_weight}/{model.force_weight} |
| run | {len(history)} epochs, stopped by `{history.stopped_because}`, weights of epoch {history.best_epoch} kept (validation force MAE {best.valid_force_mae * 1e3:.1f} meV/Å = {best.valid_force_mae * kcal:.3f} kcal/mol/Å); {wall / 60:.1f} min of training on one thread ({platform.processor() or platform.machine()}, shared with other jobs) |
| software | mlffkit {header["mlffkit_version"]}, torch {torch.__version__}, numpy {np.__version__}; made by `data/make_pretrained_attention.py` |

Errors on the {len(test)} test frames of the split (never seen in training or validation),
with `mlffkit.evaluation.evaluate`:

| frames | energy MAE | energy RMSE | force MAE | force RMSE |
|---|---|---|---|---|
{_errors_row("test", evaluate(model, test))}
{_errors_row("validation", evaluate(model, valid_set))}

**Intended use.** {USE}

```python
from mlffkit.config import bundled_data_dir
from mlffkit.models import load_model

model = load_model(bundled_data_dir() / "models" / "{FILE.name}")
result = model.interpret(atoms)        # attention matrices, atomic energies
atoms.calc = model.calculator()
```
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--overwrite", action="store_true", help="retrain and replace the file")
    parser.add_argument(
        "--card-only", action="store_true", help="only print the card section of the existing file"
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=60.0,
        help="stop training after this many minutes (at the end of an epoch); a guard only",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 gives bit-reproducible files)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.card_only:
        if FILE.exists() and not args.overwrite:
            print(f"{FILE} exists, kept (--overwrite retrains it)")
        else:
            train(
                overwrite=args.overwrite,
                max_minutes=args.max_minutes,
                progress=not args.no_progress,
            )
    print(card())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
