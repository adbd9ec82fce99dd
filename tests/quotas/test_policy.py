"""The pure quota rules: limits from defaults and claims, charges, refusals, header."""

from __future__ import annotations

from tusd_trio.protocol.info import UploadInfo
from tusd_trio.quotas.policy import (
    Charge,
    QuotaConfig,
    QuotaLimits,
    QuotaUsage,
    charge_of,
    grantable,
    header_value,
    limits_for,
    refusal,
    released,
    size_refusal,
)


def test_claims_override_defaults_and_zero_means_no_limit() -> None:
    config = QuotaConfig(enabled=True, bytes=1000, uploads=3, max_size=500)
    assert limits_for(config, {}) == QuotaLimits(1000, 3, 500)
    assert limits_for(config, {"bytes": 50, "max_size": 0}) == QuotaLimits(50, 3, None)
    assert limits_for(QuotaConfig(enabled=True), {"uploads": 2}) == QuotaLimits(None, 2, None)


def test_charge_of_known_deferred_complete_and_final_uploads() -> None:
    assert charge_of(UploadInfo(id="a", size=100, offset=10)) == Charge(100, 1)
    assert charge_of(UploadInfo(id="b", size=100, offset=100)) == Charge(100, 0)
    assert charge_of(UploadInfo(id="c", size=0, size_is_deferred=True, offset=40)) == Charge(40, 1)
    final = UploadInfo(id="d", size=0, size_is_deferred=True, is_final=True)
    assert charge_of(final) == Charge(0, 1)


def test_refusal_names_the_limit_crossed() -> None:
    limits = QuotaLimits(bytes=100, uploads=2)
    assert refusal(limits, QuotaUsage(60, 0), Charge(40, 1)) is None
    assert "100 bytes" in (refusal(limits, QuotaUsage(61, 0), Charge(40, 1)) or "")
    assert "2 unfinished" in (refusal(limits, QuotaUsage(0, 2), Charge(0, 1)) or "")
    # Freeing never fails, even past a limit lowered meanwhile.
    assert refusal(limits, QuotaUsage(500, 5), Charge(0, 0)) is None
    assert size_refusal(QuotaLimits(max_size=10), 11) is not None
    assert size_refusal(QuotaLimits(max_size=10), 10) is None


def test_grants_and_releases_stay_within_bounds() -> None:
    assert grantable(QuotaLimits(bytes=100), QuotaUsage(70, 0), 50) == 30
    assert grantable(QuotaLimits(bytes=100), QuotaUsage(120, 0), 50) == 0
    assert grantable(QuotaLimits(), QuotaUsage(10**12, 0), 50) == 50
    assert released(QuotaUsage(10, 1), Charge(30, 2)) == QuotaUsage(0, 0)


def test_header_lists_usage_and_only_the_limits_that_apply() -> None:
    assert header_value(QuotaLimits(bytes=100, max_size=50), QuotaUsage(7, 1)) == (
        "bytes=7, bytes-limit=100, uploads=1, max-size=50"
    )
    assert header_value(QuotaLimits(uploads=4), QuotaUsage()) == (
        "bytes=0, uploads=0, uploads-limit=4"
    )
