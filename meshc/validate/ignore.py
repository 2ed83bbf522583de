"""Warnings a team has accepted, written in the spec where reviewers see them:

    spec:
      analysis:
        ignore:
        - {code: W302, service: api}     # only where the warning is about api
        - {code: W304}                   # everywhere

A warning is about a service when its data path lies inside that service's entry, or (for the
call-graph analysis, which reports positions) when its position does. Errors cannot be ignored.
An entry that silences nothing warns (W210), so stale entries do not pile up.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

from meshc.diagnostics import Diagnostic, warning
from meshc.load import Positions
from meshc.validate.models import Ignore, Mesh


def without_ignored(diagnostics: Sequence[Diagnostic], mesh: Mesh, positions: Positions) -> list[Diagnostic]:
    rules = mesh.spec.analysis.ignore or []
    if not rules:
        return list(diagnostics)
    owner = _service_owner(mesh, positions)
    used = [False] * len(rules)
    kept = []
    for diag in diagnostics:
        matched = [i for i, rule in enumerate(rules) if not diag.is_error and _matches(rule, diag, owner(diag))]
        for index in matched:
            used[index] = True
        if not matched:
            kept.append(diag)
    for index, rule in enumerate(rules):
        if not used[index]:
            where = ("spec", "analysis", "ignore", index)
            scope = f" about '{rule.service}'" if rule.service else ""
            kept.append(warning("W210", f"nothing to ignore: no {rule.code} warning{scope}; remove this entry",
                                positions.value(where), where))
    return kept


def _matches(rule: Ignore, diag: Diagnostic, service: str | None) -> bool:
    return rule.code == diag.code and (rule.service is None or rule.service == service)


Owner = Callable[[Diagnostic], "str | None"]


def _service_owner(mesh: Mesh, positions: Positions) -> Owner:
    """A function naming the service a diagnostic is about, or None."""
    names = [service.name for service in mesh.spec.services]
    starts = [positions.value(("spec", "services", i)).line for i in range(len(names))]
    by_line = sorted(zip(starts, names))
    lines = [line for line, _ in by_line]
    # Where the services list ends: a position after it (spec.analysis...) belongs to no service.
    last = positions.last_line(("spec", "services"))

    def owner(diag: Diagnostic) -> str | None:
        path = diag.path
        if len(path) > 2 and path[:2] == ("spec", "services") and isinstance(path[2], int) and path[2] < len(names):
            return names[path[2]]
        if (diag.span is None or diag.span.file != positions.file or not lines
                or not lines[0] <= diag.span.line <= last):
            return None
        return by_line[bisect.bisect_right(lines, diag.span.line) - 1][1]

    return owner

