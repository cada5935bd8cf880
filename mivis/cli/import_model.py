"""`mivis import-model` / `export-model` / `size-check`: bring your own classifier (any timm architecture)."""
from __future__ import annotations

import sys

from ..data import DATA_PARAMS
from ..params import FLOAT_LIST, Param, ParamError
from ._common import DefaultsFormatter, console_reporter, print_json, workspace


def register(sub) -> None:
    p = sub.add_parser("import-model", formatter_class=DefaultsFormatter,
                       help="import a classifier trained elsewhere (safetensors, any timm architecture) as a run")
    p.add_argument("weights", help="the model's safetensors file (timm layout, or one exported by mivis)")
    p.add_argument("--arch", required=True, help="timm architecture name (e.g. convnext_atto, timm:resnet26d) "
                   "or a mivis architecture (resnet18, ...)")
    p.add_argument("--role", choices=("target", "eval"), default="target",
                   help="target: attacked; eval: judges attacks on targets of another architecture")
    p.add_argument("--num-classes", type=int, default=None, help="the model's outputs (checked against the data)")
    p.add_argument("--input-size", type=int, default=None,
                   help="image side the model takes (sets the data's image_size); mivis gives it each face cut to "
                   "the centred square of its shorter side, resized (bicubic) to this side: train on the same")
    p.add_argument("--in-chans", type=int, default=None, help="1 or 3 (sets the data's channels)")
    p.add_argument("--norm-mean", default=None, help="the model's input normalisation mean, comma-separated "
                   "(default: timm's for this architecture, ImageNet's for most)")
    p.add_argument("--norm-std", default=None, help="the model's normalisation std, comma-separated")
    p.add_argument("--class-order", default=None, help="the model's output order: 'split' (the data split's "
                   "order, as `mivis data` lists the private identities; the default), 'sorted' (the names sorted, "
                   "as torchvision ImageFolder orders a folder of them), a file with one name a line, or "
                   "comma-separated names")
    p.add_argument("--keep-flagged", action="store_true", help="store the run even when its held-out accuracy is "
                   "near chance ('classes probably mis-ordered'; by default nothing is imported then)")
    p.add_argument("--name", default="", help="a label for the run")
    p.add_argument("--batch-size", type=int, default=32, help="batch size of a later retrain (size estimate only)")
    p.add_argument("--json", action="store_true", help="print the run as JSON")
    g = p.add_argument_group("data the model was trained on")
    DATA_PARAMS.add_arguments(g)
    p.set_defaults(func=run_import)

    e = sub.add_parser("export-model", formatter_class=DefaultsFormatter,
                       help="write a classifier run's weights in timm's own layout (safetensors)")
    e.add_argument("run", help="classifier run id")
    e.add_argument("out", help="output .safetensors path")
    e.set_defaults(func=run_export)

    s = sub.add_parser("size-check", formatter_class=DefaultsFormatter,
                       help="memory and time per epoch of training an architecture on this data and device, "
                            "measured now (refuses what cannot fit)")
    s.add_argument("--arch", required=True, help="mivis or any timm architecture name")
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    g = s.add_argument_group("data")
    DATA_PARAMS.add_arguments(g)
    s.set_defaults(func=run_size)


def _floats(text, what):
    if text is None:
        return None
    return Param(what, FLOAT_LIST, None, "", optional=True).coerce(text)


def _size_line(mcfg: dict, n_train: int, batch_size: int, device: str = "auto") -> tuple[str, str]:
    from ..sizing import estimate, verdict
    return verdict(estimate(mcfg, n_train, batch_size, device))


def run_import(args) -> int:
    from ..importing import import_model, order_warning, read_class_order
    rec = import_model(args.weights, args.arch, DATA_PARAMS.from_namespace(args), role=args.role,
                       num_classes=args.num_classes, img_size=args.input_size, in_chans=args.in_chans,
                       mean=_floats(args.norm_mean, "norm_mean"), std=_floats(args.norm_std, "norm_std"),
                       class_order=read_class_order(args.class_order), workspace=workspace(args),
                       reporter=console_reporter(), name=args.name, keep_flagged=args.keep_flagged)
    m = rec.metrics
    level, line = _size_line(rec.config["model"], _n_train(rec), args.batch_size)
    if args.json:
        print_json({"id": rec.id, "metrics": m, "config": rec.config, "size": {"level": level, "line": line}})
    else:
        print(f"run {rec.id}: imported {args.arch} as a {rec.kind}; held-out accuracy {m['natural_acc']:.1%} "
              f"(chance {m['chance']:.1%}), {m['params']:,} parameters")
        print(f"retraining it here ({level}): {line}")
    warn = order_warning(m)
    if warn:
        print(f"warning: {warn}", file=sys.stderr)
    return 0


def _n_train(rec) -> int:
    from ..data import load_split
    return len(load_split(rec.config["data"]).train)


def run_export(args) -> int:
    from ..importing import export_timm
    out = export_timm(workspace(args), args.run, args.out)
    print(f"wrote {out} (timm layout; import it with: python -m mivis import-model {out} --arch ...)")
    return 0


def run_size(args) -> int:
    from ..data import load_split
    from ..models import ARCHITECTURES, model_config
    ARCHITECTURES.get(args.arch)
    split = load_split(DATA_PARAMS.from_namespace(args))
    c, h, _ = split.image_shape
    mcfg = model_config(args.arch, split.num_classes, c, h)
    level, line = _size_line(mcfg, len(split.train), args.batch_size, args.device)
    print(f"{level}: {line}")
    if level == "refuse":
        raise ParamError(f"{args.arch} is too large for this device and data")
    return 0
