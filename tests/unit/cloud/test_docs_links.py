"""The docs hold together: every relative link in README.md and docs/*.md reaches a file (and the
heading its anchor names), the README stays short, and no page reads as a history of rounds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support import REPO
from tests.support.docs import doc_files

README_MAX_LINES = 300
ROUND_HISTORY = ("this round", "this sitting", "what moved")

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def prose(text: str) -> str:
    """The text outside code blocks and code spans, where a [..](..) is a link."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def anchors(text: str) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces to hyphens,
    repeats numbered -1, -2, ..."""
    seen: dict[str, int] = {}
    found = set()
    for title in HEADING.findall(FENCE.sub("", text)):
        slug = re.sub(r"[^\w\- ]", "", title.replace("`", "").lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def links(path: Path) -> list[str]:
    return [t for t in LINK.findall(prose(path.read_text())) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


DOCS = doc_files()


@pytest.mark.parametrize("path", DOCS, ids=[str(p.relative_to(REPO)) for p in DOCS])
def test_every_relative_link_reaches_a_file_and_its_heading(path: Path) -> None:
    broken = []
    for target in links(path):
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
            broken.append(f"{target}: no heading with that anchor in {dest.relative_to(REPO)}")
    assert not broken, f"{path.relative_to(REPO)}: " + "; ".join(broken)


def test_the_readme_links_every_page_of_docs() -> None:
    linked = {(REPO / t.partition("#")[0]).resolve() for t in links(REPO / "README.md")}
    expected = set((REPO / "docs").glob("*.md"))
    missing = sorted(p.relative_to(REPO).as_posix() for p in expected if p.resolve() not in linked)
    assert not missing, f"README.md's 'Where to read more' does not link {missing}"


def test_the_readme_is_at_most_300_lines() -> None:
    lines = len((REPO / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/"


@pytest.mark.parametrize("path", DOCS, ids=[str(p.relative_to(REPO)) for p in DOCS])
def test_no_page_reads_as_a_history_of_rounds(path: Path) -> None:
    text = path.read_text().lower()
    found = [phrase for phrase in ROUND_HISTORY if phrase in text]
    assert not found, f"{path.relative_to(REPO)} says {found}: write the state of things, not its history"


def test_anchors_follow_githubs_rules() -> None:
    page = "# 1. The agent service: `coding_agent.py`\n## `serve --help`\n## Sessions\n## Sessions\n"
    assert anchors(page) == {"1-the-agent-service-coding_agentpy", "serve---help", "sessions", "sessions-1"}
