"""Geometry of the procedural head: skin (head + neck + inner lips), eyeballs, joints, weights.

The skin is a latitude/longitude surface (rows top to bottom along y, columns around y) whose
front is warped onto MediaPipe's canonical face mesh scaled to metres, so nose, eyes, lips and
chin sit where MediaPipe puts them. The mouth slit is cut along one row between the inner-lip
corners (78, 308); each lip then rolls a few millimetres inwards and stops, leaving the mouth
opening that FLAME's mesh has too (``flame_core.mouth_interior`` closes it with a cavity and
teeth). Eyeballs are separate closed UV spheres in the eye sockets.
Coordinates: FLAME's (metres, y up, face looks +z, root joint at the neck base).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import LinearNDInterpolator

from flame_core.mediapipe_mesh import load_canonical_face_mesh

MP_SCALE = 0.01  # canonical mesh is in centimetres
MP_OFFSET = np.array([0.0, 0.0, 0.034])
HEAD_CENTER = np.array([0.0, 0.0, 0.0])
HEAD_AXES = np.array([0.078, 0.11, 0.095])
# Skull (the cranium outside the face; the face follows MediaPipe's canonical mesh). Figures: the
# British adult male median (Pheasant's tables, as given by A. Chan's "Online anthropometry",
# City University of Hong Kong): head length (glabella to back of the head) 195 mm, head breadth
# (widest, above the ears) 155 mm. The vertex sits HEAD_AXES[1] = 110 mm above the head centre,
# about 130 mm above the tragion (the ear's front notch, ~20 mm below the centre here).
HEAD_LENGTH = 0.195
HEAD_BREADTH = 0.155
SKULL_SQUARENESS = 2.5  # superellipse exponent of the cranium's cross-sections (2: ellipse): flatter temples
OCCIPUT_THETA = np.deg2rad(82.0)  # polar angle of the occipital bulge (just above the ears)
NAPE_THETA = np.deg2rad(118.0)  # below it the cross-sections round off towards the neck
NECK_RADII = np.array([0.052, 0.058])  # x, z
SHOULDER_RADII = np.array([0.115, 0.072])  # x, z at the root row: the neck widens into the shoulders' top
# Ears (pinnae): the median adult ear is about 62 mm long and 35 mm wide, its long axis leaning
# back about 15-20 degrees from vertical, its front at the tragion, standing off the head by ~20
# degrees (anthropometric means quoted for adults; see docs/METHOD.md). Separate closed shells.
EAR_LENGTH, EAR_WIDTH, EAR_THICKNESS = 0.062, 0.035, 0.008
EAR_TILT = np.deg2rad(17.0)
EAR_FLARE = np.deg2rad(22.0)
EAR_BURIED = 0.35  # fraction of the ear's width sunk into the head at its front edge
TRAGION = np.array([0.0, -0.002, 0.002])  # y, z of the tragion; x is taken on the skin
NECK_CENTER_Z = -0.012
Y_ROOT = -0.20
EYE_RADIUS = 0.012
N_COLS = 80
N_HEAD_ROWS = 56
N_NECK_ROWS = 12
THETA_MAX = np.deg2rad(142.0)
# the lips roll this far inwards (metres, at the mouth's centre) before the mouth opening
LIP_ROLL_STEPS = 2
LIP_ROLL_DEPTH = 0.006
LIP_ROLL_HEIGHT = 0.003

# parts (per vertex): 0 skin, 1 inner lip (the lip rolls around the mouth opening), 2 left eyeball
# (+x), 3 right eyeball, 4 ears
SKIN, CAVITY, EYE_L, EYE_R, EAR = 0, 1, 2, 3, 4


@dataclass
class HeadGeometry:
    """Rest geometry. ``vertices [V,3]``, ``faces [F,3]``, ``part [V]``, ``face_part [F]``,
    ``face_row [F]`` (skin grid row of each skin face, -1 otherwise), ``joints [5,3]``,
    ``weights [V,5]``, ``J_regressor [5,V]``, ``mp_points [468,3]`` (canonical mesh in metres),
    ``slit_row`` (row of the mouth slit), ``eye_centers [2,3]`` (left +x, right -x)."""

    vertices: np.ndarray
    faces: np.ndarray
    part: np.ndarray
    face_part: np.ndarray
    face_row: np.ndarray
    joints: np.ndarray
    weights: np.ndarray
    J_regressor: np.ndarray
    mp_points: np.ndarray
    slit_row: int
    eye_centers: np.ndarray


def smoothstep(t: np.ndarray) -> np.ndarray:
    """Cubic smoothstep of ``t`` clamped to [0, 1]."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _profile() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Row profile: y, radius x, radius z, centre z for the head then the neck rows."""
    th = np.linspace(0, THETA_MAX, N_HEAD_ROWS + 1)[1:]
    y = HEAD_CENTER[1] + HEAD_AXES[1] * np.cos(th)
    rx, rz = HEAD_AXES[0] * np.sin(th), HEAD_AXES[2] * np.sin(th)
    cz = np.zeros_like(y)
    # neck rows: from the last head row down to the root, radii blend to the neck cylinder
    t = np.linspace(0, 1, N_NECK_ROWS + 1)[1:]
    yn = y[-1] + (Y_ROOT - y[-1]) * t
    b = smoothstep(t * 2.5)
    sh = smoothstep((t - 0.55) / 0.45) ** 1.5  # the lowest rows widen into the top of the shoulders
    rxn = (rx[-1] * (1 - b) + NECK_RADII[0] * b) * (1 - sh) + SHOULDER_RADII[0] * sh
    rzn = (rz[-1] * (1 - b) + NECK_RADII[1] * b) * (1 - sh) + SHOULDER_RADII[1] * sh
    czn = NECK_CENTER_Z * b
    return (np.r_[y, yn], np.r_[rx, rxn], np.r_[rz, rzn], np.r_[cz, czn])


def _columns() -> np.ndarray:
    """Column angles phi (0 = front), mirror-symmetric, denser at the front."""
    u = -np.pi + 2 * np.pi * np.arange(N_COLS) / N_COLS
    return u - 0.5 * np.sin(u)


def _uv_sphere(center: np.ndarray, radius: float, n_lat: int = 10, n_lon: int = 16):
    """Closed UV sphere with poles on the z axis (front pole at +z): ``(verts [N,3], faces [M,3])``."""
    th = np.linspace(0, np.pi, n_lat + 1)[1:-1]
    ph = 2 * np.pi * np.arange(n_lon) / n_lon
    tt, pp = np.meshgrid(th, ph, indexing="ij")
    ring = np.stack([np.sin(tt) * np.cos(pp), np.sin(tt) * np.sin(pp), np.cos(tt)], -1).reshape(-1, 3)
    verts = np.concatenate([[[0, 0, 1.0]], ring, [[0, 0, -1.0]]]) * radius + center
    faces = []
    nr = len(th)
    idx = lambda i, j: 1 + i * n_lon + (j % n_lon)  # noqa: E731
    for j in range(n_lon):
        faces.append([0, idx(0, j), idx(0, j + 1)])
        faces.append([len(verts) - 1, idx(nr - 1, j + 1), idx(nr - 1, j)])
        for i in range(nr - 1):
            faces.append([idx(i, j), idx(i + 1, j), idx(i + 1, j + 1)])
            faces.append([idx(i, j), idx(i + 1, j + 1), idx(i, j + 1)])
    return verts, np.asarray(faces, np.int64)


def _signed_volume(v: np.ndarray, f: np.ndarray) -> float:
    return float(np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6.0)


def _skull_grid(
    ys: np.ndarray, rxs: np.ndarray, rzs: np.ndarray, czs: np.ndarray, phi: np.ndarray, mp_pts: np.ndarray
) -> np.ndarray:
    """``[R, C, 3]`` skin grid before the face warp: superelliptic cranium cross-sections (flatter
    temples) scaled to :data:`HEAD_BREADTH`, a back radius that reaches :data:`HEAD_LENGTH` from
    the glabella (MediaPipe 168) at the occipital bulge, and round neck rows."""
    R = len(ys)
    th = np.arccos(np.clip((ys - HEAD_CENTER[1]) / HEAD_AXES[1], -1.0, 1.0))
    head_rows = np.arange(R) < N_HEAD_ROWS
    sq = np.where(head_rows, SKULL_SQUARENESS, 2.0)
    sq = np.where(th > NAPE_THETA, 2.0 + (sq - 2.0) * (1 - smoothstep((th - NAPE_THETA) / 0.3)), sq)
    s, c = np.sin(phi)[None], np.cos(phi)[None]
    ex = 2.0 / sq[:, None]
    sx = np.sign(s) * np.abs(s) ** ex
    sz = np.sign(c) * np.abs(c) ** ex
    # breadth: the widest cross-section measures HEAD_BREADTH
    rx = rxs * np.where(head_rows, 0.5 * HEAD_BREADTH / HEAD_AXES[0], 1.0)
    # back: the occiput reaches HEAD_LENGTH behind the glabella; below the bulge the back of the
    # head falls back to the round profile and curves in to the neck
    back = HEAD_LENGTH - mp_pts[168, 2]
    bulge = (back / HEAD_AXES[2] - 1.0) * np.exp(-0.5 * ((th - OCCIPUT_THETA) / 0.45) ** 2)
    rz_back = rzs * np.where(head_rows, 1.0 + bulge, 1.0)
    rz = np.where(c >= 0, rzs[:, None], rz_back[:, None])
    grid = np.zeros((R, len(phi), 3))
    grid[..., 0] = rx[:, None] * sx
    grid[..., 1] = ys[:, None]
    grid[..., 2] = czs[:, None] + rz * sz
    return grid


def _ear(skin: np.ndarray, side: float) -> tuple[np.ndarray, np.ndarray]:
    """One pinna (``side`` +1: left, +x): a flattened closed shell :data:`EAR_LENGTH` long and
    :data:`EAR_WIDTH` wide, its front edge at the tragion on the skin, leaning back by
    :data:`EAR_TILT` and standing off the head by :data:`EAR_FLARE`: ``(verts, faces)``."""
    near = (np.abs(skin[:, 1] - TRAGION[1]) < 0.01) & (np.abs(skin[:, 2] - TRAGION[2]) < 0.012)
    x_skin = float(np.max(side * skin[near, 0]))
    unit, faces = _uv_sphere(np.zeros(3), 1.0, n_lat=8, n_lon=14)
    # local axes: a = along the ear (up), b = across it (forward), c = its thickness (outward)
    # the shell is EAR_BURIED wider than the ear and sunk that far into the head, so the ear
    # is attached along its front edge (as the helix root, tragus and lobe are)
    width = EAR_WIDTH * (1 + EAR_BURIED)
    local = unit[:, [2, 1, 0]] * np.array([0.5 * EAR_LENGTH, 0.5 * width, 0.5 * EAR_THICKNESS])
    ct, st = np.cos(EAR_TILT), np.sin(EAR_TILT)
    cf, sf = np.cos(EAR_FLARE), np.sin(EAR_FLARE)
    up = np.array([0.0, ct, -st])  # leaning back
    # forward across the ear, turned about ``up`` so that its back edge stands off the head
    fwd = cf * np.array([0.0, st, ct]) - side * sf * np.array([1.0, 0.0, 0.0])
    out = np.cross(up, fwd) * side
    frame = np.stack([up, fwd, out])
    centre = np.array([side * x_skin, TRAGION[1], TRAGION[2]]) - (0.5 * width - EAR_BURIED * EAR_WIDTH) * fwd
    centre = centre + out * (0.25 * EAR_THICKNESS)
    verts = centre + local @ frame
    if _signed_volume(verts, faces) < 0:
        faces = faces[:, ::-1].copy()
    return verts, faces


def build_geometry(task_path: str | None = None) -> HeadGeometry:
    """Build the rest geometry (deterministic)."""
    mp = load_canonical_face_mesh(task_path)
    mp_pts = mp.vertices * MP_SCALE + MP_OFFSET
    ys, rxs, rzs, czs = _profile()
    phi = _columns()
    R = len(ys)
    grid = _skull_grid(ys, rxs, rzs, czs, phi, mp_pts)

    # warp the front onto the canonical face: z from the face mesh as a height field over (x, y)
    front = mp.vertices[:, 2] > -5.0
    interp = LinearNDInterpolator(mp_pts[front, :2], mp_pts[front, 2])
    g = grid.reshape(-1, 3)
    zf = interp(g[:, :2])
    rho = np.sqrt((g[:, 0] / 0.070) ** 2 + ((g[:, 1] + 0.006) / 0.090) ** 2)
    w = smoothstep((1.0 - rho) / 0.3) * (g[:, 2] > 0)
    w = np.where(np.isnan(zf), 0.0, w)
    zf = np.where(np.isnan(zf), g[:, 2], zf)
    g[:, 2] = w * zf + (1 - w) * g[:, 2]

    # eye sockets: eyeball centres behind the eye opening, skin recessed inside the aperture
    eye_ids = {EYE_L: (263, 362, 386, 374), EYE_R: (33, 133, 159, 145)}
    eye_centers = []
    for part in (EYE_L, EYE_R):
        c4 = mp_pts[list(eye_ids[part])]
        ctr = c4.mean(0)
        ctr[2] = c4[:, 2].max() - EYE_RADIUS + 0.001
        eye_centers.append(ctr)
        half_w = abs(c4[0, 0] - c4[1, 0]) / 2
        d = ((g[:, 0] - ctr[0]) / (half_w * 0.95)) ** 2 + ((g[:, 1] - ctr[1]) / 0.0045) ** 2
        g[:, 2] -= 0.006 * np.exp(-2.0 * d) * (g[:, 2] > 0.03)
    eye_centers = np.asarray(eye_centers)
    grid = g.reshape(R, N_COLS, 3)

    # mouth slit row and columns
    y_mouth = 0.5 * (mp_pts[13, 1] + mp_pts[14, 1])
    s = int(np.argmin(np.abs(ys - y_mouth)))
    xc = abs(mp_pts[308, 0])
    jc = np.arange(N_COLS)
    slit_cols = jc[(np.abs(grid[s, :, 0]) < xc) & (grid[s, :, 2] > 0)]
    j0, j1 = int(slit_cols.min()) - 1, int(slit_cols.max()) + 1  # corner columns (shared)

    verts = [grid.reshape(-1, 3)]
    vid = np.arange(R * N_COLS).reshape(R, N_COLS)
    n = R * N_COLS
    lower_ids = vid[s].copy()
    dup = np.arange(j0 + 1, j1)
    lower_ids[dup] = n + np.arange(len(dup))
    verts.append(grid[s, dup])
    n += len(dup)
    top, bottom = n, n + 1
    verts.append([[0.0, HEAD_CENTER[1] + HEAD_AXES[1], 0.0]])
    verts.append([[0, Y_ROOT, NECK_CENTER_Z]])
    n += 2
    faces: list[list[int]] = []
    rows: list[int] = []
    for i in range(R - 1):
        for j in range(N_COLS):
            jn = (j + 1) % N_COLS
            a, b = vid[i, j], vid[i, jn]
            c, d = vid[i + 1, j], vid[i + 1, jn]
            if i == s:
                a, b = lower_ids[j], lower_ids[jn]
            faces += [[a, c, d], [a, d, b]]
            rows += [i, i]
    for j in range(N_COLS):
        jn = (j + 1) % N_COLS
        faces.append([top, vid[0, j], vid[0, jn]])
        faces.append([bottom, vid[R - 1, jn], vid[R - 1, j]])
        rows += [-1, -1]
    skin_faces = np.asarray(faces, np.int64)
    V = np.concatenate(verts)
    part = [np.full(n, SKIN)]

    # mouth opening: each lip rolls inwards (LIP_ROLL_STEPS sections, back and away from the slit)
    # and stops there, leaving a hole behind the closed lips as FLAME's mesh has; the mouth interior
    # (flame_core.mouth_interior) closes it. sec[0] / sec[K] are the upper / lower slit edges.
    K = 2 * LIP_ROLL_STEPS + 1
    cols = np.arange(j0, j1 + 1)
    sec = np.zeros((K + 1, len(cols)), np.int64)
    sec[0], sec[K] = vid[s, cols], lower_ids[cols]
    new = []
    for ci, j in enumerate(cols):
        if j in (j0, j1):
            sec[1:K, ci] = vid[s, j]
            continue
        p = grid[s, j]
        prof = np.sqrt(max(0.0, 1 - min(1.0, abs(p[0]) / xc) ** 2))
        for k in range(1, K):
            up = k <= LIP_ROLL_STEPS
            step = k if up else K - k
            t = step / LIP_ROLL_STEPS
            q = p + np.array(
                [0.0, (1 if up else -1) * LIP_ROLL_HEIGHT * t * prof, -LIP_ROLL_DEPTH * t * prof]
            )
            sec[k, ci] = n + len(new)
            new.append(q)
    V = np.concatenate([V, np.asarray(new).reshape(-1, 3)])
    cav_start = n
    n += len(new)
    part.append(np.full(len(new), CAVITY))
    cav = []
    for k in range(K):
        if k == LIP_ROLL_STEPS:
            continue  # the opening: the two rolls are not joined
        for ci in range(len(cols) - 1):
            a, b, c, d = sec[k, ci], sec[k, ci + 1], sec[k + 1, ci], sec[k + 1, ci + 1]
            for tri in ([a, b, d], [a, d, c]):
                if len(set(tri)) == 3:
                    cav.append(tri)
    cav = np.asarray(cav, np.int64)
    # orient the rolls consistently with the skin: shared edges must run opposite ways
    skin_dir = {(int(f[k]), int(f[(k + 1) % 3])) for f in skin_faces for k in range(3)}
    clash = sum((int(f[k]), int(f[(k + 1) % 3])) in skin_dir for f in cav for k in range(3))
    if clash:
        cav = cav[:, ::-1].copy()
    faces_all = [skin_faces, cav]
    rows += [-1] * len(cav)
    fpart = [np.full(len(skin_faces), SKIN), np.full(len(cav), CAVITY)]
    if _signed_volume(V, np.concatenate(faces_all)) < 0:
        faces_all = [f[:, ::-1].copy() for f in faces_all]

    for pid, ctr in ((EYE_L, eye_centers[0]), (EYE_R, eye_centers[1])):
        ev, ef = _uv_sphere(ctr, EYE_RADIUS)
        faces_all.append(ef + n)
        fpart.append(np.full(len(ef), pid))
        rows += [-1] * len(ef)
        V = np.concatenate([V, ev])
        part.append(np.full(len(ev), pid))
        n += len(ev)
    for side in (1.0, -1.0):
        ev, ef = _ear(V[: R * N_COLS], side)
        faces_all.append(ef + n)
        fpart.append(np.full(len(ef), EAR))
        rows += [-1] * len(ef)
        V = np.concatenate([V, ev])
        part.append(np.full(len(ev), EAR))
        n += len(ev)
    F = np.concatenate(faces_all)
    part = np.concatenate(part)
    assert len(V) == n and part.shape[0] == n

    # joints, regressed from vertex rings so shape blendshapes move them
    Jreg = np.zeros((5, n))
    Jreg[0, vid[R - 1]] = 1.0 / N_COLS
    neck_row = int(np.argmin(np.abs(ys - (-0.085))))
    Jreg[1, vid[neck_row]] = 1.0 / N_COLS
    jaw_row = int(np.argmin(np.abs(ys - (-0.012))))
    jl = int(np.argmin(np.abs(phi - np.pi / 2)))
    Jreg[2, [vid[jaw_row, jl], vid[jaw_row, (N_COLS - jl) % N_COLS]]] = 0.5
    for k, pid in enumerate((EYE_L, EYE_R)):
        Jreg[3 + k, part == pid] = 1.0 / (part == pid).sum()
    joints = Jreg @ V

    weights = _skinning_weights(V, part, joints, s, lower_ids[dup], vid, cav_start, sec, xc, mp_pts)
    return HeadGeometry(
        vertices=V,
        faces=F,
        part=part,
        face_part=np.concatenate(fpart),
        face_row=np.asarray(rows, np.int64),
        joints=joints,
        weights=weights,
        J_regressor=Jreg,
        mp_points=mp_pts,
        slit_row=s,
        eye_centers=eye_centers,
    )


def _skinning_weights(V, part, joints, s, lower_dup, vid, cav_start, sec, xc, mp_pts) -> np.ndarray:
    """Smooth LBS weights ``[V,5]``: root/neck by height, jaw for the lower face, eyes rigid."""
    x, y, z = V.T
    y_s = mp_pts[13:15, 1].mean()
    fv = smoothstep((y_s + 0.012 - y) / 0.024)
    m = smoothstep((xc + 0.012 - np.abs(x)) / 0.012)  # mouth-column mask
    lower = np.zeros(len(V), bool)
    lower[vid[s + 1 :].ravel()] = True
    lower[lower_dup] = True
    upper = np.zeros(len(V), bool)
    upper[vid[: s + 1].ravel()] = True
    fv = np.where(upper, fv * (1 - m), fv)
    fv = np.where(lower, np.maximum(fv, m * (z > 0.02)), fv)
    fd = smoothstep((z + 0.005) / 0.035)
    y_chin = mp_pts[152, 1]
    fn = smoothstep((y - (y_chin - 0.02)) / 0.025)
    jaw = fv * fd * fn
    # lip rolls: each roll vertex moves with the slit edge it rolls from
    K = sec.shape[0] - 1
    for k in range(1, K):
        rim = sec[0] if 2 * k < K else sec[K]
        ok = sec[k] >= cav_start
        jaw[sec[k][ok]] = jaw[rim[ok]]
    h = smoothstep((y - (Y_ROOT + 0.01)) / 0.06)
    W = np.zeros((len(V), 5))
    W[:, 0] = 1 - h
    W[:, 1] = h * (1 - jaw)
    W[:, 2] = h * jaw
    for k, pid in enumerate((EYE_L, EYE_R)):
        W[part == pid] = 0.0
        W[part == pid, 3 + k] = 1.0
    W[part == EAR] = 0.0
    W[part == EAR, 1] = 1.0  # the ears are rigid with the head
    return W
