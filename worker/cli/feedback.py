"""``tagger correct``, ``tagger learn`` and ``tagger model list | publish | rollback``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from model.errors import ConfigError
from worker.cli.running import run_until_signalled
from worker.learn.labels import LabelBook, well_formed
from worker.learn.registry import Registry
from worker.settings import (
    CorrectionSettings,
    LearnerSettings,
    ModelSettings,
    OpsSettings,
    RedisSettings,
    Settings,
    add_flags,
    load,
)

__all__ = ["register"]

log = logging.getLogger(__name__)


def register(commands: argparse._SubParsersAction) -> None:
    """Add the feedback and model-registry commands to the ``tagger`` parser."""
    correct = commands.add_parser("correct", help="submit a correction of a document's tags")
    correct.add_argument("id", help="document id")
    correct.add_argument("--add", default="", help="comma-separated labels to add")
    correct.add_argument("--remove", default="", help="comma-separated labels to remove")
    correct.add_argument("--user", default=os.environ.get("USER", "cli"), help="who corrects (rate-limited per user)")
    add_flags(correct, RedisSettings, ModelSettings, CorrectionSettings)
    correct.set_defaults(handler=cmd_correct)

    learn = commands.add_parser("learn", help="consume corrections and run guarded fine-tuning rounds")
    add_flags(learn, RedisSettings, ModelSettings, CorrectionSettings, LearnerSettings, OpsSettings)
    learn.set_defaults(handler=cmd_learn)

    labels = commands.add_parser("labels", help="labels new to the model: list proposals, or admit some now")
    label_verbs = labels.add_subparsers(dest="verb", required=True, metavar="VERB")
    proposals = label_verbs.add_parser("list", help="new labels proposed in corrections, with their users")
    allow = label_verbs.add_parser("add", help="admit labels now (allow-list), whoever proposed them")
    allow.add_argument("names", nargs="+", metavar="NAME")
    for verb in (proposals, allow):
        add_flags(verb, RedisSettings, ModelSettings, CorrectionSettings)
    proposals.set_defaults(handler=cmd_labels_list)
    allow.set_defaults(handler=cmd_labels_add)

    model = commands.add_parser("model", help="list, publish or roll back model versions in a registry")
    verbs = model.add_subparsers(dest="verb", required=True, metavar="VERB")
    listing = verbs.add_parser("list", help="stored versions, the live one marked")
    publish = verbs.add_parser("publish", help="add a checkpoint as a new version and make it live")
    publish.add_argument("checkpoint", type=Path)
    publish.add_argument("--force", action="store_true",
                         help="publish even if its label set or featurizer differs from the live version's")
    rollback = verbs.add_parser("rollback", help="make an earlier version live again")
    rollback.add_argument("version", nargs="?", help="default: the version live before the current one")
    for verb in (listing, publish, rollback):
        verb.add_argument("--registry", type=Path, help="registry root (default: TAGGER_MODEL_DIR)")
    listing.set_defaults(handler=cmd_model_list)
    publish.set_defaults(handler=cmd_model_publish)
    rollback.set_defaults(handler=cmd_model_rollback)


def _settings(args: argparse.Namespace) -> Settings:
    return load(os.environ, vars(args))


def _labels(items: str) -> list[str]:
    return [item.strip() for item in items.split(",") if item.strip()]


def cmd_correct(args: argparse.Namespace) -> int:
    """Validate and append one correction to the corrections stream."""
    from worker.learn.corrections import correction_client

    entry = correction_client(_settings(args)).submit(args.id, _labels(args.add), _labels(args.remove), args.user)
    print(json.dumps({"id": args.id, "entry": entry}))
    return 0


def _label_book(settings: Settings) -> LabelBook:
    from worker.store.connection import connect

    return LabelBook.from_settings(connect(settings.redis, wait=False), settings.corrections)


def cmd_labels_list(args: argparse.Namespace) -> int:
    """One line per label new to the live model: name, distinct users, and whether it is admitted."""
    from model.checkpoint import read_meta
    from worker.learn.registry import resolve

    settings = _settings(args)
    known = set(read_meta(resolve(settings.model.model_dir)).labels)
    book = _label_book(settings)
    print(f"live model: {len(known)} labels; a new label is admitted by {settings.corrections.label_min_users} "
          "distinct users or by `tagger labels add`")
    for p in book.proposals(known):
        state = "allowed" if p.allowed else "admitted" if p.admitted else "proposed"
        print(f"{p.name}\t{p.users} user(s)\t{state}")
    return 0


def cmd_labels_add(args: argparse.Namespace) -> int:
    """Admit new labels now (the allow-list); the learner's next round adds them to the model."""

    bad = [name for name in args.names if not well_formed(name)]
    if bad:
        raise ConfigError(f"not well-formed label name(s) {bad[:5]}: 1-100 printable characters, no surrounding "
                          "spaces")
    _label_book(_settings(args)).allow(args.names)
    print(f"allowed {len(args.names)} label(s); the learner's next round adds them to the model")
    return 0


def cmd_learn(args: argparse.Namespace) -> int:
    """Run the learner until SIGTERM/SIGINT."""
    from worker.learn.learner import Learner

    settings = _settings(args)
    settings.ops.apply_torch_threads()
    run_until_signalled(Learner(settings))
    return 0


def _registry(args: argparse.Namespace) -> Registry:
    return Registry(args.registry or ModelSettings.from_sources(os.environ).model_dir)


def cmd_model_list(args: argparse.Namespace) -> int:
    """One line per version: live marker, version, created, validation P@1, label count, and the new labels'
    boost where it has new labels."""
    for info in _registry(args).versions():
        p1 = "-" if info.valid_p1 is None else f"{info.valid_p1 * 100:.2f}"
        boost = f"  new-label boost {info.boost.weight:g} on {len(info.boost.labels)}" if info.boost.labels else ""
        sys.stdout.write(f"{'*' if info.current else ' '} {info.version}  {info.created}  p@1={p1}  "
                         f"labels={info.labels}{boost}\n")
    return 0


def cmd_model_publish(args: argparse.Namespace) -> int:
    """Copy a checkpoint into the registry and make it live (see ``Registry.publish_checked``)."""
    version = _registry(args).publish_checked(args.checkpoint, args.force)
    print(f"published {version}; it is live")
    return 0


def cmd_model_rollback(args: argparse.Namespace) -> int:
    """Point the registry's CURRENT at an earlier version; running workers swap to it."""
    version = _registry(args).rollback(args.version)
    print(f"rolled back; live version is now {version}")
    return 0
