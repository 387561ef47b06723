"""Run a test's body in several threads and fail the test with the first thread's error."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any


def run_threads(target: Callable[..., None], args: Iterable[tuple[Any, ...]]) -> None:
    """One thread per argument tuple, all started, then joined; an exception raised in any of
    them (an assertion included) is raised here, the first one."""
    errors: list[BaseException] = []

    def guarded(*a: Any) -> None:
        try:
            target(*a)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=a) for a in args]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
