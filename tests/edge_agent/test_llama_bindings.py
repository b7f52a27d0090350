"""llama-cpp-python's surface we build on is its public C bindings (llama_cpp.llama_*, mtmd_cpp)
and a few public members of `Llama`; none of its private members. The C API is renamed between
llama.cpp releases (llama_kv_cache_clear became llama_memory_clear), so a version that moved a
name fails here, naming the name and the version, instead of deep inside a read."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Every module that calls into llama-cpp-python, with how it names each library.
USERS = ("edge_agent/mtmd.py", "edge_agent/llama_sampler.py", "edge_agent/policies/llama_cpp.py")
LIBRARIES = {
    "llama_cpp": re.compile(r"\b(?:llama_cpp|_?lib)\.([A-Za-z]\w*)"),
    "llama_cpp.mtmd_cpp": re.compile(r"\b(?:mtmd|_mtmd_lib)\.([A-Za-z]\w*)"),
}
LLAMA_MEMBERS = ("ctx", "model", "n_batch", "n_threads", "n_embd", "n_vocab", "detokenize", "close")
BATCH_FIELDS = ("n_tokens", "token", "pos", "n_seq_id", "seq_id", "logits")
# a private module or member of llama_cpp / a Llama, or writing the Llama's token count
PRIVATE = re.compile(r"\bllama_cpp\._\w+|\bllama\._\w+|\bllama\.n_tokens\s*=(?!=)")


def _used() -> dict[str, dict[str, str]]:
    """library -> name -> the first module that uses it."""
    found: dict[str, dict[str, str]] = {library: {} for library in LIBRARIES}
    for user in USERS:
        text = (ROOT / user).read_text()
        for library, pattern in LIBRARIES.items():
            for name in pattern.findall(text):
                found[library].setdefault(name, user)
    return found


def test_every_native_name_we_call_exists_in_the_installed_llama_cpp_python():
    import llama_cpp  # the test extra installs it: a missing one must fail, not skip
    from llama_cpp import mtmd_cpp

    used = _used()
    # the scan itself must see the calls, or this test would pass on nothing
    assert {"llama_decode", "llama_sampler_init_grammar", "llama_memory_clear"} <= set(
        used["llama_cpp"]
    )
    assert {"mtmd_helper_eval_chunks", "mtmd_tokenize"} <= set(used["llama_cpp.mtmd_cpp"])
    modules = {"llama_cpp": llama_cpp, "llama_cpp.mtmd_cpp": mtmd_cpp}
    missing = [
        f"{library}.{name} (used in {user})"
        for library, names in used.items()
        for name, user in sorted(names.items())
        if not hasattr(modules[library], name)
    ]
    assert not missing, (
        f"llama-cpp-python {llama_cpp.__version__} lacks {', '.join(missing)}: its C API moved; "
        "edge-agent is built against 0.3.36 (pyproject.toml): port these calls or pin it"
    )
    fields = {name for name, _ in llama_cpp.llama_batch._fields_}
    assert set(BATCH_FIELDS) <= fields, (
        f"llama-cpp-python {llama_cpp.__version__}: llama_batch has fields {sorted(fields)}, "
        f"MultimodalModel.eval_token fills {BATCH_FIELDS}"
    )
    members = [name for name in LLAMA_MEMBERS if name not in dir(llama_cpp.Llama)]
    instance_only = {"n_batch", "n_threads"}  # set in Llama.__init__, checked on a model below
    assert set(members) <= instance_only, (
        f"llama-cpp-python {llama_cpp.__version__}: Llama has no {sorted(members)}"
    )


def test_no_module_reaches_into_llama_cpp_pythons_private_members():
    offending = [
        f"{user}:{number}: {line.strip()}"
        for user in (*USERS, "benchmarks/multiturn.py")
        for number, line in enumerate((ROOT / user).read_text().splitlines(), 1)
        if PRIVATE.search(line)
    ]
    assert offending == [], "private llama-cpp-python members in use:\n" + "\n".join(offending)
    assert PRIVATE.search("sampler.sample(llama._ctx, -1)")  # the check sees what it forbids
    assert PRIVATE.search("from llama_cpp._utils import suppress_stdout_stderr")
    assert PRIVATE.search("self.llama.n_tokens = new_past.value")


def test_the_loaded_model_has_the_instance_members_we_use(exported):
    from edge_agent.mtmd import MultimodalModel

    with MultimodalModel(
        exported / "model-q8_0.gguf", exported / "mmproj-f16.gguf", n_ctx=512
    ) as model:
        absent = [name for name in LLAMA_MEMBERS if not hasattr(model.llama, name)]
        assert absent == [], f"llama_cpp.Llama has no {absent}"
        assert model.llama.n_batch == 512 and model.llama.n_threads > 0
