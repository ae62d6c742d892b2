"""HTTP(S) download of a registry checkpoint into a partial file, resumable.

The only module of the package that opens a network connection; it is called only from
:func:`.weights_store.download_checkpoint`, which the user runs explicitly
(``samfewshot weights download NAME``) and which verifies the file before it enters the store.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable

from ..progress import CancelToken
from .checkpoints import Checkpoint

Progress = Callable[[str, int, int], None]


class DownloadError(ValueError):
    """A download that could not finish (network, HTTP status, interruption): one line."""


def fetch_resumable(
    entry: Checkpoint, part: Path, *, progress: Progress, cancel: CancelToken | None, chunk_size: int, timeout: float
) -> None:
    """Download ``entry.url`` into ``part``, resuming from the bytes ``part`` already holds
    (HTTP ``Range``; a server that ignores it restarts the file). Progress in bytes; cancel is
    honoured between chunks and keeps ``part`` for a later resume. Verification is the caller's.

    Raises:
        DownloadError: network failure, HTTP error status, or the connection closed early.
    """
    expected = entry.size
    offset = part.stat().st_size if part.exists() else 0
    if expected is not None and offset > expected:
        part.unlink()
        offset = 0
    if expected is not None and offset == expected:
        return
    headers = {"User-Agent": "samfewshot", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(entry.url, headers=headers)
    host = urllib.parse.urlsplit(entry.url).netloc
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            return  # the partial file already holds everything the server has: verification decides
        raise DownloadError(
            f"Download of {entry.name} from {entry.url} failed: HTTP {error.code} {error.reason}"
        ) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(f"Cannot download {entry.name}: {host} not reachable ({reason})") from None
    with response:
        status = getattr(response, "status", 200)
        if offset and status == 206:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                raise DownloadError(
                    f"Download of {entry.name}: server answered range {content_range!r} to a resume from byte {offset}"
                )
        elif offset:
            offset = 0  # the server ignored the Range header: start again
        length = response.headers.get("Content-Length", "")
        end = offset + int(length) if length.isdigit() else None  # bytes the file should hold after this response
        total = expected or end or 0
        done = offset
        step = max(chunk_size, total // 200)  # at most ~200 progress reports
        reported = done
        with part.open("ab" if offset else "wb") as out:
            while True:
                if cancel is not None:
                    cancel.raise_if_cancelled()
                try:
                    chunk = response.read(chunk_size)
                except (OSError, ValueError, http.client.HTTPException) as error:  # reset, timeout, IncompleteRead
                    raise DownloadError(_interrupted(entry, done, total, error)) from None
                if not chunk:
                    break
                out.write(chunk)
                done += len(chunk)
                if done - reported >= step or done == total:
                    progress("download", done, total or done)
                    reported = done
    if (end is not None and done < end) or (expected is not None and done < expected):
        raise DownloadError(_interrupted(entry, done, total, "connection closed early"))


def _interrupted(entry: Checkpoint, done: int, total: int, reason) -> str:
    return (
        f"Download of {entry.name} interrupted after {done} of {total or '?'} bytes ({reason}); "
        f"run `samfewshot weights download {entry.name}` again to resume"
    )
