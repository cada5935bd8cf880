"""LOMMA's model augmentation: surrogate students distilled from the target on public images.

Each student is a registry run (kind "surrogate", parent: the target), trained with the target's
softmax on augmented public images as soft labels, and reused by later attacks with the same
settings.
"""
from __future__ import annotations

import time

import torch

from .. import defenses as _defenses  # noqa: F401  (registers the structural defenses that model_from_config applies)
from ..augment import augment_to
from ..data import batches, is_lazy, sequential
from ..device import autocast, prepare, to_device
from ..models import build_classifier, model_config, model_from_config
from ..progress import NULL, Cancelled, Reporter
from ..runs import RunRecord, Workspace
from ..weights import load_into


def _config(target: RunRecord, arch: str, epochs: int, seed: int) -> dict:
    m = target.config["model"]
    return {"target_run": target.id, "arch": arch, "epochs": epochs, "seed": seed, "lr": 1e-3, "batch_size": 32,
            "augment": "standard", "data": target.config["data"],
            "model": model_config(arch, m["num_classes"], m["in_chans"], m["img_size"])}


def distill(ws: Workspace, target: RunRecord, T: torch.nn.Module, public_x: torch.Tensor, arch: str, epochs: int,
            seed: int, device: torch.device, reporter: Reporter = NULL) -> torch.nn.Module:
    cfg = _config(target, arch, epochs, seed)
    from ..train import as_recorded_before
    old = as_recorded_before(cfg)  # a ResNet student stored before zero_init_last existed has no key for it
    found = ws.find("surrogate", cfg) or (ws.find("surrogate", old) if old else None)
    if found is not None:
        model = model_from_config(found.config["model"])
        load_into(model, found.file("weights.safetensors"))
        return prepare(model, device).eval().requires_grad_(False)
    run = ws.create("surrogate", cfg, parents=[target.id], seed=seed, data_fingerprint=target.data_fingerprint,
                    name=f"LOMMA student {arch} of {target.id}")
    try:
        torch.manual_seed(seed)
        m = cfg["model"]
        model = prepare(build_classifier(arch, m["num_classes"], m["in_chans"], m["img_size"]), device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=5e-4)
        g = torch.Generator().manual_seed(seed)
        n, bs = len(public_x), min(cfg["batch_size"], len(public_x))
        steps = max(1, n // bs) * epochs
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg["lr"], total_steps=steps)
        t0, step, agree = time.monotonic(), 0, 0.0
        for ep in range(epochs):
            order = torch.randperm(n, generator=g)
            feed = batches(public_x, None, (order[b * bs:(b + 1) * bs] for b in range(max(1, n // bs))), device)
            for xb, _ in feed:
                reporter.check()
                x = augment_to(xb, cfg["augment"], g, device, on_device=is_lazy(public_x))
                with torch.no_grad(), autocast(device):
                    soft = T(x).float().softmax(1)
                with autocast(device):
                    logp = model(x).float().log_softmax(1)
                loss = -(soft * logp).sum(1).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                agree = (logp.argmax(1) == soft.argmax(1)).float().mean().item()
                reporter.report(phase="surrogate", arch=arch, epoch=ep + 1, epochs=epochs, loss=loss.item(),
                                agreement=agree)
        model.eval()
        hits = []
        with torch.no_grad(), autocast(device):  # one batch for small public sets, as before
            for xb in sequential(public_x, 1024, device):
                xs = to_device(xb, device)
                hits.append(model(xs).argmax(1) == T(xs).argmax(1))
        fid = torch.cat(hits).float().mean().item()
        run.save_weights(model.state_dict(), {"arch": arch, "model_config": cfg["model"], "run": run.id})
        run.finish({"agreement_public": fid, "train_seconds": round(time.monotonic() - t0, 2), "steps": step})
    except Cancelled:
        run.fail("cancelled by user", status="cancelled")
        raise
    except BaseException as e:
        run.fail(f"{type(e).__name__}: {e}")
        raise
    return model.requires_grad_(False)
