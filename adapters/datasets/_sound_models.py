"""Parametric machine and wood-planer sound models, and the anomaly families of the synthetic datasets.

All signals are numpy arrays at the dataset's sample rate (float32 where a sine or an FFT makes them,
float64 once mixed), shape `[N]` unless stated. A model renders a
recording as named components; its *periodic* component (a harmonic series or a click train) can be
re-rendered at another speed, which the speed-shift anomaly needs. An anomaly family returns the change
it makes to the recording (`delta: [N]`, zero outside its event), so an anomalous clip is exactly
`twin + delta` where the twin is the same recording rendered without the anomaly.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache

import numpy as np


def _oaconvolve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """scipy's overlap-add convolution, imported on first use: scipy.signal costs 0.6 s at import, and a
    process that reads its data from the cache never renders a sound."""
    from scipy.signal import oaconvolve
    return oaconvolve(a, b)

TWO_PI = 2.0 * math.pi


# ---------------------------------------------------------------------------------------------- primitives
def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)) + 1e-30))


def sine(turns: np.ndarray) -> np.ndarray:
    """sin(2π·turns) for float64 `turns`: reduced to [0, 1) first, then a float32 sine (fast, ~1e-6 rad)."""
    frac = (turns - np.floor(turns)).astype(np.float32)
    return np.sin(np.float32(TWO_PI) * frac)


def harmonic_sines(turns: np.ndarray, ratios: np.ndarray, phase0: np.ndarray) -> np.ndarray:
    """sin(2π·(ratios[k]·turns + phase0[k])) for integer ratios: `[N] -> [K, N]` float32. Since
    frac(r·x) = frac(r·frac(x)) for integer r, one float64 reduction serves every partial."""
    base = (turns - np.floor(turns)).astype(np.float32)
    arg = np.outer(ratios.astype(np.float32), base) + phase0[:, None].astype(np.float32)
    arg -= np.floor(arg)
    return np.sin(np.float32(TWO_PI) * arg)


@lru_cache(maxsize=64)
def _spectral_envelope(n: int, sr: int, knots_hz: tuple[float, ...], gains_db: tuple[float, ...]) -> np.ndarray:
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    env_db = np.interp(np.log(np.maximum(freqs, 1.0)), np.log(np.asarray(knots_hz)), gains_db)
    return (10.0 ** (env_db / 20.0)).astype(np.float32)


def coloured_noise(rng: np.random.Generator, n: int, sr: int, knots_hz, gains_db) -> np.ndarray:
    """Unit-RMS Gaussian noise whose spectrum follows a curve piecewise linear in (log f, dB): `[N]`."""
    env = _spectral_envelope(n, sr, tuple(map(float, knots_hz)), tuple(map(float, gains_db)))
    spectrum = np.empty(env.size, dtype=np.complex64)
    spectrum.real = rng.standard_normal(env.size, dtype=np.float32)
    spectrum.imag = rng.standard_normal(env.size, dtype=np.float32)
    x = np.fft.irfft(spectrum * env, n)
    return x / rms(x)


def band_gain(freqs: np.ndarray, lo_hz: float, hi_hz: float, edge_octaves: float = 0.15) -> np.ndarray:
    """A smooth band-pass gain over `freqs`: 1 inside [lo, hi], raised-cosine skirts in log frequency."""
    lf = np.log2(np.maximum(freqs, 1.0))
    below = np.clip((lf - (math.log2(lo_hz) - edge_octaves)) / edge_octaves, 0.0, 1.0)
    above = np.clip(((math.log2(hi_hz) + edge_octaves) - lf) / edge_octaves, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(math.pi * np.minimum(below, above))


def band_limited(x: np.ndarray, sr: int, lo_hz: float, hi_hz: float) -> np.ndarray:
    """`x` filtered to [lo, hi] Hz (zero-phase, through the FFT): `[N] -> [N]`."""
    freqs = np.fft.rfftfreq(x.size, 1.0 / sr)
    return np.fft.irfft(np.fft.rfft(x) * band_gain(freqs, lo_hz, hi_hz), x.size)


def event_window(n: int, sr: int, onset_s: float, offset_s: float, fade_s: float) -> np.ndarray:
    """1 inside [onset, offset), 0 outside, raised-cosine ramps of `fade_s` inside the interval: `[N]`."""
    w = np.zeros(n)
    lo, hi = int(round(onset_s * sr)), min(n, int(round(offset_s * sr)))
    if hi <= lo:
        return w
    t = (np.arange(lo, hi) + 0.5) / sr
    ramp = max(fade_s, 1.0 / sr)
    edge = np.clip(np.minimum(t - onset_s, offset_s - t) / ramp, 0.0, 1.0)
    w[lo:hi] = 0.5 - 0.5 * np.cos(math.pi * edge)
    return w


def resonant_click(sr: int, modes_hz, decays_s, gains) -> np.ndarray:
    """A click: a sum of exponentially decaying sinusoids (structural modes), peak-normalised: `[L]`."""
    length = int(math.ceil(6.0 * max(decays_s) * sr)) + 1
    t = np.arange(length) / sr
    h = sum(g * np.exp(-t / d) * np.sin(TWO_PI * f * t) for f, d, g in zip(modes_hz, decays_s, gains, strict=True))
    return h / (np.max(np.abs(h)) + 1e-12)


def turns_track(f0_hz: np.ndarray, sr: int) -> np.ndarray:
    """Running phase in turns (cycles) of a frequency track `[N]` Hz, float64."""
    return np.cumsum(f0_hz) / sr


# ---------------------------------------------------------------------------------------------- components
@dataclass(frozen=True)
class HarmonicSeries:
    """Partials `amps[k]·sin(2π·(ratios[k]·speed·turns + phase0[k]))`, optionally amplitude-modulated.

    turns: `[N]` running phase (cycles) of the reference rate `f0_hz`, carrying its speed wander;
    ratios: `[K]` integers (so a partial's phase reduces exactly from the reference's); amps, phase0
    (turns): `[K]`; envelope: `[N]` or None.
    """

    turns: np.ndarray
    f0_hz: float
    ratios: np.ndarray
    amps: np.ndarray
    phase0: np.ndarray
    nyquist_hz: float
    envelope: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not np.array_equal(self.ratios, np.round(self.ratios)):
            raise ValueError("HarmonicSeries ratios must be integers")

    def partials_hz(self, speed: float = 1.0) -> np.ndarray:
        return self.ratios * self.f0_hz * speed

    def render(self, speed: float = 1.0) -> np.ndarray:
        keep = self.partials_hz(speed) < 0.9 * self.nyquist_hz
        sines = harmonic_sines(speed * self.turns, self.ratios[keep], self.phase0[keep])
        x = self.amps[keep].astype(np.float32) @ sines
        return x if self.envelope is None else x * self.envelope

    @property
    def band_hz(self) -> tuple[float, float]:
        f = self.partials_hz()[self.partials_hz() < 0.9 * self.nyquist_hz]
        return float(f.min()), float(f.max())

    @property
    def peaks_hz(self) -> np.ndarray:
        """Salient frequencies, for anomalies that target one partial."""
        return self.partials_hz()[self.partials_hz() < 0.9 * self.nyquist_hz]


@dataclass(frozen=True)
class ClickTrain:
    """Resonant clicks every `period_s / speed` seconds (with per-click jitter and gain)."""

    n: int
    sr: int
    period_s: float
    start_s: float
    jitter: np.ndarray  # [K] fraction of a period
    gains: np.ndarray  # [K]
    click: np.ndarray  # [L]
    modes_hz: np.ndarray

    def render(self, speed: float = 1.0) -> np.ndarray:
        k = np.arange(self.jitter.size)
        at = np.round((self.start_s + (k + self.jitter) * self.period_s / speed) * self.sr).astype(np.int64)
        keep = (at >= 0) & (at < self.n)
        train = np.zeros(self.n)
        np.add.at(train, at[keep], self.gains[keep])
        return _oaconvolve(train, self.click)[: self.n]

    @property
    def band_hz(self) -> tuple[float, float]:
        return float(self.modes_hz.min()) / 1.4, float(self.modes_hz.max()) * 1.4

    @property
    def peaks_hz(self) -> np.ndarray:
        return self.modes_hz


Periodic = HarmonicSeries | ClickTrain


@dataclass
class MachineSound:
    """One rendered recording of a machine, before background noise.

    components: name -> `[N]`; `periodic` names the component that `periodic_model` re-renders at another
    speed; bands: name -> (lo, hi) Hz where the component has most of its energy.
    """

    components: dict[str, np.ndarray]
    periodic: str
    periodic_model: Periodic
    bands: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def mix(self) -> np.ndarray:
        return np.sum(list(self.components.values()), axis=0)


@dataclass(frozen=True)
class RenderContext:
    """Clip geometry and the per-clip speed: `t: [N]` seconds."""

    n: int
    sr: int
    speed: float

    @cached_property
    def t(self) -> np.ndarray:
        return np.arange(self.n) / self.sr

    @property
    def nyquist_hz(self) -> float:
        return self.sr / 2.0


def _db(x: float | np.ndarray) -> float | np.ndarray:
    return 10.0 ** (x / 20.0)


def _wander(ctx: RenderContext, rng: np.random.Generator, depth: float) -> np.ndarray:
    """Slow speed wander `[N]` around 1 (a real drive never holds its speed exactly)."""
    rate = rng.uniform(0.1, 0.4)
    return 1.0 + depth * sine(rate * ctx.t + rng.uniform(0, 1))


def _at_level(series: HarmonicSeries, level: float) -> HarmonicSeries:
    """The series with its partials scaled to RMS `level` (partials at distinct frequencies add in power)."""
    env = 1.0 if series.envelope is None else rms(series.envelope)
    keep = series.partials_hz() < 0.9 * series.nyquist_hz
    now = math.sqrt(float(np.sum(np.square(series.amps[keep]))) / 2.0) * env
    return replace(series, amps=series.amps * level / now)


def _partial_amps(rng: np.random.Generator, count: int, decay_db: float, jitter_db: float) -> np.ndarray:
    k = np.arange(count)
    return 10.0 ** ((-decay_db * k + rng.uniform(-jitter_db, jitter_db, count)) / 20.0)


# ---------------------------------------------------------------------------------------------- machines
def fan(p: dict, ctx: RenderContext, rng: np.random.Generator) -> MachineSound:
    """Airflow noise with a slow AM, plus blade-pass harmonics and a weak shaft-rate line."""
    shaft_hz = p["rpm"] / 60.0 * ctx.speed
    knee = p["noise_knee_hz"]
    knots = [20.0, knee, 2 * knee, 4 * knee, 8 * knee, 16 * knee]
    gains = [-3.0, 0.0] + [p["noise_slope_db"] * i for i in range(1, 5)]
    am = 1.0 + p["am_depth"] * sine(p["am_hz"] * ctx.speed * ctx.t + rng.uniform(0, 1))
    airflow = coloured_noise(rng, ctx.n, ctx.sr, knots, gains) * am
    blades = int(p["blades"])
    count = int(p["bpf_harmonics"])
    ratios = np.concatenate([[1.0], blades * np.arange(1, count + 1)])
    amps = np.concatenate([[_db(-12.0)], _partial_amps(rng, count, 4.0, 1.5)])
    series = _at_level(HarmonicSeries(turns_track(shaft_hz * _wander(ctx, rng, 0.002), ctx.sr), shaft_hz, ratios,
                                      amps, rng.uniform(0, 1, ratios.size), ctx.nyquist_hz), _db(p["tonal_db"]))
    tonal = series.render()
    return MachineSound({"airflow": airflow, "blade_pass": tonal}, "blade_pass", series,
                        {"airflow": (20.0, min(8 * knee, ctx.nyquist_hz)), "blade_pass": series.band_hz})


def pump(p: dict, ctx: RenderContext, rng: np.random.Generator) -> MachineSound:
    """A low harmonic series (vane-pass emphasised) and low-passed flow noise, both pulsating."""
    shaft_hz = p["rpm"] / 60.0 * ctx.speed
    count = int(p["harmonics"])
    ratios = np.arange(1, count + 1, dtype=float)
    amps = _partial_amps(rng, count, p["harmonic_decay_db"], 2.0)
    amps[(np.arange(1, count + 1) % int(p["vanes"])) == 0] *= _db(6.0)
    pulse = 1.0 + p["pulsation_depth"] * sine(p["pulsation_hz"] * ctx.speed * ctx.t + rng.uniform(0, 1))
    series = _at_level(HarmonicSeries(turns_track(shaft_hz * _wander(ctx, rng, 0.003), ctx.sr), shaft_hz, ratios,
                                      amps, rng.uniform(0, 1, count), ctx.nyquist_hz, envelope=pulse), 1.0)
    lp = p["flow_lowpass_hz"]
    flow = coloured_noise(rng, ctx.n, ctx.sr, [30.0, lp, 2 * lp, 8 * lp], [0.0, 0.0, -12.0, -36.0])
    flow *= _db(p["flow_db"]) * (0.5 + 0.5 * pulse)
    return MachineSound({"harmonics": series.render(), "flow": flow}, "harmonics", series,
                        {"harmonics": series.band_hz, "flow": (30.0, min(2 * lp, ctx.nyquist_hz))})


def gearbox(p: dict, ctx: RenderContext, rng: np.random.Generator) -> MachineSound:
    """Gear-mesh harmonics with shaft-rate sidebands, shaft harmonics, and a low broadband floor."""
    shaft_hz = p["shaft_rpm"] / 60.0 * ctx.speed
    teeth = int(p["teeth"])
    mesh = teeth * np.arange(1, int(p["mesh_harmonics"]) + 1, dtype=float)
    side = p["sideband_depth"] / 2.0
    mesh_amps = _partial_amps(rng, mesh.size, 5.0, 1.5)
    ratios = np.concatenate([mesh, mesh - 1, mesh + 1, np.arange(1, int(p["shaft_harmonics"]) + 1)])
    amps = np.concatenate([mesh_amps, side * mesh_amps, side * mesh_amps,
                           _db(-10.0) * _partial_amps(rng, int(p["shaft_harmonics"]), 3.0, 1.5)])
    series = _at_level(HarmonicSeries(turns_track(shaft_hz * _wander(ctx, rng, 0.002), ctx.sr), shaft_hz, ratios,
                                      amps, rng.uniform(0, 1, ratios.size), ctx.nyquist_hz), 1.0)
    floor = coloured_noise(rng, ctx.n, ctx.sr, [50.0, 500.0, 4000.0, 8000.0], [0.0, 0.0, -10.0, -20.0])
    floor *= _db(p["noise_db"])
    return MachineSound({"mesh": series.render(), "floor": floor}, "mesh", series,
                        {"mesh": series.band_hz, "floor": (50.0, 4000.0)})


def valve(p: dict, ctx: RenderContext, rng: np.random.Generator) -> MachineSound:
    """Open/close click pairs every period (two structural modes each) and high-passed gas hiss."""
    f1 = p["click_mode_hz"]
    modes = np.array([f1, min(f1 * p["second_mode_ratio"], 0.8 * ctx.nyquist_hz)])
    click = resonant_click(ctx.sr, modes, [p["click_decay_s"], 0.6 * p["click_decay_s"]], [1.0, 0.6])
    period = p["period_s"]
    pairs = int(math.ceil(ctx.n / ctx.sr * ctx.speed / period)) + 2
    beats = np.repeat(np.arange(pairs, dtype=float), 2) + np.tile([0.0, p["duty"]], pairs)
    jitter = beats - np.arange(beats.size) + rng.normal(0.0, 0.01, beats.size)
    gains = _db(rng.normal(0.0, 1.0, beats.size)) * np.tile([1.0, 0.7], pairs)
    train = ClickTrain(ctx.n, ctx.sr, period, -rng.uniform(0, period), jitter, gains, click, modes)
    clicks = train.render()
    scale = 1.0 / rms(clicks)
    train = ClickTrain(ctx.n, ctx.sr, period, train.start_s, jitter, gains * scale, click, modes)
    hp = p["hiss_highpass_hz"]
    hiss = coloured_noise(rng, ctx.n, ctx.sr, [hp / 4, hp, ctx.nyquist_hz], [-24.0, 0.0, -6.0]) * _db(p["hiss_db"])
    return MachineSound({"clicks": clicks * scale, "hiss": hiss}, "clicks", train,
                        {"clicks": train.band_hz, "hiss": (hp, ctx.nyquist_hz)})


def slider(p: dict, ctx: RenderContext, rng: np.random.Generator) -> MachineSound:
    """Periodic friction strokes (band noise under a trapezoid envelope) over a motor-hum series."""
    period = p["stroke_period_s"] / ctx.speed
    cycle = (ctx.t / period + rng.uniform(0, 1)) % 1.0
    duty, rise = p["stroke_duty"], 0.15 * p["stroke_duty"]
    envelope = np.clip(np.minimum(cycle / rise, (duty - cycle) / rise), 0.0, 1.0)
    centre, width = p["friction_hz"], p["friction_octaves"]
    lo, hi = centre * 2 ** (-width / 2), min(centre * 2 ** (width / 2), 0.9 * ctx.nyquist_hz)
    friction = band_limited(rng.standard_normal(ctx.n), ctx.sr, lo, hi)
    friction = friction / rms(friction) * envelope / math.sqrt(duty)
    motor_hz = p["motor_hz"] * ctx.speed
    count = int(p["motor_harmonics"])
    ratios = np.arange(1, count + 1, dtype=float)
    amps = _partial_amps(rng, count, 3.0, 2.0)
    series = _at_level(HarmonicSeries(turns_track(motor_hz * _wander(ctx, rng, 0.003), ctx.sr), motor_hz, ratios,
                                      amps, rng.uniform(0, 1, count), ctx.nyquist_hz), _db(p["motor_db"]))
    return MachineSound({"friction": friction, "motor": series.render()}, "motor", series,
                        {"friction": (lo, hi), "motor": series.band_hz})


MACHINES: dict[str, Callable[[dict, RenderContext, np.random.Generator], MachineSound]] = {
    "fan": fan, "pump": pump, "gearbox": gearbox, "valve": valve, "slider": slider,
}


# ---------------------------------------------------------------------------------------------- planer
def board_passes(rng: np.random.Generator, duration_s: float, pass_s: tuple[float, float],
                 gap_s: tuple[float, float]) -> list[tuple[float, float]]:
    """Times (s) when a board is in the cutter: alternating gaps and passes from a random phase."""
    passes, t = [], -rng.uniform(0.0, pass_s[1])
    while t < duration_s:
        length = rng.uniform(*pass_s)
        if t + length > 0:
            passes.append((max(t, 0.0), min(t + length, duration_s)))
        t += length + rng.uniform(*gap_s)
    return passes


def planer(p: dict, group: dict, ctx: RenderContext, rng: np.random.Generator) -> MachineSound:
    """Cutter-head harmonics (knife-pass emphasised; the head slows under load), dust-extraction noise,
    and cutting noise while a board passes. `group` holds the board-size settings (or a start/stop ramp)."""
    duration = ctx.n / ctx.sr
    passes = [] if group.get("start_stop") else board_passes(rng, duration, tuple(group["pass_s"]),
                                                              tuple(group["gap_s"]))
    load = np.zeros(ctx.n)
    for lo, hi in passes:
        load = np.maximum(load, event_window(ctx.n, ctx.sr, lo, hi, 0.15))
    speed_track = (1.0 - p["load_dip"] * load) * _wander(ctx, rng, 0.002)
    if group.get("start_stop"):
        at, ramp = rng.uniform(0.1, 0.6) * duration, rng.uniform(*group["ramp_s"])
        up = np.clip((ctx.t - at) / ramp, 0.0, 1.0)
        speed_track *= 0.15 + 0.85 * (up if rng.random() < 0.5 else 1.0 - up)
    head_hz = p["head_rpm"] / 60.0 * ctx.speed
    count, knives = int(p["harmonics"]), int(p["knives"])
    ratios = np.arange(1, count + 1, dtype=float)
    amps = _partial_amps(rng, count, 1.5, 2.0)
    amps[(np.arange(1, count + 1) % knives) == 0] *= _db(p["knife_emphasis_db"])
    series = _at_level(HarmonicSeries(turns_track(head_hz * speed_track, ctx.sr), head_hz, ratios, amps,
                                      rng.uniform(0, 1, count), ctx.nyquist_hz,
                                      envelope=np.minimum(1.0, 0.3 + speed_track) if group.get("start_stop") else None),
                       1.0)
    blower = coloured_noise(rng, ctx.n, ctx.sr, [40.0, 300.0, 2000.0, 10000.0], [-6.0, 0.0, -8.0, -20.0])
    blower *= _db(p["blower_db"])
    sound = MachineSound({"head": series.render(), "blower": blower}, "head", series,
                         {"head": series.band_hz, "blower": (100.0, 3000.0)})
    if passes:
        lo, hi = group["cutting_hz"][0], min(group["cutting_hz"][1], 0.9 * ctx.nyquist_hz)
        cutting = band_limited(rng.standard_normal(ctx.n), ctx.sr, lo, hi)
        sound.components["cutting"] = cutting * _db(group["cutting_db"]) / rms(cutting) * load
        sound.bands["cutting"] = (lo, hi)
    return sound


def background(rng: np.random.Generator, n: int, sr: int, knots_hz, gains_db, hum_db: float | None) -> np.ndarray:
    """Room/factory background: coloured noise with a slow level drift and optional mains hum; unit RMS."""
    t = np.arange(n) / sr
    drift = _db(1.5 * sine(rng.uniform(0.05, 0.2) * t + rng.uniform(0, 1)))
    x = coloured_noise(rng, n, sr, knots_hz, gains_db) * drift
    if hum_db is not None:
        mains = rng.choice([50.0, 60.0])
        k = np.arange(1, 6)
        hum = _db(-3.0 * (k - 1)) @ harmonic_sines(mains * t, k.astype(float), rng.uniform(0, 1, k.size))
        x = x + hum / rms(hum) * _db(hum_db)
    return x / rms(x)


# ---------------------------------------------------------------------------------------------- anomalies
@dataclass(frozen=True)
class AnomalyContext:
    """What a family may look at: the clip's machine sound and its normal twin (machine + background)."""

    sound: MachineSound
    twin: np.ndarray
    sr: int

    @property
    def n(self) -> int:
        return self.twin.size

    @property
    def nyquist_hz(self) -> float:
        return self.sr / 2.0


@dataclass(frozen=True)
class AnomalyRender:
    """One family's contribution to one event: `delta: [N]` and the band (Hz) it affects. `additive`: the
    delta is a new sound independent of the machine's, so scaling it only makes it louder (a changed or
    removed machine component is not: scaled, it would be another anomaly)."""

    family: str
    delta: np.ndarray
    f_lo_hz: float
    f_hi_hz: float
    additive: bool


def _scaled_to_amr(source: np.ndarray, twin: np.ndarray, sr: int, onset_s: float, offset_s: float,
                   amr_db: float) -> np.ndarray:
    """`source` scaled so its energy over the event is `amr_db` relative to the normal twin's there."""
    lo, hi = int(onset_s * sr), max(int(onset_s * sr) + 1, int(offset_s * sr))
    e_src = float(np.sum(np.square(source[lo:hi]))) + 1e-30
    e_twin = float(np.sum(np.square(twin[lo:hi])))
    return source * math.sqrt(10.0 ** (amr_db / 10.0) * e_twin / e_src)


def tonal_whine(ctx: AnomalyContext, rng, level: float, onset_s: float, offset_s: float) -> AnomalyRender:
    """A whine (a bearing or belt squeal): a tone and 1-3 overtones with vibrato and a slow glide."""
    partials = int(rng.integers(1, 5))
    f = math.exp(rng.uniform(math.log(300.0), math.log(0.75 * ctx.nyquist_hz / partials)))
    glide = rng.uniform(-0.03, 0.03)
    t = np.arange(ctx.n) / ctx.sr
    rel = np.clip((t - onset_s) / max(offset_s - onset_s, 1e-3), 0.0, 1.0)
    inst = f * (1.0 + glide * rel + 0.004 * sine(rng.uniform(3, 7) * t))
    overtones = 0.6 ** np.arange(partials)
    tone = overtones @ harmonic_sines(turns_track(inst, ctx.sr), np.arange(1.0, partials + 1),
                                      rng.uniform(0, 1, partials))
    w = event_window(ctx.n, ctx.sr, onset_s, offset_s, 0.03)
    delta = _scaled_to_amr(tone * w, ctx.twin, ctx.sr, onset_s, offset_s, level)
    lo, hi = f * min(1.0, 1.0 + glide) * 0.98, partials * f * max(1.0, 1.0 + glide) * 1.02
    return AnomalyRender("tonal_whine", delta, lo, hi, additive=True)


def impulsive_knocks(ctx: AnomalyContext, rng, level: float, onset_s: float, offset_s: float) -> AnomalyRender:
    """Knocks (a loose part striking): resonant clicks at an irregular 2-10 Hz rate inside the event."""
    f1 = math.exp(rng.uniform(math.log(400.0), math.log(0.35 * ctx.nyquist_hz)))
    modes = np.array([f1, f1 * rng.uniform(1.5, 2.6)])
    decay = rng.uniform(0.004, 0.015)
    click = resonant_click(ctx.sr, modes, [decay, 0.7 * decay], [1.0, 0.5])
    tail = click.size / ctx.sr
    span = max(offset_s - onset_s - tail, 0.0)
    count = max(1, int(round(span * rng.uniform(2.0, 10.0))))
    at = onset_s + np.sort(rng.uniform(0.0, span, count))
    at[0] = onset_s
    train = np.zeros(ctx.n)
    np.add.at(train, np.round(at * ctx.sr).astype(np.int64), _db(rng.normal(0.0, 2.0, count)))
    knocks = _oaconvolve(train, click)[: ctx.n] * event_window(ctx.n, ctx.sr, onset_s, offset_s, 0.0)
    delta = _scaled_to_amr(knocks, ctx.twin, ctx.sr, onset_s, offset_s, level)
    return AnomalyRender("impulsive_knocks", delta, modes.min() / 1.4, min(modes.max() * 1.4, ctx.nyquist_hz),
                         additive=True)


def friction_burst(ctx: AnomalyContext, rng, level: float, onset_s: float, offset_s: float) -> AnomalyRender:
    """Rubbing: band-limited noise (1/3 to 1 octave) with a rough, fluttering envelope."""
    centre = math.exp(rng.uniform(math.log(500.0), math.log(0.6 * ctx.nyquist_hz)))
    width = rng.uniform(1.0 / 3.0, 1.0)
    lo, hi = centre * 2 ** (-width / 2), min(centre * 2 ** (width / 2), 0.9 * ctx.nyquist_hz)
    noise = band_limited(rng.standard_normal(ctx.n), ctx.sr, lo, hi)
    t = np.arange(ctx.n) / ctx.sr
    flutter = 1.0 + 0.5 * sine(rng.uniform(4.0, 12.0) * t + rng.uniform(0, 1))
    w = event_window(ctx.n, ctx.sr, onset_s, offset_s, 0.02)
    delta = _scaled_to_amr(noise * flutter * w, ctx.twin, ctx.sr, onset_s, offset_s, level)
    return AnomalyRender("friction_burst", delta, lo, hi, additive=True)


def speed_shift(ctx: AnomalyContext, rng, level: float, onset_s: float, offset_s: float,
                sign: float | None = None) -> AnomalyRender:
    """The periodic component runs `level` (relative) faster or slower during the event, cross-faded."""
    shift = level * (sign if sign is not None else rng.choice([-1.0, 1.0]))
    model = ctx.sound.periodic_model
    w = event_window(ctx.n, ctx.sr, onset_s, offset_s, 0.05)
    delta = w * (model.render(1.0 + shift) - ctx.sound.components[ctx.sound.periodic])
    lo, hi = model.band_hz
    return AnomalyRender("speed_shift", delta, lo * min(1.0, 1.0 + shift),
                         min(hi * max(1.0, 1.0 + shift), ctx.nyquist_hz), additive=False)


def slowdown(ctx: AnomalyContext, rng, level: float, onset_s: float, offset_s: float) -> AnomalyRender:
    """A speed shift downwards (a motor dragged by a load)."""
    return speed_shift(ctx, rng, level, onset_s, offset_s, sign=-1.0)


def dropout(ctx: AnomalyContext, rng, level: float, onset_s: float, offset_s: float) -> AnomalyRender:
    """A missing component: the periodic component vanishes during the event within a band of `level`
    octaves centred on one of its partials."""
    centre = float(rng.choice(ctx.sound.periodic_model.peaks_hz))
    lo, hi = centre * 2 ** (-level / 2), min(centre * 2 ** (level / 2), 0.95 * ctx.nyquist_hz)
    part = band_limited(ctx.sound.components[ctx.sound.periodic], ctx.sr, lo, hi)
    delta = -event_window(ctx.n, ctx.sr, onset_s, offset_s, 0.02) * part
    return AnomalyRender("dropout", delta, lo, hi, additive=False)


def modulation_change(ctx: AnomalyContext, rng, level: float, onset_s: float, offset_s: float) -> AnomalyRender:
    """A component starts to pulse at a new 3-15 Hz rate in one octave of its band (surge, chatter)."""
    names = sorted(ctx.sound.components)
    name = names[int(rng.integers(len(names)))]
    band_lo, band_hi = ctx.sound.bands[name]
    lo_lim, hi_lim = math.log2(max(band_lo, 60.0)), math.log2(min(band_hi, 0.8 * ctx.nyquist_hz))
    centre = 2 ** rng.uniform(lo_lim, max(lo_lim, hi_lim))
    lo, hi = centre / math.sqrt(2.0), min(centre * math.sqrt(2.0), 0.9 * ctx.nyquist_hz)
    part = band_limited(ctx.sound.components[name], ctx.sr, lo, hi)
    t = np.arange(ctx.n) / ctx.sr
    pulse = (0.5 + 0.5 * sine(rng.uniform(3.0, 15.0) * t + rng.uniform(0, 1))) ** 2
    w = event_window(ctx.n, ctx.sr, onset_s, offset_s, 0.02)
    delta = _scaled_to_amr(part * pulse * w, ctx.twin, ctx.sr, onset_s, offset_s, level)
    return AnomalyRender("modulation_change", delta, lo, hi, additive=False)


Family = Callable[[AnomalyContext, np.random.Generator, float, float, float], AnomalyRender]

FAMILIES: dict[str, Family] = {
    "tonal_whine": tonal_whine,
    "impulsive_knocks": impulsive_knocks,
    "friction_burst": friction_burst,
    "speed_shift": speed_shift,
    "slowdown": slowdown,
    "dropout": dropout,
    "modulation_change": modulation_change,
}

# How a family's strength moves between its easy and hard end: dB levels linearly, ratios geometrically.
GEOMETRIC_STRENGTH = {"speed_shift", "slowdown", "dropout"}
