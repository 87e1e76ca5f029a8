"""The experiment-folder contract and the trial status vocabulary, in one place (no Ray).

An experiment folder ``<storage>/<spec name>/`` holds::

    sweep_spec.yaml, sweep_spec.sha256   the resolved spec and its hash (launcher, first start; --resume checks)
    trial_status.yaml                    the driver's last view of every trial (progress callback)
    events.out.tfevents.*                the experiment-level TensorBoard hparams config (launcher, once)
    tuner.pkl, experiment_state-*.json   Tune's own state
    results.csv, results.md, *.png       the report (driver at the end, or launch/summarize.py)
    optuna_study.db                      a search's Optuna study (SQLite, study name = spec name; the driver
                                         writes it, optuna-dashboard and optuna.load_study read it)
    asha_rungs.jsonl                     a search's results at ASHA's rungs, in the order its scheduler saw them
    <trial folder>/                      one per trial, named <label>_s<seed>_<trial id>:
        trial.json                       label, variant, seed, overrides, full config (trainable)
        result.json, error.txt           Tune's per-report JSON lines and failure log
        <trial folder>/                  the runner's out_dir (its checkpoints/, tb/, result.json)

``trial_status.yaml`` is not JSON on purpose: Tune copies the experiment root's .json/.pkl files into its staging
folder on restore and syncs them back up periodically, which would overwrite a fresher file with the old one.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from delo.atomic import atomic_write_json, atomic_write_text, atomic_write_yaml
from delo.config import ConfigError, DamagedFileError, reader_error, strict_yaml_load

if TYPE_CHECKING:
    from delo.sweep.spec import Sweep

SPEC_FILE = "sweep_spec.yaml"
HASH_FILE = "sweep_spec.sha256"
STATUS_FILE = "trial_status.yaml"
TRIAL_INFO = "trial.json"
TUNE_RESULT = "result.json"
"""Tune's per-trial file of JSON lines, one per report; the runner's own result.json lives in its out_dir."""
RUNNER_RESULT = "result.json"
TUNE_ERROR = "error.txt"
TUNE_STATE_GLOB = "experiment_state-*.json"
TUNER_FILE = "tuner.pkl"
RUNNER_CHECKPOINTS = "checkpoints"
"""= delo.checkpoint.CHECKPOINT_DIRNAME (not imported: that module loads torch, 2 s per trial process)."""
OPTUNA_DB = "optuna_study.db"
RUNG_LOG = "asha_rungs.jsonl"
"""One JSON line per result at an ASHA rung (trial folder, task, metric, stopped), appended by the driver (not
.json: Tune copies the experiment root's .json files back and forth on restore)."""
RESULTS_CSV = "results.csv"
RESULTS_MD = "results.md"
RESULTS_TEX = "results.tex"
PROVENANCE_FILE = "provenance.json"
"""The sweep folder's provenance: one block per launch of the driver (a --resume adds one)."""


def optuna_storage_url(exp_dir: str | Path) -> str:
    """The SQLAlchemy URL of a search's Optuna study in its experiment folder (absolute, so it opens from anywhere)."""
    return f"sqlite:///{Path(exp_dir).resolve() / OPTUNA_DB}"


class Status:
    """What ``trial_status.yaml`` and the report call a trial. Tune's own names (PENDING, RUNNING, PAUSED, ERROR)
    pass through; its TERMINATED is split into COMPLETED (reached the last task) and STOPPED (ASHA)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    ERROR = "ERROR"
    TERMINATED = "TERMINATED"
    """Tune's name for a trial that ended; never written (COMPLETED or STOPPED instead)."""
    COMPLETED = "COMPLETED"
    STOPPED = "STOPPED"
    """Stopped early by ASHA (told to Optuna as PRUNED)."""
    INTERRUPTED = "INTERRUPTED"
    """Live when the sweep was interrupted; --resume restores it as pending."""
    INCOMPLETE = "INCOMPLETE"
    """The report's word for a trial folder with neither a final report, a status entry nor an error file."""

    LIVE = (PENDING, RUNNING, PAUSED)
    FINISHED = (COMPLETED, STOPPED, ERROR)
    """A sweep whose every trial is in one of these needs no --resume."""


def ended_status(has_final: bool) -> str:
    """Tune's TERMINATED, named by whether the trial reached its final report."""
    return Status.COMPLETED if has_final else Status.STOPPED


# ----------------------------------------------------------------------------------------------------------
# Trial folders


def trial_dirname(label: str, seed: int, trial_id: str) -> str:
    """``<label>_s<seed>_<id>`` with only filesystem-safe characters, short enough for any path."""
    safe = re.sub(r"[^A-Za-z0-9.\-]+", "", label.replace("_", "-").replace(",", "-"))
    safe = safe.replace("=", "")[:48] or "trial"
    return f"{safe}_s{seed}_{trial_id}"


def read_rung_log(exp_dir: str | Path) -> list[dict[str, Any]]:
    """The rung log's lines in order ([] when absent); a line cut short by a killed driver is left out."""
    path = Path(exp_dir) / RUNG_LOG
    rows = []
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    return rows


def write_trial_info(trial_dir: Path, info: dict[str, Any]) -> None:
    atomic_write_json(trial_dir / TRIAL_INFO, info)


def error_reason(error_file: str | Path | None) -> str:
    """The last line of the latest failure in a Tune error.txt (the exception type and message)."""
    if not error_file or not Path(error_file).is_file():
        return "unknown error (no error.txt)"
    text = Path(error_file).read_text(errors="replace")
    latest = text.rsplit("Failure # ", 1)[-1]
    lines = [ln.strip() for ln in latest.splitlines()[1:] if ln.strip()]
    return lines[-1] if lines else "unknown error"


# ----------------------------------------------------------------------------------------------------------
# The driver's status file


def write_status(exp_dir: str | Path, total_trials: int, trials: dict[str, Any]) -> None:
    atomic_write_yaml(Path(exp_dir) / STATUS_FILE, {"total_trials": total_trials, "trials": trials})


def read_status(exp_dir: str | Path) -> dict[str, Any]:
    """``{"total_trials": N, "trials": {folder: {status, trial_id, task, final_ap, num_failures, error}}}``;
    {} when absent; DamagedFileError when it cannot be read back."""
    path = Path(exp_dir) / STATUS_FILE
    data = read_mapping_file(
        path,
        "Delete it: it only caches the driver's last view of the trials; the report then reads each trial's "
        "folder, and the next --resume writes it again",
    )
    if data and not isinstance(data.get("trials", {}), dict):
        raise DamagedFileError(path, "'trials' is not a mapping", "Delete it (see above)")
    return data or {}


def read_mapping_file(path: Path, advice: str, *, json: bool = False) -> dict[str, Any] | None:
    """A YAML (or JSON) mapping the project wrote earlier; None when absent, DamagedFileError (with ``advice``)
    when it is unreadable, cut short or not a mapping. Every file the driver writes is atomic, so any of these
    means the file was damaged after the fact (a full disk, a partial copy, an editor)."""
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
        if json:
            import json as json_module

            data = json_module.loads(text)
        else:
            data = strict_yaml_load(text)
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DamagedFileError(path, f"unreadable: {reader_error(exc)}", advice) from None
    except Exception as exc:  # yaml.YAMLError (yaml is imported lazily, by config)
        raise DamagedFileError(path, f"unreadable: {reader_error(exc)}", advice) from None
    if not isinstance(data, dict):
        raise DamagedFileError(path, f"holds a {type(data).__name__}, not a mapping", advice)
    return data


def unfinished_count(status: dict[str, Any]) -> int:
    """Trials that neither finished nor failed, counting those the driver never got to create."""
    states = [s["status"] for s in status.get("trials", {}).values()]
    unfinished = sum(s not in Status.FINISHED for s in states)
    return unfinished + max(0, (status.get("total_trials") or 0) - len(states))


# ----------------------------------------------------------------------------------------------------------
# Resume bookkeeping


def save_spec(sweep: Sweep) -> None:
    """Write the resolved spec and its hash into the experiment folder (first start only)."""
    exp = sweep.experiment_dir
    atomic_write_text(exp / SPEC_FILE, sweep.canonical_yaml())
    atomic_write_text(exp / HASH_FILE, sweep.hash() + "\n")


def read_saved_spec(exp_dir: str | Path) -> dict[str, Any]:
    """The ``spec`` part of a saved sweep_spec.yaml ({} when absent): table layout, name, description."""
    advice = (
        "It is the spec saved at the sweep's first start: restore it from a copy, or delete it together with "
        f"{HASH_FILE} (the report then uses the default table layout; --resume is refused without them)"
    )
    return (read_mapping_file(Path(exp_dir) / SPEC_FILE, advice) or {}).get("spec", {})


def check_resumable(sweep: Sweep) -> None:
    """--resume: the saved spec and hash must exist and equal this one's; else ConfigError with the diff."""
    exp = sweep.experiment_dir
    spec_file, hash_file = exp / SPEC_FILE, exp / HASH_FILE
    if not spec_file.is_file() or not hash_file.is_file():
        raise ConfigError(
            f"--resume: {exp} holds no saved spec ({SPEC_FILE} and {HASH_FILE}); nothing to resume there. "
            "Start without --resume (or check --storage and the spec name)."
        )
    if hash_file.read_text().strip() != sweep.hash():
        diff = difflib.unified_diff(
            spec_file.read_text().splitlines(),
            sweep.canonical_yaml().splitlines(),
            fromfile=f"saved {spec_file}",
            tofile=f"now {sweep.spec_path}",
            lineterm="",
        )
        raise ConfigError(
            f"--resume refused: the spec (or its base config, profile or --set) changed since {exp} was started:\n"
            + "\n".join(diff)
            + "\nRestore the original settings, or start a new sweep with another name or --storage."
        )


def has_experiment(exp_dir: Path) -> bool:
    """Does the experiment folder already hold a sweep (spec files or Tune state)?"""
    if not exp_dir.is_dir():
        return False
    return any((exp_dir / f).exists() for f in (SPEC_FILE, HASH_FILE, TUNER_FILE)) or has_tune_state(exp_dir)


def has_tune_state(exp_dir: Path) -> bool:
    """Tune wrote an experiment state (tuner.pkl alone is written at construction, before anything ran)."""
    return bool(list(Path(exp_dir).glob(TUNE_STATE_GLOB)))


def record_launch(exp_dir: Path, block: dict[str, Any]) -> None:
    """Append this driver launch's provenance (``delo.provenance.collect``) to the folder's PROVENANCE_FILE."""
    path = Path(exp_dir) / PROVENANCE_FILE
    launches = read_launches(exp_dir)
    atomic_write_json(path, {"launches": [*launches, block]}, indent=2)


def end_launch(exp_dir: Path, ended: str) -> None:
    """Stamp the latest launch's end time (the driver calls it once its tuner returned, before the report)."""
    launches = read_launches(exp_dir)
    if launches:
        launches[-1] = {**launches[-1], "ended": ended}
        atomic_write_json(Path(exp_dir) / PROVENANCE_FILE, {"launches": launches}, indent=2)


def read_launches(exp_dir: Path) -> list[dict[str, Any]]:
    """Every recorded launch of the sweep, first first ([] for a folder written before provenance existed)."""
    path = Path(exp_dir) / PROVENANCE_FILE
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DamagedFileError(
            path, reader_error(exc), "delete it: it only records who launched the sweep"
        ) from None
    launches = data.get("launches") if isinstance(data, dict) else None
    if not isinstance(launches, list):
        raise DamagedFileError(
            path, "no 'launches' list", "delete it: it only records who launched the sweep"
        )
    return launches
