"""Import a classifier trained outside mivis (any timm architecture) as a target or evaluation run.

`import_model` checks everything before a run exists: the weights file (safetensors only, the same
one-line refusals as mivis.weights), the architecture name, every tensor name and shape against
that architecture, the class order against the data, and the normalisation. The model is then a
normal classifier run: Classifier(body, head) with the file's classifier as `head` (rows put in the
split's class order) and the body taking mivis's [-1, 1] images through the model's own mean/std
(models.attach_input_norm). Its held-out accuracy is measured and stored; an accuracy near chance
is flagged "classes probably mis-ordered", with what the best one-to-one relabelling would give.

`export_timm` writes a mivis classifier in timm's own layout (the inverse, for use elsewhere).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from .data import load_split
from .models import ARCHITECTURES, Classifier, count_params, model_from_config
from .params import ParamError
from .progress import NULL, Reporter
from .runs import RunRecord, Workspace
from .weights import WeightsError, load_tensors, save_weights

ROLES = ("target", "eval")
_STRIP = ("module.", "model.", "_orig_mod.")


def classifier_name(arch: str, num_classes: int, in_chans: int, img_size: int) -> str:
    """Name of the timm model's classifier module (its weights become mivis's `head`)."""
    import timm
    timm_name = ARCHITECTURES.get(arch).meta.get("timm_name")
    if timm_name is None:  # an architecture defined in Python (mivis.api): its weights come as body./head.
        return "head"
    with torch.device("meta"):
        try:
            full = timm.create_model(timm_name, pretrained=False, num_classes=num_classes, in_chans=in_chans,
                                     img_size=img_size)
        except TypeError:
            full = timm.create_model(timm_name, pretrained=False, num_classes=num_classes, in_chans=in_chans)
    clf = full.get_classifier()
    for name, m in full.named_modules():
        if m is clf and name:
            return name
    raise ParamError(f"{timm_name}: timm does not say which module is its classifier; it cannot be imported")


def _strip(k: str) -> str:
    for p in _STRIP:
        if k.startswith(p):
            return k[len(p):]
    return k


def map_state(tensors: dict[str, torch.Tensor], clf: str) -> dict[str, torch.Tensor]:
    """timm layout (or mivis's own body./head.) -> mivis Classifier keys."""
    keys = [_strip(k) for k in tensors]
    if all(k.startswith(("body.", "head.")) for k in keys):
        return {k: v for k, v in zip(keys, tensors.values())}
    out = {}
    for k, v in zip(keys, tensors.values()):
        out["head." + k[len(clf) + 1:] if k.startswith(clf + ".") else "body." + k] = v
    return out


def _check_against(path: Path, state: dict, own: dict, arch: str, num_classes: int) -> None:
    """The refusals of mivis.weights.load_into, phrased for a foreign file."""
    missing = sorted(k for k in set(own) - set(state) if not k.endswith("num_batches_tracked"))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0].removeprefix('body.')})")
        if extra:
            parts.append(f"{len(extra)} unexpected (e.g. {extra[0].removeprefix('body.')})")
        raise WeightsError(f"{path}: weights do not match a {arch} classifier: " + "; ".join(parts)
                           + " (is it another architecture, or a different depth/width of it?)")
    w = state.get("head.weight")
    if w is not None and w.dim() == 2 and w.shape[0] != num_classes:
        raise WeightsError(f"{path}: the file's classifier has {w.shape[0]} outputs, but the data has "
                           f"{num_classes} classes (num_classes); allowed: the data's class count")
    for k, v in own.items():
        if k in state and tuple(v.shape) != tuple(state[k].shape):
            raise WeightsError(f"{path}: shape mismatch for {k.removeprefix('body.')}: file "
                               f"{tuple(state[k].shape)}, model {tuple(v.shape)} (check in_chans and input size)")


MAX_ABS_WEIGHT = 1e10  # no trained weight or statistic comes near this; 1e38 overflows the first matmul


def check_finite_weights(path, state: dict[str, torch.Tensor], params: set[str] | None = None) -> None:
    """Refuse weights no trained model has, before a run exists (import-model, the upload, the API): NaN
    anywhere, +-inf in a parameter (a buffer such as an attention mask may hold -inf on purpose), any
    magnitude above MAX_ABS_WEIGHT (1e38 passes as finite but overflows at once), and negative BatchNorm
    running variances (the square root of one is NaN at the first eval-mode forward). WeightsError names
    the tensor."""
    for k, v in state.items():
        if not torch.is_tensor(v) or not v.is_floating_point() or not v.numel():
            continue
        name = k.removeprefix("body.")
        v = v.detach()
        if bool(torch.isnan(v).any()):
            raise WeightsError(f"{path}: weights contain NaN (e.g. {name}); a model trained into NaN cannot be used")
        finite = torch.isfinite(v)
        if (params is None or k in params) and not bool(finite.all()):
            raise WeightsError(f"{path}: weights contain infinite values (e.g. {name}); a model trained into "
                               "overflow cannot be used")
        big = v[finite].abs().max() if bool(finite.any()) else None
        if big is not None and float(big) > MAX_ABS_WEIGHT:
            raise WeightsError(f"{path}: {name} holds {float(big):.3g}, beyond any trained weight (limit "
                               f"{MAX_ABS_WEIGHT:.0e}); the file is damaged or not a trained model")
        if k.endswith("running_var") and bool((v < 0).any()):
            raise WeightsError(f"{path}: {name} has negative BatchNorm variances (min {float(v.min()):.3g}); "
                               "a variance is never negative: the file is damaged")


def default_norm(arch: str, channels: int) -> tuple[list[float], list[float]]:
    """timm's mean/std for this architecture (its pretrained_cfg); 1 channel: their averages."""
    import timm
    timm_name = ARCHITECTURES.get(arch).meta["timm_name"]
    cfg = timm.models.get_pretrained_cfg(timm_name)
    d = cfg.to_dict() if cfg is not None else {}
    mean, std = list(d.get("mean") or (0.485, 0.456, 0.406)), list(d.get("std") or (0.229, 0.224, 0.225))
    if channels == 1:
        return [sum(mean) / len(mean)], [sum(std) / len(std)]
    return mean, std


CLASS_ORDER_RULES = {
    "split": "the data split's order (as `python -m mivis data` lists the private identities)",
    "sorted": "the private identities' names sorted (torchvision ImageFolder's order over a folder of them)",
}


def resolve_class_order(class_order, private: list[str]) -> list[str] | None:
    """A class order given as a rule ('split', 'sorted') or a list of names -> the list (None: the split's)."""
    if isinstance(class_order, str):
        rule = class_order.strip().lower()
        if rule not in CLASS_ORDER_RULES:
            raise ParamError(f"class order: {class_order!r} is not one of {', '.join(CLASS_ORDER_RULES)} "
                             "(or give the names: a file or a comma-separated list)")
        return None if rule == "split" else sorted(private)
    return class_order


def _class_permutation(class_order: list[str] | None, private: list[str]) -> list[int] | None:
    """perm[c] = the model output that means the split's class c (None: the split's own order)."""
    if class_order is None:
        return None
    order = [str(c).strip() for c in class_order]
    if len(order) != len(set(order)):
        dup = sorted({c for c in order if order.count(c) > 1})
        raise ParamError(f"class order: {', '.join(dup[:5])} listed twice")
    missing, extra = [c for c in private if c not in order], [c for c in order if c not in private]
    if missing or extra or len(order) != len(private):
        msg = []
        if missing:
            msg.append(f"the data's classes {', '.join(missing[:5])} are not in it")
        if extra:
            msg.append(f"{', '.join(extra[:5])} are not classes of the data")
        raise ParamError(f"class order: {'; '.join(msg) or 'wrong length'}; allowed: the data's {len(private)} "
                         f"private classes in the model's output order (e.g. {', '.join(private[:3])}, ...)")
    return [order.index(c) for c in private]


def read_class_order(text_or_path: str | None, allow_file: bool = True) -> list[str] | str | None:
    """A class order from a file (one name a line; CLI only), a comma-separated list, or a rule ('split',
    'sorted': see CLASS_ORDER_RULES, resolved against the data by prepare_import); None when not given."""
    if not text_or_path:
        return None
    if text_or_path.strip().lower() in CLASS_ORDER_RULES:  # a rule: 'split' or 'sorted'
        return text_or_path.strip().lower()
    p = Path(text_or_path).expanduser()
    if allow_file and "," not in text_or_path and p.is_file():
        names = [ln.strip() for ln in _class_order_text(p).splitlines() if ln.strip()]
    else:
        names = [c.strip() for c in text_or_path.split(",") if c.strip()]
    if not names:
        raise ParamError("class order: empty")
    return names


def _class_order_text(p: Path) -> str:
    """A class-order file's text; a binary, huge or unreadable file is one ParamError naming it."""
    try:
        if p.stat().st_size > 10 * 2**20:
            raise ParamError(f"class order: {p} is larger than 10 MiB; a list of class names is needed")
        text = p.read_bytes().decode("utf-8")
    except OSError as e:
        raise ParamError(f"class order: cannot read {p}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ParamError(f"class order: {p} is not a text file (one class name a line is needed)") from None
    if "\x00" in text:
        raise ParamError(f"class order: {p} is not a text file (one class name a line is needed)")
    return text


@torch.no_grad()
def confusion(model: Classifier, sub, num_classes: int) -> torch.Tensor:
    """conf[true class, predicted output] over one subset (CPU, batches of 128)."""
    from .data import sequential
    conf = torch.zeros(num_classes, num_classes, dtype=torch.long)
    for i, xb in zip(range(0, len(sub), 128), sequential(sub.x, 128, torch.device("cpu"))):
        pred = model(xb).argmax(1)
        conf.index_put_((sub.y[i:i + 128], pred), torch.ones_like(pred), accumulate=True)
    return conf


def order_check(conf: torch.Tensor) -> dict:
    """Accuracy, chance, and the accuracy of the best one-to-one relabelling of the outputs.

    Suspect = the number of correct predictions is not clearly above what guessing gives
    (one-sided binomial tail >= 1e-3), or the best relabelling is at least 25 points better."""
    from scipy.optimize import linear_sum_assignment
    from scipy.stats import binom
    k = conf.shape[0]
    n, correct = int(conf.sum()), int(conf.diag().sum())
    rows, cols = linear_sum_assignment(-conf.numpy())
    best = int(conf.numpy()[rows, cols].sum())
    chance = 1.0 / k
    p_value = float(binom.sf(correct - 1, n, chance)) if n else 1.0
    flagged = p_value >= 1e-3 or (best - correct) / max(n, 1) >= 0.25
    return {"acc": correct / n if n else float("nan"), "n": n, "chance": chance, "p_value": p_value,
            "relabelled_acc": best / n if n else float("nan"), "suspect": bool(flagged),
            "best_order": [int(c) for c in cols[rows.argsort()]]}


def prepare_import(weights: str | Path, arch: str, data_cfg: dict, *, num_classes: int | None = None,
                   img_size: int | None = None, in_chans: int | None = None, mean=None, std=None,
                   class_order: list[str] | None = None, role: str = "target"):
    """Validate everything and build the loaded model; nothing is written. Returns (model, mcfg, split, info)."""
    if role not in ROLES:
        raise ParamError(f"role: {role!r} is not one of {', '.join(ROLES)}")
    entry = ARCHITECTURES.get(arch)  # ParamError naming the allowed names (curated or any timm name)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    data_cfg = dict(data_cfg or {})
    if img_size is not None:
        data_cfg["image_size"] = int(img_size)
    if in_chans is not None:
        if in_chans not in (1, 3):
            raise ParamError(f"in_chans: {in_chans} is not allowed; choose 1 (grayscale) or 3 (RGB)")
        data_cfg["channels"] = int(in_chans)
    split = load_split(data_cfg)
    c, h, _ = split.image_shape
    if num_classes is not None and num_classes != split.num_classes:
        raise ParamError(f"num_classes: {num_classes} given, but the data has {split.num_classes} private classes "
                         f"({', '.join(split.private_names[:3])}, ...); allowed: {split.num_classes}")
    k = split.num_classes
    if mean is None or std is None:  # what timm's own data pipeline uses for this model (ImageNet's, mostly)
        mean, std = (list(mean) if mean is not None else default_norm(arch, c)[0],
                     list(std) if std is not None else default_norm(arch, c)[1])
    mean, std = [float(v) for v in mean], [float(v) for v in std]
    if len(mean) != c or len(std) != c:
        raise ParamError(f"mean/std: {len(mean)} and {len(std)} values given for {c}-channel input; "
                         f"give {c} each (e.g. {'0.485,0.456,0.406' if c == 3 else '0.5'})")
    if any(not math.isfinite(s) or s <= 0 for s in std) or any(not math.isfinite(m) for m in mean):
        raise ParamError("std: every value must be a positive number; mean: finite numbers")
    order_rule = class_order.strip().lower() if isinstance(class_order, str) else None
    class_order = resolve_class_order(class_order, split.private_names)
    perm = _class_permutation(class_order, split.private_names)
    tensors, meta = load_tensors(path)  # sniffs: pickles / zips / truncated files refused by name
    if not tensors:
        raise WeightsError(f"{path}: the safetensors file holds no tensors")
    mcfg = {"arch": arch, "arch_params": {}, "num_classes": k, "in_chans": c, "img_size": h, "defenses": {},
            "input_norm": {"mean": mean, "std": std, "in_chans": c}}
    from .pretrained import file_sha256
    mcfg["import_sha256"] = file_sha256(path)
    model = model_from_config(mcfg).eval()
    state = map_state(tensors, classifier_name(arch, k, c, h))
    own = model.state_dict()
    _check_against(path, state, own, arch, k)
    check_finite_weights(path, state, {n for n, _ in model.named_parameters()})
    state = {key: v.to(own[key].dtype) for key, v in state.items()}
    if perm is not None:  # head rows in the split's class order: split class c <- model output perm[c]
        for key in ("head.weight", "head.bias"):
            if key in state:
                state[key] = state[key][perm].clone()
    for key, v in own.items():  # a file without BN step counters (some exporters drop them)
        state.setdefault(key, v) if key.endswith("num_batches_tracked") else None
    model.load_state_dict(state, strict=True)
    info = {"file": str(path.resolve()), "sha256": mcfg["import_sha256"], "file_metadata_arch": meta.get("arch"),
            "class_order": class_order or split.private_names, "class_order_given": class_order is not None,
            "class_order_rule": order_rule or ("names" if class_order is not None else "split"),
            "mean": mean, "std": std, "perm": perm}
    return model, mcfg, split, info


class ImportFlagged(ParamError):
    """The model's held-out accuracy is near chance: nothing was imported. `metrics` holds what was measured
    (natural_acc, chance, relabelled_acc, suggested_order: the class order that would give relabelled_acc)."""

    def __init__(self, message: str, metrics: dict):
        super().__init__(message)
        self.metrics = metrics


def measure_import(model: Classifier, split, info: dict) -> dict:
    """Held-out and training-image accuracy of a prepared import, and the class-order check (no run)."""
    c_test, c_train = confusion(model, split.test, split.num_classes), confusion(model, split.train, split.num_classes)
    test, train = order_check(c_test), order_check(c_train)
    both = order_check(c_test + c_train)  # more images for the order check
    # a model that learned the training images but not the held-out ones is not mis-ordered
    suspect = test["suspect"] and both["suspect"]
    metrics = {"natural_acc": test["acc"], "train_acc": train["acc"],
               "chance": test["chance"], "relabelled_acc": both["relabelled_acc"],
               "order_check": "classes probably mis-ordered" if suspect else "ok",
               "params": count_params(model), "trainable_params": count_params(model), "imported": True,
               "device": "cpu"}
    if suspect:  # file output perm[best_order[c]] behaves like class c
        perm = info["perm"] or list(range(split.num_classes))
        suggested = [None] * split.num_classes
        for c, o in enumerate(both["best_order"]):
            suggested[perm[o]] = split.private_names[c]
        metrics["suggested_order"] = suggested
        metrics["suggested_rule"] = _rule_that_fits(c_test + c_train, info, split.private_names,
                                                    both["relabelled_acc"], both["acc"])
    return metrics


def _rule_that_fits(conf: torch.Tensor, info: dict, private: list[str], best: float, given: float) -> str | None:
    """The class-order rule ('split' or 'sorted') under which the model is about as accurate as its best
    relabelling (within 10 points) and clearly better than the order given (25 points); None if neither.
    A model trained on sorted names is recognised so even when it confuses a few classes (the best
    relabelling then swaps those, and no longer equals the sorted list)."""
    n = int(conf.sum())
    if not n:
        return None
    perm = info["perm"] or list(range(len(private)))
    where = {o: c for c, o in enumerate(perm)}  # file output o -> the model output (row of conf's columns)
    out = []
    for rule, names in (("split", private), ("sorted", sorted(private))):
        cols = [where[names.index(private[c])] for c in range(len(private))]
        acc = float(conf[torch.arange(len(private)), torch.tensor(cols)].sum()) / n
        if acc >= best - 0.10 and acc >= given + 0.25:
            out.append((acc, rule))
    return max(out)[1] if out else None


def import_model(weights: str | Path, arch: str, data_cfg: dict | None = None, *, role: str = "target",
                 num_classes: int | None = None, img_size: int | None = None, in_chans: int | None = None,
                 mean=None, std=None, class_order: list[str] | str | None = None,
                 workspace: Workspace | None = None, reporter: Reporter = NULL, name: str = "", seed: int = 0,
                 keep_flagged: bool = False) -> RunRecord:
    """Validate, measure, then store the imported classifier as a finished `role` run.

    Everything, the measurement included, happens before the run exists: a refused file (WeightsError) or a
    model flagged "classes probably mis-ordered" (ImportFlagged, with the suggested order) leaves no run,
    unless keep_flagged stores the flagged model anyway (its metrics say so)."""
    ws = workspace or Workspace()
    model, mcfg, split, info = prepare_import(weights, arch, data_cfg, num_classes=num_classes, img_size=img_size,
                                              in_chans=in_chans, mean=mean, std=std, class_order=class_order,
                                              role=role)
    reporter.report(force=True, phase="measure", n_test=len(split.test), n_train=len(split.train))
    metrics = measure_import(model, split, info)
    if metrics["order_check"] != "ok" and not keep_flagged:
        raise ImportFlagged(flagged_message(metrics, cli=True) + "; nothing was imported", metrics)
    config = {"role": role, "train": {"arch": arch, "seed": seed, "imported": True}, "data": split.config,
              "model": mcfg, "imported": info}
    run = ws.create(role, config, seed=seed, data_fingerprint=split.fingerprint,
                    name=name or f"{role} {arch} (imported)")
    try:
        run.write_json("split.json", split.record())
        run.save_weights(model.state_dict(), {"arch": arch, "model_config": mcfg, "run": run.id})
        run.finish(metrics)
    except BaseException as e:
        run.fail_from(e)
        raise
    return run.record()


def flagged_message(metrics: dict, cli: bool = True) -> str:
    """One line: why the import is flagged and the class order to give instead (CLI flag or app words)."""
    rule, names = metrics.get("suggested_rule"), metrics.get("suggested_order") or []
    if rule == "split":
        fix = ("import again with --class-order split" if cli else
               "import again with the class order 'the split's order'") + " (the order mivis lists the data's " \
            "private identities in, the default)"
    elif rule == "sorted":
        fix = ("import again with --class-order sorted" if cli else
               "import again with the class order 'sorted names'") + " (the model was trained on sorted names, " \
            "e.g. torchvision ImageFolder's order)"
    elif names and len(names) <= 60 and cli:
        fix = f"import again with --class-order {','.join(names)}"
    elif names:
        fix = "import again with the suggested order" + (" (--keep-flagged stores the run with it in its metrics)"
                                                         if cli else "")
    else:
        fix = "give the class order the model was trained with"
    return (f"classes probably mis-ordered: held-out accuracy {metrics['natural_acc']:.1%} is near chance "
            f"({metrics['chance']:.1%}); the best one-to-one relabelling of the outputs would give "
            f"{metrics['relabelled_acc']:.1%}: {fix}")


def order_warning(metrics: dict) -> str | None:
    if metrics.get("order_check") != "classes probably mis-ordered":
        return None
    return (f"classes probably mis-ordered: held-out accuracy {metrics['natural_acc']:.1%} is near chance "
            f"({metrics['chance']:.1%}); the best one-to-one relabelling of the outputs would give "
            f"{metrics['relabelled_acc']:.1%} on this data. Give the class order the model was trained with "
            f"(--class-order), e.g. the suggested one stored in the run's metrics.")


def export_timm(ws: Workspace, run_id: str, out: str | Path) -> Path:
    """A mivis classifier run as a safetensors file in timm's own layout (head -> timm's classifier)."""
    from .train import load_classifier
    out = Path(out).expanduser()
    if not out.name or out.is_dir():
        raise ParamError(f"{out} is a folder; name the .safetensors file to write")
    model, rec = load_classifier(ws, run_id)
    mcfg = rec.config["model"]
    if mcfg.get("defenses"):
        raise ParamError(f"run {run_id} has defenses ({', '.join(mcfg['defenses'])}) that change its structure "
                         "or forward; only plain classifiers export to timm's layout")
    clf = classifier_name(mcfg["arch"], mcfg["num_classes"], (mcfg.get("input_norm") or mcfg)["in_chans"],
                          mcfg["img_size"])
    state = {}
    for k, v in model.state_dict().items():
        state[clf + k[4:] if k.startswith("head.") else k.removeprefix("body.")] = v
    try:
        save_weights(out, state, {"arch": ARCHITECTURES.get(mcfg["arch"]).meta["timm_name"], "exported_from": run_id})
    except OSError as e:  # e.g. a name too long, a read-only folder: one line
        raise ParamError(f"cannot write {str(out)[:200]}: {e.strerror or e}") from None
    return out
