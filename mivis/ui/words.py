"""Plain words first, the symbol after: labels of parameters, choices, defenses and metrics, number and
interval formatting, and user text escaped for markdown. No streamlit here (unit-tested as plain functions)."""
from __future__ import annotations

import time
from typing import Any

from ..params import Param
from ..runs import RunRecord


_MD_SPECIAL = set("\\`*_{}[]()#+-.!|<>~$:")


def plain(text: Any) -> str:
    """User text (a run name, a job label) escaped so st.markdown shows it as typed: no links,
    no images fetched from elsewhere, no formatting. Newlines become spaces."""
    s = " ".join(str(text).split())
    return "".join("\\" + c if c in _MD_SPECIAL else c for c in s)


def clip(text: str, n: int) -> str:
    """At most n characters, with an ellipsis where it was cut (a bare cut once dropped a closing bracket)."""
    return text if len(text) <= n else text[:n - 1] + "…"


# plain words first, the symbol (the parameter's name) after
PARAM_WORDS = {
    "id_weight": "Weight of the identity loss (λ, id_weight)", "clip": "Keep the latent code within ± this (clip)",
    "loss": "Identity loss (loss)", "prior_weight": "Weight of looking real (prior_weight)",
    "prior_loss": "How 'looking real' is scored (prior_loss)", "momentum": "Momentum of the search (momentum)",
    "step": "Update rule: the paper code's or mivis v1's (step)",
    "ref_batch": "Batch the paper's step is sized for (ref_batch)",
    "channels_last": "Channels-last memory layout (channels_last)", "reg_weight": "Weight of the students' "
    "agreement (reg_weight)", "students": "Surrogate students (students)", "student_epochs": "Epochs per "
    "student (student_epochs)", "views": "Augmented views per step (views)", "pool": "Candidates drawn first "
    "(pool)", "candidates": "Candidates kept (candidates)", "tv_weight": "Weight of smoothness (tv_weight)",
    "l2_weight": "Weight of small pixel values (l2_weight)", "init_std": "Spread of the starting noise (init_std)",
    "fi_samples": "Private images for classification Fisher info (fi_samples)",
    "mi_samples": "Reconstructions for inversion Fisher info (mi_samples)",
    "fi_batch_size": "Fisher batch size (1 = per-sample)", "lr": "Learning rate (lr)",
}


CHOICE_WORDS = {"ce": "cross-entropy (ce)", "one_minus_p": "1 − target's confidence (one_minus_p)",
                "logit": "raw logit (logit)", "max_margin": "max margin (max_margin)",
                "poincare": "Poincaré distance (poincare)"}


def _label(p: Param) -> str:
    return PARAM_WORDS.get(p.name, p.name.replace("_", " ").capitalize())


DEFENSE_WORDS = {"skips": "Remove or scale skip connections", "tts": "Two-stage training (skips removed late)",
                 "tldmi": "Freeze the first layers (transfer learning)", "negls": "Negative label smoothing",
                 "bido": "Bilateral dependency regulariser", "mid": "Information-bottleneck head",
                 "calor": "Low-rank head with confidence adaptation"}


def defense_words(name: str, paper: str | None = None) -> str:
    """'Two-stage training (skips removed late): TTS (Koh et al., ECCV 2024)': words first, citation after."""
    words = DEFENSE_WORDS.get(name, name)
    return f"{words}: {paper}" if paper else words


def choice_words(v: Any) -> str:
    return CHOICE_WORDS.get(v, str(v)) if isinstance(v, str) else str(v)


# plain words first, the symbol after; fractions shown as percentages everywhere (Runs and Results agree)
METRIC_WORDS = {
    "attack_acc_top1": "Attack accuracy, top-1", "attack_acc_top5": "Attack accuracy, top-5",
    "attack_acc_top1_selected": "Top-1, best restart", "attack_acc_top5_selected": "Top-5, best restart",
    "attack_acc_top1_selected_prob": "Top-1, best restart by p_T", "attack_acc_top5_selected_prob": "Top-5, best restart by p_T",
    "selected_none_kept": "Identities with no restart kept",
    "target_success": "Target success",  # short: two runs side by side leave ~22 characters a card
    "target_likelihood": "Target confidence p_T", "knn_dist": "KNN distance",
    "feature_frechet_distance": "Feature Fréchet dist.", "natural_acc": "Natural accuracy",
    "train_acc": "Training accuracy", "train_seconds": "Training time (s)", "params": "Parameters",
    "trainable_params": "Trained parameters (|θ_C|)", "n_reconstructions": "Reconstructions",
    "attack_seconds": "Attack time (s)", "evaluate_seconds": "Judging time (s)",
    # a prior's ceiling run (a diagnostic of the prior: projections of the private images, judged)
    "ceiling_acc_top1": "Prior ceiling, top-1 by E", "ceiling_acc_top5": "Prior ceiling, top-5 by E",
    "ceiling_acc_top1_dlib": "Prior ceiling, top-1 by dlib", "originals_acc_top1": "E on the real images",
    "pixel_mse": "Pixel MSE of projections", "project_seconds": "Projection time (s)",
}


FRACTION_METRICS = {"attack_acc_top1", "attack_acc_top5", "attack_acc_top1_selected", "attack_acc_top5_selected",
                    "attack_acc_top1_selected_prob", "attack_acc_top5_selected_prob",
                    "target_success", "natural_acc", "train_acc"}


def metric_words(key: str) -> str:
    """A metric's name in plain words ('target_success' -> 'Target success (target's own top-1)'); a nested
    key too ('extra_judges.dlib.attack_acc_top1' -> 'Attack accuracy, top-1, by dlib')."""
    parts = key.split(".")
    if len(parts) == 3 and parts[0] == "extra_judges":
        return f"{metric_words(parts[2])}, by {parts[1]}"
    if len(parts) > 1:
        return " · ".join(p.replace("_", " ") for p in parts)
    return METRIC_WORDS.get(key, key.replace("_", " ").capitalize())


def metric_is_fraction(key: str) -> bool:
    """Whether a metric is a fraction shown as a percentage (so 'target success' reads 100%, never 1)."""
    return key in FRACTION_METRICS or key.endswith("_acc") or "_acc_" in key


def metric_text(m: Any, pct: bool = True) -> str:
    """'37% [22, 52]' for a {"value", "lo", "hi"} metric; plain numbers formatted too."""
    if isinstance(m, dict) and "value" in m:
        v, lo, hi = m.get("value"), m.get("lo"), m.get("hi")
        if v is None:
            return "-"
        f = (lambda x: f"{100 * x:.0f}") if pct else (lambda x: f"{x:.3g}")
        ci = f" [{f(lo)}, {f(hi)}]" if lo is not None and hi is not None else ""
        return f"{f(v)}{'%' if pct else ''}{ci}"
    if isinstance(m, float):
        return f"{100 * m:.1f}%" if pct and 0 <= m <= 1 else f"{m:.4g}"
    return str(m)


def settings_differ(n: int) -> str:
    return "Same settings" if n == 0 else (f"{n} setting differs" if n == 1 else f"{n} settings differ")


def paired_words(d: dict, a: str = "A", b: str = "B", judge: str | None = None) -> str:
    """A paired difference in top-1 attack accuracy (a − b, from evaluation.compare_runs) in words that
    say which run leaks less: 'resolved: A leaks 11 pp less than B'. a, b: the runs' names (escaped with
    plain() by the caller: they are user text); judge: 'E' or 'dlib', named when given."""
    v = 100 * d["value"]
    under = f" under {judge}" if judge else ""
    head = (f"Paired difference in top-1 attack accuracy{under}, {a} − {b}: **{v:+.1f} pp** "
            f"[{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}] over {d['n']} identities: ")
    if not d.get("resolved"):
        return head + f"**not resolved**: the interval contains 0, so neither {a} nor {b} is shown to leak less."
    less, more = (a, b) if v < 0 else (b, a)
    return head + f"**resolved: {less} leaks {abs(v):.0f} pp less than {more}**."


def name_and_id(name: str, run_id: str, width: int = 40) -> str:
    """A name, cut to `width`, and the end of a run id: 'tiny RoLSS (46f26c)' (two runs of the same name stay
    apart)."""
    return f"{clip(' '.join(name.split()), width)} ({run_id[-6:]})"


def run_short(r: RunRecord, width: int = 40) -> str:
    """A run's name and the end of its id, short enough for a column header or a sentence."""
    return name_and_id(r.name or r.kind, r.id, width)


ATTACK_WORDS = {"gmi": "GMI", "kedmi": "KEDMI", "lomma": "LOMMA", "plgmi": "PLG-MI", "ppa": "PPA-style", "ifgmi": "IF-GMI",
                "pmean": "posterior mean", "whitebox": "white-box pixels"}
DEFENSE_ABBR = {"bido": "BiDO", "calor": "CALoR", "mid": "MID", "negls": "NegLS", "tts": "TTS", "tldmi": "TL-DMI"}


def _spec(cell: str) -> tuple[str, dict[str, str]]:
    """'gmi[iterations=50]' -> ('gmi', {'iterations': '50'}) (the studies' row names)."""
    import re
    m = re.match(r"^([^\[]+)(?:\[(.*)\])?$", cell.strip())
    if not m:
        return cell.strip(), {}
    args = dict(kv.split("=", 1) for kv in (m.group(2) or "").split(",") if "=" in kv)
    return m.group(1), args


def skips_words(scales: list[float]) -> str:
    """Per-stage skip scales in words, the method's name after: [1, 1, 1, 0] -> "last stage's skips removed
    (RoLSS)", [1, 1, 1, 0.2] -> "last stage's skips x0.2 (SSF)", [1, 0, 1, 1] -> "stage 2's skips removed"."""
    changed = [(i, v) for i, v in enumerate(scales) if v != 1]
    if not changed:
        return "all skips kept"
    if len(changed) == 1 and changed[0][0] == len(scales) - 1:
        v = changed[0][1]
        return "last stage's skips removed (RoLSS)" if v == 0 else f"last stage's skips x{v:g} (SSF)"
    return ", ".join(f"stage {i + 1}'s skips " + ("removed" if v == 0 else f"x{v:g}") for i, v in changed)


def study_defense_words(cell: str) -> str:
    """A defense as the studies name it ('calor+skips[1,1,1,0]', 'tldmi[freeze=10] (public init)') in words,
    the abbreviation after: 'Low-rank head with confidence adaptation (CALoR) + last stage's skips removed
    (RoLSS)', 'first 10 layer groups frozen (TL-DMI), public pre-training'."""
    init = cell.endswith(" (public init)")
    cell = cell.removesuffix(" (public init)")
    parts = []
    for part in cell.split("+"):
        name, args = _spec(part)
        if name == "skips" and "[" in part:
            try:
                parts.append(skips_words([float(v) for v in part[part.index("[") + 1:part.rindex("]")].split(",")]))
            except ValueError:
                parts.append(part)
        elif name == "tldmi":
            n = args.get("freeze")
            parts.append(f"first {n} layer groups frozen (TL-DMI)" if n not in (None, "0")
                         else "no layer frozen (TL-DMI)")
        elif name == "tts" and "switch_epoch" in args:
            parts.append(f"skips removed after epoch {args['switch_epoch']} (TTS)")
        elif name == "none":
            parts.append("no defense")
        else:
            words = DEFENSE_WORDS.get(name)
            parts.append(f"{words} ({DEFENSE_ABBR.get(name, name)})" if words else part)
    return " + ".join(parts) + (", public pre-training" if init else "")


def attack_words(cell: str) -> str:
    """'gmi[iterations=50]' -> 'GMI, 50 iterations'; 'ppa' -> 'PPA-style'."""
    name, args = _spec(cell)
    return ", ".join([ATTACK_WORDS.get(name, name)] + [f"{v} {k.replace('_', ' ')}" for k, v in args.items()])


def run_label(r: RunRecord) -> str:
    when = time.strftime("%m-%d %H:%M", time.localtime(r.created or 0))
    name = " ".join((r.name or r.kind).split())[:80] + (" (damaged)" if r.damage else "")
    return f"{name} · {r.id[-6:]} · {when}"
