"""`bertforge attention`: a text's attention as a PNG (heatmaps) or a self-contained HTML file (the page's
head view and model view, which work opened from disk)."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from bertforge.cli.commands import Command, bert_config, model_dir, output_file
from bertforge.errors import UsageError

FORMATS = (".png", ".html", ".htm")
MAX_VALUES = 1 << 24  # layers x heads x tokens^2 computed at once; past it, one layer


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model directory (any BERT: pre-trained, fine-tuned or an encoder)")
    p.add_argument("text", help="the text")
    p.add_argument("--pair", help="a second text: the input is then the pair [CLS] text [SEP] pair [SEP]")
    p.add_argument("--out", required=True, help="FILE.png (matplotlib heatmaps) or FILE.html (interactive views)")
    p.add_argument("--layer", type=int, help="one layer (from 0): its heads; the HTML opens on it")
    p.add_argument("--head", type=int, help="one head (from 0) of --layer: its token-to-token map")


def _attention(args: argparse.Namespace) -> None:
    out = Path(args.out)
    if out.suffix.lower() not in FORMATS:
        raise UsageError(f"{out} must end in .png or .html", flag="--out")
    output_file(args.out, "--out", inputs=[args.model])
    for flag, value in (("--layer", args.layer), ("--head", args.head)):
        if value is not None and value < 0:
            raise UsageError(f"must be >= 0, got {value}", flag=flag)
    if args.head is not None and args.layer is None:
        raise UsageError("needs --layer too (a head is one of a layer's)", flag="--head")
    for flag, value in (("text", args.text), ("--pair", args.pair)):
        if value is not None and not value.strip():
            raise UsageError("is empty", flag=flag)
    path = model_dir(args.model)
    config = bert_config(path, "attention")
    for flag, value, count in (("--layer", args.layer, config.num_hidden_layers),
                               ("--head", args.head, config.num_attention_heads)):
        if value is not None and value >= count:
            raise UsageError(f"the model has {count} ({flag[2:]}s 0 to {count - 1}), got {value}", flag=flag)
    from bertforge.serve.bodies import Parsed
    from bertforge.serve.models import ServedModel
    from bertforge.viz import attention_html, attention_png

    model = ServedModel.load(path)
    if "attention" not in model.routes:
        raise UsageError(f"{path} does not run in torch, so its attention cannot be read", flag="--model")
    limits = model.limits(config.max_position_embeddings, truncate=True, attention_values=MAX_VALUES)
    n = len(model.tokenizer.encode(args.text, args.pair, max_length=limits.tokens))
    layer = args.layer
    whole = config.num_hidden_layers * config.num_attention_heads * n * n <= MAX_VALUES
    if not whole and layer is None:
        layer = config.num_hidden_layers - 1
        warnings.warn(f"{n} tokens: drawing layer {layer} alone (pass --layer to choose another)")
    parsed = Parsed([(args.text, args.pair)], ["text"], True, {"layer": None if whole else layer, "head": None})
    work = model.prepare("attention", parsed, limits)
    data = work.finish(model.run(work.op, list(work.rows)))[0]
    title = f"{path.name}: {args.text}" + (f" | {args.pair}" if args.pair else "")
    draw = attention_png if out.suffix.lower() == ".png" else attention_html
    draw(data, out, title=title, layer=layer, head=args.head)
    print(f"wrote {out} ({n} tokens, {len(data['layers'])} layers x {len(data['heads'])} heads)")


COMMANDS = (
    Command("attention", "draw a text's attention: a PNG of heatmaps or a self-contained HTML page",
            _arguments, _attention),
)
