"""Findings of the fresh-user trial of issue 14 that concern set-up and the CLI (one test each, written first)."""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _demo_args() -> list[str]:
    recipe = ROOT.joinpath("Makefile").read_text().split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    line = next(ln for ln in recipe.splitlines() if "alliance analyze" in ln)
    return shlex.split(line.split("alliance", 1)[1])


def test_make_demo_writes_where_the_analysis_accepts(tmp_path):
    """`make demo` must not ask for an output folder that the analysis refuses (it did: alliance-data/demo)."""
    from flows.analyze import _session_folder
    from pipeline.ids import id_from_name
    from pipeline.settings import Settings

    args = _demo_args()
    settings = Settings().model_copy(update={"data_dir": tmp_path / "alliance-data"})
    out = str(tmp_path / args[args.index("--out") + 1]) if "--out" in args else None
    sid = args[args.index("--session-id") + 1] if "--session-id" in args else id_from_name(Path(args[1]).stem)
    assert _session_folder(settings, sid, out).is_dir()


def test_prefect_waits_long_enough_for_its_temporary_server_on_a_busy_machine():
    """Prefect's default (20 s) ended `make demo` in a traceback on a loaded 2-core machine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_SERVER_EPHEMERAL")}
    code = ("import flows; from prefect.settings import get_current_settings as g; "
            "print(g().server.ephemeral.startup_timeout_seconds)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    assert int(out.stdout.strip()) >= 120


def test_prefect_home_in_the_data_dir_is_private(tmp_path):
    env = {**os.environ, "ALLIANCE_DATA_DIR": str(tmp_path / "d")}
    env.pop("PREFECT_HOME", None)
    subprocess.run([sys.executable, "-c", "import os; os.umask(0o022); import flows"], env=env, cwd=ROOT, check=True)
    assert stat.S_IMODE((tmp_path / "d" / "prefect").stat().st_mode) == 0o700


def test_the_web_app_does_not_trust_forwarded_addresses():
    """Trusting proxy headers let X-Forwarded-For get around the per-address lockout and fake the audited address."""
    source = "\n".join(p.read_text() for p in ROOT.joinpath("flows").rglob("*.py"))
    configs = re.findall(r"uvicorn\.Config\((.*?)\)", source, flags=re.S)
    assert configs and all("proxy_headers=False" in c for c in configs)
