"""The README and the ``docs/`` pages, read the way a newcomer reads them: their links and
the shell commands of their ``sh`` blocks."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_SEPARATORS = {"&&", "||", ";", "|", "&"}


def blocks(page: Path, language: str) -> list[str]:
    """The fenced code blocks of one language in a page."""
    text = page.read_text(encoding="utf-8")
    return [body for lang, body in _FENCE.findall(text) if lang == language]


def prose(page: Path) -> str:
    """A page without its code blocks (links and headings live here)."""
    return _FENCE.sub("", page.read_text(encoding="utf-8"))


def links(page: Path) -> list[str]:
    """The targets of the page's Markdown links and images."""
    return _LINK.findall(prose(page))


def anchors(page: Path) -> set[str]:
    """GitHub's ids for the page's headings: lower case, punctuation dropped, spaces to -."""
    ids = set()
    for heading in re.findall(r"^#{1,6} (.+)$", prose(page), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        ids.add(slug)
    return ids


def shell_commands(page: Path) -> list[list[str]]:
    """Every simple command of the page's ``sh`` blocks, as words (comments dropped;
    ``&&``, ``|`` and ``;`` separate commands; ``\\`` continues a line)."""
    commands: list[list[str]] = []
    for body in blocks(page, "sh"):
        for line in body.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            current: list[str] = []
            for word in lexer:
                if word in _SEPARATORS:
                    commands.append(current)
                    current = []
                else:
                    current.append(word)
            commands.append(current)
    return [command for command in commands if command]


def pdsidecar_commands(page: Path) -> list[list[str]]:
    """The page's ``pdsidecar ...`` commands, from the word ``pdsidecar`` on; also those run
    through ``docker exec CONTAINER`` or after a ``--`` (``kubectl exec ... --``)."""
    found = []
    for words in shell_commands(page):
        if words[0] == "pdsidecar" or words[0].endswith("/bin/pdsidecar"):
            found.append(["pdsidecar", *words[1:]])
        elif words[:2] == ["docker", "exec"] and "pdsidecar" in words[3:4]:
            found.append(words[3:])
        elif "--" in words and words[words.index("--") + 1 :][:1] == ["pdsidecar"]:
            found.append(words[words.index("--") + 1 :])
    return found
