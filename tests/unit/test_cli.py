"""The `tagger` command end to end on a tiny generated set, in-process."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from worker.cli import main
from worker.cli.running import epoch_progress

TINY = ["--embed-dim", "64", "--latent-dim", "32", "--label-hidden", "64", "--epochs", "10", "--lr", "0.01",
        "--min-df", "1", "--dropout", "0.1", "--quiet"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    assert main(["generate", "--out", str(root / "data"), "--docs", "600", "--labels", "8"]) == 0
    assert main(["train", "--train", str(root / "data/train.jsonl"), "--out", str(root / "model"), *TINY]) == 0
    return root


def test_evaluate_json_has_every_metric(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--model", str(workspace / "model"), "--test", str(workspace / "data/test.jsonl"),
                 "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    for metric in ("p", "ndcg", "psp"):
        for k in (1, 3, 5):
            assert 0.0 <= scores[f"{metric}@{k}"] <= 1.0
    assert scores["p@1"] > 0.7


def test_a_spreadsheet_export_of_the_test_set_scores_as_its_jsonl(workspace: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import csv

    records = [json.loads(line) for line in (workspace / "data/test.jsonl").read_text().splitlines()]
    with (tmp_path / "test.csv").open("w", newline="", encoding="utf-8-sig") as handle:  # as Excel saves it
        writer = csv.writer(handle)
        writer.writerow(["Body", "Tags"])  # no id column; labels as pandas writes a list
        writer.writerows([record["text"], repr(record["labels"])] for record in records)
    scores = []
    for test in (workspace / "data/test.jsonl", tmp_path / "test.csv"):
        assert main(["evaluate", "--model", str(workspace / "model"), "--test", str(test), "--json"]) == 0
        scores.append(json.loads(capsys.readouterr().out))
    assert scores[0] == scores[1] and scores[0]["p@1"] > 0.7


def test_evaluate_table(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["evaluate", "--model", str(workspace / "model"), "--test", str(workspace / "data/test.jsonl")])
    out = capsys.readouterr().out
    assert "p@1=" in out and "ndcg@5=" in out and "psp@3=" in out


def test_predict_reads_jsonl_and_writes_tags(workspace: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    lines = (workspace / "data/test.jsonl").read_text().splitlines()[:4]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))
    assert main(["predict", "--model", str(workspace / "model"), "--k", "2"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [doc["id"] for doc in out] == [json.loads(line)["id"] for line in lines]
    assert all(len(doc["tags"]) == 2 and isinstance(doc["tags"][0][0], str) for doc in out)


def test_predict_reports_bad_lines_and_tags_the_rest(workspace: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"id": "a", "text": "x"}\nnot json\n{"id": "b", "text": "y"}\n'
                                                  '{"id": "c", "text": \n'))
    assert main(["predict", "--model", str(workspace / "model")]) == 2
    captured = capsys.readouterr()
    assert [json.loads(line)["id"] for line in captured.out.splitlines()] == ["a", "b"]
    assert "stdin:2: invalid JSON: Expecting value at column 1" in captured.err
    # the position is within the line itself (column 21 of line 4), not inside the stream or "line 2"
    assert "stdin:4: invalid JSON: Expecting value at column 21" in captured.err


@pytest.mark.parametrize(("argv", "message"), [
    (["evaluate", "--model", "/nonexistent", "--test", "/nonexistent.jsonl"], "not a model checkpoint"),
    (["train", "--train", "/nonexistent.jsonl", "--out", "/tmp/x"], "no such file"),
    (["train", "--train", "{data}/train.jsonl", "--out", "{tmp}/m", "--noise", "bogus:1"], "noise"),
    (["predict", "--model", "{tmp}"], "not a model checkpoint"),
])
def test_errors_are_one_line_with_nonzero_exit(workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               argv: list[str], message: str) -> None:
    argv = [a.format(data=workspace / "data", tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tagger: error:") and message in err[0]


def test_console_script_help_is_fast_and_lists_commands() -> None:
    result = subprocess.run([sys.executable, "-m", "worker.cli", "--help"], capture_output=True, text=True,
                            timeout=60, check=True)
    for command in ("train", "evaluate", "predict", "generate"):
        assert command in result.stdout


def test_train_flags_reach_the_configs() -> None:
    from model.config import ModelConfig, TrainConfig
    from worker.cli import build_parser
    from worker.cli.model import configs_from_args

    args = build_parser().parse_args(["train", "--train", "t.jsonl", "--out", "m", "--lambda-direct", "0.5",
                                      "--no-refit", "--encoder", "minilm", "--no-neighbours", "--min-docs-per-s", "0",
                                      "--min-valid", "50"])
    model_config, train_config = configs_from_args(args)
    assert (model_config.lambda_direct, train_config.refit, train_config.encoder) == (0.5, False, "minilm")
    assert (train_config.neighbours, train_config.min_docs_per_s, train_config.min_valid) == (False, 0.0, 50)
    defaults = configs_from_args(build_parser().parse_args(["train", "--train", "t.jsonl", "--out", "m"]))
    assert (defaults[0].lambda_direct, defaults[1].refit) == (ModelConfig().lambda_direct, TrainConfig().refit)
    assert (defaults[1].min_valid, defaults[1].refit) == (100, True)


def test_preset_flag_chooses_the_configuration_and_given_flags_override_it() -> None:
    from model.config import preset
    from worker.cli import build_parser
    from worker.cli.model import configs_from_args

    base = ["train", "--train", "t.jsonl", "--out", "m"]
    assert configs_from_args(build_parser().parse_args(base)) == preset("default")
    paper, paper_train = configs_from_args(build_parser().parse_args([*base, "--preset", "paper", "--embed-dim",
                                                                      "64", "--no-tag-head", "--lr", "0.01"]))
    assert (paper.embed_dim, paper.attention, paper.pooling, paper.tag_head) == (64, True, "mean", False)
    assert (paper_train.lr, paper_train.patience) == (0.01, preset("paper")[1].patience)
    assert configs_from_args(build_parser().parse_args([*base, "--attention"]))[0].attention is True


def test_a_mistyped_flag_is_reported_by_its_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--train", "t.jsonl", "--out", "m", "--epocs", "3"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: tagger train" in err and "tagger train: error: unrecognized arguments: --epocs 3" in err


@pytest.mark.parametrize("argv", [["lookup", "--redis-url", "redis://127.0.0.1:1/0", "doc-1"],
                                  ["correct", "doc-1", "--add", "x", "--redis-url", "redis://127.0.0.1:1/0"],
                                  ["learn", "--redis-url", "redis://127.0.0.1:1/0"]])
def test_an_unreachable_redis_is_one_line_naming_what_to_check(argv: list[str], workspace: Path,
                                                                 capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAGGER_MODEL_DIR", str(workspace / "model"))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tagger: error: cannot reach Redis at 127.0.0.1:1"), err
    assert "TAGGER_REDIS_URL" in err[0] and "retried" not in err[0]


def test_publishing_another_label_set_or_vocabulary_needs_force(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    tiny = ["--embed-dim", "16", "--latent-dim", "8", "--label-hidden", "16", "--epochs", "1", "--min-df", "1",
            "--quiet"]
    for name, labels, epochs in (("six", "6", "1"), ("six-again", "6", "2"), ("eight", "8", "1")):
        assert main(["generate", "--out", str(tmp_path / f"data-{labels}"), "--docs", "120", "--labels", labels]) == 0
        assert main(["train", "--train", str(tmp_path / f"data-{labels}/train.jsonl"), "--out",
                     str(tmp_path / name), *tiny, "--epochs", epochs]) == 0
    registry = ["--registry", str(tmp_path / "models")]
    assert main(["model", "publish", str(tmp_path / "six"), *registry]) == 0  # a new registry: nothing to compare
    assert main(["model", "publish", str(tmp_path / "six-again"), *registry]) == 0  # same labels and vocabulary
    capsys.readouterr()
    assert main(["model", "publish", str(tmp_path / "eight"), *registry]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "differs from the live version" in err[0], err
    assert "labels 6 → 8 (2 added, 0 dropped)" in err[0] and "featurizer text" in err[0] and "--force" in err[0]
    assert main(["model", "publish", str(tmp_path / "eight"), *registry, "--force"]) == 0


def test_an_unreachable_broker_ends_a_command_with_one_line_naming_what_to_check(
        workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAGGER_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("TAGGER_REDIS_URL", "redis://127.0.0.1:1/0")
    assert main(["demo", "--model", str(workspace / "model"), "--workdir", str(tmp_path), "--seconds", "1"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("tagger: error: cannot reach a Kafka broker at 127.0.0.1:1")
    assert "TAGGER_KAFKA_BOOTSTRAP_SERVERS" in line


def test_an_encoder_on_feature_rows_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "rows.txt"
    data.write_text("4 3 2\n0 0:1 1:1\n1 1:1 2:1\n0 0:1\n1 2:1\n")
    assert main(["train", "--train", str(data), "--out", str(tmp_path / "m"), "--encoder", "minilm"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["tagger: error: the minilm encoder reads raw text; these documents are feature rows"]


def test_training_from_the_command_line_shows_a_bar_on_a_terminal_and_epoch_lines_in_a_log(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert (epoch_progress(), epoch_progress(quiet=True)) == ("bar", "off")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)  # a container's or a job's log
    assert (epoch_progress(), epoch_progress(quiet=True)) == ("log", "off")
