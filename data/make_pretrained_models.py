"""Train the small pretrained models shipped in ``data/models/`` and write their data card.

    OMP_NUM_THREADS=1 nice -n 15 python data/make_pretrained_models.py              # missing models
    OMP_NUM_THREADS=1 nice -n 15 python data/make_pretrained_models.py --overwrite  # retrain all
    python data/make_pretrained_models.py --card-only       # rewrite data/models/README.md

The tutorials load these models in quick mode, where training one for real would take
many minutes (``tutorials/08_schnet.ipynb``, ``tutorials/09_attention.ipynb``). Each recipe fixes its frames: a seeded
``random_split`` of a bundled dataset into a training pool, validation and test frames
(the same call the tutorial makes), the pool shuffled with a second seed and its first
``n_train`` frames used for training. Test frames are never used here except to report
errors in the card. Training runs on one thread on the CPU with seeded weights and
shuffling for a fixed number of epochs, so a rerun with the same software versions gives
the same file; ``--max-minutes`` only guards against a slow machine (the card says which
limit stopped the run).
"""

from __future__ import annotations

import argparse
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mlffkit import models, units
from mlffkit.data import Dataset, load, random_split
from mlffkit.evaluation import evaluate
from mlffkit.fileio import atomic_write_text, check_writable
from mlffkit.models import load_model
from mlffkit.models.io import model_header
from mlffkit.models.neural import TRAINING_PARAMS

MODELS = Path(__file__).resolve().parent / "models"


@dataclass(frozen=True)
class Recipe:
    """How one shipped model is made: data, split, frames and training settings."""

    name: str
    dataset: str
    #: random_split(dataset, n_train=pool, n_valid=valid, n_test=test, seed=split_seed)
    split: tuple[int, int, int]
    split_seed: int
    #: the pool is shuffled with default_rng(order_seed); its first n_train frames train
    order_seed: int
    n_train: int
    #: first n_valid frames of the split's validation part (early stopping, lr schedule)
    n_valid: int
    #: the estimator, a class of mlffkit.models, and its parameters
    estimator: str = "SchNet"
    params: dict = field(default_factory=dict)
    use: str = ""
    #: usage lines for the card, after ``model = load_model(...)``
    example: str = "atoms.calc = model.calculator()"

    @property
    def file(self) -> Path:
        return MODELS / f"{self.name}.npz"

    def model(self, **extra):
        """The untrained estimator of the recipe."""
        return getattr(models, self.estimator)(**self.params, **extra)

    def frames(self) -> tuple[Dataset, Dataset, Dataset]:
        """Training, validation and test frames of the recipe."""
        data = load(self.dataset)
        n_pool, n_valid, n_test = self.split
        pool, valid, test = random_split(
            data, n_train=n_pool, n_valid=n_valid, n_test=n_test, seed=self.split_seed
        ).apply(data)
        order = np.random.default_rng(self.order_seed).permutation(len(pool))
        return pool.subset(order[: self.n_train]), valid.subset(np.arange(self.n_valid)), test


#: the ethanol frames both shipped models learn from, so that they compare on the same tests
ETHANOL_FRAMES = dict(
    dataset="ethanol_gfn2",
    split=(3000, 500, 1500),
    split_seed=0,
    order_seed=1,
    n_train=500,
    n_valid=100,
)
#: the training settings they share (each sets its own max_epochs)
SHARED_TRAINING = dict(
    lr=1e-3,
    batch_size=10,
    patience=50,
    lr_patience=10,
    lr_factor=0.5,
    min_lr=1e-5,
    ema_decay=0.99,
    seed=0,
    dtype="float32",
    device="cpu",
)

RECIPES = {
    r.name: r
    for r in (
        Recipe(
            name="schnet_ethanol_gfn2",
            **ETHANOL_FRAMES,
            params=dict(
                n_features=64,
                n_interactions=3,
                cutoff=5.0,
                n_rbf=50,
                gamma=10.0,
                max_epochs=400,
                **SHARED_TRAINING,
            ),
            use=(
                "The quick mode of `tutorials/08_schnet.ipynb` (filters of a trained network, "
                "parity plots, MD with the SchNet calculator) and `tests/test_pretrained_models.py`. "
                "Trained for minutes on a CPU, not to convergence: its validation error was still "
                "falling when training stopped. Ethanol only (H, C, O), near the 500 K GFN2-xTB "
                "ensemble of the bundled set; not for other molecules or conditions."
            ),
        ),
        Recipe(
            name="geomatt_ethanol_gfn2",
            **ETHANOL_FRAMES,
            estimator="GeometricAttention",
            params=dict(
                orders=(2, 3, 4),
                n_features=64,
                n_layers=2,
                n_rbf=50,
                r_max=4.9,
                gamma=10.0,
                max_epochs=250,
                **SHARED_TRAINING,
            ),
            use=(
                "The quick mode of `tutorials/09_attention.ipynb` (attention matrices and atomic "
                "energies of a trained model, the attention viewer) and "
                "`tests/test_pretrained_models.py`. Trained for minutes on one CPU thread, not "
                "for days on a GPU as in the paper: its errors are several times those of a "
                "converged model. Ethanol only (H, C, O), near the 500 K GFN2-xTB ensemble of the "
                "bundled set; molecules only (no periodic cells, no cutoff; see "
                "`mlffkit/nn/attention.py`)."
            ),
            example=(
                "result = model.interpret(atoms)        # attention matrices, atomic energies\n"
                "atoms.calc = model.calculator()"
            ),
        ),
    )
}


def train(recipe: Recipe, *, overwrite: bool, max_minutes: float, progress: bool) -> None:
    """Train the recipe's model and save it (refuses to replace a file unless ``overwrite``)."""
    check_writable(recipe.file, overwrite=overwrite)
    train_set, valid_set, _ = recipe.frames()
    model = recipe.model(max_time_s=60.0 * max_minutes)
    start = time.perf_counter()
    model.fit(train_set, valid_set, progress=progress)
    print(
        f"{recipe.name}: {len(model.history_)} epochs in {time.perf_counter() - start:.0f} s, "
        f"stopped by {model.history_.stopped_because}",
        flush=True,
    )
    recipe.file.parent.mkdir(parents=True, exist_ok=True)
    model.save(recipe.file, overwrite=overwrite)


def _errors_row(what: str, report) -> str:
    d = report.to_dict()
    return (
        f"| {what} ({report.n_frames} frames) | {d['energy_mae_meV']:.1f} meV = "
        f"{d['energy_mae_kcal_mol']:.3f} kcal/mol | {d['energy_rmse_meV']:.1f} meV | "
        f"{d['force_mae_meV_A']:.1f} meV/Å = {d['force_mae_kcal_mol_A']:.3f} kcal/mol/Å | "
        f"{d['force_rmse_meV_A']:.1f} meV/Å |"
    )


def model_card(recipe: Recipe) -> str:
    """The data-card section of one shipped model, measured from its file."""
    model = load_model(recipe.file)
    train_set, valid_set, test = recipe.frames()
    if model.training_.frame_hashes != tuple(train_set.frame_hashes()):
        raise RuntimeError(
            f"{recipe.file} was not trained on the frames of its recipe; retrain it with --overwrite"
        )
    header = model_header(recipe.file)
    history = model.history_
    best = history.records[history.best_epoch]
    wall = sum(r.time_s for r in history.records)
    size_kb = recipe.file.stat().st_size / 1e3
    n_params = sum(p.numel() for p in model.potential_.parameters())
    p = recipe.params
    # the "training" row: the estimator's training parameters but the device; the rest
    # of the recipe (but the device) is the network
    training = [k for k in TRAINING_PARAMS if k in p and k != "device"]
    settings = ", ".join(f"{k}={p[k]}" for k in training)
    network = ", ".join(f"{k}={v}" for k, v in p.items() if k not in training and k != "device")
    n_pool, n_valid, n_test = recipe.split
    kcal = 1.0 / units.KCAL_PER_MOL
    return f"""## `{recipe.file.name}`: {model.display_name()} on `{recipe.dataset}`

| | |
|---|---|
| file | `data/models/{recipe.file.name}` ({size_kb:.0f} kB, mlffkit model npz, {n_params} float32 weights) |
| model | `{recipe.estimator}({network})` |
| data | bundled `{recipe.dataset}` (GFN2-xTB, eV, Å; see `data/{recipe.dataset}.md`) |
| split | `random_split(data, n_train={n_pool}, n_valid={n_valid}, n_test={n_test}, seed={recipe.split_seed})` → pool, validation, test |
| training frames | {recipe.n_train}: `pool.subset(np.random.default_rng({recipe.order_seed}).permutation({n_pool})[:{recipe.n_train}])`; their content hashes and indices in the full set are stored in the file (`model.training_`) |
| validation frames | the first {recipe.n_valid} of the validation part (early stopping, learning-rate schedule, which weights are kept) |
| training | {settings}; energy/force weights {model.energy_weight}/{model.force_weight} |
| run | {len(history)} epochs, stopped by `{history.stopped_because}`, weights of epoch {history.best_epoch} kept (validation force MAE {best.valid_force_mae * 1e3:.1f} meV/Å = {best.valid_force_mae * kcal:.3f} kcal/mol/Å); {wall / 60:.1f} min of training on one thread ({platform.processor() or platform.machine()}) |
| software | mlffkit {header["mlffkit_version"]}, torch {torch.__version__}, numpy {np.__version__} |

Errors on the {len(test)} test frames of the split (never seen in training or validation),
with `mlffkit.evaluation.evaluate`:

| frames | energy MAE | energy RMSE | force MAE | force RMSE |
|---|---|---|---|---|
{_errors_row("test", evaluate(model, test))}
{_errors_row("validation", evaluate(model, valid_set))}

The energy and force component standard deviations of the data are
{test.energies.std() * 1e3:.0f} meV and {test.forces.std() * 1e3:.0f} meV/Å.

**Intended use.** {recipe.use}

```python
from mlffkit.config import bundled_data_dir
from mlffkit.models import load_model

model = load_model(bundled_data_dir() / "models" / "{recipe.file.name}")
{recipe.example}
```

**How to regenerate.** Training is seeded and runs on one CPU thread for a fixed number of
epochs, so the same software versions reproduce the file (unless `--max-minutes` stops the run
first; the table says what stopped it):

```bash
OMP_NUM_THREADS=1 nice -n 15 python data/make_pretrained_models.py {recipe.name} --overwrite
python data/make_pretrained_models.py --card-only      # only rewrite this section
```
"""


#: the start of data/models/README.md when this script creates it (other scripts add sections)
CARD_INTRO = """# Pretrained models

Small trained models that ship with mlffkit, for the quick mode of the tutorials (where
training for real would take too long) and for tests. Each is one `.npz` written by
`model.save` (arrays and a JSON header, no pickle) and read by `mlffkit.models.load_model`.
A model remembers the frames it was trained on, so `evaluate` refuses to test it on them.
Each section says which script made its model and how to regenerate it.
"""


def write_card(recipes: list[Recipe]) -> Path:
    """Write or replace the sections of ``recipes`` in data/models/README.md.

    Each section sits between ``<!-- begin NAME -->`` and ``<!-- end NAME -->`` markers;
    the rest of the file (other models' sections) is kept as it is.
    """
    path = MODELS / "README.md"
    text = path.read_text(encoding="utf-8") if path.exists() else CARD_INTRO
    for recipe in recipes:
        if not recipe.file.exists():
            continue
        begin = f"<!-- begin {recipe.name}: written by data/make_pretrained_models.py -->"
        end = f"<!-- end {recipe.name} -->"
        block = f"{begin}\n{model_card(recipe)}{end}\n"
        section = re.compile(re.escape(begin) + ".*?" + re.escape(end) + "\n?", re.DOTALL)
        found = section.search(text)
        if found:
            text = text[: found.start()] + block + text[found.end() :]
        else:
            text = text.rstrip("\n") + "\n\n" + block
    atomic_write_text(path, text, overwrite=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"models to make: {', '.join(RECIPES)} (default: all)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="retrain and replace existing files"
    )
    parser.add_argument(
        "--card-only",
        action="store_true",
        help="only rewrite data/models/README.md from the existing files",
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=20.0,
        help="stop a training run after this many minutes (at the end of an epoch)",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 gives bit-reproducible files)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(RECIPES))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {', '.join(RECIPES)}")
    torch.set_num_threads(args.threads)
    recipes = [RECIPES[n] for n in (args.names or RECIPES)]
    if not args.card_only:
        for recipe in recipes:
            if recipe.file.exists() and not args.overwrite:
                print(f"{recipe.name}: {recipe.file} exists, kept (--overwrite retrains it)")
                continue
            train(
                recipe,
                overwrite=args.overwrite,
                max_minutes=args.max_minutes,
                progress=not args.no_progress,
            )
    print(f"card: {write_card(list(RECIPES.values()))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
