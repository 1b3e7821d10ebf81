"""The package's metadata: what `pip install hashprep[torch]` pulls in."""

import importlib.metadata


def test_the_package_declares_a_torch_extra():
    meta = importlib.metadata.metadata("hashprep")
    assert "torch" in (meta.get_all("Provides-Extra") or [])
    requires = [r.replace(" ", "").replace("'", '"') for r in meta.get_all("Requires-Dist") or []]
    assert 'torch>=2.11;extra=="torch"' in requires, requires
    assert not any(r.startswith("torch") and "extra" not in r for r in requires), "torch stays optional"
