"""The one model folder type: what an exporter writes is what a runtime reads and verifies, and
every defect of a folder is a ModelLoadError (bad input, exit 2), never a traceback."""

from __future__ import annotations

import hashlib
import json

import pytest

from imaging.errors import BadInput, ModelLoadError
from imaging.model_folder import ModelFolder, checkpoint_record

FORMAT = "edge-agent test kind 1"


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / "model"
    path.mkdir()
    (path / "graph.onnx").write_bytes(b"graph bytes" * 10)
    (path / "prompts.npy").write_bytes(b"rows")
    ModelFolder.write(
        path,
        format=FORMAT,
        roles={"graph.onnx": "model", "prompts.npy": "text embeddings"},
        source={"dir": "/models/hf", "files": []},
        versions={"torch": "2.13.0"},
        profile="ophiuchus-v1",
        fields={"decoder": {"layers": 2}, "prompts": ["liver"]},
    )
    return path


def _manifest(path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def _rewrite(path, change) -> None:
    manifest = _manifest(path)
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_what_is_written_reads_back_and_verifies(folder):
    read = ModelFolder.read(folder, FORMAT)
    assert read.path == folder and read.manifest.profile == "ophiuchus-v1"
    assert read.manifest.fields == {"decoder": {"layers": 2}, "prompts": ["liver"]}
    assert read.manifest.versions == {"torch": "2.13.0"}
    assert read.manifest.source == {"dir": "/models/hf", "files": []}
    assert read.verified("model") == folder / "graph.onnx"
    entry = read.named("prompts.npy")
    assert entry.sha256 == hashlib.sha256(b"rows").hexdigest() and entry.bytes == 4
    assert read.problems() == []
    # The kind's fields sit at the top level, beside the common keys, as earlier exports wrote.
    plain = _manifest(folder)
    assert plain["decoder"] == {"layers": 2} and plain["format"] == FORMAT
    assert ModelFolder.read(folder / "manifest.json").manifest == read.manifest


def test_a_manifest_from_before_the_shared_type_still_loads(tmp_path):
    (tmp_path / "model-f16.gguf").write_bytes(b"GGUF....")
    old = {  # an `export gguf` manifest as written before: no profile, no versions
        "format": "edge-agent gguf export 1",
        "architecture": "Qwen2_5_VLForConditionalGeneration",
        "files": [
            {
                "name": "model-f16.gguf",
                "role": "text",
                "sha256": hashlib.sha256(b"GGUF....").hexdigest(),
                "bytes": 8,
            }
        ],
        "source": {"dir": "/hf", "files": []},
        "runtime": {"llama_cpp_python": "0.3.36"},
    }
    (tmp_path / "manifest.json").write_text(json.dumps(old))
    read = ModelFolder.read(tmp_path, "edge-agent gguf export 1")
    assert read.manifest.profile == "" and read.manifest.versions == {}
    assert read.manifest.fields["runtime"] == {"llama_cpp_python": "0.3.36"}
    assert read.verified("text") == tmp_path / "model-f16.gguf"


def test_a_changed_file_fails_its_hash(folder):
    graph = folder / "graph.onnx"
    data = bytearray(graph.read_bytes())
    data[5] ^= 0xFF  # same size: only the hash can tell
    graph.write_bytes(bytes(data))
    read = ModelFolder.read(folder, FORMAT)
    with pytest.raises(ModelLoadError, match=r"graph\.onnx does not match the SHA-256.*hash"):
        read.verified("model")
    assert read.problems() == ["graph.onnx hash differs"]
    graph.write_bytes(b"short")
    with pytest.raises(ModelLoadError, match=r"size differs: 5 bytes, listed 110"):
        read.check_all()


def test_a_missing_file_is_named(folder):
    (folder / "prompts.npy").unlink()
    read = ModelFolder.read(folder, FORMAT)
    read.verified("model")  # the other file is still fine
    with pytest.raises(ModelLoadError, match=r"prompts\.npy does not exist \(listed in its"):
        read.check_all()
    assert read.problems() == ["prompts.npy missing"]


def test_a_role_the_export_lacks_names_those_it_has(folder):
    with pytest.raises(ModelLoadError, match=r"has no mmproj \(it has: model, text embeddings\)"):
        ModelFolder.read(folder).entry("mmproj")


@pytest.mark.parametrize("name", ["../outside.onnx", "sub/graph.onnx", "/etc/passwd", "..", ""])
def test_a_file_name_cannot_point_outside_the_folder(folder, name):
    _rewrite(folder, lambda m: m["files"][0].update(name=name))
    with pytest.raises(ModelLoadError, match="must be a plain name inside the model folder"):
        ModelFolder.read(folder, FORMAT)


def test_a_file_name_outside_the_folder_cannot_be_written(folder):
    with pytest.raises(ValueError, match="plain name inside the model folder"):
        ModelFolder.write(folder, format=FORMAT, roles={"../graph.onnx": "model"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "is not valid JSON"),
        (b"\xff\xfe", "is not valid JSON"),
        ("[1, 2]", "incomplete or damaged: manifest: expected a JSON object"),
        ('{"format": "edge-agent test kind 1"}', "incomplete or damaged"),
        ('{"format": "edge-agent test kind 1", "files": [{"name": "a"}]}', "incomplete or dam"),
    ],
)
def test_a_damaged_manifest_is_a_model_load_error(folder, text, message):
    manifest = folder / "manifest.json"
    manifest.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ModelLoadError, match=message):
        ModelFolder.read(folder, FORMAT)


def test_a_wrong_hash_field_is_refused(folder):
    _rewrite(folder, lambda m: m["files"][0].update(sha256="not a digest"))
    with pytest.raises(ModelLoadError, match="is not a SHA-256 digest"):
        ModelFolder.read(folder, FORMAT)


def test_another_kind_of_folder_is_refused_by_format(folder):
    with pytest.raises(ModelLoadError, match=r"format 'edge-agent test kind 1' is not 'other 1'"):
        ModelFolder.read(folder, ("other 1",))
    assert ModelFolder.read(folder).manifest.format == FORMAT  # no format asked: any is read


def test_no_manifest_is_a_model_load_error_and_that_is_bad_input(tmp_path):
    with pytest.raises(ModelLoadError, match=r"segment model .*elsewhere has no manifest\.json"):
        ModelFolder.read(tmp_path / "elsewhere", FORMAT, what="segment model")
    assert issubclass(ModelLoadError, BadInput)  # the CLI's exit 2, the gateway's "permanent"


def test_kind_fields_cannot_hide_the_common_keys(tmp_path):
    with pytest.raises(ValueError, match=r"collide with the manifest's own keys"):
        ModelFolder.write(tmp_path, format=FORMAT, roles={}, fields={"files": []})


def test_the_checkpoint_record_hashes_a_folder_or_one_file(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    record = checkpoint_record(tmp_path)
    assert record["dir"] == str(tmp_path)
    assert record["files"] == [
        {"name": "config.json", "sha256": hashlib.sha256(b"{}").hexdigest(), "bytes": 2}
    ]
    single = checkpoint_record(tmp_path / "config.json")
    assert single["sha256"] == hashlib.sha256(b"{}").hexdigest() and not single["random_weights"]
    assert checkpoint_record(None) == {"random_weights": True}
