"""Text family: a small Transformer encoder classifier trained from scratch (no pretrained
weights), with a TF-IDF + logistic-regression baseline.

Tokenizer (word level, documented choice): lower-cased text split into words (letters/digits
with an optional apostrophe suffix) and single punctuation/symbol characters (``!``, ``£``,
``:`` matter for spam); every run of digits becomes a shape token ``<dN>`` (N = its length,
capped at 12), so phone numbers and prices generalise instead of filling the vocabulary. A
word level vocabulary is enough at these sizes (5k SMS, 38k templates) and keeps identity
terms whole, which the identity audit relies on; subword units would help mostly with
misspellings. The vocabulary is built from the **training split only** (tokens seen at least
``min_freq`` times, the ``max_vocab`` most frequent, ties broken alphabetically) and lives in
the fitted preprocessor, which is saved with the model (MLflow pyfunc).

Under DP the vocabulary would be released with the model outside the (ε, δ) claim (``min_freq``
counts occurrences, so a name repeated in one message passes it), so ``private=True`` uses the
hashing trick instead (Weinberger et al. 2009, "Feature Hashing for Large Scale Multitask
Learning", ICML): the same tokenizer, each token mapped to one of ``hash_buckets`` embedding
rows by CRC-32 of its UTF-8 bytes (a stable hash; Python's ``hash`` is salted per process).
Nothing is fitted: the preprocessor holds no token string, and a token seen in one training
message leaves no trace in it. Collisions share a row; unseen tokens get their bucket's row,
not ``<unk>``.

Model (Vaswani et al. 2017, pre-LayerNorm blocks as in GPT-2 / Xiong et al. 2020): token
embedding + learned position embedding -> ``n_layers`` x [LayerNorm -> multi-head
self-attention built from ``nn.Linear`` (padding keys masked) -> residual; LayerNorm ->
feed-forward (GELU) -> residual] -> LayerNorm -> mean over non-padding tokens -> one logit.
No BatchNorm, no ``nn.MultiheadAttention``: Opacus ``ModuleValidator`` accepts it, and it runs
under fast gradient clipping ("ghost"): position ids are made ``.contiguous()`` and each
embedding table is looked up exactly once per forward pass (REFERENCE.md traps).
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from impactflow.models.base import Family, Roles, check_param
from impactflow.task_kind import TaskKind

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
_TOKEN = re.compile(r"[0-9]+|[^\W\d_]+(?:'[^\W\d_]+)?|[^\w\s]", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Lower-cased word/punctuation tokens; digit runs -> ``<dN>`` (see module doc)."""
    out = []
    for tok in _TOKEN.findall(str(text).lower()):
        out.append(f"<d{min(len(tok), 12)}>" if tok.isdigit() else tok)
    return out


@dataclass(frozen=True)
class TextConfig:
    max_len: int = 64  # tokens kept per text (longer texts are truncated)
    max_vocab: int = 20000
    min_freq: int = 2
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 128
    dropout: float = 0.1
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 64
    epochs: int = 10
    patience: int = 3
    hash_buckets: int = 8192  # under DP only: token -> one of these rows by CRC-32 (no vocabulary)

    def __post_init__(self) -> None:
        for name in (
            "max_len",
            "max_vocab",
            "min_freq",
            "d_model",
            "n_heads",
            "n_layers",
            "d_ff",
            "batch_size",
            "epochs",
            "patience",
            "hash_buckets",
        ):
            check_param(int(getattr(self, name)) > 0, f"{name}={getattr(self, name)} must be > 0")
        check_param(
            self.d_model % self.n_heads == 0, f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}"
        )
        check_param(0.0 <= self.dropout < 1.0, f"dropout={self.dropout} must be in [0, 1)")
        check_param(self.lr > 0, f"lr={self.lr} must be > 0")
        check_param(self.weight_decay >= 0, f"weight_decay={self.weight_decay} must be >= 0")


class TextPreprocessor:
    """Texts -> int64 token-id matrix (N, max_len), 0-padded; vocabulary from the fitted rows only."""

    def __init__(self, text_column: str, max_len: int, max_vocab: int, min_freq: int) -> None:
        self.text_column = text_column
        self.max_len = int(max_len)
        self.max_vocab = int(max_vocab)
        self.min_freq = int(min_freq)
        self.vocab: dict[str, int] | None = None

    def _texts(self, df) -> list[str]:
        return ["" if v is None else str(v) for v in df[self.text_column].tolist()]

    def fit(self, df) -> "TextPreprocessor":
        counts = Counter(tok for text in self._texts(df) for tok in tokenize(text))
        kept = sorted((t for t, c in counts.items() if c >= self.min_freq), key=lambda t: (-counts[t], t))
        self.vocab = {PAD: PAD_ID, UNK: UNK_ID}
        for tok in kept[: self.max_vocab]:
            self.vocab[tok] = len(self.vocab)
        return self

    def transform(self, df) -> np.ndarray:
        if self.vocab is None:
            raise RuntimeError("TextPreprocessor.transform called before fit")
        texts = self._texts(df)
        X = np.zeros((len(texts), self.max_len), dtype=np.int64)
        for i, text in enumerate(texts):
            ids = [self.vocab.get(t, UNK_ID) for t in tokenize(text)[: self.max_len]] or [UNK_ID]
            X[i, : len(ids)] = ids  # an empty text becomes one <unk>: every row has a token
        return X

    def fit_transform(self, df) -> np.ndarray:
        return self.fit(df).transform(df)

    def spec(self) -> dict[str, int]:
        return {"vocab_size": len(self.vocab or {}), "max_len": self.max_len}

    def secret_alphabet(self) -> tuple[str, ...]:
        """Planted secrets' words (``models/memorisation.py``): made-up words, each one token here."""
        from impactflow.models.memorisation import pseudo_words

        return pseudo_words()

    def components(self) -> dict[str, str]:
        return {
            "tokenizer": "data-independent: fixed word tokenizer (models/text.py tokenize)",
            "vocabulary": (
                f"fitted on training rows: tokens seen at least {self.min_freq} times, at most {self.max_vocab}"
            ),
        }

    def summary(self) -> str:
        return "a vocabulary fitted on the training rows"


def hashed_id(token: str, buckets: int) -> int:
    """Embedding row of ``token`` under hashing: 2 + CRC-32(UTF-8 bytes) mod ``buckets`` (rows 0
    and 1 stay ``<pad>`` and ``<unk>``); the same in every process and on every machine."""
    return 2 + zlib.crc32(token.encode("utf-8")) % buckets


class HashingTextPreprocessor:
    """DP tokenizer (see the module doc): texts -> int64 (N, max_len) rows of hashed token ids,
    0-padded; an empty text is one ``<unk>``. Nothing is fitted: ``fit`` reads no row."""

    def __init__(self, text_column: str, max_len: int, buckets: int) -> None:
        self.text_column = text_column
        self.max_len = int(max_len)
        self.buckets = int(buckets)

    def fit(self, df) -> "HashingTextPreprocessor":
        return self

    def transform(self, df) -> np.ndarray:
        texts = ["" if v is None else str(v) for v in df[self.text_column].tolist()]
        X = np.zeros((len(texts), self.max_len), dtype=np.int64)
        for i, text in enumerate(texts):
            ids = [hashed_id(t, self.buckets) for t in tokenize(text)[: self.max_len]] or [UNK_ID]
            X[i, : len(ids)] = ids
        return X

    def fit_transform(self, df) -> np.ndarray:
        return self.transform(df)

    def spec(self) -> dict[str, int]:
        return {"vocab_size": self.buckets + 2, "max_len": self.max_len}

    def secret_alphabet(self) -> tuple[str, ...]:
        """Planted secrets' words: made-up words, each one hashed token here."""
        from impactflow.models.memorisation import pseudo_words

        return pseudo_words()

    def components(self) -> dict[str, str]:
        return {
            "tokenizer": (
                "data-independent: fixed word tokenizer (models/text.py tokenize), tokens "
                f"hashed by CRC-32 into {self.buckets} buckets; no vocabulary, no token strings stored"
            ),
            "max_len": f"data-independent: configured ({self.max_len} tokens)",
        }

    def summary(self) -> str:
        return f"a fixed tokenizer hashing tokens into {self.buckets} buckets, no vocabulary"


def make_preprocessor(roles: Roles, config: TextConfig | None = None, private: bool = False):
    """The vocabulary ``TextPreprocessor``, or under DP the data-independent
    ``HashingTextPreprocessor``."""
    config = config or TextConfig()
    column = roles.extra.get("text") or roles.features[0]
    if private:
        return HashingTextPreprocessor(column, config.max_len, config.hash_buckets)
    return TextPreprocessor(column, config.max_len, config.max_vocab, config.min_freq)


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention from ``nn.Linear`` (Opacus-compatible)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        h = self.n_heads
        q, k, v = self.qkv(x).view(B, L, 3, h, D // h).permute(2, 0, 3, 1, 4)  # 3 x (B, h, L, D/h)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(D // h)
        att = att.masked_fill(pad[:, None, None, :], float("-inf")).softmax(dim=-1)
        y = (self.drop(att) @ v).transpose(1, 2).reshape(B, L, D).contiguous()
        return self.proj(y)


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, n_heads, dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x), pad))
        return x + self.drop(self.ff(self.ln2(x)))


class ChunkedInference(nn.Module):
    """``forward`` = ``_forward`` on the whole batch in training, in ``EVAL_CHUNK``-row chunks
    at inference: bounds the (B, h, L, L) attention memory of scoring many texts at once."""

    EVAL_CHUNK = 256
    _forward: Callable[[torch.Tensor], torch.Tensor]  # the subclass's forward pass on one chunk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training and x.shape[0] > self.EVAL_CHUNK:
            return torch.cat([self._forward(c) for c in x.split(self.EVAL_CHUNK)])
        return self._forward(x)


class TransformerClassifier(ChunkedInference):
    """Token ids (B, L) -> one logit per text (B,). Batches are trimmed to their longest text."""

    def __init__(
        self, vocab_size: int, max_len: int, d_model: int, n_heads: int, n_layers: int, d_ff: int, dropout: float
    ) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([Block(d_model, n_heads, d_ff, dropout) for _ in range(n_layers)])
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, 1)

    def _forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.long()
        keep = ids != PAD_ID
        length = max(int(keep.sum(dim=1).max()), 1) if ids.numel() else 1
        ids, keep = ids[:, :length].contiguous(), keep[:, :length]
        B, L = ids.shape
        positions = torch.arange(L, device=ids.device).unsqueeze(0).expand(B, L).contiguous()
        x = self.drop(self.tok(ids) + self.pos(positions))
        pad = ~keep
        for block in self.blocks:
            x = block(x, pad)
        x = self.ln(x)
        w = keep.unsqueeze(-1).to(x.dtype)
        pooled = (x * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)
        return self.head(pooled).squeeze(-1)


def build_model(spec: dict[str, int], config: TextConfig) -> TransformerClassifier:
    return TransformerClassifier(
        spec["vocab_size"],
        spec["max_len"],
        config.d_model,
        config.n_heads,
        config.n_layers,
        config.d_ff,
        config.dropout,
    )


def make_criterion(reduction: str = "mean") -> nn.Module:
    return nn.BCEWithLogitsLoss(reduction=reduction)


def tfidf_logreg_baseline(roles: Roles, seed: int):
    """TF-IDF of word uni/bigrams (fitted on training rows) + logistic regression."""
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    column = roles.extra.get("text") or roles.features[0]
    tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    pre = ColumnTransformer([("tfidf", tfidf, column)])  # a scalar column name: 1-D texts in
    return Pipeline([("pre", pre), ("clf", LogisticRegression(C=10.0, max_iter=2000, random_state=seed))])


def audit_extras(predictor, split, roles: Roles) -> dict[str, Any]:
    """What the identity audit needs: a scorer of new texts, the held-out texts, the identity
    terms (read from the shipped adjectives_people.txt), the held-out Dixon template sentences
    and, when the dataset has them, counterfactual twins of the test texts."""
    import pandas as pd

    from impactflow.data_contracts.jigsaw import identity_terms, madlibs_template_set

    column = roles.extra.get("text") or roles.features[0]

    def score_texts(texts) -> np.ndarray:
        return np.asarray(predictor.predict(pd.DataFrame({column: list(texts)})), dtype=float)

    templates = madlibs_template_set()
    toxicity_labels = roles.extra.get("template_labels") == "toxicity"
    extra: dict[str, Any] = {
        "score_texts": score_texts,
        "texts": split.test[column].astype(str).tolist(),
        "identity_terms": list(identity_terms()),
        "template_texts": templates["text"].tolist(),
        "template_labels": (templates["label"] if toxicity_labels else 0 * templates["label"]).to_numpy(),
        "template_label_note": (
            "template labels: madlibs BAD = positive (toxic)"
            if toxicity_labels
            else "template sentences are not spam: all are negatives, so only FPR/FPED are defined"
        ),
    }
    twin = roles.extra.get("counterfactual_text")
    if twin and twin in split.test.columns:
        extra["paired_texts"] = split.test[twin].astype(str).tolist()
        extra["paired_name"] = twin
    return extra


#: what slice discovery names about a message (``row_features``): identity terms found in at
#: least ``TERM_MIN_SHARE`` of the test texts (the most frequent ``MAX_TERMS``), the ``MAX_TOKENS``
#: most frequent other words in between ``TERM_MIN_SHARE`` and half of the texts, and the length
MAX_TERMS, MAX_TOKENS, TERM_MIN_SHARE = 15, 15, 0.01


def row_features(split, roles: Roles):
    """Per test text: ``has "<term>"`` for identity terms (Dixon et al.) and frequent words
    (whole words, as ``tokenize`` splits them), and ``length (words)``."""
    import pandas as pd

    from impactflow.data_contracts.jigsaw import identity_terms

    column = roles.extra.get("text") or roles.features[0]
    docs = [" " + " ".join(tokenize(t)) + " " for t in split.test[column].fillna("").astype(str)]
    words = [set(d.split()) for d in docs]
    n, min_docs = len(docs), max(1, math.ceil(TERM_MIN_SHARE * len(docs)))
    terms = {t: np.array([f" {' '.join(tokenize(t))} " in d for d in docs]) for t in identity_terms()}
    terms = dict(sorted(((t, m) for t, m in terms.items() if m.sum() >= min_docs), key=lambda kv: -kv[1].sum()))
    df_count = Counter(w for ws in words for w in ws)
    frequent = [w for w, c in df_count.most_common() if w not in terms and min_docs <= c <= n / 2][:MAX_TOKENS]
    out = {f'has "{t}"': m for t, m in list(terms.items())[:MAX_TERMS]}
    out |= {f'has "{w}"': np.array([w in ws for ws in words]) for w in frequent}
    out["length (words)"] = np.array([len(d.split()) for d in docs])
    return pd.DataFrame(out)


FAMILY = Family(
    name="text",
    task=TaskKind.BINARY,
    description="Transformer encoder (torch, from scratch, word vocabulary from the training split); "
    "TF-IDF + logistic regression baseline",
    config_cls=TextConfig,
    make_preprocessor=make_preprocessor,
    build_model=build_model,
    make_criterion=make_criterion,
    model_name="transformer",
    privacy_unit="one (de-duplicated) message",
    baselines={"tfidf_logreg": tfidf_logreg_baseline},
    audits=("performance", "fairness", "privacy", "identity"),
    audit_extras=audit_extras,
    row_features=row_features,
)
