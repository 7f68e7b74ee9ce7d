"""Sound propagation to a distant microphone, and placing a call into a background at a measured SNR.

One place for the field acoustics used by the ``field`` demo profile (:mod:`soundscape.demo`), the
pseudo-soundscape validation of training and far-field augmentation, so the three cannot drift apart.

Model of a call heard ``d`` metres away (all numpy/scipy, float64):

- **distance** is tied to the SNR a call is placed at: ``d = 10 * 30 ** ((12 - snr) / 18)`` metres with a
  +-15 % jitter, clipped to 10-300 m (+12 dB -> 10 m, -6 dB -> 300 m: quieter calls are further away);
- **low-pass**: a 2nd-order Butterworth low-pass whose cut-off tightens with distance,
  ``fc = 20 kHz * sqrt(10 / d)`` clipped to 3.5-20 kHz (10 m: 20 kHz, 100 m: 6.3 kHz, 300 m: 3.65 kHz),
  standing for atmospheric absorption and foliage scattering of high frequencies;
- **reverberation**: a synthetic impulse response, a unit direct path followed by exponentially decaying
  Gaussian noise whose decay gives ``rt60`` (60 dB in ``rt60`` seconds; the sites draw 0.3-1.2 s), with
  the tail low-passed like the direct sound and scaled so the **direct-to-reverberant ratio** (DRR) is
  ``12 - 13.5 * log10(d / 10)`` dB (+12 dB at 10 m, about -8 dB at 300 m);
- **SNR**: ``10 log10(P_call / P_bed)`` with both powers measured in the 1-11 kHz band (a 4th-order
  Butterworth band-pass, zero phase) over the call's extent only (a sample mask: the phrases of a
  rendered song, or the frames within 20 dB of the loudest for a recorded clip).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np
import scipy.signal

__all__ = [
    "SNR_BAND_HZ",
    "Propagation",
    "active_mask",
    "band_power",
    "band_signal",
    "band_snr_db",
    "distance_for_snr",
    "drr_for_distance",
    "gain_for_snr",
    "loud_samples",
    "lowpass",
    "lowpass_cutoff_hz",
    "place_at_snr",
    "propagate",
    "propagate_with_ir",
    "reverb_ir",
    "rt60_of_ir",
]

SNR_BAND_HZ: tuple[float, float] = (1000.0, 11000.0)
DISTANCE_RANGE_M: tuple[float, float] = (10.0, 300.0)
SNR_RANGE_DB: tuple[float, float] = (-6.0, 12.0)


def distance_for_snr(snr_db: float, rng: np.random.Generator | None = None) -> float:
    """Distance (m) of a call placed at ``snr_db``: 10 m at +12 dB to 300 m at -6 dB, +-15 % jitter."""
    lo, hi = SNR_RANGE_DB
    d = DISTANCE_RANGE_M[0] * 30.0 ** ((hi - float(np.clip(snr_db, lo, hi))) / (hi - lo))
    if rng is not None:
        d *= float(rng.uniform(0.85, 1.15))
    return float(np.clip(d, *DISTANCE_RANGE_M))


def lowpass_cutoff_hz(distance_m: float) -> float:
    """Cut-off of the distance low-pass: ``20 kHz * sqrt(10 / d)``, clipped to 3.5-20 kHz."""
    return float(np.clip(20000.0 * np.sqrt(10.0 / max(distance_m, 1e-3)), 3500.0, 20000.0))


def drr_for_distance(distance_m: float) -> float:
    """Direct-to-reverberant ratio (dB) at ``distance_m``: ``12 - 13.5 * log10(d / 10)``."""
    return float(12.0 - 13.5 * np.log10(max(distance_m, 1e-3) / 10.0))


def lowpass(x: np.ndarray, sample_rate: int, cutoff_hz: float) -> np.ndarray:
    """The distance low-pass: a 2nd-order Butterworth at ``cutoff_hz`` (none at or above 0.45 x the rate)."""
    if cutoff_hz >= 0.45 * sample_rate:
        return x
    sos = scipy.signal.butter(2, cutoff_hz, btype="low", fs=sample_rate, output="sos")
    return scipy.signal.sosfilt(sos, x)


def reverb_ir(sample_rate: int, rt60_s: float, drr_db: float, rng: np.random.Generator, *,
              cutoff_hz: float | None = None) -> np.ndarray:
    """A synthetic room/forest impulse response: direct path + exponentially decaying noise tail.

    Args:
        sample_rate (int): Hz.
        rt60_s (float): time for the tail to decay by 60 dB, seconds.
        drr_db (float): energy of the direct path over the energy of the tail, dB.
        rng (np.random.Generator): randomness of the tail.
        cutoff_hz (float, optional): low-pass the tail (high frequencies die first in foliage).

    Returns:
        np.ndarray: ``(round(rt60 * sample_rate) + 1,)`` float64; ``ir[0] == 1`` is the direct path.
    """
    if rt60_s <= 0:
        raise ValueError(f"rt60_s={rt60_s} must be positive")
    n = max(int(round(rt60_s * sample_rate)), 2)
    t = np.arange(1, n + 1) / sample_rate
    tail = rng.standard_normal(n) * 10 ** (-3.0 * t / rt60_s)  # amplitude 10^(-3 t/rt60): -60 dB at rt60
    if cutoff_hz is not None:
        tail = lowpass(tail, sample_rate, cutoff_hz)
    tail *= np.sqrt(10 ** (-drr_db / 10) / (np.sum(tail**2) + 1e-30))
    return np.concatenate([[1.0], tail])


def rt60_of_ir(ir: np.ndarray, sample_rate: int) -> float:
    """RT60 measured from an impulse response by Schroeder backward integration (T20 fit, -5..-25 dB)."""
    tail = ir[1:] if len(ir) > 1 else ir
    edc = np.cumsum(tail[::-1] ** 2)[::-1]
    edc_db = 10 * np.log10(edc / edc[0] + 1e-30)
    idx = np.flatnonzero((edc_db <= -5) & (edc_db >= -25))
    if len(idx) < 2:
        return float("nan")
    slope = np.polyfit(idx / sample_rate, edc_db[idx], 1)[0]  # dB per second
    return float(-60.0 / slope)


@dataclass(frozen=True)
class Propagation:
    """Parameters of one call's path to the microphone (recorded in ``dataset.json`` events)."""

    distance_m: float
    lowpass_hz: float
    rt60_s: float
    drr_db: float

    @classmethod
    def draw(cls, snr_db: float, rt60_s: float, rng: np.random.Generator) -> Propagation:
        """The path of a call placed at ``snr_db`` in a site of reverberation ``rt60_s``."""
        d = distance_for_snr(snr_db, rng)
        return cls(distance_m=round(d, 1), lowpass_hz=round(lowpass_cutoff_hz(d), 1), rt60_s=round(rt60_s, 3),
                   drr_db=round(drr_for_distance(d), 2))

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def propagate(call: np.ndarray, sample_rate: int, path: Propagation, rng: np.random.Generator) -> np.ndarray:
    """``call`` as heard through ``path``: low-passed, then convolved with a reverberant impulse response.

    Returns:
        np.ndarray: ``(len(call) + len(ir) - 1,)`` float64: the reverberation tail rings on after the call.
    """
    return propagate_with_ir(call, sample_rate, path, rng)[0]


def propagate_with_ir(call: np.ndarray, sample_rate: int, path: Propagation,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """:func:`propagate`, also returning the impulse response it drew (same draws, same output).

    Returns:
        tuple: the propagated call ``(len(call) + len(ir) - 1,)`` and the impulse response ``ir``.
    """
    dry = lowpass(np.asarray(call, dtype=np.float64), sample_rate, path.lowpass_hz)
    ir = reverb_ir(sample_rate, path.rt60_s, path.drr_db, rng, cutoff_hz=path.lowpass_hz)
    return scipy.signal.fftconvolve(dry, ir), ir


def _bandpass(x: np.ndarray, sample_rate: int, band: tuple[float, float]) -> np.ndarray:
    return scipy.signal.sosfiltfilt(_bandpass_sos(sample_rate, float(band[0]), float(band[1])).copy(), x)


@functools.lru_cache(maxsize=64)
def _bandpass_sos(sample_rate: int, low_hz: float, high_hz: float) -> np.ndarray:
    """The 4th-order Butterworth band-pass of the SNR band (designed once per rate and band: a design costs
    about as much as filtering 5 s, and training's bed mixing filters thousands of windows)."""
    sos = scipy.signal.butter(4, [low_hz, min(high_hz, 0.45 * sample_rate)], btype="band", fs=sample_rate,
                              output="sos")
    sos.flags.writeable = False  # shared: callers filter with a copy (sosfilt wants a writeable array)
    return sos


def band_power(x: np.ndarray, sample_rate: int, mask: np.ndarray | None = None,
               band: tuple[float, float] = SNR_BAND_HZ) -> float:
    """Mean power of ``x`` in ``band`` Hz, over the samples where ``mask`` is true (all when ``None``)."""
    return _mean_power(band_signal(x, sample_rate, band), mask)


def _mean_power(y: np.ndarray, mask: np.ndarray | None) -> float:
    if mask is not None:
        y = y[np.asarray(mask, dtype=bool)]
    return float(np.mean(y**2)) if len(y) else 0.0


def band_snr_db(call: np.ndarray, bed: np.ndarray, sample_rate: int, mask: np.ndarray,
                band: tuple[float, float] = SNR_BAND_HZ) -> float:
    """SNR (dB) of ``call`` against ``bed`` (same length) in ``band``, over the call's extent ``mask``."""
    return 10 * np.log10(band_power(call, sample_rate, mask, band) / (band_power(bed, sample_rate, mask, band) + 1e-30))


def active_mask(x: np.ndarray, sample_rate: int, *, frame_s: float = 0.02, within_db: float = 20.0,
                band: tuple[float, float] = SNR_BAND_HZ) -> np.ndarray:
    """Samples of ``x`` whose 20 ms frame is within ``within_db`` of the loudest frame in ``band``.

    The extent of a call in a recorded clip (whose own quiet noise floor is not the call).
    """
    return loud_samples(band_signal(x, sample_rate, band), sample_rate, frame_s=frame_s, within_db=within_db)


def loud_samples(banded: np.ndarray, sample_rate: int, *, frame_s: float = 0.02, within_db: float = 20.0
                 ) -> np.ndarray:
    """:func:`active_mask` of a signal already band-passed (``band_signal``)."""
    y = banded
    hop = max(int(frame_s * sample_rate), 1)
    n_frames = -(-len(y) // hop)
    pad = np.zeros(n_frames * hop)
    pad[: len(y)] = y
    energy = (pad.reshape(n_frames, hop) ** 2).mean(axis=1)
    loud = energy >= energy.max() * 10 ** (-within_db / 10) if energy.max() > 0 else np.zeros(n_frames, bool)
    return np.repeat(loud, hop)[: len(y)]


def band_signal(x: np.ndarray, sample_rate: int, band: tuple[float, float] = SNR_BAND_HZ) -> np.ndarray:
    """``x`` (float64) through the SNR band's zero-phase band-pass: what :func:`band_power` and
    :func:`active_mask` measure, to compute once when both measure the same signal."""
    return _bandpass(np.asarray(x, dtype=np.float64), sample_rate, band)


def gain_for_snr(bed: np.ndarray, call: np.ndarray, snr_db: float, sample_rate: int, mask: np.ndarray,
                 band: tuple[float, float] = SNR_BAND_HZ, *, call_banded: np.ndarray | None = None) -> float:
    """The gain that puts ``call`` at ``snr_db`` against ``bed`` (same length) over its extent ``mask``.

    An empty mask means the whole call; a silent call gets gain 0. ``call_banded``: ``band_signal(call)`` when
    the caller has it already (the same result, one filtering fewer).
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        mask = np.ones(len(call), dtype=bool)
    p_call = band_power(call, sample_rate, mask, band) if call_banded is None else _mean_power(call_banded, mask)
    p_bed = band_power(bed, sample_rate, mask, band)
    return float(np.sqrt(p_bed * 10 ** (snr_db / 10) / p_call)) if p_call > 0 else 0.0


def place_at_snr(bed: np.ndarray, call: np.ndarray, offset: int, snr_db: float, sample_rate: int,
                 mask: np.ndarray, band: tuple[float, float] = SNR_BAND_HZ) -> tuple[np.ndarray, float]:
    """Add ``call`` into ``bed`` at sample ``offset``, scaled to ``snr_db`` over its extent ``mask``.

    The part of the call beyond the bed's end is dropped; the SNR is set on the part that lands.

    Args:
        bed (np.ndarray): background ``(n,)``; not modified.
        call (np.ndarray): the (propagated) call ``(m,)``.
        offset (int): where the call starts in the bed, samples (``>= 0``).
        snr_db (float): wanted band SNR over the call's extent, dB.
        sample_rate (int): Hz.
        mask (np.ndarray): ``(m,)`` bool: the call's extent.
        band (tuple): SNR band, Hz. (Default: 1-11 kHz)

    Returns:
        tuple: the mixture ``(n,)`` and the gain applied to ``call``.
    """
    if offset < 0 or offset >= len(bed):
        raise ValueError(f"offset {offset} is outside the bed of {len(bed)} samples")
    m = min(len(call), len(bed) - offset)
    seg_call = np.asarray(call[:m], dtype=np.float64)
    gain = gain_for_snr(bed[offset : offset + m], seg_call, snr_db, sample_rate, np.asarray(mask[:m]), band)
    out = np.array(bed, dtype=np.float64)
    out[offset : offset + m] += gain * seg_call
    return out, gain
