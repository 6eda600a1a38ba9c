"""What is learned: one :class:`~segnn.train.tasks.protocol.Task` per ``data.dataset``.

=========== ===================== =============================================
dataset     task                  learns
=========== ===================== =============================================
``qm9``     :class:`PropertyTask` one QM9 property per molecule
``xyz``     :class:`EnergyForceTask` energies, forces and stress of a user's file
``nbody``   :class:`NBodyTask`    charged N-body positions 1,000 steps ahead
=========== ===================== =============================================

:func:`make_task` is the one place a config's data set is turned into its task; the config
layer checks beforehand that the model fits the data set (:class:`segnn.config.Config`).
"""

from __future__ import annotations

from segnn.config import Config
from segnn.train.tasks.energy import EnergyForceTask, energy_statistics
from segnn.train.tasks.losses import elementwise_loss, fit_atom_reference
from segnn.train.tasks.nbody import NBodyTask
from segnn.train.tasks.property import PropertyTask
from segnn.train.tasks.protocol import Task, evaluate

TASKS: dict[str, type[Task]] = {
    "qm9": PropertyTask,
    "xyz": EnergyForceTask,
    "nbody": NBodyTask,
}
"""The task of each ``data.dataset``."""


def make_task(config: Config) -> Task:
    """The task of ``config.data.dataset``: its data sets loaded, ready to build a model."""
    return TASKS[config.data.dataset](config)


__all__ = [
    "TASKS",
    "EnergyForceTask",
    "NBodyTask",
    "PropertyTask",
    "Task",
    "elementwise_loss",
    "energy_statistics",
    "evaluate",
    "fit_atom_reference",
    "make_task",
]
