"""One device setting: ``model.device`` decides where the model, the Trainer, scoring,
evaluation and generation run; CUDA asked for where there is none is an error, never a
silent CPU run. (The CUDA runs themselves: tests/test_gpu.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from probes import devices
from probes.bundle import Scorer
from probes.cli import main as cli
from probes.config import ConfigError, ExtractConfig, ModelConfig, from_dict
from probes.devices import DeviceError
from probes.models import load_frozen

ROOT = Path(__file__).parents[1]
NO_CUDA = "CUDA is not available"
needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="tests the CUDA-less path")


@pytest.fixture
def two_fake_gpus(monkeypatch):
    """torch reports two GPUs (nothing is run on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_the_trainer_follows_the_model_device(two_fake_gpus, monkeypatch):
    """The Trainer's accelerator and devices come from model.device: a model on GPU 1 is
    run by a Trainer on GPU 1, and each DDP process takes its local rank's GPU."""
    assert devices.trainer_placement(devices.process_device("cuda:1", 1), 1) == {
        "accelerator": "gpu",
        "devices": [1],
    }
    assert devices.processes_per_node("cuda", "auto") == 2
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert devices.process_device("cuda", 2) == torch.device("cuda", 1)
    assert devices.trainer_placement(torch.device("cuda", 1), 2) == {
        "accelerator": "gpu",
        "devices": 2,
    }
    with pytest.raises(DeviceError, match="each process takes the GPU of its local rank"):
        devices.process_device("cuda:1", 2)
    with pytest.raises(DeviceError, match="has 2 GPU"):
        devices.resolve_device("cuda:2")
    assert devices.resolve_device("auto") == torch.device("cuda")


def test_lightning_cannot_move_the_model(tiny_llama):
    """The second device setting that once ran a ``model.device: cuda`` model on the CPU
    was Lightning moving the model with its module: the module now holds no parameters."""
    from probes.capture import SpectralCapture
    from probes.config import CaptureConfig
    from probes.extract import ExtractionModule

    module = ExtractionModule(SpectralCapture(tiny_llama, CaptureConfig(layers=(0,))))
    assert list(module.parameters()) == []


def test_an_accelerator_option_is_refused_for_model_device():
    with pytest.raises(ConfigError, match="option 'trainer.accelerator': the device is set once"):
        from_dict(ExtractConfig, {"trainer": {"accelerator": "gpu"}})
    with pytest.raises(ConfigError, match="option 'model.device': expected auto, cpu, cuda"):
        from_dict(ExtractConfig, {"model": {"device": "gpu"}})
    with pytest.raises(ConfigError, match="option 'model.device_map': spreads the model"):
        from_dict(ExtractConfig, {"model": {"device": "cpu", "device_map": "auto"}})


@needs_no_cuda
def test_cuda_without_cuda_is_an_error_that_says_so():
    with pytest.raises(DeviceError, match=f"option 'model.device' is 'cuda', but {NO_CUDA}"):
        load_frozen(ModelConfig("tiny-llama", device="cuda"))
    assert load_frozen(ModelConfig("tiny-llama", device="auto")).device.type == "cpu"


@needs_no_cuda
def test_train_with_the_model_on_cuda_exits_non_zero_and_says_why(tmp_path):
    cmd = [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs/tiny.yaml")]
    cmd += ["model.device=cuda", f"results_dir={tmp_path / 'results'}"]
    cmd += [f"data.source={tmp_path / 'data.jsonl'}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 1, out.stderr[-2000:]
    assert NO_CUDA in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "data.jsonl").exists()  # refused before any work


def test_scoring_takes_a_device_and_a_dtype(tmp_path, solution_bundle, capsys):
    texts = ["Problem: 3 + 4?\nSolution: 3 + 4 = 7.", "Problem: 9 + 9?\nSolution: 9 + 9 = 19."]
    full = Scorer.load(solution_bundle, device="cpu")
    half = Scorer.load(solution_bundle, device="cpu", dtype="bfloat16")
    p32, p16 = full.predict_proba(texts)[:, 1], half.predict_proba(texts)[:, 1]
    assert full._capture.lm.model.dtype == torch.float32
    assert half._capture.lm.model.dtype == torch.bfloat16
    assert np.all(np.isfinite(p16)) and not np.array_equal(p16, p32)  # really another run
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match=NO_CUDA):
            Scorer.load(solution_bundle, device="cuda")
        src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
        src.write_text(json.dumps({"id": "a", "text": texts[0]}) + "\n")
        argv = ["score", "--scorer", str(solution_bundle), "--input", str(src)]
        assert cli([*argv, "--output", str(dst), "--device", "cuda"]) == 1
        assert NO_CUDA in capsys.readouterr().err and not dst.exists()
        assert cli([*argv, "--output", str(dst), "--device", "cpu", "--dtype", "bfloat16"]) == 0
        assert json.loads(dst.read_text())["p_valid"] == pytest.approx(p16[0], abs=1e-12)


@needs_no_cuda
def test_evaluation_and_generation_take_the_device(tmp_path, solution_bundle, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "a", "text": "1 + 1 = 2", "label": 1}) + "\n")
    argv = ["evaluate", "--bundles", str(solution_bundle), "--data", str(data), "--device", "cuda"]
    assert cli(argv) == 1
    assert NO_CUDA in capsys.readouterr().err
    build = ["data", "build", "generate", "--out", str(tmp_path / "g.jsonl"), "--n", "2"]
    assert cli([*build, "--model", "tiny-llama", "--device", "cuda"]) == 1
    assert NO_CUDA in capsys.readouterr().err and not (tmp_path / "g.jsonl").exists()
