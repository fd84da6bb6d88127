"""Find Ray worker processes on this machine by what they run, for the chaos tests."""

from __future__ import annotations

from pathlib import Path


def ray_workers(title_prefix: bytes) -> set[int]:
    """Pids of processes whose title starts with ``title_prefix``: Ray titles a worker
    ``ray::<task or actor>`` while it runs one (``ray::ReadCSV->...``, ``ray::RayTrainWorker``)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if title.startswith(title_prefix):
            pids.add(int(entry.name))
    return pids
