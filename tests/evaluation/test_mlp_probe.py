"""The MLP probe (the official code's 2-layer "linear classifier"): forward pass against numpy, accuracy on a
problem no linear probe can solve against scikit-learn's MLPClassifier, and ``cmer probe --probe mlp``."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from contrastive_mer.cli.main import main
from contrastive_mer.evaluation.linear import LinearProbeConfig, linear_probe
from contrastive_mer.evaluation.mlp_probe import MLPProbeConfig, fit_mlp_probe, mlp_probe
from tests.evaluation.test_protocol import make_data, write_store


def xor_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class = sign(x0) xor sign(x1), plus 6 noise dimensions: linearly inseparable."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8)).astype(np.float32)
    return X, ((X[:, 0] > 0) ^ (X[:, 1] > 0)).astype(np.int64)


def test_forward_is_standardise_linear_relu_linear_like_numpy():
    X, y = xor_data(64, 0)
    model = fit_mlp_probe(X * 3 + 1, y, MLPProbeConfig(hidden_dim=7, epochs=2))
    p = {k: v.numpy().astype(np.float64) for k, v in model.state_dict().items()}
    Xq = np.random.default_rng(1).normal(size=(5, 8)) * 3 + 1
    hidden = np.maximum(((Xq - p["mean"]) / p["std"]) @ p["hidden.weight"].T + p["hidden.bias"], 0.0)
    logits = hidden @ p["out.weight"].T + p["out.bias"]
    np.testing.assert_allclose(model(torch.from_numpy(Xq).float()).detach().numpy(), logits, rtol=1e-4, atol=1e-5)
    pred, proba = model.predict(Xq)
    assert (pred == logits.argmax(1)).all() and np.allclose(proba.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(p["mean"], (X * 3 + 1).mean(0), rtol=1e-5, atol=1e-5)  # training statistics


def test_solves_xor_like_sklearn_mlp_where_the_linear_probe_cannot():
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    X, y = xor_data(400, 1)
    Xt, yt = xor_data(300, 2)
    fast = MLPProbeConfig(hidden_dim=64, epochs=60, batch_size=100, lr=1e-2, seed=0)  # official width: 512
    ours = mlp_probe(X, y, Xt, yt, fast).metrics["accuracy"]
    linear = linear_probe(X, y, Xt, yt, config=LinearProbeConfig(weight_decays=(1e-3,))).metrics["accuracy"]
    scaler = StandardScaler().fit(X)
    warnings.filterwarnings("ignore", message=".*Maximum iterations.*")
    ref = MLPClassifier(hidden_layer_sizes=(64,), learning_rate_init=1e-2, batch_size=100, max_iter=60,
                        random_state=0).fit(scaler.transform(X), y)
    sk = ref.score(scaler.transform(Xt), yt)
    assert linear < 0.65 and ours > 0.85 and abs(ours - sk) < 0.08, (linear, ours, sk)
    again = mlp_probe(X, y, Xt, yt, fast).metrics["accuracy"]
    assert again == ours  # seeded


def test_cmer_probe_mlp_choice(tmp_path, capsys):
    train = write_store(tmp_path / "train.h5", make_data(200, seed=1))
    test = write_store(tmp_path / "test.h5", make_data(100, seed=2))
    out = tmp_path / "r.json"
    assert main(["probe", "--train", str(train), "--test", str(test), "--label", "emotion", "--modalities", "audio",
                 "--probe", "mlp", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["view"], r["probe"]) for r in rows] == [("audio", "mlp")]
    assert rows[0]["metrics"]["accuracy"] > 0.5  # 4 classes; the audio view carries the label
    assert "mlp" in capsys.readouterr().out


@pytest.mark.parametrize("bad", [dict(hidden_dim=0), dict(lr=0.0), dict(task="ranking")])
def test_config_checks(bad):
    with pytest.raises(ValueError):
        MLPProbeConfig(**bad)
