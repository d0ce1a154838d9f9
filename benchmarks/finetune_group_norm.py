"""Why a randomly initialised base-style wav2vec2 (group norm, no attention mask) learns the tests' tone
task or not: prints, never asserts.

For model seeds ``--seeds`` of the tiny models of ``tests/test_finetune.py`` (16 channels, hop 160):

* the training accuracy of a linear probe (logistic regression) on the time-averaged output of the frozen
  convolutional front end, with ``feat_extract_norm = "group"`` (one group per channel, over time: every
  channel scaled to unit variance over the utterance) and ``"layer"`` (over channels, per frame);
* the held-out accuracy of ``FineTuneClassifier`` (the tests' FAST settings) on the group-norm model with
  its front end frozen and trainable.

    OMP_NUM_THREADS=1 python benchmarks/finetune_group_norm.py [--seeds 0 1 2 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # benchmarks/ssl.py shadows ssl
sys.path.append(str(HERE))
from _common import REPO  # noqa: E402

sys.path.append(str(REPO / "tests"))


def wav2vec2(root: Path, seed: int, norm: str) -> Path:
    import torch
    import transformers as tf
    from test_finetune import CONV, HIDDEN

    torch.manual_seed(seed)
    path = root / f"{norm}-{seed}"
    cfg = tf.Wav2Vec2Config(hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                            feat_extract_norm=norm, **CONV)
    tf.Wav2Vec2Model(cfg).save_pretrained(path)
    tf.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False).save_pretrained(path)
    return path


def probe(path: Path, train) -> float:
    """Training accuracy of a linear probe on the time-averaged frozen front-end output."""
    import torch
    import transformers as tf
    from sklearn.linear_model import LogisticRegression

    model = tf.Wav2Vec2Model.from_pretrained(path).eval()

    def pooled(xs):
        out = []
        with torch.no_grad():
            for x in xs:
                x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
                h = model.feature_extractor(torch.from_numpy(x.astype(np.float32))[None])
                out.append(h[0].mean(dim=1).numpy())
        return np.array(out)

    x = pooled(train[0])
    return float(LogisticRegression(max_iter=2000).fit(x, train[1]).score(x, train[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    args = ap.parse_args()
    import torch
    from test_finetune import FAST, TEST, TRAIN

    from featurekit.heads.finetune import FineTuneClassifier

    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp())
    print("seed  probe(group)  probe(layer)  held-out frozen  held-out trainable")
    for seed in args.seeds:
        group, layer = wav2vec2(root, seed, "group"), wav2vec2(root, seed, "layer")
        accs = []
        for frozen in (True, False):
            clf = FineTuneClassifier(str(group), validation_fraction=0.25, random_state=0,
                                     **{**FAST, "freeze_feature_encoder": frozen})
            clf.fit(TRAIN[0], TRAIN[1], groups=TRAIN[2])
            accs.append(float(np.mean(clf.predict(TEST[0]) == TEST[1])))
        print(f"{seed:4d}  {probe(group, TRAIN):12.3f}  {probe(layer, TRAIN):12.3f}  {accs[0]:15.3f}  "
              f"{accs[1]:18.3f}", flush=True)


if __name__ == "__main__":
    main()
