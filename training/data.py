"""BirdCLEF-layout training data: metadata, labels, targets, a decoded-audio cache, crops, split, sampling.

Layout: ``train_metadata.csv`` with ``primary_label``, ``secondary_labels`` (a Python list as a string,
e.g. ``"['amered', 'houspa']"``), ``filename`` (relative to the audio root) and optional ``rating`` and
``common_name``; optional ``taxonomy.csv`` with ``primary_label``, ``common_name``, ``scientific_name``.

Nothing here crashes halfway through an epoch: unknown labels, missing files and unreadable audio are
collected in a :class:`ProblemReport` (logged once, saved as ``problems.csv``) while the data is prepared,
and the clips concerned are skipped. Every clip is decoded once into the :class:`AudioCache` (one ``.npy``
per clip), so the epochs only read arrays.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler
from tqdm.auto import tqdm

from soundscape.audio import AUDIO_EXTENSIONS, AudioError, decode

__all__ = [
    "AudioCache",
    "CachedStretch",
    "Clip",
    "ClipDataset",
    "Problem",
    "ProblemReport",
    "WeightedRankSampler",
    "build_labels",
    "call_crop_start",
    "call_energy",
    "crop",
    "list_audio_files",
    "make_targets",
    "read_csv_rows",
    "read_metadata",
    "read_taxonomy",
    "sampling_weights",
    "holdout_split",
    "TrainingSet",
    "WindowDataset",
    "bed_samples",
]

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Problem:
    """One unusable input: ``kind`` is ``unknown_label``, ``missing_file``, ``unreadable_audio`` or
    ``bad_row``; ``file`` names the file (or CSV line) concerned."""

    kind: str
    file: str
    detail: str


@dataclass
class ProblemReport:
    """Problems found while preparing the data: a count and a list, logged once, saved as CSV."""

    problems: list[Problem] = field(default_factory=list)

    def add(self, kind: str, file: str | os.PathLike, detail: str) -> None:
        self.problems.append(Problem(kind, str(file), detail))

    def __len__(self) -> int:
        return len(self.problems)

    def counts(self) -> dict[str, int]:
        return dict(Counter(p.kind for p in self.problems))

    def files(self, kind: str | None = None) -> set[str]:
        return {p.file for p in self.problems if kind is None or p.kind == kind}

    def log_summary(self, max_listed: int = 20) -> None:
        if not self.problems:
            log.info("data check: no problems found")
            return
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(self.counts().items()))
        listed = "; ".join(f"{p.file} ({p.kind}: {p.detail})" for p in self.problems[:max_listed])
        more = f"; ... and {len(self.problems) - max_listed} more" if len(self.problems) > max_listed else ""
        log.warning("data check: %d problems (%s), skipped: %s%s", len(self.problems), counts, listed, more)

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["kind", "file", "detail"])
            writer.writerows([p.kind, p.file, p.detail] for p in self.problems)
        return path


@dataclass(frozen=True)
class Clip:
    """One focal recording of the metadata.

    Attributes:
        path (Path): the audio file.
        primary (str): primary label code.
        secondary (tuple[str, ...]): secondary label codes known to the vocabulary.
        rating (float | None): quality rating, when given.
        span (tuple[float, float] | None): the part of the file this clip is, seconds (``None``: all of
            it); a species' only clip is split in two by :func:`holdout_split`.
    """

    path: Path
    primary: str
    secondary: tuple[str, ...] = ()
    rating: float | None = None
    span: tuple[float, float] | None = None

    def samples(self, cache: AudioCache) -> np.ndarray:
        """The clip's audio (its span only) at the cache's rate."""
        data = cache.load(self.path)
        if self.span is None:
            return data
        sr = cache.sample_rate
        return data[int(round(self.span[0] * sr)) : int(round(self.span[1] * sr))]


def read_csv_rows(path: str | os.PathLike, required: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not readable CSV or lacks a required column (both named in the message).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CSV file not found: {path}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{path}: not a readable CSV file ({exc})") from None
    missing = [c for c in required if c not in columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {columns}")
    return rows


# taxonomy shapes, columns matched case-insensitively: eBird (eBird_Taxonomy_v2021.csv), BirdCLEF, plain
TAXONOMY_COLUMNS = {"code": ("primary_label", "species_code", "code"),
                    "common_name": ("common_name", "primary_com_name"),
                    "scientific_name": ("scientific_name", "sci_name")}


def _taxonomy_column(columns: Sequence[str], role: str) -> str | None:
    lower = {c.strip().lower(): c for c in columns}
    return next((lower[name] for name in TAXONOMY_COLUMNS[role] if name in lower), None)


def read_taxonomy(path: str | os.PathLike) -> dict[str, dict[str, str]]:
    """``{code: {"common_name", "scientific_name"}}`` of a taxonomy file in any of the :data:`TAXONOMY_COLUMNS`
    shapes: eBird (``SPECIES_CODE``, ``PRIMARY_COM_NAME``, ``SCI_NAME``), BirdCLEF (``primary_label``,
    ``common_name``, ``scientific_name``) or ``species_code, common_name``; column names in any case.

    Raises:
        ValueError: no code column (the message names the accepted ones).
    """
    rows = read_csv_rows(path, [])
    columns = list(rows[0]) if rows else []
    code = _taxonomy_column(columns, "code")
    if code is None:
        raise ValueError(f"{path}: missing a species code column (one of {list(TAXONOMY_COLUMNS['code'])}, any "
                         f"case); found {columns}")
    names = {role: _taxonomy_column(columns, role) for role in ("common_name", "scientific_name")}
    return {r[code].strip(): {role: (r.get(col) or "").strip() if col else "" for role, col in names.items()}
            for r in rows if (r[code] or "").strip()}


def _parse_secondary(text: str) -> list[str]:
    text = (text or "").strip()
    if not text:
        return []
    value = ast.literal_eval(text)  # a Python list literal, as in BirdCLEF; never eval
    if isinstance(value, str):
        return [value] if value else []
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"not a list of strings: {text!r}")
    return [v.strip() for v in value if v.strip()]


def read_metadata(metadata: str | os.PathLike, audio_root: str | os.PathLike, problems: ProblemReport, *,
                  taxonomy: dict[str, dict[str, str]] | None = None, min_rating: float = 0.0,
                  ) -> tuple[list[Clip], dict[str, str]]:
    """Read ``train_metadata.csv``; rows that cannot be used go to ``problems``.

    The vocabulary is the set of primary labels (restricted to the taxonomy when one is given). A row
    whose primary label is not in the taxonomy is skipped (``unknown_label``); a secondary label outside
    the vocabulary is dropped from that clip's targets and reported; a file that does not exist is
    skipped (``missing_file``).

    Args:
        metadata (path): the CSV file.
        audio_root (path): folder that ``filename`` is relative to.
        problems (ProblemReport): collects what is skipped.
        taxonomy (dict, optional): from :func:`read_taxonomy`.
        min_rating (float): skip clips rated below this; unrated (or 0) clips are kept. (Default: ``0``)

    Returns:
        tuple: the usable clips, and ``{code: common_name}`` from the metadata's ``common_name`` column.
    """
    metadata, audio_root = Path(metadata), Path(audio_root)
    if not audio_root.is_dir():
        raise FileNotFoundError(f"audio root is not a folder: {audio_root}")
    rows = read_csv_rows(metadata, ["primary_label", "filename"])
    if not rows:
        raise ValueError(f"{metadata}: holds no rows")
    primaries = {r["primary_label"].strip() for r in rows if r["primary_label"].strip()}
    vocab = primaries & set(taxonomy) if taxonomy is not None else primaries
    names: dict[str, str] = {}
    clips = []
    for line, row in enumerate(rows, start=2):
        where = f"{metadata.name}:{line}"
        filename = (row.get("filename") or "").strip()
        primary = row["primary_label"].strip()
        if not filename or not primary:
            problems.add("bad_row", where, "empty primary_label or filename")
            continue
        path = audio_root / filename
        if primary not in vocab:
            problems.add("unknown_label", path, f"primary label {primary!r} is not in the taxonomy")
            continue
        try:
            secondary = _parse_secondary(row.get("secondary_labels", ""))
        except (ValueError, SyntaxError) as exc:
            problems.add("bad_row", path, f"secondary_labels unreadable ({exc}); ignored")
            secondary = []
        unknown = [s for s in secondary if s not in vocab]
        if unknown:
            problems.add("unknown_label", path, f"secondary label(s) {unknown} not in the vocabulary; ignored")
        rating = None
        if (row.get("rating") or "").strip():
            try:
                rating = float(row["rating"])
            except ValueError:
                problems.add("bad_row", path, f"rating {row['rating']!r} is not a number; ignored")
        if rating is not None and 0 < rating < min_rating:
            continue
        if not path.is_file():
            problems.add("missing_file", path, "no such file")
            continue
        if row.get("common_name"):
            names.setdefault(primary, row["common_name"].strip())
        clips.append(Clip(path=path, primary=primary,
                          secondary=tuple(dict.fromkeys(s for s in secondary if s in vocab and s != primary)),
                          rating=rating))
    return clips, names


def build_labels(clips: Iterable[Clip], taxonomy: dict[str, dict[str, str]] | None = None,
                 names: dict[str, str] | None = None) -> list[dict[str, str]]:
    """The output classes, sorted by code: ``[{"code", "common_name", "scientific_name"}]``.

    Every primary label of ``clips`` is a class; names come from the taxonomy, else the metadata.
    """
    taxonomy, names = taxonomy or {}, names or {}
    codes = sorted({c.primary for c in clips})
    return [{"code": code,
             "common_name": taxonomy.get(code, {}).get("common_name") or names.get(code, ""),
             "scientific_name": taxonomy.get(code, {}).get("scientific_name", "")} for code in codes]


def make_targets(clips: Sequence[Clip], codes: Sequence[str], secondary_weight: float) -> np.ndarray:
    """Multi-label targets: primary label 1, secondary labels ``secondary_weight``.

    Returns:
        np.ndarray: ``(n_clips, n_classes)`` float32.
    """
    if not 0 <= secondary_weight <= 1:
        raise ValueError(f"secondary_weight={secondary_weight} must be in [0, 1]")
    index = {c: i for i, c in enumerate(codes)}
    y = np.zeros((len(clips), len(codes)), dtype=np.float32)
    for row, clip in enumerate(clips):
        for s in clip.secondary:
            if s in index:
                y[row, index[s]] = secondary_weight
        y[row, index[clip.primary]] = 1.0
    return y


HOLDOUT_TAIL = 0.3


def _tail_start(samples: np.ndarray, sample_rate: int, tail: float) -> float:
    """Seconds at which the last ``tail`` of the clip's call activity (1-11 kHz frames) begins."""
    from soundscape.propagation import active_mask

    active = np.flatnonzero(active_mask(samples, sample_rate))
    if len(active) < 2:
        return (1.0 - tail) * len(samples) / sample_rate
    return float(active[int((1.0 - tail) * (len(active) - 1))]) / sample_rate


def holdout_split(clips: Sequence[Clip], val_fraction: float, seed: int, cache: AudioCache, *,
                  tail: float = HOLDOUT_TAIL) -> tuple[list[Clip], list[Clip]]:
    """Hold out clips of every species, so each one can be validated.

    A species with ``n >= 2`` clips holds out ``max(1, round(n * val_fraction))`` whole clips (at most
    ``n - 1``). A species with a single clip is split in time: training keeps the part before the last
    ``tail`` of its call activity (frames within 20 dB of the loudest, 1-11 kHz), validation gets that last
    part, so a validation crop is never a training crop. ``val_fraction == 0`` holds out nothing.

    Returns:
        tuple: training clips and held-out clips (in metadata order; split clips carry their ``span``).
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction} must be in [0, 1)")
    if val_fraction == 0:
        return list(clips), []
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = {}
    for i, clip in enumerate(clips):
        by_label.setdefault(clip.primary, []).append(i)
    held: set[int] = set()
    split: dict[int, float] = {}
    for code in sorted(by_label):
        idx = by_label[code]
        if len(idx) == 1:
            samples = clips[idx[0]].samples(cache)
            split[idx[0]] = _tail_start(np.asarray(samples), cache.sample_rate, tail)
        else:
            n_val = min(len(idx) - 1, max(1, int(round(len(idx) * val_fraction))))
            held.update(int(i) for i in rng.permutation(idx)[:n_val])
    train, val = [], []
    for i, clip in enumerate(clips):
        if i in split:  # within the clip's own span (a crop of a long recording)
            begin, end = clip.span or (0.0, len(cache.load(clip.path)) / cache.sample_rate)
            train.append(replace(clip, span=(begin, begin + split[i])))
            val.append(replace(clip, span=(begin + split[i], end)))
        else:
            (val if i in held else train).append(clip)
    return train, val


def sampling_weights(clips: Sequence[Clip], alpha: float) -> np.ndarray:
    """Per-clip sampling weights ``count(primary) ** -alpha`` (0 = uniform, 1 = class-balanced).

    Returns:
        np.ndarray: ``(n_clips,)`` float64, summing to 1.
    """
    if alpha < 0:
        raise ValueError(f"sampling alpha={alpha} must be >= 0")
    counts = Counter(c.primary for c in clips)
    w = np.array([counts[c.primary] ** -alpha for c in clips], dtype=np.float64)
    return w / w.sum()


class WeightedRankSampler(Sampler[int]):
    """``WeightedRandomSampler`` for one rank of a distributed run.

    Every rank draws the same ``num_samples`` indices with replacement from ``torch.multinomial`` (the
    draw ``WeightedRandomSampler`` makes) using a generator seeded with ``(seed, epoch)``, then keeps
    every ``world_size``-th one from ``rank``. One process (``world_size=1``) therefore samples exactly
    as ``WeightedRandomSampler`` with that generator, and an epoch's order does not depend on history
    (so a resumed run samples as an uninterrupted one).

    Args:
        weights (Sequence[float]): per-item weights.
        num_samples (int): draws per epoch over all ranks.
        seed (int): base seed.
        rank (int), world_size (int): this process's place in the run. (Default: ``0``, ``1``)
    """

    def __init__(self, weights: Sequence[float], num_samples: int, *, seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        if num_samples < 1:
            raise ValueError(f"num_samples={num_samples} must be >= 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} is not in [0, world_size={world_size})")
        self.weights = torch.as_tensor(np.asarray(weights), dtype=torch.double)
        self.num_samples = num_samples
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        total = self.num_samples - self.num_samples % self.world_size  # equal share per rank
        draws = torch.multinomial(self.weights, total, replacement=True, generator=g)
        return iter(draws[self.rank :: self.world_size].tolist())

    def __len__(self) -> int:
        return self.num_samples // self.world_size


class AudioCache:
    """Decoded, resampled audio as one ``.npy`` per file.

    The key is the file's absolute path, modification time, size and the target rate, so an edited or
    replaced file is decoded again, and a different front-end rate gets its own entries.

    Args:
        root (path): cache folder (created when needed).
        sample_rate (int): rate to decode at.
    """

    def __init__(self, root: str | os.PathLike, sample_rate: int) -> None:
        self.root = Path(root)
        self.sample_rate = sample_rate
        self.hits = 0
        self.misses = 0

    def path_for(self, file: str | os.PathLike) -> Path:
        st = os.stat(file)
        key = f"{Path(file).resolve()}|{st.st_mtime_ns}|{st.st_size}|{self.sample_rate}"
        digest = hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()
        return self.root / digest[:2] / f"{digest}.npy"

    def load(self, file: str | os.PathLike, *, mmap: bool = True) -> np.ndarray:
        """Samples of ``file`` at ``sample_rate``: ``(n,)`` float32, decoded once then read from the cache.

        Raises:
            AudioError: unreadable audio (nothing is cached then).
            FileNotFoundError: no such file.
        """
        target = self.path_for(file)
        if target.is_file():
            try:
                data = np.load(target, mmap_mode="r" if mmap else None, allow_pickle=False)  # plain arrays only
                self.hits += 1
                return data
            except (ValueError, OSError):
                log.warning("cache entry %s for %s is damaged; decoding again", target, file)
        self.misses += 1
        samples = decode(file, sample_rate=self.sample_rate).samples
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, samples)
        os.replace(tmp, target)  # atomic, so concurrent ranks or workers never read half a file
        return samples

    def call_energy(self, file: str | os.PathLike) -> np.ndarray:
        """:func:`call_energy` of ``file``, computed once and kept next to its decoded audio.

        Stored as ``<key>.callenergy<version>.npy`` beside the file's ``<key>.npy`` (same key: path,
        modification time, size, rate), so an edited file or a new detector version computes it again.
        """
        audio = self.path_for(file)
        target = audio.with_name(f"{audio.stem}.callenergy{CALL_ENERGY_VERSION}.npy")
        if target.is_file():
            try:
                return np.load(target, allow_pickle=False)
            except (ValueError, OSError):
                log.warning("call energy %s for %s is damaged; computing it again", target, file)
        energy = call_energy(np.asarray(self.load(file)), self.sample_rate)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, energy)
        os.replace(tmp, target)
        return energy

    def prepare(self, files: Sequence[Path], problems: ProblemReport, *, workers: int = 1,
                desc: str = "decoding") -> list[bool]:
        """Decode every file into the cache up front, with a progress bar.

        Returns:
            list[bool]: per file, whether it is usable; unreadable ones are reported in ``problems``.
        """

        def one(file: Path) -> str | None:
            try:
                data = self.load(file)
            except (AudioError, OSError) as exc:
                return str(exc)
            if len(data) == 0:
                return "no samples"
            return None

        with ThreadPoolExecutor(max(1, workers)) as pool:
            errors = list(tqdm(pool.map(one, files), total=len(files), desc=desc, unit="file", leave=False))
        for file, error in zip(files, errors, strict=True):
            if error is not None:
                problems.add("unreadable_audio", file, error)
        return [e is None for e in errors]


@dataclass(frozen=True)
class CachedStretch:
    """Samples ``start:stop`` of a recording in the :class:`AudioCache`, mapped only while they are used.

    Training's beds are referenced this way rather than held: a bed's samples are copied when a batch mixes it in,
    and its pages count against the process only while that copy is made (a held array, or a mapping kept open,
    keeps every page it was ever read from). ``len()`` is the stretch's length in samples.

    Attributes:
        cache (AudioCache): where the recording is decoded.
        file (Path): the recording.
        start, stop (int): sample range at the cache's rate.
    """

    cache: AudioCache
    file: Path
    start: int
    stop: int

    @classmethod
    def whole(cls, cache: AudioCache, file: Path) -> CachedStretch:
        """All of ``file`` (decoded into the cache when needed)."""
        return cls(cache, file, 0, len(cache.load(file)))

    def __len__(self) -> int:
        return self.stop - self.start

    def samples(self) -> np.ndarray:
        """The stretch, float32: a view of the recording's mapping, unmapped when the view is let go."""
        return self.cache.load(self.file)[self.start : self.stop]


def bed_samples(bed: np.ndarray | CachedStretch) -> np.ndarray:
    """A bed's samples, whether held (an array) or referenced (:class:`CachedStretch`)."""
    return bed.samples() if isinstance(bed, CachedStretch) else bed


def list_audio_files(folder: str | os.PathLike) -> list[Path]:
    """Audio files under ``folder`` (recursively, by extension: :data:`soundscape.audio.AUDIO_EXTENSIONS`), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"not a folder: {folder}")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())


def crop(samples: np.ndarray, length: int, rng: np.random.Generator | None) -> np.ndarray:
    """A ``length``-sample crop: random (``rng``) or from the start (``rng=None``); short clips are
    zero-padded, at a random offset when ``rng`` is given.

    Args:
        samples (np.ndarray): ``(n,)`` mono audio.
        length (int): crop length in samples.
        rng (np.random.Generator | None): randomness, or ``None`` for the deterministic crop.

    Returns:
        np.ndarray: ``(length,)`` float32.
    """
    n = len(samples)
    if n >= length:
        start = int(rng.integers(0, n - length + 1)) if rng is not None else 0
        return np.array(samples[start : start + length], dtype=np.float32)
    out = np.zeros(length, dtype=np.float32)
    offset = int(rng.integers(0, length - n + 1)) if rng is not None else 0
    out[offset : offset + n] = samples
    return out


CALL_ENERGY_VERSION = 1
CALL_FRAME_S = 0.032
CALL_WITHIN_DB = 20.0


def call_frame(sample_rate: int) -> int:
    """Frame length of :func:`call_energy`: the power of two nearest to 32 ms (1024 samples at 32 kHz)."""
    return 2 ** int(round(np.log2(CALL_FRAME_S * sample_rate)))


def call_energy(samples: np.ndarray, sample_rate: int, *, chunk: int = 2048) -> np.ndarray:
    """Energy of each frame in the clip's own call band: where in a clip its bird calls.

    Frames are consecutive blocks of :func:`call_frame` samples (Hann-windowed spectra), pooled into
    quarter-octave bands from 250 Hz to ``0.45 * sample_rate``. A call stands out of its band now and then,
    stationary noise does not: each band's contrast is its 99th-percentile frame power over its median,
    and the call band runs from the lowest to the highest band within 6 dB of the largest contrast. When
    no band stands out by 6 dB (a continuous song, or only noise), the band is 1-11 kHz (the SNR band of
    :mod:`soundscape.propagation`).

    Args:
        samples (np.ndarray): ``(n,)`` mono audio.
        sample_rate (int): Hz.
        chunk (int): frames transformed at a time (bounds the memory of long clips). (Default: ``2048``)

    Returns:
        np.ndarray: ``(n // call_frame(sample_rate),)`` float32 band energy of each frame.
    """
    frame = call_frame(sample_rate)
    n_frames = len(samples) // frame
    freqs = np.fft.rfftfreq(frame, 1 / sample_rate)
    edges = 250.0 * 2.0 ** (np.arange(32) / 4)  # quarter-octave bands from 250 Hz
    edges = edges[edges <= 0.45 * sample_rate]
    band_of_bin = np.digitize(freqs, edges) - 1  # -1 below 250 Hz, len(edges) - 1 above the last edge
    pool = np.zeros((len(freqs), len(edges) - 1), np.float32)
    inside = (band_of_bin >= 0) & (band_of_bin < len(edges) - 1)
    pool[np.flatnonzero(inside), band_of_bin[inside]] = 1.0
    window = np.hanning(frame).astype(np.float32)
    bands = np.zeros((n_frames, pool.shape[1]), np.float32)
    for lo in range(0, n_frames, chunk):
        hi = min(n_frames, lo + chunk)
        blocks = np.asarray(samples[lo * frame : hi * frame], dtype=np.float32).reshape(hi - lo, frame)
        bands[lo:hi] = (np.abs(np.fft.rfft(blocks * window, axis=1)) ** 2).astype(np.float32) @ pool
    if n_frames == 0 or pool.shape[1] == 0:
        return np.zeros(n_frames, np.float32)
    contrast = 10 * np.log10((np.percentile(bands, 99, axis=0) + 1e-20) / (np.median(bands, axis=0) + 1e-20))
    if contrast.max() >= 6.0:
        chosen = np.flatnonzero(contrast >= contrast.max() - 6.0)
        lo_band, hi_band = chosen.min(), chosen.max()
    else:
        centres = np.sqrt(edges[:-1] * edges[1:])
        lo_band, hi_band = np.searchsorted(centres, 1000.0), np.searchsorted(centres, 11000.0) - 1
    return bands[:, lo_band : hi_band + 1].sum(axis=1).astype(np.float32)


def call_crop_start(energy: np.ndarray, sample_rate: int, offset: int, n: int, length: int,
                    rng: np.random.Generator) -> int:
    """Start of a ``length``-sample crop of the part ``[offset, offset + n)`` of a file, drawn where it calls.

    A frame is *active* when its :func:`call_energy` is within 20 dB of the loudest frame of that part;
    each candidate start (every frame, then a random offset within the frame) is drawn with probability
    proportional to the number of active frames the crop would hold. With no energy at all the draw is
    uniform.

    Args:
        energy (np.ndarray): the file's :func:`call_energy`.
        sample_rate (int): Hz.
        offset (int): first sample of the part (a clip's ``span``), in the file.
        n (int): samples in the part (``>= length``).
        length (int): crop length, samples.
        rng (np.random.Generator): randomness.

    Returns:
        int: the crop's start, relative to ``offset``, in ``[0, n - length]``.
    """
    frame = call_frame(sample_rate)
    first, last = -(-offset // frame), min((offset + n) // frame, len(energy))  # frames inside the part
    part = energy[first:last] if last > first else np.zeros(0, np.float32)
    if not len(part) or part.max() <= 0:
        return int(rng.integers(0, n - length + 1))
    active = part >= part.max() * 10 ** (-CALL_WITHIN_DB / 10)
    cum = np.concatenate([[0], np.cumsum(active)])
    starts = np.arange(0, n - length + 1, frame)
    lo = np.clip(-(-(offset + starts) // frame) - first, 0, len(part))
    hi = np.clip((offset + starts + length) // frame - first, 0, len(part))
    score = (cum[hi] - cum[np.minimum(lo, hi)]).astype(np.float64)
    if score.sum() <= 0:
        return int(rng.integers(0, n - length + 1))
    k = int(rng.choice(len(starts), p=score / score.sum()))
    return int(min(starts[k] + rng.integers(0, frame), n - length))


class ClipDataset(Dataset):
    """Fixed-length crops of cached clips with their targets.

    The crop of item ``i`` in epoch ``e`` is drawn from ``np.random.default_rng((seed, e, i))``, so it
    does not depend on worker processes or on a resumed run.

    Where a training crop of a clip longer than the window is cut: with probability ``call_crop_p``
    where the clip calls (:func:`call_crop_start`: starts drawn in proportion to the active frames of the
    clip's own call band the crop holds, :func:`call_energy`, computed once per file and cached beside
    its decoded audio), else uniformly at random, so some crops of quiet parts are kept. Only the clip's
    ``span`` is ever cropped. Clips no longer than the window are padded as by :func:`crop`.

    Args:
        clips (Sequence[Clip]): usable clips (already in ``cache``).
        targets (np.ndarray): ``(n_clips, n_classes)`` float32.
        cache (AudioCache): decoded audio.
        length (int): crop length in samples (the front end's ``window_samples``).
        random_crop (bool): random crops (training) or the first ``length`` samples (validation).
        seed (int): base seed of the crops.
        call_crop_p (float): share of random crops of long clips cut where the clip calls. (Default: ``0``,
            uniform crops)

    Returns (per item):
        tuple: waveform ``(length,)`` float32 tensor and target ``(n_classes,)`` float32 tensor.
    """

    def __init__(self, clips: Sequence[Clip], targets: np.ndarray, cache: AudioCache, length: int, *,
                 random_crop: bool = True, seed: int = 0, call_crop_p: float = 0.0) -> None:
        if len(clips) != len(targets):
            raise ValueError(f"{len(clips)} clips but {len(targets)} target rows")
        if not 0 <= call_crop_p <= 1:
            raise ValueError(f"call_crop_p={call_crop_p} must be in [0, 1]")
        self.clips, self.targets, self.cache = list(clips), targets, cache
        self.length, self.random_crop, self.seed, self.call_crop_p = length, random_crop, seed, call_crop_p
        self.epoch = 0
        self._energy: dict[Path, np.ndarray] = {}  # per process; the cache keeps them across runs

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        clip = self.clips[index]
        samples = clip.samples(self.cache)
        rng = np.random.default_rng((self.seed, self.epoch, index)) if self.random_crop else None
        if (rng is not None and self.call_crop_p > 0 and len(samples) > self.length
                and rng.random() < self.call_crop_p):
            if clip.path not in self._energy:
                self._energy[clip.path] = self.cache.call_energy(clip.path)
            offset = int(round(clip.span[0] * self.cache.sample_rate)) if clip.span else 0
            start = call_crop_start(self._energy[clip.path], self.cache.sample_rate, offset, len(samples),
                                    self.length, rng)
            window = np.array(samples[start : start + self.length], dtype=np.float32)
        else:
            window = crop(samples, self.length, rng)
        return torch.from_numpy(window), torch.from_numpy(self.targets[index])


class WindowDataset(Dataset):
    """Fixed windows of cached recordings with (soft) targets: the pseudo-labelled unlabelled windows.

    Args:
        files (Sequence[str]): recording of each window.
        starts_s (np.ndarray): ``(n,)`` window starts, seconds.
        targets (np.ndarray): ``(n, n_classes)`` float32.
        cache (AudioCache): decoded audio (at the front end's rate).
        length (int): window length, samples (short windows are zero-padded at the end).
    """

    def __init__(self, files: Sequence[str], starts_s: np.ndarray, targets: np.ndarray, cache: AudioCache,
                 length: int) -> None:
        if not len(files) == len(starts_s) == len(targets):
            raise ValueError(f"{len(files)} files, {len(starts_s)} starts and {len(targets)} targets")
        self.files, self.starts_s, self.targets = list(files), np.asarray(starts_s), targets
        self.cache, self.length = cache, length

    def set_epoch(self, epoch: int) -> None:  # windows are fixed; kept for the training set's interface
        pass

    def __len__(self) -> int:
        return len(self.files)

    def _stretch(self, index: int) -> CachedStretch:
        a = int(round(self.starts_s[index] * self.cache.sample_rate))
        return CachedStretch(self.cache, Path(self.files[index]), a, a + self.length)

    def window(self, index: int) -> np.ndarray:
        return crop(np.asarray(self._stretch(index).samples()), self.length, None)

    def bed(self, index: int) -> np.ndarray | CachedStretch:
        """Window ``index`` as a bed: referenced in the cache when whole, else (a recording's short last window)
        held, zero-padded at the end as :meth:`window` gives it."""
        stretch = self._stretch(index)
        return stretch if len(stretch.samples()) == self.length else self.window(index)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self.window(index)), torch.from_numpy(self.targets[index])


class TrainingSet(Dataset):
    """Clips followed by pseudo-labelled windows, as one dataset with an epoch (for :class:`WeightedRankSampler`)."""

    def __init__(self, clips: ClipDataset, windows: WindowDataset | None = None) -> None:
        self.clips, self.windows = clips, windows

    def set_epoch(self, epoch: int) -> None:
        self.clips.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.clips) + (len(self.windows) if self.windows is not None else 0)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.clips)
        return self.clips[index] if index < n else self.windows[index - n]
