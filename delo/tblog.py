"""TensorBoard logging for one run (ray-tune.md §8), with torch's SummaryWriter and the hparams plugin's protos.

A run writes, in ``<out_dir>/tb``:

- at start, only the hparams *session start* (every hyperparameter flattened to dotted names, constants too);
- per epoch, training-dynamics scalars under ``dynamics/`` (``debug.diagnostics``, see ``delo.methods.delo.diagnostics``);
- per task, scalars under ``val/``, ``test/``, ``task_aware/``, ``train/`` and ``time/``, the result matrix and the
  task routing (``val/task_routing``: % of each true task's samples by inferred task) as images (rendered with
  PIL), expert-selection frequencies per pool (paper Fig. 5) and a histogram of cos(q_v, q_t) on complete samples
  (Fig. 4b);
- the final scalars (``val/final_ap``, ...) and the hparams *session end*, before the run's last report.

Protos come from ``tensorboard.plugins.hparams.summary_v2`` (never ``...hparams.api``, which imports TensorFlow),
written straight into the torch writer's file writer, so no timestamped sub-run appears (as ``add_hparams`` does).
:func:`write_hparams_config` writes the experiment-level hparams config a sweep launcher puts in its root.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from delo.metric_keys import (
    AP_SEEN_TASK_AWARE,
    FINAL_KEYS,
    KEY_ACC_BY_MISSING,
    SELECTION_KEYS,
    TASK,
    TASK_AWARE,
    TEST_PREFIX,
    test_key,
)


def flatten_hparams(config: Mapping[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """Nested config dict -> {dotted name: bool | int | float | str} (None and sequences become strings)."""
    flat: dict[str, bool | int | float | str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_hparams(value, name + "."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        elif isinstance(value, (list, tuple)):
            flat[name] = ",".join(str(v) for v in value)
        else:
            flat[name] = str(value)
    return flat


def metric_tag(key: str) -> str:
    """Report key -> TensorBoard tag: ``ap_seen`` -> ``val/ap_seen``, ``test_final_ap`` -> ``test/final_ap``,
    ``ap_seen_task_aware`` -> ``task_aware/ap_seen``, ``train_loss`` -> ``train/loss``, ``task_time_s`` ->
    ``time/task_s``."""
    if key.endswith("_time_s"):
        return "time/" + key.removesuffix("_time_s") + "_s"
    if key.startswith(TEST_PREFIX):
        return "test/" + key.removeprefix(TEST_PREFIX)
    if key.startswith("train_"):
        return "train/" + key.removeprefix("train_")
    if key.endswith("_" + TASK_AWARE):
        return f"{TASK_AWARE}/" + key.removesuffix("_" + TASK_AWARE)
    return "val/" + key


def metric_tags(test: bool = False) -> list[str]:
    """The metric tags a sweep's hparams config lists (val ones first, test ones when test evaluation runs)."""
    keys = [*FINAL_KEYS, *SELECTION_KEYS, *KEY_ACC_BY_MISSING, AP_SEEN_TASK_AWARE]
    tags = [metric_tag(k) for k in keys]
    if test:
        tags += [metric_tag(test_key(k)) for k in keys]
    return tags


def _proto_modules():
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2, summary_v2

    return summary_v2, metadata, plugin_data_pb2


def _status_code(status: str) -> int:
    from tensorboard.plugins.hparams import api_pb2

    codes = {
        "success": api_pb2.STATUS_SUCCESS,
        "failure": api_pb2.STATUS_FAILURE,
        "running": api_pb2.STATUS_RUNNING,
    }
    return codes[status]


class TBLogger:
    """One run's TensorBoard writer. Construct at run start: it writes the hparams session start."""

    def __init__(self, log_dir: str | Path, hparams: Mapping[str, Any], trial_id: str | None = None):
        from torch.utils.tensorboard import SummaryWriter

        summary_v2, _, _ = _proto_modules()
        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        start = summary_v2.hparams_pb(
            flatten_hparams(hparams), trial_id=trial_id, start_time_secs=time.time()
        )
        self.writer.file_writer.add_summary(start)

    def scalars(self, metrics: Mapping[str, Any], step: int) -> None:
        """Every finite number of a report dict, tagged by :func:`metric_tag` (``task`` itself is the step)."""
        for key, value in metrics.items():
            if key == TASK or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                self.writer.add_scalar(metric_tag(key), float(value), step)

    def train_step(self, loss: float, lr: float, step: int) -> None:
        self.writer.add_scalar("train_step/loss", loss, step)
        self.writer.add_scalar("train_step/lr", lr, step)

    def dynamics(self, scalars: Mapping[str, float], step: int) -> None:
        """Training-dynamics diagnostics (``delo.methods.delo.diagnostics``) under ``dynamics/``, at the global step."""
        for key, value in scalars.items():
            if math.isfinite(value):
                self.writer.add_scalar(f"dynamics/{key}", float(value), step)

    def matrix(self, tag: str, R: list[list[float | None]], step: int, title: str = "") -> None:
        self.writer.add_image(tag, render_matrix(R, title), step, dataformats="HWC")

    def routing(self, stats: Mapping[str, Any] | None, step: int) -> None:
        """Expert-selection frequency per pool (paper Fig. 5) and cos(q_v, q_t) on complete samples (Fig. 4b).

        ``stats`` is ``model.routing_stats()``: ``selection`` maps a site to counts of shape (T, 2 [A, B], 2 [v, t],
        E); ``query_cos`` maps a query site to its mean cosine over complete samples. Frequencies of the A-factor
        selections per task's pool are shown: one heatmap row per (site, modality), one column per (task,
        expert), and a histogram per modality averaged over sites; the histogram of cosines is over sites.
        """
        if not stats:
            return
        rows, modality = _selection_rows(stats.get("selection") or {})
        if rows:
            freq = np.stack([r / max(r.sum(), 1e-12) for r in rows])  # (pools, T * E)
            self.writer.add_image("routing/expert_frequency", render_heatmap(freq), step, dataformats="HWC")
            for mod in ("vision", "text"):
                picked = [f for m, f in zip(modality, freq, strict=False) if m == mod]
                if picked:
                    self._expert_histogram(f"routing/expert_frequency_{mod}", np.mean(picked, axis=0), step)
        per_site = stats.get("query_cos") or {}
        for site, value in per_site.items():
            self.writer.add_scalar(f"routing/cos_qv_qt/{site}", float(value), step)
        values = np.asarray([float(v) for v in per_site.values()], dtype=np.float64)  # (sites,)
        if values.size:
            self.writer.add_histogram("routing/cos_qv_qt_complete", values, step, bins=np.linspace(-1, 1, 41))

    def _expert_histogram(self, tag: str, freq: np.ndarray, step: int) -> None:
        # One bucket per expert e in [e, e+1), its height the selection share.
        e = len(freq)
        self.writer.add_histogram_raw(
            tag,
            min=0.0,
            max=float(e),
            num=float(freq.sum()),
            sum=float((freq * (np.arange(e) + 0.5)).sum()),
            sum_squares=float((freq * (np.arange(e) + 0.5) ** 2).sum()),
            bucket_limits=[float(i + 1) for i in range(e)],
            bucket_counts=[float(f) for f in freq],
            global_step=step,
        )

    def session_end(self, final_metrics: Mapping[str, Any], step: int, status: str = "success") -> None:
        """Final scalars (``val/final_ap``, ...), then the hparams session end; flushed."""
        _, metadata, plugin_data_pb2 = _proto_modules()
        from tensorboard.compat.proto import summary_pb2

        self.scalars(final_metrics, step)
        info = plugin_data_pb2.SessionEndInfo(status=_status_code(status), end_time_secs=time.time())
        pb = summary_pb2.Summary()
        pb.value.add(
            tag=metadata.SESSION_END_INFO_TAG,
            metadata=metadata.create_summary_metadata(
                plugin_data_pb2.HParamsPluginData(session_end_info=info)
            ),
            tensor=metadata.NULL_TENSOR,
        )
        self.writer.file_writer.add_summary(pb, step)
        self.flush()

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def write_hparams_config(
    log_dir: str | Path,
    hparams: Mapping[str, Any] | Iterable[Any],
    metrics: Iterable[str],
    varied: Iterable[str] = (),
) -> None:
    """Experiment-level hparams config: every hyperparameter with its domain, and the metric tags.

    ``hparams`` is a list of ``summary_v2.HParam`` or a mapping name -> domain, where a domain is a
    ``summary_v2.Domain``, a ``(low, high)`` pair (ints -> IntInterval, else RealInterval), a list of discrete
    values, or None. ``varied`` names the hyperparameters the sweep varies: they are listed first and marked
    ``differs``. TensorBoard's backend sorts an experiment's hparams by ``differs``, then by name, and the
    HParams table ticks only the first few columns by default; without the mark those are the alphabetically
    first constants (data.assign, data.layout, ...), and the swept keys sit unticked at the bottom.
    """
    from torch.utils.tensorboard import SummaryWriter

    summary_v2, _, _ = _proto_modules()
    if isinstance(hparams, Mapping):
        hparams = [summary_v2.HParam(name, _domain(summary_v2, dom)) for name, dom in hparams.items()]
    varied = set(varied)
    hparams = sorted(hparams, key=lambda h: h.name not in varied)  # stable: swept keys first, in given order
    metric_objs = [summary_v2.Metric(tag) for tag in metrics]
    pb = summary_v2.hparams_config_pb(hparams=hparams, metrics=metric_objs, time_created_secs=time.time())
    if varied:
        _mark_differs(pb, varied)
    writer = SummaryWriter(log_dir=str(log_dir))
    try:
        writer.file_writer.add_summary(pb)
    finally:
        writer.close()


def _mark_differs(pb, varied: set[str]) -> None:
    """Set HParamInfo.differs on the varied hparams inside an hparams-config summary (summary_v2 has no
    argument for it)."""
    _, _, plugin_data_pb2 = _proto_modules()
    value = pb.value[0]
    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
    for info in data.experiment.hparam_infos:
        info.differs = info.name in varied
    value.metadata.plugin_data.content = data.SerializeToString()


def _domain(summary_v2, spec: Any):
    if spec is None or isinstance(spec, summary_v2.Domain):
        return spec
    if isinstance(spec, tuple) and len(spec) == 2:
        low, high = spec
        if isinstance(low, int) and isinstance(high, int) and not isinstance(low, bool):
            return summary_v2.IntInterval(low, high)
        return summary_v2.RealInterval(float(low), float(high))
    if isinstance(spec, (list, set, frozenset)):
        return summary_v2.Discrete(sorted(spec) if not isinstance(spec, list) else spec)
    raise TypeError(f"hparam domain {spec!r}: use a (low, high) pair, a list of values, a Domain or None")


def _selection_rows(selection: Mapping[str, Any]) -> tuple[list[np.ndarray], list[str]]:
    rows, modality = [], []
    for site in sorted(selection):
        counts = np.asarray(_numpy(selection[site]), dtype=np.float64)  # (T, 2 [A, B], 2 [v, t], E)
        for m, name in enumerate(("vision", "text")):
            rows.append(counts[:, 0, m, :].reshape(-1))  # (T * E,): A-factor picks of each task's pool
            modality.append(name)
    width = {len(r) for r in rows}
    if len(width) > 1:  # pools of different sizes cannot share one heatmap
        return [], []
    return rows, modality


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        return value.detach().float().cpu().numpy()
    return np.asarray(value)


# ----------------------------------------------------------------------------------------------------------
# PIL rendering (no matplotlib)


def render_matrix(R: list[list[float | None]], title: str = "", cell: int = 56) -> np.ndarray:
    """Result matrix as an RGB uint8 image (H, W, 3): rows = after task j, columns = task i, values printed."""
    from PIL import Image, ImageDraw, ImageFont

    n = len(R)
    margin, top = 40, 28 if title else 8
    img = Image.new("RGB", (margin + n * cell + 8, top + margin + n * cell + 8), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    if title:
        draw.text((margin, 6), title, fill="black", font=font)
    for i in range(n):
        draw.text((margin + i * cell + cell // 2 - 4, top + 12), str(i + 1), fill="black", font=font)
        draw.text((12, top + margin + i * cell + cell // 2 - 6), str(i + 1), fill="black", font=font)
    for j, row in enumerate(R):
        for i, value in enumerate(row):
            x0, y0 = margin + i * cell, top + margin + j * cell
            box = (x0, y0, x0 + cell - 2, y0 + cell - 2)
            if value is None:
                draw.rectangle(box, fill=(235, 235, 235))
                continue
            if math.isnan(value):
                draw.rectangle(box, fill=(200, 200, 200))
                draw.text((x0 + 12, y0 + cell // 2 - 6), "n/a", fill="black", font=font)
                continue
            draw.rectangle(box, fill=colour_ramp(value / 100.0))
            draw.text((x0 + 6, y0 + cell // 2 - 6), f"{value:.1f}", fill="black", font=font)
    return np.asarray(img, dtype=np.uint8)


def render_heatmap(freq: np.ndarray, cell: int = 10) -> np.ndarray:
    """(rows, cols) values in [0, 1] scaled per row maximum -> RGB image; one row per pool, one column per expert."""
    rows, cols = freq.shape
    peak = np.maximum(freq.max(axis=1, keepdims=True), 1e-12)
    scaled = freq / peak
    img = np.zeros((rows * cell, cols * cell, 3), dtype=np.uint8)
    for r in range(rows):
        for c in range(cols):
            img[r * cell : (r + 1) * cell - 1, c * cell : (c + 1) * cell - 1] = colour_ramp(
                float(scaled[r, c])
            )
    return img


def colour_ramp(x: float) -> tuple[int, int, int]:
    """White (0) to blue (1)."""
    x = min(max(x, 0.0), 1.0)
    return (int(255 - 200 * x), int(255 - 140 * x), 255)
