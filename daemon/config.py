"""The installer's YAML configuration of one gate board, as strict pydantic models.

Every model is frozen and forbids unknown keys: a typo is an error, never a silently ignored
setting.  Each field has a description (it becomes the JSON Schema an editor shows while the
installer types).  Loading and line numbers live in ``daemon/configfile.py``, cross-field checks in
``daemon/configcheck.py``;
this module is only the shape.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from daemon.schedule import ScheduleError, parse_schedule
from drivers.wiegand import check_formats

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
Ident = Annotated[str, Field(pattern=ID_PATTERN)]
Pin = Annotated[int, Field(ge=0, le=53, description="GPIO pin, BCM numbering.")]


def _resolve(value: Path, info: ValidationInfo, key: str) -> Path:
    """Make a relative path absolute against the directory named in the validation context."""
    base = (info.context or {}).get(key)
    return value if value.is_absolute() or base is None else Path(base) / value


def _input_path(value: Path, info: ValidationInfo) -> Path:
    return _resolve(value, info, "config_dir")


def _state_path(value: Path, info: ValidationInfo) -> Path:
    return _resolve(value, info, "state_dir")


#: A file the installer provides (model, key, certificate): relative to the config file's folder.
InputPath = Annotated[Path, AfterValidator(_input_path)]
#: A file the daemon writes (journal, store): relative to ``state_dir``.
StatePath = Annotated[Path, AfterValidator(_state_path)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class Wiring(StrEnum):
    NORMALLY_OPEN = "normally_open"
    NORMALLY_CLOSED = "normally_closed"


class FailMode(StrEnum):
    SAFE = "safe"
    SECURE = "secure"


class AccessRule(StrEnum):
    CARD = "card"
    FACE = "face"
    CARD_OR_FACE = "card_or_face"
    CARD_AND_FACE = "card_and_face"


class GateSection(Strict):
    id: Ident = Field(description="Gate id, unique among the station's gates; used in MQTT topics.")
    site: str = Field(min_length=1, description="Compound or site name shown at the station.")
    timezone: str = Field(
        "Asia/Shanghai", description="IANA timezone for schedules and validity dates."
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown timezone {value!r} (use an IANA name such as Asia/Shanghai)"
            ) from exc
        return value


class HardwareSection(Strict):
    gpio_backend: Literal["lgpio", "mock"] = Field(
        "lgpio",
        description="GPIO library: lgpio (every Raspberry Pi), "
        "mock (simulate mode: no hardware, simulated pins and readers).",
    )

    @field_validator("gpio_backend", mode="before")
    @classmethod
    def _no_rpigpio(cls, value: object) -> object:
        if value == "rpigpio":
            raise ValueError("rpigpio was removed: RPi.GPIO loses door-contact edges after a "
                             "short glitch; use lgpio, which works on every Raspberry Pi")
        return value
    pin_numbering: Literal["BCM"] = Field("BCM", description="Pin numbering scheme (BCM only).")

    @property
    def simulate(self) -> bool:
        return self.gpio_backend == "mock"


class LockSection(Strict):
    pin: Pin = Field(description="GPIO pin driving the lock relay.")
    active_high: bool = Field(True, description="Relay energised when the pin is high.")
    fail_mode: FailMode = Field(
        FailMode.SECURE,
        description="safe: the lock opens without power (magnetic locks, fire exits); "
        "secure: the lock stays locked without power (electric strikes).",
    )


class InputSection(Strict):
    pin: Pin = Field(description="GPIO input pin (internal pull-up).")
    wiring: Wiring = Field(Wiring.NORMALLY_OPEN, description="Switch wiring.")
    debounce_ms: int = Field(30, ge=0, le=1000, description="Debounce time in milliseconds.")


class ContactSection(InputSection):
    wiring: Wiring = Field(
        Wiring.NORMALLY_CLOSED, description="Door contact wiring (closed circuit when door shut)."
    )


class LedSection(Strict):
    green: Pin | None = Field(None, description="Green LED pin (granted).")
    red: Pin | None = Field(None, description="Red LED pin (denied, alarm).")


class AntiPassback(Strict):
    entry_reader: Ident = Field(description="Reader at the entry side.")
    exit_reader: Ident = Field(description="Reader at the exit side.")


class FirstPersonSection(Strict):
    group: Ident = Field(
        description="Access group (of the resident store) whose members' first card opens the "
        "door for the rest of the window, e.g. managers."
    )
    schedule: str = Field(
        description="Windows in the schedule syntax of access groups, e.g. 'mon-fri 07:00-09:00'; "
        "the first card of the group in a window holds the door open until that window ends. "
        "Holidays follow the resident store: on a holiday only 'hol' windows apply."
    )
    faces: bool = Field(
        False,
        description="A face-scan passage counts too (off: only a passage with a card; a face is "
        "recognised without its owner meaning to open the door, and a false match would hold "
        "it open for everyone).",
    )

    @field_validator("schedule")
    @classmethod
    def _windows_that_end(cls, value: str) -> str:
        try:
            schedule = parse_schedule(value)
        except ScheduleError as exc:
            raise ValueError(str(exc)) from exc
        if schedule.always:
            raise ValueError("'always' has no end: give the windows in which the first card "
                             "opens the door, e.g. 'mon-fri 07:00-09:00'")
        return value


class DoorSection(Strict):
    name: str = Field("", description="Human-readable name shown in status and at the station.")
    lock: LockSection = Field(description="The lock relay.")
    unlock_seconds: float = Field(5, gt=0, le=300, description="Length of an unlock pulse.")
    relock_on_close: bool = Field(True, description="Relock as soon as the door closes again.")
    contact: ContactSection | None = Field(None, description="Door position contact.")
    exit_button: InputSection | None = Field(None, description="Request-to-exit button.")
    tamper: InputSection | None = Field(None, description="Tamper switch of the reader housing.")
    held_open_seconds: float = Field(
        30, gt=0, le=3600, description="Open longer than this raises door.held."
    )
    held_reminder_seconds: float = Field(
        60, gt=0, le=3600, description="Repeat door.held while still open, every this many seconds."
    )
    egress: bool = Field(True, description="Exit button works, even in lockdown (egress route).")
    leds: LedSection = Field(default={}, description="Feedback LEDs.")  # type: ignore[assignment]
    buzzer: Pin | None = Field(None, description="Buzzer pin.")
    access: AccessRule = Field(AccessRule.CARD_OR_FACE, description="What opens this door.")
    multi_factor_seconds: float = Field(
        10,
        gt=0,
        le=120,
        description="card_and_face, pin_required: both factors within this many seconds.",
    )
    pin_required: bool = Field(
        False,
        description="Card + PIN: after the card the resident types the PIN and '#' on the "
        "reader's keypad (Wiegand or OSDP); a duress PIN opens and raises a silent alarm.",
    )
    anti_passback: AntiPassback | None = Field(None, description="Optional anti-passback pair.")
    hold_open_schedule: str | None = Field(
        None,
        description="Unlocked hours (e.g. market hours), in the schedule syntax of access groups: "
        "'mon-fri 07:00-09:00; sat 08:00-12:00'.  Holidays follow the resident store.",
    )
    first_person: FirstPersonSection | None = Field(
        None,
        description="First-person unlock (first card normal open): the first card of a group's "
        "member in a window holds the door open until the window ends (docs/install.md).",
    )
    interlock_with: Ident | None = Field(
        None, description="Sally port: this door may not unlock while that door is open."
    )
    liveness: Literal["none", "rgb", "nir"] | None = Field(
        None,
        description="Liveness a face must prove here: nir (NIR camera: stops screens and most "
        "prints), rgb (passive models and motion only: a printed or on-screen photo may pass), "
        "none.  The gate must provide it (check-config).  Unset: whatever the gate has, with a "
        "warning when that is weaker than nir on a door a face alone opens.",
    )

    @field_validator("hold_open_schedule")
    @classmethod
    def _valid_schedule(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_schedule(value)
            except ScheduleError as exc:
                raise ValueError(str(exc)) from exc
        return value


#: The Wiegand format table of drivers.wiegand (a test keeps both lists equal).
WiegandFormatName = Literal[
    "h10301", "32bit", "34bit", "c1000_35", "c15001", "h10304", "h10302", "c1000_48"
]


class ReaderSection(Strict):
    type: Literal["wiegand", "em4100", "ascii", "osdp"] = Field(description="Reader kind.")
    door: Ident = Field(description="Door this reader serves.")
    port: str | None = Field(
        None, description="Serial port (em4100, ascii, osdp), e.g. /dev/menjin-reader-front."
    )
    baud: int = Field(9600, description="Serial baud rate.")
    d0_pin: Pin | None = Field(None, description="Wiegand D0 pin.")
    d1_pin: Pin | None = Field(None, description="Wiegand D1 pin.")
    formats: tuple[WiegandFormatName, ...] = Field(
        ("h10301",),
        description="wiegand, osdp: card formats accepted, tried in order; lengths at least 2 "
        "bits apart (docs/install.md, 'Readers').",
    )
    frame_gap_ms: float = Field(
        25,
        ge=5,
        le=500,
        description="wiegand: silence on both lines that ends a frame (bits come 0.2-20 ms apart).",
    )
    raw_lengths: tuple[int, ...] = Field(
        (),
        description="wiegand: frame lengths passed on unchecked as a raw number (no parity); "
        "each at least 3 bits away from every format listed.",
    )
    number_base: Literal[10, 16] = Field(10, description="ascii: base of the card number.")
    byte_order: Literal["big", "little"] = Field("big", description="ascii: byte order.")
    strip_prefix: str = Field("", description="ascii: prefix removed from each line.")
    strip_suffix: str = Field("", description="ascii: suffix removed from each line.")
    pattern: str | None = Field(
        None, description="ascii: regular expression with a named group 'card'."
    )
    osdp_address: int = Field(0, ge=0, le=126, description="osdp: peripheral address.")
    osdp_key_file: InputPath | None = Field(
        None, description="osdp: Secure Channel key file (hex)."
    )
    keep_bits: int | None = Field(
        None,
        ge=8,
        le=64,
        description="Keep only the low N bits of the card number, so one tag read by a serial "
        "EM4100 reader (40 bits) and a Wiegand-26 reader (24 bits) gives the same credential "
        "(32: the 10-digit number printed on EM4100 cards).",
    )
    repeat_window_ms: int = Field(
        1500, ge=0, le=60000, description="The same card within this window is one presentation."
    )
    inter_char_timeout_ms: int = Field(
        50,
        ge=5,
        le=1000,
        description="em4100, ascii: a frame or line whose bytes pause this long is dropped, so "
        "a cut read never joins the next card's digits.",
    )

    @model_validator(mode="after")
    def _misread_safe_formats(self) -> ReaderSection:
        if self.raw_lengths and self.type != "wiegand":
            raise ValueError("raw_lengths: only a wiegand reader has raw frames")
        if self.type in ("wiegand", "osdp"):
            check_formats(self.formats, self.raw_lengths)  # ValueError says why
        return self

    @field_validator("baud")
    @classmethod
    def _standard_baud(cls, value: int) -> int:
        if value not in (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200):
            raise ValueError(f"{value} is not a standard baud rate (9600 for EM4100 readers)")
        return value

    @field_validator("pattern")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from exc
        if "card" not in compiled.groupindex:
            raise ValueError("the regular expression needs a named group (?P<card>...)")
        return value


class NirCameraSection(Strict):
    source: int | str = Field(
        description="The NIR (infrared) lens of a dual-lens module: V4L2 index, device path, "
        "stream URL, video file or image folder."
    )
    width: int = Field(640, ge=160, le=3840, description="Capture width in pixels.")
    height: int = Field(480, ge=120, le=2160, description="Capture height in pixels.")
    fps: float = Field(15, gt=0, le=60, description="Capture frame rate.")
    calibration: StatePath = Field(
        Path("nir_calibration.json"),
        description="RGB-to-NIR pixel mapping written by `menjin camera calibrate`.",
    )
    max_skew_ms: int = Field(
        60, ge=1, le=1000, description="An NIR frame pairs with an RGB frame this close in time."
    )
    min_reflectance: float = Field(
        0.25, gt=0, lt=1, description="Mean grey (0-1) of the face in the NIR frame for live skin."
    )


class CameraSection(Strict):
    source: int | str = Field(
        description="V4L2 index (0), device path (/dev/video0), rtsp:// or http:// URL, "
        "a video file, or a folder of images (simulate)."
    )
    door: Ident = Field(description="Door this camera watches.")
    width: int = Field(1280, ge=160, le=3840, description="Capture width in pixels.")
    height: int = Field(720, ge=120, le=2160, description="Capture height in pixels.")
    fps: float = Field(15, gt=0, le=60, description="Capture frame rate.")
    nir: NirCameraSection | None = Field(
        None, description="Second, near-infrared camera of the same module (liveness)."
    )


class ModelSection(Strict):
    kind: str = Field(description="Model kind, stated explicitly (never guessed).")
    path: InputPath = Field(description="ONNX model file.")


class DetectorSection(ModelSection):
    kind: Literal["scrfd", "yunet"] = Field(description="scrfd (insightface) or yunet (MIT).")
    input_size: tuple[int, int] = Field((640, 480), description="Detector input width, height.")
    score_threshold: float = Field(0.6, gt=0, lt=1, description="Minimum detection score.")
    roi: tuple[int, int, int, int] | None = Field(
        None, description="Region of interest x, y, width, height in frame pixels."
    )


class EmbedderSection(ModelSection):
    kind: Literal[
        "arcface", "mobilefacenet_foamliu", "mobilefacenet_paddlex", "face_reid_0095"
    ] = Field(description="Embedding model kind.")
    mirror_average: bool | None = Field(
        None, description="Embed each face and its mirror image and average (re-enrol on "
        "change); default per embedder kind: on, off for arcface."
    )


class LivenessSection(Strict):
    kind: Literal["minifasnet", "insightface"] = Field("minifasnet", description="Liveness model.")
    paths: tuple[InputPath, ...] = Field(description="Model file(s): both MiniFASNet files.")
    threshold: float = Field(
        0.5, gt=0, lt=1, description="Minimum median live probability over a track's frames."
    )
    frames: int = Field(5, ge=1, le=30, description="Frames of a track scored by the models.")
    motion: bool = Field(
        True, description="Refuse tracks that move as one plane (a photo tilted in front of the "
        "camera)."
    )


class QualitySection(Strict):
    min_face_px_recognise: int = Field(
        64, ge=16, description="Smallest face (eye line based) to match."
    )
    min_face_px_capture: int = Field(40, ge=16, description="Smallest face kept as a portrait.")
    min_sharpness_recognise: float = Field(
        20.0, ge=0, description="Variance of the Laplacian at a fixed contrast."
    )
    min_sharpness_capture: float = Field(
        10.0, ge=0, description="Variance of the Laplacian at a fixed contrast."
    )


class VisionSection(Strict):
    enabled: bool = Field(True, description="Run face capture and face-scan entry.")
    detector: DetectorSection = Field(description="Face detector.")
    embedder: EmbedderSection = Field(description="Face embedding model.")
    liveness: LivenessSection | None = Field(
        None, description="Anti-spoofing; without it, doors needing it should use card_and_face."
    )
    match_threshold: float | None = Field(
        None, gt=0, lt=1, description="Cosine similarity to accept; default calibrated per model."
    )
    match_margin: float = Field(0.05, ge=0, lt=1, description="Lead over the second-best person.")
    agree_frames: int = Field(
        3, ge=1, le=30, description="Frames of one track fused before the first decision."
    )
    fuse_frames: int = Field(
        12, ge=1, le=30, description="Best frames of a track (by quality) fused into one "
        "embedding: enough to hold every look of a passage."
    )
    refine_landmarks: bool | None = Field(
        None, description="Second detector pass on the face crop and its mirror (YuNet noise); "
        "default per embedder kind: on, off for arcface."
    )
    scoring: Literal["mean", "max", "centroid"] | None = Field(
        None, description="A person's score from their templates: mean of the template scores, "
        "best template, or normalised mean template; default per embedder kind: mean, max for "
        "arcface.  The default threshold is calibrated for the default; set match_threshold "
        "from `menjin faces evaluate` when changing it."
    )
    threads: int = Field(
        2, ge=1, le=8, description="ONNX Runtime intra-op threads of each model (the calling "
        "thread and threads - 1 pool threads per model); at most the CPUs the vision process "
        "may use (see reserved_cpus)."
    )
    cpu_priority: Literal["idle", "low", "normal"] = Field(
        "idle", description="CPU priority of the vision process: idle (SCHED_IDLE: it runs on "
        "the CPU time the door daemon and the kernel leave, and a woken door daemon takes the "
        "CPU from it at once), low (nice 19), normal (as the door daemon)."
    )
    reserved_cpus: int = Field(
        1, ge=0, le=64, description="CPUs kept free of the vision process (the lowest-numbered: "
        "CPU 0 takes the serial and USB interrupts), so that a card's bytes, the kernel's tty "
        "worker and the door daemon always find an idle core; 0 = vision may use every CPU.  "
        "On a board with no more CPUs than this, vision keeps the last one."
    )
    quality: QualitySection = Field(default={}, description="Quality gate.")  # type: ignore[assignment]
    templates: StatePath = Field(
        Path("templates.bin"), description="Encrypted face template store."
    )
    portrait_margin: float = Field(
        0.4, ge=0, le=2, description="Portrait crop margin around the face."
    )
    portrait_size: int = Field(256, ge=64, le=1024, description="Portrait long side in pixels.")


class AccessSection(Strict):
    db: StatePath = Field(
        Path("residents.db"), description="SQLite store of persons and credentials."
    )


class ClockSection(Strict):
    rtc: InputPath | None = Field(
        None,
        description="sysfs directory of a battery-backed RTC (e.g. /sys/class/rtc/rtc0); when "
        "present and agreeing with the system clock, time is trusted without NTP.",
    )
    untrusted_schedules: Literal["always_only", "clock"] = Field(
        "always_only",
        description="While the clock is untrusted: always_only lets groups with the 'always' "
        "schedule in and refuses time-restricted ones (time_untrusted); clock evaluates "
        "schedules on the clock anyway.",
    )


class JournalSection(Strict):
    path: StatePath = Field(Path("journal.db"), description="SQLite event journal (WAL).")
    quota_mb: int = Field(512, ge=8, description="Disk quota for events and portraits.")
    retention_days: int = Field(
        30, ge=1, description="Delivered events older than this are purged."
    )
    fsync: Literal["alarms_and_access", "all", "batched"] = Field(
        "alarms_and_access", description="Which events are fsynced before they count as recorded."
    )


class TlsSection(Strict):
    ca_file: InputPath = Field(description="CA certificate that signed the broker's certificate.")
    cert_file: InputPath | None = Field(None, description="Client certificate.")
    key_file: InputPath | None = Field(None, description="Client private key.")


class UplinkSection(Strict):
    enabled: bool = Field(True, description="Upload to the station broker.")
    host: str = Field(description="Station MQTT broker host.")
    port: int = Field(8883, ge=1, le=65535, description="Broker port.")
    tls: TlsSection | None = Field(None, description="TLS settings (required off the local host).")
    username: str | None = Field(None, description="MQTT user name.")
    password_file: InputPath | None = Field(None, description="File holding the MQTT password.")
    password_env: str | None = Field(None, description="Environment variable holding the password.")
    client_id: str | None = Field(None, description="MQTT client id; default menjin-<gate id>.")
    prefix: str = Field("menjin", pattern=r"^[A-Za-z0-9_/-]+$", description="Topic prefix.")
    station_public_key_file: InputPath | None = Field(
        None,
        description="Ed25519 public key (PEM) of the station; commands are refused without it.",
    )
    health_seconds: float = Field(60, ge=5, description="Health report interval.")
    inflight: int = Field(32, ge=1, le=1000, description="Unacknowledged QoS 1 messages in flight.")


class LockoutSection(Strict):
    max_denied: int = Field(5, ge=1, description="Denied reads tolerated at one reader …")
    window_seconds: float = Field(50, gt=0, description="… within this many seconds.")
    cooldown_seconds: float = Field(
        300, gt=0, description="Unknown cards at that reader are ignored for this long."
    )


class PrivacySection(Strict):
    portraits: Literal["off", "local", "upload"] = Field(
        "off",
        description="off: no face image kept; local: portraits on the device for retention_days; "
        "upload: also sent to the station (needs legal_basis).",
    )
    legal_basis: str | None = Field(
        None, description="Law, regulation or consent record that allows portrait upload."
    )
    retention_days: int | None = Field(None, ge=1, le=365, description="Portrait retention.")
    audit_path: StatePath = Field(
        Path("audit.log"), description="Append-only, hash-chained audit log."
    )
    audit_retention_days: int = Field(1095, ge=30, description="Audit log retention (3 years).")
    lockout: LockoutSection = Field(default={}, description="Card-scanning lockout.")  # type: ignore[assignment]


KeyProviderKind = Literal["tpm2", "rpi-otp", "station", "file"]


class KeysSection(Strict):
    provider: KeyProviderKind = Field(
        "file",
        description="Where the root key of templates, pseudonyms and card hashes comes from: "
        "tpm2 (sealed by the board's TPM), rpi-otp (Raspberry Pi 4/5 OTP private key), station "
        "(unwrapped by the station at boot, face keys only) or file (development only: the key "
        "lies beside the data). See docs/privacy.md.",
    )
    card_provider: Literal["tpm2", "rpi-otp", "file"] | None = Field(
        None,
        description="Provider of the keys cards need at boot without the network (card hashes, "
        "resident store, journal); default: the same as provider; required with station.",
    )
    dir: StatePath = Field(
        Path("keys"), description="Sealed keys and wrapped blobs (useless without the provider)."
    )


class LoggingSection(Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Default level."
    )
    components: dict[str, Literal["DEBUG", "INFO", "WARNING", "ERROR"]] = Field(
        default_factory=dict, description="Level per component, e.g. drivers.em4100: DEBUG."
    )


class ControlSection(Strict):
    socket: StatePath = Field(
        Path("/run/menjin/control.sock"), description="UNIX socket for the menjin CLI."
    )
    group: str | None = Field(None, description="Admin group allowed to use the socket.")


class GateConfig(Strict):
    """One gate board."""

    version: Literal[1] = Field(description="Configuration format version (1).")
    state_dir: InputPath = Field(
        Path("/var/lib/menjin"),
        description="Folder for the journal, stores and portraits (systemd: StateDirectory).",
    )
    gate: GateSection = Field(description="This gate.")
    hardware: HardwareSection = Field(default={}, description="GPIO backend.")  # type: ignore[assignment]
    doors: dict[Ident, DoorSection] = Field(min_length=1, description="Doors by id.")
    readers: dict[Ident, ReaderSection] = Field(
        default_factory=dict, description="Card readers by id."
    )
    camera: CameraSection | None = Field(None, description="Camera for face capture.")
    vision: VisionSection | None = Field(None, description="Face detection and recognition.")
    access: AccessSection = Field(default={}, description="Access store.")  # type: ignore[assignment]
    journal: JournalSection = Field(default={}, description="Event journal.")  # type: ignore[assignment]
    clock: ClockSection = Field(default={}, description="Trusted time.")  # type: ignore[assignment]
    uplink: UplinkSection | None = Field(None, description="Station MQTT uplink.")
    privacy: PrivacySection = Field(default={}, description="Face data policy.")  # type: ignore[assignment]
    keys: KeysSection = Field(default={}, description="Key providers.")  # type: ignore[assignment]
    logging: LoggingSection = Field(default={}, description="Logging.")  # type: ignore[assignment]
    control: ControlSection = Field(default={}, description="Control socket.")  # type: ignore[assignment]
