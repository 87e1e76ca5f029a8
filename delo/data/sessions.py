"""Sessions and class order (protocol.md §2-3): built-in orders, ``sessions.json``, multi-label assignment.

Global label ids are contiguous per session in session order: session k owns [offset_k, offset_k + C_k).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from delo.data.records import DataError, RawRecord, Sample, SessionPlan, read_json, stable_int

ASSIGN_RULES = ("rarest", "first", "random")

# MM-IMDb: 27 genres minus the 7 rarest, 5 sessions of 4 in whole-dataset frequency order (inferred default).
MMIMDB_DROPPED = ("Sport", "Short", "Film-Noir", "News", "Adult", "Talk-Show", "Reality-TV")
MMIMDB_SESSIONS: tuple[tuple[str, ...], ...] = (
    ("Drama", "Comedy", "Romance", "Thriller"),
    ("Crime", "Action", "Adventure", "Horror"),
    ("Documentary", "Mystery", "Sci-Fi", "Fantasy"),
    ("Family", "Biography", "War", "History"),
    ("Music", "Animation", "Musical", "Western"),
)


FOOD101_BLOCKS = (10, 10)
"""UPMC-Food101's built-in order: (classes per session, sessions), consecutive blocks of its class order."""


def num_sessions(name: str, synthetic_kind: str = "mc") -> int:
    """Sessions of a dataset's built-in order: a run's T when ``data.num_tasks`` is unset (protocol.md §1)."""
    if name == "food101":
        return FOOD101_BLOCKS[1]
    if name == "mmimdb":
        return len(MMIMDB_SESSIONS)
    from delo.data import synthetic  # numpy and PIL: only for the synthetic benchmark's constants

    return synthetic.MC_SESSIONS if synthetic_kind == "mc" else synthetic.ML_SESSIONS


def blocks(class_order: list[str], per_session: int, num_sessions: int) -> SessionPlan:
    """Session t holds classes t*per_session ... (t+1)*per_session - 1 of ``class_order``; the rest is unused."""
    need = per_session * num_sessions
    if len(class_order) < need:
        raise DataError(
            f"class order has {len(class_order)} classes; {num_sessions} sessions x {per_session} need {need}"
        )
    return SessionPlan(
        tuple(tuple(class_order[t * per_session : (t + 1) * per_session]) for t in range(num_sessions))
    )


def find_sessions_file(root: Path | None, configured: str | None) -> Path | None:
    """The configured sessions file (which must exist), else ``<root>/sessions.json`` when present."""
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise DataError(f"data.sessions_file: {path} not found")
        return path
    if root is not None and (root / "sessions.json").is_file():
        return root / "sessions.json"
    return None


def read_sessions_file(path: Path) -> SessionPlan:
    """Parse ``{"sessions": [[names]...], "assign": ..., "samples": {id: session}}`` with clear errors."""
    data = read_json(path, "sessions file")
    problems: list[str] = []
    sessions = data.get("sessions") if isinstance(data, dict) else None
    if not isinstance(sessions, list) or not sessions:
        raise DataError(
            f'{path}: expected {{"sessions": [[label names], ...], ...}} with at least one session'
        )
    for t, session in enumerate(sessions):
        if not isinstance(session, list) or not session or not all(isinstance(n, str) for n in session):
            problems.append(f"sessions[{t}] must be a non-empty list of label names")
    names = [n for s in sessions if isinstance(s, list) for n in s]
    repeated = sorted(n for n, c in Counter(names).items() if c > 1)
    if repeated:
        problems.append(f"labels listed in more than one place: {repeated}")
    assign = data.get("assign", "rarest")
    if assign not in ASSIGN_RULES:
        problems.append(f"assign must be one of {ASSIGN_RULES}, got {assign!r}")
    samples = data.get("samples", {})
    if not isinstance(samples, dict):
        problems.append("samples must map sample ids to 0-based session indices")
        samples = {}
    bad = [k for k, v in samples.items() if not isinstance(v, int) or not 0 <= v < len(sessions)]
    if bad:
        problems.append(f"samples with a session outside 0..{len(sessions) - 1}: {bad[:5]}")
    unknown_keys = sorted(set(data) - {"sessions", "assign", "samples"})
    if unknown_keys:
        problems.append(f"unknown keys {unknown_keys} (allowed: sessions, assign, samples)")
    if problems:
        raise DataError(f"{path}: invalid sessions file:\n  " + "\n  ".join(problems))
    return SessionPlan(
        tuple(tuple(s) for s in sessions), assign, tuple(sorted((str(k), int(v)) for k, v in samples.items()))
    )


def check_known(plan: SessionPlan, known: set[str], source: str) -> None:
    unknown = [n for n in plan.label_names if n not in known]
    if unknown:
        raise DataError(
            f"{source}: sessions name labels absent from the data: {unknown}; known labels: {sorted(known)}"
        )


def place_multiclass(records: list[RawRecord], plan: SessionPlan) -> tuple[list[Sample], int]:
    """Samples of the classes in ``plan`` (label = global id); returns them and the count of unused ones."""
    ids, session_of = plan.global_ids(), plan.session_of()
    samples, unused = [], 0
    for rec in records:
        name = rec.labels[0]
        if name not in ids:
            unused += 1
            continue
        samples.append(Sample(rec.uid, rec.image, rec.text, ids[name], session_of[name]))
    return samples, unused


def base_uid(uid: str) -> str:
    """The movie id of a per-plot sample id ``<id>#<k>``."""
    return uid.split("#", 1)[0]


def genre_counts(records: list[RawRecord], plan: SessionPlan) -> Counter[str]:
    """Frequency of each planned label over all given records (all splits)."""
    keep = set(plan.label_names)
    counts: Counter[str] = Counter()
    seen: set[str] = set()
    for rec in records:
        movie = base_uid(rec.uid)
        if movie not in seen:  # one count per movie, also when samples are per plot
            seen.add(movie)
            counts.update(set(rec.labels) & keep)
    return counts


def assign_session(
    rec: RawRecord, kept: list[str], plan: SessionPlan, rule: str, counts: Counter[str]
) -> int:
    """Session of a multi-label record with kept labels ``kept`` (in the record's order).

    rarest: the session of its least frequent kept label (ties: the later session); first: the session of its
    first listed kept label; random: a session of its kept labels chosen by a stable hash of the id.
    """
    session_of = plan.session_of()
    if rule == "rarest":
        rarest = min(kept, key=lambda n: (counts[n], -session_of[n]))
        return session_of[rarest]
    if rule == "first":
        return session_of[kept[0]]
    if rule == "random":
        choices = sorted({session_of[n] for n in kept})
        return choices[stable_int("assign", base_uid(rec.uid)) % len(choices)]
    raise DataError(f"unknown assignment rule {rule!r} (allowed: {ASSIGN_RULES})")


def place_multilabel(records: list[RawRecord], plan: SessionPlan, rule: str) -> tuple[list[Sample], int]:
    """Samples with a kept label, each in one session; label = sorted global ids of all its kept labels.

    Records named in ``plan.samples`` go to that session (their labels must include one of it). Returns the
    samples and the count of records dropped for having no kept label.
    """
    ids, session_of = plan.global_ids(), plan.session_of()
    counts = genre_counts(records, plan)
    forced = dict(plan.samples)
    samples, dropped = [], 0
    for rec in records:
        kept = [n for n in rec.labels if n in ids]
        if not kept:
            dropped += 1
            continue
        movie = base_uid(rec.uid)
        if movie in forced:
            task = forced[movie]
            if all(session_of[n] != task for n in kept):
                raise DataError(
                    f"sessions file assigns sample {movie} to session {task}, but its labels {kept} "
                    f"belong to sessions {sorted({session_of[n] for n in kept})}"
                )
        else:
            task = assign_session(rec, kept, plan, rule, counts)
        label = tuple(sorted({ids[n] for n in kept}))
        samples.append(Sample(rec.uid, rec.image, rec.text, label, task, num_labels=len(ids)))
    return samples, dropped
