"""`python -m msgen.train` end to end on a tiny synthetic set: smoke run, exact resume, NaN stop,
and two CPU processes under torchrun."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import msgen.training.loop as loop
import msgen.training.step as step_module
from msgen.checkpoint import load_checkpoint, step_checkpoints
from msgen.training.cli import main
from tiny_runs import tiny_args, tiny_data  # noqa: F401  (tests/tiny_runs.py, a test tool; tiny_data is a fixture)

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore::msgen.models.losses.FeatureSpaceWarning")


def records(out: Path, kind: str) -> list[dict]:
    lines = (out / "log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def assert_same_state(a: dict, b: dict) -> None:
    for key in ("generator", "discriminator"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name} differs"
    for key in ("optim_g", "optim_d"):
        for index, state in a[key]["state"].items():
            for name, value in state.items():
                assert torch.equal(value, b[key]["state"][index][name]), f"{key} state {index}.{name} differs"


@pytest.mark.slow
def test_smoke_run_then_resume_matches_an_uninterrupted_run(tiny_data, tmp_path):
    # Several M per batch, so the resumed run must also draw the same M at the same steps.
    # A decaying lr too: the schedule is a function of the step, so the resumed run follows it.
    # And the augmentations: the resumed run mirrors and jitters the same tuples the same way.
    common = ["--steps", "4", "--num-sources", "1,2", "--log-every", "1", "--sample-every", "2",
              "--eval-every", "2", "--keep-last", "3", "--lr", "1e-3", "--lr-decay", "0.5",
              "--data.flip", "0.5", "--data.color-jitter", "0.3"]
    full = tmp_path / "full"
    assert main(tiny_args(tiny_data, full, *common)) == 0
    # Step 1 gives the first sample and checkpoint, so a short run always shows and keeps something.
    assert [s for s, _ in step_checkpoints(full / "checkpoints")] == [1, 2, 4]
    assert (full / "checkpoints" / "best.pt").is_file()
    assert sorted(p.name for p in (full / "samples").iterdir()) == [
        "step-00000001.png", "step-00000002.png", "step-00000004.png"]
    assert any((full / "tensorboard").iterdir())
    train = records(full, "train")
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    assert all(math.isfinite(r[k]) for r in train for k in loop.LOSS_NAMES)
    assert {r["num_sources"] for r in train} <= {1, 2}
    evals = records(full, "eval")
    assert [r["step"] for r in evals] == [2, 4] and all(0 < r["mask_ssim"] <= 1 for r in evals)

    resumed = tmp_path / "resumed"
    args = tiny_args(tiny_data, resumed, "--log-every", "1")
    assert main(["--resume", str(full / "checkpoints" / "step-00000002.pt"), *args]) == 0
    end_full = load_checkpoint(full / "checkpoints" / "step-00000004.pt")
    end_resumed = load_checkpoint(resumed / "checkpoints" / "step-00000004.pt")
    assert_same_state(end_full, end_resumed)
    for key in ("torch", "numpy_keys", "python_words"):
        assert torch.equal(end_full["rng"][key], end_resumed["rng"][key])
    # The resumed run logged the same losses and M for steps 3 and 4, bit for bit.
    assert records(resumed, "train") == [
        {**r, "time": s["time"], "images_per_s": s["images_per_s"]}
        for r, s in zip(train[2:], records(resumed, "train"))
    ]
    assert end_resumed["config"] == end_full["config"] | {"out": str(resumed)}
    # Steps 3 and 4 decayed: 2/2 then 1/2 of the lr; the checkpoint holds the last step's.
    for key in ("optim_g", "optim_d"):
        assert [g["lr"] for g in end_full[key]["param_groups"]] == [5e-4]


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    real = step_module.discriminator_loss

    def nan_at_step_3(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(step_module, "discriminator_loss", nan_at_step_3)
    out = tmp_path / "nan"
    # The adversarial term on, so that D (and the patched loss) runs: the synthetic preset trains without it.
    status = main(tiny_args(tiny_data, out, "--steps", "6", "--log-every", "1", "--sample-every", "100",
                            "--eval-every", "100", "--checkpoint-every", "2", "--model.loss.adversarial-weight", "1"))
    assert status == 1
    err = capsys.readouterr().err
    assert "non-finite loss at step 3: loss_d = nan" in err
    assert "step-00000002.pt" in err
    assert [s for s, _ in step_checkpoints(out / "checkpoints")] == [1, 2]
    good = load_checkpoint(out / "checkpoints" / "step-00000002.pt")
    assert all(torch.isfinite(v).all() for v in good["generator"].values())
    assert [r["step"] for r in records(out, "train")] == [1, 2]


@pytest.mark.slow
def test_init_from_fine_tunes_at_another_m(tiny_data, tmp_path):
    first = tmp_path / "m2"
    assert main(tiny_args(tiny_data, first, "--steps", "1", "--eval-every", "100", "--sample-every", "100")) == 0
    start = load_checkpoint(first / "checkpoints" / "step-00000001.pt")
    second = tmp_path / "m3"
    assert main(["--init-from", str(first / "checkpoints" / "step-00000001.pt"), "--num-sources", "3",
                 "--out", str(second), "--steps", "1", "--log-every", "1"]) == 0
    tuned = load_checkpoint(second / "checkpoints" / "step-00000001.pt")
    assert tuned["config"]["num_sources"] == [3] and tuned["step"] == 1
    assert [r["num_sources"] for r in records(second, "train")] == [3]
    # The run started from the first run's weights (not a fresh initialisation) and moved on.
    moved = [not torch.equal(start["generator"][k], tuned["generator"][k]) for k in start["generator"]]
    assert any(moved)
    assert tuned["optim_g"]["state"][0]["step"].item() == 1  # fresh optimisers


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tiny_data, tmp_path):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
               "-m", "msgen.train", *tiny_args(tiny_data, out, "--steps", "3", "--log-every", "1",
                                               "--sample-every", "3", "--eval-every", "3", "--batch-size", "1")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # The run checks at its end that G and D are bit-identical on both processes.
    assert "parameters identical on all 2 processes" in result.stdout + result.stderr
    assert "2 process(es)" in result.stdout + result.stderr
    # Rank 0 alone logs and writes: one record per step, the checkpoint once.
    assert [r["step"] for r in records(out, "train")] == [1, 2, 3]
    assert [s for s, _ in step_checkpoints(out / "checkpoints")] == [1, 3]
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step-00000001.png", "step-00000003.png"]
    state = load_checkpoint(out / "checkpoints" / "step-00000003.pt")
    assert state["config"]["batch_size"] == 1 and state["step"] == 3


@pytest.mark.slow
@pytest.mark.parametrize("seconds, expected", [("0", [1, 3]), ("1e-9", [1, 2, 3])])
def test_checkpoint_seconds_saves_between_the_step_periods(tiny_data, tmp_path, seconds, expected):
    out = tmp_path / "run"
    assert main(tiny_args(tiny_data, out, "--steps", "3", "--eval-every", "100", "--sample-every", "100",
                          "--checkpoint-seconds", seconds)) == 0
    assert [s for s, _ in step_checkpoints(out / "checkpoints")] == expected
    # best.pt exists from the first save, before any evaluation; here it is the newest checkpoint.
    assert load_checkpoint(out / "checkpoints" / "best.pt")["step"] == 3


def _train_process(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "msgen.train", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("signal_name, status", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_stop_signal_saves_then_exits_and_resume_auto_continues(tiny_data, tmp_path, signal_name, status):
    import signal
    import time

    out = tmp_path / "run"
    args = tiny_args(tiny_data, out, "--steps", "100000", "--eval-every", "100000", "--sample-every", "100000",
                     "--log-every", "1")
    process = _train_process(args)
    first = out / "checkpoints" / "step-00000001.pt"
    deadline = time.monotonic() + 120
    while not first.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert first.exists(), process.communicate()[1][-2000:]
    time.sleep(1.0)  # a few more steps
    process.send_signal(getattr(signal, signal_name))
    _, err = process.communicate(timeout=120)
    assert process.returncode == status, err[-2000:]
    saved = step_checkpoints(out / "checkpoints")
    last_step, last = saved[-1]
    assert last_step > 1 and f"stopped by {signal_name} after step {last_step}; saved {last}" in err
    assert load_checkpoint(last)["step"] == last_step
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.endswith(".tmp")]

    # --resume auto takes the newest valid checkpoint, skipping (and naming) a corrupt newer one.
    (out / "checkpoints" / f"step-{last_step + 5:08d}.pt").write_bytes(b"")
    result = subprocess.run([sys.executable, "-m", "msgen.train", "--resume", "auto", *args[:-2],
                             "--steps", str(last_step + 1), "--out", str(out)],
                            cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"skipping {out / 'checkpoints' / f'step-{last_step + 5:08d}.pt'} is not a loadable msgen checkpoint: " \
           "the file is empty" in result.stderr
    assert f"resuming from {last} (step {last_step})" in result.stderr


def test_resume_auto_without_a_checkpoint_says_it_starts_from_step_0(tiny_data, tmp_path, capsys):
    out = tmp_path / "fresh"
    assert main(["--resume", "auto", *tiny_args(tiny_data, out, "--steps", "1", "--eval-every", "100")]) == 0
    assert f"no checkpoint in {out / 'checkpoints'}, starting from step 0" in capsys.readouterr().err
    assert [s for s, _ in step_checkpoints(out / "checkpoints")] == [1]


def test_a_file_that_fails_to_load_while_training_is_a_one_line_data_error():
    class Broken(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, index):
            if index == 2:
                raise OSError("cannot read image /data/images/0003_front_002.png: truncated")
            return torch.zeros(1)

    batches = loop._batches(torch.utils.data.DataLoader(Broken(), batch_size=1))
    assert next(batches).shape == (1, 1) and next(batches).shape == (1, 1)
    with pytest.raises(loop.DataError, match=r"^cannot read image /data/images/0003_front_002.png: truncated$"):
        next(batches)


@pytest.mark.slow
def test_sigterm_under_torchrun_saves_once_at_a_step_all_processes_agree_on(tiny_data, tmp_path):
    import signal
    import time

    out = tmp_path / "ddp-stop"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
               "-m", "msgen.train", *tiny_args(tiny_data, out, "--steps", "100000", "--log-every", "2",
                                               "--sample-every", "100000", "--eval-every", "100000",
                                               "--batch-size", "1")]
    process = subprocess.Popen(command, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = out / "checkpoints" / "step-00000001.pt"
    deadline = time.monotonic() + 180
    while not first.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert first.exists(), process.communicate()[0][-3000:]
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)  # torchrun passes it on to both processes
    output, _ = process.communicate(timeout=180)
    assert process.returncode != 0
    last_step, last = step_checkpoints(out / "checkpoints")[-1]
    assert last_step > 1 and last_step % 2 == 0, output[-3000:]  # a log step: where the processes agree
    assert f"stopped by SIGTERM after step {last_step}" in output
    assert load_checkpoint(last)["step"] == last_step


def test_images_per_s_counts_each_window_s_own_steps(tmp_path, monkeypatch):
    import time
    from types import SimpleNamespace

    import msgen.training.monitor as monitor_module

    clock = iter(float(t) for t in range(100))  # one second per reading
    monkeypatch.setattr(monitor_module, "time", SimpleNamespace(perf_counter=lambda: next(clock), time=time.time))
    monitor = monitor_module.RunMonitor(tmp_path, total_steps=4, start_step=0, enabled=True)
    monitor.start()  # t = 0
    for _ in range(2):  # the loop's order: a step is counted, then its log line closes the window
        monitor.step(8, {})  # t = 1, 2
    monitor.log(2, {})  # t = 3: 16 images over 3 s
    assert monitor.images_per_s == pytest.approx(16 / 3)
    monitor.step(8, {})  # t = 4: the new window's first step, 8 images over 1 s
    assert monitor.bar.postfix == "img/s=8.0"
    monitor.bar.close()


def test_the_loop_counts_a_step_before_its_log_line_closes_the_window(tiny_data, tmp_path, monkeypatch):
    calls = []

    def recorded(name):
        original = getattr(loop.RunMonitor, name)

        def wrapper(self, *args, **kwargs):
            calls.append(name)
            return original(self, *args, **kwargs)
        return wrapper

    for name in ("step", "log"):
        monkeypatch.setattr(loop.RunMonitor, name, recorded(name))
    assert main(tiny_args(tiny_data, tmp_path / "run", "--steps", "4", "--log-every", "2",
                          "--eval-every", "4", "--sample-every", "4")) == 0
    assert calls == ["step", "step", "log", "step", "step", "log"]
