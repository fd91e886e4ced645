from dataclasses import dataclass

import pytest

from services.kit.settings import CommonSettings, SettingsError, env, load


@dataclass(frozen=True)
class _Example:
    name: str = env("X_NAME", help="required name")
    port: int = env("X_PORT", 80)
    ratio: float = env("X_RATIO", 0.5)
    enabled: bool = env("X_ENABLED", False)
    tags: tuple = env("X_TAGS", ())
    optional: str | None = env("X_OPTIONAL", None)


def test_values_are_parsed_to_their_declared_types():
    config = load(_Example, {"X_NAME": "a", "X_PORT": "8080", "X_RATIO": "0.25", "X_ENABLED": "yes", "X_TAGS": "a, b"})
    assert config == _Example(name="a", port=8080, ratio=0.25, enabled=True, tags=("a", "b"), optional=None)


def test_defaults_apply_when_variables_are_absent():
    config = load(_Example, {"X_NAME": "a"})
    assert (config.port, config.enabled, config.tags) == (80, False, ())


def test_every_problem_is_reported_at_once():
    with pytest.raises(SettingsError) as info:
        load(_Example, {"X_PORT": "eighty", "X_ENABLED": "maybe"})
    message = str(info.value)
    assert "X_NAME is required" in message
    assert "X_PORT" in message
    assert "X_ENABLED" in message


def test_common_settings_load_from_an_empty_environment():
    config = load(CommonSettings, {})
    assert config.auth_mode == "secret"
    assert config.shutdown_grace == 5.0


def test_a_tasks_math_libraries_get_its_share_of_the_cores_unless_told(monkeypatch):
    from services.compute.settings import ComputeSettings

    monkeypatch.setattr("os.cpu_count", lambda: 8)
    share = load(ComputeSettings, {"TESSERA_EXECUTION_SLOTS": "2"}).task_env()
    assert share == {"OMP_NUM_THREADS": "4", "OPENBLAS_NUM_THREADS": "4", "MKL_NUM_THREADS": "4"}
    assert set(load(ComputeSettings, {"TESSERA_EXECUTION_SLOTS": "16"}).task_env().values()) == {"1"}
    told = load(ComputeSettings, {"TESSERA_EXECUTION_SLOTS": "2", "TESSERA_TASK_THREADS": "3"}).task_env()
    assert set(told.values()) == {"3"}
    with pytest.raises(ValueError):
        load(ComputeSettings, {"TESSERA_TASK_THREADS": "-1"}).task_env()
