"""The `scones` command line as a user runs it (a real process)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scones.model_metadata import ModelMetadata
from scones.model_store import ModelStore
from training.staging import StagedDataset

SCONES = str(Path(sys.executable).parent / "scones")
ROOT = Path(__file__).parents[2]


def run(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`scones ARGS`, with `home` as its SCONES_HOME when given."""
    environment = os.environ | ({"SCONES_HOME": str(home)} if home else {})
    return subprocess.run(
        [SCONES, *args], capture_output=True, text=True, timeout=300, check=False, env=environment
    )


def test_evaluate_json_matches_training_time_evaluation(
    staged: StagedDataset, small_model: Path, small_model_metadata: ModelMetadata
) -> None:
    completed = run("evaluate", str(staged.split_dir("test")), "--model", str(small_model), "--json")
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    assert {
        "n",
        "accuracy",
        "per_class",
        "coverage",
        "accepted_accuracy",
        "ece",
        "confusion",
    } <= report.keys()
    expected = small_model_metadata.metrics["test"]
    assert report["n"] == expected["n"] == 200
    assert report["accuracy"] == pytest.approx(expected["accuracy"])
    assert report["coverage"] == pytest.approx(expected["coverage"])
    assert report["ece"] == pytest.approx(expected["ece"], abs=1e-5)
    assert report["confusion"] == expected["confusion"]


def evaluate_json(folder: Path, model: Path, threshold: str) -> dict[str, Any]:
    completed = run("evaluate", str(folder), "--model", str(model), "--threshold", threshold, "--json")
    assert completed.returncode == 0, completed.stderr
    report: dict[str, Any] = json.loads(completed.stdout)
    return report


def test_evaluate_with_another_threshold(staged: StagedDataset, small_model: Path) -> None:
    low = evaluate_json(staged.split_dir("test"), small_model, "0.5")
    high = evaluate_json(staged.split_dir("test"), small_model, "0.99")
    # at 0.5 every image is accepted (two classes); at 0.99 only those whose top probability reaches it
    probabilities = json.loads((small_model / "evaluation.json").read_text())["test"]
    confident = sum(max(row["probabilities"]) >= 0.99 for row in probabilities) / len(probabilities)
    assert low["coverage"] == 1.0 and high["coverage"] == pytest.approx(confident, abs=0.006)


@pytest.mark.parametrize(
    "command",
    [
        "stage",
        "train",
        "evaluate",
        "serve",
        "up",
        "submit",
        "replay",
        "metrics",
        "review",
        "labels",
        "report",
        "demo",
        "models",
        "deploy",
        "destroy",
    ],
)
def test_every_command_has_help(command: str) -> None:
    completed = run(command, "--help")
    assert completed.returncode == 0 and "usage: scones" in completed.stdout


def test_without_a_published_model_the_cli_says_what_to_do(tmp_path: Path, staged: StagedDataset) -> None:
    completed = subprocess.run(
        [SCONES, "evaluate", str(staged.split_dir("test"))],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"SCONES_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert completed.returncode == 2 and "scones train" in completed.stderr


def test_mistakes_get_one_clear_line_and_change_nothing(tmp_path: Path, small_model: Path) -> None:
    """A wrong path, two files one key would hold, a stack that is not running, a bad flag value: a
    one-line error and a non-zero exit, never a traceback, and nothing half done."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        (tmp_path / folder / "x.png").write_bytes(b"not uploaded")
    down = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    cases = [
        (("submit", str(tmp_path / "missing.jpg")), {}, "not a file"),
        (("submit", str(tmp_path / "a")), {}, "for a folder's images give them, e.g. DIR/*.jpg"),
        (("submit", str(tmp_path / "a" / "x.png"), "--prefix", "outbox"), {}, "only uploads under inbox/"),
        (("submit", str(tmp_path / "a" / "x.png"), str(tmp_path / "b" / "x.png")), {}, "x.png given twice"),
        (("report", "--out", str(tmp_path / "report")), down, "is the stack running?"),
        (("evaluate", str(tmp_path / "nothing-here"), "--model", str(small_model)), {}, "is not a folder"),
        (("metrics", "--since", "5x"), {}, "not a duration"),
        (("evaluate", str(tmp_path), "--threshold", "2"), {}, "2 is not a number from 0 to 1"),
        (("train", "--dry-run"), {}, "give --on sagemaker"),
        (("crossval", "--folds", "1"), {}, "1: at least 2 folds needed"),
        (("crossval", "--max-ece", "3"), {}, "3 is not a number from 0 to 1"),
        (("deploy",), {}, "nothing to deploy"),
        (("replay",), down, "is the stack running?"),
        (("metrics",), down | {"AWS_ENDPOINT_URL": "127.0.0.1:4566"}, "starts with its scheme"),
        (("serve", "--port", "99999"), {}, "99999 is not a port from 0 to 65535"),
        (("review", "--web", "--port", "-1"), {}, "-1 is not a port from 0 to 65535"),
    ]
    before = sorted(tmp_path.rglob("*"))
    for arguments, environment, expected in cases:
        completed = subprocess.run(
            [SCONES, *arguments],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=os.environ | {"AWS_MAX_ATTEMPTS": "1"} | environment,
        )
        assert completed.returncode != 0, arguments
        assert expected in completed.stderr and "Traceback" not in completed.stderr, (
            arguments,
            completed.stderr,
        )
        assert sorted(tmp_path.rglob("*")) == before, (arguments, "left something behind")


@pytest.mark.parametrize("command", [("serve",), ("up", "--ephemeral")])
def test_a_server_on_a_port_in_use_says_so_in_one_line(
    command: tuple[str, ...], model_store: ModelStore
) -> None:
    """A second `scones up` or server (or anything on the port): one line naming the port and the way out."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        completed = run(*command, "--port", str(port), home=model_store.root.parent)
    assert completed.returncode == 1
    (line,) = completed.stderr.splitlines()
    taken_port = f"127.0.0.1:{port} (Address already in use)"
    assert (
        line
        == {
            "serve": f"scones serve: could not listen on {taken_port}: give another --port",
            "up": f"scones up: the local AWS stack could not listen on {taken_port}: is another `scones up`"
            " running? (--port picks another port, 0 any free one)",
        }[command[0]]
    )


def test_crossval_refuses_too_few_images_or_no_seed_in_one_line(dataset_source: Path, tmp_path: Path) -> None:
    quick = ["--dataset", str(dataset_source), "--image-size", "32", "--epochs", "1"]
    cases = [
        (["--limit-per-class", "3"], "bicycle has 3 images: fewer than 5 folds"),
        (["--seeds", ","], "give one or more different seeds"),
    ]
    for flags, expected in cases:
        completed = run("crossval", *quick, *flags, home=tmp_path / "home")
        assert completed.returncode == 1, completed.stderr
        assert expected in completed.stderr and "Traceback" not in completed.stderr, completed.stderr
        assert completed.stdout == ""


def test_retrain_mistakes_get_one_clear_line(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, str(ROOT / "training" / "retrain.py"), "--dataset", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=os.environ | {"SCONES_HOME": str(tmp_path / "home")},
    )
    assert completed.returncode == 1
    assert "retrain: dataset source" in completed.stderr and "Traceback" not in completed.stderr


@pytest.mark.parametrize(
    "arguments",
    [
        ["models", "--endpoint-url", "http://127.0.0.1:9", "--stack-name", "prod", "list"],
        ["models", "list", "--endpoint-url", "http://127.0.0.1:9", "--stack-name", "prod"],
        [
            "models",
            "--stack-name",
            "other",
            "list",
            "--endpoint-url",
            "http://127.0.0.1:9",
            "--stack-name",
            "prod",
        ],
    ],
)
def test_models_options_go_before_or_after_the_subcommand(arguments: list[str]) -> None:
    from service.cli import build_parser

    parsed = build_parser().parse_args(arguments)
    assert (parsed.endpoint_url, parsed.stack_name, parsed.bucket) == ("http://127.0.0.1:9", "prod", None)


@pytest.mark.parametrize(
    ("arguments", "refusal"),
    [
        (["up", "--log-level", "bogus"], "invalid choice"),  # the functions would not start at all
        (["up", "--threshold", "1.5"], "1.5 is not a number from 0 to 1"),
        (["demo", "--threshold", "-0.1"], "-0.1 is not a number from 0 to 1"),
        (["replay", "--reason", "bogus"], "no reason code"),
    ],
)
def test_a_bad_flag_value_is_refused_before_anything_starts(
    arguments: list[str], refusal: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(arguments)
    assert refusal in capsys.readouterr().err


def test_missing_credentials_without_an_endpoint_say_the_command_went_to_aws(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from botocore.exceptions import NoCredentialsError

    from service.cli import user_error

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    message = user_error(NoCredentialsError())
    assert message is not None and "AWS_ENDPOINT_URL" in message and "scones up" in message


def test_a_file_system_error_names_the_path_and_the_reason(tmp_path: Path) -> None:
    from service.cli import user_error

    taken = tmp_path / "afile"
    taken.write_text("")
    with pytest.raises(OSError) as raised:
        taken.mkdir(parents=True)  # what `scones report --out afile` meets
    assert user_error(raised.value) == f"{taken}: File exists"


def test_train_publishes_and_prints_its_figures_as_json_when_asked(
    dataset_source: Path, tmp_path: Path
) -> None:
    recipe = ["--image-size", "32", "--epochs", "1", "--limit-per-class", "10", "--ema-decay", "0"]
    completed = run(
        "train", "--dataset", str(dataset_source), *recipe, "--no-progress", "--json", home=tmp_path / "home"
    )
    assert completed.returncode == 0, completed.stderr
    printed = json.loads(completed.stdout)
    assert printed["metrics"]["test"]["n"] == 200
    assert f"published {printed['version']} to " in completed.stderr.splitlines()[-1]
    assert (tmp_path / "home" / "models" / printed["version"] / "model.onnx").is_file()
