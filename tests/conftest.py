"""Shared fixtures: a temporary workspace and a tiny synthetic data set (fast on CPU)."""
from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
# long commands and jobs fit their thread count to the free cores; tests fix it so two runs compared in one
# test compute with the same thread count whatever else the machine is doing (tests/test_threads.py
# exercises the measurement itself)
os.environ.setdefault("MIVIS_THREADS", str(torch.get_num_threads()))

TINY_DATA = {"dataset": "synthetic", "n_private": 6, "image_size": 32, "test_per_identity": 2}
TINY_TRAIN = {"arch": "resnet18", "epochs": 2, "batch_size": 16, "device": "cpu"}
# toys that know TINY_DATA, for tests whose effect needs a model that learned its task (TINY_TRAIN stays at
# chance): measured over training seeds 0-5 on the 2-core VM
LEARNED_TARGET = {"arch": "resnet18", "epochs": 24, "batch_size": 8, "augment": "light", "device": "cpu"}  # 92-100%
KNOWING_JUDGE = {"arch": "vgg11", "epochs": 20, "lr": 3e-4, "batch_size": 8, "augment": "none",
                 "device": "cpu"}  # 92% held-out, all 36 training images (6 epochs at lr 1e-3: 40-60%, or chance)


@pytest.fixture(autouse=True, scope="session")
def _data_cache(tmp_path_factory):
    """Folder data sets write their resized copies here, never into the user's ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MIVIS_CACHE", str(tmp_path_factory.mktemp("data-cache")))
    # data folders are read only from allowed roots: the tests' own temporary folders are one
    mp.setenv("MIVIS_DATA_ROOTS", str(tmp_path_factory.getbasetemp()))
    yield
    mp.undo()


@pytest.fixture
def ws(tmp_path, monkeypatch):
    from mivis.runs import Workspace
    monkeypatch.setenv("MIVIS_WORKSPACE", str(tmp_path / "ws"))
    return Workspace(tmp_path / "ws")


@pytest.fixture
def tiny_data():
    return dict(TINY_DATA)


@pytest.fixture
def tiny_train():
    return dict(TINY_TRAIN)


@pytest.fixture
def trained_target(ws, tiny_data, tiny_train):
    from mivis.train import train_run
    return train_run("target", tiny_train, tiny_data, workspace=ws)
