"""Real browser: upload a safetensors classifier (a timm model trained elsewhere) on the Architecture page,
import it as a target run, see its accuracy check and its stage diagram. Skips where chromium or
playwright is missing (the set-up is test_browser.py's)."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("playwright")
from test_browser import (ARTIFACTS, browser, expect, idle, new_page, shot, start_server,  # noqa: E402,F401
                          stop_server)

TINY = "dataset=synthetic&image_size=32&n_private=6&test_per_identity=2"


def test_upload_imports_a_timm_model_as_a_target(browser, tmp_path):  # noqa: F811
    import timm
    from safetensors.torch import save_file

    from mivis.runs import Workspace
    torch.manual_seed(0)
    model = timm.create_model("regnetx_002", pretrained=False, num_classes=6, in_chans=1)  # "trained elsewhere"
    f = tmp_path / "my_regnet.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(f))
    ws_path = tmp_path / "ws"
    Workspace(ws_path)
    proc, url, log = start_server(ws_path, tmp_path / "streamlit.log")
    try:
        ctx, page = new_page(browser, height=2400)
        page.goto(f"{url}/architecture?{TINY}")
        idle(page)
        page.get_by_text("Import a classifier trained elsewhere").click()
        page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(f))
        expect(page.locator("[data-testid='stFileChipName'][title='my_regnet.safetensors']")).to_be_visible()
        expect(page.get_by_role("button", name="Import", exact=True)).to_be_enabled()
        box = page.get_by_role("textbox", name="timm architecture", exact=True)
        box.fill("regnetx_002")
        box.press("Enter")
        idle(page)
        page.get_by_role("textbox", name="Normalisation mean", exact=True).fill("0.5")
        page.get_by_role("textbox", name="Normalisation mean", exact=True).press("Enter")
        page.get_by_role("textbox", name="Normalisation std", exact=True).fill("0.5")
        page.get_by_role("textbox", name="Normalisation std", exact=True).press("Enter")
        idle(page)
        page.get_by_role("button", name="Import", exact=True).click()
        # a random-weight model is at chance on its data: flagged "classes probably mis-ordered", and no run
        expect(page.get_by_text("Nothing was imported").first).to_be_visible(timeout=90_000)
        expect(page.get_by_text("classes probably mis-ordered").first).to_be_visible()
        expect(page.get_by_text("Suggested order").first).to_be_visible()  # the full list, not 12 names and "..."
        assert Workspace(ws_path).list(kind="target") == []
        page.get_by_role("button", name="Import anyway (keep it flagged)").click()
        expect(page.get_by_text("Imported as run").first).to_be_visible(timeout=90_000)
        idle(page)
        expect(page.get_by_text("classes probably mis-ordered").first).to_be_visible()
        expect(page.get_by_test_id("stGraphVizChart").last.locator("svg")).to_be_visible()
        shot(page, "20_architecture_import")
        runs = Workspace(ws_path).list(kind="target")
        assert len(runs) == 1 and runs[0].status == "done"
        assert runs[0].config["model"]["arch"] == "regnetx_002"
        assert runs[0].config["model"]["input_norm"]["mean"] == [0.5]
        assert runs[0].metrics["order_check"] == "classes probably mis-ordered"
        # a hostile upload gets the one-line refusal, and no run
        pk = tmp_path / "evil.safetensors"
        pk.write_bytes(b"\x80\x04\x95" + b"\0" * 64)
        page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(pk))
        expect(page.locator("[data-testid='stFileChipName'][title='evil.safetensors']")).to_be_visible()
        idle(page)
        page.get_by_role("button", name="Import", exact=True).click()
        expect(page.get_by_text("mivis never unpickles files").first).to_be_visible(timeout=60_000)
        assert len(Workspace(ws_path).list(kind="target")) == 1
        kept = list((ws_path / "uploads").iterdir())  # the refused pickle was removed again; the import kept
        assert len(kept) == 1 and kept[0].read_bytes() == f.read_bytes(), kept
        ctx.close()
    finally:
        tail = stop_server(proc, log)
    assert "Traceback" not in tail, tail[-3000:]
