"""Regenerate the vendored speech corpus (gumbench/data/speech/) from Debian's Asterisk prompts.

    cd /tmp && apt-get download asterisk-core-sounds-en-wav asterisk-core-sounds-en
    python scripts/make_speech_corpus.py --debs /tmp            # extracts both with dpkg -x
    python scripts/make_speech_corpus.py --root /tmp/extracted  # or an already extracted tree

Selection (deterministic, independent of the FLAC encoder): every prompt of ``digits/``,
``letters/`` and ``phonetic/``, then the top-level prompts in alphabetical order, keeping
only prompts whose transcript is speech (not a bracketed ``[beep tone]``), until the total
duration would exceed ``--seconds`` (330 s by default, about 4.5 MB of FLAC). Each file is
resampled from 8 kHz to 16 kHz with scipy.signal.resample_poly (up 2, down 1), clipped to
[-1, 1] and written as 16-bit FLAC with soundfile; ``transcripts.tsv`` lists path, seconds
and transcript for every file written.
"""

from __future__ import annotations

import gzip
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np
import soundfile as sf
import typer
from scipy.signal import resample_poly

PACKAGES = ("asterisk-core-sounds-en-wav", "asterisk-core-sounds-en")
VOICE = "usr/share/asterisk/sounds/en_US_f_Allison"
TRANSCRIPTS = "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
SUBSETS = ("digits", "letters", "phonetic", "")  # "" = the top-level prompts
OUT = Path(__file__).resolve().parents[1] / "gumbench" / "data" / "speech"


def read_transcripts(root: Path) -> dict[str, str]:
    """``name: text`` lines (``;`` starts a comment) -> {name: text}."""
    out = {}
    for line in gzip.open(root / TRANSCRIPTS, "rt", encoding="utf-8"):
        if line.startswith(";") or ":" not in line:
            continue
        name, text = line.split(":", 1)
        out[name.strip()] = " ".join(text.split())
    return out


def is_speech(text: str) -> bool:
    return bool(text) and not (text.startswith("[") and text.endswith("]"))


def select(root: Path, transcripts: dict[str, str], budget: float) -> list[tuple[str, float]]:
    chosen, total = [], 0.0
    for subset in SUBSETS:
        folder = root / VOICE / subset
        for path in sorted(folder.glob("*.wav")):
            name = f"{subset}/{path.stem}" if subset else path.stem
            if not is_speech(transcripts.get(name, "")):
                continue
            seconds = sf.info(str(path)).duration
            if total + seconds > budget:
                return chosen
            chosen.append((name, seconds))
            total += seconds
    return chosen


def convert(source: Path, target: Path) -> float:
    wave, rate = sf.read(str(source), dtype="float64", always_2d=True)
    if rate != 8000:
        raise SystemExit(f"{source}: expected 8 kHz, found {rate} Hz")
    wave = np.clip(resample_poly(wave.mean(1), 2, 1), -1.0, 1.0)
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(target), wave, 16000, format="FLAC", subtype="PCM_16")
    return len(wave) / 16000


def extract(debs: Path, into: Path) -> Path:
    for package in PACKAGES:
        matches = sorted(debs.glob(f"{package}_*_all.deb"))
        if not matches:
            raise SystemExit(f"no {package}_*_all.deb in {debs}; run: apt-get download {' '.join(PACKAGES)}")
        subprocess.run(["dpkg", "-x", str(matches[-1]), str(into)], check=True)
    return into


def main(
    debs: Optional[Path] = typer.Option(None, "--debs", help="Folder holding the two downloaded .deb files."),
    root: Optional[Path] = typer.Option(None, "--root", help="A tree where both packages were extracted (dpkg -x)."),
    seconds: float = typer.Option(330.0, "--seconds", help="Duration budget."),
    out: Path = typer.Option(OUT, "--out", help="Corpus folder to write."),
) -> None:
    """Regenerate the vendored speech corpus from Debian's Asterisk prompts (give --debs or --root)."""
    if (debs is None) == (root is None):
        raise typer.BadParameter("give exactly one of --debs and --root")
    with tempfile.TemporaryDirectory() as tmp:
        root = extract(debs, Path(tmp)) if debs else root
        transcripts = read_transcripts(root)
        chosen = select(root, transcripts, seconds)
        lines = ["path\tseconds\ttranscript"]
        for name, _ in chosen:
            duration = convert(root / VOICE / f"{name}.wav", out / f"{name}.flac")
            lines.append(f"{name}.flac\t{duration:.5f}\t{transcripts[name]}")
        (out / "transcripts.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    size = sum(p.stat().st_size for p in out.rglob("*.flac"))
    total = sum(s for _, s in chosen)
    print(f"{len(chosen)} files, {total:.1f} s, {size / 1e6:.2f} MB of FLAC in {out}")


if __name__ == "__main__":
    typer.run(main)
