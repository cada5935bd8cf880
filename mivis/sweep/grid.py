"""Grid files: a base configuration and one or more grids whose product gives the trials.

TOML (or JSON) layout::

    name = "rolss"
    [base]                       # every trial starts from this
    data = { image_size = 32 }
    target = { arch = "resnet18", epochs = 30, defenses = {} }
    eval = { arch = "vgg11", epochs = 30, lr = 0.001 }
    public = { arch = "resnet18", epochs = 30 }       # only used by targets with init = "public"
    prior = { shipped = "orl32-gmi" }                 # or { type = "gmi", preset = "cpu" }
    attack = { name = "gmi", iterations = 300, restarts = 20, seed = 0 }
    analyses = ["layers"]
    [[grids]]                    # the trials are the union over grids of each grid's product
    "target.seed" = [0, 1, 2]
    "target.defenses" = [{}, { skips = { scales = [1, 1, 1, 0] } }]
    variant = [{ attack = { name = "gmi" } }, { attack = { name = "kedmi" }, prior = { type = "kedmi" } }]

A dotted key sets that path; `variant` deep-merges its dict at the root (to vary several things
together). `target.defenses` and `prior` are replaced whole, not merged.

An existing run as the target (e.g. one imported with `python -m mivis import-model`), instead of
training one::

    target = { run = "RUN_ID" }                   # in [base], in a variant, or "target.run" = [...] in a grid

Nothing is trained for it: the grid's attacks, priors (KEDMI/PLG-MI) and analyses use that run. A
target naming a run takes no other keys (its architecture, defenses and seed are the run's own), and
it replaces the whole target table where it is set. Before any step runs the run must exist in the
workspace, be a finished target, and have been trained (or imported) on exactly the grid's data
(same split and image size); the grid's eval model is trained on that data as usual.
"""
from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path

from ..params import ParamError

SECTIONS = ("data", "target", "eval", "public", "prior", "attack", "analyses", "layers")
REPLACE_WHOLE = {("target", "defenses"), ("prior",)}  # replaced, not merged


def load_grid(path: str | Path) -> dict:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ParamError(f"cannot read grid file {p}: {e.strerror or e}") from None
    try:
        if p.suffix == ".json":
            grid = json.loads(text)
        else:
            import tomllib
            grid = tomllib.loads(text)
    except ValueError as e:
        raise ParamError(f"grid file {p} is not valid {'JSON' if p.suffix == '.json' else 'TOML'}: {e}") from None
    grid.setdefault("name", p.stem)
    unknown = set(grid) - {"name", "base", "grids", "description"}
    if unknown:
        raise ParamError(f"grid file {p}: unknown top-level key(s) {', '.join(sorted(unknown))}; "
                         "allowed: name, description, base, grids")
    bad = set(grid.get("base", {})) - set(SECTIONS)
    if bad:
        raise ParamError(f"grid file {p}: unknown base section(s) {', '.join(sorted(bad))}; "
                         f"allowed: {', '.join(SECTIONS)}")
    return grid


def names_run(target) -> bool:
    """Whether a target table names an existing run (`target = { run = "RUN_ID" }`)."""
    return isinstance(target, dict) and "run" in target


def _merge(dst: dict, src: dict, path: tuple = ()) -> dict:
    for k, v in src.items():
        whole = (*path, k) in REPLACE_WHOLE or ((*path, k) == ("target",) and names_run(v))
        if isinstance(v, dict) and isinstance(dst.get(k), dict) and not whole:
            _merge(dst[k], v, (*path, k))
        else:
            dst[k] = copy.deepcopy(v)
    return dst


def _set(trial: dict, key: str, value) -> None:
    if key == "variant":
        if not isinstance(value, dict):
            raise ParamError(f"grid key 'variant' takes tables (dicts), got {value!r}")
        _merge(trial, value)
        return
    parts = key.split(".")
    if parts[0] not in SECTIONS:
        raise ParamError(f"grid key {key!r}: its first part must be one of {', '.join(SECTIONS)} or 'variant'")
    if parts == ["target", "run"]:  # an existing run replaces the whole target table
        trial["target"] = {"run": copy.deepcopy(value)}
        return
    node = trial
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = copy.deepcopy(value)


def expand(grid: dict) -> list[dict]:
    """All trials (deduplicated, in grid order), each a full configuration dict."""
    base = grid.get("base", {})
    grids = grid.get("grids") or [{}]
    trials, seen = [], set()
    for g in grids:
        keys = list(g)
        for k in keys:
            if not isinstance(g[k], list) or not g[k]:
                raise ParamError(f"grid key {k!r} must be a non-empty list of values")
        for combo in itertools.product(*(g[k] for k in keys)):
            t = copy.deepcopy(base)
            for k, v in zip(keys, combo):
                _set(t, k, v)
            sig = json.dumps(t, sort_keys=True)
            if sig not in seen:
                seen.add(sig)
                trials.append(t)
    return trials


def defense_label(defenses: dict) -> str:
    """A short human label: 'none', 'skips[1,1,1,0]', 'tldmi[freeze=8]+skips[...]'."""
    if not defenses:
        return "none"
    parts = []
    for name, p in sorted(defenses.items()):
        if not p:
            parts.append(name)
        elif set(p) == {"scales"}:
            parts.append(f"{name}[{','.join(f'{s:g}' for s in p['scales'])}]")
        else:
            parts.append(f"{name}[{','.join(f'{k}={v}' for k, v in sorted(p.items()))}]")
    return "+".join(parts)
