"""The sample-size planner (harness.report.stats) on inputs whose answers are worked out by hand here."""

import math

import pytest

from harness.report.stats import (
    MAX_GROWTH,
    detectable,
    guenther_repeats,
    images_needed,
    paired_plan,
    paired_power,
    repeats_needed,
    welch_plan,
)

Z_975, Z_80 = 1.959964, 0.841621  # standard normal quantiles (tables)


def test_repeats_needed_for_half_a_standard_deviation():
    """A true mean difference 2 with paired sd 4: effect e = 2 / 4 = 0.5. Guenther's formula:
    (1.959964 + 0.841621)^2 / 0.5^2 + 1.959964^2 / 2 = 7.848879 / 0.25 + 1.920729 = 31.395516 + 1.920729 = 33.316,
    so 34 repeats; the noncentral t agrees (power 0.808 at 34, 0.795 at 33), as do G*Power's tables (dz = 0.5: 34)."""
    assert guenther_repeats(0.5) == pytest.approx((Z_975 + Z_80) ** 2 / 0.25 + Z_975 ** 2 / 2, abs=1e-4)
    assert guenther_repeats(0.5) == pytest.approx(33.316, abs=1e-3)
    assert repeats_needed(2.0, 4.0) == 34 == repeats_needed(-2.0, 4.0)  # the sign does not matter
    assert paired_power(34, 0.5) >= 0.80 > paired_power(33, 0.5)


def test_repeats_needed_for_one_standard_deviation_and_more():
    """e = 1: (2.801585)^2 / 1 + 1.920729 = 7.848879 + 1.920729 = 9.77 -> 10 (exact: power 0.803 at 10, 0.748 at 9).
    e = 2: the approximation gives 7.848879 / 4 + 1.920729 = 3.88 -> 4, but t on 3 df is wide: the exact answer is 5
    (power 0.755 at 4, 0.909 at 5): the planner searches the noncentral t, not the approximation."""
    assert repeats_needed(3.0, 3.0) == 10
    assert math.ceil(guenther_repeats(2.0)) == 4 and repeats_needed(2.0, 1.0) == 5
    assert paired_power(4, 2.0) < 0.80 <= paired_power(5, 2.0)


def test_no_plan_for_a_zero_difference_and_two_repeats_for_no_spread():
    assert repeats_needed(0.0, 1.0) is None
    assert repeats_needed(0.5, 0.0) == 2
    with pytest.raises(ValueError):
        repeats_needed(float("nan"), 1.0)


def test_detectable_is_the_inverse_of_repeats_needed():
    """K = 10 repeats decide e = 1 with power 0.803 > 0.8, K = 9 do not (0.748): the minimum detectable effect of 10
    repeats lies just under 1 sd, that of 9 above it; at it the power is 80% exactly; it scales with sd."""
    assert detectable(10, 1.0) < 1.0 < detectable(9, 1.0)
    assert paired_power(10, detectable(10, 1.0)) == pytest.approx(0.80, abs=1e-6)
    assert detectable(10, 3.0) == pytest.approx(3 * detectable(10, 1.0))
    assert detectable(2, 1.0) > 10  # two repeats: t on 1 df (12.7) needs a huge effect
    with pytest.raises(ValueError):
        detectable(1, 1.0)


def test_paired_plan_counts_new_images_of_both_cells():
    """d = 2, sd = 4 over K = 5 repeats of N = 10 images: 34 repeats needed, 29 new per cell: 2 x 290 = 580 images,
    290 x (10 + 20) = 8,700 network evaluations, at 1e-3 s per image and NFE 8.7 s."""
    plan = paired_plan(2.0, 4.0, K=5, N=10, nfe_a=10, nfe_b=20, seconds_per_image_nfe=1e-3)
    assert (plan.K, plan.repeats, plan.images, plan.nfe) == (5, 34, 580, 8700)
    assert plan.seconds == pytest.approx(8.7)
    assert plan.detectable == pytest.approx(detectable(5, 4.0))
    assert paired_plan(2.0, 4.0, 5, 10, 10, 20, None).seconds is None  # no measured rate: no time
    grown = paired_plan(2.0, 4.0, 5, 10, 10, 20, 1e-3, have=(20, 5))  # a holds 20 repeats: 14 more, b 29 more
    assert (grown.images, grown.nfe) == (140 + 290, 140 * 10 + 290 * 20)


def test_a_difference_near_zero_gets_only_the_detectable_effect():
    """d = 0.01, sd = 1: (2.801585 / 0.01)^2 = 78,489 repeats, more than MAX_GROWTH x 5: near 0, no plan."""
    plan = paired_plan(0.01, 1.0, K=5, N=10, nfe_a=10, nfe_b=10, seconds_per_image_nfe=1e-3)
    assert repeats_needed(0.01, 1.0) > MAX_GROWTH * 5
    assert plan.repeats is None and plan.images is None and plan.detectable == pytest.approx(detectable(5, 1.0))


def test_welch_plan_in_images():
    """Standard errors 0.002 at 100 images each, d = 0.001: n = 100 x 7.848879 x (0.002^2 + 0.002^2) / 0.001^2
    = 100 x 7.848879 x 8 = 6,279.1 -> 6,280 images per cell, 6,180 new in each: 12,360 images, x NFE (20, 40)."""
    assert images_needed(0.001, 0.002, 100, 0.002, 100) == 6280
    plan = welch_plan(0.001, 0.002, 100, 0.002, 100, nfe_a=20, nfe_b=40, seconds_per_image_nfe=None)
    assert (plan.unit, plan.repeats, plan.images, plan.nfe) == ("images", 6280, 12360, 6180 * 60)
    assert plan.detectable == pytest.approx((Z_975 + Z_80) * math.hypot(0.002, 0.002), rel=1e-5)
