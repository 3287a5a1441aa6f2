"""Progress reports from a job: the `::haco-progress` marker line and the HACO_PROGRESS_FILE file.

A marker is a whole line of stdout or stderr that starts at the beginning of the line:

    ::haco-progress 0.42 "compiling"      (fraction 0..1, then an optional message)
    ::haco-progress 42% compiling         (a percentage; the message may be bare text)

Marker lines are not part of the log. A line that starts with the prefix but does not parse is kept
in the log as ordinary output, so a typo shows. The file named by HACO_PROGRESS_FILE holds the same
text without the prefix (`0.42 "compiling"`), or a JSON object `{"fraction": 0.42, "message": "..."}`;
the job rewrites it whenever it likes and the latest content counts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

MARKER: Final = b"::haco-progress "
MARKER_LINE_MAX: Final = 1024  #: a longer line is never a marker
MESSAGE_CHARS_MAX: Final = 200


@dataclass(frozen=True, slots=True)
class Progress:
    fraction: float  #: 0.0 to 1.0
    message: str
    t_ms: int  #: when the job reported it (epoch ms)

    def to_json(self) -> dict[str, Any]:
        return {"fraction": self.fraction, "message": self.message, "t_ms": self.t_ms}


def parse_progress(text: str, t_ms: int) -> Progress | None:
    """`0.42 "msg"`, `42% msg` or `{"fraction": .., "message": ..}`; None when it does not parse."""
    text = text.strip()
    if not text:
        return None
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError:
            return None
        if not isinstance(obj, dict):
            return None
        return _progress(obj.get("fraction"), obj.get("message", ""), t_ms)
    number, _, rest = text.partition(" ")
    try:
        value = float(number[:-1]) / 100.0 if number.endswith("%") else float(number)
    except ValueError:
        return None
    rest = rest.strip()
    if rest.startswith('"'):
        try:
            message: Any = json.loads(rest)
        except ValueError:
            message = rest.strip('"')
    else:
        message = rest
    return _progress(value, message, t_ms)


def _progress(fraction: Any, message: Any, t_ms: int) -> Progress | None:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not math.isfinite(fraction):
        return None
    if not 0.0 <= fraction <= 1.0:
        return None
    if not isinstance(message, str):
        message = str(message)
    return Progress(float(fraction), message[:MESSAGE_CHARS_MAX], t_ms)


def progress_from_json(value: Any) -> Progress | None:
    """A `progress.json` map back into a Progress (None when malformed)."""
    if not isinstance(value, dict) or not isinstance(value.get("t_ms"), int):
        return None
    return _progress(value.get("fraction"), value.get("message", ""), value["t_ms"])


class MarkerFilter:
    """Splits one stream's bytes into log output and marker lines, across arbitrary chunk cuts.

    Only a line starting with a prefix of MARKER is held back, until its newline arrives (at most
    MARKER_LINE_MAX bytes); everything else passes through at once. `take(body)` is called with
    each marker line's text after the prefix and says whether it was one (False: the line is output).
    """

    __slots__ = ("_held", "_line_start", "_take")

    def __init__(self, take: Callable[[bytes], bool]) -> None:
        self._held = b""
        self._line_start = True
        self._take = take

    def feed(self, data: bytes) -> bytes:
        """The output bytes of the next chunk, marker lines taken out."""
        buf = self._held + data if self._held else data
        self._held = b""
        out: list[bytes] = []
        i, n = 0, len(buf)
        while i < n:
            if self._line_start and buf[i] == 0x3A:  # ':' at a line start: maybe a marker
                nl = buf.find(b"\n", i)
                line = buf[i:] if nl < 0 else buf[i:nl]
                prefix_ok = line[:len(MARKER)] == MARKER[:len(line)]
                if nl < 0 and prefix_ok and len(line) <= MARKER_LINE_MAX:
                    self._held = line  # wait for the rest of the line
                    break
                if nl >= 0 and prefix_ok and len(MARKER) <= len(line) <= MARKER_LINE_MAX and \
                        self._take(line[len(MARKER):]):
                    i = nl + 1
                    continue
            # plain output up to the next place a marker could start
            nxt = buf.find(b"\n:", i)
            if nxt < 0:
                out.append(buf[i:])
                self._line_start = buf[n - 1] == 0x0A
                break
            out.append(buf[i:nxt + 1])
            i = nxt + 1
            self._line_start = True
        return b"".join(out)

    def flush(self) -> bytes:
        """What is held back at the end of the stream: a marker without its newline, or output."""
        held, self._held = self._held, b""
        if len(held) > len(MARKER) and held.startswith(MARKER) and self._take(held[len(MARKER):]):
            return b""
        return held


__all__ = ["MARKER", "MARKER_LINE_MAX", "MarkerFilter", "Progress", "parse_progress", "progress_from_json"]
