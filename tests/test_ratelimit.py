"""The token buckets behind every rate limit: the burst, the refill, the wait they announce,
one key never paying for another, and a bounded memory under a flood of keys."""

from __future__ import annotations

import pytest

from sealpost.communications.email.smtp_server import AuthLimiter
from sealpost.config import Settings
from sealpost.ratelimit import Rate, RateLimiter, client_key, retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("text", "count", "period"),
    [
        ("600/minute", 600, 60.0),
        ("5/15m", 5, 900.0),
        ("100/10s", 100, 10.0),
        ("20/hour", 20, 3600.0),
        ("1/day", 1, 86400.0),
        (" 7 / 2.5 s ", 7, 2.5),
    ],
)
def test_rates_are_written_count_per_period(text: str, count: int, period: float) -> None:
    rate = Rate.parse(text)
    assert (rate.count, rate.period) == (count, period)
    assert Rate.parse(str(rate)) == rate


@pytest.mark.parametrize("text", ["", "600", "600/", "600/fortnight", "0/minute", "-1/s", "a/s"])
def test_a_rate_that_is_not_one_is_refused_with_the_expected_form(text: str) -> None:
    with pytest.raises(ValueError, match=r"COUNT/PERIOD|positive"):
        Rate.parse(text)


def test_settings_read_rates_and_an_empty_value_turns_a_limit_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SEALPOST_RATE_LIMIT_API_PER_TENANT", "5/15m")
    monkeypatch.setenv("SEALPOST_RATE_LIMIT_CODES_PER_IP", "")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.rate_limit_api_per_tenant == Rate(5, 900.0)
    assert settings.rate_limit_codes_per_ip is None
    assert settings.rate_limit_api_per_ip == Rate(6000, 60.0)  # the default
    monkeypatch.setenv("SEALPOST_RATE_LIMIT_API_PER_IP", "lots")
    with pytest.raises(ValueError, match="COUNT/PERIOD"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_a_burst_then_a_refusal_saying_how_long_to_wait_then_recovery() -> None:
    clock = Clock()
    bucket = RateLimiter(Rate(3, 60.0), clock=clock)  # 3 at once, one more every 20 s
    assert [bucket.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take("a") == pytest.approx(20.0)
    clock.now += 5
    assert bucket.take("a") == pytest.approx(15.0)  # refusals spend nothing
    clock.now += 15
    assert bucket.take("a") == 0.0
    assert bucket.take("a") == pytest.approx(20.0)
    clock.now += 3600  # a long pause refills to the burst, no more
    assert [bucket.take("a") for _ in range(4)][-1] == pytest.approx(20.0)


def test_one_key_over_its_rate_costs_another_nothing() -> None:
    bucket = RateLimiter(Rate(2, 60.0), clock=Clock())
    bucket.take("tenant-a")
    bucket.take("tenant-a")
    assert bucket.take("tenant-a") > 0
    assert bucket.take("tenant-b") == 0.0


def test_a_flood_of_keys_is_bounded_and_forgetting_only_ever_allows() -> None:
    bucket = RateLimiter(Rate(1, 3600.0), clock=Clock(), max_keys=100)
    for n in range(1000):
        assert bucket.take(f"10.0.{n // 256}.{n % 256}") == 0.0
    assert bucket.remembered() == 100
    assert bucket.take("10.0.3.231") > 0  # recent: still remembered


def test_client_keys_group_an_ipv6_host_by_its_64() -> None:
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:ffff::9")
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    named = client_key("testclient")  # a name a proxy header gave: a digest, never its size
    assert named.startswith("name:") and named == client_key("testclient")
    assert len(client_key("x" * 16384)) == len(named) and client_key("other") != named


def test_auth_failures_lock_an_ipv6_host_out_by_its_64_and_forget_clean_clients() -> None:
    limiter = AuthLimiter(max_failures=3, lockout_seconds=60)
    for host in ("2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"):
        assert not limiter.locked(host)
        limiter.failed(host)  # a new address of the same /64 for every guess
    assert limiter.locked("2001:db8:1:2::99") and not limiter.locked("2001:db8:1:3::1")
    for n in range(1000):  # asking about clients that never failed remembers nothing
        assert not limiter.locked(f"198.51.100.{n % 250}")
    assert len(limiter._failures) == 1


def test_retry_after_is_whole_seconds_never_zero() -> None:
    assert retry_after(0.01) == 1
    assert retry_after(19.2) == 20
