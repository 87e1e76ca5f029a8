"""The reference protocols through the real runner (docs/methods.md, issue 24): a run interrupted after task 1
resumes to exactly the metrics of an uninterrupted one with MAP's trainable pooler and shared MLP classifier,
DualPrompt's copied E-prompt and gradient clipping, RebQ's paper mode and the `+tkm` shared-expert variants (whose
task keys travel in the task states)."""

import pytest
from test_methods_run import _cfg, _comparable, prepared  # noqa: F401  (the module fixture)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("map", ()),
        ("dualprompt", ()),
        ("rebq", ("model.rebq.mode=paper",)),
        ("rank1_pool", ("model.rank1_pool.task_inference=tkm",)),
        ("pass_moe", ("model.pass_moe.task_inference=tkm",)),
    ],
)
def test_interrupted_protocol_resumes_to_the_same_metrics(prepared, tmp_path, method, extra):  # noqa: F811
    from delo.train import run_continual

    reference = run_continual(_cfg(method, *extra), tmp_path / "reference")
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="injected failure after task 1"):
        run_continual(_cfg(method, *extra, "debug.fail_at_task=1"), out)
    resumed = run_continual(_cfg(method, *extra, "debug.fail_at_task=1"), out)
    assert _comparable(resumed) == _comparable(reference)
