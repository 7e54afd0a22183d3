"""The quickstart job: look at the bundled ethanol data, run reference MD, write a report.

``mlffkit quickstart`` runs :func:`run_quickstart`. It is the first thing a new user
runs, so it prints what it does as it goes and ends with the folder it wrote.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from mlffkit import config, units
from mlffkit.fileio import atomic_write_text

DEFAULT_FOLDER = "mlffkit-quickstart"


def free_folder(base: str | Path) -> Path:
    """``base`` if it does not exist yet, else ``base-2``, ``base-3``, ...: never reuse a folder."""
    base = Path(base)
    if not base.exists():
        return base
    k = 2
    while Path(f"{base}-{k}").exists():
        k += 1
    return Path(f"{base}-{k}")


def run_quickstart(
    output: str | Path | None = None,
    *,
    dataset: str = "ethanol",
    method: str = "gfn2",
    md_steps: int | None = None,
    temperature_K: float = 500.0,
    timestep_fs: float = 0.5,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Run the quickstart and return the report folder.

    Parameters
    ----------
    output : path, optional
        Report folder. It must not exist yet; by default a new ``mlffkit-quickstart``
        folder (``-2``, ``-3``, ... if taken) in the working directory.
    dataset : str
        Bundled dataset to inspect (default the GFN2-xTB ethanol set).
    method : str
        Reference method for the MD (see :func:`mlffkit.reference.get_calculator`).
    md_steps : int, optional
        Steps of NVT and then of NVE MD (time step ``timestep_fs`` fs);
        default 2000 each (200 in quick mode).
    temperature_K : float
        NVT temperature in K.
    """
    import matplotlib.pyplot as plt

    from mlffkit.data import load
    from mlffkit.md import run_md
    from mlffkit.plotting import plot_dataset_overview, plot_md_energies, save_figure
    from mlffkit.reference import get_calculator

    t_start = time.perf_counter()
    if output is None:
        folder = free_folder(DEFAULT_FOLDER)
    else:
        folder = Path(output)
        if folder.exists() and any(folder.iterdir()):
            raise FileExistsError(f"{folder} exists and is not empty; choose a new folder for the report")
    folder.mkdir(parents=True, exist_ok=True)
    steps = md_steps if md_steps is not None else config.pick(200, 2000)

    print(f"[1/3] Dataset '{dataset}'")
    ds = load(dataset)
    print(ds.summary())
    fig = plot_dataset_overview(ds)
    save_figure(fig, folder / "dataset_overview.png")
    plt.close(fig)

    print(f"\n[2/3] Reference MD with {method}: {steps} NVT steps at {temperature_K:.0f} K, "
          f"then {steps} NVE steps, dt = {timestep_fs} fs")
    calc = get_calculator(method)
    nvt = run_md(ds.atoms(0), calc, ensemble="nvt", steps=steps, timestep_fs=timestep_fs,
                 temperature_K=temperature_K, seed=seed, interval=5, progress=progress,
                 trajectory=folder / "md_nvt.extxyz")
    # NVE continues from the thermalised end of the NVT run, with its velocities.
    nve = run_md(nvt.final_atoms, calc, ensemble="nve", steps=steps, timestep_fs=timestep_fs,
                 init_velocities=False, interval=5, progress=progress,
                 trajectory=folder / "md_nve.extxyz")
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

    print("\n[3/3] Report")
    stats = ds.describe()
    summary = {
        "dataset": stats,
        "md": {
            "method": method,
            "timestep_fs": timestep_fs,
            "nvt": {"steps": steps, "temperature_K": temperature_K, "stable": nvt.stable,
                    "mean_temperature_K": float(np.mean(nvt.temperature))},
            "nve": {"steps": steps, "stable": nve.stable, **dataclasses.asdict(drift)},
        },
        "wall_time_s": time.perf_counter() - t_start,
    }
    atomic_write_text(folder / "summary.json", json.dumps(summary, indent=2, default=str))
    e_std = stats.get("energy_std_eV", float("nan"))
    report = f"""# mlffkit quickstart report

## Dataset: {ds.name} ({ds.level_of_theory})
{len(ds)} frames of {stats['n_atoms']} atoms; energy standard deviation {e_std * 1e3:.1f} meV
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
`mlffkit.widgets.TrajectoryViewer`). Wall time {summary['wall_time_s']:.1f} s.
"""
    atomic_write_text(folder / "report.md", report)
    print(f"Report written to {folder.resolve()}/ (report.md, summary.json, figures, trajectories) "
          f"in {summary['wall_time_s']:.1f} s")
    print("Next: jupyter lab tutorials/")
    return folder
