"""The QUICK schedule's length comes from ``$DEEPMAC_NB_QUICK_STEPS`` (300 by default)."""

import pytest

from deepmac_nb.errors import UserError
from deepmac_nb.tutorial import quick_model


def test_quick_steps_default_and_override(monkeypatch):
    monkeypatch.delenv(quick_model.QUICK_STEPS_ENV, raising=False)
    assert quick_model._quick_steps() == 300
    monkeypatch.setenv(quick_model.QUICK_STEPS_ENV, " 42 ")
    assert quick_model._quick_steps() == 42


@pytest.mark.parametrize("bad", ["0", "-3", "abc", "", "1.5"])
def test_bad_quick_steps_are_one_clear_error(monkeypatch, bad):
    monkeypatch.setenv(quick_model.QUICK_STEPS_ENV, bad)
    with pytest.raises(UserError, match="DEEPMAC_NB_QUICK_STEPS must be a positive"):
        quick_model._quick_steps()


def test_the_suite_runs_the_notebooks_on_a_short_schedule():
    assert quick_model.QUICK_STEPS == 100  # set in conftest before deepmac_nb is imported
