"""`mivis prior`: train a GAN prior on the public identities; import/export shipped priors."""
from __future__ import annotations


from ..data import DATA_PARAMS
from ._common import DefaultsFormatter, console_reporter, given_for, print_json, table, workspace


def _all_params():
    from ..priors import PRIORS
    seen = {}
    for e in PRIORS.entries():
        for p in e.params:
            seen.setdefault(p.name, p)
    return seen


def register(sub) -> None:
    from ..priors import PRESETS, PRIORS
    p = sub.add_parser("prior", help="train, import or export image priors (GANs on the public identities)")
    s = p.add_subparsers(dest="prior_cmd", required=True, metavar="ACTION")
    t = s.add_parser("train", help="train a prior", formatter_class=DefaultsFormatter)
    t.add_argument("--type", default="gmi", choices=PRIORS.names(),
                   help="; ".join(f"{e.name}: {e.help}" for e in PRIORS.entries()))
    t.add_argument("--preset", choices=list(PRESETS), default=None,
                   help="default: 9,000 iterations (train on a GPU); cpu: 3,000; smoke: 20 (tests)")
    t.add_argument("--target", default=None, help="target run whose labels a kedmi/plgmi prior uses")
    t.add_argument("--name", default="", help="a label for the run")
    t.add_argument("--export", default=None, metavar="DIR",
                   help="also copy the finished prior to this folder (e.g. assets/priors/orl64-gmi)")
    t.add_argument("--json", action="store_true", help="print the finished run as JSON")
    g = t.add_argument_group("prior parameters")
    for prm in _all_params().values():
        owners = [e.name for e in PRIORS.entries() if prm.name in e.params]
        only = "" if len(owners) == len(PRIORS) else f" [{'/'.join(owners)} only]"
        g.add_argument(prm.flag, dest=prm.name, default=None,
                       help=f"{prm.help}{only} (default: {prm.default}; {prm.allowed()})")
    g = t.add_argument_group("data (gmi priors; kedmi/plgmi use their target's split)")
    DATA_PARAMS.add_arguments(g)
    t.set_defaults(func=train)
    q = s.add_parser("import", help="register a shipped prior folder (assets/priors/<name>) as a prior run")
    q.add_argument("source", help="a folder with generator/discriminator.safetensors + prior.json, or a shipped name")
    q.set_defaults(func=import_)
    q = s.add_parser("export", help="copy a finished prior run to a folder (to ship it in assets/priors/)")
    q.add_argument("run_id")
    q.add_argument("dest")
    q.set_defaults(func=export)
    q = s.add_parser("shipped", help="list the priors shipped in assets/priors/")
    q.set_defaults(func=shipped)
    register_ceiling(s)


def train(args) -> int:
    from ..priors import PRIORS, export_prior, train_prior
    given = given_for(args, _all_params(), PRIORS.get(args.type), what=f"a {args.type} prior")
    data = {p.name: p.coerce(getattr(args, p.name)) for p in DATA_PARAMS if getattr(args, p.name, None) is not None}
    rec = train_prior(args.type, given, data or None, target_run=args.target, preset=args.preset, workspace=workspace(args),
                      reporter=console_reporter(), name=args.name)
    if args.export:
        export_prior(workspace(args), rec.id, args.export)
    if args.json:
        print_json({"id": rec.id, "metrics": rec.metrics, "config": rec.config})
    else:
        work = (f"{rec.metrics['components']} components ({rec.metrics['explained_variance']:.1%} of the public "
                f"images' variance)" if args.type == "pca" else f"{rec.metrics['iterations']} iterations")
        print(f"run {rec.id}: {args.type} prior, {work} in "
              f"{rec.metrics['train_seconds']:.0f} s on {rec.metrics['device']}; samples: {rec.dir / 'samples.png'}"
              + (f"; exported to {args.export}" if args.export else ""))
    return 0


def import_(args) -> int:
    from ..priors import import_prior
    rec = import_prior(args.source, workspace(args))
    print(f"prior run {rec.id} ({rec.config['type']}, {rec.config['net']['img_size']} px)")
    return 0


def export(args) -> int:
    from ..priors import export_prior
    print(f"exported to {export_prior(workspace(args), args.run_id, args.dest)}")
    return 0


def shipped(args) -> int:
    import json
    from ..priors import shipped_priors
    from ..priors.store import ASSETS
    rows = []
    for n in shipped_priors():
        net = json.loads((ASSETS / n / "prior.json").read_text())["net"]
        rows.append([n, net["type"], f"{net['img_size']} px", net["channels"]])
    print(table(rows, ["name", "type", "size", "channels"]) if rows else "no shipped priors in assets/priors/")
    return 0


def register_ceiling(s) -> None:
    from ..analysis.ceiling import CEILING_PARAMS
    q = s.add_parser("ceiling", formatter_class=DefaultsFormatter,
                     help="a prior's ceiling per judge: project the PRIVATE training images into the prior and "
                          "judge the projections (a diagnostic of the prior, never an attack)",
                     description="Project each private training image into the prior (z minimising pixel MSE, "
                                 "several Adam starts, the best kept) and judge the projections with the evaluation "
                                 "model E and with dlib: the most the prior can show each judge. It uses the "
                                 "private images, so it is a diagnostic of the prior, never an attack. Stored as a "
                                 "run (kind ceiling); the Attack and Results pages show it beside every attack.")
    q.add_argument("prior", help="prior run id (or a shipped prior's name, imported first)")
    q.add_argument("--eval", default=None, metavar="RUN",
                   help="evaluation model E (default: the newest that fits the prior; none = dlib alone)")
    q.add_argument("--no-dlib", action="store_true", help="leave the dlib judge out (default: on when installed)")
    q.add_argument("--name", default="", help="a label for the run")
    q.add_argument("--json", action="store_true", help="print the finished run's metrics as JSON")
    CEILING_PARAMS.add_arguments(q.add_argument_group("projection"))
    q.set_defaults(func=ceiling)


def ceiling(args) -> int:
    from ..priors import import_prior, shipped_priors
    from ..analysis.ceiling import CEILING_PARAMS, ceiling_run, settings_words
    from ..runs import valid_run_id
    ws = workspace(args)
    prior = args.prior
    if not valid_run_id(prior) and prior in shipped_priors():
        prior = import_prior(prior, ws).id
    params = CEILING_PARAMS.from_namespace(args)
    rec = ceiling_run(prior, args.eval, params, workspace=ws, dlib=False if args.no_dlib else None,
                      reporter=console_reporter(), name=args.name)
    m = rec.metrics
    if args.json:
        print_json({"id": rec.id, "metrics": m, "config": rec.config})
        return 0
    from ..analysis.ceiling import metric_words as metric_text
    print(f"run {rec.id}: ceiling of prior {rec.config['prior_run']} (a diagnostic of the prior that uses the "
          f"private training images; not an attack)")
    print(f"{settings_words(rec)}; judging {m['judge_seconds']:.0f} s; chance {100 * m['chance']:.0f}%")
    rows = [["pixel MSE", metric_text(m["pixel_mse"], pct=False)]]
    if "ceiling_acc_top1" in m:
        e = rec.config["eval_run"]
        rows += [[f"E ({e}) top-1 of the projections", metric_text(m["ceiling_acc_top1"])],
                 ["E top-1 of the real images", metric_text(m["originals_acc_top1"])]]
    if "ceiling_acc_top1_dlib" in m:
        rows.append(["dlib top-1 of the projections", metric_text(m["ceiling_acc_top1_dlib"])])
    print(table(rows, ["measure", "value [95% CI over identities]"]))
    print(f"projections: {rec.dir / 'projections.png'}")
    return 0
