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
