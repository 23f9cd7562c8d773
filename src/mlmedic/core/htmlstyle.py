"""The look shared by every page mlmedic writes (the dashboard, a replay, a monitoring pass):
one stylesheet, inlined in each page so it opens anywhere, and HTML escaping."""

from __future__ import annotations

import html

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#1d232a;
background:#f6f7f9}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}
.sub{color:#5b6570;margin-bottom:18px}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:12px}
.tile{background:#fff;border:1px solid #dde2e8;border-radius:8px;padding:12px 14px}
.tile .t{color:#5b6570;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.tile .v{font-size:30px;font-weight:650;margin:2px 0}
.tile .d{font-size:13px}.tile .w{color:#7a848f;font-size:12px;margin-top:6px}
.box{background:#fff;border:1px solid #dde2e8;border-radius:8px;padding:12px 14px;margin-top:12px}
table{border-collapse:collapse}td,th{padding:3px 10px 3px 0;text-align:left;vertical-align:top}
.ok{color:#1e8449}.warn{color:#b9770e}.bad{color:#c0392b}.muted{color:#7a848f}
svg text{font:11px system-ui,sans-serif;fill:#5b6570}
.legend span{display:inline-block;margin-right:14px}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px}
"""


def escape(value: object) -> str:
    """``value`` as text safe inside HTML, quotes included."""
    return html.escape(str(value), quote=True)
