"""The ``segnn`` command line: train, evaluate, predict, export, and MD in LAMMPS and i-PI."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DESCRIPTION = """\
segnn: E(3)-equivariant steerable graph neural networks for molecules.

examples:
  segnn train --config configs/qm9_quick.yaml
  segnn train --config configs/qm9.yaml --set data.target=gap --set train.epochs=100
  segnn train --resume runs/qm9_homo_20261123-101500
  segnn evaluate --checkpoint runs/qm9_homo_20261123-101500/best.pt --split test
  segnn predict --checkpoint runs/qm9_homo_20261123-101500/best.pt molecule.xyz
  segnn train --config configs/ethanol_forces.yaml
  segnn data nbody
  segnn export runs/ethanol_forces_20261123-101500/best.pt --output ethanol.pt2
  segnn lammps --checkpoint best.pt --elements O H --input in.water   # LAMMPS, fix external
  segnn ipi --checkpoint best.pt --structure init.extxyz --unix segnn  # force client of i-pi
  torchrun --nproc_per_node 2 -m segnn train --config configs/qm9.yaml   # data parallel
"""


def add_override_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE`` (repeatable) into ``args.overrides``: config values in the form
    :func:`segnn.config.load_config` takes, as ``segnn train`` has them."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"{help} (repeatable)",
    )


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """An MD engine's force field: its checkpoint, precision, device and backend."""
    parser.add_argument("--checkpoint", type=Path, required=True, help="an energy model's best.pt")
    parser.add_argument(
        "--dtype",
        choices=["float64", "float32"],
        default="float64",
        help="precision of the network (float64: energy conservation in long runs)",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if any)")
    parser.add_argument("--backend", default="auto", help="how the model computes (default auto)")


def _calculator(args: argparse.Namespace):
    import torch

    from segnn.calculator import SEGNNCalculator

    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    return SEGNNCalculator(args.checkpoint, device=args.device, dtype=dtype, backend=args.backend)


def _export(args: argparse.Namespace) -> int:
    import torch

    from segnn.deploy.export import export_model

    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    metadata = export_model(args.checkpoint, args.output, dtype, args.device)
    print(
        f"wrote {args.output} ({metadata['format']}, {metadata['dtype']}, backend "
        f"{metadata['backend']}, cutoff {metadata['cutoff']} Å, species "
        f"{', '.join(json.loads(metadata['species']))})"
    )
    return 0


def _lammps(args: argparse.Namespace) -> int:
    from segnn.engines.lammps import run_lammps

    variables = dict(args.var)
    run_lammps(args.input, _calculator(args), args.elements, variables, log=args.log, screen=True)
    return 0


def _ipi(args: argparse.Namespace) -> int:
    from segnn.data.atoms import read_structures
    from segnn.engines.ipi import serve_ipi

    structure = read_structures(args.structure)[0]
    serve_ipi(_calculator(args), structure, args.unix, args.host, args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segnn", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    from segnn import __version__

    parser.add_argument("--version", action="version", version=f"segnn {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = commands.add_parser("train", help="train a model from a YAML config (or resume a run)")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="YAML config file, e.g. configs/qm9_quick.yaml")
    source.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its last.pt",
    )
    add_override_option(train, "override a config value, e.g. --set model.num_layers=4")

    evaluate = commands.add_parser(
        "evaluate", help="mean absolute errors of a checkpoint on a split of its data"
    )
    evaluate.add_argument(
        "--checkpoint", type=Path, required=True, help="best.pt or last.pt of a run"
    )
    evaluate.add_argument("--split", choices=["train", "val", "test"], default="test")
    evaluate.add_argument(
        "--backend", default="auto", help="how the model computes (segnn.backends; default auto)"
    )

    predict = commands.add_parser("predict", help="predict the property of structures in files")
    predict.add_argument(
        "--checkpoint", type=Path, required=True, help="best.pt or last.pt of a run"
    )
    predict.add_argument(
        "structures",
        nargs="+",
        type=Path,
        metavar="STRUCTURE",
        help="any file ASE can read (xyz, extxyz, pdb, ...)",
    )
    export = commands.add_parser(
        "export",
        help="compile a force field into one .pt2 file (torch.export + AOTInductor)",
        description="Writes the checkpoint's energy, forces and virial as an AOTInductor "
        "package that torch alone runs (segnn.deploy.ExportedCalculator); dynamic in atoms "
        "and edges, periodic cells included (docs/deployment.md). Takes about a minute.",
    )
    export.add_argument("checkpoint", type=Path, help="an energy model's best.pt")
    export.add_argument("--output", type=Path, required=True, help="the .pt2 file to write")
    export.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    export.add_argument(
        "--device", default="cpu", help="where the package runs: cpu (tested) or cuda"
    )

    lammps = commands.add_parser(
        "lammps",
        help="run a LAMMPS input script with a force field's energies, forces and virial",
        description="Runs a LAMMPS input (units metal; one MPI rank) in this process with the "
        "checkpoint's forces through 'fix <id> all external pf/callback 1 1', which the input "
        "must define before its first run (docs/deployment.md).",
    )
    lammps.add_argument("--input", type=Path, required=True, help="the LAMMPS input script")
    lammps.add_argument(
        "--elements",
        nargs="+",
        required=True,
        metavar="ELEMENT",
        help="the element of each LAMMPS atom type, in type order (as pair_coeff * * lists them)",
    )
    lammps.add_argument(
        "--var",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="a LAMMPS variable (-var NAME VALUE; repeatable)",
    )
    lammps.add_argument("--log", type=Path, default=Path("log.lammps"), help="LAMMPS log file")
    add_engine_options(lammps)

    ipi = commands.add_parser(
        "ipi",
        help="answer an i-PI server's force requests (classical or path-integral MD)",
        description="Connects to a running 'i-pi input.xml' whose <ffsocket> names the same "
        "UNIX socket or port and computes every bead's energy, forces and virial until i-PI "
        "stops (docs/deployment.md).",
    )
    ipi.add_argument(
        "--structure",
        type=Path,
        required=True,
        help="the structure i-PI starts from (its species, in i-PI's atom order)",
    )
    address = ipi.add_mutually_exclusive_group(required=True)
    address.add_argument("--unix", metavar="NAME", help="UNIX socket name (<address> in i-PI)")
    address.add_argument("--port", type=int, help="TCP port of the i-PI server")
    ipi.add_argument("--host", default="localhost", help="host of the i-PI server (with --port)")
    add_engine_options(ipi)

    data = commands.add_parser("data", help="generate a simulated data set")
    data.add_argument("name", choices=["nbody"], help="nbody: the charged 5-particle system")
    data.add_argument("--root", type=Path, default=Path("data/nbody"), help="output folder")
    data.add_argument("--seed", type=int, default=0, help="simulation seed")
    return parser


def _data(args: argparse.Namespace) -> int:
    from segnn.data.nbody import SPLIT_SIZES, generate_dataset

    for split, path in generate_dataset(args.root, args.seed).items():
        print(f"{split}: {SPLIT_SIZES[split]} samples -> {path}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from segnn.config import load_config
    from segnn.train import train_from_config

    if args.resume is not None:
        if args.overrides:
            raise ValueError("--set cannot change a resumed run; start a new run instead")
        train_from_config(resume_dir=args.resume)
    else:
        train_from_config(load_config(args.config, args.overrides))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from segnn.checkpoint import load_checkpoint, model_from_checkpoint
    from segnn.config import load_config, without_retired_keys
    from segnn.models import use_backend
    from segnn.train.tasks import evaluate, make_task
    from segnn.train.trainer import batches, select_device

    payload = load_checkpoint(args.checkpoint)
    config = load_config(without_retired_keys(payload["config"]))
    device = select_device(config.train.device)
    task = make_task(config)
    model = model_from_checkpoint(payload).to(device).eval()
    use_backend(model, args.backend, forces=task.differentiates)
    split = batches(task.datasets[args.split], task.collate, config.train.batch_size, device)
    metrics = evaluate(task, model, split)
    report = {"target": model.target["name"], "split": args.split}
    for name, value in metrics.items():
        report[name] = value
        report[f"{name}_unit"] = task.metrics[name]
    print(json.dumps(report, ensure_ascii=False))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from segnn.api import load_model
    from segnn.data.atoms import read_structures

    model = load_model(args.checkpoint)
    if not hasattr(model, "predict"):
        raise ValueError(
            f"{args.checkpoint} is a {model.target['description']} model, which predicts from "
            "simulated states, not from structure files; use segnn evaluate"
        )
    for path in args.structures:
        frames = read_structures(path)
        for index, prediction in enumerate(model.predict(frames)):
            label = f"{path}" if len(frames) == 1 else f"{path}[{index}]"
            print(f"{label}\t{prediction}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    handlers = {
        "train": _train,
        "evaluate": _evaluate,
        "predict": _predict,
        "data": _data,
        "export": _export,
        "lammps": _lammps,
        "ipi": _ipi,
    }
    from segnn.files import WriteError
    from segnn.train.divergence import TrainingDiverged
    from segnn.train.signals import TrainingStopped

    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        print("interrupted; a run continues with: segnn train --resume RUN_DIR", file=sys.stderr)
        return 130
    except TrainingStopped as stopped:
        print(f"segnn {args.command}: {stopped}", file=sys.stderr)
        return 128 + stopped.signal
    except WriteError as error:
        print(f"segnn {args.command}: error: {error}", file=sys.stderr)
        return 4
    except TrainingDiverged as error:
        print(f"segnn {args.command}: error: {error}", file=sys.stderr)
        return 5
    except (ValueError, FileNotFoundError, TypeError) as error:
        print(f"segnn {args.command}: error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        from segnn.train.distributed import DistributedError

        if not isinstance(error, DistributedError):
            raise
        print(f"segnn {args.command}: error: {error}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
