"""Learned weighted sum of encoder layers (``EXTRACTOR@wsum`` / ``EXTRACTOR@wsum(2,3,4)``).

The feature set's matrix holds the chosen layers' columns side by side (as ``@2,3,4`` does for
concatenation). :class:`LayerWeightedSum` is a pipeline step before the model: in ``fit`` it learns
softmax weights over the layers (with a linear softmax-regression head on the weighted sum, trained by
full-batch Adam with balanced class weights, seeded) and ``transform`` returns the weighted sum of the
layers' z-scored blocks. Being a pipeline step, it is fit on the training fold only, and refit in
every inner search fold; the test fold never influences the weights. This is the "weighted layer sum"
of SUPERB-style probing (Yang et al., 2021), with the head used only to learn the weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


def layer_blocks(names: Sequence[str]) -> tuple[list[list[int]], list[int]] | None:
    """Column positions of each encoder layer (aligned by statistic and dimension) and of the other
    columns; ``None`` when the columns hold fewer than two layers.

    Raises
    ------
    ValueError
        When the layers' columns differ (they cannot be summed).
    """
    from featurekit.extractors.ssl.layers import parse_layer_column

    by_layer: dict[tuple[str, int], list[tuple[tuple, int]]] = {}
    passthrough = []
    for i, n in enumerate(names):
        p = parse_layer_column(n)
        if p is None:
            passthrough.append(i)
            continue
        prefix, layer, stat, dim = p
        by_layer.setdefault((prefix, layer), []).append(((prefix, stat or "", dim), i))
    if len(by_layer) < 2:
        return None
    blocks, keys = [], None
    prefixes = {pfx for pfx, _ in by_layer}
    if len(prefixes) > 1:
        raise ValueError(f"a learned layer weighting takes one encoder's layers, got {sorted(prefixes)}")
    for (_, layer), cols in sorted(by_layer.items()):
        cols.sort()
        k = [c[0][1:] for c in cols]
        if keys is not None and k != keys:
            raise ValueError(f"encoder layer {layer} has other columns than the first layer's; cannot sum")
        keys = k
        blocks.append([c[1] for c in cols])
    return blocks, passthrough


class LayerWeightedSum(TransformerMixin, BaseEstimator):
    """Softmax-weighted sum of layer blocks, the weights learned on the training data (see module doc).

    Parameters
    ----------
    blocks
        Column positions of each layer (equal lengths, aligned).
    passthrough
        Other columns, appended unchanged after the weighted sum.
    epochs, lr, weight_decay
        Full-batch Adam steps, learning rate and L2 penalty of the weighting head.
    seed
        Seed of the head's initialisation.
    n_threads
        ``torch`` threads while fitting (restored afterwards); the problem is tiny, so one thread is
        fastest (several threads on a busy machine were 20x slower), and folds run in parallel anyway.
    """

    def __init__(self, blocks: Sequence[Sequence[int]] = (), passthrough: Sequence[int] = (), *,
                 epochs: int = 300, lr: float = 0.05, weight_decay: float = 1e-3, seed: int = 0,
                 n_threads: int | None = 1) -> None:
        self.blocks = blocks
        self.passthrough = passthrough
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.seed = seed
        self.n_threads = n_threads

    def _stack(self, x: np.ndarray) -> np.ndarray:
        return np.stack([x[:, list(b)] for b in self.blocks], axis=1).astype(np.float32)  # (n, L, D)

    def fit(self, x: np.ndarray, y: np.ndarray) -> LayerWeightedSum:
        from featurekit.heads.estimators import _torch_threads

        with _torch_threads(self.n_threads):
            return self._fit(x, y)

    def _fit(self, x: np.ndarray, y: np.ndarray) -> LayerWeightedSum:
        import torch

        x = np.asarray(x)
        if len(self.blocks) < 2:
            raise ValueError("LayerWeightedSum needs at least two layer blocks")
        s = self._stack(x)
        self.mean_ = s.mean(axis=0)
        sd = s.std(axis=0)
        self.scale_ = np.where(sd > 0, sd, 1.0).astype(np.float32)
        z = torch.from_numpy((s - self.mean_) / self.scale_)
        y = np.asarray(y)
        classification = not np.issubdtype(y.dtype, np.floating)
        gen = torch.Generator().manual_seed(int(self.seed))
        n_layers, dim = z.shape[1], z.shape[2]
        logits = torch.zeros(n_layers, requires_grad=True)
        if classification:
            classes, yi = np.unique(y, return_inverse=True)
            counts = np.bincount(yi, minlength=len(classes))
            weight = torch.tensor(len(yi) / (len(classes) * counts), dtype=torch.float32)
            target = torch.from_numpy(yi.astype(np.int64))
            n_out = len(classes)
            loss_fn = torch.nn.CrossEntropyLoss(weight=weight)
        else:
            yz = ((y - y.mean()) / (y.std() or 1.0)).astype(np.float32)
            target = torch.from_numpy(yz).reshape(len(y), -1)
            n_out = target.shape[1]
            loss_fn = torch.nn.MSELoss()
        head = torch.nn.Linear(dim, n_out)
        with torch.no_grad():
            head.weight.copy_(torch.randn(n_out, dim, generator=gen) * 0.01)
            head.bias.zero_()
        opt = torch.optim.Adam([logits, *head.parameters()], lr=self.lr, weight_decay=self.weight_decay)
        for _ in range(int(self.epochs)):
            opt.zero_grad()
            w = torch.softmax(logits, dim=0)
            loss = loss_fn(head((z * w[None, :, None]).sum(dim=1)), target)
            loss.backward()
            opt.step()
        self.weights_ = torch.softmax(logits, dim=0).detach().numpy().astype(np.float64)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        z = (self._stack(x) - self.mean_) / self.scale_
        summed = np.einsum("nld,l->nd", z, self.weights_.astype(np.float32))
        return np.hstack([summed, x[:, list(self.passthrough)]]).astype(np.float32)
