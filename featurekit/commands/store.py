"""CLI subcommands of the feature store (registered on import): ``featurekit store ls | info | gc``.

Importing this module must stay cheap (the CLI imports it to build its parser): the work is in
:mod:`featurekit.store_maintenance`, imported inside the command function.
"""

from __future__ import annotations

import argparse
import json

from featurekit.commands.base import UsageError, _args, command, store_argument


def _store_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="store_command", required=True, metavar="{ls,info,gc}")
    ls = sub.add_parser("ls", help="one line per table: key fields, rows, columns, size, status",
                        description="list the store's tables: corpus/extractor/kind-hash, extractor version, "
                                    "utterances, rows (frames for LLD tables), feature columns, parts, size "
                                    "and whether a current extractor version can use the table")
    ls.add_argument("--corpus", default=None, help="only this corpus' tables")
    ls.add_argument("--json", action="store_true", help="one JSON object per line (every key field)")
    info = sub.add_parser("info", help="everything about one table (its key, columns, sizes)",
                          description="print one table's key (extractor, version, parameters, library "
                                      "versions, audio options), its rows, columns and size")
    info.add_argument("table", help="the table's folder, or its path relative to the store (as `ls` prints)")
    gc = sub.add_parser("gc", help="remove tables no current extractor version can use, and orphaned files",
                        description="remove the tables whose key no extractor of this installation can ask "
                                    "for (extractor gone, other version, other library versions, ...) and "
                                    "files left by killed writers; tables of extractors that cannot run here "
                                    "(optional dependencies missing) are kept; prints what it removes")
    gc.add_argument("--dry-run", action="store_true", help="print what would be removed; remove nothing")
    for q in (ls, info, gc):
        store_argument(q)


@command("store", "inspect the feature store (ls, info) and remove what no current version can use (gc)")
@_args(_store_args)
def cmd_store(args: argparse.Namespace) -> int:
    from featurekit.commands.base import resolve_store
    from featurekit.store import FeatureStore
    from featurekit.store_maintenance import collect_garbage, describe, find_table, human_size, info_text

    root = resolve_store(args)
    store = FeatureStore(root)
    if not store.root.is_dir():
        raise UsageError(f"{root}: no feature store there (not a directory)")
    if args.store_command == "ls":
        infos = [describe(store, t) for t in store.tables(args.corpus)]
        if args.json:
            for i in infos:
                print(json.dumps(i.as_dict(), sort_keys=True))
            return 0
        header = f"{'table':44s} {'version':>7s} {'utts':>6s} {'rows':>8s} {'cols':>6s} {'parts':>5s} " \
                 f"{'size':>10s}  status"
        print(header)
        for i in infos:
            print(f"{i.name:44s} {str(i.key.extractor.get('version')):>7s} {i.utterances:6d} {i.rows:8d} "
                  f"{i.columns:6d} {i.parts:5d} {human_size(i.size):>10s}  {i.status}")
        print(f"{len(infos)} tables, {human_size(sum(i.size for i in infos))}")
        return 0
    if args.store_command == "info":
        print(info_text(describe(store, find_table(store, args.table))))
        return 0
    done = collect_garbage(store, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for info, why in done.tables:
        print(f"{verb} table {info.name} ({human_size(info.size)}): {why}")
    for path in done.orphans:
        print(f"{verb} orphan {path.relative_to(store.root).as_posix()}")
    print(f"{verb} {len(done.tables)} tables ({human_size(done.freed)}) and {len(done.orphans)} "
          f"orphaned files")
    return 0
