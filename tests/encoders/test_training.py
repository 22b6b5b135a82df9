import io
import json
import re

import pytest
import torch
from accelerate.tracking import GeneralTracker
from torch import nn

from fmri_encoders.training import BatchSampler, EpochSampler, TrainingConfig, TrainingDivergedError, train


class _Line(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))


def _loss(model, batch, gen):
    noise = gen.randn((len(batch["x"]),)) * 0.01
    return ((model.w * batch["x"] - batch["y"] + noise) ** 2).mean()


def _sampler(seed=0):
    x = torch.linspace(-1, 1, 32)
    return BatchSampler({"x": x, "y": 3 * x}, batch_size=8, seed=seed)


def _config(**kwargs):
    base = {
        "max_steps": 40,
        "learning_rate": 0.1,
        "warmup_steps": 0,
        "ema_decay": None,
        "progress": False,
        "device": "cpu",
    }
    return TrainingConfig(**(base | kwargs))


def test_training_decreases_the_loss():
    torch.manual_seed(0)
    result = train(_Line(), _loss, _sampler(), _config())
    assert result.losses[-1] < 0.2 * result.losses[0]


def killed_after(steps, loss):
    """`loss` until it has run `steps` times, then a kill (as Ctrl-C or a lost node would be)."""
    calls = []

    def counting(model, batch, gen):
        calls.append(1)
        if len(calls) > steps:
            raise KeyboardInterrupt
        return loss(model, batch, gen)

    return counting


def test_a_killed_run_resumes_with_the_same_step_count_and_losses(tmp_path):
    torch.manual_seed(0)
    uninterrupted = train(_Line(), _loss, _sampler(), _config(max_steps=20))
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        train(
            _Line(),
            killed_after(12, _loss),
            _sampler(),
            _config(max_steps=20, checkpoint_every=10),
            out_dir=tmp_path,
        )
    # a new process rebuilds model and sampler from scratch (other seeds), then resumes from step 10
    torch.manual_seed(123)
    resumed = train(
        _Line(),
        _loss,
        _sampler(seed=99),
        _config(max_steps=20, checkpoint_every=10),
        out_dir=tmp_path,
        resume="latest",
    )
    assert len(resumed.losses) == 20
    assert resumed.losses == uninterrupted.losses  # bit for bit
    assert (tmp_path / "loss_curve.png").is_file()


class _Dropped(nn.Module):
    """A line behind dropout: resuming must restore torch's global generator, which dropout draws from."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(4))
        self.drop = nn.Dropout(0.3)

    def forward(self, x):
        return self.drop(self.w.expand(len(x), 4)).sum(1) * x


def _dropped_loss(model, batch, gen):
    return ((model(batch["x"]) - batch["y"]) ** 2).mean()


def test_resume_reads_no_pickle_and_stays_bit_exact(tmp_path, monkeypatch):
    config = _config(max_steps=12, checkpoint_every=6, ema_decay=0.9)
    torch.manual_seed(0)
    whole_model = _Dropped()
    whole = train(whole_model, _dropped_loss, _sampler(), config)
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        train(_Dropped(), killed_after(8, _dropped_loss), _sampler(), config, out_dir=tmp_path)
    checkpoint = tmp_path / "checkpoints" / "step-000006"
    assert sorted(p.name for p in checkpoint.iterdir()) == [
        "state.json",
        "state.safetensors",
        "trainer_state.json",
    ]
    real_load = torch.load

    def refuse_pickles(*args, weights_only=None, **kwargs):
        if weights_only is not True:
            raise AssertionError("torch.load without weights_only=True during resume")
        return real_load(*args, weights_only=True, **kwargs)

    monkeypatch.setattr(torch, "load", refuse_pickles)
    torch.manual_seed(7)
    again = _Dropped()
    resumed = train(again, _dropped_loss, _sampler(seed=5), config, out_dir=tmp_path, resume="latest")
    assert resumed.losses == whole.losses
    assert torch.equal(again.w, whole_model.w)  # the EMA weights training returns, restored exactly


def test_a_checkpoint_without_its_state_files_is_one_clear_error(tmp_path):
    train(_Line(), _loss, _sampler(), _config(max_steps=5, checkpoint_every=5), out_dir=tmp_path)
    (tmp_path / "checkpoints" / "step-000005" / "state.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"older version .* never loaded"):
        train(_Line(), _loss, _sampler(), _config(max_steps=10), out_dir=tmp_path, resume="latest")


def test_checkpoints_are_complete_and_limited(tmp_path):
    train(
        _Line(),
        _loss,
        _sampler(),
        _config(max_steps=30, checkpoint_every=10, checkpoints_total_limit=2),
        out_dir=tmp_path,
    )
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step-000020", "step-000030"]
    state = json.loads((tmp_path / "checkpoints" / "step-000030" / "trainer_state.json").read_text())
    assert state["step"] == 30
    assert len(state["losses"]) == 30


def test_nan_loss_stops_with_the_last_good_checkpoint(tmp_path):
    def exploding(model, batch, gen):
        loss = _loss(model, batch, gen)
        return loss if exploding.calls < 10 else loss * float("nan")

    def counting(model, batch, gen):
        exploding.calls += 1
        return exploding(model, batch, gen)

    exploding.calls = 0
    with pytest.raises(TrainingDivergedError, match="step-000005"):
        train(_Line(), counting, _sampler(), _config(max_steps=20, checkpoint_every=5), out_dir=tmp_path)
    assert (tmp_path / "checkpoints" / "step-000005").is_dir()
    assert not list((tmp_path / "checkpoints").glob("*.partial"))


def test_ema_weights_are_what_training_returns():
    torch.manual_seed(0)
    raw, averaged = _Line(), _Line()
    train(raw, _loss, _sampler(), _config())
    train(averaged, _loss, _sampler(), _config(ema_decay=0.9))
    assert 1.5 < averaged.w.item() < raw.w.item()  # the average lags the raw weights rising towards 3


def test_tensorboard_receives_every_step(tmp_path):
    train(
        _Line(),
        _loss,
        _sampler(),
        _config(max_steps=6, log_with="tensorboard"),
        out_dir=tmp_path,
        description="a b",
    )
    events = list((tmp_path / "logs").rglob("events.out.tfevents.*"))
    assert len(events) == 1
    assert events[0].parent.name == "a-b"
    assert events[0].stat().st_size > 0


def test_without_an_out_dir_a_tracker_is_not_started():
    assert len(train(_Line(), _loss, _sampler(), _config(max_steps=3, log_with="tensorboard")).losses) == 3


def test_the_bar_shows_each_step_s_own_loss(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    monkeypatch.setattr("tqdm.std.tqdm.monitor_interval", 0)
    result = train(_Line(), _loss, _sampler(), _config(max_steps=4, progress=True))
    frames = re.findall(r"(\d)/4 .*?loss=([0-9.]+)", terminal.getvalue())
    assert frames, terminal.getvalue()
    for step, shown in frames:
        if int(step) > 0:
            assert float(shown) == pytest.approx(result.losses[int(step) - 1], abs=1e-4)


def test_no_bar_reaches_a_log_file(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr("sys.stderr", log)
    train(_Line(), _loss, _sampler(), _config(max_steps=4, progress=True))
    assert log.getvalue() == ""


def test_a_fresh_run_in_a_used_folder_never_resumes_the_old_run_s_checkpoints(tmp_path):
    train(_Line(), _loss, _sampler(), _config(max_steps=30, checkpoint_every=10), out_dir=tmp_path)
    fresh = train(
        _Line(), _loss, _sampler(seed=3), _config(max_steps=10, checkpoint_every=5), out_dir=tmp_path
    )
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-000005", "step-000010"]
    assert fresh.last_checkpoint.is_dir()
    resumed = train(
        _Line(),
        _loss,
        _sampler(),
        _config(max_steps=10, checkpoint_every=5),
        out_dir=tmp_path,
        resume="latest",
    )
    assert resumed.losses == fresh.losses


def test_an_interrupted_run_closes_its_tracker(tmp_path):
    class Recorder(GeneralTracker):
        name = "recorder"
        requires_logging_directory = False

        def __init__(self):
            super().__init__()
            self.finished = False

        @property
        def tracker(self):
            return self

        def log(self, values, step=None, **kwargs):
            pass

        def finish(self):
            self.finished = True

    recorder = Recorder()
    config = _config(max_steps=10, log_with=recorder)
    with pytest.raises(KeyboardInterrupt):
        train(_Line(), killed_after(3, _loss), _sampler(), config, out_dir=tmp_path)
    assert recorder.finished


class _HalfFrozen(nn.Module):
    """A large frozen part beside a small trained one, as a UNet under LoRA is."""

    def __init__(self):
        super().__init__()
        self.frozen = nn.Parameter(torch.randn(1000), requires_grad=False)
        self.w = nn.Parameter(torch.zeros(1))


def test_checkpoints_hold_the_trained_part_only_and_resume_exactly(tmp_path):
    config = _config(max_steps=10, checkpoint_every=5)
    torch.manual_seed(0)
    whole = train(_HalfFrozen(), _loss, _sampler(), config)
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        train(_HalfFrozen(), killed_after(7, _loss), _sampler(), config, out_dir=tmp_path)
    saved = json.loads((tmp_path / "checkpoints" / "step-000005" / "state.json").read_text())
    assert set(saved["model"]) == {"w"}
    resumed = train(_HalfFrozen(), _loss, _sampler(), config, out_dir=tmp_path, resume="latest")
    assert resumed.losses == whole.losses
    unfrozen = _HalfFrozen()
    unfrozen.frozen.requires_grad_(True)  # trained now, yet absent from the checkpoint
    with pytest.raises(ValueError, match="other trainable parts"):
        train(unfrozen, _loss, _sampler(), config, out_dir=tmp_path, resume="latest")


class _LearningRates(GeneralTracker):
    """A tracker that keeps the learning rate of every step."""

    name = "learning-rates"
    requires_logging_directory = False

    def __init__(self):
        super().__init__()
        self.rates = []

    @property
    def tracker(self):
        return self

    def log(self, values, step=None, **kwargs):
        self.rates.append(values["lr"])


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_after_warmup_a_constant_schedule_keeps_the_rate_and_cosine_decays_it(schedule, tmp_path):
    rates = _LearningRates()
    config = _config(max_steps=10, warmup_steps=4, schedule=schedule, log_with=rates)
    train(_Line(), _loss, _sampler(), config, out_dir=tmp_path)
    assert rates.rates[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    if schedule == "constant":
        assert rates.rates[4:] == pytest.approx([0.1] * 6)
    else:
        assert rates.rates[-1] < 0.01


def _square_fit(model, batch, gen):
    return ((model.layer(batch["x"][:, None].expand(-1, 3)) - batch["y"][:, None]) ** 2).mean()


def test_adafactor_trains_keeps_factored_state_and_resumes_bit_exact(tmp_path):
    config = _config(max_steps=12, checkpoint_every=6, optimizer="adafactor", learning_rate=0.2)
    torch.manual_seed(0)
    whole_model = _Parts()
    whole = train(whole_model, _square_fit, _sampler(), config)
    assert whole.losses[-1] < 0.5 * whole.losses[0]
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        train(_Parts(), killed_after(8, _square_fit), _sampler(), config, out_dir=tmp_path)
    torch.manual_seed(7)
    again = _Parts()
    resumed = train(again, _square_fit, _sampler(seed=5), config, out_dir=tmp_path, resume="latest")
    assert resumed.losses == whole.losses
    assert torch.equal(again.layer.weight, whole_model.layer.weight)
    saved = json.loads((tmp_path / "checkpoints" / "step-000006" / "state.json").read_text())
    assert "exp_avg_sq_row" in json.dumps(saved)  # a 3x3 matrix keeps a row and a column, not 2 x 9 moments


class _ZeroMatrix(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3, 3))  # as LoRA's B and ControlNet's zero convolutions start


@pytest.mark.parametrize("optimizer", ["adamw", "adafactor"])
def test_a_zero_initialised_weight_moves_by_the_learning_rate_under_either_optimizer(optimizer):
    config = _config(
        max_steps=10, learning_rate=0.05, optimizer=optimizer, schedule="constant", weight_decay=0
    )
    model = _ZeroMatrix()
    train(model, lambda m, batch, gen: ((m.w - 1) ** 2).mean(), _sampler(), config)
    assert model.w.detach().mean() == pytest.approx(0.5, abs=0.1)  # 10 steps of 0.05 towards 1


def test_an_unknown_optimizer_is_refused():
    with pytest.raises(ValueError, match="unknown optimizer 'lion'"):
        TrainingConfig(optimizer="lion")


def test_an_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        TrainingConfig(schedule="linear")


class _Parts(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(3, 3)
        self.scale = nn.Parameter(torch.tensor(2.0))


def _no_gradient(model, batch, gen):
    """Zero gradients everywhere: only weight decay moves the parameters."""
    return 0.0 * sum(p.sum() for p in model.parameters())


@pytest.mark.parametrize("matrices_only", [True, False])
def test_decay_matrices_only_spares_biases_and_scalars(matrices_only):
    torch.manual_seed(0)
    model = _Parts()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    config = _config(max_steps=5, weight_decay=0.5, decay_matrices_only=matrices_only, schedule="constant")
    train(model, _no_gradient, _sampler(), config)
    shrunk = 0.95**5
    torch.testing.assert_close(model.layer.weight, before["layer.weight"] * shrunk)
    for name in ("layer.bias", "scale"):
        expected = before[name] if matrices_only else before[name] * shrunk
        torch.testing.assert_close(dict(model.named_parameters())[name], expected)


def _distance_to(target):
    """A validation loss that is lowest when the line's slope passes `target` on its way to 3; it records
    the weights it saw, in order."""

    def validate(model):
        validate.seen.append(model.w.detach().clone())
        return float((model.w - target).abs())

    validate.seen = []
    return validate


def test_early_stopping_stops_after_patience_and_restores_the_best_weights():
    torch.manual_seed(0)
    model, validate = _Line(), _distance_to(1.5)
    result = train(
        model, _loss, _sampler(), _config(max_steps=200), validate=validate, validate_every=2, patience=3
    )
    steps = [step for step, _ in result.validation]
    best = steps.index(result.best_step)
    assert result.validation[best][1] == min(score for _, score in result.validation)
    assert steps[best + 1 :] == [result.best_step + 2, result.best_step + 4, result.best_step + 6]
    assert len(result.losses) == result.best_step + 6 < 200
    assert torch.equal(model.w, validate.seen[best])
    assert abs(model.w.item() - 1.5) < 0.5


def test_patience_needs_a_validation():
    with pytest.raises(ValueError, match="patience=3 needs a validate function"):
        train(_Line(), _loss, _sampler(), _config(), patience=3)


def test_early_stopping_resumes_where_it_was(tmp_path):
    def run(loss, **kwargs):
        torch.manual_seed(0)
        model = _Line()
        config = _config(max_steps=200, checkpoint_every=5)
        options = {"validate": _distance_to(1.5), "validate_every": 2, "patience": 3}
        return model, train(model, loss, _sampler(), config, **options, **kwargs)

    whole_model, whole = run(_loss)
    assert len(whole.losses) == whole.best_step + 6
    with pytest.raises(KeyboardInterrupt):  # the last checkpoint lies after the best step: it holds the best
        run(killed_after(whole.best_step + 5, _loss), out_dir=tmp_path)
    model, resumed = run(_loss, out_dir=tmp_path, resume="latest")
    assert resumed.losses == whole.losses
    assert resumed.validation == whole.validation
    assert resumed.best_step == whole.best_step
    assert torch.equal(model.w, whole_model.w)


def _epochs(seed=0):
    x = torch.linspace(-1, 1, 30)
    return EpochSampler({"x": x, "y": 3 * x}, batch_size=8, seed=seed)


def test_a_killed_run_with_an_epoch_sampler_resumes_bit_exact(tmp_path):
    config = _config(max_steps=13, checkpoint_every=5)  # 4 batches an epoch: checkpoints mid-epoch
    torch.manual_seed(0)
    whole = train(_Line(), _loss, _epochs(), config)
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        train(_Line(), killed_after(12, _loss), _epochs(), config, out_dir=tmp_path)
    torch.manual_seed(3)
    resumed = train(_Line(), _loss, _epochs(seed=9), config, out_dir=tmp_path, resume="latest")
    assert resumed.losses == whole.losses
