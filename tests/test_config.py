"""Config: strict keys with suggestions, types, impossible values, overrides, and every shipped YAML loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trytry_reid.errors import ConfigError
from trytry_reid.jobs.config import dump_yaml, load_config, parse_override

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "config"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yml"
    path.write_text(text)
    return path


def test_defaults_and_overrides_parse_types(tmp_path):
    path = write(tmp_path, "data: {name: digits}\n")
    cfg = load_config(path, ["train.epochs=2", "train.lr=1e-3", "test.datasets=[{name: digits}]",
                             "train.steps_per_epoch=null", "model.bnneck=false"])
    assert cfg.train.epochs == 2 and cfg.train.lr == pytest.approx(1e-3)
    assert cfg.test.datasets[0].name == "digits" and cfg.test.datasets[0].root is None
    assert cfg.model.bnneck is False and cfg.name == "c"


def test_unknown_key_in_file_suggests_closest(tmp_path):
    path = write(tmp_path, "data: {name: digits}\ntrain: {epohcs: 3}\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'train.epohcs'.*Did you mean 'train.epochs'"):
        load_config(path)


def test_typo_in_override_suggests_closest(tmp_path):
    path = write(tmp_path, "data: {name: digits}\n")
    with pytest.raises(ConfigError, match=r"'data.bach_p'.*Did you mean 'data.batch_p'"):
        load_config(path, ["data.bach_p=4"])


def test_unknown_top_level_section(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'modle'.*'model'"):
        load_config(write(tmp_path, "data: {name: digits}\nmodle: {}\n"))


@pytest.mark.parametrize("override, pattern", [
    ("train.epochs=two", r"'train.epochs' must be int, got 'two'"),
    ("train.lr=fast", r"'train.lr' must be float, got 'fast'"),
    ("model.bnneck=3", r"'model.bnneck' must be bool"),
    ("train.amp=off", r"'train.amp' must be str, got False \(bool\) \(YAML reads an unquoted off.*\"off\""),
    ("train.fp32_precision=bf8", r"'train.fp32_precision' = 'bf8'.*bf16"),
    ("train.ema_decay=1.0", r"'train.ema_decay' = 1.0: expected 0 \(off\) or a decay in \(0, 1\)"),
    ("train.average_epochs=121", r"'train.average_epochs' = 121: expected 0 \(off\) to train.epochs \(120\)"),
    ("train.lr=-0.1", r"'train.lr' = -0.1: expected a positive number"),
    ("data.batch_size=60", r"'data.batch_size' = 60: expected data.batch_p \* data.batch_k = 64"),
    ("data.name=market1501", r"'data.root' = None: expected the folder of dataset 'market1501'"),
    ("data.random_erasing=1.5", r"'data.random_erasing' = 1.5: expected a probability"),
    ("train.optimizer=adm", r"'train.optimizer' = 'adm'.*Did you mean 'adam'"),
    ("model.backbone=resnet5", r"'model.backbone' = 'resnet5'"),
    ("loss.triplet.selector=hard", r"'loss.triplet.selector' = 'hard'"),
    ("test.datasets=[{name: viper, root: /does/not/exist}]", r"'test.datasets\[0\].root' = '/does/not/exist'"),
    ("model.pretrained=/no/such/file.pth", r"'model.pretrained' = '/no/such/file.pth'"),
    ("test.calibration_fpr=0", r"'test.calibration_fpr' = 0.0: expected a false-positive rate in \(0, 1\)"),
    ("test.calibration_fpr=1.5", r"'test.calibration_fpr' = 1.5: expected a false-positive rate"),
    ("train.lr=.inf", r"'train.lr' must be a finite number, got inf"),
    ("train.lr=1e400", r"'train.lr' must be a finite number, got inf"),      # overflows to inf
    ("train.lr=.nan", r"'train.lr' must be a finite number, got nan"),
    ("loss.triplet.margin=-.inf", r"'loss.triplet.margin' must be a finite number, got -inf"),
    ("data.std=[0.2, .nan, 0.2]", r"'data.std\[1\]' must be a finite number, got nan"),
    ("train.warmup_factor=.NaN", r"'train.warmup_factor' must be a finite number"),
    ("model.backbone=small_cnn", r"'model.pretrained' = 'imagenet'.*backbone 'small_cnn' has no ImageNet weights"),
    ("train.adam_betas=[0.9]", r"'train.adam_betas' = \[0.9\]: expected two coefficients"),
    ("train.adam_betas=[0.9, 1.0]", r"'train.adam_betas' = \[0.9, 1.0\]: expected two coefficients"),
    ("data.batch_k=1", r"'data.batch_k' = 1: expected at least 2 images per identity while "
                       r"loss.triplet.weight > 0"),
])
def test_bad_values_name_key_and_value(tmp_path, override, pattern):
    path = write(tmp_path, "data: {name: digits}\n")
    with pytest.raises(ConfigError, match=pattern):
        load_config(path, [override])


def test_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="dotted.key=value"):
        parse_override("train.epochs")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yml")


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIG_DIR.glob("*.yml")))
def test_shipped_configs_load(tmp_path, name):
    """Every config in config/ is valid against the schema once its dataset root and weights exist."""
    root, weights = tmp_path / "data", tmp_path / "w.pth"
    root.mkdir()
    weights.write_bytes(b"")
    overrides = ["data.root=null"] if "digits" in name else [f"data.root={root}"]
    overrides += ["test.datasets=[]"]
    if "mobilenet" in name:
        overrides.append(f"model.pretrained={weights}")
    cfg = load_config(CONFIG_DIR / name, overrides)
    assert load_config(write(tmp_path, dump_yaml(cfg))) == cfg  # the resolved dump reloads identically


def test_a_variant_is_its_base_with_its_own_keys_merged_over(tmp_path):
    """_base_ names a file relative to the variant: sections merge key by key, lists and values replace, and
    the variant's own name (its file's stem) is kept."""
    (tmp_path / "base.yml").write_text("data: {name: digits, height: 48, width: 24}\n"
                                       "train: {epochs: 9, milestones: [3, 6], lr: 0.01}\n")
    (tmp_path / "sub").mkdir()
    variant = tmp_path / "sub" / "variant.yml"
    variant.write_text("_base_: ../base.yml\ndata: {height: 64}\ntrain: {milestones: [5]}\n")
    config = load_config(variant)
    assert (config.data.height, config.data.width) == (64, 24)
    assert (config.train.epochs, config.train.milestones, config.train.lr) == (9, [5], 0.01)
    assert config.name == "variant"
    second = tmp_path / "second.yml"
    second.write_text("_base_: sub/variant.yml\ntrain: {epochs: 2}\n")
    assert (load_config(second).train.epochs, load_config(second).data.height) == (2, 64)


def test_base_errors_name_the_files(tmp_path):
    (tmp_path / "a.yml").write_text("_base_: b.yml\n")
    (tmp_path / "b.yml").write_text("_base_: a.yml\n")
    with pytest.raises(ConfigError, match=r"_base_ makes a circle: .*a.yml -> .*b.yml -> .*a.yml"):
        load_config(tmp_path / "a.yml")
    (tmp_path / "c.yml").write_text("_base_: missing.yml\n")
    with pytest.raises(ConfigError, match=r"config file not found: .*missing.yml \(the _base_ of .*c.yml\)"):
        load_config(tmp_path / "c.yml")
    (tmp_path / "d.yml").write_text("_base_: [a.yml]\n")
    with pytest.raises(ConfigError, match=r"d.yml: _base_ must be the path of another config file"):
        load_config(tmp_path / "d.yml")


def test_the_variants_resolve_to_the_recipes_they_name():
    softtrip = load_config(CONFIG_DIR / "resnet_softtrip.yml", ["data.root=/"])
    softmax = load_config(CONFIG_DIR / "resnet_softmax.yml", ["data.root=/"])
    triplet = load_config(CONFIG_DIR / "resnet_triplet.yml", ["data.root=/"])
    assert softtrip.model.embedding_dim == 512 and softtrip.loss.triplet.selector == "random_negative"
    assert softtrip.loss.center.weight == 0.0 and softtrip.train.milestones == [40, 70]
    assert softmax.loss.triplet.weight == 0.0 and softmax.loss.cross_entropy.weight == 1.0
    assert triplet.loss.cross_entropy.weight == 0.0 and triplet.loss.triplet.selector == "hardest"


def test_no_shipped_config_names_a_machine_path():
    """Configs run anywhere: data roots, weights and test sets come from the command line, never from a
    path that exists on one machine only."""
    configs = sorted(CONFIG_DIR.glob("*.yml")) + sorted((REPO / "studies" / "configs").glob("*.yml"))
    assert configs
    for path in configs:
        text = path.read_text()
        assert "shared" not in text and "/work/" not in text and "/home/" not in text, path


def test_bot_recipe_values():
    cfg = load_config(CONFIG_DIR / "bot_r50.yml", ["data.root=/"])
    assert (cfg.data.batch_p, cfg.data.batch_k, cfg.data.height, cfg.data.width) == (16, 4, 256, 128)
    assert cfg.train.optimizer == "adam" and cfg.train.lr == pytest.approx(3.5e-4)
    assert cfg.train.milestones == [40, 70] and cfg.train.epochs == 120 and cfg.train.warmup_epochs == 10
    assert cfg.loss.center.weight == pytest.approx(5e-4) and cfg.loss.triplet.margin == pytest.approx(0.3)
    assert cfg.loss.cross_entropy.label_smoothing == pytest.approx(0.1) and cfg.model.last_stride == 1


def test_non_finite_floats_in_a_file_are_refused_too(tmp_path):
    with pytest.raises(ConfigError, match=r"'train.gamma' must be a finite number, got inf"):
        load_config(write(tmp_path, "data: {name: digits}\ntrain: {gamma: .inf}\n"))


def test_batch_k_of_one_is_fine_without_a_triplet_term(tmp_path):
    config = load_config(write(tmp_path, "data: {name: digits}\n"), ["data.batch_k=1", "loss.triplet.weight=0"])
    assert config.data.batch_k == 1


def test_choices_follow_the_code_catalogs(monkeypatch):
    """Every choice key is checked against the catalog its code uses: pooling "max" exists, so it is
    accepted; a name added to a catalog is accepted without touching the config checks."""
    from trytry_reid.engine.optimizers import OPTIMIZERS
    from trytry_reid.models.pooling import POOLINGS

    assert load_config(None, ["data.name=digits", "model.pooling=max"]).model.pooling == "max"
    monkeypatch.setitem(POOLINGS, "toy", POOLINGS["avg"])
    monkeypatch.setitem(OPTIMIZERS, "toy_sgd", OPTIMIZERS["sgd"])
    config = load_config(None, ["data.name=digits", "model.pooling=toy", "train.optimizer=toy_sgd"])
    assert (config.model.pooling, config.train.optimizer) == ("toy", "toy_sgd")
    with pytest.raises(ConfigError, match="train.amp.*bf16, fp16, off"):
        load_config(None, ["data.name=digits", "train.amp=fp8"])


def test_a_dataset_without_a_source_note_still_gets_a_clear_error(monkeypatch):
    from trytry_reid.data import datasets

    monkeypatch.setitem(datasets.DATASETS, "mine", lambda root: datasets.market_style(
        "mine", datasets.need_root("mine", root), datasets.MARKET_FOLDERS))
    with pytest.raises(datasets.DatasetError, match=r"^mine: a root folder is required \(data.root\)$"):
        datasets.build_dataset("mine", None)


def test_a_validation_split_run_may_not_score_test_sets(tmp_path):
    path = write(tmp_path, "data: {name: digits}\n")
    assert load_config(path, ["data.validation_ids=2"]).data.validation_ids == 2
    with pytest.raises(ConfigError, match=r"'data.validation_ids' = 2: expected 0 while test.datasets is set"):
        load_config(path, ["data.validation_ids=2", "test.datasets=[{name: digits}]"])


def check_recipe(config: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, str(REPO / "studies" / "accuracy.py"), "--check-recipe", str(config)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120)


def test_the_cpu_recipe_is_the_row_chosen_on_the_validation_split(tmp_path):
    """config/mobilenet_market_cpu.yml = the 12-epoch study's base + the chosen row's overrides + the shipped
    arithmetic, in every key that changes the model it trains (studies/accuracy.py --check-recipe); a recipe
    that drifts from the study is refused with the keys that differ."""
    done = check_recipe(CONFIG_DIR / "mobilenet_market_cpu.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    drifted = write(tmp_path, f"_base_: {CONFIG_DIR / 'mobilenet_market_cpu.yml'}\ntrain: {{lr: 0.002}}\n")
    done = check_recipe(drifted)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "train.lr: 0.001 in studies/configs/study_12epochs.yml + the chosen row, 0.002 in" in done.stdout
    assert done.stdout.count("check-recipe:") == 1
