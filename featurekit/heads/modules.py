"""Mask-aware torch layers and the network assembled from them.

Every layer here takes and returns a pair ``(x, lengths)``:

* in the *frame stage* ``x`` is a right-padded batch of sequences ``(B, T, C)`` and ``lengths`` a
  ``(B,)`` int64 tensor with the number of valid frames of each sequence;
* in the *vector stage* (after a pooling layer) ``x`` is ``(B, C)`` and ``lengths`` is ``None``.

:class:`HeadNetwork` zeroes padded frames after every frame-stage layer, so a padded frame never
leaks into a convolution window, a batch-norm statistic or a pooled vector: a sequence gets the same
output whether it is predicted alone or padded in a batch with longer ones.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

__all__ = [
    "ACTIVATIONS",
    "AttentionPool",
    "BatchNorm",
    "Dense",
    "Dropout",
    "HeadNetwork",
    "LastPool",
    "LayerNorm",
    "MaskedConv1d",
    "MaxPool",
    "MeanPool",
    "MemberAverage",
    "Recurrent",
    "lengths_to_mask",
]

#: What every body layer returns: the transformed batch and the (possibly shortened) lengths, or
#: ``None`` for the lengths once the batch has been pooled to vectors.
LayerOutput = tuple[torch.Tensor, torch.Tensor | None]

#: Activation name -> module factory (used by ``dense`` and ``conv1d``).
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "leaky_relu": nn.LeakyReLU,
    "linear": nn.Identity,
    "none": nn.Identity,
}


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """Boolean mask ``(B, max_len)``: True on the valid (non-padded) frames."""
    steps = torch.arange(max_len, device=lengths.device)
    return steps.unsqueeze(0) < lengths.unsqueeze(1)


def _zero_padding(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    mask = lengths_to_mask(lengths, x.shape[1])
    return x.masked_fill(~mask.unsqueeze(-1), 0.0)


class Dense(nn.Module):
    """Fully connected layer with activation; frame-wise in the frame stage."""

    def __init__(self, in_features: int, units: int, activation: str = "relu") -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, units)
        self.activation = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> LayerOutput:
        return self.activation(self.linear(x)), lengths


class Dropout(nn.Module):
    """Dropout (frame-wise or on vectors)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(p)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> LayerOutput:
        return self.dropout(x), lengths


class BatchNorm(nn.Module):
    """Batch normalisation whose statistics use the valid frames only.

    In the frame stage the valid frames of the whole batch are gathered into one ``(N, C)`` matrix,
    normalised and scattered back, so padding never enters the batch statistics.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(num_features)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> LayerOutput:
        if lengths is None:
            return self.norm(x), lengths
        mask = lengths_to_mask(lengths, x.shape[1])
        out = x.new_zeros(x.shape)
        out[mask] = self.norm(x[mask])
        return out, lengths


class LayerNorm(nn.Module):
    """Layer normalisation over the feature axis (frame-wise in the frame stage)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(num_features)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> LayerOutput:
        return self.norm(x), lengths


class Recurrent(nn.Module):
    """LSTM / GRU run on packed sequences (``pack_padded_sequence``), so padding is never seen."""

    def __init__(self, cell: str, in_features: int, hidden: int, layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        rnn_cls = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.bidirectional = bidirectional
        self.rnn = rnn_cls(in_features, hidden, num_layers=layers, bidirectional=bidirectional,
                           dropout=dropout, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> LayerOutput:
        total = x.shape[1]
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=total)
        return out, lengths


class MaskedConv1d(nn.Module):
    """1-D convolution over time with "same" padding and masked lengths.

    The input's padded frames are zero (the network guarantees it), which is exactly what the
    convolution's own zero padding supplies at the end of a sequence predicted alone. With
    ``stride`` s the output has ``ceil(T / s)`` frames and the lengths shrink the same way.
    """

    def __init__(self, in_features: int, channels: int, kernel: int, stride: int = 1,
                 dilation: int = 1, activation: str = "relu") -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_features, channels, kernel, stride=stride, dilation=dilation)
        self.activation = ACTIVATIONS[activation]()
        total = dilation * (kernel - 1)
        self.pad = (total // 2, total - total // 2)
        self.stride = stride

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> LayerOutput:
        y = F.pad(x.transpose(1, 2), self.pad)
        y = self.activation(self.conv(y)).transpose(1, 2)
        return y, torch.div(lengths - 1, self.stride, rounding_mode="floor") + 1


class MeanPool(nn.Module):
    """Mean over the valid frames."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> LayerOutput:
        mask = lengths_to_mask(lengths, x.shape[1]).unsqueeze(-1).to(x.dtype)
        return (x * mask).sum(1) / lengths.unsqueeze(1).to(x.dtype), None


class StatsPool(nn.Module):
    """Mean and standard deviation over the valid frames, concatenated (statistics pooling).

    The learnt counterpart of the mean+std functionals (HSF1), as in x-vector speaker embeddings
    (Snyder et al., 2018). The output is twice as wide as the input.
    """

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> LayerOutput:
        mask = lengths_to_mask(lengths, x.shape[1]).unsqueeze(-1).to(x.dtype)
        n = lengths.unsqueeze(1).to(x.dtype)
        mean = (x * mask).sum(1) / n
        var = (((x - mean.unsqueeze(1)) * mask) ** 2).sum(1) / n
        return torch.cat([mean, torch.sqrt(var + 1e-6)], dim=1), None


class MaxPool(nn.Module):
    """Maximum over the valid frames."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> LayerOutput:
        mask = lengths_to_mask(lengths, x.shape[1]).unsqueeze(-1)
        return x.masked_fill(~mask, float("-inf")).amax(dim=1), None


class LastPool(nn.Module):
    """The last valid frame.

    After a bidirectional RNN (``split_directions``) the forward half is taken at the last valid
    frame and the backward half at the first frame, i.e. both directions' full-sequence summaries.
    """

    def __init__(self, split_directions: bool = False) -> None:
        super().__init__()
        self.split_directions = split_directions

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> LayerOutput:
        batch = torch.arange(x.shape[0], device=x.device)
        last = x[batch, lengths - 1]
        if not self.split_directions:
            return last, None
        half = x.shape[-1] // 2
        return torch.cat([last[:, :half], x[:, 0, half:]], dim=-1), None


class AttentionPool(nn.Module):
    """Attention-weighted mean over the valid frames (softmax over masked scores).

    ``hidden`` = 0 scores each frame with one linear map; ``hidden`` > 0 uses additive attention
    ``w^T tanh(W x + b)``.
    """

    def __init__(self, in_features: int, hidden: int = 0) -> None:
        super().__init__()
        if hidden > 0:
            self.score = nn.Sequential(nn.Linear(in_features, hidden), nn.Tanh(),
                                       nn.Linear(hidden, 1, bias=False))
        else:
            self.score = nn.Linear(in_features, 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> LayerOutput:
        mask = lengths_to_mask(lengths, x.shape[1])
        scores = self.score(x).squeeze(-1).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1)
        return torch.bmm(weights.unsqueeze(1), x).squeeze(1), None


class HeadNetwork(nn.Module):
    """Body layers (frame stage, one pooling layer, vector stage) plus a linear output layer.

    Parameters
    ----------
    layers
        Built body layers in order; exactly one of them must be a pooling layer.
    pool_index
        Position of the pooling layer in ``layers``.
    in_features
        Input feature width; the standardisation buffers ``x_mean`` / ``x_scale`` have this size.
    body_features
        Width of the body's output.
    n_outputs
        Number of logits (classes) or targets.
    """

    def __init__(self, layers: list[nn.Module], pool_index: int, in_features: int, body_features: int,
                 n_outputs: int) -> None:
        super().__init__()
        self.body = nn.ModuleList(layers)
        self.pool_index = pool_index
        self.output = nn.Linear(body_features, n_outputs)
        self.register_buffer("x_mean", torch.zeros(in_features))
        self.register_buffer("x_scale", torch.ones(in_features))

    def set_standardization(self, mean: torch.Tensor, scale: torch.Tensor) -> None:
        """Set the input z-scoring applied inside :meth:`forward`."""
        with torch.no_grad():
            self.x_mean.copy_(mean)
            self.x_scale.copy_(scale)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Map a padded batch ``(B, T, F)`` with ``lengths`` ``(B,)`` to outputs ``(B, n_outputs)``."""
        x = _zero_padding((x - self.x_mean) / self.x_scale, lengths)
        state: torch.Tensor | None = lengths
        for i, layer in enumerate(self.body):
            x, state = layer(x, state)
            if i < self.pool_index:
                x = _zero_padding(x, state)
        return self.output(x)


class MemberAverage(nn.Module):
    """Several trained :class:`HeadNetwork` members as one network (a seed ensemble).

    ``probabilities=True`` (classifiers): returns ``log(mean_k softmax(member_k(x)))``, so a softmax
    of the output is the average of the members' class probabilities. ``False`` (regressors): the
    mean of the members' outputs.
    """

    def __init__(self, members: list[nn.Module], probabilities: bool) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.probabilities = probabilities

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        outs = torch.stack([m(x, lengths) for m in self.members])
        if self.probabilities:
            return torch.logsumexp(torch.log_softmax(outs, dim=-1), dim=0) - math.log(len(self.members))
        return outs.mean(dim=0)
