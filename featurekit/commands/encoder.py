"""CLI subcommands for pretrained speech encoder folders (registered on import):
``featurekit encoder convert-whisper-ct2 SRC DST``.

Importing this module must stay cheap (the CLI imports it to build its parser): the work is in
:mod:`featurekit.extractors.ssl.ct2_convert`, imported inside the command function.
"""

from __future__ import annotations

import argparse

from featurekit.commands.base import _args, command


def _encoder_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="encoder_command", required=True, metavar="{convert-whisper-ct2}")
    conv = sub.add_parser(
        "convert-whisper-ct2",
        help="CTranslate2 Whisper (faster-whisper) -> transformers Whisper encoder folder",
        description="convert a CTranslate2 Whisper model folder (model.bin, as faster-whisper uses) into a "
                    "transformers Whisper encoder folder (float32 safetensors, config.json, "
                    "preprocessor_config.json, featurekit_conversion.json) that the hf_encoder extractor "
                    "reads with all its hidden layers; the source is only read")
    conv.add_argument("src", help="CTranslate2 Whisper model folder (holds model.bin)")
    conv.add_argument("dst", help="output folder (created; not inside SRC)")
    conv.add_argument("--overwrite", action="store_true",
                      help="replace DST when it holds an earlier conversion")


@command("encoder", "convert pretrained speech encoder folders (convert-whisper-ct2)")
@_args(_encoder_args)
def cmd_encoder(args: argparse.Namespace) -> int:
    from featurekit.extractors.ssl.ct2_convert import PROVENANCE_FILE, convert_whisper_ct2

    dst = convert_whisper_ct2(args.src, args.dst, overwrite=args.overwrite)
    print(f"wrote {dst} (provenance in {dst / PROVENANCE_FILE}); use it with\n"
          f"  [extractors.hf_encoder]\n  model = \"{dst}\"")
    return 0
