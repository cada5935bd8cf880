"""AppTest: the classroom path (shipped models, one shared set-up, the queue every session sees) and the
Architecture page's dead ends (image size, TL-DMI without a start, defenses that do not combine)."""
from __future__ import annotations

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from test_app import APP, assert_clean, open_page, poll, texts  # noqa: E402


@pytest.fixture
def app(ws):
    from mivis import ui
    ui.shutdown_managers()
    at = AppTest.from_file(APP, default_timeout=120)
    yield at
    ui.shutdown_managers()


def test_architecture_defaults_to_the_classroom_size(app):
    open_page(app, "architecture")
    assert app.number_input(key="architecture:image_size").value == 32 or \
        app.selectbox(key="architecture:image_size").value == 32


def test_tldmi_without_a_public_start_blocks_training_with_a_reason(app):
    open_page(app, "architecture", dataset="synthetic", n_private="6", test_per_identity="2")
    app.toggle(key="architecture:use_tldmi").set_value(True).run()
    assert_clean(app)
    assert any("Role: public" in w.value for w in app.warning)
    assert next(b for b in app.button if b.label == "Train").disabled


def test_defenses_that_do_not_combine_keep_the_counts(app):
    open_page(app, "architecture", dataset="synthetic", n_private="6", test_per_identity="2")
    app.toggle(key="architecture:use_calor").set_value(True).run()
    app.toggle(key="architecture:use_mid").set_value(True).run()
    assert_clean(app)
    assert any("both replace the classification head" in e.value for e in app.error)
    assert any(m.label.startswith("Parameters") for m in app.metric)  # the row stays
    assert next(b for b in app.button if b.label == "Train").disabled


def test_classroom_setup_imports_the_shipment_and_every_session_sees_it(app, ws):
    open_page(app, "attack")
    app.button(key="attack:classroom").click().run()
    assert_clean(app)
    other = AppTest.from_file(APP, default_timeout=120)
    open_page(other, "attack")
    # the second session sees the running set-up and cannot queue a duplicate
    assert any("classroom set" in p.proto.text for p in other.get("progress"))
    assert other.button(key="attack:classroom").disabled
    poll(app, lambda a: any("finished" in s.value for s in a.success), timeout=240)
    targets = ws.list(kind="target", status="done")
    assert len(targets) == 1 and targets[0].metrics.get("shipped_sha256")  # imported, not trained
    assert len(ws.list(kind="eval", status="done")) == 1
    open_page(app, "attack")
    assert app.selectbox(key="attack:target").value == targets[0].id
    assert not app.button(key="attack:launch").disabled  # prior, judge and target are ready


def test_judge_refusal_names_the_real_mismatch(app, ws):
    """A 64 px judge cannot judge a 32 px target: the page says so instead of blaming the architecture."""
    def fake(kind, arch, size):
        r = ws.create(kind, {"model": {"arch": arch, "num_classes": 6, "img_size": size, "in_chans": 1},
                             "data": {"dataset": "synthetic"}, "train": {"seed": 0, "epochs": 1}},
                      data_fingerprint="f", name=f"{kind} {arch} {size}")
        r.finish({"natural_acc": 0.9})
        return r.id
    fake("target", "resnet18", 32)
    fake("eval", "vgg11", 64)
    open_page(app, "attack")
    warning = "\n".join(w.value for w in app.warning)
    assert "No evaluation model can judge" in warning and "64 px" in warning and "32 px" in warning


def test_mid_beta_is_typed_not_dragged(app):
    """MID's beta (paper 0.003) sits in the first 0.03% of its 0-10 range: a slider could not set it."""
    open_page(app, "architecture", dataset="synthetic", n_private="6", test_per_identity="2")
    app.toggle(key="architecture:use_mid").set_value(True).run()
    assert_clean(app)
    beta = [n for n in app.number_input if "beta" in n.label.lower()]
    assert len(beta) == 1 and beta[0].value == 0.003
    assert not [s for s in app.slider if "beta" in s.label.lower()]


def test_no_warning_flash_while_the_classroom_is_set_up(app, ws, monkeypatch):
    """The set-up registers the target first, then the judge and the prior: in between the page says the set-up
    is registering them instead of flashing 'No evaluation model can judge this target' at the teacher."""
    import time

    from mivis.jobs import JobManager, JobRecord
    r = ws.create("target", {"model": {"arch": "resnet18", "num_classes": 6, "img_size": 32, "in_chans": 1},
                             "data": {"dataset": "synthetic"}, "train": {"seed": 0, "epochs": 1}},
                  data_fingerprint="f", name="classroom target")
    r.finish({"natural_acc": 0.9})
    setup = JobRecord("job-setup", 1, "classroom", "classroom set-up", {}, "someone", "running", "cpu", [], {}, None,
                      {"phase": "import"}, time.time(), time.time(), None)
    monkeypatch.setattr(JobManager, "active", lambda self: [setup])
    open_page(app, "attack", attack="gmi")  # GMI's paper knobs: ref_batch and clip
    assert not any("No evaluation model can judge" in w.value for w in app.warning)
    assert not any("fits this target" in w.value for w in app.warning)
    assert any("The classroom set-up is registering it" in i.value for i in app.info)
    assert app.button(key="attack:launch").disabled
    # the paper's knobs sit in a fold with plain labels; a class sees identities, restarts, iterations and seed
    adv = next(e for e in app.expander if e.label.startswith("Advanced: the paper's settings"))
    inside = [w.label for kind in ("number_input", "selectbox", "slider", "text_input", "toggle", "checkbox")
              for w in getattr(adv, kind)]
    assert "Batch the paper's step is sized for (ref_batch)" in inside
    assert "Keep the latent code within ± this (clip)" in inside
    everywhere = [w.label for kind in ("number_input", "selectbox", "slider", "text_input", "toggle", "checkbox")
                  for w in getattr(app, kind) if str(w.key).startswith("attack:gmi.")]  # the attack's own knobs
    assert [x for x in everywhere if "(ref_batch)" in x or "(clip)" in x] == \
        [x for x in inside if "(ref_batch)" in x or "(clip)" in x]  # nowhere outside the fold
