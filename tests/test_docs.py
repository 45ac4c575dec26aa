"""The README and docs/: every relative link points at a file or folder of the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# [text](target): targets with a scheme or only an anchor are not files.
LINK = re.compile(r"\]\(([^)\s]+)\)")


def relative_links(document: Path) -> list[str]:
    targets = LINK.findall(document.read_text())
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:|#", t)]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(document: Path) -> None:
    broken = [
        target
        for target in relative_links(document)
        if not (document.parent / target.split("#", 1)[0]).exists()
    ]
    assert not broken, f"{document.relative_to(ROOT)} links to missing files: {broken}"


def test_the_readme_links_to_every_document_in_docs() -> None:
    linked = {
        (ROOT / target.split("#", 1)[0]).resolve() for target in relative_links(ROOT / "README.md")
    }
    documents = {p.resolve() for p in (ROOT / "docs").glob("*.md")}
    assert documents <= linked, sorted(str(p.name) for p in documents - linked)


def test_the_readme_stays_a_front_door() -> None:
    """What a user needs first fits in 250 lines; the details live in docs/."""
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= 250, f"README.md has {lines} lines; move details into docs/"
