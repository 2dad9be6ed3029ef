"""Every hostile or awkward upload of the suite, sent in turn to one live service: never a 5xx
(but the documented 503 overload answer), and the service still alive and answering after.

The cases are the suite's own lists and helpers (test_uploads, test_raw_uploads,
test_hardening_uploads), plus the shapes issue 10 found: very wide and tall images, a huge
16-bit canvas, bodies trickled slower than the read deadline."""

from __future__ import annotations

import random
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image

from tests.service.test_hardening_uploads import SlowClients
from tests.service.test_raw_uploads import heic, post_raw
from tests.service.test_uploads import CASES, LIMIT, _raw_exchange, post, upright
from tests.support import encode, fixture_photos, flat_png16, post_photo, running_service

BODY_TIMEOUT_S = 2  # the slow bodies' deadline: short, so their 408s come quickly
SLOW_BODIES = 3

# A sent case answers an HTTP status, or the text of what happened instead (no answer at all).
Send = Callable[[str], int | str]


def _status_line(reply: bytes) -> int | str:
    parts = reply.split(b" ", 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return f"no HTTP answer: {reply[:60]!r}"


def _multipart(data: bytes, name: str) -> Send:
    return lambda url: post(url, data, name=name).status_code


def _raw(data: bytes, content_type: str) -> Send:
    return lambda url: post_raw(url, data, content_type).status_code


def _form(data: bytes, name: str, content_type: str) -> Send:
    return lambda url: post_photo(url, data, name=name, content_type=content_type).status_code


def _declared_over_limit(url: str) -> int | str:
    """Headers declaring 50 MB, no body (test_uploads' case)."""
    head = (
        f"POST /v1/classify HTTP/1.1\r\nHost: {urlsplit(url).netloc}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\n"
        f"Content-Length: {50 * 1024 * 1024}\r\n\r\n"
    ).encode()
    return _status_line(_raw_exchange(url, head, [], timeout=10))


def _chunked_over_limit(url: str) -> int | str:
    """12 MB in chunks, never the closing chunk (test_uploads' case)."""
    head = (
        f"POST /v1/classify HTTP/1.1\r\nHost: {urlsplit(url).netloc}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    preamble = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
    block = b"\xab" * (1024 * 1024)
    chunks = [b"%x\r\n%s\r\n" % (len(preamble), preamble)] + [b"%x\r\n%s\r\n" % (len(block), block)] * 12
    return _status_line(_raw_exchange(url, head, chunks))


def _slow_bodies(url: str) -> int | str:
    """A few uploads trickled a byte every 0.5 s, past the body deadline: the worst answer."""
    slow = SlowClients(url, SLOW_BODIES)
    try:
        slow.trickle_until_answered(limit_s=BODY_TIMEOUT_S + 20)
    finally:
        slow.close()
    statuses = [_status_line(slow.replies.get(i, b"")) for i in range(SLOW_BODIES)]
    return max(statuses, key=lambda s: (isinstance(s, str), s if isinstance(s, int) else 0))


def _flat_png(width: int, height: int) -> bytes:
    return encode(Image.new("RGB", (width, height), (200, 40, 40)), "PNG")


def all_cases() -> list[tuple[str, Send]]:
    """(name, send): every upload case, in a fixed order."""
    img = upright()
    photo = fixture_photos("Test", "Kiwi")[0].read_bytes()
    cases: list[tuple[str, Send]] = [(f"multipart/{n}", _multipart(d, f"{n}.bin")) for n, d, _, _ in CASES]
    cases += [
        # test_uploads' limits
        ("multipart/over-the-limit", _multipart(random.Random(3).randbytes(LIMIT + 1), "big.bin")),
        ("socket/declared-over-the-limit", _declared_over_limit),
        ("socket/chunked-over-the-limit", _chunked_over_limit),
        # test_raw_uploads: the photo as the body, HEIC, other body types, no photo
        ("raw/jpeg", _raw(encode(img, "JPEG"), "image/jpeg")),
        ("raw/png", _raw(encode(img, "PNG"), "image/png")),
        ("raw/webp", _raw(encode(img, "WEBP"), "image/webp")),
        ("raw/heic", _raw(heic(img), "image/heic")),
        ("multipart/heic", _form(heic(img), "IMG_0001.HEIC", "image/heic")),
        ("raw/text-plain", _raw(photo, "text/plain")),
        ("raw/octet-stream", _raw(photo, "application/octet-stream")),
        ("raw/gif-type", _raw(photo, "image/gif")),
        ("raw/empty", _raw(b"", "image/jpeg")),
        ("raw/over-the-limit", _raw(b"\xff\xd8\xff" + b"\0" * LIMIT, "image/jpeg")),
        ("no-body", lambda url: httpx.post(f"{url}/v1/classify", timeout=30).status_code),
        # issue 10: aspect ratios whose padded square would be huge, a huge canvas, slow bodies
        ("wide-64000x1000", _form(_flat_png(64000, 1000), "w.png", "image/png")),
        ("wide-20000x100", _form(_flat_png(20000, 100), "w.png", "image/png")),
        ("tall-100x20000", _form(_flat_png(100, 20000), "t.png", "image/png")),
        ("canvas-8000x8000-16bit", _form(flat_png16(8000, 8000), "c.png", "image/png")),
        ("slow-bodies", _slow_bodies),
    ]  # fmt: skip
    return cases


@pytest.mark.slow
def test_every_upload_case_gets_no_5xx_and_the_service_lives_on(job_run, tmp_path):
    root, _ = job_run
    env = {"ARTIFACTS_URI": str(root), "BODY_READ_TIMEOUT_S": str(BODY_TIMEOUT_S)}
    cases = all_cases()
    assert len(cases) >= 38 + 5  # today's 38 and the new shapes: none was left out
    with running_service(env, log_path=tmp_path / "service.log") as (url, proc):
        answers: dict[str, int | str] = {}
        for name, send in cases:
            try:
                answers[name] = send(url)
            except httpx.HTTPError as exc:  # the connection dropped: as bad as a 5xx
                answers[name] = f"no answer: {type(exc).__name__}"
        # 503 is the documented overload answer; any other 5xx, or no answer, is a failure.
        failed = {n: a for n, a in answers.items() if isinstance(a, str) or (a >= 500 and a != 503)}
        assert failed == {}, answers
        assert proc.poll() is None, "the service died"
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        assert post_photo(url, fixture_photos("Test", "Kiwi")[0].read_bytes()).status_code == 200
