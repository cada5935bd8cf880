"""AppTest: every page renders; widgets drive the library; bad URL input gives a message in the page."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
TINY_URL = {"dataset": "synthetic", "image_size": "32", "n_private": "6", "test_per_identity": "2",
            "epochs": "1", "batch_size": "16"}


@pytest.fixture
def app(ws):
    """A fresh AppTest on a temp workspace; job workers are stopped afterwards."""
    from mivis import ui
    ui.shutdown_managers()
    at = AppTest.from_file(APP, default_timeout=120)
    yield at
    ui.shutdown_managers()


def texts(at) -> str:
    parts = [m.value for m in at.markdown] + [str(getattr(e, "value", "")) for e in at.caption]
    for kind in ("info", "warning", "error", "success"):
        parts += [e.value for e in getattr(at, kind)]
    return "\n".join(parts)


def assert_clean(at):
    assert not at.exception, [e.value for e in at.exception]


def open_page(at, page: str, **params):
    for k, v in params.items():
        at.query_params[k] = v
    at.switch_page(f"pages/{page}.py")
    at.run()
    assert_clean(at)
    return at


def poll(at, done, timeout=120.0):
    """AppTest does not fire run_every timers: rerun until `done(at)`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        at.run()
        assert_clean(at)
        if done(at):
            return at
        time.sleep(0.3)
    raise AssertionError("timed out; page said:\n" + texts(at))


def test_home_renders(app):
    app.run()
    assert_clean(app)
    assert "model-inversion attack" in texts(app)


def test_architecture_counts_follow_the_widgets(app):
    open_page(app, "architecture", **TINY_URL)
    total = lambda: next(m.value for m in app.metric if m.label.startswith("Parameters"))  # noqa: E731
    r18 = total()
    app.selectbox(key="architecture:arch").select("resnet34").run()
    assert_clean(app)
    assert total() != r18 and app.query_params["arch"] == "resnet34"


def test_skip_toggles_presets_and_freeze_slider(app):
    open_page(app, "architecture", **TINY_URL)
    total = lambda: next(m.value for m in app.metric if m.label.startswith("Parameters"))  # noqa: E731
    trained = lambda: next(m.value for m in app.metric if m.label.startswith("Trained"))  # noqa: E731
    full = total()
    app.toggle(key="architecture:skip4").set_value(False).run()  # RoLSS: the projection goes too
    assert_clean(app)
    assert total() != full and app.query_params["skip4"] == "false"
    assert len(app.get("graphviz_chart")) == 1
    next(b for b in app.button if b.label.startswith("Full")).click().run()
    assert total() == full and app.toggle(key="architecture:skip4").value is True
    next(b for b in app.button if b.label.startswith("SSF")).click().run()
    assert app.slider(key="architecture:ssf4").value == 0.2 and total() == full  # scaling keeps weights
    app.toggle(key="architecture:use_tldmi").set_value(True).run()
    assert_clean(app)
    before = trained()
    app.slider(key="architecture:tldmi_freeze").set_value(3).run()
    assert trained() != before and trained() != total()


def test_stage_without_skips_is_never_offered(app):
    open_page(app, "architecture", arch="efficientnet_b0", skip7="false", **TINY_URL)
    keys = {t.key for t in app.toggle}
    assert "architecture:skip2" in keys and "architecture:skip1" not in keys and "architecture:skip7" not in keys
    assert any("skip7='false' does not apply" in w.value for w in app.warning)
    app.selectbox(key="architecture:arch").select("vgg16").run()
    assert_clean(app)
    assert any("no skip connections" in i.value for i in app.info)


def test_bad_url_values_give_messages(app):
    open_page(app, "architecture", epochs="99999", arch="alexnet", lr="abc", **{"dataset": "synthetic"})
    warn = "\n".join(w.value for w in app.warning)
    assert "epochs='99999' is out of range" in warn and "using 1000" in warn
    assert "arch='alexnet'" in warn and "resnet18" in warn
    assert "lr='abc'" in warn
    assert app.number_input(key="architecture:epochs").value == 1000
    assert app.selectbox(key="architecture:arch").value == "resnet18"


def test_train_from_the_page_and_open_the_run(app, ws):
    open_page(app, "architecture", **TINY_URL)
    next(b for b in app.button if b.label == "Train").click().run()
    assert_clean(app)
    job_id = app.query_params["job"]
    poll(app, lambda a: any("finished" in s.value for s in a.success))
    (run,) = ws.list()
    assert run.status == "done" and run.kind == "target"
    assert any(m.label.startswith("Natural accuracy") for m in app.metric)
    # a second session reloading with ?job= finds the finished job again
    from mivis import ui
    again = AppTest.from_file(APP, default_timeout=120)
    open_page(again, "architecture", job=job_id, **TINY_URL)
    assert any("finished" in s.value for s in again.success)
    ui.shutdown_managers()


def _fake_run(ws, name, acc):
    r = ws.create("target", {"model": {"arch": "resnet18"}, "train": {"seed": 0}, "name": name}, name=name)
    r.finish({"natural_acc": acc})
    return r.id


def test_runs_page_filter_compare_delete(app, ws):
    a, b, c = _fake_run(ws, "alpha", 0.9), _fake_run(ws, "beta", 0.8), _fake_run(ws, "gamma", 0.7)
    open_page(app, "runs", run=a, vs=b)
    assert "Comparison" in [h.value for h in app.subheader]
    assert any(d for d in app.dataframe)
    # delete b through the page: a and c stay intact
    open_page(app, "runs", run=b)
    app.checkbox(key=f"runs:sure:{b}").check().run()
    next(x for x in app.button if x.label == "Delete run").click().run()
    assert_clean(app)
    assert {r.id for r in ws.list()} == {a, c}
    assert any(f"Deleted {b}" in s.value for s in app.success)


def test_deleted_run_still_in_the_url(app, ws):
    a = _fake_run(ws, "alpha", 0.9)
    gone = _fake_run(ws, "gone", 0.5)
    ws.delete(gone)
    open_page(app, "runs", run=gone)
    assert any("does not exist" in w.value for w in app.warning)
    assert [r.id for r in ws.list()] == [a]


def test_unknown_job_in_the_url(app):
    open_page(app, "architecture", job="job-nope", **TINY_URL)
    assert any("job-nope" in w.value for w in app.warning)


# --- pages over a complete tiny workspace (two targets, judge, prior, attacks, layers) ----------------------
@pytest.fixture
def world(tmp_path, monkeypatch):
    from ui_world import world_copy

    from mivis import ui
    w = world_copy(tmp_path / "world")
    monkeypatch.setenv("MIVIS_WORKSPACE", str(w["path"]))
    ui.shutdown_managers()
    yield w
    ui.shutdown_managers()


def _png_bytes() -> bytes:
    import io

    import numpy as np
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray((np.arange(48 * 40) % 251).astype(np.uint8).reshape(48, 40)).save(buf, format="PNG")
    return buf.getvalue()


def test_attack_page_estimate_launch_and_result(world):
    from ui_world import ATTACK
    at = AppTest.from_file(APP, default_timeout=120)
    url = {f"gmi.{k}": (",".join(map(str, v)) if isinstance(v, list) else str(v)) for k, v in ATTACK.items()}
    open_page(at, "attack", target=world["full"], attack="gmi", **url)
    assert at.selectbox(key="attack:prior").value == world["prior"]
    assert at.selectbox(key="attack:eval").value == world["eval"]
    assert "3 identities x 2 restarts" in texts(at)
    at.button(key="attack:estimate").click().run()
    assert_clean(at)
    assert any("Estimated optimisation time" in i.value for i in at.info)
    at.button(key="attack:launch").click().run()
    assert_clean(at)
    poll(at, lambda a: any("finished" in s.value for s in a.success))
    assert any(m.label == "Attack accuracy top-1 (E)" for m in at.metric)
    assert len(at.get("image")) >= 1  # the reconstruction grid
    assert len(world_runs(world, "attack")) == 3


def world_runs(world, kind):
    from mivis.runs import Workspace
    return Workspace(world["path"]).list(kind=kind)


def test_attack_page_without_judge_offers_to_train_one(world, monkeypatch):
    from mivis.runs import Workspace
    ws = Workspace(world["path"])
    for r in ws.list(kind="attack"):
        ws.delete(r.id, cascade=True)  # the layers analysis was made from an attack
    ws.delete(world["eval"])
    at = AppTest.from_file(APP, default_timeout=120)
    open_page(at, "attack")
    assert any("No evaluation model can judge" in w.value for w in at.warning)
    assert at.button(key="attack:launch").disabled
    assert any(b.key == "attack:train_eval" for b in at.button)


def test_results_page_histograms_comparison_attribution_and_upload(world):
    at = AppTest.from_file(APP, default_timeout=120)
    open_page(at, "results", run=world["attack_full"])
    assert any(m.label.startswith("Top-1 judged by") for m in at.metric)
    assert len(at.get("image")) >= 3  # one row of faces per attacked identity
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert {t["type"] for t in spec["data"]} == {"bar"}  # side-by-side bars over log-odds bins
    at.multiselect(key="results:overlay").set_value([world["attack_rolss"]]).run()
    assert_clean(at)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert len(spec["data"]) == 4  # two runs x correct / wrong
    assert "resolved" in texts(at)  # "resolved" or "not resolved", with the paired interval
    at.button(key="results:attr_go").click().run()
    assert_clean(at)
    assert "Attribution for the attacked identity" in texts(at)
    # an upload that is not an image: a message, nothing else changes
    at.file_uploader(key="results:upload").upload("notes.png", b"this is not an image", "image/png").run()
    assert_clean(at)
    assert any("not a readable image" in e.value for e in at.error)
    at.file_uploader(key="results:upload").clear().upload("face.png", _png_bytes(), "image/png").run()
    assert_clean(at)
    assert not any("not a readable image" in e.value for e in at.error)
    assert len(world_runs(world, "attack")) == 2  # saved runs intact


def test_results_page_deleted_run_in_url(world):
    at = AppTest.from_file(APP, default_timeout=120)
    open_page(at, "results", run="attack-20200101-000000-dead00")
    assert any("attack-20200101-000000-dead00" in w.value for w in at.warning)
    assert at.selectbox(key="results:run").value in (world["attack_full"], world["attack_rolss"])


def test_layers_page_one_and_two_targets(world):
    at = AppTest.from_file(APP, default_timeout=120)
    open_page(at, "layers", target=world["full"])
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [t["type"] for t in spec["data"]] == ["bar", "bar", "scatter"]  # classification, MI, their ratio
    assert spec["layout"]["yaxis"]["type"] == "linear" and spec["layout"]["yaxis"]["rangemode"] == "tozero"
    assert "Share in the first half of the layers" in texts(at)
    charts = at.get("plotly_chart")
    assert texts(at).count("**What it shows:**") == len(charts)  # one plain sentence under each chart
    assert not any(t.get("type") == "heatmap" for c in charts for t in json.loads(c.proto.spec)["data"])
    flow = next(json.loads(c.proto.spec) for c in charts if "Gradient flow" in json.dumps(json.loads(
        c.proto.spec)["layout"].get("title", "")))
    assert flow["layout"]["yaxis"]["type"] == "linear" and flow["layout"]["yaxis2"]["tickvals"] == [0, 0.25, 0.5,
                                                                                                     0.75, 1]
    at.toggle(key="layers:log").set_value(True).run()
    assert json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["yaxis"]["type"] == "log"
    at.selectbox(key="layers:vs").set_value(world["rolss"]).run()
    assert_clean(at)
    assert "No layers analysis of this target yet" in texts(at)  # the RoLSS target: offered a job
    assert any(b.key == "layers:b:go" for b in at.button)


def test_tradeoff_page(world):
    at = AppTest.from_file(APP, default_timeout=120)
    open_page(at, "tradeoff")
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    names = {t["name"] for t in spec["data"]}
    assert {"no defense", "RoLSS"} <= names
    # targets that did not learn are drawn as x (no privacy finding), the others as circles
    for t in spec["data"]:
        if t.get("mode") == "markers":
            assert t["marker"]["symbol"] == ["x" if acc < 50 else "circle" for acc in t["x"]]
    # one attack setting at one image size per plane
    assert at.selectbox(key="tradeoff:attack").value.endswith(" px")
    assert all("error_y" in t for t in spec["data"] if t.get("mode") == "markers")
    assert "resolved" in texts(at)
    assert len(at.dataframe) >= 2  # the paper's table and the Delta table


@pytest.mark.parametrize("page,text", [("attack", "Classroom quick start"), ("results", "No finished attack yet"),
                                       ("layers", "No trained target yet"), ("tradeoff", "No finished attack")])
def test_pages_on_an_empty_workspace_say_what_to_do(app, page, text):
    open_page(app, page)
    assert text in texts(app)


def test_attack_identities_typed_wrong_block_the_launch(world):
    at = AppTest.from_file(APP, default_timeout=120)
    open_page(at, "attack", target=world["full"], attack="gmi")
    at.text_input(key="attack:gmi.identities").set_value("1,two").run()
    assert_clean(at)
    assert any("identities" in e.value for e in at.error)
    assert at.button(key="attack:launch").disabled
    at.text_input(key="attack:gmi.identities").set_value("0,99").run()  # out of the target's classes
    assert_clean(at)
    assert any("99" in e.value for e in at.error)  # named at the widget, before any job exists
    assert at.button(key="attack:launch").disabled and len(world_runs(world, "attack")) == 2
    at.text_input(key="attack:gmi.identities").set_value("0,1").run()
    assert not at.error and not at.button(key="attack:launch").disabled


def test_a_target_that_did_not_learn_is_flagged(world):
    from mivis.runs import Run, Workspace
    ws = Workspace(world["path"])
    at = AppTest.from_file(APP, default_timeout=120)
    open_page(at, "results", run=world["attack_rolss"])
    learned = ws.get(world["rolss"]).metrics["natural_acc"] >= 0.5
    assert any("did not learn" in w.value for w in at.warning) == (not learned)
    Run(ws, world["rolss"]).update_metrics({"natural_acc": 0.05})  # as DenseNet-121 RoLSS on ORL
    at = AppTest.from_file(APP, default_timeout=120)
    open_page(at, "results", run=world["attack_rolss"])
    assert any("did not learn its task (natural accuracy 5.0%" in w.value for w in at.warning)
    open_page(at, "tradeoff")
    assert "did not learn" in texts(at) and "left off the front" in texts(at)


def test_densenet_chain_warning_follows_the_toggle(app):
    open_page(app, "architecture", arch="densenet121", **TINY_URL)
    assert not any("plain chain" in w.value for w in app.warning)
    app.toggle(key="architecture:skip4").set_value(False).run()
    assert_clean(app)
    assert any("denseblock4 becomes a plain chain of 16 layers (32 convolutions" in w.value for w in app.warning)
    app.selectbox(key="architecture:arch").select("resnet18").run()
    app.toggle(key="architecture:skip4").set_value(False).run()
    assert_clean(app)
    assert not any("plain chain" in w.value for w in app.warning)  # additive skips: the warning is DenseNet's


def test_tradeoff_filters_by_architecture(world):
    from mivis.runs import Run, Workspace
    ws = Workspace(world["path"])
    cfg = ws.get(world["rolss"]).config
    Run(ws, world["rolss"]).set_config({**cfg, "model": {**cfg["model"], "arch": "resnet34"}})  # the page reads configs only
    at = AppTest.from_file(APP, default_timeout=120)
    open_page(at, "tradeoff")
    names = lambda: {t["name"] for t in json.loads(at.get("plotly_chart")[0].proto.spec)["data"]}  # noqa: E731
    assert {"no defense", "RoLSS"} <= names()
    at.selectbox(key="tradeoff:arch").set_value("resnet34").run()
    assert_clean(at)
    assert "RoLSS" in names() and "no defense" not in names()
