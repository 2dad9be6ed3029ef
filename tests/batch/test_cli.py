"""The job's command line: flags -> JobConfig, exit codes, and the closing summary."""

from __future__ import annotations

import logging

import pytest

from batch.cli import build_parser, config_from_args, main, print_summary


def test_flags_build_the_config():
    args = build_parser().parse_args(
        [
            "--input",
            "s3://b/in",
            "--output",
            "out",
            "--weights",
            "random:3",
            "--image-size",
            "96",
            "--components",
            "12",
            "--master",
            "local[1]",
            "--conf",
            "spark.executor.memory=2g",
            "--precision",
            "bf16",
        ]
    )
    config = config_from_args(args)
    assert (config.input_uri, config.output_uri, config.master) == ("s3://b/in", "out", "local[1]")
    assert (config.spec.weights, config.spec.image_size, config.components) == ("random:3", 96, 12)
    assert config.spark_conf == {"spark.executor.memory": "2g"}
    assert config.spec.precision == "bf16"


def test_defaults_are_imagenet_224_and_variance_chosen_k():
    config = config_from_args(build_parser().parse_args(["--input", "a", "--output", "b"]))
    assert (config.spec.weights, config.spec.image_size) == ("imagenet", 224)
    assert config.components is None and config.variance == 0.93
    assert config.spread_ceiling_rank == 4
    plain = config_from_args(
        build_parser().parse_args(["--input", "a", "--output", "b", "--spread-ceiling", "0"])
    )
    assert plain.spread_ceiling_rank == 0


@pytest.mark.parametrize(("has_bf16", "expected"), [(True, "bf16"), (False, "fp32")])
def test_precision_defaults_to_bf16_where_the_cpu_has_it_and_says_so_once(
    has_bf16, expected, monkeypatch, caplog
):
    monkeypatch.setattr("models.featurizer.cpu_has_bf16", lambda: has_bf16)
    with caplog.at_level("INFO", logger="models.featurizer"):
        config = config_from_args(build_parser().parse_args(["--input", "a", "--output", "b"]))
    assert config.spec.precision == expected
    said = [r.getMessage() for r in caplog.records if "precision" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(f"precision {expected} (the default")
    caplog.clear()
    forced = ["--input", "a", "--output", "b", "--precision", "fp32"]
    assert config_from_args(build_parser().parse_args(forced)).spec.precision == "fp32"
    pixels = ["--input", "a", "--output", "b", "--featurizer", "pixels:8"]
    assert config_from_args(build_parser().parse_args(pixels)).spec.precision == "fp32"
    assert not caplog.records


@pytest.mark.parametrize(
    "bad",
    [
        ["--components", "0"],
        ["--image-size", "8"],
        ["--weights", "random:x"],
        ["--conf", "novalue"],
        ["--featurizer", "vgg"],
        ["--precision", "fp16"],
        ["--keep-versions", "0"],
        ["--keep-versions", "-3"],
        ["--featurizer", "pixels:8", "--precision", "bf16"],
    ],
)
def test_bad_flags_exit_2_with_a_message(bad, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--input", "a", "--output", "b", *bad])
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_failed_run_exits_1_and_says_the_version_is_unchanged(spark, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = main(
        [
            "--input",
            str(tmp_path / "empty"),
            "--output",
            str(tmp_path / "out"),
            "--weights",
            "random:0",
            "--image-size",
            "64",
        ]
    )
    assert code == 1
    assert "job failed, current version unchanged: no .jpg" in capsys.readouterr().err


def test_summary_lists_the_skipped_photo(job_run, capsys):
    _, result = job_run
    print_summary(result)
    out = capsys.readouterr().out
    assert f"Published bundle {result.version}" in out
    assert "RANDOM weights" in out
    assert "SKIPPED 1 unreadable photo(s):" in out
    assert "corrupt_truncated.jpg: [corrupt_image]" in out


@pytest.mark.slow
def test_resnet50_imagenet_weights_that_cannot_be_downloaded_name_the_ways_on(tmp_path):
    """Keras' download goes through a proxy on a closed loopback port: it fails at once, as it
    does on a machine without internet, and the job says so in one line."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    sample = Path(__file__).resolve().parents[2] / "examples" / "sample" / "Training"
    proxy = "http://127.0.0.1:9"
    env = {**os.environ, "KERAS_HOME": str(tmp_path / "keras"), "HTTPS_PROXY": proxy, "https_proxy": proxy}
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    run = subprocess.run(
        [sys.executable, "-m", "batch", "--input", str(sample), "--output", str(tmp_path / "out")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1
    lines = [line for line in run.stderr.splitlines() if line.startswith("job failed")]
    assert len(lines) == 1
    assert "ResNet50 ImageNet weights" in lines[0] and "could not be downloaded" in lines[0]
    assert "--featurizer efficientnet-lite0" in lines[0] and "--weights PATH" in lines[0]
    assert not (tmp_path / "out" / "CURRENT").exists()


def test_the_job_log_drops_py4j_retried_sends_but_keeps_its_warnings_and_ours():
    import py4j.java_gateway

    from batch.cli import _not_a_py4j_retry

    def record(name: str, level: int, pathname: str) -> logging.LogRecord:
        return logging.makeLogRecord({"name": name, "levelno": level, "pathname": pathname, "msg": "x"})

    py4j_file = py4j.java_gateway.__file__
    assert not _not_a_py4j_retry(record("root", logging.INFO, py4j_file))
    assert _not_a_py4j_retry(record("root", logging.ERROR, py4j_file))
    assert _not_a_py4j_retry(record("root", logging.INFO, __file__))
    assert _not_a_py4j_retry(record("batch", logging.INFO, __file__))
