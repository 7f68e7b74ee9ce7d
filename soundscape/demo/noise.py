"""Field background noise for the demo soundscapes and the ``backgrounds/`` folder.

Four kinds, each rendered with FFT shaping in numpy and returned at unit RMS:

- ``wind``: brown noise low-passed at a few hundred Hz, with slow gusts (a smoothed random envelope).
- ``rain``: pink noise plus random drops (short decaying high-passed clicks at random times and levels).
- ``insects``: steady high-frequency stridulation (a 5.5-9 kHz carrier pulsed at 30-80 Hz, in chirp
  groups or continuous), drifting slowly in level.
- ``hum``: electrical mains hum, 50 or 60 Hz with odd-heavy harmonics up to about 1 kHz.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.fft

__all__ = ["NOISE_KINDS", "render_noise"]

TWO_PI = 2.0 * np.pi


def _unit(x: np.ndarray) -> np.ndarray:
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def _white_spectrum(rng: np.random.Generator, m: int) -> np.ndarray:
    """The one-sided spectrum of ``m`` samples of white noise: complex Gaussian, ``(m // 2 + 1,)``."""
    z = rng.standard_normal((m // 2 + 1, 2))
    return z[:, 0] + 1j * z[:, 1]


def _shaped(rng: np.random.Generator, n: int, sample_rate: int,
            gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """White noise with spectrum multiplied by ``gain(freqs_hz)``, unit RMS, ``(n,)``."""
    m = scipy.fft.next_fast_len(n, real=True)  # odd lengths make pocketfft several times slower
    # The spectrum of white noise is complex white noise: draw it directly and skip one FFT.
    spec = _white_spectrum(rng, m)
    f = np.fft.rfftfreq(m, 1.0 / sample_rate)
    return _unit(scipy.fft.irfft(spec * gain(f), m)[:n])


def _slow(rng: np.random.Generator, n: int, sample_rate: int, cutoff_hz: float) -> np.ndarray:
    """A smooth random curve (noise low-passed at ``cutoff_hz``), unit RMS."""
    # Render at 100 Hz and interpolate: the FFT of a minute at 48 kHz is not needed for a 0.3 Hz curve.
    m = max(int(n / sample_rate * 100) + 2, 8)
    curve = _shaped(rng, m, 100, lambda f: np.exp(-((f / cutoff_hz) ** 2)))
    return np.interp(np.arange(n) / sample_rate * 100, np.arange(m), curve)


def wind(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """Low-passed brown noise with gusts, unit RMS ``(n,)``."""
    fc = rng.uniform(250, 700)
    base = _shaped(rng, n, sample_rate, lambda f: 1.0 / np.maximum(f, 15.0) / (1.0 + (f / fc) ** 4))
    gusts = np.exp(rng.uniform(0.5, 1.0) * _slow(rng, n, sample_rate, rng.uniform(0.15, 0.5)))
    return _unit(base * gusts)


def rain(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """Pink noise plus random drops, unit RMS ``(n,)``."""
    pink = _shaped(rng, n, sample_rate, lambda f: 1.0 / np.sqrt(np.maximum(f, 200.0)))
    n_drops = int(rng.uniform(15, 60) * n / sample_rate)
    at = rng.integers(0, n, n_drops)
    amp = rng.lognormal(0.0, 0.8, n_drops)
    k = int(0.008 * sample_rate)
    tk = np.arange(k) / sample_rate
    kernel = np.diff(rng.standard_normal(k + 1)) * np.exp(-tk / 0.0015)  # a short high-passed tick
    # overlap-add every drop at once: bincount sums the (drop, sample) contributions into the signal
    idx = np.minimum(at[:, None] + np.arange(k), n - 1)
    drops = np.bincount(idx.ravel(), weights=(amp[:, None] * kernel).ravel(), minlength=n)
    return _unit(0.6 * pink + _unit(drops))


def insects(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """Stridulation: a pulsed high carrier, unit RMS ``(n,)``."""
    t = np.arange(n) / sample_rate
    carrier_hz = min(rng.uniform(5500, 9000), 0.4 * sample_rate)
    carrier = np.sin(TWO_PI * carrier_hz * t) + 0.3 * np.sin(TWO_PI * carrier_hz * 1.07 * t)
    pulse_hz = rng.uniform(30, 80)
    pulses = np.sin(TWO_PI * pulse_hz * t) ** 2
    if rng.random() < 0.5:  # chirp groups (cricket-like); otherwise continuous (katydid-like)
        gate = np.sin(TWO_PI * rng.uniform(1.5, 4.0) * t) - rng.uniform(-0.3, 0.3)
        pulses *= np.clip(gate * 8.0 + 0.5, 0.0, 1.0)  # soft-edged on/off groups
    drift = 1.0 + 0.3 * _slow(rng, n, sample_rate, 0.1)
    return _unit(carrier * pulses * np.clip(drift, 0.2, None))


def hum(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """Mains hum at 50 or 60 Hz with harmonics up to about 1 kHz, unit RMS ``(n,)``."""
    mains = float(rng.choice([50.0, 60.0])) + rng.normal(0.0, 0.03)
    # one period as a table, read at the running phase: one interp instead of ~20 sines per sample
    grid = np.linspace(0.0, TWO_PI, 4097)
    period = np.zeros_like(grid)
    for k in range(1, int(1000 // mains) + 1):
        amp = (1.0 if k % 2 else 0.35) / k**0.7 * float(np.exp(rng.normal(0.0, 0.3)))
        period += amp * np.sin(k * grid + rng.uniform(0, TWO_PI))
    phase = np.mod(TWO_PI * mains * np.arange(n) / sample_rate, TWO_PI)
    out = np.interp(phase, grid, period)
    return _unit(out)


NOISE_KINDS: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "wind": wind,
    "rain": rain,
    "insects": insects,
    "hum": hum,
}


def render_noise(kind: str, rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """Background noise of one kind.

    Args:
        kind (str): one of ``wind``, ``rain``, ``insects``, ``hum``.
        rng (np.random.Generator): randomness of this noise.
        n (int): number of samples.
        sample_rate (int): rate in Hz.

    Returns:
        np.ndarray: ``(n,)`` float64 at unit RMS.
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; expected one of {sorted(NOISE_KINDS)}")
    return NOISE_KINDS[kind](rng, n, sample_rate)
