import pytest

from segnn import ConfigError, load_config


def test_yaml_configs_load():
    quick = load_config("configs/qm9_quick.yaml")
    paper = load_config("configs/qm9.yaml")
    assert paper.model.hidden_features == 128 and paper.model.num_layers == 7
    assert paper.model.hidden_allocation == "weights"  # the official --subspace_type
    assert paper.train.milestones == [0.8, 0.9]
    assert quick.data.subset.train is not None


def test_overrides_are_parsed_as_yaml():
    config = load_config(
        "configs/qm9.yaml", ["data.target=gap", "train.lr=1e-3", "model.species=[H, C]"]
    )
    assert config.data.target == "gap"
    assert config.train.lr == pytest.approx(1e-3)
    assert config.model.species == ["H", "C"]


@pytest.mark.parametrize(
    "raw,message",
    [
        ({"modle": {}}, r"unknown config key 'modle'.*Did you mean 'model'"),
        (
            {"model": {"hiden_features": 3}},
            r"'model.hiden_features'.*Allowed keys in model: species",
        ),
        ({"model": {"norm": "batch"}}, r"model.norm must be one of 'instance', 'none'"),
        ({"train": {"lr": "fast"}}, r"train.lr must be of type float"),
        ({"model": {"num_layers": 2.5}}, r"model.num_layers must be of type int"),
        ({"model": {"num_layers": 0}}, r"model.num_layers must be positive"),
        ({"model": {"species": ["H", "Qq"]}}, r"unknown: \['Qq'\]"),
        ({"model": {"output_irreps": "1xvector"}}, r"not valid irreps"),
        ({"data": {"subset": {"train": "many"}}}, r"data.subset.train must be of type int"),
        ({"model": 3}, r"model must be a mapping"),
    ],
)
def test_bad_configs_raise_clear_errors(raw, message):
    with pytest.raises(ConfigError, match=message):
        load_config(raw)


def test_bad_overrides_and_missing_files(tmp_path):
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config("configs/qm9.yaml", ["model.num_layers"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_the_config_reference_is_generated_from_the_code():
    from pathlib import Path

    from segnn.config_docs import config_reference

    committed = (Path(__file__).resolve().parents[1] / "docs" / "config.md").read_text()
    assert committed == config_reference(), "run: python -m segnn.config_docs > docs/config.md"
    assert "| `train.backend` |" in committed and "| `model.lmax_attr` |" in committed


def test_retired_keys_name_their_replacement_and_old_configs_still_load():
    import pytest

    from segnn.config import ConfigError, load_config, without_retired_keys

    with pytest.raises(ConfigError, match="model.edge_frame.*retired.*train.backend"):
        load_config({"model": {"edge_frame": True}})
    old = {"model": {"edge_frame": True, "frame_kernels": False, "num_layers": 2}}
    assert load_config(without_retired_keys(old)).model.num_layers == 2
    assert old["model"]["edge_frame"] is True  # the caller's dict is left alone
