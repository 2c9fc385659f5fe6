"""`alliance serve` registers the nightly deployment on a Prefect server on loopback, and a scheduled run completes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ALLIANCE = str(Path(sys.executable).with_name("alliance"))
PREFECT = str(Path(sys.executable).with_name("prefect"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


async def _completed_scheduled_runs(api_url: str) -> list:
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(api_url) as client:
        runs = await client.read_flow_runs()
    return [r for r in runs if r.deployment_id is not None and r.state_type is not None
            and r.state_type.value == "COMPLETED"]


@pytest.mark.slow
def test_serve_runs_the_nightly_flow_on_its_schedule(tmp_path):
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_API_SERVICES_SCHEDULER_LOOP_SECONDS="5", ALLIANCE_DATA_DIR=str(tmp_path / "data"),
               ALLIANCE_INBOX_SETTLE_S="0")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "no_consent.wav").write_bytes(b"RIFF")  # no sidecar: must be rejected, never decoded
    server = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    served = None
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{api}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline or server.poll() is not None:
                pytest.fail("the Prefect server did not start on loopback")
            time.sleep(1)
        served = subprocess.Popen([ALLIANCE, "serve", "--inbox", str(inbox), "--cron", "* * * * *"],
                                  env={**env, "PREFECT_API_URL": api}, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 180
        done = []
        while time.time() < deadline and not done:
            time.sleep(5)
            assert served.poll() is None, "alliance serve exited"
            done = asyncio.run(_completed_scheduled_runs(api))
        assert done, "no scheduled run of the nightly deployment completed within 3 minutes"
        assert (inbox / "rejected" / "no_consent.wav").is_file()
        reason = (inbox / "rejected" / "no_consent.wav.reason.txt").read_text()
        assert "no sidecar JSON with a consent record" in reason
    finally:
        if served is not None:
            _stop(served)
        _stop(server)
    assert server.poll() is not None and (served is None or served.poll() is not None)


def test_serve_without_a_server_says_how_to_start_one(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    result = subprocess.run([ALLIANCE, "serve", "--inbox", str(tmp_path)], env=env, capture_output=True, text=True)
    assert result.returncode == 2 and "prefect server start --host 127.0.0.1" in result.stderr


def test_serve_refuses_a_bad_cron_in_one_line(tmp_path):
    result = subprocess.run([ALLIANCE, "serve", "--inbox", str(tmp_path), "--cron", "nightly"],
                            capture_output=True, text=True, env={**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"})
    assert result.returncode == 2 and "must be a cron line of 5 fields" in result.stderr
    assert "Traceback" not in result.stderr
