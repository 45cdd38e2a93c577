"""The loss plot's title names the run folder, which matplotlib read as mathtext: a run folder
named ``a$\\x$`` failed ``deepseek train`` at its end (``ParseFatalException: Unknown symbol``),
after the checkpoint, and ``a$b$`` was drawn as an italic ``b`` without its dollars."""

from __future__ import annotations

from pathlib import Path

from hostile_cli import TINY, invoke

from deepseek.plugins.host import PluginHost
from deepseek.training.metrics import metrics_figure


def test_a_run_folder_with_dollars_still_writes_its_plot(tmp_path: Path, core_host: PluginHost, one_thread: None) -> None:
    run = tmp_path / "a$\\x$"
    argv = [a if a != "logging.plot=false" else "logging.plot=true" for a in TINY]
    out = invoke(["train", *argv, "--run-dir", str(run)], core_host)
    assert out.code == 0, out.stderr
    assert (run / "loss.png").read_bytes().startswith(b"\x89PNG")


def test_the_title_and_metric_names_are_drawn_as_written() -> None:
    import matplotlib.pyplot as plt

    records = [{"step": 1, "loss": 2.0, "val_loss": 2.1, "val_$\\x$": 0.5}]
    fig = metrics_figure(records, "tiny - a$b$")
    try:
        fig.canvas.draw()  # mathtext would fail on $\x$ here
        title = fig.axes[0].title
        assert title.get_text() == "tiny - a$b$"
        assert not title.get_parse_math()
        assert fig.axes[1].get_ylabel() == "$\\x$"
        assert not fig.axes[1].yaxis.label.get_parse_math()
        assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == ["validation $\\x$"]
        assert not any(t.get_parse_math() for t in fig.axes[1].get_legend().get_texts())
    finally:
        plt.close(fig)
