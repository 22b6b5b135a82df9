"""Reconstructions file: round trip and clear errors for bad files."""

import numpy as np
import pytest

from fmri_eval import EvaluationError, EvaluationSettings, load_reconstructions, save_reconstructions


@pytest.fixture
def arrays():
    rng = np.random.default_rng(0)
    truth = rng.random((4, 6, 5))
    methods = {"ridge": rng.random((4, 6, 5)), "ddpm-1": rng.random((4, 6, 5)).astype(np.float32)}
    return truth, methods, np.array([10, 10, 11, 12])


def test_round_trip_is_exact(tmp_path, arrays):
    truth, methods, stimulus_id = arrays
    path = save_reconstructions(tmp_path / "recon.npz", truth, methods, stimulus_id, trial_index=[3, 4, 5, 6])
    loaded = load_reconstructions(path)
    np.testing.assert_array_equal(loaded.truth, truth)
    np.testing.assert_array_equal(loaded.stimulus_id, stimulus_id)
    np.testing.assert_array_equal(loaded.trial_index, [3, 4, 5, 6])
    assert sorted(loaded.reconstructions) == ["ddpm-1", "ridge"]
    for name, images in methods.items():
        np.testing.assert_array_equal(loaded.reconstructions[name], images)
        assert loaded.reconstructions[name].dtype == images.dtype


def test_trial_index_is_optional_and_path_is_kept(tmp_path, arrays):
    truth, methods, stimulus_id = arrays
    path = save_reconstructions(tmp_path / "recon.data", truth, methods, stimulus_id)
    assert path == tmp_path / "recon.data"
    assert path.is_file()
    assert load_reconstructions(path).trial_index is None


def test_string_stimulus_ids_need_no_pickle(tmp_path, arrays):
    truth, methods, _ = arrays
    path = save_reconstructions(tmp_path / "r.npz", truth, methods, ["a", "a", "b", "c"])
    assert load_reconstructions(path).stimulus_id.tolist() == ["a", "a", "b", "c"]


@pytest.mark.parametrize(("content", "message"), [(b"", "is empty"), (b"PK\x03\x04junk", "not a readable")])
def test_empty_and_broken_files(tmp_path, content, message):
    (tmp_path / "r.npz").write_bytes(content)
    with pytest.raises(EvaluationError, match=message):
        load_reconstructions(tmp_path / "r.npz")


def test_missing_file(tmp_path):
    with pytest.raises(EvaluationError, match="not found"):
        load_reconstructions(tmp_path / "nope.npz")


@pytest.mark.parametrize("missing", ["truth", "stimulus_id"])
def test_missing_key(tmp_path, arrays, missing):
    truth, methods, stimulus_id = arrays
    contents = {"truth": truth, "stimulus_id": stimulus_id, **methods}
    del contents[missing]
    np.savez(tmp_path / "r.npz", **contents)
    with pytest.raises(EvaluationError, match=f"no '{missing}' array") as info:
        load_reconstructions(tmp_path / "r.npz")
    assert "\n" not in str(info.value)


def test_no_method_arrays(tmp_path, arrays):
    truth, _, stimulus_id = arrays
    np.savez(tmp_path / "r.npz", truth=truth, stimulus_id=stimulus_id)
    with pytest.raises(EvaluationError, match="no method arrays"):
        load_reconstructions(tmp_path / "r.npz")


def test_shape_mismatch_in_file(tmp_path, arrays):
    truth, methods, stimulus_id = arrays
    np.savez(tmp_path / "r.npz", truth=truth, stimulus_id=stimulus_id, ridge=methods["ridge"][:, :5])
    with pytest.raises(EvaluationError, match="'ridge' has shape"):
        load_reconstructions(tmp_path / "r.npz")


def test_pickled_arrays_are_refused(tmp_path, arrays):
    truth, methods, _ = arrays
    np.savez(tmp_path / "r.npz", truth=truth, stimulus_id=np.array([{}, {}, {}, {}]), **methods)
    with pytest.raises(EvaluationError, match="pickles, which are refused"):
        load_reconstructions(tmp_path / "r.npz")


@pytest.mark.parametrize("kind", ["text", "npy", "truncated", "corrupted"])
def test_unreadable_files(tmp_path, arrays, kind):
    path = tmp_path / "r.npz"
    if kind == "text":
        path.write_text("not an archive\n")
    elif kind == "npy":
        with path.open("wb") as handle:
            np.save(handle, arrays[0])
    else:
        save_reconstructions(path, *arrays)
        data = bytearray(path.read_bytes())
        if kind == "truncated":
            del data[200:]
        else:  # damage compressed array data but keep the zip directory intact
            data[100:140] = bytes(40)
        path.write_bytes(bytes(data))
    with pytest.raises(EvaluationError) as info:
        load_reconstructions(path)
    assert "\n" not in str(info.value)
    assert "re-save it with save_reconstructions" in str(info.value)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"stimulus_id": [1, 2]}, "stimulus_id"),
        ({"trial_index": [0.5, 1, 2, 3]}, "trial_index"),
        ({"methods": {}}, "no method arrays"),
        ({"methods": {"truth": np.zeros((4, 6, 5))}}, "invalid method name"),
        ({"methods": {"a/b": np.zeros((4, 6, 5))}}, "invalid method name"),
        ({"methods": {"ridge": np.zeros((4, 5, 6))}}, "shape"),
        ({"truth": np.full((4, 6, 5), 2.0)}, r"\[0, 1\]"),
    ],
)
def test_save_validates(tmp_path, arrays, change, match):
    truth, methods, stimulus_id = arrays
    kwargs = {"truth": truth, "reconstructions": methods, "stimulus_id": stimulus_id}
    if "methods" in change:
        kwargs["reconstructions"] = change.pop("methods")
    kwargs.update(change)
    with pytest.raises(EvaluationError, match=match):
        save_reconstructions(tmp_path / "r.npz", **kwargs)
    assert not (tmp_path / "r.npz").exists()


def test_evaluation_settings_travel_with_the_file(tmp_path, arrays):
    truth, methods, stimulus_id = arrays
    settings = EvaluationSettings(n_boot=321, seed=9, level=0.9, baseline="ridge", repeats_averaged=True)
    path = save_reconstructions(tmp_path / "r.npz", truth, methods, stimulus_id, settings=settings)
    assert load_reconstructions(path).settings == settings
    assert (
        load_reconstructions(save_reconstructions(tmp_path / "s.npz", truth, methods, stimulus_id)).settings
        is None
    )


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (np.array("not json"), "not JSON"),
        (np.array('{"n_boot": 5}'), "need the keys"),
        (np.array([1, 2]), "one JSON string"),
        (
            np.array(
                '{"n_boot": 9, "seed": 0, "level": "high", "baseline": null, "repeats_averaged": false}'
            ),
            "level",
        ),
    ],
)
def test_bad_evaluation_records_are_refused(tmp_path, arrays, record, message):
    truth, methods, stimulus_id = arrays
    np.savez(tmp_path / "r.npz", truth=truth, stimulus_id=stimulus_id, evaluation=record, **methods)
    with pytest.raises(EvaluationError, match=message) as info:
        load_reconstructions(tmp_path / "r.npz")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_boot": 0},
        {"seed": -1},
        {"level": 1.5},
        {"level": "0.95"},
        {"baseline": ""},
        {"repeats_averaged": 1},
    ],
)
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(EvaluationError):
        EvaluationSettings(**kwargs)


def test_settings_keep_plain_numbers():
    settings = EvaluationSettings(n_boot=np.int64(50), seed=np.int32(3), level=np.float64(0.9))
    assert EvaluationSettings.from_json(settings.to_json()) == settings
    assert type(settings.n_boot) is int
    assert type(settings.level) is float
