"""TrajectoryViewer and its frame ↔ plot linking, driven headless through the real widgets."""

import subprocess
import sys
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from ase import units  # noqa: E402
from ase.build import molecule  # noqa: E402
from ase.calculators.emt import EMT  # noqa: E402
from ase.calculators.singlepoint import SinglePointCalculator  # noqa: E402
from ase.cluster import Icosahedron  # noqa: E402
from ase.io.trajectory import Trajectory  # noqa: E402
from ase.md.velocitydistribution import thermalize_momenta  # noqa: E402
from ase.md.verlet import VelocityVerlet  # noqa: E402
from matplotlib.backend_bases import MouseEvent  # noqa: E402

from mlffkit.data import Dataset  # noqa: E402
from mlffkit.widgets import FrameLink, TrajectoryViewer  # noqa: E402
from mlffkit.widgets.trajectory import EPOT_LABEL, TEMPERATURE_LABEL  # noqa: E402

N_FRAMES = 12
DT_FS = 0.5


@pytest.fixture(scope="module")
def md_frames():
    """A short NVE run of a 13-atom Cu cluster with EMT: frames with energies and momenta."""
    atoms = Icosahedron("Cu", 2)
    atoms.calc = EMT()
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, timestep=DT_FS * units.fs)
    frames = []

    def record():
        frame = atoms.copy()
        frame.calc = SinglePointCalculator(
            frame, energy=atoms.get_potential_energy(), forces=atoms.get_forces()
        )
        frames.append(frame)

    dyn.attach(record, interval=1)
    dyn.run(N_FRAMES - 1)
    assert len(frames) == N_FRAMES
    return frames


@pytest.fixture(scope="module")
def time_fs():
    return np.arange(N_FRAMES) * DT_FS


@pytest.fixture
def viewer(md_frames, time_fs):
    v = TrajectoryViewer(md_frames, time_fs=time_fs)
    yield v
    v.close()


def click(figure, ax, x, button=1):
    """A real matplotlib mouse click at data coordinate x, mid-height of ``ax``."""
    figure.canvas.draw()
    y = np.mean(ax.get_ylim())
    px, py = ax.transData.transform((x, y))
    event = MouseEvent("button_press_event", figure.canvas, px, py, button=button)
    figure.canvas.callbacks.process("button_press_event", event)


# --------------------------------------------------------------- FrameLink (no widgets)
def test_frame_at_time_axis_picks_nearest_frame():
    link = FrameLink(np.arange(6) * 0.5)  # 0, 0.5, ..., 2.5 fs
    assert link.frame_at(1.2) == 2
    assert link.frame_at(1.3) == 3
    assert link.frame_at(1.25) == 2  # a tie goes to the earlier frame
    assert link.frame_at(0.0) == 0
    assert link.x_at(3) == 1.5


def test_frame_at_index_axis_and_uneven_times():
    link = FrameLink(np.arange(5))
    assert [link.frame_at(v) for v in (0.4, 0.6, 2.5, 3.51)] == [0, 1, 2, 4]
    uneven = FrameLink([0.0, 1.0, 10.0])
    assert uneven.frame_at(5.4) == 1
    assert uneven.frame_at(5.6) == 2


def test_frame_at_clamps_outside_the_range():
    link = FrameLink([10.0, 20.0, 30.0])
    assert link.frame_at(-1e6) == 0
    assert link.frame_at(1e6) == 2


def test_frame_checks():
    link = FrameLink(np.arange(4))
    with pytest.raises(ValueError, match="frames run from 0 to 3"):
        link.frame = 4
    with pytest.raises(ValueError, match="frames run from 0 to 3"):
        link.frame = -1
    with pytest.raises(ValueError, match="whole number"):
        link.frame = 1.5
    link.frame = np.int64(2)
    assert link.frame == 2 and isinstance(link.frame, int)
    with pytest.raises(ValueError, match="must increase"):
        FrameLink([0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="one value per frame"):
        FrameLink([])
    with pytest.raises(ValueError, match="finite"):
        link.frame_at(np.nan)


def test_observers_notified_once_per_change():
    link = FrameLink(np.arange(5))
    seen = []
    link.observe(seen.append)
    link.frame = 3
    link.frame = 3  # same frame: no notification
    link.frame = 1
    assert seen == [3, 1]
    link.unobserve(seen.append)
    link.frame = 4
    assert seen == [3, 1]


def test_handle_click_moves_to_nearest_frame_and_ignores_other_clicks():
    link = FrameLink(np.arange(6) * 0.5)
    seen = []
    link.observe(seen.append)
    assert link.handle_click(SimpleNamespace(xdata=1.6, button=1))
    assert link.frame == 3
    assert not link.handle_click(SimpleNamespace(xdata=None, button=1))  # outside the axes
    assert not link.handle_click(SimpleNamespace(xdata=0.1, button=3))  # right button
    zooming = SimpleNamespace(toolbar=SimpleNamespace(mode="zoom rect"))
    assert not link.handle_click(SimpleNamespace(xdata=0.1, button=1, canvas=zooming))
    assert link.frame == 3
    assert seen == [3]


# --------------------------------------------------------------- the viewer's widgets
def test_setting_frame_moves_slider_view_and_markers(viewer, time_fs):
    viewer.frame = 7
    assert viewer.slider.value == 7
    assert viewer.play.value == 7
    assert viewer.view.frame == 7
    assert len(viewer.markers) == 2  # E_pot and T
    for line in viewer.markers:
        assert np.allclose(line.get_xdata(), time_fs[7])
    assert "frame 7/11" in viewer.readout.value
    assert f"t = {time_fs[7]:g} fs" in viewer.readout.value


def test_slider_play_and_view_drive_the_others(viewer, time_fs):
    viewer.slider.value = 3
    assert (viewer.frame, viewer.view.frame, viewer.play.value) == (3, 3, 3)
    assert np.allclose(viewer.markers[0].get_xdata(), time_fs[3])
    # nglview's own player (in the browser) changes the view's frame trait
    viewer.view.frame = 9
    assert (viewer.frame, viewer.slider.value) == (9, 9)
    assert np.allclose(viewer.markers[1].get_xdata(), time_fs[9])
    viewer.play.value = 5
    assert (viewer.frame, viewer.slider.value, viewer.view.frame) == (5, 5, 5)


def test_click_in_plot_moves_to_nearest_frame(viewer, time_fs):
    ax = viewer.figure.axes[1]
    click(viewer.figure, ax, time_fs[4] + 0.4 * DT_FS)
    assert viewer.frame == 4
    assert (viewer.slider.value, viewer.view.frame) == (4, 4)
    click(viewer.figure, ax, time_fs[8] - 0.4 * DT_FS)
    assert viewer.frame == 8
    assert np.allclose(viewer.markers[0].get_xdata(), time_fs[8])


def test_click_while_zooming_does_not_move(viewer, time_fs):
    viewer.frame = 2
    viewer.figure.canvas.toolbar.zoom()  # the toolbar's zoom button
    click(viewer.figure, viewer.figure.axes[0], time_fs[10])
    assert viewer.frame == 2


def test_default_series_from_md_frames(viewer, md_frames):
    epot = np.array([a.get_potential_energy() for a in md_frames])
    assert list(viewer.series) == [EPOT_LABEL, TEMPERATURE_LABEL]
    assert np.allclose(viewer.series[EPOT_LABEL], epot - epot[0])
    assert np.allclose(viewer.series[TEMPERATURE_LABEL], [a.get_temperature() for a in md_frames])
    assert viewer.series[TEMPERATURE_LABEL][0] > 50  # the run starts warm, not at 0 K
    axes = viewer.figure.axes
    assert [ax.get_ylabel() for ax in axes] == [EPOT_LABEL, TEMPERATURE_LABEL]
    assert axes[-1].get_xlabel() == "time / fs"


def test_from_traj_file(md_frames, tmp_path):
    path = tmp_path / "md.traj"
    with Trajectory(path, "w") as traj:
        for frame in md_frames:
            traj.write(frame)
    viewer = TrajectoryViewer(path, time_fs=DT_FS)
    assert viewer.n_frames == N_FRAMES
    assert np.allclose(viewer.link.x, np.arange(N_FRAMES) * DT_FS)
    assert set(viewer.series) == {EPOT_LABEL, TEMPERATURE_LABEL}
    assert viewer.view.max_frame == N_FRAMES - 1
    viewer.frame = N_FRAMES - 1
    assert viewer.view.frame == N_FRAMES - 1


def test_from_dataset_with_index_axis():
    rng = np.random.default_rng(1)
    water = molecule("H2O")
    positions = water.positions + 0.01 * rng.normal(size=(8, 3, 3))
    energies = -14.0 + 0.1 * rng.normal(size=8)
    ds = Dataset(water.numbers, positions, energies, name="water")
    viewer = TrajectoryViewer(ds)
    assert list(viewer.series) == [EPOT_LABEL]  # no momenta: no temperature
    assert np.allclose(viewer.series[EPOT_LABEL], energies - energies[0])
    assert viewer.figure.axes[-1].get_xlabel() == "frame"
    viewer.frame = 5
    assert np.allclose(viewer.markers[0].get_xdata(), 5.0)
    assert "t =" not in viewer.readout.value


def test_from_md_result_uses_its_times_and_temperatures():
    from mlffkit.md import run_md

    result = run_md(
        Icosahedron("Cu", 2),
        EMT(),
        ensemble="nve",
        steps=6,
        interval=2,
        timestep_fs=1.0,
        progress=False,
    )
    viewer = TrajectoryViewer(result)
    assert np.allclose(viewer.link.x, result.time_fs)
    assert np.allclose(viewer.series[TEMPERATURE_LABEL], result.temperature)


def test_custom_series_without_structure(md_frames):
    values = np.linspace(0.0, 1.0, N_FRAMES)
    viewer = TrajectoryViewer(md_frames, {"d / Å": values}, show_structure=False)
    assert viewer.view is None
    assert [ax.get_ylabel() for ax in viewer.figure.axes] == ["d / Å"]
    viewer.slider.value = 6
    assert np.allclose(viewer.markers[0].get_xdata(), 6.0)
    assert "d / Å: 0.5455" in viewer.readout.value


def test_frames_without_energies_give_no_plot():
    frames = [molecule("CH4") for _ in range(3)]
    viewer = TrajectoryViewer(frames)
    assert viewer.series == {} and viewer.figure is None and viewer.markers == []
    viewer.frame = 2
    assert viewer.view.frame == 2


def test_stale_results_of_a_shared_calculator_are_not_plotted():
    """One live calculator on all frames holds the energy of the last one computed only."""
    calc = EMT()
    frames = []
    for shift in (0.0, 0.05, 0.1):
        atoms = Icosahedron("Cu", 2)
        atoms.positions[0] += shift
        atoms.calc = calc
        frames.append(atoms)
    frames[-1].get_potential_energy()
    assert TrajectoryViewer(frames, show_structure=False).series == {}


def test_bad_input_errors(md_frames, tmp_path):
    with pytest.raises(ValueError, match="'T / K' has shape \\(11,\\) but the trajectory has 12"):
        TrajectoryViewer(md_frames, {"T / K": np.ones(N_FRAMES - 1)}, show_structure=False)
    with pytest.raises(ValueError, match="time_fs has shape"):
        TrajectoryViewer(md_frames, time_fs=np.arange(3.0), show_structure=False)
    with pytest.raises(ValueError, match="must be > 0"):
        TrajectoryViewer(md_frames, time_fs=0.0, show_structure=False)
    with pytest.raises(ValueError, match="other atoms"):
        TrajectoryViewer([molecule("H2O"), molecule("CH4")], show_structure=False)
    with pytest.raises(ValueError, match="not an ase.Atoms"):
        TrajectoryViewer([molecule("H2O"), "H2O"], show_structure=False)
    with pytest.raises(ValueError, match="no frames"):
        TrajectoryViewer([], show_structure=False)
    with pytest.raises(FileNotFoundError, match="not found"):
        TrajectoryViewer(tmp_path / "missing.traj")
    with pytest.raises(ValueError, match="whole number"):
        TrajectoryViewer(md_frames, show_structure=False).frame = 2.5


def test_displays_headless_and_closes(viewer):
    viewer._ipython_display_()  # outside a kernel IPython prints the repr; must not block
    assert viewer.widget.children[0].children == (viewer.view, viewer.figure.canvas)
    viewer.close()
    assert viewer.widget.comm is None
    assert viewer.view.comm is None and viewer.figure.canvas.comm is None


def test_viewer_leaves_the_pyplot_backend_alone():
    """Importing ipympl switches matplotlib's backend; the viewer puts it back."""
    code = (
        "import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt\n"
        "from ase.build import molecule\n"
        "from mlffkit.widgets import TrajectoryViewer\n"
        "TrajectoryViewer([molecule('H2O')] * 2, {'x': [0, 1]}, show_structure=False)\n"
        "import ipympl\n"  # the viewer did import it
        "print(plt.get_backend())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip().lower() == "agg"
