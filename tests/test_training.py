"""The training loop: what the network sees (denoising), what it is scored against, and the loss."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from encluster.distributed import Group
from encluster.errors import ConfigError
from encluster.models import Autoencoder, AutoencoderSpec
from encluster.training import (Checkpoint, TrainingConfig, epoch_order, reconstruction_loss, resolve_precision,
                                train_autoencoder)



# What these tests took from the config classes' own defaults before those were removed (a default lives
# in its setting's declaration only), written out: a sigmoid network trained with cross-entropy.
SIGMOID = {"decoder_hidden": None, "activation": "sigmoid", "code_activation": "sigmoid",
           "output_activation": "sigmoid", "init": "xavier"}


def _training(**given):
    return TrainingConfig(**{"batch_size": 256, "learning_rate": 1e-3, "loss": "bce", "schedule": "constant",
                             "corruption": 0.0, "precision": "float32", **given})

class _Recording(Autoencoder):
    """An autoencoder that keeps every input it is given."""

    def __init__(self, spec):
        super().__init__(spec)
        self.seen = []

    def forward(self, x, activate=True):
        self.seen.append(x.detach().clone())
        return super().forward(x, activate)


@settings(max_examples=20, deadline=None)
@given(rate=st.floats(0.05, 0.9), seed=st.integers(0, 2**16))
def test_denoising_zeroes_that_fraction_of_inputs_and_scores_against_the_clean_batch(rate, seed):
    X = np.random.default_rng(seed).uniform(0.1, 1, size=(400, 50)).astype(np.float32)  # no zeros of its own
    torch.manual_seed(seed)
    model = _Recording(AutoencoderSpec(n_features=50, hidden=(8,), code_size=2, **SIGMOID))
    untrained = Autoencoder(model.spec)
    untrained.load_state_dict(model.state_dict())
    config = _training(epochs=1, batch_size=400, loss="mse", corruption=rate)
    history = train_autoencoder(model, X, config, generator=torch.Generator().manual_seed(seed))
    seen = model.seen[0]  # the one batch: every row, in the epoch's shuffled order
    clean = torch.as_tensor(X[epoch_order(len(X), torch.Generator().manual_seed(seed), Group(0, 1)).numpy()])
    zeroed = seen == 0
    # 20,000 values: the zeroed share is within 0.02 of the rate (over 5 standard deviations).
    assert abs(zeroed.float().mean().item() - rate) < 0.02
    assert torch.equal(seen[~zeroed], clean[~zeroed])  # the rest passes through unchanged
    with torch.no_grad():
        output = untrained(seen)
        against_clean = torch.nn.functional.mse_loss(output, clean).item()
        against_input = torch.nn.functional.mse_loss(output, seen).item()
    assert np.isclose(history[0], against_clean, rtol=1e-5) and not np.isclose(history[0], against_input, rtol=1e-3)


def test_no_corruption_feeds_the_batch_itself():
    X = np.random.default_rng(0).uniform(size=(64, 10)).astype(np.float32)
    model = _Recording(AutoencoderSpec(n_features=10, hidden=(4,), code_size=2, **SIGMOID))
    train_autoencoder(model, X, _training(epochs=1, batch_size=64), generator=torch.Generator().manual_seed(1))
    order = epoch_order(len(X), torch.Generator().manual_seed(1), Group(0, 1)).numpy()
    assert torch.equal(model.seen[0], torch.as_tensor(X[order]))


@settings(max_examples=30, deadline=None)
@given(scale=st.floats(0.1, 40), seed=st.integers(0, 2**16),
       pair=st.sampled_from([("bce", "sigmoid"), ("mse", "sigmoid"), ("mse", "linear")]))  # BCE needs [0, 1]
def test_reconstruction_loss_on_pre_activations_is_the_loss_on_the_output(scale, seed, pair):
    kind, activation = pair
    generator = torch.Generator().manual_seed(seed)
    pre = torch.randn(16, 30, generator=generator, dtype=torch.float64) * scale  # large scales saturate the sigmoid
    target = torch.rand(16, 30, generator=generator, dtype=torch.float64)
    model = Autoencoder(AutoencoderSpec(n_features=30, hidden=(8,), code_size=2, **{**SIGMOID, "output_activation": activation}))
    loss = reconstruction_loss(kind, model.output_activation)(pre, target).item()
    output = model.output_activation(pre)
    if kind == "mse":
        assert np.isclose(loss, torch.nn.functional.mse_loss(output, target).item(), rtol=1e-12)
        return
    # The logits give the exact value (log(1 - sigmoid(z)) = -softplus(z)) at any scale; BCE on
    # probabilities loses digits in 1 - p as the sigmoid saturates, and clamps log(p) at -100.
    exact = (target * torch.nn.functional.softplus(-pre) + (1 - target) * torch.nn.functional.softplus(pre)).mean()
    assert np.isclose(loss, exact.item(), rtol=1e-10)
    if pre.abs().max() < 15:
        assert np.isclose(loss, torch.nn.functional.binary_cross_entropy(output, target).item(), rtol=1e-6)


def test_forward_without_activation_stops_before_the_output_activation():
    torch.manual_seed(0)
    model = Autoencoder(AutoencoderSpec(n_features=12, hidden=(6,), code_size=2, **SIGMOID))
    x = torch.rand(5, 12)
    assert torch.allclose(torch.sigmoid(model(x, activate=False)), model(x))
    assert (model(x, activate=False) < 0).any()  # logits, not probabilities


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), scale=st.floats(0.1, 10))
def test_leaky_relu_hidden_layers_pass_negatives_at_slope_one_hundredth(seed, scale):
    torch.manual_seed(seed)
    spec = AutoencoderSpec(n_features=8, hidden=(6, 5), code_size=3, activation="leaky_relu",
                           code_activation="linear", output_activation="linear", init="torch", decoder_hidden=None)
    model = Autoencoder(spec)
    x = scale * torch.randn(7, 8)
    h = x
    for layer in (model.encoder[0], model.encoder[2]):
        z = layer(h)
        h = torch.where(z > 0, z, 0.01 * z)
    assert torch.allclose(model.encode(x), model.encoder[4](h), atol=1e-5 * scale)
    relu = Autoencoder(AutoencoderSpec(**{**spec.to_dict(), "activation": "relu"}))
    relu.load_state_dict(model.state_dict())
    assert not torch.allclose(model.encode(x), relu.encode(x))  # the negatives made a difference


def _dtypes_of_first_layer(model):
    """Record the dtype of the first linear layer's output at every call."""
    seen = []
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    first.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    return seen


def test_bfloat16_computes_in_bfloat16_keeps_float32_weights_and_learns_as_float32_does():
    X = np.random.default_rng(0).uniform(size=(512, 30)).astype(np.float32)
    spec = AutoencoderSpec(n_features=30, hidden=(64, 32), code_size=4, activation="relu", code_activation="linear",
                           output_activation="linear", init="xavier", decoder_hidden=None)
    histories = {}
    for precision in ("float32", "bfloat16"):
        torch.manual_seed(0)
        model = Autoencoder(spec)
        dtypes = _dtypes_of_first_layer(model)
        config = _training(epochs=8, batch_size=64, learning_rate=3e-3, loss="mse", precision=precision)
        histories[precision] = train_autoencoder(model, X, config, generator=torch.Generator().manual_seed(0))
        assert set(dtypes) == {getattr(torch, precision)}
        assert all(p.dtype == torch.float32 for p in model.parameters())
    fp32, bf16 = histories["float32"], histories["bfloat16"]
    assert bf16[-1] < 0.7 * bf16[0]  # it learns
    assert bf16 != fp32 and np.allclose(bf16, fp32, rtol=0.05)  # rounded differently, to the same end


def test_precision_auto_follows_the_cpu_and_explicit_values_pass(monkeypatch):
    cpu = torch.device("cpu")
    for avx512_bf16, amx, expected in ((True, False, "bfloat16"), (False, True, "bfloat16"), (False, False, "float32")):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda value=avx512_bf16: value, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda value=amx: value, raising=False)
        assert resolve_precision("auto", cpu) == expected
        assert resolve_precision("float32", cpu) == "float32" and resolve_precision("bfloat16", cpu) == "bfloat16"


def test_unknown_precision_is_a_clear_error():
    with pytest.raises(ConfigError, match="precision='half'.*auto or one of float32, bfloat16"):
        _training(epochs=1, precision="half")


def test_a_checkpoint_resumes_on_a_machine_without_a_gpu_whichever_device_wrote_it(device, tmp_path, monkeypatch):
    X = np.random.default_rng(0).uniform(size=(256, 20)).astype(np.float32)
    spec = AutoencoderSpec(n_features=20, hidden=(32,), code_size=3, activation="relu", code_activation="linear",
                           output_activation="linear", init="xavier", decoder_hidden=None)

    def train(epochs, seed, on, checkpoint=None):
        torch.manual_seed(seed)
        model = Autoencoder(spec)
        config = _training(epochs=epochs, batch_size=32, learning_rate=3e-3, loss="mse")
        history = train_autoencoder(model, X, config, generator=torch.Generator().manual_seed(seed), device=on,
                                    checkpoint=checkpoint)
        return model.to("cpu"), history

    _, first = train(2, 0, device, Checkpoint(tmp_path / "checkpoint.pt"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a CPU-only machine
    # Another initialisation and shuffling seed: what continues must come from the file alone.
    resumed, history = train(4, 1, "cpu", Checkpoint(tmp_path / "checkpoint.pt", resume=True))
    assert history[:2] == first and len(history) == 4 and history[3] < history[1]
    if device == "cpu":  # on one device, resuming is exact
        whole, uninterrupted = train(4, 0, "cpu")
        assert history == uninterrupted
        assert all(torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), whole.state_dict().values()))


@pytest.mark.parametrize("seconds, kept", [(60.0, [1, 12]), (0.0, list(range(1, 13)))])
def test_a_fast_training_keeps_its_first_and_last_checkpoints_and_the_others_seconds_apart(seconds, kept, tmp_path,
                                                                                         monkeypatch):
    """Twelve epochs of milliseconds: with a minute between checkpoints only the first and the last epoch's
    are written (each is tens of MB on a real network), with none every epoch's is."""
    from encluster import training

    monkeypatch.setattr(training, "CHECKPOINT_SECONDS", seconds)
    saved, save = [], Checkpoint.save
    monkeypatch.setattr(Checkpoint, "save", lambda self, state, stage=None: (saved.append(state["epoch"]),
                                                                             save(self, state, stage)))
    X = np.random.default_rng(0).uniform(size=(64, 8)).astype(np.float32)
    spec = AutoencoderSpec(n_features=8, hidden=(16,), code_size=2, activation="relu", code_activation="linear",
                           output_activation="linear", init="xavier", decoder_hidden=None)
    checkpoint = Checkpoint(tmp_path / "checkpoint.pt")
    train_autoencoder(Autoencoder(spec), X, _training(epochs=12, batch_size=32, loss="mse"),
                      generator=torch.Generator().manual_seed(0), checkpoint=checkpoint)
    assert saved == kept
    assert checkpoint.load()["epoch"] == 12  # a kill after training resumes with nothing left to train


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 2_000_000), st.integers(1, 1024), st.integers(1, 50))
def test_a_small_set_gets_the_step_budget_in_whole_passes_a_large_one_its_epochs(n, batch, epochs):
    from encluster.stages import encode

    declared = {setting.name: setting.default for setting in encode.SETTINGS}
    chosen = encode.EncodeSettings(**{**declared, "epochs": epochs, "steps": "auto", "batch_size": batch})
    passes = encode.pretraining_epochs(chosen, n)
    per_epoch = math.ceil(n / batch)
    budget = encode.STEPS_PER_ROOT_SAMPLE * math.sqrt(n)
    assert passes >= epochs and passes * per_epoch >= budget
    assert passes == epochs or (passes - 1) * per_epoch < budget  # no pass more than the budget needs
    assert encode.pretraining_epochs(encode.EncodeSettings(**{**declared, "epochs": epochs, "batch_size": batch}),
                                     n) == epochs  # steps 0, the declared default: epochs alone
    assert encode.pretraining_epochs(encode.EncodeSettings(**{**chosen.__dict__, "epochs": 0}), n) == 0


def test_auto_widths_follow_the_input_and_stop_at_n2ds():
    from encluster.stages import encode

    assert encode.hidden_widths("auto", 13) == (104, 104, 416)
    assert encode.hidden_widths("auto", 4) == (64, 64, 256)
    assert encode.hidden_widths("auto", 784) == encode.hidden_widths("auto", 64) == (500, 500, 2000)
    assert encode.hidden_widths((7, 9), 784) == (7, 9)


def _train_rows(data, device, corruption=0.0):
    spec = AutoencoderSpec(n_features=data.shape[1], hidden=(32,), code_size=3, activation="relu",
                           code_activation="linear", output_activation="linear", init="xavier", decoder_hidden=None)
    torch.manual_seed(0)
    model = Autoencoder(spec)
    config = _training(epochs=3, batch_size=32, learning_rate=3e-3, loss="mse", corruption=corruption)
    history = train_autoencoder(model, data, config, generator=torch.Generator().manual_seed(0), device=device)
    return model.to("cpu").state_dict(), history


@pytest.mark.parametrize("corruption", [0.0, 0.3])
def test_data_kept_whole_on_the_device_trains_exactly_as_batches_read_each_step(device, monkeypatch, corruption):
    """On a GPU with room the scaled rows are copied there once and each step indexes them; else
    each batch is read from the (memory-mapped) rows and moved. Forced here on whichever device
    runs the tests: the weights and the loss history must be the same, bit for bit."""
    from encluster import training
    from encluster.scaling import ScaledRows, Scaler

    data = ScaledRows(np.random.default_rng(0).integers(0, 256, (300, 20), dtype=np.uint8), Scaler("uint8"))
    kept = []
    real_init = training.BatchReader.__init__

    def spy(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        kept.append(self.resident is not None)

    monkeypatch.setattr(training.BatchReader, "__init__", spy)
    monkeypatch.setattr(training, "resident_bytes", lambda device: 0)
    streamed, streamed_history = _train_rows(data, device, corruption)
    monkeypatch.setattr(training, "resident_bytes", lambda device: 1 << 40)
    resident, resident_history = _train_rows(data, device, corruption)
    assert kept == [False, True]
    assert resident_history == streamed_history
    assert all(torch.equal(resident[name], streamed[name]) for name in streamed)


def test_reading_the_loss_less_often_changes_when_it_is_read_not_what_is_learned(monkeypatch):
    """The loss stays on the device between reads (every `SYNC_EVERY` steps); the weights must not
    depend on how often, and each epoch's loss only by float64 rounding."""
    from encluster import training

    data = np.random.default_rng(1).uniform(size=(300, 20)).astype(np.float32)
    monkeypatch.setattr(training, "SYNC_EVERY", 1)
    every_step, every_history = _train_rows(data, "cpu")
    monkeypatch.setattr(training, "SYNC_EVERY", 1000)
    once, once_history = _train_rows(data, "cpu")
    assert all(torch.equal(every_step[name], once[name]) for name in once)
    np.testing.assert_allclose(once_history, every_history, rtol=1e-12)
    assert once_history[-1] < once_history[0]
