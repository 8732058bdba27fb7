"""Attention of one input, drawn: a PNG of heatmaps, or an HTML file with the page's interactive views.

``data`` is what ``POST /attention`` answers for one input: ``tokens``, ``token_type_ids``, ``layers`` and
``heads`` (their numbers) and ``attention[layer][head][from][to]``.
"""

from __future__ import annotations

import html
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from bertforge.io.atomic import atomic_path, atomic_write_text

HERE = Path(__file__).parent


def attention_png(data: dict[str, Any], path: str | Path, title: str = "", layer: int | None = None,
                  head: int | None = None) -> Path:
    """One head's token-to-token map (``layer`` and ``head``), one layer's heads (``layer``), or the grid
    of every layer x head; the colour scale is shared by all maps of a picture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    att = np.asarray(data["attention"], dtype=np.float32)  # (L, A, T, T)
    layers, heads, tokens = list(data["layers"]), list(data["heads"]), list(data["tokens"])
    rows = [layers.index(layer)] if layer is not None else list(range(len(layers)))
    cols = [heads.index(head)] if head is not None else list(range(len(heads)))
    picked = att[rows][:, cols]
    vmax = float(picked.max()) or 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # glyphs missing from the default font (CJK tokens)
        if len(rows) == 1 and len(cols) == 1:
            n = len(tokens)
            side = min(24.0, max(4.5, 0.32 * n + 2.5))
            fig, ax = plt.subplots(figsize=(side + 1.2, side))
            image = ax.imshow(picked[0, 0], cmap="Blues", vmin=0, vmax=vmax)
            ax.set_xticks(range(n), tokens, rotation=90, fontsize=8)
            ax.set_yticks(range(n), tokens, fontsize=8)
            ax.set_xlabel("attended to")
            ax.set_ylabel("attending token")
            ax.set_title(f"{title}\nlayer {layers[rows[0]]}, head {heads[cols[0]]}".strip(), fontsize=10)
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        else:
            cell = 1.25 if len(cols) <= 12 else 0.9
            fig, axes = plt.subplots(len(rows), len(cols), squeeze=False,
                                     figsize=(len(cols) * cell + 0.8, len(rows) * cell + 1.0))
            for r, l in enumerate(rows):
                for c, h in enumerate(cols):
                    ax = axes[r][c]
                    ax.imshow(att[l, h], cmap="Blues", vmin=0, vmax=vmax)
                    ax.set_xticks([])
                    ax.set_yticks([])
                    if r == 0:
                        ax.set_title(f"H{heads[h]}", fontsize=8)
                    if c == 0:
                        ax.set_ylabel(f"L{layers[l]}", fontsize=8)
            fig.suptitle(f"{title}\n{len(tokens)} tokens; rows: layers, columns: heads".strip(), fontsize=10)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
    return Path(path)


def attention_html(data: dict[str, Any], path: str | Path, title: str = "", layer: int | None = None,
                   head: int | None = None) -> Path:
    """A file that shows the head view and the model view when opened from disk: scripts, styles and
    data inline, nothing fetched."""
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    options = json.dumps({"layer": layer, "head": head})
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Attention: {html.escape(title)}</title>
<link rel="icon" href="data:,">
<style>
body {{ margin: 0; background: #f5f6fa; color: #1f2430;
       font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }}
main {{ max-width: 1180px; margin: 1.2rem auto; padding: 1rem 1.4rem; background: #fff; border: 1px solid #e3e6ee;
        border-radius: 10px; }}
h1 {{ font-size: 1.2rem; margin: 0 0 .3rem; }}
.muted {{ color: #6b7280; }}
{(HERE / "attention.css").read_text(encoding="utf-8")}
</style></head>
<body><main>
<h1>Attention</h1>
<p class="muted">{html.escape(title)}</p>
<div id="attention"></div>
</main>
<script>
{(HERE / "attention.js").read_text(encoding="utf-8")}
</script>
<script>
BertforgeAttention.render(document.getElementById("attention"), {payload}, {options});
</script>
</body></html>
"""
    atomic_write_text(path, page)
    return Path(path)
