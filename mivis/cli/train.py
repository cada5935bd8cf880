"""`mivis train`: train a target, evaluation or public pre-training classifier."""
from __future__ import annotations


from ..data import DATA_PARAMS
from ..defenses import DEFENSES
from ..models import ARCHITECTURES
from ..train import ROLES, TRAIN_PARAMS, train_run
from ._common import DefaultsFormatter, console_reporter, given_for, print_json, workspace


def _arch_param_names() -> dict:
    out = {}
    for e in ARCHITECTURES.entries():
        for p in e.params:
            out.setdefault(p.name, p)
    return out


def register(sub) -> None:
    p = sub.add_parser("train", help="train a classifier (target, evaluation model or public pre-training)",
                       formatter_class=DefaultsFormatter)
    p.add_argument("--role", choices=ROLES, default="target",
                   help="target: private classes, attacked; eval: judges attacks (use another architecture); "
                        "public: pre-training on the public identities (for TL-DMI)")
    p.add_argument("--name", default="", help="a label for the run")
    p.add_argument("--json", action="store_true", help="print the finished run as JSON")
    p.add_argument("--no-size-check", action="store_true",
                   help="skip measuring memory and time per epoch before training (a clearly too large "
                        "model is refused otherwise)")
    g = p.add_argument_group("training")
    TRAIN_PARAMS.add_arguments(g)
    g = p.add_argument_group("architecture options")
    seen = set()
    for e in ARCHITECTURES.entries():
        for prm in e.params:
            if prm.name not in seen:
                seen.add(prm.name)
                g.add_argument(prm.flag, dest="arch_" + prm.name, default=None,
                               help=f"{prm.help} ({prm.allowed()}; default {prm.default})")
    g = p.add_argument_group("data")
    DATA_PARAMS.add_arguments(g)
    g = p.add_argument_group("defenses (combine freely where the papers do)")
    g.add_argument("--defense", action="append", default=[], choices=DEFENSES.names(),
                   help="enable a defense with its default settings (repeatable)")
    for e in DEFENSES.entries():
        e.params.add_arguments(g, prefix=f"{e.name}_")
        for pname, alias in e.meta.get("cli_aliases", {}).items():  # short spellings, e.g. --skips 1,1,1,0
            prm = e.params[pname]
            g.add_argument(alias, dest=f"{e.name}_{pname}", default=None, metavar="VALUE",
                           help=f"short for --{e.name}-{pname.replace('_', '-')}: {prm.help} ({prm.allowed()})")
    p.set_defaults(func=run)


def defenses_from_args(args) -> dict:
    out = {name: {} for name in args.defense}
    for e in DEFENSES.entries():
        given = {prm.name: getattr(args, f"{e.name}_{prm.name}") for prm in e.params
                 if getattr(args, f"{e.name}_{prm.name}", None) is not None}
        if given:
            out.setdefault(e.name, {}).update(given)
    return out


def run(args) -> int:
    train_cfg = TRAIN_PARAMS.from_namespace(args)
    arch_params = given_for(args, _arch_param_names(), ARCHITECTURES.get(train_cfg["arch"]), dest_prefix="arch_",
                            what=train_cfg["arch"])
    if not args.no_size_check:
        _size_check(args.role, train_cfg, DATA_PARAMS.from_namespace(args), arch_params, defenses_from_args(args))
    rec = train_run(args.role, train_cfg, DATA_PARAMS.from_namespace(args), arch_params=arch_params,
                    defenses=defenses_from_args(args), workspace=workspace(args),
                    reporter=console_reporter(), name=args.name)
    if args.json:
        print_json({"id": rec.id, "metrics": rec.metrics, "config": rec.config})
    else:
        m = rec.metrics
        print(f"run {rec.id}: natural accuracy {m['natural_acc']:.1%} on held-out images "
              f"({m['train_seconds']:.0f} s on {m['device']}, {m['params']:,} parameters)")
    return 0


def _size_check(role: str, train_cfg: dict, data_cfg: dict, arch_params: dict, defenses: dict) -> None:
    """Memory and time per epoch on this device, measured now; refuses a model that cannot fit."""
    import sys

    from ..data import load_split
    from ..models import model_config
    from ..params import ParamError
    from ..sizing import estimate, verdict
    cfg = TRAIN_PARAMS.validate(train_cfg, context="training")
    split = load_split(data_cfg)
    c, h, _ = split.image_shape
    public = role == "public"
    mcfg = model_config(cfg["arch"], len(split.public_names) if public else split.num_classes, c, h, arch_params,
                        defenses)
    level, line = verdict(estimate(mcfg, len(split.public if public else split.train), cfg["batch_size"],
                                   cfg["device"]))
    print(f"size check ({level}): {line}", file=sys.stderr)
    if level == "refuse":
        raise ParamError(f"{cfg['arch']} is too large to train here: {line}")
