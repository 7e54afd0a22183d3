"""``mlffkit info``: versions, compute devices and reference engines."""

from __future__ import annotations

import importlib
import os
import platform


def _version(module: str) -> str | None:
    try:
        mod = importlib.import_module(module)
    except Exception:  # noqa: BLE001 - any import failure means "not usable"
        return None
    return getattr(mod, "__version__", "installed")


def collect() -> dict:
    """Everything ``mlffkit info`` prints, as a dictionary."""
    import torch

    import mlffkit
    from mlffkit import config

    cuda = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            prop = torch.cuda.get_device_properties(i)
            cuda.append(f"cuda:{i} {prop.name} ({prop.total_memory / 2**30:.0f} GiB)")
    try:
        from mlffkit.reference import available_engines

        engines = available_engines()
    except ImportError:
        engines = {}
    try:
        data_dir = str(config.bundled_data_dir())
    except FileNotFoundError as err:
        data_dir = f"not found ({err})"
    return {
        "mlffkit": mlffkit.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {
            name: _version(name)
            for name in ("numpy", "scipy", "torch", "ase", "sklearn", "matplotlib", "ipywidgets",
                         "nglview", "vesin", "tqdm")
        },
        "cpu": f"{os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
        "gpu": cuda,
        "engines": engines,
        "quick_mode": config.quick_mode(),
        "data_dir": data_dir,
        "cache_dir": str(config.cache_dir()),
    }


def format_info(info: dict) -> str:
    lines = [f"mlffkit {info['mlffkit']} (Python {info['python']}, {info['platform']})", "", "packages:"]
    for name, ver in info["packages"].items():
        lines.append(f"  {name:<12} {ver or 'MISSING'}")
    lines += ["", "devices:", f"  cpu          {info['cpu']}"]
    lines += [f"  gpu          {g}" for g in info["gpu"]] or ["  gpu          none (CUDA not available)"]
    lines += ["", "reference engines:"]
    for name, ver in info["engines"].items():
        lines.append(f"  {name:<12} {ver or 'not installed'}")
    lines += [
        "",
        f"quick mode:    {'on' if info['quick_mode'] else 'off'} (MLFFKIT_QUICK)",
        f"bundled data:  {info['data_dir']}",
        f"download cache: {info['cache_dir']}",
    ]
    return "\n".join(lines)


def run(args) -> int:
    print(format_info(collect()))
    return 0


def register(sub) -> None:
    parser = sub.add_parser("info", help="versions, CPU/GPU devices and reference engines")
    parser.set_defaults(func=run)
