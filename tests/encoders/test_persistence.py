import math

import numpy as np
import pytest
import torch

from fmri_data.errors import DataError
from fmri_encoders.persistence import (
    load_settings,
    load_settings_and_tensors,
    save_settings,
    save_settings_and_tensors,
)

SETTINGS = {"name": "m", "sizes": [3, 4], "nested": {"lr": 1e-3, "flags": [True, None], "by": {"s1": 7}}}


def _refuse(*args, **kwargs):
    raise AssertionError("unpickling while loading settings and tensors")


def test_nested_settings_and_torch_and_numpy_tensors_round_trip(tmp_path, monkeypatch):
    tensors = {
        "weight": torch.randn(3, 4),
        "steps": torch.arange(5, dtype=torch.int64),
        "half": torch.randn(2, dtype=torch.bfloat16),
        "mean": np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3),
        "columns": np.arange(12, dtype=np.float64).reshape(3, 4)[:, 1],  # not contiguous
    }
    save_settings_and_tensors(tmp_path / "new" / "folder", "model", SETTINGS, tensors)
    for target in ("torch.load", "pickle.load", "pickle.loads"):  # the loaders must never be reached
        monkeypatch.setattr(target, _refuse)
    settings, loaded = load_settings_and_tensors(tmp_path / "new" / "folder", "model")
    assert settings == SETTINGS
    assert loaded.keys() == tensors.keys()
    for key, value in tensors.items():
        expected = torch.from_numpy(value.copy()) if isinstance(value, np.ndarray) else value
        assert loaded[key].dtype == expected.dtype
        assert torch.equal(loaded[key], expected)


def test_the_folder_holds_only_json_and_safetensors(tmp_path):
    save_settings_and_tensors(tmp_path, "shared", {"step": 1}, {"w": torch.ones(2)})
    save_settings_and_tensors(tmp_path, "process-0", {"step": 1}, {})  # a pair may hold no tensors
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "process-0.json",
        "process-0.safetensors",
        "shared.json",
        "shared.safetensors",
    ]
    assert (tmp_path / "shared.safetensors").read_bytes()[8:9] == b"{"  # safetensors' JSON header, no pickle


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_settings_that_json_cannot_hold_are_refused_before_anything_is_written(tmp_path, bad):
    with pytest.raises(DataError, match=r"model\.json\['nested'\]\['lr'\] is .*no NaN or inf"):
        save_settings_and_tensors(tmp_path / "m", "model", {"nested": {"lr": bad}}, {"w": torch.ones(1)})
    assert not (tmp_path / "m").exists()
    with pytest.raises(TypeError, match=r"the key 3"):
        save_settings(tmp_path / "s.json", {"by_step": {3: "x"}})
    with pytest.raises(TypeError, match=r"s\.json\['path'\] is a \w*Path"):
        save_settings(tmp_path / "s.json", {"path": tmp_path})
    with pytest.raises(TypeError, match=r"tensor 'w' is a list"):
        save_settings_and_tensors(tmp_path, "model", {}, {"w": [1.0]})
    assert list(tmp_path.iterdir()) == []


def test_a_missing_file_is_one_clear_error_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere/model\.json is missing") as missing:
        load_settings_and_tensors(tmp_path / "nowhere", "model")
    assert "\n" not in str(missing.value)
    save_settings_and_tensors(tmp_path, "model", SETTINGS, {"w": torch.ones(2)})
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors is missing: .* no saved model"):
        load_settings_and_tensors(tmp_path, "model")
    with pytest.raises(FileNotFoundError, match=r"other\.json is missing"):
        load_settings(tmp_path / "other.json")


def test_damaged_files_are_data_errors(tmp_path):
    save_settings_and_tensors(tmp_path, "model", SETTINGS, {"w": torch.ones(2)})
    (tmp_path / "model.safetensors").write_bytes(b"\x80\x04not a safetensors file")
    with pytest.raises(DataError, match=r"model\.safetensors is not a readable safetensors file"):
        load_settings_and_tensors(tmp_path, "model")
    (tmp_path / "model.json").write_text('{"lr": 0.1,')
    with pytest.raises(DataError, match=r"model\.json is not valid JSON"):
        load_settings(tmp_path / "model.json")
    (tmp_path / "model.json").write_text('{"lr": NaN}')  # Python's json reads it; nothing else does
    with pytest.raises(DataError, match=r"model\.json\['lr'\] is nan"):
        load_settings(tmp_path / "model.json")
    (tmp_path / "model.json").write_text("[1, 2]")
    with pytest.raises(DataError, match=r"holds a JSON list"):
        load_settings(tmp_path / "model.json")


def test_saving_again_replaces_the_pair_and_leaves_no_temporary_file(tmp_path):
    save_settings_and_tensors(tmp_path, "model", {"v": 1}, {"w": torch.zeros(2)})
    save_settings_and_tensors(tmp_path, "model", {"v": 2}, {"w": torch.ones(3)})
    settings, tensors = load_settings_and_tensors(tmp_path, "model")
    assert settings == {"v": 2}
    assert torch.equal(tensors["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors"]
