"""W&B details that an offline test run cannot show: the store is a true input online, and
W&B's own mode variable wins."""

from __future__ import annotations

from probes.config import WandbConfig
from probes.tracking import Tracker, run_mode


class FakeRun:
    def __init__(self):
        self.used, self.logged = [], []

    def use_artifact(self, artifact):
        self.used.append(artifact)

    def log_artifact(self, artifact, aliases=()):
        self.logged.append(artifact)


def test_the_store_is_an_input_online_and_logged_offline(tmp_path):
    (tmp_path / "index.json").write_text("{}")
    for mode, where in (("online", "used"), ("offline", "logged")):
        tracker = Tracker(WandbConfig(mode="disabled"), "x", tmp_path, {})
        tracker.run, tracker.mode = FakeRun(), mode
        assert tracker.log_store(tmp_path, "store-x", {"records": 3}, upload=False) == "store-x"
        (artifact,) = getattr(tracker.run, where)
        assert artifact.type == "feature-store" and artifact.metadata == {"records": 3}
        assert [e.ref for e in artifact.manifest.entries.values()]  # by reference


def test_wandb_mode_variable_wins_and_a_sweep_logs_online(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_SWEEP_ID", raising=False)
    assert run_mode("offline") == "offline"
    monkeypatch.setenv("WANDB_SWEEP_ID", "abc")
    assert run_mode("offline") == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert run_mode("offline") == "disabled"
