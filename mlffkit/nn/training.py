"""Training a :class:`~mlffkit.nn.Potential` on energies and forces.

The loss of a batch is

.. math::
    \\mathcal L = w_E\\, \\frac{1}{B}\\sum_b (E_b - \\hat E_b)^2
      + w_F\\, \\frac{1}{3N}\\sum_{i,\\alpha} (F_{i\\alpha} - \\hat F_{i\\alpha})^2

(eV² and (eV/Å)²). Training the forces needs the derivative of the network's
gradient, which autograd provides with ``create_graph=True``. Around that sits the
usual machinery, each piece because it measurably helps: Adam; a learning rate
halved when the validation loss stops improving; an exponential moving average
(EMA) of the weights, which is what gets validated and kept (it smooths the noise
of the last steps); early stopping on the validation loss; a checkpoint after every
epoch that :meth:`Trainer.fit` resumes from, giving the same result as an
uninterrupted run; seeded shuffling.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from mlffkit import properties
from mlffkit.fileio import atomic_path
from mlffkit.nn.data import GraphData
from mlffkit.nn.potential import Potential

#: what a checkpoint file says it is
CHECKPOINT_FORMAT = "mlffkit-training-checkpoint"


@dataclass
class EpochRecord:
    """Figures of one epoch (energies eV, forces eV/Å, time s)."""

    epoch: int
    lr: float
    train_loss: float
    train_energy_mae: float
    train_force_mae: float
    valid_loss: float = math.nan
    valid_energy_mae: float = math.nan
    valid_force_mae: float = math.nan
    time_s: float = 0.0


@dataclass
class TrainingHistory:
    """Learning curves of a training run: one :class:`EpochRecord` per epoch.

    Attributes
    ----------
    records : list of EpochRecord
    stopped_because : str
        ``"max_epochs"``, ``"early_stopping"``, ``"min_lr"`` or ``"max_time"``.
    best_epoch : int
        Epoch whose (EMA) weights were kept, by validation loss.
    """

    records: list[EpochRecord] = field(default_factory=list)
    stopped_because: str = ""
    best_epoch: int = -1

    def __len__(self) -> int:
        return len(self.records)

    def column(self, name: str) -> np.ndarray:
        """One column of the records as an array, e.g. ``"valid_force_mae"``."""
        return np.array([getattr(r, name) for r in self.records], dtype=float)

    def to_dict(self) -> dict:
        return {
            "records": [asdict(r) for r in self.records],
            "stopped_because": self.stopped_because,
            "best_epoch": self.best_epoch,
        }

    @classmethod
    def from_dict(cls, d: dict) -> TrainingHistory:
        return cls(
            records=[EpochRecord(**r) for r in d.get("records", [])],
            stopped_because=d.get("stopped_because", ""),
            best_epoch=int(d.get("best_epoch", -1)),
        )

    def plot(self, ax=None, unit: str = "kcal/mol"):
        """Force MAE of training and validation per epoch, with the learning rate.

        Parameters
        ----------
        ax : matplotlib Axes, optional
        unit : {"kcal/mol", "meV"}
            Units of the force errors (kcal/mol/Å or meV/Å).
        """
        import matplotlib.pyplot as plt

        from mlffkit import units

        factor = 1.0 / units.KCAL_PER_MOL if unit == "kcal/mol" else 1000.0
        label = "kcal/mol/Å" if unit == "kcal/mol" else "meV/Å"
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 3.5))
        epochs = self.column("epoch")
        ax.semilogy(epochs, self.column("train_force_mae") * factor, label="training (running)")
        valid = self.column("valid_force_mae")
        if np.isfinite(valid).any():
            ax.semilogy(epochs, valid * factor, label="validation (EMA weights)")
        if self.best_epoch >= 0:
            ax.axvline(self.best_epoch, color="0.6", lw=0.8, ls=":", label="kept")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"force MAE ({label})")
        ax.legend(loc="upper right", fontsize=8)
        lr_ax = ax.twinx()
        lr_ax.semilogy(epochs, self.column("lr"), color="0.7", lw=0.8)
        lr_ax.set_ylabel("learning rate", color="0.5")
        return ax


class ExponentialMovingAverage:
    """Shadow copy of parameters: ``θ̄ ← d θ̄ + (1 - d) θ`` after every step."""

    def __init__(self, parameters: list[Tensor], decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {decay}")
        self.parameters = parameters
        self.decay = decay
        self.shadow = [p.detach().clone() for p in parameters]

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.parameters], 1.0 - self.decay)

    @torch.no_grad()
    def swap(self) -> None:
        """Exchange live and averaged weights (call twice to undo)."""
        for p, s in zip(self.parameters, self.shadow, strict=True):
            tmp = p.detach().clone()
            p.copy_(s)
            s.copy_(tmp)


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The shuffling of epoch ``epoch``: a function of (seed, epoch) only, so resumes repeat it."""
    g = torch.Generator()
    g.manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))
    return g


class Trainer:
    """Fits a :class:`~mlffkit.nn.Potential` to energies and forces.

    Parameters
    ----------
    potential : Potential
        The network (its energy statistics already set).
    energy_weight, force_weight : float
        Weights of the energy (eV²) and force ((eV/Å)²) mean squared errors.
    lr : float
        Initial learning rate of Adam.
    batch_size : int
        Structures per step.
    max_epochs : int
        Upper limit of passes over the training data.
    lr_factor, lr_patience : float, int
        Multiply the learning rate by ``lr_factor`` after ``lr_patience`` epochs
        without improvement of the validation loss.
    min_lr : float
        Stop once the learning rate falls below this.
    ema_decay : float
        Decay of the weight average (0 switches it off).
    patience : int
        Stop after this many epochs without improvement of the validation loss.
    seed : int
        Seeds the shuffling of every epoch.
    max_time_s : float, optional
        Stop after this much wall-clock time (seconds), at the end of an epoch.

    Examples
    --------
    >>> history = Trainer(potential, max_epochs=100).fit(train_graphs, valid_graphs)  # doctest: +SKIP
    """

    def __init__(
        self,
        potential: Potential,
        *,
        energy_weight: float = 0.01,
        force_weight: float = 0.99,
        lr: float = 1e-3,
        batch_size: int = 10,
        max_epochs: int = 1000,
        lr_factor: float = 0.5,
        lr_patience: int = 25,
        min_lr: float = 1e-6,
        ema_decay: float = 0.99,
        patience: int = 100,
        seed: int = 0,
        max_time_s: float | None = None,
    ):
        if batch_size < 1 or max_epochs < 0:
            raise ValueError("batch_size must be >= 1 and max_epochs >= 0")
        if energy_weight < 0 or force_weight < 0 or energy_weight + force_weight == 0:
            raise ValueError("energy_weight and force_weight must be >= 0 and not both zero")
        if not 0 < lr_factor < 1:
            raise ValueError(f"lr_factor must be in (0, 1), got {lr_factor}")
        self.potential = potential
        self.energy_weight = float(energy_weight)
        self.force_weight = float(force_weight)
        self.lr = float(lr)
        self.batch_size = int(batch_size)
        self.max_epochs = int(max_epochs)
        self.lr_factor = float(lr_factor)
        self.lr_patience = int(lr_patience)
        self.min_lr = float(min_lr)
        self.ema_decay = float(ema_decay)
        self.patience = int(patience)
        self.seed = int(seed)
        self.max_time_s = max_time_s

        self.parameters = [p for p in potential.parameters() if p.requires_grad]
        if not self.parameters:
            raise ValueError(
                "the potential has no trainable weights (a fitted model's potential_ is frozen "
                "for prediction); call potential.requires_grad_(True) to train it further"
            )
        self.optimizer = torch.optim.Adam(self.parameters, lr=self.lr)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, factor=self.lr_factor, patience=self.lr_patience, min_lr=0.0
        )
        self.ema = ExponentialMovingAverage(self.parameters, self.ema_decay)
        self.history = TrainingHistory()
        self.epoch = 0
        self.best_loss = math.inf
        self.best_state: dict[str, Tensor] | None = None
        self.bad_epochs = 0

    # ------------------------------------------------------------------ one batch
    def _loss(self, out: dict, targets: dict, use_energy: bool, use_forces: bool):
        loss = 0.0
        e_err = f_err = None
        if use_energy:
            e_err = out[properties.ENERGY] - targets["energy"]
            loss = loss + self.energy_weight * (e_err**2).mean()
        if use_forces:
            f_err = out[properties.FORCES] - targets["forces"]
            loss = loss + self.force_weight * (f_err**2).mean()
        return loss, e_err, f_err

    def _check_data(self, data: GraphData, what: str) -> tuple[bool, bool]:
        use_energy = self.energy_weight > 0
        use_forces = self.force_weight > 0
        if use_energy and not data.has_energies:
            raise ValueError(
                f"the {what} frames have no energies but energy_weight > 0; label them or set "
                "energy_weight=0 to learn from forces alone"
            )
        if use_forces and not data.has_forces:
            raise ValueError(
                f"the {what} frames have no forces but force_weight > 0; label them or set "
                "force_weight=0 to learn from energies alone"
            )
        return use_energy, use_forces

    def _train_epoch(self, data: GraphData, use_energy: bool, use_forces: bool) -> dict:
        self.potential.train()
        order = torch.randperm(len(data), generator=_epoch_generator(self.seed, self.epoch))
        # running sums stay on the device: no host synchronisation per step beyond the
        # finiteness check, which must stop a NaN before it reaches the weights
        sums = torch.zeros(3, dtype=torch.float64, device=data.device)
        n_frames = n_atoms = 0
        for start in range(0, len(data), self.batch_size):
            frames = order[start : start + self.batch_size]
            graph, targets = data.batch(frames)
            out = self.potential(graph, forces=use_forces, create_graph=use_forces)
            loss, e_err, f_err = self._loss(out, targets, use_energy, use_forces)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"the training loss became {float(loss.detach())} in epoch {self.epoch}, at the batch "
                    f"starting with frame {int(frames[0])}; lower the learning rate (lr={self.lr:g}), "
                    "check the data for unphysical frames (atoms on top of each other, huge forces), "
                    "or train in float64"
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.ema.update()
            _accumulate(sums, loss, e_err, f_err, len(frames))
            n_frames += len(frames)
            n_atoms += graph.positions.shape[0]
        return _averages(sums, n_frames, n_atoms, use_energy, use_forces)

    def evaluate(self, data: GraphData, batch_size: int | None = None) -> dict:
        """Loss and MAEs (eV, eV/Å) of the current weights on ``data``."""
        use_energy, use_forces = self._check_data(data, "validation")
        self.potential.eval()
        batch_size = batch_size or max(self.batch_size, 50)
        sums = torch.zeros(3, dtype=torch.float64, device=data.device)
        n_atoms = 0
        for start in range(0, len(data), batch_size):
            graph, targets = data.batch(range(start, min(start + batch_size, len(data))))
            if use_forces:
                out = self.potential.energy_and_forces(graph)
            else:
                with torch.no_grad():
                    out = self.potential(graph, forces=False)
            loss, e_err, f_err = self._loss(out, targets, use_energy, use_forces)
            _accumulate(sums, loss, e_err, f_err, graph.n_graphs)
            n_atoms += graph.positions.shape[0]
        return _averages(sums, len(data), n_atoms, use_energy, use_forces)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "potential": self.potential.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": list(self.ema.shadow),
            "epoch": self.epoch,
            "best_loss": self.best_loss,
            "best_state": self.best_state,
            "bad_epochs": self.bad_epochs,
            "history": self.history.to_dict(),
            "seed": self.seed,
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("the file is not an mlffkit training checkpoint")
        if int(state["seed"]) != self.seed:
            raise ValueError(
                f"the checkpoint was written with seed={state['seed']}, this run has "
                f"seed={self.seed}; use the same settings to resume"
            )
        self.potential.load_state_dict(state["potential"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        with torch.no_grad():
            for s, saved in zip(self.ema.shadow, state["ema"], strict=True):
                s.copy_(saved)
        self.epoch = int(state["epoch"])
        self.best_loss = float(state["best_loss"])
        self.best_state = state["best_state"]
        self.bad_epochs = int(state["bad_epochs"])
        self.history = TrainingHistory.from_dict(state["history"])

    def save_checkpoint(self, path) -> None:
        """Write the full training state to ``path`` atomically (replacing an older one)."""
        with atomic_path(path, overwrite=True) as tmp:
            torch.save(self.state_dict(), tmp)

    def load_checkpoint(self, path) -> None:
        """Restore the training state written by :meth:`save_checkpoint`."""
        state = torch.load(path, map_location=self.potential.energy_scale.device, weights_only=True)
        self.load_state_dict(state)

    # ------------------------------------------------------------------ the loop
    def fit(
        self,
        train: GraphData,
        valid: GraphData | None = None,
        *,
        checkpoint=None,
        resume: bool = False,
        progress: bool = True,
        live_plot: bool = False,
    ) -> TrainingHistory:
        """Train until ``max_epochs``, early stopping, ``min_lr`` or ``max_time_s``.

        Parameters
        ----------
        train : GraphData
            Training frames with labels.
        valid : GraphData, optional
            Validation frames; drive the learning-rate schedule, early stopping and
            which weights are kept. Without them the training loss does.
        checkpoint : path-like, optional
            File holding the training state, written after every epoch.
        resume : bool
            Continue from ``checkpoint`` if it exists. Without ``resume``, an
            existing checkpoint file is an error (it is never overwritten unasked).
        progress : bool
            Show a progress bar over epochs.
        live_plot : bool
            Redraw the learning curves in the notebook while training.

        Returns
        -------
        TrainingHistory

        Raises
        ------
        FloatingPointError
            When the loss becomes NaN or infinite (the checkpoint keeps the last good epoch).
        FileExistsError
            When ``checkpoint`` exists and ``resume`` is False.
        """
        use_energy, use_forces = self._check_data(train, "training")
        if valid is not None:
            self._check_data(valid, "validation")
        if checkpoint is not None:
            checkpoint = Path(checkpoint)
            if checkpoint.exists():
                if not resume:
                    raise FileExistsError(
                        f"{checkpoint} exists (a previous run?); pass resume=True to continue it, "
                        "or choose another checkpoint path"
                    )
                self.load_checkpoint(checkpoint)
        if self.history.stopped_because in ("early_stopping", "min_lr"):
            self._restore_best()
            return self.history
        plot = _LivePlot() if live_plot else None
        start_time = time.perf_counter()
        bar = tqdm(
            total=self.max_epochs,
            initial=self.epoch,
            desc="training",
            disable=not progress,
            unit="epoch",
        )
        stopped = "max_epochs"
        try:
            while self.epoch < self.max_epochs:
                t0 = time.perf_counter()
                train_stats = self._train_epoch(train, use_energy, use_forces)
                self.ema.swap()  # validate (and keep) the averaged weights
                valid_stats = self.evaluate(valid) if valid is not None else None
                monitored = (valid_stats or train_stats)["loss"]
                improved = monitored < self.best_loss
                if improved:
                    self.best_loss = monitored
                    self.best_state = {
                        k: v.detach().clone() for k, v in self.potential.state_dict().items()
                    }
                    self.bad_epochs = 0
                    self.history.best_epoch = self.epoch
                else:
                    self.bad_epochs += 1
                self.ema.swap()
                self.scheduler.step(monitored)
                lr = self.optimizer.param_groups[0]["lr"]
                record = EpochRecord(
                    epoch=self.epoch,
                    lr=lr,
                    train_loss=train_stats["loss"],
                    train_energy_mae=train_stats["energy_mae"],
                    train_force_mae=train_stats["force_mae"],
                    time_s=time.perf_counter() - t0,
                )
                if valid_stats is not None:
                    record.valid_loss = valid_stats["loss"]
                    record.valid_energy_mae = valid_stats["energy_mae"]
                    record.valid_force_mae = valid_stats["force_mae"]
                self.history.records.append(record)
                self.epoch += 1
                if checkpoint is not None:
                    self.save_checkpoint(checkpoint)
                bar.update(1)
                bar.set_postfix(_postfix(record), refresh=False)
                if plot is not None:
                    plot.update(self.history)
                if self.bad_epochs >= self.patience:
                    stopped = "early_stopping"
                    break
                if lr < self.min_lr:
                    stopped = "min_lr"
                    break
                if (
                    self.max_time_s is not None
                    and time.perf_counter() - start_time > self.max_time_s
                ):
                    stopped = "max_time"
                    break
        finally:
            bar.close()
            if plot is not None:
                plot.close(self.history)
        self.history.stopped_because = stopped
        self._restore_best()
        if checkpoint is not None and stopped in ("early_stopping", "min_lr"):
            self.save_checkpoint(checkpoint)
        return self.history

    def _restore_best(self) -> None:
        """Load the best averaged weights (or the current average without any epoch)."""
        if self.best_state is not None:
            self.potential.load_state_dict(self.best_state)
        else:
            self.ema.swap()


@torch.no_grad()
def _accumulate(sums: Tensor, loss, e_err: Tensor | None, f_err: Tensor | None, n: int) -> None:
    """Add a batch's loss (times its ``n`` structures) and absolute errors to ``sums``."""
    sums[0] += loss.detach() * n
    if e_err is not None:
        sums[1] += e_err.detach().abs().sum()
    if f_err is not None:
        sums[2] += f_err.detach().abs().sum()


def _averages(sums: Tensor, n_frames: int, n_atoms: int, use_energy: bool, use_forces: bool):
    """Mean loss, energy MAE (eV) and force MAE (eV/Å) from :func:`_accumulate`'s sums."""
    loss_sum, energy_sum, force_sum = sums.tolist()
    return {
        "loss": loss_sum / n_frames,
        "energy_mae": energy_sum / n_frames if use_energy else math.nan,
        "force_mae": force_sum / (3 * n_atoms) if use_forces else math.nan,
    }


def _postfix(record: EpochRecord) -> dict:
    from mlffkit import units

    out = {"loss": f"{record.train_loss:.3g}", "lr": f"{record.lr:.1e}"}
    mae = (
        record.valid_force_mae if math.isfinite(record.valid_force_mae) else record.train_force_mae
    )
    if math.isfinite(mae):
        out["F MAE"] = f"{mae / units.KCAL_PER_MOL:.3f} kcal/mol/Å"
    return out


class _LivePlot:
    """Learning curves redrawn in place in a notebook (a static image elsewhere)."""

    def __init__(self, every_s: float = 2.0):
        import matplotlib.pyplot as plt

        self.fig, self.ax = plt.subplots(figsize=(6, 3.5))
        plt.close(self.fig)  # shown through the display handle only
        self.handle = None
        self.every_s = every_s
        self.last = -math.inf

    def update(self, history: TrainingHistory, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last < self.every_s:
            return
        self.last = now
        for extra in self.fig.axes[1:]:
            extra.remove()
        self.ax.clear()
        history.plot(ax=self.ax)
        self.fig.tight_layout()
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:  # plain Python: nothing to draw into
            return
        if get_ipython() is None:
            return
        if self.handle is None:
            self.handle = display(self.fig, display_id=True)
        else:
            self.handle.update(self.fig)

    def close(self, history: TrainingHistory) -> None:
        """Draw the final curves."""
        self.update(history, force=True)
