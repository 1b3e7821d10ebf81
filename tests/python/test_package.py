"""The package's metadata: what `pip install hashprep[torch]` pulls in."""

import importlib.metadata


def test_the_package_declares_a_torch_extra():
    meta = importlib.metadata.metadata("hashprep")
    assert "torch" in (meta.get_all("Provides-Extra") or [])
    requires = meta.get_all("Requires-Dist") or []
    assert any(r.replace(" ", "").startswith("torch>=2.11;") and 'extra=="torch"' in r.replace(" ", "")
               for r in requires), requires
    assert not any(r.startswith("torch") and "extra" not in r for r in requires), "torch stays optional"
