"""Small parts of the loop: backoff delays, credential scrubbing, status lines."""

from __future__ import annotations

import io
import json
import random

import pytest

from meshc.sync.backoff import Backoff
from meshc.sync.watch_log import StatusLog, scrub


def test_backoff_doubles_up_to_the_cap_with_bounded_jitter() -> None:
    backoff = Backoff(base=0.5, cap=4.0, jitter=0.2, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(8)]
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    assert all(0.8 * c <= d <= c for d, c in zip(delays, ceilings)), delays
    again = Backoff(base=0.5, cap=4.0, jitter=0.2, rng=random.Random(1))
    assert [again.next_delay() for _ in range(8)] == delays   # same seed, same delays
    backoff.reset()
    assert not backoff.failing and backoff.next_delay() <= 0.5


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(base=2.0, cap=1.0)


@pytest.mark.parametrize("secret, shown", [
    ("fetch https://bot:ghp_abcdef123456@github.com/acme/mesh.git failed", "https://***@github.com"),
    ("Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6", "Authorization: ***"),
    ("token=abcdef0123456789 rejected", "token=***"),
    ("etcd password: hunter22", "password: ***"),
])
def test_scrub_hides_credentials(secret: str, shown: str) -> None:
    cleaned = scrub(secret)
    assert shown in cleaned
    assert not any(word in cleaned for word in ("ghp_abcdef", "eyJhbGci", "abcdef0123", "hunter22"))


def test_json_lines_are_one_object_each_and_scrubbed() -> None:
    stream = io.StringIO()
    log = StatusLog(stream, "json")
    log.event("failed", "cannot fetch https://u:p4ss@example.com/r.git", error="token=abc12345678 bad",
              lines=["only for text"])
    log.status("never written when not a terminal")
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["event"] == "failed" and "p4ss" not in line and "abc12345678" not in line
    assert "only for text" not in line and "never written" not in line


def test_text_lines_carry_details_and_live_status_only_on_a_terminal() -> None:
    stream = io.StringIO()
    log = StatusLog(stream, "text", live=True)
    log.status("next check in 3s")
    log.event("applied", 'abc1234 "Bump": kubernetes 1 updated (1 writes, 42ms)', lines=["update kubernetes: x"])
    text = stream.getvalue()
    assert "\r\x1b[2K" in text and text.rstrip().endswith("update kubernetes: x")
    assert " applied  abc1234" in text
