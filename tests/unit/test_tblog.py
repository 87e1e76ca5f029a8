"""TensorBoard writer: hparams session start/end, scalars, images and histograms, read back in-process."""

import math

import numpy as np
import pytest
import torch

from delo import tblog

pytest.importorskip("tensorboard")


def _accumulator(path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(
        str(path), size_guidance={"tensors": 0, "scalars": 0, "images": 0, "histograms": 0}
    )
    acc.Reload()
    return acc


def test_flatten_and_tags():
    flat = tblog.flatten_hparams(
        {
            "seed": 0,
            "model": {"E": 4, "targets": ["q", "k"], "gate": "ste"},
            "data": {"root": None, "missing": {"eta": 0.7}},
            "eval": {"test": True},
        }
    )
    assert flat == {
        "seed": 0,
        "model.E": 4,
        "model.targets": "q,k",
        "model.gate": "ste",
        "data.root": "None",
        "data.missing.eta": 0.7,
        "eval.test": True,
    }
    assert tblog.metric_tag("ap_seen") == "val/ap_seen"
    assert tblog.metric_tag("final_ap") == "val/final_ap"
    assert tblog.metric_tag("test_final_ap") == "test/final_ap"
    assert tblog.metric_tag("ap_seen_task_aware") == "task_aware/ap_seen"
    assert tblog.metric_tag("train_loss_cls") == "train/loss_cls"
    assert tblog.metric_tag("task_time_s") == "time/task_s"
    assert tblog.metric_tag("train_time_s") == "time/train_s"
    assert "val/final_ap" in tblog.metric_tags() and "test/final_ap" in tblog.metric_tags(test=True)
    assert {"val/key_acc", "val/key_acc_image_missing", "test/key_acc_complete"} <= set(
        tblog.metric_tags(test=True)
    )


def test_run_writer_round_trip(tmp_path):
    from tensorboard.plugins.hparams import metadata

    log = tblog.TBLogger(tmp_path / "tb", {"seed": 3, "model": {"E": 4, "r": 2}, "eval": {"test": False}})
    R = [[90.0, None], [80.0, 70.0]]
    for task in (1, 2):
        log.scalars(
            {"task": task, "ap_seen": 50.0 + task, "fg_seen": math.nan, "train_loss": 0.5, "note": "x"}, task
        )
        log.matrix("val/result_matrix", R[:task], task)
        counts = torch.zeros(task, 2, 2, 4, dtype=torch.long)  # (T, A/B, v/t, E) as model.routing_stats()
        counts[:, 0, 0, 1] = 5
        counts[:, 0, 1, 2] = 3
        log.routing(
            {
                "selection": {"layer0.query": counts, "layer0.key": counts},
                "query_cos": {"layer0": 0.4, "layer1": 0.6},
            },
            task,
        )
        log.flush()
    log.session_end({"final_ap": 75.0, "final_fg": 10.0}, step=2)
    log.close()

    acc = _accumulator(tmp_path / "tb")
    scalars = acc.Tags()["scalars"]
    assert {"val/ap_seen", "train/loss", "val/final_ap", "val/final_fg"} <= set(scalars)
    assert "val/fg_seen" not in scalars  # nan is skipped
    assert [e.value for e in acc.Scalars("val/ap_seen")] == [51.0, 52.0]
    assert acc.Scalars("val/final_ap")[0].value == 75.0
    assert [e.value for e in acc.Scalars("routing/cos_qv_qt/layer1")] == pytest.approx([0.6, 0.6])
    assert "val/result_matrix" in acc.Tags()["images"] and "routing/expert_frequency" in acc.Tags()["images"]
    hists = acc.Tags()["histograms"]
    assert {
        "routing/cos_qv_qt_complete",
        "routing/expert_frequency_vision",
        "routing/expert_frequency_text",
    } <= set(hists)

    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    assert set(content) == {metadata.SESSION_START_INFO_TAG, metadata.SESSION_END_INFO_TAG}
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    assert start.hparams["model.E"].number_value == 4
    assert start.hparams["eval.test"].bool_value is False
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
    assert end.status == 1  # STATUS_SUCCESS
    # no timestamped sub-run (as torch's add_hparams would create)
    assert [p.is_dir() for p in (tmp_path / "tb").iterdir()] == [False]


def test_experiment_config(tmp_path):
    from tensorboard.plugins.hparams import metadata

    tblog.write_hparams_config(
        tmp_path,
        {
            "model.E": (4, 32),
            "loss.lambda1": (1e-3, 1.0),
            "model.variant": ["delo", "no_guide"],
            "seed": None,
        },
        tblog.metric_tags(test=True),
    )
    acc = _accumulator(tmp_path)
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    exp = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    infos = {h.name: h for h in exp.hparam_infos}
    assert infos["model.E"].domain_interval.min_value == 4
    variants = [v.string_value for v in infos["model.variant"].domain_discrete.values]
    assert variants == ["delo", "no_guide"]
    assert {m.name.tag for m in exp.metric_infos} >= {"val/final_ap", "test/final_ap", "val/ap_seen"}


def test_matrix_and_routing_images_show_the_values_logged(tmp_path):
    """The images as TensorBoard shows them, read back from the event file: each result-matrix cell filled
    with its value's colour (white 0 % to blue 100 %), a task not yet evaluated light grey, NaN darker grey;
    each routing-heatmap cell with its pool's selection share, scaled by the row's largest."""
    import io

    from PIL import Image

    def pixels(event) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(event.encoded_image_string)).convert("RGB"))

    def cell_of(img: np.ndarray, rgb: tuple[int, int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
        """(top, bottom) and (left, right) of the one box filled with that colour (rows and columns with at least
        20 such pixels: the antialiased edges of the labels have a few)."""
        mask = (img == rgb).all(axis=2)
        rows, cols = np.nonzero(mask.sum(axis=1) >= 20)[0], np.nonzero(mask.sum(axis=0) >= 20)[0]
        assert rows.size and cols.size, f"no cell of colour {rgb}"
        return (rows.min(), rows.max()), (cols.min(), cols.max())

    log = tblog.TBLogger(tmp_path / "tb", {"seed": 0})
    log.matrix("val/result_matrix", [[50.0, None], [math.nan, 20.0]], step=2)
    counts = torch.zeros(1, 2, 2, 4, dtype=torch.long)  # (T, A/B, v/t, E) as model.routing_stats()
    counts[0, 0, 0] = torch.tensor([1, 3, 0, 0])  # vision picks of the A factors: shares 1/4, 3/4
    counts[0, 0, 1] = torch.tensor([0, 0, 2, 2])  # text: 1/2, 1/2
    counts[0, 1] = 7  # B-factor picks are not shown
    log.routing({"selection": {"layer0.query": counts}}, step=2)
    log.close()
    acc = _accumulator(tmp_path / "tb")

    (event,) = acc.Images("val/result_matrix")
    assert event.step == 2
    img = pixels(event)
    fifty, twenty = (155, 185, 255), (215, 227, 255)  # 255 - (200, 140, 0) x value / 100
    unseen, nan = (235, 235, 235), (200, 200, 200)
    (r50, c50), (r20, c20) = cell_of(img, fifty), cell_of(img, twenty)
    (r_unseen, c_unseen), (r_nan, c_nan) = cell_of(img, unseen), cell_of(img, nan)
    assert r50 == r_unseen and r20 == r_nan and r50 < r20  # rows: after task 1, after task 2
    assert c50 == c_nan and c20 == c_unseen and c50 < c20  # columns: on task 1, on task 2

    (event,) = acc.Images("routing/expert_frequency")
    heat = pixels(event)
    rows, cols = 2, 4  # a row per pool (layer0.query's vision and text), a column per expert of task 1
    cell = heat.shape[0] // rows
    assert heat.shape[:2] == (rows * cell, cols * cell)
    shown = [[tuple(int(v) for v in heat[r * cell, c * cell]) for c in range(cols)] for r in range(rows)]
    white, third, full = (255, 255, 255), (188, 208, 255), (55, 115, 255)  # scaled shares 0, 1/3, 1
    assert shown == [[third, full, white, white], [white, white, full, full]]


def test_swept_hparams_come_first_and_differ(tmp_path):
    """TensorBoard sorts by `differs`, then name, and ticks the first columns: the swept keys must lead."""
    from tensorboard.plugins.hparams import metadata
    from tensorboard.plugins.hparams.backend_context import _sort_and_reduce_to_hparams_limit

    domains = {
        "data.assign": None,
        "data.layout": None,
        "model.E": [16, 32],
        "seed": [0, 1],
        "model.r": [2, 4],
    }
    tblog.write_hparams_config(tmp_path, domains, ["val/final_ap"], varied=["model.E", "model.r", "seed"])
    content = _accumulator(tmp_path).PluginTagToContent(metadata.PLUGIN_NAME)
    exp = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    assert [h.name for h in exp.hparam_infos] == ["model.E", "seed", "model.r", "data.assign", "data.layout"]
    assert [h.differs for h in exp.hparam_infos] == [True, True, True, False, False]
    _sort_and_reduce_to_hparams_limit(exp, 3)  # what the backend does before the table shows them
    assert [h.name for h in exp.hparam_infos] == ["model.E", "model.r", "seed"]
