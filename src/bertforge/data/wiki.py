"""Clean article text out of a MediaWiki XML dump, streaming.

``iter_wiki_articles`` walks the dump with ``ElementTree.iterparse`` and clears each page once
read, so memory stays flat however large the dump. Only main-namespace articles (``<ns>0``) that
are not redirects are kept. ``strip_wiki_markup`` turns wikitext into plain paragraphs, following
what the BERT authors kept from Wikipedia: "only the text passages", no lists, tables or headers.

It is regex-based, not a MediaWiki parser: templates are dropped (a few inline ones that carry
prose, such as ``{{lang|..|text}}``, ``{{nowrap|text}}`` and ``{{convert|5|km}}``, keep their
text), so a sentence that leant on an infobox or a pronunciation template can read a little
short. Markup it does not know is removed rather than left in the text.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from typing import BinaryIO, Iterator

__all__ = ["iter_wiki_articles", "strip_wiki_markup"]

_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
# Elements whose content is not prose: footnotes, formulas, galleries, code listings, ...
_DROPPED_ELEMENTS = (
    "ref|math|chem|ce|gallery|timeline|score|syntaxhighlight|source|pre|imagemap|graph|hiero|"
    "templatedata|references|mapframe|maplink|inputbox|categorytree"
)
_SELF_CLOSING = re.compile(rf"<(?:{_DROPPED_ELEMENTS})\b[^>]*?/>", re.IGNORECASE)
_DROPPED_BLOCK = re.compile(
    rf"<({_DROPPED_ELEMENTS})\b[^>]*>.*?(?:</\1\s*>|\Z)", re.IGNORECASE | re.DOTALL
)
_LINE_BREAK_TAG = re.compile(r"<br\s*/?>", re.IGNORECASE)
_TAG = re.compile(r"</?[A-Za-z][^>]*>")
_EXTERNAL_LINK = re.compile(  # [http://x.org label] -> label
    r"\[(?:(?:https?|ftp|mailto|news|irc):|//)[^\s\[\]]*(?:\s+([^\[\]]*))?\]"
)
# [[...]] holding no other [[ or ]] (single brackets allowed: "Bicyclo[1.1.0]butane").
_INTERNAL_LINK = re.compile(r"\[\[([^\[\]]*(?:(?:\[(?!\[)|\](?!\]))[^\[\]]*)*)\]\]")
_BARE_URL = re.compile(r"(?:https?|ftp)://\S+")
_TEMPLATE_TOKEN = re.compile(r"\{\{|\}\}")
_TABLE_TOKEN = re.compile(r"\{\||\|\}")
_EMPHASIS = re.compile(r"'{2,}")
_MAGIC_WORD = re.compile(r"__[A-Z]+__")
_PSEUDO_HEADING = re.compile(r"'{2,}[^']+'{2,}:?")  # a line that is all bold: a heading
_STRAY_MARKUP = re.compile(r"\[\[|\]\]|\{\{|\}\}|\{\||\|\}")
_EMPTY_PARENS = re.compile(r"[(（]\s*[,;:.\-–—]*\s*[)）]")
_PUNCT_BEFORE_STOP = re.compile(r"[,;:]+ ?(?=[.!?])")  # "Thus, <math>..</math>." -> "Thus."
_PARENS_OPEN_PUNCT = re.compile(r"([(（])\s*[,;:]+\s*")  # "(; singular alga)"
_SPACE_BEFORE_PUNCT = re.compile(r" (?=[,.;:!?)\]])")
_SPACE_AFTER_OPEN = re.compile(r"(?<=[(\[]) ")
_REPEATED_COMMAS = re.compile(r"([,;:])(?:\s*[,;])+")
_SPACES = re.compile(r"\s{2,}|[^\S ]")  # matches only what needs changing: fast

_NON_TEXT_NAMESPACES = frozenset({"file", "image", "category", "media"})
_INTERWIKI = frozenset(
    """w wikipedia wp wikt wiktionary s wikisource q wikiquote b wikibooks n wikinews v
    wikiversity voy wikivoyage species commons meta mw d wikidata foundation special help
    portal user talk template project""".split()
)
_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}(?:-[a-z]{1,8})*|simple")

# Inline templates whose rendering is prose (name -> which positional argument shows); all
# others (citations, infoboxes, navigation boxes, pronunciations ...) are dropped.
_TEXT_TEMPLATES = {
    **dict.fromkeys(["nowrap", "nobr", "small", "smaller", "big", "sc", "smallcaps", "em",
                     "strong", "noitalic", "sic", "not a typo", "ill", "nihongo", "angbr",
                     "flag", "flagcountry", "math", "mvar", "var", "abbr", "keypress"], 0),
    **dict.fromkeys(["lang", "transl", "transliteration"], -1),
}
_RANGE_WORDS = frozenset({"-", "–", "to", "and", "or", "by", "x", "+", "to(-)"})


def iter_wiki_articles(fileobj: BinaryIO, *, skip_empty: bool = True) -> Iterator[tuple[str, str]]:
    """Yield ``(title, clean_text)`` for each article of a MediaWiki XML dump (a binary file).

    Skips redirects, pages outside the main namespace (``ns != 0``) and, if ``skip_empty``,
    articles with no text left once cleaned. ``clean_text`` is ``strip_wiki_markup`` output:
    paragraphs separated by blank lines.
    """
    context = ET.iterparse(fileobj, events=("start", "end"))
    root = None
    for event, elem in context:
        if root is None:
            root = elem  # <mediawiki>; cleared below so finished pages do not pile up
        if event != "end" or _local(elem.tag) != "page":
            continue
        title, ns, text, redirect = "", "0", "", False
        for child in elem:
            name = _local(child.tag)
            if name == "title":
                title = child.text or ""
            elif name == "ns":
                ns = (child.text or "").strip()
            elif name == "redirect":
                redirect = True
            elif name == "revision":
                for part in child:
                    if _local(part.tag) == "text":
                        text = part.text or ""
        elem.clear()
        root.clear()
        if redirect or ns != "0" or text.lstrip()[:9].upper() == "#REDIRECT":
            continue
        clean = strip_wiki_markup(text)
        if clean or not skip_empty:
            yield title, clean


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def strip_wiki_markup(text: str, *, keep_lists: bool = False) -> str:
    """Plain text of wikitext ``text``: its paragraphs, separated by blank lines.

    Drops comments, footnotes (``<ref>``), formulas, templates and tables (nested), file/image/
    category links, headings (also ``;term`` and whole-line bold pseudo-headings), magic words and
    bare URLs; keeps link labels, external-link labels and the inner text of other HTML tags;
    unescapes entities. Consecutive text lines join into one paragraph, as MediaWiki renders
    them; an indented (``:``) line is a paragraph of its own. List items (``*``, ``#``) are
    dropped unless ``keep_lists``, in which case only their markers go.
    """
    text = _COMMENT.sub("", text)
    text = _SELF_CLOSING.sub("", text)
    text = _DROPPED_BLOCK.sub("", text)
    text = _LINE_BREAK_TAG.sub(" ", text)
    text = _resolve_links(text)
    text = _drop_nested(text, _TEMPLATE_TOKEN, "{{", _render_template)
    text = _drop_nested(text, _TABLE_TOKEN, "{|")
    if "[[" in text:
        text = _resolve_links(text)  # links whose captions held templates with brackets
    text = _TAG.sub("", text)
    text = _MAGIC_WORD.sub("", text)

    paragraphs: list[str] = []
    current: list[str] = []  # text lines of the paragraph being read

    def add(lines: list[str]) -> None:
        paragraph = _tidy(" ".join(lines))
        if any(c.isalnum() for c in paragraph):
            paragraphs.append(paragraph)
        lines.clear()

    for line in text.split("\n"):
        line = line.strip()
        if line and line[0] not in "*#:;|!{}=" and not _PSEUDO_HEADING.fullmatch(line):
            current.append(line)  # ordinary text: continues the paragraph
            continue
        if current:
            add(current)
        if not line or line[0] not in "*#:;":
            continue  # blank line, heading, or the remains of a table
        marker = line[: len(line) - len(line.lstrip("*#:;"))]
        body = line[len(marker):]
        if "*" in marker or "#" in marker:
            if not keep_lists:
                continue  # a list item, perhaps indented (":*")
        elif ";" in marker:
            body = body.partition(":")[2]  # ";term : definition" keeps the definition only
        add([body])
    if current:
        add(current)
    return "\n\n".join(paragraphs)


def _tidy(paragraph: str) -> str:
    """Finish a paragraph: emphasis, entities, URLs, and what removals leave behind (``( ; )``,
    ``word ,``, ``, ,``, double spaces, a stray unbalanced ``[[`` or ``}}``)."""
    paragraph = _EMPHASIS.sub("", paragraph)
    paragraph = html.unescape(paragraph)
    paragraph = _BARE_URL.sub("", paragraph)
    paragraph = _STRAY_MARKUP.sub("", paragraph)
    paragraph = _SPACES.sub(" ", paragraph)
    paragraph = _EMPTY_PARENS.sub("", paragraph)
    paragraph = _PARENS_OPEN_PUNCT.sub(r"\1", paragraph)
    paragraph = _REPEATED_COMMAS.sub(r"\1", paragraph)
    paragraph = _SPACE_BEFORE_PUNCT.sub("", paragraph)
    paragraph = _PUNCT_BEFORE_STOP.sub("", paragraph)
    paragraph = _SPACE_AFTER_OPEN.sub("", paragraph)
    return _SPACES.sub(" ", paragraph).strip(" ,;")


def _resolve_links(text: str) -> str:
    """External links to their labels, internal links to their labels, innermost first."""
    while True:
        new = _EXTERNAL_LINK.sub(lambda m: m.group(1) or "", text)
        new = _INTERNAL_LINK.sub(_render_link, new)
        if new == text:
            return text
        text = new


def _render_link(m: re.Match) -> str:
    target, pipe, label = m.group(1).partition("|")
    target = target.strip()
    colon_link = target.startswith(":")  # [[:Category:X]] shows the link instead of tagging
    target = target.lstrip(":").lstrip("#")
    raw_prefix, colon, rest = target.partition(":")
    prefix = raw_prefix.strip().lower()
    if colon and not colon_link and prefix in _NON_TEXT_NAMESPACES:
        return ""  # images, files with their captions, category tags
    if pipe:
        label = label.rpartition("|")[2].strip()
        if label:
            return label
    if colon and prefix in _INTERWIKI:
        return rest.strip()
    if colon and not colon_link and not pipe and _LANGUAGE_CODE.fullmatch(raw_prefix):
        return ""  # interlanguage link, [[de:Anarchismus]] (codes are lower case)
    return target


def _render_template(source: str) -> str:
    """The prose a few inline templates render to; empty for all others."""
    if "{{" in source[2:]:
        return ""  # nested: not one of the simple inline templates
    parts = source[2:-2].split("|")
    name = parts[0].strip().lower().replace("_", " ")
    args = []  # positional arguments, including explicit "1=..."
    for part in parts[1:]:
        key, eq, value = part.partition("=")
        if not eq:
            args.append(part.strip())
        elif key.strip().isdigit():
            args.append(value.strip())
    if not args:
        return ""
    if name in _TEXT_TEMPLATES:
        return args[_TEXT_TEMPLATES[name]]
    if name in ("convert", "cvt") and len(args) >= 2:
        if len(args) >= 4 and args[1] in _RANGE_WORDS:
            return " ".join(args[:4])
        return f"{args[0]} {args[1]}"
    if name == "as of":
        return f"As of {args[0]}"
    if name == "chem":
        return "".join(args)
    return ""


def _drop_nested(text: str, tokens: re.Pattern, opener: str, render=None) -> str:
    """Remove balanced ``opener ... closer`` spans, nested ones included, in one linear pass.

    ``render`` (if given) maps each outermost span's source to its replacement. A stray closer is
    dropped; an opener never closed drops the rest of its paragraph (up to a blank line).
    """
    if opener not in text:
        return text
    out: list[str] = []
    while True:
        depth = 0
        last = 0  # start of the text not yet copied (depth 0) or of the open span (depth > 0)
        for m in tokens.finditer(text):
            if m.group() == opener:
                if depth == 0:
                    out.append(text[last:m.start()])
                    last = m.start()
                depth += 1
            elif depth == 0:
                out.append(text[last:m.start()])  # stray closer
                last = m.end()
            else:
                depth -= 1
                if depth == 0:
                    if render is not None:
                        out.append(render(text[last:m.end()]))
                    last = m.end()
        if depth == 0:
            out.append(text[last:])
            return "".join(out)
        paragraph_end = text.find("\n\n", last)  # unclosed: drop to the end of the paragraph
        if paragraph_end < 0:
            return "".join(out)
        text = text[paragraph_end:]
