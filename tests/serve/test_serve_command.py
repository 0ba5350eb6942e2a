"""`context-forcing serve`: bad flags exit 2 with one line before any work; the command serves the page on
127.0.0.1 by default (the shipped panworld student), random weights with a warning for a preset
that ships none."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from context_forcing.cli import main

BAD = [
    (["--preset", "huge"], "--preset: got 'huge'; allowed: tiny, panworld, wan2.1-1.3b"),
    (["--preset", "wan2.1-1.3b", "--random-weights"], "--preset: 'wan2.1-1.3b' cannot be served"),
    (["--port", "70000"], "--port: got 70000; must be in [0, 65535]"),
    (["--max-sessions", "0"], "--max-sessions: got 0; must be an integer >= 1"),
    (["--threads", "0"], "--threads: got 0"),
    (["--memory", "sink4-slow12-fast6"], "--memory: bad memory layout 'sink4-slow12-fast6'"),
    (["--checkpoint", "/nonexistent/ckpt"], "--checkpoint: /nonexistent/ckpt: no such checkpoint"),
    (["--checkpoint", "x", "--random-weights"], "--random-weights: cannot be combined with --checkpoint"),
]


@pytest.mark.parametrize("extra,message", BAD)
def test_bad_flags_exit_2_with_one_line(capsys, extra, message):
    assert main(["serve", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_port_in_use_is_named(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--preset", "tiny", "--random-weights", "--port", str(port)]) == 2
    assert f"--host/--port: cannot bind 127.0.0.1:{port}" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    "preset,expect", [("panworld", "shipped panworld student"), ("tiny", "random weights")]
)
def test_serve_binds_loopback_and_serves_the_page(preset, expect):
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "context_forcing",
            "serve",
            "--preset",
            preset,
            "--port",
            str(port),
            "--threads",
            "1",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = server.stderr.readline()
        if preset == "tiny":
            assert "warning: preset 'tiny' ships no trained model: serving random weights" in line
            line = server.stderr.readline()
        assert re.search(rf"serving {preset} \({expect}, memory .*\) on http://127\.0\.0\.1:{port}/", line), (
            line
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    assert response.status == 200 and b"memory-sink" in response.read()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.1)
        addresses = {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)} - {
            "127.0.0.1"
        }
        for address in addresses:  # not reachable on the machine's other addresses
            with pytest.raises(OSError):
                socket.create_connection((address, port), timeout=2).close()
    finally:
        server.terminate()
        server.wait(timeout=30)
