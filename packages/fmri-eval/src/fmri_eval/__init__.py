"""fmri_eval: honest evaluation of images reconstructed from fMRI (metrics, identification, CIs, reports)."""

from importlib.metadata import version

__version__ = version("fmri-eval")  # the one source: the package's pyproject.toml

from fmri_eval.atomic import atomic_output_dir
from fmri_eval.bootstrap import PairedComparison, bootstrap_ci, paired_comparison, resampling_unit
from fmri_eval.errors import EvaluationError
from fmri_eval.evaluate import (
    choose_baseline,
    evaluate_reconstructions,
    evaluate_run,
    item_scores,
)
from fmri_eval.figures import reconstruction_grid, training_curve
from fmri_eval.identification import (
    IdentificationResult,
    bidirectional_retrieval,
    correlation_matrix,
    nway_identification,
    retrieval_topk,
    stimulus_retrieval,
    twoway_identification,
)
from fmri_eval.io import ReconstructionSet, load_reconstructions, save_reconstructions
from fmri_eval.literature_table import TABLE_COLUMNS, correlation_distance, literature_table
from fmri_eval.metrics import PSNR_CAP_DB, image_metrics, mse, pcc, psnr, ssim
from fmri_eval.report import difference_table, markdown_table, render_report, write_report
from fmri_eval.run import score_run, write_run
from fmri_eval.settings import EvaluationSettings
from fmri_eval.terminal import terminal_table

__all__ = [
    "PSNR_CAP_DB",
    "TABLE_COLUMNS",
    "EvaluationError",
    "EvaluationSettings",
    "IdentificationResult",
    "PairedComparison",
    "ReconstructionSet",
    "__version__",
    "atomic_output_dir",
    "bidirectional_retrieval",
    "bootstrap_ci",
    "choose_baseline",
    "correlation_distance",
    "correlation_matrix",
    "difference_table",
    "evaluate_reconstructions",
    "evaluate_run",
    "image_metrics",
    "item_scores",
    "literature_table",
    "load_reconstructions",
    "markdown_table",
    "mse",
    "nway_identification",
    "paired_comparison",
    "pcc",
    "psnr",
    "reconstruction_grid",
    "render_report",
    "resampling_unit",
    "retrieval_topk",
    "save_reconstructions",
    "score_run",
    "ssim",
    "stimulus_retrieval",
    "terminal_table",
    "training_curve",
    "twoway_identification",
    "write_report",
    "write_run",
]
