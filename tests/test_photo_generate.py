"""``headstudio generate --image``: photo avatars through the real command, offline, on the
astronaut photograph (scikit-image) and images made from it here."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

skimage_data = pytest.importorskip("skimage.data")

SMALL = ("--steps", "4", "--set", "train.resolution=64", "--set", "init.points_per_face=1")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    img = skimage_data.astronaut()
    Image.fromarray(img).save(d / "astronaut.png")
    # the same photo as a phone stores it: pixels on their side, EXIF saying how to turn them
    im = Image.fromarray(np.ascontiguousarray(np.rot90(img, 1)))
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(d / "phone.jpg", exif=exif, quality=92)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(
        d / "noface.png"
    )
    small = np.full((300, 300, 3), 128, np.uint8)
    small[120:180, 120:180] = np.asarray(
        Image.fromarray(img[30:230, 130:330]).resize((60, 60), Image.LANCZOS)
    )
    Image.fromarray(small).save(d / "small.png")
    data = (d / "astronaut.png").read_bytes()
    (d / "truncated.png").write_bytes(data[: len(data) // 3])
    return d


@pytest.mark.parametrize(
    "name, message",
    [
        ("noface.png", "no face was found"),
        ("truncated.png", "cannot be read"),
        ("missing.png", "does not exist"),
    ],
)
def test_bad_photos_are_one_line_and_write_nothing(headstudio_cli, photos, tmp_path, name, message):
    out = tmp_path / "run"
    r = headstudio_cli("generate", "--image", str(photos / name), "--output", str(out), *SMALL)
    assert r.refusal_problem(name, out) is None
    assert message in r.error


def test_a_face_too_small_is_refused_before_anything_is_written(headstudio_cli, photos, tmp_path):
    out = tmp_path / "run"
    r = headstudio_cli("generate", "--image", str(photos / "small.png"), "--output", str(out), *SMALL)
    assert r.verdict == "rejected" and not out.exists()
    assert "small.png" in r.error and ("under the 64 px" in r.error or "no face was found" in r.error)


def test_a_face_number_out_of_range_names_the_flag(headstudio_cli, photos, tmp_path):
    out = tmp_path / "run"
    r = headstudio_cli(
        "generate", "--image", str(photos / "astronaut.png"), "--face", "3", "--output", str(out), *SMALL
    )
    assert r.verdict == "rejected" and not out.exists()
    assert "--face" in r.error and "face 3 was asked for" in r.error


@pytest.mark.slow
def test_offline_photo_avatar_records_provenance_and_resumes(headstudio_cli, photos, tmp_path):
    import hashlib

    from headstudio.avatar import Avatar

    out = tmp_path / "run"
    photo = photos / "phone.jpg"  # EXIF-rotated: found and fitted upright
    r = headstudio_cli("generate", "--image", str(photo), "--output", str(out), *SMALL)
    assert r.verdict == "accepted", r.err[-800:]
    rec = json.loads((out / "photo.json").read_text())
    digest = hashlib.sha256(photo.read_bytes()).hexdigest()
    assert rec["sha256"] == digest and rec["report"]["reprojection_error_px"] < 4.0
    av = Avatar.load(out / "avatar.ply")
    src = av.metadata["source"]
    assert src["kind"] == "photograph" and src["sha256"] == digest
    assert str(photo) not in json.dumps(av.metadata)  # the avatar records the digest, not the photo's path
    assert float(av.shape.detach().abs().sum()) > 0  # the fitted identity
    # continue the run: the same photo is read again and the same views are rebuilt
    r = headstudio_cli("generate", "--image", str(photo), "--output", str(out), "--resume", "--steps", "6")
    assert r.verdict == "accepted", r.err[-800:]
    log = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines() if ln.strip()]
    assert max(rec.get("step", 0) for rec in log) == 6
    assert Avatar.load(out / "avatar.ply").metadata["source"]["sha256"] == digest
    # another photo under the same name is refused on resume
    other = tmp_path / "phone.jpg"
    Image.fromarray(skimage_data.astronaut()[:, ::-1].copy()).save(other)
    rec["image"] = str(other)
    (out / "photo.json").write_text(json.dumps(rec))
    r = headstudio_cli("generate", "--image", str(other), "--output", str(out), "--resume", "--steps", "8")
    assert r.verdict == "rejected" and "changed since the run started" in r.error


@pytest.mark.slow
def test_a_prompt_without_weights_builds_the_photo_avatar_offline(headstudio_cli, photos, tmp_path, caplog):
    out = tmp_path / "run"
    r = headstudio_cli(
        "generate", "a DSLR portrait of this person as an elf", "--image", str(photos / "astronaut.png"),
        "--output", str(out), "--set", "guidance.base_model=/nonexistent/sd15", *SMALL,
    )  # fmt: skip
    assert r.verdict == "accepted", r.err[-800:]
    assert "built offline" in caplog.text
    assert (out / "avatar.ply").is_file()


@pytest.mark.slow
def test_a_prompt_with_weights_adds_fsds_to_the_photo(headstudio_cli, photos, tmp_path, tiny_pipeline):
    base, cn = tiny_pipeline
    out = tmp_path / "run"
    r = headstudio_cli(
        "generate", "a portrait of this person as an elf", "--image", str(photos / "astronaut.png"),
        "--output", str(out), "--set", f"guidance.base_model={base}", "--set", f"guidance.controlnet={cn}",
        "--set", "train.guidance_resolution=64", "--set", "train.batch_size=1", "--steps", "2",
        "--set", "train.resolution=64", "--set", "init.points_per_face=1",
    )  # fmt: skip
    assert r.verdict == "accepted", r.err[-800:]
    log = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines() if ln.strip()]
    steps = [rec for rec in log if "loss_sds" in rec]
    assert steps and all("loss_l1" in rec for rec in steps)
