#!/usr/bin/env python3
"""faster-whisper reference driver for hotline benchmarks.

Runs the same CTranslate2 Whisper models that `hotline model fetch` produces
(model.bin, config.json, vocabulary.txt, tokenizer.json) through faster-whisper
so its speed and accuracy can be compared with the whisper.cpp recognizer.
Never touches the Hugging Face hub: the model is always a local directory.

Modes
  transcribe MODEL_DIR FILE...      timing per file, JSON line per file
  eval       MANIFEST MODEL_DIR     per-clip and corpus CER (zh) / WER (en)
  segments   SEGMENTS_JSON MODEL_DIR  transcribe slices [{file,start_ms,end_ms}]
  selftest                          check the G.711 mu-law codec and resampler

Decoding is greedy/beam search at temperature 0 only (no temperature
fallback unless --fallback), vad_filter off unless --vad. Timings are wall clock of
transcribe() plus draining the segment generator (feature extraction, language
detection if --language auto, encoder and decoder), excluding model load and
audio loading/--telephone processing. One warm-up decode runs before timing.

Install: python3 -m venv .venv-bench && .venv-bench/bin/pip install -r benches/requirements-bench.txt
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before faster_whisper / huggingface_hub import
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import argparse
import csv
import json
import statistics
import sys
import time
import unicodedata
import wave

import numpy as np

SR = 16000


# --------------------------------------------------------------------------
# audio

def load_audio(path):
    """16 kHz mono float32 in [-1, 1). s16 mono 16 kHz WAV is read directly;
    anything else goes through faster_whisper.decode_audio (PyAV)."""
    try:
        with wave.open(path, "rb") as w:
            if (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, SR):
                pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
                return pcm.astype(np.float32) / 32768.0
    except (wave.Error, EOFError):
        pass
    from faster_whisper import decode_audio

    return decode_audio(path, sampling_rate=SR)


# ---- G.711 mu-law, bit-exact with the ITU-T G.711 table (Sun g711.c) -------

_BIAS = 0x84
_CLIP = 8159  # 14-bit magnitude clip
_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])


def ulaw_encode(pcm16):
    """int16 array -> uint8 mu-law codes."""
    x = np.asarray(pcm16, dtype=np.int32) >> 2  # 14-bit, arithmetic shift
    neg = x < 0
    mag = np.where(neg, -x, x)
    mag = np.minimum(mag, _CLIP) + (_BIAS >> 2)
    seg = np.searchsorted(_SEG_END, mag)  # first seg with mag <= SEG_END[seg]
    u = (seg << 4) | ((mag >> np.minimum(seg + 1, 8)) & 0x0F)
    u = np.where(seg >= 8, 0x7F, u)  # beyond the last segment: full scale
    mask = np.where(neg, 0x7F, 0xFF)
    return (u ^ mask).astype(np.uint8)


def ulaw_decode(codes):
    """uint8 mu-law codes -> int16 linear (16-bit scale, |x| <= 32124)."""
    u = ~np.asarray(codes, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + _BIAS) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _BIAS - t, t - _BIAS).astype(np.int16)


# ---- 2:1 resampling with a fixed Kaiser-windowed-sinc FIR ------------------
# Pure numpy and always the same filter, so results do not depend on whether
# scipy happens to be installed. 129 taps, cutoff 3.7 kHz at 16 kHz,
# Kaiser beta 8 (~80 dB stopband from ~4 kHz).

def _lowpass(numtaps=129, cutoff_hz=3700.0, fs=SR, beta=8.0):
    n = np.arange(numtaps) - (numtaps - 1) / 2
    h = 2 * cutoff_hz / fs * np.sinc(2 * cutoff_hz / fs * n) * np.kaiser(numtaps, beta)
    return h / h.sum()


_H = _lowpass()


def downsample_16k_to_8k(x):
    return np.convolve(x, _H, mode="same")[::2]


def upsample_8k_to_16k(y, n_out):
    z = np.zeros(len(y) * 2, dtype=np.float64)
    z[::2] = y
    return (2.0 * np.convolve(z, _H, mode="same"))[:n_out]


def telephone(audio):
    """16 kHz float -> 8 kHz -> G.711 mu-law -> 8 kHz -> 16 kHz float."""
    x8 = downsample_16k_to_8k(audio.astype(np.float64) * 32768.0)
    pcm8 = np.clip(np.rint(x8), -32768, 32767).astype(np.int16)
    lin8 = ulaw_decode(ulaw_encode(pcm8)).astype(np.float64)
    return (upsample_8k_to_16k(lin8, len(audio)) / 32768.0).astype(np.float32)


def selftest():
    codes = np.arange(256, dtype=np.uint8)
    lin = ulaw_decode(codes)
    # ITU table anchors: 0x00 -> -32124, 0x80 -> +32124, 0xFF/0x7F -> 0
    assert lin[0x00] == -32124 and lin[0x80] == 32124, (lin[0x00], lin[0x80])
    assert lin[0xFF] == 0 and lin[0x7F] == 0
    assert lin[0xFE] == 8 and lin[0x7E] == -8
    back = ulaw_encode(lin)
    ok = back == codes
    ok[0x7F] = back[0x7F] == 0xFF  # negative zero encodes as positive zero
    assert ok.all(), np.nonzero(~ok)
    # monotone decode over the positive half, and encoding is idempotent
    pos = ulaw_decode(np.arange(0xFF, 0x7F, -1, dtype=np.uint8))
    assert np.all(np.diff(pos.astype(np.int32)) > 0)
    full = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
    e = ulaw_encode(full)
    assert np.array_equal(ulaw_encode(ulaw_decode(e)), e)
    # quantization error bound: half a step of the segment (step = 2^(seg+3))
    err = np.abs(ulaw_decode(e).astype(np.int32) - np.clip(full.astype(np.int32), -32124, 32124))
    assert err.max() <= 1024, err.max()
    # resampler: 1 kHz tone passes, 5 kHz (would alias to 3 kHz) is rejected
    t = np.arange(SR) / SR
    for f, lo, hi in ((1000, 0.98, 1.02), (5000, 0.0, 1e-3)):
        s = np.sin(2 * np.pi * f * t)
        d = downsample_16k_to_8k(s)[200:-200]
        g = np.sqrt(np.mean(d ** 2)) / np.sqrt(0.5)
        assert lo <= g <= hi, (f, g)
    u = upsample_8k_to_16k(downsample_16k_to_8k(np.sin(2 * np.pi * 1000 * t)), SR)
    assert np.max(np.abs(u[400:-400] - np.sin(2 * np.pi * 1000 * t)[400:-400])) < 0.02
    print("selftest ok: mu-law table, round trip, resampler")


# --------------------------------------------------------------------------
# model

def load_model(args):
    d = args.model_dir
    if not os.path.isfile(os.path.join(d, "model.bin")):
        sys.exit(f"{d}: not a CTranslate2 model directory (no model.bin)")
    from faster_whisper import WhisperModel

    return WhisperModel(
        d,
        device="cpu",
        compute_type=args.compute_type,
        cpu_threads=args.cpu_threads,
        num_workers=1,
        local_files_only=True,
    )


def decode(model, audio, language, args):
    """Returns (seconds, text, detected_language)."""
    t0 = time.perf_counter()
    segments, info = model.transcribe(
        audio,
        language=language,
        beam_size=args.beam,
        best_of=1,
        temperature=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0] if args.fallback else 0.0,
        vad_filter=args.vad,
        without_timestamps=args.no_timestamps,
        condition_on_previous_text=True,
    )
    text = "".join(s.text for s in segments)  # forces the generator
    return time.perf_counter() - t0, text.strip(), info.language


def timed(model, audio, language, args):
    times, text, lang = [], "", None
    for _ in range(max(1, args.repeat)):
        sec, text, lang = decode(model, audio, language, args)
        times.append(sec)
    return statistics.median(times), text, lang


def lang_arg(s):
    return None if s in (None, "auto") else s


def warm_up(model, audio, language, args):
    if args.warmup == "none":
        return
    if args.warmup == "silence" or audio is None:
        audio = np.zeros(SR, dtype=np.float32)
    decode(model, audio, language, args)


def prep(path, args):
    a = load_audio(path)
    return telephone(a) if args.telephone else a


def emit(obj):
    print(json.dumps(obj, ensure_ascii=False), flush=True)


# --------------------------------------------------------------------------
# scoring

try:
    import opencc

    _T2S = opencc.OpenCC("t2s")
except ImportError:  # scoring still works, without Traditional->Simplified folding
    _T2S = None


def _strip_punct(s, repl):
    return "".join(repl if unicodedata.category(c)[0] in "PS" else c for c in s)


def norm_zh(s):
    s = unicodedata.normalize("NFKC", s)
    if _T2S is not None:
        s = _T2S.convert(s)
    s = _strip_punct(s, "").lower()
    return [c for c in s if not c.isspace()]


def norm_en(s):
    s = unicodedata.normalize("NFKC", s).lower().replace("'", "").replace("\u2019", "")
    return _strip_punct(s, " ").split()


def edit_distance(ref, hyp):
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


# --------------------------------------------------------------------------
# modes

def cmd_transcribe(args):
    model = load_model(args)
    lang = lang_arg(args.language)
    clips = [(f, prep(f, args)) for f in args.files]
    warm_up(model, clips[0][1] if clips else None, lang, args)
    for f, audio in clips:
        dur = len(audio) / SR
        sec, text, det = timed(model, audio, lang, args)
        emit({"file": f, "duration_s": round(dur, 3), "seconds": round(sec, 4),
              "rtf": round(sec / dur, 4) if dur else None, "language": det, "text": text})


def cmd_eval(args):
    model = load_model(args)
    base = os.path.dirname(os.path.abspath(args.manifest))
    with open(args.manifest, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    if args.only:
        rows = [r for r in rows if r["language"] == args.only]
    if not model.model.is_multilingual:
        skipped = [r["file"] for r in rows if r["language"] != "en"]
        if skipped:
            print(f"# English-only model: skipping {len(skipped)} non-en clips", file=sys.stderr)
        rows = [r for r in rows if r["language"] == "en"]
    if args.limit:
        rows = rows[: args.limit]
    if _T2S is None:
        print("# opencc not importable: no Traditional->Simplified folding", file=sys.stderr)

    first = True
    tot = {"zh": [0, 0, 0], "en": [0, 0, 0]}  # edits, ref units, clips
    total_sec = total_dur = 0.0
    for r in rows:
        lang = r["language"]
        audio = prep(os.path.join(base, r["file"]), args)
        dec_lang = lang if args.language == "manifest" else lang_arg(args.language)
        if first:
            warm_up(model, audio, dec_lang, args)
            first = False
        dur = len(audio) / SR
        sec, text, det = timed(model, audio, dec_lang, args)
        norm = norm_zh if lang == "zh" else norm_en
        ref, hyp = norm(r["transcript"]), norm(text)
        e = edit_distance(ref, hyp)
        t = tot.setdefault(lang, [0, 0, 0])
        t[0] += e
        t[1] += len(ref)
        t[2] += 1
        total_sec += sec
        total_dur += dur
        emit({"file": r["file"], "language": lang, "detected": det, "duration_s": round(dur, 3),
              "seconds": round(sec, 4), "rtf": round(sec / dur, 4),
              "cer" if lang == "zh" else "wer": round(e / max(1, len(ref)), 4),
              "edits": e, "ref_len": len(ref), "ref": r["transcript"], "hyp": text})

    def rate(k):
        e, n, _ = tot[k]
        return e / n if n else float("nan")

    rtf = total_sec / total_dur if total_dur else float("nan")
    print(f"zh CER {rate('zh'):.3f} over {tot['zh'][2]} clips; "
          f"en WER {rate('en'):.3f} over {tot['en'][2]} clips; RTF {rtf:.3f}", flush=True)


def cmd_segments(args):
    with open(args.segments, encoding="utf-8") as fh:
        segs = json.load(fh)
    if isinstance(segs, dict):
        segs = segs["segments"]
    base = os.path.dirname(os.path.abspath(args.segments))

    def resolve(f):
        return f if os.path.isabs(f) or os.path.exists(f) else os.path.join(base, f)

    model = load_model(args)
    cache = {}
    items = []
    for s in segs:
        f = resolve(s["file"])
        if f not in cache:
            cache[f] = prep(f, args)  # --telephone applies to the whole file, then slice
        a = cache[f]
        lo, hi = int(s["start_ms"]) * SR // 1000, int(s["end_ms"]) * SR // 1000
        items.append((s, a[lo:hi], lang_arg(s.get("language", args.language))))
    if items:
        warm_up(model, items[0][1], items[0][2], args)
    lat = []
    for s, a, lang in items:
        dur = len(a) / SR
        sec, text, det = timed(model, a, lang, args)
        lat.append(sec)
        emit({"file": s["file"], "start_ms": s["start_ms"], "end_ms": s["end_ms"],
              "duration_s": round(dur, 3), "seconds": round(sec, 4),
              "rtf": round(sec / dur, 4) if dur else None, "language": det, "text": text})
    if lat:
        q = sorted(lat)
        emit({"summary": True, "segments": len(q), "median_s": round(statistics.median(q), 4),
              "p90_s": round(q[min(len(q) - 1, int(0.9 * len(q)))], 4), "max_s": round(q[-1], 4)})


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)

    def common(sp, lang_default, lang_choices):
        sp.add_argument("--compute-type", default="int8", choices=["int8", "float32"])
        sp.add_argument("--beam", type=int, default=1, help="beam size (1 = greedy)")
        sp.add_argument("--cpu-threads", type=int, default=2)
        sp.add_argument("--language", default=lang_default, choices=lang_choices)
        sp.add_argument("--telephone", action="store_true",
                        help="16k -> 8k G.711 mu-law -> 16k before recognition")
        sp.add_argument("--vad", action="store_true", help="faster-whisper vad_filter (Silero)")
        sp.add_argument("--no-timestamps", action="store_true",
                        help="decode without timestamp tokens (faster-whisper default: with)")
        sp.add_argument("--fallback", action="store_true",
                        help="faster-whisper's temperature fallback 0.0..1.0 (not for timing runs)")
        sp.add_argument("--repeat", type=int, default=1, help="timed runs per input; report median")
        sp.add_argument("--warmup", default="first", choices=["first", "silence", "none"],
                        help="warm-up decode before timing: first input, 1 s silence, or none")

    t = sub.add_parser("transcribe", help="time transcription of files")
    t.add_argument("model_dir")
    t.add_argument("files", nargs="+")
    common(t, "auto", ["zh", "en", "auto"])
    t.set_defaults(func=cmd_transcribe)

    e = sub.add_parser("eval", help="CER/WER over a manifest.tsv")
    e.add_argument("manifest")
    e.add_argument("model_dir")
    e.add_argument("--only", choices=["zh", "en"], help="only clips of this language")
    e.add_argument("--limit", type=int, default=0, help="first N clips (after --only)")
    common(e, "manifest", ["manifest", "zh", "en", "auto"])
    e.set_defaults(func=cmd_eval)

    s = sub.add_parser("segments", help="transcribe [{file,start_ms,end_ms}] slices")
    s.add_argument("segments", help="JSON list (or {\"segments\": [...]}); optional per-segment language")
    s.add_argument("model_dir")
    common(s, "auto", ["zh", "en", "auto"])
    s.set_defaults(func=cmd_segments)

    st = sub.add_parser("selftest", help="check mu-law codec and resampler (no model)")
    st.set_defaults(func=lambda a: selftest())

    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
