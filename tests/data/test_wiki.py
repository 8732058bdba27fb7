import bz2
import io

import pytest

from bertforge.data.sentences import split_sentences
from bertforge.data.wiki import iter_wiki_articles, strip_wiki_markup

# What must never survive into pre-training text.
MARKUP = ("{{", "}}", "[[", "]]", "<ref", "|}", "{|", "'''", "==", "&nbsp;", "http://", "https://")


@pytest.mark.parametrize(
    "wikitext, expected",
    [
        ("Text<!-- a comment\nover lines --> goes on.", "Text goes on."),
        ('A claim.<ref name="x">{{cite web|url=http://a.b}} Note * with stars.</ref> More.',
         "A claim. More."),
        ('A claim.<ref name="y" /> Again.<ref>multi\nline\n* ref</ref>', "A claim. Again."),
        ("{{Infobox|name={{nested|deep={{deeper}}}}|x=1}}Body text.", "Body text."),
        ("Before.\n{| class=wikitable\n|-\n| a || {| inner\n| b\n|}\n|}\nAfter.",
         "Before.\n\nAfter."),
        ("[[File:X.jpg|thumb|A caption with [[a link]] and [[b|c]].]] Text.", "Text."),
        ("[[Image:Y.png|left|Bicyclo[1.1.0]butane [above], drawn.]] Text.", "Text."),
        ("Text.[[Category:Things]] [[de:Ding]] [[be-x-old:Рэч]]", "Text."),
        ("See [[Anarchy]] and [[self-governance|self-governed]] [[wikt:word|words]].",
         "See Anarchy and self-governed words."),
        ("See [[:Category:Things|the list]] or [[wikt:anarchism]].",
         "See the list or anarchism."),
        ("[[Ada: A Novel]] and [[Star Trek: Voyager]].", "Ada: A Novel and Star Trek: Voyager."),
        ("A [http://example.com site label] and a bare http://example.org/x link [http://e.com].",
         "A site label and a bare link."),
        ("'''Bold''' and ''italic'' and '''''both'''''.", "Bold and italic and both."),
        ("Intro.\n== Heading ==\nBody.\n=== Sub ===\nMore.", "Intro.\n\nBody.\n\nMore."),
        ("Intro.\n* item one\n# item two\n:* nested item\nBody.", "Intro.\n\nBody."),
        (":Indented text.\n;Term\n;Term 2 : its definition.", "Indented text.\n\nits definition."),
        ("Caf&eacute; &amp; 5&nbsp;km &lt;tag&gt;.", "Café & 5 km <tag>."),
        ("__TOC__\nText. __NOTOC__", "Text."),
        ("A line\nthat wraps.\n\nNew paragraph.", "A line that wraps.\n\nNew paragraph."),
        ("H<sub>2</sub>O is <span style='x'>water</span>.<br/>Yes.", "H2O is water. Yes."),
        ("The formula <math>E = mc^2</math> is famous.", "The formula is famous."),
        ("{{lang|grc|ἀναρχία}}, {{convert|5|km|mi}} and {{nowrap|10 m}} ({{IPA|x}}; born).",
         "ἀναρχία, 5 km and 10 m (born)."),
        ("{{Nihongo|'''Aikido'''|合気道|Aikidō}} is an art. {{As of|2015}}, it grew.",
         "Aikido is an art. As of 2015, it grew."),
        ("Unclosed {{template\nstill open\n\nNext paragraph.", "Unclosed\n\nNext paragraph."),
        ("Stray }} and ]] closers.", "Stray and closers."),
    ],
)
def test_strip_wiki_markup(wikitext, expected):
    assert strip_wiki_markup(wikitext) == expected


def test_keep_lists():
    assert strip_wiki_markup("* first\n*# second\nBody.", keep_lists=True) == "first\n\nsecond\n\nBody."


DUMP = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10">
  <siteinfo><sitename>Wikipedia</sitename></siteinfo>
  <page><title>Redirected</title><ns>0</ns><id>1</id><redirect title="Target" />
    <revision><text xml:space="preserve">#REDIRECT [[Target]]</text></revision></page>
  <page><title>Alpha</title><ns>0</ns><id>2</id>
    <revision><text xml:space="preserve">'''Alpha''' is a [[letter]].&lt;ref&gt;Cite.&lt;/ref&gt; It is first.

== History ==
It came from [[Phoenicia|Phoenician]] writing.</text></revision></page>
  <page><title>Wikipedia:About</title><ns>4</ns><id>3</id>
    <revision><text xml:space="preserve">Project page text.</text></revision></page>
  <page><title>Only markup</title><ns>0</ns><id>4</id>
    <revision><text xml:space="preserve">{{Infobox}}
[[Category:Empty]]</text></revision></page>
  <page><title>Beta</title><ns>0</ns><id>5</id>
    <revision><text xml:space="preserve">Beta follows alpha.</text></revision></page>
</mediawiki>
"""


def test_iter_wiki_articles_skips_redirects_namespaces_and_empty_pages():
    articles = list(iter_wiki_articles(io.BytesIO(DUMP.encode())))
    assert articles == [
        ("Alpha", "Alpha is a letter. It is first.\n\nIt came from Phoenician writing."),
        ("Beta", "Beta follows alpha."),
    ]
    with_empty = list(iter_wiki_articles(io.BytesIO(DUMP.encode()), skip_empty=False))
    assert [title for title, _ in with_empty] == ["Alpha", "Only markup", "Beta"]


@pytest.fixture(scope="module")
def enwiki_articles(fetched):
    """The gensim English Wikipedia sample, parsed once for the module (a few seconds)."""
    path = fetched("gensim-data") / "enwiki-sample.xml.bz2"
    with bz2.open(path) as f:
        return [(title, split_sentences(text)) for title, text in iter_wiki_articles(f)]


def test_enwiki_sample_is_clean_article_text(enwiki_articles):
    # 206 pages: 100 redirects and 1 project page (ns 4) are skipped, 105 articles remain
    sentences = [s for _, doc in enwiki_articles for s in doc]
    words = sum(len(s.split()) for s in sentences)
    print(f"enwiki sample: {len(enwiki_articles)} articles, {len(sentences)} sentences, {words} words")
    assert len(enwiki_articles) == 105
    assert words >= 300_000
    assert 15_000 <= len(sentences) <= 22_000
    leftovers = [(m, s) for s in sentences for m in MARKUP if m in s]
    assert leftovers == []  # no tolerance needed: not one sentence keeps any of these
    titles = [t for t, _ in enwiki_articles]
    assert titles[:3] == ["Anarchism", "Autism", "Albedo"]
    assert "AccessibleComputing" not in titles  # a redirect


def test_enwiki_sample_reads_well(enwiki_articles):
    """Spot checks a reader would make: leads read as prose, infoboxes/footnotes are gone."""
    docs = dict(enwiki_articles)
    for title in ("Anarchism", "Alabama"):
        print(f"--- {title}")
        for s in docs[title][:30]:
            print(s)
    assert docs["Anarchism"][0] == (
        "Anarchism is a political philosophy that advocates self-governed societies based on "
        "voluntary institutions."
    )
    assert docs["Alabama"][0] == (
        "Alabama is a state located in the southeastern region of the United States."
    )
    # an inline template kept its text, a file caption did not leak
    assert any(s.startswith("Aikido is a modern Japanese martial art") for s in docs["Aikido"])
    assert not any("thumb|" in s or "File:" in s for _, doc in enwiki_articles for s in doc)
