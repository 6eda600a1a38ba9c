"""Typed run configuration: YAML in, validated dataclasses out.

A config has three sections, ``model``, ``data`` and ``train``, plus a top-level ``seed``.
Unknown or mistyped keys and values of the wrong type are rejected with :class:`ConfigError`,
which names the key, the allowed keys and the closest match.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A config file or override that cannot be used, with a message that says why."""


@dataclass
class ModelConfig:
    """Architecture of a :class:`segnn.models.SEGNN`."""

    species: list[str] = field(default_factory=lambda: ["H", "C", "N", "O", "F"])
    """Chemical elements the model accepts, one-hot encoded as ``len(species) x 0e``."""
    hidden_features: int = 128
    """Width of the hidden steerable features; ``hidden_allocation`` says how it is spread over
    the degrees ``0..lmax_hidden``."""
    lmax_hidden: int = 2
    """Highest degree of the hidden features."""
    hidden_allocation: Literal["dimension", "weights"] = "dimension"
    """``dimension``: ``hidden_features`` dimensions split evenly over the degrees
    (``46x0e+14x1o+8x2e`` for 128, lmax 2). ``weights``: the paper's weight-balanced irreps, the
    same number ``n`` of every degree with as many weights per tensor product as a linear layer
    on ``hidden_features`` scalars (``36x0e+36x1o+36x2e`` for 128, lmax 2, lmax_attr 3;
    ``32x0e+32x1o`` for 64, lmax 1, lmax_attr 1) — wider and slower."""
    lmax_attr: int = 3
    """Highest degree of the spherical-harmonic edge/node attributes."""
    num_layers: int = 7
    """Number of message-passing layers."""
    norm: Literal["instance", "none"] = "instance"
    """Equivariant instance norm after each layer's update (``none``: no norm)."""
    pool: Literal["mean", "sum"] = "mean"
    """How a ``graph`` task pools the atoms' features: ``mean`` or ``sum``."""
    task: Literal["graph", "node", "energy"] = "graph"
    """``graph``: one output row per molecule; ``node``: one per atom; ``energy``: a scalar per
    atom summed over each molecule (no layer after the sum, so energies are extensive and
    forces local)."""
    output_irreps: str = "1x0e"
    """Irreps of the output, e.g. ``1x0e`` for a property or ``1x1o`` for a vector."""
    radial: Literal["squared_distance", "distance", "bessel"] = "squared_distance"
    """Invariant edge features. ``squared_distance``: the paper's ``|x_ij|^2`` (QM9) with a hard
    cutoff; ``distance``: ``|x_ij|`` (the official N-body code's edge feature).
    ``bessel``: ``num_radial`` Bessel functions times a polynomial envelope that also weights
    messages and node attributes, so outputs are smooth when atoms cross the cutoff, and a radial
    MLP that scales each message channel (use it for energies and forces)."""
    num_radial: int = 8
    """Bessel functions in the radial basis (``radial: bessel``)."""
    envelope_exponent: int = 6
    """Exponent ``p`` of the polynomial cutoff envelope (``radial: bessel``; at least 2)."""
    input_irreps: str | None = None
    """Irreps of per-node input features ``data.x`` (e.g. ``2x0e + 1x1o`` for the N-body
    system's ``|v|, q, v``); ``null``: the one-hot species of ``data.z``."""
    velocity_attribute: bool = False
    """Add the spherical harmonics of ``data.vel`` to the node attributes (the paper's physical
    attribute for the N-body system)."""
    charge_product: bool = False
    """Append ``q_i q_j`` (from ``data.charge``) to the invariant edge features."""
    attribute_normalization: Literal["component", "integral"] = "component"
    """Scale of the spherical-harmonic attributes: ``component`` (``Y^0 = 1``) or ``integral``
    (divided by ``sqrt(4 pi)``, as in the official SEGNN code; it damps every conditioned
    product at initialisation, which lets deep models train without a norm)."""
    parameterization: Literal["standard", "normalized"] = "normalized"
    """How tensor-product weights are scaled (:mod:`segnn.o3.tensor_product`): ``standard``
    draws weights and scalar biases from ``U(±1/sqrt(fan_in))`` and uses them as they are, like
    ``torch.nn.Linear`` and the official SEGNN code, whose learning rates assume it;
    ``normalized`` draws unit-normal weights and scales them by ``1/sqrt(fan_in)`` in the forward
    pass (e3nn). Under Adam with the same learning rate ``standard`` weights move
    ``sqrt(fan_in)`` times more per step relative to their scale: the paper recipe's
    ``lr: 5e-4`` trains QM9 several times faster per step with them (docs/training.md)."""
    normalize_activations: bool = False
    """Scale the gates' SiLU and sigmoid to unit second moment for unit-normal inputs (~1.68x,
    ~1.85x), as e3nn's ``Gate`` and the official SEGNN code do (:class:`segnn.o3.gate.Gate`)."""

    def __post_init__(self) -> None:
        from ase.data import atomic_numbers
        from e3nn import o3

        unknown = [
            symbol for symbol in self.species if symbol not in atomic_numbers or symbol == "X"
        ]
        if unknown or not self.species:
            raise ConfigError(f"model.species must list chemical elements; unknown: {unknown}")
        if len(set(self.species)) != len(self.species):
            raise ConfigError(f"model.species lists an element twice: {self.species}")
        _require_positive("model.hidden_features", self.hidden_features)
        _require_positive("model.num_layers", self.num_layers)
        _require_positive("model.num_radial", self.num_radial)
        if self.envelope_exponent < 2:
            raise ConfigError(f"model.envelope_exponent must be >= 2, got {self.envelope_exponent}")
        if self.lmax_attr < 0 or self.lmax_hidden < 0:
            raise ConfigError(
                f"model.lmax_attr and model.lmax_hidden must be >= 0, got {self.lmax_attr}, {self.lmax_hidden}"
            )
        _require_irreps("model.output_irreps", self.output_irreps, "1x0e")
        if self.input_irreps is not None:
            _require_irreps("model.input_irreps", self.input_irreps, "2x0e + 1x1o")
        if self.task == "energy" and o3.Irreps(self.output_irreps) != o3.Irreps("1x0e"):
            raise ConfigError(
                f"model.task 'energy' predicts one scalar per atom: model.output_irreps must be "
                f"'1x0e', got {self.output_irreps!r}"
            )


@dataclass
class SubsetConfig:
    """Caps on the number of molecules taken from each split (``null`` = the whole split)."""

    train: int | None = None
    """At most this many training items (the first of the split); ``null``: all."""
    val: int | None = None
    """At most this many validation items; ``null``: all."""
    test: int | None = None
    """At most this many test items; ``null``: all."""


@dataclass
class DataConfig:
    dataset: Literal["qm9", "xyz", "nbody"] = "qm9"
    """``qm9``: one QM9 property (``target``); ``xyz``: energies and forces of the structures in
    ``path`` (any file ASE reads, e.g. extended XYZ; eV and eV/Å); ``nbody``: the charged
    5-particle system (positions 1,000 steps ahead; simulated into ``root`` on first use)."""
    target: str = "homo"
    """QM9 property to learn (``qm9`` only)."""
    cutoff: float = 2.0
    """Radius graph cutoff in Å."""
    root: str = "data/qm9"
    """Folder of the processed QM9 cache or of the N-body simulations (``data/nbody``)."""
    path: str | None = None
    """Structure file with reference energies and forces (``xyz`` only)."""
    energy_key: str = "energy"
    """Key of the energy in ``atoms.info`` (or the file's single-point results; ``xyz`` only)."""
    forces_key: str | None = "forces"
    """Key of the forces in ``atoms.arrays`` (``null``: train on energies only; ``xyz`` only)."""
    stress_key: str | None = None
    """Key of the stress (eV/Å³, ASE's sign: positive under tension; 6 Voigt components
    ``xx yy zz yz xz xy``, 9 or 3×3) in ``atoms.info`` or the file's single-point results, e.g.
    ``stress`` (``xyz`` only; ``null``: no stress). Frames without one (molecules, or periodic
    frames that lack it) train on energies and forces only."""
    virial_key: str | None = None
    """Instead of ``stress_key``: key of the virial ``-stress × volume`` (eV; shapes as the
    stress), as some data sets store it (``xyz`` only)."""
    split: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    """Train/validation/test fractions of the structures in ``path``, seeded by ``split_seed``
    (``xyz`` only; QM9 uses its standard 100,000/17,748/13,083 split)."""
    split_seed: int = 0
    """Seed of the split into train, validation and test."""
    split_order: Literal["random", "file"] = "random"
    """``random``: the structures are shuffled (``split_seed``) before the split; ``file``: the
    first structures train, the next validate, the last test — for a trajectory, whose
    neighbouring frames are alike, the test frames are then later in time than any trained on
    (``xyz`` only)."""
    subset: SubsetConfig = field(default_factory=SubsetConfig)
    """Caps on each split's size for quick runs, e.g. ``{train: 4000, val: 500, test: 1000}``."""
    atom_references: bool = False
    """Fit one value per element to the training targets by least squares and learn only the
    remainder (for extensive targets such as U0, U, H, G; always on for ``xyz`` energies)."""
    centered_positions: bool = False
    """``nbody`` only: also feed each particle's position relative to its system's centroid as a
    node input (``model.input_irreps: 2x0e + 2x1o`` instead of ``2x0e + 1x1o``)."""

    def __post_init__(self) -> None:
        _require_positive("data.cutoff", self.cutoff)
        if self.stress_key is not None and self.virial_key is not None:
            raise ConfigError("give data.stress_key or data.virial_key, not both")
        if self.dataset == "xyz" and not self.path:
            raise ConfigError("data.dataset 'xyz' needs data.path, the structure file to read")
        if (
            len(self.split) != 3
            or any(fraction < 0 for fraction in self.split)
            or sum(self.split) > 1 + 1e-9
            or min(self.split) == 0
        ):
            raise ConfigError(
                f"data.split must be three positive fractions (train, val, test) summing to at "
                f"most 1, got {self.split}"
            )


@dataclass
class TrainConfig:
    epochs: int = 1000
    """Passes over the training set (the schedule's length unless ``max_minutes`` ends the run first)."""
    batch_size: int = 128
    """Structures per training (and evaluation) batch."""
    lr: float = 5e-4
    """Peak learning rate of Adam."""
    weight_decay: float = 1e-8
    """Adam's L2 weight decay."""
    loss: Literal["l1", "mse"] = "l1"
    """Mean absolute (``l1``) or squared (``mse``) error of the normalised targets."""
    scheduler: Literal["multistep", "cosine", "linear", "constant"] = "multistep"
    """After the warm-up: ``multistep`` (× ``gamma`` at each milestone), ``cosine`` or
    ``linear`` decay to zero at the end of the run, or ``constant``. With ``max_minutes`` the
    run's end is whichever comes first, the last epoch or the time budget, and the schedule
    follows the one further along (:mod:`segnn.train.schedule`)."""
    milestones: list[float] = field(default_factory=lambda: [0.8, 0.9])
    """For ``multistep``: fractions of the run at which the learning rate drops."""
    gamma: float = 0.1
    """For ``multistep``: the factor applied at each milestone."""
    warmup_epochs: float = 0.0
    """Linear learning-rate warm-up over this many epochs (fractions allowed)."""
    grad_clip: float | None = None
    """Clip the gradients' global norm to this value before each step (``null``: no clipping)."""
    divergence_factor: float | None = 1.0e4
    """Stop the run as diverged (non-zero exit, checkpoints from before kept) when the training
    loss, averaged over ~10 steps, rises above this many times the lowest average it reached
    (``null``: no such check). Steps with a non-finite loss or gradient never update the
    weights, and three in a row stop the run whatever this is (:mod:`segnn.train.divergence`)."""
    ema_decay: float | None = None
    """Keep an exponential moving average of the weights with this decay per step (e.g. 0.99;
    ramped up over the first steps): validation, ``best.pt``'s ``model_state`` and the test use
    the averaged weights (:mod:`segnn.train.ema`). ``null``: no average."""
    early_stopping_patience: int | None = None
    """Stop after this many evaluations without a better validation loss."""
    max_minutes: float | None = None
    """Wall-clock budget for training (validation included; the test evaluation runs
    afterwards). It shapes the learning-rate schedule: a 12-minute run of a 1,000-epoch recipe
    decays its learning rate over the 12 minutes. A resumed run continues from the recorded
    training time; how many steps fit in a budget depends on the machine's speed."""
    energy_weight: float = 1.0
    """Weight of the per-atom energy error in the loss (``xyz`` data)."""
    forces_weight: float = 1.0
    """Weight of the force error in the loss (``xyz`` data with forces)."""
    stress_weight: float = 1.0
    """Weight of the stress error in the loss (``xyz`` data with ``data.stress_key`` or
    ``data.virial_key``): the error
    of the virial per atom, ``stress × volume / atoms``, in the units of the per-atom energy."""
    device: str = "auto"
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda``, ``cuda:1``, ..."""
    dtype: Literal["float32", "float64"] = "float32"
    """Precision of the weights and of the batches' features while training. ``float64`` is
    slower but makes runs repeatable to ~1e-12 whatever the order of sums (e.g. the same run
    on one or several processes)."""
    backend: str = "auto"
    """How the model computes (:mod:`segnn.backends`): ``auto`` (the fastest that supports the
    device and the task), ``e3nn``, ``plain``, ``edge_frame``, ``cpu_kernels`` or the name of a
    backend registered with ``segnn.backends.register`` (an unknown name stops the run before
    training, naming the choices). The same function and weights whichever runs; checkpoints
    do not record it."""
    compile: bool | None = None
    """Compile the layers' node updates with ``torch.compile`` where the backend allows it
    (dynamic in the number of atoms; a cold compilation takes tens of seconds, cached on disk
    by torch). ``null``: only for runs that plan at least 5,000 steps without a time budget
    under 30 minutes. Never for training on forces (compiled code gives no second
    derivatives)."""
    runs_dir: str = "runs"
    """Folder that receives the run directories."""
    run_name: str | None = None
    """Name of the run directory (``null``: dataset, target and time; a suffix avoids overwriting)."""

    def __post_init__(self) -> None:
        if not self.backend or not self.backend.replace("_", "").isalnum():
            raise ConfigError(f"train.backend must be a backend's name, got {self.backend!r}")
        if self.divergence_factor is not None and self.divergence_factor <= 1.0:
            raise ConfigError(
                f"train.divergence_factor must exceed 1 (or be null), got {self.divergence_factor}"
            )
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(
                f"train.ema_decay must lie strictly between 0 and 1, got {self.ema_decay}"
            )


NBODY_INPUT_IRREPS = {False: "2x0e + 1x1o", True: "2x0e + 2x1o"}
"""The N-body node inputs ``(|v|, q, v)``, and with ``data.centered_positions`` the position
relative to the system's centroid too, by ``data.centered_positions``."""


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        """What a data set needs of the model (the checks across sections)."""
        model, data = self.model, self.data
        if data.dataset == "nbody":
            if model.task != "node" or model.output_irreps.replace(" ", "") != "1x1o":
                raise ConfigError(
                    "data.dataset 'nbody' predicts displacements: set model.task to 'node' and "
                    "model.output_irreps to '1x1o'"
                )
            expected = NBODY_INPUT_IRREPS[data.centered_positions]
            if model.input_irreps is None or _irreps(model.input_irreps) != _irreps(expected):
                raise ConfigError(
                    f"data.dataset 'nbody' feeds node inputs {expected!r} "
                    f"(data.centered_positions: {str(data.centered_positions).lower()}): set "
                    f"model.input_irreps to {expected!r}, got {model.input_irreps!r}"
                )
        elif data.dataset == "xyz" and (model.task != "energy" or model.radial != "bessel"):
            raise ConfigError(
                "data.dataset 'xyz' trains energies and forces: set model.task to 'energy' and "
                "model.radial to 'bessel'"
            )
        elif data.dataset == "qm9" and model.task != "graph":
            raise ConfigError(
                f"data.dataset 'qm9' predicts one property per molecule: set model.task to "
                f"'graph', got {model.task!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _irreps(value: str):
    from e3nn import o3

    return o3.Irreps(value)


def _require_irreps(key: str, value: str, example: str) -> None:
    from e3nn import o3

    try:
        o3.Irreps(value)
    except (ValueError, AssertionError):
        raise ConfigError(f"{key} {value!r} is not valid irreps, e.g. {example!r}") from None


def _require_positive(key: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{key} must be positive, got {value}")


def load_config(
    source: str | Path | dict[str, Any] | Config, overrides: list[str] | None = None
) -> Config:
    """Build a validated :class:`Config` from a YAML file, a dict or a Config.

    ``overrides`` are ``"section.key=value"`` strings (values parsed as YAML), applied before
    validation, e.g. ``["model.num_layers=4", "data.target=gap"]``.
    """
    if isinstance(source, Config):
        raw = source.to_dict()
    elif isinstance(source, dict):
        raw = source
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path} is not valid YAML: {error}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path} must hold a mapping of sections, got {type(raw).__name__}")
    raw = _apply_overrides(raw, overrides or [])
    return _build(Config, raw, "")


def _apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    raw = _deep_copy(raw)
    for override in overrides:
        key, separator, value = override.partition("=")
        if not separator or not key:
            raise ConfigError(f"override {override!r} must look like section.key=value")
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {override!r}: {part!r} is not a section")
            node = child
        try:
            node[parts[-1]] = yaml.safe_load(value)
        except yaml.YAMLError as error:
            raise ConfigError(f"override {override!r}: cannot parse value: {error}") from None
    return raw


def _deep_copy(raw: Any) -> Any:
    if isinstance(raw, dict):
        return {key: _deep_copy(value) for key, value in raw.items()}
    if isinstance(raw, list):
        return [_deep_copy(value) for value in raw]
    return raw


RETIRED_KEYS = {
    "model.edge_frame": "backends are chosen at run time: train.backend (segnn.backends)",
    "model.frame_kernels": "backends are chosen at run time: train.backend (segnn.backends)",
}
"""Keys that configs no longer take, and where their job went. Checkpoints written before
still load (:func:`without_retired_keys`)."""


def without_retired_keys(raw: dict[str, Any]) -> dict[str, Any]:
    """A copy of a config dictionary (e.g. from an old checkpoint) without :data:`RETIRED_KEYS`."""
    raw = _deep_copy(raw)
    for key in RETIRED_KEYS:
        section, _, name = key.partition(".")
        if isinstance(raw.get(section), dict):
            raw[section].pop(name, None)
    return raw


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where.rstrip('.') or 'config'} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    allowed = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if where + str(key) in RETIRED_KEYS:
            raise ConfigError(
                f"config key {where + str(key)!r} was retired: {RETIRED_KEYS[where + str(key)]}"
            )
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"unknown config key {where + str(key)!r}.{hint} Allowed keys in "
                f"{where.rstrip('.') or 'the top level'}: {', '.join(allowed)}"
            )
    values = {key: _coerce(hints[key], value, where + key) for key, value in raw.items()}
    return cls(**values)


def _coerce(annotation: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value if value is not None else {}, key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [arg for arg in args if arg is not type(None)]
        return _coerce(inner, value, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key} must be one of {', '.join(map(repr, args))}; got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return [_coerce(args[0], item, f"{key}[{index}]") for index, item in enumerate(value)]
    if annotation is float and not isinstance(value, bool):
        if isinstance(value, int):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    if annotation is bool and not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if annotation is int and isinstance(value, bool):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if not isinstance(value, annotation):
        raise ConfigError(f"{key} must be of type {annotation.__name__}, got {value!r}")
    return value
