"""Control maps: palette, visibility rules, 105 / 468 / 478 sets; normals and visibility."""

import math

import pytest
import torch
from fsds_guidance.control import (
    CONTROL_PALETTE,
    MIN_EYE_FRACTION,
    PUPIL_PALETTE,
    SILHOUETTE_TOLERANCE,
    draw_control_map,
    draw_control_map_naive,
    embedded_normals,
    face_in_view,
    landmark_visibility,
    vertex_normals,
)
from mediapipe.tasks.python.vision import FaceLandmarksConnections as conn

LIPS = (10, 180, 10)
OVAL = (10, 200, 10)
PALETTE = {
    OVAL,
    (180, 200, 10),
    (180, 220, 10),
    (10, 200, 180),
    (10, 220, 180),
    LIPS,
    (10, 200, 250),
    (250, 200, 10),
}


def _random_landmarks(bsz, num, size=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(bsz, num, 2, generator=g) * (size * 0.9) + size * 0.05


def _colours(img):
    px = (img * 255).round().to(torch.int64).permute(0, 2, 3, 1).reshape(-1, 3)
    return {tuple(c) for c in torch.unique(px, dim=0).tolist()}


def _lips_ids():
    return sorted({c.start for c in conn.FACE_LANDMARKS_LIPS} | {c.end for c in conn.FACE_LANDMARKS_LIPS})


def test_exact_colours_on_segments():
    ids = _lips_ids()
    n = len(ids)
    # lips points on a big circle so segments of consecutive points do not cross others much
    ang = torch.arange(n) * 2 * math.pi / n
    pts = torch.stack([256 + 200 * ang.cos(), 256 + 200 * ang.sin()], -1)[None]
    img = draw_control_map(pts, torch.ones(1, n, dtype=torch.bool), torch.tensor(ids))
    assert img.shape == (1, 3, 512, 512) and img.dtype == torch.float32
    assert _colours(img) == {(0, 0, 0), LIPS}
    row = {mid: r for r, mid in enumerate(ids)}
    for c in conn.FACE_LANDMARKS_LIPS:
        mid = (pts[0, row[c.start]] + pts[0, row[c.end]]) / 2
        x, y = int(mid[0]), int(mid[1])
        assert tuple((img[0, :, y, x] * 255).round().int().tolist()) == LIPS
    # exact float values, no anti-aliasing
    drawn = img[0].amax(0) > 0
    torch.testing.assert_close(img[0, 1][drawn], torch.full((int(drawn.sum()),), 180 / 255))


def test_vectorised_matches_naive_478():
    pts = _random_landmarks(2, 478)
    vis = torch.rand(2, 478, generator=torch.Generator().manual_seed(1)) > 0.2
    fast = draw_control_map(pts, vis)
    slow = draw_control_map_naive(pts, vis)
    assert torch.equal(fast, slow)
    assert _colours(fast) <= PALETTE | {(0, 0, 0)}
    assert len(_colours(fast)) == 9  # all six line colours and both pupils


def test_468_has_no_pupils_478_has():
    pts = _random_landmarks(1, 478)
    vis = torch.ones(1, 478, dtype=torch.bool)
    c478 = _colours(draw_control_map(pts, vis))
    c468 = _colours(draw_control_map(pts[:, :468], vis[:, :468]))
    assert (10, 200, 250) in c478 and (250, 200, 10) in c478
    assert (10, 200, 250) not in c468 and (250, 200, 10) not in c468
    assert len(c468) == 7


def test_pupil_square_is_4x4():
    pts = torch.full((1, 478, 2), -100.0)
    pts[0, 468] = torch.tensor([100.5, 50.5])
    img = draw_control_map(pts, torch.ones(1, 478, dtype=torch.bool), size=256)
    drawn = torch.nonzero(img[0].amax(0) > 0)
    assert drawn.shape[0] == 16
    assert drawn[:, 0].min() == 48 and drawn[:, 0].max() == 51  # y in [50-2, 50+2)
    assert drawn[:, 1].min() == 98 and drawn[:, 1].max() == 101
    # the annotator's (10, 200, 250) for 468, channels reversed in the image it returns
    assert _colours(img) == {(0, 0, 0), (250, 200, 10)}


def test_palette_is_the_annotators_image_after_its_channel_reversal():
    """The annotator draws its tuples, then reverses the channels of the image it returns: the
    subject's (MediaPipe's) left eye is (10, 200, 180) in the control image, not (180, 200, 10)."""
    assert dict(CONTROL_PALETTE) == {
        "FACE_LANDMARKS_FACE_OVAL": (10, 200, 10),
        "FACE_LANDMARKS_LEFT_EYE": (10, 200, 180),
        "FACE_LANDMARKS_LEFT_EYEBROW": (10, 220, 180),
        "FACE_LANDMARKS_RIGHT_EYE": (180, 200, 10),
        "FACE_LANDMARKS_RIGHT_EYEBROW": (180, 220, 10),
        "FACE_LANDMARKS_LIPS": (10, 180, 10),
    }
    assert [name for name, _ in CONTROL_PALETTE][:2] == [
        "FACE_LANDMARKS_FACE_OVAL",
        "FACE_LANDMARKS_LEFT_EYE",
    ]
    assert PUPIL_PALETTE == {468: (250, 200, 10), 473: (10, 200, 250)}


def _set_ids(name):
    s = getattr(conn, name)
    return sorted({c.start for c in s} | {c.end for c in s})


def test_each_eye_is_drawn_in_its_own_colour_where_it_lies():
    """MediaPipe's LEFT_EYE points on the image's right (a frontal photo of the subject), RIGHT_EYE
    on the left: the right half holds (10, 200, 180) only, the left half (180, 200, 10) only."""
    pts = torch.full((1, 478, 2), -50.0)
    for name, cx in (("FACE_LANDMARKS_LEFT_EYE", 190.0), ("FACE_LANDMARKS_RIGHT_EYE", 66.0)):
        ids = _set_ids(name)
        ang = torch.arange(len(ids)) * 2 * math.pi / len(ids)
        pts[0, ids] = torch.stack([cx + 30 * ang.cos(), 128 + 15 * ang.sin()], -1)
    img = draw_control_map(pts, torch.ones(1, 478, dtype=torch.bool), size=256)
    assert _colours(img[..., 128:]) == {(0, 0, 0), (10, 200, 180)}
    assert _colours(img[..., :128]) == {(0, 0, 0), (180, 200, 10)}


def test_face_in_view_needs_half_of_one_eye():
    left, right = _set_ids("FACE_LANDMARKS_LEFT_EYE"), _set_ids("FACE_LANDMARKS_RIGHT_EYE")
    oval = _set_ids("FACE_LANDMARKS_FACE_OVAL")
    vis = torch.zeros(5, 478, dtype=torch.bool)
    vis[0] = True  # frontal: everything
    vis[1, left] = True  # profile: one eye only
    vis[2, oval] = True  # back view: stray outline, no eye
    need = math.ceil(MIN_EYE_FRACTION * len(right))
    vis[3, right[:need]] = True  # exactly the threshold
    vis[4, right[: need - 1]] = True  # one short of it
    vis[4, oval] = True
    assert face_in_view(vis).tolist() == [True, True, False, True, False]
    # the 105-point subset (rows given by their MediaPipe ids) gives the same verdicts
    ids = torch.tensor(sorted(set(left) | set(right) | set(oval)))
    assert face_in_view(vis[:, ids], ids).tolist() == [True, True, False, True, False]
    # a landmark set without eyes: any visible landmark counts
    lips = torch.tensor(_lips_ids())
    lips_vis = torch.zeros(2, len(lips), dtype=torch.bool)
    lips_vis[0, 3] = True
    assert face_in_view(lips_vis, lips).tolist() == [True, False]
    with pytest.raises(ValueError, match="visible"):
        face_in_view(torch.ones(478, dtype=torch.bool))
    with pytest.raises(ValueError, match="landmark_ids"):
        face_in_view(torch.ones(1, 105, dtype=torch.bool), torch.arange(10))


def test_hidden_landmarks_leave_no_pixels():
    pts = _random_landmarks(1, 478, seed=3)
    vis = torch.ones(1, 478, dtype=torch.bool)
    assert draw_control_map(pts, torch.zeros_like(vis)).abs().sum() == 0
    # isolate one oval point far from everything else
    ids = _lips_ids()
    oval_edges = [(c.start, c.end) for c in conn.FACE_LANDMARKS_FACE_OVAL]
    p = oval_edges[0][0]
    pts2 = torch.full((1, 478, 2), 30.0)
    pts2[0, ids] = torch.tensor([400.0, 400.0])
    pts2[0, p] = torch.tensor([256.0, 256.0])
    seen = draw_control_map(pts2, vis)
    hidden_vis = vis.clone()
    hidden_vis[0, p] = False
    hidden = draw_control_map(pts2, hidden_vis)
    window = (slice(None), slice(None), slice(250, 263), slice(250, 263))
    assert seen[window].sum() > 0
    assert hidden[window].sum() == 0
    assert hidden[0, :, 400, 400].sum() > 0  # the rest still draws


def test_105_subset_draws_only_present_connections():
    g = torch.Generator().manual_seed(5)
    ids = torch.randperm(468, generator=g)[:105]
    pts = _random_landmarks(1, 105, seed=6)
    vis = torch.ones(1, 105, dtype=torch.bool)
    img = draw_control_map(pts, vis, ids)
    assert torch.equal(img, draw_control_map_naive(pts, vis, ids))
    # embed the 105 rows into a 478 array with the others hidden: same picture
    full = torch.zeros(1, 478, 2)
    full[0, ids] = pts[0]
    full_vis = torch.zeros(1, 478, dtype=torch.bool)
    full_vis[0, ids] = True
    assert torch.equal(img, draw_control_map(full, full_vis))
    assert img.sum() > 0


def test_subset_without_complete_edges_is_blank_and_bad_inputs_raise():
    ids = torch.tensor([0, 1, 2])  # no connection among these
    assert draw_control_map(torch.rand(1, 3, 2) * 100, torch.ones(1, 3, dtype=torch.bool), ids).sum() == 0
    with pytest.raises(ValueError, match="landmark_ids"):
        draw_control_map(torch.rand(1, 105, 2), torch.ones(1, 105, dtype=torch.bool))
    with pytest.raises(ValueError, match="visible"):
        draw_control_map(torch.rand(1, 478, 2), torch.ones(2, 478, dtype=torch.bool))


def test_landmark_visibility_sphere():
    dirs = torch.randn(1, 500, 3, generator=torch.Generator().manual_seed(0))
    normals = dirs / dirs.norm(dim=-1, keepdim=True)
    centre = torch.tensor([0.0, 0.0, 3.0])
    pts = centre + normals
    vis = landmark_visibility(pts, normals, tolerance=0.0)
    # analytic: visible iff the point lies on the camera-facing cap n·(c+n) < 0
    expected = (normals * centre).sum(-1) < -1.0
    assert torch.equal(vis, expected)
    assert vis.any() and (~vis).any()
    # with a tolerance: visible while cos(normal, ray from the camera) < tolerance, so a band
    # just past the silhouette (where the face oval lives) stays visible
    tol = landmark_visibility(pts, normals)
    cos = (normals * pts).sum(-1) / pts.norm(dim=-1)
    assert torch.equal(tol, cos < SILHOUETTE_TOLERANCE)
    band = tol & ~vis
    assert band.any() and (cos[band] >= 0).all()
    behind = landmark_visibility(torch.tensor([[[0.0, 0.0, -1.0]]]), torch.tensor([[[0.0, 0.0, 1.0]]]))
    assert not behind.any()


def test_vertex_and_embedded_normals():
    # unit square in the z=0 plane, CCW seen from +z -> normal +z
    v = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]]])
    f = torch.tensor([[0, 1, 2], [0, 2, 3]])
    n = vertex_normals(v, f)
    torch.testing.assert_close(n, torch.tensor([0.0, 0, 1]).expand(1, 4, 3))
    # tetrahedron: normals point away from the centroid
    tv = torch.tensor([[[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]])
    tf = torch.tensor([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]])
    tn = vertex_normals(tv, tf)
    torch.testing.assert_close(tn, tv / 3**0.5)
    e = embedded_normals(tn, tf, torch.tensor([0, 3]), torch.tensor([[1.0, 0, 0], [1 / 3, 1 / 3, 1 / 3]]))
    torch.testing.assert_close(e[0, 0], tn[0, 0])
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(1, 2))
    assert (e[0, 1] * tv[0, [1, 3, 2]].mean(0)).sum() > 0
