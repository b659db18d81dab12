import pytest

from streamer.config import AppConfig, ConfigError, load_toml, validate


def test_defaults_are_valid():
    assert validate(AppConfig()) == AppConfig()


def test_toml_fills_the_tree_and_cameras(tmp_path):
    p = tmp_path / "cams.toml"
    p.write_text(
        """
[detect]
interval = 2
[enhance]
engine = "bicubic"
scale = 4
[server]
port = 9000
stun_servers = ["stun:127.0.0.1:3478"]
[[camera]]
uri = "demo"
name = "lobby"
[[camera]]
uri = "rtsp://127.0.0.1:8554/live"
name = "door"
rtsp_transport = "udp"
"""
    )
    cfg = load_toml(p)
    assert cfg.detect.interval == 2 and cfg.enhance.scale == 4 and cfg.server.port == 9000
    assert [s.name for s in cfg.sources] == ["lobby", "door"]
    assert cfg.sources[1].rtsp_transport == "udp"
    assert cfg.server.stun_servers == ("stun:127.0.0.1:3478",)


@pytest.mark.parametrize(
    "text, message",
    [
        ("[detect]\ninterval = 0", "interval"),
        ("[enhance]\nscale = 3", "scale must be 4, 8 or 16"),
        ("[output]\nmode = 'mosaic'", "output mode"),
        ("[detect]\nthreshold = 'high'", "threshold must be float"),
        ("[detect]\nbogus = 1", "unknown key"),
        ("[server]\ncert = 'c.pem'", "both cert and key"),
        ("[[camera]]\nuri='demo'\n[[camera]]\nuri='demo'", "unique"),
        ("[detect\n", "not valid TOML"),
    ],
)
def test_bad_settings_fail_with_a_clear_message(tmp_path, text, message):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_toml(p)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_toml(tmp_path / "nope.toml")


# -- the one schema, and what is generated from it -----------------------------------------------
def test_every_declared_flag_is_on_the_command_line_and_reaches_the_config() -> None:
    from streamer import cli
    from streamer.config import SETTINGS

    parser = cli.make_parser()
    for command in ("serve", "enhance"):
        declared = [s for s in SETTINGS if s.flag and command in s.commands]
        assert declared
        sub = parser._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
        flags = {opt for action in sub._actions for opt in action.option_strings}
        assert {s.flag for s in declared} <= flags
    args = parser.parse_args(["enhance", "--source", "clip.mp4", "--detect-interval", "2", "--crf", "30"])
    cfg = cli.build_config(args, "enhance")
    assert cfg.detect.interval == 2 and cfg.output.crf == 30 and cfg.sources[0].uri == "clip.mp4"
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--scale", "5"])


def test_flag_values_are_checked_by_the_same_schema() -> None:
    from streamer import cli

    args = cli.make_parser().parse_args(["serve", "--detect-interval", "31"])
    with pytest.raises(ConfigError, match="detect interval must be <= 30, got 31"):
        cli.build_config(args, "serve")


def test_mode_is_decided_once_at_the_edge() -> None:
    from streamer import cli

    parser = cli.make_parser()
    assert cli.build_config(parser.parse_args(["serve"]), "serve").mode == "live"
    assert cli.build_config(parser.parse_args(["enhance", "--source", "a.mp4"]), "enhance").mode == "file"
    assert cli.build_config(parser.parse_args(["enhance", "--source", "demo"]), "enhance").mode == "file"
    stream = parser.parse_args(["enhance", "--source", "rtsp://127.0.0.1:1/x"])
    assert cli.build_config(stream, "enhance").mode == "live"


def test_serve_keeps_faces_in_the_user_data_folder_unless_told_otherwise(monkeypatch, tmp_path) -> None:
    from streamer import cli

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    parser = cli.make_parser()
    assert (
        cli.build_config(parser.parse_args(["serve"]), "serve").storage.data_dir == f"{tmp_path}/facestream"
    )
    given = parser.parse_args(["serve", "--data-dir", "/srv/faces", "--keep-days", "7", "--keep-mb", "500"])
    storage = cli.build_config(given, "serve").storage
    assert (storage.data_dir, storage.max_age_days, storage.max_size_mb) == ("/srv/faces", 7.0, 500)
    assert not cli.build_config(
        parser.parse_args(["serve", "--data-dir", "off"]), "serve"
    ).storage.keeps_faces
    assert not cli.build_config(
        parser.parse_args(["enhance", "--source", "a.mp4"]), "enhance"
    ).storage.keeps_faces
    with pytest.raises(ConfigError, match="storage max_age_days must be > 0"):
        cli.build_config(parser.parse_args(["serve", "--keep-days", "0"]), "serve")


def test_apply_changes_live_settings_only_and_validates_them() -> None:
    from streamer.config import apply, live_settings

    assert set(live_settings()) == {"scale", "entry", "mode", "upscale", "detect_interval", "frames"}
    cfg = apply(AppConfig(), {"detect.interval": 2, "scale": 4})
    assert cfg.detect.interval == 2 and cfg.enhance.scale == 4
    assert apply(cfg, {"mode": "gallery"}).enhance.scale == 4, "changes compose"
    for bad, message in [
        ({"detect.threshold": 0.5}, "not live"),
        ({"detect_interval": 10**1000}, "detect interval must be <= 30"),
        ({"detect_interval": "2"}, "must be int"),
        ({"scale": 5}, "must be 4, 8 or 16"),
        ({}, "no change"),
    ]:
        with pytest.raises(ConfigError, match=message) as info:
            apply(AppConfig(), bad)
        assert len(str(info.value)) < 200, "a huge value must not reach a log in full"


def test_live_settings_describe_their_choices_and_ranges() -> None:
    from streamer.config import live_settings

    described = {name: s.describe() for name, s in live_settings().items()}
    assert described["scale"]["choices"] == [4, 8, 16]
    assert described["mode"]["choices"] == ["upscale", "inset", "gallery"]
    assert (described["detect_interval"]["min"], described["detect_interval"]["max"]) == (1, 30)
    assert described["detect_interval"]["path"] == "detect.interval"
