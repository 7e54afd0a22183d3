"""What a geometric attention model attends to: a heatmap and the 3D structure, linked both ways.

:class:`AttentionViewer` shows, for one layer and order of a trained
:class:`~mlffkit.models.GeometricAttention` model (or a bare
:class:`~mlffkit.nn.GeometricAttentionPotential`),

* a heatmap of the symmetrised attention matrix ``(A + Aᵀ)/2`` with the atoms'
  element labels on both axes,
* the molecule in nglview, where the attention of the selected atom to every
  other atom is drawn as the colour and size of that atom and as a line whose
  width follows the attention; or, switched over, every atom coloured by its
  energy contribution,
* the atomic energy contributions ``E_i - E0(Z_i)`` as a bar chart.

Selecting an atom anywhere (the menu, a heatmap row, a bar, or a click on an atom
in the 3D view) updates everything else. For a trajectory a slider picks the frame.
All of it also runs without a browser (nbconvert, nbmake, tests): the viewer never
waits for the frontend, and :meth:`AttentionViewer.select_atom`,
:meth:`~AttentionViewer.set_layer`, :meth:`~AttentionViewer.set_order`,
:meth:`~AttentionViewer.set_frame` and :meth:`~AttentionViewer.set_coloring` drive
it from code.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Normalize, to_hex, to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from mlffkit.nn.attention import AttentionResult
from mlffkit.widgets.trajectory import _ipympl_classes, _read_frames

#: colour maps: attention (signed, centred on zero) and energies (centred on the mean)
ATTENTION_CMAP = "RdBu_r"
ENERGY_CMAP = "coolwarm"
#: colour of the selected atom in the 3D view and of its marks in the plots
SELECTED_COLOR = "#ffb000"
#: label of the energy axis
ENERGY_LABEL = "E_i − E0(Z_i) / eV"


@dataclass(frozen=True)
class Drawing:
    """What the 3D view shows now (kept so that code and tests can read it back).

    Attributes
    ----------
    atom_colors : list of str
        Hex colour of each atom's sphere.
    atom_radii : numpy.ndarray, shape (n_atoms,)
        Radius of each atom's sphere, Å.
    links : list of (int, float, str)
        ``(atom j, radius in Å, hex colour)`` of each line drawn from the selected
        atom; attention below 5 % of the row's largest is not drawn.
    """

    atom_colors: list
    atom_radii: np.ndarray
    links: list


def _symmetric_norm(values: np.ndarray) -> Normalize:
    """A colour scale from ``-m`` to ``m`` with ``m`` the largest magnitude (1 if all zero)."""
    m = float(np.max(np.abs(values))) if values.size else 0.0
    m = m if m > 0 else 1.0
    return Normalize(-m, m)


def _off_diagonal(matrix: np.ndarray) -> np.ndarray:
    return matrix[~np.eye(len(matrix), dtype=bool)]


class AttentionViewer:
    """The attention of a geometric attention model on a molecule, in 3D and as a heatmap.

    Parameters
    ----------
    model : GeometricAttention or GeometricAttentionPotential
        A fitted :class:`mlffkit.models.GeometricAttention`, or a
        :class:`mlffkit.nn.GeometricAttentionPotential`; anything whose
        ``interpret(atoms)`` returns an :class:`~mlffkit.nn.attention.AttentionResult`.
    structure : ase.Atoms, list of Atoms, Dataset or trajectory file
        One molecule or the frames of a trajectory (the same atoms in every frame).
    frame : int, default 0
        The frame shown first.
    show_structure : bool, default True
        Show the nglview 3D view.
    figsize : tuple of float, default (9.0, 3.8)
        Size of the heatmap and energy figure, inches.

    Attributes
    ----------
    frames : list of ase.Atoms
    result : AttentionResult
        The model's attention and energies for the current frame.
    matrix : numpy.ndarray, shape (n_atoms, n_atoms)
        The heatmap's symmetrised attention (current frame, layer and order).
    drawing : Drawing
        What the 3D view draws now.
    view : nglview.NGLWidget or None
    figure : matplotlib.figure.Figure
        The heatmap and the energies, on an ipympl canvas.
    heatmap_axes, energy_axes : matplotlib.axes.Axes
        Their axes.
    layer_buttons, order_buttons, coloring_buttons : ipywidgets.ToggleButtons
    atom_menu : ipywidgets.Dropdown
    slider : ipywidgets.IntSlider or None
        Frame slider (None for a single structure).
    readout : ipywidgets.Label
    widget : ipywidgets.VBox
        Everything, ready to display.

    Notes
    -----
    The heatmap's colour scale is set by the off-diagonal entries: the diagonal of
    orders 3 and above holds the walks that return to their atom, which are larger
    and would wash out the rest (they saturate instead). Energies are coloured
    around the molecule's mean contribution: red atoms contribute more than the
    average, blue ones less.

    Examples
    --------
    >>> from mlffkit.widgets import AttentionViewer
    >>> viewer = AttentionViewer(model, test[0])        # doctest: +SKIP
    >>> viewer.set_order(3); viewer.select_atom(2)      # doctest: +SKIP
    >>> viewer                                          # doctest: +SKIP
    """

    def __init__(
        self,
        model,
        structure,
        frame: int = 0,
        *,
        show_structure: bool = True,
        figsize: tuple[float, float] = (9.0, 3.8),
    ):
        if not callable(getattr(model, "interpret", None)):
            raise ValueError(
                f"AttentionViewer needs a geometric attention model (a fitted "
                f"mlffkit.models.GeometricAttention or a mlffkit.nn.GeometricAttentionPotential), "
                f"got a {type(model).__name__}"
            )
        self.model = model
        self.frames = _read_frames(structure)
        self._results: dict[int, AttentionResult] = {}
        self._frame = self._check_frame(frame)
        self.result = self._interpret(self._frame)
        self._layer, self._order, self._atom = 0, self.result.orders[0], 0
        self._coloring = "attention"
        self._shape = None
        n = len(self.frames[0])

        self.layer_buttons = widgets.ToggleButtons(
            options=[(str(layer + 1), layer) for layer in range(self.result.n_layers)],
            value=0,
            description="layer",
            style={"button_width": "36px"},
        )
        self.order_buttons = widgets.ToggleButtons(
            options=[(str(k), k) for k in self.result.orders],
            value=self._order,
            description="order",
            style={"button_width": "36px"},
        )
        self.coloring_buttons = widgets.ToggleButtons(
            options=["attention", "energy"], value="attention", description="atoms by"
        )
        self.atom_menu = widgets.Dropdown(
            options=[(self._label(i), i) for i in range(n)], value=0, description="atom"
        )
        self.slider = None
        if len(self.frames) > 1:
            self.slider = widgets.IntSlider(
                value=self._frame, min=0, max=len(self.frames) - 1, description="frame"
            )
            self.slider.observe(lambda c: self.set_frame(c["new"]), names="value")
        self.layer_buttons.observe(lambda c: self.set_layer(c["new"]), names="value")
        self.order_buttons.observe(lambda c: self.set_order(c["new"]), names="value")
        self.coloring_buttons.observe(lambda c: self.set_coloring(c["new"]), names="value")
        self.atom_menu.observe(lambda c: self.select_atom(c["new"]), names="value")
        self.readout = widgets.Label()

        self.view = self._make_view() if show_structure else None
        self._make_figure(figsize)
        self._refresh()

        panels = [self.figure.canvas] if self.view is None else [self.view, self.figure.canvas]
        top = widgets.HBox(
            panels, layout=widgets.Layout(flex_flow="row wrap", align_items="center")
        )
        controls = widgets.HBox([self.layer_buttons, self.order_buttons, self.coloring_buttons])
        selection = [self.atom_menu] + ([self.slider] if self.slider is not None else [])
        self.widget = widgets.VBox([top, controls, widgets.HBox([*selection, self.readout])])

    # ---------------------------------------------------------------- state
    @property
    def atom(self) -> int:
        """Index of the selected atom."""
        return self._atom

    @property
    def layer(self) -> int:
        """The layer shown (0-based)."""
        return self._layer

    @property
    def order(self) -> int:
        """The attention order shown."""
        return self._order

    @property
    def frame(self) -> int:
        """The frame shown."""
        return self._frame

    @property
    def coloring(self) -> str:
        """What the atoms' colours show: ``"attention"`` or ``"energy"``."""
        return self._coloring

    def select_atom(self, atom: int) -> None:
        """Select atom ``atom`` (0-based): its row in the heatmap, its attention in 3D."""
        n = len(self.frames[0])
        if isinstance(atom, bool) or not float(atom).is_integer() or not 0 <= int(atom) < n:
            raise ValueError(f"atom must be an index from 0 to {n - 1}, got {atom!r}")
        if int(atom) != self._atom:
            self._atom = int(atom)
            self._refresh()

    def set_layer(self, layer: int) -> None:
        """Show layer ``layer`` (0-based)."""
        if layer not in range(self.result.n_layers):
            raise ValueError(
                f"layer {layer!r} does not exist; layers run from 0 to {self.result.n_layers - 1}"
            )
        if layer != self._layer:
            self._layer = int(layer)
            self._refresh()

    def set_order(self, order: int) -> None:
        """Show the attention of order ``order`` (one of the model's orders)."""
        if order not in self.result.orders:
            raise ValueError(
                f"order {order!r} is not one of the model's orders {self.result.orders}"
            )
        if order != self._order:
            self._order = int(order)
            self._refresh()

    def set_frame(self, frame: int) -> None:
        """Show frame ``frame`` of the trajectory."""
        frame = self._check_frame(frame)
        if frame != self._frame:
            self._frame = frame
            self.result = self._interpret(frame)
            self._refresh()

    def set_coloring(self, coloring: str) -> None:
        """Colour the atoms by the selected atom's ``"attention"`` or by their ``"energy"``."""
        if coloring not in ("attention", "energy"):
            raise ValueError(f"coloring must be 'attention' or 'energy', got {coloring!r}")
        if coloring != self._coloring:
            self._coloring = coloring
            self._refresh()

    def close(self) -> None:
        """Close the widgets and release the figure."""
        controls = [self.layer_buttons, self.order_buttons, self.coloring_buttons, self.atom_menu]
        if self.slider is not None:
            controls.append(self.slider)
        for w in (self.widget, *controls, self.readout):
            w.close()
        if self.view is not None:
            self.view.close()
        self.figure.canvas.close()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # ---------------------------------------------------------------- model
    def _check_frame(self, frame) -> int:
        n = len(self.frames)
        if isinstance(frame, bool) or not float(frame).is_integer() or not 0 <= int(frame) < n:
            raise ValueError(f"frame must be a whole number from 0 to {n - 1}, got {frame!r}")
        return int(frame)

    def _interpret(self, frame: int) -> AttentionResult:
        if frame not in self._results:
            self._results[frame] = self.model.interpret(self.frames[frame])
        return self._results[frame]

    def _label(self, i: int) -> str:
        return f"{self.frames[0].get_chemical_symbols()[i]}{i}"

    # ---------------------------------------------------------------- widgets
    def _make_view(self):
        import nglview

        view = nglview.NGLWidget(nglview.ASETrajectory(self.frames), default=False)
        view.layout = widgets.Layout(width="400px", height="360px")
        view.frame = self._frame
        view.observe(self._on_pick, names="picked")
        return view

    def _make_figure(self, figsize) -> None:
        Canvas, FigureManager = _ipympl_classes()
        fig = Figure(figsize=figsize, layout="constrained")
        canvas = Canvas(fig)
        with warnings.catch_warnings():
            # ipympl's Toolbar passes the canvas on to traitlets, which warns; not ours to fix
            warnings.filterwarnings("ignore", "Passing unrecognized arguments", DeprecationWarning)
            FigureManager(canvas, 0)
        canvas.header_visible = False
        heat_ax, energy_ax = fig.subplots(1, 2, width_ratios=[1.15, 1])
        n = len(self.frames[0])
        labels = [self._label(i) for i in range(n)]
        self._image = heat_ax.imshow(np.zeros((n, n)), cmap=ATTENTION_CMAP, interpolation="nearest")
        fig.colorbar(self._image, ax=heat_ax, shrink=0.85, label="attention")
        for set_ticks, set_labels in (
            (heat_ax.set_xticks, heat_ax.set_xticklabels),
            (heat_ax.set_yticks, heat_ax.set_yticklabels),
        ):
            set_ticks(range(n))
            set_labels(labels, fontsize="x-small")
        heat_ax.tick_params(axis="x", labelrotation=90)
        style = dict(fill=False, edgecolor=SELECTED_COLOR, lw=2.0)
        self._row_mark = heat_ax.add_patch(Rectangle((-0.5, -0.5), n, 1, **style))
        self._column_mark = heat_ax.add_patch(Rectangle((-0.5, -0.5), 1, n, **style))
        self._bars = energy_ax.bar(range(n), np.zeros(n), edgecolor="none")
        energy_ax.axhline(0.0, color="0.5", lw=0.8)
        energy_ax.set_xticks(range(n))
        energy_ax.set_xticklabels(labels, fontsize="x-small", rotation=90)
        energy_ax.set_ylabel(ENERGY_LABEL)
        energy_ax.set_title("atomic energies (click to select)", fontsize="small")
        canvas.mpl_connect("button_press_event", self._on_click)
        self.figure, self.heatmap_axes, self.energy_axes = fig, heat_ax, energy_ax

    # ---------------------------------------------------------------- events
    def _on_click(self, event) -> bool:
        """Select the atom of a clicked heatmap row or energy bar (left button, no pan/zoom)."""
        if event.button != 1 or event.xdata is None or event.ydata is None:
            return False
        toolbar = getattr(event.canvas, "toolbar", None)
        if toolbar is not None and toolbar.mode != "":
            return False
        if event.inaxes is self.heatmap_axes:
            atom = int(round(event.ydata))
        elif event.inaxes is self.energy_axes:
            atom = int(round(event.xdata))
        else:
            return False
        if not 0 <= atom < len(self.frames[0]):
            return False
        self.select_atom(atom)
        return True

    def _on_pick(self, change) -> None:
        """An atom clicked in the 3D view (bonds and the drawn lines are ignored)."""
        picked = change["new"] or {}
        atom = picked.get("atom1")
        if atom is None or "bond" in picked or picked.get("component", 0) != 0:
            return
        self.select_atom(int(atom["index"]))

    # ---------------------------------------------------------------- drawing
    def _refresh(self) -> None:
        """Bring every widget and plot to the current frame, layer, order and atom."""
        self.matrix = self.result.matrix(self._layer, self._order, symmetrize=True)
        # programmatic changes reach the controls without echoing back (values are equal)
        self.layer_buttons.value = self._layer
        self.order_buttons.value = self._order
        self.coloring_buttons.value = self._coloring
        self.atom_menu.value = self._atom
        if self.slider is not None:
            self.slider.value = self._frame
        self.drawing = self._drawing()
        self._update_figure()
        if self.view is not None:
            self._update_view()
        self._update_readout()

    def _energy_colors(self) -> list[str]:
        e = self.result.interaction_energies
        norm = _symmetric_norm(e - e.mean())
        cmap = colormaps[ENERGY_CMAP]
        return [to_hex(cmap(norm(v))) for v in e - e.mean()]

    def _drawing(self) -> Drawing:
        row = self.matrix[self._atom].copy()
        row[self._atom] = 0.0  # an atom's attention to itself is not a link
        n = len(row)
        biggest = float(np.max(np.abs(row))) if n > 1 else 0.0
        scale = np.abs(row) / biggest if biggest > 0 else np.zeros(n)
        cmap, norm = colormaps[ATTENTION_CMAP], _symmetric_norm(row)
        if self._coloring == "energy":
            colors = self._energy_colors()
            radii = np.full(n, 0.32)
        else:
            colors = [to_hex(cmap(norm(v))) for v in row]
            radii = 0.16 + 0.3 * scale
        colors[self._atom] = SELECTED_COLOR
        radii[self._atom] = 0.5
        links = [
            (j, 0.03 + 0.12 * float(scale[j]), to_hex(cmap(norm(row[j]))))
            for j in range(n)
            if j != self._atom and scale[j] >= 0.05
        ]
        return Drawing(atom_colors=colors, atom_radii=radii, links=links)

    def _update_figure(self) -> None:
        scale_from = _off_diagonal(self.matrix) if len(self.matrix) > 1 else self.matrix
        norm = _symmetric_norm(scale_from)
        self._image.set_data(self.matrix)
        self._image.set_clim(norm.vmin, norm.vmax)
        self.heatmap_axes.set_title(
            f"layer {self._layer + 1}, order {self._order}: (A + Aᵀ)/2", fontsize="small"
        )
        self._row_mark.set_y(self._atom - 0.5)
        self._column_mark.set_x(self._atom - 0.5)
        energies = self.result.interaction_energies
        for i, (bar, color) in enumerate(zip(self._bars, self._energy_colors(), strict=True)):
            bar.set_height(energies[i])
            bar.set_facecolor(color)
            bar.set_edgecolor(SELECTED_COLOR if i == self._atom else "none")
            bar.set_linewidth(2.5 if i == self._atom else 0.0)
        self.energy_axes.relim()
        self.energy_axes.autoscale_view()
        self.figure.canvas.draw_idle()

    def _update_view(self) -> None:
        view = self.view
        view.frame = self._frame
        view.clear_representations()
        view.add_representation("licorice", radius=0.08)
        for i, (color, radius) in enumerate(
            zip(self.drawing.atom_colors, self.drawing.atom_radii, strict=True)
        ):
            view.add_representation("spacefill", selection=[i], color=color, radius=float(radius))
        if self._shape is not None:
            view.remove_component(self._shape)
            self._shape = None
        positions = self.frames[self._frame].positions
        start = positions[self._atom].tolist()
        cylinders = [
            ("cylinder", start, positions[j].tolist(), list(to_rgb(color)), radius)
            for j, radius, color in self.drawing.links
        ]
        if cylinders:
            # one shape component for all lines, so that one call removes them
            self._shape = view._add_shape(cylinders, name="attention")

    def _update_readout(self) -> None:
        i = self._atom
        row = self.matrix[i].copy()
        row[i] = 0.0
        parts = [
            f"{self._label(i)}: {ENERGY_LABEL.split(' /')[0]} = "
            f"{self.result.interaction_energies[i]:+.4f} eV"
        ]
        if len(row) > 1:
            j = int(np.argmax(np.abs(row)))
            parts.append(f"strongest attention: {self._label(j)} ({row[j]:+.3g})")
        parts.append(f"E = {self.result.energy:.4f} eV")
        if self.slider is not None:
            parts.append(f"frame {self._frame}/{len(self.frames) - 1}")
        self.readout.value = "   ".join(parts)
