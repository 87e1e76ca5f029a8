"""Every "<doc>.md §N" cited in the code resolves to a numbered heading of docs/<doc>.md, and nothing points
outside the repository for its documentation."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("delo", "launch", "tests", "sweeps")
TEXT_SUFFIXES = {".py", ".yaml", ".yml", ".md", ".txt", ".toml", ".cfg", ".ini", ".sh"}
SECTION = r"\d+(?:\.\d+)?"
# "<doc>.md §3", "§5.3", "§1-§7", "§2-3", "§2, §4, §5"
REF = re.compile(
    rf"\b([a-z][a-z0-9_-]*)\.md\s*§\s*({SECTION})((?:\s*(?:,\s*§|-\s*§?|–\s*§?|and\s*§)\s*{SECTION})*)"
)
TAIL = re.compile(rf"(,|-|–|and)\s*§?\s*({SECTION})")
HEADING = re.compile(rf"^#+\s+({SECTION})\.?\s", re.MULTILINE)
OUTSIDE = ("shared" + "/docs", ".." + "/shared")


def _files():
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*")):
            if path.is_file() and path.suffix in TEXT_SUFFIXES and "__pycache__" not in path.parts:
                yield path


def _sections(first: str, tail: str) -> list[str]:
    """The sections a reference names; an integer range a-b names every section in between."""
    out, prev = [first], first
    for sep, number in TAIL.findall(tail):
        if sep in "-–" and "." not in prev and "." not in number:
            out += [str(n) for n in range(int(prev) + 1, int(number) + 1)]
        else:
            out.append(number)
        prev = number
    return out


def references() -> list[tuple[str, int, str, str]]:
    """(file, line, doc name, section) for every reference in the scanned folders."""
    refs = []
    for path in _files():
        for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for match in REF.finditer(line):
                for section in _sections(match.group(2), match.group(3)):
                    refs.append((str(path.relative_to(ROOT)), lineno, match.group(1), section))
    return refs


def test_the_code_cites_the_docs():
    refs = references()
    assert len(refs) >= 50, f"only {len(refs)} references found: is the pattern still right?"
    docs = {doc for _, _, doc, _ in refs}
    assert {"method", "protocol", "ray-tune", "environment"} <= docs


def test_every_reference_resolves_to_a_heading():
    problems = []
    headings: dict[str, set[str]] = {}
    for where, line, doc, section in references():
        path = ROOT / "docs" / f"{doc}.md"
        if doc not in headings:
            headings[doc] = (
                set(HEADING.findall(path.read_text(encoding="utf-8"))) if path.is_file() else set()
            )
        if not path.is_file():
            problems.append(f"{where}:{line}: docs/{doc}.md does not exist")
        elif section not in headings[doc]:
            problems.append(f"{where}:{line}: docs/{doc}.md has no heading numbered {section}")
    assert not problems, "\n".join(problems)


DOC_NAMES = ("method", "protocol", "ray-tune", "environment", "style")
BARE = re.compile(r"(?<![\w/.-])(" + "|".join(DOC_NAMES) + r")\.md\b")


def test_every_named_doc_exists():
    """Also mentions without a section, such as "(ray-tune.md has the facts this follows)"."""
    missing = [
        f"{path.relative_to(ROOT)}:{n}: docs/{name}.md does not exist"
        for path in _files()
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        for name in BARE.findall(line)
        if not (ROOT / "docs" / f"{name}.md").is_file()
    ]
    assert not missing, "\n".join(missing)


def test_no_reference_points_outside_the_repository():
    hits = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in _files()
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if any(marker in line for marker in OUTSIDE)
    ]
    assert not hits, "\n".join(hits)


def test_reference_parsing():
    def parse(text):
        return [(m.group(1), s) for m in REF.finditer(text) for s in _sections(m.group(2), m.group(3))]

    assert parse("see x" + ".md §5.3, docs/y") == [("x", "5.3")]
    assert parse("(x" + ".md §1-§3)") == [("x", "1"), ("x", "2"), ("x", "3")]
    assert parse("(x" + ".md §2-3)") == [("x", "2"), ("x", "3")]
    assert parse("(x" + ".md §2, §4, §5)") == [("x", "2"), ("x", "4"), ("x", "5")]
    assert parse("(x" + ".md §5, steps 1-3)") == [("x", "5")]
