"""The quickstart job: the bundled ethanol data, reference MD, an sGDML model and MD with it.

``mlffkit quickstart`` runs :func:`run_quickstart`. It is the first thing a new user
runs, so it prints what it does as it goes and ends with the folder it wrote: a
``report.md`` with the dataset statistics, the reference MD, the sGDML model's test
errors (meV and kcal/mol), its parity plot and validation curve, and an MD run with the
model compared with the reference MD.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mlffkit import config, units
from mlffkit.fileio import atomic_write_text

if TYPE_CHECKING:
    from mlffkit.evaluation import ErrorReport
    from mlffkit.models import GDML, SigmaCurve

DEFAULT_FOLDER = "mlffkit-quickstart"
#: kernel length scales the quickstart chooses from (descriptor units, 1/Å)
SIGMA_GRID = (2.0, 5.0, 10.0, 20.0, 50.0, 100.0)


def free_folder(base: str | Path) -> Path:
    """``base`` if it does not exist yet, else ``base-2``, ``base-3``, ...: never reuse a folder."""
    base = Path(base)
    if not base.exists():
        return base
    k = 2
    while Path(f"{base}-{k}").exists():
        k += 1
    return Path(f"{base}-{k}")


@dataclasses.dataclass
class _TrainedModel:
    """What the training step produced, for the report."""

    model: GDML
    curve: SigmaCurve
    report: ErrorReport
    n_valid: int
    fit_s: float


def _train_model(ds, split, folder: Path, progress: bool) -> _TrainedModel:
    """Choose sigma on the validation frames, train sGDML, test it; save model, split, figures."""
    import matplotlib.pyplot as plt

    from mlffkit.evaluation import evaluate, plot_parity
    from mlffkit.models import GDML, select_sigma
    from mlffkit.plotting import save_figure

    train, valid, test = split.apply(ds)
    grid = ", ".join(f"{s:g}" for s in SIGMA_GRID)
    print(f"  {len(train)} training, {len(valid)} validation and {len(test)} held-out test frames")
    print(f"  choosing sigma among {grid} by the validation force error")
    start = time.perf_counter()
    model, curve = select_sigma(
        train, valid, SIGMA_GRID, model=GDML(sigma=SIGMA_GRID[0]), progress=progress
    )
    fit_s = time.perf_counter() - start
    print(
        f"  sigma = {model.sigma:g}, {len(model.permutations_)} symmetries; "
        f"{len(SIGMA_GRID)} models trained in {fit_s:.1f} s"
    )
    report = evaluate(model, test)
    print("  " + str(report).replace("\n", "\n  "))

    model.save(folder / "sgdml_model.npz")
    split.save(folder / "sgdml_split.json")
    fig = curve.plot(unit="meV")
    save_figure(fig, folder / "sigma_curve.png")
    plt.close(fig)
    fig = plot_parity(report, unit="meV")
    save_figure(fig, folder / "parity.png")
    plt.close(fig)
    return _TrainedModel(model, curve, report, len(valid), fit_s)


def _plot_sampled_energies(reference, model_run, label_ref: str, label_model: str):
    """Histograms of the potential energies two NVT runs sampled, relative to the reference mean."""
    import matplotlib.pyplot as plt

    shift = reference.potential_energy.mean()
    e_ref = (reference.potential_energy - shift) * 1e3
    e_model = (model_run.potential_energy - shift) * 1e3
    bins = np.histogram_bin_edges(np.concatenate([e_ref, e_model]), bins=30)
    fig, ax = plt.subplots(figsize=(5.0, 3.2), layout="constrained")
    ax.hist(e_ref, bins=bins, density=True, alpha=0.55, label=label_ref)
    ax.hist(e_model, bins=bins, density=True, alpha=0.55, label=label_model)
    ax.set_xlabel(f"E_pot − ⟨E_pot⟩ of {label_ref} / meV")
    ax.set_ylabel("probability density / meV⁻¹")
    ax.legend(frameon=False, fontsize="small")
    ax.set_title(
        f"potential energies sampled in NVT at {reference.temperature_K:g} K", fontsize="medium"
    )
    return fig


def _energy_stats(run) -> dict:
    return {
        "mean_eV": float(np.mean(run.potential_energy)),
        "std_meV": float(np.std(run.potential_energy) * 1e3),
    }


def _error_table(report) -> str:
    """Markdown table of the test errors in meV and kcal/mol."""
    d = report.to_dict()

    def cell(key, per=""):
        mev, kcal = d[f"{key}_meV{per}"], d[f"{key}_kcal_mol{per}"]
        return "n/a | n/a" if mev is None else f"{mev:.2f} | {kcal:.3f}"

    return "\n".join(
        [
            "| | MAE (meV) | MAE (kcal/mol) | RMSE (meV) | RMSE (kcal/mol) |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| energy | {cell('energy_mae')} | {cell('energy_rmse')} |",
            f"| forces (per Å) | {cell('force_mae', '_A')} | {cell('force_rmse', '_A')} |",
        ]
    )


def run_quickstart(
    output: str | Path | None = None,
    *,
    dataset: str = "ethanol",
    method: str = "gfn2",
    md_steps: int | None = None,
    temperature_K: float = 500.0,
    timestep_fs: float = 0.5,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Run the quickstart and return the report folder.

    Steps: statistics of the bundled dataset; reference NVT then NVE MD; an sGDML
    model trained on the dataset (sigma chosen on validation frames from
    :data:`SIGMA_GRID`) and tested on held-out frames; NVT MD with the model from
    the same start, seed and settings as the reference NVT run, whose sampled
    energies are compared with the reference run's.

    Parameters
    ----------
    output : path, optional
        Report folder. It must not exist yet (or be empty); by default a new
        ``mlffkit-quickstart`` folder (``-2``, ``-3``, ... if taken) in the
        working directory.
    dataset : str
        Bundled dataset to inspect and train on (default the GFN2-xTB ethanol set).
    method : str
        Reference method for the MD (see :func:`mlffkit.reference.get_calculator`).
    md_steps : int, optional
        Steps of each MD run (reference NVT, reference NVE, model NVT), time step
        ``timestep_fs`` fs; default 2000 (200 in quick mode).
    temperature_K : float
        NVT temperature in K.
    timestep_fs : float
        MD time step in fs.
    n_train : int, optional
        Training frames of the sGDML model; default 200 (50 in quick mode). The
        validation set has 100 frames (50 in quick mode).
    n_test : int, optional
        Held-out test frames, at most the frames left; default 1000 (200 in quick mode).
    seed : int
        Seed of the split, the initial velocities and the thermostat.
    progress : bool
        Show progress bars.

    Returns
    -------
    pathlib.Path
        The report folder: ``report.md``, ``summary.json``, figures, trajectories,
        the model (``sgdml_model.npz``) and its split (``sgdml_split.json``).

    Raises
    ------
    FileExistsError
        If ``output`` exists and is not empty.
    ValueError
        If the dataset is too small for the requested training set.
    """
    import matplotlib.pyplot as plt

    from mlffkit.data import load, random_split
    from mlffkit.md import InstabilityWarning, run_md
    from mlffkit.plotting import plot_dataset_overview, plot_md_energies, save_figure
    from mlffkit.reference import get_calculator

    t_start = time.perf_counter()
    if output is None:
        folder = free_folder(DEFAULT_FOLDER)
    else:
        folder = Path(output)
        if folder.exists() and any(folder.iterdir()):
            raise FileExistsError(
                f"{folder} exists and is not empty; choose a new folder for the report"
            )
    folder.mkdir(parents=True, exist_ok=True)
    steps = md_steps if md_steps is not None else config.pick(200, 2000)
    n_train = n_train if n_train is not None else config.pick(50, 200)
    n_valid = config.pick(50, 100)
    n_test = n_test if n_test is not None else config.pick(200, 1000)

    print(f"[1/5] Dataset '{dataset}'")
    ds = load(dataset)
    print(ds.summary())
    # split now, so that a dataset too small for the model fails before the reference MD
    n_test = min(n_test, len(ds) - n_train - n_valid)
    if n_test < 1:
        raise ValueError(
            f"dataset {ds.name} has {len(ds)} frames, too few for {n_train} training and "
            f"{n_valid} validation frames plus a test set; pass a smaller n_train"
        )
    split = random_split(ds, n_train=n_train, n_valid=n_valid, n_test=n_test, seed=seed)
    fig = plot_dataset_overview(ds)
    save_figure(fig, folder / "dataset_overview.png")
    plt.close(fig)

    print(
        f"\n[2/5] Reference MD with {method}: {steps} NVT steps at {temperature_K:.0f} K, "
        f"then {steps} NVE steps, dt = {timestep_fs} fs"
    )
    calc = get_calculator(method)
    # One set of NVT settings for the reference and, later, the learned model: same start,
    # seed and thermostat, so that their sampled distributions can be compared.
    nvt_settings = dict(ensemble="nvt", steps=steps, timestep_fs=timestep_fs,
                        temperature_K=temperature_K, seed=seed, interval=5, progress=progress)
    nvt = run_md(ds.atoms(0), calc, **nvt_settings, trajectory=folder / "md_nvt.extxyz")
    # NVE continues from the thermalised end of the NVT run, with its velocities.
    nve = run_md(
        nvt.final_atoms,
        calc,
        ensemble="nve",
        steps=steps,
        timestep_fs=timestep_fs,
        init_velocities=False,
        interval=5,
        progress=progress,
        trajectory=folder / "md_nve.extxyz",
    )
    print(nvt.summary())
    print(nve.summary())
    drift = nve.energy_drift()
    time_nve = np.asarray(nve.time_fs) + (nvt.time_fs[-1] if len(nvt.time_fs) else 0.0)
    fig = plot_md_energies(
        np.concatenate([nvt.time_fs, time_nve]),
        np.concatenate([nvt.potential_energy, nve.potential_energy]),
        ekin=np.concatenate([nvt.kinetic_energy, nve.kinetic_energy]),
        etot=np.concatenate([nvt.total_energy, nve.total_energy]),
        temperature=np.concatenate([nvt.temperature, nve.temperature]),
    )
    save_figure(fig, folder / "md_energies.png")
    plt.close(fig)

    print(f"\n[3/5] sGDML model trained on {ds.name} ({ds.level_of_theory})")
    trained = _train_model(ds, split, folder, progress)
    model, report = trained.model, trained.report

    print(
        f"\n[4/5] NVT MD with the sGDML model: {steps} steps at {temperature_K:.0f} K, "
        "same start, seed and settings as the reference NVT run"
    )
    model_calc = model.calculator()
    model_calc.level_of_theory = f"sGDML ({n_train} {ds.level_of_theory} frames)"
    with warnings.catch_warnings():
        # an unstable run is reported in the summary and the report; no need to warn twice
        warnings.simplefilter("ignore", InstabilityWarning)
        model_nvt = run_md(ds.atoms(0), model_calc, **nvt_settings,
                           trajectory=folder / "sgdml_md_nvt.extxyz")
    print(model_nvt.summary())
    fig = plot_md_energies(
        model_nvt.time_fs,
        model_nvt.potential_energy,
        ekin=model_nvt.kinetic_energy,
        temperature=model_nvt.temperature,
    )
    save_figure(fig, folder / "sgdml_md_energies.png")
    plt.close(fig)
    fig = _plot_sampled_energies(nvt, model_nvt, f"{nvt.level_of_theory} MD", "sGDML MD")
    save_figure(fig, folder / "md_energy_distributions.png")
    plt.close(fig)
    sampled_ref, sampled_model = _energy_stats(nvt), _energy_stats(model_nvt)
    shift_mev = (sampled_model["mean_eV"] - sampled_ref["mean_eV"]) * 1e3
    print(
        f"  sampled E_pot: {nvt.level_of_theory} std {sampled_ref['std_meV']:.1f} meV, "
        f"sGDML std {sampled_model['std_meV']:.1f} meV, mean shift {shift_mev:+.1f} meV"
    )

    print("\n[5/5] Report")
    stats = ds.describe()
    curve = trained.curve
    summary = {
        "dataset": stats,
        "md": {
            "method": method,
            "timestep_fs": timestep_fs,
            "nvt": {
                "steps": steps,
                "temperature_K": temperature_K,
                "stable": nvt.stable,
                "mean_temperature_K": float(np.mean(nvt.temperature)),
                "potential_energy": sampled_ref,
            },
            "nve": {"steps": steps, "stable": nve.stable, **dataclasses.asdict(drift)},
        },
        "model": {
            "type": "sGDML",
            "n_train": n_train,
            "n_valid": trained.n_valid,
            "n_test": report.n_frames,
            "sigma": float(model.sigma),
            "sigma_grid": [float(s) for s in curve.sigmas],
            "valid_force_mae_meV_A": [float(v) * 1e3 for v in curve.force_mae],
            "n_symmetries": int(len(model.permutations_)),
            "selection_time_s": trained.fit_s,
            "test": report.to_dict(),
        },
        "model_md": {
            "steps": steps,
            "steps_completed": model_nvt.n_steps,
            "temperature_K": temperature_K,
            "stable": model_nvt.stable,
            "failure": None if model_nvt.stable else str(model_nvt.failure),
            "mean_temperature_K": float(np.mean(model_nvt.temperature)),
            "potential_energy": sampled_model,
            "mean_shift_vs_reference_meV": shift_mev,
        },
        "wall_time_s": time.perf_counter() - t_start,
    }
    atomic_write_text(folder / "summary.json", json.dumps(summary, indent=2, default=str))
    e_std = stats.get("energy_std_eV", float("nan"))
    f_std = float(np.std(ds.forces)) if ds.has_forces else float("nan")
    edge_note = (
        " σ is at the edge of the grid: a wider grid may find a better one."
        if model.sigma in (min(curve.sigmas), max(curve.sigmas))
        else ""
    )
    stability = (
        "stayed stable"
        if model_nvt.stable
        else f"became UNSTABLE ({model_nvt.failure}); train on more frames"
    )
    report_md = f"""# mlffkit quickstart report

## Dataset: {ds.name} ({ds.level_of_theory})
{len(ds)} frames of {stats["n_atoms"]} atoms; energy standard deviation {e_std * 1e3:.1f} meV
({e_std / units.KCAL_PER_MOL:.2f} kcal/mol).

```
{ds.summary()}
```

![dataset](dataset_overview.png)

## Reference MD ({method})
NVT at {temperature_K:.0f} K for {steps} steps of {timestep_fs} fs, then NVE for {steps} steps.

```
{nvt.summary()}

{nve.summary()}
```

![md](md_energies.png)

Trajectories: `md_nvt.extxyz`, `md_nve.extxyz` (open them with `ase gui` or
`mlffkit.widgets.TrajectoryViewer`).

## sGDML model
Trained on {n_train} frames drawn at random from the dataset; the kernel length scale
σ = {model.sigma:g} was chosen among {", ".join(f"{s:g}" for s in curve.sigmas)} by the force
error on {trained.n_valid} validation frames; {len(model.permutations_)} permutational
symmetries were found in the training frames.{edge_note} Errors on {report.n_frames}
held-out test frames that the model never saw:

{_error_table(report)}

For scale: the energies of the dataset spread by {e_std * 1e3:.1f} meV (standard deviation),
the force components by {f_std * 1e3:.0f} meV/Å.

![parity](parity.png)

![sigma](sigma_curve.png)

Model: `sgdml_model.npz` (`mlffkit.load_model`); its split: `sgdml_split.json`.

## MD with the sGDML model
NVT at {temperature_K:.0f} K for {steps} steps of {timestep_fs} fs from the same start, with
the same seed and thermostat as the reference NVT run above. The run {stability}.

```
{model_nvt.summary()}
```

![sgdml md](sgdml_md_energies.png)

Potential energies sampled by the two NVT runs: {nvt.level_of_theory} standard deviation
{sampled_ref["std_meV"]:.1f} meV, sGDML {sampled_model["std_meV"]:.1f} meV; the sGDML mean
is {shift_mev:+.1f} meV from the reference mean. A run of {steps * timestep_fs:.0f} fs holds
few independent configurations, so both histograms are noisy: compare their shapes and
widths, not single bins.

![energy distributions](md_energy_distributions.png)

Wall time {summary["wall_time_s"]:.1f} s.
"""
    atomic_write_text(folder / "report.md", report_md)
    print(
        f"Report written to {folder.resolve()}/ (report.md, summary.json, figures, "
        f"trajectories, model) in {summary['wall_time_s']:.1f} s"
    )
    print("Next: jupyter lab tutorials/")
    return folder
