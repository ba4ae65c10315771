"""Audio loading, the vendored corpus and log-mel features, against values computed by hand."""

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from gumbench.benchmarks.audio import (
    SAMPLE_RATE,
    VENDORED,
    audio_files,
    hz_to_mel,
    load_audio,
    load_corpus,
    log_mel,
    log_mel_utterances,
    mel_filterbank,
    mel_to_hz,
    power_spectrum,
    split_corpus,
)
from gumbench.errors import GumbenchError

# Figures of the vendored subset, fixed by scripts/make_speech_corpus.py
CORPUS_FILES = 214
CORPUS_SECONDS = 329.530875  # sum of the 8 kHz originals' durations; exact after 2x upsampling


def test_vendored_corpus_has_the_expected_files_rate_and_duration():
    files = audio_files()
    assert len(files) == CORPUS_FILES
    assert all(f.suffix == ".flac" for f in files)
    info = sf.info(str(VENDORED / "digits" / "1.flac"))
    assert (info.samplerate, info.channels, info.format, info.subtype) == (16000, 1, "FLAC", "PCM_16")
    corpus = load_corpus()
    assert len(corpus) == CORPUS_FILES
    assert sum(u.seconds for u in corpus) == pytest.approx(CORPUS_SECONDS, abs=1e-9)
    one = next(u for u in corpus if u.path == "digits/1.flac")
    assert len(one.wave) == 2 * 7290  # the 8 kHz original has 7290 samples
    assert one.wave.dtype == torch.float32 and one.transcript == "one"
    assert all(u.wave.abs().max() <= 1 for u in corpus)


def test_vendored_corpus_is_small_and_attributed():
    size = sum(p.stat().st_size for p in VENDORED.rglob("*") if p.is_file())
    assert size <= 5_000_000
    note = (VENDORED / "ATTRIBUTION.md").read_text()
    for fact in ("CC-BY-SA-3.0", "Allison Smith", "asterisk-core-sounds-en-wav", "1.6.1-1", "resample_poly"):
        assert fact in note
    rows = (VENDORED / "transcripts.tsv").read_text().splitlines()
    assert rows[0] == "path\tseconds\ttranscript" and len(rows) == CORPUS_FILES + 1


def test_folder_of_wav_and_flac_is_read_recursively_mixed_to_mono_and_resampled(tmp_path):
    t = np.arange(8000) / 8000
    tone = 0.5 * np.sin(2 * np.pi * 1000 * t)  # 1 kHz at 8 kHz for 1 s
    sf.write(str(tmp_path / "a.wav"), tone, 8000)
    (tmp_path / "deeper").mkdir()
    sf.write(str(tmp_path / "deeper" / "b.flac"), np.stack([tone, np.zeros_like(tone)], 1), 16000)  # stereo, 0.5 s
    (tmp_path / "notes.txt").write_text("not audio")
    corpus = load_corpus(tmp_path)
    assert [u.path for u in corpus] == ["a.wav", "deeper/b.flac"]
    a, b = corpus[0].wave, corpus[1].wave
    assert len(a) == 16000 and len(b) == 8000
    # the tone keeps its frequency: 1 kHz is bin 1000 / (16000 / 400) = 25 of a 400-point spectrum
    assert int(power_spectrum(a[4000:4400]).argmax()) == 25
    torch.testing.assert_close(b, torch.tensor(tone / 2, dtype=torch.float32), atol=1e-4, rtol=0)  # mean of L and R


def test_max_seconds_stops_before_the_budget(tmp_path):
    for name in ("a", "b", "c"):
        sf.write(str(tmp_path / f"{name}.wav"), np.zeros(16000) + 0.1, 16000)
    assert len(load_corpus(tmp_path, max_seconds=2.5)) == 2
    assert len(load_corpus(tmp_path, max_seconds=0.5)) == 1  # at least one file
    with pytest.raises(GumbenchError, match="max_seconds"):
        load_corpus(tmp_path, max_seconds=0)


def test_bad_folders_give_clear_errors(tmp_path):
    with pytest.raises(GumbenchError, match="does not exist"):
        audio_files(tmp_path / "missing")
    (tmp_path / "file.wav").write_bytes(b"")
    with pytest.raises(GumbenchError, match="is not a folder"):
        audio_files(tmp_path / "file.wav")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GumbenchError, match="no .wav or .flac files"):
        audio_files(empty)
    (empty / "readme.txt").write_text("text only")
    with pytest.raises(GumbenchError, match="no .wav or .flac files"):
        load_corpus(empty)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "noise.wav").write_bytes(b"RIFF this is not a wave file")
    with pytest.raises(GumbenchError, match="cannot read audio file .*noise.wav"):
        load_corpus(broken)
    silent = tmp_path / "silent"
    silent.mkdir()
    sf.write(str(silent / "zero.wav"), np.zeros(0), 16000)
    with pytest.raises(GumbenchError, match="empty"):
        load_corpus(silent)


def test_max_seconds_is_bounded_and_a_long_first_file_is_read_only_that_far(tmp_path):
    for bad in (math.inf, math.nan, 0, 14_401):
        with pytest.raises(GumbenchError) as caught:
            load_corpus(tmp_path, max_seconds=bad)
        assert str(caught.value) == (
            f"load_corpus: max_seconds (seconds of audio read) must be a finite number in (0, 14400], "
            f"got {float(bad)!r}"
        )
    sf.write(str(tmp_path / "long.wav"), np.zeros(3 * SAMPLE_RATE, dtype="float32") + 0.1, SAMPLE_RATE)
    (utterance,) = load_corpus(tmp_path, max_seconds=0.5)
    assert 0.5 <= utterance.seconds <= 0.5 + 2 / SAMPLE_RATE
    assert len(load_audio(tmp_path / "long.wav")) == 3 * SAMPLE_RATE


def test_split_holds_out_every_tenth_utterance():
    corpus = load_corpus()
    train, held = split_corpus(corpus)
    assert len(held) == 21 and len(train) == CORPUS_FILES - 21  # indices 5, 15, ..., 205
    assert held[0].path == corpus[5].path and not {u.path for u in held} & {u.path for u in train}


def test_htk_mel_scale_by_hand():
    assert float(hz_to_mel(700.0)) == pytest.approx(2595 * math.log10(2))
    assert float(hz_to_mel(0.0)) == 0.0
    assert float(mel_to_hz(hz_to_mel(1234.5))) == pytest.approx(1234.5)


def test_mel_filterbank_by_hand():
    # n_fft = 8 at 8 Hz: bins at 0, 1, 2, 3, 4 Hz; one filter from 0 to 4 Hz, centre at
    # mel^-1(mel(4)/2) = 700 (sqrt(1 + 4/700) - 1) Hz
    centre = 700 * (math.sqrt(1 + 4 / 700) - 1)
    bank = mel_filterbank(8, 1, sample_rate=8, f_min=0, f_max=4)
    expected = torch.tensor([[0, 1 / centre, 2 / centre, (4 - 3) / (4 - centre), 0]])
    expected[0, 2] = (4 - 2) / (4 - centre)  # 2 Hz lies above the centre (1.994 Hz): falling edge
    torch.testing.assert_close(bank, expected.float())
    # 40 filters up to 4 kHz: unit peaks, and they sum to 1 between the first and last centres
    bank = mel_filterbank(400, 40, f_max=4000)
    assert bank.shape == (40, 201)
    centres = mel_to_hz(torch.linspace(0, float(hz_to_mel(4000)), 42))
    freqs = torch.linspace(0, 8000, 201)
    inside = (freqs >= centres[1]) & (freqs <= centres[-2])
    torch.testing.assert_close(bank[:, inside].sum(0), torch.ones(int(inside.sum())), atol=1e-5, rtol=0)
    assert float(bank[:, freqs > 4000].abs().max()) == 0
    with pytest.raises(GumbenchError, match="f_max"):
        mel_filterbank(400, 40, f_max=9000)


def test_power_spectrum_of_a_cosine_on_a_bin_by_hand():
    # x = cos(2 pi k n / N) with a periodic Hann window: X[k] = N/4, X[k +- 1] = -N/8, 0 elsewhere
    n, k = 400, 25
    frame = torch.cos(2 * math.pi * k * torch.arange(n, dtype=torch.float64) / n)
    power = power_spectrum(frame, n_fft=n, hop=160)[0]
    assert float(power[k]) == pytest.approx((n / 4) ** 2)
    assert float(power[k - 1]) == pytest.approx((n / 8) ** 2) and float(power[k + 1]) == pytest.approx((n / 8) ** 2)
    rest = torch.ones(201, dtype=torch.bool)
    rest[k - 1 : k + 2] = False
    assert float(power[rest].max()) < 1e-12


def test_log_mel_frames_and_silence():
    wave = torch.zeros(16000)
    features = log_mel(wave)
    assert features.shape == (1 + (16000 - 400) // 160, 40)  # 25 ms windows every 10 ms, no centring
    torch.testing.assert_close(features, torch.full_like(features, math.log(1e-6)))
    with pytest.raises(GumbenchError, match="shorter than one"):
        log_mel(torch.zeros(100))


def test_log_mel_of_many_utterances_equals_one_by_one():
    waves = [u.wave for u in load_corpus()[:12]] + [torch.zeros(50)]
    joined = log_mel_utterances(waves, f_max=4000)
    for wave, features in zip(waves[:-1], joined):
        torch.testing.assert_close(features, log_mel(wave, f_max=4000))
    assert joined[-1].shape == (0, 40)
