import numpy as np
import pytest

from fmri_eval import EvaluationError, stimulus_retrieval


def test_constructed_case_both_directions():
    # trials show stimuli 7, 7, 8, 9; candidates are 7, 8, 9
    similarity = np.array(
        [
            [0.9, 0.1, 0.0],  # trial of 7: right at top-1
            [0.2, 0.5, 0.1],  # trial of 7: its stimulus ranks 2nd
            [0.0, 0.3, 0.4],  # trial of 8: ranks 2nd
            [0.0, 0.0, 0.8],  # trial of 9: right at top-1
        ]
    )
    result = stimulus_retrieval(similarity, [7, 7, 8, 9], [7, 8, 9], k=(1, 2))
    assert result["brain_to_image"] == {"top1": 0.5, "top2": 1.0}
    # image 7: best trial is a 7 (0.9); image 8: best trial is the second 7 (0.5) -> miss at 1, then the 8
    # (0.3) is 2nd; image 9: best trial is the 9 (0.8).
    assert result["image_to_brain"]["top1"] == pytest.approx(2 / 3)
    assert result["image_to_brain"]["top2"] == 1.0
    assert result["chance"]["top1"] == pytest.approx(1 / 3)
    assert result["n_candidates"] == 3


def test_ties_count_against_the_query():
    result = stimulus_retrieval(np.ones((2, 2)), [0, 1], [0, 1], k=1)
    assert result["brain_to_image"]["top1"] == 0.0


def test_bad_shapes_and_missing_candidates():
    with pytest.raises(EvaluationError, match="expected"):
        stimulus_retrieval(np.ones((2, 3)), [0, 1], [0, 1])
    with pytest.raises(EvaluationError, match="not among the candidates"):
        stimulus_retrieval(np.ones((2, 2)), [0, 5], [0, 1], k=1)
