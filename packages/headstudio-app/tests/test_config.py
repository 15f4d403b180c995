"""Config dataclasses: the paper's defaults, TOML loading, ``--set`` overrides, save round trip."""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import pytest
import tomli_w
from headstudio.config import (
    CameraConfig,
    DensifyConfig,
    GuidanceConfig,
    HeadStudioConfig,
    InitConfig,
    LossConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)
from headstudio.errors import HeadStudioError


def test_defaults_are_the_public_codes_numbers() -> None:
    cfg = HeadStudioConfig()
    t = cfg.train
    # docs/METHOD.md "Training": 10k steps, batch 8, 1024² renders resized to 512²
    assert (t.steps, t.batch_size, t.resolution, t.guidance_resolution) == (10000, 8, 1024, 512)
    # docs/METHOD.md parity table: the public code's 3DGS Adam (betas (0.9, 0.999)), shape stopped
    # at 8,000 (issue 20 moved betas, scale and rotation rates from the paper's to the code's)
    assert t.betas == (0.9, 0.999)
    # the position rate is the public code's effective one: 5e-5 x its spatial scale 4, decaying
    # to 2.5e-5 x 4 over 30,000 steps; scale and rotation are the public code's (paper: 1e-3, 1e-2)
    assert (t.lr_position, t.lr_position_final, t.lr_position_decay_steps) == (2e-4, 1e-4, 30000)
    assert (t.lr_scale, t.lr_rotation) == (5e-3, 1e-3)
    assert (t.lr_color, t.lr_opacity, t.lr_shape) == (1.25e-2, 1e-2, 1e-3)
    assert t.shape_stop_step == 8000
    c = cfg.camera
    assert c.distance == (1.5, 2.0) and c.fovy_deg == (40.0, 70.0)
    assert c.elevation_deg == (-30.0, 30.0) and c.azimuth_deg == (-180.0, 180.0)
    i = cfg.init
    assert (i.points_per_face, i.opacity, i.color) == (10, 0.1, 0.5)
    assert cfg.loss.lambda_pos == 0.1 and cfg.loss.lambda_scale == 0.1 and cfg.loss.lambda_sds == 1.0
    d = cfg.densify
    # the published commands' threshold; the public code's events (its bounds are exclusive)
    assert d.grad_threshold == 0.001 and d.min_opacity == 0.005
    assert (d.densify_from, d.densify_until, d.densify_every) == (600, 1800, 300)
    assert (d.prune_from, d.prune_until, d.prune_every) == (2700, 3000, 300)
    assert (cfg.regularizer.form, cfg.regularizer.pos_from) == ("code", 2400)
    # sizes: fractions of the public code's scene extent, 4 scene units; screen pruning from 1500
    assert (d.scene_extent, d.percent_dense, d.max_world_size, d.screen_size_from) == (4.0, 0.01, 0.03, 1500)
    assert d.max_gaussians == 500_000
    g = cfg.guidance
    assert g.kind == "fsds" and g.fsds.mode == "fsds"
    assert g.base_model == "stablediffusionapi/realistic-vision-51"
    assert g.controlnet == "CrucibleAI/ControlNetMediaPipeFace" and g.controlnet_subfolder == "diffusion_sd15"
    f = g.fsds
    assert (f.guidance_scale, f.controlnet_scale) == (7.5, 1.5)
    assert f.t_range_phase1 == (0.05, 0.8) and f.t_range_phase2 == (0.02, 0.55) and f.t_switch_step == 3000
    assert (f.denoise_switch_t, f.grad_clip, f.vae_gradient_checkpointing) == (200, None, False)


def test_load_none_gives_defaults() -> None:
    assert load_config(None, []) == HeadStudioConfig()


def test_toml_file_and_overrides(tmp_path: Path) -> None:
    p = tmp_path / "run.toml"
    p.write_text(
        '[train]\nsteps = 200\nlr_position = 1e-4\nbackground = "white"\n'
        "[camera]\nfovy_deg = [30, 50]\ntarget = [0.0, 0.01, 0.02]\n"
        '[head]\nflame_path = "/x/flame.pkl"\n'
    )
    cfg = load_config(p, ["train.steps=300", "train.device=cuda", "loss.lambda_pos=0", "guidance.kind=image"])
    assert cfg.train.steps == 300 and isinstance(cfg.train.steps, int)  # override wins over the file
    assert cfg.train.lr_position == 1e-4 and cfg.train.background == "white"
    assert cfg.camera.fovy_deg == (30.0, 50.0) and all(isinstance(v, float) for v in cfg.camera.fovy_deg)
    assert cfg.camera.target == (0.0, 0.01, 0.02)
    assert cfg.head.flame_path == "/x/flame.pkl"
    assert cfg.train.device == "cuda"  # bare string accepted
    assert cfg.loss.lambda_pos == 0.0 and isinstance(cfg.loss.lambda_pos, float)  # int → float
    assert cfg.guidance.kind == "image"
    # untouched fields keep the defaults
    assert cfg.train.batch_size == 8 and cfg.init == InitConfig()


def test_override_types_and_nested_values() -> None:
    cfg = HeadStudioConfig()
    apply_overrides(
        cfg,
        [
            'train.device="cpu"',
            "train.betas=[0.5, 0.9]",
            "densify.enabled=false",
            "camera.target=auto",
            "head.flame_path=none",
            "train.motion_path=/m/talk.npz",
            "init.sh_degree=2",
            "train.steps=1e3",
            "guidance.negative_prompt=true",
            "guidance.base_model=2024",
        ],
    )
    assert cfg.guidance.fsds.negative_prompt == "true" and cfg.guidance.base_model == "2024"
    assert cfg.train.device == "cpu"
    assert cfg.train.betas == (0.5, 0.9)
    assert cfg.densify.enabled is False
    assert cfg.camera.target == "auto"
    assert cfg.head.flame_path is None
    assert cfg.train.motion_path == "/m/talk.npz"
    assert cfg.init.sh_degree == 2
    assert cfg.train.steps == 1000 and isinstance(cfg.train.steps, int)


@pytest.mark.parametrize(
    ("item", "fragment"),
    [
        ("train.stepz=3", "valid keys of [train]"),
        ("trian.steps=3", "section one of"),
        ("steps=3", "section one of"),
        ("train.steps", "not KEY=VALUE"),
        ("train.steps=abc", "expected int"),
        ("train.steps=2.5", "expected int"),
        ("train.background=green", "'random' | 'white' | 'black'"),
        ("camera.fovy_deg=[1, 2, 3]", "expected [float, float]"),
        ("densify.enabled=3", "expected bool"),
        ("train.steps=0", "at least 1"),
        ("camera.distance=[2.0, 1.0]", "min <= max"),
        ("init.opacity=1.5", "(0, 1)"),
        ("train.guidance_resolution=500", "multiple of 8"),
        ("densify.densify_every=0", ">= 1"),
        ("guidance.fsds.t_range_phase1=[0.9, 0.1]", "0 <= min <= max <= 1"),
        ("guidance.fsds.grad_clipp=1", "fsds.grad_clip"),
        ("guidance.fsds.image_size=64", "train.guidance_resolution"),
        ("guidance.fsds=1", "valid keys of [guidance]"),
        ("guidance.fsds.mode=dds", "'fsds' | 'sds'"),
    ],
)
def test_bad_overrides_name_the_key(item: str, fragment: str) -> None:
    with pytest.raises(HeadStudioError) as ei:
        load_config(None, [item])
    msg = str(ei.value)
    assert fragment in msg
    assert "\n" not in msg
    key = item.partition("=")[0]
    if "." in key:
        assert key in msg


def test_unknown_key_in_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("[train]\nstepz = 3\n")
    with pytest.raises(HeadStudioError, match=r"train\.stepz.*bad\.toml.*valid keys"):
        load_config(p, [])
    p.write_text("[trainer]\nsteps = 3\n")
    with pytest.raises(HeadStudioError, match=r"unknown config section \[trainer\]"):
        load_config(p, [])
    p.write_text("[train\nsteps = 3\n")
    with pytest.raises(HeadStudioError, match="not valid TOML"):
        load_config(p, [])
    with pytest.raises(HeadStudioError, match="does not exist"):
        load_config(tmp_path / "missing.toml", [])


def test_save_load_round_trip(tmp_path: Path) -> None:
    cfg = load_config(
        None,
        [
            "train.steps=123",
            "camera.target=[0.0, 0.1, -0.2]",
            'guidance.negative_prompt="blurry, \\"bad\\""',
            "head.flame_path=/a b/flame.pkl",
            "train.lr_color=0.3",
        ],
    )
    p = save_config(cfg, tmp_path / "out" / "config.toml")
    assert p.is_file()
    back = load_config(p, [])
    assert back == cfg
    assert back.guidance.fsds.negative_prompt == 'blurry, "bad"'
    # the defaults round-trip too (None fields are left out and come back as None)
    save_config(HeadStudioConfig(), tmp_path / "d.toml")
    assert load_config(tmp_path / "d.toml") == HeadStudioConfig()


def test_old_mode_name_dsds_loads_as_fsds(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Configs (and checkpoints) written before the rename say guidance.mode = "dsds"."""
    p = tmp_path / "old.toml"
    p.write_text('[guidance]\nmode = "dsds"\n')
    with caplog.at_level(logging.WARNING, logger="headstudio.config"):
        cfg = load_config(p)
    assert cfg.guidance.fsds.mode == "fsds" and cfg.guidance.to_fsds_config().mode == "fsds"
    lines = [r.getMessage() for r in caplog.records if r.name == "headstudio.config"]
    assert len(lines) == 1 and "deprecated" in lines[0] and "fsds" in lines[0] and "old.toml" in lines[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="headstudio.config"):
        assert load_config(None, ["guidance.mode=dsds"]).guidance.fsds.mode == "fsds"
        assert config_from_dict({"guidance": {"mode": "dsds"}}).guidance.fsds.mode == "fsds"
    assert len(caplog.records) == 2
    with pytest.raises(HeadStudioError, match="'fsds' | 'sds'"):
        load_config(None, ["guidance.mode=dds"])


def test_config_dict_round_trip() -> None:
    cfg = HeadStudioConfig(camera=CameraConfig(target=(0.0, 1.0, 2.0)), loss=LossConfig(lambda_l1=0.5))
    d = config_to_dict(cfg)
    assert d["camera"]["target"] == [0.0, 1.0, 2.0]
    assert "flame_path" not in d["head"]
    assert config_from_dict(d) == cfg


def test_to_fsds_config() -> None:
    pytest.importorskip("fsds_guidance")
    from fsds_guidance import FSDSConfig

    g = GuidanceConfig(fsds=FSDSConfig(mode="sds", guidance_scale=5.0))
    f = g.to_fsds_config(image_size=64)
    assert f.mode == "sds" and f.guidance_scale == 5.0 and f.image_size == 64
    assert GuidanceConfig().to_fsds_config().mode == "fsds"


def test_densify_section_is_the_strategys_config() -> None:
    """One densification config: the app's [densify] section is rigged_gaussians' own dataclass."""
    from rigged_gaussians import strategy

    assert DensifyConfig is strategy.DensifyConfig
    cfg = load_config(None, ["densify.grad_threshold=0.01", "densify.enabled=false"])
    assert isinstance(cfg.densify, strategy.DensifyConfig) and cfg.densify.grad_threshold == 0.01
    assert not cfg.densify.is_active(1)
    assert set(config_to_dict(cfg)["densify"]) == {f.name for f in dataclasses.fields(strategy.DensifyConfig)}


def test_shipped_default_toml_is_the_paper_defaults() -> None:
    """`headstudio/configs/default.toml` (the documented example) must stay equal to the defaults."""
    from importlib.resources import files

    from headstudio.config import HeadStudioConfig, config_to_dict, load_config

    path = files("headstudio") / "configs" / "default.toml"
    assert config_to_dict(load_config(str(path), [])) == config_to_dict(HeadStudioConfig())


def test_position_learning_rate_decays_exponentially() -> None:
    t = HeadStudioConfig().train
    assert t.position_lr(0) == pytest.approx(2e-4)
    assert t.position_lr(15000) == pytest.approx(math.sqrt(2e-4 * 1e-4))  # log-linear: the geometric mean
    assert t.position_lr(30000) == pytest.approx(1e-4) and t.position_lr(10**6) == pytest.approx(1e-4)
    assert t.position_lr(10000) == pytest.approx(2e-4 * 0.5 ** (1 / 3))  # the paper's run ends here
    steps = [t.position_lr(s) for s in range(0, 30001, 1000)]
    assert all(a > b for a, b in zip(steps, steps[1:]))
    t.lr_position_final = 0.0  # a zero end rate: constant (a log-linear decay cannot reach 0)
    assert t.position_lr(5000) == t.lr_position
    with pytest.raises(HeadStudioError, match="lr_position_decay_steps"):
        load_config(None, ["train.lr_position_decay_steps=0"])
    with pytest.raises(HeadStudioError, match="max_gaussians"):
        load_config(None, ["densify.max_gaussians=-5"])


def test_set_rebuilds_the_section_so_its_own_checks_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--set`` goes through ``dataclasses.replace``: ``DensifyConfig.__post_init__`` judges the new
    values (config's own checks no longer repeat it), and the message still names the key and,
    from a file, where the value came from."""
    from rigged_gaussians.strategy import DensifyConfig

    seen = []
    original = DensifyConfig.__post_init__

    def spy(self: DensifyConfig) -> None:
        seen.append(self.densify_every)
        original(self)

    monkeypatch.setattr(DensifyConfig, "__post_init__", spy)
    cfg = load_config(None, ["densify.densify_every=7", "densify.max_gaussians=9"])
    assert (cfg.densify.densify_every, cfg.densify.max_gaussians) == (7, 9)
    assert seen[-1] == 7  # the section was rebuilt with both values at once
    with pytest.raises(HeadStudioError) as ei:
        config_from_dict({"densify": {"split_factor": 0}}, "in run.toml")
    assert (
        str(ei.value)
        == "bad value for config key 'densify.split_factor': 0; expected an integer >= 1 (in run.toml)."
    )


def test_regularizer_form_is_validated_in_toml_and_set(tmp_path: Path) -> None:
    cfg = load_config(None, ["regularizer.form=paper", "regularizer.pos_from=0"])
    assert (cfg.regularizer.form, cfg.regularizer.pos_from) == ("paper", 0)
    f = tmp_path / "r.toml"
    f.write_text('[regularizer]\nform = "paper"\n', encoding="utf-8")
    assert load_config(f).regularizer.form == "paper"
    save_config(cfg, tmp_path / "saved.toml")
    assert load_config(tmp_path / "saved.toml").regularizer == cfg.regularizer
    with pytest.raises(HeadStudioError, match=r"regularizer\.form.*'hinge'.*paper.*code"):
        load_config(None, ["regularizer.form=hinge"])
    f.write_text('[regularizer]\nform = "hinge"\n', encoding="utf-8")
    with pytest.raises(HeadStudioError, match=r"regularizer\.form"):
        load_config(f)
    with pytest.raises(HeadStudioError, match=r"regularizer\.pos_from.*>= 0"):
        load_config(None, ["regularizer.pos_from=-1"])


def test_fsds_fields_set_from_toml_and_overrides(tmp_path: Path) -> None:
    """[guidance.fsds] is FSDSConfig whole: the fields [guidance] did not restate are keys too."""
    pytest.importorskip("fsds_guidance")
    p = tmp_path / "f.toml"
    p.write_text("[guidance.fsds]\ndenoise_switch_t = 150\ngrad_clip = 0.25\n")
    cfg = load_config(p, ["guidance.fsds.vae_gradient_checkpointing=true", "guidance.fsds.guidance_scale=5"])
    f = cfg.guidance.to_fsds_config(image_size=64)
    assert (f.denoise_switch_t, f.grad_clip, f.vae_gradient_checkpointing) == (150, 0.25, True)
    assert (f.guidance_scale, f.image_size) == (5.0, 64)
    assert load_config(None, ["guidance.fsds.grad_clip=none"]).guidance.fsds.grad_clip is None
    # saved as a [guidance.fsds] table (image_size is train.guidance_resolution's, not written)
    d = config_to_dict(cfg)
    assert d["guidance"]["fsds"]["grad_clip"] == 0.25 and "image_size" not in d["guidance"]["fsds"]
    assert "grad_clip" not in config_to_dict(HeadStudioConfig())["guidance"]["fsds"]
    back = load_config(save_config(cfg, tmp_path / "out.toml"))
    assert back == cfg


def test_a_config_saved_before_guidance_embedded_fsds_still_loads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The previous version wrote the eight FSDS fields flat under [guidance] (config.toml of a run,
    and the checkpoint's config dict): they load into guidance.fsds, one info line each."""
    old = {
        "kind": "fsds",
        "base_model": "stablediffusionapi/realistic-vision-51",
        "guidance_scale": 6.0,
        "controlnet_scale": 1.25,
        "mode": "sds",
        "dtype": "auto",
        "t_range_phase1": [0.1, 0.7],
        "t_range_phase2": [0.05, 0.5],
        "t_switch_step": 2000,
        "negative_prompt": "blurry",
        "view_dependent": False,
        "local_files_only": True,
    }
    p = tmp_path / "config.toml"
    p.write_text(tomli_w.dumps({"guidance": old}))
    with caplog.at_level(logging.INFO, logger="headstudio.config"):
        cfg = load_config(p)
    moved = [r.getMessage() for r in caplog.records if "is now called guidance.fsds." in r.getMessage()]
    assert len(moved) == 8 and all("config.toml" in m for m in moved)
    f = cfg.guidance.fsds
    assert (f.guidance_scale, f.controlnet_scale, f.mode, f.t_switch_step) == (6.0, 1.25, "sds", 2000)
    assert (f.t_range_phase1, f.t_range_phase2) == ((0.1, 0.7), (0.05, 0.5))
    assert (f.negative_prompt, f.view_dependent) == ("blurry", False)
    assert cfg.guidance.local_files_only is True
    assert config_from_dict({"guidance": old}) == cfg  # a checkpoint's config dict
    with pytest.raises(HeadStudioError, match=r"guidance\.fsds\.t_range_phase1.*0 <= min <= max <= 1"):
        config_from_dict({"guidance": {"t_range_phase1": [0.9, 0.1]}})


def test_settings_that_differ_name_an_fsds_key_one_by_one() -> None:
    """A run folder's settings are compared key by key inside [guidance.fsds] too, also against a
    configuration of the previous version (flat keys)."""
    from headstudio.config import flatten_config
    from headstudio.train.run_folder import settings_differ

    mine = config_to_dict(load_config(None, ["guidance.fsds.grad_clip=0.5"]))
    assert flatten_config(mine)["guidance.fsds.grad_clip"] == 0.5
    assert settings_differ(mine, {"guidance": {"guidance_scale": 6.0}}) == [
        "guidance.fsds.guidance_scale is 6.0 there, 7.5 here"
    ]
    assert settings_differ(mine, config_to_dict(HeadStudioConfig())) == []
