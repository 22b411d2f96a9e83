"""The training loop's denoising: what the network sees and what it is scored against."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from encluster.distributed import Group
from encluster.models import Autoencoder, AutoencoderSpec
from encluster.training import TrainingConfig, epoch_order, train_autoencoder


class _Recording(Autoencoder):
    """An autoencoder that keeps every input it is given."""

    def __init__(self, spec):
        super().__init__(spec)
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return super().forward(x)


@settings(max_examples=20, deadline=None)
@given(rate=st.floats(0.05, 0.9), seed=st.integers(0, 2**16))
def test_denoising_zeroes_that_fraction_of_inputs_and_scores_against_the_clean_batch(rate, seed):
    X = np.random.default_rng(seed).uniform(0.1, 1, size=(400, 50)).astype(np.float32)  # no zeros of its own
    torch.manual_seed(seed)
    model = _Recording(AutoencoderSpec(n_features=50, hidden=(8,), code_size=2))
    untrained = Autoencoder(model.spec)
    untrained.load_state_dict(model.state_dict())
    config = TrainingConfig(epochs=1, batch_size=400, loss="mse", corruption=rate)
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
    model = _Recording(AutoencoderSpec(n_features=10, hidden=(4,), code_size=2))
    train_autoencoder(model, X, TrainingConfig(epochs=1, batch_size=64), generator=torch.Generator().manual_seed(1))
    order = epoch_order(len(X), torch.Generator().manual_seed(1), Group(0, 1)).numpy()
    assert torch.equal(model.seen[0], torch.as_tensor(X[order]))
