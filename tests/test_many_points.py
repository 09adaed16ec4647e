"""What keeps a sweep's point cheap and many runs quick to read back: YAML read and written by PyYAML's C code with
the same results and the same refusals as the Python code, a finished run's config read back without the memory
check that belongs to training, a point's files fsynced once each after it ends rather than at every write, the
8x8 digits parsed once a process, and a comparison figure of hundreds of runs whose legend names only the best."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

import digitlab.config as config
import digitlab.config.memory as memory
import digitlab.system.storage as storage
from digitlab.config import reading
from digitlab.errors import ConfigError, DataError
from tests.conftest import cli, tiny

ROOT = Path(__file__).resolve().parents[1]
REPO_CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))

pytestmark = pytest.mark.skipif(reading.CSafeLoader is None, reason="PyYAML without libyaml")


# -- YAML: the C loader and dumper agree with the Python ones ---------------------------------------------------------
def test_both_loaders_read_every_config_alike_and_refuse_the_same(tmp_path):
    for path in REPO_CONFIGS:
        text = path.read_text(encoding="utf-8")
        python = reading._load_with(reading.SafeLoader, text)[0]
        fast = reading._load_with(reading.CSafeLoader, text)[0]
        assert python == fast and repr(python) == repr(fast), path
    odd = ("name: 1e5\nx: [1, 2.50, .inf, null, ~, yes, 'no', 0x1F, 1_000]\ny: {a: {b: [{c: 'ä 数字'}]}}\n"
           "z: |\n  two\n  lines\n")
    assert reading._load_with(reading.SafeLoader, odd)[0] == reading._load_with(reading.CSafeLoader, odd)[0]
    # each loader on its own refuses a key written twice, at any depth
    for text in ("epochs: 1\nepochs: 5\n", "data: {limit: 300, limit: 400}\n",
                 "model:\n- linear: {units: 4,\n    units: 8}\n"):
        for loader in (reading.SafeLoader, reading.CSafeLoader):
            with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key"):
                reading._load_with(loader, text)
    # the C loader finds an alias; what the user reads is the Python loader's line
    with pytest.raises(reading._Unusual):
        reading._load_with(reading.CSafeLoader, "a: &x [1]\nb: *x\n")
    with pytest.raises(ConfigError, match="line 2: YAML aliases \\(\\*x\\) are not allowed"):
        reading.parse_yaml("a: &x [1]\nb: *x\n", "f.yaml")
    with pytest.raises(ConfigError, match="line 3, column 1: duplicate key 'epochs' \\(first on line 2\\)"):
        reading.parse_yaml("name: t\nepochs: 1\nepochs: 5\n", "f.yaml")
    with pytest.raises(ConfigError, match="nested too deeply|invalid YAML"):
        reading.parse_yaml("[" * 5000 + "]" * 5000, "f.yaml")


def test_the_c_dumper_writes_the_text_the_python_one_does():
    options = {"sort_keys": False, "default_flow_style": None, "allow_unicode": True}
    for path in REPO_CONFIGS:
        raw = reading.read_yaml(path)
        if isinstance(raw, dict) and "base" not in raw:
            cfg = config.load_config(path, warn=lambda line: None)
            assert config.dump(cfg) == yaml.safe_dump(cfg, **options), path
    odd = tiny(name="späť-数字", data={"path": "/tmp/a: b", "digits": [3, 8]})
    assert config.dump(odd) == yaml.safe_dump(odd, **options)
    assert yaml.safe_load(config.dump({"path": "/x/\udcff"})) == {"path": "/x/\udcff"}  # not UTF-8: Python's escapes


# -- the memory check belongs to training ----------------------------------------------------------------------------
def test_a_finished_run_reads_back_with_little_memory_free_but_will_not_train_again(tiny_run, other_run, monkeypatch,
                                                                                    tmp_path):
    from digitlab.runs.collect import read_run
    from digitlab.sweep.state import folder_status
    monkeypatch.setattr(memory, "available_memory", lambda: memory.Limit(1 << 10, "MemAvailable"))
    monkeypatch.setattr(config, "_RUN_CONFIGS", {})  # nothing read before this test may answer for it
    run = read_run(tiny_run)
    assert run.status == "complete" and run.damage is None
    assert folder_status(tiny_run) == "complete"
    listed = cli("runs", tiny_run.parent)
    assert listed.exit_code == 0 and "damaged" not in listed.output and tiny_run.name in listed.output
    compared = cli("compare", tiny_run, other_run)
    assert compared.exit_code == 0 and "damaged" not in compared.output, compared.output
    with pytest.raises(ConfigError, match="needs about .* of memory"):  # training it again is checked
        config.load_config(tiny_run / "config.yaml")
    again = cli("train", tiny_run / "config.yaml", "--runs-dir", tmp_path)
    assert again.exit_code == 2 and "memory" in again.output


# -- a point's files are fsynced once each, after it -------------------------------------------------------------------
def test_writes_inside_synced_once_are_fsynced_once_each_when_it_ends(tmp_path, monkeypatch):
    synced: list[str] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd)))
    storage.atomic_write(tmp_path / "alone.json", "{}")
    assert len(synced) == 2  # the file, then its folder
    for later in (False, True):
        synced.clear()
        folder = tmp_path / f"later={later}"
        folder.mkdir()
        with storage.synced_once(later=later):
            for epoch in range(3):
                storage.atomic_write(folder / "run.json", f'{{"epoch": {epoch}}}')
                storage.append_line(folder / "metrics.csv", f"{epoch}\n")
            with storage.synced_once():  # nested: the outer block syncs
                storage.atomic_write(folder / "summary.json", "{}")
            assert synced == []
        storage.wait_synced()
        assert sorted(synced) == sorted([str(folder / n) for n in ("run.json", "metrics.csv", "summary.json")] +
                                        [str(folder)])
        assert (folder / "run.json").read_text() == '{"epoch": 2}'
        assert (folder / "metrics.csv").read_text() == "0\n1\n2\n"
        assert not list(folder.glob(".*.tmp"))


# -- the 8x8 digits are parsed once a process --------------------------------------------------------------------------
def test_the_8x8_digits_are_parsed_once_while_the_file_stays_the_same(tmp_path):
    from digitlab.data import digits8x8
    copy = shutil.copy(digits8x8.FILE, tmp_path / "digits.csv.gz")
    images, labels = digits8x8._cached(Path(copy))
    again, _ = digits8x8._cached(Path(copy))
    assert images.shape == (1797, 8, 8) and (images == again).all() and images is not again
    images[:] = 0  # a caller that changes its copy changes nothing for the next
    assert digits8x8._cached(Path(copy))[0].any()
    Path(copy).write_bytes(b"not gzip")
    with pytest.raises(DataError, match="cannot be read or decompressed"):
        digits8x8._cached(Path(copy))


# -- a figure of many runs ------------------------------------------------------------------------------------------
def test_the_curves_of_hundreds_of_runs_name_the_best_in_the_legend(tiny_run):
    import matplotlib.pyplot as plt

    from digitlab.figures.compare import LEGEND_MOST, LEGEND_ROWS, overlay
    from digitlab.runs.collect import read_run
    base = read_run(tiny_run)
    runs = []
    for i in range(LEGEND_MOST + 20):  # the real run's rows, each run scoring a little higher than the one before
        metrics = [{**row, "test_accuracy": row["test_accuracy"] * (0.5 + i / 300)} for row in base.metrics]
        runs.append(type(base)(base.path.with_name(f"run{i}"), base.status, {**base.cfg, "seed": i}, base.summary,
                               metrics, None, info=base.info, tags={}))
    fig = overlay(runs)
    legend = fig.axes[0].get_legend()
    assert legend.get_title().get_text() == f"the best {LEGEND_ROWS} of {len(runs)} runs"
    shown = [t.get_text() for t in legend.get_texts()]
    assert len(shown) == LEGEND_ROWS and shown[0].endswith(f"seed={len(runs) - 1}")  # the best first
    assert fig.get_size_inches()[0] < 12
    plt.close(fig)


def test_configs_read_back_are_validated_once_per_content_and_each_reader_gets_its_own_copy(tmp_path, monkeypatch,
                                                                                          write_config):
    monkeypatch.setattr(config, "_RUN_CONFIGS", {})
    monkeypatch.setattr(config, "RUN_CONFIGS_KEPT", 2)
    validated = []
    real = config.load_config
    monkeypatch.setattr(config, "load_config", lambda *a, **k: validated.append(a[0]) or real(*a, **k))
    paths = [write_config(tiny(seed=seed), f"seed{seed}.yaml") for seed in (1, 2)]
    same = tmp_path / "copy" / "config.yaml"
    same.parent.mkdir()
    shutil.copy(paths[0], same)
    first = config.read_run_config(paths[0])
    first["optimizer"]["lr"] = 99.0  # a reader that changes its copy changes nothing for the next
    assert config.read_run_config(same)["optimizer"]["lr"] == 0.1 and validated == [paths[0]]  # same bytes
    config.read_run_config(paths[1])
    assert len(validated) == 2 and len(config._RUN_CONFIGS) == 2
    config.read_run_config(write_config(tiny(seed=3), "seed3.yaml"))
    assert len(validated) == 3 and len(config._RUN_CONFIGS) == 1  # full: started again
