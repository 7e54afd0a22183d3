"""AttentionViewer: heatmap, 3D view and energies linked both ways, driven headless."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from ase.build import molecule  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.backend_bases import MouseEvent  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from mlffkit.nn.attention import GeometricAttentionPotential  # noqa: E402
from mlffkit.nn.schnet import SchNetPotential  # noqa: E402
from mlffkit.widgets.attention import (  # noqa: E402
    ENERGY_CMAP,
    SELECTED_COLOR,
    AttentionViewer,
)


class CountingModel:
    """A real potential that counts how often the viewer asks it to interpret a structure."""

    def __init__(self, potential):
        self.potential = potential
        self.calls = 0

    def interpret(self, atoms):
        self.calls += 1
        return self.potential.interpret(atoms)


@pytest.fixture(scope="module")
def potential():
    torch.manual_seed(0)
    potential = GeometricAttentionPotential(n_features=8, n_layers=2, n_rbf=20).double()
    offsets = torch.zeros(119, dtype=torch.float64)
    offsets[[1, 6, 8]] = torch.tensor([-13.6, -1029.0, -2041.0], dtype=torch.float64)
    potential.set_energy_statistics(offsets, 0.7)
    return potential


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    base = molecule("CH3CH2OH")
    out = []
    for _ in range(3):
        atoms = base.copy()
        atoms.positions += 0.08 * rng.normal(size=atoms.positions.shape)
        out.append(atoms)
    return out


@pytest.fixture
def viewer(potential, frames):
    v = AttentionViewer(potential, frames[0])
    yield v
    v.close()


def click(viewer, ax, x, y, button=1):
    """A real matplotlib mouse click at data coordinates (x, y) of ``ax``."""
    viewer.figure.canvas.draw()
    px, py = ax.transData.transform((x, y))
    event = MouseEvent("button_press_event", viewer.figure.canvas, px, py, button=button)
    viewer.figure.canvas.callbacks.process("button_press_event", event)


def test_heatmap_is_the_symmetrised_matrix_with_element_labels(viewer, potential, frames):
    result = potential.interpret(frames[0])
    a = result.matrix(0, 2)
    assert np.allclose(viewer.matrix, 0.5 * (a + a.T))
    heat = viewer.heatmap_axes
    assert np.allclose(heat.images[0].get_array(), viewer.matrix)
    labels = [t.get_text() for t in heat.get_yticklabels()]
    assert labels == ["C0", "C1", "O2", "H3", "H4", "H5", "H6", "H7", "H8"]
    assert [t.get_text() for t in heat.get_xticklabels()] == labels
    assert "layer 1, order 2" in heat.get_title()
    # colour scale symmetric around zero, set by the off-diagonal entries
    vmin, vmax = heat.images[0].get_clim()
    off = viewer.matrix[~np.eye(9, dtype=bool)]
    assert vmin == -vmax == pytest.approx(-np.abs(off).max())


def test_layer_and_order_switch_the_matrix_and_the_buttons(viewer, potential, frames):
    result = potential.interpret(frames[0])
    viewer.set_order(3)
    assert viewer.order_buttons.value == 3
    assert np.allclose(viewer.matrix, result.matrix(0, 3, symmetrize=True))
    viewer.set_layer(1)
    assert viewer.layer_buttons.value == 1
    assert np.allclose(viewer.matrix, result.matrix(1, 3, symmetrize=True))
    assert "layer 2, order 3" in viewer.heatmap_axes.get_title()
    # and the buttons drive the viewer
    viewer.order_buttons.value = 4
    viewer.layer_buttons.value = 0
    assert (viewer.order, viewer.layer) == (4, 0)
    assert np.allclose(viewer.matrix, result.matrix(0, 4, symmetrize=True))


def test_selected_atom_drawn_in_3d_and_marked_in_the_plots(viewer):
    viewer.set_order(3)
    viewer.select_atom(4)
    assert viewer.atom_menu.value == 4
    row = viewer.matrix[4].copy()
    row[4] = 0.0
    drawing = viewer.drawing
    assert drawing.atom_colors[4] == SELECTED_COLOR
    assert drawing.atom_radii[4] == max(drawing.atom_radii)
    # sphere size and line width grow with the attention to the selected atom
    others = [j for j in range(9) if j != 4]
    order = np.argsort(np.abs(row[others]))
    assert np.all(np.diff(drawing.atom_radii[others][order]) >= 0)
    strongest = int(np.argmax(np.abs(row)))
    link = {j: radius for j, radius, _ in drawing.links}
    assert 4 not in link and max(link, key=link.get) == strongest
    assert f"strongest attention: {viewer._label(strongest)}" in viewer.readout.value
    # the heatmap marks row and column 4, the energy plot its bar
    assert viewer._row_mark.get_y() == pytest.approx(3.5)
    assert viewer._column_mark.get_x() == pytest.approx(3.5)
    bars = viewer.energy_axes.patches
    assert [b.get_linewidth() > 0 for b in bars] == [j == 4 for j in range(9)]
    # one shape component of lines, replaced (not piled up) on the next selection
    components = len(viewer.view._ngl_component_ids)
    viewer.select_atom(0)
    assert len(viewer.view._ngl_component_ids) == components


def test_atoms_coloured_by_energy(viewer, potential, frames):
    viewer.coloring_buttons.value = "energy"
    assert viewer.coloring == "energy"
    energies = potential.interpret(frames[0]).interaction_energies
    highest, lowest = int(np.argmax(energies)), int(np.argmin(energies))
    viewer.select_atom(next(j for j in range(9) if j not in (highest, lowest)))
    cmap = colormaps[ENERGY_CMAP]
    centred = energies - energies.mean()
    top = abs(centred).max()
    colors = viewer.drawing.atom_colors
    assert colors[highest] == to_hex(cmap((centred[highest] / top + 1) / 2))
    assert colors[lowest] == to_hex(cmap((centred[lowest] / top + 1) / 2))
    assert colors[highest] != colors[lowest]
    # the bars show the same energies in the same colours
    bars = viewer.energy_axes.patches
    assert np.allclose([b.get_height() for b in bars], energies)
    assert to_hex(bars[highest].get_facecolor()) == colors[highest]
    viewer.set_coloring("attention")
    assert viewer.coloring_buttons.value == "attention"


def test_clicks_on_heatmap_rows_and_energy_bars_select_atoms(viewer):
    heat, energy = viewer.heatmap_axes, viewer.energy_axes
    click(viewer, heat, 1.0, 6.2)  # row 6, column 1
    assert viewer.atom == 6 and viewer.atom_menu.value == 6
    click(viewer, energy, 2.1, 0.0)
    assert viewer.atom == 2
    click(viewer, heat, 3.0, 5.0, button=3)  # right button: ignored
    assert viewer.atom == 2
    viewer.figure.canvas.toolbar.zoom()
    click(viewer, heat, 3.0, 5.0)  # while zooming: ignored
    assert viewer.atom == 2


def test_picking_an_atom_in_3d_selects_it(viewer):
    viewer.view.picked = {"atom1": {"index": 7, "name": "[UNL]1:A.H"}, "component": 0}
    assert viewer.atom == 7 and viewer.atom_menu.value == 7
    # a bond, or a click on the drawn lines (another component), selects nothing
    viewer.view.picked = {"bond": {}, "atom1": {"index": 1}, "atom2": {"index": 2}, "component": 0}
    viewer.view.picked = {"atom1": {"index": 3}, "component": 1}
    viewer.view.picked = {}
    assert viewer.atom == 7


def test_trajectory_frames_follow_the_slider(potential, frames):
    model = CountingModel(potential)
    viewer = AttentionViewer(model, frames, frame=1)
    assert viewer.slider.value == 1 and viewer.view.frame == 1
    assert viewer.result.energy == pytest.approx(potential.interpret(frames[1]).energy)
    viewer.slider.value = 2
    assert viewer.frame == 2 and viewer.view.frame == 2
    assert np.allclose(viewer.matrix, potential.interpret(frames[2]).matrix(0, 2, symmetrize=True))
    assert "frame 2/2" in viewer.readout.value
    viewer.set_frame(1)
    viewer.set_frame(2)
    assert model.calls == 2  # each frame is interpreted once
    viewer.close()


def test_without_3d_view(potential, frames):
    viewer = AttentionViewer(potential, frames[0], show_structure=False)
    assert viewer.view is None and viewer.slider is None
    viewer.select_atom(3)
    viewer.set_order(4)
    assert viewer.widget.children[0].children == (viewer.figure.canvas,)


def test_a_fitted_estimator_is_accepted():
    from mlffkit.data import load
    from mlffkit.models.attention import GeometricAttention

    data = load("ethanol_gfn2")
    model = GeometricAttention(
        n_features=8, n_layers=1, n_rbf=12, max_epochs=1, device="cpu", validation_fraction=0.25
    ).fit(data[:12], progress=False)
    viewer = AttentionViewer(model, data[20:23])
    assert viewer.result.orders == (2, 3, 4) and viewer.layer_buttons.options == (("1", 0),)
    assert viewer.result.energy == pytest.approx(model.predict(data[20:21])[0][0], abs=1e-4)
    viewer.close()
    with pytest.raises(RuntimeError, match="not trained yet"):
        AttentionViewer(GeometricAttention(), data[0])


def test_bad_input(viewer, potential, frames):
    with pytest.raises(ValueError, match="needs a geometric attention model"):
        AttentionViewer(SchNetPotential(n_features=4, n_interactions=1), frames[0])
    with pytest.raises(ValueError, match="other atoms"):
        AttentionViewer(potential, [frames[0], molecule("H2O")])
    with pytest.raises(ValueError, match="frame must be a whole number from 0 to 0"):
        AttentionViewer(potential, frames[0], frame=1)
    with pytest.raises(ValueError, match="atom must be an index from 0 to 8"):
        viewer.select_atom(9)
    with pytest.raises(ValueError, match="layers run from 0 to 1"):
        viewer.set_layer(2)
    with pytest.raises(ValueError, match="not one of the model's orders"):
        viewer.set_order(5)
    with pytest.raises(ValueError, match="'attention' or 'energy'"):
        viewer.set_coloring("charge")


def test_displays_headless_and_closes(viewer):
    viewer._ipython_display_()  # outside a kernel IPython prints the repr; must not block
    assert viewer.widget.children[0].children == (viewer.view, viewer.figure.canvas)
    viewer.close()
    assert viewer.widget.comm is None
    assert viewer.view.comm is None and viewer.figure.canvas.comm is None
