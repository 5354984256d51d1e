"""How a command ends: a user error is one line; an unexpected error is one line naming a traceback file."""

from __future__ import annotations

import argparse

from spm_warehouse.console import run_command


class Expected(Exception):
    pass


def command(exc: BaseException | None):
    def func(args):
        if exc is not None:
            raise exc
        return 0
    return argparse.Namespace(func=func)


def test_a_user_error_is_one_line_and_exit_2(capsys):
    assert run_command(command(Expected("the setting X is missing")), (Expected,)) == 2
    assert capsys.readouterr().err == "error: the setting X is missing\n"


def test_an_unexpected_error_is_one_line_and_the_traceback_is_kept_in_a_file(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SPM_LOCAL_DIR", str(tmp_path))
    assert run_command(command(RuntimeError("tuple concurrently updated\nCONTEXT: more")), (Expected,)) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    first, second = err.strip().splitlines()
    assert first == "error: RuntimeError: tuple concurrently updated"
    saved = list((tmp_path / "logs").glob("error-*.log"))
    assert len(saved) == 1 and str(saved[0]) in second
    text = saved[0].read_text()
    assert text.startswith("Traceback") and "RuntimeError: tuple concurrently updated" in text


def test_success_and_interrupt(capsys):
    assert run_command(command(None), (Expected,)) == 0
    assert run_command(command(KeyboardInterrupt()), (Expected,)) == 130
    assert capsys.readouterr().err == ""
