"""probes: read the spectral geometry of a frozen LLM's attention to judge math reasoning.

Quick start::

    from probes import CaptureConfig, SpectralCapture, load_frozen

    lm = load_frozen("smollm2-135m")            # embedded SmolLM2-135M, eager attention, frozen
    capture = SpectralCapture(lm, CaptureConfig(layers=(10, 20), heads="mean"))
    ex = capture.extract(["Problem: ... Solution: 48 / 2 = 24 ..."])
    ex.names[:3], ex.values.shape               # ('eig_low/L10/k0', ...), (1, F)
"""

from .bundle import BundleError, Scorer
from .capture import Extraction, NonFiniteAttentionError, SpectralCapture, SpectrumError
from .config import CaptureConfig, ConfigError, ModelConfig
from .features import FAMILIES
from .models import AttentionUnavailableError, FrozenLM, ModelPackageMissingError, load_frozen

__version__ = "0.1.0"

__all__ = [
    "FAMILIES",
    "BundleError",
    "Scorer",
    "AttentionUnavailableError",
    "CaptureConfig",
    "ConfigError",
    "Extraction",
    "FrozenLM",
    "ModelConfig",
    "ModelPackageMissingError",
    "NonFiniteAttentionError",
    "SpectralCapture",
    "SpectrumError",
    "load_frozen",
]
