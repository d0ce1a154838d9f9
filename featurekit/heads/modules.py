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
    "CROPS",
    "EVAL_BLOCK",
    "Activation",
    "BatchNorm2d",
    "Conv2d",
    "GlobalPool2d",
    "MapsToFrames",
    "Parallel",
    "Pool2d",
    "SelfAttention",
    "SpecAugment",
    "fix_length",
    "gather_windows",
    "window_starts",
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


def _full(lengths: torch.Tensor, max_len: int) -> bool:
    """Whether no item of the batch is padded (every length is ``max_len``)."""
    return bool((lengths == max_len).all())


def _zero_padding(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    if x.dim() == 4:
        if _full(lengths, x.shape[-1]):
            return x  # feature maps (B, C, F, T): time is the last axis
        mask = lengths_to_mask(lengths, x.shape[-1])
        return x.masked_fill(~mask[:, None, None, :], 0.0)
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


def fix_length(x: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop a padded batch ``(B, T, F)`` to its first ``length`` frames or zero-pad it to them; every
    item then counts as ``length`` frames long (the padding becomes part of the input, as in
    fixed-size spectrogram CNNs)."""
    if x.shape[1] >= length:
        x = x[:, :length]
    else:
        x = F.pad(x, (0, 0, 0, length - x.shape[1]))
    return x, torch.full((x.shape[0],), length, dtype=torch.int64, device=x.device)


#: How a fixed-length network meets sequences of other lengths (see :class:`HeadNetwork`).
CROPS = ("start", "random")

#: Items (or windows) per pass through the body of a fixed-length network in eval mode: however many
#: sequences a prediction chunk holds, and however many windows they make, memory stays bounded.
EVAL_BLOCK = 64


def window_starts(lengths: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows of ``size`` frames covering each sequence, half a window apart, the last one ending
    on the sequence's last frame; a sequence of at most ``size`` frames has one window at 0.

    Returns
    -------
    items, starts
        ``(W,)`` each: the sequence a window belongs to and its first frame.
    """
    hop = max(1, size // 2)
    items: list[int] = []
    starts: list[int] = []
    for i, n in enumerate(lengths.tolist()):
        last = max(0, int(n) - size)
        own = list(range(0, last + 1, hop))
        if own[-1] != last:
            own.append(last)
        items += [i] * len(own)
        starts += own
    return torch.tensor(items, dtype=torch.int64), torch.tensor(starts, dtype=torch.int64)


def gather_windows(x: torch.Tensor, items: torch.Tensor, starts: torch.Tensor, size: int) -> torch.Tensor:
    """Windows ``(W, size, F)`` of the padded batch ``x`` ``(B, T, F)`` (zero beyond its end)."""
    if x.shape[1] < size + int(starts.max()):
        x = F.pad(x, (0, 0, 0, size + int(starts.max()) - x.shape[1]))
    frames = starts.to(x.device)[:, None] + torch.arange(size, device=x.device)[None, :]
    return x[items.to(x.device)[:, None], frames]


def _as_map(x: torch.Tensor) -> torch.Tensor:
    """Frames ``(B, T, F)`` as a one-channel feature map ``(B, 1, F, T)``; maps pass unchanged."""
    return x.transpose(1, 2).unsqueeze(1) if x.dim() == 3 else x


class Conv2d(nn.Module):
    """2-D convolution over (frequency, time) feature maps with "same" padding and masked lengths.

    Frames ``(B, T, F)`` enter as a one-channel map ``(B, 1, F, T)``. As in :class:`MaskedConv1d`,
    padded frames are zero, which is what the convolution's own padding supplies at the end of a
    sequence predicted alone; with ``stride`` s both axes shrink to ``ceil(n / s)``.
    """

    def __init__(self, in_channels: int, channels: int, kernel_f: int, kernel_t: int, stride: int = 1,
                 activation: str = "relu") -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, channels, (kernel_f, kernel_t), stride=stride)
        self.activation = ACTIVATIONS[activation]()
        tf, tt = kernel_f - 1, kernel_t - 1
        self.pad = (tt // 2, tt - tt // 2, tf // 2, tf - tf // 2)
        self.stride = stride

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> LayerOutput:
        y = self.activation(self.conv(F.pad(_as_map(x), self.pad)))
        return y, torch.div(lengths - 1, self.stride, rounding_mode="floor") + 1


class Pool2d(nn.Module):
    """Max or average pooling of feature maps over ``(pool_f, pool_t)`` windows (stride = window).

    The frequency axis is floored (its size is fixed); time uses the windows that hold at least one
    valid frame (``ceil(length / pool_t)`` of them), and reduces over the valid frames only, so an
    item's output does not depend on the padding of its batch.
    """

    def __init__(self, mode: str, pool_f: int, pool_t: int) -> None:
        super().__init__()
        self.mode, self.pool_f, self.pool_t = mode, pool_f, pool_t

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> LayerOutput:
        x = _as_map(x)
        b, c, f, t = x.shape
        pf, pt = self.pool_f, self.pool_t
        nf, nt = f // pf, -(-t // pt)
        if t % pt == 0 and _full(lengths, t):  # nothing padded: plain pooling
            pool = F.max_pool2d if self.mode == "max" else F.avg_pool2d
            return pool(x[:, :, :nf * pf], (pf, pt)), lengths // pt
        valid = F.pad(lengths_to_mask(lengths, t), (0, nt * pt - t))  # (B, nt * pt)
        x = F.pad(x[:, :, :nf * pf], (0, nt * pt - t)).reshape(b, c, nf, pf, nt, pt)
        v = valid.reshape(b, 1, 1, 1, nt, pt)
        if self.mode == "max":
            y = x.masked_fill(~v, float("-inf")).amax(dim=(3, 5))
        else:
            count = (v.sum(dim=5) * pf).clamp(min=1).squeeze(3)
            y = (x * v).sum(dim=(3, 5)) / count
        y_len = torch.div(lengths + pt - 1, pt, rounding_mode="floor")
        return _zero_padding(y, y_len), y_len  # -inf of windows past the end -> 0


class BatchNorm2d(nn.Module):
    """Batch normalisation of feature maps per channel, with statistics over the valid frames only."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> LayerOutput:
        x = _as_map(x)
        b, c, f, t = x.shape
        if _full(lengths, t):
            return self.norm(x.reshape(b, c, f * t)).reshape(b, c, f, t), lengths
        mask = lengths_to_mask(lengths, t)
        xt = x.permute(0, 3, 1, 2)  # (B, T, C, F)
        out = xt.new_zeros(xt.shape)
        out[mask] = self.norm(xt[mask])
        return out.permute(0, 2, 3, 1), lengths


class Activation(nn.Module):
    """An activation function on its own (frames, maps or vectors)."""

    def __init__(self, activation: str) -> None:
        super().__init__()
        self.activation = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> LayerOutput:
        return self.activation(x), lengths


class GlobalPool2d(nn.Module):
    """Mean or maximum of each channel over frequency and the valid frames: maps -> vectors ``(B, C)``."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> LayerOutput:
        mask = lengths_to_mask(lengths, x.shape[-1])[:, None, None, :]
        if self.mode == "max":
            return x.masked_fill(~mask, float("-inf")).amax(dim=(2, 3)), None
        n = (lengths * x.shape[2]).unsqueeze(1).to(x.dtype)
        return (x * mask).sum(dim=(2, 3)) / n, None


class MapsToFrames(nn.Module):
    """Feature maps ``(B, C, F, T)`` as a frame sequence ``(B, T, C * F)`` (e.g. CNN -> LSTM)."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> LayerOutput:
        x = _as_map(x)
        b, c, f, t = x.shape
        return x.permute(0, 3, 1, 2).reshape(b, t, c * f), lengths


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention over the valid frames.

    Each of ``heads`` heads projects the frames to queries, keys and values of width ``dim``;
    padded frames are masked out as keys. ``fusion="concat"`` concatenates the heads (``heads * dim``
    features), ``"mean"`` averages them (``dim`` features; head fusion as in Xu et al., 2020).
    """

    def __init__(self, in_features: int, dim: int, heads: int = 1, fusion: str = "concat") -> None:
        super().__init__()
        self.qkv = nn.Linear(in_features, 3 * heads * dim)
        self.heads, self.dim, self.fusion = heads, dim, fusion

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> LayerOutput:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, self.dim).permute(2, 0, 3, 1, 4)
        mask = lengths_to_mask(lengths, t)[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, T, D)
        if self.fusion == "mean":
            return out.mean(dim=1), lengths
        return out.transpose(1, 2).reshape(b, t, self.heads * self.dim), lengths


class Parallel(nn.Module):
    """Branches run on the same input, outputs concatenated along channels (maps) or features (frames),
    inception style. Padding is zeroed after every layer of a branch, as in :class:`HeadNetwork`."""

    def __init__(self, branches: list[list[nn.Module]]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(nn.ModuleList(b) for b in branches)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> LayerOutput:
        outs, out_len = [], None
        for branch in self.branches:
            y, y_len = x, lengths
            for layer in branch:
                y, y_len = layer(y, y_len)
                y = _zero_padding(y, y_len)
            if out_len is not None and not torch.equal(out_len, y_len):
                raise ValueError("parallel branches shorten the time axis differently; give them the "
                                 "same strides and time pools")
            outs.append(y)
            out_len = y_len
        return torch.cat(outs, dim=1 if outs[0].dim() == 4 else -1), out_len


class SpecAugment(nn.Module):
    """SpecAugment-style masking (Park et al., 2019) of a padded batch of frames ``(B, T, F)``,
    applied by :class:`HeadNetwork` in training mode only (never at prediction).

    Each item gets ``time_masks`` masks of ``0..time_width`` consecutive valid frames and
    ``freq_masks`` masks of ``0..freq_width`` consecutive features, set to 0 (the training mean, since
    inputs are standardised first). Draws use torch's RNG, which the estimator seeds.
    """

    def __init__(self, time_masks: int = 0, time_width: int = 0, freq_masks: int = 0,
                 freq_width: int = 0) -> None:
        super().__init__()
        self.time_masks, self.time_width = time_masks, time_width
        self.freq_masks, self.freq_width = freq_masks, freq_width

    @staticmethod
    def _bands(n: int, size: torch.Tensor, count: int, width: int, device: torch.device) -> torch.Tensor:
        """(B, n) boolean: ``count`` random bands of up to ``width`` within each item's ``size``."""
        b = len(size)
        hit = torch.zeros(b, n, dtype=torch.bool, device=device)
        steps = torch.arange(n, device=device)
        for _ in range(count):
            w = (torch.rand(b) * (width + 1)).long().to(device)
            w = torch.minimum(w, size)
            start = (torch.rand(b).to(device) * (size - w + 1)).long()
            hit |= (steps >= start[:, None]) & (steps < (start + w)[:, None])
        return hit

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        b, t, f = x.shape
        drop = torch.zeros(b, t, f, dtype=torch.bool, device=x.device)
        if self.time_masks and self.time_width:
            drop |= self._bands(t, lengths, self.time_masks, self.time_width, x.device)[:, :, None]
        if self.freq_masks and self.freq_width:
            full = torch.full((b,), f, dtype=torch.int64, device=x.device)
            drop |= self._bands(f, full, self.freq_masks, self.freq_width, x.device)[:, None, :]
        return x.masked_fill(drop, 0.0)


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
    fixed_len
        Frames every input is cropped / zero-padded to (None: variable length under masks).
    crop
        With ``fixed_len``: ``"start"`` keeps the first ``fixed_len`` frames; ``"random"`` trains
        on a random window of ``fixed_len`` frames of each sequence (drawn anew every batch from
        torch's generator) and, in eval mode, averages the outputs (logits / targets) over windows
        of ``fixed_len`` frames half a window apart that cover the whole sequence (segment-level
        training, utterance-level decision).
    augment
        A module applied to the standardised (cropped) frames in training mode only.
    """

    def __init__(self, layers: list[nn.Module], pool_index: int, in_features: int, body_features: int,
                 n_outputs: int, fixed_len: int | None = None, augment: nn.Module | None = None,
                 crop: str = "start") -> None:
        super().__init__()
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {', '.join(CROPS)}, got {crop!r}")
        self.body = nn.ModuleList(layers)
        self.pool_index = pool_index
        self.fixed_len = fixed_len
        self.crop = crop
        self.augment = augment
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
        if self.fixed_len is not None and self.crop == "random":
            return self._windowed(x, lengths, self.fixed_len)
        if self.fixed_len is not None:  # crop / zero-pad (the training mean) to a fixed length
            x, lengths = fix_length(x, self.fixed_len)
            return self._blocks(x, lengths)
        return self._body(x, lengths)

    def _blocks(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The body on fixed-length items, at most :data:`EVAL_BLOCK` at a time in eval mode (each
        item's output does not depend on the others then)."""
        if self.training or len(x) <= EVAL_BLOCK:
            return self._body(x, lengths)
        return torch.cat([self._body(x[i:i + EVAL_BLOCK], lengths[i:i + EVAL_BLOCK])
                          for i in range(0, len(x), EVAL_BLOCK)])

    def _windowed(self, x: torch.Tensor, lengths: torch.Tensor, size: int) -> torch.Tensor:
        """``crop="random"``: one random window per sequence in training; in eval mode the outputs
        averaged over the windows that cover each sequence."""
        if self.training:
            room = torch.clamp(lengths.cpu() - size, min=0)
            items, starts = torch.arange(len(lengths)), (torch.rand(len(lengths)) * (room + 1)).long()
        else:
            items, starts = window_starts(lengths.cpu(), size)
        out = self._blocks(gather_windows(x, items, starts, size), lengths.new_full((len(items),), size))
        if self.training:
            return out
        on = items.to(out.device)
        total = out.new_zeros(len(lengths), out.shape[1]).index_add_(0, on, out)
        return total / torch.bincount(on, minlength=len(lengths)).to(out.dtype)[:, None]

    def _body(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.augment is not None and self.training:
            x = _zero_padding(self.augment(x, lengths), lengths)
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
