"""Sessions analysed in other processes: a Prefect work pool (a real server, a process pool, two workers) and a local
Dask cluster.

Both sit in one file, so pytest-xdist (``--dist loadfile``) runs them one after the other: each starts two worker
processes that load every model.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, SAMPLE_WAV
from tests.test_nightly import _sidecar

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen, log: Path, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the Prefect server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(1)
    pytest.fail(f"the Prefect server did not start in {timeout_s} s: {log.read_text()[-2000:]}")


@pytest.mark.slow
def test_a_nightly_batch_runs_on_a_work_pool_with_two_workers(tmp_path):
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ALLIANCE_"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_API_URL=api, PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}",
               PREFECT_API_DATABASE_TIMEOUT="60",  # SQLite under a busy 2-core machine: wait for locks
               PREFECT_WORKER_QUERY_SECONDS="2", ALLIANCE_DATA_DIR=str(tmp_path / "data"),
               PYTHONFAULTHANDLER="1",  # a crashed flow process (seen: status -11) prints its Python stack
               ALLIANCE_INBOX_SETTLE_S="0")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    # 12 s of each recording: the work pool's wiring is under test, not the analysis
    from pipeline.audio import decode, save_wav

    files = [(SAMPLE_WAV, "a.wav", "s-a", "c-1"), (ROOT / "tests/data/ami/dev01.flac", "b.wav", "s-b", "c-2")]
    for src, name, sid, client in files:
        save_wav(inbox / name, decode(src).samples[int(6.5 * 16000):int(18.5 * 16000)], 16000)
        _sidecar(inbox / name, session_id=sid, client_id=client)
    (inbox / "d_corrupt.wav").write_bytes(b"not audio" * 200)  # consented but broken: fails on its worker
    _sidecar(inbox / "d_corrupt.wav", session_id="s-d", client_id="c-4")

    procs: list[subprocess.Popen] = []
    server_log = tmp_path / "server.log"
    try:
        procs.append(subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                                       str(port)], env=env, stdout=server_log.open("w"), stderr=subprocess.STDOUT))
        _wait_healthy(api, procs[0], server_log)
        subprocess.run([str(BIN / "prefect"), "work-pool", "create", "clinic", "--type", "process"], env=env,
                       check=True, capture_output=True, timeout=120)
        missing = subprocess.run([str(BIN / "alliance"), "deploy", "--pool", "nopool"], env=env,
                                 capture_output=True, text=True, timeout=120)
        assert missing.returncode == 1 and "create it first: prefect work-pool create nopool" in missing.stderr
        assert "Traceback" not in missing.stderr + missing.stdout
        unknown = subprocess.run([str(BIN / "alliance"), "nightly", "--inbox", str(inbox), "--deployment",
                                  "analyze_session/nope"], env=env, capture_output=True, text=True, timeout=120)
        assert unknown.returncode == 1 and "no deployment 'analyze_session/nope'" in unknown.stderr
        assert len(list(inbox.iterdir())) == 6  # nothing was touched
        deployed = subprocess.run([str(BIN / "alliance"), "deploy", "--pool", "clinic"], env=env,
                                  capture_output=True, text=True, timeout=120)
        assert deployed.returncode == 0, deployed.stderr
        assert "deployment analyze_session/analyze on work pool 'clinic'" in deployed.stdout
        logs = [tmp_path / f"worker{i}.log" for i in range(2)]
        for i, log in enumerate(logs):
            procs.append(subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", "clinic", "--name",
                                           f"worker-{i}", "--limit", "1"], env=env, stdout=log.open("w"),
                                          stderr=subprocess.STDOUT))
        nightly = subprocess.run([str(BIN / "alliance"), "nightly", "--inbox", str(inbox), "--deployment",
                                  "analyze_session/analyze"], env=env, capture_output=True, text=True, timeout=900)
        # on failure, the whole summary and the workers' last lines (pytest shortens long strings in its report)
        said = nightly.stdout + nightly.stderr[-3000:] + "".join(log.read_text()[-3000:] for log in logs)
        assert nightly.returncode == 1, said  # one failure: exit 1, the rest done
        assert "processed: 2" in nightly.stdout and "failed: 1" in nightly.stdout, said
        assert "d_corrupt.wav: the flow run on the work pool ended Failed" in nightly.stdout
        worker_logs = [log.read_text() for log in logs]
    finally:
        for p in procs[::-1]:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()

    import sqlalchemy as sa

    from flows.store import RUNS, Store
    from pipeline.settings import Settings

    store = Store.for_settings(Settings(data_dir=tmp_path / "data"))
    with store.engine.connect() as c:
        summary = json.loads(c.execute(sa.select(RUNS.c.summary)).scalar_one())
    flow_runs = {x["session_id"]: x["flow_run"] for x in summary["processed"]}
    assert sorted(flow_runs) == ["s-a", "s-b"]
    # every session ran as its own flow run, picked up by one of the two workers, and both workers took work
    taken = [{sid for sid, fr in flow_runs.items() if fr in text} for text in worker_logs]
    assert set().union(*taken) == set(flow_runs), worker_logs
    assert all("submitting flow run" in text for text in worker_logs), worker_logs
    for _, _, sid, _ in files:
        session = json.loads((tmp_path / "data" / "sessions" / sid / "session.json").read_text())
        assert len(session["transcript"]["words"]) > 10 and session["diarization"]["turns"]
    assert sorted(p.name for p in (inbox / "done").iterdir() if p.suffix != ".json") == ["a.wav", "b.wav"]
    assert (inbox / "failed" / "d_corrupt.wav").is_file()


def test_work_pool_options_are_checked_before_anything_runs(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from flows.cli import app

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    runner = CliRunner()
    for args, message in (
            (["--deployment", ""], "--deployment must name a deployment as FLOW/NAME"),
            (["--deployment", "analyze_session/analyze", "--dask-workers", "2"], "not both"),
            (["--deployment", "analyze_session/analyze", "--asr-backend", "openai-whisper"],
             "--asr-backend has no effect with --deployment"),
            (["--deployment", "analyze_session/analyze"], "PREFECT_API_URL is not set")):
        result = runner.invoke(app, ["nightly", "--inbox", str(tmp_path), *args])
        assert result.exit_code == 2 and message in result.output, (args, result.output)
    # a fresh process, as Prefect reads its API address once per process; nothing listens on that port
    env = {**os.environ, "PREFECT_API_URL": f"http://127.0.0.1:{_free_port()}/api"}
    result = subprocess.run([str(BIN / "alliance"), "nightly", "--inbox", str(tmp_path), "--deployment",
                             "analyze_session/analyze"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "cannot reach the Prefect server" in result.stderr, result.stderr


@pytest.mark.slow
def test_a_batch_on_a_local_dask_cluster_gives_the_same_outputs(prefect_harness, tmp_path, monkeypatch, capfd):
    """Two sessions on two Dask worker processes (prefect-dask) against the single-process run."""
    from flows.nightly import dask_runner, nightly_inbox

    files = [(SAMPLE_WAV, "a.wav", "s-a", "c-1"), (ROOT / "tests/data/ami/dev01.flac", "b.flac", "s-b", "c-2")]
    outputs = {}
    for mode in ("single", "dask"):
        inbox = tmp_path / mode / "inbox"
        inbox.mkdir(parents=True)
        for src, name, sid, client in files:
            shutil.copy(src, inbox / name)
            _sidecar(inbox / name, session_id=sid, client_id=client)
        monkeypatch.setenv("ALLIANCE_DATA_DIR", str(tmp_path / mode / "data"))
        monkeypatch.setenv("ALLIANCE_INBOX_SETTLE_S", "0")
        monkeypatch.setenv("PYTHONFAULTHANDLER", "1")  # a worker that crashes prints its Python stack
        if mode == "single":
            summary = nightly_inbox(str(inbox))
        else:
            try:
                summary = nightly_inbox.with_options(task_runner=dask_runner(2))(str(inbox), use_task_runner=True)
            except Exception as exc:  # a worker that died: its own log lines say why (CI shows only part of the log)
                err = capfd.readouterr().err.splitlines()
                said = [line for line in err if any(k in line for k in (
                    "distributed.nanny", "distributed.worker", "Error", "error", "Killed", "memory", "Traceback"))]
                pytest.fail(f"{type(exc).__name__}: {exc}\n" + "\n".join(said[-60:]))
        assert sorted(x["session_id"] for x in summary["processed"]) == ["s-a", "s-b"], summary
        if mode == "dask":  # the sessions ran in the cluster's worker processes, not in this one
            pids = {x["worker_pid"] for x in summary["processed"]}
            assert os.getpid() not in pids and 1 <= len(pids) <= 2
        outputs[mode] = {sid: json.loads((tmp_path / mode / "data" / "sessions" / sid / "session.json").read_text())
                         for _, _, sid, _ in files}
    for sid, single in outputs["single"].items():
        dask = outputs["dask"][sid]
        assert [w["text"] for w in dask["transcript"]["words"]] == [w["text"] for w in single["transcript"]["words"]]
        assert dask["diarization"]["turns"] == single["diarization"]["turns"]
        assert dask["features"]["frames"] == single["features"]["frames"]
        assert dask["flags"] == single["flags"]
