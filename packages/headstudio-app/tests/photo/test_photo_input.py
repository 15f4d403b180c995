"""Photo input: decoding (EXIF, colour modes, alpha, truncation) and the face checks, on the
astronaut photograph (scikit-image) and images made from it here."""

from __future__ import annotations

import numpy as np
import pytest
from headstudio.errors import HeadStudioError
from headstudio.train.photo_input import MIN_FACE_PX, PhotoFace, choose_face, find_faces, read_photo
from PIL import Image

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage_data.astronaut()


@pytest.fixture(scope="module")
def face_crop(astronaut) -> np.ndarray:
    """The astronaut's head, 200 x 200 (her face is ~105 px across)."""
    return astronaut[30:230, 130:330].copy()


def test_jpeg_and_png_read_as_rgb_with_the_files_digest(tmp_path, astronaut):
    import hashlib

    Image.fromarray(astronaut).save(tmp_path / "a.png")
    photo = read_photo(tmp_path / "a.png")
    assert photo.rgb.dtype == np.uint8 and photo.rgb.shape == (512, 512, 3)
    np.testing.assert_array_equal(photo.rgb, astronaut)
    assert photo.alpha is None
    assert photo.sha256 == hashlib.sha256((tmp_path / "a.png").read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "orientation, undo",
    [(6, lambda a: np.rot90(a, 1)), (8, lambda a: np.rot90(a, -1)), (3, lambda a: a[::-1, ::-1])],
)
def test_exif_orientation_is_honoured(tmp_path, astronaut, orientation, undo):
    # a camera stores the sensor's pixels and says in EXIF how to turn them upright
    stored = np.ascontiguousarray(undo(astronaut))
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(tmp_path / "r.png", exif=exif)
    photo = read_photo(tmp_path / "r.png")
    np.testing.assert_array_equal(photo.rgb, astronaut)
    assert any("EXIF orientation" in n for n in photo.notes)


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "I;16", "RGBA", "LA"])
def test_colour_modes_become_rgb_and_the_face_is_still_found(tmp_path, face_crop, mode):
    im = Image.fromarray(face_crop)
    if mode == "I;16":
        im = Image.fromarray(np.asarray(im.convert("L")).astype(np.uint16) * 257)
        path = tmp_path / "g16.png"
    elif mode in ("RGBA", "LA"):
        a = np.full(face_crop.shape[:2], 255, np.uint8)
        a[:, :20] = 0  # a transparent strip: not part of the photo
        base = im.convert(mode[:-1])
        im = Image.merge(mode, (*base.split(), Image.fromarray(a)))
        path = tmp_path / "alpha.png"
    else:
        im = im.convert(mode)
        path = tmp_path / ("c.jpg" if mode == "CMYK" else "x.png")
    im.save(path)
    photo = read_photo(path)
    assert photo.rgb.shape == (200, 200, 3) and photo.rgb.dtype == np.uint8
    if mode in ("RGBA", "LA"):
        assert photo.alpha is not None and photo.alpha[:, :20].max() == 0 and photo.alpha[:, 20:].min() == 1
    else:
        assert photo.alpha is None
    if mode == "I;16":  # 16-bit scaled to 8 bits, not clipped
        np.testing.assert_allclose(
            photo.rgb[..., 0], np.asarray(Image.fromarray(face_crop).convert("L")), atol=1
        )
    assert len(find_faces(photo)) == 1


@pytest.mark.parametrize("make", ["truncated", "not_an_image", "empty", "missing"])
def test_unreadable_photos_are_one_line(tmp_path, astronaut, make):
    path = tmp_path / "bad.jpg"
    if make == "truncated":
        Image.fromarray(astronaut).save(path, quality=90)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif make == "not_an_image":
        path.write_text("these are not the pixels you are looking for\n" * 20)
    elif make == "empty":
        path.write_bytes(b"")
    with pytest.raises(HeadStudioError) as e:
        read_photo(path)
    msg = str(e.value)
    assert "\n" not in msg and "bad.jpg" in msg
    assert ("does not exist" in msg) if make == "missing" else ("cannot be read" in msg)


def test_no_face_small_face_and_profile_are_refused(face_crop):
    noise = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    with pytest.raises(HeadStudioError, match="no face was found"):
        choose_face(find_faces(noise), "noise.png")
    small = np.asarray(Image.fromarray(face_crop).resize((96, 96), Image.LANCZOS))
    canvas = np.full((256, 256, 3), 128, np.uint8)
    canvas[80:176, 80:176] = small
    faces = find_faces(canvas)
    if faces:  # MediaPipe may find the small face (it then is under the limit) or not (no face)
        assert faces[0].size_px < MIN_FACE_PX
        with pytest.raises(HeadStudioError, match=f"under the {MIN_FACE_PX} px"):
            choose_face(faces, "small.png")
    f = find_faces(face_crop)[0]
    turned = PhotoFace(f.landmarks, f.depth, f.blendshapes, yaw_deg=75.0, pitch_deg=0.0, roll_deg=0.0)
    with pytest.raises(HeadStudioError, match="turned 75 deg"):
        choose_face([turned], "profile.png")


def test_frontal_face_reads_as_frontal(face_crop):
    f = choose_face(find_faces(face_crop), "crop.png")
    assert abs(f.yaw_deg) < 15 and f.size_px > 90
    assert f.landmarks.shape == (478, 2) and "jawOpen" in f.blendshapes


def test_several_faces_take_the_largest_or_the_numbered_one(face_crop, caplog):
    smaller = np.asarray(Image.fromarray(face_crop).resize((150, 150), Image.LANCZOS))
    canvas = np.full((200, 360, 3), 128, np.uint8)
    canvas[25:175, :150] = smaller  # face 1 (left, smaller)
    canvas[:, 160:360] = face_crop  # face 2 (right, larger)
    faces = find_faces(canvas)
    assert len(faces) == 2
    with caplog.at_level("WARNING"):
        chosen = choose_face(faces, "two.png")
    assert chosen.centre_x > 180 and "2 faces" in caplog.text and "face 2 from the left" in caplog.text
    assert choose_face(faces, "two.png", face=1).centre_x < 150
    with pytest.raises(HeadStudioError, match="face 3 was asked for") as e:
        choose_face(faces, "two.png", face=3)
    assert e.value.argument == "face"
