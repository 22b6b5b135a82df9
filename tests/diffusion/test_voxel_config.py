"""The fMRI LDM's YAML settings: a typo refused by name, a number written as text read as one."""

from __future__ import annotations

import pytest

from fmri_diffusion.voxel.config import config_from_mapping


def test_a_config_typo_is_refused():
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['laten_dim'\]"):
        config_from_mapping({"model": {"laten_dim": 3}})


def test_a_yaml_number_written_as_text_is_read_as_one():
    config = config_from_mapping({"training": {"learning_rate": "1e-3", "vae_steps": 5}})
    assert config.model.vae_training.learning_rate == 0.001
    assert config.model.vae_training.max_steps == 5


def test_the_device_takes_a_gpu_index_and_refuses_unknown_names():
    assert config_from_mapping({"device": "cuda:1"}).device == "cuda:1"
    assert config_from_mapping({"device": "mps"}).device == "mps"
    with pytest.raises(ValueError, match=r"device must be one of \['auto', 'cpu', 'cuda', 'cuda:N', 'mps'\]"):
        config_from_mapping({"device": "gpu"})
