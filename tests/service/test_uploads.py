"""Awkward and hostile uploads against the live service: every one gets a sensible answer, none a 5xx."""

from __future__ import annotations

import io
import socket
import struct
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import LABELS
from tests.support import encode, fixture_photos, png_declaring, post_photo

LIMIT = 10 * 1024 * 1024  # the service's default MAX_UPLOAD_BYTES


def upright() -> Image.Image:
    return Image.open(fixture_photos("Test", "Banana")[0]).convert("RGB")


def gif_declaring(width: int, height: int) -> bytes:
    return (
        b"GIF89a"
        + struct.pack("<HH", width, height)
        + b"\x80\x00\x00"
        + b"\x00\x00\x00\xff\xff\xff"
        + b","
        + struct.pack("<HHHH", 0, 0, width, height)
        + b"\x00\x02\x02\x44\x01\x00;"
    )


def animated_gif(first: Image.Image, second: Image.Image) -> bytes:
    buf = io.BytesIO()
    first.save(buf, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    return buf.getvalue()


def noise(seed: int, size=(100, 100)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8))


def transparent_on_black(img: Image.Image) -> Image.Image:
    """The photo with its white background made transparent AND black underneath: only
    compositing on white (as the service must) brings the original back."""
    arr = np.asarray(img).copy()
    background = (arr > 235).all(-1)
    alpha = np.where(background, 0, 255).astype(np.uint8)
    arr[background] = 0
    return Image.fromarray(np.dstack([arr, alpha]))


def cases() -> list[tuple[str, bytes, int, str | None]]:
    """(name, bytes, expected status, expected error code): 200s are accepted photos."""
    img = upright()
    jpeg = encode(img, "JPEG", quality=92)
    cmyk = encode(img.convert("CMYK"), "JPEG", quality=92)
    big = img.resize((4032, 3024), Image.Resampling.BILINEAR)  # a 12 Mpx phone photo
    sixteen = Image.fromarray(np.asarray(img.convert("L"), dtype=np.uint16) * 257)  # I;16
    rgba = transparent_on_black(img)
    return [
        ("jpeg", jpeg, 200, None),
        ("png", encode(img, "PNG"), 200, None),
        ("webp", encode(img, "WEBP", lossless=True), 200, None),
        ("gif-animated", animated_gif(img, noise(1)), 200, None),
        ("bmp", encode(img, "BMP"), 200, None),
        ("tiff-lzw", encode(img, "TIFF", compression="tiff_lzw"), 200, None),
        ("jpeg-cmyk", cmyk, 200, None),
        ("png-palette", encode(img.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"), 200, None),
        ("jpeg-grayscale", encode(img.convert("L"), "JPEG"), 200, None),
        ("png-16bit", encode(sixteen, "PNG"), 200, None),
        ("png-rgba", encode(rgba, "PNG"), 200, None),
        ("png-la", encode(rgba.convert("LA"), "PNG"), 200, None),
        ("bmp-1bit", encode(img.convert("1"), "BMP"), 200, None),
        ("jpeg-12mpx", encode(big, "JPEG", quality=85), 200, None),
        ("png-1x1", encode(Image.new("RGB", (1, 1), (200, 30, 30)), "PNG"), 200, None),
        ("png-panorama", encode(img.resize((1000, 10)), "PNG"), 200, None),
        ("jpeg-truncated", jpeg[: len(jpeg) // 2], 400, "corrupt_image"),
        ("png-truncated-header", encode(img, "PNG")[:30], 400, None),
        ("zero-bytes", b"", 400, "empty_file"),
        ("random-bytes", np.random.default_rng(7).bytes(5000), 400, "not_an_image"),
        ("text", b"apple banana cherry\n" * 50, 400, "not_an_image"),
        (
            "svg",
            b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
            b'<circle cx="50" cy="50" r="40" fill="yellow"/></svg>',
            400,
            "not_an_image",
        ),
        ("pdf-header", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", 400, "not_an_image"),
        ("jpeg-magic-then-garbage", b"\xff\xd8\xff\xe0" + b"\x00" * 300, 400, None),
        ("ico", encode(img, "ICO"), 415, "unsupported_format"),
        ("png-bomb-100000x100000", png_declaring(100_000, 100_000), 413, "image_too_large"),
        ("png-bomb-10000x10000", png_declaring(10_000, 10_000), 413, "image_too_large"),
        ("gif-bomb-65535x65535", gif_declaring(65_535, 65_535), 413, "image_too_large"),
    ]


CASES = cases()


def post(url: str, data: bytes, path: str = "/v1/classify", name: str = "upload.bin") -> httpx.Response:
    return post_photo(url, data, path=path, name=name, content_type="application/octet-stream")


def test_the_suite_is_large_enough():
    assert len(CASES) >= 20
    assert sum(status >= 400 for _, _, status, _ in CASES) >= 10


@pytest.mark.parametrize(("name", "data", "status", "code"), CASES, ids=[c[0] for c in CASES])
def test_upload_gets_a_sensible_answer(service_url, name, data, status, code):
    resp = post(service_url, data, name=f"{name}.bin")
    assert resp.status_code == status, f"{name}: {resp.status_code} {resp.text[:300]}"
    body = resp.json()
    if status == 200:
        assert body["top_k"][0]["label"] in LABELS
        assert body["label"] == (body["top_k"][0]["label"] if body["known"] else None)
        assert len(body["top_k"]) == 5
    else:
        assert set(body) == {"error"}
        assert body["error"]["message"]
        if code:
            assert body["error"]["code"] == code
        else:
            assert body["error"]["code"] in {"corrupt_image", "not_an_image"}


def features(url: str, data: bytes) -> np.ndarray:
    resp = post(url, data, path="/v1/embed")
    assert resp.status_code == 200, resp.text
    return np.asarray(resp.json()["features"])


def close(a: np.ndarray, b: np.ndarray) -> bool:
    # Keras gives ~1e-6 relative differences between batch compositions; real changes are >1e-2.
    return float(np.linalg.norm(a - b)) <= 1e-4 * float(np.linalg.norm(b))


def test_exif_orientation_is_applied(service_url):
    img = upright()
    reference = features(service_url, encode(img, "PNG"))
    # Stored turned 90 degrees anticlockwise; orientation 6 tells viewers to turn it back.
    stored = img.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    tagged = features(service_url, encode(stored, "PNG", exif=exif))
    untagged = features(service_url, encode(stored, "PNG"))
    assert close(tagged, reference)
    assert not close(untagged, reference)  # the rotation matters to the model: test can fail


def test_transparency_is_composited_on_white(service_url):
    img = upright()
    reference = features(service_url, encode(img, "PNG"))
    rgba = features(service_url, encode(transparent_on_black(img), "PNG"))
    other = features(service_url, fixture_photos("Test", "Banana")[1].read_bytes())
    # White pixels (>235) became pure white: a small change (the white balance of the page moves
    # by a percent or two), well under the change another photo of the same fruit makes.
    assert np.linalg.norm(rgba - reference) < 0.5 * np.linalg.norm(other - reference)


def test_animated_gif_uses_its_first_frame(service_url):
    img, other = upright(), noise(1)
    animated = features(service_url, animated_gif(img, other))
    first_only = features(service_url, encode(img, "GIF"))
    second_only = features(service_url, encode(other, "GIF"))
    assert close(animated, first_only)
    assert not close(animated, second_only)


def test_sixteen_bit_and_cmyk_match_their_8bit_rgb_versions(service_url):
    img = upright()
    grey = img.convert("L")
    sixteen = Image.fromarray(np.asarray(grey, dtype=np.uint16) * 257)
    assert close(
        features(service_url, encode(sixteen, "PNG")),
        features(service_url, encode(grey.convert("RGB"), "PNG")),
    )
    # CMYK round trip through JPEG is lossy: near the RGB JPEG, much nearer than another fruit.
    rgb = features(service_url, encode(img, "JPEG", quality=95))
    cmyk = features(service_url, encode(img.convert("CMYK"), "JPEG", quality=95))
    kiwi = features(service_url, fixture_photos("Test", "Kiwi")[0].read_bytes())
    assert np.linalg.norm(cmyk - rgb) < 0.25 * np.linalg.norm(kiwi - rgb)


def test_file_over_the_limit_is_413(service_url):
    data = np.random.default_rng(3).bytes(LIMIT + 1)
    resp = post(service_url, data)
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "file_too_large"


def _raw_exchange(url: str, head: bytes, body_parts: list[bytes], timeout: float = 20) -> bytes:
    """Send a request over a plain socket, stopping early if the server answers; return reply."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(head)
        for part in body_parts:
            try:
                sock.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
        return reply


def test_declared_length_over_limit_is_refused_before_the_body_is_sent(service_url):
    # Declare 50 MB, send only the headers: the answer must come without waiting for the body.
    host = urlsplit(service_url).netloc
    head = (
        f"POST /v1/classify HTTP/1.1\r\nHost: {host}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\n"
        f"Content-Length: {50 * 1024 * 1024}\r\n\r\n"
    ).encode()
    reply = _raw_exchange(service_url, head, [], timeout=10)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b"file_too_large" in reply or b"content-length" in reply.lower()


def test_chunked_body_over_limit_is_cut_off_while_streaming(service_url):
    host = urlsplit(service_url).netloc
    head = (
        f"POST /v1/classify HTTP/1.1\r\nHost: {host}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    preamble = (
        b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n"
    )
    block = b"\xab" * (1024 * 1024)
    chunks = [b"%x\r\n%s\r\n" % (len(preamble), preamble)]
    # 12 MB in chunks: over the limit, and the client never sends the closing chunk.
    chunks += [b"%x\r\n%s\r\n" % (len(block), block)] * 12
    reply = _raw_exchange(service_url, head, chunks)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]


def test_service_still_answers_after_the_hostile_uploads(service_url):
    resp = post(service_url, fixture_photos("Test", "Kiwi")[0].read_bytes())
    assert resp.status_code == 200


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        lines = fh.read().splitlines()
    for line in lines:
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def test_decompression_bombs_do_not_raise_peak_memory(tight_service):
    # Decoded, these would need 30 GB, 300 MB and 12 GB: the peak RSS must not move.
    url, proc, _ = tight_service
    post(url, fixture_photos("Test", "Kiwi")[0].read_bytes())  # everything else warmed up
    before = peak_rss_mb(proc.pid)
    for _, data, status, _ in CASES:
        if status == 413:
            assert post(url, data).status_code == 413
    assert peak_rss_mb(proc.pid) - before < 50
