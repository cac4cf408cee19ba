"""Profile configs: every profile validates, errors name the file, the key path and what is allowed."""

from __future__ import annotations

import copy

import pytest
import yaml

import spaces
from fzplus.config import (
    CONFIG_DIR,
    ConfigError,
    command_line_overrides,
    load_config,
    load_schema,
)
from fzplus.planning import config_asset_hashes, materialize_config_assets

PROFILES = ("mini", "paper", "ci")


def write_yaml(path, data):
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def ci_dict():
    with open(CONFIG_DIR / "ci.yaml") as f:
        return yaml.safe_load(f)


@pytest.mark.parametrize("profile", PROFILES)
def test_each_profile_validates(profile):
    config = load_config(CONFIG_DIR / f"{profile}.yaml")
    assert config["profile"] == profile
    assert load_config(profile) == config  # a bare profile name finds config/<name>.yaml
    assert len(config["editing"]["alphas"]) >= 1 and config["inversion"]["steps"] >= 0


def test_profiles_follow_the_paper_where_they_should():
    mini, paper, ci = (load_config(p) for p in PROFILES)
    assert (paper["generator"]["truncation_psi"], paper["generator"]["truncation_cutoff"]) == (0.7, 8)
    assert mini["generator"]["truncation_psi"] == 1.0
    assert (paper["perceptual"]["backend"], paper["perceptual"]["size"]) == ("lpips-vgg", 256)
    assert (mini["perceptual"]["backend"], mini["identity"]["backend"]) == ("stlpips-vgg", "sface")
    assert paper["identity"]["backend"] == "facenet" and paper["targets"]["count"] == 50
    assert (paper["inversion"]["steps"], paper["inversion"]["base_size"]) == (1200, 16)
    for config in (mini, paper, ci):
        assert sorted(config["inversion"]["spaces"]) == sorted(spaces.names())  # null: every registered plugin
        assert config["inversion"]["spaces"][:2] == ["Z", "Z+"] and config["inversion"]["spaces"][-4:] == [
            "PTI",
            "PTI w/ Z+",
            "SAM",
            "SAM w/ Z+",
        ]
        assert config["statistics"]["pairs"] == [["F/Z+", "F/W+(P_N)"], ["PTI w/ Z+", "PTI"], ["SAM w/ Z+", "SAM"]]
    alphas = paper["editing"]["alphas"]
    assert len(alphas) == 11 and min(alphas) == -2 and max(alphas) == 2


def test_defaults_come_from_the_schema(ci_dict):
    schema = load_schema()
    del ci_dict["inversion"]["steps"], ci_dict["encoder"]
    config = load_config(ci_dict)
    inversion, encoder = schema["properties"]["inversion"]["properties"], schema["properties"]["encoder"]["properties"]
    assert config["inversion"]["steps"] == inversion["steps"]["default"] == 1200
    assert config["inversion"]["lr"] == inversion["lr"]["default"] == 0.01
    assert {k: config["encoder"][k] for k in encoder} == {k: v["default"] for k, v in encoder.items()}


def test_input_dict_is_not_modified(ci_dict):
    before = copy.deepcopy(ci_dict)
    load_config(ci_dict, overrides={"inversion.steps": 7})
    assert ci_dict == before


def test_misspelt_key_names_file_key_path_and_suggestion(tmp_path, ci_dict):
    ci_dict["inversion"]["stpes"] = ci_dict["inversion"].pop("steps")
    path = write_yaml(tmp_path / "typo.yaml", ci_dict)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert "'inversion.stpes'" in message and "did you mean 'inversion.steps'" in message


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("inversion.steps", -5, ["inversion.steps", ">= 0", "-5"]),
        ("perceptual.backend", "lpips", ["perceptual.backend", "'lpips'", "'stlpips-vgg'", "'lpips-vgg'"]),
        ("identity.backend", "arcface", ["identity.backend", "'dlib'", "'facenet'"]),
        ("device", "gpu", ["device", "'cpu'", "'cuda'", "'auto'"]),
        ("inversion.lr", "fast", ["inversion.lr", "number", "'fast'"]),
        ("inversion.lr", 0, ["inversion.lr", "> 0"]),
        ("generator.truncation_psi", 1.5, ["generator.truncation_psi", "<= 1"]),
        ("statistics.pairs", [["F/Z+"]], ["statistics.pairs[0]", "at least 2"]),
    ],
)
def test_bad_value_names_file_key_path_and_what_is_allowed(tmp_path, ci_dict, key, value, expected):
    path = write_yaml(tmp_path / "bad.yaml", ci_dict)
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides={key: value})
    message = str(info.value)
    assert str(path) in message
    for fragment in expected:
        assert fragment in message


def test_all_problems_are_reported_at_once(ci_dict):
    with pytest.raises(ConfigError) as info:
        load_config(ci_dict, overrides={"inversion.steps": -1, "seed": "x", "report.colour": "red"})
    message = str(info.value)
    assert "inversion.steps" in message and "seed" in message and "report.colour" in message


def test_missing_required_section_is_named(ci_dict):
    del ci_dict["identity"]
    with pytest.raises(ConfigError, match="missing key 'identity'"):
        load_config(ci_dict)


def test_overrides_dotted_nested_and_null(ci_dict):
    config = load_config(ci_dict, overrides={"inversion.steps": 9, "encoder": {"steps": 2}, "threads": None})
    assert config["inversion"]["steps"] == 9
    assert config["encoder"]["steps"] == 2 and config["encoder"]["batch_size"] == 4  # merged, not replaced
    assert config["threads"] is None
    switched = load_config("ci", overrides={"generator.random": None, "generator.checkpoint": "models/x.pt"})
    assert switched["generator"]["checkpoint"] == "models/x.pt" and switched["generator"]["random"] is None


def test_override_of_an_unknown_key_is_caught():
    with pytest.raises(ConfigError, match="unknown key 'inversion.step'"):
        load_config("ci", overrides={"inversion.step": 3})


def test_exactly_one_generator_source():
    with pytest.raises(ConfigError, match="generator: give exactly one of checkpoint, asset, random"):
        load_config("ci", overrides={"generator.checkpoint": "models/x.pt"})
    with pytest.raises(ConfigError, match="targets: give exactly one of asset, folder.*none"):
        load_config("ci", overrides={"targets.asset": None})


def test_space_names_are_checked_against_the_registry():
    one_pair = {"statistics.pairs": [["F/Z+", "F/W+(P_N)"]]}
    config = load_config("ci", overrides={"inversion.spaces": ["f_z_plus", "F/W+(P_N)"], **one_pair})  # slugs work too
    assert config["inversion"]["spaces"] == ["f_z_plus", "F/W+(P_N)"]
    with pytest.raises(ConfigError, match=r"inversion.spaces\[1\] = 'F/Zplus' is not a registered latent space"):
        load_config("ci", overrides={"inversion.spaces": ["F/Z+", "F/Zplus", "F/W+(P_N)"], **one_pair})
    with pytest.raises(
        ConfigError, match=r"statistics.pairs\[0\] compares 'F/W\+\(P_N\)', which is not in inversion.spaces"
    ):
        load_config("ci", overrides={"inversion.spaces": ["F/Z+"], **one_pair})


def test_asset_names_are_checked_against_the_declarations():
    with pytest.raises(ConfigError, match="identity.weights_asset = 'facenet' is not declared"):
        load_config("ci", overrides={"identity.weights_asset": "facenet"})


def test_fitted_interfacegan_needs_offline_attributes():
    with pytest.raises(
        ConfigError, match=r"directions.interfacegan.attributes\[0\] = 'Smiling' cannot be labelled offline"
    ):
        load_config("ci", overrides={"directions.interfacegan.boundaries_asset": None})


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(FileNotFoundError, match="profiles in"):
        load_config("no-such-profile")
    broken = tmp_path / "broken.yaml"
    broken.write_text("inversion: [steps\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_config_assets_are_materialized_and_hashed(mirror, tmp_path):
    config = load_config("ci", overrides={"resources_dir": str(tmp_path / "resources"), "asset_mirror": str(mirror)})
    paths = materialize_config_assets(config)
    assert set(paths) == {"targets.asset", "directions.interfacegan.boundaries_asset", "fig8.targets.asset"}
    assert paths["targets.asset"] == tmp_path / "resources" / "celebahq-stargan-v2"
    assert len(list(paths["targets.asset"].glob("*.jpg"))) == 56
    hashes = config_asset_hashes(config)
    assert (
        len(hashes["interfacegan-stylegan2-ffhq-z"]["files"]) == 39
        and hashes["celebahq-stargan-v2"]["verified"] is True
    )


def test_released_boundary_attributes_are_checked_against_the_asset():
    with pytest.raises(
        ConfigError,
        match=r"attributes\[0\] = 'Smiles' has no boundary in asset 'interfacegan-stylegan2-ffhq-z' "
        r"\(did you mean 'Smiling'\?\)",
    ):
        load_config("paper", overrides={"directions.interfacegan.attributes": ["Smiles"]})


def test_command_line_overrides_type_what_snakemake_leaves_as_strings():
    # Snakemake parses `--config 'inversion={steps: 50, lr: 1e-3}' seed=3` with YAML's BaseLoader inside mappings.
    given = {
        "seed": 3,
        "inversion": {"steps": "50", "lr": "1e-3", "spaces": ["F/Z+", "W"]},
        "generator": {"checkpoint": "null", "truncation_cutoff": "~"},
        "report": {"title": "a: b", "x": "true"},
        "fig8": "null",  # `--config fig8=null`: Snakemake leaves a top-level null as a string
        "run_name": "mini-cap4x",
    }
    typed = command_line_overrides(given)
    assert typed == {
        "seed": 3,
        "inversion": {"steps": 50, "lr": 1e-3, "spaces": ["F/Z+", "W"]},
        "generator": {"checkpoint": None, "truncation_cutoff": None},
        "report": {"title": "a: b", "x": True},
        "fig8": None,
        "run_name": "mini-cap4x",
    }
    assert load_config("ci", overrides=command_line_overrides({"inversion": {"steps": "7"}}))["inversion"]["steps"] == 7
