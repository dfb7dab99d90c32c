"""Rich tables for a coder at a terminal: codes with their evidence, then flags."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from extractor.schemas import Evidence, NoteResult


def _ev(evs: list[Evidence], limit: int = 3) -> str:
    return " | ".join(f"“{e.text}”" for e in evs[:limit])


def render_result(result: NoteResult, text: str, labels: dict[str, str] | None = None) -> None:
    """Print the suggestion tables; ``labels`` swaps our plain labels for licensed text."""
    console = Console()
    console.print(f"[bold]{result.note_id}[/bold]  ({len(text)} characters)")
    t = Table(title="CPT / HCPCS", show_lines=False)
    for col in ("code", "units", "mod", "dx", "conf", "what", "evidence"):
        t.add_column(col, overflow="fold")
    for line in result.cpt:
        label = (labels or {}).get(line.code) or line.label
        t.add_row(
            line.code,
            str(line.units),
            ",".join(line.modifiers),
            ",".join(line.icd10),
            f"{line.confidence:.2f}",
            label or line.rationale,
            _ev(line.evidence),
        )
    console.print(t if result.cpt else "[dim]No CPT suggestions.[/dim]")
    t = Table(title="ICD-10-CM")
    for col in ("code", "description", "conf", "evidence"):
        t.add_column(col, overflow="fold")
    for d in result.icd10:
        t.add_row(d.code, d.description, f"{d.confidence:.2f}", _ev(d.evidence))
    console.print(t if result.icd10 else "[dim]No ICD-10-CM suggestions.[/dim]")
    if result.flags:
        t = Table(title="Documentation flags")
        for col in ("flag", "severity", "message", "evidence"):
            t.add_column(col, overflow="fold")
        for f in result.flags:
            t.add_row(f.id, f.severity, f.message, _ev(f.evidence))
        console.print(t)
    else:
        console.print("[green]No documentation flags.[/green]")
    if result.considered:
        t = Table(title="Considered and set aside")
        t.add_column("code")
        t.add_column("why not", overflow="fold")
        for c in result.considered:
            t.add_row(c.code, c.reason)
        console.print(t)
    console.print(
        f"Dermoscopy: {result.dermoscopy.status}"
        + (
            f" (MDM data categories {result.dermoscopy.mdm_data_categories})"
            if result.dermoscopy.mdm_data_categories
            else ""
        )
    )
