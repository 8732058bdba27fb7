"""What a server is allowed to do: its address, backend, batching and limits (the flags of `bertforge serve`).

Imports neither torch nor the web framework, so the command line checks every flag in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from bertforge.errors import UsageError
from bertforge.export.layout import BACKENDS
from bertforge.options import check, option


@dataclass
class ServeSettings:
    """The server's settings; ``bertforge serve`` takes each as a flag of the same name."""

    model: str | None = option(None, "model directory: a fine-tuned task model of any family `predict` reads, a "
                               "pre-trained BERT with its masked-LM head, or a plain BERT encoder (MiniLM)")
    host: str = option("127.0.0.1", "address to listen on (loopback only by default)")
    port: int = option(8000, "port to listen on; 0 picks a free one", min=0, max=65535)
    backend: str = option("torch", "how the model runs: torch (the weights), or onnx / onnx-int8 (ONNX Runtime on "
                          "the graphs `bertforge export onnx` wrote into --model or --model/onnx; fine-tuned task "
                          "models: their route and tokenize)", choices=BACKENDS)
    max_batch_tokens: int = option(16384, "padded tokens per forward pass; 0 turns dynamic batching off "
                                   "(one request per forward pass)", min=0)
    max_wait_ms: float = option(5.0, "how long the first request of a batch waits for others to join it",
                                min=0, max=10_000)
    max_concurrent: int = option(512, "requests admitted at once (queued or running); more are answered 429",
                                 min=1)
    max_input_tokens: int = option(512, "pieces per input, special tokens included (also capped by the "
                                   "model's max_position_embeddings); longer inputs are answered 413",
                                   min=8, max=65536)
    max_inputs: int = option(1024, "inputs in one request; more are answered 413", min=1)
    truncate: bool = option(False, "cut inputs longer than --max-input-tokens instead of answering 413 "
                            "(a request may also ask for it with \"truncate\": true)")
    api_key: str | None = option(None, "require `Authorization: Bearer KEY` on every route but /health")
    timeout: float = option(60.0, "seconds a request may take before it is answered 504 (a request may ask "
                            "for less with the X-Timeout-Ms header)", above=0)
    log_level: str = option("warning", "server log level", choices=("critical", "error", "warning", "info", "debug"))
    loop_nice: int = option(10, "run the HTTP event loop this many nice levels below the model's threads (Linux, "
                            "model on the CPU): the forward passes get the cores first and the loop's work fits "
                            "between them; 0 leaves the loop at the model's priority", min=0, max=19)

    def __post_init__(self) -> None:
        check(self)
        if self.api_key is not None and (not self.api_key.strip() or any(c.isspace() for c in self.api_key)):
            raise UsageError("must be a non-empty string without spaces", flag="--api-key")

    @property
    def batching(self) -> bool:
        return self.max_batch_tokens > 0
