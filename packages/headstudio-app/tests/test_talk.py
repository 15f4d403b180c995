"""`headstudio say` and `animate --audio` lip sync, end to end through the CLI with a real avatar file.

Needs espeak-ng (`apt-get install espeak-ng`; `.ci/run` installs it).
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from flame_core.model import FlameModel
from flame_core.motion import MotionSequence
from headstudio import cli
from headstudio.animate import talk
from headstudio.animate.speech import espeak as speech
from headstudio.animate.speech.coarticulation import utterance_to_motion
from headstudio.avatar import Avatar
from headstudio.commands import animate as animate_command
from headstudio.config import InitConfig
from headstudio.output import rendering

HELLO = "Hello, I am a Gaussian head."
FPS = 30.0


@pytest.fixture(scope="module")
def avatar_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real avatar (one Gaussian per face of a 10-expression procedural head)."""
    head = FlameModel.procedural(num_shape=10, num_expression=10)
    av = Avatar.initialize(head, InitConfig(points_per_face=1), torch.Generator().manual_seed(0))
    path = tmp_path_factory.mktemp("avatar") / "avatar.ply"
    av.save(path)
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main([*argv, "-q", "--device", "cpu"])
    out, err = capsys.readouterr()
    return rc, out, err


def _one_error_line(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, (rc, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0], lines[0]


def _stream_seconds(path: Path) -> tuple[float, float]:
    """(video, audio) stream durations: decoded frame count / fps, decoded sample count / rate."""
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:a:0"]
    pcm = subprocess.run(
        [*cmd, "-f", "s16le", "-ac", "1", "-ar", "48000", "-"], capture_output=True, check=True
    )
    return frames / FPS, len(pcm.stdout) / 2 / 48000.0


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_say_writes_the_video_with_the_speech(capsys, tmp_path: Path, avatar_file: Path) -> None:
    out, motion_out = tmp_path / "talk.mp4", tmp_path / "talk.npz"
    args = ["say", str(avatar_file), HELLO, "-o", str(out), "--motion-out", str(motion_out), "--size", "48"]
    rc, stdout, err = _run(capsys, *args)
    assert rc == 0, err
    assert "talk.mp4" in stdout and "talk.npz" in stdout
    utt = speech.synthesize(HELLO)
    video_s, audio_s = _stream_seconds(out)
    print(f"video {video_s:.3f} s, audio {audio_s:.3f} s, speech {utt.duration:.3f} s")
    assert abs(video_s - audio_s) <= 1.0 / FPS
    # the sentence's speech: espeak-ng's timing varies by a few tens of ms between calls in a process
    assert abs(audio_s - utt.duration) <= 0.15
    motion = MotionSequence.load(motion_out)
    assert len(motion) == round(video_s * FPS) and motion.fps == FPS
    assert abs(len(motion) - math.ceil(utt.duration * FPS)) <= 0.15 * FPS  # the re-synthesis varies too
    assert motion.num_expression == 10  # the avatar's head
    assert float(motion.jaw_pose[:, 0].max()) > 0.1  # the mouth opens
    assert _files(tmp_path) == ["talk.mp4", "talk.npz"]


def test_say_options(capsys, tmp_path: Path, avatar_file: Path) -> None:
    out = tmp_path / "fast.mp4"
    opts = ["--language", "de", "--voice", "f3", "--rate", "260", "--size", "32", "--fps", "20"]
    rc, _, err = _run(capsys, "say", str(avatar_file), "Guten Tag, wie geht es?", "-o", str(out), *opts)
    assert rc == 0, err
    utt = speech.synthesize("Guten Tag, wie geht es?", language="de", voice="f3", rate=260)
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(out))
    assert frames == math.ceil(utt.duration * 20)


@pytest.mark.parametrize(
    ("text", "extra", "needles"),
    [
        ("", [], ["the text is empty"]),
        ("   ", [], ["the text is empty"]),
        ("?!...", [], ["found nothing to pronounce"]),
        ("hello", ["--language", "zz-none"], ["no language 'zz-none'", "espeak-ng --voices"]),
        ("hello", ["--voice", "nobody"], ["no voice variant 'nobody'"]),
        ("hello", ["--rate", "1000"], ["80-450"]),
        ("hello", ["--motion-out", "m.json"], ["--motion-out", ".npz"]),
    ],
)
def test_say_bad_input(
    capsys, tmp_path: Path, avatar_file: Path, text: str, extra: list[str], needles
) -> None:
    out = tmp_path / "o.mp4"
    extra = [str(tmp_path / e) if e.endswith(".json") else e for e in extra]
    rc, _, err = _run(capsys, "say", str(avatar_file), text, "-o", str(out), *extra)
    _one_error_line(rc, err, *needles)
    assert _files(tmp_path) == []


def test_say_without_espeak_says_how_to_install(
    capsys, tmp_path: Path, avatar_file: Path, monkeypatch
) -> None:
    monkeypatch.setenv(speech.ESPEAK_LIBRARY_ENV, str(tmp_path / "missing" / "libespeak-ng.so.1"))
    rc, _, err = _run(capsys, "say", str(avatar_file), HELLO, "-o", str(tmp_path / "o.mp4"))
    _one_error_line(rc, err, "espeak-ng is not installed", "apt-get install espeak-ng")
    assert _files(tmp_path) == []


@pytest.mark.parametrize("failure", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_say_leaves_nothing_behind_on_failure(
    capsys, tmp_path: Path, avatar_file: Path, monkeypatch, failure
) -> None:
    real = rendering.render_motion

    def render_then_fail(*args, **kwargs):
        real(
            *args, num_frames=3, **{k: v for k, v in kwargs.items() if k != "num_frames"}
        )  # a finished MP4...
        raise failure  # ...then the command fails before it returns

    def fail_midway(avatar, motion, out, **kwargs):
        with rendering.VideoWriter(out, motion.fps, audio=kwargs.get("audio")) as vw:
            vw.write(np.zeros((32, 32, 3), np.uint8))
            raise failure

    for fake in (fail_midway, render_then_fail):
        monkeypatch.setattr(talk, "render_motion", fake)
        out, motion_out = tmp_path / "talk.mp4", tmp_path / "talk.npz"
        args = [
            "say",
            str(avatar_file),
            HELLO,
            "-o",
            str(out),
            "--motion-out",
            str(motion_out),
            "--size",
            "32",
        ]
        rc, _, err = _run(capsys, *args)
        assert rc != 0 and err.startswith("error: ")
        assert _files(tmp_path) == []  # neither output nor any temporary


def test_animate_with_audio_lip_syncs(capsys, tmp_path: Path, avatar_file: Path, monkeypatch) -> None:
    utt = speech.synthesize(HELLO)
    wav = utt.save_wav(tmp_path / "hello.wav")
    seen: list[MotionSequence] = []
    real = rendering.render_motion

    def spy(avatar, motion, *args, **kwargs):
        seen.append(motion)
        return real(avatar, motion, *args, **kwargs)

    monkeypatch.setattr(animate_command, "render_motion", spy)
    out = tmp_path / "sync.mp4"
    rc, _, err = _run(
        capsys, "animate", str(avatar_file), "--audio", str(wav), "-o", str(out), "--size", "32"
    )
    assert rc == 0, err
    video_s, audio_s = _stream_seconds(out)
    assert abs(video_s - audio_s) <= 1.0 / FPS
    (motion,) = seen
    text_path = utterance_to_motion(FlameModel.procedural(num_shape=10, num_expression=10), utt, fps=FPS)
    r = np.corrcoef(motion.jaw_pose[:, 0].numpy(), text_path.jaw_pose[:, 0].numpy())[0, 1]
    assert r > 0.5  # the motion follows this speech (the procedural motion would not)


def _write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    speech.write_wav(path, samples, rate)
    return path


def test_animate_bad_audio(capsys, tmp_path: Path, avatar_file: Path) -> None:
    silent = _write_wav(tmp_path / "silent.wav", np.zeros(16000))
    rc, _, err = _run(
        capsys, "animate", str(avatar_file), "--audio", str(silent), "-o", str(tmp_path / "o.mp4")
    )
    _one_error_line(rc, err, "the audio is silent")
    fake = tmp_path / "notes.mp3"
    fake.write_text("not audio\n")
    rc, _, err = _run(
        capsys, "animate", str(avatar_file), "--audio", str(fake), "-o", str(tmp_path / "o.mp4")
    )
    _one_error_line(rc, err, "notes.mp3", "could not be read")
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00")
    rc, _, err = _run(
        capsys, "animate", str(avatar_file), "--audio", str(broken), "-o", str(tmp_path / "o.mp4")
    )
    _one_error_line(rc, err, "broken.wav", "not a readable WAV file")
    assert _files(tmp_path) == ["broken.wav", "notes.mp3", "silent.wav"]


def test_animate_reads_other_audio_formats(capsys, tmp_path: Path, avatar_file: Path) -> None:
    utt = speech.synthesize("Hi there.")
    wav = utt.save_wav(tmp_path / "hi.wav")
    flac = tmp_path / "hi.flac"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(wav), str(flac)], check=True)
    out = tmp_path / "o.mp4"
    rc, _, err = _run(
        capsys, "animate", str(avatar_file), "--audio", str(flac), "-o", str(out), "--size", "32"
    )
    assert rc == 0, err
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(out))
    assert frames == math.ceil(utt.duration * FPS)
