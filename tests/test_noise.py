"""Per-image noise streams: the default CPU-generator scheme unchanged, and the counter-based Philox scheme."""

import math
import random

import numpy as np
import pytest
import torch
from scipy import stats

from harness.diffusion.analytic import GaussianMixtureEps
from harness.core.errors import HarnessError
from harness.diffusion.noise import (
    DEFAULT_NOISE_SCHEME,
    NOISE_SCHEMES,
    ImageNoise,
    image_seed,
    philox4x32,
    philox_keys,
    philox_normal,
)
from harness.diffusion.sampling import sample_seeded
from harness.diffusion.schedule import NoiseSchedule
from harness.diffusion.trajectory import timesteps

# Known-answer vectors of Random123 (D. E. Shaw Research), file tests/kat_vectors of
# https://github.com/DEShawResearch/random123, the "philox4x32 7" and "philox4x32 10" lines. Columns: rounds,
# counter (4 words), key (2 words), expected output (4 words), all hex 32-bit words.
KAT = """
7  00000000 00000000 00000000 00000000 00000000 00000000   5f6fb709 0d893f64 4f121f81 4f730a48
7  ffffffff ffffffff ffffffff ffffffff ffffffff ffffffff   5207ddc2 45165e59 4d8ee751 8c52f662
7  243f6a88 85a308d3 13198a2e 03707344 a4093822 299f31d0   4dfccaba 190a87f0 c47362ba b6b5242a
10 00000000 00000000 00000000 00000000 00000000 00000000   6627e8d5 e169c58d bc57ac4c 9b00dbd8
10 ffffffff ffffffff ffffffff ffffffff ffffffff ffffffff   408f276d 41c83b0e a20bc7c6 6d5451fd
10 243f6a88 85a308d3 13198a2e 03707344 a4093822 299f31d0   d16cfe09 94fdcceb 5001e420 24126ea1
"""


def reference_philox4x32(counter, key, rounds=10):
    """Philox-4x32 written with Python's unbounded ints and the full 64-bit products (no 16-bit splitting)."""
    m0, m1, w0, w1, mask = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85, 0xFFFFFFFF
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for r in range(rounds):
        p0, p1 = m0 * c0, m1 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & mask, (p0 >> 32) ^ c3 ^ k1, p0 & mask
        k0, k1 = (k0 + w0) & mask, (k1 + w1) & mask
    return c0, c1, c2, c3


def test_philox_known_answer_vectors():
    for line in KAT.strip().splitlines():
        rounds, *words = line.split()
        words = [int(w, 16) for w in words]
        counter, key, expected = words[:4], words[4:6], words[6:]
        out = philox4x32([torch.tensor(w) for w in counter], [torch.tensor(w) for w in key], rounds=int(rounds))
        assert [int(w) for w in out] == expected, line
        assert list(reference_philox4x32(counter, key, int(rounds))) == expected, line


def test_philox_on_tensors_equals_the_reference_on_random_words():
    """Batched over 2000 random counters and keys (high bits set, so the int64 products would overflow unsplit)."""
    rng = random.Random(0)
    words = [[rng.getrandbits(32) for _ in range(6)] for _ in range(2000)]
    words += [[0xFFFFFFFF] * 6, [0x80000000] * 6, [0xFFFF0000, 0x0000FFFF, 0xFFFFFFFF, 1, 0xFFFFFFFF, 0]]
    columns = torch.tensor(words, dtype=torch.int64).T
    out = torch.stack(philox4x32(columns[:4], columns[4:])).T.tolist()
    assert out == [list(reference_philox4x32(w[:4], w[4:])) for w in words]


def test_default_scheme_draws_are_unchanged():
    """The values of the CPU-generator scheme (the default) recorded before the Philox scheme was added."""
    assert DEFAULT_NOISE_SCHEME == "cpu-generator" and NOISE_SCHEMES == ("cpu-generator", "philox")
    assert image_seed(0, 0) == 15793235383387715774 and image_seed(7, 3) == 5061563556724077661
    noise = ImageNoise(7, [3, 0])
    first, second = noise.randn(3), noise.randn(2)
    assert [float.hex(v) for v in first.flatten().tolist()] == [
        "-0x1.4544180000000p-3", "0x1.b5d7ac0000000p-2", "-0x1.66c0fa0000000p-3",
        "-0x1.2a658c0000000p-2", "-0x1.c02cc40000000p-2", "-0x1.1fd0600000000p-1"]
    assert [float.hex(v) for v in second.flatten().tolist()] == [
        "0x1.10e3280000000p+0", "0x1.3821920000000p+0", "-0x1.d82efa0000000p-1", "-0x1.3cce8c0000000p-2"]


def draws(indices, shapes, seed=11):
    noise = ImageNoise(seed, indices, scheme="philox")
    return [noise.randn(*shape) for shape in shapes]


def test_philox_image_streams_do_not_depend_on_the_batch():
    """Image i's draws are the same in any batch, at any position: rows of [0..7] vs [3, 1], [0, 2, 4..7], [5]."""
    shapes = [(1, 8, 8), (1, 8, 8), (3, 5), (1, 8, 8)]
    whole = draws(range(8), shapes)
    assert all(z.dtype == torch.float32 and z.shape == (8, *s) for z, s in zip(whole, shapes))
    for subset in ([3, 1], [0, 2, 4, 5, 6, 7], [5]):
        for z_part, z_whole in zip(draws(subset, shapes), whole):
            assert torch.equal(z_part, z_whole[subset])


def test_philox_draw_depends_only_on_seed_index_and_draw_number():
    """Draw d of image i is computed from (seed, i, d) alone: whatever the other images or earlier draws asked for."""
    keys = philox_keys(11, [6])
    whole = draws(range(8), [(7,), (64,), (10,)])
    for d, z in enumerate(whole):
        assert torch.equal(philox_normal(keys, d, z.shape[1])[0], z[6])
    # element j does not depend on how many elements the draw has (odd and even counts)
    assert torch.equal(philox_normal(keys, 4, 9), philox_normal(keys, 4, 64)[:, :9])


def test_philox_streams_differ_across_seeds_indices_and_draws():
    n = 4096
    rows = torch.cat([
        philox_normal(philox_keys(0, range(4)), 0, n),
        philox_normal(philox_keys(1, range(4)), 0, n),
        philox_normal(philox_keys(0, range(4)), 1, n),
        philox_normal(philox_keys(0, range(4)), 2**32, n),  # the draw number's high word counts too
    ])
    equal = (rows[:, None, :] == rows[None, :, :]).float().mean(-1)
    assert torch.equal(equal.diag(), torch.ones(len(rows)))
    assert (equal - torch.eye(len(rows))).max() < 0.01  # float32 ties are rare, whole rows never repeat


def test_philox_normals_are_standard_normal():
    z = philox_normal(philox_keys(3, range(10)), 0, 10_000).double().flatten().numpy()  # 1e5 draws
    assert abs(z.mean()) < 4 / math.sqrt(z.size)
    assert abs(z.var() - 1) < 4 * math.sqrt(2 / z.size)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    tail = np.mean(np.abs(z) > 3)  # 0.0027 expected; ~270 of 1e5
    assert 0.0027 * 0.7 < tail < 0.0027 * 1.3


def test_philox_neighbouring_streams_and_counters_are_uncorrelated():
    n = 20_000
    bound = 4 / math.sqrt(n)  # four standard errors of a correlation of independent draws

    def corr(a, b):
        return float(np.corrcoef(a.double().numpy(), b.double().numpy())[0, 1])

    images = philox_normal(philox_keys(5, [0, 1, 2]), 0, n)
    assert abs(corr(images[0], images[1])) < bound and abs(corr(images[1], images[2])) < bound
    next_draw = philox_normal(philox_keys(5, [0, 1, 2]), 1, n)
    assert max(abs(corr(images[k], next_draw[k])) for k in range(3)) < bound
    next_seed = philox_normal(philox_keys(6, [0]), 0, n)
    assert abs(corr(images[0], next_seed[0])) < bound
    row = philox_normal(philox_keys(5, [0]), 0, 2 * n)[0]
    assert abs(corr(row[0::2], row[1::2])) < bound  # the Box-Muller pair of one block (cos, sin)
    assert abs(corr(row[1:-1:2], row[2::2])) < bound  # the last element of a block and the first of the next


def test_noise_scheme_validation():
    with pytest.raises(HarnessError, match="Unknown noise scheme 'curand'.*cpu-generator.*philox"):
        ImageNoise(0, [0], scheme="curand")
    with pytest.raises(HarnessError, match="prefetch applies to the 'cpu-generator' noise scheme only"):
        ImageNoise(0, [0], prefetch=4, scheme="philox")


def test_philox_sampling_is_batch_independent_end_to_end():
    """sample_seeded with the Philox scheme: x_T and per-step noise (eta = 1, sigma-hat) per image, bitwise."""
    schedule = NoiseSchedule.linear()
    g = torch.Generator().manual_seed(0)
    model = GaussianMixtureEps(schedule, torch.randn(2, 1, 4, 4, generator=g).clamp(-0.8, 0.8), stds=[0.1, 0.2])
    tau, shape = timesteps("uniform", 10), (1, 4, 4)
    for eta in (1.0, "hat"):
        whole = sample_seeded(model, range(8), 42, shape, tau, schedule, eta, noise_scheme="philox")
        parts = [sample_seeded(model, idx, 42, shape, tau, schedule, eta, noise_scheme="philox")
                 for idx in ([3, 1], [0, 2, 4, 5, 6, 7])]
        assert torch.equal(parts[0], whole[[3, 1]]) and torch.equal(parts[1], whole[[0, 2, 4, 5, 6, 7]])
        default = sample_seeded(model, range(8), 42, shape, tau, schedule, eta)
        assert (default - whole).abs().mean() > 0.1  # the scheme changes the images: it belongs to a run's identity


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (the GPU check of the Philox scheme)")
def test_philox_on_cuda_agrees_with_the_cpu():
    """The integer words are bitwise equal; the normals agree to float32 rounding (float64 log/sin/cos may differ)."""
    keys = philox_keys(2, range(64))
    counter = (torch.arange(3072)[None, :], 0, 5, 0)
    on_cpu = torch.stack(philox4x32(counter, (keys[:, :1], keys[:, 1:])))
    on_gpu = torch.stack(philox4x32([c.cuda() if torch.is_tensor(c) else c for c in counter],
                                    (keys[:, :1].cuda(), keys[:, 1:].cuda())))
    assert torch.equal(on_cpu, on_gpu.cpu())
    z_cpu = ImageNoise(2, range(64), scheme="philox").randn(3, 32, 32)
    z_gpu = ImageNoise(2, range(64), "cuda", scheme="philox").randn(3, 32, 32)
    assert z_gpu.device.type == "cuda"
    ulp = torch.finfo(torch.float32).eps * z_cpu.abs().clamp(min=2**-10)
    assert ((z_gpu.cpu() - z_cpu).abs() <= ulp).all()
