"""Streaming capture: reduce each layer's attention to features inside the forward pass.

Forward hooks on the requested decoder layers hand that layer's attention ``(B, H, T, T)`` and
output hidden states ``(B, T, D)``; the hook reduces the heads (one ``(T, T)`` float64 graph
per text under ``heads: mean``) and lets the attention go, so peak memory holds ONE layer's
attention, never all ``L`` of them (as ``output_attentions=True`` does). The eigensolves wait
until the forward pass is done (or until ``pending_mb`` of graphs are waiting) and then run
``eig_workers`` at a time, each on one thread: running them between the layers left a core
idle, and running them beside the forward pass made its OpenMP threads fight the solver.
Confounds (token count, log-probability, perplexity, predictive entropy) come from the logits
of the same pass and are computed beside the eigensolves. Those logits are computed block by
block from the LM head's input, never as one ``(B, T, V)`` tensor (about 1 GB per 1,024-token
text with a 262k vocabulary), once the first batch has shown that the head alone gives the
model's logits; otherwise the model's full logits are used.

With ``steps`` set, the hook of each step layer also keeps its head-mean attention ``(n, n)``
for the per-step features (``probes.stepfeatures``), solved beside the layers' spectra, and
the confound task adds each step's token count, mean log-prob and entropy: every text gets a
step table ``(S, Fs)`` from the same forward pass.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .config import CaptureConfig, ConfigError
from .confounds import (
    CONFOUND_NAMES,
    STEP_CONFOUNDS,
    length_confounds,
    step_confounds,
    token_confounds,
    token_scores,
)
from .errors import ProbesError
from .features import (
    HeadDiagonals,
    diagonal_features,
    feature_names,
    graph_features,
    reduce_heads,
    resolve_families,
    stacked_graph_features,
)
from .models import EAGER_FIX, AttentionUnavailableError, FrozenLM, find_final_norm
from .spectral import NegativeEigenvalueError
from .stepfeatures import STEP_FEATURES, step_features
from .threads import lapack_threads, torch_threads
from .tokens import TextTooLongError, Tokenized, tokenize_records, tokenize_texts


class NonFiniteAttentionError(ProbesError, FloatingPointError):
    """Attention holds NaN or inf; the message names record, layer and head."""


class SpectrumError(ValueError):
    """A Laplacian had a negative eigenvalue (a bug); the message names record, layer, head."""


@dataclass
class Extraction:
    """Features of ``N`` texts.

    Attributes:
        ids: ``N`` record ids.
        names: ``F`` feature names, ``family/Lxx[/Hyy][/kz]`` then ``confound/*``.
        values: ``(N, F)`` float64; rows of skipped records are NaN.
        n_tokens: ``(N,)`` tokens read per text (after truncation; 0 when skipped).
        truncated: ``(N,)`` bool, the text was cut at ``max_tokens``.
        skipped: ``(N,)`` bool, the text was longer than ``max_tokens`` under ``overflow: skip``.
        step_names: ``Fs`` per-step feature names, ``step/<feature>/Lxx`` then
            ``step_confound/*`` (empty without ``CaptureConfig.steps``).
        step_values: ``N`` tensors ``(S_i, Fs)`` float64, one row per step of text ``i``
            (in :attr:`steps` order; NaN for a step cut off by truncation).
        steps: ``N`` tuples of :class:`probes.steps.StepSpan`.
    """

    ids: list[str]
    names: list[str]
    values: Tensor
    n_tokens: Tensor
    truncated: Tensor
    skipped: Tensor
    step_names: list[str] = field(default_factory=list)
    step_values: list[Tensor] = field(default_factory=list)
    steps: list[tuple] = field(default_factory=list)

    def column(self, name: str) -> Tensor:
        """``(N,)`` values of one feature."""
        return self.values[:, self.names.index(name)]


def resolve_layers(layers: str | Sequence[int], n_layers: int, option: str = "layers") -> list[int]:
    """Layer indices in ``[0, n_layers)``; negatives count from the end; out of range raises."""
    if layers == "all":
        return list(range(n_layers))
    resolved = []
    for i in layers:
        if not -n_layers <= i < n_layers:
            raise ConfigError(
                f"option {option!r}: index {i} is out of range for a model with {n_layers} "
                f"layers (valid: 0..{n_layers - 1} or -{n_layers}..-1)"
            )
        resolved.append(i % n_layers)
    return sorted(set(resolved))


@dataclass
class _LayerJob:
    """One text's layer, waiting for its eigensolves."""

    row: int  # the text's row in the batch
    cols: slice  # its columns in the feature row
    record: str
    layer: int
    graphs: Tensor  # (G, n, n) in the solver dtype, an owned copy (the attention is freed)
    hidden: Tensor | None  # (n, D) when a family needs the hidden states
    counts: dict[str, int] = field(default_factory=dict)  # filled by the solver thread

    @property
    def nbytes(self) -> int:
        extra = 0 if self.hidden is None else self.hidden.numel() * self.hidden.element_size()
        return self.graphs.numel() * self.graphs.element_size() + extra


@dataclass
class _StepJob:
    """One text's layer, waiting for its per-step features."""

    row: int
    cols: slice  # the layer's columns in the text's step rows
    record: str
    layer: int
    graph: Tensor  # (n, n) float64 head-mean attention over the analysed span
    spans: list[tuple[int, int]]  # each step's tokens [first, stop) in the span

    @property
    def nbytes(self) -> int:
        return self.graph.numel() * self.graph.element_size()

    def solve(self) -> Tensor:
        """``(S, len(STEP_FEATURES))`` on the CPU."""
        try:
            return step_features(self.graph.cpu(), self.spans)
        except NegativeEigenvalueError as err:
            raise SpectrumError(
                f"record {self.record!r}, layer {self.layer}, step features: {err}"
            ) from err


@contextlib.contextmanager
def _last_position_only(head: torch.nn.Module | None, seen: dict) -> Iterator[None]:
    """While active, the LM head keeps its input ``(B, T, D)`` in ``seen["h"]`` and computes
    the logits of the last position only: the confounds then compute theirs block by block
    from that input (a full ``(B, T, V)`` tensor is ~1 GB per 1,024-token text with
    Gemma-3's 262k vocabulary), and the model's own last-position logits check them."""
    if head is None:
        yield
        return

    def keep_last(module, args):
        if len(args) != 1 or args[0].dim() != 3:
            return None  # an unexpected call: leave it alone (the check then fails)
        seen["h"] = args[0]
        return (args[0][:, -1:, :],)

    handle = head.register_forward_pre_hook(keep_last)
    try:
        yield
    finally:
        handle.remove()


class SpectralCapture:
    """Turns texts into feature rows with one forward pass per batch.

    Args:
        lm: the frozen model.
        cfg: what to compute.
        eig_threads: intra-op threads of each eigensolve (the forward pass keeps torch's
            setting). One by default: on a shared machine, LAPACK's OpenMP threads spin
            against a busy core and a 452x452 ``eigvalsh`` went from 0.017 s to 5.2 s with two
            threads; idle, two threads gain nothing at these sizes (0.0152 s vs 0.0149 s).
        eig_workers: eigensolves run at once after the forward pass (default: torch's thread
            count, one per core, on the CPU; one on a GPU, where the graphs of a batch are
            solved together on the device). Separate single-threaded solves on separate
            graphs use the cores without OpenMP threads spinning against each other.
        pending_mb: solve early, inside the forward pass, once the graphs waiting for their
            eigensolves exceed this many MiB (bounds memory for long texts and big batches).
        batched: solve the graphs of one size (a text's layers and heads; texts of equal
            length) together, in one batched call on the thread that runs the model, where
            they were made. Default: on a GPU, where the graphs then never leave it and one
            call replaces one per text and layer; ``True`` runs that path on the CPU.

    Example:
        >>> from probes.models import load_frozen
        >>> cap = SpectralCapture(load_frozen("tiny-llama"), CaptureConfig(layers=(0,)))
        >>> ex = cap.extract(["2 + 3 = 5"])
        >>> ex.values.shape == (1, len(cap.names))
        True
    """

    def __init__(
        self,
        lm: FrozenLM,
        cfg: CaptureConfig,
        eig_threads: int | None = 1,
        eig_workers: int | None = None,
        pending_mb: float = 256,
        batched: bool | None = None,
    ):
        self.lm = lm
        self.cfg = cfg
        self.eig_threads = eig_threads
        on_gpu = lm.device.type != "cpu"
        self.batched = on_gpu if batched is None else batched
        self.eig_workers = max(1, eig_workers or (1 if on_gpu else torch.get_num_threads()))
        # Non-finite attention, one (H,) flag tensor per text and layer, read once per batch
        # (or early solve): a read inside the hooks would stall a GPU once per text and layer.
        self._finite_checks: list[tuple[str, int, Tensor]] = []
        self.pending_bytes = pending_mb * 2**20
        # Confound logits block by block from the LM head's input, once the first batch has
        # shown that the head alone gives the model's logits (see _head_rows).
        self._head_blocks, self._head_checked = True, False
        self._head32: tuple[Tensor, Tensor, Tensor | None] | None = None
        self._pool: ThreadPoolExecutor | None = None
        #: Graphs solved so far; ``refined``: extreme eigenvalues certified by the mixed-
        #: precision refinement; ``fallbacks``: not certified, solved again densely.
        self.solver_counts = {"graphs": 0, "refined": 0, "fallbacks": 0}
        self.layers = resolve_layers(cfg.layers, lm.n_layers)
        self.probe_layer = _probe_layer(cfg.probe_layer, lm.n_layers)
        self.families = resolve_families(cfg)
        self.spectral_names = feature_names(self.families, self.layers, lm.n_heads, cfg)
        graph_fams = [f for f in self.families if not f.diagonal]
        self._graph_width = len(feature_names(graph_fams, [0], lm.n_heads, cfg))
        self._has_graph = bool(graph_fams)
        self._has_diagonal = any(f.diagonal for f in self.families)
        # The diagonal families read every requested layer and, for LapEigvals' cross-layer
        # graph, the next one: those layers are hooked too (for their diagonals only).
        hooked = set(self.layers)
        if any(f.needs_next_layer for f in self.families):
            if lm.n_layers < 2:
                raise ConfigError("family 'lapeig' spans layers: the model has only one")
            hooked |= {i + 1 for i in self.layers if i + 1 < lm.n_layers}
        self._diag_hooked = hooked
        # The step layers are hooked too, for their step features only.
        self.step_layers: list[int] = []
        if cfg.steps is not None:
            wanted = self.layers if cfg.step_layers == "all" else cfg.step_layers
            self.step_layers = resolve_layers(wanted, lm.n_layers, "step_layers")
        self._hooked = sorted(hooked | set(self.step_layers))
        width = lm.model.config.get_text_config().hidden_size if self.probe_layer is not None else 0
        self.probe_names = [f"hidden_mean/L{self.probe_layer:02d}/k{i:03d}" for i in range(width)]
        self.names = self.spectral_names + self.probe_names + list(CONFOUND_NAMES)
        self.step_names = [
            f"step/{name}/L{layer:02d}" for layer in self.step_layers for name in STEP_FEATURES
        ]
        if cfg.steps is not None:
            self.step_names += list(STEP_CONFOUNDS)
        self._per_layer = len(self.spectral_names) // max(1, len(self.layers))
        self._needs_hidden = any(f.needs_hidden for f in self.families)
        positions = lm.max_positions
        self.max_tokens = min(cfg.max_tokens, positions) if positions else cfg.max_tokens

    def extract(
        self,
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        span_starts: Sequence[int] | None = None,
        batch_size: int = 4,
        progress: bool = False,
    ) -> Extraction:
        """Features of every text, read as given (a plain text), with the special tokens of
        the model's tokenization contract. :meth:`extract_records` renders records first.

        Args:
            texts: ``N`` texts.
            ids: ``N`` record ids for messages and results (default ``"0"``, ``"1"``...).
            span_starts: ``N`` character offsets where the analysed span starts; required
                (and only read) when the config's ``span`` is ``solution``.
            batch_size: texts per forward pass (padded on the right).
            progress: show a progress bar with texts/s and tokens/s.

        Raises:
            ValueError: an empty text, a span shorter than 2 tokens, or a text over
                ``max_tokens`` under ``overflow: error``; raised before any forward pass.
            NonFiniteAttentionError: NaN or inf in attention (names record, layer, head).
        """
        ids = [str(i) for i in range(len(texts))] if ids is None else [str(i) for i in ids]
        if self.cfg.span == "solution" and span_starts is None:
            raise ConfigError("option 'span' is 'solution' but no span_starts were given")
        starts = span_starts if self.cfg.span == "solution" else None
        special = self.lm.identity["tokenization"]["add_special_tokens"]
        toks = tokenize_texts(
            self.lm.tokenizer, texts, ids, starts, self.max_tokens, self.cfg.overflow, special
        )
        return self._extract_tokens(toks, ids, batch_size, progress)

    def extract_records(self, records, batch_size: int = 4, progress: bool = False) -> Extraction:
        """Features of records, rendered and tokenized under the model's tokenization
        contract (text format, special tokens) and the span rule, as extraction does."""
        toks = tokenize_records(
            records,
            self.lm.tokenizer,
            self.lm.identity["tokenization"],
            self.cfg.span,
            self.max_tokens,
            self.cfg.overflow,
            self.cfg.steps,
        )
        return self._extract_tokens(toks, [r.id for r in records], batch_size, progress)

    def _extract_tokens(
        self, toks: list[Tokenized], ids: list[str], batch_size: int, progress: bool
    ) -> Extraction:
        N, F = len(toks), len(self.names)
        values = torch.full((N, F), float("nan"), dtype=torch.float64)
        step_values = [self._empty_steps(t) for t in toks]
        # Longest first: batches of similar lengths waste little on padding.
        order = sorted(
            (i for i, t in enumerate(toks) if not t.skipped), key=lambda i: -len(toks[i].ids)
        )
        bar = tqdm(total=N, disable=not progress, unit="text", desc="capture")
        bar.update(N - len(order))
        start, n_tok = time.perf_counter(), 0
        for b in range(0, len(order), batch_size):
            batch = order[b : b + batch_size]
            values[batch], steps = self._forward([toks[i] for i in batch])
            for i, rows in zip(batch, steps, strict=True):
                step_values[i] = rows
            n_tok += sum(len(toks[i].ids) for i in batch)
            bar.update(len(batch))
            elapsed = max(time.perf_counter() - start, 1e-9)
            bar.set_postfix(texts_s=f"{bar.n / elapsed:.2f}", tokens_s=f"{n_tok / elapsed:.0f}")
        bar.close()
        return Extraction(
            ids=ids,
            names=list(self.names),
            values=values,
            n_tokens=torch.tensor([len(t.ids) for t in toks], dtype=torch.long),
            truncated=torch.tensor([t.truncated for t in toks]),
            skipped=torch.tensor([t.skipped for t in toks]),
            step_names=list(self.step_names),
            step_values=step_values,
            steps=[t.steps for t in toks],
        )

    def _empty_steps(self, t: Tokenized) -> Tensor:
        """``(S, Fs)`` NaN step rows of a text (a skipped one keeps these)."""
        return torch.full((len(t.steps), len(self.step_names)), float("nan"), dtype=torch.float64)

    def features_of(self, tokens: Sequence[Tokenized]) -> tuple[Tensor, list[Tensor]]:
        """Features of already tokenized texts: ``(B, F)`` rows and ``B`` step tables
        ``(S_i, Fs)``; skipped texts give NaN rows."""
        out = torch.full((len(tokens), len(self.names)), float("nan"), dtype=torch.float64)
        steps = [self._empty_steps(t) for t in tokens]
        keep = [i for i, t in enumerate(tokens) if not t.skipped]
        if keep:
            out[keep], kept = self._forward([tokens[i] for i in keep])
            for i, rows in zip(keep, kept, strict=True):
                steps[i] = rows
        return out, steps

    def _forward(self, batch: list[Tokenized]) -> tuple[Tensor, list[Tensor]]:
        """``(B, F)`` features and ``B`` step tables ``(S_b, Fs)`` of one right-padded batch."""
        device = self.lm.device
        T = max(len(t.ids) for t in batch)
        pad = self.lm.tokenizer.pad_token_id
        input_ids = torch.full((len(batch), T), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), T), dtype=torch.long)
        for b, t in enumerate(batch):
            input_ids[b, : len(t.ids)] = torch.tensor(t.ids)
            mask[b, : len(t.ids)] = 1
        width = len(self.spectral_names) + len(self.probe_names)
        out = torch.empty((len(batch), width + len(CONFOUND_NAMES)), dtype=torch.float64)
        step_out = [self._empty_steps(t) for t in batch]
        pending: list[_LayerJob | _StepJob] = []
        diagonals: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}
        self._finite_checks.clear()
        head = self.lm.model.get_output_embeddings() if self._head_blocks else None
        seen: dict[str, Tensor] = {}
        with (
            self._hooks(batch, out, step_out, pending, diagonals),
            _last_position_only(head, seen),
            torch.inference_mode(),
        ):
            logits = self.lm.model(
                input_ids=input_ids.to(device), attention_mask=mask.to(device), use_cache=False
            ).logits  # (B, T, V); (B, 1, V) when the head saw the last position only
        self._raise_if_nonfinite()
        rows = self._head_rows(head, seen, logits)
        if rows is None and head is not None:  # the check failed: this batch again, in full
            return self._forward(batch)
        if self._has_diagonal:
            self._diagonal_features(batch, diagonals, out)

        def confounds(b: int, t: Tokenized) -> tuple[Tensor, Tensor]:
            """The text's ``(7,)`` confounds and its steps' ``(S, 3)``."""
            n = len(t.ids)
            if rows is None:
                text_logits = logits[b, :n]  # (n, V)
            else:
                text_logits = partial(rows, b)  # blocks of positions, (block, V) at a time
            first = max(t.span_start, 1)
            logp, ent = token_scores(text_logits, input_ids[b, :n], first)  # (n - first,)
            tok = token_confounds(logp, ent, n - t.span_start)  # (4,)
            spans = [(t.span_start + a, t.span_start + z) for _, _, a, z in t.steps]
            return torch.cat([tok, length_confounds(t)]), step_confounds(logp, ent, spans, first)

        def write(b: int, result: tuple[Tensor, Tensor]) -> None:
            out[b, width:] = result[0]
            if self.step_names:
                step_out[b][:, -len(STEP_CONFOUNDS) :] = result[1]

        tasks = [(partial(confounds, b, t), partial(write, b)) for b, t in enumerate(batch)]
        self._run(tasks, pending, out, step_out)
        return out, step_out

    def _head_rows(self, head, seen: dict, logits: Tensor):
        """``rows(b, positions) -> (n, V)`` logits computed from the LM head's input, or
        ``None`` for the full ``logits``. On the first batch the head applied to the last
        position must reproduce the model's own logits there; a model that changes them
        after the head (Gemma-2's soft-capping, a logit scale) fails the check, and every
        batch then uses the full logits (``self._head_blocks`` is turned off, once)."""
        if head is None or "h" not in seen:
            if head is not None:
                self._head_blocks = False
            return None
        hidden = seen["h"]  # (B, T, D)
        head32 = self._float32_head(head)

        def rows(b: int, positions: slice) -> Tensor:
            with torch.inference_mode():  # confound tasks may run in worker threads
                return head32(hidden[b, positions])

        if not self._head_checked:
            with torch.inference_mode():
                mine = head32(hidden[:, -1:, :])
            theirs = logits[:, -1:, :].float()
            scale = float(theirs.abs().max()) or 1.0
            # The model's own logits are rounded to its dtype; ours are float32.
            tol = max(1e-4, 4 * torch.finfo(logits.dtype).eps)
            if theirs.shape != mine.shape or not torch.allclose(
                mine.to(theirs.device), theirs, rtol=tol, atol=tol * scale
            ):
                self._head_blocks = False
                return None
            self._head_checked = True
        return rows

    def _float32_head(self, head: torch.nn.Module) -> Callable[[Tensor], Tensor]:
        """The LM head computing float32 logits ``(..., V)`` from its input: a bfloat16 logit
        keeps 3 significant digits, too few for log-probabilities and entropies. A linear
        head in another dtype gets a float32 copy of its weight (kept: ``V x D x 4`` bytes,
        2.1 GB for a 128k-token vocabulary at D = 4096)."""
        weight = getattr(head, "weight", None)
        if not isinstance(head, torch.nn.Linear) or weight.dtype == torch.float32:
            return lambda x: head(x).float()
        if self._head32 is None or self._head32[0] is not weight:
            bias = None if head.bias is None else head.bias.float()
            self._head32 = (weight, weight.float(), bias)
        _, w32, b32 = self._head32
        return lambda x: torch.nn.functional.linear(x.to(w32.device, torch.float32), w32, b32)

    def _diagonal_features(self, batch, diagonals: dict, out: Tensor) -> None:
        """Fill the diagonal families' columns from every layer's per-head diagonals."""
        last = self.lm.n_layers - 1
        for b in range(len(batch)):
            for slot, layer in enumerate(self.layers):
                diag, colsum = (x.cpu() for x in diagonals[b, layer])
                nxt = diagonals[b, layer + 1][0].cpu() if (b, layer + 1) in diagonals else None
                stats = HeadDiagonals(diag, colsum, nxt, layer == 0, layer == last, self.cfg)
                start = slot * self._per_layer + self._graph_width
                out[b, start : (slot + 1) * self._per_layer] = diagonal_features(
                    stats, self.families
                )

    def _run(self, tasks: list[tuple[Callable, Callable]], pending, out, step_out) -> None:
        """Run ``tasks`` and solve every pending layer, ``eig_workers`` at a time.

        A task ``(fn, write)`` calls ``write(fn())``: ``fn`` runs on a solver thread,
        ``write`` on this one. Only this thread writes ``out`` and ``step_out``: under
        Lightning's predict loop they are inference tensors, which other threads (outside
        inference mode) may not modify.
        """
        self._raise_if_nonfinite()
        steps = [job for job in pending if isinstance(job, _StepJob)]
        jobs = [job for job in pending if not isinstance(job, _StepJob)]
        pending.clear()
        # On a GPU the graphs never leave it: those of one size (a text's layers, heads)
        # are solved in one batched call, here, and read back once.
        stacked = [job for job in jobs if self.batched and job.hidden is None]
        for bucket in _by_shape(stacked):
            self._solve_stacked(bucket, out)
        rest = [job for job in jobs if not (self.batched and job.hidden is None)]
        tasks = tasks + [
            (partial(self._solve, job), _writer(out, job.row, job.cols)) for job in rest
        ]
        tasks += [(job.solve, _writer(step_out[job.row], slice(None), job.cols)) for job in steps]
        if self.eig_workers == 1:
            with torch_threads(self.eig_threads):
                for fn, write in tasks:
                    write(fn())
            self._count(rest)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                self.eig_workers,
                "probes-eig",
                initializer=_set_threads,
                initargs=(self.eig_threads,),
            )
        # Held here, on the thread that may set OpenBLAS's limit (probes.threads).
        with lapack_threads(1):
            futures = [self._pool.submit(fn) for fn, _ in tasks]
            for (_, write), future in zip(tasks, futures, strict=True):
                write(future.result())  # re-raises the first error, in task order
        self._count(rest)

    def _count(self, jobs: list[_LayerJob]) -> None:
        """Add the solved jobs' graph counts to :attr:`solver_counts` (this thread only)."""
        for job in jobs:
            self._add_counts(job.graphs.shape[0], job.counts)

    def _add_counts(self, graphs: int, counts: dict[str, int]) -> None:
        self.solver_counts["graphs"] += graphs
        for key in ("refined", "fallbacks"):
            self.solver_counts[key] += counts.get(key, 0)

    def _raise_if_nonfinite(self) -> None:
        """Raise naming record, layer and head if any attention seen since the last check
        held NaN or inf: one read per device for all of them."""
        checks, self._finite_checks = self._finite_checks, []
        by_device: dict[torch.device, list[int]] = {}
        for i, (_, _, flags) in enumerate(checks):
            by_device.setdefault(flags.device, []).append(i)
        for rows in by_device.values():
            flags = torch.stack([checks[i][2] for i in rows])  # (n, H)
            if bool(flags.any()):
                row, head = (int(x) for x in flags.nonzero()[0])
                record, layer, _ = checks[rows[row]]
                raise NonFiniteAttentionError(
                    f"record {record!r}: attention of layer {layer}, head {head} holds NaN or "
                    "inf (try dtype float32 if the model runs in float16/bfloat16)"
                )

    def _solve_stacked(self, jobs: list[_LayerJob], out: Tensor) -> None:
        """Solve jobs whose graphs share one shape and device in one batched call."""
        graphs = torch.stack([job.graphs for job in jobs])  # (J, G, n, n)
        counts: dict[str, int] = {}
        try:
            feats = stacked_graph_features(graphs, self.families, self.cfg, counts).cpu()
        except (NegativeEigenvalueError, ValueError):
            for job in jobs:  # one by one, so that the error names its record and layer
                self._solve(job)
            raise
        for job, row in zip(jobs, feats, strict=True):
            out[job.row, job.cols] = row
        self._add_counts(graphs.shape[0] * graphs.shape[1], counts)

    def _solve(self, job: _LayerJob) -> Tensor:
        """``(per_layer,)`` features of one pending layer."""
        try:
            feats = graph_features(job.graphs, job.hidden, self.families, self.cfg, job.counts)
            return feats.cpu()
        except NegativeEigenvalueError as err:
            head = "mean of heads" if self.cfg.heads == "mean" else f"head {err.index[0]}"
            raise SpectrumError(f"record {job.record!r}, layer {job.layer}, {head}: {err}") from err
        except ValueError as err:  # a non-causal attention pattern (causal_laplacian_lower)
            raise SpectrumError(f"record {job.record!r}, layer {job.layer}: {err}") from err

    def close(self) -> None:
        """Stop the eigensolver threads (they are started again when needed)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __getstate__(self) -> dict:
        # Threads do not pickle (spawned DDP workers); each process starts its own.
        return {**self.__dict__, "_pool": None}

    @contextlib.contextmanager
    def _hooks(self, batch: list[Tokenized], out: Tensor, step_out: list, pending, diagonals):
        """Install the per-layer hooks; always removed, even when the forward pass fails."""
        handles = []
        slots = {layer: slot for slot, layer in enumerate(self.layers)}
        for layer in self._hooked:
            stash: dict[str, Tensor] = {}
            attn_mod = self.lm.attention_module(layer)
            handles.append(attn_mod.register_forward_hook(_stash_attention(stash, layer)))
            hook = self._layer_hook(
                stash, layer, slots.get(layer), batch, out, step_out, pending, diagonals
            )
            handles.append(self.lm.layers[layer].register_forward_hook(hook))
        if self.probe_layer is not None:
            cols = slice(len(self.spectral_names), len(self.spectral_names) + len(self.probe_names))
            probe = self.lm.layers[self.probe_layer]
            handles.append(probe.register_forward_hook(_mean_hidden_hook(batch, out, cols)))
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def _signal(self, hidden: Tensor, b: int, s: int, n: int, layer: int) -> Tensor:
        """``(n - s, D)`` the graph signal of one text's layer: its output hidden states; for
        the last layer after the final norm, as the LM head (and output_hidden_states, and
        Geometry of Reason) sees it."""
        x = hidden[b, s:n]
        if layer == self.lm.n_layers - 1:
            norm = find_final_norm(self.lm.model)
            if norm is None:
                raise ConfigError(
                    "graph-signal features of the last layer need the model's final norm, "
                    f"which {type(self.lm.model).__name__} does not expose; leave that layer out"
                )
            x = norm(x.unsqueeze(0))[0]
        return x.clone()

    def _layer_hook(self, stash, layer, slot, batch, out, step_out, pending: list, diagonals):
        """``slot`` is the layer's place among the requested layers (``None``: hooked only
        for its diagonals, which the previous layer's LapEigvals graph needs, or for its
        step features)."""
        graphs_wanted = slot is not None and self._has_graph
        if slot is not None:
            start = slot * self._per_layer
            cols = slice(start, start + self._graph_width)
        steps_wanted = layer in self.step_layers
        keep_diagonals = self._has_diagonal and layer in self._diag_hooked
        if steps_wanted:
            at = self.step_layers.index(layer) * len(STEP_FEATURES)
            step_cols = slice(at, at + len(STEP_FEATURES))

        def hook(module, args, output):
            attn = stash.pop("attn")  # (B, H, T, T); dropped when this hook returns
            hidden = output[0] if isinstance(output, tuple) else output  # (B, T, D)
            for b, t in enumerate(batch):
                s, n = t.span_start, len(t.ids)
                a = attn[b, :, s:n, s:n]  # (H, n - s, n - s)
                # A per-head sum carries any NaN or inf (attention is bounded, so it cannot
                # overflow) without a (H, T, T) boolean copy; read later, once per batch.
                # The diagonal families' column sums are that sum's first half: one pass.
                colsum = a.sum(dim=-2, dtype=torch.float64)  # (H, n - s)
                self._finite_checks.append((t.id, layer, ~torch.isfinite(colsum.sum(dim=-1))))
                if keep_diagonals:  # (H, n - s) each, float64, on the model's device
                    diagonals[b, layer] = (a.diagonal(dim1=-2, dim2=-1).double(), colsum)
                if graphs_wanted:
                    graphs = reduce_heads(a, self.cfg)  # (G, n - s, n - s), owned
                    x = self._signal(hidden, b, s, n, layer) if self._needs_hidden else None
                    pending.append(_LayerJob(b, cols, t.id, layer, graphs, x))
                if steps_wanted and t.steps:
                    graph = a.mean(dim=0, dtype=torch.float64)  # (n - s, n - s), owned
                    spans = [(first, stop) for _, _, first, stop in t.steps]
                    pending.append(_StepJob(b, step_cols, t.id, layer, graph, spans))
            if sum(job.nbytes for job in pending) > self.pending_bytes:
                self._run([], pending, out, step_out)

        return hook


def _writer(dest: Tensor, *index) -> Callable[[Tensor], None]:
    """``write(value)``: ``dest[index] = value`` (on the thread that calls it)."""

    def write(value: Tensor) -> None:
        dest[index] = value

    return write


def _by_shape(jobs: list[_LayerJob]) -> list[list[_LayerJob]]:
    """Jobs grouped by the shape, dtype and device of their graphs, in order."""
    groups: dict[tuple, list[_LayerJob]] = {}
    for job in jobs:
        key = (tuple(job.graphs.shape), job.graphs.dtype, job.graphs.device)
        groups.setdefault(key, []).append(job)
    return list(groups.values())


def _set_threads(n: int | None) -> None:
    # Per thread: OpenMP and MKL keep their thread counts per calling thread, so the forward
    # pass on the main thread keeps its own.
    if n is not None:
        torch.set_num_threads(n)


def _probe_layer(option: int | str | None, n_layers: int) -> int | None:
    if option is None:
        return None
    if option == "middle":
        return n_layers // 2
    return resolve_layers([option], n_layers, "probe_layer")[0]


def _mean_hidden_hook(batch: list[Tokenized], out: Tensor, cols: slice):
    """Mean over each text's analysed span of a layer's output hidden states."""

    def hook(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output  # (B, T, D)
        means = [
            hidden[b, t.span_start : len(t.ids)].double().mean(dim=0) for b, t in enumerate(batch)
        ]
        out[: len(batch), cols] = torch.stack(means).cpu()  # one copy to the host per batch

    return hook


def _stash_attention(stash: dict[str, Tensor], layer: int):
    def hook(module, args, output):
        weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
        if weights is None:
            raise AttentionUnavailableError(
                f"layer {layer}'s attention returned no weights (SDPA or flash attention); "
                f"{EAGER_FIX}"
            )
        stash["attn"] = weights

    return hook


__all__ = [
    "Extraction",
    "NonFiniteAttentionError",
    "SpectralCapture",
    "SpectrumError",
    "TextTooLongError",
    "resolve_layers",
]
