"""What a run's fits reported besides images, turned into metrics.json entries and report lines."""

from __future__ import annotations

from typing import Any

from fmri_data.methods.runner import CrossValidatedReconstructions

STAGES = ("fit", "validation", "predict")


def run_records(result: CrossValidatedReconstructions) -> dict[str, Any]:
    """metrics.json's extra entries: "seconds" (stage_seconds), "validation" (per method, per fold: the
    grid, its validation scores and the choice), "pre_training" (per method, per fold: the prior corpus a
    fit started from, methods' corpus_prior records) and "prior_corpus" (the leak screening of the prior
    corpus), where the run has them; members' records (with_members) under "method / member"."""
    extra: dict[str, Any] = {"seconds": stage_seconds(result.seconds)}
    records = with_members(result.records)
    validation = {
        name: [{"fold": fold["fold"], **fold["validation"]} for fold in folds if "validation" in fold]
        for name, folds in records.items()
    }
    if any(validation.values()):
        extra["validation"] = {name: folds for name, folds in validation.items() if folds}
    pre_training = {
        name: [{"fold": fold["fold"], **fold["corpus_prior"]} for fold in folds if "corpus_prior" in fold]
        for name, folds in records.items()
    }
    if any(pre_training.values()):
        extra["pre_training"] = {name: folds for name, folds in pre_training.items() if folds}
    if result.prior_corpus is not None:
        extra["prior_corpus"] = result.prior_corpus.as_dict()
    return extra


def with_members(records: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """The records with each member's (a fold record's "members": member -> record; an ensemble's members,
    an sd-* route's inverse-retinotopy start) as a method's of their own, named "method / member", so its
    choices are reported as any method's; members of members as "method / member / member"."""
    members: dict[str, list[dict[str, Any]]] = {}
    for name, folds in records.items():
        for fold in folds:
            for member, record in fold.get("members", {}).items():
                members.setdefault(f"{name} / {member}", []).append({"fold": fold["fold"], **record})
    return records | (with_members(members) if members else {})


def stage_seconds(seconds: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Per method, wall seconds summed over its folds: "fit" (choosing on validation included),
    "validation" (that choice alone) and "predict": where a run's time went, to know what to make faster."""
    return {
        name: {part: round(sum(fold.get(part, 0.0) for fold in folds), 1) for part in STAGES}
        for name, folds in seconds.items()
    }


def validation_notes(records: dict[str, list[dict[str, Any]]]) -> list[str]:
    """One report line per method and fold: what it chose, on how many validation stimuli, from which
    scores, and how the final fit trained where `refit_steps` asked for less than a fit afresh."""
    lines = []
    for name, folds in with_members(records).items():
        for fold in folds:
            record = fold.get("validation") or {}
            left_out = "".join(f"; left out readout {note}" for note in record.get("left_out", []))
            if not record.get("grid"):
                if left_out:
                    lines.append(f"{name}, fold {fold['fold']}: nothing left to choose{left_out}")
                continue
            chosen = ", ".join(f"{key}={value}" for key, value in record["chosen"].items())
            tried = "; ".join(
                f"{', '.join(f'{k}={v}' for k, v in point.items())}: {score:.3f}"
                for point, score in zip(record["grid"], record["scores"], strict=True)
            )
            folds_held = record.get("validation_folds", 1)
            held_out = (
                "held out of" if folds_held == 1 else f"in {folds_held} folds, each held out in turn from"
            )
            lines.append(
                f"{name}, fold {fold['fold']}: chose {chosen} on {record['validation_stimuli']} validation "
                f"stimuli {held_out} its training trials ({record['criterion']}: {tried}){left_out}"
                f"{_final_fit(record.get('final_fit'))}"
            )
    return lines


def _final_fit(final_fit: dict[str, Any] | None) -> str:
    """How the fit on all training trials trained after the choice, where refit_steps asked for less."""
    if final_fit is None:
        return ""
    if final_fit["start"] == "probe":
        share = final_fit["step_fraction"]
        return (
            f"; the final fit started from the probe's weights and trained {share:.0%} of each stage's steps"
        )
    return "; the final fit trained afresh in full (this method cannot start from its probe)"


def pre_training_notes(records: dict[str, list[dict[str, Any]]]) -> list[str]:
    """One report line per method whose fits started from a prior pre-trained on the corpus: which corpus,
    and what share of each stage's steps each fit then trained."""
    lines = []
    for name, folds in with_members(records).items():
        primed = [fold["corpus_prior"] for fold in folds if "corpus_prior" in fold]
        if primed:
            keys = ", ".join(sorted({prior["key"] for prior in primed}))
            shares = " or ".join(sorted({f"{prior['step_fraction']:.0%}" for prior in primed}))
            lines.append(
                f"{name}: pre-trained on the prior corpus {primed[0]['corpus']} ({keys}); each fold's fit "
                f"started there and trained {shares} of each stage's steps"
            )
    return lines
