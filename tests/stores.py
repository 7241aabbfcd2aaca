"""Comparing a feature store with a reference store of the same records."""

from __future__ import annotations

import torch

from probes.store import FeatureStore


def assert_same_store(store: FeatureStore, reference: FeatureStore, n: int | None = None) -> None:
    """Same records, labels, splits and groups; the same features up to float32 noise.

    A resumed or multi-process extraction composes its batches differently, so the float32
    forward pass runs on other shapes, and on some CPUs through other BLAS kernels. The tiny
    test models are deliberately peaked (``initializer_range`` 0.3), which amplifies that
    rounding: CI once saw 8e-4 on a hidden-state mean whose column reaches 9 (about 1e-4 of
    the column's scale). So values are compared per column, within ``1e-3`` of the column's
    largest magnitude, and every row must also be nearer its own reference row than any
    other: a lost, duplicated or misplaced row moves it by the spread between records,
    which that tolerance alone could miss.
    """
    got, want = store.read(), reference.read()
    assert got.ids == want.ids and len(set(got.ids)) == len(got.ids)
    if n is not None:
        assert len(got.ids) == n
    assert got.splits == want.splits and got.groups == want.groups
    assert torch.equal(got.labels, want.labels)
    assert torch.equal(got.skipped, want.skipped) and torch.equal(got.n_tokens, want.n_tokens)
    _assert_close(got.values, want.values, got.names, got.ids)
    if want.steps is not None or got.steps is not None:  # the step table, keyed the same way
        gs, ws = got.steps, want.steps
        assert gs is not None and ws is not None, "one store has a step table, the other not"
        assert gs.names == ws.names
        for key in ("record", "step", "spans", "labels"):
            assert torch.equal(getattr(gs, key), getattr(ws, key)), key
        pairs = zip(gs.record.tolist(), gs.step.tolist(), strict=True)
        keys = [f"{got.ids[r]}#{s}" for r, s in pairs]
        _assert_close(gs.values, ws.values, gs.names, keys)


def _assert_close(a: torch.Tensor, b: torch.Tensor, names: list[str], ids: list[str]) -> None:
    """``a`` ``(N, F)`` equals ``b`` within the tolerance above, row for row."""
    assert torch.equal(a.isnan(), b.isnan()), "NaN in different places"
    a, b = a.nan_to_num(0.0), b.nan_to_num(0.0)
    scale = b.abs().amax(dim=0)  # (F,)
    excess = (a - b).abs() - (1e-6 + 1e-4 * b.abs() + 1e-3 * scale)
    if (excess > 0).any():
        row, col = divmod(int(excess.argmax()), a.shape[1])
        raise AssertionError(
            f"{names[col]} of {ids[row]}: {a[row, col].item()!r} against "
            f"{b[row, col].item()!r} (column scale {scale[col].item():.3g})"
        )
    z = scale.clamp_min(1e-12)
    distance = torch.cdist(a / z, b / z)  # (N, N) between got rows and reference rows
    own = distance.diagonal()
    assert bool((own <= distance.min(dim=1).values).all()), "a row is nearer another record"
