"""The QUICK schedule's length comes from ``$DEEPMAC_NB_QUICK_STEPS`` (600 by default)."""

import pytest

from deepmac_nb.errors import UserError
from deepmac_nb.tutorial import quick_model


def test_quick_steps_default_and_override(monkeypatch):
    monkeypatch.delenv(quick_model.QUICK_STEPS_ENV, raising=False)
    assert quick_model._quick_steps() == 600
    monkeypatch.setenv(quick_model.QUICK_STEPS_ENV, " 42 ")
    assert quick_model._quick_steps() == 42


@pytest.mark.parametrize("bad", ["0", "-3", "abc", "", "1.5"])
def test_bad_quick_steps_are_one_clear_error(monkeypatch, bad):
    monkeypatch.setenv(quick_model.QUICK_STEPS_ENV, bad)
    with pytest.raises(UserError, match="DEEPMAC_NB_QUICK_STEPS must be a positive"):
        quick_model._quick_steps()


def test_the_suite_runs_the_notebooks_on_a_short_schedule():
    assert quick_model.QUICK_STEPS == 100  # set in conftest before deepmac_nb is imported


def test_a_quick_model_of_another_recipe_is_set_aside_not_reused(monkeypatch, tmp_path, capsys):
    import yaml

    monkeypatch.setenv("DEEPMAC_NB_CACHE", str(tmp_path))
    model_dir = quick_model.quick_model_dir(7)
    model_dir.mkdir(parents=True)
    params = quick_model.quick_params(7).as_dict()
    (model_dir / "checkpoint").write_text('model_checkpoint_path: "ckpt-7"\n')
    (model_dir / "params.yaml").write_text(yaml.safe_dump(params))
    calls = []
    # Same recipe: reused as it is, nothing trained.
    assert quick_model.ensure_quick_model(7, train_fn=lambda *a: calls.append(a)) == model_dir
    assert not calls and (model_dir / "checkpoint").is_file()
    # Another model config (the recipe before the image channels): kept aside, retrained.
    params["task"]["model"]["mask"]["image_channels"] = False
    (model_dir / "params.yaml").write_text(yaml.safe_dump(params))
    assert quick_model.ensure_quick_model(7, train_fn=lambda *a: calls.append(a)) == model_dir
    assert len(calls) == 1 and not (model_dir / "checkpoint").exists()
    aside = model_dir.with_name(model_dir.name + ".old-1")
    assert (aside / "checkpoint").is_file() and "kept as" in capsys.readouterr().out
