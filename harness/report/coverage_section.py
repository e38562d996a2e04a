"""The report's "Model branch coverage" section: per module figures, the reachable branches
never taken, and the ones a replay of real Tor cannot take, with the reason.

Kept apart from page.py so the page only asks for the section's lines (harness.checks.coverage
owns the numbers, harness.checks.reachability the reasons).
"""

from __future__ import annotations

import html as _html

from harness.checks.coverage import CoverageReport, module_table
from harness.checks.differential import DiffSummary


def _body(cov: CoverageReport) -> list[str]:
    return cov.lines(reasons=True)[len(cov.head()):]


def markdown(diff: DiffSummary | None) -> list[str]:
    cov = diff.coverage if diff else None
    if cov is None:
        return []
    head, rows = module_table(cov)
    out = ["", "## Model branch coverage", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    for line in _body(cov):
        out += [f"- `{line.strip()}`"] if line.startswith("  ") else ["", line, ""]
    return out


def html(diff: DiffSummary | None) -> list[str]:
    cov = diff.coverage if diff else None
    if cov is None:
        return []
    e = _html.escape
    head, rows = module_table(cov)
    parts = ["<h2>Model branch coverage</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>"]
    parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows]
    parts.append("</table>")
    items: list[str] = []
    for line in [*_body(cov), ""]:
        if line.startswith("  "):
            items.append(f"<li><code>{e(line.strip())}</code></li>")
            continue
        if items:
            parts.append("<ul>" + "".join(items) + "</ul>")
            items = []
        if line:
            parts.append(f"<p>{e(line)}</p>")
    return parts
