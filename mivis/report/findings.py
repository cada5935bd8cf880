"""The study report (docs/findings.md + SVG figures), generated from sweep summaries in a workspace.

Trials are grouped by (image size, architecture, attack with its settings, defense, init); seeds are
pooled.
Every attack metric carries a 95% identity-bootstrap interval; every defended configuration is
compared with the undefended one of the same architecture and attack, paired by seed and
identity, and the comparison is called an effect only when its interval excludes 0.
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from ..evaluation.agreement import ratio
from ..evaluation.bootstrap import bootstrap_mean, paired_difference
from ..models import same_architecture
from ..runs import Workspace
from ..sweep import load_summary
from . import svg
from .paper import PAPER_TABLE

N_BOOT = 2000


def _rows(ws: Workspace, attack_run: str) -> list[dict]:
    return ws.get(attack_run).read_json("evaluation.json")["per_reconstruction"]  # DamagedRun: named


DLIB = "top1@dlib"  # the independent judge's per-reconstruction verdict (mivis.evaluation.dlib_judge)


def _has(ws, runs: list[str], field: str) -> bool:
    """Every reconstruction of these runs has this verdict (dlib's is added by `evaluate rejudge --dlib`)."""
    return bool(runs) and all(rows and all(field in r for r in rows) for rows in (_rows(ws, r) for r in runs))


def _pool(ws, runs: list[str], field: str):
    vals, groups = [], []
    for r in runs:
        for row in _rows(ws, r):
            vals.append(float(row[field]))
            groups.append(row["identity"])
    return np.asarray(vals), np.asarray(groups)


def _t95(n: int) -> float:
    table = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23}
    return table.get(n, 2.0)


# attack parameters that change how fast or on what an attack runs, not what it does
_RUN_SETTINGS = {"identities", "device", "batch_size", "amp", "compile", "channels_last"}


def attack_labels(ws: Workspace, attacks: list, pool_seeds: bool = False) -> list[str]:
    """Each attack run's (RunRecord's) name, plus the settings in which it differs from the most common
    setting of that attack among these runs: GMI with 50 iterations must not be pooled with GMI with 100.
    pool_seeds: runs that differ only in their seed are replicates of one attack (the Trade-off page's
    points); a study keeps them apart (a replication with new pools is its own row)."""
    prior_types: dict[str, str | None] = {}  # a few priors serve many attacks: look each up once
    skip = _RUN_SETTINGS | ({"seed"} if pool_seeds else set())

    def settings(rec) -> dict:
        out = {k: v for k, v in rec.config["attack"]["params"].items() if k not in skip}
        pid = rec.config.get("prior_run")
        if pid:
            if pid not in prior_types:
                prior_types[pid] = ws.get(pid).config.get("type") if ws.exists(pid) else None
            if prior_types[pid] is not None:
                out["prior"] = prior_types[pid]
        return out

    names = [rec.config["attack"]["name"] for rec in attacks]
    keyed = [json.dumps(settings(rec), sort_keys=True) for rec in attacks]
    by_name: dict[str, list[str]] = defaultdict(list)
    for n, k in zip(names, keyed):
        by_name[n].append(k)
    # the most common setting; a tie goes to the one seen first (Counter keeps insertion order; max over a set
    # depended on string hashing, so the labels changed from one process to the next)
    usual = {n: json.loads(Counter(v).most_common(1)[0][0]) for n, v in by_name.items()}
    labels = []
    for n, k in zip(names, keyed):
        st, base = json.loads(k), usual[n]
        diff = [f"{key}={st[key]}" for key in sorted(st) if st[key] != base.get(key)]
        labels.append(n + (f"[{','.join(diff)}]" if diff else ""))
    return labels


def collect(ws: Workspace, sweeps: list[str]) -> dict:
    groups: dict[tuple, dict] = defaultdict(lambda: {"seeds": {}})
    trials = [t for name in sweeps for t in load_summary(ws, name)["trials"] if t["complete"]]
    for t, attack in zip(trials, attack_labels(ws, [ws.get(t["runs"]["attack"]) for t in trials])):
        key = (t["image_size"], t["arch"], attack, t["defense"], t.get("init") or "")
        seen = groups[key]["seeds"].get(t["seed"])
        if seen and seen["attack"] != t["runs"]["attack"]:
            raise ValueError(f"two different trials for {key} seed {t['seed']}: the report would pool them")
        groups[key]["seeds"][t["seed"]] = t["runs"]
    return groups


MIN_LEARNED_ACC = 0.5  # below this a target has not learned its task: its attack numbers say nothing


def reference_key(key: tuple, groups: dict) -> tuple:
    """The undefended group a row is compared with: a pre-trained target's defense with the undefended
    target of the same start where there is one, anything else with the one trained from scratch."""
    size, arch, attack, defense, init = key
    same_start = (size, arch, attack, "none", init)
    return same_start if init and defense != "none" and same_start in groups else (size, arch, attack, "none", "")


def summarise(ws: Workspace, groups: dict) -> list[dict]:
    out = []
    for key, g in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], kv[0][3] != "none", kv[0][3])):
        size, arch, attack, defense, init = key
        seeds = sorted(g["seeds"])
        attacks = [g["seeds"][s]["attack"] for s in seeds]
        accs = [ws.get(g["seeds"][s]["target"]).metrics["natural_acc"] for s in seeds]
        row = {"image_size": size, "arch": arch, "attack": attack, "defense": defense, "init": init,
               "seeds": seeds, "natural_acc": float(np.mean(accs)), "natural_acc_seeds": accs,
               "trainable_params": ws.get(g["seeds"][seeds[0]]["target"]).metrics.get("trainable_params"),
               "did_not_learn": float(np.mean(accs)) < MIN_LEARNED_ACC}
        for metric, field in (("top1", "eval_top1"), ("top5", "eval_top5"), ("knn", "knn_dist"),
                              ("p_target", "p_target")):
            v, grp = _pool(ws, attacks, field)
            row[metric] = bootstrap_mean(v, grp, N_BOOT, 0)
        if _has(ws, attacks, DLIB):
            v, grp = _pool(ws, attacks, DLIB)
            e, _ = _pool(ws, attacks, "eval_top1")
            row["top1_dlib"] = bootstrap_mean(v, grp, N_BOOT, 0)
            # of E's 'correct' verdicts, the share dlib calls another person
            row["e_false_positive_dlib"] = ratio((e > 0) & (v == 0), e > 0, grp, N_BOOT, 0)
        ref = groups.get(reference_key(key, groups))
        if defense != "none" or init:
            row["vs_none"] = _paired(ws, g, ref) if ref else None
        out.append(row)
    return out


def _paired(ws, g: dict, ref: dict) -> dict | None:
    common = sorted(set(g["seeds"]) & set(ref["seeds"]))
    if not common:
        return None
    a = [g["seeds"][s]["attack"] for s in common]
    b = [ref["seeds"][s]["attack"] for s in common]
    va, ga = _pool(ws, a, "eval_top1")
    vb, gb = _pool(ws, b, "eval_top1")
    d = paired_difference(vb, gb, va, ga, N_BOOT, 0)  # reference - defended: positive = less leakage
    per_seed = [float(_pool(ws, [bs], "eval_top1")[0].mean() - _pool(ws, [as_], "eval_top1")[0].mean())
                for as_, bs in zip(a, b)]
    acc_a = [ws.get(g["seeds"][s]["target"]).metrics["natural_acc"] for s in common]
    acc_b = [ws.get(ref["seeds"][s]["target"]).metrics["natural_acc"] for s in common]
    n = len(per_seed)
    m = float(np.mean(per_seed))
    # two seeds give a t-interval on one degree of freedom (and equal drops a zero-width one): 3 at least
    half = _t95(n - 1) * float(np.std(per_seed, ddof=1)) / math.sqrt(n) if n >= 3 else float("nan")
    acc_drop = float(np.mean(acc_b) - np.mean(acc_a))
    out = {"seeds": common, "drop": d, "per_seed": per_seed, "seed_interval": [m - half, m + half],
           "acc_drop": acc_drop, "delta": (d["value"] / acc_drop) if acc_drop > 1e-9 else None}
    if _has(ws, a, DLIB) and _has(ws, b, DLIB):  # the same paired drop under the independent judge
        va, ga = _pool(ws, a, DLIB)
        vb, gb = _pool(ws, b, DLIB)
        out["drop_dlib"] = paired_difference(vb, gb, va, ga, N_BOOT, 0)
    return out


def _pct(m: dict | None) -> str:
    if not m or m.get("value") is None:
        return "-"
    return f"{100 * m['value']:.1f} [{100 * m['lo']:.1f}, {100 * m['hi']:.1f}]"


def drop_ci(d: dict) -> str:
    """A paired drop's interval as '[+15.0, +31.3]' (percentage points)."""
    return f"[{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}]"


def drop_interval(d: dict) -> str:
    """A paired drop as '+23.3 [+15.0, +31.3]' (percentage points)."""
    return f"{100 * d['value']:+.1f} {drop_ci(d)}"


def drop_direction(d: dict) -> str:
    """'leaks less' / 'leaks MORE' for a resolved paired drop, else 'not resolved'."""
    if not d["resolved"]:
        return "not resolved"
    return "leaks less" if d["value"] > 0 else "leaks MORE"


def _verdict(c: dict | None, row: dict | None = None, judge: str = "drop") -> str:
    if not c or not c.get(judge):
        return "-"
    if row and row.get("did_not_learn"):
        return f"target did not learn (natural acc {100 * row['natural_acc']:.1f}%): no privacy finding"
    d = c[judge]
    word = "resolved" if d["resolved"] else "not resolved"
    return f"{100 * d['value']:+.1f} pp [{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}] {word}"


def _defense_cell(r: dict) -> str:
    return r["defense"] + (" (public init)" if r.get("init") else "")


def table(rows: list[dict]) -> str:
    head = ("| size | arch | attack | defense | seeds | natural acc % | attack acc top-1 % [95% CI] | top-5 % | "
            "dlib top-1 % [95% CI] | KNN dist | AttAcc drop vs none (paired; negative = leaks more) | "
            "drop under dlib | seed-level interval | Delta |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        c = r.get("vs_none")
        seed_iv = "-" if not c or r["did_not_learn"] or any(map(math.isnan, c["seed_interval"])) else \
            f"[{100 * c['seed_interval'][0]:+.1f}, {100 * c['seed_interval'][1]:+.1f}]"
        delta = "-" if not c or c["delta"] is None or r["did_not_learn"] else f"{c['delta']:.2f}"
        knn = r["knn"]["value"]
        lines.append(f"| {r['image_size']} | {r['arch']} | {r['attack']} | {_defense_cell(r)} | "
                     f"{len(r['seeds'])} | {100 * r['natural_acc']:.1f} | "
                     f"{_pct(r['top1'])} | {_pct(r['top5'])} | {_pct(r.get('top1_dlib'))} | {knn:.1f} | "
                     f"{_verdict(c, r)} | {'-' if r['did_not_learn'] else _verdict(c, r, 'drop_dlib')} | "
                     f"{seed_iv} | {delta} |")
    return head + "\n".join(lines) + "\n"


# the paper's defense names as this project's defense labels (SSF: the paper's scale per family)
_PAPER_DEFENSES = {"none": "none", "RoLSS": "skips[1,1,1,0]", "TTS": "tts[switch_epoch=5]", "BiDO": "bido"}


def _paper_defense(arch: str, defense: str) -> str:
    if defense == "SSF":
        return "skips[1,1,1,0.01]" if arch.startswith("densenet") else "skips[1,1,1,0.2]"
    return _PAPER_DEFENSES[defense]


def _agreement(r: dict) -> str:
    """Does this row go the paper's way (every paper defense lowers attack accuracy)?"""
    c = r.get("vs_none")
    if r["defense"] == "none":
        return "-"
    if r["did_not_learn"]:
        return "no: the target did not learn"
    if not c:
        return "no undefended run to compare"
    d = c["drop"]
    if not d["resolved"]:
        return "not resolved here"
    return "yes: leaks less" if d["value"] > 0 else "NO: leaks more"


def paper_side_by_side(rows: list[dict]) -> str:
    """The paper's table with this study's matching rows beside it (one line per attack and size)."""
    head = ("| Arch | Defense | paper Acc | paper AttAcc | paper Delta | here: attack, px, seeds | Acc | "
            "AttAcc top-1 [95% CI] | Delta | same direction as the paper? |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for arch_name, defense, acc, att, delta in PAPER_TABLE:
        arch = arch_name.lower().replace("-", "")
        label = _paper_defense(arch, defense)
        ours = [r for r in rows if same_architecture(r["arch"], arch) and r["defense"] == label and not r["init"]]
        paper = f"| {arch_name} | {defense} | {acc} | {att} | {delta} |"
        if not ours:
            lines.append(paper + " not run | - | - | - | - |")
        for r in ours:
            c = r.get("vs_none")
            d = "-" if not c or c["delta"] is None or r["did_not_learn"] else f"{c['delta']:.2f}"
            lines.append(f"{paper} {r['attack']}, {r['image_size']}, {len(r['seeds'])} | "
                         f"{100 * r['natural_acc']:.1f} | {_pct(r['top1'])} | {d} | {_agreement(r)} |")
    return head + "\n".join(lines) + "\n"


def _file_name(name: str) -> str:
    """A figure file name safe in a Markdown link and on any file system: gmi[iterations=50] -> gmi-iterations-50."""
    return re.sub(r"-+(?=[_.])", "", re.sub(r"[^A-Za-z0-9_.-]+", "-", name))


def figures(ws: Workspace, groups: dict, rows: list[dict], fig_dir: Path) -> list[tuple[str, str]]:
    from ..evaluation.metrics import histogram
    fig_dir.mkdir(parents=True, exist_ok=True)
    made = []
    by = defaultdict(list)
    for r in rows:
        by[(r["image_size"], r["arch"], r["attack"])].append(r)
    for (size, arch, attack), rs in by.items():
        name = _file_name(f"attack_acc_{arch}_{attack}_{size}px.svg")
        (fig_dir / name).write_text(svg.bars(
            [r["defense"] + (" (pub)" if r["init"] else "") for r in rs], [r["top1"]["value"] for r in rs],
            [r["top1"]["lo"] for r in rs], [r["top1"]["hi"] for r in rs],
            title=f"{attack} on {arch} ({size} px): top-1 attack accuracy, 95% CI", ylabel="attack accuracy",
            ymax=1.0))
        made.append((name, f"Top-1 attack accuracy per defense, {arch}, {attack}, {size} px"))
        full = groups.get((size, arch, attack, "none", ""))
        cut = [k for k in groups if k[:3] == (size, arch, attack) and k[3].startswith("skips[") and
               k[3].endswith(",0]") and not k[4]]
        if full and cut:
            series = []
            for label, g in (("full", full), (cut[0][3], groups[cut[0]])):
                runs = [g["seeds"][s]["attack"] for s in sorted(g["seeds"])]
                p, _ = _pool(ws, runs, "p_target")
                c, _ = _pool(ws, runs, "eval_top1")
                h = histogram(p, c.astype(bool))
                series += [(f"{label}: judged correct", h["correct"]), (f"{label}: judged wrong", h["wrong"])]
            name = _file_name(f"likelihood_{arch}_{attack}_{size}px.svg")
            (fig_dir / name).write_text(svg.histograms(h["edges"], series, title=f"p_T(y|x*) by evaluation verdict, "
                                                       f"{arch} {attack} {size} px", xlabel="target likelihood",
                                                       density=False))
            made.append((name, f"Target-likelihood histograms, full vs {cut[0][3]} ({arch}, {attack}, {size} px)"))
    return made


def fisher_section(ws: Workspace, groups: dict, fig_dir: Path) -> tuple[str, list[tuple[str, str]]]:
    text, made = [], []
    for key, g in sorted(groups.items()):
        size, arch, attack, defense, init = key
        layer_runs = [g["seeds"][s].get("layers") for s in sorted(g["seeds"]) if g["seeds"][s].get("layers")]
        if not layer_runs or defense != "none" or init:
            continue
        data = [ws.get(r).read_json("layers.json") for r in layer_runs]
        cls = np.mean([[r["normalised"] for r in d["classification"]] for d in data], axis=0)
        mi = np.mean([[r["normalised"] for r in d["mi_final"]] for d in data], axis=0)
        half = len(cls) // 2
        text.append(f"- {arch} ({size} px, {attack}, {len(data)} seed(s), {len(cls)} layer groups): "
                    f"classification FI in the first half of the layers {100 * cls[:half].sum():.1f}%, "
                    f"MI FI {100 * mi[:half].sum():.1f}%; last layer group: classification "
                    f"{100 * cls[-1]:.1f}%, MI {100 * mi[-1]:.1f}%.")
        name = _file_name(f"fisher_{arch}_{attack}_{size}px.svg")
        (fig_dir / name).write_text(svg.lines(data[0]["layers"], [("classification FI", list(cls)),
                                                                   ("MI FI (attack loss)", list(mi))],
                                              title=f"Normalised Fisher information per layer, {arch}",
                                              ylabel="share of FI", log=True))
        made.append((name, f"Fisher information per layer, classification vs MI ({arch}, {size} px)"))
    return "\n".join(text), made


def _compute_seconds(ws: Workspace, sweeps: list[str]) -> float:
    """Wall time of every run the sweeps used (created -> finished), each counted once."""
    ids = {r for s in sweeps for t in load_summary(ws, s)["trials"] for r in t["runs"].values() if r}
    total = 0.0
    for rid in ids:
        rec = ws.get(rid)
        if rec.finished:
            total += rec.finished - rec.created
    return total


def _multiplicity(rows: list[dict]) -> str:
    n = sum(1 for r in rows if r.get("vs_none"))
    return (f"The report makes {n} paired comparisons, each with its own 95% interval and no correction for "
            f"multiplicity: about {n / 20:.1f} of them may exclude 0 by chance alone. An effect whose seed-level "
            "interval also excludes 0, or that repeats across architectures, attacks or the CPU and GPU studies, "
            "is the one to trust.")


def _regime(ws: Workspace, groups: dict) -> str:
    """Why this data may not show what the paper shows: its sizes next to the paper's."""
    splits, sizes, attacks = {}, sorted({k[0] for k in groups}), sorted({k[2].split("[")[0] for k in groups})
    for g in groups.values():
        rec = ws.get(next(iter(g["seeds"].values()))["target"])
        try:
            sp = json.loads(rec.file("split.json").read_text())
        except (OSError, ValueError):
            continue
        splits[sp["config"]["dataset"]] = sp
    if not splits:
        return ""
    data = "; ".join(f"{name}: {len(sp['private'])} private identities with {sp['n_train'] / len(sp['private']):.0f} "
                     f"training images each, priors trained on {sp['n_public']} public images"
                     for name, sp in splits.items())
    return (f"Why a row may differ from the paper: here {data}, at {', '.join(map(str, sizes))} px, attacked with "
            f"{', '.join(attacks)}; the paper: 530 FaceScrub identities at 224 px, PPA with a StyleGAN2 prior "
            "trained on FFHQ. A row that is not resolved says that this data cannot tell the defense from none, "
            "not that the paper is wrong; a row that goes the other way is a finding about this regime.")


def independent_judge(rows: list[dict]) -> str:
    """Where E and dlib disagree, and whether each paired effect under E holds under dlib."""
    judged = [r for r in rows if r.get("top1_dlib")]
    if not judged:
        return ("No attack run behind this report has the independent judge's verdicts yet. Add them without "
                "retraining (`python -m mivis evaluate rejudge --dlib` judges every stored attack run with dlib's "
                "face embedding; requirements-judge.txt) and generate the report again.")
    out = [f"{len(judged)} of {len(rows)} rows have dlib's verdicts (1-NN in dlib's face embedding over the "
           "private training images; it never trained on them, unlike E and the target). E's false-positive share "
           "is the share of E's *correct* verdicts that dlib calls another person, 95% interval over identities.", "",
           "| size | arch | attack | defense | top-1 under E % | top-1 under dlib % | E's false-positive share % | "
           "effect under E | effect under dlib | holds? |", "|---|---|---|---|---|---|---|---|---|---|"]
    holds, lost, flipped = [], [], []
    for r in judged:
        c = r.get("vs_none") or {}
        verdict = "-"
        if c.get("drop") and c.get("drop_dlib") and not r["did_not_learn"]:
            d, dd = c["drop"], c["drop_dlib"]
            if not d["resolved"]:
                verdict = "not resolved under E"
            elif dd["resolved"] and (dd["value"] > 0) == (d["value"] > 0):
                verdict = "yes"
                holds.append(r)
            elif dd["resolved"]:
                verdict = "NO: the opposite under dlib"
                flipped.append(r)
            else:
                verdict = "no: not resolved under dlib"
                lost.append(r)
        out.append(f"| {r['image_size']} | {r['arch']} | {r['attack']} | {_defense_cell(r)} | {_pct(r['top1'])} | "
                   f"{_pct(r['top1_dlib'])} | {_pct(r.get('e_false_positive_dlib'))} | {_verdict(c, r)} | "
                   f"{_verdict(c, r, 'drop_dlib')} | {verdict} |")
    resolved_e = len(holds) + len(lost) + len(flipped)
    out += ["", f"Of the {resolved_e} effects resolved under E that dlib also judged, {len(holds)} hold under dlib "
            f"(resolved, same direction), {len(lost)} are not resolved under dlib and {len(flipped)} go the other way."
            + (" Effects that do not hold: " + "; ".join(f"{r['arch']} {r['attack']} {r['image_size']} px "
                                                       f"{_defense_cell(r)}" for r in lost + flipped) + "."
               if lost or flipped else "")]
    return "\n".join(out)


def check_out(out: Path) -> None:
    """Refuse, before anything is computed, a report path that is a folder or whose figures/ or findings.json
    beside it cannot be written (ParamError, one line)."""
    from ..params import ParamError
    out = Path(out)
    if out.is_dir():
        raise ParamError(f"--out {out} is a folder; name the markdown file to write (e.g. {out / 'findings.md'})")
    if out.suffix.lower() == ".json":
        raise ParamError(f"--out {out}: the report is markdown (e.g. findings.md); its findings.json is written "
                         "beside it")
    for p, want in ((out.parent, "a folder"), (out.parent / "figures", "a folder"),
                    (out.parent / (out.stem + ".json"), "a file")):
        if p.exists() and p.is_dir() != (want == "a folder"):
            raise ParamError(f"--out {out}: {p} is in the way (it must be {want})")


def build_report(ws: Workspace, sweeps: list[str], out: Path, title: str = "What mivis finds on the embedded ORL data",
                 notes: str = "") -> Path:
    check_out(out)
    groups = collect(ws, sweeps)
    rows = summarise(ws, groups)
    fig_dir = out.parent / "figures"
    figs = figures(ws, groups, rows, fig_dir)
    fisher_text, fisher_figs = fisher_section(ws, groups, fig_dir)
    runtime = _compute_seconds(ws, sweeps)
    resolved = [r for r in rows if r.get("vs_none") and r["vs_none"]["drop"]["resolved"] and not r["did_not_learn"]]
    broken = [r for r in rows if r["did_not_learn"]]
    md = [f"# {title}", "", "Generated by `python -m mivis report` from the sweeps "
          f"{', '.join(f'`{s}`' for s in sweeps)}; every number below comes from stored runs.", "",
          notes, "",
          "Attack accuracy is the fraction of reconstructions the evaluation model (another architecture, "
          "trained on the private images) classifies as the attacked identity, pooled over training seeds; "
          "intervals are 95% bootstrap intervals over identities. The paired drop compares each defense with "
          "the undefended model of the same architecture and attack on the same seeds, identities and starting "
          "latents (positive = the defense leaks less); it is *resolved* only when its interval excludes 0. "
          "A target started from public pre-training is compared with the undefended target of the same start "
          "where the study has one (else with the one trained from scratch); the undefended pre-trained target "
          "itself is compared with the one trained from scratch. "
          "The seed-level interval is a t-interval over the per-seed drops (training noise), given with 3 or more seeds.", "",
          f"Compute time of the runs behind this report (each counted once): {runtime / 60:.1f} min.", "",
          _multiplicity(rows), "", "## Results", "", table(rows), "",
          "### Resolved effects", ""]
    md += [f"- {r['arch']} {r['attack']} {r['image_size']} px, {_defense_cell(r)}: attack accuracy "
           f"{'drop' if r['vs_none']['drop']['value'] > 0 else 'RISE (leaks more)'} "
           f"{_verdict(r['vs_none'])}, natural accuracy drop {100 * r['vs_none']['acc_drop']:+.1f} pp"
           for r in resolved] or ["- none: no defense's attack-accuracy drop has an interval that excludes 0 "
                                  "at this size. The explorer reports these differences as not resolved."]
    if broken:
        md += ["", f"Targets that did not learn (natural accuracy below {100 * MIN_LEARNED_ACC:.0f}%): a classifier "
               "that cannot recognise the private identities leaks nothing to invert, so their low attack accuracy "
               "is not a privacy-utility trade-off and is left out of the effects above:", ""]
        md += [f"- {r['arch']} {r['attack']} {r['image_size']} px, {_defense_cell(r)}: natural accuracy per seed "
               + ", ".join(f"{100 * a:.1f}%" for a in r["natural_acc_seeds"]) for r in broken]
    md += ["", "## Figures", ""] + [f"![{cap}](figures/{name})\n\n*{cap}*\n" for name, cap in figs + fisher_figs]
    if fisher_text:
        md += ["## Fisher information per layer", "", fisher_text, ""]
    md += ["## Does the effect hold under the independent judge?", "", independent_judge(rows), ""]
    md += ["## Side by side with the RoLSS paper", "",
           "The paper's numbers are PPA on private FaceScrub at 224 px with an FFHQ prior; the rows beside them are "
           "this study's (ORL, far smaller and lower-resolution, another attack and prior), so only the direction is "
           "comparable: a defense agrees when its paired drop is resolved and positive. SSF is the paper's scale "
           "(0.2 for ResNets, 0.01 for DenseNet).", "",
           paper_side_by_side(rows), "", _regime(ws, groups), ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(md))
    (out.parent / (out.stem + ".json")).write_text(json.dumps(rows, indent=1, default=str))
    return out


# the method version each report's attacks ran with (docs/differences.md): v2 follows the papers' code
# Trade-off page: "TAB: SECTION" labels, one tab per method version and machine; a missing file is skipped
STUDY_REPORTS = {"v2 CPU: ResNet-18, each stage's skips, SSF, TTS": "docs/v2/r18-skips/findings.json",
                 "v2 CPU: ResNet-34 stages": "docs/v2/r34-stages/findings.json",
                 "v2 CPU: TL-DMI, CALoR, BiDO": "docs/v2/tl-calor-bido/findings.json",
                 "v2 CPU: ResNet-50, DenseNet-121, layers": "docs/v2/wide-layers/findings.json",
                 "v2 CPU: regimes (PPA, 64 px, public init, fewer iterations)": "docs/v2/findings.json",
                 "v2 CPU: IF-GMI, ResNet-18 full vs RoLSS": "docs/v2/leak/findings.json",
                 "v2 CPU: posterior mean (no gradient), full vs RoLSS": "docs/v2/pmean/findings.json",
                 "v2 CPU: posterior mean, replication with new pools": "docs/v2/pmean-rep/findings.json",
                 "v2 CPU: posterior mean, replication with new trained models": "docs/v2/pmean-seeds/findings.json",
                 "v3 CPU: LOMMA vs GMI, full vs RoLSS": "docs/v3/lomma/findings.json",
                 "v1 CPU": "docs/findings.json", "v1 GPU": "docs/gpu/findings.json"}


def measured_effects(root: Path, reports: dict[str, str] = STUDY_REPORTS) -> list[dict]:
    """The committed studies' paired drops vs no defense, one row per (study, arch, attack, size,
    defense), for showing next to the papers' numbers what this data does and does not resolve."""
    out = []
    for study, rel in reports.items():
        path = Path(root) / rel
        if not path.exists():
            continue
        for r in json.loads(path.read_text()):
            vs = r.get("vs_none")
            if not vs:
                continue
            d, dd = vs["drop"], vs.get("drop_dlib")  # dd: the same paired drop judged by dlib, if it judged
            broken = r.get("did_not_learn")
            # the verdict next to the defense: the page's column is narrow
            out.append({"arch": r["arch"], "defense": _defense_cell(r),
                        "verdict": "target did not learn" if broken else
                        ("resolved: leaks less" if d["value"] > 0 else "resolved: leaks MORE")
                        if d["resolved"] else "not resolved",
                        "drop pp": round(100 * d["value"], 1),
                        "95% CI pp": drop_ci(d),
                        "attack": r["attack"], "px": r["image_size"], "seeds": len(vs["seeds"]),
                        "AttAcc %": round(100 * r["top1"]["value"], 1), "study": study,
                        "dlib": dd and {"drop pp": round(100 * dd["value"], 1), "95% CI pp": drop_ci(dd),
                                        "verdict": drop_direction(dd)}})
    return out
