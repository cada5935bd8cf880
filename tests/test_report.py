"""The report's wording on constructed rows: a target that did not learn is no privacy finding, and a
seed-level interval needs 3 seeds."""
from __future__ import annotations

import json


def _row(defense: str, acc: float, drop: float, lo: float, hi: float, seeds=(0, 1, 2)) -> dict:
    # a seed-level interval as 3 seeds give it
    m = {"value": 0.4, "lo": 0.3, "hi": 0.5, "n": 20}
    return {"image_size": 32, "arch": "densenet121", "attack": "gmi", "defense": defense, "init": "",
            "seeds": list(seeds), "natural_acc": acc, "natural_acc_seeds": [acc] * len(seeds),
            "did_not_learn": acc < 0.5, "top1": m, "top5": m, "knn": m, "p_target": m,
            "vs_none": {"seeds": list(seeds), "drop": {"value": drop, "lo": lo, "hi": hi, "n": 20,
                                                       "resolved": lo > 0 or hi < 0},
                        "per_seed": [drop] * len(seeds), "seed_interval": [drop - 0.1, drop + 0.1],
                        "acc_drop": 0.9 - acc, "delta": drop / (0.9 - acc)}}


def test_broken_target_is_not_a_finding(tmp_path):
    from mivis.report.findings import measured_effects, table
    rows = [_row("skips[1,1,1,0]", 0.067, 0.61, 0.52, 0.70), _row("skips[1,1,1,0.2]", 0.95, 0.10, 0.02, 0.2)]
    text = table(rows)
    assert "target did not learn (natural acc 6.7%)" in text and "+61.0 pp" not in text
    broken = next(ln for ln in text.splitlines() if "did not learn" in ln)
    assert broken.rstrip(" |").endswith("| - | -")  # neither a seed-level interval nor a Delta
    assert "+10.0 pp [+2.0, +20.0] resolved" in text
    (tmp_path / "f.json").write_text(json.dumps(rows))
    verdicts = [r["verdict"] for r in measured_effects(tmp_path, {"s": "f.json"})]
    assert verdicts == ["target did not learn", "resolved: leaks less"]


def test_attacks_with_other_settings_are_not_pooled():
    """GMI with 50 iterations is its own row, not pooled with the study's usual GMI (100 iterations)."""
    from types import SimpleNamespace
    from mivis.report.findings import attack_labels

    runs = {"prior-a": SimpleNamespace(config={"type": "gmi"})}

    def attack(i, name, iterations):
        return SimpleNamespace(config={
            "attack": {"name": name, "params": {"iterations": iterations, "restarts": 5, "identities": [0, i],
                                                "device": "auto"}},
            "prior_run": "prior-a"})

    ids = [attack(0, "gmi", 100), attack(1, "gmi", 100), attack(2, "gmi", 50), attack(3, "kedmi", 100)]
    ws = SimpleNamespace(get=runs.__getitem__, exists=runs.__contains__)
    assert attack_labels(ws, ids) == ["gmi", "gmi", "gmi[iterations=50]", "kedmi"]
    ids[1].config["attack"]["params"]["seed"] = 7  # another seed: a row of its own in a study ...
    ids[0].config["attack"]["params"]["seed"] = ids[2].config["attack"]["params"]["seed"] = 0
    assert attack_labels(ws, ids)[:2] == ["gmi", "gmi[seed=7]"]  # a tie: the setting seen first is the usual one
    ids.append(attack(4, "gmi", 100))
    ids[4].config["attack"]["params"]["seed"] = 7  # now seed 7 is the most common setting
    assert attack_labels(ws, ids)[:2] == ["gmi[seed=0]", "gmi"]
    # ... and a replicate of the same attack on the Trade-off page
    assert attack_labels(ws, ids, pool_seeds=True) == ["gmi", "gmi", "gmi[iterations=50]", "kedmi", "gmi"]


def test_paper_side_by_side_states_direction():
    from mivis.report.findings import paper_side_by_side
    none = _row("none", 0.98, 0.0, 0.0, 0.0)
    none["vs_none"] = None
    rows = [dict(none, arch="resnet34"), dict(_row("skips[1,1,1,0]", 0.95, 0.15, 0.07, 0.24), arch="resnet34"),
            dict(_row("skips[1,1,1,0.2]", 0.98, -0.05, -0.15, 0.04), arch="resnet34"),
            dict(_row("bido", 0.97, -0.10, -0.18, -0.02), arch="resnet34")]
    lines = {ln.split("|")[2].strip(): ln for ln in paper_side_by_side(rows).splitlines()[2:] if "ResNet-34" in ln}
    assert lines["RoLSS"].endswith("| yes: leaks less |") and "| 71.86 |" in lines["RoLSS"]
    assert lines["SSF"].endswith("| not resolved here |")
    assert lines["BiDO"].endswith("| NO: leaks more |")
    assert "not run" in lines["TTS"]


def test_pretrained_targets_are_compared_with_the_same_start():
    from mivis.report.findings import reference_key
    scratch, pub = (32, "resnet18", "gmi", "none", ""), (32, "resnet18", "gmi", "none", "public")
    rolss_pub = (32, "resnet18", "gmi", "skips[1,1,1,0]", "public")
    groups = {scratch: {}, pub: {}, rolss_pub: {}}
    assert reference_key(rolss_pub, groups) == pub
    assert reference_key(pub, groups) == scratch  # the effect of pre-training itself
    assert reference_key(rolss_pub, {scratch: {}, rolss_pub: {}}) == scratch
    assert reference_key((32, "resnet18", "gmi", "skips[1,1,1,0]", ""), groups) == scratch


def test_figure_file_names_are_link_safe():
    from mivis.report.findings import _file_name
    assert _file_name("attack_acc_resnet18_gmi[iterations=50]_32px.svg") == "attack_acc_resnet18_gmi-iterations-50_32px.svg"
    assert _file_name("likelihood_densenet121_gmi_32px.svg") == "likelihood_densenet121_gmi_32px.svg"
