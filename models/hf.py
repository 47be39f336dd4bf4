"""Hugging Face family (``hf``): fine-tune a pretrained sequence-classification model read from
a **local directory** (``model.params.path``); nothing is downloaded (``local_files_only``).

- **Model**: ``AutoModelForSequenceClassification.from_pretrained(path)``: its pretrained body
  and, when the directory has none, a new classification head. The head must give one logit
  (``num_labels: 1``) or two (``num_labels: 2``; the logit of the positive class is their
  difference, so the binary cross-entropy equals the softmax cross-entropy); another count is
  refused before any task runs.
- **Fine-tuning**: ``finetune: full`` trains every weight; ``finetune: lora`` trains LoRA
  adapters (Hu et al. 2021) through ``peft`` on ``lora_target_modules`` (default: peft's
  choice for the architecture, e.g. BERT's query/value) plus the classification head; the
  adapters are merged into the weights of the released model (``released``), which then
  needs no ``peft`` to load.
- **Tokenizer**: the pretrained one from the same directory, fitted on no training row, so
  a DP model's (ε, δ) covers it: it is data-independent of the fine-tuning data (it may
  reflect the *pretraining* data, which the claim does not cover and the report says so).
- **DP** (Opacus, the same training loop and accounting as every family): ghost clipping
  handles the Linear, Embedding and LayerNorm layers of these models. Under DP the position
  and token-type embedding tables (every ``nn.Embedding`` but the input one) stay at their
  pretrained values: Hugging Face models look them up with a broadcast batch dimension, which
  per-example clipping cannot split per example. With LoRA the adapters and the head are the
  only trained weights: the cheap route (far fewer per-example norms).
- **Audits**: those of the ``text`` family (identity-term counterfactuals, Dixon templates,
  Jigsaw bias AUCs, membership inference, the canary audits) plus ``memorisation``: the
  exposure of secrets planted in the fine-tuning data (``models/memorisation.py``).
- **Pretraining resources**: the model card's ``co2_eq_emissions`` (``README.md`` front
  matter, the Hugging Face model-card field) when it states it, otherwise "unknown"
  (``pretraining_card``).

Needs the ``hf`` extra (``pip install 'impactflow[hf]'``: transformers, peft).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from impactflow.errors import ConfigError
from impactflow.models.base import Family, Roles, check_param
from impactflow.models.memorisation import DIGITS
from impactflow.models import text
from impactflow.models.text import ChunkedInference
from impactflow.task_kind import TaskKind

NEEDS_EXTRA = "model.family='hf' needs transformers and peft: pip install 'impactflow[hf]' ({error})"
NO_PATH = (
    "path: required: a local Hugging Face model directory, e.g. --set model.params.path=/models/distilbert-base-uncased"
)
NOT_A_MODEL_DIR = "model.params.path={path}: not a Hugging Face model directory ({why})"
NO_TOKENIZER = (
    "model.params.path={path}: no tokenizer in the directory ({why}); save one there with tokenizer.save_pretrained"
)
BAD_HEAD = (
    "model.params.path={path}: the model's classification head has {n} labels (config.json num_labels), "
    "the task is binary ({labels}): use a model with a 1- or 2-label head, or a base model without one"
)
BAD_VOCAB = "model.params.path={path}: the tokenizer has {t} tokens but the model's embeddings only {m} rows"
BAD_TARGETS = "model.params.lora_target_modules={targets}: {why} (linear layers of this {arch}: {names})"
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "spiece.model", "merges.txt", "vocab.json")


def _transformers():
    try:
        import transformers
    except ImportError as exc:
        raise ConfigError(NEEDS_EXTRA.format(error=exc)) from None
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    return transformers


@dataclass(frozen=True)
class HFConfig:
    path: str | None = None  # local directory: config.json, weights, tokenizer (save_pretrained)
    max_len: int = 128  # tokens kept per text (truncated), special tokens included
    finetune: str = "full"  # "full" | "lora"
    lora_r: int = 8  # LoRA rank (finetune: lora)
    lora_alpha: int = 16  # LoRA scaling: the update is alpha / r x B A
    lora_dropout: float = 0.0  # dropout on the LoRA branch's input
    lora_target_modules: tuple[str, ...] | None = None  # None: peft's default for the architecture
    lr: float = 5e-5
    weight_decay: float = 0.0
    batch_size: int = 32
    epochs: int = 3
    patience: int = 2

    def __post_init__(self) -> None:
        check_param(self.path is not None and str(self.path).strip() != "", NO_PATH)
        check_param(self.finetune in ("full", "lora"), f"finetune={self.finetune!r} must be 'full' or 'lora'")
        for name in ("max_len", "lora_r", "lora_alpha", "batch_size", "epochs", "patience"):
            check_param(int(getattr(self, name)) > 0, f"{name}={getattr(self, name)} must be > 0")
        check_param(0.0 <= self.lora_dropout < 1.0, f"lora_dropout={self.lora_dropout} must be in [0, 1)")
        check_param(self.lr > 0, f"lr={self.lr} must be > 0")
        check_param(self.weight_decay >= 0, f"weight_decay={self.weight_decay} must be >= 0")
        if self.lora_target_modules is not None:
            object.__setattr__(self, "lora_target_modules", tuple(str(t) for t in self.lora_target_modules))
        path = Path(str(self.path)).expanduser()
        where = NOT_A_MODEL_DIR.removeprefix("model.params.")
        check_param(path.is_dir(), where.format(path=self.path, why="no such directory"))
        check_param(
            (path / "config.json").is_file(),
            where.format(path=self.path, why="no config.json: save the model with save_pretrained"),
        )
        object.__setattr__(self, "path", str(path))  # ~ expanded: what the loaders read


def model_config(path: str):
    """The directory's ``config.json`` as a transformers config (one line on failure)."""
    transformers = _transformers()
    try:
        return transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # an unknown model_type, a damaged file: one line naming the directory
        raise ConfigError(NOT_A_MODEL_DIR.format(path=path, why=_first_line(exc))) from None


def load_tokenizer(path: str):
    """The pretrained tokenizer saved in ``path``; a directory without one is a ``ConfigError``
    (transformers would otherwise try the Hub, and nothing is downloaded here)."""
    transformers = _transformers()
    if not any((Path(path) / f).is_file() for f in TOKENIZER_FILES):
        raise ConfigError(NO_TOKENIZER.format(path=path, why=f"none of {', '.join(TOKENIZER_FILES)}"))
    try:
        tok = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as exc:
        raise ConfigError(NO_TOKENIZER.format(path=path, why=_first_line(exc))) from None
    if tok.pad_token is None:  # e.g. GPT-2: pad with the end-of-text token (masked out anyway)
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def files_digest(path: str, names=TOKENIZER_FILES) -> str:
    """sha256 over the named files present in ``path`` (name + bytes, in name order): which
    tokenizer the report's claim is about."""
    h = hashlib.sha256()
    for name in sorted(names):
        f = Path(path) / name
        if f.is_file():
            h.update(name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


class PretrainedTokenizerPreprocessor:
    """Texts -> int64 (N, 2, max_len): token ids and attention mask of the pretrained tokenizer.
    Nothing is fitted: ``fit`` reads no row (the same under DP and without)."""

    def __init__(self, text_column: str, path: str, max_len: int) -> None:
        self.text_column = text_column
        self.path = str(path)
        self.max_len = int(max_len)
        self.tokenizer = load_tokenizer(self.path)
        self.digest = files_digest(self.path)

    def fit(self, df) -> "PretrainedTokenizerPreprocessor":
        return self

    def transform(self, df) -> np.ndarray:
        texts = ["" if v is None else str(v) for v in df[self.text_column].tolist()]
        enc = self.tokenizer(
            texts, truncation=True, max_length=self.max_len, padding="max_length", return_attention_mask=True
        )
        return np.stack([np.asarray(enc["input_ids"], np.int64), np.asarray(enc["attention_mask"], np.int64)], axis=1)

    def fit_transform(self, df) -> np.ndarray:
        return self.transform(df)

    def spec(self) -> dict[str, Any]:
        return {"path": self.path, "max_len": self.max_len, "vocab_size": len(self.tokenizer)}

    def secret_alphabet(self) -> tuple[str, ...]:
        """The symbols planted secrets are drawn from (``models/memorisation.py``): the
        tokenizer's own whole-word tokens (letters only, 3-12 characters, not special), in
        vocabulary order, so that every secret is a sequence of whole tokens of the pretrained
        vocabulary (data-independent of the fine-tuning rows)."""
        special = set(self.tokenizer.all_special_tokens)
        words = []
        for token, _ in sorted(self.tokenizer.get_vocab().items(), key=lambda kv: kv[1]):
            word = token.lstrip("Ġ▁")
            if token in special or not word.isalpha() or not word.islower() or not 3 <= len(word) <= 12:
                continue
            if self.tokenizer.tokenize(" " + word) in ([word], [token]):
                words.append(word)
        words = list(dict.fromkeys(words))
        return tuple(words[len(words) // 2 :]) if len(words) >= 20 else DIGITS

    def pretraining(self) -> dict[str, Any]:
        """What the model card states about the pretraining compute (``pretraining_card``)."""
        return pretraining_card(self.path)

    def components(self) -> dict[str, str]:
        return {
            "tokenizer": (
                f"data-independent: the pretrained tokenizer of {self.path} (files sha256 {self.digest[:16]}), "
                "fitted on no training row"
            ),
            "max_len": f"data-independent: configured ({self.max_len} tokens)",
        }

    def summary(self) -> str:
        return (
            f"the pretrained tokenizer of {Path(self.path).name}, fitted on no fine-tuning row "
            "(the pretraining data it reflects is outside this claim)"
        )


def make_preprocessor(roles: Roles, config: HFConfig, private: bool = False) -> PretrainedTokenizerPreprocessor:
    """The pretrained tokenizer (data-independent, so the same under DP)."""
    column = roles.extra.get("text") or roles.features[0]
    return PretrainedTokenizerPreprocessor(column, str(config.path), config.max_len)


class HFClassifier(ChunkedInference):
    """(B, 2, L) ids + mask -> one logit per text (B,); batches are trimmed to their longest
    text and scored in chunks at inference (bounded attention memory)."""

    EVAL_CHUNK = 64

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.long()
        ids, mask = x[:, 0], x[:, 1]
        length = max(int(mask.sum(dim=1).max()), 1) if x.numel() else 1
        logits = self.model(input_ids=ids[:, :length].contiguous(), attention_mask=mask[:, :length]).logits
        return logits[:, 1] - logits[:, 0] if logits.shape[-1] == 2 else logits[:, 0]

    def released(self) -> "HFClassifier":
        """The module to release: LoRA adapters merged into the weights (no peft needed to load)."""
        if hasattr(self.model, "merge_and_unload"):
            self.model = self.model.merge_and_unload()
        return self

    def freeze_for_dp(self) -> list[str]:
        """Freeze every embedding table but the input one (module doc); returns their names."""
        inner = getattr(self.model, "get_base_model", lambda: self.model)()
        keep = inner.get_input_embeddings()
        frozen = []
        for name, module in inner.named_modules():
            if isinstance(module, nn.Embedding) and module is not keep:
                for p in module.parameters():
                    if p.requires_grad:
                        p.requires_grad_(False)
                        frozen.append(name)
        return sorted(set(frozen))


def check_model_dir(path: str, vocab_size: int, roles: Roles | None = None) -> None:
    """From ``config.json`` alone (no weights loaded): a binary task needs a 1- or 2-label head
    (module doc), and the embeddings a row for every token of the tokenizer."""
    if not any((Path(path) / f).is_file() for f in WEIGHT_FILES):
        raise ConfigError(NOT_A_MODEL_DIR.format(path=path, why=f"no weights ({' or '.join(WEIGHT_FILES)})"))
    config = model_config(path)
    n = int(getattr(config, "num_labels", 2))
    if n not in (1, 2):
        labels = ", ".join(map(str, roles.labels)) if roles and roles.labels else "2 labels"
        raise ConfigError(BAD_HEAD.format(path=path, n=n, labels=labels))
    rows = getattr(config, "vocab_size", None)
    if rows is not None and int(vocab_size) > int(rows):
        raise ConfigError(BAD_VOCAB.format(path=path, t=vocab_size, m=rows))


def linear_names(model) -> list[str]:
    """The distinct last names of the model's ``nn.Linear`` layers (what LoRA can target)."""
    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)})


def with_lora(model, config: HFConfig):
    """``model`` with LoRA adapters (peft); unknown target modules are a ``ConfigError`` naming
    the model's linear layers."""
    try:
        from peft import LoraConfig, TaskType, get_peft_model
    except ImportError as exc:
        raise ConfigError(NEEDS_EXTRA.format(error=exc)) from None
    targets = list(config.lora_target_modules) if config.lora_target_modules else None
    arch, names = type(model).__name__, linear_names(model)
    if targets:
        missing = [t for t in targets if t not in names and not _is_module_path(model, t)]
        if missing:
            raise ConfigError(
                BAD_TARGETS.format(
                    targets=targets, why=f"no module named {', '.join(missing)}", arch=arch, names=", ".join(names)
                )
            )
    lora = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
    )
    try:
        return get_peft_model(model, lora)
    except ValueError as exc:  # peft: no default targets for this architecture, or none matched
        raise ConfigError(
            BAD_TARGETS.format(targets=targets, why=_first_line(exc), arch=arch, names=", ".join(names))
        ) from None


def _is_module_path(model, target: str) -> bool:
    return any(name == target or name.endswith("." + target) for name, _ in model.named_modules())


def load_model(path: str):
    transformers = _transformers()
    try:
        return transformers.AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True)
    except Exception as exc:
        raise ConfigError(NOT_A_MODEL_DIR.format(path=path, why=_first_line(exc))) from None


def build_model(spec: dict[str, Any], config: HFConfig):
    """The pretrained model (LoRA-wrapped when ``finetune: lora``) inside ``HFClassifier``."""
    check_model_dir(spec["path"], spec["vocab_size"])
    model = load_model(spec["path"])
    if config.finetune == "lora":
        model = with_lora(model, config)
    return HFClassifier(model)


def preflight(config: HFConfig, roles: Roles) -> None:
    """Every bad-input check, before any task: the tokenizer, then the head and the vocabulary
    from ``config.json``; with LoRA also the target modules, which needs the model's layers
    (loaded once here: for a large model, its load time)."""
    pre = make_preprocessor(roles, config)
    check_model_dir(str(config.path), len(pre.tokenizer), roles)
    if config.finetune == "lora":
        with_lora(load_model(str(config.path)), config)


def make_criterion(reduction: str = "mean"):
    import torch.nn as nn

    return nn.BCEWithLogitsLoss(reduction=reduction)


def pretraining_card(path: str) -> dict[str, Any]:
    """What the model card (``README.md`` YAML front matter) states about the pretraining
    compute: its ``co2_eq_emissions`` (grams CO2e, a number or a mapping with ``emissions``,
    ``source``, ``training_type``, ``hardware_used``...), else ``{"known": False, "reason": ...}``."""
    import yaml

    card = Path(path) / "README.md"
    if not card.is_file():
        return {"known": False, "reason": f"no model card (README.md) in {path}"}
    text = card.read_text(encoding="utf-8", errors="replace")
    meta: Any = None
    if text.startswith("---"):
        end = text.find("\n---", 3)
        if end > 0:
            try:
                meta = yaml.safe_load(text[3:end])
            except yaml.YAMLError:
                meta = None
    co2 = meta.get("co2_eq_emissions") if isinstance(meta, dict) else None
    if isinstance(co2, (int, float)) and not isinstance(co2, bool):
        co2 = {"emissions": co2}
    if not isinstance(co2, dict) or not isinstance(co2.get("emissions"), (int, float)):
        return {"known": False, "reason": "the model card states no co2_eq_emissions"}
    out = {"known": True, "co2_g": float(co2["emissions"]), "source": "model card co2_eq_emissions"}
    for key in ("source", "training_type", "geographical_location", "hardware_used"):
        if co2.get(key) is not None:
            out[f"card_{key}"] = str(co2[key])
    return out


FAMILY = Family(
    name="hf",
    task=TaskKind.BINARY,
    description="pretrained Hugging Face sequence classifier from a local directory, fine-tuned (full or LoRA); "
    "TF-IDF + logistic regression baseline",
    config_cls=HFConfig,
    make_preprocessor=make_preprocessor,
    build_model=build_model,
    make_criterion=make_criterion,
    model_name="hf",
    privacy_unit="one text (one training row)",
    baselines={"tfidf_logreg": text.tfidf_logreg_baseline},
    audits=("performance", "fairness", "privacy", "identity", "memorisation"),
    audit_extras=text.audit_extras,
    row_features=text.row_features,
    preflight=preflight,
)


def build_tiny(
    out_dir: str | Path, texts, *, hidden: int = 128, layers: int = 2, vocab: int = 8000, seed: int = 0
) -> Path:
    """A tiny randomly initialised BERT sequence classifier (2 labels) with a WordPiece
    tokenizer whose vocabulary is learnt from ``texts``, saved with ``save_pretrained`` in
    ``out_dir``: a model directory for tests and for trying the family without downloading
    weights. Its "pretraining" is nothing: it learns only from the fine-tuning data.

    The vocabulary is counted here, not with ``tokenizers``' WordPiece trainer, whose result
    changes from one call to the next (thread scheduling breaks its ties): every character seen
    (alone and as a ``##`` continuation), then the most frequent words (ties in alphabetical
    order) up to ``vocab`` entries, so the same texts always give the same model directory."""
    from collections import Counter

    transformers = _transformers()
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = Counter(w for t in texts for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(str(t))))
    chars = sorted({c for w in words for c in w})
    entries = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars)]
    frequent = sorted((w for w in words if len(w) > 1), key=lambda w: (-words[w], w))
    entries += frequent[: max(0, vocab - len(entries))]
    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(entries)}, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer = normalizer, pre_tokenizer
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    config = transformers.BertConfig(
        vocab_size=len(fast),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=256,
        num_labels=2,
    )
    torch.manual_seed(seed)
    transformers.BertForSequenceClassification(config).save_pretrained(out)
    return out
