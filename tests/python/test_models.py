"""Model packages, devices and adaptive batches: clear errors naming the problem, OOM handled by halving."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from cellbridge.device import (
    AdaptiveBatcher,
    DeviceError,
    available_devices,
    resolve_device,
)
from cellbridge.models.package import (
    BUILTIN_DIR,
    ModelError,
    ModelSpec,
    list_models,
    load_model,
    resolve_model_dir,
    save_model,
)
from cellbridge.networks.unet import build_nuclei_unet


def tiny_spec(**changes) -> ModelSpec:
    fields = dict(name="tiny", task="nuclei", architecture="unet-nuclei", in_channels=3,
                  classes=[{"name": "Nucleus", "color": [200, 0, 0]}], params={"depth": 2, "width": 4})
    fields.update(changes)
    return ModelSpec(**fields)


@pytest.fixture()
def package(tmp_path: Path) -> Path:
    spec = tiny_spec()
    return save_model(tmp_path / "tiny", spec, build_nuclei_unet(spec))


def test_round_trip_loads_the_same_weights(package: Path) -> None:
    loaded = load_model(package)
    assert loaded.spec.name == "tiny" and loaded.spec.class_names == ["Nucleus"]
    assert not loaded.module.training
    again = load_model(package / "model.json")
    x = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        assert torch.equal(loaded.module(x), again.module(x))


def edit(package: Path, **changes) -> None:
    meta = package / "model.json"
    data = json.loads(meta.read_text())
    data.update(changes)
    meta.write_text(json.dumps(data))


@pytest.mark.parametrize("changes, message", [
    ({"task": "painting"}, "'task' must be one of"),
    ({"in_channels": 4}, "'in_channels' must be 1 or 3"),
    ({"classes": []}, "'classes' must be a non-empty list"),
    ({"classes": [{"name": "A", "color": [1, 2]}]}, "needs 'color' as three integers"),
    ({"architecture": "resnet9000"}, "'architecture' is 'resnet9000'"),
    ({"mpp": -1}, "'mpp' must be a positive number"),
    ({"colour": "red"}, "unknown field(s) in model.json: colour"),
    ({"preprocessing": {"mode": "gray_unsharp"}}, "'in_channels' must be 1 for gray_unsharp"),
    ({"params": {"depth": 2, "width": 4, "heads": 3}}, "'params' does not fit unet-nuclei"),
])
def test_bad_model_json_names_the_field(package: Path, changes: dict, message: str) -> None:
    edit(package, **changes)
    with pytest.raises(ModelError, match=rf"model\.json.*{message.replace('(', '.').replace(')', '.')}"):
        load_model(package)


def test_weights_that_do_not_match_model_json_are_refused(package: Path) -> None:
    edit(package, classes=[{"name": "A", "color": [1, 2, 3]}, {"name": "B", "color": [3, 2, 1]}])
    with pytest.raises(ModelError, match="weights do not match model.json .*2 classes"):
        load_model(package)


def test_missing_and_corrupt_files(package: Path, tmp_path: Path) -> None:
    (package / "weights.pt").write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match="weights.pt: cannot read the weights"):
        load_model(package)
    (package / "weights.pt").unlink()
    with pytest.raises(ModelError, match="weights file 'weights.pt' named in model.json is missing"):
        load_model(package)
    (package / "model.json").write_text("{not json")
    with pytest.raises(ModelError, match="model.json: not valid JSON"):
        load_model(package)
    with pytest.raises(ModelError, match="'no-such-model' not found.*available: "):
        load_model("no-such-model")


def test_models_are_found_by_name_on_the_search_path(package: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELLBRIDGE_MODEL_PATH", str(package.parent))
    assert "tiny" in [m["name"] for m in list_models()]
    assert load_model("tiny").path == package
    shutil.rmtree(package)
    assert "tiny" not in [m["name"] for m in list_models()]


def test_a_folder_named_like_a_built_in_does_not_replace_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    spec = tiny_spec(name="nuclei-he")
    impostor = save_model(tmp_path / "nuclei-he", spec, build_nuclei_unet(spec))
    monkeypatch.setenv("CELLBRIDGE_MODEL_PATH", str(tmp_path))
    with caplog.at_level("WARNING"):
        assert resolve_model_dir("nuclei-he") == BUILTIN_DIR / "nuclei-he"
    assert str(impostor) in caplog.text and "not used" in caplog.text
    assert [m["path"] for m in list_models() if m["name"] == "nuclei-he"] == [str(BUILTIN_DIR / "nuclei-he")]
    assert load_model(impostor).spec.class_names == ["Nucleus"]       # its folder path still reaches it


def test_devices_resolve_or_say_what_is_there() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match=r"'cuda:3' is not available \(this machine has: cpu"):
            resolve_device("cuda:3")
    with pytest.raises(DeviceError, match="unknown device 'gpu0'.*this machine has: " + available_devices()[0]):
        resolve_device("gpu0")


def test_out_of_memory_halves_the_batch_and_finishes() -> None:
    calls: list[int] = []

    def forward(chunk):
        calls.append(len(chunk))
        if len(chunk) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [x * 10 for x in chunk]

    batcher = AdaptiveBatcher(8, torch.device("cpu"))
    assert batcher.run(list(range(11)), forward) == [x * 10 for x in range(11)]
    assert batcher.batch_size == 2 and calls[:3] == [8, 4, 2]

    def broken(chunk):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        AdaptiveBatcher(4, torch.device("cpu")).run([1, 2], broken)
