"""The lab's commands: ``ecosync simulator``, ``ecosync bench`` and ``ecosync demo``."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Add the lab's command groups to the top-level ``ecosync`` group (an entry point)."""
    from ecosync_pipeline.lab.commands import bench, demo, simulator

    group.add_command(simulator.simulator)
    group.add_command(bench.bench)
    group.add_command(demo.demo)
