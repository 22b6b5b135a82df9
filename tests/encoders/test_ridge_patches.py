"""`ridge-patches`: ridge's image read out as the design's binary patches, the baseline for patch readouts."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fmri_data.errors import DataError
from fmri_data.methods import MethodSettings, create_method, reconstruct_over_splits
from fmri_data.methods.registry import check_colour
from fmri_data.readout import PatchReadout
from fmri_data.splits import make_splits
from fmri_encoders.methods import ridge as ridge_module
from fmri_encoders.out_of_fold import out_of_fold_ridge
from fmri_eval.metrics import ssim


def test_ridge_is_read_out_by_a_readout_fitted_on_its_out_of_fold_training_images(patch_data, monkeypatch):
    train, test = patch_data()
    seen = {}

    def out_of_fold(*args, **kwargs):
        seen["options"] = kwargs
        seen["held_out"], full = out_of_fold_ridge(*args, **kwargs)
        return seen["held_out"], full

    monkeypatch.setattr(ridge_module, "out_of_fold_ridge", out_of_fold)
    method = create_method("ridge-patches", MethodSettings(device="cpu", seed=3)).fit(train)
    assert seen["options"]["seed"] == 3  # the run's draw of the inner folds, as the cvae's condition
    assert seen["options"]["per_target"] is False  # one alpha, as the method's own ridge

    readout = PatchReadout.fit(train.images, np.clip(seen["held_out"], 0, 1), train.images)
    assert method.readout_ == readout
    ridge = create_method("ridge", MethodSettings(device="cpu")).fit(train).predict(test.fmri)
    read_out = method.predict(test.fmri)
    np.testing.assert_allclose(read_out, readout(ridge), atol=1e-6)
    assert read_out.shape == test.images.shape
    assert read_out.dtype == np.float32
    assert 0 <= read_out.min() <= read_out.max() <= 1
    assert ssim(test.images, read_out).mean() > ssim(test.images, ridge).mean()  # sharper patches
    assert method.records() == {"readout": readout.to_dict()}


def test_images_without_a_patch_design_colour_or_two_stimuli_are_refused_in_one_line(patch_data):
    train, _ = patch_data()
    grey = np.random.default_rng(3).uniform(0.2, 0.8, train.images.shape).astype(np.float32)
    with pytest.raises(DataError, match=r"ridge-patches needs K x K binary-patch stimuli, .*; use ridge$"):
        create_method("ridge-patches", MethodSettings(device="cpu")).fit(replace(train, images=grey))
    with pytest.raises(DataError, match="ridge-patches reconstruct grayscale images only"):
        check_colour(["ridge-patches"], MethodSettings())
    two = train.subset(np.flatnonzero(train.stimulus_id < 2))
    with pytest.raises(DataError, match="ridge-patches needs at least 3 distinct training stimuli, got 2"):
        create_method("ridge-patches", MethodSettings(device="cpu")).fit(two)


NOT_PATCHES = "the training images are not K x K binary patches"


@pytest.mark.parametrize(
    ("method", "options", "refusal"),
    [
        ("ridge-patches", {}, "ridge-patches needs K x K binary-patch stimuli"),
        ("inverse-retinotopy", {}, f"inverse-retinotopy: {NOT_PATCHES}"),
        ("mean+inverse-retinotopy", {}, f"inverse-retinotopy: {NOT_PATCHES}"),
        ("cvae", {"sampling": {"condition_readout": "patches"}}, "use --condition-readout pixels"),
        ("cvae", {"choices": {"condition_readout": ("pixels", "patches")}}, "drop patches from --choose"),
        ("sd-lora", {"sampling": {"start": "inverse-retinotopy"}}, "sd-lora: start inverse-retinotopy needs"),
    ],
)
def test_a_run_refuses_stimuli_a_method_cannot_take_before_any_method_trains(
    tmp_path, patch_data, method, options, refusal
):
    train, _ = patch_data()
    grey = np.random.default_rng(3).uniform(0.2, 0.8, train.images.shape).astype(np.float32)
    data = replace(train, images=grey)
    settings = MethodSettings(device="cpu", quick=True, work_dir=tmp_path / "w", **options)
    with pytest.raises(DataError, match=refusal):
        reconstruct_over_splits(data, make_splits(data, "kfold:2"), ["ridge", method], settings=settings)
    assert not (tmp_path / "w").exists()  # ridge, listed first, never trained: no fold folder was stamped


def test_a_run_without_folds_is_refused_in_one_line_before_its_stimuli_are_checked(patch_data):
    train, _ = patch_data()
    with pytest.raises(DataError, match="the split has no folds"):
        reconstruct_over_splits(train, [], ["ridge-patches"], settings=MethodSettings(device="cpu"))
