"""Score a batch of texts with a trained artifact, behind one small interface.

    scorer = Scorer.from_artifact(DEFAULT_ARTIFACT)          # ONNX Runtime, CPU, int8 if present
    scorer.predict(["$AAPL guides lower", "Fed holds rates"]) # -> list[Prediction], input order

Backends share one contract (Polygraphy's runner shape): `infer(input_ids, attention_mask) ->
(topic_logits, sentiment_logits)` on int64 numpy arrays. `onnx` (ONNX Runtime) is the CPU
default and imports neither torch nor transformers; `torch` is the reference (fp16 on CUDA);
`tensorrt` runs an engine built by `finsent export --tensorrt` (GPU only). `make_backend` refuses
a backend/precision/device combination it cannot honour (SUPPORTED) rather than quietly running
something else, and `Scorer.check()` scores fixed texts once so a broken model fails at start-up.

Batching: tokenise the whole call once with the fast tokenizer, sort by length, cut into
chunks of at most `max_batch` texts whose padding stays under `pad_waste` of the real tokens,
pad each chunk only to its own longest text (a tweet is never padded to 512). On the CPU a
padded token costs about what a real one does and one more ONNX Runtime run almost nothing, so
ONNX Runtime on the CPU allows CPU_PAD_WASTE (2 %, chunks of nearly equal length); GPUs, where
a launch costs and padding is nearly free, and torch keep MAX_PAD_WASTE (15 %). Measured on
real text (2 cores, AMD EPYC, int8 + fp32 recheck, the worker's 128-text calls): 15 % → 2 %
took 13.5 → 12.1 ms of CPU per text (144 → 164 texts/s), the same recheck rate (12 %) and
agreement with fp32.

Threads: `threads` is ONNX Runtime's intra-op threads per graph (0: ORT's default); `workers`
runs that many chunks of one call at once, each in its own thread (ONNX Runtime's `run` is
thread-safe and releases the GIL), longest chunk first. On a machine whose cores are shared
with other processes (the worker's broker and Postgres), `threads=1, workers=<cores>` wastes
less than `threads=<cores>`: one ORT run never waits at an intra-op barrier for a thread that
another process holds off the core (measured in docs/stream.md, "Threads").

Room: serving (loads a built artifact and scores; torch only for the reference backend).
See models/README.md. The artifact's metadata, errors and Prediction live in models/artifact.py
(torch-free) and are re-exported here.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from models.artifact import (DEFAULT_ARTIFACT, SENTIMENTS, TOPIC_MAX_CHARS, VERSION_MAX_CHARS,  # noqa: F401
                             BackendUnavailable, EntitySentiment, InvalidText, Meta, Prediction, onnx_path,
                             encoder_text, resolve_artifact, storage_problem, validate_texts)
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

from models.entity_inputs import HIDDEN_OUTPUT
from models.entity_inputs import INT8_RECHECK_MARGIN as ENTITY_RECHECK_MARGIN
from models.entity_inputs import LABELS as ENTITY_LABELS
from models.entity_inputs import boundary_flags, encode_pairs, has_head, pad_pairs, target_features
from models.metrics import softmax

BACKENDS = ("onnx", "torch", "tensorrt")
PRECISIONS = ("auto", "fp32", "fp16", "int8")
DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")
# What each backend really runs, by device kind. There is no fp16 ONNX graph (fp16 would load the
# fp32 one), int8 is ONNX Runtime's CPU dynamic quantisation, torch fp16 on CPU is slow and
# untested, and TensorRT engines are fp16 and GPU-only.
SUPPORTED = {"onnx": {"cpu": ("fp32", "int8"), "cuda": ("fp32",)},
             "torch": {"cpu": ("fp32",), "cuda": ("fp32", "fp16")},
             "tensorrt": {"cuda": ("fp16",)}}
# Fixed texts for Scorer.check: a short pair and a long pair, so more than one chunk is run.
CHECK_TEXTS = ("$AAPL beats on revenue, raises guidance", "Fed holds rates steady",
               "Oil slides 4% as OPEC+ output talks stall and energy shares fall across Europe and Asia",
               "Treasury yields jump after a strong payrolls report pushes back bets on rate cuts this year")
MAX_PAD_WASTE = 0.15  # padded tokens allowed per chunk, as a share of its real tokens (GPU backends)
CPU_PAD_WASTE = 0.02  # on the CPU padding costs what real tokens do (module docstring, "Batching")
# Token states of the texts `predict` scored last, kept for the per-entity head (Scorer.entity_sentiment),
# oldest dropped first past this many bytes (fp32: about 1,000 tweets of 40 tokens per 64 MiB).
STATE_CACHE_BYTES = 64 << 20


class Backend(Protocol):
    name: str

    def infer(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class OnnxBackend:
    name = "onnx"

    def __init__(self, path: Path, threads: int = 0, providers: Sequence[str] | None = None, spin: bool = True,
                 exact: bool = True):
        import onnxruntime as ort

        if not Path(path).exists():
            raise FileNotFoundError(f"{path} does not exist; build it with `finsent export`")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads
        if not spin:  # two sessions in one process: idle threads spinning would starve the other's
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = list(providers or ["CPUExecutionProvider"])
        self.session = ort.InferenceSession(str(path), opts, providers=providers)
        self.path = Path(path)
        # ONNX Runtime falls back to the CPU with only a warning when CUDA fails to initialise
        wanted = providers[0] if isinstance(providers[0], str) else providers[0][0]
        if self.session.get_providers()[0] != wanted:
            raise BackendUnavailable(f"ONNX Runtime could not start {wanted} (got {self.session.get_providers()})")
        self.states = HIDDEN_OUTPUT in {o.name for o in self.session.get_outputs()}  # graphs since the shared encoder pass
        self.exact = exact  # fp32 graph (False: int8, whose token states the entity head rechecks)

    def infer(self, input_ids, attention_mask):
        topic, sentiment = self.session.run(["topic_logits", "sentiment_logits"],
                                            {"input_ids": input_ids, "attention_mask": attention_mask})
        return topic, sentiment

    def infer_states(self, input_ids, attention_mask):
        """(topic, sentiment, token states (B, S, H), per row: states from the fp32 graph)."""
        if not self.states:
            raise BackendUnavailable(f"{self.path} has no {HIDDEN_OUTPUT} output (built before the per-entity "
                                     f"head read the item's token states); rebuild it with `finsent export`")
        topic, sentiment, hidden = self.session.run(["topic_logits", "sentiment_logits", HIDDEN_OUTPUT],
                                                    {"input_ids": input_ids, "attention_mask": attention_mask})
        return topic, sentiment, hidden, np.full(len(input_ids), self.exact)


def top2_margin(logits: np.ndarray) -> np.ndarray:
    """p(first) - p(second) per row, on the softmax of the raw logits."""
    p = np.sort(softmax(logits, 1.0), axis=1)
    return p[:, -1] - p[:, -2]


class RecheckedBackend:
    """The int8 graph first; the rows whose top-2 probability margin on either head is under
    `margin` are scored again by the fp32 graph, and its answer is the one returned. Near-ties are
    where int8 rounding flips an argmax, so this buys fp32's answers at close to int8's cost
    (`rechecked / rows` says how many went twice; bench/model.py prints it)."""

    name = "onnx"

    def __init__(self, fast: Backend, exact: Backend, margin: float):
        self.fast, self.exact, self.margin = fast, exact, margin
        self.rows = self.rechecked = 0
        self._count = threading.Lock()  # chunks may run in parallel (Scorer.workers)
        self.states = getattr(fast, "states", False) and getattr(exact, "states", False)

    def infer(self, input_ids, attention_mask):
        topic, sentiment = self.fast.infer(input_ids, attention_mask)
        return self._recheck(input_ids, attention_mask, topic, sentiment)[:2]

    def infer_states(self, input_ids, attention_mask):
        """As infer, plus token states: the int8 graph's, the fp32 graph's for the rows it rescored."""
        topic, sentiment, hidden, exact = self.fast.infer_states(input_ids, attention_mask)
        return self._recheck(input_ids, attention_mask, topic, sentiment, hidden, exact)

    def _recheck(self, input_ids, attention_mask, topic, sentiment, hidden=None, exact=None):
        redo = np.flatnonzero(np.minimum(top2_margin(topic), top2_margin(sentiment)) < self.margin)
        with self._count:
            self.rows += len(input_ids)
            self.rechecked += int(redo.size)
        if redo.size:
            width = int(attention_mask[redo].sum(1).max())  # padding is on the right
            cut = (np.ascontiguousarray(input_ids[redo, :width]), np.ascontiguousarray(attention_mask[redo, :width]))
            topic, sentiment = topic.copy(), sentiment.copy()
            if hidden is None:
                topic[redo], sentiment[redo] = self.exact.infer(*cut)
            else:
                hidden, exact = hidden.copy(), exact.copy()
                topic[redo], sentiment[redo], hidden[redo, :width], _ = self.exact.infer_states(*cut)
                exact[redo] = True
        return topic, sentiment, hidden, exact


class TorchBackend:
    """The reference: the PyTorch module itself (fp32 on CPU, fp16 on CUDA by default)."""

    name = "torch"

    def __init__(self, directory: Path, device: str = "cpu", fp16: bool | None = None):
        import torch

        from models.network import load_artifact

        fp16 = device.startswith("cuda") if fp16 is None else fp16
        self.torch, self.device = torch, device
        self.model, _ = load_artifact(directory, device=device, dtype=torch.float16 if fp16 else torch.float32)

    def infer(self, input_ids, attention_mask):
        torch = self.torch
        with torch.inference_mode():
            t, s = self.model(torch.from_numpy(input_ids).to(self.device), torch.from_numpy(attention_mask).to(self.device))
        return t.float().cpu().numpy(), s.float().cpu().numpy()


class TorchEntityBackend:
    """The reference for the per-entity head: the encoder (once per pair) and the head in PyTorch
    (fp32); a torch scorer reads entities with it."""

    name = "torch"

    def __init__(self, directory: Path, device: str = "cpu"):
        import torch

        from models.entity_head import load_entity_model

        self.torch, self.device = torch, device
        self.model, _ = load_entity_model(directory, device=device)

    def infer(self, input_ids, attention_mask, target_mask, distance):
        torch = self.torch
        with torch.inference_mode():
            args = [torch.from_numpy(x).to(self.device) for x in (input_ids, attention_mask, target_mask, distance)]
            return self.model(*args).float().cpu().numpy()


class StateCache:
    """Token states per text, oldest dropped first past `max_bytes`; thread-safe (the API scores
    from several threads). What `predict` computed is what the per-entity head then reads."""

    def __init__(self, max_bytes: int = STATE_CACHE_BYTES):
        self.max_bytes, self.bytes = max_bytes, 0
        self.items: OrderedDict[str, tuple[np.ndarray, bool]] = OrderedDict()
        self.lock = threading.Lock()

    def put(self, text: str, hidden: np.ndarray, exact: bool) -> None:
        with self.lock:
            old = self.items.pop(text, None)
            if old is not None:
                self.bytes -= old[0].nbytes
            self.items[text] = (hidden, exact)
            self.bytes += hidden.nbytes
            while self.bytes > self.max_bytes and self.items:
                self.bytes -= self.items.popitem(last=False)[1][0].nbytes

    def get(self, text: str) -> tuple[np.ndarray, bool] | None:
        with self.lock:
            return self.items.get(text)


class Tokenizer:
    """The fast (Rust) tokenizer saved in the artifact; truncates, never pads."""

    def __init__(self, directory: Path, max_length: int, mask_urls: bool = True):
        from tokenizers import Tokenizer as _Tok

        self.tok = _Tok.from_file(str(Path(directory) / "tokenizer" / "tokenizer.json"))
        self.tok.no_padding()
        self.tok.enable_truncation(max_length)
        self.pad_id = self.tok.token_to_id("[PAD]") or 0
        self.mask_urls = mask_urls  # the artifact's Meta.mask_urls (models.artifact.encoder_text)

    def encodings(self, texts: Sequence[str]) -> list:
        """The tokenizer's encodings (ids, offsets into the text as given, word ids) of what the
        encoder reads of each text; every tokenisation of the serving side goes through here."""
        return self.tok.encode_batch([encoder_text(t) for t in texts] if self.mask_urls else list(texts))

    def encode(self, texts: list[str]) -> tuple[list[list[int]], list[bool]]:
        encs = self.encodings(texts)
        return [e.ids for e in encs], [bool(e.overflowing) for e in encs]


def pad_chunk(ids: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(x) for x in ids)
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for i, x in enumerate(ids):
        input_ids[i, : len(x)] = x
        mask[i, : len(x)] = 1
    return input_ids, mask


def length_buckets(lengths: list[int], max_batch: int, pad_waste: float = MAX_PAD_WASTE) -> list[list[int]]:
    """Indices sorted by length, cut where a chunk is full or padding would exceed `pad_waste`."""
    chunks, chunk, real = [], [], 0
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        n = lengths[i]  # the longest so far, since sorted
        if chunk and (len(chunk) == max_batch or (len(chunk) + 1) * n > (real + n) * (1 + pad_waste)):
            chunks.append(chunk)
            chunk, real = [], 0
        chunk.append(i)
        real += n
    return chunks + ([chunk] if chunk else [])


class Scorer:
    """Tokenise once, length-bucket, one backend call per chunk, predictions in input order."""

    def __init__(self, backend: Backend, tokenizer: Tokenizer, meta: Meta, max_batch: int = 64,
                 directory: Path | None = None, precision: str = "fp32", threads: int = 0, workers: int = 1,
                 pad_waste: float = MAX_PAD_WASTE):
        self.backend, self.tokenizer, self.meta, self.max_batch = backend, tokenizer, meta, max_batch
        self.pad_waste = pad_waste  # length_buckets: CPU_PAD_WASTE on the CPU (module docstring, "Batching")
        self.threads = threads  # ONNX Runtime intra-op threads of an extra fp32 graph too (0: ORT's default)
        self.workers = max(1, int(workers))  # chunks of one call run at once (module docstring, "Threads")
        self._pool: ThreadPoolExecutor | None = None  # started on the first call with several chunks
        self._pool_lock = threading.Lock()
        self.precision = precision  # of the item graph; an int8 one gives int8-derived token states
        self.directory = directory  # the artifact, for the per-entity head (loaded on first use)
        self._entity_backend = None  # torch scorers: TorchEntityBackend; else the numpy head
        self._fp32 = None  # model.onnx on the CPU, where the item backend cannot give fp32 token states
        # the per-entity head reads the token states `predict` computed (None: not kept, e.g. no head)
        self.states = (StateCache() if directory is not None and has_head(directory)
                       and getattr(backend, "states", False) else None)
        self.entity_recheck_margin = ENTITY_RECHECK_MARGIN  # for int8-derived token states
        # counters for benchmarks: head readings; texts encoded for the head (not kept from predict);
        # texts encoded again in fp32 for near-ties on int8 states; readings replaced by those
        self.entity_pairs = self.entity_reencoded = self.entity_fp32_texts = self.entity_rechecked = 0

    @property
    def version(self) -> str:
        return self.meta.version

    @classmethod
    def from_artifact(cls, directory: Path | str = DEFAULT_ARTIFACT, backend: str = "onnx", precision: str = "auto",
                      device: str = "cpu", max_batch: int = 64, threads: int = 0,
                      recheck_margin: float | None = None, workers: int = 1) -> Scorer:
        """recheck_margin (int8 only): rescore near-ties with the fp32 graph (RecheckedBackend);
        None takes the artifact's own `int8_recheck_margin`, 0 runs the int8 graph alone.
        workers: chunks of one call run at once (ONNX Runtime on the CPU only; else 1)."""
        directory = resolve_artifact(directory)
        meta = Meta.load(directory)
        margin = meta.int8_recheck_margin if recheck_margin is None else recheck_margin
        precision = resolve_precision(directory, backend, precision, device)
        workers = workers if backend == "onnx" and device == "cpu" else 1
        return cls(make_backend(directory, backend, precision, device, threads, margin),
                   Tokenizer(directory, meta.max_length, meta.mask_urls), meta, max_batch, directory=directory,
                   precision=precision, threads=threads, workers=workers,
                   pad_waste=CPU_PAD_WASTE if (backend, device) == ("onnx", "cpu") else MAX_PAD_WASTE)

    def logits(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[bool]]:
        errors = validate_texts(texts)
        if errors:
            raise InvalidText(errors)
        ids, truncated = self.tokenizer.encode(list(texts))
        topic = np.zeros((len(ids), len(self.meta.topics)), np.float32)
        sent = np.zeros((len(ids), len(self.meta.sentiments)), np.float32)
        chunks = length_buckets([len(x) for x in ids], self.max_batch, self.pad_waste)
        states = self.states is not None
        for chunk, out in zip(chunks, self._run_chunks(lambda c: self.infer_ids([ids[i] for i in c], states=states),
                                                       chunks)):
            topic[chunk], sent[chunk] = out[0], out[1]
            if states:
                hidden, exact = out[2], out[3]
                for r, i in enumerate(chunk):  # copied out of the padded chunk: the cache holds real tokens only
                    self.states.put(texts[i], np.ascontiguousarray(hidden[r, :len(ids[i])]), bool(exact[r]))
        return topic, sent, truncated

    def _run_chunks(self, run, chunks: list[list[int]]) -> list:
        """run(chunk) for every chunk, results in chunk order: one after another, or with `workers`
        > 1, that many at once, the longest (last, as length_buckets sorts) submitted first so that
        no long chunk is left to run alone at the end. An exception from any chunk is raised here."""
        if self.workers == 1 or len(chunks) == 1:
            return [run(c) for c in chunks]
        pool = self._executor()
        futures = {k: pool.submit(run, chunks[k]) for k in reversed(range(len(chunks)))}
        return [futures[k].result() for k in range(len(chunks))]

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="finsent-scorer")
            return self._pool

    def infer_ids(self, ids: list[list[int]], states: bool = False, backend=None):
        """Raw (topic, sentiment) logits of one chunk of token id lists (padded here), checked for
        shape; with `states`, also the token states (B, S, H) and per row whether they are fp32's."""
        backend = backend or self.backend
        out = (backend.infer_states if states else backend.infer)(*pad_chunk(ids, self.tokenizer.pad_id))
        t, s = out[0], out[1]
        # a (1, k) answer would broadcast silently over the whole chunk
        want = ((len(ids), len(self.meta.topics)), (len(ids), len(self.meta.sentiments)))
        if (np.shape(t), np.shape(s)) != want:
            raise RuntimeError(f"{backend.name} backend returned shapes {np.shape(t)}, {np.shape(s)}; "
                               f"expected {want}")
        if states and (np.ndim(out[2]) != 3 or np.shape(out[2])[:2] != (len(ids), max(map(len, ids)))):
            raise RuntimeError(f"{backend.name} backend returned token states of shape {np.shape(out[2])} "
                               f"for {len(ids)} texts of at most {max(map(len, ids))} tokens")
        return out

    def probabilities(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[bool]]:
        t, s, truncated = self.logits(texts)
        return softmax(t, self.meta.temperature_topic), softmax(s, self.meta.temperature_sentiment), truncated

    def check(self) -> Scorer:
        """Score CHECK_TEXTS and raise RuntimeError unless every probability row is finite, in
        [0, 1] and sums to 1 with the right shape, and unless the version and labels fit the
        columns of a scored row (storage_problem); the worker runs this before it consumes and
        before a hot swap."""
        problem = storage_problem(self.meta)
        if problem:
            raise RuntimeError(f"model check failed ({self.backend.name}, {self.version!r}): {problem}")
        try:
            t, s, _ = self.probabilities(CHECK_TEXTS)
        except Exception as exc:
            raise RuntimeError(f"model check failed ({self.backend.name}, {self.version}): {exc}") from exc
        for head, p, classes in (("topic", t, self.meta.topics), ("sentiment", s, self.meta.sentiments)):
            problem = _probability_problem(p, (len(CHECK_TEXTS), len(classes)))
            if problem:
                raise RuntimeError(f"model check failed ({self.backend.name}, {self.version}): {head} {problem}")
        return self

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        if not len(texts):
            return []
        t_probs, s_probs, truncated = self.probabilities(texts)
        return [self.prediction(t_probs[i], s_probs[i], truncated[i]) for i in range(len(texts))]

    def explain(self, text: str):
        """Per-word attributions for this text's sentiment and topic (models/explain.py)."""
        from models.explain import explain

        return explain(self, text)

    # -- per-entity sentiment (inputs: models/entity_inputs.py; head: entity_head.py) -------------

    def entity_backend(self):
        """The target-aware head: the torch reference (encoder + head per pair) when this scorer
        runs torch, else the head in numpy (models.entity_head.NumpyHead) on the item graph's token
        states. BackendUnavailable where the artifact has no head."""
        if self._entity_backend is None:
            d = self.directory
            if d is None or not has_head(d):
                raise BackendUnavailable(f"artifact {d} has no per-entity sentiment head (entity_head.safetensors)")
            if self.backend.name == "torch":
                self._entity_backend = TorchEntityBackend(d, device=getattr(self.backend, "device", "cpu"))
            else:
                from models.entity_head import NumpyHead

                self._entity_backend = NumpyHead.load(d)
        return self._entity_backend

    def entity_sentiment(self, texts_and_spans: Sequence[tuple[str, Sequence[Sequence[int]]]]
                         ) -> list[EntitySentiment]:
        """Sentiment toward one entity per (text, spans) pair; spans are the entity's [start, end)
        character offsets in text (Entity.spans from models.entities). Input order is kept.
        The head reads each text's token states: those `predict` just computed for it (the item
        graph outputs them), else one pass of the item graph here. With int8 states, a pair whose
        top-2 margin is under INT8_RECHECK_MARGIN is read again on fp32 states."""
        if not len(texts_and_spans):
            return []
        texts = [p[0] for p in texts_and_spans]
        errors = validate_texts(texts)
        if errors:
            raise InvalidText(errors)
        head = self.entity_backend()
        spans = [[tuple(x) for x in p[1]] for p in texts_and_spans]
        if self.backend.name == "torch":
            return [_entity_result(p) for p in self._torch_entity_probs(head, texts, spans)]
        by_text: dict[str, list[int]] = {}
        for k, t in enumerate(texts):
            by_text.setdefault(t, []).append(k)
        states = self._token_states(list(by_text))
        probs = np.zeros((len(texts), len(ENTITY_LABELS)), np.float32)
        features = self._target_features(list(by_text), by_text, spans)
        redo = []
        for t, rows in by_text.items():
            hidden, exact = states[t]
            probs[rows] = softmax(head.logits(hidden, *features[t]), 1.0)
            if not exact and (_prob_margin(probs[rows]) < self.entity_recheck_margin).any():
                redo.append(t)
        self.entity_pairs += len(texts)
        if redo:  # near-ties read on int8 states: fp32 states for those texts, the head again
            fp32 = self._token_states(redo, exact=True)
            for t in redo:
                rows = np.array(by_text[t])
                low = _prob_margin(probs[rows]) < self.entity_recheck_margin
                probs[rows[low]] = softmax(head.logits(fp32[t][0], *features[t]), 1.0)[low]
                self.entity_rechecked += int(low.sum())
        return [_entity_result(p) for p in probs]

    def _target_features(self, texts: list[str], by_text: dict[str, list[int]], spans) -> dict:
        """Per text: (target masks, distance buckets) of its pairs, on the item pass's tokens."""
        out = {}
        for t, enc in zip(texts, self.tokenizer.encodings(texts)):
            n = len(enc.ids)
            flags = boundary_flags(enc.offsets, n, t)  # once per text, however many entities it names
            rows = [target_features(enc.offsets, spans[k], n, t, flags) for k in by_text[t]]
            out[t] = (np.stack([m for m, _ in rows]), np.stack([d for _, d in rows]))
        return out

    def _token_states(self, texts: list[str], exact: bool = False) -> dict[str, tuple[np.ndarray, bool]]:
        """Token states per text: kept from `predict` where it has them (exact: fp32 ones only),
        else one pass of the item graph (exact: the fp32 graph) over the others, length-bucketed."""
        out, missing = {}, []
        for t in texts:
            got = self.states.get(t) if self.states is not None else None
            if got is not None and (got[1] or not exact):
                out[t] = got
            else:
                missing.append(t)
        if not missing:
            return out
        backend = self._exact_states_backend() if exact else self._states_backend()
        if exact:
            self.entity_fp32_texts += len(missing)
        else:
            self.entity_reencoded += len(missing)
        ids, _ = self.tokenizer.encode(missing)
        chunks = length_buckets([len(x) for x in ids], self.max_batch, self.pad_waste)
        runs = self._run_chunks(lambda c: self.infer_ids([ids[i] for i in c], states=True, backend=backend), chunks)
        for chunk, (_, _, hidden, fp32) in zip(chunks, runs):
            for r, i in enumerate(chunk):
                out[missing[i]] = (np.ascontiguousarray(hidden[r, :len(ids[i])]), bool(fp32[r]))
                if self.states is not None:
                    self.states.put(missing[i], *out[missing[i]])
        return out

    def _states_backend(self):
        """The item backend where it outputs token states (int8 + fp32 recheck: the int8 graph alone,
        the head rechecks its own near-ties), else model.onnx (fp32) on the CPU."""
        if not getattr(self.backend, "states", False):
            return self._exact_states_backend()
        return self.backend.fast if isinstance(self.backend, RecheckedBackend) else self.backend

    def _exact_states_backend(self):
        b = self.backend
        if getattr(b, "states", False) and isinstance(b, RecheckedBackend):
            return b.exact
        if getattr(b, "states", False) and getattr(b, "exact", False):
            return b
        if self._fp32 is None:  # an int8 graph alone, TensorRT, ...: the fp32 graph on the CPU, loaded once
            fp32 = OnnxBackend(onnx_path(self.directory, "fp32"), threads=self.threads, spin=False)
            if not fp32.states:
                raise BackendUnavailable(f"{fp32.path} has no {HIDDEN_OUTPUT} output (built before the per-entity "
                                         f"head read the item's token states); rebuild it with `finsent export`")
            self._fp32 = fp32
        return self._fp32

    def _torch_entity_probs(self, backend, texts: list[str], spans) -> np.ndarray:
        rows = encode_pairs(self.tokenizer, texts, spans, self.meta.max_length)
        probs = np.zeros((len(rows), len(ENTITY_LABELS)), np.float32)
        for chunk in length_buckets([len(r[0]) for r in rows], self.max_batch, self.pad_waste):
            probs[chunk] = softmax(backend.infer(**pad_pairs([rows[i] for i in chunk], self.tokenizer.pad_id)), 1.0)
        return probs

    def entities_sentiment(self, texts: Sequence[str], entity_spans: Sequence[Sequence[Sequence[Sequence[int]]]],
                           predictions: Sequence[Prediction]) -> list[list[EntitySentiment]]:
        """The design rule of issue 19, for a batch the worker has already scored with `predict`:
        per item, one EntitySentiment per entity (entity_spans[i] = [entity.spans, ...]). An item
        naming one entity (or none) keeps the item's sentiment; only items naming several go
        through the target-aware head, all of them in one batched call."""
        out: list[list[EntitySentiment]] = []
        pairs, where = [], []
        for i, (text, ents) in enumerate(zip(texts, entity_spans)):
            if len(ents) <= 1:
                p = predictions[i]
                out.append([EntitySentiment(p.sentiment, p.score, p.sentiment_probs, "item") for _ in ents])
            else:
                out.append([None] * len(ents))  # type: ignore[list-item]
                for j, spans in enumerate(ents):
                    pairs.append((text, spans))
                    where.append((i, j))
        for (i, j), r in zip(where, self.entity_sentiment(pairs)):
            out[i][j] = r
        return out

    def prediction(self, tp: np.ndarray, sp: np.ndarray, truncated: bool) -> Prediction:
        """The Prediction for one row of (topic, sentiment) probabilities."""
        m = self.meta
        s_probs = {k: round(float(v), 6) for k, v in zip(m.sentiments, sp)}
        ti = int(tp.argmax())
        return Prediction(
            topic=m.topics[ti], topic_confidence=round(float(tp[ti]), 6),
            topic_probs={k: round(float(v), 6) for k, v in zip(m.topics, tp)},
            sentiment=m.sentiments[int(sp.argmax())], sentiment_probs=s_probs,
            score=round(s_probs.get("positive", 0.0) - s_probs.get("negative", 0.0), 6),
            model_version=m.version, truncated=truncated)


def _prob_margin(p: np.ndarray) -> np.ndarray:
    """p(first) - p(second) per row of probabilities (top2_margin for logits)."""
    p = np.sort(p, axis=1)
    return p[:, -1] - p[:, -2]


def _entity_result(p: np.ndarray) -> EntitySentiment:
    d = {k: round(float(v), 6) for k, v in zip(ENTITY_LABELS, p)}
    return EntitySentiment(ENTITY_LABELS[int(p.argmax())], round(d["positive"] - d["negative"], 6), d)


def _probability_problem(p: np.ndarray, shape: tuple[int, int]) -> str | None:
    if p.shape != shape:
        return f"shape {p.shape}, expected {shape}"
    if not np.isfinite(p).all():
        return "has non-finite probabilities"
    if (p < 0).any() or (p > 1).any() or not np.allclose(p.sum(1), 1.0, atol=1e-3):
        return f"rows are not distributions (sums {p.sum(1).round(4).tolist()})"
    return None


def resolve_precision(directory: Path, backend: str, precision: str, device: str) -> str:
    """Check the combination against SUPPORTED (no imports) and return the concrete precision."""
    for value, allowed, what in ((backend, BACKENDS, "backend"), (precision, PRECISIONS, "precision")):
        if value not in allowed:
            raise BackendUnavailable(f"unknown {what} {value!r}; use one of {allowed}")
    if not DEVICE.match(device):
        raise BackendUnavailable(f"device {device!r} must be cpu, cuda or cuda:N")
    kind = device.split(":")[0]
    runs = SUPPORTED[backend].get(kind)
    if not runs:
        raise BackendUnavailable(f"backend {backend} does not run on {kind} (only on {', '.join(SUPPORTED[backend])})")
    precision = _auto_precision(directory, backend, kind) if precision == "auto" else precision
    if precision not in runs:
        raise BackendUnavailable(f"backend {backend} on {kind} runs {' or '.join(runs)}, not {precision}")
    return precision


def _auto_precision(directory: Path, backend: str, kind: str) -> str:
    if backend == "onnx":  # int8 where it was built and pays on this CPU, else the fp32 graph
        return "int8" if kind == "cpu" and onnx_path(directory, "int8").exists() and cpu_has_fast_int8() else "fp32"
    return "fp32" if kind == "cpu" else "fp16"


# CPU flags (Linux /proc/cpuinfo) of the int8 dot-product instructions ONNX Runtime's int8 kernels use
FAST_INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"})


@functools.cache
def cpu_has_fast_int8(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU has int8 dot-product instructions (x86 AVX-512 VNNI, AVX-VNNI or AMX; Arm
    dot product or i8mm), where the int8 graph is the fast one. Without them the int8 graph plus
    its fp32 recheck of near-ties is slower than the fp32 graph alone: on a 2-core AMD EPYC (Zen 2,
    AVX2 only), 12.3 against 11.2 ms of CPU per real text, 139 against 154 texts/s in
    bench/model.py (int8 alone 158), so `auto` takes fp32 there (exact, and no recheck). Where the
    flags cannot be read (not Linux), int8, as before; FINSENT_PRECISION=int8|fp32 decides either way."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return True
    flags = {f for line in text.splitlines() if line.split(":")[0].strip() in ("flags", "Features")
             for f in line.split(":", 1)[1].split()}
    return bool(flags & FAST_INT8_FLAGS)


def require_torch_cuda(device: str) -> None:
    if device == "cpu":
        return
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailable(f"device {device} asked for, but torch.cuda.is_available() is False "
                                 f"(torch {torch.__version__}, built for CUDA {torch.version.cuda})")
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise BackendUnavailable(f"device {device} asked for, but only {torch.cuda.device_count()} GPU(s) visible")


def onnx_providers(device: str) -> list | None:
    if device == "cpu":
        return None
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise BackendUnavailable(f"device {device} asked for, but this onnxruntime has no CUDA provider "
                                 f"({ort.get_available_providers()}); install onnxruntime-gpu")
    return [("CUDAExecutionProvider", {"device_id": int(device.partition(":")[2] or 0)}), "CPUExecutionProvider"]


def make_backend(directory: Path, backend: str, precision: str = "auto", device: str = "cpu", threads: int = 0,
                 recheck_margin: float = 0.0) -> Backend:
    """The backend asked for, or BackendUnavailable saying why this combination cannot run here."""
    directory = Path(directory)
    precision = resolve_precision(directory, backend, precision, device)
    if backend == "onnx":
        recheck = precision == "int8" and recheck_margin > 0
        fast = OnnxBackend(onnx_path(directory, precision), threads=threads, providers=onnx_providers(device),
                           spin=not recheck, exact=precision != "int8")
        if not recheck:
            return fast
        return RecheckedBackend(fast, OnnxBackend(onnx_path(directory, "fp32"), threads=threads, spin=False),
                                recheck_margin)
    require_torch_cuda(device)
    if backend == "torch":
        return TorchBackend(directory, device=device, fp16=precision == "fp16")
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailable(f"the tensorrt backend needs the TensorRT Python package ({exc})") from exc
    from models.tensorrt import TensorRTBackend

    return TensorRTBackend.from_artifact(directory, device=device)
