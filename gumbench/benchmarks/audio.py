"""Speech audio: the vendored corpus, folders of WAV/FLAC, and log-mel features.

Audio is read with soundfile, mixed down to mono and resampled to 16 kHz with
``scipy.signal.resample_poly`` when a file has another rate. Without ``audio_dir`` the
corpus is the one vendored in ``gumbench/data/speech`` (214 English prompts by Allison
Smith from Debian's ``asterisk-core-sounds-en-wav``, 329.5 s, CC-BY-SA-3.0; see the
ATTRIBUTION.md beside it). Any folder of ``.wav``/``.flac`` files works instead,
searched recursively (LibriSpeech's speaker/chapter tree included).

Log-mel features: power spectrum of Hann-windowed frames (``torch.stft``, 25 ms
window, 10 ms hop, no centring), a triangular mel filterbank on the HTK mel scale
mel(f) = 2595 log10(1 + f / 700) with unit-height triangles (no area normalization),
and log(mel energy + 1e-6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from gumbench.errors import GumbenchError
from gumbench.plugin import Range, check_number

SAMPLE_RATE = 16_000
AUDIO_SUFFIXES = (".wav", ".flac")
VENDORED = Path(__file__).resolve().parents[1] / "data" / "speech"
DEFAULT_MAX_SECONDS = 1800.0
# Audio read into memory: 4 hours of 16 kHz float32 are 0.9 GiB.
MAX_SECONDS = Range(0, 14_400, low_open=True, meaning="seconds of audio read")


@dataclass(frozen=True)
class Utterance:
    path: str  # relative to the corpus folder
    wave: torch.Tensor  # (samples,) float32 at 16 kHz, mono
    transcript: str | None = None

    @property
    def seconds(self) -> float:
        return len(self.wave) / SAMPLE_RATE


def corpus_dir(audio_dir: str | Path | None = None) -> Path:
    """The folder to read: ``audio_dir`` if given (and not ""), else the vendored corpus."""
    if audio_dir is None or str(audio_dir) == "":
        return VENDORED
    return Path(audio_dir).expanduser()


def audio_files(audio_dir: str | Path | None = None) -> list[Path]:
    """Every .wav/.flac file under the folder (recursive, sorted); a GumbenchError if none."""
    folder = corpus_dir(audio_dir)
    if not folder.exists():
        raise GumbenchError(
            f"audio folder {str(folder)!r} does not exist; --audio-dir takes a folder of .wav or .flac files"
        )
    if not folder.is_dir():
        raise GumbenchError(f"{str(folder)!r} is not a folder; --audio-dir takes a folder of .wav or .flac files")
    try:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    except OSError as exc:
        raise GumbenchError(f"cannot read audio folder {str(folder)!r}: {exc.strerror or exc}") from None
    if not files:
        raise GumbenchError(f"no .wav or .flac files in {str(folder)!r} (searched recursively)")
    return files


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE, max_seconds: float | None = None) -> torch.Tensor:
    """One file (its first ``max_seconds``, if given) as a mono float32 tensor at ``sample_rate``;
    a GumbenchError if it cannot be decoded."""
    import soundfile as sf
    from scipy.signal import resample_poly

    try:
        frames = -1 if max_seconds is None else math.ceil(max_seconds * sf.info(str(path)).samplerate) + 1
        wave, rate = sf.read(str(path), frames=frames, dtype="float32", always_2d=True)
    except (RuntimeError, OSError, sf.SoundFileError) as exc:  # LibsndfileError derives from SoundFileError
        raise GumbenchError(f"cannot read audio file {str(path)!r}: {exc}") from None
    wave = wave.mean(axis=1)
    if rate != sample_rate:
        common = math.gcd(int(rate), int(sample_rate))
        wave = resample_poly(wave, sample_rate // common, int(rate) // common).astype("float32")
    return torch.from_numpy(wave.copy())


def _transcripts(folder: Path) -> dict[str, str]:
    table = folder / "transcripts.tsv"
    if not table.is_file():
        return {}
    out = {}
    try:
        text = table.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise GumbenchError(
            f"{table} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
        ) from None
    for line in text.splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) == 3:
            out[parts[0]] = parts[2]
    return out


def load_corpus(audio_dir: str | Path | None = None, *, max_seconds: float = DEFAULT_MAX_SECONDS) -> list[Utterance]:
    """Utterances of a folder (vendored corpus by default) in sorted path order, at most ``max_seconds`` in all.

    Files are taken in order until the next would pass ``max_seconds`` (at most 14,400: a
    LibriSpeech folder does not fill the memory; of a first file longer than that, only its first
    ``max_seconds`` are read); empty files are skipped. Results are cached per folder
    (the waveforms are shared: copy before changing one in place).
    """
    max_seconds = check_number("load_corpus", "max_seconds", max_seconds, MAX_SECONDS)
    folder = corpus_dir(audio_dir)
    return list(_load_corpus(str(folder.resolve() if folder.exists() else folder), float(max_seconds)))


@lru_cache(maxsize=4)
def _load_corpus(folder: str, max_seconds: float) -> tuple[Utterance, ...]:
    files = audio_files(folder)
    root = Path(folder)
    transcripts = _transcripts(root)
    out, total = [], 0.0
    for path in files:
        wave = load_audio(path, max_seconds=max_seconds)
        if len(wave) == 0:
            continue
        if total + len(wave) / SAMPLE_RATE > max_seconds and out:
            break
        relative = path.relative_to(root).as_posix()
        out.append(Utterance(relative, wave, transcripts.get(relative)))
        total += len(wave) / SAMPLE_RATE
    if not out:
        raise GumbenchError(f"every .wav or .flac file in {folder!r} is empty")
    return tuple(out)


def split_corpus(utterances: list[Utterance], every: int = 10) -> tuple[list[Utterance], list[Utterance]]:
    """(train, held-out): every ``every``-th utterance, from index ``every // 2`` (the 6th of 10), is held out for
    evaluation."""
    held = [u for i, u in enumerate(utterances) if i % every == every // 2]
    train = [u for i, u in enumerate(utterances) if i % every != every // 2]
    if not held or not train:  # a tiny folder: evaluate on what there is
        return list(utterances), list(utterances)
    return train, held


# --- log-mel features ------------------------------------------------------------------

def hz_to_mel(hz):
    """HTK mel scale: 2595 log10(1 + f / 700)."""
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(hz, dtype=torch.float64) / 700.0)


def mel_to_hz(mel):
    return 700.0 * (10.0 ** (torch.as_tensor(mel, dtype=torch.float64) / 2595.0) - 1.0)


def mel_filterbank(
    n_fft: int, n_mels: int, sample_rate: int = SAMPLE_RATE, f_min: float = 0.0, f_max: float | None = None
) -> torch.Tensor:
    """Triangular filters on the HTK mel scale, shape (n_mels, n_fft // 2 + 1), peak height 1.

    Filter m rises linearly from centre m-1 to centre m and falls to centre m+1, the
    n_mels + 2 centres equally spaced in mel between f_min and f_max (Nyquist by default).
    Between the first and last centres the filters sum to 1 at every frequency.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise GumbenchError(
            f"mel filterbank needs 0 <= f_min < f_max <= {sample_rate / 2:g} Hz, got {f_min:g} and {f_max:g}"
        )
    if n_mels < 1 or n_fft < 2:
        raise GumbenchError(f"mel filterbank needs n_mels >= 1 and n_fft >= 2, got {n_mels} and {n_fft}")
    centres = mel_to_hz(
        torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2, dtype=torch.float64)
    )
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    low, mid, high = centres[:-2, None], centres[1:-1, None], centres[2:, None]
    rising = (freqs - low) / (mid - low)
    falling = (high - freqs) / (high - mid)
    return torch.minimum(rising, falling).clamp_min(0).float()


def power_spectrum(wave: torch.Tensor, n_fft: int = 400, hop: int = 160) -> torch.Tensor:
    """|STFT|^2 of Hann-windowed (periodic) frames, no centring: (..., frames, n_fft // 2 + 1)."""
    if wave.shape[-1] < n_fft:
        raise GumbenchError(f"audio of {wave.shape[-1]} samples is shorter than one {n_fft}-sample frame")
    spec = torch.stft(
        wave,
        n_fft,
        hop_length=hop,
        window=torch.hann_window(n_fft, dtype=wave.dtype, device=wave.device),
        center=False,
        return_complex=True,
    )
    return spec.abs().pow(2).transpose(-1, -2)


def log_mel(wave: torch.Tensor, *, sample_rate: int = SAMPLE_RATE, n_fft: int = 400, hop: int = 160, n_mels: int = 40,
            f_min: float = 0.0, f_max: float | None = None) -> torch.Tensor:
    """log(mel energies + 1e-6) of a waveform (..., samples) -> (..., frames, n_mels); 25 ms / 10 ms at 16 kHz."""
    bank = mel_filterbank(n_fft, n_mels, sample_rate, f_min, f_max).to(wave.dtype)
    return torch.log(power_spectrum(wave, n_fft, hop) @ bank.T + 1e-6)


def log_mel_utterances(waves: list[torch.Tensor], *, n_fft: int = 400, hop: int = 160, **kwargs) -> list[torch.Tensor]:
    """:func:`log_mel` of each waveform, (frames_i, n_mels) each, from one STFT call.

    Each waveform is zero-padded to a multiple of ``hop`` and all are joined, so every
    utterance starts on a frame boundary; only frames lying wholly inside an utterance are
    kept, which are exactly the frames of :func:`log_mel` on that utterance alone.
    Utterances shorter than one frame give (0, n_mels).
    """
    lengths = [len(w) for w in waves]
    padded = [-(-n // hop) * hop for n in lengths]
    joined = torch.cat([_pad_right(w, p - len(w)) for w, p in zip(waves, padded)] + [torch.zeros(n_fft)])
    features = log_mel(joined, n_fft=n_fft, hop=hop, **kwargs)
    out, start = [], 0
    for n, p in zip(lengths, padded):
        count = max(0, (n - n_fft) // hop + 1)
        out.append(features[start // hop : start // hop + count])
        start += p
    return out


def _pad_right(wave: torch.Tensor, extra: int) -> torch.Tensor:
    return torch.nn.functional.pad(wave, (0, extra)) if extra else wave
