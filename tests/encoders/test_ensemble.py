"""Ensembles (`a+b`): members weighed on validation stimuli, each member with its own settings."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fmri_data.errors import DataError
from fmri_data.methods import MethodSettings, ReconstructionMethod, create_method, register_method
from fmri_data.methods.records import validation_notes, with_members
from fmri_data.methods.registry import check_methods
from fmri_data.methods.runner import reconstruct_over_splits
from fmri_data.splits import make_splits
from fmri_encoders.methods import ensemble as ensemble_module
from fmri_encoders.methods.ensemble import mix, weight_grid

SEEN: dict[str, list[MethodSettings]] = {}
"""Settings each recording test double was created with, by name."""
FITTED_ON: dict[str, list[set[int]]] = {}
"""The stimuli each recording test double was fitted on, fit by fit, by name."""


class _Recording(ReconstructionMethod):
    """Predicts one image, `value` plus a faint left-to-right ramp, and keeps the settings it was created
    with."""

    value = 0.0

    def __init__(self, settings=None):
        super().__init__(settings)
        SEEN.setdefault(self.name, []).append(self.settings)

    def fit(self, train):
        FITTED_ON.setdefault(self.name, []).append(set(train.stimulus_id.tolist()))
        self.shape_ = train.image_shape
        return self

    def predict(self, fmri):
        return np.broadcast_to(self.value + _ramp(self.shape_), (len(fmri), *self.shape_)).copy()


def _ramp(shape):
    return np.tile(np.linspace(0.0, 0.2, shape[1], dtype=np.float32), (shape[0], 1))


@register_method
class _Dark(_Recording):
    name = "dark-test"
    value = 0.0


@register_method
class _Bright(_Recording):
    name = "bright-test"
    value = 0.8


@pytest.mark.parametrize(("members", "points"), [(2, 5), (3, 15), (4, 35)])
def test_the_weight_grid_shares_one_in_quarters(members, points):
    grid = weight_grid(members)
    assert len(grid) == len(set(grid)) == points
    assert all(len(weights) == members and sum(weights) == 1 for weights in grid)
    assert all(w * 4 == int(w * 4) and w >= 0 for weights in grid for w in weights)
    assert {tuple(np.eye(members)[i]) for i in range(members)} <= set(grid)  # each member alone


def test_mix_is_the_weighted_average():
    a, b = np.zeros((2, 3, 3)), np.ones((2, 3, 3))
    np.testing.assert_allclose(mix([a, b], (0.25, 0.75)), 0.75)


def test_a_joined_name_is_an_ensemble_of_those_methods():
    method = create_method("mean+ridge")
    assert (method.name, method.members) == ("mean+ridge", ("mean", "ridge"))
    assert type(create_method("mean+ridge")) is type(method)  # one class per name


def test_an_ensemble_chooses_what_its_members_choose():
    assert create_method("mean+ridge").settings_to_choose() == frozenset()
    cvae_ldm = type(create_method("cvae+ldm"))
    assert {"latent_dim", "strength", "readout"} <= cvae_ldm.settings_to_choose()
    assert "latent_dim" not in type(create_method("ldm")).settings_to_choose()


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["mean+nope"], "unknown method 'nope'"),
        (["ensemble"], "join their names with '\\+'"),
        (["mean+mean"], "distinct method names"),
        (["mean+"], "distinct method names"),
        (["mean+ensemble"], "distinct method names"),
    ],
)
def test_bad_ensembles_are_refused_before_anything_trains(names, message):
    with pytest.raises(DataError, match=message):
        check_methods(names)


def test_members_are_weighed_on_validation_stimuli_and_never_see_test_trials(make_linear):
    """Images of mean intensity 0.5 favour an equal mix of a dark and a bright member (the mix's mean is
    theirs); poisoning the test images changes nothing the ensemble reconstructs."""
    data = make_linear(n_stimuli=20, size=12)
    data = replace(data, images=0.45 + 0.1 * data.images)
    splits = make_splits(data, "given")
    FITTED_ON.clear()
    result = reconstruct_over_splits(data, splits, ["dark-test+bright-test"], progress=False)
    training, tested = (
        set(data.stimulus_id[splits[0].train].tolist()),
        set(data.stimulus_id[splits[0].test].tolist()),
    )
    for member in ("dark-test", "bright-test"):  # fitted on 4/5 of the training stimuli, then on all of them
        weighed_on, final = FITTED_ON[member]
        assert len(weighed_on) == 12
        assert weighed_on < training
        assert final == training
        assert not final & tested
    (record,) = result.records["dark-test+bright-test"]
    assert record["validation"]["chosen"] == {"dark-test": 0.5, "bright-test": 0.5}
    assert record["validation"]["validation_stimuli"] == 3  # a fifth of the 15 training stimuli
    np.testing.assert_allclose(result.reconstructions["dark-test+bright-test"][0], 0.4 + _ramp((12, 12)))

    poisoned = data.images.copy()
    poisoned[data.given_test] = 1.0
    again = reconstruct_over_splits(
        replace(data, images=poisoned), splits, ["dark-test+bright-test"], progress=False
    )
    assert again.records["dark-test+bright-test"][0]["validation"] == record["validation"]
    np.testing.assert_array_equal(
        again.reconstructions["dark-test+bright-test"], result.reconstructions["dark-test+bright-test"]
    )


def test_under_several_validation_folds_each_fold_fits_the_members_and_the_weights_take_the_mean(
    make_linear, tmp_path, monkeypatch
):
    data = make_linear(n_stimuli=20, size=12)
    data = replace(data, images=0.45 + 0.1 * data.images)
    splits = make_splits(data, "given")
    FITTED_ON.clear()
    SEEN.clear()
    # the first fold prefers more dark than bright, the two others more bright than dark, by more
    grid = weight_grid(2)
    darker, brighter = (0.75, 0.25), (0.25, 0.75)
    bonus = iter([10.0 * (w == darker) for w in grid] + [20.0 * (w == brighter) for w in grid] * 2)
    score = ensemble_module.selection_score
    monkeypatch.setattr(ensemble_module, "selection_score", lambda *images: score(*images) + next(bonus))
    settings = MethodSettings(work_dir=tmp_path, validation_folds=3)
    result = reconstruct_over_splits(
        data, splits, ["dark-test+bright-test"], settings=settings, progress=False
    )
    training = set(data.stimulus_id[splits[0].train].tolist())
    (record,) = result.records["dark-test+bright-test"]
    validation = record["validation"]
    for member in ("dark-test", "bright-test"):  # three folds' fits, then the final fit on all stimuli
        *weighed_on, final = FITTED_ON[member]
        held = [training - stimuli for stimuli in weighed_on]
        assert len(held) == 3
        assert all(not a & b for i, a in enumerate(held) for b in held[i + 1 :])
        assert validation["validation_stimuli"] == sum(map(len, held))
        assert final == training
    assert validation["validation_folds"] == 3
    np.testing.assert_allclose(validation["scores"], np.mean(validation["fold_scores"], axis=0))
    assert validation["chosen"] == {"dark-test": 0.25, "bright-test": 0.75}
    ensemble = tmp_path / "fold-000" / "dark-test+bright-test"
    assert [seen.work_dir for seen in SEEN["bright-test"]] == [
        tmp_path,  # the run's check of the stimuli (ReconstructionMethod.check_stimuli): nothing fitted
        ensemble / "validation" / "bright-test",
        ensemble / "validation" / "fifth-2" / "bright-test",
        ensemble / "validation" / "fifth-3" / "bright-test",
        ensemble / "final" / "bright-test",
    ]


def test_a_member_without_weight_is_not_fitted_again(make_linear):
    """Dark images: the bright member gets no weight, so only the dark one is fitted on all trials."""
    data = make_linear(n_stimuli=20, size=12)
    data = replace(data, images=0.1 * data.images)
    SEEN.clear()
    method = create_method("dark-test+bright-test").fit(data)
    assert method.records()["validation"]["chosen"] == {"dark-test": 1.0, "bright-test": 0.0}
    assert (len(SEEN["dark-test"]), len(SEEN["bright-test"])) == (2, 1)  # validation, final; validation


def test_each_member_gets_its_own_settings_and_folders(make_linear, tmp_path):
    data = make_linear(n_stimuli=20, size=12)
    settings = MethodSettings(
        work_dir=tmp_path / "work",
        choices={"dark-test:strength": (0.3, 1.0), "strength": (0.5,), "bright-test:readout": ("pixels",)},
        sampling={"bright-test:n_samples": 4},
    )
    SEEN.clear()
    create_method("dark-test+bright-test", settings).fit(data)
    dark, bright = SEEN["dark-test"][0], SEEN["bright-test"][0]
    assert dict(dark.choices) == {"strength": (0.3, 1.0)}
    assert dict(dark.sampling) == {}
    assert dict(bright.choices) == {"strength": (0.5,), "readout": ("pixels",)}
    assert dict(bright.sampling) == {"n_samples": 4}
    assert [s.work_dir for s in SEEN["dark-test"]] == [
        tmp_path / "work" / "dark-test+bright-test" / stage / "dark-test" for stage in ("validation", "final")
    ]
    assert all(
        s.cache_dir == tmp_path / "work" / "dark-test+bright-test"
        for s in [*SEEN["dark-test"], *SEEN["bright-test"]]
    )


def test_a_plain_method_sees_its_own_keys_only():
    settings = MethodSettings(
        choices={"likelihood_weight": (0.0, 1.0), "cvae:likelihood_weight": (0.1,), "ldm:strength": (0.3,)}
    )
    assert dict(create_method("ridge", settings).settings.choices) == {"likelihood_weight": (0.0, 1.0)}
    assert dict(settings.for_method("cvae").choices) == {"likelihood_weight": (0.1,)}
    assert dict(settings.for_method("ldm").choices) == {"likelihood_weight": (0.0, 1.0), "strength": (0.3,)}


def test_what_members_chose_is_reported_under_the_ensemble_s_name():
    chose = {"grid": [{"x": 1}, {"x": 2}], "scores": [1.0, 1.2], "chosen": {"x": 2}, "criterion": "c"}
    member = {"validation": chose | {"validation_stimuli": 3}}
    ensemble = {"grid": [{"a": 1.0}], "scores": [1.0], "chosen": {"a": 1.0}, "criterion": "c"}
    records = {
        "a+b": [{"fold": 0, "validation": ensemble | {"validation_stimuli": 4}, "members": {"a": member}}]
    }
    notes = validation_notes(records)
    assert notes[0].startswith("a+b, fold 0: chose a=1.0 on 4 validation stimuli")
    assert notes[1].startswith("a+b / a, fold 0: chose x=2 on 3 validation stimuli")
    assert with_members(records)["a+b / a"] == [{"fold": 0, **member}]
    # a member's own member (an sd-* member started from inverse-retinotopy) is reported one level down
    records["a+b"][0]["members"]["a"] = member | {"members": {"c": {"validation": chose}}}
    assert with_members(records)["a+b / a / c"] == [{"fold": 0, "validation": chose}]


@pytest.mark.parametrize("name", ["a+b", "a:b"])
def test_a_method_name_may_not_hold_the_join_or_scope_marks(name):
    class Marked(_Recording):
        pass

    Marked.name = name
    with pytest.raises(DataError, match="joins ensembles"):
        register_method(Marked)
