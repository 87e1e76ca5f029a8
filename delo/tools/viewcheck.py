"""Look at a finished sweep the way a person does: TensorBoard's HParams page and optuna-dashboard in a real
(headless) Chromium, through Playwright. ``launch/check_views.py`` is the command; nothing in the test suite
depends on a browser.

What is checked, and why it is enough:
- TensorBoard's HParams page ticks the first five hyperparameters of the experiment it is served (sorted by
  ``differs``, then kept in the written order) and leaves the rest available. The keys the sweep actually varied
  are computed here independently of what the sweep wrote, from every finished trial's ``result.json``
  ``config``, and must all be among the ticked columns the page's query pane shows.
- optuna-dashboard (search sweeps) must list the sweep's study by name with every trial recorded in the SQLite
  storage.
Each page is also saved as a PNG for a person to look at.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.request import urlopen

from delo.sweep.experiment import OPTUNA_DB
from delo.tblog import flatten_hparams

# Finds TensorBoard's HParams query pane through the shadow roots and reads which columns it displays.
_TICKED_JS = """() => {
  const found = [];
  const walk = (root) => {
    for (const el of root.querySelectorAll('*')) {
      if (el.tagName === 'TF-HPARAMS-QUERY-PANE') found.push(el);
      if (el.shadowRoot) walk(el.shadowRoot);
    }
  };
  walk(document);
  if (!found.length || !found[0]._hparams) return null;
  const pane = found[0];
  return {hparams: pane._hparams.filter(h => h.displayed).map(h => h.info.name),
          metrics: (pane._metrics || []).filter(m => m.displayed).map(m => m.info.name.tag)};
}"""


class ViewCheckError(RuntimeError):
    """A page did not show what it should; the message says what was expected and what was seen."""


def swept_keys(exp_dir: Path) -> list[str]:
    """Dotted config keys whose value differs between the finished trials (from their own result.json)."""
    configs = [
        flatten_hparams(json.loads(p.read_text())["config"]) for p in sorted(exp_dir.glob("*/*/result.json"))
    ]
    if len(configs) < 2:
        raise ViewCheckError(
            f"{exp_dir}: fewer than two finished trials (*/*/result.json); nothing to compare"
        )
    keys = sorted(set().union(*configs))
    return [k for k in keys if len({json.dumps(c.get(k)) for c in configs}) > 1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _serving(cmd: list[str], url: str, timeout_s: float = 60.0):
    """Run a web server command until ``url`` answers; stop it afterwards."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.time() + timeout_s
        while True:
            try:
                urlopen(url, timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.time() > end:
                    raise ViewCheckError(f"{' '.join(cmd)} did not serve {url}") from None
                time.sleep(0.5)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextmanager
def _browser(chromium: str):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield browser.new_page(viewport={"width": 1600, "height": 1000})
        finally:
            browser.close()


def check_tensorboard(exp_dir: Path, out_png: Path, chromium: str, settle_s: float = 10.0) -> dict:
    """Serve ``exp_dir`` with TensorBoard, open its HParams page; returns ticked columns and the swept keys."""
    swept = swept_keys(exp_dir)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(exp_dir), "--host", "127.0.0.1"]
    with _serving([*cmd, "--port", str(port)], base), _browser(chromium) as page:
        page.goto(f"{base}/#hparams")
        ticked = None
        end = time.time() + 60
        while ticked is None and time.time() < end:
            page.wait_for_timeout(1000)
            ticked = page.evaluate(_TICKED_JS)
        if ticked is None:
            raise ViewCheckError(f"{base}/#hparams: the HParams query pane never appeared")
        page.wait_for_timeout(settle_s * 1000)  # the sessions table fills in after the pane
        page.screenshot(path=str(out_png), full_page=True)
    missing = [k for k in swept if k not in ticked["hparams"]]
    if missing:
        raise ViewCheckError(
            f"TensorBoard HParams ticks {ticked['hparams']} but not the swept key(s) {missing}; see {out_png}"
        )
    return {"swept": swept, **ticked, "screenshot": str(out_png)}


def check_optuna_dashboard(exp_dir: Path, out_png: Path, chromium: str) -> dict:
    """Serve the sweep's Optuna storage with optuna-dashboard; the study page must list every trial."""
    import optuna

    db = exp_dir / OPTUNA_DB
    if not db.is_file():
        raise ViewCheckError(f"{db}: no Optuna storage (only search sweeps keep one)")
    storage = f"sqlite:///{db}"
    studies = optuna.get_all_study_summaries(storage)
    if len(studies) != 1:
        raise ViewCheckError(f"{db}: expected one study, found {[s.study_name for s in studies]}")
    study = studies[0]
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    exe = Path(sys.executable).with_name("optuna-dashboard")  # the console script of the [dashboard] extra
    cmd = [str(exe), storage, "--host", "127.0.0.1", "--port", str(port)]
    with _serving(cmd, f"{base}/api/studies"), _browser(chromium) as page:
        listed = json.loads(urlopen(f"{base}/api/studies", timeout=10).read())
        page.goto(f"{base}/dashboard/studies/{study._study_id}")
        page.wait_for_timeout(6000)
        page.screenshot(path=str(out_png), full_page=True)
        text = page.inner_text("body")
    names = [s["study_name"] for s in listed["study_summaries"]]
    if study.study_name not in names or study.study_name not in text:
        raise ViewCheckError(
            f"optuna-dashboard lists {names}, page text lacks {study.study_name!r}; see {out_png}"
        )
    return {"study": study.study_name, "trials": study.n_trials, "screenshot": str(out_png)}


def main(argv: list[str] | None = None) -> int:
    """``launch/check_views.py EXPERIMENT_DIR``: 0 both views show the sweep, 1 a view does not, 2 bad input."""
    import argparse
    import shutil

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", type=Path, help="a finished sweep's folder (<storage>/<name>)")
    parser.add_argument("--out", type=Path, help="where the screenshots go (default: <experiment>/views)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    args = parser.parse_args(argv)
    problems = []
    if not (args.experiment / "sweep_spec.yaml").is_file():
        problems.append(f"{args.experiment}: not a sweep folder (no sweep_spec.yaml)")
    if not args.chromium:
        problems.append("no Chromium found (Debian: apt install chromium); pass --chromium PATH")
    try:
        import playwright  # noqa: F401
    except ImportError:
        problems.append('playwright is not installed: pip install -e ".[views]"')
    if problems:
        print("error: " + "; ".join(problems), file=sys.stderr)
        return 2
    out = args.out or args.experiment / "views"
    out.mkdir(parents=True, exist_ok=True)
    report = {}
    try:
        report["tensorboard"] = check_tensorboard(
            args.experiment, out / "tensorboard_hparams.png", args.chromium
        )
        if (args.experiment / OPTUNA_DB).is_file():
            report["optuna_dashboard"] = check_optuna_dashboard(
                args.experiment, out / "optuna_dashboard.png", args.chromium
            )
    except ViewCheckError as exc:
        print(json.dumps(report, indent=2))
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2))
    return 0
