"""The photo fit, the training views, the colour initialisation and the photo guidance, on the
astronaut photograph (scikit-image)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from headstudio.train.photo import PhotoSetup, init_photo_avatar, prepare_photo, prior_views
from headstudio.train.photo_guidance import MIRROR_WEIGHT, PhotoGuidance
from headstudio.train.photo_views import _project, mesh_silhouette, mirror_flame
from PIL import Image

skimage_data = pytest.importorskip("skimage.data")

SIZE = 128


@pytest.fixture(scope="module")
def head():
    from flame_core import FlameModel

    return FlameModel.procedural()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, head) -> PhotoSetup:
    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(path)
    return prepare_photo(path, head, SIZE, quick=True)


def test_fit_reprojects_the_landmarks_within_a_few_pixels(setup):
    fit = setup.fit
    assert fit.error_px < 3.0, fit.report()  # her face is ~105 px across
    assert np.median(fit.error_per_landmark) < 2.5
    assert 15.0 <= fit.fov_deg <= 65.0
    assert set(fit.view) == {"expression", "jaw_pose", "neck_pose", "eye_pose", "global_orient"}
    rep = fit.report()
    assert rep["landmarks"] == 478 and rep["reprojection_error_px"] == pytest.approx(fit.error_px, abs=1e-3)


def test_the_avatar_keeps_only_the_identity(setup):
    neutral = setup.fit.flame_kwargs(neutral=True)
    assert set(neutral) == {"shape"}
    assert float(setup.fit.shape.abs().sum()) > 0  # an identity was fitted


def test_head_mask_holds_the_face_and_drops_the_corners(setup):
    v = setup.view
    mask = v.mask.numpy()
    assert mask.shape == (SIZE, SIZE)
    # the crop's centre is face, the top corners are background (the studio backdrop)
    c = SIZE // 2
    assert mask[c - 5 : c + 5, c - 5 : c + 5].min() > 0.9
    assert mask[:10, :10].max() < 0.1 and mask[:10, -10:].max() < 0.1
    assert 0.15 < mask.mean() < 0.6


def test_mirror_view_renders_the_flipped_photo_of_a_symmetric_head(setup, head):
    v, m = setup.view, setup.mirror
    assert m.mirrored and torch.equal(m.image, v.image.flip(1))
    with torch.no_grad():
        pv = head(**{k: x for k, x in v.flame.items()}).vertices[0]
        pm = head(**{k: x for k, x in m.flame.items()}).vertices[0]
    faces = np.asarray(head.faces)
    sil = mesh_silhouette(_project(pv, v.viewmat, v.K).numpy(), faces, (SIZE, SIZE))
    sil_m = mesh_silhouette(_project(pm, m.viewmat, m.K).numpy(), faces, (SIZE, SIZE))
    flipped = sil[:, ::-1]
    iou = (flipped & sil_m).sum() / (flipped | sil_m).sum()
    assert iou > 0.97, iou


def test_mirror_flame_reflects_rotations_and_swaps_the_eyes():
    flame = {
        "global_orient": torch.tensor([[0.1, 0.2, 0.3]]),
        "eye_pose": torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]]),
        "expression": torch.ones(1, 4),
    }
    m = mirror_flame(flame)
    assert torch.allclose(m["global_orient"], torch.tensor([[0.1, -0.2, -0.3]]))
    assert torch.allclose(m["eye_pose"], torch.tensor([[0.4, -0.5, -0.6, 0.1, -0.2, -0.3]]))
    assert torch.equal(m["expression"], flame["expression"])
    back = mirror_flame(m)
    assert all(torch.allclose(back[k], flame[k]) for k in flame)


@pytest.fixture(scope="module")
def avatar(setup, head):
    from headstudio.avatar import Avatar

    av = Avatar.initialize(head, generator=torch.Generator().manual_seed(0))
    info = init_photo_avatar(av, setup)
    return av, info


def test_colours_come_from_the_photo_where_it_sees_the_head(avatar, setup):
    av, info = avatar
    n = av.num_gaussians
    assert info.seen.mean() > 0.25 and (info.seen | info.mirrored | info.filled).all()
    assert not (info.seen & info.mirrored).any()
    assert torch.allclose(av.shape[:, : setup.fit.shape.shape[1]], setup.fit.shape)
    assert av.metadata["source"]["kind"] == "photograph"
    assert av.metadata["source"]["sha256"] == setup.photo.sha256
    assert "image" not in av.metadata["source"]  # the photo's path is not recorded in the avatar
    # rendered at the photo's view, the initial avatar already looks like the photo where it covers
    # the head (the hair beyond the skull is for training to fill)
    v = setup.view
    pose = v.params()  # the view's pose, without the fit's shape (the avatar carries it)
    assert set(pose.kwargs()) == set(v.flame) - {"shape"} and "shape" in v.flame
    with torch.no_grad():
        r = av.render(v.viewmat[None], v.K[None], SIZE, SIZE, pose, background=(0, 0, 0))
    rgb, alpha = r.rgb[0, 0], r.alpha[0, 0, ..., 0]
    m = (v.mask > 0.9) & (v.valid > 0) & (alpha > 0.95)
    assert m.float().mean() > 0.1
    err = (rgb - v.image).abs().mean(-1)[m].mean()
    assert err < 0.1, float(err)
    assert n == len(info.seen)


def test_prior_views_cover_the_back_and_are_opaque(avatar, setup):
    av, _ = avatar
    priors = prior_views(av, setup, num=4)
    assert len(priors) == 4
    for p in priors:
        assert p.image.shape == (SIZE, SIZE, 3) and p.mask.max() > 0.9
    # the back view (the middle prior) sees a solid head, not the face through it
    back = priors[2]
    assert back.mask[SIZE // 2 - 4 : SIZE // 2 + 4, SIZE // 2 - 4 : SIZE // 2 + 4].min() > 0.95


def test_photo_guidance_scores_the_head_and_asks_transparency_of_the_background(setup):
    from types import SimpleNamespace

    g = PhotoGuidance([setup.view, setup.mirror])
    assert torch.allclose(g.weights, torch.tensor([1.0, MIRROR_WEIGHT]))
    sampler = SimpleNamespace(width=SIZE, height=SIZE)  # photo guidance reads only the size
    batch = g.sample_batch(sampler, 4, torch.Generator().manual_seed(0))
    assert batch.viewmats.shape == (2, 1, 4, 4) and batch.backgrounds.shape == (2, 1, 3)
    img, mask, valid = g.targets(batch.target_indices, SIZE, SIZE)
    bg = batch.backgrounds[:, 0, :, None, None]
    perfect = (mask * img + (1 - mask) * bg).clone().requires_grad_(True)
    out = g(perfect, batch, 1, torch.zeros(2, 1, 3))
    assert float(out.losses["loss_l1"]) < 1e-6 and float(out.losses["loss_ssim"]) < 1e-4
    # a render that leaves the background uncovered in the head is penalised; outside the photo
    # (invalid pixels) nothing is scored and nothing gets a gradient
    wrong = bg.expand(-1, 3, SIZE, SIZE).clone().requires_grad_(True)
    out = g(wrong, batch, 1, torch.zeros(2, 1, 3))
    assert float(out.losses["loss_l1"]) > 0.05
    out.losses["loss_l1"].backward()
    assert float(wrong.grad.abs()[(valid == 0).expand_as(wrong)].sum()) == 0.0
