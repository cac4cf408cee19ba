"""A stage's output goes to the console and to its rule's log file (benchmarks.pipeline.logged_output), a stage's
traceback included; without a log the output is untouched."""

from __future__ import annotations

import sys

import pytest

from benchmarks.pipeline import logged_output


def test_output_warnings_and_errors_reach_the_log_and_the_console(tmp_path, capsys):
    log = tmp_path / "logs" / "stage.log"
    with logged_output(log):
        print("stage says hello")
        print("a careful stage", file=sys.stderr)  # where warnings and progress bars go
    text = log.read_text()
    assert "stage says hello" in text and "a careful stage" in text
    console = capsys.readouterr()
    assert "stage says hello" in console.out and "a careful stage" in console.err
    failed = tmp_path / "failed.log"
    with pytest.raises(ValueError, match="boom"), logged_output(failed):
        raise ValueError("boom")
    assert "Traceback" in failed.read_text() and "ValueError: boom" in failed.read_text()


def test_no_log_leaves_the_streams_alone(capsys):
    with logged_output(None):
        print("plain")
    assert capsys.readouterr().out == "plain\n"
