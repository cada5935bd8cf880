"""What a comparison compares: each attack run's target in words (name, architecture, natural accuracy, how it
was made) and the warnings a reader needs before trusting a difference: a target that did not learn, two
targets whose natural accuracies are far apart, and an imported target set against one trained here (the
recipe differs as well as the change under study). Used by `evaluate compare / delta` and mivis.api."""
from __future__ import annotations

from ..runs import RunRecord, Workspace

MIN_LEARNED_ACC = 0.5  # mivis.report.findings' threshold: below it a target has not learned its task
ACC_GAP = 0.10         # natural accuracies further apart than this: the targets differ in more than the change


def side(ws: Workspace, attack: RunRecord) -> dict:
    """The attack run and its target, as a comparison names them."""
    t = ws.get(attack.config["target_run"]) if ws.exists(attack.config.get("target_run") or "") else None
    m = (t.metrics if t else {}) or {}
    model = (t.config.get("model") if t else {}) or {}
    k = model.get("num_classes")
    acc = m.get("natural_acc")
    return {"attack_run": attack.id, "attack_name": attack.name, "target_run": t.id if t else None,
            "target_name": t.name if t else None, "arch": model.get("arch"), "natural_acc": acc,
            "chance": (1.0 / k) if k else None, "imported": bool(t and t.config.get("train", {}).get("imported")),
            "defenses": sorted((model.get("defenses") or {}).keys())}


def words(s: dict) -> str:
    acc = "natural accuracy unknown" if s["natural_acc"] is None else f"natural accuracy {s['natural_acc']:.1%}"
    how = "imported" if s["imported"] else "trained here"
    return (f"attack {s['attack_run']} on target {s['target_run']} ({s['target_name'] or s['arch']}, {s['arch']}, "
            f"{how}, {acc})")


def learn_warning(s: dict, label: str) -> str | None:
    acc, chance = s["natural_acc"], s["chance"]
    if acc is None:
        return None
    if chance is not None and acc < 2 * chance:
        return (f"{label}'s target did not learn: natural accuracy {acc:.1%} is near chance ({chance:.1%}); "
                "its attack accuracy says nothing about privacy")
    if acc < MIN_LEARNED_ACC:
        return (f"{label}'s target barely learned (natural accuracy {acc:.1%}, below {MIN_LEARNED_ACC:.0%}): "
                "a low attack accuracy on it is no privacy finding")
    return None


def warnings(a: dict, b: dict, labels=("A", "B")) -> list[str]:
    out = [w for w in (learn_warning(a, labels[0]), learn_warning(b, labels[1])) if w]
    if a["natural_acc"] is not None and b["natural_acc"] is not None and \
            abs(a["natural_acc"] - b["natural_acc"]) > ACC_GAP:
        out.append(f"the targets' natural accuracies differ by {abs(a['natural_acc'] - b['natural_acc']):.1%} "
                   f"({a['natural_acc']:.1%} vs {b['natural_acc']:.1%}): they differ in more than the change under "
                   "study; compare with a reference made by the same recipe without the change")
    if a["imported"] != b["imported"]:
        out.append("one target was imported and the other trained here: the training recipes differ as well; "
                   "the matching reference of a mivis retrain is the same retrain with every skip kept and no "
                   "defense")
    return out
