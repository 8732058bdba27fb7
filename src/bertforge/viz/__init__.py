"""Pictures of what a model does: attention as a PNG (matplotlib) or a self-contained HTML file.

``attention.js`` and ``attention.css`` here draw the head view and the model view; the server's page loads
them, and ``attention_html`` inlines them, so both show the same views from one implementation.
"""

from bertforge.viz.attention import attention_html, attention_png

__all__ = ["attention_html", "attention_png"]
