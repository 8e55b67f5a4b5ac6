from pathlib import Path

import pytest

from fashionstream.core.settings import Backend, FallBehindPolicy, Settings, env_name


def test_defaults_are_valid_and_every_setting_is_described() -> None:
    settings = Settings.from_env({})
    rows = settings.describe()
    assert len(rows) == len({name for name, _, _ in rows})
    for name, _value, help_text in rows:
        assert name.startswith("FASHIONSTREAM_")
        assert help_text, f"{name} has no description"


@pytest.mark.parametrize(
    ("field", "raw", "expected"),
    [
        ("batch_size", "3", 3),
        ("batch_within_s", "0.25", 0.25),
        ("backend", "ONNX", Backend.ONNX),
        ("fall_behind_policy", "block", FallBehindPolicy.BLOCK),
        ("fetch_allow_networks", "127.0.0.2/32, 10.0.0.0/8", ("127.0.0.2/32", "10.0.0.0/8")),
        ("fetch_allow_networks", "", ()),
        ("state_dir", "/tmp/fs-state", Path("/tmp/fs-state")),
        ("kafka_bootstrap", "a:1,b:2", "a:1,b:2"),
        ("api_keys", "k1, k2", ("k1", "k2")),
        ("api_keys", "", ()),
    ],
)
def test_env_values_are_parsed_to_their_types(field: str, raw: str, expected: object) -> None:
    settings = Settings.from_env({env_name(field): raw})
    assert getattr(settings, field) == expected


@pytest.mark.parametrize(
    ("field", "raw", "message"),
    [
        ("batch_size", "many", "FASHIONSTREAM_BATCH_SIZE='many'"),
        ("backend", "tpu", "expected one of: auto, torch, onnx"),
        ("batch_size", "0", "batch_size must be > 0"),
        ("jpeg_quality", "101", "jpeg_quality must be in [1, 100]"),
        ("video_fps", "0", "video_fps must be in (0, 120]"),
        ("detection_threshold", "1.5", "detection_threshold must be in [0, 1]"),
        ("person_threshold", "-0.1", "person_threshold must be in [0, 1]"),
    ],
)
def test_bad_env_values_name_the_variable_and_the_rule(field: str, raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        Settings.from_env({env_name(field): raw})


def test_overrides_win_over_environment() -> None:
    settings = Settings.from_env({env_name("batch_size"): "3"}, batch_size=5)
    assert settings.batch_size == 5


def test_api_keys_are_redacted_when_printed_but_handed_on_exactly() -> None:
    settings = Settings.from_env({env_name("api_keys"): "secret-one,secret-two"})
    printed = {name: value for name, value, _ in settings.describe(redacted=True)}
    assert printed[env_name("api_keys")] == "(2 set, not shown)"
    assert "secret" not in " ".join(printed.values())
    exact = {name: value for name, value, _ in settings.describe()}
    assert Settings.from_env(exact).api_keys == ("secret-one", "secret-two")
