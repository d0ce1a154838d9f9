"""Fine-tuning benchmark: seconds per epoch of ``finetune`` on the CPU (``--threads``, default 2) and,
when a GPU is available, on it in fp32 and with mixed precision. Prints, never asserts.

The encoder is ``--model DIR`` (a local transformers folder), or a randomly initialised one that the
script builds in a temporary folder: ``--size tiny`` (hidden 32, 2 layers, as the tests) or ``--size
base`` (the wav2vec2-base architecture: 95 M parameters, 12 layers of 768; random weights cost the
same time as trained ones). Audio: ``--n`` Emo-DB utterances (``--root``; cropped to
``--max-duration`` s in training, as a spec would do) or, without Emo-DB, synthetic tones of 1-3 s.

    python benchmarks/finetune.py [--size tiny|base] [--model DIR] [--n 64] [--epochs 2] [--threads 2]
        [--max-duration 4] [--batch-size 8] [--root ../shared/data/emodb]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # benchmarks/ssl.py shadows ssl
sys.path.append(str(HERE))
from _common import REPO  # noqa: E402

SR = 16000


def build_encoder(root: Path, size: str) -> Path:
    import torch
    import transformers as tf

    torch.manual_seed(0)
    path = root / f"wav2vec2-{size}"
    if size == "tiny":
        cfg = tf.Wav2Vec2Config(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            conv_dim=(16, 16, 16),
            conv_stride=(8, 5, 4),
            conv_kernel=(16, 10, 4),
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=2,
        )
    else:  # the wav2vec2-base architecture (transformers' defaults)
        cfg = tf.Wav2Vec2Config()
    tf.Wav2Vec2Model(cfg).save_pretrained(path)
    tf.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False).save_pretrained(path)
    return path


def audio(n: int, root: str | None) -> tuple[list, np.ndarray, np.ndarray, str]:
    emodb = Path(root) if root else REPO.parent / "shared" / "data" / "emodb"
    if (emodb / "wav").is_dir():
        from featurekit.corpora import load_corpus

        m = load_corpus("emodb", emodb).iloc[:n]
        return (
            m["path"].tolist(),
            m["label"].to_numpy(),
            m["speaker"].astype(str).to_numpy(),
            f"Emo-DB ({n} files)",
        )
    rng = np.random.default_rng(0)
    xs = []
    for i in range(n):
        t = np.arange(int(rng.uniform(1, 3) * SR)) / SR
        xs.append((0.5 * np.sin(2 * np.pi * (300 if i % 2 else 2000) * t)).astype(np.float32))
    labels = np.array(["low", "high"] * (n // 2) + ["low"] * (n % 2))
    return xs, labels, np.array([f"s{i % 4}" for i in range(n)]), f"synthetic tones ({n})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=("tiny", "base"), default="tiny")
    ap.add_argument("--model", help="an encoder folder instead of a random wav2vec2")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-duration", type=float, default=4.0)
    ap.add_argument("--root")
    args = ap.parse_args()

    import torch

    from featurekit.heads.finetune import FineTuneClassifier

    xs, y, groups, what = audio(args.n, args.root)
    runs = [("cpu", False)]
    if torch.cuda.is_available():
        runs += [("cuda", False), ("cuda", True)]
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(build_encoder(Path(tmp), args.size))
        print(
            f"finetune benchmark: encoder {args.model or 'random wav2vec2-' + args.size}, {what}, "
            f"max_duration {args.max_duration} s, batch {args.batch_size}, {args.epochs} epoch(s), "
            f"torch {torch.__version__}"
        )
        for device, amp in runs:
            clf = FineTuneClassifier(
                model,
                max_epochs=args.epochs,
                patience=None,
                validation_fraction=None,
                batch_size=args.batch_size,
                max_duration=args.max_duration,
                random_state=0,
                device=device,
                mixed_precision=amp,
                n_threads=args.threads if device == "cpu" else None,
            )
            t0 = time.perf_counter()
            clf.fit(xs, y, groups=groups)
            fit_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            clf.predict(xs)
            pred_s = time.perf_counter() - t0
            per_epoch = [round(h["seconds"], 2) for h in clf.history_]
            label = (
                f"{device}{' (' + str(args.threads) + ' threads)' if device == 'cpu' else ''}"
                f"{' mixed precision' if amp else ' fp32'}"
            )
            print(
                f"  {label:28s} s/epoch {per_epoch}  fit {fit_s:.1f} s  predict {pred_s:.1f} s "
                f"({args.n} files)  trainable parameters {clf.n_trainable_:,}"
            )


if __name__ == "__main__":
    main()
