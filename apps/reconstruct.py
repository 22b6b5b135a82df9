"""One front door: run any registered reconstruction method on any data set and split, evaluate it honestly.

    uv run apps/reconstruct.py                                  # simulator, given split, mean + ridge
    uv run apps/reconstruct.py --data digit69 --method mean --method ridge
    uv run apps/reconstruct.py --data miyawaki --split loso --method mean --method ridge

Writes metrics.json, reconstructions.npz, reconstructions.png and report.md to --out.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from dataclasses import replace
from pathlib import Path

from fmri_data.corpora import BUILT_IN_CORPORA, load_corpus
from fmri_data.errors import DataError, run_cli
from fmri_data.io import check_colour_source, load_dataset
from fmri_data.methods import (
    CrossValidatedReconstructions,
    MethodSettings,
    available_methods,
    pre_training_notes,
    reconstruct_over_splits,
    run_records,
    validation_notes,
)
from fmri_data.methods.base import SCOPE
from fmri_data.methods.registry import check_choices, check_colour, check_methods, check_settings_read
from fmri_data.preprocessing import Preprocessing
from fmri_data.progress import terminal_progress
from fmri_data.readout import READOUTS
from fmri_data.splits import VALIDATION_FOLDS, make_splits
from fmri_encoders.encoding import ENCODINGS
from fmri_encoders.noise import NOISE_MODELS
from fmri_encoders.runtime import (
    device_choice,
    launch_precision,
    on_main_process,
    resolve_device,
    start_process,
)
from fmri_encoders.training.optim import OPTIMIZERS
from fmri_encoders.training.placement import check_full_shard_launch
from fmri_encoders.training.precision import PRECISIONS, check_precision
from fmri_eval.atomic import check_writable_folder
from fmri_eval.evaluate import DEFAULT_BASELINE, choose_baseline, silent
from fmri_eval.literature_table import FeatureFn
from fmri_eval.run import check_run_folder, write_run
from fmri_eval.settings import EvaluationSettings
from fmri_eval.terminal import terminal_table

DESCRIPTION = (
    "Reconstruct seen images from fMRI with one or more methods and evaluate them on held-out stimuli."
)
DEFAULT_METHODS = ["mean", "ridge"]
SAMPLING = (
    "strength",
    "guidance_scale",
    "num_inference_steps",
    "n_samples",
    "mixing",
    "prior_adapter",
    "stage1",
    "stage2",
    "vdvae",
    "vdvae_layers",
    "vdvae_temperature",
    "likelihood_weight",
    "sample_weight",
    "langevin_steps",
    "corpus_finetune",
    "encoding_model",
    "encoding_noise",
    "condition",
    "condition_readout",
    "start",
    "decode",
)


def parse_args(
    argv: list[str] | None = None,
    *,
    prog: str | None = None,
    description: str = DESCRIPTION,
    defaults: dict[str, object] | None = None,
) -> argparse.Namespace:
    """The front door's options; other apps reuse them with their own `defaults` (e.g. data, methods).

    Some defaults are not options: "runs", the app's folder under which each data set and split gets its
    own output folder (and work folder, with "keeps_work"), so that runs on different data never share one;
    "choose", the (setting, values) grids chosen on validation stimuli unless the command line sets that
    setting or gives --choose; "prior_corpus_for", a data set's prior corpus unless --prior-corpus names one;
    "average_repeats_for", a data set's repeat averaging unless --average-repeats sets it.
    """
    defaults = dict(defaults or {})
    methods = defaults.pop("methods", DEFAULT_METHODS)
    runs = Path(defaults.pop("runs", Path("runs") / (prog or "reconstruct")))
    keeps_work = bool(defaults.pop("keeps_work", False))
    default_choices = defaults.pop("choose", [])
    corpus_for = defaults.pop("prior_corpus_for", {})
    average_for = defaults.pop("average_repeats_for", {})
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=f"Installed methods: {', '.join(available_methods())}.",
    )
    parser.add_argument(
        "--data",
        default="sim",
        help="sim (built-in simulator), digit69, miyawaki, nsd (with --nsd-root), or a .mat/.npz path "
        "(default: %(default)s)",
    )
    parser.add_argument("--nsd-root", type=Path, help="with --data nsd: the folder that holds nsddata/")
    parser.add_argument("--subject", type=_positive, default=1, help="with --data nsd: subject 1-8")
    parser.add_argument(
        "--colour",
        action="store_true",
        help="with --data nsd: keep the stimuli in colour (RGB) and score them as the published NSD tables "
        "do; the methods that reconstruct colour: mean, ridge, mlp, and brain-diffuser's published route",
    )
    parser.add_argument(
        "--split",
        default="given",
        help="given (the file's own split), loso "
        "(leave-one-stimulus-out) or kfold:K, stimulus-disjoint (default: %(default)s)",
    )
    parser.add_argument(
        "--method",
        action="append",
        dest="methods",
        metavar="NAME",
        help=f"a method to run; repeat for several (default: {' '.join(methods)}); names joined by '+' "
        "(cvae+ldm) average those methods, weighted as validation stimuli choose",
    )
    parser.add_argument("--out", type=Path, help=f"output folder (default: {runs}/<data>-<split>)")
    parser.add_argument("--seed", type=_non_negative, default=0, help="seed for folds and stochastic methods")
    parser.add_argument(
        "--device",
        default="auto",
        type=_device,
        help="auto (cuda, else mps on Apple Silicon, else cpu), cpu, cuda, cuda:N (GPU N) or mps",
    )
    parser.add_argument(
        "--mixed-precision",
        choices=PRECISIONS,
        help="every training stage's precision (fp16: a GPU's; default: each model's own, or the "
        "precision of accelerate launch --mixed_precision)",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive,
        metavar="N",
        help="rows per micro-batch in every training stage counted in steps (default: %(default)s, None "
        "being each model's own; mlp and the contrastive encoder, trained in whole epochs, keep theirs); "
        "with --gradient-accumulation K "
        "an update averages N x K: sd-full at --batch-size 1 held 10.7 GiB of an SD-1.5 UNet's training "
        "(with --no-ema --optimizer adafactor)",
    )
    parser.add_argument(
        "--train-steps",
        type=_positive_float,
        default=1.0,
        metavar="FACTOR",
        help="every training stage counted in steps trains this multiple of its steps (default: "
        "%(default)s; 1: each model's own; mlp and the contrastive encoder keep their epochs); with a "
        "larger --batch-size, as many images in fewer updates, which a GPU bound by launching small "
        "models' kernels runs faster "
        "(apps/digit69_ldm.py's defaults: --batch-size 48 --train-steps 0.67)",
    )
    parser.add_argument(
        "--gradient-accumulation",
        type=_positive,
        metavar="K",
        help="K micro-batches per optimizer update in every training stage counted in steps (for small "
        "GPUs; mlp and the contrastive encoder train in whole epochs without it)",
    )
    parser.add_argument(
        "--optimizer",
        choices=tuple(OPTIMIZERS),
        help="every training stage's optimizer (default: AdamW); adafactor keeps factored second moments "
        "only: 5.6 GiB less GPU memory for sd-full on an SD-sized UNet",
    )
    parser.add_argument(
        "--no-ema",
        dest="ema",
        action="store_false",
        help="train every stage without an EMA copy of its weights (keeps the last ones): 3.2 GiB less GPU "
        "memory for sd-full on an SD-sized UNet",
    )
    parser.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="the sd-* routes recompute UNet activations in the backward pass: far less GPU memory",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="the UNet of the sd-* routes, ddpm and ldm (and ldm's autoencoder) trains and samples through "
        "torch.compile: on one H200 an SD-1.5-sized LoRA fine-tune ran 117 -> 167 img/s and generation "
        "6.1 -> 8.2 img/s; the first calls compile (minutes; on 2 CPU cores the digit69 ldm ran no faster)",
    )
    parser.add_argument(
        "--threads",
        type=_positive,
        help="torch threads per process (default: this machine's cores / its processes of the launch)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke-test budgets (not for reporting)")
    parser.add_argument(
        "--average-repeats",
        choices=["none", "train", "test", "both"],
        help="average repeated trials of a stimulus (stated in the report; default none"
        + "".join(f", {how} on --data {data}" for data, how in average_for.items())
        + ")",
    )
    parser.add_argument("--n-voxels", type=_positive, help="keep this many voxels, chosen on training trials")
    parser.add_argument(
        "--voxel-score",
        default="auto",
        choices=["auto", "f_stat", "variance"],
        help="how --n-voxels ranks voxels (auto: f_stat where training stimuli repeat)",
    )
    parser.add_argument(
        "--allow-overlap",
        action="store_true",
        help="accept a split whose test stimuli also occur in training (the report says so)",
    )
    parser.add_argument(
        "--n-boot", type=_positive, default=2000, help="bootstrap resamples for the 95%% CIs (default 2000)"
    )
    parser.add_argument(
        "--baseline",
        metavar="NAME",
        help="one of the methods run: every other method's paired difference from it goes into metrics.json "
        f"and report.md (default: {DEFAULT_BASELINE} where it is run)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="keep checkpoints, loss curves and trained models here, one sub-folder per fold (default: "
        + (
            f"{runs}/<data>-<split>-work, with the base-model cache in {runs}/cache)"
            if keeps_work
            else "nothing kept)"
        ),
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        help="keep base models pre-trained here in this folder, shared by every run that names it "
        "(default: --work-dir/cache)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue training from the latest checkpoints in --work-dir; refused where its "
        "fingerprint.json shows another run (data, split, fold, preprocessing, seed, --quick, --pretrained)",
    )
    parser.add_argument(
        "--pretrained",
        metavar="PATH",
        help="a diffusers Stable Diffusion folder (unet/, vae/, scheduler/) or an id in the offline Hugging "
        "Face cache, for the sd-* methods (default: a small base model pre-trained here, cached in "
        "--work-dir)",
    )
    parser.add_argument(
        "--log-with",
        choices=["tensorboard", "wandb"],
        help="log every training stage's loss and learning rate with this tracker, under --work-dir "
        "(tensorboard --logdir WORK_DIR)",
    )
    parser.add_argument(
        "--allow-download",
        action="store_true",
        help="let --pretrained name a Hugging Face id that is not in the cache, and download it (default: "
        "offline, a missing id is refused at once)",
    )
    sampling = parser.add_argument_group(
        "sampling settings of the generative methods (default: each method's)"
    )
    sampling.add_argument("--strength", type=_fraction, help="img2img start: 1 = pure noise")
    sampling.add_argument("--guidance-scale", type=float, help="classifier-free guidance (1 = none)")
    sampling.add_argument("--steps", type=_positive, dest="num_inference_steps", help="denoising steps")
    sampling.add_argument("--samples", type=_positive, dest="n_samples", help="samples averaged per trial")
    sampling.add_argument(
        "--likelihood-weight",
        type=_non_negative_float,
        help="encoding-model guidance: each denoising step moves towards images whose predicted fMRI "
        "matches the measured one; cvae weighs its samples by it instead (0 = off)",
    )
    sampling.add_argument(
        "--sample-weight",
        type=_non_negative_float,
        help="weigh each trial's samples by the encoding model's likelihood of its fMRI, tempered by this "
        "(after any guidance; 0 = their plain mean)",
    )
    sampling.add_argument(
        "--langevin-steps",
        type=_non_negative,
        help="cvae: follow the likelihood's gradient in each sample's latent for this many Metropolis-"
        "adjusted Langevin steps instead of weighing the samples (0 = weigh them; default)",
    )
    sampling.add_argument(
        "--encoding-model",
        choices=ENCODINGS,
        help="the likelihood's encoding model: ridge from pixels, a receptive field per voxel (prf, for "
        "K x K binary-patch stimuli such as Miyawaki's), or auto (prf where stimuli are patches; default)",
    )
    sampling.add_argument(
        "--encoding-noise",
        choices=_WORD_SETTINGS["encoding_noise"],
        help="the likelihood's voxel noise: independent (default), or correlated as the encoding model's "
        "out-of-fold residuals are, shrunk toward none (Ledoit-Wolf)",
    )
    sampling.add_argument(
        "--choose",
        action="append",
        type=_choice,
        default=[],
        metavar="[METHOD:]NAME=V1,V2,...",
        help="choose a sampling setting (strength, likelihood_weight, guidance_scale, num_inference_steps, "
        "decode=vae,residual, encoding_noise=independent,correlated: one probe samples them all; "
        "sample_weight: one set of samples weighed each way) or any other numeric setting of the method "
        "(cvae's latent_dim, width, beta; encoding_voxels: one probe fitted per value), or a word setting "
        "(sd-*'s start, cvae's condition_readout: one probe per word) among these values "
        "on validation stimuli held out of each fold's training trials; repeat for a grid. "
        "readout=pixels,patches also weighs reading each image out as the "
        "posterior mean of the stimulus grid's binary patches (where the training images are K x K "
        "binary patches, as Miyawaki's are). METHOD:NAME=... is METHOD's grid alone, in place of NAME's "
        "(each member of an ensemble such as cvae+ldm keeps its own)",
    )
    sampling.add_argument(
        "--probe-steps",
        type=_fraction,
        default=1.0,
        metavar="FRACTION",
        help="with --choose: the fraction of each training stage's steps that the probe fitted to choose on "
        "validation trains for (the final fit trains in full); a shorter probe saves time if it ranks the "
        "settings as a full one would",
    )
    sampling.add_argument(
        "--refit-steps",
        type=_fraction,
        default=1.0,
        metavar="FRACTION",
        help="with --choose, cvae, ddpm and ldm: below 1, the final fit starts from the validation probe's "
        "weights and trains this fraction of each stage's steps on all training stimuli (1: afresh, in full)",
    )
    sampling.add_argument(
        "--validation-folds",
        type=int,
        choices=range(1, VALIDATION_FOLDS + 1),
        default=1,
        metavar="K",
        help=f"with --choose: score each setting on K of the training stimuli's fifths, held out in turn, "
        f"each with its own probes (1 to {VALIDATION_FOLDS}; default 1): a choice made on more stimuli, at "
        "K times the probes' time; an ensemble (a+b) weighs its members on K folds too, each member choosing "
        "on K folds inside each (about K x K the time); inverse-retinotopy keeps its own inner folds; above "
        "1 needs --refit-steps 1",
    )
    sampling.add_argument(
        "--corpus-finetune",
        type=_fraction,
        metavar="FRACTION",
        help="cvae, ddpm and ldm: pre-train on --prior-corpus first (once per recipe and corpus, cached), "
        "then train this fraction of each stage's steps on each fold's training stimuli from there (default: "
        "no pre-training, every fit learns the training stimuli alone, in full)",
    )
    sampling.add_argument(
        "--condition",
        choices=["ridge", "fmri", "contrastive"],
        help="sd-*: what feeds the fMRI conditioner: ridge's predicted latents, the voxels, or a contrastive "
        "encoder's fMRI embedding",
    )
    sampling.add_argument(
        "--condition-readout",
        choices=_WORD_SETTINGS["condition_readout"],
        help="cvae: condition on ridge's image as decoded (pixels, the default) or read out as the "
        "posterior mean of the stimulus grid's binary patches (K x K binary-patch stimuli; the readout "
        "fitted on ridge's out-of-fold images of the training trials)",
    )
    sampling.add_argument(
        "--start",
        choices=_WORD_SETTINGS["start"],
        help="sd-*: img2img starts from ridge's predicted latents, the encoded pixel ridge image or the "
        "encoded inverse-retinotopy reconstruction (K x K binary-patch stimuli; fitted on the same training "
        "trials)",
    )
    sampling.add_argument(
        "--decode",
        choices=_WORD_SETTINGS["decode"],
        help="sd-*: the decoded sample, or (img2img) the start's pixel image (ridge's, or "
        "inverse-retinotopy's under that --start) plus what sampling changed in the decoded image, which "
        "keeps the autoencoder's error on the start out of the output",
    )
    sampling.add_argument(
        "--mixing",
        type=_unit_interval,
        help="brain-diffuser: weight of caption guidance against image guidance (default 0.4 where captions "
        "and a text encoder exist, else 0)",
    )
    sampling.add_argument(
        "--stage1",
        choices=["autoencoder", "vdvae"],
        help="brain-diffuser: stage 1 predicts the base model's autoencoder latents (default) or, as "
        "published, VDVAE's first --vdvae-layers latent layers (weights from --vdvae)",
    )
    sampling.add_argument(
        "--stage2",
        choices=["auto", "small", "image-variation", "versatile"],
        help="brain-diffuser: the stage-2 model: versatile (as published: a local Versatile Diffusion folder "
        "as --pretrained, guidance 7.5), image-variation (a diffusers image-variation --pretrained), small "
        "(the base trained here); auto picks by --pretrained",
    )
    sampling.add_argument(
        "--vdvae",
        metavar="FILE_OR_DIR",
        help="--stage1 vdvae: the published imagenet64-iter-1600000-model-ema.th or the folder "
        "`python -m fmri_diffusion convert-vdvae` made of it (default: vdvae/ inside --pretrained)",
    )
    sampling.add_argument(
        "--vdvae-layers",
        type=_positive,
        help="--stage1 vdvae: how many of VDVAE's latent layers ridge predicts (default 31, as published)",
    )
    sampling.add_argument(
        "--vdvae-temperature",
        type=_non_negative_float,
        help="--stage1 vdvae: temperature of the deeper layers drawn from the prior (default 1, published)",
    )
    sampling.add_argument(
        "--prior-adapter",
        choices=["auto", "full", "lora", "none"],
        help="brain-diffuser: how the stage-2 prior adapts to the training images",
    )
    priors = parser.add_argument_group("the prior (base model) the sd-* and brain-diffuser methods pre-train")
    priors.add_argument(
        "--prior-corpus",
        metavar="NAME|PATH",
        help=f"unpaired images to pre-train it on: {', '.join(BUILT_IN_CORPORA)} (binary-patterns:K and "
        "figures:K for a K x K grid), a folder of images, an .npz or an HDF5 file (default: simulator"
        + "".join(f"; {corpus} on --data {data}" for data, corpus in corpus_for.items())
        + "). Images that nearly duplicate a test stimulus are dropped first, and counted in the report",
    )
    priors.add_argument(
        "--allow-corpus-leaks",
        action="store_true",
        help="use a prior corpus even if more than 1%% of it duplicates test stimuli (the report says so)",
    )
    evaluation = parser.add_argument_group("the NSD literature's 8-metric table (at 425x425)")
    evaluation.add_argument(
        "--literature-table", action="store_true", help="add it to metrics.json and report.md"
    )
    evaluation.add_argument(
        "--feature-weights",
        type=Path,
        metavar="DIR",
        help="local weights of its feature networks (alexnet, inception_v3, efficientnet_b1, "
        "swav_resnet50 .safetensors/.pth, clip/); implies --literature-table",
    )
    evaluation.add_argument(
        "--clip-model", metavar="PATH", help="a CLIP folder or Hugging Face cache id for its CLIP column"
    )
    parser.set_defaults(**defaults)
    args = parser.parse_args(argv)
    args.literature_table = args.literature_table or args.feature_weights is not None or bool(args.clip_model)
    args.methods = args.methods or list(methods)
    given = [name for name in SAMPLING if getattr(args, name) is not None]  # no app sets one by default
    if args.choose or given:  # the user's, checked now; an app's grids hold for the methods that read them
        try:
            check_methods(args.methods)
            check_choices(args.methods, [key for key, _ in args.choose])
            check_settings_read(args.methods, given)
        except DataError as error:
            parser.error(str(error))
    args.choose = args.choose or [
        (name, values) for name, values in default_choices if getattr(args, name, None) is None
    ]
    args.prior_corpus = args.prior_corpus or corpus_for.get(args.data)
    if args.colour and args.prior_corpus:
        parser.error(
            f"--prior-corpus {args.prior_corpus}: prior corpora are grayscale, and so are the methods that "
            "train on them; leave out --colour or the corpus"
        )
    args.average_repeats = args.average_repeats or average_for.get(args.data, "none")
    run_name = _run_name(args)
    args.out = args.out or runs / run_name
    if args.work_dir is None and keeps_work:
        args.work_dir = runs / f"{run_name}-work"
        args.cache_dir = args.cache_dir or runs / "cache"
    if args.cache_dir is None and args.work_dir is not None:
        args.cache_dir = args.work_dir / "cache"
    if args.colour:
        try:
            check_colour_source(args.data)
        except DataError as error:
            parser.error(str(error))
    if args.resume and args.work_dir is None:
        parser.error("--resume needs --work-dir, the folder that holds the checkpoints")
    if args.log_with and args.work_dir is None:
        parser.error("--log-with needs --work-dir, the folder its logs go to")
    if args.baseline is not None and args.baseline not in args.methods:
        parser.error(f"--baseline {args.baseline} is not among the methods run; add --method {args.baseline}")
    return args


def _run_name(args: argparse.Namespace) -> str:
    """<data>-<split> (NSD: with the subject; -quick for smoke tests, which must not replace a real run)."""
    data = Path(args.data).stem + (f"-subj{args.subject:02d}" if args.data == "nsd" else "")
    return f"{data}-{args.split.replace(':', '')}" + ("-quick" if args.quick else "")


def _device(text: str) -> str:
    try:
        return device_choice(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _unit_interval(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _choice(text: str) -> tuple[str, tuple[float | str, ...]]:
    """[METHOD:]NAME=V1,V2,... -> (key, values); the config field name, with dashes as underscores,
    after "METHOD:" where the grid is that method's alone (an ensemble's member, say)."""
    key, sep, values = text.partition("=")
    method, scope, name = key.partition(SCOPE) if SCOPE in key else ("", "", key)
    name = name.replace("-", "_")
    key = f"{method}{scope}{name}"
    if scope and not method:
        raise argparse.ArgumentTypeError(f"expected METHOD:NAME=V1,V2,..., got {text!r}")
    if name in _WORD_SETTINGS:
        words = tuple(dict.fromkeys(values.split(",")))  # each once, in the order given
        if not set(words) <= set(_WORD_SETTINGS[name]):
            raise argparse.ArgumentTypeError(
                f"{name} takes {', '.join(_WORD_SETTINGS[name])}, got {values!r}"
            )
        return key, words
    try:
        numbers = tuple(float(v) for v in values.split(","))
    except ValueError:
        numbers = ()
    if not sep or not name or not numbers:
        raise argparse.ArgumentTypeError(f"expected [METHOD:]NAME=V1,V2,... with numbers, got {text!r}")
    if name in _INTEGER_SETTINGS and not all(v.is_integer() for v in numbers):
        raise argparse.ArgumentTypeError(f"{name} takes whole numbers, got {values!r}")
    typed = tuple(int(v) if name in _INTEGER_SETTINGS else v for v in numbers)
    if check := _CHOICE_CHECKS.get(name):  # now, not when the grid reaches the value hours later
        for given, value in zip(values.split(","), typed, strict=True):
            try:
                check(str(value))
            except argparse.ArgumentTypeError as error:
                raise argparse.ArgumentTypeError(f"{name}={given}: {error}") from None
    return key, typed


_INTEGER_SETTINGS = (
    "num_inference_steps",
    "n_samples",
    "encoding_voxels",
    "latent_dim",
    "width",
    "langevin_steps",
    "vdvae_layers",
)
# decode and start are fmri_diffusion.methods.stable's DECODES and STARTS, written out so that parsing does
# not import diffusers (about 5 s); tests/apps/test_reconstruct.py keeps them equal
_WORD_SETTINGS = {
    "condition_readout": READOUTS,
    "decode": ("vae", "residual"),
    "encoding_noise": NOISE_MODELS,
    "noise": NOISE_MODELS,
    "readout": READOUTS,
    "start": ("ridge-latents", "ridge-pixels", "inverse-retinotopy"),
}


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


_CHOICE_CHECKS = {
    "strength": _fraction,
    "mixing": _unit_interval,
    "corpus_finetune": _unit_interval,  # 0 in a grid: no pre-training (the option's 0 is leaving it out)
    "likelihood_weight": _non_negative_float,
    "sample_weight": _non_negative_float,
    "num_inference_steps": _positive,
    "n_samples": _positive,
    "langevin_steps": _non_negative,
    "latent_dim": _positive,
    "width": _positive,
    "encoding_voxels": _positive,
    "vdvae_layers": _positive,
    "vdvae_temperature": _non_negative_float,
}
"""The checks of a --choose grid's values, those of the options that set a setting alone (--strength,
--samples, ...) and, for the network sizes that only a grid sets, whole numbers of at least 1."""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_cli("reconstruct", lambda: run(args, argv))


def main_with_defaults(argv: list[str] | None, *, prog: str, doc: str, defaults: dict[str, object]) -> int:
    """The whole body of an app that is this front door with other defaults (its docstring as description)."""
    args = parse_args(argv, prog=prog, description=doc.splitlines()[0], defaults=defaults)
    return run_cli(prog, lambda: run(args, argv, app=f"apps/{prog}.py"))


def run(args: argparse.Namespace, argv: list[str] | None, app: str = "apps/reconstruct.py") -> int:
    """Check what can be checked, then load, split, fit and predict fold by fold, evaluate, write the run.

    Under `accelerate launch` every process runs this: they train together and share out the sampling,
    and the main process alone evaluates, writes --out and prints the table while the others wait."""
    process = start_process(args.device, args.threads)
    process.check_run(args.mixed_precision, args.batch_size)  # before the first training step finds them
    progress = not args.no_progress and process.is_main  # one set of bars: the main process's
    check_methods(args.methods)  # before hours of fitting, as are the folders and the feature networks
    precision = args.mixed_precision or launch_precision() or "no"  # the run's; a model's own, when it trains
    check_precision(precision, process.device.partition(":")[0])
    if process.fully_sharded:
        check_full_shard_launch(precision, args.optimizer or "adamw")
    check_run_folder(args.out, "--out", keep={"--work-dir": args.work_dir, "--cache-dir": args.cache_dir})
    if args.work_dir is not None:
        check_writable_folder(args.work_dir, "--work-dir")
    if args.log_with:
        from fmri_encoders.training import check_tracker  # the training stack loads only when asked for

        check_tracker(args.log_with)
    if args.pretrained:  # resolved once: every fold reads the same local snapshot, and no fold asks the hub
        from fmri_diffusion.priors.loading import base_model_folder

        args.pretrained = str(
            base_model_folder(args.pretrained, allow_download=args.allow_download).resolve()
        )
    if args.vdvae:  # one spelling of the path, so that --resume compares like with like
        args.vdvae = str(Path(args.vdvae).expanduser().resolve())
        if not Path(args.vdvae).exists():
            raise DataError(
                f"--vdvae {args.vdvae} not found; pass the published .th checkpoint or its folder"
            )
    settings = _method_settings(args, progress)
    if args.colour:  # before the data (NSD: minutes to read) and the feature networks load
        check_colour(args.methods, settings)
    extract_features = _feature_extractor(args)
    dataset = load_dataset(args.data, nsd_root=args.nsd_root, subject=args.subject, colour=args.colour)
    splits = make_splits(dataset, args.split, seed=args.seed, allow_overlap=args.allow_overlap)
    if args.prior_corpus:
        corpus = load_corpus(
            args.prior_corpus, dataset.image_shape[0], seed=args.seed, stimuli=dataset.images
        )
        settings = replace(settings, prior_corpus=corpus)
    print(f"{Path(app).stem}: {process.describe()}", flush=True)  # once the inputs are known to be good
    result = reconstruct_over_splits(
        dataset,
        splits,
        args.methods,
        settings=settings,
        preprocessing=Preprocessing(
            n_voxels=args.n_voxels, voxel_score=args.voxel_score, average_repeats=args.average_repeats
        ),
        progress=progress,
        allow_corpus_leaks=args.allow_corpus_leaks,
    )
    on_main_process(lambda: _write_run(args, argv, app, dataset.name, result, extract_features))
    return 0


def _method_settings(args: argparse.Namespace, progress: bool) -> MethodSettings:
    """What every method of the run is told (the prior corpus is added once the data set is loaded)."""
    return MethodSettings(
        seed=args.seed,
        device=args.device,
        quick=args.quick,
        work_dir=args.work_dir,
        resume=args.resume,
        pretrained=args.pretrained,
        allow_download=args.allow_download,
        cache_dir=args.cache_dir,
        progress=progress,
        log_with=args.log_with,
        sampling={name: getattr(args, name) for name in SAMPLING if getattr(args, name) is not None},
        choices=dict(args.choose),
        mixed_precision=args.mixed_precision or launch_precision(),
        batch_size=args.batch_size,
        gradient_accumulation_steps=args.gradient_accumulation,
        gradient_checkpointing=args.gradient_checkpointing,
        compile=args.compile,
        optimizer=args.optimizer,
        ema=args.ema,
        train_steps=args.train_steps,
        probe_steps=args.probe_steps,
        refit_steps=args.refit_steps,
        validation_folds=args.validation_folds,
    )


def _write_run(
    args: argparse.Namespace,
    argv: list[str] | None,
    app: str,
    dataset_name: str,
    result: CrossValidatedReconstructions,
    extract_features: FeatureFn | None,
) -> None:
    """Evaluate the gathered reconstructions, write --out and print the table (the main process's job)."""
    metrics = write_run(
        args.out,
        dataset=dataset_name,
        split=args.split,
        truth=result.truth,
        stimulus_id=result.stimulus_id,
        trial_index=result.trial_index,
        reconstructions=result.reconstructions,
        notes=result.notes
        + validation_notes(result.records)
        + pre_training_notes(result.records)
        + (["--quick budgets: smoke test, not a result"] if args.quick else []),
        extra=run_records(result),
        command=shlex.join(["uv", "run", app, *(sys.argv[1:] if argv is None else argv)]),
        similarities=result.similarities,
        candidate_stimulus=result.candidate_stimulus,
        settings=EvaluationSettings(
            n_boot=args.n_boot,
            seed=args.seed,
            baseline=choose_baseline(args.methods, args.baseline),
            repeats_averaged=args.average_repeats in ("test", "both"),
        ),
        attachments=result.artefacts,
        literature=args.literature_table,
        extract_features=extract_features,
        progress=silent if args.no_progress else terminal_progress,
    )
    print(terminal_table(metrics))
    print(
        f"\n{dataset_name}, split {args.split}, {result.n_test} test trials. "
        f"Wrote {args.out}/: metrics.json, "
        "reconstructions.npz, reconstructions.png, report.md"
    )
    for name in sorted(result.artefacts):
        print(f"Attached: {args.out / name}")


def _feature_extractor(args: argparse.Namespace) -> FeatureFn | None:
    """The literature table's feature networks found locally; each one not found is said on stderr."""
    if not args.literature_table:
        return None
    from fmri_eval.feature_models import FeatureExtractor, load_feature_networks

    networks, notes = load_feature_networks(args.feature_weights, clip_model=args.clip_model)
    for note in notes:
        print(f"literature table: left out {note}", file=sys.stderr)
    return FeatureExtractor(networks, device=resolve_device(args.device)) if networks else None


if __name__ == "__main__":
    sys.exit(main())
