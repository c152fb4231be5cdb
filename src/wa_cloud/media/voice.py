"""Voice notes: any audio ffmpeg reads, converted to the mono Opus in OGG that WhatsApp plays as
a voice note (the ffmpeg of the imageio-ffmpeg wheel, through pydub)."""

from __future__ import annotations

import functools
import io
import subprocess
import tempfile
import warnings
from typing import Final

import imageio_ffmpeg

from wa_cloud.errors import WaCloudError

with warnings.catch_warnings():
    # pydub imports `audioop` (deprecated since Python 3.11) and looks for ffmpeg on PATH when
    # imported; we hand it the ffmpeg of the imageio-ffmpeg wheel instead (see `_ffmpeg`).
    warnings.filterwarnings("ignore", ".*audioop", DeprecationWarning)
    warnings.filterwarnings("ignore", "Couldn't find ffmpeg", RuntimeWarning)
    from pydub import AudioSegment


VOICE_SAMPLE_RATE: Final = 48_000
VOICE_BITRATE: Final = "32k"  # WhatsApp's own voice notes are mono Opus at about this rate
CONVERSION_TIMEOUT_SECONDS: Final = 120.0


class AudioConversionError(WaCloudError):
    """The input is not audio ffmpeg can read, or the conversion failed."""


@functools.cache
def _ffmpeg() -> str:
    """The ffmpeg binary shipped in the imageio-ffmpeg wheel, handed to pydub once."""
    executable: str = imageio_ffmpeg.get_ffmpeg_exe()
    AudioSegment.converter = executable
    return executable


def _decode(content: bytes) -> AudioSegment:
    """Any audio ffmpeg reads, as 16-bit mono PCM at 48 kHz.

    pydub's own `from_file` runs ffprobe first, which the wheel does not ship; ffmpeg decodes to
    raw PCM here instead, so ffmpeg is the only binary needed.
    """
    # A file, not a pipe: MP4/M4A keep their index at the end, and ffmpeg must seek to it.
    with tempfile.NamedTemporaryFile(suffix=".audio") as source:
        source.write(content)
        source.flush()
        command = [_ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error"]
        command += ["-i", source.name, "-vn", "-ac", "1", "-ar", str(VOICE_SAMPLE_RATE)]
        command += ["-f", "s16le", "pipe:1"]
        try:
            done = subprocess.run(command, capture_output=True, timeout=CONVERSION_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired as exc:
            raise AudioConversionError("decoding the audio took too long") from exc
    if done.returncode != 0 or not done.stdout:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise AudioConversionError(reason[-1] if reason else "no audio stream found")
    return AudioSegment(data=done.stdout, sample_width=2, frame_rate=VOICE_SAMPLE_RATE, channels=1)


def to_voice_note(content: bytes) -> bytes:
    """Any audio, as WhatsApp plays a voice note: OGG container, Opus codec, mono, 48 kHz.

    Blocking (runs ffmpeg twice): call it through `asyncio.to_thread`.
    """
    _ffmpeg()
    segment = _decode(content).set_channels(1).set_frame_rate(VOICE_SAMPLE_RATE)
    out = io.BytesIO()
    try:
        segment.export(
            out,
            format="ogg",
            codec="libopus",
            bitrate=VOICE_BITRATE,
            parameters=["-ac", "1", "-ar", str(VOICE_SAMPLE_RATE), "-application", "voip"],
        )
    except Exception as exc:  # pydub raises CouldntEncodeError or OSError, both untyped here
        raise AudioConversionError(f"encoding Opus failed: {type(exc).__name__}") from exc
    return out.getvalue()


def to_mp3(content: bytes) -> bytes:
    """Any audio as MP3 (what a reader of audio that takes no AMR or Opus-in-MP4 gets).

    Blocking: call it through `asyncio.to_thread`.
    """
    _ffmpeg()
    out = io.BytesIO()
    try:
        _decode(content).export(out, format="mp3", bitrate="64k")
    except Exception as exc:  # as above
        raise AudioConversionError(f"encoding MP3 failed: {type(exc).__name__}") from exc
    return out.getvalue()
