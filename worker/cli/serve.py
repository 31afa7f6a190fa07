"""``tagger serve`` (the streaming worker) and ``tagger lookup`` (read tags back)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys

from worker.cli.running import run_until_signalled
from worker.settings import KafkaSettings, ModelSettings, OpsSettings, RedisSettings, StreamSettings, add_flags, load

__all__ = ["register"]

log = logging.getLogger(__name__)


def register(commands: argparse._SubParsersAction) -> None:
    """Add the streaming commands to the ``tagger`` parser."""
    serve = commands.add_parser("serve", help="run the streaming worker against Kafka and Redis")
    add_flags(serve, KafkaSettings, RedisSettings, ModelSettings, StreamSettings, OpsSettings)
    serve.set_defaults(handler=cmd_serve)

    lookup = commands.add_parser("lookup", help="print the stored tags of documents, one JSON line each")
    lookup.add_argument("ids", nargs="+", metavar="ID")
    add_flags(lookup, RedisSettings)
    lookup.set_defaults(handler=cmd_lookup)

    store = commands.add_parser("store", help="maintain the tag store")
    actions = store.add_subparsers(dest="action", required=True, metavar="ACTION")
    migrate = actions.add_parser("migrate", help="rename keys of the schema before hash tags (tagger:tags:<id>, "
                                                 "tagger:doc:<id>) to tagger:{<id>}:tags and tagger:{<id>}:doc")
    add_flags(migrate, RedisSettings)
    migrate.set_defaults(handler=cmd_store_migrate)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the worker (or ``--processes`` workers) until SIGTERM/SIGINT."""
    settings = load(os.environ, vars(args))
    log.info("settings: %s", settings)
    if settings.ops.processes > 1:
        from worker.stream.processes import ProcessGroup

        group = ProcessGroup(settings, settings.ops.processes)
        run_until_signalled(group)
        return group.exit_code
    from worker.stream.service import Service

    settings.ops.apply_torch_threads()
    run_until_signalled(Service(settings))
    return 0


def cmd_lookup(args: argparse.Namespace) -> int:
    """One JSON line per id: its tags, model version, source and timestamp (null when unknown)."""
    from worker.store.client import TagClient
    from worker.store.connection import connect

    client = TagClient(connect(RedisSettings.from_sources(os.environ, vars(args)), wait=False))
    for doc_id, found in client.lookup(args.ids).items():
        body = None if found is None else dataclasses.asdict(found)
        sys.stdout.write(json.dumps({"id": doc_id, "result": body}) + "\n")
    return 0


def cmd_store_migrate(args: argparse.Namespace) -> int:
    """Rename old-schema keys in place and say how many."""
    from worker.store.connection import connect
    from worker.store.migrate import migrate

    done = migrate(connect(RedisSettings.from_sources(os.environ, vars(args)), wait=False))
    sys.stdout.write(f"renamed {done.renamed} keys; deleted {done.superseded} old keys whose new key held a later "
                     "result\n")
    return 0
