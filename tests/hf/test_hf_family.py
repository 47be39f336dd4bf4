"""The hf family on a tiny model built from a config: the pretrained tokenizer, one clear line
for each bad input, LoRA (only adapters and head train; merged for release), DP (ghost
clipping, ε from Opacus's accountant) and the model card's pretraining record."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from impactflow.errors import ConfigError
from impactflow.models import get_family
from tests.models.family_examples import text_example
from impactflow.models.hf import HFClassifier, pretraining_card

ROLES = text_example()[1]  # SMS-like roles: message -> label (ham/spam), text column "message"
FAMILY = get_family("hf")


def _config(path, **params):
    return FAMILY.make_config({"path": str(path), **params})


def _copy(src, dst, skip=()):
    dst.mkdir()
    for f in src.iterdir():
        if f.name not in skip:
            shutil.copy(f, dst / f.name)
    return dst


def test_the_tokenizer_is_the_pretrained_one_and_fits_on_nothing(tiny_hf):
    from transformers import AutoTokenizer

    pre = FAMILY.make_preprocessor(ROLES, _config(tiny_hf, max_len=8))
    X = pre.fit_transform(pd.DataFrame({"message": ["free prize now", ""]}))
    ids = AutoTokenizer.from_pretrained(tiny_hf)("free prize now")["input_ids"]
    assert X.shape == (2, 2, 8) and X.dtype == np.int64
    assert X[0, 0, : len(ids)].tolist() == ids and X[0, 1].tolist() == [1] * len(ids) + [0] * (8 - len(ids))
    assert X[1, 1].sum() == 2  # an empty text is [CLS] [SEP]
    private = FAMILY.make_preprocessor(ROLES, _config(tiny_hf), private=True)
    assert all(how.startswith("data-independent") for how in private.components().values())
    assert "pretrained tokenizer" in private.summary() and "fitted on no fine-tuning row" in private.summary()


@pytest.mark.parametrize(
    "case, expected",
    [
        ("no directory", "path=/nonexistent/model: not a Hugging Face model directory (no such directory)"),
        ("no config", "not a Hugging Face model directory (no config.json: save the model with save_pretrained)"),
        ("no tokenizer", "no tokenizer in the directory (none of tokenizer.json"),
        ("3-label head", "the model's classification head has 3 labels (config.json num_labels), the task is binary"),
        ("lora targets", "model.params.lora_target_modules=['attn_out']: no module named attn_out (linear layers"),
    ],
)
def test_bad_input_is_one_clear_line(tiny_hf, tmp_path, case, expected):
    params: dict = {}
    if case == "no directory":
        path = "/nonexistent/model"
    elif case == "no config":
        path = _copy(tiny_hf, tmp_path / "m", skip=("config.json",))
    elif case == "no tokenizer":
        path = _copy(tiny_hf, tmp_path / "m", skip=("tokenizer.json", "tokenizer_config.json"))
    elif case == "3-label head":
        path = _copy(tiny_hf, tmp_path / "m")
        config = json.loads((path / "config.json").read_text())
        config["id2label"] = {"0": "a", "1": "b", "2": "c"}
        config["label2id"] = {"a": 0, "b": 1, "c": 2}
        (path / "config.json").write_text(json.dumps(config))
    else:
        path, params = tiny_hf, {"finetune": "lora", "lora_target_modules": ["attn_out"]}
    with pytest.raises(ConfigError) as err:
        FAMILY.preflight(_config(path, **params), ROLES)
    message = str(err.value)
    assert expected in message and "\n" not in message and "Traceback" not in message


def test_the_cli_refuses_a_bad_model_directory_in_one_line(tiny_hf, tmp_path):
    from typer.testing import CliRunner

    from impactflow.flows.cli import app

    path = _copy(tiny_hf, tmp_path / "m", skip=("tokenizer.json", "tokenizer_config.json"))
    result = CliRunner().invoke(app, ["run", "-c", "hf-text", "--set", f"model.params.path={path}"])
    assert result.exit_code == 1  # README "Exit codes": bad config
    assert f"error: model.params.path={path}: no tokenizer in the directory" in result.output
    assert "Traceback" not in result.output


def _batch(pre, texts=("free prize call now", "see you at lunch", "win cash", "ok thanks")):
    X = pre.fit_transform(pd.DataFrame({"message": list(texts) * 8}))
    y = np.array([1, 0, 1, 0] * 8, dtype=np.float32)
    return X, y


def test_lora_trains_only_adapters_and_head_and_the_release_predicts_the_same(tiny_hf):
    from impactflow.models.training import TrainSettings, train_torch

    cfg = _config(tiny_hf, finetune="lora", lora_r=4, epochs=2, lr=1e-2)
    pre = FAMILY.make_preprocessor(ROLES, cfg)
    module = FAMILY.build_model(pre.spec(), cfg)
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "classifier" in n for n in trainable)
    X, y = _batch(pre)
    res = train_torch(
        module,
        X,
        y,
        X,
        y,
        make_criterion=FAMILY.make_criterion,
        settings=TrainSettings(epochs=2, batch_size=8, lr=1e-2),
    )
    with torch.no_grad():
        before = res.model(torch.as_tensor(X)).numpy()
        released = res.model.released()
        after = released(torch.as_tensor(X)).numpy()
    assert not hasattr(released.model, "peft_config")  # merged: a plain transformers model
    np.testing.assert_allclose(after, before, atol=1e-4)


def test_padding_and_chunking_do_not_change_the_logit(tiny_hf):
    cfg = _config(tiny_hf, max_len=16)
    pre = FAMILY.make_preprocessor(ROLES, cfg)
    module = FAMILY.build_model(pre.spec(), cfg).eval()
    X = torch.as_tensor(pre.transform(pd.DataFrame({"message": ["free prize"] + ["a much longer message here"] * 70})))
    with torch.no_grad():
        alone = module(X[:1])
        chunked = module(X)  # 71 rows: two inference chunks, trimmed to each chunk's longest text
    assert torch.allclose(alone[0], chunked[0], atol=1e-5)


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_dp_fine_tuning_reports_the_accountants_epsilon(tiny_hf, finetune):
    """Ghost clipping on the full model (position/token-type tables frozen) and on LoRA; the
    reported ε is Opacus's PRV accountant on the run's own step history."""
    from opacus.accountants import PRVAccountant

    from impactflow.models.fit import fit_family_model
    from impactflow.models.data import Split
    from impactflow.models.training import PrivacySettings

    rng = np.random.default_rng(0)
    words = np.array(["free", "prize", "call", "now", "see", "you", "lunch", "ok", "thanks", "win"])
    texts = [" ".join(rng.choice(words, 5)) for _ in range(300)]
    df = pd.DataFrame({"message": texts, "label": np.where([("free" in t) for t in texts], "spam", "ham")})
    split = Split(train=df.iloc[:200], validation=df.iloc[200:250], test=df.iloc[250:])
    privacy = PrivacySettings(enabled=True, noise_multiplier=1.0, delta=1e-3, max_grad_norm=1.0)
    fitted = fit_family_model(
        FAMILY,
        {"path": str(tiny_hf), "finetune": finetune, "epochs": 2, "batch_size": 50, "lr": 1e-2, "max_len": 16},
        split,
        ROLES,
        seed=0,
        device="cpu",
        privacy=privacy,
    )
    dp = fitted.training["dp"]
    accountant = PRVAccountant()
    accountant.history = [(1.0, 50 / 200, dp["steps"])]
    assert dp["steps"] == 8 and dp["sample_rate"] == pytest.approx(0.25)
    assert dp["epsilon"] == pytest.approx(accountant.get_epsilon(delta=1e-3), rel=1e-9)
    assert "the pretrained tokenizer" in dp["covers"]
    if finetune == "full":
        assert dp["frozen"] == ["bert.embeddings.position_embeddings", "bert.embeddings.token_type_embeddings"]
    assert isinstance(fitted.predictor.module, HFClassifier)
    assert not hasattr(fitted.predictor.module.model, "peft_config")


def test_pretraining_compute_from_the_model_card(tmp_path):
    assert pretraining_card(str(tmp_path)) == {"known": False, "reason": f"no model card (README.md) in {tmp_path}"}
    (tmp_path / "README.md").write_text("---\nlicense: apache-2.0\n---\n# A model\n")
    assert pretraining_card(str(tmp_path)) == {"known": False, "reason": "the model card states no co2_eq_emissions"}
    (tmp_path / "README.md").write_text(
        "---\nco2_eq_emissions:\n  emissions: 149200\n  source: ML CO2 impact calculator\n"
        "  hardware_used: 8 V100\n---\n# A model\n"
    )
    assert pretraining_card(str(tmp_path)) == {
        "known": True,
        "co2_g": 149200.0,
        "source": "model card co2_eq_emissions",
        "card_source": "ML CO2 impact calculator",
        "card_hardware_used": "8 V100",
    }
    (tmp_path / "README.md").write_text("---\nco2_eq_emissions: 12.5\n---\n")
    assert pretraining_card(str(tmp_path))["co2_g"] == 12.5


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_bookkeeping_clipping_of_the_hf_model_equals_opacus_ghost_clipping(tiny_hf, tmp_path, finetune):
    """What DP training of this family runs (models/dp_bookkeeping.py, chosen because the model
    has only Linear/Embedding/LayerNorm trainable layers once the DP freeze is applied) gives the
    per-example norms and clipped gradient sum Opacus's own ghost clipping gives."""
    from impactflow.models.dp_bookkeeping import unsupported_reason
    from tests.privacy.test_bookkeeping_clipping import _bookkeeping, _opacus_ghost

    path = _copy(tiny_hf, tmp_path / "m")  # no dropout: both clippings see the same forward pass
    config = json.loads((path / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout=0.0)
    (path / "config.json").write_text(json.dumps(config))
    cfg = _config(path, finetune=finetune, max_len=12)
    pre = FAMILY.make_preprocessor(ROLES, cfg)
    torch.manual_seed(0)
    module = FAMILY.build_model(pre.spec(), cfg).train()  # Opacus records activations in training mode only
    module.freeze_for_dp()
    assert unsupported_reason(module) is None
    x = torch.as_tensor(
        pre.transform(pd.DataFrame({"message": ["free prize now", "ok", "call me at home tonight", "win win win"]}))
    )
    y = torch.tensor([1.0, 0.0, 0.0, 1.0])
    criterion = FAMILY.make_criterion("none")
    norms_o, grads_o = _opacus_ghost(module, x, y, criterion, 0.05)
    norms_b, grads_b = _bookkeeping(module, x, y, criterion, 0.05)
    torch.testing.assert_close(norms_b, norms_o, rtol=1e-4, atol=1e-6)
    trained = [n for n, p in module.named_parameters() if p.requires_grad]
    assert trained
    for name in trained:
        torch.testing.assert_close(grads_b[name], grads_o[name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("preset", ["hf-text", "hf-text-dp", "hf-toxicity"])
def test_the_hf_presets_check_out_on_a_model_directory(tiny_hf, preset):
    """Each hf preset, pointed at a model directory, passes every check made before a task runs
    (the model directory, tokenizer, head and LoRA targets included); without one it names the key."""
    from impactflow.flows.config import load_config

    cfg = load_config(preset, [f"model.params.path={tiny_hf}"])
    assert cfg.model.family == "hf" and cfg.privacy_audit.secrets.enabled is None
    with pytest.raises(ConfigError, match=r"^model.params: path: required: a local Hugging Face model directory"):
        load_config(preset, [])
