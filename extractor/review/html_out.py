"""One self-contained HTML page for a CDI review: no network, no external assets.

The page is opened from a shared drive or attached to an e-mail, often on machines
without internet access, and it holds note text (PHI): so every byte it needs is
inline (CSS, JS), it fetches nothing, and every piece of note text is HTML-escaped.

Layout: totals, a per-flag count table (click a row to filter), a flag filter, then
one card per flagged note with its flags (message, suggested query) next to the
suggested codes, and the note text with each flag's evidence highlighted. Without
the note text (``--notes`` not given, or a file that no longer matches the offsets)
the card shows the evidence snippets instead.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

from extractor.io import atomic_write_text
from extractor.review import FlaggedNote, counts_by_flag, counts_by_site, suggested_fix

TextLookup = Callable[[str], "str | None"]

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;
background:#f5f6f8}
header{background:#23395b;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:20px}
main{padding:16px 24px;max-width:1400px}
table{border-collapse:collapse;background:#fff;margin:8px 0 16px}
th,td{border:1px solid #d5d9e0;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#eef1f5}
tr.flagrow{cursor:pointer} tr.flagrow:hover{background:#f0f6ff}
.summary{display:flex;gap:32px;flex-wrap:wrap}
.controls{margin:12px 0;padding:8px 12px;background:#fff;border:1px solid #d5d9e0}
section.note{background:#fff;border:1px solid #d5d9e0;border-radius:6px;margin:14px 0;padding:12px}
section.note h2{font-size:16px;margin:0 0 8px}
.cols{display:grid;grid-template-columns:minmax(0,3fr) minmax(0,2fr);gap:16px}
pre.text{white-space:pre-wrap;word-wrap:break-word;font:13px/1.5 ui-monospace,Menlo,Consolas,
monospace;background:#fafbfc;border:1px solid #e3e6ea;padding:8px;max-height:520px;overflow:auto}
mark{background:#ffe58a;padding:0 1px;border-radius:2px}
mark.sev-error{background:#ffb3b3} mark.sev-info{background:#cfe8ff}
.flag{border-left:4px solid #e0a800;padding:4px 8px;margin:6px 0;background:#fffdf3}
.flag.sev-error{border-color:#d9534f;background:#fff5f5}
.flag.sev-info{border-color:#3a87d9;background:#f4f9ff}
.flag .id{font-weight:600} .flag .query{color:#394150;margin-top:3px}
.badge{display:inline-block;font-size:11px;padding:0 6px;border-radius:8px;background:#ddd;
margin-left:6px}
.codes td,.codes th{font-size:13px}
.snips li{margin:2px 0} .muted{color:#6b7280}
"""

_JS = """
(function(){
  var sel = document.getElementById('flag-filter');
  var shown = document.getElementById('shown-count');
  function apply(){
    var v = sel.value, n = 0;
    document.querySelectorAll('section.note').forEach(function(s){
      var ok = v === 'all' || s.getAttribute('data-flags').split(' ').indexOf(v) >= 0;
      s.hidden = !ok;
      if (ok) { n++; }
    });
    shown.textContent = String(n);
  }
  sel.addEventListener('change', apply);
  document.querySelectorAll('tr.flagrow').forEach(function(tr){
    tr.addEventListener('click', function(){
      sel.value = tr.getAttribute('data-flag'); apply();
    });
  });
  apply();
})();
"""


# The page may fetch nothing: a CSP that forbids every network source enforces it.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"


def _e(s: object) -> str:
    return html.escape(str(s), quote=True)


def _highlighted(text: str, note: FlaggedNote) -> str | None:
    """The note text with every flag's evidence marked; None when offsets do not match
    the text (the note file changed since the batch run): better no view than a wrong one."""
    spans: list[tuple[int, int, str, str]] = []
    for f in note.flags:
        for ev in f.evidence:
            if not (0 <= ev.start < ev.end <= len(text)) or text[ev.start : ev.end] != ev.text:
                return None
            spans.append((ev.start, ev.end, f.id, f.severity))
    spans.sort()
    merged: list[list] = []
    for s, e, fid, sev in spans:
        if merged and s < merged[-1][1]:
            last = merged[-1]
            last[1] = max(last[1], e)
            if fid not in last[2]:
                last[2].append(fid)
            continue
        merged.append([s, e, [fid], sev])
    out, pos = [], 0
    for s, e, fids, sev in merged:
        out.append(_e(text[pos:s]))
        out.append(
            f'<mark class="sev-{_e(sev)}" data-flag="{_e(" ".join(fids))}" '
            f'title="{_e(", ".join(fids))}">{_e(text[s:e])}</mark>'
        )
        pos = e
    out.append(_e(text[pos:]))
    return "".join(out)


def _codes(note: FlaggedNote) -> str:
    r = note.result
    rows = [
        f"<tr><td>CPT</td><td>{_e(c.code)}</td><td>{c.units}</td>"
        f"<td>{_e(' '.join(c.modifiers))}</td><td>{_e(', '.join(c.icd10))}</td></tr>"
        for c in r.cpt
    ] + [
        f'<tr><td>ICD-10-CM</td><td>{_e(c.code)}</td><td colspan="3">{_e(c.description)}</td></tr>'
        for c in r.icd10
    ]
    if not rows:
        return '<p class="muted">No codes suggested.</p>'
    return (
        '<table class="codes"><tr><th>set</th><th>code</th><th>units</th><th>modifiers</th>'
        "<th>pointers</th></tr>" + "".join(rows) + "</table>"
    )


def _note_card(note: FlaggedNote, idx: int, text: str | None) -> str:
    flags_html = "".join(
        f'<div class="flag sev-{_e(f.severity)}"><span class="id">{_e(f.id)}</span>'
        f'<span class="badge">{_e(f.severity)}</span><div>{_e(f.message)}</div>'
        f'<div class="query"><b>Suggested query:</b> {_e(suggested_fix(f))}</div></div>'
        for f in note.flags
    )
    body = _highlighted(text, note) if text is not None else None
    if body is not None:
        text_html = f'<pre class="text">{body}</pre>'
    else:
        why = (
            "Note text not available (run with --notes DIR to show it)."
            if text is None
            else "The note file no longer matches this result; showing the evidence only."
        )
        snips = "".join(
            f'<li><span class="badge">{_e(f.id)}</span> <mark class="sev-{_e(f.severity)}">'
            f'{_e(ev.text)}</mark> <span class="muted">[{ev.start}-{ev.end}]</span></li>'
            for f in note.flags
            for ev in f.evidence
        )
        text_html = f'<p class="muted">{_e(why)}</p><ul class="snips">{snips}</ul>'
    ids = " ".join(sorted({f.id for f in note.flags}))
    return (
        f'<section class="note" id="note-{idx}" data-flags="{_e(ids)}" '
        f'data-note-id="{_e(note.note_id)}"><h2>{_e(note.note_id)}'
        f'<span class="badge">{len(note.flags)} flag{"s" if len(note.flags) != 1 else ""}'
        f'</span></h2><div class="cols"><div>{text_html}</div><div>{flags_html}'
        f"<h3>Suggested codes</h3>{_codes(note)}</div></div></section>"
    )


def render_html(
    notes: list[FlaggedNote],
    *,
    total_notes: int,
    errors: int,
    source: str = "",
    text_of: TextLookup | None = None,
) -> str:
    by_flag = counts_by_flag(notes)
    by_site = counts_by_site(notes)
    flag_rows = "".join(
        f'<tr class="flagrow" data-flag="{_e(fid)}"><td>{_e(fid)}</td><td>{_e(sev)}</td>'
        f'<td class="count" id="count-{_e(fid)}" data-count="{n_notes}">{n_notes}</td>'
        f"<td>{n_occ}</td></tr>"
        for fid, (n_notes, n_occ, sev) in by_flag.items()
    )
    site_rows = "".join(f"<tr><td>{_e(s)}</td><td>{n}</td></tr>" for s, n in by_site.most_common())
    options = '<option value="all">all flags</option>' + "".join(
        f'<option value="{_e(fid)}">{_e(fid)}</option>' for fid in sorted(by_flag)
    )
    cards = "".join(
        _note_card(n, i, text_of(n.note_id) if text_of else None) for i, n in enumerate(notes)
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dermcode documentation review</title><style>{_CSS}</style></head>
<body><header><h1>Documentation review</h1><div>{_e(source)}</div></header><main>
<p id="totals">Notes in batch: <b id="total-notes">{total_notes}</b> &middot;
flagged (after filters): <b id="flagged-notes">{len(notes)}</b> &middot;
notes that failed to process (skipped): <b id="error-notes">{errors}</b></p>
<div class="summary"><div><h3>Flags</h3><table id="flag-counts"><tr><th>flag</th><th>severity</th>
<th>notes</th><th>occurrences</th></tr>{flag_rows}</table></div>
<div><h3>Sites</h3><table id="site-counts"><tr><th>site</th><th>flags</th></tr>{site_rows}</table>
</div></div>
<div class="controls"><label for="flag-filter">Show notes with flag </label>
<select id="flag-filter">{options}</select> &middot; showing <b id="shown-count">{len(notes)}</b>
of {len(notes)} flagged notes</div>
{cards}
</main><script>{_JS}</script></body></html>
"""


def write_html(notes: list[FlaggedNote], path: str | Path, **kw) -> None:
    atomic_write_text(path, render_html(notes, **kw))
