"""Quality benchmark: Rank-AE beside peer XML methods on the shared datasets, in one run.

    python -m benchmarks.quality [--datasets bibtex reuters ...] [--no-peers] [--quick] [--json FILE]
                                 [--encoder minilm [--encoder-epochs N]] [--splits N] [--seeds N]

Every method sees the same split and, except fastText (raw text), the same tf-idf features: the
featurizer Rank-AE fits on the training documents. With ``--encoder`` a second Rank-AE row reads a
pretrained sentence encoder's vectors too (``tagger train --encoder``, fine-tuned first with
``--encoder-epochs``); the peers keep the tf-idf features they are
run with as open tools, and one more row, OvR logistic regression on the tf-idf features and the same
vectors side by side, shows what a linear model makes of them. Rank-AE's hyperparameters per dataset are in
``SETTINGS``; they were chosen on validation splits of the training data only (docs/results.md).
Prints one markdown table per dataset: P@1/3/5, nDCG@1/3/5, training seconds and predict docs/s. The sets
without an official split are split 80/20 by a seeded hash; ``--splits N`` runs N such splits and adds a
summary of P@1 over them, with Rank-AE's split-by-split difference from the best peer, since a test set of a
few hundred documents moves P@1 by a point or more between splits. ``--seeds N`` runs every split N times, the
default trained with seeds 0, 1, ... (and the peers again: omikuji takes no seed), and summarises over all those
runs, since one training seed moves a set's P@1 by up to 3 points (docs/results.md). The JSON rows carry ``split``
and ``seed``.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import peers
from model.config import ModelConfig, TrainConfig, preset
from model.data import Corpus, hash_split, label_matrix, read_corpus
from model.encoder import ENCODERS, load_encoder
from model.metrics import evaluate
from model.noise import add_label_noise
from model.tagger import Tagger
from model.trainer import train

log = logging.getLogger("benchmarks.quality")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class Dataset:
    """A benchmark dataset: its files, and how its (train, test) split is made.

    ``files`` is (train, test) for a set with an official split, or one file split 80/20 by a seeded hash of
    each document's ``key`` (its id, or its row number for sets without ids).
    """

    name: str
    files: tuple[str, ...]
    official: str = ""  # the official split's name; empty for hashed sets
    key: str = "id"

    @property
    def resplittable(self) -> bool:
        """Whether other splits exist (hashed sets); an official split is the only one."""
        return len(self.files) == 1

    def load(self, seed: int = 0) -> tuple[Corpus, Corpus]:
        """(train, test): the official split, or the 80/20 hash split with this ``seed``."""
        if not self.resplittable:
            return read_corpus(DATA / self.files[0]), read_corpus(DATA / self.files[1])
        return hash_split(read_corpus(DATA / self.files[0]), 0.2, seed=seed)

    def split(self, seed: int = 0) -> str:
        """How the split with this ``seed`` was made, for tables."""
        return self.official or f"80/20 by md5('{seed}:'+{self.key})"


DATASETS = {
    d.name: d for d in (
        Dataset("bibtex", ("bibtex/train.txt", "bibtex/test.txt"), "official MULAN split"),
        Dataset("delicious", ("delicious/train.txt", "delicious/test.txt"), "official MULAN split"),
        Dataset("reuters", ("reuters21578/apte90_train.jsonl", "reuters21578/apte90_test.jsonl"),
                "ModApte, 90 topics"),
        Dataset("goemotions", ("goemotions/train.tsv", "goemotions/test.tsv"), "official test"),
        Dataset("biology", ("stackexchange/biology.csv",)),
        Dataset("cooking", ("stackexchange/cooking.csv",)),
        Dataset("rcv1v2", ("rcv1v2/rcv1sub1.xmlrepo.txt",), key="row"),
        Dataset("mediamill", ("mediamill_small/train.txt",), key="row"),
    )
}
# What `python -m benchmarks.quality` runs by default: every shared set.
QUALITY_DEFAULT = ("bibtex", "delicious", "reuters", "goemotions", "biology", "cooking", "rcv1v2", "mediamill")


def default_configs(**overrides: Any) -> tuple[ModelConfig, TrainConfig]:
    """Rank-AE exactly as `tagger train` builds it with no flags (the default preset), with overrides."""
    return preset("default", **overrides)


def run_rank_ae(train_corpus: Corpus, test: Corpus, quick: bool, encoder: str = "",
                encoder_epochs: int = 0, seed: int = 0) -> dict[str, Any]:
    """Train the default model with training seed ``seed`` (with ``encoder``, if named, fine-tuned first for up
    to ``encoder_epochs``); metrics, training seconds and predict docs/s."""
    overrides: dict[str, Any] = {"seed": seed, **({"epochs": 2, "patience": 2} if quick else {})}
    if encoder:
        overrides |= {"encoder": encoder, "encoder_epochs": encoder_epochs}
    model_config, train_config = default_configs(**overrides)
    method = "Rank-AE" + (f" + {encoder}" if encoder else "") + (f" tuned ({encoder_epochs} epochs)"
                                                                  if encoder and encoder_epochs else "")
    return run_model(method, train_corpus, test, model_config.to_dict(), train_config.to_dict())


def run_model(method: str, train_corpus: Corpus, test: Corpus, model_kw: dict[str, Any],
              train_kw: dict[str, Any]) -> dict[str, Any]:
    """Train one Rank-AE variant and score it on ``test``: a result row (metrics, seconds, settings,
    the validation epoch chosen, per-epoch ``history``) with the trained ``tagger``."""
    started = time.perf_counter()
    trained = train(train_corpus, ModelConfig(**model_kw), TrainConfig(**train_kw))
    seconds = time.perf_counter() - started
    tagger = Tagger.from_trained(trained)
    started = time.perf_counter()
    ids, _ = tagger.topk(tagger.features(test.inputs), 5)
    rate = len(test) / (time.perf_counter() - started)
    scores = evaluate(ids, label_matrix(test.labels, trained.label_names))
    best = max(trained.history, key=lambda entry: entry["valid_p@1"])
    chosen = {"epoch": int(best["epoch"]), "valid_p@1": best["valid_p@1"], "epochs_run": len(trained.history),
              "ae_share": trained.model.config.ae_share,
              "neighbours": None if trained.neighbours is None else
              {"k": trained.neighbours.k, "power": trained.neighbours.power, "share": trained.neighbours.share,
               "votes": trained.neighbours.votes_weight, "centroids": trained.neighbours.centroids},
              # with an encoder: the network's share beside a layer over its vector, when that form was kept
              "vector_head": None if trained.head is None else {"share": trained.head.share},
              "partner_weight": None if trained.partner is None else trained.partner.weight,
              "served_valid_p@1": trained.metrics["p@1"]}  # with neighbours and layer, as accepted
    return {"method": method, **scores, "train_seconds": seconds, "predict_docs_per_s": rate,
            "settings": {"model": model_kw, "train": train_kw}, "chosen": chosen, "history": trained.history,
            "tagger": tagger}


def run_peers(train_corpus: Corpus, test: Corpus, tagger: Tagger, workdir: Path,
              names: Sequence[str] | None = None, noise: str = "", seed: int = 0) -> list[dict[str, Any]]:
    """Peers (every available one, or ``names``) on the same tf-idf features (fastText on raw text).

    ``noise`` (``"missing:0.4"``, ``"flip:0.2"``) corrupts their training labels, never the test labels.
    """
    wanted = set(names) if names is not None else {*peers.FEATURE_PEERS, peers.FASTTEXT}
    labels = tagger.label_names
    words = tagger.featurizer.without_encoder()
    x_train, x_test = words.transform(train_corpus.inputs), words.transform(test.inputs)
    y_train = add_label_noise(label_matrix(train_corpus.labels, labels), noise, seed)
    y_test = label_matrix(test.labels, labels)
    results = []
    for peer in (p for p in peers.FEATURE_PEERS if p in wanted):
        results.append(_peer_row(peer, functools.partial(peers.run_feature_peer, peer, x_train, y_train, x_test, 5,
                                                         seed, workdir / peer), y_test))
    if train_corpus.texts is not None and test.texts is not None and peers.FASTTEXT in wanted:
        label_ids = [list(row) for row in np.split(y_train.indices, y_train.indptr[1:-1])]
        results.append(_peer_row(peers.FASTTEXT, functools.partial(
            peers.run_fasttext, train_corpus.texts, label_ids, test.texts, len(labels), 5, seed, workdir / "fasttext"),
            y_test))
    return [r for r in results if r]


def _linear_with_encoder(train_corpus: Corpus, test: Corpus, tagger: Tagger) -> dict[str, Any]:
    """OvR logistic regression on Rank-AE's own input rows: the tf-idf features and the encoder's vectors.

    The rows come from Rank-AE's featurizer (the vectors its run encoded, when the encoder remembers them);
    this row's train s and predict docs/s are liblinear's alone, with no encoding in them."""
    labels = tagger.label_names
    y_train, y_test = label_matrix(train_corpus.labels, labels), label_matrix(test.labels, labels)
    x_train, x_test = tagger.features(train_corpus.inputs), tagger.features(test.inputs)
    name = f"ovr-logistic (tf-idf + {tagger.featurizer.encoder}{' tuned' if tagger.featurizer.tuned else ''})"
    row = _peer_row(name, lambda: peers.run_feature_peer("ovr-logistic", x_train, y_train, x_test, 5, 0), y_test)
    # Its predict docs/s leaves the encoding out, so a frontier plot must not place it beside end-to-end rates.
    return {**row, "method": name, "encoding_excluded": True} if row else row


def _peer_row(name: str, run: Callable[[], peers.PeerResult], y_test: Any) -> dict[str, Any]:
    try:
        result = run()
    except peers.PeerUnavailable as err:
        log.warning("skipping a peer: %s", err)
        return {}
    except Exception as err:  # a peer library failing on one dataset must not end the whole run
        log.warning("peer=%s failed: %s", name, err)
        return {"method": name, "error": f"{type(err).__name__}: {err}"}
    return {"method": result.name, **evaluate(result.topk, y_test), "train_seconds": result.train_seconds,
            "predict_docs_per_s": result.predict_docs_per_s}


def markdown(name: str, split: str, n_train: int, n_test: int, rows: list[dict[str, Any]]) -> str:
    """One dataset's results as a markdown table (metrics in %), then Rank-AE's settings."""
    head = (f"### {name} ({split}; {n_train} train / {n_test} test)\n\n"
            "| method | P@1 | P@3 | P@5 | nDCG@1 | nDCG@3 | nDCG@5 | train s | predict docs/s |\n"
            "|---|---|---|---|---|---|---|---|---|\n")
    lines = [f"| {r['method']} | " + " | ".join(f"{r[m] * 100:.2f}" for m in
             ("p@1", "p@3", "p@5", "ndcg@1", "ndcg@3", "ndcg@5"))
             + f" | {r['train_seconds']:.1f} | {r['predict_docs_per_s']:,.0f} |" for r in rows if "error" not in r]
    lines += [f"| {r['method']} | failed: {r['error'][:120]} |||||||| " for r in rows if "error" in r]
    notes = [f"\n{r['method']}: best validation epoch {r['chosen']['epoch']} of {r['chosen']['epochs_run']} run "
             f"(validation P@1 {r['chosen']['valid_p@1'] * 100:.2f}), decoder share {r['chosen']['ae_share']:.1f}, "
             + _neighbour_note(r["chosen"].get("neighbours")) + _layer_note(r["chosen"]) for r in rows if "chosen" in r]
    return head + "\n".join(lines) + "\n" + "".join(notes) + "\n"


def _neighbour_note(chosen: dict[str, float] | None) -> str:
    if not chosen:
        return "no neighbour scores"
    return (f"neighbour scores k={chosen['k']:.0f}, power {chosen['power']:g}; network {chosen['share']:.1f}, "
            f"votes {chosen['votes']:.1f}, centroids {chosen['centroids']:.1f}")


def _layer_note(chosen: dict[str, Any]) -> str:
    if not chosen.get("vector_head"):
        return ""
    both = (f", and the network reading the encoder's vector beside it at weight {chosen['partner_weight']:.1f}"
            if chosen.get("partner_weight") else "")
    return (f"; beside a layer over the encoder's vector, network share {chosen['vector_head']['share']:.1f}{both} "
            f"(served validation P@1 {100 * chosen['served_valid_p@1']:.2f})")


def first_docs(corpus: Corpus, n: int, seed: int) -> Corpus:
    """``n`` documents of ``corpus`` drawn by a seeded permutation, in corpus order (all of it when it has no more)."""
    if n >= len(corpus):
        return corpus
    return corpus.subset(np.sort(np.random.default_rng(seed).permutation(len(corpus))[:n]))


def benchmark_parser(doc: str, datasets: Sequence[str]) -> argparse.ArgumentParser:
    """The options every dataset benchmark shares: --datasets (default ``datasets``), --quick, --json."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=list(datasets))
    parser.add_argument("--quick", action="store_true", help="2 epochs: a smoke run, not a measurement")
    parser.add_argument("--json", type=Path, help="also write all rows as JSON here")
    return parser


def start_benchmark() -> None:
    """Log to stderr; stop with a message when the shared datasets are absent."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not DATA.exists():
        raise SystemExit(f"{DATA} not found: the benchmark reads the shared datasets from there")


def split_summary(name: str, runs: Sequence[Sequence[dict[str, Any]]], unit: str = "split") -> str:
    """P@1 of each method over several runs of one dataset (mean, sample standard deviation, range), and each
    Rank-AE row's paired difference from the peer with the best mean: a markdown table. ``unit`` is what the text
    calls one run: "split", or "run" where runs differ by training seed too.

    runs: one list of result rows per run, as ``main`` makes them (Rank-AE rows carry ``chosen``).
    """
    by_method: dict[str, list[float]] = {}
    for rows in runs:
        for row in rows:
            if "error" not in row:
                by_method.setdefault(row["method"], []).append(row["p@1"] * 100)
    complete = {method: np.array(p1) for method, p1 in by_method.items() if len(p1) == len(runs)}
    ours = [row["method"] for row in runs[0] if "chosen" in row and row["method"] in complete]
    peer_means = {method: p1.mean() for method, p1 in complete.items() if method not in ours}
    lines = [f"#### {name}: test P@1 over {len(runs)} {unit}s\n",
             "| method | mean | sd | min | max |", "|---|---|---|---|---|"]
    lines += [f"| {method} | {p1.mean():.2f} | {_sd(p1):.2f} | {p1.min():.2f} | {p1.max():.2f} |"
              for method, p1 in complete.items()]
    if peer_means:
        best = max(peer_means, key=lambda method: peer_means[method])
        for method in ours:
            diff = complete[method] - complete[best]
            lines.append(f"\n{method} − {best} (the best peer on average), {unit} by {unit}: mean {diff.mean():+.2f}, "
                         f"sd {_sd(diff):.2f}, range {diff.min():+.2f} to {diff.max():+.2f}; level or ahead on "
                         f"{int((diff >= 0).sum())} of {len(diff)} {unit}s")
    return "\n".join(lines) + "\n"


def _sd(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def _split_rows(train_corpus: Corpus, test: Corpus, args: argparse.Namespace, workdir: Path,
                seed: int = 0) -> list[dict[str, Any]]:
    """Every row of one run: the default Rank-AE with training seed ``seed`` (and its encoder variant), then the
    peers."""
    ours = run_rank_ae(train_corpus, test, args.quick, seed=seed)
    tagger = ours.pop("tagger")
    ours.pop("history")
    rows = [ours]
    if args.encoder:
        rows.append(run_rank_ae(train_corpus, test, args.quick, args.encoder, args.encoder_epochs, seed))
        encoded = rows[-1].pop("tagger")
        rows[-1].pop("history")
    rows += [] if args.no_peers else run_peers(train_corpus, test, tagger, workdir)
    if args.encoder and not args.no_peers:
        rows.append(_linear_with_encoder(train_corpus, test, encoded))
    return rows


def main() -> None:
    """Run the benchmark on the chosen datasets and print markdown tables."""
    parser = benchmark_parser(__doc__, QUALITY_DEFAULT)
    parser.add_argument("--no-peers", action="store_true", help="Rank-AE only")
    parser.add_argument("--workdir", type=Path, default=Path("runs/quality"))
    parser.add_argument("--encoder", choices=sorted(ENCODERS), help="Rank-AE with this text encoder (text sets)")
    parser.add_argument("--encoder-epochs", type=int, default=0, help="fine-tune that encoder on the training "
                        "labels for up to this many epochs first (0: as shipped)")
    parser.add_argument("--splits", type=int, default=1, help="hashed sets: run this many 80/20 splits (seeds 0, "
                        "1, ...) and summarise P@1 over them; sets with an official split run it once")
    parser.add_argument("--seeds", type=int, default=1, help="run each split this many times, the default trained "
                        "with seeds 0, 1, ... (the peers run again each time), and summarise P@1 over every run")
    parser.add_argument("--train-docs", type=int, nargs="+", default=[], metavar="N",
                        help="train on a seeded sample of N of each training set's documents instead (one run per "
                             "N; the test set is unchanged): how the default does with little data")
    args = parser.parse_args()
    if any(n < 2 for n in args.train_docs):
        parser.error(f"--train-docs needs at least 2 documents, got {args.train_docs}")
    if args.splits < 1 or args.seeds < 1:
        parser.error(f"--splits and --seeds must be at least 1, got {args.splits} and {args.seeds}")
    if args.encoder_epochs and not args.encoder:
        parser.error("--encoder-epochs fine-tunes the encoder --encoder names; name one")
    start_benchmark()
    if args.encoder:  # the OvR row reads the vectors Rank-AE's run made: encode each document once
        load_encoder(args.encoder).remember(200_000)
    everything = {}
    for name in args.datasets:
        dataset = DATASETS[name]
        runs = []
        for split in range(args.splits if dataset.resplittable else 1):
            train_corpus, test = dataset.load(split)
            for n in args.train_docs or [len(train_corpus)]:
                sample = first_docs(train_corpus, n, split)
                for seed in range(args.seeds):
                    rows = _split_rows(sample, test, args, args.workdir / name / f"split-{split}", seed)
                    where = dataset.split(split) + (f", training seed {seed}" if args.seeds > 1 else "")
                    print(markdown(name, where, len(sample), len(test), rows), flush=True)
                    runs.append([{**row, "split": split, "seed": seed, "train_docs": len(sample)} for row in rows])
        if len(runs) > 1 and len(args.train_docs) <= 1:  # a summary over splits and seeds, not over sample sizes
            print(split_summary(name, runs, "run" if args.seeds > 1 else "split"), flush=True)
        everything[name] = [row for rows in runs for row in rows]
    if args.json:
        args.json.write_text(json.dumps(everything, indent=1))


if __name__ == "__main__":
    main()
