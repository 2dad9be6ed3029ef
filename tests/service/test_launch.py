"""service.launch: a port taken between choosing it and the child's bind must not fail a run."""

from __future__ import annotations

import socket

import httpx

import service.launch as launch


def test_a_port_taken_before_the_service_binds_is_chosen_again(job_run, tmp_path, monkeypatch):
    root, _ = job_run
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        chosen = iter([busy])
        real = launch.free_port
        monkeypatch.setattr(launch, "free_port", lambda: next(chosen, None) or real())
        with launch.running_service({"ARTIFACTS_URI": str(root)}, log_path=tmp_path / "svc.log") as (url, _):
            assert not url.endswith(f":{busy}")
            assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
    assert "address already in use" in (tmp_path / "svc.log").read_text()
