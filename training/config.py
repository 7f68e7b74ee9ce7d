"""Typed training settings: one :class:`TrainConfig` (with its :class:`AugmentConfig`) per run.

The whole config is saved in every checkpoint (``train_config``) and can be read from a JSON file
(``soundscape train --config config.json``), so a run is reproducible from its checkpoint alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from model_store.card import Postprocess
from soundscape.audio import FrontendConfig

from .metrics import Metric
from .pseudo_soundscapes import PseudoSoundscapeConfig

__all__ = ["HEAD_DEFAULTS", "VALIDATION_SETS", "AugmentConfig", "HeadTrainingConfig", "RavenConfig",
           "SelfTrainingConfig", "TrainConfig", "ValidationSet", "training_audio"]

ValidationSet = Literal["pseudo_soundscapes", "clips", "soundscapes"]
VALIDATION_SETS: tuple[ValidationSet, ...] = ("pseudo_soundscapes", "clips", "soundscapes")

Range = tuple[float, float]
# A --backbone run's defaults where the settings give none: its optimiser steps on cached embeddings cost
# microseconds, so it takes many more of them than fine-tuning's 6 epochs at 1e-3 (measured on the field profile
# with BirdNET v2.4: the pseudo-soundscape padded cmAP still rises after 20 epochs at 3e-3).
HEAD_DEFAULTS: dict[str, Any] = {"epochs": 40, "lr": 3e-3, "early_stopping_patience": 10}


def _check_range(name: str, value: Range) -> None:
    if value[0] > value[1]:
        raise ValueError(f"{name}={value} must be (low, high) with low <= high")


CPU_MICRO_BATCH = 8  # micro_batch="auto" on CPUs (README "Training speed and memory")


def parse_micro_batch(text: str) -> int | str:
    """``--micro-batch``: a window count, ``auto`` or ``none`` (whole batches, 0)."""
    if text.lower() in ("auto", "none"):
        return 0 if text.lower() == "none" else "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of windows, 'auto' or 'none', got {text!r}") from None


def add_micro_batch_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--micro-batch N|auto|none`` of the training commands (not given: the config's ``micro_batch``)."""
    parser.add_argument("--micro-batch", type=parse_micro_batch, default=None, metavar="N|auto|none",
                        help="Windows per forward/backward pass (the gradient summed over the batch's passes): less "
                             f"memory, BatchNorm on each pass. auto: {CPU_MICRO_BATCH} on CPUs, whole batches on GPUs; "
                             "none: whole batches. (Default: auto)")


class AugmentConfig(BaseModel):
    """The augmentation recipe. Every step has a probability ``*_p``; 0 switches it off.

    Waveform steps act on each 5 s crop independently (``p`` per sample); mixup and cutmix act on the
    spectrogram batch (``p`` per batch). Mixed targets: mixup uses ``mixup_targets`` (``union``: the
    element-wise max, both birds are audible; ``weighted``: ``lam * y1 + (1 - lam) * y2``); cutmix
    cuts a full-height time band, so targets are area-weighted (``lam`` = the kept fraction of time);
    multi-clip mixing and beds with targets take the union (max).

    Far field (:mod:`soundscape.propagation`, as the pseudo-soundscape validation): reverberation, distance
    low-pass, beds down to -10 dB SNR, random high-pass and EQ, other species' clips mixed in. Every range
    field is ``(low, high)``; distances and frequencies are drawn log-uniformly, the rest uniformly.
    """

    model_config = ConfigDict(extra="forbid")

    noise_p: float = Field(0.5, ge=0, le=1, description="Add coloured noise.")
    noise_colors: list[Literal["white", "pink", "brown"]] = Field(
        default_factory=lambda: ["white", "pink", "brown"], min_length=1, description="Noise colours drawn.")
    noise_snr_db: Range = Field((3.0, 30.0), description="Signal-to-noise ratio range, dB.")
    background_p: float = Field(0.6, ge=0, le=1, description="Mix the sample into a bed (a background or "
                                "unlabelled recording); a bed with a target adds it (max).")
    background_snr_db: Range = Field(
        (-10.0, 15.0), description="Sample-to-bed SNR range, dB, measured as the pseudo-soundscapes do: 1-11 kHz "
        "band power over the sample's active frames (soundscape.propagation.gain_for_snr).")
    unlabelled_beds: bool = Field(
        True, description="Beds also come from the quietest windows of unlabelled_dir (the site's own recordings), "
        "not only from backgrounds_dir.")
    reverb_p: float = Field(0.5, ge=0, le=1, description="Reverberation: convolve with a synthetic impulse "
                            "response (soundscape.propagation.propagate: direct path + decaying noise tail).")
    reverb_rt60_s: Range = Field((0.3, 1.2), description="Reverberation time (RT60) range, seconds.")
    reverb_drr_from_distance: bool = Field(
        True, description="Direct-to-reverberant ratio tied to the drawn distance (drr_for_distance: +12 dB at "
        "10 m, -8 dB at 300 m); else drawn from reverb_drr_db.")
    reverb_drr_db: Range = Field((-8.0, 12.0), description="DRR range, dB, when not tied to the distance.")
    lowpass_p: float = Field(
        0.5, ge=0, le=1, description="Distance low-pass (soundscape.propagation.lowpass_cutoff_hz of the drawn "
        "distance). Decided with the same per-sample draw as reverb_p: equal probabilities low-pass exactly the "
        "reverberated samples, like a far call.")
    distance_m: Range = Field((10.0, 300.0), description="Distance range, metres (log-uniform): low-pass cut-off "
                              "and tied DRR.")
    multiclip_p: float = Field(0.3, ge=0, le=1, description="Add 1..multiclip_max other clips of the batch "
                               "(sharing no label with the sample) into it; targets: union.")
    multiclip_max: int = Field(2, ge=1, description="Most clips added to one sample.")
    multiclip_db: Range = Field((-6.0, 6.0), description="Level of an added clip relative to the sample, dB "
                                "(full-band energy).")
    highpass_p: float = Field(0.3, ge=0, le=1, description="Random 2nd-order Butterworth high-pass.")
    highpass_hz: Range = Field((50.0, 800.0), description="High-pass cut-off range, Hz (log-uniform): a recorder's "
                               "wind / low-cut filter, kept below the lowest calls (an owl's at 1.2 kHz): a "
                               "cut-off above a call erases it and leaves its label.")
    eq_p: float = Field(0.3, ge=0, le=1, description="Random EQ: eq_filters peaking or shelving biquads.")
    eq_filters: int = Field(2, ge=1, description="Filters of one random EQ.")
    eq_gain_db: Range = Field((-6.0, 6.0), description="Gain range of each EQ filter, dB.")
    eq_freq_hz: Range = Field((150.0, 12000.0), description="Centre/corner frequency range, Hz (log-uniform).")
    eq_q: Range = Field((0.5, 2.0), description="Q range of the peaking filters (shelves use 0.707).")
    shift_p: float = Field(0.5, ge=0, le=1, description="Circular time shift.")
    shift_max_s: float = Field(2.5, ge=0, description="Largest shift, seconds.")
    speed_p: float = Field(0.2, ge=0, le=1, description="Speed change (tempo and pitch).")
    speed_range: Range = Field((0.97, 1.03), description="Speed factor range: within the pitch gap of similar "
                               "species (6-7 %), so a change never turns one into the other.")
    pitch_p: float = Field(0.2, ge=0, le=1, description="Pitch shift (tempo kept).")
    pitch_semitones: Range = Field((-0.5, 0.5), description="Pitch shift range, semitones (0.5 = 2.9 %, under "
                                   "the pitch gap of similar species).")
    gain_p: float = Field(0.3, ge=0, le=1, description="Random gain.")
    gain_db: Range = Field((-12.0, 12.0), description="Gain range, dB.")
    freq_mask_p: float = Field(0.5, ge=0, le=1, description="SpecAugment frequency masking.")
    freq_mask_param: int = Field(16, ge=1, description="Widest frequency mask, mel bands.")
    n_freq_masks: int = Field(2, ge=1, description="Frequency masks per image.")
    time_mask_p: float = Field(0.5, ge=0, le=1, description="SpecAugment time masking.")
    time_mask_param: int = Field(30, ge=1, description="Widest time mask, frames.")
    n_time_masks: int = Field(2, ge=1, description="Time masks per image.")
    mixup_p: float = Field(0.5, ge=0, le=1, description="Mixup a batch with a shuffled copy.")
    mixup_alpha: float = Field(0.4, gt=0, description="Beta(alpha, alpha) for the mixing weight.")
    mixup_targets: Literal["union", "weighted"] = Field("union", description="How mixup mixes targets.")
    cutmix_p: float = Field(0.25, ge=0, le=1, description="CutMix a time band from a shuffled copy.")
    cutmix_alpha: float = Field(1.0, gt=0, description="Beta(alpha, alpha) for the kept fraction.")

    @model_validator(mode="after")
    def _check(self) -> AugmentConfig:
        for name in (name for name, f in type(self).model_fields.items() if f.annotation == Range):
            _check_range(name, getattr(self, name))
        for name in ("speed_range", "reverb_rt60_s", "distance_m", "highpass_hz", "eq_freq_hz", "eq_q"):
            if getattr(self, name)[0] <= 0:
                raise ValueError(f"{name}={getattr(self, name)} must be positive")
        return self

    @classmethod
    def off(cls) -> AugmentConfig:
        """No augmentation at all (the plain recipe)."""
        return cls(**{name: 0.0 for name in cls.model_fields if name.endswith("_p")})

    @property
    def enabled(self) -> bool:
        return any(getattr(self, name) > 0 for name in type(self).model_fields if name.endswith("_p"))


class SelfTrainingConfig(BaseModel):
    """Self-training rounds on ``unlabelled_dir`` (see :mod:`training.self_training`)."""

    model_config = ConfigDict(extra="forbid")

    rounds: int = Field(1, ge=0, le=3, description="Student rounds after the first model (0: off); "
                        "needs unlabelled recordings.")
    power: float = Field(2.0, gt=0, description="Sharpening of soft pseudo-labels: q = p^a / (p^a + (1-p)^a).")
    floor: float = Field(0.1, ge=0, lt=1, description="A window whose top probability is below this is a "
                         "negative (all-zero target) and a mixing bed.")
    negative_share: float = Field(
        0.25, ge=0, lt=1, description="Also negatives: this share of the windows with the lowest top probability "
        "(relative to the teacher's own scores, so a teacher that never scores under the floor still yields "
        "negatives; field recordings are >= 25 % nocall).")
    min_target: float = Field(0.05, ge=0, lt=1, description="Sharpened targets below this become 0.")
    window_share: float = Field(0.3, ge=0, le=0.9, description="Share of each epoch's samples drawn from the "
                                "pseudo-labelled windows.")
    student_init: Literal["teacher", "pretrained"] = Field(
        "teacher", description="Start each student from the teacher's weights or from the pretrained ones.")
    epochs: int | None = Field(3, ge=1, description="Epochs of each student round (None: the run's epochs).")

    def targets(self, probs: np.ndarray) -> np.ndarray:
        """Soft training targets of teacher probabilities ``(n, n_classes)`` (the confidence policy)."""
        p = np.clip(np.asarray(probs, dtype=np.float64), 1e-6, 1 - 1e-6)
        q = p**self.power / (p**self.power + (1 - p) ** self.power)
        q[q < self.min_target] = 0.0
        q[self.negatives(p)] = 0.0
        return q.astype(np.float32)

    def negatives(self, probs: np.ndarray) -> np.ndarray:
        """Boolean ``(n,)``: windows that train as negatives (top probability under ``floor``, or among the
        ``negative_share`` lowest top probabilities; ties broken by window order)."""
        top = np.asarray(probs).max(axis=1)
        negative = top < self.floor
        negative[np.argsort(top, kind="stable")[: round(self.negative_share * len(top))]] = True
        return negative


class HeadTrainingConfig(BaseModel):
    """How a head is trained on a frozen backbone's embeddings (``TrainConfig.backbone``; see
    :mod:`training.embedding_head`)."""

    model_config = ConfigDict(extra="forbid")

    crops_per_clip: int = Field(8, ge=1, description="Augmented crops of every training clip (call crops, the "
                                "waveform steps of the recipe) embedded once and cached: the head's training rows.")
    hidden: int = Field(512, ge=1, description="mlp: width of the hidden ReLU layer.")
    dropout: float = Field(0.2, ge=0, lt=1, description="mlp: dropout after the hidden layer (training only).")
    backbone_batch: int = Field(8, ge=1, description="Report windows per backbone run while embedding.")
    backbone_threads: int = Field(1, ge=1, description="Backbone runtime threads while embedding.")


def training_audio(train_config: dict[str, Any]) -> str | None:
    """The folder of a run's training audio, from its saved config (a checkpoint's ``train_config``)."""
    raven = train_config.get("raven") or {}
    return train_config.get("audio_root") or train_config.get("species_dirs") or raven.get("audio_dir")


class RavenConfig(BaseModel):
    """Raven selection tables of long recordings (see :mod:`training.inputs`)."""

    model_config = ConfigDict(extra="forbid")

    tables: Path = Field(..., description="A Raven selection table (tab-separated .txt, or .csv) or a folder of them.")
    audio_dir: Path | None = Field(None, description="Folder of the recordings: used when a table has no 'Begin Path' "
                                   "(or it does not exist here); a table without one names its recording "
                                   "<recording>.Table.1.selections.txt.")
    species_column: str | None = Field(None, description="Column holding the species code (None: the first of "
                                       "Species, Annotation, code, label, class).")
    negatives_per_recording: int = Field(20, ge=0, description="Most unannotated windows of each recording kept as "
                                         "negatives (mixing beds), spread over it.")
    negative_margin_s: float = Field(1.0, ge=0, description="Gap kept between a negative window and any box, s.")


class TrainConfig(BaseModel):
    """Everything one training run needs.

    Validation sets (every one that the data allows is scored and logged each epoch; ``validation``
    names the one that drives early stopping and checkpoint selection):

    - ``pseudo_soundscapes`` (default): held-out clips mixed into field-like beds (the ``unlabelled``
      recordings when given, else generated noise) at field SNRs with distance and reverberation
      (:mod:`training.pseudo_soundscapes`); needs no labelled soundscape;
    - ``clips``: the held-out focal clips themselves (first 5 s of each): easy, unlike the field;
    - ``soundscapes``: labelled soundscapes (``soundscapes_labels`` + ``soundscapes_dir``); with this
      choice nothing is held out and every clip trains (the recipe before pseudo-soundscapes).

    Held out (``val_fraction``, see :func:`training.data.holdout_split`): whole clips of species with two or
    more, the last part of the only clip of the others.
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    # data
    metadata: Path | None = Field(None, description="BirdCLEF layout: train_metadata.csv (primary_label, "
                                  "secondary_labels, filename), with audio_root.")
    audio_root: Path | None = Field(None, description="Folder the metadata's filenames are relative to.")
    species_dirs: Path | None = Field(None, description="One folder per species: <species_dirs>/<code>/*.wav (any "
                                      "audio format the project reads).")
    raven: RavenConfig | None = Field(None, description="Raven selection tables of long recordings: annotation "
                                      "boxes become labelled crops, the unannotated stretches negative windows.")
    soundscapes_labels: Path | None = Field(None, description="soundscape_labels.csv for validation.")
    soundscapes_dir: Path | None = Field(None, description="Folder of <soundscape_id>.<ext> recordings.")
    backgrounds_dir: Path | None = Field(None, description="Background recordings for mixing.")
    unlabelled_dir: Path | None = Field(
        None, description="The site's unlabelled recordings: beds of the pseudo-soundscape validation.")
    taxonomy: Path | None = Field(None, description="Species names: eBird (SPECIES_CODE, PRIMARY_COM_NAME, SCI_NAME), "
                                  "BirdCLEF (primary_label, common_name, scientific_name) or species_code, "
                                  "common_name; columns matched case-insensitively.")
    out_dir: Path = Field(..., description="Run directory: checkpoints, metrics.csv, curves.png, problems.csv.")
    cache_dir: Path | None = Field(None, description="Decoded-audio cache (default: <out_dir>/../.audio_cache).")
    # model
    arch: str = Field("tf_efficientnet_lite0", description="Architecture name (training registry or timm).")
    pretrained: bool = Field(True, description="Start from local pretrained weights.")
    checkpoint: Path | None = Field(None, description="timm-compatible weights to start from.")
    frontend: FrontendConfig = Field(default_factory=FrontendConfig, description="Audio front end.")
    backbone: str | None = Field(
        None, description="Train a head on this model's frozen embeddings instead of fine-tuning arch: a model of "
        "backbone_store as name[:version], or a store version folder (or its card.json). Such a run's defaults for "
        "epochs, lr and early_stopping_patience are 40, 3e-3 and 10.")
    backbone_store: Path | None = Field(None, description="Store that backbone names are looked up in (default: "
                                        "the user store when it has a production version of the name, else the "
                                        "bundled store).")
    head: Literal["linear", "mlp"] = Field("linear", description="The head trained on the backbone's embeddings: "
                                           "linear, or mlp (one hidden ReLU layer).")
    head_training: HeadTrainingConfig = Field(default_factory=HeadTrainingConfig,
                                              description="Embedding cache and head settings (with backbone).")
    drop_rate: float = Field(0.2, ge=0, lt=1)
    drop_path_rate: float = Field(0.1, ge=0, lt=1)
    # optimisation
    epochs: int = Field(6, ge=1, description="Epochs (validations); an epoch is epoch_samples samples.")
    epoch_samples: int | None = Field(
        1024, ge=1, description="Samples drawn per epoch (None: one pass over the training clips), so small and "
        "large data sets train on the same schedule.")
    batch_size: int = Field(32, ge=1)
    micro_batch: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto", description="Windows per forward and backward pass: each batch's gradient is summed over passes of "
        "this many before its one optimiser step, so the activations held (~32 MB a window at 128 x 313 in bfloat16) "
        "follow this size instead of batch_size. BatchNorm then normalises each pass on its own statistics (ghost "
        f"batch norm). 'auto': {CPU_MICRO_BATCH} on CPUs (a round of the default recipe: peak RSS 1954 instead of "
        "2577 MB, 29.4 instead of 33.6 samples/s; field yardstick seed 0: padded cmAP 0.756 against 0.727), whole "
        "batches on GPUs. 0: whole batches.")
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-2, ge=0)
    warmup_epochs: float = Field(1.0, ge=0, description="Linear warm-up length, epochs (may be fractional).")
    min_lr_ratio: float = Field(0.01, ge=0, le=1, description="Cosine floor as a fraction of lr.")
    grad_clip: float | None = Field(5.0, gt=0, description="Max gradient norm (None: no clipping).")
    loss: Literal["bce", "focal"] = Field("bce")
    focal_gamma: float = Field(2.0, ge=0)
    secondary_weight: float = Field(0.5, ge=0, le=1, description="Target value of secondary labels.")
    sampling_alpha: float = Field(0.5, ge=0, le=1, description="Sampling weight ~ clips_per_species^-alpha.")
    min_rating: float = Field(0.0, ge=0, description="Skip clips rated below this (0 keeps unrated).")
    train_crop: Literal["random", "start"] = Field("random", description="Where training crops are cut.")
    call_crop_p: float = Field(
        0.9, ge=0, le=1, description="Share of random training crops of clips longer than the window cut where "
        "the clip calls (active frames of its own band, training.data.call_crop_start); the rest uniform.")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    # run
    seed: int = Field(0)
    val_fraction: float = Field(0.2, ge=0, lt=1, description="Share of each species' clips held out.")
    validation: ValidationSet = Field("pseudo_soundscapes",
                                      description="Validation set that drives early stopping and selection.")
    pseudo: PseudoSoundscapeConfig = Field(default_factory=PseudoSoundscapeConfig,
                                           description="How pseudo-soundscape windows are made.")
    monitor: Metric = Field("padded_cmap", description="Early-stopping and selection metric.")
    early_stopping_patience: int | None = Field(3, ge=1, description="Epochs without improvement (None: off).")
    self_training: SelfTrainingConfig = Field(default_factory=SelfTrainingConfig,
                                              description="Self-training on unlabelled_dir.")
    postprocess: Postprocess = Field(
        default_factory=lambda: Postprocess(smoothing="neighbours"),
        description="Temporal smoothing the exported model's card declares (applied by the service and analyze).")
    num_workers: int = Field(0, ge=0)
    malloc_arena_max: int = Field(
        1, ge=0, le=1024, description="Cap on glibc's malloc arenas, set when training starts (0: glibc's default of "
        "8 per core; MALLOC_ARENA_MAX in the environment wins). With one, the batch-preparing thread reuses the "
        "memory the steps free instead of keeping its own.")
    prefetch: bool | Literal["auto"] = Field(
        "auto", description="Prepare the next batch (augmentation, log-mel, SpecAugment) in a background thread while "
        "the model steps on this one; the same batches as without. auto: on GPUs only. On this 2-core CPU, with passes "
        "of 8, it gained nothing beyond the runs' spread (27.2 samples/s with it, 26.9 without, medians of 3) and held "
        "a second batch's buffers (peak RSS 1625 against 1519 MB).")
    val_batch_size: int = Field(16, ge=1, description="Windows per validation run. ONNX Runtime keeps its largest "
                                "run's activations in its arena: 64 windows of lite0 at 128 x 313 raised the training "
                                "process's peak RSS by ~360 MB, 16 by nothing measurable.")
    resume: bool = Field(False, description="Continue from <out_dir>/last.pt.")
    max_steps_per_epoch: int | None = Field(None, ge=1, description="Cap on steps per epoch (tests).")
    amp: bool = Field(True, description="Mixed-precision autocast of the training steps, weights kept in float32: "
                      "float16 on CUDA, bfloat16 on CPUs with native bfloat16 (AVX512-BF16 or AMX); elsewhere off.")
    channels_last: bool = Field(True, description="Train the model in channels-last memory format (faster "
                                "convolutions on CPUs and tensor cores).")

    @model_validator(mode="before")
    @classmethod
    def _head_defaults(cls, values: Any) -> Any:
        """A ``backbone`` run's own defaults (:data:`HEAD_DEFAULTS`) for the settings not given."""
        if isinstance(values, dict) and values.get("backbone"):
            return {**HEAD_DEFAULTS, **values}
        return values

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        inputs = {"metadata": self.metadata, "species_dirs": self.species_dirs, "raven": self.raven}
        given = [name for name, value in inputs.items() if value is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one training input (metadata with audio_root, species_dirs or raven), "
                             f"not {given or 'none'}")
        if (self.metadata is None) != (self.audio_root is None):
            raise ValueError("metadata and audio_root must be given together")
        if (self.soundscapes_labels is None) != (self.soundscapes_dir is None):
            raise ValueError("soundscapes_labels and soundscapes_dir must be given together")
        if self.validation == "soundscapes" and self.soundscapes_labels is None:
            raise ValueError("validation='soundscapes' needs soundscapes_labels and soundscapes_dir")
        if self.validation != "soundscapes" and self.val_fraction == 0:
            raise ValueError(f"validation={self.validation!r} needs held-out clips: val_fraction must be > 0")
        return self

    @property
    def self_trains(self) -> bool:
        """Whether student rounds run (unlabelled recordings given and ``self_training.rounds > 0``)."""
        return self.unlabelled_dir is not None and self.self_training.rounds > 0

    @property
    def holds_out(self) -> bool:
        """Whether clips are held out (every validation but labelled soundscapes)."""
        return self.validation != "soundscapes"

    @property
    def source(self) -> Path:
        """The training input's file or folder (the metadata, the species folders or the Raven tables)."""
        return self.metadata or self.species_dirs or self.raven.tables

    @property
    def resolved_cache_dir(self) -> Path:
        return self.cache_dir or self.out_dir.parent / ".audio_cache"

    def prefetch_on(self, device_type: str) -> bool:
        """Whether batches are prepared in a background thread on a device of this type (``prefetch`` resolved)."""
        return device_type != "cpu" if self.prefetch == "auto" else self.prefetch

    def micro_batch_on(self, device_type: str) -> int | None:
        """Windows per pass on a device of this type (``cpu``, ``cuda``): ``micro_batch`` resolved, None for
        whole batches."""
        size = CPU_MICRO_BATCH if self.micro_batch == "auto" and device_type == "cpu" else self.micro_batch
        return None if size == "auto" or size == 0 or size >= self.batch_size else size
