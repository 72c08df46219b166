"""Is the Hugging Face hub usable right now? Asked before a run needs it, so that an offline
machine fails at once instead of after a minute of download retries."""
from __future__ import annotations

import functools
import os
import socket
import threading
import urllib.parse
import urllib.request

OFFLINE_VARS = {"model": ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"),
                "dataset": ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}


def offline_reason(kind: str) -> str | None:
    """Why the hub cannot serve a ``kind`` ('model' or 'dataset') now; None when it can."""
    for var in OFFLINE_VARS[kind]:
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{var} is set"
    if not reachable():
        return "the Hugging Face hub is unreachable (offline)"
    return None


@functools.lru_cache(maxsize=1)
def reachable(timeout_s: float = 3.0) -> bool:
    """One TCP connection to the hub (or the proxy that leads there), bounded in time even
    when name resolution hangs."""
    from huggingface_hub import constants

    url = urllib.parse.urlparse(constants.ENDPOINT)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(url.hostname or ""):
        url = urllib.parse.urlparse(proxy)
    port = url.port or (443 if url.scheme == "https" else 80)
    answered = []

    def probe():
        try:
            socket.create_connection((url.hostname, port), timeout=timeout_s).close()
            answered.append(True)
        except (OSError, UnicodeError):
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s + 1)
    return bool(answered)
