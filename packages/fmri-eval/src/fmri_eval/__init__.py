"""fmri_eval: honest evaluation of images reconstructed from fMRI (metrics, identification, CIs, reports)."""

__version__ = "0.1.0"

from fmri_eval.bootstrap import PairedComparison, bootstrap_ci, paired_comparison
from fmri_eval.errors import EvaluationError
from fmri_eval.evaluate import compare_to_reference, evaluate_reconstructions, item_scores
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
from fmri_eval.report import atomic_output_dir, markdown_table, write_report, write_run

__all__ = [
    "PSNR_CAP_DB",
    "TABLE_COLUMNS",
    "EvaluationError",
    "IdentificationResult",
    "PairedComparison",
    "ReconstructionSet",
    "__version__",
    "atomic_output_dir",
    "bidirectional_retrieval",
    "bootstrap_ci",
    "compare_to_reference",
    "correlation_distance",
    "correlation_matrix",
    "evaluate_reconstructions",
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
    "retrieval_topk",
    "save_reconstructions",
    "ssim",
    "stimulus_retrieval",
    "training_curve",
    "twoway_identification",
    "write_report",
    "write_run",
]
