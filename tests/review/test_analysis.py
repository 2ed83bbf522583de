"""Call-graph analysis on real specs: retry amplification, timeout budgets, cycles, uncalled services."""

from __future__ import annotations

import re
from pathlib import Path

from meshc.analysis import amplification
from meshc.diagnostics import Diagnostic
from meshc.load import SpecSource
from meshc.pipeline import Checked, check
from tests.git.history import meshc
from tests.review.specs import chain, services


def checked(text: str, name: str = "mesh.yaml") -> Checked:
    result = check(SpecSource(name, text.encode()))
    assert result.ok, [str(d) for d in result.diagnostics if d.is_error]
    return result


def coded(result: Checked, code: str) -> list[Diagnostic]:
    return [d for d in result.diagnostics if d.code == code]


def line_of(text: str, needle: str, occurrence: int = 0) -> int:
    lines = [i + 1 for i, line in enumerate(text.splitlines()) if needle in line]
    return lines[occurrence]


def test_four_hops_of_three_retries_reach_the_last_service_256_times() -> None:
    text = chain(hops=4, attempts=3)
    result = checked(text)
    last = [d for d in coded(result, "W301") if "reaches 's4'" in d.message]
    assert len(last) == 1
    assert "s0 -> s1 -> s2 -> s3 -> s4 reaches 's4' up to 256 times per request (budget 10" in last[0].message
    assert last[0].span is not None and last[0].span.line == line_of(text, "- service: s4")
    assert result.mesh is not None
    factors = {name: a.factor for name, a in amplification(result.mesh).items()}
    assert factors == {"s0": 1, "s1": 4, "s2": 16, "s3": 64, "s4": 256}
    # Every service above the budget is named with its own factor; those within it are not.
    reported = sorted(re.search(r"reaches '(s\d)' up to (\d+)", d.message).groups() for d in coded(result, "W301"))  # type: ignore[union-attr]
    assert reported == [("s2", "16"), ("s3", "64"), ("s4", "256")]


def test_budget_comes_from_spec_analysis() -> None:
    assert not coded(checked(chain(4, 3, analysis="{maxRetryAmplification: 256}")), "W301")
    just_over = coded(checked(chain(4, 3, analysis="{maxRetryAmplification: 255}")), "W301")
    assert [d.message.split(" reaches ")[1][:4] for d in just_over] == ["'s4'"]
    assert "(budget 255, spec.analysis.maxRetryAmplification)" in just_over[0].message


def test_fail_fast_and_tcp_hops_do_not_multiply() -> None:
    broken = amplification(checked(chain(4, 3, fail_fast_hop=1)).mesh)  # type: ignore[arg-type]
    assert [broken[f"s{i}"].factor for i in range(5)] == [1, 4, 4, 16, 64]
    tcp = checked(chain(4, 3, protocol="tcp"))
    assert {a.factor for a in amplification(tcp.mesh).values()} == {1}  # type: ignore[arg-type]
    assert not coded(tcp, "W301") and not coded(tcp, "W201")


def test_worst_path_wins_in_a_diamond() -> None:
    text = services(
        "{name: a, image: a:1, port: 80, upstreams: [{service: b, localPort: 7001, retries: {attempts: 4}},"
        " {service: c, localPort: 7002, retries: {attempts: 1}}]}",
        "{name: b, image: b:1, port: 80, upstreams: [{service: d, localPort: 7001, retries: {attempts: 2}}]}",
        "{name: c, image: c:1, port: 80, upstreams: [{service: d, localPort: 7001, retries: {attempts: 9}}]}",
        "{name: d, image: d:1, port: 80}",
    )
    worst = amplification(checked(text).mesh)  # type: ignore[arg-type]
    assert worst["d"].factor == 20 and worst["d"].path == ("a", "c", "d")   # 2 x 10 beats 5 x 3


def test_strict_turns_the_warning_into_exit_1(tmp_path: Path) -> None:
    spec = tmp_path / "mesh.yaml"
    spec.write_text(chain(4, 3, per_try=False))
    relaxed = meshc("validate", str(spec))
    assert relaxed.returncode == 0 and "256 times" in relaxed.stderr
    assert {line.rsplit("[", 1)[1] for line in relaxed.stderr.splitlines() if "warning:" in line} == {"W301]"}
    strict = meshc("validate", "--strict", str(spec))
    assert strict.returncode == 1 and "[W301]" in strict.stderr
    within = spec.read_text().replace("  services:", "  analysis: {maxRetryAmplification: 256}\n  services:", 1)
    spec.write_text(within)
    assert meshc("validate", "--strict", str(spec)).returncode == 0


def test_timeout_budget_counts_what_the_callee_really_waits() -> None:
    # b waits on c at most 3 tries x 1s + backoff (25ms + 75ms) = 3.1s, well within its 60s timeout.
    base = services(
        "{name: a, image: a:1, port: 80, upstreams: [{service: b, localPort: 7001, timeout: 20s, "
        "retries: {attempts: 1, perTryTimeout: PERTRY}}]}",
        "{name: b, image: b:1, port: 80, upstreams: [{service: c, localPort: 7001, timeout: 60s, "
        "retries: {attempts: 2, perTryTimeout: 1s}}]}",
        "{name: c, image: c:1, port: 80}",
    )
    short = coded(checked(base.replace("PERTRY", "3s")), "W302")
    assert len(short) == 1
    assert short[0].message.startswith("a -> b: per-try timeout 3s is shorter than the 3100ms 'b' may wait on 'c' "
                                       "(3 tries x perTryTimeout 1s + backoff up to 100ms)")
    assert not coded(checked(base.replace("PERTRY", "3100ms")), "W302")


def test_timeout_budget_with_route_timeout_only() -> None:
    text = services(
        "{name: a, image: a:1, port: 80, upstreams: [{service: b, localPort: 7001, timeout: 2s, "
        "retries: {attempts: 0}}]}",
        "{name: b, image: b:1, port: 80, upstreams: [{service: c, localPort: 7001, timeout: 5s}]}",
        "{name: c, image: c:1, port: 80}",
    )
    budget = coded(checked(text), "W302")
    assert len(budget) == 1 and "a -> b: timeout 2s is shorter than the 5s 'b' may wait on 'c'" in budget[0].message


def test_retries_that_cannot_fit_the_route_timeout() -> None:
    text = chain(1, 3).replace("timeout: 60s", "timeout: 2s")
    fit = coded(checked(text), "W201")
    assert len(fit) == 1 and "4 tries x perTryTimeout 1s = 4s exceeds the route timeout 2s" in fit[0].message


def test_cycles_and_uncalled_services() -> None:
    text = services(
        "{name: a, image: a:1, port: 80, upstreams: [{service: b, localPort: 7001}]}",
        "{name: b, image: b:1, port: 80, upstreams: [{service: c, localPort: 7001}]}",
        "{name: c, image: c:1, port: 80, upstreams: [{service: b, localPort: 7001}]}",
        "{name: d, image: d:1, port: 80, upstreams: [{service: d, localPort: 7001}]}",
        "{name: e, image: e:1, port: 80}",
        analysis="{entryPoints: [a]}",
    )
    result = checked(text)
    cycles = sorted(d.message for d in coded(result, "W303"))
    assert len(cycles) == 2
    assert "cycle through b -> c -> b" in cycles[0] and "cycle through d -> d" in cycles[1]
    uncalled = coded(result, "W304")
    assert [d.message.split("'")[1] for d in uncalled] == ["e"]
    assert uncalled[0].span is not None and uncalled[0].span.line == line_of(text, "name: e")
    # Without declared entry points nobody is reported as uncalled.
    assert not coded(checked(text.replace("  analysis: {entryPoints: [a]}\n", "")), "W304")


def test_deep_chain_is_linear_and_exact() -> None:
    result = checked(chain(hops=40, attempts=1, analysis="{maxRetryAmplification: 1000000}"))
    worst = amplification(result.mesh)  # type: ignore[arg-type]
    assert worst["s40"].factor == 2 ** 40 and len(worst["s40"].path) == 41
    assert any(f"reaches 's40' up to {2 ** 40} times" in d.message for d in coded(result, "W301"))
