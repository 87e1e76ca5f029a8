"""The config errors every layer raises: launchers print them and exit with status 2."""

from __future__ import annotations

from pathlib import Path


class ConfigError(ValueError):
    """A config problem; the launchers print it and exit with status 2."""


class DamagedFileError(ConfigError):
    """A file the project wrote earlier cannot be read back (cut short by a full disk or a partial copy,
    overwritten, not ours). The message names the file, what is wrong with it and what to do; launchers exit 2."""

    def __init__(self, path: str | Path, problem: str, advice: str):
        self.path, self.problem, self.advice = Path(path), problem, advice
        super().__init__(f"{path}: damaged file ({problem}). {advice}")


def reader_error(exc: BaseException, limit: int = 160) -> str:
    """The first line of a reader's exception, shortened: what a one-line message can carry."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # torch appends paragraphs of advice after the first sentence (one suggests weights_only=False): dropped
    first = lines[0].split(". ", 1)[0].rstrip(".") if lines else ""
    marker = "WeightsUnpickler error:"  # the actual cause, further down, sometimes on the next line
    for n, line in enumerate(lines):
        if marker in line:
            cause = line.split(marker, 1)[1].strip() or (lines[n + 1] if n + 1 < len(lines) else "")
            first = f"{marker} {cause}"
            break
    text = f"{type(exc).__name__}: {first}".rstrip(": ")
    return text if len(text) <= limit else text[: limit - 3] + "..."
