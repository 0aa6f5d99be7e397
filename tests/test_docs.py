"""The front door: relative links in the Markdown documents resolve, and the licence and citation
files agree with the package."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import geoloc_lib

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = sorted(
    {REPO / "README.md", REPO / "reports" / "README.md", *(REPO / "docs").glob("*.md")}
)

# [text](target) and ![alt](target "title"); [label]: target (reference definitions)
INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.M)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
EXTERNAL = ("http://", "https://", "mailto:")


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M):
        base = _anchor(heading)
        n = seen.get(base, 0)
        anchors.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return anchors


def relative_links(path: Path) -> list[str]:
    """Every link target of ``path`` that is not external (code blocks and spans left out)."""
    text = INLINE_CODE.sub("", FENCE.sub("", path.read_text(encoding="utf-8")))
    targets = INLINE.findall(text) + REFERENCE.findall(text)
    return [t for t in targets if not t.lower().startswith(EXTERNAL)]


def test_the_documents_exist_and_have_links():
    assert all(p.is_file() for p in DOCUMENTS)
    assert relative_links(REPO / "README.md") and relative_links(REPO / "reports" / "README.md")


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(document):
    broken = []
    for target in relative_links(document):
        location, _, anchor = target.partition("#")
        resolved = (document.parent / location).resolve() if location else document
        if not resolved.exists():
            broken.append(f"{target} (no {resolved.relative_to(REPO.parent)})")
        elif anchor and resolved.suffix == ".md" and anchor.lower() not in _anchors(resolved):
            broken.append(f"{target} (no heading #{anchor} in {resolved.name})")
    assert not broken, f"{document.relative_to(REPO)}: broken links: {broken}"


def test_link_finder_reads_the_markdown_forms(tmp_path):
    sample = tmp_path / "sample.md"
    sample.write_text(
        '# Title\n[a](x.md) ![b](img/y.png "t") [c](https://e.org) [d](#title)\n'
        "`[no](code.md)`\n```\n[no](block.md)\n```\n[ref]: z.md\n",
        encoding="utf-8",
    )
    assert relative_links(sample) == ["x.md", "img/y.png", "#title", "z.md"]
    assert "title" in _anchors(sample)


def test_licence_and_citation_agree_with_the_package():
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")  # no tomllib on 3.10
    version = re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1)
    licence = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert 'license = { text = "MIT" }' in pyproject and licence.startswith("MIT License")
    assert "geoloc contributors" in licence
    citation = (REPO / "CITATION.cff").read_text(encoding="utf-8")
    fields = dict(re.findall(r"^([a-z-]+):\s*\"?([^\"\n]*)\"?\s*$", citation, re.M))
    assert fields["cff-version"] == "1.2.0" and fields["type"] == "software"
    assert fields["license"] == "MIT"
    assert fields["version"] == version == geoloc_lib.__version__


DOC_PAGES = (
    "usage.md",
    "real-data.md",
    "results.md",
    "readings.md",
    "reproducibility.md",
    "benchmarks.md",
    "architecture.md",
)


@pytest.mark.parametrize("page", DOC_PAGES)
def test_each_docs_page_is_linked_from_the_readme_and_says_what_it_is_for(page):
    path = REPO / "docs" / page
    assert path.is_file()
    assert f"docs/{page}" in relative_links(REPO / "README.md"), f"README.md does not link {page}"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# ") and lines[1] == "" and lines[2].strip(), (
        f"docs/{page}: a title, then one or two sentences saying what the page is for"
    )
