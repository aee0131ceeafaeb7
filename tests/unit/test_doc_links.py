"""Every pointer to a documentation page leads somewhere: links in README.md
and docs/*.md (with their #anchors), and the docs/*.md that code, configuration
and tests name."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SOURCES = [path for folder in ("bridge", "bench", "config", "scripts", "tests") for path in (ROOT / folder).rglob("*")
           if path.is_file() and "__pycache__" not in path.parts and path.suffix not in {".png", ".json"}]  # fmt: skip
SOURCES += [ROOT / name for name in ("docker-compose.yml", "Dockerfile", "pyproject.toml")]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```$", re.S | re.M)


def anchors(page: Path) -> set[str]:
    """GitHub's ids for the page's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", FENCE.sub("", page.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def test_every_link_of_the_docs_leads_to_a_file_and_heading_that_exist() -> None:
    broken = []
    for page in PAGES:
        for target in LINK.findall(FENCE.sub("", page.read_text())):
            if target.startswith(("http://", "https://")):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in anchors(linked)):
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert broken == []


def test_every_docs_page_named_in_the_code_exists() -> None:
    named = {(source.relative_to(ROOT), name) for source in SOURCES
             for name in re.findall(r"\bdocs/[\w-]+\.md", source.read_text(errors="replace"))}  # fmt: skip
    assert named, "no file names a docs page: the pattern is wrong"
    assert [(str(source), name) for source, name in sorted(named) if not (ROOT / name).exists()] == []
