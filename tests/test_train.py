"""Training: a few steps of L_simple lower the loss, checkpoints are the official list format, reruns resume."""

import torch
from hydra import compose, initialize_config_dir

from clitools import ROOT
from harness.models.loading import read_state_dict
from harness.models.train import EMA, antithetic_timesteps, train


def config(*overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def test_a_few_steps_lower_the_loss_and_write_an_official_checkpoint(tmp_path):
    cfg = config("train.steps=60", "train.batch_size=32", "train.log_every=10", "train.checkpoint_every=30", "train.lr=1e-3")
    result = train(cfg, tmp_path)
    losses = [h["loss"] for h in result["history"]]
    assert len(losses) == 6 and losses[-1] < 0.5 * losses[0], losses
    states = torch.load(tmp_path / "ckpt.pth", weights_only=True)
    assert isinstance(states, list) and len(states) == 5 and states[3] == 60
    ema, info = read_state_dict(tmp_path / "ckpt.pth", ema=True)
    raw, _ = read_state_dict(tmp_path / "ckpt.pth", ema=False)
    assert info["format"] == "list" and ema.keys() == raw.keys()
    assert any(not torch.equal(ema[k], raw[k]) for k in ema)  # the EMA is not the raw weights

    # Rerunning with more steps resumes from the checkpoint instead of starting again.
    longer = train(config("train.steps=70", "train.batch_size=32", "train.log_every=10", "train.lr=1e-3"), tmp_path)
    assert longer["steps"] == 70 and [h["step"] for h in longer["history"]][-2:] == [60, 70]


def test_antithetic_timesteps_pair_t_with_T_minus_1_minus_t():
    t = antithetic_timesteps(8, 1000, torch.Generator().manual_seed(0))
    assert t.shape == (8,) and ((t >= 0) & (t < 1000)).all()
    assert torch.equal(t[5:8], 999 - t[:3])  # n//2 + 1 = 5 draws, then their mirrors


def test_ema_warm_up_follows_the_online_weights_early():
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, decay=0.999, warmup=True)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)  # decay min(0.999, 2/11): mostly the new weights
    w = ema.state_dict()["weight"]
    assert torch.allclose(w, model.weight * (1 - 2 / 11) + (model.weight - 1.0) * (2 / 11))
