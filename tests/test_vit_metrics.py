"""FD_DINOv2 and CMMD (harness.metrics.dinov2, clip, cmmd, networks): the harness's networks on stand-in weights in
the real file formats against an independent implementation (transformers), the preprocessing against independent
resizers, CMMD against the closed form of the Gaussian-kernel MMD, and the weights' download, check and refusal."""

import hashlib
import http.server
import math
import pickle

import numpy as np
import pytest
import torch
from clitools import local_server
from PIL import Image

from harness.core.errors import HarnessError
from harness.metrics import clip, cmmd, dinov2, networks
from harness.rehearsal import CLIP_STANDIN, DINOV2_STANDIN, write_clip_weights, write_dinov2_weights

transformers = pytest.importorskip("transformers")  # the test extra's second implementation

TOL = 1e-5  # relative difference allowed between two implementations of the same network


pytestmark = pytest.mark.usefixtures("private_caches")  # clitools.private_caches; HF_HUB_OFFLINE=1: conftest


def spec(kind: str, path, **extra) -> dict:
    base = {"dinov2": {"arch": "vit_large_patch14_dinov2", "architecture": DINOV2_STANDIN, "image_size": 224},
            "clip": {"arch": "ViT-L-14-336", "architecture": CLIP_STANDIN, "image_size": 336}}[kind]
    return {**base, "url": "http://127.0.0.1:9/none", "file": f"{kind}.safetensors", "sha256": None,
            "weights_path": str(path), **extra}


def images(n=4, size=32, seed=0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


# --- DINOv2 ------------------------------------------------------------------------------------------------------


def hf_dinov2(state: dict, pos_embed: torch.Tensor):
    """transformers' Dinov2Model with the stand-in's weights (timm's names mapped to transformers'), 224x224."""
    d, heads, depth = DINOV2_STANDIN["embed_dim"], DINOV2_STANDIN["num_heads"], DINOV2_STANDIN["depth"]
    config = transformers.Dinov2Config(hidden_size=d, num_hidden_layers=depth, num_attention_heads=heads,
                                       intermediate_size=4 * d, image_size=224, patch_size=14, layer_norm_eps=1e-6,
                                       layerscale_value=1.0)
    model = transformers.Dinov2Model(config).eval()
    out = {"embeddings.cls_token": state["cls_token"], "embeddings.position_embeddings": pos_embed,
           "embeddings.mask_token": torch.zeros(1, d),
           "embeddings.patch_embeddings.projection.weight": state["patch_embed.proj.weight"],
           "embeddings.patch_embeddings.projection.bias": state["patch_embed.proj.bias"],
           "layernorm.weight": state["norm.weight"], "layernorm.bias": state["norm.bias"]}
    for i in range(depth):
        b, h = f"blocks.{i}.", f"encoder.layer.{i}."
        q, k, v = state[b + "attn.qkv.weight"].chunk(3)
        qb, kb, vb = state[b + "attn.qkv.bias"].chunk(3)
        out.update({h + "attention.q_proj.weight": q, h + "attention.k_proj.weight": k, h + "attention.v_proj.weight": v,
                    h + "attention.q_proj.bias": qb, h + "attention.k_proj.bias": kb, h + "attention.v_proj.bias": vb,
                    h + "attention.o_proj.weight": state[b + "attn.proj.weight"],
                    h + "attention.o_proj.bias": state[b + "attn.proj.bias"],
                    h + "layer_scale1.lambda1": state[b + "ls1.gamma"], h + "layer_scale2.lambda1": state[b + "ls2.gamma"]})
        for ours, theirs in (("norm1", "norm1"), ("norm2", "norm2"), ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2")):
            out[h + theirs + ".weight"], out[h + theirs + ".bias"] = state[b + ours + ".weight"], state[b + ours + ".bias"]
    result = model.load_state_dict(out, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return model


def test_dinov2_features_equal_transformers_dinov2(tmp_path):
    path = write_dinov2_weights(tmp_path / "model.safetensors")
    ours = dinov2.DINOv2Features(dinov2.load(spec("dinov2", path)))
    state = networks.read_state(path)
    assert state["pos_embed"].shape[1] == 1 + 37 * 37  # the hub file's 518x518 grid, resampled to 16x16 on load
    theirs = hf_dinov2(state, dinov2.resample_pos_embed(state["pos_embed"], 16))
    x = images(4, 32)
    with torch.no_grad():
        a = ours(x)
        b = theirs(pixel_values=dinov2.preprocess(x)).pooler_output
    assert a.shape == (4, DINOV2_STANDIN["embed_dim"])
    print(f"DINOv2 timm vs transformers: max relative difference {rel(a, b):.2e}")
    assert rel(a, b) <= TOL


def test_dinov2_official_pth_gives_the_same_features(tmp_path):
    """The official dinov2_vitl14_pretrain.pth (a torch.save'd state dict with mask_token) read with weights_only."""
    path = write_dinov2_weights(tmp_path / "model.safetensors")
    state = networks.read_state(path)
    torch.save({**state, "mask_token": torch.zeros(1, DINOV2_STANDIN["embed_dim"])}, tmp_path / "official.pth")
    x = images(2, 32)
    with torch.no_grad():
        a = dinov2.DINOv2Features(dinov2.load(spec("dinov2", path)))(x)
        b = dinov2.DINOv2Features(dinov2.load(spec("dinov2", tmp_path / "official.pth")))(x)
    assert torch.equal(a, b)


def test_pos_embed_resampling_is_the_official_arithmetic():
    """Without the offset it is transformers' resampling (size 16x16); with the official 0.1 it differs, as it does
    in facebookresearch/dinov2."""
    d = 8
    config = transformers.Dinov2Config(hidden_size=d, num_hidden_layers=1, num_attention_heads=1, intermediate_size=16,
                                       image_size=518, patch_size=14)
    embeddings = transformers.Dinov2Model(config).embeddings
    with torch.no_grad():
        embeddings.position_embeddings.normal_(generator=torch.Generator().manual_seed(0))
        theirs = embeddings.interpolate_pos_encoding(torch.zeros(1, 257, d), 224, 224)
    pos = embeddings.position_embeddings.detach()
    assert rel(dinov2.resample_pos_embed(pos, 16, offset=0.0), theirs) < 1e-6
    official = dinov2.resample_pos_embed(pos, 16)
    assert official.shape == (1, 257, d) and rel(official, theirs) > 1e-3
    assert torch.equal(official[:, 0], pos[:, 0])


def pil_bicubic(channel: np.ndarray, size: int) -> np.ndarray:
    return np.array(Image.fromarray(channel.astype(np.float32), mode="F").resize((size, size), Image.Resampling.BICUBIC))


@pytest.mark.parametrize("size", [32, 256])
def test_dinov2_preprocessing_is_antialiased_bicubic(size):
    """EDM2's resize (torch's bicubic with antialiasing) equals PIL's bicubic on the float values (an independent
    implementation of the same filter), up- (32) and downsampling (256); then /255 and ImageNet's mean and std."""
    x = images(1, size, seed=1)
    ours = dinov2.preprocess(x)[0]
    for c in range(3):
        pil = torch.from_numpy(pil_bicubic(x[0, c].numpy(), 224)) / 255
        expected = (pil - dinov2.MEAN[c]) / dinov2.STD[c]
        assert float((ours[c] - expected).abs().max()) < 1e-4
    gray = dinov2.preprocess(x[:, :1])
    assert torch.allclose(gray[0, 0] * dinov2.STD[0] + dinov2.MEAN[0], gray[0, 2] * dinov2.STD[2] + dinov2.MEAN[2], atol=1e-5)


# --- CLIP --------------------------------------------------------------------------------------------------------


def hf_clip(state: dict):
    """transformers' CLIPVisionModelWithProjection with the stand-in's visual.* weights (open_clip's names mapped)."""
    w, layers, heads = CLIP_STANDIN["width"], CLIP_STANDIN["layers"], CLIP_STANDIN["width"] // CLIP_STANDIN["head_width"]
    config = transformers.CLIPVisionConfig(hidden_size=w, intermediate_size=4 * w, num_hidden_layers=layers,
                                           num_attention_heads=heads, image_size=336, patch_size=14,
                                           projection_dim=CLIP_STANDIN["embed_dim"], hidden_act="quick_gelu",
                                           layer_norm_eps=1e-5)
    model = transformers.CLIPVisionModelWithProjection(config).eval()
    s = {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}
    v = "vision_model."
    out = {v + "embeddings.class_embedding": s["class_embedding"],
           v + "embeddings.position_embedding.weight": s["positional_embedding"],
           v + "embeddings.patch_embedding.weight": s["conv1.weight"],
           v + "pre_layrnorm.weight": s["ln_pre.weight"], v + "pre_layrnorm.bias": s["ln_pre.bias"],
           v + "post_layernorm.weight": s["ln_post.weight"], v + "post_layernorm.bias": s["ln_post.bias"],
           "visual_projection.weight": s["proj"].T.contiguous()}
    for i in range(layers):
        b, h = f"transformer.resblocks.{i}.", f"{v}encoder.layers.{i}."
        for (name, weight), bias in zip(zip(("q", "k", "v"), s[b + "attn.in_proj_weight"].chunk(3)),
                                        s[b + "attn.in_proj_bias"].chunk(3)):
            out[h + f"self_attn.{name}_proj.weight"], out[h + f"self_attn.{name}_proj.bias"] = weight, bias
        for ours, theirs in (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
                             ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
            out[h + theirs + ".weight"], out[h + theirs + ".bias"] = s[b + ours + ".weight"], s[b + ours + ".bias"]
    missing, unexpected = model.load_state_dict(out, strict=False)
    assert not unexpected and all("position_ids" in k for k in missing)
    return model


def test_clip_embeddings_equal_transformers_clip(tmp_path):
    path = write_clip_weights(tmp_path / "open_clip_model.safetensors")
    ours = clip.CLIPEmbeddings(clip.load(spec("clip", path)))
    theirs = hf_clip(networks.read_state(path))
    x = images(4, 32)
    with torch.no_grad():
        a = ours(x)
        e = theirs(pixel_values=clip.preprocess(x)).image_embeds
        b = e / e.norm(dim=-1, keepdim=True)  # cmmd's embed(): image_embeds divided by their norm
    assert a.shape == (4, CLIP_STANDIN["embed_dim"])
    print(f"CLIP open_clip vs transformers: max relative difference {rel(a, b):.2e}")
    assert rel(a, b) <= TOL


def keys_cubic_matrix(n: int, out: int, a: float = -0.75) -> np.ndarray:
    """Rows of Keys' cubic convolution (a = -0.75), half-pixel centres, edges clamped: what
    torch.nn.functional.interpolate(mode='bicubic', align_corners=False) computes, written out independently."""
    def k(t):
        t = abs(t)
        return (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1 if t <= 1 else (a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a if t < 2 else 0.0)
    m = np.zeros((out, n))
    for i in range(out):
        src = (i + 0.5) * n / out - 0.5
        base = math.floor(src)
        for j in range(base - 1, base + 3):
            m[i, min(max(j, 0), n - 1)] += k(src - j)
    return m


def test_clip_preprocessing_is_cmmd_bicubic():
    """cmmd's resize (bicubic, no antialiasing) against Keys' cubic convolution written out; /255 first, then CLIP's
    mean and std."""
    x = images(1, 32, seed=2)
    ours = clip.preprocess(x)[0].double()
    m = keys_cubic_matrix(32, 336)
    for c in range(3):
        expected = (m @ (x[0, c].double().numpy() / 255) @ m.T - clip.MEAN[c]) / clip.STD[c]
        assert float(np.abs(ours[c].numpy() - expected).max()) < 1e-5


# --- CMMD --------------------------------------------------------------------------------------------------------


def gaussian_mmd2(d: int, s: float, shift: float, sigma: float) -> float:
    """MMD^2 of N(0, s^2 I_d) and N(mu, s^2 I_d), |mu| = shift, with k = exp(-|x - y|^2 / (2 sigma^2)): for
    z ~ N(m, S), E k = det(I + S / sigma^2)^(-1/2) exp(-m'(S + sigma^2 I)^(-1) m / 2), here S = 2 s^2 I."""
    same = (1 + 2 * s ** 2 / sigma ** 2) ** (-d / 2)
    return 2 * same * (1 - math.exp(-shift ** 2 / (2 * (2 * s ** 2 + sigma ** 2))))


def test_cmmd_matches_the_closed_form_on_gaussians():
    d, s, shift, sigma, n = 8, 4.0, 6.0, 10.0, 1500
    gen = torch.Generator().manual_seed(0)
    mu = torch.zeros(d)
    mu[0] = shift
    draws = [cmmd.mmd2(s * torch.randn(n, d, generator=gen), mu + s * torch.randn(n, d, generator=gen), sigma=sigma,
                       scale=1.0, estimator="unbiased") for _ in range(8)]
    exact = gaussian_mmd2(d, s, shift, sigma)
    mean, se = float(np.mean(draws)), float(np.std(draws, ddof=1) / math.sqrt(len(draws)))
    assert abs(mean - exact) < 4 * se + 1e-4 * exact, (mean, se, exact)
    assert abs(mean - exact) < 0.03 * exact


def test_cmmd_estimators_against_pairwise_sums():
    """Both estimators against the kernel summed pair by pair (the biased one keeps the diagonal, as the published
    code's means over all pairs); blocks of rows do not change the value."""
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(7, 3, generator=gen).double(), torch.randn(5, 3, generator=gen).double() + 0.5
    k = lambda a, b: math.exp(-float(((a - b) ** 2).sum()) / 200)  # noqa: E731 - sigma = 10
    kxx = [[k(a, b) for b in x] for a in x]
    kyy = [[k(a, b) for b in y] for a in y]
    kxy = sum(k(a, b) for a in x for b in y) / 35
    biased = np.sum(kxx) / 49 + np.sum(kyy) / 25 - 2 * kxy
    unbiased = (np.sum(kxx) - 7) / 42 + (np.sum(kyy) - 5) / 20 - 2 * kxy
    assert cmmd.mmd2(x, y) == pytest.approx(1000 * biased, rel=1e-9)
    assert cmmd.mmd2(x, y, estimator="unbiased") == pytest.approx(1000 * unbiased, rel=1e-9)
    assert cmmd.kernel_sum(x, y, 10.0, block=2) == pytest.approx(cmmd.kernel_sum(x, y, 10.0), rel=1e-12)
    with pytest.raises(HarnessError, match="estimator"):
        cmmd.mmd2(x, y, estimator="vstat")


# --- weights: download, check, refusal ----------------------------------------------------------------------------

PAYLOAD = b"not really weights, but bytes with a known sha256" * 100


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        self.wfile.write(PAYLOAD)

    def log_message(self, *args):
        pass


def test_weights_download_once_then_offline(tmp_path):
    good = hashlib.sha256(PAYLOAD).hexdigest()
    with local_server(_Handler) as url:
        s = {"url": f"{url}/model.safetensors", "file": "net.safetensors", "sha256": good, "weights_path": None}
        assert networks.weights_file("dinov2", s, fetch=False) is None
        assert networks.identity("dinov2", s) == f"sha256:{good}"
        path = networks.weights_file("dinov2", s)
        assert path == networks.cached_file(s) and path.read_bytes() == PAYLOAD
    assert networks.weights_file("dinov2", s) == path  # the server is gone: the cache serves, checked
    path.write_bytes(PAYLOAD + b"x")
    with pytest.raises(HarnessError, match="delete it to download it again") as err:
        networks.weights_file("dinov2", s)
    assert "\n" not in str(err.value)


def test_weights_with_the_wrong_checksum_are_not_kept():
    with local_server(_Handler) as url:
        s = {"url": f"{url}/m", "file": "net.safetensors", "sha256": "0" * 64, "weights_path": None}
        with pytest.raises(HarnessError, match="wrong checksum"):
            networks.weights_file("clip", s)
    assert not networks.cached_file(s).exists()
    s["url"] = "http://127.0.0.1:9/unreachable"
    with pytest.raises(HarnessError, match="metrics.clip.weights_path"):
        networks.weights_file("clip", s)


def test_bad_weights_files_are_one_line_refusals(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    cases = {"missing.safetensors": None, "truncated.safetensors": b"\x10\x00\x00", "code.pth": pickle.dumps(Payload())}
    for name, data in cases.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
    with pytest.raises(HarnessError, match="not found; fix metrics.dinov2.weights_path"):
        networks.weights_file("dinov2", {"url": "u", "file": "f", "sha256": None, "weights_path": str(tmp_path / "missing.safetensors")})
    with pytest.raises(HarnessError, match="truncated or not safetensors"):
        networks.read_state(tmp_path / "truncated.safetensors")
    torch.save({"w": torch.zeros(1), "x": Payload()}, tmp_path / "code.pth")
    with pytest.raises(HarnessError, match="could run code|not a weights file"):
        networks.read_state(tmp_path / "code.pth")


def test_weights_of_another_architecture_are_one_line(tmp_path):
    path = write_dinov2_weights(tmp_path / "model.safetensors")
    with pytest.raises(HarnessError, match="metrics.dinov2.architecture") as err:
        dinov2.load(spec("dinov2", path, architecture={"depth": 3, "embed_dim": 64, "num_heads": 2}))
    assert "\n" not in str(err.value)


# --- where they run: off on the digits, on for the paper's datasets, scored, priced ------------------------------


def standin_arguments(tmp_path) -> list[str]:
    from harness.rehearsal import StandIns, network_arguments

    files = StandIns(tmp_path, tmp_path, {}, tmp_path, write_dinov2_weights(tmp_path / "dinov2.safetensors"),
                     write_clip_weights(tmp_path / "clip.safetensors"))
    return network_arguments(files)


def test_off_on_the_digits_on_for_the_paper_datasets():
    from clitools import cells

    from harness.core.names import Metric
    from harness.metrics.suite import scoring_of

    digits = cells()[0]
    assert not digits.metrics["fd_dinov2"] and not digits.metrics["cmmd"]
    assert not {Metric.FD_DINOV2, Metric.CMMD} & set(scoring_of(digits).metrics)
    assert cells("metrics.dinov2.image_size=448", "metrics.cmmd_sigma=3")[0].key == digits.key  # off: not in the key
    for dataset in ("cifar10", "celeba", "lsun_bedroom", "lsun_church"):
        scoring = scoring_of(cells(f"dataset={dataset}")[0])
        assert {Metric.FD_DINOV2, Metric.CMMD} <= set(scoring.metrics), dataset
        assert scoring.feature_space(Metric.FD_DINOV2) == "dinov2-vit-l-14"
        assert scoring.feature_space(Metric.CMMD) == "clip-vit-l-14-336"


@pytest.mark.slow
def test_a_cell_scores_them_with_intervals_and_a_dry_run_prices_them(tmp_path):
    """A digits cell with both on (the stand-ins; the 297 test images as the reference, to keep it short)."""
    from clitools import harness, runs

    args = ["N=6", "repeats=2", "S=2", "batch_size=6", "metrics.fd_dinov2=true", "metrics.cmmd=true",
            "dataset.fid_reference=digits-test", *standin_arguments(tmp_path)]
    harness(tmp_path, *args)
    run = runs(tmp_path).iloc[0]
    for metric in ("fd_dinov2", "fd_dinov2_inf", "cmmd"):
        assert math.isfinite(run[f"metrics.{metric}"]) and run[f"metrics.{metric}_ci95_low"] <= run[f"metrics.{metric}"]
    assert run["tags.features.fd_dinov2"] == "dinov2-vit-l-14" and run["tags.features.cmmd"] == "clip-vit-l-14-336"
    assert run["tags.inputs.dinov2_weights"].startswith("sha256:") and run["metrics.vit_seconds_per_image"] > 0
    after = harness(tmp_path, *args, "dry_run=true", "seed=1").stdout
    assert "FD_DINOv2 and CMMD features of 12 images: ~" in after and run["run_id"] in after


def test_without_the_metrics_extra_it_is_one_line_naming_it(monkeypatch):
    for module, library, setting in ((dinov2, "timm", "metrics.fd_dinov2=false"), (clip, "open_clip", "metrics.cmmd=false")):
        monkeypatch.setitem(__import__("sys").modules, library, None)  # as if not installed
        with pytest.raises(HarnessError, match=r"pip install -e '\.\[metrics\]'") as err:
            module.library()
        assert setting in str(err.value)
