"""A plain Frechet distance defers to its N -> inf version where the cells log both, and a metric the calibration
failed decides nothing (harness.report.claims)."""

from harness.report import claims as C
from harness.report.stats import Interval


def _claim(metric, verdicts):
    claim = C.Claim("improves_with_S", "The metric improves as S grows.", metric, "")
    claim.checks = [C.Check("Table 1, digits 8x8, eta=0", item, v, f"{metric} numbers", Interval(1.0, 0.5, 1.5, 4), 5)
                    for item, v in verdicts.items()]
    return claim


def test_fid_checks_defer_to_fid_inf_where_both_were_decided():
    fid = _claim("fid", {"10->20": C.PASS, "20->50": C.FAIL, "50->100": C.PASS})
    fid.checks.append(C.Check("Table 1, digits 8x8, eta=1", "10->20", C.PASS, "old cells, no fid_inf", None, 5))
    fid_inf = _claim("fid_inf", {"10->20": C.NOISE, "20->50": C.NOISE})
    fid_inf.checks.append(C.Check("Table 1, digits 8x8, eta=0", "50->100", C.NO_REPEATS, "K = 1", None, 1))
    C.defer_to_corrected(fid, fid_inf)
    assert [k.verdict for k in fid.checks] == [C.BIASED, C.BIASED, C.PASS, C.PASS]  # only where FID-inf decided
    assert "decided on FID-inf (bias-corrected), not on this" in fid.checks[0].evidence
    assert fid.verdict == C.PASS and fid_inf.verdict == C.NOISE
    only_biased = _claim("fd_pixels", {"10->20": C.FAIL})
    C.defer_to_corrected(only_biased, _claim("fd_pixels_inf", {"10->20": C.PASS}))
    assert only_biased.verdict == C.BIASED
    assert C.BIAS_CORRECTED == {"fid": "fid_inf", "fd_pixels": "fd_pixels_inf", "fd_dinov2": "fd_dinov2_inf"}


def test_uncalibrated_metrics_show_numbers_but_decide_nothing():
    assert set(C.NOT_FOR_VERDICTS) == {"fd_true", "fd_true_inf"}  # the calibration's failures (README table)
    claim = _claim("fd_true_inf", {"10->20": C.PASS, "20->50": C.NOISE})
    claim.checks.append(C.Check("Table 1, gmm, eta=0", "50->100", C.NO_REPEATS, "K = 1", None, 1))
    C.withhold_verdicts(claim, C.NOT_FOR_VERDICTS["fd_true_inf"])
    assert [k.verdict for k in claim.checks] == [C.UNCALIBRATED, C.UNCALIBRATED, C.NO_REPEATS]
    assert "no verdict: extrapolated to N -> inf it still held" in claim.checks[0].evidence
    assert claim.checks[0].interval.estimate == 1.0 and claim.verdict == C.NO_REPEATS
    claim.checks.pop()
    assert claim.verdict == C.UNCALIBRATED
