"""SchNet in mlffkit against SchNet in SchNetPack 2.1.1: the same network, data and batches, timed.

Both packages build the same SchNet: ``--n-features`` (128) atom features and filters,
``--n-interactions`` (3) interaction blocks, ``--n-rbf`` (20, SchNetPack's default)
Gaussians on [0, ``--cutoff``] (5 Å) with SchNetPack's width (the centre spacing Δ, i.e.
``gamma = 1 / (2 Δ²)`` in mlffkit), a cosine cutoff, shifted-softplus activations and
the readout ``Linear(F, F/2) → ssp → Linear(F/2, 1)`` (SchNetPack's ``Atomwise`` given
``activation=shifted_softplus``; its default would be SiLU). The parameter counts differ
only by the element-embedding rows (SchNetPack: Z < 100, mlffkit: Z < 119), which no
computation touches. Both train in float32 on the same frames with the same batch size,
loss (0.01 × energy MSE + 0.99 × force MSE, forces by autograd with ``create_graph``),
optimiser (Adam, ``--lr``) and weight average (EMA, ``--ema-decay``, after every step).

Measured, each package in a fresh child process (multiprocessing "spawn"; mlffkit first):

* **training steps/s** with each package's standard loop: mlffkit's
  :class:`mlffkit.nn.Trainer` on a :class:`mlffkit.nn.GraphData` (what ``SchNet.fit``
  runs); SchNetPack's recipe of ``spktrain experiment=md17``: an ``ASEAtomsData``
  database, ``AtomsDataModule`` with its transforms (``SubtractCenterOfMass``,
  ``RemoveOffsets``, ``MatScipyNeighborList``, ``CastTo32``), ``AtomisticTask`` with MAE and
  RMSE metrics, ``ExponentialMovingAverage`` callback and ``pytorch_lightning.Trainer``.
  Timed over ``--steps`` optimiser steps after ``--warmup`` steps, from the wall-clock
  time stamps of the steps (so data loading, metrics and callbacks count);
* **model-only training steps/s**: the same network, loss and Adam in a bare loop over
  batches prepared beforehand: what is left without each package's data pipeline;
* **single-molecule inference** through each package's ASE calculator
  (``SchNet.calculator()``; ``SpkCalculator``), one ethanol per call, energy and forces,
  as in MD; best of ``--repeats`` passes over ``--single-calls`` test frames;
* **batched inference**: ``--inference-batch`` test frames in one call, energies and
  forces, neighbour lists included (``SchNet.predict``; SchNetPack's ``AtomsConverter`` and
  model, as ``SpkCalculator`` uses them);
* **MD steps/s** through ASE (``VelocityVerlet``, ``--timestep`` fs): best of ``--repeats``
  runs of ``--md-steps`` steps after 10 warm-up steps, with each calculator, from the same
  positions and velocities;
* peak resident memory (``VmHWM``) of each child and, on CUDA, peak GPU memory.

Times are wall-clock times; ``--clock cpu`` (with ``--threads 1``) takes the process's CPU
time instead, which on a machine busy with other jobs leaves out the time they hold the
core (the figures then mean "per CPU-second").

After its own timed training, SchNetPack's model is given mlffkit's trained weights, so
that inference and MD compare the same function: the table reports the largest energy and
force differences between the two packages on the inference batch (float32 round-off
means the same network) and each package's energy drift over the MD run.

SchNetPack 2.1.1 installs next to torch 2.13 only without its pinned dependencies, and
needs two compatibility shims that this script applies in its child process only
(``torch.utils.data.dataloader.T_co`` aliased to ``_T_co`` before the import, and
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` so that ``SpkCalculator`` can unpickle its model
file)::

    pip install --no-deps schnetpack==2.1.1
    pip install matscipy dirsync fasteners hydra-core
    pip install --no-deps pytorch-lightning==2.5.6 torchmetrics==1.9.0 \\
        lightning-utilities==0.15.3 torch-ema==0.3

Run from the repository root (the default data is ``../shared/data/rmd17``, original MD17
ethanol labels)::

    python benchmarks/schnet_vs_schnetpack.py --threads 2 --json schnet_vs_schnetpack.json
    python benchmarks/schnet_vs_schnetpack.py --device cuda --batch-size 100
    python benchmarks/schnet_vs_schnetpack.py --skip-schnetpack   # mlffkit alone
    python benchmarks/schnet_vs_schnetpack.py --threads 1 --clock cpu   # on a shared machine
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from _harness import (
    THREAD_VARIABLES,
    add_rmd17_arguments,
    check_target,
    cores,
    load_rmd17,
    log,
    peak_rss_mb,
    rss_mb,
    run_in_child,
    set_threads,
)

#: what mlffkit should reach: table row key -> (ratio mlffkit/SchNetPack, ">=", bound)
TARGETS = {
    "train_steps_per_s": (">=", 1.5),
    "single_per_s": (">=", 2.0),
}
#: SchNetPack's element table (nn.Embedding(100, F)): atomic numbers below this
SPK_N_ELEMENTS = 100


# ---------------------------------------------------------------------------- measuring
def _sync(device: str) -> None:
    """Wait for queued GPU work, so that a time stamp means the work is done."""
    if device != "cpu":
        import torch

        torch.cuda.synchronize()


def clock(job: dict):
    """The timer of the run: wall-clock time, or the process's CPU time (``--clock cpu``)."""
    return time.process_time if job["clock"] == "cpu" else time.perf_counter


def best_rate(fn, count: int, job: dict) -> float:
    """``count`` divided by the shortest time of ``job["repeats"]`` calls of ``fn()``, per second."""
    now = clock(job)
    best = math.inf
    for _ in range(job["repeats"]):
        _sync(job["device"])
        start = now()
        fn()
        _sync(job["device"])
        best = min(best, now() - start)
    return count / best


def step_rate(stamps: list[float], warmup: int) -> float:
    """Steps per second between the end of step ``warmup`` (>= 1) and the end of the last step."""
    if len(stamps) <= warmup:
        raise RuntimeError(f"only {len(stamps)} training steps ran; need more than {warmup}")
    return (len(stamps) - warmup) / (stamps[-1] - stamps[warmup - 1])


def run_md(atoms, job: dict) -> dict:
    """NVE velocity Verlet through ASE: steps/s, then the total-energy drift (meV).

    Best of ``repeats`` runs of ``md_steps`` steps, each continuing the trajectory. They
    ask for forces only, as ``VelocityVerlet`` does; the drift comes from one more,
    untimed run of as many steps that also reads the energies (a calculator that keeps
    only the requested property would otherwise be timed twice per step).
    """
    from ase import units
    from ase.md.verlet import VelocityVerlet

    dyn = VelocityVerlet(atoms, timestep=job["timestep_fs"] * units.fs)
    dyn.run(10)  # warm-up
    rate = best_rate(lambda: dyn.run(job["md_steps"]), job["md_steps"], job)
    final = atoms.get_positions()
    totals = []
    dyn.attach(lambda: totals.append(atoms.get_total_energy()), interval=1)
    dyn.run(job["md_steps"])
    return {
        "md_steps_per_s": rate,
        "md_drift_meV": 1000 * float(max(totals) - min(totals)),
        "md_final_positions": final,
    }


def _gpu_peak_mb(device: str) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 1024**2 if device != "cpu" else None


# ---------------------------------------------------------------------------- mlffkit
class _EnoughSteps(Exception):
    """Raised by the timing hook once the requested training steps have run."""


def measurements(
    *,
    package: str,
    n_params: int,
    setup_s: float,
    rates: tuple[float, float, float, float],
    md: dict,
    baseline: float,
    device: str,
    energies,
    forces,
) -> dict:
    """One package's results, the same keys for both (read in the child, at its end).

    ``rates``: training steps/s of the package loop and of the bare loop, single-molecule
    and batched inference in structures/s; ``md``: what :func:`run_md` returned.
    """
    import numpy as np

    train_rate, bare_rate, single_rate, batch_rate = rates
    return {
        "package": package,
        "parameters": n_params,
        "setup_s": setup_s,
        "train_steps_per_s": train_rate,
        "bare_steps_per_s": bare_rate,
        "single_per_s": single_rate,
        "batch_per_s": batch_rate,
        **md,
        "baseline_rss_mb": baseline,
        "peak_rss_mb": peak_rss_mb(),
        "peak_gpu_mb": _gpu_peak_mb(device),
        "batch_energies": energies,
        "batch_forces": forces,
        "finite": bool(np.isfinite(energies).all() and np.isfinite(forces).all()),
    }


def _stamp_steps(optimizer, n_steps: int, job: dict) -> list[float]:
    """Time-stamp the end of every ``optimizer.step()``; stop the loop after ``n_steps``."""
    stamps: list[float] = []
    step = optimizer.step
    now = clock(job)

    def timed_step(*args, **kwargs):
        out = step(*args, **kwargs)
        _sync(job["device"])
        stamps.append(now())
        if len(stamps) >= n_steps:
            raise _EnoughSteps
        return out

    optimizer.step = timed_step
    return stamps


def run_mlffkit(job: dict) -> dict:
    """mlffkit: Trainer loop, bare loop, ASE calculator, batched predict, MD (child process)."""
    import torch
    from ase import Atoms

    import mlffkit
    from mlffkit import properties
    from mlffkit.data import Dataset
    from mlffkit.models import SchNet
    from mlffkit.models.neural import energy_statistics
    from mlffkit.nn import GraphData, SchNetPotential, Trainer

    set_threads(job["threads"])
    now = clock(job)
    device, dtype = torch.device(job["device"]), torch.float32
    baseline = rss_mb()
    t = job["train"]
    train = Dataset(t["numbers"], t["positions"], t["energies"], t["forces"])
    arch = {k: job[k] for k in ("n_features", "n_interactions", "cutoff", "n_rbf", "gamma")}

    log(f"mlffkit: neighbour lists and statistics of {len(train)} training frames")
    start = now()
    offsets, scale = energy_statistics(train)
    graphs = GraphData(train, job["cutoff"], device, dtype)
    setup_s = now() - start

    def new_potential():
        torch.manual_seed(job["seed"])
        potential = SchNetPotential(**arch).to(device=device, dtype=dtype)
        potential.set_energy_statistics(torch.as_tensor(offsets), scale)
        return potential

    # -- the package's training loop, stopped by the timing hook after warmup + steps
    n_steps = job["warmup"] + job["steps"]
    log(f"mlffkit: {n_steps} training steps with Trainer (batch {job['batch_size']})")
    potential = new_potential()
    trainer = Trainer(
        potential,
        energy_weight=job["energy_weight"],
        force_weight=job["force_weight"],
        lr=job["lr"],
        batch_size=job["batch_size"],
        max_epochs=n_steps,  # the hook ends training first
        ema_decay=job["ema_decay"],
        seed=job["seed"],
    )
    stamps = _stamp_steps(trainer.optimizer, n_steps, job)
    try:
        trainer.fit(graphs, progress=False)
    except _EnoughSteps:
        pass
    train_rate = step_rate(stamps, job["warmup"])

    # -- the same network, loss and optimiser in a bare loop over prepared batches
    log("mlffkit: bare training loop")
    bare = new_potential().train()
    optimizer = torch.optim.Adam(bare.parameters(), lr=job["lr"])
    order = torch.randperm(len(graphs), generator=torch.Generator().manual_seed(job["seed"]))
    batches = [
        graphs.batch(order[s : s + job["batch_size"]])
        for s in range(0, len(graphs) - job["batch_size"] + 1, job["batch_size"])
    ]
    bare_stamps = []
    for k in range(n_steps):
        graph, target = batches[k % len(batches)]
        out = bare(graph, forces=True, create_graph=True)
        e_err = out[properties.ENERGY] - target["energy"]
        f_err = out[properties.FORCES] - target["forces"]
        loss = job["energy_weight"] * (e_err**2).mean() + job["force_weight"] * (f_err**2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _sync(job["device"])
        bare_stamps.append(now())
    bare_rate = step_rate(bare_stamps, job["warmup"])
    del bare, optimizer, batches

    # -- the estimator with the trained weights: its calculator and predict are timed
    # (a one-epoch fit on a few frames makes a fitted SchNet; its weights are then replaced)
    model = SchNet(
        **arch,
        batch_size=job["batch_size"],
        max_epochs=1,
        validation_fraction=0.5,
        seed=job["seed"],
        dtype="float32",
        device=job["device"],
    ).fit(train[: 2 * job["batch_size"]], progress=False)
    model.potential_.load_state_dict(potential.state_dict())
    n_params = sum(p.numel() for p in potential.parameters())

    numbers = t["numbers"]
    singles = job["single_positions"]
    atoms = Atoms(numbers=numbers, positions=singles[0])
    atoms.calc = model.calculator()

    def single_pass():
        for positions in singles:
            atoms.positions = positions
            atoms.get_forces()

    log(f"mlffkit: single-molecule inference ({len(singles)} calls through ASE)")
    for positions in singles[:10]:  # warm-up
        atoms.positions = positions
        atoms.get_forces()
    single_rate = best_rate(single_pass, len(singles), job)

    log(f"mlffkit: batched inference ({len(job['batch_positions'])} frames per call)")
    frames = Dataset(numbers, job["batch_positions"])
    model.predict_batch_size = len(frames)  # one forward pass for the whole batch
    model.predict(frames)  # warm-up
    batch_rate = best_rate(lambda: model.predict(frames), len(frames), job)
    energies, forces = model.predict(frames)

    log(f"mlffkit: {job['md_steps']} MD steps through ASE")
    md_atoms = Atoms(numbers=numbers, positions=job["md_positions"])
    md_atoms.set_velocities(job["md_velocities"])
    md_atoms.calc = model.calculator()
    md = run_md(md_atoms, job)

    return {
        **measurements(
            package=f"mlffkit {mlffkit.__version__}",
            n_params=n_params,
            setup_s=setup_s,
            rates=(train_rate, bare_rate, single_rate, batch_rate),
            md=md,
            baseline=baseline,
            device=job["device"],
            energies=energies,
            forces=forces,
        ),
        "weights": {k: v.detach().cpu().numpy() for k, v in potential.state_dict().items()},
    }


# ---------------------------------------------------------------------------- SchNetPack
def import_schnetpack():
    """Import SchNetPack 2.1.1 under torch ≥ 2.6 (module-level shim for its loader)."""
    import torch.utils.data.dataloader as dataloader

    if not hasattr(dataloader, "T_co"):  # schnetpack.data.loader imports this private name
        dataloader.T_co = dataloader._T_co
    import schnetpack

    return schnetpack


def spk_state_from_mlffkit(weights: dict, spk_state: dict, numbers, n_interactions: int) -> dict:
    """SchNetPack's state dict holding mlffkit's SchNet weights (same architecture).

    mlffkit's energy is ``Σ_i (s ε_i + E0[Z_i])``, SchNetPack's ``Σ_i ε'_i + n μ``: the
    scale ``s`` goes into the last readout layer and, for the one molecule both are
    evaluated on, ``μ = Σ_i E0[Z_i] / n`` into ``AddOffsets``' mean.
    """
    import numpy as np
    import torch

    if np.max(numbers) >= SPK_N_ELEMENTS:
        raise ValueError(f"SchNetPack's embedding holds Z < {SPK_N_ELEMENTS} only")
    w = {k: torch.as_tensor(v) for k, v in weights.items()}
    state = dict(spk_state)
    state["representation.embedding.weight"] = w["embedding.weight"][:SPK_N_ELEMENTS]
    pairs = {  # SchNetPack name -> mlffkit name, per interaction block
        "in2f.weight": "in_to_filters.weight",
        "filter_network.0": "convolution.filter_network.0",
        "filter_network.1": "convolution.filter_network.2",
        "f2out.0": "filters_to_out.0",
        "f2out.1": "filters_to_out.2",
    }
    for k in range(n_interactions):
        for spk_name, name in pairs.items():
            for leaf in ("",) if spk_name.endswith("weight") else (".weight", ".bias"):
                state[f"representation.interactions.{k}.{spk_name}{leaf}"] = w[
                    f"interactions.{k}.{name}{leaf}"
                ]
    scale = float(w["energy_scale"])
    state["output_modules.0.outnet.0.weight"] = w["readout.0.weight"]
    state["output_modules.0.outnet.0.bias"] = w["readout.0.bias"]
    state["output_modules.0.outnet.1.weight"] = scale * w["readout.2.weight"]
    state["output_modules.0.outnet.1.bias"] = scale * w["readout.2.bias"]
    offsets = w["energy_offsets"].double()
    mean = offsets[torch.as_tensor(numbers)].mean().reshape(1)
    state["postprocessors.1.mean"] = mean.to(state["postprocessors.1.mean"].dtype)
    return state


def run_schnetpack(job: dict) -> dict:
    """SchNetPack: Lightning training, bare loop, SpkCalculator, AtomsConverter, MD (child)."""
    import logging
    import warnings

    import numpy as np
    import torch
    from ase import Atoms

    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "schnetpack"):
        logging.getLogger(name).setLevel(logging.ERROR)
    spk = import_schnetpack()
    import pytorch_lightning as pl
    import schnetpack.transform as trn
    import torchmetrics

    set_threads(job["threads"])
    now = clock(job)
    baseline = rss_mb()
    device = job["device"]
    t = job["train"]
    numbers = t["numbers"]
    cutoff = job["cutoff"]
    units = {"energy": "eV", "forces": "eV/Ang"}
    workdir = tempfile.TemporaryDirectory(prefix="spk_bench_")
    os.chdir(workdir.name)  # AtomsDataModule writes a lock file into the working directory

    log(f"schnetpack: writing {len(t['energies'])} training frames to an ASE database")
    start = now()
    db_path = os.path.join(workdir.name, "train.db")
    db = spk.data.ASEAtomsData.create(db_path, distance_unit="Ang", property_unit_dict=units)
    db.add_systems(
        [
            {"energy": np.array([e]), "forces": f}
            for e, f in zip(t["energies"], t["forces"], strict=True)
        ],
        [Atoms(numbers=numbers, positions=r) for r in t["positions"]],
    )
    n_train = len(t["energies"])
    np.savez(
        "split.npz",  # all frames train (validation is not part of the timing)
        train_idx=np.arange(n_train),
        val_idx=np.zeros(0, dtype=int),
        test_idx=np.zeros(0, dtype=int),
    )
    db_s = now() - start

    def metrics():
        return {
            "mae": torchmetrics.MeanAbsoluteError(),
            "rmse": torchmetrics.MeanSquaredError(squared=False),
        }

    def new_model():
        torch.manual_seed(job["seed"])
        representation = spk.representation.SchNet(
            n_atom_basis=job["n_features"],
            n_interactions=job["n_interactions"],
            radial_basis=spk.nn.GaussianRBF(n_rbf=job["n_rbf"], cutoff=cutoff),
            cutoff_fn=spk.nn.CosineCutoff(cutoff),
        )
        return spk.model.NeuralNetworkPotential(
            representation=representation,
            input_modules=[spk.atomistic.PairwiseDistances()],
            output_modules=[
                spk.atomistic.Atomwise(
                    n_in=job["n_features"],
                    output_key="energy",
                    activation=spk.nn.shifted_softplus,
                ),
                spk.atomistic.Forces(energy_key="energy", force_key="forces"),
            ],
            postprocessors=[trn.CastTo64(), trn.AddOffsets("energy", add_mean=True)],
        )

    datamodule = spk.data.AtomsDataModule(
        db_path,
        batch_size=job["batch_size"],
        split_file="split.npz",
        transforms=[
            trn.SubtractCenterOfMass(),
            trn.RemoveOffsets("energy", remove_mean=True),
            trn.MatScipyNeighborList(cutoff=cutoff),
            trn.CastTo32(),
        ],
        num_workers=job["spk_workers"],
        property_units=units,
        distance_unit="Ang",
        pin_memory=device != "cpu",
    )
    model = new_model()
    n_params = sum(p.numel() for p in model.parameters())
    widths = model.representation.radial_basis.widths
    gamma = float(0.5 / widths[0] ** 2)
    task = spk.task.AtomisticTask(
        model=model,
        outputs=[
            spk.task.ModelOutput(
                name="energy",
                loss_fn=torch.nn.MSELoss(),
                loss_weight=job["energy_weight"],
                metrics=metrics(),
            ),
            spk.task.ModelOutput(
                name="forces",
                loss_fn=torch.nn.MSELoss(),
                loss_weight=job["force_weight"],
                metrics=metrics(),
            ),
        ],
        optimizer_cls=torch.optim.Adam,
        optimizer_args={"lr": job["lr"]},
    )
    stamps: list[float] = []
    started: list[float] = []

    class StepClock(pl.Callback):
        """Time stamps at the start of training and at the end of every batch."""

        def on_train_start(self, trainer, module):
            started.append(now())

        def on_train_batch_end(self, *args, **kwargs):
            _sync(device)
            stamps.append(now())

    n_steps = job["warmup"] + job["steps"]
    trainer = pl.Trainer(
        accelerator="cpu" if device == "cpu" else "gpu",
        devices=1,
        max_steps=n_steps,
        precision=32,
        inference_mode=False,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[spk.train.ExponentialMovingAverage(decay=job["ema_decay"]), StepClock()],
    )
    log(f"schnetpack: {n_steps} training steps with pytorch_lightning.Trainer")
    fit_start = now()
    trainer.fit(task, datamodule=datamodule)
    setup_s = db_s + started[0] - fit_start
    train_rate = step_rate(stamps, job["warmup"])

    log("schnetpack: bare training loop")
    bare = new_model().to(device)
    bare.do_postprocessing = False
    bare.train()
    optimizer = torch.optim.Adam(bare.parameters(), lr=job["lr"])
    batches = []
    for batch in datamodule.train_dataloader():
        batches.append({k: v.to(device) for k, v in batch.items()})
        if len(batches) == n_steps:
            break
    mse = torch.nn.functional.mse_loss
    bare_stamps = []
    for k in range(n_steps):
        batch = batches[k % len(batches)]
        pred = bare(dict(batch))
        loss = job["energy_weight"] * mse(pred["energy"], batch["energy"])
        loss = loss + job["force_weight"] * mse(pred["forces"], batch["forces"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _sync(device)
        bare_stamps.append(now())
    bare_rate = step_rate(bare_stamps, job["warmup"])
    del bare, optimizer, batches

    # the trained model with mlffkit's weights (if given), saved and loaded as SchNetPack does
    model = model.cpu()
    if job.get("mlffkit_weights") is not None:
        model.load_state_dict(
            spk_state_from_mlffkit(
                job["mlffkit_weights"], model.state_dict(), numbers, job["n_interactions"]
            )
        )
    model_file = os.path.join(workdir.name, "best_model")
    torch.save(model, model_file)
    # SchNetPack's load_model calls torch.load without weights_only, which torch >= 2.6
    # reads as weights_only=True, refusing the pickled module
    os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"

    def calculator():
        return spk.interfaces.SpkCalculator(
            model_file=model_file,
            neighbor_list=trn.MatScipyNeighborList(cutoff=cutoff),
            energy_unit="eV",
            position_unit="Ang",
            device=device,
            dtype=torch.float32,
        )

    singles = job["single_positions"]
    atoms = Atoms(numbers=numbers, positions=singles[0])
    calc = calculator()
    atoms.calc = calc

    def single_pass():
        for positions in singles:
            atoms.positions = positions
            atoms.get_forces()

    log(f"schnetpack: single-molecule inference ({len(singles)} calls through ASE)")
    for positions in singles[:10]:
        atoms.positions = positions
        atoms.get_forces()
    single_rate = best_rate(single_pass, len(singles), job)

    frames = [Atoms(numbers=numbers, positions=r) for r in job["batch_positions"]]
    log(f"schnetpack: batched inference ({len(frames)} frames per call)")

    def predict_batch():
        out = calc.model(calc.converter(frames))
        return out["energy"].detach().cpu().numpy(), out["forces"].detach().cpu().numpy()

    predict_batch()
    batch_rate = best_rate(predict_batch, len(frames), job)
    energies, forces = predict_batch()
    forces = forces.reshape(len(frames), -1, 3)

    log(f"schnetpack: {job['md_steps']} MD steps through ASE")
    md_atoms = Atoms(numbers=numbers, positions=job["md_positions"])
    md_atoms.set_velocities(job["md_velocities"])
    md_atoms.calc = calculator()
    md = run_md(md_atoms, job)
    workdir.cleanup()
    return {
        **measurements(
            package=f"schnetpack {spk.__version__}",
            n_params=n_params,
            setup_s=setup_s,
            rates=(train_rate, bare_rate, single_rate, batch_rate),
            md=md,
            baseline=baseline,
            device=device,
            energies=energies,
            forces=forces,
        ),
        "gamma": gamma,
        "same_weights": job.get("mlffkit_weights") is not None,
    }


# ---------------------------------------------------------------------------- children
# ---------------------------------------------------------------------------- data
def make_job(args) -> dict:
    """Frames (eV, Å), MD start and settings: everything both children get."""
    import numpy as np
    from ase import Atoms

    from mlffkit.md.integrators import initialize_velocities

    train, test = load_rmd17(args)
    if args.n_train < args.batch_size:
        raise SystemExit(f"--n-train {args.n_train} is smaller than one batch ({args.batch_size})")
    n_test = max(args.single_calls, args.inference_batch)
    if n_test > len(test):
        raise SystemExit(f"--single-calls/--inference-batch exceed the {len(test)} test frames")
    train = train.subset(range(args.n_train))
    md_atoms = Atoms(numbers=test.numbers, positions=test.positions[0])
    initialize_velocities(md_atoms, args.temperature, np.random.default_rng(args.seed))
    spacing = args.cutoff / (args.n_rbf - 1)  # SchNetPack: width = centre spacing
    return {
        "name": train.name,
        "theory": train.level_of_theory,
        "train": {
            "numbers": train.numbers,
            "positions": train.positions,
            "energies": train.energies,
            "forces": train.forces,
        },
        "single_positions": test.positions[: args.single_calls],
        "batch_positions": test.positions[: args.inference_batch],
        "md_positions": md_atoms.get_positions(),
        "md_velocities": md_atoms.get_velocities(),
        "n_features": args.n_features,
        "n_interactions": args.n_interactions,
        "cutoff": args.cutoff,
        "n_rbf": args.n_rbf,
        "gamma": 0.5 / spacing**2,
        "batch_size": args.batch_size,
        "warmup": args.warmup,
        "steps": args.steps,
        "lr": args.lr,
        "energy_weight": 0.01,
        "force_weight": 0.99,
        "ema_decay": args.ema_decay,
        "md_steps": args.md_steps,
        "timestep_fs": args.timestep,
        "repeats": args.repeats,
        "threads": args.threads,
        "device": args.device,
        "spk_workers": args.spk_workers,
        "clock": args.clock,
        "seed": args.seed,
    }


# ---------------------------------------------------------------------------- report
ROWS = [  # label, key, format, higher is better
    ("parameters", "parameters", "d", None),
    ("training set-up (s)", "setup_s", ".2f", False),
    ("training, package loop (steps/s)", "train_steps_per_s", ".2f", True),
    ("training, bare loop (steps/s)", "bare_steps_per_s", ".2f", True),
    ("inference, 1 molecule via ASE (/s)", "single_per_s", ".1f", True),
    ("inference, batch (structures/s)", "batch_per_s", ".0f", True),
    ("MD via ASE (steps/s)", "md_steps_per_s", ".1f", True),
    ("MD energy drift (meV)", "md_drift_meV", ".2f", None),
    ("peak RSS (MB)", "peak_rss_mb", ".0f", False),
    ("  after imports (MB)", "baseline_rss_mb", ".0f", None),
    ("peak GPU memory (MB)", "peak_gpu_mb", ".0f", False),
]


def ratios(mine: dict, ref: dict) -> dict:
    """mlffkit / SchNetPack for every timed row, with the targets where there are some."""
    out = {}
    for _, key, _, higher in ROWS:
        if higher is None or mine.get(key) is None or not ref.get(key):
            continue
        entry = {"ratio": mine[key] / ref[key]}
        if key in TARGETS:
            entry.update(check_target(entry["ratio"], *TARGETS[key]))
        out[key] = entry
    return out


def agreement(mine: dict, ref: dict) -> dict | None:
    """Largest differences of the two packages' predictions with the same weights."""
    import numpy as np

    if not ref.get("same_weights"):
        return None
    d_energy = np.abs(mine["batch_energies"] - ref["batch_energies"]).max()
    d_force = np.abs(mine["batch_forces"] - ref["batch_forces"]).max()
    return {
        "max_energy_diff_meV": 1000 * float(d_energy),
        "max_force_diff_meV_A": 1000 * float(d_force),
        "max_force_meV_A": 1000 * float(np.abs(mine["batch_forces"]).max()),
        "md_final_position_diff_A": float(
            np.abs(mine["md_final_positions"] - ref["md_final_positions"]).max()
        ),
    }


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(ref: dict | None, mine: dict, rat: dict | None) -> str:
    ref_name = ref["package"] if ref else "schnetpack (skipped)"
    lines = [f"{'':36s}{ref_name:>18s}{mine['package']:>16s}{'ratio':>8s}{'target':>8s}  met"]
    for label, key, spec, _ in ROWS:
        if key == "peak_gpu_mb" and mine.get(key) is None:
            continue
        line = f"{label:36s}{_fmt(ref.get(key) if ref else None, spec):>18s}"
        line += f"{_fmt(mine.get(key), spec):>16s}"
        if rat and key in rat:
            line += f"{rat[key]['ratio']:8.2f}"
            if "target" in rat[key]:
                line += f"{rat[key]['target']:>8s}  {'yes' if rat[key]['met'] else 'NO'}"
        lines.append(line)
    return "\n".join(lines)


def environment(threads: int, device: str) -> dict:
    import numpy
    import torch

    env = {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "threads": threads,
    }
    if device != "cpu" and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def _jsonable(d: dict) -> dict:
    """Drop the arrays that only the comparison needs."""
    skip = {"batch_energies", "batch_forces", "md_final_positions", "weights"}
    return {k: v for k, v in d.items() if k not in skip}


# ---------------------------------------------------------------------------- main
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="SchNet in mlffkit against SchNetPack 2.1.1: same network, data, batches.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_rmd17_arguments(p)
    p.add_argument(
        "--batch-size",
        type=int,
        default=10,
        help="structures per training step, both packages (SchNetPack's MD17 default)",
    )
    p.add_argument("--warmup", type=int, default=10, help="training steps before timing")
    p.add_argument("--steps", type=int, default=100, help="timed training steps")
    p.add_argument("--n-features", type=int, default=128, help="atom features and filters")
    p.add_argument("--n-interactions", type=int, default=3)
    p.add_argument("--cutoff", type=float, default=5.0, help="cosine cutoff, Å")
    p.add_argument("--n-rbf", type=int, default=20, help="Gaussians on [0, cutoff]")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate")
    p.add_argument("--ema-decay", type=float, default=0.995, help="weight average, both")
    p.add_argument("--single-calls", type=int, default=200, help="ASE calls per timing pass")
    p.add_argument("--inference-batch", type=int, default=100, help="frames per batched call")
    p.add_argument("--md-steps", type=int, default=200, help="timed velocity-Verlet steps")
    p.add_argument("--timestep", type=float, default=0.5, help="MD time step, fs")
    p.add_argument("--temperature", type=float, default=300.0, help="initial velocities, K")
    p.add_argument("--repeats", type=int, default=3, help="inference and MD timings: best of N")
    p.add_argument("--threads", type=int, default=cores(), help="torch threads per package")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument(
        "--spk-workers",
        type=int,
        default=0,
        help="SchNetPack's data-loader worker processes (0: load in the training process)",
    )
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: wall-clock time; cpu: the process's CPU time, for --threads 1 on a machine "
        "shared with other jobs (wall time would count the time they hold the core)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-schnetpack", action="store_true", help="run mlffkit only")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    args = p.parse_args(argv)
    for name in ("threads", "batch_size", "steps", "single_calls", "inference_batch", "md_steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.clock == "cpu" and (args.threads != 1 or args.spk_workers or args.device != "cpu"):
        p.error(
            "--clock cpu measures one process's CPU time: use it with --threads 1, "
            "--spk-workers 0 and --device cpu (or use --clock wall)"
        )
    if args.warmup < 1 or args.n_rbf < 2 or args.repeats < 1:
        p.error("--warmup (the first time stamp), --repeats must be >= 1, --n-rbf >= 2")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from mlffkit.fileio import atomic_write_text, check_writable

    if args.json is not None:
        check_writable(args.json, args.overwrite)
    for name in THREAD_VARIABLES:  # inherited by the spawned children
        os.environ[name] = str(args.threads)
    job = make_job(args)
    log(
        f"SchNet {args.n_features} features, {args.n_interactions} interactions, "
        f"{args.cutoff:g} Å, {args.n_rbf} Gaussians; {args.n_train} training frames, batch "
        f"{args.batch_size}; {args.threads} thread(s), {args.device}"
    )
    mine = run_in_child(run_mlffkit, job)
    ref = None
    if not args.skip_schnetpack:
        ref = run_in_child(run_schnetpack, {**job, "mlffkit_weights": mine["weights"]})
        if abs(ref["gamma"] - job["gamma"]) > 1e-6 * job["gamma"]:
            raise RuntimeError(f"Gaussian widths differ: {ref['gamma']} vs {job['gamma']}")
    rat = ratios(mine, ref) if ref else None
    agree = agreement(mine, ref) if ref else None

    print(
        f"SchNet ({args.n_features} features, {args.n_interactions} interactions, "
        f"{args.cutoff:g} Å cosine cutoff, {args.n_rbf} Gaussians) on {job['name']} "
        f"({job['theory']}): {args.n_train} training frames, batch {args.batch_size}, "
        f"{args.steps} timed steps; {args.threads} thread(s), {args.device}, "
        f"{'CPU' if args.clock == 'cpu' else 'wall-clock'} time"
    )
    print(table(ref, mine, rat))
    if agree:
        print(
            f"same weights in both: max |ΔE| {agree['max_energy_diff_meV']:.3f} meV, "
            f"max |ΔF| {agree['max_force_diff_meV_A']:.4f} meV/Å "
            f"(largest force {agree['max_force_meV_A']:.0f} meV/Å) over "
            f"{args.inference_batch} test frames; MD positions after "
            f"{10 + args.repeats * args.md_steps} steps "
            f"differ by at most {agree['md_final_position_diff_A']:.1e} Å"
        )
    for part in (mine, ref):
        if part is not None and not part["finite"]:
            print(f"WARNING: {part['package']} predicted non-finite energies or forces")
    if args.json is not None:
        result = {
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "gamma": job["gamma"],
            "environment": environment(args.threads, args.device),
            "schnetpack": _jsonable(ref) if ref else None,
            "mlffkit": _jsonable(mine),
            "ratios": rat,
            "agreement": agree,
        }
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n", overwrite=args.overwrite)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
